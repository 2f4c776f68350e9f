//! Event ingestion: the full path — `POST /v1/collect` on a real node process, the Redis stream,
//! the `EventIngestor`s' COPY into `events` — against two baselines measured in the same run:
//!
//! - (a) raw binary COPY of the same synthetic events into a copy of `events` without row-level
//!   security ([`raw_copy`]): what PostgreSQL alone can take. Target (issue 4): the node persists
//!   at least half of that rate (`persisted/raw-copy` ≥ 0.5x).
//! - (b) the node ([`node`]), driven by the built-in load generator ([`load`]): closed loop for
//!   the maximum accepted rate (HTTP 202s) and the persisted rate (rows in `events`, counted once
//!   the stream's backlog has drained, over the time from the first request to the drain), then
//!   open loop at 70 % of that maximum for the latency. Target: p99 ≤ 5 ms at 70 %. The node's
//!   resident memory is sampled throughout (reported).
//! - (c) a no-op axum handler on the same machine ([`noop`]) under the same closed-loop load: the
//!   HTTP stack's own ceiling. Target: the node accepts at least a quarter of its rate
//!   (`accepted/noop` ≥ 0.25x).
//!
//! Events come from [`synthetic`]: a realistic mix over many tenants, `meta` of 300–600 bytes.
//! Everything runs in a database and a Redis namespace of the benchmark's own; the database is
//! dropped at the end. The node binary is built first (`cargo build --release --bin flywheel`).

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

use anyhow::{Context, Result, anyhow};
use flywheel_contracts::Slug;
use flywheel_storage::event_stream::{EventStream, StreamConfig};
use flywheel_storage::redis::RedisStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::limits::{Polled, bounded, poll_until};
use crate::sample::Nanos;
use crate::services::{BenchDatabase, Services};
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

#[derive(Debug, Clone, clap::Args)]
pub struct IngestConfig {
    /// Events the raw COPY baseline writes.
    #[arg(
        long = "ingest-raw-events",
        env = "FLYWHEEL_BENCH_INGEST_RAW_EVENTS",
        value_name = "N",
        default_value_t = 200_000
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
    /// Measured seconds of each load phase (closed loop, open loop, no-op).
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
    /// The open-loop rate as a fraction of the closed loop's accepted rate.
    #[arg(
        long = "ingest-load-fraction",
        env = "FLYWHEEL_BENCH_INGEST_LOAD_FRACTION",
        value_name = "F",
        default_value_t = 0.7
    )]
    pub load_fraction: f64,
    /// A fixed open-loop rate in events per second instead of the fraction of the maximum.
    #[arg(long = "ingest-rate", env = "FLYWHEEL_BENCH_INGEST_RATE", value_name = "EVENTS_PER_SEC")]
    pub rate: Option<f64>,
    /// The node's event ingestors (FLYWHEEL_INGESTORS); the raw baseline uses as many connections.
    #[arg(long = "ingestors", env = "FLYWHEEL_BENCH_INGESTORS", value_name = "N", default_value_t = 2)]
    pub ingestors: u16,
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
    /// A release `flywheel` binary to run instead of building this workspace's.
    #[arg(long = "node-binary", env = "FLYWHEEL_BENCH_NODE_BINARY", value_name = "PATH")]
    pub node_binary: Option<PathBuf>,
}

/// A tenant of the run: its id and the URL its events go to.
struct BenchTenant {
    id: Uuid,
    write_key: String,
}

pub async fn run(services: &Services, config: IngestConfig) -> Result<Vec<Target>> {
    let events_per_request = config.events_per_request.clamp(1, flywheel_contracts::events::MAX_BATCH_EVENTS);
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
    redis.quit().await;
    outcome
}

