//! Truck service sites (货车专用服务场地): parking, testing, meals and rest for trucks waiting
//! or in transit. A site is a unit of kind `truck_service_site`; here it gets a capacity, and
//! each truck's stay is recorded against its trip (checked in, waiting for its landing result or
//! not, checked out). The site records presence only: the trip's custodian stays answerable.
//!
//! Capacity: a check-in that would exceed it is refused (`site_full`) unless the staff admit
//! the truck anyway (`over_capacity: true`), which flags the stay and is audited. A site
//! without a capacity set is not limited. A truck is at one site at a time; checking the same
//! truck in again at the same site returns its open stay (a retry does not duplicate).

use crate::db::{Row, Tx};
use crate::page::{Page, PageQuery, Paged};
use crate::{Principal, Store, audit, q, scope_args};
use baton_domain::ident::Plate;
use baton_domain::role::Permission;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct SiteSummary {
    pub id: Uuid,
    pub name: String,
    pub jurisdiction: String,
    /// `None`: no capacity set, not limited.
    pub capacity: Option<i64>,
    pub present: i64,
    pub waiting: i64,
    pub over_capacity: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StayView {
    pub id: Uuid,
    pub site_id: Uuid,
    pub site_name: String,
    pub trip_id: Uuid,
    pub plate: String,
    pub arrived_at: DateTime<Utc>,
    pub arrived_by: String,
    pub waiting_result: bool,
    pub result_at: Option<DateTime<Utc>>,
    pub over_capacity: bool,
    pub left_at: Option<DateTime<Utc>>,
    pub left_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    #[serde(flatten)]
    pub site: SiteSummary,
    /// Trucks present now, earliest first.
    pub present: Vec<StayView>,
    /// Those of them still waiting for their result.
    pub waiting: Vec<StayView>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityInput {
    pub capacity: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteCheckInInput {
    pub plate: String,
    /// The truck waits here for its (landing) test result.
    #[serde(default = "yes")]
    pub waiting_result: bool,
    /// Admit it even though the site is full (flagged and audited).
    #[serde(default)]
    pub over_capacity: bool,
}

fn yes() -> bool {
    true
}

macro_rules! summary_sql {
    () => {
        "SELECT u.id, u.name, u.jurisdiction, s.capacity,
        (SELECT COUNT(*) FROM site_stays x WHERE x.site_id = u.id AND x.left_at IS NULL) AS present,
        (SELECT COUNT(*) FROM site_stays x WHERE x.site_id = u.id AND x.left_at IS NULL AND x.waiting_result = TRUE) AS waiting
     FROM units u LEFT JOIN truck_sites s ON s.unit_id = u.id"
    };
}

fn summary(r: &Row) -> Result<SiteSummary, Error> {
    let capacity: Option<i64> = r.get("capacity")?;
    let present: i64 = r.get("present")?;
    Ok(SiteSummary {
        id: r.get("id")?,
        name: r.get("name")?,
        jurisdiction: r.get("jurisdiction")?,
        capacity,
        present,
        waiting: r.get("waiting")?,
        over_capacity: capacity.is_some_and(|c| present > c),
    })
}

macro_rules! stay_sql {
    () => {
        "SELECT x.id, x.site_id, u.name AS site_name, x.trip_id, x.plate, x.arrived_at, x.arrived_by, x.waiting_result, x.result_at,
        x.over_capacity, x.left_at, x.left_by
     FROM site_stays x JOIN units u ON u.id = x.site_id"
    };
}

fn stay(r: &Row) -> Result<StayView, Error> {
    Ok(StayView {
        id: r.get("id")?,
        site_id: r.get("site_id")?,
        site_name: r.get("site_name")?,
        trip_id: r.get("trip_id")?,
        plate: r.get("plate")?,
        arrived_at: r.get("arrived_at")?,
        arrived_by: r.get("arrived_by")?,
        waiting_result: r.get("waiting_result")?,
        result_at: r.get("result_at")?,
        over_capacity: r.get("over_capacity")?,
        left_at: r.get("left_at")?,
        left_by: r.get("left_by")?,
    })
}

/// A page of the sites inside the caller's scope (or their own site), by division and name.
pub async fn list(store: &Store, who: &Principal, page: &PageQuery) -> Result<Paged<SiteSummary>, Error> {
    who.require(Permission::TripsRead)?;
    let page = Page::<(String, String, Uuid)>::read("sites", page)?;
    let (aj, an, ai) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let sql = concat!(
        summary_sql!(),
        " WHERE u.kind = 'truck_service_site' AND u.active = TRUE AND ((u.jurisdiction >= $1 AND u.jurisdiction < $2) OR u.id = $3)
            AND ($4 IS NULL OR (u.jurisdiction, u.name, u.id) > ($4, $5, $6))
          ORDER BY u.jurisdiction, u.name, u.id LIMIT $7"
    );
    let rows = store.db.fetch_all(q!(sql, lo, hi, unit, aj, an, ai, page.fetch())).await?;
    let list = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |s| (s.jurisdiction.clone(), s.name.clone(), s.id)))
}

async fn visible_site(store: &Store, who: &Principal, id: Uuid) -> Result<SiteSummary, Error> {
    who.require(Permission::TripsRead)?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let sql = concat!(
        summary_sql!(),
        " WHERE u.id = $4 AND u.kind = 'truck_service_site' AND ((u.jurisdiction >= $1 AND u.jurisdiction < $2) OR u.id = $3)"
    );
    summary(&store.db.fetch_optional(q!(sql, lo, hi, unit, id)).await?.ok_or(Error::NotFound("site"))?)
}

pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<SiteView, Error> {
    let site = visible_site(store, who, id).await?;
    let sql = concat!(stay_sql!(), " WHERE x.site_id = $1 AND x.left_at IS NULL ORDER BY x.arrived_at");
    let present: Vec<StayView> = store.db.fetch_all(q!(sql, id)).await?.iter().map(stay).collect::<Result<_, _>>()?;
    let waiting = present.iter().filter(|s| s.waiting_result).cloned().collect();
    Ok(SiteView { site, present, waiting })
}

/// Every stay of a trip at any site, oldest first (part of the trip's record).
pub async fn stays_of_trip(store: &Store, trip: Uuid) -> Result<Vec<StayView>, Error> {
    let sql = concat!(stay_sql!(), " WHERE x.trip_id = $1 ORDER BY x.arrived_at");
    store.db.fetch_all(q!(sql, trip)).await?.iter().map(stay).collect()
}

/// Only the site's own staff work its gate.
fn own_site(who: &Principal, site: Uuid) -> Result<(), Error> {
    who.require(Permission::TripsHandle)?;
    if who.unit_id == Some(site) {
        Ok(())
    } else {
        Err(Error::conflict("not_site_staff", "只有本场地工作人员可以操作", "only this site's staff can do this"))
    }
}

fn site_audit<'a>(action: &'a str, object_type: &'a str, id: Uuid, jurisdiction: &'a str, detail: serde_json::Value) -> audit::Entry<'a> {
    audit::Entry { action, object_type, object_id: id.to_string(), jurisdiction, detail }
}

