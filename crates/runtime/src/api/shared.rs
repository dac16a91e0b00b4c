//! What the Ollama and OpenAI handlers share: the server's state, a run of
//! the engine for one request, the request options both APIs map onto the
//! sampler, the runtime's error answer, and streaming helpers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::{Completion, Engine, Event, Job, Sampling, SubmitError};

/// What every handler shares: the engine and the configuration.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) started: chrono::DateTime<chrono::Utc>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            started: chrono::Utc::now(),
        }
    }

    /// Fails with Ollama's 404 unless `requested` names the served model
    /// (a missing `:latest` tag is implied, as in Ollama).
    pub(crate) fn check_model(&self, requested: &str) -> Result<(), ApiError> {
        if requested.trim().is_empty() {
            return Err(ApiError::BadRequest("model is required".into()));
        }
        if normalize(requested) == normalize(&self.engine.info.name) {
            Ok(())
        } else {
            Err(ApiError::ModelNotFound(requested.to_string()))
        }
    }

    /// Tokenizes `prompt`, checks it fits the context and queues it.
    pub(crate) fn start(&self, prompt: &str, opts: GenOptions) -> Result<Run, ApiError> {
        let received = Instant::now();
        let tokens = self.engine.tokenize(prompt);
        if tokens.is_empty() {
            return Err(ApiError::BadRequest("the prompt is empty".into()));
        }
        let ctx = opts
            .num_ctx
            .map_or(self.engine.ctx_per_seq, |n| n.min(self.engine.ctx_per_seq));
        if tokens.len() >= ctx as usize {
            return Err(ApiError::BadRequest(format!(
                "the prompt is {} tokens long, which does not fit the context of {ctx} tokens; \
                 shorten it or start the runtime with a larger --ctx",
                tokens.len()
            )));
        }
        let room = ctx - u32::try_from(tokens.len()).unwrap_or(ctx);
        let max_tokens = match opts.num_predict {
            Some(n) if n >= 0 => u32::try_from(n).unwrap_or(u32::MAX).min(room),
            _ => room,
        };
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        self.engine
            .submit(Job {
                prompt: tokens,
                sampling: opts.sampling,
                max_tokens: Some(max_tokens),
                stop: opts.stop,
                events,
                received,
            })
            .map_err(|e| match e {
                SubmitError::QueueFull(_) => ApiError::Busy(e.to_string()),
                SubmitError::Stopped => ApiError::Internal(e.to_string()),
            })?;
        Ok(Run { rx, received })
    }

    pub(crate) fn model_name(&self) -> &str {
        &self.engine.info.name
    }
}

/// Adds `:latest` to a model name without a tag.
pub(crate) fn normalize(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// A queued generation: its event stream and when it arrived.
#[derive(Debug)]
pub(crate) struct Run {
    pub rx: UnboundedReceiver<Event>,
    pub received: Instant,
}

impl Run {
    /// Waits for the whole answer.
    pub(crate) async fn collect(mut self) -> Result<(String, Completion), ApiError> {
        let mut text = String::new();
        while let Some(event) = self.rx.recv().await {
            match event {
                Event::Text(t) => text.push_str(&t),
                Event::Done(c) => return Ok((text, c)),
                Event::Failed(e) => return Err(ApiError::Internal(e)),
            }
        }
        Err(ApiError::Internal(
            "generation ended without a result".into(),
        ))
    }

    /// The events as a stream, ending after `Done` or `Failed`.
    pub(crate) fn events(self) -> impl futures::Stream<Item = Event> + Send {
        futures::stream::unfold(
            self.rx,
            |mut rx| async move { rx.recv().await.map(|e| (e, rx)) },
        )
    }
}

/// Generation options common to both APIs, validated.
#[derive(Debug, Default)]
pub(crate) struct GenOptions {
    pub sampling: Sampling,
    pub num_predict: Option<i64>,
    pub stop: Vec<String>,
    pub num_ctx: Option<u32>,
}

/// Ollama's `options` object (the fields this runtime honours; others are
/// accepted and ignored, as Ollama does).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct OllamaOptions {
    pub(crate) temperature: Option<f32>,
    pub(crate) top_k: Option<i32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) min_p: Option<f32>,
    pub(crate) seed: Option<i64>,
    pub(crate) num_predict: Option<i64>,
    pub(crate) stop: Option<StopField>,
    pub(crate) repeat_penalty: Option<f32>,
    pub(crate) repeat_last_n: Option<i32>,
    pub(crate) frequency_penalty: Option<f32>,
    pub(crate) presence_penalty: Option<f32>,
    pub(crate) num_ctx: Option<u32>,
    #[serde(flatten)]
    pub(crate) _other: HashMap<String, Value>,
}

