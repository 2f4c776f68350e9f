//! Test support for Flywheel's end-to-end tests: each test gets its own PostgreSQL database
//! (cloned from a migrated template) and its own Redis namespace, against the real services.
//!
//! The template `flywheel_tpl_<fingerprint of the migrations>` is built once per set of
//! migrations (under an advisory lock, so parallel test processes build it once) and cloned
//! per test in milliseconds. Databases are dropped when the `TestDb` is.

// Tests reach PostgreSQL with raw SQL on purpose: to read the catalog and to attack row-level
// security in ways the typed storage API cannot even express.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod webdriver;

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use flywheel_storage::redis::{RedisConfig, RedisStore};
use flywheel_storage::{Database, DatabaseConfig};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// The ports tests give the processes they start: below Linux's ephemeral range (32768–60999).
/// A port found by binding port 0 and let go lies in that range, where an outgoing connection
/// or another test's listener could take it before the process bound it (a node of the TLS test
/// once failed so: "Address already in use"). Here only [`free_port`] hands ports out.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port on 127.0.0.1 that nothing listens on, for a process a test starts: never the same
/// twice in one test binary (they go round from a start drawn per process), and checked free.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let next = NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        AtomicU32::new(std::process::id().wrapping_mul(7_919).wrapping_add(nanos) % span)
    });
    for _ in 0..span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + u16::try_from(offset).expect("the offset is within the range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

/// Where the test PostgreSQL is, and the passwords `scripts/setup` gave the roles.
fn pg_host() -> String {
    std::env::var("FLYWHEEL_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1:5432".to_owned())
}
fn owner_password() -> String {
    std::env::var("FLYWHEEL_OWNER_PASSWORD").unwrap_or_else(|_| "flywheel".to_owned())
}
fn app_password() -> String {
    std::env::var("FLYWHEEL_APP_PASSWORD").unwrap_or_else(|_| "flywheel".to_owned())
}
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn owner_url(db: &str) -> String {
    format!("postgres://flywheel_owner:{}@{}/{db}", owner_password(), pg_host())
}
pub fn app_url(db: &str) -> String {
    format!("postgres://flywheel_app:{}@{}/{db}", app_password(), pg_host())
}

/// A fresh, migrated database for one test, connected as the application role.
pub struct TestDb {
    pub name: String,
    pub db: Database,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let template = ensure_template().await;
        let name = format!("ft_{}", uuid::Uuid::new_v4().simple());
        let mut admin = owner_conn("postgres").await;
        let create = format!("create database {name} template {template}");
        let mut attempt = 0;
        loop {
            match sqlx::query(sqlx::AssertSqlSafe(create.clone())).execute(&mut admin).await {
                Ok(_) => break,
                // 55006: the template is briefly in use by another clone; wait and retry.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") && attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create test database {name}: {e}"),
            }
        }
        let _ = admin.close().await;
        let mut config = DatabaseConfig::new(app_url(&name));
        config.max_connections = 8;
        let db = Database::connect(&config).await.expect("connect as flywheel_app");
        TestDb { name, db }
    }

    /// A raw connection to this test's database as the owner role (for catalog checks).
    pub async fn owner(&self) -> PgConnection {
        owner_conn(&self.name).await
    }

    /// A raw connection to this test's database as the application role (for attacks that the
    /// typed API cannot even express).
    pub async fn app(&self) -> PgConnection {
        PgConnectOptions::from_str(&app_url(&self.name))
            .expect("valid URL")
            .connect()
            .await
            .expect("connect as flywheel_app")
    }

    pub fn app_url(&self) -> String {
        app_url(&self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's pooled sessions (as `flywheel_app`) are still open: the pool lives on the
        // test's runtime, which the cleanup must not wait for. `with (force)` cannot end them as
        // the owner (only a member of their role or of `pg_signal_backend` may), and a drop that
        // failed on that left nearly every test's database behind. So `flywheel_app` ends its own
        // sessions first, then the owner drops the database, ending its own.
        clean_up(format!("drop the test database {name}"), move || {
            let name = name.clone();
            async move {
                end_app_sessions(&name).await?;
                let mut admin = PgConnectOptions::from_str(&owner_url("postgres"))?.connect().await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists {name} with (force)")))
                    .execute(&mut admin)
                    .await?;
                let _ = admin.close().await;
                Ok(())
            }
        });
    }
}

/// Ends every `flywheel_app` session in database `name` but the one that asks (a role may end
/// its own sessions). A database that is gone has none.
async fn end_app_sessions(name: &str) -> Result<(), sqlx::Error> {
    let mut app = match PgConnectOptions::from_str(&app_url(name))?.connect().await {
        Ok(conn) => conn,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => return Ok(()),
        Err(e) => return Err(e),
    };
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and usename = current_user and pid <> pg_backend_pid()",
    )
    .execute(&mut app)
    .await?;
    let _ = app.close().await;
    Ok(())
}

