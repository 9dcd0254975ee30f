//! Who is calling. API clients send `Authorization: Bearer <token>`; browsers carry the
//! session cookie (HttpOnly, SameSite=Lax) and must echo the session's CSRF token on
//! every unsafe request (header `x-csrf-token`, or the `csrf` form field).

use crate::AppState;
use crate::middleware::{cookie, req};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use baton_domain::Error;
use baton_store::Principal;

pub const SESSION_COOKIE: &str = "baton_session";

/// An error that renders with the current request's id and language.
pub struct AppError(pub Error);

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let r = req();
        crate::error::ApiError { error: self.0, lang: r.lang, request_id: r.request_id }.into_response()
    }
}

/// An authenticated API caller.
pub struct Caller {
    pub who: Principal,
    /// Set when the caller came with a session cookie (browsers).
    pub session: Option<(String, String)>,
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub async fn from_parts(parts: &Parts, state: &AppState) -> Result<Caller, Error> {
    let rid = req().request_id;
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let secret = h.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or(Error::Unauthenticated)?;
        let who = baton_store::auth::token_principal(&state.store, secret.trim(), &rid).await?.ok_or(Error::Unauthenticated)?;
        return Ok(Caller { who, session: None });
    }
    let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(Error::Unauthenticated)?;
    let (who, info) = baton_store::auth::session(&state.store, token, &rid).await?.ok_or(Error::Unauthenticated)?;
    if is_unsafe(&parts.method) {
        let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !csrf_matches(sent, &info.csrf) {
            return Err(Error::conflict(
                "csrf_failed",
                "页面已过期或请求来源不明，请刷新后重试",
                "the form expired or the request's origin is unknown; reload and try again",
            ));
        }
    }
    Ok(Caller { who, session: Some((token.to_string(), info.csrf)) })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        from_parts(parts, state).await.map_err(AppError)
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A double-submit CSRF check: the token sent must equal the one expected, compared in
/// constant time, and neither may be empty (an absent cookie and an absent field are equal,
/// and must not pass).
pub fn csrf_matches(sent: &str, expected: &str) -> bool {
    !expected.is_empty() && constant_time_eq(sent.as_bytes(), expected.as_bytes())
}

pub fn session_cookie(token: &str, secure: bool, max_age_secs: i64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}
