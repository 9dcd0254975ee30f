//! JSON API of the whitelist (白名单), merged under `/api/v1` by `crate::router`: list, create,
//! read with history, status changes, fraud flag, review, xlsx import and export, and the
//! match used at check-in. The store checks permission and scope and writes the audit entry.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, Qs, created, listed, ok, once};
use crate::auth::{AppError, Caller};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use baton_domain::Error;
use baton_store::whitelist;
use serde::Deserialize;

use baton_store::sheet::{Format, XLSX_MIME as XLSX};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whitelist", get(list_whitelist).post(create_whitelist_entry))
        .route("/whitelist/import", post(import_whitelist).layer(axum::extract::DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/whitelist/export", get(export_whitelist))
        .route("/whitelist/match", post(match_whitelist))
        .route("/whitelist/{id}", get(get_whitelist_entry))
        .route("/whitelist/{id}/status", post(whitelist_status))
        .route("/whitelist/{id}/fraud", post(whitelist_fraud))
        .route("/whitelist/{id}/review", post(whitelist_review))
}

/// A spreadsheet request body, xlsx or CSV (UTF-8 or GBK) by its Content-Type: the wrong content
/// type, an oversized or unreadable body become the same stable error shape as the JSON bodies'
/// (`unsupported_media_type`, `payload_too_large`, `bad_request`).
pub struct Upload(pub Format, pub Bytes);

impl FromRequest<AppState> for Upload {
    type Rejection = AppError;

    async fn from_request(r: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(format) = Format::from_content_type(ct).filter(|f| *f != Format::Json) else {
            return Err(Error::conflict(
                "unsupported_media_type",
                format!("请求体应为 xlsx 或 CSV 文件(Content-Type: {XLSX} 或 text/csv)"),
                format!("the body must be an xlsx or CSV file (Content-Type: {XLSX} or text/csv)"),
            )
            .into());
        };
        let bytes = Bytes::from_request(r, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::conflict("payload_too_large", "请求体过大", "the request body is too large")
            } else {
                Error::conflict("bad_request", "无法读取请求体", "the request body could not be read")
            }
        })?;
        if bytes.is_empty() {
            return Err(Error::conflict(
                "bad_request",
                "请求体为空，应为 xlsx 或 CSV 文件",
                "the request body is empty; an xlsx or CSV file is expected",
            )
            .into());
        }
        Ok(Upload(format, bytes))
    }
}

async fn list_whitelist(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<whitelist::EntryFilter>) -> ApiResult {
    listed("entries", whitelist::list(&s.store, &c.who, &f, &page).await?)
}

async fn create_whitelist_entry(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<whitelist::EntryInput>) -> ApiResult {
    once(&s, &c, "POST /whitelist", &h, &raw, || async { created(whitelist::create(&s.store, &c.who, &input).await?) }).await
}

async fn get_whitelist_entry(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(whitelist::get(&s.store, &c.who, id).await?)
}

async fn whitelist_status(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<whitelist::StatusInput>) -> ApiResult {
    ok(whitelist::change_status(&s.store, &c.who, id, &input).await?)
}

async fn whitelist_fraud(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<whitelist::FraudInput>) -> ApiResult {
    ok(whitelist::flag_fraud(&s.store, &c.who, id, &input).await?)
}

async fn whitelist_review(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<whitelist::ReviewInput>) -> ApiResult {
    ok(whitelist::review(&s.store, &c.who, id, &input).await?)
}

async fn import_whitelist(State(s): State<AppState>, c: Caller, h: HeaderMap, Upload(format, bytes): Upload) -> ApiResult {
    once(&s, &c, "POST /whitelist/import", &h, &bytes, || async { created(whitelist::import(&s.store, &c.who, format, &bytes).await?) }).await
}

/// The list's filters, plus `reveal` (full personal data; needs `personal.reveal`, audited).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub tier: Option<String>,
    pub fraud: Option<bool>,
    pub q: Option<String>,
    pub plate: Option<String>,
    pub credit_code: Option<String>,
    pub id_number: Option<String>,
    #[serde(default)]
    pub reveal: bool,
}

impl ExportQuery {
    pub fn filter(&self) -> whitelist::EntryFilter {
        whitelist::EntryFilter {
            kind: self.kind.clone(),
            status: self.status.clone(),
            tier: self.tier.clone(),
            fraud: self.fraud,
            q: self.q.clone(),
            plate: self.plate.clone(),
            credit_code: self.credit_code.clone(),
            id_number: self.id_number.clone(),
        }
    }
}

/// The xlsx response: an attachment, never cached (it may hold personal data).
pub fn xlsx_response(bytes: Vec<u8>, filename: &str) -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, XLSX.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        bytes,
    )
        .into_response()
}

async fn export_whitelist(State(s): State<AppState>, c: Caller, Qs(q): Qs<ExportQuery>) -> ApiResult {
    let bytes = whitelist::export_xlsx(&s.store, &c.who, &q.filter(), q.reveal).await?;
    Ok(xlsx_response(bytes, "whitelist.xlsx"))
}

async fn match_whitelist(State(s): State<AppState>, c: Caller, Body(input, _): Body<whitelist::MatchInput>) -> ApiResult {
    ok(whitelist::match_check_in(&s.store, &c.who, &input).await?)
}
