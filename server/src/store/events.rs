//! The append-only event log (triggers in the schema refuse UPDATE and DELETE).

use rusqlite::{Connection, Row, params};

use super::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub machine_id: Option<String>,
    pub kind: String,
    pub actor: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub message: String,
}

/// An event to append; `id` is assigned by the database.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub at: i64,
    pub machine_id: Option<String>,
    pub kind: String,
    pub actor: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub message: String,
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
        kind: e.kind.clone(),
        actor: e.actor.clone(),
        from_state: e.from_state.clone(),
        to_state: e.to_state.clone(),
        message: e.message.clone(),
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        at: r.get(1)?,
        machine_id: r.get(2)?,
        kind: r.get(3)?,
        actor: r.get(4)?,
        from_state: r.get(5)?,
        to_state: r.get(6)?,
        message: r.get(7)?,
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
