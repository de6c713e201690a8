//! `instructrec`: a thin front end over the library crates. Each subcommand lives in its own
//! module under `cmd/` and only parses arguments, calls the library and prints.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "instructrec",
    version,
    about = "Recommendation as instruction following"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job, as a recipe says: prepare the data, build instructions, pre-train and tune
    /// the model, evaluate it against baselines, then serve the web page.
    Run(cmd::run::RunArgs),
    /// Import, filter, split and describe datasets.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Fit baselines and evaluate them under a protocol; write a report.
    Eval(cmd::eval::EvalArgs),
    /// One table of every scenario, from the reports `eval` wrote (one per scenario).
    Scenarios(cmd::scenarios::ScenariosArgs),
    /// Build instruction files from a prepared dataset; show filled templates.
    #[command(subcommand)]
    Instructions(cmd::instructions::InstructionsCommand),
    /// Export instructions and candidate lists for transformers' Seq2SeqTrainer.
    Export(cmd::export::ExportArgs),
    /// Recommend with a tuned model: once (--instruction, --json) or in an interactive loop.
    Recommend(cmd::recommend::RecommendArgs),
    /// Serve the HTTP API and the web page.
    Serve(cmd::serve::ServeArgs),
    /// Load-test the server on loopback: latency percentiles and errors.
    ServeBench(cmd::serve::BenchArgs),
    /// Instruction-tune a seq2seq model (new from a preset, or from --init); resumable.
    Train(cmd::train::TrainArgs),
    /// Pre-training before instruction tuning (span corruption, sequence continuation,
    /// next-item choice); resumable.
    Pretrain(cmd::pretrain::PretrainArgs),
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(a) => cmd::run::run(a),
        Command::Data(c) => cmd::data::run(c),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Scenarios(a) => cmd::scenarios::run(a),
        Command::Instructions(c) => cmd::instructions::run(c),
        Command::Export(a) => cmd::export::run(a),
        Command::Recommend(a) => cmd::recommend::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::ServeBench(a) => cmd::serve::bench(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Pretrain(a) => cmd::pretrain::run(a),
    }
}

/// Parses `argv` (without the program name) as a command line.
fn parse(argv: &[String]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("instructrec").chain(argv.iter().map(String::as_str)))
}

/// Parses `argv` (without the program name) as a command line and runs it.
pub(crate) fn execute(argv: &[String]) -> anyhow::Result<()> {
    dispatch(parse(argv)?.command)
}

fn main() -> std::process::ExitCode {
    // Before any thread exists: candle's elementwise pool busy-waits and, on 2 cores, costs
    // training and scoring about a factor of 3 (docs/performance.md).
    instructrec_model::cpu::serial_elementwise_ops();
    instructrec_model::cpu::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a log file or CI's output.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = dispatch(Cli::parse().command);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: many errors already include their cause's text
/// (an I/O error's path and reason), which `{:#}` would print again.
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !out.contains(&cause) {
            let separator = if out.is_empty() { "" } else { ": " };
            out = format!("{out}{separator}{cause}");
        }
    }
    out
}
