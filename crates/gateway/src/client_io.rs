//! The time limits on a client connection that hyper serves.
//!
//! [`ClientIo`] is the connection as hyper sees it: the bytes the fast path
//! already read come first, a write the client takes nothing of for the
//! client timeout fails (a client that stops reading does not hold the
//! connection open), and it notes when each request's first byte arrived.
//! [`limit_body`] bounds the whole request by that instant: the body must
//! have arrived within the client timeout of the request's first byte,
//! however slowly it trickles, or reading it fails with [`BodyTimedOut`]
//! (answered 408 by [`crate::error::body_error`]). The head is bounded by
//! hyper's header read timeout. Idle time between requests is not part of
//! a request: that too is hyper's header read timeout.
//!
//! What it does not own: the fast path's own connection loop, which keeps
//! its deadlines itself (`crate::fastpath`).

use bytes::{Buf, Bytes};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// When the request being read on a connection began, shared by the
/// connection's I/O (which sees its bytes) and the service (which bounds
/// its body).
#[derive(Debug)]
pub struct RequestClock {
    /// The connection's start: instants are kept as nanoseconds after it.
    base: Instant,
    started_nanos: AtomicU64,
    /// A response was written since the last request began: the next
    /// bytes read start a new request.
    between: AtomicBool,
}

impl RequestClock {
    /// A clock whose current request began at `started`.
    pub fn new(started: Instant) -> Arc<RequestClock> {
        Arc::new(RequestClock {
            base: started,
            started_nanos: AtomicU64::new(0),
            between: AtomicBool::new(false),
        })
    }

    fn read_some(&self) {
        if self.between.swap(false, Ordering::Relaxed) {
            let nanos = self.base.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            self.started_nanos.store(nanos, Ordering::Relaxed);
        }
    }

    fn wrote_some(&self) {
        self.between.store(true, Ordering::Relaxed);
    }

    /// When the current request's first byte arrived.
    pub fn started(&self) -> Instant {
        self.base + Duration::from_nanos(self.started_nanos.load(Ordering::Relaxed))
    }
}

/// A client connection served by hyper; see the module doc.
#[derive(Debug)]
pub struct ClientIo {
    prefix: Bytes,
    inner: TcpStream,
    clock: Arc<RequestClock>,
    /// How long a write may take in nothing before it fails.
    patience: Duration,
    /// Armed while a write waits for the client to read.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl ClientIo {
    /// `prefix`: what was already read of the connection, read again
    /// first.
    pub fn new(
        prefix: Bytes,
        inner: TcpStream,
        clock: Arc<RequestClock>,
        patience: Duration,
    ) -> Self {
        ClientIo {
            prefix,
            inner,
            clock,
            patience,
            stalled: None,
        }
    }

    /// After a write was polled: a pending one waits out the stall limit,
    /// a finished one disarms it and ends the request being read.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        if polled.is_pending() {
            return self.poll_stall(cx);
        }
        self.stalled = None;
        self.clock.wrote_some();
        polled
    }

    /// Waits out a write the client takes nothing of: an error once it has
    /// waited `patience`.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let patience = self.patience;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(patience)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for ClientIo {
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
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read_some();
        }
        polled
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, polled)
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

/// A request body did not arrive whole within the client timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the client timeout")]
pub struct BodyTimedOut;

/// A request body that fails with [`BodyTimedOut`] if it has not ended by
/// `deadline`.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    /// Made the first time the body has to be waited for.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> std::fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Bounds `body` by `deadline`; a body that has already ended is left as
/// it is.
pub fn limit_body(body: hyper::body::Incoming, deadline: Instant) -> axum::body::Body {
    if http_body::Body::is_end_stream(&body) {
        return axum::body::Body::new(body);
    }
    axum::body::Body::new(DeadlineBody {
        inner: body,
        deadline,
        timer: None,
    })
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
