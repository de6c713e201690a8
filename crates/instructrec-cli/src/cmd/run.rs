//! `instructrec run`: the whole pipeline on one dataset, each stage being the same subcommand a
//! user would type, so the main job and the step-by-step commands can never drift apart. Stages
//! whose output already exists are skipped (training resumes), so a killed run picks up where it
//! stopped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct RunArgs {
    /// The input data: any layout `instructrec data prepare` reads.
    #[arg(long, default_value = "../shared/datasets/amazon-games")]
    input: PathBuf,
    /// Working directory: prepared data, instructions, model, reports.
    #[arg(long, default_value = "runs/amazon-games")]
    work: PathBuf,
    /// Wall-clock budget of sequence pre-training (e.g. 20m; 0 skips it); a rerun resumes an
    /// unfinished pre-training and skips a finished one.
    #[arg(long, default_value = "20m")]
    pretrain_budget: String,
    /// Wall-clock budget of instruction tuning (e.g. 25m, 2h); a rerun resumes the training.
    #[arg(long, default_value = "25m")]
    train_budget: String,
    /// Seed of every stage.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Evaluation users (the same sample for every model).
    #[arg(long, default_value_t = 1000)]
    eval_users: usize,
    /// Where the web page and the API listen at the end.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Stop after the evaluation instead of serving.
    #[arg(long)]
    no_serve: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let prepared = args.work.join("prepared");
    let instructions = args.work.join("instructions");
    let model = args.work.join("model");
    let report = args.work.join("report-sequential");
    let seed = args.seed.to_string();
    std::fs::create_dir_all(&args.work)
        .with_context(|| format!("creating {}", args.work.display()))?;

    if prepared.join("manifest.json").exists() {
        tracing::info!("{} exists: not preparing again", prepared.display());
        stage(&["data", "stats", s(&prepared)])?;
    } else {
        stage(&[
            "data",
            "prepare",
            "--input",
            s(&args.input),
            "--out",
            s(&prepared),
            "--seed",
            &seed,
        ])?;
    }

    if instructions.join("stats.json").exists() {
        tracing::info!("{} exists: not building again", instructions.display());
    } else {
        stage(&[
            "instructions",
            "build",
            "--data",
            s(&prepared),
            "--out",
            s(&instructions),
            "--seed",
            &seed,
            "--eval-users",
            &args.eval_users.to_string(),
            // Two training targets per user: more distinct examples than the budget can repeat.
            "--per-user",
            "2",
        ])?;
    }

    // Sequence continuation first: the model's item tokens learn who buys what after what
    // from several next-item targets per example, which instruction lines (one target each)
    // teach far more slowly.
    let pretrained = args.work.join("pretrained");
    let init_dir = pretrained.join("best");
    let pretrain = args.pretrain_budget.trim() != "0";
    if pretrain && init_dir.join("config.json").exists() {
        tracing::info!("{} exists: not pre-training again", init_dir.display());
    } else if pretrain {
        stage(&[
            "pretrain",
            "--objective",
            "continuation",
            "--items",
            s(&prepared),
            "--preset",
            "compact",
            "--item-tokens",
            // The tokenizer must know the instructions' words, not only the titles.
            "--tokenizer-corpus",
            s(&instructions.join("train.jsonl")),
            "--copies",
            "4",
            "--batch-size",
            "32",
            "--lr",
            "2e-3",
            "--epochs",
            "1",
            "--out",
            s(&pretrained),
            "--resume",
            "--time-budget",
            &args.pretrain_budget,
            "--seed",
            &seed,
        ])?;
    }
    let start: &[&str] = if pretrain {
        &["--init", s(&init_dir)]
    } else {
        &["--preset", "compact", "--item-tokens"]
    };

    // The budget goes to the scenario the report measures (history-based reranking, P1 x T3);
    // training on every instruction type is `instructrec train` without --preference/--task.
    let (train_lines, valid_lines) = (
        instructions.join("train.jsonl"),
        instructions.join("validation.jsonl"),
    );
    let mut train = vec![
        "train",
        "--train",
        s(&train_lines),
        "--preference",
        "P1",
        "--task",
        "T3",
        // Chain-of-thought targets put the item after the reasoning, beyond --max-target-len.
        "--strategy",
        "plain",
        "--lr",
        "2e-3",
        "--valid",
        s(&valid_lines),
        "--items",
        s(&prepared),
        "--rank-sample",
        "200",
        "--valid-sample",
        "200",
        "--eval-every",
        "500",
        "--out",
        s(&model),
        "--resume",
        "--time-budget",
        &args.train_budget,
        "--epochs",
        "2",
        "--max-source-len",
        "320",
        "--max-target-len",
        "40",
        "--seed",
        &seed,
    ];
    train.extend_from_slice(start);
    stage(&train)?;

    let best = model.join("best");
    let tuned = if best.join("config.json").exists() {
        best
    } else {
        model.join("last")
    };
    stage(&[
        "eval",
        "--protocol",
        "sequential",
        "--data",
        s(&prepared),
        "--models",
        "popularity,bm25",
        "--instructrec",
        s(&tuned),
        "--instructions",
        s(&instructions),
        "--no-full-ranking",
        "--max-source-len",
        "320",
        "--max-target-len",
        "40",
        // Mean token log-likelihood: summed scores favour short titles, and every run so far
        // ranked better by the mean (docs/training.md).
        "--length-normalise",
        "--out",
        s(&report),
        "--seed",
        &seed,
    ])?;
    println!("report: {}.md", report.display());

    if !args.no_serve {
        stage(&[
            "serve",
            "--model",
            s(&tuned),
            "--data",
            s(&prepared),
            "--addr",
            &args.addr.to_string(),
        ])?;
    }
    Ok(())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Runs one stage exactly as if it had been typed after `instructrec`.
fn stage(argv: &[&str]) -> anyhow::Result<()> {
    println!("\n$ instructrec {}", argv.join(" "));
    crate::execute(argv)
}
