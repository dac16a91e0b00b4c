//! [`Gateway`]: the gateway's state (the control layer, the upstream pool,
//! the route cache) and its [`GatewaySettings`].

use crate::affinity::Affinity;
use crate::cache::RouteCache;
use crate::upstream::Pool;
use axum::extract::FromRef;
use paddock_control::Control;
use std::sync::Arc;
use std::time::Duration;

/// What the gateway needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Largest request body accepted, bytes.
    pub body_limit_bytes: usize,
    /// How long a client may take to send a request, seconds.
    pub client_timeout_secs: u64,
    /// Gateway requests that may wait per instance for a free sequence.
    pub queue_per_instance: usize,
    /// How long a request waits for a free sequence, seconds.
    pub queue_timeout_secs: u64,
    /// Whether a request by model goes to the instance that last served its
    /// conversation's leading messages (see [`crate::affinity`]) rather
    /// than only the least busy.
    pub cache_affinity: bool,
}

impl GatewaySettings {
    /// [`GatewaySettings::client_timeout_secs`] as a duration (at least a second).
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs.max(1))
    }

    /// [`GatewaySettings::queue_timeout_secs`] as a duration.
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_secs(self.queue_timeout_secs)
    }
}

/// The gateway's state, cloned cheaply per request.
#[derive(Debug, Clone)]
pub struct Gateway(Arc<Inner>);

/// The parts of [`Gateway`].
#[derive(Debug)]
pub struct Inner {
    pub control: Control,
    pub settings: GatewaySettings,
    /// Connections to model servers (pooled keep-alive): the gateway's
    /// requests and the reconciler's health probes.
    pub upstream: Pool,
    /// Users' instances as routes.
    pub routes: RouteCache,
    /// The instance each conversation prefix was last routed to.
    pub affinity: Affinity,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Gateway {
    /// A gateway in front of `control`'s instances, reaching them through
    /// `upstream` (the pool the reconciler probes through too).
    pub fn new(control: Control, settings: GatewaySettings, upstream: Pool) -> Self {
        Gateway(Arc::new(Inner {
            control,
            settings,
            upstream,
            routes: RouteCache::default(),
            affinity: Affinity::default(),
        }))
    }
}

impl FromRef<Gateway> for Control {
    fn from_ref(g: &Gateway) -> Control {
        g.control.clone()
    }
}
