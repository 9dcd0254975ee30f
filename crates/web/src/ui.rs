//! The server-rendered UI: Chinese by default, English switchable, usable on a 375-px
//! phone. Pages are askama templates; admin pages share a table template and a form
//! template. Every POST carries the session's CSRF token.

use crate::AppState;
use crate::auth::{csrf_matches, session_cookie};
use crate::i18n::Lang;
use crate::middleware::{cookie, req};
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_domain::division::{Divisions, Level};
use baton_domain::ident::PersonalKind;
use baton_domain::role::Permission;
use baton_domain::scope::Scope;
use baton_domain::unit::UnitKind;
use baton_store::page::PageQuery;
use baton_store::{Principal, audit, auth, grids, policy, units, users};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::net::SocketAddr;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/lang", post(switch_lang))
        .route("/admin/units", get(units_page))
        .route("/admin/units/new", get(unit_new).post(unit_create))
        .route("/admin/units/{id}", get(unit_edit).post(unit_update))
        .route("/admin/users", get(users_page))
        .route("/admin/users/new", get(user_new).post(user_create))
        .route("/admin/users/{id}", get(user_edit).post(user_update))
        .route("/admin/users/{id}/password", post(user_password))
        .route("/admin/users/{id}/reveal", post(user_reveal))
        .route("/admin/users/{id}/revoke-sessions", post(user_revoke_sessions))
        .route("/admin/roles", get(roles_page).post(role_save))
        .route("/admin/tokens", get(tokens_page).post(token_create))
        .route("/admin/tokens/revoke", post(token_revoke))
        .route("/audit", get(audit_page))
        .route("/policy", get(policy_page).post(policy_create))
        .route("/grids", get(grids_page).post(grid_create))
        .route("/divisions", get(divisions_page))
        .route("/static/{file}", get(asset))
}

// ---------- shell ----------

pub struct NavUser {
    pub display_name: String,
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

pub struct Shell {
    pub lang: Lang,
    pub title: String,
    pub user: Option<NavUser>,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    pub path: String,
    /// Path and query, to come back to the same view (language switch).
    pub here: String,
    pub flash: Option<String>,
    pub error: Option<String>,
}

/// Pages, the permission that shows them, and the short text for the home tiles.
pub(crate) const PAGES: &[(&str, &str, Option<Permission>, &str, &str)] = &[
    ("/", "nav.home", None, "", ""),
    (
        "/admin/units",
        "nav.units",
        Some(Permission::UnitsRead),
        "指挥部、专班、部门、乡镇、卡口、企业、学校、检测机构……",
        "Command office, task forces, departments, townships, checkpoints, enterprises, schools, labs…",
    ),
    (
        "/trips",
        "nav.trips",
        Some(Permission::TripsRead),
        "货车闭环：报备、落地、接返、到达、离开、核销",
        "Truck loop: pre-report, check-in, escort, arrival, departure, exit",
    ),
    (
        "/trips/exit",
        "trip.exit_scan",
        Some(Permission::TripsCheckIn),
        "驶离车辆按车牌核销，任一卡口均可闭环",
        "Scan a departing truck out by its plate, at any checkpoint",
    ),
    ("/alerts", "nav.alerts", Some(Permission::AlertsHandle), "断链告警与逐级上报：货车、样本", "Broken links and their escalation: trucks, samples"),
    (
        "/sites",
        "nav.sites",
        Some(Permission::TripsRead),
        "货车专用服务场地：容量、在场车辆、进出、待出结果",
        "Truck service sites: capacity, trucks present, in and out, waiting for results",
    ),
    (
        "/freight/dashboard",
        "stats.title",
        Some(Permission::TripsRead),
        "在途行程、断链、交接用时，可导出",
        "Open trips, breaches, handoff times; exportable",
    ),
    (
        "/freight/escorts",
        "nav.escorts",
        Some(Permission::UnitsWrite),
        "接收单位的接返单位与公安、交通兜底接返名单",
        "Receivers' escort units and the police and transport fallback roster",
    ),
    (
        "/testing/sample",
        "nav.testing_sample",
        Some(Permission::TestingSample),
        "扫码开管、逐人登记、封管、装箱送检",
        "Open tubes by barcode, add persons one by one, seal, pack for a lab",
    ),
    (
        "/testing/lab",
        "nav.testing_lab",
        Some(Permission::TestingResult),
        "接收批次、回传结果、导入 LIS 文件",
        "Receive batches, post results, import LIS files",
    ),
    (
        "/testing/dashboard",
        "nav.testing_dashboard",
        Some(Permission::TestingRead),
        "待接收、待出结果、超时与出结果用时",
        "Awaiting receipt, pending, overdue, turnaround",
    ),
    (
        "/testing/rechecks",
        "nav.rechecks",
        Some(Permission::TestingRead),
        "阳性混管人员的单管复核与时限",
        "Members of positive pools, their re-tests and deadlines",
    ),
    (
        "/rounds",
        "nav.rounds",
        Some(Permission::TestingRead),
        "全员筛查轮次：逐村应检、已采、已出结果，未采名单导出，混采规格建议",
        "Screening rounds: expected, sampled, resulted by village; missing lists; pool-size advice",
    ),
    ("/admin/users", "nav.users", Some(Permission::UsersRead), "账号、角色、数据范围", "Accounts, roles and scopes"),
    ("/admin/roles", "nav.roles", Some(Permission::RolesWrite), "角色即权限的集合", "A role is a named set of permissions"),
    (
        "/admin/tokens",
        "nav.tokens",
        Some(Permission::TokensWrite),
        "检测机构、设备、外县系统的接口令牌",
        "Tokens for labs, sensors and other counties' systems",
    ),
    ("/grids", "nav.grids", Some(Permission::GridsWrite), "村(社区)下的网格与网格员", "Grids under villages and their members"),
    ("/audit", "nav.audit", Some(Permission::AuditRead), "每一次写入与查看个人信息的记录", "Every write and every reveal of personal data"),
    ("/policy", "nav.policy", Some(Permission::PolicyRead), "规则参数的版本与生效时间", "Rule parameters by version and effective time"),
    (
        "/whitelist",
        "nav.whitelist",
        Some(Permission::WhitelistRead),
        "企业、车辆、司机白名单：审核、暂停、撤销、造假标记、导入导出",
        "Whitelisted enterprises, vehicles and drivers: review, suspend, revoke, fraud flag, import and export",
    ),
    ("/risk-areas", "nav.risk_areas", None, "现行风险地区、历史、导入与解除", "Risk areas in force, their history, imports and lifting"),
    ("/venues", "nav.venues", None, "重点场所的场所码、扫码核验与到访记录", "Key venues: venue codes, scans at the door, visit logs"),
    ("/exposure", "nav.exposure", Some(Permission::ExposureSearch), "病例的时空伴随人员与协查导出", "A case's companions and the tracing export"),
    ("/divisions", "nav.divisions", None, "按代码或名称查找行政区划", "Find divisions by code or name"),
];

/// What each built-in role answers for, shown on its home page.
pub(crate) fn role_duty(role: &str, lang: Lang) -> &'static str {
    let (zh, en) = match role {
        "admin" => ("维护单位、用户、角色、令牌与系统配置。", "Maintain units, users, roles, tokens and configuration."),
        "commander" => (
            "统筹全县：配置策略、单位与用户，盯住每一个闭环，处置升级上报的问题。",
            "Run the county: policy, units and users; watch every loop; act on escalations.",
        ),
        "leader" => ("查看全县防控与经济运行情况。", "See the county's control work and economy at a glance."),
        "township_staff" => {
            ("本乡镇的属地责任：网格、风险人员核查、居家隔离。", "Your township's locality duties: grids, risk-person checks, home isolation.")
        }
        "grid_member" => ("本网格的入户核查与居家管控。", "House-by-house checks and home isolation in your grid."),
        "checkpoint_staff" => ("卡口登记货车、落地采样、赋码、交接。", "Check trucks in, take landing samples, issue codes, hand over."),
        "escort" => ("点对点接返，接收与移交货车。", "Escort trucks point to point; accept and pass on custody."),
        "site_staff" => ("货车专用服务场地的进出登记与容量。", "Truck service site check-in, check-out and capacity."),
        "enterprise" => ("提前报备货车，确认到达与离开。", "Pre-report trucks; confirm arrival and departure."),
        "sampler" => ("采样登记、混管封管、送检。", "Register samples, seal pooled tubes, ship to labs."),
        "lab_staff" => ("接收样本、回传结果。", "Receive samples and post results."),
        "school_staff" => ("校园晨午检、出入管理与报告。", "Daily checks, entry control and reports for the school."),
        "venue_staff" => ("场所员工健康管理与进出管理。", "Staff health and entry control for the venue."),
        _ => ("", ""),
    };
    lang.pick(zh, en)
}

