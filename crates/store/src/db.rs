//! One set of SQL for SQLite and PostgreSQL.
//!
//! Queries are written once with `$N` placeholders and bound from a small set of owned
//! values (`Val`); rows decode any type both drivers decode. DDL lives per backend in
//! `migrations/{sqlite,postgres}`. PostgreSQL goes through sqlx; SQLite through rusqlite on
//! the calling thread (`lite`, which says why), with one writer connection (it has one writer
//! anyway; a single connection avoids busy-retry storms) and a pool of readers.

use crate::lite::{self, FromLite, LiteRow, Readers};
pub use crate::writer::Durability;
use crate::writer::{Job, Writer};
use baton_domain::Error;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Decode, Postgres, Row as _, Type};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite { path: PathBuf, write: Arc<Writer>, read: Arc<Readers> },
    Postgres(PgPool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A bound value. Each variant carries an Option so that NULLs keep their type (PostgreSQL needs it).
#[derive(Debug, Clone)]
pub enum Val {
    Bool(Option<bool>),
    I64(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Uuid(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
    /// A list of ids for `= ANY($n)`, on PostgreSQL only: there a set read as `IN (…)` lists of
    /// single ids made a round trip per hundred ids (a township's recompute waited 5 of its
    /// 6.4 s on them); SQLite, in the process, reads such lists at no cost per statement.
    Uuids(Vec<Uuid>),
}

macro_rules! val_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Val { fn from(x: $t) -> Self { Val::$v(Some(x.into())) } }
        impl From<Option<$t>> for Val { fn from(x: Option<$t>) -> Self { Val::$v(x.map(Into::into)) } }
    )*};
}
val_from!(bool => Bool, i64 => I64, String => Text, Vec<u8> => Bytes, Uuid => Uuid, DateTime<Utc> => Time);

impl From<&str> for Val {
    fn from(x: &str) -> Self {
        Val::Text(Some(x.to_string()))
    }
}
impl From<Option<&str>> for Val {
    fn from(x: Option<&str>) -> Self {
        Val::Text(x.map(str::to_string))
    }
}
impl From<&String> for Val {
    fn from(x: &String) -> Self {
        Val::Text(Some(x.clone()))
    }
}
impl From<&[u8]> for Val {
    fn from(x: &[u8]) -> Self {
        Val::Bytes(Some(x.to_vec()))
    }
}
impl From<i32> for Val {
    fn from(x: i32) -> Self {
        Val::I64(Some(i64::from(x)))
    }
}
impl From<u32> for Val {
    fn from(x: u32) -> Self {
        Val::I64(Some(i64::from(x)))
    }
}

/// A statement and its bound values: `q!("SELECT … WHERE id = $1", id)`.
#[derive(Debug, Clone)]
pub struct Q {
    pub sql: &'static str,
    pub args: Vec<Val>,
}

#[macro_export]
macro_rules! q {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::db::Q { sql: $sql, args: vec![$($crate::db::Val::from($arg)),*] }
    };
}

fn pg_query(q: Q) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(q.sql);
    for v in q.args {
        query = match v {
            Val::Bool(x) => query.bind(x),
            Val::I64(x) => query.bind(x),
            Val::Text(x) => query.bind(x),
            Val::Bytes(x) => query.bind(x),
            Val::Uuid(x) => query.bind(x),
            Val::Time(x) => query.bind(x),
            Val::Uuids(x) => query.bind(x),
        };
    }
    query
}

/// A type both drivers can decode.
pub trait Col: Sized + FromLite + for<'r> Decode<'r, Postgres> + Type<Postgres> {}
impl<T> Col for T where T: FromLite + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

pub enum Row {
    Sqlite(LiteRow),
    Postgres(PgRow),
}

impl Row {
    pub fn get<T: Col>(&self, col: &str) -> Result<T, Error> {
        match self {
            Row::Sqlite(r) => T::from_lite(r.value(col)?).map_err(|e| Error::internal(format!("column {col}: {e}"))),
            Row::Postgres(r) => r.try_get(col).map_err(|e| Error::internal(format!("column {col}: {e}"))),
        }
    }
}

/// Map a database error to the domain error: unique violations are conflicts, the rest internal.
pub fn db_err(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return Error::conflict("already_exists", "记录已存在", "the record already exists");
        }
        if d.is_foreign_key_violation() {
            return Error::conflict("reference_missing", "引用的记录不存在", "a referenced record does not exist");
        }
    }
    Error::internal(e)
}

