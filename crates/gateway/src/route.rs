//! [`Route`]: what the gateway needs of an instance to forward to it, read
//! from the instance record once and kept in the route cache.

use crate::upstream::Upstream;
use paddock_core::instance::{DesiredState, Instance, InstanceState};
use paddock_core::{InstanceId, ModelId};

/// What the gateway needs of an instance to route to it.
#[derive(Debug, Clone)]
pub struct Route {
    pub instance_id: InstanceId,
    pub model_id: ModelId,
    pub status: InstanceState,
    pub desired: DesiredState,
    pub upstream: Option<Upstream>,
}

impl Route {
    /// Whether requests can be forwarded to it now (RUNNING, with an
    /// endpoint), without a wake.
    pub(crate) fn is_ready(&self) -> bool {
        self.status == InstanceState::Running && self.upstream.is_some()
    }
}

impl From<&Instance> for Route {
    fn from(i: &Instance) -> Self {
        Route {
            instance_id: i.instance_id.clone(),
            model_id: i.model_id.clone(),
            status: i.status,
            desired: i.desired,
            upstream: i.upstream_url.as_deref().and_then(|url| {
                Upstream::parse(url)
                    .inspect_err(|e| tracing::warn!(instance = %i.instance_id, error = %e, "unusable endpoint"))
                    .ok()
            }),
        }
    }
}
