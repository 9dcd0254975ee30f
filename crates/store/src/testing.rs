//! Sampling and testing in the store: sampling sites, tubes and their members, batches handed
//! to labs and received by them, results (kept with every correction), positive pools turned
//! into re-check orders and alerts, and the deadline watcher's pass over overdue tubes.
//!
//! Every change to a tube's members or result updates `person_results` in the same
//! transaction (see `results`), so that what the rest of the system reads never lags.

use crate::db::{Row, Tx, Val};
use crate::page::{Page, PageQuery, Paged};
use crate::persons::{self, PersonInput};
use crate::sheet::RowErrors;
use crate::{Check, Principal, Store, alerts, audit, q, scope_args, text_field};
use baton_domain::person::Document;
use baton_domain::policy::PolicyVersion;
use baton_domain::role::Permission;
use baton_domain::testing::{self as t, Event, Outcome, PersonStatus, Priority, Purpose, Tube, TubeState};
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use uuid::Uuid;

/// Rows per results submission (an API post or one lab file).
pub const MAX_RESULTS: usize = 200_000;
/// Persons added to a tube in one request: the largest pool.
const MAX_MEMBERS: usize = 20;

fn actor_unit(who: &Principal) -> Result<Uuid, Error> {
    who.unit_id.ok_or(Error::Forbidden)
}

async fn policy_now(store: &Store) -> Result<PolicyVersion, Error> {
    crate::policy::current(store, store.now()).await
}

async fn unit_row(tx: &mut Tx, id: Uuid) -> Result<Option<(String, String, String)>, Error> {
    tx.fetch_optional(q!("SELECT kind, jurisdiction, name FROM units WHERE id = $1 AND active = TRUE", id))
        .await?
        .map(|r| Ok((r.get("kind")?, r.get("jurisdiction")?, r.get("name")?)))
        .transpose()
}

// ---------- sampling sites ----------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInput {
    pub name: String,
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: Uuid,
    pub name: String,
    pub team_id: Uuid,
    pub team_name: String,
    pub address: String,
    pub jurisdiction: String,
}

/// A sampling team registers the places it samples at.
pub async fn create_site(store: &Store, who: &Principal, input: &SiteInput) -> Result<Site, Error> {
    who.require(Permission::TestingSample)?;
    let team = actor_unit(who)?;
    let mut c = Check::default();
    let name = c.take(text_field("name", &input.name, 1, 80));
    let address = c.take(text_field("address", &input.address, 0, 200));
    c.done()?;
    let (Some(name), Some(address)) = (name, address) else { return Err(Error::internal("validation")) };
    let mut tx = store.db.begin().await?;
    let (_, jurisdiction, _) = unit_row(&mut tx, team).await?.ok_or(Error::Forbidden)?;
    let id = Uuid::now_v7();
    tx.execute(q!(
        "INSERT INTO sampling_sites (id, name, team_id, address, active, jurisdiction, created_at) VALUES ($1, $2, $3, $4, TRUE, $5, $6)",
        id,
        name.clone(),
        team,
        address,
        jurisdiction.clone(),
        store.now()
    ))
    .await
    .map_err(|e| match e {
        Error::Conflict { code: "already_exists", .. } => {
            Error::field("name", "site_exists", "本队已有同名采样点", "your team already has a site by this name")
        }
        e => e,
    })?;
    store
        .audited(
            who,
            audit::Entry {
                action: "testing.site.create",
                object_type: "sampling_site",
                object_id: id.to_string(),
                jurisdiction: &jurisdiction,
                detail: serde_json::json!({"name": name}),
            },
            tx,
        )
        .await?;
    list_sites(store, who).await?.into_iter().find(|s| s.id == id).ok_or(Error::NotFound("sampling site"))
}

/// Every sampling site in the caller's scope (for choices).
pub async fn list_sites(store: &Store, who: &Principal) -> Result<Vec<Site>, Error> {
    crate::page::all(|p| async move { page_sites(store, who, &p).await }).await
}

/// A page of the sampling sites in the caller's scope, by division and name.
pub async fn page_sites(store: &Store, who: &Principal, page: &PageQuery) -> Result<Paged<Site>, Error> {
    who.require(Permission::TestingRead)?;
    let page = Page::<(String, String, Uuid)>::read("testing_sites", page)?;
    let (aj, an, ai) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT s.id, s.name, s.team_id, u.name AS team_name, s.address, s.jurisdiction FROM sampling_sites s JOIN units u ON u.id = s.team_id
             WHERE s.active = TRUE AND ((s.jurisdiction >= $1 AND s.jurisdiction < $2) OR s.team_id = $3 OR s.team_id = $4)
               AND ($5 IS NULL OR (s.jurisdiction, s.name, s.id) > ($5, $6, $7))
             ORDER BY s.jurisdiction, s.name, s.id LIMIT $8",
            lo,
            hi,
            unit,
            who.unit_id,
            aj,
            an,
            ai,
            page.fetch()
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(Site {
                id: r.get("id")?,
                name: r.get("name")?,
                team_id: r.get("team_id")?,
                team_name: r.get("team_name")?,
                address: r.get("address")?,
                jurisdiction: r.get("jurisdiction")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |s| (s.jurisdiction.clone(), s.name.clone(), s.id)))
}

// ---------- tubes ----------

