//! Crash safety with real processes: a node running a Branding run is killed with SIGKILL after
//! some steps are committed; a new node process resumes the run from its checkpoint and
//! finishes it. Every step is committed once and no effect happens twice. The node talks to an
//! OpenAI-compatible server on 127.0.0.1 (this test's) so the test decides when a step hangs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use flywheel_actors::model::{LanguageModel, OfflineModel, branding};
use flywheel_contracts::TenantId;
pub(crate) use flywheel_tests::free_port;
use flywheel_tests::{TestDb, TestNamespace, eventually, owner_url, redis_url};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

/// Canned answers per task, written once by the offline model for a fixed company, and the
/// requests seen per task.
pub(crate) struct FakeLlm {
    answers: Vec<(&'static str, Value)>,
    seen: Mutex<Vec<String>>,
    /// While closed (`false`), `branding.positioning` requests wait (the node is killed
    /// meanwhile); opening it lets the waiting requests and every later one through.
    positioning: watch::Sender<bool>,
    /// Added to every answer (to keep runs in flight across a failover).
    delay: Duration,
}

impl FakeLlm {
    /// Holds every `branding.positioning` request until [`FakeLlm::release_positioning`].
    pub(crate) fn hold_positioning(&self) {
        self.positioning.send_replace(false);
    }

    pub(crate) fn release_positioning(&self) {
        self.positioning.send_replace(true);
    }
}

async fn canned() -> Vec<(&'static str, Value)> {
    let offline = OfflineModel::new();
    let tenant = TenantId::new();
    let company = json!({"name": "Crashproof Coffee", "industry": "specialty coffee", "goals": ["sell 200 subscriptions"],
                         "competitors": [{"name": "Bean Giant", "text": "Cheap coffee, delivered fast."}],
                         "seed_materials": ["We roast small batches every Monday and ship them the same day."]});
    let ask = |spec: &'static branding::TaskSpec, input: Value| {
        let offline = &offline;
        async move { offline.complete(&spec.request(tenant, input)).await.expect("offline answer").output }
    };
    let research = ask(&branding::RESEARCH, json!({"company": company})).await;
    let positioning = ask(&branding::POSITIONING, json!({"company": company, "research": research})).await;
    let later = json!({"company": company, "research": research, "positioning": positioning});
    let tone = ask(&branding::TONE, later.clone()).await;
    let personas = ask(&branding::PERSONAS, later).await;
    vec![
        ("branding.research", research),
        ("branding.positioning", positioning),
        ("branding.tone", tone),
        ("branding.personas", personas),
    ]
}

async fn chat(State(fake): State<Arc<FakeLlm>>, Json(body): Json<Value>) -> Json<Value> {
    let text = body["messages"].to_string();
    let (task, answer) = fake
        .answers
        .iter()
        .find(|(task, _)| text.contains(&format!("Task: {task}")))
        .cloned()
        .unwrap_or(("unknown", json!({})));
    fake.seen.lock().await.push(task.to_owned());
    tokio::time::sleep(fake.delay).await;
    if task == "branding.positioning" {
        let mut gate = fake.positioning.subscribe();
        // The sender lives in `fake`, so the gate cannot close under us.
        let _ = gate.wait_for(|open| *open).await;
    }
    Json(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 100, "total_tokens": 200}
    }))
}

/// An OpenAI-compatible server on 127.0.0.1 answering every Branding task for the company of
/// [`run_input`] after `delay`; answers its base URL.
pub(crate) async fn slow_llm(delay: Duration) -> String {
    fake_llm(delay).await.0
}

