//! The cluster transport: a ractor_cluster `NodeServer` (shared-secret cookie, optionally over
//! mutual TLS — see [`crate::tls`]) and this node's
//! router actor, a member of the process group `flywheel.node.<node id>`, so any node can
//! address any other by id. Messages are the typed, versioned structs of
//! `flywheel_contracts::cluster`, carried as bytes.
//!
//! Peers are found from the seeds at start and, every tick, from the node registry in
//! PostgreSQL: a live node with no router in the process groups is connected to again, so the
//! mesh heals after a partition or a restart.
//!
//! With TLS the server runs in ractor_cluster's isolated mode: its transitive mode connects to
//! the peers of a peer in plaintext, which a TLS listener would refuse; the registry already
//! gives every node every peer's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flywheel_contracts::TenantId;
use flywheel_contracts::api::run::AgentName;
use flywheel_contracts::cluster::{Echo, ExecuteRun, TreeReply, TreeRequest, Wire, WireTree};
use flywheel_contracts::ids::RunId;
use flywheel_storage::Database;
use flywheel_supervisor::{Runtime, TenantTree};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{NodeServer, NodeServerMessage, RactorClusterMessage};

use crate::leases::{Forwarder, LeaseTable};
use crate::tls::{TransportTls, server_name};
use crate::{ClusterConfig, ClusterError};

/// How long a remote request waits for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn group(node: &str) -> String {
    format!("flywheel.node.{node}")
}

