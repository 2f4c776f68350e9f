//! Tenant isolation enforced by PostgreSQL itself: the catalog (every tenant table has forced
//! row-level security, the app role cannot bypass it), a cross-tenant matrix over every tenant
//! table and partition, composite foreign keys, and pooled connections.

use flywheel_contracts::api::lead::LeadCreate;
use flywheel_contracts::{Email, Slug, TenantId};
use flywheel_storage::{ListQuery, leads};
use flywheel_tests::{TestDb, tenant_tx};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

/// Tables without a tenant_id, each for a reason.
const NOT_TENANT_TABLES: &[&str] = &[
    "_sqlx_migrations", // migration bookkeeping; the app role has no privilege on it
    "tenants",          // the tenant itself: RLS by `id`, checked separately
    // The cluster's own state: nodes, shard leases and their history. No tenant data; shards
    // are numbers, and which tenants map to a shard is a hash computed by the nodes.
    "cluster_nodes",
    "shard_leases",
    "shard_lease_log",
];

/// What is wrong with tenant isolation according to the catalog; empty when all is well.
async fn isolation_problems(conn: &mut PgConnection) -> Vec<String> {
    let mut problems = Vec::new();
    let tables = sqlx::query(
        "select c.relname::text as name, c.relrowsecurity as rls, c.relforcerowsecurity as forced,
                exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'
                                                     and not a.attisdropped) as has_tenant
           from pg_class c where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read pg_class");
    for t in &tables {
        let name: String = t.get("name");
        let has_tenant: bool = t.get("has_tenant");
        if !has_tenant && !NOT_TENANT_TABLES.contains(&name.as_str()) {
            problems.push(format!("{name}: no tenant_id column and not listed as a non-tenant table"));
        }
        if has_tenant || name == "tenants" {
            if !t.get::<bool, _>("rls") {
                problems.push(format!("{name}: row-level security not enabled"));
            }
            if !t.get::<bool, _>("forced") {
                problems.push(format!("{name}: row-level security not forced"));
            }
            let policy: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                "select qual, with_check from pg_policies
                  where schemaname = 'public' and tablename = $1 and policyname in ('tenant_isolation', 'tenant_self')
                    and 'public' = any(roles)",
            )
            .bind(&name)
            .fetch_optional(&mut *conn)
            .await
            .expect("read pg_policies");
            match policy {
                Some((Some(qual), Some(check)))
                    if qual.contains("current_setting('app.tenant_id'")
                        && check.contains("current_setting('app.tenant_id'") => {}
                _ => problems.push(format!("{name}: no tenant policy on app.tenant_id for USING and WITH CHECK")),
            }
        }
    }
    // Every foreign key between tenant tables carries tenant_id, so a row cannot point at
    // another tenant's row.
    let fks = sqlx::query(
        "select con.conname::text as name, c.relname::text as tbl
           from pg_constraint con
           join pg_class c on c.oid = con.conrelid
           join pg_class r on r.oid = con.confrelid
          where con.contype = 'f' and c.relnamespace = 'public'::regnamespace and r.relname <> 'tenants'
            and con.conparentid = 0
            and not exists (select from pg_attribute a where a.attrelid = con.conrelid and a.attname = 'tenant_id'
                                                        and a.attnum = any(con.conkey))",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read pg_constraint");
    for fk in fks {
        problems.push(format!(
            "{}: foreign key {} does not include tenant_id",
            fk.get::<String, _>("tbl"),
            fk.get::<String, _>("name")
        ));
    }
    // Unique keys of tenant tables include tenant_id (except the global API key hash and write key,
    // which name their tenant).
    let uniques = sqlx::query(
        "select con.conname::text as name, c.relname::text as tbl
           from pg_constraint con join pg_class c on c.oid = con.conrelid
          where con.contype in ('u', 'p') and c.relnamespace = 'public'::regnamespace and con.conparentid = 0
            and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id')
            and not exists (select from pg_attribute a where a.attrelid = con.conrelid and a.attname = 'tenant_id'
                                                        and a.attnum = any(con.conkey))
            and con.conname not in ('api_keys_key_hash_key', 'tracking_settings_write_key_key')",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read unique constraints");
    for u in uniques {
        problems.push(format!(
            "{}: unique key {} does not include tenant_id",
            u.get::<String, _>("tbl"),
            u.get::<String, _>("name")
        ));
    }
    problems
}

