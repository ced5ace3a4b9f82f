//! The agent side of the machine domain: registration and heartbeats.

use dragonfly_proto::{
    HardwareReport, Heartbeat, Instruction, Phase, RegisterRequest, RegisterResponse,
};

use rusqlite::Connection;

use super::{
    Actor, AgentKey, AgentMachine, Change, Committed, Event, Log, MachineEvent, Machines, State,
    clip, identity, lifecycle, load, new_token, status_of, token_hash,
};
use crate::config::Installer;
use crate::error::{Error, Result};
use crate::secrets::{random_secret, same_secret};
use crate::store::machines::{self as store, MachineRow};
use crate::store::registrations as held;
use crate::vocab::Decision;

/// At most this many held registrations are kept (each row is small); past it, new claims
/// are refused with 429 until an operator decides or old decisions expire.
pub const MAX_HELD: u64 = 1000;
/// Machines a server keeps: registration is open, so this bounds what strangers can add.
pub const MAX_MACHINES: u64 = 100_000;
/// Open claims kept per machine, and how long an open claim is kept after its last attempt.
pub const MAX_HELD_PER_MACHINE: u64 = 20;
pub const OPEN_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// An operator's decision stands this long (an approval lets one registration through).
pub const DECISION_TTL_MS: i64 = 24 * 3600 * 1000;

/// What a registration came to.
enum Outcome {
    Registered(RegisterResponse),
    /// Claimed a known machine without proof; the reason says what is at stake.
    Held(String),
    /// An operator refused exactly this claim.
    Refused,
}

/// Whether the request proves it comes from `m`: the secret of its boot script, or the token
/// it was last given.
fn proves(conn: &Connection, m: &MachineRow, req: &RegisterRequest) -> Result<bool> {
    if let Some(sent) = req.machine_secret.as_deref().filter(|s| s.len() <= 128) {
        if let Some(secret) = held::boot_secret(conn, &m.id)? {
            if same_secret(sent, &secret) {
                return Ok(true);
            }
        }
    }
    if let Some(t) = req.previous_token.as_deref().filter(|t| t.len() <= 128) {
        if let Some(owner) = store::by_token_hash(conn, &token_hash(t))? {
            return Ok(owner.id == m.id);
        }
    }
    Ok(false)
}

/// What an operator sees of a held claim: identity and NICs, at most 1 KiB.
fn summary(ident: &store::Identity, report: &HardwareReport) -> String {
    let nics: Vec<&str> = report.nics.iter().map(|n| n.mac.as_str()).collect();
    let s = format!(
        "boot MAC {}; UUID {}; serial {}; {} {}; NICs {}",
        ident.boot_mac,
        ident.smbios_uuid.as_deref().unwrap_or("none"),
        ident.serial.as_deref().unwrap_or("none"),
        ident.vendor.as_deref().unwrap_or("?"),
        ident.product.as_deref().unwrap_or("?"),
        nics.join(", ")
    );
    clip(s, 1024)
}

