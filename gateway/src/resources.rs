//! The tenant REST API under `/v1`: the caller's tenant, brand core, personas, campaigns and
//! leads. Each handler opens one tenant-scoped transaction for the authenticated tenant.

mod approvals;
mod brand_core;
mod campaigns;
pub(crate) mod collect;
mod leads;
mod memory;
mod model_budgets;
mod personas;
mod runs;
mod tenant;
mod tracking;

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use flywheel_contracts::api::Page;
use serde::Serialize;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .merge(tenant::routes())
        .merge(brand_core::routes())
        .merge(personas::routes())
        .merge(campaigns::routes())
        .merge(leads::routes())
        .merge(runs::routes())
        .merge(approvals::routes())
        .merge(memory::routes())
        .merge(model_budgets::routes())
        .merge(collect::routes())
        .merge(tracking::routes())
}

/// 201 with a `Location` header naming the new record.
fn created<T: Serialize>(collection: &str, id: impl std::fmt::Display, body: T) -> Response {
    let location = format!("/v1/{collection}/{id}");
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response()
}

fn page<T>((data, next_cursor): (Vec<T>, Option<String>)) -> Json<Page<T>> {
    Json(Page { data, next_cursor })
}
