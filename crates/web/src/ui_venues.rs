//! Venue pages: the venues in scope (and a new one), a venue's door — scan a code (typed or
//! pasted when the camera fails) and the answer at once — with its visit log, the printable
//! venue-code poster, and the exposure search (persons at the same venues, trucks at the same
//! service sites) with its tracing-request export and the marking of companions.

use crate::AppState;
use crate::ui::{Cell, Field, Filter, FormCard, TablePage, UiResult, Viewer, attach_errors, cell, form_of, link, local, query_map, render};
use crate::ui_codes::{colour_css, qr};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use baton_domain::Error;
use baton_domain::code::VenueKind;
use baton_domain::role::Permission;
use baton_store::page::PageQuery;
use baton_store::{exposure, venues};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/venues", get(list_page).post(create))
        .route("/venues/{id}", get(venue_page))
        .route("/venues/{id}/scan", axum::routing::post(scan))
        .route("/venues/{id}/poster", get(poster))
        .route("/v/{id}", get(public_page).post(public_confirm))
        .route("/exposure", get(exposure_page).post(mark_companions))
}

fn kind_options(lang: crate::i18n::Lang) -> Vec<(String, String)> {
    VenueKind::ALL.iter().map(|k| (k.as_str().to_string(), k.label(lang.zh()).to_string())).collect()
}

async fn list_view(s: &AppState, v: &Viewer, err: Option<Error>) -> UiResult {
    let lang = v.lang;
    let list = venues::list(&s.store, &v.who, &PageQuery::largest()).await?.items;
    let mut shell = v.shell("venue.list_title");
    let rows: Vec<Vec<Cell>> = list
        .iter()
        .map(|x| {
            vec![link(x.name.clone(), format!("/venues/{}", x.id)), cell(x.kind.label(lang.zh())), cell(x.place.clone()), cell(x.address.clone())]
        })
        .collect();
    let mut forms = Vec::new();
    if v.who.can(Permission::VenuesWrite) {
        forms.push(FormCard {
            id: "venue-form",
            title: lang.t("venue.create").into(),
            action: "/venues".into(),
            fields: vec![
                Field::new("name", lang.t("venue.name"), "text", ""),
                Field::select("kind", lang.t("venue.kind"), "market", kind_options(lang)),
                Field::new("division", lang.t("common.division"), "text", ""),
                Field::new("address", lang.t("venue.address"), "text", ""),
                Field::new("unit_id", lang.t("venue.unit"), "text", "").hint(lang.t("venue.unit_hint")),
            ],
            submit: lang.t("common.create").into(),
            note: None,
        });
    }
    if let Some(e) = &err {
        attach_errors(&mut shell, &mut forms, e);
    }
    let page = TablePage {
        shell,
        create_href: None,
        filters: vec![],
        columns: ["venue.name", "venue.kind", "common.division", "venue.address"].iter().map(|k| lang.t(k).to_string()).collect(),
        rows,
        more_href: None,
        forms,
    };
    Ok(render(&page))
}

async fn list_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    list_view(&s, &v, None).await
}

