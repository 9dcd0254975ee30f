//! Jurisdiction scope: what part of the county a user or token may see and change.
//! The store turns it into a SQL condition on the row's jurisdiction path; it is never
//! applied by filtering after a fetch.

use crate::division::prefix_end;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Everything under a division code (the county, or one township's subtree).
    Division { code: String },
    /// Only the rows of one unit.
    Unit { unit_id: Uuid, division: String },
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Division { .. } => "division",
            Scope::Unit { .. } => "unit",
        }
    }

    /// Whether a row with this jurisdiction path (owned by `unit`) is inside the scope.
    pub fn covers(&self, jurisdiction: &str, unit: Option<Uuid>) -> bool {
        match self {
            Scope::Division { code } => jurisdiction.starts_with(code.as_str()),
            Scope::Unit { unit_id, .. } => unit == Some(*unit_id),
        }
    }

    /// Whether this scope may grant `other` (a user may only create users and tokens inside their own scope).
    pub fn contains_scope(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Division { code }, Scope::Division { code: c }) => c.starts_with(code.as_str()),
            (Scope::Division { code }, Scope::Unit { division, .. }) => division.starts_with(code.as_str()),
            (Scope::Unit { unit_id, .. }, Scope::Unit { unit_id: u, .. }) => unit_id == u,
            (Scope::Unit { .. }, Scope::Division { .. }) => false,
        }
    }

    /// Whether the scope takes in the whole county (or more): a division code of county level
    /// (6 digits) or shorter. County-wide rules (policy, the risk-area list, roles held across
    /// the county) and county-wide records are only for such scopes.
    pub fn is_county_wide(&self) -> bool {
        matches!(self, Scope::Division { code } if code.len() <= 6)
    }

    /// The half-open range `[lo, hi)` of jurisdiction paths inside a division scope.
    pub fn range(&self) -> Option<(String, String)> {
        match self {
            Scope::Division { code } => Some((code.clone(), prefix_end(code))),
            Scope::Unit { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The SQL range condition and the in-memory check agree for every code and path.
        #[test]
        fn range_and_covers_agree(code in "[0-9]{0,12}", path in "[0-9]{0,15}") {
            let s = Scope::Division { code: code.clone() };
            let (lo, hi) = s.range().unwrap();
            let in_range = lo.as_str() <= path.as_str() && path.as_str() < hi.as_str();
            prop_assert_eq!(in_range, s.covers(&path, None));
        }
    }

    #[test]
    fn division_scope_covers_its_subtree_only() {
        let s = Scope::Division { code: "140427101".into() };
        assert!(s.covers("140427101", None));
        assert!(s.covers("140427101203", None));
        assert!(!s.covers("140427102", None));
        assert!(!s.covers("1404271", None));
        let county = Scope::Division { code: "140427".into() };
        assert!(county.contains_scope(&s));
        assert!(!s.contains_scope(&county));
        let u = Uuid::now_v7();
        let unit = Scope::Unit { unit_id: u, division: "140427101".into() };
        assert!(s.contains_scope(&unit));
        assert!(unit.covers("140427", Some(u)));
        assert!(!unit.covers("140427101", Some(Uuid::now_v7())));
        assert!(county.is_county_wide() && Scope::Division { code: String::new() }.is_county_wide());
        assert!(!s.is_county_wide() && !unit.is_county_wide());
    }
}
