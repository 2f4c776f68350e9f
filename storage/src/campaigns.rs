//! `campaigns` rows: strategy, budget (exact money), dates and channels. Creation and every
//! change are audited: a campaign's budget is money at stake.

use chrono::{DateTime, NaiveDate, Utc};
use flywheel_contracts::api::campaign::{Campaign, CampaignCreate, CampaignStatus, CampaignUpdate};
use flywheel_contracts::ids::CampaignId;
use flywheel_contracts::{Money, Patch, TenantId};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::row::{enum_array, enum_column, money, object};
use crate::{ListQuery, Result, StorageError, TenantTx};

const COLUMNS: &str = "id, tenant_id, name, objective, strategy, budget::text as budget, currency::text as currency,
    start_date, end_date, channels, status, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    objective: Option<String>,
    strategy: serde_json::Value,
    budget: Option<String>,
    currency: Option<String>,
    start_date: Option<NaiveDate>,
    end_date: Option<NaiveDate>,
    channels: Vec<String>,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_contract(self) -> Result<Campaign> {
        Ok(Campaign {
            id: CampaignId::from_uuid(self.id),
            tenant_id: TenantId::from_uuid(self.tenant_id),
            name: self.name,
            objective: self.objective,
            strategy: object("strategy", self.strategy)?,
            budget: money("budget", self.budget, self.currency)?,
            start_date: self.start_date,
            end_date: self.end_date,
            channels: enum_array("channels", &self.channels)?,
            status: enum_column("campaigns.status", &self.status)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn check_dates(start: Option<NaiveDate>, end: Option<NaiveDate>) -> Result<()> {
    match (start, end) {
        (Some(s), Some(e)) if e < s => Err(StorageError::Invalid {
            field: "end_date".into(),
            message: format!("end_date {e} is before start_date {s}"),
        }),
        _ => Ok(()),
    }
}

fn channels(list: &[flywheel_contracts::api::campaign::Channel]) -> Vec<String> {
    list.iter().map(|c| c.as_str().to_owned()).collect()
}

pub async fn create(tx: &mut TenantTx, input: &CampaignCreate, actor: &Actor) -> Result<Campaign> {
    check_dates(input.start_date, input.end_date)?;
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into campaigns (tenant_id, id, name, objective, strategy, budget, currency, start_date, end_date,
                                channels, status)
         values ($1, $2, $3, $4, coalesce($5, '{{}}'::jsonb), $6::numeric, $7, $8, $9, coalesce($10, '{{}}'),
                 coalesce($11, 'draft'))
         returning {COLUMNS}"
    )))
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(&input.name)
    .bind(input.objective.as_deref())
    .bind(input.strategy.clone().map(serde_json::Value::Object))
    .bind(input.budget.map(|m| m.amount()))
    .bind(input.budget.map(|m| m.currency.code().to_owned()))
    .bind(input.start_date)
    .bind(input.end_date)
    .bind(input.channels.as_deref().map(channels))
    .bind(input.status.map(|s| s.as_str()))
    .fetch_one(tx.conn())
    .await?;
    let created = row.into_contract()?;
    audit::record(
        tx,
        actor,
        "campaign.create",
        "campaign",
        &created.id.to_string(),
        None,
        serde_json::to_value(&created).ok(),
    )
    .await?;
    Ok(created)
}

pub async fn get(tx: &mut TenantTx, id: CampaignId) -> Result<Campaign> {
    let tenant = tx.tenant_id();
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from campaigns where tenant_id = $1 and id = $2"
    )))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    row.into_contract()
}

pub async fn list(
    tx: &mut TenantTx,
    status: Option<CampaignStatus>,
    query: ListQuery,
) -> Result<(Vec<Campaign>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from campaigns
          where tenant_id = $1 and ($2::uuid is null or id < $2) and ($3::text is null or status = $3)
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

pub async fn update(tx: &mut TenantTx, id: CampaignId, input: &CampaignUpdate, actor: &Actor) -> Result<Campaign> {
    let before = get(tx, id).await?;
    let start = match &input.start_date {
        Patch::Missing => before.start_date,
        Patch::Null => None,
        Patch::Value(d) => Some(*d),
    };
    let end = match &input.end_date {
        Patch::Missing => before.end_date,
        Patch::Null => None,
        Patch::Value(d) => Some(*d),
    };
    check_dates(start, end)?;
    let tenant = tx.tenant_id();
    let mut q = QueryBuilder::<Postgres>::new("update campaigns set updated_at = now()");
    if let Some(v) = &input.name {
        q.push(", name = ").push_bind(v.clone());
    }
    if let Some(change) = input.objective.clone().into_change() {
        q.push(", objective = ").push_bind(change);
    }
    if let Some(v) = &input.strategy {
        q.push(", strategy = ").push_bind(serde_json::Value::Object(v.clone()));
    }
    if let Some(change) = input.budget.clone().into_change() {
        let change: Option<Money> = change;
        q.push(", budget = ").push_bind(change.map(|m| m.amount())).push("::numeric");
        q.push(", currency = ").push_bind(change.map(|m| m.currency.code().to_owned()));
    }
    if let Some(change) = input.start_date.clone().into_change() {
        q.push(", start_date = ").push_bind(change);
    }
    if let Some(change) = input.end_date.clone().into_change() {
        q.push(", end_date = ").push_bind(change);
    }
    if let Some(v) = &input.channels {
        q.push(", channels = ").push_bind(channels(v));
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
        "campaign.update",
        "campaign",
        &id.to_string(),
        serde_json::to_value(&before).ok(),
        serde_json::to_value(&after).ok(),
    )
    .await?;
    Ok(after)
}
