//! The node's event ingestors on threads of their own: a tokio runtime with a worker per
//! ingestor, at a lower CPU priority (nice) than the HTTP edge.
//!
//! A batch is milliseconds of CPU at a time (decoding thousands of events, sorting them by
//! tenant, encoding the columns for PostgreSQL). On the edge's worker threads that work held up
//! the requests queued behind it; on threads of its own, at a higher nice value, the kernel gives
//! a waiting request the core first and the batches take what is left.
//!
//! The ingestors have connections of their own, opened on their thread: a Redis connection
//! carries its commands in order, so an admission queued behind a 300 KB stream read on a shared
//! connection waited for it; and the connections' I/O is driven by the thread that uses them.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use flywheel_storage::event_stream::{EventStream, StreamConfig};
use flywheel_storage::redis::{RedisConfig, RedisStore};
use flywheel_storage::{Database, DatabaseConfig};
use flywheel_supervisor::{Ingest, IngestConfig};
use tokio::sync::oneshot;
use tracing::warn;

/// How long stopping waits for the ingestors' current batches.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the ingestors connect: the node's settings, for connections of their own.
#[derive(Debug, Clone)]
pub struct Connections {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub stream: StreamConfig,
}

impl Connections {
    /// Opens the ingestors' connections — a database pool with one per ingestor, one for dead
    /// letters and one for the background refresh of the tables' statistics (which holds it for
    /// seconds while it analyzes), a Redis pool with one per ingestor — and starts the ingestors
    /// over them.
    async fn start(&self, config: IngestConfig) -> Result<(Ingest, Database, RedisStore)> {
        let mut database = self.database.clone();
        database.max_connections = u32::from(config.ingestors) + 2;
        let db = Database::connect(&database).await.context("connect the ingestors to PostgreSQL")?;
        let mut redis = self.redis.clone();
        redis.pool_size = usize::from(config.ingestors.max(1));
        let redis = RedisStore::connect(&redis).await.context("connect the ingestors to Redis")?;
        let stream = EventStream::new(redis.clone(), self.stream.clone());
        let ingest = Ingest::start(db.clone(), stream, config).await.map_err(|e| anyhow!("{e}"))?;
        Ok((ingest, db, redis))
    }
}

/// The running ingestors and their thread.
#[derive(Debug)]
pub struct IngestThread {
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

impl IngestThread {
    /// Starts the thread and the ingestors on it; returns once they are running.
    pub async fn start(connections: Connections, config: IngestConfig, nice: i32) -> Result<Self> {
        let (started_tx, started_rx) = oneshot::channel::<Result<(), String>>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                lower_priority(nice);
                // Workers inherit the nice value of the thread that starts them: this one.
                let workers = usize::from(config.ingestors.max(1));
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("ingest-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("cannot build the ingest runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (ingest, db, redis) = match connections.start(config).await {
                        Ok(started) => started,
                        Err(e) => {
                            let _ = started_tx.send(Err(format!("{e:#}")));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(()));
                    // Stopped by the node, or the node went away without saying so.
                    let _ = stop_rx.await;
                    ingest.stop_and_wait(STOP_TIMEOUT).await;
                    redis.quit().await;
                    db.close().await;
                });
                let _ = done_tx.send(());
            })
            .context("start the ingest thread")?;
        started_rx
            .await
            .map_err(|_| anyhow!("the ingest thread ended while starting"))?
            .map_err(|e| anyhow!("start the event ingestors: {e}"))?;
        Ok(Self { stop, done })
    }

    /// Stops the ingestors after their current batch and waits for the thread.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

/// Raises the calling thread's nice value (Linux keeps one per thread) to `nice`; a failure
/// (not permitted, not Linux) only costs the edge's latency under load, so it is logged.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        warn!(nice, error = %e, "Could not lower the ingest thread's priority; it competes with the edge as an equal.");
    }
}
