//! A recommender over a small synthetic catalogue with a tiny random model: the tests check
//! plumbing, not ranking quality.
#![allow(dead_code)] // each test binary uses part of this module

use std::sync::Arc;

use candle_core::Device;
use instructrec_instructions::TemplateLibrary;
use instructrec_model::{Preset, Seq2Seq, T5Config};
use instructrec_serve::feedback::FeedbackLog;
use instructrec_serve::http::{bind, router, AppState};
use instructrec_serve::{serve_on, Bm25Matcher, HttpConfig, Options, Recommender};

/// The model crate's fixture tokenizer (151 pieces): enough to tokenise any title.
const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../instructrec-model/tests/fixtures/t5-relu-tied/tokenizer.json"
);

pub fn recommender() -> Recommender {
    recommender_over(instructrec_eval::synthetic::prepared(60, 150, 5))
}

/// The tiny random model every test recommender uses (the same weights each time).
pub fn tiny_model() -> Seq2Seq {
    let tokenizer = tokenizers::Tokenizer::from_file(TOKENIZER).expect("fixture tokenizer");
    Seq2Seq::new_random(&T5Config::preset(Preset::Tiny), tokenizer, &Device::Cpu, 11)
        .expect("tiny model")
}

/// A tiny random model over `prepared`.
pub fn recommender_over(prepared: instructrec_data::Prepared) -> Recommender {
    recommender_with(prepared, Options::default())
}

/// A tiny random model over `prepared`, served with `options`.
pub fn recommender_with(prepared: instructrec_data::Prepared, options: Options) -> Recommender {
    let model = tiny_model();
    let matcher = Box::new(Bm25Matcher::fit(&prepared));
    Recommender::new(
        prepared,
        model,
        matcher,
        TemplateLibrary::builtin(),
        options,
    )
}

/// Serves a fresh recommender on an ephemeral loopback port with the default settings (2 model
/// slots); returns its base URL.
pub async fn start_server() -> String {
    start_server_with(HttpConfig::new(2)).await
}

/// Serves a fresh recommender with `config` on an ephemeral loopback port; returns its base URL.
pub async fn start_server_with(config: HttpConfig) -> String {
    start_shared_server(Arc::new(recommender()), config).await
}

/// Serves `rec` with `config` on an ephemeral loopback port; returns its base URL.
pub async fn start_shared_server(rec: Arc<Recommender>, config: HttpConfig) -> String {
    start_state(AppState::with_config(rec, &config), config).await
}

/// Serves `rec` with `config` and feedback appended to `log`; returns its base URL.
pub async fn start_feedback_server(
    rec: Arc<Recommender>,
    config: HttpConfig,
    log: &std::path::Path,
) -> String {
    let log = Arc::new(FeedbackLog::open(log).expect("feedback log"));
    start_state(
        AppState::with_config(rec, &config).with_feedback(log),
        config,
    )
    .await
}

/// Serves `state` on an ephemeral loopback port; returns its base URL.
pub async fn start_state(state: AppState, config: HttpConfig) -> String {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state);
    tokio::spawn(async move { serve_on(listener, app, &config, std::future::pending()).await });
    format!("http://{addr}")
}

/// POSTs `body` to `/v1/recommend` on `base`; the status and the JSON answer.
pub async fn recommend(
    base: &str,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/recommend"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let answer =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, answer)
}
