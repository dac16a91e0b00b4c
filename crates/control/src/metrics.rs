//! The server's counters: requests and latency per route (counted by the
//! HTTP layer through [`Metrics::observe`]), tokens through the gateway,
//! wakes, failures, restarts and queue refusals. They live in memory;
//! [`crate::exposition`] renders them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub(crate) const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    pub(crate) counts: [u64; BUCKETS.len()],
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

/// Requests of one route: counts by method and status, and latency.
#[derive(Debug, Default, Clone)]
pub(crate) struct RouteStats {
    pub(crate) counts: Vec<(String, u16, u64)>,
    pub(crate) latency: Histogram,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) routes: Mutex<HashMap<String, RouteStats>>,
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
