//! SQLite through rusqlite, on the calling thread.
//!
//! sqlx's SQLite driver runs every connection on a worker thread of its own and hands each
//! statement, and each row, across threads. A check-in or a sampling scan is ten-odd short
//! statements on SQLite's one writer, and those hand-offs, not SQLite, set the pace (measured:
//! about 80 µs a statement under load against a few µs of SQLite's own work). Here a statement
//! is a prepared-statement cache hit run where the request already is. The SQL is the same
//! (`$N` placeholders, values bound from Rust) and values are encoded as sqlx encodes them
//! (UUIDs as 16-byte blobs, times as RFC 3339 text), so either driver reads what the other wrote.

use crate::db::{Q, Val};
use baton_domain::Error;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, ffi};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Prepared statements kept per connection: every statement of the code base fits.
const STATEMENT_CACHE: usize = 512;

/// Open a connection with the pragmas Baton relies on. The writer makes the file (WAL, so
/// that readers never wait for it); readers open it read-only.
pub fn open(path: &Path, read_only: bool) -> Result<Connection, Error> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(lite_err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(lite_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // FULL: a commit acknowledged to a client survives power loss, not only a process crash.
    // The writer: a 64 MiB page cache (updates land all over large tables). Readers read the
    // database file through a memory map and keep a small cache: SQLite drops a connection's
    // whole cache whenever another has written since its last read, so a reader beside a busy
    // writer re-read every page by a system call into a cache it soon threw away (a county-wide
    // recompute 7.3 s -> 6.8 s, bench codes, 1M persons).
    // Savepoint journals stay in temporary files: in memory (`temp_store = MEMORY`) a
    // 100,000-row LIS import took 15.4 s instead of 3.6 s.
    let pragmas = if read_only {
        "PRAGMA foreign_keys = ON; PRAGMA cache_size = -2048; PRAGMA mmap_size = 1073741824;"
    } else {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;"
    };
    conn.execute_batch(pragmas).map_err(lite_err)?;
    Ok(conn)
}

/// Map a SQLite error to the domain error as `db_err` does for sqlx: unique violations are
/// conflicts, missing references their own conflict, the rest internal.
pub fn lite_err(e: rusqlite::Error) -> Error {
    if let Some(code) = e.sqlite_error().map(|f| f.extended_code) {
        if code == ffi::SQLITE_CONSTRAINT_UNIQUE || code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY {
            return Error::conflict("already_exists", "记录已存在", "the record already exists");
        }
        if code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY {
            return Error::conflict("reference_missing", "引用的记录不存在", "a referenced record does not exist");
        }
    }
    Error::internal(e)
}

/// Times as sqlx writes them, so that text comparisons in SQL order them correctly.
pub fn time_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A value of a result set: text and blobs are ranges of the set's one buffer.
#[derive(Clone, Copy)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(usize, usize),
    Blob(usize, usize),
}

/// The rows a statement returned, in one buffer of cells and one of bytes: an allocation per
/// set, where a value each cost one (a recompute reads millions of rows; allocating and freeing
/// their values was a sixth of deciding codes).
struct Set {
    names: Vec<String>,
    cells: Vec<Cell>,
    bytes: Vec<u8>,
}

/// A row read through rusqlite: its place in the set it came with.
pub struct LiteRow {
    set: Arc<Set>,
    row: usize,
}

impl LiteRow {
    pub fn value(&self, col: &str) -> Result<ValueRef<'_>, Error> {
        let set = &*self.set;
        let i = set.names.iter().position(|n| n == col).ok_or_else(|| Error::internal(format!("no column {col}")))?;
        let cell = set.cells.get(self.row * set.names.len() + i).copied().ok_or_else(|| Error::internal("a row outside its set"))?;
        let bytes = |a: usize, b: usize| set.bytes.get(a..b).unwrap_or_default();
        Ok(match cell {
            Cell::Null => ValueRef::Null,
            Cell::Integer(x) => ValueRef::Integer(x),
            Cell::Real(x) => ValueRef::Real(x),
            Cell::Text(a, b) => ValueRef::Text(bytes(a, b)),
            Cell::Blob(a, b) => ValueRef::Blob(bytes(a, b)),
        })
    }
}

/// A statement text named by its address and length (statements are `&'static str`), and the
/// argument each of its parameters takes.
type ArgMaps = HashMap<(usize, usize), Rc<[usize]>>;

thread_local! {
    /// See `arg_of`.
    static ARG_OF: RefCell<ArgMaps> = RefCell::new(HashMap::new());
    /// The time last bound, as text: the rows of a bulk write carry the same `now` several
    /// times each (formatting it was a twenty-fifth of a recompute's writer).
    static LAST_TIME: RefCell<Option<(DateTime<Utc>, String)>> = const { RefCell::new(None) };
}

