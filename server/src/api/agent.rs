//! The agent side: registration (open by design: PXE has no credentials) and heartbeats
//! authenticated with the per-machine token handed out at registration.

use std::future::Future;
use std::time::Duration;

use axum::Json;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use dragonfly_proto::{
    Heartbeat, HeartbeatResponse, Instruction, RegisterRequest, RegisterResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiJson, ApiQuery};
use crate::auth::ratelimit::RegistrationLimiter;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::machines::native::PhoneHome;
use crate::machines::{Actor, AgentKey, AgentMachine as Agent, MachineEvent, Machines, Waiter};
use crate::metrics::Metrics;

/// The header carrying the enrollment secret (the agent reads it from `dragonfly.secret=`).
pub const ENROLLMENT_HEADER: &str = "x-dragonfly-enrollment";

/// The machine whose agent token authenticated this request.
pub struct AgentMachine(pub Agent);

impl<S> FromRequestParts<S> for AgentMachine
where
    S: Send + Sync,
    Machines: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let token = crate::auth::http::bearer(&parts.headers)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(|| {
                Error::Unauthorized("agent token required: Authorization: Bearer <token>".into())
            })?;
        Machines::from_ref(state)
            .by_token(token)
            .await
            .map(AgentMachine)
    }
}

/// Register a machine from its hardware report.
///
/// Creates the machine on first contact, updates it on later ones (recording a
/// hardware-change event when the inventory differs); never duplicates. The response holds
/// a new per-machine agent token, shown only here.
///
/// A registration that claims a known machine past discovery, or disagrees with a known
/// machine's identity, must prove it is that machine (`machine_secret` from its boot
/// script, or `previous_token`); otherwise nothing changes and it is held for an operator
/// (409 `pending_approval`; see `/api/v1/registrations`).
#[utoipa::path(
    post, path = "/api/v1/agent/register", tag = "agent",
    request_body = RegisterRequest,
    security(()),
    responses(
        (status = 200, description = "Registered", body = RegisterResponse),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorBody),
        (status = 403, description = "Enrollment secret missing or wrong, or an operator rejected this claim", body = crate::error::ErrorBody),
        (status = 409, description = "Claims a known machine without proof: held for an operator (`pending_approval`)", body = crate::error::ErrorBody),
        (status = 429, description = "Too many registrations (from this address, or at all), too many held ones, or the machine limit is reached", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid value", body = crate::error::ErrorBody),
    )
)]
// Each extractor is one part of the state this handler uses (see state.rs).
#[allow(clippy::too_many_arguments)]
pub async fn register(
    State(machines): State<Machines>,
    State(settings): State<Arc<Settings>>,
    State(metrics): State<Arc<Metrics>>,
    State(limiter): State<Arc<RegistrationLimiter>>,
    State(dhcp): State<Arc<crate::dhcp_status::DhcpStatus>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>> {
    limiter.check(peer.map(|p| p.0.0.ip()))?;
    if let Some(secret) = &settings.enrollment_secret {
        let sent = headers
            .get(ENROLLMENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::secrets::same_secret(sent, secret) {
            tracing::warn!("registration refused: missing or wrong enrollment secret");
            return Err(Error::Forbidden(
                "this server requires an enrollment secret (X-Dragonfly-Enrollment)".into(),
            ));
        }
    }
    let mac = dragonfly_proto::normalize_mac(&req.report.boot_mac).ok();
    let resp = machines.register(req).await?;
    metrics.registrations.inc();
    tracing::info!(machine = %resp.machine_id, "agent registered");
    // What Dragonfly's DHCP told this machine before it was one goes on its timeline.
    if let Some(mac) = mac.filter(|_| dhcp.is_on()) {
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        for step in dhcp.take_pending(&mac, now) {
            let text = format!(
                "DHCP {} ({}): {} (at {}, before it registered)",
                step.message, step.firmware, step.answer, step.at
            );
            let _ = machines
                .note(&resp.machine_id, MachineEvent::PxeBoot, Actor::Boot, text)
                .await;
        }
    }
    Ok(Json(resp))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HeartbeatParams {
    /// Long-poll: when the answer would be `wait`, hold the request up to this many seconds
    /// (at most 60; less when the server is set to hold polls for less) for a change to this
    /// machine.
    #[serde(default)]
    #[param(minimum = 0, maximum = 60)]
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
pub fn heartbeat(
    State(machines): State<Machines>,
    State(metrics): State<Arc<Metrics>>,
    State(settings): State<Arc<Settings>>,
    AgentMachine(machine): AgentMachine,
    ApiQuery(params): ApiQuery<HeartbeatParams>,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> impl Future<Output = Result<Json<HeartbeatResponse>>> + Send {
    // Past 60 s is refused (below); a server set to hold polls for less holds them less.
    let wait = params.wait.unwrap_or(0).min(settings.long_poll_secs);
    let too_long = params.wait.is_some_and(|w| w > 60);
    // Recording is boxed and freed before the wait: a parked long-poll (most agents, most of
    // the time) holds only its machine's key, its waiter and the small future below.
    let record = Box::pin(record_heartbeat(
        machines.clone(),
        metrics,
        machine,
        hb,
        wait,
    ));
    async move {
        if too_long {
            return Err(Error::invalid("wait", "at most 60 seconds"));
        }
        let (mut instruction, parked) = record.await?;
        if let (Instruction::Wait { .. }, Some((key, mut waiter))) = (&instruction, parked) {
            let deadline = tokio::time::sleep(Duration::from_secs(u64::from(wait)));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    _ = waiter.changed() => {
                        instruction = Box::pin(machines.current_instruction(&key)).await?;
                        if !matches!(instruction, Instruction::Wait { .. }) {
                            break;
                        }
                    }
                }
            }
        }
        Ok(Json(HeartbeatResponse { instruction }))
    }
}

/// Records a heartbeat; for a long-poll (`wait` > 0) also what the wait needs.
async fn record_heartbeat(
    machines: Machines,
    metrics: Arc<Metrics>,
    machine: Agent,
    hb: Heartbeat,
    wait: u32,
) -> Result<(Instruction, Option<(AgentKey, Waiter)>)> {
    // Watch before reading, so a change between the read and the wait is not missed. The
    // waiter wakes only for this machine's changes.
    let changes = (wait > 0).then(|| machines.watch(machine.id()));
    // The token was looked up before the watch began: read the machine again, so a change
    // in between (an assignment) is not answered with a stale `wait`.
    let machine = match changes {
        Some(_) => machines.reload(&machine).await?,
        None => machine,
    };
    let instruction = machines.heartbeat(&machine, hb).await?;
    metrics.heartbeats.inc();
    Ok((instruction, changes.map(|w| (machine.key(), w))))
}

/// The installed system reports back (cloud-init's `phone_home` module).
///
/// The URL carries the one-time token of the machine's current native install, put on the
/// install's cloud-init seed. The first report after the image was written makes the
/// machine `installed`; the token is then spent. The body is what cloud-init posts (form
/// fields such as `hostname`, `instance_id`, `fqdn`); it may be empty.
#[utoipa::path(
    post, path = "/api/v1/phone-home/{token}", tag = "agent",
    params(("token" = String, Path, description = "The install's one-time token (43 characters of base64url)", min_length = 43, max_length = 43, pattern = "^[A-Za-z0-9_-]{43}$")),
    request_body(content = PhoneHome, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Recorded: the machine is installed", body = PhoneHomeAnswer),
        (status = 404, description = "No install has this token (unknown, or already spent)", body = crate::error::ErrorBody),
        (status = 409, description = "The install has not written its image yet", body = crate::error::ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = crate::error::ErrorBody)
    )
)]
pub async fn phone_home(
    State(machines): State<Machines>,
    axum::extract::Path(token): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<PhoneHomeAnswer>> {
    // cloud-init posts a form; anything unreadable in it is only lost detail.
    let report: PhoneHome = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    machines.phone_home(&token, report).await?;
    Ok(Json(PhoneHomeAnswer {
        status: "installed".into(),
    }))
}

/// The answer to a phone-home.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PhoneHomeAnswer {
    /// Always `installed`.
    pub status: String,
}

/// Largest phone-home body (cloud-init posts host keys and names: a few KiB).
pub const PHONE_HOME_BODY_LIMIT: usize = 64 * 1024;
