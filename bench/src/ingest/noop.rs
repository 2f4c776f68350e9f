//! The HTTP baseline: a no-op `POST /v1/collect` (axum, like the node's edge) that reads the body
//! and answers 202 with a tiny JSON object. It runs on a tokio runtime of its own, on its own
//! threads (as many workers as the node's runtime has), so the load generator drives it from
//! outside as it drives the node.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::oneshot;

/// A running no-op server; stopped when dropped.
#[derive(Debug)]
pub struct NoopServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

async fn collect(body: Bytes) -> impl IntoResponse {
    // The body is read to its end (the extractor does it) and dropped.
    drop(body);
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], r#"{"accepted":true}"#)
}

impl NoopServer {
    pub fn start(workers: usize) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind the no-op server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("noop-server".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers.max(1))
                .thread_name("noop-worker")
                .enable_all()
                .build()
                .context("cannot build the no-op server's runtime")?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let app = Router::new().route("/v1/collect", post(collect));
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.await;
                    })
                    .await
                    .context("the no-op server failed")
            })
        })?;
        Ok(Self { addr, shutdown: Some(shutdown), thread: Some(thread) })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for its thread.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.thread.take() {
            Some(thread) => tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow!("the no-op server panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for NoopServer {
    fn drop(&mut self) {
        // On an error path: ask it to stop; its thread ends on its own.
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
