//! Ranking metrics for one held-out positive per case.
//!
//! The rank of the positive is computed pessimistically: every other candidate whose score is
//! greater than *or equal to* the positive's is placed above it. A scorer that cannot tell items
//! apart (a constant) therefore gets the worst rank, never credit for the list order.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("empty candidate list: there is nothing to rank")]
    EmptyCandidates,
    #[error("positive index {index} is outside a list of {len} scores")]
    PositiveOutOfRange { index: usize, len: usize },
    #[error("score {index} is NaN: a scorer must return a number for every candidate")]
    NaN { index: usize },
}

/// 1-based rank of `scores[positive]` among `scores`, ties broken against the positive.
pub fn pessimistic_rank(scores: &[f32], positive: usize) -> Result<usize, MetricError> {
    if scores.is_empty() {
        return Err(MetricError::EmptyCandidates);
    }
    if positive >= scores.len() {
        return Err(MetricError::PositiveOutOfRange {
            index: positive,
            len: scores.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| s.is_nan()) {
        return Err(MetricError::NaN { index });
    }
    let p = scores[positive];
    let above = scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| i != positive && s >= p)
        .count();
    Ok(above + 1)
}

/// Pessimistic rank of `scores[positive]` over a full catalogue, ignoring the items in `excluded`
/// (the user's other interactions, which a recommender would never show again).
pub fn pessimistic_rank_excluding(
    scores: &[f32],
    positive: usize,
    excluded: &[usize],
) -> Result<usize, MetricError> {
    let rank = pessimistic_rank(scores, positive)?;
    let p = scores[positive];
    let mut excluded: Vec<usize> = excluded
        .iter()
        .copied()
        .filter(|&i| i != positive && i < scores.len())
        .collect();
    excluded.sort_unstable();
    excluded.dedup();
    let excluded_above = excluded.iter().filter(|&&i| scores[i] >= p).count();
    Ok(rank - excluded_above)
}

/// Metric values averaged over cases. HR@k is the share of cases whose positive is in the top k;
/// NDCG@k with a single relevant item is `1 / log2(rank + 1)` when `rank <= k`, else 0; MRR is
/// the mean of `1 / rank`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub cases: usize,
    pub hr1: f64,
    pub hr3: f64,
    pub hr5: f64,
    pub hr10: f64,
    pub ndcg3: f64,
    pub ndcg5: f64,
    pub ndcg10: f64,
    pub mrr: f64,
    /// Standard errors of the mean over cases: sqrt(sample variance / cases). Absent (0) in
    /// reports written before they were recorded.
    #[serde(default)]
    pub se: StdErrors,
}

/// Standard errors of the headline metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StdErrors {
    pub hr1: f64,
    pub ndcg5: f64,
    pub hr10: f64,
    pub ndcg10: f64,
}

/// Reads one metric out of [`Metrics`].
pub type MetricAccessor = fn(&Metrics) -> f64;

/// A metric's standard error, for the metrics that have one recorded.
pub fn std_error(m: &Metrics, column: &str) -> Option<f64> {
    match column {
        "HR@1" => Some(m.se.hr1),
        "NDCG@5" => Some(m.se.ndcg5),
        "HR@10" => Some(m.se.hr10),
        "NDCG@10" => Some(m.se.ndcg10),
        _ => None,
    }
}

/// The metric names in report column order, with accessors.
pub const METRIC_COLUMNS: [(&str, MetricAccessor); 8] = [
    ("HR@1", |m| m.hr1),
    ("HR@3", |m| m.hr3),
    ("HR@5", |m| m.hr5),
    ("NDCG@3", |m| m.ndcg3),
    ("NDCG@5", |m| m.ndcg5),
    ("HR@10", |m| m.hr10),
    ("NDCG@10", |m| m.ndcg10),
    ("MRR", |m| m.mrr),
];

