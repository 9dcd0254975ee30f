//! Mass-screening rounds (全员核酸筛查轮次) and pool-size planning.
//!
//! A round covers an area (the county, a township or a village) for a time window. Its
//! **expected** persons are everyone registered as living in the area (`persons`, by
//! jurisdiction prefix), counted live; a person is **sampled** once they are in a tube tied
//! to the round or in any tube during the round's window, **resulted** once one of those
//! tubes has a negative or positive result. Coverage is shown per village and per township,
//! always cut to the viewer's scope, and the missing list exports to xlsx with personal data
//! masked unless revealed (`personal.reveal`, audited).
//!
//! Planning: positivity over a recent window, per person tested (confirmed positives are
//! single-tube positives; members of positive pools count as tested), turned into a pool
//! size by Dorfman (1943) among the sizes the policy allows, beside the unconstrained best.

use crate::db::{Row, Tx};
use crate::page::{Page, PageQuery, Paged};
use crate::sheet::{XCell, write_sheet};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::division::{Divisions, Level, prefix_end};
use baton_domain::person::DocumentKind;
use baton_domain::role::Permission;
use baton_domain::scope::Scope;
use baton_domain::testing::{self as t, Priority};
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The vault's associated data for the registry's sealed columns (see `persons`).
const DOCUMENT_AAD: &str = "persons.document";
const PHONE_AAD: &str = "persons.phone";

/// The longest round: a week.
const MAX_WINDOW_HOURS: i64 = 168;
/// The largest pool the unconstrained optimum is searched up to.
pub const MAX_POOL_SEARCH: u32 = 100;
/// Rows in one missing-list export.
const MAX_EXPORT: i64 = 200_000;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundInput {
    pub name: String,
    /// The county, a township or a village: a division code or name inside the caller's scope.
    pub area: String,
    /// Default: now.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// Default: the start plus the policy's `testing.round_hours`.
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
    /// `routine` (default) or `expedited`: the priority its tubes take unless they say otherwise.
    #[serde(default)]
    pub priority: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub id: Uuid,
    pub name: String,
    pub area: String,
    pub area_name: String,
    pub starts_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub priority: Priority,
    /// `upcoming`, `open` or `closed`, at the time of asking.
    pub state: &'static str,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub policy_version: i64,
}

fn round_of(r: &Row, now: DateTime<Utc>) -> Result<Round, Error> {
    let area: String = r.get("jurisdiction")?;
    let starts_at: DateTime<Utc> = r.get("starts_at")?;
    let due_at: DateTime<Utc> = r.get("due_at")?;
    let priority: String = r.get("priority")?;
    Ok(Round {
        id: r.get("id")?,
        name: r.get("name")?,
        area_name: Divisions::get_all().full_name(&area),
        area,
        starts_at,
        due_at,
        priority: Priority::parse(&priority).ok_or_else(|| Error::internal(format!("stored priority {priority}")))?,
        state: if now < starts_at {
            "upcoming"
        } else if now < due_at {
            "open"
        } else {
            "closed"
        },
        created_by: r.get("created_by")?,
        created_at: r.get("created_at")?,
        policy_version: r.get("policy_version")?,
    })
}

