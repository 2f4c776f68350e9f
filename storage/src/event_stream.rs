//! The ingest queue: accepted events in Redis Streams, between the edge and the `EventIngestor`s.
//!
//! Events are spread over a fixed number of shard streams by tenant (`{ns}:ingest:{s<n>}`), so a
//! tenant's events stay in order and one busy tenant fills only its shard; ingestors read the
//! shards in rotation. Admission is one transaction, atomic: the `XADD` of one entry holding all
//! the request's events (field `e`, see `flywheel_contracts::ingest`) and their count (field
//! `n`), then the verdict script: the tenant's and the IP's rate limits (GCRA: a steady rate with
//! a burst), then the shard's backlog bound, deleting the entry if it refused. Requests arriving
//! together share a transaction ([`admission`]). The edge answers 2xx only after the transaction
//! ran, and 429/503 when the verdict refused: Redis and the node never grow past the bound. The
//! bound counts events, not entries: each shard has an event count (`…:events`) that the
//! scripts adding and deleting entries keep. Entries are deleted once all their events are
//! stored or dead-lettered (`XACK` + `XDEL`), so a stream's length is its backlog. Scripts are loaded once and called by SHA-1.
//! These keys are shared by all tenants (they carry tenant ids inside entries, never in the
//! key), the one exception to `TenantKey`, documented in ARCHITECTURE.md.

mod admission;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flywheel_contracts::TenantId;
use fred::prelude::LuaInterface;
use fred::types::{FromValue, Value};

use crate::redis::{RedisStore, TenantKey};
use crate::{Result, StorageError};

/// The consumer group every ingestor reads in.
pub const GROUP: &str = "ingest";

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Shard streams; fixed for a deployment (changing it re-routes tenants).
    pub shards: u16,
    /// Events one shard may hold (not yet stored) before the edge answers 503.
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

/// One entry read from a shard: the events of one request (format 2), or one event (format 1,
/// written before format 2 existed).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub shard: u16,
    pub id: String,
    /// `None` when the entry was deleted while pending (nothing to store; just acknowledge it).
    pub payload: Option<Vec<u8>>,
    /// The events the entry holds, as the edge counted them (1 for an entry without the count).
    pub events: u32,
    /// Whether the entry carries its count (`n`, format 2), so it is part of the shard's event
    /// count: removing it takes `events` off that count.
    pub counted: bool,
}

impl StreamEntry {
    /// The name of one of the entry's events in attempts and dead letters: `<entry id>/<index>`.
    pub fn event_name(&self, index: usize) -> String {
        format!("{}/{index}", self.id)
    }

    /// When Redis added the entry, in milliseconds since the Unix epoch by Redis's clock: the
    /// first part of its id (`<ms>-<sequence>`).
    pub fn added_ms(&self) -> Option<u64> {
        self.id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
    }
}

/// The event streams over a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct EventStream {
    redis: RedisStore,
    config: StreamConfig,
    /// Started by the first admission, on its runtime; shared by the clones.
    admitter: Arc<OnceLock<admission::Admitter>>,
}

/// A script loaded into Redis once (`SCRIPT LOAD`) and called by its SHA-1 (`EVALSHA`), so a
/// call sends the arguments and not the script's text. After Redis lost it (a restart,
/// `SCRIPT FLUSH`) the `NOSCRIPT` answer loads it again and the call is repeated.
#[derive(Debug)]
struct Script {
    lua: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(lua: &'static str) -> Self {
        Self { lua, sha: OnceLock::new() }
    }

    async fn load(&self, redis: &RedisStore) -> Result<String> {
        let sha: String = redis.pool().script_load(self.lua).await?;
        // The SHA-1 of a text is the same on every server: a racing load stores the same value.
        let _ = self.sha.set(sha.clone());
        Ok(sha)
    }

    /// The script's SHA-1, loading it first if this process never did.
    async fn sha(&self, redis: &RedisStore) -> Result<String> {
        match self.sha.get() {
            Some(sha) => Ok(sha.clone()),
            None => self.load(redis).await,
        }
    }

    async fn call<R: FromValue>(&self, redis: &RedisStore, keys: Vec<String>, args: Vec<Value>) -> Result<R> {
        let sha = self.sha(redis).await?;
        match redis.pool().evalsha(sha, keys.clone(), args.clone()).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let sha = self.load(redis).await?;
                Ok(redis.pool().evalsha(sha, keys, args).await?)
            }
            other => Ok(other?),
        }
    }
}

