//! `instructrec pretrain`: span corruption on item text, sequence continuation or next-item
//! choice on the users' training sequences, before instruction tuning.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use instructrec_data::Prepared;
use instructrec_instructions::TemplateLibrary;
use instructrec_train::session::{self, Pretraining};

use super::setup::Common;

/// How `pretrain --objective next-item` phrases its examples.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Wording {
    /// "Bought so far: …. Next, one of: …."
    Compact,
    /// The implicit-preference reranking templates (P1, T3, plain) of the template library,
    /// one per example: the words of the tuning and test instructions.
    Templates,
}

/// What `pretrain` teaches before instruction tuning.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Objective {
    /// T5's span corruption on item text (title, categories, brand, features).
    SpanCorruption,
    /// Users' training sequences: the items up to a random cut, then the items after it.
    Continuation,
    /// Users' training sequences at every position: the last few items and a short list of
    /// candidates, the next item hidden among random others; the target is that item.
    NextItem,
}

#[derive(Args)]
pub struct PretrainArgs {
    /// Prepared dataset directory: its item texts or its users' training sequences.
    #[arg(long)]
    data: PathBuf,
    /// What to teach.
    #[arg(long, value_enum, default_value = "span-corruption")]
    objective: Objective,
    /// Examples per item text (span corruption), per user (continuation) or per position
    /// (next-item), each cut or sampled differently.
    #[arg(long, default_value_t = 2)]
    copies: usize,
    /// Span corruption: fraction of each text's tokens masked.
    #[arg(long, default_value_t = 0.15)]
    noise_density: f64,
    /// Span corruption: mean length of a masked span, in tokens.
    #[arg(long, default_value_t = 3.0)]
    mean_span_length: f64,
    /// Fraction of items (span corruption) or users (sequence objectives) kept apart for
    /// validation loss.
    #[arg(long, default_value_t = 0.02)]
    valid_fraction: f64,
    /// Continuation: most items after the cut in one target.
    #[arg(long, default_value_t = 10)]
    max_continuation: usize,
    /// Next-item: most items shown before the position.
    #[arg(long, default_value_t = 20)]
    history_items: usize,
    /// Next-item: word budget of the shown history, counted as `instructions build
    /// --history-budget` counts it (oldest titles dropped first, the newest always kept).
    #[arg(long, default_value_t = 40)]
    history_budget: usize,
    /// Next-item: the phrasing of the examples.
    #[arg(long, value_enum, default_value = "templates")]
    wording: Wording,
    /// Next-item with template wording: a template library (TOML) instead of the built-in one.
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Next-item: candidate list length, the next item included.
    #[arg(long, default_value_t = 10)]
    candidates: usize,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: PretrainArgs) -> Result<()> {
    let prepared = Prepared::load(&args.data)?;
    let library = TemplateLibrary::from_path_or_builtin(args.templates.as_deref())?;
    let objective = match args.objective {
        Objective::SpanCorruption => session::Objective::SpanCorruption {
            noise_density: args.noise_density,
            mean_span_length: args.mean_span_length,
        },
        Objective::Continuation => session::Objective::Continuation {
            max_continuation: args.max_continuation,
        },
        Objective::NextItem => session::Objective::NextItem {
            history_items: args.history_items,
            history_budget: args.history_budget,
            candidates: args.candidates,
            wording: match args.wording {
                Wording::Compact => session::Wording::Compact,
                Wording::Templates => session::Wording::Templates(&library),
            },
        },
    };
    let pretraining = Pretraining {
        objective,
        copies: args.copies,
        valid_fraction: args.valid_fraction,
    };
    println!("{}", args.common.setup().pretrain(&prepared, &pretraining)?);
    Ok(())
}
