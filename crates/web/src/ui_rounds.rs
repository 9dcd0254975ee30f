//! Mass-screening pages: the rounds of the viewer's area with a form to open one and the pool
//! size recent positivity suggests; and each round's coverage — expected, sampled, resulted
//! per township and village, refreshed every minute — with the missing lists to export
//! (masked, or in full for those who may reveal; every export is audited).

use crate::AppState;
use crate::api_whitelist::xlsx_response;
use crate::i18n::Lang;
use crate::ui::{
    Cell, Field, Filter, FormCard, FormData, Shell, UiResult, Viewer, attach_errors, cell, form_of, link, local, parse_local, query_map, render,
};
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use baton_domain::Error;
use baton_domain::role::Permission;
use baton_domain::testing::Priority;
use baton_store::page::PageQuery;
use baton_store::rounds::{self, AreaCoverage, Plan, PlanQuery, Round};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new().route("/rounds", get(list_page).post(create)).route("/rounds/{id}", get(round_page)).route("/rounds/{id}/missing.xlsx", get(export))
}

/// One table of a page, drawn by `rows.html`.
pub struct Table {
    pub id: &'static str,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Template)]
#[template(path = "rounds_list.html")]
struct ListPage {
    shell: Shell,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
    plan: PlanView,
    forms: Vec<FormCard>,
}

#[derive(Template)]
#[template(path = "rounds_view.html")]
struct RoundPage {
    shell: Shell,
    facts: Vec<(String, String)>,
    total: AreaCoverage,
    percent: String,
    export_href: String,
    reveal_href: Option<String>,
    plan: PlanView,
    filters: Vec<Filter>,
    tables: Vec<Table>,
}

/// The planning figures as the pages show them.
struct PlanView {
    facts: Vec<(String, String)>,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn priority_options(lang: Lang) -> Vec<(String, String)> {
    Priority::ALL.iter().map(|p| (p.as_str().to_string(), p.label(lang.zh()).to_string())).collect()
}

fn state_label(state: &str, lang: Lang) -> &'static str {
    match state {
        "upcoming" => lang.t("rounds.upcoming"),
        "open" => lang.t("rounds.open"),
        _ => lang.t("rounds.closed"),
    }
}

fn plan_view(p: &Plan, lang: Lang) -> PlanView {
    let mut facts = vec![
        (lang.t("common.division").to_string(), format!("{} {}", p.area, p.area_name)),
        (lang.t("rounds.window").to_string(), format!("{} — {}", local(p.since), local(p.until))),
        (lang.t("rounds.tested").to_string(), p.tested.to_string()),
        (lang.t("rounds.positive_confirmed").to_string(), p.positive.to_string()),
        (lang.t("rounds.in_positive_pools").to_string(), p.in_positive_pools.to_string()),
        (lang.t("rounds.positivity").to_string(), p.positivity.map(|x| format!("{:.3}%", x * 100.0)).unwrap_or_else(|| lang.t("common.none").into())),
    ];
    if p.prevalence_source == "given"
        && let Some(x) = p.prevalence
    {
        facts.push((lang.t("rounds.prevalence_given").to_string(), format!("{:.3}%", x * 100.0)));
    }
    match (p.suggested, p.best) {
        (Some(s), Some(b)) => {
            facts.push((
                lang.t("rounds.suggested").to_string(),
                format!("{} · {:.3} {}", pool_text(s.pool_size, lang), s.tests_per_person, lang.t("rounds.tests_per_person")),
            ));
            facts.push((
                lang.t("rounds.best").to_string(),
                format!("{} · {:.3} {}", pool_text(b.pool_size, lang), b.tests_per_person, lang.t("rounds.tests_per_person")),
            ));
        }
        _ => facts.push((lang.t("rounds.suggested").to_string(), lang.t("rounds.no_results").to_string())),
    }
    if let (Some(n), Some(tubes), Some(tests)) = (p.to_sample, p.tubes_needed, p.tests_expected) {
        facts.push((lang.t("rounds.to_sample").to_string(), n.to_string()));
        facts.push((lang.t("rounds.tubes_needed").to_string(), format!("{tubes} · {} {tests:.0}", lang.t("rounds.tests_expected"))));
    }
    let rows = p
        .allowed
        .iter()
        .map(|c| {
            let mark = if p.suggested.is_some_and(|s| s.pool_size == c.pool_size) { " ✓" } else { "" };
            vec![cell(format!("{}{mark}", pool_text(c.pool_size, lang))), cell(format!("{:.3}", c.tests_per_person))]
        })
        .collect();
    PlanView { facts, columns: vec![lang.t("rounds.pool_size").to_string(), lang.t("rounds.tests_per_person").to_string()], rows }
}

fn pool_text(k: u32, lang: Lang) -> String {
    if k == 1 { lang.t("rounds.single").to_string() } else { format!("{k}{}", lang.pick("合1", "-in-1")) }
}

fn round_form(lang: Lang, f: Option<&FormData>) -> FormCard {
    let get = |n: &str| f.map(|f| f.get(n)).unwrap_or_default();
    let priority = Some(get("priority")).filter(|p| !p.is_empty()).unwrap_or_else(|| "routine".into());
    FormCard {
        id: "round-form",
        title: lang.t("rounds.new").into(),
        action: "/rounds".into(),
        fields: vec![
            Field::new("name", lang.t("common.name"), "text", get("name")),
            Field::new("area", lang.t("rounds.area"), "text", get("area")).hint(lang.pick(
                "全县、乡镇或村(社区)的代码或名称，如 140427 或 龙泉镇",
                "The county, a township or a village, by code or name, e.g. 140427 or 龙泉镇",
            )),
            Field::new("starts_at", lang.t("rounds.starts_at"), "datetime-local", get("starts_at")).hint(lang.pick("留空为现在", "Blank: now")),
            Field::new("due_at", lang.t("rounds.due_at"), "datetime-local", get("due_at"))
                .hint(lang.pick("留空按现行策略的筛查时限", "Blank: the policy's round duration")),
            Field::select("priority", lang.t("rounds.priority"), priority, priority_options(lang)),
        ],
        submit: lang.t("common.create").into(),
        note: None,
    }
}

async fn list_view(s: &AppState, v: &Viewer, failed: Option<(Error, &FormData)>) -> UiResult {
    let lang = v.lang;
    let list = rounds::list(&s.store, &v.who, &rounds::RoundFilter::default(), &PageQuery::largest()).await?.items;
    let rows = list
        .iter()
        .map(|r| {
            vec![
                link(&r.name, format!("/rounds/{}", r.id)),
                cell(format!("{} {}", r.area, r.area_name)),
                cell(format!("{} — {}", local(r.starts_at), local(r.due_at))),
                cell(r.priority.label(lang.zh())),
                cell(state_label(r.state, lang)),
            ]
        })
        .collect();
    let plan = rounds::plan(&s.store, &v.who, &PlanQuery::default()).await?;
    let mut shell = v.shell("nav.rounds");
    let mut forms = Vec::new();
    if v.who.can(Permission::TestingManage) {
        forms.push(round_form(lang, failed.as_ref().map(|(_, f)| *f)));
    }
    if let Some((e, _)) = &failed {
        attach_errors(&mut shell, &mut forms, e);
    }
    let page = ListPage {
        shell,
        columns: ["common.name", "rounds.area", "rounds.window", "rounds.priority", "user.status"].iter().map(|k| lang.t(k).to_string()).collect(),
        rows,
        plan: plan_view(&plan, lang),
        forms,
    };
    let status = if failed.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok((status, render(&page)).into_response())
}

async fn list_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    list_view(&s, &v, None).await
}

