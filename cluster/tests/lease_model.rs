//! Deterministic model check of the shard lease protocol: PostgreSQL as the arbiter of who owns
//! a virtual shard, nodes that place shards with the library's own [`plan`] and work the runs of
//! the shards they hold, and checkpoints fenced by the lease (owner, epoch, unexpired by the
//! database's clock) and by the run's cursor.
//!
//! Why a model: the properties that matter (one owner per shard-epoch, no step committed by a
//! stale owner, none committed twice or lost, every shard and run eventually placed and finished)
//! only break under rare interleavings — a request that arrives after its lease expired, a node
//! paused past its lease that wakes up believing it still holds it, a crash between a commit and
//! its ack, a drain racing a join. A discrete-event simulator makes those interleavings cheap to
//! generate by the thousand and exactly replayable from a seed.
//!
//! What is modelled:
//! - The database: lease rows `{owner, epoch, expires_at}`, node rows `{heartbeat_at, draining}`,
//!   run rows `{shard, cursor}`; every operation (heartbeat, acquire, renew, release, read_view,
//!   load_run, commit_step) runs atomically at the database time it *arrives*. The simulator
//!   (not the database code) records a lease history (acquired, renewed, released with times) and
//!   the committed-steps log; the invariants are checked against that history, so a database
//!   that forgets a check is caught.
//! - Nodes: a local clock running at 0.9–1.1× database time that stops while the node is paused,
//!   a tick every `ttl/3` of local time (heartbeat, renew, read the view, [`plan`], acquire and
//!   release), a lease considered held until `sent + 0.8·ttl` of local time after the last
//!   successful renew (or until a renew fails), and workers that load a run's cursor, "work" a
//!   step and commit it under the epoch they hold, with a commit timeout after which they re-read.
//! - Faults over random schedules: delays of up to `1.5·ttl` on requests and replies, pauses
//!   longer than the ttl (the node resumes with stale memory and a clock that did not move),
//!   crashes (memory lost, the node comes back later under a new id), drains and joins. Then a
//!   quiet tail of `20·ttl` with healthy nodes and delays under `ttl/10`. To keep thousands of
//!   schedules fast in a debug build, a schedule stops early once everything sent during the
//!   faults has landed and invariant 4 has held on four probes `ttl/2` apart (a converged cluster
//!   only renews from then on); every 20th seed runs its whole tail to back that shortcut.
//!
//! Invariants (each schedule, the seed printed on failure): (1) one owner per shard-epoch,
//! epochs strictly increasing, a lease taken only once the previous one was released or expired;
//! (2) every committed step was committed by the owner of its (shard, epoch) while that lease was
//! unexpired, and commits of a shard never go back to an older epoch; (3) no (run, step) committed
//! twice, every acknowledged step is in the log, a run's cursor never decreases; (4) after the
//! quiet tail every shard is held by a live node, placement matches [`owner`], every run is done.
//!
//! Broken variants of the protocol (no lease fence, no cursor fence, acquire that steals, nodes
//! that never hand over) show that each invariant can fail. Replay a seed with its trace:
//! `LEASE_MODEL_SEED=42 [LEASE_MODEL_VARIANT=NoLeaseFence] cargo test -p flywheel-cluster
//! --test lease_model a_seed_replays_with_its_trace -- --nocapture`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Instant;

use flywheel_cluster::placement::{LeaseView, Plan, SHARDS, Shard, owner, plan, shard_of};
use flywheel_contracts::TenantId;

/// Database time, in milliseconds.
type DbTime = i64;
/// A node's local clock reading, in its own milliseconds.
type LocalTime = i64;

const TTL: DbTime = 3_000;
/// A node ticks every `ttl/3` of its local time.
const TICK: LocalTime = TTL / 3;
/// A node considers a lease held for `0.8·ttl` of local time after the renew (or acquire) it sent.
const LOCAL_VALIDITY: LocalTime = TTL * 4 / 5;
/// A commit whose ack has not come back after this long (checked on ticks) is treated as
/// unknown: re-read the cursor.
const COMMIT_TIMEOUT: LocalTime = TTL / 2;
const MAX_MOVES: usize = 4;
/// Delays once faults have stopped.
const QUIET_DELAY: DbTime = TTL / 10;
/// The longest delay while faults are on: some requests arrive after their lease expired.
const FAULT_DELAY: DbTime = TTL * 3 / 2;
/// Share of messages that get a long delay while faults are on.
const LATE_PERCENT: u64 = 12;
const QUIET_TAIL: DbTime = 20 * TTL;
/// Everything sent while faults were on has landed this long after they stop.
const SETTLE: DbTime = 2 * TTL;
/// How often the tail checks whether the cluster has converged.
const PROBE: DbTime = TTL / 2;
/// A schedule may stop before the end of its tail once invariant 4 has held on this many probes
/// in a row: a converged cluster with healthy nodes and short delays only renews.
const STABLE_PROBES: u32 = 4;
/// Every this-many-th seed runs its whole quiet tail regardless, to back the early stop.
const FULL_TAIL_EVERY: u64 = 20;
const STEPS: u32 = 5;
const MAX_MODEL_SHARDS: usize = 32;
const MAX_RUNS_PER_SHARD: usize = 3;
/// Schedules the main test runs (`LEASE_MODEL_SCHEDULES` overrides).
const SCHEDULES: u64 = 2_000;

// ---------------------------------------------------------------------------------------------
// Randomness: a seeded splitmix64, so a seed is the whole schedule.

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x6c65_6173_655f_6d64)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = (hi - lo).unsigned_abs() + 1;
        lo + i64::try_from(self.next_u64() % span).expect("a remainder below an i64 span fits in i64")
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }

    fn index(&mut self, len: usize) -> usize {
        let len = u64::try_from(len).expect("a length fits in u64");
        usize::try_from(self.next_u64() % len).expect("an index below a usize length fits in usize")
    }
}

/// Tenants with a known shard, `MAX_RUNS_PER_SHARD` for each of the first `MAX_MODEL_SHARDS`
/// shards, found once through [`shard_of`] from deterministic UUIDs.
fn tenant_pool() -> &'static [Vec<TenantId>] {
    static POOL: OnceLock<Vec<Vec<TenantId>>> = OnceLock::new();
    POOL.get_or_init(|| {
        assert!(usize::from(SHARDS) >= MAX_MODEL_SHARDS, "the model uses shards 0..{MAX_MODEL_SHARDS}");
        let mut pool = vec![Vec::new(); MAX_MODEL_SHARDS];
        let mut rng = Rng::new(0x7e4a_4175);
        while pool.iter().any(|p| p.len() < MAX_RUNS_PER_SHARD) {
            let uuid = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            let tenant = TenantId::from_str(&uuid).expect("32 hex digits are a UUID");
            let shard = usize::from(shard_of(tenant).get());
            if let Some(slot) = pool.get_mut(shard)
                && slot.len() < MAX_RUNS_PER_SHARD
            {
                slot.push(tenant);
            }
        }
        pool
    })
}

