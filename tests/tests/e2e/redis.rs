//! Redis keys through the namespacing type: one tenant's handle never reads or deletes another
//! tenant's keys, even when they ask for the very same key parts.

use std::time::Duration;

use flywheel_contracts::TenantId;
use flywheel_tests::test_redis;

#[tokio::test]
async fn tenants_cannot_reach_each_others_keys() {
    let redis = test_redis().await;
    let (a, b) = (TenantId::new(), TenantId::new());
    let ra = redis.tenant(a);
    let rb = redis.tenant(b);
    ra.set(&["run", "42", "state"], b"a-secret", Some(Duration::from_secs(60))).await.expect("set");
    assert_eq!(ra.get(&["run", "42", "state"]).await.expect("get"), Some(b"a-secret".to_vec()));
    assert_eq!(rb.get(&["run", "42", "state"]).await.expect("get"), None, "B reads A's key");
    assert!(!rb.delete(&["run", "42", "state"]).await.expect("delete"), "B deleted A's key");
    assert_eq!(ra.get(&["run", "42", "state"]).await.expect("get"), Some(b"a-secret".to_vec()));

    // Separator and brace tricks in parts cannot climb out of the tenant's namespace.
    let sneaky = format!("}}:t:{{{b}}}:run");
    ra.set(&[&sneaky, "42"], b"x", Some(Duration::from_secs(60))).await.expect("set");
    assert_eq!(rb.get(&["run", "42"]).await.expect("get"), None);

    // Counters with a window: per tenant.
    assert_eq!(ra.incr(&["rate", "api"], Duration::from_secs(60)).await.expect("incr"), 1);
    assert_eq!(ra.incr(&["rate", "api"], Duration::from_secs(60)).await.expect("incr"), 2);
    assert_eq!(rb.incr(&["rate", "api"], Duration::from_secs(60)).await.expect("incr"), 1);
    assert!(ra.delete(&["run", "42", "state"]).await.expect("delete"));
}
