//! An evaluation experiment: which flags fit which protocol, the cases and candidate lists every
//! model is scored on, the report they all go into, and the instruction model's entry in it.
//! Front ends describe an experiment with an [`ExperimentSpec`], fit the baselines it asks for
//! (fitting lives in instructrec-baselines, which depends on this crate), and hand each fitted
//! scorer to [`Experiment::evaluate`]; the plan alone decides what is scored and how.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use instructrec_data::{CandidateSet, Fold, ItemId, OutputLock, Prepared, UserId};
use instructrec_instructions::{
    read_jsonl, BuildConfig, IntentionKind, PreferenceKind, Split, TaskForm, TemplateLibrary,
    TrainingRecord,
};
use instructrec_model::{Placement, Precision, Seq2Seq, TokenLimits};
use sha2::{Digest, Sha256};

use crate::external::{read_candidates, CandidateIds};
use crate::harness::{
    build_cases, build_query_cases, candidates_checksum, evaluate_cases, list_case,
    mine_hard_negatives, with_candidates, EvalCase, Evaluation, Setting,
};
use crate::heldout::{check_stage, HeldOutStage, StageInfo};
use crate::instruct::{
    GenerationMatcher, InstructRecScorer, InstructionRenderer, Normalisation, PermutedPrompts,
};
use crate::pipeline::MatchThenRerank;
use crate::protocol::Protocol;
use crate::queries::{read_queries, QueryKind, QueryLine};
use crate::report::{write_atomic, CandidateInfo, ModelReport, Report, TriedWay, ValidationChoice};
use crate::scorer::{Case, Scorer};

/// A way of asking the instruction model about a list: one task form, or the list form and the
/// matching form together (`T3+T2`, see [`InstructRecScorer::with_matching`]), optionally after
/// a shortlist by the matching form (`T2>T3`, see [`InstructRecScorer::with_shortlist`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asking {
    pub task: TaskForm,
    /// T3 only: also ask without the list (T2) and rank by both, each standardised within the
    /// list.
    pub with_matching: bool,
    /// T3 only: a list longer than the tuned lists is first ranked by the matching form (T2),
    /// and only its best are asked with the list, as serving matches, then reranks.
    pub shortlist: bool,
}

impl Asking {
    /// Refuses the ways that rank no list, naming the one to use instead.
    fn check(self) -> anyhow::Result<()> {
        if self.task == TaskForm::Pairwise {
            bail!("T1 compares two items and ranks no list: use T3, T2, T0 or T3+T2");
        }
        if self.with_matching && self.task != TaskForm::Rerank {
            bail!(
                "T2 is added to the list form only: use T3 with it (T3+T2, or --task T3 \
                 --with-t2), not {}",
                self.task
            );
        }
        if self.shortlist && self.task != TaskForm::Rerank {
            bail!(
                "a T2 shortlist is asked with the list form: use T2>T3 or T2>T3+T2, not T2>{}",
                self.task
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for Asking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shortlist {
            f.write_str("T2>")?;
        }
        match self.with_matching {
            true => write!(f, "{}+T2", self.task),
            false => write!(f, "{}", self.task),
        }
    }
}

impl std::str::FromStr for Asking {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (s, shortlist) = match s.strip_prefix("T2>") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (task, with_matching) = match s.strip_suffix("+T2") {
            Some(task) => (task, true),
            None => (s, false),
        };
        let asking = Self {
            task: task.parse()?,
            with_matching,
            shortlist,
        };
        asking.check().map_err(|e| e.to_string())?;
        Ok(asking)
    }
}

/// How the instruction model is asked about a list, and how its answers become scores.
#[derive(Debug, Clone, Copy)]
pub struct InstructionScoring {
    pub limits: TokenLimits,
    pub normalisation: Normalisation,
    /// The task form it is asked in: T3 (the list, answered by a title), T2 (the need alone,
    /// each candidate's title scored as the answer), T0 (yes or no, per candidate), or T3 and
    /// T2 together.
    pub asking: Asking,
    /// Where the model runs, and the precision of its weights.
    pub placement: Placement,
}

impl InstructionScoring {
    /// The report's name for the model, which says the task form and the scoring rule, after
    /// the checkpoint's `variant` label when it has one (`instructrec-categories-mean`).
    /// `chosen`: the form is chosen per setting on the validation fold (`instructrec-chosen-mean`).
    pub fn model_name(&self, variant: Option<&str>, chosen: bool) -> String {
        let model = match variant {
            Some(v) => format!("instructrec-{v}"),
            None => "instructrec".into(),
        };
        let form = match (chosen, self.asking.task, self.asking.with_matching) {
            (true, ..) => "-chosen",
            (_, TaskForm::Rerank, true) if self.asking.shortlist => "-shortlist-t3t2",
            (_, TaskForm::Rerank, false) if self.asking.shortlist => "-shortlist",
            (_, TaskForm::Rerank, true) => "-t3t2",
            (_, TaskForm::Rerank, false) => "",
            (_, TaskForm::Matching, _) => "-t2",
            // Log odds have no length to normalise.
            (_, TaskForm::Pointwise, _) => return format!("{model}-t0"),
            (_, TaskForm::Pairwise, _) => "-t1",
        };
        let rule = match self.normalisation {
            Normalisation::Sum => "",
            Normalisation::Mean => "-mean",
        };
        format!("{model}{form}{rule}")
    }