#[tokio::test]
async fn catalog_every_tenant_table_has_forced_rls_and_the_app_role_cannot_bypass_it() {
    let t = TestDb::new().await;
    let mut owner = t.owner().await;
    assert_eq!(isolation_problems(&mut owner).await, Vec::<String>::new());

    let role = t.db.role_security().await.expect("role");
    assert_eq!(role.role, "flywheel_app");
    assert!(!role.superuser && !role.bypass_rls && !role.owns_tables, "{role:?}");
    // Partitions are tables of their own and are checked like any other.
    let partitions = t.db.table_security().await.expect("tables");
    assert!(partitions.iter().any(|p| p.partition_of.as_deref() == Some("events") && p.table == "events_default"));
    assert!(partitions.iter().filter(|p| p.partition_of.as_deref() == Some("events")).count() >= 4);

    // The check is not vacuous: a table added without RLS, or a partition without it, fails it.
    sqlx::query("create table rogue (tenant_id uuid, note text)").execute(&mut owner).await.expect("create");
    sqlx::query("create table events_p2099_01 partition of events for values from ('2099-01-01') to ('2099-02-01')")
        .execute(&mut owner)
        .await
        .expect("create partition");
    let problems = isolation_problems(&mut owner).await;
    assert!(problems.iter().any(|p| p.starts_with("rogue: row-level security not enabled")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("events_p2099_01: row-level security not enabled")), "{problems:?}");
}

#[tokio::test]
async fn the_node_refuses_to_run_as_a_role_that_bypasses_rls() {
    let t = TestDb::new().await;
    let owner = flywheel_storage::DatabaseConfig::new(flywheel_tests::owner_url(&t.name));
    let err = flywheel_storage::Database::connect(&owner).await.expect_err("the owner owns tables");
    assert!(err.to_string().contains("row-level security would not bind it"), "{err}");
}

/// Inserts one row for `$1` (tenant) with id `$2`; partitioned tables also take `$3`, a time
/// inside the partition.
fn fixture(table: &str) -> Option<&'static str> {
    Some(match table {
        "users" => "insert into users (tenant_id, id, email, role) values ($1, $2, 'u' || $2 || '@x.io', 'viewer')",
        "api_keys" => "insert into api_keys (tenant_id, id, name, prefix, key_hash, role)
                       values ($1, $2, 'k', 'fwk_x', sha256(convert_to($2::text, 'utf8')), 'viewer')",
        "brand_core" => "insert into brand_core (tenant_id, id, name, positioning, tone) values ($1, $2, $2::text, 'p', 't')",
        "personas" => "insert into personas (tenant_id, id, name) values ($1, $2, $2::text)",
        "campaigns" => "insert into campaigns (tenant_id, id, name) values ($1, $2, 'c')",
        "content_assets" => "insert into content_assets (tenant_id, id, type, title) values ($1, $2, 'blog', 't')",
        "landing_pages" => "insert into landing_pages (tenant_id, id, name, url_path) values ($1, $2, 'lp', '/p/' || $2)",
        "affiliates" => "insert into affiliates (tenant_id, id, name, referral_code, commission_rate)
                         values ($1, $2, 'a', 'r' || substr(md5($2::text), 1, 10), 0.1)",
        "leads" => "insert into leads (tenant_id, id, email) values ($1, $2, 'l' || $2 || '@x.io')",
        "emails" => "insert into emails (tenant_id, id, type) values ($1, $2, 'campaign')",
        "ad_performance" => "insert into ad_performance (tenant_id, id, date, network, currency)
                             values ($1, $2, current_date, 'n' || $2, 'USD')",
        "influencer_campaigns" => "insert into influencer_campaigns (tenant_id, id, influencer_id, name)
                                   values ($1, $2, gen_random_uuid(), 'i')",
        "analytics_snapshots" => "insert into analytics_snapshots (tenant_id, id, date, dimension)
                                  values ($1, $2, current_date, 'd' || $2)",
        "approval_policies" => {
            "insert into approval_policies (tenant_id, id, kind, rule) values ($1, $2, 'brand_positioning', '{\"auto_approve\": true}')"
        }
        "agent_runs" => "insert into agent_runs (tenant_id, id, agent) values ($1, $2, 'branding')",
        "run_steps" => "with r as (insert into agent_runs (tenant_id, id, agent) values ($1, gen_random_uuid(), 'branding') returning id)
                        insert into run_steps (tenant_id, id, run_id, name, idempotency_key) select $1, $2, r.id, 's', 'k' from r",
        "approvals" => "insert into approvals (tenant_id, id, kind, artifact) values ($1, $2, 'brand_positioning', '{}')",
        "audit_log" => "insert into audit_log (tenant_id, id, actor, actor_kind, action, target_type)
                        values ($1, $2, 't', 'system', 'x', 'y')",
        "outbox" => "insert into outbox (tenant_id, id, kind, idempotency_key, payload) values ($1, $2, 'email', $2::text, '{}')",
        "model_budgets" => "insert into model_budgets (tenant_id, id, period, token_limit) values ($1, $2, 'month', 1000)",
        "model_usage" => "insert into model_usage (tenant_id, id, task, provider, model, reserved_tokens)
                          values ($1, $2, 'branding.research', 'offline', 'm', 10)",
        "memory_items" => "insert into memory_items (tenant_id, id, collection, external_id, content, embedding)
                           values ($1, $2, 'c', $2::text, 'x', array_fill(0.1::real, array[384])::vector)",
        "events" => "insert into events (tenant_id, id, event_type, occurred_at) values ($1, $2, 'click', $3)",
        "affiliate_events" => "with a as (insert into affiliates (tenant_id, id, name, referral_code, commission_rate)
                                          values ($1, gen_random_uuid(), 'a', 'r' || substr(md5($2::text), 1, 10), 0.1) returning id)
                               insert into affiliate_events (tenant_id, id, affiliate_id, occurred_at, event_type)
                               select $1, $2, a.id, $3, 'click' from a",
        // Every tenant has its settings row from creation: the fixture takes it over.
        "tracking_settings" => "insert into tracking_settings (tenant_id, id, write_key)
                                values ($1, $2, 'fwp_' || replace($2::text, '-', ''))
                                on conflict (tenant_id) do update set id = excluded.id",
        "visitor_links" => "with l as (insert into leads (tenant_id, id, email) values ($1, gen_random_uuid(), 'v' || $2 || '@x.io') returning id)
                            insert into visitor_links (tenant_id, id, visitor_id, lead_id, linked_at)
                            select $1, $2, 'v.' || replace($2::text, '-', ''), l.id, now() from l",
        "event_dead_letters" => "insert into event_dead_letters (tenant_id, id, event_id, stream_entry, attempts, reason, event)
                                 values ($1, $2, gen_random_uuid(), '1-0', 1, 'refused', '{}')",
        _ => return None,
    })
}

