//! The gateway's connections to model servers.
//!
//! HTTP/1 keep-alive connections are kept per upstream address and lent
//! out one request at a time: a [`Lease`] goes back to the pool when its
//! response body has been read to the end, and is dropped (closing the
//! connection, which tells the model server the client is gone) when it
//! has not. A connection has no task of its own: whoever holds it (the
//! request sending on it, then the response body being read from it)
//! drives its I/O from their own task, so a proxied request is served by
//! one task end to end, with no hand-offs between tasks.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Idle connections kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Releases between sweeps of closed connections of every upstream.
const SWEEP_EVERY: usize = 1024;
/// Reused connections tried before a fresh one is opened.
const MAX_REUSE_TRIES: usize = 3;

/// Where a model server listens: `host:port` over TCP, or a unix socket
/// (what the process driver gives its runtimes: only this user can reach
/// it, and a request costs the kernel less than a loopback TCP hop), and
/// the `Host` header for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`, or `unix:/path`: also the pool's key.
    addr: Arc<str>,
    host: HeaderValue,
}

/// The prefix of a unix socket endpoint.
const UNIX: &str = "unix:";

impl Upstream {
    /// From an instance's endpoint: `http://host:port` (a trailing slash
    /// is allowed), or `unix:/absolute/path` for a unix socket. Only plain
    /// HTTP: model servers are reached on loopback or a private network.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        if let Some(path) = url.strip_prefix(UNIX) {
            if !path.starts_with('/') {
                return Err(format!("upstream {url:?} must be unix:/absolute/path"));
            }
            return Ok(Upstream {
                addr: Arc::from(url),
                host: HeaderValue::from_static("localhost"),
            });
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("upstream {url:?} is neither an http:// URL nor unix:/path"))?;
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            return Err(format!("upstream {url:?} must be http://host:port"));
        }
        let host = HeaderValue::from_str(addr).map_err(|e| format!("upstream {url:?}: {e}"))?;
        Ok(Upstream {
            addr: Arc::from(addr),
            host,
        })
    }

    /// `host:port`, or `unix:/path`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The `Host` header value requests to it carry.
    pub fn host(&self) -> &[u8] {
        self.host.as_bytes()
    }
}

/// A connection to a model server, over TCP or a unix socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Whether the stream still looks usable for a next request: the model
    /// server has not closed it, nor sent anything unasked. This reads
    /// nothing unless the stream has become readable, so on a live idle
    /// stream it costs no system call.
    pub fn is_open(&self) -> bool {
        let mut byte = [0u8; 1];
        let read = match self {
            Stream::Tcp(s) => s.try_read(&mut byte),
            Stream::Unix(s) => s.try_read(&mut byte),
        };
        matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {0}: {1}")]
    Connect(Arc<str>, String),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

type Driver = hyper::client::conn::http1::Connection<TokioIo<Stream>, Body>;

/// One connection: the handle requests are sent with, and the future that
/// does its reading and writing (None once the connection has ended).
struct Conn {
    tx: SendRequest<Body>,
    driver: Option<Driver>,
}

impl Conn {
    /// Moves the connection's I/O along, registering `cx` for more; false
    /// once the connection has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(d) = self.driver.as_mut() {
            if let Poll::Ready(r) = Pin::new(d).poll(cx) {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                self.driver = None;
            }
        }
        self.driver.is_some()
    }

    fn is_open(&self) -> bool {
        self.driver.is_some() && !self.tx.is_closed()
    }

    /// Waits until a request can be sent, driving the connection meanwhile.
    async fn ready(&mut self) -> Result<(), hyper::Error> {
        std::future::poll_fn(|cx| {
            self.drive(cx);
            self.tx.poll_ready(cx)
        })
        .await
    }

    /// Sends one request and waits for the response head, driving the
    /// connection meanwhile.
    async fn send(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>> {
        let mut response = std::pin::pin!(self.tx.try_send_request(req));
        std::future::poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// What the pool needs to know of a connection it keeps.
trait Keep {
    /// Still usable, as far as can be told without I/O.
    fn is_open(&self) -> bool;
}

impl Keep for Conn {
    fn is_open(&self) -> bool {
        Conn::is_open(self)
    }
}

impl Keep for Stream {
    fn is_open(&self) -> bool {
        Stream::is_open(self)
    }
}

impl<C: Keep> Idle<C> {
    /// Still open and not idle too long.
    fn reusable(&self) -> bool {
        self.conn.is_open() && self.since.elapsed() < IDLE_TIMEOUT
    }
}

/// Idle connections per upstream address, the most recently used last.
struct Shelf<C> {
    idle: Mutex<HashMap<Arc<str>, Vec<Idle<C>>>>,
    releases: AtomicUsize,
}

impl<C> Default for Shelf<C> {
    fn default() -> Self {
        Shelf {
            idle: Mutex::default(),
            releases: AtomicUsize::new(0),
        }
    }
}

impl<C: Keep> Shelf<C> {
    /// The most recently used idle connection to `addr` that is still open.
    fn take(&self, addr: &str) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(addr)?;
        while let Some(c) = list.pop() {
            if c.reusable() {
                return Some(c.conn);
            }
        }
        None
    }

    fn put(&self, addr: Arc<str>, conn: C) {
        if !conn.is_open() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.entry(addr).or_default();
            if list.len() < MAX_IDLE_PER_UPSTREAM {
                list.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
        }
        if self.releases.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
    }

    /// Drops closed and expired connections of every upstream, and
    /// upstreams left with none (stopped instances).
    fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(Idle::reusable);
            !list.is_empty()
        });
    }

    fn count(&self, addr: &str) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(addr).map_or(0, Vec::len)
    }
}

