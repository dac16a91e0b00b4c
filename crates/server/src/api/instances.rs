//! Instances: deploy, list, inspect, stop, delete.
//!
//! The store records what the user wants first (desired state and a PENDING
//! record); the reconciler then acts through the compute driver. Ownership
//! is checked in [`visible_instance`]: another user's instance answers 404,
//! exactly like one that does not exist.

use crate::api::catalog::round6;
use crate::auth::extract::Auth;
use crate::error::{ApiError, Json};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use paddock_core::compute::ComputeSpec;
use paddock_core::instance::{DesiredState, Instance, InstanceState, Transition};
use paddock_core::user::Principal;
use paddock_core::{InstanceId, ModelId};
use serde::Deserialize;
use serde_json::{json, Value};

/// Default idle timeout, minutes.
pub const DEFAULT_IDLE_MINUTES: u64 = 15;
/// Longest idle timeout accepted, minutes (one week).
pub const MAX_IDLE_MINUTES: u64 = 7 * 24 * 60;

/// Loads an instance the caller may see: their own, or any for admins.
/// Anything else is the same 404 as a missing instance.
pub(crate) async fn visible_instance(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<Instance, ApiError> {
    match state.store.get_instance(&InstanceId::new(id)).await? {
        Some(i) if i.user_id == p.user_id || p.is_admin() => Ok(i),
        _ => Err(ApiError::not_found(format!("instance {id} not found"))),
    }
}

/// The JSON shape of an instance, with the original system's field names.
pub fn instance_json(state: &AppState, i: &Instance) -> Value {
    let now = state.clock.now();
    let price = state
        .compute
        .price_per_hour(&i.spec, local_price(state, &i.spec));
    let billed = i.billed_seconds(now);
    let mut v = json!({
        "instance_id": i.instance_id,
        "model_name": i.model_id,
        "model_display_name": i.model_name,
        "instance_type": i.spec.instance_type(),
        "compute": i.spec.compute_kind(),
        "spec": i.spec,
        "user_id": i.user_id,
        "status": i.status,
        "desired_status": i.desired,
        "status_reason": i.status_reason,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "last_active_at": i.last_active_at,
        "endpoint_url": format!("{}/models/{}", state.config.public_url(), i.instance_id),
        "idle_timeout_minutes": i.idle_timeout_secs as f64 / 60.0,
        "restart_count": i.restart_count,
        "price_per_hour_usd": round6(price),
        "uptime_seconds": billed,
        "cost_usd": round6(price * billed as f64 / 3600.0),
    });
    if let ComputeSpec::Cpu {
        vcpu_milli,
        memory_mb,
    } = &i.spec
    {
        v["fargate_resources"] = json!({"cpu": vcpu_milli * 1024 / 1000, "memory": memory_mb});
    }
    v
}

/// CPU sizes run on this machine use the configured local price.
fn local_price(state: &AppState, spec: &ComputeSpec) -> Option<f64> {
    matches!(spec, ComputeSpec::Cpu { .. }).then_some(state.config.local_cpu_hour_usd)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployRequest {
    model_name: Option<String>,
    model_id: Option<String>,
    fargate_resources: Option<FargateResources>,
    instance_type: Option<String>,
    idle_timeout_minutes: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FargateResources {
    cpu: Value,
    memory: Value,
}

fn number(field: &str, v: &Value) -> Result<f64, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| ApiError::validation(format!("{field}: must be a non-negative number")))
}

/// Fargate CPU units from the request: values of 256 and up are CPU units
/// (1024 = 1 vCPU, as in task definitions); smaller values are vCPUs.
fn cpu_units(v: &Value) -> Result<u32, ApiError> {
    let x = number("fargate_resources.cpu", v)?;
    let units = if x < 256.0 { x * 1024.0 } else { x };
    if units.fract() != 0.0 || units > 1e6 {
        return Err(ApiError::validation(
            "fargate_resources.cpu: use CPU units (256, 512, 1024, 2048, 4096, 8192, 16384) or vCPUs (0.25 ... 16)",
        ));
    }
    Ok(units as u32)
}

pub(crate) async fn deploy(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(req): Json<DeployRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = req.model_name.or(req.model_id).ok_or_else(|| {
        ApiError::validation(
            "model_name: is required (a model_id from GET /api/models, e.g. gemma3:270m)",
        )
    })?;
    let model = match state.store.get_model(&ModelId::new(name.trim())).await? {
        Some(m) => Some(m),
        None => state
            .store
            .list_models()
            .await?
            .into_iter()
            .find(|m| m.model_name.eq_ignore_ascii_case(name.trim())),
    };
    let model = match model {
        Some(m) if m.is_active => m,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "model_name: {name} is inactive in the catalog and cannot be deployed"
            )))
        }
        None => {
            return Err(ApiError::validation(format!(
                "model_name: {name:?} is not in the catalog; GET /api/models lists what can be deployed"
            )))
        }
    };
    if !p.may_use_model(&model.model_id) {
        return Err(ApiError::Forbidden(format!(
            "this API key may not use {}",
            model.model_id
        )));
    }
    let spec = match (req.fargate_resources, req.instance_type) {
        (Some(f), None) => {
            let cpu = cpu_units(&f.cpu)?;
            let mem = number("fargate_resources.memory", &f.memory)?;
            if mem.fract() != 0.0 || mem > 1e7 {
                return Err(ApiError::validation("fargate_resources.memory: must be whole MiB"));
            }
            state
                .compute
                .fargate_spec(cpu, mem as u32)
                .map_err(|e| ApiError::validation(format!("fargate_resources: {e}")))?
        }
        (None, Some(t)) => state
            .compute
            .gpu_spec(t.trim())
            .map_err(|e| ApiError::validation(format!("instance_type: {e}")))?,
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "give either fargate_resources (CPU) or instance_type (GPU), not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::validation(
                "give fargate_resources {cpu, memory} for CPU or instance_type for GPU; GET /api/compute lists the sizes",
            ))
        }
    };
    state
        .compute
        .check_fit(&model, &spec)
        .map_err(|e| ApiError::validation(e.to_string()))?;
    if matches!(spec, ComputeSpec::Gpu { .. }) && !state.driver.capabilities().gpu {
        return Err(ApiError::validation(format!(
            "instance_type: this paddock runs instances with the {} driver, which has no GPU; pick a CPU size (fargate_resources) or run paddock with a GPU-capable driver",
            state.driver.name()
        )));
    }
    let idle_minutes = match req.idle_timeout_minutes {
        None | Some(Value::Null) => DEFAULT_IDLE_MINUTES as f64,
        Some(v) => number("idle_timeout_minutes", &v)?,
    };
    if idle_minutes > MAX_IDLE_MINUTES as f64 {
        return Err(ApiError::validation(format!(
            "idle_timeout_minutes: at most {MAX_IDLE_MINUTES} (0 means never sleep)"
        )));
    }
    let now = state.clock.now();
    let instance = Instance::new(
        p.user_id.clone(),
        model.model_id.clone(),
        model.model_name.clone(),
        spec,
        (idle_minutes * 60.0).round() as u64,
        now,
    );
    let first = Transition {
        instance_id: instance.instance_id.clone(),
        from: None,
        to: InstanceState::Pending,
        reason: "deploy requested".into(),
        at: now,
    };
    state.store.create_instance(&instance, &first).await?;
    state.reconciler.announce();
    tracing::info!(instance = %instance.instance_id, model = %instance.model_id, user = %p.user_id, "deploy requested");
    state.reconciler.wake();
    Ok((StatusCode::ACCEPTED, Json(instance_json(&state, &instance))))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// Admins: everyone's instances.
    #[serde(default)]
    all: bool,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let owner = if q.all && p.is_admin() {
        None
    } else {
        Some(&p.user_id)
    };
    let instances: Vec<Value> = state
        .store
        .list_instances(owner)
        .await?
        .iter()
        .map(|i| instance_json(&state, i))
        .collect();
    Ok(Json(json!({ "instances": instances })))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let i = visible_instance(&state, &p, &id).await?;
    let history = state.store.list_transitions(&i.instance_id).await?;
    let mut v = instance_json(&state, &i);
    v["history"] = serde_json::to_value(history).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(v))
}

