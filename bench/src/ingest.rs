//! Event ingestion: the full path — `POST /v1/collect` on a real node process, the Redis stream,
//! the `EventIngestor`s' batches into `events` (one statement each, the rows bound as arrays:
//! `COPY` cannot write into a table with row-level security) — against two baselines measured in
//! the same run:
//!
//! - (a) raw binary COPY of the same synthetic events into a copy of `events` without row-level
//!   security ([`raw_copy`]): what PostgreSQL alone can take. Target (issue 4): the node persists
//!   at least half of that rate (`persisted/raw-copy` ≥ 0.5x).
//! - (b) the node ([`node`]), driven by the built-in load generator ([`load`]), in two parts:
//!   - the full node (edge and ingestors), on an empty `events` as (a) had: closed loop for the
//!     persisted rate under load (rows in `events`, counted once the stream's backlog has
//!     drained, over the time from the first request to the drain; target: at least half of
//!     (a); the rate at which the backlog alone drained, with no HTTP load, is reported); then
//!     the highest rate the node sustains, searched for with short open-loop probes (a rate is
//!     sustained when every request is accepted, the stream's backlog did not grow over the
//!     window and holds no more than a second of the load when it stops: the ingestors store as
//!     fast as the edge accepts). The closed
//!     loop's persisted rate is not that rate: most of its events are stored after the load,
//!     with no HTTP requests competing for the cores (in one run on two cores it was 35,563
//!     events/s, and probes at 28,078 and 30,630 events/s were not sustained). Then open loop at
//!     70 % of the sustained rate for the latency (target: p99 ≤ 5 ms); and, for context, open
//!     loop at 70 % of the closed loop's accepted rate (a load whose backlog grows).
//!   - the accept path alone: an edge-only node (`FLYWHEEL_INGESTORS=0`, as deployed in front of
//!     separate ingest nodes) under closed-loop load, so that the PostgreSQL backends storing
//!     events do not share the two cores with what is measured. A stand-in for the ingest nodes
//!     ([`drain`]) takes and acknowledges the entries without storing them, so Redis serves a
//!     consumer as it does in a deployment and the stream stays at a steady backlog. Target: it
//!     accepts at least a quarter of the no-op handler's rate (`accepted/noop` ≥ 0.25x), measured
//!     in short closed-loop rounds of the two in turn (so a drift of the machine's speed weighs on
//!     both alike; the ratio of the separate phases a minute apart is reported too). Every
//!     2xx must be one stream entry, consumed or left, when it stops (checked); what is left is
//!     then discarded.
//!
//!   The nodes' resident memory is sampled throughout (reported).
//! - (c) a no-op axum handler on the same machine ([`noop`]) under the same closed-loop load: the
//!   HTTP stack's own ceiling.
//!
//! Events come from [`synthetic`]: a realistic mix over many tenants, `meta` of 300–600 bytes.
//! Everything runs in a database and a Redis namespace of the benchmark's own; both are removed
//! at the end (the database dropped, the namespace's keys deleted). The node binary is built
//! first (`cargo build --release --bin flywheel`).

pub mod drain;
pub mod load;
pub mod node;
pub mod noop;
pub mod raw_copy;
pub mod synthetic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use flywheel_contracts::Slug;
use flywheel_contracts::events::MAX_BATCH_EVENTS;
use flywheel_storage::event_stream::{EventStream, StreamConfig};
use flywheel_storage::redis::RedisStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::limits::{Polled, bounded, poll_until};
use crate::pauses;
use crate::sample::Nanos;
use crate::services::{BenchDatabase, Services, remove_redis};
use crate::steal::{self, CpuTime};
use crate::target::Target;
use load::{Load, Outcome, Pace, Workload};
use node::{Node, NodeSettings, RssSampler};