struct TenantTable {
    name: String,
    /// For a partition: its parent (inserts go through it) and a time inside it.
    parent: Option<String>,
    at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn tenant_tables(conn: &mut PgConnection) -> Vec<TenantTable> {
    let rows = sqlx::query(
        "select c.relname::text as name, p.relname::text as parent, pg_get_expr(c.relpartbound, c.oid) as bound
           from pg_class c
           left join pg_inherits i on i.inhrelid = c.oid
           left join pg_class p on p.oid = i.inhparent
          where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
            and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id')
          order by c.relname",
    )
    .fetch_all(conn)
    .await
    .expect("list tenant tables");
    rows.into_iter()
        .map(|r| {
            let bound: Option<String> = r.get("bound");
            let at = bound.map(|b| match b.split_once("FROM ('") {
                Some((_, rest)) => {
                    let lower = rest.split('\'').next().unwrap_or_default();
                    chrono::DateTime::parse_from_str(&format!("{lower}:00"), "%Y-%m-%d %H:%M:%S%#z")
                        .map(|d| d.with_timezone(&chrono::Utc) + chrono::Duration::hours(1))
                        .unwrap_or_else(|e| panic!("partition bound {lower}: {e}"))
                }
                // The default partition holds what no monthly partition covers.
                None => chrono::DateTime::parse_from_rfc3339("2199-06-01T00:00:00Z")
                    .expect("date")
                    .with_timezone(&chrono::Utc),
            });
            TenantTable { name: r.get("name"), parent: r.get("parent"), at }
        })
        .collect()
}

async fn insert_fixture(
    conn: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &TenantTable,
    tenant: Uuid,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    let target = table.parent.as_deref().unwrap_or(&table.name);
    let sql = fixture(target).unwrap_or_else(|| {
        panic!("no fixture for tenant table {target}: add one so the cross-tenant matrix covers it")
    });
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(id);
    if target == "events" || target == "affiliate_events" {
        q = q.bind(table.at.unwrap_or_else(chrono::Utc::now));
    }
    q.execute(&mut **conn).await.map(|_| ())
}

fn is_rls_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42501"))
}

