//! `GET /v1/model_budgets`, `PUT|DELETE /v1/model_budgets/{period}`: the tenant's language-model
//! token budgets and what it has spent in the current day and month. Only owners change budgets;
//! every change is audited. Without a budget of its own a tenant has the node's default
//! (`FLYWHEEL_LLM_MONTHLY_TOKENS`, `FLYWHEEL_LLM_DAILY_TOKENS`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use flywheel_contracts::api::model_budget::{BudgetPeriod, ModelBudget, ModelBudgetPut, ModelBudgets};
use flywheel_storage::model_usage::{self as repo, BudgetPeriod as StoredPeriod};
use flywheel_storage::{TenantTx, audit};
use serde_json::json;

use crate::AppState;
use crate::auth::{Auth, Owner};
use crate::error::ApiError;
use crate::extract::{ValidJson, enum_param};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/model_budgets", get(list))
        .route("/v1/model_budgets/{period}", axum::routing::put(put).delete(delete))
}

fn stored(period: BudgetPeriod) -> StoredPeriod {
    match period {
        BudgetPeriod::Day => StoredPeriod::Day,
        BudgetPeriod::Month => StoredPeriod::Month,
    }
}

fn period(raw: &str) -> Result<BudgetPeriod, ApiError> {
    enum_param(raw).ok_or(ApiError::NotFound)
}

async fn budgets(tx: &mut TenantTx) -> Result<ModelBudgets, ApiError> {
    // Calls in flight count until settled; one that never settles stops counting after the
    // reservation lifetime the model layer uses.
    let ttl = flywheel_actors::model::BudgetConfig::default().reservation_ttl;
    let own = repo::budgets(tx).await?;
    let mut data = Vec::new();
    for p in [BudgetPeriod::Day, BudgetPeriod::Month] {
        let limit = own.iter().find(|b| b.period == stored(p));
        data.push(ModelBudget {
            period: p,
            token_limit: limit.map(|b| b.token_limit),
            used: repo::charged(tx, stored(p), ttl).await?,
            updated_at: limit.map(|b| b.updated_at),
        });
    }
    Ok(ModelBudgets { data })
}

async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<ModelBudgets>, ApiError> {
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let out = budgets(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(out))
}

async fn put(
    State(state): State<AppState>,
    Owner(auth): Owner,
    Path(raw): Path<String>,
    ValidJson(body): ValidJson<ModelBudgetPut>,
) -> Result<Json<ModelBudgets>, ApiError> {
    let p = period(&raw)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    repo::set_budget(&mut tx, stored(p), body.token_limit).await?;
    audit::record(
        &mut tx,
        &auth.actor(),
        "model_budget.set",
        "model_budget",
        &raw,
        None,
        Some(json!({"token_limit": body.token_limit})),
    )
    .await?;
    let out = budgets(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(out))
}

async fn delete(
    State(state): State<AppState>,
    Owner(auth): Owner,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = period(&raw)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    if !repo::clear_budget(&mut tx, stored(p)).await? {
        return Err(ApiError::NotFound);
    }
    audit::record(&mut tx, &auth.actor(), "model_budget.clear", "model_budget", &raw, None, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
