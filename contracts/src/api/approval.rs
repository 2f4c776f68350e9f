//! Human approvals: a run parks at an approval step until someone with the right role approves,
//! rejects, edits-and-approves or (an owner) forces it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::JsonObject;
use crate::ids::{ApprovalId, RunId};
use crate::{Role, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    BrandPositioning,
    CampaignStrategy,
    AdBudgetScaling,
    InfluencerContract,
    AffiliateCommission,
}

impl ApprovalKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ApprovalKind::BrandPositioning => "brand_positioning",
            ApprovalKind::CampaignStrategy => "campaign_strategy",
            ApprovalKind::AdBudgetScaling => "ad_budget_scaling",
            ApprovalKind::InfluencerContract => "influencer_contract",
            ApprovalKind::AffiliateCommission => "affiliate_commission",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Edited,
    Forced,
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Edited => "edited",
            ApprovalStatus::Forced => "forced",
            ApprovalStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub id: ApprovalId,
    pub tenant_id: TenantId,
    pub run_id: Option<RunId>,
    pub step_name: Option<String>,
    pub kind: ApprovalKind,
    pub status: ApprovalStatus,
    /// What the agent proposes.
    pub artifact: JsonObject,
    /// What was decided (the edited artifact for `edit`), once decided.
    pub decided_artifact: Option<JsonObject>,
    pub allowed_roles: Vec<Role>,
    pub expires_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
    /// Approve an edited artifact; the edit is validated and is what gets persisted.
    Edit,
    /// An owner overrides a rule (e.g. an expired approval).
    Force,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Edit => "edit",
            Decision::Force => "force",
        }
    }
}

/// `POST /v1/approvals/{id}/decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub decision: Decision,
    /// Required for `edit`: the artifact as it should be persisted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A tenant's rule for deciding one kind of approval without a human (`GET/PUT
/// /v1/approval_policies/{kind}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    pub kind: ApprovalKind,
    pub rule: PolicyRule,
    pub enabled: bool,
    pub updated_at: DateTime<Utc>,
}

/// `PUT /v1/approval_policies/{kind}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicyPut {
    pub rule: PolicyRule,
}

/// The rules the runtime understands; anything else is refused rather than silently ignored:
/// `{"auto_approve": true}`, or `{"max_change_ratio": 0.1}` (approve changes of at most 10 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_change_ratio: Option<f64>,
}
