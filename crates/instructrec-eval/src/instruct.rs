//! The instruction-tuned model as a [`Scorer`]: each case is asked about its candidates in an
//! instruction rendered for exactly that list, so the model goes through every protocol, the
//! same evaluation path and the same candidates as every baseline.

use std::collections::HashMap;

use anyhow::Context;
use instructrec_data::{Fold, ItemId, Prepared, UserId};
use instructrec_instructions::rerank::{choose_form, display_order, render};
use instructrec_instructions::{
    fit_history, BuildConfig, Fills, IntentionKind, ListedNames, PreferenceKind, TaskForm,
    Template, TemplateLibrary, WordCounter,
};
use instructrec_model::{Seq2Seq, TitleTrie, TokenLimits};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::scorer::{Case, Scorer};

/// How a candidate's token log-likelihoods become its score. Sums favour short titles; means
/// remove that bias but also part of the popularity signal, so both are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalisation {
    Sum,
    Mean,
}

impl Normalisation {
    /// The rule a `--length-normalise` switch asks for: the mean when on, else the sum.
    pub fn length_normalised(on: bool) -> Self {
        if on {
            Self::Mean
        } else {
            Self::Sum
        }
    }
}

/// How the instruction model is asked about any candidate list: the scenario's template of the
/// task form (reranking by default) filled by the instruction builder's rule (its history
/// budget, display order and context sentence) and by serving's (the template choice), so a
/// stored 1+9 list gets the builder's own test line, and a 1+99 list, a tournament group or a
/// mined list the line the builder would have written for it.
pub struct InstructionRenderer {
    template: Template,
    task: TaskForm,
    preference: PreferenceKind,
    intention: IntentionKind,
    config: BuildConfig,
    history_cap: usize,
    titles: Vec<String>,
    /// How candidate lists name items, as the builder named them.
    listed: ListedNames,
    /// The fold whose lines it renders: the builder shuffles each fold's lists with its own seed.
    fold: Fold,
}

impl InstructionRenderer {
    /// The renderer of one scenario and task form for instructions built from `prepared` with
    /// `config` and `library` (`BuildConfig::read` and `TemplateLibrary::of_instructions` of the
    /// instruction folder).
    pub fn new(
        prepared: &Prepared,
        (config, library): (BuildConfig, &TemplateLibrary),
        (task, preference, intention): (TaskForm, PreferenceKind, IntentionKind),
    ) -> anyhow::Result<Self> {
        let template = choose_form(library, task, preference, intention)
            .with_context(|| format!("no plain {task} template for {preference} {intention}"))?
            .clone();
        let listed = ListedNames::of(prepared, config.candidate_labels);
        Ok(Self {
            template,
            task,
            preference,
            intention,
            config,
            history_cap: prepared.manifest.options.history_cap,
            titles: prepared.titles(),
            listed,
            fold: Fold::Test,
        })
    }

    /// Renders the `fold`'s cases (the test fold's by default), as the builder wrote that fold's
    /// lines.
    pub fn for_fold(mut self, fold: Fold) -> Self {
        self.fold = fold;
        self
    }

