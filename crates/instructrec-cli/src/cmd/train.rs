//! `instructrec train`: instruction tuning, with validation HR@1 from `instructrec-eval`, scored
//! as its reports score.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use instructrec_data::Prepared;
use instructrec_eval::validation::RankValidation;
use instructrec_eval::Normalisation;
use instructrec_instructions::{
    IntentionKind, LineFilter, LineWeight, PreferenceKind, Strategy, TaskForm,
};
use instructrec_train::session::Tuning;
use instructrec_train::trainer::ValidationError;
use instructrec_train::{Seq2Seq, TokenLimits};

use super::setup::Common;

#[derive(Args)]
pub struct TrainArgs {
    /// Instruction JSONL (fields `instruction` and `target`).
    #[arg(long)]
    train: PathBuf,
    /// Train only on lines with these preferences (P0, P1, P2; comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    preference: Vec<PreferenceKind>,
    /// Train only on lines with these intentions (I0 none, I1 vague, I2 specific;
    /// comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    intention: Vec<IntentionKind>,
    /// Leave out lines with these intentions (e.g. I1, to hold out personalised search with
    /// vague intentions; comma-separated). Recorded in the checkpoints.
    #[arg(long, value_delimiter = ',')]
    without_intention: Vec<IntentionKind>,
    /// Train only on lines with these task forms (T0 pointwise, T1 pairwise, T2 matching,
    /// T3 reranking; comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    task: Vec<TaskForm>,
    /// Train only on lines made with these diversity strategies (plain, reversed, tied, chain;
    /// comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    strategy: Vec<Strategy>,
    /// The mixture: how often each kept line is used per epoch, by label (comma-separated
    /// LABEL=WEIGHT, e.g. T3=2,T0=0.5; a line's weight is the product of its labels' weights,
    /// 1 for unlisted labels; fractions keep a seeded share of the lines). Default: every line
    /// once.
    #[arg(long, value_delimiter = ',')]
    weights: Vec<LineWeight>,
    /// Instruction JSONL for validation: the validation loss on a sample of its lines, and with
    /// --data HR@1 on its reranking lines, which then picks OUT/best.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Prepared dataset of the instructions: enables HR@1 on reranking lines of --valid.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Reranking validation lines sampled for HR@1.
    #[arg(long, default_value_t = 200)]
    rank_sample: usize,
    /// Validation lines sampled for the validation loss.
    #[arg(long, default_value_t = 2000)]
    valid_sample: usize,
    /// Score HR@1's candidates by their mean token log-likelihood instead of the sum, as
    /// `eval --length-normalise` does (removes the sum's preference for short titles).
    #[arg(long)]
    length_normalise: bool,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let prepared = args.data.as_deref().map(Prepared::load).transpose()?;
    let limits = TokenLimits {
        source: args.common.max_source_len,
        target: args.common.max_target_len,
    };
    let normalisation = Normalisation::length_normalised(args.length_normalise);
    let lines = args.valid.as_deref().zip(prepared.as_ref());
    let sample = (args.rank_sample, args.common.seed);
    let validation = RankValidation::sample(lines, sample, (limits, normalisation))?;
    let mut metric = |m: &Seq2Seq| -> std::result::Result<f64, ValidationError> {
        Ok(validation.hit_rate_at_1(m)?)
    };
    let tuning = Tuning {
        train: &args.train,
        lines: LineFilter {
            preferences: args.preference,
            intentions: args.intention,
            without_intentions: args.without_intention,
            tasks: args.task,
            strategies: args.strategy,
            weights: args.weights,
        },
        valid: args.valid.as_deref(),
        valid_sample: args.valid_sample,
        prepared: prepared.as_ref(),
    };
    let metric = (!validation.cases.is_empty()).then_some(&mut metric as _);
    println!("{}", args.common.setup().tune(&tuning, metric)?);
    Ok(())
}
