//! The freight loop's trips in the store. The domain's `Trip` value is the truth (kept as
//! JSON in `data`); the columns beside it exist for queries: scope, the deadline watcher's
//! `sweep_at`, the one-open-trip-per-plate index. Every change loads the trip, applies the
//! domain transition, and writes it back only if nobody changed it meanwhile (`rev`), with
//! its audit entry, in one transaction.

use crate::db::{Row, Tx};
use crate::page::{Page, PageQuery, Paged};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::classify::{CodeColour, Evidence, Reason, RiskExposure, classify};
use baton_domain::ident::{IdNumber, PersonalKind, Phone, Plate, mask_kind};
use baton_domain::policy::PolicyVersion;
use baton_domain::role::Permission;
use baton_domain::trip::{Action, BreachKind, CheckIn, Report, TransitionError, Trip, TripRules, TripState};
use baton_domain::unit::UnitKind;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ID_AAD: &str = "trip_crew.id_number";
const PHONE_AAD: &str = "trip_crew.phone";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrewInput {
    pub name: String,
    pub id_number: String,
    #[serde(default)]
    pub phone: String,
    /// The health-code colour the member shows (at check-in).
    #[serde(default)]
    pub health_code: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrewView {
    /// The signed trip code the crew member opens at `/code/{code}` (no account needed).
    pub code: Option<String>,
    pub seq: i64,
    pub name: String,
    /// Masked; see `users::reveal` for the pattern of revealing.
    pub id_number: String,
    pub phone: Option<String>,
    pub health_code: Option<String>,
}

/// A pre-report by a cargo owner or receiver (提前报备).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportInput {
    pub plate: String,
    #[serde(default)]
    pub trailer: Option<String>,
    pub destination_id: Uuid,
    pub expected_at: DateTime<Utc>,
    pub crew: Vec<CrewInput>,
}

/// What the checkpoint records (落地核酸 + 分类): a pre-reported truck by plate, or a walk-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInInput {
    pub plate: String,
    #[serde(default)]
    pub trailer: Option<String>,
    /// Required for a walk-in; for a pre-reported truck it must match the report if given.
    #[serde(default)]
    pub destination_id: Option<Uuid>,
    pub eta: DateTime<Utc>,
    /// Crew as seen at the checkpoint (for a pre-reported truck, the reported crew is kept when empty).
    #[serde(default)]
    pub crew: Vec<CrewInput>,
    /// The latest negative test certificate's time, if any.
    #[serde(default)]
    pub test_taken_at: Option<DateTime<Utc>>,
    /// The crew's itinerary (places in words or codes, with dates). When given, it is matched
    /// against the risk areas in force on the dates of each stay, and the worst hit counts.
    #[serde(default)]
    pub itinerary: Vec<crate::risk_areas::StayInput>,
    /// The worst risk-area stay the checkpoint found by other means (a travel card); the worse of
    /// this and the itinerary's match counts. `none` when only the itinerary is used.
    #[serde(default = "no_risk")]
    pub risk: RiskExposure,
    #[serde(default)]
    pub antigen_positive: bool,
    /// The landing test's tube barcode (落地核酸).
    pub landing_tube: String,
    /// The pre-report being checked in, when the checkpoint picked it (scanned its sheet) rather
    /// than finding it by plate: a different plate is refused and raises `plate_mismatch`.
    #[serde(default)]
    pub trip_id: Option<Uuid>,
}

fn no_risk() -> RiskExposure {
    RiskExposure::None
}

#[derive(Debug, Clone, Serialize)]
pub struct TripView {
    #[serde(flatten)]
    pub trip: Trip,
    pub jurisdiction: String,
    pub crew: Vec<CrewView>,
    /// Why the class was chosen (empty before check-in).
    pub reasons: Vec<Reason>,
    pub landing_tube: Option<String>,
    /// The whitelist as matched at check-in (vehicle and every crew member).
    pub whitelist: Option<serde_json::Value>,
    /// The itinerary's risk-area hits found at check-in.
    pub risk_hits: Vec<baton_domain::risk::RiskHit>,
    /// Its stays at truck service sites, oldest first.
    pub site_stays: Vec<crate::sites::StayView>,
}

/// What the store keeps beside the domain value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Extra {
    reasons: Vec<Reason>,
    pub(crate) landing_tube: Option<String>,
    evidence: Option<Evidence>,
    #[serde(default)]
    whitelist: Option<serde_json::Value>,
    #[serde(default)]
    risk_hits: Vec<baton_domain::risk::RiskHit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    trip: Trip,
    #[serde(default)]
    extra: Extra,
}

fn actor_unit(who: &Principal) -> Result<Uuid, Error> {
    who.unit_id.ok_or(Error::Forbidden)
}

async fn unit_kind_and_division(tx: &mut Tx, id: Uuid) -> Result<Option<(String, String)>, Error> {
    let r = tx.fetch_optional(q!("SELECT kind, jurisdiction FROM units WHERE id = $1 AND active = TRUE", id)).await?;
    r.map(|r| Ok((r.get("kind")?, r.get("jurisdiction")?))).transpose()
}

pub(crate) async fn policy_now(store: &Store) -> Result<PolicyVersion, Error> {
    crate::policy::current(store, store.now()).await
}

fn parse_plate(c: &mut Check, field: &str, s: &str) -> Option<Plate> {
    c.take(Plate::parse(field, s))
}

struct CrewChecked {
    name: String,
    id: IdNumber,
    phone: Option<Phone>,
    health_code: Option<CodeColour>,
}

