//! Runtime counters and gauges, kept in `prometheus-client` metrics and
//! rendered in the OpenMetrics text format on `GET /metrics`. The batch
//! scheduler and the HTTP handlers update them; every update is one atomic
//! operation.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

/// Upper bounds, in seconds, of the time-to-first-token histogram buckets.
const TTFT_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The content type of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Process-wide runtime metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub requests: Counter,
    pub rejected: Counter,
    pub prompt_tokens: Counter,
    pub cached_prompt_tokens: Counter,
    pub generated_tokens: Counter,
    pub active: Gauge<u64, AtomicU64>,
    pub queued: Gauge<u64, AtomicU64>,
    ttft: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Counter::default(),
            rejected: Counter::default(),
            prompt_tokens: Counter::default(),
            cached_prompt_tokens: Counter::default(),
            generated_tokens: Counter::default(),
            active: Gauge::default(),
            queued: Gauge::default(),
            ttft: Histogram::new(TTFT_BUCKETS),
        }
    }
}

impl Metrics {
    /// Records one request's time from arrival to its first generated token.
    pub fn observe_ttft(&self, seconds: f64) {
        self.ttft.observe(seconds);
    }

    /// The metrics in the OpenMetrics text format, each labelled with the
    /// model served.
    pub fn render(&self, model: &str) -> String {
        let mut r = Registry::with_labels(
            [(Cow::Borrowed("model"), Cow::Owned(model.to_owned()))].into_iter(),
        );
        let counters = [
            (
                "paddock_runtime_requests",
                "Generation requests accepted",
                &self.requests,
            ),
            (
                "paddock_runtime_rejected",
                "Requests refused with 503 because the queue was full",
                &self.rejected,
            ),
            (
                "paddock_runtime_prompt_tokens",
                "Prompt tokens evaluated",
                &self.prompt_tokens,
            ),
            (
                "paddock_runtime_prefix_cache_hit_tokens",
                "Prompt tokens found in the prefix cache, not evaluated again",
                &self.cached_prompt_tokens,
            ),
            (
                "paddock_runtime_generated_tokens",
                "Tokens generated",
                &self.generated_tokens,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register(
            "paddock_runtime_active_sequences",
            "Sequences decoding now",
            self.active.clone(),
        );
        r.register(
            "paddock_runtime_queued_sequences",
            "Requests waiting for a free sequence",
            self.queued.clone(),
        );
        r.register(
            "paddock_runtime_time_to_first_token_seconds",
            "Time from request arrival to the first generated token",
            self.ttft.clone(),
        );
        let mut out = String::with_capacity(2048);
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}
