//! `instructrec data bench`: preparation repeated into a scratch directory, with each phase's
//! wall time, so that a speed change can be measured on the same input.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::prepare::{prepare, PrepareReport, PrepareTimings};
use crate::{DataError, ImportSource, PrepareOptions};

/// One preparation: its phases, the write, and the whole.
pub struct BenchRun {
    pub timings: PrepareTimings,
    pub write: Duration,
    pub total: Duration,
}

pub struct Bench {
    pub runs: Vec<BenchRun>,
    /// The last run's report (every run prepares the same data).
    pub report: PrepareReport,
}

/// Prepares `source` `runs` times (at least once), writing each into its own folder under
/// `scratch`; `after_run` is called after each (a progress bar).
pub fn bench(
    source: &ImportSource,
    options: &PrepareOptions,
    runs: usize,
    scratch: &Path,
    mut after_run: impl FnMut(),
) -> Result<Bench, DataError> {
    let mut out = Vec::new();
    let mut report = None;
    for run in 0..runs.max(1) {
        let start = Instant::now();
        let (prepared, r) = prepare(source, options)?;
        let write_start = Instant::now();
        prepared.save(&scratch.join(format!("run-{run}")))?;
        out.push(BenchRun {
            timings: r.timings,
            write: write_start.elapsed(),
            total: start.elapsed(),
        });
        report = Some(r);
        after_run();
    }
    Ok(Bench {
        runs: out,
        report: report.expect("at least one run"),
    })
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

impl fmt::Display for Bench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.report)?;
        let row = |f: &mut fmt::Formatter<'_>, cells: [&str; 7]| {
            let [a, b, c, d, e, g, h] = cells;
            writeln!(f, "{a:>4}  {b:>8}  {c:>8}  {d:>17}  {e:>8}  {g:>8}  {h:>8}")
        };
        row(
            f,
            [
                "run",
                "import",
                "filter",
                "split+candidates",
                "render",
                "write",
                "total",
            ],
        )?;
        for (i, r) in self.runs.iter().enumerate() {
            let t = &r.timings;
            let cells = [
                (i + 1).to_string(),
                seconds(t.import),
                seconds(t.filter),
                seconds(t.split),
                seconds(t.render),
                seconds(r.write),
                seconds(r.total),
            ];
            row(f, cells.each_ref().map(String::as_str))?;
        }
        let best = self.runs.iter().map(|r| r.total).min().unwrap_or_default();
        writeln!(
            f,
            "seconds; best total {} over {} runs (render = serialising + SHA-256)",
            seconds(best),
            self.runs.len()
        )
    }
}
