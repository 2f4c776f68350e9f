//! The tracking script (t.js) in a real page in headless Chromium: a page on another origin embeds
//! the snippet, a visitor views it, clicks a marked link and signs up, and the node stores the
//! page view, the click and the form submit with one visitor and one session, each under the
//! time-ordered id the script gave it.

use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use flywheel_tests::webdriver::{ChromeDriver, Session};
use flywheel_tests::{TestApp, TestTenant, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Serves, on an origin of its own, a page embedding the snippet of `t`'s node; returns the origin.
async fn serve_page(app: &TestApp, t: &TestTenant, cookieless: bool) -> String {
    let cookieless = if cookieless { " data-cookieless" } else { "" };
    let page = format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Trail shoes</title>
<script async src="{node}/t.js" data-key="{key}"{cookieless}></script></head>
<body><h1>Trail shoes for dawn runners</h1>
<a id="cta" href="#pricing" data-fw-click="hero-cta">See pricing</a>
<form id="signup" action="/thanks" method="post"><input type="email" name="email">
<button type="submit" id="send">Sign up</button></form>
<h2 id="pricing">Pricing</h2></body></html>"##,
        node = app.base,
        key = t.write_key,
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

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}

#[tokio::test]
async fn snippet_in_a_real_page_records_page_view_click_and_form_submit() {
    let app = TestApp::spawn().await;
    let t = app.tenant("tracker-page").await;
    let origin = serve_page(&app, &t, false).await;
    allow(&app, &t, &origin, false).await;

    let driver = ChromeDriver::start().await.expect("chromedriver (scripts/setup installs chromium-driver)");
    let browser = driver.session().await.expect("a headless Chromium session");
    open(&browser, &format!("{origin}/?utm_source=newsletter&gclid=abc123")).await;
    browser.click(&browser.find("#cta").await.expect("the marked link")).await.expect("click the link");
    // The script set its first-party cookies on the page's origin.
    let cookies = browser.cookies().await.expect("the page's cookies");
    let cookie = |name: &str| {
        cookies.iter().find(|c| c.name == name).map(|c| c.value.clone()).unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let (visitor, session) = (cookie("_fw_vid"), cookie("_fw_sid"));
    let email = browser.find("input[type=email]").await.expect("the email field");
    browser.send_keys(&email, "ana@example.com").await.expect("type the email");
    browser.click(&browser.find("#send").await.expect("the submit button")).await.expect("submit the form");
    eventually("the thank-you page", Duration::from_secs(10), || async {
        browser.current_url().await.ok().filter(|url| url == &format!("{origin}/thanks"))
    })
    .await;

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
    let t = app.tenant("tracker-cookieless").await;
    let origin = serve_page(&app, &t, true).await;
    allow(&app, &t, &origin, true).await;

    let driver = ChromeDriver::start().await.expect("chromedriver (scripts/setup installs chromium-driver)");
    let browser = driver.session().await.expect("a headless Chromium session");
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