/// Two models on the same cases: the mean per-case difference (first minus second) of HR@1 and
/// NDCG@5 and its standard error. Pairing removes what the cases share (an easy case is easy
/// for both), so it judges a difference more sharply than two unpaired standard errors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paired {
    pub cases: usize,
    pub hr1: f64,
    pub hr1_se: f64,
    pub ndcg5: f64,
    pub ndcg5_se: f64,
}

/// The paired difference of two rank lists of the same cases in the same order; `None` when
/// their lengths differ or there are fewer than two cases.
pub fn paired(first: &[u32], second: &[u32]) -> Option<Paired> {
    let n = first.len();
    if n != second.len() || n < 2 {
        return None;
    }
    let mean_se = |f: fn(usize) -> f64| {
        let d: Vec<f64> = first
            .iter()
            .zip(second)
            .map(|(&a, &b)| f(a as usize) - f(b as usize))
            .collect();
        let mean = d.iter().sum::<f64>() / n as f64;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, (var / n as f64).sqrt())
    };
    let (hr1, hr1_se) = mean_se(|r| hit(r, 1));
    let (ndcg5, ndcg5_se) = mean_se(|r| ndcg(r, 5));
    Some(Paired {
        cases: n,
        hr1,
        hr1_se,
        ndcg5,
        ndcg5_se,
    })
}

/// Depths at which reports give full ranking's recall.
pub const RECALL_DEPTHS: [usize; 7] = [10, 20, 50, 100, 200, 500, 1000];

/// The share of `ranks` (1-based) within the top `n`.
pub fn recall_at(ranks: &[u32], n: usize) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().filter(|&&r| r as usize <= n).count() as f64 / ranks.len() as f64
}

/// Sums per-case contributions; `finish` divides by the number of cases.
#[derive(Debug, Clone, Default)]
pub struct MetricAccumulator {
    sum: Metrics,
    /// Sums of squared per-case values of the metrics with standard errors.
    squares: StdErrors,
    ranks: Vec<u32>,
}

fn hit(rank: usize, k: usize) -> f64 {
    if rank <= k {
        1.0
    } else {
        0.0
    }
}

fn ndcg(rank: usize, k: usize) -> f64 {
    if rank <= k {
        1.0 / ((rank + 1) as f64).log2()
    } else {
        0.0
    }
}

impl MetricAccumulator {
    /// Adds one case whose positive was ranked `rank` (1-based).
    pub fn add(&mut self, rank: usize) {
        assert!(rank >= 1, "ranks are 1-based");
        self.ranks.push(u32::try_from(rank).unwrap_or(u32::MAX));
        let s = &mut self.sum;
        s.cases += 1;
        s.hr1 += hit(rank, 1);
        s.hr3 += hit(rank, 3);
        s.hr5 += hit(rank, 5);
        s.hr10 += hit(rank, 10);
        s.ndcg3 += ndcg(rank, 3);
        s.ndcg5 += ndcg(rank, 5);
        s.ndcg10 += ndcg(rank, 10);
        s.mrr += 1.0 / rank as f64;
        let q = &mut self.squares;
        q.hr1 += hit(rank, 1);
        q.ndcg5 += ndcg(rank, 5).powi(2);
        q.hr10 += hit(rank, 10);
        q.ndcg10 += ndcg(rank, 10).powi(2);
    }

    /// Every added rank, in order.
    pub fn into_ranks(self) -> Vec<u32> {
        self.ranks
    }

