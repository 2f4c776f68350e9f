//! Flywheel's load and performance harness: measurements run as ratios against a baseline taken
//! in the same process (raw PostgreSQL, a no-op handler), never as absolute pass/fail timings.
//!
//! Five benchmarks, each returning the [`target::Target`]s it checks:
//! - [`actors`]: ractor request/reply and cast against a tokio mpsc (+ oneshot) doing the same.
//! - [`steps`]: one checkpointed no-op step against a bare single-row INSERT + COMMIT, on a
//!   database created for the run and dropped after it.
//! - [`tenants`]: resident memory per active (and passivated) tenant supervisor, 10,000 of them.
//! - [`ingest`]: a node's event ingestion (accepted, persisted, latency, memory) against a raw
//!   binary COPY and a no-op HTTP handler.
//! - [`cluster`]: ractor_cluster request/reply and cast throughput between two processes against
//!   the same actor in one process, and failover time of real node processes against the lease
//!   TTL.
//!
//! [`steal`] says how much of the machine's CPU time its hypervisor gave to other guests during a
//! phase, printed beside the figures it may have moved; [`pauses`] how often, and for how long,
//! the whole machine stopped during a latency phase, which steal does not always show.
//!
//! The `flywheel-bench` binary (`src/main.rs`) runs them and prints one summary line.

// The baselines are raw SQL on purpose (a bare INSERT + COMMIT, creating and dropping the bench
// database as the owner); the measured paths themselves go through flywheel-storage.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod actors;
pub mod cluster;
pub mod ingest;
pub mod limits;
pub mod pauses;
pub mod sample;
pub mod services;
pub mod steal;
pub mod steps;
pub mod target;
pub mod tenants;
