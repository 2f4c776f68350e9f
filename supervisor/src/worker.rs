//! `StepWorker`: executes the next step of one run — load, work, checkpoint — and reports the
//! outcome to its orchestrator. A panic here fails only this actor; the orchestrator's restart
//! policy decides what happens next.

use std::sync::Arc;
use std::time::Duration;

use flywheel_actors::agent::{AgentDef, StepContext, StepError, StepKind};
use flywheel_contracts::TenantId;
use flywheel_contracts::api::approval::ApprovalStatus;
use flywheel_contracts::api::run::RunStatus;
use flywheel_contracts::hot::RunHot;
use flywheel_contracts::ids::RunId;
use flywheel_storage::approvals::{self, Decided, NewApproval};
use flywheel_storage::audit::Actor as AuditActor;
use flywheel_storage::runs::{self, CommitOutcome, Fence, RunState, StepCommit};
use flywheel_storage::{Database, StorageError, TenantTx};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::orchestrator::OrchMsg;
use crate::ownership::Claim;
use crate::runtime::Shared;

/// How one step attempt ended.
#[derive(Debug)]
pub(crate) enum StepOutcome {
    /// The step was committed and the run has more to do.
    Advanced,
    /// The run is not runnable now (awaiting approval, paused, cancelled, moved on elsewhere).
    Parked,
    /// The run ended.
    Finished,
    /// The step failed in a way another attempt may fix.
    Retry(String),
    /// The step failed for good; the run must fail with this message.
    Fatal(String),
}

pub(crate) struct StepWorker;

pub(crate) struct WorkerArgs {
    pub shared: Arc<Shared>,
    pub tenant: TenantId,
    pub run: RunId,
    pub agent: Arc<AgentDef>,
    pub attempt: u32,
    pub orchestrator: ActorRef<OrchMsg>,
}

pub(crate) enum WorkerMsg {
    Go,
}

impl ractor::Message for WorkerMsg {}

impl Actor for StepWorker {
    type Msg = WorkerMsg;
    type State = WorkerArgs;
    type Arguments = WorkerArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: WorkerArgs) -> Result<WorkerArgs, ActorProcessingErr> {
        myself.cast(WorkerMsg::Go)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        _message: WorkerMsg,
        state: &mut WorkerArgs,
    ) -> Result<(), ActorProcessingErr> {
        let outcome = match execute(state).await {
            Ok(outcome) => outcome,
            Err(e) => StepOutcome::Retry(e.to_string()),
        };
        // The orchestrator may be gone (tenant stopping); the run stays queued for the sweep.
        let _ = state.orchestrator.cast(OrchMsg::StepDone { run: state.run, worker: myself.get_id(), outcome });
        myself.stop(None);
        Ok(())
    }
}

fn idempotency_key(state: &RunState, step: &str) -> String {
    format!("{}:{step}@{}", state.run.cursor, state.version)
}

