//! TLS on both planes, with real node processes on loopback and throwaway certificates made at
//! test time by the openssl CLI (a CA, and leaves carrying `IP:127.0.0.1` and `DNS:localhost`).
//!
//! - The cluster transport over mutual TLS: two nodes with certificates of the cluster's CA form
//!   a cluster (a run submitted to one for a tenant the other owns completes, and the owner's
//!   live tree is fetched through the first); a node whose certificate comes from another CA
//!   takes its leases but never joins the transport, and both sides log why.
//! - The admin plane over mutual TLS: the CLI with a client certificate of the client CA gets
//!   through; without one, with a stranger's, or over plain http it does not; and the admin
//!   token is still checked.
//! - A partial TLS setting stops the node at start, naming what is missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flywheel_cluster::placement::shard_of;
use flywheel_contracts::TenantId;
use flywheel_contracts::api::approval::ApprovalKind;
use flywheel_storage::audit::Actor as AuditActor;
use flywheel_tests::{TestDb, TestNamespace, eventually, owner_url, redis_url};
use serde_json::{Value, json};

use crate::crash::{Node, flywheel_binary, free_port, ready, run_input, slow_llm};

const COOKIE: &str = "tls-test-cookie";
const ADMIN_TOKEN: &str = "tls-test-admin-token";

