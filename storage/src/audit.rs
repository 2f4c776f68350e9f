//! The append-only audit log: who did what to which record, with the before and after.
//! The application role may insert and read `audit_log`, never update or delete it.

use serde_json::Value;

use crate::{Result, TenantTx};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    ApiKey(flywheel_contracts::ids::ApiKeyId),
    User(flywheel_contracts::ids::UserId),
    /// The platform itself (schedulers, maintenance).
    System,
    /// An agent run.
    Agent(String),
    /// Someone at the node's command line.
    Operator(String),
}

impl Actor {
    fn parts(&self) -> (String, &'static str) {
        match self {
            Actor::ApiKey(id) => (id.to_string(), "api_key"),
            Actor::User(id) => (id.to_string(), "user"),
            Actor::System => ("system".to_owned(), "system"),
            Actor::Agent(name) => (name.clone(), "agent"),
            Actor::Operator(name) => (name.clone(), "operator"),
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEntry {
    pub actor: String,
    pub actor_kind: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn record(
    tx: &mut TenantTx,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<()> {
    let (actor, kind) = actor.parts();
    let tenant = tx.tenant_id();
    sqlx::query(
        "insert into audit_log (tenant_id, id, actor, actor_kind, action, target_type, target_id, before, after)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(tenant.as_uuid())
    .bind(uuid::Uuid::now_v7())
    .bind(actor)
    .bind(kind)
    .bind(action)
    .bind(target_type)
    .bind(target_id)
    .bind(before)
    .bind(after)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The newest entries first.
pub async fn recent(tx: &mut TenantTx, limit: u32) -> Result<Vec<AuditEntry>> {
    let tenant = tx.tenant_id();
    Ok(sqlx::query_as(
        "select actor, actor_kind, action, target_type, target_id, before, after, created_at
           from audit_log where tenant_id = $1 order by created_at desc, id desc limit $2",
    )
    .bind(tenant.as_uuid())
    .bind(i64::from(limit))
    .fetch_all(tx.conn())
    .await?)
}
