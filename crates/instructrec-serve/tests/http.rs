//! The HTTP API: answers, follow-ups, every refusal as a JSON 4xx naming the field, the
//! OpenAPI document against the real routes, and no 5xx or panic on mangled bodies.

mod common;

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

/// A 4xx whose JSON message contains every one of `words`.
fn assert_refused(status: StatusCode, body: &Value, expected: StatusCode, words: &[&str]) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"]
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
    assert!(!b["error"].as_str().unwrap().contains("never-seen"), "{b}");

    let (s, b) = post_raw(&base, b"{\"intention\": ".to_vec(), "application/json").await;
    assert_refused(s, &b, bad, &["not valid JSON"]);
    let (s, b) = post_raw(&base, b"[1, 2]".to_vec(), "application/json").await;
    assert_refused(s, &b, bad, &["schema"]);
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
    let base = common::start_server().await;
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
                    .json(&json!({"user": "U2"}))
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
    assert_eq!(checked, 7);

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
            assert!(answer["error"].is_string(), "{answer}");
        }
        answered += 1;
    }
    assert_eq!(answered, 150);
}
