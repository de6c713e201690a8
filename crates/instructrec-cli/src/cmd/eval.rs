//! `instructrec eval`: fit (or load) baselines and evaluate them under a protocol, writing a
//! report (JSON, markdown, SVG).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use instructrec_baselines::{fit, Baseline, FitOptions};
use instructrec_data::{Fold, Prepared};
use instructrec_eval::{evaluate, ModelReport, Protocol, Report, Setting};

#[derive(Args)]
pub struct EvalArgs {
    /// Protocol: sequential (implemented); product-search, personalised-search, hard-negatives,
    /// tournament, held-out and zero-shot are named but refused until their inputs exist.
    #[arg(long)]
    protocol: Protocol,
    /// A prepared directory (from `instructrec data prepare`).
    #[arg(long)]
    data: PathBuf,
    /// Comma-separated models: popularity, bm25, sasrec, bert4rec.
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
    /// Per-model training time budget in seconds (overrides each model's default).
    #[arg(long)]
    time_budget_s: Option<f64>,
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
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        // Read by candle's matmul and rayon's pool when they first start; nothing has yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if let Some(why) = args.protocol.missing() {
        anyhow::bail!(
            "protocol {} ({}) is not implemented: {why}",
            args.protocol,
            args.protocol.scenario()
        );
    }
    let prepared = Prepared::load(&args.data)
        .with_context(|| format!("loading the prepared dataset {}", args.data.display()))?;
    let sizes: Vec<usize> = [10, 100]
        .into_iter()
        .filter(|&s| prepared.candidates(Fold::Test, s).is_some())
        .collect();
    let mut settings: Vec<Setting> = sizes
        .iter()
        .map(|&size| Setting::Sampled { size })
        .collect();
    if !args.no_full_ranking {
        settings.push(Setting::FullRanking);
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let lists: Vec<(Fold, usize)> = sizes.iter().map(|&s| (Fold::Test, s)).collect();
    let mut report = Report::new(&prepared, args.protocol, command, args.seed, &lists)?;
    let options = FitOptions {
        seed: args.seed,
        time_budget_s: args.time_budget_s,
        max_epochs: args.max_epochs,
        validation_stride: args.validation_stride,
        checkpoint_dir: args.checkpoint_dir.clone(),
    };
    for &baseline in &args.models {
        tracing::info!(model = %baseline, "fitting");
        let fitted = fit(baseline, &prepared, &options)?;
        let mut results = Vec::new();
        for &setting in &settings {
            let e = evaluate(
                fitted.scorer.as_ref(),
                &prepared,
                args.protocol,
                Fold::Test,
                setting,
                args.batch_size,
            )?;
            if let Some(e) = e {
                tracing::info!(
                    model = %baseline,
                    %setting,
                    hr1 = e.metrics.hr1,
                    ndcg5 = e.metrics.ndcg5,
                    hr10 = e.metrics.hr10,
                    eval_s = e.eval_wall_s,
                    "evaluated"
                );
                results.push(e);
            }
        }
        report.models.push(ModelReport {
            name: baseline.to_string(),
            config: fitted.config,
            config_hash: fitted.config_hash,
            model_hash: fitted.model_hash,
            train_wall_s: fitted.train_wall_s,
            training: fitted.training,
            loaded_from: fitted.loaded_from.map(|p| p.display().to_string()),
            results,
        });
        // Write after every model so a long run leaves a usable partial report.
        report.write(&args.out)?;
    }
    println!("wrote {}.{{json,md,svg}}", args.out.display());
    Ok(())
}
