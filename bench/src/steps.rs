//! Durable step cost: one checkpointed no-op step against a bare single-row INSERT + COMMIT, on
//! the same database in the same run, then both again with `synchronous_commit = off` (for
//! context: the round trips and CPU without the wait for the disk).
//!
//! The checkpoint is what the runtime's step worker commits per step: a tenant transaction that
//! locks the run, records the step with `runs::commit_step` (moving the cursor) and commits. The
//! baseline is a transaction inserting one row into a plain table (no row-level security, no
//! trigger) created for the benchmark, as the same application role, through a pool of the same
//! driver. Both alternate operation by operation, so drift and fsync stalls hit them alike; the
//! target (issue 3: ≤ 2×) is on the medians.
//!
//! A second figure drives a real `Runtime` with a no-op agent: the per-step cycle time of a run,
//! from one step's start to the next (the checkpoint, the orchestrator's message, a new worker,
//! the run's reload and its Redis mirror included). It is reported for context.
//!
//! Everything runs in a database of its own (`flywheel_bench_<uuid>`), dropped at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use flywheel_actors::agent::{AgentDef, Registry, Step, StepContext, StepFuture};
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::run::{AgentName, RunStatus};
use flywheel_contracts::ids::RunId;
use flywheel_contracts::{Slug, TenantId};
use flywheel_storage::Database;
use flywheel_storage::redis::RedisStore;
use flywheel_storage::runs::{self, CommitOutcome, StepCommit};
use flywheel_supervisor::{Runtime, RuntimeConfig};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::limits::{Polled, bounded, poll_until};
use crate::sample::Summary;
use crate::services::{BenchDatabase, Services, remove_redis};
use crate::target::Target;

/// Checkpoints measured against one run before the next run starts: runs stay of a realistic
/// length instead of growing one run to thousands of steps.
const STEPS_PER_RUN: u32 = 50;
/// Upper bound on the whole benchmark, cleanup excluded.
const LIMIT: Duration = Duration::from_secs(900);
/// How long one run of the no-op agent may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The name the no-op agent is registered under in the Runtime (the bench database holds nothing
/// else).
const RUNTIME_AGENT: AgentName = AgentName::Branding;
/// The agent of the runs the bare checkpoints advance: one the Runtime does not know, so that its
/// sweep leaves those (forever queued) runs alone.
const CHECKPOINT_AGENT: AgentName = AgentName::Content;
/// Time for the last run's final Redis mirror (written just after its status commits) to land
/// before the cleanup deletes it.
const MIRROR_SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, clap::Args)]
pub struct StepsConfig {
    /// Checkpoints measured, and as many baseline INSERT + COMMITs.
    #[arg(id = "step_iterations", long = "step-iterations", value_name = "N", default_value_t = 2000)]
    pub iterations: u32,
    /// Runs of the no-op agent driven through a real Runtime (the end-to-end figure; 0 skips it).
    #[arg(long = "runtime-runs", value_name = "N", default_value_t = 10)]
    pub runtime_runs: u32,
    /// No-op steps in each of those runs.
    #[arg(long = "runtime-steps", value_name = "N", default_value_t = 20)]
    pub runtime_steps: u32,
}

pub async fn run(services: &Services, config: StepsConfig) -> Result<Vec<Target>> {
    println!(
        "steps: {} checkpoints vs {} bare INSERT + COMMITs, then {} runs of a {}-step no-op agent",
        config.iterations, config.iterations, config.runtime_runs, config.runtime_steps
    );
    // Redis first: if it is missing, say so before spending a minute on PostgreSQL.
    let redis = if config.runtime_runs > 0 && config.runtime_steps > 1 { Some(services.redis().await?) } else { None };
    let database = BenchDatabase::create(services).await?;
    let outcome = bounded("the steps benchmark", LIMIT, measure(&database, redis.as_ref(), &config)).await;
    database.remove().await;
    if let Some(redis) = redis {
        remove_redis(redis).await;
    }
    outcome
}

