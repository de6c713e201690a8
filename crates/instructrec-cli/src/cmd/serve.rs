//! `instructrec serve`: the HTTP API and the web page; `instructrec serve-bench`: a loopback
//! load test of the same server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use instructrec_serve::bench::{self, BenchConfig, SustainedConfig};
use instructrec_serve::{
    default_model_slots, HttpConfig, Matching, Options, Recommender, ServeConfig,
};

/// The tuned model and the catalogue it serves.
#[derive(Args)]
pub struct ModelData {
    /// A model checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// A prepared dataset directory (from `instructrec data prepare`).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub placement: super::PlacementArgs,
    /// Also ask each need without the list (T2) and rank by both forms, each one's scores
    /// standardised over the scored candidates, then summed: the way `eval --choose-form`
    /// picked on the validation fold for the search needs (docs/evaluation.md).
    #[arg(long)]
    pub with_t2: bool,
    /// Category labels after each title in candidate lists: the number the model's
    /// instructions were built with (`instructions build --candidate-labels`).
    #[arg(long, default_value_t = 0)]
    pub candidate_labels: usize,
}

impl ModelData {
    pub fn load(&self) -> anyhow::Result<Recommender> {
        let options = Options {
            placement: self.placement.placement(),
            with_matching: self.with_t2,
            candidate_labels: self.candidate_labels,
            ..Options::default()
        };
        Recommender::load(&self.model, &self.data, options)
    }
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    served: ModelData,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Model calls running at once (default: the number of CPU cores).
    #[arg(long)]
    model_slots: Option<usize>,
    /// Model requests that may wait for a slot; more are answered 503 (default: 4 per slot).
    #[arg(long)]
    queue: Option<usize>,
    /// Longest a request may take once its body is in, waiting for a slot included (503 after;
    /// default 60s).
    #[arg(long, value_parser = super::duration)]
    request_timeout: Option<Duration>,
    /// A host name clients use to reach the server, beside localhost, 127.0.0.1, [::1] and the
    /// bound address (repeatable; `*` allows any). Other Host headers get 403.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
    /// A file holding the bearer token the API requires (else $INSTRUCTREC_TOKEN); required
    /// when --addr is not a loopback address.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// A web origin (e.g. https://shop.example) whose pages may call the API from a browser
    /// (repeatable; `*` allows any). Without it, no CORS headers are sent.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = instructrec_serve::server::parse_origin)]
    cors_origins: Vec<String>,
    /// Append `POST /v1/feedback` events to this JSON-lines file (created if missing); without
    /// it the route answers 404 `not_found`.
    #[arg(long, value_name = "PATH")]
    feedback_log: Option<PathBuf>,
    /// Keep conversation sessions as files in this directory, shared by every replica given
    /// it (behind a load balancer; on several hosts, a shared filesystem), instead of in memory.
    #[arg(long, value_name = "DIR")]
    session_dir: Option<PathBuf>,
    /// The matching stage that retrieves candidates when a request lists none: bm25,
    /// generation (the model writes catalogue titles for the need, its T2 task form), or
    /// two-tower (the model of --two-tower, from the history; requests without one go to bm25).
    #[arg(long, default_value = "bm25")]
    matcher: Matching,
    /// Candidates the matching stage retrieves for the reranker when a request lists none:
    /// deeper finds the next item more often and costs one model pass per 10 (docs/serving.md
    /// has each matcher's recall by depth).
    #[arg(long, default_value_t = Options::default().matched)]
    matched: usize,
    /// The saved two-tower model that `--matcher two-tower` retrieves with: a directory written
    /// by `instructrec eval --models two-tower --save-two-tower DIR` on the same --data.
    #[arg(long, value_name = "DIR")]
    two_tower: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(args.served.model, args.served.data, args.addr);
    config.options.placement = args.served.placement.placement();
    config.options.matching = args.matcher;
    config.options.matched = args.matched;
    config.options.two_tower = args.two_tower;
    config.http = HttpConfig::new(args.model_slots.unwrap_or_else(default_model_slots));
    if let Some(n) = args.queue {
        config.http.queue = n;
    }
    if let Some(t) = args.request_timeout {
        config.http.request_timeout = t;
    }
    config.http.allowed_hosts = args.allow_hosts;
    config.http.token = instructrec_serve::read_token(args.token_file.as_deref())?;
    config.http.cors_origins = args.cors_origins;
    config.feedback_log = args.feedback_log;
    config.session_dir = args.session_dir;
    instructrec_serve::serve(config)
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    served: ModelData,
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
    let rec = Arc::new(args.served.load()?);
    let model_slots = args.model_slots.unwrap_or_else(default_model_slots);
    if let Some(duration) = args.duration {
        let (windows, concurrency, k) = (args.windows, args.concurrency, args.k);
        let report = bench::run_sustained(
            rec,
            SustainedConfig {
                duration,
                windows,
                concurrency,
                k,
                model_slots,
            },
        )?;
        println!("{report}");
        return report.ensure_clean();
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
    report.ensure_clean()
}
