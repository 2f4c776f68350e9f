//! `leads`: people who gave a way to reach them (an email or a phone number, or both).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::JsonObject;
use crate::ids::{AffiliateId, CampaignId, LandingPageId, LeadId};
use crate::phone::Phone;
use crate::{Email, Patch, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    New,
    Contacted,
    Qualified,
    Customer,
    Lost,
    Unsubscribed,
}

impl LeadStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            LeadStatus::New => "new",
            LeadStatus::Contacted => "contacted",
            LeadStatus::Qualified => "qualified",
            LeadStatus::Customer => "customer",
            LeadStatus::Lost => "lost",
            LeadStatus::Unsubscribed => "unsubscribed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lead {
    pub id: LeadId,
    pub tenant_id: TenantId,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub name: Option<String>,
    pub source: Option<String>,
    pub status: LeadStatus,
    pub attributes: JsonObject,
    pub landing_page_id: Option<LandingPageId>,
    pub campaign_id: Option<CampaignId>,
    pub affiliate_id: Option<AffiliateId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadCreate {
    /// Unique within the tenant (case-insensitive). At least one of email and phone is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LeadStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page_id: Option<LandingPageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<CampaignId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<AffiliateId>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadUpdate {
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub email: Patch<Email>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub phone: Patch<Phone>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub name: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub source: Patch<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LeadStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub landing_page_id: Patch<LandingPageId>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub campaign_id: Patch<CampaignId>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub affiliate_id: Patch<AffiliateId>,
}
