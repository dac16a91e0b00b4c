//! The gateway: the Ollama and OpenAI APIs in front of users' instances.
//!
//! Requests are authenticated like every other route (API keys are the
//! normal credential for programs), routed by `model` to the caller's
//! RUNNING instance of it (when there are several, the one that last
//! served the conversation's leading messages unless it is much busier,
//! else the least busy; a SLEEPING one is woken), or by instance id under
//! `/models/<id>/...`, and streamed back chunk by chunk. Each request is
//! metered: the token counts are read from the tail of the response
//! (Ollama's final chunk, OpenAI's `usage`) and recorded with the caller,
//! key, instance and model. A client that disconnects drops the upstream
//! request, which frees the model's sequence.

use crate::auth::Auth;
use crate::error::ApiError;
use crate::route::Route;
use crate::state::Gateway;
use crate::upstream::Lease;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use http_body::Frame;
use hyper::body::Incoming;
use paddock_control::activity::{Busy, Sequence};
use paddock_control::reconciler::wake_instance;
use paddock_core::instance::{DesiredState, Instance, InstanceState};
use paddock_core::user::{Principal, UsageRecord};
use paddock_core::{InstanceId, ModelId};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// How much of a response's end is kept to read token counts from.
const TAIL_BYTES: usize = 64 * 1024;

/// The routes that forward a POST to the caller's instance of the body's
/// `model` (also served by [`crate::fastpath`]).
pub const BY_MODEL_ROUTES: [&str; 8] = [
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
];

/// The routes that forward to one instance, named by id (also served by
/// [`crate::fastpath`]).
pub const PER_INSTANCE_ROUTE: &str = "/models/{instance_id}/{*rest}";

/// The model server routes answered to GET (also under `/models/<id>/`).
const GET_ROUTES: [&str; 4] = ["/api/tags", "/api/ps", "/api/version", "/v1/models"];

/// The route a request to one instance is recorded under in usage, from
/// the model server's path (`/api/chat?x=1`, as sent, not decoded): the
/// path itself when it is one of the gateway's API routes, else
/// [`PER_INSTANCE_ROUTE`]. Both doors record the same bounded set of
/// strings; the instance id is a column of its own.
pub(crate) fn instance_usage_route(path: &str) -> &'static str {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    BY_MODEL_ROUTES
        .iter()
        .chain(GET_ROUTES.iter())
        .find(|r| **r == path)
        .copied()
        .unwrap_or(PER_INSTANCE_ROUTE)
}

/// The gateway's routes.
pub fn router() -> Router<Gateway> {
    let mut router = Router::new();
    for path in BY_MODEL_ROUTES {
        router = router.route(path, post(by_model));
    }
    router
        .route(GET_ROUTES[0], get(tags))
        .route(GET_ROUTES[1], get(ps))
        .route(GET_ROUTES[2], get(version))
        .route(GET_ROUTES[3], get(v1_models))
        .route(PER_INSTANCE_ROUTE, any(per_instance))
}

async fn version() -> Json<Value> {
    Json(json!({ "version": paddock_core::OLLAMA_COMPAT_VERSION }))
}

/// A gateway request's whole body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| crate::error::body_error(&e))
}

/// Only the `model` field of a request body; the rest is skipped unparsed.
#[derive(serde::Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

pub(crate) fn model_from_body(body: &[u8]) -> Result<ModelId, ApiError> {
    let v: ModelField<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    match v.model {
        Some(m) if !m.trim().is_empty() => Ok(ModelId::new(m.trim())),
        _ => Err(ApiError::BadRequest(
            "`model` is required: the name of a model you deployed (GET /api/tags lists them)"
                .into(),
        )),
    }
}

fn same_model(deployed: &ModelId, asked: &ModelId) -> bool {
    deployed == asked
        || (!asked.as_str().contains(':')
            && deployed.as_str() == format!("{}:latest", asked.as_str()))
}

/// The caller's instances as routes, from the cache while no instance has
/// changed since they were read.
pub(crate) async fn user_routes(state: &Gateway, p: &Principal) -> Result<Arc<[Route]>, ApiError> {
    let generation = state.control.reconciler.generation();
    if let Some(cached) = state.routes.routes(&p.user_id, generation) {
        return Ok(cached);
    }
    let fresh: Arc<[Route]> = state
        .control
        .my_instances(p)
        .await?
        .iter()
        .map(Route::from)
        .collect();
    state
        .routes
        .put_routes(p.user_id.clone(), generation, fresh.clone());
    Ok(fresh)
}

