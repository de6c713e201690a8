//! The recipe of `instructrec run`: one typed TOML document with every setting of every stage
//! (recipes/default.toml holds each default with a comment, as RecBole's overall.yaml does).
//! A recipe renders to the exact subcommands a user would type, so the main job, the README's
//! stage-by-stage commands and a hand-run pipeline can never drift apart.

use instructrec_model::DeviceSpec;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The commented default recipe.
pub const DEFAULT_TOML: &str = include_str!("../../../recipes/default.toml");
/// A demo recipe: a tiny model on MovieLens 100K in a few minutes.
pub const QUICK_TOML: &str = include_str!("../../../recipes/quick.toml");

/// The recipes shipped with the binary, by name.
pub const BUILTIN: [(&str, &str); 2] = [("default", DEFAULT_TOML), ("quick", QUICK_TOML)];

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{origin}: not a recipe: {message}")]
    Parse { origin: String, message: String },
    #[error("reading the recipe {origin}: {message} (give a recipe file, or a shipped one: default, quick)")]
    Read { origin: String, message: String },
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
    #[error(
        "{path} holds the recipe of an earlier run, which differs in: {keys}; use another \
         --work, or the same recipe"
    )]
    Differs { path: PathBuf, keys: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub seed: u64,
    pub work: PathBuf,
    /// Where the training and evaluation stages run (the same checkpoints on any device, up to
    /// float rounding).
    #[serde(default)]
    pub device: DeviceSpec,
    pub data: DataStage,
    pub instructions: InstructionStage,
    pub model: NewModel,
    #[serde(default)]
    pub pretrain: Vec<PretrainStage>,
    pub tune: TuneStage,
    #[serde(default)]
    pub eval: Vec<EvalStage>,
    pub serve: ServeStage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStage {
    pub input: PathBuf,
    pub k_core: usize,
    pub history_cap: usize,
    pub candidates: Vec<usize>,
    pub keep_untitled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionStage {
    pub eval_users: usize,
    pub per_user: usize,
    pub templates_per_target: usize,
    pub history_budget: usize,
    pub train_candidates: usize,
    pub candidate_labels: usize,
}

/// How the first training stage creates its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    pub preset: String,
    pub vocab_size: usize,
    pub item_tokens: bool,
    pub item_tokens_from_pieces: bool,
    pub compose_item_tokens: bool,
}

/// The schedule every training stage has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub epochs: usize,
    pub steps: u64,
    /// A human duration (`75m`, `1h 30m`): the wall-clock cap of one invocation.
    pub budget: String,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup: u64,
    pub relative_steps: bool,
    pub eval_every: u64,
    pub max_source_len: usize,
    pub max_target_len: usize,
}

// Unknown keys are caught by `Recipe::parse`: serde cannot deny them beside `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainStage {
    pub name: String,
    pub wording: Wording,
    pub history_budget: usize,
    pub copies: usize,
    pub valid_fraction: f64,
    #[serde(flatten)]
    pub schedule: Schedule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wording {
    Compact,
    Templates,
}

// Unknown keys are caught by `Recipe::parse`: serde cannot deny them beside `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneStage {
    /// Item rows also composed from their items' category labels, from this stage on.
    #[serde(default)]
    pub compose_categories: bool,
    pub preference: Vec<String>,
    pub task: Vec<String>,
    pub strategy: Vec<String>,
    pub weights: Vec<String>,
    pub rank_sample: usize,
    pub valid_sample: usize,
    pub length_normalise: bool,
    #[serde(flatten)]
    pub schedule: Schedule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalStage {
    /// The scenario's label and report name (`<work>/report-<name>`); the protocol's by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub protocol: String,
    /// Search protocols: which fill is the query (explicit, vague, specific).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub models: Vec<String>,
    /// Another dataset to evaluate on (the zero-shot protocol): prepared and built into
    /// instructions under `<work>/<name>/` with this recipe's [data] and [instructions]
    /// settings, then scored with the model tuned here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<PathBuf>,
    /// Most epochs of each neural model this evaluation fits (the hard-negative miner among
    /// them), so that its schedule ends by its epochs on any machine; each model's own default
    /// without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    /// Wall-clock cap of each such model's training (a safety net: epochs should end first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    pub full_ranking: bool,
    pub length_normalise: bool,
    /// How the tuned model is asked: T3, T2, T0 or T3+T2 (eval's `--task`; T3 without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Ways of asking chosen between per list setting on the validation fold (eval's
    /// `--choose-form`), instead of one `task`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choose_form: Vec<String>,
    #[serde(default)]
    pub permuted_prompts: bool,
    pub max_source_len: usize,
    pub max_target_len: usize,
}

