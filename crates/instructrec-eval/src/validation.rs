//! HR@1 on reranking validation lines while a model is tuned, scored by the report's own rule
//! ([`title_scores`]), so that the checkpoint kept as `best/` is the best by the measure the
//! report will apply to it.

use std::path::Path;

use anyhow::bail;
use instructrec_data::seed::seeded_sample;
use instructrec_data::{ItemId, Prepared};
use instructrec_instructions::{read_lines, LineFilter, TaskForm};
use instructrec_model::{Seq2Seq, TokenLimits};

use crate::instruct::{title_scores, Normalisation};
use crate::metrics::{pessimistic_rank, MetricError};

/// A reranking validation line: the instruction, its candidates' titles, and which is right.
#[derive(Debug, Clone, PartialEq)]
pub struct RankCase {
    pub instruction: String,
    pub candidates: Vec<String>,
    pub positive: usize,
}

/// The reranking (T3) lines of `valid` with more than one candidate whose target item is among
/// them, in file order; their items are titled from `prepared`, the dataset the instructions
/// were built from.
pub fn rank_cases(valid: &Path, prepared: &Prepared) -> anyhow::Result<Vec<RankCase>> {
    let reranking = LineFilter {
        tasks: vec![TaskForm::Rerank],
        ..LineFilter::default()
    };
    let title = |id: ItemId| {
        prepared
            .dataset
            .items
            .get(id.index())
            .map(|i| i.title.clone())
    };
    let mut cases = Vec::new();
    for line in read_lines(valid, &reranking)? {
        if line.candidates.len() < 2 {
            continue;
        }
        let candidates: Option<Vec<String>> = line.candidates.iter().map(|&c| title(c)).collect();
        let (Some(candidates), Some(target)) = (candidates, line.target_item.and_then(title))
        else {
            bail!(
                "{}:{}: candidate or target item not in the prepared dataset",
                valid.display(),
                line.line
            );
        };
        if let Some(positive) = candidates.iter().position(|c| *c == target) {
            cases.push(RankCase {
                instruction: line.instruction,
                candidates,
                positive,
            });
        }
    }
    Ok(cases)
}

/// HR@1 while tuning: a seeded sample of the reranking validation lines, scored as reports
/// score.
pub struct RankValidation {
    pub cases: Vec<RankCase>,
    pub limits: TokenLimits,
    pub normalisation: Normalisation,
}

impl RankValidation {
    /// At most `n` of [`rank_cases`]`(valid, prepared)`, drawn with `seed`; none without
    /// validation lines or a prepared dataset to title them.
    pub fn sample(
        lines: Option<(&Path, &Prepared)>,
        (n, seed): (usize, u64),
        (limits, normalisation): (TokenLimits, Normalisation),
    ) -> anyhow::Result<Self> {
        let cases = match lines {
            Some((valid, prepared)) => seeded_sample(rank_cases(valid, prepared)?, n, seed),
            None => Vec::new(),
        };
        if !cases.is_empty() {
            tracing::info!("HR@1 on {} reranking validation lines", cases.len());
        }
        Ok(Self {
            cases,
            limits,
            normalisation,
        })
    }

    pub fn hit_rate_at_1(&self, model: &Seq2Seq) -> anyhow::Result<f64> {
        hit_rate_at_1(model, &self.cases, self.limits, self.normalisation)
    }
}

/// The share of `cases` whose right candidate the model scores above every other. Ties count as
/// misses, as in the report's ranks; so does a case with a NaN score, rather than stopping the
/// training that asked.
pub fn hit_rate_at_1(
    model: &Seq2Seq,
    cases: &[RankCase],
    limits: TokenLimits,
    normalisation: Normalisation,
) -> anyhow::Result<f64> {
    let mut hits = 0usize;
    for case in cases {
        let titles: Vec<&str> = case.candidates.iter().map(String::as_str).collect();
        let scores = title_scores(model, &case.instruction, &titles, limits, normalisation)?;
        hits += match pessimistic_rank(&scores, case.positive) {
            Ok(rank) => usize::from(rank == 1),
            Err(MetricError::NaN { .. }) => 0,
            Err(e) => return Err(e.into()),
        };
    }
    Ok(hits as f64 / cases.len().max(1) as f64)
}
