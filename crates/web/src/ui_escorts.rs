//! The escort roster page, phone first: each receiver's escort unit, and the fallback roster
//! (police, transport) in priority order with add, reorder and remove. Every change goes through
//! the store's escort functions, so it is checked, scoped and audited as the API's.

use crate::AppState;
use crate::ui::{Cell, Field, FormCard, FormData, Shell, UiResult, Viewer, attach_errors, cell, form_of, query_map, render};
use crate::ui_freight::{all_units, receivers};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use baton_domain::division::Divisions;
use baton_domain::role::Permission;
use baton_domain::unit::UnitKind;
use baton_domain::{Error, FieldError};
use baton_store::{escorts, units};
use std::collections::HashMap;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/freight/escorts", get(escorts_page))
        .route("/freight/escorts/fallback/add", post(fallback_add))
        .route("/freight/escorts/fallback/change", post(fallback_change))
        .route("/freight/escorts/receiver", post(receiver_submit))
}

/// A card of the page: a list and the forms that change it.
pub struct Section {
    pub id: &'static str,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    pub forms: Vec<FormCard>,
}

#[derive(askama::Template)]
#[template(path = "escorts.html")]
struct EscortsPage {
    shell: Shell,
    lead: String,
    sections: Vec<Section>,
}

/// The roster as shown: the fallback units' ids in order, joined by commas (the forms carry it
/// back, so that a retry changes nothing and a change made meanwhile by someone else is not lost).
fn order_of(r: &escorts::Roster) -> String {
    r.fallback.iter().map(|f| f.unit_id.to_string()).collect::<Vec<_>>().join(",")
}

fn serves(code: &str) -> String {
    format!("{code} {}", Divisions::get_all().full_name(code))
}

const ADD: &str = "fallback-add-form";
const CHANGE: &str = "fallback-change-form";
const RECEIVER: &str = "receiver-escort-form";

