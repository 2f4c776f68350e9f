//! The caller's own tenant (`GET /v1/tenant`) and the one-time answer to tenant creation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Slug, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub slug: Slug,
    pub status: TenantStatus,
    /// The public write key of the tracking script and pixel (`fwp_…`).
    pub write_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Printed once by `flywheel tenant create`: the only time the plain API key is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreated {
    pub tenant_id: TenantId,
    pub name: String,
    pub slug: Slug,
    pub api_key: String,
    pub api_key_prefix: String,
    pub role: crate::Role,
    /// The public write key of the tracking script and pixel (`fwp_…`).
    pub write_key: String,
}
