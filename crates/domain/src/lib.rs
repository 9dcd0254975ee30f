//! Baton's domain: pure types and rules, no I/O and no async.
//!
//! Everything that crosses the edge of the system is parsed into a validated
//! newtype here (`IdNumber`, `Phone`, `DivisionCode`, …); past the edge nothing
//! is a raw string.

pub mod classify;
pub mod clock;
pub mod division;
pub mod error;
pub mod ident;
pub mod policy;
pub mod risk;
pub mod role;
pub mod scope;
pub mod trip;
pub mod unit;
pub mod whitelist;

pub use error::{Error, FieldError, Result};