fn input_of(f: &FormData) -> Result<rounds::RoundInput, Error> {
    let time = |name: &str| {
        let x = f.get(name);
        if x.trim().is_empty() { Ok(None) } else { parse_local(name, &x).map(Some) }
    };
    Ok(rounds::RoundInput {
        name: f.get("name"),
        area: f.get("area"),
        starts_at: time("starts_at")?,
        due_at: time("due_at")?,
        priority: Some(f.get("priority")),
    })
}

async fn create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let result = match input_of(&f) {
        Ok(input) => rounds::create(&s.store, &v.who, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => Ok(Redirect::to(&format!("/rounds/{}", r.id)).into_response()),
        Err(e @ Error::Invalid(_)) => list_view(&s, &v, Some((e, &f))).await,
        Err(e) => Err(e.into()),
    }
}

fn coverage_row(a: &AreaCoverage, round: &Round, lang: Lang) -> Vec<Cell> {
    vec![
        cell(format!("{} {}", a.code, a.name)),
        cell(a.expected.to_string()),
        cell(a.sampled.to_string()),
        cell(a.resulted.to_string()),
        cell(a.positive.to_string()),
        cell(a.missing.to_string()),
        cell(percent(a.coverage)),
        if a.missing > 0 {
            link(lang.t("rounds.export_missing_short"), format!("/rounds/{}/missing.xlsx?village={}", round.id, a.code))
        } else {
            cell("")
        },
    ]
}

