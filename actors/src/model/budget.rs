//! Per-tenant token accounting and budgets around a provider. Before each call the call's worst
//! case (a conservative prompt estimate plus `max_output_tokens`) is checked against the tenant's
//! budgets and reserved, under a per-tenant lock; a call the budget cannot cover is refused with
//! [`ModelError::BudgetExhausted`] before anything is sent. After the call the reservation is
//! settled with the tokens the provider reported, or released if it spent nothing.

use std::time::Duration;

use flywheel_storage::Database;
use flywheel_storage::model_usage::{self, BudgetPeriod, NewUsage};
use tracing::{info, warn};
use uuid::Uuid;

use super::{LanguageModel, ModelError, ModelRequest, ModelResponse, prompt};

/// The node's budget defaults. A tenant's own `model_budgets` row for a period overrides the
/// default for that period.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// Tokens a tenant may spend per calendar month (UTC) when it has no budget of its own
    /// (`FLYWHEEL_LLM_MONTHLY_TOKENS`; default 2,000,000; `None`: unlimited).
    pub default_monthly_tokens: Option<u64>,
    /// Tokens a tenant may spend per calendar day (UTC) when it has no daily budget of its own
    /// (`FLYWHEEL_LLM_DAILY_TOKENS`; default unlimited).
    pub default_daily_tokens: Option<u64>,
    /// How long an unsettled reservation keeps counting. A reservation is settled when its call
    /// returns; one that never is belongs to a process that died mid-call. Keep it above the
    /// provider's timeout times its attempts (default 15 minutes).
    pub reservation_ttl: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            default_monthly_tokens: Some(2_000_000),
            default_daily_tokens: None,
            reservation_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// `M` with a per-tenant token budget and accounting in PostgreSQL.
#[derive(Debug)]
pub struct Budgeted<M> {
    inner: M,
    db: Database,
    config: BudgetConfig,
}

impl<M: LanguageModel> Budgeted<M> {
    pub fn new(inner: M, db: Database, config: BudgetConfig) -> Self {
        Self { inner, db, config }
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The call's worst case in tokens: the prompt as it will be sent plus the output cap.
    pub fn worst_case(request: &ModelRequest) -> u64 {
        prompt::estimate_prompt_tokens(&prompt::messages(request)) + u64::from(request.max_output_tokens)
    }

    /// Checks every budget that applies and, if all can cover `requested`, reserves it.
    async fn reserve(&self, request: &ModelRequest, requested: u64) -> Result<Uuid, ModelError> {
        let mut tx = self.db.begin(request.tenant).await?;
        model_usage::lock_budget(&mut tx).await?;
        let own = model_usage::budgets(&mut tx).await?;
        for period in BudgetPeriod::ALL {
            let limit = match own.iter().find(|b| b.period == period) {
                Some(b) => Some(b.token_limit),
                None => match period {
                    BudgetPeriod::Day => self.config.default_daily_tokens,
                    BudgetPeriod::Month => self.config.default_monthly_tokens,
                },
            };
            let Some(limit) = limit else { continue };
            let used = model_usage::charged(&mut tx, period, self.config.reservation_ttl).await?;
            if used.saturating_add(requested) > limit {
                info!(
                    tenant_id = %request.tenant,
                    task = %request.task,
                    %period, limit, used, requested,
                    "Model call refused: token budget exhausted."
                );
                return Err(ModelError::BudgetExhausted { tenant: request.tenant, period, limit, used, requested });
            }
        }
        let id = model_usage::reserve(
            &mut tx,
            &NewUsage {
                run_id: request.run,
                task: request.task.as_str(),
                provider: self.inner.provider(),
                model: self.inner.model_name(),
                reserved_tokens: requested,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Settles the reservation with what the call spent; a failure to do so is logged, not
    /// returned: the answer is paid for already, and the reservation stops counting after the TTL.
    async fn settle(&self, request: &ModelRequest, id: Uuid, result: &Result<ModelResponse, ModelError>) {
        let outcome = async {
            let mut tx = self.db.begin(request.tenant).await?;
            match result {
                Ok(r) => {
                    model_usage::settle(&mut tx, id, &r.model, r.usage.prompt_tokens, r.usage.completion_tokens, None)
                        .await?
                }
                Err(e) => match e.usage() {
                    Some(u) => {
                        let error = e.to_string();
                        let model = self.inner.model_name();
                        model_usage::settle(&mut tx, id, model, u.prompt_tokens, u.completion_tokens, Some(&error))
                            .await?
                    }
                    None => model_usage::release(&mut tx, id, &e.to_string()).await?,
                },
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = outcome {
            warn!(tenant_id = %request.tenant, usage_id = %id, error = %e, "Could not settle model usage.");
        }
    }
}

impl<M: LanguageModel> LanguageModel for Budgeted<M> {
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let requested = Self::worst_case(request);
        let id = self.reserve(request, requested).await?;
        let result = self.inner.complete(request).await;
        self.settle(request, id, &result).await;
        result
    }

    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn model_name(&self) -> &str {
        self.inner.model_name()
    }
}
