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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelView>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// Admins: include inactive models.
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/api/models", summary = "The model catalog (admins: ?all=true includes inactive models)", tag = "catalog", params(("all" = Option<bool>, Query, description = "Admins: include inactive models")),
    responses((status = 200, description = "The model catalog (admins: ?all=true includes inactive models)", body = ModelList)))]
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

#[utoipa::path(get, path = "/api/models/{model_id}", summary = "One catalog model", tag = "catalog", params(("model_id" = String, Path, example = "gemma3:270m")),
    responses((status = 200, description = "One catalog model", body = ModelView)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(state.control.model(&p, &id).await?))
}

/// Admin: adds a model (409 if its id exists).
#[utoipa::path(post, path = "/api/models", summary = "Admin: add a model to the catalog", tag = "catalog", request_body = paddock_core::catalog::Model,
    responses((status = 201, description = "Admin: add a model to the catalog", body = ModelView)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
    let m = admin(&state.control, &p)?.create_model(body).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Admin: changes some fields of a model (`is_active: false` deactivates it).
#[utoipa::path(patch, path = "/api/models/{model_id}", summary = "Admin: edit or deactivate a model", tag = "catalog", params(("model_id" = String, Path, example = "gemma3:270m")),
    request_body(content = Object, description = "the fields of the model to change", example = json!({"is_active": false})),
    responses((status = 200, description = "Admin: edit or deactivate a model", body = ModelView)))]
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

#[utoipa::path(get, path = "/api/compute", summary = "CPU (Fargate) and GPU sizes with prices", tag = "catalog",
    responses((status = 200, description = "CPU (Fargate) and GPU sizes with prices", body = ComputeView)))]
pub(crate) async fn compute(State(state): State<AppState>, Auth(_): Auth) -> Json<ComputeView> {
    Json(state.control.compute_sizes())
}
