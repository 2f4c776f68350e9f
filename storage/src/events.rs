//! Reading stored events: a tenant's event log with filters (`GET /v1/events`) and a lead's
//! timeline, which includes the anonymous history of every visitor linked to the lead
//! (`GET /v1/leads/{id}/timeline`). Newest first, by (occurred_at, id) keyset pages.

use chrono::{DateTime, Utc};
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::tracking::StoredEvent;
use flywheel_contracts::events::{EventContext, EventType};
use uuid::Uuid;

use crate::row::{enum_column, object};
use crate::{Result, StorageError, TenantTx};

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub visitor_id: Option<String>,
    pub session_id: Option<String>,
    pub lead_id: Option<Uuid>,
}

/// Where a page starts: just after (older than) this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub occurred_at: DateTime<Utc>,
    pub id: Uuid,
}

impl EventCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.occurred_at.timestamp_micros(), self.id.simple())
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (us, id) = s.split_once('.')?;
        Some(Self { occurred_at: DateTime::from_timestamp_micros(us.parse().ok()?)?, id: Uuid::try_parse(id).ok()? })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct EventPage {
    pub limit: u32,
    pub after: Option<EventCursor>,
}

impl EventPage {
    pub const MAX_LIMIT: u32 = 1000;
}

const COLUMNS: &str = "id, event_type, source, occurred_at, received_at, visitor_id, session_id, lead_id, campaign_id, \
                       landing_page_id, email_id, ad_id, meta";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    event_type: String,
    source: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    visitor_id: Option<String>,
    session_id: Option<String>,
    lead_id: Option<Uuid>,
    campaign_id: Option<Uuid>,
    landing_page_id: Option<Uuid>,
    email_id: Option<Uuid>,
    ad_id: Option<String>,
    meta: serde_json::Value,
}

pub async fn list(
    tx: &mut TenantTx,
    filter: &EventFilter,
    page: EventPage,
) -> Result<(Vec<StoredEvent>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from events
          where tenant_id = $1
            and ($2::text is null or event_type = $2)
            and ($3::timestamptz is null or occurred_at >= $3)
            and ($4::timestamptz is null or occurred_at < $4)
            and ($5::text is null or visitor_id = $5)
            and ($6::text is null or session_id = $6)
            and ($7::uuid is null or lead_id = $7)
            and ($8::timestamptz is null or (occurred_at, id) < ($8, $9))
          order by occurred_at desc, id desc
          limit $10"
    )))
    .bind(tenant.as_uuid())
    .bind(filter.event_type.map(|t| t.as_str()))
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.visitor_id.as_deref())
    .bind(filter.session_id.as_deref())
    .bind(filter.lead_id)
    .bind(page.after.map(|c| c.occurred_at))
    .bind(page.after.map(|c| c.id))
    .bind(fetch_limit(page))
    .fetch_all(tx.conn())
    .await?;
    paginate(rows, page)
}

/// A lead's events and the anonymous events of the visitors linked to it, before and after the
/// link. An event that carries another lead (a shared device, identified as someone else) is
/// that lead's, not this one's.
pub async fn timeline(tx: &mut TenantTx, lead: Uuid, page: EventPage) -> Result<(Vec<StoredEvent>, Option<String>)> {
    let tenant = tx.tenant_id();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from events
          where tenant_id = $1
            and (lead_id = $2
                 or (lead_id is null
                     and visitor_id in (select visitor_id from visitor_links where tenant_id = $1 and lead_id = $2)))
            and ($3::timestamptz is null or (occurred_at, id) < ($3, $4))
          order by occurred_at desc, id desc
          limit $5"
    )))
    .bind(tenant.as_uuid())
    .bind(lead)
    .bind(page.after.map(|c| c.occurred_at))
    .bind(page.after.map(|c| c.id))
    .bind(fetch_limit(page))
    .fetch_all(tx.conn())
    .await?;
    paginate(rows, page)
}

/// The visitor ids linked to a lead.
pub async fn linked_visitors(tx: &mut TenantTx, lead: Uuid) -> Result<Vec<String>> {
    let tenant = tx.tenant_id();
    Ok(sqlx::query_scalar(
        "select visitor_id from visitor_links where tenant_id = $1 and lead_id = $2 order by visitor_id",
    )
    .bind(tenant.as_uuid())
    .bind(lead)
    .fetch_all(tx.conn())
    .await?)
}

/// A dead letter as stored: the event id, where it was in the stream (`<entry id>/<index>`),
/// attempts and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub event_id: Uuid,
    pub stream_entry: String,
    pub attempts: i32,
    pub reason: String,
}

pub async fn dead_letters(tx: &mut TenantTx) -> Result<Vec<DeadLetter>> {
    let tenant = tx.tenant_id();
    let rows: Vec<(Uuid, String, i32, String)> = sqlx::query_as(
        "select event_id, stream_entry, attempts, reason from event_dead_letters where tenant_id = $1
         order by created_at, id",
    )
    .bind(tenant.as_uuid())
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(event_id, stream_entry, attempts, reason)| DeadLetter { event_id, stream_entry, attempts, reason })
        .collect())
}

fn fetch_limit(page: EventPage) -> i64 {
    i64::from(page.limit.clamp(1, EventPage::MAX_LIMIT)) + 1
}

fn paginate(rows: Vec<Row>, page: EventPage) -> Result<(Vec<StoredEvent>, Option<String>)> {
    let limit = page.limit.clamp(1, EventPage::MAX_LIMIT) as usize;
    let (rows, next) =
        crate::list::cut_page(rows, limit, |r| EventCursor { occurred_at: r.occurred_at, id: r.id }.encode());
    Ok((rows.into_iter().map(into_contract).collect::<Result<_>>()?, next))
}

fn into_contract(row: Row) -> Result<StoredEvent> {
    let mut meta = object("meta", row.meta)?;
    let context: EventContext = meta
        .remove("context")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| StorageError::Internal(format!("stored event {}: context: {e}", row.id)))?
        .unwrap_or_default();
    let properties = match meta.remove("properties") {
        Some(p) => object("meta.properties", p)?,
        None => JsonObject::new(),
    };
    Ok(StoredEvent {
        id: row.id,
        event_type: enum_column("event_type", &row.event_type)?,
        source: enum_column("source", &row.source)?,
        occurred_at: row.occurred_at,
        received_at: row.received_at,
        visitor_id: row.visitor_id,
        session_id: row.session_id,
        lead_id: row.lead_id,
        campaign_id: row.campaign_id,
        landing_page_id: row.landing_page_id,
        email_id: row.email_id,
        ad_id: row.ad_id,
        context,
        properties,
        bot: meta.get("bot").and_then(serde_json::Value::as_bool).unwrap_or(false),
        clamped_from: meta
            .get("clamped_from")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc)),
        ip: meta.get("ip").and_then(serde_json::Value::as_str).map(str::to_owned),
    })
}
