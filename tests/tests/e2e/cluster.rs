//! The cluster with real node processes on loopback, sharing one PostgreSQL database and one
//! Redis namespace: failover after SIGKILL, a join and a drain, and a paused (SIGSTOP) node
//! that comes back after losing its leases, and the Redis bus making planned moves immediate.
//! Every check is made against what PostgreSQL
//! recorded: the shard leases, their history (`shard_lease_log`, one acquisition per shard and
//! epoch) and the node and lease epoch of every committed step.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flywheel_cluster::placement::shard_of;
use flywheel_contracts::TenantId;
use flywheel_contracts::api::approval::ApprovalKind;
use flywheel_storage::audit::Actor as AuditActor;
use flywheel_tests::{TestDb, TestNamespace, eventually, owner_url, redis_url};
use serde_json::{Value, json};

use crate::crash::{FakeLlm, Node, fake_llm, flywheel_binary, free_port, ready, run_input};

const COOKIE: &str = "cluster-test-cookie";
const ADMIN_TOKEN: &str = "cluster-test-admin-token";

struct ClusterNode {
    base: String,
    grpc_port: u16,
    cluster_port: u16,
    process: Node,
    log: std::path::PathBuf,
}

struct Cluster {
    db: TestDb,
    namespace: TestNamespace,
    ttl: Duration,
    client: reqwest::Client,
    logs: tempdir::Dir,
    /// A local OpenAI-compatible server whose answers take a while, so runs are in flight
    /// when a node dies.
    llm: String,
    /// Its handle: a test holds the runs at their `positioning` step to kill a node mid-run.
    fake: std::sync::Arc<FakeLlm>,
}

