//! The person registry: one record per person, found by an identity document through the
//! vault's blind index. Every module that deals with people (sampling, codes, venues) names
//! them by the id registered here, never by their ID number.
//!
//! `register` is the one way in: it finds the person by their document or creates them, inside
//! the caller's transaction, so a sampling desk that scans a person into a tube registers them
//! in the same commit (and a retry finds the record the first try made). A person belongs to a
//! jurisdiction — where they live in the county, or else the registering user's own division —
//! and only users whose scope covers it see them.

use crate::db::{Row, Tx};
use crate::page::{Page, PageQuery, Paged};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::division::{Divisions, Level};
use baton_domain::ident::{PersonalKind, Phone};
use baton_domain::person::{Document, DocumentKind};
use baton_domain::role::Permission;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const DOCUMENT_AAD: &str = "persons.document";
const PHONE_AAD: &str = "persons.phone";
const BIDX_DOCUMENT: &str = "person_document";

/// A person as lists and pages show them: personal data masked.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub id: Uuid,
    pub name: String,
    pub document_kind: DocumentKind,
    pub document_masked: String,
    pub phone_masked: Option<String>,
    pub jurisdiction: String,
    pub place: String,
    pub unit_id: Option<Uuid>,
    pub merged_into: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A person as typed or scanned.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub name: String,
    /// `id_card` (the default), `passport` or `other`.
    #[serde(default)]
    pub document_kind: String,
    pub document_number: String,
    #[serde(default)]
    pub phone: Option<String>,
    /// Residence in the county: a village, township or county code or name. Empty: the
    /// registering user's own division.
    #[serde(default)]
    pub division: Option<String>,
    #[serde(default)]
    pub unit_id: Option<Uuid>,
}

/// A checked person, ready to register.
#[derive(Debug, Clone)]
pub struct Draft {
    pub name: String,
    pub document: Document,
    pub phone: Option<Phone>,
    pub jurisdiction: String,
    pub unit_id: Option<Uuid>,
}

/// Check a person's fields; field names are prefixed with `prefix` (e.g. `members[2].`).
pub fn check(who: &Principal, prefix: &str, input: &PersonInput, today: chrono::NaiveDate) -> Result<Draft, Vec<FieldError>> {
    let mut c = Check::default();
    let f = |n: &str| format!("{prefix}{n}");
    let name = c.take(text_field(&f("name"), &input.name, 1, 50));
    let document = c.take(Document::parse_born_by(&f("document_kind"), &f("document_number"), &input.document_kind, &input.document_number, today));
    let phone = match input.phone.as_deref().map(str::trim) {
        None | Some("") => Some(None),
        Some(p) => c.take(Phone::parse(&f("phone"), p)).map(Some),
    };
    let jurisdiction = match input.division.as_deref().map(str::trim) {
        None | Some("") => Some(who.home().0),
        Some(d) => c.take(Divisions::get_all().resolve(&f("division"), d).and_then(|div| {
            if !matches!(div.level, Level::County | Level::Township | Level::Village) {
                return Err(FieldError::new(f("division"), "division_level", "请填写县、乡镇或村级行政区划", "give a county, township or village"));
            }
            if !who.scope.covers(div.code, None) {
                return Err(FieldError::new(
                    f("division"),
                    "outside_scope",
                    "该行政区划不在您的辖区内",
                    "this division is outside your jurisdiction",
                ));
            }
            Ok(div.code.to_string())
        })),
    };
    match (name, document, phone, jurisdiction, c.0.is_empty()) {
        (Some(name), Some(document), Some(phone), Some(jurisdiction), true) => {
            Ok(Draft { name, document, phone, jurisdiction, unit_id: input.unit_id })
        }
        _ => Err(c.0),
    }
}

fn document_index(store: &Store, d: &Document) -> Vec<u8> {
    store.vault.blind_index(BIDX_DOCUMENT, &d.index_key())
}

