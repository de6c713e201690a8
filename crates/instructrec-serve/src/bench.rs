//! A loopback load test: the server runs in-process on an ephemeral port and a pool of clients
//! sends recommendation requests (a fixed mix of scenarios over many users) until the count or
//! the time limit is reached. Reports latency percentiles and every failure.
//!
//! The sustained mode ([`run_sustained`]) keeps the concurrency for a fixed duration instead and
//! reports each tenth (or other fraction) of it separately: latency, throughput, errors and the
//! process's resident memory, then the last window against the first, so that a server whose
//! latency or memory creeps up under load shows it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::http::{bind, router, AppState};
use crate::recommender::Recommender;
use crate::request::{RecommendRequest, UserRef};
use crate::server::{serve_on, HttpConfig};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchConfig {
    pub requests: usize,
    pub concurrency: usize,
    /// No request is started after this much time; the run then counts as incomplete.
    pub time_limit: Duration,
    pub k: usize,
    pub model_slots: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub requested: usize,
    pub completed: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub concurrency: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub wall_s: f64,
    pub requests_per_s: f64,
    pub stopped_by_time_limit: bool,
}

impl BenchReport {
    /// An error when any request failed or the time limit cut the test short.
    pub fn ensure_clean(&self) -> anyhow::Result<()> {
        if self.errors > 0 || self.stopped_by_time_limit {
            anyhow::bail!(
                "the load test had {} errors and completed {} of {} requests",
                self.errors,
                self.completed,
                self.requested
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} requests at concurrency {} in {:.1} s ({:.1} req/s): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} errors{}",
            self.completed,
            self.requested,
            self.concurrency,
            self.wall_s,
            self.requests_per_s,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.errors,
            if self.stopped_by_time_limit { "; stopped by the time limit" } else { "" }
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "; first error: {e}")?;
        }
        Ok(())
    }
}

const NEEDS: [&str; 6] = [
    "a gift for my son who loves racing games",
    "something relaxing to play in the evening",
    "a game to play with friends on the couch",
    "a scary story-driven game",
    "an accessory for my console",
    "a classic I can play on a long train ride",
];

