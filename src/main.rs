//! The `flywheel` binary: `node` serves a node (joining the cluster of nodes on its database),
//! `migrate` applies the schema, `tenant create` creates a tenant and its first API key, `demo`
//! does all of it with a demo tenant, `doctor` checks that tenant isolation is in force, and
//! `admin` operates nodes, shards, tenants, runs and approvals through the admin gRPC plane.

mod admin;
mod client;
mod config;
mod demo;
mod ingest;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use flywheel_contracts::Slug;
use flywheel_gateway::AppState;
use flywheel_storage::Database;
use flywheel_storage::redis::RedisStore;
use flywheel_storage::vector::VectorMemory;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, LogFormat};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "flywheel", version, about = "Flywheel: the self-hostable, multi-tenant marketing OS")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the HTTP edge and its background maintenance.
    Node,
    /// Create the database if needed and apply the migrations (as the owner role).
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Migrate, make sure a demo tenant exists with sample data, print a fresh API key, then run
    /// a node.
    Demo {
        /// Print the key and exit instead of running a node.
        #[arg(long)]
        no_serve: bool,
    },
    /// Check that the database enforces tenant isolation; exits non-zero if it does not.
    Doctor,
    /// Agent runs on a running node (uses FLYWHEEL_URL and FLYWHEEL_API_KEY).
    Runs {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::RunsCommand,
    },
    /// Approvals on a running node (uses FLYWHEEL_URL and FLYWHEEL_API_KEY).
    Approvals {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::ApprovalsCommand,
    },
    /// The cluster's admin control plane over gRPC (uses FLYWHEEL_ADMIN_ADDR and
    /// FLYWHEEL_ADMIN_TOKEN): nodes, shards, tenants, trees, runs, approvals.
    Admin {
        #[command(flatten)]
        admin: admin::AdminArgs,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its id and an owner API key (shown only this once) as JSON.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.config.log_format);
    match cli.command {
        Command::Node => node(&cli.config, None).await,
        Command::Migrate => migrate(&cli.config).await,
        Command::Tenant { command: TenantCommand::Create { name, slug } } => {
            let slug = Slug::parse(&slug).map_err(|e| anyhow::anyhow!("--slug: {e}"))?;
            let db = Database::connect(&cli.config.database()).await.context("connect to PostgreSQL")?;
            let created = db.create_tenant(&name, &slug, &operator()).await.map_err(|e| match e {
                flywheel_storage::StorageError::Conflict { .. } => {
                    anyhow::anyhow!("a tenant with slug {slug} already exists")
                }
                other => anyhow::Error::new(other).context("create tenant"),
            })?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            Ok(())
        }
        Command::Demo { no_serve } => {
            migrate(&cli.config).await?;
            let demo = demo::prepare(&cli.config).await?;
            if no_serve { Ok(()) } else { node(&cli.config, Some(demo)).await }
        }
        Command::Doctor => doctor(&cli.config).await,
        Command::Runs { client, command } => client::runs(&client, command).await,
        Command::Approvals { client, command } => client::approvals(&client, command).await,
        Command::Admin { admin, command } => admin::run(&admin, command).await,
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Who is at the command line, for the audit log.
fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

async fn migrate(config: &Config) -> Result<()> {
    let owner = config.owner_url();
    flywheel_storage::ensure_database(owner.expose()).await.context("create the database (did scripts/setup run?)")?;
    let applied =
        flywheel_storage::migrate(owner.expose(), config.partition_months_ahead).await.context("apply migrations")?;
    if applied.is_empty() {
        info!("Schema is up to date.");
    } else {
        info!(versions = ?applied, "Migrations applied.");
    }
    Ok(())
}

async fn node(config: &Config, demo: Option<demo::DemoTenant>) -> Result<()> {
    // Settings read from files are checked before anything starts.
    let cluster_config = config.cluster()?;
    let admin_tls = config.admin_tls()?;
    let db = Database::connect(&config.database()).await.context("connect to PostgreSQL")?;
    let redis = RedisStore::connect(&config.redis()).await.context("connect to Redis")?;
    let vector = VectorMemory::from_config(&config.vector()?, db.clone()).context("set up vector memory")?;
    let listener =
        TcpListener::bind(config.http_addr).await.with_context(|| format!("listen on {}", config.http_addr))?;
    info!(addr = %config.http_addr, "Flywheel node listening.");

    let (stop_tx, stop_rx) = watch::channel(false);
    let maintenance = tokio::spawn(partition_maintenance(db.clone(), config.partition_months_ahead, stop_rx.clone()));
    let mut stop_for_http = stop_rx.clone();
    let embedder =
        flywheel_actors::embedding::from_config(&config.embedding()).await.context("load the embedding model")?;
    let model = flywheel_actors::model::from_config(&config.model(), config.budget(), config.structured(), db.clone())
        .context("set up the language model")?;
    let branding = Arc::new(flywheel_actors::branding::BrandingServices {
        model,
        embedder: embedder.clone(),
        vector: vector.clone(),
        db: db.clone(),
    });
    let agents = flywheel_actors::branding::register(flywheel_actors::agent::Registry::default(), branding);
    let leases = flywheel_cluster::Cluster::lease_table(&cluster_config);
    let runtime =
        flywheel_supervisor::Runtime::start(db.clone(), redis.clone(), agents, config.runtime(), leases.clone())
            .await
            .context("start the actor runtime")?;
    let cluster = flywheel_cluster::Cluster::start(
        cluster_config,
        db.clone(),
        Some(redis.cluster_bus()),
        runtime.clone(),
        leases,
    )
    .await
    .map_err(|e| anyhow::anyhow!("join the cluster: {e}"))?;
    info!(node_id = cluster.node_id(), shards = cluster.held_shards(), "Node placed in the cluster.");
    let admin = match &config.admin_token {
        Some(token) => {
            let listener = TcpListener::bind(config.grpc_addr)
                .await
                .with_context(|| format!("listen on {} (admin gRPC)", config.grpc_addr))?;
            info!(addr = %config.grpc_addr, tls = admin_tls.is_some(), "Admin gRPC plane listening.");
            let state =
                flywheel_cluster::admin::AdminState { cluster: cluster.clone(), db: db.clone(), token: token.clone() };
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(flywheel_cluster::admin::serve_tls(listener, state, admin_tls, async move {
                let _ = stop.wait_for(|s| *s).await;
            })))
        }
        None => {
            info!("No FLYWHEEL_ADMIN_TOKEN: the admin gRPC plane is not served.");
            if admin_tls.is_some() {
                warn!("FLYWHEEL_ADMIN_TLS_* is set without FLYWHEEL_ADMIN_TOKEN: the admin plane stays off.");
            }
            None
        }
    };
    let state = AppState::new(db.clone(), redis.clone(), vector, runtime.clone(), Some(embedder), config.gateway());
    // FLYWHEEL_INGESTORS=0: an edge-only node, accepting events that other nodes store.
    let ingest = if config.ingestors > 0 {
        let connections =
            ingest::Connections { database: config.database(), redis: config.redis(), stream: config.stream() };
        Some(ingest::IngestThread::start(connections, config.ingest(), config.ingest_nice).await?)
    } else {
        None
    };
    if let Some(demo) = demo {
        let (runtime, db, config) = (runtime.clone(), db.clone(), config.clone());
        tokio::spawn(async move {
            if let Err(e) = demo::branding_run(runtime, db, demo, config).await {
                warn!(error = %e, "The demo Branding run could not be prepared.");
            }
        });
    }
    let server = tokio::spawn(flywheel_gateway::serve(listener, state, async move {
        let _ = stop_for_http.wait_for(|stop| *stop).await;
    }));

    shutdown_signal().await;
    info!("Shutting down: finishing in-flight requests.");
    let _ = stop_tx.send(true);
    server.await.context("HTTP server task")?.context("HTTP server")?;
    if let Some(admin) = admin {
        admin.await.context("admin gRPC task")?.context("admin gRPC server")?;
    }
    // Hand the shards over at once, so other nodes resume this node's tenants without waiting
    // for the leases to expire.
    cluster.shutdown().await;
    runtime.stop();
    if let Some(ingest) = ingest {
        ingest.stop().await;
    }
    let _ = maintenance.await;
    redis.quit().await;
    db.close().await;
    info!("Stopped.");
    Ok(())
}

