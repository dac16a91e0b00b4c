//! The server's connection loop, and the gateway's HTTP/1 fast path.
//!
//! Every accepted connection starts here. A request for a by-model gateway
//! route ([`BY_MODEL_ROUTES`]) that can be forwarded at once (a bearer
//! credential that authenticates, a sized body within the limit, the
//! caller's instance of the model RUNNING) is proxied by this module
//! itself: its head is parsed with httparse, rewritten for the model
//! server, and the response is passed back byte for byte on one of the
//! model server's keep-alive connections, while its token counts are read
//! from the tail, all on the connection's own task. That is the work a
//! plain reverse proxy does, plus auth and metering, and none of a general
//! HTTP stack's (typed headers, routing, extractors, a body pipeline on
//! each side).
//!
//! Anything else (the management API, the web UI, a request that must wake
//! an instance or that is answered with an error, an unusual request) hands
//! the connection, with all it has read, to hyper and the axum router for
//! the rest of its life, so every rule the router applies still applies.
//! The fast path only takes the requests whose answer would be the same
//! there.

use crate::auth::extract::authenticate;
use crate::auth::secrets::{sha256_hex, API_KEY_PREFIX};
use crate::error::ApiError;
use crate::gateway::{
    choose, model_from_body, user_routes, Meter, Route, BY_MODEL_ROUTES, PER_INSTANCE_ROUTE,
};
use crate::state::AppState;
use crate::upstream::{Stream, Upstream};
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use paddock_core::user::Principal;
use std::borrow::Cow;
use std::future::Future;
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::ReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// The most a request head may take before hyper is left to answer it.
const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed per request or response head.
const MAX_HEADERS: usize = 64;
/// The most a response head from a model server may take.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bytes of a next (pipelined) request read while a response is proxied.
const MAX_PIPELINED: usize = 64 * 1024;

/// Accepts connections on `listener` until `shutdown` completes, then waits
/// for the open ones to finish their requests.
pub async fn serve_connections(
    listener: TcpListener,
    state: AppState,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let (close_tx, close_rx) = watch::channel(false);
    // Each connection holds a sender; `recv` returns once all are gone.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((tcp, _)) => {
                // Streamed chunks go out as they come: no Nagle delay.
                let _ = tcp.set_nodelay(true);
                let conn = Connection {
                    state: state.clone(),
                    router: router.clone(),
                    close: close_rx.clone(),
                    _open: open_tx.clone(),
                    known: None,
                    routes: None,
                    upstream: None,
                };
                tokio::spawn(conn.run(tcp));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// Resolves once the server shuts down.
async fn closing(mut close: watch::Receiver<bool>) {
    let _ = close.wait_for(|c| *c).await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One client connection.
struct Connection {
    state: AppState,
    router: Router,
    /// Turns true when the server shuts down.
    close: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
    /// The API key the last request authenticated with: a client sends the
    /// same one on every request of a connection.
    known: Option<KnownKey>,
    /// Its user's routes, with the reconciler's change counter they were
    /// read at.
    routes: Option<(u64, Arc<[Route]>)>,
    /// The model server stream its last response came on, used again for
    /// the next request to the same server (no trip through the shared
    /// pool); it goes back to the pool when the connection ends.
    upstream: UpstreamSlot,
}

/// A model server's stream whose last response was read to the end.
type UpstreamSlot = Option<(Upstream, Stream)>;

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((upstream, stream)) = self.upstream.take() {
            self.state.upstream.release_stream(&upstream, stream);
        }
    }
}

/// An API key and its principal, as the key cache had them. It is trusted
/// no longer than the cache entry it came from would be: until a key is
/// revoked or a user changed (the generation moves), and no more than
/// [`KEY_TTL`](crate::cache::KEY_TTL) after the principal was read from
/// the store.
struct KnownKey {
    secret: Box<[u8]>,
    principal: Principal,
    /// The key cache's generation before the key was authenticated: any
    /// revocation since changes it.
    generation: u64,
    /// When the principal was read from the store (not when this
    /// connection took it from the cache).
    read_at: Instant,
    expires_at: Option<paddock_core::Timestamp>,
    /// False for an access token, which is verified on every request.
    reusable: bool,
}

impl KnownKey {
    fn still_valid(&self, secret: &[u8], state: &AppState, now: Instant) -> bool {
        self.reusable
            && *self.secret == *secret
            && self.generation == state.caches.key_generation()
            && now.saturating_duration_since(self.read_at) < crate::cache::KEY_TTL
            && self.expires_at.is_none_or(|e| e > state.clock.now())
    }
}