/// How much busier (requests in flight) than the least busy instance the
/// one holding a conversation's prefix may be and still get its next turn:
/// more than twice as busy, plus two, and the conversation moves.
fn much_busier(affine: u32, least: u32) -> bool {
    affine > least.saturating_mul(2).saturating_add(2)
}

/// Among `routes`, the RUNNING instance of `model` for the request `body`:
/// when there are several, the one that last served the request's leading
/// messages unless it is [`much_busier`], else the least busy. Failing
/// that, the one to wake (asleep or on its way up), else any deployed one.
pub(crate) fn choose<'a>(
    state: &Gateway,
    routes: &'a [Route],
    p: &Principal,
    model: &ModelId,
    body: &[u8],
) -> Result<&'a Route, Option<&'a Route>> {
    let candidate =
        |r: &&Route| r.desired == DesiredState::Running && same_model(&r.model_id, model);
    let candidates = routes.iter().filter(candidate);
    // Loads are only looked up once there are two to compare.
    let mut best: Option<(&Route, Option<u32>)> = None;
    let mut waking: Option<&Route> = None;
    let mut any: Option<&Route> = None;
    let load = |r: &Route| state.control.activity.inflight(&r.instance_id);
    for r in candidates {
        any.get_or_insert(r);
        if r.is_ready() {
            best = match best {
                None => Some((r, None)),
                Some((b, b_load)) => {
                    let b_load = b_load.unwrap_or_else(|| load(b));
                    let r_load = load(r);
                    if r_load < b_load {
                        Some((r, Some(r_load)))
                    } else {
                        Some((b, Some(b_load)))
                    }
                }
            };
        } else if matches!(
            r.status,
            InstanceState::Sleeping
                | InstanceState::Starting
                | InstanceState::Pending
                | InstanceState::Pulling
        ) {
            waking.get_or_insert(r);
        }
    }
    match best {
        // Two or more to choose from: the conversation's own, if any.
        Some((least, Some(least_load))) if state.settings.cache_affinity => {
            let keys = crate::affinity::prefix_keys(&p.user_id, model, body);
            let affine = state.affinity.lookup(&keys).and_then(|id| {
                routes
                    .iter()
                    .find(|r| r.instance_id == id && r.is_ready() && candidate(r))
            });
            let chosen = match affine {
                Some(r) if r.instance_id == least.instance_id => r,
                Some(r) if !much_busier(load(r), least_load) => r,
                _ => least,
            };
            state.affinity.record(&keys, &chosen.instance_id);
            Ok(chosen)
        }
        Some((r, _)) => Ok(r),
        None => Err(waking.or(any)),
    }
}

/// The caller's instance to serve `model`: a RUNNING one (least busy), else
/// one that is asleep or on its way up, which is then woken and awaited.
async fn pick(
    state: &Gateway,
    p: &Principal,
    model: &ModelId,
    body: &[u8],
) -> Result<Route, ApiError> {
    if !p.may_use_model(model) {
        return Err(ApiError::Forbidden(format!(
            "this API key may not use {model}"
        )));
    }
    let routes = user_routes(state, p).await?;
    let chosen = match choose(state, &routes, p, model, body) {
        Ok(ready) => return Ok(ready.clone()),
        Err(other) => other.ok_or_else(|| {
            ApiError::not_found(format!(
                "model {model:?} is not deployed; deploy it first (POST /api/models/deploy or `paddock deploy {model} --cpu 1 --memory 2048`)"
            ))
        })?,
    };
    let woken = wake_instance(&state.control, &chosen.instance_id).await?;
    Ok(Route::from(&woken))
}

async fn by_model(
    State(state): State<Gateway>,
    Auth(p): Auth,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.settings.body_limit_bytes).await?;
    let model = model_from_body(&body)?;
    let route = pick(&state, &p, &model, &body).await?;
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |pq| pq.as_str());
    forward(
        &state,
        &p,
        route,
        parts.method,
        path,
        parts.uri.path(),
        &parts.headers,
        body,
    )
    .await
}