    /// The same scoring, asked another way.
    fn asked(self, asking: Asking) -> Self {
        Self { asking, ..self }
    }

    fn rule(&self) -> String {
        let likelihood = match self.normalisation {
            Normalisation::Sum => "summed log-likelihood of the candidate title",
            Normalisation::Mean => "mean token log-likelihood of the candidate title",
        };
        let rule = match self.asking.task {
            TaskForm::Rerank if self.asking.with_matching => format!(
                "{likelihood}, asked with the list (T3) and without it (T2), each form's scores \
                 standardised within the list, then summed"
            ),
            TaskForm::Rerank => format!("{likelihood}, asked with the list (T3)"),
            TaskForm::Matching => format!("{likelihood}, asked without the list (T2)"),
            _ => "log odds of \"yes\" against \"no\", asked per candidate (T0)".into(),
        };
        let rule = match self.asking.shortlist {
            true => format!(
                "a list longer than the tuned lists first ranked by the {likelihood} asked \
                 without the list (T2), its best as many as the tuned lists then ranked first \
                 by: {rule}"
            ),
            false => rule,
        };
        match self.placement.precision {
            Precision::F32 => rule,
            Precision::Bf16 => format!("{rule}; bf16 weights"),
        }
    }
}

/// Everything an evaluation is asked to do.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    pub protocol: Protocol,
    /// A prepared directory.
    pub data: PathBuf,
    /// Report path without extension.
    pub out: PathBuf,
    pub seed: u64,
    /// Cases scored per batch.
    pub batch_size: usize,
    pub full_ranking: bool,
    /// Instructions built from `data`: the instruction model's test instructions and the search
    /// protocols' queries.
    pub instructions: Option<PathBuf>,
    /// Search protocols: which fill is the query.
    pub query: Option<QueryKind>,
    /// Search protocols: only the first N users (by id) of the query lines.
    pub max_users: Option<usize>,
    /// An instruction-tuned model directory to score beside the baselines.
    pub instruction_model: Option<PathBuf>,
    /// Held-out: one instruction model per tuning stage.
    pub stages: Vec<HeldOutStage>,
    pub scoring: InstructionScoring,
    /// The command line, recorded in the report.
    pub command: String,
    /// The recipe file this evaluation belongs to, copied into the report.
    pub recipe: Option<PathBuf>,
    /// Candidate lists from a file, scored instead of the stored ones (sequential protocol).
    pub candidates: Option<(PathBuf, CandidateIds)>,
    /// Also score each instruction model with every case's prompt taken from another case
    /// (the first setting's lists): the row that shows whether the model reads its prompt.
    pub permuted_prompts: bool,
    /// Full ranking retrieves with each instruction model's own T2 generation (the method's
    /// matching step) instead of the matcher the caller passes.
    pub generation_matcher: bool,
    /// A label for the instruction model's checkpoint in its rows' names, so that reports of
    /// several checkpoints can share one scenario table.
    pub variant: Option<String>,
    /// Which held-out item every case asks for: the test item (reports), or the validation
    /// item, on the validation lists and instruction lines, to choose between ways of asking
    /// (task forms, scoring rules) without looking at the test cases.
    pub fold: Fold,
    /// Ways of asking to choose between: in each list setting, the instruction model is first
    /// scored every one of these ways on the validation fold's lists of that setting, and the
    /// test fold is then asked the way with the highest validation HR@1 (NDCG@5, then the
    /// order given, break ties). Empty: asked as `scoring.asking` says.
    pub choose: Vec<Asking>,
}

/// The (query, target) pairs the search protocols' text models train on.
#[derive(Debug, Clone)]
pub struct SearchTraining {
    /// An instruction training file (`train.jsonl` from `instructrec instructions build`).
    pub instructions: PathBuf,
    pub query: QueryKind,
    /// Items that must not be training targets (product search's unseen items).
    pub excluded_targets: Vec<ItemId>,
}

