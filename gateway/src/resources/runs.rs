//! Agent runs: `POST /v1/agents/{agent}/runs`, `GET /v1/runs` (`?agent=`, `?status=`),
//! `GET /v1/runs/{id}` (with its steps), `POST /v1/runs/{id}/pause|resume|cancel`.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use flywheel_contracts::api::Page;
use flywheel_contracts::api::run::{AgentName, Run, RunCreate, RunDetail};
use flywheel_contracts::ids::RunId;
use flywheel_storage::runs::{self as repo, RunFilter};

use super::{created, page};
use crate::AppState;
use crate::auth::{Auth, Writer};
use crate::error::ApiError;
use crate::extract::{ListParams, ValidJson, enum_param, path_id};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agents/{agent}/runs", post(create))
        .route("/v1/runs", get(list))
        .route("/v1/runs/{id}", get(show))
        .route("/v1/runs/{id}/pause", post(pause))
        .route("/v1/runs/{id}/resume", post(resume))
        .route("/v1/runs/{id}/cancel", post(cancel))
}

async fn create(
    State(state): State<AppState>,
    Writer(auth): Writer,
    Path(agent): Path<String>,
    ValidJson(body): ValidJson<RunCreate>,
) -> Result<Response, ApiError> {
    let agent = AgentName::parse(&agent).ok_or(ApiError::NotFound)?;
    let run =
        state.runtime().submit(auth.0.tenant_id, agent, &body.input, &format!("api_key:{}", auth.0.key_id)).await?;
    Ok(created("runs", run.id, run))
}

async fn list(State(state): State<AppState>, auth: Auth, params: ListParams) -> Result<Json<Page<Run>>, ApiError> {
    let filter =
        RunFilter { agent: params.filter("agent", AgentName::parse)?, status: params.filter("status", enum_param)? };
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let rows = repo::list(&mut tx, &filter, params.query).await?;
    tx.commit().await?;
    Ok(page(rows))
}

async fn show(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> Result<Json<RunDetail>, ApiError> {
    let id: RunId = path_id(&id)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let detail = repo::detail(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(detail))
}

async fn pause(
    State(state): State<AppState>,
    Writer(auth): Writer,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(state.runtime().pause(auth.0.tenant_id, path_id(&id)?).await?))
}

async fn resume(
    State(state): State<AppState>,
    Writer(auth): Writer,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(state.runtime().resume(auth.0.tenant_id, path_id(&id)?).await?))
}

async fn cancel(
    State(state): State<AppState>,
    Writer(auth): Writer,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(state.runtime().cancel(auth.0.tenant_id, path_id(&id)?).await?))
}
