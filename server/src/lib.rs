//! Dragonfly server library. `main.rs` parses flags and binds a socket; everything else is
//! here so tests can run the real server on `127.0.0.1:0`.

pub mod api;
pub mod artefact;
pub mod auth;
pub mod boot;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dhcp_status;
pub mod error;
pub mod events;
pub mod listener;
pub mod machines;
pub mod memory;
pub mod metrics;
pub mod provision;
pub mod secrets;
pub mod state;
pub mod store;
pub mod tinkerbell;
pub mod tls;
pub mod ui;
pub mod vocab;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::artefact::ArtefactCache;
use crate::auth::Auth;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, HookosSettings, Installer, Settings, derive_base_url};
use crate::error::error_response;
use crate::machines::Machines;
use crate::machines::catalogue::Catalogue;
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
        enrollment_secret: config.enrollment_secret.clone(),
        tls: config.tls.is_some(),
        installer: config.installer.unwrap_or(Installer::Native),
        first_boot_timeout_ms: i64::from(config.first_boot_timeout_secs) * 1000,
        long_poll_secs: config.long_poll_secs,
        ssh_keys: config.ssh_keys.clone(),
    });
    let machines = Machines::new(db.clone(), clock.clone(), settings.clone());
    let flusher = machines.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            every.tick().await;
            if let Err(e) = flusher.flush_seen().await {
                tracing::warn!(error = %e, "could not record heartbeat times");
            }
        }
    });
    // Natively installed systems that never reported back fail after the first-boot timeout.
    let watcher = machines.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
        loop {
            every.tick().await;
            if let Err(e) = watcher.expire_first_boots().await {
                tracing::warn!(error = %e, "could not check installs awaiting their first boot");
            }
        }
    });
    Ok(AppState {
        machines,
        auth: Auth::new(db.clone(), clock.clone()),
        catalogue: Catalogue::new(db, clock),
        artefact: Arc::new(ArtefactCache::new(settings.boot_dir.clone())),
        registrations: Arc::new(auth::ratelimit::RegistrationLimiter::new(
            config.registrations_per_minute_per_address,
        )),
        settings,
        metrics: Arc::new(Metrics::new()),
        dhcp: Arc::new(match &config.dhcp {
            Some(d) => dhcp_status::DhcpStatus::on(d.mode.as_str(), &d.interface, d.server_ip),
            None => dhcp_status::DhcpStatus::off(),
        }),
    })
}

/// The whole HTTP application. Pure: no I/O happens here.
///
/// Every route is closed (session or API token) unless it is in the public set: health,
/// agent registration and heartbeats (per-machine tokens), login, and the boot files.
pub fn router(state: AppState) -> Router {
    let api = api::router();
    let openapi: Arc<str> = api::document(&api.doc).into();
    let protected = api
        .protected
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::http::require_operator,
        ))
        // What an operator sees is theirs alone: never kept by a browser or a proxy.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    api.public
        .merge(boot::router())
        .merge(protected)
        .merge(ui::router(state.clone()))
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves `app` on `listener` (plain HTTP, default limits) until `shutdown` resolves. The
/// peer address is available to handlers (the login rate limit is per address).
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve(listener, app, None, listener::Limits::default(), shutdown).await
}

/// Runs the server on `listener` until `shutdown` resolves.
pub async fn serve(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bound = listener.local_addr().context("listener has no address")?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base_url = match (&config.base_url, &config.dhcp) {
        (Some(u), _) => u.clone(),
        // Machines that boot through Dragonfly's DHCP reach it on that interface.
        (None, Some(d)) if bound.ip().is_unspecified() => {
            format!("{scheme}://{}:{}", d.server_ip, bound.port())
        }
        (None, _) => derive_base_url(bound).replacen("http", scheme, 1),
    };
    // With a Kubernetes connection (and unless told otherwise), assignments become
    // Tinkerbell workflows and their progress comes back as machine states; without one the
    // agent installs natively.
    let cluster = tinkerbell::connect(&config.tinkerbell).await?;
    let installer = config.choose_installer(cluster.is_some())?;
    let state = build_state(&config, base_url.clone(), Arc::new(SystemClock)).await?;
    let provisioner = match (cluster, installer) {
        (Some(t), Installer::Tinkerbell) => {
            tracing::info!("Tinkerbell backend connected: installs run as Tinkerbell workflows");
            Some(provision::spawn(
                t.with_console(&state.settings.hookos.console),
                state.machines.clone(),
                state.catalogue.clone(),
            ))
        }
        (Some(_), Installer::Native) => {
            tracing::info!(
                "a cluster is connected, but --installer native: Tinkerbell is not used"
            );
            None
        }
        (None, _) => {
            tracing::info!("no Kubernetes connection: standalone, native installs");
            None
        }
    };
    if let Some(password) = state.auth.ensure_admin().await? {
        // Printed once, to the console only: never logged, never written to a file.
        println!(
            "\nDragonfly created the operator account 'admin' with password:\n\n    {password}\n\n\
             It is shown only now. Change it with `dragonfly admin set-password`.\n"
        );
    }
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
    if let Some(dhcp) = config.dhcp.clone() {
        // Boot files are fetched from this server's address on the DHCP interface: UEFI HTTP
        // boot takes no host name from a proxy, and iPXE may not have DNS yet.
        let http_base = format!("{scheme}://{}:{}", dhcp.server_ip, bound.port());
        boot::dhcp::start(
            dhcp,
            state.machines.clone(),
            state.dhcp.clone(),
            http_base,
            stop_rx.clone(),
        )
        .await?;
    }
    let artefact = artefact::artefact(&config.boot_dir).await;
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
        dhcp = config.dhcp.as_ref().map(|d| format!("{} on {}", d.mode.as_str(), d.interface)).unwrap_or_else(|| "off".into()),
        tls = config.tls.is_some(),
        "dragonfly {} ready",
        env!("CARGO_PKG_VERSION")
    );
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let app = router(state);
    let mut rx = stop_rx;
    let stopped = async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::load(cert, key)?),
        None => None,
    };
    let limits = listener::Limits {
        max_connections: config.max_connections,
        max_per_address: config.max_connections_per_address,
        ..listener::Limits::default()
    };
    listener::serve(listener, app, tls, limits, stopped)
        .await
        .context("server error")?;
    if let Some(h) = provisioner {
        h.abort();
    }
    tracing::info!("dragonfly stopped");
    Ok(())
}