/// A planned experiment: the data, the settings and cases every model is scored on, and the
/// report being filled.
pub struct Experiment {
    spec: ExperimentSpec,
    prepared: Prepared,
    settings: Vec<Setting>,
    report: Report,
    /// Cases the protocol built itself (from query lines or mined lists), one list per setting;
    /// `None` where the stored lists are scored.
    cases: Option<Vec<Vec<EvalCase>>>,
    lines: Option<Vec<QueryLine>>,
    /// What the instructions were built with: how the instruction model is asked about a list.
    build: Option<(BuildConfig, TemplateLibrary)>,
    stages: Vec<StageInfo>,
    search: Option<SearchTraining>,
    /// With [`ExperimentSpec::choose`]: each sampled setting's validation cases (the same
    /// users, the lists of that setting's size, the validation items), on which the way of
    /// asking is chosen.
    validation: Vec<Vec<EvalCase>>,
    /// Held for the whole run: two evaluations writing one report would interleave their
    /// rewrites of it.
    _lock: OutputLock,
}

impl ExperimentSpec {
    /// The instruction model's name in the report.
    pub fn model_name(&self) -> String {
        self.scoring
            .model_name(self.variant.as_deref(), !self.choose.is_empty())
    }

    /// Refuses combinations the protocol cannot honour, naming the flag to change.
    fn check(&self) -> anyhow::Result<()> {
        self.scoring.asking.check()?;
        for asking in &self.choose {
            asking.check().context("--choose-form")?;
        }
        let p = self.protocol;
        if !self.choose.is_empty() {
            if self.instruction_model.is_none() {
                bail!("--choose-form chooses how --instructrec is asked: give --instructrec");
            }
            if self.fold == Fold::Validation {
                bail!(
                    "--choose-form chooses on the validation fold to report the test fold: drop \
                     --fold validation"
                );
            }
            if self.candidates.is_some() {
                bail!(
                    "--candidates lists have no validation lists to choose on: drop \
                     --choose-form (and give --task), or drop --candidates"
                );
            }
            if matches!(p, Protocol::HeldOut | Protocol::ZeroShot) {
                bail!(
                    "{p} scores checkpoints or data with no validation cases of their own: drop \
                     --choose-form and give --task"
                );
            }
        }
        if let Some(why) = p.missing() {
            bail!("protocol {p} ({}) is not implemented: {why}", p.scenario());
        }
        if p == Protocol::ZeroShot
            && (self.instruction_model.is_none() || self.instructions.is_none())
        {
            bail!(
                "zero-shot scores an instruction model tuned on another domain on this one: give \
                 --instructrec (the tuned model) and --instructions (built from --data)"
            );
        }
        if self.candidates.is_some() && !matches!(p, Protocol::Sequential | Protocol::HardNegatives)
        {
            bail!(
                "--candidates lists are scored under the sequential protocol (or, mined earlier, \
                 hard-negatives): their users' histories stop before each positive (use \
                 --protocol sequential)"
            );
        }
        if self.instruction_model.is_some() && p == Protocol::HeldOut {
            bail!("held-out takes its instruction models from --stage, not --instructrec");
        }
        if self.instruction_model.is_some() && self.instructions.is_none() {
            bail!(
                "--instructrec needs --instructions (built from --data): the evaluation users \
                 and the settings its instructions are rendered with"
            );
        }
        if self.fold == Fold::Validation && self.candidates.is_some() {
            bail!(
                "--candidates lists are test lists (their positives are the test items): drop \
                 --fold validation, or drop --candidates to score the stored validation lists"
            );
        }
        if self.fold == Fold::Validation && matches!(p, Protocol::HeldOut | Protocol::ZeroShot) {
            bail!("{p} reports test figures of other checkpoints or data: use --fold test");
        }
        if (p == Protocol::HeldOut) == self.stages.is_empty() {
            bail!(
                "--stage NAME=DIR gives the held-out protocol its instruction models (one per \
                 tuning stage), and only that protocol takes it"
            );
        }
        Ok(())
    }

    /// A search protocol's query: the lines' preference and the fill used as the query.
    fn search_query(&self) -> anyhow::Result<(PreferenceKind, QueryKind)> {
        Ok(match (self.protocol, self.query) {
            (Protocol::ProductSearch, None | Some(QueryKind::Specific)) => {
                (PreferenceKind::None, QueryKind::Specific)
            }
            (Protocol::ProductSearch, Some(q)) => {
                bail!("product-search queries are specific intentions, not {q} (--query)")
            }
            (Protocol::HeldOut, None | Some(QueryKind::Vague)) => {
                (PreferenceKind::Implicit, QueryKind::Vague)
            }
            (Protocol::HeldOut, Some(q)) => bail!(
                "the held-out scenario is personalised search with vague intentions, not {q} \
                 (--query)"
            ),
            (_, Some(QueryKind::Explicit)) => (PreferenceKind::Explicit, QueryKind::Explicit),
            (_, q) => (PreferenceKind::Implicit, q.unwrap_or(QueryKind::Vague)),
        })
    }

    /// The instruction lines of the evaluated fold.
    fn fold_instructions(&self) -> Option<PathBuf> {
        self.instructions
            .as_ref()
            .map(|dir| dir.join(Split::from(self.fold).file_name()))
    }
}

