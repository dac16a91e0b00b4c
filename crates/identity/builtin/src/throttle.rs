//! Login throttling: after `max_failures` failed logins for one email, that
//! email is locked out for `lockout`, doubling with each further failure
//! (capped at 15 minutes). A success clears the record. In memory: a
//! restart forgives, which is acceptable for a single control plane.

use paddock_core::Clock;
use paddock_core::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default, Clone)]
struct Entry {
    failures: u32,
    locked_until: Option<Timestamp>,
}

/// Failed-login bookkeeping per email.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    lockout_secs: u64,
    clock: Clock,
    entries: Mutex<HashMap<String, Entry>>,
}

const MAX_LOCKOUT_SECS: u64 = 15 * 60;

impl LoginThrottle {
    pub fn new(max_failures: u32, lockout_secs: u64, clock: Clock) -> Self {
        LoginThrottle {
            max_failures: max_failures.max(1),
            lockout_secs,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `email` may try again, if it is locked out.
    pub fn retry_after(&self, email: &str) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let until = entries.get(email)?.locked_until?;
        let left = (until - self.clock.now()).num_milliseconds();
        (left > 0).then(|| (left as u64).div_ceil(1000))
    }

    /// Records a failure; returns the lock-out in seconds if one starts now.
    pub fn failed(&self, email: &str) -> Option<u64> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 100_000 {
            // Bound memory under a spray of random emails.
            entries.clear();
        }
        let e = entries.entry(email.to_owned()).or_default();
        e.failures += 1;
        if e.failures >= self.max_failures {
            let extra = (e.failures - self.max_failures).min(16);
            let secs = (self.lockout_secs << extra).min(MAX_LOCKOUT_SECS);
            e.locked_until = Some(self.clock.now() + chrono::Duration::seconds(secs as i64));
            return Some(secs);
        }
        None
    }

    /// Clears the record after a successful login.
    pub fn succeeded(&self, email: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(email);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn locks_after_failures_and_expires() {
        let clock = Clock::system();
        let t = LoginThrottle::new(3, 30, clock.clone());
        assert_eq!(t.failed("a"), None);
        assert_eq!(t.failed("a"), None);
        assert_eq!(t.failed("a"), Some(30));
        assert!(t.retry_after("a").unwrap() <= 30);
        assert_eq!(t.retry_after("b"), None);
        clock.advance(Duration::from_secs(31));
        assert_eq!(t.retry_after("a"), None);
        assert_eq!(t.failed("a"), Some(60));
        t.succeeded("a");
        assert_eq!(t.retry_after("a"), None);
    }
}
