//! Ollama's generation routes, `POST /api/generate` and `POST /api/chat`:
//! NDJSON streaming by default, one JSON object with `stream: false`, and the
//! final object carrying `done_reason` and the timing and token statistics.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shared::{nanos, now_rfc3339, parse, streaming, ApiError, AppState, OllamaOptions, Run};
use crate::engine::{Completion, Event, FinishReason};
use crate::template::{self, Turn};

#[derive(Debug, Deserialize)]
pub(crate) struct GenerateRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<OllamaOptions>,
    /// Accepted for compatibility; the model stays loaded while the runtime runs.
    #[serde(default)]
    #[allow(dead_code)]
    keep_alive: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<OllamaOptions>,
    #[serde(default)]
    #[allow(dead_code)]
    keep_alive: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    role: String,
    #[serde(default)]
    content: Option<String>,
}

/// Which of Ollama's two response shapes to produce.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Generate,
    Chat,
}

impl Shape {
    /// One response object carrying `text`.
    fn chunk(self, model: &str, text: &str, done: bool) -> serde_json::Map<String, Value> {
        let mut obj = serde_json::Map::new();
        obj.insert("model".into(), model.into());
        obj.insert("created_at".into(), now_rfc3339().into());
        match self {
            Self::Generate => {
                obj.insert("response".into(), text.into());
            }
            Self::Chat => {
                obj.insert(
                    "message".into(),
                    json!({ "role": "assistant", "content": text }),
                );
            }
        }
        obj.insert("done".into(), done.into());
        obj
    }

    /// The final object: `text` (empty when streaming) plus statistics.
    fn last(
        self,
        model: &str,
        text: &str,
        run_started: std::time::Instant,
        c: &Completion,
    ) -> Value {
        let mut obj = self.chunk(model, text, true);
        let reason = match c.reason {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        };
        obj.insert("done_reason".into(), reason.into());
        obj.insert("total_duration".into(), nanos(run_started.elapsed()).into());
        obj.insert("load_duration".into(), nanos(c.queued).into());
        // As Ollama counts it: the prompt tokens evaluated, less those
        // found in the prefix cache.
        obj.insert(
            "prompt_eval_count".into(),
            (c.prompt_tokens - c.cached_tokens).into(),
        );
        obj.insert("prompt_eval_duration".into(), nanos(c.prompt_eval).into());
        obj.insert("eval_count".into(), c.generated_tokens.into());
        obj.insert("eval_duration".into(), nanos(c.eval).into());
        Value::Object(obj)
    }
}

pub(crate) async fn generate(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: GenerateRequest = parse(&body)?;
    state.check_model(&req.model)?;
    let opts = req
        .options
        .unwrap_or_default()
        .validate(req.format.as_ref())?;
    if req.prompt.is_empty() && req.system.is_none() {
        // Ollama answers an empty prompt by (re)loading the model.
        let mut obj = Shape::Generate.chunk(state.model_name(), "", true);
        obj.insert("done_reason".into(), "load".into());
        return Ok(Json(Value::Object(obj)).into_response());
    }
    let prompt = if req.raw {
        req.prompt
    } else {
        let mut turns = Vec::with_capacity(2);
        if let Some(system) = req.system.filter(|s| !s.is_empty()) {
            turns.push(Turn {
                role: "system".into(),
                content: system,
            });
        }
        turns.push(Turn {
            role: "user".into(),
            content: req.prompt,
        });
        template::render(&state.engine.model, &turns).map_err(ApiError::BadRequest)?
    };
    let run = state.start(&prompt, opts)?;
    respond(&state, Shape::Generate, run, req.stream.unwrap_or(true)).await
}

pub(crate) async fn chat(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(&body)?;
    state.check_model(&req.model)?;
    let opts = req
        .options
        .unwrap_or_default()
        .validate(req.format.as_ref())?;
    if req.messages.is_empty() {
        let mut obj = Shape::Chat.chunk(state.model_name(), "", true);
        obj.insert("done_reason".into(), "load".into());
        return Ok(Json(Value::Object(obj)).into_response());
    }
    let turns: Vec<Turn> = req
        .messages
        .into_iter()
        .map(|m| Turn {
            role: m.role,
            content: m.content.unwrap_or_default(),
        })
        .collect();
    let prompt = template::render(&state.engine.model, &turns).map_err(ApiError::BadRequest)?;
    let run = state.start(&prompt, opts)?;
    respond(&state, Shape::Chat, run, req.stream.unwrap_or(true)).await
}

/// Streams NDJSON chunks, or collects the answer into one object.
async fn respond(
    state: &AppState,
    shape: Shape,
    run: Run,
    stream: bool,
) -> Result<Response, ApiError> {
    let model = state.model_name().to_string();
    let started = run.received;
    if !stream {
        let (text, completion) = run.collect().await?;
        return Ok(Json(shape.last(&model, &text, started, &completion)).into_response());
    }
    let chunks = run.events().map(move |event| {
        let value = match event {
            Event::Text(text) => Value::Object(shape.chunk(&model, &text, false)),
            Event::Done(c) => shape.last(&model, "", started, &c),
            Event::Failed(e) => json!({ "error": e }),
        };
        let mut line = serde_json::to_vec(&value).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    });
    Ok(streaming("application/x-ndjson", chunks))
}
