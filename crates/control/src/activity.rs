//! Gateway activity per instance, kept in memory: requests in flight, the
//! time the last one ended, and the model server's sequences. The
//! reconciler reads it to decide when an instance is idle (an open stream
//! counts as activity) and the gateway to pick the least busy instance.
//! Writing it to the store on every request would put a write on the hot
//! path; the record's `last_active_at` is updated when the instance goes to
//! sleep instead.
//!
//! Sequences: a model server decodes a few requests at once (its parallel
//! sequences). A request that runs the model takes one of them for its
//! whole response ([`Activity::try_sequence`]); when none is free it waits
//! here, in a bounded queue per instance, up to a deadline
//! ([`Activity::wait_sequence`]), instead of being refused by the model
//! server, so a burst is served in turn rather than answered 503.

use paddock_core::{Clock, InstanceId, Timestamp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
struct Entry {
    inflight: u32,
    last: Option<Timestamp>,
    /// The model server's free sequences.
    sequences: Arc<Semaphore>,
    /// Requests waiting for one.
    waiting: u32,
}

/// How requests wait for sequences.
#[derive(Debug, Clone, Copy)]
pub struct Queueing {
    /// Sequences each model server decodes at once.
    pub sequences: usize,
    /// Requests that may wait per instance.
    pub max_waiting: u32,
}

impl Default for Queueing {
    fn default() -> Self {
        Queueing {
            sequences: 4,
            max_waiting: 512,
        }
    }
}

/// Requests in flight and last activity, per instance.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    entries: Arc<Mutex<HashMap<InstanceId, Entry>>>,
    clock: Clock,
    queueing: Queueing,
    /// Waits for a sequence that ended, and their total length.
    waits: Arc<(AtomicU64, AtomicU64)>,
}

/// Why a request got no sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The queue was full.
    Full,
    /// None came free before the deadline.
    TimedOut,
}

/// One of an instance's sequences, held until dropped.
#[derive(Debug)]
pub struct Sequence(#[allow(dead_code)] OwnedSemaphorePermit);

impl Entry {
    fn new(queueing: &Queueing) -> Self {
        Entry {
            inflight: 0,
            last: None,
            sequences: Arc::new(Semaphore::new(queueing.sequences.max(1))),
            waiting: 0,
        }
    }
}

impl Activity {
    pub fn new(clock: Clock) -> Self {
        Self::with_queueing(clock, Queueing::default())
    }

    pub fn with_queueing(clock: Clock, queueing: Queueing) -> Self {
        Activity {
            entries: Arc::default(),
            clock,
            queueing,
            waits: Arc::default(),
        }
    }

    /// A free sequence of the instance, if there is one now.
    pub fn try_sequence(&self, id: &InstanceId) -> Option<Sequence> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = self.entry(&mut map, id);
        e.sequences.clone().try_acquire_owned().ok().map(Sequence)
    }

    /// Waits for a sequence of the instance until `deadline`, in turn with
    /// the other waiting requests. Dropping the future (the client went
    /// away) leaves the queue.
    pub async fn wait_sequence(
        &self,
        id: &InstanceId,
        deadline: tokio::time::Instant,
    ) -> Result<Sequence, Busy> {
        let sequences = {
            let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let max_waiting = self.queueing.max_waiting;
            let e = self.entry(&mut map, id);
            if let Ok(p) = e.sequences.clone().try_acquire_owned() {
                return Ok(Sequence(p));
            }
            if e.waiting >= max_waiting {
                return Err(Busy::Full);
            }
            e.waiting += 1;
            e.sequences.clone()
        };
        let started = std::time::Instant::now();
        let _waiting = Waiting { activity: self, id };
        let got = tokio::time::timeout_at(deadline, sequences.acquire_owned()).await;
        let waited = started.elapsed();
        self.waits.0.fetch_add(1, Ordering::Relaxed);
        self.waits
            .1
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        match got {
            Ok(Ok(p)) => Ok(Sequence(p)),
            // Closed: never done, but a closed queue is no sequence.
            Ok(Err(_)) | Err(_) => Err(Busy::TimedOut),
        }
    }

    /// Requests waiting for a sequence, over all instances.
    pub fn waiting(&self) -> u64 {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(|e| u64::from(e.waiting)).sum()
    }

    /// Waits that ended (with a sequence or not), and their total length
    /// in microseconds.
    pub fn waits(&self) -> (u64, u64) {
        (
            self.waits.0.load(Ordering::Relaxed),
            self.waits.1.load(Ordering::Relaxed),
        )
    }

    /// The entry of an instance, made the first time it is seen (looked
    /// up before inserting, so the id is copied only then).
    fn entry<'m>(&self, map: &'m mut HashMap<InstanceId, Entry>, id: &InstanceId) -> &'m mut Entry {
        if !map.contains_key(id) {
            map.insert(id.clone(), Entry::new(&self.queueing));
        }
        map.get_mut(id).expect("inserted above")
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn begin(&self, id: &InstanceId) -> ActivityGuard {
        self.begin_at(id, self.clock.now())
    }

    /// [`Activity::begin`] with the time already read.
    pub fn begin_at(&self, id: &InstanceId, now: Timestamp) -> ActivityGuard {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = self.entry(&mut map, id);
        e.inflight += 1;
        e.last = Some(now);
        ActivityGuard {
            activity: self.clone(),
            id: id.clone(),
            sequence: None,
        }
    }

    /// Records activity without a request in flight (e.g. a wake).
    pub fn touch(&self, id: &InstanceId) {
        let now = self.clock.now();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.entry(&mut map, id).last = Some(now);
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

/// Counts a request waiting for a sequence until dropped.
struct Waiting<'a> {
    activity: &'a Activity,
    id: &'a InstanceId,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self
            .activity
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(self.id) {
            e.waiting = e.waiting.saturating_sub(1);
        }
    }
}

/// Ends one in-flight request when dropped (completion, error or client
/// disconnect alike).
#[derive(Debug)]
pub struct ActivityGuard {
    activity: Activity,
    id: InstanceId,
    /// The model server sequence the request runs in, if it runs the
    /// model: given back with the guard.
    sequence: Option<Sequence>,
}

impl ActivityGuard {
    /// Holds `sequence` until the request ends.
    pub fn hold(&mut self, sequence: Sequence) {
        self.sequence = Some(sequence);
    }
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

    #[tokio::test]
    async fn requests_wait_in_turn_for_a_sequence_up_to_a_bound() {
        let a = Activity::with_queueing(
            Clock::system(),
            Queueing {
                sequences: 2,
                max_waiting: 1,
            },
        );
        let id = InstanceId::new("i-1");
        let s1 = a.try_sequence(&id).expect("free");
        let _s2 = a.try_sequence(&id).expect("free");
        assert!(a.try_sequence(&id).is_none(), "both taken");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        // One waits; the next finds the queue full.
        let waiter = {
            let (a, id) = (a.clone(), id.clone());
            tokio::spawn(async move { a.wait_sequence(&id, deadline).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(a.waiting(), 1);
        assert_eq!(a.wait_sequence(&id, deadline).await.err(), Some(Busy::Full));
        // A sequence comes free: the waiter gets it.
        drop(s1);
        let _s3 = waiter.await.unwrap().expect("a sequence");
        assert_eq!(a.waiting(), 0);
        // Nothing comes free: the deadline passes.
        let late = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        assert_eq!(a.wait_sequence(&id, late).await.err(), Some(Busy::TimedOut));
        assert_eq!(a.waits().0, 2);
    }
}