fn check_crew(c: &mut Check, crew: &[CrewInput], need_code: bool, today: chrono::NaiveDate) -> Vec<CrewChecked> {
    if crew.len() > 5 {
        c.0.push(FieldError::new("crew", "too_many", "司乘人员最多 5 人", "at most 5 crew members"));
    }
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, m) in crew.iter().enumerate() {
        let name = c.take(text_field(&format!("crew[{i}].name"), &m.name, 1, 40));
        let id = c.take(IdNumber::parse_born_by(&format!("crew[{i}].id_number"), &m.id_number, today));
        let phone = if m.phone.trim().is_empty() { None } else { c.take(Phone::parse(&format!("crew[{i}].phone"), &m.phone)) };
        let code = match (&m.health_code, need_code) {
            (Some(s), _) => c.take(CodeColour::parse(s.trim()).map(Some).ok_or_else(|| {
                FieldError::new(
                    format!("crew[{i}].health_code"),
                    "health_code_unknown",
                    "健康码颜色应为 green、yellow 或 red",
                    "health code must be green, yellow or red",
                )
            })),
            (None, true) => {
                c.0.push(FieldError::required(format!("crew[{i}].health_code")));
                None
            }
            (None, false) => Some(None),
        };
        if let Some(id) = &id {
            if seen.contains(id) {
                c.0.push(FieldError::new(format!("crew[{i}].id_number"), "duplicate", "同一人员重复登记", "the same person is listed twice"));
            }
            seen.push(id.clone());
        }
        if let (Some(name), Some(id), Some(health_code)) = (name, id, code) {
            out.push(CrewChecked { name, id, phone, health_code });
        }
    }
    out
}