    /// The instruction for `case` with `candidates`: its query fills the scenario's preference
    /// or intention slot, its history the implicit preference.
    pub fn render(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<String> {
        self.render_about(case, candidates, None)
    }

    /// As [`render`](Self::render), with the item a pointwise template asks about.
    fn render_about(
        &self,
        case: &Case,
        candidates: &[ItemId],
        item: Option<&str>,
    ) -> anyhow::Result<String> {
        let title = |i: &ItemId| self.titles[i.index()].as_str();
        let recent = &case.history[case.history.len().saturating_sub(self.history_cap)..];
        let history: Vec<&str> = match self.preference {
            PreferenceKind::Implicit => recent.iter().map(title).collect(),
            _ => Vec::new(),
        };
        let kept = fit_history(&history, self.config.history_budget, &WordCounter);
        let query = |wanted: bool| -> anyhow::Result<Option<&str>> {
            if !wanted {
                return Ok(None);
            }
            let scenario = format!("{} {}", self.preference, self.intention);
            let query = case.query.as_deref();
            query.map(Some).with_context(|| {
                format!(
                    "user {}: the {scenario} scenario needs a query",
                    case.user.0
                )
            })
        };
        let explicit = query(self.preference == PreferenceKind::Explicit)?;
        let vague = query(self.intention == IntentionKind::Vague)?;
        let specific = query(self.intention == IntentionKind::Specific)?;
        let shown = display_order(self.config.seed, case.user, self.fold, candidates);
        let shown: Vec<&str> = shown.iter().map(|i| self.listed.get(*i)).collect();
        let fills = Fills {
            history: &history[history.len() - kept..],
            explicit_preference: explicit,
            vague_intention: vague,
            specific_intention: specific,
            candidates: &shown,
            item,
            context: case.context.as_deref(),
            ..Fills::default()
        };
        Ok(render(&self.template, &fills)?)
    }
}

pub struct InstructRecScorer {
    name: String,
    model: Seq2Seq,
    renderer: InstructionRenderer,
    limits: TokenLimits,
    normalisation: Normalisation,
    /// The scenario's matching (T2) form, when it is asked too: summed with the list form (see
    /// [`InstructRecScorer::with_matching`]), shortlisting long lists (see
    /// [`InstructRecScorer::with_shortlist`]), or both.
    matching: Option<InstructionRenderer>,
    sum_matching: bool,
    shortlist: bool,
}

impl InstructRecScorer {
    pub fn new(
        name: impl Into<String>,
        model: Seq2Seq,
        renderer: InstructionRenderer,
        limits: TokenLimits,
        normalisation: Normalisation,
    ) -> Self {
        Self {
            name: name.into(),
            model,
            renderer,
            limits,
            normalisation,
            matching: None,
            sum_matching: false,
            shortlist: false,
        }
    }

    /// Ranks by the list form's (T3) and the matching form's (T2) scores together: each
    /// standardised within the list (mean 0, deviation 1), then summed. The two forms fail
    /// differently (T3 is misled by a list of items like the history and cannot see a list cut
    /// off by the token limit; T2 reads no list at all), and their log-likelihoods sit on
    /// different scales, so neither may outweigh the other by scale alone. `matching` must
    /// render the matching form of the same scenario.
    pub fn with_matching(mut self, matching: InstructionRenderer) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.renderer.task == TaskForm::Rerank && matching.task == TaskForm::Matching,
            "only the list form (T3) combines with the matching form (T2), not {} with {}",
            self.renderer.task,
            matching.task
        );
        self.matching = Some(matching);
        self.sum_matching = true;
        Ok(self)
    }

    /// Ranks a list longer than the tuned lists (the build's `train_candidates`) in two steps,
    /// as serving matches, then reranks: every candidate is scored asked without the list
    /// (`matching`, the scenario's T2 form), and only that many of the best are asked with the
    /// list, which then rank above all the others. The list form reads only lists of the length
    /// it was tuned on (a list of 100 does not even fit its instruction length), while the
    /// matching form, which reads no list, is the stronger one over long lists. Lists no longer
    /// than the tuned ones are asked as before.
    pub fn with_shortlist(mut self, matching: InstructionRenderer) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.renderer.task == TaskForm::Rerank && matching.task == TaskForm::Matching,
            "a shortlist by the matching form (T2) is asked with the list form (T3), not {} \
             after {}",
            self.renderer.task,
            matching.task
        );
        self.matching = Some(matching);
        self.shortlist = true;
        Ok(self)
    }

    pub fn model(&self) -> &Seq2Seq {
        &self.model
    }

    /// The model back, to be asked another way.
    pub fn into_model(self) -> Seq2Seq {
        self.model
    }

    /// Each of `candidates`' titles scored as the answer to `renderer`'s instruction for
    /// `case`, which lists `listed` (nothing for the matching form).
    fn scores_under(
        &self,
        renderer: &InstructionRenderer,
        case: &Case,
        listed: &[ItemId],
        candidates: &[ItemId],
    ) -> anyhow::Result<Vec<f32>> {
        let instruction = renderer.render(case, listed)?;
        let titles: Vec<&str> = candidates
            .iter()
            .map(|c| self.renderer.titles[c.index()].as_str())
            .collect();
        title_scores(
            &self.model,
            &instruction,
            &titles,
            self.limits,
            self.normalisation,
        )
    }

    /// Scores `candidates` asked in the scorer's task form (and with the matching form too,
    /// when it sums both), the list as one instruction. `matched`: the candidates' matching
    /// form scores where they are already known.
    fn ask(
        &self,
        case: &Case,
        candidates: &[ItemId],
        matched: Option<Vec<f32>>,
    ) -> anyhow::Result<Vec<f32>> {
        let renderer = &self.renderer;
        let listed = match renderer.task {
            TaskForm::Rerank => candidates,
            TaskForm::Matching => &[],
            _ => {
                // One question per candidate; the log odds keep an order where the probability
                // of "yes" saturates.
                return candidates
                    .iter()
                    .map(|c| {
                        let title = renderer.titles[c.index()].as_str();
                        let asked = renderer.render_about(case, &[], Some(title))?;
                        let p = self.model.choose(&asked, &["yes", "no"], self.limits)?;
                        Ok(p[0].ln() - p[1].ln())
                    })
                    .collect();
            }
        };
        let scored = self.scores_under(renderer, case, listed, candidates)?;
        match &self.matching {
            Some(matching) if self.sum_matching => {
                let other = match matched {
                    Some(scores) => scores,
                    None => self.scores_under(matching, case, &[], candidates)?,
                };
                Ok(standardised(scored)
                    .into_iter()
                    .zip(standardised(other))
                    .map(|(a, b)| a + b)
                    .collect())
            }
            _ => Ok(scored),
        }
    }
}

