//! Gateway activity per instance, kept in memory: requests in flight and
//! the time the last one ended. The reconciler reads it to decide when an
//! instance is idle (an open stream counts as activity) and the gateway to
//! pick the least busy instance. Writing it to the store on every request
//! would put a write on the hot path; the record's `last_active_at` is
//! updated when the instance goes to sleep instead.

use crate::clock::Clock;
use paddock_core::{InstanceId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    inflight: u32,
    last: Option<Timestamp>,
}

/// Requests in flight and last activity, per instance.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    entries: Arc<Mutex<HashMap<InstanceId, Entry>>>,
    clock: Clock,
}

impl Activity {
    pub fn new(clock: Clock) -> Self {
        Activity {
            entries: Arc::default(),
            clock,
        }
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn begin(&self, id: &InstanceId) -> ActivityGuard {
        self.begin_at(id, self.clock.now())
    }

    /// [`Activity::begin`] with the time already read.
    pub fn begin_at(&self, id: &InstanceId, now: Timestamp) -> ActivityGuard {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up before inserting, so the id is copied only the first time.
        let e = match map.get_mut(id) {
            Some(e) => e,
            None => map.entry(id.clone()).or_default(),
        };
        e.inflight += 1;
        e.last = Some(now);
        ActivityGuard {
            activity: self.clone(),
            id: id.clone(),
        }
    }

    /// Records activity without a request in flight (e.g. a wake).
    pub fn touch(&self, id: &InstanceId) {
        let now = self.clock.now();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.clone()).or_default().last = Some(now);
    }

    pub fn inflight(&self, id: &InstanceId) -> u32 {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map_or(0, |e| e.inflight)
    }

    pub fn last_active(&self, id: &InstanceId) -> Option<Timestamp> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .and_then(|e| e.last)
    }

    /// Forgets an instance (stopped or deleted).
    pub fn forget(&self, id: &InstanceId) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Ends one in-flight request when dropped (completion, error or client
/// disconnect alike).
#[derive(Debug)]
pub struct ActivityGuard {
    activity: Activity,
    id: InstanceId,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let now = self.activity.clock.now();
        let mut map = self
            .activity
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(&self.id) {
            e.inflight = e.inflight.saturating_sub(1);
            e.last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_in_flight_requests() {
        let a = Activity::new(Clock::system());
        let id = InstanceId::new("i-1");
        assert_eq!(a.inflight(&id), 0);
        let g1 = a.begin(&id);
        let g2 = a.begin(&id);
        assert_eq!(a.inflight(&id), 2);
        drop(g1);
        assert_eq!(a.inflight(&id), 1);
        drop(g2);
        assert_eq!(a.inflight(&id), 0);
        assert!(a.last_active(&id).is_some());
    }
}
