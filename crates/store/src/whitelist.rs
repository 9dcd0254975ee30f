//! The whitelist (白名单): enterprises, vehicles and drivers, with tier, validity, a status
//! changed only with a reason (history kept), review and a fraud flag; matched at check-in;
//! imported from and exported to xlsx. Rules live in `baton_domain::whitelist`.
//!
//! Personal data: a driver's ID number and phone are sealed by the vault and found through
//! their blind index, exactly as for users; plates and credit codes are not personal and are
//! kept plain and indexed. Everything leaves masked unless revealed (`personal.reveal`, audited).
//!
//! Jurisdiction, kept simple: an entry belongs to the division of the scope of the user who
//! made it (the county's command office makes county-wide entries, jurisdiction `140427`;
//! a unit-scoped writer makes entries in its unit's division, owned by its unit). An entry is
//! **visible** to everyone whose scope lies under its jurisdiction (so every checkpoint and
//! township of the county sees the county's list) and to everyone whose scope covers it; it is
//! **changed** only by writers whose scope covers it. The tier (province/city/county) says
//! who approved the entry; it does not change where the entry applies.

use crate::db::{Q, Row, Tx, Val};
use crate::page::{Page, PageQuery, Paged};
use crate::sheet::{Format, Header, RCell, RowErrors, XCell, cell_time, china, read_table, write_sheet};
use crate::{Principal, Store, audit, q, scope_args, text_field};
use baton_domain::ident::{IdNumber, PersonalKind, Phone, Plate, mask_kind};
use baton_domain::role::Permission;
use baton_domain::scope::Scope;
use baton_domain::whitelist::{self as wl, Change, CreditCode, EntryKind, Event, EventKind, Problem, Reason, Status, Subject, Tier, WhitelistMatch};
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use uuid::Uuid;

const PHONE_AAD: &str = "whitelist_entries.phone";
const ID_AAD: &str = "whitelist_entries.id_number";
/// Rows accepted in one import: a province's list.
pub const MAX_IMPORT_ROWS: usize = 100_000;

// ---------- views ----------

/// An entry as the API and UI show it; personal data masked.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: Uuid,
    pub kind: EntryKind,
    pub tier: Tier,
    pub status: Status,
    pub fraud: bool,
    /// Enterprise name, driver name, or the vehicle's holder (may be empty).
    pub name: String,
    pub credit_code: Option<String>,
    pub plate: Option<String>,
    /// Masked (`140427********1234`).
    pub id_number: Option<String>,
    /// Masked (`138****1234`).
    pub phone: Option<String>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub note: String,
    pub jurisdiction: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether the entry counts at check-in now.
    pub counts_now: bool,
    /// Why it does not count now.
    pub problem: Option<Problem>,
    #[serde(skip)]
    unit_id: Option<Uuid>,
}

impl Entry {
    /// Whether `who` may change this entry (write permission and a scope that covers it).
    pub fn writable_by(&self, who: &Principal) -> bool {
        who.can(Permission::WhitelistWrite) && who.scope.covers(&self.jurisdiction, self.unit_id)
    }
}

/// One line of an entry's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryLine {
    pub seq: i64,
    pub kind: String,
    pub from: String,
    pub to: String,
    pub fraud: bool,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryDetail {
    #[serde(flatten)]
    pub entry: Entry,
    pub history: Vec<HistoryLine>,
}

// ---------- inputs ----------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryInput {
    /// `enterprise`, `vehicle` or `driver`.
    pub kind: String,
    /// `province`, `city` or `county`.
    pub tier: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub credit_code: String,
    #[serde(default)]
    pub plate: String,
    #[serde(default)]
    pub id_number: String,
    #[serde(default)]
    pub phone: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub tier: Option<String>,
    pub fraud: Option<bool>,
    /// Name, plate or credit code contains.
    pub q: Option<String>,
    pub plate: Option<String>,
    pub credit_code: Option<String>,
    /// Full ID number, found through the blind index.
    pub id_number: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    /// `active` (reinstate), `suspended` or `revoked`.
    pub to: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudInput {
    /// Set (default) or clear the flag.
    #[serde(default = "yes")]
    pub fraud: bool,
    pub reason: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    /// `approve` or `reject`.
    pub decision: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchInput {
    #[serde(default)]
    pub plate: Option<String>,
    #[serde(default)]
    pub driver_id_numbers: Vec<String>,
    #[serde(default)]
    pub enterprise_code: Option<String>,
}

// ---------- validation ----------

/// The fields of one entry before validation, from JSON, a form or a spreadsheet row.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub kind: String,
    pub tier: String,
    pub name: String,
    pub credit_code: String,
    pub plate: String,
    pub id_number: String,
    pub phone: String,
    pub note: String,
    /// `Err` when the value could not be read as a time (spreadsheets).
    pub valid_from: Option<Result<DateTime<Utc>, FieldError>>,
    pub valid_until: Option<Result<DateTime<Utc>, FieldError>>,
}

impl From<&EntryInput> for Draft {
    fn from(i: &EntryInput) -> Self {
        Draft {
            kind: i.kind.clone(),
            tier: i.tier.clone(),
            name: i.name.clone(),
            credit_code: i.credit_code.clone(),
            plate: i.plate.clone(),
            id_number: i.id_number.clone(),
            phone: i.phone.clone(),
            note: i.note.clone(),
            valid_from: Some(Ok(i.valid_from)),
            valid_until: Some(Ok(i.valid_until)),
        }
    }
}

/// A valid entry ready to store.
#[derive(Debug, Clone)]
pub struct Checked {
    pub subject: Subject,
    pub tier: Tier,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub note: String,
}

struct Errs<'a> {
    prefix: &'a str,
    v: Vec<FieldError>,
}

impl Errs<'_> {
    fn take<T>(&mut self, r: Result<T, FieldError>, field: &str) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(err) => {
                self.v.push(err.at(format!("{}{field}", self.prefix)));
                None
            }
        }
    }
}

