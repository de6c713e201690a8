//! End to end: the web page, served by the real router over a tiny model, driven by headless
//! Chromium. The page's autorun mode picks a user, asks, then refines; the dumped DOM must hold
//! result rows from the refined answer, or for a refused request the error's message. CI installs Chromium in `.ci/run`; set `CHROMIUM` to use
//! another binary.

mod common;

use std::process::Command;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

/// Loads `url` in headless Chromium and returns the DOM it dumps and Chromium's stderr.
fn dump_dom(url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let binary = chromium();
    let output = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            // Virtual time only advances while the page is idle, so pending fetches are waited for.
            "--virtual-time-budget=60000",
            "--timeout=90000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {binary}: {e}. Install it (`apt-get install -y chromium`) or set CHROMIUM")
        });
    assert!(
        output.status.success(),
        "{binary} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A refused request shows the error's `message` (not the JSON object) on the page.
#[test]
fn page_shows_the_error_message() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(common::start_server());
    let (dom, stderr) = dump_dom(&format!("{base}/?q=a%20racing%20game&k=99&autorun=1"));
    assert!(
        dom.contains("data-state=\"failed\""),
        "DOM:\n{dom}\nstderr:\n{stderr}"
    );
    assert!(
        dom.contains("k: 99 is out of range: it must be from 1 to 50"),
        "DOM:\n{dom}\nstderr:\n{stderr}"
    );
    assert!(!dom.contains("[object Object]"), "DOM:\n{dom}");
}

#[test]
fn page_shows_results_and_a_refined_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(common::start_server());
    let url =
        format!("{base}/?user=U7&q=a%20racing%20game&refine=for%20two%20players&k=4&autorun=1");
    let (dom, stderr) = dump_dom(&url);
    let context = || format!("DOM:\n{dom}\nstderr:\n{stderr}");
    assert!(
        dom.contains("data-state=\"done\""),
        "the page did not finish; {}",
        context()
    );
    assert!(
        dom.contains("data-refined=\"yes\""),
        "no refined answer; {}",
        context()
    );
    assert_eq!(
        dom.matches("<tr class=\"result\"").count(),
        4,
        "{}",
        context()
    );
    assert!(
        dom.contains("class=\"history-item\""),
        "no history shown; {}",
        context()
    );
    assert!(dom.contains("P1 I1 T3"), "{}", context());
    assert!(dom.contains("game number"), "no titles; {}", context());
}