fn model_shard(index: usize) -> Shard {
    Shard::new(u16::try_from(index).expect("model shards fit in u16")).expect("model shards are below SHARDS")
}

// ---------------------------------------------------------------------------------------------
// The schedule and its variants.

/// Which protocol runs: the real one, or one deliberately broken so the checker must object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    /// `commit_step` skips the lease check: only the nodes' local clocks keep stale owners out.
    NoLeaseFence,
    /// `commit_step` skips the cursor check and sets `cursor = step + 1`.
    NoCursorFence,
    /// `acquire` takes a shard whether or not its lease is free or expired.
    AcquireSteals,
    /// Nodes ignore [`Plan::release`]: they never hand a shard over.
    NeverRelease,
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "Correct" => Self::Correct,
            "NoLeaseFence" => Self::NoLeaseFence,
            "NoCursorFence" => Self::NoCursorFence,
            "AcquireSteals" => Self::AcquireSteals,
            "NeverRelease" => Self::NeverRelease,
            other => return Err(format!("unknown variant {other}")),
        })
    }
}

#[derive(Debug, Clone)]
struct RunSpec {
    tenant: TenantId,
    shard: usize,
}

#[derive(Debug, Clone)]
struct Schedule {
    seed: u64,
    variant: Variant,
    initial_nodes: usize,
    shards: Vec<Shard>,
    runs: Vec<RunSpec>,
    runs_by_shard: Vec<Vec<usize>>,
    faults: Vec<DbTime>,
    fault_end: DbTime,
    end: DbTime,
    /// Stop once converged and stable rather than at `end`.
    early_stop: bool,
}

impl Schedule {
    fn generate(seed: u64, variant: Variant, rng: &mut Rng) -> Self {
        let pool = tenant_pool();
        let initial_nodes = usize::try_from(rng.between(3, 5)).expect("3..=5 fits");
        let shard_count = usize::try_from(rng.between(16, 32)).expect("16..=32 fits");
        let shards: Vec<Shard> = (0..shard_count).map(model_shard).collect();
        let mut runs = Vec::new();
        let mut runs_by_shard = vec![Vec::new(); shard_count];
        for (shard, ids) in runs_by_shard.iter_mut().enumerate() {
            let count = usize::try_from(rng.between(1, 3)).expect("1..=3 fits");
            for tenant in pool[shard].iter().take(count) {
                ids.push(runs.len());
                runs.push(RunSpec { tenant: *tenant, shard });
            }
        }
        let fault_end = TTL * rng.between(5, 10);
        let mut faults: Vec<DbTime> = (0..rng.between(2, 8)).map(|_| rng.between(TTL, fault_end - 1)).collect();
        faults.sort_unstable();
        Self {
            seed,
            variant,
            initial_nodes,
            shards,
            runs,
            runs_by_shard,
            faults,
            fault_end,
            end: fault_end + QUIET_TAIL,
            early_stop: !seed.is_multiple_of(FULL_TAIL_EVERY),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The database.

#[derive(Debug, Clone)]
struct LeaseRow {
    owner: Option<usize>,
    epoch: i64,
    expires_at: DbTime,
}

#[derive(Debug, Clone)]
struct NodeRow {
    heartbeat_at: Option<DbTime>,
    draining: bool,
}

#[derive(Debug, Clone)]
struct RunRow {
    cursor: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseEvent {
    Acquired { expires_at: DbTime },
    Renewed { expires_at: DbTime },
    Released,
}

/// One change of a lease row, in the order the database applied it (`op`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseRecord {
    op: u64,
    at: DbTime,
    shard: usize,
    epoch: i64,
    owner: usize,
    event: LeaseEvent,
}

/// One committed step.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CommitRecord {
    op: u64,
    at: DbTime,
    run: usize,
    shard: usize,
    step: u32,
    node: usize,
    epoch: i64,
}

/// An ack a node received for a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AckRecord {
    run: usize,
    step: u32,
    node: usize,
    epoch: i64,
}

/// What the simulator saw the database do: the material the invariants are checked against.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct History {
    leases: Vec<LeaseRecord>,
    commits: Vec<CommitRecord>,
    acks: Vec<AckRecord>,
    /// Every cursor value written (commit) or read (load_run), in database order: `(op, run, cursor)`.
    cursors: Vec<(u64, usize, u32)>,
}

// ---------------------------------------------------------------------------------------------
// Messages and events.

#[derive(Debug, Clone)]
enum Request {
    Heartbeat,
    Acquire { shards: Vec<usize>, sent_local: LocalTime },
    Renew { leases: Vec<(usize, i64)>, sent_local: LocalTime },
    Release { leases: Vec<(usize, i64)> },
    ReadView,
    LoadRun { run: usize, token: u64 },
    CommitStep { run: usize, shard: usize, epoch: i64, step: u32, token: u64 },
}

#[derive(Debug, Clone)]
enum Reply {
    Acquired { taken: Vec<(usize, i64)>, sent_local: LocalTime },
    Renewed { asked: Vec<(usize, i64)>, renewed: Vec<(usize, i64)>, sent_local: LocalTime },
    View { live: Vec<String>, leases: Rc<[LeaseView]>, draining: bool },
    Loaded { run: usize, cursor: u32, token: u64 },
    Committed { run: usize, step: u32, epoch: i64, ok: bool, token: u64 },
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    Tick,
    WorkDone { run: usize, token: u64 },
}

#[derive(Debug, Clone)]
enum Event {
    /// A request reaches the database.
    Arrive {
        from: usize,
        request: Request,
    },
    /// A reply reaches a node.
    Deliver {
        to: usize,
        reply: Reply,
    },
    /// A node's timer, due at local time `due`.
    Timer {
        node: usize,
        due: LocalTime,
        timer: Timer,
    },
    Resume {
        node: usize,
    },
    Fault,
    Join,
    /// A check of invariant 4 during the quiet tail.
    Probe,
}

/// The event queue: a min-heap of `(time, seq, slot)` — `seq` breaks ties in the order events
/// were scheduled, so a run is a pure function of its seed — with the events in a slab so the
/// heap only moves small keys.
#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(DbTime, u64, usize)>>,
    slots: Vec<Option<Event>>,
    free: Vec<usize>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at: DbTime, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    fn pop(&mut self) -> Option<(DbTime, Event)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let event = self.slots[slot].take().expect("a queued slot holds its event until popped");
        self.free.push(slot);
        Some((at, event))
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes.

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    valid_until: LocalTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Worker {
    Idle,
    Loading {
        token: u64,
        epoch: i64,
    },
    Working {
        token: u64,
        epoch: i64,
        step: u32,
    },
    Committing {
        token: u64,
        epoch: i64,
        step: u32,
        sent: LocalTime,
    },
    /// A commit failed or timed out: re-read the cursor on the next tick.
    Reload,
    Done,
}

