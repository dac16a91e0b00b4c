//! `GET /api/usage`: tokens and cost per day and model; a thin adapter
//! over [`paddock_control::usage`].

use super::permit::admin_or_self;
use crate::state::AppState;
use axum::extract::{Query, State};
use paddock_control::usage::UsageSummary;
use paddock_gateway::auth::Auth;
use paddock_gateway::error::{ApiError, Json};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct UsageParams {
    /// Days back from today, 1 to 366 (default 30).
    days: Option<u32>,
    /// Admins: everyone's usage.
    #[serde(default)]
    all: bool,
}

/// `GET /api/usage?days=30[&all=true]`.
#[utoipa::path(get, path = "/api/usage", summary = "Tokens and cost per day and model", tag = "usage", params(("days" = Option<u32>, Query, description = "Days back from today, 1 to 366 (default 30)"), ("all" = Option<bool>, Query, description = "Admins: everyone's usage")),
    responses((status = 200, description = "Tokens and cost per day and model", body = UsageSummary)))]
pub(crate) async fn usage(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<UsageParams>,
) -> Result<Json<UsageSummary>, ApiError> {
    let c = &state.control;
    let days = q.days.unwrap_or(30);
    let summary = match admin_or_self(c, &p, q.all) {
        Some(admin) => admin.all_usage(days).await?,
        None => c.usage(&p, days).await?,
    };
    Ok(Json(summary))
}
