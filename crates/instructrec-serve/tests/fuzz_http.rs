//! Property tests of the HTTP server beyond `http.rs`'s mangled valid requests: arbitrary
//! bodies (bytes, and JSON documents of any shape with the request's own field names mixed in);
//! arbitrary methods, paths, query strings and header values; arbitrary bytes as the request
//! target; random sequences of asks and follow-ups, in the client's own session or a made-up
//! one; and many clients at once. Every answer the router produces must be JSON, no status a
//! 5xx, and every error must carry a message.

mod common;

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use instructrec_serve::sanitize::{clean_text, is_unsafe};
use proptest::prelude::*;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::{json, Map, Number, Value};
use tokio::runtime::Runtime;

/// One server for all cases: starting one per case would cost more than the cases.
fn server() -> &'static (Runtime, String) {
    static SERVER: OnceLock<(Runtime, String)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let base = runtime.block_on(common::start_server());
        (runtime, base)
    })
}

fn post(body: Vec<u8>) -> Result<(), TestCaseError> {
    let (runtime, base) = server();
    let (status, text) = runtime.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/recommend"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    });
    let answer: Value = serde_json::from_str(&text)
        .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {text}")))?;
    prop_assert!(status.as_u16() < 500, "{status}: {answer}");
    if status.is_client_error() || status.is_server_error() {
        prop_assert!(answer["error"]["code"].is_string(), "{answer}");
        prop_assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    Ok(())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        "\\PC{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "U3",
            "S00002",
            "Puzzle game number 5",
            "Video Games, Racing"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 40, 8, |inner| {
        let key = prop_oneof![
            prop::sample::select(instructrec_serve::RECOMMEND_FIELDS.to_vec())
                .prop_map(str::to_string),
            "\\PC{0,10}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_get_a_5xx(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        post(body)?;
    }

    #[test]
    fn arbitrary_json_documents_never_get_a_5xx(body in json_value()) {
        post(serde_json::to_vec(&body).unwrap())?;
    }
}

/// An answer's status and body; the body must be JSON with an error message when the status is
/// an error (HEAD answers have no body).
fn check_answer(method: &Method, status: u16, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{status}: {text}");
    if status >= 400 && method != Method::HEAD {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {text}")))?;
        prop_assert!(v["error"]["code"].is_string(), "{status}: {v}");
        prop_assert!(v["error"]["message"].is_string(), "{status}: {v}");
    }
    Ok(())
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::from_bytes(b"BREW").unwrap(),
    ])
}

/// Paths near the real routes and anywhere else: segments of the routes' own words, dots,
/// percent signs, any characters (the URL encoder escapes what a path cannot hold).
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        prop::sample::select(vec![
            "v1",
            "recommend",
            "items",
            "users",
            "U3",
            "healthz",
            "openapi.json",
            "app.js",
            "..",
            ".",
            "",
            "%",
            "%00",
            "%ff",
            "{id}",
            "%2e%2e",
        ])
        .prop_map(str::to_string),
        "\\PC{0,12}",
        ".{0,12}",
    ];
    prop::collection::vec(segment, 0..5).prop_map(|s| format!("/{}", s.join("/")))
}

/// Query strings: the routes' own parameters with odd values, random pairs, raw junk.
fn query() -> impl Strategy<Value = Option<String>> {
    let key = prop_oneof![
        prop::sample::select(vec!["q", "limit", "user", "k", "", "q[]"]).prop_map(str::to_string),
        "[a-z%&=]{0,6}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "puzzle",
            "0",
            "-1",
            "101",
            "1e9",
            "99999999999999999999",
            "%",
            "%zz",
            "%00",
            "%1b%5b2J",
            "%e2%80%ae",
            "&&",
            "==",
        ])
        .prop_map(str::to_string),
        "\\PC{0,30}",
    ];
    prop::option::of(prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }))
}

