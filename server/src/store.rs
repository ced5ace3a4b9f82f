//! SQLite storage: one writer connection, a small pool of readers, embedded migrations.
//!
//! Store functions are plain synchronous `fn(&Connection, ..)` in the submodules (one per
//! table family) and know no domain rules. Async code reaches them only through
//! [`Db::read`] and [`Db::write`], which run them on tokio's blocking pool, so no async
//! worker ever waits on SQLite. All writes go through the single writer connection, which
//! serialises them in-process instead of letting connections fight over SQLite's lock.

pub mod auth;
pub mod events;
pub mod machines;
pub mod os;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

/// Errors from the storage layer. They carry no HTTP meaning; `error.rs` maps them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] rusqlite_migration::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("database task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// True when the error is a UNIQUE/FOREIGN KEY/CHECK violation.
    pub fn is_constraint(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation
        )
    }
}

/// The schema, oldest first. Never edit a released migration: add a new one.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("store/migrations/001_initial.sql")),
        M::up(include_str!("store/migrations/002_builtin_os.sql")),
        M::up(include_str!("store/migrations/003_auth.sql")),
    ])
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    writer: Arc<Mutex<Connection>>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: Arc<PathBuf>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers run beside the writer; NORMAL sync is durable across application
    // crashes and loses at most the last transactions on power loss, the usual WAL trade-off.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )
}

impl Db {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        configure(&writer).map_err(open_err)?;
        migrations().to_latest(&mut writer)?;

        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")
            });
        let readers = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .build(manager)?;
        Ok(Db {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            path: Arc::new(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with a read-only connection on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(StoreError::from)?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` inside one IMMEDIATE transaction on the writer connection; commits when `f`
    /// returns `Ok`, rolls back otherwise.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another write panicked mid-way; SQLite rolled that
            // transaction back, so the connection is still sound.
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn open_applies_migrations_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Db::open(&path).unwrap());
        let db = Db::open(&path).unwrap();
        let conn = db.writer.lock().unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM os_images WHERE builtin = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 4);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn the_event_log_refuses_updates_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let conn = db.writer.lock().unwrap();
        conn.execute(
            "INSERT INTO events (at, kind, actor) VALUES (1, 'test', 'me')",
            [],
        )
        .unwrap();
        assert!(conn.execute("UPDATE events SET actor = 'you'", []).is_err());
        assert!(conn.execute("DELETE FROM events", []).is_err());
    }
}