/// How a fast-path request ended.
enum Outcome {
    /// Answered; the connection stays open for the next request.
    Next,
    /// Answered or broken off; the connection is closed.
    Close,
    /// Not taken: hyper answers it (nothing has been written).
    Decline,
}

impl Connection {
    async fn run(mut self, mut tcp: TcpStream) {
        let mut buf = BytesMut::with_capacity(4096);
        let mut scratch = Vec::with_capacity(1024);
        let mut ubuf = BytesMut::with_capacity(8192);
        // Waits for a shutdown; made once, so that it stays registered.
        let mut shutdown = std::pin::pin!(closing(self.close.clone()));
        let patience = self.state.config.client_timeout();
        loop {
            // Set when this request first has to be waited for.
            let mut deadline = None;
            let req = loop {
                let need = match parse_request(&buf, self.state.config.body_limit_bytes) {
                    Parsed::Fast(req) => break Some(req),
                    Parsed::Decline => break None,
                    Parsed::Partial(need) => need,
                };
                if *self.close.borrow() {
                    return;
                }
                reserve(&mut buf, need);
                // A shutdown closes the connection between requests, and
                // drops one that has not yet arrived whole.
                let deadline =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + patience);
                let read = tokio::select! {
                    r = tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)) => r,
                    () = &mut shutdown => return,
                };
                match read {
                    // Idle too long, or a request too slow in coming.
                    Err(_) | Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(_)) => {}
                }
            };
            let Some(req) = req else {
                return self.hand_to_hyper(tcp, buf).await;
            };
            let outcome = self
                .fast(&mut tcp, &mut buf, &mut scratch, &mut ubuf, req)
                .await;
            match outcome {
                Outcome::Next => {}
                Outcome::Close => {
                    let _ = tcp.shutdown().await;
                    return;
                }
                Outcome::Decline => return self.hand_to_hyper(tcp, buf).await,
            }
        }
    }

    /// Authenticates `token` into `self.known`: kept from the last request
    /// if it is the same API key and nothing was revoked since, else as
    /// the router would. False if it does not authenticate.
    async fn authenticate(&mut self, token: &[u8], now: Instant) -> bool {
        let state = &self.state;
        if self
            .known
            .as_ref()
            .is_some_and(|k| k.still_valid(token, state, now))
        {
            return true;
        }
        self.known = None;
        self.routes = None;
        let Ok(token) = std::str::from_utf8(token) else {
            return false;
        };
        // Read first: a revocation while authenticating moves it, and the
        // next request authenticates again.
        let generation = state.caches.key_generation();
        let Ok(principal) = authenticate(state, token).await else {
            return false;
        };
        // An API key is kept for the next request, as long as the key
        // cache would keep it; an access token is checked on each.
        let kept = token
            .starts_with(API_KEY_PREFIX)
            .then(|| {
                state
                    .caches
                    .key_entry(&sha256_hex(token), state.clock.now())
            })
            .flatten();
        self.known = Some(KnownKey {
            secret: token.as_bytes().into(),
            principal,
            generation,
            read_at: kept.as_ref().map_or(now, |(_, _, read_at)| *read_at),
            expires_at: kept.as_ref().and_then(|(_, e, _)| *e),
            reusable: kept.is_some(),
        });
        true
    }

    /// Serves the rest of the connection with hyper and the router, the
    /// bytes already read first.
    async fn hand_to_hyper(mut self, tcp: TcpStream, read: BytesMut) {
        let io = TokioIo::new(Prefixed {
            prefix: read.freeze(),
            inner: tcp,
        });
        // The router's requests use the shared pool.
        if let Some((upstream, stream)) = self.upstream.take() {
            self.state.upstream.release_stream(&upstream, stream);
        }
        let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.state.config.client_timeout())
            .serve_connection(io, service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = closing(self.close.clone()) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    /// Proxies one request if it can be answered here: authenticated, its
    /// model known and the caller's instance of it RUNNING.
    async fn fast(
        &mut self,
        tcp: &mut TcpStream,
        buf: &mut BytesMut,
        scratch: &mut Vec<u8>,
        ubuf: &mut BytesMut,
        req: FastRequest,
    ) -> Outcome {
        let started = Instant::now();
        if !self.authenticate(&buf[req.token.clone()], started).await {
            return Outcome::Decline;
        }
        let state = &self.state;
        let Some(p) = self.known.as_ref().map(|k| &k.principal) else {
            return Outcome::Decline;
        };
        let generation = state.reconciler.generation();
        let routes = match &self.routes {
            Some((g, routes)) if *g == generation => routes.clone(),
            _ => {
                let Ok(routes) = user_routes(state, p).await else {
                    return Outcome::Decline;
                };
                self.routes = Some((generation, routes.clone()));
                routes
            }
        };
        let route = match &req.instance {
            // By model: the caller's least busy RUNNING instance of it.
            None => {
                let body = &buf[req.head_len..req.head_len + req.body_len];
                let Ok(model) = model_from_body(body) else {
                    return Outcome::Decline;
                };
                if !p.may_use_model(&model) {
                    return Outcome::Decline;
                }
                let Ok(route) = choose(state, &routes, &model) else {
                    return Outcome::Decline;
                };
                route
            }
            // By id: the caller's own instance, if RUNNING.
            Some(id) => {
                let id = &buf[id.clone()];
                let Some(route) = routes
                    .iter()
                    .find(|r| r.instance_id.as_str().as_bytes() == id && r.is_ready())
                else {
                    return Outcome::Decline;
                };
                if !p.may_use_model(&route.model_id) {
                    return Outcome::Decline;
                }
                route
            }
        };
        let mut route = route.clone();
        // A ready route has an endpoint; resolved before anything is taken.
        let Some(upstream) = route.upstream.take() else {
            return Outcome::Decline;
        };
        // Taken: from here on the request is answered on this connection.
        let usage_route = match req.instance {
            None => Cow::Borrowed(req.route),
            Some(_) => {
                Cow::Owned(String::from_utf8_lossy(&buf[req.usage_route.clone()]).into_owned())
            }
        };
        scratch.clear();
        upstream_head(scratch, &req, buf, &upstream);
        scratch.extend_from_slice(&buf[req.head_len..req.head_len + req.body_len]);
        buf.advance(req.head_len + req.body_len);
        let exchange = Exchange {
            state,
            p,
            route,
            upstream,
            label: req.route,
            usage_route,
            keep_alive: req.keep_alive,
            started,
        };
        exchange
            .run(tcp, buf, scratch, ubuf, &mut self.upstream)
            .await
    }
}