impl Machines {
    /// Registers (or re-registers) a machine from its agent's report. Idempotent per machine:
    /// concurrent registrations of one machine serialise on the store's writer.
    pub async fn register(&self, mut req: RegisterRequest) -> Result<RegisterResponse> {
        identity::normalise(&mut req.report)?;
        if req.agent_version.chars().count() > 64 {
            return Err(Error::invalid("agent_version", "longer than 64 characters"));
        }
        let token = new_token();
        let hash = token_hash(&token);
        let now = self.clock.now_ms();
        let this = self.clone();
        // Everything that needs only the report is worked out here, on the request's task:
        // the single writer thread does only the database work.
        let ident = identity::identity(&req.report, &req.agent_version);
        let report_json =
            serde_json::to_string(&req.report).map_err(|e| Error::Internal(e.to_string()))?;
        let digest = identity::digest(&req.report);
        let nic_rows = identity::nic_rows(&req.report);
        let disk_rows = identity::disk_rows(&req.report);
        let (outcome, done) = self
            .db
            .write(move |tx| -> Result<_> {
                let report = &req.report;
                let mut log = Log::new(now);
                let mut is_new = false;
                let id = match identity::find_existing(tx, &ident, report)? {
                    Some((existing, matched)) => {
                        let id = existing.id.clone();
                        let conflicts = identity::identity_conflicts(&existing, &ident);
                        let foreign = identity::foreign_identifiers(tx, &existing, &ident, report)?;
                        let how = match matched {
                            identity::MatchedBy::BootMac => "boot MAC",
                            identity::MatchedBy::OtherNic => "another NIC's MAC",
                            identity::MatchedBy::Uuid => "SMBIOS UUID",
                            identity::MatchedBy::Serial => "serial and vendor",
                        };
                        // A claim on a machine past discovery, or one that disagrees with
                        // its identity, changes nothing unless it proves itself or an
                        // operator let exactly this claim through.
                        let needs_proof =
                            existing.state != State::Discovered || !conflicts.is_empty();
                        // Another machine's identifiers: an operator decides, proof or not.
                        if !foreign.is_empty() || (needs_proof && !proves(tx, &existing, &req)?) {
                            held::expire(tx, now - DECISION_TTL_MS)?;
                            match held::find(tx, &id, &ident.boot_mac, &digest)? {
                                Some(h) if h.decision == Some(Decision::Approved) => {
                                    held::delete(tx, h.id)?;
                                }
                                Some(h) if h.decision == Some(Decision::Rejected) => {
                                    return Ok((Outcome::Refused, Committed::none()));
                                }
                                Some(h) => {
                                    held::touch(tx, h.id, now)?;
                                    return Ok((Outcome::Held(h.reason), Committed::none()));
                                }
                                None => {
                                    // Bounded, and never full: the oldest open claims give
                                    // way (of this machine first), so a flood cannot hide
                                    // the newest ones from the operator.
                                    held::expire_open(tx, now - OPEN_TTL_MS)?;
                                    if held::open_count(tx, Some(&id))? >= MAX_HELD_PER_MACHINE {
                                        held::evict_oldest_open(tx, Some(&id))?;
                                    }
                                    if held::count(tx)? >= MAX_HELD {
                                        held::evict_oldest_open(tx, None)?;
                                    }
                                    let mut why = conflicts.clone();
                                    why.extend(foreign.iter().cloned());
                                    let reason = if why.is_empty() {
                                        format!(
                                            "claims machine {} ({}) without proof",
                                            existing.boot_mac, existing.state
                                        )
                                    } else {
                                        format!(
                                            "matched {} by {how} but {}",
                                            existing.boot_mac,
                                            why.join("; ")
                                        )
                                    };
                                    let version: String =
                                        req.agent_version.chars().take(64).collect();
                                    held::insert(
                                        tx,
                                        &id,
                                        &ident.boot_mac,
                                        &digest,
                                        &summary(&ident, report),
                                        &reason,
                                        &version,
                                        now,
                                    )?;
                                    log.add(
                                        tx,
                                        &id,
                                        MachineEvent::RegistrationHeld,
                                        Actor::Agent,
                                        None,
                                        format!("{reason}; held for an operator"),
                                    )?;
                                    return Ok((
                                        Outcome::Held(reason),
                                        Committed {
                                            events: log.events,
                                            machine: Some(existing),
                                        },
                                    ));
                                }
                            }
                        }
                        if !conflicts.is_empty() {
                            log.add(
                                tx,
                                &id,
                                MachineEvent::IdentityMismatch,
                                Actor::Agent,
                                None,
                                format!("matched by {how}; {}", conflicts.join("; ")),
                            )?;
                        }
                        store::update_identity(tx, &id, &ident, &hash, now)?;
                        // A secret read from a boot script before this registration no
                        // longer proves anything.
                        held::set_boot_secret(tx, &id, &random_secret(32))?;
                        match store::latest_report(tx, &id)? {
                            Some((old_digest, old_json)) if old_digest != digest => {
                                let summary = serde_json::from_str::<HardwareReport>(&old_json)
                                    .map(|old| identity::diff(&old, report).join("; "))
                                    .unwrap_or_else(|_| "hardware report changed".into());
                                log.add(
                                    tx,
                                    &id,
                                    MachineEvent::HardwareChanged,
                                    Actor::Agent,
                                    None,
                                    summary,
                                )?;
                                store::insert_report(tx, &id, &digest, &report_json, now)?;
                            }
                            Some(_) => {}
                            None => store::insert_report(tx, &id, &digest, &report_json, now)?,
                        }
                        log.add(
                            tx,
                            &id,
                            MachineEvent::Reregistered,
                            Actor::Agent,
                            None,
                            format!("agent {}", req.agent_version),
                        )?;
                        id
                    }
                    None => {
                        // Time-ordered (UUIDv7): new machines append to the id index
                        // instead of dirtying a random page of it on every registration.
                        if store::count_machines(tx)? >= MAX_MACHINES {
                            return Err(Error::RateLimited {
                                message: format!(
                                    "this server keeps at most {MAX_MACHINES} machines; delete \
                                     some before registering more"
                                ),
                                retry_after_secs: 3600,
                            });
                        }
                        let id = uuid::Uuid::now_v7().to_string();
                        is_new = true;
                        store::insert(tx, &id, &ident, State::Discovered, &hash, now)?;
                        held::set_boot_secret(tx, &id, &random_secret(32))?;
                        store::insert_report(tx, &id, &digest, &report_json, now)?;
                        log.add(
                            tx,
                            &id,
                            MachineEvent::Registered,
                            Actor::Agent,
                            Some((State::Discovered, State::Discovered)),
                            format!("boot MAC {}", ident.boot_mac),
                        )?;
                        id
                    }
                };
                store::replace_nics(tx, &id, &nic_rows)?;
                store::replace_disks(tx, &id, &disk_rows)?;
                if is_new {
                    // "The agent reports the hardware, and the server assigns an OS."
                    let native = this.settings.installer == Installer::Native;
                    super::rules::apply(tx, &mut log, &id, native)?;
                }
                let m = load(tx, &id)?;
                let instruction = this.instruction_for(tx, &m)?;
                let resp = RegisterResponse {
                    machine_id: id,
                    token,
                    heartbeat_secs: this.settings.heartbeat_secs,
                    instruction,
                };
                Ok((
                    Outcome::Registered(resp),
                    Committed {
                        events: log.events,
                        machine: Some(m),
                    },
                ))
            })
            .await?;
        self.publish(done);
        match outcome {
            Outcome::Registered(resp) => Ok(resp),
            Outcome::Held(reason) => Err(Error::Held(format!(
                "this registration claims a known machine without proof ({reason}); it waits \
                 for an operator to approve it"
            ))),
            Outcome::Refused => Err(Error::Forbidden(
                "an operator rejected this registration".into(),
            )),
        }
    }