/// Headers a client may send, with values of any bytes a header value may hold.
fn headers() -> impl Strategy<Value = Vec<(HeaderName, HeaderValue)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "accept",
            "content-type",
            "authorization",
            "cookie",
            "range",
            "if-none-match",
            "origin",
            "referer",
            "user-agent",
            "accept-encoding",
            "expect",
            "host",
            "x-forwarded-for",
            "connection",
            "upgrade",
            "te",
        ])
        .prop_map(str::to_string),
        "x-[a-z0-9-]{1,20}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "application/json",
            "text/plain",
            "Bearer x",
            "bytes=0-",
            "localhost",
            "evil.example",
            "*/*",
            "close",
            "keep-alive",
            "websocket",
            "100-continue",
            "gzip",
            "trailers",
            "",
        ])
        .prop_map(|v| v.as_bytes().to_vec()),
        // Visible ASCII, tab, and the bytes above 0x7f a value may carry (obs-text).
        prop::collection::vec(prop_oneof![9u8..=9, 0x20u8..0x7f, 0x80u8..=0xff], 0..60),
    ];
    prop::collection::vec((name, value), 0..6).prop_map(|hs| {
        hs.into_iter()
            .filter_map(|(n, v)| {
                Some((
                    HeaderName::from_bytes(n.as_bytes()).ok()?,
                    HeaderValue::from_bytes(&v).ok()?,
                ))
            })
            .collect()
    })
}

fn request(
    method: Method,
    path: &str,
    query: Option<&str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Vec<u8>>,
) -> Result<(), TestCaseError> {
    let (runtime, base) = server();
    let mut url = reqwest::Url::parse(base).unwrap();
    url.set_path(path);
    url.set_query(query);
    let (status, text) = runtime
        .block_on(async {
            let mut r = reqwest::Client::new().request(method.clone(), url);
            for (n, v) in headers {
                r = r.header(n, v);
            }
            if let Some(b) = body {
                r = r.body(b);
            }
            match r.send().await {
                Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
                Err(e) => Err(e.to_string()),
            }
        })
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    check_answer(&method, status, &text)
}

/// Sends `target` as the request target of a raw request and reads the answer. The router
/// answers in JSON; what hyper refuses before the router (a target that is not one) comes
/// without a body, as 400, 414 or 431.
fn raw_target(target: &[u8]) -> Result<(), TestCaseError> {
    let (_, base) = server();
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(&req).unwrap();
    let mut out = Vec::new();
    // A reset after the answer is fine: what arrived is checked.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TestCaseError::fail(format!("no status line: {text:?}")))?;
    if body.is_empty() && status >= 400 {
        prop_assert!(
            matches!(status, 400 | 414 | 431),
            "{status} without a body: {head}"
        );
        return Ok(());
    }
    check_answer(&Method::GET, status, body)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_methods_paths_queries_and_headers_never_get_a_5xx(
        method in method(),
        path in path(),
        query in query(),
        headers in headers(),
        body in prop::option::of(prop::collection::vec(any::<u8>(), 0..100)),
    ) {
        request(method, &path, query.as_deref(), headers, body)?;
    }

    #[test]
    fn random_bytes_as_the_request_target_never_get_a_5xx(
        target in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            "/[ -~]{0,80}".prop_map(String::into_bytes),
            "/v1/items\\?q=[ -~]{0,40}".prop_map(String::into_bytes),
            "/v1/users/[^ ]{0,40}".prop_map(String::into_bytes),
        ],
    ) {
        raw_target(&target)?;
    }
}

/// One step of a conversation with the server.
#[derive(Debug, Clone)]
enum Step {
    /// A new request (no session).
    Ask(String),
    /// A follow-up in the conversation's own session (the latest answer's).
    Refine(String),
    /// A new request in the conversation's own session, without `refine`.
    Restart(String),
    /// A follow-up in a session the server never issued.
    Foreign(String, String),
}

fn step() -> impl Strategy<Value = Step> {
    let text = prop_oneof![
        3 => "[a-z ]{1,40}",
        1 => "\\PC{0,30}",
        1 => "[a-z\u{0}\u{1b}\u{7f}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200e}\u{200f}\t\n ]{0,30}",
        1 => Just("Video Games, Puzzle".to_string()),
        1 => "[a-z ]{400,600}",
    ];
    let id = prop_oneof!["[0-9a-f]{32}", ".{0,40}"];
    prop_oneof![
        2 => text.clone().prop_map(Step::Ask),
        4 => text.clone().prop_map(Step::Refine),
        1 => text.clone().prop_map(Step::Restart),
        1 => (id, text).prop_map(|(id, t)| Step::Foreign(id, t)),
    ]
}

