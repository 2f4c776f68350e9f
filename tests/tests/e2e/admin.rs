//! The admin gRPC control plane in-process on loopback, over a one-node cluster: every RPC does
//! its job, a missing or wrong admin token is UNAUTHENTICATED (reflection included), bad
//! arguments are INVALID_ARGUMENT naming the field, unknown ids are NOT_FOUND, and the
//! `flywheel admin` command line prints tables and JSON and fails with the status.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use flywheel_actors::agent::{AgentDef, OnReject, Registry, Step, StepContext, StepError, StepFuture, StepKind};
use flywheel_cluster::admin::AdminState;
use flywheel_contracts::admin::v1 as pb;
use flywheel_contracts::admin::v1::admin_client::AdminClient;
use flywheel_contracts::api::approval::ApprovalKind;
use flywheel_contracts::api::run::AgentName;
use flywheel_tests::{TestApp, eventually, test_runtime_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

const TOKEN: &str = "admin-test-token-3f9a";

/// Waits for the test to hand it a permit: a run that stays running until told.
struct Gate(Arc<Semaphore>);

impl Step for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn run<'a>(&'a self, _: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            let permit = self.0.acquire().await.map_err(|e| StepError::Fatal(e.to_string()))?;
            permit.forget();
            Ok(json!({"passed": true}))
        })
    }
}

struct Propose;

impl Step for Propose {
    fn name(&self) -> &'static str {
        "propose"
    }
    fn run<'a>(&'a self, _: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move { Ok(json!({"headline": "Admin-approved"})) })
    }
}

struct Review;

impl Step for Review {
    fn name(&self) -> &'static str {
        "review"
    }
    fn kind(&self) -> StepKind {
        StepKind::Approval { kind: ApprovalKind::BrandPositioning, on_reject: OnReject::Fail }
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(
            async move { ctx.output("propose").cloned().ok_or_else(|| StepError::Fatal("nothing proposed".into())) },
        )
    }
}

/// A node whose `email` runs wait at a gate and whose `analytics` runs park at an approval.
async fn spawn() -> (TestApp, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let agent = |name, steps| AgentDef { name, input_check: None, steps };
    let registry = Registry::default()
        .with(agent(AgentName::Email, vec![Arc::new(Gate(gate.clone())) as Arc<dyn Step>]))
        .with(agent(AgentName::Analytics, vec![Arc::new(Propose), Arc::new(Review)]));
    (TestApp::spawn_full(Default::default(), registry, test_runtime_config(), None).await, gate)
}

/// The admin plane of `app`'s node on a free loopback port; stopped when dropped.
struct AdminServer {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn admin_server(app: &TestApp) -> AdminServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = format!("http://{}", listener.local_addr().expect("local addr"));
    let state = AdminState { cluster: app.cluster.clone(), db: app.db().clone(), token: TOKEN.to_owned() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flywheel_cluster::admin::serve(listener, state, async {
        let _ = stopped.await;
    }));
    AdminServer { addr, stop: Some(stop) }
}

/// Sends `authorization: Bearer <token>` when it has a token.
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

async fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(addr.to_owned()).expect("address").connect().await.expect("connect to the admin plane")
}

fn bearer(token: Option<&str>) -> Bearer {
    Bearer(token.map(|t| format!("Bearer {t}").parse().expect("ASCII token")))
}

type Client = AdminClient<InterceptedService<Channel, Bearer>>;

async fn client(addr: &str, token: Option<&str>) -> Client {
    AdminClient::with_interceptor(channel(addr).await, bearer(token))
}

/// The status a call was refused with.
fn refused<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>) -> (Code, String) {
    let status = result.expect_err("the call is refused");
    (status.code(), status.message().to_owned())
}

/// What the edge answers the tenant's own key.
async fn tenant_key_call(app: &TestApp, key: &str) -> StatusCode {
    app.client.get(app.url("/v1/tenant")).bearer_auth(key).send().await.expect("reach the edge").status()
}

