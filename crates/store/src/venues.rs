//! Key venues (enterprises, construction sites, markets, hotels, schools) and their venue codes
//! (场所码). A scan at a venue's door registers the visit and answers at once by the person's
//! current code: red barred, yellow restricted, green passes.
//!
//! One scan per token per venue: the scan's `tag` is taken from the token's signature, so a
//! token replayed at the same door returns the first answer (`replayed: true`) and adds nothing.
//! Scanners that work offline upload their scans in batches ([`ingest`]); each row is checked on
//! its own (unknown venue, unknown person, forged or expired token) and reported by index, and
//! the good rows are written in one transaction: a visit that happened is kept even when the
//! row beside it is bad.

use crate::db::{Q, Row, Val};
use crate::page::{Page, PageQuery, Paged};
use crate::person_codes::{self, mask_name};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::Error;
use baton_domain::FieldError;
use baton_domain::code::{Admission, Colour, VenueKind};
use baton_domain::division::Divisions;
use baton_domain::role::Permission;
use baton_domain::scope::Scope;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Venue {
    pub id: Uuid,
    pub name: String,
    pub kind: VenueKind,
    pub address: String,
    pub jurisdiction: String,
    pub place: String,
    pub unit_id: Option<Uuid>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueInput {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub address: Option<String>,
    /// A division code or name inside the caller's scope (default: the caller's own division).
    #[serde(default)]
    pub division: Option<String>,
    /// The unit that runs the venue (its staff scan at the door).
    #[serde(default)]
    pub unit_id: Option<Uuid>,
}

fn from_row(r: &Row) -> Result<Venue, Error> {
    let kind: String = r.get("kind")?;
    let jurisdiction: String = r.get("jurisdiction")?;
    Ok(Venue {
        id: r.get("id")?,
        name: r.get("name")?,
        kind: VenueKind::parse(&kind).ok_or_else(|| Error::internal(format!("venue kind {kind}")))?,
        address: r.get("address")?,
        place: Divisions::get_all().full_name(&jurisdiction),
        jurisdiction,
        unit_id: r.get("unit_id")?,
        active: r.get("active")?,
        created_at: r.get("created_at")?,
    })
}

pub async fn create(store: &Store, who: &Principal, input: &VenueInput) -> Result<Venue, Error> {
    who.require(Permission::VenuesWrite)?;
    let mut c = Check::default();
    let name = c.take(text_field("name", &input.name, 1, 100));
    let kind = c.take(VenueKind::parse(input.kind.trim()).ok_or_else(|| {
        FieldError::new(
            "kind",
            "venue_kind_unknown",
            "场所类别应为 enterprise、construction_site、market、hotel、school 或 other",
            "kind must be enterprise, construction_site, market, hotel, school or other",
        )
    }));
    let address = c.take(text_field("address", input.address.as_deref().unwrap_or(""), 0, 200));
    let own = home_division(&who.scope);
    let jurisdiction = match input.division.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(d) => c.take(Divisions::get_all().resolve("division", d).map(|x| x.code.to_string())),
        None => Some(own.clone()),
    };
    // The venue lies in the caller's division (a unit-scoped caller's: their unit's).
    if let Some(j) = &jurisdiction
        && !j.starts_with(own.as_str())
    {
        c.0.push(FieldError::new("division", "outside_scope", "该地区不在您的管辖范围内", "this division is outside your scope"));
    }
    // The unit that runs it is one the caller can see (a unit-scoped caller's own, by default):
    // another township's unit is answered as unknown, like an id that does not exist.
    let unit_id = match (input.unit_id, &who.scope) {
        (Some(u), _) => crate::units::named(store, who, &mut c, "unit_id", u).await?.map(|u| Some(u.id)),
        (None, Scope::Unit { unit_id, .. }) => Some(Some(*unit_id)),
        (None, Scope::Division { .. }) => Some(None),
    };
    c.done()?;
    let (Some(name), Some(kind), Some(address), Some(jurisdiction), Some(unit_id)) = (name, kind, address, jurisdiction, unit_id) else {
        return Err(Error::internal("validation"));
    };
    let id = Uuid::now_v7();
    let now = store.now();
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO venues (id, name, kind, address, jurisdiction, unit_id, active, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $8)",
        id,
        name.clone(),
        kind.as_str(),
        address,
        jurisdiction.clone(),
        unit_id,
        who.name.clone(),
        now
    ))
    .await?;
    let entry = audit::Entry {
        action: "venue.create",
        object_type: "venue",
        object_id: id.to_string(),
        jurisdiction: &jurisdiction,
        detail: serde_json::json!({"name": name, "kind": kind.as_str(), "unit_id": unit_id}),
    };
    store.audited(who, entry, tx).await?;
    get(store, who, id).await
}

