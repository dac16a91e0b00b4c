//! `/metrics` over HTTP: the middleware that counts every request by
//! method, route template and status, and the handler that answers the
//! Prometheus text the control layer renders.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use paddock_control::Control;
use std::time::Instant;

/// Middleware: counts every request by method, route template and status,
/// and its latency to the response head (streams are timed to first byte).
pub async fn track(State(control): State<Control>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    control.metrics.observe(
        method.as_str(),
        route.as_ref().map_or("unmatched", |r| r.as_str()),
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> Response {
    let text = paddock_control::exposition::render(&state.control).await;
    (
        [(CONTENT_TYPE, paddock_control::exposition::CONTENT_TYPE)],
        text,
    )
        .into_response()
}