/// Upper bound on the measurements, the node's build and the cleanup excluded.
const LIMIT: Duration = Duration::from_secs(900);
/// Distinct request bodies the load cycles through.
const BODIES: usize = 256;
/// Stream shards of the node (its default).
const SHARDS: u16 = 8;
/// How long the node may take to load its model and answer `/readyz`.
const READY_LIMIT: Duration = Duration::from_secs(120);
/// The edge-only node's backlog bound per shard: high enough that its closed loop measures the
/// accept path, not the bound, even when the stand-in consumer falls behind (the load is
/// time-limited, so Redis holds at most that much).
const EDGE_ONLY_MAX_BACKLOG: u64 = 5_000_000;
/// Rounds of the edge-only node and the no-op handler in turn, for the accept ratio, each as long
/// as a third of the phase (5 s at the default 15 s). The no-op rate alone moved by up to 40 %
/// between the rounds of one run (767,716 to 1,081,212 events/s), so six rounds rather than
/// three: twice the samples for the means the ratio is made of.
const ROUNDS: u32 = 6;
/// Each round lasts the phase's duration divided by this (see [`ROUNDS`]).
const ROUND_OF_PHASE: u32 = 3;
/// Open-loop probes of the search for the full node's highest sustained rate (the first at the
/// ceiling, then bisecting: the answer is within 1/32 of the ceiling below the true one), and each
/// one's measured window.
const PROBES: u32 = 6;
const PROBE_WINDOW: Duration = Duration::from_secs(6);
/// A probe's rate is sustained when, as its load stops, the stream holds no more than this much
/// of it: what the ingestors hold in flight (a linger of 200 ms and the store of a batch), not a
/// backlog that grows.
const SUSTAINED_BACKLOG: Duration = Duration::from_secs(1);
/// A probe's rate is sustained only if, as well, the backlog did not grow over its window: its
/// least-squares slope, from samples every [`BACKLOG_SAMPLE`], is at most this share of the rate.
/// The end's backlog alone let through a rate the ingestors fell behind by up to an eighth (a
/// second of backlog after eight seconds of load); the slope of some sixty samples is not moved
/// much by the batches' sawtooth (the backlog rises while a batch is stored, then falls by a
/// batch), and 3 % is the search's own resolution (1/32 of the ceiling).
const SUSTAINED_GROWTH: f64 = 0.03;
const BACKLOG_SAMPLE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, clap::Args)]
pub struct IngestConfig {
    /// Events the raw COPY baseline writes.
    #[arg(
        long = "ingest-raw-events",
        env = "FLYWHEEL_BENCH_INGEST_RAW_EVENTS",
        value_name = "N",
        default_value_t = 1_000_000
    )]
    pub raw_events: u64,
    /// Tenants the events are spread over (each sends with its own write key).
    #[arg(long = "ingest-tenants", env = "FLYWHEEL_BENCH_INGEST_TENANTS", value_name = "N", default_value_t = 50)]
    pub tenants: usize,
    /// Requests in flight at most (closed loop: exactly; one keep-alive connection each).
    #[arg(
        long = "ingest-concurrency",
        env = "FLYWHEEL_BENCH_INGEST_CONCURRENCY",
        value_name = "N",
        default_value_t = 16
    )]
    pub concurrency: usize,
    /// Events in each `/v1/collect` request (at most 500).
    #[arg(
        long = "ingest-events-per-request",
        env = "FLYWHEEL_BENCH_INGEST_EVENTS_PER_REQUEST",
        value_name = "N",
        default_value_t = 20
    )]
    pub events_per_request: usize,
    /// Measured seconds of each load phase (three on the node, one on the no-op handler).
    #[arg(long = "ingest-secs", env = "FLYWHEEL_BENCH_INGEST_SECS", value_name = "SECONDS", default_value_t = 15)]
    pub secs: u64,
    /// Unmeasured seconds before each phase's window.
    #[arg(
        long = "ingest-warmup-secs",
        env = "FLYWHEEL_BENCH_INGEST_WARMUP_SECS",
        value_name = "SECONDS",
        default_value_t = 2
    )]
    pub warmup_secs: u64,
    /// The open-loop rates as a fraction of the full node's highest sustained rate (the target's
    /// phase) and of the closed loop's accepted rate (for context).
    #[arg(
        long = "ingest-load-fraction",
        env = "FLYWHEEL_BENCH_INGEST_LOAD_FRACTION",
        value_name = "F",
        default_value_t = 0.7
    )]
    pub load_fraction: f64,
    /// A fixed rate in events per second for the target's open-loop phase, instead of the fraction
    /// of the sustained rate (no search for it then).
    #[arg(long = "ingest-rate", env = "FLYWHEEL_BENCH_INGEST_RATE", value_name = "EVENTS_PER_SEC")]
    pub rate: Option<f64>,
    /// The node's event ingestors (FLYWHEEL_INGESTORS).
    #[arg(long = "ingestors", env = "FLYWHEEL_BENCH_INGESTORS", value_name = "N", default_value_t = 2)]
    pub ingestors: u16,
    /// Connections of the raw COPY baseline (by default one per core: what PostgreSQL alone
    /// can take on this machine, whatever the node's ingestors).
    #[arg(long = "ingest-raw-connections", env = "FLYWHEEL_BENCH_INGEST_RAW_CONNECTIONS", value_name = "N")]
    pub raw_connections: Option<usize>,
    /// The ingestor's batch (FLYWHEEL_INGEST_BATCH); the raw baseline COPYs batches of this size.
    #[arg(long = "ingest-batch", env = "FLYWHEEL_BENCH_INGEST_BATCH", value_name = "N", default_value_t = 5_000)]
    pub batch: usize,
    /// FLYWHEEL_INGEST_LINGER_MS of the node.
    #[arg(
        long = "ingest-linger-ms",
        env = "FLYWHEEL_BENCH_INGEST_LINGER_MS",
        value_name = "MS",
        default_value_t = 200
    )]
    pub linger_ms: u64,
    /// FLYWHEEL_INGEST_MAX_BACKLOG of the node (entries per shard before it answers 503).
    #[arg(
        long = "ingest-max-backlog",
        env = "FLYWHEEL_BENCH_INGEST_MAX_BACKLOG",
        value_name = "N",
        default_value_t = 200_000
    )]
    pub max_backlog: u64,
    /// How long the stream's backlog may take to drain after a phase.
    #[arg(
        long = "ingest-drain-secs",
        env = "FLYWHEEL_BENCH_INGEST_DRAIN_SECS",
        value_name = "SECONDS",
        default_value_t = 180
    )]
    pub drain_secs: u64,
    /// Measure one part only: `edge` (the edge-only node and its rounds with the no-op handler: the
    /// accept ratio, in about a minute) or `full` (the raw COPY, the full node and the no-op
    /// handler: the persisted ratio and the latency). Both by default.
    #[arg(long = "ingest-only", env = "FLYWHEEL_BENCH_INGEST_ONLY", value_name = "PART")]
    pub only: Option<Part>,
    /// A release `flywheel` binary to run instead of building this workspace's.
    #[arg(long = "node-binary", env = "FLYWHEEL_BENCH_NODE_BINARY", value_name = "PATH")]
    pub node_binary: Option<PathBuf>,
}

/// A part of the benchmark that can run alone (`--ingest-only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Edge,
    Full,
}

