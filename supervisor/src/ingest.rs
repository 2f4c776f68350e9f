//! Event ingestion: `IngestSupervisor` → `EventIngestor` × n. Each ingestor owns a share of the
//! stream's shards and loops: take entries (its own unacknowledged ones first after a start or
//! an error, then stale ones of dead consumers, then new ones), expand them into their events
//! (an entry holds one request's events), batch the events by count and time, store the batch
//! in one transaction, then acknowledge each entry whose every event is stored — never before
//! the commit, so a crash anywhere repeats work (deduplicated by event id) and never loses it.
//!
//! A batch the database refuses for its data (SQLSTATE 22/23) is split in halves until the bad
//! events are alone, so the rest lands, other events of the same entry included; an event
//! refused `max_attempts` times goes to the dead-letter stream and table with the reason, as
//! `<entry id>/<index>`, and its entry is acknowledged once its other events are stored. An
//! entry that cannot be decoded is dead-lettered whole at once. Any other failure (unreachable,
//! deadlock, timeout) keeps the whole batch pending and backs off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flywheel_contracts::ingest::{IngestEntry, decode_entry};
use flywheel_storage::Database;
use flywheel_storage::event_stream::{EventStream, StreamEntry, events_in};
use flywheel_storage::ingest::{IngestError, IngestWriter};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

/// Settings of the ingest pipeline.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Ingestors on this node (each owns `shards / ingestors` shards).
    pub ingestors: u16,
    /// Batches stored at once across this node's ingestors while they keep up; the others wait
    /// with theirs taken. A batch that is behind (see `behind_after`) does not wait.
    pub stores: u16,
    /// A batch whose oldest event has been in the stream this long (by Redis's clock) is behind:
    /// it is stored at once, beside the others, and one waiting for a store permit stops
    /// waiting when it gets there. So stores run one at a time (`stores`) while one at a time
    /// keeps up, and side by side when it does not.
    pub behind_after: Duration,
    /// A batch is written when it holds this many events (or, by less than one entry's events,
    /// more)…
    pub max_batch: usize,
    /// …or when its first entry has waited this long.
    pub max_linger: Duration,
    /// Sleep between polls of empty streams.
    pub idle_poll: Duration,
    /// Entries pending with another consumer for this long are taken over (it died).
    pub claim_idle: Duration,
    /// How often to look for such entries.
    pub claim_interval: Duration,
    /// Failed attempts at one event before it is dead-lettered.
    pub max_attempts: u32,
    /// Back-off after the database was unreachable.
    pub retry_backoff: Duration,
    /// How often, while batches are stored, the planner statistics of the tables they go to are
    /// refreshed where they changed enough (`Database::refresh_ingest_statistics`).
    pub statistics_interval: Duration,
    /// This node's consumer names are `<consumer_prefix>-<n>`: keep it stable across restarts
    /// of the same node so it finds its own pending entries at once.
    pub consumer_prefix: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            ingestors: 2,
            stores: 1,
            behind_after: Duration::from_millis(500),
            max_batch: 5_000,
            max_linger: Duration::from_millis(200),
            idle_poll: Duration::from_millis(10),
            claim_idle: Duration::from_secs(30),
            claim_interval: Duration::from_secs(5),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(500),
            statistics_interval: Duration::from_secs(5),
            consumer_prefix: "flywheel".into(),
        }
    }
}

/// Counters of the pipeline, for readiness, tests and the benchmark.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Events committed (duplicates included).
    pub stored: AtomicU64,
    pub batches: AtomicU64,
    /// Events dead-lettered, and entries that could not be decoded.
    pub dead_letters: AtomicU64,
    pub failures: AtomicU64,
}

