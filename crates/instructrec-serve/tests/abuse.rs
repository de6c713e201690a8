//! The server under abuse (issue #21): slow clients, bursts, foreign Host headers, missing
//! tokens, hostile characters, guessed sessions, endless refinements, oversized heads, and what
//! the access log writes. Each test failed before its fix. Raw requests go over plain sockets so
//! that the test controls every byte and every pause.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instructrec_serve::http::ErrorCode;
use instructrec_serve::sanitize::is_unsafe;
use instructrec_serve::{check_exposure, read_token, HttpConfig, SESSION_ID_LEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::runtime::Runtime;

/// A server with `config` on its own runtime (kept alive by the caller); its `host:port`.
fn serve(config: HttpConfig) -> (Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = runtime.block_on(common::start_server_with(config));
    (runtime, base.trim_start_matches("http://").to_string())
}

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        Self {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The JSON error message; panics when the body is not
    /// `{"error": {"code": "...", "message": "..."}}`.
    fn error(&self) -> String {
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.status, self.body));
        assert!(v["error"]["code"].is_string(), "no error code: {v}");
        v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {v}"))
            .to_string()
    }

    /// The JSON error's code, checked against the status it documents.
    fn code(&self) -> String {
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.status, self.body));
        let code: ErrorCode = serde_json::from_value(v["error"]["code"].clone())
            .unwrap_or_else(|e| panic!("no error code ({e}): {v}"));
        assert_eq!(code.status().as_u16(), self.status, "{v}");
        v["error"]["code"].as_str().unwrap().to_string()
    }
}

/// Reads until the server closes the connection (end of file or a reset); panics if it is still
/// open after `limit`.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return out
            }
            Err(e) => panic!("the connection is still open after {limit:?} ({e}); read {out:?}"),
        }
    }
}

/// Sends `request` whole and reads the answer (requests say `Connection: close`).
fn raw(addr: &str, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    Answer::parse(&read_until_closed(&mut s, Duration::from_secs(30)))
}

fn get_with_host(addr: &str, path: &str, host: &str) -> Answer {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn post_json(addr: &str, body: &Value, extra_headers: &str) -> Answer {
    let body = serde_json::to_vec(body).unwrap();
    let mut request = format!(
        "POST /v1/recommend HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend(body);
    raw(addr, &request)
}

fn ok_json(a: &Answer) -> Value {
    assert_eq!(a.status, 200, "{a:?}");
    serde_json::from_str(&a.body).unwrap()
}

#[test]
fn slow_header_clients_are_closed_within_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let mut config = HttpConfig::new(1);
    config.header_timeout = timeout;
    let (_runtime, addr) = serve(config);

    // Half a request, then one more header line every 100 ms for up to 5 s.
    let mut s = TcpStream::connect(&addr).unwrap();
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            if writer.write_all(b"X-Slow: a\r\n").is_err() {
                return true;
            }
        }
        false
    });
    // There is no request to answer yet, so hyper closes without a response.
    let read = read_until_closed(&mut s, Duration::from_secs(3));
    let elapsed = started.elapsed();
    assert!(read.is_empty(), "{:?}", String::from_utf8_lossy(&read));
    assert!(
        elapsed >= timeout - Duration::from_millis(50)
            && elapsed < timeout + Duration::from_secs(2),
        "closed after {elapsed:?}"
    );
    assert!(
        trickle.join().unwrap(),
        "the trickling client could write for 5 s"
    );

    // A connection that sends nothing at all (or an idle keep-alive one) goes the same way.
    let mut s = TcpStream::connect(&addr).unwrap();
    let started = Instant::now();
    read_until_closed(&mut s, Duration::from_secs(3));
    assert!(started.elapsed() < timeout + Duration::from_secs(2));

    // A client that keeps to the time is served.
    let a = get_with_host(&addr, "/healthz", "localhost");
    assert_eq!(a.status, 200, "{a:?}");
}

