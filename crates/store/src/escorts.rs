//! Escorts for closed-loop trucks (点对点接返): the receiver's own escort, or police/transport
//! staff as fallback (domain.md). A receiver names its escort unit; the command office keeps the
//! fallback roster (department units, each serving its own division). The deadline watcher's
//! escort step ([`sweep`]) proposes the escort on the checkpoint's behalf when the checkpoint has
//! not within `truck.escort_assign_minutes`, and redirects it to the nearest fallback escort when
//! the receiver has none, its escort rejected, or did not accept by the handoff's `accept_by` —
//! in which case the `handoff_not_accepted` breach is raised as well (once, with the alert sweep).

use crate::trips::{Loaded, loaded, trip_audit, update_trip};
use crate::{Check, Principal, Store, audit, q, scope_args};
use baton_domain::role::Permission;
use baton_domain::trip::{Action, BreachKind, ControlClass, FallbackReason, HandoffOutcome, HandoffPurpose, Trip, TripRules, TripState};
use baton_domain::unit::UnitKind;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct FallbackEscort {
    pub unit_id: Uuid,
    pub name: String,
    /// The division it serves: trips bound there or below.
    pub jurisdiction: String,
    /// Lower goes first among units equally near the destination.
    pub priority: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceiverEscort {
    pub receiver_id: Uuid,
    pub receiver_name: String,
    pub escort_id: Uuid,
    pub escort_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Roster {
    pub fallback: Vec<FallbackEscort>,
    pub receivers: Vec<ReceiverEscort>,
}

/// The fallback roster in priority order (replaces the roster).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackInput {
    pub units: Vec<Uuid>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverEscortInput {
    /// `null` removes the receiver's escort (its trucks then go to the fallback roster).
    pub escort_id: Option<Uuid>,
}

/// The roster as the caller may see it: fallback units and receivers inside their scope.
pub async fn roster(store: &Store, who: &Principal) -> Result<Roster, Error> {
    who.require(Permission::UnitsRead)?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT f.unit_id, u.name, u.jurisdiction, f.priority FROM fallback_escorts f JOIN units u ON u.id = f.unit_id
             WHERE (u.jurisdiction >= $1 AND u.jurisdiction < $2) OR u.id = $3 OR $1 LIKE u.jurisdiction || '%'
             ORDER BY f.priority, u.jurisdiction",
            lo.clone(),
            hi.clone(),
            unit
        ))
        .await?;
    let fallback = rows
        .iter()
        .map(|r| {
            Ok(FallbackEscort {
                unit_id: r.get("unit_id")?,
                name: r.get("name")?,
                jurisdiction: r.get("jurisdiction")?,
                priority: r.get("priority")?,
            })
        })
        .collect::<Result<_, Error>>()?;
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT e.receiver_id, r.name AS receiver_name, e.escort_id, x.name AS escort_name
             FROM receiver_escorts e JOIN units r ON r.id = e.receiver_id JOIN units x ON x.id = e.escort_id
             WHERE (r.jurisdiction >= $1 AND r.jurisdiction < $2) OR r.id = $3 OR r.id = $4
             ORDER BY r.jurisdiction, r.name",
            lo,
            hi,
            unit,
            who.unit_id
        ))
        .await?;
    let receivers = rows
        .iter()
        .map(|r| {
            Ok(ReceiverEscort {
                receiver_id: r.get("receiver_id")?,
                receiver_name: r.get("receiver_name")?,
                escort_id: r.get("escort_id")?,
                escort_name: r.get("escort_name")?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Roster { fallback, receivers })
}

async fn active_unit(tx: &mut crate::db::Tx, id: Uuid) -> Result<Option<(String, String)>, Error> {
    let r = tx.fetch_optional(q!("SELECT kind, jurisdiction FROM units WHERE id = $1 AND active = TRUE", id)).await?;
    r.map(|r| Ok((r.get("kind")?, r.get("jurisdiction")?))).transpose()
}

/// Replace the fallback roster: department units (police, transport) inside the caller's scope,
/// in priority order.
pub async fn set_fallback(store: &Store, who: &Principal, input: &FallbackInput) -> Result<Roster, Error> {
    who.require(Permission::UnitsWrite)?;
    if input.units.len() > 50 {
        return Err(Error::field("units", "too_many", "兜底接返单位最多 50 个", "at most 50 fallback escort units"));
    }
    let mut tx = store.db.begin().await?;
    let mut c = Check::default();
    for (i, id) in input.units.iter().enumerate() {
        let field = format!("units[{i}]");
        match crate::units::in_scope(&mut tx, who, *id).await? {
            Some((kind, _)) if kind != UnitKind::Department.as_str() => c.0.push(FieldError::new(
                field,
                "not_a_department",
                "兜底接返单位应为公安、交通等部门",
                "a fallback escort must be a department (police, transport)",
            )),
            Some(_) if input.units[..i].contains(id) => {
                c.0.push(FieldError::new(field, "duplicate", "同一单位重复列出", "the same unit is listed twice"))
            }
            Some(_) => {}
            None => c.0.push(unknown(&field)),
        }
    }
    c.done()?;
    let now = store.now();
    tx.execute(q!("DELETE FROM fallback_escorts")).await?;
    for (i, id) in input.units.iter().enumerate() {
        tx.execute(q!("INSERT INTO fallback_escorts (unit_id, priority, updated_at) VALUES ($1, $2, $3)", *id, i as i64, now)).await?;
    }
    let (home, _) = who.home();
    let entry = audit::Entry {
        action: "escort.fallback_roster",
        object_type: "escort_roster",
        object_id: "fallback".into(),
        jurisdiction: &home,
        detail: serde_json::json!({"units": input.units}),
    };
    store.audited(who, entry, tx).await?;
    roster(store, who).await
}

fn unknown(field: &str) -> FieldError {
    FieldError::new(field, "unit_unknown", "单位不存在", "the unit does not exist")
}

/// A receiver names the unit that escorts its trucks (it may be itself), or none. The receiver's
/// own staff may set it, and whoever manages units in the receiver's area.
pub async fn set_receiver_escort(store: &Store, who: &Principal, receiver: Uuid, input: &ReceiverEscortInput) -> Result<Roster, Error> {
    let own = who.unit_id == Some(receiver) && who.can(Permission::TripsReport);
    if !own {
        who.require(Permission::UnitsWrite)?;
    }
    let mut tx = store.db.begin().await?;
    let Some((_, jurisdiction)) = active_unit(&mut tx, receiver).await? else { return Err(Error::NotFound("unit")) };
    if !own {
        who.require_covers(&jurisdiction, Some(receiver), "unit")?;
    }
    let now = store.now();
    match input.escort_id {
        Some(escort) => {
            if active_unit(&mut tx, escort).await?.is_none() {
                return Err(Error::Invalid(vec![unknown("escort_id")]));
            }
            tx.execute(q!(
                "INSERT INTO receiver_escorts (receiver_id, escort_id, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (receiver_id) DO UPDATE SET escort_id = excluded.escort_id, updated_at = excluded.updated_at",
                receiver,
                escort,
                now
            ))
            .await?;
        }
        None => {
            tx.execute(q!("DELETE FROM receiver_escorts WHERE receiver_id = $1", receiver)).await?;
        }
    }
    let entry = audit::Entry {
        action: "escort.receiver_escort",
        object_type: "unit",
        object_id: receiver.to_string(),
        jurisdiction: &jurisdiction,
        detail: serde_json::json!({"escort": input.escort_id}),
    };
    store.audited(who, entry, tx).await?;
    roster(store, who).await
}

/// The escort unit a receiver named, if any (the check-in page proposes it first).
pub async fn escort_of(store: &Store, receiver: Uuid) -> Result<Option<Uuid>, Error> {
    let mut tx = store.db.begin().await?;
    let e = receiver_escort(&mut tx, receiver).await?;
    tx.commit().await?;
    Ok(e)
}

async fn receiver_escort(tx: &mut crate::db::Tx, receiver: Uuid) -> Result<Option<Uuid>, Error> {
    tx.fetch_optional(q!(
        "SELECT e.escort_id FROM receiver_escorts e JOIN units u ON u.id = e.escort_id WHERE e.receiver_id = $1 AND u.active = TRUE",
        receiver
    ))
    .await?
    .map(|r| r.get::<Uuid>("escort_id"))
    .transpose()
}

/// The nearest fallback escort for a trip bound to `jurisdiction`: roster units whose division
/// contains it, the deepest first, then by priority; never one in `tried`.
async fn nearest_fallback(tx: &mut crate::db::Tx, jurisdiction: &str, tried: &[Uuid]) -> Result<Option<Uuid>, Error> {
    let rows = tx
        .fetch_all(q!("SELECT f.unit_id, u.jurisdiction FROM fallback_escorts f JOIN units u ON u.id = f.unit_id
             WHERE u.active = TRUE ORDER BY f.priority"))
        .await?;
    let mut best: Option<(usize, Uuid)> = None;
    for r in &rows {
        let j: String = r.get("jurisdiction")?;
        let id: Uuid = r.get("unit_id")?;
        if jurisdiction.starts_with(&j) && !tried.contains(&id) && best.is_none_or(|(n, _)| j.len() > n) {
            best = Some((j.len(), id));
        }
    }
    Ok(best.map(|b| b.1))
}

/// Units that already had the trip's escort handoff and did not take it (rejected, not accepted
/// in time, withdrawn), and the custodian: none of them is asked again.
fn tried(trip: &Trip) -> Vec<Uuid> {
    let mut out: Vec<Uuid> = trip
        .handoffs
        .iter()
        .filter(|r| r.handoff.purpose == HandoffPurpose::Escort && r.outcome != HandoffOutcome::Accepted)
        .map(|r| r.handoff.to)
        .collect();
    out.extend(trip.pending.as_ref().map(|p| p.to));
    out.push(trip.custodian);
    out
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct EscortSweep {
    pub trips_checked: u64,
    /// Escort handoffs proposed to the receiver's escort on the checkpoint's behalf.
    pub proposed: u64,
    /// Escort handoffs sent to a fallback escort.
    pub fallbacks: u64,
    /// Trips that needed a fallback escort and found none left on the roster.
    pub no_fallback: u64,
}

/// What the escort step does to one trip at `now`, if anything.
enum Step {
    Propose(Uuid),
    Fallback(Uuid, FallbackReason),
    NoneLeft,
}

async fn step_for(tx: &mut crate::db::Tx, l: &Loaded, now: DateTime<Utc>, assign_minutes: u32) -> Result<Option<Step>, Error> {
    let t = &l.trip;
    if t.state != TripState::CheckedIn || t.class != Some(ControlClass::ClosedLoop) {
        return Ok(None);
    }
    let reason = match &t.pending {
        Some(p) if p.purpose == HandoffPurpose::Escort && now > p.accept_by => FallbackReason::NotAccepted,
        Some(_) => return Ok(None),
        None if t.handoffs.last().is_some_and(|r| r.handoff.purpose == HandoffPurpose::Escort && r.outcome == HandoffOutcome::Rejected) => {
            FallbackReason::Rejected
        }
        // The checkpoint hands over itself as a rule; the watcher steps in only when it has not.
        None if now < t.last_event_at + Duration::minutes(i64::from(assign_minutes)) => return Ok(None),
        None => match receiver_escort(tx, t.destination).await? {
            Some(e) if !tried(t).contains(&e) => return Ok(Some(Step::Propose(e))),
            _ => FallbackReason::NoReceiverEscort,
        },
    };
    Ok(Some(match nearest_fallback(tx, &l.jurisdiction, &tried(t)).await? {
        Some(u) => Step::Fallback(u, reason),
        None => Step::NoneLeft,
    }))
}

/// The escort step of the deadline watcher (run after `alerts::sweep`). Each trip is changed in
/// its own transaction; a trip someone changed meanwhile is left for the next pass.
pub async fn sweep(store: &Store, now: DateTime<Utc>) -> Result<EscortSweep, Error> {
    let mut rep = EscortSweep::default();
    let policy = crate::policy::current(store, now).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    let sys = Principal::system("deadline-watcher");
    let ids = store
        .db
        .fetch_all(q!(
            "SELECT id FROM trips WHERE state = 'checked_in' AND class = 'closed_loop' AND closed_at IS NULL AND (pending_to IS NULL OR accept_by < $1)
             ORDER BY id LIMIT 5000",
            now
        ))
        .await?;
    for r in &ids {
        let id: Uuid = r.get("id")?;
        let mut tx = store.db.begin().await?;
        let Some(row) = tx.fetch_optional(q!("SELECT data, rev, jurisdiction FROM trips WHERE id = $1", id)).await? else { continue };
        let l = loaded(&row)?;
        rep.trips_checked += 1;
        let (action, rule) = match step_for(&mut tx, &l, now, policy.params.truck.escort_assign_minutes).await? {
            None => continue,
            Some(Step::NoneLeft) => {
                rep.no_fallback += 1;
                continue;
            }
            Some(Step::Propose(to)) => (Action::assign_escort(Uuid::now_v7(), to), "escort_assign"),
            Some(Step::Fallback(to, reason)) => (Action::EscortFallback { id: Uuid::now_v7(), to, reason }, "escort_fallback"),
        };
        // The breach of the handoff being redirected is raised before it is withdrawn.
        if let Action::EscortFallback { reason: FallbackReason::NotAccepted, .. } = action {
            raise_unaccepted(&mut tx, store, &policy.params, &l, now).await?;
        }
        let next = match l.trip.apply(&action, l.trip.custodian, now, &rules) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(trip = %id, error = %e, "escort step refused");
                continue;
            }
        };
        match update_trip(store, &mut tx, &next, &l.extra, l.rev, now).await {
            Ok(()) => {}
            Err(Error::Conflict { code: "trip_changed", .. }) => continue,
            Err(e) => return Err(e),
        }
        let name = format!("trip.{}", action.name());
        let detail = serde_json::json!({"from": l.trip.state.as_str(), "to": next.state.as_str(), "custodian": next.custodian, "action": action, "rule": rule});
        audit::append(&mut tx, &store.vault, now, &sys, trip_audit(&name, &next, &l.jurisdiction, detail)).await?;
        tx.commit().await?;
        match action {
            Action::EscortFallback { .. } => rep.fallbacks += 1,
            _ => rep.proposed += 1,
        }
    }
    Ok(rep)
}

/// The `handoff_not_accepted` alert for the pending handoff, identified as the alert sweep
/// identifies it, so that whichever runs first raises it and the other finds it there.
async fn raise_unaccepted(
    tx: &mut crate::db::Tx,
    store: &Store,
    policy: &baton_domain::policy::PolicyParams,
    l: &Loaded,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    for b in l.trip.due_breaches(now).into_iter().filter(|b| b.kind == BreachKind::HandoffNotAccepted) {
        if !crate::alerts::insert_breach(tx, policy, now, &l.trip, &l.jurisdiction, &b).await? {
            continue;
        }
        let detail = serde_json::json!({"trip": l.trip.id, "kind": b.kind.as_str(), "due_at": b.due_at, "custodian": b.custodian, "handoff": b.handoff, "receiver": b.receiver});
        let entry =
            audit::Entry { action: "alert.raise", object_type: "trip", object_id: l.trip.id.to_string(), jurisdiction: &l.jurisdiction, detail };
        audit::append(tx, &store.vault, now, &Principal::system("alerts"), entry).await?;
    }
    Ok(())
}