/// A running pipeline. Stopping it stops the ingestors after their current batch.
#[derive(Clone)]
pub struct Ingest {
    supervisor: ActorRef<SupMsg>,
    stats: Arc<IngestStats>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Ingest {
    pub async fn start(db: Database, stream: EventStream, config: IngestConfig) -> Result<Ingest, ActorProcessingErr> {
        let stats = Arc::new(IngestStats::default());
        let stores = tokio::sync::Semaphore::new(usize::from(config.stores.max(1)));
        let shared =
            Arc::new(Shared { db, stream, config, stats: stats.clone(), statistics: Mutex::default(), stores });
        let (supervisor, _) = Actor::spawn(None, IngestSupervisor, shared).await?;
        Ok(Ingest { supervisor, stats })
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    pub fn stop(&self) {
        self.supervisor.stop_children(None);
        self.supervisor.stop(None);
    }

    /// Stops the ingestors after their current batch and waits, up to `timeout` for each step,
    /// until they and their supervisor ended.
    pub async fn stop_and_wait(&self, timeout: Duration) {
        self.supervisor.stop_children_and_wait(None, Some(timeout)).await;
        let _ = self.supervisor.stop_and_wait(None, Some(timeout)).await;
    }
}

struct Shared {
    db: Database,
    stream: EventStream,
    config: IngestConfig,
    stats: Arc<IngestStats>,
    statistics: Mutex<Refresh>,
    /// Permits to store a batch that is not behind (`IngestConfig::stores`).
    stores: tokio::sync::Semaphore,
}

/// The refresh of the ingest tables' statistics: when it last started, and whether it runs.
#[derive(Default)]
struct Refresh {
    last: Option<Instant>,
    running: bool,
}

impl Shared {
    /// Starts a refresh of the ingest tables' statistics in the background, unless one runs or
    /// one started less than `statistics_interval` ago: an ANALYZE of a large partition takes a
    /// second or more, which no batch should wait for.
    fn refresh_statistics(self: &Arc<Self>) {
        {
            let mut refresh = self.refresh();
            if refresh.running || refresh.last.is_some_and(|t| t.elapsed() < self.config.statistics_interval) {
                return;
            }
            *refresh = Refresh { last: Some(Instant::now()), running: true };
        }
        let shared = self.clone();
        tokio::spawn(async move {
            // A store permit, as a batch takes: while the ingestors keep up, an ANALYZE (a
            // second or more of a backend under load) runs between stores, not beside one; the
            // batches it holds back wait taken and unacknowledged, until they are behind.
            let _permit = shared.stores.acquire().await.ok();
            match shared.db.refresh_ingest_statistics().await {
                Ok(tables) if !tables.is_empty() => tracing::debug!(?tables, "Ingest tables analyzed."),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "Could not refresh the ingest tables' statistics."),
            }
            shared.refresh().running = false;
        });
    }

    fn refresh(&self) -> std::sync::MutexGuard<'_, Refresh> {
        self.statistics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

enum SupMsg {}
impl ractor::Message for SupMsg {}

struct IngestSupervisor;

struct SupState {
    shared: Arc<Shared>,
    /// (index, actor) of each running ingestor.
    ingestors: Vec<(u16, ActorCell)>,
}

async fn spawn_ingestor(
    myself: &ActorRef<SupMsg>,
    shared: &Arc<Shared>,
    index: u16,
) -> Result<ActorCell, ActorProcessingErr> {
    let n = shared.config.ingestors.clamp(1, shared.stream.config().shards);
    let shards: Vec<u16> = (0..shared.stream.config().shards).filter(|s| s % n == index).collect();
    let args =
        IngestorArgs { shared: shared.clone(), consumer: format!("{}-{index}", shared.config.consumer_prefix), shards };
    let (actor, _) = Actor::spawn_linked(None, EventIngestor, args, myself.get_cell()).await?;
    Ok(actor.get_cell())
}

impl Actor for IngestSupervisor {
    type Msg = SupMsg;
    type State = SupState;
    type Arguments = Arc<Shared>;

    async fn pre_start(&self, myself: ActorRef<SupMsg>, shared: Arc<Shared>) -> Result<SupState, ActorProcessingErr> {
        let n = shared.config.ingestors.clamp(1, shared.stream.config().shards);
        let mut ingestors = Vec::new();
        for index in 0..n {
            ingestors.push((index, spawn_ingestor(&myself, &shared, index).await?));
        }
        Ok(SupState { shared, ingestors })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupMsg>,
        event: SupervisionEvent,
        state: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        // An ingestor that fails loses nothing: its entries stay pending under its consumer
        // name, which the replacement reuses and re-reads first.
        if let SupervisionEvent::ActorFailed(cell, error) = event
            && let Some(pos) = state.ingestors.iter().position(|(_, c)| c.get_id() == cell.get_id())
        {
            let index = state.ingestors[pos].0;
            tracing::error!(ingestor = index, error = %error, "Event ingestor failed; restarting it.");
            tokio::time::sleep(state.shared.config.retry_backoff).await;
            let cell = spawn_ingestor(&myself, &state.shared, index).await?;
            state.ingestors[pos] = (index, cell);
        }
        Ok(())
    }
}

enum IngestorMsg {
    Cycle,
}
impl ractor::Message for IngestorMsg {}

struct EventIngestor;

struct IngestorArgs {
    shared: Arc<Shared>,
    consumer: String,
    shards: Vec<u16>,
}

struct IngestorState {
    shared: Arc<Shared>,
    consumer: String,
    shards: Vec<u16>,
    writer: Option<IngestWriter>,
    /// Re-read this consumer's own pending entries before new ones (after a start or an error).
    reread_pending: bool,
    last_claim: Instant,
    /// Where each shard's scan for stale entries resumes.
    claim_cursors: std::collections::HashMap<u16, String>,
    rotation: usize,
}

impl Actor for EventIngestor {
    type Msg = IngestorMsg;
    type State = IngestorState;
    type Arguments = IngestorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IngestorMsg>,
        args: IngestorArgs,
    ) -> Result<IngestorState, ActorProcessingErr> {
        myself.send_message(IngestorMsg::Cycle)?;
        Ok(IngestorState {
            shared: args.shared,
            consumer: args.consumer,
            shards: args.shards,
            writer: None,
            reread_pending: true,
            last_claim: Instant::now(),
            claim_cursors: std::collections::HashMap::new(),
            rotation: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<IngestorMsg>,
        _: IngestorMsg,
        state: &mut IngestorState,
    ) -> Result<(), ActorProcessingErr> {
        // One cycle per message: nobody waits on an ingestor, so its handler may take a batch's
        // time; stopping it takes effect between cycles.
        let pause = match cycle(state).await {
            Ok(true) => None,
            Ok(false) => Some(state.shared.config.idle_poll),
            Err(e) => {
                state.shared.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(consumer = %state.consumer, error = %e, "Ingest cycle failed; backing off.");
                state.reread_pending = true;
                state.writer = None;
                Some(state.shared.config.retry_backoff)
            }
        };
        match pause {
            None => myself.send_message(IngestorMsg::Cycle)?,
            Some(d) => {
                myself.send_after(d, || IngestorMsg::Cycle);
            }
        }
        Ok(())
    }
}

/// One take-and-store cycle. `Ok(true)` when it stored something (go again at once).
async fn cycle(state: &mut IngestorState) -> Result<bool, flywheel_storage::StorageError> {
    let shared = state.shared.clone();
    let config = &shared.config;
    let mut entries = if state.reread_pending {
        let own = shared.stream.take(&state.consumer, &state.shards, config.max_batch, true).await?;
        if own.is_empty() {
            state.reread_pending = false;
        }
        own
    } else {
        Vec::new()
    };
    if entries.is_empty() && state.last_claim.elapsed() >= config.claim_interval {
        state.last_claim = Instant::now();
        for shard in state.shards.clone() {
            let budget = config.max_batch.saturating_sub(events_in(&entries));
            if budget == 0 {
                break;
            }
            let cursor = state.claim_cursors.get(&shard).cloned().unwrap_or_else(|| "0-0".into());
            let (next, stale) =
                shared.stream.claim_stale(&state.consumer, shard, config.claim_idle, budget, &cursor).await?;
            state.claim_cursors.insert(shard, next);
            if !stale.is_empty() {
                tracing::info!(consumer = %state.consumer, shard, entries = stale.len(), "Took over entries of a dead consumer.");
            }
            entries.extend(stale);
        }
    }
    if entries.is_empty() && !state.reread_pending {
        // New entries, lingering up to max_linger for a fuller batch.
        entries = shared
            .stream
            .take_batch(
                &state.consumer,
                &state.shards,
                &mut state.rotation,
                config.max_batch,
                config.max_linger,
                config.idle_poll,
            )
            .await?;
    }
    if entries.is_empty() {
        return Ok(false);
    }
    store(state, entries).await?;
    Ok(true)
}

async fn writer(state: &mut IngestorState) -> Result<&mut IngestWriter, flywheel_storage::StorageError> {
    let writer = match state.writer.take() {
        Some(writer) => writer,
        None => state.shared.db.ingest_writer().await?,
    };
    Ok(state.writer.insert(writer))
}

/// Where an event of a batch comes from: the index of its entry among the taken entries, and
/// its index inside that entry.
#[derive(Debug, Clone, Copy)]
struct Origin {
    entry: usize,
    index: usize,
}

/// The taken entries and, for each, its events not yet stored nor dead-lettered (`None`: the
/// entry was dead-lettered whole).
struct Taken {
    entries: Vec<StreamEntry>,
    left: Vec<Option<usize>>,
}

/// Stores the entries' events and acknowledges each entry once all its events are stored or
/// dead-lettered; poison is isolated and dead-lettered event by event.
async fn store(state: &mut IngestorState, entries: Vec<StreamEntry>) -> Result<(), flywheel_storage::StorageError> {
    let shared = state.shared.clone();
    // Parallel lists: the events to store and where each comes from.
    let mut batch: Vec<IngestEntry> = Vec::with_capacity(events_in(&entries));
    let mut origins: Vec<Origin> = Vec::with_capacity(batch.capacity());
    let mut left = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let Some(payload) = entry.payload.as_deref() else {
            // Deleted while pending: nothing to store, just acknowledge it.
            left.push(Some(0));
            continue;
        };
        match decode_entry(payload) {
            Ok(events) => {
                left.push(Some(events.len()));
                origins.extend((0..events.len()).map(|index| Origin { entry: i, index }));
                batch.extend(events);
            }
            Err(e) => {
                // It will never decode on this node: dead-letter it at once, with the reason.
                tracing::error!(entry = %entry.id, shard = entry.shard, error = %e, "Undecodable ingest entry dead-lettered.");
                shared.stream.dead_letter(entry, &e.to_string()).await?;
                shared.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                left.push(None);
            }
        }
    }
    let mut taken = Taken { entries, left };
    if !batch.is_empty() {
        // While the ingestors keep up, a batch waits for one of the node's `stores` permits, so
        // that no more PostgreSQL backends than that store at once and the cores they share with
        // the edge are not all taken by ingest. A batch that is behind is stored at once, beside
        // the others'. Whether a batch is full says nothing of that: at a high enough rate every
        // batch fills before its linger ends, however well one store at a time keeps up.
        let waited = shared.stream.waited(&taken.entries).await?;
        let until_behind = shared.config.behind_after.saturating_sub(waited);
        let _permit = permit_unless_behind(&shared.stores, until_behind).await;
        store_part(state, &mut taken, &origins, &batch).await?;
    }
    let done = taken.entries.iter().zip(&taken.left).filter(|(_, left)| **left == Some(0)).map(|(e, _)| e);
    ack_all(&shared, done).await
}

/// A store permit, waited for at most `until_behind` (until the batch is behind); `None` when
/// the batch is, or gets, behind first. The semaphore is never closed.
async fn permit_unless_behind(
    stores: &tokio::sync::Semaphore,
    until_behind: Duration,
) -> Option<tokio::sync::SemaphorePermit<'_>> {
    if until_behind.is_zero() {
        return None;
    }
    tokio::select! {
        permit = stores.acquire() => permit.ok(),
        () = tokio::time::sleep(until_behind) => None,
    }
}

/// Stores a part of a batch; a part the database refuses for its data is split in halves until
/// the refused events are alone (log2 of the batch size transactions per bad event), so the
/// rest lands and one bad event costs milliseconds, not a pass event by event.
fn store_part<'a>(
    state: &'a mut IngestorState,
    taken: &'a mut Taken,
    origins: &'a [Origin],
    batch: &'a [IngestEntry],
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), flywheel_storage::StorageError>> + Send + 'a>> {
    Box::pin(async move {
        let shared = state.shared.clone();
        match writer(state).await?.write(batch).await {
            Ok(_) => {
                for origin in origins {
                    settle(taken, *origin);
                }
                shared.stats.stored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                shared.stats.batches.fetch_add(1, Ordering::Relaxed);
                shared.refresh_statistics();
                Ok(())
            }
            Err(IngestError::Refused(reason)) if batch.len() > 1 => {
                tracing::warn!(events = batch.len(), error = %reason, "Batch refused; splitting it to isolate the bad events.");
                let half = batch.len() / 2;
                store_part(state, taken, &origins[..half], &batch[..half]).await?;
                store_part(state, taken, &origins[half..], &batch[half..]).await
            }
            Err(IngestError::Refused(reason)) => {
                let (origin, event) = (origins[0], &batch[0]);
                let entry = &taken.entries[origin.entry];
                match shared.stream.record_failure(entry, origin.index).await? {
                    // Dead-lettered in an earlier cycle that stopped before the entry's ACK.
                    None => settle(taken, origin),
                    Some(attempts) if attempts >= shared.config.max_attempts => {
                        let name = entry.event_name(origin.index);
                        tracing::error!(tenant_id = %event.tenant, event_id = %event.id, stream_entry = %name, attempts, error = %reason, "Event dead-lettered.");
                        // The table is where people look; the stream keeps the event whatever
                        // happens to that insert, so a dead letter never blocks the shard.
                        if let Err(e) = writer(state).await?.dead_letter(event, &name, attempts, &reason).await {
                            tracing::error!(event_id = %event.id, error = %e, "Dead letter not recorded in the table; kept in the stream.");
                            state.writer = None;
                        }
                        shared.stream.dead_letter_event(entry, origin.index, &event.encode(), &reason).await?;
                        shared.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                        settle(taken, origin);
                    }
                    Some(_) => {
                        // Its entry stays pending; retried when this consumer re-reads its own
                        // entries (the entry's stored events again: deduplicated by id).
                        state.reread_pending = true;
                    }
                }
                Ok(())
            }
            Err(IngestError::Storage(e)) => Err(e),
        }
    })
}