    /// Averages; `None` when no case was added (a mean over nothing is not zero).
    pub fn finish(&self) -> Option<Metrics> {
        let n = self.sum.cases;
        if n == 0 {
            return None;
        }
        let d = n as f64;
        let s = &self.sum;
        // The sample variance (n - 1 in the denominator) of the per-case values, over n.
        let se = |sum: f64, squares: f64| {
            if n < 2 {
                return 0.0;
            }
            let mean = sum / d;
            ((squares - d * mean * mean).max(0.0) / (d - 1.0) / d).sqrt()
        };
        let q = &self.squares;
        Some(Metrics {
            cases: n,
            hr1: s.hr1 / d,
            hr3: s.hr3 / d,
            hr5: s.hr5 / d,
            hr10: s.hr10 / d,
            ndcg3: s.ndcg3 / d,
            ndcg5: s.ndcg5 / d,
            ndcg10: s.ndcg10 / d,
            mrr: s.mrr / d,
            se: StdErrors {
                hr1: se(s.hr1, q.hr1),
                ndcg5: se(s.ndcg5, q.ndcg5),
                hr10: se(s.hr10, q.hr10),
                ndcg10: se(s.ndcg10, q.ndcg10),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recall_counts_ranks_within_the_depth() {
        let ranks = [1, 10, 11, 50, 1000];
        assert_eq!(super::recall_at(&ranks, 10), 0.4);
        assert_eq!(super::recall_at(&ranks, 50), 0.8);
        assert_eq!(super::recall_at(&ranks, 999), 0.8);
        assert_eq!(super::recall_at(&[], 10), 0.0);
    }

    use super::*;

    #[test]
    fn paired_differences_are_per_case_means_with_their_standard_error() {
        // Hits for the first model on cases 0-2, the second on case 0 only.
        let p = paired(&[1, 1, 1, 2], &[1, 3, 3, 2]).unwrap();
        assert!((p.hr1 - 0.5).abs() < 1e-12);
        // Differences 0, 1, 1, 0: sample variance 1/3, over 4 cases.
        assert!((p.hr1_se - (1.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(paired(&[1, 2], &[1]), None);
        assert_eq!(paired(&[1], &[1]), None);
        let same = paired(&[1, 4, 2], &[1, 4, 2]).unwrap();
        assert_eq!((same.hr1, same.hr1_se, same.ndcg5), (0.0, 0.0, 0.0));
    }

    fn approx(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn standard_errors_are_those_of_the_per_case_values() {
        let mut acc = MetricAccumulator::default();
        for rank in [1, 1, 2, 7, 12] {
            acc.add(rank);
        }
        let m = acc.finish().unwrap();
        // HR@1 values 1,1,0,0,0: mean 0.4, sample variance 0.3, se sqrt(0.3 / 5).
        approx(m.hr1, 0.4);
        approx(m.se.hr1, (0.3f64 / 5.0).sqrt());
        let v: Vec<f64> = [1usize, 1, 2, 7, 12].iter().map(|&r| ndcg(r, 5)).collect();
        let mean = v.iter().sum::<f64>() / 5.0;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        approx(m.se.ndcg5, (var / 5.0).sqrt());
    }

    #[test]
    fn constant_scorer_gets_the_worst_rank() {
        let scores = [0.5f32; 10];
        assert_eq!(pessimistic_rank(&scores, 0).unwrap(), 10);
        let mut acc = MetricAccumulator::default();
        acc.add(pessimistic_rank(&scores, 0).unwrap());
        let m = acc.finish().unwrap();
        assert_eq!(m.hr1, 0.0);
        assert_eq!(m.hr5, 0.0);
        assert_eq!(m.hr10, 1.0);
        approx(m.mrr, 0.1);
    }

    #[test]
    fn partial_ties_count_against_the_positive() {
        // positive 2.0; one strictly higher, two equal, the rest lower => rank 4.
        let scores = [2.0f32, 3.0, 2.0, 2.0, 1.0, 0.0];
        assert_eq!(pessimistic_rank(&scores, 0).unwrap(), 4);
    }

    #[test]
    fn positive_at_each_rank_gives_hand_computed_metrics() {
        for rank in 1..=10usize {
            // Positive at index 0 with exactly rank-1 negatives scoring higher.
            let mut scores = vec![0.0f32; 10];
            scores[0] = 11.5 - rank as f32;
            for (j, s) in scores.iter_mut().enumerate().skip(1) {
                *s = 10.0 - j as f32 + 1.0;
            }
            assert_eq!(
                pessimistic_rank(&scores, 0).unwrap(),
                rank,
                "scores {scores:?}"
            );
            let mut acc = MetricAccumulator::default();
            acc.add(rank);
            let m = acc.finish().unwrap();
            approx(m.hr1, (rank <= 1) as u8 as f64);
            approx(m.hr3, (rank <= 3) as u8 as f64);
            approx(m.hr5, (rank <= 5) as u8 as f64);
            approx(m.hr10, 1.0);
            let expected_ndcg = |k: usize| {
                if rank <= k {
                    1.0 / ((rank + 1) as f64).log2()
                } else {
                    0.0
                }
            };
            approx(m.ndcg3, expected_ndcg(3));
            approx(m.ndcg5, expected_ndcg(5));
            approx(m.ndcg10, expected_ndcg(10));
            approx(m.mrr, 1.0 / rank as f64);
        }
    }

    #[test]
    fn hand_computed_ndcg_values() {
        let mut acc = MetricAccumulator::default();
        acc.add(1); // ndcg 1
        acc.add(2); // ndcg 1/log2(3) = 0.6309297535714575
        acc.add(3); // ndcg 0.5
        acc.add(6); // outside @5 -> 0 at 3 and 5; 1/log2(7) at 10
        let m = acc.finish().unwrap();
        assert_eq!(m.cases, 4);
        approx(m.hr1, 0.25);
        approx(m.hr3, 0.75);
        approx(m.hr5, 0.75);
        approx(m.ndcg3, (1.0 + 0.6309297535714575 + 0.5) / 4.0);
        approx(m.ndcg5, (1.0 + 0.6309297535714575 + 0.5) / 4.0);
        approx(
            m.ndcg10,
            (1.0 + 0.6309297535714575 + 0.5 + 0.3562071871080222) / 4.0,
        );
        approx(m.mrr, (1.0 + 0.5 + 1.0 / 3.0 + 1.0 / 6.0) / 4.0);
    }

    #[test]
    fn empty_and_invalid_inputs_are_errors() {
        assert_eq!(pessimistic_rank(&[], 0), Err(MetricError::EmptyCandidates));
        assert_eq!(
            pessimistic_rank(&[1.0], 1),
            Err(MetricError::PositiveOutOfRange { index: 1, len: 1 })
        );
        assert_eq!(
            pessimistic_rank(&[1.0, f32::NAN, 0.0], 0),
            Err(MetricError::NaN { index: 1 })
        );
        // A NaN positive is an error too, not a silent last place.
        assert_eq!(
            pessimistic_rank(&[f32::NAN, 0.0], 0),
            Err(MetricError::NaN { index: 0 })
        );
        assert_eq!(MetricAccumulator::default().finish(), None);
    }

    #[test]
    fn infinities_rank_normally() {
        assert_eq!(pessimistic_rank(&[f32::INFINITY, 1.0], 0).unwrap(), 1);
        assert_eq!(pessimistic_rank(&[f32::NEG_INFINITY, 1.0], 0).unwrap(), 2);
    }

    #[test]
    fn excluded_items_do_not_push_the_positive_down() {
        let scores = [1.0f32, 5.0, 4.0, 0.5, 1.0];
        // Unfiltered: 5.0, 4.0 and the tie 1.0 are above => rank 4.
        assert_eq!(pessimistic_rank(&scores, 0).unwrap(), 4);
        // Excluding item 1 (and the positive itself, which is ignored) => rank 3.
        assert_eq!(
            pessimistic_rank_excluding(&scores, 0, &[1, 0, 1]).unwrap(),
            3
        );
        // Excluding a lower-scored item changes nothing.
        assert_eq!(pessimistic_rank_excluding(&scores, 0, &[3]).unwrap(), 4);
    }
}
