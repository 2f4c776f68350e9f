//! Tenants: creation (a pre-tenant path), resolution by slug, and a tenant reading its own row.

use chrono::{DateTime, Utc};
use flywheel_contracts::api::tenant::{Tenant, TenantCreated, TenantStatus};
use flywheel_contracts::{Role, Slug, TenantId};
use uuid::Uuid;

use crate::api_keys::NewKey;
use crate::{Database, Result, StorageError, TenantTx};

impl Database {
    /// Creates a tenant with its first owner API key, through `auth_create_tenant` (a
    /// SECURITY DEFINER function: the application role cannot insert tenants itself). The plain
    /// key is in the answer and nowhere else. A taken slug is `Conflict { field: "slug" }`.
    pub async fn create_tenant(&self, name: &str, slug: &Slug, actor: &str) -> Result<TenantCreated> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(StorageError::Invalid {
                field: "name".into(),
                message: "name must be 1-200 characters".into(),
            });
        }
        let key = NewKey::generate();
        let id: Uuid = sqlx::query_scalar("select auth_create_tenant($1, $2, $3, $4, $5, $6)")
            .bind(name)
            .bind(slug.as_str())
            .bind("owner key (created with the tenant)")
            .bind(&key.prefix)
            .bind(key.hash())
            .bind(actor)
            .fetch_one(self.pool())
            .await?;
        let tenant = TenantId::from_uuid(id);
        // The tracking settings (and write key) come with the tenant; `tracking::get` creates
        // them for a tenant that lacks them, so a crash between the two heals itself.
        let mut tx = self.begin(tenant).await?;
        let write_key = crate::tracking::get(&mut tx).await?.write_key;
        tx.commit().await?;
        Ok(TenantCreated {
            tenant_id: TenantId::from_uuid(id),
            name: name.to_owned(),
            slug: slug.clone(),
            api_key: key.plain.expose().clone(),
            api_key_prefix: key.prefix.clone(),
            role: Role::Owner,
            write_key,
        })
    }

    /// The tenant a slug names, unless it is deleted.
    pub async fn tenant_id_by_slug(&self, slug: &Slug) -> Result<Option<TenantId>> {
        let id: Option<Uuid> =
            sqlx::query_scalar("select auth_tenant_by_slug($1)").bind(slug.as_str()).fetch_one(self.pool()).await?;
        Ok(id.map(TenantId::from_uuid))
    }
}

/// A tenant as the admin control plane lists it (across tenants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
}

type SummaryRow = (Uuid, String, String, String, DateTime<Utc>);

fn summary((id, name, slug, status, created_at): SummaryRow) -> Result<TenantSummary> {
    Ok(TenantSummary {
        id: TenantId::from_uuid(id),
        name,
        slug,
        status: crate::row::enum_column("status", &status)?,
        created_at,
    })
}

impl Database {
    /// Every tenant, by id, after `after`, at most `limit` (1–1000). For the admin control
    /// plane only: the caller has checked the admin token.
    pub async fn admin_tenants(&self, after: Option<TenantId>, limit: u32) -> Result<Vec<TenantSummary>> {
        let rows: Vec<SummaryRow> = sqlx::query_as("select * from admin_tenants($1, $2)")
            .bind(after.map(|t| t.as_uuid()))
            .bind(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(summary).collect()
    }

    /// Suspends (`active = false`) or resumes a tenant. `NotFound` for an unknown or deleted
    /// tenant. For the admin control plane only.
    pub async fn admin_set_tenant_active(&self, tenant: TenantId, active: bool) -> Result<TenantSummary> {
        let status = if active { "active" } else { "suspended" };
        let row: Option<SummaryRow> = sqlx::query_as("select * from admin_set_tenant_status($1, $2)")
            .bind(tenant.as_uuid())
            .bind(status)
            .fetch_optional(self.pool())
            .await?;
        summary(row.ok_or(StorageError::NotFound)?)
    }
}

/// The transaction's own tenant.
pub async fn current(tx: &mut TenantTx) -> Result<Tenant> {
    let tenant = tx.tenant_id();
    let row: (Uuid, String, String, String, DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("select id, name, slug, status, created_at, updated_at from tenants where id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(tx.conn())
            .await?;
    let (id, name, slug, status, created_at, updated_at) = row;
    let write_key = crate::tracking::get(tx).await?.write_key;
    Ok(Tenant {
        id: TenantId::from_uuid(id),
        name,
        slug: Slug::parse(&slug).map_err(|e| StorageError::Internal(format!("stored slug {slug:?}: {e}")))?,
        status: match status.as_str() {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            _ => TenantStatus::Deleted,
        },
        write_key,
        created_at,
        updated_at,
    })
}