/// `err`: the form that failed (by id), why, and what it sent; the errors show at its fields.
async fn view(s: &AppState, v: &Viewer, flash: Option<String>, err: Option<(&'static str, Error, &FormData)>) -> UiResult {
    let lang = v.lang;
    let roster = escorts::roster(&s.store, &v.who).await?;
    let order = order_of(&roster);
    let got = |form: &str, name: &str| err.as_ref().filter(|(id, ..)| *id == form).map(|(_, _, f)| f.get(name)).unwrap_or_default();

    let mut fallback = Section {
        id: "escort-fallback",
        title: lang.t("escort.fallback").into(),
        columns: ["escort.order", "common.name", "escort.serves"].iter().map(|k| lang.t(k).to_string()).collect(),
        // Its place on the whole roster, also when the viewer's scope shows only part of it.
        rows: roster.fallback.iter().map(|f| vec![cell((f.priority + 1).to_string()), cell(&f.name), cell(serves(&f.jurisdiction))]).collect(),
        forms: Vec::new(),
    };
    if v.who.can(Permission::UnitsWrite) {
        let candidates: Vec<(String, String)> =
            units::list(&s.store, &v.who, &units::UnitFilter { kind: Some(UnitKind::Department.as_str().into()), q: None })
                .await?
                .into_iter()
                .filter(|u| u.active && !roster.fallback.iter().any(|f| f.unit_id == u.id))
                .map(|u| (u.id.to_string(), format!("{} · {}", u.name, u.division_name)))
                .collect();
        if !candidates.is_empty() {
            fallback.forms.push(FormCard {
                id: ADD,
                title: lang.t("escort.add").into(),
                action: "/freight/escorts/fallback/add".into(),
                fields: vec![
                    Field::new("roster", "", "hidden", order.clone()),
                    Field::select("unit", lang.t("escort.unit"), got(ADD, "unit"), candidates).hint(
                        lang.pick("公安、交通等部门，排在名单末尾", "A department such as police or transport; it goes to the end of the roster"),
                    ),
                ],
                submit: lang.t("escort.add").into(),
                note: None,
            });
        }
        if !roster.fallback.is_empty() {
            let listed = roster.fallback.iter().map(|f| (f.unit_id.to_string(), f.name.clone())).collect();
            let steps = ["up", "down", "remove"].iter().map(|o| (o.to_string(), lang.t(&format!("escort.{o}")).to_string())).collect();
            fallback.forms.push(FormCard {
                id: CHANGE,
                title: lang.t("escort.change").into(),
                action: "/freight/escorts/fallback/change".into(),
                fields: vec![
                    Field::new("roster", "", "hidden", order.clone()),
                    Field::select("entry", lang.t("escort.unit"), got(CHANGE, "entry"), listed),
                    Field::select("step", lang.t("common.actions"), got(CHANGE, "step"), steps),
                ],
                submit: lang.t("common.save").into(),
                note: None,
            });
        }
    }

    // Every receiver in scope, with the escort it named (or none: its trucks go to the fallback roster).
    let named: HashMap<Uuid, &escorts::ReceiverEscort> = roster.receivers.iter().map(|r| (r.receiver_id, r)).collect();
    let list = receivers(s, &v.who, lang).await?;
    let mut receiver_card = Section {
        id: "escort-receivers",
        title: lang.t("escort.receivers").into(),
        columns: ["escort.receiver", "common.division", "escort.escort"].iter().map(|k| lang.t(k).to_string()).collect(),
        rows: list
            .iter()
            .map(|(u, label)| {
                let escort = named.get(&u.id).map(|r| r.escort_name.clone()).unwrap_or_else(|| lang.t("escort.none").into());
                vec![cell(label), cell(serves(&u.division_code)), cell(escort)]
            })
            .collect(),
        forms: Vec::new(),
    };
    // Unit managers set it for the receivers in their scope; a receiver's own staff for their unit.
    let settable: Vec<(String, String)> = list
        .iter()
        .filter(|(u, _)| v.who.can(Permission::UnitsWrite) || (v.who.unit_id == Some(u.id) && v.who.can(Permission::TripsReport)))
        .map(|(u, label)| (u.id.to_string(), label.clone()))
        .collect();
    if !settable.is_empty() {
        let receiver = match got(RECEIVER, "receiver") {
            r if r.is_empty() => settable.first().map(|(id, _)| id.clone()).unwrap_or_default(),
            r => r,
        };
        let current = Uuid::parse_str(&receiver).ok().and_then(|id| named.get(&id)).map(|r| r.escort_id.to_string()).unwrap_or_default();
        let escort = if err.as_ref().is_some_and(|(id, ..)| *id == RECEIVER) { got(RECEIVER, "escort_id") } else { current };
        let mut escorts = vec![(String::new(), lang.t("escort.none").to_string())];
        escorts.extend(all_units(s, v).await?);
        receiver_card.forms.push(FormCard {
            id: RECEIVER,
            title: lang.t("escort.set").into(),
            action: "/freight/escorts/receiver".into(),
            fields: vec![
                Field::select("receiver", lang.t("escort.receiver"), receiver, settable),
                Field::select("escort_id", lang.t("escort.escort"), escort, escorts),
            ],
            submit: lang.t("common.save").into(),
            note: None,
        });
    }

    let mut shell = v.shell("nav.escorts");
    shell.flash = flash;
    let mut sections = vec![fallback, receiver_card];
    let status = match &err {
        Some((id, e, _)) => {
            // At the form that was sent only: the roster forms share field names.
            let form = sections.iter_mut().flat_map(|x| x.forms.iter_mut()).find(|f| f.id == *id);
            attach_errors(&mut shell, form.map(std::slice::from_mut).unwrap_or_default(), e);
            crate::error::status_of(e)
        }
        None => StatusCode::OK,
    };
    let lead = lang.t("escort.lead").to_string();
    Ok((status, render(&EscortsPage { shell, lead, sections })).into_response())
}

async fn escorts_page(State(s): State<AppState>, v: Viewer, RawQuery(q): RawQuery) -> UiResult {
    let flash = query_map(&q).contains_key("saved").then(|| v.lang.t("common.saved").to_string());
    view(&s, &v, flash, None).await
}

fn saved() -> UiResult {
    Ok(Redirect::to("/freight/escorts?saved=1").into_response())
}

/// One change to the roster as the form showed it: add a unit at the end, or move one up or
/// down, or remove it.
fn changed(shown: &[Uuid], step: &str, unit: Uuid) -> Result<Vec<Uuid>, Error> {
    let mut out = shown.to_vec();
    if step == "add" {
        out.push(unit);
        return Ok(out);
    }
    let Some(i) = out.iter().position(|u| *u == unit) else {
        return Err(Error::field("entry", "not_listed", "该单位不在兜底名单中", "the unit is not on the fallback roster"));
    };
    match step {
        "up" if i > 0 => out.swap(i, i - 1),
        "down" if i + 1 < out.len() => out.swap(i, i + 1),
        "up" | "down" => {}
        "remove" => {
            out.remove(i);
        }
        _ => return Err(Error::field("step", "invalid_choice", "请选择操作", "choose an action")),
    }
    Ok(out)
}

/// The store names roster entries by position (`units[2]`): the added unit's errors go to the
/// form's unit field, any other's are named by the unit.
fn at_fields(e: Error, list: &[Uuid], added: Option<Uuid>, names: &HashMap<Uuid, String>) -> Error {
    let Error::Invalid(fields) = e else { return e };
    let entry = |f: &str| f.strip_prefix("units[").and_then(|r| r.strip_suffix(']')).and_then(|i| i.parse::<usize>().ok()).and_then(|i| list.get(i));
    Error::Invalid(
        fields
            .into_iter()
            .map(|fe| match entry(&fe.field).copied() {
                Some(u) if Some(u) == added => fe.at("unit"),
                Some(u) => {
                    let name = names.get(&u).cloned().unwrap_or_else(|| u.to_string());
                    fe.at(name)
                }
                None => fe,
            })
            .collect::<Vec<FieldError>>(),
    )
}

/// Apply one change (`step` to `unit`) from `form` to the roster and store it. The form carries
/// the roster it showed: a retry of a change already made, or a move past either end, writes
/// nothing; a roster changed meanwhile by someone else is answered 409 with the new roster.
async fn change_roster(s: &AppState, v: &Viewer, f: &FormData, form: &'static str, step: &str, unit: Result<Uuid, Error>) -> UiResult {
    v.who.require(Permission::UnitsWrite)?;
    let roster = escorts::roster(&s.store, &v.who).await?;
    let current: Vec<Uuid> = roster.fallback.iter().map(|x| x.unit_id).collect();
    let shown: Vec<Uuid> = f.get("roster").split(',').filter_map(|x| Uuid::parse_str(x).ok()).collect();
    let next = match unit.and_then(|u| changed(&shown, step, u)) {
        Ok(n) => n,
        Err(e) => return view(s, v, None, Some((form, e, f))).await,
    };
    if next == current {
        return saved();
    }
    if shown != current {
        let e = Error::conflict(
            "roster_changed",
            "兜底名单刚被他人修改，请在下面的最新名单上重做",
            "the fallback roster was changed meanwhile; redo the change on the list below",
        );
        return view(s, v, None, Some((form, e, f))).await;
    }
    let names: HashMap<Uuid, String> = roster.fallback.iter().map(|x| (x.unit_id, x.name.clone())).collect();
    let added = if step == "add" { next.last().copied() } else { None };
    match escorts::set_fallback(&s.store, &v.who, &escorts::FallbackInput { units: next.clone() }).await {
        Ok(_) => saved(),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => view(s, v, None, Some((form, at_fields(e, &next, added, &names), f))).await,
        Err(e) => Err(e.into()),
    }
}

fn chosen(f: &FormData, name: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(&f.get(name)).map_err(|_| Error::field(name.to_string(), "required", "请选择单位", "choose a unit"))
}

async fn fallback_add(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    change_roster(&s, &v, &f, ADD, "add", chosen(&f, "unit")).await
}

async fn fallback_change(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    change_roster(&s, &v, &f, CHANGE, &f.get("step"), chosen(&f, "entry")).await
}

async fn receiver_submit(State(s): State<AppState>, v: Viewer, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let fail = |e: Error| Some((RECEIVER, e, &f));
    let receiver = match Uuid::parse_str(&f.get("receiver")) {
        Ok(r) => r,
        Err(_) => return view(&s, &v, None, fail(Error::field("receiver", "required", "请选择接收单位", "choose a receiver"))).await,
    };
    let escort_id = match f.get("escort_id").as_str() {
        "" => None,
        x => match Uuid::parse_str(x) {
            Ok(id) => Some(id),
            Err(_) => return view(&s, &v, None, fail(Error::field("escort_id", "unit_unknown", "单位不存在", "the unit does not exist"))).await,
        },
    };
    match escorts::set_receiver_escort(&s.store, &v.who, receiver, &escorts::ReceiverEscortInput { escort_id }).await {
        Ok(_) => saved(),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => view(&s, &v, None, fail(e)).await,
        Err(e) => Err(e.into()),
    }
}
