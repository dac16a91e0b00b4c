//! `/api/keys`: API keys, the credential programs use. The secret is
//! returned once at creation; the store keeps only its hash.

use crate::auth::extract::Auth;
use crate::auth::secrets::{new_api_key, sha256_hex};
use crate::error::{ApiError, Json};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use paddock_core::user::ApiKey;
use paddock_core::{ApiKeyId, ModelId, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most keys one user may hold (revoked ones included).
const MAX_KEYS_PER_USER: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    name: String,
    expires_at: Option<Timestamp>,
    allowed_models: Option<Vec<String>>,
}

fn key_json(k: &ApiKey, now: Timestamp) -> Value {
    let status = if k.revoked_at.is_some() {
        "revoked"
    } else if !k.is_usable(now) {
        "expired"
    } else {
        "active"
    };
    json!({
        "key_id": k.key_id,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "last_used_at": k.last_used_at,
        "allowed_models": k.allowed_models,
        "revoked_at": k.revoked_at,
        "status": status,
    })
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(req): Json<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation("name: must be 1 to 100 characters"));
    }
    let now = state.clock.now();
    if let Some(exp) = req.expires_at {
        if exp <= now {
            return Err(ApiError::validation("expires_at: must be in the future"));
        }
    }
    let allowed_models = match req.allowed_models {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ApiError::validation(
                "allowed_models: leave it out to allow every model, or name at least one",
            ))
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for m in list {
                let id = ModelId::new(m.trim());
                if state.store.get_model(&id).await?.is_none() {
                    return Err(ApiError::validation(format!(
                        "allowed_models: {m:?} is not in the catalog"
                    )));
                }
                out.push(id);
            }
            Some(out)
        }
    };
    // A key made with a restricted key may not widen what that key reaches.
    if let Some(parent) = &p.api_key {
        if let Some(parent_allowed) = &parent.allowed_models {
            let widened = allowed_models
                .as_ref()
                .is_none_or(|l: &Vec<ModelId>| l.iter().any(|m| !parent_allowed.contains(m)));
            if widened {
                return Err(ApiError::Forbidden(
                    "this API key is limited to some models and cannot create a key that reaches others".into(),
                ));
            }
        }
    }
    if state.store.list_api_keys(&p.user_id).await?.len() >= MAX_KEYS_PER_USER {
        return Err(ApiError::Conflict(format!(
            "you already have {MAX_KEYS_PER_USER} keys; revoke some first"
        )));
    }
    let secret = new_api_key();
    let key = ApiKey {
        key_id: ApiKeyId::generate(),
        user_id: p.user_id.clone(),
        name: name.to_owned(),
        prefix: secret[..12].to_owned(),
        secret_hash: sha256_hex(&secret),
        created_at: now,
        expires_at: req.expires_at,
        last_used_at: None,
        allowed_models,
        revoked_at: None,
    };
    state.store.create_api_key(&key).await?;
    let mut v = key_json(&key, now);
    v["secret"] = json!(secret);
    v["message"] = json!("store this secret now; it is not shown again");
    Ok((StatusCode::CREATED, Json(v)))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    let keys: Vec<Value> = state
        .store
        .list_api_keys(&p.user_id)
        .await?
        .iter()
        .map(|k| key_json(k, now))
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = ApiKeyId::new(&id);
    let not_found = || ApiError::not_found(format!("API key {id} not found"));
    let key = match state.store.get_api_key(&id).await? {
        Some(k) if k.user_id == p.user_id => k,
        _ => return Err(not_found()),
    };
    let now = state.clock.now();
    let key = if key.revoked_at.is_none() {
        // Only `revoked_at` is written, so no concurrent write of the key
        // (its last use) can undo it; then no principal read before it can
        // be served from, or put back into, the key cache.
        state.store.revoke_api_key(&id, now).await?;
        state.caches.clear_keys();
        // As stored: a concurrent revocation's time, if it came first.
        state.store.get_api_key(&id).await?.ok_or_else(not_found)?
    } else {
        key
    };
    Ok(Json(key_json(&key, now)))
}
