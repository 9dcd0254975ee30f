//! One domain error with stable snake_case codes and messages in Chinese and English.
//! The web layer renders it as JSON for the API and as an HTML message for the UI.

use serde::Serialize;

/// A problem with one input field, with a stable code and messages in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub zh: String,
    pub en: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Self {
        Self { field: field.into(), code, zh: zh.into(), en: en.into() }
    }

    pub fn required(field: impl Into<String>) -> Self {
        Self::new(field, "required", "必填", "is required")
    }

    /// The same error attached to another field name (e.g. `phone` → `crew[0].phone`).
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid input: {0:?}")]
    Invalid(Vec<FieldError>),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("not signed in")]
    Unauthenticated,
    #[error("forbidden")]
    Forbidden,
    #[error("conflict: {code}")]
    Conflict { code: &'static str, zh: String, en: String },
    #[error("too many attempts")]
    RateLimited,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn field(field: impl Into<String>, code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldError::new(field, code, zh, en)])
    }

    pub fn conflict(code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Self {
        Error::Conflict { code, zh: zh.into(), en: en.into() }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }

    /// Stable machine-readable code, part of the API contract.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid_input",
            Error::NotFound(_) => "not_found",
            Error::Unauthenticated => "unauthenticated",
            Error::Forbidden => "forbidden",
            Error::Conflict { code, .. } => code,
            Error::RateLimited => "rate_limited",
            Error::Internal(_) => "internal",
        }
    }

    /// The message shown to a person, in Chinese or English.
    pub fn message(&self, chinese: bool) -> String {
        let (z, e): (&str, String) = match self {
            Error::Invalid(_) => ("输入有误，请检查标出的字段", "Some fields are invalid".into()),
            Error::NotFound(what) => ("未找到，或不在您的辖区内", format!("{what} not found, or outside your jurisdiction")),
            Error::Unauthenticated => ("请先登录", "Please sign in".into()),
            Error::Forbidden => ("您没有此操作的权限", "You do not have permission for this".into()),
            Error::Conflict { zh, en, .. } => return if chinese { zh.clone() } else { en.clone() },
            Error::RateLimited => ("尝试次数过多，请稍后再试", "Too many attempts; try again later".into()),
            Error::Internal(_) => ("服务器内部错误，已记录", "Internal error; it has been logged".into()),
        };
        if chinese { z.to_string() } else { e }
    }

    pub fn fields(&self) -> &[FieldError] {
        match self {
            Error::Invalid(f) => f,
            _ => &[],
        }
    }
}
