//! The JSON API, `/api/v1`. Every handler takes the `Caller`, calls the store (which
//! checks permission and scope in SQL and writes the audit entry), and returns JSON.
//! Creates honour an `Idempotency-Key` header: a retry returns the first answer.

use crate::AppState;
use crate::auth::{AppError, Caller, session_cookie};
use crate::error::parse_json;
use crate::middleware::req;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_domain::Error;
use baton_domain::division::Divisions;
use baton_domain::ident::PersonalKind;
use baton_store::page::{PageQuery, Paged};
use baton_store::{Fault, audit, auth, grids, idempotency, policy, units, users};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use uuid::Uuid;

pub(crate) type ApiResult = Result<Response, AppError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
        .route("/divisions", get(divisions))
        .route("/divisions/{code}", get(division))
        .route("/units", get(list_units).post(create_unit))
        .route("/units/{id}", get(get_unit).put(update_unit))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user).put(update_user))
        .route("/users/{id}/password", post(reset_password))
        .route("/users/{id}/reveal", post(reveal))
        .route("/users/{id}/revoke-sessions", post(revoke_sessions))
        .route("/roles", get(list_roles).post(save_role))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/audit", get(audit_search))
        .route("/policy", get(policy_list).post(policy_create))
        .route("/policy/current", get(policy_current))
        .route("/grids", get(list_grids).post(create_grid))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// A record id in the path. Something that is not a uuid names no record: 404.
pub struct Id(pub Uuid);

impl FromRequestParts<AppState> for Id {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| AppError(Error::NotFound("record")))?;
        Uuid::parse_str(&raw).map(Id).map_err(|_| AppError(Error::NotFound("record")))
    }
}

/// Query parameters, refused in the stable error shape when they do not parse.
pub struct Qs<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Qs<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).map(Qs).map_err(invalid_query)
    }
}

/// A list's query: its filters `F` and the page asked for (`limit`, `cursor`). The two are
/// taken out before the filters are read, so that every list pages the same way.
pub struct Listing<F>(pub F, pub PageQuery);

/// A list without filters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilter {}

impl<F: DeserializeOwned> FromRequestParts<AppState> for Listing<F> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).map_err(invalid_query)?;
        let (paging, filters): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "limit" || k == "cursor");
        let mut page = PageQuery::default();
        for (k, v) in paging {
            let dup = if k == "limit" {
                page.limit.replace(v.trim().parse().map_err(|_| AppError(Error::Invalid(vec![baton_store::page::limit_invalid()])))?).is_some()
            } else {
                page.cursor.replace(v).is_some()
            };
            if dup {
                return Err(invalid_query(format!("duplicate field `{k}`")));
            }
        }
        let f = serde_urlencoded::to_string(&filters).map_err(invalid_query)?;
        Ok(Listing(serde_urlencoded::from_str(&f).map_err(invalid_query)?, page))
    }
}

fn invalid_query(e: impl std::fmt::Display) -> AppError {
    let msg = e.to_string();
    AppError(Error::Invalid(vec![baton_domain::FieldError::new(
        "query",
        "invalid_query",
        format!("查询参数有误：{msg}"),
        format!("invalid query parameters: {msg}"),
    )]))
}

/// One page of a list, as every list answers: `{"<name>": [...], "next_cursor": … | null}`.
pub(crate) fn listed<T: serde::Serialize>(name: &str, p: Paged<T>) -> ApiResult {
    let mut m = serde_json::Map::new();
    m.insert(name.to_string(), serde_json::to_value(p.items).map_err(|e| AppError(Error::internal(e)))?);
    m.insert("next_cursor".into(), p.next_cursor.into());
    ok(Value::Object(m))
}

async fn method_not_allowed() -> AppError {
    AppError(Error::conflict("method_not_allowed", "此地址不支持该请求方法", "this method is not allowed here"))
}

/// A JSON request body: wrong content type, oversized, malformed or mistyped bodies
/// become the stable error shape.
pub struct Body<T>(pub T, pub Bytes);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = AppError;

    async fn from_request(r: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(Error::conflict(
                "unsupported_media_type",
                "请求体应为 JSON(Content-Type: application/json)",
                "the body must be JSON (Content-Type: application/json)",
            )
            .into());
        }
        let bytes = Bytes::from_request(r, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::conflict("payload_too_large", "请求体过大", "the request body is too large")
            } else {
                Error::conflict("bad_request", "无法读取请求体", "the request body could not be read")
            }
        })?;
        Ok(Body(parse_json(&bytes)?, bytes))
    }
}

pub(crate) fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

