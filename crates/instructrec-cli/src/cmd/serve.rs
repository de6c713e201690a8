//! `instructrec serve`: the HTTP API and the web page; `instructrec serve-bench`: a loopback
//! load test of the same server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use instructrec_serve::bench::{self, BenchConfig, SustainedConfig};
use instructrec_serve::{Matching, Options, Recommender, ServeConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// A model checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// A prepared dataset directory (from `instructrec data prepare`).
    #[arg(long)]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Model calls running at once (default: the number of CPU cores).
    #[arg(long)]
    model_slots: Option<usize>,
    /// The matching stage that retrieves candidates when a request lists none: bm25, or
    /// generation (the model writes catalogue titles for the need, its T2 task form).
    #[arg(long, default_value = "bm25")]
    matcher: Matching,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(args.model, args.data, args.addr);
    config.options.matching = args.matcher;
    if let Some(n) = args.model_slots {
        config.model_slots = n;
    }
    instructrec_serve::serve(config)
}

#[derive(Args)]
pub struct BenchArgs {
    /// The model checkpoint directory to serve.
    #[arg(long)]
    model: PathBuf,
    /// The prepared dataset directory it serves.
    #[arg(long)]
    data: PathBuf,
    /// Requests to send.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// No request starts after this long, e.g. 90s, 10m.
    #[arg(long, default_value = "10m", value_parser = super::duration)]
    time_limit: Duration,
    /// Sustained mode: keep the concurrency this long, e.g. 5m (instead of --requests), and
    /// report latency, throughput, errors and resident memory per window.
    #[arg(long, conflicts_with_all = ["requests", "time_limit"], value_parser = super::duration)]
    duration: Option<Duration>,
    /// Reporting windows of the sustained mode.
    #[arg(long, default_value_t = 10, requires = "duration")]
    windows: usize,
    /// Recommendations per request.
    #[arg(short, default_value_t = instructrec_serve::DEFAULT_K)]
    k: usize,
    /// Model calls running at once (default: the number of CPU cores).
    #[arg(long)]
    model_slots: Option<usize>,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let rec = Arc::new(Recommender::load(
        &args.model,
        &args.data,
        Options::default(),
    )?);
    let model_slots = args
        .model_slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    if let Some(duration) = args.duration {
        let report = bench::run_sustained(
            rec,
            SustainedConfig {
                duration,
                windows: args.windows,
                concurrency: args.concurrency,
                k: args.k,
                model_slots,
            },
        )?;
        println!("{report}");
        if report.errors() > 0 {
            anyhow::bail!("the sustained load test had {} errors", report.errors());
        }
        return Ok(());
    }
    let config = BenchConfig {
        requests: args.requests,
        concurrency: args.concurrency,
        time_limit: args.time_limit,
        k: args.k,
        model_slots,
    };
    let report = bench::run(rec, config)?;
    println!("{report}");
    if report.errors > 0 || report.stopped_by_time_limit {
        anyhow::bail!(
            "the load test had {} errors and completed {} of {} requests",
            report.errors,
            report.completed,
            report.requested
        );
    }
    Ok(())
}
