//! JSON API routes of one module, merged under `/api/v1` by `crate::router`.

use crate::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