/// Which argument each of the statement's parameters takes: SQLite numbers named parameters
/// in order of first appearance, so `$2 … $1` must be matched by the number in the name, not
/// the position. Worked out once per statement text and thread: looking a name up is linear in
/// the statement's parameters, which made a 100-parameter multi-row insert quadratic.
fn arg_of(stmt: &rusqlite::Statement<'_>, sql: &'static str) -> Result<Rc<[usize]>, Error> {
    let key = (sql.as_ptr() as usize, sql.len());
    if let Some(m) = ARG_OF.with(|m| m.borrow().get(&key).cloned()) {
        return Ok(m);
    }
    let mut map = Vec::with_capacity(stmt.parameter_count());
    for i in 1..=stmt.parameter_count() {
        let n = stmt.parameter_name(i).and_then(|n| n.strip_prefix('$')).and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 1);
        map.push(n.ok_or_else(|| Error::internal(format!("statement parameter {i} is not $N")))? - 1);
    }
    let map: Rc<[usize]> = map.into();
    ARG_OF.with(|m| m.borrow_mut().insert(key, map.clone()));
    Ok(map)
}

/// Bind the arguments to the statement's `$N` parameters.
fn bind(stmt: &mut rusqlite::Statement<'_>, sql: &'static str, args: &[Val]) -> Result<(), Error> {
    let map = arg_of(stmt, sql)?;
    for (i, n) in map.iter().enumerate() {
        let i = i + 1;
        let v = args.get(*n).ok_or_else(|| Error::internal(format!("statement parameter {i} has no value")))?;
        let r = match v {
            Val::Bool(x) => stmt.raw_bind_parameter(i, x),
            Val::I64(x) => stmt.raw_bind_parameter(i, x),
            Val::Text(x) => stmt.raw_bind_parameter(i, x),
            Val::Bytes(x) => stmt.raw_bind_parameter(i, x),
            Val::Uuid(x) => stmt.raw_bind_parameter(i, x.as_ref().map(|u| &u.as_bytes()[..])),
            Val::Time(None) => stmt.raw_bind_parameter(i, None::<&str>),
            Val::Time(Some(t)) => LAST_TIME.with(|last| {
                let mut last = last.borrow_mut();
                let text = match &*last {
                    Some((k, text)) if k == t => text,
                    _ => &last.insert((*t, time_text(t))).1,
                };
                stmt.raw_bind_parameter(i, text.as_str())
            }),
            Val::Uuids(_) => return Err(Error::internal(format!("statement parameter {i}: a list of ids binds on PostgreSQL only"))),
        };
        r.map_err(lite_err)?;
    }
    Ok(())
}

/// Run one statement: up to `limit` rows, and the rows it changed. DML with `RETURNING`
/// makes all its changes on the first step, so stopping early loses nothing.
pub fn run(conn: &Connection, q: &Q, limit: usize) -> Result<(Vec<LiteRow>, u64), Error> {
    let mut stmt = conn.prepare_cached(q.sql).map_err(lite_err)?;
    bind(&mut stmt, q.sql, &q.args)?;
    let names: Vec<String> = stmt.column_names().into_iter().map(str::to_string).collect();
    let width = names.len();
    let (mut cells, mut bytes, mut n) = (Vec::new(), Vec::new(), 0usize);
    {
        let mut rows = stmt.raw_query();
        while n < limit {
            let Some(row) = rows.next().map_err(lite_err)? else { break };
            for i in 0..width {
                let mut keep = |b: &[u8]| {
                    bytes.extend_from_slice(b);
                    (bytes.len() - b.len(), bytes.len())
                };
                cells.push(match row.get_ref(i).map_err(lite_err)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(x) => Cell::Integer(x),
                    ValueRef::Real(x) => Cell::Real(x),
                    ValueRef::Text(t) => {
                        let (a, b) = keep(t);
                        Cell::Text(a, b)
                    }
                    ValueRef::Blob(b) => {
                        let (a, b) = keep(b);
                        Cell::Blob(a, b)
                    }
                });
            }
            n += 1;
        }
    }
    let set = Arc::new(Set { names, cells, bytes });
    Ok(((0..n).map(|row| LiteRow { set: set.clone(), row }).collect(), conn.changes()))
}

/// Run a statement for its effect: every row stepped, the count of rows changed.
pub fn execute(conn: &Connection, q: &Q) -> Result<u64, Error> {
    let mut stmt = conn.prepare_cached(q.sql).map_err(lite_err)?;
    bind(&mut stmt, q.sql, &q.args)?;
    let mut rows = stmt.raw_query();
    while rows.next().map_err(lite_err)?.is_some() {}
    drop(rows);
    Ok(conn.changes())
}

