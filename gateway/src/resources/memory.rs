//! `GET /v1/memory/search?q=…&collection=brand&limit=5`: the tenant's brand memory closest in
//! meaning to `q` (embedded with the node's embedder, searched in its vector store).

use axum::extract::{Query, State};
use axum::http::Uri;
use axum::routing::get;
use axum::{Json, Router};
use flywheel_actors::embedding::Embedder;
use flywheel_contracts::api::memory::{MemoryHit, MemorySearch};
use flywheel_storage::vector::{Collection, VectorStore};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/memory/search", get(search))
}

#[derive(Deserialize)]
struct Params {
    q: Option<String>,
    collection: Option<String>,
    limit: Option<String>,
}

async fn search(State(state): State<AppState>, auth: Auth, uri: Uri) -> Result<Json<MemorySearch>, ApiError> {
    // Parsed here so that a malformed query string gets the JSON error like everything else.
    let Query(params) = Query::<Params>::try_from_uri(&uri)
        .map_err(|_| ApiError::Validation { field: None, message: "the query string is malformed".into() })?;
    let q = params
        .q
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::validation("q", "q is the text to search for"))?;
    if q.chars().count() > 2000 {
        return Err(ApiError::validation("q", "q is at most 2000 characters"));
    }
    let collection = Collection::parse(params.collection.as_deref().unwrap_or("brand")).map_err(|_| {
        ApiError::validation("collection", "collection is 1-64 lowercase letters, digits or underscores")
    })?;
    let limit = match params.limit {
        None => 5,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=50).contains(n))
            .ok_or_else(|| ApiError::validation("limit", "limit is a whole number from 1 to 50"))?,
    };
    let embedder = state.embedder().ok_or(ApiError::Unavailable)?;
    let vectors = embedder.embed(&[q]).await.map_err(|e| {
        tracing::warn!(error = %e, "Embedding a memory query failed.");
        ApiError::Unavailable
    })?;
    let query = vectors.into_iter().next().ok_or(ApiError::Internal)?;
    let hits = state.vector().search(auth.0.tenant_id, &collection, &query, limit, None).await?;
    Ok(Json(MemorySearch {
        data: hits
            .into_iter()
            .map(|h| MemoryHit { external_id: h.external_id, content: h.content, metadata: h.metadata, score: h.score })
            .collect(),
    }))
}
