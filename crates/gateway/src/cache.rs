//! The gateway's route cache, so a proxied request does not read the
//! store: a user's instances as routes, tagged with the instance-change
//! counter (`control::InstanceBus::generation`), which every instance
//! write bumps; a new counter value means a fresh read.

use crate::route::Route;
use paddock_core::UserId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries kept before the cache is emptied (bounds memory).
const MAX_ENTRIES: usize = 10_000;

/// A user's routes, tagged with the change counter they were read at.
type CachedRoutes = (u64, Arc<[Route]>);

/// Users' routes.
#[derive(Debug, Default)]
pub struct RouteCache {
    routes: Mutex<HashMap<UserId, CachedRoutes>>,
}

impl RouteCache {
    /// A user's instances if cached at `generation`.
    pub fn routes(&self, user: &UserId, generation: u64) -> Option<Arc<[Route]>> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .get(user)
            .filter(|(g, _)| *g == generation)
            .map(|(_, v)| v.clone())
    }

    pub fn put_routes(&self, user: UserId, generation: u64, instances: Arc<[Route]>) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.len() >= MAX_ENTRIES {
            routes.clear();
        }
        routes.insert(user, (generation, instances));
    }
}
