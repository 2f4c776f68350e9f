//! `/healthz` (the process is alive) and `/readyz` (PostgreSQL, Redis and vector memory answer).

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let timeout = Duration::from_secs(2);
    let (pg, redis, vector) = tokio::join!(
        tokio::time::timeout(timeout, state.db().ping()),
        tokio::time::timeout(timeout, state.redis().ping()),
        tokio::time::timeout(timeout, state.vector().ping()),
    );
    let pg_ok = matches!(pg, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let vector_ok = matches!(vector, Ok(Ok(())));
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = pg_ok && redis_ok && vector_ok;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "checks": {"postgres": word(pg_ok), "redis": word(redis_ok), "vector": word(vector_ok)},
        })),
    )
}