/// A tenant of the run: its id and its public write key.
struct BenchTenant {
    id: Uuid,
    write_key: String,
}

/// What every part of the run shares: the tenants, the prepared requests, the load's shape.
struct Plan {
    tenants: Vec<BenchTenant>,
    bodies: Vec<synthetic::Body>,
    rows: Vec<synthetic::Row>,
    events_per_request: usize,
    warmup: Duration,
    duration: Duration,
}

impl Plan {
    /// The load on a node at `base`: each tenant sends with its own write key.
    fn workload(&self, base: &str) -> Workload {
        Workload {
            urls: Arc::new(self.tenants.iter().map(|t| format!("{base}/v1/collect?key={}", t.write_key)).collect()),
            bodies: Arc::new(self.bodies.clone()),
            events_per_request: self.events_per_request as u64,
        }
    }

    /// The same bodies to the no-op handler (it needs no key).
    fn noop_workload(&self, server: &noop::NoopServer) -> Workload {
        Workload {
            urls: Arc::new(vec![format!("{}/v1/collect", server.base())]),
            bodies: Arc::new(self.bodies.clone()),
            events_per_request: self.events_per_request as u64,
        }
    }

    fn closed(&self, config: &IngestConfig) -> Load {
        Load { concurrency: config.concurrency, warmup: self.warmup, duration: self.duration, pace: Pace::Closed }
    }

    /// Open loop at `events_per_second`.
    fn open(&self, config: &IngestConfig, events_per_second: f64) -> Load {
        let requests_per_second = events_per_second / self.events_per_request as f64;
        Load { pace: Pace::Open { requests_per_second }, ..self.closed(config) }
    }
}

pub async fn run(services: &Services, config: IngestConfig) -> Result<Vec<Target>> {
    let events_per_request = config.events_per_request.clamp(1, MAX_BATCH_EVENTS);
    println!(
        "ingest: raw binary COPY vs the full path (HTTP → Redis stream → EventIngestor → events) vs a no-op \
         handler; {} tenants, {events_per_request} events per request, {} connections, {} s per phase after {} s \
         of warm-up",
        config.tenants, config.concurrency, config.secs, config.warmup_secs
    );
    // The build may take minutes the first time: before anything the limit covers.
    let explicit = config.node_binary.clone();
    let binary = tokio::task::spawn_blocking(move || node::binary(explicit.as_deref()))
        .await
        .context("the node build panicked")??;
    let redis = services.redis().await?;
    let database = BenchDatabase::create(services).await?;
    let outcome = bounded("the ingest benchmark", LIMIT, measure(services, &database, &redis, &config, binary)).await;
    database.remove().await;
    remove_redis(redis).await;
    outcome
}