/// A page of the venues the viewer's scope covers (by jurisdiction, or the viewer's own unit's),
/// by division and name.
pub async fn list(store: &Store, who: &Principal, page: &PageQuery) -> Result<Paged<Venue>, Error> {
    let page = Page::<(String, String, Uuid)>::read("venues", page)?;
    let (aj, an, ai) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT id, name, kind, address, jurisdiction, unit_id, active, created_at FROM venues
              WHERE ((jurisdiction >= $1 AND jurisdiction < $2) OR unit_id = $3) AND ($4 IS NULL OR (jurisdiction, name, id) > ($4, $5, $6))
              ORDER BY jurisdiction, name, id LIMIT $7",
            lo,
            hi,
            unit,
            aj,
            an,
            ai,
            page.fetch()
        ))
        .await?;
    let list = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |v| (v.jurisdiction.clone(), v.name.clone(), v.id)))
}

pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<Venue, Error> {
    let r = store
        .db
        .fetch_optional(q!("SELECT id, name, kind, address, jurisdiction, unit_id, active, created_at FROM venues WHERE id = $1", id))
        .await?
        .ok_or(Error::NotFound("venue"))?;
    let v = from_row(&r)?;
    who.require_covers(&v.jurisdiction, v.unit_id, "venue")?;
    Ok(v)
}

// ---------- scans ----------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanInput {
    /// The token from the person's QR.
    pub token: String,
}

/// The answer at the door.
#[derive(Debug, Clone, Serialize)]
pub struct ScanAnswer {
    pub scan_id: Uuid,
    pub venue_id: Uuid,
    pub person_ref: Uuid,
    pub name_masked: String,
    pub colour: Colour,
    pub admission: Admission,
    pub message_zh: &'static str,
    pub message_en: &'static str,
    pub at: DateTime<Utc>,
    /// The same token was already scanned here: this is the first scan's answer.
    pub replayed: bool,
}

fn unknown_person() -> Error {
    Error::conflict("person_unknown", "码对应的人员不在登记库中", "the code names no registered person")
}

fn inactive(venue: &Venue) -> Result<(), Error> {
    if venue.active { Ok(()) } else { Err(Error::conflict("venue_inactive", "该场所码已停用", "this venue code is no longer in use")) }
}

/// The person a token or link names (the survivor of a merge) and their name.
async fn named(store: &Store, person_ref: Uuid) -> Result<(Uuid, String), Error> {
    let p = store.db.fetch_optional(q!("SELECT name, merged_into FROM persons WHERE id = $1", person_ref)).await?.ok_or_else(unknown_person)?;
    Ok((p.get::<Option<Uuid>>("merged_into")?.unwrap_or(person_ref), p.get("name")?))
}

/// A scan row's answer, as first given.
fn stored_answer(r: &Row, venue_id: Uuid, person: Uuid, name: &str) -> Result<ScanAnswer, Error> {
    let colour = Colour::parse(&r.get::<String>("colour")?).unwrap_or(Colour::Red);
    Ok(answer(r.get("id")?, venue_id, person, name, colour, r.get("at")?, true))
}

/// Scan a person's code at a venue: the visit is registered and the answer given by the
/// person's current code (online, so a code that changed since the token was shown counts).
pub async fn scan(store: &Store, who: &Principal, venue_id: Uuid, input: &ScanInput) -> Result<ScanAnswer, Error> {
    who.require(Permission::VenuesScan)?;
    let venue = get(store, who, venue_id).await?;
    inactive(&venue)?;
    let now = store.now();
    let t = person_codes::verify_token(&store.vault, &input.token, now)?;
    let (person, name) = named(store, t.person_ref).await?;
    register(store, &venue, person, &name, t.tag, now).await
}

