//! The leases this node holds, and the loop that keeps them.
//!
//! [`LeaseTable`] is the runtime's [`Ownership`]: a tenant is this node's while the lease of its
//! shard is held and locally believed valid — until a fraction of the time-to-live after the
//! request that acquired or last renewed it was *sent*, so the local belief ends before the
//! database's expiry even with some clock drift. Safety never rests on that belief: every
//! checkpoint re-checks the lease in PostgreSQL under a share lock (the fence).
//!
//! [`Ticker::tick`], every third of the time-to-live and whenever another node announces a
//! change on the cluster bus (Redis pub/sub): heartbeat; renew what is held (dropping what was
//! lost); read the members and leases; [`plan`]; stop the tenants of shards to hand over, then
//! release them; acquire the free or expired shards this node should own, then resume their
//! runs; announce what changed. Rebalancing releases stay limited to one batch per third of
//! the time-to-live however often the node is woken, so announcements speed moves up without
//! letting a join thrash the cluster.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use flywheel_contracts::TenantId;
use flywheel_contracts::api::run::AgentName;
use flywheel_contracts::ids::RunId;
use flywheel_storage::cluster::{Held, NodeRegistration};
use flywheel_storage::cluster_bus::ClusterBus;
use flywheel_storage::runs::Fence;
use flywheel_storage::{Database, StorageError};
use flywheel_supervisor::{Claim, Ownership, Runtime};
use tokio::time::Instant;

use crate::ClusterConfig;
use crate::placement::{LeaseView, Shard, plan, shard_of};

/// The share of the time-to-live a lease is locally believed valid after the request that
/// acquired or renewed it was sent.
const LOCAL_VALIDITY: f64 = 0.8;

#[derive(Debug, Clone, Copy)]
struct HeldLease {
    epoch: i64,
    valid_until: Instant,
}

/// Hands a run to its tenant's owner over the transport.
pub(crate) type Forwarder = Box<dyn Fn(&str, TenantId, AgentName, RunId) + Send + Sync>;

/// The shards this node holds, and who held every shard at the last look.
pub struct LeaseTable {
    node: String,
    held: RwLock<HashMap<Shard, HeldLease>>,
    owners: RwLock<HashMap<Shard, String>>,
    forwarder: OnceLock<Forwarder>,
}

impl std::fmt::Debug for LeaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTable").field("node", &self.node).field("held", &self.held_count()).finish()
    }
}

impl LeaseTable {
    pub(crate) fn new(node: String) -> Self {
        Self {
            node,
            held: RwLock::new(HashMap::new()),
            owners: RwLock::new(HashMap::new()),
            forwarder: OnceLock::new(),
        }
    }

    pub(crate) fn set_forwarder(&self, forwarder: Forwarder) {
        let _ = self.forwarder.set(forwarder);
    }

    pub fn held_count(&self) -> usize {
        self.held.read().map(|h| h.len()).unwrap_or(0)
    }

    fn held_pairs(&self) -> Vec<Held> {
        self.held.read().map(|h| h.iter().map(|(s, l)| (i32::from(s.get()), l.epoch)).collect()).unwrap_or_default()
    }

    /// Records leases acquired or renewed by a request sent at `sent`.
    fn hold(&self, leases: &[Held], sent: Instant, ttl: Duration) {
        let valid_until = sent + ttl.mul_f64(LOCAL_VALIDITY);
        if let Ok(mut held) = self.held.write() {
            for (shard, epoch) in leases {
                if let Some(shard) = to_shard(*shard) {
                    held.insert(shard, HeldLease { epoch: *epoch, valid_until });
                }
            }
        }
    }

    /// Forgets the given shards; answers whether any was held.
    fn forget(&self, shards: &[Shard]) -> bool {
        self.held
            .write()
            .map(|mut held| shards.iter().filter(|s| held.remove(s).is_some()).count() > 0)
            .unwrap_or(false)
    }

    /// Forgets every shard and answers what was held.
    pub(crate) fn take_all(&self) -> Vec<Held> {
        let held = self.held_pairs();
        if let Ok(mut h) = self.held.write() {
            h.clear();
        }
        held
    }

    fn set_owners(&self, leases: &[LeaseView]) {
        if let Ok(mut owners) = self.owners.write() {
            owners.clear();
            for lease in leases {
                if let Some(owner) = lease.owner.as_ref().filter(|_| !lease.expired) {
                    owners.insert(lease.shard, owner.clone());
                }
            }
        }
    }

    /// The node owning `tenant`'s shard: this one if it holds the lease, else whoever held it
    /// at the last look.
    pub fn owner_of(&self, tenant: TenantId) -> Option<String> {
        if matches!(self.claim(tenant), Claim::Fenced(_)) {
            return Some(self.node.clone());
        }
        self.owners.read().ok().and_then(|o| o.get(&shard_of(tenant)).cloned()).filter(|o| *o != self.node)
    }
}

fn to_shard(n: i32) -> Option<Shard> {
    u16::try_from(n).ok().and_then(Shard::new)
}

