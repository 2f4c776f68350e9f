//! `brand_core`: a tenant's positioning, tone and visual/verbal guidelines.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::JsonObject;
use crate::TenantId;
use crate::ids::BrandCoreId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrandStatus {
    Draft,
    Approved,
    Archived,
}

impl BrandStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            BrandStatus::Draft => "draft",
            BrandStatus::Approved => "approved",
            BrandStatus::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandCore {
    pub id: BrandCoreId,
    pub tenant_id: TenantId,
    pub name: String,
    pub positioning: String,
    pub tone: String,
    pub guidelines: JsonObject,
    pub status: BrandStatus,
    /// Bumped by every update.
    pub version: i32,
    pub embedding_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandCoreCreate {
    /// Defaults to "primary"; unique within the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub positioning: String,
    pub tone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidelines: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BrandStatus>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandCoreUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positioning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidelines: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BrandStatus>,
}