#[test]
fn slow_body_clients_get_a_json_408_within_the_body_timeout() {
    let timeout = Duration::from_millis(400);
    let mut config = HttpConfig::new(1);
    config.body_timeout = timeout;
    let (_runtime, addr) = serve(config);

    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(
        b"POST /v1/recommend HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{",
    )
    .unwrap();
    let started = Instant::now();
    // A byte every 100 ms, then a stall. The trickle stops well before the timeout so that no
    // byte is in flight when the server closes: unread bytes make the kernel reset the
    // connection, which can discard the answer before this side reads it.
    for b in b"\"in" {
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(&[*b]).unwrap();
    }
    let a = Answer::parse(&read_until_closed(&mut s, Duration::from_secs(3)));
    let elapsed = started.elapsed();
    assert_eq!(a.status, 408, "{a:?}");
    assert!(a.error().contains("did not arrive within 0.4 s"), "{a:?}");
    assert_eq!(a.code(), "request_timeout");
    assert!(
        elapsed >= timeout - Duration::from_millis(50)
            && elapsed < timeout + Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
}

/// A request that keeps a model slot busy for a while: 100 listed candidates are 10 groups,
/// each its own encoder and decoder pass.
fn heavy_request() -> Value {
    json!({"intention": "a racing game", "candidates": (0..100).collect::<Vec<_>>(), "k": 3})
}

#[test]
fn a_burst_beyond_the_queue_gets_503_with_retry_after_and_the_rest_still_answers() {
    let mut config = HttpConfig::new(1);
    config.queue = 1;
    let (runtime, addr) = serve(config);
    let base = format!("http://{addr}");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let burst: Vec<_> = (0..24)
            .map(|_| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let r = client
                        .post(format!("{base}/v1/recommend"))
                        .json(&heavy_request())
                        .send()
                        .await
                        .unwrap();
                    let retry = r.headers().get("retry-after").cloned();
                    (r.status(), retry, r.text().await.unwrap())
                })
            })
            .collect();
        // While the burst is being answered, the cheap routes answer at once.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for path in ["/healthz", "/v1/items?q=puzzle"] {
            let started = Instant::now();
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{path}: {:?}",
                started.elapsed()
            );
        }
        let (mut answered, mut refused) = (0, 0);
        for task in burst {
            let (status, retry, body) = task.await.unwrap();
            match status {
                StatusCode::OK => answered += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    refused += 1;
                    assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
                    let v: Value = serde_json::from_str(&body).unwrap();
                    assert!(
                        v["error"]["message"].as_str().unwrap().contains("busy"),
                        "{v}"
                    );
                    assert_eq!(v["error"]["code"], "overloaded", "{v}");
                }
                s => panic!("{s}: {body}"),
            }
        }
        assert!(
            answered >= 2 && refused >= 1,
            "{answered} answered, {refused} refused"
        );
        // Once the burst is over, the model is available again.
        let r = client
            .post(format!("{base}/v1/recommend"))
            .json(&json!({"intention": "a puzzle game"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    });
}

#[test]
fn a_request_past_the_request_timeout_gets_a_json_503() {
    let mut config = HttpConfig::new(1);
    config.request_timeout = Duration::from_millis(1);
    let (_runtime, addr) = serve(config);
    let a = post_json(&addr, &heavy_request(), "");
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.error().contains("did not answer within"), "{a:?}");
    assert_eq!(a.code(), "overloaded");
    assert_eq!(a.header("retry-after"), Some("1"));
}

#[test]
fn hosts_outside_the_allow_list_get_a_json_403() {
    let mut config = HttpConfig::new(1);
    config.allowed_hosts.push("games.example".into());
    let (_runtime, addr) = serve(config);
    let port = addr.rsplit(':').next().unwrap();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "LOCALHOST".to_string(),
        "games.example".to_string(),
    ] {
        let a = get_with_host(&addr, "/v1/users/U1", &host);
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    // A rebinding page sends its own name; every route refuses it, the page included.
    for path in ["/v1/users/U1", "/healthz", "/"] {
        for host in [
            "evil.example".to_string(),
            format!("evil.example:{port}"),
            "localhost.evil.example".into(),
        ] {
            let a = get_with_host(&addr, path, &host);
            assert_eq!(a.status, 403, "{path} {host}: {a:?}");
            assert!(a.error().contains("does not answer to the host"), "{a:?}");
            assert_eq!(a.code(), "forbidden_host");
        }
    }
    // No Host at all (HTTP/1.0 allows it): refused too.
    let a = raw(&addr, b"GET /v1/users/U1 HTTP/1.0\r\n\r\n");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.error().contains("Host"), "{a:?}");
    assert_eq!(a.code(), "invalid_request");
}