async fn measure(
    services: &Services,
    database: &BenchDatabase,
    redis: &RedisStore,
    config: &IngestConfig,
    binary: PathBuf,
) -> Result<Vec<Target>> {
    let events_per_request = config.events_per_request.clamp(1, MAX_BATCH_EVENTS);
    let mut rng = synthetic::Rng::new(0x00f1_7ee1);
    let (bodies, events) = synthetic::bodies(&mut rng, BODIES, events_per_request);
    let plan = Plan {
        tenants: create_tenants(database, config.tenants.max(1)).await?,
        rows: events.iter().map(synthetic::Row::from_event).collect(),
        bodies,
        events_per_request,
        warmup: Duration::from_secs(config.warmup_secs),
        duration: Duration::from_secs(config.secs.max(1)),
    };
    let meta_mean = plan.rows.iter().map(|r| r.meta.len()).sum::<usize>() / plan.rows.len().max(1);
    let body_mean = plan.bodies.iter().map(synthetic::Body::len).sum::<usize>() / plan.bodies.len().max(1);
    println!("  events: meta averages {meta_mean} bytes; a request body averages {body_mean} bytes");

    let settings = NodeSettings {
        binary,
        database_url: database.app_url(),
        owner_database_url: format!(
            "postgres://flywheel_owner:{}@{}/{}",
            services.owner_password.expose(),
            services.pg_host,
            database.name()
        ),
        redis_url: services.redis_url.expose().clone(),
        namespace: redis.namespace().to_owned(),
        http: free_port()?,
        ingestors: config.ingestors.max(1),
        shards: SHARDS,
        batch: config.batch,
        linger_ms: config.linger_ms,
        max_backlog: config.max_backlog,
    };
    if config.only == Some(Part::Edge) {
        let edge = edge_only(redis, config, &plan, &settings).await?;
        let mut targets = vec![
            Target::at_least("accepted/noop", edge.rounds.ratio(), "x", 0.25),
            Target::info("edge-only-p99@70%", p99_ms(&edge.at_fraction), " ms"),
            Target::info("node-rss-max", edge.rss_max_kb as f64 / 1024.0, " MB"),
        ];
        targets.extend(steal_max(edge.rounds.steal.iter().copied()));
        return Ok(targets);
    }
    let (raw, raw_steal) = raw_baseline(database, config, &plan).await?;
    let node = full_path(database, redis, config, &plan, &settings).await?;
    let edge = match config.only {
        Some(Part::Full) => None,
        _ => Some(edge_only(redis, config, &plan, &settings).await?),
    };
    let noop = noop_baseline(config, &plan).await?;

    let persisted_ratio = node.closed.persisted_per_second() / raw.events_per_second();
    let drain_ratio = node.closed.drain_per_second().unwrap_or(0.0) / raw.events_per_second();
    let full_accepted_ratio = node.closed.outcome.events_per_second() / noop.events_per_second().max(1e-9);
    println!(
        "  persisted/raw-copy {persisted_ratio:.2}x ({:.0} / {:.0} events/s; with no HTTP load {drain_ratio:.2}x); \
         the full node under its own ingest accepted {full_accepted_ratio:.2}x the no-op handler's rate",
        node.closed.persisted_per_second(),
        raw.events_per_second(),
    );
    let mut targets = vec![
        Target::at_least("persisted/raw-copy", persisted_ratio, "x", 0.5),
        Target::info("persisted-no-http/raw-copy", drain_ratio, "x"),
    ];
    if let Some(sustained) = node.sustained {
        println!(
            "  sustained/raw-copy {:.2}x ({sustained:.0} / {:.0} events/s: accepted and stored as fast, with the HTTP load)",
            sustained / raw.events_per_second(),
            raw.events_per_second()
        );
        targets.push(Target::info("sustained/raw-copy", sustained / raw.events_per_second(), "x"));
    }
    let mut rss_max_kb = node.rss_max_kb;
    if let Some(edge) = &edge {
        let apart_ratio = edge.outcome.events_per_second() / noop.events_per_second().max(1e-9);
        println!(
            "  accepted/noop {:.2}x in turn ({apart_ratio:.2}x a minute apart: {:.0} / {:.0} events/s)",
            edge.rounds.ratio(),
            edge.outcome.events_per_second(),
            noop.events_per_second()
        );
        targets.push(Target::at_least("accepted/noop", edge.rounds.ratio(), "x", 0.25));
        targets.push(Target::info("accepted/noop-a-minute-apart", apart_ratio, "x"));
        rss_max_kb = rss_max_kb.max(edge.rss_max_kb);
    }
    // The names say 70 %: the figure (another --ingest-load-fraction changes what they measure).
    targets.extend([
        Target::info("full-node-accepted/noop", full_accepted_ratio, "x"),
        Target::at_most("p99@70%", p99_ms(&node.at_target.outcome), " ms", 5.0),
        Target::info("p99@70%-of-accepted", p99_ms(&node.at_accepted.outcome), " ms"),
        Target::info("p99@70%-from-send", node.at_target.outcome.service.map_or(f64::INFINITY, |l| l.p99 / 1e6), " ms"),
    ]);
    if let Some(p) = &node.at_target.outcome.paused {
        targets.push(Target::info("p99@70%-tail-in-pauses", p.tail_percent(), " %"));
    }
    if let Some(edge) = &edge {
        targets.push(Target::info("edge-only-p99@70%", p99_ms(&edge.at_fraction), " ms"));
    }
    targets.push(Target::info("node-rss-max", rss_max_kb as f64 / 1024.0, " MB"));
    let mut stolen = vec![raw_steal, node.closed.steal, node.at_target.steal];
    if let Some(edge) = &edge {
        stolen.extend(edge.rounds.steal.iter().copied());
    }
    targets.extend(steal_max(stolen));
    Ok(targets)
}

/// `steal-max`: the most CPU time the hypervisor took in one of the phases the targets come from,
/// in per cent (`None` where it could not be read). Well above a few per cent, a ratio may
/// measure the machine instead of the code.
fn steal_max(shares: impl IntoIterator<Item = Option<f64>>) -> Option<Target> {
    shares.into_iter().flatten().reduce(f64::max).map(|most| Target::info("steal-max", most * 100.0, " %"))
}

/// An outcome's p99 latency in milliseconds (infinite when nothing was answered).
fn p99_ms(outcome: &Outcome) -> f64 {
    outcome.latency.map_or(f64::INFINITY, |l| l.p99 / 1e6)
}

/// What the edge-only node did.
struct EdgeReport {
    outcome: Outcome,
    /// Open loop at the load fraction of `outcome`'s rate.
    at_fraction: Outcome,
    /// The edge and the no-op handler in turn: the target's ratio.
    rounds: Rounds,
    rss_max_kb: u64,
}

