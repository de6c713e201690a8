//! Building the instruction set from a prepared dataset.
//!
//! Training: for each user, the last `per_user` items of the train sequence (everything but the
//! validation and test items) are targets, each predicted from the items before it; each target
//! gets `templates_per_target` templates drawn from those it can fill. Instructions that pair an
//! item with a query derived from it (I1, I2, item -> query) only take targets from the
//! item-level train split, so the product-search validation and test items and their queries
//! are never seen in training. Negatives are drawn from the whole catalogue minus everything the
//! user ever interacted with (so never the validation or test item).
//!
//! Validation and test: one line per evaluation template (plain T3, one per scenario) and
//! stored candidate set, with the history before the held-out item and the stored candidates
//! in a seeded display order. Pure search scenarios (P0 with a query) keep only users whose
//! held-out item is in the same fold of the item-level split.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use instructrec_data::{CandidateSet, DataError, Fold, ItemId, Prepared, UserId};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::aspects::{Intention, IntentionKind, Preference, PreferenceKind, TargetKind, TaskForm};
use crate::record::{Instruction, Split};
use crate::rerank::{context_of, display_order, fold_index};
use crate::seeded_rng;
use crate::stats::{BuildTimings, InstructionStats};
use crate::teacher::{Fill, FillRequest, Teacher, TeacherError, TeacherReport, TeacherSource};
use crate::template::{Fills, Slot, Template, TemplateError, TemplateLibrary};
use crate::text::{fit_history, ListedNames, TokenCounter, WordCounter};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildConfig {
    pub seed: u64,
    /// Training targets per user: the last this many items of the train sequence.
    pub per_user: usize,
    /// Templates instantiated per training target (a pointwise template yields a "yes" and a
    /// "no" line).
    pub templates_per_target: usize,
    /// Token budget of the shown history; oldest titles are dropped first.
    pub history_budget: usize,
    /// Candidate list length of training T3 instructions (1 positive + negatives).
    pub train_candidates: usize,
    /// Category labels shown after each title in a candidate list (0: titles only; see
    /// [`ListedNames`]). Absent from folders built before it existed, which showed titles only.
    #[serde(default)]
    pub candidate_labels: usize,
    /// Stored candidate set sizes to write evaluation lines for.
    pub eval_sizes: Vec<usize>,
    /// Write evaluation lines for a seeded sample of this many users (the same users in both
    /// folds); `None` for every user. Scoring every candidate of every scenario for every user
    /// is more than a language model can afford, and the files would run to gigabytes.
    pub eval_users: Option<usize>,
}

/// How many users get evaluation lines: a number, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalUsers(pub Option<usize>);

impl std::str::FromStr for EvalUsers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Self(None));
        }
        s.parse()
            .map(|n| Self(Some(n)))
            .map_err(|_| format!("expected a number or \"all\", got {s:?}"))
    }
}

/// The file beside the instruction files that records their [`BuildConfig`].
pub const BUILD_CONFIG_FILE: &str = "config.json";

impl BuildConfig {
    /// The configuration an instruction folder was built with.
    pub fn read(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(BUILD_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| DataError::File {
            path,
            message: format!("not a build configuration ({e}); rebuild the instructions"),
        })
    }
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            per_user: 1,
            templates_per_target: 3,
            history_budget: 200,
            train_candidates: 10,
            candidate_labels: 0,
            eval_sizes: vec![10],
            eval_users: Some(5000),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    #[error("loading the prepared dataset {path}: {source}")]
    Data { path: String, source: DataError },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{0}")]
    Config(String),
}

/// Why a template cannot be filled for a target (shown by `instructions show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error("the user has no history before this item")]
    NoHistory,
    #[error("the item is not in the training part of the item split (its query is held out)")]
    QueryHeldOut,
    #[error("the item has no category path")]
    NoCategories,
    #[error("the catalogue has too few items the user has not interacted with")]
    TooFewNegatives,
    #[error("the template is not an evaluation template")]
    NotEvaluation,
    #[error("the item is not in this fold of the item split")]
    NotInFoldItems,
}