/// Check a draft; field names are prefixed (`rows[3].plate`) for spreadsheet rows.
pub fn check(d: &Draft, prefix: &str, now: DateTime<Utc>) -> Result<Checked, Vec<FieldError>> {
    let mut e = Errs { prefix, v: Vec::new() };
    let kind = e.take(
        EntryKind::parse_loose(&d.kind).ok_or_else(|| {
            FieldError::new(
                "kind",
                "whitelist_kind_unknown",
                format!("未知类型“{}”，应为 企业、车辆 或 司机", d.kind.trim()),
                format!("unknown kind \"{}\"; use enterprise, vehicle or driver", d.kind.trim()),
            )
        }),
        "kind",
    );
    let tier = e.take(
        Tier::parse_loose(&d.tier).ok_or_else(|| {
            FieldError::new(
                "tier",
                "whitelist_tier_unknown",
                format!("未知层级“{}”，应为 省级、市级 或 县级", d.tier.trim()),
                format!("unknown tier \"{}\"; use province, city or county", d.tier.trim()),
            )
        }),
        "tier",
    );
    let from = match &d.valid_from {
        None => e.take(Err(FieldError::required("valid_from")), "valid_from"),
        Some(r) => e.take(r.clone(), "valid_from"),
    };
    let until = match &d.valid_until {
        None => e.take(Err(FieldError::required("valid_until")), "valid_until"),
        Some(r) => e.take(r.clone(), "valid_until"),
    };
    if let (Some(f), Some(u)) = (from, until) {
        e.take(wl::validity(f, u), "valid_until");
        if u <= now {
            e.take::<()>(Err(FieldError::new("valid_until", "validity_past", "有效期已过", "the validity has already ended")), "valid_until");
        }
    }
    let note = e.take(text_field("note", &d.note, 0, 500), "note");
    let not_for = |field: &str, v: &str, kind: EntryKind| -> Result<(), FieldError> {
        if v.trim().is_empty() {
            Ok(())
        } else {
            Err(FieldError::new(
                field,
                "field_not_for_kind",
                format!("“{}”类条目不填此项", kind.label(true)),
                format!("not used for a {} entry", kind.as_str()),
            ))
        }
    };
    let subject = match kind {
        Some(k @ EntryKind::Enterprise) => {
            let name = e.take(text_field("name", &d.name, 1, 100), "name");
            let code = e.take(
                if d.credit_code.trim().is_empty() {
                    Err(FieldError::required("credit_code"))
                } else {
                    CreditCode::parse("credit_code", &d.credit_code)
                },
                "credit_code",
            );
            e.take(not_for("plate", &d.plate, k), "plate");
            e.take(not_for("id_number", &d.id_number, k), "id_number");
            e.take(not_for("phone", &d.phone, k), "phone");
            match (name, code) {
                (Some(name), Some(credit_code)) => Some(Subject::Enterprise { name, credit_code }),
                _ => None,
            }
        }
        Some(k @ EntryKind::Vehicle) => {
            let holder = e.take(text_field("name", &d.name, 0, 100), "name");
            let plate = e.take(if d.plate.trim().is_empty() { Err(FieldError::required("plate")) } else { Plate::parse("plate", &d.plate) }, "plate");
            e.take(not_for("credit_code", &d.credit_code, k), "credit_code");
            e.take(not_for("id_number", &d.id_number, k), "id_number");
            e.take(not_for("phone", &d.phone, k), "phone");
            match (holder, plate) {
                (Some(holder), Some(plate)) => Some(Subject::Vehicle { plate, holder }),
                _ => None,
            }
        }
        Some(k @ EntryKind::Driver) => {
            let name = e.take(text_field("name", &d.name, 1, 40), "name");
            let id = e.take(
                if d.id_number.trim().is_empty() {
                    Err(FieldError::required("id_number"))
                } else {
                    IdNumber::parse_born_by("id_number", &d.id_number, crate::sheet::china_date(now))
                },
                "id_number",
            );
            let phone = e.take(if d.phone.trim().is_empty() { Err(FieldError::required("phone")) } else { Phone::parse("phone", &d.phone) }, "phone");
            e.take(not_for("credit_code", &d.credit_code, k), "credit_code");
            e.take(not_for("plate", &d.plate, k), "plate");
            match (name, id, phone) {
                (Some(name), Some(id_number), Some(phone)) => Some(Subject::Driver { id_number, name, phone }),
                _ => None,
            }
        }
        None => None,
    };
    match (subject, tier, from, until, note) {
        (Some(subject), Some(tier), Some(valid_from), Some(valid_until), Some(note)) if e.v.is_empty() => {
            Ok(Checked { subject, tier, valid_from, valid_until, note })
        }
        _ => Err(e.v),
    }
}

// ---------- scope ----------

/// The division codes above (and at) the viewer's own division: entries there are visible.
/// Always six values (the empty code, then prefixes of 2, 4, 6, 9 and 12 characters); unused
/// slots hold a value no jurisdiction has.
fn ancestors(who: &Principal) -> [String; 6] {
    let code = match &who.scope {
        Scope::Division { code } => code.as_str(),
        Scope::Unit { division, .. } => division.as_str(),
    };
    let mut out: [String; 6] = Default::default();
    out[0] = String::new();
    for (i, n) in [2usize, 4, 6, 9, 12].iter().enumerate() {
        out[i + 1] = if code.len() >= *n && code.is_char_boundary(*n) { code[..*n].to_string() } else { "-".to_string() };
    }
    out
}

fn parse_kind(s: &str) -> Result<EntryKind, Error> {
    EntryKind::parse(s).ok_or_else(|| Error::internal(format!("stored whitelist kind {s}")))
}
fn parse_status(s: &str) -> Result<Status, Error> {
    Status::parse(s).ok_or_else(|| Error::internal(format!("stored whitelist status {s}")))
}
fn parse_tier(s: &str) -> Result<Tier, Error> {
    Tier::parse(s).ok_or_else(|| Error::internal(format!("stored whitelist tier {s}")))
}

