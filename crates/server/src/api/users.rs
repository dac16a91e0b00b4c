//! `/api/users`: administrators list, create, disable/enable and
//! promote/demote users. Users created here start confirmed and must pick a
//! new password at first login (NEW_PASSWORD_REQUIRED).

use super::STALE_RETRIES;
use crate::auth::extract::Admin;
use crate::auth::secrets::generated_password;
use crate::error::{ApiError, Json};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use paddock_core::store::StoreError;
use paddock_core::user::{Role, User};
use paddock_core::UserId;
use serde::Deserialize;
use serde_json::{json, Value};

fn user_json(u: &User) -> Value {
    json!({
        "user_id": u.user_id,
        "email": u.email,
        "role": u.role,
        "confirmed": u.confirmed,
        "disabled": u.disabled,
        "must_change_password": u.must_change_password,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<Value>, ApiError> {
    let users: Vec<Value> = state
        .store
        .list_users()
        .await?
        .iter()
        .map(user_json)
        .collect();
    Ok(Json(json!({ "users": users })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    email: String,
    #[serde(default)]
    role: Option<String>,
    /// When absent, one is generated and returned once.
    temporary_password: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| ApiError::validation("role: must be `admin` or `user`"))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Admin(_): Admin,
    Json(req): Json<CreateUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let role = parse_role(req.role.as_deref().unwrap_or("user"))?;
    let (password, generated) = match req.temporary_password {
        Some(p) => (p, false),
        None => (generated_password(), true),
    };
    let user = state
        .identity
        .admin_create_user(&req.email, &password, role, true)
        .await?;
    tracing::info!(user = %user.user_id, role = role.as_str(), "user created by admin");
    let mut v = user_json(&user);
    if generated {
        v["temporary_password"] = json!(password);
    }
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    disabled: Option<bool>,
    role: Option<String>,
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Admin(me): Admin,
    Path(id): Path<String>,
    Json(req): Json<UpdateUser>,
) -> Result<Json<Value>, ApiError> {
    let id = UserId::new(&id);
    let not_found = || ApiError::not_found(format!("user {id} not found"));
    let mut user = state.store.get_user(&id).await?.ok_or_else(not_found)?;
    if user.user_id == me.user_id {
        if req.disabled == Some(true) {
            return Err(ApiError::validation(
                "disabled: you cannot disable your own account",
            ));
        }
        if req.role.as_deref().is_some_and(|r| r != "admin") {
            return Err(ApiError::validation(
                "role: you cannot demote yourself; ask another admin",
            ));
        }
    }
    let role = req.role.as_deref().map(parse_role).transpose()?;
    let now = state.clock.now();
    // Compare-and-swap: a write that lands between the read and this one
    // (the user changing their password) is read again and kept.
    let mut retries = 0;
    let user = loop {
        if let Some(r) = role {
            user.role = r;
        }
        if let Some(d) = req.disabled {
            user.disabled = d;
        }
        user.updated_at = now;
        match state.store.update_user(&user).await {
            Ok(stored) => break stored,
            Err(StoreError::Stale(_)) if retries < STALE_RETRIES => {
                retries += 1;
                user = state.store.get_user(&id).await?.ok_or_else(not_found)?;
            }
            Err(e) => return Err(e.into()),
        }
    };
    if req.disabled == Some(true) {
        state
            .store
            .revoke_user_refresh_tokens(&user.user_id, now)
            .await?;
    }
    state.caches.clear_keys();
    tracing::info!(user = %user.user_id, role = user.role.as_str(), disabled = user.disabled, "user updated by admin");
    Ok(Json(user_json(&user)))
}