#[derive(Default)]
struct PoolInner {
    /// hyper client connections, for requests the router forwards.
    conns: Shelf<Conn>,
    /// Plain streams, for the fast path's requests (`crate::fastpath`).
    streams: Shelf<Stream>,
}

/// Keep-alive connections to model servers, shared by all requests.
#[derive(Clone, Default)]
pub struct Pool(Arc<PoolInner>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.0.conns.idle.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Pool")
            .field("upstreams", &idle.len())
            .finish()
    }
}

/// A connection lent for one request; see [`Lease::release`].
pub struct Lease {
    pool: Pool,
    addr: Arc<str>,
    conn: Conn,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("addr", &self.addr).finish()
    }
}

impl Lease {
    /// Moves the connection's I/O along: call it before polling the
    /// response body, from the task reading that body.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        self.conn.drive(cx);
    }

    /// Returns the connection for reuse. Call it only once the response
    /// body has been read to the end; dropping a lease closes it instead.
    pub fn release(self) {
        self.pool.0.conns.put(self.addr, self.conn);
    }
}

/// Opens a connection to `upstream`: its unix socket, or TCP with no
/// Nagle delay (streamed chunks are small writes).
async fn open(upstream: &Upstream) -> Result<Stream, UpstreamError> {
    let fail = |e: String| UpstreamError::Connect(upstream.addr.clone(), e);
    let connect = async {
        match upstream.addr.strip_prefix(UNIX) {
            Some(path) => UnixStream::connect(path).await.map(Stream::Unix),
            None => {
                let stream = TcpStream::connect(&*upstream.addr).await?;
                let _ = stream.set_nodelay(true);
                Ok(Stream::Tcp(stream))
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))
}

impl Pool {
    /// Sends `req` (whose URI is a path and query) to `upstream`, on an
    /// idle connection if there is one, else on a new one.
    pub async fn send(
        &self,
        upstream: &Upstream,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        req.headers_mut()
            .insert(header::HOST, upstream.host.clone());
        for _ in 0..MAX_REUSE_TRIES {
            let Some(mut conn) = self.0.conns.take(&upstream.addr) else {
                break;
            };
            if conn.ready().await.is_err() {
                continue;
            }
            match conn.send(req).await {
                Ok(resp) => return Ok((resp, self.lease(upstream, conn))),
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request went out
                    // (the server ended an idle keep-alive): try another.
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let stream = open(upstream).await?;
        let (tx, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let mut conn = Conn {
            tx,
            driver: Some(driver),
        };
        conn.ready().await?;
        let resp = conn.send(req).await.map_err(|e| e.into_error())?;
        Ok((resp, self.lease(upstream, conn)))
    }

    fn lease(&self, upstream: &Upstream, conn: Conn) -> Lease {
        Lease {
            pool: self.clone(),
            addr: upstream.addr.clone(),
            conn,
        }
    }

    /// An idle plain stream to `upstream` (whether the server has closed
    /// it meanwhile shows when it is used), or None.
    pub fn idle_stream(&self, upstream: &Upstream) -> Option<Stream> {
        self.0.streams.take(&upstream.addr)
    }

    /// A new plain stream to `upstream`.
    pub async fn open_stream(&self, upstream: &Upstream) -> Result<Stream, UpstreamError> {
        open(upstream).await
    }

    /// Keeps a plain stream whose last response was read to its end.
    pub fn release_stream(&self, upstream: &Upstream, stream: Stream) {
        self.0.streams.put(upstream.addr.clone(), stream);
    }

    /// Whether the model server at `endpoint` (an instance's endpoint, a
    /// URL or a unix socket) answers `GET /api/version` within two seconds.
    pub async fn healthy(&self, endpoint: &str) -> bool {
        let Ok(upstream) = Upstream::parse(endpoint) else {
            return false;
        };
        let Ok(req) = Request::get("/api/version").body(Body::empty()) else {
            return false;
        };
        let answer = tokio::time::timeout(Duration::from_secs(2), async {
            let (resp, lease) = self.send(&upstream, req).await.ok()?;
            let ok = resp.status().is_success();
            // Read to the end, so that the connection is kept.
            axum::body::to_bytes(Body::new(resp.into_body()), 64 * 1024)
                .await
                .ok()?;
            lease.release();
            Some(ok)
        });
        matches!(answer.await, Ok(Some(true)))
    }

    /// Drops closed and expired connections of every upstream, and
    /// upstreams left with none (stopped instances).
    pub fn sweep(&self) {
        self.0.conns.sweep();
        self.0.streams.sweep();
    }

    /// Idle connections to `addr`, of both kinds (for tests).
    pub fn idle_count(&self, addr: &str) -> usize {
        self.0.conns.count(addr) + self.0.streams.count(addr)
    }
}

#[async_trait::async_trait]
impl paddock_control::HealthProbe for Pool {
    async fn healthy(&self, endpoint: &str) -> bool {
        Pool::healthy(self, endpoint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use std::net::SocketAddr;

    /// A server answering each request with the client's port, so the test
    /// sees which connection carried it; `/close` also ends the connection.
    async fn peer_server() -> Upstream {
        let app =
            axum::Router::new()
                .route(
                    "/peer",
                    get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                        peer.port().to_string()
                    }),
                )
                .route(
                    "/close",
                    get(|| async { ([(header::CONNECTION, "close")], "bye") }),
                );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Upstream::parse(&format!("http://{addr}")).unwrap()
    }

    async fn get_text(pool: &Pool, up: &Upstream, path: &str) -> (String, Lease) {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let (resp, lease) = pool.send(up, req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), lease)
    }

    #[tokio::test]
    async fn released_connections_are_reused_and_dropped_ones_are_not() {
        let up = peer_server().await;
        let pool = Pool::default();
        let (first, lease) = get_text(&pool, &up, "/peer").await;
        lease.release();
        for _ in 0..3 {
            let (again, lease) = get_text(&pool, &up, "/peer").await;
            assert_eq!(
                again, first,
                "a released connection carries the next request"
            );
            lease.release();
        }
        assert_eq!(pool.idle_count(up.addr()), 1);

        // A lease that is not released (the body was cut short) is closed.
        let (_, lease) = get_text(&pool, &up, "/peer").await;
        drop(lease);
        let (other, lease) = get_text(&pool, &up, "/peer").await;
        assert_ne!(other, first);
        lease.release();

        // Concurrent requests each get a connection; all come back.
        let pool2 = pool.clone();
        let results = futures::future::join_all((0..4).map(|_| {
            let (pool, up) = (pool2.clone(), up.clone());
            async move {
                let req = Request::get("/peer").body(Body::empty()).unwrap();
                pool.send(&up, req).await.unwrap()
            }
        }))
        .await;
        let mut ports = Vec::new();
        for (resp, lease) in results {
            ports.push(resp.into_body().collect().await.unwrap().to_bytes());
            lease.release();
        }
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 4);
        assert_eq!(pool.idle_count(up.addr()), 4);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        let up = peer_server().await;
        let pool = Pool::default();
        let (bye, lease) = get_text(&pool, &up, "/close").await;
        assert_eq!(bye, "bye");
        lease.release();
        let (port, lease) = get_text(&pool, &up, "/peer").await;
        assert!(port.parse::<u16>().is_ok());
        lease.release();
        pool.sweep();
        assert_eq!(pool.idle_count(up.addr()), 1);
    }

    #[test]
    fn upstreams_parse() {
        let u = Upstream::parse("http://127.0.0.1:8081/").unwrap();
        assert_eq!(u.addr(), "127.0.0.1:8081");
        assert!(Upstream::parse("https://x:1").is_err());
        assert!(Upstream::parse("http://x:1/api").is_err());
        assert!(Upstream::parse("http://").is_err());
        let u = Upstream::parse("unix:/run/paddock/i-1/runtime.sock").unwrap();
        assert_eq!(u.addr(), "unix:/run/paddock/i-1/runtime.sock");
        assert_eq!(u.host(), b"localhost");
        assert!(Upstream::parse("unix:relative.sock").is_err());
    }
}
