//! Breaches and escalation. The deadline watcher raises an alert for every passed
//! deadline of an open trip (once: an alert is identified by its subject, kind, due time and
//! custodian), to the custodian; an alert nobody acknowledges climbs the ladder of the policy
//! in force — the custodian's supervising unit (or the rung-1 unit the alert names), then the
//! command office — until someone acts. Alerts are about a subject (`trip`, `tube`, `person`…):
//! other modules raise theirs with [`raise`] and share the ladder and the pages.
//!
//! An alert ends when what it watched is settled: the change that mends the link or ends the
//! trip ends its alerts in the same transaction ([`settle_trip`]), and the ladder never climbs
//! for a subject that is no longer broken (checked again at each rung). A unit holds at most one
//! open alert per subject and kind: an alert climbing to a unit that already has it stops there
//! and names the one that carries on (`merged_into`).

use crate::db::{Row, Tx};
use crate::page::{Page, PageQuery, Paged};
use crate::{Principal, Store, Vault, audit, q, scope_args, text_field};
use baton_domain::Error;
use baton_domain::alert::{AlertEnd, Settled};
use baton_domain::role::Permission;
use baton_domain::trip::{Breach, BreachKind, Trip};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Trips looked at per pass, so that one pass never holds the writer for long.
const BATCH: i64 = 500;

/// The part of a stored trip the watcher reads (the row's `data` also holds the extras).
#[derive(Deserialize)]
struct StoredTrip {
    trip: Trip,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct SweepReport {
    pub trips_checked: u64,
    pub raised: u64,
    pub escalated: u64,
    /// Due to climb, but what they watched was settled meanwhile: ended instead.
    pub settled: u64,
    /// Due to climb to a unit that already had them open: stopped, merged into that one.
    pub merged: u64,
}

/// The command office of the county holding `jurisdiction` (the longest matching prefix).
pub async fn command_office(tx: &mut crate::db::Tx, jurisdiction: &str) -> Result<Option<Uuid>, Error> {
    let rows = tx.fetch_all(q!("SELECT id, jurisdiction FROM units WHERE kind = 'command_office' AND active = TRUE")).await?;
    let mut best: Option<(usize, Uuid)> = None;
    for r in &rows {
        let j: String = r.get("jurisdiction")?;
        if jurisdiction.starts_with(&j) && best.is_none_or(|(n, _)| j.len() > n) {
            best = Some((j.len(), r.get("id")?));
        }
    }
    Ok(best.map(|b| b.1))
}

fn ladder_minutes(store_policy: &baton_domain::policy::PolicyParams, level: i64) -> Option<i64> {
    store_policy.escalation.ladder_minutes.get(usize::try_from(level).ok()?).map(|m| i64::from(*m))
}

/// The alert of a trip's breach `b`, to its custodian, inserted once (an alert is its subject,
/// kind, due time and custodian; one already open at the custodian for the subject and kind takes
/// it in). Returns whether it is new; the caller writes its audit entry.
pub(crate) async fn insert_breach(
    tx: &mut Tx,
    policy: &baton_domain::policy::PolicyParams,
    now: DateTime<Utc>,
    trip: &Trip,
    jurisdiction: &str,
    b: &Breach,
) -> Result<bool, Error> {
    let escalate_at = ladder_minutes(policy, 0).map(|m| now + Duration::minutes(m));
    let n = tx
        .execute(q!(
            "INSERT INTO alerts (id, subject_kind, subject_id, subject, trip_id, kind, due_at, raised_at, custodian_id, handoff_id, receiver_id, level,
                                 recipient_id, escalate_at, jurisdiction, policy_version)
             VALUES ($1, 'trip', $2, $12, $2, $3, $4, $5, $6, $7, $8, 0, $6, $9, $10, $11)
             ON CONFLICT DO NOTHING",
            Uuid::now_v7(),
            trip.id,
            b.kind.as_str(),
            b.due_at,
            now,
            b.custodian,
            b.handoff,
            b.receiver,
            escalate_at,
            jurisdiction,
            b.policy_version,
            trip.plate.as_str()
        ))
        .await?;
    Ok(n == 1)
}