/// Open a round for an area within the caller's scope.
pub async fn create(store: &Store, who: &Principal, input: &RoundInput) -> Result<Round, Error> {
    who.require(Permission::TestingManage)?;
    let now = store.now();
    let policy = crate::policy::current(store, now).await?;
    let mut c = Check::default();
    let name = c.take(text_field("name", &input.name, 1, 80));
    let area = c.take(area_field("area", who, &input.area));
    let priority =
        match input.priority.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Some(Priority::Routine),
            Some(p) => c.take(Priority::parse(p).ok_or_else(|| {
                FieldError::new("priority", "priority_unknown", "优先级应为 routine 或 expedited", "priority is routine or expedited")
            })),
        };
    let starts_at = input.starts_at.unwrap_or(now);
    let due_at = input.due_at.unwrap_or(starts_at + Duration::hours(i64::from(policy.params.testing.round_hours)));
    if due_at <= starts_at {
        c.0.push(FieldError::new("due_at", "due_before_start", "截止时间应晚于开始时间", "the due time must be after the start"));
    } else if due_at - starts_at > Duration::hours(MAX_WINDOW_HOURS) {
        c.0.push(FieldError::new("due_at", "window_too_long", "一轮筛查最长 7 天", "a round lasts at most 7 days"));
    } else if due_at <= now {
        c.0.push(FieldError::new("due_at", "in_past", "截止时间已过", "the due time has already passed"));
    }
    c.done()?;
    let (Some(name), Some(area), Some(priority)) = (name, area, priority) else { return Err(Error::internal("validation")) };
    let id = Uuid::now_v7();
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO screening_rounds (id, name, jurisdiction, starts_at, due_at, priority, created_by, created_at, policy_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        id,
        name.clone(),
        area.clone(),
        starts_at,
        due_at,
        priority.as_str(),
        who.name.clone(),
        now,
        policy.version
    ))
    .await?;
    let detail = serde_json::json!({"name": name, "area": area, "starts_at": starts_at, "due_at": due_at, "priority": priority.as_str()});
    store
        .audited(
            who,
            audit::Entry { action: "testing.round.create", object_type: "screening_round", object_id: id.to_string(), jurisdiction: &area, detail },
            tx,
        )
        .await?;
    get(store, who, id).await
}

/// A county, township or village (by code or name) inside the caller's division scope.
fn area_field(field: &str, who: &Principal, s: &str) -> Result<String, FieldError> {
    if s.trim().is_empty() {
        return Err(FieldError::required(field));
    }
    let d = Divisions::get_all().resolve(field, s)?;
    if !matches!(d.level, Level::County | Level::Township | Level::Village) {
        return Err(FieldError::new(field, "division_level", "请选择县、乡镇或村(社区)", "choose the county, a township or a village"));
    }
    if !matches!(who.scope, Scope::Division { .. }) || !who.scope.covers(d.code, None) {
        return Err(FieldError::new(field, "outside_scope", "该行政区划不在您的辖区内", "this division is outside your jurisdiction"));
    }
    Ok(d.code.to_string())
}