async fn round_page(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, RawQuery(q): RawQuery) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let g = |k: &str| qm.get(k).cloned().unwrap_or_default();
    let c = rounds::coverage(&s.store, &v.who, id).await?;
    let pq = PlanQuery {
        days: Some(g("days")).filter(|d| !d.trim().is_empty()).map(|d| d.trim().parse::<i64>().unwrap_or(0)),
        area: None,
        round_id: Some(id),
        prevalence: Some(g("prevalence"))
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().trim_end_matches('%').parse::<f64>().map(|x| x / 100.0).unwrap_or(f64::NAN)),
    };
    let mut shell = v.shell("nav.rounds");
    // A what-if the viewer mistyped: say so, and plan from the measured positivity.
    let plan = match rounds::plan(&s.store, &v.who, &pq).await {
        Ok(p) => p,
        Err(e @ Error::Invalid(_)) => {
            attach_errors(&mut shell, &mut [], &e);
            rounds::plan(&s.store, &v.who, &PlanQuery { round_id: Some(id), ..Default::default() }).await?
        }
        Err(e) => return Err(e.into()),
    };
    let r = &c.round;
    let facts = vec![
        (lang.t("rounds.area").to_string(), format!("{} {}", r.area, r.area_name)),
        (lang.t("rounds.window").to_string(), format!("{} — {}", local(r.starts_at), local(r.due_at))),
        (lang.t("rounds.priority").to_string(), r.priority.label(lang.zh()).to_string()),
        (lang.t("user.status").to_string(), state_label(r.state, lang).to_string()),
        (lang.t("rounds.as_of").to_string(), local(c.at)),
    ];
    let columns: Vec<String> = [
        "rounds.place",
        "rounds.expected",
        "rounds.sampled",
        "rounds.resulted",
        "rounds.positive",
        "rounds.missing",
        "rounds.coverage",
        "rounds.export_missing_short",
    ]
    .iter()
    .map(|k| lang.t(k).to_string())
    .collect();
    let mut tables = Vec::new();
    if !c.townships.is_empty() {
        tables.push(Table {
            id: "round-townships",
            title: lang.t("rounds.by_township").into(),
            columns: columns.clone(),
            rows: c.townships.iter().map(|a| coverage_row(a, r, lang)).collect(),
        });
    }
    tables.push(Table {
        id: "round-villages",
        title: lang.t("rounds.by_village").into(),
        columns,
        rows: c.villages.iter().map(|a| coverage_row(a, r, lang)).collect(),
    });
    let export_href = format!("/rounds/{id}/missing.xlsx");
    let reveal_href = v.who.can(Permission::PersonalReveal).then(|| format!("/rounds/{id}/missing.xlsx?reveal=true"));
    let filters = vec![
        Filter { name: "days", label: lang.t("rounds.days").into(), value: g("days"), kind: "number", options: vec![] },
        Filter { name: "prevalence", label: lang.t("rounds.prevalence_percent").into(), value: g("prevalence"), kind: "text", options: vec![] },
    ];
    shell.title = r.name.clone();
    Ok(render(&RoundPage {
        shell,
        facts,
        percent: percent(c.total.coverage),
        total: c.total.clone(),
        export_href,
        reveal_href,
        plan: plan_view(&plan, lang),
        filters,
        tables,
    }))
}

async fn export(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, RawQuery(q): RawQuery) -> UiResult {
    let qm = query_map(&q);
    let f = rounds::MissingQuery { village: qm.get("village").cloned(), reveal: qm.get("reveal").is_some_and(|r| r == "true" || r == "1") };
    let bytes = rounds::export_missing(&s.store, &v.who, id, &f).await?;
    Ok(xlsx_response(bytes, "missing.xlsx"))
}