impl EvalStage {
    /// The scenario's label: its name, or else its protocol.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.protocol)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeStage {
    pub addr: String,
}

/// One stage of a run: the subcommand that does it, and when it is already done.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    /// The arguments after `instructrec`.
    pub argv: Vec<String>,
    /// The stage is done when this file exists; `instead` is then run (if any). Stages
    /// without one run every time (training resumes, and a finished run stops at once).
    pub done_when: Option<PathBuf>,
    pub instead: Option<Vec<String>>,
    /// A training stage's output folder: the run goes on only once its schedule has ended
    /// there, since a stage stopped by its time budget would hand on a different model.
    pub trains: Option<PathBuf>,
}

impl Stage {
    /// The stage as a shell command line (`instructrec ...`).
    pub fn command_line(&self) -> String {
        command_line(&self.argv)
    }

    /// What to run now: the stage's command, or once its output exists, `instead` (`None`:
    /// nothing).
    pub fn to_run(&self) -> Option<&[String]> {
        match (&self.done_when, &self.instead) {
            (Some(done), instead) if done.exists() => {
                tracing::info!("{} exists: the {} stage is done", done.display(), self.name);
                instead.as_deref()
            }
            _ => Some(&self.argv),
        }
    }
}

/// `instructrec` followed by the arguments, each quoted only where a shell needs it.
pub fn command_line(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    format!("instructrec {}", quoted.join(" "))
}

impl Recipe {
    /// The default recipe.
    pub fn default_recipe() -> Self {
        Self::parse(DEFAULT_TOML, "recipes/default.toml").expect("the default recipe parses")
    }