/// The division a caller's view is anchored at, and the codes above it (a round of the
/// county is visible to a township, which sees its own part of it).
fn anchor(who: &Principal) -> (String, [String; 5]) {
    let code = match &who.scope {
        Scope::Division { code } => code.clone(),
        Scope::Unit { division, .. } => division.clone(),
    };
    let ups = [2usize, 4, 6, 9, 12].map(|n| if n <= code.len() { code[..n].to_string() } else { code.clone() });
    (code, ups)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundFilter {
    /// `upcoming`, `open` or `closed`.
    #[serde(default)]
    pub state: Option<String>,
}

/// A round named by id in a request (a tube sampled for it), inside the caller's transaction:
/// only one the caller may see (of their area or an area above it). `None` for an unknown
/// round and another area's alike.
pub(crate) async fn nameable(tx: &mut Tx, who: &Principal, id: Uuid, now: DateTime<Utc>) -> Result<Option<Round>, Error> {
    let (code, ups) = anchor(who);
    let [a, b, c, d, e] = ups;
    let found = tx
        .fetch_optional(q!(
            "SELECT id, name, jurisdiction, starts_at, due_at, priority, created_by, created_at, policy_version FROM screening_rounds
             WHERE ((jurisdiction >= $1 AND jurisdiction < $2) OR jurisdiction IN ($3, $4, $5, $6, $7)) AND id = $8",
            code.clone(),
            prefix_end(&code),
            a,
            b,
            c,
            d,
            e,
            id
        ))
        .await?;
    found.map(|r| round_of(&r, now)).transpose()
}

/// Rounds of the caller's area and of the areas above it, newest first: one by `id`, or a
/// page of those in `state` (`upcoming`, `open`, `closed`; all for none).
async fn fetch(
    store: &Store,
    who: &Principal,
    id: Option<Uuid>,
    state: Option<&str>,
    page: &Page<(DateTime<Utc>, Uuid)>,
) -> Result<Vec<Round>, Error> {
    who.require(Permission::TestingRead)?;
    let (code, ups) = anchor(who);
    let [a, b, c, d, e] = ups;
    let (at, after) = page.parts();
    let now = store.now();
    let rows = store
        .db
        .scan(q!(
            "SELECT id, name, jurisdiction, starts_at, due_at, priority, created_by, created_at, policy_version FROM screening_rounds
             WHERE ((jurisdiction >= $1 AND jurisdiction < $2) OR jurisdiction IN ($3, $4, $5, $6, $7)) AND ($8 IS NULL OR id = $8)
               AND ($9 IS NULL OR ($9 = 'upcoming' AND starts_at > $10) OR ($9 = 'open' AND starts_at <= $10 AND due_at > $10)
                    OR ($9 = 'closed' AND due_at <= $10))
               AND ($11 IS NULL OR (starts_at, id) < ($11, $12))
             ORDER BY starts_at DESC, id DESC LIMIT $13",
            code.clone(),
            prefix_end(&code),
            a,
            b,
            c,
            d,
            e,
            id,
            state,
            now,
            at,
            after,
            page.fetch()
        ))
        .await?;
    rows.iter().map(|r| round_of(r, now)).collect()
}

/// A page of the rounds of the caller's area and of the areas above it, newest first.
pub async fn list(store: &Store, who: &Principal, f: &RoundFilter, page: &PageQuery) -> Result<Paged<Round>, Error> {
    let page = Page::read("rounds", page)?;
    let state = f.state.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = state
        && !["upcoming", "open", "closed"].contains(&s)
    {
        return Err(Error::field("state", "state_unknown", "状态应为 upcoming、open 或 closed", "state is upcoming, open or closed"));
    }
    let list = fetch(store, who, None, state, &page).await?;
    Ok(page.finish(list, |r| (r.starts_at, r.id)))
}

pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<Round, Error> {
    let first = Page::read("rounds", &PageQuery::default())?;
    fetch(store, who, Some(id), None, &first).await?.into_iter().next().ok_or(Error::NotFound("round"))
}

/// One line of a coverage table: a village (or a township, or persons placed only at
/// township or county level).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AreaCoverage {
    pub code: String,
    pub name: String,
    pub expected: i64,
    pub sampled: i64,
    pub resulted: i64,
    /// In a positive tube of the round (a positive pool's members are pending re-check).
    pub positive: i64,
    pub missing: i64,
    /// Sampled of expected, 0 to 1 (0 when nobody is expected).
    pub coverage: f64,
}

impl AreaCoverage {
    fn add(&mut self, o: &AreaCoverage) {
        self.expected += o.expected;
        self.sampled += o.sampled;
        self.resulted += o.resulted;
        self.positive += o.positive;
        self.finish();
    }

    fn finish(&mut self) {
        self.missing = self.expected - self.sampled;
        self.coverage = if self.expected > 0 { self.sampled as f64 / self.expected as f64 } else { 0.0 };
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub round: Round,
    pub total: AreaCoverage,
    /// Only for a county round: one line per township.
    pub townships: Vec<AreaCoverage>,
    pub villages: Vec<AreaCoverage>,
    pub at: DateTime<Utc>,
}

/// The persons sampled for a round: in a tube tied to it, or sampled during its window.
/// `$1` round, `$2`/`$3` window; the caller's statement continues after `sampled`.
macro_rules! sampled_cte {
    ($rest:literal) => {
        concat!(
            "WITH s AS (
                SELECT m.person_id, t.outcome FROM tube_members m JOIN tubes t ON t.id = m.tube_id WHERE t.round_id = $1
                UNION ALL
                SELECT m.person_id, t.outcome FROM tube_members m JOIN tubes t ON t.id = m.tube_id WHERE m.added_at >= $2 AND m.added_at <= $3
             ), sampled AS (
                SELECT person_id, MAX(CASE WHEN outcome IN ('negative', 'positive') THEN 1 ELSE 0 END) AS resulted,
                       MAX(CASE WHEN outcome = 'positive' THEN 1 ELSE 0 END) AS positive
                FROM s GROUP BY person_id
             ) ",
            $rest
        )
    };
}

