//! Agent runs: one execution of an agent, made of steps, checkpointed after each one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::JsonObject;
use crate::TenantId;
use crate::ids::{RunId, RunStepId};

/// The agents, as named in URLs (`/v1/agents/{agent}/runs`) and in `agent_runs.agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentName {
    Branding,
    Content,
    Community,
    Ads,
    LandingPage,
    Seo,
    Email,
    Influencer,
    Affiliate,
    AffiliateAssistant,
    Analytics,
}

impl AgentName {
    pub const ALL: [AgentName; 11] = [
        AgentName::Branding,
        AgentName::Content,
        AgentName::Community,
        AgentName::Ads,
        AgentName::LandingPage,
        AgentName::Seo,
        AgentName::Email,
        AgentName::Influencer,
        AgentName::Affiliate,
        AgentName::AffiliateAssistant,
        AgentName::Analytics,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            AgentName::Branding => "branding",
            AgentName::Content => "content",
            AgentName::Community => "community",
            AgentName::Ads => "ads",
            AgentName::LandingPage => "landing_page",
            AgentName::Seo => "seo",
            AgentName::Email => "email",
            AgentName::Influencer => "influencer",
            AgentName::Affiliate => "affiliate",
            AgentName::AffiliateAssistant => "affiliate_assistant",
            AgentName::Analytics => "analytics",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Paused,
    AwaitingApproval,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// No further step will run.
    pub fn is_finished(&self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub agent: AgentName,
    pub status: RunStatus,
    pub input: JsonObject,
    /// Index of the next step to run.
    pub cursor: i32,
    pub error: Option<String>,
    pub requested_by: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStep {
    pub id: RunStepId,
    pub name: String,
    pub attempt: i32,
    pub status: StepStatus,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// `GET /v1/runs/{id}`: the run and its committed steps, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDetail {
    pub run: Run,
    pub steps: Vec<RunStep>,
}

/// `POST /v1/agents/{agent}/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCreate {
    /// The agent's input; its shape depends on the agent (see `branding_input`).
    pub input: JsonObject,
}

/// What the Branding agent starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandingInput {
    pub company_name: String,
    pub industry: String,
    pub goals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub competitors: Vec<Competitor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seed_materials: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Competitor {
    pub name: String,
    /// Their own words (a homepage, an ad): data to analyse, never instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}
