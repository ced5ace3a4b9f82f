//! Accepting connections, bounded: one loop for plain HTTP and HTTPS (hyper's HTTP/1.1 server
//! under the router), with a cap on open connections overall and per client address, a time
//! limit on request headers (which also closes idle keep-alive connections), on the TLS
//! handshake and on reading a request body, and a bounded drain at shutdown.
//!
//! Assume the provisioning network holds an attacker: a thousand idle or trickling
//! connections must not take the descriptors `/healthz` and the real agents need.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::future::{Ready, ready};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::error::{Error, error_response};

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Open connections at once from one client address.
    pub max_per_address: usize,
    /// Time to send a request's headers, and the longest a kept-alive connection may sit
    /// idle between requests.
    pub header_timeout: Duration,
    /// Time to send a whole request body once the headers are in.
    pub body_timeout: Duration,
    /// Time to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection that makes no progress writing for this long is closed: a client that
    /// reads a download at a byte a second, or advertises a zero window, must not hold its
    /// place for ever. Long-polls and idle event streams write nothing, so never stall.
    pub write_stall: Duration,
    /// How long open requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: crate::config::MAX_CONNECTIONS,
            max_per_address: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Things in flight (connections, TFTP transfers), counted overall and per client address,
/// each admitted only under both caps.
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    total: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted thing; gives its place back when dropped.
pub struct Slot {
    counts: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_address,
            total: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more from `ip`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut by = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let mine = by.get(&ip).copied().unwrap_or(0);
        if mine >= self.max_per_address || self.total.load(Ordering::Relaxed) >= self.max_total {
            return None;
        }
        by.insert(ip, mine + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by = self
            .counts
            .by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.ip);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What reading a request body gives when its deadline has passed.
#[derive(Debug)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that must arrive whole before a deadline: a client that announces a body
/// and trickles it holds its connection that long at most. Nothing is buffered here; the
/// extractors read it as before, within their routes' own size limits.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout)))),
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

/// Refuses a body announced past every route's limit before reading it, and gives every
/// other body a deadline. A plain service rather than a middleware function: it boxes
/// nothing per request, which matters for the thousands of long-polls parked at once.
#[derive(Clone)]
struct BoundBody<S> {
    inner: S,
    limit: Duration,
}

impl<S> tower::Service<hyper::Request<Incoming>> for BoundBody<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<Incoming>) -> Self::Future {
        // Past every route's own limit (the largest is a 1 MiB registration).
        const MOST: u64 = 2 * 1024 * 1024;
        let announced = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MOST) {
            return Either::Left(ready(Ok(Error::PayloadTooLarge.into_response())));
        }
        // Most requests (every GET) have no body to wait for: no timer for them.
        let req = if http_body::Body::is_end_stream(req.body()) {
            req.map(Body::new)
        } else {
            let deadline = Box::pin(tokio::time::sleep(self.limit));
            req.map(|inner| {
                Body::new(DeadlineBody {
                    inner: Body::new(inner),
                    deadline,
                })
            })
        };
        Either::Right(self.inner.call(req))
    }
}

/// Closes the connection when a write stays pending for [`Limits::write_stall`].
struct StallGuard<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    fn new(inner: S, limit: Duration) -> StallGuard<S> {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(self.limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            ready => {
                this.stalled = None;
                ready
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => {
                this.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            ready => {
                this.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves, then
/// lets open requests finish (bounded). Handlers see the peer address (`ConnectInfo`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The layers every answer passes through, composed once around the router rather than
    // with `Router::layer` (which boxes each layer's future per route): a parked long-poll
    // then costs one allocation for all of them.
    let secure = tls.is_some();
    let app = tower::ServiceBuilder::new()
        .map_response(move |mut resp: Response<_>| {
            security_headers(resp.headers_mut(), secure);
            resp
        })
        // gzip for pages, scripts and JSON; the default predicate leaves SSE and small
        // bodies alone.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .and_then(|resp: Response| async { Ok::<_, Infallible>(json_errors(resp).await) })
        .service(BoundBody {
            inner: app,
            limit: limits.body_timeout,
        });
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let counts = Admission::new(limits.max_connections, limits.max_per_address);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = counts.admit(peer.ip()) else {
            // Closed at once: a full listener must not also fill the kernel's backlog.
            tracing::debug!(%peer, "connection refused: too many open connections");
            drop(tcp);
            continue;
        };
        let service =
            app.clone()
                .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    req
                });
        let http = http.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let handshake = limits.handshake_timeout;
        let stall = limits.write_stall;
        let service = TowerToHyperService::new(service);
        let ended = move |result: Result<(), hyper::Error>| {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        };
        // Two tasks, not one with a branch: a plain connection's task is not sized for the
        // TLS state it will never have.
        match acceptor {
            None => {
                tokio::spawn(async move {
                    let _slot = slot;
                    let io = TokioIo::new(StallGuard::new(tcp, stall));
                    ended(watcher.watch(http.serve_connection(io, service)).await);
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _slot = slot;
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let io = TokioIo::new(StallGuard::new(stream, stall));
                    ended(watcher.watch(http.serve_connection(io, service)).await);
                });
            }
        }
    }
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish in time; closing them");
    }
    Ok(())
}

/// Response headers every page and API answer carries (unless the handler set its own).
/// The CSP allows no inline script and no other origin; the UI's scripts are served from
/// this binary. Over TLS, browsers are told to keep to HTTPS (HSTS).
fn security_headers(headers: &mut HeaderMap, tls: bool) {
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
        img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
        form-action 'self'; frame-ancestors 'none'";
    let hsts = tls.then_some((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"));
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed.into_iter().chain(hsts) {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
}

/// Rewrites error responses produced by the framework (path and query rejections, for
/// instance) into the API's JSON error shape, keeping their text as the message.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // JSON errors are already in shape; HTML errors are the UI's own pages and toasts.
    let keep = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/json" || v.starts_with("text/html"));
    if keep {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = error_response(status, code, message, None).into_response();
    // Headers that belong to the answer, not to its body (a 416 says the length).
    for h in [header::CONTENT_RANGE, header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_overall_and_per_address() {
        let counts = Admission::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = counts.admit(a).unwrap();
        let _a2 = counts.admit(a).unwrap();
        assert!(counts.admit(a).is_none(), "per address");
        let _b1 = counts.admit(b).unwrap();
        assert!(counts.admit(b).is_none(), "overall");
        drop(a1);
        assert!(counts.admit(b).is_some(), "a freed place is reused");
    }
}
