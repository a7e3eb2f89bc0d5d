//! Stable splits of dialogues: `label --shard` and `train`'s dev and
//! labelled shares. One FNV-1a hash of the dialogue id, the same on every
//! machine and in every run, so a dialogue always falls on the same side.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a of the text, continuing from `start`.
fn fnv1a(start: u64, text: &str) -> u64 {
    stable_hash_bytes(start, text.as_bytes())
}

/// FNV-1a of `bytes`, continuing from `start` ([`STABLE_HASH_START`] for a
/// new hash): file contents are hashed piece by piece with it.
pub fn stable_hash_bytes(start: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(start, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

/// The starting value of a new [`stable_hash_bytes`].
pub const STABLE_HASH_START: u64 = FNV_OFFSET;

/// FNV-1a: a stable hash, the same on every machine.
pub fn stable_hash(text: &str) -> u64 {
    fnv1a(FNV_OFFSET, text)
}

/// Whether a dialogue belongs to shard I of N (`shard` is (I, N)); every
/// dialogue does when there is no shard.
pub fn in_shard(dialogue: &str, shard: Option<(u64, u64)>) -> bool {
    shard.is_none_or(|(i, n)| stable_hash(dialogue) % n == i)
}

/// Whether a dialogue falls in a stable `share` of dialogues, chosen by a
/// hash of its id and the seed (the seed goes into the hash's starting value).
pub fn in_share(dialogue: &str, share: f64, seed: u64) -> bool {
    let hash = fnv1a(FNV_OFFSET ^ seed, dialogue);
    (hash % 10_000) as f64 / 10_000.0 < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shards_partition_the_dialogues() {
        let ids: Vec<String> = (0..1000).map(|i| format!("dlg-{i:05}")).collect();
        let mut sizes = [0usize; 3];
        for id in &ids {
            let owners: Vec<u64> = (0..3).filter(|&i| in_shard(id, Some((i, 3)))).collect();
            assert_eq!(owners.len(), 1, "{id} in shards {owners:?}");
            sizes[owners[0] as usize] += 1;
            assert!(in_shard(id, None));
        }
        assert!(sizes.iter().all(|&n| n > 250), "{sizes:?}");
    }

    proptest::proptest! {
        #[test]
        fn every_dialogue_is_in_exactly_one_shard(id in ".*", n in 1u64..100) {
            let owners = (0..n).filter(|&i| in_shard(&id, Some((i, n)))).count();
            proptest::prop_assert_eq!(owners, 1);
            proptest::prop_assert!(in_shard(&id, None));
        }
    }

    #[test]
    fn shares_are_pinned_and_grow_with_the_share() {
        // Pinned values: dev splits and labelled subsets of earlier runs stay put.
        // (hash of "dlg-00001" from seed 7) % 10000 is 1197.
        assert!(in_share("dlg-00001", 0.1198, 7));
        assert!(!in_share("dlg-00001", 0.1197, 7));
        assert!(in_shard("dlg-00001", Some((0, 2))));
        let ids: Vec<String> = (0..2000).map(|i| format!("dlg-{i:05}")).collect();
        let count = |share| ids.iter().filter(|id| in_share(id, share, 7)).count();
        let (tenth, half) = (count(0.1), count(0.5));
        assert!((150..250).contains(&tenth), "{tenth}");
        assert!((900..1100).contains(&half), "{half}");
        assert!(
            ids.iter()
                .all(|id| !in_share(id, 0.1, 7) || in_share(id, 0.5, 7))
        );
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), ids.len());
    }
}
