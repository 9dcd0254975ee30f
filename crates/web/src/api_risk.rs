//! JSON API routes of one module, merged under `/api/v1` by `crate::router`: risk areas.
//!
//! Reading (the areas in force, their history, matching an itinerary) is open to every
//! signed-in caller: risk areas are public notices. Writing needs `risk_areas.write`.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, Qs, created, listed, ok, once};
use crate::auth::{AppError, Caller};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_domain::role::Permission;
use baton_store::risk_areas::{self, ImportOptions};
use baton_store::sheet::{Format, XLSX_MIME};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/risk-areas", get(list_risk_areas).post(create_risk_area))
        .route("/risk-areas/history", get(risk_area_history))
        .route("/risk-areas/import", post(import_risk_areas).layer(DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/risk-areas/match", post(match_risk_areas))
        .route("/risk-areas/{id}/lift", post(lift_risk_area))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtQuery {
    at: Option<String>,
}

async fn list_risk_areas(State(s): State<AppState>, _c: Caller, Listing(q, page): Listing<AtQuery>) -> ApiResult {
    let at = match q.at.as_deref().filter(|x| !x.trim().is_empty()) {
        Some(x) => risk_areas::parse_time("at", x).map_err(|e| Error::Invalid(vec![e]))?,
        None => s.store.now(),
    };
    let p = risk_areas::in_force_page(&s.store, at, &page).await?;
    ok(json!({"at": at, "areas": p.items, "next_cursor": p.next_cursor}))
}

async fn risk_area_history(State(s): State<AppState>, _c: Caller, Listing(f, page): Listing<risk_areas::HistoryFilter>) -> ApiResult {
    listed("areas", risk_areas::history(&s.store, &f, &page).await?)
}

async fn create_risk_area(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<risk_areas::AreaInput>) -> ApiResult {
    once(&s, &c, "POST /risk-areas", &h, &raw, || async { created(risk_areas::create(&s.store, &c.who, &input).await?) }).await
}

async fn lift_risk_area(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<risk_areas::LiftInput>) -> ApiResult {
    ok(risk_areas::lift(&s.store, &c.who, id, &input).await?)
}

async fn match_risk_areas(State(s): State<AppState>, _c: Caller, Body(input, _): Body<risk_areas::MatchInput>) -> ApiResult {
    ok(risk_areas::match_itinerary(&s.store, &input).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    source: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    replace: bool,
}

/// A file body: its format from the Content-Type, its bytes as sent.
struct File(Format, Bytes);

impl FromRequest<AppState> for File {
    type Rejection = AppError;

    async fn from_request(r: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(format) = Format::from_content_type(ct) else {
            return Err(Error::conflict(
                "unsupported_media_type",
                format!("文件类型应为 text/csv、application/json 或 {}", XLSX_MIME),
                format!("the body must be text/csv, application/json or {}", XLSX_MIME),
            )
            .into());
        };
        let bytes = Bytes::from_request(r, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::conflict("payload_too_large", "文件过大", "the file is too large")
            } else {
                Error::conflict("bad_request", "无法读取请求体", "the request body could not be read")
            }
        })?;
        Ok(File(format, bytes))
    }
}

/// Import a list: 201 with the report, or 422 with every bad row and nothing written.
async fn import_risk_areas(State(s): State<AppState>, c: Caller, Qs(q): Qs<ImportQuery>, File(format, bytes): File) -> ApiResult {
    c.who.require(Permission::RiskAreasWrite)?;
    let opts = ImportOptions { source: q.source, note: q.note, replace: q.replace };
    created(risk_areas::import(&s.store, &c.who, format, &bytes, &opts).await?)
}
