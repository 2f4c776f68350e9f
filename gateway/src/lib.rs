//! Flywheel's HTTP edge (axum): health and readiness, the OpenAPI document, and the tenant REST
//! API (`/v1/...`). Every `/v1` request is authenticated by an API key; the tenant comes from the
//! key and nothing in the request (body, query, header) can change it. Errors are mapped to
//! status codes and JSON bodies in one place ([`error::ApiError`]).

pub mod auth;
pub mod error;
mod extract;
mod health;
pub mod openapi;
mod resources;

pub use resources::collect::TrackingConfig;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use flywheel_actors::embedding::Embeddings;
use flywheel_storage::Database;
use flywheel_storage::event_stream::EventStream;
use flywheel_storage::redis::RedisStore;
use flywheel_storage::vector::VectorMemory;
use flywheel_supervisor::Runtime;
use tokio::net::TcpListener;

/// Settings of the HTTP edge.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// The node's public base URL (`https://track.example.com`), for the tracking snippet;
    /// without it, the request's host.
    pub public_url: Option<String>,
    pub tracking: TrackingConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, public_url: None, tracking: TrackingConfig::default() }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    redis: RedisStore,
    vector: VectorMemory,
    runtime: Runtime,
    embedder: Option<Embeddings>,
    config: GatewayConfig,
    tracking: resources::collect::Tracking,
}

impl AppState {
    /// `embedder` serves memory search; a node without one answers it with 503.
    pub fn new(
        db: Database,
        redis: RedisStore,
        vector: VectorMemory,
        runtime: Runtime,
        embedder: Option<Embeddings>,
        config: GatewayConfig,
    ) -> Self {
        let stream = EventStream::new(redis.clone(), config.tracking.stream.clone());
        let tracking = resources::collect::Tracking::new(stream, config.tracking.clone());
        Self { inner: Arc::new(Inner { db, redis, vector, runtime, embedder, config, tracking }) }
    }
    pub fn embedder(&self) -> Option<&Embeddings> {
        self.inner.embedder.as_ref()
    }
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }
    pub fn db(&self) -> &Database {
        &self.inner.db
    }
    pub fn redis(&self) -> &RedisStore {
        &self.inner.redis
    }
    pub fn vector(&self) -> &VectorMemory {
        &self.inner.vector
    }
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }
    pub(crate) fn tracking(&self) -> &resources::collect::Tracking {
        &self.inner.tracking
    }
    /// The ingest stream the edge writes to.
    pub fn event_stream(&self) -> &EventStream {
        &self.inner.tracking.stream
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    Router::new()
        .merge(health::routes())
        .merge(openapi::routes())
        .merge(resources::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address feeds the tracking edge's per-IP limits and truncated IPs.
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