/// The site's staff, or whoever may manage units in its jurisdiction, set its capacity.
pub async fn set_capacity(store: &Store, who: &Principal, id: Uuid, input: &CapacityInput) -> Result<SiteView, Error> {
    let site = visible_site(store, who, id).await?;
    if who.unit_id != Some(id) {
        who.require(Permission::UnitsWrite)?;
    }
    who.require(Permission::TripsRead)?;
    if !(0..=10_000).contains(&input.capacity) {
        return Err(Error::field("capacity", "out_of_range", "容量应在 0 到 10000 辆之间", "capacity must be between 0 and 10000 trucks"));
    }
    let now = store.now();
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO truck_sites (unit_id, capacity, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (unit_id) DO UPDATE SET capacity = excluded.capacity, updated_at = excluded.updated_at",
        id,
        input.capacity,
        now
    ))
    .await?;
    let detail = serde_json::json!({"from": site.capacity, "to": input.capacity});
    store.audited(who, site_audit("site.capacity", "unit", id, &site.jurisdiction, detail), tx).await?;
    get(store, who, id).await
}

async fn open_trip_by_plate(tx: &mut Tx, plate: &Plate) -> Result<Option<(Uuid, String)>, Error> {
    let r = tx.fetch_optional(q!("SELECT id, jurisdiction FROM trips WHERE plate = $1 AND closed_at IS NULL", plate.as_str())).await?;
    r.map(|r| Ok((r.get("id")?, r.get("jurisdiction")?))).transpose()
}

async fn fetch_stay(store: &Store, site: Uuid, id: Uuid) -> Result<StayView, Error> {
    let sql = concat!(stay_sql!(), " WHERE x.id = $1 AND x.site_id = $2");
    stay(&store.db.fetch_optional(q!(sql, id, site)).await?.ok_or(Error::NotFound("stay"))?)
}

async fn load_stay(tx: &mut Tx, site: Uuid, id: Uuid) -> Result<StayView, Error> {
    let sql = concat!(stay_sql!(), " WHERE x.id = $1 AND x.site_id = $2");
    stay(&tx.fetch_optional(q!(sql, id, site)).await?.ok_or(Error::NotFound("stay"))?)
}

