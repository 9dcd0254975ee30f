//! Roles and users, with their personal data sealed at rest and masked on the way out.

use crate::db::Row;
use crate::page::{Page, PageQuery, Paged};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::ident::{IdNumber, PersonalKind, Phone, mask_kind};
use baton_domain::role::{Permission, Permissions};
use baton_domain::scope::Scope;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// ---------- roles ----------

#[derive(Debug, Clone, Serialize)]
pub struct Role {
    pub id: Uuid,
    pub name: String,
    pub label_zh: String,
    pub label_en: String,
    pub permissions: Vec<&'static str>,
    pub builtin: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    pub name: String,
    pub label_zh: String,
    pub label_en: String,
    pub permissions: Vec<String>,
}

impl Role {
    pub fn permission_set(&self) -> Permissions {
        Permissions(self.permissions.iter().filter_map(|p| Permission::parse(p)).collect())
    }
}

fn role_from_row(r: &Row) -> Result<Role, Error> {
    let p: String = r.get("permissions")?;
    Ok(Role {
        id: r.get("id")?,
        name: r.get("name")?,
        label_zh: r.get("label_zh")?,
        label_en: r.get("label_en")?,
        permissions: Permissions::from_db(&p).0.into_iter().map(Permission::as_str).collect(),
        builtin: r.get("builtin")?,
    })
}

/// Roles are county-wide definitions: everyone may read them (to see what a user may do).
/// Every role (for choices).
pub async fn list_roles(store: &Store) -> Result<Vec<Role>, Error> {
    crate::page::all(|p| async move { page_roles(store, &p).await }).await
}

/// A page of roles: the built-in ones first, then by name.
pub async fn page_roles(store: &Store, page: &PageQuery) -> Result<Paged<Role>, Error> {
    let page = Page::<(i64, String, Uuid)>::read("roles", page)?;
    let (ab, an, ai) = page.parts();
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT id, name, label_zh, label_en, permissions, builtin FROM roles
             WHERE ($1 IS NULL OR (CASE WHEN builtin THEN 0 ELSE 1 END, name, id) > ($1, $2, $3))
             ORDER BY CASE WHEN builtin THEN 0 ELSE 1 END, name, id LIMIT $4",
            ab,
            an,
            ai,
            page.fetch()
        ))
        .await?;
    let list = rows.iter().map(role_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |r| (i64::from(!r.builtin), r.name.clone(), r.id)))
}

pub async fn role_by_name(store: &Store, name: &str) -> Result<Option<Role>, Error> {
    let r = store.db.fetch_optional(q!("SELECT id, name, label_zh, label_en, permissions, builtin FROM roles WHERE name = $1", name)).await?;
    r.as_ref().map(role_from_row).transpose()
}

fn role_name(field: &str, s: &str) -> Result<String, FieldError> {
    let t = s.trim();
    if t.is_empty() || t.len() > 40 || !t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(FieldError::new(
            field,
            "role_name_format",
            "角色代码只能包含小写字母、数字和下划线",
            "a role code has lowercase letters, digits and underscores",
        ));
    }
    Ok(t.to_string())
}