async fn run_status(admin: &mut Client, tenant: &str, run: &str) -> Option<String> {
    let request = pb::ListRunsRequest { tenant_id: tenant.to_owned(), ..Default::default() };
    let runs = admin.list_runs(request).await.ok()?.into_inner().runs;
    runs.into_iter().find(|r| r.id == run).map(|r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_rpc_does_its_job() {
    let (app, gate) = spawn().await;
    let server = admin_server(&app).await;
    let mut admin = client(&server.addr, Some(TOKEN)).await;
    let node = app.cluster.node_id().to_owned();

    // Health.
    let health = admin.health(pb::HealthRequest {}).await.expect("health").into_inner();
    assert_eq!((health.status.as_str(), health.database.as_str()), ("serving", "ok"));
    assert_eq!(health.node_id, node);
    assert!(!health.version.is_empty());

    // ListNodes and ListShards: a lone node holds every shard.
    let me = eventually("the node to hold every shard", Duration::from_secs(15), || {
        let (mut admin, node) = (admin.clone(), node.clone());
        async move {
            let nodes = admin.list_nodes(pb::ListNodesRequest {}).await.ok()?.into_inner().nodes;
            nodes.into_iter().find(|n| n.node_id == node && n.shards == 256)
        }
    })
    .await;
    assert!(me.live && !me.draining && me.left_at.is_none(), "{me:?}");
    assert!(me.heartbeat_at.ends_with('Z'), "RFC 3339 in UTC: {}", me.heartbeat_at);
    let shards = admin.list_shards(pb::ListShardsRequest::default()).await.expect("shards").into_inner().shards;
    assert_eq!(shards.len(), 256);
    assert!(shards.iter().all(|s| s.owner_node.as_deref() == Some(&node) && !s.expired && s.epoch >= 1));
    let mine = admin.list_shards(pb::ListShardsRequest { owner_node: node.clone() }).await.expect("shards");
    assert_eq!(mine.into_inner().shards.len(), 256);
    let none = admin.list_shards(pb::ListShardsRequest { owner_node: "n-elsewhere".into() }).await.expect("shards");
    assert!(none.into_inner().shards.is_empty());

    // CreateTenant, then ListTenants page by page.
    let mut created = Vec::new();
    for slug in ["acme", "bolt", "cask"] {
        let request = pb::CreateTenantRequest { name: format!("Tenant {slug}"), slug: slug.to_owned() };
        let t = admin.create_tenant(request).await.expect("create tenant").into_inner();
        assert_eq!((t.slug.as_str(), t.name.as_str()), (slug, format!("Tenant {slug}").as_str()));
        assert!(t.api_key.starts_with(&t.api_key_prefix) && !t.write_key.is_empty(), "{t:?}");
        created.push(t);
    }
    let taken = admin.create_tenant(pb::CreateTenantRequest { name: "Again".into(), slug: "acme".into() }).await;
    assert_eq!(refused(taken), (Code::AlreadyExists, "slug: already taken".to_owned()));
    let (mut listed, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let request = pb::ListTenantsRequest { page_size: 2, page_token: token };
        let page = admin.list_tenants(request).await.expect("list tenants").into_inner();
        assert!(page.tenants.len() <= 2);
        listed.extend(page.tenants);
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 2, "three tenants in pages of two");
    let ids: HashSet<&str> = listed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, created.iter().map(|t| t.tenant_id.as_str()).collect::<HashSet<_>>());
    assert!(listed.iter().all(|t| t.status == "active"));

    // SuspendTenant / ResumeTenant: the tenant's own key is refused in between.
    let acme = created[0].clone();
    assert_eq!(tenant_key_call(&app, &acme.api_key).await, StatusCode::OK);
    let suspended = admin.suspend_tenant(pb::SuspendTenantRequest { tenant_id: acme.tenant_id.clone() }).await;
    assert_eq!(suspended.expect("suspend").into_inner().status, "suspended");
    assert_eq!(tenant_key_call(&app, &acme.api_key).await, StatusCode::FORBIDDEN);
    let resumed = admin.resume_tenant(pb::ResumeTenantRequest { tenant_id: acme.tenant_id.clone() }).await;
    assert_eq!(resumed.expect("resume").into_inner().status, "active");
    assert_eq!(tenant_key_call(&app, &acme.api_key).await, StatusCode::OK);

    // A run that waits at its gate: ListRuns, GetTenantTree, PauseRun, ResumeRun, CancelRun.
    let (status, run) =
        app.call(Method::POST, "/v1/agents/email/runs", Some(&acme.api_key), Some(json!({"input": {}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run_id = run["id"].as_str().expect("run id").to_owned();
    let tenant = acme.tenant_id.clone();
    eventually("the run to be running", Duration::from_secs(20), || {
        let (mut admin, tenant, run_id) = (admin.clone(), tenant.clone(), run_id.clone());
        async move { (run_status(&mut admin, &tenant, &run_id).await.as_deref() == Some("running")).then_some(()) }
    })
    .await;
    let tree = eventually("the run in the tenant's live tree", Duration::from_secs(20), || {
        let (mut admin, tenant, run_id) = (admin.clone(), tenant.clone(), run_id.clone());
        async move {
            let tree = admin.get_tenant_tree(pb::GetTenantTreeRequest { tenant_id: tenant }).await.ok()?.into_inner();
            tree.agents.iter().any(|a| a.agent == "email" && a.run_ids.contains(&run_id)).then_some(tree)
        }
    })
    .await;
    assert!(tree.active, "{tree:?}");
    assert_eq!(tree.owner_node.as_deref(), Some(node.as_str()));
    let other = admin.get_tenant_tree(pb::GetTenantTreeRequest { tenant_id: created[1].tenant_id.clone() }).await;
    assert!(!other.expect("tree").into_inner().active, "a tenant with no work has no live tree");

    let request = pb::ListRunsRequest { tenant_id: tenant.clone(), status: "running".into(), ..Default::default() };
    let runs = admin.list_runs(request).await.expect("list runs").into_inner();
    assert_eq!(runs.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [run_id.as_str()]);
    assert_eq!((runs.runs[0].agent.as_str(), runs.runs[0].input_json.as_str()), ("email", "{}"));
    assert!(runs.next_page_token.is_empty());
    let request = pb::ListRunsRequest { tenant_id: tenant.clone(), status: "succeeded".into(), ..Default::default() };
    assert!(admin.list_runs(request).await.expect("list runs").into_inner().runs.is_empty());
    let request =
        pb::ListRunsRequest { tenant_id: created[1].tenant_id.clone(), agent: "email".into(), ..Default::default() };
    assert!(admin.list_runs(request).await.expect("list runs").into_inner().runs.is_empty(), "per tenant");

    let ids = || (tenant.clone(), run_id.clone());
    let (tenant_id, run) = ids();
    let paused = admin.pause_run(pb::PauseRunRequest { tenant_id, run_id: run }).await.expect("pause");
    assert_eq!(paused.into_inner().status, "paused");
    let (tenant_id, run) = ids();
    let resumed = admin.resume_run(pb::ResumeRunRequest { tenant_id, run_id: run }).await.expect("resume");
    assert_eq!(resumed.into_inner().status, "queued");
    let (tenant_id, run) = ids();
    let cancelled = admin.cancel_run(pb::CancelRunRequest { tenant_id, run_id: run }).await.expect("cancel");
    let cancelled = cancelled.into_inner();
    assert_eq!(cancelled.status, "cancelled");
    assert!(cancelled.finished_at.is_some(), "{cancelled:?}");
    let (tenant_id, run) = ids();
    let again = admin.pause_run(pb::PauseRunRequest { tenant_id, run_id: run }).await;
    assert_eq!(refused(again), (Code::FailedPrecondition, "status: a cancelled run cannot become paused".to_owned()));
    gate.add_permits(1);
    assert_eq!(run_status(&mut admin, &tenant, &run_id).await.as_deref(), Some("cancelled"));

    // An approval: ListApprovals, DecideApproval, and the run finishes.
    let (status, run) =
        app.call(Method::POST, "/v1/agents/analytics/runs", Some(&acme.api_key), Some(json!({"input": {}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run_id = run["id"].as_str().expect("run id").to_owned();
    let approval = eventually("a pending approval", Duration::from_secs(20), || {
        let (mut admin, tenant) = (admin.clone(), tenant.clone());
        async move {
            let request =
                pb::ListApprovalsRequest { tenant_id: tenant, status: "pending".into(), ..Default::default() };
            admin.list_approvals(request).await.ok()?.into_inner().approvals.into_iter().next()
        }
    })
    .await;
    assert_eq!((approval.kind.as_str(), approval.run_id.as_deref()), ("brand_positioning", Some(run_id.as_str())));
    let artifact: Value = serde_json::from_str(&approval.artifact_json).expect("artifact JSON");
    assert_eq!(artifact["headline"], "Admin-approved");
    let decide = |decision: &str| pb::DecideApprovalRequest {
        tenant_id: tenant.clone(),
        approval_id: approval.id.clone(),
        decision: decision.to_owned(),
        reason: Some("checked by the operator".into()),
        artifact_json: None,
    };
    let decided = admin.decide_approval(decide("approve")).await.expect("decide").into_inner();
    assert_eq!(decided.status, "approved");
    assert_eq!(decided.decided_by.as_deref(), Some("operator:admin-grpc"));
    assert_eq!(decided.reason.as_deref(), Some("checked by the operator"));
    let twice = admin.decide_approval(decide("reject")).await;
    assert_eq!(refused(twice), (Code::FailedPrecondition, "decision: this approval is already approved".to_owned()));
    eventually("the approved run to succeed", Duration::from_secs(20), || {
        let (mut admin, tenant, run_id) = (admin.clone(), tenant.clone(), run_id.clone());
        async move { (run_status(&mut admin, &tenant, &run_id).await.as_deref() == Some("succeeded")).then_some(()) }
    })
    .await;
    let request =
        pb::ListApprovalsRequest { tenant_id: tenant.clone(), status: "pending".into(), ..Default::default() };
    assert!(admin.list_approvals(request).await.expect("list approvals").into_inner().approvals.is_empty());

    // DrainNode: the node is asked to hand its shards over.
    let unknown = admin.drain_node(pb::DrainNodeRequest { node_id: "n-nowhere".into() }).await;
    assert_eq!(refused(unknown), (Code::NotFound, "node n-nowhere not found".to_owned()));
    let drained = admin.drain_node(pb::DrainNodeRequest { node_id: node.clone() }).await.expect("drain");
    let drained = drained.into_inner().node.expect("the drained node");
    assert!(drained.draining && drained.node_id == node, "{drained:?}");
    // Handing the shards over is the lease loop's business (tests/e2e/cluster.rs); a lone node
    // has nobody to hand them to. The registry says it is draining.
    let nodes = admin.list_nodes(pb::ListNodesRequest {}).await.expect("nodes").into_inner().nodes;
    assert!(nodes.iter().any(|n| n.node_id == node && n.draining), "{nodes:?}");
}

#[tokio::test]
async fn a_missing_or_wrong_admin_token_is_unauthenticated_reflection_included() {
    let app = TestApp::spawn().await;
    let server = admin_server(&app).await;

    let mut anonymous = client(&server.addr, None).await;
    let (code, message) = refused(anonymous.health(pb::HealthRequest {}).await);
    assert_eq!(code, Code::Unauthenticated);
    assert!(message.contains("missing admin token"), "{message}");
    let mut wrong = client(&server.addr, Some("admin-test-token-3f9b")).await;
    assert_eq!(
        refused(wrong.health(pb::HealthRequest {}).await),
        (Code::Unauthenticated, "invalid admin token".into())
    );
    let create = pb::CreateTenantRequest { name: "Sneaky".into(), slug: "sneaky".into() };
    assert_eq!(refused(wrong.create_tenant(create).await).0, Code::Unauthenticated);
    let mut basic = AdminClient::with_interceptor(channel(&server.addr).await, move |mut r: Request<()>| {
        r.metadata_mut().insert("authorization", MetadataValue::from_static("Basic YWRtaW46YWRtaW4="));
        Ok(r)
    });
    assert_eq!(refused(basic.list_tenants(pb::ListTenantsRequest::default()).await).0, Code::Unauthenticated);
    let mut right = client(&server.addr, Some(TOKEN)).await;
    let tenants = right.list_tenants(pb::ListTenantsRequest::default()).await.expect("the token opens the plane");
    assert!(tenants.into_inner().tenants.is_empty(), "the refused create created nothing");

    // Server reflection (what grpcurl uses) sits behind the same token.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let mut reflect = ServerReflectionClient::with_interceptor(channel(&server.addr).await, bearer(None));
    let status = reflect.server_reflection_info(list()).await.expect_err("reflection without a token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut reflect = ServerReflectionClient::with_interceptor(channel(&server.addr).await, bearer(Some(TOKEN)));
    let mut answers = reflect.server_reflection_info(list()).await.expect("reflection").into_inner();
    let answer: ServerReflectionResponse = answers.message().await.expect("an answer").expect("one message");
    let Some(MessageResponse::ListServicesResponse(services)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"flywheel.admin.v1.Admin".to_owned()), "{names:?}");
}

#[tokio::test]
async fn bad_arguments_are_invalid_argument_naming_the_field_and_unknown_ids_not_found() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("known").await.id.to_string();
    let server = admin_server(&app).await;
    let mut admin = client(&server.addr, Some(TOKEN)).await;
    let random = uuid::Uuid::new_v4().to_string();
    let runs = |tenant: &str| pb::ListRunsRequest { tenant_id: tenant.to_owned(), ..Default::default() };
    let decide = |decision: &str, artifact: Option<&str>| pb::DecideApprovalRequest {
        tenant_id: tenant.clone(),
        approval_id: random.clone(),
        decision: decision.to_owned(),
        reason: None,
        artifact_json: artifact.map(str::to_owned),
    };

    let invalid: Vec<((Code, String), &str)> = vec![
        (refused(admin.list_runs(runs("acme")).await), "tenant_id: not a UUID"),
        (refused(admin.list_runs(runs("")).await), "tenant_id: required"),
        (
            refused(admin.list_runs(pb::ListRunsRequest { status: "done".into(), ..runs(&tenant) }).await),
            "status: \"done\" is not one of queued, running, paused, awaiting_approval, succeeded, failed, cancelled",
        ),
        (
            refused(admin.list_runs(pb::ListRunsRequest { agent: "robot".into(), ..runs(&tenant) }).await),
            "agent: \"robot\" is not one of",
        ),
        (
            refused(admin.list_runs(pb::ListRunsRequest { page_token: "page-2".into(), ..runs(&tenant) }).await),
            "page_token: not a token from a previous page",
        ),
        (
            refused(admin.pause_run(pb::PauseRunRequest { tenant_id: tenant.clone(), run_id: "42".into() }).await),
            "run_id: not a UUID",
        ),
        (
            refused(admin.resume_run(pb::ResumeRunRequest { tenant_id: "x".into(), run_id: random.clone() }).await),
            "tenant_id: not a UUID",
        ),
        (
            refused(admin.cancel_run(pb::CancelRunRequest { tenant_id: tenant.clone(), run_id: String::new() }).await),
            "run_id: required",
        ),
        (
            refused(
                admin
                    .list_approvals(pb::ListApprovalsRequest {
                        tenant_id: tenant.clone(),
                        status: "later".into(),
                        ..Default::default()
                    })
                    .await,
            ),
            "status: \"later\" is not one of pending, approved, rejected, edited, forced, expired",
        ),
        (refused(admin.decide_approval(decide("maybe", None)).await), "decision: \"maybe\" is not one of"),
        (refused(admin.decide_approval(decide("", None)).await), "decision: required"),
        (refused(admin.decide_approval(decide("edit", Some("[1]"))).await), "artifact_json: not a JSON object"),
        (
            refused(
                admin
                    .decide_approval(pb::DecideApprovalRequest { approval_id: "a-1".into(), ..decide("approve", None) })
                    .await,
            ),
            "approval_id: not a UUID",
        ),
        (
            refused(
                admin.create_tenant(pb::CreateTenantRequest { name: "Acme".into(), slug: "Not A Slug!".into() }).await,
            ),
            "slug: ",
        ),
        (
            refused(admin.create_tenant(pb::CreateTenantRequest { name: " ".into(), slug: "blank-name".into() }).await),
            "name: ",
        ),
        (
            refused(admin.suspend_tenant(pb::SuspendTenantRequest { tenant_id: "7".into() }).await),
            "tenant_id: not a UUID",
        ),
        (
            refused(admin.resume_tenant(pb::ResumeTenantRequest { tenant_id: String::new() }).await),
            "tenant_id: required",
        ),
        (
            refused(admin.get_tenant_tree(pb::GetTenantTreeRequest { tenant_id: "tree".into() }).await),
            "tenant_id: not a UUID",
        ),
        (refused(admin.drain_node(pb::DrainNodeRequest { node_id: "  ".into() }).await), "node_id: required"),
    ];
    for ((code, message), expected) in invalid {
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.starts_with(expected), "{message:?} should start with {expected:?}");
    }

    let not_found: Vec<((Code, String), &str)> = vec![
        (refused(admin.list_runs(runs(&random)).await), "tenant not found"),
        (
            refused(
                admin
                    .list_approvals(pb::ListApprovalsRequest { tenant_id: random.clone(), ..Default::default() })
                    .await,
            ),
            "tenant not found",
        ),
        (
            refused(admin.get_tenant_tree(pb::GetTenantTreeRequest { tenant_id: random.clone() }).await),
            "tenant not found",
        ),
        (
            refused(admin.suspend_tenant(pb::SuspendTenantRequest { tenant_id: random.clone() }).await),
            "tenant not found",
        ),
        (
            refused(admin.pause_run(pb::PauseRunRequest { tenant_id: tenant.clone(), run_id: random.clone() }).await),
            "run not found",
        ),
        (refused(admin.decide_approval(decide("approve", None)).await), "approval not found"),
    ];
    for ((code, message), expected) in not_found {
        assert_eq!((code, message.as_str()), (Code::NotFound, expected));
    }
}

/// Runs `flywheel admin …` against `addr` with `token`; answers success, stdout and stderr.
async fn flywheel_admin(addr: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("flywheel");
    assert!(bin.exists(), "{} is missing: build it first (cargo build --bin flywheel)", bin.display());
    let mut command = Command::new(bin);
    command
        .arg("admin")
        .args(args)
        .env("FLYWHEEL_ADMIN_ADDR", addr)
        .env("FLYWHEEL_ADMIN_TOKEN", token)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    let out = tokio::task::spawn_blocking(move || command.output().expect("run flywheel")).await.expect("join");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_line_prints_tables_and_json_and_fails_with_the_status() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("quayside").await;
    let server = admin_server(&app).await;
    let addr = server.addr.clone();

    let (ok, out, err) = flywheel_admin(&addr, TOKEN, &["--json", "tenants"]).await;
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).expect("JSON out");
    assert_eq!(page["tenants"][0]["id"], json!(tenant.id.to_string()), "{out}");
    assert_eq!(page["tenants"][0]["slug"], "quayside");
    assert_eq!(page["next_page_token"], "");

    let (ok, out, err) = flywheel_admin(&addr, TOKEN, &["tenants", "list"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("  SLUG") && lines[0].contains("STATUS"), "{out}");
    assert!(lines[1].starts_with(&tenant.id.to_string()) && lines[1].contains("quayside"), "{out}");
    assert_eq!(lines[0].find("SLUG"), lines[1].find("quayside"), "columns align:\n{out}");

    let (ok, out, err) =
        flywheel_admin(&addr, TOKEN, &["tenants", "create", "--name", "Harbour", "--slug", "harbour"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("api key") && out.contains("shown only this once"), "{out}");

    let (ok, out, err) = flywheel_admin(&addr, TOKEN, &["--json", "nodes"]).await;
    assert!(ok, "{err}");
    let nodes: Value = serde_json::from_str(&out).expect("JSON out");
    assert_eq!(nodes["nodes"][0]["node_id"], json!(app.cluster.node_id()), "{out}");
    let (ok, out, err) = flywheel_admin(&addr, TOKEN, &["runs", "list", &tenant.id.to_string()]).await;
    assert!(ok && out.starts_with("ID") && out.contains("STATUS"), "{out}{err}");

    let (ok, _, err) = flywheel_admin(&addr, TOKEN, &["runs", "list", "not-a-tenant"]).await;
    assert!(!ok && err.contains("InvalidArgument: tenant_id: not a UUID"), "{err}");
    let (ok, _, err) = flywheel_admin(&addr, "wrong-token", &["health"]).await;
    assert!(!ok && err.contains("Unauthenticated: invalid admin token"), "{err}");
}
