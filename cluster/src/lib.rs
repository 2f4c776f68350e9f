//! Flywheel's cluster layer: node membership over ractor_cluster, tenants hashed onto virtual
//! shards placed by rendezvous hashing and held under epoch-fenced leases in PostgreSQL,
//! failover and draining, and the admin gRPC control plane (tonic).
//!
//! - [`placement`]: shards, rendezvous hashing and the pure lease plan of one tick.
//! - `leases`: the lease table this node holds (the runtime's [`Ownership`]) and the lease
//!   loop: heartbeat, renew, plan, release, acquire — every decision judged by PostgreSQL.
//! - `transport`: the ractor_cluster node server and this node's router actor, through which
//!   other nodes hand it runs and ask for a tenant's live tree.
//! - [`tls`]: mutual TLS of the transport (optional; the cookie is checked either way) and the
//!   PEM loading the admin plane's TLS shares.
//!
//! ractor_cluster gives transport and process groups only; who owns a tenant is decided by the
//! leases alone, and a stale owner is stopped by the fence on every checkpoint, not by the
//! transport.

pub mod admin;
mod leases;
pub mod placement;
pub mod tls;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flywheel_contracts::TenantId;
use flywheel_storage::cluster::{LeaseRecord, NodeRecord, NodeRegistration};
use flywheel_storage::cluster_bus::{ClusterBus, ClusterListener, Heard};
use flywheel_storage::{Database, StorageError};
use flywheel_supervisor::{Runtime, RuntimeError, TenantTree};
use tokio::task::JoinHandle;

pub use leases::LeaseTable;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id (`FLYWHEEL_NODE_ID`; generated when unset).
    pub node_id: String,
    /// Where this node's cluster transport listens (`FLYWHEEL_CLUSTER_ADDR`); `None`: no
    /// transport (the node still takes leases, and runs are handed over through PostgreSQL).
    pub cluster_addr: Option<SocketAddr>,
    /// Other nodes' cluster addresses to connect to at start (`FLYWHEEL_SEEDS`).
    pub seeds: Vec<String>,
    /// The shared secret of the cluster transport (`FLYWHEEL_CLUSTER_COOKIE`).
    pub cookie: String,
    /// Mutual TLS of the cluster transport (`FLYWHEEL_CLUSTER_TLS_{CERT,KEY,CA}`); `None`:
    /// plaintext, the cookie only.
    pub tls: Option<tls::TransportTls>,
    /// Advertised in the registry for operators and `flywheel admin nodes`.
    pub grpc_addr: Option<String>,
    pub http_addr: Option<String>,
    /// A lease lives this long unless renewed (`FLYWHEEL_LEASE_TTL`); renewed every third.
    pub lease_ttl: Duration,
    /// Shards one node hands over per tick when another should own them (a join); a drain
    /// hands everything over at once.
    pub max_moves_per_tick: usize,
}

impl ClusterConfig {
    /// A single node with a generated id and no transport.
    pub fn solo() -> Self {
        Self {
            node_id: generate_node_id(),
            cluster_addr: None,
            seeds: Vec::new(),
            cookie: String::new(),
            tls: None,
            grpc_addr: None,
            http_addr: None,
            lease_ttl: Duration::from_secs(10),
            max_moves_per_tick: 16,
        }
    }
}

/// A node id for a node that was not given one: `n-` and 12 random hex digits.
pub fn generate_node_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("n-{}", &id[..12])
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A registered node and how many shards it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub record: NodeRecord,
    pub shards: usize,
}

/// This node's membership: its leases, its transport and what it knows of the others. Cheap to
/// clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_id", &self.inner.config.node_id).finish_non_exhaustive()
    }
}

