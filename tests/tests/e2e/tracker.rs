//! The tracking script (t.js) in a real page in headless Chromium: a page on another origin embeds
//! the snippet, a visitor views it, clicks a marked link and signs up, and the node stores the
//! page view, the click and the form submit with one visitor and one session, each under the
//! time-ordered id the script gave it. Also: a referral link's ref and click ids, the cookie
//! session's 30 minutes and what follows it, and a page that stays whole when the script cannot
//! deliver (a wrong key, an unreachable node).

use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use flywheel_tests::webdriver::{ChromeDriver, Cookie, Session};
use flywheel_tests::{TestApp, TestTenant, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// The snippet of `app`'s node with the write key `key` and `attributes` (e.g. ` data-cookieless`).
fn snippet(app: &TestApp, key: &str, attributes: &str) -> String {
    format!(r#"<script async src="{node}/t.js" data-key="{key}"{attributes}></script>"#, node = app.base)
}

/// A new tenant `name` whose shop page, on an origin of its own that the tenant allows, embeds its
/// snippet (in cookieless mode or not); the tenant and the origin.
async fn shop(app: &TestApp, name: &str, cookieless: bool) -> (TestTenant, String) {
    let t = app.tenant(name).await;
    let origin = serve_page_with(snippet(app, &t.write_key, if cookieless { " data-cookieless" } else { "" })).await;
    allow(app, &t, &origin, cookieless).await;
    (t, origin)
}

/// Headless Chromium: its driver (which stops with it when dropped) and a session.
async fn chromium() -> (ChromeDriver, Session) {
    let driver = ChromeDriver::start().await.expect("chromedriver (scripts/setup installs chromium-driver)");
    let browser = driver.session().await.expect("a headless Chromium session");
    (driver, browser)
}

/// Types an email into the shop's sign-up form, submits it and waits for the thank-you page.
async fn sign_up(browser: &Session, origin: &str, case: &str) {
    let email = browser.find("input[type=email]").await.expect("the email field");
    browser.send_keys(&email, "ana@example.com").await.expect("type the email");
    browser.click(&browser.find("#send").await.expect("the submit button")).await.expect("submit the form");
    eventually(&format!("{case}: the thank-you page"), Duration::from_secs(10), || async {
        browser.current_url().await.ok().filter(|url| url == &format!("{origin}/thanks"))
    })
    .await;
}

/// Serves, on an origin of its own, the shop's page with `head` (the snippet, and any script of
/// the page's own) in its head, and the thank-you page its form posts to; returns the origin.
async fn serve_page_with(head: String) -> String {
    let page = format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Trail shoes</title>
{head}</head>
<body><h1>Trail shoes for dawn runners</h1>
<a id="cta" href="#pricing" data-fw-click="hero-cta">See pricing</a>
<form id="signup" action="/thanks" method="post"><input type="email" name="email">
<button type="submit" id="send">Sign up</button></form>
<h2 id="pricing">Pricing</h2></body></html>"##
    );
    let site = Router::new()
        .route("/", get(move || std::future::ready(Html(page.clone()))))
        .route("/thanks", post(|| async { Html("<!doctype html><title>Thanks</title><p>Thanks for signing up.</p>") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let origin = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(async move { axum::serve(listener, site).await });
    origin
}

/// Lets pages of `origin` send events with the write key, in cookieless mode or not.
async fn allow(app: &TestApp, t: &TestTenant, origin: &str, cookieless: bool) {
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/tracking",
            Some(&t.owner_key),
            Some(json!({"allowed_origins": [origin], "cookieless": cookieless})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Opens `url` and waits until the tracking script has run.
async fn open(browser: &Session, url: &str) {
    browser.navigate(url).await.expect("open the page");
    eventually("the tracking script to load", Duration::from_secs(10), || async {
        browser.execute("return !!window.flywheel", vec![]).await.ok().filter(|loaded| loaded == &json!(true))
    })
    .await;
}

/// The stored events once `check` accepts them (newest first).
async fn events_when(app: &TestApp, t: &TestTenant, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(what, Duration::from_secs(20), || async {
        let (status, page) = app.call(Method::GET, "/v1/events?limit=100", Some(&t.owner_key), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array()?;
        check(data).then(|| data.clone())
    })
    .await
}

/// The page's cookie `name`, if it has one.
async fn cookie(browser: &Session, name: &str) -> Option<Cookie> {
    browser.cookies().await.expect("the page's cookies").into_iter().find(|c| c.name == name)
}

/// Navigates within the page as a single-page app does (`history.pushState`).
async fn push_state(browser: &Session, path: &str) {
    browser.execute("history.pushState({}, '', arguments[0])", vec![json!(path)]).await.expect("navigate in the page");
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}

#[tokio::test]
async fn snippet_in_a_real_page_records_page_view_click_and_form_submit() {
    let app = TestApp::spawn().await;
    let (t, origin) = shop(&app, "tracker-page", false).await;
    let (_driver, browser) = chromium().await;
    open(&browser, &format!("{origin}/?utm_source=newsletter&gclid=abc123")).await;
    browser.click(&browser.find("#cta").await.expect("the marked link")).await.expect("click the link");
    // The script set its first-party cookies on the page's origin.
    let visitor = cookie(&browser, "_fw_vid").await.expect("the visitor cookie").value;
    let session = cookie(&browser, "_fw_sid").await.expect("the session cookie").value;
    sign_up(&browser, &origin, "sign-up").await;

    let events = events_when(&app, &t, "a page_view, a click and a form_submit", |events| {
        ["page_view", "click", "form_submit"].iter().all(|ty| !of_type(events, ty).is_empty())
    })
    .await;
    browser.delete().await.expect("close the browser");
    let [page_view, click, form_submit] =
        ["page_view", "click", "form_submit"].map(|ty| match of_type(&events, ty)[..] {
            [one] => one,
            ref many => panic!("one {ty} expected, got {many:?}"),
        });
    for event in [page_view, click, form_submit] {
        assert_eq!(event["source"], "web", "{event}");
        // The script's ids are time-ordered (v7), of the very millisecond the event occurred at.
        let id: Uuid = event["id"].as_str().and_then(|id| id.parse().ok()).expect("an event id");
        let occurred_at: DateTime<Utc> =
            event["occurred_at"].as_str().and_then(|t| t.parse().ok()).expect("an event time");
        assert_eq!(id.get_version_num(), 7, "{event}");
        let (secs, nanos) = id.get_timestamp().expect("a v7 id has a time").to_unix();
        let id_ms = i64::try_from(secs).expect("seconds") * 1000 + i64::from(nanos / 1_000_000);
        assert_eq!(id_ms, occurred_at.timestamp_millis(), "{event}");
        assert_eq!(event["visitor_id"], json!(visitor), "the visitor of the _fw_vid cookie: {event}");
        assert_eq!(event["session_id"], json!(session), "the session of the _fw_sid cookie: {event}");
    }
    assert!(!visitor.is_empty() && !session.is_empty());
    assert_eq!(page_view["context"]["url"], json!(format!("{origin}/?utm_source=newsletter&gclid=abc123")));
    assert_eq!(page_view["context"]["title"], "Trail shoes");
    assert_eq!(page_view["context"]["utm"]["source"], "newsletter", "{page_view}");
    assert_eq!(page_view["context"]["click_ids"]["gclid"], "abc123", "{page_view}");
    assert_eq!(click["properties"]["element"], "hero-cta", "{click}");
    assert_eq!(click["properties"]["href"], json!(format!("{origin}/?utm_source=newsletter&gclid=abc123#pricing")));
    assert_eq!(form_submit["properties"]["form_id"], "signup", "{form_submit}");
    // The email typed into the form identified the visitor: the form submit belongs to that lead.
    let lead_id = form_submit["lead_id"].as_str().expect("the form submit linked to a lead");
    let (status, lead) = app.call(Method::GET, &format!("/v1/leads/{lead_id}"), Some(&t.owner_key), None).await;
    assert_eq!(status, StatusCode::OK, "{lead}");
    assert_eq!(lead["email"], "ana@example.com", "{lead}");
}

#[tokio::test]
async fn cookieless_snippet_sets_no_cookie_and_the_node_derives_the_visitor() {
    let app = TestApp::spawn().await;
    let (t, origin) = shop(&app, "tracker-cookieless", true).await;
    let (_driver, browser) = chromium().await;
    open(&browser, &format!("{origin}/?utm_source=newsletter")).await;
    // An SPA navigation: a second page view in the same session.
    browser.execute("history.pushState({}, '', '/pricing')", vec![]).await.expect("navigate in the page");
    let cookies = browser.cookies().await.expect("the page's cookies");
    assert!(cookies.is_empty(), "no cookie in cookieless mode: {cookies:?}");
    let stored = browser.execute("return localStorage.length + sessionStorage.length", vec![]).await.expect("storage");
    assert_eq!(stored, json!(0), "nothing stored in cookieless mode");

    // The browser stays open meanwhile: the script sends what it queued within milliseconds.
    let events = events_when(&app, &t, "two page views", |events| of_type(events, "page_view").len() == 2).await;
    browser.delete().await.expect("close the browser");
    let mut urls: Vec<&str> = events.iter().filter_map(|e| e["context"]["url"].as_str()).collect();
    urls.sort_unstable();
    assert_eq!(urls, [format!("{origin}/?utm_source=newsletter"), format!("{origin}/pricing")]);
    let visitor = events[0]["visitor_id"].as_str().expect("a visitor id derived by the node");
    let session = events[0]["session_id"].as_str().expect("the page's session id");
    assert!(!visitor.is_empty() && !session.is_empty());
    for event in &events {
        assert_eq!(event["source"], "web", "{event}");
        assert_eq!(event["visitor_id"], visitor, "one visitor: {event}");
        assert_eq!(event["session_id"], session, "one session across SPA navigations: {event}");
    }
}

#[tokio::test]
async fn referral_link_records_its_ref_and_click_id_and_an_affiliate_click() {
    let app = TestApp::spawn().await;
    let (t, origin) = shop(&app, "tracker-referral", false).await;
    let (_driver, browser) = chromium().await;
    let landing = format!("{origin}/?ref=partner42&fbclid=fb123");
    open(&browser, &landing).await;
    // Then two pages whose ref is not a referral code: markup, and too short.
    push_state(&browser, "/pricing?ref=%3Cb%3E").await;
    push_state(&browser, "/plans?ref=ab").await;
    let visitor = cookie(&browser, "_fw_vid").await.expect("the visitor cookie").value;
    let session = cookie(&browser, "_fw_sid").await.expect("the session cookie").value;

    // An affiliate click is sent with its page view (one batch, stored at once): once the third
    // page view is stored, any affiliate click of the refused refs would be too.
    let events = events_when(&app, &t, "three page views and an affiliate click", |events| {
        of_type(events, "page_view").len() == 3 && !of_type(events, "affiliate_click").is_empty()
    })
    .await;
    browser.delete().await.expect("close the browser");
    let page_view = |url: String| {
        *of_type(&events, "page_view")
            .iter()
            .find(|e| e["context"]["url"] == json!(url))
            .unwrap_or_else(|| panic!("no page view of {url}: {events:?}"))
    };
    let landed = page_view(landing.clone());
    assert_eq!(landed["context"]["ref"], "partner42", "{landed}");
    assert_eq!(landed["context"]["click_ids"]["fbclid"], "fb123", "{landed}");
    for refused in [format!("{origin}/pricing?ref=%3Cb%3E"), format!("{origin}/plans?ref=ab")] {
        let viewed = page_view(refused);
        assert_eq!(viewed["context"]["ref"], Value::Null, "an invalid ref is not captured: {viewed}");
        assert_eq!(viewed["session_id"], json!(session), "{viewed}");
    }
    let clicks = of_type(&events, "affiliate_click");
    let [affiliate] = clicks[..] else { panic!("one affiliate click (of the valid ref) expected: {clicks:?}") };
    assert_eq!(affiliate["source"], "web", "{affiliate}");
    assert_eq!(affiliate["context"]["ref"], "partner42", "{affiliate}");
    assert_eq!(affiliate["context"]["click_ids"]["fbclid"], "fb123", "{affiliate}");
    assert_eq!(affiliate["context"]["url"], json!(landing), "{affiliate}");
    assert_ne!(affiliate["id"], landed["id"], "an event of its own");
    let at = |e: &Value| e["occurred_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).expect("a time");
    assert!(at(affiliate) >= at(landed), "recorded after its page view: {affiliate} {landed}");
    for event in [landed, affiliate] {
        assert_eq!(event["visitor_id"], json!(visitor), "the visitor of the _fw_vid cookie: {event}");
        assert_eq!(event["session_id"], json!(session), "the session of the _fw_sid cookie: {event}");
    }
}

#[tokio::test]
async fn cookie_session_ends_after_30_minutes_idle_and_the_next_one_keeps_the_visitor() {
    let app = TestApp::spawn().await;
    let (t, origin) = shop(&app, "tracker-session", false).await;
    let (_driver, browser) = chromium().await;
    let before = Utc::now().timestamp();
    open(&browser, &format!("{origin}/")).await;
    let sid = cookie(&browser, "_fw_sid").await.expect("the session cookie");
    let vid = cookie(&browser, "_fw_vid").await.expect("the visitor cookie");
    let after = Utc::now().timestamp();
    // The cookie lives 30 minutes from the last event, the visitor's a year (a generous margin:
    // the test asserts the lifetimes, not how fast the machine is).
    let expiry =
        |c: &Cookie| c.expiry.and_then(|e| i64::try_from(e).ok()).unwrap_or_else(|| panic!("no expiry: {c:?}"));
    let expires_in = |c: &Cookie, lifetime: i64| {
        let expiry = expiry(c);
        assert!(
            (before + lifetime - 120..=after + lifetime + 120).contains(&expiry),
            "{} expires at {expiry}, not {lifetime} s after {before}..{after}",
            c.name
        );
    };
    expires_in(&sid, 30 * 60);
    expires_in(&vid, 365 * 24 * 3600);
    let first_expiry = expiry(&sid);
    let (visitor, session) = (vid.value, sid.value);

    // Each event renews the session cookie for 30 minutes. The cookie was set before it was read:
    // once the browser's own clock is 2 s past this reading, any later event is at least 2 s after
    // the one that set it, however fast or slow the machine (the expiry has whole seconds).
    let read_at = browser.execute("return Date.now()", vec![]).await.expect("the page's clock");
    let read_at = read_at.as_f64().expect("a time in ms");
    eventually("the page's clock 2 s on", Duration::from_secs(10), || async {
        let now = browser.execute("return Date.now()", vec![]).await.expect("the page's clock");
        now.as_f64().filter(|&now| now >= read_at + 2000.0)
    })
    .await;
    // An SPA navigation within the session: a second page view, same visitor and session.
    push_state(&browser, "/pricing").await;
    let events = events_when(&app, &t, "two page views", |events| of_type(events, "page_view").len() == 2).await;
    let renewed = cookie(&browser, "_fw_sid").await.expect("the session cookie");
    assert_eq!(renewed.value, session, "the same session");
    assert!(
        expiry(&renewed) > first_expiry,
        "the session cookie renewed by the event, at least 1 s later: it expired at {first_expiry}, now at {}",
        expiry(&renewed)
    );
    for event in &events {
        assert_eq!(event["visitor_id"], json!(visitor), "{event}");
        assert_eq!(event["session_id"], json!(session), "one session across SPA navigations: {event}");
    }
    assert!(events.iter().any(|e| e["context"]["url"] == json!(format!("{origin}/pricing"))), "{events:?}");

    // 30 minutes idle: the browser drops the expired cookie, as deleting it does.
    browser.execute("document.cookie = '_fw_sid=; max-age=0; path=/'", vec![]).await.expect("delete the cookie");
    assert_eq!(cookie(&browser, "_fw_sid").await, None, "the session cookie is gone");
    push_state(&browser, "/plans").await;
    browser.click(&browser.find("#cta").await.expect("the marked link")).await.expect("click the link");
    let new_session = cookie(&browser, "_fw_sid").await.expect("a new session cookie").value;
    assert_ne!(new_session, session, "a new session after the old one expired");
    assert_eq!(cookie(&browser, "_fw_vid").await.map(|c| c.value), Some(visitor.clone()), "the same visitor");
    let events = events_when(&app, &t, "a third page view and a click", |events| {
        of_type(events, "page_view").len() == 3 && of_type(events, "click").len() == 1
    })
    .await;
    browser.delete().await.expect("close the browser");
    let plans = of_type(&events, "page_view")
        .into_iter()
        .find(|e| e["context"]["url"] == json!(format!("{origin}/plans")))
        .expect("the page view of /plans");
    let click = of_type(&events, "click")[0];
    for event in [plans, click] {
        assert_eq!(event["visitor_id"], json!(visitor), "the visitor stays: {event}");
        assert_eq!(event["session_id"], json!(new_session), "the new session: {event}");
    }
}

/// How the page lets the tracking script send: `navigator.sendBeacon` (the script's first
/// choice), or `fetch` when the browser has no beacon.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Beacon,
    Fetch,
}

/// The head of a page that watches itself: every error and unhandled rejection is logged in
/// `sessionStorage` (so the log outlives the form's navigation), what the tracking script sends
/// is counted (`sent`, and `settled` once its answer or failure arrived), and the page's own code
/// after the snippet sets `pageOk` and counts clicks on the marked link.
fn watched_head(snippet: &str, transport: Transport) -> String {
    let beacon = match transport {
        Transport::Beacon => "(url, body) => (++sent, ++settled, beacon(url, body))",
        Transport::Fetch => "undefined",
    };
    format!(
        r#"<script>
const log = (what) =>
  sessionStorage.setItem('log', JSON.stringify([...JSON.parse(sessionStorage.getItem('log') || '[]'), what]));
addEventListener('error', (e) => log('error: ' + e.message));
addEventListener('unhandledrejection', (e) => log('rejection: ' + ((e.reason && e.reason.message) || e.reason)));
var sent = 0, settled = 0;
const beacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = {beacon};
const realFetch = fetch;
// The caller gets a promise that rejects as the real one does: unhandled, it is reported.
window.fetch = function () {{
  sent++;
  return realFetch.apply(this, arguments).then((r) => (settled++, r), (e) => {{ settled++; throw e; }});
}};
</script>
{snippet}
<script>
var pageOk = true, pageClicks = 0;
// Errors the page's own code lets escape: the test's probes of this watch.
const probe = () => {{
  setTimeout(() => {{ throw new Error('probe'); }});
  Promise.reject(new Error('probe'));
}};
document.addEventListener('click', (e) => e.target.closest('#cta') && pageClicks++);
</script>"#
    )
}

/// On a page served by `serve_page_with(watched_head(..))` whose script cannot deliver: the page's
/// own code ran, the marked link and the form work, and no error or unhandled rejection reached
/// the page but the two probes the test itself throws (which prove the watch works).
async fn assert_page_unbroken(browser: &Session, origin: &str, case: &str) {
    open(browser, &format!("{origin}/")).await;
    let state = |script: &'static str| async move { browser.execute(script, vec![]).await.expect("read the page") };
    assert_eq!(state("return window.pageOk").await, json!(true), "{case}: the page's own script ran");
    // The script sends a page view on a 20 ms timer, but a click on a link at once, with all that
    // is queued: `open` returns just after the page view is queued, so a click within 20 ms would
    // take it along in one send. Once the page view went, the click is a send of its own.
    let page_view_sent = eventually(&format!("{case}: the page view sent"), Duration::from_secs(10), || async {
        state("return sent").await.as_u64().filter(|&sent| sent >= 1)
    })
    .await;
    browser.click(&browser.find("#cta").await.expect("the marked link")).await.expect("click the link");
    // The click was sent too (the script recorded both events), and all the failures have come back.
    let what = format!("{case}: the link followed, the click sent, all settled");
    let seen = eventually(&what, Duration::from_secs(10), || {
        let read = state("return [pageClicks, location.hash, sent, settled]");
        async move { read.await.as_array().filter(|s| s[2].as_u64() > Some(page_view_sent) && s[2] == s[3]).cloned() }
    })
    .await;
    assert_eq!(seen[..2], [json!(1), json!("#pricing")], "{case}: the page's click handler and the link's default ran");
    // Probes, queued after anything the script may have thrown: once they are logged, so is that.
    // The page's own function throws them (what WebDriver evaluates itself is not reported to the page).
    state("probe()").await;
    let probes = || async {
        let log = state("return sessionStorage.getItem('log')").await;
        let mut log: Vec<String> = serde_json::from_str(log.as_str()?).ok()?;
        log.sort_unstable();
        Some(log)
    };
    let expected = ["error: Uncaught Error: probe", "rejection: probe"];
    let log = eventually(&format!("{case}: the probes logged"), Duration::from_secs(10), || async {
        probes().await.filter(|log| log.len() >= 2)
    })
    .await;
    assert_eq!(log, expected, "{case}: no error reached the page but the probes");

    sign_up(browser, origin, case).await;
    assert_eq!(probes().await.expect("the log"), expected, "{case}: no error while submitting");
}

/// Pages embedding `snippet` (which cannot deliver), one with `sendBeacon` and one with `fetch`
/// only, each stay whole ([`assert_page_unbroken`]).
async fn pages_stay_whole(snippet: &str, case: &str) {
    let (_driver, browser) = chromium().await;
    for transport in [Transport::Beacon, Transport::Fetch] {
        let origin = serve_page_with(watched_head(snippet, transport)).await;
        assert_page_unbroken(&browser, &origin, &format!("{case}, {transport:?}")).await;
    }
    browser.delete().await.expect("close the browser");
}

#[tokio::test]
async fn a_wrong_write_key_never_breaks_the_host_page() {
    let app = TestApp::spawn().await;
    let wrong_key = format!("fwp_{}", Uuid::new_v4().simple());
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/v1/collect?key={wrong_key}"),
            None,
            Some(json!({"events": [{"type": "page_view", "source": "web", "context": {"url": "https://shop.test/"}}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the node refuses the key: {body}");

    pages_stay_whole(&snippet(&app, &wrong_key, ""), "wrong key").await;
}

#[tokio::test]
async fn an_unreachable_node_never_breaks_the_host_page() {
    let app = TestApp::spawn().await;
    let t = app.tenant("tracker-unreachable").await;
    // A port bound but not listening: connections to it are refused, and no one else can take it.
    let closed = tokio::net::TcpSocket::new_v4().expect("a socket");
    closed.bind("127.0.0.1:0".parse().expect("an address")).expect("bind a loopback port");
    let api = format!("http://{}", closed.local_addr().expect("local addr"));

    // The script comes from the node; the events go to the closed port.
    pages_stay_whole(&snippet(&app, &t.write_key, &format!(r#" data-api="{api}""#)), "unreachable node").await;
    drop(closed);
}
