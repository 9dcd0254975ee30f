//! One set of SQL for SQLite and PostgreSQL.
//!
//! Queries are written once with `$N` placeholders and bound from a small set of owned
//! values (`Val`); rows decode any type both drivers decode. DDL lives per backend in
//! `migrations/{sqlite,postgres}`. SQLite gets one writer connection (it has one writer
//! anyway; a single connection avoids busy-retry storms) and a pool of readers.

use crate::writer::{Job, Writer};
use baton_domain::Error;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Decode, Postgres, Row as _, Sqlite, Type};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite { write: Arc<Writer>, read: SqlitePool },
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

fn sqlite_query(q: Q) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut query = sqlx::query(q.sql);
    for v in q.args {
        query = match v {
            Val::Bool(x) => query.bind(x),
            Val::I64(x) => query.bind(x),
            Val::Text(x) => query.bind(x),
            Val::Bytes(x) => query.bind(x),
            Val::Uuid(x) => query.bind(x),
            Val::Time(x) => query.bind(x),
        };
    }
    query
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
        };
    }
    query
}

/// A type both drivers can decode.
pub trait Col: Sized + for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}
impl<T> Col for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

pub enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    pub fn get<T: Col>(&self, col: &str) -> Result<T, Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Postgres(r) => r.try_get(col),
        }
        .map_err(|e| Error::internal(format!("column {col}: {e}")))
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
    /// A savepoint in the current group-commit batch (see `writer`).
    Sqlite(Job),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn execute(&mut self, q: Q) -> Result<u64, Error> {
        match self {
            Tx::Sqlite(j) => sqlite_query(q).execute(j.conn()?).await.map(|r| r.rows_affected()),
            Tx::Postgres(t) => pg_query(q).execute(&mut **t).await.map(|r| r.rows_affected()),
        }
        .map_err(db_err)
    }

    pub async fn fetch_optional(&mut self, q: Q) -> Result<Option<Row>, Error> {
        match self {
            Tx::Sqlite(j) => sqlite_query(q).fetch_optional(j.conn()?).await.map(|r| r.map(Row::Sqlite)),
            Tx::Postgres(t) => pg_query(q).fetch_optional(&mut **t).await.map(|r| r.map(Row::Postgres)),
        }
        .map_err(db_err)
    }

    pub async fn fetch_one(&mut self, q: Q) -> Result<Row, Error> {
        self.fetch_optional(q).await?.ok_or(Error::NotFound("row"))
    }

    pub async fn fetch_all(&mut self, q: Q) -> Result<Vec<Row>, Error> {
        match self {
            Tx::Sqlite(j) => sqlite_query(q).fetch_all(j.conn()?).await.map(|r| r.into_iter().map(Row::Sqlite).collect()),
            Tx::Postgres(t) => pg_query(q).fetch_all(&mut **t).await.map(|r| r.into_iter().map(Row::Postgres).collect()),
        }
        .map_err(db_err)
    }

    pub async fn commit(self) -> Result<(), Error> {
        match self {
            Tx::Sqlite(j) => j.commit().await,
            Tx::Postgres(t) => t.commit().await.map_err(db_err),
        }
    }
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
        let base = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit acknowledged to a client survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Two writer connections: the group-commit writer's, and one for migrations and DDL.
        let write = SqlitePoolOptions::new().max_connections(2).connect_with(base.clone()).await.map_err(db_err)?;
        let write = Writer::new(write);
        let read = SqlitePoolOptions::new().max_connections(opts.max_connections.max(1)).connect_with(base.read_only(true)).await.map_err(db_err)?;
        Ok(Db::Sqlite { write, read })
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
        match self {
            Db::Sqlite { write, .. } => sqlx::migrate!("./migrations/sqlite").run(write.pool()).await,
            Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
        }
        .map_err(|e| Error::internal(format!("migration: {e}")))
    }

    pub async fn begin(&self) -> Result<Tx, Error> {
        match self {
            Db::Sqlite { write, .. } => write.begin().await.map(Tx::Sqlite),
            Db::Postgres(p) => p.begin().await.map(Tx::Postgres).map_err(db_err),
        }
    }

    pub async fn fetch_optional(&self, q: Q) -> Result<Option<Row>, Error> {
        match self {
            Db::Sqlite { read, .. } => sqlite_query(q).fetch_optional(read).await.map(|r| r.map(Row::Sqlite)),
            Db::Postgres(p) => pg_query(q).fetch_optional(p).await.map(|r| r.map(Row::Postgres)),
        }
        .map_err(db_err)
    }

    pub async fn fetch_all(&self, q: Q) -> Result<Vec<Row>, Error> {
        match self {
            Db::Sqlite { read, .. } => sqlite_query(q).fetch_all(read).await.map(|r| r.into_iter().map(Row::Sqlite).collect()),
            Db::Postgres(p) => pg_query(q).fetch_all(p).await.map(|r| r.into_iter().map(Row::Postgres).collect()),
        }
        .map_err(db_err)
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
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Db::Sqlite { write, .. } => sqlx::raw_sql(sql).execute(write.pool()).await.map(|_| ()),
            Db::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .map_err(db_err)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        self.fetch_optional(q!("SELECT 1 AS one")).await.is_ok()
    }

    /// Pool figures for `/metrics`: (size, idle).
    pub fn pool_stats(&self) -> (u32, usize) {
        match self {
            Db::Sqlite { read, write } => (read.size() + write.pool().size(), read.num_idle() + write.pool().num_idle()),
            Db::Postgres(p) => (p.size(), p.num_idle()),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}
