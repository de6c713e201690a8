//! Issue #18: opt-in CORS for listed origins, and `POST /v1/feedback` appending durable JSON
//! lines under the dataset's raw ids that `data prepare --feedback` reads back.

mod common;

use std::path::Path;
use std::sync::Arc;

use instructrec_data::import::{read_feedback, FeedbackEvent};
use instructrec_data::{prepare, ImportSource, PrepareOptions};
use instructrec_serve::HttpConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SHOP: &str = "https://shop.example";
const TOKEN: &str = "a-token-of-at-least-16-chars";

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn preflight(base: &str, path: &str, origin: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{base}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
}

async fn error_code(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (status, body["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_go_to_listed_origins_only() {
    let mut config = HttpConfig::new(1);
    config.token = Some(TOKEN.into());
    config.cors_origins = vec![SHOP.into(), "http://localhost:3000/".into()];
    let base = common::start_server_with(config).await;
    let client = reqwest::Client::new();

    // A preflight from a listed origin needs no token.
    let r = preflight(&base, "/v1/recommend", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(SHOP));
    let methods = header(&r, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = header(&r, "access-control-allow-headers").unwrap();
    assert!(
        allowed.contains("Authorization") && allowed.contains("Content-Type"),
        "{allowed}"
    );
    assert_eq!(header(&r, "vary"), Some("Origin"));
    // The configured trailing slash does not matter.
    let r = preflight(&base, "/v1/feedback", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );

    // Another origin gets no CORS headers, and the usual answer (here: no token, 401).
    for origin in ["https://evil.example", "https://shop.example.evil", "null"] {
        let r = preflight(&base, "/v1/recommend", origin)
            .send()
            .await
            .unwrap();
        assert!(
            header(&r, "access-control-allow-origin").is_none(),
            "{origin}"
        );
        assert!(header(&r, "access-control-allow-methods").is_none());
        let (status, error) = error_code(r).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error["code"], "unauthorized");
    }

    // Actual requests: the token still applies, and a listed origin can read the error.
    let r = client
        .post(format!("{base}/v1/recommend"))
        .header("origin", SHOP)
        .json(&json!({"intention": "a racing game"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), Some(SHOP));
    let (status, error) = error_code(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["code"], "unauthorized");
    let r = client
        .get(format!("{base}/v1/users?q=U1"))
        .header("origin", SHOP)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(SHOP));
    let r = client
        .get(format!("{base}/v1/users?q=U1"))
        .header("origin", "https://evil.example")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "access-control-allow-origin").is_none());

    // The Host allow-list comes first: a rebinding page gets 403, preflight or not.
    let r = preflight(&base, "/v1/recommend", SHOP)
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "access-control-allow-origin").is_none());
    let (status, error) = error_code(r).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["code"], "forbidden_host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_origins_there_are_no_cors_headers() {
    let base = common::start_server().await;
    let r = preflight(&base, "/v1/recommend", SHOP)
        .send()
        .await
        .unwrap();
    assert!(r
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("access-control-")));
    assert!(header(&r, "vary").is_none());
    let (status, error) = error_code(r).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error["code"], "method_not_allowed");
    let r = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .header("origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "access-control-allow-origin").is_none());
}

#[test]
fn origins_are_checked() {
    use instructrec_serve::server::parse_origin;
    assert_eq!(
        parse_origin("HTTPS://Shop.Example:8443/").unwrap(),
        "https://shop.example:8443"
    );
    assert_eq!(parse_origin("*").unwrap(), "*");
    for bad in [
        "shop.example",
        "https://shop.example/path",
        "ftp://x",
        "https://",
        "https://u@x",
        "null",
    ] {
        assert!(parse_origin(bad).is_err(), "{bad}");
    }
}

