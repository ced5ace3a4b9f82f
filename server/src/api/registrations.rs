//! Registrations held for an operator: list them, approve or reject one.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiQuery, IdPath};
use crate::error::{ErrorBody, Result};
use crate::machines::{HeldRegistration, Machines};
use crate::vocab::Decision;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HeldParams {
    /// Only claims on this machine.
    pub machine: Option<String>,
}

/// Registrations waiting for an operator, newest first.
///
/// A registration is held when it claims a known machine that is past discovery, or
/// disagrees with a known machine's boot MAC, NICs, SMBIOS UUID or serial, without proving it
/// is that machine (the secret of its boot script, or its previous token). Nothing about the
/// machine changed.
#[utoipa::path(
    get, path = "/api/v1/registrations", tag = "machines",
    params(HeldParams),
    responses(
        (status = 200, description = "Held registrations", body = [HeldRegistration]),
        (status = 422, description = "Unknown or invalid query parameter", body = ErrorBody),
    )
)]
pub async fn list(
    State(machines): State<Machines>,
    ApiQuery(p): ApiQuery<HeldParams>,
) -> Result<Json<Vec<HeldRegistration>>> {
    Ok(Json(machines.held(p.machine).await?))
}

/// Approve a held registration: the next identical registration (same machine, boot MAC
/// and hardware) is accepted once, within a day.
#[utoipa::path(
    post, path = "/api/v1/registrations/{id}/approve", tag = "machines",
    params(("id" = i64, Path, description = "Held registration id")),
    responses(
        (status = 200, description = "Approved", body = HeldRegistration),
        (status = 404, description = "No such held registration", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    )
)]
pub async fn approve(
    State(machines): State<Machines>,
    IdPath(id): IdPath,
) -> Result<Json<HeldRegistration>> {
    Ok(Json(machines.decide(id, Decision::Approved).await?))
}

/// Reject a held registration: identical registrations are refused (403) for a day.
#[utoipa::path(
    post, path = "/api/v1/registrations/{id}/reject", tag = "machines",
    params(("id" = i64, Path, description = "Held registration id")),
    responses(
        (status = 200, description = "Rejected", body = HeldRegistration),
        (status = 404, description = "No such held registration", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    )
)]
pub async fn reject(
    State(machines): State<Machines>,
    IdPath(id): IdPath,
) -> Result<Json<HeldRegistration>> {
    Ok(Json(machines.decide(id, Decision::Rejected).await?))
}
