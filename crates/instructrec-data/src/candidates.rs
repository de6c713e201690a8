//! Fixed candidate lists for evaluation and the seeded item-level split. Every random draw comes
//! from a ChaCha8 generator keyed by SHA-256 of (seed, purpose, parameters), with one stream per
//! user, so results depend only on the seed and never on thread scheduling.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::types::{CandidateSet, Dataset, Fold, ItemId, ItemSplit, UserId};
use crate::DataError;

/// A generator for one purpose ("candidates", "item-split") and its parameters.
fn derived_rng(seed: u64, purpose: &str, parameters: &[u64]) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    hasher.update(b"instructrec/");
    hasher.update(purpose.as_bytes());
    hasher.update(seed.to_le_bytes());
    for p in parameters {
        hasher.update(p.to_le_bytes());
    }
    ChaCha8Rng::from_seed(hasher.finalize().into())
}

fn fold_code(fold: Fold) -> u64 {
    match fold {
        Fold::Validation => 0,
        Fold::Test => 1,
    }
}

/// For every user: the fold's held-out item and `size - 1` negatives drawn uniformly without
/// replacement from the items the user never interacted with (anywhere in the sequence).
pub fn draw(
    dataset: &Dataset,
    seed: u64,
    fold: Fold,
    size: usize,
) -> Result<Vec<CandidateSet>, DataError> {
    let catalogue = dataset.items.len();
    let need = size.checked_sub(1).filter(|&n| n > 0).ok_or_else(|| {
        DataError::Options(format!(
            "candidate list size must be at least 2, got {size}"
        ))
    })?;
    let base = derived_rng(seed, "candidates", &[fold_code(fold), size as u64]);
    dataset
        .sequences
        .par_iter()
        .enumerate()
        .map(|(user, seq)| {
            let back = match fold {
                Fold::Test => 1,
                Fold::Validation => 2,
            };
            let positive = seq[seq.len() - back].item;
            let mut seen: Vec<u32> = seq.iter().map(|i| i.item.0).collect();
            seen.sort_unstable();
            seen.dedup();
            let available = catalogue - seen.len();
            if available < need {
                return Err(DataError::Options(format!(
                    "cannot draw {need} negatives for user {user}: only {available} of {catalogue} items are unseen; use smaller --candidates"
                )));
            }
            let mut rng = base.clone();
            rng.set_stream(user as u64);
            // Draw ranks among the unseen items, then map each rank to its item id by stepping
            // over the (sorted) seen ids below it.
            let negatives = rand::seq::index::sample(&mut rng, available, need)
                .into_iter()
                .map(|rank| {
                    let mut item = rank as u32;
                    for &s in &seen {
                        if s <= item {
                            item += 1;
                        } else {
                            break;
                        }
                    }
                    ItemId(item)
                })
                .collect();
            Ok(CandidateSet { user: UserId(user as u32), positive, negatives })
        })
        .collect()
}

/// Shuffles item ids with the seed and cuts them into train/validation/test by `fractions`
/// (train, validation); each part is returned sorted.
pub fn split_items(items: usize, seed: u64, fractions: (f64, f64)) -> ItemSplit {
    let mut ids: Vec<ItemId> = (0..items as u32).map(ItemId).collect();
    ids.shuffle(&mut derived_rng(seed, "item-split", &[]));
    let train = ((items as f64) * fractions.0).round() as usize;
    let validation = (((items as f64) * fractions.1).round() as usize).min(items - train);
    let part = |range: std::ops::Range<usize>| {
        let mut v = ids[range].to_vec();
        v.sort_unstable();
        v
    };
    ItemSplit {
        train: part(0..train),
        validation: part(train..train + validation),
        test: part(train + validation..items),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Interaction, Item, User};

    fn dataset(items: usize, sequences: Vec<Vec<u32>>) -> Dataset {
        Dataset {
            items: (0..items as u32)
                .map(|i| Item {
                    id: ItemId(i),
                    original_id: i.to_string(),
                    title: format!("item {i}"),
                    categories: vec![],
                    brand: None,
                    description: None,
                    features: vec![],
                })
                .collect(),
            users: (0..sequences.len() as u32)
                .map(|u| User {
                    id: UserId(u),
                    original_id: u.to_string(),
                })
                .collect(),
            sequences: sequences
                .into_iter()
                .map(|s| {
                    s.into_iter()
                        .map(|i| Interaction {
                            item: ItemId(i),
                            timestamp: None,
                            rating: None,
                            review: None,
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn negatives_are_unseen_distinct_and_cover_the_complement() {
        // 10 items, the user saw 4: drawing 6 negatives must return exactly the other 6.
        let d = dataset(10, vec![vec![0, 3, 9, 5]]);
        let sets = draw(&d, 7, Fold::Test, 7).unwrap();
        assert_eq!(sets[0].positive, ItemId(5));
        let mut negatives: Vec<u32> = sets[0].negatives.iter().map(|i| i.0).collect();
        negatives.sort_unstable();
        assert_eq!(negatives, vec![1, 2, 4, 6, 7, 8]);
        assert_eq!(
            draw(&d, 7, Fold::Validation, 7).unwrap()[0].positive,
            ItemId(9)
        );
    }

    #[test]
    fn too_few_unseen_items_is_an_error() {
        let d = dataset(5, vec![vec![0, 1, 2]]);
        let e = draw(&d, 1, Fold::Test, 4).unwrap_err().to_string();
        assert!(e.contains("only 2 of 5"), "{e}");
    }

    #[test]
    fn negatives_are_roughly_uniform() {
        // 1 user, 50 items, 3 seen; 2000 seeds x 5 negatives = 10,000 draws over 47 items.
        let d = dataset(50, vec![vec![10, 20, 30]]);
        let mut counts = [0usize; 50];
        for seed in 0..2000 {
            for n in &draw(&d, seed, Fold::Test, 6).unwrap()[0].negatives {
                counts[n.index()] += 1;
            }
        }
        for (i, &c) in counts.iter().enumerate() {
            if [10, 20, 30].contains(&i) {
                assert_eq!(c, 0);
            } else {
                // Expected 212.8 each; 5 standard deviations is about 70.
                assert!((140..290).contains(&c), "item {i}: {c}");
            }
        }
    }

    #[test]
    fn item_split_partitions_the_catalogue() {
        let s = split_items(1001, 3, (0.8, 0.1));
        assert_eq!(
            (s.train.len(), s.validation.len(), s.test.len()),
            (801, 100, 100)
        );
        let mut all: Vec<u32> = s
            .train
            .iter()
            .chain(&s.validation)
            .chain(&s.test)
            .map(|i| i.0)
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..1001).collect::<Vec<_>>());
        assert_ne!(split_items(1001, 4, (0.8, 0.1)), s);
    }
}