fn place_name(code: &str, lang_zh: bool) -> String {
    let d = Divisions::get_all();
    match d.get(code) {
        Some(x) if x.level == Level::Village => x.name.to_string(),
        Some(x) => format!("{}{}", x.name, if lang_zh { "(未落到村)" } else { " (no village given)" }),
        None => code.to_string(),
    }
}

/// Expected, sampled, resulted and positive per village, in the caller's scope, now.
pub async fn coverage(store: &Store, who: &Principal, id: Uuid) -> Result<Coverage, Error> {
    let round = get(store, who, id).await?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .scan(q!(
            sampled_cte!(
                "SELECT substr(p.jurisdiction, 1, 12) AS area, COUNT(*) AS expected, COUNT(sampled.person_id) AS sampled,
                        COALESCE(SUM(sampled.resulted), 0) AS resulted, COALESCE(SUM(sampled.positive), 0) AS positive
                 FROM persons p LEFT JOIN sampled ON sampled.person_id = p.id
                 WHERE p.merged_into IS NULL AND p.jurisdiction >= $4 AND p.jurisdiction < $5
                   AND ((p.jurisdiction >= $6 AND p.jurisdiction < $7) OR p.unit_id = $8)
                 GROUP BY substr(p.jurisdiction, 1, 12) ORDER BY 1"
            ),
            round.id,
            round.starts_at,
            round.due_at,
            round.area.clone(),
            prefix_end(&round.area),
            lo,
            hi,
            unit
        ))
        .await?;
    let mut villages = Vec::with_capacity(rows.len());
    let mut total = AreaCoverage { code: round.area.clone(), name: round.area_name.clone(), ..Default::default() };
    let mut townships: BTreeMap<String, AreaCoverage> = BTreeMap::new();
    for r in &rows {
        let code: String = r.get("area")?;
        let mut line = AreaCoverage {
            name: place_name(&code, true),
            code,
            expected: r.get("expected")?,
            sampled: r.get("sampled")?,
            resulted: r.get("resulted")?,
            positive: r.get("positive")?,
            ..Default::default()
        };
        line.finish();
        total.add(&line);
        let twp: String = line.code.chars().take(9).collect();
        townships
            .entry(twp.clone())
            .or_insert_with(|| AreaCoverage {
                name: Divisions::get_all().get(&twp).map(|d| d.name.to_string()).unwrap_or(twp.clone()),
                code: twp,
                ..Default::default()
            })
            .add(&line);
        villages.push(line);
    }
    total.finish();
    let townships = if round.area.len() < 9 { townships.into_values().collect() } else { Vec::new() };
    Ok(Coverage { round, total, townships, villages, at: store.now() })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingQuery {
    /// Only this village (or township) of the round's area.
    #[serde(default)]
    pub village: Option<String>,
    /// Export only: personal data in full (needs `personal.reveal`; audited).
    #[serde(default)]
    pub reveal: bool,
}

/// A person expected and not yet sampled, as lists show them: masked.
#[derive(Debug, Clone, Serialize)]
pub struct MissingPerson {
    pub person_id: Uuid,
    pub name: String,
    pub document_kind: String,
    pub document_masked: String,
    pub phone_masked: Option<String>,
    pub jurisdiction: String,
    pub place: String,
}

fn village_filter(round: &Round, village: Option<&str>) -> Result<String, Error> {
    let v = village.map(str::trim).unwrap_or("");
    if v.is_empty() {
        return Ok(String::new());
    }
    if !v.bytes().all(|b| b.is_ascii_digit()) || !v.starts_with(&round.area) {
        return Err(Error::field("village", "outside_round", "该区划不在本轮筛查范围内", "this division is outside the round's area"));
    }
    Ok(v.to_string())
}

/// Up to `limit` persons expected and not sampled, by division and name, after `after`.
async fn missing_rows(
    store: &Store,
    who: &Principal,
    round: &Round,
    village: &str,
    after: Option<(String, String, Uuid)>,
    limit: i64,
) -> Result<Vec<Row>, Error> {
    let (lo, hi, unit) = scope_args(&who.scope);
    let (aj, an, ai) = crate::page::Key::parts(after);
    store
        .db
        .scan(q!(
            sampled_cte!(
                "SELECT p.id, p.name, p.document_kind, p.document_masked, p.phone_masked, p.jurisdiction, p.document_enc, p.phone_enc
                 FROM persons p
                 WHERE p.merged_into IS NULL AND p.jurisdiction >= $4 AND p.jurisdiction < $5
                   AND ((p.jurisdiction >= $6 AND p.jurisdiction < $7) OR p.unit_id = $8)
                   AND ($9 = '' OR (p.jurisdiction >= $9 AND p.jurisdiction < $10))
                   AND NOT EXISTS (SELECT 1 FROM sampled WHERE sampled.person_id = p.id)
                   AND ($12 IS NULL OR (p.jurisdiction, p.name, p.id) > ($12, $13, $14))
                 ORDER BY p.jurisdiction, p.name, p.id LIMIT $11"
            ),
            round.id,
            round.starts_at,
            round.due_at,
            round.area.clone(),
            prefix_end(&round.area),
            lo,
            hi,
            unit,
            village.to_string(),
            prefix_end(village),
            limit,
            aj,
            an,
            ai
        ))
        .await
}

fn missing_of(r: &Row) -> Result<MissingPerson, Error> {
    let j: String = r.get("jurisdiction")?;
    Ok(MissingPerson {
        person_id: r.get("id")?,
        name: r.get("name")?,
        document_kind: r.get("document_kind")?,
        document_masked: r.get("document_masked")?,
        phone_masked: r.get("phone_masked")?,
        place: Divisions::get_all().full_name(&j),
        jurisdiction: j,
    })
}

/// A page of who is expected and not yet sampled (masked), village by village.
pub async fn missing(store: &Store, who: &Principal, id: Uuid, f: &MissingQuery, page: &PageQuery) -> Result<Paged<MissingPerson>, Error> {
    let page = Page::read("round_missing", page)?;
    let round = get(store, who, id).await?;
    let village = village_filter(&round, f.village.as_deref())?;
    let rows = missing_rows(store, who, &round, &village, page.after.clone(), page.fetch()).await?;
    let list = rows.iter().map(missing_of).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |m| (m.jurisdiction.clone(), m.name.clone(), m.person_id)))
}

