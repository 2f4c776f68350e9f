//! Redis keys through the namespacing type: one tenant's handle never reads or deletes another
//! tenant's keys, even when they ask for the very same key parts.

use std::time::Duration;

use flywheel_contracts::TenantId;
use flywheel_tests::TestNamespace;

#[tokio::test]
async fn tenants_cannot_reach_each_others_keys() {
    let namespace = TestNamespace::new();
    let redis = namespace.store().await;
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

/// `purge_namespace` deletes every key of its namespace, over many `SCAN` pages, and no key of
/// another namespace: not one that starts with the same text, nor one that its name would match
/// were its `*` read as a glob.
#[tokio::test]
async fn purging_a_namespace_deletes_its_keys_and_no_others() {
    use flywheel_tests::test_redis_in;
    let base = format!("test:{}", uuid::Uuid::new_v4().simple());
    let (globbed, sibling) = (test_redis_in(format!("{base}*")).await, test_redis_in(format!("{base}x")).await);
    let tenant = TenantId::new();
    let ttl = Some(Duration::from_secs(300));
    for i in 0..2_500 {
        globbed.tenant(tenant).set(&["k", &i.to_string()], b"v", ttl).await.expect("set");
    }
    sibling.tenant(tenant).set(&["k", "0"], b"kept", ttl).await.expect("set");

    assert_eq!(globbed.purge_namespace().await.expect("purge"), 2_500);
    assert_eq!(globbed.tenant(tenant).get(&["k", "0"]).await.expect("get"), None);
    assert_eq!(globbed.tenant(tenant).get(&["k", "2499"]).await.expect("get"), None);
    assert_eq!(sibling.tenant(tenant).get(&["k", "0"]).await.expect("get"), Some(b"kept".to_vec()));
    assert_eq!(globbed.purge_namespace().await.expect("purge"), 0, "an empty namespace purges nothing");
    assert_eq!(sibling.purge_namespace().await.expect("purge"), 1);
}

/// `EventStream::take` reads entries in slices of plain `XREADGROUP`s: it stops at the event
/// budget (passing it by less than one entry), reads past a slice's end, reports each entry's
/// count and whether it carries one, re-reads the consumer's own pending entries in order, and
/// creates the group on a stream nobody wrote to yet.
#[tokio::test]
async fn stream_take_reads_in_slices_within_the_budget() {
    use flywheel_storage::event_stream::{Admission, EventStream, Limits, StreamConfig};

    let namespace = TestNamespace::new();
    let redis = namespace.store().await;
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

/// `EventStream::waited` measures how long the oldest of some entries has been in its stream by
/// Redis's clock (what the ingestors tell a batch that is behind by): it grows as the entries
/// wait, and is zero for no entries.
#[tokio::test]
async fn waited_is_the_oldest_entrys_time_in_the_stream() {
    use flywheel_storage::event_stream::{EventStream, StreamConfig};

    let namespace = TestNamespace::new();
    let redis = namespace.store().await;
    let stream = EventStream::new(redis, StreamConfig { shards: 1, max_backlog_per_shard: 1_000_000 });
    let tenant = TenantId::new();
    assert_eq!(stream.waited(&[]).await.expect("waited"), Duration::ZERO);

    stream.append_raw(tenant, b"older").await.expect("append");
    tokio::time::sleep(Duration::from_millis(60)).await;
    stream.append_raw(tenant, b"newer").await.expect("append");
    let entries = stream.take("c1", &[0], 100, false).await.expect("take");
    assert_eq!(entries.len(), 2);
    let both = stream.waited(&entries).await.expect("waited");
    let newer = stream.waited(&entries[1..]).await.expect("waited");
    assert!(both >= newer + Duration::from_millis(50), "the older entry counts: {both:?} against {newer:?}");
    assert!(both < Duration::from_secs(30), "{both:?}");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let later = stream.waited(&entries).await.expect("waited");
    assert!(later >= both + Duration::from_millis(50), "it grows as they wait: {later:?} after {both:?}");
}

/// Admission is one transaction (`XADD`, then the verdict): an admitted request is one entry,
/// a refused one (over the backlog bound, or over a rate) leaves no entry behind and takes
/// nothing off the bound, and the bound counts events, not entries.
#[tokio::test]
async fn a_refused_admission_leaves_no_entry_behind() {
    use flywheel_storage::event_stream::{Admission, EventStream, Limits, StreamConfig};
    use fred::prelude::KeysInterface;

    let namespace = TestNamespace::new();
    let redis = namespace.store().await;
    let stream = EventStream::new(redis.clone(), StreamConfig { shards: 1, max_backlog_per_shard: 50 });
    let open = Limits { tenant_events_per_second: 1_000_000, ip_requests_per_second: None, bucket: "server" };
    let tenant = TenantId::new();

    for i in 0..2u8 {
        assert_eq!(stream.admit(tenant, None, open, vec![i; 64], 20).await.expect("admit"), Admission::Accepted);
    }
    let refused = stream.admit(tenant, None, open, vec![9; 64], 20).await.expect("admit");
    assert!(matches!(refused, Admission::Overloaded { .. }), "40 + 20 events pass the bound of 50: {refused:?}");
    assert_eq!(stream.backlog().await.expect("backlog"), 2, "the refused entry was deleted");
    assert_eq!(stream.admit(tenant, None, open, vec![2; 64], 10).await.expect("admit"), Admission::Accepted);
    assert!(matches!(stream.admit(tenant, None, open, vec![9], 1).await.expect("admit"), Admission::Overloaded { .. }));

    // What a consumer reads is exactly what was admitted, in order.
    let entries = stream.take("c1", &[0], 1_000, false).await.expect("take");
    let firsts: Vec<(u8, u32)> =
        entries.iter().map(|e| (e.payload.as_deref().expect("payload")[0], e.events)).collect();
    assert_eq!(firsts, [(0, 20), (1, 20), (2, 10)]);
    let all: Vec<_> = entries.iter().collect();
    stream.ack(0, &all).await.expect("ack");
    assert_eq!(stream.admit(tenant, None, open, vec![3; 64], 50).await.expect("admit"), Admission::Accepted);

    // A count left behind by a stream that is gone (a key kept or restored without its stream)
    // does not refuse events for ever: the stream held none, so the count starts again.
    stream.discard_all().await.expect("discard");
    let count_key = format!("{}:events", stream.stream_key(0));
    let pool = flywheel_tests::raw_redis().await;
    let _: () = pool.set(&count_key, 1_000_000, None, None, false).await.expect("set a stale count");
    assert_eq!(stream.admit(tenant, None, open, vec![6; 64], 30).await.expect("admit"), Admission::Accepted);
    assert!(
        matches!(stream.admit(tenant, None, open, vec![7; 64], 30).await.expect("admit"), Admission::Overloaded { .. }),
        "30 + 30 events pass the bound of 50 once the count was started again"
    );
    let count: Option<i64> = pool.get(&count_key).await.expect("get the count");
    assert_eq!(count, Some(30), "the count holds the admitted events only");
    assert_eq!(stream.backlog().await.expect("backlog"), 1);

    // Over the tenant's rate: refused, nothing left behind, the retry-after says when.
    let slow = Limits { tenant_events_per_second: 10, ip_requests_per_second: Some(1_000), bucket: "events" };
    let other = TenantId::new();
    let lone_namespace = TestNamespace::new();
    let lone = EventStream::new(lone_namespace.store().await, StreamConfig { shards: 1, max_backlog_per_shard: 1_000 });
    assert_eq!(lone.admit(other, Some("10.0.0.1"), slow, vec![4; 64], 10).await.expect("admit"), Admission::Accepted);
    match lone.admit(other, Some("10.0.0.1"), slow, vec![5; 64], 10).await.expect("admit") {
        Admission::RateLimited { retry_after } => assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}"),
        refused => panic!("a second burst of 10 at 10 events/s was not rate limited: {refused:?}"),
    }
    assert_eq!(lone.backlog().await.expect("backlog"), 1, "the rate-limited entry was deleted");
}

/// A Redis that lost its scripts (restarted, `SCRIPT FLUSH`) after the node loaded them: the
/// transaction's `XADD` ran without its verdict, so that request is admitted and counted, the
/// script is loaded again, and the next admissions are judged as before. On a Redis server of
/// the test's own, since a flush would reach every other test's scripts.
#[tokio::test]
async fn admission_survives_redis_losing_its_scripts() {
    use flywheel_storage::event_stream::{Admission, EventStream, Limits, StreamConfig};
    use flywheel_storage::redis::{RedisConfig, RedisStore};

    let port = flywheel_tests::free_port();
    let server = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start a redis-server of the test's own");
    // Stopped however the test ends.
    struct Stopped(std::process::Child);
    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Stopped(server);
    let url = format!("redis://127.0.0.1:{port}");
    let redis = flywheel_tests::eventually("the test's redis-server", Duration::from_secs(10), || async {
        RedisStore::connect(&RedisConfig::new(url.clone(), "flush-test")).await.ok()
    })
    .await;
    let stream = EventStream::new(redis.clone(), StreamConfig { shards: 1, max_backlog_per_shard: 30 });
    let open = Limits { tenant_events_per_second: 1_000_000, ip_requests_per_second: None, bucket: "server" };
    let tenant = TenantId::new();

    assert_eq!(stream.admit(tenant, None, open, vec![1], 10).await.expect("admit"), Admission::Accepted);
    let flush = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "SCRIPT", "FLUSH"])
        .output()
        .expect("redis-cli");
    assert!(flush.status.success(), "SCRIPT FLUSH: {flush:?}");
    assert_eq!(stream.admit(tenant, None, open, vec![2], 10).await.expect("admit"), Admission::Accepted);
    assert_eq!(stream.backlog().await.expect("backlog"), 2);
    // The unjudged request was counted: 20 + 20 events pass the bound of 30.
    assert!(matches!(
        stream.admit(tenant, None, open, vec![3], 20).await.expect("admit"),
        Admission::Overloaded { .. }
    ));
    assert_eq!(stream.admit(tenant, None, open, vec![4], 10).await.expect("admit"), Admission::Accepted);
    assert_eq!(stream.backlog().await.expect("backlog"), 3);
    redis.quit().await;
}