struct Inner {
    config: ClusterConfig,
    db: Database,
    table: Arc<LeaseTable>,
    runtime: Runtime,
    transport: Option<transport::Transport>,
    bus: Option<ClusterBus>,
    lease_loop: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The shortest time between two ticks woken by announcements: a burst of them costs one tick.
const MIN_TICK_GAP: Duration = Duration::from_millis(100);

/// Waits for the next tick: `deadline` (the period), or sooner when a node announces a change on
/// the bus — this one included (a drain asked through its own admin plane, or one more look
/// after its own move, which is cheap). A closed subscription falls back to the period alone.
async fn next_tick(listener: &mut Option<ClusterListener>, deadline: tokio::time::Instant) {
    loop {
        let Some(l) = listener.as_mut() else {
            tokio::time::sleep_until(deadline).await;
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return,
            heard = l.next() => match heard {
                Some(Heard::Change { .. } | Heard::Missed) => {
                    l.skip_pending();
                    return;
                }
                None => {
                    tracing::warn!("The cluster bus closed; ticking on the period alone.");
                    *listener = None;
                }
            },
        }
    }
}

impl Cluster {
    /// The lease table to start the runtime with (`Runtime::start(…, table.clone())`), before
    /// [`Cluster::start`].
    pub fn lease_table(config: &ClusterConfig) -> Arc<LeaseTable> {
        Arc::new(LeaseTable::new(config.node_id.clone()))
    }