#[derive(Debug)]
struct Node {
    name: String,
    alive: bool,
    paused: bool,
    resumed_at: Option<DbTime>,
    /// Local clock: `anchor_local + (now - anchor_db) · rate_ppm / 10⁶`, frozen while paused.
    rate_ppm: i64,
    anchor_db: DbTime,
    anchor_local: LocalTime,
    /// Events that reached the node while it was paused, handled when it resumes.
    deferred: Vec<Event>,
    held: BTreeMap<usize, Held>,
    workers: Vec<Worker>,
    next_token: u64,
}

impl Node {
    fn local(&self, now: DbTime) -> LocalTime {
        if self.paused {
            self.anchor_local
        } else {
            self.anchor_local + (now - self.anchor_db) * self.rate_ppm / 1_000_000
        }
    }

    /// Database time until this node's clock has advanced by `local` (at least 1).
    fn db_span(&self, local: LocalTime) -> DbTime {
        ((local * 1_000_000 + self.rate_ppm - 1) / self.rate_ppm).max(1)
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
}

// ---------------------------------------------------------------------------------------------
// Outcome and statistics.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    invariant: u8,
    detail: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Stats {
    schedules: u64,
    events: u64,
    commits: u64,
    acks: u64,
    lease_rejections: u64,
    /// Lease rejections of commits from a node that resumed from a pause less than a ttl ago.
    stale_after_pause_rejections: u64,
    cursor_rejections: u64,
    commit_timeouts: u64,
    /// Requests that reached the database after their sender had crashed.
    requests_after_crash: u64,
    /// Acquire replies that came back after the lease's local validity had passed.
    acquired_too_late: u64,
    leases_dropped_locally: u64,
    renew_failures: u64,
    handovers: u64,
    pauses: u64,
    crashes: u64,
    drains: u64,
    joins: u64,
    /// Releases planned by a node that is not draining but missing from its own view of the
    /// live members (its heartbeat had not landed): it hands over shards it should keep.
    releases_while_missing_from_live: u64,
    /// Database time from the end of faults until invariant 4 held for good (sum and maximum).
    converge_total: DbTime,
    converge_max: DbTime,
}

impl Stats {
    fn absorb(&mut self, o: &Self) {
        self.schedules += o.schedules;
        self.events += o.events;
        self.commits += o.commits;
        self.acks += o.acks;
        self.lease_rejections += o.lease_rejections;
        self.stale_after_pause_rejections += o.stale_after_pause_rejections;
        self.cursor_rejections += o.cursor_rejections;
        self.commit_timeouts += o.commit_timeouts;
        self.requests_after_crash += o.requests_after_crash;
        self.acquired_too_late += o.acquired_too_late;
        self.leases_dropped_locally += o.leases_dropped_locally;
        self.renew_failures += o.renew_failures;
        self.handovers += o.handovers;
        self.pauses += o.pauses;
        self.crashes += o.crashes;
        self.drains += o.drains;
        self.joins += o.joins;
        self.releases_while_missing_from_live += o.releases_while_missing_from_live;
        self.converge_total += o.converge_total;
        self.converge_max = self.converge_max.max(o.converge_max);
    }
}

#[derive(Debug)]
struct Outcome {
    verdict: Result<(), Violation>,
    stats: Stats,
    history: History,
    trace: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The simulator.

struct Sim {
    schedule: Schedule,
    rng: Rng,
    now: DbTime,
    /// Database operations applied so far: the order of the histories.
    op: u64,
    queue: Queue,
    /// The leases as last read, shared by every view until a lease changes hands or expires.
    view_cache: Option<(Rc<[LeaseView]>, DbTime)>,
    leases: Vec<LeaseRow>,
    node_rows: Vec<NodeRow>,
    runs: Vec<RunRow>,
    nodes: Vec<Node>,
    history: History,
    stats: Stats,
    tracing: bool,
    trace: Vec<String>,
    /// Consecutive probes on which invariant 4 held, and since when.
    stable_probes: u32,
    stable_since: DbTime,
    stopped: bool,
}

impl Sim {
    fn new(seed: u64, variant: Variant, tracing: bool) -> Self {
        let mut rng = Rng::new(seed);
        let schedule = Schedule::generate(seed, variant, &mut rng);
        let leases =
            schedule.shards.iter().map(|_| LeaseRow { owner: None, epoch: 0, expires_at: DbTime::MIN }).collect();
        let runs = schedule.runs.iter().map(|_| RunRow { cursor: 0 }).collect();
        Self {
            schedule,
            rng,
            now: 0,
            op: 0,
            queue: Queue::default(),
            view_cache: None,
            leases,
            node_rows: Vec::new(),
            runs,
            nodes: Vec::new(),
            history: History::default(),
            stats: Stats { schedules: 1, ..Stats::default() },
            tracing,
            trace: Vec::new(),
            stable_probes: 0,
            stable_since: 0,
            stopped: false,
        }
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            let line = line();
            self.trace.push(format!("t={:>6} {line}", self.now));
        }
    }

    fn push(&mut self, at: DbTime, event: Event) {
        self.queue.push(at, event);
    }