/// `stop` as one string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum StopField {
    One(String),
    Many(Vec<String>),
}

impl StopField {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    }
}

impl OllamaOptions {
    /// Checks ranges and turns the options into engine settings.
    pub(crate) fn validate(self, format: Option<&Value>) -> Result<GenOptions, ApiError> {
        let mut s = Sampling::default();
        if let Some(t) = self.temperature {
            check(t.is_finite() && t >= 0.0, "temperature must be 0 or more")?;
            s.temperature = t;
        }
        if let Some(k) = self.top_k {
            check(k >= 0, "top_k must be 0 or more")?;
            s.top_k = k;
        }
        if let Some(p) = self.top_p {
            check((0.0..=1.0).contains(&p), "top_p must be between 0 and 1")?;
            s.top_p = p;
        }
        if let Some(p) = self.min_p {
            check((0.0..=1.0).contains(&p), "min_p must be between 0 and 1")?;
            s.min_p = p;
        }
        if let Some(seed) = self.seed {
            if seed >= 0 {
                // Ollama seeds are integers; llama.cpp takes the low 32 bits.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let low = seed as u32;
                s.seed = low;
            }
        }
        if let Some(r) = self.repeat_penalty {
            check(
                r.is_finite() && r > 0.0,
                "repeat_penalty must be more than 0",
            )?;
            s.repeat_penalty = r;
        }
        if let Some(n) = self.repeat_last_n {
            check(n >= -1, "repeat_last_n must be -1 or more")?;
            s.repeat_last_n = if n == -1 { 4096 } else { n };
        }
        if let Some(f) = self.frequency_penalty {
            check(f.is_finite(), "frequency_penalty must be a number")?;
            s.frequency_penalty = f;
        }
        if let Some(p) = self.presence_penalty {
            check(p.is_finite(), "presence_penalty must be a number")?;
            s.presence_penalty = p;
        }
        if let Some(n) = self.num_predict {
            check(n >= -2, "num_predict must be -2, -1 or a count of tokens")?;
        }
        if let Some(n) = self.num_ctx {
            check(n > 0, "num_ctx must be more than 0")?;
        }
        s.grammar = format_grammar(format)?;
        Ok(GenOptions {
            sampling: s,
            num_predict: self.num_predict,
            stop: self.stop.map(StopField::into_vec).unwrap_or_default(),
            num_ctx: self.num_ctx,
        })
    }
}

pub(crate) fn check(ok: bool, message: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("invalid options: {message}")))
    }
}

/// The grammar for Ollama's `format`: `"json"` or a JSON schema object.
pub(crate) fn format_grammar(format: Option<&Value>) -> Result<Option<String>, ApiError> {
    let schema = match format {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) if s == "json" => json!({"type": "object"}),
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid format {other}: use \"json\" or a JSON schema object"
            )))
        }
    };
    llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("invalid format schema: {e}")))
}

/// Parses a JSON body, answering 400 (not axum's 422) on bad input.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid request: {e}")))
}

/// An error in Ollama's format: `{"error": "..."}` with a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("model \"{0}\" not found, try pulling it first")]
    ModelNotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::ModelNotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response with `body`, adding `Retry-After` when busy.
    pub(crate) fn respond(&self, body: Value) -> Response {
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, Self::Busy(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(json!({ "error": self.to_string() }))
    }
}

/// A streaming response body of `content_type` from a stream of chunks.
pub(crate) fn streaming(
    content_type: &'static str,
    chunks: impl futures::Stream<Item = Bytes> + Send + 'static,
) -> Response {
    let body = Body::from_stream(chunks.map(Ok::<_, std::convert::Infallible>));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Nanoseconds, as Ollama reports durations.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Now, in Ollama's `created_at` format.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