fn recommend(body: &Value) -> Result<(u16, Value), TestCaseError> {
    let (runtime, base) = server();
    let (status, text) = runtime.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/recommend"))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    check_answer(&Method::POST, status, &text)?;
    let v = serde_json::from_str(&text)
        .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {text}")))?;
    Ok((status, v))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Asks and follow-ups in any order with any text: answers in the conversation's own
    /// session keep it, state the newest text, and hold no control or bidi character; made-up
    /// sessions get 404; text past the limit or empty once cleaned gets 400.
    #[test]
    fn random_sequences_of_refines(steps in prop::collection::vec(step(), 1..8)) {
        let limit = instructrec_serve::Limits::default().max_text_chars;
        let mut session: Option<String> = None;
        for step in steps {
            let (body, text, in_session) = match &step {
                Step::Ask(t) => (json!({"intention": t, "k": 3}), t, false),
                Step::Refine(t) | Step::Restart(t) => match &session {
                    Some(s) => (
                        json!({"session": s, "refine": matches!(step, Step::Refine(_)), "intention": t, "k": 3}),
                        t,
                        true,
                    ),
                    None => continue,
                },
                Step::Foreign(id, t) => {
                    let (status, v) = recommend(&json!({"session": id, "refine": true, "intention": t}))?;
                    prop_assert_eq!(status, 404, "{}", v);
                    continue;
                }
            };
            let (status, v) = recommend(&body)?;
            let cleaned = clean_text(text);
            if cleaned.is_empty() || cleaned.chars().count() > limit {
                prop_assert_eq!(status, 400, "{}", v);
                continue;
            }
            prop_assert_eq!(status, 200, "{}", v);
            let instruction = v["instruction"].as_str().unwrap();
            prop_assert!(!instruction.chars().any(is_unsafe), "{:?}", instruction);
            prop_assert!(instruction.contains(&cleaned), "no {:?} in {:?}", cleaned, instruction);
            let answered = v["session"].as_str().unwrap().to_string();
            if in_session {
                prop_assert_eq!(Some(&answered), session.as_ref());
            }
            session = Some(answered);
        }
    }
}

/// Clients at once, each in its own conversation beside searches and health checks: each sees
/// only its own stated taste, in its own session, and nothing fails (the default queue holds
/// every client that waits).
#[test]
fn concurrent_conversations_stay_apart() {
    let (runtime, base) = server();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let tasks: Vec<_> = (0..8)
            .map(|c| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let ask = |body: Value| {
                        let (client, base) = (client.clone(), base.clone());
                        async move {
                            let r = client
                                .post(format!("{base}/v1/recommend"))
                                .json(&body)
                                .send()
                                .await
                                .unwrap();
                            let status = r.status();
                            let v: Value = r.json().await.unwrap();
                            assert!(status.is_success(), "{status}: {v}");
                            v
                        }
                    };
                    let marker = format!("taste marker {c}x");
                    let first = ask(json!({"preference": marker, "intention": "a game", "k": 2})).await;
                    let session = first["session"].as_str().unwrap().to_string();
                    for round in 0..3 {
                        let r = client.get(format!("{base}/v1/items?q=puzzle")).send().await.unwrap();
                        assert!(r.status().is_success());
                        let v = ask(json!({"session": session, "refine": true, "intention": format!("round {round}"), "k": 2})).await;
                        assert_eq!(v["session"], session.as_str());
                        let instruction = v["instruction"].as_str().unwrap();
                        assert!(instruction.contains(&marker), "{instruction}");
                        for other in (0..8).filter(|&o| o != c) {
                            assert!(!instruction.contains(&format!("taste marker {other}x")), "{instruction}");
                        }
                    }
                    session
                })
            })
            .collect();
        let mut sessions = Vec::new();
        for t in tasks {
            sessions.push(t.await.unwrap());
        }
        sessions.sort();
        sessions.dedup();
        assert_eq!(sessions.len(), 8);
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert!(r.status().is_success());
    });
}
