//! The edge's cache of write-key lookups, so that a tracking request does not wait on PostgreSQL.
//!
//! - A lookup is used for at most the TTL after it was made, so a rotated key stops working
//!   within that on every node.
//! - A key in use is looked up again ahead of time: the first request that finds its entry past
//!   half the TTL starts a refresh in the background and goes on with the entry. Without that,
//!   every busy key expired in the request path, and since a node learns its tenants' keys in the
//!   same moments (at start, under the first load), they kept expiring together: every TTL, one
//!   request per tenant waited on a lookup at once, and the requests behind them on the same
//!   cores with them. In the ingest benchmark that made most of the 99th percentile's requests in
//!   a single quarter-second.
//! - Requests that find no entry for the same key wait for one lookup, not one each (a node
//!   started under load, or a key's first requests).
//! - A tenant whose settings changed on this node is forgotten at once; a lookup that began before
//!   that is not cached when it ends.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flywheel_contracts::TenantId;
use flywheel_storage::tracking::WriteKeyInfo;
use tokio::sync::OnceCell;

/// What a lookup found: the key's tenant and settings, or `None` (no such key).
pub(crate) type Found = Option<Arc<WriteKeyInfo>>;

/// A lookup under way: once done, the generation it began at and what it found.
type Lookup = Arc<OnceCell<(u64, Found)>>;

/// Entries at most; beyond, expired entries go first, then unknown keys (a flood of made-up keys
/// must not evict the real ones), and only then everything.
const MAX_ENTRIES: usize = 10_000;

/// A lookup, when it was made, and whether a refresh of it is under way.
struct Entry {
    at: Instant,
    found: Found,
    refreshing: bool,
}

/// What the cache holds for a key.
#[derive(Debug, PartialEq)]
pub(crate) enum Cached {
    /// A lookup within the TTL.
    Fresh(Found),
    /// The same, past half the TTL: the caller refreshes it (see [`KeyCache::refresh`]); other
    /// callers get `Fresh` until it is done.
    Stale(Found),
    /// Nothing usable: the caller looks the key up ([`KeyCache::look_up`]).
    Missing,
}

#[derive(Default)]
pub(crate) struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// Lookups under way for keys without an entry, one per key (as many as requests in flight
    /// at most: each is removed when it ends).
    lookups: Mutex<HashMap<String, Lookup>>,
    /// Bumped when a tenant is forgotten: a lookup that began before is not cached (each lookup
    /// under way holds the generation it began at).
    generation: AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").field("ttl", &self.ttl).field("entries", &lock(&self.entries).len()).finish()
    }
}

/// A guard of the lock, also after a panic elsewhere (the maps stay consistent: every change
/// to them is one call).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, ..Self::default() }
    }

    /// What the cache holds for `key` at `now`. `Stale` is answered once per refresh: the caller
    /// that gets it must end the refresh with [`KeyCache::refresh`].
    pub(crate) fn get(&self, key: &str, now: Instant) -> Cached {
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(key) else { return Cached::Missing };
        let age = now.saturating_duration_since(entry.at);
        if age >= self.ttl {
            return Cached::Missing;
        }
        // An unknown key is not refreshed ahead: nothing legitimate sends with it.
        if age >= self.ttl / 2 && entry.found.is_some() && !entry.refreshing {
            entry.refreshing = true;
            return Cached::Stale(entry.found.clone());
        }
        Cached::Fresh(entry.found.clone())
    }

    /// Where a refresh begins: pass it to [`KeyCache::refresh`] with what the lookup found.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Ends a refresh that began at `generation`: caches what it found, or, when it failed, lets
    /// the next request start another (the entry stays usable until its TTL).
    pub(crate) fn refresh<E>(&self, key: &str, generation: u64, found: Result<Found, E>) {
        match found {
            Ok(found) => self.store(key, generation, found),
            Err(_) => {
                if let Some(entry) = lock(&self.entries).get_mut(key) {
                    entry.refreshing = false;
                }
            }
        }
    }

    /// Looks `key` up with `lookup`, unless a lookup of it is under way: then waits for that one
    /// (and, should it fail, runs its own). What is found is cached.
    pub(crate) async fn look_up<E, F, Fut>(&self, key: &str, lookup: F) -> Result<Found, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Found, E>>,
    {
        let cell = lock(&self.lookups).entry(key.to_owned()).or_default().clone();
        // Removed however this call ends, a dropped request included (else a lookup cancelled
        // with its client would stay in the map for good: made-up keys could grow it).
        let _leave = Leave { lookups: &self.lookups, key, cell: &cell };
        // The generation is the lookup's, not the waiter's: one that joins a lookup begun before
        // a tenant was forgotten gets its answer, but must not cache it.
        let looked_up = cell
            .get_or_try_init(|| async {
                let generation = self.generation();
                lookup().await.map(|found| (generation, found))
            })
            .await
            .cloned();
        let (generation, found) = looked_up?;
        self.store(key, generation, found.clone());
        Ok(found)
    }

    /// Forgets the lookups of a tenant's keys (its settings changed on this node).
    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        let mut entries = lock(&self.entries);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, e| e.found.as_ref().is_none_or(|i| i.tenant != tenant));
    }

    fn store(&self, key: &str, generation: u64, found: Found) {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        // Checked under the lock `forget_tenant` bumps it under: what began before is not cached.
        if self.generation() != generation {
            if let Some(entry) = entries.get_mut(key) {
                entry.refreshing = false;
            }
            return;
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            let ttl = self.ttl;
            entries.retain(|_, e| now.saturating_duration_since(e.at) < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, e| e.found.is_some());
            }
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key.to_owned(), Entry { at: now, found, refreshing: false });
    }
}

