//! The test harness's own promise: what a test made in PostgreSQL is gone when it ends, even
//! with its pooled sessions still open (its Redis keys: `tracking`'s keys test).

use flywheel_contracts::Slug;
use flywheel_tests::{TestDb, owner_url};
use sqlx::Connection;

async fn database_exists(name: &str) -> bool {
    let mut admin = sqlx::PgConnection::connect(&owner_url("postgres")).await.expect("connect as the owner");
    sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("read the catalog")
}

#[tokio::test]
async fn a_test_database_is_dropped_with_its_pooled_sessions_open() {
    let db = TestDb::new().await;
    let name = db.name.clone();
    // The pool holds sessions as flywheel_app, which the owner may not end by itself.
    db.db.create_tenant("Pooled Co", &Slug::parse("pooled").expect("slug"), "test").await.expect("tenant");
    let _held = db.app().await;
    assert!(database_exists(&name).await, "the test's database exists while it runs");

    drop(db);
    assert!(!database_exists(&name).await, "database {name} left behind by a dropped TestDb");
}
