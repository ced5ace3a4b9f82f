//! Health and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use std::sync::Arc;

use crate::artefact::{Artefact, ArtefactCache};
use crate::config::Settings;
use crate::error::Result;
use crate::machines::Machines;
use crate::metrics::{Metrics, StateLabels};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the database answers.
    pub status: String,
    pub version: String,
    /// The URL machines use to reach this server.
    pub base_url: String,
    /// The netboot artefact machines PXE-boot into.
    pub netboot: Artefact,
    /// Whether the TFTP server for the iPXE first stage runs.
    pub tftp: bool,
    /// Who installs assigned machines: `native` (the Dragonfly agent writes the image) or
    /// `tinkerbell` (a Tinkerbell workflow).
    pub installer: crate::config::Installer,
    /// Dragonfly's own DHCP service: its mode, interface and the last PXE requests seen.
    pub dhcp: crate::dhcp_status::DhcpView,
}

/// Liveness and readiness: answers once the database is reachable.
#[utoipa::path(
    get, path = "/healthz", tag = "system",
    security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 500, description = "Database unavailable", body = crate::error::ErrorBody),
    )
)]
pub async fn healthz(
    State(machines): State<Machines>,
    State(settings): State<Arc<Settings>>,
    State(artefact): State<Arc<ArtefactCache>>,
    State(dhcp): State<Arc<crate::dhcp_status::DhcpStatus>>,
) -> Result<Json<Health>> {
    machines.ping().await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        base_url: settings.base_url.clone(),
        netboot: artefact.get().await,
        tftp: settings.tftp,
        installer: settings.installer,
        dhcp: dhcp.view(),
    }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(
    State(machines): State<Machines>,
    State(metrics): State<Arc<Metrics>>,
) -> Result<impl IntoResponse> {
    let (by_state, offline) = machines.counts().await?;
    for (s, n) in by_state {
        metrics
            .machines
            .get_or_create(&StateLabels {
                state: s.as_str().into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    metrics
        .offline
        .set(i64::try_from(offline).unwrap_or(i64::MAX));
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    ))
}
