//! `flywheel-bench`: runs the benchmarks — `actors`, `steps`, `tenants` (issue 3), `ingest`
//! (issue 4), `cluster` (issue 5), or `all` — prints their figures, and ends with one `SUMMARY` line of ratios and
//! whether each target is met.
//!
//! `cargo run -p flywheel-bench --release -- all`. The exit status is non-zero only when a
//! benchmark could not run (PostgreSQL or Redis missing, a deadline passed); a missed target is
//! a figure, reported in the summary line, not a failure.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use flywheel_bench::actors::{self, ActorsConfig};
use flywheel_bench::cluster::{self, ClusterConfig, PeerArgs};
use flywheel_bench::ingest::{self, IngestConfig};
use flywheel_bench::services::Services;
use flywheel_bench::steps::{self, StepsConfig};
use flywheel_bench::target::{Target, summary};
use flywheel_bench::tenants::{self, TenantsConfig};

#[derive(Debug, Parser)]
#[command(
    name = "flywheel-bench",
    about = "Flywheel's benchmarks: ratios against baselines measured in the same process"
)]
struct Cli {
    #[command(flatten)]
    services: Services,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Actor overhead: ractor call and cast against a tokio mpsc (+ oneshot). No services needed.
    Actors(ActorsConfig),
    /// Durable step cost: a checkpointed no-op step against a bare INSERT + COMMIT (PostgreSQL,
    /// Redis).
    Steps(StepsConfig),
    /// Memory per active and passivated tenant supervisor (PostgreSQL, Redis).
    Tenants(TenantsConfig),
    /// Event ingestion: a real node's accepted and persisted rates and latency against a raw
    /// binary COPY and a no-op HTTP handler (PostgreSQL, Redis; builds the release node binary).
    Ingest(IngestConfig),
    /// Cluster: ractor_cluster request/reply and cast throughput between two processes against
    /// the same actor in one, and failover time of real node processes (SIGKILL, 10 trials;
    /// one SIGTERM) against the lease TTL (PostgreSQL, Redis; builds the release node binary).
    Cluster(ClusterConfig),
    /// The peer process of the cluster transport benchmark (started by it, not by hand).
    #[command(hide = true)]
    ClusterPeer(PeerArgs),
    /// All five: tenants first (its memory readings are cleanest in a fresh process), then
    /// actors, steps, ingest and cluster.
    All {
        #[command(flatten)]
        actors: ActorsConfig,
        #[command(flatten)]
        steps: StepsConfig,
        #[command(flatten)]
        tenants: TenantsConfig,
        #[command(flatten)]
        ingest: IngestConfig,
        #[command(flatten)]
        cluster: ClusterConfig,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ClusterPeer(args) = cli.command {
        return match cluster::peer(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cluster peer: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<String> {
    let services = &cli.services;
    let (name, targets): (&str, Vec<Target>) = match cli.command {
        Command::Actors(config) => ("actors", actors::run(config).await?),
        Command::Steps(config) => ("steps", steps::run(services, config).await?),
        Command::Tenants(config) => ("tenants", tenants::run(services, config).await?),
        Command::Ingest(config) => ("ingest", ingest::run(services, config).await?),
        Command::Cluster(config) => ("cluster", cluster::run(services, config).await?),
        Command::ClusterPeer(args) => {
            cluster::peer(args).await?;
            return Ok(String::new());
        }
        Command::All {
            actors: actors_config,
            steps: steps_config,
            tenants: tenants_config,
            ingest: ingest_config,
            cluster: cluster_config,
        } => {
            let mut targets = tenants::run(services, tenants_config).await?;
            println!();
            targets.extend(actors::run(actors_config).await?);
            println!();
            targets.extend(steps::run(services, steps_config).await?);
            println!();
            targets.extend(ingest::run(services, ingest_config).await?);
            println!();
            targets.extend(cluster::run(services, cluster_config).await?);
            ("all", targets)
        }
    };
    println!();
    Ok(summary(name, &targets))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn every_flag_of_every_subcommand_is_unique() {
        // `all` flattens every benchmark's flags: clap's own consistency check catches two
        // benchmarks claiming the same argument id.
        Cli::command().debug_assert();
    }
}
