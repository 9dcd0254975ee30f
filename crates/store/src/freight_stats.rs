//! The freight dashboard: open trips by state, class, entry checkpoint and township; breaches
//! by kind and by the unit answerable; handoff acceptance times by purpose and receiver; the
//! loop-closure rate by class; the time each kind of holder kept a trip (its link); and
//! each list as an xlsx sheet. Everything is scoped like the lists it counts: trips in the
//! viewer's jurisdiction or with the viewer's unit as a party, alerts as `alerts::list` shows them.

use crate::sheet::{XCell, write_sheet};
use crate::{Principal, Store, q, scope_args};
use baton_domain::Error;
use baton_domain::division::Divisions;
use baton_domain::role::Permission;
use baton_domain::trip::{BreachKind, ControlClass, HandoffPurpose, TripState};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// The stable key (state, class, kind, unit id or division code).
    pub key: String,
    pub label_zh: String,
    pub label_en: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HandoffTime {
    pub purpose: String,
    pub receiver: String,
    pub accepted: i64,
    pub avg_minutes: f64,
    pub max_minutes: f64,
}

/// Of the trips checked in with a class, how many have closed their loop.
#[derive(Debug, Clone, Serialize)]
pub struct Closure {
    pub class: String,
    pub label_zh: String,
    pub label_en: String,
    pub checked_in: i64,
    pub closed: i64,
    /// `closed / checked_in`, 0 to 1.
    pub rate: f64,
}

/// How long holders of one unit kind kept trips (ended custody spans).
#[derive(Debug, Clone, Serialize)]
pub struct LinkTime {
    pub kind: String,
    pub label_zh: String,
    pub label_en: String,
    pub spans: i64,
    pub avg_minutes: f64,
    pub max_minutes: f64,
}

/// Trips looked at for link times: those changed in this many days.
const LINK_DAYS: i64 = 30;

fn minutes(secs: f64) -> f64 {
    (secs / 60.0 * 10.0).round() / 10.0
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub open_by_state: Vec<Count>,
    pub open_by_class: Vec<Count>,
    pub open_by_checkpoint: Vec<Count>,
    pub open_by_township: Vec<Count>,
    pub breaches_by_kind: Vec<Count>,
    pub breaches_by_unit: Vec<Count>,
    pub handoff_times: Vec<HandoffTime>,
    pub closure_by_class: Vec<Closure>,
    pub link_times: Vec<LinkTime>,
}

/// The lists, by the name the export takes.
pub const LISTS: &[&str] = &[
    "open_by_state",
    "open_by_class",
    "open_by_checkpoint",
    "open_by_township",
    "breaches_by_kind",
    "breaches_by_unit",
    "handoff_times",
    "closure_by_class",
    "link_times",
];

fn count(key: String, zh: &str, en: &str, n: i64) -> Count {
    Count { key, label_zh: zh.to_string(), label_en: en.to_string(), count: n }
}

/// `SELECT <k> AS k, COUNT(*) AS n` over open trips the caller may see, grouped by `k`.
macro_rules! open_by {
    ($key:literal, $join:literal) => {
        concat!(
            "SELECT ",
            $key,
            " AS k, COUNT(*) AS n FROM trips t ",
            $join,
            " WHERE t.closed_at IS NULL AND ((t.jurisdiction >= $1 AND t.jurisdiction < $2)
               OR EXISTS (SELECT 1 FROM trip_parties p WHERE p.trip_id = t.id AND (p.unit_id = $3 OR p.unit_id = $4)))
             GROUP BY ",
            $key,
            " ORDER BY n DESC"
        )
    };
}

