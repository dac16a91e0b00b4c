//! The HTTP surface: routes, shared state, request options and the Ollama
//! error format. Ollama's generation routes live in `ollama`, OpenAI's in
//! `openai`; both turn requests into engine jobs through [`AppState::start`].

mod ollama;
mod openai;
mod shared;

pub(crate) use shared::AppState;
use shared::{parse, ApiError};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

/// Builds the router with every route.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { "Ollama is running" }).head(|| async {}))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(embed))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{model}", get(openai::model))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn version() -> Json<Value> {
    Json(json!({ "version": paddock_core::OLLAMA_COMPAT_VERSION }))
}

/// The `details` object Ollama attaches to a model.
fn details(state: &AppState) -> Value {
    let info = &state.engine.info;
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": info.family,
        "families": [info.family],
        "parameter_size": info.parameter_size,
        "quantization_level": info.quantization_level,
    })
}

async fn tags(State(state): State<AppState>) -> Json<Value> {
    let info = &state.engine.info;
    Json(json!({ "models": [{
        "name": info.name,
        "model": info.name,
        "modified_at": info.modified_at.to_rfc3339(),
        "size": info.size,
        "digest": info.digest,
        "details": details(&state),
    }]}))
}

async fn ps(State(state): State<AppState>) -> Json<Value> {
    let info = &state.engine.info;
    Json(json!({ "models": [{
        "name": info.name,
        "model": info.name,
        "size": info.size,
        "digest": info.digest,
        "details": details(&state),
        "expires_at": (state.started + chrono::Duration::days(365 * 100)).to_rfc3339(),
        "size_vram": 0,
        "context_length": info.context_length,
    }]}))
}

#[derive(Deserialize)]
struct ShowRequest {
    #[serde(default, alias = "name")]
    model: String,
}

async fn show(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: ShowRequest = parse(&body)?;
    state.check_model(&req.model)?;
    let info = &state.engine.info;
    let model_info: serde_json::Map<String, Value> = info
        .metadata
        .iter()
        .map(|(k, v)| {
            let value = v
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| v.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| Value::from(v.clone()));
            (k.clone(), value)
        })
        .collect();
    Ok(Json(json!({
        "license": "",
        "modelfile": format!("FROM {}\n", info.name),
        "parameters": "",
        "template": info.template.clone().unwrap_or_default(),
        "details": details(&state),
        "model_info": model_info,
        "capabilities": ["completion"],
        "modified_at": info.modified_at.to_rfc3339(),
    })))
}

#[derive(Deserialize)]
struct EmbedRequest {
    #[serde(default)]
    model: String,
}

/// This runtime serves generative models only: embedding requests for the
/// served model get a clear 400, others Ollama's 404.
async fn embed(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: EmbedRequest = parse(&body)?;
    state.check_model(&req.model)?;
    Err(ApiError::BadRequest(format!(
        "\"{}\" does not support embeddings: this runtime serves it for text generation only",
        req.model
    )))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.engine.metrics.render(state.model_name()),
    )
}
