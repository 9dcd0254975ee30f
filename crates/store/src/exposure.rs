//! Exposure search (时空伴随排查): for a case, who was at the same venues at the same time, and
//! which trucks shared a truck service site with the case's trucks.
//!
//! A visit is taken to last the policy's `exposure_window_minutes` from its scan, so two visits
//! to one venue overlap when their scans are less than a window apart; the overlap is the
//! window minus the gap. Scans exactly a window apart do not overlap. The case's visits are taken
//! from the last `exposure_days`, both ends included.
//!
//! Trucks: the case's trips are those whose crew list holds the case's ID number (through the
//! blind index) or whose landing tube holds the case. A stay at a site is a known interval, from
//! arrival to check-out (a stay never checked out lasts until its trip closed, or until now), so
//! the window does not stretch it: two stays at one site overlap when they share more than an
//! instant (a truck arriving as another leaves does not overlap it, as two visits a window apart
//! do not), and the overlap is the shared interval. The case's stays are those that reach into
//! the last `exposure_days`, both ends included, as its visits are.
//!
//! The lists export as a tracing request (协查) in xlsx for the communities (persons, then
//! trucks), and may mark each person found as a companion (their code turns yellow).

use crate::sheet::{XCell, write_sheets};
use crate::{Principal, Store, audit, q};
use baton_domain::Error;
use baton_domain::role::Permission;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    /// Default: the policy's `exposure_window_minutes`.
    #[serde(default)]
    pub window_minutes: Option<u32>,
    /// Default: the policy's `exposure_days`.
    #[serde(default)]
    pub days: Option<u32>,
}

/// A person who shared a venue with the case, at the longest overlap found.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub person_id: Uuid,
    pub name_masked: String,
    pub jurisdiction: String,
    pub venue_id: Uuid,
    pub venue_name: String,
    pub case_at: DateTime<Utc>,
    pub contact_at: DateTime<Utc>,
    pub overlap_minutes: f64,
    /// How many of the case's visits this person overlapped.
    pub visits: usize,
}