    /// A shipped recipe by name (`default`, `quick`).
    pub fn builtin(name: &str) -> Option<Self> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Self::parse(text, &format!("recipes/{n}.toml")).expect("parses"))
    }

    /// Reads a recipe: `text`'s tables merged over the default recipe's (an array replaces the
    /// default's array whole). `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RecipeError> {
        let parse = |t: &str, o: &str| {
            t.parse::<toml::Table>().map_err(|e| RecipeError::Parse {
                origin: o.to_string(),
                message: e.to_string(),
            })
        };
        let mut merged = toml::Value::Table(parse(DEFAULT_TOML, "recipes/default.toml")?);
        let given = parse(text, origin)?;
        if let toml::Value::Table(m) = &mut merged {
            merge(m, given);
        }
        let recipe: Recipe =
            serde_path_to_error::deserialize(merged.clone()).map_err(|e| RecipeError::Invalid {
                origin: origin.to_string(),
                field: e.path().to_string(),
                message: e.inner().message().to_string(),
            })?;
        let mut unknown = Vec::new();
        let known = toml::Value::try_from(&recipe).expect("serialises");
        unknown_keys("", &merged, &known, &mut unknown);
        if let Some(field) = unknown.into_iter().next() {
            return Err(RecipeError::Invalid {
                origin: origin.to_string(),
                field,
                message: "not a recipe key (see `instructrec run --print-recipe`)".into(),
            });
        }
        recipe.validate(origin)?;
        Ok(recipe)
    }

    /// The recipe a user names: a file when `name` is a path that exists, else a shipped
    /// recipe of that name, else the file's read error (which names the path).
    pub fn resolve(name: &str) -> Result<Self, RecipeError> {
        let path = Path::new(name);
        match Self::builtin(name) {
            Some(recipe) if !path.exists() => Ok(recipe),
            _ => Self::read(path),
        }
    }

    /// Reads a recipe file.
    pub fn read(path: &Path) -> Result<Self, RecipeError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError::Read {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &origin)
    }

    fn validate(&self, origin: &str) -> Result<(), RecipeError> {
        let invalid = |field: String, message: String| RecipeError::Invalid {
            origin: origin.to_string(),
            field,
            message,
        };
        let budgets = self
            .pretrain
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("pretrain[{i}].budget"), &p.schedule.budget))
            .chain([("tune.budget".to_string(), &self.tune.schedule.budget)])
            .chain(self.eval.iter().enumerate().filter_map(|(i, e)| {
                let budget = e.budget.as_ref()?;
                Some((format!("eval[{i}].budget"), budget))
            }));
        for (field, budget) in budgets {
            humantime::parse_duration(budget).map_err(|e| {
                invalid(field, format!("{e} in {budget:?} (e.g. 90s, 20m, 1h 30m)"))
            })?;
        }
        // Stage names become folder and report names.
        let plain = |name: &str| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let folder_name = |field: String, name: &str| {
            let message =
                format!("{name:?} must be a distinct folder name (letters, digits, - and _)");
            invalid(field, message)
        };
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.pretrain.iter().enumerate() {
            if !plain(&p.name) || !names.insert(p.name.as_str()) {
                return Err(folder_name(format!("pretrain[{i}].name"), &p.name));
            }
        }
        let mut labels = std::collections::HashSet::new();
        for (i, e) in self.eval.iter().enumerate() {
            if !plain(e.label()) || !labels.insert(e.label()) {
                return Err(folder_name(format!("eval[{i}].name"), e.label()));
            }
            if (e.protocol == "zero-shot") != e.input.is_some() {
                let message = "the zero-shot protocol, and only it, takes `input` (another \
                               dataset to score the model tuned here on)";
                return Err(invalid(format!("eval[{i}].input"), message.into()));
            }
            if e.task.is_some() && !e.choose_form.is_empty() {
                let message = "give one way of asking (`task`) or the ways to choose between on \
                               validation (`choose_form`), not both";
                return Err(invalid(format!("eval[{i}].choose_form"), message.into()));
            }
        }
        Ok(())
    }

    /// The recipe as TOML, every key written out (what `run` keeps in its work folder).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a recipe serialises")
    }

    /// The recipe as TOML for a person: the commented default file when it is the default.
    pub fn to_commented_toml(&self) -> String {
        if *self == Self::default_recipe() {
            DEFAULT_TOML.to_string()
        } else {
            self.to_toml()
        }
    }

    /// The keys whose values differ between two recipes, as dotted paths.
    pub fn differences(&self, other: &Recipe) -> Vec<String> {
        let as_value = |r: &Recipe| toml::Value::try_from(r).expect("a recipe serialises");
        let mut out = Vec::new();
        diff("", &as_value(self), &as_value(other), &mut out);
        out
    }

    /// Whether a run made with `before` may go on under this recipe: only step counts and
    /// budgets (a longer schedule resumes) and the serving address may change.
    pub fn extends(&self, before: &Recipe) -> Result<(), Vec<String>> {
        let fixed: Vec<String> = self
            .differences(before)
            .into_iter()
            .filter(|k| !(k.ends_with(".steps") || k.ends_with(".budget") || k == "serve.addr"))
            .collect();
        if fixed.is_empty() {
            Ok(())
        } else {
            Err(fixed)
        }
    }

    /// The stages of a run in `work`, in order.
    pub fn stages(&self, work: &Path) -> Vec<Stage> {
        let w = Workspace::new(work);
        let mut stages = vec![
            self.prepare(&w, &self.data.input, "data"),
            self.build_instructions(&w, "instructions"),
        ];
        let mut from: Option<PathBuf> = None;
        for p in &self.pretrain {
            let out = w.pretrained.join(&p.name);
            stages.push(self.pretrain_stage(&w, p, from.as_deref(), &out));
            from = Some(out.join("best"));
        }
        stages.push(self.tune_stage(&w, from.as_deref()));
        for e in &self.eval {
            // The evaluation's data: this run's, or another dataset's prepared here first.
            let data = match &e.input {
                Some(input) => {
                    let other = w.elsewhere(e.label());
                    stages.push(self.prepare(&other, input, &format!("data {}", e.label())));
                    let name = format!("instructions {}", e.label());
                    stages.push(self.build_instructions(&other, &name));
                    other
                }
                None => Workspace::new(work),
            };
            stages.push(self.eval_stage(&w, &data, e));
        }
        if !self.eval.is_empty() {
            stages.push(self.scenarios_stage(&w));
        }
        stages
    }

    /// The reports a run writes: one per evaluation, then the scenario table.
    pub fn reports(&self) -> Vec<PathBuf> {
        let w = Workspace::new(&self.work);
        let mut out: Vec<PathBuf> = self
            .eval
            .iter()
            .map(|e| w.report(e.label()).with_extension("md"))
            .collect();
        if !out.is_empty() {
            out.push(self.work.join("scenarios.md"));
        }
        out
    }

    /// The stage that serves the tuned model.
    pub fn serve_stage(&self, work: &Path) -> Stage {
        let w = Workspace::new(work);
        let mut argv: Vec<String> = args(&["serve", "--model"])
            .chain([p(&w.tuned()), "--data".into(), p(&w.prepared)])
            .chain(["--addr".into(), self.serve.addr.clone()])
            .collect();
        // Lists must name items as the instructions the model was tuned on did.
        let labels = self.instructions.candidate_labels;
        if labels > 0 {
            argv.extend(["--candidate-labels".into(), labels.to_string()]);
        }
        plain_stage("serve", argv)
    }

    fn prepare(&self, w: &Workspace, input: &Path, name: &str) -> Stage {
        let argv = args(&["data", "prepare", "--out"])
            .chain([p(&w.prepared), "--input".into(), p(input)])
            .chain(flags(&self.data, &[("input", None)]))
            .chain(self.seed_flag())
            .collect();
        Stage {
            name: name.into(),
            argv,
            done_when: Some(w.prepared.join("manifest.json")),
            instead: Some(vec!["data".into(), "stats".into(), p(&w.prepared)]),
            trains: None,
        }
    }

    fn build_instructions(&self, w: &Workspace, name: &str) -> Stage {
        let argv = args(&["instructions", "build", "--data"])
            .chain([p(&w.prepared), "--out".into(), p(&w.instructions)])
            .chain(flags(&self.instructions, &[]))
            .chain(self.seed_flag())
            .collect();
        Stage {
            name: name.into(),
            argv,
            done_when: Some(w.instructions.join("stats.json")),
            instead: None,
            trains: None,
        }
    }

    /// The model a training stage starts from: a new one (the recipe's [model], with a
    /// tokenizer that also learns the instructions' words) or the previous stage's best/.
    /// Composed item rows are trained in every stage, so that flag goes to each.
    fn model_source(&self, w: &Workspace, from: Option<&Path>) -> Vec<String> {
        match from {
            Some(dir) => {
                let mut argv = vec!["--init".into(), p(dir)];
                if self.model.compose_item_tokens {
                    argv.push("--compose-item-tokens".into());
                }
                argv
            }
            None => flags(&self.model, &[])
                .into_iter()
                .chain(["--tokenizer-corpus".into(), p(&w.train_lines())])
                .collect(),
        }
    }

    fn pretrain_stage(
        &self,
        w: &Workspace,
        stage: &PretrainStage,
        from: Option<&Path>,
        out: &Path,
    ) -> Stage {
        let argv = args(&["pretrain", "--objective", "next-item", "--data"])
            .chain([p(&w.prepared)])
            .chain(self.model_source(w, from))
            .chain(flags(stage, &[("name", None)]))
            .chain(self.training_output(out))
            .collect();
        Stage {
            trains: Some(out.to_path_buf()),
            ..plain_stage(&format!("pretrain {}", stage.name), argv)
        }
    }

    fn tune_stage(&self, w: &Workspace, from: Option<&Path>) -> Stage {
        let argv = args(&["train", "--train"])
            .chain([p(&w.train_lines())])
            .chain(self.model_source(w, from))
            .chain([
                "--valid".into(),
                p(&w.instructions.join("validation.jsonl")),
            ])
            .chain(["--data".into(), p(&w.prepared)])
            .chain(flags(&self.tune, &[]))
            .chain(self.training_output(&w.model))
            .collect();
        Stage {
            trains: Some(w.model.clone()),
            ..plain_stage("tune", argv)
        }
    }

    fn training_output(&self, out: &Path) -> Vec<String> {
        self.seed_flag()
            .into_iter()
            .chain(["--out".into(), p(out), "--resume".into()])
            .chain(self.device_flag())
            .collect()
    }

    fn seed_flag(&self) -> [String; 2] {
        ["--seed".into(), self.seed.to_string()]
    }

    /// Nothing on the CPU, the default, so that CPU commands read as before.
    fn device_flag(&self) -> Vec<String> {
        match self.device {
            DeviceSpec::Cpu => Vec::new(),
            d => vec!["--device".into(), d.to_string()],
        }
    }

    /// Evaluates the model tuned in `w` on the prepared data and instructions of `data`.
    fn eval_stage(&self, w: &Workspace, data: &Workspace, e: &EvalStage) -> Stage {
        let renamed = [("full_ranking", None), ("name", None), ("input", None)];
        let argv = args(&["eval", "--data"])
            .chain([p(&data.prepared)])
            .chain(["--instructrec".into(), p(&w.tuned())])
            .chain(["--instructions".into(), p(&data.instructions)])
            .chain(flags(e, &renamed))
            .chain((!e.full_ranking).then(|| "--no-full-ranking".to_string()))
            .chain(["--out".into(), p(&w.report(e.label()))])
            .chain(self.seed_flag())
            .chain(self.device_flag())
            .chain(["--recipe".into(), p(&w.recipe())])
            .collect();
        plain_stage(&format!("eval {}", e.label()), argv)
    }

    /// The stage that gathers every evaluation's report into the scenario table.
    fn scenarios_stage(&self, w: &Workspace) -> Stage {
        let mut argv = args(&["scenarios"]).collect::<Vec<_>>();
        for e in &self.eval {
            let report = w.report(e.label()).with_extension("json");
            argv.push("--scenario".into());
            argv.push(format!("{}={}", e.label(), p(&report)));
        }
        argv.extend(["--out".into(), p(&w.work.join("scenarios"))]);
        plain_stage("scenarios", argv)
    }
}