/// Runs `sql` (with `$1` = id) and returns the rows affected, treating "permission denied" (the
/// app role may not update or delete the audit log at all) as zero.
async fn affected(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, sql: String, id: Uuid) -> u64 {
    sqlx::query("savepoint s").execute(&mut **tx).await.expect("savepoint");
    match sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(id).execute(&mut **tx).await {
        Ok(r) => r.rows_affected(),
        Err(e) if is_rls_violation(&e) => {
            sqlx::query("rollback to savepoint s").execute(&mut **tx).await.expect("rollback to savepoint");
            0
        }
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn count(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, table: &str, id: Option<Uuid>) -> i64 {
    match id {
        Some(id) => sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table} where id = $1")))
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .expect("count"),
        None => sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&mut **tx)
            .await
            .expect("count"),
    }
}

#[tokio::test]
async fn cross_tenant_matrix_over_every_tenant_table() {
    let t = TestDb::new().await;
    let a =
        t.db.create_tenant("A", &Slug::parse("tenant-a").expect("slug"), "test").await.expect("A").tenant_id.as_uuid();
    let b =
        t.db.create_tenant("B", &Slug::parse("tenant-b").expect("slug"), "test").await.expect("B").tenant_id.as_uuid();
    let mut owner = t.owner().await;
    let tables = tenant_tables(&mut owner).await;
    assert!(tables.len() >= 23, "expected every tenant table and partition, got {}", tables.len());
    let mut app = t.app().await;

    for table in &tables {
        let name = table.name.as_str();
        let id = Uuid::now_v7();
        {
            let mut tx = tenant_tx(&mut app, a).await;
            insert_fixture(&mut tx, table, a, id).await.unwrap_or_else(|e| panic!("{name}: insert as A: {e}"));
            tx.commit().await.expect("commit");
        }
        // B sees nothing of A's, even by id, and can neither update nor delete it.
        {
            let mut tx = tenant_tx(&mut app, b).await;
            assert_eq!(count(&mut tx, name, Some(id)).await, 0, "{name}: B sees A's row by id");
            let others: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {name} where tenant_id <> $1")))
                    .bind(b)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("count");
            assert_eq!(others, 0, "{name}: B sees rows of another tenant");
            let updated = affected(&mut tx, format!("update {name} set tenant_id = tenant_id where id = $1"), id).await;
            assert_eq!(updated, 0, "{name}: B updated A's row");
            let deleted = affected(&mut tx, format!("delete from {name} where id = $1"), id).await;
            assert_eq!(deleted, 0, "{name}: B deleted A's row");
            // B cannot write a row in A's name.
            sqlx::query("savepoint s").execute(&mut *tx).await.expect("savepoint");
            let err =
                insert_fixture(&mut tx, table, a, Uuid::now_v7()).await.expect_err("insert as A from B's transaction");
            assert!(is_rls_violation(&err), "{name}: expected an RLS violation, got {err}");
            sqlx::query("rollback to savepoint s").execute(&mut *tx).await.expect("rollback");
            tx.commit().await.expect("commit");
        }
        // A cannot move its row to B.
        {
            let mut tx = tenant_tx(&mut app, a).await;
            sqlx::query("savepoint s").execute(&mut *tx).await.expect("savepoint");
            let moved = sqlx::query(sqlx::AssertSqlSafe(format!("update {name} set tenant_id = $1 where id = $2")))
                .bind(b)
                .bind(id)
                .execute(&mut *tx)
                .await;
            assert!(moved.is_err(), "{name}: A moved its row to B");
            sqlx::query("rollback to savepoint s").execute(&mut *tx).await.expect("rollback");
            assert_eq!(count(&mut tx, name, Some(id)).await, 1, "{name}: A lost its row");
            tx.commit().await.expect("commit");
        }
        // Without a tenant, nothing at all.
        {
            let mut tx = app.begin().await.expect("begin");
            assert_eq!(count(&mut tx, name, None).await, 0, "{name}: visible without a tenant");
            tx.commit().await.expect("commit");
        }
    }

    // `tenants`: a tenant sees only its own row; none without a tenant.
    let mut tx = tenant_tx(&mut app, b).await;
    let visible: Vec<Uuid> = sqlx::query_scalar("select id from tenants").fetch_all(&mut *tx).await.expect("tenants");
    assert_eq!(visible, vec![b]);
    tx.commit().await.expect("commit");
    let none: i64 = sqlx::query_scalar("select count(*) from tenants").fetch_one(&mut app).await.expect("count");
    assert_eq!(none, 0);
    // The app role cannot create tenants directly, only through auth_create_tenant.
    let direct = sqlx::query("insert into tenants (name, slug) values ('x', 'x')").execute(&mut app).await;
    assert!(direct.is_err());
}

