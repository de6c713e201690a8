//! A loopback load test: the server runs in-process on an ephemeral port and a pool of clients
//! sends recommendation requests (a fixed mix of scenarios over many users) until the count or
//! the time limit is reached. Reports latency percentiles and every failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::http::{bind, router, AppState};
use crate::recommender::Recommender;
use crate::request::{Request, UserRef};

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
fn request(rec: &Recommender, i: usize, k: usize) -> Request {
    let d = &rec.prepared().dataset;
    // Strides coprime with typical sizes spread the requests over users and items.
    let user = &d.users[(i * 7919) % d.users.len()];
    let item = &d.items[(i * 104_729) % d.items.len()];
    let need = NEEDS[i % NEEDS.len()].to_string();
    let user = Some(UserRef::Name(user.original_id.clone()));
    let base = Request {
        k: Some(k),
        ..Request::default()
    };
    match i % 4 {
        0 => Request { user, ..base },
        1 => Request {
            user,
            intention: Some(need),
            ..base
        },
        2 => Request {
            intention: Some(need),
            ..base
        },
        _ if !item.categories.is_empty() => Request {
            intention: Some(item.categories.join(", ")),
            ..base
        },
        _ => Request { user, ..base },
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

async fn run_async(rec: Arc<Recommender>, config: BenchConfig) -> anyhow::Result<BenchReport> {
    let listener = bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let app = router(AppState::new(rec.clone(), config.model_slots));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/v1/recommend");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency)
        .build()?;

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
                let outcome = match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => {
                        let status = r.status();
                        Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
                    }
                    Err(e) => Err(e.to_string()),
                };
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

#[cfg(test)]
mod tests {
    use super::percentile;

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
