//! Group commit for SQLite. SQLite has one writer, and with `synchronous=FULL` every commit
//! waits for the disk. Instead of one fsync per request, requests that arrive while a write
//! is running join the same transaction, each inside its own savepoint: a request that fails
//! rolls back only its savepoint; the batch commits once, and only then is each request
//! answered. So nothing is acknowledged before it is durable, and a burst costs one fsync.

use crate::db::db_err;
use baton_domain::Error;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, Sqlite, SqlitePool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

/// Jobs in one batch at most, so that a long burst still commits regularly.
const MAX_BATCH: usize = 256;

pub struct Writer {
    pool: SqlitePool,
    state: Arc<Mutex<State>>,
    /// Jobs waiting for the writer; the last job of a burst commits the batch.
    queued: AtomicUsize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("queued", &self.queued.load(Ordering::Relaxed)).finish()
    }
}

#[derive(Default)]
pub struct State {
    conn: Option<PoolConnection<Sqlite>>,
    in_batch: bool,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

/// Decrements the queue count however the wait ends (a cancelled request included).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request's write: the writer's connection, inside a savepoint of the current batch.
pub struct Job {
    guard: Option<OwnedMutexGuard<State>>,
    writer: Arc<Writer>,
}

impl Writer {
    pub fn new(pool: SqlitePool) -> Arc<Writer> {
        Arc::new(Writer { pool, state: Arc::new(Mutex::new(State::default())), queued: AtomicUsize::new(0) })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Commit what is pending and give the connection back, so that the pool can close.
    pub async fn close(&self) {
        let mut g = self.state.lock().await;
        flush(&mut g).await;
        g.conn = None;
        drop(g);
        self.pool.close().await;
    }

    pub async fn begin(self: &Arc<Self>) -> Result<Job, Error> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let mut g = {
            let _q = Queued(&self.queued);
            self.state.clone().lock_owned().await
        };
        if g.conn.is_none() {
            g.conn = Some(self.pool.acquire().await.map_err(db_err)?);
        }
        if !g.in_batch {
            exec(&mut g, "BEGIN IMMEDIATE").await?;
            g.in_batch = true;
        }
        exec(&mut g, "SAVEPOINT job").await?;
        Ok(Job { guard: Some(g), writer: self.clone() })
    }
}

async fn exec(g: &mut State, sql: &'static str) -> Result<(), Error> {
    let conn = g.conn.as_mut().ok_or_else(|| Error::internal("writer has no connection"))?;
    conn.execute(sql).await.map(|_| ()).map_err(db_err)
}

/// Commit the batch and answer everyone in it.
async fn flush(g: &mut State) {
    if !g.in_batch {
        return;
    }
    let result = exec(g, "COMMIT").await;
    if result.is_err() {
        // A failed COMMIT leaves the transaction open; end it so that the next batch starts clean.
        let _ = exec(g, "ROLLBACK").await;
    }
    g.in_batch = false;
    let r = result.map_err(|e| e.to_string());
    for w in g.waiters.drain(..) {
        let _ = w.send(r.clone());
    }
}

impl Job {
    pub fn conn(&mut self) -> Result<&mut sqlx::SqliteConnection, Error> {
        self.guard.as_mut().and_then(|g| g.conn.as_deref_mut()).ok_or_else(|| Error::internal("job already finished"))
    }

    /// Keep this job's changes and return once the batch holding them is durable.
    pub async fn commit(mut self) -> Result<(), Error> {
        let Some(mut g) = self.guard.take() else { return Err(Error::internal("job already finished")) };
        if let Err(e) = exec(&mut g, "RELEASE job").await {
            finish_failed(&self.writer, g).await;
            return Err(e);
        }
        let (tx, rx) = oneshot::channel();
        g.waiters.push(tx);
        if self.writer.queued.load(Ordering::Acquire) == 0 || g.waiters.len() >= MAX_BATCH {
            flush(&mut g).await;
        }
        drop(g);
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::internal(format!("commit failed: {e}"))),
            Err(_) => Err(Error::internal("commit abandoned")),
        }
    }
}

/// Undo an unfinished job's savepoint; commit the batch if nobody else is coming to.
async fn finish_failed(writer: &Writer, mut g: OwnedMutexGuard<State>) {
    if exec(&mut g, "ROLLBACK TO job").await.is_ok() {
        let _ = exec(&mut g, "RELEASE job").await;
    }
    if writer.queued.load(Ordering::Acquire) == 0 {
        flush(&mut g).await;
    }
}

impl Drop for Job {
    // A job dropped without commit (an error, or a cancelled request) rolls back its own
    // changes; the rollback runs on the runtime because Drop cannot wait.
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            let writer = self.writer.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(async move { finish_failed(&writer, g).await });
                }
                Err(_) => drop(g),
            }
        }
    }
}
