//! Storing ingested events: one transaction per batch, PostgreSQL's binary COPY into a
//! connection-local staging table, then, per tenant of the batch, an `INSERT … SELECT` under that
//! tenant's row-level-security context.
//!
//! Why per-tenant contexts and not a role allowed to insert for everyone: the batch's rows reach
//! `events` only through statements that first `set_config('app.tenant_id', <t>)` and select
//! `where tenant_id = <t>`, so forced RLS checks every row against its own tenant and the
//! ingestor cannot read (or stitch against) another tenant's leads, links or events — the same
//! guarantee as every other path, with no second role to keep right. The staging table is a
//! temporary table of this connection (invisible to others, emptied at commit).
//!
//! Exactly once: an event is new unless the tenant already has its id within a day of its
//! `occurred_at` (a client retry without a timestamp gets a later one) or in the same batch;
//! the primary key catches a concurrent twin. Identity stitching happens in the same statements:
//! an event carrying an email links its visitor to that lead (created if new), and every stored
//! event of a linked visitor carries the lead.

pub mod copy_writer;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flywheel_contracts::ingest::IngestEntry;
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Postgres};
use uuid::Uuid;

use crate::{Database, Result, StorageError};
use copy_writer::CopyWriter;

const STAGE: &str = "create temp table if not exists ingest_stage (
  tenant_id uuid not null, id uuid not null, event_type text not null, source text not null,
  occurred_at timestamptz not null, received_at timestamptz not null, session_id text, visitor_id text,
  lead_id uuid, campaign_id uuid, landing_page_id uuid, email_id uuid, ad_id text, meta jsonb not null,
  identify_email text
) on commit delete rows;
create index if not exists ingest_stage_tenant_idx on ingest_stage (tenant_id, id)";

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// PostgreSQL refused the data itself (SQLSTATE class 22, data exception, or 23, integrity
    /// constraint): the same rows fail the same way every time.
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

const COPY: &str = "copy ingest_stage (tenant_id, id, event_type, source, occurred_at, received_at, session_id, \
                    visitor_id, lead_id, campaign_id, landing_page_id, email_id, ad_id, meta, identify_email) \
                    from stdin (format binary)";

/// A connection dedicated to one ingestor, with its staging table.
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

/// What the tenant's part of a batch needs beyond the plain insert.
#[derive(Debug, Default, Clone, Copy)]
struct Needs {
    identify: bool,
    lead: bool,
    campaign: bool,
    landing_page: bool,
    email: bool,
    visitor: bool,
}

impl Database {
    /// A connection for an ingestor, held for its lifetime.
    pub async fn ingest_writer(&self) -> Result<IngestWriter> {
        let mut conn = self.pool().acquire().await?;
        sqlx::raw_sql(STAGE).execute(&mut *conn).await?;
        Ok(IngestWriter { conn, db: self.clone() })
    }
}

/// Encodes entries as the staging table's binary COPY stream.
pub fn encode_stage(batch: &[IngestEntry]) -> Vec<u8> {
    let mut w = CopyWriter::new();
    for e in batch {
        w.row(15)
            .uuid(&e.tenant)
            .uuid(&e.id)
            .text(e.event_type.as_str())
            .text(e.source.as_str())
            .timestamp_us(e.occurred_at_us)
            .timestamp_us(e.received_at_us)
            .opt_text(e.session_id.as_deref())
            .opt_text(e.visitor_id.as_deref())
            .opt_uuid(e.lead_id.as_ref())
            .opt_uuid(e.campaign_id.as_ref())
            .opt_uuid(e.landing_page_id.as_ref())
            .opt_uuid(e.email_id.as_ref())
            .opt_text(e.ad_id.as_deref())
            .jsonb(&e.meta)
            .opt_text(e.identify_email.as_deref());
    }
    w.finish()
}

