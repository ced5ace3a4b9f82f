//! The machine domain: registration, heartbeats, operator actions. It knows no HTTP and no
//! HTML; every change runs in one store transaction, appends its events to the log, and is
//! then published as a typed [`Change`] to live subscribers (SSE, the Tinkerbell glue) and
//! as a signal to whoever waits on that one machine (long-polling heartbeats).

mod agent;
pub mod catalogue;
pub mod identity;
pub mod lifecycle;
pub mod model;
pub mod native;
pub mod netboot;
mod operations;
mod registrations;
pub mod rules;
pub mod sums;

use std::sync::Arc;

use dragonfly_proto::Instruction;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::config::{Installer, Settings};
use crate::error::{Error, Result};
pub use crate::events::Waiter;
use crate::events::{EventHub, Signals};
use crate::secrets::random_secret;
pub use crate::secrets::token_hash;
use crate::store::Db;
use crate::store::events::{self as event_store, EventRow, NewEvent};
pub use crate::store::machines::SortKey;
use crate::store::machines::{self as store, MachineRow, Status};
pub use crate::vocab::{Actor, MachineEvent, State, TargetDisk};
pub use lifecycle::{Event, IllegalTransition};
pub use model::*;
pub use registrations::HeldRegistration;

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Error {
        Error::Conflict(e.to_string())
    }
}

/// One change of a machine, published to live subscribers after its transaction commits.
#[derive(Debug, Clone)]
pub struct Change {
    pub machine_id: String,
    /// The event-log entry; `None` for a live-only change of phase, progress or message.
    pub event: Option<EventView>,
    /// The machine after the change; `None` once it is deleted.
    pub machine: Option<Machine>,
}

impl Change {
    /// What happened: the log entry's kind, or [`MachineEvent::Status`].
    pub fn kind(&self) -> MachineEvent {
        self.event.as_ref().map_or(MachineEvent::Status, |e| e.kind)
    }
}

/// A machine as its agent's token found it: what that agent's heartbeat is compared with.
/// Opaque outside the domain.
#[derive(Debug, Clone)]
pub struct AgentMachine(MachineRow, String);

impl AgentMachine {
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// What a long-poll keeps while it waits: the machine's id and the token's hash, not the
    /// whole row.
    pub fn key(&self) -> AgentKey {
        AgentKey {
            id: self.0.id.clone(),
            hash: self.1.clone(),
        }
    }
}

/// A machine and the hash of the agent token it was reached with.
pub struct AgentKey {
    id: String,
    hash: String,
}

/// One-shot instructions an operator can queue for a machine's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueuedAction {
    Reboot,
    Poweroff,
    Reinventory,
}

impl QueuedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            QueuedAction::Reboot => "reboot",
            QueuedAction::Poweroff => "poweroff",
            QueuedAction::Reinventory => "reinventory",
        }
    }
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
    /// Every change, for SSE streams and the Tinkerbell glue.
    hub: EventHub<Arc<Change>>,
    /// Per-machine wake-ups for long-polling heartbeats.
    signals: Signals,
    clock: Arc<dyn Clock>,
    settings: Arc<Settings>,
    /// When each machine's last PXE boot was logged (ms) and which script it was served, so
    /// identical boots repeated within a window are logged once.
    boots: Arc<std::sync::Mutex<std::collections::HashMap<String, (i64, &'static str)>>>,
    /// Heartbeat times not yet written (machine id → ms). A heartbeat that changes nothing
    /// else only lands here; [`Machines::flush_seen`] writes them in one transaction every
    /// couple of seconds and before any read that shows them, so the single writer is not
    /// spent on thousands of one-column updates a second.
    seen: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

/// The longest event message kept (a hardware change of a report full of NICs and disks
/// says what changed in its first lines).
pub const MAX_EVENT_MESSAGE: usize = 2048;

/// `s` cut to at most `max` bytes at a character boundary, marked when cut.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// A new agent token: 256 random bits.
fn new_token() -> String {
    format!("dfm_{}", random_secret(32))
}

/// What one transaction did, published once it committed.
struct Committed {
    events: Vec<EventRow>,
    machine: Option<MachineRow>,
}

impl Committed {
    fn none() -> Committed {
        Committed {
            events: Vec::new(),
            machine: None,
        }
    }
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
        kind: MachineEvent,
        actor: Actor,
        transition: Option<(State, State)>,
        message: impl Into<String>,
    ) -> Result<()> {
        let row = event_store::append(
            conn,
            &NewEvent {
                at: self.now,
                machine_id: Some(machine_id.to_string()),
                kind,
                actor,
                from_state: transition.map(|(f, _)| f),
                to_state: transition.map(|(_, t)| t),
                message: clip(message.into(), MAX_EVENT_MESSAGE),
            },
        )?;
        self.events.push(row);
        Ok(())
    }
}

