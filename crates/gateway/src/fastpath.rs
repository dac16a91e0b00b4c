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

use crate::client_io::{limit_body, ClientIo, RequestClock};
use crate::error::ApiError;
use crate::route::Route;
use crate::routes::{
    choose, instance_usage_route, model_from_body, runs_model, sequence, upstream_failed,
    user_routes, Meter, BY_MODEL_ROUTES, PER_INSTANCE_ROUTE,
};
use crate::state::Gateway;
use crate::upstream::{Stream, Upstream};
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use paddock_core::secret::{sha256_hex, API_KEY_PREFIX};
use paddock_core::user::Principal;
use paddock_core::InstanceId;
use std::future::Future;
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

/// The most a request head may take before hyper is left to answer it.
const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed per request or response head.
const MAX_HEADERS: usize = 64;
/// The most a response head from a model server may take.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bytes of a next (pipelined) request read while a response is proxied.
const MAX_PIPELINED: usize = 64 * 1024;
/// How long a connection may wait for its next request before it gives
/// back its buffers and its model-server stream.
const IDLE_GRACE: Duration = Duration::from_secs(1);
/// Open files kept for everything but client connections (the store, the
/// model servers' logs, listeners).
const RESERVED_FILES: usize = 256;
/// How often reaching the connection limit is logged, at most.
const LIMIT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `shutdown` completes, then waits
/// for the open ones to finish their requests. At most `max_connections`
/// are served at once; past that, new ones wait in the listen backlog.
pub async fn serve_connections(
    listener: TcpListener,
    state: Gateway,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let (close_tx, close_rx) = watch::channel(false);
    // Each connection holds a sender; `recv` returns once all are gone.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut warned: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= LIMIT_WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections,
                        "connection limit reached: new connections wait until one closes (raise max_connections, and the open-file limit, to serve more)"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
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
                    _slot: slot,
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

/// How many client connections to serve at once: `configured`, else half
/// the open-file limit less a reserve (each proxied request also holds a
/// connection to its model server). The soft limit is first raised to the
/// hard one, as servers do.
pub fn connection_limit(configured: Option<usize>) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Some(n) = configured {
        return n.max(1);
    }
    let files = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if hard > soft => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    let files = usize::try_from(files).unwrap_or(usize::MAX);
    (files.saturating_sub(RESERVED_FILES) / 2).max(64)
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
    state: Gateway,
    router: Router,
    /// Turns true when the server shuts down.
    close: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
    /// Its place under the connection limit.
    _slot: OwnedSemaphorePermit,
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
/// [`KEY_TTL`](paddock_control::keys_cache::KEY_TTL) after the principal was read from
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
    fn still_valid(&self, secret: &[u8], state: &Gateway, now: Instant) -> bool {
        self.reusable
            && *self.secret == *secret
            && self.generation == state.control.keys.key_generation()
            && now.saturating_duration_since(self.read_at) < paddock_control::keys_cache::KEY_TTL
            && self
                .expires_at
                .is_none_or(|e| e > state.control.clock.now())
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
        // Buffers are allocated when bytes arrive, and given back when the
        // connection idles (see `wait_for_bytes`).
        let mut buf = BytesMut::new();
        let mut scratch = Vec::new();
        let mut ubuf = BytesMut::new();
        // Waits for a shutdown; made once, so that it stays registered.
        let mut shutdown = std::pin::pin!(closing(self.close.clone()));
        let patience = self.state.settings.client_timeout();
        loop {
            // Set when this request first has to be waited for.
            let mut deadline = None;
            // When its first byte was read.
            let mut first_byte = (!buf.is_empty()).then(Instant::now);
            // Whether its credential was checked before its body came.
            let mut checked = false;
            let req = loop {
                let need = match parse_request(&buf, self.state.settings.body_limit_bytes) {
                    Parsed::Fast(req) => break Some(req),
                    Parsed::Decline => break None,
                    Parsed::Partial => None,
                    Parsed::Body(req) => {
                        // The head is here, the body not yet: a credential
                        // that fails is answered (by the router, 401) at
                        // once, without waiting for the body.
                        if !checked {
                            checked = true;
                            let token = &buf[req.token.clone()];
                            if !self.authenticate(token, Instant::now()).await {
                                break None;
                            }
                        }
                        Some(req.head_len + req.body_len - buf.len())
                    }
                };
                if *self.close.borrow() {
                    return;
                }
                // A shutdown closes the connection between requests, and
                // drops one that has not yet arrived whole.
                let deadline =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + patience);
                if buf.is_empty() {
                    let waited = self
                        .wait_for_bytes(&tcp, deadline, &mut shutdown, || {
                            buf = BytesMut::new();
                            scratch = Vec::new();
                            ubuf = BytesMut::new();
                        })
                        .await;
                    if !waited {
                        return;
                    }
                }
                reserve(&mut buf, need);
                let read = tokio::select! {
                    r = tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)) => r,
                    () = &mut shutdown => return,
                };
                match read {
                    // Idle too long, or a request too slow in coming.
                    Err(_) | Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(_)) => {
                        first_byte.get_or_insert_with(Instant::now);
                    }
                }
            };
            let started = first_byte.unwrap_or_else(Instant::now);
            // The request's and hyper's futures are boxed: held inline,
            // their state would be part of every connection's, also while
            // it idles.
            let Some(req) = req else {
                return Box::pin(self.hand_to_hyper(tcp, buf, started)).await;
            };
            let outcome =
                Box::pin(self.fast(&mut tcp, &mut buf, &mut scratch, &mut ubuf, req)).await;
            match outcome {
                Outcome::Next => {}
                Outcome::Close => {
                    let _ = tcp.shutdown().await;
                    return;
                }
                Outcome::Decline => {
                    return Box::pin(self.hand_to_hyper(tcp, buf, started)).await;
                }
            }
        }
    }

    /// Waits until the client sends something, up to `deadline`; false if
    /// it does not, or the server shuts down. A wait longer than
    /// [`IDLE_GRACE`] first gives back what an idle connection need not
    /// hold: the buffers (`shed`) and the kept model-server stream, so an
    /// idle connection costs little more than its socket.
    async fn wait_for_bytes(
        &mut self,
        tcp: &TcpStream,
        deadline: tokio::time::Instant,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
        shed: impl FnOnce(),
    ) -> bool {
        let grace = (tokio::time::Instant::now() + IDLE_GRACE).min(deadline);
        let ready = tokio::select! {
            r = tokio::time::timeout_at(grace, tcp.readable()) => r,
            () = shutdown.as_mut() => return false,
        };
        match ready {
            Ok(r) => return r.is_ok(),
            Err(_) if grace >= deadline => return false,
            Err(_) => {}
        }
        shed();
        if let Some((upstream, stream)) = self.upstream.take() {
            self.state.upstream.release_stream(&upstream, stream);
        }
        self.routes = None;
        let ready = tokio::select! {
            r = tokio::time::timeout_at(deadline, tcp.readable()) => r,
            () = shutdown.as_mut() => return false,
        };
        matches!(ready, Ok(Ok(())))
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
        let generation = state.control.keys.key_generation();
        let Ok(principal) = state.control.authenticate(token).await else {
            return false;
        };
        // An API key is kept for the next request, as long as the key
        // cache would keep it; an access token is checked on each.
        let kept = token
            .starts_with(API_KEY_PREFIX)
            .then(|| {
                state
                    .control
                    .keys
                    .key_entry(&sha256_hex(token), state.control.clock.now())
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
    /// bytes already read first; `started` is when the first of them
    /// arrived (the request's time limit counts from there).
    async fn hand_to_hyper(mut self, tcp: TcpStream, read: BytesMut, started: Instant) {
        let patience = self.state.settings.client_timeout();
        let clock = RequestClock::new(started.into());
        let io = TokioIo::new(ClientIo::new(read.freeze(), tcp, clock.clone(), patience));
        // The router's requests use the shared pool.
        if let Some((upstream, stream)) = self.upstream.take() {
            self.state.upstream.release_stream(&upstream, stream);
        }
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let deadline = clock.started() + patience;
            let req = req.map(|body| limit_body(body, deadline));
            router.clone().oneshot(req)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(patience)
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
        let generation = state.control.reconciler.generation();
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
            // By model: the caller's RUNNING instance of it for this
            // conversation, or the least busy.
            None => {
                let body = &buf[req.head_len..req.head_len + req.body_len];
                let Ok(model) = model_from_body(body) else {
                    return Outcome::Decline;
                };
                if !p.may_use_model(&model) {
                    return Outcome::Decline;
                }
                let Ok(route) = choose(state, &routes, p, &model, body) else {
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
            usage_route: req.usage_route,
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
    /// The route usage is recorded under.
    usage_route: &'static str,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
    token: Range<usize>,
    content_type: Option<Range<usize>>,
    accept: Option<Range<usize>>,
}

#[derive(Debug, PartialEq)]
enum Parsed {
    /// The head is not whole yet.
    Partial,
    /// The head is whole and of a kind the fast path takes; the body has
    /// not all arrived.
    Body(FastRequest),
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
        return Parsed::Partial;
    }
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial,
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
    let usage_route = match instance {
        None => route,
        Some(_) => instance_usage_route(target),
    };
    let mut body_len = None;
    let mut keep_alive = true;
    let mut token = None;
    let mut content_type = None;
    let mut accept = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            match (body_len, content_length(h.value)) {
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
    let req = FastRequest {
        head_len,
        body_len,
        route,
        target: range_in(buf, target.as_bytes()),
        instance: instance.map(|id| range_in(buf, id.as_bytes())),
        usage_route,
        keep_alive,
        token,
        content_type,
        accept,
    };
    if buf.len() < head_len + body_len {
        return Parsed::Body(req);
    }
    Parsed::Fast(req)
}

/// A `Content-Length` value: decimal digits only, with the optional
/// spaces or tabs around them that HTTP allows. A sign, other whitespace
/// or a value too large for the platform is refused, as hyper refuses it,
/// so both doors frame a body the same way.
fn content_length<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    let ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = value.iter().position(|b| !ows(b))?;
    let end = value.iter().rposition(|b| !ows(b))? + 1;
    let digits = &value[start..end];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
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
    state: &'a Gateway,
    p: &'a Principal,
    route: Route,
    /// The route's endpoint, taken out of `route`.
    upstream: Upstream,
    label: &'static str,
    /// The path usage is recorded under.
    usage_route: &'static str,
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
        let now = self.state.control.clock.now();
        let mut guard = self
            .state
            .control
            .activity
            .begin_at(&self.route.instance_id, now);
        let (mut client_rx, mut client_tx) = tcp.split();
        if runs_model(self.usage_route) {
            // A free sequence of the model server, or a turn in its queue
            // (left if the client goes away).
            let id = &self.route.instance_id;
            let seq = match self.state.control.activity.try_sequence(id) {
                Some(seq) => Ok(seq),
                None => tokio::select! {
                    r = sequence(self.state, id) => r,
                    () = client_gone(&client_rx, pipelined) => {
                        self.observe(499);
                        return Outcome::Close;
                    }
                },
            };
            match seq {
                Ok(seq) => guard.hold(seq),
                Err(err) => {
                    self.observe(err.status().as_u16());
                    let patience = self.state.settings.client_timeout();
                    return answer_error(patience, self.keep_alive, &mut client_tx, request, &err)
                        .await;
                }
            }
        }
        ubuf.clear();
        let sent = self
            .send(request, ubuf, &mut client_rx, pipelined, slot)
            .await;
        let Exchange {
            state,
            p,
            route,
            upstream,
            label,
            usage_route,
            keep_alive,
            started,
        } = self;
        let observe = |status: u16| observe(state, label, started, status);
        let patience = state.settings.client_timeout();
        let (mut up, head) = match sent {
            Ok(v) => v,
            Err(Failed::Client) => {
                observe(499);
                return Outcome::Close;
            }
            Err(Failed::Upstream(why)) => {
                observe(502);
                let err = upstream_failed(&route.instance_id, &why);
                return answer_error(patience, keep_alive, &mut client_tx, request, &err).await;
            }
        };
        let status = head.status;
        // The head for the client, sent with the body's first bytes.
        request.clear();
        client_head(request, &head, ubuf, &route.instance_id, keep_alive);
        ubuf.advance(head.len);
        let mut meter = Meter::start(state, p, route, usage_route, status, (now, started), guard);
        let upstream_keep_alive = head.keep_alive;
        let mut framing = head.framing;
        let mut ended = false;
        // Nothing has reached the client yet: a broken body can still be
        // answered with a 502 instead of a cut-short response.
        let mut written = false;
        let mut payload = Vec::new();
        loop {
            let (take, done) = match body_bytes(&mut framing, ubuf, &mut payload) {
                Ok(v) => v,
                Err(()) => {
                    let why = "a malformed chunked body";
                    if written {
                        tracing::warn!(instance = %meter.instance_id(), "the model server sent {why}; the response was cut short");
                        break;
                    }
                    observe(502);
                    let err = upstream_failed(meter.instance_id(), &why);
                    meter.set_status(502);
                    meter.finish(true);
                    return answer_error(patience, keep_alive, &mut client_tx, request, &err).await;
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
                if !written {
                    observe(status);
                    written = true;
                }
                if write_within(patience, &mut client_tx, request)
                    .await
                    .is_err()
                {
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
            if let Some((other, stream)) = slot.replace((upstream, up)) {
                state.upstream.release_stream(&other, stream);
            }
        }
        if keep_alive && !matches!(framing, Framing::UntilClose) {
            Outcome::Next
        } else {
            Outcome::Close
        }
    }

    fn observe(&self, status: u16) {
        observe(self.state, self.label, self.started, status);
    }

    /// Sends the request and reads the response head (skipping any 1xx),
    /// on a kept connection when there is one. A kept connection that
    /// fails before taking a single byte of the request never passed it
    /// on, so the request goes out again on a fresh one; once any of it
    /// was written the model server may be running it, and it is never
    /// sent twice.
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
            Some((u, stream)) if u == *upstream && stream.is_open() => Some(stream),
            other => {
                // Another server's stream goes back to the pool (which
                // drops it if it was closed).
                if let Some((u, stream)) = other {
                    pool.release_stream(&u, stream);
                }
                pool.idle_stream(upstream)
            }
        };
        let mut up = loop {
            let reused = kept.is_some();
            let mut up = match kept.take() {
                Some(up) => up,
                None => pool
                    .open_stream(upstream)
                    .await
                    .map_err(|e| Failed::Upstream(e.to_string()))?,
            };
            match write_request(&mut up, request).await {
                Ok(()) => break up,
                Err((0, _)) if reused => continue,
                Err((_, e)) => return Err(Failed::Upstream(e.to_string())),
            }
        };
        loop {
            if let Some(head) = parse_response(ubuf)? {
                return Ok((up, head));
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
                Ok(_) => {}
                Err(e) => return Err(Failed::Upstream(e.to_string())),
            }
        }
    }
}

/// Writes a request to a model server; on failure, how much of it was
/// written first.
async fn write_request(up: &mut Stream, request: &[u8]) -> Result<(), (usize, std::io::Error)> {
    let mut written = 0;
    while written < request.len() {
        match up.write(&request[written..]).await {
            Ok(0) => return Err((written, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

/// The response head for the client: the model server's status, date,
/// content type and framing, and which instance answered.
fn client_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    ubuf: &[u8],
    instance: &InstanceId,
    keep_alive: bool,
) {
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
    let _ = write!(out, "x-paddock-instance: {}\r\n", instance.as_str());
    match head.framing {
        Framing::Empty | Framing::UntilClose => {}
        Framing::Sized(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked(_) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !keep_alive || matches!(head.framing, Framing::UntilClose) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
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
                let n = content_length(h.value)
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

/// Counts a fast-path request in the route metrics.
fn observe(state: &Gateway, label: &str, started: Instant, status: u16) {
    let secs = started.elapsed().as_secs_f64();
    state.control.metrics.observe("POST", label, status, secs);
}

/// Answers `err` in the router's shape, written from `out`.
async fn answer_error(
    patience: Duration,
    keep_alive: bool,
    client: &mut WriteHalf<'_>,
    out: &mut Vec<u8>,
    err: &ApiError,
) -> Outcome {
    out.clear();
    error_response(out, err, keep_alive);
    match write_within(patience, client, out).await {
        Ok(()) if keep_alive => Outcome::Next,
        _ => Outcome::Close,
    }
}

/// Writes all of `data` to the client, failing if the client takes in
/// nothing for `patience` (it stopped reading: its connection is not held
/// open for it).
async fn write_within(
    patience: Duration,
    client: &mut WriteHalf<'_>,
    data: &[u8],
) -> std::io::Result<()> {
    let mut data = data;
    while !data.is_empty() {
        let n = tokio::time::timeout(patience, client.write(data))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
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
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    );
    if let ApiError::Unavailable { retry_after, .. } = err {
        let _ = write!(out, "retry-after: {retry_after}\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
}

/// A chunked body's framing, decoded as bytes arrive. Strict: a model
/// server's body is passed on verbatim, so only framing that RFC 9112
/// allows gets through (no bare LF, no control bytes in extensions or
/// trailers, extensions only after a `;`, trailers as `name: value`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Chunked {
    /// In a chunk-size line: the size so far and its digit count.
    #[default]
    Start,
    Size(u64, u8),
    /// Spaces or tabs after the size: a `;` must follow.
    SizeWs(u64),
    /// In a chunk extension, up to the line's end.
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    Trailer,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
}

/// A byte of a token (RFC 9110 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte allowed in a field value or chunk extension: visible ASCII,
/// space, tab, or obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80
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
                    None if b == b';' => Extension(n),
                    None if b == b' ' || b == b'\t' => SizeWs(n),
                    None => return Err(()),
                },
                (SizeWs(n), b' ' | b'\t') => SizeWs(n),
                (SizeWs(n), b';') => Extension(n),
                (Extension(n), b'\r') => SizeLf(n),
                (Extension(n), _) if is_field_byte(b) => Extension(n),
                (SizeLf(0), b'\n') => Trailer,
                (SizeLf(n), b'\n') => Data(n),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Start,
                (Trailer, b'\r') => EndLf,
                (Trailer | TrailerName, _) if is_tchar(b) => TrailerName,
                (TrailerName, b':') => TrailerValue,
                (TrailerValue, b'\r') => TrailerLf,
                (TrailerValue, _) if is_field_byte(b) => TrailerValue,
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
        // Every shorter prefix waits for more; once the head is whole it
        // is known (its credential can be checked before the body).
        for cut in 0..SHOW.len() {
            let parsed = parse_request(&SHOW[..cut], 1024);
            if cut < req.head_len {
                assert_eq!(parsed, Parsed::Partial, "cut at {cut}");
            } else {
                assert_eq!(parsed, Parsed::Body(req.clone()), "cut at {cut}");
            }
        }
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
        assert_eq!(req.usage_route, "/api/generate");
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
            ("Content-Length: 24", "Content-Length: +24"),
            ("Content-Length: 24", "Content-Length: 24\u{a0}"),
            ("Content-Length: 24", "Content-Length: 0x18"),
            ("Content-Length: 24", "Content-Length: 2 4"),
            ("Content-Length: 24", "Content-Length: "),
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
    fn content_lengths_are_digits_only() {
        assert_eq!(content_length::<u64>(b"24"), Some(24));
        assert_eq!(content_length::<u64>(b" \t24 "), Some(24));
        for bad in [
            &b""[..],
            b" ",
            b"+24",
            b"-1",
            b"24\xc2\xa0",
            b"2 4",
            b"99999999999999999999999",
        ] {
            assert_eq!(content_length::<u64>(bad), None, "{bad:?}");
        }
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
        // Spaces before an extension are allowed.
        let mut decoder = Chunked::default();
        let spaced = decoder.feed(b"2 \t;a=\"b c\"\r\nhi\r\n0\r\n\r\n", &mut |_| {});
        assert_eq!(spaced, Ok(Some(22)));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"1\n",
            b"fffffffffffffffff\r\n",
            // Bare LF in an extension, and a control byte.
            b"1;a\nb\r\n",
            b"1;a\x00\r\n",
            // Something other than an extension after the size.
            b"1 x\r\n",
            b"1 \r\n",
            // Trailers: bare LF, no colon, a bad name, a control byte.
            b"0\r\nA: b\n\r\n",
            b"0\r\nnocolon\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nA b: v\r\n\r\n",
            b"0\r\nA: \x01\r\n\r\n",
            // The end must be CRLF.
            b"0\r\n\n",
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