/// A scratch directory of certificates and node logs, removed when dropped (kept, and named,
/// when a test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("flywheel-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("scratch dir");
        Self(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `openssl <command line>` in the scratch directory (no argument holds a space).
    fn openssl(&self, command_line: &str) {
        let args: Vec<&str> = command_line.split_whitespace().collect();
        let out = Command::new("openssl").args(&args).current_dir(&self.0).output().expect("run openssl");
        assert!(out.status.success(), "openssl {command_line}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A self-signed CA `<name>.pem` / `<name>.key`; answers the certificate's path.
    fn ca(&self, name: &str) -> PathBuf {
        self.openssl(&format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN={name} \
             -keyout {name}.key -out {name}.pem \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ));
        self.path(&format!("{name}.pem"))
    }

    /// A leaf `<name>.pem` / `<name>.key` signed by the CA `ca`, usable as server and client;
    /// answers (certificate, key).
    fn leaf(&self, ca: &str, name: &str) -> (PathBuf, PathBuf) {
        std::fs::write(
            self.path(&format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("extensions file");
        self.openssl(&format!(
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN={name} \
             -keyout {name}.key -out {name}.csr"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 1 \
             -extfile {name}.ext -out {name}.pem"
        ));
        (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("certificates and node logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

struct TlsNode {
    base: String,
    grpc_port: u16,
    cluster_port: u16,
    log: PathBuf,
    _process: Node,
}

impl TlsNode {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts node `id` with the cluster transport (joining through `seeds`) and the admin plane,
/// plus `env`; waits until it is ready.
async fn start(
    db: &TestDb,
    namespace: &str,
    llm: &str,
    scratch: &Scratch,
    id: &str,
    seeds: &[u16],
    env: &[(&str, &Path)],
) -> TlsNode {
    let (http, cluster_port, grpc_port) = (free_port(), free_port(), free_port());
    let log = scratch.path(&format!("{id}.log"));
    let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut command = Command::new(flywheel_binary());
    command
        .arg("node")
        .env("DATABASE_URL", db.app_url())
        .env("FLYWHEEL_OWNER_DATABASE_URL", owner_url(&db.name))
        .env("REDIS_URL", redis_url())
        .env("FLYWHEEL_REDIS_NAMESPACE", namespace)
        .env("FLYWHEEL_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("FLYWHEEL_NODE_ID", id)
        .env("FLYWHEEL_CLUSTER_ADDR", format!("127.0.0.1:{cluster_port}"))
        .env("FLYWHEEL_CLUSTER_COOKIE", COOKIE)
        .env("FLYWHEEL_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("FLYWHEEL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("FLYWHEEL_SEEDS", seeds.join(","))
        .env("FLYWHEEL_LEASE_TTL", "2s")
        .env("FLYWHEEL_RUN_SWEEP_SECS", "2")
        .env("FLYWHEEL_LLM_PROVIDER", "openai")
        .env("FLYWHEEL_LLM_BASE_URL", llm)
        .env("FLYWHEEL_LLM_MAX_RETRIES", "0")
        .env("FLYWHEEL_INGESTORS", "0")
        .env("FLYWHEEL_DB_MAX_CONNECTIONS", "8")
        .env("RUST_LOG", "warn,flywheel_cluster=info");
    for (var, path) in env {
        command.env(var, path);
    }
    let file = std::fs::File::create(&log).expect("node log");
    let child = command.stdout(Stdio::null()).stderr(file).spawn().expect("start a node process");
    let node =
        TlsNode { base: format!("http://127.0.0.1:{http}"), grpc_port, cluster_port, log, _process: Node(child) };
    ready(&reqwest::Client::builder().no_proxy().build().expect("client"), &node.base).await;
    node
}

/// shard → owner of every unexpired lease.
async fn owners(db: &TestDb) -> HashMap<i32, String> {
    let mut conn = db.owner().await;
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "select shard, owner_node from shard_leases where owner_node is not null and expires_at > clock_timestamp()",
    )
    .fetch_all(&mut conn)
    .await
    .expect("leases");
    rows.into_iter().collect()
}

/// Waits until every shard is held by its rendezvous owner among `nodes`.
async fn settled(db: &TestDb, nodes: &[&str]) -> HashMap<i32, String> {
    let members: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
    eventually("every shard held by its rendezvous owner", Duration::from_secs(60), || async {
        let owners = owners(db).await;
        let placed = flywheel_cluster::placement::Shard::all().all(|s| {
            owners.get(&i32::from(s.get())).map(String::as_str) == flywheel_cluster::placement::owner(s, &members)
        });
        placed.then_some(owners)
    })
    .await
}

/// A new tenant (brand approvals approved by policy) on a shard `node` holds in `owners`;
/// answers it and its API key.
async fn tenant_on(db: &TestDb, owners: &HashMap<i32, String>, node: &str) -> (TenantId, String) {
    for i in 0.. {
        let slug = flywheel_contracts::Slug::parse(&format!("{node}-tenant-{i}")).expect("slug");
        let created = db.db.create_tenant(&format!("Tenant {i}"), &slug, "test").await.expect("tenant");
        if owners.get(&i32::from(shard_of(created.tenant_id).get())).map(String::as_str) != Some(node) {
            continue;
        }
        let mut tx = db.db.begin(created.tenant_id).await.expect("begin");
        let rule = json!({"auto_approve": true}).as_object().cloned().expect("object");
        flywheel_storage::approvals::set_policy(
            &mut tx,
            ApprovalKind::BrandPositioning,
            Some(&rule),
            &AuditActor::System,
        )
        .await
        .expect("policy");
        tx.commit().await.expect("commit");
        return (created.tenant_id, created.api_key);
    }
    unreachable!("the loop above only ends by returning")
}

/// The three variables of transport TLS.
fn transport_tls<'a>(cert: &'a Path, key: &'a Path, ca: &'a Path) -> [(&'static str, &'a Path); 3] {
    [("FLYWHEEL_CLUSTER_TLS_CERT", cert), ("FLYWHEEL_CLUSTER_TLS_KEY", key), ("FLYWHEEL_CLUSTER_TLS_CA", ca)]
}

/// `flywheel admin --json <args>`, with no admin setting from the test's own environment.
fn admin(args: &[&str]) -> Output {
    let mut command = Command::new(flywheel_binary());
    for var in [
        "FLYWHEEL_ADMIN_ADDR",
        "FLYWHEEL_ADMIN_TOKEN",
        "FLYWHEEL_ADMIN_CA",
        "FLYWHEEL_ADMIN_CLIENT_CERT",
        "FLYWHEEL_ADMIN_CLIENT_KEY",
    ] {
        command.env_remove(var);
    }
    command.arg("admin").arg("--json").args(args).output().expect("run flywheel admin")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_transport_tls_form_a_cluster_and_a_node_of_another_ca_cannot_join() {
    let db = TestDb::new().await;
    let namespace = TestNamespace::new();
    let llm = slow_llm(Duration::from_millis(50)).await;
    let pki = Scratch::new();
    let ca = pki.ca("cluster-ca");
    let (n1_cert, n1_key) = pki.leaf("cluster-ca", "n1");
    let (n2_cert, n2_key) = pki.leaf("cluster-ca", "n2");
    let rogue_ca = pki.ca("rogue-ca");
    let (n3_cert, n3_key) = pki.leaf("rogue-ca", "n3");
    let n1 = start(&db, namespace.as_str(), &llm, &pki, "n1", &[], &transport_tls(&n1_cert, &n1_key, &ca)).await;
    let n2 =
        start(&db, namespace.as_str(), &llm, &pki, "n2", &[n1.cluster_port], &transport_tls(&n2_cert, &n2_key, &ca))
            .await;
    let placed = settled(&db, &["n1", "n2"]).await;

    // A run of a tenant n2 owns, submitted to n1, completes; n1 fetches its live tree from n2
    // over the transport (which fails while n1 cannot see n2's router).
    let (tenant, key) = tenant_on(&db, &placed, "n2").await;
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let run: Value = client
        .post(format!("{}/v1/agents/branding/runs", n1.base))
        .bearer_auth(&key)
        .json(&run_input())
        .send()
        .await
        .expect("post run")
        .json()
        .await
        .expect("json");
    let run_id: flywheel_contracts::ids::RunId =
        run["id"].as_str().unwrap_or_else(|| panic!("run id in {run}")).parse().expect("run id");
    eventually("the run to succeed", Duration::from_secs(60), || async {
        let mut tx = db.db.begin(tenant).await.expect("begin");
        let state = flywheel_storage::runs::get(&mut tx, run_id).await.expect("run");
        tx.commit().await.expect("commit");
        let status = state.run.status.as_str().to_owned();
        assert!(status != "failed" && status != "cancelled", "the run ended {status}");
        (status == "succeeded").then_some(())
    })
    .await;
    let n1_admin = format!("http://127.0.0.1:{}", n1.grpc_port);
    let tree = eventually("n1 to fetch the tenant's tree from n2", Duration::from_secs(30), || async {
        let out = admin(&["--addr", &n1_admin, "--token", ADMIN_TOKEN, "tree", &tenant.to_string()]);
        let tree: Value = serde_json::from_slice(&out.stdout).ok()?;
        (out.status.success() && tree["active"] == true).then_some(tree)
    })
    .await;
    assert_eq!(tree["owner_node"], "n2", "{tree}");
    assert!(n1.log().contains("tls=true"), "n1's transport should say it speaks TLS:\n{}", n1.log());

    // n3's certificate chains to another CA: it takes its leases (PostgreSQL decides those),
    // but neither side accepts the other's certificate, so n1 cannot reach n3's tenants.
    let n3_tls = transport_tls(&n3_cert, &n3_key, &rogue_ca);
    let n3 = start(&db, namespace.as_str(), &llm, &pki, "n3", &[n1.cluster_port], &n3_tls).await;
    let placed = settled(&db, &["n1", "n2", "n3"]).await;
    assert!(placed.values().any(|o| o == "n3"), "n3 holds shards");
    let (on_n3, _) = tenant_on(&db, &placed, "n3").await;
    eventually("both sides to log the certificate refusal", Duration::from_secs(30), || async {
        let (n1_log, n3_log) = (n1.log(), n3.log());
        let refused = |log: &str| log.contains("Cannot reach a cluster peer") && log.contains("UnknownIssuer");
        (refused(&n1_log) && refused(&n3_log)).then_some(())
    })
    .await;
    let out = admin(&["--addr", &n1_admin, "--token", ADMIN_TOKEN, "tree", &on_n3.to_string()]);
    assert!(!out.status.success(), "n1 should not reach n3: {}", String::from_utf8_lossy(&out.stdout));
    // The client gets the code; the node logs the detail.
    assert!(stderr(&out).contains("Unavailable"), "{}", stderr(&out));
    assert!(n1.log().contains("node n3 is not connected"), "{}", n1.log());
    drop(n2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_plane_over_mutual_tls_wants_a_client_certificate_and_the_token() {
    let db = TestDb::new().await;
    let namespace = TestNamespace::new();
    let llm = slow_llm(Duration::from_millis(50)).await;
    let pki = Scratch::new();
    let ca = pki.ca("admin-ca");
    let (server_cert, server_key) = pki.leaf("admin-ca", "server");
    let (client_cert, client_key) = pki.leaf("admin-ca", "operator");
    pki.ca("rogue-ca");
    let (rogue_cert, rogue_key) = pki.leaf("rogue-ca", "intruder");
    let node = start(
        &db,
        namespace.as_str(),
        &llm,
        &pki,
        "a1",
        &[],
        &[
            ("FLYWHEEL_ADMIN_TLS_CERT", &server_cert),
            ("FLYWHEEL_ADMIN_TLS_KEY", &server_key),
            ("FLYWHEEL_ADMIN_TLS_CLIENT_CA", &ca),
        ],
    )
    .await;
    let https = format!("https://127.0.0.1:{}", node.grpc_port);
    let (ca, client_cert, client_key) =
        (ca.to_string_lossy(), client_cert.to_string_lossy(), client_key.to_string_lossy());
    let tls = ["--addr", &https, "--ca", &ca];

    // With the client certificate and the token: through.
    let out =
        admin(&[&tls[..], &["--cert", &client_cert, "--key", &client_key, "--token", ADMIN_TOKEN, "health"]].concat());
    assert!(out.status.success(), "with a client certificate: {}", stderr(&out));
    let health: Value = serde_json::from_slice(&out.stdout).expect("health JSON");
    assert_eq!(health["node_id"], "a1", "{health}");

    // The token is still checked.
    let out =
        admin(&[&tls[..], &["--cert", &client_cert, "--key", &client_key, "--token", "wrong", "health"]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Unauthenticated"), "{}", stderr(&out));

    // No client certificate, or one of another CA: the handshake fails, no call is made.
    let out = admin(&[&tls[..], &["--token", ADMIN_TOKEN, "health"]].concat());
    assert!(!out.status.success(), "without a client certificate: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr(&out).contains("Unauthenticated"), "refused by TLS, not by the token: {}", stderr(&out));
    let (rogue_cert, rogue_key) = (rogue_cert.to_string_lossy(), rogue_key.to_string_lossy());
    let out =
        admin(&[&tls[..], &["--cert", &rogue_cert, "--key", &rogue_key, "--token", ADMIN_TOKEN, "health"]].concat());
    assert!(!out.status.success(), "with another CA's certificate: {}", String::from_utf8_lossy(&out.stdout));

    // Plain http to a TLS plane fails; https without --ca is refused by the CLI itself.
    let http = format!("http://127.0.0.1:{}", node.grpc_port);
    let out = admin(&["--addr", &http, "--token", ADMIN_TOKEN, "health"]);
    assert!(!out.status.success(), "plain http: {}", String::from_utf8_lossy(&out.stdout));
    let out = admin(&["--addr", &https, "--token", ADMIN_TOKEN, "health"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--ca"), "{}", stderr(&out));
    assert!(node.log().contains("The admin plane speaks TLS"), "{}", node.log());
}

/// Runs `flywheel node` with `env` and waits for it to exit; answers its standard error.
fn node_refusing_to_start(env: &[(&str, &str)]) -> String {
    let mut command = Command::new(flywheel_binary());
    command
        .arg("node")
        .env("FLYWHEEL_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("FLYWHEEL_GRPC_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("FLYWHEEL_CLUSTER_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("FLYWHEEL_CLUSTER_COOKIE", COOKIE)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (var, value) in env {
        command.env(var, value);
    }
    let mut child = Node(command.spawn().expect("start a node process"));
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < until, "the node should refuse to start with {env:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut err).expect("stderr");
    }
    err
}

#[test]
fn a_partial_tls_setting_stops_the_node_at_start_naming_what_is_missing() {
    let err = node_refusing_to_start(&[("FLYWHEEL_CLUSTER_TLS_CERT", "/nonexistent/n.pem")]);
    assert!(err.contains("FLYWHEEL_CLUSTER_TLS_KEY and FLYWHEEL_CLUSTER_TLS_CA is missing"), "{err}");
    let err = node_refusing_to_start(&[
        ("FLYWHEEL_CLUSTER_TLS_CERT", "/nonexistent/n.pem"),
        ("FLYWHEEL_CLUSTER_TLS_KEY", "/nonexistent/n.key"),
        ("FLYWHEEL_CLUSTER_TLS_CA", "/nonexistent/ca.pem"),
    ]);
    assert!(err.contains("FLYWHEEL_CLUSTER_TLS_CERT: read /nonexistent/n.pem"), "{err}");
    let err = node_refusing_to_start(&[("FLYWHEEL_ADMIN_TLS_CLIENT_CA", "/nonexistent/ca.pem")]);
    assert!(err.contains("FLYWHEEL_ADMIN_TLS_CLIENT_CA needs FLYWHEEL_ADMIN_TLS_CERT"), "{err}");
    let err = node_refusing_to_start(&[("FLYWHEEL_ADMIN_TLS_KEY", "/nonexistent/a.key")]);
    assert!(err.contains("FLYWHEEL_ADMIN_TLS_CERT is missing"), "{err}");
}