async fn create(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let unit = f.get("unit_id");
    let unit_id = match unit.trim() {
        "" => None,
        u => match Uuid::parse_str(u) {
            Ok(x) => Some(x),
            Err(_) => return list_view(&s, &v, Some(Error::field("unit_id", "invalid", "单位编号格式有误", "not a unit id"))).await,
        },
    };
    let input =
        venues::VenueInput { name: f.get("name"), kind: f.get("kind"), address: Some(f.get("address")), division: Some(f.get("division")), unit_id };
    match venues::create(&s.store, &v.who, &input).await {
        Ok(x) => Ok(Redirect::to(&format!("/venues/{}", x.id)).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => list_view(&s, &v, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}

struct Answer {
    css: &'static str,
    admission: &'static str,
    colour: &'static str,
    colour_label: &'static str,
    label: &'static str,
    name: String,
    at: String,
    replayed: bool,
}

fn answer_of(a: venues::ScanAnswer, lang: crate::i18n::Lang) -> Answer {
    Answer {
        css: colour_css(a.colour),
        admission: a.admission.as_str(),
        colour: a.colour.as_str(),
        colour_label: a.colour.label(lang.zh()),
        label: a.admission.label(lang.zh()),
        name: a.name_masked,
        at: local(a.at),
        replayed: a.replayed,
    }
}

#[derive(askama::Template)]
#[template(path = "venue.html")]
struct VenuePage {
    shell: crate::ui::Shell,
    id: Uuid,
    kind: &'static str,
    place: String,
    can_scan: bool,
    answer: Option<Answer>,
    /// (at, name, colour, admission code, admission label)
    visits: Vec<(String, String, &'static str, &'static str, &'static str)>,
}

async fn venue_view(s: &AppState, v: &Viewer, id: Uuid, answer: Option<Answer>, err: Option<Error>) -> UiResult {
    let lang = v.lang;
    let x = venues::get(&s.store, &v.who, id).await?;
    let visits = venues::visits(&s.store, &v.who, id, &PageQuery { limit: Some(50), cursor: None }).await?.items;
    let mut shell = v.shell("venue.list_title");
    shell.title = x.name.clone();
    if let Some(e) = err {
        shell.error = Some(e.message(lang.zh()));
    }
    let page = VenuePage {
        shell,
        id,
        kind: x.kind.label(lang.zh()),
        place: x.place,
        can_scan: v.who.can(Permission::VenuesScan),
        answer,
        visits: visits
            .iter()
            .map(|w| (local(w.at), w.name_masked.clone(), w.colour.label(lang.zh()), w.admission.as_str(), w.admission.label(lang.zh())))
            .collect(),
    };
    Ok(render(&page))
}

async fn venue_page(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>) -> UiResult {
    venue_view(&s, &v, id, None, None).await
}

async fn scan(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let lang = v.lang;
    match venues::scan(&s.store, &v.who, id, &venues::ScanInput { token: f.get("token") }).await {
        Ok(a) => venue_view(&s, &v, id, Some(answer_of(a, lang)), None).await,
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => venue_view(&s, &v, id, None, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(askama::Template)]
#[template(path = "venue_poster.html")]
struct PosterPage {
    shell: crate::ui::Shell,
    qr: String,
    url: String,
    place: String,
}

#[derive(askama::Template)]
#[template(path = "venue_public.html")]
struct PublicPage {
    shell: crate::ui::Shell,
    id: Uuid,
    kind: &'static str,
    place: String,
    answer: Option<Answer>,
    /// The form token when the visit waits for the resident's confirmation.
    confirm: Option<String>,
    /// No person remembered on this phone: open the code link first.
    fallback: bool,
}

/// The form token of the confirmation on a venue's public page: bound to the remembered link.
fn confirm_token(s: &AppState, link: &str) -> String {
    hex::encode(s.store.vault.blind_index("venue_confirm", link)).chars().take(32).collect()
}

/// The poster's QR opens this page on the resident's own phone, without an account. With a
/// person remembered (`ui_codes::ME_COOKIE`), the visit is registered and answered at once;
/// when the page was opened from another site (`Sec-Fetch-Site`), the resident confirms first,
/// so that no other site can register visits in their name. Without one: open the link first.
async fn public_page(State(s): State<AppState>, Path(id): Path<Uuid>, h: HeaderMap) -> UiResult {
    let link = crate::middleware::cookie(&h, crate::ui_codes::ME_COOKIE).unwrap_or("").to_string();
    let from_elsewhere = h.get("sec-fetch-site").and_then(|x| x.to_str().ok()).is_some_and(|x| x == "cross-site" || x == "same-site");
    if link.is_empty() {
        return public_view(&s, id, None, None, None).await;
    }
    if from_elsewhere {
        return public_view(&s, id, None, Some(confirm_token(&s, &link)), None).await;
    }
    public_visit(&s, id, &link).await
}

async fn public_confirm(State(s): State<AppState>, Path(id): Path<Uuid>, h: HeaderMap, body: Bytes) -> UiResult {
    let f = crate::ui::FormData::parse(&body)?;
    let link = crate::middleware::cookie(&h, crate::ui_codes::ME_COOKIE).unwrap_or("").to_string();
    if link.is_empty() {
        return public_view(&s, id, None, None, None).await;
    }
    if !crate::auth::constant_time_eq(f.get("confirm").as_bytes(), confirm_token(&s, &link).as_bytes()) {
        let e = Error::conflict(
            "csrf_failed",
            "页面已过期或请求来源不明，请重新扫描场所码",
            "the page expired or the request's origin is unknown; scan the venue code again",
        );
        return Ok((StatusCode::CONFLICT, public_view(&s, id, None, None, Some(e)).await?).into_response());
    }
    public_visit(&s, id, &link).await
}

async fn public_visit(s: &AppState, id: Uuid, link: &str) -> UiResult {
    let lang = crate::middleware::req().lang;
    match venues::visit_by_link(&s.store, id, link).await {
        Ok(a) => public_view(s, id, Some(answer_of(a, lang)), None, None).await,
        // A link that no longer opens (expired, another county's, a person no longer known) is forgotten.
        Err(e @ Error::Conflict { .. }) if e.code().starts_with("code_") || e.code() == "person_unknown" => {
            let stale = Error::conflict(
                "link_stale",
                "本机记住的健康码链接已失效，请重新打开发给您的链接",
                "the code link this phone remembered no longer opens; open the link you were sent again",
            );
            let page = public_view(s, id, None, None, Some(stale)).await?;
            let forget = crate::ui_codes::me_cookie("", s.config.secure_cookies, 0);
            Ok((StatusCode::CONFLICT, [(axum::http::header::SET_COOKIE, forget)], page).into_response())
        }
        Err(e @ Error::Conflict { .. }) => Ok((StatusCode::CONFLICT, public_view(s, id, None, None, Some(e)).await?).into_response()),
        Err(e) => Err(e.into()),
    }
}

async fn public_view(s: &AppState, id: Uuid, answer: Option<Answer>, confirm: Option<String>, err: Option<Error>) -> UiResult {
    let lang = crate::middleware::req().lang;
    let x = venues::public(&s.store, id).await?;
    let mut shell = crate::ui::shell_for(None, lang, "", &format!("/v/{id}"), x.name.clone());
    shell.error = err.map(|e| e.message(lang.zh()));
    let fallback = answer.is_none() && confirm.is_none();
    Ok(render(&PublicPage { shell, id, kind: x.kind.label(lang.zh()), place: x.place, answer, confirm, fallback }))
}

async fn poster(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, h: HeaderMap) -> UiResult {
    let x = venues::get(&s.store, &v.who, id).await?;
    let host = h.get(axum::http::header::HOST).and_then(|x| x.to_str().ok()).unwrap_or("");
    let url = venues::poster_text(&format!("http://{host}"), &x);
    let mut shell = v.shell("venue.poster_title");
    shell.title = x.name.clone();
    Ok(render(&PosterPage { shell, qr: qr(&url), url, place: x.place }))
}

#[derive(askama::Template)]
#[template(path = "exposure.html")]
struct ExposurePage {
    shell: crate::ui::Shell,
    filters: Vec<Filter>,
    export_href: Option<String>,
    tables: Vec<ListCard>,
    forms: Vec<FormCard>,
}

/// One list of the page in its own card.
struct ListCard {
    id: &'static str,
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

fn columns(lang: crate::i18n::Lang, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| lang.t(k).to_string()).collect()
}

/// The search for a case (person id and window as typed), its two lists, the export and, for
/// staff who may write persons, the form that marks the contacts in their scope as companions.
async fn exposure_view(s: &AppState, v: &Viewer, person: String, window: String, flash: Option<String>, err: Option<Error>) -> UiResult {
    let lang = v.lang;
    let d = baton_domain::division::Divisions::get_all();
    let mut shell = v.shell("exposure.title");
    let mut tables = Vec::new();
    let mut forms = Vec::new();
    let mut export_href = None;
    if let Ok(id) = Uuid::parse_str(person.trim()) {
        let window_minutes = window.trim().parse().ok();
        match exposure::search(&s.store, &v.who, id, &exposure::SearchInput { window_minutes, days: None }).await {
            Ok(x) => {
                shell.flash = Some(flash.unwrap_or_else(|| {
                    format!(
                        "{} {} · {} {} · {} {} · {} {} · {} {}",
                        lang.t("exposure.visits"),
                        x.case_visits,
                        lang.t("exposure.window"),
                        x.window_minutes,
                        lang.t("exposure.found"),
                        x.contacts.len(),
                        lang.t("exposure.case_stays"),
                        x.case_stays,
                        lang.t("exposure.trucks"),
                        x.trips.len()
                    )
                }));
                export_href = Some(format!("/api/v1/persons/{id}/exposure.xlsx?window_minutes={}", x.window_minutes));
                let persons = x
                    .contacts
                    .iter()
                    .map(|c| {
                        vec![
                            link(c.name_masked.clone(), format!("/persons/{}/code", c.person_id)),
                            cell(d.full_name(&c.jurisdiction)),
                            link(c.venue_name.clone(), format!("/venues/{}", c.venue_id)),
                            cell(local(c.case_at)),
                            cell(local(c.contact_at)),
                            cell(format!("{:.1}", c.overlap_minutes)),
                        ]
                    })
                    .collect();
                tables.push(ListCard {
                    id: "exposure-persons",
                    title: lang.t("exposure.persons").to_string(),
                    columns: columns(
                        lang,
                        &["venue.person", "common.division", "venue.name", "exposure.case_at", "exposure.contact_at", "exposure.overlap"],
                    ),
                    rows: persons,
                });
                let trucks = x
                    .trips
                    .iter()
                    .map(|t| {
                        vec![
                            link(t.plate.clone(), format!("/trips/{}", t.trip_id)),
                            cell(t.crew_masked.join("、")),
                            link(t.site_name.clone(), format!("/sites/{}", t.site_id)),
                            link(t.case_plate.clone(), format!("/trips/{}", t.case_trip_id)),
                            cell(local(t.overlap_from)),
                            cell(local(t.overlap_to)),
                            cell(format!("{:.1}", t.overlap_minutes)),
                        ]
                    })
                    .collect();
                tables.push(ListCard {
                    id: "exposure-trucks",
                    title: lang.t("exposure.trucks").to_string(),
                    columns: columns(
                        lang,
                        &[
                            "trip.plate",
                            "trip.crew",
                            "site.name",
                            "exposure.case_truck",
                            "exposure.overlap_from",
                            "exposure.overlap_to",
                            "exposure.overlap",
                        ],
                    ),
                    rows: trucks,
                });
                // Only contacts the viewer may write are offered; the store checks again, in SQL.
                let mine: Vec<(String, String)> = x
                    .contacts
                    .iter()
                    .filter(|c| v.who.scope.covers(&c.jurisdiction, None))
                    .map(|c| (c.person_id.to_string(), format!("{} · {} · {}", c.name_masked, c.venue_name, local(c.contact_at))))
                    .collect();
                if v.who.can(Permission::PersonsWrite) && !mine.is_empty() {
                    let mut persons = Field::new("persons", lang.t("exposure.mark_persons"), "checkboxes", "");
                    persons.options = mine;
                    forms.push(FormCard {
                        id: "companion-form",
                        title: lang.t("exposure.mark_title").into(),
                        action: "/exposure".into(),
                        fields: vec![
                            Field::new("person", "", "hidden", id.to_string()),
                            Field::new("window_minutes", "", "hidden", x.window_minutes.to_string()),
                            persons,
                            Field::new("all", lang.t("exposure.mark_all"), "checkbox", ""),
                        ],
                        submit: lang.t("exposure.mark").into(),
                        note: Some(lang.t("exposure.mark_note").into()),
                    });
                }
            }
            Err(e @ (Error::Invalid(_) | Error::Conflict { .. } | Error::NotFound(_))) => shell.error = Some(e.message(lang.zh())),
            Err(e) => return Err(e.into()),
        }
    } else if !person.trim().is_empty() {
        shell.error = Some(lang.t("exposure.bad_person").into());
    }
    if let Some(e) = &err {
        attach_errors(&mut shell, &mut forms, e);
    }
    let page = ExposurePage {
        shell,
        filters: vec![
            Filter { name: "person", label: lang.t("exposure.person").into(), value: person, kind: "search", options: vec![] },
            Filter { name: "window_minutes", label: lang.t("exposure.window").into(), value: window, kind: "number", options: vec![] },
        ],
        export_href,
        tables,
        forms,
    };
    Ok(render(&page))
}

async fn exposure_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let m = query_map(&q);
    let count = |k: &str| m.get(k).and_then(|n| n.parse::<usize>().ok());
    let flash = count("marked").zip(count("already")).map(|(n, before)| {
        v.lang
            .pick(&format!("已标记 {n} 人为时空伴随人员；{before} 人此前已标记"), &format!("{n} marked as companions; {before} marked before"))
            .to_string()
    });
    exposure_view(&s, &v, m.get("person").cloned().unwrap_or_default(), m.get("window_minutes").cloned().unwrap_or_default(), flash, None).await
}

/// The search page again with the error at its fields, answered with the error's status.
async fn exposure_refused(s: &AppState, v: &Viewer, person: String, window: String, e: Error) -> UiResult {
    let status = crate::error::status_of(&e);
    let page = exposure_view(s, v, person, window, None, Some(e)).await?;
    Ok((status, page).into_response())
}

/// The ticked contacts (or all of them in the viewer's scope) marked as the case's companions.
async fn mark_companions(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let (person, window) = (f.get("person"), f.get("window_minutes"));
    let Ok(case) = Uuid::parse_str(person.trim()) else {
        return exposure_refused(&s, &v, person, window, Error::field("person", "invalid", "人员编号格式有误", "not a person id")).await;
    };
    let mut ids = Vec::new();
    for x in f.all("persons") {
        match Uuid::parse_str(x.trim()) {
            Ok(id) => ids.push(id),
            Err(_) => {
                return exposure_refused(&s, &v, person, window, Error::field("persons", "invalid", "人员编号格式有误", "not a person id")).await;
            }
        }
    }
    let input = exposure::MarkInput { persons: ids, all: f.get("all") == "on", window_minutes: window.trim().parse().ok(), days: None };
    match exposure::mark_companions(&s.store, &v.who, case, &input).await {
        Ok(m) => Ok(Redirect::to(&format!(
            "/exposure?person={case}&window_minutes={}&marked={}&already={}",
            crate::ui::encode(window.trim()),
            m.marked.len(),
            m.already.len()
        ))
        .into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => exposure_refused(&s, &v, person, window, e).await,
        Err(e) => Err(e.into()),
    }
}
