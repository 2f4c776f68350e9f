//! Synthetic tracking events: the mix a marketing site's tracking script sends (mostly page views
//! and clicks, some forms — half of them identifying the visitor by email —, email opens and
//! clicks, affiliate arrivals, feedback), with browser contexts of realistic size. The same
//! events feed the load generator (as `/v1/collect` bodies, one visitor per body, as the browser
//! script batches them) and the raw COPY baseline (as `events` rows whose `meta` is what the edge
//! would store). Each event of a body carries an `id` and an `occurred_at`, as the script's do,
//! written afresh every time the body is sent ([`Body::fresh`]).

use axum::body::Bytes;
use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The offline writer's seeded generator (SplitMix64): the same seed gives the same events, so
/// runs compare like with like.
pub use flywheel_actors::model::offline::writer::Rng;

/// A UUID drawn from `rng`.
fn uuid(rng: &mut Rng) -> Uuid {
    Uuid::from_u64_pair(rng.next_u64(), rng.next_u64())
}

const SITES: &[&str] = &[
    "stride.example",
    "northwind-coffee.example",
    "acme-tools.example",
    "lumen-skincare.example",
    "brightpath.example",
];
const PAGES: &[&str] = &[
    "",
    "pricing",
    "products/trail-runner-pro",
    "products/everyday-sneaker",
    "collections/summer-sale",
    "blog/how-to-choose-running-shoes",
    "blog/10-tips-for-your-first-marathon",
    "about",
    "contact",
    "checkout/cart",
];
const TITLES: &[&str] = &[
    "Trail Runner Pro — Lightweight shoes for rough terrain",
    "Pricing | Plans for every team",
    "Summer sale: up to 40% off selected styles",
    "How to choose running shoes: a complete guide",
    "About us — Our story and our mission",
];
const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.google.com/search?q=best+trail+running+shoes+2026",
    "https://www.facebook.com/",
    "https://t.co/a8Xk2LmQ9z",
    "https://www.linkedin.com/feed/",
    "https://duckduckgo.com/",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];
const LOCALES: &[&str] = &["en-US", "en-GB", "pt-BR", "de-DE", "fr-FR", "es-ES"];
const SCREENS: &[(u32, u32)] = &[(1920, 1080), (1440, 900), (390, 844), (412, 915), (2560, 1440)];
const UTM_SOURCES: &[&str] = &["google", "newsletter", "facebook", "linkedin", "partner-blog"];
const UTM_MEDIUMS: &[&str] = &["cpc", "email", "social", "referral"];
const CAMPAIGNS: &[&str] = &["black-friday-2026", "spring-launch", "retargeting-q4", "webinar-followup"];
const ELEMENTS: &[&str] =
    &["#hero-cta", "button.add-to-cart", "a.nav-pricing", "#newsletter-signup", "img.product-thumb"];
const FORMS: &[&str] = &["newsletter-footer", "signup", "contact-sales", "demo-request"];
const FIRST_NAMES: &[&str] = &["ann", "bruno", "chloe", "dmitri", "eva", "farah", "gustavo", "hana"];
const FEEDBACK: &[&str] = &[
    "Great selection, but shipping to Portugal took longer than I expected.",
    "The size guide was really helpful, thanks!",
    "Checkout kept asking for my address twice.",
];

/// One generated visit: who, which session, on which site.
struct Visit {
    visitor: String,
    session: String,
    site: &'static str,
    user_agent: &'static str,
    locale: &'static str,
    screen: (u32, u32),
}

fn visit(rng: &mut Rng) -> Visit {
    Visit {
        visitor: format!("v.{:016x}", rng.next_u64()),
        session: format!("s.{:012x}", rng.next_u64() >> 16),
        site: rng.pick::<&str>(SITES),
        user_agent: rng.pick::<&str>(USER_AGENTS),
        locale: rng.pick::<&str>(LOCALES),
        screen: SCREENS[rng.below(SCREENS.len())],
    }
}

fn url(rng: &mut Rng, site: &str) -> String {
    let page = *rng.pick(PAGES);
    if rng.chance(30) {
        format!(
            "https://{site}/{page}?utm_source={}&utm_medium={}&utm_campaign={}",
            *rng.pick(UTM_SOURCES),
            *rng.pick(UTM_MEDIUMS),
            *rng.pick(CAMPAIGNS)
        )
    } else {
        format!("https://{site}/{page}")
    }
}

/// A browser context: page, referrer, browser, screen, sometimes UTM parameters and a click id.
fn context(rng: &mut Rng, v: &Visit) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("url".into(), url(rng, v.site).into());
    c.insert("title".into(), (*rng.pick(TITLES)).into());
    if rng.chance(60) {
        c.insert("referrer".into(), (*rng.pick(REFERRERS)).into());
    }
    c.insert("user_agent".into(), v.user_agent.into());
    c.insert("locale".into(), v.locale.into());
    c.insert("screen".into(), json!({"width": v.screen.0, "height": v.screen.1}));
    if rng.chance(30) {
        c.insert(
            "utm".into(),
            json!({"source": *rng.pick(UTM_SOURCES), "medium": *rng.pick(UTM_MEDIUMS), "campaign": *rng.pick(CAMPAIGNS)}),
        );
    }
    if rng.chance(10) {
        c.insert(
            "click_ids".into(),
            json!({"gclid": format!("Cj0KCQiA{:016x}{:016x}", rng.next_u64(), rng.next_u64())}),
        );
    }
    c
}

