//! `/api/models` (the catalog) and `/api/compute` (the sizes it can run on).
//! Everyone signed in reads the active catalog; admins see inactive models
//! too and add, edit and deactivate entries.

use super::STALE_RETRIES;
use crate::auth::extract::{Admin, Auth};
use crate::error::{ApiError, Json};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use paddock_core::catalog::Model;
use paddock_core::store::StoreError;
use paddock_core::ModelId;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// Admins: include inactive models.
    #[serde(default)]
    all: bool,
}

fn model_json(m: &Model) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    v["estimated_start_seconds"] = json!(m.estimated_start_seconds());
    v
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let include_inactive = q.all && p.is_admin();
    let models: Vec<Value> = state
        .store
        .list_models()
        .await?
        .iter()
        .filter(|m| include_inactive || m.is_active)
        .map(model_json)
        .collect();
    Ok(Json(json!({ "models": models })))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.store.get_model(&ModelId::new(&id)).await? {
        Some(m) if m.is_active || p.is_admin() => Ok(Json(model_json(&m))),
        _ => Err(ApiError::not_found(format!(
            "model {id:?} is not in the catalog; GET /api/models lists what can be deployed"
        ))),
    }
}

fn parse_model(body: Value) -> Result<Model, ApiError> {
    let m: Model =
        serde_json::from_value(body).map_err(|e| ApiError::validation(format!("model: {e}")))?;
    m.validate()
        .map_err(|e| ApiError::validation(e.to_string()))?;
    Ok(m)
}

/// Admin: adds a model (409 if its id exists).
pub(crate) async fn create(
    State(state): State<AppState>,
    Admin(_): Admin,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut m = parse_model(body)?;
    m.updated_at = Some(state.clock.now());
    if !state.store.insert_model_if_absent(&m).await? {
        return Err(ApiError::Conflict(format!(
            "model {} already exists; edit it with PATCH /api/models/{}",
            m.model_id, m.model_id
        )));
    }
    Ok((StatusCode::CREATED, Json(model_json(&m))))
}

/// Admin: changes some fields of a model (`is_active: false` deactivates it).
pub(crate) async fn update(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
    Json(patch): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::validation(
            "send a JSON object with the fields to change",
        ));
    };
    if patch.get("model_id").is_some_and(|v| v != &json!(id)) {
        return Err(ApiError::validation(
            "model_id: cannot be changed; add a new model instead",
        ));
    }
    let model_id = ModelId::new(&id);
    let not_found = || ApiError::not_found(format!("model {id:?} is not in the catalog"));
    let mut existing = state
        .store
        .get_model(&model_id)
        .await?
        .ok_or_else(not_found)?;
    // The patch is applied to the record as stored, compare-and-swap: if
    // another edit lands in between, it is applied again on top of that
    // one, so neither edit undoes the other.
    let mut retries = 0;
    let stored = loop {
        let mut merged =
            serde_json::to_value(&existing).map_err(|e| ApiError::Internal(e.to_string()))?;
        for (k, v) in &patch {
            if k == "estimated_start_seconds" || k == "updated_at" {
                continue;
            }
            merged[k] = v.clone();
        }
        let mut m = parse_model(merged)?;
        m.updated_at = Some(state.clock.now());
        m.version = existing.version;
        match state.store.update_model(&m).await {
            Ok(stored) => break stored,
            Err(StoreError::Stale(_)) if retries < STALE_RETRIES => {
                retries += 1;
                existing = state
                    .store
                    .get_model(&model_id)
                    .await?
                    .ok_or_else(not_found)?;
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(Json(model_json(&stored)))
}

pub(crate) async fn compute(State(state): State<AppState>, Auth(_): Auth) -> Json<Value> {
    let t = &state.compute;
    let cpu: Vec<Value> = t
        .fargate
        .sizes
        .iter()
        .flat_map(|s| {
            s.memory.values().into_iter().map(move |mem| {
                let spec = paddock_core::compute::ComputeSpec::Cpu {
                    vcpu_milli: s.cpu * 1000 / 1024,
                    memory_mb: mem,
                };
                (s.cpu, mem, spec)
            })
        })
        .map(|(cpu, mem, spec)| {
            json!({
                "cpu": cpu,
                "vcpu": cpu as f64 / 1024.0,
                "memory": mem,
                "price_per_hour_usd": round6(t.price_per_hour(&spec, None)),
                "local_price_per_hour_usd": round6(t.price_per_hour(&spec, Some(state.config.local_cpu_hour_usd))),
            })
        })
        .collect();
    Json(json!({
        "prices_as_of": t.prices_as_of,
        "region": t.region,
        "fargate": {
            "vcpu_hour_usd": t.fargate.vcpu_hour_usd,
            "gb_hour_usd": t.fargate.gb_hour_usd,
            "sizes": cpu,
        },
        "gpu_instance_types": t.gpu_instance_types,
    }))
}

/// Rounds a price to six decimals for display.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
