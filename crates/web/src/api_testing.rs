//! Sampling and testing's JSON API, merged under `/api/v1`: sampling sites, tubes and their
//! members, batches handed to labs and received, results posted by labs (JSON or their LIS
//! file), the pending re-check list, and a person's latest result. The store checks
//! permission and scope and writes the audit entry.

use crate::AppState;
use crate::api::{ApiResult, Body, Id, Listing, NoFilter, Qs, created, listed, ok, once};
use crate::auth::{AppError, Caller};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use baton_domain::Error;
use baton_domain::role::Permission;
use baton_store::sheet::{Format, XLSX_MIME};
use baton_store::{results, testing, testing_import};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/testing/sites", get(list_sites).post(create_site))
        .route("/testing/tubes", get(list_tubes).post(open_tube))
        .route("/testing/tubes/lookup", get(lookup_tube))
        .route("/testing/tubes/{id}", get(get_tube))
        .route("/testing/tubes/{id}/members", post(add_members))
        .route("/testing/tubes/{id}/seal", post(seal_tube))
        .route("/testing/batches", get(list_batches).post(ship_batch))
        .route("/testing/batches/{id}", get(get_batch))
        .route("/testing/batches/{id}/receive", post(receive_batch))
        .route("/testing/results", post(post_results).layer(DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/testing/results/import", post(import_results).layer(DefaultBodyLimit::max(crate::UPLOAD_MAX_BYTES)))
        .route("/testing/rechecks", get(rechecks))
        .route("/testing/persons/{id}/result", get(person_result))
}

async fn list_sites(State(s): State<AppState>, c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("sites", testing::page_sites(&s.store, &c.who, &page).await?)
}

async fn create_site(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<testing::SiteInput>) -> ApiResult {
    once(&s, &c, "POST /testing/sites", &h, &raw, || async { created(testing::create_site(&s.store, &c.who, &input).await?) }).await
}

async fn list_tubes(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<testing::TubeFilter>) -> ApiResult {
    listed("tubes", testing::list_tubes(&s.store, &c.who, &f, &page).await?)
}

/// Open a tube by barcode: `{"barcode": "HG0001", "pool_size": 10, "priority": "routine", "members": [...]}`.
async fn open_tube(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<testing::TubeInput>) -> ApiResult {
    once(&s, &c, "POST /testing/tubes", &h, &raw, || async { created(testing::open_tube(&s.store, &c.who, &input).await?) }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    barcode: String,
}

async fn lookup_tube(State(s): State<AppState>, c: Caller, Qs(q): Qs<LookupQuery>) -> ApiResult {
    ok(testing::find_tube(&s.store, &c.who, &q.barcode).await?)
}

async fn get_tube(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(testing::get_tube(&s.store, &c.who, id).await?)
}

/// Persons scanned or typed into an open tube: `{"members": [{"person_id": …} | {"document_number": …, "name": …}]}`.
async fn add_members(State(s): State<AppState>, c: Caller, Id(id): Id, h: HeaderMap, Body(input, raw): Body<testing::MembersInput>) -> ApiResult {
    let route = format!("POST /testing/tubes/{id}/members");
    once(&s, &c, &route, &h, &raw, || async { ok(testing::add_members(&s.store, &c.who, id, &input.members).await?) }).await
}

async fn seal_tube(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(testing::seal(&s.store, &c.who, id).await?)
}

async fn list_batches(State(s): State<AppState>, c: Caller, Listing(f, page): Listing<testing::BatchFilter>) -> ApiResult {
    listed("batches", testing::list_batches(&s.store, &c.who, &f, &page).await?)
}

async fn ship_batch(State(s): State<AppState>, c: Caller, h: HeaderMap, Body(input, raw): Body<testing::BatchInput>) -> ApiResult {
    once(&s, &c, "POST /testing/batches", &h, &raw, || async { created(testing::ship(&s.store, &c.who, &input).await?) }).await
}

async fn get_batch(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    ok(testing::get_batch(&s.store, &c.who, id).await?)
}

async fn receive_batch(State(s): State<AppState>, c: Caller, Id(id): Id, Body(input, _): Body<testing::ReceiptInput>) -> ApiResult {
    ok(testing::receive(&s.store, &c.who, id, &input).await?)
}

/// Results from a lab (a lab's API token or a lab user): all rows or none; repeats change nothing.
async fn post_results(State(s): State<AppState>, c: Caller, Body(input, _): Body<testing::ResultsInput>) -> ApiResult {
    ok(testing::post_results(&s.store, &c.who, &input.results, "api").await?)
}

/// A LIS file body: CSV (UTF-8 or GBK) or xlsx, by its Content-Type.
struct LabFile(Format, Bytes);

impl FromRequest<AppState> for LabFile {
    type Rejection = AppError;

    async fn from_request(r: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(format) = Format::from_content_type(ct).filter(|f| *f != Format::Json) else {
            return Err(Error::conflict(
                "unsupported_media_type",
                format!("文件类型应为 text/csv 或 {XLSX_MIME}"),
                format!("the body must be text/csv or {XLSX_MIME}"),
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
        Ok(LabFile(format, bytes))
    }
}

async fn import_results(State(s): State<AppState>, c: Caller, LabFile(format, bytes): LabFile) -> ApiResult {
    c.who.require(Permission::TestingResult)?;
    ok(testing_import::import(&s.store, &c.who, format, &bytes).await?)
}

async fn rechecks(State(s): State<AppState>, c: Caller, Listing(NoFilter {}, page): Listing<NoFilter>) -> ApiResult {
    listed("orders", testing::open_orders(&s.store, &c.who, &page).await?)
}

/// A person's latest result, through the one interface every module reads.
async fn person_result(State(s): State<AppState>, c: Caller, Id(id): Id) -> ApiResult {
    c.who.require(Permission::TestingRead)?;
    let all = results::latest(&s.store, &[id]).await?;
    let r = all.get(&id).ok_or(Error::NotFound("result"))?;
    c.who.require_covers(&r.jurisdiction, None, "result")?;
    ok(r)
}