async fn measure(database: &BenchDatabase, redis: Option<&RedisStore>, config: &StepsConfig) -> Result<Vec<Target>> {
    create_baseline_table(database).await?;
    let db = database.connect(8).await?;
    let baseline = baseline_pool(database).await?;
    let tenant = db
        .create_tenant("Bench", &Slug::parse("bench")?, "flywheel-bench")
        .await
        .context("cannot create the bench tenant")?
        .tenant_id;

    println!("  per operation, as flywheel_app (ratios: medians)");
    let (insert, step) = compare(&db, &baseline, tenant, config.iterations).await?;
    println!("    bare INSERT + COMMIT           {insert}");
    println!("    checkpointed no-op step        {step}");
    println!(
        "      = {:.2}x the bare INSERT + COMMIT (means: {:.2}x)",
        step.median / insert.median,
        step.mean / insert.mean
    );
    let mut targets = vec![Target::at_most("checkpoint/insert", step.median / insert.median, "x", 2.0)];

    if let Some(redis) = redis {
        let cycle = runtime_cycle(&db, redis, tenant, config).await?;
        println!("    runtime step cycle             {cycle}");
        println!(
            "      = {:.2}x the bare INSERT + COMMIT (a no-op agent through Runtime, {} runs x {} steps)",
            cycle.median / insert.median,
            config.runtime_runs,
            config.runtime_steps
        );
        targets.push(Target::info("runtime-step/insert", cycle.median / insert.median, "x"));
    }
    baseline.close().await;
    db.close().await;

    // Without waiting for the WAL flush what remains is round trips and CPU: the ratio a fast
    // disk (or a battery-backed cache) would show.
    let mut owner = database.owner().await?;
    let quoted = format!("\"{}\"", database.name().replace('"', "\"\""));
    sqlx::query(sqlx::AssertSqlSafe(format!("alter database {quoted} set synchronous_commit = off")))
        .execute(&mut owner)
        .await
        .context("cannot turn synchronous_commit off for the bench database")?;
    sqlx::Connection::close(owner).await?;
    let db = database.connect(8).await?;
    let baseline = baseline_pool(database).await?;
    let (insert, step) = compare(&db, &baseline, tenant, config.iterations).await?;
    println!("  the same with synchronous_commit = off (no wait for the WAL flush)");
    println!("    bare INSERT + COMMIT           {insert}");
    println!("    checkpointed no-op step        {step}");
    println!(
        "      = {:.2}x the bare INSERT + COMMIT (means: {:.2}x)",
        step.median / insert.median,
        step.mean / insert.mean
    );
    targets.push(Target::info("checkpoint/insert-async-commit", step.median / insert.median, "x"));
    baseline.close().await;
    db.close().await;
    Ok(targets)
}

/// `iterations` bare INSERT + COMMITs and as many checkpoints, alternating one by one, after a
/// warm-up (connections, prepared statements, the first pages of each table and index).
async fn compare(db: &Database, baseline: &PgPool, tenant: TenantId, iterations: u32) -> Result<(Summary, Summary)> {
    let output = serde_json::Value::Object(JsonObject::new());
    let warm_run = new_run(db, tenant).await?;
    for _ in 0..STEPS_PER_RUN {
        bare_insert(baseline, &output).await?;
        checkpoint(db, tenant, warm_run, &output).await?;
    }
    let mut inserts = Vec::new();
    let mut checkpoints = Vec::new();
    let mut done = 0;
    while done < iterations {
        let run = new_run(db, tenant).await?;
        for _ in 0..STEPS_PER_RUN.min(iterations - done) {
            let start = Instant::now();
            bare_insert(baseline, &output).await?;
            inserts.push(start.elapsed().as_secs_f64() * 1e9);
            let start = Instant::now();
            checkpoint(db, tenant, run, &output).await?;
            checkpoints.push(start.elapsed().as_secs_f64() * 1e9);
            done += 1;
        }
    }
    let insert = Summary::of(&inserts).ok_or_else(|| anyhow!("no baseline samples"))?;
    let step = Summary::of(&checkpoints).ok_or_else(|| anyhow!("no checkpoint samples"))?;
    Ok((insert, step))
}

/// The baseline's table, created by the owner: a primary key, a jsonb payload and a default
/// timestamp; no row-level security, no trigger.
async fn create_baseline_table(database: &BenchDatabase) -> Result<()> {
    let mut owner = database.owner().await?;
    sqlx::query(
        "create table bench_baseline (id uuid primary key, payload jsonb not null, \
         created_at timestamptz not null default now())",
    )
    .execute(&mut owner)
    .await
    .context("cannot create the baseline table")?;
    sqlx::query("grant select, insert on bench_baseline to flywheel_app")
        .execute(&mut owner)
        .await
        .context("cannot grant the baseline table to flywheel_app")?;
    sqlx::Connection::close(owner).await?;
    Ok(())
}

/// A pool of the application role over the same database (the same driver and pool machinery as
/// `Database`), for the baseline.
async fn baseline_pool(database: &BenchDatabase) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&database.app_url())
        .await
        .context("cannot connect the baseline pool as flywheel_app")
}