/// A person put into a tube: by id (scanned from their code), or by document (scanned from the
/// ID card or typed). A person not yet registered needs a name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    #[serde(default)]
    pub person_id: Option<Uuid>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub document_kind: String,
    #[serde(default)]
    pub document_number: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub division: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TubeInput {
    pub barcode: String,
    /// 1 (single tube) or N of an N-in-1 pool; the policy in force says which are allowed.
    #[serde(default = "one")]
    pub pool_size: u32,
    /// `routine` (default) or `expedited`.
    #[serde(default)]
    pub priority: Option<String>,
    /// `screening` (default), `landing`, `recheck` or `resample`.
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub site_id: Option<Uuid>,
    #[serde(default)]
    pub round_id: Option<Uuid>,
    /// A landing test: the trip checked in with this tube's barcode (single tube, expedited).
    #[serde(default)]
    pub trip_id: Option<Uuid>,
    #[serde(default)]
    pub members: Vec<MemberInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersInput {
    pub members: Vec<MemberInput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub person_id: Uuid,
    pub seq: i64,
    pub name: String,
    pub document_masked: String,
    pub status: Option<PersonStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultRecord {
    pub id: Uuid,
    pub outcome: Outcome,
    pub ct: Option<f64>,
    /// The ORF1ab and N genes' Ct values, when the lab gave them apart.
    pub ct_orf1ab: Option<f64>,
    pub ct_n: Option<f64>,
    pub source: String,
    pub tested_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: String,
    pub supersedes: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TubeView {
    pub id: Uuid,
    pub barcode: String,
    pub pool_size: u32,
    pub members: u32,
    pub priority: Priority,
    pub purpose: Purpose,
    pub state: TubeState,
    pub team_id: Uuid,
    pub team_name: String,
    pub site_id: Option<Uuid>,
    pub round_id: Option<Uuid>,
    pub trip_id: Option<Uuid>,
    pub batch_id: Option<Uuid>,
    pub lab_id: Option<Uuid>,
    pub sampled_at: DateTime<Utc>,
    pub sealed_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub due_at: DateTime<Utc>,
    pub overdue: bool,
    pub outcome: Option<Outcome>,
    pub ct: Option<f64>,
    pub ct_orf1ab: Option<f64>,
    pub ct_n: Option<f64>,
    pub resulted_at: Option<DateTime<Utc>>,
    pub jurisdiction: String,
    pub policy_version: i64,
    pub member_list: Vec<MemberView>,
    /// Every result the lab sent, oldest first: a correction supersedes, the original stays.
    pub results: Vec<ResultRecord>,
}

/// The columns every tube query reads.
struct TubeRow {
    id: Uuid,
    barcode: String,
    tube: Tube,
    priority: Priority,
    purpose: Purpose,
    team_id: Uuid,
    trip_id: Option<Uuid>,
    lab_id: Option<Uuid>,
    cts: Cts,
    jurisdiction: String,
}

/// A result's Ct values in hundredths: the tube's (the lab's one value, or the lower of its
/// gene values: the stronger signal), and the ORF1ab and N genes' when the lab gives them apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cts {
    pub ct: Option<i64>,
    pub orf1ab: Option<i64>,
    pub n: Option<i64>,
}

impl Cts {
    fn of(r: &Row) -> Result<Cts, Error> {
        Ok(Cts { ct: r.get("ct_centi")?, orf1ab: r.get("ct_orf1ab_centi")?, n: r.get("ct_n_centi")? })
    }
}

fn enum_col<T>(r: &Row, col: &str, parse: fn(&str) -> Option<T>) -> Result<T, Error> {
    let s: String = r.get(col)?;
    parse(&s).ok_or_else(|| Error::internal(format!("stored {col} {s}")))
}

fn tube_row(r: &Row) -> Result<TubeRow, Error> {
    let outcome: Option<String> = r.get("outcome")?;
    Ok(TubeRow {
        id: r.get("id")?,
        barcode: r.get("barcode")?,
        tube: Tube {
            pool_size: u32::try_from(r.get::<i64>("pool_size")?).map_err(Error::internal)?,
            members: u32::try_from(r.get::<i64>("members")?).map_err(Error::internal)?,
            state: enum_col(r, "state", TubeState::parse)?,
            outcome: outcome.as_deref().and_then(Outcome::parse),
        },
        priority: enum_col(r, "priority", Priority::parse)?,
        purpose: enum_col(r, "purpose", Purpose::parse)?,
        team_id: r.get("team_id")?,
        trip_id: r.get("trip_id")?,
        lab_id: r.get("lab_id")?,
        cts: Cts::of(r)?,
        jurisdiction: r.get("jurisdiction")?,
    })
}

async fn tube_by_id(tx: &mut Tx, id: Uuid) -> Result<Option<TubeRow>, Error> {
    tx.fetch_optional(q!(
        "SELECT id, barcode, pool_size, members, state, outcome, priority, purpose, team_id, trip_id, lab_id, ct_centi, ct_orf1ab_centi, ct_n_centi, jurisdiction FROM tubes WHERE id = $1",
        id
    ))
    .await?
    .map(|r| tube_row(&r))
    .transpose()
}

async fn tube_by_barcode(tx: &mut Tx, barcode: &str) -> Result<Option<TubeRow>, Error> {
    tx.fetch_optional(q!(
        "SELECT id, barcode, pool_size, members, state, outcome, priority, purpose, team_id, trip_id, lab_id, ct_centi, ct_orf1ab_centi, ct_n_centi, jurisdiction FROM tubes WHERE barcode = $1",
        barcode
    ))
    .await?
    .map(|r| tube_row(&r))
    .transpose()
}

/// A sampler changes only its own unit's tubes.
fn require_team(who: &Principal, row: &TubeRow) -> Result<(), Error> {
    if who.unit_id == Some(row.team_id) || who.name == "system" { Ok(()) } else { Err(Error::NotFound("tube")) }
}

fn ct_of(centi: Option<i64>) -> Option<f64> {
    centi.map(|c| c as f64 / 100.0)
}

/// A member resolved to a person: id and residence, and whether registered just now (a new
/// person is in no tube and owes no re-test: their checks are skipped).
struct Resolved {
    person: Uuid,
    jurisdiction: String,
    new: bool,
}

async fn resolve_member(
    tx: &mut Tx,
    store: &Store,
    who: &Principal,
    i: usize,
    m: &MemberInput,
    now: DateTime<Utc>,
) -> Result<Result<Resolved, Vec<FieldError>>, Error> {
    let f = |n: &str| format!("members[{i}].{n}");
    if let Some(id) = m.person_id {
        return Ok(match persons::nameable(tx, who, id).await? {
            Some((person, jurisdiction)) => Ok(Resolved { person, jurisdiction, new: false }),
            None => Err(vec![FieldError::new(f("person_id"), "person_unknown", "人员不存在", "no such person")]),
        });
    }
    if m.document_number.trim().is_empty() {
        return Ok(Err(vec![FieldError::new(
            f("document_number"),
            "required",
            "请扫描人员码、身份证，或输入证件号码",
            "scan the person's code or ID card, or type the document number",
        )]));
    }
    // A known person needs no name: the document finds them.
    if m.name.trim().is_empty() {
        let doc = match Document::parse(&f("document_kind"), &f("document_number"), &m.document_kind, &m.document_number) {
            Ok(d) => d,
            Err(e) => return Ok(Err(vec![e])),
        };
        return match persons::find_by_document(store, &doc).await? {
            Some(id) => {
                let r = tx.fetch_one(q!("SELECT jurisdiction FROM persons WHERE id = $1", id)).await?;
                Ok(Ok(Resolved { person: id, jurisdiction: r.get("jurisdiction")?, new: false }))
            }
            None => Ok(Err(vec![FieldError::new(
                f("name"),
                "name_required_new",
                "首次登记的人员请填写姓名",
                "a person registered for the first time needs a name",
            )])),
        };
    }
    let input = PersonInput {
        name: m.name.clone(),
        document_kind: m.document_kind.clone(),
        document_number: m.document_number.clone(),
        phone: m.phone.clone(),
        division: m.division.clone(),
        unit_id: None,
    };
    let draft = match persons::check(who, &format!("members[{i}]."), &input, store.today()) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    let (id, new) = persons::register(tx, store, who, &draft, now).await?;
    if new {
        return Ok(Ok(Resolved { person: id, jurisdiction: draft.jurisdiction, new }));
    }
    let r = tx.fetch_one(q!("SELECT jurisdiction FROM persons WHERE id = $1", id)).await?;
    Ok(Ok(Resolved { person: id, jurisdiction: r.get("jurisdiction")?, new }))
}

/// Put persons into an open tube (inside the caller's transaction); returns the tube after.
async fn add_in_tx(tx: &mut Tx, store: &Store, who: &Principal, row: &TubeRow, members: &[MemberInput], now: DateTime<Utc>) -> Result<Tube, Error> {
    if members.len() > MAX_MEMBERS {
        return Err(Error::field("members", "too_many", format!("一次最多添加 {MAX_MEMBERS} 人"), format!("at most {MAX_MEMBERS} persons at once")));
    }
    let next = row.tube.apply(Event::AddMembers(u32::try_from(members.len()).unwrap_or(u32::MAX)))?;
    let mut errs = Vec::new();
    let mut resolved = Vec::new();
    let mut seen = HashSet::new();
    for (i, m) in members.iter().enumerate() {
        match resolve_member(tx, store, who, i, m, now).await? {
            Ok(r) => {
                let already = !r.new
                    && tx
                        .fetch_optional(q!("SELECT 1 AS one FROM tube_members WHERE tube_id = $1 AND person_id = $2", row.id, r.person))
                        .await?
                        .is_some();
                if already || !seen.insert(r.person) {
                    errs.push(FieldError::new(format!("members[{i}]"), "already_in_tube", "此人已在该管中", "this person is already in the tube"));
                }
                resolved.push(r);
            }
            Err(e) => errs.extend(e),
        }
    }
    if !errs.is_empty() {
        return Err(Error::Invalid(errs));
    }
    for (i, r) in resolved.iter().enumerate() {
        let seq = i64::from(row.tube.members) + i as i64;
        tx.execute(q!("INSERT INTO tube_members (tube_id, person_id, seq, added_at) VALUES ($1, $2, $3, $4)", row.id, r.person, seq, now)).await?;
        // A new sample makes the person pending, except that a positive or a pending re-check
        // stands until a result clears it (`testing::person_status`).
        tx.execute(q!(
            "INSERT INTO person_results (person_id, status, sampled_at, resulted_at, tube_id, updated_at, jurisdiction) VALUES ($1, 'pending', $2, NULL, $3, $2, $4)
             ON CONFLICT (person_id) DO UPDATE SET
                status = CASE WHEN person_results.status IN ('positive', 'pending_recheck') THEN person_results.status ELSE 'pending' END,
                resulted_at = CASE WHEN person_results.status IN ('positive', 'pending_recheck') THEN person_results.resulted_at ELSE NULL END,
                sampled_at = excluded.sampled_at, tube_id = excluded.tube_id, updated_at = excluded.updated_at, jurisdiction = excluded.jurisdiction",
            r.person,
            now,
            row.id,
            r.jurisdiction.clone()
        ))
        .await?;
        // The person's open re-test or re-sample order is met by this sample.
        if !r.new {
            tx.execute(q!(
                "UPDATE retest_orders SET tube_id = $2 WHERE person_id = $1 AND resolved_at IS NULL AND tube_id IS NULL",
                r.person,
                row.id
            ))
            .await?;
        }
    }
    let sealed_at = (next.state == TubeState::Sealed).then_some(now);
    tx.execute(q!(
        "UPDATE tubes SET members = $2, state = $3, sealed_at = COALESCE(sealed_at, $4), updated_at = $5 WHERE id = $1",
        row.id,
        i64::from(next.members),
        next.state.as_str(),
        sealed_at,
        now
    ))
    .await?;
    Ok(next)
}

/// Open a tube by its barcode (and put the first persons in, if given).
pub async fn open_tube(store: &Store, who: &Principal, input: &TubeInput) -> Result<TubeView, Error> {
    who.require(Permission::TestingSample)?;
    let team = actor_unit(who)?;
    let policy = policy_now(store).await?;
    let rules = &policy.params.testing;
    let mut c = Check::default();
    let barcode = c.take(t::parse_barcode("barcode", &input.barcode));
    let mut purpose = match input.purpose.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Some(Purpose::Screening),
        Some(p) => c.take(Purpose::parse(p).ok_or_else(|| {
            FieldError::new(
                "purpose",
                "purpose_unknown",
                "用途应为 screening、landing、recheck 或 resample",
                "purpose is screening, landing, recheck or resample",
            )
        })),
    };
    let mut priority =
        match input.priority.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Some(Priority::Routine),
            Some(p) => c.take(Priority::parse(p).ok_or_else(|| {
                FieldError::new("priority", "priority_unknown", "优先级应为 routine 或 expedited", "priority is routine or expedited")
            })),
        };
    let mut pool_size = c.take(t::check_pool_size(rules, input.pool_size));
    // A landing test or a re-check is one person, one tube; a landing test is expedited.
    if input.trip_id.is_some() {
        purpose = purpose.map(|_| Purpose::Landing);
        priority = priority.map(|_| Priority::Expedited);
    }
    if matches!(purpose, Some(Purpose::Landing | Purpose::Recheck)) && input.pool_size != 1 {
        c.0.push(FieldError::new("pool_size", "single_tube_required", "落地检和复核须单人单管", "a landing test or a re-check is a single tube"));
        pool_size = None;
    }
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let (_, team_jurisdiction, _) = unit_row(&mut tx, team).await?.ok_or(Error::Forbidden)?;
    let mut jurisdiction = team_jurisdiction;
    if let Some(site) = input.site_id {
        match tx.fetch_optional(q!("SELECT jurisdiction FROM sampling_sites WHERE id = $1 AND team_id = $2 AND active = TRUE", site, team)).await? {
            Some(r) => jurisdiction = r.get("jurisdiction")?,
            None => c.0.push(FieldError::new("site_id", "site_unknown", "采样点不存在或不属于本队", "no such sampling site of your team")),
        }
    }
    if let Some(round) = input.round_id {
        match crate::rounds::nameable(&mut tx, who, round, now).await? {
            None => c.0.push(FieldError::new("round_id", "round_unknown", "筛查轮次不存在", "no such screening round")),
            Some(r) if now < r.starts_at => {
                c.0.push(FieldError::new("round_id", "round_not_started", "该筛查轮次尚未开始", "the screening round has not started yet"))
            }
            Some(r) if now > r.due_at => c.0.push(FieldError::new("round_id", "round_closed", "该筛查轮次已结束", "the screening round is over")),
            // A round's tubes take its priority unless the desk says otherwise.
            Some(r) if input.trip_id.is_none() && input.priority.as_deref().is_none_or(|p| p.trim().is_empty()) => {
                priority = priority.map(|_| r.priority);
            }
            Some(_) => {}
        }
    }
    if let Some(trip) = input.trip_id {
        match crate::trips::load_visible(&mut tx, who, trip).await {
            Err(Error::NotFound(_)) => c.0.push(FieldError::new("trip_id", "trip_unknown", "行程不存在", "no such trip")),
            Err(e) => return Err(e),
            Ok(l) => {
                let landing = l.extra.landing_tube.as_deref().and_then(|b| t::parse_barcode("b", b).ok());
                if landing.is_some() && landing != barcode {
                    c.0.push(FieldError::new(
                        "barcode",
                        "landing_tube_mismatch",
                        "条码与卡口登记的落地检条码不符",
                        "the barcode differs from the landing tube recorded at check-in",
                    ));
                }
            }
        }
    }
    c.done()?;
    let (Some(barcode), Some(purpose), Some(priority), Some(pool_size)) = (barcode, purpose, priority, pool_size) else {
        return Err(Error::internal("validation"));
    };
    let new = NewTube {
        barcode,
        field: "barcode",
        pool_size,
        priority,
        purpose,
        team,
        site_id: input.site_id,
        round_id: input.round_id,
        trip_id: input.trip_id,
        jurisdiction,
    };
    let id = open_in_tx(&mut tx, store, who, &policy, &new, &input.members, now).await?;
    store.audited(who, open_audit(id, &new, &policy, input.members.len(), now), tx).await?;
    get_tube(store, who, id).await
}