/// One more event of its entry stored or dead-lettered.
fn settle(taken: &mut Taken, origin: Origin) {
    if let Some(Some(left)) = taken.left.get_mut(origin.entry) {
        *left = left.saturating_sub(1);
    }
}

async fn ack_all<'a>(
    shared: &Shared,
    entries: impl Iterator<Item = &'a StreamEntry>,
) -> Result<(), flywheel_storage::StorageError> {
    let mut by_shard: std::collections::BTreeMap<u16, Vec<&StreamEntry>> = std::collections::BTreeMap::new();
    for e in entries {
        by_shard.entry(e.shard).or_default().push(e);
    }
    for (shard, entries) in by_shard {
        shared.stream.ack(shard, &entries).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::permit_unless_behind;

    #[tokio::test]
    async fn a_batch_waits_for_a_permit_only_until_it_is_behind() {
        let stores = Semaphore::new(1);
        // Keeping up, a permit free: it is taken.
        assert!(permit_unless_behind(&stores, Duration::from_secs(60)).await.is_some());
        // Behind already: no permit taken, though one is free.
        assert!(permit_unless_behind(&stores, Duration::ZERO).await.is_none());
        assert_eq!(stores.available_permits(), 1);
        // The permit held by another store: the wait ends when the batch gets behind.
        let held = stores.acquire().await.expect("a permit");
        assert!(permit_unless_behind(&stores, Duration::from_millis(20)).await.is_none());
        // …or earlier, when the other store gives its permit back.
        let waiting = permit_unless_behind(&stores, Duration::from_secs(60));
        let give_back = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        };
        let (permit, ()) = tokio::join!(waiting, give_back);
        assert!(permit.is_some());
    }
}
