//! The pgvector backend: `memory_items` in PostgreSQL, each operation in its own tenant
//! transaction so that forced row-level security scopes it, searched through the HNSW cosine
//! index with pgvector 0.8's iterative scan.

use flywheel_contracts::TenantId;
use pgvector::Vector;

use super::{
    Collection, MemoryItem, MetadataFilter, ScoredItem, VectorStore, check_external_ids, check_items, check_search,
};
use crate::row::object;
use crate::{Database, Result};

/// `hnsw.ef_search` for a search: pgvector's default of 40, raised for large limits (twice the
/// limit, so 200 at `MAX_LIMIT`) so that one pass of the index can return them: a pass yields
/// at most `ef_search` candidates.
fn ef_search(limit: u32) -> u32 {
    limit.saturating_mul(2).clamp(40, 200)
}

/// Vector memory in the node's PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgVectorStore {
    db: Database,
}

impl PgVectorStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await
    }
}

impl VectorStore for PgVectorStore {
    async fn upsert(&self, tenant: TenantId, collection: &Collection, items: &[MemoryItem]) -> Result<()> {
        check_items(items)?;
        if items.is_empty() {
            return Ok(());
        }
        let mut external_ids = Vec::with_capacity(items.len());
        let mut contents = Vec::with_capacity(items.len());
        let mut metadata = Vec::with_capacity(items.len());
        let mut embeddings = Vec::with_capacity(items.len());
        for item in items {
            external_ids.push(item.external_id.clone());
            contents.push(item.content.clone());
            metadata.push(serde_json::Value::Object(item.metadata.clone()));
            embeddings.push(Vector::from(item.embedding.clone()));
        }
        let mut tx = self.db.begin(tenant).await?;
        // External ids are distinct within the batch (check_items), so no row is hit twice.
        sqlx::query(
            "insert into memory_items (tenant_id, collection, external_id, content, metadata, embedding)
             select $1, $2, u.external_id, u.content, u.metadata, u.embedding
               from unnest($3::text[], $4::text[], $5::jsonb[], $6::vector[])
                    as u (external_id, content, metadata, embedding)
             on conflict (tenant_id, collection, external_id) do update
                set content = excluded.content, metadata = excluded.metadata, embedding = excluded.embedding",
        )
        .bind(tenant.as_uuid())
        .bind(collection.as_str())
        .bind(external_ids)
        .bind(contents)
        .bind(metadata)
        .bind(embeddings)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        tracing::debug!(tenant_id = %tenant, collection = %collection, items = items.len(), "Vectors upserted.");
        Ok(())
    }

    async fn search(
        &self,
        tenant: TenantId,
        collection: &Collection,
        query: &[f32],
        limit: usize,
        filter: Option<&MetadataFilter>,
    ) -> Result<Vec<ScoredItem>> {
        let limit = check_search(query, limit)?;
        // The conditions as `[[key, value], …]`: an array, so a key given twice keeps both. An
        // item passes when no condition fails; a missing key makes a condition null, hence
        // `is not true` rather than `not`.
        let conditions: Vec<serde_json::Value> = filter
            .map(|f| f.conditions().iter().map(|(k, v)| serde_json::json!([k, v.to_json()])).collect())
            .unwrap_or_default();
        let mut tx = self.db.begin(tenant).await?;
        // The HNSW index holds every tenant's vectors; row-level security and the filters apply
        // after the index scan. strict_order makes the scan continue (in exact distance order)
        // until `limit` rows pass them — up to pgvector's `hnsw.max_scan_tuples`, 20,000 by
        // default — instead of returning fewer when other tenants' or non-matching vectors fill
        // the first `ef_search` candidates. Both settings end with the transaction.
        sqlx::query(
            "select set_config('hnsw.iterative_scan', 'strict_order', true),
                    set_config('hnsw.ef_search', $1, true)",
        )
        .bind(ef_search(limit).to_string())
        .execute(tx.conn())
        .await?;
        let rows: Vec<(String, String, serde_json::Value, f32)> = sqlx::query_as(
            "select external_id, content, metadata, (1 - (embedding <=> $3))::real
               from memory_items
              where tenant_id = $1 and collection = $2
                and not exists (
                      select from jsonb_array_elements($5::jsonb) c
                       where (metadata -> (c ->> 0) = c -> 1
                              or (jsonb_typeof(metadata -> (c ->> 0)) = 'array'
                                  and metadata -> (c ->> 0) @> jsonb_build_array(c -> 1))) is not true)
              order by embedding <=> $3
              limit $4",
        )
        .bind(tenant.as_uuid())
        .bind(collection.as_str())
        .bind(Vector::from(query.to_vec()))
        .bind(i64::from(limit))
        .bind(serde_json::Value::Array(conditions))
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(external_id, content, metadata, score)| {
                Ok(ScoredItem { external_id, content, metadata: object("metadata", metadata)?, score })
            })
            .collect()
    }

    async fn delete(&self, tenant: TenantId, collection: &Collection, external_ids: &[String]) -> Result<()> {
        check_external_ids(external_ids)?;
        if external_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin(tenant).await?;
        let done =
            sqlx::query("delete from memory_items where tenant_id = $1 and collection = $2 and external_id = any($3)")
                .bind(tenant.as_uuid())
                .bind(collection.as_str())
                .bind(external_ids)
                .execute(tx.conn())
                .await?;
        tx.commit().await?;
        let deleted = done.rows_affected();
        tracing::debug!(tenant_id = %tenant, collection = %collection, deleted, "Vectors deleted.");
        Ok(())
    }

    async fn count(&self, tenant: TenantId, collection: &Collection) -> Result<u64> {
        let mut tx = self.db.begin(tenant).await?;
        let n: i64 = sqlx::query_scalar("select count(*) from memory_items where tenant_id = $1 and collection = $2")
            .bind(tenant.as_uuid())
            .bind(collection.as_str())
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        // count(*) is never negative.
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