/// One pass of the deadline watcher at `now`: raise what is due, escalate what is ignored.
/// Safe to run concurrently and repeatedly: raising is idempotent, escalation checks `level`.
pub async fn sweep(store: &Store, now: DateTime<Utc>) -> Result<SweepReport, Error> {
    let mut rep = SweepReport::default();
    let policy = crate::policy::current(store, now).await?;
    let sys = Principal::system("deadline-watcher");
    loop {
        // Read the due trips on the writer, in the transaction that updates them: nothing can
        // change one between the look and the alert.
        let mut tx = store.db.begin().await?;
        let rows = tx.fetch_all(q!("SELECT id, data, jurisdiction FROM trips WHERE sweep_at <= $1 ORDER BY sweep_at LIMIT $2", now, BATCH)).await?;
        let mut raised = Vec::new();
        for t in &rows {
            let id: Uuid = t.get("id")?;
            let data: String = t.get("data")?;
            let jurisdiction: String = t.get("jurisdiction")?;
            let mut trip = serde_json::from_str::<StoredTrip>(&data).map_err(Error::internal)?.trip;
            rep.trips_checked += 1;
            let mut overstayed = false;
            for b in trip.due_breaches(now) {
                let n = insert_breach(&mut tx, &policy.params, now, &trip, &jurisdiction, &b).await?;
                if n {
                    rep.raised += 1;
                    overstayed |= b.kind == baton_domain::trip::BreachKind::Overstay;
                    let detail = serde_json::json!({"trip": trip.id, "kind": b.kind.as_str(), "due_at": b.due_at, "custodian": b.custodian});
                    raised.push((trip.id, jurisdiction.clone(), detail));
                }
            }
            if overstayed {
                let rules = baton_domain::trip::TripRules::new(policy.version, &policy.params.truck);
                if let Some(next) = crate::trips::propose_conversion(store, &mut tx, id, now, &rules).await? {
                    trip = next;
                }
            }
            // Next look: the earliest deadline not yet passed (a passed one stays raised; one due
            // exactly now is not a breach yet and must be looked at again).
            let next = trip.deadlines().into_iter().map(|d| d.at).filter(|at| *at >= now).min();
            tx.execute(q!("UPDATE trips SET sweep_at = $2 WHERE id = $1", id, next)).await?;
        }
        let entries = raised
            .iter()
            .map(|(trip, jurisdiction, detail)| audit::Entry {
                action: "alert.raise",
                object_type: "trip",
                object_id: trip.to_string(),
                jurisdiction,
                detail: detail.clone(),
            })
            .collect();
        audit::append_all(&mut tx, &store.vault, now, &sys, entries).await?;
        tx.commit().await?;
        if (rows.len() as i64) < BATCH {
            break;
        }
    }
    // Escalation: unacknowledged, unresolved alerts whose rung has run out. A late pass
    // (after downtime) climbs every rung that ran out meanwhile, each timed from the last.
    for _rung in 0..3 {
        let due = store
            .db
            .fetch_all(q!(
                "SELECT id FROM alerts WHERE escalate_at <= $1 AND acknowledged_at IS NULL AND resolved_at IS NULL ORDER BY escalate_at LIMIT 5000",
                now
            ))
            .await?;
        if due.is_empty() {
            break;
        }
        let mut tx = store.db.begin().await?;
        for r in &due {
            let id: Uuid = r.get("id")?;
            let Some(a) = tx
                .fetch_optional(q!(
                    "SELECT a.level, a.recipient_id, a.rung1_id, a.jurisdiction, a.subject_kind, a.subject_id, a.kind, a.handoff_id, a.escalate_at, t.data AS trip
                     FROM alerts a LEFT JOIN trips t ON t.id = a.trip_id
                     WHERE a.id = $1 AND a.acknowledged_at IS NULL AND a.resolved_at IS NULL AND a.escalate_at <= $2",
                    id,
                    now
                ))
                .await?
            else {
                continue;
            };
            let subject: Uuid = a.get("subject_id")?;
            let subject_kind: String = a.get("subject_kind")?;
            let kind: String = a.get("kind")?;
            let jurisdiction: String = a.get("jurisdiction")?;
            let ending = Ending { id, subject_kind: &subject_kind, subject, kind: &kind, jurisdiction: &jurisdiction };
            // Nobody is asked to mend a link that is mended, or a trip that is over.
            if let Some(s) = settled(&mut tx, &a).await? {
                end(&mut tx, &store.vault, now, &ending, s, None).await?;
                rep.settled += 1;
                continue;
            }
            let level: i64 = a.get("level")?;
            let recipient: Uuid = a.get("recipient_id")?;
            let cmd = command_office(&mut tx, &jurisdiction).await?;
            let rung1: Option<Uuid> = a.get("rung1_id")?;
            let supervisor: Option<Uuid> = match rung1 {
                Some(u) => Some(u),
                None => tx
                    .fetch_optional(q!("SELECT supervisor_id FROM units WHERE id = $1", recipient))
                    .await?
                    .map(|r| r.get("supervisor_id"))
                    .transpose()?
                    .flatten(),
            };
            // Level 1 is the supervising unit (or straight to the command office if there is none); level 2 the command office.
            let (new_level, to) = match (level, supervisor) {
                (0, Some(s)) if Some(s) != cmd => (1, Some(s)),
                _ => (2, cmd),
            };
            let Some(to) = to.filter(|t| *t != recipient || new_level == 2) else {
                tx.execute(q!("UPDATE alerts SET escalate_at = NULL WHERE id = $1", id)).await?;
                continue;
            };
            // One open alert per unit and subject: where `to` has this one open already, that one
            // carries on up the ladder and this one stays where it is.
            let held = tx
                .fetch_optional(q!(
                    "SELECT id FROM alerts WHERE recipient_id = $1 AND subject_kind = $2 AND subject_id = $3 AND kind = $4 AND resolved_at IS NULL AND id <> $5",
                    to,
                    subject_kind.clone(),
                    subject,
                    kind.clone(),
                    id
                ))
                .await?;
            if let Some(h) = held {
                end(&mut tx, &store.vault, now, &ending, Settled::Stopped(AlertEnd::Merged), Some(h.get("id")?)).await?;
                rep.merged += 1;
                continue;
            }
            let rung_ran_out: DateTime<Utc> = a.get::<Option<DateTime<Utc>>>("escalate_at")?.unwrap_or(now);
            let next = if new_level >= 2 { None } else { ladder_minutes(&policy.params, new_level).map(|m| rung_ran_out + Duration::minutes(m)) };
            tx.execute(q!("UPDATE alerts SET level = $2, recipient_id = $3, escalate_at = $4 WHERE id = $1", id, new_level, to, next)).await?;
            rep.escalated += 1;
            let detail = serde_json::json!({"alert": id, "kind": kind, "level": new_level, "to": to});
            audit::append(
                &mut tx,
                &store.vault,
                now,
                &sys,
                audit::Entry {
                    action: "alert.escalate",
                    object_type: &subject_kind,
                    object_id: subject.to_string(),
                    jurisdiction: &jurisdiction,
                    detail,
                },
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(rep)
}

/// The alert being ended, as its audit entry names it.
struct Ending<'a> {
    id: Uuid,
    subject_kind: &'a str,
    subject: Uuid,
    kind: &'a str,
    jurisdiction: &'a str,
}

/// Whether what the alert in `a` watches is settled now (its trip as it stands, its tube's
/// result, its batch's receipt, its order's sample), and how; `None` while it is still broken.
async fn settled(tx: &mut Tx, a: &Row) -> Result<Option<Settled>, Error> {
    let kind: String = a.get("kind")?;
    if let Some(data) = a.get::<Option<String>>("trip")? {
        let Some(k) = BreachKind::parse(&kind) else { return Ok(None) };
        let trip = serde_json::from_str::<StoredTrip>(&data).map_err(Error::internal)?.trip;
        return Ok(trip.settles(k, a.get("handoff_id")?));
    }
    let subject: Uuid = a.get("subject_id")?;
    let (check, end) = match (a.get::<String>("subject_kind")?.as_str(), kind.as_str()) {
        ("tube", "result_overdue") => (q!("SELECT id FROM tubes WHERE id = $1 AND outcome IS NOT NULL", subject), AlertEnd::ResultRecorded),
        ("batch", "batch_unaccepted") => (q!("SELECT id FROM test_batches WHERE id = $1 AND state <> 'handed'", subject), AlertEnd::BatchReceived),
        ("retest_order", "retest_overdue") => {
            (q!("SELECT id FROM retest_orders WHERE id = $1 AND (tube_id IS NOT NULL OR resolved_at IS NOT NULL)", subject), AlertEnd::OrderSampled)
        }
        _ => return Ok(None),
    };
    Ok(tx.fetch_optional(check).await?.map(|_| Settled::Closed(end)))
}

/// End an open alert as `s` says (closed, or stopped where it is), with the reason and, for a
/// merge, the alert that carries on; with its audit entry, in the caller's transaction.
async fn end(tx: &mut Tx, vault: &Vault, now: DateTime<Utc>, e: &Ending<'_>, s: Settled, merged_into: Option<Uuid>) -> Result<(), Error> {
    let closed = matches!(s, Settled::Closed(_));
    let n = tx
        .execute(q!(
            "UPDATE alerts SET stopped_at = $2, stop_reason = $3, merged_into = COALESCE($4, merged_into), escalate_at = NULL,
                    resolved_at = CASE WHEN $5 THEN $2 ELSE resolved_at END, resolved_by = CASE WHEN $5 THEN 'system' ELSE resolved_by END
             WHERE id = $1 AND resolved_at IS NULL",
            e.id,
            now,
            s.reason().as_str(),
            merged_into,
            closed
        ))
        .await?;
    if n == 0 {
        return Ok(());
    }
    let detail = serde_json::json!({"subject_kind": e.subject_kind, "subject": e.subject, "kind": e.kind, "reason": s.reason().as_str(), "merged_into": merged_into});
    let entry = audit::Entry {
        action: if closed { "alert.close" } else { "alert.stop" },
        object_type: "alert",
        object_id: e.id.to_string(),
        jurisdiction: e.jurisdiction,
        detail,
    };
    audit::append(tx, vault, now, &Principal::system("alerts"), entry).await?;
    Ok(())
}

/// End the open alerts of `trip` that where it stands now settles ([`Trip::settles`]), in the
/// transaction that moved it there: the link they watched is mended, or the trip is over.
pub(crate) async fn settle_trip(tx: &mut Tx, vault: &Vault, trip: &Trip, now: DateTime<Utc>) -> Result<(), Error> {
    let rows = tx
        .fetch_all(q!(
            "SELECT id, subject_kind, subject_id, kind, handoff_id, stopped_at, jurisdiction FROM alerts WHERE trip_id = $1 AND resolved_at IS NULL",
            trip.id
        ))
        .await?;
    for r in &rows {
        let kind: String = r.get("kind")?;
        let handoff: Option<Uuid> = r.get("handoff_id")?;
        let Some(s) = BreachKind::parse(&kind).and_then(|k| trip.settles(k, handoff)) else { continue };
        // An alert already stopped stays as it was unless it can now be closed.
        if matches!(s, Settled::Stopped(_)) && r.get::<Option<DateTime<Utc>>>("stopped_at")?.is_some() {
            continue;
        }
        let subject_kind: String = r.get("subject_kind")?;
        let jurisdiction: String = r.get("jurisdiction")?;
        let e = Ending { id: r.get("id")?, subject_kind: &subject_kind, subject: r.get("subject_id")?, kind: &kind, jurisdiction: &jurisdiction };
        end(tx, vault, now, &e, s, None).await?;
    }
    Ok(())
}

/// A new alert from another module (a tube overdue, a positive pool…), raised at `level`
/// (0: to the custodian, climbing from there; 2: straight to the command office).
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    pub subject_kind: &'a str,
    pub subject_id: Uuid,
    /// The subject in words, for lists (a barcode…).
    pub subject: &'a str,
    pub trip_id: Option<Uuid>,
    pub kind: &'a str,
    pub due_at: DateTime<Utc>,
    pub custodian: Uuid,
    pub level: i64,
    /// Rung 1 when it is not the custodian's supervising unit.
    pub rung1: Option<Uuid>,
    pub emergency: bool,
    pub jurisdiction: &'a str,
    pub policy_version: i64,
    pub detail: serde_json::Value,
}

/// Raise an alert once (the same subject, kind, due time and custodian is the same alert), with
/// its audit entry, in the caller's transaction. Returns whether it is new: an alert of the same
/// subject and kind already open at the custodian takes it in.
pub async fn raise(
    tx: &mut crate::db::Tx,
    store: &Store,
    policy: &baton_domain::policy::PolicyParams,
    now: DateTime<Utc>,
    a: &NewAlert<'_>,
) -> Result<bool, Error> {
    let escalate_at = if a.level >= 2 { None } else { ladder_minutes(policy, a.level).map(|m| now + Duration::minutes(m)) };
    let n = tx
        .execute(q!(
            "INSERT INTO alerts (id, subject_kind, subject_id, subject, trip_id, kind, due_at, raised_at, custodian_id, level, recipient_id, rung1_id,
                                 emergency, escalate_at, jurisdiction, policy_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $11, $12, $13, $14, $15)
             ON CONFLICT DO NOTHING",
            Uuid::now_v7(),
            a.subject_kind,
            a.subject_id,
            a.subject,
            a.trip_id,
            a.kind,
            a.due_at,
            now,
            a.custodian,
            a.level,
            a.rung1,
            a.emergency,
            escalate_at,
            a.jurisdiction,
            a.policy_version
        ))
        .await?;
    if n == 1 {
        let sys = Principal::system("alerts");
        let mut detail = a.detail.clone();
        if let Some(o) = detail.as_object_mut() {
            o.insert("kind".into(), a.kind.into());
            o.insert("custodian".into(), serde_json::json!(a.custodian));
        }
        audit::append(
            tx,
            &store.vault,
            now,
            &sys,
            audit::Entry {
                action: "alert.raise",
                object_type: a.subject_kind,
                object_id: a.subject_id.to_string(),
                jurisdiction: a.jurisdiction,
                detail,
            },
        )
        .await?;
    }
    Ok(n == 1)
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: Uuid,
    /// `trip`, `tube`, `person`…
    pub subject_kind: String,
    pub subject_id: Uuid,
    pub trip_id: Option<Uuid>,
    /// The subject in words: a trip's plate, a tube's barcode…
    pub plate: String,
    pub emergency: bool,
    pub kind: String,
    pub due_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub custodian_id: Uuid,
    pub custodian_name: String,
    pub level: i64,
    pub recipient_id: Uuid,
    pub recipient_name: String,
    pub escalate_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub note: String,
    pub policy_version: i64,
    /// When the system ended it (closed it, or stopped its climb), and why: an [`AlertEnd`] code.
    pub stopped_at: Option<DateTime<Utc>>,
    pub stop_reason: Option<String>,
    /// The alert that carries on in its place (same subject, one rung up).
    pub merged_into: Option<Uuid>,
}

