//! Where a tenant runs: tenants hash onto a fixed number of virtual shards, and each shard is
//! placed on a live node by rendezvous (highest random weight) hashing. Every node computes the
//! same placement from the same member list, a node joining takes only the shards it now wins
//! (about 1/n of them), and a node leaving gives up only its own.

use flywheel_contracts::TenantId;

/// Virtual shards: fixed for a deployment, and at least 10× the largest expected node count.
pub const SHARDS: u16 = 256;

/// A virtual shard, `0..SHARDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard(u16);

impl Shard {
    pub fn new(n: u16) -> Option<Self> {
        (n < SHARDS).then_some(Self(n))
    }
    pub fn get(self) -> u16 {
        self.0
    }
    pub fn all() -> impl Iterator<Item = Shard> {
        (0..SHARDS).map(Shard)
    }
}

/// A 64-bit finaliser (splitmix64): good avalanche, stable across platforms and releases —
/// placement must never depend on `std`'s randomly keyed hasher.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, then mixed: the stable identity hash of a node id.
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// The shard of a tenant.
pub fn shard_of(tenant: TenantId) -> Shard {
    let (hi, lo) = tenant.as_uuid().as_u64_pair();
    // The remainder is below SHARDS, a u16.
    Shard(u16::try_from(mix(hi ^ mix(lo)) % u64::from(SHARDS)).unwrap_or(0))
}

/// The weight of `node` for `shard`; the live node with the highest weight owns the shard.
fn weight(node: &str, shard: Shard) -> u64 {
    mix(hash_bytes(node.as_bytes()) ^ mix(u64::from(shard.0)))
}

/// The owner of `shard` among `nodes` (ties, vanishingly rare, go to the smaller id).
pub fn owner(shard: Shard, nodes: &[String]) -> Option<&str> {
    nodes.iter().map(|n| (weight(n, shard), std::cmp::Reverse(n.as_str()))).max().map(|(_, std::cmp::Reverse(n))| n)
}

/// The shards `node` should own among `nodes`.
pub fn shards_of(node: &str, nodes: &[String]) -> Vec<Shard> {
    Shard::all().filter(|s| owner(*s, nodes) == Some(node)).collect()
}

/// One shard's lease as a node last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub shard: Shard,
    /// The node holding the lease, if any.
    pub owner: Option<String>,
    pub epoch: i64,
    /// Whether the lease had expired when it was read (judged by the database's clock).
    pub expired: bool,
}

/// What a node does with the leases on one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free or expired shards this node should own: take them (each at epoch + 1).
    pub acquire: Vec<Shard>,
    /// Shards this node holds (at the given epoch) that another live node should own.
    pub release: Vec<(Shard, i64)>,
}