/// A tube about to be opened, checked.
struct NewTube {
    barcode: String,
    /// The input field that carried the barcode (a reused one is refused there).
    field: &'static str,
    pool_size: u32,
    priority: Priority,
    purpose: Purpose,
    team: Uuid,
    site_id: Option<Uuid>,
    round_id: Option<Uuid>,
    trip_id: Option<Uuid>,
    jurisdiction: String,
}

/// Insert an open tube and put its first persons in, inside the caller's transaction.
async fn open_in_tx(
    tx: &mut Tx,
    store: &Store,
    who: &Principal,
    policy: &PolicyVersion,
    n: &NewTube,
    members: &[MemberInput],
    now: DateTime<Utc>,
) -> Result<Uuid, Error> {
    // A reused barcode is refused by the unique index (mapped below): no look-up first.
    let id = Uuid::now_v7();
    let due = t::result_due(&policy.params.testing, now, n.pool_size, n.priority, n.purpose);
    tx.execute(q!(
        "INSERT INTO tubes (id, barcode, pool_size, members, priority, purpose, state, team_id, site_id, round_id, trip_id, sampled_at, due_at, watch_at,
                            jurisdiction, policy_version, created_by, updated_at)
         VALUES ($1, $2, $3, 0, $4, $5, 'open', $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $10)",
        id,
        n.barcode.clone(),
        i64::from(n.pool_size),
        n.priority.as_str(),
        n.purpose.as_str(),
        n.team,
        n.site_id,
        n.round_id,
        n.trip_id,
        now,
        due,
        n.jurisdiction.clone(),
        policy.version,
        who.name.clone()
    ))
    .await
    .map_err(|e| match e {
        Error::Conflict { code: "already_exists", .. } => Error::field(n.field, "barcode_reused", "该条码已被使用", "this barcode is already used"),
        e => e,
    })?;
    let row = TubeRow {
        id,
        barcode: n.barcode.clone(),
        tube: Tube::open(n.pool_size),
        priority: n.priority,
        purpose: n.purpose,
        team_id: n.team,
        trip_id: n.trip_id,
        lab_id: None,
        cts: Cts::default(),
        jurisdiction: n.jurisdiction.clone(),
    };
    if !members.is_empty() {
        add_in_tx(tx, store, who, &row, members, now).await?;
    }
    Ok(id)
}

fn open_audit<'a>(id: Uuid, n: &'a NewTube, policy: &PolicyVersion, members: usize, now: DateTime<Utc>) -> audit::Entry<'a> {
    let due = t::result_due(&policy.params.testing, now, n.pool_size, n.priority, n.purpose);
    let detail = serde_json::json!({"barcode": n.barcode, "pool_size": n.pool_size, "priority": n.priority.as_str(), "purpose": n.purpose.as_str(),
                                    "due_at": due, "members": members, "policy_version": policy.version, "trip": n.trip_id});
    audit::Entry { action: "testing.tube.open", object_type: "tube", object_id: id.to_string(), jurisdiction: &n.jurisdiction, detail }
}

/// The landing test a checkpoint takes at check-in (落地核酸), registered in the check-in's own
/// transaction so that the lab finds it by its barcode: a single tube, expedited, tied to the
/// trip, with the driver in it (full, so sealed and ready to ship). The barcode is the check-in's
/// `landing_tube` field. Returns the tube's id.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn open_landing(
    tx: &mut Tx,
    store: &Store,
    who: &Principal,
    policy: &PolicyVersion,
    barcode: &str,
    trip: Uuid,
    driver: MemberInput,
    now: DateTime<Utc>,
) -> Result<Uuid, Error> {
    let team = actor_unit(who)?;
    let (_, jurisdiction, _) = unit_row(tx, team).await?.ok_or(Error::Forbidden)?;
    let new = NewTube {
        barcode: barcode.to_string(),
        field: "landing_tube",
        pool_size: 1,
        priority: Priority::Expedited,
        purpose: Purpose::Landing,
        team,
        site_id: None,
        round_id: None,
        trip_id: Some(trip),
        jurisdiction,
    };
    let id = open_in_tx(tx, store, who, policy, &new, &[driver], now).await?;
    audit::append(tx, &store.vault, now, who, open_audit(id, &new, policy, 1, now)).await?;
    Ok(id)
}

/// Scan or type persons into an open tube; a full tube seals itself.
pub async fn add_members(store: &Store, who: &Principal, id: Uuid, members: &[MemberInput]) -> Result<TubeView, Error> {
    who.require(Permission::TestingSample)?;
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let row = tube_by_id(&mut tx, id).await?.ok_or(Error::NotFound("tube"))?;
    require_team(who, &row)?;
    let next = add_in_tx(&mut tx, store, who, &row, members, now).await?;
    let detail = serde_json::json!({"barcode": row.barcode, "added": members.len(), "members": next.members, "state": next.state.as_str()});
    store
        .audited(
            who,
            audit::Entry { action: "testing.tube.add", object_type: "tube", object_id: id.to_string(), jurisdiction: &row.jurisdiction, detail },
            tx,
        )
        .await?;
    get_tube(store, who, id).await
}

/// Close a tube that is not full (the queue ran out).
pub async fn seal(store: &Store, who: &Principal, id: Uuid) -> Result<TubeView, Error> {
    who.require(Permission::TestingSample)?;
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let row = tube_by_id(&mut tx, id).await?.ok_or(Error::NotFound("tube"))?;
    require_team(who, &row)?;
    let next = row.tube.apply(Event::Seal)?;
    tx.execute(q!("UPDATE tubes SET state = $2, sealed_at = $3, updated_at = $3 WHERE id = $1", id, next.state.as_str(), now)).await?;
    let detail = serde_json::json!({"barcode": row.barcode, "members": next.members});
    store
        .audited(
            who,
            audit::Entry { action: "testing.tube.seal", object_type: "tube", object_id: id.to_string(), jurisdiction: &row.jurisdiction, detail },
            tx,
        )
        .await?;
    get_tube(store, who, id).await
}

/// The tube if the caller may see it: inside their division scope, or their unit sampled or tests it.
/// Which tube: by id, or by barcode. Two statements, not one with `$n IS NULL OR …`, which
/// SQLite cannot answer from an index (it scanned every tube).
enum TubeKey {
    Id(Uuid),
    Barcode(String),
}

macro_rules! visible_tube_sql {
    ($key:literal) => {
        concat!(
            "SELECT t.*, u.name AS team_name FROM tubes t JOIN units u ON u.id = t.team_id WHERE ",
            $key,
            " AND ((t.jurisdiction >= $1 AND t.jurisdiction < $2) OR t.team_id = $3 OR t.lab_id = $3 OR t.team_id = $5 OR t.lab_id = $5)"
        )
    };
}

fn visible_tube(who: &Principal, key: TubeKey) -> crate::db::Q {
    let (lo, hi, unit) = scope_args(&who.scope);
    match key {
        TubeKey::Id(id) => q!(visible_tube_sql!("t.id = $4"), lo, hi, unit, id, who.unit_id),
        TubeKey::Barcode(b) => q!(visible_tube_sql!("t.barcode = $4"), lo, hi, unit, b, who.unit_id),
    }
}

