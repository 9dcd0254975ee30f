//! Per-request context (request id, language), security headers, and metrics.

use crate::AppState;
use crate::i18n::Lang;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct ReqCtx {
    pub request_id: String,
    pub lang: Lang,
}

tokio::task_local! {
    static REQ: ReqCtx;
}

/// The current request's id and language (default outside a request).
pub fn req() -> ReqCtx {
    REQ.try_with(Clone::clone).unwrap_or_default()
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, "lang")
        .and_then(Lang::parse)
        .unwrap_or_else(|| Lang::from_accept(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("")))
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Keep a caller's request id if it looks like one; otherwise make one.
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let lang = lang_of(req.headers());
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let ctx = ReqCtx { request_id: request_id.clone(), lang };
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, axum::body::Body::new(DrainOnDrop(Some(body))));
    let in_flight = InFlight::enter(&state.metrics.in_flight);
    let mut resp = REQ.scope(ctx, next.run(req)).await;
    drop(in_flight);
    let elapsed = started.elapsed();
    state.metrics.observe(&route, resp.status().as_u16(), elapsed);
    tracing::info!(target: "baton::http", request_id = %request_id, method = %method, route = %route, status = resp.status().as_u16(), micros = elapsed.as_micros() as u64, "request");
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(self), geolocation=(), microphone=()"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A request body that, when the handler leaves it unread (a request refused before its body
/// was needed: not signed in, no permission, a route that takes none), is read to its end by a
/// task of its own. Otherwise hyper closes the connection after the answer, under a keep-alive
/// client that has already sent its next request on it. Bodies larger than the limit are not
/// read (the connection closes then, as it must).
struct DrainOnDrop(Option<axum::body::Body>);

/// How much of an unread body is read away, and for how long at most.
const DRAIN_MAX: usize = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

impl http_body::Body for DrainOnDrop {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut().0.as_mut() {
            Some(b) => std::pin::Pin::new(b).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.0.take() else { return };
        if http_body::Body::is_end_stream(&body) || http_body::Body::size_hint(&body).lower() > DRAIN_MAX as u64 {
            return;
        }
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let _ = tokio::time::timeout(DRAIN_TIME, axum::body::to_bytes(body, DRAIN_MAX)).await;
            });
        }
    }
}

/// Counts a request in flight until it is answered or dropped: a client that hangs up drops
/// the request's future at whatever `.await` it was, and the count must go down then too.
struct InFlight<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicI64) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A panic in a handler becomes a 500 with the stable error shape, never a dropped connection.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    let body = serde_json::json!({"error": "internal", "message": "服务器内部错误，已记录 / Internal error; it has been logged", "fields": {}});
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}
