//! Tracking over HTTP against real PostgreSQL and Redis: the collect API, the pixel and the
//! script; ingestion into `events` exactly once; dead letters; identity stitching; every bad
//! input's status and JSON error; rate limits; cookieless visitors; tenant isolation.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use flywheel_contracts::ingest::IngestEntry;
use flywheel_contracts::{Role, TenantId};
use flywheel_tests::{TestApp, TestTenant, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Posts a batch with the tenant's write key; returns status, headers and JSON body.
async fn collect(
    app: &TestApp,
    key: &str,
    body: &Value,
    origin: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app
        .client
        .post(app.url(&format!("/v1/collect?key={key}")))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36")
        .body(body.to_string());
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    let resp = req.send().await.expect("collect reaches the node");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.expect("body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Posts `events` with the tenant's write key and expects them accepted.
async fn accept(app: &TestApp, t: &TestTenant, events: Vec<Value>) {
    let (status, _, body) = collect(app, &t.write_key, &json!({"events": events}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Waits until the ingest stream holds nothing: every accepted event stored (or dead-lettered).
async fn drained(app: &TestApp) {
    eventually("the stream to drain", Duration::from_secs(20), || async {
        (app.stream.backlog().await.ok()? == 0).then_some(())
    })
    .await;
}

/// A lead of the tenant, made through the API; its id.
async fn create_lead(app: &TestApp, t: &TestTenant, email: &str) -> Uuid {
    let (status, lead) = app.call(Method::POST, "/v1/leads", Some(&t.owner_key), Some(json!({"email": email}))).await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    lead["id"].as_str().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("a lead id: {lead}"))
}

/// The tenant's stored events with these query parameters, newest first.
async fn events(app: &TestApp, t: &TestTenant, query: &str) -> Vec<Value> {
    let (status, body) =
        app.call(Method::GET, &format!("/v1/events?limit=1000&{query}"), Some(&t.owner_key), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().expect("data").clone()
}

/// Waits until the tenant has exactly `n` stored events matching `query`.
async fn wait_for_events(app: &TestApp, t: &TestTenant, query: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} events ({query})"), Duration::from_secs(20), || async {
        let got = events(app, t, query).await;
        (got.len() == n).then_some(got)
    })
    .await
}

fn page_view(id: Uuid, visitor: &str) -> Value {
    json!({"id": id, "type": "page_view", "source": "web", "visitor_id": visitor, "session_id": "s1",
           "context": {"url": "https://stride.example/trail?utm_source=news", "utm": {"source": "news"}}})
}

/// A time as the API reads and writes it: RFC 3339 in UTC, to the microsecond.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Two hours ago, on a whole second plus a microsecond fraction: well inside the accepted past,
/// and a bound that only compares equal to the microsecond.
fn two_hours_ago() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() - 2 * 3600, 123_456_000).expect("a valid time")
}

/// A browser event of `kind` from `visitor`, with its own id and time.
fn event_at(id: Uuid, kind: &str, visitor: &str, at: DateTime<Utc>) -> Value {
    json!({"id": id, "type": kind, "source": "web", "visitor_id": visitor, "occurred_at": rfc3339(at),
           "properties": {"element": "#cta"}})
}

/// An event's `occurred_at` as the API answers it.
fn occurred_at(event: &Value) -> DateTime<Utc> {
    let at = event["occurred_at"].as_str().unwrap_or_else(|| panic!("an event time: {event}"));
    DateTime::parse_from_rfc3339(at).expect("rfc3339").with_timezone(&Utc)
}

fn id_of(event: &Value) -> Uuid {
    event["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("an event id: {event}"))
}

/// These ids, as a set to compare with [`id_set`]'s.
fn uuids(ids: &[Uuid]) -> BTreeSet<Uuid> {
    ids.iter().copied().collect()
}

/// The ids of a list of events, each listed once.
fn id_set(events: &[Value]) -> BTreeSet<Uuid> {
    let ids: BTreeSet<Uuid> = events.iter().map(id_of).collect();
    assert_eq!(ids.len(), events.len(), "an event listed twice: {events:?}");
    ids
}

/// The ids of these events in the API's order: newest first, then by id, descending.
fn newest_first(events: &[(Uuid, DateTime<Utc>)]) -> Vec<Uuid> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|&(id, at)| std::cmp::Reverse((at, id)));
    sorted.into_iter().map(|(id, _)| id).collect()
}

/// Every page of the tenant's events matching `query`, `limit` a page, following `next_cursor`:
/// the ids in the order served. Every page but the last is full; the last has no cursor.
async fn paged_ids(app: &TestApp, t: &TestTenant, query: &str, limit: usize) -> Vec<Uuid> {
    let (mut ids, mut cursor) = (Vec::new(), String::new());
    for _ in 0..100 {
        let path = format!("/v1/events?limit={limit}&{query}{cursor}");
        let (status, body) = app.call(Method::GET, &path, Some(&t.owner_key), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let page = body["data"].as_array().expect("data");
        assert!(page.len() <= limit, "{path}: {body}");
        ids.extend(page.iter().map(id_of));
        match body["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page.len(), limit, "a page before the last is full: {path}: {body}");
                cursor = format!("&cursor={next}");
            }
            None => return ids,
        }
    }
    panic!("more than 100 pages of {query} at {limit} a page");
}

#[tokio::test]
async fn collected_events_are_stored_once_with_what_the_edge_adds() {
    let app = TestApp::spawn().await;
    let t = app.tenant("collect-once").await;
    let id = Uuid::now_v7();
    // Sent three times, the last without its timestamp (a retry by a client that lost it).
    let sent = json!({"events": [page_view(id, "v.1"), {"type": "click", "source": "web", "visitor_id": "v.1",
                                 "properties": {"element": "#cta"}}]});
    let (status, headers, body) = collect(&app, &t.write_key, &sent, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(headers.get("access-control-allow-origin").is_none(), "no Origin, no CORS header");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["ids"][0], json!(id));
    let click_id = body["ids"][1].as_str().expect("assigned id").to_owned();
    let mut again = page_view(id, "v.1");
    again["occurred_at"] = json!(Utc::now().to_rfc3339());
    assert_eq!(collect(&app, &t.write_key, &json!({"events": [again]}), None).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        collect(&app, &t.write_key, &json!({"events": [page_view(id, "v.1")]}), None).await.0,
        StatusCode::ACCEPTED
    );

    drained(&app).await;
    let stored = wait_for_events(&app, &t, "", 2).await;
    let view = stored.iter().find(|e| e["type"] == "page_view").expect("the page view");
    assert_eq!(view["id"], json!(id));
    assert_eq!(view["source"], "web");
    assert_eq!(view["visitor_id"], "v.1");
    assert_eq!(view["context"]["utm"]["source"], "news");
    assert_eq!(view["ip"], "127.0.0.0", "the IP without its host part");
    assert_eq!(view["bot"], false);
    assert!(view["context"]["user_agent"].is_string(), "the request's user agent when the event has none");
    let click = stored.iter().find(|e| e["type"] == "click").expect("the click");
    assert_eq!(click["id"], click_id.as_str());
    assert_eq!(click["properties"]["element"], "#cta");
    // Filters.
    assert_eq!(events(&app, &t, "type=click").await.len(), 1);
    assert_eq!(events(&app, &t, "visitor_id=v.1").await.len(), 2);
    assert_eq!(events(&app, &t, "visitor_id=v.2").await.len(), 0);
    // Pages: one event each, then none.
    let (_, first) = app.call(Method::GET, "/v1/events?limit=1", Some(&t.owner_key), None).await;
    let cursor = first["next_cursor"].as_str().expect("a second page").to_owned();
    let (_, second) =
        app.call(Method::GET, &format!("/v1/events?limit=1&cursor={cursor}"), Some(&t.owner_key), None).await;
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1));
    assert_ne!(first["data"][0]["id"], second["data"][0]["id"]);
    assert!(second["next_cursor"].is_null());
}

