//! The tracking edge: `POST /v1/collect` (batches from the browser script or servers),
//! `GET /t.gif` (one event in a pixel's query), `GET /t.js` (the browser script).
//!
//! A request is authenticated by the tenant's public write key (`?key=`, `X-Flywheel-Key`, or
//! the pixel's `k=`) or by a secret API key of a writing role. Public keys can only add
//! browser-observable events from the `web` and `pixel` sources, and only from the tenant's
//! allowed origins. Events are validated (errors name `events.<i>.<field>`), enriched (id, receive
//! time, clamped timestamps, bot flag, truncated IP, cookieless visitor ids, the identifying
//! email moved out of the properties), then admitted to the ingest stream with the rate limits
//! and the backlog bound in one Redis round trip, as one stream entry holding all the request's
//! events. The answer (202) is sent only after Redis took that entry.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::tenant::TenantStatus;
use flywheel_contracts::api::tracking::Collected;
use flywheel_contracts::events::{self, BatchError, EventContext, EventSource, EventType, TrackingEvent};
use flywheel_contracts::ingest::{IngestEntry, compress_entry, encode_packed};
use flywheel_contracts::{Email, TenantId};
use flywheel_storage::event_stream::{Admission, EventStream, Limits};
use flywheel_storage::tracking::WriteKeyInfo;
use sha2::{Digest, Sha256};
use uuid::Uuid;

mod keys;
mod meta;

use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use keys::{Cached, Found, KeyCache};

/// The tracking script, served as is (see `gateway/assets/t.js`).
pub(crate) const TRACKER_JS: &str = include_str!("../../assets/t.js");

/// A transparent 1×1 GIF.
const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Types a public write key may send: what a browser or an email client observes.
const PUBLIC_TYPES: &[EventType] = &[
    EventType::PageView,
    EventType::Click,
    EventType::FormSubmit,
    EventType::EmailOpen,
    EventType::EmailClick,
    EventType::AffiliateClick,
    EventType::Feedback,
];

/// Settings of the tracking edge.
#[derive(Debug, Clone)]
pub struct TrackingConfig {
    pub stream: flywheel_storage::event_stream::StreamConfig,
    /// Events per second per tenant, unless the tenant has its own limit.
    pub tenant_events_per_second: u32,
    /// Requests per second per client IP on the public (write key) paths.
    pub ip_requests_per_second: u32,
    /// How long a write key's lookup is reused (a rotated key stops within this on other nodes).
    pub key_cache_ttl: Duration,
    /// `occurred_at` later than receipt + this is clamped to the receipt time.
    pub max_future: Duration,
    /// `occurred_at` older than this is clamped to now − this (imports: `max_import_age`).
    pub max_age: Duration,
    pub max_import_age: Duration,
    /// Take the client IP from `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Inactivity that ends a cookieless visitor's session.
    pub session_inactivity: Duration,
    /// Tracking requests handled at once (each holds up to one 1 MiB body); more get 503.
    pub max_in_flight: usize,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            stream: Default::default(),
            tenant_events_per_second: 2_000,
            ip_requests_per_second: 100,
            key_cache_ttl: Duration::from_secs(10),
            max_future: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(31 * 24 * 3600),
            max_import_age: Duration::from_secs(5 * 366 * 24 * 3600),
            trust_forwarded_for: false,
            session_inactivity: Duration::from_secs(30 * 60),
            max_in_flight: 256,
        }
    }
}

/// The tracking edge's state: the stream, the write-key cache, the day's salt.
#[derive(Debug)]
pub(crate) struct Tracking {
    pub(crate) stream: EventStream,
    config: TrackingConfig,
    /// Requests being handled; beyond `max_in_flight` the edge answers 503 at once, so memory
    /// is bounded by that many bodies whatever the load.
    in_flight: tokio::sync::Semaphore,
    keys: KeyCache,
    salt: Mutex<Option<(String, String)>>,
}

impl Tracking {
    pub(crate) fn new(stream: EventStream, config: TrackingConfig) -> Self {
        let in_flight = tokio::sync::Semaphore::new(config.max_in_flight.max(1));
        let keys = KeyCache::new(config.key_cache_ttl);
        Self { stream, config, in_flight, keys, salt: Mutex::new(None) }
    }

