//! Storing ingested events: one call of the database function `flywheel_ingest_events`
//! (migrations/20261125000007_ingest_speed.sql) per batch, its rows grouped by tenant and passed
//! as one array per column; the function stores each tenant's group under that tenant's
//! row-level-security context.
//!
//! Why per-tenant contexts and not a role allowed to insert for everyone: the batch's rows reach
//! `events` only through statements that run after `set_config('app.tenant_id', <t>)` and write
//! `tenant_id = <t>`, so forced RLS checks every row against its own tenant and the ingestor
//! cannot read (or stitch against) another tenant's leads, links or events — the same guarantee
//! as every other path, with no second role to keep right. The function is SECURITY INVOKER: it
//! runs as the app role, like any other statement of the app.
//!
//! Exactly once: an event is new unless the tenant already has its id within a day of its
//! `occurred_at` (a client retry without a timestamp gets its receipt time, a later one, unless its
//! id is a UUID v7 whose time the edge took instead) or the batch has it
//! already (repeats are dropped here, the earliest received kept); the primary key catches a
//! concurrent twin. Identity stitching happens in the same call: an event carrying an email links
//! its visitor to that lead (created if new), and every stored event of a linked visitor carries
//! the lead. `events` has no foreign keys: the function resolves each reference under the
//! tenant's context (one it does not have becomes NULL), and triggers clear deleted references.

pub mod copy_writer;

use chrono::{DateTime, Utc};
use flywheel_contracts::ingest::IngestEntry;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use uuid::Uuid;

use crate::{Database, Result, StorageError};

const INGEST: &str =
    "select flywheel_ingest_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// PostgreSQL refused the data itself (SQLSTATE class 22, data exception, or 23, integrity
    /// constraint), or a timestamp no database can hold: the same rows fail the same way every time.
    #[error("refused by the database: {0}")]
    Refused(String),
    /// Anything else — unreachable, deadlock, timeout, serialization: retry the whole batch.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn classify(e: sqlx::Error) -> IngestError {
    if let sqlx::Error::Database(db) = &e
        && db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
    {
        return IngestError::Refused(db.message().to_owned());
    }
    IngestError::Storage(e.into())
}

/// A connection dedicated to one ingestor: its statement is prepared once and stays cached, as do
/// the function's plans.
#[derive(Debug)]
pub struct IngestWriter {
    conn: PoolConnection<Postgres>,
    /// For the rare tenant-scoped writes outside a batch (dead letters), through `TenantTx`.
    db: Database,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Rows written in all (events, plus links and leads created by identification).
    pub rows: u64,
    pub tenants: usize,
}

impl Database {
    /// A connection for an ingestor, held for its lifetime.
    pub async fn ingest_writer(&self) -> Result<IngestWriter> {
        let conn = self.pool().acquire().await?;
        Ok(IngestWriter { conn, db: self.clone() })
    }

    /// Analyzes the tables `flywheel_ingest_events` reads and writes (the partitions of `events`,
    /// `leads`, `visitor_links`) whose changes since their last analysis passed autovacuum's
    /// threshold, and returns their names; nothing when another caller is at it. Its plans are
    /// cached per connection and made from the statistics of the moment: planned without them,
    /// a batch reads all its tenant's stored events (migrations/20261125000008_ingest_statistics.sql).
    /// An ANALYZE invalidates those plans on every connection. `events.meta` is left out (its
    /// statistics target is 0, set on any partition before it is analyzed:
    /// migrations/20261125000009_ingest_statistics_meta.sql).
    pub async fn refresh_ingest_statistics(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("select flywheel_ingest_analyze()").fetch_one(self.pool()).await?)
    }
}