fn alert_from_row(r: &Row) -> Result<Alert, Error> {
    Ok(Alert {
        id: r.get("id")?,
        subject_kind: r.get("subject_kind")?,
        subject_id: r.get("subject_id")?,
        trip_id: r.get("trip_id")?,
        plate: r.get("plate")?,
        emergency: r.get("emergency")?,
        kind: r.get("kind")?,
        due_at: r.get("due_at")?,
        raised_at: r.get("raised_at")?,
        custodian_id: r.get("custodian_id")?,
        custodian_name: r.get("custodian_name")?,
        level: r.get("level")?,
        recipient_id: r.get("recipient_id")?,
        recipient_name: r.get("recipient_name")?,
        escalate_at: r.get("escalate_at")?,
        acknowledged_at: r.get("acknowledged_at")?,
        acknowledged_by: r.get("acknowledged_by")?,
        resolved_at: r.get("resolved_at")?,
        resolved_by: r.get("resolved_by")?,
        note: r.get("note")?,
        policy_version: r.get("policy_version")?,
        stopped_at: r.get("stopped_at")?,
        stop_reason: r.get("stop_reason")?,
        merged_into: r.get("merged_into")?,
    })
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertFilter {
    /// Only unresolved alerts.
    pub open: Option<bool>,
    pub trip_id: Option<Uuid>,
    /// Only alerts addressed to the caller's unit now.
    pub mine: Option<bool>,
    pub kind: Option<String>,
    pub subject_kind: Option<String>,
    pub subject_id: Option<Uuid>,
}

impl Alert {
    /// The page of the alert's subject.
    pub fn href(&self) -> String {
        match (self.subject_kind.as_str(), self.trip_id) {
            (_, Some(t)) => format!("/trips/{t}"),
            ("tube", _) => format!("/testing/tubes/{}", self.subject_id),
            ("person", _) => format!("/testing/persons/{}", self.subject_id),
            _ => "/alerts".into(),
        }
    }
}

/// Alerts are read by whoever follows trips or testing.
fn require_read(who: &Principal) -> Result<(), Error> {
    if who.can(Permission::TripsRead) || who.can(Permission::TestingRead) { Ok(()) } else { Err(Error::Forbidden) }
}

/// Alerts inside the caller's scope, or addressed to or about their unit, newest first.
pub async fn list(store: &Store, who: &Principal, f: &AlertFilter, page: &PageQuery) -> Result<Paged<Alert>, Error> {
    require_read(who)?;
    let page = Page::<(DateTime<Utc>, Uuid)>::read("alerts", page)?;
    let (after_at, after_id) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let mine = if f.mine == Some(true) { who.unit_id } else { None };
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT a.id, a.subject_kind, a.subject_id, a.trip_id, COALESCE(t.plate, a.subject) AS plate, a.emergency, a.kind, a.due_at, a.raised_at, a.custodian_id, c.name AS custodian_name, a.level, a.recipient_id,
                    r.name AS recipient_name, a.escalate_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by, a.note, a.policy_version,
                    a.stopped_at, a.stop_reason, a.merged_into
             FROM alerts a LEFT JOIN trips t ON t.id = a.trip_id JOIN units c ON c.id = a.custodian_id JOIN units r ON r.id = a.recipient_id
             WHERE ((a.jurisdiction >= $1 AND a.jurisdiction < $2) OR a.recipient_id = $3 OR a.custodian_id = $3 OR a.recipient_id = $4 OR a.custodian_id = $4)
               AND ($5 IS NULL OR ($5 = TRUE AND a.resolved_at IS NULL) OR ($5 = FALSE AND a.resolved_at IS NOT NULL))
               AND ($6 IS NULL OR a.trip_id = $6) AND ($7 IS NULL OR a.recipient_id = $7) AND ($8 IS NULL OR a.kind = $8)
               AND ($9 IS NULL OR a.subject_kind = $9) AND ($10 IS NULL OR a.subject_id = $10)
               AND ($11 IS NULL OR (a.raised_at, a.id) < ($11, $12))
             ORDER BY a.raised_at DESC, a.id DESC LIMIT $13",
            lo,
            hi,
            unit,
            who.unit_id,
            f.open,
            f.trip_id,
            mine,
            f.kind.clone().filter(|k| !k.is_empty()),
            f.subject_kind.clone().filter(|k| !k.is_empty()),
            f.subject_id,
            after_at,
            after_id,
            page.fetch()
        ))
        .await?;
    let list = rows.iter().map(alert_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |a| (a.raised_at, a.id)))
}

