//! Group commit for SQLite. SQLite has one writer, and with `synchronous=FULL` every commit
//! waits for the disk. Instead of one fsync per request, requests that arrive while a write
//! is running join the same transaction, each inside its own savepoint: a request that fails
//! rolls back only its savepoint; the batch commits once, and only then is each request
//! answered. So nothing is acknowledged before it is durable, and a burst costs one fsync.
//!
//! A job's statements run on the request's own thread (`lite`): they are microseconds each
//! and the job holds the one writer anyway. Only the commit, which waits for the disk, moves
//! to the blocking pool.
//!
//! Checkpoints (copying the WAL back into the database file, and waiting for the disk again)
//! run on a thread of their own (`Checkpointer`), not inside whichever commit crossed SQLite's
//! automatic threshold: a bulk recompute crossed it at every chunk.

use crate::lite;
use baton_domain::Error;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

/// Jobs in one batch at most, so that a long burst still commits regularly.
const MAX_BATCH: usize = 256;

pub struct Writer {
    state: Arc<Mutex<State>>,
    /// Jobs waiting for the writer; the last job of a burst commits the batch.
    queued: AtomicUsize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("queued", &self.queued.load(Ordering::Relaxed)).finish()
    }
}

pub struct State {
    conn: Option<Connection>,
    in_batch: bool,
    /// The open transaction commits without waiting for the disk (`Writer::begin_alone`).
    resumable: bool,
    checkpointer: Checkpointer,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

/// Decrements the queue count however the wait ends (a cancelled request included).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a transaction of its own waits for the disk at commit (`Writer::begin_alone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged only once on disk, as every group-committed batch is.
    Durable,
    /// Work that records its own progress in the same transaction (a recompute run's cursor):
    /// its commit does not wait for the disk. A power cut may lose the last such commits, and
    /// with them the progress they recorded, so the work is redone; the database stays
    /// consistent, and the next durable commit makes them durable too (the WAL is one sequence).
    Resumable,
}

/// One request's write: the writer's connection, inside a savepoint of the current batch.
pub struct Job {
    guard: Option<OwnedMutexGuard<State>>,
    writer: Arc<Writer>,
    /// A transaction of its own, without a savepoint (`Writer::begin_alone`).
    alone: bool,
}

impl Writer {
    pub fn open(path: &Path) -> Result<Arc<Writer>, Error> {
        let conn = lite::open(path, false)?;
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(lite::lite_err)?;
        let checkpointer = Checkpointer::start(path)?;
        let state = State { conn: Some(conn), in_batch: false, resumable: false, checkpointer, waiters: Vec::new() };
        Ok(Arc::new(Writer { state: Arc::new(Mutex::new(state)), queued: AtomicUsize::new(0) }))
    }

    /// Commit what is pending, checkpoint, and close the connections.
    pub async fn close(&self) {
        let g = self.state.clone().lock_owned().await;
        if let Some(mut g) = flush(g).await {
            g.conn = None;
            g.checkpointer.stop();
        }
    }

    pub async fn begin(self: &Arc<Self>) -> Result<Job, Error> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let mut g = {
            let _q = Queued(&self.queued);
            self.state.clone().lock_owned().await
        };
        if !g.in_batch {
            exec(&g, "BEGIN IMMEDIATE")?;
            g.in_batch = true;
        }
        exec(&g, "SAVEPOINT job")?;
        Ok(Job { guard: Some(g), writer: self.clone(), alone: false })
    }

    /// A job that is a transaction of its own, for bulk writes: the open batch commits first and
    /// nobody joins this one. A savepoint makes SQLite copy every page it touches into a
    /// sub-journal first; for a chunk of thousands of rows that was half the writer's time
    /// (perf, `bench --scenario codes`). A failure rolls back only this job, as a savepoint would.
    pub async fn begin_alone(self: &Arc<Self>, durability: Durability) -> Result<Job, Error> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let g = {
            let _q = Queued(&self.queued);
            self.state.clone().lock_owned().await
        };
        let mut g = flush(g).await.ok_or_else(|| Error::internal("commit abandoned"))?;
        // SQLite changes the safety level only outside a transaction; `flush` sets it back.
        if durability == Durability::Resumable {
            exec(&g, "PRAGMA synchronous = NORMAL")?;
            g.resumable = true;
        }
        if let Err(e) = exec(&g, "BEGIN IMMEDIATE") {
            end_resumable(&mut g);
            return Err(e);
        }
        g.in_batch = true;
        Ok(Job { guard: Some(g), writer: self.clone(), alone: true })
    }
}

