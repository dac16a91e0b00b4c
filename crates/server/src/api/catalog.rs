//! `/api/models` (the catalog) and `/api/compute` (the sizes it can run
//! on): thin adapters over [`paddock_control::catalog`]. Everyone signed in
//! reads the active catalog; admins see inactive models too and add, edit
//! and deactivate entries.

use super::permit::{admin, admin_or_self};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use paddock_control::catalog::{ComputeView, ModelView};
use paddock_gateway::auth::Auth;
use paddock_gateway::error::{ApiError, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{models: [...]}`.
#[derive(Debug, Serialize)]
pub struct ModelList {
    pub models: Vec<ModelView>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// Admins: include inactive models.
    #[serde(default)]
    all: bool,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<ModelList>, ApiError> {
    let c = &state.control;
    let models = match admin_or_self(c, &p, q.all) {
        Some(admin) => admin.all_models().await?,
        None => c.models().await?,
    };
    Ok(Json(ModelList { models }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(state.control.model(&p, &id).await?))
}

/// Admin: adds a model (409 if its id exists).
pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
    let m = admin(&state.control, &p)?.create_model(body).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Admin: changes some fields of a model (`is_active: false` deactivates it).
pub(crate) async fn update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Json(patch): Json<Value>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(
        admin(&state.control, &p)?.update_model(&id, patch).await?,
    ))
}

pub(crate) async fn compute(State(state): State<AppState>, Auth(_): Auth) -> Json<ComputeView> {
    Json(state.control.compute_sizes())
}
