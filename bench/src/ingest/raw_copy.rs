//! The raw baseline: binary COPY of synthetic events straight into `bench_events`, a partitioned
//! table with the columns, checks, partitions (monthly + default) and indexes of `events` but no
//! row-level security (PostgreSQL refuses `COPY FROM` into a table with RLS) and no foreign keys,
//! in batches of the ingestor's size, one transaction per batch, from as many connections as the
//! node runs ingestors. It is the fastest PostgreSQL can take these rows; the full path is
//! measured against it.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use flywheel_storage::ingest::copy_writer::CopyWriter;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use super::synthetic::Row;
use crate::services::BenchDatabase;

const COPY: &str = "copy bench_events (tenant_id, id, event_type, source, occurred_at, received_at, session_id, \
                    visitor_id, lead_id, campaign_id, landing_page_id, email_id, ad_id, meta) \
                    from stdin (format binary)";

/// What the baseline measured.
#[derive(Debug, Clone, Copy)]
pub struct RawReport {
    pub events: u64,
    pub elapsed: Duration,
    pub batches: u64,
    pub indexes: i64,
    pub partitions: i64,
}

impl RawReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How the baseline runs.
#[derive(Debug, Clone, Copy)]
pub struct RawSpec {
    pub events: u64,
    pub batch: usize,
    pub writers: usize,
}

pub async fn run(database: &BenchDatabase, tenants: &[Uuid], rows: &[Row], spec: RawSpec) -> Result<RawReport> {
    if tenants.is_empty() || rows.is_empty() {
        bail!("the raw baseline needs tenants and rows");
    }
    let (indexes, partitions) = create_table(database).await?;
    let rows = Arc::new(rows.to_vec());
    let tenants = Arc::new(tenants.to_vec());
    let batch = spec.batch.max(1) as u64;
    let writers = spec.writers.max(1);
    let mut connections = Vec::with_capacity(writers);
    for _ in 0..writers {
        connections.push(app_connection(database).await?);
    }
    // One untimed batch per connection: connection setup, plan and catalog caches, first pages.
    for (w, conn) in connections.iter_mut().enumerate() {
        write_batch(conn, &tenants, &rows, (w as u64) * batch, batch).await?;
    }
    let warm = writers as u64 * batch;
    let mut owner = database.owner().await?;
    sqlx::query("truncate bench_events").execute(&mut owner).await?;

    let next = Arc::new(AtomicU64::new(0));
    let total = spec.events;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for mut conn in connections {
        let (next, rows, tenants) = (next.clone(), rows.clone(), tenants.clone());
        tasks.push(tokio::spawn(async move {
            let mut batches = 0u64;
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    break;
                }
                write_batch(&mut conn, &tenants, &rows, warm + first, batch.min(total - first)).await?;
                batches += 1;
            }
            conn.close().await?;
            anyhow::Ok(batches)
        }));
    }
    let mut batches = 0;
    for task in tasks {
        batches += task.await.context("a COPY writer panicked")??;
    }
    let elapsed = start.elapsed();

    let stored: i64 = sqlx::query_scalar("select count(*) from bench_events").fetch_one(&mut owner).await?;
    sqlx::query("drop table bench_events").execute(&mut owner).await.context("cannot drop bench_events")?;
    owner.close().await?;
    if u64::try_from(stored).ok() != Some(total) {
        bail!("the raw baseline stored {stored} rows, expected {total}");
    }
    Ok(RawReport { events: total, elapsed, batches, indexes, partitions })
}

/// `bench_events` like `events` (columns, defaults, checks, indexes; `like` copies no policy and
/// no foreign key), with a partition for each of `events`' partitions. Returns how many indexes
/// and partitions it has, checked against `events`.
async fn create_table(database: &BenchDatabase) -> Result<(i64, i64)> {
    let mut owner = database.owner().await?;
    sqlx::query("create table bench_events (like events including all) partition by range (occurred_at)")
        .execute(&mut owner)
        .await
        .context("cannot create bench_events like events")?;
    let bounds: Vec<(String, String)> = sqlx::query_as(
        "select c.relname::text, pg_get_expr(c.relpartbound, c.oid) from pg_inherits i \
         join pg_class c on c.oid = i.inhrelid where i.inhparent = 'events'::regclass order by 1",
    )
    .fetch_all(&mut owner)
    .await?;
    for (name, bound) in &bounds {
        // Names and bounds come from the catalog of the database the benchmark just created.
        let ddl = format!("create table \"bench_{name}\" partition of bench_events {bound}");
        sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&mut owner).await.with_context(|| format!("bench_{name}"))?;
    }
    sqlx::query("grant select, insert on bench_events to flywheel_app").execute(&mut owner).await?;
    let count_indexes = "select count(*) from pg_index where indrelid = $1::regclass";
    let events_indexes: i64 = sqlx::query_scalar(count_indexes).bind("events").fetch_one(&mut owner).await?;
    let bench_indexes: i64 = sqlx::query_scalar(count_indexes).bind("bench_events").fetch_one(&mut owner).await?;
    let rls: bool = sqlx::query_scalar("select relrowsecurity from pg_class where oid = 'bench_events'::regclass")
        .fetch_one(&mut owner)
        .await?;
    owner.close().await?;
    if bench_indexes != events_indexes {
        bail!("bench_events has {bench_indexes} indexes, events {events_indexes}");
    }
    if rls {
        bail!("bench_events has row-level security enabled; COPY would be refused");
    }
    Ok((bench_indexes, i64::try_from(bounds.len()).unwrap_or(i64::MAX)))
}

async fn app_connection(database: &BenchDatabase) -> Result<PgConnection> {
    PgConnectOptions::from_str(&database.app_url())?
        .application_name("flywheel-bench-copy")
        .connect()
        .await
        .context("cannot connect as flywheel_app for the raw COPY")
}

/// Rows `first..first + count` of the endless synthetic sequence (row `k` is template
/// `k % rows.len()` for tenant `k % tenants.len()`, with a fresh id), COPYed in one transaction.
async fn write_batch(conn: &mut PgConnection, tenants: &[Uuid], rows: &[Row], first: u64, count: u64) -> Result<()> {
    let now_us = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros())?;
    let mut w = CopyWriter::new();
    for k in first..first + count {
        // Both remainders are below a slice length.
        let row = &rows[usize::try_from(k % rows.len() as u64)?];
        let tenant = &tenants[usize::try_from(k % tenants.len() as u64)?];
        // Events of the last minute, as a live site sends them.
        let occurred = now_us - i64::try_from(k % 60_000_000)?;
        w.row(14)
            .uuid(tenant)
            .uuid(&Uuid::now_v7())
            .text(&row.event_type)
            .text(&row.source)
            .timestamp_us(occurred)
            .timestamp_us(now_us)
            .opt_text(row.session_id.as_deref())
            .opt_text(row.visitor_id.as_deref())
            .null()
            .null()
            .null()
            .opt_uuid(row.email_id.as_ref())
            .null()
            .jsonb(&row.meta);
    }
    let stream = w.finish();
    let mut tx = conn.begin().await?;
    let mut copy = tx.copy_in_raw(COPY).await?;
    copy.send(stream).await?;
    copy.finish().await?;
    tx.commit().await?;
    Ok(())
}