/// The missing list as xlsx, for the village teams to go door to door. Personal data is masked
/// unless `reveal` (needs `personal.reveal`); every export is audited.
pub async fn export_missing(store: &Store, who: &Principal, id: Uuid, f: &MissingQuery) -> Result<Vec<u8>, Error> {
    if f.reveal {
        who.require(Permission::PersonalReveal)?;
    }
    let round = get(store, who, id).await?;
    let village = village_filter(&round, f.village.as_deref())?;
    let rows = missing_rows(store, who, &round, &village, None, MAX_EXPORT).await?;
    let mut out: Vec<Vec<XCell>> = Vec::with_capacity(rows.len() + 1);
    out.push(
        ["村(社区)代码", "村(社区)", "姓名", "证件类型", "证件号码", "电话", "人员编号"].iter().map(|s| XCell::Text((*s).to_string())).collect(),
    );
    for r in &rows {
        let m = missing_of(r)?;
        let (document, phone) = if f.reveal {
            let document_enc: Vec<u8> = r.get("document_enc")?;
            let phone_enc: Option<Vec<u8>> = r.get("phone_enc")?;
            (store.vault.open(DOCUMENT_AAD, &document_enc)?, phone_enc.map(|p| store.vault.open(PHONE_AAD, &p)).transpose()?.unwrap_or_default())
        } else {
            (m.document_masked.clone(), m.phone_masked.clone().unwrap_or_default())
        };
        let kind = DocumentKind::parse(&m.document_kind).map(|k| k.label(true).to_string()).unwrap_or(m.document_kind.clone());
        out.push(
            [m.jurisdiction.clone(), m.place.clone(), m.name.clone(), kind, document, phone, m.person_id.to_string()]
                .into_iter()
                .map(XCell::Text)
                .collect(),
        );
    }
    let bytes = write_sheet("未采样", &out)?;
    let tx = store.db.begin().await?;
    let detail = serde_json::json!({"round": round.name, "village": village, "rows": rows.len(), "revealed": f.reveal});
    store
        .audited(
            who,
            audit::Entry {
                action: "testing.round.export_missing",
                object_type: "screening_round",
                object_id: round.id.to_string(),
                jurisdiction: &round.area,
                detail,
            },
            tx,
        )
        .await?;
    Ok(bytes)
}

