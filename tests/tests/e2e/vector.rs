//! Vector memory, one behavioural test body run against both backends: pgvector on the real
//! PostgreSQL always, Qdrant when `QDRANT_URL` names a server. Tenant isolation, replace by
//! external id, metadata filters, cosine ranking, validation, delete and count.

use flywheel_contracts::{Slug, TenantId};
use flywheel_storage::StorageError;
use flywheel_storage::vector::{
    Collection, DIMENSIONS, MemoryItem, MetadataFilter, PgVectorStore, ScoredItem, VectorConfig, VectorMemory,
    VectorStore,
};
use flywheel_tests::TestDb;
use serde_json::json;

/// A vector along axes: `axes(&[(0, 1.0), (1, 0.5)])` is 1·e₀ + 0.5·e₁.
fn axes(weights: &[(usize, f32)]) -> Vec<f32> {
    let mut v = vec![0.0; DIMENSIONS];
    for &(i, w) in weights {
        v[i] = w;
    }
    v
}

fn item(external_id: &str, content: &str, metadata: serde_json::Value, embedding: Vec<f32>) -> MemoryItem {
    let serde_json::Value::Object(metadata) = metadata else {
        panic!("test metadata must be an object");
    };
    MemoryItem { external_id: external_id.to_owned(), content: content.to_owned(), metadata, embedding }
}

fn ids(hits: &[ScoredItem]) -> Vec<&str> {
    hits.iter().map(|h| h.external_id.as_str()).collect()
}

fn filter(conditions: &[(&str, serde_json::Value)]) -> MetadataFilter {
    conditions.iter().fold(MetadataFilter::new(), |f, (k, v)| {
        match v {
            serde_json::Value::String(s) => f.equals(k, s.as_str()),
            serde_json::Value::Bool(b) => f.equals(k, *b),
            other => f.equals(k, other.as_i64().expect("test filter values are strings, integers or booleans")),
        }
        .expect("valid filter")
    })
}

/// The field of an `Invalid` error, or what came instead.
fn invalid_field<T: std::fmt::Debug>(r: Result<T, StorageError>) -> String {
    match r {
        Err(StorageError::Invalid { field, .. }) => field.into_owned(),
        other => format!("not Invalid: {other:?}"),
    }
}

fn assert_close(actual: f32, expected: f32, what: &str) {
    assert!((actual - expected).abs() < 1e-4, "{what}: score {actual}, expected {expected}");
}

