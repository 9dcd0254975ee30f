//! Sign-in, server-side sessions (revocable), login throttling and API tokens.
//! Only hashes of session and token secrets are stored.

use crate::db::Row;
use crate::page::{Page, PageQuery, Paged};
use crate::users::{scope_from_db, verify_password};
use crate::vault::{random_token, token_hash};
use crate::{Check, Principal, Store, audit, q, scope_args, text_field};
use baton_domain::role::{Permission, Permissions};
use baton_domain::scope::Scope;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Failures allowed per username, and per client address, inside the window.
pub const MAX_FAILURES_PER_USER: i64 = 5;
pub const MAX_FAILURES_PER_IP: i64 = 30;
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;
pub const SESSION_HOURS: i64 = 12;

pub struct NewSession {
    /// The cookie value: shown once, stored only as a hash.
    pub token: String,
    pub csrf: String,
    pub principal: Principal,
    pub expires_at: DateTime<Utc>,
}

/// A hash verified when the username is unknown, so that a missing user takes as long
/// as a wrong password (no username probing by timing).
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| crate::users::hash_password("not-a-user-password").unwrap_or_default()).clone()
}

pub async fn login(
    store: &Store,
    username: &str,
    password: &str,
    ip: &str,
    user_agent: &str,
    lang: &str,
    request_id: &str,
) -> Result<NewSession, Error> {
    let uname = username.trim().to_ascii_lowercase();
    let now = store.now();
    let since = now - Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let fails = store
        .db
        .fetch_one(q!(
            "SELECT (SELECT COUNT(*) FROM login_failures WHERE username = $1 AND at >= $3) AS by_user,
                    (SELECT COUNT(*) FROM login_failures WHERE ip = $2 AND at >= $3) AS by_ip",
            uname.clone(),
            ip,
            since
        ))
        .await?;
    if fails.get::<i64>("by_user")? >= MAX_FAILURES_PER_USER || fails.get::<i64>("by_ip")? >= MAX_FAILURES_PER_IP {
        return Err(Error::RateLimited);
    }
    let row = store.db.fetch_optional(q!("SELECT u.id, u.password_hash, u.disabled FROM users u WHERE u.username = $1", uname.clone())).await?;
    let (id, hash, disabled) = match &row {
        Some(r) => (Some(r.get::<Uuid>("id")?), r.get::<String>("password_hash")?, r.get::<bool>("disabled")?),
        None => (None, dummy_hash(), false),
    };
    let pw = password.to_string();
    let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash)).await.map_err(Error::internal)?;
    let (Some(user_id), true, false) = (id, ok, disabled) else {
        store.db.execute(q!("INSERT INTO login_failures (username, ip, at) VALUES ($1, $2, $3)", uname, ip, now)).await?;
        return Err(Error::conflict("login_failed", "用户名或密码错误，或账号已停用", "wrong username or password, or the account is disabled"));
    };
    let token = random_token(32);
    let csrf = random_token(24);
    let expires_at = now + Duration::hours(SESSION_HOURS);
    let lang = if lang == "en" { "en" } else { "zh" };
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO sessions (token_hash, user_id, csrf, lang, ip, user_agent, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        token_hash(&token), user_id, csrf.clone(), lang, ip, user_agent.chars().take(200).collect::<String>(), now, expires_at
    ))
    .await?;
    tx.execute(q!("DELETE FROM login_failures WHERE username = $1", uname)).await?;
    let principal = session_principal(&mut tx, &token_hash(&token), now, request_id).await?.ok_or(Error::Unauthenticated)?.0;
    // The user's own jurisdiction (a unit-scoped user's: their unit's), not the empty one:
    // the entry carries the address they signed in from.
    let jurisdiction = principal.home().0;
    store
        .audited(
            &principal,
            audit::Entry {
                action: "session.login",
                object_type: "user",
                object_id: user_id.to_string(),
                jurisdiction: &jurisdiction,
                detail: serde_json::json!({"ip": ip}),
            },
            tx,
        )
        .await?;
    Ok(NewSession { token, csrf, principal, expires_at })
}

/// A short-lived memory of who a session or token is, so that a read costs one query, not
/// two. Entries live one second (real time), never past the session's or token's expiry
/// (clock time), and every change that could alter them (logout, revocation, password,
/// user or role change) empties the cache at once. Several app servers on one database
/// may therefore honour a revocation made on another server up to one second late.
#[derive(Default)]
pub struct AuthCache {
    map: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Cached>>,
}

