//! Failover time: real `flywheel node` processes (the release binary) on one fresh, migrated
//! database and Redis namespace, with a short lease TTL. The run waits until the leases converge
//! — each of the 256 shards held, unexpired, by its rendezvous owner among the running nodes —
//! then, trial after trial, SIGKILLs one node (in rotation) and times how long it takes until
//! every tenant is active again: its shard held, unexpired, by a surviving node (read from
//! `shard_leases`, judged by PostgreSQL's clock). A replacement node with a new id then joins
//! and the leases converge again before the next trial. Each kill waits a different fraction of
//! the renewal cycle after convergence, so the trials cover every point of it.
//!
//! The baseline is the lease TTL itself: a dead node's leases are only taken once they expire,
//! so failover is about one TTL plus the survivors' tick (a third of the TTL); the ratio
//! median/TTL says how close to that the cluster gets. One graceful handover (SIGTERM: the node
//! releases its shards at once) is measured after the trials, for contrast.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use flywheel_cluster::placement::{self, SHARDS, Shard};
use flywheel_contracts::Slug;
use flywheel_storage::Database;
use flywheel_storage::cluster::LeaseRecord;

use super::node::{ClusterNode, Fleet};
use crate::ingest::node;
use crate::limits::bounded;
use crate::sample::Summary;
use crate::services::{BenchDatabase, Services};
use crate::target::Target;

/// How often the leases are read while a failover is timed.
const POLL: Duration = Duration::from_millis(10);
/// How often they are read while waiting for convergence.
const CONVERGE_POLL: Duration = Duration::from_millis(100);
/// How long a SIGTERMed node may take to exit.
const EXIT_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, clap::Args)]
pub struct FailoverConfig {
    /// SIGKILL trials (0 skips the failover benchmark and its graceful handover).
    #[arg(
        id = "failover_trials",
        long = "failover-trials",
        env = "FLYWHEEL_BENCH_FAILOVER_TRIALS",
        value_name = "N",
        default_value_t = 10
    )]
    pub trials: usize,
    /// Node processes in the cluster.
    #[arg(
        id = "failover_nodes",
        long = "failover-nodes",
        env = "FLYWHEEL_BENCH_FAILOVER_NODES",
        value_name = "N",
        default_value_t = 3
    )]
    pub nodes: usize,
    /// Tenants created, whose shards must be held again.
    #[arg(
        id = "failover_tenants",
        long = "failover-tenants",
        env = "FLYWHEEL_BENCH_FAILOVER_TENANTS",
        value_name = "N",
        default_value_t = 100
    )]
    pub tenants: usize,
    /// The nodes' lease time-to-live (FLYWHEEL_LEASE_TTL), in milliseconds.
    #[arg(
        id = "failover_lease_ttl_ms",
        long = "failover-lease-ttl-ms",
        env = "FLYWHEEL_BENCH_FAILOVER_LEASE_TTL_MS",
        value_name = "MS",
        default_value_t = 3_000
    )]
    pub lease_ttl_ms: u64,
    /// A release `flywheel` binary to run instead of building this workspace's.
    #[arg(
        id = "cluster_node_binary",
        long = "cluster-node-binary",
        env = "FLYWHEEL_BENCH_NODE_BINARY",
        value_name = "PATH"
    )]
    pub node_binary: Option<PathBuf>,
}

pub async fn run(services: &Services, config: FailoverConfig) -> Result<Vec<Target>> {
    let ttl = Duration::from_millis(config.lease_ttl_ms.max(300));
    let nodes = config.nodes.max(2);
    println!(
        "cluster failover: {nodes} node processes, lease TTL {ttl:?}, {} tenants; {} trials of SIGKILL → every \
         tenant's shard held by a survivor, then one SIGTERM handover",
        config.tenants.max(1),
        config.trials
    );
    // The build may take minutes the first time: before anything the limit covers.
    let explicit = config.node_binary.clone();
    let binary = tokio::task::spawn_blocking(move || node::binary(explicit.as_deref()))
        .await
        .context("the node build panicked")??;
    let redis = services.redis().await?;
    let database = BenchDatabase::create(services).await?;
    let fleet = Fleet {
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
        cookie: uuid::Uuid::new_v4().simple().to_string(),
        lease_ttl: ttl,
    };
    let limit = Duration::from_secs(120)
        + (Duration::from_secs(30) + ttl * 20).saturating_mul(u32::try_from(config.trials + 2).unwrap_or(u32::MAX));
    let outcome = bounded("the cluster failover benchmark", limit, measure(&database, &fleet, &config, nodes)).await;
    database.remove().await;
    redis.quit().await;
    outcome
}

