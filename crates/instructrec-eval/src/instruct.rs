//! The instruction-tuned model as a [`Scorer`]: each case is answered with the instruction the
//! instruction stage rendered for that user and that exact stored candidate list, so the model
//! goes through the same evaluation path and the same candidates as every baseline.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use instructrec_data::{ItemId, Prepared, UserId};
use instructrec_instructions::{read_jsonl, IntentionKind, PreferenceKind, TaskForm};
use instructrec_model::{Seq2Seq, TokenLimits};

use crate::queries::QueryLine;
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

/// Rendered reranking instructions of one scenario, keyed by user and candidate set.
pub struct InstructionIndex {
    by_key: HashMap<(UserId, Vec<ItemId>), String>,
}

impl InstructionIndex {
    /// Reads the T3 lines of `path` (an instruction file from `instructrec instructions build`)
    /// whose preference and intention match the scenario.
    pub fn read(
        path: &Path,
        preference: PreferenceKind,
        intention: IntentionKind,
    ) -> anyhow::Result<Self> {
        let lines = read_jsonl(path)?;
        let mut by_key = HashMap::new();
        for line in lines {
            if line.task != TaskForm::Rerank
                || line.preference.kind() != preference
                || line.intention.kind() != intention
            {
                continue;
            }
            let mut key = line.candidates.clone();
            key.sort_unstable();
            by_key.insert((line.user, key), line.text);
        }
        if by_key.is_empty() {
            bail!(
                "{}: no reranking instructions with preference {preference:?} and intention \
                 {intention:?}",
                path.display()
            );
        }
        Ok(Self { by_key })
    }

    /// The instructions of search cases: each query line's own rendered instruction, so the
    /// instruction model answers exactly the line whose query the baselines get.
    pub fn from_queries(lines: &[QueryLine]) -> Self {
        let by_key = lines
            .iter()
            .map(|l| {
                let mut key = l.candidates.clone();
                key.sort_unstable();
                ((l.user, key), l.instruction.clone())
            })
            .collect();
        Self { by_key }
    }

    /// Users that have an instruction: the evaluation sample every model is scored on.
    pub fn users(&self) -> Vec<UserId> {
        let mut users: Vec<UserId> = self.by_key.keys().map(|(u, _)| *u).collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    fn get(&self, user: UserId, candidates: &[ItemId]) -> Option<&str> {
        let mut key = candidates.to_vec();
        key.sort_unstable();
        self.by_key.get(&(user, key)).map(String::as_str)
    }
}

pub struct InstructRecScorer {
    name: String,
    model: Seq2Seq,
    titles: Vec<String>,
    instructions: InstructionIndex,
    limits: TokenLimits,
    normalisation: Normalisation,
}

impl InstructRecScorer {
    pub fn new(
        name: impl Into<String>,
        model: Seq2Seq,
        prepared: &Prepared,
        instructions: InstructionIndex,
        limits: TokenLimits,
        normalisation: Normalisation,
    ) -> Self {
        Self {
            name: name.into(),
            model,
            titles: prepared.titles(),
            instructions,
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
        let instruction = self
            .instructions
            .get(case.user, candidates)
            .with_context(|| {
                format!(
                    "no reranking instruction for user {} with these {} candidates; build the \
                 instructions from the same prepared dataset, for this fold and list size",
                    case.user.0,
                    candidates.len()
                )
            })?;
        let titles: Vec<&str> = candidates
            .iter()
            .map(|c| self.titles[c.index()].as_str())
            .collect();
        title_scores(
            &self.model,
            instruction,
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