pub(crate) fn created(v: impl serde::Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn not_found() -> AppError {
    AppError(Error::NotFound("route"))
}

/// Run a create once per `Idempotency-Key`: a retry with the same key, route and body
/// replays the first answer; the same key with another route or body is refused. Keys
/// belong to one user or one token (by id, never by name). Not used where the answer holds
/// a secret (token creation): the stored answer would keep it.
pub(crate) async fn once<F, Fut>(state: &AppState, c: &Caller, route: &str, headers: &HeaderMap, raw: &[u8], f: F) -> ApiResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ApiResult>,
{
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty()) else {
        return f().await;
    };
    if key.len() > 200 {
        return Err(Error::field("Idempotency-Key", "too_long", "幂等键过长", "the idempotency key is too long").into());
    }
    let actor = match (c.who.user_id, c.who.token_id) {
        (Some(u), _) => format!("user:{u}"),
        (None, Some(t)) => format!("token:{t}"),
        (None, None) => c.who.name.clone(),
    };
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(raw);
    let hash = h.finalize().to_vec();
    let replay = |claim| match claim {
        idempotency::Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok((status, [(header::CONTENT_TYPE, "application/json"), (header::HeaderName::from_static("idempotent-replay"), "true")], body)
                .into_response())
        }
        idempotency::Claim::Mismatch => {
            Err(Error::conflict("idempotency_key_reused", "该幂等键已用于另一请求", "this idempotency key was used for a different request").into())
        }
        // Only if the answer vanished between two reads (the daily clean-up): ask for a retry.
        idempotency::Claim::New => {
            Err(Error::conflict("idempotency_in_progress", "相同请求正在处理中，请稍后重试", "the same request is being processed; retry shortly")
                .into())
        }
    };
    let claim = idempotency::lookup(&state.store, &actor, key, &hash).await?;
    if !matches!(claim, idempotency::Claim::New) {
        return replay(claim);
    }
    // The record's transaction is held open and the answer written into it (`db::hold`).
    let (result, held) = baton_store::db::hold(f()).await;
    if state.store.faults.hit(Fault::CrashAfterRecord) {
        return Err(Error::internal("simulated crash after the record").into());
    }
    let (status, body, result) = match result {
        Ok(resp) => {
            let (parts, b) = resp.into_parts();
            let bytes = axum::body::to_bytes(b, usize::MAX).await.map_err(Error::internal)?;
            (parts.status, bytes.clone(), Ok(Response::from_parts(parts, axum::body::Body::from(bytes))))
        }
        // A refusal wrote nothing (whatever the request did before it is rolled back with the
        // held transaction) and is answered the same way on a retry.
        Err(AppError(e)) if !matches!(e, Error::Internal(_)) => {
            let r = req();
            let body = crate::error::error_body(&e, r.lang, &r.request_id).to_string();
            (crate::error::status_of(&e), body.into(), Err(AppError(e)))
        }
        Err(e) => return Err(e),
    };
    let held = if status.is_success() { held } else { None };
    if let Some(other) = idempotency::answer(&state.store, held, &actor, key, &hash, status.as_u16(), &String::from_utf8_lossy(&body)).await? {
        return replay(other);
    }
    if state.store.faults.hit(Fault::CrashAfterAnswer) {
        return Err(Error::internal("simulated crash after the answer").into());
    }
    result
}

// ---------- auth ----------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginInput {
    username: String,
    password: String,
    #[serde(default)]
    lang: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(input, _): Body<LoginInput>,
) -> ApiResult {
    let r = req();
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let lang = input.lang.as_deref().unwrap_or(r.lang.code());
    let sess = auth::login(&s.store, &input.username, &input.password, &peer.ip().to_string(), ua, lang, &r.request_id).await?;
    let cookie = session_cookie(&sess.token, s.config.secure_cookies, auth::SESSION_HOURS * 3600);
    let body = json!({"user": principal_json(&sess.principal), "csrf": sess.csrf, "expires_at": sess.expires_at});
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

async fn logout(State(s): State<AppState>, c: Caller) -> ApiResult {
    if let Some((token, _)) = &c.session {
        auth::logout(&s.store, &c.who, token).await?;
    }
    Ok(([(header::SET_COOKIE, session_cookie("", s.config.secure_cookies, 0))], Json(json!({"ok": true}))).into_response())
}

fn principal_json(p: &baton_store::Principal) -> Value {
    json!({
        "id": p.user_id, "token_id": p.token_id, "username": p.name, "display_name": p.display_name,
        "unit_id": p.unit_id, "role": p.role, "scope": p.scope,
        "permissions": p.permissions.0.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
    })
}

async fn me(c: Caller) -> ApiResult {
    let mut v = principal_json(&c.who);
    if let Some((_, csrf)) = &c.session {
        v["csrf"] = json!(csrf);
    }
    ok(v)
}

// ---------- divisions ----------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DivisionQuery {
    q: String,
}

fn division_json(code: &str) -> Option<Value> {
    let d = Divisions::get_all();
    let x = d.get(code)?;
    Some(json!({"code": x.code, "name": x.name, "level": x.level, "full_name": d.full_name(x.code), "parent": d.parent(x.code).map(|p| p.code)}))
}

