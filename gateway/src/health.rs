//! `/healthz` (the process is alive) and `/readyz` (PostgreSQL and Redis answer).

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
    let (pg, redis) = tokio::join!(
        tokio::time::timeout(timeout, state.db().ping()),
        tokio::time::timeout(timeout, state.redis().ping()),
    );
    let pg_ok = matches!(pg, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if pg_ok && redis_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "checks": {"postgres": word(pg_ok), "redis": word(redis_ok)},
        })),
    )
}