/// Runs a `Drop`'s cleanup to its end: drop runs outside async, so a short-lived runtime on a
/// thread of its own does the work. A failed attempt (a busy server refusing connections while
/// the suite runs) is tried again; one that never succeeds is said on stderr, which the harness
/// shows with a failing test's output (and every test's under `--nocapture`).
fn clean_up<F, Fut>(what: String, work: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            eprintln!("could not {what}: no runtime for the cleanup");
            return;
        };
        rt.block_on(async {
            let mut last = None;
            for attempt in 0..4u32 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                match work().await {
                    Ok(()) => return,
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                eprintln!("could not {what}: {e}");
            }
        });
    })
    .join();
}

async fn owner_conn(db: &str) -> PgConnection {
    PgConnectOptions::from_str(&owner_url(db))
        .expect("valid URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {db} as flywheel_owner (did scripts/setup run?): {e}"))
}

/// Builds the migrated template for the current migrations once, across test processes.
async fn ensure_template() -> String {
    let template = format!("flywheel_tpl_{}", flywheel_storage::migrations_fingerprint());
    let mut admin = owner_conn("postgres").await;
    sqlx::query("select pg_advisory_lock(7365420003)").execute(&mut admin).await.expect("lock");
    let exists: bool = sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists {building} with (force)")))
            .execute(&mut admin)
            .await
            .expect("drop half-built template");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {building} template flywheel_base")))
            .execute(&mut admin)
            .await
            .expect("create template (did scripts/setup run?)");
        flywheel_storage::migrate(&owner_url(&building), 3).await.expect("migrate the template");
        // Renamed only once complete, so a crash mid-build never leaves a broken template.
        sqlx::query(sqlx::AssertSqlSafe(format!("alter database {building} rename to {template}")))
            .execute(&mut admin)
            .await
            .expect("rename template");
    }
    sqlx::query("select pg_advisory_unlock(7365420003)").execute(&mut admin).await.expect("unlock");
    let _ = admin.close().await;
    template
}

/// A Redis namespace of a test's own (`test:<uuid>`) whose keys are deleted when it is dropped,
/// as a [`TestDb`]'s database is: streams with their payloads, leases, rate-limit buckets; without
/// it each run of the suite left every test's keys in the machine's Redis. Declare it before
/// whatever writes under it (a node process, a [`TestApp`]), so that it is dropped after them.
pub struct TestNamespace(String);

impl TestNamespace {
    pub fn new() -> Self {
        Self(format!("test:{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A store under this namespace.
    pub async fn store(&self) -> RedisStore {
        test_redis_in(self.0.clone()).await
    }
}

impl Default for TestNamespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let namespace = self.0.clone();
        clean_up(format!("delete the keys of {namespace}"), move || {
            let namespace = namespace.clone();
            async move {
                let store = RedisStore::connect(&RedisConfig::new(redis_url(), namespace)).await?;
                let purged = store.purge_namespace().await;
                store.quit().await;
                purged?;
                Ok(())
            }
        });
    }
}

/// A Redis store under the given namespace (a test that needs namespaces related by name). Its
/// keys stay when the test ends unless the test deletes them.
pub async fn test_redis_in(namespace: String) -> RedisStore {
    RedisStore::connect(&RedisConfig::new(redis_url(), namespace)).await.expect("connect to Redis")
}

/// A plain Redis client, outside any namespace: for what tests look at below the storage crate's
/// API (keys left behind, counts set by hand, a consumer group's pending entries).
pub async fn raw_redis() -> fred::prelude::Client {
    use fred::prelude::ClientLike;
    let client =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis_url()).expect("the Redis URL"))
            .build()
            .expect("a Redis client");
    client.init().await.expect("connect to Redis");
    client
}