/// The domain's view of a stored row (opens the sealed values).
fn domain_of(store: &Store, r: &Row) -> Result<wl::Entry, Error> {
    let kind = parse_kind(&r.get::<String>("kind")?)?;
    let name: String = r.get("name")?;
    let subject = match kind {
        EntryKind::Enterprise => {
            let code: Option<String> = r.get("credit_code")?;
            Subject::Enterprise {
                name,
                credit_code: CreditCode::parse("credit_code", code.as_deref().unwrap_or("")).map_err(|e| Error::internal(e.en))?,
            }
        }
        EntryKind::Vehicle => {
            let plate: Option<String> = r.get("plate")?;
            Subject::Vehicle { plate: Plate::parse("plate", plate.as_deref().unwrap_or("")).map_err(|e| Error::internal(e.en))?, holder: name }
        }
        EntryKind::Driver => {
            let open = |col: &str, aad: &str| -> Result<String, Error> {
                let enc: Option<Vec<u8>> = r.get(col)?;
                store.vault.open(aad, &enc.unwrap_or_default())
            };
            let id = open("id_number_enc", ID_AAD)?;
            let phone = open("phone_enc", PHONE_AAD)?;
            Subject::Driver {
                id_number: IdNumber::parse("id_number", &id).map_err(|e| Error::internal(e.en))?,
                name,
                phone: Phone::parse("phone", &phone).map_err(|e| Error::internal(e.en))?,
            }
        }
    };
    Ok(wl::Entry {
        id: r.get("id")?,
        subject,
        tier: parse_tier(&r.get::<String>("tier")?)?,
        valid_from: r.get("valid_from")?,
        valid_until: r.get("valid_until")?,
        status: parse_status(&r.get::<String>("status")?)?,
        fraud: r.get("fraud")?,
    })
}

fn view_of(store: &Store, r: &Row, now: DateTime<Utc>) -> Result<Entry, Error> {
    let masked = |col: &str, aad: &str, kind: PersonalKind| -> Result<Option<String>, Error> {
        let enc: Option<Vec<u8>> = r.get(col)?;
        enc.map(|e| store.vault.open(aad, &e).map(|p| mask_kind(kind, &p))).transpose()
    };
    let status = parse_status(&r.get::<String>("status")?)?;
    let fraud: bool = r.get("fraud")?;
    let valid_from: DateTime<Utc> = r.get("valid_from")?;
    let valid_until: DateTime<Utc> = r.get("valid_until")?;
    // The problem depends on status, flag and validity only; the subject does not matter.
    let probe = wl::Entry {
        id: Uuid::nil(),
        subject: Subject::Vehicle { plate: Plate::parse("p", "晋D00000").map_err(|e| Error::internal(e.en))?, holder: String::new() },
        tier: Tier::County,
        valid_from,
        valid_until,
        status,
        fraud,
    };
    let problem = probe.problem(now);
    Ok(Entry {
        id: r.get("id")?,
        kind: parse_kind(&r.get::<String>("kind")?)?,
        tier: parse_tier(&r.get::<String>("tier")?)?,
        status,
        fraud,
        name: r.get("name")?,
        credit_code: r.get("credit_code")?,
        plate: r.get("plate")?,
        id_number: masked("id_number_enc", ID_AAD, PersonalKind::IdNumber)?,
        phone: masked("phone_enc", PHONE_AAD, PersonalKind::Phone)?,
        valid_from,
        valid_until,
        note: r.get("note")?,
        jurisdiction: r.get("jurisdiction")?,
        created_by: r.get("created_by")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        counts_now: problem.is_none(),
        problem,
        unit_id: r.get("unit_id")?,
    })
}

fn bad_filter(field: &str, v: &str) -> Error {
    Error::field(field, "invalid_filter", format!("筛选值“{v}”无效"), format!("invalid filter value \"{v}\""))
}

/// Up to `limit` entries the filter finds (or the one `id`), newest first, after `after`.
async fn fetch_rows(
    store: &Store,
    who: &Principal,
    f: &EntryFilter,
    id: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Row>, Error> {
    let (lo, hi, unit) = scope_args(&who.scope);
    let (after_at, after_id) = after.unzip();
    let [a0, a1, a2, a3, a4, a5] = ancestors(who);
    let nonempty = |o: &Option<String>| o.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let kind = match nonempty(&f.kind) {
        Some(k) => Some(EntryKind::parse(&k).ok_or_else(|| bad_filter("kind", &k))?.as_str()),
        None => None,
    };
    let status = match nonempty(&f.status) {
        Some(k) => Some(Status::parse(&k).ok_or_else(|| bad_filter("status", &k))?.as_str()),
        None => None,
    };
    let tier = match nonempty(&f.tier) {
        Some(k) => Some(Tier::parse(&k).ok_or_else(|| bad_filter("tier", &k))?.as_str()),
        None => None,
    };
    let plate = match nonempty(&f.plate) {
        Some(p) => Some(Plate::parse("plate", &p).map_err(|e| Error::Invalid(vec![e]))?.as_str().to_string()),
        None => None,
    };
    let code = match nonempty(&f.credit_code) {
        Some(p) => Some(CreditCode::parse("credit_code", &p).map_err(|e| Error::Invalid(vec![e]))?.as_str().to_string()),
        None => None,
    };
    let id_bidx = match nonempty(&f.id_number) {
        Some(p) => Some(store.vault.blind_index("id_number", IdNumber::parse("id_number", &p).map_err(|e| Error::Invalid(vec![e]))?.as_str())),
        None => None,
    };
    let like = nonempty(&f.q).map(|s| format!("%{}%", s.replace(['%', '_'], "")));
    store
        .db
        .fetch_all(q!(
            "SELECT id, kind, tier, status, fraud, subject_key, name, plate, credit_code, id_number_enc, phone_enc, valid_from, valid_until, note,
                    jurisdiction, unit_id, created_by, created_at, updated_at
             FROM whitelist_entries
             WHERE ((jurisdiction >= $1 AND jurisdiction < $2) OR unit_id = $3 OR jurisdiction IN ($4, $5, $6, $7, $8, $9))
               AND ($10 IS NULL OR id = $10)
               AND ($11 IS NULL OR kind = $11)
               AND ($12 IS NULL OR status = $12)
               AND ($13 IS NULL OR tier = $13)
               AND ($14 IS NULL OR fraud = $14)
               AND ($15 IS NULL OR name LIKE $15 OR plate LIKE $15 OR credit_code LIKE $15)
               AND ($16 IS NULL OR plate = $16)
               AND ($17 IS NULL OR credit_code = $17)
               AND ($18 IS NULL OR id_number_bidx = $18)
               AND ($19 IS NULL OR (created_at, id) < ($19, $20))
             ORDER BY created_at DESC, id DESC LIMIT $21",
            lo,
            hi,
            unit,
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            id,
            kind,
            status,
            tier,
            f.fraud,
            like,
            plate,
            code,
            id_bidx,
            after_at,
            after_id,
            limit
        ))
        .await
}

/// A page of the entries the filter finds, newest first.
pub async fn list(store: &Store, who: &Principal, f: &EntryFilter, page: &PageQuery) -> Result<Paged<Entry>, Error> {
    who.require(Permission::WhitelistRead)?;
    let page = Page::read("whitelist", page)?;
    let now = store.now();
    let rows = fetch_rows(store, who, f, None, page.after, page.fetch()).await?;
    let list = rows.iter().map(|r| view_of(store, r, now)).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |e| (e.created_at, e.id)))
}

