//! Baton's domain: pure types and rules, no I/O and no async.
//!
//! Everything that crosses the edge of the system is parsed into a validated
//! newtype here (`IdNumber`, `Phone`, `DivisionCode`, …); past the edge nothing
//! is a raw string.

/// An enum of stable snake_case names with Chinese and English labels, as the API, the
/// database and the UI all need (`as_str`, `parse`, `label`, `ALL`). Defined before the
/// modules so that every one of them can use it.
macro_rules! labelled {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal, $zh:literal, $en:literal;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),* }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$v),*];
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),* } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some($name::$v),)* _ => None } }
            pub fn label(self, zh: bool) -> &'static str { match self { $($name::$v => if zh { $zh } else { $en }),* } }
        }
    };
}

pub mod alert;
pub mod classify;
pub mod clock;
pub mod code;
pub mod division;
pub mod error;
pub mod ident;
pub mod person;
pub mod policy;
pub mod risk;
pub mod role;
pub mod scope;
pub mod serde_time;
pub mod testing;
pub mod trip;
pub mod unit;
pub mod whitelist;

pub use error::{Error, FieldError, Result};
