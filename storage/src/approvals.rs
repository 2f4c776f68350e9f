//! `approvals` and `approval_policies`: what waits for a human, what they decided, and the
//! per-tenant rules that decide some kinds automatically. Decisions and policy changes are
//! audited.

use chrono::{DateTime, Utc};
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::approval::{Approval, ApprovalKind, ApprovalStatus};
use flywheel_contracts::ids::{ApprovalId, RunId};
use flywheel_contracts::{Role, TenantId};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::row::{enum_column, object};
use crate::{ListQuery, Result, StorageError, TenantTx};

/// A pending approval past its expiry reads as `expired` (it stays `pending` in the table, so
/// that an owner can still force it); one withdrawn with its run is `expired` for good.
const STATUS: &str = "case when status = 'pending' and expires_at <= now() then 'expired' else status end";

const COLUMNS: &str = "id, tenant_id, run_id, step_name, kind,
    case when status = 'pending' and expires_at <= now() then 'expired' else status end as status,
    artifact, decided_artifact, allowed_roles, expires_at, decided_by, decided_at, reason, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    run_id: Option<Uuid>,
    step_name: Option<String>,
    kind: String,
    status: String,
    artifact: serde_json::Value,
    decided_artifact: Option<serde_json::Value>,
    allowed_roles: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_contract(self) -> Result<Approval> {
        Ok(Approval {
            id: ApprovalId::from_uuid(self.id),
            tenant_id: TenantId::from_uuid(self.tenant_id),
            run_id: self.run_id.map(RunId::from_uuid),
            step_name: self.step_name,
            kind: enum_column("approvals.kind", &self.kind)?,
            status: enum_column("approvals.status", &self.status)?,
            artifact: object("artifact", self.artifact)?,
            decided_artifact: self.decided_artifact.map(|a| object("decided_artifact", a)).transpose()?,
            allowed_roles: self
                .allowed_roles
                .iter()
                .map(|r| r.parse::<Role>().map_err(|e| StorageError::Internal(format!("approvals.allowed_roles: {e}"))))
                .collect::<Result<_>>()?,
            expires_at: self.expires_at,
            decided_by: self.decided_by,
            decided_at: self.decided_at,
            reason: self.reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A new approval request.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub run_id: RunId,
    pub step_name: &'a str,
    pub kind: ApprovalKind,
    pub artifact: &'a JsonObject,
    pub allowed_roles: &'a [Role],
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn create(tx: &mut TenantTx, new: &NewApproval<'_>) -> Result<Approval> {
    let tenant = tx.tenant_id();
    let roles: Vec<&str> = new.allowed_roles.iter().map(Role::as_str).collect();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into approvals (tenant_id, id, run_id, step_name, kind, artifact, allowed_roles, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(new.run_id.as_uuid())
    .bind(new.step_name)
    .bind(new.kind.as_str())
    .bind(serde_json::Value::Object(new.artifact.clone()))
    .bind(roles)
    .bind(new.expires_at)
    .fetch_one(tx.conn())
    .await?;
    row.into_contract()
}

pub async fn get(tx: &mut TenantTx, id: ApprovalId) -> Result<Approval> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from approvals where tenant_id = $1 and id = $2"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    row.into_contract()
}

/// Like [`get`], holding the row lock: two deciders of one approval serialise here.
pub async fn lock(tx: &mut TenantTx, id: ApprovalId) -> Result<Approval> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from approvals where tenant_id = $1 and id = $2 for update"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    row.into_contract()
}

/// The pending approval of a run's step, if any (a replayed approval step reuses it).
pub async fn pending_for_step(tx: &mut TenantTx, run: RunId, step_name: &str) -> Result<Option<Approval>> {
    let tenant = tx.tenant_id();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from approvals
          where tenant_id = $1 and run_id = $2 and step_name = $3 and status = 'pending'"
    )))
    .bind(tenant.as_uuid())
    .bind(run.as_uuid())
    .bind(step_name)
    .fetch_optional(tx.conn())
    .await?;
    row.map(Row::into_contract).transpose()
}

pub async fn list(
    tx: &mut TenantTx,
    status: Option<ApprovalStatus>,
    query: ListQuery,
) -> Result<(Vec<Approval>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from approvals
          where tenant_id = $1 and ($2::uuid is null or id < $2) and ($3::text is null or {STATUS} = $3)
          order by id desc limit $4"
    )))
    .bind(tenant.as_uuid())
    .bind(query.after)
    .bind(status.map(|s| s.as_str()))
    .bind(query.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    let (rows, next) = query.page(rows, |r| r.id);
    Ok((rows.into_iter().map(Row::into_contract).collect::<Result<_>>()?, next))
}

/// A decision to record.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    pub status: ApprovalStatus,
    /// `approve`, `reject`, `edit`, `force` or `auto` (a policy).
    pub decision: &'a str,
    pub artifact: Option<&'a JsonObject>,
    pub reason: Option<&'a str>,
}