async fn per_instance(
    State(state): State<Gateway>,
    Auth(p): Auth,
    Path((instance_id, rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    // The caller's own running instance comes from the route cache; any
    // other case (another user's instance for an admin, one asleep or
    // starting, an unknown id) reads the store.
    let cached = user_routes(&state, &p)
        .await?
        .iter()
        .find(|r| r.instance_id.as_str() == instance_id && r.is_ready())
        .cloned();
    let route = match cached {
        Some(route) => route,
        None => Route::from(&state.control.instance(&p, &instance_id).await?),
    };
    if !p.may_use_model(&route.model_id) {
        return Err(ApiError::Forbidden(format!(
            "this API key may not use {}",
            route.model_id
        )));
    }
    if !(rest.starts_with("api/") || rest.starts_with("v1/") || rest.is_empty()) {
        return Err(ApiError::not_found(
            "instance endpoints serve the Ollama API under api/ and the OpenAI API under v1/",
        ));
    }
    // The body is read before any wake: the client has sent it, and its
    // time limit does not stretch over the wake.
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.settings.body_limit_bytes).await?;
    // Woken only once the request is known to be allowed.
    let route = if route.is_ready() {
        route
    } else {
        Route::from(&wake_instance(&state.control, &route.instance_id).await?)
    };
    // The model server's path as the client sent it (as the fast path
    // forwards it), after `/models/<id>`.
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |pq| pq.as_str())
        .strip_prefix("/models/")
        .and_then(|p| p.find('/').map(|at| &p[at..]))
        .unwrap_or("/")
        .to_owned();
    let label = instance_usage_route(&path);
    forward(
        &state,
        &p,
        route,
        parts.method,
        &path,
        label,
        &parts.headers,
        body,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &Gateway,
    p: &Principal,
    route: Route,
    method: Method,
    path: &str,
    route_label: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let upstream = route
        .upstream
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable {
            message: format!("instance {} is not ready", route.instance_id),
            retry_after: 2,
        })?;
    let now = state.control.clock.now();
    let mut guard = state.control.activity.begin_at(&route.instance_id, now);
    let started = Instant::now();
    if runs_model(route_label) {
        guard.hold(sequence(state, &route.instance_id).await?);
    }
    let uri: axum::http::Uri = path
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    for h in [header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&h) {
            req = req.header(h, v);
        }
    }
    let req = req
        .body(Body::from(body))
        .map_err(|e| ApiError::Internal(format!("building the upstream request: {e}")))?;
    let (resp, lease) = state
        .upstream
        .send(upstream, req)
        .await
        .map_err(|e| upstream_failed(&route.instance_id, &e))?;
    let (parts, incoming) = resp.into_parts();
    let status = parts.status;
    let mut out = Response::builder().status(status);
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&h) {
            out = out.header(h, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(route.instance_id.as_str()) {
        out = out.header("x-paddock-instance", v);
    }
    let meter = Meter::start(
        state,
        p,
        route,
        route_label,
        status.as_u16(),
        (now, started),
        guard,
    );
    out.body(Body::new(Metered {
        inner: incoming,
        meter: Some(meter),
        lease: Some(lease),
    }))
    .map_err(|e| ApiError::Internal(format!("building the response: {e}")))
}

/// Whether a request recorded under `route` (a by-model route, or what
/// [`instance_usage_route`] gives) runs the model, and so needs one of the
/// model server's sequences: everything but `/api/show` and the GET routes.
pub(crate) fn runs_model(route: &str) -> bool {
    route != "/api/show" && BY_MODEL_ROUTES.contains(&route)
}

/// The 503 for a request that got no sequence of `instance`.
pub(crate) fn busy(state: &Gateway, instance: &InstanceId, why: Busy) -> ApiError {
    state.control.metrics.queue_rejected.inc();
    let message = match why {
        Busy::Full => format!(
            "instance {instance} is busy: {} requests are already waiting for it; retry shortly or deploy another instance of the model",
            state.settings.queue_per_instance
        ),
        Busy::TimedOut => format!(
            "instance {instance} is busy: no sequence came free within {} s; retry shortly or deploy another instance of the model",
            state.settings.queue_timeout_secs
        ),
    };
    ApiError::Unavailable {
        message,
        retry_after: 2,
    }
}

/// A sequence of the instance for a request that runs the model: at once
/// if one is free (`wait_sequence` tries first, under the lock it queues
/// under), else after waiting in the instance's queue.
pub(crate) async fn sequence(state: &Gateway, instance: &InstanceId) -> Result<Sequence, ApiError> {
    let deadline = tokio::time::Instant::now() + state.settings.queue_timeout();
    state
        .control
        .activity
        .wait_sequence(instance, deadline)
        .await
        .map_err(|why| busy(state, instance, why))
}

/// The 502 for a model server that did not answer properly. What went
/// wrong is logged, not told: it names paths on this host (the instance's
/// socket) that are no business of the client's.
pub(crate) fn upstream_failed(instance: &InstanceId, why: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%instance, error = %why, "model server did not answer");
    ApiError::BadGateway(format!(
        "the model server of instance {instance} did not answer; try again, and if it persists see the instance's logs"
    ))
}

