//! The tenant REST API over real HTTP: authentication, roles, tenant scoping (a tenant id in a
//! request never wins over the key's), every error answer, and the CRUD round trips.

use flywheel_contracts::Role;
use flywheel_tests::{TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A valid creation body for each collection.
fn create_body(collection: &str) -> Value {
    match collection {
        "brand_core" => {
            json!({"positioning": "Shoes for dawn runners.", "tone": "Warm, exact.", "guidelines": {"colors": ["#123456"]}})
        }
        "personas" => {
            json!({"name": "Dawn runner", "description": "Runs before work.", "attributes": {"age": "30-45"}})
        }
        "campaigns" => {
            json!({"name": "Spring launch", "budget": {"amount": "1500.00", "currency": "USD"}, "channels": ["email", "instagram"]})
        }
        "leads" => json!({"email": "Ana@Example.com", "name": "Ana", "attributes": {"size": 39}}),
        other => panic!("no body for {other}"),
    }
}

/// A valid update body for each collection.
fn update_body(collection: &str) -> Value {
    match collection {
        "brand_core" => json!({"tone": "Warmer."}),
        "personas" => json!({"description": "Runs before dawn."}),
        "campaigns" => json!({"status": "active"}),
        "leads" => json!({"status": "qualified"}),
        other => panic!("no body for {other}"),
    }
}

const COLLECTIONS: [&str; 4] = ["brand_core", "personas", "campaigns", "leads"];

async fn create(app: &TestApp, tenant: &TestTenant, collection: &str) -> Value {
    let (status, body) = app
        .call(Method::POST, &format!("/v1/{collection}"), Some(&tenant.owner_key), Some(create_body(collection)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{collection}: {body}");
    body
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let (status, body) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"], json!({"postgres": "ok", "redis": "ok", "vector": "ok"}));
}

#[tokio::test]
async fn crud_round_trips_for_every_resource() {
    let app = TestApp::spawn().await;
    let a = app.tenant("crud").await;
    let (status, tenant) = app.call(Method::GET, "/v1/tenant", Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tenant["id"], json!(a.id.to_string()));
    assert_eq!(tenant["slug"], json!("crud"));

    for collection in COLLECTIONS {
        let created = create(&app, &a, collection).await;
        let id = created["id"].as_str().expect("id").to_owned();
        assert_eq!(created["tenant_id"], json!(a.id.to_string()));
        let (status, got) = app.call(Method::GET, &format!("/v1/{collection}/{id}"), Some(&a.owner_key), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got, created, "{collection}: read what was written");
        let (status, updated) = app
            .call(Method::PATCH, &format!("/v1/{collection}/{id}"), Some(&a.owner_key), Some(update_body(collection)))
            .await;
        assert_eq!(status, StatusCode::OK, "{collection}: {updated}");
        for (k, v) in update_body(collection).as_object().expect("object") {
            assert_eq!(&updated[k], v, "{collection}.{k} updated");
        }
        let (status, page) = app.call(Method::GET, &format!("/v1/{collection}"), Some(&a.owner_key), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["data"][0]["id"], json!(id));
        assert_eq!(page["next_cursor"], Value::Null);
    }

    // Specific behaviour worth pinning: emails are normalised, money is exact, brand versions bump.
    let (_, leads) = app.call(Method::GET, "/v1/leads?email=ANA@example.com", Some(&a.owner_key), None).await;
    assert_eq!(leads["data"][0]["email"], json!("ana@example.com"));
    let (_, campaigns) = app.call(Method::GET, "/v1/campaigns?status=active", Some(&a.owner_key), None).await;
    assert_eq!(campaigns["data"][0]["budget"], json!({"amount": "1500.00", "currency": "USD"}));
    let (_, brands) = app.call(Method::GET, "/v1/brand_core", Some(&a.owner_key), None).await;
    assert_eq!(brands["data"][0]["version"], json!(2));
}

#[tokio::test]
async fn patch_distinguishes_absent_from_null() {
    let app = TestApp::spawn().await;
    let a = app.tenant("patch").await;
    let (_, lead) = app
        .call(
            Method::POST,
            "/v1/leads",
            Some(&a.owner_key),
            Some(json!({"email": "p@x.io", "phone": "+14155550123", "name": "P"})),
        )
        .await;
    let path = format!("/v1/leads/{}", lead["id"].as_str().expect("id"));
    let (status, after) = app.call(Method::PATCH, &path, Some(&a.owner_key), Some(json!({"phone": null}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((after["phone"].clone(), after["name"].clone()), (Value::Null, json!("P")));
    // Clearing the last way to reach the lead breaks a rule: 422 naming the field.
    let (status, err) = app.call(Method::PATCH, &path, Some(&a.owner_key), Some(json!({"email": null}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], json!("email"));
}

#[tokio::test]
async fn pagination_walks_every_row_once() {
    let app = TestApp::spawn().await;
    let a = app.tenant("pages").await;
    for i in 0..7 {
        let (s, _) =
            app.call(Method::POST, "/v1/personas", Some(&a.owner_key), Some(json!({"name": format!("P{i}")}))).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/personas?limit=3&cursor={c}"),
            None => "/v1/personas?limit=3".to_owned(),
        };
        let (status, page) = app.call(Method::GET, &path, Some(&a.owner_key), None).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(
            page["data"].as_array().expect("data").iter().map(|p| p["name"].as_str().expect("name").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["P6", "P5", "P4", "P3", "P2", "P1", "P0"]);
    for (query, field) in
        [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"), ("cursor=nope", "cursor")]
    {
        let (status, err) = app.call(Method::GET, &format!("/v1/personas?{query}"), Some(&a.owner_key), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(err["error"]["field"], json!(field), "{query}");
    }
    let (status, err) = app.call(Method::GET, "/v1/leads?status=bogus", Some(&a.owner_key), None).await;
    assert_eq!((status, err["error"]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("status")));
}

#[tokio::test]
async fn another_tenants_id_is_answered_exactly_like_a_random_one() {
    let app = TestApp::spawn().await;
    let a = app.tenant("owner-a").await;
    let b = app.tenant("other-b").await;
    for collection in COLLECTIONS {
        let created = create(&app, &a, collection).await;
        let theirs = format!("/v1/{collection}/{}", created["id"].as_str().expect("id"));
        let random = format!("/v1/{collection}/{}", uuid::Uuid::now_v7());
        let garbage = format!("/v1/{collection}/not-an-id");
        for method in [Method::GET, Method::PATCH] {
            let body = (method == Method::PATCH).then(|| update_body(collection));
            let (s1, b1) = app.call(method.clone(), &theirs, Some(&b.owner_key), body.clone()).await;
            let (s2, b2) = app.call(method.clone(), &random, Some(&b.owner_key), body.clone()).await;
            let (s3, b3) = app.call(method.clone(), &garbage, Some(&b.owner_key), body.clone()).await;
            assert_eq!(s1, StatusCode::NOT_FOUND, "{method} {theirs}");
            assert_eq!((s1, &b1), (s2, &b2), "{method} {collection}: another tenant's id must look unknown");
            assert_eq!((s1, &b1), (s3, &b3));
        }
        // And A's record is untouched by B's attempts.
        let (_, still) = app.call(Method::GET, &theirs, Some(&a.owner_key), None).await;
        assert_eq!(still, created);
        // B's lists never show it.
        let (_, page) = app.call(Method::GET, &format!("/v1/{collection}"), Some(&b.owner_key), None).await;
        assert_eq!(page["data"], json!([]));
    }
}

#[tokio::test]
async fn a_tenant_id_in_the_request_never_overrides_the_keys() {
    let app = TestApp::spawn().await;
    let a = app.tenant("real-a").await;
    let b = app.tenant("victim-b").await;
    for collection in COLLECTIONS {
        let mut body = create_body(collection);
        body["tenant_id"] = json!(b.id.to_string());
        let resp = app
            .client
            .post(app.url(&format!("/v1/{collection}?tenant_id={}", b.id)))
            .bearer_auth(&a.owner_key)
            .header("X-Tenant-Id", b.id.to_string())
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.expect("json");
        assert_eq!(created["tenant_id"], json!(a.id.to_string()), "{collection}: created under the key's tenant");
        let (_, page) =
            app.call(Method::GET, &format!("/v1/{collection}?tenant_id={}", b.id), Some(&b.owner_key), None).await;
        assert_eq!(page["data"], json!([]), "{collection}: nothing landed in B");
        let (_, page) =
            app.call(Method::GET, &format!("/v1/{collection}?tenant_id={}", a.id), Some(&b.owner_key), None).await;
        assert_eq!(page["data"], json!([]), "{collection}: B cannot list A's by asking");
        // A PATCH carrying a tenant_id changes nothing about ownership either.
        let path = format!("/v1/{collection}/{}", created["id"].as_str().expect("id"));
        let mut patch = update_body(collection);
        patch["tenant_id"] = json!(b.id.to_string());
        let (status, updated) = app.call(Method::PATCH, &path, Some(&a.owner_key), Some(patch)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(updated["tenant_id"], json!(a.id.to_string()));
    }
    let (_, me) = app.call(Method::GET, &format!("/v1/tenant?tenant_id={}", b.id), Some(&a.owner_key), None).await;
    assert_eq!(me["id"], json!(a.id.to_string()));
}

#[tokio::test]
async fn roles_viewers_and_approvers_cannot_write() {
    let app = TestApp::spawn().await;
    let a = app.tenant("roles").await;
    let viewer = app.key(&a, Role::Viewer).await;
    let approver = app.key(&a, Role::Approver).await;
    let marketer = app.key(&a, Role::Marketer).await;
    for collection in COLLECTIONS {
        let existing = create(&app, &a, collection).await;
        let path = format!("/v1/{collection}/{}", existing["id"].as_str().expect("id"));
        for key in [&viewer, &approver] {
            let (status, err) =
                app.call(Method::POST, &format!("/v1/{collection}"), Some(key), Some(create_body(collection))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{collection}: {err}");
            assert_eq!(err["error"]["code"], json!("forbidden"));
            let (status, _) = app.call(Method::PATCH, &path, Some(key), Some(update_body(collection))).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            // The role check comes before the body is looked at.
            let (status, _) =
                app.call(Method::POST, &format!("/v1/{collection}"), Some(key), Some(json!({"bogus": 1}))).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            let (status, got) = app.call(Method::GET, &path, Some(key), None).await;
            assert_eq!((status, got), (StatusCode::OK, existing.clone()), "reading is allowed");
        }
        let (status, _) = app.call(Method::PATCH, &path, Some(&marketer), Some(update_body(collection))).await;
        assert_eq!(status, StatusCode::OK, "a marketer writes");
    }
}

#[tokio::test]
async fn authentication_failures_are_401_with_a_json_body() {
    let app = TestApp::spawn().await;
    let a = app.tenant("auth").await;
    let revoked = {
        let mut tx = app.db().begin(a.id).await.expect("begin");
        let (id, key) =
            flywheel_storage::api_keys::create(&mut tx, "k", Role::Owner, &flywheel_storage::audit::Actor::System)
                .await
                .expect("key");
        flywheel_storage::api_keys::revoke(&mut tx, id, &flywheel_storage::audit::Actor::System).await.expect("revoke");
        tx.commit().await.expect("commit");
        key.plain.expose().clone()
    };
    let wrong = format!("fwk_{}", "0".repeat(64));
    for key in [None, Some("garbage"), Some(wrong.as_str()), Some(revoked.as_str())] {
        let (status, err) = app.call(Method::GET, "/v1/tenant", key, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(err["error"]["code"], json!("unauthorized"));
    }
    let resp =
        app.client.get(app.url("/v1/leads")).header("Authorization", "Basic Zm9vOmJhcg==").send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_names_the_field() {
    let app =
        TestApp::spawn_with(flywheel_gateway::GatewayConfig { max_body_bytes: 64 * 1024, ..Default::default() }).await;
    let a = app.tenant("bad-input").await;
    let key = a.owner_key.as_str();
    let send_raw = |path: &str, content_type: &str, body: Vec<u8>| {
        app.client.post(app.url(path)).bearer_auth(key).header("Content-Type", content_type).body(body).send()
    };

    // Malformed JSON: 400.
    let resp = send_raw("/v1/leads", "application/json", b"{\"email\": ".to_vec()).await.expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], json!("malformed_json"));

    // Not JSON at all: 415.
    let resp = send_raw("/v1/leads", "text/plain", b"email=a@b.c".to_vec()).await.expect("send");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Too large: 413.
    let big = json!({"positioning": "x".repeat(70 * 1024), "tone": "t"});
    let resp =
        send_raw("/v1/brand_core", "application/json", serde_json::to_vec(&big).expect("bytes")).await.expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], json!("payload_too_large"));

    // Schema and rule violations: 422 naming the field.
    let cases = [
        ("/v1/leads", json!({"name": "no contact"}), "email"),
        ("/v1/leads", json!({"email": "not-an-email"}), "email"),
        ("/v1/leads", json!({"email": "a@b.io", "phone": "12"}), "phone"),
        ("/v1/leads", json!({"email": "a@b.io", "status": "vip"}), "status"),
        ("/v1/leads", json!({"email": "a@b.io", "campaign_id": "nope"}), "campaign_id"),
        ("/v1/leads", json!({"email": "a@b.io", "campaign_id": uuid::Uuid::now_v7().to_string()}), "campaign_id"),
        ("/v1/leads", json!({"email": "a@b.io", "favourite_colour": "red"}), "favourite_colour"),
        ("/v1/campaigns", json!({"name": "c", "budget": {"amount": "10.001", "currency": "USD"}}), "budget.amount"),
        ("/v1/campaigns", json!({"name": "c", "budget": {"amount": "10", "currency": "XYZ"}}), "budget.currency"),
        ("/v1/campaigns", json!({"name": "c", "start_date": "2026-05-02", "end_date": "2026-05-01"}), "end_date"),
        ("/v1/campaigns", json!({"name": "c", "channels": ["carrier_pigeon"]}), "channels.0"),
        ("/v1/campaigns", json!({"budget": {"amount": "1", "currency": "USD"}}), "name"),
        ("/v1/brand_core", json!({"positioning": "p"}), "tone"),
        ("/v1/brand_core", json!({"positioning": 3, "tone": "t"}), "positioning"),
        ("/v1/personas", json!({"name": ""}), "name"),
    ];
    for (path, body, field) in cases {
        let (status, err) = app.call(Method::POST, path, Some(key), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}: {err}");
        assert_eq!(err["error"]["field"], json!(field), "{path} {body}: {err}");
        assert_eq!(err["error"]["code"], json!("validation_failed"));
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A JSON body that is not an object.
    let (status, _) = app.call(Method::POST, "/v1/personas", Some(key), Some(json!(["a"]))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Unknown routes and methods answer in JSON too.
    let (status, err) = app.call(Method::GET, "/v1/nothing-here", Some(key), None).await;
    assert_eq!((status, err["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!("not_found")));
    let (status, err) = app.call(Method::DELETE, "/v1/tenant", Some(key), None).await;
    assert_eq!((status, err["error"]["code"].clone()), (StatusCode::METHOD_NOT_ALLOWED, json!("method_not_allowed")));
}

#[tokio::test]
async fn unique_values_are_per_tenant_and_a_duplicate_is_409_naming_the_field() {
    let app = TestApp::spawn().await;
    let a = app.tenant("dup-a").await;
    let b = app.tenant("dup-b").await;
    let lead = json!({"email": "same@example.com"});
    for t in [&a, &b] {
        let (status, _) = app.call(Method::POST, "/v1/leads", Some(&t.owner_key), Some(lead.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "the same email in two tenants is fine");
    }
    // Case does not make it a different person.
    let (status, err) =
        app.call(Method::POST, "/v1/leads", Some(&a.owner_key), Some(json!({"email": "SAME@example.com"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        err["error"],
        json!({"code": "conflict", "message": "email is already taken by another record", "field": "email"})
    );
    // Renaming a persona onto another's name is a conflict too.
    let (_, p1) = app.call(Method::POST, "/v1/personas", Some(&a.owner_key), Some(json!({"name": "One"}))).await;
    let (_, _p2) = app.call(Method::POST, "/v1/personas", Some(&a.owner_key), Some(json!({"name": "Two"}))).await;
    let path = format!("/v1/personas/{}", p1["id"].as_str().expect("id"));
    let (status, err) = app.call(Method::PATCH, &path, Some(&a.owner_key), Some(json!({"name": "Two"}))).await;
    assert_eq!((status, err["error"]["field"].clone()), (StatusCode::CONFLICT, json!("name")));

    // Referral codes (no endpoint yet): same code in two tenants is fine, a duplicate in one is
    // a conflict on `referral_code`, answered 409 by the same error mapping.
    let mut app_conn = app.test_db.app().await;
    for t in [&a, &b] {
        let mut tx = sqlx::Connection::begin(&mut app_conn).await.expect("begin");
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(t.id.to_string())
            .execute(&mut *tx)
            .await
            .expect("set");
        sqlx::query("insert into affiliates (tenant_id, id, name, referral_code, commission_rate) values ($1, gen_random_uuid(), 'x', 'JANE20', 0.1)")
            .bind(t.id.as_uuid())
            .execute(&mut *tx)
            .await
            .expect("same code in another tenant");
        tx.commit().await.expect("commit");
    }
    let mut tx = sqlx::Connection::begin(&mut app_conn).await.expect("begin");
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(a.id.to_string())
        .execute(&mut *tx)
        .await
        .expect("set");
    let err = sqlx::query("insert into affiliates (tenant_id, id, name, referral_code, commission_rate) values ($1, gen_random_uuid(), 'y', 'JANE20', 0.1)")
        .bind(a.id.as_uuid())
        .execute(&mut *tx)
        .await
        .expect_err("duplicate code in one tenant");
    let api: flywheel_gateway::error::ApiError = flywheel_storage::StorageError::from(err).into();
    let response = axum::response::IntoResponse::into_response(api);
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let bytes = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body["error"]["field"], json!("referral_code"));
}

#[tokio::test]
async fn a_suspended_tenants_keys_stop_working() {
    let app = TestApp::spawn().await;
    let a = app.tenant("suspend-me").await;
    let mut owner = app.test_db.owner().await;
    // Suspension is an operator action (the admin plane arrives with the cluster issue).
    let mut tx = sqlx::Connection::begin(&mut owner).await.expect("begin");
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(a.id.to_string())
        .execute(&mut *tx)
        .await
        .expect("set");
    let done = sqlx::query("update tenants set status = 'suspended' where id = $1")
        .bind(a.id.as_uuid())
        .execute(&mut *tx)
        .await
        .expect("suspend");
    assert_eq!(done.rows_affected(), 1);
    tx.commit().await.expect("commit");
    let (status, err) = app.call(Method::GET, "/v1/tenant", Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
}

#[tokio::test]
async fn writes_to_brand_and_campaigns_are_audited() {
    let app = TestApp::spawn().await;
    let a = app.tenant("audit").await;
    let brand = create(&app, &a, "brand_core").await;
    let path = format!("/v1/brand_core/{}", brand["id"].as_str().expect("id"));
    app.call(Method::PATCH, &path, Some(&a.owner_key), Some(json!({"tone": "Bolder."}))).await;
    let mut tx = app.db().begin(a.id).await.expect("begin");
    let entries = flywheel_storage::audit::recent(&mut tx, 10).await.expect("audit");
    let update = entries.iter().find(|e| e.action == "brand_core.update").expect("update audited");
    assert_eq!(update.before.as_ref().map(|b| b["tone"].clone()), Some(json!("Warm, exact.")));
    assert_eq!(update.after.as_ref().map(|b| b["tone"].clone()), Some(json!("Bolder.")));
    assert_eq!(update.actor_kind, "api_key");
    assert!(entries.iter().any(|e| e.action == "tenant.create"));
}