impl IngestWriter {
    /// Stores a batch in one transaction. On error nothing of it is stored.
    pub async fn write(&mut self, batch: &[IngestEntry]) -> Result<WriteReport, IngestError> {
        if batch.is_empty() {
            return Ok(WriteReport::default());
        }
        let mut groups: BTreeMap<Uuid, Needs> = BTreeMap::new();
        for e in batch {
            let needs = groups.entry(e.tenant).or_default();
            needs.identify |= e.identify_email.is_some() || (e.lead_id.is_some() && e.visitor_id.is_some());
            needs.lead |= e.lead_id.is_some() || e.identify_email.is_some();
            needs.campaign |= e.campaign_id.is_some();
            needs.landing_page |= e.landing_page_id.is_some();
            needs.email |= e.email_id.is_some();
            needs.visitor |= e.visitor_id.is_some();
        }
        let mut sql = String::with_capacity(groups.len() * 1200);
        for (tenant, needs) in &groups {
            tenant_statements(&mut sql, tenant, *needs);
        }
        let stream = encode_stage(batch);
        let rows = async {
            let mut tx = self.conn.begin().await?;
            let mut copy = tx.copy_in_raw(COPY).await?;
            copy.send(stream).await?;
            copy.finish().await?;
            // Temporary tables get no statistics from autovacuum; without them the per-tenant
            // statements are planned blind.
            sqlx::raw_sql("analyze ingest_stage").execute(&mut *tx).await?;
            let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(done.rows_affected())
        }
        .await
        .map_err(classify)?;
        Ok(WriteReport { rows, tenants: groups.len() })
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

/// The statements storing one tenant's part of the staged batch. `tenant` is a `Uuid`, so
/// formatting it into SQL cannot inject anything.
fn tenant_statements(sql: &mut String, tenant: &Uuid, needs: Needs) {
    let t = tenant;
    // Writing into a String cannot fail.
    let _ = writeln!(
        sql,
        "select set_config('app.tenant_id', '{t}', true), pg_advisory_xact_lock(hashtextextended('flywheel.events:{t}', 0));"
    );
    if needs.identify {
        let _ = write!(
            sql,
            "insert into leads (tenant_id, email, source)
               select distinct tenant_id, identify_email, 'tracking'
                 from ingest_stage where tenant_id = '{t}' and identify_email is not null
             on conflict (tenant_id, email) do nothing;
             update ingest_stage s set lead_id = l.id
               from leads l
              where s.tenant_id = '{t}' and s.identify_email is not null
                and l.tenant_id = s.tenant_id and l.email = s.identify_email;
             insert into visitor_links (tenant_id, visitor_id, lead_id, linked_at)
               select distinct on (s.visitor_id) s.tenant_id, s.visitor_id, l.id, s.occurred_at
                 from ingest_stage s
                 join leads l on l.tenant_id = s.tenant_id and l.id = s.lead_id
                where s.tenant_id = '{t}' and s.visitor_id is not null and s.visitor_id not like 'c.%'
                order by s.visitor_id, s.occurred_at desc
             on conflict (tenant_id, visitor_id) do update
                set lead_id = excluded.lead_id, linked_at = excluded.linked_at
              where visitor_links.linked_at <= excluded.linked_at;\n"
        );
    }
    let lead = match (needs.lead, needs.visitor) {
        (true, true) => "coalesce((select l.id from leads l where l.tenant_id = s.tenant_id and l.id = s.lead_id),
                   (select v.lead_id from visitor_links v where v.tenant_id = s.tenant_id and v.visitor_id = s.visitor_id))",
        (true, false) => "(select l.id from leads l where l.tenant_id = s.tenant_id and l.id = s.lead_id)",
        (false, true) => {
            "(select v.lead_id from visitor_links v where v.tenant_id = s.tenant_id and v.visitor_id = s.visitor_id)"
        }
        (false, false) => "null::uuid",
    };
    let reference = |needed: bool, table: &str, column: &str| {
        if needed {
            format!("(select r.id from {table} r where r.tenant_id = s.tenant_id and r.id = s.{column})")
        } else {
            "null::uuid".to_owned()
        }
    };
    let campaign = reference(needs.campaign, "campaigns", "campaign_id");
    let landing_page = reference(needs.landing_page, "landing_pages", "landing_page_id");
    let email = reference(needs.email, "emails", "email_id");
    let _ = write!(
        sql,
        "insert into events (tenant_id, id, event_type, source, occurred_at, received_at, session_id, visitor_id,
                             lead_id, campaign_id, landing_page_id, email_id, ad_id, meta)
         select s.tenant_id, s.id, s.event_type, s.source, s.occurred_at, s.received_at, s.session_id, s.visitor_id,
                {lead}, {campaign}, {landing_page}, {email}, s.ad_id, s.meta
           from (select distinct on (id) * from ingest_stage where tenant_id = '{t}' order by id, received_at) s
          where not exists (select 1 from events e
                             where e.tenant_id = s.tenant_id and e.id = s.id
                               and e.occurred_at between s.occurred_at - interval '1 day'
                                                     and s.occurred_at + interval '1 day')
         on conflict do nothing;\n"
    );
}
