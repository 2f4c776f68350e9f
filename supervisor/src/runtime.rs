//! `Runtime`: the handle the HTTP edge and the CLI use — submit runs, decide approvals, pause,
//! resume, cancel, inspect the live tree — and the sweep that resumes unfinished runs.

use std::sync::Arc;
use std::time::Duration;

use flywheel_actors::agent::{OnReject, Registry, StepKind};
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::approval::{Approval, ApprovalStatus, Decision, DecisionRequest};
use flywheel_contracts::api::run::{AgentName, Run, RunStatus};
use flywheel_contracts::ids::{ApprovalId, RunId};
use flywheel_contracts::{Role, TenantId};
use flywheel_storage::approvals::{self, Decided};
use flywheel_storage::audit::Actor as AuditActor;
use flywheel_storage::redis::RedisStore;
use flywheel_storage::runs::{self, StepCommit};
use flywheel_storage::{Database, StorageError};
use ractor::{Actor, ActorRef, call_t};
use tokio::task::JoinHandle;

use crate::error::RuntimeError;
use crate::node::{NodeMsg, NodeSupervisor};
use crate::ownership::{Claim, Ownership};
use crate::tenant::TenantMsg;
use crate::worker::mirror;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// A tenant supervisor with no work for this long stops; the next message restarts it.
    pub idle_timeout: Duration,
    /// How often unfinished runs are re-dispatched (resume after a restart, overflow of queues).
    pub sweep_interval: Duration,
    /// Restart intensity: more than `max_restarts` failures of a run's step within
    /// `restart_window` fail the run.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// Attempts of one step before its run fails, however slowly they fail.
    pub max_step_attempts: u32,
    /// Pause before a restart, times the attempt number (at most 30 s).
    pub restart_backoff: Duration,
    /// Runs one orchestrator (one agent of one tenant) executes at once.
    pub max_concurrent_runs: usize,
    /// Runs it remembers waiting for a slot; beyond that they wait in PostgreSQL.
    pub max_waiting_runs: usize,
    /// Roles that may decide approvals (owners may always force).
    pub approver_roles: Vec<Role>,
    /// How long an approval waits before it expires (`None`: never). An expired approval can
    /// only be forced, by an owner.
    pub approval_ttl: Option<Duration>,
    /// The outbox relay's pass interval (it is also woken after each checkpoint).
    pub relay_interval: Duration,
    /// How long a claimed effect is reserved for its relay before it is due again.
    pub relay_lease: Duration,
    /// Attempts before an effect is marked failed.
    pub relay_max_attempts: i32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(15),
            max_restarts: 3,
            restart_window: Duration::from_secs(10),
            max_step_attempts: 6,
            restart_backoff: Duration::from_millis(200),
            max_concurrent_runs: 4,
            max_waiting_runs: 256,
            approver_roles: vec![Role::Owner, Role::Approver],
            approval_ttl: None,
            relay_interval: Duration::from_secs(2),
            relay_lease: Duration::from_secs(60),
            relay_max_attempts: 10,
        }
    }
}

/// What every actor of the runtime shares.
pub(crate) struct Shared {
    pub db: Database,
    pub redis: RedisStore,
    pub registry: Registry,
    pub config: RuntimeConfig,
    pub approver_roles: Vec<Role>,
    /// Wakes the outbox relay (after a checkpoint that may have recorded effects).
    pub relay_wake: tokio::sync::Notify,
    /// Wakes the run sweep (after this node acquired shards).
    pub sweep_wake: tokio::sync::Notify,
    /// Which tenants this node executes, under which fence.
    pub ownership: Arc<dyn Ownership>,
}

/// The live actor tree of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTree {
    pub tenant: TenantId,
    /// Each spawned orchestrator and the runs it is executing now.
    pub agents: Vec<(AgentName, Vec<RunId>)>,
    /// Messages addressed to another tenant that this supervisor refused.
    pub rejected_messages: u64,
}

/// The node's actor runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("agents", &self.inner.shared.registry.names()).finish_non_exhaustive()
    }
}

struct Inner {
    node: ActorRef<NodeMsg>,
    shared: Arc<Shared>,
    sweep: JoinHandle<()>,
    relay: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sweep.abort();
        self.relay.abort();
        self.node.stop(None);
    }
}

