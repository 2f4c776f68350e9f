//! Roles of an API key or user within its tenant, and what each may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::InvalidValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including keys, policies and forced approvals.
    Owner,
    /// Creates and edits marketing data; cannot decide approvals.
    Marketer,
    /// Reads everything and decides approvals.
    Approver,
    /// Reads only.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Marketer, Role::Approver, Role::Viewer];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Marketer => "marketer",
            Role::Approver => "approver",
            Role::Viewer => "viewer",
        }
    }
    /// May create, update or delete tenant data (brand, personas, campaigns, leads, …).
    pub fn can_write(&self) -> bool {
        matches!(self, Role::Owner | Role::Marketer)
    }
    /// May manage API keys and tenant settings.
    pub fn can_administer(&self) -> bool {
        matches!(self, Role::Owner)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| InvalidValue::new("role is one of owner, marketer, approver, viewer"))
    }
}
