//! The instruction-tuned model as a [`Scorer`]: each case is asked about its candidates in an
//! instruction rendered for exactly that list, so the model goes through every protocol, the
//! same evaluation path and the same candidates as every baseline.

use anyhow::Context;
use instructrec_data::{Fold, ItemId, Prepared};
use instructrec_instructions::rerank::{choose, display_order, render};
use instructrec_instructions::{
    fit_history, BuildConfig, Fills, IntentionKind, PreferenceKind, Template, TemplateLibrary,
    WordCounter,
};
use instructrec_model::{Seq2Seq, TokenLimits};

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

/// How the instruction model is asked about any candidate list: the scenario's reranking
/// template filled by the instruction builder's rule (its history budget, display order and
/// context sentence) and by serving's (the template choice), so a stored 1+9 list gets the
/// builder's own test line, and a 1+99 list, a tournament group or a mined list the line the
/// builder would have written for it.
pub struct InstructionRenderer {
    template: Template,
    preference: PreferenceKind,
    intention: IntentionKind,
    config: BuildConfig,
    history_cap: usize,
    titles: Vec<String>,
}

impl InstructionRenderer {
    /// The renderer of one scenario for instructions built from `prepared` with `config`
    /// (`BuildConfig::read` of the instruction folder).
    pub fn new(
        prepared: &Prepared,
        config: BuildConfig,
        preference: PreferenceKind,
        intention: IntentionKind,
    ) -> anyhow::Result<Self> {
        let library = TemplateLibrary::builtin();
        let template = choose(&library, preference, intention)
            .with_context(|| format!("no reranking template for {preference} {intention}"))?
            .clone();
        Ok(Self {
            template,
            preference,
            intention,
            config,
            history_cap: prepared.manifest.options.history_cap,
            titles: prepared.titles(),
        })
    }

    /// The instruction for `case` with `candidates`: its query fills the scenario's preference
    /// or intention slot, its history the implicit preference.
    pub fn render(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<String> {
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
        let shown = display_order(self.config.seed, case.user, Fold::Test, candidates);
        let shown: Vec<&str> = shown.iter().map(title).collect();
        let fills = Fills {
            history: &history[history.len() - kept..],
            explicit_preference: explicit,
            vague_intention: vague,
            specific_intention: specific,
            candidates: &shown,
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
        }
    }
}

impl Scorer for InstructRecScorer {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let instruction = self.renderer.render(case, candidates)?;
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