impl Runtime {
    /// Starts the node's supervision tree and the sweep, which immediately resumes every
    /// unfinished run of the tenants `ownership` gives this node.
    pub async fn start(
        db: Database,
        redis: RedisStore,
        registry: Registry,
        config: RuntimeConfig,
        ownership: Arc<dyn Ownership>,
    ) -> Result<Self, RuntimeError> {
        let shared = Arc::new(Shared {
            db,
            redis,
            registry,
            approver_roles: config.approver_roles.clone(),
            config,
            relay_wake: tokio::sync::Notify::new(),
            sweep_wake: tokio::sync::Notify::new(),
            ownership,
        });
        let (node, _) = Actor::spawn(None, NodeSupervisor, shared.clone())
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("cannot start the node supervisor: {e}")))?;
        let sweep = tokio::spawn(sweep(shared.clone(), node.clone()));
        let relay = tokio::spawn(crate::relay::run(shared.clone()));
        Ok(Self { inner: Arc::new(Inner { node, shared, sweep, relay }) })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn dispatch(&self, tenant: TenantId, agent: AgentName, run: RunId) {
        if self.shared().ownership.claim(tenant) == Claim::NotOwned {
            self.shared().ownership.forward(tenant, agent, run);
            return;
        }
        if let Err(e) = self.inner.node.cast(NodeMsg::Execute { tenant, agent, run }) {
            // The run is committed as queued: the sweep picks it up when the node is back.
            tracing::warn!(tenant_id = %tenant, run_id = %run, error = %e, "Could not dispatch a run.");
        }
    }

    /// Creates a run of `agent` for `tenant` and starts it.
    pub async fn submit(
        &self,
        tenant: TenantId,
        agent: AgentName,
        input: &JsonObject,
        requested_by: &str,
    ) -> Result<Run, RuntimeError> {
        let def = self.shared().registry.get(agent).ok_or_else(|| RuntimeError::Invalid {
            field: "agent".into(),
            message: format!("the {} agent is not available on this node yet", agent.as_str()),
        })?;
        if let Some(validate) = &def.input_check {
            validate(input).map_err(|(field, message)| RuntimeError::Invalid { field, message })?;
        }
        let mut tx = self.shared().db.begin(tenant).await?;
        let run = runs::create(&mut tx, agent, input, requested_by).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, run_id = %run.id, agent = agent.as_str(), "Run queued.");
        self.dispatch(tenant, agent, run.id);
        Ok(run)
    }

    /// Records a human decision on a pending approval and continues (or ends, or rewinds) its
    /// run, all in one transaction with the audit entry.
    pub async fn decide(
        &self,
        tenant: TenantId,
        role: Role,
        actor: &AuditActor,
        id: ApprovalId,
        request: &DecisionRequest,
    ) -> Result<Approval, RuntimeError> {
        let mut tx = self.shared().db.begin(tenant).await?;
        let approval = approvals::lock(&mut tx, id).await?;
        let expired_at = approval.expires_at.filter(|_| approval.status == ApprovalStatus::Expired);
        if approval.status != ApprovalStatus::Pending && expired_at.is_none() {
            return Err(RuntimeError::Conflict {
                field: "decision".into(),
                message: format!("this approval is already {}", approval.status.as_str()),
            });
        }
        if let Some(expired) = expired_at
            && request.decision != Decision::Force
        {
            return Err(RuntimeError::Conflict {
                field: "decision".into(),
                message: format!("this approval expired at {expired}; an owner can still force it"),
            });
        }
        match request.decision {
            Decision::Force if role != Role::Owner => {
                return Err(RuntimeError::Forbidden("only an owner can force a decision".into()));
            }
            Decision::Force => {}
            _ if !approval.allowed_roles.contains(&role) => {
                return Err(RuntimeError::Forbidden(format!("the {role} role cannot decide this approval")));
            }
            _ => {}
        }
        let run_id = approval.run_id.ok_or_else(|| RuntimeError::Conflict {
            field: "run_id".into(),
            message: "this approval belongs to no run".into(),
        })?;
        let state = runs::lock(&mut tx, run_id).await?;
        if state.run.status != RunStatus::AwaitingApproval {
            // A cancelled (or otherwise moved-on) run is not brought back by a late decision.
            return Err(RuntimeError::Conflict {
                field: "decision".into(),
                message: format!("the run is {}, not awaiting this approval", state.run.status.as_str()),
            });
        }
        let def =
            self.shared().registry.get(state.run.agent).ok_or_else(|| {
                RuntimeError::Unavailable(format!("agent {} not on this node", state.run.agent.as_str()))
            })?;
        let step_name = approval.step_name.clone().unwrap_or_default();
        let step_index = def.step_index(&step_name).ok_or_else(|| RuntimeError::Conflict {
            field: "step_name".into(),
            message: format!("the agent has no step {step_name}"),
        })?;
        let step = def.steps[step_index].clone();
        let StepKind::Approval { on_reject, .. } = step.kind() else {
            return Err(RuntimeError::Conflict { field: "step_name".into(), message: "not an approval step".into() });
        };
        let artifact: JsonObject = match request.decision {
            Decision::Edit => {
                let edited = request.artifact.clone().ok_or_else(|| RuntimeError::Invalid {
                    field: "artifact".into(),
                    message: "an edit needs the edited artifact".into(),
                })?;
                if let Some(schema) = step.artifact_schema() {
                    check_artifact(&schema, &edited)?;
                }
                step.check_artifact(&edited).map_err(|(field, message)| RuntimeError::Invalid { field, message })?;
                edited
            }
            // Only an edit changes the artifact; anything else decides on the proposal as it is.
            _ if request.artifact.is_some() => {
                return Err(RuntimeError::Invalid {
                    field: "artifact".into(),
                    message: "only an edit takes an artifact; approve, reject and force decide on the proposal".into(),
                });
            }
            _ => approval.artifact.clone(),
        };
        let (status, label) = match request.decision {
            Decision::Approve => (ApprovalStatus::Approved, "approve"),
            Decision::Reject => (ApprovalStatus::Rejected, "reject"),
            Decision::Edit => (ApprovalStatus::Edited, "edit"),
            Decision::Force => (ApprovalStatus::Forced, "force"),
        };
        let keep = request.decision != Decision::Reject;
        let decided = approvals::decide(
            &mut tx,
            id,
            &Decided {
                status,
                decision: label,
                artifact: keep.then_some(&artifact),
                reason: request.reason.as_deref(),
            },
            actor,
        )
        .await?;
        let key = format!("{}:{step_name}@{}", state.run.cursor, state.version);
        let cursor = state.run.cursor;
        let output = serde_json::Value::Object(artifact.clone());
        let now = chrono::Utc::now();
        if keep {
            let commit = StepCommit {
                name: &step_name,
                attempt: 1,
                idempotency_key: &key,
                output: &output,
                started_at: now,
                fence: None,
            };
            runs::commit_step(&mut tx, run_id, cursor, cursor + 1, &commit).await?;
            runs::set_status(&mut tx, run_id, RunStatus::Queued, None).await?;
        } else {
            match on_reject {
                OnReject::Fail => {
                    let reason = request.reason.clone().unwrap_or_else(|| "no reason given".into());
                    runs::set_status(
                        &mut tx,
                        run_id,
                        RunStatus::Failed,
                        Some(&format!("rejected at {step_name}: {reason}")),
                    )
                    .await?;
                }
                OnReject::LoopBackTo(target) => {
                    let target_index = def.step_index(target).unwrap_or(step_index);
                    // The rejection is recorded as a step output the regenerating steps can read.
                    let note = serde_json::json!({"reason": request.reason, "rejected_artifact": approval.artifact});
                    let rejection = format!("{step_name}.rejection");
                    let commit = StepCommit {
                        name: &rejection,
                        attempt: 1,
                        idempotency_key: &format!("{key}:rejection"),
                        output: &note,
                        started_at: now,
                        fence: None,
                    };
                    runs::commit_step(&mut tx, run_id, cursor, cursor, &commit).await?;
                    runs::rewind(&mut tx, run_id, i32::try_from(target_index).unwrap_or(0)).await?;
                    runs::set_status(&mut tx, run_id, RunStatus::Queued, None).await?;
                }
            }
        }
        let after = runs::get(&mut tx, run_id).await?;
        tx.commit().await?;
        mirror(self.shared(), tenant, &after).await;
        if after.run.status == RunStatus::Queued {
            self.dispatch(tenant, after.run.agent, run_id);
        }
        Ok(decided)
    }

    /// Pauses a run: the step in progress is committed, then the run waits for `resume`.
    pub async fn pause(&self, tenant: TenantId, run: RunId) -> Result<Run, RuntimeError> {
        self.transition(tenant, run, |s| matches!(s, RunStatus::Queued | RunStatus::Running), RunStatus::Paused).await
    }

    pub async fn resume(&self, tenant: TenantId, run: RunId) -> Result<Run, RuntimeError> {
        let resumed = self.transition(tenant, run, |s| s == RunStatus::Paused, RunStatus::Queued).await?;
        self.dispatch(tenant, resumed.agent, run);
        Ok(resumed)
    }

    /// Cancels a run that has not finished; a step in progress is discarded.
    pub async fn cancel(&self, tenant: TenantId, run: RunId) -> Result<Run, RuntimeError> {
        self.transition(tenant, run, |s| !s.is_finished(), RunStatus::Cancelled).await
    }

    async fn transition(
        &self,
        tenant: TenantId,
        run: RunId,
        allowed: impl Fn(RunStatus) -> bool,
        to: RunStatus,
    ) -> Result<Run, RuntimeError> {
        let mut tx = self.shared().db.begin(tenant).await?;
        let state = runs::lock(&mut tx, run).await?;
        if !allowed(state.run.status) {
            return Err(RuntimeError::Conflict {
                field: "status".into(),
                message: format!("a {} run cannot become {}", state.run.status.as_str(), to.as_str()),
            });
        }
        let after = runs::set_status(&mut tx, run, to, None).await?;
        if to == RunStatus::Cancelled {
            // In the same transaction: a cancelled run's pending approvals can no longer be
            // decided, so they are withdrawn and nobody is asked.
            approvals::expire_for_run(&mut tx, run, "the run was cancelled", &AuditActor::System).await?;
        }
        tx.commit().await?;
        mirror(self.shared(), tenant, &after).await;
        Ok(after.run)
    }

    /// Executes a queued run here if this node owns its tenant (a run forwarded by another
    /// node); otherwise nothing happens and the owner's sweep finds the run.
    pub fn execute(&self, tenant: TenantId, agent: AgentName, run: RunId) {
        if self.shared().ownership.claim(tenant) != Claim::NotOwned {
            self.dispatch(tenant, agent, run);
        }
    }

    /// Resumes now (rather than at the next sweep) the unfinished runs of the tenants this node
    /// owns: called after acquiring shards.
    pub fn sweep_now(&self) {
        self.shared().sweep_wake.notify_one();
    }

    /// Stops the supervisors of tenants this node no longer owns (after losing or handing over
    /// shards). Their in-flight steps can no longer checkpoint: the fence refuses them.
    pub fn evict_unowned(&self) {
        let _ = self.inner.node.cast(NodeMsg::Evict);
    }

    /// The tenant's live actor tree; `None` when the tenant is not active on this node.
    pub async fn tree(&self, tenant: TenantId) -> Result<Option<TenantTree>, RuntimeError> {
        call_t!(self.inner.node, |reply| NodeMsg::Tree { tenant, reply }, 2000)
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))
    }

    /// Activates a tenant's supervisor ahead of work; it passivates again after `idle_timeout`.
    pub fn activate(&self, tenant: TenantId) -> Result<(), RuntimeError> {
        self.inner.node.cast(NodeMsg::Activate(tenant)).map_err(|e| RuntimeError::Unavailable(e.to_string()))
    }

    /// How many tenant supervisors are active on this node.
    pub async fn active_tenants(&self) -> Result<usize, RuntimeError> {
        call_t!(self.inner.node, NodeMsg::ActiveTenants, 2000).map_err(|e| RuntimeError::Unavailable(e.to_string()))
    }

    /// Sends tenant `to`'s supervisor an order to execute a run of tenant `claimed`: the
    /// supervisor must refuse it when the two differ. For the isolation test.
    #[doc(hidden)]
    pub fn misaddress(
        &self,
        to: TenantId,
        claimed: TenantId,
        agent: AgentName,
        run: RunId,
    ) -> Result<(), RuntimeError> {
        self.inner
            .node
            .cast(NodeMsg::Raw { to, message: TenantMsg::Execute { tenant: claimed, agent, run } })
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))
    }

    /// Stops the tree; unfinished runs stay queued or running in PostgreSQL for the next start.
    pub fn stop(&self) {
        self.inner.sweep.abort();
        self.inner.relay.abort();
        self.inner.node.stop(Some("shutdown".into()));
    }
}

