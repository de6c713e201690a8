//! The sustained load test on the tiny test model: every window gets requests and a memory
//! reading, and the verdict compares the last window with the first.

mod common;

use std::sync::Arc;
use std::time::Duration;

use instructrec_serve::bench::{run_sustained, SustainedConfig};

#[test]
fn sustained_load_reports_every_window() {
    // Windows of a second: on a loaded 2-core machine one request took up to 0.7 s, and half-
    // second windows (2 s in 4) were seen empty.
    let report = run_sustained(
        Arc::new(common::recommender()),
        SustainedConfig {
            duration: Duration::from_secs(4),
            windows: 4,
            concurrency: 2,
            k: 3,
            model_slots: 2,
        },
    )
    .unwrap();
    assert_eq!(report.windows.len(), 4);
    assert_eq!(report.errors(), 0, "{report}");
    for w in &report.windows {
        assert!(w.completed > 0, "{report}");
        assert!(w.p50_ms <= w.p99_ms, "{report}");
        assert!(w.rss_mib.is_some_and(|r| r > 1.0), "{report}");
    }
    assert!(
        report.verdict().starts_with("last window / first: p50 "),
        "{report}"
    );
}
