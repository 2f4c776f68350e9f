//! The PostgreSQL side: the application pool, the tenant-scoped transaction every tenant
//! query runs in, and the migrations (run as the owner role).

use std::str::FromStr;
use std::time::Duration;

use flywheel_contracts::{Secret, TenantId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::{Result, StorageError};

/// The embedded migrations (`migrations/*.sql`), applied by `flywheel migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The application role's URL (`flywheel_app`): not a superuser, not an owner, no BYPASSRLS.
    pub url: Secret<String>,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before the answer is "unavailable".
    pub acquire_timeout: Duration,
    /// Upper bound on any one statement; a runaway query is cancelled, not left to pile up.
    pub statement_timeout: Duration,
    /// A session idle inside a transaction this long is ended by PostgreSQL, releasing its
    /// locks: a node frozen mid-transaction (SIGSTOP, a VM pause) cannot hold a shard lease's
    /// share lock, and so its shard, hostage. No transaction here waits on anything slow.
    pub idle_in_transaction_timeout: Duration,
}

impl DatabaseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url.into()),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(10),
        }
    }
}

/// The node's handle on PostgreSQL, connected as the application role.
#[derive(Clone, Debug)]
pub struct Database {
    pool: PgPool,
}

impl Database {
    /// Connects and refuses to run as a role that row-level security would not bind: a
    /// superuser, a role with BYPASSRLS, or a role that owns tables.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let options = PgConnectOptions::from_str(config.url.expose())
            .map_err(|e| StorageError::Internal(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?
            .application_name("flywheel")
            .options([
                ("statement_timeout", format!("{}", config.statement_timeout.as_millis())),
                ("idle_in_transaction_session_timeout", format!("{}", config.idle_in_transaction_timeout.as_millis())),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StorageError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        let (user, unsafe_role, owns_tables): (String, bool, bool) = sqlx::query_as(
            "select current_user::text, r.rolsuper or r.rolbypassrls,
                    exists (select from pg_class c join pg_namespace n on n.oid = c.relnamespace
                             where c.relowner = r.oid and n.nspname = 'public' and c.relkind in ('r', 'p'))
               from pg_roles r where r.rolname = current_user",
        )
        .fetch_one(&pool)
        .await?;
        if unsafe_role || owns_tables {
            return Err(StorageError::Internal(format!(
                "refusing to run as PostgreSQL role {user:?}: it is a superuser, has BYPASSRLS or owns \
                 tables, so row-level security would not bind it; connect as flywheel_app"
            )));
        }
        Ok(Self { pool })
    }

    /// Begins a transaction scoped to `tenant`: every statement in it sees and writes only that
    /// tenant's rows. The scope ends with the transaction (commit, rollback or drop), so a pooled
    /// connection never carries one tenant's context into another's work.
    pub async fn begin(&self, tenant: TenantId) -> Result<TenantTx> {
        // One round trip: BEGIN and the tenant setting go together as one simple query. The
        // tenant is a UUID printed by its type (hex digits and dashes), so it is safe to inline.
        let begin = format!("begin; select set_config('app.tenant_id', '{}', true)", tenant.as_uuid());
        let tx = self.pool.begin_with(sqlx::AssertSqlSafe(begin)).await?;
        Ok(TenantTx { tx, tenant })
    }

    /// Liveness of the database for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Creates monthly partitions of `events` and `affiliate_events` for this month, the next
    /// `months_ahead`, and every month the default partitions hold rows for, moving those rows
    /// into them. Returns how many partitions were created.
    pub async fn ensure_partitions(&self, months_ahead: u32) -> Result<u32> {
        let months = i32::try_from(months_ahead).unwrap_or(i32::MAX);
        let created: i32 =
            sqlx::query_scalar("select flywheel_ensure_partitions($1)").bind(months).fetch_one(&self.pool).await?;
        Ok(u32::try_from(created).unwrap_or(0))
    }

    /// The pool, for the pre-tenant functions in this crate.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction bound to one tenant. The only way to run a query on tenant data: every
/// repository function takes `&mut TenantTx`. Dropping it without `commit` rolls back.
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant: TenantId,
}

impl TenantTx {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// The connection, for this crate's repositories only.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Creates database `name` from the `flywheel_base` template (which carries pgvector) if it does
/// not exist yet. `owner_url` is the owner role's URL; its database part is ignored.
pub async fn ensure_database(owner_url: &str) -> Result<()> {
    let target = PgConnectOptions::from_str(owner_url)
        .map_err(|e| StorageError::Internal(format!("owner URL is not a valid PostgreSQL URL: {e}")))?;
    let name = target.get_database().unwrap_or("flywheel").to_owned();
    let maintenance = target.clone().database("postgres");
    let mut conn = sqlx::ConnectOptions::connect(&maintenance)
        .await
        .map_err(|e| StorageError::Unavailable(format!("cannot connect to PostgreSQL as the owner role: {e}")))?;
    let exists: bool = sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {quoted} template flywheel_base")))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

/// Applies the embedded migrations as the owner role and creates the coming months' partitions.
/// Returns the versions newly applied.
pub async fn migrate(owner_url: &str, partition_months_ahead: u32) -> Result<Vec<i64>> {
    let options = PgConnectOptions::from_str(owner_url)
        .map_err(|e| StorageError::Internal(format!("owner URL is not a valid PostgreSQL URL: {e}")))?
        .application_name("flywheel-migrate");
    let mut conn = sqlx::ConnectOptions::connect(&options)
        .await
        .map_err(|e| StorageError::Unavailable(format!("cannot connect to PostgreSQL as the owner role: {e}")))?;
    let before: Vec<i64> = applied_versions(&mut conn).await.unwrap_or_default();
    MIGRATOR.run(&mut conn).await.map_err(|e| StorageError::Internal(format!("migration failed: {e}")))?;
    sqlx::query("select flywheel_ensure_partitions($1)")
        .bind(i32::try_from(partition_months_ahead).unwrap_or(i32::MAX))
        .execute(&mut conn)
        .await?;
    let after = applied_versions(&mut conn).await?;
    Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
}

async fn applied_versions(conn: &mut PgConnection) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
        .fetch_all(conn)
        .await?)
}

/// A fingerprint of the embedded migrations: changes whenever a migration is added or changed.
/// Tests name their migrated template database after it.
pub fn migrations_fingerprint() -> String {
    let mut acc: u64 = 0xcbf2_9ce4_8422_2325;
    for m in MIGRATOR.iter() {
        for b in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
            acc ^= u64::from(*b);
            acc = acc.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{acc:016x}")
}