/// A stage's settings as the flags of its subcommand, in key order: `a_b = 3` becomes
/// `--a-b 3`, a list is joined by commas, `true` is a bare switch, and `false` or an empty
/// list gives nothing (the subcommand's own default). `renamed` maps a key to another flag
/// name, or to `None` for a key that is no flag. Keeping the recipe's keys equal to the flags'
/// names is what lets one function render every stage.
fn flags<T: Serialize>(settings: &T, renamed: &[(&str, Option<&str>)]) -> Vec<String> {
    const SHARED: [(&str, Option<&str>); 2] = [
        ("steps", Some("max-steps")),
        ("budget", Some("time-budget")),
    ];
    let toml::Value::Table(table) = toml::Value::try_from(settings).expect("settings serialise")
    else {
        unreachable!("a stage's settings are a table")
    };
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut argv = Vec::new();
    for (key, value) in &table {
        let name = match renamed.iter().chain(&SHARED).find(|(k, _)| k == key) {
            Some((_, None)) => continue,
            Some((_, Some(flag))) => flag.to_string(),
            None => key.replace('_', "-"),
        };
        let value = match value {
            toml::Value::Boolean(false) => continue,
            toml::Value::Boolean(true) => None,
            toml::Value::Array(a) if a.is_empty() => continue,
            toml::Value::Array(a) => Some(a.iter().map(scalar).collect::<Vec<_>>().join(",")),
            v => Some(scalar(v)),
        };
        argv.push(format!("--{name}"));
        argv.extend(value);
    }
    argv
}

