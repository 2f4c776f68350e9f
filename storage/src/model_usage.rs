//! `model_usage` and `model_budgets` rows: the tokens each tenant's language-model calls spent and
//! the ceilings that stop a run before it overspends.
//!
//! A call is accounted in two steps. Before it, in one transaction: [`lock_budget`] (serialises
//! the tenant's reservations), [`budgets`] and [`charged`] to decide, then [`reserve`] the call's
//! worst case. After it: [`settle`] with the tokens the provider reported, or [`release`] when it
//! spent nothing. [`charged`] counts settled tokens plus live reservations, so two concurrent
//! calls cannot both slip under the same remaining budget.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flywheel_contracts::ids::RunId;
use uuid::Uuid;

use crate::{ListQuery, Result, StorageError, TenantTx};

/// The window a budget covers: the current calendar day or month, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub const ALL: [BudgetPeriod; 2] = [BudgetPeriod::Day, BudgetPeriod::Month];

    /// The stored name, also a `date_trunc` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "day" => Some(BudgetPeriod::Day),
            "month" => Some(BudgetPeriod::Month),
            _ => None,
        }
    }
}

impl std::fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant's token ceiling for one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub period: BudgetPeriod,
    pub token_limit: u64,
    pub updated_at: DateTime<Utc>,
}

/// What a call is about to spend, written as a reservation before it is made.
#[derive(Debug, Clone)]
pub struct NewUsage<'a> {
    pub run_id: Option<RunId>,
    /// The task asked (`branding.research`): lowercase words separated by dots.
    pub task: &'a str,
    /// `offline`, `openai_compatible`, …
    pub provider: &'a str,
    pub model: &'a str,
    /// The call's worst case: the prompt estimate plus the output cap.
    pub reserved_tokens: u64,
}

/// Where a usage row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageStatus {
    /// In flight: `reserved_tokens` count against the budget.
    Reserved,
    /// Returned: `prompt_tokens + completion_tokens` count.
    Settled,
    /// Spent nothing; counts for nothing.
    Released,
}

/// One language-model call as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub id: Uuid,
    pub run_id: Option<RunId>,
    pub task: String,
    pub provider: String,
    pub model: String,
    pub status: UsageStatus,
    pub reserved_tokens: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// Sums over a set of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl UsageTotals {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

const COLUMNS: &str = "id, run_id, task, provider, model, status, reserved_tokens, prompt_tokens, completion_tokens, \
                       error, created_at, settled_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    run_id: Option<Uuid>,
    task: String,
    provider: String,
    model: String,
    status: String,
    reserved_tokens: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    error: Option<String>,
    created_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
}

impl Row {
    fn into_usage(self) -> Result<Usage> {
        let status = match self.status.as_str() {
            "reserved" => UsageStatus::Reserved,
            "settled" => UsageStatus::Settled,
            "released" => UsageStatus::Released,
            other => return Err(StorageError::Internal(format!("unexpected model_usage status {other:?}"))),
        };
        Ok(Usage {
            id: self.id,
            run_id: self.run_id.map(RunId::from_uuid),
            task: self.task,
            provider: self.provider,
            model: self.model,
            status,
            reserved_tokens: to_u64(self.reserved_tokens),
            prompt_tokens: to_u64(self.prompt_tokens),
            completion_tokens: to_u64(self.completion_tokens),
            error: self.error,
            created_at: self.created_at,
            settled_at: self.settled_at,
        })
    }
}

/// Token counts are `bigint >= 0` in the database; a count beyond `i64::MAX` is stored as the
/// maximum (no provider reports that many).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Text cut to the `max` characters its column allows.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

/// Characters of `model`, `provider` and `error` the columns hold.
const MAX_MODEL: usize = 200;
const MAX_PROVIDER: usize = 64;
const MAX_ERROR: usize = 2000;

/// Sets the tenant's ceiling for `period` (creating or replacing it).
pub async fn set_budget(tx: &mut TenantTx, period: BudgetPeriod, token_limit: u64) -> Result<Budget> {
    let tenant = tx.tenant_id();
    let (updated_at,): (DateTime<Utc>,) = sqlx::query_as(
        "insert into model_budgets (tenant_id, id, period, token_limit) values ($1, $2, $3, $4)
         on conflict (tenant_id, period) do update set token_limit = excluded.token_limit
         returning updated_at",
    )
    .bind(tenant.as_uuid())
    .bind(Uuid::now_v7())
    .bind(period.as_str())
    .bind(to_i64(token_limit))
    .fetch_one(tx.conn())
    .await?;
    Ok(Budget { period, token_limit, updated_at })
}

/// Removes the tenant's ceiling for `period` (the node's default applies again). Returns whether
/// there was one.
pub async fn clear_budget(tx: &mut TenantTx, period: BudgetPeriod) -> Result<bool> {
    let tenant = tx.tenant_id();
    let done = sqlx::query("delete from model_budgets where tenant_id = $1 and period = $2")
        .bind(tenant.as_uuid())
        .bind(period.as_str())
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The tenant's own ceilings.
pub async fn budgets(tx: &mut TenantTx) -> Result<Vec<Budget>> {
    let tenant = tx.tenant_id();
    let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
        "select period, token_limit, updated_at from model_budgets where tenant_id = $1 order by period",
    )
    .bind(tenant.as_uuid())
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|(period, limit, updated_at)| {
            let period = BudgetPeriod::parse(&period)
                .ok_or_else(|| StorageError::Internal(format!("unexpected model_budgets period {period:?}")))?;
            Ok(Budget { period, token_limit: to_u64(limit), updated_at })
        })
        .collect()
}