/// (b) The accept path alone: an edge-only node under closed-loop load, then open loop at the
/// load fraction of the rate it accepted (the latency of the edge with no ingest on the machine).
async fn edge_only(
    redis: &RedisStore,
    config: &IngestConfig,
    plan: &Plan,
    settings: &NodeSettings,
) -> Result<EdgeReport> {
    let settings = NodeSettings {
        ingestors: 0,
        max_backlog: config.max_backlog.max(EDGE_ONLY_MAX_BACKLOG),
        http: free_port()?,
        ..settings.clone()
    };
    let client = load::client(config.concurrency)?;
    let stream =
        EventStream::new(redis.clone(), StreamConfig { shards: SHARDS, max_backlog_per_shard: config.max_backlog });
    let mut node = Node::start(&settings)?;
    node.ready(&client, READY_LIMIT).await?;
    let drainer = drain::Drainer::start(stream.clone());
    let sampler = RssSampler::start(node.pid(), Duration::from_millis(100));
    let workload = plan.workload(node.base());
    let noop = noop::NoopServer::start(std::thread::available_parallelism().map_or(2, usize::from))?;
    let noop_workload = plan.noop_workload(&noop);
    // The target's ratio: short closed loops on the edge and on the no-op handler in turn, so a
    // drift of the machine's speed (the no-op rate alone moved by ±10 % between runs a minute
    // apart) weighs on both sides alike.
    let round = Load { duration: (plan.duration / ROUND_OF_PHASE).max(Duration::from_secs(1)), ..plan.closed(config) };
    let loads = async {
        let outcome = load::run(&client, &workload, plan.closed(config)).await?;
        let at_fraction =
            load::run(&client, &workload, plan.open(config, outcome.events_per_second() * config.load_fraction))
                .await?;
        let mut rounds = Rounds::default();
        for _ in 0..ROUNDS {
            let edge = load::run(&client, &workload, round).await?;
            rounds.edge_requests += edge.total_events / plan.events_per_request as u64;
            rounds.edge.push(edge.events_per_second());
            let noop = load::run(&client, &noop_workload, round).await?;
            rounds.noop.push(noop.events_per_second());
            rounds.steal.extend([edge.steal, noop.steal]);
        }
        anyhow::Ok((outcome, at_fraction, rounds))
    }
    .await;
    let noop_stopped = noop.stop().await;
    let rss_max_kb = sampler.finish().await;
    let (log_lines, log_tail) = (node.log_lines(), node.log_tail());
    node.stop();
    let drained = drainer.finish().await;
    let (outcome, at_fraction, rounds) = loads?;
    noop_stopped?;
    let drained = drained?;
    let left = stream.backlog().await?;
    stream.discard_all().await?;
    println!(
        "      the accept path alone: an edge-only node (no ingestors), closed loop, {} connections; a stand-in \
         consumer takes and acknowledges its entries without storing them",
        config.concurrency
    );
    println!("        {}", throughput(&outcome));
    println!("        latency {}", latency(&outcome));
    println!("      the same at {:.0} % of that rate, open loop", config.load_fraction * 100.0);
    println!("        {}", throughput(&at_fraction));
    println!("        latency {}", latency(&at_fraction));
    print_paused(&at_fraction);
    println!(
        "      accepted/noop in {ROUNDS} rounds of {:.0} s each, in turn: {:.2}x (edge {} / no-op {} events/s; \
         steal in each, edge then no-op: {})",
        round.duration.as_secs_f64(),
        rounds.ratio(),
        rounds.edge.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        rounds.noop.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        rounds.steal.iter().map(|&s| steal::percent(s)).collect::<Vec<_>>().join(", "),
    );
    let answered =
        (outcome.total_events + at_fraction.total_events) / plan.events_per_request as u64 + rounds.edge_requests;
    let entries = drained.entries + left;
    println!(
        "        {answered} requests answered 2xx; {} stream entries ({} events) consumed and {left} left; {} MB \
         resident at most; the node logged {log_lines} warning/error line(s)",
        drained.entries,
        drained.events,
        rss_max_kb / 1024
    );
    if answered != entries {
        bail!(
            "the edge answered 2xx to {answered} requests but wrote {entries} stream entries ({} consumed, {left} \
             left); its log:\n{log_tail}",
            drained.entries
        );
    }
    Ok(EdgeReport { outcome, at_fraction, rounds, rss_max_kb })
}

/// Rounds of the edge-only node and of the no-op handler, closed loop, in turn.
#[derive(Debug, Default)]
struct Rounds {
    /// Accepted events per second of each round.
    edge: Vec<f64>,
    noop: Vec<f64>,
    /// Requests the edge answered 2xx in them.
    edge_requests: u64,
    /// The share of CPU time stolen in each round, edge then no-op, in the order they ran.
    steal: Vec<Option<f64>>,
}

impl Rounds {
    /// The mean edge rate over the mean no-op rate (rounds of equal length).
    fn ratio(&self) -> f64 {
        self.edge.iter().sum::<f64>() / self.noop.iter().sum::<f64>().max(1e-9)
    }
}

/// (a) Raw binary COPY into a copy of `events` without RLS.
/// Also the share of CPU time stolen while it ran.
async fn raw_baseline(
    database: &BenchDatabase,
    config: &IngestConfig,
    plan: &Plan,
) -> Result<(raw_copy::RawReport, Option<f64>)> {
    let tenants: Vec<Uuid> = plan.tenants.iter().map(|t| t.id).collect();
    let spec = raw_copy::RawSpec {
        events: config.raw_events.max(1),
        batch: config.batch,
        writers: config
            .raw_connections
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
            .max(1),
    };
    let cpu = CpuTime::now();
    let raw = raw_copy::run(database, &tenants, &plan.rows, spec).await?;
    let stolen = cpu.and_then(|c| c.stolen_since());
    println!(
        "  (a) raw binary COPY into a copy of events without RLS ({} indexes, {} partitions), batches of {}, \
         {} connection(s)",
        raw.indexes, raw.partitions, spec.batch, spec.writers
    );
    println!(
        "      {} events in {:.2} s = {:.0} events/s ({} batches{})",
        raw.events,
        raw.elapsed.as_secs_f64(),
        raw.events_per_second(),
        raw.batches,
        steal::text(stolen)
    );
    Ok((raw, stolen))
}

/// What the full node did in its three phases.
struct NodeReport {
    closed: Phase,
    at_accepted: Phase,
    /// The target's phase: open loop at a fraction of `sustained`, or at the rate given.
    at_target: Phase,
    /// The highest rate it sustained (`None` when the target's rate was given).
    sustained: Option<f64>,
    rss_max_kb: u64,
}

