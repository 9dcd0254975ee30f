//! The whitelist pages (白名单): the list with filters and an export link, a form to add an
//! entry, and each entry's page with its history and the review, status, fraud and reveal
//! forms. Import is through the API (`POST /api/v1/whitelist/import`).

use crate::AppState;
use crate::api_whitelist::xlsx_response;
use crate::i18n::Lang;
use crate::ui::{
    CHINA, Cell, Field, Filter, FormCard, FormData, FormPage, Shell, UiResult, Viewer, attach_errors, cell, form_of, link, local, parse_local,
    query_map, render,
};
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_domain::ident::PersonalKind;
use baton_domain::role::Permission;
use baton_domain::whitelist::{EntryKind, EventKind, Status, Tier};
use baton_store::page::PageQuery;
use baton_store::whitelist::{self, Entry, EntryFilter};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use std::collections::HashMap;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whitelist", get(list_page))
        .route("/whitelist/new", get(new_page).post(create))
        .route("/whitelist/export.xlsx", get(export))
        .route("/whitelist/{id}", get(entry_page))
        .route("/whitelist/{id}/review", post(review))
        .route("/whitelist/{id}/status", post(status))
        .route("/whitelist/{id}/fraud", post(fraud))
        .route("/whitelist/{id}/reveal", post(reveal))
}

#[derive(Template)]
#[template(path = "whitelist.html")]
struct ListPage {
    shell: Shell,
    create_href: Option<String>,
    filters: Vec<Filter>,
    export_href: String,
    reveal_href: Option<String>,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

#[derive(Template)]
#[template(path = "whitelist_entry.html")]
struct EntryPage {
    shell: Shell,
    details: Vec<(String, String)>,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
    forms: Vec<FormCard>,
}

fn all_option(lang: Lang) -> (String, String) {
    (String::new(), lang.pick("全部", "All").to_string())
}

fn kind_options(lang: Lang) -> Vec<(String, String)> {
    EntryKind::ALL.iter().map(|k| (k.as_str().to_string(), k.label(lang.zh()).to_string())).collect()
}

fn tier_options(lang: Lang) -> Vec<(String, String)> {
    Tier::ALL.iter().map(|k| (k.as_str().to_string(), k.label(lang.zh()).to_string())).collect()
}

fn status_options(lang: Lang) -> Vec<(String, String)> {
    Status::ALL.iter().map(|k| (k.as_str().to_string(), k.label(lang.zh()).to_string())).collect()
}

/// The status as shown: the label, the fraud flag, and why it does not count now.
fn status_text(e: &Entry, lang: Lang) -> String {
    let mut t = e.status.label(lang.zh()).to_string();
    if e.fraud {
        t.push_str(&format!(" · {}", lang.t("whitelist.fraud_flag")));
    }
    match e.problem {
        None => t.push_str(&format!(" · {}", lang.t("whitelist.counts"))),
        Some(p) if !matches!(p.as_str(), "pending_review" | "rejected" | "suspended" | "revoked" | "fraud") => {
            t.push_str(&format!(" · {}", p.label(lang.zh())))
        }
        Some(_) => {}
    }
    t
}

fn subject_text(e: &Entry) -> String {
    e.plate.clone().or_else(|| e.credit_code.clone()).or_else(|| e.id_number.clone()).unwrap_or_default()
}

async fn list_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    v.who.require(Permission::WhitelistRead)?;
    let lang = v.lang;
    let qm = query_map(&q);
    let g = |k: &str| qm.get(k).cloned().unwrap_or_default();
    let f = EntryFilter {
        kind: qm.get("kind").cloned(),
        status: qm.get("status").cloned(),
        tier: qm.get("tier").cloned(),
        fraud: None,
        q: qm.get("q").cloned(),
        plate: None,
        credit_code: None,
        id_number: qm.get("id_number").cloned(),
    };
    let list = whitelist::list(&s.store, &v.who, &f, &PageQuery::largest()).await?.items;
    let rows = list
        .iter()
        .map(|e| {
            vec![
                link(subject_text(e), format!("/whitelist/{}", e.id)),
                cell(e.kind.label(lang.zh())),
                cell(&e.name),
                cell(e.tier.label(lang.zh())),
                cell(e.phone.clone().unwrap_or_default()),
                cell(format!("{} — {}", local(e.valid_from), local(e.valid_until))),
                cell(status_text(e, lang)),
            ]
        })
        .collect();
    let with = |name: &'static str, key: &str, options: Vec<(String, String)>| {
        let mut o = vec![all_option(lang)];
        o.extend(options);
        Filter { name, label: lang.t(key).into(), value: g(name), kind: "text", options: o }
    };
    let filters = vec![
        Filter { name: "q", label: lang.t("whitelist.search").into(), value: g("q"), kind: "search", options: vec![] },
        with("kind", "common.kind", kind_options(lang)),
        with("status", "user.status", status_options(lang)),
        with("tier", "whitelist.tier", tier_options(lang)),
        Filter { name: "id_number", label: lang.t("user.id_number").into(), value: g("id_number"), kind: "text", options: vec![] },
    ];
    let params: Vec<(String, String)> =
        ["q", "kind", "status", "tier", "id_number"].iter().filter(|k| !g(k).is_empty()).map(|k| ((*k).to_string(), g(k))).collect();
    let export_href = format!("/whitelist/export.xlsx?{}", serde_urlencoded::to_string(&params).unwrap_or_default());
    let reveal_href = v.who.can(Permission::PersonalReveal).then(|| {
        let mut p = params.clone();
        p.push(("reveal".into(), "true".into()));
        format!("/whitelist/export.xlsx?{}", serde_urlencoded::to_string(&p).unwrap_or_default())
    });
    let columns = ["whitelist.subject", "common.kind", "whitelist.name", "whitelist.tier", "user.phone", "whitelist.validity", "user.status"]
        .iter()
        .map(|k| lang.t(k).to_string())
        .collect();
    Ok(render(&ListPage {
        shell: v.shell("nav.whitelist"),
        create_href: v.who.can(Permission::WhitelistWrite).then(|| "/whitelist/new".to_string()),
        filters,
        export_href,
        reveal_href,
        columns,
        rows,
    }))
}

