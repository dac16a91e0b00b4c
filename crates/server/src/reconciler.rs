//! The reconciler's handle: handlers record desired state in the store and
//! then [`ReconcilerHandle::wake`] the loop so it acts at once rather than at
//! its next tick.

use std::sync::Arc;
use tokio::sync::Notify;

/// Wakes the reconcile loop.
#[derive(Debug, Clone, Default)]
pub struct ReconcilerHandle {
    notify: Arc<Notify>,
}

impl ReconcilerHandle {
    /// Asks the loop to run a pass now.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits for the next wake-up.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}
