//! Runtime counters and gauges, rendered in the Prometheus text format on
//! `GET /metrics`. The batch scheduler and the HTTP handlers update them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds, in seconds, of the time-to-first-token histogram buckets.
const TTFT_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Process-wide runtime metrics; all updates are lock-free.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub active: AtomicU64,
    pub queued: AtomicU64,
    ttft_buckets: [AtomicU64; TTFT_BUCKETS.len()],
    ttft_count: AtomicU64,
    ttft_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records one request's time from arrival to its first generated token.
    pub fn observe_ttft(&self, seconds: f64) {
        for (bucket, bound) in self.ttft_buckets.iter().zip(TTFT_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.ttft_count.fetch_add(1, Relaxed);
        // Whole microseconds are plenty for a latency histogram.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.ttft_sum_micros
            .fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self, model: &str) -> String {
        let mut out = String::with_capacity(2048);
        let label = format!("model=\"{}\"", model.replace('"', "'"));
        let counters = [
            (
                "paddock_runtime_requests_total",
                "Generation requests accepted.",
                &self.requests,
            ),
            (
                "paddock_runtime_rejected_total",
                "Requests refused with 503 because the queue was full.",
                &self.rejected,
            ),
            (
                "paddock_runtime_prompt_tokens_total",
                "Prompt tokens evaluated.",
                &self.prompt_tokens,
            ),
            (
                "paddock_runtime_generated_tokens_total",
                "Tokens generated.",
                &self.generated_tokens,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{label}}} {}",
                value.load(Relaxed)
            );
        }
        let gauges = [
            (
                "paddock_runtime_active_sequences",
                "Sequences decoding now.",
                &self.active,
            ),
            (
                "paddock_runtime_queued_sequences",
                "Requests waiting for a free sequence.",
                &self.queued,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{label}}} {}",
                value.load(Relaxed)
            );
        }
        let name = "paddock_runtime_time_to_first_token_seconds";
        let _ = writeln!(out, "# HELP {name} Time from request arrival to the first generated token.\n# TYPE {name} histogram");
        for (bucket, bound) in self.ttft_buckets.iter().zip(TTFT_BUCKETS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{label},le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.ttft_count.load(Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let sum = self.ttft_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {count}\n{name}_sum{{{label}}} {sum}\n{name}_count{{{label}}} {count}");
        out
    }
}
