//! The one evaluation path: build a protocol's cases from a prepared dataset, have a scorer score
//! them in batches, rank the positive pessimistically and average the metrics.

use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use instructrec_data::{CandidateSet, Fold, ItemId, Prepared};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::{pessimistic_rank, pessimistic_rank_excluding, MetricAccumulator, Metrics};
use crate::protocol::Protocol;
use crate::scorer::{Case, Request, Scorer};

/// A case with its answer: what the harness knows and the scorer does not.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalCase {
    pub case: Case,
    pub positive: ItemId,
    /// Stored candidates (positive included); empty for full-ranking cases.
    pub candidates: Vec<ItemId>,
    /// The user's other interactions, never counted above the positive in full ranking.
    pub excluded: Vec<ItemId>,
}

/// How the positive is ranked: against a stored candidate list, or against the whole catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Setting {
    /// 1 positive + `size - 1` stored negatives.
    Sampled { size: usize },
    /// Every catalogue item except the user's other interactions.
    FullRanking,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Sampled { size } => write!(f, "1+{} sampled", size - 1),
            Setting::FullRanking => f.write_str("full ranking"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub setting: Setting,
    pub fold: Fold,
    pub metrics: Metrics,
    pub eval_wall_s: f64,
}

/// SHA-256 of the exact candidate lists a result was computed on (as JSON), so two reports can be
/// checked to rank the same candidates whatever file layout the data crate uses.
pub fn candidates_checksum(sets: &[CandidateSet]) -> String {
    let json = serde_json::to_vec(sets).expect("candidate sets serialise");
    hex::encode(Sha256::digest(json))
}

/// The stored candidate lists of a fold and size, or an error naming what is missing.
pub fn stored_candidates(
    prepared: &Prepared,
    fold: Fold,
    size: usize,
) -> anyhow::Result<&[CandidateSet]> {
    prepared.candidates(fold, size).with_context(|| {
        let have: Vec<String> = prepared
            .candidates
            .keys()
            .map(|(f, s)| format!("{f:?}/{s}"))
            .collect();
        format!(
            "the prepared dataset has no {fold:?} candidate lists of size {size} (it has: {})",
            have.join(", ")
        )
    })
}

/// Builds the cases of `protocol` for a fold. `Sampled` settings use the stored candidate lists;
/// `FullRanking` uses the same users with no candidate list.
pub fn build_cases(
    prepared: &Prepared,
    protocol: Protocol,
    fold: Fold,
    setting: Setting,
) -> anyhow::Result<Vec<EvalCase>> {
    if let Some(why) = protocol.missing() {
        bail!(
            "protocol {protocol} ({}) is not implemented: {why}",
            protocol.scenario()
        );
    }
    // Full ranking uses the users of the 1+9 lists, so both settings cover the same people.
    let size = match setting {
        Setting::Sampled { size } => size,
        Setting::FullRanking => 10,
    };
    let sets = stored_candidates(prepared, fold, size)?;
    sets.iter()
        .map(|set| {
            let held_out = prepared.held_out(set.user, fold);
            if held_out != set.positive {
                bail!(
                    "candidate list for user {} ({fold:?}, size {size}) has positive {} but the \
                     user's held-out item is {}",
                    set.user.0,
                    set.positive.0,
                    held_out.0
                );
            }
            let history: Vec<ItemId> = prepared
                .history_before(set.user, fold)
                .iter()
                .map(|i| i.item)
                .collect();
            let excluded = prepared.dataset.sequences[set.user.index()]
                .iter()
                .map(|i| i.item)
                .filter(|&i| i != set.positive)
                .collect();
            Ok(EvalCase {
                case: Case {
                    user: set.user,
                    history,
                    query: None,
                    instruction: None,
                },
                positive: set.positive,
                candidates: match setting {
                    Setting::Sampled { .. } => set.items(),
                    Setting::FullRanking => Vec::new(),
                },
                excluded,
            })
        })
        .collect()
}

fn progress(len: usize, label: String) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {bar:30} {pos}/{len} cases ({eta})",
        )
        .expect("valid template"),
    );
    pb.set_message(label);
    pb
}

