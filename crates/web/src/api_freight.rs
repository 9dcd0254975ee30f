//! The freight loop's JSON API: pre-report, check-in, the trip's transitions (handoffs,
//! arrival, departure, exit…), and the alerts its broken links raise.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, Qs, created, listed, ok, once};
use crate::auth::Caller;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post, put};
use baton_store::sheet::Format;
use baton_store::{alerts, escorts, freight_stats, ledger, trip_import, trips};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/trips", get(list_trips).post(report))
        .route("/trips/check-in", post(check_in))
        .route("/trips/exit", post(exit_by_plate))
        .route("/trips/import", post(import_trips).layer(axum::extract::DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/trips/import/template", get(import_template))
        .route("/trips/{id}", get(get_trip))
        .route("/trips/{id}/actions", post(act))
        .route("/trips/{id}/ledger", get(get_ledger))
        .route("/trips/{id}/confirm", post(confirm))
        .route("/freight/stats", get(freight_stats))
        .route("/freight/export", get(freight_export))
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}/acknowledge", post(acknowledge))
        .route("/alerts/{id}/resolve", post(resolve))
        .route("/escorts", get(escort_roster))
        .route("/escorts/fallback", put(set_fallback))
        .route("/escorts/receivers/{id}", put(set_receiver_escort))
}

async fn list_trips(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<trips::TripFilter>) -> ApiResult {
    listed("trips", trips::list(&s.store, &c.who, &f, &page).await?)
}

async fn report(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<trips::ReportInput>) -> ApiResult {
    once(&s, &c, "POST /trips", &h, &raw, || async { created(trips::report(&s.store, &c.who, &input).await?) }).await
}

/// A retried check-in (same Idempotency-Key) returns the first answer; without a key the
/// one-open-trip-per-plate rule still refuses a second trip.
async fn check_in(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<trips::CheckInInput>) -> ApiResult {
    once(&s, &c, "POST /trips/check-in", &h, &raw, || async { created(trips::check_in(&s.store, &c.who, &input).await?) }).await
}

/// An exit checkpoint scans a departing truck by its plate (`{"plate": "晋D12345"}`): any
/// checkpoint of the county closes the loop of the plate's open trip, wherever it entered.
async fn exit_by_plate(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<trips::ExitInput>) -> ApiResult {
    once(&s, &c, "POST /trips/exit", &h, &raw, || async { ok(trips::exit_by_plate(&s.store, &c.who, &input).await?) }).await
}

async fn get_trip(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(trips::get(&s.store, &c.who, id).await?)
}

/// One transition, by the caller's unit: `{"action": "propose_handoff", "to": …, "purpose": "escort"}`,
/// `{"action": "accept_handoff"}`, `{"action": "confirm_arrival"}`, `{"action": "exit_scan"}`, …
async fn act(State(s): State<AppState>, c: Caller, Id(id): Id, Body(action, _): Body<serde_json::Value>) -> ApiResult {
    ok(trips::act(&s.store, &c.who, id, action).await?)
}

async fn list_alerts(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<alerts::AlertFilter>) -> ApiResult {
    listed("alerts", alerts::list(&s.store, &c.who, &f, &page).await?)
}

async fn acknowledge(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(alerts::acknowledge(&s.store, &c.who, id).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveInput {
    note: String,
}

async fn resolve(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<ResolveInput>) -> ApiResult {
    ok(alerts::resolve(&s.store, &c.who, id, &input.note).await?)
}

/// The trip's responsibility ledger: each party, its confirmation, and for each breach the
/// parties that had not confirmed when it was raised.
async fn get_ledger(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(ledger::get(&s.store, &c.who, id).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmInput {
    party: String,
}

/// A party's staff confirm its duty (`cargo_owner`, `logistics_park`, `township`); once.
async fn confirm(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<ConfirmInput>) -> ApiResult {
    ok(ledger::confirm(&s.store, &c.who, id, &input.party).await?)
}

/// A spreadsheet body: xlsx or CSV (UTF-8 or GBK) by its Content-Type; anything else, an empty
/// or oversized body become the stable error shape.
pub struct Sheet(pub Format, pub axum::body::Bytes);

impl axum::extract::FromRequest<AppState> for Sheet {
    type Rejection = crate::auth::AppError;

    async fn from_request(r: axum::extract::Request, state: &AppState) -> Result<Self, Self::Rejection> {
        use baton_domain::Error;
        let ct = r.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(format) = Format::from_content_type(ct).filter(|f| *f != Format::Json) else {
            return Err(Error::conflict(
                "unsupported_media_type",
                "请求体应为 xlsx 或 CSV 文件",
                "the body must be an xlsx or CSV file (Content-Type: text/csv or the xlsx type)",
            )
            .into());
        };
        let bytes = axum::body::Bytes::from_request(r, state).await.map_err(|rej| {
            if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::conflict("payload_too_large", "请求体过大", "the request body is too large")
            } else {
                Error::conflict("bad_request", "无法读取请求体", "the request body could not be read")
            }
        })?;
        if bytes.is_empty() {
            return Err(Error::conflict("bad_request", "请求体为空", "the request body is empty").into());
        }
        Ok(Sheet(format, bytes))
    }
}

/// Batch pre-report: one row per truck; all or nothing with a row-by-row error report.
async fn import_trips(State(s): State<AppState>, c: Caller, h: HeaderMap, Sheet(format, bytes): Sheet) -> ApiResult {
    once(&s, &c, "POST /trips/import", &h, &bytes, || async { created(trip_import::import(&s.store, &c.who, format, &bytes).await?) }).await
}

async fn import_template(c: Caller) -> ApiResult {
    c.who.require(baton_domain::role::Permission::TripsReport)?;
    Ok(crate::api_whitelist::xlsx_response(trip_import::template()?, "pre-report-template.xlsx"))
}

/// The dashboard's lists, scoped to the caller.
async fn freight_stats(State(s): State<AppState>, c: Caller) -> ApiResult {
    ok(freight_stats::stats(&s.store, &c.who).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    list: String,
}

/// One dashboard list as xlsx (`list=open_by_state`, `breaches_by_unit`, `handoff_times`, …).
async fn freight_export(State(s): State<AppState>, c: Caller, Qs(q): Qs<ExportQuery>) -> ApiResult {
    let bytes = freight_stats::export(&s.store, &c.who, &q.list).await?;
    Ok(crate::api_whitelist::xlsx_response(bytes, &format!("{}.xlsx", q.list)))
}

/// Who escorts closed-loop trucks: each receiver's escort unit and the fallback roster.
async fn escort_roster(State(s): State<AppState>, c: Caller) -> ApiResult {
    ok(escorts::roster(&s.store, &c.who).await?)
}

/// Replace the fallback roster (police, transport departments) in priority order.
async fn set_fallback(State(s): State<AppState>, c: Caller, Body(input, _): Body<escorts::FallbackInput>) -> ApiResult {
    ok(escorts::set_fallback(&s.store, &c.who, &input).await?)
}

/// A receiver's escort unit (`null` removes it).
async fn set_receiver_escort(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<escorts::ReceiverEscortInput>) -> ApiResult {
    ok(escorts::set_receiver_escort(&s.store, &c.who, id, &input).await?)
}
