//! The auth table family: users, sessions, API tokens.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
}

pub fn user_count(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, username, password_hash FROM users WHERE username = ?1")?
        .query_row([username], |r| {
            Ok(UserRow {
                id: r.get(0)?,
                username: r.get(1)?,
                password_hash: r.get(2)?,
            })
        })
        .optional()?)
}

/// Creates the user or replaces its password; returns the user id.
pub fn upsert_user(
    conn: &Connection,
    username: &str,
    password_hash: &str,
    now: i64,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO users (username, password_hash, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT(username) DO UPDATE SET password_hash = ?2, updated_at = ?3",
    )?
    .execute(params![username, password_hash, now])?;
    Ok(conn.query_row(
        "SELECT id FROM users WHERE username = ?1",
        [username],
        |r| r.get(0),
    )?)
}

/// Ends every session of a user (after a password change).
pub fn delete_user_sessions(conn: &Connection, user_id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub user_id: i64,
    pub username: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

pub fn insert_session(
    conn: &Connection,
    id_hash: &str,
    user_id: i64,
    csrf: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![id_hash, user_id, csrf, now])?;
    Ok(())
}

pub fn session(conn: &Connection, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT s.user_id, u.username, s.csrf_token, s.created_at, s.last_seen_at
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1",
        )?
        .query_row([id_hash], |r| {
            Ok(SessionRow {
                user_id: r.get(0)?,
                username: r.get(1)?,
                csrf_token: r.get(2)?,
                created_at: r.get(3)?,
                last_seen_at: r.get(4)?,
            })
        })
        .optional()?)
}

pub fn touch_session(conn: &Connection, id_hash: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE id_hash = ?1")?
        .execute(params![id_hash, now])?;
    Ok(())
}

pub fn delete_session(conn: &Connection, id_hash: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM sessions WHERE id_hash = ?1")?
        .execute([id_hash])?;
    Ok(())
}

/// Removes sessions idle since before `idle_before` or created before `created_before`.
pub fn expire_sessions(
    conn: &Connection,
    idle_before: i64,
    created_before: i64,
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2")?
        .execute(params![idle_before, created_before])?)
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, name, scope, created_by, created_at, last_used_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        scope: r.get(2)?,
        created_by: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

pub fn insert_token(conn: &Connection, row: &TokenRow, token_hash: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO api_tokens (id, name, token_hash, scope, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        row.id,
        row.name,
        token_hash,
        row.scope,
        row.created_by,
        row.created_at
    ])?;
    Ok(())
}

/// A live (not revoked) token by its hash.
pub fn token_by_hash(conn: &Connection, hash: &str) -> Result<Option<TokenRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"
        ))?
        .query_row([hash], token_row)
        .optional()?)
}

pub fn tokens(conn: &Connection) -> Result<Vec<TokenRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at DESC, id"
    ))?;
    let rows = stmt.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks a token revoked; false when there is no such live token.
pub fn revoke_token(conn: &Connection, id: &str, now: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![id, now])?
        > 0)
}

pub fn touch_token(conn: &Connection, id: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}