async fn insert_crew(store: &Store, tx: &mut Tx, trip: Uuid, crew: &[CrewChecked]) -> Result<(), Error> {
    tx.execute(q!("DELETE FROM trip_crew WHERE trip_id = $1", trip)).await?;
    for (i, m) in crew.iter().enumerate() {
        let phone = m.phone.as_ref().map(|p| store.vault.seal(PHONE_AAD, p.as_str())).transpose()?;
        tx.execute(q!(
            "INSERT INTO trip_crew (id, trip_id, seq, name, id_number_enc, id_number_bidx, phone_enc, health_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            Uuid::now_v7(),
            trip,
            i as i64,
            m.name.clone(),
            store.vault.seal(ID_AAD, m.id.as_str())?,
            store.vault.blind_index("id_number", m.id.as_str()),
            phone,
            m.health_code.map(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        ))
        .await?;
    }
    Ok(())
}

/// Let `unit` see the trip from now on (a service site that had it, a fallback escort…).
pub(crate) async fn add_party(tx: &mut Tx, trip: Uuid, unit: Uuid) -> Result<(), Error> {
    tx.execute(q!("INSERT INTO trip_parties (trip_id, unit_id) VALUES ($1, $2) ON CONFLICT (trip_id, unit_id) DO NOTHING", trip, unit)).await?;
    Ok(())
}

/// Keep each handoff that ended in this transition, with how long it took (dashboards).
async fn record_ended_handoffs(tx: &mut Tx, trip: &Trip) -> Result<(), Error> {
    for r in trip.handoffs.iter().filter(|r| r.at == trip.last_event_at) {
        let h = &r.handoff;
        tx.execute(q!(
            "INSERT INTO trip_handoffs (id, trip_id, purpose, from_id, to_id, proposed_at, ended_at, outcome, seconds, jurisdiction)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, t.jurisdiction FROM trips t WHERE t.id = $2
             ON CONFLICT (id) DO NOTHING",
            h.id,
            trip.id,
            h.purpose.as_str(),
            h.from,
            h.to,
            h.proposed_at,
            r.at,
            r.outcome.as_str(),
            (r.at - h.proposed_at).num_seconds()
        ))
        .await?;
    }
    Ok(())
}

async fn add_parties(tx: &mut Tx, trip: &Trip) -> Result<(), Error> {
    record_ended_handoffs(tx, trip).await?;
    let mut units: Vec<Uuid> = trip.chain.iter().map(|s| s.unit).collect();
    units.push(trip.destination);
    units.extend(trip.reporter);
    units.extend(trip.entry_checkpoint);
    units.extend(trip.pending.as_ref().map(|p| p.to));
    units.sort();
    units.dedup();
    for u in units {
        tx.execute(q!("INSERT INTO trip_parties (trip_id, unit_id) VALUES ($1, $2) ON CONFLICT (trip_id, unit_id) DO NOTHING", trip.id, u)).await?;
    }
    Ok(())
}

fn sweep_at(trip: &Trip) -> Option<DateTime<Utc>> {
    trip.next_due().map(|d| d.at)
}

async fn insert_trip(tx: &mut Tx, trip: &Trip, jurisdiction: &str, extra: &Extra, now: DateTime<Utc>) -> Result<(), Error> {
    let data = serde_json::to_string(&Stored { trip: trip.clone(), extra: extra.clone() }).map_err(Error::internal)?;
    tx.execute(q!(
        "INSERT INTO trips (id, plate, state, class, destination_id, custodian_id, pending_to, deadline_at, accept_by, sweep_at, jurisdiction, policy_version, data, rev, created_at, updated_at, closed_at, entry_checkpoint_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $14, $15, $16)",
        trip.id,
        trip.plate.as_str(),
        trip.state.as_str(),
        trip.class.map(|c| c.as_str()),
        trip.destination,
        trip.custodian,
        trip.pending.as_ref().map(|p| p.to),
        trip.deadline.map(|d| d.at),
        trip.pending.as_ref().map(|p| p.accept_by),
        sweep_at(trip),
        jurisdiction,
        trip.policy_version,
        data,
        now,
        trip.closed.as_ref().map(|c| c.at),
        trip.entry_checkpoint
    ))
    .await
    .map_err(open_plate)?;
    add_parties(tx, trip).await
}

fn open_plate(e: Error) -> Error {
    match e {
        Error::Conflict { code: "already_exists", .. } => {
            Error::field("plate", "trip_open_for_plate", "该车辆已有未闭环的行程", "this vehicle already has an open trip")
        }
        e => e,
    }
}

/// Write a changed trip back, only if it is still the revision that was read, and end the
/// alerts its new state settles (a mended link, a trip that is over) in the same transaction.
pub(crate) async fn update_trip(store: &Store, tx: &mut Tx, trip: &Trip, extra: &Extra, rev: i64, now: DateTime<Utc>) -> Result<(), Error> {
    let data = serde_json::to_string(&Stored { trip: trip.clone(), extra: extra.clone() }).map_err(Error::internal)?;
    let n = tx
        .execute(q!(
            "UPDATE trips SET plate = $3, state = $4, class = $5, custodian_id = $6, pending_to = $7, deadline_at = $8, accept_by = $9, sweep_at = $10,
                    policy_version = $11, data = $12, rev = rev + 1, updated_at = $13, closed_at = $14, entry_checkpoint_id = $15
             WHERE id = $1 AND rev = $2",
            trip.id,
            rev,
            trip.plate.as_str(),
            trip.state.as_str(),
            trip.class.map(|c| c.as_str()),
            trip.custodian,
            trip.pending.as_ref().map(|p| p.to),
            trip.deadline.map(|d| d.at),
            trip.pending.as_ref().map(|p| p.accept_by),
            sweep_at(trip),
            trip.policy_version,
            data,
            now,
            trip.closed.as_ref().map(|c| c.at),
            trip.entry_checkpoint
        ))
        .await
        .map_err(open_plate)?;
    if n != 1 {
        return Err(Error::conflict("trip_changed", "行程已被他人更新，请刷新后重试", "the trip was changed meanwhile; reload and try again"));
    }
    crate::alerts::settle_trip(tx, &store.vault, trip, now).await?;
    add_parties(tx, trip).await
}

pub(crate) struct Loaded {
    pub(crate) trip: Trip,
    pub(crate) extra: Extra,
    pub(crate) rev: i64,
    pub(crate) jurisdiction: String,
}

pub(crate) fn loaded(r: &Row) -> Result<Loaded, Error> {
    let data: String = r.get("data")?;
    let s: Stored = serde_json::from_str(&data).map_err(Error::internal)?;
    Ok(Loaded { trip: s.trip, extra: s.extra, rev: r.get("rev")?, jurisdiction: r.get("jurisdiction")? })
}

/// The trip if the caller may see it: inside their division scope, or their unit is a party.
fn visible_trip(who: &Principal, id: Uuid) -> crate::db::Q {
    let (lo, hi, unit) = scope_args(&who.scope);
    q!(
        "SELECT t.data, t.rev, t.jurisdiction FROM trips t
         WHERE t.id = $4 AND ((t.jurisdiction >= $1 AND t.jurisdiction < $2)
               OR EXISTS (SELECT 1 FROM trip_parties p WHERE p.trip_id = t.id AND (p.unit_id = $3 OR p.unit_id = $5)))",
        lo,
        hi,
        unit,
        id,
        who.unit_id
    )
}

/// A trip named by id in a request (acted on, checked in, a landing tube's), inside the caller's
/// transaction: only one the caller may see; `NotFound` for an unknown trip and one out of
/// scope alike.
pub(crate) async fn load_visible(tx: &mut Tx, who: &Principal, id: Uuid) -> Result<Loaded, Error> {
    loaded(&tx.fetch_optional(visible_trip(who, id)).await?.ok_or(Error::NotFound("trip"))?)
}

/// How long a trip code stays valid after it is issued: the itinerary window.
const CODE_DAYS: i64 = 7;

async fn crew_of(store: &Store, trip: &Trip) -> Result<Vec<CrewView>, Error> {
    let issued = trip.checked_in_at;
    let rows = store
        .db
        .fetch_all(q!("SELECT seq, name, id_number_enc, phone_enc, health_code FROM trip_crew WHERE trip_id = $1 ORDER BY seq", trip.id))
        .await?;
    rows.iter()
        .map(|r| {
            let id: Vec<u8> = r.get("id_number_enc")?;
            let phone: Option<Vec<u8>> = r.get("phone_enc")?;
            let seq: i64 = r.get("seq")?;
            let health_code: Option<String> = r.get("health_code")?;
            // Codes exist once the checkpoint has classified the trip.
            let code = match (issued, trip.class) {
                (Some(at), Some(class)) => Some(crate::codes::issue(
                    &store.vault,
                    &crate::codes::TripCode {
                        t: trip.id,
                        s: seq,
                        k: class.as_str().into(),
                        h: health_code.clone(),
                        e: (at + chrono::Duration::days(CODE_DAYS)).timestamp(),
                    },
                )?),
                _ => None,
            };
            Ok(CrewView {
                code,
                seq,
                name: r.get("name")?,
                id_number: mask_kind(PersonalKind::IdNumber, &store.vault.open(ID_AAD, &id)?),
                phone: phone.map(|p| store.vault.open(PHONE_AAD, &p).map(|x| mask_kind(PersonalKind::Phone, &x))).transpose()?,
                health_code,
            })
        })
        .collect()
}

async fn view(store: &Store, l: Loaded) -> Result<TripView, Error> {
    let crew = crew_of(store, &l.trip).await?;
    let site_stays = crate::sites::stays_of_trip(store, l.trip.id).await?;
    Ok(TripView {
        site_stays,
        jurisdiction: l.jurisdiction,
        crew,
        reasons: l.extra.reasons,
        landing_tube: l.extra.landing_tube,
        whitelist: l.extra.whitelist,
        risk_hits: l.extra.risk_hits,
        trip: l.trip,
    })
}

pub(crate) fn trip_audit<'a>(action: &'a str, trip: &Trip, jurisdiction: &'a str, detail: serde_json::Value) -> audit::Entry<'a> {
    audit::Entry { action, object_type: "trip", object_id: trip.id.to_string(), jurisdiction, detail }
}

/// A cargo owner or receiver announces a truck ahead.
pub async fn report(store: &Store, who: &Principal, input: &ReportInput) -> Result<TripView, Error> {
    who.require(Permission::TripsReport)?;
    let reporter = actor_unit(who)?;
    let policy = policy_now(store).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    let mut tx = store.db.begin().await?;
    let (trip, jurisdiction, detail) = report_in(store, &mut tx, reporter, input, &rules, store.now()).await?;
    store.audited(who, trip_audit("trip.report", &trip, &jurisdiction, detail), tx).await?;
    get(store, who, trip.id).await
}

pub(crate) struct ReportChecked {
    plate: Plate,
    trailer: Option<Plate>,
    crew: Vec<CrewChecked>,
    jurisdiction: String,
}

/// Check one pre-report without writing (field errors name the input's fields).
async fn report_checked(tx: &mut Tx, input: &ReportInput, now: DateTime<Utc>) -> Result<ReportChecked, Error> {
    let dest = unit_kind_and_division(tx, input.destination_id).await?;
    report_check_known(input, dest.map(|(_, jurisdiction)| jurisdiction), now)
}

/// Check one pre-report whose destination's jurisdiction is already known (`None`: no active
/// unit has its id), without the database: the batch import looks its destinations up once.
pub(crate) fn report_check_known(input: &ReportInput, dest: Option<String>, now: DateTime<Utc>) -> Result<ReportChecked, Error> {
    let mut c = Check::default();
    let plate = parse_plate(&mut c, "plate", &input.plate);
    let trailer = input.trailer.as_deref().filter(|t| !t.trim().is_empty()).and_then(|t| parse_plate(&mut c, "trailer", t));
    let crew = check_crew(&mut c, &input.crew, false, crate::sheet::china_date(now));
    if input.crew.is_empty() {
        c.0.push(FieldError::required("crew"));
    }
    if input.expected_at < now {
        let e = TransitionError::EtaInPast;
        c.0.push(FieldError::new("expected_at", e.code(), e.zh(), e.en()));
    }
    if dest.is_none() {
        c.0.push(FieldError::new("destination_id", "unit_unknown", "目的地单位不存在", "the destination unit does not exist"));
    }
    c.done()?;
    match (plate, dest) {
        (Some(plate), Some(jurisdiction)) => Ok(ReportChecked { plate, trailer, crew, jurisdiction }),
        _ => Err(Error::internal("validation")),
    }
}

/// A checked pre-report made a trip, not yet written (the batch import writes many at once).
pub(crate) struct Reported {
    pub trip: Trip,
    pub jurisdiction: String,
    crew: Vec<CrewChecked>,
    pub detail: serde_json::Value,
}

/// The trip a checked pre-report (bound for `destination` at `expected_at`) makes.
pub(crate) fn report_new(
    reporter: Uuid,
    (destination, expected_at): (Uuid, DateTime<Utc>),
    checked: ReportChecked,
    rules: &TripRules<'_>,
    now: DateTime<Utc>,
) -> Result<Reported, Error> {
    let ReportChecked { plate, trailer, crew, jurisdiction } = checked;
    let trip = Trip::report(Uuid::now_v7(), reporter, Report { plate, trailer, destination, expected_at }, now, rules)?;
    let detail = serde_json::json!({"plate": trip.plate, "destination": destination, "expected_at": expected_at, "crew": crew.len(), "policy_version": rules.version});
    Ok(Reported { trip, jurisdiction, crew, detail })
}

/// Rows per multi-row statement of [`insert_reported`] (PostgreSQL; SQLite writes row by row).
const REPORTED_ROWS: usize = 10;
const TRIPS_HEAD: &str =
    "INSERT INTO trips (id, plate, state, class, destination_id, custodian_id, pending_to, deadline_at, accept_by, sweep_at, jurisdiction,
    policy_version, data, rev, created_at, updated_at, closed_at, entry_checkpoint_id)";
