//! The actor runtime end to end with small agents built for the test: durable runs, approvals
//! (edit, reject-and-regenerate, roles, audit), restart intensity, tenant isolation of runs and
//! of actor messages, pause / resume / cancel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flywheel_actors::agent::{AgentDef, OnReject, Registry, Step, StepContext, StepError, StepFuture, StepKind};
use flywheel_contracts::Role;
use flywheel_contracts::api::approval::ApprovalKind;
use flywheel_contracts::api::persona::PersonaCreate;
use flywheel_contracts::api::run::AgentName;
use flywheel_contracts::hot::RunHot;
use flywheel_storage::TenantTx;
use flywheel_tests::{TestApp, TestTenant, eventually, test_runtime_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Outputs its name and the steps it could see before it.
struct Echo(&'static str);

impl Step for Echo {
    fn name(&self) -> &'static str {
        self.0
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move { Ok(json!({"step": self.0, "saw": ctx.outputs.keys().cloned().collect::<Vec<_>>()})) })
    }
}

/// Panics while it has failures left.
struct Flaky(&'static str, AtomicU32);

impl Step for Flaky {
    fn name(&self) -> &'static str {
        self.0
    }
    fn run<'a>(&'a self, _: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            if self.1.load(Ordering::SeqCst) > 0 {
                self.1.fetch_sub(1, Ordering::SeqCst);
                panic!("flaky step blew up");
            }
            Ok(json!({"ok": true}))
        })
    }
}

/// Waits for the test to hand it a permit.
struct Gate(&'static str, Arc<Semaphore>);

impl Step for Gate {
    fn name(&self) -> &'static str {
        self.0
    }
    fn run<'a>(&'a self, _: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            let permit = self.1.acquire().await.map_err(|e| StepError::Fatal(e.to_string()))?;
            permit.forget();
            Ok(json!({"passed": self.0}))
        })
    }
}

/// Proposes a headline for approval; after a rejection it says what it changed.
struct Propose;

impl Step for Propose {
    fn name(&self) -> &'static str {
        "propose"
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            let rejection = ctx.output("review.rejection").and_then(|r| r["reason"].as_str()).map(str::to_owned);
            Ok(match rejection {
                None => json!({"headline": "First light miles", "revision": 1}),
                Some(reason) => json!({"headline": "Miles before the meeting", "revision": 2, "addresses": reason}),
            })
        })
    }
}

struct Review;

impl Step for Review {
    fn name(&self) -> &'static str {
        "review"
    }
    fn kind(&self) -> StepKind {
        StepKind::Approval { kind: ApprovalKind::BrandPositioning, on_reject: OnReject::LoopBackTo("propose") }
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(
            async move { ctx.output("propose").cloned().ok_or_else(|| StepError::Fatal("nothing proposed".into())) },
        )
    }
    fn artifact_schema(&self) -> Option<Value> {
        Some(
            json!({"type": "object", "required": ["headline"], "properties": {"headline": {"type": "string", "minLength": 1}}}),
        )
    }
}

/// Persists the approved headline as a persona (a domain write inside the checkpoint).
struct Persist;

impl Step for Persist {
    fn name(&self) -> &'static str {
        "persist"
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move { Ok(ctx.output("review").cloned().unwrap_or(Value::Null)) })
    }
    fn apply<'a>(&'a self, tx: &'a mut TenantTx, _: &'a StepContext, output: &'a Value) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = output["headline"].as_str().unwrap_or("unnamed").to_owned();
            flywheel_storage::personas::create(tx, &PersonaCreate { name, description: None, attributes: None })
                .await?;
            Ok(())
        })
    }
}

fn agent(name: AgentName, steps: Vec<Arc<dyn Step>>) -> AgentDef {
    AgentDef { name, input_check: None, steps }
}

struct Agents {
    registry: Registry,
    gate: Arc<Semaphore>,
}