fn check_artifact(schema: &serde_json::Value, artifact: &JsonObject) -> Result<(), RuntimeError> {
    let validator = jsonschema::draft202012::new(schema)
        .map_err(|e| RuntimeError::Unavailable(format!("artifact schema does not compile: {e}")))?;
    let value = serde_json::Value::Object(artifact.clone());
    match validator.iter_errors(&value).next() {
        None => Ok(()),
        Some(e) => {
            let path: Vec<String> = e.instance_path().iter().map(|s| s.to_string()).collect();
            let field = if path.is_empty() { "artifact".to_owned() } else { format!("artifact.{}", path.join(".")) };
            Err(RuntimeError::Invalid { field, message: e.to_string() })
        }
    }
}

/// Re-dispatches every queued or running run, now and every `sweep_interval`.
async fn sweep(shared: Arc<Shared>, node: ActorRef<NodeMsg>) {
    loop {
        if let Err(e) = sweep_once(&shared, &node).await {
            tracing::warn!(error = %e, "Run sweep failed; will retry.");
        }
        tokio::select! {
            () = tokio::time::sleep(shared.config.sweep_interval) => {}
            () = shared.sweep_wake.notified() => {}
        }
    }
}

async fn sweep_once(shared: &Shared, node: &ActorRef<NodeMsg>) -> Result<(), StorageError> {
    for tenant in shared.db.tenants_with_unfinished_runs().await? {
        if shared.ownership.claim(tenant) == Claim::NotOwned {
            continue;
        }
        let mut tx = shared.db.begin(tenant).await?;
        let unfinished = runs::unfinished(&mut tx).await?;
        tx.commit().await?;
        for state in unfinished {
            if shared.registry.get(state.run.agent).is_none() {
                continue;
            }
            let _ = node.cast(NodeMsg::Execute { tenant, agent: state.run.agent, run: state.run.id });
        }
    }
    Ok(())
}