async fn row_of(store: &Store, who: &Principal, id: Uuid) -> Result<Row, Error> {
    fetch_rows(store, who, &EntryFilter::default(), Some(id), None, 1).await?.into_iter().next().ok_or(Error::NotFound("whitelist entry"))
}

pub async fn history(store: &Store, id: Uuid) -> Result<Vec<HistoryLine>, Error> {
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT seq, kind, from_status, to_status, fraud, reason, actor, at FROM whitelist_history WHERE entry_id = $1 ORDER BY seq",
            id
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryLine {
                seq: r.get("seq")?,
                kind: r.get("kind")?,
                from: r.get("from_status")?,
                to: r.get("to_status")?,
                fraud: r.get("fraud")?,
                reason: r.get("reason")?,
                actor: r.get("actor")?,
                at: r.get("at")?,
            })
        })
        .collect()
}

pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<EntryDetail, Error> {
    who.require(Permission::WhitelistRead)?;
    let r = row_of(store, who, id).await?;
    Ok(EntryDetail { entry: view_of(store, &r, store.now())?, history: history(store, id).await? })
}

// ---------- writes ----------

fn subject_key(store: &Store, s: &Subject) -> String {
    match s {
        Subject::Enterprise { credit_code, .. } => format!("enterprise:{}", credit_code.as_str()),
        Subject::Vehicle { plate, .. } => format!("vehicle:{}", plate.as_str()),
        Subject::Driver { id_number, .. } => format!("driver:{}", hex::encode(store.vault.blind_index("id_number", id_number.as_str()))),
    }
}

fn duplicate() -> Error {
    Error::conflict(
        "whitelist_duplicate",
        "该对象已有待审核、有效或暂停中的白名单条目",
        "this subject already has a pending, active or suspended whitelist entry",
    )
}

const ENTRIES_HEAD: &str =
    "INSERT INTO whitelist_entries (id, kind, tier, status, fraud, subject_key, name, plate, credit_code, id_number_enc, id_number_bidx,
    phone_enc, phone_bidx, valid_from, valid_until, note, jurisdiction, unit_id, created_by, created_at, updated_at)";
const HISTORY_HEAD: &str = "INSERT INTO whitelist_history (id, entry_id, seq, kind, from_status, to_status, fraud, reason, actor, actor_id, at)";
/// Entries per multi-row insert (PostgreSQL; SQLite writes row by row).
const WRITE_ROWS: usize = 10;
static SQL_ENTRIES: LazyLock<&'static str> = LazyLock::new(|| crate::person_codes::values(ENTRIES_HEAD, 21, WRITE_ROWS, ""));
static SQL_ENTRY: LazyLock<&'static str> = LazyLock::new(|| crate::person_codes::values(ENTRIES_HEAD, 21, 1, ""));
static SQL_HISTORIES: LazyLock<&'static str> = LazyLock::new(|| crate::person_codes::values(HISTORY_HEAD, 11, WRITE_ROWS, ""));
static SQL_HISTORY: LazyLock<&'static str> = LazyLock::new(|| crate::person_codes::values(HISTORY_HEAD, 11, 1, ""));

/// A new entry's row and its first history row (`pending_review`, created for `reason`).
fn new_rows(store: &Store, who: &Principal, c: &Checked, reason: &str, now: DateTime<Utc>) -> Result<(Uuid, Vec<Val>, Vec<Val>), Error> {
    let id = Uuid::now_v7();
    let (jurisdiction, unit) = who.home();
    let key = subject_key(store, &c.subject);
    let (name, plate, code, ie, ib, pe, pb) = match &c.subject {
        Subject::Enterprise { name, credit_code } => (name.clone(), None, Some(credit_code.as_str().to_string()), None, None, None, None),
        Subject::Vehicle { plate, holder } => (holder.clone(), Some(plate.as_str().to_string()), None, None, None, None, None),
        Subject::Driver { id_number, name, phone } => (
            name.clone(),
            None,
            None,
            Some(store.vault.seal(ID_AAD, id_number.as_str())?),
            Some(store.vault.blind_index("id_number", id_number.as_str())),
            Some(store.vault.seal(PHONE_AAD, phone.as_str())?),
            Some(store.vault.blind_index("phone", phone.as_str())),
        ),
    };
    let entry = vec![
        id.into(),
        c.subject.kind().as_str().into(),
        c.tier.as_str().into(),
        Status::PendingReview.as_str().into(),
        false.into(),
        key.into(),
        name.into(),
        plate.into(),
        code.into(),
        ie.into(),
        ib.into(),
        pe.into(),
        pb.into(),
        c.valid_from.into(),
        c.valid_until.into(),
        c.note.as_str().into(),
        jurisdiction.into(),
        unit.into(),
        who.name.as_str().into(),
        now.into(),
        now.into(),
    ];
    let history = vec![
        Uuid::now_v7().into(),
        id.into(),
        1i64.into(),
        EventKind::Create.as_str().into(),
        Status::PendingReview.as_str().into(),
        Status::PendingReview.as_str().into(),
        false.into(),
        reason.into(),
        who.name.as_str().into(),
        who.user_id.into(),
        now.into(),
    ];
    Ok((id, entry, history))
}