/// An event sent without `occurred_at` under a UUID v7 id takes the id's time, so a retry that
/// lost its timestamp still matches the first copy days later (the duplicate check looks within a
/// day of the event's time); under a v4 id, or a v7 id whose time is outside the accepted window
/// (ahead, or older than 31 days), it takes its receipt time, unflagged (no time was stated).
#[tokio::test]
async fn an_event_without_a_time_takes_its_v7_ids_time_so_late_retries_stay_one_row() {
    let app = TestApp::spawn().await;
    let t = app.tenant("minted-time").await;
    let v7_at = |at: DateTime<Utc>| {
        let secs = u64::try_from(at.timestamp()).expect("after 1970");
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, at.timestamp_subsec_millis() * 1_000_000))
    };
    // To the millisecond, a v7 id's resolution.
    let three_days_ago = DateTime::from_timestamp_millis((Utc::now() - chrono::Duration::days(3)).timestamp_millis())
        .expect("a time to the millisecond");
    let old = v7_at(three_days_ago);
    let without_time = |id: Uuid| json!({"id": id, "type": "page_view", "source": "web", "visitor_id": "v.minted"});

    // First sent with its time, as t.js sends it three days late from an offline queue; then
    // retried twice by a client that lost the timestamp (its receipt time would be three days
    // from the first copy's, beyond the duplicate check's day).
    let mut first = without_time(old);
    first["occurred_at"] = json!(rfc3339(three_days_ago));
    let (ahead, random, too_old) =
        (v7_at(Utc::now() + chrono::Duration::days(1)), Uuid::new_v4(), v7_at(Utc::now() - chrono::Duration::days(40)));
    accept(&app, &t, vec![first]).await;
    // Stored before the retries come, so they meet it in the table, not in one batch.
    wait_for_events(&app, &t, "", 1).await;
    let before = Utc::now();
    accept(&app, &t, vec![without_time(old)]).await;
    accept(&app, &t, vec![without_time(old), without_time(ahead), without_time(random), without_time(too_old)]).await;
    // The last request's new events are stored with (or after) anything of it and before it.
    let stored = wait_for_events(&app, &t, "", 4).await;
    let after = Utc::now();
    drained(&app).await;
    assert_eq!(events(&app, &t, "").await.len(), 4, "the retries added no row");
    assert_eq!(id_set(&stored), BTreeSet::from([old, ahead, random, too_old]));
    let time_of = |id: Uuid| {
        let e = stored.iter().find(|e| id_of(e) == id).expect("stored");
        assert!(e["clamped_from"].is_null(), "nothing was clamped: {e}");
        occurred_at(e)
    };
    assert_eq!(time_of(old), three_days_ago, "the time sent with the first copy, which is the v7 id's");
    for id in [ahead, random, too_old] {
        let at = time_of(id);
        assert!(before - chrono::Duration::seconds(1) <= at && at <= after, "the receipt time: {at} ({id})");
    }
}