/// Serialises budget decisions of this tenant until the transaction ends: a second caller waits
/// here until the first has reserved (or refused) and committed.
pub async fn lock_budget(tx: &mut TenantTx) -> Result<()> {
    let tenant = tx.tenant_id();
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('flywheel.model_budget:' || $1::text, 0))")
        .bind(tenant.as_uuid())
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Tokens that count against the current `period`: settled calls' reported tokens plus the
/// reservations of calls still in flight. A reservation older than `reservation_ttl` belongs to a
/// call whose process died; it stops counting.
pub async fn charged(tx: &mut TenantTx, period: BudgetPeriod, reservation_ttl: Duration) -> Result<u64> {
    let tenant = tx.tenant_id();
    let ttl_ms = i64::try_from(reservation_ttl.as_millis()).unwrap_or(i64::MAX);
    let charged: i64 = sqlx::query_scalar(
        "select coalesce(sum(case status when 'reserved' then reserved_tokens
                                         when 'settled' then prompt_tokens + completion_tokens
                                         else 0 end), 0)::bigint
           from model_usage
          where tenant_id = $1
            and created_at >= date_trunc($2, now() at time zone 'utc') at time zone 'utc'
            and (status <> 'reserved' or created_at > now() - make_interval(secs => $3::double precision / 1000))",
    )
    .bind(tenant.as_uuid())
    .bind(period.as_str())
    .bind(ttl_ms)
    .fetch_one(tx.conn())
    .await?;
    Ok(to_u64(charged))
}

/// Records a call about to be made, reserving its worst case. Returns the usage row's id.
pub async fn reserve(tx: &mut TenantTx, usage: &NewUsage<'_>) -> Result<Uuid> {
    let tenant = tx.tenant_id();
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into model_usage (tenant_id, id, run_id, task, provider, model, status, reserved_tokens)
         values ($1, $2, $3, $4, $5, $6, 'reserved', $7)",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(usage.run_id.map(|r| r.as_uuid()))
    .bind(usage.task)
    .bind(clip(usage.provider, MAX_PROVIDER))
    .bind(clip(usage.model, MAX_MODEL))
    .bind(to_i64(usage.reserved_tokens))
    .execute(tx.conn())
    .await?;
    Ok(id)
}

/// Settles a reservation with what the call spent: `model` is the model that answered (the
/// provider may name it more precisely than the configuration did); `error` is set when the
/// call spent tokens and still failed (an answer that was not JSON, for example).
pub async fn settle(
    tx: &mut TenantTx,
    id: Uuid,
    model: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
    error: Option<&str>,
) -> Result<()> {
    let tenant = tx.tenant_id();
    let done = sqlx::query(
        "update model_usage
            set status = 'settled', model = $3, prompt_tokens = $4, completion_tokens = $5, error = $6,
                settled_at = now()
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(clip(model, MAX_MODEL))
    .bind(to_i64(prompt_tokens))
    .bind(to_i64(completion_tokens))
    .bind(error.map(|e| clip(e, MAX_ERROR)))
    .execute(tx.conn())
    .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound);
    }
    Ok(())
}

/// Releases a reservation whose call spent nothing (it never reached the model).
pub async fn release(tx: &mut TenantTx, id: Uuid, error: &str) -> Result<()> {
    let tenant = tx.tenant_id();
    let done = sqlx::query(
        "update model_usage set status = 'released', error = $3, settled_at = now() where tenant_id = $1 and id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(clip(error, MAX_ERROR))
    .execute(tx.conn())
    .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound);
    }
    Ok(())
}

/// The tenant's calls, newest first.
pub async fn list(tx: &mut TenantTx, query: ListQuery) -> Result<(Vec<Usage>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from model_usage where tenant_id = $1 and ($2::uuid is null or id < $2)
         order by id desc limit $3"
    )))
    .bind(tenant.as_uuid())
    .bind(query.after)
    .bind(query.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    let (rows, next) = query.page(rows, |r| r.id);
    Ok((rows.into_iter().map(Row::into_usage).collect::<Result<_>>()?, next))
}

/// Totals of settled calls since `since`, for one run or for the whole tenant.
pub async fn totals(tx: &mut TenantTx, since: DateTime<Utc>, run_id: Option<RunId>) -> Result<UsageTotals> {
    let tenant = tx.tenant_id();
    let (calls, prompt, completion): (i64, i64, i64) = sqlx::query_as(
        "select count(*), coalesce(sum(prompt_tokens), 0)::bigint, coalesce(sum(completion_tokens), 0)::bigint
           from model_usage
          where tenant_id = $1 and status = 'settled' and created_at >= $2 and ($3::uuid is null or run_id = $3)",
    )
    .bind(tenant.as_uuid())
    .bind(since)
    .bind(run_id.map(|r| r.as_uuid()))
    .fetch_one(tx.conn())
    .await?;
    Ok(UsageTotals { calls: to_u64(calls), prompt_tokens: to_u64(prompt), completion_tokens: to_u64(completion) })
}