/// How long any one wait (convergence, failover) may take before the run fails.
fn wait_limit(ttl: Duration) -> Duration {
    Duration::from_secs(60) + ttl * 20
}

async fn measure(
    database: &BenchDatabase,
    fleet: &Fleet,
    config: &FailoverConfig,
    count: usize,
) -> Result<Vec<Target>> {
    let ttl = fleet.lease_ttl;
    let db = database.connect(2).await?;
    let tenant_shards = create_tenants(&db, config.tenants.max(1)).await?;
    println!("  {} tenants on {} distinct shards of {SHARDS}", config.tenants.max(1), tenant_shards.len());

    let mut nodes: Vec<ClusterNode> = Vec::with_capacity(count + 1);
    let mut next_id = 1;
    let mut new_id = || {
        let id = format!("n{next_id}");
        next_id += 1;
        id
    };
    nodes.push(ClusterNode::start(fleet, &new_id(), &[])?);
    let seed = nodes[0].cluster_addr;
    for _ in 1..count {
        nodes.push(ClusterNode::start(fleet, &new_id(), &[seed])?);
    }
    let formed = converge(&db, &mut nodes, ttl).await?;
    println!(
        "  {count} nodes started together; every shard held by its rendezvous owner after {:.2} s",
        formed.as_secs_f64()
    );

    let mut failovers = Vec::with_capacity(config.trials);
    for trial in 0..config.trials {
        let index = trial % nodes.len();
        let delay = phase(trial, ttl);
        tokio::time::sleep(delay).await;
        let (shards, tenants) = holdings(&db.shard_leases().await?, &nodes[index].id, &tenant_shards);
        let start = Instant::now();
        nodes[index].kill()?;
        let victim = nodes.remove(index);
        let active = wait_active(&db, &mut nodes, &tenant_shards, start, ttl).await?;
        let replacement = new_id();
        let seeds: Vec<_> = nodes.iter().map(|n| n.cluster_addr).collect();
        nodes.insert(index, ClusterNode::start(fleet, &replacement, &seeds)?);
        let converged = converge(&db, &mut nodes, ttl).await?;
        println!(
            "    trial {:>2}: SIGKILL {} {:>4} ms after convergence ({shards} shards, {tenants} tenants): every tenant \
             active on a survivor after {:.3} s, every shard after {:.3} s; {replacement} joined, converged in {:.1} s",
            trial + 1,
            victim.id,
            delay.as_millis(),
            active.tenants.as_secs_f64(),
            active.shards.as_secs_f64(),
            converged.as_secs_f64()
        );
        victim.stop();
        failovers.push(active.tenants.as_secs_f64());
    }

    // One graceful handover: SIGTERM releases the shards at once.
    tokio::time::sleep(phase(config.trials, ttl)).await;
    let (shards, tenants) = holdings(&db.shard_leases().await?, &nodes[0].id, &tenant_shards);
    let start = Instant::now();
    nodes[0].terminate()?;
    let mut leaving = nodes.remove(0);
    let handover = wait_active(&db, &mut nodes, &tenant_shards, start, ttl).await?;
    let status = leaving.exited(EXIT_LIMIT).await?;
    println!(
        "  SIGTERM {} ({shards} shards, {tenants} tenants): every tenant active on a survivor after {:.3} s, every \
         shard after {:.3} s; the node exited ({status})",
        leaving.id,
        handover.tenants.as_secs_f64(),
        handover.shards.as_secs_f64()
    );
    leaving.stop();
    for node in nodes {
        node.stop();
    }
    db.close().await;

    let secs = ttl.as_secs_f64();
    let bound = secs + 5.0;
    let failover = Summary::of(&failovers).ok_or_else(|| anyhow!("no failover trials"))?;
    println!(
        "  failover (SIGKILL → every tenant active), {} trials: median {:.3} s, max {:.3} s, min {:.3} s; \
         median/TTL {:.2}x (TTL {secs} s); graceful handover {:.3} s = {:.2}x the TTL",
        failover.count,
        failover.median,
        failover.max,
        failover.min,
        failover.median / secs,
        handover.tenants.as_secs_f64(),
        handover.tenants.as_secs_f64() / secs
    );
    Ok(vec![
        Target::info("failover-median", failover.median, " s"),
        // Issue 5's bound for the failover test: every tenant active on a survivor within TTL + 5 s.
        Target::at_most("failover-max", failover.max, " s", bound),
        Target::info("failover-median/ttl", failover.median / secs, "x"),
        Target::info("handover-sigterm", handover.tenants.as_secs_f64(), " s"),
    ])
}

