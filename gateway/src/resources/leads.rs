//! `/v1/leads`: people who gave an email or a phone. `?status=` and `?email=` filter the list.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use flywheel_contracts::Email;
use flywheel_contracts::api::Page;
use flywheel_contracts::api::lead::{Lead, LeadCreate, LeadUpdate};
use flywheel_storage::leads::{self as repo, LeadFilter};

use super::{created, page};
use crate::AppState;
use crate::auth::{Auth, Writer};
use crate::error::ApiError;
use crate::extract::{ListParams, ValidJson, enum_param, path_id};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/leads", get(list).post(create)).route("/v1/leads/{id}", get(show).patch(update))
}

async fn create(
    State(state): State<AppState>,
    Writer(auth): Writer,
    ValidJson(input): ValidJson<LeadCreate>,
) -> Result<Response, ApiError> {
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let row = repo::create(&mut tx, &input).await?;
    tx.commit().await?;
    Ok(created("leads", row.id, row))
}

async fn show(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> Result<Json<Lead>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let row = repo::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(row))
}

async fn list(State(state): State<AppState>, auth: Auth, params: ListParams) -> Result<Json<Page<Lead>>, ApiError> {
    let filter = LeadFilter {
        status: params.filter("status", enum_param)?,
        email: params.filter("email", |raw| Email::parse(raw).ok())?,
    };
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let rows = repo::list(&mut tx, &filter, params.query).await?;
    tx.commit().await?;
    Ok(page(rows))
}

async fn update(
    State(state): State<AppState>,
    Writer(auth): Writer,
    Path(id): Path<String>,
    ValidJson(input): ValidJson<LeadUpdate>,
) -> Result<Json<Lead>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let row = repo::update(&mut tx, id, &input).await?;
    tx.commit().await?;
    Ok(Json(row))
}
