//! The agent side: registration (open by design: PXE has no credentials) and heartbeats
//! authenticated with the per-machine token handed out at registration.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts};
use dragonfly_proto::{
    Heartbeat, HeartbeatResponse, Instruction, RegisterRequest, RegisterResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiJson, ApiQuery};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::machines::MachineRow;

/// The header carrying the enrollment secret (the agent reads it from `dragonfly.secret=`).
pub const ENROLLMENT_HEADER: &str = "x-dragonfly-enrollment";

/// The machine whose agent token authenticated this request.
pub struct AgentMachine(pub MachineRow);

impl FromRequestParts<AppState> for AgentMachine {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(|| {
                Error::Unauthorized("agent token required: Authorization: Bearer <token>".into())
            })?;
        state.machines.by_token(token).await.map(AgentMachine)
    }
}

/// Register a machine from its hardware report.
///
/// Creates the machine on first contact, updates it on later ones (recording a
/// hardware-change event when the inventory differs); never duplicates. The response holds
/// a new per-machine agent token, shown only here.
#[utoipa::path(
    post, path = "/api/v1/agent/register", tag = "agent",
    request_body = RegisterRequest,
    security(()),
    responses(
        (status = 200, description = "Registered", body = RegisterResponse),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorBody),
        (status = 403, description = "Enrollment secret missing or wrong", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid value", body = crate::error::ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>> {
    if let Some(secret) = &state.settings.enrollment_secret {
        let sent = headers
            .get(ENROLLMENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::auth::same_secret(sent, secret) {
            tracing::warn!("registration refused: missing or wrong enrollment secret");
            return Err(Error::Forbidden(
                "this server requires an enrollment secret (X-Dragonfly-Enrollment)".into(),
            ));
        }
    }
    let resp = state.machines.register(req).await?;
    state.metrics.registrations.inc();
    tracing::info!(machine = %resp.machine_id, "agent registered");
    Ok(Json(resp))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HeartbeatParams {
    /// Long-poll: when the answer would be `wait`, hold the request up to this many seconds
    /// (max 60) for a change to this machine.
    #[serde(default)]
    pub wait: Option<u32>,
}

/// Report status and receive the next instruction.
#[utoipa::path(
    post, path = "/api/v1/agent/heartbeat", tag = "agent",
    params(HeartbeatParams),
    request_body = Heartbeat,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The next instruction", body = HeartbeatResponse),
        (status = 401, description = "Missing or unknown agent token", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid value", body = crate::error::ErrorBody),
    )
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    AgentMachine(machine): AgentMachine,
    ApiQuery(params): ApiQuery<HeartbeatParams>,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatResponse>> {
    let wait = params.wait.unwrap_or(0).min(60);
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let mut changes = (wait > 0).then(|| state.hub.subscribe());
    let mut instruction = state.machines.heartbeat(&machine, hb).await?;
    state.metrics.heartbeats.inc();
    if let (Instruction::Wait { .. }, Some(rx)) = (&instruction, changes.as_mut()) {
        let deadline = tokio::time::sleep(Duration::from_secs(u64::from(wait)));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                msg = rx.recv() => match msg {
                    Ok(p) if p.machine_id.as_deref() == Some(machine.id.as_str()) => {
                        instruction = state.machines.current_instruction(&machine.id).await?;
                        if !matches!(instruction, Instruction::Wait { .. }) {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        instruction = state.machines.current_instruction(&machine.id).await?;
                        if !matches!(instruction, Instruction::Wait { .. }) {
                            break;
                        }
                    }
                    Err(_) => break,
                },
            }
        }
    }
    Ok(Json(HeartbeatResponse { instruction }))
}