/// Admissions arriving together are judged together (one transaction per batch): under a burst
/// of concurrent requests over two shards, some over the backlog bound and some over a tenant's
/// rate, exactly the admitted requests' entries are left in the streams, each once, and the
/// bound holds.
#[tokio::test]
async fn concurrent_admissions_leave_exactly_the_admitted_entries() {
    use flywheel_storage::event_stream::{Admission, EventStream, Limits, StreamConfig};

    let namespace = TestNamespace::new();
    let stream = EventStream::new(namespace.store().await, StreamConfig { shards: 2, max_backlog_per_shard: 100 });
    let open = Limits { tenant_events_per_second: 1_000_000, ip_requests_per_second: None, bucket: "server" };
    let slow = Limits { tenant_events_per_second: 20, ip_requests_per_second: None, bucket: "server" };
    // Two tenants on different shards, the second under a rate of 20 events/s (a request's
    // 10 events come back in half a second, much longer than the burst takes).
    let first = TenantId::new();
    let second = std::iter::repeat_with(TenantId::new)
        .find(|t| stream.shard_of(*t) != stream.shard_of(first))
        .expect("a tenant of the other shard");
    let admissions = (0..60u8).map(|i| {
        let stream = stream.clone();
        let (tenant, limits) = if i % 2 == 0 { (first, open) } else { (second, slow) };
        tokio::spawn(async move { (i, stream.admit(tenant, None, limits, vec![i; 256], 10).await.expect("admit")) })
    });
    let mut admitted = Vec::new();
    let (mut overloaded, mut limited) = (0, 0);
    for handle in admissions.collect::<Vec<_>>() {
        match handle.await.expect("admission task") {
            (i, Admission::Accepted) => admitted.push(i),
            (_, Admission::Overloaded { .. }) => overloaded += 1,
            (_, Admission::RateLimited { .. }) => limited += 1,
        }
    }
    // 30 requests of 10 events each: 10 fit under the first tenant's bound of 100, 2 within
    // the second's burst of 20.
    assert_eq!(admitted.iter().filter(|i| *i % 2 == 0).count(), 10, "admitted: {admitted:?}");
    assert_eq!(admitted.iter().filter(|i| *i % 2 == 1).count(), 2, "admitted: {admitted:?}");
    assert_eq!((overloaded, limited), (20, 28));

    let mut stored: Vec<u8> = stream
        .take("c1", &[0, 1], 10_000, false)
        .await
        .expect("take")
        .iter()
        .map(|e| e.payload.as_deref().expect("payload")[0])
        .collect();
    stored.sort_unstable();
    admitted.sort_unstable();
    assert_eq!(stored, admitted, "the streams hold exactly the admitted entries");
}