pub async fn stats(store: &Store, who: &Principal) -> Result<Stats, Error> {
    who.require(Permission::TripsRead)?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let me = who.unit_id;
    let grouped = |sql: &'static str| {
        let (lo, hi) = (lo.clone(), hi.clone());
        async move {
            let rows = store.db.scan(q!(sql, lo, hi, unit, me)).await?;
            rows.iter().map(|r| Ok((r.get::<Option<String>>("k")?.unwrap_or_default(), r.get::<i64>("n")?))).collect::<Result<Vec<_>, Error>>()
        }
    };
    let open_by_state = grouped(open_by!("t.state", ""))
        .await?
        .into_iter()
        .map(|(k, n)| {
            let s = TripState::parse(&k);
            count(k.clone(), s.map(|s| s.label(true)).unwrap_or(&k), s.map(|s| s.label(false)).unwrap_or(&k), n)
        })
        .collect();
    let open_by_class = grouped(open_by!("t.class", ""))
        .await?
        .into_iter()
        .map(|(k, n)| {
            let c = ControlClass::parse(&k);
            count(k, c.map(|c| c.label(true)).unwrap_or("未分类(已报备)"), c.map(|c| c.label(false)).unwrap_or("not classified (reported)"), n)
        })
        .collect();
    let open_by_checkpoint = grouped(open_by!("c.name", "LEFT JOIN units c ON c.id = t.entry_checkpoint_id"))
        .await?
        .into_iter()
        .map(|(k, n)| if k.is_empty() { count(k, "未落地(已报备)", "not checked in (reported)", n) } else { count(k.clone(), &k, &k, n) })
        .collect();
    let d = Divisions::get_all();
    let open_by_township = grouped(open_by!("SUBSTR(t.jurisdiction, 1, 9)", ""))
        .await?
        .into_iter()
        .map(|(k, n)| {
            let name = d.get(&k).map(|x| x.name.to_string()).unwrap_or_else(|| k.clone());
            count(k, &name, &name, n)
        })
        .collect();
    // Breaches: every alert the caller may see (open or resolved), counted in the database
    // (the alert list is paged and would count only its first page).
    let rows = store
        .db
        .scan(q!(
            "SELECT a.kind, a.custodian_id, c.name AS custodian_name, COUNT(*) AS n FROM alerts a JOIN units c ON c.id = a.custodian_id
             WHERE (a.jurisdiction >= $1 AND a.jurisdiction < $2) OR a.recipient_id = $3 OR a.custodian_id = $3 OR a.recipient_id = $4 OR a.custodian_id = $4
             GROUP BY a.kind, a.custodian_id, c.name",
            lo.clone(),
            hi.clone(),
            unit,
            me
        ))
        .await?;
    let mut by_kind: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_unit: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in &rows {
        let n: i64 = r.get("n")?;
        *by_kind.entry(r.get("kind")?).or_default() += n;
        *by_unit.entry((r.get::<Uuid>("custodian_id")?.to_string(), r.get("custodian_name")?)).or_default() += n;
    }
    let mut breaches_by_kind: Vec<Count> = by_kind
        .into_iter()
        .map(|(k, n)| {
            let b = BreachKind::parse(&k);
            count(k.clone(), b.map(|b| b.label(true)).unwrap_or(&k), b.map(|b| b.label(false)).unwrap_or(&k), n)
        })
        .collect();
    breaches_by_kind.sort_by_key(|c| -c.count);
    let mut breaches_by_unit: Vec<Count> = by_unit.into_iter().map(|((id, name), n)| count(id, &name, &name, n)).collect();
    breaches_by_unit.sort_by_key(|c| -c.count);
    let rows = store
        .db
        .scan(q!(
            "SELECT h.purpose, u.name AS receiver, COUNT(*) AS n, CAST(SUM(h.seconds) AS BIGINT) AS total, MAX(h.seconds) AS longest
             FROM trip_handoffs h JOIN units u ON u.id = h.to_id
             WHERE h.outcome = 'accepted' AND ((h.jurisdiction >= $1 AND h.jurisdiction < $2) OR h.to_id = $3 OR h.from_id = $3 OR h.to_id = $4 OR h.from_id = $4)
             GROUP BY h.purpose, u.name ORDER BY h.purpose, u.name",
            lo.clone(),
            hi.clone(),
            unit,
            me
        ))
        .await?;
    let handoff_times = rows
        .iter()
        .map(|r| {
            let n: i64 = r.get("n")?;
            let total: i64 = r.get("total")?;
            let longest: i64 = r.get("longest")?;
            Ok(HandoffTime {
                purpose: r.get("purpose")?,
                receiver: r.get("receiver")?,
                accepted: n,
                avg_minutes: (total as f64 / n.max(1) as f64 / 60.0 * 10.0).round() / 10.0,
                max_minutes: (longest as f64 / 60.0 * 10.0).round() / 10.0,
            })
        })
        .collect::<Result<_, Error>>()?;
    let rows = store
        .db
        .scan(q!(
            "SELECT t.class AS k, COUNT(*) AS n, SUM(CASE WHEN t.closed_at IS NULL THEN 0 ELSE 1 END) AS closed FROM trips t
             WHERE t.class IS NOT NULL AND ((t.jurisdiction >= $1 AND t.jurisdiction < $2)
               OR EXISTS (SELECT 1 FROM trip_parties p WHERE p.trip_id = t.id AND (p.unit_id = $3 OR p.unit_id = $4)))
             GROUP BY t.class ORDER BY t.class",
            lo.clone(),
            hi.clone(),
            unit,
            me
        ))
        .await?;
    let closure_by_class = rows
        .iter()
        .map(|r| {
            let k: String = r.get("k")?;
            let n: i64 = r.get("n")?;
            let closed: i64 = r.get("closed")?;
            let c = ControlClass::parse(&k);
            Ok(Closure {
                label_zh: c.map(|c| c.label(true)).unwrap_or(&k).to_string(),
                label_en: c.map(|c| c.label(false)).unwrap_or(&k).to_string(),
                class: k,
                checked_in: n,
                closed,
                rate: ((closed as f64 / n.max(1) as f64) * 1000.0).round() / 1000.0,
            })
        })
        .collect::<Result<_, Error>>()?;
    let link_times = link_times(store, (lo, hi, unit, me)).await?;
    Ok(Stats {
        open_by_state,
        open_by_class,
        open_by_checkpoint,
        open_by_township,
        breaches_by_kind,
        breaches_by_unit,
        handoff_times,
        closure_by_class,
        link_times,
    })
}

