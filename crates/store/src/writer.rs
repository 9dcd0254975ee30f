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
    /// Tests hold the next commit until told, to hang up a caller while it waits for the disk.
    #[cfg(test)]
    hold_commit: Option<std::sync::mpsc::Receiver<()>>,
}

/// Counts a job waiting for the writer, however the wait ends. A job that commits while others
/// wait leaves the batch to the last of them; if that one is cancelled before it gets the
/// writer (its request's client hung up), a task of the writer's own commits the batch instead.
struct Queued<'a> {
    writer: &'a Arc<Writer>,
    waiting: bool,
}

impl<'a> Queued<'a> {
    fn new(writer: &'a Arc<Writer>) -> Self {
        writer.queued.fetch_add(1, Ordering::AcqRel);
        Queued { writer, waiting: true }
    }

    async fn lock(mut self) -> OwnedMutexGuard<State> {
        let g = self.writer.state.clone().lock_owned().await;
        self.waiting = false;
        g
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let last = self.writer.queued.fetch_sub(1, Ordering::AcqRel) == 1;
        if self.waiting
            && last
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            let writer = self.writer.clone();
            h.spawn(async move {
                let g = writer.state.clone().lock_owned().await;
                if writer.queued.load(Ordering::Acquire) == 0 {
                    flush(g).await;
                }
            });
        }
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
        let state = State {
            conn: Some(conn),
            in_batch: false,
            resumable: false,
            checkpointer,
            waiters: Vec::new(),
            #[cfg(test)]
            hold_commit: None,
        };
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
        let mut g = Queued::new(self).lock().await;
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
        let g = Queued::new(self).lock().await;
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

/// Commit the batch and answer everyone in it. The commit, the batch's state and the answers are
/// settled together on the blocking pool (the commit waits for the disk), by a task that owns
/// the writer's state: a caller that stops waiting here (a client that hung up) cannot leave a
/// committed batch marked open, nor its jobs unanswered.
/// None when the commit task itself was lost (the runtime shutting down): the waiters then
/// hear "abandoned", and the open batch stays with the writer's state.
async fn flush(g: OwnedMutexGuard<State>) -> Option<OwnedMutexGuard<State>> {
    if !g.in_batch {
        return Some(g);
    }
    tokio::task::spawn_blocking(move || settle(g)).await.ok()
}

fn settle(mut g: OwnedMutexGuard<State>) -> OwnedMutexGuard<State> {
    #[cfg(test)]
    if let Some(hold) = g.hold_commit.take() {
        let _ = hold.recv();
    }
    let result = exec(&g, "COMMIT");
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
    g
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    async fn writer() -> (tempfile::TempDir, Arc<Writer>) {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open(&dir.path().join("w.db")).unwrap();
        let job = w.begin().await.unwrap();
        job.conn().unwrap().execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        job.commit().await.unwrap();
        (dir, w)
    }

    async fn insert(w: &Arc<Writer>, x: i64) -> Job {
        let job = w.begin().await.unwrap();
        job.conn().unwrap().execute("INSERT INTO t (x) VALUES (?1)", [x]).unwrap();
        job
    }

    async fn rows(w: &Arc<Writer>) -> Vec<i64> {
        let job = w.begin().await.unwrap();
        let mut s = job.conn().unwrap().prepare("SELECT x FROM t ORDER BY x").unwrap();
        let xs = s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        drop(s);
        job.commit().await.unwrap();
        xs
    }

    /// A client hangs up while its batch's COMMIT waits for the disk: the batch still ends
    /// whole, and the next job starts a batch of its own (it used to find "batch open" still
    /// set, commit alone at its RELEASE and fail with "cannot commit - no transaction is active").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_hanging_up_at_the_commit_does_not_tear_the_batch() {
        let (_dir, w) = writer().await;
        let (release, hold) = std::sync::mpsc::channel();
        w.state.lock().await.hold_commit = Some(hold);
        let job = insert(&w, 1).await;
        {
            let mut commit = pin!(job.commit());
            assert!(poll_once(commit.as_mut()).is_pending(), "the commit waits for the disk");
        }
        release.send(()).unwrap();
        insert(&w, 2).await.commit().await.unwrap();
        assert_eq!(rows(&w).await, vec![1, 2]);
    }

    /// A job commits while another waits for the writer, leaving the batch's commit to it;
    /// that one's client hangs up before it gets the writer. The batch must commit anyway and
    /// the first job hear so (it used to wait until some other request came along).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_job_cancelled_still_leaves_the_batch_committed() {
        let (_dir, w) = writer().await;
        let first = insert(&w, 1).await;
        let w2 = w.clone();
        let mut waiting = Box::pin(async move { w2.begin().await.map(drop) });
        assert!(poll_once(waiting.as_mut()).is_pending(), "the second job waits for the writer");
        let mut commit = pin!(first.commit());
        assert!(poll_once(commit.as_mut()).is_pending(), "the batch is left to the waiting job");
        drop(waiting);
        let answered = tokio::time::timeout(std::time::Duration::from_secs(30), commit).await;
        answered.expect("the first job is answered").unwrap();
        assert_eq!(rows(&w).await, vec![1]);
    }
}
