//! Flywheel's supervision tree and durable-run engine:
//!
//! ```text
//! NodeSupervisor (one per node)
//! └── TenantSupervisor(tenant)        activated by the first message for the tenant, passivated when idle
//!     └── AgentOrchestrator(agent)    one per agent, spawned when first needed
//!         └── StepWorker              one per step being executed; restarted with bounded intensity
//! ```
//!
//! A run advances one step at a time: a worker does the step's slow work, then commits the
//! step's output, its domain writes and the run's cursor in one transaction (the checkpoint) and
//! mirrors the run's hot state in Redis. Approval steps park the run until a decision arrives
//! through [`Runtime::decide`]. A sweep re-dispatches every queued or running run, so runs
//! survive a node restart and nothing queued is forgotten when an in-memory queue is full.

mod error;
mod ingest;
mod node;
mod orchestrator;
mod ownership;
mod relay;
mod runtime;
mod tenant;
mod worker;

pub use error::RuntimeError;
pub use ingest::{Ingest, IngestConfig, IngestStats};
pub use ownership::{Claim, Ownership, Solo};
pub use runtime::{Runtime, RuntimeConfig, TenantTree};