/// Create or change a custom role; says whether it was created. Roles are county-wide, so
/// what a change grants reaches every holder: a role may be created or changed only to
/// permissions the editor holds, and an existing one changed only by someone who could have
/// granted it (its permissions are theirs) and whose scope takes in every user holding it.
/// Built-in roles are read-only. (API tokens hold permissions of their own, not roles.)
pub async fn save_role(store: &Store, who: &Principal, input: &RoleInput) -> Result<(Role, bool), Error> {
    who.require(Permission::RolesWrite)?;
    let mut c = Check::default();
    let name = c.take(role_name("name", &input.name));
    let zh = c.take(text_field("label_zh", &input.label_zh, 1, 40));
    let en = c.take(text_field("label_en", &input.label_en, 1, 60));
    let perms = c.take(Permissions::parse_list("permissions", &input.permissions));
    if let Some(p) = &perms
        && !who.permissions.covers(p)
    {
        c.0.push(FieldError::new("permissions", "exceeds_own", "不能授予自己没有的权限", "you cannot grant permissions you do not have"));
    }
    let existing = match &name {
        Some(n) => role_by_name(store, n).await?,
        None => None,
    };
    if existing.as_ref().is_some_and(|r| r.builtin) {
        return Err(Error::conflict("role_builtin", "内置角色不能修改", "built-in roles cannot be changed"));
    }
    if let Some(r) = &existing
        && !who.permissions.covers(&r.permission_set())
    {
        c.0.push(FieldError::new(
            "name",
            "role_exceeds_own",
            "该角色含有您没有的权限，您不能修改它",
            "the role holds permissions you do not have, so you cannot change it",
        ));
    }
    c.done()?;
    let (Some(name), Some(zh), Some(en), Some(perms)) = (name, zh, en, perms) else {
        return Err(Error::internal("validation"));
    };
    let now = store.now();
    let id = existing.as_ref().map(|r| r.id).unwrap_or_else(Uuid::now_v7);
    let mut tx = store.db.begin().await?;
    if existing.is_some() {
        // Holders outside the editor's scope, counted in the transaction that changes the role.
        let (lo, hi, unit) = scope_args(&who.scope);
        let outside: i64 = tx
            .fetch_one(q!(
                "SELECT COUNT(*) AS n FROM users
                 WHERE role_id = $1 AND NOT ((scope_code >= $2 AND scope_code < $3) OR (scope_kind = 'unit' AND unit_id = $4))",
                id,
                lo,
                hi,
                unit
            ))
            .await?
            .get("n")?;
        if outside > 0 {
            return Err(Error::field(
                "name",
                "role_held_outside_scope",
                "该角色有用户在您的管辖范围之外，只能由管辖范围覆盖全部持有人的人修改",
                "users outside your scope hold this role; only someone whose scope covers every holder may change it",
            ));
        }
    }
    // An update names the row checked above; a create never overwrites a role made meanwhile.
    let written = if existing.is_some() {
        tx.execute(q!(
            "UPDATE roles SET label_zh = $2, label_en = $3, permissions = $4, updated_at = $5 WHERE id = $1 AND builtin = FALSE",
            id,
            zh,
            en,
            perms.to_db(),
            now
        ))
        .await
    } else {
        tx.execute(q!(
            "INSERT INTO roles (id, name, label_zh, label_en, permissions, builtin, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, FALSE, $6, $6)",
            id,
            name.clone(),
            zh,
            en,
            perms.to_db(),
            now
        ))
        .await
    };
    let busy = || Error::conflict("role_busy", "该角色正被同时修改，请重试", "the role is being changed at the same time; try again");
    match written {
        Ok(1) => {}
        Ok(_) | Err(Error::Conflict { code: "already_exists", .. }) => return Err(busy()),
        Err(e) => return Err(e),
    }
    let detail = serde_json::json!({"name": name, "permissions": perms.to_db()});
    let action = if existing.is_some() { "role.update" } else { "role.create" };
    store.audited(who, audit::Entry { action, object_type: "role", object_id: id.to_string(), jurisdiction: "", detail }, tx).await?;
    Ok((role_by_name(store, &name).await?.ok_or(Error::NotFound("role"))?, existing.is_none()))
}

/// Seed the built-in roles (idempotent; runs at every start so new permissions reach them).
pub async fn seed_roles(store: &Store) -> Result<(), Error> {
    let now = store.now();
    let mut tx = store.db.begin().await?;
    for r in baton_domain::role::BUILTIN_ROLES {
        tx.execute(q!(
            "INSERT INTO roles (id, name, label_zh, label_en, permissions, builtin, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6)
             ON CONFLICT (name) DO UPDATE SET label_zh = excluded.label_zh, label_en = excluded.label_en, permissions = excluded.permissions, builtin = TRUE",
            Uuid::now_v7(), r.name, r.zh, r.en, Permissions::of(r.permissions).to_db(), now
        ))
        .await?;
    }
    tx.commit().await
}

// ---------- users ----------

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub unit_id: Uuid,
    pub unit_name: String,
    pub role: String,
    pub role_label_zh: String,
    pub role_label_en: String,
    pub scope: Scope,
    pub jurisdiction: String,
    pub disabled: bool,
    /// Masked (`138****4567`); the full value needs `personal.reveal` and is audited.
    pub phone: Option<String>,
    pub id_number: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    pub username: String,
    pub display_name: String,
    pub unit_id: Uuid,
    pub role: String,
    /// `division` (with `scope_code`) or `unit`.
    pub scope_kind: String,
    #[serde(default)]
    pub scope_code: String,
    /// Required on create; ignored on update (see reset_password).
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub id_number: String,
    #[serde(default)]
    pub disabled: bool,
}

const PHONE_AAD: &str = "users.phone";
const ID_AAD: &str = "users.id_number";