/// Every ended custody span of the trips in scope changed lately, by the holder's unit kind:
/// how long a checkpoint, an escort, a destination… keeps a truck before the next takes it.
async fn link_times(store: &Store, (lo, hi, unit, me): (String, String, uuid::Uuid, Option<uuid::Uuid>)) -> Result<Vec<LinkTime>, Error> {
    let since = store.now() - chrono::Duration::days(LINK_DAYS);
    let kinds: BTreeMap<uuid::Uuid, String> =
        store.db.scan(q!("SELECT id, kind FROM units")).await?.iter().map(|r| Ok((r.get("id")?, r.get("kind")?))).collect::<Result<_, Error>>()?;
    let rows = store
        .db
        .scan(q!(
            "SELECT t.data FROM trips t
             WHERE t.updated_at >= $5 AND ((t.jurisdiction >= $1 AND t.jurisdiction < $2)
               OR EXISTS (SELECT 1 FROM trip_parties p WHERE p.trip_id = t.id AND (p.unit_id = $3 OR p.unit_id = $4)))",
            lo,
            hi,
            unit,
            me,
            since
        ))
        .await?;
    // kind → (spans, total seconds, longest seconds)
    let mut by_kind: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for r in &rows {
        let data: String = r.get("data")?;
        let stored: serde_json::Value = serde_json::from_str(&data).map_err(Error::internal)?;
        let trip: baton_domain::trip::Trip = serde_json::from_value(stored["trip"].clone()).map_err(Error::internal)?;
        for span in &trip.chain {
            let Some(to) = span.to else { continue };
            let secs = (to - span.from).num_seconds().max(0);
            let e = by_kind.entry(kinds.get(&span.unit).cloned().unwrap_or_default()).or_default();
            e.0 += 1;
            e.1 += secs;
            e.2 = e.2.max(secs);
        }
    }
    Ok(by_kind
        .into_iter()
        .map(|(kind, (n, total, longest))| {
            let k = baton_domain::unit::UnitKind::parse(&kind);
            LinkTime {
                label_zh: k.map(|k| k.label(true)).unwrap_or(&kind).to_string(),
                label_en: k.map(|k| k.label(false)).unwrap_or(&kind).to_string(),
                kind,
                spans: n,
                avg_minutes: minutes(total as f64 / n.max(1) as f64),
                max_minutes: minutes(longest as f64),
            }
        })
        .collect())
}