/// Run one statement for each row of arguments, prepared and looked up once: the rows each
/// changed (0 for a row an upsert's `WHERE` skipped).
pub fn execute_each(conn: &Connection, sql: &'static str, rows: &[Vec<Val>]) -> Result<Vec<u64>, Error> {
    let mut stmt = conn.prepare_cached(sql).map_err(lite_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for args in rows {
        bind(&mut stmt, sql, args)?;
        let mut rows = stmt.raw_query();
        while rows.next().map_err(lite_err)?.is_some() {}
        drop(rows);
        out.push(conn.changes());
    }
    Ok(out)
}

/// A value both drivers can read; this is the rusqlite half (sqlx decodes the PostgreSQL one).
/// Lenient where SQLite is (an integer read as a number of either kind, say), strict where a
/// wrong type would be a bug.
pub trait FromLite: Sized {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String>;
}

fn wrong(v: ValueRef<'_>, want: &str) -> String {
    format!("expected {want}, found {:?}", v.data_type())
}

fn text(t: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(t).map_err(|e| e.to_string())
}

impl FromLite for i64 {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Integer(i) => Ok(i),
            ValueRef::Real(f) => Ok(f as i64),
            _ => Err(wrong(v, "integer")),
        }
    }
}

impl FromLite for i32 {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        i32::try_from(i64::from_lite(v)?).map_err(|e| e.to_string())
    }
}

impl FromLite for f64 {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Integer(i) => Ok(i as f64),
            ValueRef::Real(f) => Ok(f),
            _ => Err(wrong(v, "number")),
        }
    }
}

impl FromLite for bool {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        Ok(i64::from_lite(v)? != 0)
    }
}

impl FromLite for String {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Text(s) => text(s).map(str::to_string),
            _ => Err(wrong(v, "text")),
        }
    }
}

impl FromLite for Vec<u8> {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
            _ => Err(wrong(v, "blob")),
        }
    }
}

impl FromLite for Uuid {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Uuid::from_slice(b).map_err(|e| e.to_string()),
            ValueRef::Text(s) => Uuid::parse_str(text(s)?).map_err(|e| e.to_string()),
            _ => Err(wrong(v, "uuid")),
        }
    }
}

/// Text in the forms sqlx reads (RFC 3339 first, then SQLite's own `YYYY-MM-DD HH:MM:SS`),
/// or an integer of Unix seconds.
impl FromLite for DateTime<Utc> {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Text(s) => {
                let s = text(s)?;
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .or_else(|_| NaiveDateTime::parse_from_str(s, "%F %T%.f").map(|n| Utc.from_utc_datetime(&n)))
                    .map_err(|_| format!("invalid time {s:?}"))
            }
            ValueRef::Integer(i) => Utc.timestamp_opt(i, 0).single().ok_or_else(|| format!("invalid time {i}")),
            _ => Err(wrong(v, "time")),
        }
    }
}

impl<T: FromLite> FromLite for Option<T> {
    fn from_lite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_lite(v).map(Some),
        }
    }
}

/// Read-only connections, reused. A short read borrows one on the calling thread; a long one
/// is read on the blocking pool (`Db::scan`), at most `max` at once.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max: usize,
    pub(crate) permits: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).field("max", &self.max).finish()
    }
}

impl Readers {
    pub fn new(path: &Path, max: usize) -> Result<Readers, Error> {
        let max = max.max(1);
        // Open one now so that a bad path fails at start, not at the first request.
        let first = open(path, true)?;
        Ok(Readers { path: path.to_path_buf(), idle: Mutex::new(vec![first]), max, permits: tokio::sync::Semaphore::new(max) })
    }

    /// Run `f` on an idle connection (opening one when none is idle), then keep it for reuse.
    pub fn with<R>(&self, f: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        let conn = self.idle.lock().map_err(|_| Error::internal("reader pool poisoned"))?.pop();
        let conn = match conn {
            Some(c) => c,
            None => open(&self.path, true)?,
        };
        let r = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            // A short read on every runtime thread plus `max` scans at once is the most in use.
            if idle.len() < self.max + 4 {
                idle.push(conn);
            }
        }
        r
    }

    /// (connections idle, connections allowed for lists at once), for `/metrics`.
    pub fn stats(&self) -> (u32, usize) {
        let idle = self.idle.lock().map(|i| i.len()).unwrap_or(0);
        (u32::try_from(self.max).unwrap_or(u32::MAX), idle)
    }

    pub fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