/// A running HTTP edge on a free loopback port, over its own database and Redis namespace.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub test_db: TestDb,
    pub redis: RedisStore,
    pub runtime: flywheel_supervisor::Runtime,
    /// This node's membership: it holds every shard lease of its own database (a lone node),
    /// so the runtime's checkpoints are fenced as in production.
    pub cluster: flywheel_cluster::Cluster,
    /// The event ingestors of this node (reading the test's own Redis namespace).
    pub ingest: flywheel_supervisor::Ingest,
    pub stream: flywheel_storage::event_stream::EventStream,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The namespace of `redis`: last, so that its keys are deleted after everything else of the
    /// node was told to stop.
    pub namespace: TestNamespace,
}

/// A tenant created for a test, with its owner key.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub id: flywheel_contracts::TenantId,
    pub owner_key: String,
    /// The tenant's public write key (tracking script and pixel).
    pub write_key: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(flywheel_gateway::GatewayConfig::default()).await
    }

    pub async fn spawn_with(config: flywheel_gateway::GatewayConfig) -> TestApp {
        Self::spawn_full(config, Default::default(), test_runtime_config(), None).await
    }

    /// A node whose agents (and embedder) are built from its own test database.
    pub async fn spawn_with_agents(
        build: impl FnOnce(&Database) -> (flywheel_actors::agent::Registry, Option<flywheel_actors::embedding::Embeddings>),
    ) -> TestApp {
        let test_db = TestDb::new().await;
        let (registry, embedder) = build(&test_db.db);
        Self::start(test_db, flywheel_gateway::GatewayConfig::default(), registry, test_runtime_config(), embedder)
            .await
    }

    /// A node running the real Branding agent on the offline language model and the local
    /// embedding model (which `scripts/setup` installs), with its budget and vector memory in the
    /// test's own database.
    pub async fn spawn_with_branding() -> TestApp {
        use flywheel_actors::embedding::{EmbeddingConfig, from_config};
        use flywheel_storage::vector::{VectorConfig, VectorMemory};
        let embedder = from_config(&EmbeddingConfig::default())
            .await
            .expect("the local embedding model (scripts/setup installs it with scripts/fetch-model)");
        Self::spawn_with_agents(move |db| {
            let vector = VectorMemory::from_config(&VectorConfig::Pgvector, db.clone()).expect("pgvector memory");
            let model = flywheel_actors::model::from_config(
                &Default::default(),
                Default::default(),
                Default::default(),
                db.clone(),
            )
            .expect("offline model");
            let services = std::sync::Arc::new(flywheel_actors::branding::BrandingServices {
                model,
                embedder: embedder.clone(),
                vector,
                db: db.clone(),
            });
            (flywheel_actors::branding::register(Default::default(), services), Some(embedder))
        })
        .await
    }

    /// A node with these agents and runtime settings.
    pub async fn spawn_full(
        config: flywheel_gateway::GatewayConfig,
        registry: flywheel_actors::agent::Registry,
        runtime: flywheel_supervisor::RuntimeConfig,
        embedder: Option<flywheel_actors::embedding::Embeddings>,
    ) -> TestApp {
        Self::start(TestDb::new().await, config, registry, runtime, embedder).await
    }

    async fn start(
        test_db: TestDb,
        config: flywheel_gateway::GatewayConfig,
        registry: flywheel_actors::agent::Registry,
        runtime: flywheel_supervisor::RuntimeConfig,
        embedder: Option<flywheel_actors::embedding::Embeddings>,
    ) -> TestApp {
        let namespace = TestNamespace::new();
        let redis = namespace.store().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let vector = flywheel_storage::vector::VectorMemory::from_config(&Default::default(), test_db.db.clone())
            .expect("pgvector memory");
        let cluster_config = flywheel_cluster::ClusterConfig::solo();
        let leases = flywheel_cluster::Cluster::lease_table(&cluster_config);
        let runtime =
            flywheel_supervisor::Runtime::start(test_db.db.clone(), redis.clone(), registry, runtime, leases.clone())
                .await
                .expect("start the runtime");
        let cluster = flywheel_cluster::Cluster::start(
            cluster_config,
            test_db.db.clone(),
            Some(redis.cluster_bus()),
            runtime.clone(),
            leases,
        )
        .await
        .expect("join the (one-node) cluster");
        let state = flywheel_gateway::AppState::new(
            test_db.db.clone(),
            redis.clone(),
            vector,
            runtime.clone(),
            embedder,
            config,
        );
        let stream = state.event_stream().clone();
        let ingest = flywheel_supervisor::Ingest::start(test_db.db.clone(), stream.clone(), test_ingest_config())
            .await
            .expect("start the event ingestors");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(flywheel_gateway::serve(listener, state, async {
            let _ = rx.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder().no_proxy().build().expect("HTTP client"),
            test_db,
            redis,
            runtime,
            cluster,
            ingest,
            stream,
            shutdown: Some(tx),
            namespace,
        }
    }

    pub fn db(&self) -> &Database {
        &self.test_db.db
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a tenant (through the same path as `flywheel tenant create`).
    pub async fn tenant(&self, slug: &str) -> TestTenant {
        let slug = flywheel_contracts::Slug::parse(slug).expect("test slug");
        let created = self.db().create_tenant(&format!("Tenant {slug}"), &slug, "test").await.expect("create tenant");
        TestTenant { id: created.tenant_id, owner_key: created.api_key, write_key: created.write_key }
    }

    /// An extra key with `role` for `tenant`.
    pub async fn key(&self, tenant: &TestTenant, role: flywheel_contracts::Role) -> String {
        let mut tx = self.db().begin(tenant.id).await.expect("begin");
        let (_, key) = flywheel_storage::api_keys::create(
            &mut tx,
            &format!("{role} key"),
            role,
            &flywheel_storage::audit::Actor::System,
        )
        .await
        .expect("create key");
        tx.commit().await.expect("commit");
        key.plain.expose().clone()
    }

    /// Sends `method path` with `key` and an optional JSON body; returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request reaches the test server");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"))
        };
        (status, json)
    }
}