/// The behaviour both backends must show. `a` and `b` are two tenants with nothing stored yet.
async fn vector_memory_behaves(store: &impl VectorStore, a: TenantId, b: TenantId) {
    let notes = Collection::parse("notes").expect("valid collection");
    let other = Collection::parse("other_notes").expect("valid collection");
    let q = axes(&[(0, 1.0)]);

    // Nothing yet: not an error, just empty.
    assert_eq!(store.count(a, &notes).await.expect("count"), 0);
    assert!(store.search(a, &notes, &q, 5, None).await.expect("search").is_empty());

    // Cosine similarity to e₀: exact 1, near 0.9939, mid 0.7071, far 0, opposite -1. Lengths
    // differ on purpose (cosine ignores them).
    let a_items = [
        item(
            "exact",
            "exactly the query",
            json!({"lang": "en", "tier": 1, "tags": ["promo", "spring"]}),
            axes(&[(0, 3.0)]),
        ),
        item("near", "close to it", json!({"lang": "de", "tier": 2}), axes(&[(0, 0.9), (1, 0.1)])),
        item("mid", "halfway", json!({"lang": "en", "tier": 2, "tags": ["promo"]}), axes(&[(0, 1.0), (1, 1.0)])),
        item("far", "orthogonal", json!({"lang": "en", "tier": 3}), axes(&[(1, 1.0)])),
        item("opposite", "the other way", json!({"lang": "fr", "vip": true}), axes(&[(0, -1.0)])),
    ];
    store.upsert(a, &notes, &a_items).await.expect("upsert A");
    store
        .upsert(b, &notes, &[item("b-only", "B's note", json!({"lang": "en"}), axes(&[(2, 1.0)]))])
        .await
        .expect("upsert B");
    assert_eq!(store.count(a, &notes).await.expect("count A"), 5);
    assert_eq!(store.count(b, &notes).await.expect("count B"), 1);

    // B searching with A's exact vector finds only its own item, even with a filter A would match.
    let hits = store.search(b, &notes, &q, 100, None).await.expect("search as B");
    assert_eq!(ids(&hits), ["b-only"], "B sees only its own vectors");
    assert_eq!(hits[0].content, "B's note");
    assert_close(hits[0].score, 0.0, "b-only");
    let hits = store.search(b, &notes, &q, 10, Some(&filter(&[("tier", json!(1))]))).await.expect("search as B");
    assert!(hits.is_empty(), "B's filtered search finds none of A's items: {:?}", ids(&hits));

    // Ranking by cosine similarity, best first, with the similarity as the score.
    let hits = store.search(a, &notes, &q, 10, None).await.expect("search as A");
    assert_eq!(ids(&hits), ["exact", "near", "mid", "far", "opposite"]);
    for (hit, expected) in hits.iter().zip([1.0, 0.993_884, std::f32::consts::FRAC_1_SQRT_2, 0.0, -1.0]) {
        assert_close(hit.score, expected, &hit.external_id);
    }
    assert_eq!(hits[0].content, "exactly the query");
    assert_eq!(
        serde_json::Value::Object(hits[0].metadata.clone()),
        json!({"lang": "en", "tier": 1, "tags": ["promo", "spring"]})
    );
    let hits = store.search(a, &notes, &axes(&[(1, 1.0)]), 2, None).await.expect("search along e1");
    assert_eq!(ids(&hits), ["far", "mid"], "the limit applies after ranking");

    // Metadata equality filters: all conditions hold; an array matches when it holds the value.
    let cases: [(MetadataFilter, &[&str]); 8] = [
        (filter(&[("lang", json!("en"))]), &["exact", "mid", "far"]),
        (filter(&[("lang", json!("en")), ("tier", json!(2))]), &["mid"]),
        (filter(&[("tags", json!("promo"))]), &["exact", "mid"]),
        (filter(&[("tags", json!("spring")), ("lang", json!("en"))]), &["exact"]),
        (filter(&[("vip", json!(true))]), &["opposite"]),
        (filter(&[("lang", json!("en")), ("lang", json!("de"))]), &[]),
        (filter(&[("tier", json!("1"))]), &[]),
        (filter(&[("missing", json!("x"))]), &[]),
    ];
    for (conditions, expected) in &cases {
        let hits = store.search(a, &notes, &q, 10, Some(conditions)).await.expect("filtered search");
        assert_eq!(ids(&hits), *expected, "{conditions:?}");
    }
    let hits = store.search(a, &notes, &q, 1, Some(&filter(&[("lang", json!("en"))]))).await.expect("search");
    assert_eq!(ids(&hits), ["exact"], "the limit applies after filtering");

    // Upsert replaces by external id: content, metadata and embedding together.
    store
        .upsert(a, &notes, &[item("far", "far, moved", json!({"lang": "xx"}), axes(&[(0, 0.95), (1, 0.05)]))])
        .await
        .expect("replace");
    assert_eq!(store.count(a, &notes).await.expect("count"), 5, "a replace adds no item");
    let hits = store.search(a, &notes, &q, 3, None).await.expect("search");
    assert_eq!(ids(&hits), ["exact", "far", "near"]);
    assert_eq!(hits[1].content, "far, moved");
    assert_eq!(serde_json::Value::Object(hits[1].metadata.clone()), json!({"lang": "xx"}));
    let hits = store.search(a, &notes, &q, 10, Some(&filter(&[("lang", json!("en"))]))).await.expect("search");
    assert_eq!(ids(&hits), ["exact", "mid"], "the old metadata is gone");

    // Collections are separate within a tenant.
    store.upsert(a, &other, &[item("exact", "elsewhere", json!({}), q.clone())]).await.expect("upsert other");
    assert_eq!(store.count(a, &other).await.expect("count"), 1);
    assert_eq!(store.count(a, &notes).await.expect("count"), 5);
    let hits = store.search(a, &other, &q, 10, None).await.expect("search other");
    assert_eq!(ids(&hits), ["exact"]);
    assert_eq!(hits[0].content, "elsewhere");

    // Bad input is Invalid, names its field, and stores nothing.
    let short = item("short", "", json!({}), vec![1.0; DIMENSIONS - 1]);
    assert_eq!(invalid_field(store.upsert(a, &notes, &[short]).await), "embedding");
    let mut nan = axes(&[(0, 1.0)]);
    nan[7] = f32::NAN;
    let good = item("good", "", json!({}), q.clone());
    let bad = item("nan", "", json!({}), nan.clone());
    assert_eq!(invalid_field(store.upsert(a, &notes, &[good.clone(), bad]).await), "embedding");
    assert_eq!(invalid_field(store.upsert(a, &notes, &[good.clone(), good]).await), "external_id");
    let zero = item("zero", "", json!({}), vec![0.0; DIMENSIONS]);
    assert_eq!(invalid_field(store.upsert(a, &notes, &[zero]).await), "embedding");
    assert_eq!(invalid_field(store.upsert(a, &notes, &[item("", "", json!({}), q.clone())]).await), "external_id");
    assert_eq!(invalid_field(store.search(a, &notes, &vec![1.0; DIMENSIONS + 1], 5, None).await), "embedding");
    assert_eq!(invalid_field(store.search(a, &notes, &[], 5, None).await), "embedding");
    assert_eq!(invalid_field(store.search(a, &notes, &nan, 5, None).await), "embedding");
    let mut inf = q.clone();
    inf[0] = f32::INFINITY;
    assert_eq!(invalid_field(store.search(a, &notes, &inf, 5, None).await), "embedding");
    assert_eq!(invalid_field(store.search(a, &notes, &q, 0, None).await), "limit");
    assert_eq!(invalid_field(store.search(a, &notes, &q, 101, None).await), "limit");
    assert_eq!(store.count(a, &notes).await.expect("count"), 5, "rejected upserts stored nothing");

    // Delete: only the named ids, only the caller's; absent ids are ignored.
    store.delete(b, &notes, &["exact".to_owned(), "near".to_owned()]).await.expect("B deletes");
    assert_eq!(store.count(a, &notes).await.expect("count"), 5, "B cannot delete A's items");
    assert_eq!(store.count(b, &notes).await.expect("count"), 1);
    store.delete(a, &notes, &["near".to_owned(), "never-stored".to_owned()]).await.expect("delete");
    store.delete(a, &notes, &[]).await.expect("delete nothing");
    assert_eq!(store.count(a, &notes).await.expect("count"), 4);
    let hits = store.search(a, &notes, &q, 10, None).await.expect("search");
    assert_eq!(ids(&hits), ["exact", "far", "mid", "opposite"]);
    assert_eq!(store.count(a, &other).await.expect("count"), 1, "other collections are untouched");
    store.delete(b, &notes, &["b-only".to_owned()]).await.expect("delete B's");
    assert_eq!(store.count(b, &notes).await.expect("count"), 0);
    assert!(store.search(b, &notes, &q, 10, None).await.expect("search").is_empty());
}