#[tokio::test]
async fn a_foreign_key_to_another_tenants_row_fails() {
    let t = TestDb::new().await;
    let a = t.db.create_tenant("A", &Slug::parse("fk-a").expect("slug"), "test").await.expect("A").tenant_id.as_uuid();
    let b = t.db.create_tenant("B", &Slug::parse("fk-b").expect("slug"), "test").await.expect("B").tenant_id.as_uuid();
    let mut app = t.app().await;
    let (campaign, lead, affiliate, run) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    {
        let mut tx = tenant_tx(&mut app, a).await;
        for (sql, id) in [
            ("insert into campaigns (tenant_id, id, name) values ($1, $2, 'c')", campaign),
            ("insert into leads (tenant_id, id, email) values ($1, $2, 'x@y.io')", lead),
            (
                "insert into affiliates (tenant_id, id, name, referral_code, commission_rate) values ($1, $2, 'a', 'abc', 0.1)",
                affiliate,
            ),
            ("insert into agent_runs (tenant_id, id, agent) values ($1, $2, 'branding')", run),
        ] {
            sqlx::query(sql).bind(a).bind(id).execute(&mut *tx).await.expect("A's parent rows");
        }
        tx.commit().await.expect("commit");
    }
    let attempts = [
        (
            "insert into leads (tenant_id, id, email, campaign_id) values ($1, gen_random_uuid(), 'z@y.io', $2)",
            campaign,
        ),
        (
            "insert into content_assets (tenant_id, id, type, title, campaign_id) values ($1, gen_random_uuid(), 'blog', 't', $2)",
            campaign,
        ),
        ("insert into emails (tenant_id, id, type, lead_id) values ($1, gen_random_uuid(), 'campaign', $2)", lead),
        // No `events` case: events have no foreign keys since migration 20261125000007 (their per-row
        // checks halved ingestion). The ingest function, the only writer of events, resolves every
        // reference under the tenant's own context, so another tenant's lead becomes NULL there
        // (tracking.rs: a_batch_mixing_tenants_stores_each_event_under_its_own_tenant_only).
        (
            "insert into leads (tenant_id, id, email, affiliate_id) values ($1, gen_random_uuid(), 'w@y.io', $2)",
            affiliate,
        ),
        (
            "insert into affiliate_events (tenant_id, id, affiliate_id, occurred_at, event_type) values ($1, gen_random_uuid(), $2, now(), 'click')",
            affiliate,
        ),
        (
            "insert into run_steps (tenant_id, id, run_id, name, idempotency_key) values ($1, gen_random_uuid(), $2, 's', 'k')",
            run,
        ),
        (
            "insert into approvals (tenant_id, id, run_id, kind, artifact) values ($1, gen_random_uuid(), $2, 'brand_positioning', '{}')",
            run,
        ),
    ];
    for (sql, parent) in attempts {
        let mut tx = tenant_tx(&mut app, b).await;
        let err = sqlx::query(sql).bind(b).bind(parent).execute(&mut *tx).await.expect_err(sql);
        assert!(
            matches!(&err, sqlx::Error::Database(d) if d.code().as_deref() == Some("23503")),
            "{sql}: expected a foreign key violation, got {err}"
        );
        tx.rollback().await.expect("rollback");
    }
}

fn lead(email: &str) -> LeadCreate {
    LeadCreate {
        email: Some(Email::parse(email).expect("email")),
        phone: None,
        name: None,
        source: None,
        status: None,
        attributes: None,
        landing_page_id: None,
        campaign_id: None,
        affiliate_id: None,
    }
}