/// Runtime settings for tests: quick restarts and sweeps, so outcomes arrive in milliseconds.
pub fn test_runtime_config() -> flywheel_supervisor::RuntimeConfig {
    flywheel_supervisor::RuntimeConfig {
        sweep_interval: Duration::from_millis(500),
        restart_backoff: Duration::from_millis(20),
        idle_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Ingest settings for tests: small batches and quick takeover of a dead consumer's entries.
pub fn test_ingest_config() -> flywheel_supervisor::IngestConfig {
    flywheel_supervisor::IngestConfig {
        max_linger: Duration::from_millis(20),
        claim_idle: Duration::from_secs(2),
        claim_interval: Duration::from_millis(500),
        retry_backoff: Duration::from_millis(100),
        statistics_interval: Duration::from_millis(200),
        consumer_prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    }
}

/// A transaction on a raw connection under `tenant`'s row-level-security context (what
/// `Database::begin` does for the pool), for tests that hold their own connection.
pub async fn tenant_tx(conn: &mut PgConnection, tenant: uuid::Uuid) -> sqlx::Transaction<'_, sqlx::Postgres> {
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .expect("set the tenant context");
    tx
}

/// Polls `check` until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.runtime.stop();
        // On a multi-threaded runtime the ingestors run on while the namespace is purged: one
        // that read its stream after the purge would make the stream and its group again, and
        // leave them. So wait until they ended. (On a test's single thread nothing runs during
        // the purge, and the runtime ends with the test.)
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(self.ingest.stop_and_wait(Duration::from_secs(10))));
            }
            _ => self.ingest.stop(),
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