#[derive(Clone)]
struct Cached {
    principal: Principal,
    session: Option<(String, String)>,
    expires_at: Option<DateTime<Utc>>,
    at: std::time::Instant,
}

const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
const CACHE_MAX: usize = 50_000;

impl AuthCache {
    fn get(&self, key: &[u8], now: DateTime<Utc>, request_id: &str) -> Option<Cached> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.get(key)?;
        if c.at.elapsed() > CACHE_TTL || c.expires_at.is_some_and(|e| e <= now) {
            return None;
        }
        let mut c = c.clone();
        c.principal.request_id = request_id.to_string();
        Some(c)
    }

    fn put(&self, key: Vec<u8>, c: Cached) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(key, c);
    }

    /// Forget everything: called on every change to sessions, tokens, users or roles.
    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What a session cookie grants, looked up on every request.
pub struct SessionInfo {
    pub csrf: String,
    pub lang: String,
}

async fn session_principal(
    tx: &mut crate::db::Tx,
    hash: &[u8],
    now: DateTime<Utc>,
    request_id: &str,
) -> Result<Option<(Principal, SessionInfo)>, Error> {
    let r = tx.fetch_optional(session_query(hash, now)).await?;
    r.map(|r| principal_from_session(&r, request_id)).transpose()
}

fn session_query(hash: &[u8], now: DateTime<Utc>) -> crate::db::Q {
    q!(
        "SELECT s.csrf, s.lang, s.expires_at, u.id, u.username, u.display_name, u.unit_id, u.scope_kind, u.scope_code, r.name AS role, r.permissions
         FROM sessions s JOIN users u ON u.id = s.user_id JOIN roles r ON r.id = u.role_id
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND u.disabled = FALSE",
        hash.to_vec(),
        now
    )
}

fn principal_from_session(r: &Row, request_id: &str) -> Result<(Principal, SessionInfo), Error> {
    let unit_id: Uuid = r.get("unit_id")?;
    let kind: String = r.get("scope_kind")?;
    let code: String = r.get("scope_code")?;
    let perms: String = r.get("permissions")?;
    Ok((
        Principal {
            user_id: Some(r.get("id")?),
            token_id: None,
            name: r.get("username")?,
            display_name: r.get("display_name")?,
            unit_id: Some(unit_id),
            role: r.get("role")?,
            scope: scope_from_db(&kind, &code, unit_id),
            permissions: Permissions::from_db(&perms),
            request_id: request_id.to_string(),
        },
        SessionInfo { csrf: r.get("csrf")?, lang: r.get("lang")? },
    ))
}

pub async fn session(store: &Store, token: &str, request_id: &str) -> Result<Option<(Principal, SessionInfo)>, Error> {
    let hash = token_hash(token);
    let now = store.now();
    if let Some(c) = store.auth_cache.get(&hash, now, request_id)
        && let Some((csrf, lang)) = c.session
    {
        return Ok(Some((c.principal, SessionInfo { csrf, lang })));
    }
    let Some(r) = store.db.fetch_optional(session_query(&hash, now)).await? else { return Ok(None) };
    let (p, info) = principal_from_session(&r, request_id)?;
    let expires_at: DateTime<Utc> = r.get("expires_at")?;
    let cached = Cached {
        principal: p.clone(),
        session: Some((info.csrf.clone(), info.lang.clone())),
        expires_at: Some(expires_at),
        at: std::time::Instant::now(),
    };
    store.auth_cache.put(hash, cached);
    Ok(Some((p, info)))
}

pub async fn set_session_lang(store: &Store, token: &str, lang: &str) -> Result<(), Error> {
    let lang = if lang == "en" { "en" } else { "zh" };
    store.db.execute(q!("UPDATE sessions SET lang = $2 WHERE token_hash = $1", token_hash(token), lang)).await?;
    store.auth_cache.clear();
    Ok(())
}

pub async fn logout(store: &Store, who: &Principal, token: &str) -> Result<(), Error> {
    let mut tx = store.db.begin().await?;
    tx.execute(q!("UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL", token_hash(token), store.now())).await?;
    let id = who.user_id.map(|u| u.to_string()).unwrap_or_default();
    store
        .audited(
            who,
            audit::Entry { action: "session.logout", object_type: "user", object_id: id, jurisdiction: "", detail: serde_json::json!({}) },
            tx,
        )
        .await
}

