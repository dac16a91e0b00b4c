//! The API-key cache, so an authenticated request does not pay for
//! several store round trips: the principal for a key hash, kept 5 seconds
//! and dropped on any key revocation or user change. Each drop bumps a
//! generation, and a principal read from the store is cached only if no
//! drop happened since before that read, so a revocation is never undone
//! by a read that was under way when it happened.

use paddock_core::user::Principal;
use paddock_core::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an API key's principal is trusted without a store read.
pub const KEY_TTL: Duration = Duration::from_secs(5);
/// Entries kept before a cache is emptied (bounds memory).
const MAX_ENTRIES: usize = 10_000;

/// A cached key: its principal, the key's own expiry, and when it was read
/// from the store.
pub type CachedKey = (Principal, Option<Timestamp>, Instant);

/// Principals of API keys read recently.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<String, CachedKey>>,
    /// Bumped (under the `keys` lock) whenever the cached keys are dropped,
    /// so that a principal read before the drop is not cached after it and
    /// copies kept elsewhere (a connection's last key) are known to be stale.
    key_generation: AtomicU64,
}

impl KeyCache {
    /// The principal for a key hash, if cached recently and the key has
    /// not expired by `now`.
    pub fn key(&self, hash: &str, now: Timestamp) -> Option<Principal> {
        self.key_entry(hash, now).map(|(p, _, _)| p)
    }

    /// Like [`KeyCache::key`], with the key's own expiry and when the
    /// principal was read from the store.
    pub fn key_entry(&self, hash: &str, now: Timestamp) -> Option<CachedKey> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(hash)
            .filter(|(_, expires, at)| at.elapsed() < KEY_TTL && expires.is_none_or(|e| e > now))
            .cloned()
    }

    /// Changes whenever cached keys are dropped (see [`KeyCache::clear_keys`]).
    /// Read it before reading a key from the store, and hand it to
    /// [`KeyCache::put_key`].
    pub fn key_generation(&self) -> u64 {
        self.key_generation.load(Ordering::Acquire)
    }

    /// Caches the principal for a key hash, read from the store at `read_at`
    /// after [`KeyCache::key_generation`] returned `generation`. Nothing is
    /// cached if the keys were dropped since (a revocation or user change
    /// may have landed after the read), so a stale principal never outlives
    /// the change that made it stale. Returns whether it was cached.
    pub fn put_key(
        &self,
        hash: String,
        p: Principal,
        expires_at: Option<Timestamp>,
        generation: u64,
        read_at: Instant,
    ) -> bool {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        // `clear_keys` bumps the generation under this lock, so the check
        // and the insert see either all of a clear or none of it.
        if self.key_generation.load(Ordering::Acquire) != generation {
            return false;
        }
        if keys.len() >= MAX_ENTRIES {
            keys.clear();
        }
        keys.insert(hash, (p, expires_at, read_at));
        true
    }

    /// Forgets every cached key (a key was revoked or a user changed).
    /// Call it after the change is in the store: from then on, no
    /// principal read before the change can be cached.
    pub fn clear_keys(&self) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        self.key_generation.fetch_add(1, Ordering::AcqRel);
        keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_core::user::Role;
    use paddock_core::UserId;
    use std::sync::Arc;

    fn principal() -> Principal {
        Principal {
            user_id: UserId::generate(),
            email: "a@example.com".into(),
            role: Role::User,
            api_key: None,
        }
    }

    #[test]
    fn a_key_read_before_a_clear_is_not_cached_after_it() {
        let caches = KeyCache::default();
        let now = chrono::Utc::now();
        // A request reads the generation, then the key from the store...
        let generation = caches.key_generation();
        let read_at = Instant::now();
        // ...meanwhile the key is revoked and the cache cleared...
        caches.clear_keys();
        // ...and then the request caches what it read before the revocation.
        assert!(!caches.put_key("h".into(), principal(), None, generation, read_at));
        assert!(caches.key("h", now).is_none(), "a revoked key was cached");

        // A read that began after the clear is cached.
        let generation = caches.key_generation();
        assert!(caches.put_key("h".into(), principal(), None, generation, Instant::now()));
        assert!(caches.key("h", now).is_some());
        caches.clear_keys();
        assert!(caches.key("h", now).is_none());
    }

    #[test]
    fn clears_racing_puts_never_leave_a_stale_entry() {
        let caches = Arc::new(KeyCache::default());
        let now = chrono::Utc::now();
        for round in 0..200 {
            let generation = caches.key_generation();
            let read_at = Instant::now();
            let clearer = {
                let caches = caches.clone();
                std::thread::spawn(move || caches.clear_keys())
            };
            caches.put_key("h".into(), principal(), None, generation, read_at);
            clearer.join().unwrap();
            // The read began before the clear, so whichever came first the
            // entry must be gone now.
            assert!(caches.key("h", now).is_none(), "round {round}");
        }
    }

    #[test]
    fn entries_end_with_their_key_or_their_time() {
        let caches = KeyCache::default();
        let now = chrono::Utc::now();
        let g = caches.key_generation();
        caches.put_key("a".into(), principal(), Some(now), g, Instant::now());
        assert!(caches.key("a", now).is_none(), "expired key");
        let old = Instant::now()
            .checked_sub(KEY_TTL)
            .expect("uptime over 5 s");
        caches.put_key("b".into(), principal(), None, g, old);
        assert!(caches.key("b", now).is_none(), "read too long ago");
        let entry = caches.key_entry("c", now);
        assert!(entry.is_none());
    }
}