fn status_of(m: &MachineRow) -> Status {
    Status {
        state: m.state,
        os_slug: m.os_slug.clone(),
        target_disk: m.target_disk.clone(),
        phase: m.phase,
        progress: m.progress,
        status_message: m.status_message.clone(),
    }
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
    pub fn new(db: Db, clock: Arc<dyn Clock>, settings: Arc<Settings>) -> Self {
        Machines {
            db,
            // A subscriber that falls this far behind is told it lagged (SSE clients then
            // reload their view; the Tinkerbell glue reconciles).
            hub: EventHub::new(1024),
            signals: Signals::default(),
            boots: Arc::default(),
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

    /// Every change from now on, in commit order.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Change>> {
        self.hub.subscribe()
    }

    /// Wakes at each change of machine `id` from now on (long-polls wait on this).
    pub fn watch(&self, id: &str) -> Waiter {
        self.signals.watch(id)
    }

    /// How many long-polls wait on machine `id` right now.
    pub fn waiting(&self, id: &str) -> usize {
        self.signals.waiters(id)
    }

    /// Answers when the database does (for /healthz).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.db.ping().await?)
    }

    fn offline_before(&self, now: i64) -> i64 {
        now - self.settings.offline_after_ms
    }

    fn view(&self, row: MachineRow) -> Machine {
        Machine::from_row(row, self.offline_before(self.clock.now_ms()))
    }

    fn publish(&self, done: Committed) {
        let machine = done.machine.map(|m| self.view(m));
        for e in done.events {
            let Some(machine_id) = e.machine_id.clone() else {
                continue;
            };
            self.send(Change {
                machine_id,
                event: Some(EventView::from(e)),
                machine: machine.clone(),
            });
        }
    }

    fn send(&self, change: Change) {
        self.signals.notify(&change.machine_id);
        self.hub.publish(Arc::new(change));
    }

    /// What the agent of this machine should do now (consuming a queued instruction).
    fn instruction_for(&self, conn: &Connection, m: &MachineRow) -> Result<Instruction> {
        if m.state == State::Assigned && self.settings.installer == Installer::Native {
            if let Some(p) = &m.pending_instruction {
                store::set_pending_instruction(conn, &m.id, None)?;
                if let Ok(i) = serde_json::from_str::<Instruction>(p) {
                    return Ok(i);
                }
            }
            return self.install_plan(conn, m);
        }
        if let Some(p) = &m.pending_instruction {
            store::set_pending_instruction(conn, &m.id, None)?;
            match serde_json::from_str::<Instruction>(p) {
                Ok(i) => return Ok(i),
                Err(e) => tracing::warn!(machine = %m.id, error = %e, "stored instruction dropped"),
            }
        }
        Ok(self.planned_instruction(m))
    }

    /// The instruction the machine's state calls for (ignoring queued ones).
    fn planned_instruction(&self, m: &MachineRow) -> Instruction {
        match m.state {
            State::Assigned if self.settings.installer == Installer::Tinkerbell => {
                Instruction::Chainload {
                    script_url: format!(
                        "{}/boot/{}.ipxe",
                        self.settings.base_url,
                        m.boot_mac.replace(':', "-")
                    ),
                    ipxe_lkrn_url: format!("{}/boot/ipxe.lkrn", self.settings.base_url),
                }
            }
            _ => Instruction::Wait {
                seconds: self.settings.heartbeat_secs,
            },
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
