//! The Qdrant backend (gRPC, port 6334): one Qdrant collection per tenant and Flywheel
//! collection, created on first upsert, with a `tenant_id` payload filter on every read as a
//! second guard.
//!
//! Point ids are derived from (tenant, collection, external id), so storing an external id again
//! overwrites its point: that is the replace of `upsert`. They are name-based UUIDs — version 8
//! with SHA-256 as in RFC 9562 (appendix B.2) rather than version 5, because this crate already
//! has SHA-256 and the `uuid` crate's SHA-1 (`v5` feature) would be a new dependency.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flywheel_contracts::{Secret, TenantId};
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, PointStruct, Query, QueryPointsBuilder, ScoredPoint, UpsertPointsBuilder, Value,
    VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Collection, DIMENSIONS, FilterValue, MemoryItem, MetadataFilter, ScoredItem, VectorStore, check_external_ids,
    check_items, check_search,
};
use crate::row::object;
use crate::{Result, StorageError};

/// Payload keys of every point.
const TENANT_FIELD: &str = "tenant_id";
const EXTERNAL_ID_FIELD: &str = "external_id";
const CONTENT_FIELD: &str = "content";
const METADATA_FIELD: &str = "metadata";

/// The namespace of Flywheel's point ids. Fixed forever: changing it orphans every stored point.
const POINT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x418d_6e34_323f_4ad6_b163_8e82_e5fe_25aa);

/// How many collections a store remembers as existing before it starts over (and checks again).
const MAX_KNOWN_COLLECTIONS: usize = 10_000;

/// gRPC status codes (wire numbers fixed by the gRPC specification; tonic is not a direct
/// dependency of this crate).
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_NOT_FOUND: i32 = 5;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_ABORTED: i32 = 10;
const GRPC_UNAVAILABLE: i32 = 14;

/// Vector memory in a Qdrant server.
#[derive(Clone)]
pub struct QdrantStore {
    client: Qdrant,
    /// Qdrant collections this process has created or seen, so an upsert does not ask again.
    known: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStore").finish_non_exhaustive()
    }
}

impl QdrantStore {
    /// A client for the Qdrant server at `url` (gRPC, e.g. `http://127.0.0.1:6334`). Connects
    /// lazily: an unreachable server shows on the first call, or in [`QdrantStore::ping`].
    pub fn connect(url: &str, api_key: Option<&Secret<String>>) -> Result<Self> {
        // The compatibility check would block this thread on a health check and print to
        // stdout; readiness uses `ping` instead.
        let mut config = Qdrant::from_url(url)
            .skip_compatibility_check()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        if let Some(key) = api_key {
            config = config.api_key(key.expose().clone());
        }
        let client = config.build().map_err(|e| StorageError::Internal(format!("Qdrant URL is not usable: {e}")))?;
        Ok(Self { client, known: Arc::default() })
    }

    pub async fn ping(&self) -> Result<()> {
        self.client.health_check().await.map_err(|e| storage_error("health check", e))?;
        Ok(())
    }

    fn is_known(&self, name: &str) -> bool {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).contains(name)
    }

    fn remember(&self, name: &str) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_KNOWN_COLLECTIONS {
            known.clear();
        }
        known.insert(name.to_owned());
    }

    fn forget(&self, name: &str) {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
    }

    /// Creates the Qdrant collection `name` (384 dimensions, cosine) and its `tenant_id` index
    /// unless this process already knows it exists.
    async fn ensure_collection(&self, name: &str) -> Result<()> {
        if self.is_known(name) {
            return Ok(());
        }
        let exists = |e| storage_error("collection check", e);
        if !self.client.collection_exists(name).await.map_err(exists)? {
            let created = self
                .client
                .create_collection(
                    CreateCollectionBuilder::new(name)
                        .vectors_config(VectorParamsBuilder::new(DIMENSIONS as u64, Distance::Cosine)),
                )
                .await;
            // Another node or task may have created it in between: that is success too.
            if let Err(e) = created
                && !self.client.collection_exists(name).await.map_err(exists)?
            {
                return Err(storage_error("create collection", e));
            }
            tracing::info!(collection = name, "Qdrant collection created.");
        }
        // Idempotent; also repairs a collection whose creator stopped before this step.
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(name, TENANT_FIELD, FieldType::Keyword).wait(true),
            )
            .await
            .map_err(|e| storage_error("create payload index", e))?;
        self.remember(name);
        Ok(())
    }
}

