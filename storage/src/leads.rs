//! `leads` rows: people who gave an email or a phone number. A lead's email is unique within
//! its tenant (stored lower-cased), so the same person is one lead however they came in.

use chrono::{DateTime, Utc};
use flywheel_contracts::api::lead::{Lead, LeadCreate, LeadStatus, LeadUpdate};
use flywheel_contracts::ids::{AffiliateId, CampaignId, LandingPageId, LeadId};
use flywheel_contracts::{Email, Phone, TenantId};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::row::{enum_column, object};
use crate::{ListQuery, Result, StorageError, TenantTx};

const COLUMNS: &str = "id, tenant_id, email, phone, name, source, status, attributes, landing_page_id, campaign_id,
    affiliate_id, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    email: Option<String>,
    phone: Option<String>,
    name: Option<String>,
    source: Option<String>,
    status: String,
    attributes: serde_json::Value,
    landing_page_id: Option<Uuid>,
    campaign_id: Option<Uuid>,
    affiliate_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_contract(self) -> Result<Lead> {
        let stored =
            |what: &str, e: flywheel_contracts::InvalidValue| StorageError::Internal(format!("stored {what}: {e}"));
        Ok(Lead {
            id: LeadId::from_uuid(self.id),
            tenant_id: TenantId::from_uuid(self.tenant_id),
            email: self.email.map(|e| Email::parse(&e)).transpose().map_err(|e| stored("email", e))?,
            phone: self.phone.map(|p| Phone::parse(&p)).transpose().map_err(|e| stored("phone", e))?,
            name: self.name,
            source: self.source,
            status: enum_column("leads.status", &self.status)?,
            attributes: object("attributes", self.attributes)?,
            landing_page_id: self.landing_page_id.map(LandingPageId::from_uuid),
            campaign_id: self.campaign_id.map(CampaignId::from_uuid),
            affiliate_id: self.affiliate_id.map(AffiliateId::from_uuid),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub async fn create(tx: &mut TenantTx, input: &LeadCreate) -> Result<Lead> {
    if input.email.is_none() && input.phone.is_none() {
        return Err(StorageError::Invalid {
            field: "email".into(),
            message: "a lead needs an email or a phone".into(),
        });
    }
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into leads (tenant_id, id, email, phone, name, source, status, attributes, landing_page_id,
                            campaign_id, affiliate_id)
         values ($1, $2, $3, $4, $5, $6, coalesce($7, 'new'), coalesce($8, '{{}}'::jsonb), $9, $10, $11)
         returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(input.email.as_ref().map(Email::as_str))
    .bind(input.phone.as_ref().map(Phone::as_str))
    .bind(input.name.as_deref())
    .bind(input.source.as_deref())
    .bind(input.status.map(|s| s.as_str()))
    .bind(input.attributes.clone().map(serde_json::Value::Object))
    .bind(input.landing_page_id.map(|i| i.as_uuid()))
    .bind(input.campaign_id.map(|i| i.as_uuid()))
    .bind(input.affiliate_id.map(|i| i.as_uuid()))
    .fetch_one(tx.conn())
    .await?;
    row.into_contract()
}

pub async fn get(tx: &mut TenantTx, id: LeadId) -> Result<Lead> {
    let tenant = tx.tenant_id();
    let row: Row =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from leads where tenant_id = $1 and id = $2")))
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .fetch_one(tx.conn())
            .await?;
    row.into_contract()
}

/// Filters of the lead list.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub status: Option<LeadStatus>,
    pub email: Option<Email>,
}

pub async fn list(tx: &mut TenantTx, filter: &LeadFilter, query: ListQuery) -> Result<(Vec<Lead>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from leads
          where tenant_id = $1 and ($2::uuid is null or id < $2) and ($3::text is null or status = $3)
            and ($4::text is null or email = $4)
          order by id desc limit $5"
    )))
    .bind(tenant.as_uuid())
    .bind(query.after)
    .bind(filter.status.map(|s| s.as_str()))
    .bind(filter.email.as_ref().map(Email::as_str))
    .bind(query.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    let (rows, next) = query.page(rows, |r| r.id);
    Ok((rows.into_iter().map(Row::into_contract).collect::<Result<_>>()?, next))
}

pub async fn update(tx: &mut TenantTx, id: LeadId, input: &LeadUpdate) -> Result<Lead> {
    let tenant = tx.tenant_id();
    let mut q = QueryBuilder::<Postgres>::new("update leads set updated_at = now()");
    if let Some(change) = input.email.clone().into_change() {
        q.push(", email = ").push_bind(change.map(String::from));
    }
    if let Some(change) = input.phone.clone().into_change() {
        q.push(", phone = ").push_bind(change.map(String::from));
    }
    if let Some(change) = input.name.clone().into_change() {
        q.push(", name = ").push_bind(change);
    }
    if let Some(change) = input.source.clone().into_change() {
        q.push(", source = ").push_bind(change);
    }
    if let Some(v) = input.status {
        q.push(", status = ").push_bind(v.as_str());
    }
    if let Some(v) = &input.attributes {
        q.push(", attributes = ").push_bind(serde_json::Value::Object(v.clone()));
    }
    if let Some(change) = input.landing_page_id.clone().into_change() {
        q.push(", landing_page_id = ").push_bind(change.map(|i| i.as_uuid()));
    }
    if let Some(change) = input.campaign_id.clone().into_change() {
        q.push(", campaign_id = ").push_bind(change.map(|i| i.as_uuid()));
    }
    if let Some(change) = input.affiliate_id.clone().into_change() {
        q.push(", affiliate_id = ").push_bind(change.map(|i| i.as_uuid()));
    }
    q.push(" where tenant_id = ").push_bind(tenant.as_uuid());
    q.push(" and id = ").push_bind(id.as_uuid());
    q.push(format_args!(" returning {COLUMNS}"));
    let row: Row = q.build_query_as().fetch_one(tx.conn()).await?;
    row.into_contract()
}