    /// The tenant and settings of a write key (`None`: no such key), from the cache when it can
    /// (see `collect/keys.rs`).
    async fn write_key(&self, state: &AppState, key: &str) -> Result<Found, ApiError> {
        if !key.starts_with("fwp_") || key.len() != 36 {
            return Ok(None);
        }
        match self.keys.get(key, Instant::now()) {
            Cached::Fresh(found) => Ok(found),
            Cached::Stale(found) => {
                // Looked up again in the background; this request goes on with what is cached.
                let (state, key, generation) = (state.clone(), key.to_owned(), self.keys.generation());
                tokio::spawn(async move {
                    let looked_up = look_up_key(&state, &key).await;
                    if let Err(e) = &looked_up {
                        tracing::warn!(error = %e, "A write key could not be looked up again; the next request retries.");
                    }
                    state.tracking().keys.refresh(&key, generation, looked_up);
                });
                Ok(found)
            }
            Cached::Missing => Ok(self.keys.look_up(key, || look_up_key(state, key)).await?),
        }
    }

    /// Forgets cached lookups of a tenant's keys (after its settings changed on this node).
    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        self.keys.forget_tenant(tenant);
    }

    async fn salt(&self, day: &str) -> Result<String, ApiError> {
        if let Ok(cached) = self.salt.lock()
            && let Some((d, s)) = cached.as_ref()
            && d == day
        {
            return Ok(s.clone());
        }
        let salt = self.stream.daily_salt(day).await?;
        if let Ok(mut cached) = self.salt.lock() {
            *cached = Some((day.to_owned(), salt.clone()));
        }
        Ok(salt)
    }
}

/// A write key's tenant and settings, from PostgreSQL.
async fn look_up_key(state: &AppState, key: &str) -> flywheel_storage::Result<Found> {
    Ok(state.db().tracking_by_key(key).await?.map(Arc::new))
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/collect", post(collect).options(preflight))
        .route("/t.gif", get(pixel))
        .route("/t.js", get(script))
}

/// Who is sending: a page or pixel with the public key, or a server with a secret key.
enum Sender {
    Public(Arc<WriteKeyInfo>),
    Server(TenantId),
}

impl Sender {
    fn tenant(&self) -> TenantId {
        match self {
            Sender::Public(info) => info.tenant,
            Sender::Server(t) => *t,
        }
    }
}

/// What the request tells about its sender's network and browser.
struct Client {
    ip: IpAddr,
    user_agent: Option<String>,
    /// The request's own user agent is a known bot (decided once per request).
    bot: bool,
}

fn client(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Client {
    let forwarded = state
        .tracking()
        .config
        .trust_forwarded_for
        .then(|| headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()))
        .flatten()
        // The right-most address is the one the trusted proxy saw; the ones before it are
        // whatever the client claimed.
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok());
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| truncate(ua, 512));
    let bot = user_agent.as_deref().is_some_and(is_bot);
    Client { ip: forwarded.unwrap_or(peer.ip()), user_agent, bot }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

async fn public_sender(state: &AppState, key: Option<&str>) -> Result<Arc<WriteKeyInfo>, ApiError> {
    let key = key.ok_or(ApiError::Unauthorized)?;
    let info = state.tracking().write_key(state, key).await?.ok_or(ApiError::Unauthorized)?;
    if info.status != TenantStatus::Active {
        return Err(ApiError::Forbidden("this tenant is suspended".into()));
    }
    Ok(info)
}