/// Register a visit under `tag` and answer by the person's current code; a tag already
/// registered at this venue is the same visit, answered as it was first.
async fn register(store: &Store, venue: &Venue, person: Uuid, name: &str, tag: Vec<u8>, now: DateTime<Utc>) -> Result<ScanAnswer, Error> {
    let venue_id = venue.id;
    let prior = store.db.fetch_optional(q!("SELECT id, colour, at FROM scans WHERE venue_id = $1 AND tag = $2", venue_id, tag.clone())).await?;
    if let Some(r) = prior {
        return stored_answer(&r, venue_id, person, name);
    }
    let code = person_codes::current(store, person).await?;
    let id = Uuid::now_v7();
    let mut tx = store.db.begin().await?;
    let n = tx
        .execute(q!(
            "INSERT INTO scans (id, venue_id, person_id, at, colour, admission, tag, jurisdiction, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $4) ON CONFLICT (venue_id, tag) DO NOTHING",
            id,
            venue_id,
            person,
            now,
            code.colour.as_str(),
            code.colour.admission().as_str(),
            tag.clone(),
            venue.jurisdiction.clone()
        ))
        .await?;
    tx.commit().await?;
    if n == 0 {
        // Another request registered the same visit meanwhile: its answer.
        let r = store.db.fetch_one(q!("SELECT id, colour, at FROM scans WHERE venue_id = $1 AND tag = $2", venue_id, tag)).await?;
        return stored_answer(&r, venue_id, person, name);
    }
    Ok(answer(id, venue_id, person, name, code.colour, now, false))
}

/// A venue as its public page shows it (no account: name, kind and place only matter).
pub async fn public(store: &Store, id: Uuid) -> Result<Venue, Error> {
    let r = store
        .db
        .fetch_optional(q!("SELECT id, name, kind, address, jurisdiction, unit_id, active, created_at FROM venues WHERE id = $1", id))
        .await?
        .ok_or(Error::NotFound("venue"))?;
    from_row(&r)
}

/// A resident scans the venue's poster with their own phone, which remembers them by the link
/// to their code (`person_codes::sign_link`): the visit is registered and answered at once, as
/// at the door. Scanning again within `token_minutes` of a visit registered at this venue (by the
/// phone or at the door) is the same visit, answered as it was first; so is a second request
/// in the same `token_minutes` period, by the tag, when two arrive at once.
pub async fn visit_by_link(store: &Store, venue_id: Uuid, link: &str) -> Result<ScanAnswer, Error> {
    let venue = public(store, venue_id).await?;
    inactive(&venue)?;
    let now = store.now();
    let l = person_codes::open_link(&store.vault, link, now)?;
    let (person, name) = named(store, l.person_ref).await?;
    let minutes = crate::policy::current(store, now).await?.params.codes.token_minutes.max(1);
    let recent = store
        .db
        .fetch_optional(q!(
            "SELECT id, colour, at FROM scans WHERE venue_id = $1 AND person_id = $2 AND at > $3 AND at <= $4 ORDER BY at DESC LIMIT 1",
            venue_id,
            person,
            now - Duration::minutes(i64::from(minutes)),
            now
        ))
        .await?;
    if let Some(r) = recent {
        return stored_answer(&r, venue_id, person, &name);
    }
    let period = now.timestamp().div_euclid(i64::from(minutes) * 60);
    let mut tag = store.vault.blind_index("venue_visit", &format!("{person}:{venue_id}:{period}"));
    tag.truncate(16);
    register(store, &venue, person, &name, tag, now).await
}

fn answer(id: Uuid, venue_id: Uuid, person: Uuid, name: &str, colour: Colour, at: DateTime<Utc>, replayed: bool) -> ScanAnswer {
    let a = colour.admission();
    ScanAnswer {
        scan_id: id,
        venue_id,
        person_ref: person,
        name_masked: mask_name(name),
        colour,
        admission: a,
        message_zh: a.label(true),
        message_en: a.label(false),
        at,
        replayed,
    }
}

/// One scan recorded by an offline scanner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchScan {
    pub venue_id: Uuid,
    pub token: String,
    /// When the scan happened (the token must have been valid then).
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    pub scans: Vec<BatchScan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub accepted: usize,
    /// Already recorded (the same token at the same venue).
    pub duplicates: usize,
    /// Rows refused, by index: `scans[3].token` and why.
    pub rejected: Vec<FieldError>,
}

/// Most scans in one upload.
pub const MAX_BATCH: usize = 10_000;
/// Rows per INSERT statement.
const ROWS: usize = 12;
const COLS: usize = 8;

const SQL_INSERT_ONE: &str = "INSERT INTO scans (id, venue_id, person_id, at, colour, admission, tag, jurisdiction, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $4) ON CONFLICT (venue_id, tag) DO NOTHING";
static SQL_INSERT: LazyLock<&'static str> = LazyLock::new(|| {
    let rows: Vec<String> = (0..ROWS)
        .map(|r| {
            let p: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
            format!("({}, ${})", p.join(", "), r * COLS + 4)
        })
        .collect();
    Box::leak(
        format!(
            "INSERT INTO scans (id, venue_id, person_id, at, colour, admission, tag, jurisdiction, created_at) VALUES {} ON CONFLICT (venue_id, tag) DO NOTHING",
            rows.join(", ")
        )
        .into_boxed_str(),
    )
});