/// Find the person holding a document, or register them. Returns the id and whether the record
/// is new. A found record keeps its name and place (the registry is corrected through its own
/// page, not by whoever scans next) but gains a phone it lacked.
pub async fn register(tx: &mut Tx, store: &Store, who: &Principal, d: &Draft, now: DateTime<Utc>) -> Result<(Uuid, bool), Error> {
    let bidx = document_index(store, &d.document);
    if let Some(r) = tx.fetch_optional(q!("SELECT id, phone_enc FROM persons WHERE document_bidx = $1 AND merged_into IS NULL", bidx.clone())).await?
    {
        let id: Uuid = r.get("id")?;
        let phone: Option<Vec<u8>> = r.get("phone_enc")?;
        if let (None, Some(p)) = (phone, &d.phone) {
            tx.execute(q!(
                "UPDATE persons SET phone_enc = $2, phone_bidx = $3, phone_masked = $4, updated_at = $5 WHERE id = $1",
                id,
                store.vault.seal(PHONE_AAD, p.as_str())?,
                store.vault.blind_index("phone", p.as_str()),
                p.mask(),
                now
            ))
            .await?;
        }
        return Ok((id, false));
    }
    // A document of a record merged into another finds the survivor.
    if let Some(r) =
        tx.fetch_optional(q!("SELECT merged_into FROM persons WHERE document_bidx = $1 AND merged_into IS NOT NULL", bidx.clone())).await?
    {
        let mut id: Uuid = r.get("merged_into")?;
        for _ in 0..MAX_MERGE_CHAIN {
            match tx.fetch_optional(q!("SELECT merged_into FROM persons WHERE id = $1", id)).await?.map(|r| r.get::<Option<Uuid>>("merged_into")) {
                Some(Ok(Some(next))) => id = next,
                _ => break,
            }
        }
        return Ok((id, false));
    }
    let id = Uuid::now_v7();
    // Two desks registering one person at once: the second insert yields to the first's row.
    let n = tx
        .execute(q!(
            "INSERT INTO persons (id, name, document_kind, document_enc, document_bidx, document_masked, phone_enc, phone_bidx, phone_masked,
                              jurisdiction, unit_id, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
         ON CONFLICT (document_bidx) WHERE merged_into IS NULL DO NOTHING",
            id,
            d.name.clone(),
            d.document.kind.as_str(),
            store.vault.seal(DOCUMENT_AAD, &d.document.number)?,
            bidx,
            d.document.mask(),
            d.phone.as_ref().map(|p| store.vault.seal(PHONE_AAD, p.as_str())).transpose()?,
            d.phone.as_ref().map(|p| store.vault.blind_index("phone", p.as_str())),
            d.phone.as_ref().map(Phone::mask),
            d.jurisdiction.clone(),
            d.unit_id,
            who.name.clone(),
            now
        ))
        .await?;
    if n == 0 {
        let r =
            tx.fetch_one(q!("SELECT id FROM persons WHERE document_bidx = $1 AND merged_into IS NULL", document_index(store, &d.document))).await?;
        return Ok((r.get("id")?, false));
    }
    Ok((id, true))
}

/// The person holding a document, following merges.
pub async fn find_by_document(store: &Store, d: &Document) -> Result<Option<Uuid>, Error> {
    let bidx = document_index(store, d);
    if let Some(r) = store.db.fetch_optional(q!("SELECT id FROM persons WHERE document_bidx = $1 AND merged_into IS NULL", bidx.clone())).await? {
        return Ok(Some(r.get("id")?));
    }
    match store.db.fetch_optional(q!("SELECT id FROM persons WHERE document_bidx = $1 AND merged_into IS NOT NULL", bidx)).await? {
        Some(r) => survivor(store, r.get("id")?).await.map(Some),
        None => Ok(None),
    }
}