fn duplicate_of(e: Error) -> Error {
    match e {
        Error::Conflict { code: "already_exists", .. } => duplicate(),
        e => e,
    }
}

async fn insert(store: &Store, tx: &mut Tx, who: &Principal, c: &Checked, reason: &str, now: DateTime<Utc>) -> Result<Uuid, Error> {
    let (id, entry, history) = new_rows(store, who, c, reason, now)?;
    tx.execute(Q { sql: &SQL_ENTRY, args: entry }).await.map_err(duplicate_of)?;
    tx.execute(Q { sql: &SQL_HISTORY, args: history }).await?;
    Ok(id)
}

fn subject_detail(s: &Subject) -> serde_json::Value {
    serde_json::json!({"kind": s.kind().as_str(), "subject": s.display_key()})
}

/// Create an entry; it starts `pending_review` and counts only once approved.
pub async fn create(store: &Store, who: &Principal, input: &EntryInput) -> Result<EntryDetail, Error> {
    who.require(Permission::WhitelistWrite)?;
    let now = store.now();
    let c = check(&Draft::from(input), "", now).map_err(Error::Invalid)?;
    let (jurisdiction, _) = who.home();
    let mut tx = store.db.begin().await?;
    let id = insert(store, &mut tx, who, &c, "新建 / created", now).await?;
    let mut detail = subject_detail(&c.subject);
    detail["tier"] = serde_json::json!(c.tier.as_str());
    store
        .audited(
            who,
            audit::Entry {
                action: "whitelist.create",
                object_type: "whitelist_entry",
                object_id: id.to_string(),
                jurisdiction: &jurisdiction,
                detail,
            },
            tx,
        )
        .await?;
    get(store, &Principal::system(&who.request_id), id).await
}

/// Apply a change with its reason: checked by the domain's status machine, written with its
/// history line and audit entry in one transaction.
async fn change(store: &Store, who: &Principal, id: Uuid, c: Change, reason: &str) -> Result<EntryDetail, Error> {
    who.require(Permission::WhitelistWrite)?;
    let r = row_of(store, who, id).await?;
    let jurisdiction: String = r.get("jurisdiction")?;
    let unit: Option<Uuid> = r.get("unit_id")?;
    if !who.scope.covers(&jurisdiction, unit) {
        // Visible (a county-wide entry seen from a township) but not the caller's to change.
        return Err(Error::Forbidden);
    }
    let reason = Reason::parse("reason", reason).map_err(|e| Error::Invalid(vec![e]))?;
    let before = domain_of(store, &r)?;
    let now = store.now();
    let (after, ev): (wl::Entry, Event) = before.apply(&c, reason, &who.name, now)?;
    let mut tx = store.db.begin().await?;
    let n = tx
        .execute(q!(
            "UPDATE whitelist_entries SET status = $2, fraud = $3, updated_at = $4 WHERE id = $1 AND status = $5 AND fraud = $6",
            id,
            after.status.as_str(),
            after.fraud,
            now,
            before.status.as_str(),
            before.fraud
        ))
        .await?;
    if n != 1 {
        return Err(Error::conflict(
            "whitelist_changed",
            "该条目刚被他人修改，请刷新后重试",
            "the entry was just changed by someone else; reload and retry",
        ));
    }
    let seq: i64 = tx.fetch_one(q!("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM whitelist_history WHERE entry_id = $1", id)).await?.get("next")?;
    tx.execute(q!(
        "INSERT INTO whitelist_history (id, entry_id, seq, kind, from_status, to_status, fraud, reason, actor, actor_id, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        Uuid::now_v7(),
        id,
        seq,
        ev.kind.as_str(),
        ev.from.as_str(),
        ev.to.as_str(),
        ev.fraud,
        ev.reason.as_str(),
        ev.actor.clone(),
        who.user_id,
        now
    ))
    .await?;
    let mut detail = subject_detail(&before.subject);
    detail["from"] = serde_json::json!(ev.from.as_str());
    detail["to"] = serde_json::json!(ev.to.as_str());
    detail["fraud"] = serde_json::json!(ev.fraud);
    detail["reason"] = serde_json::json!(ev.reason.as_str());
    let action = format!("whitelist.{}", ev.kind.as_str());
    store
        .audited(
            who,
            audit::Entry { action: &action, object_type: "whitelist_entry", object_id: id.to_string(), jurisdiction: &jurisdiction, detail },
            tx,
        )
        .await?;
    get(store, &Principal::system(&who.request_id), id).await
}

pub async fn change_status(store: &Store, who: &Principal, id: Uuid, input: &StatusInput) -> Result<EntryDetail, Error> {
    who.require(Permission::WhitelistWrite)?;
    let to = Status::parse(input.to.trim()).ok_or_else(|| {
        Error::field(
            "to",
            "whitelist_status_unknown",
            format!("未知状态“{}”，应为 active、suspended 或 revoked", input.to),
            format!("unknown status \"{}\"; use active, suspended or revoked", input.to),
        )
    })?;
    change(store, who, id, Change::SetStatus(to), &input.reason).await
}