/// Makes room to read at least `need` more bytes (a few KiB when unknown).
fn reserve(buf: &mut BytesMut, need: Option<usize>) {
    let want = need.unwrap_or(0).max(4096);
    if buf.capacity() - buf.len() < want {
        buf.reserve(want.max(8192));
    }
}

/// A request the fast path may take, located in the read buffer.
#[derive(Debug, Clone, PartialEq)]
struct FastRequest {
    head_len: usize,
    body_len: usize,
    /// The route, as the router names it.
    route: &'static str,
    /// The path and query to ask the model server for.
    target: Range<usize>,
    /// For `/models/<id>/...`: the instance id.
    instance: Option<Range<usize>>,
    /// The path usage is recorded under (the model server's path, without
    /// the query).
    usage_route: Range<usize>,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
    token: Range<usize>,
    content_type: Option<Range<usize>>,
    accept: Option<Range<usize>>,
}

#[derive(Debug, PartialEq)]
enum Parsed {
    /// Needs more bytes (this many more, when known).
    Partial(Option<usize>),
    /// Complete, head and body, and of a kind the fast path takes.
    Fast(FastRequest),
    /// For hyper: another route or method, HTTP/1.0, a chunked body,
    /// `Expect`, an upgrade, no bearer credential, a body over the limit,
    /// or a head that does not parse.
    Decline,
}

/// Where `part` (a slice of `buf`) lies in `buf`.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    assert!(start <= buf.len() && part.len() <= buf.len() - start);
    start..start + part.len()
}

