//! Operator endpoints for machines: list, inspect, edit, delete, and lifecycle actions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery};
use crate::error::{Error, ErrorBody, Result};
use crate::machines::{
    ListQuery, Machine, MachineDetail, MachinePage, MachineUpdate, QueuedAction, State as MState,
    TargetDisk,
};
use crate::machines::{Machines, SortKey};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Comma-separated states to include: discovered, assigned, installing, installed,
    /// failed, and the derived `offline`.
    pub state: Option<String>,
    /// Only machines carrying this tag.
    pub tag: Option<String>,
    /// Free-text search over hostname, MACs, serial, vendor and product.
    pub q: Option<String>,
    /// created (default), hostname, state, last_seen, mac.
    pub sort: Option<String>,
    /// asc (default) or desc.
    pub order: Option<String>,
    /// 1-based page number.
    pub page: Option<u32>,
    /// Page size, 1–500 (default 50).
    pub per_page: Option<u32>,
}

impl ListParams {
    fn into_query(self) -> Result<ListQuery> {
        let mut q = ListQuery {
            per_page: self.per_page.unwrap_or(50),
            page: self.page.unwrap_or(1),
            ..Default::default()
        };
        if q.per_page == 0 || q.per_page > 500 {
            return Err(Error::invalid("per_page", "must be 1–500"));
        }
        if q.page == 0 {
            return Err(Error::invalid("page", "pages start at 1"));
        }
        for s in self
            .state
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if s == "offline" {
                q.offline = Some(true);
            } else {
                q.states.push(MState::parse(s).map_err(|_| {
                    Error::invalid("state", format!("unknown state '{s}' (discovered, assigned, installing, installed, failed, offline)"))
                })?);
            }
        }
        if let Some(tag) = self.tag.filter(|t| !t.is_empty()) {
            crate::machines::validate_tag(0, &tag)
                .map_err(|_| Error::invalid("tag", "not a valid tag"))?;
            q.tag = Some(tag);
        }
        if let Some(search) = &self.q {
            if search.chars().count() > 128 {
                return Err(Error::invalid("q", "longer than 128 characters"));
            }
            if search.chars().any(char::is_control) {
                return Err(Error::invalid("q", "contains control characters"));
            }
        }
        q.search = self
            .q
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        q.sort = match self.sort.as_deref() {
            None | Some("created") => SortKey::Created,
            Some("hostname") => SortKey::Hostname,
            Some("state") => SortKey::State,
            Some("last_seen") => SortKey::LastSeen,
            Some("mac") => SortKey::Mac,
            Some(_) => {
                return Err(Error::invalid(
                    "sort",
                    "one of created, hostname, state, last_seen, mac",
                ));
            }
        };
        q.descending = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(Error::invalid("order", "asc or desc")),
        };
        Ok(q)
    }
}

/// List machines.
#[utoipa::path(
    get, path = "/api/v1/machines", tag = "machines",
    params(ListParams),
    responses(
        (status = 200, description = "One page of machines", body = MachinePage),
        (status = 422, description = "Invalid parameter", body = ErrorBody),
    )
)]
pub async fn list(
    State(machines): State<Machines>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<MachinePage>> {
    Ok(Json(machines.list(params.into_query()?).await?))
}

/// One machine with its hardware, NICs, disks and recent events.
#[utoipa::path(
    get, path = "/api/v1/machines/{id}", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 200, description = "The machine", body = MachineDetail),
        (status = 404, description = "No such machine", body = ErrorBody),
    )
)]
pub async fn get(
    State(machines): State<Machines>,
    Path(id): Path<String>,
) -> Result<Json<MachineDetail>> {
    Ok(Json(machines.get(&id).await?))
}

/// Change hostname, tags or notes.
#[utoipa::path(
    patch, path = "/api/v1/machines/{id}", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = MachineUpdate,
    responses(
        (status = 200, description = "Updated", body = Machine),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 422, description = "Invalid value", body = ErrorBody),
    )
)]
pub async fn update(
    State(machines): State<Machines>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MachineUpdate>,
) -> Result<Json<Machine>> {
    Ok(Json(machines.update(&id, body).await?))
}

/// Delete a machine. Its history stays in the event log; if it boots again it registers
/// as new.
#[utoipa::path(
    delete, path = "/api/v1/machines/{id}", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such machine", body = ErrorBody),
    )
)]
pub async fn delete(
    State(machines): State<Machines>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    machines.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Assign an OS.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// Slug from the OS catalogue.
    pub os: String,
    /// The install disk, by serial or WWN (`{"serial": "..."}`); default: the installer's
    /// choice.
    pub target_disk: Option<TargetDisk>,
}

/// Assign an OS; the machine's agent is told to chainload into the installer.
#[utoipa::path(
    post, path = "/api/v1/machines/{id}/assign", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = AssignRequest,
    responses(
        (status = 200, description = "Assigned", body = Machine),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 409, description = "Not allowed in the machine's state", body = ErrorBody),
        (status = 422, description = "Unknown OS or disk", body = ErrorBody),
    )
)]
pub async fn assign(
    State(machines): State<Machines>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssignRequest>,
) -> Result<Json<Machine>> {
    Ok(Json(machines.assign(&id, body.os, body.target_disk).await?))
}

/// Reinstall.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReimageRequest {
    /// Another OS to install instead of the assigned one.
    pub os: Option<String>,
    pub target_disk: Option<TargetDisk>,
}

/// Install the OS again on an installed or failed machine.
#[utoipa::path(
    post, path = "/api/v1/machines/{id}/reimage", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = ReimageRequest,
    responses(
        (status = 200, description = "Assigned again", body = Machine),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 409, description = "Not allowed in the machine's state", body = ErrorBody),
        (status = 422, description = "Unknown OS or disk", body = ErrorBody),
    )
)]
pub async fn reimage(
    State(machines): State<Machines>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReimageRequest>,
) -> Result<Json<Machine>> {
    Ok(Json(
        machines.reimage(&id, body.os, body.target_disk).await?,
    ))
}

/// Withdraw the assignment; the machine returns to Discovered.
#[utoipa::path(
    post, path = "/api/v1/machines/{id}/cancel", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 200, description = "Cancelled", body = Machine),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 409, description = "Nothing to cancel", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(machines): State<Machines>,
    Path(id): Path<String>,
) -> Result<Json<Machine>> {
    Ok(Json(machines.cancel(&id).await?))
}

/// A one-shot instruction for the machine's agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstructRequest {
    pub action: QueuedAction,
}

/// Queue reboot, poweroff or reinventory; delivered at the agent's next heartbeat.
#[utoipa::path(
    post, path = "/api/v1/machines/{id}/instructions", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = InstructRequest,
    responses(
        (status = 202, description = "Queued", body = Machine),
        (status = 404, description = "No such machine", body = ErrorBody),
        (status = 422, description = "Unknown action", body = ErrorBody),
    )
)]
pub async fn instruct(
    State(machines): State<Machines>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<InstructRequest>,
) -> Result<(StatusCode, Json<Machine>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(machines.queue(&id, body.action).await?),
    ))
}
