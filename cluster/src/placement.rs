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

#[cfg(test)]
mod tests {
    use super::*;

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