/// The lease plan of node `me`, given the live members (nodes that heartbeat and are not
/// draining; `me` counts as one unless it is draining, whatever `live` says) and the leases as
/// read.
///
/// Only free or expired leases are ever taken, so a node never steals a shard: a shard moves
/// when its holder releases it or stops renewing it. Handing shards over to a new owner is
/// limited to `max_moves` per tick so a join never thrashes the cluster; a draining node hands
/// everything over at once (`draining`).
pub fn plan(me: &str, live: &[String], leases: &[LeaseView], max_moves: usize, draining: bool) -> Plan {
    // A node that is not draining is a member, even when its own heartbeat is not visible yet
    // (a delayed write): without this it would hand over shards it should keep.
    let mut members: Vec<String> = live.iter().filter(|n| !(draining && n.as_str() == me)).cloned().collect();
    if !draining && !members.iter().any(|n| n == me) {
        members.push(me.to_owned());
    }
    let mut out = Plan::default();
    for lease in leases {
        let desired = owner(lease.shard, &members);
        let free = lease.owner.is_none() || lease.expired;
        let mine = lease.owner.as_deref() == Some(me) && !lease.expired;
        if free && desired == Some(me) && !draining {
            out.acquire.push(lease.shard);
        } else if mine && desired.is_some_and(|d| d != me) {
            out.release.push((lease.shard, lease.epoch));
        }
    }
    if !draining {
        out.release.truncate(max_moves);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(owner: Option<&str>, expired: bool) -> Vec<LeaseView> {
        Shard::all().map(|shard| LeaseView { shard, owner: owner.map(str::to_owned), epoch: 1, expired }).collect()
    }

    #[test]
    fn a_lone_node_takes_every_free_shard_and_keeps_them_without_seeing_its_own_heartbeat() {
        let p = plan("a", &[], &views(None, true), 4, false);
        assert_eq!(p.acquire.len(), usize::from(SHARDS));
        let p = plan("a", &[], &views(Some("a"), false), 4, false);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn handovers_to_a_joining_node_are_rate_limited_but_a_drain_is_not() {
        let members = vec!["a".to_owned(), "b".to_owned()];
        let p = plan("a", &members, &views(Some("a"), false), 4, false);
        assert_eq!(p.release.len(), 4);
        assert!(p.release.iter().all(|(s, _)| owner(*s, &members) == Some("b")));
        let p = plan("a", &members, &views(Some("a"), false), 4, true);
        assert_eq!(p.release.len(), usize::from(SHARDS));
        // b takes only free shards it should own, never a's live leases.
        let p = plan("b", &members, &views(Some("a"), false), 4, false);
        assert!(p.acquire.is_empty());
        let p = plan("b", &members, &views(Some("a"), true), 4, false);
        assert_eq!(p.acquire, shards_of("b", &members));
    }

    #[test]
    fn a_draining_node_alone_keeps_its_shards() {
        let p = plan("a", &["a".to_owned()], &views(Some("a"), false), 4, true);
        assert!(p.release.is_empty() && p.acquire.is_empty());
    }

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn a_single_node_owns_every_shard() {
        assert_eq!(shards_of("solo", &["solo".to_owned()]).len(), usize::from(SHARDS));
        assert_eq!(owner(Shard(3), &[]), None);
    }

    #[test]
    fn shards_spread_evenly() {
        for n in [2usize, 3, 4, 8] {
            let members = nodes(n);
            let expected = f64::from(SHARDS) / n as f64;
            for m in &members {
                let got = shards_of(m, &members).len() as f64;
                // Rendezvous hashing over 256 shards: within ±40 % of the mean for these sizes.
                assert!((got - expected).abs() <= expected * 0.4, "{m} of {n}: {got} shards, expected ~{expected}");
            }
        }
    }

    #[test]
    fn a_joining_node_takes_only_what_it_wins_and_a_leaving_one_gives_only_its_own() {
        let before = nodes(3);
        let mut after = before.clone();
        after.push("node-new".to_owned());
        let mut moved = 0;
        for s in Shard::all() {
            let (was, is) = (owner(s, &before), owner(s, &after));
            if was != is {
                assert_eq!(is, Some("node-new"), "{s:?} moved between old nodes");
                moved += 1;
            }
        }
        let quarter = usize::from(SHARDS) / 4;
        assert!(moved > quarter / 2 && moved < quarter * 2, "{moved} shards moved to the 4th node");
        // node-1 leaves: only its shards move.
        let without: Vec<String> = before.iter().filter(|n| *n != "node-1").cloned().collect();
        for s in Shard::all() {
            if owner(s, &before) != Some("node-1") {
                assert_eq!(owner(s, &before), owner(s, &without));
            }
        }
    }

    #[test]
    fn tenants_spread_over_shards_and_keep_theirs() {
        let mut counts = vec![0u32; usize::from(SHARDS)];
        for _ in 0..25_600 {
            counts[usize::from(shard_of(TenantId::new()).get())] += 1;
        }
        assert!(counts.iter().all(|c| (40..=180).contains(c)), "uneven: {:?}", counts.iter().minmax());
        let t = TenantId::new();
        assert_eq!(shard_of(t), shard_of(t));
    }

    trait MinMax {
        fn minmax(self) -> (u32, u32);
    }
    impl<'a, I: Iterator<Item = &'a u32>> MinMax for I {
        fn minmax(self) -> (u32, u32) {
            self.fold((u32::MAX, 0), |(lo, hi), c| (lo.min(*c), hi.max(*c)))
        }
    }
}