pub async fn flag_fraud(store: &Store, who: &Principal, id: Uuid, input: &FraudInput) -> Result<EntryDetail, Error> {
    change(store, who, id, Change::Fraud(input.fraud), &input.reason).await
}

pub async fn review(store: &Store, who: &Principal, id: Uuid, input: &ReviewInput) -> Result<EntryDetail, Error> {
    who.require(Permission::WhitelistWrite)?;
    let approve = match input.decision.trim() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(Error::field(
                "decision",
                "review_decision_unknown",
                format!("未知审核结论“{other}”，应为 approve 或 reject"),
                format!("unknown decision \"{other}\"; use approve or reject"),
            ));
        }
    };
    change(store, who, id, Change::Review { approve }, &input.reason).await
}

// ---------- matching ----------

/// The parsed subjects of a match request.
pub struct MatchQuery {
    pub plate: Option<Plate>,
    pub driver_id_numbers: Vec<IdNumber>,
    pub enterprise: Option<CreditCode>,
}

impl MatchQuery {
    pub fn parse(input: &MatchInput) -> Result<MatchQuery, Error> {
        let mut errs = Vec::new();
        let blank = |o: &Option<String>| o.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let plate = blank(&input.plate).and_then(|p| Plate::parse("plate", &p).map_err(|e| errs.push(e)).ok());
        let enterprise = blank(&input.enterprise_code).and_then(|p| CreditCode::parse("enterprise_code", &p).map_err(|e| errs.push(e)).ok());
        if input.driver_id_numbers.len() > 20 {
            errs.push(FieldError::new("driver_id_numbers", "too_many", "最多 20 名司乘人员", "at most 20 crew members"));
        }
        let ids: Vec<IdNumber> = input
            .driver_id_numbers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| IdNumber::parse(&format!("driver_id_numbers[{i}]"), s).map_err(|e| errs.push(e)).ok())
            .collect();
        if errs.is_empty() && plate.is_none() && ids.is_empty() && enterprise.is_none() {
            errs.push(FieldError::new(
                "plate",
                "match_empty",
                "请至少提供车牌号、司机身份证号或企业信用代码之一",
                "give at least a plate, a driver's ID number or an enterprise code",
            ));
        }
        if errs.is_empty() { Ok(MatchQuery { plate, driver_id_numbers: ids, enterprise }) } else { Err(Error::Invalid(errs)) }
    }
}

/// Match for a check-in as seen from `viewer`'s scope, without a permission check: for the
/// check-in itself, which has checked its own permission (`trips.check_in`).
pub async fn match_as(store: &Store, viewer: &Principal, m: &MatchQuery, now: DateTime<Utc>) -> Result<WhitelistMatch, Error> {
    let mut keys: Vec<String> = Vec::new();
    if let Some(p) = &m.plate {
        keys.push(format!("vehicle:{}", p.as_str()));
    }
    for id in &m.driver_id_numbers {
        keys.push(format!("driver:{}", hex::encode(store.vault.blind_index("id_number", id.as_str()))));
    }
    if let Some(c) = &m.enterprise {
        keys.push(format!("enterprise:{}", c.as_str()));
    }
    let (lo, hi, unit) = scope_args(&viewer.scope);
    let [a0, a1, a2, a3, a4, a5] = ancestors(viewer);
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        let rows = store
            .db
            .fetch_all(q!(
                "SELECT id, kind, tier, status, fraud, subject_key, name, plate, credit_code, id_number_enc, phone_enc, valid_from, valid_until, note,
                        jurisdiction, unit_id, created_by, created_at, updated_at
                 FROM whitelist_entries
                 WHERE subject_key = $10
                   AND ((jurisdiction >= $1 AND jurisdiction < $2) OR unit_id = $3 OR jurisdiction IN ($4, $5, $6, $7, $8, $9))
                 LIMIT 100",
                lo.clone(),
                hi.clone(),
                unit,
                a0.clone(),
                a1.clone(),
                a2.clone(),
                a3.clone(),
                a4.clone(),
                a5.clone(),
                key
            ))
            .await?;
        for r in &rows {
            entries.push(domain_of(store, r)?);
        }
    }
    Ok(wl::match_check_in(m.plate.as_ref(), &m.driver_id_numbers, m.enterprise.as_ref(), &entries, now))
}

/// `POST /whitelist/match`: needs `whitelist.read`.
pub async fn match_check_in(store: &Store, who: &Principal, input: &MatchInput) -> Result<WhitelistMatch, Error> {
    who.require(Permission::WhitelistRead)?;
    let m = MatchQuery::parse(input)?;
    match_as(store, who, &m, store.now()).await
}

// ---------- reveal and key rotation ----------

/// Show a driver's ID number or phone in full: needs `personal.reveal`, inside scope; audited.
pub async fn reveal(store: &Store, who: &Principal, id: Uuid, kind: PersonalKind) -> Result<Option<String>, Error> {
    who.require(Permission::PersonalReveal)?;
    let r = row_of(store, who, id).await?;
    let (col, aad) = match kind {
        PersonalKind::Phone => ("phone_enc", PHONE_AAD),
        PersonalKind::IdNumber => ("id_number_enc", ID_AAD),
    };
    let enc: Option<Vec<u8>> = r.get(col)?;
    let plain = enc.map(|e| store.vault.open(aad, &e)).transpose()?;
    let jurisdiction: String = r.get("jurisdiction")?;
    let tx = store.db.begin().await?;
    let detail = serde_json::json!({"field": kind.as_str(), "name": r.get::<String>("name")?});
    store
        .audited(
            who,
            audit::Entry {
                action: "personal.reveal",
                object_type: "whitelist_entry",
                object_id: id.to_string(),
                jurisdiction: &jurisdiction,
                detail,
            },
            tx,
        )
        .await?;
    Ok(plain)
}

