//! Server settings changed at run time: one text value per key.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

pub fn get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM server_settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn set(conn: &Connection, key: &str, value: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO server_settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
    .execute(params![key, value, now])?;
    Ok(())
}

/// One machine's own SSH keys (authorized_keys lines).
pub fn machine_keys(conn: &Connection, machine: &str) -> Result<Vec<String>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT keys FROM machine_ssh_keys WHERE machine_id = ?1")?
        .query_row([machine], |r| r.get(0))
        .optional()?;
    Ok(text
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default())
}

/// Replaces one machine's own SSH keys; none removes the row.
pub fn set_machine_keys(
    conn: &Connection,
    machine: &str,
    keys: &[String],
    now: i64,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        conn.prepare_cached("DELETE FROM machine_ssh_keys WHERE machine_id = ?1")?
            .execute([machine])?;
    } else {
        conn.prepare_cached(
            "INSERT INTO machine_ssh_keys (machine_id, keys, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (machine_id) DO UPDATE SET keys = excluded.keys,
                 updated_at = excluded.updated_at",
        )?
        .execute(params![machine, keys.join("\n"), now])?;
    }
    Ok(())
}
