//! SQLite storage: one writer thread, a small pool of readers, a checkpoint thread, embedded
//! migrations.
//!
//! Store functions are plain synchronous `fn(&Connection, ..)` in the submodules (one per
//! table family) and know no domain rules. Async code reaches them only through
//! [`Db::read`] (tokio's blocking pool) and [`Db::write`] (the writer thread), so no async
//! worker ever waits on SQLite. All writes go through the single writer connection, which
//! serialises them in-process instead of letting connections fight over SQLite's lock, and
//! commits whatever is queued together.

pub mod auth;
pub mod dhcp;
pub mod events;
pub mod machines;
pub mod os;
pub mod registrations;
pub mod rules;
pub mod settings;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use writer::{Finish, Job, Writer, start_checkpointer};

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

/// A stored value its column's type does not know, with where it was found.
#[derive(Debug, thiserror::Error)]
#[error("{column} of row {row}: {source}")]
pub struct BadValue {
    pub column: &'static str,
    pub row: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Reads a typed column, naming the column (`table.column`) and the row's key when the
/// stored value is not one the type knows: a corrupt or future row is an error, never a
/// silent default.
pub(crate) fn typed<T: rusqlite::types::FromSql>(
    r: &rusqlite::Row<'_>,
    idx: usize,
    column: &'static str,
    row: &dyn std::fmt::Display,
) -> rusqlite::Result<T> {
    r.get(idx).map_err(|e| match e {
        rusqlite::Error::FromSqlConversionFailure(i, ty, source) => {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                ty,
                Box::new(BadValue {
                    column,
                    row: row.to_string(),
                    source,
                }),
            )
        }
        other => other,
    })
}

/// The schema, oldest first. Never edit a released migration: add a new one.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("store/migrations/001_initial.sql")),
        M::up(include_str!("store/migrations/002_builtin_os.sql")),
        M::up(include_str!("store/migrations/003_auth.sql")),
        M::up(include_str!("store/migrations/004_search.sql")),
        M::up(include_str!("store/migrations/005_identity.sql")),
        M::up(include_str!("store/migrations/006_native_install.sql")),
        M::up(include_str!("store/migrations/007_rules.sql")),
        M::up(include_str!("store/migrations/008_settings.sql")),
        M::up(include_str!("store/migrations/009_checksums.sql")),
        M::up(include_str!("store/migrations/010_machine_ssh_keys.sql")),
        M::up(include_str!("store/migrations/011_dhcp.sql")),
    ])
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    writer: Writer,
    /// Dropped with the last handle, which stops the checkpoint thread.
    _checkpointer: Arc<std::sync::mpsc::Sender<()>>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: Arc<PathBuf>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Memory-map up to this much of the database file: reads then copy nothing and all
/// connections share the operating system's page cache instead of each keeping its own.
const MMAP_BYTES: i64 = 1 << 30;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers run beside the writer; NORMAL sync is durable across application
    // crashes and loses at most the last transactions on power loss, the usual WAL trade-off.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA analysis_limit = 1000;",
    )?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
}

