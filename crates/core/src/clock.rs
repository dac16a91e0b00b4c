//! Wall-clock time for everything that expires (tokens, codes, lock-outs,
//! idle sleep). Production reads the system clock; tests hold a [`Clock`]
//! they can move forward, so expiry is tested without sleeping.

use crate::Timestamp;
use chrono::{Duration, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The system clock plus an offset that only tests change.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// Now, as this clock sees it.
    pub fn now(&self) -> Timestamp {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_all_clones() {
        let c = Clock::system();
        let c2 = c.clone();
        let before = c2.now();
        c.advance(std::time::Duration::from_secs(3600));
        assert!(c2.now() - before >= Duration::minutes(59));
    }
}
