//! Redis through fred, with every key built by one type: [`TenantKey`].
//!
//! A tenant's keys are `{namespace}:t:{<tenant uuid>}:<part>:<part>…`. The tenant segment is a
//! fixed-width UUID inside braces — a Redis Cluster hash tag, so one tenant's keys share a slot —
//! and every part is escaped (`%`, `:`, braces and glob characters), so the rendering is
//! injective: two different (tenant, parts) pairs never produce the same key. Code outside this
//! module cannot name a raw key; it asks a [`TenantRedis`], which only builds keys of its own
//! tenant.

use std::time::Duration;

use flywheel_contracts::{Secret, TenantId};
use fred::prelude::{Builder, ClientLike, Config, KeysInterface, Pool};
use fred::types::Expiration;

use crate::{Result, StorageError};

/// A key in one tenant's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantKey {
    tenant: TenantId,
    path: String,
}

impl TenantKey {
    /// `parts` must not be empty: a key names something within the tenant.
    pub fn new(tenant: TenantId, parts: &[&str]) -> Self {
        let mut path = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                path.push(':');
            }
            escape_into(&mut path, part);
        }
        Self { tenant, path }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The key as sent to Redis, under a deployment namespace (e.g. `fw`).
    pub fn render(&self, namespace: &str) -> String {
        format!("{namespace}:t:{{{}}}:{}", self.tenant, self.path)
    }

    /// A SCAN pattern matching every key of `tenant` (used to purge a tenant's hot state).
    pub fn tenant_pattern(namespace: &str, tenant: TenantId) -> String {
        format!("{namespace}:t:{{{tenant}}}:*")
    }
}

/// `s` as a `SCAN` pattern that matches it literally: glob characters and the escape itself
/// behind a backslash.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn escape_into(out: &mut String, part: &str) {
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '*' => out.push_str("%2A"),
            '?' => out.push_str("%3F"),
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            c => out.push(c),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret<String>,
    /// Prefix of every key this deployment writes; tests use a unique one each.
    pub namespace: String,
    pub pool_size: usize,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self { url: Secret::new(url.into()), namespace: namespace.into(), pool_size: 4 }
    }
}

/// The node's Redis connection pool.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    namespace: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl RedisStore {
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let parsed = Config::from_url(config.url.expose())
            .map_err(|e| StorageError::Internal(format!("REDIS_URL is not a valid Redis URL: {e}")))?;
        let pool = Builder::from_config(parsed)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
                c.internal_command_timeout = Duration::from_secs(5);
            })
            .set_policy(fred::types::config::ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build_pool(config.pool_size.max(1))
            .map_err(StorageError::from)?;
        // `init` waits for the first connection and fails fast if Redis is unreachable.
        pool.init().await.map_err(|e| StorageError::Unavailable(format!("cannot connect to Redis: {e}")))?;
        Ok(Self { pool, namespace: config.namespace.clone() })
    }

    /// The handle for one tenant's keys.
    pub fn tenant(&self, tenant: TenantId) -> TenantRedis<'_> {
        TenantRedis { store: self, tenant }
    }

    pub async fn ping(&self) -> Result<()> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The pool, for this crate's Redis modules (`event_stream`) only.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Deletes every key of this store's namespace (`<namespace>:*`), one page of `SCAN` at a
    /// time, and returns how many there were. For a namespace of its own that nothing else uses
    /// any more (a benchmark's, once its node stopped); never a deployment's while nodes run.
    pub async fn purge_namespace(&self) -> Result<u64> {
        use fred::types::CustomCommand;
        let pattern = format!("{}:*", glob_escape(&self.namespace));
        let client = self.pool.next();
        let mut cursor = "0".to_owned();
        let mut purged = 0;
        loop {
            let args = vec![cursor, "MATCH".to_owned(), pattern.clone(), "COUNT".to_owned(), "1000".to_owned()];
            let (next, keys): (String, Vec<String>) =
                client.custom(CustomCommand::new_static("SCAN", None, false), args).await?;
            if !keys.is_empty() {
                purged += client.unlink::<u64, _>(keys).await?;
            }
            if next == "0" {
                return Ok(purged);
            }
            cursor = next;
        }
    }

    pub async fn quit(&self) {
        // Best effort at shutdown; the process is about to exit either way.
        let _ = self.pool.quit().await;
    }
}