pub enum Tx {
    /// A savepoint in the current group-commit batch, or a transaction of its own (see `writer`).
    Sqlite(Job),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn execute(&mut self, q: Q) -> Result<u64, Error> {
        match self {
            Tx::Sqlite(j) => lite::execute(j.conn()?, &q),
            Tx::Postgres(t) => pg_query(q).execute(&mut **t).await.map(|r| r.rows_affected()).map_err(db_err),
        }
    }

    /// Write `rows` (each the arguments of `one`): on PostgreSQL `per` rows a statement
    /// (`many`), to save round trips, the rest one by one; on SQLite every row alone, since a
    /// statement of several rows inside a transaction opens a statement journal, which copies
    /// each page the statement touches first (perf, `bench --scenario codes`), and a statement
    /// costs no round trip there (the statement is prepared once for them all). Returns the
    /// rows affected.
    pub async fn execute_rows(&mut self, many: &'static str, per: usize, one: &'static str, rows: &[Vec<Val>]) -> Result<u64, Error> {
        if let Tx::Sqlite(j) = self {
            return Ok(lite::execute_each(j.conn()?, one, rows)?.iter().sum());
        }
        let mut n = 0;
        let mut sets = rows.chunks_exact(per.max(1));
        for set in sets.by_ref() {
            n += self.execute(Q { sql: many, args: set.iter().flatten().cloned().collect() }).await?;
        }
        for r in sets.remainder() {
            n += self.execute(Q { sql: one, args: r.clone() }).await?;
        }
        Ok(n)
    }

    /// Write `rows` as [`Tx::execute_rows`] does and return the first argument (a uuid) of
    /// each row that changed something. `many` (PostgreSQL only) ends `RETURNING {key}`, that
    /// uuid; `one` has no `RETURNING`, since its count says it (SQLite would gather returned
    /// rows in a table of their own, for every row).
    pub async fn execute_rows_landed(
        &mut self,
        many: &'static str,
        per: usize,
        one: &'static str,
        rows: &[Vec<Val>],
        key: &str,
    ) -> Result<Vec<Uuid>, Error> {
        fn first(r: &[Val]) -> Result<Uuid, Error> {
            match r.first() {
                Some(Val::Uuid(Some(u))) => Ok(*u),
                _ => Err(Error::internal("execute_rows_landed: a row's first argument is not a uuid")),
            }
        }
        if let Tx::Sqlite(j) = self {
            let changed = lite::execute_each(j.conn()?, one, rows)?;
            return rows.iter().zip(changed).filter(|(_, n)| *n > 0).map(|(r, _)| first(r)).collect();
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut sets = rows.chunks_exact(per.max(1));
        for set in sets.by_ref() {
            for r in self.fetch_all(Q { sql: many, args: set.iter().flatten().cloned().collect() }).await? {
                out.push(r.get(key)?);
            }
        }
        for r in sets.remainder() {
            if self.execute(Q { sql: one, args: r.clone() }).await? > 0 {
                out.push(first(r)?);
            }
        }
        Ok(out)
    }

    pub async fn fetch_optional(&mut self, q: Q) -> Result<Option<Row>, Error> {
        match self {
            Tx::Sqlite(j) => Ok(lite::run(j.conn()?, &q, 1)?.0.pop().map(Row::Sqlite)),
            Tx::Postgres(t) => pg_query(q).fetch_optional(&mut **t).await.map(|r| r.map(Row::Postgres)).map_err(db_err),
        }
    }

    pub async fn fetch_one(&mut self, q: Q) -> Result<Row, Error> {
        self.fetch_optional(q).await?.ok_or(Error::NotFound("row"))
    }

    pub async fn fetch_all(&mut self, q: Q) -> Result<Vec<Row>, Error> {
        match self {
            Tx::Sqlite(j) => Ok(lite::run(j.conn()?, &q, usize::MAX)?.0.into_iter().map(Row::Sqlite).collect()),
            Tx::Postgres(t) => pg_query(q).fetch_all(&mut **t).await.map(|r| r.into_iter().map(Row::Postgres).collect()).map_err(db_err),
        }
    }

    /// Commit, unless the task runs under [`hold`]: then the transaction is kept open for the
    /// caller of `hold` to finish.
    pub async fn commit(self) -> Result<(), Error> {
        match HELD.try_with(Arc::clone) {
            Ok(held) => {
                let mut slot = held.lock().await;
                if let Some(earlier) = slot.replace(self) {
                    // `begin` commits a held transaction first, so this is only reached by a
                    // transaction begun before `hold`; keep the order of commits anyway.
                    earlier.commit_now().await?;
                }
                Ok(())
            }
            Err(_) => self.commit_now().await,
        }
    }

    /// Commit now, whatever the task.
    pub async fn commit_now(self) -> Result<(), Error> {
        match self {
            Tx::Sqlite(j) => j.commit().await,
            Tx::Postgres(t) => t.commit().await.map_err(db_err),
        }
    }
}

type Held = Arc<tokio::sync::Mutex<Option<Tx>>>;

tokio::task_local! {
    static HELD: Held;
}

/// Run `f` with the commit of its last transaction held back: that transaction is handed back
/// open, for the caller to add a last write and commit the whole (a create's idempotency key
/// and answer, with the record it answers, so that no crash can leave one without the other).
/// Reads `f` makes after its commit run in the held transaction and so see its writes; a
/// second transaction begun by `f` commits the held one first (`f`'s earlier writes are then
/// durable on their own, as without `hold`). Dropping the returned transaction rolls it back.
pub async fn hold<F: std::future::Future>(f: F) -> (F::Output, Option<Tx>) {
    let held: Held = Arc::default();
    let out = HELD.scope(held.clone(), f).await;
    let tx = held.lock().await.take();
    (out, tx)
}

/// The transaction this task holds (under [`hold`]), if `f` has "committed" one.
async fn held() -> Option<tokio::sync::OwnedMutexGuard<Option<Tx>>> {
    let held = HELD.try_with(Arc::clone).ok()?;
    let g = held.lock_owned().await;
    g.is_some().then_some(g)
}

/// Commit the transaction this task holds, before another begins (on SQLite the held one
/// keeps the writer, so waiting for it would never end).
async fn commit_held() -> Result<(), Error> {
    if let Some(mut g) = held().await
        && let Some(tx) = g.take()
    {
        tx.commit_now().await?;
    }
    Ok(())
}

/// Options for opening a database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Readers for SQLite, connections for PostgreSQL.
    pub max_connections: u32,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self { max_connections: 8 }
    }
}