/// What is recorded when a proxied response ends.
pub(crate) struct Meter {
    state: Gateway,
    record: UsageRecord,
    started: Instant,
    tail: Tail,
    _guard: paddock_control::activity::ActivityGuard,
}

impl Meter {
    /// Starts metering a response from `route` whose head said `status`;
    /// `guard` has counted the request as in flight since `started` (the
    /// clock's time and the monotonic instant).
    pub(crate) fn start(
        state: &Gateway,
        p: &Principal,
        route: Route,
        route_label: &str,
        status: u16,
        started: (paddock_core::Timestamp, Instant),
        guard: paddock_control::activity::ActivityGuard,
    ) -> Meter {
        let (at, started) = started;
        Meter {
            state: state.clone(),
            record: UsageRecord {
                at,
                user_id: p.user_id.clone(),
                api_key_id: p.api_key.as_ref().map(|k| k.key_id.clone()),
                instance_id: route.instance_id,
                model_id: route.model_id,
                route: route_label.to_owned(),
                prompt_tokens: 0,
                completion_tokens: 0,
                duration_ms: 0,
                status,
            },
            started,
            tail: Tail::default(),
            _guard: guard,
        }
    }

    /// The instance the response comes from.
    pub(crate) fn instance_id(&self) -> &InstanceId {
        &self.record.instance_id
    }

    /// Records `status` instead of the model server's (paddock answered
    /// something else in its place).
    pub(crate) fn set_status(&mut self, status: u16) {
        self.record.status = status;
    }

    /// Keeps the end of the response body to read the counts from.
    pub(crate) fn push(&mut self, data: &Bytes) {
        self.tail.push(data);
    }

    /// Reads the counts and records the request (in the background: the
    /// response is already on its way).
    pub(crate) fn finish(mut self, complete: bool) {
        let (prompt, completion) = self.tail.token_counts();
        self.record.prompt_tokens = prompt;
        self.record.completion_tokens = completion;
        self.record.duration_ms = self.started.elapsed().as_millis() as u64;
        if !complete {
            // The client went away before the end (nginx's 499).
            self.record.status = 499;
        }
        self.state.control.metrics.add_tokens(prompt, completion);
        if !self.state.control.usage.record(self.record) {
            if let Some(total) = self.state.control.metrics.usage_dropped() {
                tracing::warn!(
                    dropped_so_far = total,
                    "usage queue full: usage records are being dropped (the store does not keep up with the gateway; paddock_usage_records_dropped counts them)"
                );
            }
        }
    }
}

/// The response body, passed through frame by frame while it is metered.
struct Metered {
    inner: Incoming,
    meter: Option<Meter>,
    /// The upstream connection, returned to the pool once the body has
    /// been read to the end (dropped, and so closed, otherwise).
    lease: Option<Lease>,
}