impl VectorStore for QdrantStore {
    async fn upsert(&self, tenant: TenantId, collection: &Collection, items: &[MemoryItem]) -> Result<()> {
        check_items(items)?;
        if items.is_empty() {
            return Ok(());
        }
        let name = collection_name(tenant, collection);
        self.ensure_collection(&name).await?;
        let points: Vec<PointStruct> = items
            .iter()
            .map(|item| {
                let mut payload = Payload::with_capacity(4);
                payload.insert(TENANT_FIELD, tenant.to_string());
                payload.insert(EXTERNAL_ID_FIELD, item.external_id.as_str());
                payload.insert(CONTENT_FIELD, item.content.as_str());
                payload.insert(METADATA_FIELD, Value::from(serde_json::Value::Object(item.metadata.clone())));
                PointStruct::new(
                    point_id(tenant, collection, &item.external_id).to_string(),
                    item.embedding.clone(),
                    payload,
                )
            })
            .collect();
        // wait: the points are searchable when this returns, as they are after a commit.
        if let Err(e) = self.client.upsert_points(UpsertPointsBuilder::new(&name, points).wait(true)).await {
            // The collection may have been dropped behind our back: check again next time.
            self.forget(&name);
            return Err(storage_error("upsert", e));
        }
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
        let mut conditions = vec![tenant_condition(tenant)];
        for (key, value) in filter.map(MetadataFilter::conditions).unwrap_or_default() {
            // Quoted, so the key is one path segment whatever it holds (it holds no quote).
            let path = format!("{METADATA_FIELD}.\"{key}\"");
            conditions.push(match value {
                FilterValue::String(s) => Condition::matches(path, s.clone()),
                FilterValue::Integer(i) => Condition::matches(path, *i),
                FilterValue::Bool(b) => Condition::matches(path, *b),
            });
        }
        let request = QueryPointsBuilder::new(collection_name(tenant, collection))
            .query(Query::new_nearest(query.to_vec()))
            .limit(u64::from(limit))
            .filter(Filter::must(conditions))
            .with_payload(true);
        let points = match self.client.query(request).await {
            Ok(response) => response.result,
            // The collection is created by the first upsert: until then it holds nothing.
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(storage_error("search", e)),
        };
        points.into_iter().map(|p| scored_item(tenant, p)).collect()
    }

    async fn delete(&self, tenant: TenantId, collection: &Collection, external_ids: &[String]) -> Result<()> {
        check_external_ids(external_ids)?;
        if external_ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = external_ids.iter().map(|id| point_id(tenant, collection, id).to_string()).collect();
        // By filter rather than by ids alone, so the tenant guard applies to deletes as well.
        let selector = Filter::must([tenant_condition(tenant), Condition::has_id(ids)]);
        let request = DeletePointsBuilder::new(collection_name(tenant, collection)).points(selector).wait(true);
        match self.client.delete_points(request).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(storage_error("delete", e)),
        }
        tracing::debug!(tenant_id = %tenant, collection = %collection, ids = external_ids.len(), "Vectors deleted.");
        Ok(())
    }

    async fn count(&self, tenant: TenantId, collection: &Collection) -> Result<u64> {
        let request = CountPointsBuilder::new(collection_name(tenant, collection))
            .filter(Filter::must([tenant_condition(tenant)]))
            .exact(true);
        match self.client.count(request).await {
            Ok(response) => Ok(response.result.map_or(0, |r| r.count)),
            Err(e) if is_not_found(&e) => Ok(0),
            Err(e) => Err(storage_error("count", e)),
        }
    }
}

/// The Qdrant collection of one tenant's Flywheel collection: `fw_<tenant uuid, simple>_<name>`
/// (at most 100 characters, all of them `[a-z0-9_]`).
fn collection_name(tenant: TenantId, collection: &Collection) -> String {
    format!("fw_{}_{}", tenant.as_uuid().simple(), collection.as_str())
}