static SQL_TRIPS: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(TRIPS_HEAD, 18, REPORTED_ROWS, ""));
static SQL_TRIP: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(TRIPS_HEAD, 18, 1, ""));
const PARTIES_HEAD: &str = "INSERT INTO trip_parties (trip_id, unit_id)";
const PARTIES_TAIL: &str = "ON CONFLICT (trip_id, unit_id) DO NOTHING";
static SQL_PARTIES: std::sync::LazyLock<&'static str> =
    std::sync::LazyLock::new(|| crate::person_codes::values(PARTIES_HEAD, 2, REPORTED_ROWS, PARTIES_TAIL));
static SQL_PARTY: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(PARTIES_HEAD, 2, 1, PARTIES_TAIL));
const CREW_HEAD: &str = "INSERT INTO trip_crew (id, trip_id, seq, name, id_number_enc, id_number_bidx, phone_enc, health_code)";
static SQL_CREWS: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(CREW_HEAD, 8, REPORTED_ROWS, ""));
static SQL_CREW: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(CREW_HEAD, 8, 1, ""));

/// Write new pre-reported trips, their parties and crews in `tx`, several rows a statement:
/// what `report_in` writes for one, for a batch import of up to 100,000 (a statement a row was
/// a round trip a row on PostgreSQL). A plate with an open trip meanwhile fails the whole batch.
pub(crate) async fn insert_reported(store: &Store, tx: &mut Tx, reported: &[Reported], now: DateTime<Utc>) -> Result<(), Error> {
    let mut trips = Vec::with_capacity(reported.len());
    let mut parties = Vec::with_capacity(reported.len() * 2);
    let mut crews = Vec::with_capacity(reported.len() * 2);
    for r in reported {
        let trip = &r.trip;
        let data = serde_json::to_string(&Stored { trip: trip.clone(), extra: Extra::default() }).map_err(Error::internal)?;
        let row: Vec<crate::db::Val> = vec![
            trip.id.into(),
            trip.plate.as_str().into(),
            trip.state.as_str().into(),
            trip.class.map(|c| c.as_str()).into(),
            trip.destination.into(),
            trip.custodian.into(),
            trip.pending.as_ref().map(|p| p.to).into(),
            trip.deadline.map(|d| d.at).into(),
            trip.pending.as_ref().map(|p| p.accept_by).into(),
            sweep_at(trip).into(),
            r.jurisdiction.as_str().into(),
            trip.policy_version.into(),
            data.into(),
            1i64.into(),
            now.into(),
            now.into(),
            trip.closed.as_ref().map(|c| c.at).into(),
            trip.entry_checkpoint.into(),
        ];
        trips.push(row);
        // The parties `add_parties` gives a trip.
        let mut units: Vec<Uuid> =
            trip.chain.iter().map(|s| s.unit).chain([trip.destination]).chain(trip.reporter).chain(trip.entry_checkpoint).collect();
        units.extend(trip.pending.as_ref().map(|p| p.to));
        units.sort();
        units.dedup();
        parties.extend(units.into_iter().map(|u| vec![trip.id.into(), u.into()]));
        for (i, m) in r.crew.iter().enumerate() {
            let phone = m.phone.as_ref().map(|p| store.vault.seal(PHONE_AAD, p.as_str())).transpose()?;
            crews.push(vec![
                Uuid::now_v7().into(),
                trip.id.into(),
                (i as i64).into(),
                m.name.as_str().into(),
                store.vault.seal(ID_AAD, m.id.as_str())?.into(),
                store.vault.blind_index("id_number", m.id.as_str()).into(),
                phone.into(),
                m.health_code.map(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()).into(),
            ]);
        }
    }
    tx.execute_rows(&SQL_TRIPS, REPORTED_ROWS, &SQL_TRIP, &trips).await.map_err(open_plate)?;
    tx.execute_rows(&SQL_PARTIES, REPORTED_ROWS, &SQL_PARTY, &parties).await?;
    tx.execute_rows(&SQL_CREWS, REPORTED_ROWS, &SQL_CREW, &crews).await?;
    Ok(())
}

