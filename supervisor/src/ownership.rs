//! Which tenants this node may execute, and under which fence. The cluster layer holds the
//! shard leases and answers for each tenant; a node that runs alone on its database and takes
//! no leases (an in-process harness) owns everything, unfenced.

use flywheel_contracts::TenantId;
use flywheel_contracts::api::run::AgentName;
use flywheel_contracts::ids::RunId;
use flywheel_storage::runs::Fence;

/// This node's claim on a tenant right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Another node owns the tenant (or nobody does yet): do not execute its runs here.
    NotOwned,
    /// This node runs alone on its database and takes no leases.
    Unfenced,
    /// This node holds the tenant's shard lease: every checkpoint is fenced on it.
    Fenced(Fence),
}

/// The placement the runtime obeys.
pub trait Ownership: Send + Sync + 'static {
    /// This node's claim on `tenant`.
    fn claim(&self, tenant: TenantId) -> Claim;

    /// Hands a run this node does not own to the tenant's owner, if one is known. A run that is
    /// not forwarded is still queued in PostgreSQL, and its owner's sweep picks it up.
    fn forward(&self, tenant: TenantId, agent: AgentName, run: RunId) {
        let _ = (tenant, agent, run);
    }
}

/// Owns every tenant without a lease: for a runtime that is alone on its database (benchmarks
/// and in-process tests). A node started by `flywheel node` always takes leases.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Ownership for Solo {
    fn claim(&self, _tenant: TenantId) -> Claim {
        Claim::Unfenced
    }
}