/// Whether a page of `origin` may send with this key. No `Origin` header: not a browser's
/// cross-origin request (a server, curl), allowed. `Origin: null` (sandboxed frames, `file:`)
/// is allowed only while the tenant lists no origins.
fn origin_allowed(info: &WriteKeyInfo, origin: Option<&str>) -> bool {
    match origin {
        None => true,
        Some(o) => info.allowed_origins.is_empty() || info.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)),
    }
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// `POST /v1/collect`.
async fn collect(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let origin = origin_of(&headers).map(str::to_owned);
    let permit = state.tracking().in_flight.try_acquire();
    let outcome = match permit {
        Ok(_permit) => collect_inner(&state, peer, &query, &headers, body).await,
        Err(_) => Err(ApiError::Overloaded { retry_after_secs: 1 }),
    };
    let mut response = match outcome {
        Ok(collected) => (StatusCode::ACCEPTED, Json(collected)).into_response(),
        Err(e) => e.into_response(),
    };
    // The browser may read the answer (errors included) from the origin that sent it; an origin
    // that is not allowed got 403 and no CORS header, so it cannot read even that.
    if let Some(origin) = origin
        && response.status() != StatusCode::FORBIDDEN
        && let Ok(v) = HeaderValue::from_str(&origin)
    {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

async fn collect_inner(
    state: &AppState,
    peer: SocketAddr,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Collected, ApiError> {
    let sender = if headers.contains_key(header::AUTHORIZATION) {
        let auth = Auth::from_headers(headers, state).await?;
        auth.require_write()?;
        Sender::Server(auth.0.tenant_id)
    } else {
        let key = query
            .get("key")
            .map(String::as_str)
            .or_else(|| headers.get("x-flywheel-key").and_then(|v| v.to_str().ok()));
        let info = public_sender(state, key).await?;
        if !origin_allowed(&info, origin_of(headers)) {
            return Err(ApiError::Forbidden("this origin is not allowed to send events for this tenant".into()));
        }
        Sender::Public(info)
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(media.as_str(), "" | "application/json" | "text/plain") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes: Bytes = axum::body::to_bytes(body, events::MAX_BATCH_BYTES).await.map_err(|_| ApiError::TooLarge {
        field: None,
        message: format!("a batch is at most {} bytes", events::MAX_BATCH_BYTES),
    })?;
    let batch = events::parse_batch(&bytes).map_err(batch_error)?;
    let client = client(state, headers, peer);
    // A string can hold a NUL only through the escape `\u0000` (JSON forbids a raw one): without
    // it in the body, there is nothing to strip.
    let nul = memchr_escape(&bytes);
    admit(state, &sender, &client, batch, nul).await
}

/// Whether a JSON text holds `\u0000` (or something that only looks like it, `\\u0000`: a
/// false alarm costs the slow path, nothing else).
fn memchr_escape(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"\\u0000").is_some()
}

fn batch_error(e: BatchError) -> ApiError {
    match e {
        BatchError::TooLarge { field, message } => ApiError::TooLarge { field, message },
        BatchError::Malformed { message } => ApiError::MalformedJson(message),
        BatchError::Invalid { field, message } => ApiError::Validation { field, message },
    }
}

/// Checks what the sender may send, enriches, and admits the events to the stream.
async fn admit(
    state: &AppState,
    sender: &Sender,
    client: &Client,
    batch: Vec<TrackingEvent>,
    nul: bool,
) -> Result<Collected, ApiError> {
    let tracking = state.tracking();
    if let Sender::Public(_) = sender {
        for (i, e) in batch.iter().enumerate() {
            if !PUBLIC_TYPES.contains(&e.event_type) {
                return Err(ApiError::Validation {
                    field: Some(format!("events.{i}.type")),
                    message: format!(
                        "{} events need a secret API key (server-side); a write key may send {}",
                        e.event_type,
                        PUBLIC_TYPES.iter().map(EventType::as_str).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            if !matches!(e.source, EventSource::Web | EventSource::Pixel) {
                return Err(ApiError::Validation {
                    field: Some(format!("events.{i}.source")),
                    message: "a write key may send events from the web and pixel sources only".into(),
                });
            }
        }
    }
    let tenant = sender.tenant();
    let now = Utc::now();
    let cookieless = matches!(sender, Sender::Public(info) if info.cookieless);
    let mut cookieless_identity: Option<(String, String)> = None;
    if cookieless {
        let salt = tracking.salt(&now.format("%Y-%m-%d").to_string()).await?;
        let visitor = cookieless_visitor(&salt, tenant, client);
        let session = tracking.stream.session_of(tenant, &visitor, tracking.config.session_inactivity).await?;
        cookieless_identity = Some((visitor, session));
    }
    let truncated = truncated_ip(client.ip);
    let request = RequestFacts {
        tenant,
        now,
        client,
        truncated_ip: &truncated,
        config: &tracking.config,
        cookieless: cookieless_identity.as_ref(),
        nul,
    };
    let mut bots = BotMemo::default();
    let entries: Vec<IngestEntry> = batch.into_iter().map(|event| enrich(event, &request, &mut bots)).collect();
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    // Every event is of `tenant` (enrich sets it): the encoding cannot refuse them.
    let payload = encode_packed(tenant.as_uuid(), &entries).map(compress_entry).ok_or_else(|| {
        tracing::error!(tenant_id = %tenant, "The events of one request could not be encoded.");
        ApiError::Internal
    })?;
    drop(entries);
    let limits = match sender {
        Sender::Public(info) => Limits {
            tenant_events_per_second: info.events_per_second.unwrap_or(tracking.config.tenant_events_per_second),
            ip_requests_per_second: Some(tracking.config.ip_requests_per_second),
            bucket: "events",
        },
        // Server senders (imports, order systems) have a bucket of their own at the node's rate.
        Sender::Server(_) => Limits {
            tenant_events_per_second: tracking.config.tenant_events_per_second,
            ip_requests_per_second: None,
            bucket: "server",
        },
    };
    let network = client_network(client.ip);
    let ip = matches!(sender, Sender::Public(_)).then_some(network.as_str());
    match tracking.stream.admit(tenant, ip, limits, payload, ids.len()).await? {
        Admission::Accepted => Ok(Collected { accepted: ids.len(), ids }),
        Admission::RateLimited { retry_after } => {
            Err(ApiError::RateLimited { retry_after_secs: ceil_secs(retry_after) })
        }
        Admission::Overloaded { retry_after } => {
            tracing::debug!(tenant_id = %tenant, "Ingest backlog full; refusing events.");
            Err(ApiError::Overloaded { retry_after_secs: ceil_secs(retry_after) })
        }
    }
}

/// Whole seconds, rounded up: `Retry-After: 1` after 1.9 s would invite a second refusal.
fn ceil_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1).try_into().unwrap_or(u64::MAX)
}

/// The cookieless visitor id: a hash of the day's salt, the tenant, the IP and the browser,
/// so the same browser is one visitor for a day and cannot be followed across days or tenants.
fn cookieless_visitor(salt: &str, tenant: TenantId, client: &Client) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(tenant.as_uuid().as_bytes());
    h.update(client.ip.to_string().as_bytes());
    h.update([0]);
    h.update(client.user_agent.as_deref().unwrap_or("").as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("c.{hex}")
}

/// The client's network for rate limiting: an IPv4 address, or the /64 of an IPv6 one (a
/// subscriber's whole allocation, so rotating addresses does not reset the limit).
fn client_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0).to_string()
            }
        },
    }
}

