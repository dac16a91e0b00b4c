//! The server's counters, kept in `prometheus-client` metrics: requests
//! and latency per route (counted by the HTTP layer through
//! [`Metrics::observe`]), tokens through the gateway, wakes, failures,
//! restarts and queue refusals. [`crate::exposition`] renders them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One kind of request: method, route template and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// A route template.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The server's counters; cloning shares them.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub wakes: Counter,
    pub failures: Counter,
    pub restarts: Counter,
    /// Gateway requests refused for want of a model server sequence.
    pub queue_rejected: Counter,
    /// Usage records dropped because the usage writer's queue was full.
    usage_dropped: Counter,
    /// How long each reconcile pass over every instance took.
    pub reconcile_pass: Histogram,
    /// When a dropped usage record was last logged (seconds on `started`).
    usage_dropped_logged: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: std::time::Instant,
}

/// Dropped usage records are logged at most this often.
const DROP_LOG_EVERY_SECS: u64 = 10;

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            prompt_tokens: Counter::default(),
            completion_tokens: Counter::default(),
            wakes: Counter::default(),
            failures: Counter::default(),
            restarts: Counter::default(),
            queue_rejected: Counter::default(),
            usage_dropped: Counter::default(),
            reconcile_pass: latency_histogram(),
            usage_dropped_logged: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            started: std::time::Instant::now(),
        }
    }
}

impl Metrics {
    /// Counts a usage record that was dropped; returns the count so far
    /// when it is time to say so in the log (the first drop, then at most
    /// every 10 s), so that a store slower than the gateway is seen without
    /// a line per request.
    pub fn usage_dropped(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let total = self.usage_dropped.inc() + 1;
        let now = self.started.elapsed().as_secs();
        let last = self.usage_dropped_logged.load(Ordering::Relaxed);
        let due = last == u64::MAX || now >= last + DROP_LOG_EVERY_SECS;
        (due && self
            .usage_dropped_logged
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok())
        .then_some(total)
    }

    /// Counts one request and its latency to the response head.
    pub fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(secs);
    }

    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.inc_by(prompt);
        self.completion_tokens.inc_by(completion);
    }

    /// Registers every counter (shared, not copied) with `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "paddock_http_requests",
            "HTTP requests by method, route and status",
            self.requests.clone(),
        );
        registry.register(
            "paddock_http_request_duration_seconds",
            "Time to the response head, by route",
            self.latency.clone(),
        );
        registry.register(
            "paddock_reconcile_pass_duration_seconds",
            "Time of one reconcile pass over every instance (the leader's), with its driver calls",
            self.reconcile_pass.clone(),
        );
        let counters = [
            (
                "paddock_gateway_prompt_tokens",
                "Prompt tokens metered by the gateway",
                &self.prompt_tokens,
            ),
            (
                "paddock_gateway_completion_tokens",
                "Completion tokens metered by the gateway",
                &self.completion_tokens,
            ),
            (
                "paddock_instance_wakes",
                "Sleeping instances woken by a request",
                &self.wakes,
            ),
            (
                "paddock_instance_failures",
                "Instances that failed to start or died",
                &self.failures,
            ),
            (
                "paddock_instance_restarts",
                "Failed instances restarted",
                &self.restarts,
            ),
            (
                "paddock_gateway_queue_rejected",
                "Gateway requests answered 503 because no model server sequence came free (queue full or wait too long)",
                &self.queue_rejected,
            ),
            (
                "paddock_usage_records_dropped",
                "Usage records dropped because the store did not keep up with the gateway (the writer's queue was full)",
                &self.usage_dropped,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_usage_is_counted_always_and_logged_now_and_then() {
        let m = Metrics::default();
        assert_eq!(m.usage_dropped(), Some(1), "the first drop is logged");
        assert_eq!(m.usage_dropped(), None);
        assert_eq!(m.usage_dropped(), None);
        assert_eq!(m.usage_dropped.get(), 3);
    }
}