pub(crate) fn shell_for(who: Option<&Principal>, lang: Lang, csrf: &str, path: &str, title: String) -> Shell {
    let nav = match who {
        Some(p) => PAGES
            .iter()
            .filter(|(_, _, perm, _, _)| perm.is_none_or(|x| p.can(x)))
            .map(|(href, key, _, _, _)| NavItem { href, label: lang.t(key), current: *href == path || (*href != "/" && path.starts_with(href)) })
            .collect(),
        None => Vec::new(),
    };
    Shell {
        lang,
        title,
        user: who.map(|p| NavUser { display_name: p.display_name.clone() }),
        nav,
        csrf: csrf.to_string(),
        path: path.split('?').next().unwrap_or(path).to_string(),
        here: path.to_string(),
        flash: None,
        error: None,
    }
}

/// A signed-in person looking at a page. Without a session, pages redirect to the login.
pub struct Viewer {
    pub who: Principal,
    pub lang: Lang,
    pub csrf: String,
    pub token: String,
    pub path: String,
}

impl Viewer {
    pub(crate) fn shell(&self, title_key: &str) -> Shell {
        shell_for(Some(&self.who), self.lang, &self.csrf, &self.path, self.lang.t(title_key).to_string())
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| parts.uri.path().to_string());
        let to_login = || Redirect::to(&format!("/login?next={}", encode(&path))).into_response();
        let Some(token) = cookie(&parts.headers, crate::auth::SESSION_COOKIE) else {
            return Err(to_login());
        };
        match auth::session(&state.store, token, &req().request_id).await {
            Ok(Some((who, info))) => Ok(Viewer { who, lang: req().lang, csrf: info.csrf, token: token.to_string(), path }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(UiError(e).into_response()),
        }
    }
}

pub(crate) fn encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"/-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Only same-site paths may be redirect targets.
pub(crate) fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') { next } else { "/" }
}

pub struct UiError(pub Error);

impl From<Error> for UiError {
    fn from(e: Error) -> Self {
        UiError(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let r = req();
        if let Error::Internal(msg) = &self.0 {
            tracing::error!(request_id = %r.request_id, error = %msg, "internal error");
        }
        let status = crate::error::status_of(&self.0);
        let message = match &self.0 {
            Error::NotFound(_) => r.lang.t("error.not_found").to_string(),
            e => e.message(r.lang.zh()),
        };
        let page = ErrorPage { shell: shell_for(None, r.lang, "", "/", r.lang.t("error.title").to_string()), message, request_id: r.request_id };
        (status, render(&page)).into_response()
    }
}

pub(crate) type UiResult = Result<Response, UiError>;

pub(crate) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

// ---------- forms ----------

/// A urlencoded form body; repeated names (checkboxes) keep every value.
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub(crate) fn parse(body: &Bytes) -> Result<Self, Error> {
        serde_urlencoded::from_bytes(body).map(FormData).map_err(|_| Error::conflict("bad_request", "表单无法解析", "the form could not be read"))
    }
    pub(crate) fn get(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
    pub(crate) fn check_csrf(&self, expected: &str) -> Result<(), Error> {
        if csrf_matches(&self.get("csrf"), expected) {
            Ok(())
        } else {
            Err(Error::conflict(
                "csrf_failed",
                "页面已过期或请求来源不明，请刷新后重试",
                "the form expired or the request's origin is unknown; reload and try again",
            ))
        }
    }
}

/// The parts of a `multipart/form-data` body (file uploads): name, file name, content (a slice
/// of the body: an upload of tens of megabytes is not copied). A body without a boundary, or cut
/// short, yields the parts read so far.
pub(crate) fn multipart<'a>(content_type: &str, body: &'a [u8]) -> Vec<(String, Option<String>, &'a [u8])> {
    let Some(boundary) = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).map(|b| format!("\r\n--{}", b.trim_matches('"')))
    else {
        return vec![];
    };
    let delim = boundary.as_bytes();
    let find = |needle: &[u8], from: usize| body.get(from..).and_then(|h| h.windows(needle.len()).position(|w| w == needle)).map(|i| i + from);
    // The first boundary has no line break before it; `after` is the end of a boundary.
    let mut after = match body.starts_with(&delim[2..]) {
        true => Some(delim.len() - 2),
        false => find(delim, 0).map(|i| i + delim.len()),
    };
    let mut out = Vec::new();
    while let Some(end) = after {
        if body.get(end..end + 2) == Some(b"--") {
            break;
        }
        let head_from = end + 2;
        let Some(head_end) = find(b"\r\n\r\n", head_from) else { break };
        let next = find(delim, head_end);
        let head = String::from_utf8_lossy(body.get(head_from..head_end).unwrap_or_default()).to_string();
        let attr =
            |k: &str| head.split(';').find_map(|p| p.trim().strip_prefix(&format!("{k}=\"")).map(|v| v.split('"').next().unwrap_or("").to_string()));
        if let Some(name) = attr("name") {
            out.push((name, attr("filename"), body.get(head_end + 4..next.unwrap_or(body.len())).unwrap_or_default()));
        }
        after = next.map(|i| i + delim.len());
    }
    out
}

pub(crate) fn form_of(v: &Viewer, body: &Bytes) -> Result<FormData, Error> {
    let f = FormData::parse(body)?;
    f.check_csrf(&v.csrf)?;
    Ok(f)
}

pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub pre: bool,
}

pub(crate) fn cell(t: impl Into<String>) -> Cell {
    Cell { text: t.into(), href: None, pre: false }
}
pub(crate) fn link(t: impl Into<String>, href: impl Into<String>) -> Cell {
    Cell { text: t.into(), href: Some(href.into()), pre: false }
}
pub(crate) fn code(t: impl Into<String>) -> Cell {
    Cell { text: t.into(), href: None, pre: true }
}

pub struct Filter {
    pub name: &'static str,
    pub label: String,
    pub value: String,
    pub kind: &'static str,
    pub options: Vec<(String, String)>,
}

pub struct Field {
    pub name: &'static str,
    pub label: String,
    pub kind: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
    pub checked: Vec<String>,
    pub error: Option<String>,
    pub hint: Option<String>,
}

impl Field {
    pub(crate) fn new(name: &'static str, label: &str, kind: &'static str, value: impl Into<String>) -> Self {
        Field { name, label: label.to_string(), kind, value: value.into(), options: Vec::new(), checked: Vec::new(), error: None, hint: None }
    }
    pub(crate) fn select(name: &'static str, label: &str, value: impl Into<String>, options: Vec<(String, String)>) -> Self {
        Field { options, ..Field::new(name, label, "select", value) }
    }
    pub(crate) fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
    pub fn is_checked(&self, v: &str) -> bool {
        self.checked.iter().any(|c| c == v)
    }
}