/// [`slow_llm`], with the handle that holds and releases its `branding.positioning` answers
/// (released at first).
pub(crate) async fn fake_llm(delay: Duration) -> (String, Arc<FakeLlm>) {
    let fake = Arc::new(FakeLlm {
        answers: canned().await,
        seen: Mutex::new(Vec::new()),
        positioning: watch::Sender::new(true),
        delay,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route("/v1/chat/completions", post(chat)).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, fake)
}

/// The Branding run input the canned answers were written for.
pub(crate) fn run_input() -> Value {
    json!({"input": {"company_name": "Crashproof Coffee", "industry": "specialty coffee",
                     "goals": ["sell 200 subscriptions"], "seed_materials": ["Small batches, roasted Mondays."]}})
}

pub(crate) fn flywheel_binary() -> PathBuf {
    // target/debug/deps/e2e-… → target/debug/flywheel
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("flywheel");
    assert!(
        bin.exists(),
        "{} is missing: build it first (scripts/test does: cargo build --bin flywheel)",
        bin.display()
    );
    bin
}

pub(crate) struct Node(pub(crate) Child);

impl Node {
    /// Sends the process `signal` (`STOP`, `CONT`, `TERM`, …).
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(&pid).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(db: &TestDb, http: u16, llm: &str, namespace: &str) -> Node {
    let child = Command::new(flywheel_binary())
        .arg("node")
        .env("DATABASE_URL", db.app_url())
        .env("FLYWHEEL_OWNER_DATABASE_URL", owner_url(&db.name))
        .env("REDIS_URL", redis_url())
        .env("FLYWHEEL_REDIS_NAMESPACE", namespace)
        .env("FLYWHEEL_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("FLYWHEEL_LLM_PROVIDER", "openai")
        .env("FLYWHEEL_LLM_BASE_URL", llm)
        .env("FLYWHEEL_LLM_MAX_RETRIES", "0")
        .env("FLYWHEEL_RUN_SWEEP_SECS", "1")
        // The new process (a new node id) takes the killed node's leases once they expire.
        .env("FLYWHEEL_LEASE_TTL", "2s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a node process");
    Node(child)
}

pub(crate) async fn ready(client: &reqwest::Client, base: &str) {
    eventually("the node to be ready", Duration::from_secs(60), || async {
        let r = client.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

async fn get_run(client: &reqwest::Client, base: &str, key: &str, run: &str) -> Value {
    client
        .get(format!("{base}/v1/runs/{run}"))
        .bearer_auth(key)
        .send()
        .await
        .expect("get run")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_resumes_its_runs_from_the_last_checkpoint_in_a_new_process() {
    let db = TestDb::new().await;
    let tenant = db
        .db
        .create_tenant("Crashproof Coffee", &flywheel_contracts::Slug::parse("crashproof").expect("slug"), "test")
        .await
        .expect("tenant");
    let (llm, fake) = fake_llm(Duration::ZERO).await;
    fake.hold_positioning();

    let namespace = TestNamespace::new();
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let key = tenant.api_key.clone();

    // Node 1: the run commits `research`, then hangs in `synthesize`; SIGKILL.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = start_node(&db, port, &llm, namespace.as_str());
    ready(&client, &base).await;
    let input = run_input();
    let run: Value = client
        .post(format!("{base}/v1/agents/branding/runs"))
        .bearer_auth(&key)
        .json(&input)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let run_id = run["id"].as_str().expect("run id").to_owned();
    eventually("research committed and synthesize in flight", Duration::from_secs(60), || async {
        let detail = get_run(&client, &base, &key, &run_id).await;
        let committed = detail["steps"].as_array().map_or(0, Vec::len);
        let asked = fake.seen.lock().await.iter().any(|t| t == "branding.positioning");
        (committed == 1 && asked).then_some(())
    })
    .await;
    first.0.kill().expect("SIGKILL the node");
    first.0.wait().expect("reap");

    // Node 2: resumes from the checkpoint and parks at the approval.
    fake.release_positioning();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _second = start_node(&db, port, &llm, namespace.as_str());
    ready(&client, &base).await;
    let approval = eventually("the resumed run to reach its approval", Duration::from_secs(60), || async {
        let page: Value = client
            .get(format!("{base}/v1/approvals?status=pending"))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        page["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    let decided = client
        .post(format!("{base}/v1/approvals/{}/decision", approval["id"].as_str().expect("id")))
        .bearer_auth(&key)
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .expect("decide");
    assert!(decided.status().is_success());
    let detail = eventually("the run to succeed", Duration::from_secs(60), || async {
        let d = get_run(&client, &base, &key, &run_id).await;
        (d["run"]["status"] == "succeeded").then_some(d)
    })
    .await;

    // Every step committed exactly once, in order; research was not redone after the crash.
    let names: Vec<&str> =
        detail["steps"].as_array().expect("steps").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["research", "synthesize", "propose", "approve", "persist", "embed"]);
    let seen = fake.seen.lock().await.clone();
    assert_eq!(seen.iter().filter(|t| *t == "branding.research").count(), 1, "{seen:?}");
    assert_eq!(
        seen.iter().filter(|t| *t == "branding.positioning").count(),
        2,
        "one lost with the killed node, one after: {seen:?}"
    );
    // Effects once: one brand core, each persona once, each memory item once.
    let mut tx = db.db.begin(tenant.tenant_id).await.expect("begin");
    let (brands, _) = flywheel_storage::brand_core::list(&mut tx, Default::default()).await.expect("brands");
    assert_eq!(brands.len(), 1);
    let (people, _) = flywheel_storage::personas::list(&mut tx, Default::default()).await.expect("personas");
    let mut names: Vec<String> = people.iter().map(|p| p.name.to_lowercase()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), people.len());
    // The run's one external effect (writing brand memory) was recorded once and performed.
    let effects = eventually("the memory effect to be performed", Duration::from_secs(30), || {
        let db = db.db.clone();
        let tenant = tenant.tenant_id;
        async move {
            let mut tx = db.begin(tenant).await.ok()?;
            let counts = flywheel_storage::outbox::counts(&mut tx).await.ok()?;
            (counts.iter().any(|(s, _)| s == "done")).then_some(counts)
        }
    })
    .await;
    assert_eq!(effects, vec![("done".to_owned(), 1)]);
    tx.commit().await.expect("commit");
}
