//! `POST /v1/recommend` through the server's whole router (host check, limits, the JSON
//! extractor, validation of every field, matching and the model) with the input as the body,
//! on a tiny random model over a synthetic catalogue (as the serve crate's tests build it).
//! The properties are those of `instructrec-serve/tests/fuzz_http.rs`: no 5xx, every answer
//! is JSON, and every 4xx carries an `error` with a code and a message.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use http_body_util::BodyExt;
use instructrec_instructions::TemplateLibrary;
use instructrec_model::{Preset, Seq2Seq, T5Config};
use instructrec_serve::http::{router, AppState};
use instructrec_serve::{Bm25Matcher, HttpConfig, Options, Recommender};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// The model crate's fixture tokenizer (151 pieces): enough to tokenise any title.
const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/instructrec-model/tests/fixtures/t5-relu-tied/tokenizer.json"
);

fn server() -> &'static (tokio::runtime::Runtime, Router) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let prepared = instructrec_eval::synthetic::prepared(60, 150, 5);
        let tokenizer = tokenizers::Tokenizer::from_file(TOKENIZER).expect("fixture tokenizer");
        let device = candle_core::Device::Cpu;
        let model = Seq2Seq::new_random(&T5Config::preset(Preset::Tiny), tokenizer, &device, 11)
            .expect("tiny model");
        let matcher = Box::new(Bm25Matcher::fit(&prepared));
        // Fewer matches than the default: the model's scoring is most of an execution's time.
        let options = Options {
            matched: 5,
            ..Options::default()
        };
        let library = TemplateLibrary::builtin();
        let rec = Recommender::new(prepared, model, matcher, library, options);
        let app = router(AppState::with_config(Arc::new(rec), &HttpConfig::new(1)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        (runtime, app)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, app) = server();
    let request = Request::post("/v1/recommend")
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(data.to_vec()))
        .expect("a request");
    let (status, body) = runtime.block_on(async {
        let response = app.clone().oneshot(request).await.expect("the router answers");
        let status = response.status();
        let body = response.into_body().collect().await.expect("the body").to_bytes();
        (status, body)
    });
    let text = String::from_utf8_lossy(&body);
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: the answer is not JSON ({e}): {text}"));
    assert!(status.as_u16() < 500, "{status}: {answer}");
    if status.is_client_error() {
        let error = &answer["error"];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{status} without an error code and message: {answer}"
        );
    }
});