fn user_from_row(store: &Store, r: &Row) -> Result<User, Error> {
    let unmask = |enc: Option<Vec<u8>>, aad: &str, kind: PersonalKind| -> Result<Option<String>, Error> {
        enc.map(|e| store.vault.open(aad, &e).map(|p| mask_kind(kind, &p))).transpose()
    };
    let scope_kind: String = r.get("scope_kind")?;
    let scope_code: String = r.get("scope_code")?;
    let unit_id: Uuid = r.get("unit_id")?;
    Ok(User {
        id: r.get("id")?,
        username: r.get("username")?,
        display_name: r.get("display_name")?,
        unit_id,
        unit_name: r.get("unit_name")?,
        role: r.get("role")?,
        role_label_zh: r.get("label_zh")?,
        role_label_en: r.get("label_en")?,
        scope: scope_from_db(&scope_kind, &scope_code, unit_id),
        jurisdiction: r.get("jurisdiction")?,
        disabled: r.get("disabled")?,
        phone: unmask(r.get("phone_enc")?, PHONE_AAD, PersonalKind::Phone)?,
        id_number: unmask(r.get("id_number_enc")?, ID_AAD, PersonalKind::IdNumber)?,
        created_at: r.get("created_at")?,
    })
}

pub fn scope_from_db(kind: &str, code: &str, unit_id: Uuid) -> Scope {
    match kind {
        "division" => Scope::Division { code: code.to_string() },
        // Anything unexpected narrows to the user's own unit.
        _ => Scope::Unit { unit_id, division: code.to_string() },
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    pub q: Option<String>,
    pub unit_id: Option<Uuid>,
    /// Find by full phone or ID number through the blind index.
    pub phone: Option<String>,
    pub id_number: Option<String>,
}

/// Every user the filter finds (for choices and the command line).
pub async fn list(store: &Store, who: &Principal, f: &UserFilter) -> Result<Vec<User>, Error> {
    crate::page::all(|p| async move { page(store, who, f, &p).await }).await
}

/// A page of users, by division and username.
pub async fn page(store: &Store, who: &Principal, f: &UserFilter, page: &PageQuery) -> Result<Paged<User>, Error> {
    who.require(Permission::UsersRead)?;
    let page = Page::<(String, String, Uuid)>::read("users", page)?;
    let (aj, au, ai) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let like = f.q.as_ref().map(|s| s.trim()).filter(|s| !s.is_empty()).map(|s| format!("%{}%", s.replace(['%', '_'], "")));
    let phone_bidx = match f.phone.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(p) => Some(store.vault.blind_index("phone", Phone::parse("phone", p).map_err(|e| Error::Invalid(vec![e]))?.as_str())),
        None => None,
    };
    let id_bidx = match f.id_number.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(p) => Some(store.vault.blind_index("id_number", IdNumber::parse("id_number", p).map_err(|e| Error::Invalid(vec![e]))?.as_str())),
        None => None,
    };
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT u.id, u.username, u.display_name, u.unit_id, n.name AS unit_name, r.name AS role, r.label_zh, r.label_en,
                    u.scope_kind, u.scope_code, u.jurisdiction, u.disabled, u.phone_enc, u.id_number_enc, u.created_at
             FROM users u JOIN units n ON n.id = u.unit_id JOIN roles r ON r.id = u.role_id
             WHERE ((u.jurisdiction >= $1 AND u.jurisdiction < $2) OR u.unit_id = $3)
               AND ($4 IS NULL OR u.username LIKE $4 OR u.display_name LIKE $4)
               AND ($5 IS NULL OR u.unit_id = $5)
               AND ($6 IS NULL OR u.phone_bidx = $6)
               AND ($7 IS NULL OR u.id_number_bidx = $7)
               AND ($8 IS NULL OR (u.jurisdiction, u.username, u.id) > ($8, $9, $10))
             ORDER BY u.jurisdiction, u.username, u.id LIMIT $11",
            lo,
            hi,
            unit,
            like,
            f.unit_id,
            phone_bidx,
            id_bidx,
            aj,
            au,
            ai,
            page.fetch()
        ))
        .await?;
    let list = rows.iter().map(|r| user_from_row(store, r)).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |u| (u.jurisdiction.clone(), u.username.clone(), u.id)))
}

