//! The machine domain: registration, heartbeats, operator actions. It knows no HTTP and no
//! HTML; every change runs in one store transaction, appends its events to the log, and is
//! then published on the event hub.

pub mod catalogue;
pub mod identity;
pub mod lifecycle;
pub mod model;

use std::sync::Arc;

use base64::Engine;
use dragonfly_proto::{
    HardwareReport, Heartbeat, Instruction, Phase, RegisterRequest, RegisterResponse,
};
use rand::RngCore;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::events::EventHub;
use crate::store::events::{self as event_store, EventRow, NewEvent};
use crate::store::machines::{self as store, ListFilter, MachineRow, SortKey, Status};
use crate::store::{Db, os as os_store};
pub use lifecycle::{Event, IllegalTransition, State};
pub use model::*;

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Error {
        Error::Conflict(e.to_string())
    }
}

/// Who asked for a change; recorded in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Agent,
    Operator,
    Boot,
    Tinkerbell,
}

impl Actor {
    fn as_str(self) -> &'static str {
        match self {
            Actor::Agent => "agent",
            Actor::Operator => "operator",
            Actor::Boot => "boot",
            Actor::Tinkerbell => "tinkerbell",
        }
    }
}

/// One-shot instructions an operator can queue for a machine's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueuedAction {
    Reboot,
    Poweroff,
    Reinventory,
}

/// Operator changes to a machine's descriptive fields; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineUpdate {
    /// RFC 1123 host name; `null` or "" clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub hostname: Option<Option<String>>,
    /// Replaces the tag set: lower-case letters, digits and `-_.:`, 1–63 characters each.
    pub tags: Option<Vec<String>>,
    /// Free text, up to 4096 characters.
    pub notes: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The list query as the domain understands it.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub states: Vec<State>,
    pub offline: Option<bool>,
    pub tag: Option<String>,
    pub search: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub page: u32,
    pub per_page: u32,
}

/// The machine service; cheap to clone.
#[derive(Clone)]
pub struct Machines {
    db: Db,
    hub: EventHub,
    clock: Arc<dyn Clock>,
    settings: Arc<Settings>,
    /// Heartbeat times not yet written (machine id → ms). A heartbeat that changes nothing
    /// else only lands here; [`Machines::flush_seen`] writes them in one transaction every
    /// couple of seconds and before any read that shows them, so the single writer is not
    /// spent on thousands of one-column updates a second.
    seen: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "dfm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Agent tokens are 256 random bits, so a fast hash is enough to keep the stored form
/// useless to a reader of the database.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Change {
    events: Vec<EventRow>,
    machine: Option<MachineRow>,
}

/// The events one transaction appends, published after it commits.
struct Log {
    now: i64,
    events: Vec<EventRow>,
}

impl Log {
    fn new(now: i64) -> Log {
        Log {
            now,
            events: Vec::new(),
        }
    }

    fn add(
        &mut self,
        conn: &Connection,
        machine_id: &str,
        kind: &str,
        actor: Actor,
        transition: Option<(State, State)>,
        message: impl Into<String>,
    ) -> Result<()> {
        let row = event_store::append(
            conn,
            &NewEvent {
                at: self.now,
                machine_id: Some(machine_id.to_string()),
                kind: kind.to_string(),
                actor: actor.as_str().to_string(),
                from_state: transition.map(|(f, _)| f.as_str().to_string()),
                to_state: transition.map(|(_, t)| t.as_str().to_string()),
                message: message.into(),
            },
        )?;
        self.events.push(row);
        Ok(())
    }
}

fn status_of(m: &MachineRow) -> Status {
    Status {
        state: m.state.clone(),
        os_slug: m.os_slug.clone(),
        target_disk: m.target_disk.clone(),
        phase: m.phase.clone(),
        progress: m.progress,
        status_message: m.status_message.clone(),
    }
}

fn state_of(m: &MachineRow) -> State {
    State::parse(&m.state).unwrap_or(State::Discovered)
}

fn load(conn: &Connection, id: &str) -> Result<MachineRow> {
    store::get(conn, id)?.ok_or_else(|| Error::not_found(format!("machine {id}")))
}

pub fn validate_hostname(h: &str) -> Result<()> {
    let bad = |m: &str| Err(Error::invalid("hostname", m.to_string()));
    if h.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must be 1–63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("labels may not start or end with '-'");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return bad("only letters, digits, '-' and '.' are allowed (RFC 1123)");
        }
    }
    Ok(())
}

