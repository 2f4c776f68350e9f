//! The outbox: external effects (an email, an ad-budget change, a payout, a write to an external
//! vector store) recorded in the same transaction as the step that decided them, with an
//! idempotency key, and performed afterwards by a relay at least once. The receiving side
//! deduplicates by the key, so each effect happens once.

use std::time::Duration;

use flywheel_contracts::TenantId;
use uuid::Uuid;

use crate::{Database, Result, TenantTx};

/// An effect to perform.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub id: Uuid,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: serde_json::Value,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// Records an effect in the caller's transaction. A second effect with the same idempotency key
/// is ignored (returns false): a replayed step cannot enqueue its effect twice.
pub async fn enqueue(
    tx: &mut TenantTx,
    kind: &str,
    idempotency_key: &str,
    payload: &serde_json::Value,
) -> Result<bool> {
    let tenant = tx.tenant_id();
    let inserted = sqlx::query(
        "insert into outbox (tenant_id, id, kind, idempotency_key, payload) values ($1, $2, $3, $4, $5)
         on conflict (tenant_id, idempotency_key) do nothing",
    )
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(kind)
    .bind(idempotency_key)
    .bind(payload)
    .execute(tx.conn())
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Takes up to `limit` due effects of the transaction's tenant for `lease`: other relays skip
/// them meanwhile, and if this one dies they become due again when the lease ends.
pub async fn claim(tx: &mut TenantTx, limit: u32, lease: Duration) -> Result<Vec<Effect>> {
    let tenant = tx.tenant_id();
    let rows: Vec<(Uuid, String, String, serde_json::Value, i32)> = sqlx::query_as(
        "update outbox o set status = 'in_flight', attempts = o.attempts + 1,
                available_at = now() + make_interval(secs => $3)
          where o.tenant_id = $1 and o.id in (
                select id from outbox
                 where tenant_id = $1 and status in ('pending', 'in_flight') and available_at <= now()
                 order by available_at limit $2 for update skip locked)
         returning o.id, o.kind, o.idempotency_key, o.payload, o.attempts",
    )
    .bind(tenant.as_uuid())
    .bind(i64::from(limit))
    .bind(lease.as_secs_f64())
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, idempotency_key, payload, attempts)| Effect { id, kind, idempotency_key, payload, attempts })
        .collect())
}

pub async fn complete(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let tenant = tx.tenant_id();
    sqlx::query(
        "update outbox set status = 'done', done_at = now(), last_error = null where tenant_id = $1 and id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A failed attempt: due again after `delay`, or `failed` for good when `give_up`.
pub async fn retry_later(tx: &mut TenantTx, id: Uuid, error: &str, delay: Duration, give_up: bool) -> Result<()> {
    let tenant = tx.tenant_id();
    sqlx::query(
        "update outbox set status = case when $5 then 'failed' else 'pending' end, last_error = $3,
                available_at = now() + make_interval(secs => $4)
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(error)
    .bind(delay.as_secs_f64())
    .bind(give_up)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Counts of the tenant's effects by status (`pending`, `in_flight`, `done`, `failed`).
pub async fn counts(tx: &mut TenantTx) -> Result<Vec<(String, i64)>> {
    let tenant = tx.tenant_id();
    Ok(sqlx::query_as("select status, count(*) from outbox where tenant_id = $1 group by status order by status")
        .bind(tenant.as_uuid())
        .fetch_all(tx.conn())
        .await?)
}

impl Database {
    /// Tenants with effects due, through `outbox_due_tenants` (a pre-tenant function: ids only).
    pub async fn tenants_with_due_effects(&self) -> Result<Vec<TenantId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar("select outbox_due_tenants()").fetch_all(self.pool()).await?;
        Ok(ids.into_iter().map(TenantId::from_uuid).collect())
    }
}