impl Ownership for LeaseTable {
    fn claim(&self, tenant: TenantId) -> Claim {
        let shard = shard_of(tenant);
        let Ok(held) = self.held.read() else { return Claim::NotOwned };
        match held.get(&shard) {
            Some(lease) if Instant::now() < lease.valid_until => {
                Claim::Fenced(Fence { node: self.node.clone(), shard: i32::from(shard.get()), epoch: lease.epoch })
            }
            _ => Claim::NotOwned,
        }
    }

    fn forward(&self, tenant: TenantId, agent: AgentName, run: RunId) {
        if let (Some(owner), Some(forward)) = (self.owner_of(tenant), self.forwarder.get()) {
            forward(&owner, tenant, agent, run);
        }
    }
}

/// One node's lease loop state.
pub(crate) struct Ticker {
    config: ClusterConfig,
    db: Database,
    table: Arc<LeaseTable>,
    runtime: Runtime,
    bus: Option<ClusterBus>,
    /// When this node last handed shards over to rebalance (not to drain).
    last_rebalance: Option<Instant>,
}

impl Ticker {
    pub(crate) fn new(
        config: ClusterConfig,
        db: Database,
        table: Arc<LeaseTable>,
        runtime: Runtime,
        bus: Option<ClusterBus>,
    ) -> Self {
        Self { config, db, table, runtime, bus, last_rebalance: None }
    }

    pub(crate) async fn announce(&self) {
        crate::announce(self.bus.as_ref(), &self.config.node_id).await;
    }

    /// One round; a failing step is logged and the next tick tries again (what is held lapses
    /// locally on its own if renewals keep failing).
    pub(crate) async fn tick(&mut self) {
        if let Err(e) = self.try_tick().await {
            tracing::warn!(node_id = %self.config.node_id, error = %e, "Lease tick failed; retrying next tick.");
        }
    }

    async fn try_tick(&mut self) -> Result<(), StorageError> {
        let me = self.config.node_id.clone();
        let ttl = self.config.lease_ttl;
        let draining = match self.db.heartbeat(&me).await {
            Ok(draining) => draining,
            Err(StorageError::NotFound) => {
                // Removed or marked departed while alive (a stale shutdown, an operator): come back.
                self.db.register_node(&self.registration()).await?;
                false
            }
            Err(e) => return Err(e),
        };

        // Renew; whatever was not renewed is lost (expired, or taken after expiring).
        let held = self.table.held_pairs();
        let sent = Instant::now();
        let renewed = self.db.renew_shards(&me, &held, ttl).await?;
        self.table.hold(&renewed, sent, ttl);
        let kept: HashSet<i32> = renewed.iter().map(|(s, _)| *s).collect();
        let lost: Vec<Shard> =
            held.iter().filter(|(s, _)| !kept.contains(s)).filter_map(|(s, _)| to_shard(*s)).collect();
        if self.table.forget(&lost) {
            tracing::warn!(node_id = %me, shards = lost.len(), "Lost shard leases (not renewed in time).");
            self.runtime.evict_unowned();
        }

        // Look, then plan.
        let nodes = self.db.cluster_nodes(ttl).await?;
        let live: Vec<String> = nodes.into_iter().filter(|n| n.live && !n.draining).map(|n| n.node_id).collect();
        let views: Vec<LeaseView> = self
            .db
            .shard_leases()
            .await?
            .into_iter()
            .filter_map(|l| {
                Some(LeaseView { shard: to_shard(l.shard)?, owner: l.owner_node, epoch: l.epoch, expired: l.expired })
            })
            .collect();
        self.table.set_owners(&views);
        let mut planned = plan(&me, &live, &views, self.config.max_moves_per_tick, draining);
        // One rebalancing batch per period, however often announcements wake this node.
        let period = ttl / 3;
        if !draining && !planned.release.is_empty() {
            if self.last_rebalance.is_some_and(|at| at.elapsed() < period) {
                planned.release.clear();
            } else {
                self.last_rebalance = Some(Instant::now());
            }
        }
        let mut changed = false;

        // Hand over: stop the tenants first, then give the leases up.
        if !planned.release.is_empty() {
            let shards: Vec<Shard> = planned.release.iter().map(|(s, _)| *s).collect();
            self.table.forget(&shards);
            self.runtime.evict_unowned();
            let release: Vec<Held> = planned.release.iter().map(|(s, e)| (i32::from(s.get()), *e)).collect();
            let released = self.db.release_shards(&me, &release).await?;
            tracing::info!(node_id = %me, shards = released.len(), draining, "Handed shards over.");
            changed |= !released.is_empty();
        }

        // Take what is free and ours, then resume its runs.
        if !planned.acquire.is_empty() {
            let wanted: Vec<i32> = planned.acquire.iter().map(|s| i32::from(s.get())).collect();
            let sent = Instant::now();
            let acquired = self.db.acquire_shards(&me, &wanted, ttl).await?;
            if !acquired.is_empty() {
                self.table.hold(&acquired, sent, ttl);
                tracing::info!(node_id = %me, shards = acquired.len(), "Acquired shards.");
                self.runtime.sweep_now();
                changed = true;
            }
        }
        if changed {
            self.announce().await;
        }
        Ok(())
    }

    fn registration(&self) -> NodeRegistration {
        crate::registration(&self.config)
    }
}
