//! The machine domain: registration, heartbeats, operator actions. It knows no HTTP and no
//! HTML; every change runs in one store transaction, appends its events to the log, and is
//! then published on the event hub.

mod agent;
pub mod catalogue;
pub mod identity;
pub mod lifecycle;
pub mod model;
mod operations;

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

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
