//! `/metrics` in the OpenMetrics text format (which Prometheus reads):
//! the counters of [`crate::metrics`], the gateway's queue from
//! [`crate::activity`], and instances by state, read from the store at
//! scrape time. Encoded by `prometheus-client`, as the runtime's are.

use crate::service::Control;
use paddock_core::instance::InstanceState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An instance state, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// What is read at scrape time: the queue and instances by state.
#[derive(Debug)]
struct Snapshot {
    waiting: u64,
    waits: u64,
    waited_secs: f64,
    instances: Vec<(InstanceState, u64)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let waiting = ConstGauge::new(self.waiting as i64);
        waiting.encode(encoder.encode_descriptor(
            "paddock_gateway_queue_waiting",
            "Gateway requests waiting for a free model server sequence",
            None,
            waiting.metric_type(),
        )?)?;
        // The wait is kept as a sum and a count (a histogram without
        // buckets): the mean wait, and how many had to wait.
        let mut wait = encoder.encode_descriptor(
            "paddock_gateway_queue_wait_seconds",
            "Time gateway requests waited for a free model server sequence (those that had to wait)",
            None,
            MetricType::Histogram,
        )?;
        wait.encode_histogram::<StateLabel>(self.waited_secs, self.waits, &[], None)?;
        let mut states = encoder.encode_descriptor(
            "paddock_instances",
            "Instances by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &self.instances {
            let label = StateLabel {
                state: state.to_string(),
            };
            ConstGauge::new(*n as i64).encode(states.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// Every metric, in the OpenMetrics text format.
pub async fn render(state: &Control) -> String {
    let mut by_state: HashMap<InstanceState, u64> = HashMap::new();
    if let Ok(all) = state.store.list_instances(None).await {
        for i in all {
            *by_state.entry(i.status).or_default() += 1;
        }
    }
    let (waits, waited_us) = state.activity.waits();
    let snapshot = Snapshot {
        waiting: state.activity.waiting(),
        waits,
        waited_secs: waited_us as f64 / 1e6,
        instances: InstanceState::ALL
            .iter()
            .map(|s| (*s, by_state.get(s).copied().unwrap_or(0)))
            .collect(),
    };
    let mut registry = Registry::default();
    state.metrics.register(&mut registry);
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
}
