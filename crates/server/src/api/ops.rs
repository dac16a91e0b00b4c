//! Operations: `/healthz` (the process answers), `/readyz` (the store
//! answers), and `/api/openapi.json` generated from the route table.

use super::doc::RouteDoc;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.control.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "store"})),
            )
        }
    }
}

/// Builds the OpenAPI 3.1 document from the route table.
pub fn openapi(routes: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "tags": [r.tag],
            "responses": {
                r.ok.to_string(): {"description": "success"},
                "4XX": {"description": "bad input or not allowed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if r.auth {
            op["security"] = json!([{"bearer": []}]);
        } else {
            op["security"] = json!([]);
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"example": serde_json::from_str::<Value>(body).unwrap_or(Value::Null)}},
            });
        }
        entry[r.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "paddock",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run Ollama-compatible LLM instances on your own compute. Management API, Ollama and OpenAI gateway.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an access token from /api/auth/login or an API key (pdk_...)"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}},
        },
    })
}
