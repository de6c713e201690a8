//! `instructrec data prepare | stats | bench`: import a dataset into the canonical prepared
//! directory, describe prepared directories, and time preparation.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use instructrec_data::{prepare, DataError, Format, ImportSource, PrepareOptions, StatsTable};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Import, filter (untitled items, k-core), split and draw candidate lists; write a
    /// prepared directory.
    Prepare {
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        options: OptionArgs,
        /// The prepared directory to write (replaced atomically if it holds an older one).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print #users, #items, #interactions, sparsity and average sequence length of prepared
    /// directories.
    Stats {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Prepare into a temporary directory several times and print the wall time of each phase.
    Bench {
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        options: OptionArgs,
        /// How many times to prepare.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
    },
}

#[derive(Args)]
pub struct InputArgs {
    /// A dataset directory (amazon-games bundle, P5 files, RecBole atomic files, or Amazon 2018
    /// reviews + meta_* files).
    #[arg(long, required_unless_present_all = ["reviews", "meta"])]
    input: Option<PathBuf>,
    /// Input layout: amazon-games, p5, recbole or amazon2018 (default: detected from the
    /// files present).
    #[arg(long)]
    format: Option<Format>,
    /// Amazon 2018 reviews file (JSON lines, plain or .gz); use with --meta.
    #[arg(long, requires = "meta", conflicts_with = "input")]
    reviews: Option<PathBuf>,
    /// Amazon 2018 metadata file (JSON lines, plain or .gz); use with --reviews.
    #[arg(long, requires = "reviews", conflicts_with = "input")]
    meta: Option<PathBuf>,
    /// A feedback log written by `serve --feedback-log`: its `liked` and `bought` events are
    /// added as interactions (matched by the source's user and item ids; events for ids the
    /// source lacks are counted and reported).
    #[arg(long, value_name = "FILE")]
    feedback: Option<PathBuf>,
}

impl InputArgs {
    fn source(&self) -> Result<ImportSource, DataError> {
        let amazon2018 = self.reviews.clone().zip(self.meta.clone());
        let source = ImportSource::new(self.input.clone(), self.format, amazon2018)?;
        Ok(match &self.feedback {
            Some(log) => source.with_feedback(log.clone()),
            None => source,
        })
    }
}

#[derive(Args)]
pub struct OptionArgs {
    /// Iterative k-core: users and items keep at least k interactions.
    #[arg(long, default_value_t = 5)]
    k_core: usize,
    /// Most recent items shown in instruction histories (the full sequence is kept).
    #[arg(long, default_value_t = 20)]
    history_cap: usize,
    /// Seed of the negatives and the item split.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Candidate list sizes (1 positive + size-1 negatives), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    candidates: Vec<usize>,
    /// Keep items without a title, titled by their original id.
    #[arg(long)]
    keep_untitled: bool,
}

impl OptionArgs {
    fn options(&self) -> PrepareOptions {
        PrepareOptions {
            k_core: self.k_core,
            history_cap: self.history_cap,
            seed: self.seed,
            candidate_sizes: self.candidates.clone(),
            keep_untitled: self.keep_untitled,
            ..PrepareOptions::default()
        }
    }
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Prepare {
            input,
            options,
            out,
        } => {
            let source = input.source()?;
            let spinner = ProgressBar::new_spinner().with_message("preparing");
            spinner.enable_steady_tick(Duration::from_millis(100));
            let (prepared, report) = prepare(&source, &options.options())?;
            spinner.set_message("writing");
            prepared.save(&out)?;
            spinner.finish_and_clear();
            print!("{report}");
            println!("written to {}", out.display());
            Ok(())
        }
        DataCommand::Stats { dirs } => {
            print!("{}", StatsTable::of_dirs(&dirs)?);
            Ok(())
        }
        DataCommand::Bench {
            input,
            options,
            runs,
        } => bench(&input.source()?, &options.options(), runs),
    }
}

fn bench(source: &ImportSource, options: &PrepareOptions, runs: u64) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let bar = ProgressBar::new(runs).with_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} runs {elapsed}",
    )?);
    let result = instructrec_data::bench(source, options, runs as usize, scratch.path(), || {
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    print!("{result}");
    Ok(())
}
