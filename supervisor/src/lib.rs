//! Flywheel's supervision tree: the one `NodeSupervisor` per node and a `TenantSupervisor` per
//! active tenant, which spawn agent orchestrators on demand, apply the restart policy (bounded
//! intensity, then park the run as failed), commit and resume durable runs from their
//! checkpoints, and park runs at human approval gates.
//!
//! Filled by the actor-runtime issue; empty until then.
