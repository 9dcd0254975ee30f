//! Mass-screening rounds and pool-size planning, merged under `/api/v1`: open a round for an
//! area, read its coverage per village (live), list or export (xlsx) those still missing, and
//! the pool size recent positivity suggests. The store checks permission and scope and writes
//! the audit entries.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, Qs, created, listed, ok, once};
use crate::api_whitelist::xlsx_response;
use crate::auth::Caller;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use baton_store::rounds;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/testing/rounds", get(list_rounds).post(create_round))
        .route("/testing/rounds/{id}", get(round_coverage))
        .route("/testing/rounds/{id}/missing", get(missing))
        .route("/testing/rounds/{id}/missing/export", get(export_missing))
        .route("/testing/planning", get(planning))
}

async fn list_rounds(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<rounds::RoundFilter>) -> ApiResult {
    listed("rounds", rounds::list(&s.store, &c.who, &f, &page).await?)
}

/// `{"name": "第三轮全员核酸", "area": "140427100", "priority": "routine"}`; the window defaults to now + the policy's round hours.
async fn create_round(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<rounds::RoundInput>) -> ApiResult {
    once(&s, &c, "POST /testing/rounds", &h, &raw, || async { created(rounds::create(&s.store, &c.who, &input).await?) }).await
}

/// The round with expected, sampled, resulted and positive per village (and per township for a county round).
async fn round_coverage(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(rounds::coverage(&s.store, &c.who, id).await?)
}

async fn missing(State(s): State<AppState>, c: Caller, Id(id): Id, Listing(f, page): Listing<rounds::MissingQuery>) -> ApiResult {
    listed("missing", rounds::missing(&s.store, &c.who, id, &f, &page).await?)
}

/// xlsx of those missing; `reveal=true` puts personal data in full (needs `personal.reveal`, audited).
async fn export_missing(State(s): State<AppState>, c: Caller, Id(id): Id, Qs(f): Qs<rounds::MissingQuery>) -> ApiResult {
    let bytes = rounds::export_missing(&s.store, &c.who, id, &f).await?;
    Ok(xlsx_response(bytes, "missing.xlsx"))
}

async fn planning(State(s): State<AppState>, c: Caller, Qs(f): Qs<rounds::PlanQuery>) -> ApiResult {
    ok(rounds::plan(&s.store, &c.who, &f).await?)
}