#[test]
fn a_configured_token_is_required_except_for_the_page_and_the_health_check() {
    let token = "s3cret-token-0123456789";
    let mut config = HttpConfig::new(1);
    config.token = Some(token.to_string());
    assert!(!format!("{config:?}").contains(token), "{config:?}");
    let (_runtime, addr) = serve(config);
    let get = |path: &str, auth: &str| {
        raw(
            &addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    for path in ["/", "/app.js", "/style.css", "/openapi.json", "/healthz"] {
        assert_eq!(get(path, "").status, 200, "{path}");
    }
    for (auth, says) in [
        ("", "needs a token"),
        ("Authorization: Bearer wrong-token-0123456789\r\n", "wrong"),
        ("Authorization: Basic czNjcmV0\r\n", "needs a token"),
    ] {
        for path in ["/v1/users/U1", "/v1/items?q=puzzle", "/nowhere"] {
            let a = get(path, auth);
            assert_eq!(a.status, 401, "{path} {auth}: {a:?}");
            assert!(a.error().contains(says), "{a:?}");
            assert_eq!(a.code(), "unauthorized");
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        }
    }
    let a = post_json(&addr, &json!({"intention": "a racing game"}), "");
    assert_eq!(a.status, 401, "{a:?}");
    let auth = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(get("/v1/users/U1", &auth).status, 200);
    let auth = format!("authorization: bearer {token}\r\n");
    assert_eq!(get("/v1/items?q=puzzle", &auth).status, 200);
    ok_json(&post_json(
        &addr,
        &json!({"intention": "a racing game"}),
        &auth,
    ));
}

#[test]
fn a_token_is_required_beyond_loopback_and_must_be_long() {
    let wide = "0.0.0.0:8080".parse().unwrap();
    let message = check_exposure(wide, None).unwrap_err().to_string();
    assert!(message.contains("--token-file"), "{message}");
    check_exposure(wide, Some("0123456789abcdef")).unwrap();
    check_exposure("127.0.0.1:8080".parse().unwrap(), None).unwrap();
    check_exposure("[::1]:8080".parse().unwrap(), None).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  0123456789abcdefXYZ\n").unwrap();
    assert_eq!(
        read_token(Some(&file)).unwrap().as_deref(),
        Some("0123456789abcdefXYZ")
    );
    std::fs::write(&file, "short\n").unwrap();
    let message = read_token(Some(&file)).unwrap_err().to_string();
    assert!(message.contains("at least 16"), "{message}");
    assert!(read_token(Some(&dir.path().join("missing"))).is_err());
}

#[test]
fn control_and_bidi_characters_do_not_reach_the_instruction() {
    let (_runtime, addr) = serve(HttpConfig::new(1));
    let answer = ok_json(&post_json(
        &addr,
        &json!({
            "user": "U3",
            "intention": "a racing\u{0} game\u{1b}[2J \u{202e}won\u{2066}\u{2069}",
            "preference": "I like \u{200f}fast\u{200e} cars\u{7}",
            "context": "\ton a\ntrain\r\n\u{2067}tonight\u{85}",
        }),
        "",
    ));
    let instruction = answer["instruction"].as_str().unwrap();
    let bad: Vec<char> = instruction.chars().filter(|&c| is_unsafe(c)).collect();
    assert!(bad.is_empty(), "{bad:?} in {instruction:?}");
    for kept in [
        "a racing game[2J won",
        "I like fast cars",
        "on a train tonight",
    ] {
        assert!(instruction.contains(kept), "no `{kept}` in {instruction:?}");
    }
    // A field of nothing but such characters is empty.
    let a = post_json(&addr, &json!({"intention": "\u{202e}\u{0}\u{1b}"}), "");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.error().starts_with("intention: is empty"), "{a:?}");
    // Error messages quoting a client's text show such characters as code points.
    let a = post_json(&addr, &json!({"user": "U\u{202e}1\u{1b}[2J"}), "");
    assert_eq!(a.status, 400, "{a:?}");
    let message = a.error();
    assert!(message.contains("U\\u{202e}1\\u{001b}[2J"), "{message:?}");
    assert!(!message.chars().any(is_unsafe), "{message:?}");
    // Searches clean their text too.
    let a = get_with_host(&addr, "/v1/items?q=%1B%00puzzle%E2%80%AE", "localhost");
    assert_eq!(ok_json(&a)["items"].as_array().unwrap().len(), 20);
}

#[test]
fn session_ids_are_unguessable_and_only_the_server_creates_them() {
    let (_runtime, addr) = serve(HttpConfig::new(1));
    let ask = || {
        ok_json(&post_json(
            &addr,
            &json!({"intention": "a racing game", "k": 2}),
            "",
        ))
    };
    let ids: Vec<String> = (0..3)
        .map(|_| ask()["session"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        assert_eq!(id.len(), SESSION_ID_LEN, "{id}");
        assert!(
            id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{id}"
        );
    }
    // Consecutive ids share nothing a counter or a clock would: random ids differ in about
    // 30 of 32 places, ids from a counter in a few.
    for w in ids.windows(2) {
        let same = w[0]
            .chars()
            .zip(w[1].chars())
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 16, "{} and {} agree in {same} places", w[0], w[1]);
        let (a, b) = (
            u128::from_str_radix(&w[0], 16).unwrap(),
            u128::from_str_radix(&w[1], 16).unwrap(),
        );
        assert!(a.abs_diff(b) > 1 << 64, "{a:x} {b:x}");
    }

    // A client-chosen id, well-formed or not, names no session and does not create one.
    let chosen = "0123456789abcdef0123456789abcdef";
    for (session, refine) in [
        (chosen, false),
        (chosen, true),
        ("s1-0", false),
        (chosen, false),
    ] {
        let a = post_json(
            &addr,
            &json!({"session": session, "refine": refine, "intention": "a puzzle game"}),
            "",
        );
        assert_eq!(a.status, 404, "{a:?}");
        assert!(a.error().contains("not issued by this server"), "{a:?}");
    }
    // An issued id works, with and without `refine`.
    let refined = ok_json(&post_json(
        &addr,
        &json!({"session": ids[0], "refine": true, "intention": "for two players"}),
        "",
    ));
    assert_eq!(refined["session"], ids[0].as_str());
    assert_eq!(refined["refined"], true);
    let restarted = ok_json(&post_json(
        &addr,
        &json!({"session": ids[0], "intention": "a puzzle game"}),
        "",
    ));
    assert_eq!(restarted["session"], ids[0].as_str());
    assert_eq!(restarted["refined"], false);
    assert!(!restarted["instruction"]
        .as_str()
        .unwrap()
        .contains("racing"));
}

#[test]
fn twenty_five_refines_stay_within_the_text_limit() {
    let (_runtime, addr) = serve(HttpConfig::new(1));
    let limit = instructrec_serve::Limits::default().max_text_chars;
    let first = ok_json(&post_json(
        &addr,
        &json!({"intention": "a racing game", "k": 3}),
        "",
    ));
    let session = first["session"].as_str().unwrap();
    let mut last = String::new();
    for i in 0..25 {
        let refinement = format!("refinement number {i} with enough words to grow the need");
        let a = ok_json(&post_json(
            &addr,
            &json!({"session": session, "refine": true, "intention": refinement, "k": 3}),
            "",
        ));
        last = a["instruction"].as_str().unwrap().to_string();
        // The need as the instruction states it runs from the first request's words to the
        // newest refinement.
        let start = last.find("a racing game").expect("the first need is kept");
        let end = last
            .find(&refinement)
            .expect("the newest refinement is kept")
            + refinement.len();
        let need = &last[start..end];
        assert!(
            need.chars().count() <= limit,
            "{} characters: {need}",
            need.chars().count()
        );
    }
    // The oldest refinements went first.
    assert!(!last.contains("refinement number 0 "), "{last}");
    assert!(last.contains("refinement number 23 "), "{last}");
    // Before the fix this instruction was 10,908 characters long.
    assert!(last.chars().count() < 2_000, "{}", last.chars().count());
}

#[test]
fn errors_from_the_router_and_the_middleware_are_json() {
    let (_runtime, addr) = serve(HttpConfig::new(1));
    let long_query = format!("/v1/items?q={}", "a".repeat(9_000));
    let a = get_with_host(&addr, &long_query, "localhost");
    assert_eq!(a.status, 414, "{a:?}");
    assert!(a.error().contains("limit"), "{a:?}");
    assert_eq!(a.code(), "uri_too_long");
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let a = raw(
        &addr,
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(a.status, 431, "{a:?}");
    assert!(a.error().contains("headers"), "{a:?}");
    assert_eq!(a.code(), "headers_too_large");
    let big = format!("X-Big: {}\r\n", "b".repeat(20_000));
    let a = raw(
        &addr,
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{big}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(a.status, 431, "{a:?}");
    a.error();
    let a = raw(
        &addr,
        b"BREW /v1/items HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(a.status, 405, "{a:?}");
    assert_eq!(a.code(), "method_not_allowed");

    // What hyper answers before the router sees a request has no body; documented in
    // docs/reliability.md ("Server under abuse").
    let a = raw(&addr, b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!((a.status, a.body.as_str()), (400, ""), "{a:?}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let a = raw(
        &addr,
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!((a.status, a.body.as_str()), (431, ""), "{a:?}");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_access_log_has_method_path_status_and_latency_but_no_query_or_body() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The server runs on this thread only, so a thread-local subscriber sees its lines.
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let base = common::start_server().await;
        let client = reqwest::Client::new();
        let r = client
            .get(format!("{base}/v1/items?q=secretquerywords"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = client
            .post(format!("{base}/v1/recommend"))
            .json(&json!({"preference": "secret taste words", "intention": "a racing game"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = client
            .get(format!("{base}/nowhere?x=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("instructrec_serve::access"))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (line, (method, path, status)) in lines.iter().zip([
        ("GET", "/v1/items", 200),
        ("POST", "/v1/recommend", 200),
        ("GET", "/nowhere", 404),
    ]) {
        for field in [
            format!("method={method}"),
            format!("path={path} "),
            format!("status={status}"),
            "latency_ms=".to_string(),
        ] {
            assert!(line.contains(&field), "no `{field}` in {line}");
        }
    }
    assert!(!log.contains("secret"), "{log}");
}