impl Experiment {
    /// Checks the spec, loads the data and builds every case except mined lists (see
    /// [`Experiment::needs_miner`]). Stages of the held-out protocol are checked first, so a
    /// stage that saw the held-out scenario costs nothing.
    pub fn plan(spec: ExperimentSpec) -> anyhow::Result<Self> {
        spec.check()?;
        let lock = OutputLock::acquire(&spec.out)?;
        let stages = spec
            .stages
            .iter()
            .map(|s| check_stage(s, format!("{} {}", spec.model_name(), s.name)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut prepared = Prepared::load(&spec.data)
            .with_context(|| format!("loading the prepared dataset {}", spec.data.display()))?;
        let build = match (&spec.instructions, spec.fold_instructions()) {
            (Some(dir), Some(path)) => {
                restrict_to_users(&mut prepared, &sequential_users(&path)?);
                Some((
                    BuildConfig::read(dir)?,
                    TemplateLibrary::of_instructions(dir)?,
                ))
            }
            _ => None,
        };
        // The sequential protocols score the stored lists of every size the data has.
        let stored = !spec.protocol.needs_queries() && spec.protocol != Protocol::HardNegatives;
        let mut sizes: Vec<usize> = prepared
            .candidates
            .keys()
            .filter(|(fold, _)| stored && *fold == spec.fold)
            .map(|&(_, size)| size)
            .collect();
        sizes.sort_unstable();
        let lists: Vec<(Fold, usize)> = sizes.iter().map(|&s| (spec.fold, s)).collect();
        let mut report = Report::new(
            &prepared,
            spec.protocol,
            spec.command.clone(),
            spec.seed,
            &lists,
        )?;
        report.recipe = match &spec.recipe {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --recipe {}", path.display()))?,
            ),
            None => None,
        };
        let mut settings: Vec<Setting> = sizes
            .iter()
            .map(|&size| Setting::Sampled { size })
            .collect();
        if stored && spec.full_ranking {
            settings.push(Setting::FullRanking);
        }
        let mut plan = Self {
            _lock: lock,
            report,
            spec,
            prepared,
            settings,
            cases: None,
            lines: None,
            build,
            stages,
            search: None,
            validation: Vec::new(),
        };
        if plan.spec.protocol.needs_queries() {
            plan.plan_queries()?;
        }
        // Mined lists get their validation lists from the same miner (see `mine`).
        if !plan.spec.choose.is_empty() && plan.spec.protocol != Protocol::HardNegatives {
            plan.plan_validation()?;
        }
        if let Some((path, ids)) = plan.spec.candidates.clone() {
            plan.plan_external(&path, ids)?;
        }
        Ok(plan)
    }

    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// What the search protocols' text models train on; `None` for the other protocols.
    pub fn search_training(&self) -> Option<&SearchTraining> {
        self.search.as_ref()
    }

    /// Whether an instruction model is scored on the whole catalogue, which needs a matcher.
    pub fn needs_matcher(&self) -> bool {
        let models = self.spec.instruction_model.is_some() || !self.spec.stages.is_empty();
        models && self.settings.contains(&Setting::FullRanking) && !self.spec.generation_matcher
    }

    /// Whether the protocol's lists still have to be mined (hard negatives, unless an earlier
    /// run's mined lists were given as candidates): call [`Experiment::mine`] with the miner
    /// before evaluating anything.
    pub fn needs_miner(&self) -> bool {
        self.spec.protocol == Protocol::HardNegatives && self.cases.is_none()
    }

    /// Lists from a file replace the stored ones: every model is scored on exactly those.
    fn plan_external(&mut self, path: &Path, ids: CandidateIds) -> anyhow::Result<()> {
        let lists = read_candidates(path, &self.prepared, ids)?;
        if lists.summary.dropped.is_empty() {
            tracing::info!(path = %path.display(), "candidate file: {}", lists.summary);
        } else {
            tracing::warn!(path = %path.display(), "candidate file: {}", lists.summary);
        }
        let cases = lists
            .sets
            .iter()
            .map(|set| list_case(&self.prepared, set, Fold::Test))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let size = lists.sets[0].negatives.len() + 1;
        let info = CandidateInfo::new(
            &self.prepared,
            (Fold::Test, size),
            &lists.sets,
            lists.checksum,
        );
        self.report.candidates = vec![info];
        self.settings = vec![Setting::Sampled { size }];
        self.cases = Some(vec![cases]);
        Ok(())
    }

    /// The search protocols: cases from the instruction stage's query lines.
    fn plan_queries(&mut self) -> anyhow::Result<()> {
        let protocol = self.spec.protocol;
        let (_, query) = self.spec.search_query()?;
        let lines = self.query_lines(self.spec.fold)?;
        self.settings = match protocol {
            Protocol::Tournament => vec![
                Setting::Sampled { size: 100 },
                Setting::Tournament {
                    size: 100,
                    groups: 10,
                },
            ],
            _ => vec![Setting::Sampled {
                size: lines[0].candidates.len(),
            }],
        };
        if self.spec.full_ranking {
            self.settings.push(Setting::FullRanking);
        }
        self.report.scenario = match protocol {
            Protocol::ProductSearch => "<P0,I2,T3>".into(),
            Protocol::Tournament => format!("<P1,{},T3>, 100 candidates", query.aspect()),
            Protocol::HeldOut => format!("<P1,{},T3> left out of tuning", query.aspect()),
            _ => format!("<P1,{},T3>", query.aspect()),
        };
        let mut cases = Vec::new();
        for &setting in &self.settings {
            let c = build_query_cases(&self.prepared, protocol, &lines, self.spec.fold, setting)?;
            if !matches!(setting, Setting::FullRanking) {
                self.report
                    .candidates
                    .push(candidate_info(&self.prepared, self.spec.fold, &c));
            }
            cases.push(c);
        }
        let excluded_targets = if protocol == Protocol::ProductSearch {
            let split = &self.prepared.item_split;
            split
                .validation
                .iter()
                .chain(&split.test)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let train = self
            .spec
            .instructions
            .as_ref()
            .map(|dir| dir.join(Split::Train.file_name()));
        self.search = train.map(|instructions| SearchTraining {
            instructions,
            query,
            excluded_targets,
        });
        self.cases = Some(cases);
        self.lines = Some(lines);
        Ok(())
    }

    /// A search protocol's query lines of `fold`, by user, the first --max-users of them.
    fn query_lines(&self, fold: Fold) -> anyhow::Result<Vec<QueryLine>> {
        let protocol = self.spec.protocol;
        let dir = self.spec.instructions.as_ref().with_context(|| {
            format!("protocol {protocol} reads its queries from --instructions")
        })?;
        let (preference, query) = self.spec.search_query()?;
        let mut lines = read_queries(&dir.join(Split::from(fold).file_name()), preference, query)?;
        lines.sort_by_key(|l| l.user);
        if let Some(n) = self.spec.max_users {
            lines.truncate(n);
        }
        Ok(lines)
    }

    /// The cases a way of asking is chosen on: every sampled setting's, on the validation fold.
    fn plan_validation(&mut self) -> anyhow::Result<()> {
        let protocol = self.spec.protocol;
        let lines = match protocol.needs_queries() {
            true => Some(self.query_lines(Fold::Validation)?),
            false => None,
        };
        self.validation = self
            .settings
            .iter()
            .filter(|&&s| s != Setting::FullRanking)
            .map(|&setting| match &lines {
                Some(lines) => {
                    build_query_cases(&self.prepared, protocol, lines, Fold::Validation, setting)
                }
                None => build_cases(&self.prepared, protocol, Fold::Validation, setting),
            })
            .collect::<anyhow::Result<_>>()
            .context("the validation cases --choose-form chooses on")?;
        Ok(())
    }

    /// Hard negatives: the miner's top-scored non-positives replace the random negatives of the
    /// stored 1+9 test lists (the sequential protocol's users). The lists are data like the
    /// stored ones: `<out>.candidates.jsonl` holds them in the stored lists' shape and the
    /// source's raw ids, so `eval --candidates` scores any model on them in a later run, and
    /// `<out>.candidates.json` names the miner (`miner`: its report entry) and their checksum.
    /// Returns the lists' path.
    pub fn mine(&mut self, miner: &dyn Scorer, identity: &ModelReport) -> anyhow::Result<PathBuf> {
        let cases = build_cases(
            &self.prepared,
            Protocol::Sequential,
            self.spec.fold,
            Setting::Sampled { size: 10 },
        )?;
        let catalogue = self.prepared.dataset.items.len();
        let sets = mine_hard_negatives(miner, &cases, catalogue, 9, self.spec.batch_size)?;
        let bytes = self.prepared.raw_id_lines(&sets);
        let path = PathBuf::from(format!("{}.candidates.jsonl", self.spec.out.display()));
        write_atomic(&path, &bytes)?;
        let checksum = hex::encode(Sha256::digest(&bytes));
        let manifest = serde_json::json!({
            "lists": path.file_name().map(|n| n.to_string_lossy()),
            "ids": "raw",
            "count": sets.len(),
            "sha256": checksum,
            "miner": identity,
            "seed": self.spec.seed,
            "dataset": self.report.dataset,
        });
        write_atomic(
            &path.with_extension("json"),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        tracing::info!(path = %path.display(), %checksum, lists = sets.len(), "mined lists");
        let cases = with_candidates(cases, &sets)?;
        let info = CandidateInfo::new(&self.prepared, (self.spec.fold, 10), &sets, checksum);
        self.report.candidates.push(info);
        self.settings = vec![Setting::Sampled { size: 10 }];
        self.cases = Some(vec![cases]);
        if !self.spec.choose.is_empty() {
            // Mined like the test lists, so that the way of asking is chosen on lists as hard.
            let size = Setting::Sampled { size: 10 };
            let cases = build_cases(&self.prepared, Protocol::Sequential, Fold::Validation, size)?;
            let sets = mine_hard_negatives(miner, &cases, catalogue, 9, self.spec.batch_size)?;
            self.validation = vec![with_candidates(cases, &sets)?];
        }
        Ok(path)
    }

    /// Scores one fitted model under every setting and adds `entry` (its name, configuration
    /// and training record) with the results to the report, which is written at once so a
    /// long run leaves a usable partial report.
    pub fn evaluate(&mut self, scorer: &dyn Scorer, mut entry: ModelReport) -> anyhow::Result<()> {
        for i in 0..self.settings.len() {
            if let Some(e) = self.evaluate_setting(scorer, i)? {
                entry.results.push(e);
            }
        }
        self.report.models.push(entry);
        self.report.write(&self.spec.out)
    }

    fn evaluate_setting(
        &self,
        scorer: &dyn Scorer,
        setting_index: usize,
    ) -> anyhow::Result<Option<Evaluation>> {
        let setting = self.settings[setting_index];
        let e = evaluate_cases(
            scorer,
            &self.setting_cases(setting_index)?,
            self.prepared.dataset.items.len(),
            self.spec.fold,
            setting,
            self.spec.batch_size,
            self.spec.seed,
        )?;
        if let Some(e) = &e {
            tracing::info!(
                model = %scorer.name(),
                %setting,
                hr1 = e.metrics.hr1,
                ndcg5 = e.metrics.ndcg5,
                hr10 = e.metrics.hr10,
                eval_s = e.eval_wall_s,
                "evaluated"
            );
        }
        Ok(e)
    }

    /// Scores the instruction models: `--instructrec` and, under held-out, every stage, under
    /// every setting the baselines get, each list asked about in an instruction rendered for it.
    /// Under full ranking, `matcher` retrieves the top `depth` items the models rerank
    /// (without one, the instruction model has no full-ranking row).
    pub fn evaluate_instruction_models(
        &mut self,
        matcher: Option<&dyn Scorer>,
        depth: usize,
    ) -> anyhow::Result<()> {
        let name = self.spec.model_name();
        let mut models: Vec<(PathBuf, String, Option<StageInfo>)> = self
            .spec
            .instruction_model
            .iter()
            .map(|dir| (dir.clone(), name.clone(), None))
            .collect();
        for (stage, info) in self
            .spec
            .stages
            .iter()
            .zip(std::mem::take(&mut self.stages))
        {
            models.push((stage.dir.clone(), info.model.clone(), Some(info)));
        }
        for (dir, name, stage) in models {
            let entries = self.instruction_model(&dir, name, matcher, depth)?;
            self.report.models.extend(entries);
            self.report.stages.extend(stage);
            self.report.write(&self.spec.out)?;
        }
        Ok(())
    }

    /// The scenario the protocol asks the instruction model about.
    fn scenario(&self) -> anyhow::Result<(PreferenceKind, IntentionKind)> {
        if !self.spec.protocol.needs_queries() {
            return Ok((PreferenceKind::Implicit, IntentionKind::None));
        }
        let (preference, query) = self.spec.search_query()?;
        Ok(match query {
            QueryKind::Explicit => (PreferenceKind::Explicit, IntentionKind::None),
            QueryKind::Vague => (preference, IntentionKind::Vague),
            QueryKind::Specific => (preference, IntentionKind::Specific),
        })
    }

    /// The cases of setting `i`, as every model is scored on them: the protocol's own, or the
    /// stored lists'.
    fn setting_cases(&self, i: usize) -> anyhow::Result<Cow<'_, [EvalCase]>> {
        match &self.cases {
            Some(cases) => Ok(Cow::Borrowed(&cases[i])),
            None => build_cases(
                &self.prepared,
                self.spec.protocol,
                self.spec.fold,
                self.settings[i],
            )
            .map(Cow::Owned),
        }
    }

    /// The instruction model asked `asking` about `fold`'s cases, in the scenario's templates.
    fn asker(
        &self,
        model: Seq2Seq,
        name: &str,
        asking: Asking,
        fold: Fold,
    ) -> anyhow::Result<InstructRecScorer> {
        let scoring = self.spec.scoring;
        let scorer = InstructRecScorer::new(
            name,
            model,
            self.renderer(asking.task, fold)?,
            scoring.limits,
            scoring.normalisation,
        );
        let scorer = match asking.with_matching {
            true => scorer.with_matching(self.renderer(TaskForm::Matching, fold)?)?,
            false => scorer,
        };
        match asking.shortlist {
            true => scorer.with_shortlist(self.renderer(TaskForm::Matching, fold)?),
            false => Ok(scorer),
        }
    }

    /// The scenario's template of `task`, rendered as the builder wrote `fold`'s lines.
    fn renderer(&self, task: TaskForm, fold: Fold) -> anyhow::Result<InstructionRenderer> {
        let (config, templates) = self
            .build
            .as_ref()
            .context("the instruction model needs --instructions")?;
        let (preference, intention) = self.scenario()?;
        Ok(InstructionRenderer::new(
            &self.prepared,
            (config.clone(), templates),
            (task, preference, intention),
        )?
        .for_fold(fold))
    }

    /// Scores `model` every way of [`ExperimentSpec::choose`] on sampled setting `i`'s
    /// validation cases and returns it with the best way and the record of the choice.
    fn choose(
        &self,
        mut model: Seq2Seq,
        name: &str,
        i: usize,
    ) -> anyhow::Result<(Seq2Seq, Asking, ValidationChoice)> {
        let (cases, setting) = (&self.validation[i], self.settings[i]);
        let mut tried = Vec::new();
        for &asking in &self.spec.choose {
            let scorer = self.asker(model, name, asking, Fold::Validation)?;
            let e = evaluate_cases(
                &scorer,
                cases,
                self.prepared.dataset.items.len(),
                Fold::Validation,
                setting,
                self.spec.batch_size,
                self.spec.seed,
            )?
            .context("a sampled setting always has results")?;
            tracing::info!(model = name, %setting, %asking, hr1 = e.metrics.hr1, "validation");
            model = scorer.into_model();
            tried.push((asking, e.metrics));
        }
        // Ties go to the way given first.
        let (best, _) = tried
            .iter()
            .rev()
            .max_by(|(_, a), (_, b)| a.hr1.total_cmp(&b.hr1).then(a.ndcg5.total_cmp(&b.ndcg5)))
            .expect("--choose-form is not empty");
        let best = *best;
        let record = ValidationChoice {
            setting: setting.to_string(),
            fold: Fold::Validation,
            cases: cases.len(),
            lists: candidates_checksum(&cases.iter().map(as_candidate_set).collect::<Vec<_>>()),
            tried: tried
                .iter()
                .map(|(asking, m)| TriedWay {
                    asked: asking.to_string(),
                    hr1: m.hr1,
                    hr1_se: m.se.hr1,
                    ndcg5: m.ndcg5,
                    ndcg5_se: m.se.ndcg5,
                })
                .collect(),
            chosen: best.to_string(),
            score: self.spec.scoring.asked(best).rule(),
        };
        Ok((model, best, record))
    }

    /// Loads an instruction-tuned model directory, scores it under every setting (asked the way
    /// chosen on validation for that setting, with --choose-form) and returns its report entry,
    /// followed by its permuted-prompt entry when asked for.
    fn instruction_model(
        &self,
        dir: &Path,
        name: String,
        matcher: Option<&dyn Scorer>,
        depth: usize,
    ) -> anyhow::Result<Vec<ModelReport>> {
        let model_config = std::fs::read(dir.join("config.json"))
            .with_context(|| format!("reading {}/config.json", dir.display()))?;
        let mut model = Seq2Seq::load_on(dir, self.spec.scoring.placement)
            .with_context(|| format!("loading the model {}", dir.display()))?;
        let list_length = self
            .build
            .as_ref()
            .context("the instruction model needs --instructions")?
            .0
            .train_candidates;
        let (preference, intention) = self.scenario()?;
        let scoring = self.spec.scoring;
        let fold = self.spec.fold;
        let choosing = !self.spec.choose.is_empty();
        // A result says how it was asked where that was chosen.
        let mark = |mut e: Evaluation, asking: Asking| {
            e.asked = choosing.then(|| asking.to_string());
            e
        };
        let mut asked: Vec<Asking> = Vec::new();
        let mut choices = Vec::new();
        let mut results = Vec::new();
        let mut full_ranking = None;
        for i in 0..self.settings.len() {
            let asking = match self.settings[i] {
                _ if !choosing => scoring.asking,
                // The full ranking reranks lists of the first setting's kind (the tuned length).
                Setting::FullRanking => asked[0],
                _ => {
                    let (m, asking, record) = self.choose(model, &name, i)?;
                    choices.push(record);
                    model = m;
                    asking
                }
            };
            asked.push(asking);
            let scorer = self.asker(model, &name, asking, fold)?;
            let generation = match self.settings[i] {
                Setting::FullRanking if self.spec.generation_matcher => {
                    Some(GenerationMatcher::new(
                        scorer.model(),
                        self.renderer(TaskForm::Matching, fold)?,
                        scoring.limits,
                        depth,
                    )?)
                }
                _ => None,
            };
            let matcher = generation.as_ref().map(|g| g as &dyn Scorer).or(matcher);
            let e = match (self.settings[i], matcher) {
                (Setting::FullRanking, Some(matcher)) => {
                    full_ranking = Some(matcher.name());
                    let pipeline = MatchThenRerank {
                        matcher,
                        reranker: &scorer,
                        depth,
                        group: list_length,
                    };
                    self.evaluate_setting(&pipeline, i)?
                }
                _ => self.evaluate_setting(&scorer, i)?,
            };
            results.extend(e.map(|e| mark(e, asking)));
            drop(generation);
            model = scorer.into_model();
        }
        let mut config = serde_json::json!({
            "model": serde_json::from_slice::<serde_json::Value>(&model_config)?,
            "max_source_len": scoring.limits.source,
            "max_target_len": scoring.limits.target,
            "score": scoring.asked(asked[0]).rule(),
            "scenario": format!("{preference} {intention} {}", asked[0]),
            "full_ranking": full_ranking.map(|matcher| serde_json::json!({
                "matcher": matcher,
                "reranked": depth,
                "list_length": list_length,
            })),
        });
        if choosing {
            config[ValidationChoice::CONFIG_KEY] = serde_json::to_value(&choices)?;
        }
        let entry = ModelReport {
            name: name.clone(),
            config,
            config_hash: hex::encode(Sha256::digest(&model_config)),
            model_hash: file_sha256(&dir.join("model.safetensors"))?,
            train_wall_s: training_seconds(dir),
            training: None,
            loaded_from: Some(dir.display().to_string()),
            results,
        };
        if !self.spec.permuted_prompts {
            return Ok(vec![entry]);
        }
        let mut control = entry.clone();
        // The choice is the true-prompt row's; its results say how the control was asked.
        if let Some(config) = control.config.as_object_mut() {
            config.remove(ValidationChoice::CONFIG_KEY);
        }
        control.config["prompts"] = serde_json::json!(
            "each case asked in another case's prompt (its history, query and context), \
             a seeded cycle over the cases"
        );
        control.results = Vec::new();
        // Every list setting, asked as its true-prompt row was. Not the full ranking: its
        // candidates come from a matcher, which the control would have to mislead too.
        for (i, &asking) in asked.iter().enumerate() {
            if matches!(self.settings[i], Setting::FullRanking) {
                continue;
            }
            let cases: Vec<Case> = self
                .setting_cases(i)?
                .iter()
                .map(|c| c.case.clone())
                .collect();
            let scorer = self.asker(model, &name, asking, fold)?;
            let permuted = PermutedPrompts::new(&scorer, &cases, self.spec.seed);
            control.name = permuted.name();
            let e = self.evaluate_setting(&permuted, i)?;
            control.results.extend(e.map(|e| mark(e, asking)));
            drop(permuted);
            model = scorer.into_model();
        }
        Ok(vec![entry, control])
    }

    /// Writes the report (already written after each model, marked partial) as the whole
    /// report, and returns its path stem.
    pub fn finish(mut self) -> anyhow::Result<PathBuf> {
        self.report.partial = false;
        self.report.write(&self.spec.out)?;
        Ok(self.spec.out)
    }
}

fn candidate_info(prepared: &Prepared, fold: Fold, cases: &[EvalCase]) -> CandidateInfo {
    let sets: Vec<CandidateSet> = cases.iter().map(as_candidate_set).collect();
    let size = sets[0].negatives.len() + 1;
    let checksum = candidates_checksum(&sets);
    CandidateInfo::new(prepared, (fold, size), &sets, checksum)
}

/// A case's list in the stored form, for the report's checksum.
fn as_candidate_set(c: &EvalCase) -> CandidateSet {
    CandidateSet {
        user: c.case.user,
        positive: c.positive,
        negatives: c
            .candidates
            .iter()
            .copied()
            .filter(|&i| i != c.positive)
            .collect(),
    }
}

/// The users the instruction stage wrote sequential (P1, I0) test instructions for: its seeded
/// evaluation sample.
fn sequential_users(path: &Path) -> anyhow::Result<Vec<UserId>> {
    let mut users: Vec<UserId> = read_jsonl(path)?
        .into_iter()
        .filter(|l| {
            l.task == TaskForm::Rerank
                && l.preference.kind() == PreferenceKind::Implicit
                && l.intention.kind() == IntentionKind::None
        })
        .map(|l| l.user)
        .collect();
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        bail!(
            "{}: no sequential (P1, I0) reranking test lines",
            path.display()
        );
    }
    Ok(users)
}

/// Keeps only the candidate lists of `users`, so that every model is scored on the same sample
/// of users the instruction stage wrote test instructions for.
fn restrict_to_users(prepared: &mut Prepared, users: &[UserId]) {
    let keep: HashSet<UserId> = users.iter().copied().collect();
    for lists in prepared.candidates.values_mut() {
        lists.retain(|set| keep.contains(&set.user));
    }
    tracing::info!(
        "evaluating on the {} users with test instructions",
        keep.len()
    );
}

/// Training wall time recorded in a checkpoint by `instructrec train`; 0 for a checkpoint made
/// elsewhere.
fn training_seconds(dir: &Path) -> f64 {
    TrainingRecord::read(dir).map_or(0.0, |r| r.elapsed_secs)
}

fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}