async fn view(store: &Store, r: &Row) -> Result<TubeView, Error> {
    let row = tube_row(r)?;
    let now = store.now();
    let members = store
        .db
        .fetch_all(q!(
            "SELECT m.person_id, m.seq, p.name, p.document_masked, pr.status FROM tube_members m JOIN persons p ON p.id = m.person_id
             LEFT JOIN person_results pr ON pr.person_id = m.person_id WHERE m.tube_id = $1 ORDER BY m.seq",
            row.id
        ))
        .await?;
    let member_list = members
        .iter()
        .map(|m| {
            let st: Option<String> = m.get("status")?;
            Ok(MemberView {
                person_id: m.get("person_id")?,
                seq: m.get("seq")?,
                name: m.get("name")?,
                document_masked: m.get("document_masked")?,
                status: st.as_deref().and_then(PersonStatus::parse),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let results = store
        .db
        .fetch_all(q!(
            "SELECT id, outcome, ct_centi, ct_orf1ab_centi, ct_n_centi, source, tested_at, recorded_at, recorded_by, supersedes FROM tube_results WHERE tube_id = $1 ORDER BY recorded_at, id",
            row.id
        ))
        .await?
        .iter()
        .map(|x| {
            Ok(ResultRecord {
                id: x.get("id")?,
                outcome: enum_col(x, "outcome", Outcome::parse)?,
                ct: ct_of(x.get("ct_centi")?),
                ct_orf1ab: ct_of(x.get("ct_orf1ab_centi")?),
                ct_n: ct_of(x.get("ct_n_centi")?),
                source: x.get("source")?,
                tested_at: x.get("tested_at")?,
                recorded_at: x.get("recorded_at")?,
                recorded_by: x.get("recorded_by")?,
                supersedes: x.get("supersedes")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let due_at: DateTime<Utc> = r.get("due_at")?;
    Ok(TubeView {
        id: row.id,
        barcode: row.barcode,
        pool_size: row.tube.pool_size,
        members: row.tube.members,
        priority: row.priority,
        purpose: row.purpose,
        state: row.tube.state,
        team_id: row.team_id,
        team_name: r.get("team_name")?,
        site_id: r.get("site_id")?,
        round_id: r.get("round_id")?,
        trip_id: row.trip_id,
        batch_id: r.get("batch_id")?,
        lab_id: row.lab_id,
        sampled_at: r.get("sampled_at")?,
        sealed_at: r.get("sealed_at")?,
        shipped_at: r.get("shipped_at")?,
        received_at: r.get("received_at")?,
        due_at,
        overdue: row.tube.outcome.is_none() && due_at < now,
        outcome: row.tube.outcome,
        ct: ct_of(row.cts.ct),
        ct_orf1ab: ct_of(row.cts.orf1ab),
        ct_n: ct_of(row.cts.n),
        resulted_at: r.get("resulted_at")?,
        jurisdiction: row.jurisdiction,
        policy_version: r.get("policy_version")?,
        member_list,
        results,
    })
}

pub async fn get_tube(store: &Store, who: &Principal, id: Uuid) -> Result<TubeView, Error> {
    who.require(Permission::TestingRead)?;
    let r = store.db.fetch_optional(visible_tube(who, TubeKey::Id(id))).await?.ok_or(Error::NotFound("tube"))?;
    view(store, &r).await
}

pub async fn find_tube(store: &Store, who: &Principal, barcode: &str) -> Result<TubeView, Error> {
    who.require(Permission::TestingRead)?;
    let b = t::parse_barcode("barcode", barcode).map_err(|e| Error::Invalid(vec![e]))?;
    let r = store.db.fetch_optional(visible_tube(who, TubeKey::Barcode(b))).await?.ok_or(Error::NotFound("tube"))?;
    view(store, &r).await
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TubeFilter {
    pub state: Option<String>,
    /// Only tubes of the caller's unit (its samples, or the lab's tubes).
    pub mine: Option<bool>,
    pub overdue: Option<bool>,
    pub batch_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TubeSummary {
    pub id: Uuid,
    pub barcode: String,
    pub pool_size: i64,
    pub members: i64,
    pub priority: String,
    pub purpose: String,
    pub state: String,
    pub team_name: String,
    pub sampled_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub outcome: Option<String>,
    pub resulted_at: Option<DateTime<Utc>>,
}

/// A page of tubes, newest sample first.
pub async fn list_tubes(store: &Store, who: &Principal, f: &TubeFilter, page: &PageQuery) -> Result<Paged<TubeSummary>, Error> {
    who.require(Permission::TestingRead)?;
    let page = Page::<(DateTime<Utc>, Uuid)>::read("tubes", page)?;
    let (at, id) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let mine = if f.mine == Some(true) { who.unit_id } else { None };
    let overdue_before = if f.overdue == Some(true) { Some(store.now()) } else { None };
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT t.id, t.barcode, t.pool_size, t.members, t.priority, t.purpose, t.state, u.name AS team_name, t.sampled_at, t.due_at, t.outcome, t.resulted_at
             FROM tubes t JOIN units u ON u.id = t.team_id
             WHERE ((t.jurisdiction >= $1 AND t.jurisdiction < $2) OR t.team_id = $3 OR t.lab_id = $3 OR t.team_id = $4 OR t.lab_id = $4)
               AND ($5 IS NULL OR t.state = $5) AND ($6 IS NULL OR t.team_id = $6 OR t.lab_id = $6)
               AND ($7 IS NULL OR (t.outcome IS NULL AND t.due_at < $7)) AND ($8 IS NULL OR t.batch_id = $8)
               AND ($9 IS NULL OR (t.sampled_at, t.id) < ($9, $10))
             ORDER BY t.sampled_at DESC, t.id DESC LIMIT $11",
            lo,
            hi,
            unit,
            who.unit_id,
            f.state.clone().filter(|s| !s.is_empty()),
            mine,
            overdue_before,
            f.batch_id,
            at,
            id,
            page.fetch()
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(TubeSummary {
                id: r.get("id")?,
                barcode: r.get("barcode")?,
                pool_size: r.get("pool_size")?,
                members: r.get("members")?,
                priority: r.get("priority")?,
                purpose: r.get("purpose")?,
                state: r.get("state")?,
                team_name: r.get("team_name")?,
                sampled_at: r.get("sampled_at")?,
                due_at: r.get("due_at")?,
                outcome: r.get("outcome")?,
                resulted_at: r.get("resulted_at")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |t| (t.sampled_at, t.id)))
}

// ---------- batches: the handoff to a lab ----------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    pub lab_id: Uuid,
    pub barcodes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptInput {
    /// Every barcode the lab found in the box.
    pub barcodes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchView {
    pub id: Uuid,
    pub code: String,
    pub team_id: Uuid,
    pub team_name: String,
    pub lab_id: Uuid,
    pub lab_name: String,
    pub state: String,
    pub tubes: i64,
    pub handed_at: DateTime<Utc>,
    pub accept_by: DateTime<Utc>,
    pub received_at: Option<DateTime<Utc>>,
    pub received_by: Option<String>,
    /// Shipped in this batch but not found by the lab.
    pub missing: Vec<String>,
    /// Found by the lab but not shipped in this batch.
    pub extra: Vec<String>,
    pub barcodes: Vec<String>,
}

fn barcodes(field: &str, list: &[String], c: &mut Check) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, b) in list.iter().enumerate() {
        if let Some(b) = c.take(t::parse_barcode(&format!("{field}[{i}]"), b)) {
            if !seen.insert(b.clone()) {
                c.0.push(FieldError::new(format!("{field}[{i}]"), "duplicate", "条码重复", "the barcode is listed twice"));
            }
            out.push(b);
        }
    }
    out
}

/// Pack sealed tubes into a batch and hand it to a lab; the lab must accept it by receiving it.
pub async fn ship(store: &Store, who: &Principal, input: &BatchInput) -> Result<BatchView, Error> {
    who.require(Permission::TestingSample)?;
    let team = actor_unit(who)?;
    let policy = policy_now(store).await?;
    let mut c = Check::default();
    if input.barcodes.is_empty() {
        c.0.push(FieldError::required("barcodes"));
    }
    if input.barcodes.len() > 5000 {
        c.0.push(FieldError::new("barcodes", "too_many", "一批最多 5000 管", "at most 5000 tubes per batch"));
    }
    let list = barcodes("barcodes", &input.barcodes, &mut c);
    let now = store.now();
    let mut tx = store.db.begin().await?;
    match unit_row(&mut tx, input.lab_id).await? {
        Some((kind, ..)) if kind == "lab" => {}
        _ => c.0.push(FieldError::new("lab_id", "not_a_lab", "接收单位不是检测机构", "the receiving unit is not a lab")),
    }
    let mut rows = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let f = format!("barcodes[{i}]");
        match tube_by_barcode(&mut tx, b).await? {
            None => c.0.push(FieldError::new(f, "tube_unknown", "条码未登记", "no tube has this barcode")),
            Some(r) if r.team_id != team => c.0.push(FieldError::new(f, "tube_unknown", "条码未登记", "no tube has this barcode")),
            Some(r) => match r.tube.apply(Event::Ship) {
                Ok(_) => rows.push(r),
                Err(e) => c.0.push(FieldError::new(f, e.code(), e.zh(), e.en())),
            },
        }
    }
    c.done()?;
    let (_, jurisdiction, _) = unit_row(&mut tx, team).await?.ok_or(Error::Forbidden)?;
    let id = Uuid::now_v7();
    // Readable on a label: the hand-over second, then the id's random tail, so that teams
    // shipping in the same instant still get different codes.
    let tail = id.simple().to_string();
    let code = format!("B{}-{}", now.format("%Y%m%d%H%M%S"), tail[tail.len() - 6..].to_ascii_uppercase());
    let accept_by = now + Duration::minutes(i64::from(policy.params.testing.batch_accept_minutes));
    tx.execute(q!(
        "INSERT INTO test_batches (id, code, team_id, lab_id, state, tubes, handed_at, accept_by, jurisdiction) VALUES ($1, $2, $3, $4, 'handed', $5, $6, $7, $8)",
        id,
        code.clone(),
        team,
        input.lab_id,
        rows.len() as i64,
        now,
        accept_by,
        jurisdiction.clone()
    ))
    .await?;
    for r in &rows {
        tx.execute(q!(
            "UPDATE tubes SET state = 'shipped', batch_id = $2, lab_id = $3, shipped_at = $4, updated_at = $4 WHERE id = $1",
            r.id,
            id,
            input.lab_id,
            now
        ))
        .await?;
    }
    let detail = serde_json::json!({"code": code, "lab": input.lab_id, "tubes": rows.len(), "accept_by": accept_by});
    store
        .audited(
            who,
            audit::Entry { action: "testing.batch.hand", object_type: "batch", object_id: id.to_string(), jurisdiction: &jurisdiction, detail },
            tx,
        )
        .await?;
    get_batch(store, who, id).await
}

/// The lab accepts a batch by listing what it found: shipped tubes not found are flagged
/// missing (and alerted to the team), barcodes found but not shipped are flagged extra.
pub async fn receive(store: &Store, who: &Principal, id: Uuid, input: &ReceiptInput) -> Result<BatchView, Error> {
    who.require(Permission::TestingResult)?;
    let lab = actor_unit(who)?;
    let policy = policy_now(store).await?;
    let mut c = Check::default();
    let found = barcodes("barcodes", &input.barcodes, &mut c);
    c.done()?;
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let b = tx
        .fetch_optional(q!("SELECT lab_id, state, jurisdiction, code FROM test_batches WHERE id = $1", id))
        .await?
        .ok_or(Error::NotFound("batch"))?;
    if b.get::<Uuid>("lab_id")? != lab {
        return Err(Error::NotFound("batch"));
    }
    if b.get::<String>("state")? != "handed" {
        return Err(Error::conflict("batch_received", "该批次已接收", "the batch is already received"));
    }
    let jurisdiction: String = b.get("jurisdiction")?;
    let shipped = tx.fetch_all(q!("SELECT id, barcode, team_id, jurisdiction FROM tubes WHERE batch_id = $1 ORDER BY barcode", id)).await?;
    let found_set: HashSet<&String> = found.iter().collect();
    let mut shipped_set = HashSet::new();
    let mut missing = Vec::new();
    let rung1 = testing_task_force(&mut tx, Some(lab)).await?;
    for r in &shipped {
        let barcode: String = r.get("barcode")?;
        let tube: Uuid = r.get("id")?;
        if found_set.contains(&barcode) {
            tx.execute(q!("UPDATE tubes SET state = 'received', received_at = $2, updated_at = $2 WHERE id = $1 AND state = 'shipped'", tube, now))
                .await?;
        } else {
            tx.execute(q!("UPDATE tubes SET state = 'missing', watch_at = NULL, updated_at = $2 WHERE id = $1 AND state = 'shipped'", tube, now))
                .await?;
            let tj: String = r.get("jurisdiction")?;
            alerts::raise(
                &mut tx,
                store,
                &policy.params,
                now,
                &alerts::NewAlert {
                    subject_kind: "tube",
                    subject_id: tube,
                    subject: &barcode,
                    trip_id: None,
                    kind: "tube_missing",
                    due_at: now,
                    custodian: r.get("team_id")?,
                    level: 0,
                    rung1,
                    emergency: false,
                    jurisdiction: &tj,
                    policy_version: policy.version,
                    detail: serde_json::json!({"barcode": barcode, "batch": id}),
                },
            )
            .await?;
            missing.push(barcode.clone());
        }
        shipped_set.insert(barcode);
    }
    let extra: Vec<&String> = found.iter().filter(|b| !shipped_set.contains(*b)).collect();
    tx.execute(q!(
        "UPDATE test_batches SET state = 'received', received_at = $2, received_by = $3, missing = $4, extra = $5 WHERE id = $1",
        id,
        now,
        who.name.clone(),
        serde_json::to_string(&missing).map_err(Error::internal)?,
        serde_json::to_string(&extra).map_err(Error::internal)?
    ))
    .await?;
    let detail = serde_json::json!({"received": shipped.len() - missing.len(), "missing": missing, "extra": extra});
    store
        .audited(
            who,
            audit::Entry { action: "testing.batch.receive", object_type: "batch", object_id: id.to_string(), jurisdiction: &jurisdiction, detail },
            tx,
        )
        .await?;
    get_batch(store, who, id).await
}

pub async fn get_batch(store: &Store, who: &Principal, id: Uuid) -> Result<BatchView, Error> {
    who.require(Permission::TestingRead)?;
    let first = Page::read("batches", &PageQuery::default())?;
    list_batches_q(store, who, Some(id), None, &first).await?.into_iter().next().ok_or(Error::NotFound("batch"))
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchFilter {
    pub state: Option<String>,
}

/// A page of batches, newest first.
pub async fn list_batches(store: &Store, who: &Principal, f: &BatchFilter, page: &PageQuery) -> Result<Paged<BatchView>, Error> {
    who.require(Permission::TestingRead)?;
    let page = Page::read("batches", page)?;
    let list = list_batches_q(store, who, None, f.state.clone().filter(|s| !s.is_empty()), &page).await?;
    Ok(page.finish(list, |b| (b.handed_at, b.id)))
}

async fn list_batches_q(
    store: &Store,
    who: &Principal,
    id: Option<Uuid>,
    state: Option<String>,
    page: &Page<(DateTime<Utc>, Uuid)>,
) -> Result<Vec<BatchView>, Error> {
    let (lo, hi, unit) = scope_args(&who.scope);
    let (at, after) = page.parts();
    macro_rules! batches_sql {
        ($key:literal) => {
            concat!(
                "SELECT b.*, tu.name AS team_name, lu.name AS lab_name FROM test_batches b JOIN units tu ON tu.id = b.team_id JOIN units lu ON lu.id = b.lab_id WHERE ",
                $key,
                " AND ((b.jurisdiction >= $1 AND b.jurisdiction < $2) OR b.team_id = $3 OR b.lab_id = $3 OR b.team_id = $5 OR b.lab_id = $5)
                   AND ($6 IS NULL OR (b.handed_at, b.id) < ($6, $7))
                 ORDER BY b.handed_at DESC, b.id DESC LIMIT $8"
            )
        };
    }
    // One batch by its key (an index look-up), or the list filtered by state.
    let q = match id {
        Some(id) => q!(batches_sql!("b.id = $4"), lo, hi, unit, id, who.unit_id, at, after, page.fetch()),
        None => q!(batches_sql!("($4 IS NULL OR b.state = $4)"), lo, hi, unit, state, who.unit_id, at, after, page.fetch()),
    };
    let rows = store.db.fetch_all(q).await?;
    let mut out = Vec::new();
    for r in &rows {
        let id: Uuid = r.get("id")?;
        let codes = store.db.fetch_all(q!("SELECT barcode FROM tubes WHERE batch_id = $1 ORDER BY barcode", id)).await?;
        let missing: String = r.get("missing")?;
        let extra: String = r.get("extra")?;
        out.push(BatchView {
            id,
            code: r.get("code")?,
            team_id: r.get("team_id")?,
            team_name: r.get("team_name")?,
            lab_id: r.get("lab_id")?,
            lab_name: r.get("lab_name")?,
            state: r.get("state")?,
            tubes: r.get("tubes")?,
            handed_at: r.get("handed_at")?,
            accept_by: r.get("accept_by")?,
            received_at: r.get("received_at")?,
            received_by: r.get("received_by")?,
            missing: serde_json::from_str(&missing).map_err(Error::internal)?,
            extra: serde_json::from_str(&extra).map_err(Error::internal)?,
            barcodes: codes.iter().map(|c| c.get("barcode")).collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

// ---------- results ----------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultInput {
    pub barcode: String,
    /// `negative`, `positive`, `invalid` or `suspect` (阴性 / 阳性 / 无效 / 可疑 are read too).
    pub result: String,
    /// The tube's Ct value; a negative usually has none.
    #[serde(default)]
    pub ct: Option<f64>,
    /// The ORF1ab gene's Ct value, when the lab reports the genes apart.
    #[serde(default)]
    pub ct_orf1ab: Option<f64>,
    /// The N gene's Ct value.
    #[serde(default)]
    pub ct_n: Option<f64>,
    /// When the lab tested it (default: now).
    #[serde(default)]
    pub tested_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsInput {
    pub results: Vec<ResultInput>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ResultReport {
    pub rows: usize,
    /// First results.
    pub applied: usize,
    /// The same result sent again: nothing changed.
    pub unchanged: usize,
    /// A changed result, kept as a correction beside the original.
    pub corrected: usize,
    /// Tubes whose (new) result is positive.
    pub positive: Vec<String>,
    /// Tubes whose (new) result is suspect: their members are re-tested.
    pub suspect: Vec<String>,
    /// Persons put on pending re-check by positive pools and suspect tubes.
    pub pending_recheck: usize,
}

/// A checked result row.
pub struct CheckedResult {
    pub barcode: String,
    pub outcome: Outcome,
    pub cts: Cts,
    pub tested_at: Option<DateTime<Utc>>,
}

/// Check one row; errors are named `rows[n].<field>`.
pub fn check_result(n: usize, r: &ResultInput, now: DateTime<Utc>) -> Result<CheckedResult, Vec<FieldError>> {
    let mut c = Check::default();
    let f = |x: &str| format!("rows[{n}].{x}");
    let barcode = c.take(t::parse_barcode(&f("barcode"), &r.barcode));
    let outcome = if r.result.trim().is_empty() {
        c.0.push(FieldError::required(f("result")));
        None
    } else {
        c.take(Outcome::parse_loose(&r.result).ok_or_else(|| {
            FieldError::new(
                f("result"),
                "result_unknown",
                "结果应为阴性、阳性、无效或可疑(negative/positive/invalid/suspect)",
                "the result is negative, positive, invalid or suspect",
            )
        }))
    };
    let mut centi = |name: &str, v: Option<f64>| match v {
        None => Some(None),
        Some(x) if x.is_finite() && (0.0..=50.0).contains(&x) => Some(Some((x * 100.0).round() as i64)),
        Some(_) => {
            c.0.push(FieldError::new(f(name), "ct_out_of_range", "Ct 值应在 0 到 50 之间", "a Ct value is between 0 and 50"));
            None
        }
    };
    let (ct, orf1ab, n) = (centi("ct", r.ct), centi("ct_orf1ab", r.ct_orf1ab), centi("ct_n", r.ct_n));
    let cts = match (ct, orf1ab, n) {
        (Some(ct), Some(orf1ab), Some(n)) => Some(Cts { ct: ct.or_else(|| orf1ab.into_iter().chain(n).min()), orf1ab, n }),
        _ => None,
    };
    if r.tested_at.is_some_and(|x| x > now + Duration::minutes(5)) {
        c.0.push(FieldError::new(f("tested_at"), "in_future", "检测时间不能晚于现在", "the test time cannot be in the future"));
    }
    match (barcode, outcome, cts, c.0.is_empty()) {
        (Some(barcode), Some(outcome), Some(cts), true) => Ok(CheckedResult { barcode, outcome, cts, tested_at: r.tested_at }),
        _ => Err(c.0),
    }
}

/// Post results from the caller's lab (API or file): every row checked first, then applied in
/// one transaction; any bad row and nothing is written. The same result twice changes nothing;
/// a changed one is kept as a correction with the original preserved.
pub async fn post_results(store: &Store, who: &Principal, rows: &[ResultInput], source: &str) -> Result<ResultReport, Error> {
    who.require(Permission::TestingResult)?;
    let now = store.now();
    if rows.is_empty() {
        return Err(Error::field("results", "required", "没有结果", "no results"));
    }
    if rows.len() > MAX_RESULTS {
        return Err(Error::field("results", "too_many", format!("一次最多 {MAX_RESULTS} 条"), format!("at most {MAX_RESULTS} rows at once")));
    }
    let mut errs = RowErrors::default();
    let mut checked = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        match check_result(i, r, now) {
            Ok(c) => checked.push((i, c)),
            Err(e) => errs.extend(i, e),
        }
    }
    apply_results(store, who, &checked, source, errs).await
}

/// Apply checked rows (numbered as the caller shows them, in order); `errs` holds the rows' own
/// errors so far, and every tube-level error is added before anything is kept.
pub async fn apply_results(
    store: &Store,
    who: &Principal,
    rows: &[(usize, CheckedResult)],
    source: &str,
    mut errs: RowErrors,
) -> Result<ResultReport, Error> {
    who.require(Permission::TestingResult)?;
    let lab = actor_unit(who)?;
    let now = store.now();
    let policy = policy_now(store).await?;
    // Each pass over the rows keeps its own first errors by row (see `RowErrors::merge`).
    let mut dups = RowErrors::default();
    let mut seen = HashSet::new();
    for (n, r) in rows {
        if !seen.insert(r.barcode.as_str()) {
            dups.push(*n, FieldError::new(format!("rows[{n}].barcode"), "duplicate", "同一条码出现多次", "the barcode appears more than once"));
        }
    }
    drop(seen);
    errs.merge(dups);
    let mut tube_errs = RowErrors::default();
    let mut rep = ResultReport { rows: rows.len(), ..Default::default() };
    // A lab file's thousands of rows: a transaction of its own, not a savepoint (see `Writer::begin_alone`).
    let mut tx = if rows.len() > FLUSH_ROWS { store.db.begin_alone(crate::Durability::Durable).await? } else { store.db.begin().await? };
    let mut effects = Effects::new(&mut tx, Some(lab)).await?;
    // A lab file is up to 200,000 rows: tubes are read a chunk at a time; results, their tubes
    // and the common result's (a first negative's) persons and orders are written a few hundred
    // at a time, several rows a statement.
    for chunk in rows.chunks(CHUNK) {
        let found = tubes_by_barcodes(&mut tx, chunk.iter().map(|(_, r)| r.barcode.clone()).collect()).await?;
        for (n, r) in chunk {
            let clean = errs.is_empty() && tube_errs.is_empty();
            apply_row(&mut tx, store, who, &policy, &mut effects, &found, (*n, r), lab, source, now, &mut rep, &mut tube_errs, clean).await?;
        }
        if effects.pending() >= FLUSH_ROWS {
            effects.flush(&mut tx, now).await?;
        }
    }
    if errs.is_empty() && tube_errs.is_empty() {
        effects.flush(&mut tx, now).await?;
    }
    errs.merge(tube_errs);
    errs.finish()?;
    let sample: Vec<&str> = rows.iter().take(20).map(|(_, r)| r.barcode.as_str()).collect();
    let detail = serde_json::json!({"source": source, "rows": rep.rows, "applied": rep.applied, "unchanged": rep.unchanged, "corrected": rep.corrected,
                                    "positive": rep.positive, "first": sample});
    let (home, _) = who.home();
    store
        .audited(who, audit::Entry { action: "testing.results", object_type: "lab", object_id: lab.to_string(), jurisdiction: &home, detail }, tx)
        .await?;
    Ok(rep)
}

/// Barcodes looked up per statement (the same text for both databases; unused slots repeat the first).
const CHUNK: usize = 32;

/// The tubes holding these barcodes (at most `CHUNK`), by barcode.
async fn tubes_by_barcodes(tx: &mut Tx, mut barcodes: Vec<String>) -> Result<HashMap<String, TubeRow>, Error> {
    let Some(first) = barcodes.first().cloned() else { return Ok(HashMap::new()) };
    barcodes.resize(CHUNK, first);
    let mut q = q!(
        "SELECT id, barcode, pool_size, members, state, outcome, priority, purpose, team_id, trip_id, lab_id, ct_centi, ct_orf1ab_centi, ct_n_centi, jurisdiction FROM tubes
         WHERE barcode IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
    );
    q.args = barcodes.into_iter().map(crate::db::Val::from).collect();
    tx.fetch_all(q).await?.iter().map(|r| tube_row(r).map(|t| (t.barcode.clone(), t))).collect()
}

/// Check one result row against its tube and, while nothing is wrong, write it.
#[allow(clippy::too_many_arguments)]
async fn apply_row(
    tx: &mut Tx,
    store: &Store,
    who: &Principal,
    policy: &PolicyVersion,
    effects: &mut Effects,
    found: &HashMap<String, TubeRow>,
    (n, r): (usize, &CheckedResult),
    lab: Uuid,
    source: &str,
    now: DateTime<Utc>,
    rep: &mut ResultReport,
    errs: &mut RowErrors,
    clean: bool,
) -> Result<(), Error> {
    // Another lab's tube, or one not shipped yet, is as unknown to this lab as a barcode nobody
    // registered: one answer, so that a lab cannot probe for tubes it was never sent.
    let f = format!("rows[{n}].barcode");
    let Some(row) = found.get(&r.barcode).filter(|row| row.lab_id == Some(lab)) else {
        errs.push(n, FieldError::new(f, "tube_unknown", "条码未登记或未送检到本机构", "no tube with this barcode was shipped to your lab"));
        return Ok(());
    };
    if row.tube.outcome == Some(r.outcome) && row.cts == r.cts {
        rep.unchanged += 1;
        return Ok(());
    }
    let next = match row.tube.apply(Event::Result(r.outcome)) {
        Ok(n) => n,
        Err(e) => {
            errs.push(n, FieldError::new(f, e.code(), e.zh(), e.en()));
            return Ok(());
        }
    };
    if !clean {
        // Something is already wrong: keep checking, write nothing more.
        return Ok(());
    }
    // Only a tube with an outcome has results to supersede.
    let prev = match row.tube.outcome {
        None => None,
        Some(_) => tx
            .fetch_optional(q!("SELECT id FROM tube_results WHERE tube_id = $1 ORDER BY recorded_at DESC, id DESC LIMIT 1", row.id))
            .await?
            .map(|x| x.get::<Uuid>("id"))
            .transpose()?,
    };
    effects.result(
        vec![
            Uuid::now_v7().into(),
            row.id.into(),
            r.outcome.as_str().into(),
            r.cts.ct.into(),
            r.cts.orf1ab.into(),
            r.cts.n.into(),
            lab.into(),
            source.into(),
            r.tested_at.unwrap_or(now).into(),
            now.into(),
            who.name.as_str().into(),
            prev.into(),
        ],
        vec![row.id.into(), next.state.as_str().into(), r.outcome.as_str().into(), r.cts.ct.into(), r.cts.orf1ab.into(), r.cts.n.into(), now.into()],
    );
    if prev.is_some() {
        rep.corrected += 1;
    } else {
        rep.applied += 1;
    }
    match r.outcome {
        Outcome::Positive => rep.positive.push(row.barcode.clone()),
        Outcome::Suspect => rep.suspect.push(row.barcode.clone()),
        _ => {}
    }
    rep.pending_recheck += effects.apply(tx, store, policy, row, row.tube.outcome, r.outcome, now).await?;
    Ok(())
}

/// The testing task force: rung 1 of a tube's ladder. The lab's own supervising unit when it is
/// a task force; otherwise the county's testing task force.
async fn testing_task_force(tx: &mut Tx, lab: Option<Uuid>) -> Result<Option<Uuid>, Error> {
    if let Some(lab) = lab
        && let Some(r) = tx
            .fetch_optional(q!(
                "SELECT s.id FROM units l JOIN units s ON s.id = l.supervisor_id WHERE l.id = $1 AND s.kind = 'task_force' AND s.active = TRUE",
                lab
            ))
            .await?
    {
        return Ok(Some(r.get("id")?));
    }
    tx.fetch_optional(q!(
        "SELECT id FROM units WHERE kind = 'task_force' AND active = TRUE AND (name LIKE '%检测%' OR name LIKE '%esting%') ORDER BY created_at LIMIT 1"
    ))
    .await?
    .map(|r| r.get("id"))
    .transpose()
}

/// Result rows and tube updates per multi-row statement (PostgreSQL; SQLite writes row by row).
const RESULT_ROWS: usize = 10;
/// Results kept back before they are written (a lab file's are written a few hundred at a time).
const FLUSH_ROWS: usize = 500;
const RESULTS_HEAD: &str = "INSERT INTO tube_results (id, tube_id, outcome, ct_centi, ct_orf1ab_centi, ct_n_centi, lab_id, source, tested_at,
    recorded_at, recorded_by, supersedes)";
static SQL_RESULTS: LazyLock<&'static str> = LazyLock::new(|| crate::person_codes::values(RESULTS_HEAD, 12, RESULT_ROWS, ""));
static SQL_RESULT: LazyLock<&'static str> = LazyLock::new(|| crate::person_codes::values(RESULTS_HEAD, 12, 1, ""));
/// A tube's result: (id, state, outcome, Ct, ORF1ab Ct, N Ct, now).
const SQL_TUBE_RESULTED: &str = "UPDATE tubes SET state = $2, outcome = $3, ct_centi = $4, ct_orf1ab_centi = $5, ct_n_centi = $6, resulted_at = $7,
    received_at = COALESCE(received_at, $7), watch_at = NULL, updated_at = $7 WHERE id = $1";
static SQL_TUBES_RESULTED: LazyLock<&'static str> = LazyLock::new(|| {
    let template = [(1, "::uuid"), (2, "::text"), (3, "::text"), (4, "::bigint"), (5, "::bigint"), (6, "::bigint"), (7, "::timestamptz")];
    crate::person_codes::leak(format!(
        "UPDATE tubes t SET state = v.state, outcome = v.outcome, ct_centi = v.ct, ct_orf1ab_centi = v.orf1ab, ct_n_centi = v.n, resulted_at = v.at,
                received_at = COALESCE(t.received_at, v.at), watch_at = NULL, updated_at = v.at
           FROM (VALUES {}) AS v (id, state, outcome, ct, orf1ab, n, at) WHERE t.id = v.id",
        crate::person_codes::value_rows(&template, template.len(), RESULT_ROWS)
    ))
});

/// What a result does beyond the tube: person statuses, re-test orders and alerts.
struct Effects {
    rung1: Option<Uuid>,
    /// Result rows and tube updates not yet written (see `flush`).
    results: Vec<Vec<Val>>,
    tubes: Vec<Vec<Val>>,
    /// Tubes whose first result is negative, not yet written through to persons and orders.
    negatives: Vec<Uuid>,
}

impl Effects {
    async fn new(tx: &mut Tx, lab: Option<Uuid>) -> Result<Self, Error> {
        Ok(Effects { rung1: testing_task_force(tx, lab).await?, results: Vec::new(), tubes: Vec::new(), negatives: Vec::new() })
    }

    /// Keep a tube's new result to be written with the others.
    fn result(&mut self, result: Vec<Val>, tube: Vec<Val>) {
        self.results.push(result);
        self.tubes.push(tube);
    }

    fn pending(&self) -> usize {
        self.results.len()
    }

    /// Write what is kept back: the results and their tubes, several a statement, then the first
    /// negatives' members (whose latest sample they are) turn negative and the re-test orders
    /// they met are resolved, `CHUNK` tubes per statement.
    async fn flush(&mut self, tx: &mut Tx, now: DateTime<Utc>) -> Result<(), Error> {
        tx.execute_rows(&SQL_RESULTS, RESULT_ROWS, &SQL_RESULT, &self.results).await?;
        tx.execute_rows(&SQL_TUBES_RESULTED, RESULT_ROWS, SQL_TUBE_RESULTED, &self.tubes).await?;
        self.results.clear();
        self.tubes.clear();
        for chunk in self.negatives.chunks(CHUNK) {
            let mut ids: Vec<crate::db::Val> = chunk.iter().map(|id| crate::db::Val::from(*id)).collect();
            ids.resize(CHUNK, crate::db::Val::from(chunk[0]));
            ids.push(crate::db::Val::from(now));
            let mut q = q!(
                "UPDATE person_results SET status = 'negative', resulted_at = $33, updated_at = $33
                 WHERE tube_id IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
            );
            q.args = ids.clone();
            tx.execute(q).await?;
            let mut q = q!(
                "UPDATE retest_orders SET resolved_at = $33 WHERE resolved_at IS NULL
                   AND tube_id IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
            );
            q.args = ids;
            tx.execute(q).await?;
        }
        self.negatives.clear();
        Ok(())
    }

    /// Returns how many persons went on pending re-check.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &mut self,
        tx: &mut Tx,
        store: &Store,
        policy: &PolicyVersion,
        row: &TubeRow,
        before: Option<Outcome>,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<usize, Error> {
        if before.is_none() && outcome == Outcome::Negative {
            self.negatives.push(row.id);
            return Ok(0);
        }
        // Anything else is applied in order, after the first negatives before it.
        self.flush(tx, now).await?;
        let status = t::member_status(row.tube.pool_size, outcome);
        // The members whose latest sample this tube is take its status at once.
        tx.execute(q!("UPDATE person_results SET status = $2, resulted_at = $3, updated_at = $3 WHERE tube_id = $1", row.id, status.as_str(), now))
            .await?;
        // Members sampled again since: recomputed from their history (rare: a late or corrected result).
        if before.is_some() || matches!(outcome, Outcome::Positive | Outcome::Suspect) {
            let others = tx
                .fetch_all(q!(
                    "SELECT m.person_id FROM tube_members m JOIN person_results pr ON pr.person_id = m.person_id WHERE m.tube_id = $1 AND pr.tube_id <> $1",
                    row.id
                ))
                .await?;
            for o in &others {
                refresh_person(tx, o.get("person_id")?, now).await?;
            }
        }
        let rules = &policy.params.testing;
        match outcome {
            Outcome::Invalid => {
                // The tube told nothing: its members are sampled again.
                tx.execute(q!("UPDATE retest_orders SET tube_id = NULL WHERE tube_id = $1 AND resolved_at IS NULL", row.id)).await?;
                let due = now + Duration::hours(i64::from(rules.single_deadline_hours));
                self.order(tx, row, "resample", due, now).await?;
                self.alert_team(tx, store, policy, row, "invalid_resample", now).await?;
            }
            _ => {
                tx.execute(q!("UPDATE retest_orders SET resolved_at = $2 WHERE tube_id = $1 AND resolved_at IS NULL", row.id, now)).await?;
            }
        }
        let retests = |o: Option<Outcome>| matches!(o, Some(Outcome::Positive | Outcome::Suspect));
        if retests(before) && !retests(Some(outcome)) {
            // A corrected positive or suspect: the re-tests it ordered are no longer owed.
            tx.execute(q!(
                "UPDATE retest_orders SET resolved_at = $2 WHERE source_tube_id = $1 AND resolved_at IS NULL AND kind = 'recheck'",
                row.id,
                now
            ))
            .await?;
        }
        if outcome == Outcome::Suspect && before != Some(Outcome::Suspect) {
            // The policy for a suspect tube (`testing::member_status`): its members are re-tested,
            // single tube, expedited, by the re-check deadline, as a positive pool's are.
            let due = now + Duration::hours(i64::from(t::result_hours(rules, 1, Priority::Expedited, Purpose::Recheck)));
            return self.order(tx, row, "recheck", due, now).await;
        }
        if outcome != Outcome::Positive || before == Some(Outcome::Positive) {
            return Ok(0);
        }
        let mut flagged = 0;
        if row.tube.is_pool() {
            let due = now + Duration::hours(i64::from(t::result_hours(rules, 1, Priority::Expedited, Purpose::Recheck)));
            flagged = self.order(tx, row, "recheck", due, now).await?;
        }
        self.alert_positive(tx, store, policy, row, now).await?;
        Ok(flagged)
    }

    async fn order(&self, tx: &mut Tx, row: &TubeRow, kind: &str, due: DateTime<Utc>, now: DateTime<Utc>) -> Result<usize, Error> {
        let members = tx
            .fetch_all(q!("SELECT m.person_id, p.jurisdiction FROM tube_members m JOIN persons p ON p.id = m.person_id WHERE m.tube_id = $1", row.id))
            .await?;
        let mut count = 0;
        for m in &members {
            count += tx
                .execute(q!(
                    "INSERT INTO retest_orders (id, person_id, source_tube_id, kind, ordered_at, due_at, jurisdiction) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (source_tube_id, person_id) DO NOTHING",
                    Uuid::now_v7(),
                    m.get::<Uuid>("person_id")?,
                    row.id,
                    kind,
                    now,
                    due,
                    m.get::<String>("jurisdiction")?
                ))
                .await?;
        }
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn alert_team(
        &self,
        tx: &mut Tx,
        store: &Store,
        policy: &PolicyVersion,
        row: &TubeRow,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        alerts::raise(
            tx,
            store,
            &policy.params,
            now,
            &alerts::NewAlert {
                subject_kind: "tube",
                subject_id: row.id,
                subject: &row.barcode,
                trip_id: None,
                kind,
                due_at: now,
                custodian: row.team_id,
                level: 0,
                rung1: self.rung1,
                emergency: false,
                jurisdiction: &row.jurisdiction,
                policy_version: policy.version,
                detail: serde_json::json!({"barcode": row.barcode}),
            },
        )
        .await?;
        Ok(())
    }

    /// A positive is an emergency: the members' townships (or units) and the command office are
    /// alerted at once; a landing test's trip gets its own alert to its custodian.
    async fn alert_positive(&self, tx: &mut Tx, store: &Store, policy: &PolicyVersion, row: &TubeRow, now: DateTime<Utc>) -> Result<(), Error> {
        let kind = if row.tube.is_pool() { "positive_pool" } else { "positive_result" };
        let members = tx
            .fetch_all(q!("SELECT p.jurisdiction, p.unit_id FROM tube_members m JOIN persons p ON p.id = m.person_id WHERE m.tube_id = $1", row.id))
            .await?;
        let mut recipients: BTreeMap<Uuid, String> = BTreeMap::new();
        for m in &members {
            let j: String = m.get("jurisdiction")?;
            let unit = township_unit(tx, &j).await?;
            for u in unit.into_iter().chain(m.get::<Option<Uuid>>("unit_id")?) {
                recipients.entry(u).or_insert_with(|| j.clone());
            }
        }
        let cmd = alerts::command_office(tx, &row.jurisdiction).await?;
        let detail = serde_json::json!({"barcode": row.barcode, "pool_size": row.tube.pool_size, "members": row.tube.members});
        let mut list: Vec<(Uuid, i64, String)> = recipients.into_iter().filter(|(u, _)| Some(*u) != cmd).map(|(u, j)| (u, 0, j)).collect();
        if let Some(c) = cmd {
            list.push((c, 2, row.jurisdiction.clone()));
        }
        for (custodian, level, jurisdiction) in &list {
            alerts::raise(
                tx,
                store,
                &policy.params,
                now,
                &alerts::NewAlert {
                    subject_kind: "tube",
                    subject_id: row.id,
                    subject: &row.barcode,
                    trip_id: None,
                    kind,
                    due_at: now,
                    custodian: *custodian,
                    level: *level,
                    rung1: None,
                    emergency: true,
                    jurisdiction,
                    policy_version: policy.version,
                    detail: detail.clone(),
                },
            )
            .await?;
        }
        if let Some(trip) = row.trip_id {
            let r = tx.fetch_one(q!("SELECT custodian_id, jurisdiction, plate FROM trips WHERE id = $1", trip)).await?;
            let tj: String = r.get("jurisdiction")?;
            let plate: String = r.get("plate")?;
            // An emergency: the custodian, the trip's township (its locality) and the command office, at once.
            let mut to = vec![(r.get::<Uuid>("custodian_id")?, 0)];
            if let Some(t) = township_unit(tx, &tj).await?
                && to.iter().all(|(u, _)| *u != t)
            {
                to.push((t, 1));
            }
            if let Some(c) = alerts::command_office(tx, &tj).await?
                && to.iter().all(|(u, _)| *u != c)
            {
                to.push((c, 2));
            }
            for (custodian, level) in to {
                alerts::raise(
                    tx,
                    store,
                    &policy.params,
                    now,
                    &alerts::NewAlert {
                        subject_kind: "trip",
                        subject_id: trip,
                        subject: &plate,
                        trip_id: Some(trip),
                        kind: "positive_landing",
                        due_at: now,
                        custodian,
                        level,
                        rung1: None,
                        emergency: true,
                        jurisdiction: &tj,
                        policy_version: policy.version,
                        detail: serde_json::json!({"barcode": row.barcode, "tube": row.id}),
                    },
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The township government a residence belongs to (the locality that answers for its people).
async fn township_unit(tx: &mut Tx, jurisdiction: &str) -> Result<Option<Uuid>, Error> {
    let township: String = jurisdiction.chars().take(9).collect();
    tx.fetch_optional(q!(
        "SELECT id FROM units WHERE kind = 'township' AND active = TRUE AND jurisdiction = $1 ORDER BY created_at LIMIT 1",
        township
    ))
    .await?
    .map(|r| r.get::<Uuid>("id"))
    .transpose()
}

/// Recompute one person's status from every sample they gave (`testing::person_status`).
async fn refresh_person(tx: &mut Tx, person: Uuid, now: DateTime<Utc>) -> Result<(), Error> {
    let rows = tx
        .fetch_all(q!(
            "SELECT m.tube_id, m.added_at, t.pool_size, t.outcome, t.resulted_at FROM tube_members m JOIN tubes t ON t.id = m.tube_id WHERE m.person_id = $1",
            person
        ))
        .await?;
    let mut samples = Vec::new();
    let mut latest: Option<(DateTime<Utc>, Uuid)> = None;
    let mut resulted: Option<DateTime<Utc>> = None;
    for r in &rows {
        let at: DateTime<Utc> = r.get("added_at")?;
        let outcome: Option<String> = r.get("outcome")?;
        let k: i64 = r.get("pool_size")?;
        samples.push(t::Sample { sampled_at: at, pool_size: u32::try_from(k).unwrap_or(1), outcome: outcome.as_deref().and_then(Outcome::parse) });
        if latest.is_none_or(|(l, _)| at > l) {
            latest = Some((at, r.get("tube_id")?));
        }
        if let Some(x) = r.get::<Option<DateTime<Utc>>>("resulted_at")? {
            resulted = resulted.max(Some(x));
        }
    }
    let (Some(status), Some((at, tube))) = (t::person_status(&samples), latest) else { return Ok(()) };
    let resulted_at = if status == PersonStatus::Pending { None } else { resulted };
    tx.execute(q!(
        "UPDATE person_results SET status = $2, sampled_at = $3, resulted_at = $4, tube_id = $5, updated_at = $6 WHERE person_id = $1",
        person,
        status.as_str(),
        at,
        resulted_at,
        tube,
        now
    ))
    .await?;
    Ok(())
}

// ---------- the deadline watcher ----------

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct SweepReport {
    pub tubes_overdue: u64,
    pub batches_unaccepted: u64,
    pub retests_overdue: u64,
}

/// One pass at `now`: a tube without its result by its deadline raises `result_overdue` to the
/// lab holding it (the sampling team before shipment), climbing to the testing task force and
/// the command office; a batch not received in time raises `batch_unaccepted` to the lab; a
/// re-test or re-sample order nobody has sampled by its deadline raises `retest_overdue` to the
/// person's township (an emergency for a positive pool's member). Escalation itself is
/// `alerts::sweep`'s. Safe to repeat: each is raised once.
pub async fn sweep(store: &Store, now: DateTime<Utc>) -> Result<SweepReport, Error> {
    let mut rep = SweepReport::default();
    let policy = crate::policy::current(store, now).await?;
    loop {
        let rows = store.db.fetch_all(q!("SELECT id FROM tubes WHERE watch_at <= $1 ORDER BY watch_at LIMIT 500", now)).await?;
        if rows.is_empty() {
            break;
        }
        let mut tx = store.db.begin().await?;
        for r in &rows {
            let id: Uuid = r.get("id")?;
            let Some(row) = tube_by_id(&mut tx, id).await? else { continue };
            let due: DateTime<Utc> = tx.fetch_one(q!("SELECT due_at FROM tubes WHERE id = $1", id)).await?.get("due_at")?;
            if row.tube.outcome.is_none() && row.tube.state != TubeState::Missing {
                let rung1 = testing_task_force(&mut tx, row.lab_id).await?;
                let raised = alerts::raise(
                    &mut tx,
                    store,
                    &policy.params,
                    now,
                    &alerts::NewAlert {
                        subject_kind: "tube",
                        subject_id: id,
                        subject: &row.barcode,
                        trip_id: None,
                        kind: "result_overdue",
                        due_at: due,
                        custodian: row.lab_id.unwrap_or(row.team_id),
                        level: 0,
                        rung1,
                        emergency: false,
                        jurisdiction: &row.jurisdiction,
                        policy_version: policy.version,
                        detail: serde_json::json!({"barcode": row.barcode, "priority": row.priority.as_str(), "state": row.tube.state.as_str()}),
                    },
                )
                .await?;
                rep.tubes_overdue += u64::from(raised);
            }
            tx.execute(q!("UPDATE tubes SET watch_at = NULL WHERE id = $1", id)).await?;
        }
        tx.commit().await?;
        if rows.len() < 500 {
            break;
        }
    }
    let batches = store
        .db
        .fetch_all(q!(
            "SELECT b.id, b.code, b.lab_id, b.accept_by, b.jurisdiction FROM test_batches b WHERE b.state = 'handed' AND b.accept_by <= $1
               AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.subject_kind = 'batch' AND a.subject_id = b.id AND a.kind = 'batch_unaccepted')
             LIMIT 1000",
            now
        ))
        .await?;
    if !batches.is_empty() {
        let mut tx = store.db.begin().await?;
        for b in &batches {
            let lab: Uuid = b.get("lab_id")?;
            let code: String = b.get("code")?;
            let jurisdiction: String = b.get("jurisdiction")?;
            let rung1 = testing_task_force(&mut tx, Some(lab)).await?;
            let raised = alerts::raise(
                &mut tx,
                store,
                &policy.params,
                now,
                &alerts::NewAlert {
                    subject_kind: "batch",
                    subject_id: b.get("id")?,
                    subject: &code,
                    trip_id: None,
                    kind: "batch_unaccepted",
                    due_at: b.get("accept_by")?,
                    custodian: lab,
                    level: 0,
                    rung1,
                    emergency: false,
                    jurisdiction: &jurisdiction,
                    policy_version: policy.version,
                    detail: serde_json::json!({"batch": code}),
                },
            )
            .await?;
            rep.batches_unaccepted += u64::from(raised);
        }
        tx.commit().await?;
    }
    rep.retests_overdue = sweep_orders(store, &policy, now).await?;
    Ok(rep)
}

/// Re-test and re-sample orders past their deadline with no sample taken yet.
async fn sweep_orders(store: &Store, policy: &PolicyVersion, now: DateTime<Utc>) -> Result<u64, Error> {
    let orders = store
        .db
        .fetch_all(q!(
            "SELECT o.id, o.kind, o.due_at, o.jurisdiction, p.name, p.document_masked, p.unit_id, t.team_id, t.barcode
             FROM retest_orders o JOIN persons p ON p.id = o.person_id JOIN tubes t ON t.id = o.source_tube_id
             WHERE o.resolved_at IS NULL AND o.tube_id IS NULL AND o.due_at <= $1
               AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.subject_kind = 'retest_order' AND a.subject_id = o.id AND a.kind = 'retest_overdue')
             ORDER BY o.due_at LIMIT 1000",
            now
        ))
        .await?;
    if orders.is_empty() {
        return Ok(0);
    }
    let mut raised = 0;
    let mut tx = store.db.begin().await?;
    for o in &orders {
        let jurisdiction: String = o.get("jurisdiction")?;
        let kind: String = o.get("kind")?;
        let barcode: String = o.get("barcode")?;
        // The locality finds the person; without a township on record, their unit, else the team that sampled them.
        let custodian = match township_unit(&mut tx, &jurisdiction).await? {
            Some(u) => u,
            None => o.get::<Option<Uuid>>("unit_id")?.map_or_else(|| o.get::<Uuid>("team_id"), Ok)?,
        };
        let subject = format!("{} {}", o.get::<String>("name")?, o.get::<String>("document_masked")?);
        let new = alerts::raise(
            &mut tx,
            store,
            &policy.params,
            now,
            &alerts::NewAlert {
                subject_kind: "retest_order",
                subject_id: o.get("id")?,
                subject: &subject,
                trip_id: None,
                kind: "retest_overdue",
                due_at: o.get("due_at")?,
                custodian,
                level: 0,
                rung1: None,
                emergency: kind == "recheck",
                jurisdiction: &jurisdiction,
                policy_version: policy.version,
                detail: serde_json::json!({"order": kind, "source_barcode": barcode}),
            },
        )
        .await?;
        raised += u64::from(new);
    }
    tx.commit().await?;
    Ok(raised)
}

/// Open re-test and re-sample orders: who still owes a sample, by when.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub id: Uuid,
    pub person_id: Uuid,
    pub name: String,
    pub document_masked: String,
    pub kind: String,
    pub source_barcode: String,
    pub ordered_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub tube_id: Option<Uuid>,
    pub status: Option<String>,
    pub jurisdiction: String,
}

/// A page of the pending re-check list (and re-samples owed), in the caller's scope, soonest due first.
pub async fn open_orders(store: &Store, who: &Principal, page: &PageQuery) -> Result<Paged<OrderView>, Error> {
    who.require(Permission::TestingRead)?;
    let page = Page::<(DateTime<Utc>, Uuid)>::read("rechecks", page)?;
    let (at, id) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT o.id, o.person_id, p.name, p.document_masked, o.kind, t.barcode, o.ordered_at, o.due_at, o.tube_id, pr.status, o.jurisdiction
             FROM retest_orders o JOIN persons p ON p.id = o.person_id JOIN tubes t ON t.id = o.source_tube_id
             LEFT JOIN person_results pr ON pr.person_id = o.person_id
             WHERE o.resolved_at IS NULL AND ((o.jurisdiction >= $1 AND o.jurisdiction < $2) OR t.team_id = $3 OR t.lab_id = $3 OR t.team_id = $4 OR t.lab_id = $4)
               AND ($5 IS NULL OR (o.due_at, o.id) > ($5, $6))
             ORDER BY o.due_at, o.id LIMIT $7",
            lo,
            hi,
            unit,
            who.unit_id,
            at,
            id,
            page.fetch()
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(OrderView {
                id: r.get("id")?,
                person_id: r.get("person_id")?,
                name: r.get("name")?,
                document_masked: r.get("document_masked")?,
                kind: r.get("kind")?,
                source_barcode: r.get("barcode")?,
                ordered_at: r.get("ordered_at")?,
                due_at: r.get("due_at")?,
                tube_id: r.get("tube_id")?,
                status: r.get("status")?,
                jurisdiction: r.get("jurisdiction")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |o| (o.due_at, o.id)))
}