/// One list of the dashboard as an xlsx sheet (headers in Chinese and English).
pub async fn export(store: &Store, who: &Principal, list: &str) -> Result<Vec<u8>, Error> {
    if !LISTS.contains(&list) {
        return Err(Error::field(
            "list",
            "list_unknown",
            format!("列表应为 {} 之一", LISTS.join("、")),
            format!("list must be one of {}", LISTS.join(", ")),
        ));
    }
    let s = stats(store, who).await?;
    let text = |t: &str| XCell::Text(t.to_string());
    let counts = |c: &[Count]| {
        let mut rows = vec![vec![text("代码/key"), text("名称/name"), text("Name"), text("数量/count")]];
        rows.extend(c.iter().map(|c| vec![text(&c.key), text(&c.label_zh), text(&c.label_en), XCell::Number(c.count as f64)]));
        rows
    };
    let rows = match list {
        "open_by_state" => counts(&s.open_by_state),
        "open_by_class" => counts(&s.open_by_class),
        "open_by_checkpoint" => counts(&s.open_by_checkpoint),
        "open_by_township" => counts(&s.open_by_township),
        "breaches_by_kind" => counts(&s.breaches_by_kind),
        "breaches_by_unit" => counts(&s.breaches_by_unit),
        "closure_by_class" => {
            let mut rows = vec![vec![text("类别/class"), text("名称/name"), text("已落地/checked_in"), text("已闭环/closed"), text("闭环率/rate")]];
            rows.extend(s.closure_by_class.iter().map(|c| {
                vec![text(&c.class), text(&c.label_zh), XCell::Number(c.checked_in as f64), XCell::Number(c.closed as f64), XCell::Number(c.rate)]
            }));
            rows
        }
        "link_times" => {
            let mut rows = vec![vec![
                text("单位类型/kind"),
                text("名称/name"),
                text("环节数/spans"),
                text("平均分钟/avg_minutes"),
                text("最长分钟/max_minutes"),
            ]];
            rows.extend(s.link_times.iter().map(|l| {
                vec![text(&l.kind), text(&l.label_zh), XCell::Number(l.spans as f64), XCell::Number(l.avg_minutes), XCell::Number(l.max_minutes)]
            }));
            rows
        }
        _ => {
            let mut rows = vec![vec![
                text("交接类型/purpose"),
                text("接收单位/receiver"),
                text("已接收/accepted"),
                text("平均分钟/avg_minutes"),
                text("最长分钟/max_minutes"),
            ]];
            rows.extend(s.handoff_times.iter().map(|h| {
                let p = HandoffPurpose::parse(&h.purpose).map(|p| format!("{}/{}", p.label(true), p.as_str())).unwrap_or_else(|| h.purpose.clone());
                vec![text(&p), text(&h.receiver), XCell::Number(h.accepted as f64), XCell::Number(h.avg_minutes), XCell::Number(h.max_minutes)]
            }));
            rows
        }
    };
    write_sheet(list, &rows)
}