pub async fn get(store: &Store, who: &Principal, id: Uuid) -> Result<User, Error> {
    who.require(Permission::UsersRead)?;
    let (lo, hi, unit) = scope_args(&who.scope);
    let r = store
        .db
        .fetch_optional(q!(
            "SELECT u.id, u.username, u.display_name, u.unit_id, n.name AS unit_name, r.name AS role, r.label_zh, r.label_en,
                    u.scope_kind, u.scope_code, u.jurisdiction, u.disabled, u.phone_enc, u.id_number_enc, u.created_at
             FROM users u JOIN units n ON n.id = u.unit_id JOIN roles r ON r.id = u.role_id
             WHERE u.id = $4 AND ((u.jurisdiction >= $1 AND u.jurisdiction < $2) OR u.unit_id = $3)",
            lo,
            hi,
            unit,
            id
        ))
        .await?
        .ok_or(Error::NotFound("user"))?;
    user_from_row(store, &r)
}

fn username(field: &str, s: &str) -> Result<String, FieldError> {
    let t = s.trim();
    if t.len() < 3 || t.len() > 40 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-') {
        return Err(FieldError::new(
            field,
            "username_format",
            "用户名为3到40位字母、数字、下划线、点或横线",
            "a username has 3 to 40 letters, digits, _ . or -",
        ));
    }
    Ok(t.to_ascii_lowercase())
}

pub fn password_rule(field: &str, p: &str) -> Result<(), FieldError> {
    let n = p.chars().count();
    if !(10..=200).contains(&n) {
        return Err(FieldError::new(field, "password_length", "密码长度应为10到200个字符", "a password has 10 to 200 characters"));
    }
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|x| **x).count() < 3 {
        return Err(FieldError::new(
            field,
            "password_weak",
            "密码需包含大写字母、小写字母、数字、符号中的至少三类",
            "a password needs three of: lowercase, uppercase, digits, symbols",
        ));
    }
    Ok(())
}

/// The unit and scope being granted to a new user or token: the unit must be one the
/// granting user can see, and the scope no larger than their own. Problems go into `c`.
pub(crate) async fn granted_unit_and_scope(
    store: &Store,
    who: &Principal,
    c: &mut Check,
    unit_id: Uuid,
    scope_kind: &str,
    scope_code: &str,
) -> Result<(Option<crate::units::Unit>, Option<Scope>), Error> {
    let unit = crate::units::named(store, who, c, "unit_id", unit_id).await?;
    let scope = match (scope_kind, &unit) {
        ("unit", Some(u)) => Some(Scope::Unit { unit_id: u.id, division: u.division_code.clone() }),
        ("division", _) => c.take(
            baton_domain::division::Divisions::get_all().code("scope_code", scope_code, &[]).map(|d| Scope::Division { code: d.code.to_string() }),
        ),
        ("unit", None) => None,
        (other, _) => {
            c.0.push(FieldError::new(
                "scope_kind",
                "scope_kind_unknown",
                format!("未知范围“{other}”，应为 division 或 unit"),
                format!("unknown scope \"{other}\"; use division or unit"),
            ));
            None
        }
    };
    if scope.as_ref().is_some_and(|s| !who.scope.contains_scope(s)) {
        c.0.push(FieldError::new("scope_code", "outside_scope", "授权范围超出您的辖区", "the scope is larger than your own"));
    }
    Ok((unit, scope))
}

struct Checked {
    username: String,
    display_name: String,
    unit_id: Uuid,
    unit_jurisdiction: String,
    role: Role,
    scope: Scope,
    phone: Option<Phone>,
    id_number: Option<IdNumber>,
}

async fn check_input(store: &Store, who: &Principal, input: &UserInput, creating: bool) -> Result<Checked, Error> {
    let mut c = Check::default();
    let uname = c.take(username("username", &input.username));
    let display = c.take(text_field("display_name", &input.display_name, 1, 60));
    if creating {
        c.take(password_rule("password", &input.password));
    }
    let phone = if input.phone.trim().is_empty() { None } else { c.take(Phone::parse("phone", &input.phone)) };
    let id_number =
        if input.id_number.trim().is_empty() { None } else { c.take(IdNumber::parse_born_by("id_number", &input.id_number, store.today())) };
    let role = role_by_name(store, input.role.trim()).await?;
    match &role {
        None => c.0.push(FieldError::new("role", "role_unknown", format!("未知角色“{}”", input.role), format!("unknown role \"{}\"", input.role))),
        Some(r) => {
            if !who.permissions.covers(&r.permission_set()) {
                c.0.push(FieldError::new(
                    "role",
                    "exceeds_own",
                    "不能授予比自己更多的权限",
                    "you cannot grant a role with permissions you do not have",
                ));
            }
        }
    }
    let (unit, scope) = granted_unit_and_scope(store, who, &mut c, input.unit_id, &input.scope_kind, &input.scope_code).await?;
    c.done()?;
    match (uname, display, unit, role, scope) {
        (Some(username), Some(display_name), Some(u), Some(role), Some(scope)) => {
            Ok(Checked { username, display_name, unit_id: u.id, unit_jurisdiction: u.division_code, role, scope, phone, id_number })
        }
        _ => Err(Error::internal("validation")),
    }
}

