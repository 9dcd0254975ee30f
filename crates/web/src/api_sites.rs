//! JSON API of the truck service sites (货车专用服务场地), merged under `/api/v1`: the sites in
//! scope with capacity and trucks present, one site with its present and waiting lists, the
//! capacity, and the gate: check-in by plate, result received, check-out.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, NoFilter, created, listed, ok, once};
use crate::auth::{AppError, Caller};
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
use baton_domain::Error;
use baton_store::sites;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sites", get(list_sites))
        .route("/sites/{id}", get(get_site))
        .route("/sites/{id}/capacity", post(set_capacity))
        .route("/sites/{id}/check-in", post(check_in))
        .route("/sites/{id}/stays/{stay}/result", post(result_received))
        .route("/sites/{id}/stays/{stay}/check-out", post(check_out))
}

/// A site and one of its stays in the path; anything that is not a uuid names no record.
struct SiteStay(Uuid, Uuid);

impl FromRequestParts<AppState> for SiteStay {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path((a, b)) = Path::<(String, String)>::from_request_parts(parts, state).await.map_err(|_| AppError(Error::NotFound("record")))?;
        match (Uuid::parse_str(&a), Uuid::parse_str(&b)) {
            (Ok(a), Ok(b)) => Ok(SiteStay(a, b)),
            _ => Err(AppError(Error::NotFound("record"))),
        }
    }
}

async fn list_sites(State(s): State<AppState>, c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("sites", sites::list(&s.store, &c.who, &page).await?)
}

async fn get_site(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(sites::get(&s.store, &c.who, id).await?)
}

async fn set_capacity(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<sites::CapacityInput>) -> ApiResult {
    ok(sites::set_capacity(&s.store, &c.who, id, &input).await?)
}

/// A retried check-in returns the truck's open stay (and honours an Idempotency-Key).
async fn check_in(State(s): State<AppState>, c: Caller, Id(id): Id, h: HeaderMap, Body(input, raw): Body<sites::SiteCheckInInput>) -> ApiResult {
    let route = format!("POST /sites/{id}/check-in");
    once(&s, &c, &route, &h, &raw, || async { created(sites::check_in(&s.store, &c.who, id, &input).await?) }).await
}

async fn result_received(State(s): State<AppState>, c: Caller, SiteStay(id, stay): SiteStay) -> ApiResult {
    ok(sites::result_received(&s.store, &c.who, id, stay).await?)
}

async fn check_out(State(s): State<AppState>, c: Caller, SiteStay(id, stay): SiteStay) -> ApiResult {
    ok(sites::check_out(&s.store, &c.who, id, stay).await?)
}
