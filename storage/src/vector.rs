//! Vector memory: embeddings a tenant stores and searches by cosine similarity, behind one
//! [`VectorStore`] trait with two backends — pgvector (the default, in PostgreSQL under
//! row-level security) and Qdrant — chosen by [`VectorConfig`] and wrapped in [`VectorMemory`].
//!
//! Unlike the rest of this crate the API is not transaction-based (Qdrant is not PostgreSQL):
//! every operation takes the [`TenantId`] explicitly, and each backend scopes it to that tenant
//! (pgvector by running it in [`Database::begin`], Qdrant by a collection per tenant plus a
//! `tenant_id` payload filter). Every input is validated here, before either backend sees it, so
//! both answer a bad vector, collection, limit or filter with the same
//! [`StorageError::Invalid`].

mod pgvector;
mod qdrant;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use flywheel_contracts::{Secret, TenantId};

use crate::{Database, Result, StorageError};

pub use self::pgvector::PgVectorStore;
pub use self::qdrant::QdrantStore;

/// The length of every embedding (all-MiniLM-L6-v2), fixed by `memory_items.embedding vector(384)`.
pub const DIMENSIONS: usize = 384;
/// The most results one search returns.
pub const MAX_LIMIT: usize = 100;
/// The most items one `upsert`, or external ids one `delete`, carries.
pub const MAX_BATCH: usize = 500;
/// The most conditions one [`MetadataFilter`] holds.
pub const MAX_FILTER_CONDITIONS: usize = 16;
/// The longest external id, in characters (`memory_items_external_id_check`).
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;

/// A named set of vectors within a tenant (`brand_voice`, `past_campaigns`, …): 1-64 lowercase
/// ASCII letters, digits and underscores, the rule of `memory_items.collection`'s check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Collection(String);

impl Collection {
    pub fn parse(s: &str) -> Result<Self> {
        let ok =
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid("collection", "a collection name is 1-64 lowercase letters, digits and underscores"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Collection {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thing to remember: a piece of text, its embedding and free-form metadata, addressed by
/// the caller's own `external_id` (unique within the tenant's collection; storing the same id
/// again replaces the item).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryItem {
    pub external_id: String,
    pub content: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// [`DIMENSIONS`] finite numbers, not all zero.
    pub embedding: Vec<f32>,
}

/// A search hit: the stored item (without its embedding) and its cosine similarity to the
/// query, from -1 to 1 (higher is closer).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredItem {
    pub external_id: String,
    pub content: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub score: f32,
}

/// A value a metadata condition compares with. Only scalars that both backends compare the same
/// way: strings, integers and booleans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

impl From<&str> for FilterValue {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}
impl From<String> for FilterValue {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}
impl From<i64> for FilterValue {
    fn from(v: i64) -> Self {
        Self::Integer(v)
    }
}
impl From<i32> for FilterValue {
    fn from(v: i32) -> Self {
        Self::Integer(v.into())
    }
}
impl From<bool> for FilterValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl FilterValue {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Self::String(s) => serde_json::Value::String(s.clone()),
            Self::Integer(i) => serde_json::Value::from(*i),
            Self::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

/// Metadata equality conditions, all of which must hold: for each `(key, value)` the item's
/// top-level `metadata[key]` equals `value`, or is an array holding `value` (Qdrant's match
/// semantics, reproduced in SQL). Keys are 1-64 ASCII letters, digits, `_` or `-`, so that no
/// key can be read as a path by either backend. An integer condition is meant for integer
/// metadata: PostgreSQL also matches `2` against a stored `2.0`, Qdrant does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataFilter {
    conditions: Vec<(String, FilterValue)>,
}

impl MetadataFilter {
    /// A filter without conditions (it matches every item).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the condition `metadata[key] == value`:
    /// `MetadataFilter::new().equals("lang", "en")?.equals("tier", 2)?`.
    pub fn equals(mut self, key: &str, value: impl Into<FilterValue>) -> Result<Self> {
        let key_ok =
            (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !key_ok {
            return Err(invalid("filter", "a metadata filter key is 1-64 ASCII letters, digits, '_' or '-'"));
        }
        if self.conditions.len() >= MAX_FILTER_CONDITIONS {
            return Err(invalid(
                "filter",
                format!("a metadata filter holds at most {MAX_FILTER_CONDITIONS} conditions"),
            ));
        }
        self.conditions.push((key.to_owned(), value.into()));
        Ok(self)
    }

    pub fn conditions(&self) -> &[(String, FilterValue)] {
        &self.conditions
    }
}

/// Vector memory for every tenant. Each method takes the tenant explicitly and never reads or
/// writes another tenant's vectors.
///
/// `upsert` inserts new external ids and replaces existing ones (content, metadata and
/// embedding together); `delete` ignores ids that are not there; both are idempotent.
pub trait VectorStore: Send + Sync {
    /// Stores `items` (at most [`MAX_BATCH`], external ids distinct) in the tenant's
    /// `collection`, replacing any item with the same external id. All or nothing on pgvector;
    /// one request on Qdrant.
    fn upsert(
        &self,
        tenant: TenantId,
        collection: &Collection,
        items: &[MemoryItem],
    ) -> impl Future<Output = Result<()>> + Send;

    /// The `limit` (1..=[`MAX_LIMIT`]) items of the tenant's `collection` most similar to
    /// `query` by cosine similarity, best first, optionally only those matching `filter`.
    fn search(
        &self,
        tenant: TenantId,
        collection: &Collection,
        query: &[f32],
        limit: usize,
        filter: Option<&MetadataFilter>,
    ) -> impl Future<Output = Result<Vec<ScoredItem>>> + Send;

    /// Removes the items with these external ids (at most [`MAX_BATCH`]) from the tenant's
    /// `collection`.
    fn delete(
        &self,
        tenant: TenantId,
        collection: &Collection,
        external_ids: &[String],
    ) -> impl Future<Output = Result<()>> + Send;

    /// How many items the tenant's `collection` holds.
    fn count(&self, tenant: TenantId, collection: &Collection) -> impl Future<Output = Result<u64>> + Send;
}

/// Which vector backend a node uses. Loaded with the rest of the node's configuration.
#[derive(Debug, Clone, Default)]
pub enum VectorConfig {
    /// `memory_items` in the node's own PostgreSQL (pgvector, HNSW, row-level security).
    #[default]
    Pgvector,
    /// A Qdrant server over gRPC (`http://host:6334`).
    Qdrant { url: String, api_key: Option<Secret<String>> },
}

/// The node's vector memory: whichever backend the configuration chose.
#[derive(Debug, Clone)]
pub enum VectorMemory {
    Pgvector(PgVectorStore),
    Qdrant(QdrantStore),
}

impl VectorMemory {
    /// The backend `config` names. `db` serves the pgvector backend; Qdrant connects lazily, so
    /// an unreachable server shows on the first call (and in [`VectorMemory::ping`]), not here.
    pub fn from_config(config: &VectorConfig, db: Database) -> Result<Self> {
        Ok(match config {
            VectorConfig::Pgvector => Self::Pgvector(PgVectorStore::new(db)),
            VectorConfig::Qdrant { url, api_key } => Self::Qdrant(QdrantStore::connect(url, api_key.as_ref())?),
        })
    }

    /// Whether the backend answers, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Self::Pgvector(s) => s.ping().await,
            Self::Qdrant(s) => s.ping().await,
        }
    }
}

impl VectorStore for VectorMemory {
    async fn upsert(&self, tenant: TenantId, collection: &Collection, items: &[MemoryItem]) -> Result<()> {
        match self {
            Self::Pgvector(s) => s.upsert(tenant, collection, items).await,
            Self::Qdrant(s) => s.upsert(tenant, collection, items).await,
        }
    }