/// Ranks every case's positive among its candidates. Errors if the scorer returns the wrong
/// number of scores or a NaN, naming the user.
pub fn evaluate_sampled(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    batch_size: usize,
) -> anyhow::Result<Metrics> {
    let mut acc = MetricAccumulator::default();
    let pb = progress(cases.len(), format!("{} sampled", scorer.name()));
    for chunk in cases.chunks(batch_size.max(1)) {
        let requests: Vec<Request<'_>> = chunk
            .iter()
            .map(|c| Request {
                case: &c.case,
                candidates: &c.candidates,
            })
            .collect();
        let scores = scorer.score_batch(&requests)?;
        if scores.len() != chunk.len() {
            bail!(
                "{} returned {} score lists for {} requests",
                scorer.name(),
                scores.len(),
                chunk.len()
            );
        }
        for (c, s) in chunk.iter().zip(&scores) {
            if s.len() != c.candidates.len() {
                bail!(
                    "{} returned {} scores for {} candidates (user {})",
                    scorer.name(),
                    s.len(),
                    c.candidates.len(),
                    c.case.user.0
                );
            }
            let positive = c
                .candidates
                .iter()
                .position(|&i| i == c.positive)
                .with_context(|| {
                    format!("user {}: positive not among candidates", c.case.user.0)
                })?;
            let rank = pessimistic_rank(s, positive)
                .with_context(|| format!("{} on user {}", scorer.name(), c.case.user.0))?;
            acc.add(rank);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    acc.finish().context("no cases to evaluate")
}

/// Ranks every case's positive over the whole catalogue (`catalogue` items), excluding the user's
/// other interactions. `Ok(None)` when the scorer cannot score the catalogue.
pub fn evaluate_full(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    catalogue: usize,
    batch_size: usize,
) -> anyhow::Result<Option<Metrics>> {
    let mut acc = MetricAccumulator::default();
    let pb = progress(cases.len(), format!("{} full ranking", scorer.name()));
    for chunk in cases.chunks(batch_size.max(1)) {
        let refs: Vec<&Case> = chunk.iter().map(|c| &c.case).collect();
        let Some(scores) = scorer.score_all(&refs) else {
            pb.finish_and_clear();
            return Ok(None);
        };
        let scores = scores?;
        if scores.len() != chunk.len() {
            bail!(
                "{} returned {} score lists for {} cases",
                scorer.name(),
                scores.len(),
                chunk.len()
            );
        }
        for (c, s) in chunk.iter().zip(&scores) {
            if s.len() != catalogue {
                bail!(
                    "{} returned {} scores for a catalogue of {catalogue} items",
                    scorer.name(),
                    s.len()
                );
            }
            let excluded: Vec<usize> = c.excluded.iter().map(|i| i.index()).collect();
            let rank = pessimistic_rank_excluding(s, c.positive.index(), &excluded)
                .with_context(|| format!("{} on user {}", scorer.name(), c.case.user.0))?;
            acc.add(rank);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    acc.finish().context("no cases to evaluate").map(Some)
}

/// Builds the cases and evaluates one setting, timing the scoring. `Ok(None)` for a full-ranking
/// setting the scorer does not support.
pub fn evaluate(
    scorer: &dyn Scorer,
    prepared: &Prepared,
    protocol: Protocol,
    fold: Fold,
    setting: Setting,
    batch_size: usize,
) -> anyhow::Result<Option<Evaluation>> {
    let cases = build_cases(prepared, protocol, fold, setting)?;
    let start = Instant::now();
    let metrics = match setting {
        Setting::Sampled { .. } => Some(evaluate_sampled(scorer, &cases, batch_size)?),
        Setting::FullRanking => {
            evaluate_full(scorer, &cases, prepared.dataset.items.len(), batch_size)?
        }
    };
    let eval_wall_s = start.elapsed().as_secs_f64();
    Ok(metrics.map(|metrics| Evaluation {
        setting,
        fold,
        metrics,
        eval_wall_s,
    }))
}