/// (b) The full node: closed loop, the search for its sustained rate, open loop at a fraction of
/// that rate, then of the accepted rate; memory sampled throughout.
async fn full_path(
    database: &BenchDatabase,
    redis: &RedisStore,
    config: &IngestConfig,
    plan: &Plan,
    settings: &NodeSettings,
) -> Result<NodeReport> {
    let client = load::client(config.concurrency)?;
    let mut node = Node::start(settings)?;
    let ready = node.ready(&client, READY_LIMIT).await?;
    let rss_rest = node::rss_kb(node.pid())?;
    println!(
        "  (b) the node\n      the full node: pid {}, ready in {:.1} s, {} MB resident at rest; {} ingestor(s), batch {}, linger {} ms",
        node.pid(),
        ready.as_secs_f64(),
        rss_rest / 1024,
        settings.ingestors,
        settings.batch,
        settings.linger_ms
    );
    let workload = plan.workload(node.base());
    let stream =
        EventStream::new(redis.clone(), StreamConfig { shards: SHARDS, max_backlog_per_shard: config.max_backlog });
    let tenants: Vec<Uuid> = plan.tenants.iter().map(|t| t.id).collect();
    let mut counter = app_connection(database).await?;
    let sampler = RssSampler::start(node.pid(), Duration::from_millis(100));
    let mut driver = Driver {
        client: &client,
        workload: &workload,
        stream: &stream,
        counter: &mut counter,
        tenants: &tenants,
        node: node.pid(),
        drain_limit: Duration::from_secs(config.drain_secs.max(1)),
    };
    let fraction = config.load_fraction;
    let phases = async {
        let closed = driver.phase(plan.closed(config)).await?;
        print_phase(&format!("closed loop, {} connections", config.concurrency), &closed);

        // The target: a fraction of the highest rate the node sustains (or a rate given). No
        // rate above the backlog's drain with no HTTP load can be sustained with it.
        let (label, rate, sustained) = match config.rate {
            Some(events) => (format!("open loop at {events:.0} events/s"), events, None),
            None => {
                let ceiling = closed.drain_per_second().unwrap_or(0.0).max(closed.persisted_per_second());
                let sustained = driver.sustained_rate(plan, config, ceiling).await?;
                let label = format!("open loop at {:.0} % of the highest sustained rate", fraction * 100.0);
                (label, sustained * fraction, Some(sustained))
            }
        };
        let at_target = driver.phase(plan.open(config, rate)).await?;
        print_phase(&label, &at_target);

        // For context: the same fraction of the rate the edge accepts while the ingestors run
        // (the backlog grows: not sustainable for long).
        let rate = closed.outcome.events_per_second() * fraction;
        let at_accepted = driver.phase(plan.open(config, rate)).await?;
        print_phase(
            &format!("open loop at {:.0} % of the closed loop's accepted rate", fraction * 100.0),
            &at_accepted,
        );
        anyhow::Ok((closed, at_accepted, at_target, sustained))
    }
    .await;
    let rss_max_kb = sampler.finish().await;
    let dead_letters = stream.dead_letters().await.unwrap_or(0);
    let (log_lines, log_tail) = (node.log_lines(), node.log_tail());
    node.stop();
    counter.close().await?;
    let (closed, at_accepted, at_target, sustained) = phases?;
    println!("      node resident memory: {} MB at rest, {} MB at most under load", rss_rest / 1024, rss_max_kb / 1024);
    let accepted: u64 = [&closed, &at_accepted, &at_target].iter().map(|p| p.outcome.total_events).sum();
    let stored: u64 = [&closed, &at_accepted, &at_target].iter().map(|p| p.stored).sum();
    println!(
        "      {accepted} events accepted, {stored} stored, {dead_letters} dead-lettered; the node logged {log_lines} \
         warning/error line(s)"
    );
    if stored != accepted || dead_letters > 0 {
        println!("      WARNING: accepted and stored differ; the node's last log lines:\n{log_tail}");
    } else if log_lines > 0 {
        let last: Vec<&str> = log_tail.lines().rev().take(3).collect();
        println!("      the node's last warnings:\n        {}", last.join("\n        "));
    }
    Ok(NodeReport { closed, at_accepted, at_target, sustained, rss_max_kb })
}

/// (c) The no-op handler under the same closed-loop load.
async fn noop_baseline(config: &IngestConfig, plan: &Plan) -> Result<Outcome> {
    let server = noop::NoopServer::start(std::thread::available_parallelism().map_or(2, usize::from))?;
    let workload = plan.noop_workload(&server);
    let client = load::client(config.concurrency)?;
    let outcome = load::run(&client, &workload, plan.closed(config)).await;
    drop(client);
    server.stop().await?;
    let outcome = outcome?;
    println!("  (c) no-op axum handler, closed loop, {} connections", config.concurrency);
    println!("      {}", throughput(&outcome));
    println!("      latency {}", latency(&outcome));
    Ok(outcome)
}

/// One load phase on the node and what it left in `events`.
struct Phase {
    outcome: Outcome,
    /// Rows the phase added to `events`.
    stored: u64,
    /// From the first request to the last answer, and to the backlog's drain.
    load: Duration,
    until_drained: Duration,
    /// Events not yet stored when the load stopped.
    backlog_at_end: u64,
    /// The share of CPU time stolen from the first request until the backlog was stored.
    steal: Option<f64>,
}

impl Phase {
    /// Rows stored per second, from the first request until everything accepted was stored.
    fn persisted_per_second(&self) -> f64 {
        self.stored as f64 / self.until_drained.as_secs_f64().max(1e-9)
    }

    /// The rate at which the backlog left at the end of the load was stored, with no HTTP load
    /// competing for the CPU (`None` when there was too little of it to say).
    fn drain_per_second(&self) -> Option<f64> {
        let drain = self.until_drained.saturating_sub(self.load);
        (self.backlog_at_end >= 10_000 && drain > Duration::from_millis(500))
            .then(|| self.backlog_at_end as f64 / drain.as_secs_f64())
    }
}