/// Where a run keeps each stage's output.
pub struct Workspace {
    pub work: PathBuf,
    pub prepared: PathBuf,
    pub instructions: PathBuf,
    pub pretrained: PathBuf,
    pub model: PathBuf,
}

impl Workspace {
    pub fn new(work: &Path) -> Self {
        Self {
            work: work.to_path_buf(),
            prepared: work.join("prepared"),
            instructions: work.join("instructions"),
            pretrained: work.join("pretrained"),
            model: work.join("model"),
        }
    }

    /// Where another dataset's prepared and instruction folders go (`<work>/<name>/`).
    pub fn elsewhere(&self, name: &str) -> Self {
        Self::new(&self.work.join(name))
    }

    /// The recipe a run keeps beside its outputs.
    pub fn recipe(&self) -> PathBuf {
        self.work.join("recipe.toml")
    }

    /// The tuned model that is evaluated and served: the best on validation.
    pub fn tuned(&self) -> PathBuf {
        self.model.join("best")
    }

    /// Writes the recipe into the work folder, or checks that the run there was made with it: a
    /// different recipe would mix its stages with the other's outputs. Only longer schedules
    /// (which resume) and the serving address may change.
    pub fn keep(&self, recipe: &Recipe) -> Result<(), RecipeError> {
        let path = self.recipe();
        if path.exists() {
            let before = Recipe::read(&path)?;
            if let Err(keys) = recipe.extends(&before) {
                let keys = keys.join(", ");
                return Err(RecipeError::Differs { path, keys });
            }
        }
        let io = |source| RecipeError::Io {
            path: self.work.clone(),
            source,
        };
        std::fs::create_dir_all(&self.work).map_err(io)?;
        instructrec_data::atomic::write_atomic(&path, recipe.to_toml().as_bytes()).map_err(io)
    }

