//! API keys, the credential programs use, and authentication of bearer
//! credentials (API keys and identity access tokens) to a [`Principal`].
//! A key's secret is returned once at creation; the store keeps only its
//! hash.

use crate::{Control, Error, Result};
use paddock_core::secret::{new_api_key, sha256_hex, API_KEY_PREFIX};
use paddock_core::user::{ApiKey, ApiKeyPrincipal, Principal};
use paddock_core::{ApiKeyId, ModelId, Timestamp};
use serde::{Deserialize, Serialize};

/// Most keys one user may hold (revoked ones included).
pub const MAX_KEYS_PER_USER: usize = 200;

/// How long a key's `last_used_at` may lag, so that a busy key does not
/// write to the store on every request.
const LAST_USED_RESOLUTION_SECS: i64 = 60;

/// What a new key is to be.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    /// Catalog model ids the key may use; absent for every model.
    pub allowed_models: Option<Vec<String>>,
}

/// A key as its owner sees it (never the secret, except once at creation).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub key_id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_used_at: Option<Timestamp>,
    pub allowed_models: Option<Vec<ModelId>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

/// A key just made: its view, and the secret, shown this once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    #[serde(flatten)]
    pub key: KeyView,
    pub secret: String,
    pub message: &'static str,
}

impl KeyView {
    fn new(k: &ApiKey, now: Timestamp) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if !k.is_usable(now) {
            "expired"
        } else {
            "active"
        };
        KeyView {
            key_id: k.key_id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            allowed_models: k.allowed_models.clone(),
            revoked_at: k.revoked_at,
            status,
        }
    }
}

impl Control {
    /// Makes a key for the caller. A key made with a key limited to some
    /// models may not reach others.
    pub async fn create_key(&self, caller: &Principal, req: CreateKey) -> Result<NewKey> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::invalid("name: must be 1 to 100 characters"));
        }
        let now = self.clock.now();
        if let Some(exp) = req.expires_at {
            if exp <= now {
                return Err(Error::invalid("expires_at: must be in the future"));
            }
        }
        let allowed_models = match req.allowed_models {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(Error::invalid(
                    "allowed_models: leave it out to allow every model, or name at least one",
                ))
            }
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for m in list {
                    let id = ModelId::new(m.trim());
                    if self.store.get_model(&id).await?.is_none() {
                        return Err(Error::invalid(format!(
                            "allowed_models: {m:?} is not in the catalog"
                        )));
                    }
                    out.push(id);
                }
                Some(out)
            }
        };
        if let Some(parent) = &caller.api_key {
            if let Some(parent_allowed) = &parent.allowed_models {
                let widened = allowed_models
                    .as_ref()
                    .is_none_or(|l: &Vec<ModelId>| l.iter().any(|m| !parent_allowed.contains(m)));
                if widened {
                    return Err(Error::Forbidden(
                        "this API key is limited to some models and cannot create a key that reaches others".into(),
                    ));
                }
            }
        }
        if self.store.list_api_keys(&caller.user_id).await?.len() >= MAX_KEYS_PER_USER {
            return Err(Error::Conflict(format!(
                "you already have {MAX_KEYS_PER_USER} keys; revoke some first"
            )));
        }
        let secret = new_api_key();
        let key = ApiKey {
            key_id: ApiKeyId::generate(),
            user_id: caller.user_id.clone(),
            name: name.to_owned(),
            prefix: secret[..12].to_owned(),
            secret_hash: sha256_hex(&secret),
            created_at: now,
            expires_at: req.expires_at,
            last_used_at: None,
            allowed_models,
            revoked_at: None,
        };
        self.store.create_api_key(&key).await?;
        Ok(NewKey {
            key: KeyView::new(&key, now),
            secret,
            message: "store this secret now; it is not shown again",
        })
    }

    /// The caller's keys, newest first (revoked ones included).
    pub async fn keys(&self, caller: &Principal) -> Result<Vec<KeyView>> {
        let now = self.clock.now();
        Ok(self
            .store
            .list_api_keys(&caller.user_id)
            .await?
            .iter()
            .map(|k| KeyView::new(k, now))
            .collect())
    }

    /// Revokes one of the caller's keys; revoking twice keeps the first
    /// time. From the moment this returns, the key authenticates nothing.
    pub async fn revoke_key(&self, caller: &Principal, id: &str) -> Result<KeyView> {
        let id = ApiKeyId::new(id);
        let not_found = || Error::not_found(format!("API key {id} not found"));
        let key = match self.store.get_api_key(&id).await? {
            Some(k) if k.user_id == caller.user_id => k,
            _ => return Err(not_found()),
        };
        let now = self.clock.now();
        let key = if key.revoked_at.is_none() {
            // Only `revoked_at` is written, so no concurrent write of the key
            // (its last use) can undo it; then no principal read before it can
            // be served from, or put back into, the key cache.
            self.store.revoke_api_key(&id, now).await?;
            self.keys.clear_keys();
            // As stored: a concurrent revocation's time, if it came first.
            self.store.get_api_key(&id).await?.ok_or_else(not_found)?
        } else {
            key
        };
        Ok(KeyView::new(&key, now))
    }

    /// Resolves a bearer token (an identity access token or an API key) to
    /// the principal it stands for.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        if token.starts_with(API_KEY_PREFIX) {
            return self.authenticate_key(token).await;
        }
        Ok(self.identity.authenticate(token).await?)
    }

    async fn authenticate_key(&self, secret: &str) -> Result<Principal> {
        let invalid =
            || Error::Unauthenticated("the API key is invalid, revoked or expired".into());
        let hash = sha256_hex(secret);
        let now = self.clock.now();
        if let Some(p) = self.keys.key(&hash, now) {
            return Ok(p);
        }
        // Read before the key: a revocation from here on stops what is read
        // below from being cached.
        let generation = self.keys.key_generation();
        let read_at = std::time::Instant::now();
        let key = self
            .store
            .get_api_key_by_hash(&hash)
            .await?
            .ok_or_else(invalid)?;
        if !key.is_usable(now) {
            return Err(invalid());
        }
        let user = self
            .store
            .get_user(&key.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(invalid)?;
        if key
            .last_used_at
            .is_none_or(|t| (now - t).num_seconds() >= LAST_USED_RESOLUTION_SECS)
        {
            // Only the one column, and only while the key is not revoked: a
            // revocation since the read above stays.
            self.store.touch_api_key(&key.key_id, now).await?;
        }
        let principal = Principal {
            user_id: user.user_id,
            email: user.email,
            role: user.role,
            api_key: Some(ApiKeyPrincipal {
                key_id: key.key_id,
                allowed_models: key.allowed_models,
            }),
        };
        self.keys
            .put_key(hash, principal.clone(), key.expires_at, generation, read_at);
        Ok(principal)
    }
}
