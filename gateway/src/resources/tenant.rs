//! `GET /v1/tenant`: the caller's own tenant.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use flywheel_contracts::api::tenant::Tenant;

use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenant", get(show))
}

async fn show(State(state): State<AppState>, auth: Auth) -> Result<Json<Tenant>, ApiError> {
    let mut tx = state.db().begin(auth.0.tenant_id).await?;
    let tenant = flywheel_storage::tenants::current(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(tenant))
}