mod tempdir {
    //! A scratch directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("flywheel-cluster-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).expect("scratch dir");
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("node logs kept in {}", self.0.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

impl Cluster {
    async fn new(ttl: Duration) -> Self {
        let (llm, fake) = fake_llm(Duration::from_millis(400)).await;
        Self {
            db: TestDb::new().await,
            namespace: TestNamespace::new(),
            ttl,
            client: reqwest::Client::builder().no_proxy().build().expect("client"),
            logs: tempdir::Dir::new(),
            llm,
            fake,
        }
    }

    /// Starts node `id`, joining through `seeds` (other nodes' cluster ports).
    async fn start(&self, id: &str, seeds: &[u16]) -> ClusterNode {
        let http = free_port();
        let cluster_port = free_port();
        let grpc_port = free_port();
        let log = self.logs.0.join(format!("{id}.log"));
        let file = std::fs::File::create(&log).expect("node log");
        let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let child = Command::new(flywheel_binary())
            .arg("node")
            .env("DATABASE_URL", self.db.app_url())
            .env("FLYWHEEL_OWNER_DATABASE_URL", owner_url(&self.db.name))
            .env("REDIS_URL", redis_url())
            .env("FLYWHEEL_REDIS_NAMESPACE", self.namespace.as_str())
            .env("FLYWHEEL_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("FLYWHEEL_NODE_ID", id)
            .env("FLYWHEEL_CLUSTER_ADDR", format!("127.0.0.1:{cluster_port}"))
            .env("FLYWHEEL_CLUSTER_COOKIE", COOKIE)
            .env("FLYWHEEL_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
            .env("FLYWHEEL_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("FLYWHEEL_SEEDS", seeds.join(","))
            .env("FLYWHEEL_LEASE_TTL", format!("{}ms", self.ttl.as_millis()))
            .env("FLYWHEEL_RUN_SWEEP_SECS", "2")
            .env("FLYWHEEL_LLM_PROVIDER", "openai")
            .env("FLYWHEEL_LLM_BASE_URL", &self.llm)
            .env("FLYWHEEL_LLM_MAX_RETRIES", "0")
            // A held `positioning` answer must not time out while the test waits for n3.
            .env("FLYWHEEL_LLM_TIMEOUT_SECS", "600")
            .env("FLYWHEEL_INGESTORS", "0")
            .env("FLYWHEEL_DB_MAX_CONNECTIONS", "8")
            .env("RUST_LOG", "warn,flywheel_cluster=info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start a node process");
        let node = ClusterNode {
            base: format!("http://127.0.0.1:{http}"),
            grpc_port,
            cluster_port,
            process: Node(child),
            log,
        };
        ready(&self.client, &node.base).await;
        node
    }

    /// shard → (owner, epoch) of every unexpired lease.
    async fn owners(&self) -> HashMap<i32, (String, i64)> {
        let mut conn = self.db.owner().await;
        let rows: Vec<(i32, String, i64)> = sqlx::query_as(
            "select shard, owner_node, epoch from shard_leases
              where owner_node is not null and expires_at > clock_timestamp()",
        )
        .fetch_all(&mut conn)
        .await
        .expect("leases");
        rows.into_iter().map(|(s, o, e)| (s, (o, e))).collect()
    }

    async fn shards_per_node(&self) -> HashMap<String, usize> {
        let mut count = HashMap::new();
        for (owner, _) in self.owners().await.into_values() {
            *count.entry(owner).or_insert(0) += 1;
        }
        count
    }

    /// Waits until every shard is held by its rendezvous owner among `nodes` (the placement
    /// the leases converge to); answers the leases then.
    async fn settled(&self, nodes: &[&str], within: Duration) -> HashMap<i32, (String, i64)> {
        let members: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
        eventually("every shard held by its rendezvous owner", within, || async {
            let owners = self.owners().await;
            let placed = flywheel_cluster::placement::Shard::all().all(|s| {
                let owner = flywheel_cluster::placement::owner(s, &members);
                owners.get(&i32::from(s.get())).map(|(o, _)| o.as_str()) == owner
            });
            placed.then_some(owners)
        })
        .await
    }

    /// Creates `n` tenants whose brand approvals are approved by policy, and starts a Branding
    /// run for each through `via` (any node accepts any request).
    async fn tenants_with_runs(&self, n: usize, via: &ClusterNode) -> Vec<(TenantId, String, String)> {
        let mut out = Vec::new();
        for i in 0..n {
            let slug = flywheel_contracts::Slug::parse(&format!("tenant-{i}")).expect("slug");
            let created = self.db.db.create_tenant(&format!("Tenant {i}"), &slug, "test").await.expect("tenant");
            let mut tx = self.db.db.begin(created.tenant_id).await.expect("begin");
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
            let run: Value = self
                .client
                .post(format!("{}/v1/agents/branding/runs", via.base))
                .bearer_auth(&created.api_key)
                .json(&run_input())
                .send()
                .await
                .expect("post run")
                .json()
                .await
                .expect("json");
            let run_id = run["id"].as_str().unwrap_or_else(|| panic!("run id in {run}")).to_owned();
            out.push((created.tenant_id, created.api_key, run_id));
        }
        out
    }

    /// The status of every run.
    async fn statuses(&self, runs: &[(TenantId, String, String)]) -> Vec<String> {
        let mut out = Vec::new();
        for (tenant, _, run) in runs {
            let mut tx = self.db.db.begin(*tenant).await.expect("begin");
            let id: flywheel_contracts::ids::RunId = run.parse().expect("run id");
            let state = flywheel_storage::runs::get(&mut tx, id).await.expect("run");
            tx.commit().await.expect("commit");
            out.push(state.run.status.as_str().to_owned());
        }
        out
    }

    async fn all_succeeded(&self, runs: &[(TenantId, String, String)], within: Duration) {
        eventually("every run to succeed", within, || async {
            let statuses = self.statuses(runs).await;
            assert!(!statuses.iter().any(|s| s == "failed" || s == "cancelled"), "a run did not survive: {statuses:?}");
            statuses.iter().all(|s| s == "succeeded").then_some(())
        })
        .await;
    }

    /// Every committed step of these tenants: (tenant, run, step name, node, lease epoch,
    /// finished at).
    async fn steps(&self, tenants: &[TenantId]) -> Vec<Step> {
        let mut conn = self.db.app().await;
        let mut out = Vec::new();
        for tenant in tenants {
            let mut tx = flywheel_tests::tenant_tx(&mut conn, tenant.as_uuid()).await;
            let rows: Vec<StepRow> = sqlx::query_as(
                "select run_id, name, node_id, lease_epoch, finished_at from run_steps where status = 'succeeded'",
            )
            .fetch_all(&mut *tx)
            .await
            .expect("steps");
            tx.commit().await.expect("commit");
            out.extend(rows.into_iter().map(|(run, name, node, epoch, at)| Step {
                tenant: *tenant,
                run,
                name,
                node,
                epoch,
                at,
            }));
        }
        out
    }

    /// The lease history: (shard, epoch) → (acquirer, acquired at, released or next acquired at).
    async fn history(&self) -> Vec<(i32, i64, String, String, chrono::DateTime<chrono::Utc>)> {
        let mut conn = self.db.owner().await;
        sqlx::query_as("select shard, epoch, owner_node, event, at from shard_lease_log order by shard, epoch, id")
            .fetch_all(&mut conn)
            .await
            .expect("lease log")
    }

    /// The invariants every scenario must keep: one acquisition per shard and epoch; each step
    /// committed once; every step fenced by a lease its node held at that epoch, committed
    /// before the next epoch of its shard began.
    async fn check_invariants(&self, tenants: &[TenantId]) {
        let history = self.history().await;
        let mut acquired: HashMap<(i32, i64), (String, chrono::DateTime<chrono::Utc>)> = HashMap::new();
        for (shard, epoch, owner, event, at) in &history {
            if event == "acquired" {
                let previous = acquired.insert((*shard, *epoch), (owner.clone(), *at));
                assert!(previous.is_none(), "shard {shard} epoch {epoch} acquired twice: {history:?}");
            }
        }
        let steps = self.steps(tenants).await;
        assert!(!steps.is_empty());
        let mut seen = HashSet::new();
        for step in &steps {
            assert!(
                seen.insert((step.run, step.name.clone())),
                "step {} of run {} committed twice",
                step.name,
                step.run
            );
            let (Some(node), Some(epoch)) = (&step.node, step.epoch) else {
                panic!("step {} of run {} was committed without a fence", step.name, step.run);
            };
            let shard = i32::from(shard_of(step.tenant).get());
            let (holder, since) = acquired.get(&(shard, epoch)).expect("the step's epoch is in the lease log");
            assert_eq!(holder, node, "step {} committed by {node} under an epoch {holder} held", step.name);
            assert!(step.at >= *since, "step committed before its epoch began");
            if let Some((_, next)) = acquired.get(&(shard, epoch + 1)) {
                assert!(
                    step.at <= *next,
                    "step {} committed by a stale owner after epoch {} began",
                    step.name,
                    epoch + 1
                );
            }
        }
    }
}

/// run, step name, node, lease epoch, finished at.
type StepRow = (uuid::Uuid, String, Option<String>, Option<i64>, chrono::DateTime<chrono::Utc>);

#[derive(Debug)]
struct Step {
    tenant: TenantId,
    run: uuid::Uuid,
    name: String,
    node: Option<String>,
    epoch: Option<i64>,
    at: chrono::DateTime<chrono::Utc>,
}

/// `flywheel admin --json <args>` against `node`'s admin plane.
fn admin(node: &ClusterNode, args: &[&str]) -> Value {
    let out = Command::new(flywheel_binary())
        .arg("admin")
        .arg("--json")
        .args(["--addr", &format!("http://127.0.0.1:{}", node.grpc_port), "--token", ADMIN_TOKEN])
        .args(args)
        .output()
        .expect("run flywheel admin");
    assert!(out.status.success(), "flywheel admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON from flywheel admin {args:?}: {e}"))
}

fn log_of(node: &ClusterNode) -> String {
    std::fs::read_to_string(&node.log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_tenants_resume_on_the_survivors_and_every_run_completes_once() {
    let ttl = Duration::from_secs(3);
    let cluster = Cluster::new(ttl).await;
    let n1 = cluster.start("n1", &[]).await;
    let n2 = cluster.start("n2", &[n1.cluster_port]).await;
    let mut n3 = cluster.start("n3", &[n1.cluster_port]).await;
    cluster.settled(&["n1", "n2", "n3"], Duration::from_secs(60)).await;
    let per = cluster.shards_per_node().await;
    assert!(per.values().all(|n| *n > 40), "roughly a third each: {per:?}");

    // Every run commits `research`, then waits in `positioning` until n3 is dead: n3 is killed
    // with steps committed and every one of its runs in flight, however slow the machine.
    cluster.fake.hold_positioning();
    let runs = cluster.tenants_with_runs(50, &n1).await;
    let tenants: Vec<TenantId> = runs.iter().map(|(t, _, _)| *t).collect();
    let on_n3: Vec<usize> = {
        let owners = cluster.owners().await;
        (0..runs.len())
            .filter(|i| owners.get(&i32::from(shard_of(runs[*i].0).get())).is_some_and(|(o, _)| o == "n3"))
            .collect()
    };
    assert!(!on_n3.is_empty(), "some tenants live on n3");
    let n3_tenants: Vec<TenantId> = on_n3.iter().map(|i| runs[*i].0).collect();
    // Generous: on a loaded two-core machine three debug nodes share the cores with other tests.
    eventually("n3 to commit steps of its runs", Duration::from_secs(180), || async {
        let steps = cluster.steps(&n3_tenants).await;
        steps.iter().any(|s| s.node.as_deref() == Some("n3")).then_some(())
    })
    .await;
    n3.process.0.kill().expect("SIGKILL n3");
    n3.process.0.wait().expect("reap n3");
    let killed = Instant::now();
    let statuses = cluster.statuses(&runs).await;
    assert!(on_n3.iter().all(|i| statuses[*i] != "succeeded"), "the held runs were all in flight on n3: {statuses:?}");
    cluster.fake.release_positioning();

    // Within the lease TTL + 5 s, every tenant's shard is held by a survivor.
    cluster.settled(&["n1", "n2"], ttl + Duration::from_secs(5)).await;
    let per = cluster.shards_per_node().await;
    eprintln!(
        "failover: all shards on survivors {:?} after the kill ({per:?}); {} of n3's runs were unfinished",
        killed.elapsed(),
        on_n3.len()
    );

    cluster.all_succeeded(&runs, Duration::from_secs(120)).await;
    cluster.check_invariants(&tenants).await;
    // The survivors finished what n3 started: every held run still had `positioning` ahead.
    let steps = cluster.steps(&tenants).await;
    let resumed = on_n3
        .iter()
        .filter(|i| {
            let run = uuid::Uuid::parse_str(&runs[**i].2).expect("uuid");
            steps.iter().any(|s| s.run == run && s.node.as_deref() != Some("n3"))
        })
        .count();
    assert_eq!(resumed, on_n3.len(), "survivors committed steps of each of n3's interrupted runs");
    drop(n1);
    drop(n2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_about_a_quarter_and_a_drained_node_hands_everything_over() {
    let ttl = Duration::from_secs(3);
    let cluster = Cluster::new(ttl).await;
    let n1 = cluster.start("n1", &[]).await;
    let n2 = cluster.start("n2", &[n1.cluster_port]).await;
    let n3 = cluster.start("n3", &[n1.cluster_port]).await;
    cluster.settled(&["n1", "n2", "n3"], Duration::from_secs(60)).await;
    let runs = cluster.tenants_with_runs(20, &n2).await;
    let tenants: Vec<TenantId> = runs.iter().map(|(t, _, _)| *t).collect();

    let n4 = cluster.start("n4", &[n2.cluster_port]).await;
    cluster.settled(&["n1", "n2", "n3", "n4"], Duration::from_secs(60)).await;
    // Moves are rate-limited per tick; wait for the placement to converge.
    let per = eventually("n4 to own its share", Duration::from_secs(60), || async {
        let per = cluster.shards_per_node().await;
        let expected = flywheel_cluster::placement::shards_of("n4", &["n1", "n2", "n3", "n4"].map(str::to_owned)).len();
        (per.get("n4") == Some(&expected)).then_some(per)
    })
    .await;
    let n4_share = per["n4"];
    assert!((40..=90).contains(&n4_share), "about a quarter of 256: {per:?}");

    // Any node answers for any tenant: n1 fetches the live tree of a tenant n3 owns, over the
    // cluster transport.
    let owners = cluster.owners().await;
    let on_n3 = tenants
        .iter()
        .find(|t| owners.get(&i32::from(shard_of(**t).get())).is_some_and(|(o, _)| o == "n3"))
        .expect("a tenant on n3");
    let tree = eventually("n3 to report the tenant's tree through n1", Duration::from_secs(30), || async {
        let tree = admin(&n1, &["tree", &on_n3.to_string()]);
        (tree["active"] == true).then_some(tree)
    })
    .await;
    assert_eq!(tree["owner_node"], "n3", "{tree}");
    assert!(tree["agents"].as_array().is_some_and(|a| !a.is_empty()), "{tree}");

    // Drain n4 through another node's admin plane: it ends up owning nothing.
    let drained = admin(&n1, &["drain", "n4"]);
    assert_eq!(drained["node"]["draining"], true, "{drained}");
    eventually("n4 to own no shard", Duration::from_secs(30), || async {
        let per = cluster.shards_per_node().await;
        (!per.contains_key("n4") && per.values().sum::<usize>() == 256).then_some(())
    })
    .await;
    cluster.all_succeeded(&runs, Duration::from_secs(120)).await;
    cluster.check_invariants(&tenants).await;
    assert!(log_of(&n4).contains("Handed shards over"), "n4 logged its handover");
    let nodes = admin(&n2, &["nodes"]);
    let n4_row = nodes["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == "n4")).cloned();
    assert!(n4_row.as_ref().is_some_and(|n| n["draining"] == true && n["shards"] == 0), "{nodes}");
    drop((n1, n2, n3, n4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_on_the_bus_move_shards_at_once_yet_keep_joins_rate_limited() {
    // A minute-long TTL: nodes tick every 20 s on their own, so a move seen within 8 s of the
    // event that caused it was made because a node heard an announcement.
    let cluster = Cluster::new(Duration::from_secs(60)).await;
    let n1 = cluster.start("n1", &[]).await;
    assert_eq!(cluster.shards_per_node().await.get("n1"), Some(&256), "a lone node owns every shard");

    // n2 announces its arrival; n1 hands one batch over at once and announces the release;
    // n2 takes it at once.
    let n2 = cluster.start("n2", &[n1.cluster_port]).await;
    let first = eventually("n2 to take its first batch", Duration::from_secs(8), || async {
        cluster.shards_per_node().await.get("n2").copied().filter(|n| *n > 0)
    })
    .await;
    // Woken or not, n1 releases at most one batch (16) per period, so a join never thrashes.
    assert!(first <= 16, "one rate-limited batch, not {first}");
    assert!(log_of(&n1).contains("Handed shards over"), "n1 logged its handover");

    // A graceful stop: n1 releases everything and announces it; n2 takes it all at once.
    n1.process.signal("TERM");
    eventually("n2 to own every shard", Duration::from_secs(8), || async {
        (cluster.shards_per_node().await.get("n2") == Some(&256)).then_some(())
    })
    .await;
    let nodes = admin(&n2, &["nodes"]);
    let n1_row = nodes["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == "n1")).cloned();
    assert!(n1_row.as_ref().is_some_and(|n| n["live"] == false && n["shards"] == 0), "{nodes}");
    drop(n2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_past_its_lease_cannot_checkpoint_and_rejoins() {
    let ttl = Duration::from_secs(3);
    let cluster = Cluster::new(ttl).await;
    let n1 = cluster.start("n1", &[]).await;
    let n2 = cluster.start("n2", &[n1.cluster_port]).await;
    let before = cluster.settled(&["n1", "n2"], Duration::from_secs(60)).await;
    let runs = cluster.tenants_with_runs(30, &n1).await;
    let tenants: Vec<TenantId> = runs.iter().map(|(t, _, _)| *t).collect();

    // Pause n2 with work in flight, for well past its leases.
    eventually("n2 to be working", Duration::from_secs(60), || async {
        let steps = cluster.steps(&tenants).await;
        steps.iter().any(|s| s.node.as_deref() == Some("n2")).then_some(())
    })
    .await;
    n2.process.signal("STOP");
    // n1 now holds n2's former shards at a higher epoch. Unlike a killed process, a frozen one
    // keeps its connections: a checkpoint it was in the middle of keeps its lease row
    // share-locked until PostgreSQL ends the idle transaction (after max(TTL, 5 s)), and only
    // then can that shard be taken.
    let idle_timeout = ttl.max(Duration::from_secs(5));
    let during = cluster.settled(&["n1"], ttl + idle_timeout + Duration::from_secs(5)).await;
    for (shard, (owner, epoch)) in &before {
        if owner == "n2" {
            assert_eq!(during[shard].0, "n1");
            assert!(during[shard].1 > *epoch);
        }
    }
    tokio::time::sleep(ttl).await;
    n2.process.signal("CONT");

    // n2 comes back: it takes its share again (handed over by n1, rate-limited) and every run
    // completes with each step once, none committed by n2 under an epoch it had lost.
    cluster.settled(&["n1", "n2"], Duration::from_secs(60)).await;
    cluster.all_succeeded(&runs, Duration::from_secs(120)).await;
    cluster.check_invariants(&tenants).await;
    let log = log_of(&n2);
    assert!(log.contains("Lost shard leases"), "n2 noticed it lost its leases:\n{log}");
    drop((n1, n2));
}

/// The fence itself, deterministically: once a lease has expired and another node took the
/// shard at the next epoch, the old owner's checkpoint fails and leaves nothing behind.
#[tokio::test]
async fn a_checkpoint_under_a_lost_lease_is_refused() {
    let db = TestDb::new().await;
    let tenant = db
        .db
        .create_tenant("Fenced", &flywheel_contracts::Slug::parse("fenced").expect("slug"), "t")
        .await
        .expect("tenant");
    let shard = i32::from(shard_of(tenant.tenant_id).get());
    let short = Duration::from_millis(300);
    let a = db.db.acquire_shards("node-a", &[shard], short).await.expect("a acquires");
    assert_eq!(a, vec![(shard, 1)]);
    // Held and unexpired: nobody else can take it.
    assert!(db.db.acquire_shards("node-b", &[shard], short).await.expect("b tries").is_empty());
    let mut tx = db.db.begin(tenant.tenant_id).await.expect("begin");
    let run = flywheel_storage::runs::create(
        &mut tx,
        flywheel_contracts::api::run::AgentName::Branding,
        &Default::default(),
        "t",
    )
    .await
    .expect("run");
    tx.commit().await.expect("commit");
    let fence_a = flywheel_storage::runs::Fence { node: "node-a".into(), shard, epoch: 1 };
    let output = json!({"ok": true});
    let commit = |name: &'static str, fence| flywheel_storage::runs::StepCommit {
        name,
        attempt: 1,
        idempotency_key: name,
        output: &output,
        started_at: chrono::Utc::now(),
        fence: Some(fence),
    };
    let mut tx = db.db.begin(tenant.tenant_id).await.expect("begin");
    flywheel_storage::runs::commit_step(&mut tx, run.id, 0, 1, &commit("first", &fence_a))
        .await
        .expect("a commits while it holds the lease");
    tx.commit().await.expect("commit");

    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let b = db.db.acquire_shards("node-b", &[shard], Duration::from_secs(30)).await.expect("b acquires");
    assert_eq!(b, vec![(shard, 2)]);
    let mut tx = db.db.begin(tenant.tenant_id).await.expect("begin");
    let refused = flywheel_storage::runs::commit_step(&mut tx, run.id, 1, 2, &commit("second", &fence_a)).await;
    assert!(
        matches!(refused, Err(flywheel_storage::StorageError::Conflict { ref field }) if field == "lease"),
        "{refused:?}"
    );
    drop(tx);
    // A stale owner cannot renew or release the lease it lost either.
    assert!(db.db.renew_shards("node-a", &[(shard, 1)], short).await.expect("renew").is_empty());
    assert!(db.db.release_shards("node-a", &[(shard, 1)]).await.expect("release").is_empty());
    let fence_b = flywheel_storage::runs::Fence { node: "node-b".into(), shard, epoch: 2 };
    let mut tx = db.db.begin(tenant.tenant_id).await.expect("begin");
    flywheel_storage::runs::commit_step(&mut tx, run.id, 1, 2, &commit("second", &fence_b)).await.expect("b commits");
    tx.commit().await.expect("commit");
    let mut tx = db.db.begin(tenant.tenant_id).await.expect("begin");
    let state = flywheel_storage::runs::get(&mut tx, run.id).await.expect("run");
    assert_eq!(state.run.cursor, 2);
    let steps = flywheel_storage::runs::steps(&mut tx, run.id).await.expect("steps");
    assert_eq!(steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["first", "second"]);
}