/// One event of the visit, as `/v1/collect` takes it, its `id` and `occurred_at` slots for
/// [`Body::fresh`] to fill.
fn event(rng: &mut Rng, v: &Visit) -> Value {
    let roll = rng.below(100);
    let mut e = Map::new();
    e.insert("id".into(), ID_SLOT.into());
    e.insert("occurred_at".into(), TIME_SLOT.into());
    e.insert("visitor_id".into(), v.visitor.clone().into());
    e.insert("session_id".into(), v.session.clone().into());
    let (kind, source) = match roll {
        0..55 => ("page_view", "web"),
        55..77 => ("click", "web"),
        77..82 => ("form_submit", "web"),
        82..88 => ("email_open", "pixel"),
        88..92 => ("email_click", "web"),
        92..96 => ("affiliate_click", "web"),
        _ => ("feedback", "web"),
    };
    e.insert("type".into(), kind.into());
    e.insert("source".into(), source.into());
    match kind {
        "page_view" => {
            e.insert("context".into(), Value::Object(context(rng, v)));
        }
        "click" => {
            e.insert("context".into(), Value::Object(context(rng, v)));
            e.insert("properties".into(), json!({"element": *rng.pick(ELEMENTS), "href": url(rng, v.site)}));
        }
        "form_submit" => {
            e.insert("context".into(), Value::Object(context(rng, v)));
            let mut p = Map::new();
            p.insert("form_id".into(), (*rng.pick(FORMS)).into());
            // Half the forms carry an email: the ingestor links the visitor to that lead.
            if rng.chance(50) {
                p.insert(
                    "email".into(),
                    format!("{}.{}@{}", *rng.pick(FIRST_NAMES), rng.below(100_000), v.site).into(),
                );
            }
            e.insert("properties".into(), Value::Object(p));
        }
        "email_open" => {
            e.insert("email_id".into(), uuid(rng).to_string().into());
            e.insert("context".into(), json!({"user_agent": v.user_agent}));
        }
        "email_click" => {
            e.insert("email_id".into(), uuid(rng).to_string().into());
            e.insert("context".into(), Value::Object(context(rng, v)));
        }
        "affiliate_click" => {
            let mut c = context(rng, v);
            c.insert("ref".into(), format!("partner_{}", rng.below(500)).into());
            e.insert("context".into(), Value::Object(c));
        }
        _ => {
            e.insert(
                "context".into(),
                json!({"url": url(rng, v.site), "user_agent": v.user_agent, "locale": v.locale}),
            );
            let mut p = Map::new();
            p.insert("score".into(), rng.below(11).into());
            if rng.chance(50) {
                p.insert("text".into(), (*rng.pick(FEEDBACK)).into());
            }
            e.insert("properties".into(), Value::Object(p));
        }
    }
    Value::Object(e)
}

/// `count` request bodies of `events_per_request` events each, one visit per body.
pub fn bodies(rng: &mut Rng, count: usize, events_per_request: usize) -> (Vec<Body>, Vec<Value>) {
    let mut bodies = Vec::with_capacity(count);
    let mut all = Vec::with_capacity(count * events_per_request);
    for _ in 0..count {
        let v = visit(rng);
        let events: Vec<Value> = (0..events_per_request).map(|_| event(rng, &v)).collect();
        bodies.push(Body::new(json!({ "events": events }).to_string()));
        all.extend(events);
    }
    (bodies, all)
}

/// Where an event's id goes: a UUID v7's text (36 bytes), never one `fresh` writes (its time,
/// 2^48 - 1 ms, is in the year 10889).
const ID_SLOT: &str = "ffffffff-ffff-7fff-bfff-ffffffffffff";
/// Where an event's time goes: an RFC 3339 time to the millisecond in UTC (24 bytes), never a
/// valid one (month 0), so a slot left unfilled is refused, not stored.
const TIME_SLOT: &str = "0000-00-00T00:00:00.000Z";

/// A `/v1/collect` body whose events get new ids and times each time it is sent, as the browser
/// script gives them (a UUID v7 and the time, to the millisecond): sent again, a body is new
/// events, not a retry the node would store once.
#[derive(Debug, Clone)]
pub struct Body {
    text: Bytes,
    /// Where each id slot and each time slot starts in `text`.
    ids: Vec<usize>,
    times: Vec<usize>,
}