static SQL_VENUES: LazyLock<&'static str> = LazyLock::new(|| {
    let ph: Vec<String> = (1..=person_codes::IN_LIST).map(|i| format!("${i}")).collect();
    Box::leak(format!("SELECT id, jurisdiction, unit_id, active FROM venues WHERE id IN ({})", ph.join(", ")).into_boxed_str())
});

static SQL_PERSONS: LazyLock<&'static str> = LazyLock::new(|| {
    let ph: Vec<String> = (1..=person_codes::IN_LIST).map(|i| format!("${i}")).collect();
    Box::leak(format!("SELECT id, merged_into FROM persons WHERE id IN ({})", ph.join(", ")).into_boxed_str())
});

/// Ingest scans recorded offline. The answer each door gave was the token's colour; it is kept.
pub async fn ingest(store: &Store, who: &Principal, input: &BatchInput) -> Result<BatchReport, Error> {
    who.require(Permission::VenuesScan)?;
    if input.scans.len() > MAX_BATCH {
        return Err(Error::field("scans", "too_many", format!("一次最多上传 {MAX_BATCH} 条"), format!("at most {MAX_BATCH} scans per upload")));
    }
    let now = store.now();
    let mut rejected = Vec::new();
    // Signatures are checked on every core while the venues and persons named are looked up:
    // verification is most of an upload's cost.
    let keys = person_codes::VerifyKeys::new(&store.vault.signing_public_keys());
    let tokens: Vec<(String, DateTime<Utc>)> = input.scans.iter().map(|s| (s.token.clone(), s.at)).collect();
    let verifying = tokio::task::spawn_blocking(move || verify_on_every_core(&keys, &tokens));
    // The venues named, in sets; one outside the caller's scope is as unknown as a missing one.
    let mut venues: HashMap<Uuid, String> = HashMap::new();
    let named: Vec<Uuid> = input.scans.iter().map(|s| s.venue_id).collect::<HashSet<_>>().into_iter().collect();
    for chunk in named.chunks(person_codes::IN_LIST) {
        for r in store.db.fetch_all(Q { sql: &SQL_VENUES, args: person_codes::id_args(vec![], chunk) }).await? {
            let j: String = r.get("jurisdiction")?;
            if r.get::<bool>("active")? && who.scope.covers(&j, r.get("unit_id")?) {
                venues.insert(r.get("id")?, j);
            }
        }
    }
    // The persons the tokens name, in sets (a forged token's too: only its verified answer counts).
    let mut known: HashMap<Uuid, Uuid> = HashMap::new();
    let ids: Vec<Uuid> = input.scans.iter().filter_map(|s| person_codes::person_named(&s.token)).collect::<HashSet<_>>().into_iter().collect();
    for chunk in ids.chunks(person_codes::IN_LIST) {
        for r in store.db.fetch_all(Q { sql: &SQL_PERSONS, args: person_codes::id_args(vec![], chunk) }).await? {
            let id: Uuid = r.get("id")?;
            known.insert(id, r.get::<Option<Uuid>>("merged_into")?.unwrap_or(id));
        }
    }
    let verified = verifying.await.map_err(|e| Error::internal(format!("token verification: {e}")))??;
    let mut good: Vec<(usize, Uuid, person_codes::Token, DateTime<Utc>, String)> = Vec::with_capacity(input.scans.len());
    for ((i, s), v) in input.scans.iter().enumerate().zip(verified) {
        let Some(jurisdiction) = venues.get(&s.venue_id) else {
            rejected.push(FieldError::new(
                format!("scans[{i}].venue_id"),
                "venue_unknown",
                "场所不存在或不在您的范围内",
                "no such venue in your scope",
            ));
            continue;
        };
        if s.at > now + Duration::minutes(5) {
            rejected.push(FieldError::new(format!("scans[{i}].at"), "in_future", "扫码时间晚于当前时间", "the scan time is in the future"));
            continue;
        }
        match v {
            Ok(t) => good.push((i, s.venue_id, t, s.at, jurisdiction.clone())),
            Err(e) => rejected.push(FieldError::new(format!("scans[{i}].token"), e.code(), e.message(true), e.message(false))),
        }
    }
    let mut rows: Vec<[Val; COLS]> = Vec::with_capacity(good.len());
    for (i, venue, t, at, jurisdiction) in good {
        let Some(person) = known.get(&t.person_ref) else {
            let e = unknown_person();
            rejected.push(FieldError::new(format!("scans[{i}].token"), e.code(), e.message(true), e.message(false)));
            continue;
        };
        let colour = t.colour.unwrap_or(Colour::Red);
        rows.push([
            Uuid::now_v7().into(),
            venue.into(),
            (*person).into(),
            at.into(),
            colour.as_str().into(),
            colour.admission().as_str().into(),
            t.tag.into(),
            jurisdiction.into(),
        ]);
    }
    rejected.sort_by_key(|a| natural(&a.field));
    // Up to thousands of rows: a transaction of its own, not a savepoint (see `Writer::begin_alone`).
    let mut tx = store.db.begin_alone(crate::Durability::Durable).await?;
    let total = rows.len();
    let written = tx.execute_rows(&SQL_INSERT, ROWS, SQL_INSERT_ONE, &rows.into_iter().map(Vec::from).collect::<Vec<_>>()).await?;
    let written = usize::try_from(written).map_err(Error::internal)?;
    let entry = audit::Entry {
        action: "scan.ingest",
        object_type: "scan_batch",
        object_id: Uuid::now_v7().to_string(),
        jurisdiction: &home_division(&who.scope),
        detail: serde_json::json!({"rows": input.scans.len(), "accepted": written, "rejected": rejected.len()}),
    };
    store.audited(who, entry, tx).await?;
    Ok(BatchReport { accepted: written, duplicates: total - written, rejected })
}