/// A person named by id in a request (put into a tube by their id): the record a merge left them
/// in, with its jurisdiction, if both the named record and that one are in the caller's area
/// (`area_args`: a township's sampling team names the township's residents) or were registered
/// for the caller's unit. Anyone else is named by their document, which only the person at the
/// desk holds. `None` for an unknown id and for one out of reach alike, so that a request cannot
/// tell them apart.
pub(crate) async fn nameable(tx: &mut Tx, who: &Principal, id: Uuid) -> Result<Option<(Uuid, String)>, Error> {
    let (lo, hi, unit) = crate::area_args(&who.scope);
    let mut id = id;
    for _ in 0..MAX_MERGE_CHAIN {
        let r = tx
            .fetch_optional(q!(
                "SELECT jurisdiction, merged_into FROM persons WHERE id = $1 AND ((jurisdiction >= $2 AND jurisdiction < $3) OR unit_id = $4)",
                id,
                lo.clone(),
                hi.clone(),
                unit
            ))
            .await?;
        let Some(r) = r else { return Ok(None) };
        match r.get::<Option<Uuid>>("merged_into")? {
            Some(next) => id = next,
            None => return Ok(Some((id, r.get("jurisdiction")?))),
        }
    }
    Ok(None)
}

/// Merges chain at most this deep (a merged record's survivor merged again, and so on).
const MAX_MERGE_CHAIN: usize = 16;