/// How long after convergence trial `i` strikes: spread evenly over the lease renewal cycle (a
/// third of the TTL) by the golden-ratio sequence. Convergence is seen right after a tick, so
/// striking at once would always hit a node that has just renewed its leases.
fn phase(i: usize, ttl: Duration) -> Duration {
    let fraction = (i as f64 * 0.618_033_988_749_895).fract();
    (ttl / 3).mul_f64(fraction)
}

/// Creates `count` tenants; answers the shards they hash onto.
async fn create_tenants(db: &Database, count: usize) -> Result<BTreeSet<Shard>> {
    let mut shards = BTreeSet::new();
    for i in 0..count {
        let slug = Slug::parse(&format!("cluster-{i}"))?;
        let created = db
            .create_tenant(&format!("Cluster {i}"), &slug, "flywheel-bench")
            .await
            .with_context(|| format!("cannot create tenant {i}"))?;
        shards.insert(placement::shard_of(created.tenant_id));
    }
    Ok(shards)
}

fn shard(lease: &LeaseRecord) -> Option<Shard> {
    u16::try_from(lease.shard).ok().and_then(Shard::new)
}

/// The live owner of a lease, if it has one.
fn holder(lease: &LeaseRecord) -> Option<&str> {
    if lease.expired { None } else { lease.owner_node.as_deref() }
}

/// Shards, and shards with tenants, `node` holds.
fn holdings(leases: &[LeaseRecord], node: &str, tenant_shards: &BTreeSet<Shard>) -> (usize, usize) {
    let held: Vec<Shard> = leases.iter().filter(|l| holder(l) == Some(node)).filter_map(shard).collect();
    let tenants = held.iter().filter(|s| tenant_shards.contains(s)).count();
    (held.len(), tenants)
}

fn check_running(nodes: &mut [ClusterNode]) -> Result<()> {
    nodes.iter_mut().try_for_each(ClusterNode::check)
}

/// Waits until every shard is held, unexpired, by its rendezvous owner among `nodes`.
async fn converge(db: &Database, nodes: &mut [ClusterNode], ttl: Duration) -> Result<Duration> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let start = Instant::now();
    let limit = wait_limit(ttl);
    loop {
        check_running(nodes)?;
        let leases = db.shard_leases().await?;
        let placed = leases
            .iter()
            .filter(|l| shard(l).is_some_and(|s| holder(l).is_some() && holder(l) == placement::owner(s, &ids)))
            .count();
        if placed == usize::from(SHARDS) {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            bail!("the leases did not converge on {ids:?} within {limit:?} ({placed} of {SHARDS} shards placed)");
        }
        tokio::time::sleep(CONVERGE_POLL).await;
    }
}

/// When every tenant, and every shard, was first seen held by one of `nodes`.
struct Active {
    tenants: Duration,
    shards: Duration,
}

async fn wait_active(
    db: &Database,
    nodes: &mut [ClusterNode],
    tenant_shards: &BTreeSet<Shard>,
    start: Instant,
    ttl: Duration,
) -> Result<Active> {
    let ids: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let limit = wait_limit(ttl);
    let (mut tenants, mut shards) = (None, None);
    loop {
        let leases = db.shard_leases().await?;
        let elapsed = start.elapsed();
        let held: BTreeSet<Shard> =
            leases.iter().filter(|l| holder(l).is_some_and(|h| ids.contains(h))).filter_map(shard).collect();
        if tenants.is_none() && tenant_shards.is_subset(&held) {
            tenants = Some(elapsed);
        }
        if shards.is_none() && held.len() == usize::from(SHARDS) {
            shards = Some(elapsed);
        }
        if let (Some(tenants), Some(shards)) = (tenants, shards) {
            return Ok(Active { tenants, shards });
        }
        check_running(nodes)?;
        if elapsed >= limit {
            bail!(
                "survivors {ids:?} held {} of {SHARDS} shards ({} of {} tenant shards) after {limit:?}",
                held.len(),
                tenant_shards.intersection(&held).count(),
                tenant_shards.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