/// End every session of a user (admin action; also done on disable and password reset).
pub async fn revoke_sessions(store: &Store, who: &Principal, user_id: Uuid) -> Result<u64, Error> {
    who.require(Permission::UsersWrite)?;
    let u = crate::users::get(store, who, user_id).await?;
    crate::users::require_within(store, who, &u).await?;
    let mut tx = store.db.begin().await?;
    let n = tx.execute(q!("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, store.now())).await?;
    store
        .audited(
            who,
            audit::Entry {
                action: "session.revoke_all",
                object_type: "user",
                object_id: user_id.to_string(),
                jurisdiction: &u.jurisdiction,
                detail: serde_json::json!({"sessions": n}),
            },
            tx,
        )
        .await?;
    Ok(n)
}

// ---------- API tokens ----------

#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the secret, to recognise it in lists.
    pub prefix: String,
    pub unit_id: Uuid,
    pub unit_name: String,
    pub scope: Scope,
    pub permissions: Vec<&'static str>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    pub name: String,
    pub unit_id: Uuid,
    pub permissions: Vec<String>,
    /// `division` (with scope_code) or `unit`.
    pub scope_kind: String,
    #[serde(default)]
    pub scope_code: String,
    /// Days until it expires; none means it lasts until revoked.
    pub expires_in_days: Option<i64>,
}

fn token_from_row(r: &Row) -> Result<ApiToken, Error> {
    let unit_id: Uuid = r.get("unit_id")?;
    let kind: String = r.get("scope_kind")?;
    let code: String = r.get("scope_code")?;
    let perms: String = r.get("permissions")?;
    Ok(ApiToken {
        id: r.get("id")?,
        name: r.get("name")?,
        prefix: r.get("prefix")?,
        unit_id,
        unit_name: r.get("unit_name")?,
        scope: scope_from_db(&kind, &code, unit_id),
        permissions: Permissions::from_db(&perms).0.into_iter().map(Permission::as_str).collect(),
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
        last_used_at: r.get("last_used_at")?,
    })
}

/// Every API token the caller may see.
async fn all_tokens(store: &Store, who: &Principal) -> Result<Vec<ApiToken>, Error> {
    crate::page::all(|p| async move { list_tokens(store, who, &p).await }).await
}

/// A page of API tokens, newest first.
pub async fn list_tokens(store: &Store, who: &Principal, page: &PageQuery) -> Result<Paged<ApiToken>, Error> {
    who.require(Permission::TokensWrite)?;
    let page = Page::<(DateTime<Utc>, Uuid)>::read("tokens", page)?;
    let (at, id) = page.parts();
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT t.id, t.name, t.prefix, t.unit_id, n.name AS unit_name, t.scope_kind, t.scope_code, t.permissions, t.created_at, t.expires_at, t.revoked_at, t.last_used_at
             FROM api_tokens t JOIN units n ON n.id = t.unit_id
             WHERE ((t.jurisdiction >= $1 AND t.jurisdiction < $2) OR t.unit_id = $3)
               AND ($4 IS NULL OR (t.created_at, t.id) < ($4, $5))
             ORDER BY t.created_at DESC, t.id DESC LIMIT $6",
            lo, hi, unit, at, id, page.fetch()
        ))
        .await?;
    let list = rows.iter().map(token_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |t| (t.created_at, t.id)))
}

/// Create a token; the secret is returned once and never stored.
pub async fn create_token(store: &Store, who: &Principal, input: &TokenInput) -> Result<(ApiToken, String), Error> {
    who.require(Permission::TokensWrite)?;
    let creator = who.user_id.ok_or(Error::Forbidden)?;
    let mut c = Check::default();
    let name = c.take(text_field("name", &input.name, 1, 80));
    let perms = c.take(Permissions::parse_list("permissions", &input.permissions));
    if let Some(p) = &perms {
        if !who.permissions.covers(p) {
            c.0.push(FieldError::new(
                "permissions",
                "exceeds_own",
                "令牌权限不能超过您自己的权限",
                "a token cannot have permissions you do not have",
            ));
        }
        if p.0.is_empty() {
            c.0.push(FieldError::required("permissions"));
        }
    }
    if input.expires_in_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        c.0.push(FieldError::new("expires_in_days", "out_of_range", "有效期应为1到3650天", "must be 1 to 3650 days"));
    }
    let (unit, scope) = crate::users::granted_unit_and_scope(store, who, &mut c, input.unit_id, &input.scope_kind, &input.scope_code).await?;
    c.done()?;
    let (Some(name), Some(perms), Some(unit), Some(scope)) = (name, perms, unit, scope) else {
        return Err(Error::internal("validation"));
    };
    let secret = format!("bt_{}", random_token(32));
    let prefix: String = secret.chars().take(10).collect();
    let (kind, code) = match &scope {
        Scope::Division { code } => ("division", code.clone()),
        Scope::Unit { division, .. } => ("unit", division.clone()),
    };
    let now = store.now();
    let id = Uuid::now_v7();
    let expires = input.expires_in_days.map(|d| now + Duration::days(d));
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO api_tokens (id, name, token_hash, prefix, unit_id, jurisdiction, scope_kind, scope_code, permissions, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        id, name.clone(), token_hash(&secret), prefix, unit.id, unit.division_code.clone(), kind, code, perms.to_db(), creator, now, expires
    ))
    .await?;
    let detail = serde_json::json!({"name": name, "permissions": perms.to_db(), "scope": scope});
    store
        .audited(
            who,
            audit::Entry { action: "token.create", object_type: "api_token", object_id: id.to_string(), jurisdiction: &unit.division_code, detail },
            tx,
        )
        .await?;
    let t = all_tokens(store, who).await?.into_iter().find(|t| t.id == id).ok_or(Error::NotFound("api_token"))?;
    Ok((t, secret))
}