#[tokio::test]
async fn implausible_times_are_clamped_and_flagged_and_bots_flagged() {
    let app = TestApp::spawn().await;
    let t = app.tenant("clamp").await;
    let future = json!({"type": "page_view", "source": "web", "occurred_at": "2099-01-01T00:00:00Z"});
    let past = json!({"type": "page_view", "source": "web", "occurred_at": "2001-01-01T00:00:00Z"});
    // A bot is known by the request's own user agent, whatever the event claims.
    let bot = json!({"type": "page_view", "source": "web", "context": {"user_agent": "Mozilla/5.0 Chrome/131.0"}});
    let (status, _, body) = collect(&app, &t.write_key, &json!({"events": [future, past]}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let resp = app
        .client
        .post(app.url(&format!("/v1/collect?key={}", t.write_key)))
        .header("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
        .body(json!({"events": [bot]}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let stored = wait_for_events(&app, &t, "", 3).await;
    let now = Utc::now();
    let from_future = stored.iter().find(|e| e["clamped_from"] == "2099-01-01T00:00:00Z").expect("future clamped");
    assert!((now - occurred_at(from_future)).num_seconds().abs() < 60);
    let from_past = stored.iter().find(|e| e["clamped_from"] == "2001-01-01T00:00:00Z").expect("past clamped");
    let age = now - occurred_at(from_past);
    assert!((30..=32).contains(&age.num_days()), "clamped to the oldest accepted age, got {age}");
    assert_eq!(stored.iter().filter(|e| e["bot"] == true).count(), 1);
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_a_json_error() {
    let app = TestApp::spawn().await;
    let t = app.tenant("bad-input").await;
    let key = t.write_key.as_str();
    let ok_event = json!({"type": "page_view", "source": "web"});
    let cases: Vec<(&str, Value, StatusCode, Option<&str>)> = vec![
        ("not JSON", Value::String("{nope".into()), StatusCode::BAD_REQUEST, None),
        ("no events", json!({"evnts": [ok_event]}), StatusCode::UNPROCESSABLE_ENTITY, Some("evnts")),
        ("empty", json!({"events": []}), StatusCode::UNPROCESSABLE_ENTITY, Some("events")),
        (
            "bad type",
            json!({"events": [ok_event, {"type": "pageview", "source": "web"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events.1.type"),
        ),
        (
            "purchase without amount",
            json!({"events": [{"type": "page_view", "source": "web"},
            {"type": "form_submit", "source": "web", "properties": {}}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events.1.properties.form_id"),
        ),
        (
            "server-only type with a write key",
            json!({"events": [{"type": "purchase", "source": "web",
            "properties": {"amount": "10.00", "currency": "USD", "order_id": "o1"}}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events.0.type"),
        ),
        (
            "server source with a write key",
            json!({"events": [{"type": "page_view", "source": "server"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("events.0.source"),
        ),
        ("501 events", json!({"events": vec![ok_event.clone(); 501]}), StatusCode::PAYLOAD_TOO_LARGE, Some("events")),
        (
            "an event over 32 KB",
            json!({"events": [ok_event, {"type": "click", "source": "web",
            "properties": {"blob": "x".repeat(33 * 1024)}}]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("events.1"),
        ),
    ];
    for (what, body, status, field) in cases {
        let text = match &body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let resp = app
            .client
            .post(app.url(&format!("/v1/collect?key={key}")))
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), status, "{what}");
        let json: Value = resp.json().await.unwrap_or_else(|_| panic!("{what}: a JSON error"));
        assert!(json["error"]["code"].is_string(), "{what}: {json}");
        assert_eq!(json["error"]["field"].as_str(), field, "{what}: {json}");
    }
    // A body over 1 MiB.
    let huge = format!(
        r#"{{"events": [{{"type": "click", "source": "web", "properties": {{"x": "{}"}}}}]}}"#,
        "y".repeat(1_100_000)
    );
    let resp = app.client.post(app.url(&format!("/v1/collect?key={key}"))).body(huge).send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "payload_too_large");
    // Unknown or missing key: 401.
    for url in ["/v1/collect?key=fwp_00000000000000000000000000000000", "/v1/collect", "/v1/collect?key=nonsense"] {
        let resp =
            app.client.post(app.url(url)).body(json!({"events": [ok_event]}).to_string()).send().await.expect("send");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{url}");
        assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "unauthorized");
    }
    // A media type that is neither JSON nor text: 415.
    let resp = app
        .client
        .post(app.url(&format!("/v1/collect?key={key}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Origins: any until the owner lists some; then others get 403 and no CORS header.
    let (status, headers, _) = collect(&app, key, &json!({"events": [ok_event]}), Some("https://evil.example")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://evil.example"));
    let (status, settings) = app
        .call(
            Method::PATCH,
            "/v1/tracking",
            Some(&t.owner_key),
            Some(json!({"allowed_origins": ["https://Stride.example"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["allowed_origins"], json!(["https://stride.example"]));
    let (status, headers, body) =
        collect(&app, key, &json!({"events": [ok_event]}), Some("https://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(headers.get("access-control-allow-origin").is_none());
    let (status, headers, _) = collect(&app, key, &json!({"events": [ok_event]}), Some("https://stride.example")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://stride.example")
    );
    // Only an owner changes settings; a bad origin is named.
    let marketer = app.key(&t, Role::Marketer).await;
    let (status, _) = app.call(Method::PATCH, "/v1/tracking", Some(&marketer), Some(json!({"cookieless": true}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/tracking",
            Some(&t.owner_key),
            Some(json!({"allowed_origins": ["https://x.example/path"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("allowed_origins.0"))
    );
    // The pixel's errors name its query parameter.
    let resp = app.client.get(app.url(&format!("/t.gif?k={key}&t=email_open"))).send().await.expect("pixel");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["field"], "email_id");
    let resp = app.client.get(app.url("/t.gif?k=fwp_00000000000000000000000000000000")).send().await.expect("pixel");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // List filters are checked too.
    for (query, field) in
        [("type=nope", "type"), ("from=yesterday", "from"), ("cursor=zzz", "cursor"), ("limit=0", "limit")]
    {
        let (status, body) = app.call(Method::GET, &format!("/v1/events?{query}"), Some(&t.owner_key), None).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{query}"
        );
    }
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let app = TestApp::spawn().await;
    let slow = app.tenant("rate-slow").await;
    let other = app.tenant("rate-other").await;
    let (status, body) =
        app.call(Method::PATCH, "/v1/tracking", Some(&slow.owner_key), Some(json!({"events_per_second": 5}))).await;
    assert_eq!((status, body["events_per_second"].clone()), (StatusCode::OK, json!(5)));
    let batch = json!({"events": vec![json!({"type": "page_view", "source": "web"}); 4]});
    let mut limited = None;
    for _ in 0..10 {
        let (status, headers, body) = collect(&app, &slow.write_key, &batch, None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "rate_limited");
            limited = headers.get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            break;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let retry_after: u64 = limited.expect("a 429 within 40 events at 5/s").parse().expect("seconds");
    assert!(retry_after >= 1);
    assert_eq!(
        collect(&app, &other.write_key, &batch, None).await.0,
        StatusCode::ACCEPTED,
        "another tenant still gets in"
    );
}

#[tokio::test]
async fn the_pixel_and_the_script_are_served() {
    let app = TestApp::spawn().await;
    let t = app.tenant("pixel").await;
    let email = Uuid::now_v7();
    let resp = app
        .client
        .get(app.url(&format!("/t.gif?k={}&t=email_open&e={email}&vid=v.9&utm_source=newsletter&cb=123", t.write_key)))
        .header("user-agent", "Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/128.0")
        .send()
        .await
        .expect("pixel");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/gif");
    assert!(resp.headers()["cache-control"].to_str().expect("header").contains("no-store"));
    assert!(resp.bytes().await.expect("gif").starts_with(b"GIF89a"));
    let stored = wait_for_events(&app, &t, "type=email_open", 1).await;
    assert_eq!(stored[0]["source"], "pixel");
    assert_eq!(stored[0]["visitor_id"], "v.9");
    assert_eq!(stored[0]["context"]["utm"]["source"], "newsletter");
    assert_eq!(stored[0]["context"]["user_agent"], "Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/128.0");
    // The email does not exist in this tenant: the reference is dropped, the open is kept.
    assert!(stored[0]["email_id"].is_null());

    let resp = app.client.get(app.url("/t.js")).send().await.expect("script");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().expect("ct").starts_with("application/javascript"));
    assert!(resp.headers()["cache-control"].to_str().expect("cc").contains("max-age=3600"));
    let etag = resp.headers()["etag"].to_str().expect("etag").to_owned();
    assert!(resp.text().await.expect("js").contains("/v1/collect"));
    let again = app.client.get(app.url("/t.js")).header("if-none-match", &etag).send().await.expect("script");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // The tenant and its settings show the write key and a snippet that loads the script.
    let (_, tenant) = app.call(Method::GET, "/v1/tenant", Some(&t.owner_key), None).await;
    assert_eq!(tenant["write_key"], t.write_key.as_str());
    let (_, settings) = app.call(Method::GET, "/v1/tracking", Some(&t.owner_key), None).await;
    let snippet = settings["snippet"].as_str().expect("snippet");
    assert!(snippet.contains("/t.js") && snippet.contains(&t.write_key), "{snippet}");
    // Rotation: the old key stops at once, the new one works.
    let (status, rotated) = app.call(Method::POST, "/v1/tracking/rotate_key", Some(&t.owner_key), None).await;
    assert_eq!(status, StatusCode::OK);
    let new_key = rotated["write_key"].as_str().expect("key").to_owned();
    assert_ne!(new_key, t.write_key);
    let ok = json!({"events": [{"type": "page_view", "source": "web"}]});
    assert_eq!(collect(&app, &t.write_key, &ok, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(collect(&app, &new_key, &ok, None).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn server_side_events_use_a_secret_key_and_an_email_stitches_the_visitor_to_a_lead() {
    let app = TestApp::spawn().await;
    let t = app.tenant("stitch").await;
    // Anonymous browsing first.
    let before = Uuid::now_v7();
    assert_eq!(
        collect(&app, &t.write_key, &json!({"events": [page_view(before, "v.anon")]}), None).await.0,
        StatusCode::ACCEPTED
    );
    wait_for_events(&app, &t, "visitor_id=v.anon", 1).await;
    // Then a form with an email: the visitor becomes a lead.
    let form = json!({"type": "form_submit", "source": "web", "visitor_id": "v.anon",
                      "properties": {"form_id": "signup", "email": "Ann@Example.com"}});
    assert_eq!(collect(&app, &t.write_key, &json!({"events": [form]}), None).await.0, StatusCode::ACCEPTED);
    let after = Uuid::now_v7();
    // The next page view, and a purchase the shop's server reports with a secret key.
    let writer = app.key(&t, Role::Marketer).await;
    let purchase = json!({"type": "purchase", "source": "server", "visitor_id": "v.anon",
                          "properties": {"amount": "129.90", "currency": "USD", "order_id": "o-1"}});
    let (status, body) =
        app.call(Method::POST, "/v1/collect", Some(&writer), Some(json!({"events": [purchase]}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let viewer = app.key(&t, Role::Viewer).await;
    let (status, _) = app.call(Method::POST, "/v1/collect", Some(&viewer), Some(json!({"events": [purchase]}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer key writes nothing");
    wait_for_events(&app, &t, "visitor_id=v.anon", 3).await;
    assert_eq!(
        collect(&app, &t.write_key, &json!({"events": [page_view(after, "v.anon")]}), None).await.0,
        StatusCode::ACCEPTED
    );
    let all = wait_for_events(&app, &t, "visitor_id=v.anon", 4).await;

    let (_, leads) = app.call(Method::GET, "/v1/leads?email=ann@example.com", Some(&t.owner_key), None).await;
    let lead = leads["data"][0]["id"].as_str().expect("a lead created from the form").to_owned();
    let form = all.iter().find(|e| e["type"] == "form_submit").expect("form");
    assert_eq!(form["lead_id"], lead.as_str());
    assert!(form["properties"].get("email").is_none(), "the email is not kept in the event");
    let later = all.iter().find(|e| e["id"] == json!(after)).expect("the later view");
    assert_eq!(later["lead_id"], lead.as_str(), "later events carry the lead");
    let first = all.iter().find(|e| e["id"] == json!(before)).expect("the anonymous view");
    assert!(first["lead_id"].is_null(), "stored before the visitor was known");
    // The timeline has the anonymous history too.
    let (status, timeline) =
        app.call(Method::GET, &format!("/v1/leads/{lead}/timeline"), Some(&t.owner_key), None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&Value> = timeline["data"].as_array().expect("data").iter().map(|e| &e["id"]).collect();
    assert_eq!(ids.len(), 4, "{timeline}");
    assert!(ids.contains(&&json!(before)) && ids.contains(&&json!(after)));
    // A lead id sent with an event links its visitor too.
    let (_, other) =
        app.call(Method::POST, "/v1/leads", Some(&t.owner_key), Some(json!({"email": "bob@example.com"}))).await;
    let bob = other["id"].as_str().expect("lead").to_owned();
    let linked = json!({"type": "page_view", "source": "web", "visitor_id": "v.bob", "lead_id": bob});
    assert_eq!(collect(&app, &t.write_key, &json!({"events": [linked]}), None).await.0, StatusCode::ACCEPTED);
    let bogus = json!({"type": "page_view", "source": "web", "visitor_id": "v.bogus", "lead_id": Uuid::now_v7()});
    assert_eq!(collect(&app, &t.write_key, &json!({"events": [bogus]}), None).await.0, StatusCode::ACCEPTED);
    let stored = wait_for_events(&app, &t, "visitor_id=v.bogus", 1).await;
    assert!(stored[0]["lead_id"].is_null(), "a lead that does not exist is dropped, the event kept");
    let (_, timeline) = app.call(Method::GET, &format!("/v1/leads/{bob}/timeline"), Some(&t.owner_key), None).await;
    assert_eq!(timeline["data"].as_array().map(Vec::len), Some(1));
}

/// `from` is inclusive and `to` exclusive, to the microsecond, whatever zone they are written in;
/// a page boundary inside the range (even between events of one instant) neither repeats nor
/// skips an event.
#[tokio::test]
async fn time_filters_keep_from_inclusive_and_to_exclusive_and_their_pages_miss_nothing() {
    let app = TestApp::spawn().await;
    let t = app.tenant("time-range").await;
    let base = two_hours_ago();
    let at = |minute: i64| base + chrono::Duration::minutes(minute);
    // Three events share minute 2, so a page can end inside a tie.
    let plan =
        [("page_view", 0), ("click", 1), ("page_view", 2), ("click", 2), ("click", 2), ("click", 3), ("page_view", 4)];
    let mut sent: Vec<(Uuid, &str, DateTime<Utc>)> =
        plan.iter().map(|&(kind, minute)| (Uuid::now_v7(), kind, at(minute))).collect();
    sent.push((Uuid::now_v7(), "click", at(5)));
    let id = |i: usize| sent[i].0;
    // Sent newest first: storage order is not time order.
    let batch: Vec<Value> = sent.iter().rev().map(|&(id, kind, when)| event_at(id, kind, "v.time", when)).collect();
    accept(&app, &t, batch).await;
    let stored = wait_for_events(&app, &t, "", sent.len()).await;
    for &(id, _, when) in &sent {
        let e = stored.iter().find(|e| id_of(e) == id).expect("every event stored");
        assert_eq!(occurred_at(e), when, "stored at the time sent, to the microsecond: {e}");
        assert!(e["clamped_from"].is_null(), "{e}");
    }

    let us = chrono::Duration::microseconds(1);
    // The same instants written in other zones (`+` escaped in the query).
    let zoned = |when: DateTime<Utc>, hours: i32| {
        let zone = chrono::FixedOffset::east_opt(hours * 3600).expect("a zone");
        when.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Micros, false).replace('+', "%2B")
    };
    let q = rfc3339;
    let in_range = format!("from={}&to={}", q(at(1)), q(at(4)));
    let clicks_in_range = format!("type=click&{in_range}");
    let cases: Vec<(String, Vec<usize>)> = vec![
        (in_range.clone(), vec![1, 2, 3, 4, 5]),
        (format!("from={}&to={}", q(at(1) + us), q(at(4) + us)), vec![2, 3, 4, 5, 6]),
        (format!("from={}&to={}", zoned(at(1), 2), zoned(at(4), -5)), vec![1, 2, 3, 4, 5]),
        (format!("from={}", q(at(4))), vec![6, 7]),
        (format!("to={}", q(at(1))), vec![0]),
        (format!("to={}", q(at(0))), vec![]),
        (format!("from={}&to={}", q(at(2)), q(at(2) + us)), vec![2, 3, 4]),
        (format!("from={}&to={}", q(at(2)), q(at(2))), vec![]),
        (format!("from={}", q(at(5) + us)), vec![]),
        (clicks_in_range.clone(), vec![1, 3, 4, 5]),
        (format!("type=page_view&from={}", q(at(2))), vec![2, 6]),
    ];
    for (query, expected) in cases {
        let expected: BTreeSet<Uuid> = expected.into_iter().map(id).collect();
        assert_eq!(id_set(&events(&app, &t, &query).await), expected, "{query}");
    }

    // Pages inside a filtered range: each matching event once, in order, whatever the page size.
    for (query, members) in [(in_range, vec![1, 2, 3, 4, 5]), (clicks_in_range, vec![1, 3, 4, 5])] {
        let expected = newest_first(&members.iter().map(|&i| (sent[i].0, sent[i].2)).collect::<Vec<_>>());
        for limit in [1, 2, 3, 4] {
            assert_eq!(paged_ids(&app, &t, &query, limit).await, expected, "{query} at {limit} a page");
        }
    }
}

/// `lead_id` lists the events carrying the lead (openapi: "Only events carrying this lead"):
/// those identified by an email, those stored after their visitor was linked, and those sent with
/// the lead's id. Its visitor's anonymous history before the link is the timeline's, not this
/// filter's.
#[tokio::test]
async fn the_lead_id_filter_lists_exactly_the_events_carrying_the_lead() {
    let app = TestApp::spawn().await;
    let t = app.tenant("lead-filter").await;
    let base = two_hours_ago();
    let at = |minute: i64| base + chrono::Duration::minutes(minute);
    // Anonymous browsing, then a form that names the visitor.
    let before = Uuid::now_v7();
    accept(&app, &t, vec![event_at(before, "page_view", "v.ann", at(0))]).await;
    wait_for_events(&app, &t, "visitor_id=v.ann", 1).await;
    let form = Uuid::now_v7();
    let mut signup = event_at(form, "form_submit", "v.ann", at(1));
    signup["properties"] = json!({"form_id": "signup", "email": "ann@example.com"});
    accept(&app, &t, vec![signup]).await;
    wait_for_events(&app, &t, "visitor_id=v.ann", 2).await;
    let (_, leads) = app.call(Method::GET, "/v1/leads?email=ann@example.com", Some(&t.owner_key), None).await;
    let ann = leads["data"][0]["id"].as_str().expect("a lead made by the form").to_owned();
    let bob = create_lead(&app, &t, "bob@example.com").await;
    // Ann's visitor again; Ann's id sent from another device; Bob's; an unknown visitor's.
    let (after, sent_with_id, bobs, strangers) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut with_ann = event_at(sent_with_id, "page_view", "v.ann-phone", at(3));
    with_ann["lead_id"] = json!(ann);
    let mut with_bob = event_at(bobs, "page_view", "v.bob", at(2));
    with_bob["lead_id"] = json!(bob);
    accept(
        &app,
        &t,
        vec![
            event_at(after, "page_view", "v.ann", at(2)),
            with_ann,
            with_bob,
            event_at(strangers, "page_view", "v.stranger", at(2)),
        ],
    )
    .await;
    let stored = wait_for_events(&app, &t, "", 6).await;
    let lead_of = |id: Uuid| stored.iter().find(|e| id_of(e) == id).expect("stored")["lead_id"].clone();
    assert!(lead_of(before).is_null(), "stored before its visitor was known");
    assert_eq!(lead_of(after), json!(ann), "stored after the link");

    let cases = [
        (format!("lead_id={ann}"), uuids(&[form, after, sent_with_id])),
        (format!("lead_id={bob}"), uuids(&[bobs])),
        (format!("lead_id={}", Uuid::now_v7()), uuids(&[])),
        (format!("lead_id={ann}&from={}", rfc3339(at(2))), uuids(&[after, sent_with_id])),
        (format!("lead_id={ann}&to={}", rfc3339(at(2))), uuids(&[form])),
        (format!("lead_id={ann}&type=form_submit"), uuids(&[form])),
        (format!("lead_id={ann}&visitor_id=v.ann"), uuids(&[form, after])),
        (format!("lead_id={bob}&visitor_id=v.ann"), uuids(&[])),
    ];
    for (query, expected) in cases {
        assert_eq!(id_set(&events(&app, &t, &query).await), expected, "{query}");
    }
    // The anonymous view is Ann's through her visitor: on her timeline, not under the filter.
    let (status, timeline) =
        app.call(Method::GET, &format!("/v1/leads/{ann}/timeline"), Some(&t.owner_key), None).await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    assert_eq!(id_set(timeline["data"].as_array().expect("data")), uuids(&[before, form, after, sent_with_id]));
    // Pages of the filtered set: each of Ann's events once, newest first.
    let expected = newest_first(&[(form, at(1)), (after, at(2)), (sent_with_id, at(3))]);
    for limit in [1, 2, 3] {
        assert_eq!(paged_ids(&app, &t, &format!("lead_id={ann}"), limit).await, expected, "{limit} a page");
    }
}

/// A page view as the edge would put it in the stream, with `meta` as raw JSON text (which may
/// be something PostgreSQL refuses).
fn page_view_entry(tenant: TenantId, id: Uuid, visitor: &str, meta: &str) -> IngestEntry {
    IngestEntry {
        format: IngestEntry::FORMAT,
        tenant: tenant.as_uuid(),
        id,
        event_type: flywheel_contracts::events::EventType::PageView,
        source: flywheel_contracts::events::EventSource::Web,
        occurred_at_us: Utc::now().timestamp_micros(),
        received_at_us: Utc::now().timestamp_micros(),
        visitor_id: Some(visitor.to_owned()),
        session_id: None,
        lead_id: None,
        campaign_id: None,
        landing_page_id: None,
        email_id: None,
        ad_id: None,
        identify_email: None,
        meta: meta.to_owned(),
    }
}

/// Starts the app's ingestors again (the poison tests stop them to append entries first).
async fn restart_ingestors(app: &TestApp) -> flywheel_supervisor::Ingest {
    flywheel_supervisor::Ingest::start(app.db().clone(), app.stream.clone(), flywheel_tests::test_ingest_config())
        .await
        .expect("restart ingestors")
}

/// The tenant's rows in the dead-letter table.
async fn table_dead_letters(app: &TestApp, t: &TestTenant) -> Vec<flywheel_storage::events::DeadLetter> {
    let mut tx = app.db().begin(t.id).await.expect("begin");
    let letters = flywheel_storage::events::dead_letters(&mut tx).await.expect("dead letters");
    tx.commit().await.expect("commit");
    letters
}

#[tokio::test]
async fn a_poison_entry_is_dead_lettered_and_the_rest_of_its_batch_lands() {
    let app = TestApp::spawn().await;
    let t = app.tenant("poison").await;
    let entry = |id: Uuid, meta: &str| page_view_entry(t.id, id, "v.p", meta);
    let (good1, poison, good2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // PostgreSQL's jsonb refuses \u0000: an entry the edge would never write, but a stream
    // can hold (an older node, a bug).
    app.ingest.stop();
    app.stream.append_raw(t.id, &entry(good1, "{}").encode()).await.expect("append");
    app.stream.append_raw(t.id, &entry(poison, r#"{"properties": {"x": "a\u0000b"}}"#).encode()).await.expect("append");
    app.stream.append_raw(t.id, b"not an entry at all").await.expect("append");
    app.stream.append_raw(t.id, &entry(good2, "{}").encode()).await.expect("append");
    let ingest = restart_ingestors(&app).await;
    let stored = wait_for_events(&app, &t, "visitor_id=v.p", 2).await;
    let ids: Vec<&Value> = stored.iter().map(|e| &e["id"]).collect();
    assert!(ids.contains(&&json!(good1)) && ids.contains(&&json!(good2)), "{ids:?}");
    eventually("both poison entries dead-lettered", Duration::from_secs(20), || async {
        (app.stream.dead_letters().await.ok()? == 2 && app.stream.backlog().await.ok()? == 0).then_some(())
    })
    .await;
    let letters = table_dead_letters(&app, &t).await;
    assert_eq!(letters.len(), 1, "the decodable poison is kept under its tenant");
    assert_eq!(letters[0].event_id, poison);
    assert_eq!(letters[0].attempts, 3);
    assert!(!letters[0].reason.is_empty());
    assert_eq!(ingest.stats().dead_letters.load(std::sync::atomic::Ordering::Relaxed), 2);
    ingest.stop();
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_alone_and_the_rest_of_its_entry_lands() {
    let app = TestApp::spawn().await;
    let t = app.tenant("poison-packed").await;
    let event = |id: Uuid, meta: &str| page_view_entry(t.id, id, "v.pp", meta);
    let (good1, poison, good2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // One entry holding three events, as the edge writes a request's events; the middle one is
    // refused by PostgreSQL (jsonb cannot hold \u0000).
    let packed = flywheel_contracts::ingest::encode_packed(
        t.id.as_uuid(),
        &[event(good1, "{}"), event(poison, r#"{"properties": {"x": "a\u0000b"}}"#), event(good2, "{}")],
    )
    .expect("one tenant");
    app.ingest.stop();
    let entry_id = app.stream.append_raw(t.id, &packed).await.expect("append");
    let ingest = restart_ingestors(&app).await;
    let stored = wait_for_events(&app, &t, "visitor_id=v.pp", 2).await;
    let ids: Vec<&Value> = stored.iter().map(|e| &e["id"]).collect();
    assert!(ids.contains(&&json!(good1)) && ids.contains(&&json!(good2)), "{ids:?}");
    eventually("the poison event dead-lettered and its entry acknowledged", Duration::from_secs(20), || async {
        (app.stream.dead_letters().await.ok()? == 1 && app.stream.backlog().await.ok()? == 0).then_some(())
    })
    .await;
    let letters = table_dead_letters(&app, &t).await;
    assert_eq!(letters.len(), 1, "only the poison event is dead-lettered");
    assert_eq!(letters[0].event_id, poison);
    assert_eq!(letters[0].stream_entry, format!("{entry_id}/1"));
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(events(&app, &t, "visitor_id=v.pp").await.len(), 2, "the good events stored once each");
    assert_eq!(ingest.stats().dead_letters.load(std::sync::atomic::Ordering::Relaxed), 1);
    ingest.stop();
}

#[tokio::test]
async fn cookieless_visitors_get_a_daily_hash_and_a_server_session() {
    let app = TestApp::spawn().await;
    let t = app.tenant("cookieless").await;
    let (status, settings) =
        app.call(Method::PATCH, "/v1/tracking", Some(&t.owner_key), Some(json!({"cookieless": true}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(settings["snippet"].as_str().expect("snippet").contains("data-cookieless"));
    let send = |ua: &'static str, visitor: Option<&'static str>| {
        let mut event = json!({"type": "page_view", "source": "web"});
        if let Some(v) = visitor {
            event["visitor_id"] = json!(v);
        }
        let body = json!({"events": [event]}).to_string();
        let req =
            app.client.post(app.url(&format!("/v1/collect?key={}", t.write_key))).header("user-agent", ua).body(body);
        async move { req.send().await.expect("send").status() }
    };
    assert_eq!(send("Browser A", None).await, StatusCode::ACCEPTED);
    assert_eq!(send("Browser A", Some("client-chosen")).await, StatusCode::ACCEPTED);
    assert_eq!(send("Browser B", None).await, StatusCode::ACCEPTED);
    let stored = wait_for_events(&app, &t, "", 3).await;
    let visitors: BTreeSet<&str> = stored.iter().filter_map(|e| e["visitor_id"].as_str()).collect();
    assert_eq!(visitors.len(), 2, "one visitor per browser, whatever the client sends: {stored:?}");
    assert!(visitors.iter().all(|v| v.starts_with("c.")));
    let a: Vec<&Value> = stored.iter().filter(|e| e["context"]["user_agent"] == "Browser A").collect();
    assert_eq!(a[0]["session_id"], a[1]["session_id"], "one session while active");
    assert!(a[0]["session_id"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn tenants_cannot_write_or_read_each_others_events() {
    let app = TestApp::spawn().await;
    let a = app.tenant("iso-a").await;
    let b = app.tenant("iso-b").await;
    let id = Uuid::now_v7();
    assert_eq!(
        collect(&app, &a.write_key, &json!({"events": [page_view(id, "v.a")]}), None).await.0,
        StatusCode::ACCEPTED
    );
    // B's key, with A's tenant id in the body and a query parameter: lands in B.
    let spoof = json!({"tenant_id": a.id, "events": [{"type": "page_view", "source": "web", "visitor_id": "v.b"}]});
    let url = format!("/v1/collect?key={}&tenant_id={}", b.write_key, a.id);
    let resp = app
        .client
        .post(app.url(&url))
        .header("x-tenant-id", a.id.to_string())
        .body(spoof.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    wait_for_events(&app, &a, "", 1).await;
    let in_b = wait_for_events(&app, &b, "", 1).await;
    assert_eq!(in_b[0]["visitor_id"], "v.b");
    assert!(events(&app, &a, "visitor_id=v.b").await.is_empty());
    // B's API key reads none of A's events, nor A's lead timeline.
    assert!(events(&app, &b, "visitor_id=v.a").await.is_empty());
    let (_, lead) =
        app.call(Method::POST, "/v1/leads", Some(&a.owner_key), Some(json!({"email": "a@example.com"}))).await;
    let lead = lead["id"].as_str().expect("lead").to_owned();
    let (status, _) = app.call(Method::GET, &format!("/v1/leads/{lead}/timeline"), Some(&b.owner_key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The ingest path's own session: under A's context it sees A's events only.
    let mut conn = app.test_db.app().await;
    let mut tx = flywheel_tests::tenant_tx(&mut conn, a.id.as_uuid()).await;
    let tenants: Vec<Uuid> =
        sqlx::query_scalar("select distinct tenant_id from events").fetch_all(&mut *tx).await.expect("read");
    assert_eq!(tenants, vec![a.id.as_uuid()]);
    // And it cannot insert B's row while in A's context.
    let denied =
        sqlx::query("insert into events (tenant_id, id, event_type, occurred_at) values ($1, $2, 'click', now())")
            .bind(b.id.as_uuid())
            .bind(Uuid::now_v7())
            .execute(&mut *tx)
            .await;
    assert!(denied.is_err(), "row-level security refuses another tenant's event");
}

/// Another tenant's lead id, visitor id or time range reads nothing of the tenant's, not even
/// when its own events name that lead or happened at the same instants.
#[tokio::test]
async fn another_tenant_filtering_by_a_tenants_lead_visitor_or_times_gets_none_of_its_events() {
    let app = TestApp::spawn().await;
    let a = app.tenant("filter-iso-a").await;
    let b = app.tenant("filter-iso-b").await;
    let (lead_a, lead_b) =
        (create_lead(&app, &a, "ann@shop.example").await, create_lead(&app, &b, "ann@shop.example").await);
    assert_ne!(lead_a, lead_b);
    let base = two_hours_ago();
    let at = |minute: i64| base + chrono::Duration::minutes(minute);
    let with_lead = |id: Uuid, visitor: &str, lead: Option<Uuid>, when: DateTime<Utc>| {
        let mut e = event_at(id, "page_view", visitor, when);
        if let Some(lead) = lead {
            e["lead_id"] = json!(lead);
        }
        e
    };
    let (a1, a2) = (Uuid::now_v7(), Uuid::now_v7());
    let (b1, b2, b3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let sends = [
        (&a, vec![with_lead(a1, "v.a", Some(lead_a), at(1)), with_lead(a2, "v.a", Some(lead_a), at(2))]),
        // B names A's lead (a guessed or leaked id), its own, and none, at A's very instants.
        (
            &b,
            vec![
                with_lead(b1, "v.b", Some(lead_a), at(1)),
                with_lead(b2, "v.b2", Some(lead_b), at(2)),
                with_lead(b3, "v.b3", None, at(1)),
            ],
        ),
    ];
    for (t, batch) in sends {
        accept(&app, t, batch).await;
    }
    wait_for_events(&app, &a, "", 2).await;
    let in_b = wait_for_events(&app, &b, "", 3).await;
    let b1_stored = in_b.iter().find(|e| id_of(e) == b1).expect("B's event naming A's lead");
    assert!(b1_stored["lead_id"].is_null(), "A's lead is dropped from B's event: {b1_stored}");

    let range = format!("from={}&to={}", rfc3339(at(0)), rfc3339(at(3)));
    let cases = [
        // What each tenant holds: the data the empty answers below could have leaked.
        (&a, format!("lead_id={lead_a}"), uuids(&[a1, a2])),
        (&a, range.clone(), uuids(&[a1, a2])),
        (&b, range.clone(), uuids(&[b1, b2, b3])),
        (&b, format!("lead_id={lead_b}"), uuids(&[b2])),
        // Each other's lead, visitor and lead within the range.
        (&b, format!("lead_id={lead_a}"), uuids(&[])),
        (&b, format!("lead_id={lead_a}&{range}"), uuids(&[])),
        (&b, "visitor_id=v.a".to_owned(), uuids(&[])),
        (&a, format!("lead_id={lead_b}"), uuids(&[])),
        (&a, "visitor_id=v.b2".to_owned(), uuids(&[])),
    ];
    for (t, query, expected) in cases {
        assert_eq!(id_set(&events(&app, t, &query).await), expected, "{} with {query}", t.id);
    }
    assert_eq!(paged_ids(&app, &b, &format!("lead_id={lead_a}"), 1).await, Vec::<Uuid>::new());
}

#[tokio::test]
async fn nul_characters_anywhere_do_not_poison_the_pipeline() {
    let app = TestApp::spawn().await;
    let t = app.tenant("nul").await;
    let events = json!({"events": [
        {"type": "form_submit", "source": "web", "visitor_id": "v.nul", "properties": {"form_id": "f\u{0}1", "email": "a\u{0}b@x.co", "n\u{0}ote": ["x\u{0}"]}},
        {"type": "click", "source": "web", "visitor_id": "v.nul", "context": {"title": "T\u{0}itle", "url": "https://x.example/\u{0}"}},
        {"type": "page_view", "source": "web", "visitor_id": "v.nul"}
    ]});
    let (status, _, body) = collect(&app, &t.write_key, &events, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let stored = wait_for_events(&app, &t, "visitor_id=v.nul", 3).await;
    let form = stored.iter().find(|e| e["type"] == "form_submit").expect("form");
    assert_eq!(form["properties"]["form_id"], "f1");
    assert_eq!(form["properties"]["note"], json!(["x"]));
    assert_eq!(app.stream.dead_letters().await.expect("dead letters"), 0);
}

#[tokio::test]
async fn a_shared_device_keeps_each_leads_timeline_its_own_and_cookieless_visitors_are_never_linked() {
    let app = TestApp::spawn().await;
    let t = app.tenant("kiosk").await;
    let form = |email: &str| {
        json!({"type": "form_submit", "source": "web", "visitor_id": "v.kiosk",
                                    "properties": {"form_id": "signup", "email": email}})
    };
    assert_eq!(
        collect(&app, &t.write_key, &json!({"events": [form("alice@example.com")]}), None).await.0,
        StatusCode::ACCEPTED
    );
    wait_for_events(&app, &t, "visitor_id=v.kiosk", 1).await;
    assert_eq!(
        collect(&app, &t.write_key, &json!({"events": [form("bob@example.com")]}), None).await.0,
        StatusCode::ACCEPTED
    );
    wait_for_events(&app, &t, "visitor_id=v.kiosk", 2).await;
    let (_, bob) = app.call(Method::GET, "/v1/leads?email=bob@example.com", Some(&t.owner_key), None).await;
    let bob = bob["data"][0]["id"].as_str().expect("bob").to_owned();
    let (_, timeline) = app.call(Method::GET, &format!("/v1/leads/{bob}/timeline"), Some(&t.owner_key), None).await;
    let leads: Vec<&Value> = timeline["data"].as_array().expect("data").iter().map(|e| &e["lead_id"]).collect();
    assert_eq!(leads, vec![&json!(bob)], "only Bob's own form: {timeline}");

    // Cookieless: the daily hash is shared by everyone behind one address with one browser, so
    // an email identifies that event only.
    let (status, _) =
        app.call(Method::PATCH, "/v1/tracking", Some(&t.owner_key), Some(json!({"cookieless": true}))).await;
    assert_eq!(status, StatusCode::OK);
    let signup = json!({"events": [{"type": "form_submit", "source": "web", "properties": {"form_id": "f", "email": "carol@example.com"}}]});
    assert_eq!(collect(&app, &t.write_key, &signup, None).await.0, StatusCode::ACCEPTED);
    let view = json!({"events": [{"type": "page_view", "source": "web"}]});
    assert_eq!(collect(&app, &t.write_key, &view, None).await.0, StatusCode::ACCEPTED);
    let stored = wait_for_events(&app, &t, "type=page_view", 1).await;
    assert!(stored[0]["visitor_id"].as_str().is_some_and(|v| v.starts_with("c.")));
    assert!(stored[0]["lead_id"].is_null(), "a cookieless visitor is not stitched: {stored:?}");
    let carol =
        wait_for_events(&app, &t, &format!("visitor_id={}", stored[0]["visitor_id"].as_str().expect("v")), 2).await;
    assert!(
        carol.iter().any(|e| e["type"] == "form_submit" && e["lead_id"].is_string()),
        "the identifying event has its lead"
    );
}

#[tokio::test]
async fn per_client_limits_forwarded_addresses_and_null_origins() {
    let mut config = flywheel_gateway::GatewayConfig::default();
    config.tracking.ip_requests_per_second = 3;
    config.tracking.trust_forwarded_for = true;
    let app = TestApp::spawn_with(config).await;
    let t = app.tenant("clients").await;
    let other = app.tenant("clients-other").await;
    let one = json!({"events": [{"type": "page_view", "source": "web", "visitor_id": "v.ip"}]}).to_string();
    let send = |key: &str, xff: &'static str| {
        app.client
            .post(app.url(&format!("/v1/collect?key={key}")))
            .header("x-forwarded-for", xff)
            .body(one.clone())
            .send()
    };
    // The right-most address is the proxy's view; what the client put before it is ignored.
    let mut statuses = Vec::new();
    let mut refusal = None;
    for _ in 0..8 {
        let resp = send(&t.write_key, "10.9.9.9, 203.0.113.9").await.expect("send");
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS && refusal.is_none() {
            let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let (retry_after, content_type) = (header("retry-after"), header("content-type"));
            refusal = Some((retry_after, content_type, resp.json::<Value>().await.expect("a JSON error")));
        }
    }
    let (retry_after, content_type, body) = refusal.unwrap_or_else(|| panic!("a 429 at 3 requests/s: {statuses:?}"));
    // The tenant's own limit (the node's 2,000 events/s) is far off: this is the address's 429.
    let retry_after: u64 = retry_after.expect("a Retry-After header").parse().expect("whole seconds");
    // One request more every third of a second: under a second's wait, rounded up.
    assert_eq!(retry_after, 1, "Retry-After for a client over 3 requests/s");
    assert!(content_type.is_some_and(|ct| ct.starts_with("application/json")), "a JSON error");
    let detail = body["error"].as_object().unwrap_or_else(|| panic!("{{\"error\": {{..}}}}: {body}"));
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only the error: {body}");
    assert_eq!(detail.get("code"), Some(&json!("rate_limited")), "{body}");
    assert!(detail.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(detail.len(), 2, "no field names a culprit in the body: {body}");
    // Another client address, and the same address for another tenant, are not limited.
    assert_eq!(send(&t.write_key, "10.9.9.9, 198.51.100.4").await.expect("send").status(), StatusCode::ACCEPTED);
    assert_eq!(send(&other.write_key, "203.0.113.9").await.expect("send").status(), StatusCode::ACCEPTED);
    // Waiting what Retry-After says is enough for the same address to get in again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(send(&t.write_key, "203.0.113.9").await.expect("send").status(), StatusCode::ACCEPTED);
    // Exactly the accepted requests were stored, the refused ones not at all.
    let accepted = statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count() + 2;
    let stored = wait_for_events(&app, &t, "visitor_id=v.ip", accepted).await;
    assert!(stored.iter().all(|e| e["ip"] == "203.0.113.0" || e["ip"] == "198.51.100.0"), "{stored:?}");

    // Origin: null (a sandboxed frame) is refused once the tenant lists its origins.
    let (status, _, _) =
        collect(&app, &other.write_key, &json!({"events": [{"type": "page_view", "source": "web"}]}), Some("null"))
            .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/tracking",
            Some(&other.owner_key),
            Some(json!({"allowed_origins": ["https://shop.example"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) =
        collect(&app, &other.write_key, &json!({"events": [{"type": "page_view", "source": "web"}]}), Some("null"))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_script_is_served_gzipped_under_3_kb() {
    let app = TestApp::spawn().await;
    let raw = app.client.get(app.url("/t.js")).header("accept-encoding", "gzip").send().await.expect("script");
    assert_eq!(raw.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
    let bytes = raw.bytes().await.expect("body");
    assert!(bytes.len() < 3 * 1024, "t.js is {} bytes gzipped", bytes.len());
    assert!(bytes.starts_with(&[0x1f, 0x8b]), "a gzip stream");
}

#[tokio::test]
async fn a_batch_mixing_tenants_stores_each_event_under_its_own_tenant_only() {
    let app = TestApp::spawn().await;
    let a = app.tenant("mix-a").await;
    let b = app.tenant("mix-b").await;
    let (_, lead_a) =
        app.call(Method::POST, "/v1/leads", Some(&a.owner_key), Some(json!({"email": "ann@a.example"}))).await;
    let lead_a: Uuid = lead_a["id"].as_str().expect("lead").parse().expect("uuid");
    let (_, campaign_a) =
        app.call(Method::POST, "/v1/campaigns", Some(&a.owner_key), Some(json!({"name": "A's"}))).await;
    let campaign_a: Uuid = campaign_a["id"].as_str().expect("campaign").parse().expect("uuid");
    let entry = |tenant: &TestTenant, visitor: &str, lead: Option<Uuid>, email: Option<&str>| IngestEntry {
        format: IngestEntry::FORMAT,
        tenant: tenant.id.as_uuid(),
        id: Uuid::now_v7(),
        event_type: flywheel_contracts::events::EventType::FormSubmit,
        source: flywheel_contracts::events::EventSource::Web,
        occurred_at_us: Utc::now().timestamp_micros(),
        received_at_us: Utc::now().timestamp_micros(),
        visitor_id: Some(visitor.into()),
        session_id: None,
        lead_id: lead,
        campaign_id: Some(campaign_a),
        landing_page_id: None,
        email_id: None,
        ad_id: None,
        identify_email: email.map(str::to_owned),
        meta: r#"{"properties": {"form_id": "f"}}"#.into(),
    };
    // One batch: A's own event; B's events naming A's lead and campaign, and A's lead's email.
    let batch = vec![
        entry(&a, "v.a", Some(lead_a), None),
        entry(&b, "v.b1", Some(lead_a), None),
        entry(&b, "v.b2", None, Some("ann@a.example")),
    ];
    let mut writer = app.db().ingest_writer().await.expect("writer");
    writer.write(&batch).await.expect("a mixed batch is stored");
    let in_a = events(&app, &a, "").await;
    assert_eq!(in_a.len(), 1);
    assert_eq!((in_a[0]["lead_id"].clone(), in_a[0]["campaign_id"].clone()), (json!(lead_a), json!(campaign_a)));
    let in_b = events(&app, &b, "").await;
    assert_eq!(in_b.len(), 2);
    for e in &in_b {
        assert!(e["campaign_id"].is_null(), "B's event cannot point at A's campaign: {e}");
        assert_ne!(e["lead_id"], json!(lead_a), "B's event cannot point at A's lead: {e}");
    }
    // The email made a lead of B's own; A's lead is untouched and has no new visitor.
    let (_, b_leads) = app.call(Method::GET, "/v1/leads?email=ann@a.example", Some(&b.owner_key), None).await;
    let b_lead = b_leads["data"][0]["id"].as_str().expect("B's own lead for the email");
    assert_ne!(b_lead, lead_a.to_string());
    let mut tx = app.db().begin(a.id).await.expect("begin");
    let linked = flywheel_storage::events::linked_visitors(&mut tx, lead_a).await.expect("links");
    tx.commit().await.expect("commit");
    assert_eq!(linked, vec!["v.a".to_owned()]);
}

/// The count of the tenant's events with a lead, read under its own context.
async fn events_with_lead(conn: &mut sqlx::PgConnection, tenant: Uuid) -> (i64, i64) {
    let mut tx = flywheel_tests::tenant_tx(conn, tenant).await;
    let counts = sqlx::query_as("select count(*), count(lead_id) from events where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await
        .expect("count");
    tx.commit().await.expect("commit");
    counts
}

#[tokio::test]
async fn deleting_a_lead_clears_it_from_its_tenants_events_and_deleting_a_tenant_deletes_its_events() {
    let app = TestApp::spawn().await;
    let a = app.tenant("forget-a").await;
    let b = app.tenant("forget-b").await;
    let leads = [create_lead(&app, &a, "ann@shop.example").await, create_lead(&app, &b, "ann@shop.example").await];
    let entry = |tenant: &TestTenant, lead: Uuid| IngestEntry {
        format: IngestEntry::FORMAT,
        tenant: tenant.id.as_uuid(),
        id: Uuid::now_v7(),
        event_type: flywheel_contracts::events::EventType::Click,
        source: flywheel_contracts::events::EventSource::Web,
        occurred_at_us: Utc::now().timestamp_micros(),
        received_at_us: Utc::now().timestamp_micros(),
        visitor_id: Some("v.shared".into()),
        session_id: None,
        lead_id: Some(lead),
        campaign_id: None,
        landing_page_id: None,
        email_id: None,
        ad_id: None,
        identify_email: None,
        meta: "{}".into(),
    };
    let batch = vec![entry(&a, leads[0]), entry(&a, leads[0]), entry(&b, leads[1]), entry(&b, leads[1])];
    let mut writer = app.db().ingest_writer().await.expect("writer");
    writer.write(&batch).await.expect("stored");
    let mut conn = app.test_db.app().await;
    assert_eq!(events_with_lead(&mut conn, a.id.as_uuid()).await, (2, 2));
    assert_eq!(events_with_lead(&mut conn, b.id.as_uuid()).await, (2, 2));

    // A deletes its lead: A's events lose it, B's (a lead of the same email) keep theirs.
    let mut tx = flywheel_tests::tenant_tx(&mut conn, a.id.as_uuid()).await;
    let deleted = sqlx::query("delete from leads where id = $1").bind(leads[0]).execute(&mut *tx).await.expect("del");
    assert_eq!(deleted.rows_affected(), 1);
    tx.commit().await.expect("commit");
    assert_eq!(events_with_lead(&mut conn, a.id.as_uuid()).await, (2, 0));
    assert_eq!(events_with_lead(&mut conn, b.id.as_uuid()).await, (2, 2));

    // The operator deletes tenant A: its events go with it, B's stay.
    let mut owner = app.test_db.owner().await;
    let mut tx = flywheel_tests::tenant_tx(&mut owner, a.id.as_uuid()).await;
    sqlx::query("delete from tenants where id = $1").bind(a.id.as_uuid()).execute(&mut *tx).await.expect("delete A");
    tx.commit().await.expect("commit");
    assert_eq!(events_with_lead(&mut conn, a.id.as_uuid()).await, (0, 0));
    assert_eq!(events_with_lead(&mut conn, b.id.as_uuid()).await, (2, 2));
    // A batch for the deleted tenant stores nothing of it and the rest of the batch lands.
    writer.write(&[entry(&a, leads[0]), entry(&b, leads[1])]).await.expect("stored");
    assert_eq!(events_with_lead(&mut conn, a.id.as_uuid()).await, (0, 0));
    assert_eq!(events_with_lead(&mut conn, b.id.as_uuid()).await, (3, 3));
}

/// Stores `n` synthetic page views of `tenant` with one call of `flywheel_ingest_events` on
/// `conn` (the ingestor's statement, its arrays built by the server) and returns the shared
/// buffers the call touched, its nested statements included.
async fn ingest_buffers(conn: &mut sqlx::PgConnection, tenant: Uuid, n: u32) -> i64 {
    let sql = format!(
        "explain (analyze, buffers, format json)
         select flywheel_ingest_events(array['{tenant}']::uuid[], array[{n}], ids, types, sources, occurred,
                                       received, sessions, visitors, leads, campaigns, pages, emails, ads, metas,
                                       identities)
           from (select array_agg(gen_random_uuid()) ids, array_agg('page_view'::text) types,
                        array_agg('web'::text) sources, array_agg(now() - g * interval '1 second') occurred,
                        array_agg(now()) received, array_agg('s.' || g / 10) sessions,
                        array_agg('v.' || md5(random()::text)) visitors, array_agg(null::uuid) leads,
                        array_agg(null::uuid) campaigns, array_agg(null::uuid) pages, array_agg(null::uuid) emails,
                        array_agg(null::text) ads,
                        array_agg(json_build_object('url', 'https://stride.example/p/' || g % 50)::text) metas,
                        array_agg(null::text) identities
                   from generate_series(1, {n}) g) s"
    );
    let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(conn).await.expect("explain the ingest");
    let top = &plan[0]["Plan"];
    top["Shared Hit Blocks"].as_i64().expect("hit blocks") + top["Shared Read Blocks"].as_i64().expect("read blocks")
}

/// `flywheel_ingest_events` plans its statements once per connection. Planned while `events`
/// had no statistics, its duplicate check hashed all of the tenant's stored events on every
/// batch, so a batch's cost grew with the tenant's history; once the statistics are refreshed
/// (`refresh_ingest_statistics`, which the ingestors call as they store) the same connection
/// plans again, and a batch costs a few index descents an event.
#[tokio::test]
async fn a_batchs_cost_stays_flat_as_its_tenant_stores_more_once_statistics_are_refreshed() {
    let app = TestApp::spawn().await;
    app.ingest.stop_and_wait(Duration::from_secs(10)).await;
    let tenant = app.tenant("history").await.id.as_uuid();
    // One connection throughout: its cached plans are what this is about.
    let mut conn = app.test_db.app().await;
    // The plans are made now, on the empty table.
    ingest_buffers(&mut conn, tenant, 20).await;
    for _ in 0..40 {
        ingest_buffers(&mut conn, tenant, 1_500).await;
    }
    let stale = ingest_buffers(&mut conn, tenant, 20).await;
    // As if every partition had been created after migration 009 (a new partition does not take
    // its parent's statistics target): the refresh itself must set it.
    let mut owner = app.test_db.owner().await;
    sqlx::query("alter table events alter column meta set statistics -1")
        .execute(&mut owner)
        .await
        .expect("reset the statistics target");
    // The change counts reach the statistics once the writing session reports them (≤ 1 s, or
    // at its next idle moment when asked): all of them before the analysis, else the ones
    // reported after it would count as changes since, and the last refresh analyze again.
    sqlx::query("select pg_stat_force_next_flush()").execute(&mut conn).await.expect("flush the statistics");
    let analyzed = eventually("the events partition analyzed", Duration::from_secs(10), || async {
        let analyzed = app.db().refresh_ingest_statistics().await.expect("refresh the statistics");
        analyzed.iter().any(|t| t.starts_with("events_p")).then_some(analyzed)
    })
    .await;
    assert!(
        analyzed.iter().all(|t| t.starts_with("events_") || t == "leads" || t == "visitor_links"),
        "only the tables the ingest writes are analyzed: {analyzed:?}"
    );
    // The keys the statements probe have statistics; `meta`, the bulk of a row that no plan
    // depends on, is skipped, and stays so for autovacuum's analyses.
    let partition = analyzed.iter().find(|t| t.starts_with("events_p")).expect("an events partition");
    let target: i32 = sqlx::query_scalar(
        "select attstattarget::int4 from pg_attribute where attrelid = $1::text::regclass and attname = 'meta'",
    )
    .bind(partition)
    .fetch_one(&mut owner)
    .await
    .expect("read the partition's statistics target");
    assert_eq!(target, 0, "the refresh sets meta's statistics target on {partition}");
    // `pg_stats` hides the statistics of a table whose row-level security applies to the reader,
    // forced RLS binding the owner too: lifted for this look only, and rolled back.
    let mut look = sqlx::Connection::begin(&mut owner).await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!("alter table {partition} no force row level security")))
        .execute(&mut *look)
        .await
        .expect("lift forced RLS in the transaction");
    let columns: Vec<String> =
        sqlx::query_scalar("select attname::text from pg_stats where tablename = $1 order by attname")
            .bind(partition)
            .fetch_all(&mut *look)
            .await
            .expect("read the partition's statistics");
    // Sampled at the refresh's statistics target of 10 (migration 010), not the server's 100:
    // a histogram of at most 11 bounds. 1,500 × 40 distinct times would fill 101.
    let bounds: Option<i32> = sqlx::query_scalar(
        "select cardinality(histogram_bounds::text::text[]) from pg_stats \
          where tablename = $1 and attname = 'occurred_at'",
    )
    .bind(partition)
    .fetch_one(&mut *look)
    .await
    .expect("read the histogram of occurred_at");
    look.rollback().await.expect("roll back");
    assert!(bounds.is_some_and(|n| (2..=11).contains(&n)), "occurred_at's histogram has {bounds:?} bounds");
    assert!(
        ["tenant_id", "id", "occurred_at", "visitor_id"].iter().all(|c| columns.iter().any(|s| s == c)),
        "the probed keys have statistics: {columns:?}"
    );
    assert!(!columns.iter().any(|c| c == "meta"), "meta should not be analyzed: {columns:?}");
    // Again the first call plans (reading the new statistics), the second is the batch's cost.
    ingest_buffers(&mut conn, tenant, 20).await;
    let fresh = ingest_buffers(&mut conn, tenant, 20).await;
    // A descent of each index and the heap's page: about 24 buffers an event at this size
    // (12 on the empty table, where every index is one page); the stale plan read 3,000.
    assert!(fresh <= 40 * 20, "{fresh} buffers for 20 events with fresh statistics ({stale} with stale ones)");
    assert!(stale > 10 * fresh, "the stale plan should have read the tenant's history: {stale} buffers");
    // Nothing changed since: nothing to analyze.
    assert_eq!(app.db().refresh_ingest_statistics().await.expect("refresh"), Vec::<String>::new());
}

/// The ingestors refresh the statistics of what they write as they store.
#[tokio::test]
async fn the_ingestors_keep_the_statistics_of_the_tables_they_write_fresh() {
    let app = TestApp::spawn().await;
    let t = app.tenant("stats").await;
    // Batches spread over a few seconds: a session reports its changes to the statistics about
    // once a second, and a refresh only analyzes what they show.
    for _ in 0..6 {
        let batch: Vec<Value> = (0..25).map(|i| page_view(Uuid::now_v7(), &format!("v.{i}"))).collect();
        accept(&app, &t, batch).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_for_events(&app, &t, "", 150).await;
    eventually("an ingestor analyzed the events partition", Duration::from_secs(30), || async {
        let mut owner = app.test_db.owner().await;
        let analyzed: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_user_tables where relname like 'events_p%' and last_analyze is not null",
        )
        .fetch_one(&mut owner)
        .await
        .expect("read the table statistics");
        (analyzed > 0).then_some(())
    })
    .await;
}

/// A test node's Redis namespace is emptied when the node is dropped, as its database is: a run
/// of the suite leaves nothing behind in the machine's Redis (the streams alone held every
/// test's events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_nodes_redis_keys_are_deleted_when_it_is_dropped() {
    use fred::prelude::KeysInterface;

    let app = TestApp::spawn().await;
    let t = app.tenant("keys-deleted").await;
    let (status, _, body) =
        collect(&app, &t.write_key, &json!({"events": [page_view(Uuid::now_v7(), "v.1")]}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_for_events(&app, &t, "type=page_view", 1).await;
    let pattern = format!("{}:*", app.namespace.as_str());

    let pool = flywheel_tests::raw_redis().await;
    let keys = || async {
        let (mut cursor, mut keys) = ("0".to_owned(), Vec::<String>::new());
        loop {
            let (next, page): (String, Vec<String>) =
                pool.scan_page(cursor, pattern.as_str(), Some(1_000), None).await.expect("scan");
            keys.extend(page);
            if next == "0" {
                return keys;
            }
            cursor = next;
        }
    };
    let before = keys().await;
    assert!(before.iter().any(|k| k.contains(":ingest:")), "the node wrote its stream: {before:?}");

    // On this multi-threaded runtime the node's ingestors run beside the purge; none of them may
    // make its stream again after it (they poll every few milliseconds while idle).
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(keys().await, Vec::<String>::new(), "keys left behind by a dropped test node");
}