/// Request `i` of the mix: the user's history alone, history with a vague need, a vague need
/// alone, and a category query alone (from an item's category path).
fn request(rec: &Recommender, i: usize, k: usize) -> RecommendRequest {
    let d = &rec.prepared().dataset;
    // Strides coprime with typical sizes spread the requests over users and items.
    let user = &d.users[(i * 7919) % d.users.len()];
    let item = &d.items[(i * 104_729) % d.items.len()];
    let need = NEEDS[i % NEEDS.len()].to_string();
    let user = Some(UserRef::Name(user.original_id.clone()));
    let base = RecommendRequest {
        k: Some(k),
        ..RecommendRequest::default()
    };
    match i % 4 {
        0 => RecommendRequest { user, ..base },
        1 => RecommendRequest {
            user,
            intention: Some(need),
            ..base
        },
        2 => RecommendRequest {
            intention: Some(need),
            ..base
        },
        _ if !item.categories.is_empty() => RecommendRequest {
            intention: Some(item.categories.join(", ")),
            ..base
        },
        _ => RecommendRequest { user, ..base },
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the load test on its own runtime.
pub fn run(rec: Arc<Recommender>, config: BenchConfig) -> anyhow::Result<BenchReport> {
    tokio::runtime::Runtime::new()?.block_on(run_async(rec, config))
}

/// Serves `rec` in-process on an ephemeral loopback port; returns the recommend URL, the server
/// task and a client pooled for `concurrency` connections.
async fn start(
    rec: Arc<Recommender>,
    concurrency: usize,
    model_slots: usize,
) -> anyhow::Result<(
    String,
    tokio::task::JoinHandle<std::io::Result<()>>,
    reqwest::Client,
)> {
    let listener = bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let mut config = HttpConfig::new(model_slots);
    // The bench's clients wait for their answers by design: queue them all rather than have
    // the server refuse the ones beyond its default queue.
    config.queue = config.queue.max(concurrency);
    config.max_connections = config.max_connections.max(concurrency + 1);
    let app = router(AppState::with_config(rec, &config));
    let server =
        tokio::spawn(async move { serve_on(listener, app, &config, std::future::pending()).await });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    Ok((format!("http://{addr}/v1/recommend"), server, client))
}

/// One request, read to the end; an error is the status and body, or the transport error.
async fn send(client: &reqwest::Client, url: &str, body: &RecommendRequest) -> Result<(), String> {
    match client.post(url).json(body).send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
        Ok(r) => {
            let status = r.status();
            Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn run_async(rec: Arc<Recommender>, config: BenchConfig) -> anyhow::Result<BenchReport> {
    let (url, server, client) = start(rec.clone(), config.concurrency, config.model_slots).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(config.requests)));
    let errors = Arc::new(Mutex::new((0usize, None::<String>)));
    let bar = ProgressBar::new(config.requests as u64).with_style(
        ProgressStyle::with_template("load test {bar:40} {pos}/{len} {per_sec} eta {eta}")
            .map_err(|e| anyhow::anyhow!("progress template: {e}"))?,
    );
    let started = Instant::now();
    let deadline = started + config.time_limit;
    let mut workers = Vec::new();
    for _ in 0..config.concurrency.max(1) {
        let (rec, client, url, next, latencies, errors, bar) = (
            rec.clone(),
            client.clone(),
            url.clone(),
            next.clone(),
            latencies.clone(),
            errors.clone(),
            bar.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= config.requests || Instant::now() >= deadline {
                    return;
                }
                let body = request(&rec, i, config.k);
                let t = Instant::now();
                let outcome = send(&client, &url, &body).await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match outcome {
                    Ok(()) => latencies.lock().unwrap_or_else(|e| e.into_inner()).push(ms),
                    Err(e) => {
                        let mut errs = errors.lock().unwrap_or_else(|e| e.into_inner());
                        errs.0 += 1;
                        errs.1.get_or_insert(format!("request {i}: {e}"));
                    }
                }
                bar.inc(1);
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    bar.finish_and_clear();
    let wall_s = started.elapsed().as_secs_f64();
    server.abort();

    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    lat.sort_by(f64::total_cmp);
    let (errors, first_error) = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let completed = lat.len() + errors;
    Ok(BenchReport {
        requested: config.requests,
        completed,
        errors,
        first_error,
        concurrency: config.concurrency,
        p50_ms: percentile(&lat, 50.0),
        p90_ms: percentile(&lat, 90.0),
        p99_ms: percentile(&lat, 99.0),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        wall_s,
        requests_per_s: completed as f64 / wall_s.max(f64::MIN_POSITIVE),
        stopped_by_time_limit: completed < config.requests,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SustainedConfig {
    /// Requests start until this much time has passed.
    pub duration: Duration,
    /// Reporting windows the duration is cut into.
    pub windows: usize,
    pub concurrency: usize,
    pub k: usize,
    pub model_slots: usize,
}

/// One reporting window; requests belong to the window in which they finished.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    pub start_s: f64,
    pub end_s: f64,
    pub completed: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests_per_s: f64,
    /// Resident memory of this process (server and clients) at the window's end; `None` where
    /// /proc/self/status cannot be read.
    pub rss_mib: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SustainedReport {
    pub concurrency: usize,
    pub duration_s: f64,
    pub windows: Vec<WindowStats>,
    pub first_error: Option<String>,
}

impl SustainedReport {
    pub fn errors(&self) -> usize {
        self.windows.iter().map(|w| w.errors).sum()
    }

    /// An error when any request failed: a load test with errors has not passed.
    pub fn ensure_clean(&self) -> anyhow::Result<()> {
        if self.errors() > 0 {
            anyhow::bail!("the sustained load test had {} errors", self.errors());
        }
        Ok(())
    }

    /// The last window against the first: p50, p99, throughput and memory ratios.
    pub fn verdict(&self) -> String {
        let (Some(first), Some(last)) = (self.windows.first(), self.windows.last()) else {
            return "no windows".into();
        };
        let rss = match (first.rss_mib, last.rss_mib) {
            (Some(a), Some(b)) => format!("{:.2}x ({a:.1} -> {b:.1} MiB)", b / a),
            _ => "not measured".into(),
        };
        format!(
            "last window / first: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x, resident memory {rss}; {} errors in all",
            last.p50_ms / first.p50_ms,
            last.p99_ms / first.p99_ms,
            last.requests_per_s / first.requests_per_s,
            self.errors()
        )
    }
}

impl std::fmt::Display for SustainedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sustained load: concurrency {} for {:.0} s",
            self.concurrency, self.duration_s
        )?;
        writeln!(
            f,
            "| window (s) | requests | errors | req/s | p50 ms | p99 ms | RSS MiB |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|")?;
        for w in &self.windows {
            let rss = w.rss_mib.map_or("-".into(), |r| format!("{r:.1}"));
            writeln!(
                f,
                "| {:.0}-{:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {rss} |",
                w.start_s, w.end_s, w.completed, w.errors, w.requests_per_s, w.p50_ms, w.p99_ms
            )?;
        }
        write!(f, "{}", self.verdict())?;
        if let Some(e) = &self.first_error {
            write!(f, "; first error: {e}")?;
        }
        Ok(())
    }
}

/// VmRSS of this process in MiB, from /proc/self/status.
fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// A finished request: when it finished (seconds from the start), its latency, and whether it
/// succeeded.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Finished {
    at_s: f64,
    ms: f64,
    ok: bool,
}

/// Cuts the finished requests into `rss.len()` windows of `window_s`; requests that finished
/// after the last window's end (started before it) count in the last window.
fn summarise(finished: &[Finished], window_s: f64, rss: &[Option<f64>]) -> Vec<WindowStats> {
    let n = rss.len();
    let mut by_window: Vec<(Vec<f64>, usize)> = vec![(Vec::new(), 0); n];
    for r in finished {
        let w = ((r.at_s / window_s) as usize).min(n - 1);
        if r.ok {
            by_window[w].0.push(r.ms);
        } else {
            by_window[w].1 += 1;
        }
    }
    by_window
        .into_iter()
        .zip(rss)
        .enumerate()
        .map(|(i, ((mut lat, errors), rss))| {
            lat.sort_by(f64::total_cmp);
            let completed = lat.len() + errors;
            WindowStats {
                start_s: i as f64 * window_s,
                end_s: (i + 1) as f64 * window_s,
                completed,
                errors,
                p50_ms: percentile(&lat, 50.0),
                p99_ms: percentile(&lat, 99.0),
                requests_per_s: completed as f64 / window_s,
                rss_mib: *rss,
            }
        })
        .collect()
}

/// Runs the sustained load test on its own runtime.
pub fn run_sustained(
    rec: Arc<Recommender>,
    config: SustainedConfig,
) -> anyhow::Result<SustainedReport> {
    anyhow::ensure!(config.windows > 0, "at least one window");
    anyhow::ensure!(!config.duration.is_zero(), "the duration must be positive");
    tokio::runtime::Runtime::new()?.block_on(sustained_async(rec, config))
}

async fn sustained_async(
    rec: Arc<Recommender>,
    config: SustainedConfig,
) -> anyhow::Result<SustainedReport> {
    let (url, server, client) = start(rec.clone(), config.concurrency, config.model_slots).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(Mutex::new(Vec::new()));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut workers = Vec::new();
    for _ in 0..config.concurrency.max(1) {
        let (rec, client, url, next, finished, first_error) = (
            rec.clone(),
            client.clone(),
            url.clone(),
            next.clone(),
            finished.clone(),
            first_error.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let body = request(&rec, i, config.k);
                let t = Instant::now();
                let outcome = send(&client, &url, &body).await;
                let done = Finished {
                    at_s: started.elapsed().as_secs_f64(),
                    ms: t.elapsed().as_secs_f64() * 1000.0,
                    ok: outcome.is_ok(),
                };
                if let Err(e) = outcome {
                    first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(format!("request {i}: {e}"));
                }
                finished
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(done);
            }
        }));
    }

    let window = config.duration / config.windows as u32;
    let bar = ProgressBar::new(config.windows as u64).with_style(
        ProgressStyle::with_template("sustained load {bar:40} window {pos}/{len} eta {eta} {msg}")
            .map_err(|e| anyhow::anyhow!("progress template: {e}"))?,
    );
    let mut rss = Vec::with_capacity(config.windows);
    for w in 1..=config.windows {
        tokio::time::sleep_until((started + window * w as u32).into()).await;
        let now = resident_mib();
        rss.push(now);
        bar.set_message(now.map_or(String::new(), |r| format!("RSS {r:.0} MiB")));
        bar.inc(1);
    }
    for w in workers {
        w.await?;
    }
    bar.finish_and_clear();
    server.abort();

    let finished = std::mem::take(&mut *finished.lock().unwrap_or_else(|e| e.into_inner()));
    let first_error = first_error.lock().unwrap_or_else(|e| e.into_inner()).take();
    Ok(SustainedReport {
        concurrency: config.concurrency,
        duration_s: config.duration.as_secs_f64(),
        windows: summarise(&finished, window.as_secs_f64(), &rss),
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::{percentile, summarise, Finished};

    #[test]
    fn requests_fall_into_the_window_they_finished_in() {
        let done = |at_s, ms, ok| Finished { at_s, ms, ok };
        let finished = [
            done(0.5, 10.0, true),
            done(1.5, 20.0, true),
            done(1.9, 30.0, false),
            // Started before the end, finished after it: counted in the last window.
            done(2.3, 40.0, true),
        ];
        let w = summarise(&finished, 1.0, &[Some(100.0), Some(110.0)]);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].completed, w[0].errors, w[0].p50_ms), (1, 0, 10.0));
        assert_eq!((w[1].completed, w[1].errors), (3, 1));
        assert_eq!((w[1].p50_ms, w[1].p99_ms), (20.0, 40.0));
        assert_eq!(w[1].requests_per_s, 3.0);
        assert_eq!(w[1].rss_mib, Some(110.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
