//! A tenant's tracking settings: the public write key, allowed origins, cookieless mode and rate
//! limit; and resolving a write key to its tenant before any tenant is known (through the
//! SECURITY DEFINER function `auth_tracking_by_key`).

use chrono::{DateTime, Utc};
use flywheel_contracts::TenantId;
use flywheel_contracts::api::tenant::TenantStatus;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::row::enum_column;
use crate::{Database, Result, TenantTx};

/// What the edge needs to know about a write key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteKeyInfo {
    pub tenant: TenantId,
    pub status: TenantStatus,
    pub allowed_origins: Vec<String>,
    pub cookieless: bool,
    pub events_per_second: Option<u32>,
}

/// A tenant's settings as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub write_key: String,
    pub allowed_origins: Vec<String>,
    pub cookieless: bool,
    pub events_per_second: Option<u32>,
    pub key_rotated_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A change to the settings; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub allowed_origins: Option<Vec<String>>,
    pub cookieless: Option<bool>,
    pub events_per_second: Option<Option<u32>>,
}

pub(crate) fn new_write_key() -> String {
    format!("fwp_{:032x}", rand::random::<u128>())
}

/// tenant, status, allowed origins, cookieless, events per second.
type KeyRow = (Uuid, String, Vec<String>, bool, Option<i32>);

impl Database {
    /// The tenant of a write key, `None` for an unknown one.
    pub async fn tracking_by_key(&self, write_key: &str) -> Result<Option<WriteKeyInfo>> {
        let row: Option<KeyRow> = sqlx::query_as("select * from auth_tracking_by_key($1)")
            .bind(write_key)
            .fetch_optional(self.pool())
            .await?;
        row.map(|(tenant, status, allowed_origins, cookieless, eps)| {
            Ok(WriteKeyInfo {
                tenant: TenantId::from_uuid(tenant),
                status: enum_column("status", &status)?,
                allowed_origins,
                cookieless,
                events_per_second: eps.and_then(|n| u32::try_from(n).ok()),
            })
        })
        .transpose()
    }
}

type Row = (String, Vec<String>, bool, Option<i32>, Option<DateTime<Utc>>, DateTime<Utc>);
const COLUMNS: &str = "write_key, allowed_origins, cookieless, events_per_second, key_rotated_at, updated_at";

fn settings((write_key, allowed_origins, cookieless, eps, key_rotated_at, updated_at): Row) -> Settings {
    Settings {
        write_key,
        allowed_origins,
        cookieless,
        events_per_second: eps.and_then(|n| u32::try_from(n).ok()),
        key_rotated_at,
        updated_at,
    }
}

/// The tenant's settings, created with a fresh key if the tenant has none yet.
pub async fn get(tx: &mut TenantTx) -> Result<Settings> {
    let tenant = tx.tenant_id();
    // One round trip, and no write on the read path unless the row is missing.
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with created as (
           insert into tracking_settings (tenant_id, write_key)
           select $1, $2 where not exists (select from tracking_settings where tenant_id = $1)
           on conflict (tenant_id) do nothing
           returning {COLUMNS})
         select {COLUMNS} from created
         union all
         select {COLUMNS} from tracking_settings where tenant_id = $1"
    )))
    .bind(tenant.as_uuid())
    .bind(new_write_key())
    .fetch_optional(tx.conn())
    .await?;
    let row = match row {
        Some(row) => row,
        // Another transaction created the row after this statement's snapshot: read it now.
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from tracking_settings where tenant_id = $1")))
                .bind(tenant.as_uuid())
                .fetch_one(tx.conn())
                .await?
        }
    };
    Ok(settings(row))
}

pub async fn update(tx: &mut TenantTx, change: &SettingsChange, actor: &Actor) -> Result<Settings> {
    let before = get(tx).await?;
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update tracking_settings
            set allowed_origins = coalesce($2, allowed_origins),
                cookieless = coalesce($3, cookieless),
                events_per_second = case when $4 then $5 else events_per_second end
          where tenant_id = $1
      returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(change.allowed_origins.as_ref())
    .bind(change.cookieless)
    .bind(change.events_per_second.is_some())
    .bind(change.events_per_second.flatten().map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
    .fetch_one(tx.conn())
    .await?;
    let after = settings(row);
    audit::record(
        tx,
        actor,
        "tracking.update",
        "tracking_settings",
        &tenant.to_string(),
        Some(serde_json::json!({"allowed_origins": before.allowed_origins, "cookieless": before.cookieless,
                                "events_per_second": before.events_per_second})),
        Some(serde_json::json!({"allowed_origins": after.allowed_origins, "cookieless": after.cookieless,
                                "events_per_second": after.events_per_second})),
    )
    .await?;
    Ok(after)
}

/// Replaces the write key; the old one stops working (at once on this node, within the edge's
/// key cache lifetime on others).
pub async fn rotate_key(tx: &mut TenantTx, actor: &Actor) -> Result<Settings> {
    get(tx).await?;
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update tracking_settings set write_key = $2, key_rotated_at = now() where tenant_id = $1 returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(new_write_key())
    .fetch_one(tx.conn())
    .await?;
    let after = settings(row);
    audit::record(tx, actor, "tracking.rotate_key", "tracking_settings", &tenant.to_string(), None, None).await?;
    Ok(after)
}
