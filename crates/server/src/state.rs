//! [`AppState`]: what every handler can reach, cloned cheaply per request.

use crate::activity::Activity;
use crate::cache::Caches;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reconciler::ReconcilerHandle;
use paddock_core::compute::ComputeTable;
use paddock_core::driver::ComputeDriver;
use paddock_core::identity::Identity;
use paddock_core::store::Store;
use std::sync::Arc;

/// Shared state of the running server.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub identity: Arc<dyn Identity>,
    pub compute: ComputeTable,
    pub clock: Clock,
    pub reconciler: ReconcilerHandle,
    /// Where instances run.
    pub driver: Arc<dyn ComputeDriver>,
    /// Gateway requests in flight and last activity per instance.
    pub activity: Activity,
    pub metrics: Metrics,
    /// Connections to model servers (pooled keep-alive): the gateway's
    /// requests and the reconciler's health probes.
    pub upstream: crate::upstream::Pool,
    /// Hot-path caches for the gateway.
    pub caches: Caches,
    /// Gateway usage records on their way to the store.
    pub usage: crate::usage::UsageWriter,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}
