//! Dragonfly server library. `main.rs` parses flags and binds a socket; everything else is
//! here so tests can run the real server on `127.0.0.1:0`.

pub mod api;
pub mod boot;
pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod machines;
pub mod metrics;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, HookosSettings, Settings, derive_base_url};
use crate::error::error_response;
use crate::events::EventHub;
use crate::machines::Machines;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::Db;

/// Builds the application state: opens (and migrates) the database.
pub async fn build_state(
    config: &Config,
    base_url: String,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AppState> {
    let path = config.db.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&path))
        .await
        .context("database task failed")?
        .with_context(|| format!("--db {}", config.db.display()))?;
    let settings = Arc::new(Settings {
        hookos: HookosSettings::resolve(&config.hookos, &base_url),
        base_url,
        heartbeat_secs: config.heartbeat_secs,
        offline_after_ms: i64::from(config.offline_after_secs) * 1000,
        boot_dir: config.boot_dir.clone(),
        tftp: config.tftp.is_some(),
    });
    let hub = EventHub::new(1024);
    Ok(AppState {
        machines: Machines::new(db.clone(), hub.clone(), clock.clone(), settings.clone()),
        db,
        hub,
        clock,
        settings,
        metrics: Arc::new(Metrics::new()),
    })
}

/// The whole HTTP application. Pure: no I/O happens here.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api::router();
    let openapi: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    api.merge(boot::router())
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let body = openapi.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        body.to_string(),
                    )
                }
            }),
        )
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route".into(),
                None,
            )
        })
        .method_not_allowed_fallback(|| async {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route".into(),
                None,
            )
        })
        .layer(axum::middleware::map_response(json_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Rewrites error responses produced by the framework (path and query rejections, for
/// instance) into the API's JSON error shape, keeping their text as the message.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == HeaderValue::from_static("application/json"));
    if is_json {
        return resp;
    }
    let (_, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    error_response(status, code, message, None).into_response()
}

/// Runs the server on `listener` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bound = listener.local_addr().context("listener has no address")?;
    let base_url = match &config.base_url {
        Some(u) => u.clone(),
        None => derive_base_url(bound),
    };
    let state = build_state(&config, base_url.clone(), Arc::new(SystemClock)).await?;
    // One shutdown signal fans out to the HTTP server and the TFTP server.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = config.tftp {
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot listen for TFTP on {addr} (--tftp/--tftp-port)"))?;
        let dir = config.boot_dir.join("tftp");
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = boot::tftp::serve(socket, dir, stop).await {
                tracing::error!(error = %e, "TFTP server stopped");
            }
        });
    }
    let artefact = boot::files::artefact(&config.boot_dir).await;
    if !artefact.present {
        tracing::warn!(
            boot_dir = %config.boot_dir.display(),
            "no netboot image: machines cannot PXE-boot into the agent until image/build.sh has run"
        );
    }
    tracing::info!(
        listen = %bound,
        base_url = %base_url,
        db = %config.db.display(),
        derived = config.base_url.is_none(),
        netboot = artefact.version.as_deref().unwrap_or(if artefact.present { "present" } else { "missing" }),
        tftp = config.tftp.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        "dragonfly {} ready",
        env!("CARGO_PKG_VERSION")
    );
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut rx = stop_rx;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .context("server error")?;
    tracing::info!("dragonfly stopped");
    Ok(())
}
