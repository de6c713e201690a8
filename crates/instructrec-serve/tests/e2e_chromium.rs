//! End to end: the web page, served by the real router over a tiny model, driven by headless
//! Chromium. CI installs Chromium in `.ci/run`; set `CHROMIUM` to use another binary.
//!
//! Two ways in: `--dump-dom` with the page's autorun mode (ask, then refine, from URL
//! parameters) for the finished DOM, and the DevTools protocol over a WebSocket for a person's
//! use at a phone's width (390 px) and a desktop's: typing and Enter, Tab order, the
//! conversation trail, editing the history, the error state, no sideways scrolling, and a
//! screenshot of each width under `target/tmp/e2e-screenshots/` (copied to `docs/screenshots/`
//! when `UPDATE_SCREENSHOTS=1`).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

const CHROMIUM_FLAGS: [&str; 10] = [
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
];

/// Loads `url` in headless Chromium and returns the DOM it dumps and Chromium's stderr.
fn dump_dom(url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let binary = chromium();
    let output = Command::new(&binary)
        .args(CHROMIUM_FLAGS)
        .args([
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
        dom.matches("<li class=\"card result\"").count(),
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
    assert_eq!(dom.matches("class=\"turn\"").count(), 2, "{}", context());
}

/// Headless Chromium driven over the DevTools protocol: one page, commands sent on the browser's
/// WebSocket with the page's session id (flat mode).
struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let binary = chromium();
        let mut child = Command::new(&binary)
            .args(CHROMIUM_FLAGS)
            .arg("--remote-debugging-port=0")
            .arg("--remote-allow-origins=*")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary}: {e}. Install it (`apt-get install -y chromium`) or set CHROMIUM")
            });
        // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(at) = line.find("ws://") {
                        let _ = tx.send(line[at..].trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("Chromium did not print its DevTools address within 60 s");
        let rest = url.strip_prefix("ws://").unwrap();
        let (host, _) = rest.split_once('/').unwrap();
        let stream = TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("DevTools handshake");
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if session {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .expect("DevTools send");
        loop {
            let reply = self.socket.read().expect("DevTools read");
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            if v["method"] == "Runtime.exceptionThrown" {
                eprintln!("page exception: {}", v["params"]["exceptionDetails"]);
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// The value of a JavaScript expression (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is true.
    fn wait_for(&mut self, expression: &str, what: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            if self.eval(expression) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let state = self.eval(
            "JSON.stringify({state: document.body.dataset.state, error: document.getElementById('error-message').textContent})",
        );
        panic!("timed out waiting for {what} ({expression}); page: {state}");
    }

    fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            "document.readyState === 'complete' && document.body.dataset.examples === 'ready'",
            "the page and its examples",
        );
    }

    fn key(&mut self, key: &str, code: &str, key_code: u32, text: Option<&str>) {
        let mut down =
            json!({"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": key_code});
        if let Some(t) = text {
            down["text"] = json!(t);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": key_code}),
        );
    }

    fn enter(&mut self) {
        self.key("Enter", "Enter", 13, Some("\r"));
    }

    fn tab(&mut self) {
        self.key("Tab", "Tab", 9, None);
    }

    /// Focuses `id`, empties it and types `text` as keyboard input.
    fn type_into(&mut self, id: &str, text: &str) {
        self.eval(&format!(
            "(() => {{ const e = document.getElementById('{id}'); e.focus(); e.value = ''; }})()"
        ));
        self.call("Input.insertText", json!({"text": text}));
    }

    fn focused(&mut self) -> String {
        self.eval("document.activeElement ? document.activeElement.id : ''")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits for the answer to a request the page sent after `turns` turns.
    fn wait_for_turn(&mut self, turns: usize, what: &str) {
        self.wait_for(
            &format!(
                "document.body.dataset.state === 'done' && document.querySelectorAll('#trail .turn').length === {turns}"
            ),
            what,
        );
    }

    fn result_ids(&mut self) -> Vec<u64> {
        let v = self.eval(
            "[...document.querySelectorAll('#results .card')].map(c => Number(c.dataset.itemId))",
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    }

    /// Nothing is wider than the window: no sideways scrolling.
    fn assert_no_overflow(&mut self, when: &str) {
        let v = self.eval(
            "JSON.stringify({scroll: document.documentElement.scrollWidth, inner: window.innerWidth, \
             wide: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5 && e.getClientRects().length).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)})",
        );
        let v: Value = serde_json::from_str(v.as_str().unwrap()).unwrap();
        assert!(
            v["scroll"].as_f64().unwrap() <= v["inner"].as_f64().unwrap(),
            "{when}: the page scrolls sideways: {v}"
        );
    }

    fn screenshot(&mut self, path: &Path) {
        // No focus ring left from the last key press in the picture.
        self.eval("document.activeElement && document.activeElement.blur()");
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-screenshots")
}

/// A person's use of the page at one width: ask with Enter, refine (kept in the trail), edit
/// the history from a card and from the catalogue search (the results change), the error
/// state, keyboard focus order, no sideways scrolling; a screenshot of the answer.
fn use_the_page(base: &str, width: u32, height: u32, mobile: bool, name: &str) {
    let mut b = Browser::launch();
    b.viewport(width, height, mobile);
    b.open(&format!("{base}/"));
    b.assert_no_overflow("the empty page");

    // Placeholders and examples come from the catalogue.
    let placeholder = b.eval("document.getElementById('intention').placeholder");
    assert!(
        placeholder.as_str().unwrap().starts_with("something like ")
            && placeholder.as_str().unwrap().contains("number"),
        "{placeholder}"
    );
    assert!(
        b.eval("document.querySelectorAll('#examples .chip').length")
            .as_u64()
            .unwrap()
            >= 3
    );

    // The query box comes first and Tab goes from it to its button, then to the examples.
    b.eval("document.activeElement && document.activeElement.blur()");
    b.tab();
    assert_eq!(
        b.focused(),
        "intention",
        "the query box is not first in the focus order"
    );
    b.tab();
    assert_eq!(b.focused(), "ask-button");
    b.tab();
    assert_eq!(
        b.eval("document.activeElement.className"),
        json!("chip"),
        "the examples follow the button"
    );
    let labelled = b.eval(
        "[...document.querySelectorAll('input')].every(i => i.labels.length > 0 || i.getAttribute('aria-label'))",
    );
    assert_eq!(labelled, json!(true), "an input has no label");

    // Ask: type and press Enter.
    b.type_into("intention", "a racing game");
    b.enter();
    b.wait_for_turn(1, "the first answer");
    let first = b.result_ids();
    assert_eq!(first.len(), 10);
    let card = b.eval(
        "(() => { const r = document.querySelector('#results .card').getBoundingClientRect(); \
         return r.width > 100 && r.height > 40 && r.left >= 0 && r.right <= window.innerWidth; })()",
    );
    assert_eq!(
        card,
        json!(true),
        "the first card is not visible within the window"
    );
    let shown = b.eval(
        "(() => { const c = document.querySelector('#results .card'); return { \
           rank: c.querySelector('.rank').textContent, title: c.querySelector('.title').textContent, \
           meta: c.querySelector('.meta').textContent, relevance: c.querySelector('.relevance .value').textContent, \
           why: c.querySelector('.why').textContent, text: c.textContent }; })()",
    );
    assert_eq!(
        shown["rank"], "Rank 1",
        "the rank is read as \"Rank 1\": {shown}"
    );
    assert!(
        shown["relevance"].as_str().unwrap().ends_with('%'),
        "{shown}"
    );
    assert!(
        shown["meta"].as_str().unwrap().contains("Studio"),
        "no brand: {shown}"
    );
    assert!(!shown["why"].as_str().unwrap().is_empty(), "{shown}");
    assert!(
        !shown["text"].as_str().unwrap().contains("log"),
        "the raw log-likelihood is shown: {shown}"
    );
    b.assert_no_overflow("the first answer");

    // Refine with Enter: the trail keeps both turns and says what changed.
    b.type_into("refine", "for two players");
    b.enter();
    b.wait_for_turn(2, "the refined answer");
    let trail = b.eval(
        "[...document.querySelectorAll('#trail .turn')].map(t => [t.dataset.kind, t.textContent])",
    );
    assert_eq!(trail[0][0], "ask", "{trail}");
    assert!(
        trail[0][1].as_str().unwrap().contains("a racing game"),
        "{trail}"
    );
    assert_eq!(trail[1][0], "refine", "{trail}");
    let refined = trail[1][1].as_str().unwrap();
    assert!(refined.contains("for two players"), "{trail}");
    assert!(
        refined.contains("a racing game. for two players"),
        "the combined need is not shown: {trail}"
    );
    assert!(
        ["New:", "Gone:", "Same items"]
            .iter()
            .any(|w| refined.contains(w)),
        "the change is not shown: {trail}"
    );
    b.assert_no_overflow("the refined answer");
    b.screenshot(&screenshot_dir().join(format!("{name}-refined.png")));

    // Edit the history: "I had this" on the top card adds it; the answer is brought up to date
    // and the item, now owned, leaves the results.
    let before = b.result_ids();
    let top = before[0];
    b.eval("document.querySelector('#results .card .had').focus()");
    b.enter();
    b.wait_for_turn(3, "the answer for the edited history");
    let history = b.eval("[...document.querySelectorAll('#history .history-item')].map(h => Number(h.dataset.itemId))");
    assert_eq!(history, json!([top]), "the history is not the added item");
    let after = b.result_ids();
    assert!(
        !after.contains(&top),
        "the item added to the history is still recommended"
    );
    assert_ne!(after, before, "the history edit did not change the results");
    let turn = b.eval("document.querySelectorAll('#trail .turn')[2].textContent");
    assert!(turn.as_str().unwrap().contains("History edited"), "{turn}");

    // Add from the catalogue search with the keyboard: Enter adds the first match, which is
    // listed first (most recent first); the answer follows again.
    b.type_into("item-search", "puzzle");
    b.wait_for(
        "document.querySelectorAll('#item-results .add-item').length > 0",
        "the catalogue search",
    );
    b.enter();
    b.wait_for(
        "document.querySelectorAll('#history .history-item').length === 2",
        "the added item",
    );
    let first_title = b.eval("document.querySelector('#history .history-item .title').textContent");
    assert!(
        first_title.as_str().unwrap().starts_with("Puzzle"),
        "{first_title}"
    );
    b.wait_for_turn(4, "the answer after the search");
    // Remove it again with its button.
    b.eval("document.querySelector('#history .history-item .remove').click()");
    b.wait_for(
        "document.querySelectorAll('#history .history-item').length === 1",
        "the removal",
    );
    b.wait_for_turn(5, "the answer after the removal");
    b.assert_no_overflow("the edited history");
    b.screenshot(&screenshot_dir().join(format!("{name}.png")));

    // The error state: a refused request shows the server's message in an alert, and the last
    // results stay.
    b.eval("document.getElementById('more').open = true");
    b.type_into("k", "99");
    b.type_into("intention", "a racing game");
    b.enter();
    b.wait_for(
        "document.body.dataset.state === 'failed'",
        "the error state",
    );
    let error = b.eval(
        "(() => { const e = document.getElementById('error'); return {hidden: e.hidden, role: e.getAttribute('role'), text: e.textContent}; })()",
    );
    assert_eq!(error["hidden"], false, "{error}");
    assert_eq!(error["role"], "alert", "{error}");
    assert!(
        error["text"]
            .as_str()
            .unwrap()
            .contains("k: 99 is out of range: it must be from 1 to 50"),
        "{error}"
    );
    // The field the server named is marked, and the last results stay on the page.
    assert_eq!(
        b.eval("document.getElementById('k').getAttribute('aria-invalid')"),
        json!("true")
    );
    assert_eq!(b.result_ids().len(), 10);
    b.assert_no_overflow("the error state");
    b.screenshot(&screenshot_dir().join(format!("{name}-error.png")));
}

fn copy_screenshots(names: &[&str]) {
    if std::env::var("UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&docs).unwrap();
    for name in names {
        std::fs::copy(
            screenshot_dir().join(format!("{name}.png")),
            docs.join(format!("{name}.png")),
        )
        .unwrap();
    }
}

#[test]
fn a_person_uses_the_page_on_a_phone_and_a_desktop() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(common::start_server());
    use_the_page(&base, 390, 844, true, "serve-phone");
    use_the_page(&base, 1280, 900, false, "serve-desktop");
    copy_screenshots(&["serve-phone", "serve-desktop"]);
}

/// On a film catalogue the page and its examples say nothing of games: the wording comes from
/// the loaded catalogue.
#[test]
fn the_page_speaks_of_the_loaded_catalogue() {
    let mut prepared = instructrec_eval::synthetic::prepared(40, 120, 9);
    let genres = ["Comedy", "Drama", "Thriller", "Documentary"];
    for item in &mut prepared.dataset.items {
        let genre = genres[item.id.index() % genres.len()];
        item.title = format!("{genre} film number {}", item.id.0);
        item.categories = vec!["Movies".into(), genre.into()];
        item.brand = None;
    }
    let rec = Arc::new(common::recommender_over(prepared));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(common::start_shared_server(
        rec,
        instructrec_serve::HttpConfig::new(2),
    ));
    let mut b = Browser::launch();
    b.viewport(390, 844, true);
    b.open(&format!("{base}/"));
    let words = b.eval(
        "[document.body.innerText, ...[...document.querySelectorAll('input')].map(i => i.placeholder), \
         ...[...document.querySelectorAll('#examples .chip')].map(c => c.textContent)].join('\\n')",
    );
    let words = words.as_str().unwrap();
    assert!(
        !words.to_lowercase().contains("game"),
        "game wording:\n{words}"
    );
    assert!(words.contains("film number"), "{words}");
    assert!(
        words.contains("Comedy") || words.contains("Drama"),
        "{words}"
    );
    // An example runs as it is.
    b.eval("document.querySelector('#examples .chip').click()");
    b.wait_for_turn(1, "the example's answer");
    assert_eq!(b.result_ids().len(), 10);
}
