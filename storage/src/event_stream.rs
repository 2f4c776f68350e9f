//! The ingest queue: accepted events in Redis Streams, between the edge and the `EventIngestor`s.
//!
//! Events are spread over a fixed number of shard streams by tenant (`{ns}:ingest:{s<n>}`), so a
//! tenant's events stay in order and one busy tenant fills only its shard; ingestors read the
//! shards in rotation. Admission is one Lua script, atomic: the tenant's and the IP's rate limits
//! (GCRA: a steady rate with a burst), then the shard's backlog bound, then one `XADD` per event.
//! The edge answers 2xx only after the script returned, and 429/503 when it refused: Redis and
//! the node never grow past the bound. Entries are deleted once stored (`XACK` + `XDEL`), so a
//! stream's length is its backlog. These keys are shared by all tenants (they carry tenant ids
//! inside entries, never in the key), the one exception to `TenantKey`, documented in
//! ARCHITECTURE.md.

use std::time::Duration;

use flywheel_contracts::TenantId;
use fred::prelude::LuaInterface;
use fred::types::Value;

use crate::redis::{RedisStore, TenantKey};
use crate::{Result, StorageError};

/// The consumer group every ingestor reads in.
pub const GROUP: &str = "ingest";

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Shard streams; fixed for a deployment (changing it re-routes tenants).
    pub shards: u16,
    /// Entries one shard may hold (not yet stored) before the edge answers 503.
    pub max_backlog_per_shard: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self { shards: 8, max_backlog_per_shard: 100_000 }
    }
}

/// Rate limits of one admission: events per second for the tenant, requests per second for the
/// client IP (`None`: not limited, e.g. a server-side call with a secret key).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub tenant_events_per_second: u32,
    pub ip_requests_per_second: Option<u32>,
    /// The tenant's bucket: `events` (pages and pixels) or `server` (secret keys), each with
    /// its own rate.
    pub bucket: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    /// A rate limit: retry after this long (429).
    RateLimited {
        retry_after: Duration,
    },
    /// The backlog is at its bound (503).
    Overloaded {
        retry_after: Duration,
    },
}

/// One entry read from a shard.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub shard: u16,
    pub id: String,
    /// `None` when the entry was deleted while pending (nothing to store; just acknowledge it).
    pub payload: Option<Vec<u8>>,
}

/// The event streams over a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct EventStream {
    redis: RedisStore,
    config: StreamConfig,
}

const ADMIT: &str = r#"
-- KEYS: stream, tenant bucket, ip bucket. ARGV: max backlog, tenant rate, ip rate (0 = none),
-- count, payloads...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[4])
local function gcra(key, rate, cost)
  -- A burst of one second's worth; the bucket's theoretical arrival time in microseconds.
  local interval = 1000000 / rate
  local burst = math.max(rate, cost) * interval
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local wait = new_tat - now - burst
  return new_tat, wait
end
local tenant_rate = tonumber(ARGV[2])
local t_tat, t_wait = gcra(KEYS[2], tenant_rate, n)
if t_wait > 0 then return {1, math.ceil(t_wait / 1000)} end
local ip_rate = tonumber(ARGV[3])
local i_tat, i_wait = 0, 0
if ip_rate > 0 then
  i_tat, i_wait = gcra(KEYS[3], ip_rate, 1)
  if i_wait > 0 then return {1, math.ceil(i_wait / 1000)} end
end
if redis.call('XLEN', KEYS[1]) + n > tonumber(ARGV[1]) then return {2, 1000} end
redis.call('SET', KEYS[2], string.format('%.0f', t_tat), 'PX', math.ceil((t_tat - now) / 1000) + 1000)
if ip_rate > 0 then
  redis.call('SET', KEYS[3], string.format('%.0f', i_tat), 'PX', math.ceil((i_tat - now) / 1000) + 1000)
end
for i = 1, n do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[4 + i])
end
return {0, 0}
"#;