async fn get_visible(store: &Store, who: &Principal, id: Uuid) -> Result<Alert, Error> {
    require_read(who)?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let r = store
        .db
        .fetch_optional(q!(
            "SELECT a.id, a.subject_kind, a.subject_id, a.trip_id, COALESCE(t.plate, a.subject) AS plate, a.emergency, a.kind, a.due_at, a.raised_at, a.custodian_id, c.name AS custodian_name, a.level, a.recipient_id,
                    r.name AS recipient_name, a.escalate_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by, a.note, a.policy_version,
                    a.stopped_at, a.stop_reason, a.merged_into
             FROM alerts a LEFT JOIN trips t ON t.id = a.trip_id JOIN units c ON c.id = a.custodian_id JOIN units r ON r.id = a.recipient_id
             WHERE a.id = $5 AND ((a.jurisdiction >= $1 AND a.jurisdiction < $2) OR a.recipient_id = $3 OR a.custodian_id = $3 OR a.recipient_id = $4 OR a.custodian_id = $4)",
            lo,
            hi,
            unit,
            who.unit_id,
            id
        ))
        .await?
        .ok_or(Error::NotFound("alert"))?;
    alert_from_row(&r)
}

/// "Seen, acting on it": stops the climb up the ladder.
pub async fn acknowledge(store: &Store, who: &Principal, id: Uuid) -> Result<Alert, Error> {
    who.require(Permission::AlertsHandle)?;
    let a = get_visible(store, who, id).await?;
    if a.resolved_at.is_some() {
        return Err(Error::conflict("alert_resolved", "告警已处置完毕", "the alert is already resolved"));
    }
    if a.acknowledged_at.is_some() {
        return Ok(a);
    }
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "UPDATE alerts SET acknowledged_at = $2, acknowledged_by = $3, escalate_at = NULL WHERE id = $1 AND acknowledged_at IS NULL",
        id,
        store.now(),
        who.name.clone()
    ))
    .await?;
    let j = jurisdiction_of(store, id).await?;
    store
        .audited(
            who,
            audit::Entry {
                action: "alert.acknowledge",
                object_type: "alert",
                object_id: id.to_string(),
                jurisdiction: &j,
                detail: serde_json::json!({"subject_kind": a.subject_kind, "subject": a.subject_id, "kind": a.kind}),
            },
            tx,
        )
        .await?;
    get_visible(store, who, id).await
}