/// Runs load phases against the node and counts what each left in `events`.
struct Driver<'a> {
    client: &'a reqwest::Client,
    workload: &'a Workload,
    stream: &'a EventStream,
    counter: &'a mut PgConnection,
    tenants: &'a [Uuid],
    /// The node's process id: a node that died fails the phase instead of a drain that never ends.
    node: u32,
    drain_limit: Duration,
}

impl Driver<'_> {
    async fn phase(&mut self, load: Load) -> Result<Phase> {
        let before = stored_events(self.counter, self.tenants).await?;
        let cpu = CpuTime::now();
        let start = Instant::now();
        let outcome = load::run(self.client, self.workload, load).await?;
        let load_time = start.elapsed();
        // Every entry holds one request's events.
        let backlog_at_end = self.stream.backlog().await? * self.workload.events_per_request;
        self.wait_for_drain().await?;
        let until_drained = start.elapsed();
        let after = stored_events(self.counter, self.tenants).await?;
        let steal = cpu.and_then(|c| c.stolen_since());
        Ok(Phase {
            outcome,
            stored: after.saturating_sub(before),
            load: load_time,
            until_drained,
            backlog_at_end,
            steal,
        })
    }

    /// [`Driver::phase`], with the stream's backlog (in events) sampled through the load's window
    /// and its growth over it, in events per second (`None` with fewer than two samples).
    async fn probe(&mut self, load: Load) -> Result<(Phase, Option<f64>)> {
        let stream = self.stream;
        let per_entry = self.workload.events_per_request as f64;
        let sampling = async move {
            let start = Instant::now();
            tokio::time::sleep(load.warmup).await;
            let (from, to) = (start + load.warmup, start + load.warmup + load.duration);
            let mut samples = Vec::new();
            while Instant::now() < to {
                let backlog = stream.backlog().await?;
                samples.push((from.elapsed().as_secs_f64(), backlog as f64 * per_entry));
                tokio::time::sleep(BACKLOG_SAMPLE).await;
            }
            anyhow::Ok(samples)
        };
        let (phase, samples) = tokio::join!(self.phase(load), sampling);
        Ok((phase?, slope(&samples?)))
    }

    /// The highest open-loop rate, at most `ceiling`, that the node sustains: every request
    /// accepted at the rate offered (within 5 %), the backlog growing by no more than
    /// [`SUSTAINED_GROWTH`] of the rate over the window, and no more than [`SUSTAINED_BACKLOG`]
    /// of it in the stream when the load stops. Tries the ceiling, then bisects; each probe is printed.
    /// The answer is the highest rate a probe showed sustained (so it errs low, by at most the
    /// last step); when none was, half the lowest rate tried.
    async fn sustained_rate(&mut self, plan: &Plan, config: &IngestConfig, ceiling: f64) -> Result<f64> {
        println!(
            "      the highest sustained rate: {PROBES} open-loop probes of {} s below {ceiling:.0} events/s",
            PROBE_WINDOW.as_secs()
        );
        let (mut low, mut high) = (0.0_f64, ceiling);
        for probe in 0..PROBES {
            let rate = if probe == 0 { high } else { (low + high) / 2.0 };
            let load = Load { duration: PROBE_WINDOW, ..plan.open(config, rate) };
            let (phase, growth) = self.probe(load).await?;
            let accepted = phase.outcome.events_per_second();
            let sustained = phase.outcome.failures.is_empty()
                && accepted >= 0.95 * rate
                && growth.is_some_and(|g| g <= SUSTAINED_GROWTH * rate)
                && phase.backlog_at_end as f64 <= rate * SUSTAINED_BACKLOG.as_secs_f64();
            println!(
                "        {rate:.0} events/s offered: {accepted:.0} accepted, {} failed, the backlog growing {} over \
                 the window, {} events in the stream when it stopped: {}",
                phase.outcome.failures.values().sum::<u64>(),
                growth.map_or_else(|| "— (too few samples)".to_owned(), |g| format!("{g:+.0} events/s")),
                phase.backlog_at_end,
                if sustained { "sustained" } else { "not sustained" }
            );
            if sustained {
                low = rate;
                if probe == 0 {
                    break;
                }
            } else {
                high = rate;
            }
        }
        let rate = if low > 0.0 { low } else { high / 2.0 };
        println!("        the highest sustained rate: {rate:.0} events/s");
        Ok(rate)
    }

    async fn wait_for_drain(&self) -> Result<()> {
        let (stream, pid) = (self.stream, self.node);
        poll_until("the ingest backlog to drain", self.drain_limit, Duration::from_millis(20), || async move {
            if !node::running(pid) {
                bail!("the node (pid {pid}) exited");
            }
            let backlog = stream.backlog().await?;
            Ok(if backlog == 0 { Polled::Ready(()) } else { Polled::Pending(format!("{backlog} entries left")) })
        })
        .await
    }
}

/// The least-squares slope of `points` (x, y); `None` with fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mean_x, mean_y) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let spread: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    (points.len() >= 2 && spread > 0.0)
        .then(|| points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum::<f64>() / spread)
}

fn throughput(outcome: &Outcome) -> String {
    format!(
        "{:.0} requests/s = {:.0} events/s accepted ({} requests in {:.0} s; failures: {}{})",
        outcome.requests_per_second(),
        outcome.events_per_second(),
        outcome.requests,
        outcome.window.as_secs_f64(),
        outcome.failures_text(),
        steal::text(outcome.steal)
    )
}

