//! The responsibility ledger (责任台账): for each trip, the cargo owner, the logistics park, the
//! township (locality) and the driver, each with its confirmation of its duty (who, when), so
//! that a breach can be traced to the parties that had not confirmed when it was raised.
//!
//! Who the parties are is read from the trip: the cargo owner is the reporter or the destination
//! when that unit is a cargo owner; the logistics park likewise; the township is the township
//! unit of the trip's locality; the driver is the first crew member. A party that does not
//! apply (a trip to a cargo owner's yard has no park) is not listed. Units confirm through their
//! own staff; the driver confirms by opening their signed trip code (no account).

use crate::{Principal, Store, alerts, audit, q};
use baton_domain::role::{Permission, Permissions};
use baton_domain::scope::Scope;
use baton_domain::trip::{LedgerParty, Trip, unconfirmed_at};
use baton_domain::unit::UnitKind;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct PartyLine {
    pub party: LedgerParty,
    /// The unit answerable (`None` for the driver).
    pub unit_id: Option<Uuid>,
    /// The unit's name, or the driver's.
    pub name: String,
    pub duty_zh: &'static str,
    pub duty_en: &'static str,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<String>,
}

/// One breach of the trip and the parties that had not confirmed when it was raised.
#[derive(Debug, Clone, Serialize)]
pub struct BreachLine {
    pub alert_id: Uuid,
    pub kind: String,
    pub raised_at: DateTime<Utc>,
    pub custodian_id: Uuid,
    pub custodian_name: String,
    pub unconfirmed: Vec<LedgerParty>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    pub trip_id: Uuid,
    pub parties: Vec<PartyLine>,
    pub breaches: Vec<BreachLine>,
}

async fn unit_kind_name(store: &Store, id: Uuid) -> Result<Option<(String, String)>, Error> {
    let r = store.db.fetch_optional(q!("SELECT kind, name FROM units WHERE id = $1", id)).await?;
    r.map(|r| Ok((r.get("kind")?, r.get("name")?))).transpose()
}

/// The parties of a trip, each with its unit (none for the driver) and name.
async fn parties_of(store: &Store, trip: &Trip, jurisdiction: &str) -> Result<Vec<(LedgerParty, Option<Uuid>, String)>, Error> {
    let mut out = Vec::new();
    let mut candidates = Vec::new();
    for id in trip.reporter.into_iter().chain(std::iter::once(trip.destination)) {
        if let Some((kind, name)) = unit_kind_name(store, id).await? {
            candidates.push((id, kind, name));
        }
    }
    for (party, kind) in [(LedgerParty::CargoOwner, UnitKind::CargoOwner), (LedgerParty::LogisticsPark, UnitKind::LogisticsPark)] {
        if let Some((id, _, name)) = candidates.iter().find(|(_, k, _)| k == kind.as_str()) {
            out.push((party, Some(*id), name.clone()));
        }
    }
    let township_code: String = jurisdiction.chars().take(9).collect();
    let township = store
        .db
        .fetch_optional(q!(
            "SELECT id, name FROM units WHERE kind = 'township' AND active = TRUE AND jurisdiction = $1 ORDER BY created_at LIMIT 1",
            township_code
        ))
        .await?;
    if let Some(r) = township {
        out.push((LedgerParty::Township, Some(r.get("id")?), r.get("name")?));
    }
    if let Some(r) = store.db.fetch_optional(q!("SELECT name FROM trip_crew WHERE trip_id = $1 AND seq = 0", trip.id)).await? {
        out.push((LedgerParty::Driver, None, r.get("name")?));
    }
    Ok(out)
}

async fn build(store: &Store, who: &Principal, trip: &Trip, jurisdiction: &str) -> Result<Ledger, Error> {
    let rows = store.db.fetch_all(q!("SELECT party, confirmed_at, confirmed_by FROM trip_confirmations WHERE trip_id = $1", trip.id)).await?;
    let mut confirmed = Vec::new();
    for r in &rows {
        let party: String = r.get("party")?;
        if let Some(p) = LedgerParty::parse(&party) {
            confirmed.push((p, r.get::<DateTime<Utc>>("confirmed_at")?, r.get::<String>("confirmed_by")?));
        }
    }
    let parties: Vec<PartyLine> = parties_of(store, trip, jurisdiction)
        .await?
        .into_iter()
        .map(|(party, unit_id, name)| {
            let c = confirmed.iter().find(|c| c.0 == party);
            PartyLine {
                party,
                unit_id,
                name,
                duty_zh: party.duty(true),
                duty_en: party.duty(false),
                confirmed_at: c.map(|c| c.1),
                confirmed_by: c.map(|c| c.2.clone()),
            }
        })
        .collect();
    let times: Vec<(LedgerParty, Option<DateTime<Utc>>)> = parties.iter().map(|p| (p.party, p.confirmed_at)).collect();
    let f = alerts::AlertFilter { trip_id: Some(trip.id), ..Default::default() };
    let list = alerts::list(store, who, &f, &crate::page::PageQuery::largest()).await?;
    let breaches = list
        .items
        .into_iter()
        .map(|a| BreachLine {
            unconfirmed: unconfirmed_at(&times, a.raised_at),
            alert_id: a.id,
            kind: a.kind,
            raised_at: a.raised_at,
            custodian_id: a.custodian_id,
            custodian_name: a.custodian_name,
        })
        .collect();
    Ok(Ledger { trip_id: trip.id, parties, breaches })
}