/// Each token verified as at its scan's time, the signatures in batches, the tokens split over
/// the cores.
fn verify_on_every_core(
    keys: &person_codes::VerifyKeys,
    tokens: &[(String, DateTime<Utc>)],
) -> Result<Vec<Result<person_codes::Token, Error>>, Error> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 8);
    let part = tokens.len().div_ceil(threads).max(1);
    let parts: Vec<Vec<Result<person_codes::Token, Error>>> = std::thread::scope(|sc| {
        let handles: Vec<_> = tokens
            .chunks(part)
            .map(|c| {
                sc.spawn(move || {
                    let set: Vec<(&str, DateTime<Utc>)> = c.iter().map(|(t, at)| (t.as_str(), *at)).collect();
                    person_codes::verify_many(keys, &set)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| Error::internal("token verification failed"))).collect::<Result<_, _>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}

fn home_division(s: &Scope) -> String {
    match s {
        Scope::Division { code } => code.clone(),
        Scope::Unit { division, .. } => division.clone(),
    }
}

/// `scans[12].token` sorts after `scans[3].token`.
fn natural(field: &str) -> (usize, String) {
    let n = field.split('[').nth(1).and_then(|s| s.split(']').next()).and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    (n, field.to_string())
}

/// One visit in a venue's log, personal data masked.
#[derive(Debug, Clone, Serialize)]
pub struct Visit {
    pub scan_id: Uuid,
    pub person_ref: Uuid,
    pub name_masked: String,
    pub colour: Colour,
    pub admission: Admission,
    pub at: DateTime<Utc>,
}

/// A page of a venue's visits, newest first.
pub async fn visits(store: &Store, who: &Principal, venue_id: Uuid, page: &PageQuery) -> Result<Paged<Visit>, Error> {
    let page = Page::<(DateTime<Utc>, Uuid)>::read("visits", page)?;
    let (at, id) = page.parts();
    get(store, who, venue_id).await?;
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT s.id, s.person_id, p.name, s.colour, s.at FROM scans s JOIN persons p ON p.id = s.person_id
              WHERE s.venue_id = $1 AND ($2 IS NULL OR (s.at, s.id) < ($2, $3)) ORDER BY s.at DESC, s.id DESC LIMIT $4",
            venue_id,
            at,
            id,
            page.fetch()
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            let colour = Colour::parse(&r.get::<String>("colour")?).ok_or_else(|| Error::internal("stored colour"))?;
            Ok(Visit {
                scan_id: r.get("id")?,
                person_ref: r.get("person_id")?,
                name_masked: mask_name(&r.get::<String>("name")?),
                colour,
                admission: colour.admission(),
                at: r.get("at")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |v| (v.at, v.scan_id)))
}

/// For the venue-code poster: the text a phone's scanner reads.
pub fn poster_text(base: &str, venue: &Venue) -> String {
    format!("{base}/v/{}", venue.id)
}