/// One busy tenant cannot starve the others: it fills only its own shard, so a tenant on another
/// shard is still admitted when the busy one is refused with 503; and the ingestors' reads start
/// one shard further along on every take, so with every shard behind, a round of takes of one
/// entry's worth each reads every shard once, the other tenant's among them.
#[tokio::test]
async fn a_busy_tenant_fills_only_its_shard_and_cannot_hold_others_back() {
    use flywheel_storage::event_stream::{Admission, EventStream, Limits, StreamConfig};

    const SHARDS: u16 = 4;
    let namespace = TestNamespace::new();
    let redis = namespace.store().await;
    let stream = EventStream::new(redis, StreamConfig { shards: SHARDS, max_backlog_per_shard: 1_000 });
    let limits = Limits { tenant_events_per_second: 1_000_000, ip_requests_per_second: None, bucket: "server" };
    let on_shard = |shard: u16| {
        std::iter::repeat_with(TenantId::new).find(|t| stream.shard_of(*t) == shard).expect("a tenant on the shard")
    };
    let tenants: Vec<TenantId> = (0..SHARDS).map(on_shard).collect();
    let busy = tenants[0];

    // The busy tenant sends until its shard's bound refuses it: ten entries of 100 events.
    let mut admitted: usize = 0;
    loop {
        match stream.admit(busy, None, limits, vec![1; 64], 100).await.expect("admit") {
            Admission::Accepted => admitted += 1,
            Admission::Overloaded { .. } => break,
            refused => panic!("only the bound should refuse: {refused:?}"),
        }
        assert!(admitted <= 10, "the bound of 1,000 events stops the busy tenant");
    }
    assert_eq!(admitted, 10);
    // Every other shard is behind too, by three entries of 100 events of its tenant.
    for &tenant in &tenants[1..] {
        for _ in 0..3 {
            let admission = stream.admit(tenant, None, limits, vec![2; 64], 100).await.expect("admit");
            assert_eq!(
                admission,
                Admission::Accepted,
                "another shard's tenant is admitted while the busy one is refused"
            );
        }
    }

    // Takes of 100 events: each reads one entry, from the shard it starts at.
    let shards: Vec<u16> = (0..SHARDS).collect();
    let mut rotation = 0;
    let mut read = Vec::new();
    for _ in 0..SHARDS {
        let batch =
            stream.take_batch("c1", &shards, &mut rotation, 100, Duration::ZERO, Duration::ZERO).await.expect("take");
        assert_eq!(batch.len(), 1, "one entry's worth: {batch:?}");
        read.push(batch[0].shard);
    }
    read.sort_unstable();
    assert_eq!(read, shards, "a round of takes reads every shard once");
}
