//! Accepting connections, bounded: one loop for plain HTTP and HTTPS (hyper's HTTP/1.1 server
//! under the router), with a cap on open connections overall and per client address, a time
//! limit on request headers (which also closes idle keep-alive connections), on the TLS
//! handshake and on reading a request body, and a bounded drain at shutdown.
//!
//! Assume the provisioning network holds an attacker: a thousand idle or trickling
//! connections must not take the descriptors `/healthz` and the real agents need.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::error::error_response;

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
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Open connections, overall and per address.
#[derive(Default)]
struct Counts {
    total: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; gives its place back when dropped.
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Counts {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Option<Slot> {
        let mut by = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let mine = by.get(&ip).copied().unwrap_or(0);
        if mine >= limits.max_per_address
            || self.total.load(Ordering::Relaxed) >= limits.max_connections
        {
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

/// Reads the whole request body within `limit` before the handler runs, so a client that
/// announces a large body and trickles it holds a connection for that long at most. Bodies
/// here are small (the largest is a 1 MiB hardware report); the routes' own size limits
/// still apply to what was read.
async fn read_body_in_time(limit: Duration, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    // Past every route's own limit: the route answers 413 for anything above its own.
    const MOST: usize = 2 * 1024 * 1024;
    let too_large = error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body too large".into(),
        None,
    );
    let announced = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MOST as u64) {
        return too_large.into_response();
    }
    match tokio::time::timeout(limit, axum::body::to_bytes(body, MOST)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => too_large.into_response(),
        Err(_) => error_response(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            ),
            None,
        )
        .into_response(),
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
    let body_timeout = limits.body_timeout;
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        read_body_in_time(body_timeout, req, next)
    }));
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let counts = Arc::new(Counts::default());
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
        let Some(slot) = counts.admit(peer.ip(), &limits) else {
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
        tokio::spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(service);
            let result = match acceptor {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(tcp), service))
                        .await
                }
                Some(acceptor) => {
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
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish in time; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_overall_and_per_address() {
        let limits = Limits {
            max_connections: 3,
            max_per_address: 2,
            ..Limits::default()
        };
        let counts = Arc::new(Counts::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = counts.admit(a, &limits).unwrap();
        let _a2 = counts.admit(a, &limits).unwrap();
        assert!(counts.admit(a, &limits).is_none(), "per address");
        let _b1 = counts.admit(b, &limits).unwrap();
        assert!(counts.admit(b, &limits).is_none(), "overall");
        drop(a1);
        assert!(
            counts.admit(b, &limits).is_some(),
            "a freed place is reused"
        );
    }
}