/// The IP without its host part: IPv4 /24, IPv6 /48.
fn truncated_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0")
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return truncated_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
    }
}

/// Known bots and crawlers, by user agent (lower case). Flagged, not dropped.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "headlesschrome",
    "phantomjs",
    "lighthouse",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "okhttp",
    "facebookexternalhit",
    "preview",
    "ahrefs",
    "semrush",
    "mj12",
    "yandex",
    "baidu",
    "petalbot",
    "gptbot",
    "ccbot",
];

/// The markers, searched for all at once in one pass over the user agent, in any case.
static BOT_MATCHER: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(BOT_MARKERS).ok()
});

pub(crate) fn is_bot(user_agent: &str) -> bool {
    match BOT_MATCHER.as_ref() {
        Some(matcher) => matcher.is_match(user_agent),
        // Building from these few literals cannot fail; were it to, the plain search decides.
        None => {
            let ua = user_agent.to_ascii_lowercase();
            BOT_MARKERS.iter().any(|m| ua.contains(m))
        }
    }
}

/// Removes NUL characters from every string (keys included) of a JSON object.
fn strip_nul(object: &mut JsonObject) {
    fn clean(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', ""),
            serde_json::Value::Array(a) => a.iter_mut().for_each(clean),
            serde_json::Value::Object(o) => strip_nul(o),
            _ => {}
        }
    }
    if object.keys().any(|k| k.contains('\0')) {
        let entries: Vec<_> = std::mem::take(object).into_iter().collect();
        object.extend(entries.into_iter().map(|(k, v)| (k.replace('\0', ""), v)));
    }
    object.values_mut().for_each(clean);
}

/// What every event of one request shares.
struct RequestFacts<'a> {
    tenant: TenantId,
    now: DateTime<Utc>,
    client: &'a Client,
    /// The client's IP without its host part, computed once per request.
    truncated_ip: &'a str,
    config: &'a TrackingConfig,
    cookieless: Option<&'a (String, String)>,
    /// The events may hold NUL characters (see `memchr_escape`): strip them.
    nul: bool,
}

/// The last user agent looked up among a request's events, and whether it is a bot's: the
/// events of one page's batch nearly always carry the same one.
#[derive(Default)]
struct BotMemo {
    last: Option<(String, bool)>,
}

