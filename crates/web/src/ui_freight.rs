//! Freight loop pages, phone first: the checkpoint's check-in, the cargo owner's
//! pre-report, each party's trips with the one button they need next (accept, arrived,
//! departed, exit), the trip's whole custody chain, and the alerts to act on.

use crate::AppState;
use crate::i18n::Lang;
use crate::ui::{
    Field, Filter, FormCard, FormData, FormPage, TablePage, UiResult, Viewer, attach_errors, cell, form_of, link, local, next_page, parse_local,
    query_map, render,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_domain::alert::AlertEnd;
use baton_domain::classify::RiskExposure;
use baton_domain::role::{Permission, Permissions};
use baton_domain::trip::{BreachKind, ControlClass, HandoffPurpose, TripState};
use baton_domain::unit::UnitKind;
use baton_store::page::PageQuery;
use baton_store::{Principal, alerts, trips, units};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/trips", get(trips_page))
        .route("/trips/check-in", get(check_in_page).post(check_in_submit))
        .route("/trips/exit", get(exit_page).post(exit_submit))
        .route("/trips/report", get(report_page).post(report_submit))
        .route("/trips/import", get(import_page).post(import_submit).layer(axum::extract::DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/trips/{id}", get(trip_page))
        .route("/trips/{id}/act", post(trip_act))
        .route("/freight/dashboard", get(dashboard_page))
        .route("/alerts", get(alerts_page))
        .route("/alerts/act", post(alert_act))
        .route("/code/{token}", get(code_page))
        .route("/code/{token}/confirm", post(code_confirm))
}

fn state_label(s: &str, lang: Lang) -> String {
    TripState::parse(s).map(|x| x.label(lang.zh()).to_string()).unwrap_or_else(|| s.to_string())
}

fn class_label(s: Option<&str>, lang: Lang) -> String {
    s.and_then(ControlClass::parse).map(|x| x.label(lang.zh()).to_string()).unwrap_or_default()
}

/// Active units a truck can be bound for (receivers), as `who` may see them, each named with its kind.
pub(crate) async fn receivers(s: &AppState, who: &Principal, lang: Lang) -> Result<Vec<(units::Unit, String)>, Error> {
    let mut out = Vec::new();
    for kind in [UnitKind::CargoOwner, UnitKind::LogisticsPark, UnitKind::TruckServiceSite, UnitKind::KeyVenue] {
        let list = units::list(&s.store, who, &units::UnitFilter { kind: Some(kind.as_str().into()), q: None }).await?;
        out.extend(list.into_iter().filter(|u| u.active).map(|u| {
            let label = format!("{} ({})", u.name, kind.label(lang.zh()));
            (u, label)
        }));
    }
    Ok(out)
}

/// Units a truck can be bound for, county-wide (their names are not personal data).
async fn destinations(s: &AppState, v: &Viewer) -> Result<Vec<(String, String)>, Error> {
    let sys = Principal::system(&v.who.request_id);
    Ok(receivers(s, &sys, v.lang).await?.into_iter().map(|(u, label)| (u.id.to_string(), label)).collect())
}

/// Every active unit (for handoff receivers), named with its kind.
pub(crate) async fn all_units(s: &AppState, v: &Viewer) -> Result<Vec<(String, String)>, Error> {
    let sys = Principal::system(&v.who.request_id);
    let list = units::list(&s.store, &sys, &units::UnitFilter::default()).await?;
    Ok(list
        .into_iter()
        .filter(|u| u.active && u.kind != "village")
        .map(|u| (u.id.to_string(), format!("{} ({})", u.name, UnitKind::parse(&u.kind).map(|k| k.label(v.lang.zh())).unwrap_or(""))))
        .collect())
}

async fn unit_name(s: &AppState, id: Uuid) -> String {
    units::get(&s.store, &Principal::system("ui"), id).await.map(|u| u.name).unwrap_or_else(|_| id.to_string())
}

// ---------- list ----------

async fn trips_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let f = trips::TripFilter {
        state: qm.get("state").cloned(),
        plate: qm.get("plate").cloned().filter(|p| !p.is_empty()),
        mine: Some(qm.get("mine").map(|m| m == "1").unwrap_or(!v.who.can(Permission::TripsReport) || v.who.scope.kind() == "unit")),
        open: qm.get("open").map(|o| o == "1").or(Some(true)),
        ..Default::default()
    };
    let page = trips::list(&s.store, &v.who, &f, &PageQuery::after(qm.get("cursor").cloned())).await?;
    let more_href = next_page("/trips", &qm, page.next_cursor.as_ref());
    let list = page.items;
    let rows = list
        .iter()
        .map(|t| {
            vec![
                link(&t.plate, format!("/trips/{}", t.id)),
                cell(state_label(&t.state, lang)),
                cell(class_label(t.class.as_deref(), lang)),
                cell(&t.custodian_name),
                cell(&t.destination_name),
                cell(t.deadline_at.map(local).unwrap_or_default()),
            ]
        })
        .collect();
    let mut state_opts = vec![(String::new(), lang.pick("全部", "All").to_string())];
    state_opts.extend(TripState::ALL.iter().map(|x| (x.as_str().to_string(), x.label(lang.zh()).to_string())));
    let yn = |on: &str, off: &str| vec![("1".to_string(), on.to_string()), ("0".to_string(), off.to_string())];
    let mut shell = v.shell("nav.trips");
    if v.who.can(Permission::TripsCheckIn) {
        shell.flash = Some(
            lang.pick(
                "卡口登记：车辆到达后点“新建”；车辆驶离时在“出口核销”(/trips/exit)输入车牌。",
                "Checkpoint: tap Create when a truck arrives; when one leaves, enter its plate at Exit scan (/trips/exit).",
            )
            .to_string(),
        );
    } else if v.who.can(Permission::TripsReport) {
        shell.flash =
            Some(lang.pick("多辆车可在“批量报备”(/trips/import)一次上传。", "Many trucks at once: Batch pre-report (/trips/import).").to_string());
    }
    let page = TablePage {
        shell,
        create_href: if v.who.can(Permission::TripsCheckIn) {
            Some("/trips/check-in".into())
        } else if v.who.can(Permission::TripsReport) {
            Some("/trips/report".into())
        } else {
            None
        },
        filters: vec![
            Filter {
                name: "plate",
                label: lang.t("trip.plate").into(),
                value: qm.get("plate").cloned().unwrap_or_default(),
                kind: "search",
                options: vec![],
            },
            Filter { name: "state", label: lang.t("trip.state").into(), value: f.state.unwrap_or_default(), kind: "text", options: state_opts },
            Filter {
                name: "mine",
                label: lang.t("trip.mine").into(),
                value: if f.mine == Some(true) { "1" } else { "0" }.into(),
                kind: "text",
                options: yn(lang.t("trip.mine_yes"), lang.t("trip.mine_no")),
            },
            Filter {
                name: "open",
                label: lang.t("trip.open").into(),
                value: if f.open == Some(false) { "0" } else { "1" }.into(),
                kind: "text",
                options: yn(lang.t("trip.open_yes"), lang.t("trip.open_no")),
            },
        ],
        columns: ["trip.plate", "trip.state", "trip.class", "trip.custodian", "trip.destination", "trip.deadline"]
            .iter()
            .map(|k| lang.t(k).to_string())
            .collect(),
        rows,
        more_href,
        forms: vec![],
    };
    Ok(render(&page))
}

// ---------- check-in and report ----------

fn colour_options(lang: Lang) -> Vec<(String, String)> {
    vec![
        ("green".into(), lang.pick("绿码", "Green").into()),
        ("yellow".into(), lang.pick("黄码", "Yellow").into()),
        ("red".into(), lang.pick("红码", "Red").into()),
    ]
}

fn risk_options(lang: Lang) -> Vec<(String, String)> {
    vec![
        ("none".into(), lang.pick("无", "None").into()),
        ("low".into(), lang.pick("低风险地区", "Low-risk area").into()),
        ("medium".into(), lang.pick("中风险地区", "Medium-risk area").into()),
        ("high".into(), lang.pick("高风险地区", "High-risk area").into()),
    ]
}

async fn check_in_form(s: &AppState, v: &Viewer, f: Option<&FormData>) -> Result<FormCard, Error> {
    let lang = v.lang;
    let g = |n: &str| f.map(|f| f.get(n)).unwrap_or_default();
    let or = |n: &str, d: &str| if g(n).is_empty() { d.to_string() } else { g(n) };
    let in_hours = |h: i64| crate::ui::local_input(s.store.now() + chrono::Duration::hours(h));
    Ok(FormCard {
        id: "check-in-form",
        title: lang.t("trip.check_in").into(),
        action: "/trips/check-in".into(),
        fields: vec![
            Field::new("plate", lang.t("trip.plate"), "text", g("plate"))
                .hint(lang.pick("如 晋D12345；已报备车辆按车牌自动匹配", "e.g. 晋D12345; a pre-reported truck is found by its plate")),
            Field::new("trailer", lang.t("trip.trailer"), "text", g("trailer")),
            Field::select("destination_id", lang.t("trip.destination"), g("destination_id"), {
                let mut d = vec![(String::new(), lang.pick("(已报备车辆可不选)", "(optional for a pre-reported truck)").to_string())];
                d.extend(destinations(s, v).await?);
                d
            }),
            Field::new("eta", lang.t("trip.eta"), "datetime-local", or("eta", &in_hours(2))),
            Field::new("crew_name", lang.t("trip.crew_name"), "text", g("crew_name")),
            Field::new("crew_id_number", lang.t("user.id_number"), "text", g("crew_id_number")),
            Field::new("crew_phone", lang.t("user.phone"), "tel", g("crew_phone")),
            Field::select("crew_health_code", lang.t("trip.health_code"), or("crew_health_code", "green"), colour_options(lang)),
            Field::new("test_taken_at", lang.t("trip.test_taken_at"), "datetime-local", g("test_taken_at"))
                .hint(lang.pick("无核酸证明则留空", "leave blank if there is no certificate")),
            Field::new("itinerary", lang.t("trip.itinerary"), "textarea", g("itinerary")).hint(lang.pick(
                "每行一段：地点, 起, 止（如 太原市小店区, 2022-11-05, 2022-11-07 18:00），按当时的风险地区自动比对",
                "One stay a line: place, from, to (e.g. 太原市小店区, 2022-11-05, 2022-11-07 18:00); matched against the risk areas in force then",
            )),
            Field::select("risk", lang.t("trip.risk"), or("risk", "none"), risk_options(lang)),
            Field::new("antigen_positive", lang.t("trip.antigen_positive"), "checkbox", g("antigen_positive")),
            Field::new("landing_tube", lang.t("trip.landing_tube"), "text", g("landing_tube"))
                .hint(lang.pick("扫描或输入采样管条码", "scan or type the tube's barcode")),
        ],
        submit: lang.t("trip.check_in").into(),
        note: None,
    })
}

/// Itinerary lines `place, from, to` (a full-width comma works too); blank lines skipped.
fn itinerary_from(text: &str) -> Vec<baton_store::risk_areas::StayInput> {
    text.lines()
        .map(|l| l.replace('，', ","))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, ',').map(|p| p.trim().to_string());
            baton_store::risk_areas::StayInput {
                place: parts.next().unwrap_or_default(),
                from: parts.next().unwrap_or_default(),
                to: parts.next().unwrap_or_default(),
            }
        })
        .collect()
}

