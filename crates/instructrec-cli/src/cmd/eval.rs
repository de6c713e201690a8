//! `instructrec eval`: fit (or load) baselines and evaluate them under a protocol, writing a
//! report (JSON, markdown, SVG).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use instructrec_baselines::{evaluate_all, Baseline, FitOptions, FullRankingMatcher};
use instructrec_data::Fold;
use instructrec_eval::experiment::{Asking, Experiment, ExperimentSpec, InstructionScoring};
use instructrec_eval::external::CandidateIds;
use instructrec_eval::{HeldOutStage, Normalisation, Protocol, QueryKind};
use instructrec_model::TokenLimits;

#[derive(Args)]
pub struct EvalArgs {
    /// Protocol: sequential, product-search, personalised-search, tournament (1+99 with the
    /// query of --query, in one pass and as 10 groups), hard-negatives (1+9 lists mined by the
    /// two-tower model, stored in <out>.candidates.jsonl), zero-shot (--instructrec tuned on
    /// another dataset) and held-out (the personalised-search I1 cases, one --stage per
    /// instruction model tuned without I1 lines).
    #[arg(long)]
    protocol: Protocol,
    /// A prepared directory (from `instructrec data prepare`).
    #[arg(long)]
    data: PathBuf,
    /// Comma-separated models: popularity, bm25, sasrec, bert4rec, dssm, tem (these two only
    /// under search protocols), two-tower.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "popularity,bm25,sasrec,bert4rec"
    )]
    models: Vec<Baseline>,
    /// Report path without extension: writes <out>.json, <out>.md and <out>.svg.
    #[arg(long)]
    out: PathBuf,
    /// Seed of everything sampled in training (initialisation, negatives, masks, batch order).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Saves trained weights here and reuses them when configuration and dataset match.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Also save the fitted two-tower model in this directory, for `serve --matcher two-tower
    /// --two-tower DIR` on the same --data (replaces only an earlier such save).
    #[arg(long, value_name = "DIR")]
    save_two_tower: Option<PathBuf>,
    /// Per-model training time budget, e.g. 90s, 20m, 1h 30m (overrides each model's default).
    #[arg(long, value_parser = super::duration)]
    time_budget: Option<Duration>,
    /// Most training epochs of the neural baselines (overrides each model's default).
    #[arg(long)]
    max_epochs: Option<usize>,
    /// Validate on every n-th validation user during training (1 = all).
    #[arg(long)]
    validation_stride: Option<usize>,
    /// Cases scored per batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// CPU threads for tensor ops (sets RAYON_NUM_THREADS). On a busy 2-core machine 1 thread
    /// was several times faster than 2 for these small models.
    #[arg(long)]
    threads: Option<usize>,
    /// Skip full-catalogue ranking.
    #[arg(long)]
    no_full_ranking: bool,
    /// Full ranking: what retrieves the top --rerank-depth items of the catalogue that the
    /// instruction model reranks: a baseline (fitted if not among --models), or `generation`,
    /// the instruction model's own T2 answer (the method's matching step).
    #[arg(long, default_value = "bm25")]
    matcher: FullRankingMatcher,
    /// Full ranking: how many of the matcher's items the instruction model reranks.
    #[arg(long, default_value_t = 20)]
    rerank_depth: usize,
    /// An instruction-tuned model directory (config.json, model.safetensors, tokenizer.json) to
    /// evaluate beside the baselines; needs --instructions.
    #[arg(long, requires = "instructions")]
    instructrec: Option<PathBuf>,
    /// Instructions built from the same prepared dataset (`instructrec instructions build`):
    /// the model reads its test instructions from there, and every model is evaluated on the
    /// users those instructions cover.
    #[arg(long)]
    instructions: Option<PathBuf>,
    /// Longest instruction and answer, in tokens, for the instruction-tuned model.
    #[arg(long, default_value_t = 256)]
    max_source_len: usize,
    /// Longest candidate title, in tokens, for the instruction-tuned model.
    #[arg(long, default_value_t = 40)]
    max_target_len: usize,
    /// Score the instruction-tuned model's candidates by their mean token log-likelihood
    /// instead of the sum (removes the sum's preference for short titles).
    #[arg(long)]
    length_normalise: bool,
    /// The task form the instruction-tuned model is asked in: T3 (the list; the title it
    /// answers), T2 (the need without the list; each candidate's title as the answer), T0
    /// (a yes/no question per candidate, scored by its log odds) or T3+T2 (see --with-t2).
    /// `T2>` before T3 or T3+T2 first ranks a list longer than the tuned lists by T2 and asks
    /// only its best (as many as the tuned lists hold) with the list, as serving matches, then
    /// reranks.
    #[arg(long, default_value = "T3")]
    task: Asking,
    /// With --task T3: also ask each case without the list (T2), and rank by both forms, each
    /// one's scores standardised within the list, then summed (rows `instructrec-t3t2...`).
    #[arg(long, requires = "instructrec")]
    with_t2: bool,
    /// Choose how the instruction-tuned model is asked, per list setting, on the validation
    /// fold: it is scored each of these ways (e.g. T3,T2,T3+T2) on that setting's validation
    /// lists first, and the test fold is asked the way with the highest validation HR@1 (rows
    /// `instructrec-chosen...`; the report records every way's validation figures).
    #[arg(
        long,
        value_delimiter = ',',
        requires = "instructrec",
        conflicts_with_all = ["task", "with_t2"]
    )]
    choose_form: Vec<Asking>,
    /// Which held-out item the cases ask for: test (for reports) or validation (the validation
    /// lists and instruction lines, for choosing how to ask the model without the test cases).
    #[arg(long, default_value = "test")]
    fold: Fold,
    /// Also score the instruction-tuned model with each case's prompt taken from another case
    /// (a seeded cycle; every list setting, not the full ranking): the row `<model>-permuted`,
    /// which shows whether the model reads what it is asked.
    #[arg(long, requires = "instructrec")]
    permuted_prompts: bool,
    /// A label for the --instructrec checkpoint: its rows are named `instructrec-NAME...`
    /// instead of `instructrec...`, so that the reports of several checkpoints on the same
    /// lists can go into one table (`instructrec scenarios`, a scenario given once per report).
    #[arg(long, value_name = "NAME", requires = "instructrec", value_parser = variant_label)]
    variant: Option<String>,
    /// Search protocols: which fill is the query (explicit = P2, vague = I1, specific = I2).
    /// product-search always uses specific; personalised-search and tournament default to vague.
    #[arg(long)]
    query: Option<QueryKind>,
    /// A pretrained sentence encoder directory (all-MiniLM-L6-v2: config.json,
    /// model.safetensors, tokenizer.json) for DSSM and TEM; without it they train their own
    /// word embeddings.
    #[arg(long)]
    text_encoder: Option<PathBuf>,
    /// Search protocols: evaluate only the first N users (by id) of the query lines.
    #[arg(long)]
    max_users: Option<usize>,
    /// Score these candidate lists instead of the stored ones (sequential protocol): JSON lines
    /// `{"user", "positive", "negatives"}` in the ids of --candidate-ids. Lines that cannot be
    /// scored are dropped and counted by reason; the file's checksum goes into the report.
    /// Under hard-negatives: the lists an earlier run mined (its <out>.candidates.jsonl), so
    /// that another checkpoint is scored on them without fitting the miner again.
    #[arg(long)]
    candidates: Option<PathBuf>,
    /// The ids of --candidates: raw (the source data's user and item ids) or prepared.
    #[arg(long, default_value = "raw", requires = "candidates")]
    candidate_ids: CandidateIds,
    /// The recipe (TOML) this evaluation belongs to, copied into the report (`instructrec run`
    /// passes its own).
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// held-out: an instruction model of one tuning stage, NAME=DIR (repeat, in stage order).
    /// Each checkpoint's recorded line filter must rule out I1 lines.
    #[arg(long = "stage", value_name = "NAME=DIR")]
    stages: Vec<HeldOutStage>,
    #[command(flatten)]
    placement: super::PlacementArgs,
}