/// Closed with a note saying what was done.
pub async fn resolve(store: &Store, who: &Principal, id: Uuid, note: &str) -> Result<Alert, Error> {
    who.require(Permission::AlertsHandle)?;
    let note = text_field("note", note, 1, 500).map_err(|e| Error::Invalid(vec![e]))?;
    let a = get_visible(store, who, id).await?;
    if a.resolved_at.is_some() {
        return Err(Error::conflict("alert_resolved", "告警已处置完毕", "the alert is already resolved"));
    }
    let now = store.now();
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "UPDATE alerts SET resolved_at = $2, resolved_by = $3, note = $4, escalate_at = NULL,
                acknowledged_at = COALESCE(acknowledged_at, $2), acknowledged_by = COALESCE(acknowledged_by, $3)
         WHERE id = $1 AND resolved_at IS NULL",
        id,
        now,
        who.name.clone(),
        note.clone()
    ))
    .await?;
    let j = jurisdiction_of(store, id).await?;
    store
        .audited(
            who,
            audit::Entry {
                action: "alert.resolve",
                object_type: "alert",
                object_id: id.to_string(),
                jurisdiction: &j,
                detail: serde_json::json!({"subject_kind": a.subject_kind, "subject": a.subject_id, "kind": a.kind, "note": note}),
            },
            tx,
        )
        .await?;
    get_visible(store, who, id).await
}

async fn jurisdiction_of(store: &Store, id: Uuid) -> Result<String, Error> {
    store.db.fetch_one(q!("SELECT jurisdiction FROM alerts WHERE id = $1", id)).await?.get("jurisdiction")
}
