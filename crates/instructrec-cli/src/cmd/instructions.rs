//! `instructrec instructions build | show | bench`: turn a prepared dataset into instruction
//! files, print filled templates for one user, and time a full build.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use instructrec_data::UserRef;
use instructrec_instructions::teacher::TeacherSource;
use instructrec_instructions::{BuildConfig, BuildInputs, EvalUsers};

#[derive(Subcommand)]
pub enum InstructionsCommand {
    /// Write train.jsonl, validation.jsonl, test.jsonl and stats.json; print the statistics.
    Build {
        #[command(flatten)]
        common: CommonArgs,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print every template (or one) filled for one user.
    Show {
        #[command(flatten)]
        common: CommonArgs,
        /// The user's id in the source data, or `#N` for the dense id N.
        #[arg(long)]
        user: UserRef,
        /// Only this template id.
        #[arg(long)]
        template: Option<String>,
    },
    /// Build into a temporary directory and print the time of each phase (target: a full
    /// amazon-games build in under a minute).
    Bench {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TeacherKind {
    /// Deterministic fills from item metadata; no network.
    Offline,
    /// An OpenAI-compatible chat-completions service (OPENAI_BASE_URL, OPENAI_API_KEY,
    /// INSTRUCTREC_TEACHER_MODEL, or --teacher-config), cached on disk.
    Openai,
}

#[derive(Args)]
pub struct CommonArgs {
    /// A prepared directory (`instructrec data prepare`).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "offline")]
    teacher: TeacherKind,
    /// TOML file for the OpenAI-compatible teacher (base_url, model, cache_dir, concurrency,
    /// max_retries, backoff_ms, timeout_s, temperature, max_tokens).
    #[arg(long)]
    teacher_config: Option<PathBuf>,
    /// Answer cache of the OpenAI-compatible teacher when it is configured from the environment.
    #[arg(long, default_value = "teacher-cache")]
    teacher_cache: PathBuf,
    /// Seed of every sampled choice (templates, negatives, display order, offline phrasings).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Training targets per user: the last N items of the train sequence.
    #[arg(long, default_value_t = 1)]
    per_user: usize,
    /// Templates per training target.
    #[arg(long, default_value_t = 3)]
    templates_per_target: usize,
    /// A template file to use instead of the built-in one.
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Token budget of the shown history (tokens counted as words).
    #[arg(long, default_value_t = 200)]
    history_budget: usize,
    /// Candidate list length of training T3 instructions.
    #[arg(long, default_value_t = 10)]
    train_candidates: usize,
    /// Category labels shown after each title in candidate lists (0: titles only); the labels
    /// nearly every item holds are left out.
    #[arg(long, default_value_t = 0)]
    candidate_labels: usize,
    /// Stored candidate set sizes to write evaluation lines for (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    eval_sizes: Vec<usize>,
    /// Evaluation lines for a seeded sample of this many users (the same in both folds), or
    /// "all".
    #[arg(long, default_value = "5000")]
    eval_users: EvalUsers,
}

impl CommonArgs {
    fn load(&self) -> anyhow::Result<BuildInputs> {
        let teacher = match (self.teacher, &self.teacher_config) {
            (TeacherKind::Offline, _) => TeacherSource::Offline,
            (TeacherKind::Openai, Some(path)) => TeacherSource::OpenAiFile(path.clone()),
            (TeacherKind::Openai, None) => TeacherSource::OpenAiEnv {
                cache: self.teacher_cache.clone(),
            },
        };
        let config = BuildConfig {
            seed: self.seed,
            per_user: self.per_user,
            templates_per_target: self.templates_per_target,
            history_budget: self.history_budget,
            train_candidates: self.train_candidates,
            candidate_labels: self.candidate_labels,
            eval_sizes: self.eval_sizes.clone(),
            eval_users: self.eval_users.0,
        };
        let templates = self.templates.as_deref();
        Ok(BuildInputs::open(&self.data, templates, &teacher, config)?)
    }
}

pub fn run(command: InstructionsCommand) -> anyhow::Result<()> {
    match command {
        InstructionsCommand::Build { common, out } => {
            build(&common, &out)?;
        }
        InstructionsCommand::Bench { common } => {
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let seconds = build(&common, dir.path())?;
            println!(
                "full build: {seconds:.2} s (load + plan + teacher + render + write; target < 60 s)"
            );
        }
        InstructionsCommand::Show {
            common,
            user,
            template,
        } => show(&common, &user, template.as_deref())?,
    }
    Ok(())
}

/// Builds and writes; returns the total seconds including loading.
fn build(common: &CommonArgs, out: &Path) -> anyhow::Result<f64> {
    let start = Instant::now();
    let l = common.load()?;
    let loaded = start.elapsed().as_secs_f64();
    let set = l.builder()?.build()?;
    let written = Instant::now();
    set.write(out)?;
    let write = written.elapsed().as_secs_f64();
    print!("{}", set.stats.table());
    println!("seconds: load {loaded:.2}, write {write:.2}");
    println!("wrote {}", out.display());
    Ok(start.elapsed().as_secs_f64())
}

fn show(common: &CommonArgs, user: &UserRef, template: Option<&str>) -> anyhow::Result<()> {
    let l = common.load()?;
    let user = l.prepared.resolve_user(user).map_err(anyhow::Error::msg)?;
    for shown in l.builder()?.show(user, template)? {
        println!("{shown}");
    }
    Ok(())
}