pub struct FormCard {
    pub id: &'static str,
    pub title: String,
    pub action: String,
    pub fields: Vec<Field>,
    pub submit: String,
    pub note: Option<String>,
}

/// Put each field error next to its field; errors for fields not on the form go to the banner.
pub(crate) fn attach_errors(shell: &mut Shell, forms: &mut [FormCard], e: &Error) {
    let lang = shell.lang;
    shell.error = Some(match e {
        Error::Invalid(_) => lang.t("common.fix_errors").to_string(),
        e => e.message(lang.zh()),
    });
    let mut extra = Vec::new();
    for fe in e.fields() {
        let msg = lang.pick(&fe.zh, &fe.en).to_string();
        let target = forms.iter_mut().flat_map(|f| f.fields.iter_mut()).find(|f| f.name == fe.field || fe.field.starts_with(&format!("{}.", f.name)));
        match target {
            Some(f) => f.error = Some(msg),
            None => extra.push(format!("{}: {msg}", fe.field)),
        }
    }
    if !extra.is_empty() {
        shell.error = Some(format!("{} — {}", shell.error.clone().unwrap_or_default(), extra.join(";")));
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) shell: Shell,
    pub(crate) next: String,
    pub(crate) username: String,
}

pub struct Tile {
    pub href: &'static str,
    pub title: &'static str,
    pub text: &'static str,
}

#[derive(Template)]
#[template(path = "home.html")]
pub(crate) struct HomePage {
    pub(crate) shell: Shell,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) role_label: String,
    pub(crate) unit: String,
    pub(crate) scope: String,
    pub(crate) policy: String,
    pub(crate) duty: String,
    pub(crate) tiles: Vec<Tile>,
}

#[derive(Template)]
#[template(path = "table.html")]
pub(crate) struct TablePage {
    pub(crate) shell: Shell,
    pub(crate) create_href: Option<String>,
    pub(crate) filters: Vec<Filter>,
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Cell>>,
    pub(crate) more_href: Option<String>,
    pub(crate) forms: Vec<FormCard>,
}

#[derive(Template)]
#[template(path = "form.html")]
pub(crate) struct FormPage {
    pub(crate) shell: Shell,
    pub(crate) forms: Vec<FormCard>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) shell: Shell,
    pub(crate) message: String,
    pub(crate) request_id: String,
}

pub(crate) const CHINA: i32 = 8 * 3600;

pub(crate) fn local(t: DateTime<Utc>) -> String {
    FixedOffset::east_opt(CHINA).map(|z| t.with_timezone(&z).format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| t.to_rfc3339())
}

/// A `datetime-local` value read as China time.
/// A time as a `datetime-local` input value, in China time.
pub(crate) fn local_input(t: DateTime<Utc>) -> String {
    FixedOffset::east_opt(CHINA).map(|z| t.with_timezone(&z).format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default()
}

pub(crate) fn parse_local(field: &str, s: &str) -> Result<DateTime<Utc>, Error> {
    let bad = || Error::field(field, "datetime_format", "时间格式应为 2022-11-11T08:00", "use a time like 2022-11-11T08:00");
    let n = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| bad())?;
    FixedOffset::east_opt(CHINA).and_then(|z| z.from_local_datetime(&n).single()).map(|t| t.with_timezone(&Utc)).ok_or_else(bad)
}

pub(crate) fn scope_text(s: &Scope, lang: Lang) -> String {
    match s {
        Scope::Division { code } if code.is_empty() => lang.pick("全部", "everything").to_string(),
        Scope::Division { code } => format!("{} {}", code, Divisions::get_all().full_name(code)),
        Scope::Unit { .. } => lang.t("home.scope_unit").to_string(),
    }
}

/// The link to the next page of a list shown at `path` with the query `qm`, when there is one.
pub(crate) fn next_page(path: &str, qm: &HashMap<String, String>, next_cursor: Option<&String>) -> Option<String> {
    let cursor = next_cursor?;
    let mut params: Vec<(&String, &String)> = qm.iter().filter(|(k, _)| *k != "cursor").collect();
    params.sort();
    let cursor_key = "cursor".to_string();
    params.push((&cursor_key, cursor));
    Some(format!("{path}?{}", serde_urlencoded::to_string(params).unwrap_or_default()))
}

pub(crate) fn query_map(q: &Option<String>) -> HashMap<String, String> {
    q.as_deref().map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default().into_iter().collect()).unwrap_or_default()
}

// ---------- login, logout, language ----------

pub(crate) const PRE_COOKIE: &str = "baton_pre";

async fn login_page(State(s): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let lang = req().lang;
    // Login CSRF: a pre-session token in a cookie must match the form's (double submit).
    let pre = cookie(&headers, PRE_COOKIE).map(str::to_string).unwrap_or_else(|| baton_store::vault::random_token(18));
    let next = query_map(&q).get("next").cloned().unwrap_or_else(|| "/".into());
    let next = safe_next(&next).to_string();
    let here = format!("/login?next={}", encode(&next));
    let page = LoginPage { shell: shell_for(None, lang, &pre, &here, lang.t("login.title").to_string()), next, username: String::new() };
    let c = format!("{PRE_COOKIE}={pre}; Path=/login; HttpOnly; SameSite=Strict{}", if s.config.secure_cookies { "; Secure" } else { "" });
    ([(header::SET_COOKIE, c)], render(&page)).into_response()
}