impl BotMemo {
    fn is_bot(&mut self, user_agent: &str) -> bool {
        match &self.last {
            Some((ua, bot)) if ua == user_agent => *bot,
            _ => {
                let bot = is_bot(user_agent);
                self.last = Some((user_agent.to_owned(), bot));
                bot
            }
        }
    }
}

/// Removes NUL characters from every string of a context (rare: only when the body had one).
fn strip_nul_context(context: EventContext) -> EventContext {
    match serde_json::to_value(&context) {
        Ok(serde_json::Value::Object(mut o)) => {
            strip_nul(&mut o);
            serde_json::from_value(serde_json::Value::Object(o)).unwrap_or(context)
        }
        _ => context,
    }
}

/// The stream entry for one validated event.
fn enrich(mut event: TrackingEvent, request: &RequestFacts<'_>, bots: &mut BotMemo) -> IngestEntry {
    let (now, config, client) = (request.now, request.config, request.client);
    let browser = matches!(event.source, EventSource::Web | EventSource::Pixel);
    let mut clamped_from = None;
    // Time: the client's, unless it is implausible; then the bound, flagged.
    let max_age = if event.source == EventSource::Import { config.max_import_age } else { config.max_age };
    let occurred_at = match event.occurred_at {
        None => minted_at(event.id).filter(|t| *t <= now + config.max_future && *t >= now - max_age).unwrap_or(now),
        Some(t) if t > now + config.max_future => {
            clamped_from = Some(t.to_rfc3339());
            now
        }
        Some(t) if t < now - max_age => {
            clamped_from = Some(t.to_rfc3339());
            now - max_age
        }
        Some(t) => t,
    };
    let mut bot = false;
    if browser {
        let mut context = event.context.take().unwrap_or_default();
        if context.user_agent.is_none() {
            context.user_agent = client.user_agent.clone();
        }
        // The request's own user agent decides (a page cannot claim to be a browser for the
        // bot that runs it); the event's, when the request has none (a server relaying).
        bot = match &client.user_agent {
            Some(_) => client.bot,
            None => context.user_agent.as_deref().is_some_and(|ua| bots.is_bot(ua)),
        };
        event.context = Some(context);
    }
    if let Some((visitor, session)) = request.cookieless
        && browser
    {
        event.visitor_id = Some(visitor.clone());
        event.session_id = Some(session.clone());
    }
    // PostgreSQL text and jsonb cannot hold NUL characters; they carry no meaning in analytics.
    if request.nul {
        event.ad_id = event.ad_id.map(|a| a.replace('\0', ""));
        if let Some(props) = event.properties.as_mut() {
            strip_nul(props);
        }
        event.context = event.context.take().map(|c| Box::new(strip_nul_context(*c)));
    }
    // An email in the properties identifies the visitor; it links the event to its lead and is
    // not kept in the event itself.
    let mut identify_email = None;
    if let Some(props) = event.properties.as_mut()
        && let Some(email) = props.get("email").and_then(|v| v.as_str()).and_then(|s| Email::parse(s).ok())
    {
        props.remove("email");
        identify_email = Some(email.as_str().to_owned());
    }
    let meta = meta::Meta {
        bot,
        clamped_from,
        context: event.context.as_deref().filter(|c| **c != EventContext::default()),
        ip: browser.then_some(request.truncated_ip),
        properties: event.properties.as_ref().filter(|p| !p.is_empty()),
    };
    let meta = meta::write(&meta);
    IngestEntry {
        format: IngestEntry::FORMAT,
        tenant: request.tenant.as_uuid(),
        id: event.id.unwrap_or_else(Uuid::now_v7),
        event_type: event.event_type,
        source: event.source,
        occurred_at_us: occurred_at.timestamp_micros(),
        received_at_us: now.timestamp_micros(),
        visitor_id: event.visitor_id,
        session_id: event.session_id,
        lead_id: event.lead_id.map(|l| l.as_uuid()),
        campaign_id: event.campaign_id.map(|c| c.as_uuid()),
        landing_page_id: event.landing_page_id.map(|p| p.as_uuid()),
        email_id: event.email_id,
        ad_id: event.ad_id,
        identify_email,
        meta,
    }
}