    /// A report's path without extension.
    pub fn report(&self, name: &str) -> PathBuf {
        self.work.join(format!("report-{name}"))
    }

    fn train_lines(&self) -> PathBuf {
        self.instructions.join("train.jsonl")
    }
}

fn plain_stage(name: &str, argv: Vec<String>) -> Stage {
    Stage {
        name: name.into(),
        argv,
        done_when: None,
        instead: None,
        trains: None,
    }
}

fn args<'a>(a: &'a [&'a str]) -> impl Iterator<Item = String> + 'a {
    a.iter().map(|s| s.to_string())
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Merges `over` into `base`: tables key by key, anything else replaced whole.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// The keys of `given` that `known` (the recipe read from it, written back) lacks: keys no
/// recipe field took. Keys only `known` has are defaults of keys a file may leave out.
fn unknown_keys(path: &str, given: &toml::Value, known: &toml::Value, out: &mut Vec<String>) {
    match (given, known) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => unknown_keys(&dotted(path, k), v, w, out),
                    None => out.push(dotted(path, k)),
                }
            }
        }
        (toml::Value::Array(x), toml::Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                unknown_keys(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ => {}
    }
}

/// `key` inside the table at `path`, as a dotted path.
fn dotted(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn diff(path: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    let key = |k: &str| dotted(path, k);
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff(&key(k), va, vb, out),
                    _ => out.push(key(k)),
                }
            }
        }
        (toml::Value::Array(x), toml::Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        // `lr = 1` reads as the float 1.0.
        (toml::Value::Integer(i), toml::Value::Float(f))
        | (toml::Value::Float(f), toml::Value::Integer(i))
            if *i as f64 == *f => {}
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_recipes_parse_and_round_trip() {
        for (name, _) in BUILTIN {
            let r = Recipe::builtin(name).unwrap();
            let again = Recipe::parse(&r.to_toml(), "written").unwrap();
            assert_eq!(r, again, "{name}");
            assert!(r.differences(&again).is_empty());
        }
    }

    /// The value after `flag` in a stage's arguments.
    fn flag_value<'a>(stage: &'a Stage, flag: &str) -> &'a str {
        let at = stage.argv.iter().position(|a| a == flag);
        &stage.argv[at.unwrap_or_else(|| panic!("{flag} in {:?}", stage.argv)) + 1]
    }

    /// The first evaluation stage of a recipe given as TOML.
    fn first_eval_stage(text: &str) -> Stage {
        let r = Recipe::parse(text, "mine.toml").unwrap();
        let mut stages = r.stages(Path::new("w")).into_iter();
        stages.find(|s| s.name.starts_with("eval")).unwrap()
    }

    #[test]
    fn zero_shot_evaluations_prepare_their_own_dataset() {
        let r = Recipe::default_recipe();
        let stages = r.stages(Path::new("w"));
        let e = r
            .eval
            .iter()
            .find(|e| e.input.is_some())
            .expect("a zero-shot stage");
        let prepare = stages
            .iter()
            .find(|s| s.name == format!("data {}", e.label()));
        let input = flag_value(prepare.expect("its data stage"), "--input");
        assert_eq!(Path::new(input), e.input.as_deref().unwrap());
        let eval = stages
            .iter()
            .find(|s| s.name == format!("eval {}", e.label()))
            .unwrap();
        assert_eq!(
            Path::new(flag_value(eval, "--data")),
            Path::new("w").join(e.label()).join("prepared")
        );
        assert!(!eval.argv.iter().any(|a| a == "--input"));
        let bad = "[[eval]]\nprotocol = \"zero-shot\"\nmodels = []\nfull_ranking = false\n\
                   length_normalise = true\nmax_source_len = 9\nmax_target_len = 9\n";
        let err = Recipe::parse(bad, "mine.toml").unwrap_err().to_string();
        assert!(err.contains("eval[0].input"), "{err}");
    }

    #[test]
    fn an_evaluations_training_limits_become_its_flags() {
        let eval = "[[eval]]\nprotocol = \"hard-negatives\"\nmodels = []\nfull_ranking = false\n\
                    length_normalise = true\nmax_source_len = 9\nmax_target_len = 9\n";
        let budget = first_eval_stage(&format!("{eval}budget = \"25m\"\n"));
        assert_eq!(flag_value(&budget, "--time-budget"), "25m");
        let epochs = first_eval_stage(&format!("{eval}max_epochs = 3\n"));
        assert_eq!(flag_value(&epochs, "--max-epochs"), "3");
        let err = Recipe::parse(&format!("{eval}budget = \"soon\"\n"), "mine.toml").unwrap_err();
        assert!(err.to_string().contains("eval[0].budget"), "{err}");
    }

    #[test]
    fn candidate_labels_reach_the_instructions_and_the_server() {
        let r = Recipe::parse("[instructions]\ncandidate_labels = 3\n", "mine.toml").unwrap();
        let stages = r.stages(Path::new("w"));
        let build = stages.iter().find(|s| s.name == "instructions").unwrap();
        assert_eq!(flag_value(build, "--candidate-labels"), "3");
        assert_eq!(
            flag_value(&r.serve_stage(Path::new("w")), "--candidate-labels"),
            "3"
        );
        let plain = Recipe::default_recipe().serve_stage(Path::new("w"));
        assert_eq!(
            plain.argv.iter().any(|a| a == "--candidate-labels"),
            Recipe::default_recipe().instructions.candidate_labels > 0
        );
    }

    #[test]
    fn a_recipe_is_named_by_file_or_by_shipped_name() {
        assert_eq!(
            Recipe::resolve("quick").unwrap(),
            Recipe::builtin("quick").unwrap()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.toml");
        std::fs::write(&file, "seed = 7\n").unwrap();
        assert_eq!(Recipe::resolve(file.to_str().unwrap()).unwrap().seed, 7);
        let missing = dir.path().join("nope.toml");
        let err = Recipe::resolve(missing.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    #[test]
    fn a_partial_recipe_keeps_the_defaults_it_does_not_name() {
        let r = Recipe::parse("seed = 7\n[tune]\nsteps = 10\n", "mine.toml").unwrap();
        let d = Recipe::default_recipe();
        assert_eq!(r.seed, 7);
        assert_eq!(r.tune.schedule.steps, 10);
        assert_eq!(r.tune.schedule.lr, d.tune.schedule.lr);
        assert_eq!(r.pretrain, d.pretrain);
        assert_eq!(
            r.differences(&d),
            vec!["seed".to_string(), "tune.steps".to_string()]
        );
        // More steps extend a run; another seed does not.
        assert_eq!(r.extends(&d), Err(vec!["seed".to_string()]));
        let longer = Recipe::parse("[tune]\nsteps = 900\n", "longer.toml").unwrap();
        assert_eq!(longer.extends(&d), Ok(()));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = Recipe::parse("[tune]\nstepz = 3\n", "mine.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mine.toml") && msg.contains("stepz"), "{msg}");
        let e = Recipe::parse("[tune]\nbudget = \"soon\"\n", "mine.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("tune.budget") && msg.contains("soon"), "{msg}");
        let e = Recipe::parse("[[pretrain]]\nname = \"a/b\"\n", "mine.toml").unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
        let e = Recipe::parse("[tune]\nsteps = \"many\"\n", "mine.toml").unwrap_err();
        // serde's path ends at a flattened table; the value names the key.
        assert!(
            e.to_string()
                .contains("tune: invalid type: string \"many\""),
            "{e}"
        );
    }

    #[test]
    fn the_device_reaches_every_training_and_evaluation_stage_only() {
        let r = Recipe::parse("device = \"cuda:1\"\n", "gpu.toml").unwrap();
        for s in r.stages(Path::new("w")) {
            let on_device = s.name.starts_with("pretrain")
                || s.name.starts_with("tune")
                || s.name.starts_with("eval");
            let flag = s.argv.windows(2).any(|w| w == ["--device", "cuda:1"]);
            assert_eq!(flag, on_device, "{}: {:?}", s.name, s.argv);
        }
        let cpu = Recipe::default_recipe().stages(Path::new("w"));
        assert!(cpu.iter().all(|s| !s.argv.contains(&"--device".into())));
        let e = Recipe::parse("device = \"tpu\"\n", "gpu.toml").unwrap_err();
        assert!(e.to_string().contains("tpu"), "{e}");
    }

    #[test]
    fn stages_chain_each_checkpoint_into_the_next() {
        let r = Recipe::default_recipe();
        let stages = r.stages(Path::new("w"));
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "data",
                "instructions",
                "pretrain short",
                "pretrain templates",
                "tune",
                "eval sequential",
                "eval hard-negatives",
                "eval product-search",
                "eval personalised-search-i1",
                "eval personalised-search-i2",
                "eval personalised-search-p2",
                "eval tournament-i1",
                "data zero-shot-toys",
                "instructions zero-shot-toys",
                "eval zero-shot-toys",
                "scenarios"
            ]
        );
        let has = |s: &Stage, a: &str, b: &str| s.argv.windows(2).any(|w| w[0] == a && w[1] == b);
        assert!(has(&stages[2], "--preset", "compact"));
        assert!(has(&stages[3], "--init", "w/pretrained/short/best"));
        assert!(has(&stages[4], "--init", "w/pretrained/templates/best"));
        assert!(has(&stages[5], "--instructrec", "w/model/best"));
        assert!(stages[2..5]
            .iter()
            .all(|s| s.argv.contains(&"--resume".into())));
        // Each evaluation writes its own report, and the last stage gathers them all.
        assert!(has(&stages[9], "--out", "w/report-personalised-search-i2"));
        assert!(has(&stages[9], "--query", "specific"));
        let table = stages.last().unwrap();
        assert!(has(
            table,
            "--scenario",
            "personalised-search-i2=w/report-personalised-search-i2.json"
        ));
        assert_eq!(table.argv.iter().filter(|a| *a == "--scenario").count(), 8);
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let argv = vec!["eval".to_string(), "a b".to_string(), "it's".to_string()];
        assert_eq!(command_line(&argv), r"instructrec eval 'a b' 'it'\''s'");
    }
}
