//! `agent_runs` and `run_steps`: durable runs. A step's output, its domain writes and the run's
//! cursor are committed in one transaction (the checkpoint); a step's idempotency key makes a
//! replayed step a no-op.

use chrono::{DateTime, Utc};
use flywheel_contracts::TenantId;
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::run::{AgentName, Run, RunDetail, RunStatus, RunStep};
use flywheel_contracts::ids::{RunId, RunStepId};
use uuid::Uuid;

use crate::row::{enum_column, object};
use crate::{Database, ListQuery, Result, StorageError, TenantTx};

const COLUMNS: &str = "id, tenant_id, agent, status, input, cursor, version, error, requested_by, started_at, finished_at, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    agent: String,
    status: String,
    input: serde_json::Value,
    cursor: i32,
    version: i64,
    error: Option<String>,
    requested_by: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A run with the version its checkpoints are fenced on.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub run: Run,
    /// Bumped by every checkpoint and status change; part of each step's idempotency key.
    pub version: i64,
}

impl Row {
    fn into_state(self) -> Result<RunState> {
        Ok(RunState {
            version: self.version,
            run: Run {
                id: RunId::from_uuid(self.id),
                tenant_id: TenantId::from_uuid(self.tenant_id),
                agent: enum_column("agent_runs.agent", &self.agent)?,
                status: enum_column("agent_runs.status", &self.status)?,
                input: object("input", self.input)?,
                cursor: self.cursor,
                error: self.error,
                requested_by: self.requested_by,
                started_at: self.started_at,
                finished_at: self.finished_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
        })
    }
}

pub async fn create(tx: &mut TenantTx, agent: AgentName, input: &JsonObject, requested_by: &str) -> Result<Run> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into agent_runs (tenant_id, id, agent, status, input, requested_by)
         values ($1, $2, $3, 'queued', $4, $5) returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(agent.as_str())
    .bind(serde_json::Value::Object(input.clone()))
    .bind(requested_by)
    .fetch_one(tx.conn())
    .await?;
    Ok(row.into_state()?.run)
}

pub async fn get(tx: &mut TenantTx, id: RunId) -> Result<RunState> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from agent_runs where tenant_id = $1 and id = $2"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    row.into_state()
}

/// Like [`get`], holding the run's row lock until the transaction ends: decisions, pauses and
/// checkpoints on one run serialise here.
pub async fn lock(tx: &mut TenantTx, id: RunId) -> Result<RunState> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from agent_runs where tenant_id = $1 and id = $2 for update"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    row.into_state()
}

#[derive(sqlx::FromRow)]
struct StepRow {
    id: Uuid,
    name: String,
    attempt: i32,
    status: String,
    output: Option<serde_json::Value>,
    error: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

pub async fn steps(tx: &mut TenantTx, id: RunId) -> Result<Vec<RunStep>> {
    let tenant = tx.tenant_id();
    let rows: Vec<StepRow> = sqlx::query_as(
        "select id, name, attempt, status, output, error, started_at, finished_at
           from run_steps where tenant_id = $1 and run_id = $2 order by created_at, id",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(RunStep {
                id: RunStepId::from_uuid(r.id),
                name: r.name,
                attempt: r.attempt,
                status: enum_column("run_steps.status", &r.status)?,
                output: r.output,
                error: r.error,
                started_at: r.started_at,
                finished_at: r.finished_at,
            })
        })
        .collect()
}

pub async fn detail(tx: &mut TenantTx, id: RunId) -> Result<RunDetail> {
    let state = get(tx, id).await?;
    let steps = steps(tx, id).await?;
    Ok(RunDetail { run: state.run, steps })
}

/// The outputs of the run's succeeded steps, by step name; a step run again (after a
/// rejection loops back) is represented by its latest output.
pub async fn outputs(tx: &mut TenantTx, id: RunId) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    for step in steps(tx, id).await? {
        if step.status == flywheel_contracts::api::run::StepStatus::Succeeded
            && let Some(output) = step.output
        {
            out.insert(step.name, output);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub agent: Option<AgentName>,
    pub status: Option<RunStatus>,
}

pub async fn list(tx: &mut TenantTx, filter: &RunFilter, query: ListQuery) -> Result<(Vec<Run>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from agent_runs
          where tenant_id = $1 and ($2::uuid is null or id < $2) and ($3::text is null or agent = $3)
            and ($4::text is null or status = $4)
          order by id desc limit $5"
    )))
    .bind(tenant.as_uuid())
    .bind(query.after)
    .bind(filter.agent.map(|a| a.as_str()))
    .bind(filter.status.map(|s| s.as_str()))
    .bind(query.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    let (rows, next) = query.page(rows, |r| r.id);
    Ok((rows.into_iter().map(|r| r.into_state().map(|s| s.run)).collect::<Result<_>>()?, next))
}

/// Runs a node should (re)start for this tenant: queued or running.
pub async fn unfinished(tx: &mut TenantTx) -> Result<Vec<RunState>> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from agent_runs where tenant_id = $1 and status in ('queued', 'running') order by id"
    )))
    .bind(tenant.as_uuid())
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Row::into_state).collect()
}

/// Sets a run's status (and `error`), stamping `started_at` on the first start and
/// `finished_at` when it ends. Bumps the version.
pub async fn set_status(tx: &mut TenantTx, id: RunId, status: RunStatus, error: Option<&str>) -> Result<RunState> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update agent_runs
            set status = $3, error = $4, version = version + 1,
                started_at = case when $3 = 'running' then coalesce(started_at, now()) else started_at end,
                finished_at = case when $3 in ('succeeded', 'failed', 'cancelled') then now() else null end
          where tenant_id = $1 and id = $2 returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .bind(status.as_str())
    .bind(error)
    .fetch_one(tx.conn())
    .await?;
    row.into_state()
}