    /// Registers the node, starts its transport (when configured) and the lease loop. The first
    /// tick runs before this returns, so a lone node owns its shards when it starts serving.
    /// With a `bus` (Redis pub/sub) the node announces its changes and ticks as soon as another
    /// node announces one; without, every change waits for the period (a third of the TTL).
    pub async fn start(
        config: ClusterConfig,
        db: Database,
        bus: Option<ClusterBus>,
        runtime: Runtime,
        table: Arc<LeaseTable>,
    ) -> Result<Self, ClusterError> {
        db.register_node(&registration(&config)).await?;
        let transport = match config.cluster_addr {
            Some(addr) => Some(transport::Transport::start(&config, addr, runtime.clone(), table.clone()).await?),
            None => None,
        };
        if let Some(t) = &transport {
            table.set_forwarder(t.forwarder());
        }
        // Subscribed before the first tick, so no change announced from then on is missed.
        let mut listener = match &bus {
            Some(bus) => match bus.listen().await {
                Ok(listener) => Some(listener),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot subscribe to the cluster bus; ticking on the period alone.");
                    None
                }
            },
            None => None,
        };
        let inner = Arc::new(Inner {
            config,
            db,
            table,
            runtime,
            transport,
            bus: bus.clone(),
            lease_loop: std::sync::Mutex::new(None),
        });
        let mut ticker = leases::Ticker::new(
            inner.config.clone(),
            inner.db.clone(),
            inner.table.clone(),
            inner.runtime.clone(),
            bus,
        );
        ticker.tick().await;
        // Joined: the holders of this node's share hand it over now rather than at their period.
        ticker.announce().await;
        if let Some(t) = &inner.transport {
            t.connect_peers(&inner.db, inner.config.lease_ttl).await;
        }
        let weak = Arc::downgrade(&inner);
        let handle = tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                if let Some(t) = &inner.transport {
                    t.connect_peers(&inner.db, inner.config.lease_ttl).await;
                }
                let every = inner.config.lease_ttl / 3;
                drop(inner);
                next_tick(&mut listener, started + every).await;
                tokio::time::sleep_until(started + MIN_TICK_GAP).await;
            }
            if let Some(listener) = listener {
                listener.close().await;
            }
        });
        if let Ok(mut slot) = inner.lease_loop.lock() {
            *slot = Some(handle);
        }
        tracing::info!(node_id = %inner.config.node_id, shards = inner.table.held_count(), "Joined the cluster.");
        Ok(Self { inner })
    }

    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// How many shards this node holds now.
    pub fn held_shards(&self) -> usize {
        self.inner.table.held_count()
    }

    /// Every registered node with the number of shards it holds.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        let records = self.inner.db.cluster_nodes(self.inner.config.lease_ttl).await?;
        let leases = self.inner.db.shard_leases().await?;
        Ok(records
            .into_iter()
            .map(|record| {
                let shards =
                    leases.iter().filter(|l| !l.expired && l.owner_node.as_deref() == Some(&record.node_id)).count();
                NodeStatus { record, shards }
            })
            .collect())
    }

    /// Every shard's lease.
    pub async fn shards(&self) -> Result<Vec<LeaseRecord>, ClusterError> {
        Ok(self.inner.db.shard_leases().await?)
    }

    /// Asks a node to hand all its shards over; it does so at once when it hears the
    /// announcement on the bus, else on its next tick (within a third of the lease
    /// time-to-live), and takes none until it restarts.
    pub async fn drain(&self, node_id: &str) -> Result<(), ClusterError> {
        match self.inner.db.set_draining(node_id, true).await {
            Err(StorageError::NotFound) => return Err(ClusterError::NotFound(format!("node {node_id}"))),
            other => other?,
        }
        self.announce().await;
        Ok(())
    }

    async fn announce(&self) {
        announce(self.inner.bus.as_ref(), &self.inner.config.node_id).await;
    }

    /// A tenant's live actor tree on the node that owns it, with that node's id; `None` when
    /// no node owns its shard now or the owner has it passivated.
    pub async fn tenant_tree(&self, tenant: TenantId) -> Result<Option<(String, TenantTree)>, ClusterError> {
        let Some(owner) = self.inner.table.owner_of(tenant) else { return Ok(None) };
        if owner == self.inner.config.node_id {
            return Ok(self.inner.runtime.tree(tenant).await?.map(|t| (owner, t)));
        }
        let transport = self.inner.transport.as_ref().ok_or_else(|| {
            ClusterError::Unavailable(format!("tenant is on node {owner}; this node has no transport"))
        })?;
        Ok(transport.remote_tree(&owner, tenant).await?.map(|t| (owner, t)))
    }

    /// Round trip to another node's router (for the transport benchmark).
    pub async fn echo(&self, node_id: &str, payload: Vec<u8>) -> Result<Vec<u8>, ClusterError> {
        let transport =
            self.inner.transport.as_ref().ok_or_else(|| ClusterError::Unavailable("no transport".into()))?;
        transport.echo(node_id, payload).await
    }

    /// Leaves the cluster gracefully: stops the lease loop, stops the tenants, releases every
    /// shard at once, marks the node departed and announces it (so others take the shards now,
    /// or on their next tick without the bus).
    pub async fn shutdown(&self) {
        if let Ok(mut slot) = self.inner.lease_loop.lock()
            && let Some(handle) = slot.take()
        {
            handle.abort();
        }
        let held = self.inner.table.take_all();
        self.inner.runtime.evict_unowned();
        match self.inner.db.release_shards(&self.inner.config.node_id, &held).await {
            Ok(released) => tracing::info!(shards = released.len(), "Released every shard."),
            Err(e) => tracing::warn!(error = %e, "Could not release the shards; they expire with their leases."),
        }
        if let Err(e) = self.inner.db.node_left(&self.inner.config.node_id).await {
            tracing::warn!(error = %e, "Could not mark the node departed.");
        }
        self.announce().await;
        if let Some(t) = &self.inner.transport {
            t.stop();
        }
    }
}

/// Tells every node (this one too) that `node` changed something, so they tick now rather than
/// at their next period. Best effort: a lost announcement only delays them to that period.
pub(crate) async fn announce(bus: Option<&ClusterBus>, node: &str) {
    if let Some(bus) = bus
        && let Err(e) = bus.announce(node).await
    {
        tracing::debug!(error = %e, "Could not announce a cluster change; peers notice on their next tick.");
    }
}

/// How this node announces itself in the registry.
fn registration(config: &ClusterConfig) -> NodeRegistration {
    NodeRegistration {
        node_id: config.node_id.clone(),
        cluster_addr: config.cluster_addr.map(|a| a.to_string()),
        grpc_addr: config.grpc_addr.clone(),
        http_addr: config.http_addr.clone(),
    }
}
