//! JSON API of the person registry, merged under `/api/v1` by `crate::router`: search,
//! register (find-or-create by document, so a retry never makes a second record), read, reveal.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, RevealInput, created, listed, ok, once};
use crate::auth::Caller;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use baton_store::persons;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/persons", get(search_persons).post(register_person))
        .route("/persons/{id}", get(get_person))
        .route("/persons/{id}/reveal", post(reveal_person))
}

async fn search_persons(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<persons::Filter>) -> ApiResult {
    listed("persons", persons::search(&s.store, &c.who, &f, &page).await?)
}

async fn register_person(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<persons::PersonInput>) -> ApiResult {
    once(&s, &c, "POST /persons", &h, &raw, || async {
        let (p, new) = persons::create(&s.store, &c.who, &input).await?;
        if new { created(p) } else { ok(p) }
    })
    .await
}

async fn get_person(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(persons::get(&s.store, &c.who, id).await?)
}

async fn reveal_person(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<RevealInput>) -> ApiResult {
    let v = persons::reveal(&s.store, &c.who, id, input.field).await?;
    ok(json!({"field": input.field, "value": v}))
}
