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
#[derive(Debug, Serialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

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

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: state.control.keys(&p).await?,
    }))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(state.control.revoke_key(&p, &id).await?))
}