    /// The machine an agent token belongs to.
    pub async fn by_token(&self, token: &str) -> Result<AgentMachine> {
        let hash = token_hash(token);
        let key = hash.clone();
        self.db
            .read(move |c| store::by_token_hash(c, &key))
            .await?
            .map(|row| AgentMachine(row, hash.clone()))
            .ok_or_else(|| {
                Error::Unauthorized("unknown or replaced agent token; register again".into())
            })
    }

    /// The machine of `agent` as it is now.
    pub async fn reload(&self, agent: &AgentMachine) -> Result<AgentMachine> {
        let id = agent.0.id.clone();
        let row = self.db.read(move |c| load(c, &id)).await?;
        Ok(AgentMachine(row, agent.1.clone()))
    }

    /// Records a heartbeat from the agent of machine `current` (as just read with its token)
    /// and answers its next instruction.
    pub async fn heartbeat(&self, agent: &AgentMachine, hb: Heartbeat) -> Result<Instruction> {
        let current = &agent.0;
        if hb.progress.is_some_and(|p| p > 100) {
            return Err(Error::invalid("progress", "must be 0–100"));
        }
        if hb
            .message
            .as_deref()
            .is_some_and(|m| m.chars().count() > 1024)
        {
            return Err(Error::invalid("message", "longer than 1024 characters"));
        }
        // Byte counts are stored as SQLite integers (signed 64-bit). A count past the total
        // is the agent's business: it is shown as it came, never refused (the heartbeat
        // carries the phase too, which must not be lost).
        if let Some(w) = hb.write {
            for (field, v) in [
                ("write.written", Some(w.written)),
                ("write.total", w.total),
                ("write.bytes_per_sec", Some(w.bytes_per_sec)),
            ] {
                if v.is_some_and(|v| v > i64::MAX as u64) {
                    return Err(Error::invalid(field, "larger than 2^63-1"));
                }
            }
        }
        let now = self.clock.now_ms();
        // The common case: nothing but "still here". No write, no event.
        let quiet = matches!(hb.phase, Phase::Waiting)
            && current.phase == Some(Phase::Waiting)
            && hb.progress.is_none_or(|p| current.progress == Some(p))
            && hb
                .message
                .as_ref()
                .is_none_or(|m| current.status_message.as_ref() == Some(m))
            && current.pending_instruction.is_none()
            // A native install's plan is made (with its token) in a write.
            && !(current.state == State::Assigned && self.settings.installer == Installer::Native);
        if quiet {
            self.seen().insert(current.id.clone(), now);
            return Ok(self.planned_instruction(current));
        }
        let id = current.id.clone();
        let this = self.clone();
        let (instruction, done) = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                store::touch(tx, &id, now)?;
                let mut log = Log::new(now);
                let from = m.state;
                let mut status = status_of(&m);
                let phase = Some(hb.phase);
                let changed_phase = status.phase != phase
                    || (hb.progress.is_some() && status.progress != hb.progress)
                    || (hb.message.is_some() && status.status_message != hb.message);
                status.phase = phase;
                if hb.progress.is_some() {
                    status.progress = hb.progress;
                }
                if hb.message.is_some() {
                    status.status_message = hb.message.clone();
                }
                let event = match hb.phase {
                    Phase::Installing if from == State::Installing => Some(Event::Progress),
                    Phase::Installing => Some(Event::Start),
                    Phase::Written if from == State::Assigned => Some(Event::Start),
                    Phase::Written => None,
                    Phase::Installed => Some(Event::Succeed),
                    Phase::Failed => Some(Event::Fail),
                    Phase::Waiting | Phase::Chainloading => None,
                };
                let mut to = from;
                if let Some(ev) = event {
                    match lifecycle::next(from, ev) {
                        Ok(next) => to = next,
                        Err(e) => {
                            tracing::warn!(machine = %id, "agent reported {:?}: {e}", hb.phase)
                        }
                    }
                }
                if to != from {
                    status.state = to;
                    let kind = match to {
                        State::Installing => MachineEvent::InstallStarted,
                        State::Installed => MachineEvent::InstallSucceeded,
                        State::Failed => MachineEvent::InstallFailed,
                        _ => MachineEvent::StateChanged,
                    };
                    log.add(
                        tx,
                        &id,
                        kind,
                        Actor::Agent,
                        Some((from, to)),
                        hb.message.clone().unwrap_or_default(),
                    )?;
                } else if hb.phase == Phase::Chainloading && m.phase != Some(Phase::Chainloading) {
                    log.add(
                        tx,
                        &id,
                        MachineEvent::Chainloading,
                        Actor::Agent,
                        None,
                        hb.message.clone().unwrap_or_default(),
                    )?;
                }
                if changed_phase || to != from {
                    store::set_status(tx, &id, &status, now)?;
                }
                if let Some(w) = &hb.write {
                    store::set_write_progress(tx, &id, Some(w))?;
                }
                if hb.phase == Phase::Written && to == State::Installing && m.written_at.is_none() {
                    // The image is on the disk: the next PXE boot goes to it, and the
                    // installed system has the first-boot timeout to report back.
                    let token = store::install_token(tx, &id)?;
                    store::set_install(tx, &id, token.as_deref(), Some(now))?;
                    log.add(
                        tx,
                        &id,
                        MachineEvent::InstallWritten,
                        Actor::Agent,
                        None,
                        hb.message.clone().unwrap_or_default(),
                    )?;
                }
                if to == State::Failed {
                    // The install's one-time token dies with it.
                    store::set_install(tx, &id, None, None)?;
                }
                let m = load(tx, &id)?;
                let instruction = this.instruction_for(tx, &m)?;
                // Only publish when something an observer can see changed.
                let machine = (changed_phase || to != from || !log.events.is_empty()).then_some(m);
                Ok((
                    instruction,
                    Committed {
                        events: log.events,
                        machine,
                    },
                ))
            })
            .await?;
        if let (Some(m), true) = (&done.machine, done.events.is_empty()) {
            self.send(Change {
                machine_id: m.id.clone(),
                event: None,
                machine: Some(self.view(m.clone())),
            });
        }
        self.publish(done);
        Ok(instruction)
    }

    /// The instruction for machine `id` right now, without consuming or changing anything
    /// but a queued one-shot instruction (used by long-polling heartbeats).
    pub async fn current_instruction(&self, agent: &AgentKey) -> Result<Instruction> {
        let id = agent.id.clone();
        let hash = agent.hash.clone();
        let this = self.clone();
        self.db
            .write(move |tx| {
                // Only the machine's current agent may take its queued instruction: a
                // long-poll still open on a replaced token must not consume it.
                if store::by_token_hash(tx, &hash)?.is_none_or(|m| m.id != id) {
                    return Err(Error::Unauthorized(
                        "this agent token was replaced; register again".into(),
                    ));
                }
                let m = load(tx, &id)?;
                this.instruction_for(tx, &m)
            })
            .await
    }
}