/// Whether the fence still holds, share-locking the lease row for the rest of `tx` (`None`: this
/// node runs alone, unfenced).
async fn holds(tx: &mut TenantTx, fence: Option<&Fence>) -> Result<bool, StorageError> {
    match fence {
        None => Ok(true),
        Some(fence) => match runs::check_fence(tx, fence).await {
            Ok(()) => Ok(true),
            Err(StorageError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        },
    }
}

async fn execute(args: &WorkerArgs) -> Result<StepOutcome, StepError> {
    let db = &args.shared.db;
    // 0. This node must own the tenant; the whole step runs under the lease it holds now.
    let fence = match args.shared.ownership.claim(args.tenant) {
        Claim::NotOwned => return Ok(StepOutcome::Parked),
        Claim::Unfenced => None,
        Claim::Fenced(fence) => Some(fence),
    };
    let fence = fence.as_ref();
    // 1. Load the run; only queued and running runs execute.
    let mut tx = db.begin(args.tenant).await?;
    if !holds(&mut tx, fence).await? {
        return Ok(StepOutcome::Parked);
    }
    let mut state = runs::lock(&mut tx, args.run).await?;
    match state.run.status {
        RunStatus::Queued => state = runs::set_status(&mut tx, args.run, RunStatus::Running, None).await?,
        RunStatus::Running => {}
        _ => return Ok(StepOutcome::Parked),
    }
    let cursor = usize::try_from(state.run.cursor).unwrap_or(usize::MAX);
    let Some(step) = args.agent.steps.get(cursor).cloned() else {
        let done = runs::set_status(&mut tx, args.run, RunStatus::Succeeded, None).await?;
        tx.commit().await?;
        mirror(&args.shared, args.tenant, &done).await;
        tracing::info!(tenant_id = %args.tenant, run_id = %args.run, "Run succeeded.");
        return Ok(StepOutcome::Finished);
    };
    let outputs = runs::outputs(&mut tx, args.run).await?;
    tx.commit().await?;
    let ctx = StepContext { tenant: args.tenant, run: args.run, input: state.run.input.clone(), outputs };

    // 2. The step's work, outside any transaction.
    let started_at = chrono::Utc::now();
    let output = match step.run(&ctx).await {
        Ok(output) => output,
        Err(StepError::Retryable(e)) => return Ok(StepOutcome::Retry(e)),
        Err(StepError::Fatal(e)) => return Ok(StepOutcome::Fatal(e)),
    };

    // 3. The checkpoint, fenced: a node that lost the lease meanwhile commits nothing.
    let mut tx = db.begin(args.tenant).await?;
    if !holds(&mut tx, fence).await? {
        tracing::warn!(tenant_id = %args.tenant, run_id = %args.run, "Lease lost during a step; its work is dropped.");
        return Ok(StepOutcome::Parked);
    }
    let current = runs::lock(&mut tx, args.run).await?;
    // Queued again means paused and resumed while this step worked: its work still counts.
    if current.run.cursor != state.run.cursor
        || !matches!(current.run.status, RunStatus::Running | RunStatus::Paused | RunStatus::Queued)
    {
        // Cancelled, or another executor committed this step meanwhile: drop the work.
        return Ok(StepOutcome::Parked);
    }
    if current.run.status == RunStatus::Queued {
        runs::set_status(&mut tx, args.run, RunStatus::Running, None).await?;
    }
    let key = idempotency_key(&current, step.name());
    let from = current.run.cursor;
    match step.kind() {
        StepKind::Work => {
            let commit = StepCommit {
                name: step.name(),
                attempt: i32::try_from(args.attempt).unwrap_or(i32::MAX),
                idempotency_key: &key,
                output: &output,
                started_at,
                fence,
            };
            if runs::commit_step(&mut tx, args.run, from, from + 1, &commit).await? == CommitOutcome::AlreadyCommitted {
                return Ok(StepOutcome::Parked);
            }
            step.apply(&mut tx, &ctx, &output).await?;
        }
        StepKind::Approval { kind, .. } => {
            let artifact = output
                .as_object()
                .cloned()
                .ok_or_else(|| StepError::Fatal(format!("step {} proposed a non-object artifact", step.name())))?;
            let auto = approvals::policy(&mut tx, kind).await?.is_some_and(|rule| policy_approves(&rule, &artifact));
            let pending = match approvals::pending_for_step(&mut tx, args.run, step.name()).await? {
                Some(existing) => existing,
                None => {
                    approvals::create(
                        &mut tx,
                        &NewApproval {
                            run_id: args.run,
                            step_name: step.name(),
                            kind,
                            artifact: &artifact,
                            allowed_roles: &args.shared.approver_roles,
                            expires_at: args
                                .shared
                                .config
                                .approval_ttl
                                .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
                                .map(|ttl| chrono::Utc::now() + ttl),
                        },
                    )
                    .await?
                }
            };
            if current.run.status == RunStatus::Paused {
                // Paused while proposing: the approval exists, the run stays paused; on resume
                // this step finds the pending approval and parks the run for it.
                tx.commit().await?;
                return Ok(StepOutcome::Parked);
            }
            if !auto {
                let parked = runs::set_status(&mut tx, args.run, RunStatus::AwaitingApproval, None).await?;
                tx.commit().await?;
                mirror(&args.shared, args.tenant, &parked).await;
                tracing::info!(tenant_id = %args.tenant, run_id = %args.run, approval_id = %pending.id, "Run awaits approval.");
                return Ok(StepOutcome::Parked);
            }
            let decided = Decided {
                status: ApprovalStatus::Approved,
                decision: "auto",
                artifact: Some(&artifact),
                reason: Some("approved by the tenant's policy"),
            };
            approvals::decide(&mut tx, pending.id, &decided, &AuditActor::System).await?;
            let commit =
                StepCommit { name: step.name(), attempt: 1, idempotency_key: &key, output: &output, started_at, fence };
            runs::commit_step(&mut tx, args.run, from, from + 1, &commit).await?;
        }
    }
    let after = runs::get(&mut tx, args.run).await?;
    tx.commit().await?;
    args.shared.relay_wake.notify_one();
    mirror(&args.shared, args.tenant, &after).await;
    tracing::info!(tenant_id = %args.tenant, run_id = %args.run, step = step.name(), "Step committed.");
    if after.run.status == RunStatus::Paused { Ok(StepOutcome::Parked) } else { Ok(StepOutcome::Advanced) }
}

/// Whether a tenant's policy rule approves an artifact without a human:
/// `{"auto_approve": true}`, or `{"max_change_ratio": r}` for an artifact whose `change_ratio`
/// is at most `r` in absolute value (e.g. a budget change of 8 % under a 10 % rule).
pub(crate) fn policy_approves(
    rule: &serde_json::Map<String, serde_json::Value>,
    artifact: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    if rule.get("auto_approve").and_then(serde_json::Value::as_bool) == Some(true) {
        return true;
    }
    match (
        rule.get("max_change_ratio").and_then(serde_json::Value::as_f64),
        artifact.get("change_ratio").and_then(serde_json::Value::as_f64),
    ) {
        (Some(max), Some(change)) => change.abs() <= max,
        _ => false,
    }
}

/// Mirrors a run's state in Redis for fast reads. Redis is a cache: a failure is logged only.
pub(crate) async fn mirror(shared: &Shared, tenant: TenantId, state: &RunState) {
    let hot = RunHot {
        format: RunHot::FORMAT,
        status: state.run.status.as_str().to_owned(),
        cursor: state.run.cursor,
        version: state.version,
        updated_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    let id = state.run.id.to_string();
    if let Err(e) =
        shared.redis.tenant(tenant).set(&["run", &id], &hot.encode(), Some(Duration::from_secs(86_400))).await
    {
        tracing::warn!(tenant_id = %tenant, run_id = %id, error = %e, "Could not mirror run state to Redis.");
    }
}

/// Marks a run failed after its step failed for good, recording the failed attempt.
pub(crate) async fn fail_run(
    db: &Database,
    shared: &Shared,
    tenant: TenantId,
    run: RunId,
    step: &str,
    attempt: u32,
    error: &str,
) {
    let result: Result<(), StorageError> = async {
        let fence = match shared.ownership.claim(tenant) {
            Claim::NotOwned => return Ok(()),
            Claim::Unfenced => None,
            Claim::Fenced(fence) => Some(fence),
        };
        let mut tx: TenantTx = db.begin(tenant).await?;
        // A stale owner must not fail a run the new owner is executing.
        if !holds(&mut tx, fence.as_ref()).await? {
            return Ok(());
        }
        let state = runs::lock(&mut tx, run).await?;
        if state.run.status.is_finished() {
            return Ok(());
        }
        let key = format!("{}:{step}@{}:failed", state.run.cursor, state.version);
        runs::record_failure(&mut tx, run, step, i32::try_from(attempt).unwrap_or(i32::MAX), &key, error).await?;
        let failed = runs::set_status(&mut tx, run, RunStatus::Failed, Some(&format!("step {step}: {error}"))).await?;
        tx.commit().await?;
        mirror(shared, tenant, &failed).await;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => tracing::warn!(tenant_id = %tenant, run_id = %run, step, error, "Run failed."),
        Err(e) => {
            tracing::error!(tenant_id = %tenant, run_id = %run, error = %e, "Could not mark the run failed; the sweep will retry it.")
        }
    }
}