/// A batch in the shape `flywheel_ingest_events` takes: one array per column, rows grouped by
/// tenant (group `i` ends before row `ends[i]`), each `(tenant, id)` once.
#[derive(Debug, Default)]
struct Columns<'a> {
    tenants: Vec<Uuid>,
    ends: Vec<i32>,
    id: Vec<Uuid>,
    event_type: Vec<&'a str>,
    source: Vec<&'a str>,
    occurred_at: Vec<DateTime<Utc>>,
    received_at: Vec<DateTime<Utc>>,
    session_id: Vec<Option<&'a str>>,
    visitor_id: Vec<Option<&'a str>>,
    lead_id: Vec<Option<Uuid>>,
    campaign_id: Vec<Option<Uuid>>,
    landing_page_id: Vec<Option<Uuid>>,
    email_id: Vec<Option<Uuid>>,
    ad_id: Vec<Option<&'a str>>,
    meta: Vec<&'a str>,
    identify_email: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    /// Groups `batch` by tenant (ordered by id within a tenant, which also keeps the primary key's
    /// inserts close together) and drops repeats of a `(tenant, id)`, keeping the earliest
    /// received. Refuses a timestamp outside what PostgreSQL (or any calendar) can hold.
    fn from_batch(batch: &'a [IngestEntry]) -> Result<Self, IngestError> {
        let mut order: Vec<&IngestEntry> = batch.iter().collect();
        order.sort_unstable_by_key(|e| (e.tenant, e.id, e.received_at_us));
        order.dedup_by_key(|e| (e.tenant, e.id));
        let n = order.len();
        let mut c = Columns {
            id: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            received_at: Vec::with_capacity(n),
            session_id: Vec::with_capacity(n),
            visitor_id: Vec::with_capacity(n),
            lead_id: Vec::with_capacity(n),
            campaign_id: Vec::with_capacity(n),
            landing_page_id: Vec::with_capacity(n),
            email_id: Vec::with_capacity(n),
            ad_id: Vec::with_capacity(n),
            meta: Vec::with_capacity(n),
            identify_email: Vec::with_capacity(n),
            ..Columns::default()
        };
        let timestamp = |e: &IngestEntry, us: i64| {
            DateTime::from_timestamp_micros(us)
                .ok_or_else(|| IngestError::Refused(format!("event {}: timestamp {us} µs out of range", e.id)))
        };
        for (i, e) in order.iter().enumerate() {
            if c.tenants.last() != Some(&e.tenant) {
                if i > 0 {
                    c.ends.push(row_number(i)?);
                }
                c.tenants.push(e.tenant);
            }
            c.id.push(e.id);
            c.event_type.push(e.event_type.as_str());
            c.source.push(e.source.as_str());
            c.occurred_at.push(timestamp(e, e.occurred_at_us)?);
            c.received_at.push(timestamp(e, e.received_at_us)?);
            c.session_id.push(e.session_id.as_deref());
            c.visitor_id.push(e.visitor_id.as_deref());
            c.lead_id.push(e.lead_id);
            c.campaign_id.push(e.campaign_id);
            c.landing_page_id.push(e.landing_page_id);
            c.email_id.push(e.email_id);
            c.ad_id.push(e.ad_id.as_deref());
            c.meta.push(&e.meta);
            c.identify_email.push(e.identify_email.as_deref());
        }
        if n > 0 {
            c.ends.push(row_number(n)?);
        }
        Ok(c)
    }
}

/// A row count as PostgreSQL's array subscript.
fn row_number(n: usize) -> Result<i32, IngestError> {
    i32::try_from(n).map_err(|_| IngestError::Refused(format!("a batch of {n} rows is too large")))
}