async fn export(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let qm = query_map(&q);
    let f = EntryFilter {
        kind: qm.get("kind").cloned(),
        status: qm.get("status").cloned(),
        tier: qm.get("tier").cloned(),
        fraud: None,
        q: qm.get("q").cloned(),
        plate: None,
        credit_code: None,
        id_number: qm.get("id_number").cloned(),
    };
    let reveal = qm.get("reveal").is_some_and(|r| r == "true" || r == "1");
    let bytes = whitelist::export_xlsx(&s.store, &v.who, &f, reveal).await?;
    Ok(xlsx_response(bytes, "whitelist.xlsx"))
}

fn china_input(t: DateTime<Utc>) -> String {
    FixedOffset::east_opt(CHINA).map(|z| t.with_timezone(&z).format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default()
}

const ENTRY_FIELDS: &[&str] = &["kind", "tier", "name", "credit_code", "plate", "id_number", "phone", "valid_from", "valid_until", "note"];

fn entry_form(lang: Lang, vals: &HashMap<&str, String>) -> FormCard {
    let val = |k: &str| vals.get(k).cloned().unwrap_or_default();
    FormCard {
        id: "whitelist-form",
        title: lang.t("whitelist.new").into(),
        action: "/whitelist/new".into(),
        fields: vec![
            Field::select("kind", lang.t("common.kind"), val("kind"), kind_options(lang)),
            Field::select("tier", lang.t("whitelist.tier"), val("tier"), tier_options(lang)),
            Field::new("name", lang.t("whitelist.name"), "text", val("name"))
                .hint(lang.pick("企业名称、司机姓名，或车辆所有人(可空)", "Enterprise name, driver's name, or the vehicle's holder (optional)")),
            Field::new("credit_code", lang.t("whitelist.credit_code"), "text", val("credit_code")).hint(lang.pick("仅企业", "Enterprises only")),
            Field::new("plate", lang.t("whitelist.plate"), "text", val("plate"))
                .hint(lang.pick("仅车辆，如 晋D12345", "Vehicles only, e.g. 晋D12345")),
            Field::new("id_number", lang.t("user.id_number"), "text", val("id_number")).hint(lang.pick("仅司机", "Drivers only")),
            Field::new("phone", lang.t("user.phone"), "tel", val("phone")).hint(lang.pick("仅司机", "Drivers only")),
            Field::new("valid_from", lang.t("whitelist.valid_from"), "datetime-local", val("valid_from")),
            Field::new("valid_until", lang.t("whitelist.valid_until"), "datetime-local", val("valid_until")),
            Field::new("note", lang.t("policy.note"), "text", val("note")),
        ],
        submit: lang.t("common.create").into(),
        note: Some(lang.t("whitelist.review_note").into()),
    }
}

async fn new_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    v.who.require(Permission::WhitelistWrite)?;
    let now = s.store.now();
    let vals = HashMap::from([
        ("kind", "vehicle".to_string()),
        ("tier", "county".to_string()),
        ("valid_from", china_input(now)),
        ("valid_until", china_input(now + Duration::days(90))),
    ]);
    Ok(render(&FormPage { shell: v.shell("nav.whitelist"), forms: vec![entry_form(v.lang, &vals)] }))
}

