//! Registrations held for an operator (a claim on a known machine without proof).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{StoreError, typed};
use crate::vocab::Decision;

#[derive(Debug, Clone, PartialEq)]
pub struct HeldRow {
    pub id: i64,
    pub machine_id: String,
    pub boot_mac: String,
    pub digest: String,
    pub summary: String,
    pub reason: String,
    pub agent_version: String,
    pub first_at: i64,
    pub last_at: i64,
    pub attempts: i64,
    pub decision: Option<Decision>,
    pub decided_at: Option<i64>,
}

const COLUMNS: &str = "id, machine_id, boot_mac, digest, summary, reason, agent_version, \
    first_at, last_at, attempts, decision, decided_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<HeldRow> {
    let id: i64 = r.get(0)?;
    Ok(HeldRow {
        machine_id: r.get(1)?,
        boot_mac: r.get(2)?,
        digest: r.get(3)?,
        summary: r.get(4)?,
        reason: r.get(5)?,
        agent_version: r.get(6)?,
        first_at: r.get(7)?,
        last_at: r.get(8)?,
        attempts: r.get(9)?,
        decision: typed(r, 10, "held_registrations.decision", &id)?,
        decided_at: r.get(11)?,
        id,
    })
}

/// The row for this claim, if one was held before.
pub fn find(
    conn: &Connection,
    machine_id: &str,
    boot_mac: &str,
    digest: &str,
) -> Result<Option<HeldRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM held_registrations
         WHERE machine_id = ?1 AND boot_mac = ?2 AND digest = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![machine_id, boot_mac, digest], from_row)
        .optional()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<HeldRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM held_registrations WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// A new held claim.
#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &Connection,
    machine_id: &str,
    boot_mac: &str,
    digest: &str,
    summary: &str,
    reason: &str,
    agent_version: &str,
    now: i64,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO held_registrations (machine_id, boot_mac, digest, summary, reason,
            agent_version, first_at, last_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        machine_id,
        boot_mac,
        digest,
        summary,
        reason,
        agent_version,
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Another attempt of a held claim.
pub fn touch(conn: &Connection, id: i64, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE held_registrations SET last_at = ?2, attempts = attempts + 1 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

pub fn decide(conn: &Connection, id: i64, decision: Decision, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE held_registrations SET decision = ?2, decided_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, decision, now])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM held_registrations WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Undecided claims, newest first; of one machine when given.
pub fn open(
    conn: &Connection,
    machine_id: Option<&str>,
    limit: u32,
) -> Result<Vec<HeldRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM held_registrations
         WHERE decision IS NULL AND (?1 IS NULL OR machine_id = ?1)
         ORDER BY last_at DESC, id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![machine_id, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many rows there are (every one bounded in size; the count is capped by the domain).
pub fn count(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM held_registrations")?
        .query_row([], |r| r.get(0))?)
}

/// Forgets decisions older than `before` (an approval is good for one registration soon
/// after; a rejection keeps refusing until then).
pub fn expire(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM held_registrations WHERE decision IS NOT NULL AND decided_at < ?1",
        )?
        .execute([before])?)
}

/// Undecided claims (of one machine when given).
pub fn open_count(conn: &Connection, machine_id: Option<&str>) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM held_registrations
             WHERE decision IS NULL AND (?1 IS NULL OR machine_id = ?1)",
        )?
        .query_row([machine_id], |r| r.get(0))?)
}

/// Drops the undecided claim (of one machine when given) least recently tried.
pub fn evict_oldest_open(conn: &Connection, machine_id: Option<&str>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM held_registrations WHERE id = (SELECT id FROM held_registrations
            WHERE decision IS NULL AND (?1 IS NULL OR machine_id = ?1)
            ORDER BY last_at, id LIMIT 1)",
    )?
    .execute([machine_id])?;
    Ok(())
}

/// Forgets undecided claims not tried since `before`.
pub fn expire_open(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM held_registrations WHERE decision IS NULL AND last_at < ?1")?
        .execute([before])?)
}

pub fn boot_secret(conn: &Connection, machine_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT boot_secret FROM machines WHERE id = ?1")?
        .query_row([machine_id], |r| r.get(0))
        .optional()?
        .flatten())
}

pub fn set_boot_secret(
    conn: &Connection,
    machine_id: &str,
    secret: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE machines SET boot_secret = ?2 WHERE id = ?1")?
        .execute(params![machine_id, secret])?;
    Ok(())
}