/// Redis operations on one tenant's keys. Every key it touches is built from its tenant.
#[derive(Debug, Clone, Copy)]
pub struct TenantRedis<'a> {
    store: &'a RedisStore,
    tenant: TenantId,
}

impl TenantRedis<'_> {
    pub fn key(&self, parts: &[&str]) -> TenantKey {
        TenantKey::new(self.tenant, parts)
    }

    fn render(&self, parts: &[&str]) -> String {
        self.key(parts).render(&self.store.namespace)
    }

    pub async fn set(&self, parts: &[&str], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let expire = ttl.map(|t| Expiration::PX(i64::try_from(t.as_millis()).unwrap_or(i64::MAX).max(1)));
        let _: () = self.store.pool.set(self.render(parts), value, expire, None, false).await?;
        Ok(())
    }

    pub async fn get(&self, parts: &[&str]) -> Result<Option<Vec<u8>>> {
        Ok(self.store.pool.get(self.render(parts)).await?)
    }

    /// True when the key existed.
    pub async fn delete(&self, parts: &[&str]) -> Result<bool> {
        let n: i64 = self.store.pool.del(self.render(parts)).await?;
        Ok(n > 0)
    }

    /// Increments a counter, giving it `ttl` when it is created (a fixed-window rate limit).
    pub async fn incr(&self, parts: &[&str], ttl: Duration) -> Result<i64> {
        let key = self.render(parts);
        let n: i64 = self.store.pool.incr(&key).await?;
        if n == 1 {
            let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
            let _: i64 = self.store.pool.expire(&key, secs, None).await?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant(n: u128) -> TenantId {
        TenantId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn keys_carry_the_tenant_as_a_hash_tag() {
        let t = tenant(7);
        assert_eq!(
            TenantKey::new(t, &["runs", "42"]).render("fw"),
            "fw:t:{00000000-0000-0000-0000-000000000007}:runs:42"
        );
        assert_eq!(
            TenantKey::new(t, &["a:b", "c"]).render("fw"),
            "fw:t:{00000000-0000-0000-0000-000000000007}:a%3Ab:c"
        );
    }

    proptest! {
        /// Different (tenant, parts) never render to the same key: no collision across tenants,
        /// and none within a tenant from parts that contain separators or braces.
        #[test]
        fn rendering_is_injective(
            a in 0u128..4, b in 0u128..4,
            pa in proptest::collection::vec("[a-z:{}%*]{0,4}", 1..4),
            pb in proptest::collection::vec("[a-z:{}%*]{0,4}", 1..4),
        ) {
            let ka = TenantKey::new(tenant(a), &pa.iter().map(String::as_str).collect::<Vec<_>>());
            let kb = TenantKey::new(tenant(b), &pb.iter().map(String::as_str).collect::<Vec<_>>());
            let same_input = a == b && pa == pb;
            prop_assert_eq!(ka.render("fw") == kb.render("fw"), same_input);
        }

        /// A key of one tenant never matches another tenant's SCAN pattern.
        #[test]
        fn tenant_patterns_do_not_overlap(a in 0u128..1000, b in 0u128..1000, part in "[a-z:{}*]{1,8}") {
            let key = TenantKey::new(tenant(a), &[&part]).render("fw");
            let prefix_b = TenantKey::tenant_pattern("fw", tenant(b));
            let prefix_b = prefix_b.trim_end_matches('*');
            prop_assert_eq!(key.starts_with(prefix_b), a == b);
        }
    }
}
