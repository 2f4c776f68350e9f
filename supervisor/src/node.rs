//! `NodeSupervisor`: the root of a node's tree. Routes each message to its tenant's supervisor,
//! activating it on first use and forgetting it when it passivates or fails.

use std::collections::HashMap;
use std::sync::Arc;

use flywheel_contracts::TenantId;
use flywheel_contracts::api::run::AgentName;
use flywheel_contracts::ids::RunId;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::ownership::Claim;
use crate::runtime::{Shared, TenantTree};
use crate::tenant::{TenantArgs, TenantMsg, TenantSupervisor};

pub(crate) enum NodeMsg {
    Execute {
        tenant: TenantId,
        agent: AgentName,
        run: RunId,
    },
    Tree {
        tenant: TenantId,
        reply: RpcReplyPort<Option<TenantTree>>,
    },
    /// Activates a tenant's supervisor without giving it work (placement, warm-up).
    Activate(TenantId),
    /// How many tenant supervisors are active.
    ActiveTenants(RpcReplyPort<usize>),
    /// Stops the supervisors of tenants this node no longer owns.
    Evict,
    /// Delivers a message to a tenant's supervisor as is (the isolation test addresses the
    /// wrong one through it).
    Raw {
        to: TenantId,
        message: TenantMsg,
    },
}

impl ractor::Message for NodeMsg {}

pub(crate) struct NodeSupervisor;

pub(crate) struct NodeState {
    shared: Arc<Shared>,
    tenants: HashMap<TenantId, ActorRef<TenantMsg>>,
    by_actor: HashMap<ActorId, TenantId>,
}

impl NodeState {
    async fn tenant(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        tenant: TenantId,
    ) -> Result<ActorRef<TenantMsg>, ActorProcessingErr> {
        if let Some(t) = self.tenants.get(&tenant) {
            return Ok(t.clone());
        }
        let args = TenantArgs { shared: self.shared.clone(), tenant };
        let (t, _) = Actor::spawn_linked(None, TenantSupervisor, args, myself.get_cell()).await?;
        self.by_actor.insert(t.get_id(), tenant);
        self.tenants.insert(tenant, t.clone());
        Ok(t)
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<NodeState, ActorProcessingErr> {
        Ok(NodeState { shared, tenants: HashMap::new(), by_actor: HashMap::new() })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            NodeMsg::Execute { tenant, agent, run } => {
                if state.shared.ownership.claim(tenant) == Claim::NotOwned {
                    return Ok(());
                }
                let t = state.tenant(&myself, tenant).await?;
                t.cast(TenantMsg::Execute { tenant, agent, run })?;
            }
            NodeMsg::Tree { tenant, reply } => match state.tenants.get(&tenant) {
                // The tenant supervisor answers the caller directly; this actor does not wait.
                Some(t) => t.cast(TenantMsg::Tree { tenant, reply })?,
                None => {
                    let _ = reply.send(None);
                }
            },
            NodeMsg::Activate(tenant) => {
                state.tenant(&myself, tenant).await?;
            }
            NodeMsg::ActiveTenants(reply) => {
                let _ = reply.send(state.tenants.len());
            }
            NodeMsg::Evict => {
                for (tenant, t) in &state.tenants {
                    if state.shared.ownership.claim(*tenant) == Claim::NotOwned {
                        tracing::info!(tenant_id = %tenant, "Tenant moved to another node; stopping it here.");
                        t.stop_children(Some("moved".into()));
                        t.stop(Some("moved".into()));
                    }
                }
            }
            NodeMsg::Raw { to, message } => {
                let t = state.tenant(&myself, to).await?;
                t.cast(message)?;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let gone = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => Some(cell.get_id()),
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(error = %error, "Tenant supervisor failed; it restarts on its next message.");
                Some(cell.get_id())
            }
            _ => None,
        };
        if let Some(id) = gone
            && let Some(tenant) = state.by_actor.remove(&id)
        {
            state.tenants.remove(&tenant);
        }
        Ok(())
    }
}