fn latency(outcome: &Outcome) -> String {
    match (outcome.latency, outcome.service) {
        (Some(l), Some(s)) => {
            let mut text =
                format!("p50 {} p99 {} max {} (mean {})", Nanos(l.median), Nanos(l.p99), Nanos(l.max), Nanos(l.mean));
            // Open loop: what part of that the load generator's own delays were.
            if (l.p99 - s.p99).abs() > 1e3 {
                text.push_str(&format!(
                    "; from each request's actual send: p50 {} p99 {}",
                    Nanos(s.median),
                    Nanos(s.p99)
                ));
            }
            text
        }
        _ => "— (no request answered 2xx)".to_owned(),
    }
}

/// An open-loop window's pauses of the machine and the requests in flight during them.
fn print_paused(outcome: &Outcome) {
    if let Some(p) = &outcome.paused {
        println!(
            "        the machine: {}; the slowest 1 % were in flight during one {:.0} % of the time ({} of {}), all \
             requests {:.1} % ({} of {})",
            pauses::text(&p.summary),
            p.tail_percent(),
            p.tail_in_pause,
            p.tail,
            p.all_percent(),
            p.all_in_pause,
            p.all
        );
    }
}

fn print_phase(label: &str, phase: &Phase) {
    println!("      {label}");
    println!("        {}", throughput(&phase.outcome));
    println!("        latency {}", latency(&phase.outcome));
    if let Some(tail) = &phase.outcome.tail {
        println!(
            "        the slowest 1 % ({} requests) were due in {} of the window's {} slots of {} ms (at most {} in \
             one, at {:.2} s: {} by the wall clock, as in the node's log)",
            tail.requests,
            tail.slots,
            load::Tail::slots_in(phase.outcome.window),
            load::Tail::SLOT.as_millis(),
            tail.busiest.1,
            tail.busiest.0.as_secs_f64(),
            (phase.outcome.window_start + tail.busiest.0).format("%H:%M:%S%.3fZ")
        );
    }
    if let Some(stages) = &phase.outcome.stages {
        println!(
            "        the slowest 1 % took on average {} from due to their release (the load generator's timer \
             and the wait for a free connection), {} from there to the send, {} from the send to the answer",
            Nanos(stages.to_released.as_secs_f64() * 1e9),
            Nanos(stages.to_sent.as_secs_f64() * 1e9),
            Nanos(stages.to_answered.as_secs_f64() * 1e9)
        );
    }
    print_paused(&phase.outcome);
    let drain =
        phase.drain_per_second().map(|r| format!("; the backlog alone drained at {r:.0} events/s")).unwrap_or_default();
    println!(
        "        persisted {:.0} events/s: {} events stored {:.2} s after the first request (load {:.2} s, backlog \
         of {} events when it stopped{drain}{})",
        phase.persisted_per_second(),
        phase.stored,
        phase.until_drained.as_secs_f64(),
        phase.load.as_secs_f64(),
        phase.backlog_at_end,
        steal::text(phase.steal)
    );
}

async fn create_tenants(database: &BenchDatabase, count: usize) -> Result<Vec<BenchTenant>> {
    let db = database.connect(4).await?;
    let mut tenants = Vec::with_capacity(count);
    for i in 0..count {
        let slug = Slug::parse(&format!("ingest-{i}"))?;
        let created = db
            .create_tenant(&format!("Ingest {i}"), &slug, "flywheel-bench")
            .await
            .with_context(|| format!("cannot create tenant {i}"))?;
        tenants.push(BenchTenant { id: created.tenant_id.as_uuid(), write_key: created.write_key });
    }
    db.close().await;
    Ok(tenants)
}

async fn app_connection(database: &BenchDatabase) -> Result<PgConnection> {
    PgConnectOptions::from_str(&database.app_url())?
        .application_name("flywheel-bench-count")
        .connect()
        .await
        .context("cannot connect as flywheel_app to count events")
}

/// Rows in `events` over all the run's tenants, each counted under its own tenant context (the
/// table's row-level security shows nothing otherwise).
async fn stored_events(conn: &mut PgConnection, tenants: &[Uuid]) -> Result<u64> {
    let mut total = 0u64;
    for tenant in tenants {
        let mut tx = conn.begin().await?;
        sqlx::query("select set_config('app.tenant_id', $1, true)").bind(tenant.to_string()).execute(&mut *tx).await?;
        let n: i64 = sqlx::query_scalar("select count(*) from events where tenant_id = $1")
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        total += u64::try_from(n).map_err(|_| anyhow!("a negative count"))?;
    }
    Ok(total)
}

/// A loopback port nobody listens on (for the node to bind right after).
fn free_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog sampled every 100 ms for 6 s: a sawtooth of 10,000 events over 0.4 s (a batch
    /// taken every 0.4 s) on top of `growth` events per second.
    fn sawtooth(growth: f64) -> Vec<(f64, f64)> {
        (0..60)
            .map(|i| {
                let t = f64::from(i) * 0.1;
                (t, 20_000.0 + growth * t + 2_500.0 * f64::from(i % 4))
            })
            .collect()
    }

    #[test]
    fn the_backlogs_growth_is_the_slope_under_the_batches_sawtooth() {
        let flat = slope(&sawtooth(0.0)).expect("a slope");
        assert!(flat.abs() < 300.0, "a steady backlog grew {flat} events/s");
        let growing = slope(&sawtooth(3_000.0)).expect("a slope");
        assert!((growing - 3_000.0).abs() < 300.0, "{growing} events/s, not 3,000");
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 7.0)]), None);
        assert_eq!(slope(&[(0.0, 0.0), (2.0, 10.0)]), Some(5.0));
    }
}