impl Db {
    /// Open (creating if needed) the SQLite file at `path`.
    pub async fn open_sqlite(path: &Path, opts: &DbOptions) -> Result<Db, Error> {
        let write = Writer::open(path)?;
        let read = Arc::new(Readers::new(path, opts.max_connections as usize)?);
        Ok(Db::Sqlite { path: path.to_path_buf(), write, read })
    }

    pub async fn open_postgres(url: &str, opts: &DbOptions) -> Result<Db, Error> {
        let o = PgConnectOptions::from_str(url).map_err(|e| Error::internal(format!("database url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(o)
            .await
            .map_err(db_err)?;
        Ok(Db::Postgres(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn migrate(&self) -> Result<(), Error> {
        self.migrate_to(None).await
    }

    /// Apply the migrations up to `target` (a migration's number; all of them for none): an
    /// upgrade test builds a database as an older Baton left it.
    pub async fn migrate_to(&self, target: Option<i64>) -> Result<(), Error> {
        let upto = target.unwrap_or(i64::MAX);
        match self {
            Db::Sqlite { path, .. } => {
                // sqlx's migrator keeps its ledger (`_sqlx_migrations`) as before, on a connection
                // of its own; the writer waits for it through the busy timeout.
                let o = SqliteConnectOptions::new()
                    .filename(path)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new().max_connections(1).connect_with(o).await.map_err(db_err)?;
                let r = sqlx::migrate!("./migrations/sqlite").run_to(upto, &pool).await;
                pool.close().await;
                r
            }
            Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run_to(upto, p).await,
        }
        .map_err(|e| Error::internal(format!("migration: {e}")))
    }

    pub async fn begin(&self) -> Result<Tx, Error> {
        commit_held().await?;
        match self {
            Db::Sqlite { write, .. } => write.begin().await.map(Tx::Sqlite),
            Db::Postgres(p) => p.begin().await.map(Tx::Postgres).map_err(db_err),
        }
    }

    /// A transaction for a bulk write of thousands of rows: on SQLite one of its own rather than
    /// a savepoint in the group-commit batch (see `Writer::begin_alone`). A `Resumable` one
    /// does not wait for the disk at commit (`Durability`; on PostgreSQL
    /// `synchronous_commit = off` for the transaction, which has the same meaning there).
    pub async fn begin_alone(&self, durability: Durability) -> Result<Tx, Error> {
        commit_held().await?;
        match self {
            Db::Sqlite { write, .. } => write.begin_alone(durability).await.map(Tx::Sqlite),
            Db::Postgres(p) => {
                let mut tx = p.begin().await.map_err(db_err)?;
                if durability == Durability::Resumable {
                    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await.map_err(db_err)?;
                }
                Ok(Tx::Postgres(tx))
            }
        }
    }

    /// One row. On SQLite it is read on the calling thread: a short read costs a few
    /// microseconds, less than handing it to another thread would.
    pub async fn fetch_optional(&self, q: Q) -> Result<Option<Row>, Error> {
        if let Some(mut g) = held().await
            && let Some(tx) = g.as_mut()
        {
            return tx.fetch_optional(q).await;
        }
        match self {
            Db::Sqlite { read, .. } => Ok(read.with(|c| lite::run(c, &q, 1))?.0.pop().map(Row::Sqlite)),
            Db::Postgres(p) => pg_query(q).fetch_optional(p).await.map(|r| r.map(Row::Postgres)).map_err(db_err),
        }
    }

    /// Every row of a short read (by key, a parent's children, a bounded page): on SQLite on
    /// the calling thread, like `fetch_optional`.
    pub async fn fetch_all(&self, q: Q) -> Result<Vec<Row>, Error> {
        if let Some(mut g) = held().await
            && let Some(tx) = g.as_mut()
        {
            return tx.fetch_all(q).await;
        }
        match self {
            Db::Sqlite { read, .. } => Ok(read.with(|c| lite::run(c, &q, usize::MAX))?.0.into_iter().map(Row::Sqlite).collect()),
            Db::Postgres(p) => pg_query(q).fetch_all(p).await.map(|r| r.into_iter().map(Row::Postgres).collect()).map_err(db_err),
        }
    }

    /// Every row of a read that may take long (dashboards over every trip, a round's coverage,
    /// the audit chain, a recompute's affected persons): on SQLite on the blocking pool, at most
    /// `max_connections` at once, so that the runtime's threads keep serving requests.
    pub async fn scan(&self, q: Q) -> Result<Vec<Row>, Error> {
        if let Some(mut g) = held().await
            && let Some(tx) = g.as_mut()
        {
            return tx.fetch_all(q).await;
        }
        match self {
            Db::Sqlite { read, .. } => {
                let _permit = read.permits.acquire().await.map_err(|_| Error::internal("the database is closed"))?;
                let r = read.clone();
                let rows = tokio::task::spawn_blocking(move || r.with(|c| lite::run(c, &q, usize::MAX)))
                    .await
                    .map_err(|e| Error::internal(format!("reader: {e}")))??;
                Ok(rows.0.into_iter().map(Row::Sqlite).collect())
            }
            Db::Postgres(_) => self.fetch_all(q).await,
        }
    }

    pub async fn fetch_one(&self, q: Q) -> Result<Row, Error> {
        self.fetch_optional(q).await?.ok_or(Error::NotFound("row"))
    }

    /// A write outside an explicit transaction (still atomic on its own).
    pub async fn execute(&self, q: Q) -> Result<u64, Error> {
        let mut tx = self.begin().await?;
        let n = tx.execute(q).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// A statement built at run time from trusted parts only (DDL for tests and bench,
    /// `CREATE DATABASE`); never with user input.
    pub async fn execute_raw(&self, sql: &str) -> Result<(), Error> {
        match self {
            Db::Sqlite { write, .. } => {
                let job = write.begin().await?;
                job.conn()?.execute_batch(sql).map_err(lite::lite_err)?;
                job.commit().await
            }
            Db::Postgres(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(p).await.map(|_| ()).map_err(db_err),
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        self.fetch_optional(q!("SELECT 1 AS one")).await.is_ok()
    }

    /// Pool figures for `/metrics`: (size, idle).
    pub fn pool_stats(&self) -> (u32, usize) {
        match self {
            Db::Sqlite { read, .. } => read.stats(),
            Db::Postgres(p) => (p.size(), p.num_idle()),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { read, write, .. } => {
                read.close();
                write.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}
