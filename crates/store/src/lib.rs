//! Baton's storage layer. `Store` bundles the database, the vault and the clock; each
//! repository module takes the acting `Principal`, checks permission and scope in SQL,
//! writes, and appends the audit entry in the same transaction.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod code_history;
pub mod codes;
pub mod db;
pub mod escorts;
pub mod exposure;
pub mod freight_stats;
pub mod grids;
pub mod idempotency;
pub mod ledger;
pub mod lite;
pub mod page;
pub mod person_codes;
pub mod persons;
pub mod policy;
pub mod principal;
pub mod recompute;
pub mod results;
pub mod risk_areas;
pub mod rounds;
pub mod sheet;
pub mod sites;
pub mod testing;
pub mod testing_import;
pub mod testing_stats;
pub mod trip_import;
pub mod trips;
pub mod units;
pub mod users;
pub mod vault;
pub mod venues;
pub mod whitelist;
pub mod writer;

use baton_domain::Error;
use baton_domain::clock::Clock;
use baton_domain::scope::Scope;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

pub use db::{Backend, Db, DbOptions, Durability};
pub use principal::Principal;
pub use vault::{Keyring, Vault};

#[derive(Clone)]
pub struct Store {
    pub db: Db,
    pub vault: Arc<Vault>,
    pub clock: Arc<dyn Clock>,
    /// Recently looked-up sessions and tokens (see `auth::AuthCache`).
    pub auth_cache: Arc<auth::AuthCache>,
    /// Crashes that tests simulate at exact points; nothing sets them in service.
    pub faults: Arc<Faults>,
}

/// A point where a test makes a request end as if the server had died there: the request stops
/// at once, nothing it had not committed is kept, and the client hears nothing useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A keyed create has written its record, before its answer is stored.
    CrashAfterRecord,
    /// A keyed create has committed its record and answer, before the client hears it.
    CrashAfterAnswer,
}

/// The faults armed for the next request that reaches each point (each fires once).
#[derive(Debug, Default)]
pub struct Faults(std::sync::Mutex<Vec<Fault>>);

impl Faults {
    pub fn arm(&self, f: Fault) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(f);
    }

    /// Whether `f` was armed (disarming it).
    pub fn hit(&self, f: Fault) -> bool {
        let mut armed = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = armed.iter().position(|a| *a == f);
        found.map(|i| armed.swap_remove(i)).is_some()
    }
}

impl Store {
    pub fn new(db: Db, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Self {
        Self { db, vault, clock, auth_cache: Arc::new(auth::AuthCache::default()), faults: Arc::default() }
    }

    /// Now, at the precision both databases keep.
    pub fn now(&self) -> DateTime<Utc> {
        audit::micros(self.clock.now())
    }

    /// Today's date in the county (China Standard Time).
    pub fn today(&self) -> chrono::NaiveDate {
        sheet::china_date(self.clock.now())
    }

    /// Begin a transaction, run `f`, append its audit entry, commit. Used by every write.
    pub async fn audited(&self, who: &Principal, entry: audit::Entry<'_>, tx: db::Tx) -> Result<(), Error> {
        let mut tx = tx;
        // Changes to who someone is, or what they may do, must be seen at once.
        let identity = ["session.", "user.", "token.", "role."].iter().any(|p| entry.action.starts_with(p));
        audit::append(&mut tx, &self.vault, self.now(), who, entry).await?;
        tx.commit().await?;
        if identity {
            self.auth_cache.clear();
        }
        Ok(())
    }
}

/// The three values every scope condition binds:
/// `((jurisdiction >= $lo AND jurisdiction < $hi) OR unit_id = $unit)`.
/// A unit scope binds an empty range; a division scope binds a unit id that matches nothing.
pub fn scope_args(scope: &Scope) -> (String, String, Uuid) {
    match scope {
        Scope::Division { code } => (code.clone(), baton_domain::division::prefix_end(code), Uuid::nil()),
        Scope::Unit { unit_id, .. } => (String::new(), String::new(), *unit_id),
    }
}

/// The same three values for the area a caller works in: a division scope's subtree, and for a
/// unit scope its unit's division as well as its unit (a township's sampling team works the
/// township). For what a caller may *name* in a request (a resident put into a tube), never for
/// what it may read: reads stay with [`scope_args`].
pub fn area_args(scope: &Scope) -> (String, String, Uuid) {
    match scope {
        Scope::Division { code } => (code.clone(), baton_domain::division::prefix_end(code), Uuid::nil()),
        Scope::Unit { unit_id, division } => (division.clone(), baton_domain::division::prefix_end(division), *unit_id),
    }
}

/// Trim a free-text field and check its length in characters.
pub fn text_field(field: &str, v: &str, min: usize, max: usize) -> Result<String, baton_domain::FieldError> {
    let t = v.trim();
    let n = t.chars().count();
    if n < min {
        return Err(baton_domain::FieldError::required(field));
    }
    if n > max {
        return Err(baton_domain::FieldError::new(field, "too_long", format!("不能超过 {max} 个字符"), format!("at most {max} characters")));
    }
    if t.chars().any(char::is_control) {
        return Err(baton_domain::FieldError::new(field, "control_chars", "不能包含控制字符", "must not contain control characters"));
    }
    Ok(t.to_string())
}

/// Collect field errors; `Err(Error::Invalid)` if there are any.
#[derive(Default)]
pub struct Check(pub Vec<baton_domain::FieldError>);

impl Check {
    pub fn take<T>(&mut self, r: Result<T, baton_domain::FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn done(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::Invalid(self.0)) }
    }
}
