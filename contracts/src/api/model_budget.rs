//! Language-model token budgets of the caller's tenant (`GET /v1/model_budgets`,
//! `PUT|DELETE /v1/model_budgets/{period}`): how much it may spend per day and per month, and
//! how much it has spent in the current period.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// The current calendar day, UTC.
    Day,
    /// The current calendar month, UTC.
    Month,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBudget {
    pub period: BudgetPeriod,
    /// The tenant's own limit in tokens; `null` when the node's default applies.
    pub token_limit: Option<u64>,
    /// Tokens spent (or reserved by calls in flight) in the current period.
    pub used: u64,
    /// When the tenant's own limit was last set; `null` without one.
    pub updated_at: Option<DateTime<Utc>>,
}

/// `GET /v1/model_budgets`: both periods, always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBudgets {
    pub data: Vec<ModelBudget>,
}

/// `PUT /v1/model_budgets/{period}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBudgetPut {
    /// Tokens the tenant may spend in the period; 0 stops every model call.
    pub token_limit: u64,
}
