//! Which controller shard serves a namespace (docs/sharding.md, a design
//! not yet used: the controller runs one active replica). The jump
//! consistent hash (Lamping and Veach, 2014) of the namespace's FNV-1a
//! hash, mixed: even over the shards, and growing from `n` to `n + 1` shards moves
//! only the namespaces that go to the new shard, about `1 / (n + 1)` of
//! them. Pure; the tests below are the simulation the design cites.

/// The shard, in `0..shards`, of `namespace` (`shards` 0 counts as 1).
pub fn shard_of(namespace: &str, shards: u32) -> u32 {
    jump(mix(fnv1a64(namespace.as_bytes())), shards.max(1))
}

/// MurmurHash3's 64-bit finalizer: FNV-1a alone leaves names that differ
/// in their last characters (`team-prod-1`, `team-prod-2`) correlated in
/// the high bits the jump hash draws from (500 such names over 2 shards
/// split exactly 250/250, over 16 shards 22 to 49).
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Jump consistent hash: the bucket of `key` among `buckets` (at least 1).
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut bucket, mut next): (i64, i64) = (-1, 0);
    while next < i64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let step = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * step) as i64;
    }
    bucket as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Namespaces as clusters name them: teams, environments, numbers.
    fn namespaces(n: usize) -> Vec<String> {
        let teams = ["payments", "search", "ml", "web", "data", "infra", "ads"];
        let envs = ["dev", "staging", "prod"];
        (0..n)
            .map(|i| {
                format!(
                    "{}-{}-{}",
                    teams[i % teams.len()],
                    envs[(i / teams.len()) % envs.len()],
                    i
                )
            })
            .collect()
    }

    #[test]
    fn one_shard_serves_everything() {
        for ns in namespaces(50) {
            assert_eq!(shard_of(&ns, 1), 0);
            assert_eq!(shard_of(&ns, 0), 0);
        }
    }

    #[test]
    fn the_jump_hash_is_the_papers() {
        // Vectors published with other implementations of the paper's code.
        assert_eq!(jump(10_863_919_174_838_991, 11), 6);
        assert_eq!(jump(2_016_238_256_797_177_309, 11), 3);
        assert_eq!(jump(256, 1024), 520);
        assert_eq!(jump(12_345, 1), 0);
    }

    #[test]
    fn five_hundred_namespaces_spread_evenly_over_the_shards() {
        let all = namespaces(500);
        // Pearson's chi-square of the counts against an even spread stays
        // below its 99.9th percentile for (shards - 1) degrees of freedom:
        // as even as a fair die, no more lopsided.
        for (shards, limit) in [(2u32, 10.83), (4, 16.27), (8, 24.32), (16, 37.70)] {
            let mut counts = vec![0usize; shards as usize];
            for ns in &all {
                let s = shard_of(ns, shards);
                assert!(s < shards);
                counts[s as usize] += 1;
            }
            let fair = all.len() as f64 / f64::from(shards);
            let chi2: f64 = counts
                .iter()
                .map(|&c| (c as f64 - fair).powi(2) / fair)
                .sum();
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            eprintln!(
                "{shards} shards: {min} to {max} namespaces (fair {fair:.1}), chi-square {chi2:.1}"
            );
            assert!(
                chi2 < limit,
                "{shards} shards: {counts:?}, chi-square {chi2:.1}"
            );
        }
    }

    #[test]
    fn a_new_shard_takes_its_share_and_nothing_else_moves() {
        let all = namespaces(10_000);
        for shards in [1u32, 2, 3, 4, 7] {
            let mut moved = 0;
            for ns in &all {
                let (before, after) = (shard_of(ns, shards), shard_of(ns, shards + 1));
                if before != after {
                    assert_eq!(after, shards, "{ns} moved between old shards");
                    moved += 1;
                }
            }
            let share = moved as f64 / all.len() as f64;
            let expected = 1.0 / f64::from(shards + 1);
            eprintln!(
                "{shards} -> {} shards: {:.2} % moved (expected {:.2} %)",
                shards + 1,
                share * 100.0,
                expected * 100.0
            );
            assert!((share - expected).abs() < 0.02, "{share} vs {expected}");
        }
    }

    #[test]
    fn the_shard_of_a_namespace_never_changes_with_the_process() {
        // Fixed values: every replica, of every version, must agree.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let pinned: Vec<u32> = ["default", "kube-system", "payments-prod-1", "ml-dev-42"]
            .iter()
            .map(|ns| shard_of(ns, 8))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    /// Recorded from this implementation on 2026-12-07.
    const PINNED: [u32; 4] = [1, 5, 6, 7];
}
