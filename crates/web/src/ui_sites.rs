//! Truck service site pages, phone first: the sites in scope, and one site's gate — capacity,
//! trucks present, the waiting-for-result list, check-in by plate, result received, check-out.

use crate::AppState;
use crate::ui::{Field, FormCard, TablePage, UiResult, Viewer, attach_errors, cell, form_of, link, local};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_store::page::PageQuery;
use baton_store::sites;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new().route("/sites", get(sites_page)).route("/sites/{id}", get(site_page)).route("/sites/{id}/act", post(site_act))
}

async fn sites_page(State(s): State<AppState>, v: Viewer) -> UiResult {
    let lang = v.lang;
    let list = sites::list(&s.store, &v.who, &PageQuery::largest()).await?.items;
    // Site staff land on their own gate.
    if let [one] = list.as_slice()
        && v.who.unit_id == Some(one.id)
    {
        return Ok(Redirect::to(&format!("/sites/{}", one.id)).into_response());
    }
    let rows = list
        .iter()
        .map(|x| {
            vec![
                link(&x.name, format!("/sites/{}", x.id)),
                cell(x.capacity.map(|c| c.to_string()).unwrap_or_else(|| lang.t("site.not_set").into())),
                cell(format!("{}{}", x.present, if x.over_capacity { format!(" · {}", lang.t("site.full")) } else { String::new() })),
                cell(x.waiting.to_string()),
            ]
        })
        .collect();
    let page = TablePage {
        shell: v.shell("nav.sites"),
        create_href: None,
        filters: vec![],
        columns: ["site.name", "site.capacity", "site.present", "site.waiting"].iter().map(|k| lang.t(k).to_string()).collect(),
        rows,
        more_href: None,
        forms: vec![],
    };
    Ok(crate::ui::render(&page))
}

async fn site_page(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>) -> UiResult {
    site_view(&s, &v, id, None).await
}

async fn site_view(s: &AppState, v: &Viewer, id: Uuid, err: Option<Error>) -> UiResult {
    let lang = v.lang;
    let site = sites::get(&s.store, &v.who, id).await?;
    let rows = site
        .present
        .iter()
        .map(|x| {
            vec![
                link(&x.plate, format!("/trips/{}", x.trip_id)),
                cell(local(x.arrived_at)),
                cell(if x.waiting_result { lang.t("site.waiting").to_string() } else { String::new() }),
                cell(if x.over_capacity { lang.t("site.full").to_string() } else { String::new() }),
            ]
        })
        .collect();
    let mut forms = Vec::new();
    let action = format!("/sites/{id}/act");
    if v.who.unit_id == Some(id) {
        forms.push(FormCard {
            id: "site-check-in-form",
            title: lang.t("site.check_in").into(),
            action: action.clone(),
            fields: vec![
                Field::new("do", "", "hidden", "check_in"),
                Field::new("plate", lang.t("trip.plate"), "text", "").hint(lang.pick("如 晋D12345", "e.g. 晋D12345")),
                Field::new("waiting_result", lang.t("site.waiting_result"), "checkbox", "on"),
                Field::new("over_capacity", lang.t("site.over_capacity"), "checkbox", ""),
            ],
            submit: lang.t("site.check_in").into(),
            note: None,
        });
        let stays = |list: &[sites::StayView]| list.iter().map(|x| (x.id.to_string(), format!("{} · {}", x.plate, local(x.arrived_at)))).collect();
        if !site.waiting.is_empty() {
            forms.push(FormCard {
                id: "site-result-form",
                title: lang.t("site.result").into(),
                action: action.clone(),
                fields: vec![Field::new("do", "", "hidden", "result"), Field::select("stay", lang.t("trip.plate"), "", stays(&site.waiting))],
                submit: lang.t("site.result").into(),
                note: None,
            });
        }
        if !site.present.is_empty() {
            forms.push(FormCard {
                id: "site-check-out-form",
                title: lang.t("site.check_out").into(),
                action: action.clone(),
                fields: vec![Field::new("do", "", "hidden", "check_out"), Field::select("stay", lang.t("trip.plate"), "", stays(&site.present))],
                submit: lang.t("site.check_out").into(),
                note: None,
            });
        }
        forms.push(FormCard {
            id: "site-capacity-form",
            title: lang.t("site.set_capacity").into(),
            action,
            fields: vec![
                Field::new("do", "", "hidden", "capacity"),
                Field::new("capacity", lang.t("site.capacity"), "number", site.site.capacity.map(|c| c.to_string()).unwrap_or_default()),
            ],
            submit: lang.t("common.save").into(),
            note: None,
        });
    }
    let mut shell = v.shell("nav.sites");
    shell.title = site.site.name.clone();
    let capacity = site.site.capacity.map(|c| c.to_string()).unwrap_or_else(|| lang.t("site.not_set").into());
    shell.flash = Some(format!(
        "{} {} / {} {} · {} {}",
        lang.t("site.present"),
        site.site.present,
        lang.t("site.capacity"),
        capacity,
        lang.t("site.waiting"),
        site.site.waiting
    ));
    let status = match &err {
        Some(e) => {
            attach_errors(&mut shell, &mut forms, e);
            crate::error::status_of(e)
        }
        None => StatusCode::OK,
    };
    let page = TablePage {
        shell,
        create_href: None,
        filters: vec![],
        columns: ["trip.plate", "site.arrived", "site.waiting", "site.full"].iter().map(|k| lang.t(k).to_string()).collect(),
        rows,
        more_href: None,
        forms,
    };
    Ok((status, crate::ui::render(&page)).into_response())
}

async fn site_act(State(s): State<AppState>, v: Viewer, Path(id): Path<Uuid>, body: Bytes) -> UiResult {
    let f = form_of(&v, &body)?;
    let stay = || Uuid::parse_str(&f.get("stay")).map_err(|_| Error::field("stay", "required", "请选择车辆", "choose a truck"));
    let r = match f.get("do").as_str() {
        "check_in" => {
            let input = sites::SiteCheckInInput {
                plate: f.get("plate"),
                waiting_result: f.get("waiting_result") == "on",
                over_capacity: f.get("over_capacity") == "on",
            };
            sites::check_in(&s.store, &v.who, id, &input).await.map(|_| ())
        }
        "result" => match stay() {
            Ok(x) => sites::result_received(&s.store, &v.who, id, x).await.map(|_| ()),
            Err(e) => Err(e),
        },
        "check_out" => match stay() {
            Ok(x) => sites::check_out(&s.store, &v.who, id, x).await.map(|_| ()),
            Err(e) => Err(e),
        },
        _ => match f.get("capacity").trim().parse::<i64>() {
            Ok(c) => sites::set_capacity(&s.store, &v.who, id, &sites::CapacityInput { capacity: c }).await.map(|_| ()),
            Err(_) => Err(Error::field("capacity", "not_a_number", "请输入整数", "enter a whole number")),
        },
    };
    match r {
        Ok(()) => Ok(Redirect::to(&format!("/sites/{id}")).into_response()),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => site_view(&s, &v, id, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}
