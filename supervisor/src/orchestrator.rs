//! `AgentOrchestrator`: runs one agent's runs for one tenant, a bounded number at a time, one
//! `StepWorker` per step. Failure policy, OTP style: a worker that panics or fails retryably is
//! restarted with bounded intensity (`max_restarts` within `restart_window`); past that the run
//! is marked failed with the error and the step, and everything else keeps running.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use flywheel_actors::agent::AgentDef;
use flywheel_contracts::TenantId;
use flywheel_contracts::ids::RunId;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::runtime::Shared;
use crate::worker::{StepOutcome, StepWorker, WorkerArgs, fail_run};

pub(crate) enum OrchMsg {
    Execute(RunId),
    StepDone {
        run: RunId,
        worker: ActorId,
        outcome: StepOutcome,
    },
    /// Restart a run's worker after a failure (sent with a short delay).
    Restart(RunId),
    /// The runs this orchestrator is executing now.
    Active(RpcReplyPort<Vec<RunId>>),
}

impl ractor::Message for OrchMsg {}

pub(crate) struct AgentOrchestrator;

pub(crate) struct OrchArgs {
    pub shared: Arc<Shared>,
    pub tenant: TenantId,
    pub agent: Arc<AgentDef>,
}

struct ActiveRun {
    worker: Option<ActorId>,
    attempt: u32,
    failures: VecDeque<Instant>,
}

pub(crate) struct OrchState {
    args: OrchArgs,
    active: HashMap<RunId, ActiveRun>,
    workers: HashMap<ActorId, RunId>,
    /// Runs waiting for a slot. Bounded: past `max_waiting_runs` a run is not remembered here —
    /// it stays queued in PostgreSQL and the sweep brings it back.
    waiting: VecDeque<RunId>,
}

impl Actor for AgentOrchestrator {
    type Msg = OrchMsg;
    type State = OrchState;
    type Arguments = OrchArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: OrchArgs) -> Result<OrchState, ActorProcessingErr> {
        Ok(OrchState { args, active: HashMap::new(), workers: HashMap::new(), waiting: VecDeque::new() })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: OrchMsg,
        state: &mut OrchState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            OrchMsg::Execute(run) => {
                if state.active.contains_key(&run) || state.waiting.contains(&run) {
                    return Ok(());
                }
                if state.active.len() < state.args.shared.config.max_concurrent_runs {
                    state.active.insert(run, ActiveRun { worker: None, attempt: 1, failures: VecDeque::new() });
                    spawn_worker(&myself, state, run).await;
                } else if state.waiting.len() < state.args.shared.config.max_waiting_runs {
                    state.waiting.push_back(run);
                }
            }
            OrchMsg::StepDone { run, worker, outcome } => {
                state.workers.remove(&worker);
                match outcome {
                    StepOutcome::Advanced => {
                        if let Some(a) = state.active.get_mut(&run) {
                            a.attempt = 1;
                        }
                        spawn_worker(&myself, state, run).await;
                    }
                    StepOutcome::Parked | StepOutcome::Finished => finish(&myself, state, run).await,
                    StepOutcome::Retry(error) => failure(&myself, state, run, error).await,
                    StepOutcome::Fatal(error) => {
                        fail(state, run, error);
                        finish(&myself, state, run).await;
                    }
                }
            }
            OrchMsg::Restart(run) => {
                if state.active.contains_key(&run) {
                    spawn_worker(&myself, state, run).await;
                }
            }
            OrchMsg::Active(reply) => {
                let _ = reply.send(state.active.keys().copied().collect());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut OrchState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event
            && let Some(run) = state.workers.remove(&cell.get_id())
        {
            tracing::warn!(tenant_id = %state.args.tenant, run_id = %run, error = %error, "Step worker failed.");
            failure(&myself, state, run, format!("worker panicked: {error}")).await;
        }
        // A worker that stopped normally has reported through StepDone already.
        Ok(())
    }
}

async fn spawn_worker(myself: &ActorRef<OrchMsg>, state: &mut OrchState, run: RunId) {
    let attempt = state.active.get(&run).map_or(1, |a| a.attempt);
    let args = WorkerArgs {
        shared: state.args.shared.clone(),
        tenant: state.args.tenant,
        run,
        agent: state.args.agent.clone(),
        attempt,
        orchestrator: myself.clone(),
    };
    match Actor::spawn_linked(None, StepWorker, args, myself.get_cell()).await {
        Ok((worker, _)) => {
            state.workers.insert(worker.get_id(), run);
            if let Some(a) = state.active.get_mut(&run) {
                a.worker = Some(worker.get_id());
            }
        }
        Err(e) => {
            // Spawning fails only when the actor system is shutting down; the run stays queued.
            tracing::error!(run_id = %run, error = %e, "Could not spawn a step worker.");
            state.active.remove(&run);
        }
    }
}

/// A failed attempt: restart with bounded intensity, or fail the run.
async fn failure(myself: &ActorRef<OrchMsg>, state: &mut OrchState, run: RunId, error: String) {
    let config = &state.args.shared.config;
    let Some(active) = state.active.get_mut(&run) else { return };
    let now = Instant::now();
    active.failures.push_back(now);
    while active.failures.front().is_some_and(|t| now.duration_since(*t) > config.restart_window) {
        active.failures.pop_front();
    }
    // Intensity (too many failures within the window) or, for a step that fails slowly (a
    // provider timing out after minutes), too many attempts overall.
    let too_often = active.failures.len() > config.max_restarts as usize;
    if too_often || active.attempt >= config.max_step_attempts {
        let error = if too_often {
            format!("failed {} times within {:?}: {error}", active.failures.len(), config.restart_window)
        } else {
            format!("failed {} attempts: {error}", active.attempt)
        };
        fail(state, run, error);
        finish(myself, state, run).await;
        return;
    }
    active.attempt += 1;
    active.worker = None;
    // A short, growing pause before the next attempt; the restart is a message, so the
    // orchestrator keeps serving other runs meanwhile.
    let delay = (config.restart_backoff * active.attempt).min(std::time::Duration::from_secs(30));
    myself.send_after(delay, move || OrchMsg::Restart(run));
}

/// Marks the run failed in the background (database IO never blocks this actor).
fn fail(state: &OrchState, run: RunId, error: String) {
    let shared = state.args.shared.clone();
    let tenant = state.args.tenant;
    let attempt = state.active.get(&run).map_or(1, |a| a.attempt);
    let agent = state.args.agent.clone();
    tokio::spawn(async move {
        // The step is the run's current one; read it for the record.
        let step = match shared.db.begin(tenant).await {
            Ok(mut tx) => match flywheel_storage::runs::get(&mut tx, run).await {
                Ok(s) => usize::try_from(s.run.cursor)
                    .ok()
                    .and_then(|c| agent.steps.get(c))
                    .map_or_else(|| "finish".to_owned(), |s| s.name().to_owned()),
                Err(_) => "unknown".to_owned(),
            },
            Err(_) => "unknown".to_owned(),
        };
        fail_run(&shared.db, &shared, tenant, run, &step, attempt, &error).await;
    });
}

async fn finish(myself: &ActorRef<OrchMsg>, state: &mut OrchState, run: RunId) {
    state.active.remove(&run);
    while state.active.len() < state.args.shared.config.max_concurrent_runs {
        let Some(next) = state.waiting.pop_front() else { break };
        if let std::collections::hash_map::Entry::Vacant(slot) = state.active.entry(next) {
            slot.insert(ActiveRun { worker: None, attempt: 1, failures: VecDeque::new() });
            spawn_worker(myself, state, next).await;
        }
    }
}
