//! `/api/models/deploy`, `/api/models/stop` and `/api/instances/...`: thin
//! adapters over [`paddock_control::instances`].

use super::permit::admin_or_self;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use paddock_control::instances::{DeployRequest, InstanceView};
use paddock_core::InstanceId;
use paddock_gateway::auth::Auth;
use paddock_gateway::error::{ApiError, Json};
use serde::{Deserialize, Serialize};

/// `{instances: [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
}

/// `{instance_id, lines}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceLogs {
    pub instance_id: InstanceId,
    pub lines: Vec<String>,
}

#[utoipa::path(post, path = "/api/models/deploy", summary = "Deploy a model on a CPU or GPU size", tag = "instances",
    request_body(content = DeployRequest, example = json!({"model_name": "gemma3:270m", "fargate_resources": {"cpu": 1024, "memory": 2048}, "idle_timeout_minutes": 15})),
    responses((status = 202, description = "Deploy a model on a CPU or GPU size", body = InstanceView)))]
pub(crate) async fn deploy(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(req): Json<DeployRequest>,
) -> Result<(StatusCode, Json<InstanceView>), ApiError> {
    let view = state.control.deploy(&p, req).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// Admins: everyone's instances.
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/api/instances", summary = "Your instances (admins: ?all=true for everyone's)", tag = "instances", params(("all" = Option<bool>, Query, description = "Admins: everyone's instances")),
    responses((status = 200, description = "Your instances (admins: ?all=true for everyone's)", body = InstanceList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<InstanceList>, ApiError> {
    Ok(Json(InstanceList {
        instances: list_views(&state, &p, q.all).await?,
    }))
}

/// The caller's instances (everyone's for `all` and an admin) as views.
async fn list_views(
    state: &AppState,
    p: &paddock_core::user::Principal,
    all: bool,
) -> Result<Vec<InstanceView>, ApiError> {
    let c = &state.control;
    let records = match admin_or_self(c, p, all) {
        Some(admin) => admin.all_instances().await?,
        None => c.my_instances(p).await?,
    };
    Ok(records.iter().map(|i| c.instance_view(i)).collect())
}

/// How often the event stream sends the list even when nothing changed
/// (uptime and cost move on).
const EVENTS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

#[utoipa::path(get, path = "/api/instances/events", summary = "Your instances as server-sent events", tag = "instances", params(("all" = Option<bool>, Query, description = "Admins: everyone's instances")),
    responses((status = 200, description = "`event: instances` with `{instances: [...]}`, at once, whenever an instance changes or a model download moves on, and every 5 s", content_type = "text/event-stream", body = InstanceList)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListQuery>,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    // The first list now, so that an unauthorised or failing caller gets
    // an error answer rather than a stream.
    let first = list_views(&state, &p, q.all).await?;
    let changes = (
        state.control.reconciler.subscribe(),
        state.control.pulls.subscribe(),
    );
    let start = (state, p, q.all, changes, Some(first));
    let stream = futures::stream::unfold(start, |(state, p, all, mut changes, first)| async move {
        let list = match first {
            Some(list) => list,
            None => {
                // A record changed, or a model download moved on.
                let (records, pulls) = &mut changes;
                let changed = async {
                    tokio::select! {
                        _ = records.changed() => {}
                        _ = pulls.changed() => {}
                    }
                };
                let _ = tokio::time::timeout(EVENTS_REFRESH, changed).await;
                match list_views(&state, &p, all).await {
                    Ok(list) => list,
                    // The caller lost access (disabled, say): the stream ends.
                    Err(_) => return None,
                }
            }
        };
        let event = Event::default()
            .event("instances")
            .json_data(InstanceList { instances: list })
            .unwrap_or_else(|_| Event::default().comment("unserialisable"));
        Some((Ok(event), (state, p, all, changes, None)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[utoipa::path(get, path = "/api/instances/{instance_id}", summary = "One instance with its state history", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 200, description = "One instance with its state history", body = InstanceView)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(state.control.instance_detail(&p, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct StopRequest {
    instance_id: String,
}

/// `POST /api/models/stop {instance_id}` (the original path).
#[utoipa::path(post, path = "/api/models/stop", summary = "Stop an instance", tag = "instances", request_body = StopRequest,
    responses((status = 202, description = "Stop an instance", body = InstanceView)))]
pub(crate) async fn stop_by_body(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(req): Json<StopRequest>,
) -> Result<(StatusCode, Json<InstanceView>), ApiError> {
    let view = state.control.stop_instance(&p, &req.instance_id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// `POST /api/instances/{id}/stop`.
#[utoipa::path(post, path = "/api/instances/{instance_id}/stop", summary = "Stop an instance", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, description = "Stop an instance", body = InstanceView)))]
pub(crate) async fn stop_by_path(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<InstanceView>), ApiError> {
    let view = state.control.stop_instance(&p, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// `POST /api/instances/{id}/start`.
#[utoipa::path(post, path = "/api/instances/{instance_id}/start", summary = "Start a stopped, sleeping or failed instance again", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, description = "Start a stopped, sleeping or failed instance again (same id, endpoint and history)", body = InstanceView)))]
pub(crate) async fn start_by_path(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<InstanceView>), ApiError> {
    let view = state.control.start_instance(&p, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[utoipa::path(delete, path = "/api/instances/{instance_id}", summary = "Delete a stopped instance", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 204, description = "Delete a stopped instance")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.control.delete_instance(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    lines: Option<usize>,
}

/// `GET /api/instances/{id}/logs?lines=200`: the model server's output.
#[utoipa::path(get, path = "/api/instances/{instance_id}/logs", summary = "The instance's model-server log", tag = "instances", params(("instance_id" = String, Path), ("lines" = Option<usize>, Query, description = "Lines from the end (default 200, at most 5000)")),
    responses((status = 200, description = "The instance's model-server log", body = InstanceLogs)))]
pub(crate) async fn logs(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<InstanceLogs>, ApiError> {
    let (instance_id, lines) = state
        .control
        .instance_logs(&p, &id, q.lines.unwrap_or(200))
        .await?;
    Ok(Json(InstanceLogs { instance_id, lines }))
}