async fn measure(
    services: &Services,
    database: &BenchDatabase,
    redis: &RedisStore,
    config: &IngestConfig,
    binary: PathBuf,
) -> Result<Vec<Target>> {
    let events_per_request = config.events_per_request.clamp(1, flywheel_contracts::events::MAX_BATCH_EVENTS);
    let tenants = create_tenants(database, config.tenants.max(1)).await?;
    let mut rng = synthetic::Rng::new(0x00f1_7ee1);
    let (bodies, events) = synthetic::bodies(&mut rng, BODIES, events_per_request);
    let rows: Vec<synthetic::Row> = events.iter().map(synthetic::Row::from_event).collect();
    let meta_mean = rows.iter().map(|r| r.meta.len()).sum::<usize>() / rows.len().max(1);
    let body_mean = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len().max(1);
    println!("  events: meta averages {meta_mean} bytes; a request body averages {body_mean} bytes");

    // (a) The raw baseline.
    let tenant_ids: Vec<Uuid> = tenants.iter().map(|t| t.id).collect();
    let spec = raw_copy::RawSpec {
        events: config.raw_events.max(1),
        batch: config.batch,
        writers: usize::from(config.ingestors),
    };
    let raw = raw_copy::run(database, &tenant_ids, &rows, spec).await?;
    println!(
        "  (a) raw binary COPY into a copy of events without RLS ({} indexes, {} partitions), batches of {}, \
         {} connection(s)",
        raw.indexes, raw.partitions, config.batch, spec.writers
    );
    println!(
        "      {} events in {:.2} s = {:.0} events/s ({} batches)",
        raw.events,
        raw.elapsed.as_secs_f64(),
        raw.events_per_second(),
        raw.batches
    );

    // (b) The node.
    let http = free_port()?;
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
        http,
        ingestors: config.ingestors.max(1),
        shards: SHARDS,
        batch: config.batch,
        linger_ms: config.linger_ms,
        max_backlog: config.max_backlog,
    };
    let client = load::client(config.concurrency)?;
    let mut node = Node::start(&settings)?;
    let ready = node.ready(&client, READY_LIMIT).await?;
    let rss_rest = node::rss_kb(node.pid())?;
    println!(
        "  (b) the node: pid {}, ready in {:.1} s, {} MB resident at rest; {} ingestor(s), batch {}, linger {} ms",
        node.pid(),
        ready.as_secs_f64(),
        rss_rest / 1024,
        settings.ingestors,
        config.batch,
        config.linger_ms
    );
    let workload = Workload {
        urls: Arc::new(tenants.iter().map(|t| format!("{}/v1/collect?key={}", node.base(), t.write_key)).collect()),
        bodies: Arc::new(bodies.clone()),
        events_per_request: events_per_request as u64,
    };
    let stream =
        EventStream::new(redis.clone(), StreamConfig { shards: SHARDS, max_backlog_per_shard: config.max_backlog });
    let mut counter = app_connection(database).await?;
    let warmup = Duration::from_secs(config.warmup_secs);
    let duration = Duration::from_secs(config.secs.max(1));
    let drain_limit = Duration::from_secs(config.drain_secs.max(1));
    let sampler = RssSampler::start(node.pid(), Duration::from_millis(100));
    let phases = async {
        let closed_load = Load { concurrency: config.concurrency, warmup, duration, pace: Pace::Closed };
        let closed = phase(&client, &workload, closed_load, &stream, &mut counter, &tenant_ids, drain_limit).await?;
        node.check_alive()?;
        print_phase(&format!("closed loop, {} connections", config.concurrency), &closed);

        let open_rps = match config.rate {
            Some(events) => events / events_per_request as f64,
            None => closed.outcome.requests_per_second() * config.load_fraction,
        };
        let open_load = Load {
            concurrency: config.concurrency,
            warmup,
            duration,
            pace: Pace::Open { requests_per_second: open_rps },
        };
        let open = phase(&client, &workload, open_load, &stream, &mut counter, &tenant_ids, drain_limit).await?;
        node.check_alive()?;
        let label = match config.rate {
            Some(events) => format!("open loop at {events:.0} events/s"),
            None => format!("open loop at {:.0} % of the closed loop's rate", config.load_fraction * 100.0),
        };
        print_phase(&format!("{label} ({open_rps:.0} requests/s)"), &open);
        anyhow::Ok((closed, open))
    }
    .await;
    let rss_max = sampler.finish().await;
    let log_lines = node.log_lines();
    let dead_letters = stream.dead_letters().await.unwrap_or(0);
    let log_tail = node.log_tail();
    node.stop();
    counter.close().await?;
    let (closed, open) = phases?;
    println!("      node resident memory: {} MB at rest, {} MB at most under load", rss_rest / 1024, rss_max / 1024);
    let accepted = closed.outcome.total_events + open.outcome.total_events;
    let stored = closed.stored + open.stored;
    println!(
        "      {accepted} events accepted, {stored} stored, {dead_letters} dead-lettered; the node logged {log_lines} \
         warning/error line(s)"
    );
    if stored != accepted || dead_letters > 0 {
        println!("      WARNING: accepted and stored differ; the node's last log lines:\n{log_tail}");
    }

    // (c) The no-op handler, same load.
    let noop_server = noop::NoopServer::start(std::thread::available_parallelism().map_or(2, usize::from))?;
    let noop_workload = Workload {
        urls: Arc::new(vec![format!("{}/v1/collect", noop_server.base())]),
        bodies: Arc::new(bodies),
        events_per_request: events_per_request as u64,
    };
    let noop_client = load::client(config.concurrency)?;
    let noop_load = Load { concurrency: config.concurrency, warmup, duration, pace: Pace::Closed };
    let noop = load::run(&noop_client, &noop_workload, noop_load).await;
    drop(noop_client);
    noop_server.stop().await?;
    let noop = noop?;
    println!("  (c) no-op axum handler, closed loop, {} connections", config.concurrency);
    println!("      {}", throughput(&noop));
    println!("      latency {}", latency(&noop));

    let persisted_ratio = closed.persisted_per_second() / raw.events_per_second();
    let accepted_ratio = closed.outcome.events_per_second() / noop.events_per_second().max(1e-9);
    let p99_ms = open.outcome.latency.map_or(f64::INFINITY, |l| l.p99 / 1e6);
    println!(
        "  persisted/raw-copy {persisted_ratio:.2}x ({:.0} / {:.0} events/s); accepted/noop {accepted_ratio:.2}x \
         ({:.0} / {:.0} events/s)",
        closed.persisted_per_second(),
        raw.events_per_second(),
        closed.outcome.events_per_second(),
        noop.events_per_second()
    );
    Ok(vec![
        Target::at_least("persisted/raw-copy", persisted_ratio, "x", 0.5),
        Target::at_least("accepted/noop", accepted_ratio, "x", 0.25),
        Target::at_most("p99@70%", p99_ms, " ms", 5.0),
        Target::info("node-rss-max", rss_max as f64 / 1024.0, " MB"),
    ])
}

