//! Grids: the smallest management cells, created by users under villages. A grid's code
//! extends its village's code (village + 3 digits), so grids nest in the jurisdiction path.

use crate::page::{Page, PageQuery, Paged};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::division::{Divisions, Level};
use baton_domain::role::Permission;
use baton_domain::{Error, FieldError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub village_code: String,
    pub village_name: String,
    pub member_id: Option<Uuid>,
    pub member_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridInput {
    pub village_code: String,
    pub name: String,
    pub member_id: Option<Uuid>,
}

/// A page of grids, by code.
pub async fn list(store: &Store, who: &Principal, village: Option<&str>, page: &PageQuery) -> Result<Paged<Grid>, Error> {
    // Grids name their members: those who manage grids or may see users.
    if !who.can(Permission::GridsWrite) && !who.can(Permission::UsersRead) {
        return Err(Error::Forbidden);
    }
    let page = Page::<(String, Uuid)>::read("grids", page)?;
    let (ac, ai) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT g.id, g.code, g.name, g.village_code, g.member_id, u.display_name AS member_name
             FROM grids g LEFT JOIN users u ON u.id = g.member_id
             WHERE ((g.jurisdiction >= $1 AND g.jurisdiction < $2) OR u.unit_id = $3) AND ($4 IS NULL OR g.village_code = $4)
               AND ($5 IS NULL OR (g.code, g.id) > ($5, $6))
             ORDER BY g.code, g.id LIMIT $7",
            lo,
            hi,
            unit,
            village,
            ac,
            ai,
            page.fetch()
        ))
        .await?;
    let d = Divisions::get_all();
    let list = rows
        .iter()
        .map(|r| {
            let v: String = r.get("village_code")?;
            Ok(Grid {
                id: r.get("id")?,
                code: r.get("code")?,
                name: r.get("name")?,
                village_name: d.full_name(&v),
                village_code: v,
                member_id: r.get("member_id")?,
                member_name: r.get("member_name")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |g| (g.code.clone(), g.id)))
}

pub async fn create(store: &Store, who: &Principal, input: &GridInput) -> Result<Grid, Error> {
    who.require(Permission::GridsWrite)?;
    let mut c = Check::default();
    let name = c.take(text_field("name", &input.name, 1, 60));
    let village = c.take(Divisions::get_all().code("village_code", &input.village_code, &[Level::Village]));
    if village.is_some_and(|v| !who.scope.covers(v.code, None)) {
        c.0.push(FieldError::new("village_code", "outside_scope", "该村(社区)不在您的辖区内", "this village is outside your jurisdiction"));
    }
    c.done()?;
    let (Some(name), Some(village)) = (name, village) else {
        return Err(Error::internal("validation"));
    };
    if let Some(m) = input.member_id {
        crate::users::get(store, &Principal { permissions: baton_domain::role::Permissions::all(), ..who.clone() }, m).await.map_err(|_| {
            Error::field(
                "member_id",
                "user_unknown",
                "网格员不存在或不在您的辖区内",
                "the grid member does not exist or is outside your jurisdiction",
            )
        })?;
    }
    let mut tx = store.db.begin().await?;
    // The next free number after the highest in use (grids are never deleted, so codes are never reused).
    let last: Option<String> = tx.fetch_one(q!("SELECT MAX(code) AS last FROM grids WHERE village_code = $1", village.code)).await?.get("last")?;
    let n: i64 = last.and_then(|c| c.get(12..).and_then(|x| x.parse().ok())).unwrap_or(0);
    if n >= 999 {
        return Err(Error::field("village_code", "too_many_grids", "该村网格数已达上限", "this village has the maximum number of grids"));
    }
    let code = format!("{}{:03}", village.code, n + 1);
    let id = Uuid::now_v7();
    let now = store.now();
    tx.execute(q!(
        "INSERT INTO grids (id, code, name, village_code, jurisdiction, member_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $2, $5, $6, $6)",
        id,
        code.clone(),
        name.clone(),
        village.code,
        input.member_id,
        now
    ))
    .await
    .map_err(|e| match e {
        Error::Conflict { .. } => Error::field("name", "name_taken", "该村已有同名网格", "this village already has a grid with this name"),
        e => e,
    })?;
    let detail = serde_json::json!({"code": code, "name": name, "member_id": input.member_id});
    store
        .audited(who, audit::Entry { action: "grid.create", object_type: "grid", object_id: id.to_string(), jurisdiction: &code, detail }, tx)
        .await?;
    let all = crate::page::all(|p| async move { list(store, who, Some(village.code), &p).await }).await?;
    all.into_iter().find(|g| g.id == id).ok_or(Error::NotFound("grid"))
}
