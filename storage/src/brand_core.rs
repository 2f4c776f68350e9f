//! `brand_core` rows: a tenant's positioning, tone and guidelines. Every change is audited,
//! since the brand is what a human signs off on.

use chrono::{DateTime, Utc};
use flywheel_contracts::TenantId;
use flywheel_contracts::api::brand_core::{BrandCore, BrandCoreCreate, BrandCoreUpdate};
use flywheel_contracts::ids::BrandCoreId;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::row::{enum_column, object};
use crate::{ListQuery, Result, TenantTx};

const COLUMNS: &str =
    "id, tenant_id, name, positioning, tone, guidelines, status, version, embedding_ref, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    positioning: String,
    tone: String,
    guidelines: serde_json::Value,
    status: String,
    version: i32,
    embedding_ref: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_contract(self) -> Result<BrandCore> {
        Ok(BrandCore {
            id: BrandCoreId::from_uuid(self.id),
            tenant_id: TenantId::from_uuid(self.tenant_id),
            name: self.name,
            positioning: self.positioning,
            tone: self.tone,
            guidelines: object("guidelines", self.guidelines)?,
            status: enum_column("brand_core.status", &self.status)?,
            version: self.version,
            embedding_ref: self.embedding_ref,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub async fn create(tx: &mut TenantTx, input: &BrandCoreCreate, actor: &Actor) -> Result<BrandCore> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into brand_core (tenant_id, id, name, positioning, tone, guidelines, status)
         values ($1, $2, coalesce($3, 'primary'), $4, $5, coalesce($6, '{{}}'::jsonb), coalesce($7, 'draft'))
         returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(input.name.as_deref())
    .bind(&input.positioning)
    .bind(&input.tone)
    .bind(input.guidelines.clone().map(serde_json::Value::Object))
    .bind(input.status.map(|s| s.as_str()))
    .fetch_one(tx.conn())
    .await?;
    let created = row.into_contract()?;
    audit::record(
        tx,
        actor,
        "brand_core.create",
        "brand_core",
        &created.id.to_string(),
        None,
        serde_json::to_value(&created).ok(),
    )
    .await?;
    Ok(created)
}

pub async fn get(tx: &mut TenantTx, id: BrandCoreId) -> Result<BrandCore> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from brand_core where tenant_id = $1 and id = $2"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    row.into_contract()
}

pub async fn list(tx: &mut TenantTx, query: ListQuery) -> Result<(Vec<BrandCore>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from brand_core where tenant_id = $1 and ($2::uuid is null or id < $2)
         order by id desc limit $3"
    )))
    .bind(tenant.as_uuid())
    .bind(query.after)
    .bind(query.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    let (rows, next) = query.page(rows, |r| r.id);
    Ok((rows.into_iter().map(Row::into_contract).collect::<Result<_>>()?, next))
}

/// Applies the fields present in `input` and bumps `version`; audited with before and after.
pub async fn update(tx: &mut TenantTx, id: BrandCoreId, input: &BrandCoreUpdate, actor: &Actor) -> Result<BrandCore> {
    let before = get(tx, id).await?;
    let tenant = tx.tenant_id();
    let mut q = QueryBuilder::<Postgres>::new("update brand_core set version = version + 1");
    if let Some(v) = &input.name {
        q.push(", name = ").push_bind(v.clone());
    }
    if let Some(v) = &input.positioning {
        q.push(", positioning = ").push_bind(v.clone());
    }
    if let Some(v) = &input.tone {
        q.push(", tone = ").push_bind(v.clone());
    }
    if let Some(v) = &input.guidelines {
        q.push(", guidelines = ").push_bind(serde_json::Value::Object(v.clone()));
    }
    if let Some(v) = input.status {
        q.push(", status = ").push_bind(v.as_str());
    }
    q.push(" where tenant_id = ").push_bind(tenant.as_uuid());
    q.push(" and id = ").push_bind(id.as_uuid());
    q.push(format_args!(" returning {COLUMNS}"));
    let row: Row = q.build_query_as().fetch_one(tx.conn()).await?;
    let after = row.into_contract()?;
    audit::record(
        tx,
        actor,
        "brand_core.update",
        "brand_core",
        &id.to_string(),
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await?;
    Ok(after)
}