/// The instructions of one build, by split, and what it took to make them.
#[derive(Debug, Clone)]
pub struct InstructionSet {
    pub train: Vec<Instruction>,
    pub validation: Vec<Instruction>,
    pub test: Vec<Instruction>,
    pub stats: InstructionStats,
    /// What the set was built with; evaluation renders further lists by the same settings.
    pub config: BuildConfig,
    /// The template file it was built from (written beside the lines as `templates.toml`).
    pub templates: String,
}

impl InstructionSet {
    pub fn split(&self, split: Split) -> &[Instruction] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

/// One training target: the item, what came before it, and what negatives must avoid.
struct Example<'e> {
    user: UserId,
    target: ItemId,
    /// The capped history before the target, oldest first.
    history: Vec<ItemId>,
    context: Option<String>,
    /// Everything the user ever interacted with.
    exclude: &'e HashSet<ItemId>,
}

/// Instructions rendered from drafts, with the fills they used.
struct Finished {
    instructions: Vec<Instruction>,
    fills: Vec<(FillRequest, Fill)>,
    report: TeacherReport,
    teacher_seconds: f64,
}

/// A template as `show` filled it for one user, or why it could not be.
#[derive(Debug, Clone)]
pub struct ShownTemplate {
    pub template: Template,
    pub instruction: Result<Instruction, Ineligible>,
}

impl std::fmt::Display for ShownTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.template;
        let labels = format!(
            "{} {} {}  {}",
            t.preference, t.intention, t.task, t.strategy
        );
        writeln!(f, "== {}  {labels}", t.id)?;
        match &self.instruction {
            Ok(i) => writeln!(f, "[{}] {}\n-> {}", i.split.name(), i.text, i.target),
            Err(why) => writeln!(f, "(not filled for this user: {why})"),
        }
    }
}

/// One instruction before its teacher fills are known.
struct Draft {
    split: Split,
    template: usize,
    user: UserId,
    target: ItemId,
    /// The capped history before the target, oldest first.
    history: Vec<ItemId>,
    shown: Vec<ItemId>,
    /// Pointwise only: whether the item asked about is the target.
    yes: Option<bool>,
    candidate_size: Option<usize>,
    context: Option<String>,
    preference: Option<FillRequest>,
    intention: Option<FillRequest>,
}

fn needs_history(t: &Template) -> bool {
    t.preference != PreferenceKind::None
        || matches!(
            t.target,
            TargetKind::ExplicitPreference
                | TargetKind::PreviousItem
                | TargetKind::QueryAndItem
                | TargetKind::ReasoningAndItem
        )
}

fn needs_preference_fill(t: &Template) -> bool {
    t.preference == PreferenceKind::Explicit
        || matches!(
            t.target,
            TargetKind::ExplicitPreference | TargetKind::ReasoningAndItem
        )
}

fn needs_intention_fill(t: &Template) -> bool {
    t.intention == IntentionKind::Vague
        || matches!(
            t.target,
            TargetKind::VagueIntention | TargetKind::QueryAndItem
        )
}

fn needs_path(t: &Template) -> bool {
    t.intention == IntentionKind::Specific || t.target == TargetKind::SpecificIntention
}

/// Negatives a template shows besides the target.
fn negatives_needed(t: &Template, train_candidates: usize) -> usize {
    match t.task {
        TaskForm::Rerank => train_candidates.saturating_sub(1),
        TaskForm::Pairwise | TaskForm::Pointwise => 1,
        TaskForm::Matching => 0,
    }
}

pub struct Builder<'a> {
    prepared: &'a Prepared,
    library: &'a TemplateLibrary,
    teacher: &'a dyn Teacher,
    counter: &'a dyn TokenCounter,
    config: BuildConfig,
    train_items: Vec<bool>,
    fold_items: [Vec<bool>; 2],
    listed: ListedNames,
}