/// Back to `synchronous = FULL` after a resumable transaction ended.
fn end_resumable(g: &mut State) {
    if g.resumable && exec(g, "PRAGMA synchronous = FULL").is_ok() {
        g.resumable = false;
    }
}

/// Checkpoints on a thread of their own, with a connection of their own. Each commit nudges
/// it; it checkpoints without waiting for readers (PASSIVE: a frame a reader still needs is
/// copied by a later checkpoint), then rests `CHECKPOINT_REST`, so that the commits of a busy
/// spell share one checkpoint and an idle database costs nothing.
struct Checkpointer {
    nudge: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const CHECKPOINT_REST: std::time::Duration = std::time::Duration::from_millis(200);

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, Error> {
        let conn = lite::open(path, false)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let checkpoint = move || {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "checkpoint");
            }
        };
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    checkpoint();
                    std::thread::sleep(CHECKPOINT_REST);
                }
                checkpoint();
            })
            .map_err(Error::internal)?;
        Ok(Checkpointer { nudge: Some(tx), thread: Some(thread) })
    }

    fn nudge(&self) {
        if let Some(n) = &self.nudge {
            let _ = n.try_send(());
        }
    }

    /// A last checkpoint, and the thread ends.
    fn stop(&mut self) {
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn exec(g: &State, sql: &'static str) -> Result<(), Error> {
    let conn = g.conn.as_ref().ok_or_else(|| Error::internal("the database is closed"))?;
    conn.prepare_cached(sql).and_then(|mut s| s.raw_execute()).map(|_| ()).map_err(lite::lite_err)
}

/// Commit the batch (on the blocking pool: it waits for the disk) and answer everyone in it.
/// None when the commit task itself was lost (the runtime shutting down): the waiters then
/// hear "abandoned", and the open batch stays with the writer's state.
async fn flush(g: OwnedMutexGuard<State>) -> Option<OwnedMutexGuard<State>> {
    if !g.in_batch {
        return Some(g);
    }
    let (mut g, result) = tokio::task::spawn_blocking(move || {
        let r = exec(&g, "COMMIT");
        (g, r)
    })
    .await
    .ok()?;
    if result.is_err() {
        // A failed COMMIT leaves the transaction open; end it so that the next batch starts clean.
        let _ = exec(&g, "ROLLBACK");
    }
    g.in_batch = false;
    end_resumable(&mut g);
    g.checkpointer.nudge();
    let r = result.map_err(|e| e.to_string());
    for w in g.waiters.drain(..) {
        let _ = w.send(r.clone());
    }
    Some(g)
}

impl Job {
    pub fn conn(&self) -> Result<&Connection, Error> {
        self.guard.as_ref().and_then(|g| g.conn.as_ref()).ok_or_else(|| Error::internal("job already finished"))
    }

    /// Keep this job's changes and return once the batch holding them is durable.
    pub async fn commit(mut self) -> Result<(), Error> {
        let Some(mut g) = self.guard.take() else { return Err(Error::internal("job already finished")) };
        if !self.alone
            && let Err(e) = exec(&g, "RELEASE job")
        {
            finish_failed(&self.writer, g, false).await;
            return Err(e);
        }
        let (tx, rx) = oneshot::channel();
        g.waiters.push(tx);
        if self.alone || self.writer.queued.load(Ordering::Acquire) == 0 || g.waiters.len() >= MAX_BATCH {
            drop(flush(g).await);
        } else {
            drop(g);
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::internal(format!("commit failed: {e}"))),
            Err(_) => Err(Error::internal("commit abandoned")),
        }
    }
}

/// Undo an unfinished job (its savepoint, or its own transaction); commit the batch if nobody
/// else is coming to.
async fn finish_failed(writer: &Writer, mut g: OwnedMutexGuard<State>, alone: bool) {
    if alone {
        let _ = exec(&g, "ROLLBACK");
        g.in_batch = false;
        end_resumable(&mut g);
        return;
    }
    if exec(&g, "ROLLBACK TO job").is_ok() {
        let _ = exec(&g, "RELEASE job");
    }
    if writer.queued.load(Ordering::Acquire) == 0 {
        flush(g).await;
    }
}

impl Drop for Job {
    // A job dropped without commit (an error, or a cancelled request) rolls back its own
    // changes; the batch's commit runs on the runtime because Drop cannot wait.
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            let (writer, alone) = (self.writer.clone(), self.alone);
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(async move { finish_failed(&writer, g, alone).await });
                }
                Err(_) => drop(g),
            }
        }
    }
}