impl IngestWriter {
    /// Stores a batch in one transaction (one statement). On error nothing of it is stored.
    pub async fn write(&mut self, batch: &[IngestEntry]) -> Result<WriteReport, IngestError> {
        if batch.is_empty() {
            return Ok(WriteReport::default());
        }
        let c = Columns::from_batch(batch)?;
        let tenants = c.tenants.len();
        let rows: i64 = sqlx::query_scalar(INGEST)
            .bind(c.tenants)
            .bind(c.ends)
            .bind(c.id)
            .bind(c.event_type)
            .bind(c.source)
            .bind(c.occurred_at)
            .bind(c.received_at)
            .bind(c.session_id)
            .bind(c.visitor_id)
            .bind(c.lead_id)
            .bind(c.campaign_id)
            .bind(c.landing_page_id)
            .bind(c.email_id)
            .bind(c.ad_id)
            .bind(c.meta)
            .bind(c.identify_email)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(classify)?;
        Ok(WriteReport { rows: u64::try_from(rows).unwrap_or_default(), tenants })
    }

    /// Records an event given up on, under its tenant.
    pub async fn dead_letter(
        &mut self,
        entry: &IngestEntry,
        stream_entry: &str,
        attempts: u32,
        reason: &str,
    ) -> Result<()> {
        let event = serde_json::json!({
            "id": entry.id,
            "type": entry.event_type,
            "source": entry.source,
            "occurred_at_us": entry.occurred_at_us,
            "received_at_us": entry.received_at_us,
            "visitor_id": entry.visitor_id,
            "session_id": entry.session_id,
            "lead_id": entry.lead_id,
            "campaign_id": entry.campaign_id,
            "landing_page_id": entry.landing_page_id,
            "email_id": entry.email_id,
            "ad_id": entry.ad_id,
            // The meta text as sent: it may be what PostgreSQL refused, so it stays a string.
            "meta": entry.meta.replace('\u{0}', "\u{fffd}"),
        });
        let reason: String = reason.replace('\u{0}', "").chars().take(2000).collect();
        let mut tx = self.db.begin(flywheel_contracts::TenantId::from_uuid(entry.tenant)).await?;
        sqlx::query(
            "insert into event_dead_letters (tenant_id, event_id, stream_entry, attempts, reason, event)
             values ($1, $2, $3, $4, $5, $6)
             on conflict (tenant_id, stream_entry) do nothing",
        )
        .bind(entry.tenant)
        .bind(entry.id)
        .bind(stream_entry)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind(if reason.is_empty() { "unknown".to_owned() } else { reason })
        .bind(sqlx::types::Json(event))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use flywheel_contracts::events::{EventSource, EventType};

    use super::*;

    fn entry(tenant: u128, id: u128, received_at_us: i64) -> IngestEntry {
        IngestEntry {
            format: IngestEntry::FORMAT,
            tenant: Uuid::from_u128(tenant),
            id: Uuid::from_u128(id),
            event_type: EventType::PageView,
            source: EventSource::Web,
            occurred_at_us: 1_700_000_000_000_000,
            received_at_us,
            visitor_id: None,
            session_id: None,
            lead_id: None,
            campaign_id: None,
            landing_page_id: None,
            email_id: None,
            ad_id: None,
            identify_email: None,
            meta: format!("{{\"r\":{received_at_us}}}"),
        }
    }

    #[test]
    fn rows_are_grouped_by_tenant_and_a_repeated_id_keeps_its_earliest_receipt() {
        let batch = [entry(2, 1, 10), entry(1, 7, 10), entry(2, 1, 5), entry(1, 3, 10), entry(3, 1, 10)];
        let c = Columns::from_batch(&batch).expect("columns");
        assert_eq!(c.tenants, [1, 2, 3].map(Uuid::from_u128));
        assert_eq!(c.ends, [2, 3, 4]);
        assert_eq!(c.id, [3, 7, 1, 1].map(Uuid::from_u128));
        assert_eq!(c.meta[2], "{\"r\":5}");
    }

    #[test]
    fn a_timestamp_no_calendar_holds_is_refused() {
        let mut e = entry(1, 1, 10);
        e.occurred_at_us = i64::MAX;
        assert!(matches!(Columns::from_batch(&[e]), Err(IngestError::Refused(_))));
    }
}
