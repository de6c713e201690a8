//! Seeded randomness shared by every stage: one seed per run, split into independent streams by
//! purpose and position, so that a stage's draws never depend on what another stage drew.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// The streams, in one list so that two purposes can never share one.
pub const STREAM_ORDER: u64 = 1;
pub const STREAM_DROPOUT: u64 = 2;
pub const STREAM_CORRUPTION: u64 = 3;
pub const STREAM_SAMPLE: u64 = 4;
pub const STREAM_LORA: u64 = 5;
pub const STREAM_CONTINUATION: u64 = 6;
pub const STREAM_NEXT_ITEM: u64 = 7;
pub const STREAM_WEIGHT: u64 = 8;

/// A seed for one purpose at one position, so that independent streams never overlap.
pub fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    // SplitMix64 finaliser over the three inputs.
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Shuffles `items` with a generator seeded by `seed` (e.g. to sample or hold out examples).
pub fn seeded_shuffle<T>(items: &mut [T], seed: u64) {
    let stream = derive_seed(seed, STREAM_SAMPLE, 0);
    items.shuffle(&mut ChaCha8Rng::seed_from_u64(stream));
}

/// At most `n` of `items`, drawn by [`seeded_shuffle`]; all of them, in their order, when there
/// are no more than `n`.
pub fn seeded_sample<T>(mut items: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    if items.len() > n {
        seeded_shuffle(&mut items, seed);
        items.truncate(n);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_depends_on_the_seed_and_keeps_short_lists_whole() {
        let items: Vec<u32> = (0..100).collect();
        let a = seeded_sample(items.clone(), 10, 1);
        assert_eq!(a, seeded_sample(items.clone(), 10, 1));
        assert_ne!(a, seeded_sample(items.clone(), 10, 2));
        assert_eq!(a.len(), 10);
        assert_eq!(seeded_sample(items.clone(), 100, 1), items);
    }

    #[test]
    fn streams_and_positions_give_different_seeds() {
        assert_ne!(
            derive_seed(1, STREAM_ORDER, 0),
            derive_seed(1, STREAM_SAMPLE, 0)
        );
        assert_ne!(
            derive_seed(1, STREAM_ORDER, 0),
            derive_seed(1, STREAM_ORDER, 1)
        );
    }
}