fn agents() -> Agents {
    let gate = Arc::new(Semaphore::new(0));
    let registry = Registry::default()
        .with(agent(AgentName::Branding, vec![Arc::new(Echo("one")), Arc::new(Echo("two")), Arc::new(Echo("three"))]))
        .with(agent(AgentName::Content, vec![Arc::new(Echo("before")), Arc::new(Flaky("flaky", AtomicU32::new(2)))]))
        .with(agent(AgentName::Seo, vec![Arc::new(Flaky("doomed", AtomicU32::new(u32::MAX)))]))
        .with(agent(AgentName::Analytics, vec![Arc::new(Propose), Arc::new(Review), Arc::new(Persist)]))
        .with(agent(
            AgentName::Email,
            vec![
                Arc::new(Gate("g1", gate.clone())),
                Arc::new(Gate("g2", gate.clone())),
                Arc::new(Gate("g3", gate.clone())),
            ],
        ));
    Agents { registry, gate }
}

async fn spawn() -> (TestApp, Arc<Semaphore>) {
    let a = agents();
    let app = TestApp::spawn_full(Default::default(), a.registry, test_runtime_config(), None).await;
    (app, a.gate)
}

async fn start(app: &TestApp, t: &TestTenant, agent: &str) -> String {
    let (status, run) = app
        .call(Method::POST, &format!("/v1/agents/{agent}/runs"), Some(&t.owner_key), Some(json!({"input": {}})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["status"], "queued");
    run["id"].as_str().expect("id").to_owned()
}

async fn wait_status(app: &TestApp, t: &TestTenant, run: &str, want: &str) -> Value {
    eventually(&format!("run {run} to be {want}"), Duration::from_secs(20), || async {
        let (_, detail) = app.call(Method::GET, &format!("/v1/runs/{run}"), Some(&t.owner_key), None).await;
        (detail["run"]["status"] == want).then_some(detail)
    })
    .await
}

fn step_names(detail: &Value) -> Vec<String> {
    detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| format!("{}:{}", s["name"].as_str().unwrap_or(""), s["status"].as_str().unwrap_or("")))
        .collect()
}

#[tokio::test]
async fn a_run_commits_each_step_once_in_order_and_mirrors_its_state() {
    let (app, _) = spawn().await;
    let a = app.tenant("runner").await;
    let run = start(&app, &a, "branding").await;
    let detail = wait_status(&app, &a, &run, "succeeded").await;
    assert_eq!(step_names(&detail), ["one:succeeded", "two:succeeded", "three:succeeded"]);
    assert_eq!(
        detail["steps"][2]["output"]["saw"],
        json!(["one", "two"]),
        "each step sees the committed outputs before it"
    );
    assert_eq!(detail["run"]["cursor"], 3);
    assert!(detail["run"]["finished_at"].is_string());
    let hot = app.redis.tenant(a.id).get(&["run", &run]).await.expect("redis").expect("mirrored");
    let hot = RunHot::decode(&hot).expect("current format");
    assert_eq!((hot.status.as_str(), hot.cursor), ("succeeded", 3));
    let (_, list) = app.call(Method::GET, "/v1/runs?agent=branding&status=succeeded", Some(&a.owner_key), None).await;
    assert_eq!(list["data"][0]["id"], json!(run));
}