fn crew_from(f: &FormData, need_code: bool) -> Vec<trips::CrewInput> {
    let name = f.get("crew_name");
    let id = f.get("crew_id_number");
    if name.trim().is_empty() && id.trim().is_empty() {
        return vec![];
    }
    vec![trips::CrewInput { name, id_number: id, phone: f.get("crew_phone"), health_code: need_code.then(|| f.get("crew_health_code")) }]
}

/// Field errors on `crew[0].x` belong to the form's `crew_x`.
fn crew_fields(e: Error) -> Error {
    match e {
        Error::Invalid(fs) => Error::Invalid(
            fs.into_iter()
                .map(|f| {
                    if let Some(rest) = f.field.strip_prefix("crew[0].") {
                        let n = format!("crew_{rest}");
                        f.at(n)
                    } else {
                        f
                    }
                })
                .collect(),
        ),
        e => e,
    }
}

async fn check_in_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    v.who.require(Permission::TripsCheckIn)?;
    let form = check_in_form(&s, &v, None).await?;
    Ok(render(&FormPage { shell: v.shell("trip.check_in"), forms: vec![form] }))
}

async fn check_in_submit(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let parsed = (|| -> Result<trips::CheckInInput, Error> {
        let opt_time = |n: &str| if f.get(n).trim().is_empty() { Ok(None) } else { parse_local(n, &f.get(n)).map(Some) };
        let dest = f.get("destination_id");
        Ok(trips::CheckInInput {
            plate: f.get("plate"),
            trailer: Some(f.get("trailer")).filter(|t| !t.trim().is_empty()),
            destination_id: if dest.is_empty() {
                None
            } else {
                Some(Uuid::parse_str(&dest).map_err(|_| Error::field("destination_id", "unit_unknown", "目的地无效", "invalid destination"))?)
            },
            eta: parse_local("eta", &f.get("eta"))?,
            crew: crew_from(&f, true),
            test_taken_at: opt_time("test_taken_at")?,
            itinerary: itinerary_from(&f.get("itinerary")),
            risk: serde_json::from_value(serde_json::Value::String(f.get("risk"))).unwrap_or(RiskExposure::None),
            antigen_positive: f.get("antigen_positive") == "on",
            landing_tube: f.get("landing_tube"),
            trip_id: None,
        })
    })();
    let result = match parsed {
        Ok(input) => trips::check_in(&s.store, &v.who, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(t) => Ok(Redirect::to(&format!("/trips/{}?saved=1", t.trip.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let mut forms = vec![check_in_form(&s, &v, Some(&f)).await?];
            let mut shell = v.shell("trip.check_in");
            attach_errors(&mut shell, &mut forms, &crew_fields(e));
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The exit checkpoint's form: the departing truck's plate, scanned or typed.
fn exit_form(v: &Viewer, f: Option<&FormData>) -> FormCard {
    let lang = v.lang;
    FormCard {
        id: "exit-form",
        title: lang.t("trip.exit_scan").into(),
        action: "/trips/exit".into(),
        fields: vec![Field::new("plate", lang.t("trip.plate"), "text", f.map(|f| f.get("plate")).unwrap_or_default()).hint(lang.pick(
            "扫描或输入驶离车辆的车牌；无论从哪个卡口进入，任一卡口均可核销",
            "scan or type the departing truck's plate; any checkpoint can scan it out, wherever it came in",
        ))],
        submit: lang.t("trip.exit_scan").into(),
        note: None,
    }
}

async fn exit_page(v: Viewer) -> UiResult {
    v.who.require(Permission::TripsCheckIn)?;
    Ok(render(&FormPage { shell: v.shell("trip.exit_scan"), forms: vec![exit_form(&v, None)] }))
}

/// Close the loop of the plate's open trip, then show the trip (the checkpoint is a party now).
async fn exit_submit(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    v.who.require(Permission::TripsCheckIn)?;
    let f = form_of(&v, &body)?;
    match trips::exit_by_plate(&s.store, &v.who, &trips::ExitInput { plate: f.get("plate") }).await {
        Ok(t) => Ok(Redirect::to(&format!("/trips/{}?saved=1", t.trip.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let mut forms = vec![exit_form(&v, Some(&f))];
            let mut shell = v.shell("trip.exit_scan");
            attach_errors(&mut shell, &mut forms, &e);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn report_form(s: &AppState, v: &Viewer, f: Option<&FormData>) -> Result<FormCard, Error> {
    let lang = v.lang;
    let g = |n: &str| f.map(|f| f.get(n)).unwrap_or_default();
    let own = v.who.unit_id.map(|u| u.to_string()).unwrap_or_default();
    Ok(FormCard {
        id: "report-form",
        title: lang.t("trip.report").into(),
        action: "/trips/report".into(),
        fields: vec![
            Field::new("plate", lang.t("trip.plate"), "text", g("plate")),
            Field::new("trailer", lang.t("trip.trailer"), "text", g("trailer")),
            Field::select(
                "destination_id",
                lang.t("trip.destination"),
                if g("destination_id").is_empty() { own } else { g("destination_id") },
                destinations(s, v).await?,
            ),
            Field::new(
                "expected_at",
                lang.t("trip.expected_at"),
                "datetime-local",
                if g("expected_at").is_empty() { crate::ui::local_input(s.store.now() + chrono::Duration::hours(24)) } else { g("expected_at") },
            ),
            Field::new("crew_name", lang.t("trip.crew_name"), "text", g("crew_name")),
            Field::new("crew_id_number", lang.t("user.id_number"), "text", g("crew_id_number")),
            Field::new("crew_phone", lang.t("user.phone"), "tel", g("crew_phone")),
        ],
        submit: lang.t("trip.report").into(),
        note: None,
    })
}

async fn report_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    v.who.require(Permission::TripsReport)?;
    let form = report_form(&s, &v, None).await?;
    Ok(render(&FormPage { shell: v.shell("trip.report"), forms: vec![form] }))
}

async fn report_submit(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let parsed = (|| -> Result<trips::ReportInput, Error> {
        Ok(trips::ReportInput {
            plate: f.get("plate"),
            trailer: Some(f.get("trailer")).filter(|t| !t.trim().is_empty()),
            destination_id: Uuid::parse_str(&f.get("destination_id"))
                .map_err(|_| Error::field("destination_id", "required", "请选择目的地", "choose a destination"))?,
            expected_at: parse_local("expected_at", &f.get("expected_at"))?,
            crew: crew_from(&f, false),
        })
    })();
    let result = match parsed {
        Ok(input) => trips::report(&s.store, &v.who, &input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(t) => Ok(Redirect::to(&format!("/trips/{}?saved=1", t.trip.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let mut forms = vec![report_form(&s, &v, Some(&f)).await?];
            let mut shell = v.shell("trip.report");
            attach_errors(&mut shell, &mut forms, &crew_fields(e));
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&FormPage { shell, forms })).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- batch pre-report ----------

#[derive(askama::Template)]
#[template(path = "trip_import.html")]
struct ImportPage {
    shell: crate::ui::Shell,
    note: &'static str,
    columns: Vec<&'static str>,
    /// Spreadsheet row, column, reason.
    errors: Vec<(String, String, String)>,
    /// Plate and trip id of each imported row.
    imported: Vec<(String, Uuid)>,
}

fn import_page_of(v: &Viewer, errors: Vec<(String, String, String)>, imported: Vec<(String, Uuid)>) -> ImportPage {
    let lang = v.lang;
    ImportPage {
        shell: v.shell("import.title"),
        note: lang.pick(
            "每辆车一行：车牌号、挂车号、目的地单位(空则为本单位)、预计到达卡口时间、司机及随车人员；表头上方的标题行、序号列、空行和末尾的合计行会跳过，一次最多 100,000 行。任何一行有误则全部不导入，并按 Excel 行号列出错误(最多列出 1000 处，并给出总数)；重复上传不会重复报备。",
            "One row per truck: plate, trailer, destination unit (blank: your unit), time expected at a checkpoint, driver and second crew member; a title above the header, a 序号 column, blank rows and a total line at the end are passed over; up to 100,000 rows. If any row is wrong nothing is imported and the errors are listed by their Excel row (the first 1,000, with the total); uploading again does not report twice.",
        ),
        columns: vec![lang.pick("行", "Row"), lang.pick("列", "Column"), lang.pick("原因", "Reason")],
        errors,
        imported,
    }
}

async fn import_page(v: Viewer) -> UiResult {
    v.who.require(Permission::TripsReport)?;
    Ok(render(&import_page_of(&v, vec![], vec![])))
}

async fn import_submit(State(s): State<AppState>, v: Viewer, h: HeaderMap, body: Bytes) -> UiResult {
    let lang = v.lang;
    let ct = h.get(header::CONTENT_TYPE).and_then(|x| x.to_str().ok()).unwrap_or("");
    let parts = crate::ui::multipart(ct, &body);
    let csrf = parts.iter().find(|p| p.0 == "csrf").map(|p| String::from_utf8_lossy(p.2).to_string()).unwrap_or_default();
    if !crate::auth::constant_time_eq(csrf.as_bytes(), v.csrf.as_bytes()) {
        return Err(Error::conflict(
            "csrf_failed",
            "页面已过期或请求来源不明，请刷新后重试",
            "the form expired or the request's origin is unknown; reload and try again",
        )
        .into());
    }
    let file = parts.into_iter().find(|p| p.0 == "file" && !p.2.is_empty());
    let result = match file {
        None => Err(Error::field("file", "required", "请选择文件", "choose a file")),
        Some((_, name, bytes)) => {
            let xlsx = name.is_some_and(|n| n.to_ascii_lowercase().ends_with(".xlsx"));
            let format = if xlsx { baton_store::sheet::Format::Xlsx } else { baton_store::sheet::Format::Csv };
            baton_store::trip_import::import(&s.store, &v.who, format, bytes).await
        }
    };
    match result {
        Ok(r) => {
            let mut page = import_page_of(&v, vec![], r.trips.into_iter().map(|t| (t.plate, t.id)).collect());
            page.shell.flash = Some(lang.t("common.saved").to_string());
            Ok(render(&page))
        }
        Err(e @ Error::Invalid(_)) => {
            let errors = e
                .fields()
                .iter()
                .map(|f| {
                    let (row, col) = match f.field.strip_prefix("rows[").and_then(|r| r.split_once("].")) {
                        Some((n, c)) => (n.to_string(), c.to_string()),
                        None => (String::new(), f.field.clone()),
                    };
                    (row, col, lang.pick(&f.zh, &f.en).to_string())
                })
                .collect();
            let mut page = import_page_of(&v, errors, vec![]);
            page.shell.error = Some(lang.t("common.fix_errors").to_string());
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- one trip ----------

#[derive(askama::Template)]
#[template(path = "trip.html")]
struct TripPage {
    shell: crate::ui::Shell,
    state: &'static str,
    state_label: &'static str,
    class_label: &'static str,
    facts: Vec<(String, String)>,
    chain: Vec<(String, String)>,
    /// Per crew member: name, the code's link, its QR as a data URI.
    codes: Vec<(String, String, String)>,
    /// Stays at service sites: site, from → to.
    stays: Vec<(String, String)>,
    /// The responsibility ledger: party, name, duty, confirmation (or not).
    ledger: Vec<(String, String, String, String)>,
    /// Breaches: kind and time, the parties that had not confirmed then.
    breaches: Vec<(String, String)>,
    forms: Vec<FormCard>,
}

#[derive(askama::Template)]
#[template(path = "code.html")]
struct CodePage {
    shell: crate::ui::Shell,
    plate: String,
    class: &'static str,
    class_label: &'static str,
    colour_label: String,
    state: &'static str,
    state_label: &'static str,
    deadline: String,
    destination: String,
    custodian: String,
    instructions: Vec<&'static str>,
    /// The driver's own code may confirm the driver's duty (responsibility ledger).
    confirm_href: Option<String>,
    confirmed_at: Option<String>,
}

/// What a crew member must do, by class (the default measures of the Nov 2022 policy).
fn instructions(class: Option<ControlClass>, lang: Lang) -> Vec<&'static str> {
    let pairs: &[(&str, &str)] = match class {
        Some(ControlClass::Pass) => &[
            ("已完成落地采样，可直接驶往目的地（即采即走）。", "Your landing sample is taken: drive straight to your destination (sample and go)."),
            ("请在时限内到达目的地，途中不随意停留。", "Reach your destination by the deadline; do not stop on the way."),
        ],
        Some(ControlClass::ClosedLoop) => &[
            ("请跟随接返人员点对点前往目的地，全程不下车。", "Follow your escort point to point to the destination; stay in the cab."),
            ("装卸期间不与他人接触，完成后按时离开。", "Avoid contact while loading or unloading; leave by the deadline."),
            ("超时停留将转由属地社区管理。", "Staying past the limit hands you to the township's community management."),
        ],
        Some(ControlClass::Isolate) => &[
            ("请留在车内等待工作人员安排，不要自行离开。", "Stay in the cab and wait for staff; do not leave on your own."),
            (
                "货物将在转运场地换车，司乘人员将集中隔离或劝返。",
                "Cargo moves on at a transfer site; the crew goes to central quarantine or is turned back.",
            ),
        ],
        None => &[("请到卡口完成登记。", "Check in at the checkpoint.")],
    };
    pairs.iter().map(|(zh, en)| lang.pick(zh, en)).collect()
}

async fn code_page(State(s): State<AppState>, Path(token): Path<String>) -> UiResult {
    let lang = crate::middleware::req().lang;
    let v = trips::open_code(&s.store, &token).await?;
    let confirmed = if v.code.s == 0 { baton_store::ledger::driver_confirmed_at(&s.store, v.code.t).await? } else { None };
    let mut shell = crate::ui::shell_for(None, lang, "", &format!("/code/{token}"), lang.t("code.title").to_string());
    shell.title = v.plate.clone();
    let colour = v.code.h.as_deref().and_then(|c| colour_options(lang).into_iter().find(|(k, _)| k == c)).map(|(_, l)| l).unwrap_or_default();
    let page = CodePage {
        shell,
        class: v.class.map(|c| c.as_str()).unwrap_or(""),
        class_label: v.class.map(|c| c.label(lang.zh())).unwrap_or(""),
        colour_label: colour,
        state: v.state.as_str(),
        state_label: v.state.label(lang.zh()),
        deadline: v.deadline.map(|d| format!("{} · {}", local(d.at), d.kind.label(lang.zh()))).unwrap_or_else(|| lang.t("trip.closed").into()),
        destination: v.destination_name,
        custodian: v.custodian_name,
        instructions: instructions(v.class, lang),
        confirm_href: (v.code.s == 0 && v.deadline.is_some() && confirmed.is_none()).then(|| format!("/code/{token}/confirm")),
        confirmed_at: confirmed.map(local),
        plate: v.plate,
    };
    Ok(render(&page))
}

/// The driver confirms their duty by their own code; the code is the credential.
async fn code_confirm(State(s): State<AppState>, Path(token): Path<String>) -> UiResult {
    baton_store::ledger::confirm_by_code(&s.store, &token).await?;
    Ok(Redirect::to(&format!("/code/{token}")).into_response())
}

/// A QR code as an SVG data URI (allowed by the page's CSP: `img-src 'self' data:`).
fn qr_data_uri(text: &str) -> String {
    use base64::Engine as _;
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(q) => {
            let svg = q.render::<qrcode::render::svg::Color>().min_dimensions(160, 160).build();
            format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg))
        }
        Err(_) => String::new(),
    }
}

fn button(id: &'static str, title: String, action: String, act: &str, extra: Vec<Field>, submit: String) -> FormCard {
    let mut fields = vec![Field::new("action", "", "hidden", act)];
    fields.extend(extra);
    FormCard { id, title, action, fields, submit, note: None }
}

async fn trip_view(s: &AppState, v: &Viewer, id: Uuid, host: &str, err: Option<Error>, flash: Option<String>) -> UiResult {
    let lang = v.lang;
    let t = trips::get(&s.store, &v.who, id).await?;
    let trip = &t.trip;
    let me = v.who.unit_id;
    let mut facts: Vec<(String, String)> = Vec::new();
    let mut fact = |k: &str, val: String| facts.push((lang.t(k).to_string(), val));
    fact("trip.plate", format!("{}{}", trip.plate.as_str(), trip.trailer.as_ref().map(|p| format!(" / {}", p.as_str())).unwrap_or_default()));
    fact("trip.reasons", t.reasons.iter().map(|r| lang.pick(&r.zh, &r.en).to_string()).collect::<Vec<_>>().join("；"));
    fact("trip.custodian", unit_name(s, trip.custodian).await);
    fact("trip.destination", unit_name(s, trip.destination).await);
    fact(
        "trip.deadline",
        trip.deadline.map(|d| format!("{} · {}", local(d.at), d.kind.label(lang.zh()))).unwrap_or_else(|| lang.t("trip.closed").into()),
    );
    if let Some(p) = &trip.pending {
        fact(
            "trip.pending",
            format!(
                "→ {} · {}{} · {} {}",
                unit_name(s, p.to).await,
                p.purpose.label(lang.zh()),
                // A fallback escort says why the receiver's escort was passed over.
                p.fallback.map(|f| format!(" ({})", f.label(lang.zh()))).unwrap_or_default(),
                lang.t("trip.accept_by"),
                local(p.accept_by)
            ),
        );
    }
    fact("trip.landing_tube", t.landing_tube.clone().unwrap_or_default());
    let colour = |c: &str| colour_options(lang).into_iter().find(|(k, _)| k == c).map(|(_, l)| l).unwrap_or_default();
    fact(
        "trip.crew",
        t.crew
            .iter()
            .map(|c| format!("{} {} {}", c.name, c.id_number, colour(c.health_code.as_deref().unwrap_or(""))))
            .collect::<Vec<_>>()
            .join("；"),
    );
    fact("policy.version", format!("v{}", trip.policy_version));
    // The baton: who held it, from when to when.
    let mut chain = Vec::new();
    for span in &trip.chain {
        let until = span.to.map(local).unwrap_or_else(|| lang.t("trip.now").into());
        chain.push((unit_name(s, span.unit).await, format!("{} → {}", local(span.from), until)));
    }
    let mut forms = Vec::new();
    if !trip.is_closed() && v.who.can(Permission::TripsHandle) {
        let act = format!("/trips/{id}/act");
        if let Some(p) = &trip.pending {
            if Some(p.to) == me {
                forms.push(button("accept-form", lang.t("trip.accept").into(), act.clone(), "accept_handoff", vec![], lang.t("trip.accept").into()));
                forms.push(button(
                    "reject-form",
                    lang.t("trip.reject").into(),
                    act.clone(),
                    "reject_handoff",
                    vec![Field::new("reason", lang.t("whitelist.reason"), "text", "")],
                    lang.t("trip.reject").into(),
                ));
            }
            if Some(p.from) == me {
                forms.push(button(
                    "withdraw-form",
                    lang.t("trip.withdraw").into(),
                    act.clone(),
                    "withdraw_handoff",
                    vec![],
                    lang.t("trip.withdraw").into(),
                ));
            }
        }
        if Some(trip.destination) == me {
            match trip.state {
                TripState::CheckedIn | TripState::EscortAssigned => forms.push(button(
                    "arrival-form",
                    lang.t("trip.arrived").into(),
                    act.clone(),
                    "confirm_arrival",
                    vec![],
                    lang.t("trip.arrived").into(),
                )),
                TripState::AtDestination => forms.push(button(
                    "departure-form",
                    lang.t("trip.departed").into(),
                    act.clone(),
                    "confirm_departure",
                    vec![],
                    lang.t("trip.departed").into(),
                )),
                _ => {}
            }
        }
        let my_kind = match me {
            Some(u) => {
                units::get(&s.store, &Principal { permissions: Permissions::all(), ..v.who.clone() }, u).await.map(|u| u.kind).unwrap_or_default()
            }
            None => String::new(),
        };
        if my_kind == UnitKind::Checkpoint.as_str() && trip.state == TripState::Departed {
            forms.push(button("exit-form", lang.t("trip.exit_scan").into(), act.clone(), "exit_scan", vec![], lang.t("trip.exit_scan").into()));
        }
        if Some(trip.custodian) == me && trip.pending.is_none() {
            let purposes = HandoffPurpose::ALL.iter().map(|p| (p.as_str().to_string(), p.label(lang.zh()).to_string())).collect();
            // At the checkpoint the receiver's own escort is the one to hand to.
            let escort = match trip.state {
                TripState::CheckedIn => baton_store::escorts::escort_of(&s.store, trip.destination).await?.map(|e| e.to_string()).unwrap_or_default(),
                _ => String::new(),
            };
            forms.push(button(
                "handoff-form",
                lang.t("trip.handoff").into(),
                act.clone(),
                "propose_handoff",
                vec![
                    Field::select("to", lang.t("trip.handoff_to"), &escort, all_units(s, v).await?),
                    Field::select("purpose", lang.t("trip.purpose"), "escort", purposes),
                ],
                lang.t("trip.handoff").into(),
            ));
        }
    }
    let stays = t
        .site_stays
        .iter()
        .map(|x| (x.site_name.clone(), format!("{} → {}", local(x.arrived_at), x.left_at.map(local).unwrap_or_else(|| lang.t("trip.now").into()))))
        .collect();
    let book = baton_store::ledger::get(&s.store, &v.who, id).await?;
    let ledger = book
        .parties
        .iter()
        .map(|p| {
            let status = match (&p.confirmed_at, &p.confirmed_by) {
                (Some(at), by) => format!("{} {} {}", lang.t("ledger.confirmed"), local(*at), by.clone().unwrap_or_default()),
                (None, _) => lang.t("ledger.unconfirmed").to_string(),
            };
            (p.party.label(lang.zh()).to_string(), p.name.clone(), lang.pick(p.duty_zh, p.duty_en).to_string(), status)
        })
        .collect();
    let breaches = book
        .breaches
        .iter()
        .map(|b| {
            let kind = BreachKind::parse(&b.kind).map(|k| k.label(lang.zh()).to_string()).unwrap_or_else(|| b.kind.clone());
            let who = if b.unconfirmed.is_empty() {
                lang.t("ledger.all_confirmed").to_string()
            } else {
                format!("{}：{}", lang.t("ledger.unconfirmed"), b.unconfirmed.iter().map(|p| p.label(lang.zh())).collect::<Vec<_>>().join("、"))
            };
            (format!("{} · {}", kind, local(b.raised_at)), who)
        })
        .collect();
    if !trip.is_closed() && v.who.can(Permission::TripsHandle) {
        for p in book.parties.iter().filter(|p| p.unit_id.is_some() && p.unit_id == me && p.confirmed_at.is_none()) {
            forms.push(button(
                "confirm-form",
                format!("{} · {}", lang.t("ledger.confirm"), p.party.label(lang.zh())),
                format!("/trips/{id}/act"),
                "confirm",
                vec![Field::new("party", "", "hidden", p.party.as_str())],
                lang.t("ledger.confirm").into(),
            ));
        }
    }
    let mut shell = v.shell("nav.trips");
    shell.title = format!("{} · {}", lang.t("nav.trips"), trip.plate.as_str());
    shell.flash = flash;
    let status = match &err {
        Some(e) => {
            attach_errors(&mut shell, &mut forms, e);
            StatusCode::from_u16(crate::error::status_of(e).as_u16()).unwrap_or(StatusCode::CONFLICT)
        }
        None => StatusCode::OK,
    };
    let scheme = if s.config.secure_cookies { "https" } else { "http" };
    let codes = t
        .crew
        .iter()
        .filter_map(|c| c.code.as_ref().map(|code| (c.name.clone(), format!("{scheme}://{host}/code/{code}"))))
        .map(|(name, url)| {
            let qr = qr_data_uri(&url);
            (name, url, qr)
        })
        .collect();
    let page = TripPage {
        shell,
        codes,
        state: trip.state.as_str(),
        state_label: trip.state.label(lang.zh()),
        class_label: trip.class.map(|c| c.label(lang.zh())).unwrap_or(""),
        facts,
        chain,
        stays,
        ledger,
        breaches,
        forms,
    };
    Ok((status, render(&page)).into_response())
}

fn host_of(h: &HeaderMap) -> String {
    h.get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b)))
        .unwrap_or("localhost")
        .to_string()
}

async fn trip_page(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, RawQuery(q): RawQuery, h: HeaderMap) -> UiResult {
    let flash = query_map(&q).contains_key("saved").then(|| v.lang.t("common.saved").to_string());
    trip_view(&s, &v, id, &host_of(&h), None, flash).await
}

async fn trip_act(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, h: HeaderMap, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let action = f.get("action");
    let mut json = serde_json::json!({"action": action});
    match action.as_str() {
        "propose_handoff" => {
            json["to"] = serde_json::json!(f.get("to"));
            json["purpose"] = serde_json::json!(f.get("purpose"));
        }
        "reject_handoff" | "turn_back" | "cancel" => json["reason"] = serde_json::json!(f.get("reason")),
        _ => {}
    }
    let done = if action == "confirm" {
        baton_store::ledger::confirm(&s.store, &v.who, id, &f.get("party")).await.map(|_| ())
    } else {
        trips::act(&s.store, &v.who, id, json).await.map(|_| ())
    };
    match done {
        Ok(()) => Ok(Redirect::to(&format!("/trips/{id}?saved=1")).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => trip_view(&s, &v, id, &host_of(&h), Some(e), None).await,
        Err(e) => Err(e.into()),
    }
}

// ---------- dashboard ----------

/// A dashboard table: export name, title, columns, rows.
type StatsTable = (&'static str, String, Vec<String>, Vec<Vec<String>>);

#[derive(askama::Template)]
#[template(path = "freight_dashboard.html")]
struct DashboardPage {
    shell: crate::ui::Shell,
    tables: Vec<StatsTable>,
}

async fn dashboard_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    let lang = v.lang;
    let st = baton_store::freight_stats::stats(&s.store, &v.who).await?;
    let counts = |name: &'static str, key: &str, list: &[baton_store::freight_stats::Count]| -> StatsTable {
        let rows = list.iter().map(|c| vec![lang.pick(&c.label_zh, &c.label_en).to_string(), c.count.to_string()]).collect();
        (name, lang.t(key).to_string(), vec![lang.t(key).to_string(), lang.t("stats.count").to_string()], rows)
    };
    let handoffs = st
        .handoff_times
        .iter()
        .map(|h| {
            let p = HandoffPurpose::parse(&h.purpose).map(|p| p.label(lang.zh()).to_string()).unwrap_or_else(|| h.purpose.clone());
            vec![p, h.receiver.clone(), h.accepted.to_string(), format!("{:.1}", h.avg_minutes), format!("{:.1}", h.max_minutes)]
        })
        .collect();
    let closure = st
        .closure_by_class
        .iter()
        .map(|c| {
            vec![lang.pick(&c.label_zh, &c.label_en).to_string(), c.checked_in.to_string(), c.closed.to_string(), format!("{:.1}%", c.rate * 100.0)]
        })
        .collect();
    let links = st
        .link_times
        .iter()
        .map(|l| {
            vec![
                lang.pick(&l.label_zh, &l.label_en).to_string(),
                l.spans.to_string(),
                format!("{:.1}", l.avg_minutes),
                format!("{:.1}", l.max_minutes),
            ]
        })
        .collect();
    let tables = vec![
        (
            "closure_by_class",
            lang.t("stats.closure").to_string(),
            vec![
                lang.t("stats.by_class").to_string(),
                lang.t("stats.checked_in").to_string(),
                lang.t("stats.closed").to_string(),
                lang.t("stats.rate").to_string(),
            ],
            closure,
        ),
        counts("open_by_state", "stats.by_state", &st.open_by_state),
        counts("open_by_class", "stats.by_class", &st.open_by_class),
        counts("open_by_checkpoint", "stats.by_checkpoint", &st.open_by_checkpoint),
        counts("open_by_township", "stats.by_township", &st.open_by_township),
        counts("breaches_by_kind", "stats.breaches_by_kind", &st.breaches_by_kind),
        counts("breaches_by_unit", "stats.breaches_by_unit", &st.breaches_by_unit),
        (
            "handoff_times",
            lang.t("stats.handoffs").to_string(),
            vec![
                lang.t("trip.purpose").to_string(),
                lang.t("trip.handoff_to").to_string(),
                lang.t("stats.count").to_string(),
                lang.t("stats.avg_minutes").to_string(),
                lang.t("stats.max_minutes").to_string(),
            ],
            handoffs,
        ),
        (
            "link_times",
            lang.t("stats.links").to_string(),
            vec![
                lang.t("stats.holder").to_string(),
                lang.t("stats.spans").to_string(),
                lang.t("stats.avg_minutes").to_string(),
                lang.t("stats.max_minutes").to_string(),
            ],
            links,
        ),
    ];
    Ok(render(&DashboardPage { shell: v.shell("stats.title"), tables }))
}

// ---------- alerts ----------

async fn alerts_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    alerts_view(&s, &v, q, None).await
}

async fn alerts_view(s: &AppState, v: &Viewer, q: Option<String>, err: Option<Error>) -> UiResult {
    let lang = v.lang;
    let qm = query_map(&q);
    let open = qm.get("open").map(|o| o == "1").unwrap_or(true);
    let page =
        alerts::list(&s.store, &v.who, &alerts::AlertFilter { open: Some(open), ..Default::default() }, &PageQuery::after(qm.get("cursor").cloned()))
            .await?;
    let more_href = next_page("/alerts", &qm, page.next_cursor.as_ref());
    let list = page.items;
    let stopped = |why: Option<&str>| why.map(|w| format!(" · {} ({w})", lang.t("alert.stopped"))).unwrap_or_default();
    let level = |l: i64| match l {
        0 => lang.t("alert.level0"),
        1 => lang.t("alert.level1"),
        _ => lang.t("alert.level2"),
    };
    let rows = list
        .iter()
        .map(|a| {
            vec![
                link(&a.plate, a.href()),
                cell(BreachKind::parse(&a.kind).map(|k| k.label(lang.zh()).to_string()).unwrap_or_else(|| a.kind.clone())),
                cell(local(a.due_at)),
                cell(&a.custodian_name),
                cell(format!("{} · {}", level(a.level), a.recipient_name)),
                cell({
                    // Ended by the system: why (the link mended, the trip over, merged above).
                    let ended = a.stop_reason.as_deref().and_then(AlertEnd::parse).map(|e| e.label(lang.zh()));
                    match (&a.resolved_at, &a.acknowledged_at, ended) {
                        (Some(r), _, Some(why)) => format!("{} {} · {}", lang.t("alert.resolved"), local(*r), why),
                        (Some(r), _, None) => format!("{} {} · {}", lang.t("alert.resolved"), local(*r), a.note),
                        (None, Some(k), why) => format!("{} {}{}", lang.t("alert.acknowledged"), local(*k), stopped(why)),
                        (None, None, why) => format!("{}{}", lang.t("alert.new"), stopped(why)),
                    }
                }),
            ]
        })
        .collect();
    let mut forms = Vec::new();
    let pending: Vec<(String, String)> = list
        .iter()
        .filter(|a| a.resolved_at.is_none())
        .map(|a| (a.id.to_string(), format!("{} · {}", a.plate, BreachKind::parse(&a.kind).map(|k| k.label(lang.zh())).unwrap_or(""))))
        .collect();
    if v.who.can(Permission::AlertsHandle) && !pending.is_empty() {
        forms.push(FormCard {
            id: "alert-form",
            title: lang.t("alert.handle").into(),
            action: "/alerts/act".into(),
            fields: vec![
                Field::select("id", lang.t("nav.alerts"), "", pending),
                Field::select(
                    "do",
                    lang.t("common.actions"),
                    "acknowledge",
                    vec![("acknowledge".into(), lang.t("alert.acknowledge").into()), ("resolve".into(), lang.t("alert.resolve").into())],
                ),
                Field::new("note", lang.t("alert.note"), "text", ""),
            ],
            submit: lang.t("common.save").into(),
            note: None,
        });
    }
    let mut shell = v.shell("nav.alerts");
    if let Some(e) = &err {
        attach_errors(&mut shell, &mut forms, e);
    }
    let yn = vec![("1".to_string(), lang.t("alert.open").to_string()), ("0".to_string(), lang.t("alert.resolved").to_string())];
    let page = TablePage {
        shell,
        create_href: None,
        filters: vec![Filter {
            name: "open",
            label: lang.t("trip.open").into(),
            value: if open { "1" } else { "0" }.into(),
            kind: "text",
            options: yn,
        }],
        columns: ["trip.plate", "alert.kind", "alert.due", "trip.custodian", "alert.recipient", "alert.status"]
            .iter()
            .map(|k| lang.t(k).to_string())
            .collect(),
        rows,
        more_href,
        forms,
    };
    Ok(render(&page))
}

async fn alert_act(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let id = Uuid::parse_str(&f.get("id")).map_err(|_| Error::NotFound("alert"))?;
    let r = if f.get("do") == "resolve" {
        alerts::resolve(&s.store, &v.who, id, &f.get("note")).await
    } else {
        alerts::acknowledge(&s.store, &v.who, id).await
    };
    match r {
        Ok(_) => Ok(Redirect::to("/alerts").into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => alerts_view(&s, &v, None, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}
