//! Risk-area pages: the areas in force (at a chosen time), their history, and for those who
//! maintain them a form to add or edit one, a paste-in import (CSV or JSON; xlsx files go
//! through `POST /api/v1/risk-areas/import`), and lifting.

use crate::AppState;
use crate::i18n::Lang;
use crate::ui::{
    Cell, Field, Filter, FormCard, FormData, TablePage, UiResult, Viewer, attach_errors, cell, code, form_of, local, next_page, parse_local,
    query_map, render,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_domain::risk::RiskLevel;
use baton_domain::role::Permission;
use baton_store::page::PageQuery;
use baton_store::risk_areas::{self, Area, ImportOptions};
use baton_store::sheet::Format;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/risk-areas", get(risk_page).post(risk_create))
        .route("/risk-areas/import", post(risk_import).layer(axum::extract::DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/risk-areas/lift", post(risk_lift))
        .route("/risk-areas/history", get(history_page))
}

fn level_options(lang: Lang) -> Vec<(String, String)> {
    RiskLevel::ALL.iter().map(|l| (l.as_str().to_string(), l.label(lang.zh()).to_string())).collect()
}

fn area_row(a: &Area, lang: Lang, with_history: bool) -> Vec<Cell> {
    let mut row = vec![
        cell(a.level.label(lang.zh())),
        cell(format!("{} {}", a.division_code, a.division_name)),
        cell(a.place.clone().unwrap_or_default()),
        cell(local(a.from)),
        cell(a.to.map(local).unwrap_or_else(|| lang.t("risk.until_lifted").to_string())),
    ];
    if with_history {
        row.push(cell(local(a.created_at)));
        row.push(cell(a.superseded_at.map(local).unwrap_or_else(|| lang.t("risk.current").to_string())));
        row.push(cell(format!("{} {}", a.source, a.note).trim().to_string()));
        row.push(cell(a.created_by.clone().unwrap_or_default()));
    }
    row
}

fn columns(lang: Lang, with_history: bool) -> Vec<String> {
    let mut keys = vec!["risk.level", "common.division", "risk.place", "risk.from", "risk.to"];
    if with_history {
        keys.extend(["risk.recorded", "risk.superseded", "risk.source", "audit.actor"]);
    }
    keys.iter().map(|k| lang.t(k).to_string()).collect()
}

/// What went wrong with which form, to show next to it.
struct Failed<'a> {
    error: Error,
    form: &'a FormData,
    which: &'static str,
}

async fn risk_view(s: &AppState, v: &Viewer, q: &Option<String>, failed: Option<Failed<'_>>) -> UiResult {
    let lang = v.lang;
    let qm = query_map(q);
    let at_text = qm.get("at").cloned().unwrap_or_default();
    let at: DateTime<Utc> = if at_text.trim().is_empty() { s.store.now() } else { parse_local("at", &at_text)? };
    let areas = risk_areas::in_force_at(&s.store, at).await?;
    let get = |which: &str, n: &str| failed.as_ref().filter(|f| f.which == which).map(|f| f.form.get(n)).unwrap_or_default();
    let mut forms = Vec::new();
    if v.who.can(Permission::RiskAreasWrite) {
        let level = Some(get("add", "level")).filter(|l| !l.is_empty()).unwrap_or_else(|| "high".into());
        forms.push(FormCard {
            id: "risk-form",
            title: lang.t("risk.new").into(),
            action: "/risk-areas".into(),
            fields: vec![
                Field::new("division", lang.t("common.division"), "text", get("add", "division"))
                    .hint(lang.pick("代码或名称，如 140105 或 太原市小店区", "Code or name, e.g. 140105 or 太原市小店区")),
                Field::new("place", lang.t("risk.place"), "text", get("add", "place"))
                    .hint(lang.pick("可选：区划内的具体地点，如某小区", "Optional: a named place inside the division, e.g. a compound")),
                Field::select("level", lang.t("risk.level"), level, level_options(lang)),
                Field::new("from", lang.t("risk.from"), "datetime-local", get("add", "from")),
                Field::new("to", lang.t("risk.to"), "datetime-local", get("add", "to")),
                Field::new("note", lang.t("policy.note"), "text", get("add", "note")),
            ],
            submit: lang.t("common.save").into(),
            note: Some(lang.t("risk.edit_note").into()),
        });
        let format = Some(get("import", "format")).filter(|f| !f.is_empty()).unwrap_or_else(|| "csv".into());
        forms.push(FormCard {
            id: "risk-import-form",
            title: lang.t("risk.import").into(),
            action: "/risk-areas/import".into(),
            fields: vec![
                Field::select("format", lang.t("risk.format"), format, vec![("csv".into(), "CSV".into()), ("json".into(), "JSON".into())]),
                Field::new("content", lang.t("risk.content"), "textarea", get("import", "content")),
                Field::new("source", lang.t("risk.source"), "text", get("import", "source")),
                Field::new("note", lang.t("policy.note"), "text", get("import", "note")),
                Field::new("replace", lang.t("risk.replace"), "checkbox", get("import", "replace")),
            ],
            submit: lang.t("risk.import").into(),
            note: Some(lang.t("risk.import_note").into()),
        });
        let current: Vec<(String, String)> = risk_areas::in_force_at(&s.store, s.store.now())
            .await?
            .iter()
            .map(|a| {
                let place = a.place.as_deref().map(|p| format!(" · {p}")).unwrap_or_default();
                (a.id.to_string(), format!("{} · {}{place} · {}", a.level.label(lang.zh()), a.division_name, local(a.from)))
            })
            .collect();
        if !current.is_empty() {
            forms.push(FormCard {
                id: "risk-lift-form",
                title: lang.t("risk.lift").into(),
                action: "/risk-areas/lift".into(),
                fields: vec![
                    Field::select("id", lang.t("nav.risk_areas"), get("lift", "id"), current),
                    Field::new("at", lang.t("risk.lift_at"), "datetime-local", get("lift", "at")).hint(lang.pick("留空为现在", "Blank: now")),
                    Field::new("note", lang.t("policy.note"), "text", get("lift", "note")),
                ],
                submit: lang.t("risk.lift").into(),
                note: None,
            });
        }
    }
    let mut shell = v.shell("nav.risk_areas");
    let mut rows: Vec<Vec<Cell>> = areas.iter().map(|a| area_row(a, lang, false)).collect();
    let mut cols = columns(lang, false);
    let status = match &failed {
        Some(f) => {
            // Only the failed form's errors go next to its fields.
            let i = match f.which {
                "add" => 0,
                "import" => 1,
                _ => 2,
            };
            let mut one: Vec<FormCard> = forms.drain(i.min(forms.len())..(i + 1).min(forms.len())).collect();
            attach_errors(&mut shell, &mut one, &f.error);
            for (k, card) in one.into_iter().enumerate() {
                forms.insert(i + k, card);
            }
            // An import's row errors are a table of their own: row, field, reason.
            if f.which == "import" && !f.error.fields().is_empty() {
                shell.error = Some(lang.t("risk.import_failed").into());
                cols = vec![lang.t("risk.where").into(), lang.t("risk.code").into(), lang.t("risk.reason").into()];
                rows = f.error.fields().iter().map(|e| vec![code(&e.field), code(e.code), cell(lang.pick(&e.zh, &e.en))]).collect();
            }
            StatusCode::UNPROCESSABLE_ENTITY
        }
        None => StatusCode::OK,
    };
    if qm.contains_key("saved") {
        shell.flash = Some(lang.t("common.saved").into());
    }
    let page = TablePage {
        shell,
        create_href: None,
        filters: vec![Filter { name: "at", label: lang.t("risk.at").into(), value: at_text, kind: "datetime-local", options: vec![] }],
        columns: cols,
        rows,
        more_href: Some("/risk-areas/history".into()),
        forms,
    };
    Ok((status, render(&page)).into_response())
}

async fn risk_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    risk_view(&s, &v, &q, None).await
}