async fn two_tenants(test: &TestDb) -> (TenantId, TenantId) {
    let a = test.db.create_tenant("Tenant A", &Slug::parse("tenant-a").expect("slug"), "test").await.expect("A");
    let b = test.db.create_tenant("Tenant B", &Slug::parse("tenant-b").expect("slug"), "test").await.expect("B");
    (a.tenant_id, b.tenant_id)
}

#[tokio::test]
async fn pgvector_memory() {
    let test = TestDb::new().await;
    let (a, b) = two_tenants(&test).await;
    let store = VectorMemory::from_config(&VectorConfig::default(), test.db.clone()).expect("pgvector backend");
    assert!(matches!(store, VectorMemory::Pgvector(_)), "pgvector is the default");
    store.ping().await.expect("ping");
    vector_memory_behaves(&store, a, b).await;
}

#[tokio::test]
async fn qdrant_memory() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        println!("qdrant_memory skipped: QDRANT_URL is not set");
        return;
    };
    let api_key = std::env::var("QDRANT_API_KEY").ok().map(flywheel_contracts::Secret::new);
    let test = TestDb::new().await;
    let store =
        VectorMemory::from_config(&VectorConfig::Qdrant { url, api_key }, test.db.clone()).expect("Qdrant backend");
    store.ping().await.expect("Qdrant answers");
    // Fresh tenant ids: their Qdrant collections cannot hold anything from an earlier run.
    vector_memory_behaves(&store, TenantId::new(), TenantId::new()).await;
}

