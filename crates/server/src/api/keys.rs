//! `/api/keys`: API keys, the credential programs use; thin adapters over
//! [`paddock_control::keys`]. The secret is returned once at creation.

use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use paddock_control::keys::{CreateKey, KeyView, NewKey};
use paddock_gateway::auth::Auth;
use paddock_gateway::error::{ApiError, Json};
use serde::Serialize;

/// `{keys: [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[utoipa::path(post, path = "/api/keys", summary = "Create an API key (the secret is shown once)", tag = "keys",
    request_body(content = CreateKey, example = json!({"name": "laptop", "allowed_models": ["gemma3:270m"]})),
    responses((status = 201, description = "Create an API key (the secret is shown once)", body = NewKey)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(req): Json<CreateKey>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.control.create_key(&p, req).await?),
    ))
}

#[utoipa::path(get, path = "/api/keys", summary = "Your API keys", tag = "keys",
    responses((status = 200, description = "Your API keys", body = KeyList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: state.control.keys(&p).await?,
    }))
}

#[utoipa::path(delete, path = "/api/keys/{key_id}", summary = "Revoke an API key", tag = "keys", params(("key_id" = String, Path)),
    responses((status = 200, description = "Revoke an API key", body = KeyView)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(state.control.revoke_key(&p, &id).await?))
}