/// After a key rotation: re-seal every driver's values that are not under the active key.
pub async fn reseal_all(store: &Store) -> Result<u64, Error> {
    use crate::vault::SealedColumn;
    let cols = [
        SealedColumn { column: "id_number_enc", aad: ID_AAD, update: "UPDATE whitelist_entries SET id_number_enc = $2 WHERE id = $1" },
        SealedColumn { column: "phone_enc", aad: PHONE_AAD, update: "UPDATE whitelist_entries SET phone_enc = $2 WHERE id = $1" },
    ];
    crate::vault::reseal(
        store,
        "whitelist_entries",
        "SELECT id, id_number_enc, phone_enc FROM whitelist_entries WHERE id_number_enc IS NOT NULL",
        &cols,
    )
    .await
}

// ---------- xlsx ----------

/// Spreadsheet columns: the field, then the headers accepted for it (the first is written).
const HEADERS: &[(&str, &[&str])] = &[
    ("kind", &["类型", "kind", "种类"]),
    ("tier", &["层级", "tier", "级别"]),
    ("name", &["名称/姓名", "name", "名称", "姓名", "企业名称", "车辆所有人"]),
    ("credit_code", &["统一社会信用代码", "credit_code", "信用代码"]),
    ("plate", &["车牌号", "plate", "车牌"]),
    ("id_number", &["身份证号", "id_number", "身份证号码"]),
    ("phone", &["手机号", "phone", "手机号码", "电话"]),
    ("valid_from", &["有效期起", "valid_from", "生效日期"]),
    ("valid_until", &["有效期止", "valid_until", "截止日期", "失效日期"]),
    ("note", &["备注", "note"]),
];
const REQUIRED_HEADERS: &[&str] = &["kind", "tier", "valid_from", "valid_until"];

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub ids: Vec<Uuid>,
}

fn header_field(h: &str) -> Option<&'static str> {
    HEADERS.iter().find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(h))).map(|(f, _)| *f)
}

fn check_header(h: &Header<&'static str>, _: &[RCell]) -> Result<(), Error> {
    let errs: Vec<FieldError> = REQUIRED_HEADERS
        .iter()
        .filter(|f| !h.has(f))
        .map(|f| {
            let name = HEADERS.iter().find(|(x, _)| x == f).and_then(|(_, n)| n.first()).copied().unwrap_or(f);
            FieldError::new(
                format!("header.{f}"),
                "xlsx_column_missing",
                format!("表头(第 {} 行)缺少“{name}”列", h.row),
                format!("the header (row {}) has no column \"{name}\" ({f})", h.row),
            )
        })
        .collect();
    if errs.is_empty() { Ok(()) } else { Err(Error::Invalid(errs)) }
}

/// Import a spreadsheet (xlsx, or CSV in UTF-8 or GBK), as provinces and companies export it: a
/// title row above the header, a 序号 column, blank rows and a total line are passed over. Every
/// row is checked first; if any row is bad, nothing is written and the error lists the problems
/// by row (`rows[5].plate`, the spreadsheet's row number; the first thousand, and the total).
/// Imported entries start `pending_review`; up to 100,000 rows, written several a statement.
pub async fn import(store: &Store, who: &Principal, format: Format, bytes: &[u8]) -> Result<ImportReport, Error> {
    who.require(Permission::WhitelistWrite)?;
    let now = store.now();
    let (jurisdiction, _) = who.home();
    let existing: HashSet<String> = store
        .db
        .scan(q!(
            "SELECT subject_key FROM whitelist_entries WHERE jurisdiction = $1 AND status IN ('pending_review', 'active', 'suspended')",
            jurisdiction.clone()
        ))
        .await?
        .iter()
        .map(|r| r.get::<String>("subject_key"))
        .collect::<Result<_, _>>()?;
    let mut first_row: HashMap<String, usize> = HashMap::new();
    let mut good: Vec<Checked> = Vec::new();
    let mut errs = RowErrors::default();
    let mut count = 0usize;
    let rows = read_table(format, bytes, header_field, check_header, |r| {
        count += 1;
        if count > MAX_IMPORT_ROWS {
            return Err(Error::field(
                "file",
                "xlsx_too_many_rows",
                format!("一次最多导入 {MAX_IMPORT_ROWS} 行"),
                format!("at most {MAX_IMPORT_ROWS} rows per import"),
            ));
        }
        let n = r.row;
        let prefix = format!("rows[{n}].");
        let draft = Draft {
            kind: r.text("kind"),
            tier: r.text("tier"),
            name: r.text("name"),
            credit_code: r.text("credit_code"),
            plate: r.text("plate"),
            id_number: r.text("id_number"),
            phone: r.text("phone"),
            note: r.text("note"),
            valid_from: cell_time("valid_from", r.get("valid_from"), false),
            valid_until: cell_time("valid_until", r.get("valid_until"), true),
        };
        match check(&draft, &prefix, now) {
            Ok(c) => {
                let key = subject_key(store, &c.subject);
                let field = match c.subject.kind() {
                    EntryKind::Enterprise => "credit_code",
                    EntryKind::Vehicle => "plate",
                    EntryKind::Driver => "id_number",
                };
                if let Some(first) = first_row.get(&key) {
                    errs.push(
                        n,
                        FieldError::new(
                            format!("{prefix}{field}"),
                            "duplicate_in_file",
                            format!("与第 {first} 行重复"),
                            format!("the same as row {first}"),
                        ),
                    );
                } else if existing.contains(&key) {
                    errs.push(
                        n,
                        FieldError::new(
                            format!("{prefix}{field}"),
                            "whitelist_duplicate",
                            "已有待审核、有效或暂停中的白名单条目",
                            "already has a pending, active or suspended entry",
                        ),
                    );
                }
                first_row.entry(key).or_insert(n);
                good.push(c);
            }
            Err(e) => errs.extend(n, e),
        }
        Ok(())
    })?;
    if rows == 0 {
        return Err(Error::field("file", "xlsx_empty", "表格中没有数据行", "the sheet has no data rows"));
    }
    errs.finish()?;
    drop(first_row);
    drop(existing);
    let reason = format!("导入 / imported ({} rows)", good.len());
    // Thousands of rows: a transaction of its own, not a savepoint (see `Writer::begin_alone`).
    let mut tx = store.db.begin_alone(crate::Durability::Durable).await?;
    let mut ids = Vec::with_capacity(good.len());
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for chunk in good.chunks(1000) {
        let (mut entries, mut history) = (Vec::with_capacity(chunk.len()), Vec::with_capacity(chunk.len()));
        for c in chunk {
            let (id, e, h) = new_rows(store, who, c, &reason, now)?;
            ids.push(id);
            entries.push(e);
            history.push(h);
            *kinds.entry(c.subject.kind().as_str()).or_default() += 1;
        }
        tx.execute_rows(&SQL_ENTRIES, WRITE_ROWS, &SQL_ENTRY, &entries).await.map_err(duplicate_of)?;
        tx.execute_rows(&SQL_HISTORIES, WRITE_ROWS, &SQL_HISTORY, &history).await?;
    }
    use sha2::Digest;
    let detail =
        serde_json::json!({"format": format.as_str(), "rows": good.len(), "kinds": kinds, "sha256": hex::encode(sha2::Sha256::digest(bytes))});
    store
        .audited(
            who,
            audit::Entry {
                action: "whitelist.import",
                object_type: "whitelist_entry",
                object_id: String::new(),
                jurisdiction: &jurisdiction,
                detail,
            },
            tx,
        )
        .await?;
    Ok(ImportReport { imported: ids.len(), ids })
}

