//! The Prometheus text of every metric: the counters of [`crate::metrics`],
//! the gateway's queue from [`crate::activity`], and instances by state,
//! read from the store at scrape time.

use crate::metrics::{RouteStats, BUCKETS};
use crate::service::Control;
use paddock_core::instance::InstanceState;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::Ordering;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Every metric in the Prometheus text format.
pub async fn render(state: &Control) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    out.push_str("# HELP paddock_http_requests_total HTTP requests by method, route and status.\n# TYPE paddock_http_requests_total counter\n");
    let routes: BTreeMap<String, RouteStats> = m
        .routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (route, stats) in &routes {
        let mut counts = stats.counts.clone();
        counts.sort();
        for (method, status, n) in counts {
            let _ = writeln!(
                out,
                "paddock_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
    }
    out.push_str("# HELP paddock_http_request_duration_seconds Time to the response head, by route.\n# TYPE paddock_http_request_duration_seconds histogram\n");
    for (route, h) in routes.iter().map(|(r, s)| (r, &s.latency)) {
        let r = escape(route);
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "paddock_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "paddock_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "paddock_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "paddock_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
            h.count
        );
    }
    let counters = [
        (
            "paddock_gateway_prompt_tokens_total",
            "Prompt tokens metered by the gateway.",
            &m.prompt_tokens,
        ),
        (
            "paddock_gateway_completion_tokens_total",
            "Completion tokens metered by the gateway.",
            &m.completion_tokens,
        ),
        (
            "paddock_instance_wakes_total",
            "Sleeping instances woken by a request.",
            &m.wakes,
        ),
        (
            "paddock_instance_failures_total",
            "Instances that failed to start or died.",
            &m.failures,
        ),
        (
            "paddock_instance_restarts_total",
            "Failed instances restarted.",
            &m.restarts,
        ),
        (
            "paddock_gateway_queue_rejected_total",
            "Gateway requests answered 503 because no model server sequence came free (queue full or wait too long).",
            &m.queue_rejected,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let (waits, waited_us) = state.activity.waits();
    let _ = writeln!(
        out,
        "# HELP paddock_gateway_queue_waiting Gateway requests waiting for a free model server sequence.\n# TYPE paddock_gateway_queue_waiting gauge\npaddock_gateway_queue_waiting {}",
        state.activity.waiting()
    );
    let _ = writeln!(
        out,
        "# HELP paddock_gateway_queue_wait_seconds Time gateway requests waited for a free model server sequence (those that had to wait).\n# TYPE paddock_gateway_queue_wait_seconds summary\npaddock_gateway_queue_wait_seconds_sum {}\npaddock_gateway_queue_wait_seconds_count {waits}",
        waited_us as f64 / 1e6
    );
    out.push_str("# HELP paddock_instances Instances by state.\n# TYPE paddock_instances gauge\n");
    let mut by_state: HashMap<InstanceState, u64> = HashMap::new();
    if let Ok(all) = state.store.list_instances(None).await {
        for i in all {
            *by_state.entry(i.status).or_default() += 1;
        }
    }
    for s in InstanceState::ALL {
        let _ = writeln!(
            out,
            "paddock_instances{{state=\"{s}\"}} {}",
            by_state.get(&s).copied().unwrap_or(0)
        );
    }
    out
}