fn scope_cols(s: &Scope) -> (&'static str, String) {
    match s {
        Scope::Division { code } => ("division", code.clone()),
        Scope::Unit { division, .. } => ("unit", division.clone()),
    }
}

pub fn hash_password(p: &str) -> Result<String, Error> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default().hash_password(p.as_bytes(), &salt).map(|h| h.to_string()).map_err(Error::internal)
}

pub fn verify_password(p: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(p.as_bytes(), &h).is_ok())
}

/// Sealed phone, its blind index, sealed ID number, its blind index.
type SealedPersonal = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn seal_personal(store: &Store, phone: &Option<Phone>, id: &Option<IdNumber>) -> Result<SealedPersonal, Error> {
    let pe = phone.as_ref().map(|p| store.vault.seal(PHONE_AAD, p.as_str())).transpose()?;
    let pb = phone.as_ref().map(|p| store.vault.blind_index("phone", p.as_str()));
    let ie = id.as_ref().map(|p| store.vault.seal(ID_AAD, p.as_str())).transpose()?;
    let ib = id.as_ref().map(|p| store.vault.blind_index("id_number", p.as_str()));
    Ok((pe, pb, ie, ib))
}

pub async fn create(store: &Store, who: &Principal, input: &UserInput) -> Result<User, Error> {
    who.require(Permission::UsersWrite)?;
    let c = check_input(store, who, input, true).await?;
    let hash = hash_password(&input.password)?;
    let (pe, pb, ie, ib) = seal_personal(store, &c.phone, &c.id_number)?;
    let (sk, sc) = scope_cols(&c.scope);
    let id = Uuid::now_v7();
    let now = store.now();
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO users (id, username, display_name, unit_id, role_id, scope_kind, scope_code, jurisdiction, password_hash, disabled,
                            phone_enc, phone_bidx, id_number_enc, id_number_bidx, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        id,
        c.username.clone(),
        c.display_name,
        c.unit_id,
        c.role.id,
        sk,
        sc,
        c.unit_jurisdiction.clone(),
        hash,
        input.disabled,
        pe,
        pb,
        ie,
        ib,
        now
    ))
    .await
    .map_err(|e| match e {
        Error::Conflict { code: "already_exists", .. } => Error::field("username", "username_taken", "用户名已被使用", "the username is taken"),
        e => e,
    })?;
    let detail = serde_json::json!({"username": c.username, "role": c.role.name, "unit_id": c.unit_id, "scope": c.scope, "phone": c.phone.as_ref().map(Phone::mask), "id_number": c.id_number.as_ref().map(IdNumber::mask)});
    store
        .audited(
            who,
            audit::Entry { action: "user.create", object_type: "user", object_id: id.to_string(), jurisdiction: &c.unit_jurisdiction, detail },
            tx,
        )
        .await?;
    get(store, &Principal::system(&who.request_id), id).await
}

/// Update profile, role, scope, status and personal data (blank personal fields keep the stored value).
pub async fn update(store: &Store, who: &Principal, id: Uuid, input: &UserInput) -> Result<User, Error> {
    who.require(Permission::UsersWrite)?;
    let before = get(store, who, id).await?;
    require_within(store, who, &before).await?;
    let mut input = input.clone();
    input.username = before.username.clone();
    let c = check_input(store, who, &input, false).await?;
    let (pe, pb, ie, ib) = seal_personal(store, &c.phone, &c.id_number)?;
    let (sk, sc) = scope_cols(&c.scope);
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "UPDATE users SET display_name = $2, unit_id = $3, role_id = $4, scope_kind = $5, scope_code = $6, jurisdiction = $7, disabled = $8,
                phone_enc = COALESCE($9, phone_enc), phone_bidx = COALESCE($10, phone_bidx),
                id_number_enc = COALESCE($11, id_number_enc), id_number_bidx = COALESCE($12, id_number_bidx), updated_at = $13
         WHERE id = $1",
        id,
        c.display_name,
        c.unit_id,
        c.role.id,
        sk,
        sc,
        c.unit_jurisdiction.clone(),
        input.disabled,
        pe,
        pb,
        ie,
        ib,
        store.now()
    ))
    .await?;
    if input.disabled && !before.disabled {
        tx.execute(q!("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", id, store.now())).await?;
    }
    let detail = serde_json::json!({
        "before": {"role": before.role, "unit_id": before.unit_id, "scope": before.scope, "disabled": before.disabled},
        "after": {"role": c.role.name, "unit_id": c.unit_id, "scope": c.scope, "disabled": input.disabled},
        "phone_changed": c.phone.is_some(), "id_number_changed": c.id_number.is_some(),
    });
    store
        .audited(
            who,
            audit::Entry { action: "user.update", object_type: "user", object_id: id.to_string(), jurisdiction: &c.unit_jurisdiction, detail },
            tx,
        )
        .await?;
    get(store, &Principal::system(&who.request_id), id).await
}

