//! The append-only event log (triggers in the schema refuse UPDATE and DELETE).

use rusqlite::{Connection, Row, params};

use super::{StoreError, typed};
use crate::vocab::{Actor, MachineEvent, State};

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub machine_id: Option<String>,
    pub kind: MachineEvent,
    pub actor: Actor,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub message: String,
}

/// An event to append; `id` is assigned by the database.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: i64,
    pub machine_id: Option<String>,
    pub kind: MachineEvent,
    pub actor: Actor,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub message: String,
}

/// The id of the machine's latest assignment or reimage: which install is the current one.
pub fn last_install(conn: &Connection, machine: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT max(id) FROM events WHERE machine_id = ?1 AND kind IN (?2, ?3)")?
        .query_row(
            params![
                machine,
                MachineEvent::OsAssigned.as_str(),
                MachineEvent::Reimaged.as_str()
            ],
            |r| r.get(0),
        )?)
}

pub fn append(conn: &Connection, e: &NewEvent) -> Result<EventRow, StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (at, machine_id, kind, actor, from_state, to_state, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.at,
        e.machine_id,
        e.kind,
        e.actor,
        e.from_state,
        e.to_state,
        e.message
    ])?;
    Ok(EventRow {
        id: conn.last_insert_rowid(),
        at: e.at,
        machine_id: e.machine_id.clone(),
        kind: e.kind,
        actor: e.actor,
        from_state: e.from_state,
        to_state: e.to_state,
        message: e.message.clone(),
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    let id: i64 = r.get(0)?;
    Ok(EventRow {
        at: r.get(1)?,
        machine_id: r.get(2)?,
        kind: typed(r, 3, "events.kind", &id)?,
        actor: typed(r, 4, "events.actor", &id)?,
        from_state: typed(r, 5, "events.from_state", &id)?,
        to_state: typed(r, 6, "events.to_state", &id)?,
        message: r.get(7)?,
        id,
    })
}

/// Newest first; `before` pages backwards by id.
pub fn list(
    conn: &Connection,
    machine_id: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<EventRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, machine_id, kind, actor, from_state, to_state, message FROM events
         WHERE (?1 IS NULL OR machine_id = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![machine_id, before, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
