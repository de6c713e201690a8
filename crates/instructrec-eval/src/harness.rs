//! The one evaluation path: build a protocol's cases from a prepared dataset, have a scorer score
//! them in batches, rank the positive pessimistically and average the metrics.

use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;

use instructrec_data::{CandidateSet, Fold, ItemId, Prepared, UserId};
use instructrec_instructions::rerank::context_of;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::{pessimistic_rank, pessimistic_rank_excluding, MetricAccumulator, Metrics};
use crate::protocol::Protocol;
use crate::queries::QueryLine;
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
    /// The paper's way with long lists: the 1 + `size - 1` candidates are shuffled (seeded per
    /// user) into `groups` equal groups, each group's top-scored item goes to a final list that
    /// is scored again. A positive that loses its group ranks after every winner.
    Tournament { size: usize, groups: usize },
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Sampled { size } => write!(f, "1+{} sampled", size - 1),
            Setting::FullRanking => f.write_str("full ranking"),
            Setting::Tournament { size, groups } => {
                write!(f, "1+{} in {groups} groups", size - 1)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub setting: Setting,
    pub fold: Fold,
    pub metrics: Metrics,
    pub eval_wall_s: f64,
    /// The positive's rank in each case, in case order (the same order for every model of a
    /// report): what paired comparisons between two models read. Absent in older reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<u32>,
    /// The way the instruction model was asked here, where it was chosen on the validation
    /// fold (`eval --choose-form`): T3, T2, T0 or T3+T2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<String>,
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
    if protocol == Protocol::HardNegatives {
        bail!(
            "protocol {protocol} uses mined lists: build the sequential cases and replace their \
             candidates with with_candidates"
        );
    }
    if protocol.needs_queries() {
        bail!(
            "protocol {protocol} ({}) takes its queries from instruction lines: use \
             build_query_cases",
            protocol.scenario()
        );
    }
    // Full ranking uses the users of the 1+9 lists, so both settings cover the same people.
    let size = match setting {
        Setting::Sampled { size } | Setting::Tournament { size, .. } => size,
        Setting::FullRanking => 10,
    };
    let sets = stored_candidates(prepared, fold, size)?;
    sets.iter()
        .map(|set| {
            let mut case = list_case(prepared, set, fold)?;
            if setting == Setting::FullRanking {
                case.candidates.clear();
            }
            Ok(case)
        })
        .collect()
}

/// The case of one candidate list: the user's history before the fold's held-out item, which
/// must be the list's positive, and the list's items.
pub fn list_case(prepared: &Prepared, set: &CandidateSet, fold: Fold) -> anyhow::Result<EvalCase> {
    let held_out = prepared.held_out(set.user, fold);
    if held_out != set.positive {
        bail!(
            "candidate list for user {} ({fold:?}, 1+{}) has positive {} but the user's held-out \
             item is {}",
            set.user.0,
            set.negatives.len(),
            set.positive.0,
            held_out.0
        );
    }
    let history: Vec<ItemId> = prepared
        .history_before(set.user, fold)
        .iter()
        .map(|i| i.item)
        .collect();
    Ok(EvalCase {
        case: Case {
            user: set.user,
            history,
            query: None,
            context: context(prepared, set.user, set.positive),
        },
        positive: set.positive,
        candidates: set.items(),
        excluded: others(prepared, set.user, set.positive),
    })
}

/// The situation of a user's interaction with `item`, worded as the instruction builder words
/// its evaluation lines.
fn context(prepared: &Prepared, user: UserId, item: ItemId) -> Option<String> {
    let seq = &prepared.dataset.sequences[user.index()];
    context_of(seq.iter().find(|x| x.item == item)?.timestamp)
}

