//! Where the benchmarks find PostgreSQL and Redis, and [`BenchDatabase`]: the database a run
//! creates from the `flywheel_base` template, migrates, and drops when it is done.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use flywheel_contracts::Secret;
use flywheel_storage::redis::{RedisConfig, RedisStore};
use flywheel_storage::{Database, DatabaseConfig};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// How long any one connection attempt may take before the benchmark gives up with an error
/// saying which service is missing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Creating a database and applying every migration.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(120);

/// Connection settings, from flags or the environment, with the defaults `scripts/setup` uses.
#[derive(Debug, Clone, clap::Args)]
pub struct Services {
    /// PostgreSQL `host:port`; it needs the roles and the `flywheel_base` template that
    /// `scripts/setup` creates.
    #[arg(long, env = "FLYWHEEL_BENCH_PG_HOST", default_value = "127.0.0.1:5432", global = true)]
    pub pg_host: String,
    /// Password of `flywheel_owner` (creates, migrates and drops the bench database).
    #[arg(long, env = "FLYWHEEL_OWNER_PASSWORD", hide_env_values = true, default_value = "flywheel", value_parser = secret, global = true)]
    pub owner_password: Secret<String>,
    /// Password of `flywheel_app` (what a node connects as; every measured path uses it).
    #[arg(long, env = "FLYWHEEL_APP_PASSWORD", hide_env_values = true, default_value = "flywheel", value_parser = secret, global = true)]
    pub app_password: Secret<String>,
    /// Redis URL; the benchmarks write under a namespace of their own, `bench:<uuid>`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = "redis://127.0.0.1:6379", value_parser = secret, global = true)]
    pub redis_url: Secret<String>,
}

// Infallible: any string is a valid secret; clap needs the parser's error type.
fn secret(value: &str) -> Result<Secret<String>, std::convert::Infallible> {
    Ok(Secret::new(value.to_owned()))
}

impl Services {
    fn owner_url(&self, database: &str) -> String {
        format!("postgres://flywheel_owner:{}@{}/{database}", self.owner_password.expose(), self.pg_host)
    }

    fn app_url(&self, database: &str) -> String {
        format!("postgres://flywheel_app:{}@{}/{database}", self.app_password.expose(), self.pg_host)
    }

    /// A Redis store under a fresh `bench:<uuid>` namespace.
    pub async fn redis(&self) -> Result<RedisStore> {
        let namespace = format!("bench:{}", uuid::Uuid::new_v4().simple());
        let config = RedisConfig::new(self.redis_url.expose().clone(), namespace);
        tokio::time::timeout(CONNECT_TIMEOUT, RedisStore::connect(&config))
            .await
            .map_err(|_| anyhow!("Redis (REDIS_URL) did not answer within {CONNECT_TIMEOUT:?}; is it running?"))?
            .context("cannot connect to Redis (REDIS_URL, default redis://127.0.0.1:6379); is it running?")
    }
}

/// A database of the benchmark's own, `flywheel_bench_<uuid>`: created from `flywheel_base`,
/// migrated, and dropped by [`BenchDatabase::remove`], which every benchmark calls whatever
/// happened in between.
#[derive(Debug)]
pub struct BenchDatabase {
    name: String,
    services: Services,
}

impl BenchDatabase {
    pub async fn create(services: &Services) -> Result<Self> {
        let name = format!("flywheel_bench_{}", uuid::Uuid::new_v4().simple());
        let owner_url = services.owner_url(&name);
        tokio::time::timeout(CONNECT_TIMEOUT, flywheel_storage::ensure_database(&owner_url))
            .await
            .map_err(|_| anyhow!("PostgreSQL at {} did not answer within {CONNECT_TIMEOUT:?}", services.pg_host))?
            .with_context(|| {
                format!(
                    "cannot create database {name} from template flywheel_base as flywheel_owner at {}; \
                     is PostgreSQL running, and did scripts/setup run?",
                    services.pg_host
                )
            })?;
        let created = Self { name, services: services.clone() };
        println!("  database {} created from flywheel_base; migrating…", created.name);
        // From here on the database exists: a failure drops it again before reporting.
        let migrated = tokio::time::timeout(PREPARE_TIMEOUT, flywheel_storage::migrate(&owner_url, 3))
            .await
            .map_err(|_| anyhow!("migrating {} took more than {PREPARE_TIMEOUT:?}", created.name))
            .and_then(|r| r.with_context(|| format!("cannot migrate {}", created.name)));
        match migrated {
            Ok(_) => Ok(created),
            Err(e) => {
                created.remove().await;
                Err(e)
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The application role's URL of this database.
    pub fn app_url(&self) -> String {
        self.services.app_url(&self.name)
    }

    /// The node's view: a pool of the application role, as `flywheel node` opens it.
    pub async fn connect(&self, max_connections: u32) -> Result<Database> {
        let mut config = DatabaseConfig::new(self.app_url());
        config.max_connections = max_connections;
        tokio::time::timeout(CONNECT_TIMEOUT, Database::connect(&config))
            .await
            .map_err(|_| anyhow!("PostgreSQL did not answer within {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("cannot connect to {} as flywheel_app", self.name))
    }

    /// One connection as the owner, for setting up baseline tables.
    pub async fn owner(&self) -> Result<PgConnection> {
        owner_connection(&self.services, &self.name).await
    }

    /// Drops the database (ending any session still open on it). Failures are printed, not
    /// returned: this runs on the way out, after the figures or the error that matters.
    pub async fn remove(self) {
        let drop = async {
            let mut admin = owner_connection(&self.services, "postgres").await?;
            let quoted = format!("\"{}\"", self.name.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists {quoted} with (force)")))
                .execute(&mut admin)
                .await?;
            admin.close().await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, drop).await {
            Ok(Ok(())) => println!("  database {} dropped", self.name),
            Ok(Err(e)) => eprintln!("warning: could not drop database {}: {e:#}", self.name),
            Err(_) => eprintln!("warning: dropping database {} timed out; drop it by hand", self.name),
        }
    }
}

/// How long purging a benchmark's Redis namespace may take (thousands of keys, a page of `SCAN`
/// at a time).
const PURGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Deletes the keys of a benchmark's Redis namespace and closes the store: what
/// [`BenchDatabase::remove`] is to PostgreSQL. Every benchmark calls it last, whatever happened,
/// so that runs leave no streams, leases or counters behind.
pub async fn remove_redis(redis: RedisStore) {
    match tokio::time::timeout(PURGE_TIMEOUT, redis.purge_namespace()).await {
        Ok(Ok(keys)) => println!("  Redis namespace {} purged ({keys} keys)", redis.namespace()),
        Ok(Err(e)) => eprintln!("warning: could not purge Redis namespace {}: {e:#}", redis.namespace()),
        Err(_) => {
            eprintln!("warning: purging Redis namespace {} timed out; delete its keys by hand", redis.namespace())
        }
    }
    redis.quit().await;
}

async fn owner_connection(services: &Services, database: &str) -> Result<PgConnection> {
    let options = PgConnectOptions::from_str(&services.owner_url(database))
        .context("the PostgreSQL host or owner password do not form a valid URL")?
        .application_name("flywheel-bench");
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| anyhow!("PostgreSQL at {} did not answer within {CONNECT_TIMEOUT:?}", services.pg_host))?
        .with_context(|| format!("cannot connect to {database} as flywheel_owner at {}", services.pg_host))
}