pub fn validate_tag(i: usize, t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 63
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("tags[{i}]"),
            "tags are 1–63 characters of a-z, 0-9 and -_.:",
        ))
    }
}

impl Machines {
    pub fn new(db: Db, hub: EventHub, clock: Arc<dyn Clock>, settings: Arc<Settings>) -> Self {
        Machines {
            db,
            hub,
            clock,
            settings,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes pending heartbeat times.
    pub async fn flush_seen(&self) -> Result<()> {
        let batch: Vec<(String, i64)> = {
            let mut seen = self.seen();
            if seen.is_empty() {
                return Ok(());
            }
            seen.drain().collect()
        };
        self.db
            .write(move |tx| -> Result<()> {
                for (id, at) in &batch {
                    store::touch(tx, id, *at)?;
                }
                Ok(())
            })
            .await
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn offline_before(&self, now: i64) -> i64 {
        now - self.settings.offline_after_ms
    }

    fn view(&self, row: MachineRow) -> Machine {
        Machine::from_row(row, self.offline_before(self.clock.now_ms()))
    }

    fn publish(&self, change: Change) {
        let machine = change.machine.map(|m| self.view(m));
        for e in change.events {
            let machine_id = e.machine_id.clone();
            let kind = e.kind.clone();
            let body = serde_json::json!({ "event": EventView::from(e), "machine": machine });
            self.hub.publish(machine_id, kind, body.to_string());
        }
    }

    /// What the agent of this machine should do now (consuming a queued instruction).
    fn instruction_for(&self, conn: &Connection, m: &MachineRow) -> Result<Instruction> {
        if let Some(p) = &m.pending_instruction {
            store::set_pending_instruction(conn, &m.id, None)?;
            if let Ok(i) = serde_json::from_str::<Instruction>(p) {
                return Ok(i);
            }
        }
        Ok(self.planned_instruction(m))
    }

    /// The instruction the machine's state calls for (ignoring queued ones).
    fn planned_instruction(&self, m: &MachineRow) -> Instruction {
        match state_of(m) {
            State::Assigned => Instruction::Chainload {
                script_url: format!(
                    "{}/boot/{}.ipxe",
                    self.settings.base_url,
                    m.boot_mac.replace(':', "-")
                ),
                ipxe_lkrn_url: format!("{}/boot/ipxe.lkrn", self.settings.base_url),
            },
            _ => Instruction::Wait {
                seconds: self.settings.heartbeat_secs,
            },
        }
    }

    /// Registers (or re-registers) a machine from its agent's report. Idempotent per machine:
    /// concurrent registrations of one machine serialise on the store's writer.
    pub async fn register(&self, mut req: RegisterRequest) -> Result<RegisterResponse> {
        identity::normalise(&mut req.report)?;
        if req.agent_version.len() > 64 {
            return Err(Error::invalid("agent_version", "longer than 64 bytes"));
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
        let (resp, change) = self
            .db
            .write(move |tx| -> Result<_> {
                let report = &req.report;
                let mut log = Log::new(now);
                let id = match identity::find_existing(tx, &ident, report)? {
                    Some((existing, matched)) => {
                        let id = existing.id.clone();
                        let conflicts = identity::identity_conflicts(&existing, &ident);
                        if !conflicts.is_empty() {
                            let how = match matched {
                                identity::MatchedBy::BootMac => "boot MAC",
                                identity::MatchedBy::OtherNic => "another NIC's MAC",
                                identity::MatchedBy::Uuid => "SMBIOS UUID",
                                identity::MatchedBy::Serial => "serial and vendor",
                            };
                            log.add(
                                tx,
                                &id,
                                "identity_mismatch",
                                Actor::Agent,
                                None,
                                format!("matched by {how}; {}", conflicts.join("; ")),
                            )?;
                        }
                        store::update_identity(tx, &id, &ident, &hash, now)?;
                        match store::latest_report(tx, &id)? {
                            Some((old_digest, old_json)) if old_digest != digest => {
                                let summary = serde_json::from_str::<HardwareReport>(&old_json)
                                    .map(|old| identity::diff(&old, report).join("; "))
                                    .unwrap_or_else(|_| "hardware report changed".into());
                                log.add(tx, &id, "hardware_changed", Actor::Agent, None, summary)?;
                                store::insert_report(tx, &id, &digest, &report_json, now)?;
                            }
                            Some(_) => {}
                            None => store::insert_report(tx, &id, &digest, &report_json, now)?,
                        }
                        log.add(
                            tx,
                            &id,
                            "reregistered",
                            Actor::Agent,
                            None,
                            format!("agent {}", req.agent_version),
                        )?;
                        id
                    }
                    None => {
                        // Time-ordered (UUIDv7): new machines append to the id index
                        // instead of dirtying a random page of it on every registration.
                        let id = uuid::Uuid::now_v7().to_string();
                        store::insert(tx, &id, &ident, State::Discovered.as_str(), &hash, now)?;
                        store::insert_report(tx, &id, &digest, &report_json, now)?;
                        log.add(
                            tx,
                            &id,
                            "registered",
                            Actor::Agent,
                            Some((State::Discovered, State::Discovered)),
                            format!("boot MAC {}", ident.boot_mac),
                        )?;
                        id
                    }
                };
                store::replace_nics(tx, &id, &nic_rows)?;
                store::replace_disks(tx, &id, &disk_rows)?;
                let m = load(tx, &id)?;
                let instruction = this.instruction_for(tx, &m)?;
                let resp = RegisterResponse {
                    machine_id: id,
                    token,
                    heartbeat_secs: this.settings.heartbeat_secs,
                    instruction,
                };
                Ok((
                    resp,
                    Change {
                        events: log.events,
                        machine: Some(m),
                    },
                ))
            })
            .await?;
        self.publish(change);
        Ok(resp)
    }

    /// The machine an agent token belongs to.
    pub async fn by_token(&self, token: &str) -> Result<MachineRow> {
        let hash = token_hash(token);
        self.db
            .read(move |c| store::by_token_hash(c, &hash))
            .await?
            .ok_or_else(|| {
                Error::Unauthorized("unknown or replaced agent token; register again".into())
            })
    }

    /// Records a heartbeat from the agent of machine `current` (as just read with its token)
    /// and answers its next instruction.
    pub async fn heartbeat(&self, current: &MachineRow, hb: Heartbeat) -> Result<Instruction> {
        if hb.progress.is_some_and(|p| p > 100) {
            return Err(Error::invalid("progress", "must be 0–100"));
        }
        if hb.message.as_deref().is_some_and(|m| m.len() > 1024) {
            return Err(Error::invalid("message", "longer than 1024 bytes"));
        }
        let now = self.clock.now_ms();
        // The common case: nothing but "still here". No write, no event.
        let quiet = matches!(hb.phase, Phase::Waiting)
            && current.phase.as_deref() == Some("waiting")
            && hb.progress.is_none_or(|p| current.progress == Some(p))
            && hb
                .message
                .as_ref()
                .is_none_or(|m| current.status_message.as_ref() == Some(m))
            && current.pending_instruction.is_none();
        if quiet {
            self.seen().insert(current.id.clone(), now);
            return Ok(self.planned_instruction(current));
        }
        let id = current.id.clone();
        let this = self.clone();
        let (instruction, change) = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                store::touch(tx, &id, now)?;
                let mut log = Log::new(now);
                let from = state_of(&m);
                let mut status = status_of(&m);
                let phase = serde_json::to_value(hb.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
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
                    status.state = to.as_str().to_string();
                    let kind = match to {
                        State::Installing => "install_started",
                        State::Installed => "install_succeeded",
                        State::Failed => "install_failed",
                        _ => "state_changed",
                    };
                    log.add(
                        tx,
                        &id,
                        kind,
                        Actor::Agent,
                        Some((from, to)),
                        hb.message.clone().unwrap_or_default(),
                    )?;
                } else if hb.phase == Phase::Chainloading
                    && m.phase.as_deref() != Some("chainloading")
                {
                    log.add(
                        tx,
                        &id,
                        "chainloading",
                        Actor::Agent,
                        None,
                        hb.message.clone().unwrap_or_default(),
                    )?;
                }
                if changed_phase || to != from {
                    store::set_status(tx, &id, &status, now)?;
                }
                let m = load(tx, &id)?;
                let instruction = this.instruction_for(tx, &m)?;
                // Only publish when something an observer can see changed.
                let machine = (changed_phase || to != from || !log.events.is_empty()).then_some(m);
                Ok((
                    instruction,
                    Change {
                        events: log.events,
                        machine,
                    },
                ))
            })
            .await?;
        if let Some(m) = change.machine.clone() {
            if change.events.is_empty() {
                self.hub.publish(
                    Some(m.id.clone()),
                    "status".into(),
                    serde_json::json!({ "event": null, "machine": self.view(m) }).to_string(),
                );
            }
        }
        self.publish(change);
        Ok(instruction)
    }

    /// The instruction for machine `id` right now, without consuming or changing anything
    /// but a queued one-shot instruction (used by long-polling heartbeats).
    pub async fn current_instruction(&self, id: &str) -> Result<Instruction> {
        let id = id.to_string();
        let this = self.clone();
        self.db
            .write(move |tx| {
                let m = load(tx, &id)?;
                this.instruction_for(tx, &m)
            })
            .await
    }

    /// Applies one lifecycle event on behalf of an operator, the boot flow or Tinkerbell.
    /// `adjust` edits the status columns after the transition (OS, disk, progress...).
    async fn transition<F>(
        &self,
        id: &str,
        event: Event,
        actor: Actor,
        kind: &'static str,
        message: String,
        adjust: F,
    ) -> Result<Machine>
    where
        F: FnOnce(&Connection, &MachineRow, &mut Status) -> Result<()> + Send + 'static,
    {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                let from = state_of(&m);
                let to = lifecycle::next(from, event)?;
                let mut status = status_of(&m);
                status.state = to.as_str().to_string();
                adjust(tx, &m, &mut status)?;
                store::set_status(tx, &id, &status, now)?;
                let mut log = Log::new(now);
                log.add(tx, &id, kind, actor, Some((from, to)), message)?;
                Ok(Change {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        let view = change.machine.clone().map(|m| self.view(m));
        self.publish(change);
        view.ok_or_else(|| Error::Internal("transition lost its machine".into()))
    }

    /// Assigns an OS (and optionally the install disk) to a machine.
    pub async fn assign(&self, id: &str, os: String, disk: Option<TargetDisk>) -> Result<Machine> {
        let message = match &disk {
            Some(TargetDisk::Serial(s)) => format!("{os} on disk serial {s}"),
            Some(TargetDisk::Wwn(w)) => format!("{os} on disk WWN {w}"),
            None => os.clone(),
        };
        self.transition(
            id,
            Event::Assign,
            Actor::Operator,
            "os_assigned",
            message,
            move |tx, m, st| {
                check_os(tx, &os)?;
                st.os_slug = Some(os);
                st.target_disk = check_disk(tx, &m.id, disk)?;
                st.progress = None;
                st.status_message = None;
                Ok(())
            },
        )
        .await
    }

    /// Installs the OS again: the assigned one, or `os` when given.
    pub async fn reimage(
        &self,
        id: &str,
        os: Option<String>,
        disk: Option<TargetDisk>,
    ) -> Result<Machine> {
        self.transition(
            id,
            Event::Reimage,
            Actor::Operator,
            "reimaged",
            os.clone().unwrap_or_default(),
            move |tx, m, st| {
                let slug = os.or_else(|| m.os_slug.clone()).ok_or_else(|| {
                    Error::invalid("os", "the machine has no OS assigned; name one")
                })?;
                check_os(tx, &slug)?;
                st.os_slug = Some(slug);
                if disk.is_some() {
                    st.target_disk = check_disk(tx, &m.id, disk)?;
                }
                st.progress = None;
                st.status_message = None;
                Ok(())
            },
        )
        .await
    }

    /// Withdraws an assignment or stops following an install; the machine goes back to
    /// Discovered.
    pub async fn cancel(&self, id: &str) -> Result<Machine> {
        self.transition(
            id,
            Event::Cancel,
            Actor::Operator,
            "cancelled",
            String::new(),
            |_, _, st| {
                st.os_slug = None;
                st.target_disk = None;
                st.progress = None;
                st.phase = None;
                st.status_message = None;
                Ok(())
            },
        )
        .await
    }

    /// The machine entered its installer: its boot script was served (`Actor::Boot`) or an
    /// installer said so.
    pub async fn start_install(&self, id: &str, actor: Actor, message: String) -> Result<Machine> {
        self.transition(
            id,
            Event::Start,
            actor,
            "install_started",
            message,
            |_, _, st| {
                st.phase = Some("installing".into());
                st.progress = Some(st.progress.unwrap_or(0));
                Ok(())
            },
        )
        .await
    }

    /// Progress from an installer (Tinkerbell workflow status).
    pub async fn report_progress(
        &self,
        id: &str,
        actor: Actor,
        progress: u8,
        action: String,
    ) -> Result<Machine> {
        self.transition(
            id,
            Event::Progress,
            actor,
            "install_progress",
            action.clone(),
            move |_, _, st| {
                st.progress = Some(progress.min(100));
                st.status_message = Some(action);
                Ok(())
            },
        )
        .await
    }

    /// The installer finished (`ok`) or failed with `message`.
    pub async fn finish_install(
        &self,
        id: &str,
        actor: Actor,
        ok: bool,
        message: String,
    ) -> Result<Machine> {
        let (event, kind) = if ok {
            (Event::Succeed, "install_succeeded")
        } else {
            (Event::Fail, "install_failed")
        };
        self.transition(id, event, actor, kind, message.clone(), move |_, _, st| {
            st.phase = Some(if ok { "installed" } else { "failed" }.into());
            if ok {
                st.progress = Some(100);
            }
            st.status_message = Some(message);
            Ok(())
        })
        .await
    }

    /// Appends an event that changes nothing else (a PXE boot, for instance).
    pub async fn note(
        &self,
        id: &str,
        kind: &'static str,
        actor: Actor,
        message: String,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                let mut log = Log::new(now);
                log.add(tx, &id, kind, actor, None, message)?;
                Ok(Change {
                    events: log.events,
                    machine: Some(m),
                })
            })
            .await?;
        self.publish(change);
        Ok(())
    }

    /// Queues a one-shot instruction for the machine's agent.
    pub async fn queue(&self, id: &str, action: QueuedAction) -> Result<Machine> {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                load(tx, &id)?;
                let instruction = match action {
                    QueuedAction::Reboot => Instruction::Reboot,
                    QueuedAction::Poweroff => Instruction::Poweroff,
                    QueuedAction::Reinventory => Instruction::Reinventory,
                };
                let json = serde_json::to_string(&instruction)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                store::set_pending_instruction(tx, &id, Some(&json))?;
                let mut log = Log::new(now);
                let name = serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                log.add(tx, &id, "instruction_queued", Actor::Operator, None, name)?;
                Ok(Change {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        let view = change.machine.clone().map(|m| self.view(m));
        self.publish(change);
        view.ok_or_else(|| Error::Internal("queue lost its machine".into()))
    }

    /// Updates hostname, tags and notes.
    pub async fn update(&self, id: &str, u: MachineUpdate) -> Result<Machine> {
        if let Some(Some(h)) = &u.hostname {
            if !h.is_empty() {
                validate_hostname(h)?;
            }
        }
        if let Some(tags) = &u.tags {
            if tags.len() > 64 {
                return Err(Error::invalid("tags", "at most 64 tags"));
            }
            for (i, t) in tags.iter().enumerate() {
                validate_tag(i, t)?;
            }
        }
        if u.notes.as_ref().is_some_and(|n| n.chars().count() > 4096) {
            return Err(Error::invalid("notes", "longer than 4096 characters"));
        }
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                let hostname = match u.hostname {
                    Some(h) => h.filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase()),
                    None => m.hostname.clone(),
                };
                let notes = u.notes.unwrap_or_else(|| m.notes.clone());
                store::set_details(tx, &id, hostname.as_deref(), &notes, now)?;
                let mut what = Vec::new();
                if hostname != m.hostname {
                    what.push(format!(
                        "hostname {}",
                        hostname.as_deref().unwrap_or("(none)")
                    ));
                }
                if let Some(mut tags) = u.tags {
                    tags.sort();
                    tags.dedup();
                    if tags != m.tags {
                        what.push(format!("tags [{}]", tags.join(", ")));
                    }
                    store::set_tags(tx, &id, &tags)?;
                }
                if notes != m.notes {
                    what.push("notes".into());
                }
                let mut log = Log::new(now);
                if !what.is_empty() {
                    log.add(tx, &id, "updated", Actor::Operator, None, what.join("; "))?;
                }
                Ok(Change {
                    events: log.events,
                    machine: Some(load(tx, &id)?),
                })
            })
            .await?;
        let view = change.machine.clone().map(|m| self.view(m));
        self.publish(change);
        view.ok_or_else(|| Error::Internal("update lost its machine".into()))
    }

    /// Deletes a machine (its history stays in the event log).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let change = self
            .db
            .write(move |tx| -> Result<_> {
                let m = load(tx, &id)?;
                store::delete(tx, &id)?;
                let mut log = Log::new(now);
                log.add(
                    tx,
                    &id,
                    "deleted",
                    Actor::Operator,
                    None,
                    format!(
                        "{} ({})",
                        m.hostname.as_deref().unwrap_or("unnamed"),
                        m.boot_mac
                    ),
                )?;
                Ok(Change {
                    events: log.events,
                    machine: None,
                })
            })
            .await?;
        self.publish(change);
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<MachineDetail> {
        self.flush_seen().await?;
        let id = id.to_string();
        let (row, nics, disks, report, events) = self
            .db
            .read(move |c| -> Result<_> {
                let m = load(c, &id)?;
                let nics = store::nics(c, &id)?;
                let disks = store::disks(c, &id)?;
                let report = store::latest_report(c, &id)?.map(|(_, j)| j);
                let events = event_store::list(c, Some(&id), None, 50)?;
                Ok((m, nics, disks, report, events))
            })
            .await?;
        Ok(MachineDetail {
            machine: self.view(row),
            nics: nics.into_iter().map(NicView::from).collect(),
            disks: disks.into_iter().map(DiskView::from).collect(),
            hardware: report.and_then(|j| serde_json::from_str(&j).ok()),
            events: events.into_iter().map(EventView::from).collect(),
        })
    }

    pub async fn by_mac(&self, mac: &str) -> Result<Option<Machine>> {
        let mac = mac.to_string();
        let row = self.db.read(move |c| store::by_boot_mac(c, &mac)).await?;
        Ok(row.map(|r| self.view(r)))
    }

    pub async fn list(&self, q: ListQuery) -> Result<MachinePage> {
        self.flush_seen().await?;
        let now = self.clock.now_ms();
        let per_page = q.per_page.clamp(1, 500);
        let page = q.page.max(1);
        let filter = ListFilter {
            states: q.states.iter().map(|s| s.as_str().to_string()).collect(),
            seen_before: q.offline.filter(|o| *o).map(|_| self.offline_before(now)),
            tag: q.tag,
            search: q.search,
            sort: q.sort,
            descending: q.descending,
            limit: per_page,
            offset: (page - 1).saturating_mul(per_page),
        };
        let (rows, total) = self.db.read(move |c| store::list(c, &filter)).await?;
        let before = self.offline_before(now);
        Ok(MachinePage {
            items: rows
                .into_iter()
                .map(|r| Machine::from_row(r, before))
                .collect(),
            total,
            page,
            per_page,
        })
    }

    /// Counts per state and offline, for the dashboard and /metrics.
    pub async fn counts(&self) -> Result<(Vec<(State, u64)>, u64)> {
        self.flush_seen().await?;
        let before = self.offline_before(self.clock.now_ms());
        let (by_state, offline) = self
            .db
            .read(move |c| store::count_by_state(c, before))
            .await?;
        let mut out: Vec<(State, u64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for (name, n) in by_state {
            if let Some(slot) = out.iter_mut().find(|(s, _)| s.as_str() == name) {
                slot.1 = n;
            }
        }
        Ok((out, offline))
    }

    pub async fn events(
        &self,
        machine: Option<String>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<EventView>> {
        let limit = limit.clamp(1, 500);
        let rows = self
            .db
            .read(move |c| event_store::list(c, machine.as_deref(), before, limit))
            .await?;
        Ok(rows.into_iter().map(EventView::from).collect())
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

fn check_os(conn: &Connection, slug: &str) -> Result<()> {
    if os_store::get(conn, slug)?.is_none() {
        return Err(Error::invalid(
            "os",
            format!("no OS '{slug}' in the catalogue"),
        ));
    }
    Ok(())
}

/// The chosen disk must be one the machine reported, named by serial or WWN.
fn check_disk(conn: &Connection, id: &str, disk: Option<TargetDisk>) -> Result<Option<String>> {
    let Some(disk) = disk else { return Ok(None) };
    let disks = store::disks(conn, id)?;
    let found = disks.iter().any(|d| match &disk {
        TargetDisk::Serial(s) => d.serial.as_deref() == Some(s.as_str()),
        TargetDisk::Wwn(w) => d.wwn.as_deref() == Some(w.as_str()),
    });
    if !found {
        return Err(Error::invalid(
            "target_disk",
            "the machine reported no disk with that serial or WWN",
        ));
    }
    serde_json::to_string(&disk)
        .map(Some)
        .map_err(|e| Error::Internal(e.to_string()))
}
