//! The OS catalogue table.

use rusqlite::{Connection, OptionalExtension, Row, params};

use dragonfly_proto::ImageFormat;

use super::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct OsRow {
    pub slug: String,
    pub name: String,
    pub family: String,
    pub version: String,
    pub arch: String,
    pub image_url: String,
    pub format: ImageFormat,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
    /// Where the published checksum list is (`dragonfly os refresh` reads it).
    pub checksum_url: Option<String>,
    /// When the checksum was last read from `checksum_url` (ms).
    pub checked_at: Option<i64>,
    pub size_bytes: Option<u64>,
    pub user_data: Option<String>,
    pub builtin: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "slug, name, family, version, arch, image_url, builtin, created_at, \
    updated_at, format, sha256, size_bytes, user_data, sha512, checksum_url, checked_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<OsRow> {
    Ok(OsRow {
        slug: r.get(0)?,
        name: r.get(1)?,
        family: r.get(2)?,
        version: r.get(3)?,
        arch: r.get(4)?,
        image_url: r.get(5)?,
        builtin: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        format: {
            let slug: String = r.get(0)?;
            super::typed(r, 9, "os_images.format", &slug)?
        },
        sha256: r.get(10)?,
        size_bytes: r.get(11)?,
        user_data: r.get(12)?,
        sha512: r.get(13)?,
        checksum_url: r.get(14)?,
        checked_at: r.get(15)?,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<OsRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM os_images ORDER BY family, version"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(conn: &Connection, slug: &str) -> Result<Option<OsRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM os_images WHERE slug = ?1"))?
        .query_row([slug], from_row)
        .optional()?)
}

/// Inserts a new entry; a duplicate slug is a constraint error.
pub fn insert(conn: &Connection, os: &OsRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO os_images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
         ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?
    .execute(params![
        os.slug,
        os.name,
        os.family,
        os.version,
        os.arch,
        os.image_url,
        os.builtin,
        os.created_at,
        os.updated_at,
        os.format,
        os.sha256,
        os.size_bytes,
        os.user_data,
        os.sha512,
        os.checksum_url,
        os.checked_at
    ])?;
    Ok(())
}

pub fn update(conn: &Connection, os: &OsRow) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE os_images SET name = ?2, family = ?3, version = ?4, arch = ?5,
                image_url = ?6, updated_at = ?7, format = ?8, sha256 = ?9, size_bytes = ?10,
                user_data = ?11, sha512 = ?12, checksum_url = ?13, checked_at = ?14
             WHERE slug = ?1",
        )?
        .execute(params![
            os.slug,
            os.name,
            os.family,
            os.version,
            os.arch,
            os.image_url,
            os.updated_at,
            os.format,
            os.sha256,
            os.size_bytes,
            os.user_data,
            os.sha512,
            os.checksum_url,
            os.checked_at
        ])?
        > 0)
}

pub fn delete(conn: &Connection, slug: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM os_images WHERE slug = ?1")?
        .execute([slug])?
        > 0)
}

/// How many machines have this OS assigned.
pub fn machines_using(conn: &Connection, slug: &str) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM machines WHERE os_slug = ?1")?
        .query_row([slug], |r| r.get(0))?)
}
