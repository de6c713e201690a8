//! Most-popular baseline: an item's score is how often it occurs in the training sequences.

use anyhow::bail;
use instructrec_data::{ItemId, Prepared};
use instructrec_eval::{Case, Scorer};
use sha2::{Digest, Sha256};

pub struct Popularity {
    counts: Vec<f32>,
}

impl Popularity {
    /// Counts only the training part of every sequence (all but the last two items), so neither
    /// validation nor test items leak into the scores.
    pub fn fit(prepared: &Prepared) -> Self {
        let mut counts = vec![0f32; prepared.dataset.items.len()];
        for user in &prepared.dataset.users {
            for i in prepared.train_sequence(user.id) {
                counts[i.item.index()] += 1.0;
            }
        }
        Self { counts }
    }

    pub fn state_hash(&self) -> String {
        let bytes: Vec<u8> = self.counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        hex::encode(Sha256::digest(bytes))
    }
}

impl Scorer for Popularity {
    fn name(&self) -> String {
        "popularity".into()
    }

    fn score(&self, _case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        candidates
            .iter()
            .map(|i| match self.counts.get(i.index()) {
                Some(&c) => Ok(c),
                None => bail!(
                    "item {} is outside the catalogue of {}",
                    i.0,
                    self.counts.len()
                ),
            })
            .collect()
    }

    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        Some(Ok(cases.iter().map(|_| self.counts.clone()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use instructrec_data::{Fold, UserId};

    #[test]
    fn counts_only_training_items() {
        let prepared = instructrec_eval::synthetic::prepared(30, 120, 1);
        let pop = Popularity::fit(&prepared);
        let total: f32 = pop.counts.iter().sum();
        let expected: usize = prepared.dataset.sequences.iter().map(|s| s.len() - 2).sum();
        assert_eq!(total as usize, expected);
        // An item seen only as someone's test item scores zero.
        let mut only_test = [true; 120];
        for (u, seq) in prepared.dataset.sequences.iter().enumerate() {
            let test = prepared.held_out(UserId(u as u32), Fold::Test);
            for i in seq {
                if i.item != test {
                    only_test[i.item.index()] = false;
                }
            }
        }
        for (i, only) in only_test.iter().enumerate() {
            if *only {
                assert_eq!(pop.counts[i], 0.0, "item {i}");
            }
        }
    }
}