/// One load phase on the node and what it left in `events`.
struct Phase {
    outcome: Outcome,
    /// Rows the phase added to `events`.
    stored: u64,
    /// From the first request to the last answer, and to the backlog's drain.
    load: Duration,
    until_drained: Duration,
    /// Entries not yet stored when the load stopped.
    backlog_at_end: u64,
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

async fn phase(
    client: &reqwest::Client,
    workload: &Workload,
    load: Load,
    stream: &EventStream,
    counter: &mut PgConnection,
    tenants: &[Uuid],
    drain_limit: Duration,
) -> Result<Phase> {
    let before = stored_events(counter, tenants).await?;
    let start = Instant::now();
    let outcome = load::run(client, workload, load).await?;
    let load_time = start.elapsed();
    let backlog_at_end = stream.backlog().await?;
    poll_until("the ingest backlog to drain", drain_limit, Duration::from_millis(20), || async {
        let backlog = stream.backlog().await?;
        Ok(if backlog == 0 { Polled::Ready(()) } else { Polled::Pending(format!("{backlog} entries left")) })
    })
    .await?;
    let until_drained = start.elapsed();
    let after = stored_events(counter, tenants).await?;
    Ok(Phase { outcome, stored: after.saturating_sub(before), load: load_time, until_drained, backlog_at_end })
}

fn throughput(outcome: &Outcome) -> String {
    format!(
        "{:.0} requests/s = {:.0} events/s accepted ({} requests in {:.0} s; failures: {})",
        outcome.requests_per_second(),
        outcome.events_per_second(),
        outcome.requests,
        outcome.window.as_secs_f64(),
        outcome.failures_text()
    )
}

fn latency(outcome: &Outcome) -> String {
    match outcome.latency {
        Some(l) => {
            format!("p50 {} p99 {} max {} (mean {})", Nanos(l.median), Nanos(l.p99), Nanos(l.max), Nanos(l.mean))
        }
        None => "— (no request answered 2xx)".to_owned(),
    }
}

fn print_phase(label: &str, phase: &Phase) {
    println!("      {label}");
    println!("        {}", throughput(&phase.outcome));
    println!("        latency {}", latency(&phase.outcome));
    let drain =
        phase.drain_per_second().map(|r| format!("; the backlog alone drained at {r:.0} events/s")).unwrap_or_default();
    println!(
        "        persisted {:.0} events/s: {} events stored {:.2} s after the first request (load {:.2} s, backlog \
         {} when it stopped{drain})",
        phase.persisted_per_second(),
        phase.stored,
        phase.until_drained.as_secs_f64(),
        phase.load.as_secs_f64(),
        phase.backlog_at_end
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