/// Whether `items` are exactly `set`'s candidates, in any order.
fn same_items(items: &[ItemId], set: &CandidateSet) -> bool {
    let mut a = items.to_vec();
    let mut b = set.items();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// The user's interactions other than `positive`, which full ranking never counts above it.
fn others(prepared: &Prepared, user: UserId, positive: ItemId) -> Vec<ItemId> {
    prepared.dataset.sequences[user.index()]
        .iter()
        .map(|i| i.item)
        .filter(|&i| i != positive)
        .collect()
}

/// Cases of a search protocol from the instruction stage's test lines (see
/// [`crate::queries::read_queries`]). A list of the line's own size (1+9 as the instruction
/// stage writes them) is the line's list; other sizes and tournaments use the fold's stored lists
/// of that size, whose positive must be the line's. Product search is <P0,...>: its cases carry
/// no history.
pub fn build_query_cases(
    prepared: &Prepared,
    protocol: Protocol,
    lines: &[QueryLine],
    fold: Fold,
    setting: Setting,
) -> anyhow::Result<Vec<EvalCase>> {
    if !protocol.needs_queries() {
        bail!("protocol {protocol} does not take queries");
    }
    let size = match setting {
        Setting::Sampled { size } | Setting::Tournament { size, .. } => Some(size),
        Setting::FullRanking => None,
    };
    let stored: Option<HashMap<UserId, &CandidateSet>> = match size {
        Some(size) if lines.iter().any(|l| l.candidates.len() != size) => Some(
            stored_candidates(prepared, fold, size)?
                .iter()
                .map(|s| (s.user, s))
                .collect(),
        ),
        // The lines' own lists, in their stored order where the prepared data have them, so
        // that the instruction model lists them as the instruction builder did.
        Some(size) => prepared
            .candidates(fold, size)
            .map(|sets| sets.iter().map(|s| (s.user, s)).collect()),
        _ => None,
    };
    let mut cases = Vec::with_capacity(lines.len());
    for line in lines {
        if line.user.index() >= prepared.dataset.users.len() {
            bail!(
                "query line names user {} who is not in the dataset",
                line.user.0
            );
        }
        let stored_set = stored.as_ref().and_then(|s| s.get(&line.user));
        let candidates = match size {
            None => Vec::new(),
            Some(size) if line.candidates.len() == size => match stored_set {
                Some(set) if same_items(&line.candidates, set) => set.items(),
                _ => line.candidates.clone(),
            },
            Some(_) => {
                let Some(set) = stored_set else {
                    // The sample the lists were drawn for may not cover every query user.
                    continue;
                };
                if set.positive != line.positive {
                    bail!(
                        "user {}: stored list has positive {} but the query line's target is {}",
                        line.user.0,
                        set.positive.0,
                        line.positive.0
                    );
                }
                set.items()
            }
        };
        if !candidates.is_empty() && !candidates.contains(&line.positive) {
            bail!(
                "user {}: the query line's target is not among its candidates",
                line.user.0
            );
        }
        let (history, excluded) = if protocol == Protocol::ProductSearch {
            (Vec::new(), Vec::new())
        } else {
            (
                prepared
                    .history_before(line.user, fold)
                    .iter()
                    .map(|i| i.item)
                    .collect(),
                others(prepared, line.user, line.positive),
            )
        };
        cases.push(EvalCase {
            case: Case {
                user: line.user,
                history,
                query: Some(line.query.clone()),
                context: context(prepared, line.user, line.positive),
            },
            positive: line.positive,
            candidates,
            excluded,
        });
    }
    if cases.is_empty() {
        bail!("no {protocol} case could be built for {setting}");
    }
    Ok(cases)
}

/// Replaces each case's candidates by a list mined elsewhere (hard negatives), matched by user;
/// cases without a list are dropped. Errors if a list's positive is not the case's.
pub fn with_candidates(
    cases: Vec<EvalCase>,
    lists: &[CandidateSet],
) -> anyhow::Result<Vec<EvalCase>> {
    let by_user: HashMap<UserId, &CandidateSet> = lists.iter().map(|s| (s.user, s)).collect();
    let mut out = Vec::with_capacity(lists.len());
    for mut c in cases {
        let Some(set) = by_user.get(&c.case.user) else {
            continue;
        };
        if set.positive != c.positive {
            bail!(
                "user {}: mined list has positive {} but the case's is {}",
                c.case.user.0,
                set.positive.0,
                c.positive.0
            );
        }
        c.candidates = set.items();
        out.push(c);
    }
    Ok(out)
}

/// Mines hard negatives with `miner`: for each case, the `negatives` top-scored catalogue items
/// that are neither the positive nor among the user's other interactions (`excluded`; ties go
/// to the lower item id), best first.
pub fn mine_hard_negatives(
    miner: &dyn Scorer,
    cases: &[EvalCase],
    catalogue: usize,
    negatives: usize,
    batch_size: usize,
) -> anyhow::Result<Vec<CandidateSet>> {
    let mut sets = Vec::with_capacity(cases.len());
    let pb = progress(cases.len(), format!("{} mining", miner.name()));
    for chunk in cases.chunks(batch_size.max(1)) {
        let refs: Vec<&Case> = chunk.iter().map(|c| &c.case).collect();
        let scores = miner
            .score_all(&refs)
            .with_context(|| format!("{} cannot score the whole catalogue", miner.name()))??;
        for (c, s) in chunk.iter().zip(&scores) {
            if s.len() != catalogue {
                bail!(
                    "{} returned {} scores for a catalogue of {catalogue} items",
                    miner.name(),
                    s.len()
                );
            }
            let mut skip = vec![false; catalogue];
            for i in c.excluded.iter().chain(std::iter::once(&c.positive)) {
                skip[i.index()] = true;
            }
            let mut pool: Vec<usize> = (0..catalogue).filter(|&i| !skip[i]).collect();
            if pool.len() < negatives {
                bail!(
                    "user {}: only {} items are left to mine {negatives} negatives from",
                    c.case.user.0,
                    pool.len()
                );
            }
            if let Some(i) = pool.iter().find(|&&i| s[i].is_nan()) {
                bail!(
                    "{} scored item {i} NaN for user {}",
                    miner.name(),
                    c.case.user.0
                );
            }
            // Partial selection: a full sort per user is too slow over a large catalogue.
            let order = |a: &usize, b: &usize| s[*b].total_cmp(&s[*a]).then(a.cmp(b));
            if negatives > 0 && negatives < pool.len() {
                pool.select_nth_unstable_by(negatives - 1, order);
            }
            pool.truncate(negatives);
            pool.sort_by(order);
            let hard: Vec<ItemId> = pool.iter().map(|&i| ItemId(i as u32)).collect();
            sets.push(CandidateSet {
                user: c.case.user,
                positive: c.positive,
                negatives: hard,
            });
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(sets)
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
    rank_sampled(scorer, cases, batch_size)?
        .finish()
        .context("no cases to evaluate")
}

fn rank_sampled(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    batch_size: usize,
) -> anyhow::Result<MetricAccumulator> {
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
    Ok(acc)
}

/// Ranks every case's positive over the whole catalogue (`catalogue` items), excluding the user's
/// other interactions. `Ok(None)` when the scorer cannot score the catalogue.
pub fn evaluate_full(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    catalogue: usize,
    batch_size: usize,
) -> anyhow::Result<Option<Metrics>> {
    rank_full(scorer, cases, catalogue, batch_size)?
        .map(|acc| acc.finish().context("no cases to evaluate"))
        .transpose()
}

fn rank_full(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    catalogue: usize,
    batch_size: usize,
) -> anyhow::Result<Option<MetricAccumulator>> {
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
    Ok(Some(acc))
}

/// Seeded per-user grouping of a tournament: the candidates shuffled, then cut into `groups`.
fn tournament_groups(case: &EvalCase, groups: usize, seed: u64) -> Vec<Vec<ItemId>> {
    let mut items = case.candidates.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(case.case.user.0));
    items.shuffle(&mut rng);
    let per = items.len().div_ceil(groups.max(1));
    items.chunks(per.max(1)).map(<[ItemId]>::to_vec).collect()
}

/// Index of the top score; a tie goes against `avoid` (the positive), as everywhere else in the
/// harness.
fn winner(items: &[ItemId], scores: &[f32], avoid: ItemId) -> usize {
    let mut best = 0;
    for i in 1..items.len() {
        let better =
            scores[i] > scores[best] || (scores[i] == scores[best] && items[best] == avoid);
        if better {
            best = i;
        }
    }
    best
}

/// Ranks each case's positive by the tournament described at [`Setting::Tournament`]. Groups are
/// scored as separate requests, so a scorer that reads the list (the instruction model) sees
/// lists of the size it was tuned on.
pub fn evaluate_tournament(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    groups: usize,
    seed: u64,
    batch_size: usize,
) -> anyhow::Result<Metrics> {
    rank_tournament(scorer, cases, groups, seed, batch_size)?
        .finish()
        .context("no cases to evaluate")
}

fn rank_tournament(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    groups: usize,
    seed: u64,
    batch_size: usize,
) -> anyhow::Result<MetricAccumulator> {
    let mut acc = MetricAccumulator::default();
    let pb = progress(cases.len(), format!("{} tournament", scorer.name()));
    let per_batch = (batch_size / groups.max(1)).max(1);
    for chunk in cases.chunks(per_batch) {
        let grouped: Vec<Vec<Vec<ItemId>>> = chunk
            .iter()
            .map(|c| tournament_groups(c, groups, seed))
            .collect();
        let requests: Vec<Request<'_>> = chunk
            .iter()
            .zip(&grouped)
            .flat_map(|(c, gs)| {
                gs.iter().map(move |g| Request {
                    case: &c.case,
                    candidates: g,
                })
            })
            .collect();
        let scores = checked_scores(scorer, &requests)?;
        let mut finals = Vec::with_capacity(chunk.len());
        let mut lost = Vec::with_capacity(chunk.len());
        let mut at = 0;
        for (c, gs) in chunk.iter().zip(&grouped) {
            let mut winners = Vec::with_capacity(gs.len());
            let mut within = None;
            for g in gs {
                let s = &scores[at];
                at += 1;
                let w = winner(g, s, c.positive);
                winners.push(g[w]);
                if let Some(p) = g.iter().position(|&i| i == c.positive) {
                    if w != p {
                        within = Some(pessimistic_rank(s, p)?);
                    }
                }
            }
            finals.push(winners);
            lost.push(within);
        }
        let final_requests: Vec<Request<'_>> = chunk
            .iter()
            .zip(&finals)
            .map(|(c, w)| Request {
                case: &c.case,
                candidates: w,
            })
            .collect();
        let final_scores = checked_scores(scorer, &final_requests)?;
        for ((c, w), (s, within)) in chunk
            .iter()
            .zip(&finals)
            .zip(final_scores.iter().zip(&lost))
        {
            let rank = match within {
                // After every winner, in its place within its group.
                Some(r) => w.len() + r - 1,
                None => {
                    let p = w.iter().position(|&i| i == c.positive).with_context(|| {
                        format!("user {}: positive neither won nor lost", c.case.user.0)
                    })?;
                    pessimistic_rank(s, p)
                        .with_context(|| format!("{} on user {}", scorer.name(), c.case.user.0))?
                }
            };
            acc.add(rank);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(acc)
}

/// Scores requests and checks one score per candidate.
fn checked_scores(scorer: &dyn Scorer, requests: &[Request<'_>]) -> anyhow::Result<Vec<Vec<f32>>> {
    let scores = scorer.score_batch(requests)?;
    if scores.len() != requests.len() {
        bail!(
            "{} returned {} score lists for {} requests",
            scorer.name(),
            scores.len(),
            requests.len()
        );
    }
    for (r, s) in requests.iter().zip(&scores) {
        if s.len() != r.candidates.len() {
            bail!(
                "{} returned {} scores for {} candidates (user {})",
                scorer.name(),
                s.len(),
                r.candidates.len(),
                r.case.user.0
            );
        }
    }
    Ok(scores)
}

/// Evaluates built cases under one setting, timing the scoring. `Ok(None)` for a full-ranking
/// setting the scorer does not support. `seed` only matters for tournaments (the grouping).
pub fn evaluate_cases(
    scorer: &dyn Scorer,
    cases: &[EvalCase],
    catalogue: usize,
    fold: Fold,
    setting: Setting,
    batch_size: usize,
    seed: u64,
) -> anyhow::Result<Option<Evaluation>> {
    let start = Instant::now();
    let ranked = match setting {
        Setting::Sampled { .. } => Some(rank_sampled(scorer, cases, batch_size)?),
        Setting::FullRanking => rank_full(scorer, cases, catalogue, batch_size)?,
        Setting::Tournament { groups, .. } => {
            Some(rank_tournament(scorer, cases, groups, seed, batch_size)?)
        }
    };
    let eval_wall_s = start.elapsed().as_secs_f64();
    let Some(acc) = ranked else {
        return Ok(None);
    };
    Ok(Some(Evaluation {
        setting,
        fold,
        metrics: acc.finish().context("no cases to evaluate")?,
        eval_wall_s,
        ranks: acc.into_ranks(),
        asked: None,
    }))
}

/// Builds the cases of a protocol without queries and evaluates one setting.
pub fn evaluate(
    scorer: &dyn Scorer,
    prepared: &Prepared,
    protocol: Protocol,
    fold: Fold,
    setting: Setting,
    batch_size: usize,
) -> anyhow::Result<Option<Evaluation>> {
    let cases = build_cases(prepared, protocol, fold, setting)?;
    let catalogue = prepared.dataset.items.len();
    evaluate_cases(scorer, &cases, catalogue, fold, setting, batch_size, 0)
}