impl Db {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and
    /// starts the writer thread.
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
        // Two processes opening a new file at once (the server and `dragonfly admin
        // create-token`) both see version 0 and both migrate; the second's first step then
        // fails on the tables the first made. Each step is its own transaction, so reading
        // the version again and going on from there is safe.
        let mut attempt = 0;
        while let Err(e) = migrations().to_latest(&mut writer) {
            attempt += 1;
            if attempt >= 5 {
                return Err(e.into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
        }
        // Statistics for the query planner, as SQLite advises for long-lived connections:
        // without them a list filter may walk 8,000 rows where 1,000 would do.
        writer.execute_batch("PRAGMA optimize = 0x10002;")?;

        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")?;
                c.pragma_update(None, "mmap_size", MMAP_BYTES)
            });
        // Reads run on tokio's blocking threads; a handful of connections keeps the idle
        // footprint small (each has its own page cache) and is plenty for two cores.
        let readers = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(1))
            .build(manager)?;
        // Checkpoints (copying the WAL back into the database file, with its fsync) run on
        // their own thread, so the writer never waits for the disk. SQLite's automatic
        // checkpoint stays as a backstop, at a WAL ten times the usual size.
        writer
            .pragma_update(None, "wal_autocheckpoint", 10_000)
            .and_then(|()| writer.pragma_update(None, "journal_size_limit", 32 << 20))
            .map_err(open_err)?;
        let checkpointer = start_checkpointer(path)?;
        Ok(Db {
            writer: Writer::start(writer)?,
            _checkpointer: Arc::new(checkpointer),
            readers,
            path: Arc::new(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers when a reader connection does (health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(StoreError::from)
        })
        .await
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

    /// Runs `f` on the writer connection, atomically: its changes are committed when it
    /// returns `Ok` and discarded when it returns `Err`. The result arrives once the change
    /// is committed.
    ///
    /// Writes queued at the same moment share one transaction (group commit): each runs in
    /// its own savepoint, so a failing write rolls back alone, and the batch pays for one
    /// commit instead of one each. Under load this is what lets registrations outrun a
    /// transaction per request.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn| {
            let out = f(conn);
            let ok = out.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let out = match committed {
                    Ok(()) => out,
                    // A rolled-back batch loses this write too; say so rather than Ok.
                    Err(e) => out.and(Err(E::from(e))),
                };
                // The caller may have gone away (request cancelled); nothing to tell then.
                let _ = done.send(out);
            });
            (ok, finish)
        });
        self.writer.submit(job)?;
        result
            .await
            .map_err(|_| E::from(StoreError::Task("the write did not complete".into())))?
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
        let _db = Db::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
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
    fn many_openers_of_a_new_file_at_once_all_succeed() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || Db::open(&path).map(drop))
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn the_event_log_refuses_updates_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let _db = Db::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO events (at, kind, actor) VALUES (1, 'test', 'me')",
            [],
        )
        .unwrap();
        assert!(conn.execute("UPDATE events SET actor = 'you'", []).is_err());
        assert!(conn.execute("DELETE FROM events", []).is_err());
    }

    fn count_events(db: &Db) -> i64 {
        let conn = Connection::open(db.path()).unwrap();
        conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap()
    }

    async fn insert_event(db: &Db, n: i64, fail: bool) -> Result<i64, StoreError> {
        db.write(move |conn| {
            conn.execute(
                "INSERT INTO events (at, kind, actor) VALUES (?1, 'test', 'me')",
                [n],
            )?;
            if fail {
                // Fails after its insert: the insert must be rolled back with it.
                conn.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            }
            Ok(n)
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn batched_writes_commit_or_roll_back_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        // 400 writes queued at once, so the writer folds many into each transaction; every
        // third one fails after inserting.
        let writes = (0..400).map(|n| {
            let db = db.clone();
            tokio::spawn(async move { insert_event(&db, n, n % 3 == 0).await })
        });
        let results = futures_util::future::join_all(writes).await;
        let mut ok = 0;
        for (n, r) in results.into_iter().enumerate() {
            match r.unwrap() {
                Ok(v) => {
                    assert_eq!(v, n as i64);
                    assert_ne!(n % 3, 0, "write {n} should have failed");
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(n % 3, 0, "write {n} failed: {e}");
                    assert!(e.to_string().contains("no_such_table"), "{e}");
                }
            }
        }
        assert_eq!(ok, 266);
        assert_eq!(count_events(&db), 266);
        let conn = Connection::open(db.path()).unwrap();
        let failed_kept: i64 = conn
            .query_row("SELECT count(*) FROM events WHERE at % 3 = 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(failed_kept, 0);
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let panicked = db
            .write(|conn| -> Result<(), StoreError> {
                conn.execute(
                    "INSERT INTO events (at, kind, actor) VALUES (1, 'test', 'me')",
                    [],
                )?;
                panic!("boom");
            })
            .await;
        assert!(panicked.is_err());
        assert_eq!(insert_event(&db, 2, false).await.unwrap(), 2);
        assert_eq!(count_events(&db), 1);
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        // ~2 MB of events: far below the automatic checkpoint (10,000 pages), so only the
        // checkpoint thread can bring them into the database file.
        for n in 0..20 {
            db.write(move |conn| {
                for i in 0..100 {
                    conn.execute(
                        "INSERT INTO events (at, kind, actor, message) VALUES (?1, 'test', 'me', ?2)",
                        rusqlite::params![n * 100 + i, "x".repeat(1000)],
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 1_500_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file did not grow: nothing checkpointed the WAL"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[tokio::test]
    async fn the_writer_keeps_planner_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        for n in 0..writer::OPTIMIZE_EVERY as i64 + 1 {
            insert_event(&db, n, false).await.unwrap();
        }
        // PRAGMA optimize ran after the batch that crossed the threshold.
        let conn = Connection::open(db.path()).unwrap();
        let stats: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(stats > 0);
    }
}
