//! `TenantSupervisor`: one per active tenant. Spawns an orchestrator per agent when first
//! needed, rejects any message addressed to another tenant, and passivates itself (stops) after
//! `idle_timeout` without work; the node reactivates it on the next message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flywheel_contracts::TenantId;
use flywheel_contracts::api::run::AgentName;
use flywheel_contracts::ids::RunId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent, call_t};

use crate::orchestrator::{AgentOrchestrator, OrchArgs, OrchMsg};
use crate::runtime::{Shared, TenantTree};

pub(crate) enum TenantMsg {
    Execute { tenant: TenantId, agent: AgentName, run: RunId },
    Tree { tenant: TenantId, reply: RpcReplyPort<Option<TenantTree>> },
    IdleCheck,
}

impl ractor::Message for TenantMsg {}

pub(crate) struct TenantSupervisor;

pub(crate) struct TenantArgs {
    pub shared: Arc<Shared>,
    pub tenant: TenantId,
}

pub(crate) struct TenantState {
    shared: Arc<Shared>,
    tenant: TenantId,
    orchestrators: HashMap<AgentName, ActorRef<OrchMsg>>,
    last_work: Instant,
    rejected: u64,
    /// Stopped with the actor, so a passivated tenant leaves nothing behind.
    idle_timer: tokio::task::JoinHandle<()>,
}

impl Actor for TenantSupervisor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TenantArgs,
    ) -> Result<TenantState, ActorProcessingErr> {
        let every = (args.shared.config.idle_timeout / 4).max(Duration::from_millis(50));
        let idle_timer = myself.send_interval(every, || TenantMsg::IdleCheck);
        tracing::debug!(tenant_id = %args.tenant, "Tenant activated.");
        Ok(TenantState {
            shared: args.shared,
            tenant: args.tenant,
            orchestrators: HashMap::new(),
            last_work: Instant::now(),
            rejected: 0,
            idle_timer,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TenantMsg::Execute { tenant, agent, run } => {
                if tenant != state.tenant {
                    // Every message names its tenant; one for another tenant is a bug upstream.
                    state.rejected += 1;
                    tracing::error!(tenant_id = %state.tenant, addressed_to = %tenant, run_id = %run, "Rejected a message for another tenant.");
                    return Ok(());
                }
                state.last_work = Instant::now();
                let orchestrator = match state.orchestrators.get(&agent) {
                    Some(o) => o.clone(),
                    None => {
                        let Some(def) = state.shared.registry.get(agent) else {
                            tracing::error!(tenant_id = %tenant, agent = agent.as_str(), "No such agent on this node.");
                            return Ok(());
                        };
                        let args = OrchArgs { shared: state.shared.clone(), tenant, agent: def };
                        let (o, _) = Actor::spawn_linked(None, AgentOrchestrator, args, myself.get_cell()).await?;
                        state.orchestrators.insert(agent, o.clone());
                        o
                    }
                };
                orchestrator.cast(OrchMsg::Execute(run))?;
            }
            TenantMsg::Tree { tenant, reply } => {
                if tenant != state.tenant {
                    state.rejected += 1;
                    let _ = reply.send(None);
                    return Ok(());
                }
                let mut agents = Vec::new();
                for (name, o) in &state.orchestrators {
                    let runs = call_t!(o, OrchMsg::Active, 1000).unwrap_or_default();
                    agents.push((*name, runs));
                }
                agents.sort_by_key(|(n, _)| n.as_str());
                let _ =
                    reply.send(Some(TenantTree { tenant: state.tenant, agents, rejected_messages: state.rejected }));
            }
            TenantMsg::IdleCheck => {
                if state.last_work.elapsed() < state.shared.config.idle_timeout {
                    return Ok(());
                }
                for o in state.orchestrators.values() {
                    if !call_t!(o, OrchMsg::Active, 1000).unwrap_or_default().is_empty() {
                        state.last_work = Instant::now();
                        return Ok(());
                    }
                }
                tracing::debug!(tenant_id = %state.tenant, "Tenant passivated.");
                myself.stop(Some("idle".into()));
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut TenantState) -> Result<(), ActorProcessingErr> {
        state.idle_timer.abort();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            // An orchestrator that fails loses only its in-memory bookkeeping: its runs stay
            // queued or running in PostgreSQL and the sweep dispatches them again.
            state.orchestrators.retain(|_, o| o.get_id() != cell.get_id());
            tracing::error!(tenant_id = %state.tenant, error = %error, "Agent orchestrator failed; its runs will be resumed.");
        }
        Ok(())
    }
}
