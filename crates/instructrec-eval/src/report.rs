//! Reports: everything needed to trace a number back to its data, candidates, seed, model and
//! configuration, written as JSON (for machines), markdown (for people) and an SVG plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use instructrec_data::{atomic, CandidateSet, Counts, Fold, ItemId, Prepared, Source};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::harness::{candidates_checksum, stored_candidates, Evaluation, Setting};
use crate::heldout::StageInfo;
use crate::metrics::{recall_at, std_error, METRIC_COLUMNS, RECALL_DEPTHS};
use crate::paper::{figures_for, figures_for_protocol, PaperFigure};
use crate::protocol::Protocol;

#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    pub source: Source,
    pub counts: Counts,
    /// Seed the candidate lists and item split were drawn with.
    pub prepare_seed: u64,
    pub history_cap: usize,
    /// The prepared directory's file checksums, from its manifest.
    pub checksums: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateInfo {
    pub fold: Fold,
    pub size: usize,
    pub cases: usize,
    /// See [`candidates_checksum`].
    pub checksum: String,
    /// Lists in which a negative has the positive's title (compared without case): a model
    /// that reads titles can only guess between them.
    /// (Absent from reports written before it was counted.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_ties: Option<usize>,
}

impl CandidateInfo {
    /// `sets` described, with `checksum` (the lists' own, or their file's).
    pub fn new(
        prepared: &Prepared,
        (fold, size): (Fold, usize),
        sets: &[CandidateSet],
        checksum: String,
    ) -> Self {
        // Each title folded once, not once per list it appears in (1+99 lists of every user).
        let folded: Vec<String> = (prepared.dataset.items.iter())
            .map(|i| i.title.trim().to_lowercase())
            .collect();
        let title = |id: ItemId| folded.get(id.index());
        let title_ties = sets
            .iter()
            .filter(|set| {
                let positive = title(set.positive);
                set.negatives.iter().any(|&n| title(n) == positive)
            })
            .count();
        Self {
            fold,
            size,
            cases: sets.len(),
            checksum,
            title_ties: Some(title_ties),
        }
    }
}

/// One epoch of a trained baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_hr1: f64,
    pub val_ndcg5: f64,
    /// Seconds since training started, at the end of this epoch's validation.
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainingStop {
    /// Validation NDCG@5 did not improve for `patience` epochs.
    Converged,
    MaxEpochs,
    TimeBudget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingLog {
    pub seed: u64,
    pub epochs: Vec<EpochLog>,
    /// Epoch whose weights are evaluated (best validation NDCG@5).
    pub best_epoch: usize,
    pub stop: TrainingStop,
}

/// How an instruction model was asked in one list setting under `eval --choose-form`: every
/// way's figures on that setting's validation cases, and the way chosen for the test fold. Kept
/// in the model's `config` under [`ValidationChoice::CONFIG_KEY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationChoice {
    pub setting: String,
    pub fold: Fold,
    pub cases: usize,
    /// Checksum of the validation lists the ways were scored on.
    pub lists: String,
    pub tried: Vec<TriedWay>,
    pub chosen: String,
    /// The scoring rule of the chosen way.
    pub score: String,
}

impl ValidationChoice {
    pub const CONFIG_KEY: &'static str = "chosen_on_validation";
}

/// One way of asking and its validation figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriedWay {
    pub asked: String,
    pub hr1: f64,
    pub hr1_se: f64,
    pub ndcg5: f64,
    pub ndcg5_se: f64,
}