fn opt_local(f: &FormData, name: &str) -> Result<Option<String>, Error> {
    let x = f.get(name);
    if x.trim().is_empty() { Ok(None) } else { parse_local(name, &x).map(|t| Some(t.to_rfc3339())) }
}

async fn risk_create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let parsed = (|| -> Result<risk_areas::AreaInput, Error> {
        Ok(risk_areas::AreaInput {
            division: f.get("division"),
            place: Some(f.get("place")),
            level: f.get("level"),
            from: opt_local(&f, "from")?.unwrap_or_default(),
            to: opt_local(&f, "to")?,
            note: Some(f.get("note")),
        })
    })();
    let result = match parsed {
        Ok(input) => risk_areas::create(&s.store, &v.who, &input).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/risk-areas?saved=1").into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => risk_view(&s, &v, &None, Some(Failed { error: e, form: &f, which: "add" })).await,
        Err(e) => Err(e.into()),
    }
}

async fn risk_import(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let format = if f.get("format") == "json" { Format::Json } else { Format::Csv };
    let opts = ImportOptions { source: f.get("source"), note: f.get("note"), replace: f.get("replace") == "on" };
    match risk_areas::import(&s.store, &v.who, format, f.get("content").as_bytes(), &opts).await {
        Ok(_) => Ok(Redirect::to("/risk-areas?saved=1").into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => risk_view(&s, &v, &None, Some(Failed { error: e, form: &f, which: "import" })).await,
        Err(e) => Err(e.into()),
    }
}

async fn risk_lift(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let parsed = (|| -> Result<(Uuid, risk_areas::LiftInput), Error> {
        let id = Uuid::parse_str(&f.get("id")).map_err(|_| Error::NotFound("risk_area"))?;
        Ok((id, risk_areas::LiftInput { at: opt_local(&f, "at")?, note: Some(f.get("note")) }))
    })();
    let result = match parsed {
        Ok((id, input)) => risk_areas::lift(&s.store, &v.who, id, &input).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/risk-areas?saved=1").into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => risk_view(&s, &v, &None, Some(Failed { error: e, form: &f, which: "lift" })).await,
        Err(e) => Err(e.into()),
    }
}

async fn history_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let division = qm.get("division").cloned().unwrap_or_default();
    let f = risk_areas::HistoryFilter { division: Some(division.clone()) };
    let page = risk_areas::history(&s.store, &f, &PageQuery::after(qm.get("cursor").cloned())).await?;
    let more_href = next_page("/risk-areas/history", &qm, page.next_cursor.as_ref());
    let list = page.items;
    let mut shell = v.shell("nav.risk_areas");
    shell.title = lang.t("risk.history").into();
    let page = TablePage {
        shell,
        create_href: None,
        filters: vec![Filter { name: "division", label: lang.t("common.division").into(), value: division, kind: "search", options: vec![] }],
        columns: columns(lang, true),
        rows: list.iter().map(|a| area_row(a, lang, true)).collect(),
        more_href,
        forms: vec![],
    };
    Ok(render(&page))
}