    async fn search(
        &self,
        tenant: TenantId,
        collection: &Collection,
        query: &[f32],
        limit: usize,
        filter: Option<&MetadataFilter>,
    ) -> Result<Vec<ScoredItem>> {
        match self {
            Self::Pgvector(s) => s.search(tenant, collection, query, limit, filter).await,
            Self::Qdrant(s) => s.search(tenant, collection, query, limit, filter).await,
        }
    }

    async fn delete(&self, tenant: TenantId, collection: &Collection, external_ids: &[String]) -> Result<()> {
        match self {
            Self::Pgvector(s) => s.delete(tenant, collection, external_ids).await,
            Self::Qdrant(s) => s.delete(tenant, collection, external_ids).await,
        }
    }

    async fn count(&self, tenant: TenantId, collection: &Collection) -> Result<u64> {
        match self {
            Self::Pgvector(s) => s.count(tenant, collection).await,
            Self::Qdrant(s) => s.count(tenant, collection).await,
        }
    }
}

// ------------------------------------------------------------------------------------------
// Validation shared by both backends
// ------------------------------------------------------------------------------------------

fn invalid(field: &'static str, message: impl Into<String>) -> StorageError {
    StorageError::Invalid { field: field.into(), message: message.into() }
}

/// Checks an embedding: [`DIMENSIONS`] long, every number finite, not all zero (a zero vector
/// has no direction, so its cosine similarity is undefined). `what` names it in the message.
fn check_embedding(what: &str, embedding: &[f32]) -> Result<()> {
    if embedding.len() != DIMENSIONS {
        return Err(invalid("embedding", format!("{what} has {} dimensions; expected {DIMENSIONS}", embedding.len())));
    }
    if let Some(i) = embedding.iter().position(|x| !x.is_finite()) {
        return Err(invalid("embedding", format!("{what} has a non-finite number at index {i}")));
    }
    if embedding.iter().all(|x| *x == 0.0) {
        return Err(invalid("embedding", format!("{what} is all zeros")));
    }
    Ok(())
}

fn check_external_id(id: &str) -> Result<()> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_EXTERNAL_ID_CHARS {
        return Err(invalid("external_id", format!("an external id is 1-{MAX_EXTERNAL_ID_CHARS} characters")));
    }
    Ok(())
}