fn entry_input(f: &FormData) -> Result<whitelist::EntryInput, Error> {
    let from = parse_local("valid_from", &f.get("valid_from"));
    let until = parse_local("valid_until", &f.get("valid_until"));
    let (valid_from, valid_until) = match (from, until) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let fields = [a.err(), b.err()].into_iter().flatten().flat_map(|e| e.fields().to_vec()).collect();
            return Err(Error::Invalid(fields));
        }
    };
    Ok(whitelist::EntryInput {
        kind: f.get("kind"),
        tier: f.get("tier"),
        name: f.get("name"),
        credit_code: f.get("credit_code"),
        plate: f.get("plate"),
        id_number: f.get("id_number"),
        phone: f.get("phone"),
        valid_from,
        valid_until,
        note: f.get("note"),
    })
}

async fn create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let result = match entry_input(&f) {
        Ok(input) => whitelist::create(&s.store, &v.who, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(e) => Ok(Redirect::to(&format!("/whitelist/{}?saved=1", e.entry.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let vals: HashMap<&str, String> = ENTRY_FIELDS.iter().map(|n| (*n, f.get(n))).collect();
            let mut forms = vec![entry_form(v.lang, &vals)];
            let mut shell = v.shell("nav.whitelist");
            attach_errors(&mut shell, &mut forms, &e);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

fn uuid_of(raw: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(raw).map_err(|_| Error::NotFound("whitelist entry"))
}

fn reason_field(lang: Lang) -> Field {
    Field::new("reason", lang.t("whitelist.reason"), "text", "").hint(lang.pick("每次变更都须填写原因", "Every change needs a reason"))
}

async fn entry_view(s: &AppState, v: &Viewer, id: Uuid, note: Option<String>, err: Option<Error>, flash: Option<String>) -> UiResult {
    let lang = v.lang;
    let d = whitelist::get(&s.store, &v.who, id).await?;
    let e = &d.entry;
    let none = || lang.t("common.none").to_string();
    let mut details = vec![
        (lang.t("common.kind").to_string(), e.kind.label(lang.zh()).to_string()),
        (lang.t("whitelist.name").to_string(), if e.name.is_empty() { none() } else { e.name.clone() }),
    ];
    match e.kind {
        EntryKind::Enterprise => details.push((lang.t("whitelist.credit_code").into(), e.credit_code.clone().unwrap_or_else(none))),
        EntryKind::Vehicle => details.push((lang.t("whitelist.plate").into(), e.plate.clone().unwrap_or_else(none))),
        EntryKind::Driver => {
            details.push((lang.t("user.id_number").into(), e.id_number.clone().unwrap_or_else(none)));
            details.push((lang.t("user.phone").into(), e.phone.clone().unwrap_or_else(none)));
        }
    }
    details.extend([
        (lang.t("whitelist.tier").to_string(), e.tier.label(lang.zh()).to_string()),
        (lang.t("whitelist.validity").to_string(), format!("{} — {}", local(e.valid_from), local(e.valid_until))),
        (lang.t("user.status").to_string(), status_text(e, lang)),
        (lang.t("policy.note").to_string(), if e.note.is_empty() { none() } else { e.note.clone() }),
        (lang.t("common.division").to_string(), e.jurisdiction.clone()),
        (lang.t("whitelist.created_by").to_string(), format!("{} · {}", e.created_by, local(e.created_at))),
    ]);
    let rows = d
        .history
        .iter()
        .map(|h| {
            let st = |x: &str| Status::parse(x).map(|s| s.label(lang.zh()).to_string()).unwrap_or_else(|| x.to_string());
            vec![
                cell(local(h.at)),
                cell(EventKind::parse(&h.kind).map(|k| k.label(lang.zh()).to_string()).unwrap_or_else(|| h.kind.clone())),
                cell(format!("{} → {}", st(&h.from), st(&h.to))),
                cell(&h.reason),
                cell(&h.actor),
            ]
        })
        .collect();
    let mut forms = Vec::new();
    if e.writable_by(&v.who) && e.status != Status::Revoked {
        if e.status == Status::PendingReview {
            forms.push(FormCard {
                id: "review-form",
                title: lang.t("whitelist.review").into(),
                action: format!("/whitelist/{id}/review"),
                fields: vec![
                    Field::select(
                        "decision",
                        lang.t("whitelist.decision"),
                        "approve",
                        vec![("approve".into(), lang.t("whitelist.approve").into()), ("reject".into(), lang.t("whitelist.reject").into())],
                    ),
                    reason_field(lang),
                ],
                submit: lang.t("whitelist.review").into(),
                note: None,
            });
        }
        let targets: Vec<(String, String)> = [Status::Active, Status::Suspended, Status::Revoked]
            .iter()
            .filter(|t| **t != e.status && (e.status != Status::PendingReview || **t == Status::Revoked))
            .filter(|t| e.status != Status::Rejected || **t == Status::Revoked)
            .map(|t| (t.as_str().to_string(), t.label(lang.zh()).to_string()))
            .collect();
        if !targets.is_empty() {
            forms.push(FormCard {
                id: "status-form",
                title: lang.t("whitelist.change_status").into(),
                action: format!("/whitelist/{id}/status"),
                fields: vec![Field::select("to", lang.t("user.status"), "", targets), reason_field(lang)],
                submit: lang.t("common.save").into(),
                note: None,
            });
        }
        let (flag, label) = if e.fraud { ("false", "whitelist.clear_fraud") } else { ("true", "whitelist.flag_fraud") };
        forms.push(FormCard {
            id: "fraud-form",
            title: lang.t(label).into(),
            action: format!("/whitelist/{id}/fraud"),
            fields: vec![Field::new("fraud", "", "hidden", flag), reason_field(lang)],
            submit: lang.t(label).into(),
            note: (!e.fraud).then(|| lang.t("whitelist.fraud_note").to_string()),
        });
    }
    if e.kind == EntryKind::Driver && v.who.can(Permission::PersonalReveal) {
        forms.push(FormCard {
            id: "reveal-form",
            title: lang.t("common.reveal").into(),
            action: format!("/whitelist/{id}/reveal"),
            fields: vec![
                Field::select(
                    "field",
                    lang.pick("字段", "Field"),
                    "id_number",
                    vec![("id_number".into(), lang.t("user.id_number").into()), ("phone".into(), lang.t("user.phone").into())],
                )
                .hint(lang.pick("查看完整信息会记入审计日志", "Revealing is recorded in the audit log")),
            ],
            submit: lang.t("common.reveal").into(),
            note,
        });
    }
    let mut shell = v.shell("nav.whitelist");
    shell.title = format!("{} {}", e.kind.label(lang.zh()), subject_text(e));
    shell.flash = flash;
    let status = if let Some(err) = &err {
        attach_errors(&mut shell, &mut forms, err);
        crate::error::status_of(err)
    } else {
        StatusCode::OK
    };
    let columns = ["common.time", "audit.action", "user.status", "whitelist.reason", "audit.actor"].iter().map(|k| lang.t(k).to_string()).collect();
    Ok((status, render(&EntryPage { shell, details, columns, rows, forms })).into_response())
}

async fn entry_page(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, RawQuery(q): RawQuery) -> UiResult {
    let id = uuid_of(&id)?;
    let flash = query_map(&q).contains_key("saved").then(|| v.lang.t("common.saved").to_string());
    entry_view(&s, &v, id, None, None, flash).await
}

/// Run a change from a form: back to the entry page, with the refusal shown if there is one.
async fn after_change(s: &AppState, v: &Viewer, id: Uuid, r: Result<whitelist::EntryDetail, Error>) -> UiResult {
    match r {
        Ok(_) => Ok(Redirect::to(&format!("/whitelist/{id}?saved=1")).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => entry_view(s, v, id, None, Some(e), None).await,
        Err(e) => Err(e.into()),
    }
}

async fn review(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, body: Bytes) -> UiResult {
    let id = uuid_of(&id)?;
    let f = form_of(&v, &body)?;
    let input = whitelist::ReviewInput { decision: f.get("decision"), reason: f.get("reason") };
    let r = whitelist::review(&s.store, &v.who, id, &input).await;
    after_change(&s, &v, id, r).await
}

async fn status(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, body: Bytes) -> UiResult {
    let id = uuid_of(&id)?;
    let f = form_of(&v, &body)?;
    let input = whitelist::StatusInput { to: f.get("to"), reason: f.get("reason") };
    let r = whitelist::change_status(&s.store, &v.who, id, &input).await;
    after_change(&s, &v, id, r).await
}

async fn fraud(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, body: Bytes) -> UiResult {
    let id = uuid_of(&id)?;
    let f = form_of(&v, &body)?;
    let input = whitelist::FraudInput { fraud: f.get("fraud") != "false", reason: f.get("reason") };
    let r = whitelist::flag_fraud(&s.store, &v.who, id, &input).await;
    after_change(&s, &v, id, r).await
}

async fn reveal(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, body: Bytes) -> UiResult {
    let id = uuid_of(&id)?;
    let f = form_of(&v, &body)?;
    let kind = if f.get("field") == "phone" { PersonalKind::Phone } else { PersonalKind::IdNumber };
    let value = whitelist::reveal(&s.store, &v.who, id, kind).await?;
    let label = v.lang.t(if kind == PersonalKind::Phone { "user.phone" } else { "user.id_number" });
    let note = format!("{label}: {}", value.unwrap_or_else(|| v.lang.t("common.none").into()));
    entry_view(&s, &v, id, Some(note), None, None).await
}