#[tokio::test]
async fn an_approval_parks_the_run_and_an_edit_is_what_gets_persisted() {
    let (app, _) = spawn().await;
    let a = app.tenant("approver").await;
    let run = start(&app, &a, "analytics").await;
    let detail = wait_status(&app, &a, &run, "awaiting_approval").await;
    assert_eq!(step_names(&detail), ["propose:succeeded"]);
    let (_, pending) = app.call(Method::GET, "/v1/approvals?status=pending", Some(&a.owner_key), None).await;
    let approval = pending["data"][0].clone();
    assert_eq!(approval["kind"], "brand_positioning");
    assert_eq!(approval["artifact"]["headline"], "First light miles");
    let path = format!("/v1/approvals/{}/decision", approval["id"].as_str().expect("id"));

    let viewer = app.key(&a, Role::Viewer).await;
    let marketer = app.key(&a, Role::Marketer).await;
    let approver = app.key(&a, Role::Approver).await;
    let approve = json!({"decision": "approve"});
    let (status, _) = app.call(Method::POST, &path, Some(&viewer), Some(approve.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.call(Method::POST, &path, Some(&marketer), Some(approve.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "marketers are not among the allowed roles");
    let (status, _) = app.call(Method::POST, &path, Some(&approver), Some(json!({"decision": "force"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only owners force");
    // An edit is validated against the step's artifact schema.
    let (status, err) = app
        .call(Method::POST, &path, Some(&approver), Some(json!({"decision": "edit", "artifact": {"headline": 5}})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "artifact.headline");
    let (status, err) = app
        .call(
            Method::POST,
            &path,
            Some(&approver),
            Some(json!({"decision": "approve", "artifact": {"headline": "sneaky"}})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("artifact")),
        "an artifact rides only with an edit"
    );
    let (status, err) = app.call(Method::POST, &path, Some(&approver), Some(json!({"decision": "edit"}))).await;
    assert_eq!((status, err["error"]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("artifact")));

    let edit = json!({"decision": "edit", "artifact": {"headline": "Miles at first light"}, "reason": "warmer"});
    let (status, decided) = app.call(Method::POST, &path, Some(&approver), Some(edit)).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "edited");
    let detail = wait_status(&app, &a, &run, "succeeded").await;
    assert_eq!(step_names(&detail), ["propose:succeeded", "review:succeeded", "persist:succeeded"]);
    let (_, personas) = app.call(Method::GET, "/v1/personas", Some(&a.owner_key), None).await;
    assert_eq!(personas["data"][0]["name"], "Miles at first light", "the edit, not the proposal, was persisted");

    let (status, err) = app.call(Method::POST, &path, Some(&approver), Some(approve)).await;
    assert_eq!((status, err["error"]["code"].clone()), (StatusCode::CONFLICT, json!("conflict")), "decided once");
    let mut tx = app.db().begin(a.id).await.expect("begin");
    let audit = flywheel_storage::audit::recent(&mut tx, 20).await.expect("audit");
    let entry = audit.iter().find(|e| e.action == "approval.edit").expect("the decision is audited");
    assert_eq!(entry.actor_kind, "api_key");
    assert_eq!(entry.before.as_ref().map(|b| b["status"].clone()), Some(json!("pending")));
    assert_eq!(
        entry.after.as_ref().map(|b| b["decided_artifact"]["headline"].clone()),
        Some(json!("Miles at first light"))
    );
}

#[tokio::test]
async fn a_rejection_loops_back_and_regenerates_and_a_policy_can_approve() {
    let (app, _) = spawn().await;
    let a = app.tenant("rejecter").await;
    let run = start(&app, &a, "analytics").await;
    wait_status(&app, &a, &run, "awaiting_approval").await;
    let (_, pending) = app.call(Method::GET, "/v1/approvals?status=pending", Some(&a.owner_key), None).await;
    let first = pending["data"][0]["id"].as_str().expect("id").to_owned();
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/v1/approvals/{first}/decision"),
            Some(&a.owner_key),
            Some(json!({"decision": "reject", "reason": "too poetic"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let second = eventually("a regenerated proposal", Duration::from_secs(20), || async {
        let (_, pending) = app.call(Method::GET, "/v1/approvals?status=pending", Some(&a.owner_key), None).await;
        pending["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_ne!(second["id"].as_str(), Some(first.as_str()));
    assert_eq!(second["artifact"]["revision"], 2);
    assert_eq!(second["artifact"]["addresses"], "too poetic");

    // A policy that auto-approves the kind lets the next run through without a human. Only
    // owners set policies; a rule the runtime does not understand is refused.
    let marketer = app.key(&a, Role::Marketer).await;
    let path = "/v1/approval_policies/brand_positioning";
    let (status, _) = app.call(Method::PUT, path, Some(&marketer), Some(json!({"rule": {"auto_approve": true}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.call(Method::PUT, path, Some(&marketer), Some(json!({"rule": {}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the role is checked before the body");
    let (status, err) = app.call(Method::PUT, path, Some(&a.owner_key), Some(json!({"rule": {}}))).await;
    assert_eq!((status, err["error"]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("rule")));
    let (status, err) =
        app.call(Method::PUT, path, Some(&a.owner_key), Some(json!({"rule": {"approve_everything": true}}))).await;
    assert_eq!(
        (status, err["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("rule.approve_everything"))
    );
    let (status, _) = app.call(Method::GET, path, Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no policy yet");
    let (status, policy) =
        app.call(Method::PUT, path, Some(&a.owner_key), Some(json!({"rule": {"auto_approve": true}}))).await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    let (_, shown) = app.call(Method::GET, path, Some(&marketer), None).await;
    assert_eq!((shown["rule"].clone(), shown["enabled"].clone()), (json!({"auto_approve": true}), json!(true)));
    let auto = start(&app, &a, "analytics").await;
    let detail = wait_status(&app, &a, &auto, "succeeded").await;
    assert_eq!(step_names(&detail), ["propose:succeeded", "review:succeeded", "persist:succeeded"]);
    let mut tx = app.db().begin(a.id).await.expect("begin");
    let audit = flywheel_storage::audit::recent(&mut tx, 50).await.expect("audit");
    assert!(audit.iter().any(|e| e.action == "approval_policy.set"), "policy changes are audited");
    assert!(audit.iter().any(|e| e.action == "approval.auto"));
}

#[tokio::test]
async fn a_panicking_worker_is_restarted_and_past_the_intensity_the_run_fails_alone() {
    let (app, _) = spawn().await;
    let a = app.tenant("panics").await;
    let b = app.tenant("bystander").await;
    let flaky = start(&app, &a, "content").await;
    let doomed = start(&app, &a, "seo").await;
    let other = start(&app, &b, "branding").await;
    let detail = wait_status(&app, &a, &flaky, "succeeded").await;
    assert_eq!(step_names(&detail), ["before:succeeded", "flaky:succeeded"]);
    assert_eq!(detail["steps"][1]["attempt"], 3, "two panics, then success on the third attempt");
    let failed = wait_status(&app, &a, &doomed, "failed").await;
    let error = failed["run"]["error"].as_str().expect("error");
    assert!(error.contains("doomed") && error.contains("panicked"), "{error}");
    assert!(step_names(&failed).contains(&"doomed:failed".to_owned()));
    wait_status(&app, &b, &other, "succeeded").await;
    // The tenant's runtime is alive and takes new work.
    let again = start(&app, &a, "branding").await;
    wait_status(&app, &a, &again, "succeeded").await;
}

#[tokio::test]
async fn runs_and_approvals_are_scoped_to_their_tenant() {
    let (app, _) = spawn().await;
    let a = app.tenant("runs-a").await;
    let b = app.tenant("runs-b").await;
    let run = start(&app, &a, "analytics").await;
    wait_status(&app, &a, &run, "awaiting_approval").await;
    let (_, pending) = app.call(Method::GET, "/v1/approvals?status=pending", Some(&a.owner_key), None).await;
    let approval = pending["data"][0]["id"].as_str().expect("id").to_owned();
    let random = uuid::Uuid::now_v7().to_string();
    for (method, theirs, unknown, body) in [
        (Method::GET, format!("/v1/runs/{run}"), format!("/v1/runs/{random}"), None),
        (Method::POST, format!("/v1/runs/{run}/cancel"), format!("/v1/runs/{random}/cancel"), None),
        (Method::GET, format!("/v1/approvals/{approval}"), format!("/v1/approvals/{random}"), None),
        (
            Method::POST,
            format!("/v1/approvals/{approval}/decision"),
            format!("/v1/approvals/{random}/decision"),
            Some(json!({"decision": "approve"})),
        ),
    ] {
        let (s1, b1) = app.call(method.clone(), &theirs, Some(&b.owner_key), body.clone()).await;
        let (s2, b2) = app.call(method.clone(), &unknown, Some(&b.owner_key), body).await;
        assert_eq!(s1, StatusCode::NOT_FOUND, "{method} {theirs}");
        assert_eq!((s1, b1), (s2, b2));
    }
    for path in ["/v1/runs", "/v1/approvals"] {
        let (_, page) = app.call(Method::GET, path, Some(&b.owner_key), None).await;
        assert_eq!(page["data"], json!([]), "{path}");
    }
    let viewer = app.key(&a, Role::Viewer).await;
    let (status, _) =
        app.call(Method::POST, "/v1/agents/branding/runs", Some(&viewer), Some(json!({"input": {}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        app.call(Method::POST, "/v1/agents/nonsense/runs", Some(&a.owner_key), Some(json!({"input": {}}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) =
        app.call(Method::POST, "/v1/agents/ads/runs", Some(&a.owner_key), Some(json!({"input": {}}))).await;
    assert_eq!(
        (status, err["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("agent")),
        "not on this node"
    );
    // A is untouched.
    let (_, still) = app.call(Method::GET, &format!("/v1/approvals/{approval}"), Some(&a.owner_key), None).await;
    assert_eq!(still["status"], "pending");
}

#[tokio::test]
async fn a_tenant_supervisor_rejects_a_message_for_another_tenant() {
    let agents = agents();
    let config =
        flywheel_supervisor::RuntimeConfig { sweep_interval: Duration::from_secs(3600), ..test_runtime_config() };
    let app = TestApp::spawn_full(Default::default(), agents.registry, config, None).await;
    let a = app.tenant("iso-a").await;
    let b = app.tenant("iso-b").await;
    // A run of B's, queued in the database but never dispatched to B.
    let mut tx = app.db().begin(b.id).await.expect("begin");
    let run =
        flywheel_storage::runs::create(&mut tx, AgentName::Branding, &Default::default(), "test").await.expect("run");
    tx.commit().await.expect("commit");
    app.runtime.misaddress(a.id, b.id, AgentName::Branding, run.id).expect("send");
    let tree = eventually("A's supervisor to count the rejection", Duration::from_secs(10), || async {
        app.runtime.tree(a.id).await.ok().flatten().filter(|t| t.rejected_messages == 1)
    })
    .await;
    assert!(tree.agents.is_empty(), "no orchestrator was spawned for it: {tree:?}");
    let (_, detail) = app.call(Method::GET, &format!("/v1/runs/{}", run.id), Some(&b.owner_key), None).await;
    assert_eq!(detail["run"]["status"], "queued", "B's run was not executed by A's supervisor");
}

#[tokio::test]
async fn pause_resume_and_cancel() {
    let (app, gate) = spawn().await;
    let a = app.tenant("pauser").await;
    let run = start(&app, &a, "email").await;
    wait_status(&app, &a, &run, "running").await;
    let (status, paused) = app.call(Method::POST, &format!("/v1/runs/{run}/pause"), Some(&a.owner_key), None).await;
    assert_eq!((status, paused["status"].clone()), (StatusCode::OK, json!("paused")));
    // Paused and resumed while its step works: the step's work still counts, and the run
    // carries on without waiting for a sweep.
    let (status, _) = app.call(Method::POST, &format!("/v1/runs/{run}/resume"), Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::POST, &format!("/v1/runs/{run}/pause"), Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::OK);
    gate.add_permits(1);
    // The step in flight is committed; nothing runs after it while paused.
    let detail = eventually("the in-flight step to commit", Duration::from_secs(20), || async {
        let (_, d) = app.call(Method::GET, &format!("/v1/runs/{run}"), Some(&a.owner_key), None).await;
        (d["steps"].as_array().map(Vec::len) == Some(1)).then_some(d)
    })
    .await;
    assert_eq!(detail["run"]["status"], "paused");
    let (status, _) = app.call(Method::POST, &format!("/v1/runs/{run}/pause"), Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "already paused");
    let (status, _) = app.call(Method::POST, &format!("/v1/runs/{run}/resume"), Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::OK);
    gate.add_permits(2);
    let done = wait_status(&app, &a, &run, "succeeded").await;
    assert_eq!(step_names(&done), ["g1:succeeded", "g2:succeeded", "g3:succeeded"]);

    let doomed = start(&app, &a, "email").await;
    wait_status(&app, &a, &doomed, "running").await;
    let (status, cancelled) =
        app.call(Method::POST, &format!("/v1/runs/{doomed}/cancel"), Some(&a.owner_key), None).await;
    assert_eq!((status, cancelled["status"].clone()), (StatusCode::OK, json!("cancelled")));
    gate.add_permits(1);
    let (status, _) = app.call(Method::POST, &format!("/v1/runs/{doomed}/resume"), Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a cancelled run stays cancelled");
    // Once the worker holding the permit has finished, its step must not have been committed.
    eventually("the cancelled run's worker to finish", Duration::from_secs(20), || async {
        let tree = app.runtime.tree(a.id).await.ok().flatten()?;
        tree.agents.iter().all(|(_, runs)| runs.is_empty()).then_some(())
    })
    .await;
    assert_eq!(gate.available_permits(), 0, "the worker took the permit");
    let detail = wait_status(&app, &a, &doomed, "cancelled").await;
    assert_eq!(detail["steps"], json!([]), "the step in flight was discarded");
}

#[tokio::test]
async fn an_idle_tenant_supervisor_is_passivated_and_reactivated_transparently() {
    let agents = agents();
    let config =
        flywheel_supervisor::RuntimeConfig { idle_timeout: Duration::from_millis(300), ..test_runtime_config() };
    let app = TestApp::spawn_full(Default::default(), agents.registry, config, None).await;
    let a = app.tenant("sleepy").await;
    let first = start(&app, &a, "branding").await;
    wait_status(&app, &a, &first, "succeeded").await;
    eventually("the idle tenant to be passivated", Duration::from_secs(20), || async {
        (app.runtime.active_tenants().await.ok()? == 0).then_some(())
    })
    .await;
    assert_eq!(app.runtime.tree(a.id).await.expect("tree"), None, "no live tree for a passivated tenant");
    // The next message reactivates it; nothing was lost.
    let second = start(&app, &a, "branding").await;
    wait_status(&app, &a, &second, "succeeded").await;
    let (_, runs) = app.call(Method::GET, "/v1/runs?status=succeeded", Some(&a.owner_key), None).await;
    assert_eq!(runs["data"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn an_expired_approval_can_only_be_forced_by_an_owner() {
    let agents = agents();
    let config =
        flywheel_supervisor::RuntimeConfig { approval_ttl: Some(Duration::from_millis(1)), ..test_runtime_config() };
    let app = TestApp::spawn_full(Default::default(), agents.registry, config, None).await;
    let a = app.tenant("expiry").await;
    let run = start(&app, &a, "analytics").await;
    wait_status(&app, &a, &run, "awaiting_approval").await;
    let (_, pending) = app.call(Method::GET, "/v1/approvals?status=pending", Some(&a.owner_key), None).await;
    assert_eq!(pending["data"], json!([]), "an expired approval is not pending any more");
    let (_, expired) = app.call(Method::GET, "/v1/approvals?status=expired", Some(&a.owner_key), None).await;
    let pending = expired;
    let approval = pending["data"][0].clone();
    assert!(approval["expires_at"].is_string(), "{approval}");
    let path = format!("/v1/approvals/{}/decision", approval["id"].as_str().expect("id"));
    let approver = app.key(&a, Role::Approver).await;
    let (status, err) = app.call(Method::POST, &path, Some(&approver), Some(json!({"decision": "approve"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("expired")));
    let (status, _) = app.call(Method::POST, &path, Some(&approver), Some(json!({"decision": "force"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only owners force");
    let (status, decided) = app
        .call(Method::POST, &path, Some(&a.owner_key), Some(json!({"decision": "force", "reason": "launch day"})))
        .await;
    assert_eq!((status, decided["status"].clone()), (StatusCode::OK, json!("forced")));
    wait_status(&app, &a, &run, "succeeded").await;
}

#[tokio::test]
async fn a_decision_on_a_cancelled_run_does_not_bring_it_back() {
    let (app, _) = spawn().await;
    let a = app.tenant("late-decision").await;
    let run = start(&app, &a, "analytics").await;
    wait_status(&app, &a, &run, "awaiting_approval").await;
    let (_, pending) = app.call(Method::GET, "/v1/approvals?status=pending", Some(&a.owner_key), None).await;
    let id = pending["data"][0]["id"].as_str().expect("id").to_owned();
    let (status, _) = app.call(Method::POST, &format!("/v1/runs/{run}/cancel"), Some(&a.owner_key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = app
        .call(
            Method::POST,
            &format!("/v1/approvals/{id}/decision"),
            Some(&a.owner_key),
            Some(json!({"decision": "approve"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let (_, detail) = app.call(Method::GET, &format!("/v1/runs/{run}"), Some(&a.owner_key), None).await;
    assert_eq!(detail["run"]["status"], "cancelled");
    let (_, still) = app.call(Method::GET, &format!("/v1/approvals/{id}"), Some(&a.owner_key), None).await;
    assert_eq!(still["status"], "expired", "cancelling withdrew the approval");
    assert_eq!(still["reason"], "the run was cancelled");
    let (_, pending) = app.call(Method::GET, "/v1/approvals?status=pending", Some(&a.owner_key), None).await;
    assert_eq!(pending["data"], json!([]), "nobody is asked to decide it any more");
}
