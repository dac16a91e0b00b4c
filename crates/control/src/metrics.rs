//! The server's metrics and their Prometheus text: requests and latency
//! per route (counted by the HTTP layer through [`Metrics::observe`]),
//! tokens through the gateway, the gateway's queue, instances by state,
//! wakes, failures and restarts. Counters live in memory; instance states
//! are read from the store at scrape time.

use crate::Control;
use paddock_core::instance::InstanceState;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Requests of one route: counts by method and status, and latency.
#[derive(Debug, Default, Clone)]
struct RouteStats {
    counts: Vec<(String, u16, u64)>,
    latency: Histogram,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<HashMap<String, RouteStats>>,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub wakes: AtomicU64,
    pub failures: AtomicU64,
    pub restarts: AtomicU64,
    /// Gateway requests refused for want of a model server sequence.
    pub queue_rejected: AtomicU64,
}

impl Metrics {
    /// Counts one request; allocates only the first time a route, method
    /// and status are seen.
    pub fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let stats = match routes.get_mut(route) {
            Some(stats) => stats,
            None => routes.entry(route.to_owned()).or_default(),
        };
        match stats
            .counts
            .iter_mut()
            .find(|(m, s, _)| *s == status && m == method)
        {
            Some((_, _, n)) => *n += 1,
            None => stats.counts.push((method.to_owned(), status, 1)),
        }
        let h = &mut stats.latency;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }
}

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