impl Scorer for InstructRecScorer {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let keep = self.renderer.config.train_candidates;
        let matching = match &self.matching {
            Some(matching) if self.shortlist && candidates.len() > keep => matching,
            _ => return self.ask(case, candidates, None),
        };
        let first = self.scores_under(matching, case, &[], candidates)?;
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        // Stable: equal scores keep the list's order.
        order.sort_by(|&a, &b| first[b].total_cmp(&first[a]));
        let (kept, kept_first): (Vec<ItemId>, Vec<f32>) = order[..keep]
            .iter()
            .map(|&i| (candidates[i], first[i]))
            .unzip();
        let second = self.ask(case, &kept, Some(kept_first))?;
        // Shifted past the best first score, so that every kept item ranks above the rest.
        let lowest = second.iter().copied().fold(f32::INFINITY, f32::min);
        let highest = first.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut scores = first;
        for (&i, s) in order[..keep].iter().zip(second) {
            scores[i] = s - lowest + highest + 1.0;
        }
        Ok(scores)
    }
}

/// Scores shifted to mean 0 and scaled to deviation 1 (only shifted when all are equal): how
/// two ways of asking are put on one scale before they are summed (evaluation and serving).
pub fn standardised(scores: Vec<f32>) -> Vec<f32> {
    let n = scores.len().max(1) as f32;
    let mean = scores.iter().sum::<f32>() / n;
    let deviation = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
    let scale = if deviation > 0.0 { deviation } else { 1.0 };
    scores.into_iter().map(|s| (s - mean) / scale).collect()
}

/// The method's own matching step as a whole-catalogue scorer, for full ranking: the model
/// writes catalogue titles for each case's need, asked in the scenario's matching (T2)
/// template, by beam search constrained to the catalogue's titles. The items of the titles it
/// writes score their log-likelihood, every other item minus infinity. It writes `depth` titles
/// beyond those of the history (at most `depth` more), which the pipeline skips, as the server's
/// generation matcher does. It asks the reranker's own model.
pub struct GenerationMatcher<'a> {
    model: &'a Seq2Seq,
    renderer: InstructionRenderer,
    trie: TitleTrie,
    limits: TokenLimits,
    depth: usize,
}

impl<'a> GenerationMatcher<'a> {
    /// `renderer` must render the matching (T2) form.
    pub fn new(
        model: &'a Seq2Seq,
        renderer: InstructionRenderer,
        limits: TokenLimits,
        depth: usize,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            renderer.task == TaskForm::Matching,
            "generation answers the matching (T2) form, not {}",
            renderer.task
        );
        let titles: Vec<&str> = renderer.titles.iter().map(String::as_str).collect();
        let trie = model.title_trie(&titles, limits.target)?;
        Ok(Self {
            model,
            renderer,
            trie,
            limits,
            depth,
        })
    }

    fn catalogue_scores(&self, case: &Case) -> anyhow::Result<Vec<f32>> {
        let instruction = self.renderer.render(case, &[])?;
        let beams = self.depth + case.history.len().min(self.depth);
        let generated =
            self.model
                .generate(&instruction, &self.trie, beams, beams, self.limits.source)?;
        let mut scores = vec![f32::NEG_INFINITY; self.renderer.titles.len()];
        for g in &generated {
            for &item in &g.items {
                scores[item] = g.sum;
            }
        }
        Ok(scores)
    }
}