const TAKE: &str = r#"
-- KEYS: shard streams. ARGV: group, consumer, count, start id ('>' new, '0' own pending),
-- shard numbers... Returns flat triples {shard, id, payload or false}.
local out = {}
local budget = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  if budget <= 0 then break end
  local ok, res = pcall(redis.call, 'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', budget, 'STREAMS', key, ARGV[4])
  if not ok then
    redis.call('XGROUP', 'CREATE', key, ARGV[1], '0', 'MKSTREAM')
    res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', budget, 'STREAMS', key, ARGV[4])
  end
  if res then
    for _, e in ipairs(res[1][2]) do
      out[#out + 1] = ARGV[4 + i]
      out[#out + 1] = e[1]
      if e[2] then out[#out + 1] = e[2][2] else out[#out + 1] = false end
      budget = budget - 1
    end
  end
end
return out
"#;

const CLAIM: &str = r#"
-- KEYS: one shard stream. ARGV: group, consumer, min idle ms, count, shard number, start id.
-- Returns {next start id, then flat triples}.
local ok, res = pcall(redis.call, 'XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[6], 'COUNT', ARGV[4])
if not ok then return {'0-0'} end
local out = {res[1]}
for _, e in ipairs(res[2]) do
  out[#out + 1] = ARGV[5]
  out[#out + 1] = e[1]
  if e[2] then out[#out + 1] = e[2][2] else out[#out + 1] = false end
end
-- Entries deleted while pending (Redis 7 lists them third) are acknowledged away.
if res[3] then
  for _, id in ipairs(res[3]) do redis.call('XACK', KEYS[1], ARGV[1], id) end
end
return out
"#;

const ACK: &str = r#"
-- KEYS: stream, attempts hash. ARGV: group, ids... (at most ACK_CHUNK ids: one call each).
local ids = {unpack(ARGV, 2)}
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
return #ids
"#;

/// Ids acknowledged per script call, and entries read per script call: Redis runs one script
/// at a time, so a batch of thousands is moved in slices that each hold it for about a
/// millisecond, and the edge's admissions slip in between.
const ACK_CHUNK: usize = 500;
const TAKE_CHUNK: usize = 500;

const DEAD: &str = r#"
-- KEYS: stream, attempts hash, dead-letter stream. ARGV: group, id, payload, reason, shard.
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'shard', ARGV[5], 'entry', ARGV[2], 'reason', ARGV[4], 'e', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"#;

impl EventStream {
    pub fn new(redis: RedisStore, config: StreamConfig) -> Self {
        Self { redis, config: StreamConfig { shards: config.shards.max(1), ..config } }
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The shard of a tenant: stable for a given shard count.
    pub fn shard_of(&self, tenant: TenantId) -> u16 {
        let (hi, lo) = tenant.as_uuid().as_u64_pair();
        let mixed = hi ^ lo;
        // The remainder is below `shards`, a u16.
        u16::try_from(mixed % u64::from(self.config.shards)).unwrap_or(0)
    }

    pub fn stream_key(&self, shard: u16) -> String {
        format!("{}:ingest:{{s{shard}}}", self.redis.namespace())
    }

    fn attempts_key(&self, shard: u16) -> String {
        format!("{}:ingest:{{s{shard}}}:attempts", self.redis.namespace())
    }

    /// The dead-letter stream: entries given up on, with the reason.
    pub fn dead_letter_key(&self) -> String {
        format!("{}:ingest:dead", self.redis.namespace())
    }

    /// The per-client bucket: the tenant and the client's network (an IPv4 address or an IPv6
    /// /64, which one subscriber gets whole), so one tenant's visitors never use up another's.
    fn ip_key(&self, tenant: TenantId, network: &str) -> String {
        let mut key = format!("{}:rl:ip:{tenant}:", self.redis.namespace());
        key.extend(network.chars().filter(|c| c.is_ascii_hexdigit() || *c == '.' || *c == ':'));
        key
    }

    /// Admits a tenant's encoded events (all or none), under its limits. `ip` is the client's
    /// network (IPv4 address or IPv6 /64) for the per-client limit, `None` for server senders.
    pub async fn admit(
        &self,
        tenant: TenantId,
        ip: Option<&str>,
        limits: Limits,
        payloads: Vec<Vec<u8>>,
    ) -> Result<Admission> {
        let shard = self.shard_of(tenant);
        let keys = vec![
            self.stream_key(shard),
            TenantKey::new(tenant, &["rl", limits.bucket]).render(self.redis.namespace()),
            self.ip_key(tenant, ip.unwrap_or("none")),
        ];
        let mut args: Vec<Value> = Vec::with_capacity(4 + payloads.len());
        args.push(Value::from(i64::try_from(self.config.max_backlog_per_shard).unwrap_or(i64::MAX)));
        args.push(Value::from(i64::from(limits.tenant_events_per_second.max(1))));
        args.push(Value::from(i64::from(if ip.is_some() { limits.ip_requests_per_second.unwrap_or(0) } else { 0 })));
        args.push(Value::from(i64::try_from(payloads.len()).unwrap_or(i64::MAX)));
        args.extend(payloads.into_iter().map(|p| Value::Bytes(p.into())));
        let answer: Vec<i64> = self.redis.pool().eval(ADMIT, keys, args).await?;
        let wait = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(1000).max(1));
        Ok(match answer.as_slice() {
            [0, _] => Admission::Accepted,
            [1, ms] => Admission::RateLimited { retry_after: wait(*ms) },
            [2, ms] => Admission::Overloaded { retry_after: wait(*ms) },
            other => return Err(StorageError::Internal(format!("unexpected admission answer {other:?}"))),
        })
    }

    /// Reads up to `count` entries (at most 500 per call) for `consumer` across `shards` (in the
    /// order given: rotate it for fairness). `pending` re-reads the consumer's own unacknowledged entries (after a
    /// restart) instead of new ones.
    pub async fn take(&self, consumer: &str, shards: &[u16], count: usize, pending: bool) -> Result<Vec<StreamEntry>> {
        if shards.is_empty() || count == 0 {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = shards.iter().map(|s| self.stream_key(*s)).collect();
        let mut args: Vec<Value> = vec![
            Value::from(GROUP),
            Value::from(consumer),
            Value::from(i64::try_from(count.min(TAKE_CHUNK)).unwrap_or(i64::MAX)),
            Value::from(if pending { "0" } else { ">" }),
        ];
        args.extend(shards.iter().map(|s| Value::from(i64::from(*s))));
        let flat: Vec<Value> = self.redis.pool().eval(TAKE, keys, args).await?;
        Ok(triples(flat))
    }

    /// Takes over entries of `shard` pending for longer than `min_idle` with another consumer
    /// (one that died): they become `consumer`'s. The scan resumes at `cursor` (`0-0` to start)
    /// and the answer carries where to resume next time, so a long pending list is walked
    /// through rather than rescanned from its head.
    pub async fn claim_stale(
        &self,
        consumer: &str,
        shard: u16,
        min_idle: Duration,
        count: usize,
        cursor: &str,
    ) -> Result<(String, Vec<StreamEntry>)> {
        let args: Vec<Value> = vec![
            Value::from(GROUP),
            Value::from(consumer),
            Value::from(i64::try_from(min_idle.as_millis()).unwrap_or(i64::MAX)),
            Value::from(i64::try_from(count).unwrap_or(i64::MAX)),
            Value::from(i64::from(shard)),
            Value::from(cursor),
        ];
        let mut flat: Vec<Value> = self.redis.pool().eval(CLAIM, vec![self.stream_key(shard)], args).await?;
        let next =
            if flat.is_empty() { "0-0".to_owned() } else { flat.remove(0).as_string().unwrap_or_else(|| "0-0".into()) };
        Ok((next, triples(flat)))
    }

    /// Acknowledges and deletes stored entries: called only after their transaction committed.
    pub async fn ack(&self, shard: u16, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        for chunk in ids.chunks(ACK_CHUNK) {
            let mut args: Vec<Value> = Vec::with_capacity(chunk.len() + 1);
            args.push(Value::from(GROUP));
            args.extend(chunk.iter().map(|id| Value::from(id.as_str())));
            let _: i64 =
                self.redis.pool().eval(ACK, vec![self.stream_key(shard), self.attempts_key(shard)], args).await?;
        }
        Ok(())
    }

    /// Counts one more failed attempt at an entry; returns the attempts so far.
    pub async fn record_failure(&self, shard: u16, id: &str) -> Result<u32> {
        use fred::prelude::HashesInterface;
        let n: i64 = self.redis.pool().hincrby(self.attempts_key(shard), id, 1).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Moves an entry to the dead-letter stream with the reason, and off its shard.
    pub async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<()> {
        let args: Vec<Value> = vec![
            Value::from(GROUP),
            Value::from(entry.id.as_str()),
            Value::Bytes(entry.payload.clone().unwrap_or_default().into()),
            Value::from(reason),
            Value::from(i64::from(entry.shard)),
        ];
        let keys = vec![self.stream_key(entry.shard), self.attempts_key(entry.shard), self.dead_letter_key()];
        let _: i64 = self.redis.pool().eval(DEAD, keys, args).await?;
        Ok(())
    }

    /// Entries not yet stored, over all shards.
    pub async fn backlog(&self) -> Result<u64> {
        use fred::prelude::StreamsInterface;
        let mut total = 0u64;
        for shard in 0..self.config.shards {
            let n: u64 = self.redis.pool().xlen(self.stream_key(shard)).await?;
            total += n;
        }
        Ok(total)
    }

    /// Entries in the dead-letter stream.
    pub async fn dead_letters(&self) -> Result<u64> {
        use fred::prelude::StreamsInterface;
        Ok(self.redis.pool().xlen(self.dead_letter_key()).await?)
    }

    /// Appends raw bytes to a tenant's shard, bypassing the edge: for tests that need an entry
    /// the edge would never write (a poison entry).
    pub async fn append_raw(&self, tenant: TenantId, payload: &[u8]) -> Result<String> {
        use fred::prelude::StreamsInterface;
        let id: String = self
            .redis
            .pool()
            .xadd(
                self.stream_key(self.shard_of(tenant)),
                false,
                None,
                "*",
                vec![("e", Value::Bytes(payload.to_vec().into()))],
            )
            .await?;
        Ok(id)
    }
}

fn triples(flat: Vec<Value>) -> Vec<StreamEntry> {
    let mut out = Vec::with_capacity(flat.len() / 3);
    let mut it = flat.into_iter();
    while let (Some(shard), Some(id), Some(payload)) = (it.next(), it.next(), it.next()) {
        let shard = shard.as_i64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
        let Some(id) = id.as_string() else { continue };
        let payload = match payload {
            Value::Null | Value::Boolean(false) => None,
            other => other.as_bytes().map(<[u8]>::to_vec),
        };
        out.push(StreamEntry { shard, id, payload });
    }
    out
}

const SESSION: &str = r#"
-- KEYS: session key. ARGV: new session id, ttl seconds. The visitor's session, renewed on each
-- event; a new one after `ttl` of inactivity.
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
local sid = redis.call('GET', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return sid
"#;

const SALT: &str = r#"
-- KEYS: the day's salt key. ARGV: a fresh salt, ttl seconds.
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
return redis.call('GET', KEYS[1])
"#;

impl EventStream {
    /// The salt of a UTC day (`2026-11-25`), the same on every node: created by the first node
    /// that needs it, forgotten two days later, so yesterday's visitor hashes cannot be redone.
    pub async fn daily_salt(&self, day: &str) -> Result<String> {
        let fresh = format!("{:032x}", rand::random::<u128>());
        let key = format!("{}:salt:{day}", self.redis.namespace());
        let salt: String =
            self.redis.pool().eval(SALT, vec![key], vec![Value::from(fresh), Value::from(172_800_i64)]).await?;
        Ok(salt)
    }

    /// The current session of a (cookieless) visitor: kept while events keep coming within
    /// `inactivity`, a new one after.
    pub async fn session_of(&self, tenant: TenantId, visitor: &str, inactivity: Duration) -> Result<String> {
        let key = TenantKey::new(tenant, &["session", visitor]).render(self.redis.namespace());
        let fresh = format!("s.{:024x}", rand::random::<u128>() >> 32);
        let ttl = i64::try_from(inactivity.as_secs()).unwrap_or(1800).max(1);
        let sid: String =
            self.redis.pool().eval(SESSION, vec![key], vec![Value::from(fresh), Value::from(ttl)]).await?;
        Ok(sid)
    }
}