async fn login_submit(State(s): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Bytes) -> UiResult {
    let r = req();
    let f = FormData::parse(&body)?;
    let pre = cookie(&headers, PRE_COOKIE).unwrap_or("");
    f.check_csrf(pre)
        .map_err(|e| if pre.is_empty() { Error::conflict("csrf_failed", "请重新打开登录页", "please open the sign-in page again") } else { e })?;
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    match auth::login(&s.store, &f.get("username"), &f.get("password"), &peer.ip().to_string(), ua, r.lang.code(), &r.request_id).await {
        Ok(sess) => {
            let next = safe_next(&f.get("next")).to_string();
            let c = session_cookie(&sess.token, s.config.secure_cookies, auth::SESSION_HOURS * 3600);
            Ok(([(header::SET_COOKIE, c)], Redirect::to(&next)).into_response())
        }
        Err(e @ (Error::Conflict { .. } | Error::RateLimited)) => {
            let mut shell = shell_for(None, r.lang, pre, "/login", r.lang.t("login.title").to_string());
            shell.error = Some(e.message(r.lang.zh()));
            let status = crate::error::status_of(&e);
            Ok((status, render(&LoginPage { shell, next: safe_next(&f.get("next")).to_string(), username: f.get("username") })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn logout(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    form_of(&v, &body)?;
    auth::logout(&s.store, &v.who, &v.token).await?;
    Ok(([(header::SET_COOKIE, session_cookie("", s.config.secure_cookies, 0))], Redirect::to("/login")).into_response())
}

/// Switch language: a cookie for everyone, and the session's language when signed in.
async fn switch_lang(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> UiResult {
    let f = FormData::parse(&body)?;
    let lang = Lang::parse(&f.get("lang")).unwrap_or_default();
    if let Some(token) = cookie(&headers, crate::auth::SESSION_COOKIE)
        && let Some((_, info)) = auth::session(&s.store, token, &req().request_id).await?
    {
        f.check_csrf(&info.csrf)?;
        auth::set_session_lang(&s.store, token, lang.code()).await?;
    }
    let c = format!("lang={}; Path=/; Max-Age=31536000; SameSite=Lax", lang.code());
    Ok(([(header::SET_COOKIE, c)], Redirect::to(safe_next(&f.get("next")))).into_response())
}

// ---------- home ----------

async fn home(State(s): State<AppState>, v: Viewer) -> UiResult {
    let lang = v.lang;
    let role = users::role_by_name(&s.store, &v.who.role).await?;
    let role_label = role.as_ref().map(|r| lang.pick(&r.label_zh, &r.label_en).to_string()).unwrap_or_else(|| v.who.role.clone());
    let unit = match v.who.unit_id {
        Some(id) => units::get(&s.store, &Principal { permissions: baton_domain::role::Permissions::all(), ..v.who.clone() }, id)
            .await
            .map(|u| u.name)
            .unwrap_or_default(),
        None => String::new(),
    };
    let policy = match policy::current(&s.store, s.store.now()).await {
        Ok(p) => format!("v{} · {} · {}", p.version, local(p.effective_from), p.note),
        Err(_) => lang.t("common.none").to_string(),
    };
    let tiles = PAGES
        .iter()
        .skip(1)
        .filter(|(_, _, perm, _, _)| perm.is_none_or(|x| v.who.can(x)))
        .map(|(href, key, _, zh, en)| Tile { href, title: lang.t(key), text: lang.pick(zh, en) })
        .collect();
    let shell = v.shell("nav.home");
    let duty = role_duty(&v.who.role, lang).to_string();
    Ok(render(&HomePage {
        shell,
        name: v.who.display_name.clone(),
        role: v.who.role.clone(),
        role_label,
        unit,
        scope: scope_text(&v.who.scope, lang),
        policy,
        duty,
        tiles,
    }))
}

// ---------- units ----------

pub(crate) fn kind_options(lang: Lang, with_all: bool) -> Vec<(String, String)> {
    let mut o: Vec<(String, String)> = if with_all { vec![(String::new(), lang.pick("全部", "All").to_string())] } else { vec![] };
    o.extend(UnitKind::ALL.iter().map(|k| (k.as_str().to_string(), k.label(lang.zh()).to_string())));
    o
}

pub(crate) fn kind_label(kind: &str, lang: Lang) -> String {
    UnitKind::parse(kind).map(|k| k.label(lang.zh()).to_string()).unwrap_or_else(|| kind.to_string())
}

async fn units_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let f = units::UnitFilter { kind: qm.get("kind").cloned(), q: qm.get("q").cloned() };
    let list = units::list(&s.store, &v.who, &f).await?;
    let rows = list
        .iter()
        .map(|u| {
            vec![
                link(&u.name, format!("/admin/units/{}", u.id)),
                cell(kind_label(&u.kind, lang)),
                cell(format!("{} {}", u.division_code, u.division_name)),
                cell(u.supervisor_name.clone().unwrap_or_default()),
                cell(lang.t(if u.active { "common.active" } else { "common.disabled" })),
            ]
        })
        .collect();
    let page = TablePage {
        shell: v.shell("nav.units"),
        create_href: v.who.can(Permission::UnitsWrite).then(|| "/admin/units/new".to_string()),
        filters: vec![
            Filter { name: "q", label: lang.t("common.name").into(), value: f.q.unwrap_or_default(), kind: "search", options: vec![] },
            Filter {
                name: "kind",
                label: lang.t("common.kind").into(),
                value: f.kind.unwrap_or_default(),
                kind: "text",
                options: kind_options(lang, true),
            },
        ],
        columns: ["common.name", "common.kind", "common.division", "unit.supervisor", "user.status"].iter().map(|k| lang.t(k).to_string()).collect(),
        rows,
        more_href: None,
        forms: vec![],
    };
    Ok(render(&page))
}

async fn unit_options(s: &AppState, v: &Viewer, none: bool) -> Result<Vec<(String, String)>, Error> {
    let all = Principal { permissions: baton_domain::role::Permissions::all(), ..v.who.clone() };
    let mut o = if none { vec![(String::new(), v.lang.t("common.none").to_string())] } else { vec![] };
    o.extend(
        units::list(&s.store, &all, &units::UnitFilter::default())
            .await?
            .into_iter()
            .map(|u| (u.id.to_string(), format!("{} ({})", u.name, kind_label(&u.kind, v.lang)))),
    );
    Ok(o)
}

async fn unit_form(s: &AppState, v: &Viewer, action: String, title: &str, vals: &HashMap<&str, String>) -> Result<FormCard, Error> {
    let lang = v.lang;
    let val = |k: &str| vals.get(k).cloned().unwrap_or_default();
    let mut supervisors = unit_options(s, v, true).await?;
    // A supervisor outside the viewer's scope (e.g. the command office) still shows.
    if !val("supervisor_id").is_empty() && !supervisors.iter().any(|(id, _)| *id == val("supervisor_id")) {
        supervisors.push((val("supervisor_id"), val("supervisor_name")));
    }
    Ok(FormCard {
        id: "unit-form",
        title: title.to_string(),
        action,
        fields: vec![
            Field::new("name", lang.t("common.name"), "text", val("name")),
            Field::select("kind", lang.t("common.kind"), val("kind"), kind_options(lang, false)),
            Field::new("division_code", lang.t("common.division"), "text", val("division_code"))
                .hint(lang.pick("行政区划代码，如 140427101(百尺镇)", "Division code, e.g. 140427101 (百尺镇)")),
            Field::select("supervisor_id", lang.t("unit.supervisor"), val("supervisor_id"), supervisors),
            Field::new("address", lang.t("unit.address"), "text", val("address")),
            Field::new("active", lang.t("common.active"), "checkbox", val("active")),
        ],
        submit: lang.t("common.save").into(),
        note: None,
    })
}

pub(crate) fn unit_input(f: &FormData) -> Result<units::UnitInput, Error> {
    let sup = f.get("supervisor_id");
    Ok(units::UnitInput {
        name: f.get("name"),
        kind: f.get("kind"),
        division_code: f.get("division_code"),
        supervisor_id: if sup.is_empty() {
            None
        } else {
            Some(Uuid::parse_str(&sup).map_err(|_| Error::field("supervisor_id", "invalid_type", "上级单位无效", "invalid supervising unit"))?)
        },
        address: f.get("address"),
        active: f.get("active") == "on",
    })
}

async fn unit_new(State(s): State<AppState>, v: Viewer) -> UiResult {
    v.who.require(Permission::UnitsWrite)?;
    let vals = HashMap::from([("active", "on".to_string())]);
    let form = unit_form(&s, &v, "/admin/units/new".into(), v.lang.t("common.create"), &vals).await?;
    Ok(render(&FormPage { shell: v.shell("nav.units"), forms: vec![form] }))
}

pub(crate) fn form_vals(f: &FormData, names: &[&'static str]) -> HashMap<&'static str, String> {
    names.iter().map(|n| (*n, f.get(n))).collect()
}

async fn unit_create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let result = match unit_input(&f) {
        Ok(input) => units::create(&s.store, &v.who, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(u) => Ok(Redirect::to(&format!("/admin/units/{}?saved=1", u.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let vals = form_vals(&f, &["name", "kind", "division_code", "supervisor_id", "address", "active"]);
            let mut forms = vec![unit_form(&s, &v, "/admin/units/new".into(), v.lang.t("common.create"), &vals).await?];
            let mut shell = v.shell("nav.units");
            attach_errors(&mut shell, &mut forms, &e);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn unit_edit(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, RawQuery(q): RawQuery) -> UiResult {
    let u = units::get(&s.store, &v.who, id).await?;
    let vals = HashMap::from([
        ("name", u.name.clone()),
        ("kind", u.kind.clone()),
        ("division_code", u.division_code.clone()),
        ("supervisor_id", u.supervisor_id.map(|x| x.to_string()).unwrap_or_default()),
        ("supervisor_name", u.supervisor_name.clone().unwrap_or_default()),
        ("address", u.address.clone()),
        ("active", if u.active { "on".into() } else { String::new() }),
    ]);
    let mut form = unit_form(&s, &v, format!("/admin/units/{id}"), &u.name, &vals).await?;
    if !v.who.can(Permission::UnitsWrite) {
        form.submit = String::new();
    }
    let mut shell = v.shell("nav.units");
    if query_map(&q).contains_key("saved") {
        shell.flash = Some(v.lang.t("common.saved").into());
    }
    Ok(render(&FormPage { shell, forms: vec![form] }))
}

async fn unit_update(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let result = match unit_input(&f) {
        Ok(input) => units::update(&s.store, &v.who, id, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(u) => Ok(Redirect::to(&format!("/admin/units/{}?saved=1", u.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let vals = form_vals(&f, &["name", "kind", "division_code", "supervisor_id", "address", "active"]);
            let mut forms = vec![unit_form(&s, &v, format!("/admin/units/{id}"), &f.get("name"), &vals).await?];
            let mut shell = v.shell("nav.units");
            attach_errors(&mut shell, &mut forms, &e);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- users ----------

async fn users_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let f = users::UserFilter { q: qm.get("q").cloned(), unit_id: None, phone: qm.get("phone").cloned(), id_number: qm.get("id_number").cloned() };
    let list = users::list(&s.store, &v.who, &f).await?;
    let rows = list
        .iter()
        .map(|u| {
            vec![
                link(&u.username, format!("/admin/users/{}", u.id)),
                cell(&u.display_name),
                cell(&u.unit_name),
                cell(lang.pick(&u.role_label_zh, &u.role_label_en)),
                cell(scope_text(&u.scope, lang)),
                cell(u.phone.clone().unwrap_or_default()),
                cell(lang.t(if u.disabled { "common.disabled" } else { "common.active" })),
            ]
        })
        .collect();
    let page = TablePage {
        shell: v.shell("nav.users"),
        create_href: v.who.can(Permission::UsersWrite).then(|| "/admin/users/new".to_string()),
        filters: vec![
            Filter { name: "q", label: lang.t("user.username").into(), value: f.q.unwrap_or_default(), kind: "search", options: vec![] },
            Filter { name: "phone", label: lang.t("user.phone").into(), value: f.phone.unwrap_or_default(), kind: "tel", options: vec![] },
            Filter {
                name: "id_number",
                label: lang.t("user.id_number").into(),
                value: f.id_number.unwrap_or_default(),
                kind: "text",
                options: vec![],
            },
        ],
        columns: ["user.username", "user.display_name", "user.unit", "user.role", "user.scope_kind", "user.phone", "user.status"]
            .iter()
            .map(|k| lang.t(k).to_string())
            .collect(),
        rows,
        more_href: None,
        forms: vec![],
    };
    Ok(render(&page))
}

async fn role_options(s: &AppState, lang: Lang) -> Result<Vec<(String, String)>, Error> {
    Ok(users::list_roles(&s.store).await?.into_iter().map(|r| (r.name.clone(), lang.pick(&r.label_zh, &r.label_en).to_string())).collect())
}

async fn user_form(s: &AppState, v: &Viewer, action: String, title: &str, vals: &HashMap<&str, String>, creating: bool) -> Result<FormCard, Error> {
    let lang = v.lang;
    let val = |k: &str| vals.get(k).cloned().unwrap_or_default();
    let mut fields = Vec::new();
    if creating {
        fields.push(Field::new("username", lang.t("user.username"), "text", val("username")));
    }
    fields.push(Field::new("display_name", lang.t("user.display_name"), "text", val("display_name")));
    fields.push(Field::select("unit_id", lang.t("user.unit"), val("unit_id"), unit_options(s, v, false).await?));
    fields.push(Field::select("role", lang.t("user.role"), val("role"), role_options(s, lang).await?));
    fields.push(Field::select(
        "scope_kind",
        lang.t("user.scope_kind"),
        val("scope_kind"),
        vec![("division".into(), lang.t("user.scope.division").into()), ("unit".into(), lang.t("user.scope.unit").into())],
    ));
    fields.push(
        Field::new("scope_code", lang.t("user.scope_code"), "text", val("scope_code"))
            .hint(lang.pick("如 140427(全县)或 140427101(百尺镇)", "e.g. 140427 (the county) or 140427101 (百尺镇)")),
    );
    if creating {
        fields.push(Field::new("password", lang.t("user.password"), "password", ""));
    }
    let keep = lang.pick("留空则保持不变", "leave blank to keep");
    let mut phone = Field::new("phone", lang.t("user.phone"), "tel", if creating { val("phone") } else { String::new() });
    let mut idn = Field::new("id_number", lang.t("user.id_number"), "text", if creating { val("id_number") } else { String::new() });
    if !creating {
        phone = phone.hint(format!("{} · {keep}", val("phone_masked")));
        idn = idn.hint(format!("{} · {keep}", val("id_number_masked")));
    }
    fields.push(phone);
    fields.push(idn);
    if !creating {
        fields.push(Field::new("disabled", lang.t("common.disabled"), "checkbox", val("disabled")));
    }
    Ok(FormCard { id: "user-form", title: title.to_string(), action, fields, submit: lang.t("common.save").into(), note: None })
}

pub(crate) fn user_input(f: &FormData) -> Result<users::UserInput, Error> {
    Ok(users::UserInput {
        username: f.get("username"),
        display_name: f.get("display_name"),
        unit_id: Uuid::parse_str(&f.get("unit_id")).map_err(|_| Error::field("unit_id", "required", "请选择单位", "choose a unit"))?,
        role: f.get("role"),
        scope_kind: f.get("scope_kind"),
        scope_code: f.get("scope_code"),
        password: f.get("password"),
        phone: f.get("phone"),
        id_number: f.get("id_number"),
        disabled: f.get("disabled") == "on",
    })
}

pub(crate) const USER_FIELDS: &[&str] =
    &["username", "display_name", "unit_id", "role", "scope_kind", "scope_code", "phone", "id_number", "disabled"];

async fn user_new(State(s): State<AppState>, v: Viewer) -> UiResult {
    v.who.require(Permission::UsersWrite)?;
    let vals = HashMap::from([("scope_kind", "unit".to_string())]);
    let form = user_form(&s, &v, "/admin/users/new".into(), v.lang.t("common.create"), &vals, true).await?;
    Ok(render(&FormPage { shell: v.shell("nav.users"), forms: vec![form] }))
}

async fn user_create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let result = match user_input(&f) {
        Ok(input) => users::create(&s.store, &v.who, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(u) => Ok(Redirect::to(&format!("/admin/users/{}?saved=1", u.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let vals: HashMap<&str, String> = USER_FIELDS.iter().map(|n| (*n, f.get(n))).collect();
            let mut forms = vec![user_form(&s, &v, "/admin/users/new".into(), v.lang.t("common.create"), &vals, true).await?];
            let mut shell = v.shell("nav.users");
            attach_errors(&mut shell, &mut forms, &e);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn user_page(s: &AppState, v: &Viewer, id: Uuid, note: Option<String>, err: Option<(Error, &FormData)>, flash: Option<String>) -> UiResult {
    let lang = v.lang;
    let u = users::get(&s.store, &v.who, id).await?;
    let (scope_kind, scope_code) = match &u.scope {
        Scope::Division { code } => ("division", code.clone()),
        Scope::Unit { .. } => ("unit", String::new()),
    };
    let mut vals: HashMap<&str, String> = HashMap::from([
        ("display_name", u.display_name.clone()),
        ("unit_id", u.unit_id.to_string()),
        ("role", u.role.clone()),
        ("scope_kind", scope_kind.to_string()),
        ("scope_code", scope_code),
        ("phone_masked", u.phone.clone().unwrap_or_else(|| lang.t("common.none").into())),
        ("id_number_masked", u.id_number.clone().unwrap_or_else(|| lang.t("common.none").into())),
        ("disabled", if u.disabled { "on".into() } else { String::new() }),
    ]);
    if let Some((_, f)) = &err {
        for n in USER_FIELDS {
            vals.insert(n, f.get(n));
        }
    }
    let mut main = user_form(s, v, format!("/admin/users/{id}"), &format!("{} ({})", u.display_name, u.username), &vals, false).await?;
    main.note = note;
    if !v.who.can(Permission::UsersWrite) {
        main.submit = String::new();
    }
    let mut forms = vec![main];
    if v.who.can(Permission::PersonalReveal) {
        forms.push(FormCard {
            id: "reveal-form",
            title: lang.t("common.reveal").into(),
            action: format!("/admin/users/{id}/reveal"),
            fields: vec![
                Field::select(
                    "field",
                    lang.pick("字段", "Field"),
                    "phone",
                    vec![("phone".into(), lang.t("user.phone").into()), ("id_number".into(), lang.t("user.id_number").into())],
                )
                .hint(lang.pick("查看完整信息会记入审计日志", "Revealing is recorded in the audit log")),
            ],
            submit: lang.t("common.reveal").into(),
            note: None,
        });
    }
    if v.who.can(Permission::UsersWrite) {
        forms.push(FormCard {
            id: "password-form",
            title: lang.t("user.reset_password").into(),
            action: format!("/admin/users/{id}/password"),
            fields: vec![Field::new("password", lang.t("user.new_password"), "password", "")],
            submit: lang.t("user.reset_password").into(),
            note: None,
        });
        forms.push(FormCard {
            id: "revoke-form",
            title: lang.t("user.revoke_sessions").into(),
            action: format!("/admin/users/{id}/revoke-sessions"),
            fields: vec![],
            submit: lang.t("user.revoke_sessions").into(),
            note: None,
        });
    }
    let mut shell = v.shell("nav.users");
    shell.flash = flash;
    if let Some((e, _)) = &err {
        attach_errors(&mut shell, &mut forms, e);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response());
    }
    Ok(render(&FormPage { shell, forms }))
}

async fn user_edit(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, RawQuery(q): RawQuery) -> UiResult {
    let flash = query_map(&q).contains_key("saved").then(|| v.lang.t("common.saved").to_string());
    user_page(&s, &v, id, None, None, flash).await
}

async fn user_update(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let result = match user_input(&f) {
        Ok(input) => users::update(&s.store, &v.who, id, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/admin/users/{id}?saved=1")).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => user_page(&s, &v, id, None, Some((e, &f)), None).await,
        Err(e) => Err(e.into()),
    }
}

async fn user_password(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    match users::reset_password(&s.store, &v.who, id, &f.get("password")).await {
        Ok(()) => Ok(Redirect::to(&format!("/admin/users/{id}?saved=1")).into_response()),
        Err(e @ Error::Invalid(_)) => user_page(&s, &v, id, None, Some((e, &f)), None).await,
        Err(e) => Err(e.into()),
    }
}

async fn user_reveal(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let kind = if f.get("field") == "id_number" { PersonalKind::IdNumber } else { PersonalKind::Phone };
    let value = users::reveal(&s.store, &v.who, id, kind).await?;
    let label = v.lang.t(if kind == PersonalKind::Phone { "user.phone" } else { "user.id_number" });
    let note = format!("{label}: {}", value.unwrap_or_else(|| v.lang.t("common.none").into()));
    user_page(&s, &v, id, Some(note), None, None).await
}

async fn user_revoke_sessions(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    form_of(&v, &body)?;
    auth::revoke_sessions(&s.store, &v.who, id).await?;
    Ok(Redirect::to(&format!("/admin/users/{id}?saved=1")).into_response())
}

// ---------- roles ----------

pub(crate) fn permission_options(lang: Lang) -> Vec<(String, String)> {
    Permission::ALL.iter().map(|p| (p.as_str().to_string(), format!("{} ({})", p.label(lang.zh()), p.as_str()))).collect()
}

async fn roles_view(s: &AppState, v: &Viewer, err: Option<(Error, &FormData)>) -> UiResult {
    v.who.require(Permission::RolesWrite)?;
    let lang = v.lang;
    let roles = users::list_roles(&s.store).await?;
    let rows = roles
        .iter()
        .map(|r| {
            vec![
                code(&r.name),
                cell(lang.pick(&r.label_zh, &r.label_en)),
                cell(r.permissions.iter().filter_map(|p| Permission::parse(p)).map(|p| p.label(lang.zh())).collect::<Vec<_>>().join("、")),
                cell(lang.t(if r.builtin { "common.yes" } else { "common.no" })),
            ]
        })
        .collect();
    let get = |n: &str| err.as_ref().map(|(_, f)| f.get(n)).unwrap_or_default();
    let mut perms = Field::new("permissions", lang.t("role.permissions"), "checkboxes", "");
    perms.options = permission_options(lang);
    perms.checked = err.as_ref().map(|(_, f)| f.all("permissions")).unwrap_or_default();
    let mut forms = vec![FormCard {
        id: "role-form",
        title: lang.t("common.create").into(),
        action: "/admin/roles".into(),
        fields: vec![
            Field::new("name", lang.t("role.code"), "text", get("name")).hint(lang.pick(
                "小写字母、数字、下划线；与已有自定义角色同名则更新它",
                "lowercase, digits, underscore; an existing custom role of that code is updated",
            )),
            Field::new("label_zh", lang.t("role.label_zh"), "text", get("label_zh")),
            Field::new("label_en", lang.t("role.label_en"), "text", get("label_en")),
            perms,
        ],
        submit: lang.t("common.save").into(),
        note: None,
    }];
    let mut shell = v.shell("nav.roles");
    let status = if let Some((e, _)) = &err {
        attach_errors(&mut shell, &mut forms, e);
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let columns = ["role.code", "common.name", "role.permissions", "role.builtin"].iter().map(|k| lang.t(k).to_string()).collect();
    Ok((status, render(&TablePage { shell, create_href: None, filters: vec![], columns, rows, more_href: None, forms })).into_response())
}

async fn roles_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    roles_view(&s, &v, None).await
}

async fn role_save(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let input = users::RoleInput { name: f.get("name"), label_zh: f.get("label_zh"), label_en: f.get("label_en"), permissions: f.all("permissions") };
    match users::save_role(&s.store, &v.who, &input).await {
        Ok(_) => Ok(Redirect::to("/admin/roles").into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => roles_view(&s, &v, Some((e, &f))).await,
        Err(e) => Err(e.into()),
    }
}

// ---------- tokens ----------

async fn tokens_view(s: &AppState, v: &Viewer, note: Option<String>, err: Option<(Error, &FormData)>) -> UiResult {
    let lang = v.lang;
    let tokens = auth::list_tokens(&s.store, &v.who, &PageQuery::largest()).await?.items;
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                cell(&t.name),
                code(format!("{}…", t.prefix)),
                cell(&t.unit_name),
                cell(scope_text(&t.scope, lang)),
                cell(t.permissions.join(", ")),
                cell(t.expires_at.map(local).unwrap_or_default()),
                cell(t.last_used_at.map(local).unwrap_or_default()),
                cell(t.revoked_at.map(|r| format!("{} {}", lang.t("token.revoked"), local(r))).unwrap_or_else(|| lang.t("common.active").into())),
            ]
        })
        .collect();
    let get = |n: &str| err.as_ref().map(|(_, f)| f.get(n)).unwrap_or_default();
    let mut perms = Field::new("permissions", lang.t("role.permissions"), "checkboxes", "");
    perms.options = permission_options(lang).into_iter().filter(|(p, _)| Permission::parse(p).is_some_and(|p| v.who.can(p))).collect();
    perms.checked = err.as_ref().map(|(_, f)| f.all("permissions")).unwrap_or_default();
    let scope_kind = if get("scope_kind").is_empty() { "unit".to_string() } else { get("scope_kind") };
    let mut forms = vec![FormCard {
        id: "token-form",
        title: lang.t("common.create").into(),
        action: "/admin/tokens".into(),
        fields: vec![
            Field::new("name", lang.t("common.name"), "text", get("name")),
            Field::select("unit_id", lang.t("user.unit"), get("unit_id"), unit_options(s, v, false).await?),
            Field::select(
                "scope_kind",
                lang.t("user.scope_kind"),
                scope_kind,
                vec![("unit".into(), lang.t("user.scope.unit").into()), ("division".into(), lang.t("user.scope.division").into())],
            ),
            Field::new("scope_code", lang.t("user.scope_code"), "text", get("scope_code")),
            perms,
            Field::new("expires_in_days", lang.t("token.expires_days"), "number", get("expires_in_days")),
        ],
        submit: lang.t("common.create").into(),
        note,
    }];
    let live: Vec<(String, String)> =
        tokens.iter().filter(|t| t.revoked_at.is_none()).map(|t| (t.id.to_string(), format!("{} ({}…)", t.name, t.prefix))).collect();
    if !live.is_empty() {
        forms.push(FormCard {
            id: "token-revoke-form",
            title: lang.t("common.revoke").into(),
            action: "/admin/tokens/revoke".into(),
            fields: vec![Field::select("id", lang.t("nav.tokens"), "", live)],
            submit: lang.t("common.revoke").into(),
            note: None,
        });
    }
    let mut shell = v.shell("nav.tokens");
    let status = if let Some((e, _)) = &err {
        attach_errors(&mut shell, &mut forms, e);
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let columns =
        ["common.name", "token.prefix", "user.unit", "user.scope_kind", "role.permissions", "token.expires", "token.last_used", "user.status"]
            .iter()
            .map(|k| lang.t(k).to_string())
            .collect();
    Ok((status, render(&TablePage { shell, create_href: None, filters: vec![], columns, rows, more_href: None, forms })).into_response())
}

async fn tokens_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    tokens_view(&s, &v, None, None).await
}

async fn token_create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let days = f.get("expires_in_days");
    let parsed = (|| -> Result<auth::TokenInput, Error> {
        Ok(auth::TokenInput {
            name: f.get("name"),
            unit_id: Uuid::parse_str(&f.get("unit_id")).map_err(|_| Error::field("unit_id", "required", "请选择单位", "choose a unit"))?,
            permissions: f.all("permissions"),
            scope_kind: f.get("scope_kind"),
            scope_code: f.get("scope_code"),
            expires_in_days: if days.trim().is_empty() {
                None
            } else {
                Some(days.trim().parse().map_err(|_| Error::field("expires_in_days", "invalid_type", "应为整数", "must be a whole number"))?)
            },
        })
    })();
    match parsed {
        Ok(input) => match auth::create_token(&s.store, &v.who, &input).await {
            Ok((_, secret)) => tokens_view(&s, &v, Some(format!("{} {secret}", v.lang.t("token.secret_once"))), None).await,
            Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => tokens_view(&s, &v, None, Some((e, &f))).await,
            Err(e) => Err(e.into()),
        },
        Err(e) => tokens_view(&s, &v, None, Some((e, &f))).await,
    }
}

async fn token_revoke(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let id = Uuid::parse_str(&f.get("id")).map_err(|_| Error::NotFound("api_token"))?;
    auth::revoke_token(&s.store, &v.who, id).await?;
    Ok(Redirect::to("/admin/tokens").into_response())
}

// ---------- audit ----------

async fn audit_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    v.who.require(Permission::AuditRead)?;
    let lang = v.lang;
    let qm = query_map(&q);
    let g = |k: &str| qm.get(k).cloned().unwrap_or_default();
    let opt_time = |k: &str| -> Result<Option<DateTime<Utc>>, Error> { if g(k).is_empty() { Ok(None) } else { parse_local(k, &g(k)).map(Some) } };
    let search = audit::Search {
        actor: qm.get("actor").cloned(),
        action: qm.get("action").cloned(),
        object_type: qm.get("object_type").cloned(),
        object_id: qm.get("object_id").cloned(),
        from: opt_time("from")?,
        to: opt_time("to")?,
    };
    let page = audit::search(&s.store.db, &v.who, &search, &PageQuery::after(qm.get("cursor").cloned())).await?;
    let more_href = next_page("/audit", &qm, page.next_cursor.as_ref());
    let entries = page.items;
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                cell(e.seq.to_string()),
                cell(local(e.at)),
                cell(&e.actor_name),
                code(&e.action),
                cell(format!("{} {}", e.object_type, e.object_id)),
                cell(&e.jurisdiction),
                code(&e.request_id),
                code(&e.detail),
            ]
        })
        .collect();
    let f = |name: &'static str, key: &str, kind: &'static str| Filter { name, label: lang.t(key).into(), value: g(name), kind, options: vec![] };
    let page = TablePage {
        shell: v.shell("nav.audit"),
        create_href: None,
        filters: vec![
            f("actor", "audit.actor", "text"),
            f("action", "audit.action", "text"),
            f("object_type", "audit.object", "text"),
            f("object_id", "audit.object", "text"),
            f("from", "audit.from", "datetime-local"),
            f("to", "audit.to", "datetime-local"),
        ],
        columns: ["#", "common.time", "audit.actor", "audit.action", "audit.object", "common.division", "audit.request", "audit.detail"]
            .iter()
            .map(|k| if *k == "#" { "#".to_string() } else { lang.t(k).to_string() })
            .collect(),
        rows,
        more_href,
        forms: vec![],
    };
    Ok(render(&page))
}

// ---------- policy ----------

async fn policy_view(s: &AppState, v: &Viewer, err: Option<(Error, &FormData)>) -> UiResult {
    v.who.require(Permission::PolicyRead)?;
    let lang = v.lang;
    let versions = policy::list(&s.store).await?;
    let now = s.store.now();
    let current = baton_domain::policy::in_force(&versions, now).map(|p| p.version);
    let rows = versions
        .iter()
        .rev()
        .map(|p| {
            vec![
                cell(format!(
                    "v{}{}",
                    p.version,
                    if Some(p.version) == current { format!(" · {}", lang.t("policy.in_force")) } else { String::new() }
                )),
                cell(local(p.effective_from)),
                cell(&p.note),
                code(serde_json::to_string(&p.params).unwrap_or_default()),
            ]
        })
        .collect();
    let mut forms = Vec::new();
    if v.who.can(Permission::PolicyWrite) {
        let get = |n: &str| err.as_ref().map(|(_, f)| f.get(n));
        let params = get("params").unwrap_or_else(|| {
            let p = versions.iter().find(|p| Some(p.version) == current).map(|p| p.params.clone()).unwrap_or_default();
            serde_json::to_string_pretty(&p).unwrap_or_default()
        });
        let start = FixedOffset::east_opt(CHINA).map(|z| now.with_timezone(&z).format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default();
        forms.push(FormCard {
            id: "policy-form",
            title: lang.t("policy.new").into(),
            action: "/policy".into(),
            fields: vec![
                Field::new("effective_from", lang.t("policy.effective_from"), "datetime-local", get("effective_from").unwrap_or(start)),
                Field::new("note", lang.t("policy.note"), "text", get("note").unwrap_or_default()),
                Field::new("params", lang.t("policy.params"), "textarea", params),
            ],
            submit: lang.t("common.save").into(),
            note: None,
        });
    }
    let mut shell = v.shell("nav.policy");
    let status = if let Some((e, _)) = &err {
        attach_errors(&mut shell, &mut forms, e);
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let columns = ["policy.version", "policy.effective_from", "policy.note", "policy.params"].iter().map(|k| lang.t(k).to_string()).collect();
    Ok((status, render(&TablePage { shell, create_href: None, filters: vec![], columns, rows, more_href: None, forms })).into_response())
}

async fn policy_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    policy_view(&s, &v, None).await
}

async fn policy_create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let parsed = (|| -> Result<policy::PolicyInput, Error> {
        let params = serde_json::from_str(&f.get("params"))
            .map_err(|e| Error::field("params", "malformed_json", format!("JSON 格式错误：{e}"), format!("malformed JSON: {e}")))?;
        Ok(policy::PolicyInput { effective_from: parse_local("effective_from", &f.get("effective_from"))?, params, note: f.get("note") })
    })();
    let result = match parsed {
        Ok(input) => policy::create(&s.store, &v.who, &input).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/policy").into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => policy_view(&s, &v, Some((e, &f))).await,
        Err(e) => Err(e.into()),
    }
}

// ---------- grids ----------

async fn grids_view(s: &AppState, v: &Viewer, err: Option<(Error, &FormData)>) -> UiResult {
    v.who.require(Permission::GridsWrite)?;
    let lang = v.lang;
    let list = grids::list(&s.store, &v.who, None, &PageQuery::largest()).await?.items;
    let rows =
        list.iter().map(|g| vec![code(&g.code), cell(&g.name), cell(&g.village_name), cell(g.member_name.clone().unwrap_or_default())]).collect();
    let d = Divisions::get_all();
    let root = match &v.who.scope {
        Scope::Division { code } => code.clone(),
        Scope::Unit { division, .. } => division.clone(),
    };
    let villages: Vec<(String, String)> = d
        .descendants(&root)
        .iter()
        .chain(d.get(&root).filter(|x| x.level == Level::Village))
        .filter(|x| x.level == Level::Village)
        .map(|x| (x.code.to_string(), format!("{} {}", d.parent(x.code).map(|p| p.name).unwrap_or(""), x.name)))
        .collect();
    let get = |n: &str| err.as_ref().map(|(_, f)| f.get(n)).unwrap_or_default();
    let mut members = vec![(String::new(), lang.t("common.none").to_string())];
    if v.who.can(Permission::UsersRead) {
        members.extend(
            users::list(&s.store, &v.who, &users::UserFilter::default())
                .await?
                .into_iter()
                .filter(|u| u.role == "grid_member")
                .map(|u| (u.id.to_string(), u.display_name)),
        );
    }
    let mut forms = vec![FormCard {
        id: "grid-form",
        title: lang.t("common.create").into(),
        action: "/grids".into(),
        fields: vec![
            Field::select("village_code", lang.t("grid.village"), get("village_code"), villages),
            Field::new("name", lang.t("common.name"), "text", get("name")),
            Field::select("member_id", lang.t("grid.member"), get("member_id"), members),
        ],
        submit: lang.t("common.create").into(),
        note: None,
    }];
    let mut shell = v.shell("nav.grids");
    let status = if let Some((e, _)) = &err {
        attach_errors(&mut shell, &mut forms, e);
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let columns = ["grid.code", "common.name", "grid.village", "grid.member"].iter().map(|k| lang.t(k).to_string()).collect();
    Ok((status, render(&TablePage { shell, create_href: None, filters: vec![], columns, rows, more_href: None, forms })).into_response())
}

async fn grids_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    grids_view(&s, &v, None).await
}

async fn grid_create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let member = f.get("member_id");
    let input = grids::GridInput { village_code: f.get("village_code"), name: f.get("name"), member_id: Uuid::parse_str(&member).ok() };
    match grids::create(&s.store, &v.who, &input).await {
        Ok(_) => Ok(Redirect::to("/grids").into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => grids_view(&s, &v, Some((e, &f))).await,
        Err(e) => Err(e.into()),
    }
}

// ---------- divisions ----------

async fn divisions_page(v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let query = qm.get("q").cloned().unwrap_or_default();
    let d = Divisions::get_all();
    let rows: Vec<Vec<Cell>> = if query.trim().is_empty() {
        // Without a query, show the user's own division and its children.
        let root = match &v.who.scope {
            Scope::Division { code } if !code.is_empty() => code.clone(),
            Scope::Division { .. } => String::new(),
            Scope::Unit { division, .. } => division.clone(),
        };
        d.get(&root).into_iter().chain(d.children(&root)).map(|x| division_row(x, lang)).collect()
    } else {
        let found = d.lookup(&query);
        let mut rows: Vec<Vec<Cell>> = found.iter().take(50).map(|x| division_row(x, lang)).collect();
        if let [one] = found.as_slice() {
            rows.extend(d.children(one.code).map(|x| division_row(x, lang)));
        }
        rows
    };
    let page = TablePage {
        shell: v.shell("nav.divisions"),
        create_href: None,
        filters: vec![Filter { name: "q", label: lang.t("division.lookup").into(), value: query, kind: "search", options: vec![] }],
        columns: vec![lang.pick("代码", "Code").into(), lang.t("common.name").into(), lang.pick("级别", "Level").into()],
        rows,
        more_href: None,
        forms: vec![],
    };
    Ok(render(&page))
}

pub(crate) fn division_row(x: &baton_domain::division::Division, lang: Lang) -> Vec<Cell> {
    let level = match x.level {
        Level::Province => lang.pick("省", "province"),
        Level::City => lang.pick("市", "city"),
        Level::County => lang.pick("县", "county"),
        Level::Township => lang.pick("乡镇", "township"),
        Level::Village => lang.pick("村(社区)", "village"),
    };
    vec![link(x.code, format!("/divisions?q={}", x.code)), cell(Divisions::get_all().full_name(x.code)), cell(level)]
}

// ---------- assets ----------

async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty): (&'static str, &str) = match file.as_str() {
        "app.css" => (include_str!("../assets/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_str!("../assets/app.js"), "text/javascript; charset=utf-8"),
        _ => return UiError(Error::NotFound("asset")).into_response(),
    };
    ([(header::CONTENT_TYPE, ty), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

#[cfg(test)]
mod multipart_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn parts_are_read_up_to_the_closing_boundary() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\nplate\r\n\xe6\x99\x8bD1\r\n\r\n--XyZ--\r\n";
        let parts = super::multipart("multipart/form-data; boundary=\"XyZ\"", body);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0.as_str(), parts[0].1.as_deref(), parts[0].2), ("csrf", None, &b"tok"[..]));
        assert_eq!((parts[1].0.as_str(), parts[1].1.as_deref()), ("file", Some("a.csv")));
        assert_eq!(parts[1].2, "plate\r\n晋D1\r\n".as_bytes());
        assert!(super::multipart("multipart/form-data", body).is_empty());
        assert_eq!(super::multipart("multipart/form-data; boundary=XyZ", &body[..40]).len(), 0, "a cut-off head");
    }
}
