//! Idle tenants: resident memory per tenant supervisor with 10,000 tenants activated on one node
//! (`Runtime::activate`, no work), read from the process's VmRSS before and after, then again
//! once every supervisor has passivated after `idle_timeout`, and once more after reactivating
//! them all (which shows whether the memory passivation gave back to the allocator is reused).
//!
//! Target (issue 3): ≤ 50 KB per tenant supervisor while active. The tenants need not exist in
//! PostgreSQL to be activated; the runtime still needs a migrated database and Redis to start,
//! so the benchmark creates a database of its own and drops it at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use flywheel_actors::agent::Registry;
use flywheel_contracts::TenantId;
use flywheel_storage::redis::RedisStore;
use flywheel_supervisor::{Runtime, RuntimeConfig};

use crate::limits::{Polled, bounded, poll_until};
use crate::services::{BenchDatabase, Services, remove_redis};
use crate::target::Target;

/// Pause before each memory reading, so that tasks finishing (a stopped actor's last timer tick)
/// are done.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, clap::Args)]
pub struct TenantsConfig {
    /// Tenant supervisors to activate.
    #[arg(long = "tenants", value_name = "N", default_value_t = 10_000)]
    pub count: usize,
    /// Idle time after which a tenant supervisor passivates. It must exceed the time activating
    /// all of them takes, or the first passivate before the last are active.
    #[arg(long = "idle-timeout-secs", value_name = "SECONDS", default_value_t = 10)]
    pub idle_timeout_secs: u64,
}

pub async fn run(services: &Services, config: TenantsConfig) -> Result<Vec<Target>> {
    let idle = Duration::from_secs(config.idle_timeout_secs.max(1));
    println!("tenants: {} tenant supervisors activated on one node, idle_timeout {idle:?}", config.count);
    // Redis first: if it is missing, say so before creating a database.
    let redis = services.redis().await?;
    let database = BenchDatabase::create(services).await?;
    // Activation, passivation (idle + its check period) and reactivation, with room to spare.
    let limit = idle * 3 + Duration::from_secs(180);
    let outcome = bounded("the tenants benchmark", limit, measure(&database, &redis, &config, idle)).await;
    database.remove().await;
    remove_redis(redis).await;
    outcome
}

async fn measure(
    database: &BenchDatabase,
    redis: &RedisStore,
    config: &TenantsConfig,
    idle: Duration,
) -> Result<Vec<Target>> {
    let count = config.count.max(1);
    let db = database.connect(4).await?;
    let runtime_config =
        RuntimeConfig { idle_timeout: idle, sweep_interval: Duration::from_secs(3600), ..RuntimeConfig::default() };
    let runtime = Runtime::start(
        db.clone(),
        redis.clone(),
        Registry::default(),
        runtime_config,
        Arc::new(flywheel_supervisor::Solo),
    )
    .await
    .context("cannot start the actor runtime")?;
    let outcome = cycle(&runtime, count, idle).await;
    runtime.stop();
    db.close().await;
    outcome
}

async fn cycle(runtime: &Runtime, count: usize, idle: Duration) -> Result<Vec<Target>> {
    let tenants: Vec<TenantId> = (0..count).map(|_| TenantId::new()).collect();
    wait_for_active(runtime, "the runtime to answer", Duration::from_secs(10), |n| n == 0).await?;
    tokio::time::sleep(SETTLE).await;
    let before = rss_kb()?;

    let start = Instant::now();
    for tenant in &tenants {
        runtime.activate(*tenant)?;
    }
    // Past `idle`, the first supervisors start passivating and the count cannot be reached.
    wait_for_active(runtime, "all tenants to activate (raise --idle-timeout-secs?)", idle, |n| n >= count).await?;
    let activation = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    let active = rss_kb()?;
    let per_active = per_tenant_kb(before, active, count);

    // Passivation: each supervisor stops on the first idle check after `idle`.
    let passivation_limit = idle * 2 + Duration::from_secs(60);
    wait_for_active(runtime, "every tenant to passivate", passivation_limit, |n| n == 0).await?;
    let passivated_after = start.elapsed();
    // A stopped supervisor's idle-check timer lives until its next tick (`idle / 4`).
    tokio::time::sleep(idle / 4 + SETTLE).await;
    let passivated = rss_kb()?;
    let per_passivated = per_tenant_kb(before, passivated, count);

    // Reactivation: the same tenants again.
    for tenant in &tenants {
        runtime.activate(*tenant)?;
    }
    wait_for_active(runtime, "all tenants to reactivate", idle, |n| n >= count).await?;
    tokio::time::sleep(SETTLE).await;
    let reactivated = rss_kb()?;
    let per_reactivated = per_tenant_kb(before, reactivated, count);

    println!("  resident memory (VmRSS)");
    println!("    before activation           {before} KB");
    println!(
        "    {count} active                {active} KB  = {per_active:.2} KB per tenant (activated in {:.0} ms, {:.1} µs each)",
        activation.as_secs_f64() * 1e3,
        activation.as_secs_f64() * 1e6 / count as f64
    );
    println!(
        "    all passivated              {passivated} KB  = {per_passivated:.2} KB per tenant still resident \
         (count 0 after {:.1} s; freed memory the allocator keeps for reuse counts here)",
        passivated_after.as_secs_f64()
    );
    println!(
        "    {count} reactivated           {reactivated} KB  = {per_reactivated:.2} KB per tenant \
         ({:+} KB against the first activation: passivated memory is reused, not leaked, when this is small)",
        i128::from(reactivated) - i128::from(active)
    );

    Ok(vec![
        Target::at_most("active-tenant", per_active, " KB", 50.0),
        Target::info("passivated-tenant", per_passivated, " KB"),
        Target::info("reactivated-tenant", per_reactivated, " KB"),
    ])
}

/// Polls `Runtime::active_tenants` until `done` holds. A call that times out (the node is busy
/// spawning supervisors) counts as "not yet".
async fn wait_for_active(
    runtime: &Runtime,
    what: &str,
    limit: Duration,
    done: impl Fn(usize) -> bool,
) -> Result<usize> {
    let done = &done;
    poll_until(what, limit, Duration::from_millis(50), || async move {
        match runtime.active_tenants().await {
            Ok(n) if done(n) => Ok(Polled::Ready(n)),
            Ok(n) => Ok(Polled::Pending(format!("{n} active"))),
            Err(e) => Ok(Polled::Pending(format!("the node did not answer: {e}"))),
        }
    })
    .await
}

fn per_tenant_kb(before_kb: u64, after_kb: u64, count: usize) -> f64 {
    (after_kb as f64 - before_kb as f64) / count as f64
}

/// The process's resident set size in KB, from /proc/self/status.
fn rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status; the tenants benchmark measures memory on Linux only")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS line in /proc/self/status"))
}