/// When a UUID v7 was minted (its first 48 bits are a Unix time in milliseconds): the time of an
/// event sent without `occurred_at` under a v7 id, while it is within the accepted window. A
/// retry of it then lands on the same time, where the receipt time would move with every retry,
/// so the duplicate check (within a day of the event's time) finds the first copy; a retry that
/// comes once the id's time has left the window gets its receipt time, as other ids do.
fn minted_at(id: Option<Uuid>) -> Option<DateTime<Utc>> {
    let id = id.filter(|id| id.get_version_num() == 7)?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// `OPTIONS /v1/collect`: the CORS preflight of a `fetch` with a JSON body or the key header.
async fn preflight(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let origin = origin_of(&headers);
    let allowed = match query.get("key") {
        Some(key) => match state.tracking().write_key(&state, key).await {
            Ok(Some(info)) => origin_allowed(&info, origin),
            _ => false,
        },
        // Without the key in the URL the tenant is unknown here; the POST is checked anyway.
        None => true,
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = origin.filter(|_| allowed)
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, x-flywheel-key"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// `GET /t.gif?k=<write key>&t=<type>&…`: one event; answers the image, or a JSON error.
async fn pixel(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _permit = state.tracking().in_flight.try_acquire().map_err(|_| ApiError::Overloaded { retry_after_secs: 1 })?;
    let key = pairs.iter().find(|(k, _)| k == "k").map(|(_, v)| v.as_str());
    let info = public_sender(&state, key).await?;
    let event = events::parse_pixel(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(batch_error)?;
    let client = client(&state, &headers, peer);
    // Query values are percent-decoded: `%00` is a NUL.
    admit(&state, &Sender::Public(info), &client, vec![event], true).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=0")),
        ],
        PIXEL_GIF,
    )
        .into_response())
}

/// The script gzipped once, at first use (what nearly every browser accepts).
static TRACKER_JS_GZIP: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail; an empty result falls back to the plain script.
    let _ = gz.write_all(TRACKER_JS.as_bytes());
    gz.finish().unwrap_or_default()
});

/// `GET /t.js`: gzipped when accepted, cacheable for an hour by browsers and CDNs, revalidated
/// by ETag.
async fn script(method: Method, headers: HeaderMap) -> Response {
    static ETAG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let digest = Sha256::digest(TRACKER_JS.as_bytes());
        format!("\"{}\"", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
    });
    let etag = ETAG.as_str();
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600, stale-while-revalidate=86400")),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, common, [(header::ETAG, etag.to_owned())]).into_response();
    }
    let gzip = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|e| e.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip")))
    }) && !TRACKER_JS_GZIP.is_empty();
    let gzipped: &'static [u8] = &TRACKER_JS_GZIP;
    let body: &'static [u8] = match (method == Method::HEAD, gzip) {
        (true, _) => &[],
        (false, true) => gzipped,
        (false, false) => TRACKER_JS.as_bytes(),
    };
    let mut response = (
        common,
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8".to_owned()),
            (header::ETAG, etag.to_owned()),
            (header::VARY, "Accept-Encoding".to_owned()),
        ],
        body,
    )
        .into_response();
    if gzip {
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_lose_their_host_part() {
        assert_eq!(truncated_ip("203.0.113.77".parse().expect("ip")), "203.0.113.0");
        assert_eq!(truncated_ip("2001:db8:1234:5678::1".parse().expect("ip")), "2001:db8:1234::");
        assert_eq!(truncated_ip("::ffff:198.51.100.9".parse().expect("ip")), "198.51.100.0");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1900)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(3)), 1);
    }

    #[test]
    fn a_v7_id_gives_its_minting_time_and_other_ids_none() {
        let at = DateTime::from_timestamp(1_790_000_000, 123_000_000).expect("time");
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_790_000_000, 123_000_000);
        assert_eq!(minted_at(Some(Uuid::new_v7(ts))), Some(at));
        assert_eq!(minted_at(Some(Uuid::new_v4())), None);
        assert_eq!(minted_at(None), None);
    }

    #[test]
    fn bots_are_recognised() {
        assert!(is_bot("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"));
        assert!(is_bot("curl/8.5.0"));
        assert!(!is_bot(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15"
        ));
    }

    #[test]
    fn the_bot_memo_answers_for_each_user_agent_it_is_asked_about() {
        let safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15";
        let mut memo = BotMemo::default();
        // Alternating agents: a memo that kept its first answer would call Safari a bot.
        for ua in ["curl/8.5.0", safari, safari, "Googlebot/2.1", safari] {
            assert_eq!(memo.is_bot(ua), is_bot(ua), "{ua}");
        }
    }
}