impl EvalArgs {
    fn spec(&self) -> anyhow::Result<ExperimentSpec> {
        Ok(ExperimentSpec {
            protocol: self.protocol,
            data: self.data.clone(),
            out: self.out.clone(),
            seed: self.seed,
            batch_size: self.batch_size,
            full_ranking: !self.no_full_ranking,
            instructions: self.instructions.clone(),
            query: self.query,
            max_users: self.max_users,
            instruction_model: self.instructrec.clone(),
            stages: self.stages.clone(),
            scoring: InstructionScoring {
                limits: TokenLimits {
                    source: self.max_source_len,
                    target: self.max_target_len,
                },
                normalisation: Normalisation::length_normalised(self.length_normalise),
                asking: Asking {
                    task: self.task.task,
                    with_matching: self.task.with_matching || self.with_t2,
                    shortlist: self.task.shortlist,
                },
                placement: self.placement.placement(),
            },
            command: std::env::args().collect::<Vec<_>>().join(" "),
            recipe: self.recipe.clone(),
            candidates: self.candidates.clone().map(|p| (p, self.candidate_ids)),
            permuted_prompts: self.permuted_prompts,
            generation_matcher: self.matcher == FullRankingMatcher::Generation,
            variant: self.variant.clone(),
            fold: self.fold,
            choose: self.choose_form.clone(),
        })
    }

    fn fit_options(&self, plan: &Experiment) -> FitOptions {
        FitOptions {
            seed: self.seed,
            time_budget_s: self.time_budget.map(|d| d.as_secs_f64()),
            max_epochs: self.max_epochs,
            validation_stride: self.validation_stride,
            checkpoint_dir: self.checkpoint_dir.clone(),
            text_encoder: self.text_encoder.clone(),
            search: plan.search_training().cloned(),
            save_two_tower: self.save_two_tower.clone(),
        }
    }
}

/// A row-name label: letters, digits, '-' and '_', so that names stay one word in tables.
fn variant_label(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: use letters, digits, '-' and '_' (e.g. categories)"
        ))
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        // Read by candle's matmul and rayon's pool when they first start; nothing has yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let mut plan = Experiment::plan(args.spec()?)?;
    let options = args.fit_options(&plan);
    let matcher = (args.matcher, args.rerank_depth);
    evaluate_all(&mut plan, &args.models, matcher, &options)?;
    println!("wrote {}.{{json,md,svg}}", plan.finish()?.display());
    Ok(())
}