/// A model's row name with the way it was asked, where that was chosen on validation.
pub(crate) fn asked_label(model: &str, asked: Option<&str>) -> String {
    match asked {
        Some(asked) => format!("{model} (asked {asked})"),
        None => model.to_string(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub config: serde_json::Value,
    pub config_hash: String,
    /// SHA-256 of the fitted state (weights file, or the counts/index a model is built from).
    pub model_hash: String,
    pub train_wall_s: f64,
    pub training: Option<TrainingLog>,
    /// The checkpoint the weights were loaded from instead of training in this run.
    pub loaded_from: Option<String>,
    pub results: Vec<Evaluation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub scenario: String,
    /// The command line that produced this report.
    pub command: String,
    /// Seed of everything this run sampled (initialisation, negatives, masks, batch order).
    pub seed: u64,
    pub dataset: DatasetInfo,
    pub candidates: Vec<CandidateInfo>,
    pub models: Vec<ModelReport>,
    pub paper: Vec<PaperFigure>,
    /// Held-out protocol: the tuning stages, in order; their results are in `models`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageInfo>,
    /// The recipe (TOML) of the `instructrec run` this report belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// Written while `eval` runs, after each model, so that a long run leaves its results so
    /// far; the last write clears it. A report that still has it after the run is gone comes
    /// from a run that failed or was stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// SHA-256 of a configuration's JSON form (keys sorted, so field order cannot change it).
pub fn config_hash(config: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(config.to_string()))
}

impl Report {
    pub fn new(
        prepared: &Prepared,
        protocol: Protocol,
        command: String,
        seed: u64,
        candidate_lists: &[(Fold, usize)],
    ) -> anyhow::Result<Self> {
        let m = &prepared.manifest;
        let candidates = candidate_lists
            .iter()
            .map(|&(fold, size)| {
                let sets = stored_candidates(prepared, fold, size)?;
                let checksum = candidates_checksum(sets);
                Ok(CandidateInfo::new(prepared, (fold, size), sets, checksum))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            protocol,
            scenario: protocol.scenario().to_string(),
            command,
            seed,
            dataset: DatasetInfo {
                source: m.source.clone(),
                counts: m.counts.clone(),
                prepare_seed: m.options.seed,
                history_cap: m.options.history_cap,
                checksums: m.checksums.clone(),
            },
            candidates,
            models: Vec::new(),
            paper: figures_for(protocol, &m.source),
            stages: Vec::new(),
            recipe: None,
            partial: true,
        })
    }

    /// Settings in the order they first appear among the models' results.
    fn settings(&self) -> Vec<(Fold, Setting)> {
        let mut out = Vec::new();
        for e in self.models.iter().flat_map(|m| &m.results) {
            if !out.contains(&(e.fold, e.setting)) {
                out.push((e.fold, e.setting));
            }
        }
        out
    }

    /// The protocol and its scenario, naming the protocol once (some scenarios start with it).
    pub fn title(&self) -> String {
        let protocol = self.protocol.to_string();
        match self.scenario.strip_prefix(protocol.as_str()) {
            Some(rest) => format!("{protocol}{rest}"),
            None => format!("{protocol} {}", self.scenario),
        }
    }

    pub fn markdown(&self, svg_name: &str) -> String {
        let mut s = String::new();
        let source = &self.dataset.source;
        let _ = writeln!(s, "# {} on {}\n", self.title(), source.format);
        let _ = writeln!(
            s,
            "Generated by `instructrec eval`; do not edit by hand. \"train s\" is the wall time of \
             the training that produced the weights (also when they were loaded from a checkpoint).\n"
        );
        let _ = writeln!(s, "```\n{}\n```\n", self.command);
        if self.partial {
            let _ = writeln!(
                s,
                "**Partial report:** written while the command above was running, with the \
                 models evaluated by then ({}). If that run is over, it failed or was stopped \
                 before the end: run it again for the whole report.\n",
                self.models.len()
            );
        }
        if let Some(recipe) = &self.recipe {
            let _ = writeln!(
                s,
                "<details><summary>Recipe</summary>\n\n```toml\n{}\n```\n</details>\n",
                recipe.trim_end()
            );
        }
        let _ = writeln!(s, "![metrics]({svg_name})\n");
        let _ = writeln!(
            s,
            "Means over cases; ± is one standard error of the mean (sample variance over \
             cases).\n"
        );
        let header: Vec<&str> = METRIC_COLUMNS.iter().map(|(n, _)| *n).collect();
        for (fold, setting) in self.settings() {
            let _ = writeln!(s, "## {fold:?} fold, {setting}\n");
            let _ = writeln!(
                s,
                "| model | {} | cases | train s | eval s | cases/s |\n|---|{}---|---|---|---|",
                header.join(" | "),
                "---|".repeat(header.len())
            );
            for m in &self.models {
                for e in m
                    .results
                    .iter()
                    .filter(|e| e.fold == fold && e.setting == setting)
                {
                    let values: Vec<String> = METRIC_COLUMNS
                        .iter()
                        .map(|(name, f)| match std_error(&e.metrics, name) {
                            Some(se) if se > 0.0 => format!("{:.4} ± {se:.4}", f(&e.metrics)),
                            _ => format!("{:.4}", f(&e.metrics)),
                        })
                        .collect();
                    // Scoring throughput: cases over the wall time of scoring them.
                    let per_s = if e.eval_wall_s > 0.0 {
                        format!("{:.0}", e.metrics.cases as f64 / e.eval_wall_s)
                    } else {
                        "-".into()
                    };
                    let name = asked_label(&m.name, e.asked.as_deref());
                    let _ = writeln!(
                        s,
                        "| {name} | {} | {} | {:.1} | {:.1} | {per_s} |",
                        values.join(" | "),
                        e.metrics.cases,
                        m.train_wall_s,
                        e.eval_wall_s
                    );
                }
            }
            s.push('\n');
            if setting == Setting::FullRanking {
                self.recall_markdown(&mut s, fold);
            }
        }
        self.choices_markdown(&mut s);
        self.stages_markdown(&mut s);
        if self.paper.is_empty() {
            let mut measured: Vec<&str> = figures_for_protocol(self.protocol)
                .iter()
                .map(|f| f.dataset)
                .collect();
            measured.dedup();
            if !measured.is_empty() {
                let _ = writeln!(
                    s,
                    "The paper measured this scenario on {}, which this dataset is not: its \
                     figures are left out of this report and its plot.\n",
                    measured.join(" and ")
                );
            }
        } else {
            let _ = writeln!(
                s,
                "## The paper's figures ({}, 1 positive + 9 random negatives unless the scenario \
                 says otherwise)\n",
                self.paper[0].dataset
            );
            if self.protocol == Protocol::HeldOut {
                let _ = writeln!(
                    s,
                    "These models were tuned *with* the scenario: the ceiling for the stages \
                     above. The paper's held-out curve is given only as a figure (not restated in \
                     docs/method.md).\n"
                );
            }
            let _ = writeln!(
                s,
                "| scenario | model | HR@1 | HR@3 | HR@5 | NDCG@3 | NDCG@5 |\n|---|---|---|---|---|---|---|"
            );
            for p in &self.paper {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
                    p.scenario, p.model, p.hr1, p.hr3, p.hr5, p.ndcg3, p.ndcg5
                );
            }
            s.push('\n');
        }
        self.provenance_markdown(&mut s);
        self.training_markdown(&mut s);
        s
    }

    /// How each instruction model asked with `eval --choose-form` was asked, per setting: every
    /// way's validation figures and the one chosen.
    fn choices_markdown(&self, s: &mut String) {
        for m in &self.models {
            let Some(choices) = m.config.get(ValidationChoice::CONFIG_KEY) else {
                continue;
            };
            let Ok(choices) = Vec::<ValidationChoice>::deserialize(choices) else {
                continue;
            };
            let _ = writeln!(
                s,
                "## {}: the way of asking, chosen on the validation fold\n\nEach way was scored \
                 on the validation lists of the setting (the same users, the validation items); \
                 the test fold above is asked the way with the highest validation HR@1.\n\n\
                 | setting | asked | validation HR@1 | validation NDCG@5 | cases | chosen |\n\
                 |---|---|---|---|---|---|",
                m.name
            );
            for c in &choices {
                for t in &c.tried {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.4} ± {:.4} | {:.4} | {} | {} |",
                        c.setting,
                        t.asked,
                        t.hr1,
                        t.hr1_se,
                        t.ndcg5,
                        c.cases,
                        if t.asked == c.chosen { "yes" } else { "" }
                    );
                }
            }
            s.push('\n');
        }
    }

    /// The first 1+k sampled result of a model row, which the stage table and plot show.
    pub(crate) fn sampled_result(&self, model: &str) -> Option<&Evaluation> {
        self.models
            .iter()
            .filter(|m| m.name == model)
            .flat_map(|m| &m.results)
            .find(|e| matches!(e.setting, Setting::Sampled { .. }))
    }

    /// Held-out protocol: one row per stage (what it was tuned on, its metrics on the held-out
    /// cases), then the other models as reference rows. The standard error sqrt(p(1-p)/n) of
    /// HR@1 says how far apart two stages must be before the difference means anything.
    /// For full ranking, the share of cases whose positive each model ranks within the top N
    /// of the catalogue: a matcher's recall at the depth handed to a reranker, from which the
    /// depth can be chosen (`--rerank-depth`, and the server's matching depth).
    fn recall_markdown(&self, s: &mut String, fold: Fold) {
        let rows: Vec<(&str, &[u32])> = self
            .models
            .iter()
            .flat_map(|m| {
                m.results
                    .iter()
                    .filter(|e| e.fold == fold && e.setting == Setting::FullRanking)
                    .filter(|e| !e.ranks.is_empty())
                    .map(|e| (m.name.as_str(), e.ranks.as_slice()))
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        let header: Vec<String> = RECALL_DEPTHS.iter().map(|n| format!("@{n}")).collect();
        let _ = writeln!(
            s,
            "Recall over the catalogue: the share of cases whose positive ranks within the top \
             N ({fold:?} fold).\n\n| model | {} |\n|---|{}",
            header.join(" | "),
            "---|".repeat(header.len())
        );
        for (name, ranks) in rows {
            let values: Vec<String> = RECALL_DEPTHS
                .iter()
                .map(|&n| format!("{:.3}", recall_at(ranks, n)))
                .collect();
            let _ = writeln!(s, "| {name} | {} |", values.join(" | "));
        }
        s.push('\n');
    }

    fn stages_markdown(&self, s: &mut String) {
        if self.stages.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "## Held-out scenario by tuning stage\n\n\
             No stage was tuned on an I1 (vague intention) line; each row's training record says \
             which lines it was. s.e. = sqrt(HR@1 (1 - HR@1) / cases).\n\n\
             | stage | instruction types trained | seed | steps | lines | train s | HR@1 | s.e. | HR@3 | HR@5 | NDCG@3 | NDCG@5 | cases |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let stage_models: Vec<&str> = self.stages.iter().map(|st| st.model.as_str()).collect();
        let reference = self
            .models
            .iter()
            .filter(|m| !stage_models.contains(&m.name.as_str()))
            .map(|m| (m.name.as_str(), "reference, not instruction-tuned", None));
        let stages = self
            .stages
            .iter()
            .map(|st| (st.model.as_str(), st.trained_on.as_str(), Some(st)));
        for (model, trained, stage) in stages.chain(reference) {
            let Some(e) = self.sampled_result(model) else {
                continue;
            };
            let m = &e.metrics;
            let se = (m.hr1 * (1.0 - m.hr1) / m.cases.max(1) as f64).sqrt();
            let (label, training) = match stage {
                Some(st) => (
                    st.name.as_str(),
                    format!(
                        "{} | {} | {} | {:.0}",
                        st.seed, st.steps, st.train_examples, st.train_wall_s
                    ),
                ),
                None => (model, "- | - | - | -".to_string()),
            };
            let _ = writeln!(
                s,
                "| {label} | {trained} | {training} | {:.4} | {se:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
                m.hr1, m.hr3, m.hr5, m.ndcg3, m.ndcg5, m.cases
            );
        }
        s.push('\n');
    }

    fn provenance_markdown(&self, s: &mut String) {
        let d = &self.dataset;
        let _ = writeln!(
            s,
            "## Provenance\n\n- seed: {}\n- dataset: {}\n- format `{}`, {} users, {} items, {} interactions; \
             prepared with seed {}, history cap {}",
            self.seed,
            d.source.paths.join(", "),
            d.source.format,
            d.counts.users,
            d.counts.items,
            d.counts.interactions,
            d.prepare_seed,
            d.history_cap
        );
        for (file, sum) in &d.checksums {
            let _ = writeln!(s, "- `{file}`: sha256 `{sum}`");
        }
        for c in &self.candidates {
            let ties = c.title_ties.map_or(String::new(), |n| {
                format!(" ({n} with a negative titled as the positive)")
            });
            let _ = writeln!(
                s,
                "- candidates {:?}/{}: {} lists{ties}, sha256 `{}`",
                c.fold, c.size, c.cases, c.checksum
            );
        }
        let _ = writeln!(
            s,
            "\n| model | config hash | model hash | weights | config |\n|---|---|---|---|---|"
        );
        for m in &self.models {
            let weights = match &m.loaded_from {
                Some(path) => format!("loaded from `{path}`"),
                None => "fitted in this run".to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | `{}` | `{}` | {weights} | `{}` |",
                m.name,
                &m.config_hash[..16],
                &m.model_hash[..16.min(m.model_hash.len())],
                m.config
            );
        }
        s.push('\n');
    }

    fn training_markdown(&self, s: &mut String) {
        for m in &self.models {
            let Some(t) = &m.training else { continue };
            let _ = writeln!(
                s,
                "## Training curve: {} (seed {}, stop: {:?}, best epoch {})\n\n\
                 | epoch | train loss | val HR@1 | val NDCG@5 | elapsed s |\n|---|---|---|---|---|",
                m.name, t.seed, t.stop, t.best_epoch
            );
            for e in &t.epochs {
                let _ = writeln!(
                    s,
                    "| {} | {:.4} | {:.4} | {:.4} | {:.1} |",
                    e.epoch, e.train_loss, e.val_hr1, e.val_ndcg5, e.elapsed_s
                );
            }
            s.push('\n');
        }
    }
}

/// Replaces `path` with `bytes` atomically ([`instructrec_data::atomic`]), naming the path in
/// the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    atomic::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    #[test]
    fn lists_whose_negative_is_titled_as_the_positive_are_counted() {
        let mut prepared = synthetic::prepared(20, 120, 7);
        let sets = stored_candidates(&prepared, Fold::Test, 10)
            .unwrap()
            .to_vec();
        let clean = CandidateInfo::new(&prepared, (Fold::Test, 10), &sets, String::new());
        assert_eq!((clean.cases, clean.title_ties), (20, Some(0)));
        // The first list's first negative takes its positive's title, in other letter case.
        let (positive, negative) = (sets[0].positive, sets[0].negatives[0]);
        let title = prepared.dataset.items[positive.index()]
            .title
            .to_uppercase();
        prepared.dataset.items[negative.index()].title = format!(" {title}");
        let tied = CandidateInfo::new(&prepared, (Fold::Test, 10), &sets, String::new());
        // Synthetic titles are distinct: only lists of that positive with that negative tie.
        let expected = sets
            .iter()
            .filter(|s| s.positive == positive && s.negatives.contains(&negative))
            .count();
        assert!(expected >= 1);
        assert_eq!(tied.title_ties, Some(expected));
    }
}