impl Scorer for GenerationMatcher<'_> {
    fn name(&self) -> String {
        "instructrec T2 generation".into()
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let all = self.catalogue_scores(case)?;
        Ok(candidates.iter().map(|c| all[c.index()]).collect())
    }

    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        Some(cases.iter().map(|c| self.catalogue_scores(c)).collect())
    }
}

/// The control row of every scenario: the instruction model asked about each case's own
/// candidates (in the case's own display order) in a prompt filled with another case's history,
/// query and context. A model that reads what it is asked falls far below its true-prompt score;
/// one that ranks by the candidates alone does not.
pub struct PermutedPrompts<'a> {
    inner: &'a InstructRecScorer,
    donors: HashMap<UserId, Case>,
}

impl<'a> PermutedPrompts<'a> {
    /// Each case's prompt comes from the next case in a seeded shuffle of `cases` (a cycle, so
    /// no case keeps its own when there are two or more).
    pub fn new(inner: &'a InstructRecScorer, cases: &[Case], seed: u64) -> Self {
        Self {
            inner,
            donors: donors(cases, seed),
        }
    }
}

/// Each case's user, and the case whose prompt it is asked in.
fn donors(cases: &[Case], seed: u64) -> HashMap<UserId, Case> {
    let mut order: Vec<&Case> = cases.iter().collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x9e4d_077e));
    order
        .iter()
        .zip(order.iter().cycle().skip(1))
        .map(|(case, donor)| (case.user, (*donor).clone()))
        .collect()
}

impl Scorer for PermutedPrompts<'_> {
    fn name(&self) -> String {
        format!("{}-permuted", self.inner.name)
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let donor = self
            .donors
            .get(&case.user)
            .with_context(|| format!("user {} has no permuted prompt", case.user.0))?;
        let asked = Case {
            user: case.user,
            ..donor.clone()
        };
        self.inner.score(&asked, candidates)
    }
}

/// The instruction model's score of each candidate title as the answer to `instruction`, by
/// `normalisation`: the one rule of the report and of validation during tuning.
pub fn title_scores(
    model: &Seq2Seq,
    instruction: &str,
    titles: &[&str],
    limits: TokenLimits,
    normalisation: Normalisation,
) -> anyhow::Result<Vec<f32>> {
    let scores = model.score(instruction, titles, limits)?;
    Ok(scores
        .iter()
        .map(|s| match normalisation {
            Normalisation::Sum => s.sum,
            Normalisation::Mean => s.mean,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardised_scores_have_mean_zero_and_deviation_one() {
        let z = standardised(vec![-3.0, -1.0, -2.0, -6.0]);
        let mean = z.iter().sum::<f32>() / 4.0;
        let var = z.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{z:?}");
        assert!(
            z[1] > z[2] && z[2] > z[0] && z[0] > z[3],
            "order kept: {z:?}"
        );
        assert_eq!(standardised(vec![-2.0, -2.0]), vec![0.0, 0.0]);
        assert!(standardised(vec![]).is_empty());
    }

    #[test]
    fn every_case_is_asked_in_another_case_prompt_and_the_seed_decides_whose() {
        let cases: Vec<Case> = (0..50)
            .map(|u| Case {
                user: UserId(u),
                history: vec![ItemId(u)],
                query: Some(format!("query {u}")),
                context: None,
            })
            .collect();
        let a = donors(&cases, 42);
        assert_eq!(a.len(), cases.len());
        assert!(a.iter().all(|(user, donor)| donor.user != *user));
        // A cycle: every case's prompt is used exactly once.
        let mut used: Vec<u32> = a.values().map(|d| d.user.0).collect();
        used.sort_unstable();
        assert_eq!(used, (0..50).collect::<Vec<u32>>());
        assert_eq!(donors(&cases, 42), a);
        assert_ne!(donors(&cases, 43), a);
    }
}
