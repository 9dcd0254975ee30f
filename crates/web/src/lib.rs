//! Baton's HTTP side: the JSON API under `/api/v1`, the server-rendered UI, and the
//! operational endpoints (`/healthz`, `/readyz`, `/metrics`). Every asset is served by the
//! binary; no external CDN.

pub mod api;
pub mod api_codes;
pub mod api_freight;
pub mod api_persons;
pub mod api_risk;
pub mod api_rounds;
pub mod api_sites;
pub mod api_testing;
pub mod api_venues;
pub mod api_whitelist;
pub mod auth;
pub mod error;
pub mod i18n;
pub mod metrics;
pub mod middleware;
pub mod ui;
pub mod ui_codes;
pub mod ui_escorts;
pub mod ui_freight;
pub mod ui_risk;
pub mod ui_rounds;
pub mod ui_sites;
pub mod ui_testing;
pub mod ui_venues;
pub mod ui_whitelist;

use axum::Router;
use baton_store::Store;
use std::sync::Arc;

/// The largest file an import route takes (only those routes: every other body keeps
/// `WebConfig::max_body_bytes`). A 100,000-row export is 10 to 20 MB as CSV; leave room.
pub const UPLOAD_MAX_BYTES: usize = 64 << 20;

#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Mark cookies `Secure` (set when served over HTTPS).
    pub secure_cookies: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self { secure_cookies: false, max_body_bytes: 1 << 20, metrics_token: None }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<WebConfig>,
    pub metrics: Arc<metrics::Metrics>,
}

pub fn router(state: AppState) -> Router {
    // One route file per module; `tests/openapi.rs` reads them all.
    let api = api::routes()
        .merge(api_freight::routes())
        .merge(api_sites::routes())
        .merge(api_risk::routes())
        .merge(api_whitelist::routes())
        .merge(api_persons::routes())
        .merge(api_testing::routes())
        .merge(api_rounds::routes())
        .merge(api_codes::routes())
        .merge(api_venues::routes());
    Router::new()
        .nest("/api/v1", api)
        .merge(ui::routes())
        .merge(ui_freight::routes())
        .merge(ui_escorts::routes())
        .merge(ui_sites::routes())
        .merge(ui_whitelist::routes())
        .merge(ui_risk::routes())
        .merge(ui_codes::routes())
        .merge(ui_venues::routes())
        .merge(ui_rounds::routes())
        .merge(ui_testing::routes())
        .merge(metrics::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::observe))
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(middleware::panic_response))
        .with_state(state)
}
