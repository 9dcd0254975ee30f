//! Policy versions: parameters in force from an effective time, edited by the command office.

use crate::page::{Page, PageQuery, Paged};
use crate::{Check, Principal, Store, audit, q, text_field};
use baton_domain::policy::{PolicyParams, PolicyVersion, in_force};
use baton_domain::role::Permission;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// Every version, oldest first.
pub async fn list(store: &Store) -> Result<Vec<PolicyVersion>, Error> {
    crate::page::all(|p| async move { page(store, &p).await }).await
}

/// A page of versions, oldest first.
pub async fn page(store: &Store, page: &PageQuery) -> Result<Paged<PolicyVersion>, Error> {
    let page = Page::<i64>::read("policy", page)?;
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT version, effective_from, params, note FROM policy_versions WHERE ($1 IS NULL OR version > $1) ORDER BY version LIMIT $2",
            page.after,
            page.fetch()
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            let params: String = r.get("params")?;
            Ok(PolicyVersion {
                version: r.get("version")?,
                effective_from: r.get("effective_from")?,
                params: serde_json::from_str(&params).map_err(Error::internal)?,
                note: r.get("note")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |v| v.version))
}

/// The version in force at `at` (every decision records its number).
pub async fn current(store: &Store, at: DateTime<Utc>) -> Result<PolicyVersion, Error> {
    let all = list(store).await?;
    in_force(&all, at).cloned().ok_or(Error::NotFound("policy version"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    pub effective_from: DateTime<Utc>,
    pub params: serde_json::Value,
    pub note: String,
}

/// Add a version. Only county-wide staff may: a policy binds the whole county.
pub async fn create(store: &Store, who: &Principal, input: &PolicyInput) -> Result<PolicyVersion, Error> {
    who.require(Permission::PolicyWrite)?;
    who.require_county_wide()?;
    let mut c = Check::default();
    let note = c.take(text_field("note", &input.note, 1, 500));
    let params: Option<PolicyParams> = match serde_json::from_value(input.params.clone()) {
        Ok(p) => Some(p),
        Err(e) => {
            c.0.push(FieldError::new("params", "params_invalid", format!("策略参数格式错误：{e}"), format!("invalid parameters: {e}")));
            None
        }
    };
    if let Some(p) = &params {
        c.0.extend(p.validate().into_iter().map(|e| {
            let f = format!("params.{}", e.field);
            e.at(f)
        }));
    }
    if input.effective_from < store.now() - chrono::Duration::minutes(5) {
        c.0.push(FieldError::new(
            "effective_from",
            "in_past",
            "生效时间不能早于现在(已作出的决定不能改写)",
            "cannot take effect in the past (decisions made stay as made)",
        ));
    }
    c.done()?;
    let (Some(note), Some(params)) = (note, params) else {
        return Err(Error::internal("validation"));
    };
    save(store, who, input.effective_from, &params, &note).await
}

/// Insert the next version number; also used to seed version 1.
pub async fn save(store: &Store, who: &Principal, effective_from: DateTime<Utc>, params: &PolicyParams, note: &str) -> Result<PolicyVersion, Error> {
    let mut tx = store.db.begin().await?;
    let next: i64 = tx.fetch_one(q!("SELECT COALESCE(MAX(version), 0) + 1 AS next FROM policy_versions")).await?.get("next")?;
    let id = Uuid::now_v7();
    let json = serde_json::to_string(params).map_err(Error::internal)?;
    tx.execute(q!(
        "INSERT INTO policy_versions (id, version, effective_from, params, note, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        id,
        next,
        audit::micros(effective_from),
        json,
        note,
        who.user_id,
        store.now()
    ))
    .await?;
    let detail = serde_json::json!({"version": next, "effective_from": effective_from, "note": note, "params": params});
    store
        .audited(
            who,
            audit::Entry { action: "policy.create", object_type: "policy_version", object_id: next.to_string(), jurisdiction: "", detail },
            tx,
        )
        .await?;
    Ok(PolicyVersion { version: next, effective_from, params: params.clone(), note: note.to_string() })
}

/// Seed version 1 with the defaults when there is none.
pub async fn seed(store: &Store, effective_from: DateTime<Utc>) -> Result<(), Error> {
    if list(store).await?.is_empty() {
        save(store, &Principal::system("seed"), effective_from, &PolicyParams::default(), "默认策略(2022年11月)/ Default policy (Nov 2022)").await?;
    }
    Ok(())
}
