//! OpenAI's routes: `POST /v1/chat/completions`, `POST /v1/completions`
//! (server-sent events ending in `data: [DONE]` when `stream` is set, `usage`
//! always filled) and `GET /v1/models`. Errors use OpenAI's error object.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shared::{parse, streaming, ApiError, AppState, GenOptions, Run, StopField};
use crate::engine::{Completion, Event, FinishReason, Sampling};
use crate::template::{self, Turn};

/// An [`ApiError`] rendered as OpenAI's `{"error": {message, type, code}}`.
#[derive(Debug)]
pub(crate) struct OpenAiError(ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = match self.0 {
            ApiError::ModelNotFound(_) => "not_found_error",
            ApiError::BadRequest(_) => "invalid_request_error",
            ApiError::Busy(_) => "server_busy",
            ApiError::Internal(_) => "api_error",
        };
        let code = self.0.status().as_u16();
        self.0.respond(json!({
            "error": { "message": self.0.to_string(), "type": kind, "param": null, "code": code }
        }))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletionRequest {
    #[serde(default)]
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    params: Params,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    model: String,
    prompt: PromptField,
    #[serde(flatten)]
    params: Params,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// Message content: a string or a list of parts (text parts are used).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    fn into_text(self) -> String {
        match self {
            Self::Text(t) => t,
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The sampling parameters both OpenAI routes take.
#[derive(Debug, Default, Deserialize)]
struct Params {
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    stop: Option<StopField>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    response_format: Option<Value>,
    /// Extension (as in llama-server and Ollama): top-k sampling.
    top_k: Option<i32>,
    /// Extension: min-p sampling.
    min_p: Option<f32>,
    /// Extension: repetition penalty (1.0 disables it).
    repeat_penalty: Option<f32>,
}

impl Params {
    fn validate(self) -> Result<(GenOptions, bool), ApiError> {
        let mut s = Sampling {
            // OpenAI's defaults: temperature 1, nucleus off, no penalties.
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            ..Sampling::default()
        };
        let bad = |m: &str| Err(ApiError::BadRequest(m.to_string()));
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return bad("temperature must be between 0 and 2");
            }
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) {
                return bad("top_p must be between 0 and 1");
            }
            s.top_p = p;
        }
        if let Some(seed) = self.seed {
            // llama.cpp takes the low 32 bits of the seed.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let low = seed as u32;
            s.seed = low;
        }
        for (value, name) in [
            (self.frequency_penalty, "frequency_penalty"),
            (self.presence_penalty, "presence_penalty"),
        ] {
            if value.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
                return bad(&format!("{name} must be between -2 and 2"));
            }
        }
        if let Some(k) = self.top_k {
            if k < 0 {
                return bad("top_k must be 0 or more");
            }
            s.top_k = k;
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return bad("min_p must be between 0 and 1");
            }
            s.min_p = p;
        }
        if let Some(r) = self.repeat_penalty {
            if !(r.is_finite() && r > 0.0) {
                return bad("repeat_penalty must be more than 0");
            }
            s.repeat_penalty = r;
        }
        s.frequency_penalty = self.frequency_penalty.unwrap_or(0.0);
        s.presence_penalty = self.presence_penalty.unwrap_or(0.0);
        let max = self.max_completion_tokens.or(self.max_tokens);
        if max.is_some_and(|m| m < 1) {
            return bad("max_tokens must be at least 1");
        }
        let format = match &self.response_format {
            None | Some(Value::Null) => None,
            Some(f) => match f.get("type").and_then(Value::as_str) {
                Some("text") => None,
                Some("json_object") => Some(Value::from("json")),
                Some("json_schema") => Some(
                    f.pointer("/json_schema/schema")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object"})),
                ),
                _ => return bad("response_format.type must be text, json_object or json_schema"),
            },
        };
        s.grammar = super::shared::format_grammar(format.as_ref())?;
        Ok((
            GenOptions {
                sampling: s,
                num_predict: max,
                stop: self.stop.map(StopField::into_vec).unwrap_or_default(),
                num_ctx: None,
            },
            self.stream,
        ))
    }
}

/// A unique-enough id for a completion.
fn completion_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}-{}{}",
        chrono::Utc::now().timestamp_millis(),
        NEXT.fetch_add(1, Relaxed)
    )
}

fn finish_reason(c: &Completion) -> &'static str {
    match c.reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage(c: &Completion) -> Value {
    json!({
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.generated_tokens,
        "total_tokens": c.prompt_tokens + c.generated_tokens,
        "prompt_tokens_details": { "cached_tokens": c.cached_tokens },
    })
}