impl Body {
    fn new(text: String) -> Self {
        let starts = |slot: &str| -> Vec<usize> {
            let slot = format!("\"{slot}\"");
            text.match_indices(&slot).map(|(at, _)| at + 1).collect()
        };
        let (ids, times) = (starts(ID_SLOT), starts(TIME_SLOT));
        Self { text: Bytes::from(text), ids, times }
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The body with every event's id and time filled in: ids of the current millisecond, their
    /// random part drawn from `seed` (a different one for each send), and that millisecond as
    /// every event's `occurred_at` (the script's batch of a moment).
    pub fn fresh(&self, seed: u64) -> Bytes {
        let mut out = self.text.to_vec();
        let now = Utc::now();
        let time = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or_default();
        let mut rng = Rng::new(seed);
        for &at in &self.ids {
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
            random[8..].copy_from_slice(&rng.next_u64().to_le_bytes()[..2]);
            let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
            id.hyphenated().encode_lower(&mut out[at..at + ID_SLOT.len()]);
        }
        // Years 0 to 9999 in UTC: always the slot's length.
        if time.len() == TIME_SLOT.len() {
            for &at in &self.times {
                out[at..at + TIME_SLOT.len()].copy_from_slice(time.as_bytes());
            }
        }
        Bytes::from(out)
    }
}

/// An `events` row as the ingestor would store it, minus what each copy makes fresh (tenant,
/// id, timestamps).
#[derive(Debug, Clone)]
pub struct Row {
    pub event_type: String,
    pub source: String,
    pub visitor_id: Option<String>,
    pub session_id: Option<String>,
    pub email_id: Option<Uuid>,
    /// `events.meta` as the edge builds it: the context, the properties (less an identifying
    /// email), the truncated IP.
    pub meta: String,
}

impl Row {
    pub fn from_event(event: &Value) -> Self {
        let text = |field: &str| event.get(field).and_then(Value::as_str).map(str::to_owned);
        let mut meta = Map::new();
        meta.insert("ip".into(), "127.0.0.0".into());
        if let Some(context) = event.get("context") {
            meta.insert("context".into(), context.clone());
        }
        if let Some(Value::Object(props)) = event.get("properties") {
            let mut props = props.clone();
            props.remove("email");
            if !props.is_empty() {
                meta.insert("properties".into(), Value::Object(props));
            }
        }
        Self {
            event_type: text("type").unwrap_or_else(|| "page_view".to_owned()),
            source: text("source").unwrap_or_else(|| "web".to_owned()),
            visitor_id: text("visitor_id"),
            session_id: text("session_id"),
            email_id: text("email_id").and_then(|s| Uuid::parse_str(&s).ok()),
            meta: Value::Object(meta).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_hold_the_requested_events_and_rows_keep_no_email() {
        let mut rng = Rng::new(7);
        let (bodies, events) = bodies(&mut rng, 50, 20);
        assert_eq!((bodies.len(), events.len()), (50, 1000));
        for (i, body) in bodies.iter().enumerate() {
            let batch =
                flywheel_contracts::events::parse_batch(&body.fresh(i as u64)).expect("the edge accepts every body");
            assert_eq!(batch.len(), 20);
        }
        let rows: Vec<Row> = events.iter().map(Row::from_event).collect();
        assert!(rows.iter().all(|r| !r.meta.contains('@')));
        let mean = rows.iter().map(|r| r.meta.len()).sum::<usize>() / rows.len();
        assert!((300..600).contains(&mean), "meta averages {mean} bytes");
        for kind in ["page_view", "click", "form_submit", "email_open", "email_click", "affiliate_click", "feedback"] {
            assert!(rows.iter().any(|r| r.event_type == kind), "no {kind}");
        }
    }

    #[test]
    fn every_send_of_a_body_is_new_events_of_the_moment() {
        let mut rng = Rng::new(11);
        let (bodies, _) = bodies(&mut rng, 2, 20);
        let before = Utc::now();
        let sends = [bodies[0].fresh(1), bodies[0].fresh(2), bodies[1].fresh(3)];
        let after = Utc::now();
        let mut ids = std::collections::BTreeSet::new();
        for send in &sends {
            let text = std::str::from_utf8(send).expect("UTF-8");
            assert!(!text.contains(ID_SLOT) && !text.contains(TIME_SLOT), "a slot left unfilled: {text}");
            for event in flywheel_contracts::events::parse_batch(send).expect("the edge accepts every send") {
                let (id, at) = (event.id.expect("an id"), event.occurred_at.expect("a time"));
                assert_eq!(id.get_version_num(), 7);
                let (secs, nanos) = id.get_timestamp().expect("a v7 id has a time").to_unix();
                let id_millis = i64::try_from(secs).expect("seconds") * 1000 + i64::from(nanos / 1_000_000);
                assert_eq!(id_millis, at.timestamp_millis(), "the id is of the event's millisecond");
                assert!(before.timestamp_millis() <= id_millis && id_millis <= after.timestamp_millis());
                assert!(ids.insert(id), "{id} twice");
            }
        }
        assert_eq!(ids.len(), 60);
    }
}
