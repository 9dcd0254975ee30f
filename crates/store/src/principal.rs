//! Who is acting: a signed-in user or an API token, with their scope and permissions,
//! and the request id that ties log lines and audit entries together.

use baton_domain::Error;
use baton_domain::role::{Permission, Permissions};
use baton_domain::scope::Scope;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
    /// Username, or `token:<name>` for machine clients, or `system`.
    pub name: String,
    pub display_name: String,
    pub unit_id: Option<Uuid>,
    pub role: String,
    pub scope: Scope,
    pub permissions: Permissions,
    pub request_id: String,
}

impl Principal {
    /// The binary itself (migrations, demo, jobs): everything, everywhere.
    pub fn system(request_id: impl Into<String>) -> Self {
        Principal {
            user_id: None,
            token_id: None,
            name: "system".into(),
            display_name: "system".into(),
            unit_id: None,
            role: "system".into(),
            scope: Scope::Division { code: String::new() },
            permissions: Permissions::all(),
            request_id: request_id.into(),
        }
    }

    pub fn require(&self, p: Permission) -> Result<(), Error> {
        if self.permissions.has(p) { Ok(()) } else { Err(Error::Forbidden) }
    }

    pub fn can(&self, p: Permission) -> bool {
        self.permissions.has(p)
    }

    /// Where what this principal creates belongs: their scope's division, and their unit when
    /// they are scoped to it.
    pub fn home(&self) -> (String, Option<Uuid>) {
        match &self.scope {
            Scope::Division { code } => (code.clone(), None),
            Scope::Unit { unit_id, division } => (division.clone(), Some(*unit_id)),
        }
    }

    /// For what binds or reaches the whole county (policy, recomputing every code): a scope
    /// narrower than the county may not.
    pub fn require_county_wide(&self) -> Result<(), Error> {
        if self.scope.is_county_wide() { Ok(()) } else { Err(Error::Forbidden) }
    }

    /// A row outside the scope is reported as not found, so its existence does not leak.
    pub fn require_covers(&self, jurisdiction: &str, unit: Option<Uuid>, what: &'static str) -> Result<(), Error> {
        if self.scope.covers(jurisdiction, unit) { Ok(()) } else { Err(Error::NotFound(what)) }
    }
}