/// Which of OpenAI's two completion shapes to produce.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

impl Kind {
    fn id_prefix(self) -> &'static str {
        match self {
            Self::Chat => "chatcmpl",
            Self::Text => "cmpl",
        }
    }

    /// A choice carrying `text`: a message (whole) or delta (streamed) for
    /// chat, plain text for completions.
    fn choice(self, text: &str, streamed: bool, finish: Option<&str>) -> Value {
        match (self, streamed) {
            (Self::Chat, false) => json!({ "index": 0,
                "message": { "role": "assistant", "content": text }, "finish_reason": finish }),
            (Self::Chat, true) => json!({ "index": 0,
                "delta": { "role": "assistant", "content": text }, "finish_reason": finish }),
            (Self::Text, _) => {
                json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": finish })
            }
        }
    }

    fn object(self, streamed: bool) -> &'static str {
        match (self, streamed) {
            (Self::Chat, false) => "chat.completion",
            (Self::Chat, true) => "chat.completion.chunk",
            (Self::Text, _) => "text_completion",
        }
    }
}

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let req: ChatCompletionRequest = parse(&body)?;
    state.check_model(&req.model)?;
    let (opts, stream) = req.params.validate()?;
    let turns: Vec<Turn> = req
        .messages
        .into_iter()
        .map(|m| Turn {
            role: if m.role == "developer" {
                "system".into()
            } else {
                m.role
            },
            content: m.content.map(Content::into_text).unwrap_or_default(),
        })
        .collect();
    if turns.is_empty() {
        return Err(ApiError::BadRequest("messages must not be empty".into()).into());
    }
    let prompt = template::render(&state.engine.model, &turns).map_err(ApiError::BadRequest)?;
    let run = state.start(&prompt, opts)?;
    respond(&state, Kind::Chat, run, stream).await
}

pub(crate) async fn completions(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let req: CompletionRequest = parse(&body)?;
    state.check_model(&req.model)?;
    let (opts, stream) = req.params.validate()?;
    let prompt = match req.prompt {
        PromptField::One(p) => p,
        PromptField::Many(mut ps) if ps.len() == 1 => ps.remove(0),
        PromptField::Many(_) => {
            return Err(ApiError::BadRequest("prompt must be one string".into()).into())
        }
    };
    let run = state.start(&prompt, opts)?;
    respond(&state, Kind::Text, run, stream).await
}

async fn respond(
    state: &AppState,
    kind: Kind,
    run: Run,
    stream: bool,
) -> Result<Response, OpenAiError> {
    let model = state.model_name().to_string();
    let id = completion_id(kind.id_prefix());
    let created = chrono::Utc::now().timestamp();
    if !stream {
        let (text, c) = run.collect().await?;
        return Ok(Json(json!({
            "id": id, "object": kind.object(false), "created": created, "model": model,
            "system_fingerprint": "fp_paddock",
            "choices": [kind.choice(&text, false, Some(finish_reason(&c)))],
            "usage": usage(&c),
        }))
        .into_response());
    }
    let events = run.events().flat_map(move |event| {
        let mut frames = Vec::with_capacity(2);
        let envelope = |choice: Value| {
            json!({ "id": id, "object": kind.object(true), "created": created, "model": model,
                "system_fingerprint": "fp_paddock", "choices": [choice] })
        };
        match event {
            Event::Text(text) => frames.push(sse(&envelope(kind.choice(&text, true, None)))),
            Event::Done(c) => {
                let mut last = envelope(kind.choice("", true, Some(finish_reason(&c))));
                last["usage"] = usage(&c);
                frames.push(sse(&last));
                frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            Event::Failed(e) => {
                frames.push(sse(
                    &json!({ "error": { "message": e, "type": "api_error" } }),
                ));
                frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
            }
        }
        futures::stream::iter(frames)
    });
    Ok(streaming("text/event-stream", events))
}

fn sse(value: &Value) -> Bytes {
    let mut frame = b"data: ".to_vec();
    frame.extend_from_slice(&serde_json::to_vec(value).unwrap_or_default());
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

fn model_object(state: &AppState) -> Value {
    json!({
        "id": state.model_name(),
        "object": "model",
        "created": state.engine.info.modified_at.timestamp(),
        "owned_by": "library",
    })
}

pub(crate) async fn models(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "object": "list", "data": [model_object(&state)] }))
}

pub(crate) async fn model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    state.check_model(&model)?;
    Ok(Json(model_object(&state)))
}