/// Look-up is open to every signed-in caller: division names and codes are public facts.
async fn divisions(_c: Caller, Qs(q): Qs<DivisionQuery>) -> ApiResult {
    let found: Vec<Value> = Divisions::get_all().lookup(&q.q).iter().take(50).filter_map(|d| division_json(d.code)).collect();
    ok(json!({"query": q.q, "matches": found}))
}

async fn division(_c: Caller, Path(code): Path<String>) -> ApiResult {
    let d = Divisions::get_all();
    let mut v = division_json(&code).ok_or(Error::NotFound("division"))?;
    v["children"] = json!(d.children(&code).map(|c| json!({"code": c.code, "name": c.name, "level": c.level})).collect::<Vec<_>>());
    ok(v)
}

// ---------- units ----------

async fn list_units(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<units::UnitFilter>) -> ApiResult {
    listed("units", units::page(&s.store, &c.who, &f, &page).await?)
}

async fn get_unit(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(units::get(&s.store, &c.who, id).await?)
}

async fn create_unit(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<units::UnitInput>) -> ApiResult {
    once(&s, &c, "POST /units", &h, &raw, || async { created(units::create(&s.store, &c.who, &input).await?) }).await
}

async fn update_unit(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<units::UnitInput>) -> ApiResult {
    ok(units::update(&s.store, &c.who, id, &input).await?)
}

// ---------- users ----------

async fn list_users(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<users::UserFilter>) -> ApiResult {
    listed("users", users::page(&s.store, &c.who, &f, &page).await?)
}

async fn get_user(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(users::get(&s.store, &c.who, id).await?)
}

async fn create_user(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<users::UserInput>) -> ApiResult {
    once(&s, &c, "POST /users", &h, &raw, || async { created(users::create(&s.store, &c.who, &input).await?) }).await
}

async fn update_user(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<users::UserInput>) -> ApiResult {
    ok(users::update(&s.store, &c.who, id, &input).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordInput {
    password: String,
}

async fn reset_password(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<PasswordInput>) -> ApiResult {
    users::reset_password(&s.store, &c.who, id, &input.password).await?;
    ok(json!({"ok": true}))
}

/// Which personal value to show in full.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevealInput {
    pub field: PersonalKind,
}

async fn reveal(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<RevealInput>) -> ApiResult {
    let v = users::reveal(&s.store, &c.who, id, input.field).await?;
    ok(json!({"field": input.field, "value": v}))
}

async fn revoke_sessions(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(json!({"revoked": auth::revoke_sessions(&s.store, &c.who, id).await?}))
}

// ---------- roles and tokens ----------

async fn list_roles(State(s): State<AppState>, _c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("roles", users::page_roles(&s.store, &page).await?)
}

async fn save_role(State(s): State<AppState>, c: Caller, Body(input, _): Body<users::RoleInput>) -> ApiResult {
    match users::save_role(&s.store, &c.who, &input).await? {
        (role, true) => created(role),
        (role, false) => ok(role),
    }
}

async fn list_tokens(State(s): State<AppState>, c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("tokens", auth::list_tokens(&s.store, &c.who, &page).await?)
}

/// Not idempotent by key: a replay would have to store the secret. A retry makes a second
/// token, which the first's owner can revoke.
async fn create_token(State(s): State<AppState>, c: Caller, Body(input, _): Body<auth::TokenInput>) -> ApiResult {
    let (t, secret) = auth::create_token(&s.store, &c.who, &input).await?;
    created(json!({"token": t, "secret": secret}))
}

async fn revoke_token(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    auth::revoke_token(&s.store, &c.who, id).await?;
    ok(json!({"ok": true}))
}

// ---------- audit, policy, grids ----------

async fn audit_search(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<audit::Search>) -> ApiResult {
    c.who.require(baton_domain::role::Permission::AuditRead)?;
    listed("entries", audit::search(&s.store.db, &c.who, &f, &page).await?)
}

async fn policy_list(State(s): State<AppState>, c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    c.who.require(baton_domain::role::Permission::PolicyRead)?;
    listed("versions", policy::page(&s.store, &page).await?)
}

async fn policy_current(State(s): State<AppState>, _c: Caller) -> ApiResult {
    ok(policy::current(&s.store, s.store.now()).await?)
}

async fn policy_create(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<policy::PolicyInput>) -> ApiResult {
    once(&s, &c, "POST /policy", &h, &raw, || async { created(policy::create(&s.store, &c.who, &input).await?) }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridQuery {
    village_code: Option<String>,
}

async fn list_grids(State(s): State<AppState>, c: Caller, Listing(q, page): Listing<GridQuery>) -> ApiResult {
    listed("grids", grids::list(&s.store, &c.who, q.village_code.as_deref(), &page).await?)
}

async fn create_grid(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<grids::GridInput>) -> ApiResult {
    once(&s, &c, "POST /grids", &h, &raw, || async { created(grids::create(&s.store, &c.who, &input).await?) }).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../openapi.json")).into_response()
}