/// Moves the cursor without committing a step (a rejection looping back to regenerate).
pub async fn rewind(tx: &mut TenantTx, id: RunId, cursor: i32) -> Result<()> {
    let tenant = tx.tenant_id();
    sqlx::query("update agent_runs set cursor = $3, version = version + 1 where tenant_id = $1 and id = $2")
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .bind(cursor)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// A step to record in a checkpoint.
#[derive(Debug, Clone)]
pub struct StepCommit<'a> {
    pub name: &'a str,
    pub attempt: i32,
    pub idempotency_key: &'a str,
    pub output: &'a serde_json::Value,
    pub started_at: DateTime<Utc>,
    /// The shard lease the committing node holds, checked in the same transaction; `None` for
    /// a step committed by a human decision through the API (fenced by the cursor alone).
    pub fence: Option<&'a Fence>,
}

/// The lease under which a node executes a tenant's runs: its shard, the node and the epoch it
/// acquired the lease at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub node: String,
    pub shard: i32,
    pub epoch: i64,
}

/// Checks that `fence` still holds (same owner, same epoch, not expired by the database's
/// clock) and share-locks the lease row until the transaction ends, so the lease cannot change
/// hands before this transaction commits. `Conflict { field: "lease" }` when it does not hold:
/// the caller is a stale owner and must stop.
pub async fn check_fence(tx: &mut TenantTx, fence: &Fence) -> Result<()> {
    let held: Option<i32> = sqlx::query_scalar(
        "select shard from shard_leases
          where shard = $1 and owner_node = $2 and epoch = $3 and expires_at > clock_timestamp()
          for share",
    )
    .bind(fence.shard)
    .bind(&fence.node)
    .bind(fence.epoch)
    .fetch_optional(tx.conn())
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StorageError::Conflict { field: "lease".into() }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// A step with this idempotency key was committed before (a replay after a crash): nothing
    /// was written, and the caller must not apply the step's effects again.
    AlreadyCommitted,
}

/// The checkpoint: records a succeeded step and moves the cursor from `from_cursor` to
/// `to_cursor`, in the caller's transaction (with the step's domain writes). Fails with
/// `Conflict` if the cursor moved meanwhile (another executor got there first).
pub async fn commit_step(
    tx: &mut TenantTx,
    run: RunId,
    from_cursor: i32,
    to_cursor: i32,
    step: &StepCommit<'_>,
) -> Result<CommitOutcome> {
    if let Some(fence) = step.fence {
        check_fence(tx, fence).await?;
    }
    let tenant = tx.tenant_id();
    // One statement: record the step and move the cursor only if the step was new.
    let (inserted, moved): (i64, i64) = sqlx::query_as(
        "with inserted as (
             insert into run_steps (tenant_id, id, run_id, name, attempt, idempotency_key, status, output, started_at, finished_at,
                                    node_id, lease_epoch)
             values ($1, $2, $3, $4, $5, $6, 'succeeded', $7, $8, now(), $11, $12)
             on conflict (tenant_id, run_id, idempotency_key) do nothing
             returning id),
         moved as (
             update agent_runs set cursor = $10, version = version + 1
              where tenant_id = $1 and id = $3 and cursor = $9 and exists (select from inserted)
             returning id)
         select (select count(*) from inserted), (select count(*) from moved)",
    )
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(run.as_uuid())
    .bind(step.name)
    .bind(step.attempt)
    .bind(step.idempotency_key)
    .bind(step.output)
    .bind(step.started_at)
    .bind(from_cursor)
    .bind(to_cursor)
    .bind(step.fence.map(|f| f.node.as_str()))
    .bind(step.fence.map(|f| f.epoch))
    .fetch_one(tx.conn())
    .await?;
    if inserted == 0 {
        return Ok(CommitOutcome::AlreadyCommitted);
    }
    if moved != 1 {
        // The caller's transaction rolls back with this error, taking the step row with it.
        return Err(StorageError::Conflict { field: "cursor".into() });
    }
    Ok(CommitOutcome::Committed)
}

/// Records a failed attempt of a step (for the run's history; the cursor does not move).
pub async fn record_failure(
    tx: &mut TenantTx,
    run: RunId,
    name: &str,
    attempt: i32,
    key: &str,
    error: &str,
) -> Result<()> {
    let tenant = tx.tenant_id();
    sqlx::query(
        "insert into run_steps (tenant_id, id, run_id, name, attempt, idempotency_key, status, error, finished_at)
         values ($1, $2, $3, $4, $5, $6, 'failed', $7, now())
         on conflict (tenant_id, run_id, idempotency_key) do nothing",
    )
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(run.as_uuid())
    .bind(name)
    .bind(attempt)
    .bind(key)
    .bind(error)
    .execute(tx.conn())
    .await?;
    Ok(())
}

impl Database {
    /// Tenants with queued or running runs, through `runs_unfinished_tenants` (a pre-tenant
    /// function: it returns ids only). A starting node resumes their runs.
    pub async fn tenants_with_unfinished_runs(&self) -> Result<Vec<TenantId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar("select runs_unfinished_tenants()").fetch_all(self.pool()).await?;
        Ok(ids.into_iter().map(TenantId::from_uuid).collect())
    }
}