/// What a build reads, opened: the prepared dataset, the templates, the teacher and the
/// settings.
pub struct BuildInputs {
    pub prepared: Prepared,
    pub library: TemplateLibrary,
    pub teacher: Box<dyn Teacher>,
    pub config: BuildConfig,
}

impl BuildInputs {
    /// Opens the prepared directory `data`, the template file `templates` (the built-in
    /// library without one) and the teacher, seeded with the build's seed.
    pub fn open(
        data: &Path,
        templates: Option<&Path>,
        teacher: &TeacherSource,
        config: BuildConfig,
    ) -> Result<Self, BuildError> {
        let prepared = Prepared::load(data).map_err(|source| BuildError::Data {
            path: data.display().to_string(),
            source,
        })?;
        Ok(Self {
            prepared,
            library: TemplateLibrary::from_path_or_builtin(templates)?,
            teacher: teacher.open(config.seed)?,
            config,
        })
    }

    pub fn builder(&self) -> Result<Builder<'_>, BuildError> {
        let (p, l, t) = (&self.prepared, &self.library, self.teacher.as_ref());
        Builder::new(p, l, t, &WordCounter, self.config.clone())
    }
}

fn membership(n: usize, items: &[ItemId]) -> Vec<bool> {
    let mut v = vec![false; n];
    for i in items {
        v[i.index()] = true;
    }
    v
}

impl<'a> Builder<'a> {
    pub fn new(
        prepared: &'a Prepared,
        library: &'a TemplateLibrary,
        teacher: &'a dyn Teacher,
        counter: &'a dyn TokenCounter,
        config: BuildConfig,
    ) -> Result<Self, BuildError> {
        if config.train_candidates < 2 {
            return Err(BuildError::Config(
                "training candidate lists need at least 2 items".into(),
            ));
        }
        for size in &config.eval_sizes {
            for fold in [Fold::Validation, Fold::Test] {
                if prepared.candidates(fold, *size).is_none() {
                    return Err(BuildError::Config(format!(
                        "the prepared dataset has no {fold:?} candidate sets of size {size}"
                    )));
                }
            }
        }
        let n = prepared.dataset.items.len();
        let split = &prepared.item_split;
        Ok(Self {
            prepared,
            library,
            teacher,
            counter,
            train_items: membership(n, &split.train),
            fold_items: [membership(n, &split.validation), membership(n, &split.test)],
            listed: ListedNames::of(prepared, config.candidate_labels),
            config,
        })
    }

    fn title(&self, item: ItemId) -> &str {
        &self.prepared.dataset.items[item.index()].title
    }

    fn path(&self, item: ItemId) -> String {
        self.prepared.dataset.items[item.index()]
            .categories
            .join(", ")
    }

    fn user_items(&self, user: UserId) -> HashSet<ItemId> {
        self.prepared.dataset.sequences[user.index()]
            .iter()
            .map(|x| x.item)
            .collect()
    }

    fn train_problem(
        &self,
        t: &Template,
        target: ItemId,
        history: &[ItemId],
        excluded: usize,
    ) -> Option<Ineligible> {
        if needs_history(t) && history.is_empty() {
            return Some(Ineligible::NoHistory);
        }
        if (needs_intention_fill(t) || needs_path(t)) && !self.train_items[target.index()] {
            return Some(Ineligible::QueryHeldOut);
        }
        if needs_path(t)
            && self.prepared.dataset.items[target.index()]
                .categories
                .is_empty()
        {
            return Some(Ineligible::NoCategories);
        }
        if self.prepared.dataset.items.len()
            < excluded + negatives_needed(t, self.config.train_candidates)
        {
            return Some(Ineligible::TooFewNegatives);
        }
        None
    }

