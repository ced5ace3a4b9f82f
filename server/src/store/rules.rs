//! The assignment rules table.

use rusqlite::{Connection, Row, params};

use super::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    pub id: i64,
    pub name: String,
    pub priority: i64,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub mac_prefix: Option<String>,
    pub min_cpu_threads: Option<u32>,
    pub min_memory_bytes: Option<u64>,
    pub min_disk_bytes: Option<u64>,
    pub os_slug: String,
    pub disk_rule: String,
    pub disk_model: Option<String>,
    pub max_count: Option<u64>,
    pub applied: u64,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, priority, vendor, product, mac_prefix, min_cpu_threads, \
    min_memory_bytes, min_disk_bytes, os_slug, disk_rule, disk_model, max_count, applied, \
    created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<RuleRow> {
    Ok(RuleRow {
        id: r.get(0)?,
        name: r.get(1)?,
        priority: r.get(2)?,
        vendor: r.get(3)?,
        product: r.get(4)?,
        mac_prefix: r.get(5)?,
        min_cpu_threads: r.get(6)?,
        min_memory_bytes: r.get(7)?,
        min_disk_bytes: r.get(8)?,
        os_slug: r.get(9)?,
        disk_rule: r.get(10)?,
        disk_model: r.get(11)?,
        max_count: r.get(12)?,
        applied: r.get(13)?,
        created_at: r.get(14)?,
    })
}

/// Every rule, in the order they are tried.
pub fn list(conn: &Connection) -> Result<Vec<RuleRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM assignment_rules ORDER BY priority, id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn count(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM assignment_rules")?
        .query_row([], |r| r.get(0))?)
}

/// Inserts a rule (`id` and `applied` are ignored); a duplicate name is a constraint error.
pub fn insert(conn: &Connection, r: &RuleRow) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO assignment_rules (name, priority, vendor, product, mac_prefix,
            min_cpu_threads, min_memory_bytes, min_disk_bytes, os_slug, disk_rule, disk_model,
            max_count, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        r.name,
        r.priority,
        r.vendor,
        r.product,
        r.mac_prefix,
        r.min_cpu_threads,
        r.min_memory_bytes,
        r.min_disk_bytes,
        r.os_slug,
        r.disk_rule,
        r.disk_model,
        r.max_count,
        r.created_at
    ])?;
    Ok(conn.last_insert_rowid())
}

pub fn delete(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM assignment_rules WHERE id = ?1")?
        .execute([id])?
        > 0)
}

pub fn count_applied(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE assignment_rules SET applied = applied + 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// How many rules assign this OS.
pub fn using_os(conn: &Connection, slug: &str) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM assignment_rules WHERE os_slug = ?1")?
        .query_row([slug], |r| r.get(0))?)
}