async fn bare_insert(pool: &PgPool, payload: &serde_json::Value) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("insert into bench_baseline (id, payload) values ($1, $2)")
        .bind(uuid::Uuid::now_v7())
        .bind(payload)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn new_run(db: &Database, tenant: TenantId) -> Result<RunId> {
    let mut tx = db.begin(tenant).await?;
    let run = runs::create(&mut tx, CHECKPOINT_AGENT, &JsonObject::new(), "flywheel-bench").await?;
    tx.commit().await?;
    Ok(run.id)
}

/// One checkpoint of a no-op step, as the step worker commits it.
async fn checkpoint(db: &Database, tenant: TenantId, run: RunId, output: &serde_json::Value) -> Result<()> {
    let mut tx = db.begin(tenant).await?;
    let state = runs::lock(&mut tx, run).await?;
    let cursor = state.run.cursor;
    let key = format!("{cursor}:noop@{}", state.version);
    let commit =
        StepCommit { name: "noop", attempt: 1, idempotency_key: &key, output, started_at: Utc::now(), fence: None };
    if runs::commit_step(&mut tx, run, cursor, cursor + 1, &commit).await? != CommitOutcome::Committed {
        bail!("checkpoint {key} of run {run} was already committed");
    }
    tx.commit().await?;
    Ok(())
}

/// When each step of each run started.
type Stamps = Arc<Mutex<Vec<(RunId, Instant)>>>;

/// A step that does nothing but note when it ran.
struct NoopStep {
    stamps: Stamps,
}

impl Step for NoopStep {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, serde_json::Value> {
        let now = Instant::now();
        // A poisoned lock means another step panicked; its run fails and the benchmark reports it.
        if let Ok(mut stamps) = self.stamps.lock() {
            stamps.push((ctx.run, now));
        }
        Box::pin(async { Ok(serde_json::Value::Object(JsonObject::new())) })
    }
}

/// Runs `runtime_runs` runs of a no-op agent one after the other through a real Runtime and
/// returns the per-step cycle time of each (ns from its first step's start to its last's,
/// divided by the steps in between).
async fn runtime_cycle(db: &Database, redis: &RedisStore, tenant: TenantId, config: &StepsConfig) -> Result<Summary> {
    let stamps = Stamps::default();
    let steps =
        (0..config.runtime_steps).map(|_| Arc::new(NoopStep { stamps: stamps.clone() }) as Arc<dyn Step>).collect();
    let registry = Registry::default().with(AgentDef { name: RUNTIME_AGENT, input_check: None, steps });
    // No sweep during the measurement: every run is dispatched by `submit`.
    let runtime_config = RuntimeConfig { sweep_interval: Duration::from_secs(3600), ..RuntimeConfig::default() };
    let runtime =
        Runtime::start(db.clone(), redis.clone(), registry, runtime_config, Arc::new(flywheel_supervisor::Solo))
            .await
            .context("cannot start the actor runtime")?;
    let mut runs = Vec::new();
    let outcome = async {
        // The first run warms the tree up (tenant supervisor, orchestrator) and is not counted.
        for _ in 0..=config.runtime_runs {
            let run = runtime.submit(tenant, RUNTIME_AGENT, &JsonObject::new(), "flywheel-bench").await?.id;
            runs.push(run);
            poll_until("a no-op run to finish", RUN_LIMIT, Duration::from_millis(5), || finished(db, tenant, run))
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    runtime.stop();
    tokio::time::sleep(MIRROR_SETTLE).await;
    for run in &runs {
        let _ = redis.tenant(tenant).delete(&["run", &run.to_string()]).await;
    }
    outcome?;

    let stamps = stamps.lock().map_err(|_| anyhow!("a no-op step panicked"))?.clone();
    let mut cycles = Vec::new();
    for run in runs.iter().skip(1) {
        let mut times: Vec<Instant> = stamps.iter().filter(|(r, _)| r == run).map(|(_, t)| *t).collect();
        times.sort();
        if let (Some(first), Some(last)) = (times.first(), times.last())
            && times.len() > 1
        {
            cycles.push(last.duration_since(*first).as_secs_f64() * 1e9 / (times.len() - 1) as f64);
        }
    }
    Summary::of(&cycles).ok_or_else(|| anyhow!("the no-op runs recorded no steps"))
}

async fn finished(db: &Database, tenant: TenantId, run: RunId) -> Result<Polled<()>> {
    let mut tx = db.begin(tenant).await?;
    let state = runs::get(&mut tx, run).await?;
    tx.commit().await?;
    match state.run.status {
        RunStatus::Succeeded => Ok(Polled::Ready(())),
        status if status.is_finished() => {
            bail!("run {run} ended {}: {}", status.as_str(), state.run.error.unwrap_or_default())
        }
        status => Ok(Polled::Pending(format!("run {run} is {} at step {}", status.as_str(), state.run.cursor))),
    }
}
