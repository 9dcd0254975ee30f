//! Rendering the one domain error: JSON for the API. Internal errors are logged with the
//! request id and never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_domain::Error;
use serde_json::json;

use crate::i18n::Lang;

/// A domain error on its way out of an API handler, with the request's language and id.
pub struct ApiError {
    pub error: Error,
    pub lang: Lang,
    pub request_id: String,
}

/// What a throttled client is told to wait before trying again.
pub const RETRY_AFTER_SECONDS: u32 = 60;

pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Unauthenticated => StatusCode::UNAUTHORIZED,
        Error::Forbidden => StatusCode::FORBIDDEN,
        Error::Conflict { code: "payload_too_large", .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Conflict { code: "unsupported_media_type", .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Conflict { code: "method_not_allowed", .. } => StatusCode::METHOD_NOT_ALLOWED,
        Error::Conflict { code: "malformed_json" | "bad_request", .. } => StatusCode::BAD_REQUEST,
        Error::Conflict { code: "login_failed", .. } => StatusCode::UNAUTHORIZED,
        Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn error_body(e: &Error, lang: Lang, request_id: &str) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = e
        .fields()
        .iter()
        .map(|f| (f.field.clone(), json!({"code": f.code, "message": if lang.zh() { &f.zh } else { &f.en }, "zh": f.zh, "en": f.en})))
        .collect();
    json!({
        "error": e.code(),
        "message": e.message(lang.zh()),
        "message_zh": e.message(true),
        "message_en": e.message(false),
        "fields": fields,
        "request_id": request_id,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Error::Internal(msg) = &self.error {
            tracing::error!(request_id = %self.request_id, error = %msg, "internal error");
        }
        let status = status_of(&self.error);
        let mut res = (status, axum::Json(error_body(&self.error, self.lang, &self.request_id))).into_response();
        let headers = res.headers_mut();
        match status {
            // The unread rest of an oversized body is still on the wire: the connection cannot
            // carry another request, so say so rather than let a client reuse it and fail.
            StatusCode::PAYLOAD_TOO_LARGE => {
                headers.insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        res
    }
}

/// Parse a JSON body: malformed JSON, wrong types and unknown fields become field errors
/// with the path of the offending field.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::conflict("malformed_json", "请求体为空，应为 JSON", "the request body is empty; JSON expected"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut *de) {
        // Anything after the value but whitespace (a second value, a stray brace) is refused:
        // the client did not send what it meant.
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(e) => Err(Error::conflict("malformed_json", format!("JSON 格式错误：{e}"), format!("malformed JSON: {e}"))),
        },
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(Error::conflict("malformed_json", format!("JSON 格式错误：{inner}"), format!("malformed JSON: {inner}")));
            }
            let msg = inner.to_string();
            let (code, zh) = if msg.starts_with("unknown field") {
                ("unknown_field", "不认识的字段")
            } else if msg.starts_with("missing field") {
                ("required", "缺少必填字段")
            } else {
                ("invalid_type", "类型或取值不正确")
            };
            // A missing or unknown field is reported at its own name, not its parent's.
            let field = match (code, quoted(&msg)) {
                ("unknown_field" | "required", Some(name)) if path == "." => name.to_string(),
                ("unknown_field" | "required", Some(name)) if !path.ends_with(name) => format!("{path}.{name}"),
                _ => path,
            };
            Err(Error::Invalid(vec![baton_domain::FieldError::new(field, code, format!("{zh}:{msg}"), msg)]))
        }
    }
}

fn quoted(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        n: u32,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<T>(b"{\"name\": 1, \"n\": 2}").unwrap_err();
        assert_eq!(e.fields()[0].field, "name");
        assert_eq!(e.fields()[0].code, "invalid_type");
        let e = parse_json::<T>(b"{\"name\": \"a\", \"n\": 2, \"x\": 1}").unwrap_err();
        assert_eq!((e.fields()[0].field.as_str(), e.fields()[0].code), ("x", "unknown_field"));
        let e = parse_json::<T>(b"{\"name\": \"a\"}").unwrap_err();
        assert_eq!((e.fields()[0].field.as_str(), e.fields()[0].code), ("n", "required"));
        assert_eq!(parse_json::<T>(b"{\"name\": ").unwrap_err().code(), "malformed_json");
        assert_eq!(parse_json::<T>(b"").unwrap_err().code(), "malformed_json");
        assert_eq!(status_of(&parse_json::<T>(b"[").unwrap_err()), StatusCode::BAD_REQUEST);
    }
}