/// Takes a lookup out of the map when a caller is done with it, or dropped: the first to leave
/// removes it, and a later caller for the same key starts a new one.
struct Leave<'a> {
    lookups: &'a Mutex<HashMap<String, Lookup>>,
    key: &'a str,
    cell: &'a Lookup,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut lookups = lock(self.lookups);
        if lookups.get(self.key).is_some_and(|c| Arc::ptr_eq(c, self.cell)) {
            lookups.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use flywheel_contracts::api::tenant::TenantStatus;

    use super::*;

    fn info(tenant: TenantId) -> Found {
        Some(Arc::new(WriteKeyInfo {
            tenant,
            status: TenantStatus::Active,
            allowed_origins: vec![],
            cookieless: false,
            events_per_second: None,
        }))
    }

    const TTL: Duration = Duration::from_secs(10);

    /// Waits until `n` callers hold the lookup of `key` under way.
    async fn joined(cache: &KeyCache, key: &str, n: usize) {
        // The map holds one reference, each caller another.
        while lock(&cache.lookups).get(key).map(Arc::strong_count) != Some(n + 1) {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_key_in_use_is_refreshed_ahead_once_and_expires_only_unused() {
        let cache = KeyCache::new(TTL);
        let tenant = TenantId::new();
        let t0 = Instant::now();
        assert_eq!(cache.get("k", t0), Cached::Missing);
        let found = cache.look_up("k", || async { Ok::<_, ()>(info(tenant)) }).await;
        assert_eq!(found, Ok(info(tenant)));
        let at = Instant::now();
        assert_eq!(cache.get("k", at + TTL / 4), Cached::Fresh(info(tenant)));
        // Past half the TTL: one caller is told to refresh, the others go on with the entry.
        assert_eq!(cache.get("k", at + TTL * 3 / 4), Cached::Stale(info(tenant)));
        assert_eq!(cache.get("k", at + TTL * 3 / 4), Cached::Fresh(info(tenant)));
        // Past the TTL, the entry is not used, refresh or not.
        assert_eq!(cache.get("k", at + TTL), Cached::Missing);
        // A failed refresh lets the next caller try again.
        cache.refresh("k", cache.generation(), Err::<Found, _>("down"));
        assert_eq!(cache.get("k", at + TTL * 3 / 4), Cached::Stale(info(tenant)));
        // The refresh found the key rotated away: from then on it is unknown.
        cache.refresh::<()>("k", cache.generation(), Ok(None));
        assert_eq!(cache.get("k", Instant::now()), Cached::Fresh(None));
        // An unknown key is not refreshed ahead.
        assert_eq!(cache.get("k", Instant::now() + TTL * 3 / 4), Cached::Fresh(None));
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_share_a_lookup() {
        let cache = Arc::new(KeyCache::new(TTL));
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let tenant = TenantId::new();
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let (cache, calls, mut released) = (cache.clone(), calls.clone(), released.clone());
                tokio::spawn(async move {
                    cache
                        .look_up("k", || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|r| *r).await;
                            Ok::<_, ()>(info(tenant))
                        })
                        .await
                })
            })
            .collect();
        joined(&cache, "k", 16).await;
        release.send_replace(true);
        for waiter in waiters {
            assert_eq!(waiter.await.expect("a waiter"), Ok(info(tenant)));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one lookup for sixteen requests");
        assert!(lock(&cache.lookups).is_empty(), "the finished lookup is not kept");
        assert_eq!(cache.get("k", Instant::now()), Cached::Fresh(info(tenant)));
        // A failed lookup is not shared with later callers, nor cached.
        let other = cache.look_up("x", || async { Err::<Found, _>("down") }).await;
        assert_eq!(other, Err("down"));
        assert_eq!(cache.get("x", Instant::now()), Cached::Missing);
        assert!(lock(&cache.lookups).is_empty());
    }

    #[tokio::test]
    async fn a_request_dropped_during_its_lookup_leaves_nothing_behind() {
        let cache = Arc::new(KeyCache::new(TTL));
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.look_up("k", std::future::pending::<Result<Found, ()>>).await }
        });
        joined(&cache, "k", 1).await;
        waiting.abort();
        assert!(waiting.await.is_err_and(|e| e.is_cancelled()));
        assert!(lock(&cache.lookups).is_empty(), "the cancelled lookup is gone");
        assert_eq!(cache.get("k", Instant::now()), Cached::Missing);
    }

    #[tokio::test]
    async fn a_lookup_that_began_before_a_tenant_was_forgotten_is_not_cached() {
        let cache = KeyCache::new(TTL);
        let (a, b) = (TenantId::new(), TenantId::new());
        cache.look_up("a", || async { Ok::<_, ()>(info(a)) }).await.expect("a");
        cache.look_up("b", || async { Ok::<_, ()>(info(b)) }).await.expect("b");
        let before = cache.generation();
        cache.forget_tenant(a);
        assert_eq!(cache.get("a", Instant::now()), Cached::Missing);
        assert_eq!(cache.get("b", Instant::now()), Cached::Fresh(info(b)), "other tenants stay");
        // A refresh (or lookup) that read the settings before the change ends after it.
        cache.refresh::<()>("a", before, Ok(info(a)));
        assert_eq!(cache.get("a", Instant::now()), Cached::Missing);
        let found = cache.look_up("a", || async { Ok::<_, ()>(info(a)) }).await;
        assert_eq!(found, Ok(info(a)));
        assert_eq!(cache.get("a", Instant::now()), Cached::Fresh(info(a)));
    }

    #[tokio::test]
    async fn a_request_that_joins_a_lookup_begun_before_the_change_does_not_cache_it() {
        let cache = Arc::new(KeyCache::new(TTL));
        let tenant = TenantId::new();
        let (release, mut released) = tokio::sync::watch::channel(false);
        let first = tokio::spawn({
            let cache = cache.clone();
            async move {
                cache
                    .look_up("k", || async move {
                        let _ = released.wait_for(|r| *r).await;
                        Ok::<_, ()>(info(tenant))
                    })
                    .await
            }
        });
        // The first lookup is under way when the tenant's settings change.
        while lock(&cache.lookups).is_empty() {
            tokio::task::yield_now().await;
        }
        cache.forget_tenant(tenant);
        let second = tokio::spawn({
            let cache = cache.clone();
            async move { cache.look_up("k", || async { Err::<Found, _>(()) }).await }
        });
        joined(&cache, "k", 2).await;
        release.send_replace(true);
        assert_eq!(first.await.expect("first"), Ok(info(tenant)));
        assert_eq!(second.await.expect("second"), Ok(info(tenant)), "it waited for the first lookup");
        assert_eq!(cache.get("k", Instant::now()), Cached::Missing, "what was read before the change is not cached");
    }
}
