//! The HTTP API: answers, follow-ups, every refusal as a JSON 4xx naming the field, the
//! OpenAPI document against the real routes, and no 5xx or panic on mangled bodies.

mod common;

use instructrec_serve::http::ErrorCode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn post(base: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/recommend"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, body)
}

async fn post_raw(base: &str, body: Vec<u8>, content_type: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/recommend"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, body)
}

async fn get(base: &str, path: &str) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: {status}: not JSON ({e}): {text}"));
    (status, body)
}

/// A 4xx whose JSON error has a code and a message containing every one of `words`.
fn assert_refused(status: StatusCode, body: &Value, expected: StatusCode, words: &[&str]) {
    assert_eq!(status, expected, "{body}");
    let code: ErrorCode = serde_json::from_value(body["error"]["code"].clone())
        .unwrap_or_else(|e| panic!("no error code ({e}): {body}"));
    assert_eq!(code.status(), status, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"));
    for w in words {
        assert!(message.contains(w), "`{message}` does not mention `{w}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_refines() {
    let base = common::start_server().await;
    let (status, first) = post(
        &base,
        json!({"user": "U3", "intention": "a racing game", "k": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(first["template"], "p1i1-rerank-a");
    assert_eq!(first["scenario"], "P1 I1 T3");
    assert_eq!(first["candidate_source"], "matched");
    assert_eq!(first["matcher"], "bm25");
    assert!(first["instruction"]
        .as_str()
        .unwrap()
        .contains("a racing game"));
    let scores: Vec<f64> = items.iter().map(|i| i["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for (r, i) in items.iter().enumerate() {
        assert_eq!(i["rank"], r + 1);
        assert!(i["title"].as_str().is_some_and(|t| !t.is_empty()));
    }

    let session = first["session"].as_str().unwrap();
    let (status, second) = post(
        &base,
        json!({"session": session, "refine": true, "intention": "for two players", "k": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["refined"], true);
    assert_eq!(second["session"], session);
    assert_eq!(second["candidate_source"], "previous_and_matched");
    let instruction = second["instruction"].as_str().unwrap();
    assert!(
        instruction.contains("a racing game") && instruction.contains("for two players"),
        "{instruction}"
    );

    // Category queries are specific (I2); listed candidates are reranked as given.
    let (status, search) = post(
        &base,
        json!({"intention": "Video Games, Puzzle", "candidates": ["S00001", "Racing game number 4", 9], "k": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{search}");
    assert_eq!(search["scenario"], "P0 I2 T3");
    assert_eq!(search["candidate_source"], "request");
    let mut ids: Vec<u64> = search["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 4, 9]);

    // Stated taste with a history: P2 in the instruction.
    let (status, taste) = post(
        &base,
        json!({"history": [1, 2, 3], "preference": "I love puzzles"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{taste}");
    assert_eq!(taste["scenario"], "P2 I0 T3");
    assert_eq!(taste["items"].as_array().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_json_4xx_naming_the_field() {
    let base = common::start_server().await;
    let bad = StatusCode::BAD_REQUEST;
    let (s, b) = post(&base, json!({"history": ["NOPE-123"]})).await;
    assert_refused(s, &b, bad, &["history[0]", "NOPE-123"]);
    let (s, b) = post(&base, json!({"intention": "x", "candidates": [3, 99999]})).await;
    assert_refused(s, &b, bad, &["candidates[1]", "99999"]);
    let (s, b) = post(&base, json!({"user": "nobody"})).await;
    assert_refused(s, &b, bad, &["user", "nobody"]);
    let (s, b) = post(&base, json!({"intention": ""})).await;
    assert_refused(s, &b, bad, &["intention", "empty"]);
    let (s, b) = post(&base, json!({"intention": "   "})).await;
    assert_refused(s, &b, bad, &["intention", "empty"]);
    let (s, b) = post(&base, json!({})).await;
    assert_refused(s, &b, bad, &["nothing to recommend"]);
    let (s, b) = post(&base, json!({"intention": "x", "candidates": []})).await;
    assert_refused(s, &b, bad, &["candidates", "empty"]);
    for k in [json!(0), json!(51), json!(1_000_000)] {
        let (s, b) = post(&base, json!({"intention": "x", "k": k})).await;
        assert_refused(s, &b, bad, &["k", "out of range"]);
    }
    for k in [json!(-1), json!("ten"), json!(2.5)] {
        let (s, b) = post(&base, json!({"intention": "x", "k": k})).await;
        assert_refused(s, &b, bad, &["k"]);
    }
    let (s, b) = post(&base, json!({"intention": "x", "colour": "red"})).await;
    assert_refused(s, &b, bad, &["colour"]);
    let (s, b) = post(&base, json!({"intention": "x".repeat(501)})).await;
    assert_refused(s, &b, bad, &["intention", "limit of 500"]);
    let (s, b) = post(&base, json!({"history": vec![1; 201]})).await;
    assert_refused(s, &b, bad, &["history", "limit of 200"]);
    let (s, b) = post(&base, json!({"intention": "x", "candidates": vec![1; 101]})).await;
    assert_refused(s, &b, bad, &["candidates", "limit of 100"]);
    let (s, b) = post(&base, json!({"intention": "x", "refine": true})).await;
    assert_refused(s, &b, bad, &["session", "refine"]);
    // Only ids the server issued name a session, with or without `refine`; the id sent is not
    // echoed.
    let (s, b) = post(
        &base,
        json!({"intention": "x", "session": "no such one", "refine": false}),
    )
    .await;
    assert_refused(s, &b, StatusCode::NOT_FOUND, &["session", "not issued"]);
    let (s, b) = post(
        &base,
        json!({"intention": "x", "session": "never-seen", "refine": true}),
    )
    .await;
    assert_refused(s, &b, StatusCode::NOT_FOUND, &["session", "not issued"]);
    assert!(!b["error"].to_string().contains("never-seen"), "{b}");

    let (s, b) = post_raw(&base, b"{\"intention\": ".to_vec(), "application/json").await;
    assert_refused(s, &b, bad, &["not valid JSON"]);
    let (s, b) = post_raw(&base, b"[1, 2]".to_vec(), "application/json").await;
    assert_refused(s, &b, bad, &["JSON object", "array"]);
    let (s, b) = post_raw(&base, b"{\"intention\": \"x\"}".to_vec(), "text/plain").await;
    assert_refused(s, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE, &["Content-Type"]);
    let huge = serde_json::to_vec(&json!({"intention": "y".repeat(200_000)})).unwrap();
    let (s, b) = post_raw(&base, huge, "application/json").await;
    assert_refused(s, &b, StatusCode::PAYLOAD_TOO_LARGE, &["larger than"]);

    let (s, b) = get(&base, "/v1/items").await;
    assert_refused(s, &b, bad, &["q"]);
    let (s, b) = get(&base, "/v1/items?q=racing&limit=0").await;
    assert_refused(s, &b, bad, &["limit"]);
    let (s, b) = get(&base, "/v1/items?q=racing&limit=many").await;
    assert_refused(s, &b, bad, &["limit"]);
    let (s, b) = get(&base, "/v1/users/nobody").await;
    assert_refused(s, &b, StatusCode::NOT_FOUND, &["nobody"]);
    let (s, b) = get(&base, "/nowhere").await;
    assert_refused(s, &b, StatusCode::NOT_FOUND, &["no such route"]);
    let (s, b) = get(&base, "/v1/recommend").await;
    assert_refused(s, &b, StatusCode::METHOD_NOT_ALLOWED, &["method"]);
}

/// Every path and method the document lists answers as documented; its limits are the
/// server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::start_feedback_server(
        std::sync::Arc::new(common::recommender()),
        instructrec_serve::HttpConfig::new(2),
        &dir.path().join("feedback.jsonl"),
    )
    .await;
    let (status, doc) = get(&base, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let url = format!("{base}{}", path.replace("{id}", "U2"));
            let r = match method.as_str() {
                "get" => client.get(format!("{url}?q=racing")).send().await.unwrap(),
                "post" => client
                    .post(&url)
                    .json(&if path == "/v1/feedback" {
                        json!({"user": "U2", "item": "S00001", "event": "clicked"})
                    } else {
                        json!({"user": "U2"})
                    })
                    .send()
                    .await
                    .unwrap(),
                other => panic!("{path}: undocumented method {other} in the test"),
            };
            let code = r.status().as_u16().to_string();
            assert!(
                op["responses"].get(&code).is_some(),
                "{method} {path}: {code} is not documented"
            );
            assert!(r.status().is_success(), "{method} {path}: {}", r.status());
            checked += 1;
        }
    }
    assert_eq!(checked, 11);

    let limits = instructrec_serve::Limits::default();
    let req = &doc["components"]["schemas"]["RecommendRequest"]["properties"];
    assert_eq!(req["history"]["maxItems"], limits.max_history);
    assert_eq!(req["candidates"]["maxItems"], limits.max_candidates);
    assert_eq!(req["k"]["maximum"], limits.max_k);
    assert_eq!(req["k"]["default"], instructrec_serve::DEFAULT_K);
    assert_eq!(req["intention"]["maxLength"], limits.max_text_chars);
    assert_eq!(
        limits.max_body_bytes,
        64 * 1024,
        "the description says 64 KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_and_user_lookups() {
    let base = common::start_server().await;
    let (s, b) = get(&base, "/v1/items?q=puzzle&limit=5").await;
    assert_eq!(s, StatusCode::OK);
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(
        items
            .iter()
            .all(|i| i["title"].as_str().unwrap().starts_with("Puzzle")),
        "{b}"
    );
    let (s, b) = get(&base, "/v1/users?q=U1&limit=3").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["users"].as_array().unwrap().len(), 3);
    let (s, b) = get(&base, "/v1/users/U1").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!b["history"].as_array().unwrap().is_empty());
    let (s, b) = get(&base, "/healthz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["status"], "ok");
    assert_eq!(b["items"], 150);
}

/// Valid requests mangled at random (bytes flipped, cut, spliced with JSON tokens): every
/// answer is JSON and no status is a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_bodies_never_get_a_5xx() {
    let base = common::start_server().await;
    let seeds = [
        json!({"user": "U3", "intention": "a racing game", "k": 3}),
        json!({"history": [1, "S00002", "Puzzle game number 5"], "preference": "puzzles", "candidates": [4, 5, 6]}),
        json!({"intention": "Video Games, Racing", "context": "on a train", "session": "abc", "k": 2}),
    ];
    let tokens: [&[u8]; 12] = [
        b"null",
        b"-1",
        b"1e999",
        b"\"\"",
        b"[]",
        b"{}",
        b"true",
        b"\"\\u0000\"",
        b"99999999999",
        b",",
        b"\"k\":",
        b"\xff",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut answered = 0;
    for i in 0..150 {
        let mut body = serde_json::to_vec(&seeds[i % seeds.len()]).unwrap();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=body.len());
            match rng.random_range(0..4) {
                0 => body.truncate(at),
                1 if at < body.len() => body[at] = rng.random(),
                2 => {
                    let t = tokens[rng.random_range(0..tokens.len())];
                    body.splice(at..at, t.iter().copied());
                }
                _ => {
                    let depth = rng.random_range(1..200);
                    body.splice(at..at, std::iter::repeat_n(b'[', depth));
                }
            }
        }
        let (status, answer) = post_raw(&base, body, "application/json").await;
        assert!(status.as_u16() < 500, "{status}: {answer}");
        if status.is_client_error() {
            assert!(answer["error"]["code"].is_string(), "{answer}");
            assert!(answer["error"]["message"].is_string(), "{answer}");
        }
        answered += 1;
    }
    assert_eq!(answered, 150);
}

/// Every error code a request can provoke here, with its status and the field it names
/// (`request_timeout`, `overloaded`, `unauthorized` and `invalid_request` for a missing Host are
/// asserted in tests/abuse.rs, which controls timing, tokens and raw bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_code_comes_with_its_status_and_field() {
    let base = common::start_server().await;
    let client = reqwest::Client::new();
    let recommend = format!("{base}/v1/recommend");
    let json_post = |body: &str| {
        client
            .post(&recommend)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let many_headers = (0..70).fold(client.get(format!("{base}/healthz")), |r, i| {
        r.header(format!("x-h{i}"), "v")
    });
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        (json_post("{\"k\": 3,"), 400, "invalid_json", None),
        (
            json_post("{\"k\": \"ten\"}"),
            400,
            "invalid_field",
            Some("k"),
        ),
        (
            json_post("{\"history\": [1, {}]}"),
            400,
            "invalid_field",
            Some("history[1]"),
        ),
        (
            json_post("{\"candidates\": [3, 99999], \"intention\": \"x\"}"),
            400,
            "invalid_field",
            Some("candidates[1]"),
        ),
        (
            json_post("{\"intention\": \"x\", \"refine\": true}"),
            400,
            "missing_field",
            Some("session"),
        ),
        (
            client.get(format!("{base}/v1/items")),
            400,
            "missing_field",
            Some("q"),
        ),
        (
            json_post("{\"intention\": \"x\", \"colour\": \"red\"}"),
            400,
            "unknown_field",
            Some("colour"),
        ),
        (
            client.get(format!("{base}/v1/items?q=x&sort=asc")),
            400,
            "unknown_field",
            Some("sort"),
        ),
        (
            client.get(format!("{base}/v1/items?q=x&limit=many")),
            400,
            "invalid_field",
            Some("limit"),
        ),
        (json_post("{}"), 400, "empty_request", None),
        (
            client
                .get(format!("{base}/healthz"))
                .header("host", "evil.example"),
            403,
            "forbidden_host",
            None,
        ),
        (
            client.get(format!("{base}/nowhere")),
            404,
            "not_found",
            None,
        ),
        (
            client.get(format!("{base}/v1/users/nobody")),
            404,
            "not_found",
            None,
        ),
        (
            json_post("{\"intention\": \"x\", \"session\": \"never-seen\"}"),
            404,
            "unknown_session",
            Some("session"),
        ),
        (client.get(&recommend), 405, "method_not_allowed", None),
        (
            client.post(&recommend).body("{\"intention\": \"x\"}"),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            json_post(&format!(
                "{{\"intention\": \"{}\"}}",
                "y".repeat(100 * 1024)
            )),
            413,
            "body_too_large",
            None,
        ),
        (
            client.get(format!("{base}/v1/items?q={}", "a".repeat(9_000))),
            414,
            "uri_too_long",
            None,
        ),
        (many_headers, 431, "headers_too_large", None),
    ];
    for (request, status, code, field) in cases {
        let r = request.send().await.unwrap();
        let got = r.status().as_u16();
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let error = &body["error"];
        assert_eq!(
            (got, error["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        let parsed: ErrorCode = serde_json::from_value(error["code"].clone()).unwrap();
        assert_eq!(parsed.status().as_u16(), status, "{body}");
        assert!(
            !error["message"].as_str().unwrap_or("").is_empty(),
            "{body}"
        );
        assert_eq!(error["field"].as_str(), field, "{body}");
        let keys: Vec<&String> = error.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["code", "message", "field"].contains(&k.as_str())),
            "{body}"
        );
    }
}

/// A syntax error says where, in the server's words: no serde or axum text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_syntax_errors_name_line_and_column_without_framework_words() {
    let base = common::start_server().await;
    for (body, line, column) in [
        ("{\"intention\": \"x\",\n  \"k\": 3,\n}", 3, 1),
        ("{\"intention\" \"x\"}", 1, 14),
        ("{\"intention\": ", 1, 14),
        ("{\"k\": 1} trailing", 1, 10),
    ] {
        let (s, b) = post_raw(&base, body.as_bytes().to_vec(), "application/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["code"], "invalid_json", "{b}");
        let message = b["error"]["message"].as_str().unwrap();
        let at = format!("the body is not valid JSON at line {line}, column {column}");
        assert!(
            message.starts_with(&at),
            "{body:?}: `{message}` is not `{at}...`"
        );
    }
    // Schema errors too: every message of a mangled request is the server's own.
    for body in [
        "{\"intention\" \"x\"}",
        "{\"k\": -1}",
        "{\"k\": 2.5, \"intention\": \"x\"}",
        "{\"user\": [1]}",
        "{\"history\": \"S00001\"}",
        "{\"intention_style\": \"loud\", \"intention\": \"x\"}",
        "{\"refine\": null, \"intention\": \"x\"}",
        "{\"colour\": 1}",
        "[1, 2]",
        "",
        "\"just a string\"",
    ] {
        let (s, b) = post_raw(&base, body.as_bytes().to_vec(), "application/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body:?}: {b}");
        let message = b["error"]["message"].as_str().unwrap();
        for word in [
            "serde",
            "axum",
            "Json",
            "deserialize",
            "Failed to",
            "invalid type",
            "expected value",
        ] {
            assert!(
                !message.contains(word),
                "{body:?}: `{message}` says `{word}`"
            );
        }
    }
    for path in ["/v1/items?q=x&limit=-3", "/v1/users?nope=1"] {
        let (s, b) = get(&base, path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(!message.contains("deserialize"), "{message}");
    }
}

/// The codes are one fixed set: each serialises to its documented name, and docs/serving.md and
/// the OpenAPI document list every one with its status.
#[test]
fn error_codes_are_documented_with_their_status() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/serving.md"
    ))
    .unwrap();
    let doc = instructrec_serve::http::openapi_document(&instructrec_serve::Limits::default());
    let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, all, "the OpenAPI enum and ErrorCode::ALL differ");
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        let back: ErrorCode = serde_json::from_value(json!(code.as_str())).unwrap();
        assert_eq!(back, code);
        let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
        assert!(docs.contains(&row), "docs/serving.md lacks the row `{row}`");
    }
}