/// Deterministic pseudo-random embeddings (xorshift64), so a test is the same on every run.
struct Embeddings(u64);

impl Embeddings {
    fn next(&mut self) -> Vec<f32> {
        (0..DIMENSIONS)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                // The top 24 bits, as a number in [-0.5, 0.5).
                let top = u32::try_from(self.0 >> 40).expect("24 bits fit");
                f32::from(u16::try_from(top >> 8).expect("16 bits fit")) / 65_536.0 - 0.5
            })
            .collect()
    }
}

fn cosine(x: &[f32], y: &[f32]) -> f32 {
    let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    dot / (norm(x) * norm(y))
}

/// The external ids of `items` ordered by exact cosine similarity to `query`, best first.
fn exact_order<'a>(items: impl IntoIterator<Item = &'a MemoryItem>, query: &[f32]) -> Vec<&'a str> {
    let mut scored: Vec<(f32, &str)> =
        items.into_iter().map(|i| (cosine(&i.embedding, query), i.external_id.as_str())).collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0));
    scored.into_iter().map(|(_, id)| id).collect()
}

/// pgvector's HNSW index holds every tenant's vectors, and row-level security and metadata
/// filters apply after the index scan, so a plain index scan returns at most `ef_search`
/// candidates before filtering. A tenant's search must still return every match, in order, when
/// its own non-matching vectors or another tenant's crowd the index (`hnsw.iterative_scan =
/// strict_order`). With statistics (ANALYZE, as autovacuum would run) the planner uses the
/// HNSW index for a collection this size; without the iterative scan the filtered search below
/// finds none of the five matches.
#[tokio::test]
async fn pgvector_search_is_not_crowded_out() {
    let test = TestDb::new().await;
    let (a, b) = two_tenants(&test).await;
    let store = PgVectorStore::new(test.db.clone());
    let notes = Collection::parse("notes").expect("valid collection");
    let mut embeddings = Embeddings(0x9e37_79b9_7f4a_7c15);

    // A: 3,000 vectors, five of them tagged rare.
    let a_items: Vec<MemoryItem> =
        (0..3000).map(|i| item(&format!("a{i}"), "", json!({"rare": i % 600 == 0}), embeddings.next())).collect();
    for chunk in a_items.chunks(500) {
        store.upsert(a, &notes, chunk).await.expect("upsert A's items");
    }
    // B: three vectors.
    let b_items: Vec<MemoryItem> = (0..3).map(|i| item(&format!("b{i}"), "", json!({}), embeddings.next())).collect();
    store.upsert(b, &notes, &b_items).await.expect("upsert B's items");
    let mut owner = test.owner().await;
    sqlx::query("analyze memory_items").execute(&mut owner).await.expect("analyze");

    let q = embeddings.next();
    let rare = MetadataFilter::new().equals("rare", true).expect("filter");
    let hits = store.search(a, &notes, &q, 10, Some(&rare)).await.expect("filtered search as A");
    let expected = exact_order(a_items.iter().filter(|i| i.metadata["rare"] == json!(true)), &q);
    assert_eq!(ids(&hits), expected, "every rare item, in order");
    for hit in &hits {
        let stored = a_items.iter().find(|i| i.external_id == hit.external_id).expect("one of A's");
        assert_close(hit.score, cosine(&stored.embedding, &q), &hit.external_id);
    }

    let hits = store.search(b, &notes, &q, 10, None).await.expect("search as B");
    assert_eq!(ids(&hits), exact_order(&b_items, &q), "all of B's items, none of A's");

    let hits = store.search(a, &notes, &q, 100, None).await.expect("search as A");
    assert_eq!(hits.len(), 100);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
}

#[tokio::test]
async fn collection_names_follow_the_database_rule() {
    assert!(Collection::parse("brand_voice_2024").is_ok());
    for bad in ["", "Brand", "brand-voice", "brand.voice", &"a".repeat(65)] {
        assert_eq!(invalid_field(Collection::parse(bad)), "collection", "{bad:?}");
    }
}