/// Checks an upsert batch: size, distinct valid external ids, valid embeddings.
fn check_items(items: &[MemoryItem]) -> Result<()> {
    if items.len() > MAX_BATCH {
        return Err(invalid("items", format!("at most {MAX_BATCH} items per upsert")));
    }
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        check_external_id(&item.external_id)?;
        if !seen.insert(item.external_id.as_str()) {
            return Err(invalid(
                "external_id",
                format!("external id {:?} appears twice in one upsert", item.external_id),
            ));
        }
        check_embedding(&format!("the embedding of {:?}", item.external_id), &item.embedding)?;
    }
    Ok(())
}

fn check_external_ids(ids: &[String]) -> Result<()> {
    if ids.len() > MAX_BATCH {
        return Err(invalid("external_ids", format!("at most {MAX_BATCH} external ids per delete")));
    }
    ids.iter().try_for_each(|id| check_external_id(id))
}

/// Checks a search's query vector and limit; returns the limit as the backends' integer type.
fn check_search(query: &[f32], limit: usize) -> Result<u32> {
    check_embedding("the query embedding", query)?;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit", format!("limit must be 1-{MAX_LIMIT}")));
    }
    // Lossless: limit <= MAX_LIMIT.
    Ok(u32::try_from(limit).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field an `Invalid` error names, or a description of what came instead.
    fn field<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(StorageError::Invalid { field, .. }) => field.into_owned(),
            other => format!("not Invalid: {other:?}"),
        }
    }

    #[test]
    fn collections_follow_the_check_constraint() {
        assert!(Collection::parse("brand_voice_2").is_ok());
        assert!(Collection::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Brand", "brand-voice", "brand voice", "é", &"a".repeat(65)] {
            assert_eq!(field(Collection::parse(bad)), "collection", "{bad:?}");
        }
    }

    #[test]
    fn embeddings_are_checked_without_panicking() {
        let mut v = vec![0.5_f32; DIMENSIONS];
        assert!(check_embedding("v", &v).is_ok());
        assert_eq!(field(check_embedding("v", &v[..10])), "embedding");
        assert_eq!(field(check_embedding("v", &[])), "embedding");
        v[3] = f32::NAN;
        assert_eq!(field(check_embedding("v", &v)), "embedding");
        v[3] = f32::INFINITY;
        assert_eq!(field(check_embedding("v", &v)), "embedding");
        assert_eq!(field(check_embedding("v", &[0.0; DIMENSIONS])), "embedding");
    }

    #[test]
    fn limits_and_batches_are_bounded() {
        let q = vec![1.0_f32; DIMENSIONS];
        assert_eq!(check_search(&q, 1).ok(), Some(1));
        assert_eq!(check_search(&q, MAX_LIMIT).ok(), Some(100));
        assert_eq!(field(check_search(&q, 0)), "limit");
        assert_eq!(field(check_search(&q, MAX_LIMIT + 1)), "limit");
        let item = |id: &str| MemoryItem {
            external_id: id.to_owned(),
            content: String::new(),
            metadata: serde_json::Map::new(),
            embedding: q.clone(),
        };
        assert_eq!(field(check_items(&[item("a"), item("a")])), "external_id");
        assert_eq!(field(check_items(&[item("")])), "external_id");
        assert!(check_items(&[item(&"é".repeat(256))]).is_ok());
        assert_eq!(field(check_items(&[item(&"é".repeat(257))])), "external_id");
        let many: Vec<_> = (0..=MAX_BATCH).map(|i| item(&i.to_string())).collect();
        assert_eq!(field(check_items(&many)), "items");
    }

    #[test]
    fn filter_keys_cannot_be_paths() {
        let ok = MetadataFilter::new().equals("lang", "en").and_then(|f| f.equals("tier-2", 3)?.equals("Ok_1", true));
        assert_eq!(ok.map(|f| f.conditions().len()).ok(), Some(3));
        for bad in ["", "a.b", "a[0]", "a\"b", "ключ", &"k".repeat(65)] {
            assert_eq!(field(MetadataFilter::new().equals(bad, "x")), "filter", "{bad:?}");
        }
        let mut f = MetadataFilter::new();
        for i in 0..MAX_FILTER_CONDITIONS {
            f = f.equals(&format!("k{i}"), 1).expect("within the bound");
        }
        assert_eq!(field(f.equals("one_more", 1)), "filter");
    }
}