fn local_text(t: DateTime<Utc>) -> String {
    china().map(|z| t.with_timezone(&z).format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| t.to_rfc3339())
}

/// The most entries one export holds.
const EXPORT_ROWS: i64 = 2000;

/// Export the entries the filter finds. Personal data is masked unless `reveal` is asked for,
/// which needs `personal.reveal` and is audited. The columns are the import's, then status,
/// fraud flag, id and jurisdiction, so a revealed export imports again elsewhere.
pub async fn export_xlsx(store: &Store, who: &Principal, f: &EntryFilter, reveal: bool) -> Result<Vec<u8>, Error> {
    who.require(Permission::WhitelistRead)?;
    if reveal {
        who.require(Permission::PersonalReveal)?;
    }
    let now = store.now();
    let rows = fetch_rows(store, who, f, None, None, EXPORT_ROWS).await?;
    let mut out: Vec<Vec<XCell>> = Vec::with_capacity(rows.len() + 1);
    let mut header: Vec<XCell> = HEADERS.iter().map(|(_, n)| XCell::Text(n.first().copied().unwrap_or("").to_string())).collect();
    header.extend(["状态", "造假标记", "编号", "辖区"].iter().map(|s| XCell::Text((*s).to_string())));
    out.push(header);
    for r in &rows {
        let e = view_of(store, r, now)?;
        let (id_number, phone) = if reveal && e.kind == EntryKind::Driver {
            let open = |col: &str, aad: &str| -> Result<String, Error> {
                let enc: Option<Vec<u8>> = r.get(col)?;
                enc.map(|x| store.vault.open(aad, &x)).transpose().map(Option::unwrap_or_default)
            };
            (open("id_number_enc", ID_AAD)?, open("phone_enc", PHONE_AAD)?)
        } else {
            (e.id_number.clone().unwrap_or_default(), e.phone.clone().unwrap_or_default())
        };
        out.push(
            [
                e.kind.label(true).to_string(),
                e.tier.label(true).to_string(),
                e.name.clone(),
                e.credit_code.clone().unwrap_or_default(),
                e.plate.clone().unwrap_or_default(),
                id_number,
                phone,
                local_text(e.valid_from),
                local_text(e.valid_until),
                e.note.clone(),
                e.status.label(true).to_string(),
                if e.fraud { "是".to_string() } else { String::new() },
                e.id.to_string(),
                e.jurisdiction.clone(),
            ]
            .into_iter()
            .map(XCell::Text)
            .collect(),
        );
    }
    let bytes = write_sheet("白名单", &out)?;
    if reveal {
        let (jurisdiction, _) = who.home();
        let tx = store.db.begin().await?;
        let detail = serde_json::json!({"rows": rows.len(), "revealed": true, "filter": {
            "kind": f.kind, "status": f.status, "tier": f.tier, "fraud": f.fraud, "q": f.q, "plate": f.plate, "credit_code": f.credit_code,
            "id_number": f.id_number.as_ref().map(|s| mask_kind(PersonalKind::IdNumber, s.trim())),
        }});
        store
            .audited(
                who,
                audit::Entry {
                    action: "whitelist.export",
                    object_type: "whitelist_entry",
                    object_id: String::new(),
                    jurisdiction: &jurisdiction,
                    detail,
                },
                tx,
            )
            .await?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2022-11-10T01:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn drafts_are_checked_per_kind() {
        let d = Draft {
            kind: "司机".into(),
            tier: "县级".into(),
            name: "张三".into(),
            id_number: "11010519491231002X".into(),
            phone: "13800134567".into(),
            plate: "晋D12345".into(),
            valid_from: Some(Ok(now())),
            valid_until: Some(Ok(now())),
            ..Default::default()
        };
        let e = check(&d, "rows[2].", now()).unwrap_err();
        let codes: Vec<(&str, &str)> = e.iter().map(|f| (f.field.as_str(), f.code)).collect();
        assert!(codes.contains(&("rows[2].plate", "field_not_for_kind")), "{codes:?}");
        assert!(codes.contains(&("rows[2].valid_until", "validity_order")), "{codes:?}");
        let ok = Draft { plate: String::new(), valid_until: Some(Ok(now() + chrono::Duration::days(3))), ..d };
        assert!(matches!(check(&ok, "", now()).unwrap().subject, Subject::Driver { .. }));
    }
}
