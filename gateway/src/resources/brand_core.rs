//! `/v1/brand_core`: positioning, tone and guidelines.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use flywheel_contracts::api::Page;
use flywheel_contracts::api::brand_core::{BrandCore, BrandCoreCreate, BrandCoreUpdate};
use flywheel_storage::brand_core as repo;

use super::{created, page};
use crate::AppState;
use crate::auth::{Auth, Writer};
use crate::error::ApiError;
use crate::extract::{ListParams, ValidJson, path_id};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/brand_core", get(list).post(create)).route("/v1/brand_core/{id}", get(show).patch(update))
}

async fn create(
    State(state): State<AppState>,
    Writer(auth): Writer,
    ValidJson(input): ValidJson<BrandCoreCreate>,
) -> Result<Response, ApiError> {
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let row = repo::create(&mut tx, &input, &auth.actor()).await?;
    tx.commit().await?;
    Ok(created("brand_core", row.id, row))
}

async fn show(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> Result<Json<BrandCore>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let row = repo::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(row))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    params: ListParams,
) -> Result<Json<Page<BrandCore>>, ApiError> {
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let rows = repo::list(&mut tx, params.query).await?;
    tx.commit().await?;
    Ok(page(rows))
}

async fn update(
    State(state): State<AppState>,
    Writer(auth): Writer,
    Path(id): Path<String>,
    ValidJson(input): ValidJson<BrandCoreUpdate>,
) -> Result<Json<BrandCore>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let row = repo::update(&mut tx, id, &input, &auth.actor()).await?;
    tx.commit().await?;
    Ok(Json(row))
}
