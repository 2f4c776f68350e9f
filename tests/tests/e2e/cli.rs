//! The `flywheel` command line against a running node: `runs` and `approvals` go through the
//! HTTP API with the caller's key, so they obey the same roles and tenant scoping.

use std::process::Command;
use std::time::Duration;

use flywheel_tests::{TestApp, eventually};
use serde_json::{Value, json};

fn flywheel(app: &TestApp, key: &str, args: &[&str]) -> (bool, String, String) {
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("flywheel");
    assert!(bin.exists(), "{} is missing: build it first (scripts/test does)", bin.display());
    let out = Command::new(bin)
        .args(args)
        .env("FLYWHEEL_URL", &app.base)
        .env("FLYWHEEL_API_KEY", key)
        .output()
        .expect("run flywheel");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_approvals_from_the_command_line() {
    let app = TestApp::spawn_with_branding().await;
    let a = app.tenant("cli").await;
    let input = std::env::temp_dir().join(format!("branding-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&input, json!({"company_name": "Quayside Books", "industry": "independent bookshop", "goals": ["double the reading club"]}).to_string())
        .expect("write input");
    let key = a.owner_key.clone();
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (base, key, input) = (app.base.clone(), key.clone(), input.clone());
        move || {
            let bin = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent()?.parent().map(|d| d.join("flywheel")))
                .expect("bin");
            let o = Command::new(bin)
                .args(["runs", "start", "branding", input.to_str().expect("path")])
                .env("FLYWHEEL_URL", base)
                .env("FLYWHEEL_API_KEY", key)
                .output()
                .expect("run");
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        }
    })
    .await
    .expect("join");
    assert!(ok, "{err}");
    let run: Value = serde_json::from_str(&out).expect("JSON out");
    assert_eq!(run["agent"], "branding");

    let approval = eventually("a pending approval listed by the CLI", Duration::from_secs(60), || {
        let (app, key) = (&app, key.clone());
        async move {
            let (ok, out, _) = flywheel(app, &key, &["approvals", "list"]);
            let page: Value = serde_json::from_str(&out).ok()?;
            (ok).then(|| page["data"].as_array().and_then(|d| d.first().cloned())).flatten()
        }
    })
    .await;
    let id = approval["id"].as_str().expect("id").to_owned();
    let viewer = app.key(&a, flywheel_contracts::Role::Viewer).await;
    let (ok, _, err) = flywheel(&app, &viewer, &["approvals", "approve", &id]);
    assert!(!ok && err.contains("403"), "a viewer's CLI is refused like its API calls: {err}");
    let (ok, out, err) = flywheel(&app, &key, &["approvals", "approve", &id, "--reason", "ship it"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"approved\""), "{out}");
    let run_id = run["id"].as_str().expect("id").to_owned();
    eventually("the run to succeed", Duration::from_secs(60), || {
        let (app, key, run_id) = (&app, key.clone(), run_id.clone());
        async move {
            let (_, out, _) = flywheel(app, &key, &["runs", "show", &run_id]);
            let detail: Value = serde_json::from_str(&out).ok()?;
            (detail["run"]["status"] == "succeeded").then_some(())
        }
    })
    .await;
    let (ok, _, err) = flywheel(&app, "fwk_not_a_key", &["runs", "list"]);
    assert!(!ok && err.contains("401"), "{err}");
    let _ = std::fs::remove_file(input);
}

#[tokio::test]
async fn tenant_create_prints_the_owner_key_and_the_write_key_that_both_work() {
    let app = TestApp::spawn().await;
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("flywheel");
    let out = Command::new(bin)
        .args(["tenant", "create", "--name", "Printed Co", "--slug", "printed-co"])
        .env("DATABASE_URL", app.test_db.app_url())
        .env("FLYWHEEL_OWNER_DATABASE_URL", flywheel_tests::owner_url(&app.test_db.name))
        .output()
        .expect("run flywheel tenant create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let write_key = created["write_key"].as_str().expect("a write key").to_owned();
    assert!(write_key.starts_with("fwp_") && write_key.len() == 36, "{write_key}");
    let owner = created["api_key"].as_str().expect("an owner key");
    let (status, tenant) = app.call(reqwest::Method::GET, "/v1/tenant", Some(owner), None).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(tenant["write_key"], write_key.as_str());
    let sent = app
        .client
        .post(app.url(&format!("/v1/collect?key={write_key}")))
        .body(json!({"events": [{"type": "page_view", "source": "web"}]}).to_string())
        .send()
        .await
        .expect("collect");
    assert_eq!(sent.status(), reqwest::StatusCode::ACCEPTED);
}