/// A truck arrives at the site: found by plate among open trips (a pre-reported truck too).
pub async fn check_in(store: &Store, who: &Principal, site_id: Uuid, input: &SiteCheckInInput) -> Result<StayView, Error> {
    let site = visible_site(store, who, site_id).await?;
    own_site(who, site_id)?;
    let plate = Plate::parse("plate", &input.plate).map_err(|e| Error::Invalid(vec![e]))?;
    let now = store.now();
    let mut tx = store.db.begin().await?;
    // Take the site's row lock first (PostgreSQL), so two gates cannot both fill the last place.
    tx.execute(q!("UPDATE truck_sites SET updated_at = updated_at WHERE unit_id = $1", site_id)).await?;
    let Some((trip, jurisdiction)) = open_trip_by_plate(&mut tx, &plate).await? else {
        return Err(Error::Invalid(vec![FieldError::new(
            "plate",
            "trip_unknown",
            "该车牌没有未闭环的行程，请先在卡口登记",
            "no open trip for this plate; check it in at a checkpoint first",
        )]));
    };
    if let Some(r) = tx.fetch_optional(q!("SELECT id, site_id FROM site_stays WHERE trip_id = $1 AND left_at IS NULL", trip)).await? {
        let (stay_id, at): (Uuid, Uuid) = (r.get("id")?, r.get("site_id")?);
        if at == site_id {
            return load_stay(&mut tx, site_id, stay_id).await;
        }
        return Err(Error::conflict("already_at_site", "该车辆在另一服务场地尚未离场", "this truck has not checked out of another site"));
    }
    let present: i64 = tx.fetch_one(q!("SELECT COUNT(*) AS n FROM site_stays WHERE site_id = $1 AND left_at IS NULL", site_id)).await?.get("n")?;
    let full = site.capacity.is_some_and(|c| present >= c);
    if full && !input.over_capacity {
        return Err(Error::conflict(
            "site_full",
            format!("场地已满({present}/{} 辆)；如确需接收，请勾选“超容量接收”", site.capacity.unwrap_or(0)),
            format!("the site is full ({present}/{} trucks); tick \"admit over capacity\" to admit it anyway", site.capacity.unwrap_or(0)),
        ));
    }
    let id = Uuid::now_v7();
    tx.execute(q!(
        "INSERT INTO site_stays (id, site_id, trip_id, plate, arrived_at, arrived_by, waiting_result, over_capacity, jurisdiction)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        id,
        site_id,
        trip,
        plate.as_str(),
        now,
        who.name.clone(),
        input.waiting_result,
        full,
        jurisdiction.clone()
    ))
    .await?;
    crate::trips::add_party(&mut tx, trip, site_id).await?;
    let detail =
        serde_json::json!({"site": site_id, "stay": id, "waiting_result": input.waiting_result, "over_capacity": full, "present": present + 1});
    store.audited(who, site_audit("site.check_in", "trip", trip, &jurisdiction, detail), tx).await?;
    fetch_stay(store, site_id, id).await
}

/// The truck's result has come: it no longer waits (it may still stay).
pub async fn result_received(store: &Store, who: &Principal, site_id: Uuid, stay_id: Uuid) -> Result<StayView, Error> {
    change_stay(store, who, site_id, stay_id, "site.result").await
}

/// The truck leaves the site.
pub async fn check_out(store: &Store, who: &Principal, site_id: Uuid, stay_id: Uuid) -> Result<StayView, Error> {
    change_stay(store, who, site_id, stay_id, "site.check_out").await
}

async fn change_stay(store: &Store, who: &Principal, site_id: Uuid, stay_id: Uuid, action: &'static str) -> Result<StayView, Error> {
    visible_site(store, who, site_id).await?;
    own_site(who, site_id)?;
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let s = load_stay(&mut tx, site_id, stay_id).await?;
    if s.left_at.is_some() {
        return Err(Error::conflict("stay_closed", "该车辆已离场", "this truck has already checked out"));
    }
    if action == "site.check_out" {
        tx.execute(q!("UPDATE site_stays SET left_at = $2, left_by = $3 WHERE id = $1 AND left_at IS NULL", stay_id, now, who.name.clone())).await?;
    } else {
        if !s.waiting_result {
            return Ok(s);
        }
        tx.execute(q!("UPDATE site_stays SET waiting_result = FALSE, result_at = $2 WHERE id = $1", stay_id, now)).await?;
    }
    let j: String = tx.fetch_one(q!("SELECT jurisdiction FROM site_stays WHERE id = $1", stay_id)).await?.get("jurisdiction")?;
    let detail = serde_json::json!({"site": site_id, "stay": stay_id, "plate": s.plate});
    store.audited(who, site_audit(action, "trip", s.trip_id, &j, detail), tx).await?;
    fetch_stay(store, site_id, stay_id).await
}