fn parse_request(buf: &[u8], body_limit: usize) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial(None);
    }
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial(None),
        _ => return Parsed::Decline,
    };
    if req.method != Some("POST") || req.version != Some(1) {
        return Parsed::Decline;
    }
    let Some(path) = req.path else {
        return Parsed::Decline;
    };
    let (route, target, instance) =
        if let Some(route) = BY_MODEL_ROUTES.iter().find(|r| **r == path) {
            (*route, path, None)
        } else if let Some((id, rest)) = path
            .strip_prefix("/models/")
            .and_then(|p| p.split_once('/'))
            .filter(|(id, rest)| {
                !id.is_empty() && (rest.starts_with("api/") || rest.starts_with("v1/"))
            })
        {
            // The model server's path is what follows the id, from its slash.
            (
                PER_INSTANCE_ROUTE,
                &path[path.len() - rest.len() - 1..],
                Some(id),
            )
        } else {
            return Parsed::Decline;
        };
    let usage_route = target.split_once('?').map_or(target, |(p, _)| p);
    let mut body_len = None;
    let mut keep_alive = true;
    let mut token = None;
    let mut content_type = None;
    let mut accept = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            match (body_len, len) {
                (None, Some(len)) => body_len = Some(len),
                _ => return Parsed::Decline,
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            let value = h.value.trim_ascii();
            let Some((scheme, rest)) = value.split_at_checked(6) else {
                return Parsed::Decline;
            };
            let rest = rest.trim_ascii();
            if token.is_some()
                || !scheme.eq_ignore_ascii_case(b"bearer")
                || value.get(6) != Some(&b' ')
                || rest.is_empty()
            {
                return Parsed::Decline;
            }
            token = Some(range_in(buf, rest));
        } else if name.eq_ignore_ascii_case("connection") {
            for option in h.value.split(|b| *b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if !option.eq_ignore_ascii_case(b"keep-alive") && !option.is_empty() {
                    return Parsed::Decline;
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(range_in(buf, h.value));
        } else if name.eq_ignore_ascii_case("accept") {
            accept = Some(range_in(buf, h.value));
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::Decline;
        }
    }
    let (Some(body_len), Some(token)) = (body_len, token) else {
        return Parsed::Decline;
    };
    if body_len > body_limit {
        return Parsed::Decline;
    }
    if buf.len() < head_len + body_len {
        return Parsed::Partial(Some(head_len + body_len - buf.len()));
    }
    Parsed::Fast(FastRequest {
        head_len,
        body_len,
        route,
        target: range_in(buf, target.as_bytes()),
        instance: instance.map(|id| range_in(buf, id.as_bytes())),
        usage_route: range_in(buf, usage_route.as_bytes()),
        keep_alive,
        token,
        content_type,
        accept,
    })
}

/// The request head sent to the model server.
fn upstream_head(out: &mut Vec<u8>, req: &FastRequest, buf: &[u8], upstream: &Upstream) {
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(&buf[req.target.clone()]);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(upstream.host());
    out.extend_from_slice(b"\r\n");
    copy_headers(
        out,
        buf,
        [("content-type", &req.content_type), ("accept", &req.accept)],
    );
    let _ = write!(out, "content-length: {}\r\n\r\n", req.body_len);
}