#[tokio::test]
async fn a_pooled_connection_carries_nothing_from_one_tenant_to_the_next() {
    let t = TestDb::new().await;
    let a = t.db.create_tenant("A", &Slug::parse("pool-a").expect("slug"), "test").await.expect("A").tenant_id;
    let b = t.db.create_tenant("B", &Slug::parse("pool-b").expect("slug"), "test").await.expect("B").tenant_id;
    // One connection: every transaction below runs on the same server session.
    let mut config = flywheel_storage::DatabaseConfig::new(t.app_url());
    config.max_connections = 1;
    let db = flywheel_storage::Database::connect(&config).await.expect("connect");

    let mut tx = db.begin(a).await.expect("begin A");
    leads::create(&mut tx, &lead("ann@a.io")).await.expect("lead for A");
    tx.commit().await.expect("commit");

    // A transaction abandoned mid-way (an error path, a cancelled request) rolls back on drop.
    let mut tx = db.begin(a).await.expect("begin A again");
    leads::create(&mut tx, &lead("ghost@a.io")).await.expect("lead");
    drop(tx);

    let mut tx = db.begin(b).await.expect("begin B");
    let (rows, _) = leads::list(&mut tx, &Default::default(), ListQuery::default()).await.expect("list as B");
    assert!(rows.is_empty(), "B sees {rows:?}");
    tx.commit().await.expect("commit");

    let mut tx = db.begin(a).await.expect("begin A");
    let (rows, _) = leads::list(&mut tx, &Default::default(), ListQuery::default()).await.expect("list as A");
    let emails: Vec<_> = rows.iter().filter_map(|l| l.email.as_ref().map(|e| e.as_str().to_owned())).collect();
    assert_eq!(emails, vec!["ann@a.io"], "the abandoned lead must not exist");
    tx.commit().await.expect("commit");

    // The tenant setting is transaction-local: a session that ran A's work then has none.
    let mut raw = t.app().await;
    let mut tx = tenant_tx(&mut raw, a.as_uuid()).await;
    let n: i64 = sqlx::query_scalar("select count(*) from leads").fetch_one(&mut *tx).await.expect("count");
    assert_eq!(n, 1);
    tx.commit().await.expect("commit");
    let setting: Option<String> =
        sqlx::query_scalar("select current_setting('app.tenant_id', true)").fetch_one(&mut raw).await.expect("setting");
    assert!(setting.unwrap_or_default().is_empty());
    let n: i64 = sqlx::query_scalar("select count(*) from leads").fetch_one(&mut raw).await.expect("count");
    assert_eq!(n, 0);
    let _ = TenantId::new();
}

#[tokio::test]
async fn partitions_are_created_ahead_and_rows_move_out_of_the_default_partition() {
    let t = TestDb::new().await;
    let a = t.db.create_tenant("A", &Slug::parse("parts").expect("slug"), "test").await.expect("A").tenant_id.as_uuid();
    let mut app = t.app().await;
    // An event 14 months ahead has no partition yet: it lands in the default one.
    let ahead = chrono::Utc::now() + chrono::Duration::days(30 * 14);
    let id = Uuid::now_v7();
    let mut tx = tenant_tx(&mut app, a).await;
    sqlx::query("insert into events (tenant_id, id, event_type, occurred_at) values ($1, $2, 'page_view', $3)")
        .bind(a)
        .bind(id)
        .bind(ahead)
        .execute(&mut *tx)
        .await
        .expect("insert");
    let home: String = sqlx::query_scalar("select tableoid::regclass::text from events where id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .expect("where");
    assert_eq!(home, "events_default");
    tx.commit().await.expect("commit");

    let created = t.db.ensure_partitions(15).await.expect("ensure partitions");
    assert!(created >= 2, "created {created}");
    assert_eq!(t.db.ensure_partitions(15).await.expect("again"), 0, "idempotent");

    let mut tx = tenant_tx(&mut app, a).await;
    let home: String = sqlx::query_scalar("select tableoid::regclass::text from events where id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .expect("where");
    assert_eq!(home, format!("events_p{}", ahead.format("%Y_%m")));
    tx.commit().await.expect("commit");
    // A past month (an import, a late event) gets its partition too, at the next maintenance.
    let past = chrono::Utc::now() - chrono::Duration::days(700);
    let old_id = Uuid::now_v7();
    let mut tx = tenant_tx(&mut app, a).await;
    sqlx::query("insert into events (tenant_id, id, event_type, occurred_at) values ($1, $2, 'page_view', $3)")
        .bind(a)
        .bind(old_id)
        .bind(past)
        .execute(&mut *tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(t.db.ensure_partitions(3).await.expect("maintenance"), 1, "the past month of events");
    let mut tx = tenant_tx(&mut app, a).await;
    let home: String = sqlx::query_scalar("select tableoid::regclass::text from events where id = $1")
        .bind(old_id)
        .fetch_one(&mut *tx)
        .await
        .expect("where");
    assert_eq!(home, format!("events_p{}", past.format("%Y_%m")));
    tx.commit().await.expect("commit");
    let mut owner = t.owner().await;
    assert_eq!(isolation_problems(&mut owner).await, Vec::<String>::new(), "new partitions have forced RLS");
}
