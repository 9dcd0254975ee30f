//! Venues' JSON API: venues and their codes, scans at the door (one at a time, or uploaded in
//! batches by offline scanners), a venue's visit log, and the exposure search with its export
//! as a tracing request, and marking the contacts found as companions of the case.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, NoFilter, Qs, created, listed, ok, once};
use crate::auth::Caller;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use baton_store::sheet::XLSX_MIME;
use baton_store::{exposure, venues};

/// A batch of 10,000 scans is about 1.6 MB of JSON.
const BATCH_MAX_BYTES: usize = 4 << 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/venues", get(list).post(create))
        .route("/venues/{id}", get(one))
        .route("/venues/{id}/scan", post(scan))
        .route("/venues/{id}/visits", get(visits))
        .route("/scans/batch", post(batch).layer(DefaultBodyLimit::max(BATCH_MAX_BYTES)))
        .route("/persons/{id}/exposure", get(search))
        .route("/persons/{id}/exposure.xlsx", get(export))
        .route("/persons/{id}/exposure/companions", post(mark_companions))
}

async fn list(State(s): State<AppState>, c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("venues", venues::list(&s.store, &c.who, &page).await?)
}

async fn create(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<venues::VenueInput>) -> ApiResult {
    once(&s, &c, "POST /venues", &h, &raw, || async { created(venues::create(&s.store, &c.who, &input).await?) }).await
}

async fn one(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(venues::get(&s.store, &c.who, id).await?)
}

async fn scan(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<venues::ScanInput>) -> ApiResult {
    ok(venues::scan(&s.store, &c.who, id, &input).await?)
}

async fn visits(State(s): State<AppState>, c: Caller, Id(id): Id, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("visits", venues::visits(&s.store, &c.who, id, &page).await?)
}

async fn batch(State(s): State<AppState>, c: Caller, Body(input, _): Body<venues::BatchInput>) -> ApiResult {
    ok(venues::ingest(&s.store, &c.who, &input).await?)
}

async fn search(State(s): State<AppState>, c: Caller, Id(id): Id, Qs(q): Qs<exposure::SearchInput>) -> ApiResult {
    ok(exposure::search(&s.store, &c.who, id, &q).await?)
}

async fn export(State(s): State<AppState>, c: Caller, Id(id): Id, Qs(q): Qs<exposure::SearchInput>) -> ApiResult {
    let bytes = exposure::export(&s.store, &c.who, id, &q).await?;
    let disposition = format!("attachment; filename=\"tracing-{id}.xlsx\"");
    Ok(([(header::CONTENT_TYPE, XLSX_MIME.to_string()), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response())
}

async fn mark_companions(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<exposure::MarkInput>) -> ApiResult {
    ok(exposure::mark_companions(&s.store, &c.who, id, &input).await?)
}