async fn post_feedback(client: &reqwest::Client, base: &str, body: Value) -> (StatusCode, Value) {
    let r = client
        .post(format!("{base}/v1/feedback"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_appended_as_whole_lines_under_raw_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("feedback.jsonl");
    let rec = Arc::new(common::recommender());
    let base = common::start_feedback_server(rec.clone(), HttpConfig::new(2), &log).await;
    let client = reqwest::Client::new();

    // Dense ids and titles are written as the source's ids.
    let (s, b) = post_feedback(
        &client,
        &base,
        json!({"user": 3, "item": 1, "event": "liked", "session": "abc123"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["user"], &b["item"], &b["event"], &b["session"]),
        (
            &json!("U3"),
            &json!("S00001"),
            &json!("liked"),
            &json!("abc123")
        )
    );
    assert!(b["timestamp"].as_i64().unwrap() > 1_600_000_000);

    // 50 concurrent posts: 50 more whole lines.
    let posts = (0..50).map(|i| {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let event = ["clicked", "liked", "bought"][i % 3];
            post_feedback(
                &client,
                &base,
                json!({"user": format!("U{}", i % 7), "item": format!("S{:05}", i), "event": event}),
            )
            .await
        })
    });
    for p in posts.collect::<Vec<_>>() {
        let (s, b) = p.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'));
    let records = read_feedback(&log).unwrap();
    assert_eq!(records.len(), 51);
    assert_eq!(text.lines().count(), 51);
    assert_eq!(records[0].user, "U3");
    let mut items: Vec<&str> = records[1..].iter().map(|r| r.item.as_str()).collect();
    items.sort();
    let expected: Vec<String> = (0..50).map(|i| format!("S{i:05}")).collect();
    assert_eq!(items, expected);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.event == FeedbackEvent::Bought)
            .count(),
        16
    );

    // Refusals write nothing.
    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        (
            json!({"user": "U1", "item": "NOPE", "event": "liked"}),
            "invalid_field",
            "item",
        ),
        (
            json!({"user": "U1", "item": 99999, "event": "liked"}),
            "invalid_field",
            "item",
        ),
        (
            json!({"user": "nobody", "item": 1, "event": "liked"}),
            "invalid_field",
            "user",
        ),
        (
            json!({"user": "U1", "item": 1, "event": "loved"}),
            "invalid_field",
            "event",
        ),
        (
            json!({"user": "U1", "event": "liked"}),
            "missing_field",
            "item",
        ),
        (
            json!({"user": "U1", "item": 1, "event": "liked", "rating": 5}),
            "unknown_field",
            "rating",
        ),
        (
            json!({"user": "U1", "item": 1, "event": "liked", "session": "a b"}),
            "invalid_field",
            "session",
        ),
    ];
    for (body, code, field) in cases {
        let (s, b) = post_feedback(&client, &base, body.clone()).await;
        assert_eq!(s, bad, "{body}: {b}");
        assert_eq!(b["error"]["code"], code, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{body}: {b}");
    }
    assert_eq!(read_feedback(&log).unwrap().len(), 51);

    // Without a log the route is off.
    let off = common::start_shared_server(rec, HttpConfig::new(1)).await;
    let (s, b) = post_feedback(
        &client,
        &off,
        json!({"user": "U1", "item": 1, "event": "liked"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"]["code"], "not_found");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--feedback-log"));
}

#[test]
fn a_cut_last_line_is_closed_before_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("f.jsonl");
    std::fs::write(&log, "{\"timestamp\": 1, \"user\": \"U").unwrap();
    let opened = instructrec_serve::feedback::FeedbackLog::open(&log).unwrap();
    opened
        .append(&instructrec_serve::feedback::FeedbackRecord {
            timestamp: 2,
            user: "U1".into(),
            item: "S00001".into(),
            event: FeedbackEvent::Bought,
            session: None,
        })
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1],
        r#"{"timestamp":2,"user":"U1","item":"S00001","event":"bought"}"#
    );
    // The cut line is reported with its number, not skipped.
    let e = read_feedback(&log).unwrap_err().to_string();
    assert!(e.contains("f.jsonl:1"), "{e}");
}

fn amazon2018() -> ImportSource {
    ImportSource::Dir {
        dir: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../instructrec-data/tests/fixtures/amazon2018"),
        format: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_feedback_comes_back_as_interactions_when_preparing() {
    // k = 1; lists of 2 (AUSER2 will have 5 of the 6 items).
    let options = PrepareOptions {
        k_core: 1,
        candidate_sizes: vec![2],
        ..PrepareOptions::default()
    };
    let (prepared, before) = prepare(&amazon2018(), &options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("feedback.jsonl");
    let rec = Arc::new(common::recommender_over(prepared));
    let base = common::start_feedback_server(rec, HttpConfig::new(1), &log).await;
    let client = reqwest::Client::new();
    for (user, item, event) in [
        ("AUSER2", "B0000000B2", "liked"),
        ("AUSER2", "B0000000C3", "bought"),
        ("AUSER3", "B0000000A1", "clicked"),
    ] {
        let (s, b) = post_feedback(
            &client,
            &base,
            json!({"user": user, "item": item, "event": event}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    let (after, report) = prepare(&amazon2018().with_feedback(log.clone()), &options).unwrap();
    // Two liked/bought events became interactions; the click did not.
    assert_eq!(
        report.imported.interactions,
        before.imported.interactions + 2
    );
    assert_eq!(report.counts.interactions, before.counts.interactions + 2);
    assert!(report.source.paths.contains(&log.display().to_string()));
    let d = &after.dataset;
    let u2 = d.users.iter().find(|u| u.original_id == "AUSER2").unwrap();
    let tail: Vec<&str> = d.sequences[u2.id.index()]
        .iter()
        .rev()
        .take(2)
        .map(|i| d.items[i.item.index()].original_id.as_str())
        .collect();
    assert_eq!(tail, ["B0000000C3", "B0000000B2"]);
}