/// Records a decision on a pending approval and audits it (who, when, before, after).
pub async fn decide(tx: &mut TenantTx, id: ApprovalId, decided: &Decided<'_>, actor: &Actor) -> Result<Approval> {
    let before = lock(tx, id).await?;
    let forcing_expired = before.status == ApprovalStatus::Expired && decided.status == ApprovalStatus::Forced;
    if before.status != ApprovalStatus::Pending && !forcing_expired {
        return Err(StorageError::Conflict { field: "status".into() });
    }
    let tenant = tx.tenant_id();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update approvals
            set status = $3, decision = $4, decided_artifact = $5, reason = $6, decided_by = $7, decided_at = now()
          where tenant_id = $1 and id = $2 and status = 'pending' returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .bind(decided.status.as_str())
    .bind(decided.decision)
    .bind(decided.artifact.map(|a| serde_json::Value::Object(a.clone())))
    .bind(decided.reason)
    .bind(actor_label(actor))
    .fetch_optional(tx.conn())
    .await?;
    // No row: withdrawn (its run was cancelled) — nothing left to decide.
    let after = row.ok_or(StorageError::Conflict { field: "status".into() })?.into_contract()?;
    audit::record(
        tx,
        actor,
        &format!("approval.{}", decided.decision),
        "approval",
        &id.to_string(),
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await?;
    Ok(after)
}

fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::ApiKey(id) => format!("api_key:{id}"),
        Actor::User(id) => format!("user:{id}"),
        Actor::System => "system".to_owned(),
        Actor::Agent(name) => format!("agent:{name}"),
        Actor::Operator(name) => format!("operator:{name}"),
    }
}

/// Withdraws a run's pending approvals (the run was cancelled): they become `expired` with
/// `reason`, and the change is audited. Returns how many there were.
pub async fn expire_for_run(tx: &mut TenantTx, run: RunId, reason: &str, actor: &Actor) -> Result<u64> {
    let tenant = tx.tenant_id();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "update approvals set status = 'expired', reason = $3
          where tenant_id = $1 and run_id = $2 and status = 'pending' returning id",
    )
    .bind(tenant.as_uuid())
    .bind(run.as_uuid())
    .bind(reason)
    .fetch_all(tx.conn())
    .await?;
    for id in &ids {
        audit::record(
            tx,
            actor,
            "approval.withdraw",
            "approval",
            &id.to_string(),
            None,
            Some(serde_json::json!({"reason": reason})),
        )
        .await?;
    }
    Ok(ids.len() as u64)
}

/// The tenant's enabled policy rule for `kind`, if any.
pub async fn policy(tx: &mut TenantTx, kind: ApprovalKind) -> Result<Option<JsonObject>> {
    let tenant = tx.tenant_id();
    let rule: Option<serde_json::Value> =
        sqlx::query_scalar("select rule from approval_policies where tenant_id = $1 and kind = $2 and enabled")
            .bind(tenant.as_uuid())
            .bind(kind.as_str())
            .fetch_optional(tx.conn())
            .await?;
    rule.map(|r| object("rule", r)).transpose()
}

/// The tenant's policy for `kind` as stored: rule, enabled, last change.
pub async fn policy_record(tx: &mut TenantTx, kind: ApprovalKind) -> Result<Option<(JsonObject, bool, DateTime<Utc>)>> {
    let tenant = tx.tenant_id();
    let row: Option<(serde_json::Value, bool, DateTime<Utc>)> =
        sqlx::query_as("select rule, enabled, updated_at from approval_policies where tenant_id = $1 and kind = $2")
            .bind(tenant.as_uuid())
            .bind(kind.as_str())
            .fetch_optional(tx.conn())
            .await?;
    row.map(|(rule, enabled, at)| Ok((object("rule", rule)?, enabled, at))).transpose()
}

/// Sets (or, with `None`, removes) the tenant's policy for `kind`; audited with before and after.
pub async fn set_policy(tx: &mut TenantTx, kind: ApprovalKind, rule: Option<&JsonObject>, actor: &Actor) -> Result<()> {
    let before = policy(tx, kind).await?;
    let tenant = tx.tenant_id();
    match rule {
        Some(rule) => {
            sqlx::query(
                "insert into approval_policies (tenant_id, id, kind, rule) values ($1, $2, $3, $4)
                 on conflict (tenant_id, kind) do update set rule = excluded.rule, enabled = true",
            )
            .bind(tenant.as_uuid())
            .bind(Uuid::now_v7())
            .bind(kind.as_str())
            .bind(serde_json::Value::Object(rule.clone()))
            .execute(tx.conn())
            .await?;
        }
        None => {
            sqlx::query("delete from approval_policies where tenant_id = $1 and kind = $2")
                .bind(tenant.as_uuid())
                .bind(kind.as_str())
                .execute(tx.conn())
                .await?;
        }
    }
    audit::record(
        tx,
        actor,
        "approval_policy.set",
        "approval_policy",
        kind.as_str(),
        before.map(serde_json::Value::Object),
        rule.map(|r| serde_json::Value::Object(r.clone())),
    )
    .await
}