/// The trip's ledger and its breaches, if the caller may see the trip.
pub async fn get(store: &Store, who: &Principal, trip_id: Uuid) -> Result<Ledger, Error> {
    let t = crate::trips::get(store, who, trip_id).await?;
    build(store, who, &t.trip, &t.jurisdiction).await
}

async fn record(store: &Store, who: &Principal, trip: &Trip, jurisdiction: &str, party: LedgerParty, unit: Option<Uuid>) -> Result<(), Error> {
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let n = tx
        .execute(q!(
            "INSERT INTO trip_confirmations (trip_id, party, unit_id, confirmed_at, confirmed_by) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (trip_id, party) DO NOTHING",
            trip.id,
            party.as_str(),
            unit,
            now,
            who.name.clone()
        ))
        .await?;
    // Confirmed already: the first confirmation stands, nothing to record.
    if n == 0 {
        return Ok(());
    }
    let detail = serde_json::json!({"party": party.as_str(), "unit": unit});
    let entry = audit::Entry { action: "trip.confirm", object_type: "trip", object_id: trip.id.to_string(), jurisdiction, detail };
    store.audited(who, entry, tx).await
}

/// A party's staff confirm its duty for the trip (once; a repeat changes nothing).
pub async fn confirm(store: &Store, who: &Principal, trip_id: Uuid, party: &str) -> Result<Ledger, Error> {
    who.require(Permission::TripsHandle)?;
    let party = LedgerParty::parse(party).ok_or_else(|| {
        Error::field(
            "party",
            "party_unknown",
            "责任方应为 cargo_owner、logistics_park、township 或 driver",
            "party must be cargo_owner, logistics_park, township or driver",
        )
    })?;
    let t = crate::trips::get(store, who, trip_id).await?;
    if party == LedgerParty::Driver {
        return Err(Error::conflict("driver_confirms_by_code", "司机通过本人行程码确认", "the driver confirms by opening their own trip code"));
    }
    let line = parties_of(store, &t.trip, &t.jurisdiction).await?.into_iter().find(|p| p.0 == party);
    let Some((_, unit, _)) = line else {
        return Err(Error::Invalid(vec![FieldError::new("party", "party_not_applicable", "该行程没有此责任方", "this trip has no such party")]));
    };
    if unit.is_none() || unit != who.unit_id {
        return Err(Error::conflict("not_party", "只有该责任方本单位人员可以确认", "only the party's own staff can confirm"));
    }
    record(store, who, &t.trip, &t.jurisdiction, party, unit).await?;
    get(store, who, trip_id).await
}

/// The driver confirms by their signed trip code (the code is the credential; only the
/// driver's code, crew member 0, confirms for the driver). Returns when they confirmed.
pub async fn confirm_by_code(store: &Store, token: &str) -> Result<DateTime<Utc>, Error> {
    let code = crate::codes::open(&store.vault, token, store.now())?;
    if code.s != 0 {
        return Err(Error::conflict("not_driver", "只有司机本人的行程码可以确认", "only the driver's own code can confirm"));
    }
    let (trip, jurisdiction) = crate::trips::by_id(store, code.t).await?;
    if trip.is_closed() {
        return Err(Error::conflict("trip_closed", "该行程已结束", "the trip is closed"));
    }
    let who = Principal {
        user_id: None,
        token_id: None,
        name: format!("driver:{}", trip.plate.as_str()),
        display_name: "driver".into(),
        unit_id: None,
        role: "driver".into(),
        scope: Scope::Division { code: jurisdiction.clone() },
        permissions: Permissions::default(),
        request_id: format!("code:{}", trip.id),
    };
    record(store, &who, &trip, &jurisdiction, LedgerParty::Driver, None).await?;
    driver_confirmed_at(store, trip.id).await?.ok_or(Error::NotFound("confirmation"))
}

/// When the driver confirmed, if they have.
pub async fn driver_confirmed_at(store: &Store, trip: Uuid) -> Result<Option<DateTime<Utc>>, Error> {
    let r = store.db.fetch_optional(q!("SELECT confirmed_at FROM trip_confirmations WHERE trip_id = $1 AND party = 'driver'", trip)).await?;
    r.map(|r| r.get("confirmed_at")).transpose()
}
