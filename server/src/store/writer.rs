//! The writer thread (group commit) and the checkpoint thread behind [`Db`](super::Db).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{BUSY_TIMEOUT, StoreError};

/// How many queued writes the writer thread folds into one transaction at most.
const MAX_BATCH: usize = 128;

/// The writer refreshes the query planner's statistics (`PRAGMA optimize`) after this many
/// writes; SQLite then re-analyses only the tables that changed a lot, so it is cheap.
pub(super) const OPTIMIZE_EVERY: u64 = 1_000;

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Starts the thread that checkpoints the WAL in the background (PASSIVE: it never blocks
/// the writer or a reader, and copies what it can). It ends when the returned sender, held
/// by every [`Db`] handle, is dropped.
pub(super) fn start_checkpointer(path: &Path) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    let (alive, stop) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stop.recv_timeout(CHECKPOINT_EVERY)
            {
                // A busy database just waits for the next round.
                if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::debug!(error = %e, "WAL checkpoint skipped");
                }
            }
        })
        .map_err(|e| StoreError::Task(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(alive)
}

/// Runs one write inside the batch's transaction; says whether it succeeded and returns what
/// to do once the batch's commit is known.
pub(super) type Job = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;
/// Delivers a write's result after the commit (or with the commit's error).
pub(super) type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The single writer connection, owned by a dedicated thread fed by a channel.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Result<Writer, StoreError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, queue))
            .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { jobs })
    }

    pub(super) fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Task("the writer thread stopped".into()))
    }
}

/// Waits for a write, takes whatever else is already queued (up to [`MAX_BATCH`]), runs them
/// in one IMMEDIATE transaction with a savepoint each, commits, then answers every caller.
/// Ends when every [`Db`] handle is gone.
fn writer_loop(mut conn: Connection, queue: std::sync::mpsc::Receiver<Job>) {
    let mut since_optimize = 0u64;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut finishers = Vec::with_capacity(batch.len());
        let committed = run_batch(&mut conn, batch, &mut finishers);
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = finishers.len(), "write batch failed");
        }
        since_optimize += finishers.len() as u64;
        for finish in finishers {
            finish(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Task(format!("commit failed: {e}"))),
            });
        }
        if since_optimize >= OPTIMIZE_EVERY {
            since_optimize = 0;
            if let Err(e) = conn.execute_batch("PRAGMA optimize = 0x10002;") {
                tracing::warn!(error = %e, "PRAGMA optimize failed");
            }
        }
    }
}

fn run_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    finishers: &mut Vec<Finish>,
) -> Result<(), StoreError> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for job in batch {
        // On an error here the writes not yet run are dropped with the batch, and their
        // callers hear that the write did not complete.
        let sp = tx.savepoint()?;
        // A panicking write must not take the writer thread (and every later write) down.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&sp)));
        match ran {
            Ok((true, finish)) => {
                sp.commit()?;
                finishers.push(finish);
            }
            Ok((false, finish)) => {
                // Dropping the savepoint rolls back this write only.
                drop(sp);
                finishers.push(finish);
            }
            Err(_) => {
                drop(sp);
                tracing::error!("a database write panicked; it was rolled back");
            }
        }
    }
    tx.commit()?;
    Ok(())
}
