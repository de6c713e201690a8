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
    /// Wall-clock cap of next-item pre-training in short prompts (e.g. 45m); on 2 free cores it
    /// ends first, after --pretrain-steps. A rerun resumes an unfinished pre-training; a
    /// finished one stops at once.
    #[arg(long, default_value = "75m")]
    pretrain_budget: String,
    /// Steps of next-item pre-training in short prompts (64 examples each; 4,600 is one pass
    /// over amazon-games' training positions, about 56 minutes on 2 cores).
    #[arg(long, default_value_t = 4600)]
    pretrain_steps: u64,
    /// Wall-clock cap of next-item pre-training in the templates' words.
    #[arg(long, default_value = "40m")]
    worded_budget: String,
    /// Steps of next-item pre-training in the templates' words (64 examples each; 1,000 took
    /// 29 minutes on 2 cores, while tests were compiled beside it).
    #[arg(long, default_value_t = 1000)]
    worded_steps: u64,
    /// Wall-clock cap of instruction tuning (e.g. 25m, 2h); it normally ends first, after
    /// --train-steps. A rerun resumes the training.
    #[arg(long, default_value = "25m")]
    train_budget: String,
    /// Steps of instruction tuning (64 lines each). Tuning starts by validating the
    /// pre-trained weights, so its `best/` is never worse than they are on validation.
    #[arg(long, default_value_t = 200)]
    train_steps: u64,
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
            // About the last five purchases: short prompts are what a model trained from
            // scratch in minutes learns to read (docs/training.md).
            "--history-budget",
            "40",
        ])?;
    }

    // Next-item choice at every position of the training sequences, one pass (one copy per
    // position), with the instructions' history budget; `from` and `schedule` say the rest.
    let next_item = |from: &[&str], schedule: &[&str], out: &Path, budget: &str| {
        let mut argv = vec![
            "pretrain",
            "--objective",
            "next-item",
            "--data",
            s(&prepared),
        ];
        argv.extend(from);
        argv.extend(schedule);
        argv.extend([
            "--history-budget",
            "40",
            "--copies",
            "1",
            "--valid-fraction",
            "0.005",
            "--batch-size",
            "64",
            // Relative steps: what made a randomly initialised T5 read its prompt at all.
            "--relative-steps",
            "--epochs",
            "1",
            "--out",
            s(out),
            "--resume",
            "--time-budget",
            budget,
            "--seed",
            &seed,
        ]);
        stage(&argv)
    };

    // First in a few words of its own: 300,000 short prompts teach a randomly initialised T5 to
    // read its prompt and the item tokens who buys what after what; the instruction lines
    // alone (one per user and template, with the template's words) never got it there
    // (docs/training.md).
    let short = args.work.join("pretrained").join("short");
    let corpus = instructions.join("train.jsonl");
    next_item(
        &[
            "--preset",
            "compact",
            "--item-tokens",
            // Each item token is a free row plus its title's pieces, which start it off (and
            // keep it) close to the items that share its words (docs/training.md).
            "--item-tokens-from-pieces",
            "--compose-item-tokens",
            // The tokenizer must know the instructions' words, not only the titles.
            "--tokenizer-corpus",
            s(&corpus),
            "--wording",
            "compact",
        ],
        &[
            "--lr",
            "2e-2",
            "--max-steps",
            &args.pretrain_steps.to_string(),
            "--eval-every",
            "1000",
        ],
        &short,
        &args.pretrain_budget,
    )?;

    // The same task again in the reranking templates' words, from that checkpoint: the model
    // that reads the short prompts starts at a loss of 11.8 on the templates' words, and these
    // examples (every position, not two per user) bring it to its short-prompt level within
    // 250 steps (docs/training.md). Four times longer prompts make each step about 2.6 times
    // dearer, hence the short prompts first.
    let worded = args.work.join("pretrained").join("templates");
    let short_best = short.join("best");
    next_item(
        &[
            "--init",
            s(&short_best),
            "--compose-item-tokens",
            "--wording",
            "templates",
        ],
        &[
            "--lr",
            "5e-3",
            "--warmup",
            "30",
            "--max-steps",
            &args.worded_steps.to_string(),
            "--eval-every",
            "250",
        ],
        &worded,
        &args.worded_budget,
    )?;

    // Then the instructions, with their template words. The budget goes to the scenario the
    // report measures (history-based reranking, P1 x T3); training on every instruction type
    // is `instructrec train` without --preference/--task.
    let (train_lines, valid_lines) = (
        instructions.join("train.jsonl"),
        instructions.join("validation.jsonl"),
    );
    let train_steps = args.train_steps.to_string();
    stage(&[
        "train",
        "--init",
        s(&worded.join("best")),
        "--compose-item-tokens",
        "--train",
        s(&train_lines),
        "--preference",
        "P1",
        "--task",
        "T3",
        // Chain-of-thought targets put the item after the reasoning, beyond --max-target-len.
        "--strategy",
        "plain",
        "--batch-size",
        "64",
        "--relative-steps",
        "--lr",
        "5e-3",
        "--warmup",
        "30",
        "--valid",
        s(&valid_lines),
        "--data",
        s(&prepared),
        "--rank-sample",
        "200",
        "--valid-sample",
        "200",
        "--eval-every",
        "100",
        "--out",
        s(&model),
        "--resume",
        "--time-budget",
        &args.train_budget,
        "--epochs",
        "1",
        "--max-steps",
        &train_steps,
        "--max-source-len",
        "320",
        "--max-target-len",
        "40",
        "--seed",
        &seed,
    ])?;

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
