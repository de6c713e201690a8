//! Property tests of the HTTP request body beyond `http.rs`'s mangled valid requests: arbitrary
//! bytes, and arbitrary JSON documents (any shape, with the request's own field names mixed
//! in). Every answer must be JSON, no status a 5xx, and every 4xx must carry an error message.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
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
    if status.is_client_error() {
        prop_assert!(answer["error"].is_string(), "{answer}");
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
            prop::sample::select(vec![
                "user",
                "history",
                "preference",
                "intention",
                "intention_style",
                "context",
                "candidates",
                "k",
                "session",
                "refine",
            ])
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