/// Keeps the coming months' event partitions created, hourly.
async fn partition_maintenance(db: Database, months_ahead: u32, mut stop: watch::Receiver<bool>) {
    loop {
        match db.ensure_partitions(months_ahead).await {
            Ok(0) => {}
            Ok(n) => info!(created = n, "Event partitions created."),
            Err(e) => warn!(error = %e, "Could not create event partitions; will retry."),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn doctor(config: &Config) -> Result<()> {
    let db = Database::connect(&config.database()).await.context("connect to PostgreSQL")?;
    let role = db.role_security().await?;
    println!(
        "connected as {} (superuser: {}, bypassrls: {}, owns tables: {})",
        role.role, role.superuser, role.bypass_rls, role.owns_tables
    );
    let mut problems = 0;
    for t in db.table_security().await? {
        let tenant_table = t.has_tenant_id || t.table == "tenants";
        let ok = !tenant_table || (t.rls_enabled && t.rls_forced && !t.policies.is_empty());
        if !ok {
            problems += 1;
        }
        if tenant_table {
            println!(
                "{} {:<32} rls={} forced={} policies={}",
                if ok { "ok  " } else { "FAIL" },
                t.table,
                t.rls_enabled,
                t.rls_forced,
                t.policies.join(",")
            );
        }
    }
    if problems > 0 {
        bail!("{problems} tenant table(s) without forced row-level security");
    }
    println!("tenant isolation: enforced");
    Ok(())
}