    fn run(mut self) -> Outcome {
        for _ in 0..self.schedule.initial_nodes {
            self.join();
        }
        let (seed, variant, nodes) = (self.schedule.seed, self.schedule.variant, self.schedule.initial_nodes);
        let (shards, runs, end) = (self.schedule.shards.len(), self.schedule.runs.len(), self.schedule.fault_end);
        self.note(|| {
            format!("seed {seed} {variant:?}: {nodes} nodes, {shards} shards, {runs} runs, faults until {end}")
        });
        for at in self.schedule.faults.clone() {
            self.push(at, Event::Fault);
        }
        self.push(self.schedule.fault_end + PROBE, Event::Probe);
        while let Some((at, event)) = self.queue.pop() {
            if at > self.schedule.end {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            self.dispatch(event);
            if self.stopped {
                break;
            }
        }
        if !self.stopped {
            self.now = self.schedule.end;
        }
        let verdict = self.check();
        if let Err(v) = &verdict {
            let line = format!("VIOLATION of invariant {}: {}", v.invariant, v.detail);
            self.note(|| line);
        }
        Outcome { verdict, stats: self.stats, history: self.history, trace: self.trace }
    }

    fn dispatch(&mut self, event: Event) {
        let target = match &event {
            Event::Deliver { to, .. } => Some(*to),
            Event::Timer { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(n) = target {
            if !self.nodes[n].alive {
                return;
            }
            if self.nodes[n].paused {
                self.nodes[n].deferred.push(event);
                return;
            }
        }
        match event {
            Event::Arrive { from, request } => self.arrive(from, request),
            Event::Deliver { to, reply } => self.deliver(to, reply),
            Event::Timer { node, due, timer } => {
                let local = self.nodes[node].local(self.now);
                if local < due {
                    // The clock stood still during a pause: the timer is not due yet.
                    let at = self.now + self.nodes[node].db_span(due - local);
                    self.push(at, Event::Timer { node, due, timer });
                } else {
                    self.timer(node, timer);
                }
            }
            Event::Resume { node } => self.resume(node),
            Event::Fault => self.fault(),
            Event::Probe => self.probe(),
            Event::Join => self.join(),
        }
    }

    // --- network -----------------------------------------------------------------------------

    fn delay(&mut self) -> DbTime {
        if self.now < self.schedule.fault_end && self.rng.percent(LATE_PERCENT) {
            self.rng.between(0, FAULT_DELAY)
        } else {
            self.rng.between(0, QUIET_DELAY)
        }
    }

    fn send(&mut self, from: usize, request: Request) {
        let at = self.now + self.delay();
        self.push(at, Event::Arrive { from, request });
    }

    fn reply(&mut self, to: usize, reply: Reply) {
        let at = self.now + self.delay();
        self.push(at, Event::Deliver { to, reply });
    }

    fn set_timer(&mut self, node: usize, after: LocalTime, timer: Timer) {
        let due = self.nodes[node].local(self.now) + after;
        let at = self.now + self.nodes[node].db_span(after);
        self.push(at, Event::Timer { node, due, timer });
    }

    // --- the database ------------------------------------------------------------------------

    fn log_lease(&mut self, shard: usize, epoch: i64, owner: usize, event: LeaseEvent) {
        self.history.leases.push(LeaseRecord { op: self.op, at: self.now, shard, epoch, owner, event });
    }

    fn arrive(&mut self, from: usize, request: Request) {
        self.op += 1;
        let now = self.now;
        if !self.nodes[from].alive {
            self.stats.requests_after_crash += 1;
        }
        match request {
            Request::Heartbeat => self.node_rows[from].heartbeat_at = Some(now),
            Request::Acquire { shards, sent_local } => {
                let mut taken = Vec::new();
                for shard in shards {
                    let row = &mut self.leases[shard];
                    let free = row.owner.is_none() || row.expires_at <= now;
                    if free || self.schedule.variant == Variant::AcquireSteals {
                        row.owner = Some(from);
                        row.epoch += 1;
                        row.expires_at = now + TTL;
                        let epoch = row.epoch;
                        self.view_cache = None;
                        taken.push((shard, epoch));
                        self.log_lease(shard, epoch, from, LeaseEvent::Acquired { expires_at: now + TTL });
                    }
                }
                self.note(|| format!("db: n{from} acquired {taken:?}"));
                self.reply(from, Reply::Acquired { taken, sent_local });
            }
            Request::Renew { leases, sent_local } => {
                let mut renewed = Vec::new();
                for &(shard, epoch) in &leases {
                    let row = &mut self.leases[shard];
                    if row.owner == Some(from) && row.epoch == epoch && row.expires_at > now {
                        row.expires_at = now + TTL;
                        renewed.push((shard, epoch));
                        self.log_lease(shard, epoch, from, LeaseEvent::Renewed { expires_at: now + TTL });
                    }
                }
                if renewed.len() < leases.len() {
                    self.note(|| format!("db: n{from} renewed only {renewed:?} of {leases:?}"));
                }
                self.reply(from, Reply::Renewed { asked: leases, renewed, sent_local });
            }
            Request::Release { leases } => {
                for (shard, epoch) in leases {
                    let row = &mut self.leases[shard];
                    if row.owner == Some(from) && row.epoch == epoch {
                        row.owner = None;
                        row.expires_at = now;
                        self.view_cache = None;
                        self.stats.handovers += 1;
                        self.log_lease(shard, epoch, from, LeaseEvent::Released);
                        self.note(|| format!("db: n{from} released shard {shard} at epoch {epoch}"));
                    }
                }
            }
            Request::ReadView => {
                let live = self.live_names(now);
                let leases = self.lease_views(now);
                let draining = self.node_rows[from].draining;
                self.reply(from, Reply::View { live, leases, draining });
            }
            Request::LoadRun { run, token } => {
                let cursor = self.runs[run].cursor;
                self.history.cursors.push((self.op, run, cursor));
                self.reply(from, Reply::Loaded { run, cursor, token });
            }
            Request::CommitStep { run, shard, epoch, step, token } => {
                let row = &self.leases[shard];
                let lease_ok = shard == self.schedule.runs[run].shard
                    && row.owner == Some(from)
                    && row.epoch == epoch
                    && row.expires_at > now;
                let cursor_ok = self.runs[run].cursor == step;
                let ok = match self.schedule.variant {
                    Variant::NoLeaseFence => cursor_ok,
                    Variant::NoCursorFence => lease_ok,
                    _ => lease_ok && cursor_ok,
                };
                if !lease_ok {
                    self.stats.lease_rejections += 1;
                    if self.nodes[from].resumed_at.is_some_and(|r| now - r < TTL) {
                        self.stats.stale_after_pause_rejections += 1;
                    }
                } else if !cursor_ok {
                    self.stats.cursor_rejections += 1;
                }
                if ok {
                    self.stats.commits += 1;
                    let cursor = &mut self.runs[run].cursor;
                    *cursor = if self.schedule.variant == Variant::NoCursorFence { step + 1 } else { *cursor + 1 };
                    let cursor = *cursor;
                    self.history.cursors.push((self.op, run, cursor));
                    self.history.commits.push(CommitRecord {
                        op: self.op,
                        at: now,
                        run,
                        shard,
                        step,
                        node: from,
                        epoch,
                    });
                }
                self.note(|| {
                    format!(
                        "db: n{from} commit run {run} step {step} epoch {epoch}: ok={ok} \
                         (lease {lease_ok}, cursor {cursor_ok})"
                    )
                });
                self.reply(from, Reply::Committed { run, step, epoch, ok, token });
            }
        }
    }

    /// Every lease as `read_view` answers it at `now`.
    fn lease_views(&mut self, now: DbTime) -> Rc<[LeaseView]> {
        if let Some((views, until)) = &self.view_cache
            && now < *until
        {
            return Rc::clone(views);
        }
        let views: Rc<[LeaseView]> = self
            .schedule
            .shards
            .iter()
            .zip(&self.leases)
            .map(|(shard, row)| LeaseView {
                shard: *shard,
                owner: row.owner.map(|o| self.nodes[o].name.clone()),
                epoch: row.epoch,
                expired: row.owner.is_none() || row.expires_at <= now,
            })
            .collect();
        // Valid until the first held lease expires (renewals only push that later) or a lease
        // changes hands (acquire and release drop the cache).
        let until = self.leases.iter().filter(|r| r.owner.is_some() && r.expires_at > now).map(|r| r.expires_at).min();
        self.view_cache = Some((Rc::clone(&views), until.unwrap_or(DbTime::MAX)));
        views
    }

    /// Nodes that heartbeat within the ttl and are not draining, as the database judges them.
    fn live_names(&self, now: DbTime) -> Vec<String> {
        self.node_rows
            .iter()
            .zip(&self.nodes)
            .filter(|(row, _)| row.heartbeat_at.is_some_and(|h| h > now - TTL) && !row.draining)
            .map(|(_, node)| node.name.clone())
            .collect()
    }

    // --- nodes -------------------------------------------------------------------------------

    fn deliver(&mut self, n: usize, reply: Reply) {
        let local = self.nodes[n].local(self.now);
        match reply {
            Reply::Acquired { taken, sent_local } => {
                let valid_until = sent_local + LOCAL_VALIDITY;
                for (shard, epoch) in taken {
                    if valid_until <= local {
                        self.stats.acquired_too_late += 1;
                        continue;
                    }
                    if self.nodes[n].held.get(&shard).is_some_and(|h| h.epoch >= epoch) {
                        continue;
                    }
                    self.nodes[n].held.insert(shard, Held { epoch, valid_until });
                    for run in self.schedule.runs_by_shard[shard].clone() {
                        if self.nodes[n].workers[run] != Worker::Done {
                            self.load(n, run, epoch);
                        }
                    }
                }
            }
            Reply::Renewed { asked, renewed, sent_local } => {
                for (shard, epoch) in asked {
                    let Some(held) = self.nodes[n].held.get_mut(&shard) else { continue };
                    if held.epoch != epoch {
                        continue;
                    }
                    if renewed.contains(&(shard, epoch)) {
                        held.valid_until = held.valid_until.max(sent_local + LOCAL_VALIDITY);
                    } else {
                        self.stats.renew_failures += 1;
                        self.drop_shard(n, shard);
                    }
                }
            }
            Reply::View { live, leases, draining } => {
                let Plan { acquire, release } = plan(&self.nodes[n].name, &live, &leases, MAX_MOVES, draining);
                if !release.is_empty() && !draining && !live.contains(&self.nodes[n].name) {
                    self.stats.releases_while_missing_from_live += 1;
                    let (heartbeat, resumed) = (self.node_rows[n].heartbeat_at, self.nodes[n].resumed_at);
                    self.note(|| {
                        format!(
                            "n{n} missing from its own view of the live nodes {live:?} (last heartbeat landed at \
                             {heartbeat:?}, resumed at {resumed:?}); plan releases {release:?}"
                        )
                    });
                }
                if !release.is_empty() && self.schedule.variant != Variant::NeverRelease {
                    let release: Vec<(usize, i64)> =
                        release.into_iter().map(|(shard, epoch)| (usize::from(shard.get()), epoch)).collect();
                    for &(shard, epoch) in &release {
                        if self.nodes[n].held.get(&shard).is_some_and(|h| h.epoch == epoch) {
                            self.drop_shard(n, shard);
                        }
                    }
                    self.send(n, Request::Release { leases: release });
                }
                if !acquire.is_empty() {
                    let shards = acquire.into_iter().map(|shard| usize::from(shard.get())).collect();
                    self.send(n, Request::Acquire { shards, sent_local: local });
                }
            }
            Reply::Loaded { run, cursor, token } => {
                if let Worker::Loading { token: t, epoch } = self.nodes[n].workers[run]
                    && t == token
                {
                    let shard = self.schedule.runs[run].shard;
                    if cursor >= STEPS {
                        self.nodes[n].workers[run] = Worker::Done;
                    } else if self.nodes[n].held.get(&shard).is_some_and(|h| h.epoch == epoch) {
                        self.start_work(n, run, epoch, cursor);
                    } else {
                        self.nodes[n].workers[run] = Worker::Idle;
                    }
                }
            }
            Reply::Committed { run, step, epoch, ok, token } => {
                if ok {
                    self.stats.acks += 1;
                    self.history.acks.push(AckRecord { run, step, node: n, epoch });
                }
                if let Worker::Committing { token: t, epoch: e, step: s, .. } = self.nodes[n].workers[run]
                    && t == token
                {
                    if !ok {
                        self.nodes[n].workers[run] = Worker::Reload;
                    } else if s + 1 >= STEPS {
                        self.nodes[n].workers[run] = Worker::Done;
                    } else {
                        self.start_work(n, run, e, s + 1);
                    }
                }
            }
        }
    }

    fn timer(&mut self, n: usize, timer: Timer) {
        match timer {
            Timer::Tick => self.tick(n),
            Timer::WorkDone { run, token } => {
                let Worker::Working { token: t, epoch, step } = self.nodes[n].workers[run] else { return };
                if t != token {
                    return;
                }
                let shard = self.schedule.runs[run].shard;
                let local = self.nodes[n].local(self.now);
                // The node's own check, by its own clock: necessary for progress, not for safety.
                if self.nodes[n].held.get(&shard).is_some_and(|h| h.epoch == epoch && local < h.valid_until) {
                    self.nodes[n].workers[run] = Worker::Committing { token, epoch, step, sent: local };
                    self.send(n, Request::CommitStep { run, shard, epoch, step, token });
                } else {
                    self.nodes[n].workers[run] = Worker::Idle;
                }
            }
        }
    }

    fn tick(&mut self, n: usize) {
        let local = self.nodes[n].local(self.now);
        let lapsed: Vec<usize> =
            self.nodes[n].held.iter().filter(|(_, h)| h.valid_until <= local).map(|(s, _)| *s).collect();
        for shard in lapsed {
            self.stats.leases_dropped_locally += 1;
            self.drop_shard(n, shard);
        }
        self.send(n, Request::Heartbeat);
        if !self.nodes[n].held.is_empty() {
            let leases = self.nodes[n].held.iter().map(|(s, h)| (*s, h.epoch)).collect();
            self.send(n, Request::Renew { leases, sent_local: local });
        }
        self.send(n, Request::ReadView);
        for worker in &mut self.nodes[n].workers {
            if let Worker::Committing { sent, .. } = *worker
                && local - sent >= COMMIT_TIMEOUT
            {
                self.stats.commit_timeouts += 1;
                *worker = Worker::Reload;
            }
        }
        let held: Vec<(usize, i64)> = self.nodes[n].held.iter().map(|(s, h)| (*s, h.epoch)).collect();
        for (shard, epoch) in held {
            for run in self.schedule.runs_by_shard[shard].clone() {
                if matches!(self.nodes[n].workers[run], Worker::Reload | Worker::Idle) {
                    self.load(n, run, epoch);
                }
            }
        }
        self.set_timer(n, TICK, Timer::Tick);
    }

    fn load(&mut self, n: usize, run: usize, epoch: i64) {
        let token = self.nodes[n].token();
        self.nodes[n].workers[run] = Worker::Loading { token, epoch };
        self.send(n, Request::LoadRun { run, token });
    }

    fn start_work(&mut self, n: usize, run: usize, epoch: i64, step: u32) {
        let token = self.nodes[n].token();
        self.nodes[n].workers[run] = Worker::Working { token, epoch, step };
        let work = self.rng.between(TTL / 30, TTL / 6);
        self.set_timer(n, work, Timer::WorkDone { run, token });
    }

    fn drop_shard(&mut self, n: usize, shard: usize) {
        self.nodes[n].held.remove(&shard);
        for &run in &self.schedule.runs_by_shard[shard] {
            if self.nodes[n].workers[run] != Worker::Done {
                self.nodes[n].workers[run] = Worker::Idle;
            }
        }
    }

    fn probe(&mut self) {
        if self.check_liveness().is_ok() {
            if self.stable_probes == 0 {
                self.stable_since = self.now;
            }
            self.stable_probes += 1;
        } else {
            self.stable_probes = 0;
        }
        let converged = self.stable_probes > 0;
        let last = self.now + PROBE > self.schedule.end;
        // Stop early only once everything sent while faults were on has landed.
        let settled = self.now >= self.schedule.fault_end + SETTLE;
        if converged && (settled && self.stable_probes >= STABLE_PROBES && self.schedule.early_stop || last) {
            let took = self.stable_since - self.schedule.fault_end;
            self.stats.converge_total += took;
            self.stats.converge_max = self.stats.converge_max.max(took);
            self.stopped = self.schedule.early_stop;
            let probes = self.stable_probes;
            self.note(|| format!("invariant 4 holds on {probes} probes, since {took} after faults stopped"));
        }
        if !self.stopped && !last {
            self.push(self.now + PROBE, Event::Probe);
        }
    }

    // --- faults ------------------------------------------------------------------------------

    fn join(&mut self) {
        let index = self.nodes.len();
        let rate_ppm = self.rng.between(900_000, 1_100_000);
        let anchor_local = self.rng.between(0, 1_000_000_000);
        self.nodes.push(Node {
            name: format!("n{index}"),
            alive: true,
            paused: false,
            resumed_at: None,
            rate_ppm,
            anchor_db: self.now,
            anchor_local,
            deferred: Vec::new(),
            held: BTreeMap::new(),
            workers: vec![Worker::Idle; self.schedule.runs.len()],
            next_token: 0,
        });
        self.node_rows.push(NodeRow { heartbeat_at: None, draining: false });
        if self.now > 0 {
            self.stats.joins += 1;
        }
        self.note(|| format!("fault: n{index} joins (clock rate {rate_ppm} ppm)"));
        let first = self.rng.between(0, TICK);
        self.set_timer(index, first, Timer::Tick);
    }

    fn fault(&mut self) {
        match self.rng.between(0, 99) {
            0..=34 => self.pause_one(),
            35..=59 => self.crash_one(),
            60..=79 => self.drain_one(),
            _ => self.join(),
        }
    }

    fn healthy_count(&self) -> usize {
        self.nodes.iter().zip(&self.node_rows).filter(|(n, r)| n.alive && !r.draining).count()
    }

    fn pick(&mut self, eligible: impl Fn(&Node, &NodeRow) -> bool) -> Option<usize> {
        let candidates: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| eligible(&self.nodes[i], &self.node_rows[i])).collect();
        if candidates.is_empty() { None } else { Some(candidates[self.rng.index(candidates.len())]) }
    }

    fn pause_one(&mut self) {
        let Some(n) = self.pick(|node, _| node.alive && !node.paused) else { return };
        // Always longer than the ttl, and over before the faults stop.
        let duration = self.rng.between(TTL * 11 / 10, TTL * 5 / 2).min(self.schedule.fault_end - self.now);
        if duration <= TTL {
            return;
        }
        let node = &mut self.nodes[n];
        node.anchor_local = node.local(self.now);
        node.anchor_db = self.now;
        node.paused = true;
        self.stats.pauses += 1;
        let name = node.name.clone();
        self.note(|| format!("fault: {name} paused for {duration}"));
        self.push(self.now + duration, Event::Resume { node: n });
    }

    fn resume(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.alive || !node.paused {
            return;
        }
        node.anchor_db = self.now;
        node.paused = false;
        node.resumed_at = Some(self.now);
        let deferred = std::mem::take(&mut node.deferred);
        let name = node.name.clone();
        self.note(|| format!("fault: {name} resumes with {} deferred events", deferred.len()));
        for event in deferred {
            self.push(self.now, event);
        }
    }

    fn crash_one(&mut self) {
        let healthy = self.healthy_count();
        let Some(n) = self.pick(|node, row| node.alive && (row.draining || healthy >= 2)) else { return };
        let node = &mut self.nodes[n];
        node.alive = false;
        node.held.clear();
        node.deferred.clear();
        self.stats.crashes += 1;
        let name = node.name.clone();
        self.note(|| format!("fault: {name} crashes"));
        let restart = (self.now + self.rng.between(TTL / 2, 3 * TTL)).min(self.schedule.fault_end);
        self.push(restart, Event::Join);
    }

    fn drain_one(&mut self) {
        if self.healthy_count() < 3 {
            return;
        }
        let Some(n) = self.pick(|node, row| node.alive && !row.draining) else { return };
        self.node_rows[n].draining = true;
        self.stats.drains += 1;
        let name = self.nodes[n].name.clone();
        self.note(|| format!("fault: {name} drains"));
    }

    // --- invariants --------------------------------------------------------------------------

    fn check(&self) -> Result<(), Violation> {
        check_leases_and_fencing(&self.history, self.schedule.shards.len())?;
        check_steps(&self.history, &self.runs)?;
        self.check_liveness()
    }

    /// Invariant 4, at the end of the quiet tail (and on the probes before it).
    fn check_liveness(&self) -> Result<(), Violation> {
        let fail = |detail: String| Err(Violation { invariant: 4, detail });
        let now = self.now;
        let live = self.live_names(now);
        let healthy: Vec<String> = self
            .nodes
            .iter()
            .zip(&self.node_rows)
            .filter(|(n, r)| n.alive && !r.draining)
            .map(|(n, _)| n.name.clone())
            .collect();
        if live != healthy {
            return fail(format!("live per the database {live:?}, healthy nodes {healthy:?}"));
        }
        for (shard, row) in self.schedule.shards.iter().zip(&self.leases) {
            let holder = row.owner.filter(|_| row.expires_at > now).map(|o| self.nodes[o].name.as_str());
            let desired = owner(*shard, &live);
            if holder.is_none() || holder != desired {
                return fail(format!("{shard:?} held by {holder:?} (epoch {}), placement says {desired:?}", row.epoch));
            }
            // The holder also knows it holds the shard (and so renews it and works its runs).
            let index = usize::from(shard.get());
            if let Some(o) = row.owner
                && self.nodes[o].held.get(&index).is_none_or(|h| h.epoch != row.epoch)
            {
                return fail(format!(
                    "{shard:?} is n{o}'s at epoch {} in the database but not in its memory",
                    row.epoch
                ));
            }
        }
        for (run, row) in self.runs.iter().enumerate() {
            if row.cursor != STEPS {
                let spec = &self.schedule.runs[run];
                return fail(format!(
                    "run {run} (tenant {}, shard {}) stopped at step {} of {STEPS}",
                    spec.tenant, spec.shard, row.cursor
                ));
            }
        }
        Ok(())
    }
}

/// Invariants 1 and 2: replays the lease history and the commits in database order.
fn check_leases_and_fencing(history: &History, shards: usize) -> Result<(), Violation> {
    #[derive(Clone)]
    struct Truth {
        epoch: i64,
        owner: Option<usize>,
        valid_until: DbTime,
        released: bool,
        last_commit_epoch: i64,
    }
    let one = |detail: String| Err(Violation { invariant: 1, detail });
    let two = |detail: String| Err(Violation { invariant: 2, detail });
    let mut owners: BTreeMap<(usize, i64), usize> = BTreeMap::new();
    for r in &history.leases {
        if let Some(prev) = owners.insert((r.shard, r.epoch), r.owner)
            && prev != r.owner
        {
            return one(format!("shard {} epoch {} owned by n{prev} and n{}", r.shard, r.epoch, r.owner));
        }
    }
    let mut truth =
        vec![Truth { epoch: 0, owner: None, valid_until: DbTime::MIN, released: false, last_commit_epoch: 0 }; shards];
    let (mut leases, mut commits) = (history.leases.iter().peekable(), history.commits.iter().peekable());
    loop {
        let lease_first = match (leases.peek(), commits.peek()) {
            (None, None) => return Ok(()),
            (Some(l), Some(c)) => l.op <= c.op,
            (l, _) => l.is_some(),
        };
        if lease_first {
            let Some(r) = leases.next() else { return Ok(()) };
            let t = &mut truth[r.shard];
            let holding = t.owner.is_some() && !t.released && t.valid_until > r.at;
            match r.event {
                LeaseEvent::Acquired { expires_at } => {
                    if r.epoch <= t.epoch {
                        return one(format!("shard {} acquired at epoch {} after epoch {}", r.shard, r.epoch, t.epoch));
                    }
                    if holding {
                        return one(format!(
                            "shard {} taken by n{} at epoch {} (t={}) while n{} held epoch {} until {}",
                            r.shard,
                            r.owner,
                            r.epoch,
                            r.at,
                            t.owner.unwrap_or_default(),
                            t.epoch,
                            t.valid_until
                        ));
                    }
                    *t = Truth {
                        epoch: r.epoch,
                        owner: Some(r.owner),
                        valid_until: expires_at,
                        released: false,
                        last_commit_epoch: t.last_commit_epoch,
                    };
                }
                LeaseEvent::Renewed { expires_at } => {
                    if r.epoch != t.epoch || t.owner != Some(r.owner) || !holding {
                        return one(format!(
                            "shard {} renewed by n{} at epoch {}, not held",
                            r.shard, r.owner, r.epoch
                        ));
                    }
                    t.valid_until = expires_at;
                }
                LeaseEvent::Released => {
                    if r.epoch != t.epoch || t.owner != Some(r.owner) {
                        return one(format!(
                            "shard {} released by n{} at epoch {}, not its own",
                            r.shard, r.owner, r.epoch
                        ));
                    }
                    t.released = true;
                }
            }
        } else {
            let Some(c) = commits.next() else { return Ok(()) };
            let t = &mut truth[c.shard];
            if t.epoch != c.epoch || t.owner != Some(c.node) || t.released || t.valid_until <= c.at {
                return two(format!(
                    "run {} step {} committed by n{} at epoch {} (t={}), but shard {} was at epoch {} owner {:?} \
                     released {} valid until {}",
                    c.run, c.step, c.node, c.epoch, c.at, c.shard, t.epoch, t.owner, t.released, t.valid_until
                ));
            }
            if c.epoch < t.last_commit_epoch {
                return two(format!(
                    "shard {}: commit at epoch {} after a commit at epoch {}",
                    c.shard, c.epoch, t.last_commit_epoch
                ));
            }
            t.last_commit_epoch = c.epoch;
        }
    }
}

/// Invariant 3: no step twice, no acknowledged step lost, cursors never go back.
fn check_steps(history: &History, runs: &[RunRow]) -> Result<(), Violation> {
    let three = |detail: String| Err(Violation { invariant: 3, detail });
    let mut committed: BTreeMap<(usize, u32), &CommitRecord> = BTreeMap::new();
    for c in &history.commits {
        if let Some(first) = committed.insert((c.run, c.step), c) {
            return three(format!(
                "run {} step {} committed twice: by n{} at epoch {} (t={}) and by n{} at epoch {} (t={})",
                c.run, c.step, first.node, first.epoch, first.at, c.node, c.epoch, c.at
            ));
        }
    }
    for a in &history.acks {
        match committed.get(&(a.run, a.step)) {
            Some(c) if c.node == a.node && c.epoch == a.epoch => {}
            other => {
                return three(format!(
                    "n{} got an ack for run {} step {} at epoch {}, the log has {other:?}",
                    a.node, a.run, a.step, a.epoch
                ));
            }
        }
    }
    let mut last = vec![0u32; runs.len()];
    for &(op, run, cursor) in &history.cursors {
        if cursor < last[run] {
            return three(format!("run {run}: cursor went back from {} to {cursor} (op {op})", last[run]));
        }
        last[run] = cursor;
    }
    for (run, row) in runs.iter().enumerate() {
        let steps = committed.range((run, 0)..=(run, u32::MAX)).count();
        if u32::try_from(steps).ok() != Some(row.cursor) {
            return three(format!("run {run}: cursor {} but {steps} steps in the log", row.cursor));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running many schedules.

fn simulate(seed: u64, variant: Variant, tracing: bool) -> Outcome {
    Sim::new(seed, variant, tracing).run()
}

/// Runs `seeds` on all cores; answers the failures (by seed) and the summed statistics.
fn sweep(variant: Variant, seeds: std::ops::Range<u64>) -> (Vec<(u64, Violation)>, Stats) {
    let next = AtomicU64::new(seeds.start);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let results: Vec<(Vec<(u64, Violation)>, Stats)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let (mut failures, mut stats) = (Vec::new(), Stats::default());
                    loop {
                        let seed = next.fetch_add(1, AtomicOrdering::Relaxed);
                        if seed >= seeds.end {
                            break;
                        }
                        let outcome = simulate(seed, variant, false);
                        stats.absorb(&outcome.stats);
                        if let Err(v) = outcome.verdict {
                            failures.push((seed, v));
                        }
                    }
                    (failures, stats)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a sweep thread panicked")).collect()
    });
    let (mut failures, mut stats) = (Vec::new(), Stats::default());
    for (f, s) in results {
        failures.extend(f);
        stats.absorb(&s);
    }
    failures.sort_by_key(|(seed, _)| *seed);
    (failures, stats)
}

fn replay_hint(seed: u64, variant: Variant) -> String {
    format!(
        "LEASE_MODEL_SEED={seed} LEASE_MODEL_VARIANT={variant:?} cargo test -p flywheel-cluster --test lease_model \
         a_seed_replays_with_its_trace -- --nocapture"
    )
}

/// The first seed below `limit` on which `variant` breaks an invariant.
fn first_failure(variant: Variant, limit: u64) -> Option<(u64, Violation)> {
    (0..limit).find_map(|seed| simulate(seed, variant, false).verdict.err().map(|v| (seed, v)))
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn lease_protocol_holds_on_random_schedules() {
    let schedules = std::env::var("LEASE_MODEL_SCHEDULES").ok().and_then(|s| s.parse().ok()).unwrap_or(SCHEDULES);
    let started = Instant::now();
    let (failures, stats) = sweep(Variant::Correct, 0..schedules);
    println!("{schedules} schedules in {:.2?}: {stats:#?}", started.elapsed());
    if let Some((seed, v)) = failures.first() {
        let all: Vec<String> =
            failures.iter().take(10).map(|(s, v)| format!("seed {s}: invariant {}", v.invariant)).collect();
        panic!(
            "{} of {schedules} schedules broke an invariant ({all:?}); first: seed {seed} broke invariant {}: {}\n\
             replay: {}",
            failures.len(),
            v.invariant,
            v.detail,
            replay_hint(*seed, Variant::Correct)
        );
    }
    // The schedules must actually reach the dangerous interleavings, or passing means nothing.
    assert_eq!(stats.schedules, schedules);
    if schedules >= SCHEDULES {
        for (what, count) in [
            ("pauses", stats.pauses),
            ("crashes", stats.crashes),
            ("drains", stats.drains),
            ("joins", stats.joins),
            ("handovers", stats.handovers),
            ("commits rejected by the lease fence", stats.lease_rejections),
            ("stale commits after a pause rejected", stats.stale_after_pause_rejections),
            ("commits rejected by the cursor fence", stats.cursor_rejections),
            ("requests arriving after their sender crashed", stats.requests_after_crash),
            ("renewals that failed", stats.renew_failures),
        ] {
            assert!(count > 0, "no schedule exercised {what}: {stats:#?}");
        }
    }
}

#[test]
fn the_same_seed_replays_the_same_history() {
    let (a, b) = (simulate(7, Variant::Correct, false), simulate(7, Variant::Correct, false));
    assert_eq!(a.stats, b.stats);
    assert_eq!(a.history, b.history);
    assert!(!a.history.commits.is_empty(), "seed 7 committed nothing");
}

fn assert_caught(variant: Variant, invariant: u8) {
    let found = first_failure(variant, 500);
    let Some((seed, v)) = found else { panic!("{variant:?} survived 500 schedules: the checker cannot fail") };
    println!("{variant:?} caught on seed {seed}: invariant {}: {}", v.invariant, v.detail);
    assert_eq!(
        v.invariant,
        invariant,
        "{variant:?} on seed {seed}: {}\nreplay: {}",
        v.detail,
        replay_hint(seed, variant)
    );
}

#[test]
fn commits_without_the_lease_fence_are_caught() {
    // Nodes still check their leases by their local clocks before committing; pauses and late
    // requests defeat that, and only the database's fence stopped them.
    assert_caught(Variant::NoLeaseFence, 2);
}

#[test]
fn commits_without_the_cursor_fence_are_caught() {
    // A commit that timed out is retried after a re-read; the first attempt may still land.
    assert_caught(Variant::NoCursorFence, 3);
}

#[test]
fn an_acquire_that_steals_a_live_lease_is_caught() {
    assert_caught(Variant::AcquireSteals, 1);
}

#[test]
fn nodes_that_never_hand_over_are_caught() {
    assert_caught(Variant::NeverRelease, 4);
}

/// Replays one schedule with its trace — `LEASE_MODEL_SEED` (seed 7 unless set) and optionally
/// `LEASE_MODEL_VARIANT` — printed with `--nocapture`. Tracing must not change the schedule: the
/// traced run reaches the untraced run's history and verdict.
#[test]
fn a_seed_replays_with_its_trace() {
    let seed: u64 = std::env::var("LEASE_MODEL_SEED").map_or(Ok(7), |s| s.parse()).expect("LEASE_MODEL_SEED is a u64");
    let variant = std::env::var("LEASE_MODEL_VARIANT")
        .map_or(Ok(Variant::Correct), |v| v.parse())
        .expect("LEASE_MODEL_VARIANT names a variant");
    let outcome = simulate(seed, variant, true);
    for line in &outcome.trace {
        println!("{line}");
    }
    println!("{:#?}", outcome.stats);
    assert!(!outcome.trace.is_empty(), "a traced run records its steps");
    let untraced = simulate(seed, variant, false);
    assert_eq!(outcome.history, untraced.history, "tracing changed the schedule");
    assert_eq!(outcome.verdict.is_ok(), untraced.verdict.is_ok());
    if let Err(v) = outcome.verdict {
        panic!("seed {seed} ({variant:?}) broke invariant {}: {}", v.invariant, v.detail);
    }
}
