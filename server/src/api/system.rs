//! Health and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Result;
use crate::metrics::StateLabels;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the database answers.
    pub status: String,
    pub version: String,
    /// The URL machines use to reach this server.
    pub base_url: String,
    /// The netboot artefact machines PXE-boot into.
    pub netboot: crate::boot::files::Artefact,
    /// Whether the TFTP server for the iPXE first stage runs.
    pub tftp: bool,
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
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>> {
    state
        .db
        .read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(crate::store::StoreError::from)
        })
        .await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        base_url: state.settings.base_url.clone(),
        netboot: crate::boot::status(&state).await,
        tftp: state.settings.tftp,
    }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse> {
    let (by_state, offline) = state.machines.counts().await?;
    for (s, n) in by_state {
        state
            .metrics
            .machines
            .get_or_create(&StateLabels {
                state: s.as_str().into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    state
        .metrics
        .offline
        .set(i64::try_from(offline).unwrap_or(i64::MAX));
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    ))
}
