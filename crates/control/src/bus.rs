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
}

impl Default for InstanceBus {
    fn default() -> Self {
        InstanceBus {
            notify: Arc::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl InstanceBus {
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