/// Check and write one pre-report inside `tx`; returns the trip, its jurisdiction and the
/// audit detail. Used by `report` and the batch import.
pub(crate) async fn report_in(
    store: &Store,
    tx: &mut Tx,
    reporter: Uuid,
    input: &ReportInput,
    rules: &TripRules<'_>,
    now: DateTime<Utc>,
) -> Result<(Trip, String, serde_json::Value), Error> {
    let ReportChecked { plate, trailer, crew, jurisdiction } = report_checked(tx, input, now).await?;
    let id = Uuid::now_v7();
    let trip = Trip::report(id, reporter, Report { plate, trailer, destination: input.destination_id, expected_at: input.expected_at }, now, rules)?;
    insert_trip(tx, &trip, &jurisdiction, &Extra::default(), now).await?;
    insert_crew(store, tx, id, &crew).await?;
    let detail = serde_json::json!({"plate": trip.plate, "destination": trip.destination, "expected_at": input.expected_at, "crew": crew.len(), "policy_version": rules.version});
    Ok((trip, jurisdiction, detail))
}

/// A checkpoint checks a truck in: the pre-reported trip for the plate, or a walk-in.
/// The policy in force classifies it and records why.
pub async fn check_in(store: &Store, who: &Principal, input: &CheckInInput) -> Result<TripView, Error> {
    who.require(Permission::TripsCheckIn)?;
    let checkpoint = actor_unit(who)?;
    let mut c = Check::default();
    let plate = parse_plate(&mut c, "plate", &input.plate);
    let trailer = input.trailer.as_deref().filter(|t| !t.trim().is_empty()).and_then(|t| parse_plate(&mut c, "trailer", t));
    let crew = check_crew(&mut c, &input.crew, true, store.today());
    let tube = c.take(baton_domain::testing::parse_barcode("landing_tube", &input.landing_tube));
    let now = store.now();
    if input.test_taken_at.is_some_and(|t| t > now) {
        c.0.push(FieldError::new("test_taken_at", "in_future", "检测时间不能晚于现在", "the test cannot be in the future"));
    }
    let stays = match crate::risk_areas::check_stays(&input.itinerary) {
        Ok(s) => s,
        Err(Error::Invalid(fs)) => {
            c.0.extend(fs.into_iter().map(|f| {
                let name = f.field.replacen("stays", "itinerary", 1);
                f.at(name)
            }));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let policy = policy_now(store).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    let hits = crate::risk_areas::match_stays(store, &stays, &policy.params.truck, now).await?;
    let mut tx = store.db.begin().await?;
    match unit_kind_and_division(&mut tx, checkpoint).await? {
        Some((kind, _)) if kind == UnitKind::Checkpoint.as_str() => {}
        _ => return Err(Error::conflict("not_a_checkpoint", "只有卡口可以登记货车", "only a checkpoint can check trucks in")),
    }
    let existing = match &plate {
        Some(p) => tx
            .fetch_optional(q!("SELECT data, rev, jurisdiction FROM trips WHERE plate = $1 AND closed_at IS NULL", p.as_str()))
            .await?
            .map(|r| loaded(&r))
            .transpose()?,
        None => None,
    };
    if let (Some(id), Some(seen)) = (input.trip_id, &plate) {
        // The pre-report picked by its id: an open trip in the caller's scope, or else only the
        // plate's own open trip (no more than finding it by the plate). Anything else is answered
        // as an unknown trip, and raises nothing on a trip the checkpoint may not see.
        let named = match load_visible(&mut tx, who, id).await {
            Ok(l) if !l.trip.is_closed() => Some(l),
            Ok(_) | Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        match named {
            Some(l) if l.trip.plate != *seen => {
                // Refused, and the broken link is raised at once to whoever holds the report.
                drop(tx);
                let mut tx = store.db.begin().await?;
                let detail = serde_json::json!({"reported": l.trip.plate, "seen": seen, "checkpoint": checkpoint});
                raise_now(&mut tx, store, &policy, &l.trip, &l.jurisdiction, BreachKind::PlateMismatch, l.trip.custodian, detail).await?;
                tx.commit().await?;
                return Err(TransitionError::PlateMismatch.into());
            }
            Some(_) => {}
            None if existing.as_ref().is_some_and(|l| l.trip.id == id) => {}
            None => return Err(Error::NotFound("trip")),
        }
    }
    let destination = input.destination_id.or(existing.as_ref().map(|l| l.trip.destination));
    let dest = match destination {
        Some(d) => unit_kind_and_division(&mut tx, d).await?.map(|x| (d, x.1)),
        None => None,
    };
    if dest.is_none() {
        c.0.push(FieldError::new("destination_id", "unit_unknown", "目的地单位不存在", "the destination unit does not exist"));
    }
    let reported_crew = existing.is_some() && crew.is_empty();
    if input.crew.is_empty() && existing.is_none() {
        c.0.push(FieldError::required("crew"));
    }
    c.done()?;
    let (Some(plate), Some((destination, jurisdiction)), Some(tube)) = (plate, dest, tube) else { return Err(Error::internal("validation")) };
    // The whitelist is matched here, not declared: the vehicle and every crew member must hold
    // an entry that counts now (a reported crew is matched by its reported ID numbers).
    let mut ids: Vec<IdNumber> = crew.iter().map(|m| m.id.clone()).collect();
    if ids.is_empty()
        && let Some(l) = &existing
    {
        for r in tx.fetch_all(q!("SELECT id_number_enc FROM trip_crew WHERE trip_id = $1 ORDER BY seq", l.trip.id)).await? {
            let enc: Vec<u8> = r.get("id_number_enc")?;
            ids.push(IdNumber::parse("id_number", &store.vault.open(ID_AAD, &enc)?).map_err(|e| Error::Invalid(vec![e]))?);
        }
    }
    let wl = crate::whitelist::match_as(
        store,
        who,
        &crate::whitelist::MatchQuery { plate: Some(plate.clone()), driver_id_numbers: ids, enterprise: None },
        now,
    )
    .await?;
    // The crew's worst colour decides (a reported crew without colours counts as green only if stated).
    let worst = crew.iter().filter_map(|m| m.health_code).max_by_key(|c| *c as u8).unwrap_or(CodeColour::Green);
    let test_age_hours = input.test_taken_at.map(|t| u32::try_from((now - t).num_hours().max(0)).unwrap_or(u32::MAX));
    let evidence = Evidence {
        health_code: worst,
        test_age_hours,
        risk: input.risk.max(baton_domain::classify::exposure_of(&hits, &policy.params.truck)),
        whitelisted: wl.whitelisted,
        antigen_positive: input.antigen_positive,
    };
    let (class, reasons) = classify(&evidence, &policy.params.truck);
    let ci = CheckIn { plate, trailer, class, destination, eta: input.eta };
    let extra = Extra {
        reasons: reasons.clone(),
        landing_tube: Some(tube.clone()),
        evidence: Some(evidence),
        whitelist: serde_json::to_value(&wl).ok(),
        risk_hits: hits,
    };
    let detail = serde_json::json!({"class": class.as_str(), "reasons": reasons.iter().map(|r| &r.code).collect::<Vec<_>>(), "policy_version": policy.version, "landing_tube": tube});
    let id = match existing {
        Some(l) if l.trip.state == TripState::Reported => {
            let next = l.trip.apply(&baton_domain::trip::Action::CheckIn(ci), checkpoint, now, &rules)?;
            update_trip(store, &mut tx, &next, &extra, l.rev, now).await?;
            if !reported_crew {
                // The crew seen is not the crew reported: checked in as seen, and raised at once.
                let bidx = |id: &str| store.vault.blind_index("id_number", id);
                let mut seen: Vec<Vec<u8>> = crew.iter().map(|m| bidx(m.id.as_str())).collect();
                let rows = tx.fetch_all(q!("SELECT id_number_bidx FROM trip_crew WHERE trip_id = $1", next.id)).await?;
                let mut reported: Vec<Vec<u8>> = rows.iter().map(|r| r.get("id_number_bidx")).collect::<Result<_, _>>()?;
                seen.sort();
                reported.sort();
                if seen != reported {
                    let detail = serde_json::json!({"reported": reported.len(), "seen": seen.len()});
                    raise_now(&mut tx, store, &policy, &next, &jurisdiction, BreachKind::IdentityMismatch, checkpoint, detail).await?;
                }
                insert_crew(store, &mut tx, next.id, &crew).await?;
            }
            open_landing_tube(&mut tx, store, who, &policy, &tube, next.id, now).await?;
            store.audited(who, trip_audit("trip.check_in", &next, &jurisdiction, detail), tx).await?;
            next.id
        }
        Some(_) => return Err(Error::field("plate", "trip_open_for_plate", "该车辆已有未闭环的行程", "this vehicle already has an open trip")),
        None => {
            let trip = Trip::walk_in(Uuid::now_v7(), checkpoint, ci, now, &rules)?;
            insert_trip(&mut tx, &trip, &jurisdiction, &extra, now).await?;
            insert_crew(store, &mut tx, trip.id, &crew).await?;
            open_landing_tube(&mut tx, store, who, &policy, &tube, trip.id, now).await?;
            store.audited(who, trip_audit("trip.check_in", &trip, &jurisdiction, detail), tx).await?;
            trip.id
        }
    };
    get(store, who, id).await
}

/// The check-in's landing tube becomes a tube in testing, in the check-in's transaction, with
/// the driver (the first crew member, as seen or as reported) in it.
async fn open_landing_tube(
    tx: &mut Tx,
    store: &Store,
    who: &Principal,
    policy: &PolicyVersion,
    barcode: &str,
    trip: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let r = tx.fetch_one(q!("SELECT name, id_number_enc, phone_enc FROM trip_crew WHERE trip_id = $1 ORDER BY seq LIMIT 1", trip)).await?;
    let id: Vec<u8> = r.get("id_number_enc")?;
    let phone: Option<Vec<u8>> = r.get("phone_enc")?;
    let driver = crate::testing::MemberInput {
        name: r.get("name")?,
        document_kind: baton_domain::person::DocumentKind::IdCard.as_str().into(),
        document_number: store.vault.open(ID_AAD, &id)?,
        phone: phone.map(|p| store.vault.open(PHONE_AAD, &p)).transpose()?,
        ..Default::default()
    };
    crate::testing::open_landing(tx, store, who, policy, barcode, trip, driver, now).await?;
    Ok(())
}

/// Raise a breach that is a fact seen now (a mismatch), not a passed deadline, to `custodian`.
#[allow(clippy::too_many_arguments)]
async fn raise_now(
    tx: &mut Tx,
    store: &Store,
    policy: &PolicyVersion,
    trip: &Trip,
    jurisdiction: &str,
    kind: BreachKind,
    custodian: Uuid,
    detail: serde_json::Value,
) -> Result<bool, Error> {
    let now = store.now();
    let a = crate::alerts::NewAlert {
        subject_kind: "trip",
        subject_id: trip.id,
        subject: trip.plate.as_str(),
        trip_id: Some(trip.id),
        kind: kind.as_str(),
        due_at: now,
        custodian,
        level: 0,
        rung1: None,
        emergency: false,
        jurisdiction,
        policy_version: policy.version,
        detail,
    };
    crate::alerts::raise(tx, store, &policy.params, now, &a).await
}

/// Any other transition, done by the caller's unit: handoffs, arrival, departure, exit…
/// A `propose_handoff` gets its id here.
pub async fn act(store: &Store, who: &Principal, id: Uuid, action: serde_json::Value) -> Result<TripView, Error> {
    who.require(Permission::TripsHandle)?;
    let actor = actor_unit(who)?;
    let mut action = action;
    if matches!(action.get("action").and_then(|a| a.as_str()), Some("propose_handoff" | "escort_fallback"))
        && let Some(o) = action.as_object_mut()
    {
        o.insert("id".into(), serde_json::json!(Uuid::now_v7()));
    }
    let action: Action = serde_json::from_value(action)
        .map_err(|e| Error::field("action", "action_invalid", format!("操作无效：{e}"), format!("invalid action: {e}")))?;
    if matches!(action, Action::CheckIn(_)) {
        return Err(Error::field("action", "action_invalid", "请使用卡口登记接口", "use the check-in endpoint"));
    }
    let policy = policy_now(store).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let l = load_visible(&mut tx, who, id).await?;
    let next = l.trip.apply(&action, actor, now, &rules)?;
    if let Action::ProposeHandoff { to, .. } | Action::EscortFallback { to, .. } = &action
        && unit_kind_and_division(&mut tx, *to).await?.is_none()
    {
        return Err(Error::field("to", "unit_unknown", "接收单位不存在", "the receiving unit does not exist"));
    }
    update_trip(store, &mut tx, &next, &l.extra, l.rev, now).await?;
    let name = format!("trip.{}", action.name());
    let detail = serde_json::json!({"from": l.trip.state.as_str(), "to": next.state.as_str(), "custodian": next.custodian, "action": action});
    store.audited(who, trip_audit(&name, &next, &l.jurisdiction, detail), tx).await?;
    get(store, who, id).await
}

/// The plate a truck shows at an exit checkpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitInput {
    pub plate: String,
}

/// An exit checkpoint scans a departing truck by its plate and closes its loop. The truck may
/// leave by any checkpoint of the county, not only the one it entered by, so the open trip is
/// found by the exact plate whoever's scope it is in (never listed: the plate is the one key);
/// the scan is that checkpoint's acceptance, which makes it the trip's last custodian and a party
/// that sees the trip from now on. Audited as the same `trip.exit_scan` as the scan on the trip.
pub async fn exit_by_plate(store: &Store, who: &Principal, input: &ExitInput) -> Result<TripView, Error> {
    who.require(Permission::TripsHandle)?;
    let checkpoint = actor_unit(who)?;
    let plate = Plate::parse("plate", &input.plate).map_err(|e| Error::Invalid(vec![e]))?;
    let policy = policy_now(store).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    let now = store.now();
    let mut tx = store.db.begin().await?;
    match unit_kind_and_division(&mut tx, checkpoint).await? {
        Some((kind, _)) if kind == UnitKind::Checkpoint.as_str() => {}
        _ => return Err(Error::conflict("not_a_checkpoint", "只有卡口可以出口核销", "only a checkpoint can scan a truck out")),
    }
    let found = tx.fetch_optional(q!("SELECT data, rev, jurisdiction FROM trips WHERE plate = $1 AND closed_at IS NULL", plate.as_str())).await?;
    let Some(l) = found.map(|r| loaded(&r)).transpose()? else {
        return Err(Error::field("plate", "trip_unknown", "该车牌没有未闭环的行程", "no open trip for this plate"));
    };
    let action = Action::ExitScan;
    let next = l.trip.apply(&action, checkpoint, now, &rules)?;
    update_trip(store, &mut tx, &next, &l.extra, l.rev, now).await?;
    let detail = serde_json::json!({"from": l.trip.state.as_str(), "to": next.state.as_str(), "custodian": next.custodian, "action": action, "by_plate": true});
    store.audited(who, trip_audit("trip.exit_scan", &next, &l.jurisdiction, detail), tx).await?;
    get(store, who, next.id).await
}

/// A trip and its jurisdiction, regardless of scope (for a signed code, which is its own credential).
pub(crate) async fn by_id(store: &Store, id: Uuid) -> Result<(Trip, String), Error> {
    let r = store.db.fetch_optional(q!("SELECT data, rev, jurisdiction FROM trips WHERE id = $1", id)).await?.ok_or(Error::NotFound("trip"))?;
    let l = loaded(&r)?;
    Ok((l.trip, l.jurisdiction))
}

pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<TripView, Error> {
    who.require(Permission::TripsRead)?;
    let r = store.db.fetch_optional(visible_trip(who, id)).await?.ok_or(Error::NotFound("trip"))?;
    view(store, loaded(&r)?).await
}

#[derive(Debug, Clone, Serialize)]
pub struct TripSummary {
    pub id: Uuid,
    pub plate: String,
    pub state: String,
    pub class: Option<String>,
    pub custodian_id: Uuid,
    pub custodian_name: String,
    pub destination_id: Uuid,
    pub destination_name: String,
    pub deadline_at: Option<DateTime<Utc>>,
    pub pending_to: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripFilter {
    pub state: Option<String>,
    pub class: Option<String>,
    pub plate: Option<String>,
    /// Only trips whose custodian, or pending receiver, is the caller's unit.
    pub mine: Option<bool>,
    pub open: Option<bool>,
}

/// A page of trips, newest first.
pub async fn list(store: &Store, who: &Principal, f: &TripFilter, page: &PageQuery) -> Result<Paged<TripSummary>, Error> {
    who.require(Permission::TripsRead)?;
    let page = Page::<(DateTime<Utc>, Uuid)>::read("trips", page)?;
    let (at, id) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let mine = if f.mine == Some(true) { who.unit_id } else { None };
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT t.id, t.plate, t.state, t.class, t.custodian_id, c.name AS custodian_name, t.destination_id, d.name AS destination_name,
                    t.deadline_at, t.pending_to, t.created_at, t.closed_at
             FROM trips t JOIN units c ON c.id = t.custodian_id JOIN units d ON d.id = t.destination_id
             WHERE ((t.jurisdiction >= $1 AND t.jurisdiction < $2)
                    OR EXISTS (SELECT 1 FROM trip_parties p WHERE p.trip_id = t.id AND (p.unit_id = $3 OR p.unit_id = $4)))
               AND ($5 IS NULL OR t.state = $5) AND ($6 IS NULL OR t.class = $6) AND ($7 IS NULL OR t.plate = $7)
               AND ($8 IS NULL OR t.custodian_id = $8 OR t.pending_to = $8)
               AND ($9 IS NULL OR ($9 = TRUE AND t.closed_at IS NULL) OR ($9 = FALSE AND t.closed_at IS NOT NULL))
               AND ($10 IS NULL OR (t.created_at, t.id) < ($10, $11))
             ORDER BY t.created_at DESC, t.id DESC LIMIT $12",
            lo,
            hi,
            unit,
            who.unit_id,
            f.state.clone().filter(|s| !s.is_empty()),
            f.class.clone().filter(|s| !s.is_empty()),
            f.plate.as_deref().map(|p| Plate::parse("plate", p).map(|p| p.as_str().to_string()).unwrap_or_else(|_| p.to_string())),
            mine,
            f.open,
            at,
            id,
            page.fetch()
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(TripSummary {
                id: r.get("id")?,
                plate: r.get("plate")?,
                state: r.get("state")?,
                class: r.get("class")?,
                custodian_id: r.get("custodian_id")?,
                custodian_name: r.get("custodian_name")?,
                destination_id: r.get("destination_id")?,
                destination_name: r.get("destination_name")?,
                deadline_at: r.get("deadline_at")?,
                pending_to: r.get("pending_to")?,
                created_at: r.get("created_at")?,
                closed_at: r.get("closed_at")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |t| (t.created_at, t.id)))
}

/// What the driver sees at `/code/{token}`: the trip now, without an account. The token is
/// the credential; the page shows no personal data beyond the crew member's masked name.
#[derive(Debug, Clone, Serialize)]
pub struct CodeView {
    pub code: crate::codes::TripCode,
    pub plate: String,
    pub state: TripState,
    pub class: Option<baton_domain::trip::ControlClass>,
    pub deadline: Option<baton_domain::trip::Deadline>,
    pub destination_name: String,
    pub custodian_name: String,
}

pub async fn open_code(store: &Store, token: &str) -> Result<CodeView, Error> {
    let code = crate::codes::open(&store.vault, token, store.now())?;
    let r = store.db.fetch_optional(q!("SELECT data, rev, jurisdiction FROM trips WHERE id = $1", code.t)).await?.ok_or(Error::NotFound("trip"))?;
    let l = loaded(&r)?;
    let name = |id: Uuid| {
        let store = store.clone();
        async move {
            store
                .db
                .fetch_optional(q!("SELECT name FROM units WHERE id = $1", id))
                .await
                .map(|r| r.and_then(|r| r.get::<String>("name").ok()).unwrap_or_default())
        }
    };
    Ok(CodeView {
        plate: l.trip.plate.as_str().to_string(),
        state: l.trip.state,
        class: l.trip.class,
        deadline: l.trip.deadline,
        destination_name: name(l.trip.destination).await?,
        custodian_name: name(l.trip.custodian).await?,
        code,
    })
}

/// Bench data (`baton bench --scenario checkin`): walk-in `pass` trips at `checkpoint` bound for
/// `destination` until `target` trips are open, written straight to the table in batches of
/// 1,000 (no crew, no audit entries), so that the deadline watcher is measured at full load.
/// Returns how many were added.
pub async fn seed_open(store: &Store, checkpoint: Uuid, destination: Uuid, target: u64, eta: DateTime<Utc>) -> Result<u64, Error> {
    let open: i64 = store.db.fetch_one(q!("SELECT COUNT(*) AS n FROM trips WHERE closed_at IS NULL")).await?.get("n")?;
    let missing = target.saturating_sub(u64::try_from(open).unwrap_or(0));
    let policy = policy_now(store).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    let jurisdiction: String = store.db.fetch_one(q!("SELECT jurisdiction FROM units WHERE id = $1", destination)).await?.get("jurisdiction")?;
    let letters = ["A", "B", "C", "E", "F", "G", "H", "J", "K", "L"];
    let now = store.now();
    let mut done = 0;
    while done < missing {
        let mut tx = store.db.begin().await?;
        for i in done..(done + 1000).min(missing) {
            let letter = letters.get(usize::try_from(i / 100_000).unwrap_or(0) % letters.len()).copied().unwrap_or("A");
            let plate = Plate::parse("plate", &format!("冀{letter}{:05}", i % 100_000)).map_err(|e| Error::Invalid(vec![e]))?;
            let ci = CheckIn { plate, trailer: None, class: baton_domain::trip::ControlClass::Pass, destination, eta };
            let trip = Trip::walk_in(Uuid::now_v7(), checkpoint, ci, now, &rules)?;
            insert_trip(&mut tx, &trip, &jurisdiction, &Extra::default(), now).await?;
        }
        tx.commit().await?;
        done = (done + 1000).min(missing);
    }
    Ok(missing)
}

/// After a key rotation: re-seal crew personal data not under the active key.
pub async fn reseal_all(store: &Store) -> Result<u64, Error> {
    use crate::vault::SealedColumn;
    let cols = [
        SealedColumn { column: "id_number_enc", aad: ID_AAD, update: "UPDATE trip_crew SET id_number_enc = $2 WHERE id = $1" },
        SealedColumn { column: "phone_enc", aad: PHONE_AAD, update: "UPDATE trip_crew SET phone_enc = $2 WHERE id = $1" },
    ];
    crate::vault::reseal(store, "trip_crew", "SELECT id, id_number_enc, phone_enc FROM trip_crew", &cols).await
}

/// The overstay rule (default 6 h for `closed_loop`): a crew that stays past the limit is
/// handed to the township of the destination as community management. The watcher proposes
/// that handoff on the custodian's behalf; the township must still accept it. Returns the
/// trip as it now stands (unchanged when there is no township unit or a handoff is pending).
pub(crate) async fn propose_conversion(
    store: &Store,
    tx: &mut Tx,
    id: Uuid,
    now: DateTime<Utc>,
    rules: &TripRules<'_>,
) -> Result<Option<Trip>, Error> {
    let Some(r) = tx.fetch_optional(q!("SELECT data, rev, jurisdiction FROM trips WHERE id = $1", id)).await? else { return Ok(None) };
    let l = loaded(&r)?;
    if l.trip.pending.is_some() || l.trip.state != TripState::AtDestination {
        return Ok(None);
    }
    let township_code: String = l.jurisdiction.chars().take(9).collect();
    let township = tx
        .fetch_optional(q!(
            "SELECT id FROM units WHERE kind = 'township' AND active = TRUE AND jurisdiction = $1 ORDER BY created_at LIMIT 1",
            township_code
        ))
        .await?
        .map(|r| r.get::<Uuid>("id"))
        .transpose()?;
    let Some(township) = township else { return Ok(None) };
    let action = Action::convert(Uuid::now_v7(), township);
    let next = l.trip.apply(&action, l.trip.custodian, now, rules)?;
    update_trip(store, tx, &next, &l.extra, l.rev, now).await?;
    let who = Principal::system("deadline-watcher");
    let detail = serde_json::json!({"from": l.trip.state.as_str(), "to": next.state.as_str(), "custodian": next.custodian, "action": action, "rule": "overstay"});
    audit::append(tx, &store.vault, now, &who, trip_audit("trip.propose_handoff", &next, &l.jurisdiction, detail)).await?;
    Ok(Some(next))
}
