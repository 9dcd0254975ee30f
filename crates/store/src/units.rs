//! Units: who answers for what, where, and who supervises them (the escalation path).

use crate::db::Row;
use crate::page::{Page, PageQuery, Paged};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::division::{Divisions, Level};
use baton_domain::role::Permission;
use baton_domain::unit::UnitKind;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    /// The division the unit sits in (its jurisdiction path).
    pub division_code: String,
    pub division_name: String,
    pub supervisor_id: Option<Uuid>,
    pub supervisor_name: Option<String>,
    pub address: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitInput {
    pub name: String,
    pub kind: String,
    pub division_code: String,
    pub supervisor_id: Option<Uuid>,
    #[serde(default)]
    pub address: String,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

fn from_row(r: &Row) -> Result<Unit, Error> {
    let code: String = r.get("jurisdiction")?;
    Ok(Unit {
        id: r.get("id")?,
        name: r.get("name")?,
        kind: r.get("kind")?,
        division_name: Divisions::get_all().full_name(&code),
        division_code: code,
        supervisor_id: r.get("supervisor_id")?,
        supervisor_name: r.get("supervisor_name")?,
        address: r.get("address")?,
        active: r.get("active")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitFilter {
    pub kind: Option<String>,
    pub q: Option<String>,
}

/// Every unit the filter finds (for choices and the command line).
pub async fn list(store: &Store, who: &Principal, f: &UnitFilter) -> Result<Vec<Unit>, Error> {
    crate::page::all(|p| async move { page(store, who, f, &p).await }).await
}

/// A page of units, by division, kind and name.
pub async fn page(store: &Store, who: &Principal, f: &UnitFilter, page: &PageQuery) -> Result<Paged<Unit>, Error> {
    who.require(Permission::UnitsRead)?;
    let page = Page::<(String, String, String, Uuid)>::read("units", page)?;
    let (aj, ak, an, ai) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let like = f.q.as_ref().map(|s| s.trim()).filter(|s| !s.is_empty()).map(|s| format!("%{}%", s.replace(['%', '_'], "")));
    let kind = f.kind.clone().filter(|k| !k.is_empty());
    let rows =
        store
            .db
            .fetch_all(q!(
            "SELECT u.id, u.name, u.kind, u.jurisdiction, u.supervisor_id, s.name AS supervisor_name, u.address, u.active, u.created_at, u.updated_at
             FROM units u LEFT JOIN units s ON s.id = u.supervisor_id
             WHERE ((u.jurisdiction >= $1 AND u.jurisdiction < $2) OR u.id = $3)
               AND ($4 IS NULL OR u.kind = $4) AND ($5 IS NULL OR u.name LIKE $5)
               AND ($6 IS NULL OR (u.jurisdiction, u.kind, u.name, u.id) > ($6, $7, $8, $9))
             ORDER BY u.jurisdiction, u.kind, u.name, u.id LIMIT $10",
            lo, hi, unit, kind, like, aj, ak, an, ai, page.fetch()
        ))
            .await?;
    let list = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |u| (u.division_code.clone(), u.kind.clone(), u.name.clone(), u.id)))
}

pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<Unit, Error> {
    who.require(Permission::UnitsRead)?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let r =
        store
            .db
            .fetch_optional(q!(
            "SELECT u.id, u.name, u.kind, u.jurisdiction, u.supervisor_id, s.name AS supervisor_name, u.address, u.active, u.created_at, u.updated_at
             FROM units u LEFT JOIN units s ON s.id = u.supervisor_id
             WHERE u.id = $4 AND ((u.jurisdiction >= $1 AND u.jurisdiction < $2) OR u.id = $3)",
            lo, hi, unit, id
        ))
            .await?
            .ok_or(Error::NotFound("unit"))?;
    from_row(&r)
}

/// A unit named in a request's `field` (a user's unit, a venue's running unit), looked up as
/// the caller sees units whatever their permissions: one outside their scope is reported on
/// the field as unknown, the same as one that does not exist.
pub(crate) async fn named(store: &Store, who: &Principal, c: &mut Check, field: &str, id: Uuid) -> Result<Option<Unit>, Error> {
    let all = Principal { permissions: baton_domain::role::Permissions::all(), ..who.clone() };
    match get(store, &all, id).await {
        Ok(u) => Ok(Some(u)),
        Err(Error::NotFound(_)) => {
            c.0.push(FieldError::new(field, "unit_unknown", "单位不存在或不在您的辖区内", "the unit does not exist or is outside your jurisdiction"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A unit named in a request as the owner of what it writes (the unit a person is registered
/// for, a fallback escort on the roster): its kind and jurisdiction, if it is active and inside
/// the caller's scope. `None` for an unknown unit and one out of scope alike. Units named as the
/// other party of a link (a trip's destination, a handoff's receiver, a lab) are the county's
/// shared directory and are not checked here.
pub(crate) async fn in_scope(tx: &mut crate::db::Tx, who: &Principal, id: Uuid) -> Result<Option<(String, String)>, Error> {
    let (lo, hi, unit) = scope_args(&who.scope);
    let r = tx
        .fetch_optional(q!(
            "SELECT kind, jurisdiction FROM units WHERE id = $1 AND active = TRUE AND ((jurisdiction >= $2 AND jurisdiction < $3) OR id = $4)",
            id,
            lo,
            hi,
            unit
        ))
        .await?;
    r.map(|r| Ok((r.get("kind")?, r.get("jurisdiction")?))).transpose()
}

/// Any unit by id, regardless of scope (for checks such as "does the supervisor exist").
async fn exists(tx: &mut crate::db::Tx, id: Uuid) -> Result<Option<(Uuid, Option<Uuid>)>, Error> {
    let r = tx.fetch_optional(q!("SELECT id, supervisor_id FROM units WHERE id = $1", id)).await?;
    r.map(|r| Ok((r.get("id")?, r.get("supervisor_id")?))).transpose()
}

/// A supervisor sits at the unit's own level or above it (its jurisdiction contains the
/// unit's), or inside the caller's scope. Any other unit is answered as unknown, so that a
/// caller cannot probe for units in another township, nor hang their unit under one.
async fn check_supervisor(tx: &mut crate::db::Tx, who: &Principal, supervisor: Uuid, code: &str) -> Result<(), Error> {
    let r = tx.fetch_optional(q!("SELECT jurisdiction FROM units WHERE id = $1", supervisor)).await?;
    let allowed = match r {
        Some(r) => {
            let j: String = r.get("jurisdiction")?;
            code.starts_with(&j) || who.scope.covers(&j, Some(supervisor))
        }
        None => false,
    };
    if allowed { Ok(()) } else { Err(Error::field("supervisor_id", "unit_unknown", "上级单位不存在", "the supervising unit does not exist")) }
}

fn validate(who: &Principal, input: &UnitInput) -> Result<(String, UnitKind, String, String), Error> {
    let mut c = Check::default();
    let name = c.take(text_field("name", &input.name, 1, 100));
    let kind = c.take(UnitKind::parse(&input.kind).ok_or_else(|| {
        FieldError::new("kind", "unit_kind_unknown", format!("未知单位类型“{}”", input.kind), format!("unknown unit kind \"{}\"", input.kind))
    }));
    let div = c.take(Divisions::get_all().code("division_code", &input.division_code, &[Level::County, Level::Township, Level::Village]));
    let address = c.take(text_field("address", &input.address, 0, 200));
    if let Some(d) = div
        && !who.scope.covers(d.code, None)
    {
        c.0.push(FieldError::new("division_code", "outside_scope", "该行政区划不在您的辖区内", "this division is outside your jurisdiction"));
    }
    c.done()?;
    match (name, kind, div, address) {
        (Some(n), Some(k), Some(d), Some(a)) => Ok((n, k, d.code.to_string(), a)),
        _ => Err(Error::internal("validation")),
    }
}

pub async fn create(store: &Store, who: &Principal, input: &UnitInput) -> Result<Unit, Error> {
    who.require(Permission::UnitsWrite)?;
    let (name, kind, code, address) = validate(who, input)?;
    let id = Uuid::now_v7();
    let now = store.now();
    let mut tx = store.db.begin().await?;
    if let Some(s) = input.supervisor_id {
        check_supervisor(&mut tx, who, s, &code).await?;
    }
    tx.execute(q!(
        "INSERT INTO units (id, name, kind, jurisdiction, supervisor_id, address, active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        id, name.clone(), kind.as_str(), code.clone(), input.supervisor_id, address, input.active, now
    ))
    .await
    .map_err(name_taken)?;
    let detail = serde_json::json!({"name": name, "kind": kind.as_str(), "division_code": code, "supervisor_id": input.supervisor_id});
    store
        .audited(who, audit::Entry { action: "unit.create", object_type: "unit", object_id: id.to_string(), jurisdiction: &code, detail }, tx)
        .await?;
    get(store, &Principal::system(&who.request_id), id).await
}

fn name_taken(e: Error) -> Error {
    match e {
        Error::Conflict { code: "already_exists", .. } => {
            Error::field("name", "name_taken", "同一区划内已有同名单位", "a unit with this name already exists in this division")
        }
        e => e,
    }
}

pub async fn update(store: &Store, who: &Principal, id: Uuid, input: &UnitInput) -> Result<Unit, Error> {
    who.require(Permission::UnitsWrite)?;
    let before = get(store, who, id).await?;
    let (name, kind, code, address) = validate(who, input)?;
    let mut tx = store.db.begin().await?;
    if let Some(s) = input.supervisor_id {
        check_supervisor(&mut tx, who, s, &code).await?;
        // Walk up from the new supervisor: reaching this unit would make a cycle.
        let mut cur = Some(s);
        let mut steps = 0;
        while let Some(c) = cur {
            if c == id {
                return Err(Error::field(
                    "supervisor_id",
                    "supervisor_cycle",
                    "上级单位不能是本单位或其下级",
                    "a unit cannot be supervised by itself or a unit it supervises",
                ));
            }
            let Some((_, up)) = exists(&mut tx, c).await? else {
                return Err(Error::field("supervisor_id", "unit_unknown", "上级单位不存在", "the supervising unit does not exist"));
            };
            cur = up;
            steps += 1;
            if steps > 64 {
                break;
            }
        }
    }
    tx.execute(q!(
        "UPDATE units SET name = $2, kind = $3, jurisdiction = $4, supervisor_id = $5, address = $6, active = $7, updated_at = $8 WHERE id = $1",
        id,
        name.clone(),
        kind.as_str(),
        code.clone(),
        input.supervisor_id,
        address,
        input.active,
        store.now()
    ))
    .await
    .map_err(name_taken)?;
    let detail = serde_json::json!({
        "before": {"name": before.name, "kind": before.kind, "division_code": before.division_code, "supervisor_id": before.supervisor_id, "active": before.active},
        "after": {"name": name, "kind": kind.as_str(), "division_code": code, "supervisor_id": input.supervisor_id, "active": input.active},
    });
    store
        .audited(who, audit::Entry { action: "unit.update", object_type: "unit", object_id: id.to_string(), jurisdiction: &code, detail }, tx)
        .await?;
    get(store, &Principal::system(&who.request_id), id).await
}

/// The escalation path of a unit: its supervisors, nearest first.
pub async fn supervisors(store: &Store, id: Uuid) -> Result<Vec<Uuid>, Error> {
    let mut out = Vec::new();
    let mut cur = id;
    for _ in 0..64 {
        let r = store.db.fetch_optional(q!("SELECT supervisor_id FROM units WHERE id = $1", cur)).await?;
        match r.map(|r| r.get::<Option<Uuid>>("supervisor_id")).transpose()?.flatten() {
            Some(s) if !out.contains(&s) => {
                out.push(s);
                cur = s;
            }
            _ => break,
        }
    }
    Ok(out)
}
