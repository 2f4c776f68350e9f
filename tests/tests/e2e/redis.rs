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

/// `EventStream::take` reads entries in slices of plain `XREADGROUP`s: it stops at the event
/// budget (passing it by less than one entry), reads past a slice's end, reports each entry's
/// count and whether it carries one, re-reads the consumer's own pending entries in order, and
/// creates the group on a stream nobody wrote to yet.
#[tokio::test]
async fn stream_take_reads_in_slices_within_the_budget() {
    use flywheel_storage::event_stream::{Admission, EventStream, Limits, StreamConfig};

    let redis = test_redis().await;
    let stream = EventStream::new(redis, StreamConfig { shards: 1, max_backlog_per_shard: 1_000_000 });
    let limits = Limits { tenant_events_per_second: 1_000_000, ip_requests_per_second: None, bucket: "server" };
    let tenant = TenantId::new();

    // Nothing written yet: the group is created, nothing is read.
    assert!(stream.take("c1", &[0], 100, false).await.expect("take from nothing").is_empty());

    // Three entries of 20 events, then one of format 1 (no count).
    for i in 0..3u8 {
        let admitted = stream.admit(tenant, None, limits, vec![i; 100], 20).await.expect("admit");
        assert_eq!(admitted, Admission::Accepted);
    }
    let raw = stream.append_raw(tenant, b"format-1").await.expect("append");

    // A budget of 25: the first entry sizes the reads (20 events each), so one more is read.
    let first = stream.take("c1", &[0], 25, false).await.expect("take");
    assert_eq!(first.len(), 2, "the budget of 25 events stops after the second 20-event entry");
    for (i, e) in first.iter().enumerate() {
        assert_eq!((e.events, e.counted, e.shard), (20, true, 0));
        let byte = u8::try_from(i).expect("index");
        assert_eq!(e.payload.as_deref(), Some(vec![byte; 100].as_slice()));
    }
    let rest = stream.take("c1", &[0], 1_000, false).await.expect("take the rest");
    assert_eq!(rest.len(), 2);
    assert_eq!((rest[0].events, rest[0].counted), (20, true));
    assert_eq!(rest[1].id, raw);
    assert_eq!((rest[1].events, rest[1].counted), (1, false), "an entry without `n` holds one uncounted event");
    assert_eq!(rest[1].payload.as_deref(), Some(&b"format-1"[..]));
    assert!(stream.take("c1", &[0], 1_000, false).await.expect("take").is_empty(), "nothing new is left");

    // Own pending entries come back in order, whatever was read before.
    let pending = stream.take("c1", &[0], 1_000, true).await.expect("pending");
    let ids = |entries: &[flywheel_storage::event_stream::StreamEntry]| {
        entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&pending), [ids(&first), ids(&rest)].concat());
    assert!(stream.take("c2", &[0], 1_000, true).await.expect("pending").is_empty(), "c2 has none of c1's");

    // Acknowledged entries are gone, and the backlog with them.
    let all: Vec<_> = pending.iter().collect();
    stream.ack(0, &all).await.expect("ack");
    assert_eq!(stream.backlog().await.expect("backlog"), 0);
    assert!(stream.take("c1", &[0], 1_000, true).await.expect("pending").is_empty());

    // More entries than one slice of 32: all are read, in order, in one take.
    let mut admitted = Vec::new();
    for i in 0..100u8 {
        assert_eq!(stream.admit(tenant, None, limits, vec![i], 1).await.expect("admit"), Admission::Accepted);
        admitted.push(i);
    }
    let many = stream.take("c1", &[0], 1_000, false).await.expect("take many");
    let payloads: Vec<u8> = many.iter().map(|e| e.payload.as_deref().expect("payload")[0]).collect();
    assert_eq!(payloads, admitted);
}
