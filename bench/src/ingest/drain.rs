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
use flywheel_storage::event_stream::{EventStream, StreamEntry, events_in};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Events one batch holds at most, how long a batch lingers for more and how long a take that
/// found the shards empty waits before the next: an ingestor's defaults, read the same way
/// ([`EventStream::take_batch`]), so the stand-in reads the stream as the ingest nodes it
/// stands for would.
const BATCH_EVENTS: usize = 5_000;
const LINGER: Duration = Duration::from_millis(200);
const IDLE_POLL: Duration = Duration::from_millis(10);
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

    /// Stops after acknowledging the batch in progress (what is left stays in the stream for the
    /// caller to count).
    pub async fn finish(self) -> Result<Drained> {
        let _ = self.stop.send(true);
        self.task.await.context("the stand-in consumer panicked")?
    }
}

async fn consume(stream: EventStream, mut stopped: watch::Receiver<bool>) -> Result<Drained> {
    let shards: Vec<u16> = (0..stream.config().shards).collect();
    let mut rotation = 0;
    let mut drained = Drained::default();
    while !*stopped.borrow() {
        let batch = stream.take_batch(CONSUMER, &shards, &mut rotation, BATCH_EVENTS, LINGER, IDLE_POLL).await?;
        if batch.is_empty() {
            // Nothing waiting: look again soon, as an ingestor with an empty batch would.
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        for &shard in &shards {
            let of_shard: Vec<&StreamEntry> = batch.iter().filter(|e| e.shard == shard).collect();
            stream.ack(shard, &of_shard).await?;
        }
        drained.entries += batch.len() as u64;
        drained.events += events_in(&batch) as u64;
    }
    Ok(drained)
}
