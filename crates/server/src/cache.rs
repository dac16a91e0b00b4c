//! Hot-path caches for the gateway, so a proxied request does not pay for
//! several store round trips:
//! - API keys: the principal for a key hash, kept 5 seconds and dropped on
//!   any key revocation or user change;
//! - routing: a user's instances, tagged with the reconciler's change
//!   counter, which every instance write bumps; a new counter value means a
//!   fresh read.

use crate::gateway::Route;
use paddock_core::user::Principal;
use paddock_core::{Timestamp, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an API key's principal is trusted without a store read.
pub const KEY_TTL: Duration = Duration::from_secs(5);
/// Entries kept before a cache is emptied (bounds memory).
const MAX_ENTRIES: usize = 10_000;

/// A cached key: its principal, the key's own expiry, and when it was read.
type CachedKey = (Principal, Option<Timestamp>, Instant);

/// A user's routes, tagged with the change counter they were read at.
type CachedRoutes = (u64, Arc<[Route]>);

/// The gateway's caches.
#[derive(Debug, Default)]
pub struct Caches {
    keys: Mutex<HashMap<String, CachedKey>>,
    /// Bumped whenever the cached keys are dropped, so that copies kept
    /// elsewhere (a connection's last key) are known to be stale.
    key_generation: AtomicU64,
    routes: Mutex<HashMap<UserId, CachedRoutes>>,
}

impl Caches {
    /// The principal for a key hash, if cached recently and the key has
    /// not expired by `now`.
    pub fn key(&self, hash: &str, now: Timestamp) -> Option<Principal> {
        self.key_entry(hash, now).map(|(p, _)| p)
    }

    /// Like [`Caches::key`], with the key's own expiry.
    pub fn key_entry(&self, hash: &str, now: Timestamp) -> Option<(Principal, Option<Timestamp>)> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(hash)
            .filter(|(_, expires, at)| at.elapsed() < KEY_TTL && expires.is_none_or(|e| e > now))
            .map(|(p, expires, _)| (p.clone(), *expires))
    }

    /// Changes whenever cached keys are dropped (see [`Caches::clear_keys`]).
    pub fn key_generation(&self) -> u64 {
        self.key_generation.load(Ordering::Acquire)
    }

    pub fn put_key(&self, hash: String, p: Principal, expires_at: Option<Timestamp>) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_ENTRIES {
            keys.clear();
        }
        keys.insert(hash, (p, expires_at, Instant::now()));
    }

    /// Forgets every cached key (a key was revoked or a user changed).
    pub fn clear_keys(&self) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        self.key_generation.fetch_add(1, Ordering::AcqRel);
        keys.clear();
    }

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