/// Another trip whose stay at a truck service site overlapped a stay of one of the case's trips,
/// at the longest overlap found.
#[derive(Debug, Clone, Serialize)]
pub struct TripContact {
    pub trip_id: Uuid,
    pub plate: String,
    /// The crew, family name only, driver first.
    pub crew_masked: Vec<String>,
    pub site_id: Uuid,
    pub site_name: String,
    /// The case's trip at the site then.
    pub case_trip_id: Uuid,
    pub case_plate: String,
    pub overlap_from: DateTime<Utc>,
    pub overlap_to: DateTime<Utc>,
    pub overlap_minutes: f64,
    /// How many of the case's stays this trip overlapped.
    pub stays: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exposure {
    pub case_id: Uuid,
    pub window_minutes: u32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub case_visits: usize,
    pub contacts: Vec<Contact>,
    /// The case's stays at truck service sites in the look-back days.
    pub case_stays: usize,
    pub trips: Vec<TripContact>,
}

pub async fn search(store: &Store, who: &Principal, case: Uuid, input: &SearchInput) -> Result<Exposure, Error> {
    who.require(Permission::ExposureSearch)?;
    crate::persons::get(store, who, case).await?;
    let now = store.now();
    let rules = crate::policy::current(store, now).await?.params.codes;
    let window = input.window_minutes.unwrap_or(rules.exposure_window_minutes);
    let days = input.days.unwrap_or(rules.exposure_days);
    let mut c = crate::Check::default();
    if !(1..=24 * 60).contains(&window) {
        c.0.push(baton_domain::FieldError::new("window_minutes", "out_of_range", "时间窗应在 1 到 1440 分钟之间", "must be 1 to 1440 minutes"));
    }
    if !(1..=30).contains(&days) {
        c.0.push(baton_domain::FieldError::new("days", "out_of_range", "回溯天数应在 1 到 30 之间", "must be 1 to 30 days"));
    }
    c.done()?;
    let w = Duration::minutes(i64::from(window));
    let from = now - Duration::days(i64::from(days));
    let visits = store
        .db
        .fetch_all(q!(
            "SELECT s.venue_id, s.at, v.name FROM scans s JOIN venues v ON v.id = s.venue_id
              WHERE s.person_id = $1 AND s.at >= $2 AND s.at <= $3 ORDER BY s.at",
            case,
            from,
            now
        ))
        .await?;
    let mut found: HashMap<Uuid, Contact> = HashMap::new();
    for v in &visits {
        let venue: Uuid = v.get("venue_id")?;
        let at: DateTime<Utc> = v.get("at")?;
        let venue_name: String = v.get("name")?;
        let rows = store
            .db
            .fetch_all(q!(
                "SELECT s.person_id, s.at, p.name, p.jurisdiction FROM scans s JOIN persons p ON p.id = s.person_id
                  WHERE s.venue_id = $1 AND s.at > $2 AND s.at < $3 AND s.person_id <> $4",
                venue,
                at - w,
                at + w,
                case
            ))
            .await?;
        for r in &rows {
            let other: DateTime<Utc> = r.get("at")?;
            let gap = (other - at).abs();
            let overlap = (w - gap).num_milliseconds() as f64 / 60_000.0;
            let person: Uuid = r.get("person_id")?;
            let e = found.entry(person).or_insert_with(|| Contact {
                person_id: person,
                name_masked: String::new(),
                jurisdiction: String::new(),
                venue_id: venue,
                venue_name: venue_name.clone(),
                case_at: at,
                contact_at: other,
                overlap_minutes: -1.0,
                visits: 0,
            });
            e.visits += 1;
            if overlap > e.overlap_minutes {
                e.name_masked = crate::person_codes::mask_name(&r.get::<String>("name")?);
                e.jurisdiction = r.get("jurisdiction")?;
                e.venue_id = venue;
                e.venue_name = venue_name.clone();
                e.case_at = at;
                e.contact_at = other;
                e.overlap_minutes = overlap;
            }
        }
    }
    let mut contacts: Vec<Contact> = found.into_values().collect();
    contacts.sort_by(|a, b| b.overlap_minutes.total_cmp(&a.overlap_minutes).then(a.person_id.cmp(&b.person_id)));
    let (case_stays, trips) = shared_sites(store, case, from, now).await?;
    Ok(Exposure { case_id: case, window_minutes: window, from, to: now, case_visits: visits.len(), contacts, case_stays, trips })
}

/// A stay's end: its check-out, else its trip's closing, else `now`.
fn stay_end(r: &crate::db::Row, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    let left: Option<DateTime<Utc>> = r.get("left_at")?;
    let closed: Option<DateTime<Utc>> = r.get("closed_at")?;
    Ok(left.or(closed).unwrap_or(now).min(now))
}

/// The case's trips, their stays at sites reaching into `[from, now]`, and the other trips whose
/// stays at the same site overlapped them.
async fn shared_sites(store: &Store, case: Uuid, from: DateTime<Utc>, now: DateTime<Utc>) -> Result<(usize, Vec<TripContact>), Error> {
    let mut case_trips: Vec<Uuid> = Vec::new();
    for bidx in crate::persons::crew_indexes(store, case).await? {
        for r in store.db.fetch_all(q!("SELECT trip_id FROM trip_crew WHERE id_number_bidx = $1", bidx)).await? {
            case_trips.push(r.get("trip_id")?);
        }
    }
    let landing = store
        .db
        .fetch_all(q!(
            "SELECT t.trip_id FROM tube_members m JOIN tubes t ON t.id = m.tube_id
              WHERE m.person_id IN (SELECT $1 UNION ALL SELECT id FROM persons WHERE merged_into = $1) AND t.trip_id IS NOT NULL",
            case
        ))
        .await?;
    for r in &landing {
        case_trips.push(r.get("trip_id")?);
    }
    case_trips.sort();
    case_trips.dedup();
    let mut stays = 0;
    let mut found: HashMap<Uuid, TripContact> = HashMap::new();
    for trip in &case_trips {
        let own = store
            .db
            .fetch_all(q!(
                "SELECT x.site_id, u.name AS site_name, x.plate, x.arrived_at, x.left_at, t.closed_at
                   FROM site_stays x JOIN units u ON u.id = x.site_id JOIN trips t ON t.id = x.trip_id
                  WHERE x.trip_id = $1 AND x.arrived_at <= $2",
                *trip,
                now
            ))
            .await?;
        for s in &own {
            let (start, end) = (s.get::<DateTime<Utc>>("arrived_at")?, stay_end(s, now)?);
            if end < from {
                continue;
            }
            stays += 1;
            let site: Uuid = s.get("site_id")?;
            let site_name: String = s.get("site_name")?;
            let case_plate: String = s.get("plate")?;
            // Stays at the site that began before this one ended and had not ended when it began.
            let rows = store
                .db
                .fetch_all(q!(
                    "SELECT x.trip_id, x.plate, x.arrived_at, x.left_at, t.closed_at FROM site_stays x JOIN trips t ON t.id = x.trip_id
                      WHERE x.site_id = $1 AND x.trip_id <> $2 AND x.arrived_at < $3
                        AND (x.left_at IS NULL OR x.left_at > $4) AND (x.left_at IS NOT NULL OR t.closed_at IS NULL OR t.closed_at > $4)",
                    site,
                    *trip,
                    end,
                    start
                ))
                .await?;
            for r in &rows {
                let other: Uuid = r.get("trip_id")?;
                let (o_from, o_to) = (start.max(r.get("arrived_at")?), end.min(stay_end(r, now)?));
                if o_to <= o_from || case_trips.contains(&other) {
                    continue;
                }
                let minutes = (o_to - o_from).num_milliseconds() as f64 / 60_000.0;
                let e = found.entry(other).or_insert_with(|| TripContact {
                    trip_id: other,
                    plate: String::new(),
                    crew_masked: Vec::new(),
                    site_id: site,
                    site_name: String::new(),
                    case_trip_id: *trip,
                    case_plate: String::new(),
                    overlap_from: o_from,
                    overlap_to: o_to,
                    overlap_minutes: -1.0,
                    stays: 0,
                });
                e.stays += 1;
                if minutes > e.overlap_minutes {
                    e.plate = r.get("plate")?;
                    e.site_id = site;
                    e.site_name = site_name.clone();
                    e.case_trip_id = *trip;
                    e.case_plate = case_plate.clone();
                    e.overlap_from = o_from;
                    e.overlap_to = o_to;
                    e.overlap_minutes = minutes;
                }
            }
        }
    }
    let mut trips: Vec<TripContact> = found.into_values().collect();
    for t in &mut trips {
        let crew = store.db.fetch_all(q!("SELECT name FROM trip_crew WHERE trip_id = $1 ORDER BY seq", t.trip_id)).await?;
        t.crew_masked = crew.iter().map(|r| r.get::<String>("name").map(|n| crate::person_codes::mask_name(&n))).collect::<Result<_, _>>()?;
    }
    trips.sort_by(|a, b| b.overlap_minutes.total_cmp(&a.overlap_minutes).then(a.trip_id.cmp(&b.trip_id)));
    Ok((stays, trips))
}

/// The search as a tracing request (协查) workbook for the communities; audited (personal data leaves).
pub async fn export(store: &Store, who: &Principal, case: Uuid, input: &SearchInput) -> Result<Vec<u8>, Error> {
    let e = search(store, who, case, input).await?;
    let d = baton_domain::division::Divisions::get_all();
    let china = crate::sheet::china().ok_or_else(|| Error::internal("time zone"))?;
    let t = |x: DateTime<Utc>| XCell::Text(x.with_timezone(&china).format("%Y-%m-%d %H:%M:%S").to_string());
    let mut rows = vec![
        [
            "序号 No.",
            "人员 Person",
            "人员编号 Ref",
            "属地 Locality",
            "场所 Venue",
            "病例到场 Case at",
            "到场 Contact at",
            "重叠(分钟) Overlap (min)",
            "次数 Visits",
        ]
        .iter()
        .map(|h| XCell::Text(h.to_string()))
        .collect::<Vec<_>>(),
    ];
    for (i, c) in e.contacts.iter().enumerate() {
        rows.push(vec![
            XCell::Number((i + 1) as f64),
            XCell::Text(c.name_masked.clone()),
            XCell::Text(c.person_id.to_string()),
            XCell::Text(d.full_name(&c.jurisdiction)),
            XCell::Text(c.venue_name.clone()),
            t(c.case_at),
            t(c.contact_at),
            XCell::Number((c.overlap_minutes * 10.0).round() / 10.0),
            XCell::Number(c.visits as f64),
        ]);
    }
    let mut trucks = vec![
        [
            "序号 No.",
            "车牌 Plate",
            "司乘人员 Crew",
            "服务场地 Site",
            "病例车辆 Case's truck",
            "重叠开始 Overlap from",
            "重叠结束 Overlap to",
            "重叠(分钟) Overlap (min)",
            "次数 Stays",
        ]
        .iter()
        .map(|h| XCell::Text(h.to_string()))
        .collect::<Vec<_>>(),
    ];
    for (i, x) in e.trips.iter().enumerate() {
        trucks.push(vec![
            XCell::Number((i + 1) as f64),
            XCell::Text(x.plate.clone()),
            XCell::Text(x.crew_masked.join("、")),
            XCell::Text(x.site_name.clone()),
            XCell::Text(x.case_plate.clone()),
            t(x.overlap_from),
            t(x.overlap_to),
            XCell::Number((x.overlap_minutes * 10.0).round() / 10.0),
            XCell::Number(x.stays as f64),
        ]);
    }
    let bytes = write_sheets(&[("协查 Tracing", &rows), ("车辆 Trucks", &trucks)])?;
    // Filed under the case's jurisdiction: the contacts' personal data leaves on the case's account.
    let case_row = crate::persons::get(store, who, case).await?;
    let tx = store.db.begin().await?;
    let entry = audit::Entry {
        action: "exposure.export",
        object_type: "person",
        object_id: case.to_string(),
        jurisdiction: &case_row.jurisdiction,
        detail: serde_json::json!({"contacts": e.contacts.len(), "trips": e.trips.len(), "window_minutes": e.window_minutes}),
    };
    store.audited(who, entry, tx).await?;
    Ok(bytes)
}

/// Contacts to mark as companions of a case: found again by the same search.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkInput {
    /// Persons among the search's contacts.
    #[serde(default)]
    pub persons: Vec<Uuid>,
    /// Every contact the marker may write (in their scope) instead.
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub window_minutes: Option<u32>,
    #[serde(default)]
    pub days: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Marked {
    pub case_id: Uuid,
    /// Newly marked: each got a companion order from the time of the exposure.
    pub marked: Vec<Uuid>,
    /// Marked as companions of this case before: nothing added.
    pub already: Vec<Uuid>,
}

/// Mark contacts of a case as its companions (时空伴随) in one go: each gets a companion order
/// from the time both were at the venue, and their codes are recomputed at once. A person is
/// marked once per case (posting the same marks again adds nothing). Every person must be a
/// contact the search finds and inside the marker's scope, or nothing is marked. Audited.
pub async fn mark_companions(store: &Store, who: &Principal, case: Uuid, input: &MarkInput) -> Result<Marked, Error> {
    who.require(Permission::PersonsWrite)?;
    let case_row = crate::persons::get(store, who, case).await?;
    let e = search(store, who, case, &SearchInput { window_minutes: input.window_minutes, days: input.days }).await?;
    let contacts: HashMap<Uuid, &Contact> = e.contacts.iter().map(|c| (c.person_id, c)).collect();
    let mut chosen: Vec<&Contact> = Vec::new();
    let mut c = crate::Check::default();
    if input.all {
        for x in &e.contacts {
            if crate::persons::get(store, who, x.person_id).await.is_ok() {
                chosen.push(x);
            }
        }
    } else {
        for (i, id) in input.persons.iter().enumerate() {
            let field = format!("persons[{i}]");
            match contacts.get(id) {
                None => c.0.push(baton_domain::FieldError::new(
                    field,
                    "not_a_contact",
                    "该人员不是本次排查找到的伴随人员",
                    "this person is not a contact found by this search",
                )),
                Some(x) => match crate::persons::get(store, who, *id).await {
                    Ok(_) if !chosen.iter().any(|y| y.person_id == *id) => chosen.push(x),
                    Ok(_) => {}
                    Err(Error::NotFound(_)) => c.0.push(baton_domain::FieldError::new(
                        field,
                        "outside_scope",
                        "该人员不在您的辖区内，请通过协查推送属地",
                        "this person is outside your jurisdiction; send the tracing request to their locality",
                    )),
                    Err(e) => return Err(e),
                },
            }
        }
    }
    if chosen.is_empty() && c.0.is_empty() {
        c.0.push(baton_domain::FieldError::new("persons", "required", "请至少选择一名伴随人员", "choose at least one contact"));
    }
    c.done()?;
    let now = store.now();
    let mut marked = Vec::new();
    let mut already = Vec::new();
    let mut tx = store.db.begin().await?;
    for x in &chosen {
        let control = Uuid::now_v7();
        let exposed_at = x.case_at.max(x.contact_at);
        let n = tx
            .execute(q!(
                "INSERT INTO companion_marks (case_id, person_id, control_id, exposed_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (case_id, person_id) DO NOTHING",
                case,
                x.person_id,
                control,
                exposed_at,
                who.name.clone(),
                now
            ))
            .await?;
        if n == 0 {
            already.push(x.person_id);
            continue;
        }
        tx.execute(q!(
            "INSERT INTO person_controls (id, person_id, kind, valid_from, valid_to, note, created_by, created_at) VALUES ($1, $2, 'companion', $3, NULL, $4, $5, $6)",
            control,
            x.person_id,
            exposed_at,
            format!("时空伴随排查 exposure search: {} · {case}", x.venue_name),
            who.name.clone(),
            now
        ))
        .await?;
        marked.push(x.person_id);
    }
    let entry = audit::Entry {
        action: "exposure.mark_companions",
        object_type: "person",
        object_id: case.to_string(),
        jurisdiction: &case_row.jurisdiction,
        detail: serde_json::json!({"marked": marked, "already": already.len(), "window_minutes": e.window_minutes}),
    };
    store.audited(who, entry, tx).await?;
    if !marked.is_empty() {
        crate::person_codes::recompute_ids(store, &marked, "companion").await?;
    }
    Ok(Marked { case_id: case, marked, already })
}