/// What a node's router accepts from other nodes.
#[derive(RactorClusterMessage)]
pub(crate) enum RouterMsg {
    /// An [`ExecuteRun`]: a run of a tenant this node (probably) owns.
    Execute(Vec<u8>),
    /// A [`TreeRequest`], answered with a [`TreeReply`].
    #[rpc]
    Tree(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An [`Echo`], answered with itself (the transport benchmark).
    #[rpc]
    Echo(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

struct Router;

struct RouterState {
    node: String,
    runtime: Runtime,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterState;

    async fn pre_start(
        &self,
        myself: ActorRef<RouterMsg>,
        state: RouterState,
    ) -> Result<RouterState, ActorProcessingErr> {
        ractor::pg::join(group(&state.node), vec![myself.get_cell()]);
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        message: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RouterMsg::Execute(bytes) => match ExecuteRun::decode(&bytes) {
                Ok(m) => match AgentName::parse(&m.agent) {
                    Some(agent) => {
                        state.runtime.execute(TenantId::from_uuid(m.tenant), agent, RunId::from_uuid(m.run));
                    }
                    None => tracing::warn!(agent = %m.agent, "Forwarded run of an unknown agent ignored."),
                },
                Err(e) => tracing::warn!(error = %e, "Refused a cluster message."),
            },
            RouterMsg::Tree(bytes, reply) => {
                let tree = match TreeRequest::decode(&bytes) {
                    Ok(req) => state.runtime.tree(TenantId::from_uuid(req.tenant)).await.ok().flatten().map(to_wire),
                    Err(e) => {
                        tracing::warn!(error = %e, "Refused a cluster message.");
                        None
                    }
                };
                let _ = reply.send(TreeReply { node: state.node.clone(), tree }.encode());
            }
            RouterMsg::Echo(bytes, reply) => {
                let _ = reply.send(bytes);
            }
        }
        Ok(())
    }
}

fn to_wire(tree: TenantTree) -> WireTree {
    WireTree {
        tenant: tree.tenant.as_uuid(),
        agents: tree
            .agents
            .into_iter()
            .map(|(agent, runs)| (agent.as_str().to_owned(), runs.into_iter().map(|r| r.as_uuid()).collect()))
            .collect(),
        rejected_messages: tree.rejected_messages,
    }
}

fn from_wire(tree: WireTree) -> TenantTree {
    TenantTree {
        tenant: TenantId::from_uuid(tree.tenant),
        agents: tree
            .agents
            .into_iter()
            .filter_map(|(agent, runs)| {
                Some((AgentName::parse(&agent)?, runs.into_iter().map(RunId::from_uuid).collect()))
            })
            .collect(),
        rejected_messages: tree.rejected_messages,
    }
}

/// The router of `node`, if it is connected.
fn router_of(node: &str) -> Option<ActorRef<RouterMsg>> {
    ractor::pg::get_members(&group(node)).into_iter().next().map(ActorRef::from)
}

/// This node's transport.
pub(crate) struct Transport {
    node: String,
    server: ActorRef<NodeServerMessage>,
    router: ActorRef<RouterMsg>,
    tls: Option<TransportTls>,
}

impl Transport {
    pub(crate) async fn start(
        config: &ClusterConfig,
        addr: SocketAddr,
        runtime: Runtime,
        _table: Arc<LeaseTable>,
    ) -> Result<Self, ClusterError> {
        use ractor_cluster::node::NodeConnectionMode;
        let (encryption, mode) = match &config.tls {
            Some(tls) => {
                (Some(ractor_cluster::IncomingEncryptionMode::Tls(tls.acceptor())), NodeConnectionMode::Isolated)
            }
            None => (None, NodeConnectionMode::Transitive),
        };
        let server = NodeServer::new(
            addr.port(),
            config.cookie.clone(),
            config.node_id.clone(),
            addr.ip().to_string(),
            encryption,
            Some(mode),
        )
        .with_listen_addr(addr.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| ClusterError::Unavailable(format!("cannot start the cluster transport on {addr}: {e}")))?;
        let (router, _) = Actor::spawn(None, Router, RouterState { node: config.node_id.clone(), runtime })
            .await
            .map_err(|e| ClusterError::Unavailable(format!("cannot start the cluster router: {e}")))?;
        tracing::info!(%addr, tls = config.tls.is_some(), "Cluster transport listening.");
        let transport = Self { node: config.node_id.clone(), server, router, tls: config.tls.clone() };
        for seed in &config.seeds {
            transport.connect(seed).await;
        }
        Ok(transport)
    }

    async fn connect(&self, addr: &str) {
        let connected = match &self.tls {
            None => ractor_cluster::client_connect(&self.server, addr).await,
            Some(tls) => {
                let Some(name) = server_name(addr) else {
                    tracing::warn!(peer = addr, "A peer address without a usable host name; not connecting.");
                    return;
                };
                ractor_cluster::client_connect_enc(&self.server, addr, tls.connector(), name).await
            }
        };
        match connected {
            Ok(()) => tracing::info!(peer = addr, "Connected to a cluster peer."),
            Err(e) => tracing::warn!(peer = addr, error = %e, "Cannot reach a cluster peer yet."),
        }
    }

    /// Connects to every live registered node whose router this node cannot see.
    pub(crate) async fn connect_peers(&self, db: &Database, ttl: Duration) {
        let Ok(nodes) = db.cluster_nodes(ttl).await else { return };
        for node in nodes {
            if node.node_id == self.node || !node.live || router_of(&node.node_id).is_some() {
                continue;
            }
            if let Some(addr) = node.cluster_addr {
                self.connect(&addr).await;
            }
        }
    }

    pub(crate) fn forwarder(&self) -> Forwarder {
        Box::new(|owner: &str, tenant: TenantId, agent: AgentName, run: RunId| {
            let Some(router) = router_of(owner) else {
                tracing::debug!(owner, "Owner not connected; its sweep will find the run.");
                return;
            };
            let message = ExecuteRun { tenant: tenant.as_uuid(), agent: agent.as_str().to_owned(), run: run.as_uuid() };
            if let Err(e) = router.cast(RouterMsg::Execute(message.encode())) {
                tracing::debug!(owner, error = %e, "Could not forward a run; its owner's sweep will find it.");
            }
        })
    }

    pub(crate) async fn remote_tree(&self, owner: &str, tenant: TenantId) -> Result<Option<TenantTree>, ClusterError> {
        let router =
            router_of(owner).ok_or_else(|| ClusterError::Unavailable(format!("node {owner} is not connected")))?;
        let request = TreeRequest { tenant: tenant.as_uuid() }.encode();
        let bytes =
            ractor::call_t!(router, RouterMsg::Tree, u64::try_from(CALL_TIMEOUT.as_millis()).unwrap_or(3000), request)
                .map_err(|e| ClusterError::Unavailable(format!("node {owner} did not answer: {e}")))?;
        let reply = TreeReply::decode(&bytes).map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        Ok(reply.tree.map(from_wire))
    }

    pub(crate) async fn echo(&self, node: &str, payload: Vec<u8>) -> Result<Vec<u8>, ClusterError> {
        let router =
            router_of(node).ok_or_else(|| ClusterError::Unavailable(format!("node {node} is not connected")))?;
        let request = Echo { seq: 0, payload }.encode();
        let bytes =
            ractor::call_t!(router, RouterMsg::Echo, u64::try_from(CALL_TIMEOUT.as_millis()).unwrap_or(3000), request)
                .map_err(|e| ClusterError::Unavailable(format!("node {node} did not answer: {e}")))?;
        Echo::decode(&bytes).map(|e| e.payload).map_err(|e| ClusterError::Unavailable(e.to_string()))
    }

    pub(crate) fn stop(&self) {
        self.router.stop(None);
        self.server.stop(None);
    }
}
