//! Full-catalogue ranking by the method's two steps: a matcher retrieves the top `depth` items
//! of the whole catalogue, and the instruction model reranks them. Items the matcher leaves out
//! rank below every retrieved one, so a positive outside the top `depth` is a miss. The
//! retrieved items are dealt round-robin into lists of at most `group` (the list length the
//! model was tuned on), each asked about in its own instruction, as the server does; their
//! scores are then compared across the lists.

use instructrec_data::ItemId;
use instructrec_instructions::rerank::deal;

use crate::scorer::{Case, Request, Scorer};

pub struct MatchThenRerank<'a> {
    pub matcher: &'a dyn Scorer,
    pub reranker: &'a dyn Scorer,
    pub depth: usize,
    pub group: usize,
}

impl Scorer for MatchThenRerank<'_> {
    fn name(&self) -> String {
        format!(
            "{} over the top {} of {} in lists of {}",
            self.reranker.name(),
            self.depth,
            self.matcher.name(),
            self.group
        )
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        self.reranker.score(case, candidates)
    }

    fn score_batch(&self, requests: &[Request<'_>]) -> anyhow::Result<Vec<Vec<f32>>> {
        self.reranker.score_batch(requests)
    }

    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        let matched = match self.matcher.score_all(cases)? {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        let retrieved: Vec<Vec<ItemId>> = cases
            .iter()
            .zip(&matched)
            .map(|(case, scores)| top(scores, &case.history, self.depth))
            .collect();
        let lists: Vec<Vec<Vec<ItemId>>> = retrieved
            .iter()
            .map(|items| {
                deal(items.len(), self.group)
                    .iter()
                    .map(|positions| positions.iter().map(|&i| items[i]).collect())
                    .collect()
            })
            .collect();
        let requests: Vec<Request<'_>> = cases
            .iter()
            .zip(&lists)
            .flat_map(|(case, lists)| {
                lists.iter().map(move |items| Request {
                    case,
                    candidates: items,
                })
            })
            .collect();
        Some(self.reranker.score_batch(&requests).map(|reranked| {
            let mut reranked = reranked.into_iter();
            lists
                .iter()
                .zip(&matched)
                .map(|(lists, all)| {
                    let mut out = vec![f32::NEG_INFINITY; all.len()];
                    for (items, scores) in lists.iter().zip(reranked.by_ref()) {
                        for (item, s) in items.iter().zip(scores) {
                            out[item.index()] = s;
                        }
                    }
                    out
                })
                .collect()
        }))
    }
}

/// The `depth` best-scored items not in `history` (ties to the lower id), best first. Items the
/// matcher gave no score (NaN or minus infinity, as a generating matcher gives every item it
/// did not write) are not retrieved.
fn top(scores: &[f32], history: &[ItemId], depth: usize) -> Vec<ItemId> {
    let seen: std::collections::HashSet<ItemId> = history.iter().copied().collect();
    let mut items: Vec<ItemId> = (0..scores.len() as u32)
        .map(ItemId)
        .filter(|i| !seen.contains(i) && scores[i.index()] > f32::NEG_INFINITY)
        .collect();
    items.sort_by(|a, b| {
        scores[b.index()]
            .total_cmp(&scores[a.index()])
            .then(a.cmp(b))
    });
    items.truncate(depth);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_skips_the_history_and_breaks_ties_by_id() {
        let scores = [0.5, 0.9, 0.9, 0.1, 0.7];
        assert_eq!(
            top(&scores, &[ItemId(1)], 3),
            vec![ItemId(2), ItemId(4), ItemId(0)]
        );
    }
}