#[derive(Deserialize)]
pub(crate) struct StopRequest {
    instance_id: String,
}

/// `POST /api/models/stop {instance_id}` (the original path).
pub(crate) async fn stop_by_body(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(req): Json<StopRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    stop_instance(&state, &p, &req.instance_id).await
}

/// `POST /api/instances/{id}/stop`.
pub(crate) async fn stop_by_path(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    stop_instance(&state, &p, &id).await
}

async fn stop_instance(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut i = visible_instance(state, p, id).await?;
    // Retry a few times if the reconciler writes the record concurrently.
    for _ in 0..5 {
        if i.desired == DesiredState::Stopped
            && matches!(i.status, InstanceState::Stopped | InstanceState::Stopping)
        {
            return Ok((StatusCode::ACCEPTED, Json(instance_json(state, &i))));
        }
        let now = state.clock.now();
        i.desired = DesiredState::Stopped;
        i.updated_at = now;
        // Nothing is held in these states, so the record can stop at once;
        // otherwise the reconciler releases the compute and finishes the stop.
        let transition = match i.status {
            InstanceState::Pending | InstanceState::Sleeping | InstanceState::Failed => Some(
                i.transition(InstanceState::Stopped, "stopped by user", now)
                    .map_err(|e| ApiError::Conflict(e.to_string()))?,
            ),
            InstanceState::Starting | InstanceState::Running => Some(
                i.transition(InstanceState::Stopping, "stop requested by user", now)
                    .map_err(|e| ApiError::Conflict(e.to_string()))?,
            ),
            InstanceState::Stopping | InstanceState::Stopped => None,
        };
        match state.store.update_instance(&i, transition.as_ref()).await {
            Ok(stored) => {
                state.reconciler.announce();
                tracing::info!(instance = %stored.instance_id, "stop requested");
                state.reconciler.wake();
                return Ok((StatusCode::ACCEPTED, Json(instance_json(state, &stored))));
            }
            Err(paddock_core::store::StoreError::Stale(_)) => {
                i = visible_instance(state, p, id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the instance is changing state; retry in a moment".into(),
    ))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let i = visible_instance(&state, &p, &id).await?;
    if i.status != InstanceState::Stopped {
        return Err(ApiError::Conflict(format!(
            "instance {id} is {}; stop it first (POST /api/models/stop)",
            i.status
        )));
    }
    state.store.delete_instance(&i.instance_id).await?;
    state.reconciler.announce();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    lines: Option<usize>,
}

/// `GET /api/instances/{id}/logs?lines=200`: the model server's output.
pub(crate) async fn logs(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Value>, ApiError> {
    let i = visible_instance(&state, &p, &id).await?;
    let n = q.lines.unwrap_or(200).clamp(1, 5000);
    let lines = match crate::reconciler::handle_of(&i) {
        Some(h) => state
            .driver
            .logs(&h, n)
            .await
            .map_err(|e| ApiError::Internal(format!("reading logs: {e}")))?,
        None => Vec::new(),
    };
    Ok(Json(
        json!({ "instance_id": i.instance_id, "lines": lines }),
    ))
}