impl Metered {
    /// The body ended (`complete`) or broke off.
    fn end(&mut self, complete: bool) {
        if let Some(m) = self.meter.take() {
            m.finish(complete);
        }
        if let Some(lease) = self.lease.take() {
            if complete {
                lease.release();
            }
        }
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // This task drives the upstream connection: first so that what has
        // arrived reaches the body, and again if the body then asked for
        // more (its demand is only acted on when the connection is polled).
        if let Some(lease) = this.lease.as_mut() {
            lease.drive(cx);
        }
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            if let Some(lease) = this.lease.as_mut() {
                lease.drive(cx);
                polled = Pin::new(&mut this.inner).poll_frame(cx);
            }
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(m), Some(data)) = (this.meter.as_mut(), frame.data_ref()) {
                    m.push(data);
                }
                // A sized body is not polled again after its last byte.
                if this.inner.is_end_stream() {
                    this.end(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.end(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let complete = http_body::Body::is_end_stream(&self.inner);
        self.end(complete);
    }
}

/// The last frames of a response, at least [`TAIL_BYTES`] of them when
/// the response is that long. Frames are kept by reference, not copied.
#[derive(Default)]
struct Tail {
    frames: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl Tail {
    fn push(&mut self, frame: &Bytes) {
        self.frames.push_back(frame.clone());
        self.len += frame.len();
        while let Some(front) = self.frames.front() {
            if self.len - front.len() < TAIL_BYTES {
                break;
            }
            self.len -= front.len();
            self.frames.pop_front();
        }
    }

    /// The counts, from the last frame alone when it holds both (the usual
    /// case: the final chunk or a whole small body), else from the joined
    /// tail.
    fn token_counts(&self) -> (u64, u64) {
        let Some(last) = self.frames.back() else {
            return (0, 0);
        };
        match (prompt_count(last), completion_count(last)) {
            (Some(p), Some(c)) => return (p, c),
            // Nothing earlier to look in.
            (p, c) if self.frames.len() == 1 => return (p.unwrap_or(0), c.unwrap_or(0)),
            _ => {}
        }
        let mut joined = Vec::with_capacity(self.len);
        for f in &self.frames {
            joined.extend_from_slice(f);
        }
        token_counts(&joined)
    }
}

/// The integer after the last `"key":` in `text`, `finder` searching for
/// the quoted key. (A forward search for the last match: memchr's forward
/// search is vectorised, its reverse one is not.)
fn last_number(text: &[u8], finder: &memchr::memmem::Finder<'static>) -> Option<u64> {
    let at = finder.find_iter(text).last()?;
    let rest = &text[at + finder.needle().len()..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Searchers for the count keys, built once.
struct CountKeys {
    prompt_eval_count: memchr::memmem::Finder<'static>,
    prompt_tokens: memchr::memmem::Finder<'static>,
    eval_count: memchr::memmem::Finder<'static>,
    completion_tokens: memchr::memmem::Finder<'static>,
}

fn count_keys() -> &'static CountKeys {
    use memchr::memmem::Finder;
    static KEYS: std::sync::OnceLock<CountKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| CountKeys {
        prompt_eval_count: Finder::new(b"\"prompt_eval_count\"").into_owned(),
        prompt_tokens: Finder::new(b"\"prompt_tokens\"").into_owned(),
        eval_count: Finder::new(b"\"eval_count\"").into_owned(),
        completion_tokens: Finder::new(b"\"completion_tokens\"").into_owned(),
    })
}

fn prompt_count(text: &[u8]) -> Option<u64> {
    let k = count_keys();
    last_number(text, &k.prompt_eval_count).or_else(|| last_number(text, &k.prompt_tokens))
}

fn completion_count(text: &[u8]) -> Option<u64> {
    let k = count_keys();
    last_number(text, &k.eval_count).or_else(|| last_number(text, &k.completion_tokens))
}

/// Prompt and completion tokens from the end of an Ollama or OpenAI
/// response (final NDJSON chunk, SSE `usage` chunk, or a whole JSON body).
pub fn token_counts(tail: &[u8]) -> (u64, u64) {
    (
        prompt_count(tail).unwrap_or(0),
        completion_count(tail).unwrap_or(0),
    )
}

/// The caller's deployed models (not stopped), one entry per model.
async fn deployed(
    state: &Gateway,
    p: &Principal,
    running_only: bool,
) -> Result<Vec<Instance>, ApiError> {
    let mut by_model: BTreeMap<ModelId, Instance> = BTreeMap::new();
    for i in state.control.my_instances(p).await? {
        let keep = if running_only {
            i.status == InstanceState::Running
        } else {
            i.desired == DesiredState::Running && i.status != InstanceState::Stopped
        };
        if keep && p.may_use_model(&i.model_id) {
            by_model.entry(i.model_id.clone()).or_insert(i);
        }
    }
    Ok(by_model.into_values().collect())
}

async fn model_entry(state: &Gateway, i: &Instance) -> Value {
    let m = state.control.deployed_model(i).await.ok().flatten();
    let size = m.as_ref().map_or(0, |m| (m.model_size_gb * 1e9) as u64);
    let family = m.as_ref().map_or(String::new(), |m| m.model_family.clone());
    json!({
        "name": i.model_id,
        "model": i.model_id,
        "modified_at": i.created_at,
        "size": size,
        "digest": "",
        "details": {"format": "gguf", "family": family, "families": [family], "parameter_size": "", "quantization_level": ""},
    })
}

async fn tags(State(state): State<Gateway>, Auth(p): Auth) -> Result<Json<Value>, ApiError> {
    let mut models = Vec::new();
    for i in deployed(&state, &p, false).await? {
        models.push(model_entry(&state, &i).await);
    }
    Ok(Json(json!({ "models": models })))
}

async fn ps(State(state): State<Gateway>, Auth(p): Auth) -> Result<Json<Value>, ApiError> {
    let mut models = Vec::new();
    for i in deployed(&state, &p, true).await? {
        let mut e = model_entry(&state, &i).await;
        let expires = if i.idle_timeout_secs > 0 {
            json!(
                state
                    .control
                    .activity
                    .last_active(&i.instance_id)
                    .unwrap_or(i.last_active_at)
                    + chrono::Duration::seconds(i.idle_timeout_secs as i64)
            )
        } else {
            Value::Null
        };
        e["expires_at"] = expires;
        e["size_vram"] = json!(0);
        e["instance_id"] = json!(i.instance_id);
        models.push(e);
    }
    Ok(Json(json!({ "models": models })))
}

async fn v1_models(State(state): State<Gateway>, Auth(p): Auth) -> Result<Json<Value>, ApiError> {
    let data: Vec<Value> = deployed(&state, &p, false)
        .await?
        .iter()
        .map(|i| json!({"id": i.model_id, "object": "model", "created": i.created_at.timestamp(), "owned_by": "paddock"}))
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_each_format() {
        let ollama =
            b"{\"done\":false}\n{\"done\":true,\"prompt_eval_count\":12,\"eval_count\":34}\n";
        assert_eq!(token_counts(ollama), (12, 34));
        let sse = b"data: {\"choices\":[]}\n\ndata: {\"usage\":{\"prompt_tokens\": 5,\"completion_tokens\":7,\"total_tokens\":12}}\n\ndata: [DONE]\n\n";
        assert_eq!(token_counts(sse), (5, 7));
        assert_eq!(token_counts(b"{\"error\":\"x\"}"), (0, 0));
        assert_eq!(
            token_counts(b"{\"eval_count\": 99999999999999999999999}"),
            (0, 0)
        );
    }

    #[test]
    fn counts_from_frames_split_anywhere() {
        let body: &[u8] =
            b"{\"done\":false}\n{\"done\":true,\"prompt_eval_count\":12,\"eval_count\":34}\n";
        for cut in 0..body.len() {
            let mut t = Tail::default();
            t.push(&Bytes::copy_from_slice(&body[..cut]));
            t.push(&Bytes::copy_from_slice(&body[cut..]));
            assert_eq!(t.token_counts(), (12, 34), "cut at {cut}");
        }
        // Only the last TAIL_BYTES or so are kept.
        let mut t = Tail::default();
        for _ in 0..100 {
            t.push(&Bytes::from(vec![b' '; 4096]));
        }
        assert!(t.len < TAIL_BYTES + 4096 && t.len >= TAIL_BYTES);
    }

    #[test]
    fn model_names_match_with_latest() {
        assert!(same_model(
            &ModelId::new("command-r:latest"),
            &ModelId::new("command-r")
        ));
        assert!(!same_model(
            &ModelId::new("gemma3:270m"),
            &ModelId::new("gemma3")
        ));
    }
}
