//! Approvals: `GET /v1/approvals` (`?status=pending`), `GET /v1/approvals/{id}`,
//! `POST /v1/approvals/{id}/decision`. Who may decide is the approval's `allowed_roles`
//! (owners may always force); every decision is audited.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use flywheel_contracts::api::Page;
use flywheel_contracts::api::approval::{Approval, DecisionRequest};
use flywheel_contracts::ids::ApprovalId;
use flywheel_storage::approvals as repo;

use super::page;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ListParams, ValidJson, enum_param, path_id};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/decision", post(decide))
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
    auth: Auth,
    Path(id): Path<String>,
    ValidJson(request): ValidJson<DecisionRequest>,
) -> Result<Json<Approval>, ApiError> {
    if auth.0.role == flywheel_contracts::Role::Viewer {
        return Err(ApiError::Forbidden("the viewer role cannot decide approvals".into()));
    }
    let id: ApprovalId = path_id(&id)?;
    let decided = state.runtime().decide(auth.0.tenant_id, auth.0.role, &auth.actor(), id, &request).await?;
    Ok(Json(decided))
}