/// The point id of an external id: a name-based UUID (RFC 9562 version 8, SHA-256) of the
/// tenant, the collection and the external id. The encoding is unambiguous: the tenant is 16
/// bytes and the collection cannot contain the 0x1f separator.
fn point_id(tenant: TenantId, collection: &Collection, external_id: &str) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(POINT_ID_NAMESPACE.as_bytes());
    hash.update(tenant.as_uuid().as_bytes());
    hash.update(collection.as_str().as_bytes());
    hash.update([0x1f]);
    hash.update(external_id.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn tenant_condition(tenant: TenantId) -> Condition {
    Condition::matches(TENANT_FIELD, tenant.to_string())
}

/// A search hit back as a [`ScoredItem`], after checking it carries the tenant's id.
fn scored_item(tenant: TenantId, point: ScoredPoint) -> Result<ScoredItem> {
    let mut payload = point.payload;
    let owner = take_string(&mut payload, TENANT_FIELD)?;
    if owner != tenant.to_string() {
        // Broken invariant: the collection name and the filter both scope the search.
        tracing::error!(tenant_id = %tenant, point_tenant = %owner, "Qdrant returned another tenant's point.");
        return Err(StorageError::Internal("Qdrant returned a point of another tenant".into()));
    }
    let metadata = match payload.remove(METADATA_FIELD) {
        Some(value) => object(METADATA_FIELD, serde_json::Value::from(value))?,
        None => serde_json::Map::new(),
    };
    Ok(ScoredItem {
        external_id: take_string(&mut payload, EXTERNAL_ID_FIELD)?,
        content: take_string(&mut payload, CONTENT_FIELD)?,
        metadata,
        score: point.score,
    })
}

fn take_string(payload: &mut std::collections::HashMap<String, Value>, key: &str) -> Result<String> {
    match payload.remove(key).and_then(|v| v.kind) {
        Some(Kind::StringValue(s)) => Ok(s),
        _ => Err(StorageError::Internal(format!("Qdrant point without a string {key:?} in its payload"))),
    }
}

fn grpc_code(e: &QdrantError) -> Option<i32> {
    match e {
        QdrantError::ResponseError { status } | QdrantError::ResourceExhaustedError { status, .. } => {
            Some(i32::from(status.code()))
        }
        _ => None,
    }
}

fn is_not_found(e: &QdrantError) -> bool {
    grpc_code(e) == Some(GRPC_NOT_FOUND)
}

/// A Qdrant failure as a `StorageError`: transient ones (unreachable, overloaded, timed out)
/// are `Unavailable` and worth a retry; the rest are ours to fix (`Internal`), since every input
/// was validated before the request.
fn storage_error(operation: &str, e: QdrantError) -> StorageError {
    let retryable = matches!(e, QdrantError::Io(_))
        || grpc_code(&e).is_some_and(|c| {
            [GRPC_CANCELLED, GRPC_DEADLINE_EXCEEDED, GRPC_RESOURCE_EXHAUSTED, GRPC_ABORTED, GRPC_UNAVAILABLE]
                .contains(&c)
        });
    let message = format!("Qdrant {operation}: {e}");
    if retryable { StorageError::Unavailable(message) } else { StorageError::Internal(message) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_deterministic_and_scoped() {
        let a = TenantId::new();
        let b = TenantId::new();
        let c = Collection::parse("notes").expect("valid");
        let d = Collection::parse("notes2").expect("valid");
        let id = point_id(a, &c, "x");
        assert_eq!(id, point_id(a, &c, "x"));
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(id, point_id(b, &c, "x"));
        assert_ne!(id, point_id(a, &d, "x"));
        assert_ne!(id, point_id(a, &c, "y"));
        // "notes" + "2x" must not collide with "notes2" + "x".
        assert_ne!(point_id(a, &c, "2x"), point_id(a, &d, "x"));
    }

    #[test]
    fn collection_names_are_per_tenant_and_valid() {
        let a = TenantId::new();
        let name = collection_name(a, &Collection::parse(&"z".repeat(64)).expect("valid"));
        assert_eq!(name.len(), 100);
        assert!(name.starts_with(&format!("fw_{}_", a.as_uuid().simple())));
        assert_ne!(name, collection_name(TenantId::new(), &Collection::parse(&"z".repeat(64)).expect("valid")));
    }
}