// ---------- pool-size planning ----------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    /// Days of results to measure positivity over (default 7, 1 to 60).
    #[serde(default)]
    pub days: Option<i64>,
    /// A division code: positivity among persons living there (default: the caller's area).
    #[serde(default)]
    pub area: Option<String>,
    /// Plan for a round: its area, and the persons still to sample.
    #[serde(default)]
    pub round_id: Option<Uuid>,
    /// A prevalence to plan with instead of the measured one (0 to 0.5), e.g. 0.01.
    #[serde(default)]
    pub prevalence: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PoolChoice {
    pub pool_size: u32,
    /// Expected tests per person (Dorfman): `1/k + 1 − (1−p)^k`; 1 for single tubes.
    pub tests_per_person: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub area: String,
    pub area_name: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Persons with a negative or positive result in the window (in the caller's scope).
    pub tested: i64,
    /// Of them, confirmed positive by a single tube.
    pub positive: i64,
    /// Of them, members of a positive pool (pending re-check until their single tube).
    pub in_positive_pools: i64,
    /// `positive / tested`, when anyone was tested.
    pub positivity: Option<f64>,
    /// The prevalence planned with: the one given, else the measured positivity.
    pub prevalence: Option<f64>,
    /// `given`, `measured` or `none` (nobody tested and none given: no suggestion).
    pub prevalence_source: &'static str,
    /// Every pool size the policy allows, with its expected tests per person.
    pub allowed: Vec<PoolChoice>,
    /// The best of the allowed sizes.
    pub suggested: Option<PoolChoice>,
    /// The best size of all (searched up to `MAX_POOL_SEARCH`).
    pub best: Option<PoolChoice>,
    /// Whether pooling saves tests at all at this prevalence.
    pub pooling_pays: Option<bool>,
    /// For a round: the persons still to sample, and what they need at the suggested size.
    pub to_sample: Option<i64>,
    pub tubes_needed: Option<i64>,
    pub tests_expected: Option<f64>,
    pub policy_version: i64,
}

/// Positivity over the last days and the pool size it suggests.
pub async fn plan(store: &Store, who: &Principal, f: &PlanQuery) -> Result<Plan, Error> {
    who.require(Permission::TestingRead)?;
    let now = store.now();
    let policy = crate::policy::current(store, now).await?;
    let mut c = Check::default();
    let days = f.days.unwrap_or(7);
    if !(1..=60).contains(&days) {
        c.0.push(FieldError::new("days", "out_of_range", "天数应在 1 到 60 之间", "days is between 1 and 60"));
    }
    if let Some(p) = f.prevalence
        && !(p.is_finite() && p > 0.0 && p <= 0.5)
    {
        c.0.push(FieldError::new(
            "prevalence",
            "out_of_range",
            "阳性率应大于 0、不超过 0.5(如 0.01 即 1%)",
            "a prevalence is above 0 and at most 0.5 (0.01 is 1%)",
        ));
    }
    let area_in = f.area.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let area = match area_in {
        Some(a) => c.take(Divisions::get_all().code("area", a, &[]).map(|d| d.code.to_string())),
        None => Some(anchor(who).0),
    };
    c.done()?;
    let round = match f.round_id {
        Some(id) => Some(coverage(store, who, id).await?),
        None => None,
    };
    let area = round.as_ref().map(|r| r.round.area.clone()).or(area).unwrap_or_default();
    let since = now - Duration::days(days);
    let (lo, hi, unit) = scope_args(&who.scope);
    let r = store
        .db
        .fetch_one(q!(
            "SELECT COUNT(DISTINCT m.person_id) AS tested,
                    COUNT(DISTINCT CASE WHEN t.outcome = 'positive' AND t.pool_size = 1 THEN m.person_id END) AS positive,
                    COUNT(DISTINCT CASE WHEN t.outcome = 'positive' AND t.pool_size > 1 THEN m.person_id END) AS pooled
             FROM tubes t JOIN tube_members m ON m.tube_id = t.id JOIN persons p ON p.id = m.person_id
             WHERE t.resulted_at >= $1 AND t.resulted_at <= $2 AND t.outcome IN ('negative', 'positive')
               AND p.jurisdiction >= $3 AND p.jurisdiction < $4 AND ((p.jurisdiction >= $5 AND p.jurisdiction < $6) OR p.unit_id = $7)",
            since,
            now,
            area.clone(),
            prefix_end(&area),
            lo,
            hi,
            unit
        ))
        .await?;
    let tested: i64 = r.get("tested")?;
    let positive: i64 = r.get("positive")?;
    let positivity = (tested > 0).then(|| positive as f64 / tested as f64);
    let (prevalence, source) = match (f.prevalence, positivity) {
        (Some(p), _) => (Some(p), "given"),
        (None, Some(p)) => (Some(p), "measured"),
        (None, None) => (None, "none"),
    };
    let choice = |(k, e): (u32, f64)| PoolChoice { pool_size: k, tests_per_person: e };
    let sizes = &policy.params.testing.pool_sizes;
    let allowed = sizes.iter().map(|k| choice((*k, prevalence.map(|p| t::tests_per_person(p, *k)).unwrap_or(1.0 / f64::from(*k))))).collect();
    let suggested = prevalence.map(|p| choice(t::suggest_pool(p, sizes)));
    let to_sample = round.as_ref().map(|r| r.total.missing);
    Ok(Plan {
        area_name: Divisions::get_all().full_name(&area),
        area,
        since,
        until: now,
        tested,
        positive,
        in_positive_pools: r.get("pooled")?,
        positivity,
        prevalence,
        prevalence_source: source,
        allowed,
        suggested,
        best: prevalence.map(|p| choice(t::optimal_pool(p, MAX_POOL_SEARCH))),
        pooling_pays: prevalence.map(t::pooling_pays),
        tubes_needed: to_sample.zip(suggested).map(|(n, s)| (n + i64::from(s.pool_size) - 1) / i64::from(s.pool_size)),
        tests_expected: to_sample.zip(suggested).map(|(n, s)| n as f64 * s.tests_per_person),
        to_sample,
        policy_version: policy.version,
    })
}