    fn eval_problem(
        &self,
        t: &Template,
        fold: Fold,
        target: ItemId,
        history: &[ItemId],
    ) -> Option<Ineligible> {
        if !t.eval {
            return Some(Ineligible::NotEvaluation);
        }
        if needs_history(t) && history.is_empty() {
            return Some(Ineligible::NoHistory);
        }
        if needs_path(t)
            && self.prepared.dataset.items[target.index()]
                .categories
                .is_empty()
        {
            return Some(Ineligible::NoCategories);
        }
        let pure_search =
            t.preference == PreferenceKind::None && t.intention != IntentionKind::None;
        if pure_search && !self.fold_items[fold_index(fold)][target.index()] {
            return Some(Ineligible::NotInFoldItems);
        }
        None
    }

    fn negatives(&self, rng: &mut ChaCha8Rng, exclude: &HashSet<ItemId>, k: usize) -> Vec<ItemId> {
        let n = self.prepared.dataset.items.len() as u32;
        let mut out: Vec<ItemId> = Vec::with_capacity(k);
        while out.len() < k {
            let c = ItemId(rng.random_range(0..n));
            if !exclude.contains(&c) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Drafts of one template for one training target.
    fn train_drafts(&self, index: usize, ex: &Example, rng: &mut ChaCha8Rng) -> Vec<Draft> {
        let t = &self.library.templates()[index];
        let (user, target, history) = (ex.user, ex.target, &ex.history);
        let negatives = self.negatives(
            rng,
            ex.exclude,
            negatives_needed(t, self.config.train_candidates),
        );
        let draft = |shown: Vec<ItemId>, yes: Option<bool>| Draft {
            split: Split::Train,
            template: index,
            user,
            target,
            history: history.to_vec(),
            shown,
            yes,
            candidate_size: None,
            context: ex.context.clone(),
            preference: needs_preference_fill(t).then(|| FillRequest::Preference {
                user,
                history: history.to_vec(),
                avoid: target,
            }),
            intention: needs_intention_fill(t)
                .then_some(FillRequest::Intention { user, item: target }),
        };
        match t.task {
            TaskForm::Pointwise => vec![
                draft(vec![target], Some(true)),
                draft(negatives, Some(false)),
            ],
            TaskForm::Matching => vec![draft(Vec::new(), None)],
            TaskForm::Pairwise | TaskForm::Rerank => {
                let mut shown = negatives;
                shown.push(target);
                shown.shuffle(rng);
                vec![draft(shown, None)]
            }
        }
    }

    fn plan_train_user(&self, user: UserId) -> Vec<Draft> {
        let p = self.prepared;
        let held_out = [
            p.held_out(user, Fold::Validation),
            p.held_out(user, Fold::Test),
        ];
        // Repeated interactions would let a held-out item back in through the train sequence.
        let seq: Vec<_> = p
            .train_sequence(user)
            .iter()
            .filter(|x| !held_out.contains(&x.item))
            .collect();
        let exclude = self.user_items(user);
        let cap = p.manifest.options.history_cap;
        let mut drafts = Vec::new();
        for pos in seq.len().saturating_sub(self.config.per_user)..seq.len() {
            let target = seq[pos].item;
            let history: Vec<ItemId> = seq[pos.saturating_sub(cap)..pos]
                .iter()
                .map(|x| x.item)
                .collect();
            let ex = Example {
                user,
                target,
                history,
                context: context_of(seq[pos].timestamp),
                exclude: &exclude,
            };
            let mut rng = seeded_rng(self.config.seed, "train", &[user.0 as u64, pos as u64]);
            let eligible: Vec<usize> = (0..self.library.templates().len())
                .filter(|&i| {
                    self.train_problem(
                        &self.library.templates()[i],
                        target,
                        &ex.history,
                        exclude.len(),
                    )
                    .is_none()
                })
                .collect();
            let chosen: Vec<usize> = eligible
                .choose_multiple(&mut rng, self.config.templates_per_target)
                .copied()
                .collect();
            for index in chosen {
                drafts.extend(self.train_drafts(index, &ex, &mut rng));
            }
        }
        drafts
    }

    fn eval_drafts(
        &self,
        fold: Fold,
        size: usize,
        set: &CandidateSet,
        only: Option<usize>,
    ) -> Vec<Draft> {
        let p = self.prepared;
        let user = set.user;
        let target = set.positive;
        let history: Vec<ItemId> = p
            .recent_history(user, fold)
            .iter()
            .map(|x| x.item)
            .collect();
        let context = context_of(
            p.dataset.sequences[user.index()]
                .iter()
                .find(|x| x.item == target)
                .and_then(|x| x.timestamp),
        );
        let shown = display_order(self.config.seed, user, fold, &set.items());
        let split = Split::from(fold);
        (0..self.library.templates().len())
            .filter(|&i| only.is_none_or(|o| o == i))
            .filter(|&i| {
                self.eval_problem(&self.library.templates()[i], fold, target, &history)
                    .is_none()
            })
            .map(|i| {
                let t = &self.library.templates()[i];
                Draft {
                    split,
                    template: i,
                    user,
                    target,
                    history: history.clone(),
                    shown: shown.clone(),
                    yes: None,
                    candidate_size: Some(size),
                    context: context.clone(),
                    preference: needs_preference_fill(t).then(|| FillRequest::Preference {
                        user,
                        history: history.clone(),
                        avoid: target,
                    }),
                    intention: needs_intention_fill(t)
                        .then_some(FillRequest::Intention { user, item: target }),
                }
            })
            .collect()
    }

    fn eval_user_filter(&self) -> Option<HashSet<UserId>> {
        let n = self.config.eval_users?;
        let mut users: Vec<UserId> = self.prepared.dataset.users.iter().map(|u| u.id).collect();
        if users.len() < n {
            tracing::warn!(
                "--eval-users {n}: the dataset has only {} users; all of them get evaluation lines",
                users.len()
            );
        }
        users.shuffle(&mut seeded_rng(self.config.seed, "eval-users", &[]));
        users.truncate(n);
        Some(users.into_iter().collect())
    }

    fn plan(&self) -> Vec<Draft> {
        let users: Vec<UserId> = self.prepared.dataset.users.iter().map(|u| u.id).collect();
        let mut drafts: Vec<Draft> = users
            .par_iter()
            .flat_map_iter(|u| self.plan_train_user(*u))
            .collect();
        let keep = self.eval_user_filter();
        for fold in [Fold::Validation, Fold::Test] {
            for &size in &self.config.eval_sizes {
                let sets = self.prepared.candidates(fold, size).unwrap_or_default();
                let eval: Vec<Draft> = sets
                    .par_iter()
                    .filter(|s| keep.as_ref().is_none_or(|k| k.contains(&s.user)))
                    .flat_map_iter(|s| self.eval_drafts(fold, size, s, None))
                    .collect();
                drafts.extend(eval);
            }
        }
        drafts
    }

    /// Builds every split. Deterministic given the prepared data, templates, teacher and config.
    pub fn build(&self) -> Result<InstructionSet, BuildError> {
        let start = Instant::now();
        let drafts = self.plan();
        let planned = start.elapsed().as_secs_f64();
        let Finished {
            instructions,
            fills,
            report,
            teacher_seconds: teacher_s,
        } = self.finish(drafts)?;
        let render_s = start.elapsed().as_secs_f64() - planned - teacher_s;
        let mut by_split: HashMap<Split, Vec<Instruction>> = HashMap::new();
        for i in instructions {
            by_split.entry(i.split).or_default().push(i);
        }
        let mut take = |s| by_split.remove(&s).unwrap_or_default();
        let (train, validation, test) = (
            take(Split::Train),
            take(Split::Validation),
            take(Split::Test),
        );
        let timings = BuildTimings {
            plan: planned,
            teacher: teacher_s,
            render: render_s,
        };
        let stats = InstructionStats::compute(
            self.library,
            [&train, &validation, &test],
            &fills,
            report,
            timings,
        );
        Ok(InstructionSet {
            train,
            validation,
            test,
            stats,
            config: self.config.clone(),
            templates: self.library.text().to_string(),
        })
    }

    /// Asks the teacher for the drafts' fills (each distinct request once) and renders them.
    fn finish(&self, drafts: Vec<Draft>) -> Result<Finished, BuildError> {
        let mut index: HashMap<&FillRequest, usize> = HashMap::new();
        let mut requests: Vec<FillRequest> = Vec::new();
        for r in drafts
            .iter()
            .flat_map(|d| d.preference.iter().chain(d.intention.iter()))
        {
            index.entry(r).or_insert_with(|| {
                requests.push(r.clone());
                requests.len() - 1
            });
        }
        let started = Instant::now();
        let filled = self.teacher.fill(&self.prepared.dataset, &requests)?;
        let teacher_s = started.elapsed().as_secs_f64();
        if filled.fills.len() != requests.len() {
            return Err(BuildError::Config(format!(
                "the teacher returned {} fills for {} requests",
                filled.fills.len(),
                requests.len()
            )));
        }
        let bar = ProgressBar::new(drafts.len() as u64).with_style(
            ProgressStyle::with_template("rendering {bar:40} {pos}/{len}")
                .expect("valid progress template"),
        );
        let lookup =
            |r: &Option<FillRequest>| r.as_ref().map(|r| filled.fills[index[r]].text.as_str());
        let instructions: Vec<Instruction> = drafts
            .par_iter()
            .map(|d| {
                bar.inc(1);
                self.render(d, lookup(&d.preference), lookup(&d.intention))
            })
            .collect();
        bar.finish_and_clear();
        drop(index);
        let fills = requests.into_iter().zip(filled.fills).collect();
        Ok(Finished {
            instructions,
            fills,
            report: filled.report,
            teacher_seconds: teacher_s,
        })
    }

    fn render(
        &self,
        d: &Draft,
        preference_fill: Option<&str>,
        intention_fill: Option<&str>,
    ) -> Instruction {
        let t = &self.library.templates()[d.template];
        let titles: Vec<&str> = d.history.iter().map(|i| self.title(*i)).collect();
        let kept = fit_history(&titles, self.config.history_budget, self.counter);
        let shown_history = &d.history[d.history.len() - kept..];
        let fill = |f: Option<&str>| {
            f.expect("drafts request every fill their template needs")
                .to_string()
        };
        let preference = match t.preference {
            PreferenceKind::None => Preference::None,
            PreferenceKind::Implicit => Preference::Implicit(shown_history.to_vec()),
            PreferenceKind::Explicit => Preference::Explicit(fill(preference_fill)),
        };
        let intention = match t.intention {
            IntentionKind::None => Intention::None,
            IntentionKind::Vague => Intention::Vague(fill(intention_fill)),
            IntentionKind::Specific => Intention::Specific(self.path(d.target)),
        };
        let target_title = self.title(d.target);
        let path = t.uses(Slot::SpecificIntention).then(|| self.path(d.target));
        let candidates: Vec<&str> = if t.uses(Slot::Candidates) {
            d.shown.iter().map(|i| self.listed.get(*i)).collect()
        } else {
            Vec::new()
        };
        let shown = |k: usize| d.shown.get(k).map(|i| self.title(*i));
        let text = t.fill(&Fills {
            history: &titles[titles.len() - kept..],
            explicit_preference: preference_fill,
            vague_intention: intention_fill,
            specific_intention: path.as_deref(),
            candidates: &candidates,
            item: if t.task == TaskForm::Pointwise {
                shown(0)
            } else {
                Some(target_title)
            },
            item_a: shown(0),
            item_b: shown(1),
            context: d.context.as_deref(),
        });
        let previous = d.history.last().copied();
        let target = match t.target {
            TargetKind::ItemTitle | TargetKind::PreferredItem => target_title.to_string(),
            TargetKind::YesNo => if d.yes == Some(true) { "yes" } else { "no" }.to_string(),
            TargetKind::VagueIntention => fill(intention_fill),
            TargetKind::SpecificIntention => self.path(d.target),
            TargetKind::ExplicitPreference => fill(preference_fill),
            TargetKind::PreviousItem => self
                .title(previous.expect("tied templates need a history"))
                .to_string(),
            TargetKind::QueryAndItem => {
                format!("Request: {} Product: {target_title}", fill(intention_fill))
            }
            TargetKind::ReasoningAndItem => {
                format!("{} So my pick is: {target_title}", fill(preference_fill))
            }
        };
        let history = if needs_preference_fill(t) {
            d.history.clone()
        } else if t.preference == PreferenceKind::Implicit {
            shown_history.to_vec()
        } else if t.target == TargetKind::PreviousItem {
            previous.into_iter().collect()
        } else {
            Vec::new()
        };
        Instruction {
            split: d.split,
            template: t.id.clone(),
            preference,
            intention,
            task: t.task,
            strategy: t.strategy,
            target_kind: t.target,
            context: d.context.clone(),
            text,
            target,
            user: d.user,
            target_item: d.target,
            candidates: d.shown.clone(),
            candidate_size: d.candidate_size,
            history,
        }
    }

    /// Every template filled for one user: training templates for the user's last training
    /// target, evaluation templates for the test fold's stored set of the smallest evaluation
    /// size. Templates the user cannot fill say why.
    pub fn show(
        &self,
        user: UserId,
        template: Option<&str>,
    ) -> Result<Vec<ShownTemplate>, BuildError> {
        if user.index() >= self.prepared.dataset.users.len() {
            return Err(BuildError::Config(format!("no user with index {}", user.0)));
        }
        let templates: Vec<usize> = match template {
            Some(id) => vec![self
                .library
                .templates()
                .iter()
                .position(|t| t.id == id)
                .ok_or_else(|| BuildError::Config(format!("no template `{id}`")))?],
            None => (0..self.library.templates().len()).collect(),
        };
        let p = self.prepared;
        let seq = p.train_sequence(user);
        let Some(last) = seq.last() else {
            return Err(BuildError::Config(format!(
                "user {} has no training items",
                user.0
            )));
        };
        let pos = seq.len() - 1;
        let target = last.item;
        let history: Vec<ItemId> = seq[pos.saturating_sub(p.manifest.options.history_cap)..pos]
            .iter()
            .map(|x| x.item)
            .collect();
        let exclude = self.user_items(user);
        let ex = Example {
            user,
            target,
            history,
            context: context_of(last.timestamp),
            exclude: &exclude,
        };
        let eval_set = self.config.eval_sizes.iter().min().and_then(|size| {
            let sets = p.candidates(Fold::Test, *size)?;
            sets.iter().find(|s| s.user == user).map(|s| (*size, s))
        });
        let mut drafts = Vec::new();
        let mut outcome: Vec<(&Template, Result<usize, Ineligible>)> = Vec::new();
        for i in templates {
            let t = &self.library.templates()[i];
            let start = drafts.len();
            if t.eval {
                if let Some((size, set)) = eval_set {
                    drafts.extend(self.eval_drafts(Fold::Test, size, set, Some(i)));
                }
            }
            let problem = self.train_problem(t, target, &ex.history, exclude.len());
            if drafts.len() == start && problem.is_none() {
                let mut rng = seeded_rng(self.config.seed, "show", &[user.0 as u64, i as u64]);
                drafts.extend(self.train_drafts(i, &ex, &mut rng));
            }
            match drafts.len() - start {
                0 => outcome.push((
                    t,
                    Err(problem.expect("an eligible template always yields a draft")),
                )),
                n => outcome.extend((start..start + n).map(|d| (t, Ok(d)))),
            }
        }
        let mut instructions: Vec<Option<Instruction>> = self
            .finish(drafts)?
            .instructions
            .into_iter()
            .map(Some)
            .collect();
        Ok(outcome
            .into_iter()
            .map(|(template, r)| ShownTemplate {
                template: template.clone(),
                instruction: r.map(|d| instructions[d].take().expect("each draft is shown once")),
            })
            .collect())
    }
}
