//! Exposure search (时空伴随排查): for a case, who was at the same venues at the same time.
//!
//! A visit is taken to last the policy's `exposure_window_minutes` from its scan, so two visits
//! to one venue overlap when their scans are less than a window apart; the overlap is the
//! window minus the gap. Scans exactly a window apart do not overlap. The case's visits are taken
//! from the last `exposure_days`. The list exports as a tracing request (协查) in xlsx for the
//! communities, and may mark each person found as a companion (their code turns yellow).

use crate::sheet::{XCell, write_sheet};
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

#[derive(Debug, Clone, Serialize)]
pub struct Exposure {
    pub case_id: Uuid,
    pub window_minutes: u32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub case_visits: usize,
    pub contacts: Vec<Contact>,
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
    Ok(Exposure { case_id: case, window_minutes: window, from, to: now, case_visits: visits.len(), contacts })
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
    let bytes = write_sheet("协查 Tracing", &rows)?;
    let tx = store.db.begin().await?;
    let entry = audit::Entry {
        action: "exposure.export",
        object_type: "person",
        object_id: case.to_string(),
        jurisdiction: "",
        detail: serde_json::json!({"contacts": e.contacts.len(), "window_minutes": e.window_minutes}),
    };
    store.audited(who, entry, tx).await?;
    Ok(bytes)
}