/// Nobody may act on an account (edit, disable, reset its password, end its sessions, reveal
/// its personal data) that reaches further than they do: one whose scope is not inside theirs
/// (a county-wide user whose unit sits in a township is out of a township administrator's
/// reach), or whose role holds permissions they do not hold. Otherwise they could take it over.
/// Such an account is visible (it is in the actor's jurisdiction), so the answer is 403.
pub async fn require_within(store: &Store, who: &Principal, target: &User) -> Result<(), Error> {
    if !who.scope.contains_scope(&target.scope) {
        return Err(Error::Forbidden);
    }
    let role = role_by_name(store, &target.role).await?.ok_or(Error::NotFound("role"))?;
    if who.permissions.covers(&role.permission_set()) { Ok(()) } else { Err(Error::Forbidden) }
}

pub async fn reset_password(store: &Store, who: &Principal, id: Uuid, password: &str) -> Result<(), Error> {
    who.require(Permission::UsersWrite)?;
    let u = get(store, who, id).await?;
    require_within(store, who, &u).await?;
    password_rule("password", password).map_err(|e| Error::Invalid(vec![e]))?;
    let hash = hash_password(password)?;
    let mut tx = store.db.begin().await?;
    tx.execute(q!("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1", id, hash, store.now())).await?;
    // A reset ends every session of the user.
    tx.execute(q!("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", id, store.now())).await?;
    store
        .audited(
            who,
            audit::Entry {
                action: "user.reset_password",
                object_type: "user",
                object_id: id.to_string(),
                jurisdiction: &u.jurisdiction,
                detail: serde_json::json!({"username": u.username}),
            },
            tx,
        )
        .await
}

/// Show one personal field in full: needs `personal.reveal`, inside scope, and is audited.
pub async fn reveal(store: &Store, who: &Principal, id: Uuid, kind: PersonalKind) -> Result<Option<String>, Error> {
    who.require(Permission::PersonalReveal)?;
    let u = get(store, &Principal { permissions: Permissions::all(), ..who.clone() }, id).await?;
    require_within(store, who, &u).await?;
    let r = store.db.fetch_one(q!("SELECT phone_enc, id_number_enc FROM users WHERE id = $1", id)).await?;
    let (col, aad) = match kind {
        PersonalKind::Phone => ("phone_enc", PHONE_AAD),
        PersonalKind::IdNumber => ("id_number_enc", ID_AAD),
    };
    let enc: Option<Vec<u8>> = r.get(col)?;
    let plain = enc.map(|e| store.vault.open(aad, &e)).transpose()?;
    let tx = store.db.begin().await?;
    let detail = serde_json::json!({"field": kind.as_str(), "username": u.username});
    store
        .audited(
            who,
            audit::Entry { action: "personal.reveal", object_type: "user", object_id: id.to_string(), jurisdiction: &u.jurisdiction, detail },
            tx,
        )
        .await?;
    Ok(plain)
}

/// After a key rotation: re-seal users' phones and ID numbers not under the active key.
pub async fn reseal_all(store: &Store) -> Result<u64, Error> {
    use crate::vault::SealedColumn;
    let cols = [
        SealedColumn { column: "phone_enc", aad: PHONE_AAD, update: "UPDATE users SET phone_enc = $2 WHERE id = $1" },
        SealedColumn { column: "id_number_enc", aad: ID_AAD, update: "UPDATE users SET id_number_enc = $2 WHERE id = $1" },
    ];
    crate::vault::reseal(store, "keyring", "SELECT id, phone_enc, id_number_enc FROM users", &cols).await
}
