//! A stand-in for the ingest nodes an edge-only node runs in front of: it takes entries from the
//! shards with the ingestors' consumer group and acknowledges them (`XACK` + `XDEL`, the event
//! counts kept) as an ingestor does once it stored them, without storing anything. So the Redis
//! side of consuming is part of what the edge is measured with, as in a deployment, and the
//! stream stays at a steady backlog instead of growing by the whole load (~10 KB a request):
//! a stream that only grows makes Redis take fresh memory from the kernel for every entry, and
//! zeroing those pages was 40 % of Redis's time in the edge-only phase, a cost no deployment with
//! consumers pays.

use std::time::Duration;

use anyhow::{Context, Result};
use flywheel_storage::event_stream::{EventStream, StreamEntry};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Events one take asks for: an ingestor's default batch.
const TAKE_EVENTS: usize = 5_000;
/// The consumer's name in the ingestors' group.
const CONSUMER: &str = "bench-drain";

/// What the stand-in consumed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drained {
    pub entries: u64,
    pub events: u64,
}

/// The running consumer; [`Drainer::finish`] stops it and says what it took.
#[derive(Debug)]
pub struct Drainer {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<Drained>>,
}

impl Drainer {
    pub fn start(stream: EventStream) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(stream, stopped));
        Self { stop, task }
    }

    /// Stops after the take in progress (what is left stays in the stream for the caller to count).
    pub async fn finish(self) -> Result<Drained> {
        let _ = self.stop.send(true);
        self.task.await.context("the stand-in consumer panicked")?
    }
}

async fn consume(stream: EventStream, mut stopped: watch::Receiver<bool>) -> Result<Drained> {
    let mut shards: Vec<u16> = (0..stream.config().shards).collect();
    let mut drained = Drained::default();
    while !*stopped.borrow() {
        let entries = stream.take(CONSUMER, &shards, TAKE_EVENTS, false).await?;
        shards.rotate_left(1);
        if entries.is_empty() {
            // Nothing waiting: look again soon, as an ingestor with an empty batch would.
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            continue;
        }
        for shard in 0..stream.config().shards {
            let of_shard: Vec<&StreamEntry> = entries.iter().filter(|e| e.shard == shard).collect();
            stream.ack(shard, &of_shard).await?;
        }
        drained.entries += entries.len() as u64;
        drained.events += entries.iter().map(|e| u64::from(e.events)).sum::<u64>();
    }
    Ok(drained)
}
