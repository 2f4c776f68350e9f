//! `campaigns`: a strategy, a budget in one currency, dates and channels.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::JsonObject;
use crate::ids::CampaignId;
use crate::{Money, Patch, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    AwaitingApproval,
    Active,
    Paused,
    Completed,
    Archived,
}

impl CampaignStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::AwaitingApproval => "awaiting_approval",
            CampaignStatus::Active => "active",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Archived => "archived",
        }
    }
}

/// Where a campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Whatsapp,
    Sms,
    Blog,
    Seo,
    Instagram,
    Facebook,
    Tiktok,
    Linkedin,
    X,
    Youtube,
    Pinterest,
    Reddit,
    GoogleAds,
    MetaAds,
    LinkedinAds,
    TiktokAds,
    Affiliate,
    Influencer,
    Community,
    LandingPage,
}

impl Channel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Whatsapp => "whatsapp",
            Channel::Sms => "sms",
            Channel::Blog => "blog",
            Channel::Seo => "seo",
            Channel::Instagram => "instagram",
            Channel::Facebook => "facebook",
            Channel::Tiktok => "tiktok",
            Channel::Linkedin => "linkedin",
            Channel::X => "x",
            Channel::Youtube => "youtube",
            Channel::Pinterest => "pinterest",
            Channel::Reddit => "reddit",
            Channel::GoogleAds => "google_ads",
            Channel::MetaAds => "meta_ads",
            Channel::LinkedinAds => "linkedin_ads",
            Channel::TiktokAds => "tiktok_ads",
            Channel::Affiliate => "affiliate",
            Channel::Influencer => "influencer",
            Channel::Community => "community",
            Channel::LandingPage => "landing_page",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub id: CampaignId,
    pub tenant_id: TenantId,
    pub name: String,
    pub objective: Option<String>,
    pub strategy: JsonObject,
    pub budget: Option<Money>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub channels: Vec<Channel>,
    pub status: CampaignStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignCreate {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CampaignStatus>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub objective: Patch<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub budget: Patch<Money>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub start_date: Patch<NaiveDate>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub end_date: Patch<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CampaignStatus>,
}
