//! The cluster benchmarks (issue 5), each a ratio against a baseline measured in the same run:
//!
//! - [`transport`]: request/reply (one caller, then many) and one-way casts between this
//!   process and a peer process over ractor_cluster, against the same echo actor spawned in this
//!   process — same message enum, same `flywheel_contracts::cluster` encoding as the node's
//!   router — for a 64-byte and a 4 KiB payload. Reported: messages per second and remote/local.
//! - [`failover`]: three real `flywheel node` processes on one database; one is SIGKILLed, and
//!   the time until every tenant's shard is held by a survivor is measured over 10 trials
//!   (median, max, median over the lease TTL); then one graceful handover (SIGTERM).
//!
//! A missed bound is a figure in the summary line, never a failure: the command fails only
//! when a benchmark cannot run.

pub mod failover;
pub mod node;
pub mod transport;

use anyhow::Result;

use crate::services::Services;
use crate::target::Target;

pub use transport::{PeerArgs, peer};

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterConfig {
    #[command(flatten)]
    pub transport: transport::TransportConfig,
    #[command(flatten)]
    pub failover: failover::FailoverConfig,
}

pub async fn run(services: &Services, config: ClusterConfig) -> Result<Vec<Target>> {
    let mut targets = transport::run(config.transport).await?;
    if config.failover.trials > 0 {
        println!();
        targets.extend(failover::run(services, config.failover).await?);
    }
    Ok(targets)
}
