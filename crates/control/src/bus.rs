//! [`InstanceBus`]: the instance-change bus. Whoever writes an instance
//! record announces it (caches and waiters see a new generation), and
//! wakes the reconciler when the change needs acting on.

use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// The instance-change bus: wakes the loop, and tells waiters and caches
/// that instance records changed.
#[derive(Debug, Clone)]
pub struct InstanceBus {
    notify: Arc<Notify>,
    changed: watch::Sender<u64>,
    lease: Arc<Lease>,
}

/// This replica's claim on reconciling: its holder id in the store's
/// lease, and whether it holds the lease now.
#[derive(Debug)]
struct Lease {
    holder: String,
    held: std::sync::atomic::AtomicBool,
}

impl Default for InstanceBus {
    fn default() -> Self {
        InstanceBus {
            notify: Arc::default(),
            changed: watch::channel(0).0,
            lease: Arc::new(Lease {
                holder: uuid::Uuid::new_v4().to_string(),
                held: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }
}

impl InstanceBus {
    /// This replica's holder id for the reconciler's lease.
    pub fn holder(&self) -> &str {
        &self.lease.holder
    }

    /// Whether this replica reconciles (holds the lease).
    pub fn is_leader(&self) -> bool {
        self.lease.held.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_leader(&self, held: bool) {
        self.lease
            .held
            .store(held, std::sync::atomic::Ordering::Release);
    }

    /// Asks the loop to run a pass now.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits for the next wake-up.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// The change counter (bumped by [`Self::announce`]).
    pub fn generation(&self) -> u64 {
        *self.changed.borrow()
    }

    /// A receiver that sees a new value whenever a pass changed something.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Tells waiters and caches that instance records changed. Every
    /// writer of instance records calls it.
    pub fn announce(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}
