//! `personas` rows: the audiences a tenant markets to.

use chrono::{DateTime, Utc};
use flywheel_contracts::TenantId;
use flywheel_contracts::api::persona::{Persona, PersonaCreate, PersonaUpdate};
use flywheel_contracts::ids::PersonaId;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::row::object;
use crate::{ListQuery, Result, TenantTx};

const COLUMNS: &str = "id, tenant_id, name, description, attributes, embedding_ref, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    description: String,
    attributes: serde_json::Value,
    embedding_ref: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_contract(self) -> Result<Persona> {
        Ok(Persona {
            id: PersonaId::from_uuid(self.id),
            tenant_id: TenantId::from_uuid(self.tenant_id),
            name: self.name,
            description: self.description,
            attributes: object("attributes", self.attributes)?,
            embedding_ref: self.embedding_ref,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub async fn create(tx: &mut TenantTx, input: &PersonaCreate) -> Result<Persona> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into personas (tenant_id, id, name, description, attributes)
         values ($1, $2, $3, coalesce($4, ''), coalesce($5, '{{}}'::jsonb))
         returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(&input.name)
    .bind(input.description.as_deref())
    .bind(input.attributes.clone().map(serde_json::Value::Object))
    .fetch_one(tx.conn())
    .await?;
    row.into_contract()
}

pub async fn get(tx: &mut TenantTx, id: PersonaId) -> Result<Persona> {
    let tenant = tx.tenant_id();
    let row: Row =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from personas where tenant_id = $1 and id = $2")))
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .fetch_one(tx.conn())
            .await?;
    row.into_contract()
}

pub async fn list(tx: &mut TenantTx, query: ListQuery) -> Result<(Vec<Persona>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from personas where tenant_id = $1 and ($2::uuid is null or id < $2)
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

pub async fn update(tx: &mut TenantTx, id: PersonaId, input: &PersonaUpdate) -> Result<Persona> {
    let tenant = tx.tenant_id();
    // `updated_at = now()` is also what the trigger sets; it keeps the statement valid when the
    // body changes nothing.
    let mut q = QueryBuilder::<Postgres>::new("update personas set updated_at = now()");
    if let Some(v) = &input.name {
        q.push(", name = ").push_bind(v.clone());
    }
    if let Some(v) = &input.description {
        q.push(", description = ").push_bind(v.clone());
    }
    if let Some(v) = &input.attributes {
        q.push(", attributes = ").push_bind(serde_json::Value::Object(v.clone()));
    }
    q.push(" where tenant_id = ").push_bind(tenant.as_uuid());
    q.push(" and id = ").push_bind(id.as_uuid());
    q.push(format_args!(" returning {COLUMNS}"));
    let row: Row = q.build_query_as().fetch_one(tx.conn()).await?;
    row.into_contract()
}