/// The record a person's data now lives in: itself, or the record it was merged into.
pub async fn survivor(store: &Store, id: Uuid) -> Result<Uuid, Error> {
    let mut id = id;
    for _ in 0..MAX_MERGE_CHAIN {
        match store.db.fetch_optional(q!("SELECT merged_into FROM persons WHERE id = $1", id)).await? {
            Some(r) => match r.get::<Option<Uuid>>("merged_into")? {
                Some(next) => id = next,
                None => return Ok(id),
            },
            None => return Err(Error::NotFound("person")),
        }
    }
    Ok(id)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeInput {
    /// The duplicate record, merged into the one in the path.
    pub duplicate: Uuid,
    #[serde(default)]
    pub note: Option<String>,
}

/// One merge, as the history shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Merge {
    pub id: Uuid,
    pub kept_id: Uuid,
    pub merged_id: Uuid,
    pub merged_name: String,
    pub merged_document: String,
    pub note: String,
    pub moved: serde_json::Value,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// Merge a duplicate record into `keep`: its stays, control orders and scans move to `keep`, its
/// row stays (marked `merged_into`) so its document still finds `keep`, the merge is kept in the
/// history and audited, and `keep`'s code is recomputed from the joined facts. Results stay with
/// the testing module's record of the duplicate.
pub async fn merge(store: &Store, who: &Principal, keep: Uuid, input: &MergeInput) -> Result<Merge, Error> {
    who.require(Permission::PersonsWrite)?;
    let dup = input.duplicate;
    if dup == keep {
        return Err(Error::field("duplicate", "same_person", "不能与自身合并", "a record cannot be merged into itself"));
    }
    let note = text_field("note", input.note.as_deref().unwrap_or(""), 0, 500).map_err(|e| Error::Invalid(vec![e]))?;
    let k = get(store, who, keep).await?;
    let d = get(store, who, dup).await.map_err(|e| match e {
        Error::NotFound(_) => Error::field("duplicate", "person_unknown", "要合并的人员不存在或不在您的范围内", "no such person in your scope"),
        e => e,
    })?;
    if k.merged_into.is_some() || d.merged_into.is_some() {
        return Err(Error::conflict("person_merged", "该人员记录已合并到另一记录", "this record was merged into another"));
    }
    let now = store.now();
    let mut tx = store.db.begin().await?;
    // Only if neither was merged meanwhile.
    let n = tx.execute(q!("UPDATE persons SET merged_into = $1, updated_at = $2 WHERE id = $3 AND merged_into IS NULL", keep, now, dup)).await?;
    if n == 0 || tx.fetch_optional(q!("SELECT id FROM persons WHERE id = $1 AND merged_into IS NULL", keep)).await?.is_none() {
        return Err(Error::conflict("person_merged", "该人员记录已合并到另一记录", "this record was merged into another"));
    }
    let stays = tx.execute(q!("UPDATE person_stays SET person_id = $1 WHERE person_id = $2", keep, dup)).await?;
    let controls = tx.execute(q!("UPDATE person_controls SET person_id = $1 WHERE person_id = $2", keep, dup)).await?;
    let scans = tx.execute(q!("UPDATE scans SET person_id = $1 WHERE person_id = $2", keep, dup)).await?;
    // The duplicate's code goes (its code is the survivor's now); the head of its history stays
    // with the merge.
    let code_hist: Option<Uuid> = match tx.fetch_optional(q!("DELETE FROM person_codes WHERE person_id = $1 RETURNING hist", dup)).await? {
        Some(r) => r.get("hist")?,
        None => None,
    };
    let moved = serde_json::json!({"stays": stays, "controls": controls, "scans": scans});
    let id = Uuid::now_v7();
    tx.execute(q!(
        "INSERT INTO person_merges (id, kept_id, merged_id, note, moved, created_by, created_at, code_hist) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        id,
        keep,
        dup,
        note.clone(),
        moved.to_string(),
        who.name.clone(),
        now,
        code_hist
    ))
    .await?;
    let entry = audit::Entry {
        action: "person.merge",
        object_type: "person",
        object_id: keep.to_string(),
        jurisdiction: &k.jurisdiction,
        detail: serde_json::json!({"merged": dup, "moved": moved, "note": note}),
    };
    store.audited(who, entry, tx).await?;
    crate::person_codes::recompute_ids(store, &[keep], "merge").await?;
    Ok(Merge {
        id,
        kept_id: keep,
        merged_id: dup,
        merged_name: d.name,
        merged_document: d.document_masked,
        note,
        moved,
        created_by: who.name.clone(),
        created_at: now,
    })
}

/// A page of the records merged into a person, newest first.
pub async fn merges(store: &Store, who: &Principal, keep: Uuid, page: &PageQuery) -> Result<Paged<Merge>, Error> {
    let page = Page::<(DateTime<Utc>, Uuid)>::read("merges", page)?;
    let (at, id) = page.parts();
    get(store, who, keep).await?;
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT m.id, m.kept_id, m.merged_id, p.name, p.document_masked, m.note, m.moved, m.created_by, m.created_at
               FROM person_merges m JOIN persons p ON p.id = m.merged_id
              WHERE m.kept_id = $1 AND ($2 IS NULL OR (m.created_at, m.id) < ($2, $3))
              ORDER BY m.created_at DESC, m.id DESC LIMIT $4",
            keep,
            at,
            id,
            page.fetch()
        ))
        .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(Merge {
                id: r.get("id")?,
                kept_id: r.get("kept_id")?,
                merged_id: r.get("merged_id")?,
                merged_name: r.get("name")?,
                merged_document: r.get("document_masked")?,
                note: r.get("note")?,
                moved: serde_json::from_str(&r.get::<String>("moved")?).map_err(Error::internal)?,
                created_by: r.get("created_by")?,
                created_at: r.get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(page.finish(list, |m| (m.created_at, m.id)))
}

fn from_row(r: &Row) -> Result<Person, Error> {
    let jurisdiction: String = r.get("jurisdiction")?;
    let kind: String = r.get("document_kind")?;
    Ok(Person {
        id: r.get("id")?,
        name: r.get("name")?,
        document_kind: DocumentKind::parse(&kind).ok_or_else(|| Error::internal(format!("stored document kind {kind}")))?,
        document_masked: r.get("document_masked")?,
        phone_masked: r.get("phone_masked")?,
        place: Divisions::get_all().full_name(&jurisdiction),
        jurisdiction,
        unit_id: r.get("unit_id")?,
        merged_into: r.get("merged_into")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

/// One person, if the viewer's scope covers them.
pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<Person, Error> {
    who.require(Permission::PersonsRead)?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let r = store
        .db
        .fetch_optional(q!(
            "SELECT id, name, document_kind, document_masked, phone_masked, jurisdiction, unit_id, merged_into, created_at, updated_at
               FROM persons WHERE id = $1 AND ((jurisdiction >= $2 AND jurisdiction < $3) OR unit_id = $4)",
            id,
            lo,
            hi,
            unit
        ))
        .await?
        .ok_or(Error::NotFound("person"))?;
    from_row(&r)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A name prefix, or a whole document number (found through the blind index).
    #[serde(default)]
    pub q: Option<String>,
    /// A division code: only people living there.
    #[serde(default)]
    pub division: Option<String>,
}

/// A page of the people in the viewer's scope, by name or document; merged records are left out.
pub async fn search(store: &Store, who: &Principal, f: &Filter, page: &PageQuery) -> Result<Paged<Person>, Error> {
    who.require(Permission::PersonsRead)?;
    let page = Page::<(String, String, Uuid)>::read("persons", page)?;
    let (aj, an, ai) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let q = f.q.as_deref().map(str::trim).unwrap_or("");
    // A whole document number is looked up exactly; anything else is a name prefix.
    let bidx = ["id_card", "passport", "other"]
        .iter()
        .find_map(|k| Document::parse("", "", k, q).ok())
        .map(|d| document_index(store, &d))
        .unwrap_or_default();
    let division = f.division.as_deref().map(str::trim).unwrap_or("");
    let like = format!("{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT id, name, document_kind, document_masked, phone_masked, jurisdiction, unit_id, merged_into, created_at, updated_at
               FROM persons
              WHERE merged_into IS NULL AND ((jurisdiction >= $1 AND jurisdiction < $2) OR unit_id = $3)
                AND ($4 = '' OR name LIKE $5 ESCAPE '\\' OR document_bidx = $6)
                AND ($7 = '' OR jurisdiction >= $7 AND jurisdiction < $8)
                AND ($9 IS NULL OR (jurisdiction, name, id) > ($9, $10, $11))
              ORDER BY jurisdiction, name, id LIMIT $12",
            lo,
            hi,
            unit,
            q,
            like,
            bidx,
            division,
            baton_domain::division::prefix_end(division),
            aj,
            an,
            ai,
            page.fetch()
        ))
        .await?;
    let list = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |p| (p.jurisdiction.clone(), p.name.clone(), p.id)))
}

/// Register one person by hand (the registry page, the API), audited.
pub async fn create(store: &Store, who: &Principal, input: &PersonInput) -> Result<(Person, bool), Error> {
    who.require(Permission::PersonsWrite)?;
    // Someone who sees only their own unit's records (a grid member) registers residents into
    // that unit; otherwise they could not read back whom they had just registered.
    let checked = check(who, "", input, store.today()).map(|mut d| {
        if let (None, baton_domain::scope::Scope::Unit { unit_id, .. }) = (d.unit_id, &who.scope) {
            d.unit_id = Some(*unit_id);
        }
        d
    });
    let mut tx = store.db.begin().await?;
    // The unit a person is registered for sees them: only a unit inside the registrar's scope.
    let unit_ok = match input.unit_id {
        Some(u) => crate::units::in_scope(&mut tx, who, u).await?.is_some(),
        None => true,
    };
    let d = match (checked, unit_ok) {
        (Ok(d), true) => d,
        (checked, unit_ok) => {
            let mut errs = checked.err().unwrap_or_default();
            if !unit_ok {
                errs.push(FieldError::new("unit_id", "unit_unknown", "单位不存在", "the unit does not exist"));
            }
            return Err(Error::Invalid(errs));
        }
    };
    let (id, new) = register(&mut tx, store, who, &d, store.now()).await?;
    if new {
        let entry = audit::Entry {
            action: "person.register",
            object_type: "person",
            object_id: id.to_string(),
            jurisdiction: &d.jurisdiction,
            detail: serde_json::json!({"name": d.name, "document_kind": d.document.kind.as_str()}),
        };
        store.audited(who, entry, tx).await?;
    } else {
        tx.commit().await?;
    }
    // Whoever typed the whole document number may see the (masked) record it names, even one
    // registered elsewhere: the person is standing at their desk.
    let r = store
        .db
        .fetch_one(q!(
            "SELECT id, name, document_kind, document_masked, phone_masked, jurisdiction, unit_id, merged_into, created_at, updated_at
               FROM persons WHERE id = $1",
            id
        ))
        .await?;
    Ok((from_row(&r)?, new))
}

/// Show a document number or phone in full: needs the right, and leaves an audit entry.
pub async fn reveal(store: &Store, who: &Principal, id: Uuid, kind: PersonalKind) -> Result<Option<String>, Error> {
    who.require(Permission::PersonalReveal)?;
    let p = get(store, who, id).await?;
    let (col, aad) = match kind {
        PersonalKind::IdNumber => ("document_enc", DOCUMENT_AAD),
        PersonalKind::Phone => ("phone_enc", PHONE_AAD),
    };
    let sql = match kind {
        PersonalKind::IdNumber => "SELECT document_enc FROM persons WHERE id = $1",
        PersonalKind::Phone => "SELECT phone_enc FROM persons WHERE id = $1",
    };
    let r = store.db.fetch_one(q!(sql, id)).await?;
    let enc: Option<Vec<u8>> = r.get(col)?;
    let plain = enc.map(|e| store.vault.open(aad, &e)).transpose()?;
    let tx = store.db.begin().await?;
    let entry = audit::Entry {
        action: "personal.reveal",
        object_type: "person",
        object_id: id.to_string(),
        jurisdiction: &p.jurisdiction,
        detail: serde_json::json!({"field": kind.as_str(), "name": p.name}),
    };
    store.audited(who, entry, tx).await?;
    Ok(plain)
}

/// The blind indexes a trip's crew list keeps (`trip_crew.id_number_bidx`) for the ID numbers of
/// a person and of the records merged into them: how the exposure search finds the trips a person
/// was crew of. Computed in memory from the sealed numbers, which go nowhere else.
pub(crate) async fn crew_indexes(store: &Store, id: Uuid) -> Result<Vec<Vec<u8>>, Error> {
    let rows = store
        .db
        .fetch_all(q!(
            // Two indexed probes, not `id = $1 OR merged_into = $1`, which SQLite answers by a scan.
            "SELECT document_enc FROM persons WHERE id = $1 AND document_kind = $2
             UNION ALL SELECT document_enc FROM persons WHERE merged_into = $1 AND document_kind = $2",
            id,
            DocumentKind::IdCard.as_str()
        ))
        .await?;
    rows.iter().map(|r| Ok(store.vault.blind_index("id_number", &store.vault.open(DOCUMENT_AAD, &r.get::<Vec<u8>>("document_enc")?)?))).collect()
}

/// After a key rotation: re-seal every person's values not under the active key.
pub async fn reseal_all(store: &Store) -> Result<u64, Error> {
    use crate::vault::SealedColumn;
    let cols = [
        SealedColumn { column: "document_enc", aad: DOCUMENT_AAD, update: "UPDATE persons SET document_enc = $2 WHERE id = $1" },
        SealedColumn { column: "phone_enc", aad: PHONE_AAD, update: "UPDATE persons SET phone_enc = $2 WHERE id = $1" },
    ];
    crate::vault::reseal(store, "persons", "SELECT id, document_enc, phone_enc FROM persons", &cols).await
}