pub async fn revoke_token(store: &Store, who: &Principal, id: Uuid) -> Result<(), Error> {
    who.require(Permission::TokensWrite)?;
    let t = all_tokens(store, who).await?.into_iter().find(|t| t.id == id).ok_or(Error::NotFound("api_token"))?;
    // As for users (`users::require_within`): a token that reaches further than the caller
    // (its unit in their township, its scope the county's) is visible but not theirs to end.
    let perms = Permissions(t.permissions.iter().filter_map(|p| Permission::parse(p)).collect());
    if !who.scope.contains_scope(&t.scope) || !who.permissions.covers(&perms) {
        return Err(Error::Forbidden);
    }
    let mut tx = store.db.begin().await?;
    tx.execute(q!("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", id, store.now())).await?;
    let j = match &t.scope {
        Scope::Division { code } => code.clone(),
        Scope::Unit { division, .. } => division.clone(),
    };
    store
        .audited(
            who,
            audit::Entry {
                action: "token.revoke",
                object_type: "api_token",
                object_id: id.to_string(),
                jurisdiction: &j,
                detail: serde_json::json!({"name": t.name}),
            },
            tx,
        )
        .await
}

/// The principal a bearer token stands for, if it is live: not revoked, not expired, and its
/// creator not disabled. A token acts on its creator's authority, so it stops with them;
/// re-enabling the creator makes it work again (revoke a token to end it for good). Disabling
/// a user is a `user.` change, which empties the cache at once.
pub async fn token_principal(store: &Store, secret: &str, request_id: &str) -> Result<Option<Principal>, Error> {
    let now = store.now();
    let hash = token_hash(secret);
    if let Some(c) = store.auth_cache.get(&hash, now, request_id)
        && c.session.is_none()
    {
        return Ok(Some(c.principal));
    }
    let r = store
        .db
        .fetch_optional(q!(
            "SELECT t.id, t.name, t.unit_id, t.scope_kind, t.scope_code, t.permissions, t.last_used_at, t.expires_at
             FROM api_tokens t JOIN users u ON u.id = t.created_by
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.disabled = FALSE",
            hash.clone(),
            now
        ))
        .await?;
    let Some(r) = r else { return Ok(None) };
    let id: Uuid = r.get("id")?;
    let unit_id: Uuid = r.get("unit_id")?;
    let kind: String = r.get("scope_kind")?;
    let code: String = r.get("scope_code")?;
    let perms: String = r.get("permissions")?;
    let name: String = r.get("name")?;
    // Record use at most once a minute, so that reads stay reads.
    let last: Option<DateTime<Utc>> = r.get("last_used_at")?;
    if last.is_none_or(|l| now - l > Duration::minutes(1)) {
        store.db.execute(q!("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1", id, now)).await?;
    }
    let p = Principal {
        user_id: None,
        token_id: Some(id),
        name: format!("token:{name}"),
        display_name: name,
        unit_id: Some(unit_id),
        role: "api_token".into(),
        scope: scope_from_db(&kind, &code, unit_id),
        permissions: Permissions::from_db(&perms),
        request_id: request_id.to_string(),
    };
    let expires_at: Option<DateTime<Utc>> = r.get("expires_at")?;
    store.auth_cache.put(hash, Cached { principal: p.clone(), session: None, expires_at, at: std::time::Instant::now() });
    Ok(Some(p))
}