/// Writes `name: value` lines for the headers found, their values read
/// from `buf`.
fn copy_headers<const N: usize>(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: [(&str, &Option<Range<usize>>); N],
) {
    for (name, value) in headers {
        if let Some(v) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&buf[v.clone()]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// How a response body is delimited.
#[derive(Debug)]
enum Framing {
    /// No body (204, 304).
    Empty,
    /// `Content-Length`: this many bytes still to come.
    Sized(u64),
    Chunked(Chunked),
    /// Until the model server closes the connection.
    UntilClose,
}

/// One request's trip to the model server and back.
struct Exchange<'a> {
    state: &'a AppState,
    p: &'a Principal,
    route: Route,
    /// The route's endpoint, taken out of `route`.
    upstream: Upstream,
    label: &'static str,
    /// The path usage is recorded under.
    usage_route: Cow<'static, str>,
    keep_alive: bool,
    /// When the request was taken (its latency and duration count from
    /// here).
    started: Instant,
}

/// What went wrong before the response head reached the client.
enum Failed {
    /// The client left.
    Client,
    /// The model server did not answer properly (a 502 is sent).
    Upstream(String),
}

impl Exchange<'_> {
    async fn run(
        self,
        tcp: &mut TcpStream,
        pipelined: &mut BytesMut,
        request: &mut Vec<u8>,
        ubuf: &mut BytesMut,
        slot: &mut UpstreamSlot,
    ) -> Outcome {
        let state = self.state;
        let started = self.started;
        let now = state.clock.now();
        let guard = state.activity.begin_at(&self.route.instance_id, now);
        let (mut client_rx, mut client_tx) = tcp.split();
        ubuf.clear();
        let sent = self
            .send(request, ubuf, &mut client_rx, pipelined, slot)
            .await;
        let (mut up, head) = match sent {
            Ok(v) => v,
            Err(Failed::Client) => {
                self.observe(499, started);
                return Outcome::Close;
            }
            Err(Failed::Upstream(why)) => {
                let err = ApiError::BadGateway(format!(
                    "instance {} did not answer: {why}",
                    self.route.instance_id
                ));
                self.observe(502, started);
                request.clear();
                error_response(request, &err, self.keep_alive);
                return match client_tx.write_all(request).await {
                    Ok(()) if self.keep_alive => Outcome::Next,
                    _ => Outcome::Close,
                };
            }
        };
        let status = head.status;
        self.observe(status, started);
        // The head for the client, sent with the body's first bytes.
        request.clear();
        self.client_head(request, &head, ubuf);
        ubuf.advance(head.len);
        let mut meter = Meter::start(
            state,
            self.p,
            self.route,
            &self.usage_route,
            status,
            (now, started),
            guard,
        );
        let upstream_keep_alive = head.keep_alive;
        let mut framing = head.framing;
        let mut ended = false;
        let mut payload = Vec::new();
        loop {
            let (take, done) = match body_bytes(&mut framing, ubuf, &mut payload) {
                Ok(v) => v,
                Err(()) => {
                    tracing::warn!("a model server sent a malformed response body");
                    break;
                }
            };
            if take > 0 {
                let data = ubuf.split_to(take).freeze();
                request.extend_from_slice(&data);
                // What the client will read of the body, for the counts.
                if matches!(framing, Framing::Chunked(_)) {
                    if !payload.is_empty() {
                        meter.push(&Bytes::from(std::mem::take(&mut payload)));
                    }
                } else {
                    meter.push(&data);
                }
            }
            if !request.is_empty() {
                if client_tx.write_all(request).await.is_err() {
                    break;
                }
                request.clear();
            }
            if done {
                ended = true;
                break;
            }
            reserve(ubuf, None);
            let read = tokio::select! {
                r = up.read_buf(ubuf) => r,
                () = client_gone(&client_rx, pipelined) => break,
            };
            match read {
                Ok(0) if matches!(framing, Framing::UntilClose) => {
                    ended = true;
                    break;
                }
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        meter.finish(ended);
        if !ended {
            return Outcome::Close;
        }
        if upstream_keep_alive && ubuf.is_empty() && !matches!(framing, Framing::UntilClose) {
            // Kept on this connection for its next request; the one it
            // replaces (another server's) goes back to the pool.
            if let Some((other, stream)) = slot.replace((self.upstream, up)) {
                state.upstream.release_stream(&other, stream);
            }
        }
        if self.keep_alive && !matches!(framing, Framing::UntilClose) {
            Outcome::Next
        } else {
            Outcome::Close
        }
    }

    fn observe(&self, status: u16, started: Instant) {
        self.state
            .metrics
            .observe("POST", self.label, status, started.elapsed().as_secs_f64());
    }

    /// Sends the request and reads the response head (skipping any 1xx),
    /// on a kept connection when there is one; one that turns out closed
    /// before answering is replaced by a fresh one.
    async fn send(
        &self,
        request: &[u8],
        ubuf: &mut BytesMut,
        client: &mut ReadHalf<'_>,
        pipelined: &mut BytesMut,
        slot: &mut UpstreamSlot,
    ) -> Result<(Stream, ResponseHead), Failed> {
        let pool = &self.state.upstream;
        let upstream = &self.upstream;
        let mut kept = match slot.take() {
            Some((u, stream)) if u == *upstream => Some(stream),
            other => {
                if let Some((u, stream)) = other {
                    pool.release_stream(&u, stream);
                }
                pool.idle_stream(upstream)
            }
        };
        loop {
            let reused = kept.is_some();
            let mut up = match kept.take() {
                Some(up) => up,
                None => pool
                    .open_stream(upstream)
                    .await
                    .map_err(|e| Failed::Upstream(e.to_string()))?,
            };
            let mut answered = false;
            let result = async {
                up.write_all(request)
                    .await
                    .map_err(|e| Failed::Upstream(e.to_string()))?;
                loop {
                    if let Some(head) = parse_response(ubuf)? {
                        return Ok(head);
                    }
                    reserve(ubuf, None);
                    let read = tokio::select! {
                        r = up.read_buf(ubuf) => r,
                        () = client_gone(client, pipelined) => return Err(Failed::Client),
                    };
                    match read {
                        Ok(0) => {
                            return Err(Failed::Upstream(
                                "the connection closed before a response".into(),
                            ))
                        }
                        Ok(_) => answered = true,
                        Err(e) => return Err(Failed::Upstream(e.to_string())),
                    }
                }
            }
            .await;
            match result {
                Ok(head) => return Ok((up, head)),
                // A kept connection the server had closed: the request
                // never reached it, so it goes out again on a new one.
                Err(Failed::Upstream(_)) if reused && !answered => {
                    ubuf.clear();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The response head for the client: the model server's status, date,
    /// content type and framing, and which instance answered.
    fn client_head(&self, out: &mut Vec<u8>, head: &ResponseHead, ubuf: &[u8]) {
        let _ = write!(out, "HTTP/1.1 {} ", head.status);
        out.extend_from_slice(&ubuf[head.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        copy_headers(
            out,
            ubuf,
            [
                ("date", &head.date),
                ("content-type", &head.content_type),
                ("retry-after", &head.retry_after),
            ],
        );
        let _ = write!(
            out,
            "x-paddock-instance: {}\r\n",
            self.route.instance_id.as_str()
        );
        match head.framing {
            Framing::Empty | Framing::UntilClose => {}
            Framing::Sized(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
            }
            Framing::Chunked(_) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        if !self.keep_alive || matches!(head.framing, Framing::UntilClose) {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// A model server's response head, located in the read buffer.
#[derive(Debug)]
struct ResponseHead {
    len: usize,
    status: u16,
    reason: Range<usize>,
    framing: Framing,
    /// Whether the model server keeps the connection open after it.
    keep_alive: bool,
    date: Option<Range<usize>>,
    content_type: Option<Range<usize>>,
    retry_after: Option<Range<usize>>,
}

/// The response head at the start of `ubuf`, if whole (informational
/// heads before it are skipped).
fn parse_response(ubuf: &mut BytesMut) -> Result<Option<ResponseHead>, Failed> {
    loop {
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            ubuf,
            &mut headers,
        );
        let head_len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if ubuf.len() <= MAX_RESPONSE_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => {
                return Err(Failed::Upstream("the response head is too large".into()))
            }
            Err(e) => return Err(Failed::Upstream(format!("malformed response: {e}"))),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(Failed::Upstream("unexpected protocol switch".into()));
            }
            // Informational: the real head follows.
            ubuf.advance(head_len);
            continue;
        }
        let mut keep_alive = resp.version == Some(1);
        let mut length = None;
        let mut chunked = false;
        let (mut date, mut content_type, mut retry_after) = (None, None, None);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("date") {
                date = Some(range_in(ubuf, h.value));
            } else if h.name.eq_ignore_ascii_case("content-type") {
                content_type = Some(range_in(ubuf, h.value));
            } else if h.name.eq_ignore_ascii_case("retry-after") {
                retry_after = Some(range_in(ubuf, h.value));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| Failed::Upstream("bad content-length".into()))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Failed::Upstream("conflicting content-length".into()));
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                if !chunked {
                    return Err(Failed::Upstream("unsupported transfer-encoding".into()));
                }
            } else if h.name.eq_ignore_ascii_case("connection")
                && h.value
                    .split(|b| *b == b',')
                    .any(|o| o.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                keep_alive = false;
            }
        }
        let framing = if status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked(Chunked::default())
        } else if let Some(n) = length {
            Framing::Sized(n)
        } else {
            Framing::UntilClose
        };
        let reason = resp.reason.map_or(0..0, |r| range_in(ubuf, r.as_bytes()));
        return Ok(Some(ResponseHead {
            len: head_len,
            status,
            reason,
            framing,
            keep_alive,
            date,
            content_type,
            retry_after,
        }));
    }
}

/// How many bytes at the start of `data` belong to the body, and whether
/// the body ends with them; a chunked body's payload in them is added to
/// `payload`.
fn body_bytes(
    framing: &mut Framing,
    data: &[u8],
    payload: &mut Vec<u8>,
) -> Result<(usize, bool), ()> {
    match framing {
        Framing::Empty => Ok((0, true)),
        Framing::Sized(left) => {
            let take = (*left).min(data.len() as u64);
            *left -= take;
            Ok((take as usize, *left == 0))
        }
        Framing::Chunked(decoder) => {
            match decoder.feed(data, &mut |p| payload.extend_from_slice(p))? {
                Some(end) => Ok((end, true)),
                None => Ok((data.len(), false)),
            }
        }
        Framing::UntilClose => Ok((data.len(), false)),
    }
}

/// Resolves when the client has closed its side (or its connection broke);
/// bytes it sends meanwhile (a pipelined request) are kept in `pipelined`.
async fn client_gone(client: &ReadHalf<'_>, pipelined: &mut BytesMut) {
    let tcp: &TcpStream = client.as_ref();
    loop {
        if pipelined.len() >= MAX_PIPELINED {
            // Enough buffered: stop reading (and watching) until later.
            return std::future::pending().await;
        }
        if tcp.readable().await.is_err() {
            return;
        }
        reserve(pipelined, None);
        match tcp.try_read_buf(pipelined) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// An error answered on the fast path, in the router's shape.
fn error_response(out: &mut Vec<u8>, err: &ApiError, keep_alive: bool) {
    let body = err.json_body();
    let status = err.status();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        if keep_alive {
            ""
        } else {
            "connection: close\r\n"
        }
    );
    out.extend_from_slice(&body);
}

/// A chunked body's framing, decoded as bytes arrive.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Chunked {
    /// In a chunk-size line: the size so far and its digit count.
    #[default]
    Start,
    Size(u64, u8),
    /// In a chunk extension, up to the line's end.
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    Trailer,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    /// Follows `data`, handing each stretch of chunk payload to `payload`.
    /// Returns where the body ended within `data`, or None when it goes
    /// on; Err on a framing error.
    fn feed(&mut self, data: &[u8], payload: &mut dyn FnMut(&[u8])) -> Result<Option<usize>, ()> {
        use Chunked::*;
        let mut i = 0;
        while i < data.len() {
            if let Data(left) = *self {
                let take = left.min((data.len() - i) as u64) as usize;
                payload(&data[i..i + take]);
                i += take;
                *self = if left == take as u64 {
                    DataCr
                } else {
                    Data(left - take as u64)
                };
                continue;
            }
            let b = data[i];
            i += 1;
            *self = match (*self, b) {
                (Start, _) => match hex(b) {
                    Some(d) => Size(d, 1),
                    None => return Err(()),
                },
                (Size(n, digits), _) => match hex(b) {
                    Some(d) if digits < 15 => Size(n * 16 + d, digits + 1),
                    Some(_) => return Err(()),
                    None if b == b'\r' => SizeLf(n),
                    None if b == b';' || b == b' ' || b == b'\t' => Extension(n),
                    None => return Err(()),
                },
                (Extension(n), b'\r') => SizeLf(n),
                (Extension(_), b'\n') => return Err(()),
                (Extension(n), _) => Extension(n),
                (SizeLf(0), b'\n') => Trailer,
                (SizeLf(n), b'\n') => Data(n),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Start,
                (Trailer, b'\r') => EndLf,
                (Trailer, _) | (TrailerLine, _) if b != b'\r' => TrailerLine,
                (TrailerLine, b'\r') => TrailerLf,
                (TrailerLf, b'\n') => Trailer,
                (EndLf, b'\n') => {
                    *self = Done;
                    return Ok(Some(i));
                }
                _ => return Err(()),
            };
        }
        Ok(None)
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// A connection whose first bytes were already read: they are read again
/// first.
struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &[u8] = b"POST /api/show HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pdk_abc\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"model\":\"gemma3:270m\"}\n";

    #[test]
    fn takes_a_plain_by_model_request() {
        let Parsed::Fast(req) = parse_request(SHOW, 1024) else {
            panic!("not taken");
        };
        assert_eq!(req.route, "/api/show");
        assert_eq!(&SHOW[req.token.clone()], b"pdk_abc");
        assert_eq!(
            &SHOW[req.content_type.clone().unwrap()],
            b"application/json"
        );
        assert_eq!(req.head_len + req.body_len, SHOW.len());
        assert!(req.keep_alive);
        // Every shorter prefix waits for more.
        for cut in 0..SHOW.len() {
            assert!(
                matches!(parse_request(&SHOW[..cut], 1024), Parsed::Partial(_)),
                "cut at {cut}"
            );
        }
        // The body's missing bytes are known once the head is whole.
        assert_eq!(
            parse_request(&SHOW[..SHOW.len() - 4], 1024),
            Parsed::Partial(Some(4))
        );
    }

    #[test]
    fn takes_per_instance_requests() {
        let text = std::str::from_utf8(SHOW)
            .unwrap()
            .replace("/api/show", "/models/i-1/api/generate?x=1");
        let buf = text.as_bytes();
        let Parsed::Fast(req) = parse_request(buf, 1024) else {
            panic!("not taken");
        };
        assert_eq!(req.route, PER_INSTANCE_ROUTE);
        assert_eq!(&buf[req.instance.clone().unwrap()], b"i-1");
        assert_eq!(&buf[req.target.clone()], b"/api/generate?x=1");
        assert_eq!(&buf[req.usage_route.clone()], b"/api/generate");
        for path in ["/models/i-1/other", "/models//api/chat", "/models/i-1"] {
            let text = std::str::from_utf8(SHOW)
                .unwrap()
                .replace("/api/show", path);
            assert_eq!(
                parse_request(text.as_bytes(), 1024),
                Parsed::Decline,
                "{path}"
            );
        }
    }

    #[test]
    fn leaves_everything_else_to_hyper() {
        let with = |from: &str, to: &str| {
            let text = std::str::from_utf8(SHOW).unwrap().replace(from, to);
            parse_request(text.as_bytes(), 1024)
        };
        for (from, to) in [
            ("POST", "GET"),
            ("/api/show", "/api/tags"),
            ("/api/show", "/api/show?x=1"),
            ("HTTP/1.1", "HTTP/1.0"),
            ("Bearer pdk_abc", "Basic eDp5"),
            ("Authorization: Bearer pdk_abc\r\n", ""),
            ("Content-Length: 24", "Transfer-Encoding: chunked"),
            ("Host: x", "Expect: 100-continue"),
            ("Host: x", "Connection: upgrade"),
            ("Host: x", "Content-Length: 25"),
        ] {
            assert_eq!(with(from, to), Parsed::Decline, "{from} -> {to}");
        }
        assert_eq!(parse_request(SHOW, 10), Parsed::Decline, "over the limit");
        assert_eq!(
            parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1024),
            Parsed::Decline
        );
        let Parsed::Fast(req) = with("Host: x", "Connection: close") else {
            panic!("not taken");
        };
        assert!(!req.keep_alive);
    }

    #[test]
    fn chunked_bodies_split_anywhere() {
        let body: &[u8] = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        for cut in 0..=body.len() {
            let mut decoder = Chunked::default();
            let mut payload = Vec::new();
            let mut ended = None;
            for (offset, part) in [(0, &body[..cut]), (cut, &body[cut..])] {
                if ended.is_some() {
                    break;
                }
                let at = decoder
                    .feed(part, &mut |p| payload.extend_from_slice(p))
                    .unwrap();
                ended = at.map(|at| offset + at);
            }
            assert_eq!(ended, Some(end), "cut at {cut}");
            assert_eq!(payload, b"hello, world", "cut at {cut}");
        }
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"1\n",
            b"fffffffffffffffff\r\n",
        ] {
            assert!(
                Chunked::default().feed(bad, &mut |_| {}).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn response_heads_give_the_framing() {
        let parse = |text: &[u8]| {
            let mut b = BytesMut::from(text);
            match parse_response(&mut b) {
                Ok(head) => head.map(|h| (b, h)),
                Err(_) => panic!("malformed"),
            }
        };
        let (b, head) = parse(
            b"HTTP/1.1 200 OK\r\nDate: today\r\nContent-Type: application/json\r\nServer: x\r\ncontent-length: 12\r\n\r\n",
        )
        .unwrap();
        assert!(head.status == 200 && head.keep_alive);
        assert!(matches!(head.framing, Framing::Sized(12)));
        assert_eq!(&b[head.reason.clone()], b"OK");
        assert_eq!(&b[head.date.clone().unwrap()], b"today");
        assert_eq!(&b[head.content_type.clone().unwrap()], b"application/json");
        assert!(head.retry_after.is_none());
        let (_, head) = parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
        assert!(matches!(head.framing, Framing::Chunked(_)));
        let (_, head) = parse(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n").unwrap();
        assert!(!head.keep_alive && matches!(head.framing, Framing::UntilClose));
        let (b, head) =
            parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(
            (head.len, head.status),
            (27, 204),
            "the 1xx head is skipped"
        );
        assert_eq!(&b[head.reason.clone()], b"No Content");
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-le").is_none());
    }
}
