//! Approvals: `GET /v1/approvals` (`?status=pending`), `GET /v1/approvals/{id}`,
//! `POST /v1/approvals/{id}/decision`, `GET|PUT|DELETE /v1/approval_policies/{kind}`. Who may decide is the approval's `allowed_roles`
//! (owners may always force); every decision is audited.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use flywheel_contracts::api::Page;
use flywheel_contracts::api::approval::{
    Approval, ApprovalKind, ApprovalPolicy, ApprovalPolicyPut, DecisionRequest, PolicyRule,
};
use flywheel_contracts::ids::ApprovalId;
use flywheel_storage::approvals as repo;

use super::page;
use crate::AppState;
use crate::auth::{Auth, Decider, Owner};
use crate::error::ApiError;
use crate::extract::{ListParams, ValidJson, enum_param, path_id};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/decision", post(decide))
        .route("/v1/approval_policies/{kind}", get(show_policy).put(put_policy).delete(delete_policy))
}

fn policy_kind(raw: &str) -> Result<ApprovalKind, ApiError> {
    enum_param(raw).ok_or(ApiError::NotFound)
}

async fn show_policy(
    State(state): State<AppState>,
    auth: Auth,
    Path(kind): Path<String>,
) -> Result<Json<ApprovalPolicy>, ApiError> {
    let kind = policy_kind(&kind)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let (rule, enabled, updated_at) = repo::policy_record(&mut tx, kind).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    let rule: PolicyRule = serde_json::from_value(serde_json::Value::Object(rule)).map_err(|e| {
        tracing::error!(error = %e, "Stored approval policy does not parse.");
        ApiError::Internal
    })?;
    Ok(Json(ApprovalPolicy { kind, rule, enabled, updated_at }))
}

/// Only owners change policies: a policy decides approvals in their name. Audited.
async fn put_policy(
    State(state): State<AppState>,
    Owner(auth): Owner,
    Path(kind): Path<String>,
    ValidJson(body): ValidJson<ApprovalPolicyPut>,
) -> Result<Json<ApprovalPolicy>, ApiError> {
    let kind = policy_kind(&kind)?;
    let rule = serde_json::to_value(&body.rule).ok().and_then(|v| v.as_object().cloned()).ok_or(ApiError::Internal)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    repo::set_policy(&mut tx, kind, Some(&rule), &auth.actor()).await?;
    let (_, enabled, updated_at) = repo::policy_record(&mut tx, kind).await?.ok_or(ApiError::Internal)?;
    tx.commit().await?;
    Ok(Json(ApprovalPolicy { kind, rule: body.rule, enabled, updated_at }))
}

async fn delete_policy(
    State(state): State<AppState>,
    Owner(auth): Owner,
    Path(kind): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let kind = policy_kind(&kind)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    repo::policy_record(&mut tx, kind).await?.ok_or(ApiError::NotFound)?;
    repo::set_policy(&mut tx, kind, None, &auth.actor()).await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn list(State(state): State<AppState>, auth: Auth, params: ListParams) -> Result<Json<Page<Approval>>, ApiError> {
    let status = params.filter("status", enum_param)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let rows = repo::list(&mut tx, status, params.query).await?;
    tx.commit().await?;
    Ok(page(rows))
}

async fn show(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> Result<Json<Approval>, ApiError> {
    let id: ApprovalId = path_id(&id)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let approval = repo::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(approval))
}

async fn decide(
    State(state): State<AppState>,
    Decider(auth): Decider,
    Path(id): Path<String>,
    ValidJson(request): ValidJson<DecisionRequest>,
) -> Result<Json<Approval>, ApiError> {
    let id: ApprovalId = path_id(&id)?;
    let decided = state.runtime().decide(auth.0.tenant_id, auth.0.role, &auth.actor(), id, &request).await?;
    Ok(Json(decided))
}