/// The verdicts on a batch of admissions, run in a transaction (`MULTI`) right after the
/// `XADD`s of the batch's entries, so payloads reach Redis once and never enter Lua: Redis's Lua
/// hashes every string it is handed, and a 10 KB payload passed to an admission script cost
/// more than the `XADD` itself (a fifth of Redis's time in the accept path). The transaction
/// runs as one: no consumer can read an entry before its verdict, and a refusal deletes it. The
/// batch's entries are the last ones of their streams, in the batch's order, so a refused one
/// is found by its place (reading entries back costs a refusal, never an admission).
static VERDICT: Script = Script::new(
    r#"
-- KEYS: per request, in the order of the XADDs: its stream, tenant bucket, ip bucket, the
-- stream's event count. ARGV: per request: max backlog (events), tenant rate, ip rate (0 =
-- none), events in its entry. Returns per request {code, retry after ms}: 0 admitted,
-- 1 rate limited, 2 over the backlog bound.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local requests = #KEYS / 4
-- Each stream's entries of this batch, and each request's place among them (oldest first).
local added, place = {}, {}
for r = 0, requests - 1 do
  local stream = KEYS[4 * r + 1]
  added[stream] = (added[stream] or 0) + 1
  place[r] = added[stream]
end
-- The backlog is in events, not entries (an entry holds a request's events). A stream holding
-- only this batch's entries held none before, whatever its count says: a count left behind
-- cannot refuse events for ever.
local checked = {}
for r = 0, requests - 1 do
  local stream, count = KEYS[4 * r + 1], KEYS[4 * r + 4]
  if not checked[stream] then
    checked[stream] = true
    if redis.call('XLEN', stream) <= added[stream] then redis.call('DEL', count) end
  end
end
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
local function verdict(r)
  local stream, tenant, ip, count = KEYS[4 * r + 1], KEYS[4 * r + 2], KEYS[4 * r + 3], KEYS[4 * r + 4]
  local max, tenant_rate, ip_rate, n =
    tonumber(ARGV[4 * r + 1]), tonumber(ARGV[4 * r + 2]), tonumber(ARGV[4 * r + 3]), tonumber(ARGV[4 * r + 4])
  local t_tat, t_wait = gcra(tenant, tenant_rate, n)
  if t_wait > 0 then return 1, math.ceil(t_wait / 1000) end
  local i_tat, i_wait = 0, 0
  if ip_rate > 0 then
    i_tat, i_wait = gcra(ip, ip_rate, 1)
    if i_wait > 0 then return 1, math.ceil(i_wait / 1000) end
  end
  local backlog = tonumber(redis.call('GET', count) or '0')
  if backlog + n > max then return 2, 1000 end
  redis.call('SET', tenant, string.format('%.0f', t_tat), 'PX', math.ceil((t_tat - now) / 1000) + 1000)
  if ip_rate > 0 then
    redis.call('SET', ip, string.format('%.0f', i_tat), 'PX', math.ceil((i_tat - now) / 1000) + 1000)
  end
  redis.call('SET', count, backlog + n)
  return 0, 0
end
local out, refused = {}, {}
for r = 0, requests - 1 do
  local code, ms = verdict(r)
  out[#out + 1] = code
  out[#out + 1] = ms
  if code ~= 0 then
    local stream = KEYS[4 * r + 1]
    refused[stream] = refused[stream] or {}
    table.insert(refused[stream], place[r])
  end
end
for stream, places in pairs(refused) do
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', added[stream])
  for _, p in ipairs(places) do
    local entry = newest[added[stream] - p + 1]
    if entry then redis.call('XDEL', stream, entry[1]) end
  end
end
return out
"#,
);

/// Takes over stale pending entries (`XAUTOCLAIM`). Its `read_entries` appends entries to `out`
/// as flat quintuples `{shard, id, payload or false, events, counted}` (an entry's `n` field is
/// its event count; 1 when absent, as in entries of format 1) and spends the event budget.
/// Reads start with one entry, then size themselves on the largest entry seen so far
/// ([`next_count`] is the same rule for [`EventStream::take`]): while entries are no larger than
/// that, a batch passes its event budget by less than one entry's events; entries larger than
/// any seen before can take one read (at most [`READ_CHUNK`] entries) further past it. The
/// budget is a target; what bounds a batch is the entries per call.
static CLAIM: Script = Script::new(
    r#"
local function read_entries(out, shard, entries, budget, per)
  for _, e in ipairs(entries) do
    local n, counted, payload = 1, 0, false
    if e[2] then
      payload = e[2][2]
      for j = 3, #e[2], 2 do
        if e[2][j] == 'n' then n = tonumber(e[2][j + 1]) or 1; counted = 1 end
      end
    end
    out[#out + 1] = shard
    out[#out + 1] = e[1]
    out[#out + 1] = payload
    out[#out + 1] = n
    out[#out + 1] = counted
    budget = budget - n
    if n > per then per = n end
  end
  return budget, per
end
local function next_count(budget, per, left)
  local c = 1
  if per > 0 then c = math.max(1, math.floor(budget / per)) end
  if c > left then c = left end
  return c
end
-- KEYS: one shard stream. ARGV: group, consumer, min idle ms, event budget, shard number,
-- start id, max entries. Returns {next start id, then flat quintuples}.
local out = {}
local budget = tonumber(ARGV[4])
local cursor = ARGV[6]
local left = tonumber(ARGV[7])
local per = 0
while budget > 0 and left > 0 do
  local c = next_count(budget, per, left)
  local ok, res = pcall(redis.call, 'XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', c)
  if not ok then
    cursor = '0-0'
    break
  end
  cursor = res[1]
  budget, per = read_entries(out, ARGV[5], res[2], budget, per)
  left = left - #res[2]
  -- Entries deleted while pending (Redis 7 lists them third) are acknowledged away.
  if res[3] then
    for _, id in ipairs(res[3]) do redis.call('XACK', KEYS[1], ARGV[1], id) end
  end
  if cursor == '0-0' or #res[2] == 0 then break end
end
table.insert(out, 1, cursor)
return out
"#,
);

/// Lua shared by `ACK` and `DEAD`: removes stored (or dead-lettered) entries — acknowledged
/// (one `XACK` for them all), deleted, their events taken off the stream's event count (once:
/// only for the entries this call deleted; one change of the count), their attempts forgotten
/// (an entry with failed events has a marker field under its id and a field `<id>/<index>` per
/// failed event; the hash is looked into only when it holds anything).
macro_rules! remove_lua {
    () => {
        r#"
-- `entries`: {id, counted, events} each. `counted`: the events the entry added to the count
-- (its `n` field, 0 without one); `events`: the events it holds (1 without `n`).
local function remove(stream, attempts, counter, group, entries)
  if #entries == 0 then return 0 end
  local ids = {}
  for i, entry in ipairs(entries) do ids[i] = entry[1] end
  redis.call('XACK', stream, group, unpack(ids))
  local failures = redis.call('HLEN', attempts) > 0
  local uncounted = 0
  for _, entry in ipairs(entries) do
    local id, counted, events = entry[1], entry[2], entry[3]
    if redis.call('XDEL', stream, id) == 1 then uncounted = uncounted + counted end
    if failures and redis.call('HDEL', attempts, id) == 1 then
      for i = 0, math.max(events, 1) - 1 do redis.call('HDEL', attempts, id .. '/' .. i) end
    end
  end
  if uncounted > 0 and redis.call('DECRBY', counter, uncounted) <= 0 then redis.call('DEL', counter) end
  return #ids
end
-- The count an entry still on its stream carries (its `n` field, 0 without one).
local function counted_of(stream, id)
  local found = redis.call('XRANGE', stream, id, id)
  if found[1] then
    local f = found[1][2]
    for j = 3, #f, 2 do
      if f[j] == 'n' then return tonumber(f[j + 1]) or 0 end
    end
  end
  return 0
end
"#
    };
}

static ACK: Script = Script::new(concat!(
    remove_lua!(),
    r#"
-- KEYS: stream, attempts hash, the stream's event count. ARGV: group, then per entry its id, the
-- events it counts and the events it holds, as read (at most ACK_CHUNK entries: one call each).
-- The counts come from the reader, so the entries are not read again.
local entries = {}
for i = 2, #ARGV, 3 do
  entries[#entries + 1] = {ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])}
end
return remove(KEYS[1], KEYS[2], KEYS[3], ARGV[1], entries)
"#
));

/// Entries acknowledged per script call, and entries read per `XREADGROUP`: Redis runs one
/// command at a time, so the edge's admissions wait behind whatever runs. A batch of 250 entries
/// of 10 KB read in one script held Redis for 10 ms (25 ms at worst) under load, and one
/// acknowledged in one script for 2.5 ms (`SLOWLOG`), every admission waiting. In slices, each
/// holds it for a fraction of a millisecond and admissions slip in between.
const ACK_CHUNK: usize = 64;
const READ_CHUNK: usize = 32;
/// Entries one [`EventStream::take`] or [`EventStream::claim_stale`] returns at most: a take
/// that returned fewer, and fewer events than it asked for, found its shards empty.
const TAKE_MAX_ENTRIES: usize = 500;

static DEAD: Script = Script::new(concat!(
    remove_lua!(),
    r#"
-- KEYS: stream, attempts hash, dead-letter stream, the stream's event count. ARGV: group, id,
-- payload, reason, shard.
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'shard', ARGV[5], 'entry', ARGV[2], 'reason', ARGV[4], 'e', ARGV[3])
local counted = counted_of(KEYS[1], ARGV[2])
remove(KEYS[1], KEYS[2], KEYS[4], ARGV[1], {{ARGV[2], counted, math.max(counted, 1)}})
return 1
"#
));

static FAILED: Script = Script::new(
    r#"
-- KEYS: attempts hash. ARGV: entry id, the event's field (`<id>/<index>`). Returns the event's
-- failed attempts so far, or -1 when it was dead-lettered already.
if redis.call('HGET', KEYS[1], ARGV[2]) == 'dead' then return -1 end
redis.call('HSETNX', KEYS[1], ARGV[1], '0')
return redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
"#,
);

static DEAD_EVENT: Script = Script::new(
    r#"
-- KEYS: attempts hash, dead-letter stream. ARGV: the event's field (`<id>/<index>`), payload,
-- reason, shard. Once per event: a repeat (after a crash before its entry's ACK) does nothing.
if redis.call('HGET', KEYS[1], ARGV[1]) == 'dead' then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*',
  'shard', ARGV[4], 'entry', ARGV[1], 'reason', ARGV[3], 'e', ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], 'dead')
return 1
"#,
);

impl EventStream {
    pub fn new(redis: RedisStore, config: StreamConfig) -> Self {
        Self {
            redis,
            config: StreamConfig { shards: config.shards.max(1), ..config },
            admitter: Arc::new(OnceLock::new()),
        }
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

    /// The events a shard's entries hold (kept by the scripts that add and remove entries).
    fn events_key(&self, shard: u16) -> String {
        format!("{}:ingest:{{s{shard}}}:events", self.redis.namespace())
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

    /// Admits one request's events, encoded as one entry of `events` events (all or none),
    /// under the tenant's limits. `ip` is the client's network (IPv4 address or IPv6 /64) for
    /// the per-client limit, `None` for server senders. Admissions go to Redis in batches
    /// ([`admission`]): the batch's `XADD`s and one [`VERDICT`] on them, in one transaction.
    pub async fn admit(
        &self,
        tenant: TenantId,
        ip: Option<&str>,
        limits: Limits,
        payload: Vec<u8>,
        events: usize,
    ) -> Result<Admission> {
        let shard = self.shard_of(tenant);
        let request = admission::Request {
            keys: [
                self.stream_key(shard),
                TenantKey::new(tenant, &["rl", limits.bucket]).render(self.redis.namespace()),
                self.ip_key(tenant, ip.unwrap_or("none")),
                self.events_key(shard),
            ],
            args: [
                i64::try_from(self.config.max_backlog_per_shard).unwrap_or(i64::MAX),
                i64::from(limits.tenant_events_per_second.max(1)),
                i64::from(if ip.is_some() { limits.ip_requests_per_second.unwrap_or(0) } else { 0 }),
                i64::try_from(events).unwrap_or(i64::MAX),
            ],
            payload,
        };
        self.admitter.get_or_init(|| admission::Admitter::start(self.redis.clone())).admit(request).await
    }

    /// Reads entries holding about `events` events (at most 500 entries per call; reads are
    /// sized on the largest entry seen so far, so entries larger than those before them can pass
    /// the budget by up to one read, see [`CLAIM`]) for `consumer` across `shards` (in the order
    /// given: rotate it for fairness). `pending` re-reads the consumer's own unacknowledged entries (after a
    /// restart) instead of new ones.
    ///
    /// Plain `XREADGROUP`s of at most [`READ_CHUNK`] entries each, not one script: Redis writes
    /// the entries straight from the stream to the socket (a script copies every payload into
    /// Lua and back out), and never holds the edge's admissions back for longer than one slice.
    pub async fn take(&self, consumer: &str, shards: &[u16], events: usize, pending: bool) -> Result<Vec<StreamEntry>> {
        let mut out = Vec::new();
        let mut budget = events;
        let mut left = TAKE_MAX_ENTRIES;
        let mut per = 0u32;
        for &shard in shards {
            let key = self.stream_key(shard);
            let mut start = if pending { "0".to_owned() } else { ">".to_owned() };
            while budget > 0 && left > 0 {
                let count = next_count(budget, per, left).min(READ_CHUNK);
                let got = self.read_group(&key, shard, consumer, count, &start).await?;
                let full = got.len() >= count;
                left = left.saturating_sub(got.len());
                for entry in &got {
                    budget = budget.saturating_sub(entry.events as usize);
                    per = per.max(entry.events);
                }
                // Own pending entries are read from an id on: go on after the last one.
                match got.last() {
                    Some(last) if pending => start.clone_from(&last.id),
                    Some(_) => {}
                    None => break,
                }
                out.extend(got);
                if !full {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// New entries for a batch of up to `max_events` events (see [`EventStream::take`]): takes
    /// until the batch is full or `linger` has passed since the first take, and stops at once
    /// when a take finds nothing. A take that found every shard emptied waits `idle_poll` (within
    /// the linger) before the next: taking again at once would find a few entries per round
    /// trip, spending Redis's time, which the edge shares, where a pause lets a fuller take build
    /// up. Each take starts one shard further along `shards`, counted by `rotation`, so no shard
    /// is always read first.
    pub async fn take_batch(
        &self,
        consumer: &str,
        shards: &[u16],
        rotation: &mut usize,
        max_events: usize,
        linger: Duration,
        idle_poll: Duration,
    ) -> Result<Vec<StreamEntry>> {
        let started = std::time::Instant::now();
        let mut batch = Vec::new();
        let mut events = 0;
        let mut order = shards.to_vec();
        loop {
            *rotation = rotation.wrapping_add(1);
            order.copy_from_slice(shards);
            order.rotate_left(*rotation % shards.len().max(1));
            let asked = max_events.saturating_sub(events);
            let got = self.take(consumer, &order, asked, false).await?;
            let got_events = events_in(&got);
            let emptied = got.len() < TAKE_MAX_ENTRIES && got_events < asked;
            events += got_events;
            batch.extend(got);
            let lingered = started.elapsed();
            if batch.is_empty() || events >= max_events || lingered >= linger {
                return Ok(batch);
            }
            if emptied {
                tokio::time::sleep(idle_poll.min(linger - lingered)).await;
            }
        }
    }

    /// One `XREADGROUP` of up to `count` entries of one shard from `start` (`>`: new ones), the
    /// group created (with the stream) when it does not exist yet.
    async fn read_group(
        &self,
        key: &str,
        shard: u16,
        consumer: &str,
        count: usize,
        start: &str,
    ) -> Result<Vec<StreamEntry>> {
        use fred::prelude::StreamsInterface;
        let pool = self.redis.pool();
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let reply: Value = match pool.xreadgroup(GROUP, consumer, Some(count), None, false, key, start).await {
            Err(e) if e.details().starts_with("NOGROUP") => {
                match pool.xgroup_create::<Value, _, _, _>(key, GROUP, "0", true).await {
                    Err(e) if !e.details().starts_with("BUSYGROUP") => return Err(e.into()),
                    _ => {}
                }
                pool.xreadgroup(GROUP, consumer, Some(count), None, false, key, start).await?
            }
            other => other?,
        };
        stream_entries(reply, shard)
    }

    /// Takes over entries of `shard` pending for longer than `min_idle` with another consumer
    /// (one that died), holding up to about `events` events: they become `consumer`'s. The scan
    /// resumes at `cursor` (`0-0` to start) and the answer carries where to resume next time, so
    /// a long pending list is walked through rather than rescanned from its head.
    pub async fn claim_stale(
        &self,
        consumer: &str,
        shard: u16,
        min_idle: Duration,
        events: usize,
        cursor: &str,
    ) -> Result<(String, Vec<StreamEntry>)> {
        let args: Vec<Value> = vec![
            Value::from(GROUP),
            Value::from(consumer),
            Value::from(i64::try_from(min_idle.as_millis()).unwrap_or(i64::MAX)),
            Value::from(i64::try_from(events).unwrap_or(i64::MAX)),
            Value::from(i64::from(shard)),
            Value::from(cursor),
            Value::from(i64::try_from(TAKE_MAX_ENTRIES).unwrap_or(i64::MAX)),
        ];
        let mut flat: Vec<Value> = CLAIM.call(&self.redis, vec![self.stream_key(shard)], args).await?;
        let next =
            if flat.is_empty() { "0-0".to_owned() } else { flat.remove(0).as_string().unwrap_or_else(|| "0-0".into()) };
        Ok((next, quintuples(flat)))
    }

    /// How long the oldest of `entries` has been in its stream, by Redis's clock (`TIME`, the
    /// clock its entry ids are made of, so the node's own clock, set apart from Redis's,
    /// cannot make it look older or younger). Zero for no entries, or ids of the future.
    pub async fn waited(&self, entries: &[StreamEntry]) -> Result<Duration> {
        use fred::interfaces::ClientLike;
        use fred::types::CustomCommand;
        let Some(oldest) = entries.iter().filter_map(StreamEntry::added_ms).min() else {
            return Ok(Duration::ZERO);
        };
        let time: Vec<String> =
            self.redis.pool().custom(CustomCommand::new_static("TIME", None, false), Vec::<Value>::new()).await?;
        let parsed: Vec<u64> = time.iter().filter_map(|part| part.parse().ok()).collect();
        let [seconds, micros] = parsed[..] else {
            return Err(StorageError::Internal(format!("unexpected answer to TIME: {time:?}")));
        };
        let now_ms = seconds.saturating_mul(1000).saturating_add(micros / 1000);
        Ok(Duration::from_millis(now_ms.saturating_sub(oldest)))
    }

    /// Acknowledges and deletes entries of one shard whose every event is stored or
    /// dead-lettered: called only after their transactions committed.
    pub async fn ack(&self, shard: u16, entries: &[&StreamEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for chunk in entries.chunks(ACK_CHUNK) {
            let mut args: Vec<Value> = Vec::with_capacity(3 * chunk.len() + 1);
            args.push(Value::from(GROUP));
            for entry in chunk {
                debug_assert_eq!(entry.shard, shard, "an entry acknowledged on another shard");
                args.push(Value::from(entry.id.as_str()));
                args.push(Value::from(if entry.counted { i64::from(entry.events) } else { 0 }));
                args.push(Value::from(i64::from(entry.events)));
            }
            let keys = vec![self.stream_key(shard), self.attempts_key(shard), self.events_key(shard)];
            let _: i64 = ACK.call(&self.redis, keys, args).await?;
        }
        Ok(())
    }

    /// Counts one more failed attempt at the `index`th event of an entry; returns the attempts
    /// so far, or `None` when that event was dead-lettered already (its entry was not yet
    /// acknowledged when the ingestor stopped).
    pub async fn record_failure(&self, entry: &StreamEntry, index: usize) -> Result<Option<u32>> {
        let args = vec![Value::from(entry.id.as_str()), Value::from(entry.event_name(index))];
        let n: i64 = FAILED.call(&self.redis, vec![self.attempts_key(entry.shard)], args).await?;
        Ok((n >= 0).then(|| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// Moves a whole entry (one that cannot be decoded) to the dead-letter stream with the
    /// reason, and off its shard.
    pub async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<()> {
        let args: Vec<Value> = vec![
            Value::from(GROUP),
            Value::from(entry.id.as_str()),
            Value::Bytes(entry.payload.clone().unwrap_or_default().into()),
            Value::from(reason),
            Value::from(i64::from(entry.shard)),
        ];
        let keys = vec![
            self.stream_key(entry.shard),
            self.attempts_key(entry.shard),
            self.dead_letter_key(),
            self.events_key(entry.shard),
        ];
        let _: i64 = DEAD.call(&self.redis, keys, args).await?;
        Ok(())
    }

    /// Copies the `index`th event of an entry (`payload`: that event alone, format 1) to the
    /// dead-letter stream as `<entry id>/<index>`, once. The entry stays on its shard until its
    /// other events are stored; [`ack`](Self::ack) then removes it.
    pub async fn dead_letter_event(
        &self,
        entry: &StreamEntry,
        index: usize,
        payload: &[u8],
        reason: &str,
    ) -> Result<()> {
        let args: Vec<Value> = vec![
            Value::from(entry.event_name(index)),
            Value::Bytes(payload.to_vec().into()),
            Value::from(reason),
            Value::from(i64::from(entry.shard)),
        ];
        let keys = vec![self.attempts_key(entry.shard), self.dead_letter_key()];
        let _: i64 = DEAD_EVENT.call(&self.redis, keys, args).await?;
        Ok(())
    }

    /// Entries not yet stored, over all shards (an entry holds one request's events).
    pub async fn backlog(&self) -> Result<u64> {
        use fred::prelude::StreamsInterface;
        let mut total = 0u64;
        for shard in 0..self.config.shards {
            let n: u64 = self.redis.pool().xlen(self.stream_key(shard)).await?;
            total += n;
        }
        Ok(total)
    }

    /// Drops every shard's entries, unstored, with their counts and attempts: for a benchmark
    /// that measures the edge alone and has no use for what it accepted.
    pub async fn discard_all(&self) -> Result<()> {
        use fred::prelude::KeysInterface;
        for shard in 0..self.config.shards {
            let keys = vec![self.stream_key(shard), self.events_key(shard), self.attempts_key(shard)];
            let _: i64 = self.redis.pool().del(keys).await?;
        }
        Ok(())
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

/// The events `entries` hold, as the edge counted them.
pub fn events_in(entries: &[StreamEntry]) -> usize {
    entries.iter().map(|e| e.events as usize).sum()
}

/// How many entries to read next: as many as the event budget holds at the largest entry seen
/// so far (`per` events; one entry while none was seen), at least one, at most `left`.
fn next_count(budget: usize, per: u32, left: usize) -> usize {
    let c = if per > 0 { (budget / per as usize).max(1) } else { 1 };
    c.min(left)
}

/// The entries of an `XREADGROUP` answer on one stream: `[[key, [[id, [field, value, …]], …]]]`
/// (RESP2; a map from key to entries in RESP3), nil when there were none. An entry deleted while
/// pending comes back as `[id, nil]`.
fn stream_entries(reply: Value, shard: u16) -> Result<Vec<StreamEntry>> {
    let unexpected = |what: &str| StorageError::Internal(format!("unexpected XREADGROUP answer: {what}"));
    let entries = match reply {
        Value::Null => return Ok(Vec::new()),
        Value::Array(mut streams) => match streams.pop() {
            None => return Ok(Vec::new()),
            Some(Value::Array(mut pair)) if pair.len() == 2 => pair.pop().unwrap_or(Value::Null),
            Some(_) => return Err(unexpected("a stream is not a [key, entries] pair")),
        },
        Value::Map(map) => map.inner().into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        _ => return Err(unexpected("neither nil, an array nor a map")),
    };
    let entries = match entries {
        Value::Array(entries) => entries,
        Value::Null => return Ok(Vec::new()),
        _ => return Err(unexpected("the entries are not an array")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else { return Err(unexpected("an entry is not an array")) };
        if parts.len() != 2 {
            return Err(unexpected("an entry is not an [id, fields] pair"));
        }
        let fields = parts.pop().unwrap_or(Value::Null);
        let id = parts.pop().and_then(|id| id.as_string()).ok_or_else(|| unexpected("an entry without an id"))?;
        let (mut payload, mut events, mut counted) = (None, 1u32, false);
        let mut set = |name: &[u8], value: Value| match name {
            b"e" => {
                payload = Some(match value {
                    Value::Bytes(b) => b.to_vec(),
                    other => other.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
                });
            }
            // A format-1 entry is `e` alone, without its count.
            b"n" => {
                events = value.as_string().and_then(|n| n.parse::<u32>().ok()).unwrap_or(1).max(1);
                counted = true;
            }
            _ => {}
        };
        match fields {
            // Deleted while pending: nothing to store, just acknowledge it.
            Value::Null => {}
            Value::Array(fields) => {
                let mut it = fields.into_iter();
                while let (Some(name), Some(value)) = (it.next(), it.next()) {
                    set(name.as_bytes().unwrap_or_default(), value);
                }
            }
            Value::Map(fields) => {
                for (name, value) in fields.inner() {
                    set(name.as_bytes(), value);
                }
            }
            _ => return Err(unexpected("an entry's fields are not an array")),
        }
        out.push(StreamEntry { shard, id, payload, events, counted });
    }
    Ok(out)
}

fn quintuples(flat: Vec<Value>) -> Vec<StreamEntry> {
    let mut out = Vec::with_capacity(flat.len() / 5);
    let mut it = flat.into_iter();
    while let (Some(shard), Some(id), Some(payload), Some(events), Some(counted)) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    {
        let shard = shard.as_i64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
        let Some(id) = id.as_string() else { continue };
        let payload = match payload {
            Value::Null | Value::Boolean(false) => None,
            Value::Bytes(b) => Some(b.to_vec()),
            other => other.as_bytes().map(<[u8]>::to_vec),
        };
        let events = events.as_i64().and_then(|n| u32::try_from(n).ok()).unwrap_or(1).max(1);
        let counted = counted.as_i64() == Some(1);
        out.push(StreamEntry { shard, id, payload, events, counted });
    }
    out
}

static SESSION: Script = Script::new(
    r#"
-- KEYS: session key. ARGV: new session id, ttl seconds. The visitor's session, renewed on each
-- event; a new one after `ttl` of inactivity.
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
local sid = redis.call('GET', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return sid
"#,
);

static SALT: Script = Script::new(
    r#"
-- KEYS: the day's salt key. ARGV: a fresh salt, ttl seconds.
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
return redis.call('GET', KEYS[1])
"#,
);

impl EventStream {
    /// The salt of a UTC day (`2026-11-25`), the same on every node: created by the first node
    /// that needs it, forgotten two days later, so yesterday's visitor hashes cannot be redone.
    pub async fn daily_salt(&self, day: &str) -> Result<String> {
        let fresh = format!("{:032x}", rand::random::<u128>());
        let key = format!("{}:salt:{day}", self.redis.namespace());
        let salt: String =
            SALT.call(&self.redis, vec![key], vec![Value::from(fresh), Value::from(172_800_i64)]).await?;
        Ok(salt)
    }

    /// The current session of a (cookieless) visitor: kept while events keep coming within
    /// `inactivity`, a new one after.
    pub async fn session_of(&self, tenant: TenantId, visitor: &str, inactivity: Duration) -> Result<String> {
        let key = TenantKey::new(tenant, &["session", visitor]).render(self.redis.namespace());
        let fresh = format!("s.{:024x}", rand::random::<u128>() >> 32);
        let ttl = i64::try_from(inactivity.as_secs()).unwrap_or(1800).max(1);
        let sid: String = SESSION.call(&self.redis, vec![key], vec![Value::from(fresh), Value::from(ttl)]).await?;
        Ok(sid)
    }
}

#[cfg(test)]
mod tests {
    use fred::types::{Map, Value};

    use super::{StreamEntry, next_count, stream_entries};

    fn bulk(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec().into())
    }

    fn entry(id: &str, fields: Option<Vec<Value>>) -> Value {
        Value::Array(vec![bulk(id), fields.map_or(Value::Null, Value::Array)])
    }

    #[test]
    fn an_entry_was_added_at_its_ids_milliseconds() {
        let entry = |id: &str| StreamEntry { shard: 0, id: id.into(), payload: None, events: 1, counted: false };
        assert_eq!(entry("1795816303548-0").added_ms(), Some(1_795_816_303_548));
        assert_eq!(entry("1795816303548-17").added_ms(), Some(1_795_816_303_548));
        assert_eq!(entry("not-an-id").added_ms(), None);
        assert_eq!(entry("1795816303548").added_ms(), None);
    }

    #[test]
    fn entries_of_a_resp2_answer() {
        let answer = Value::Array(vec![Value::Array(vec![
            bulk("ns:ingest:{s3}"),
            Value::Array(vec![
                entry("1-0", Some(vec![bulk("e"), bulk("payload"), bulk("n"), bulk("20")])),
                entry("2-0", Some(vec![bulk("e"), bulk("old")])),
                // Deleted while pending: acknowledged without storing anything.
                entry("3-0", None),
            ]),
        ])]);
        let got = stream_entries(answer, 3).expect("entries");
        let summary: Vec<_> =
            got.iter().map(|e| (e.shard, e.id.as_str(), e.payload.as_deref(), e.events, e.counted)).collect();
        assert_eq!(
            summary,
            [
                (3, "1-0", Some(&b"payload"[..]), 20, true),
                (3, "2-0", Some(&b"old"[..]), 1, false),
                (3, "3-0", None, 1, false),
            ]
        );
    }

    #[test]
    fn entries_of_a_resp3_answer_and_of_none() {
        let mut fields = Map::new();
        fields.insert("e".into(), bulk("p"));
        fields.insert("n".into(), bulk("7"));
        let mut streams = Map::new();
        streams.insert("k".into(), Value::Array(vec![Value::Array(vec![bulk("9-1"), Value::Map(fields)])]));
        let got = stream_entries(Value::Map(streams), 0).expect("entries");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].id.as_str(), got[0].payload.as_deref(), got[0].events, got[0].counted),
            ("9-1", Some(&b"p"[..]), 7, true)
        );
        assert!(stream_entries(Value::Null, 0).expect("nil").is_empty());
        assert!(stream_entries(Value::Integer(1), 0).is_err(), "a shape Redis never sends is an error");
    }

    #[test]
    fn reads_size_themselves_on_the_largest_entry() {
        assert_eq!(next_count(5_000, 0, 500), 1, "the first read is one entry");
        assert_eq!(next_count(4_980, 20, 500), 249);
        assert_eq!(next_count(4_980, 20, 100), 100, "never more than left");
        assert_eq!(next_count(5, 20, 500), 1, "at least one");
    }
}
