//! Serving for instructrec: a request (who, what they had, what they want, the situation) is
//! mapped to an instruction template and filled; a matching stage retrieves candidates from
//! the whole catalogue when the request lists none; the tuned seq2seq model reranks them by the
//! likelihood of their titles. Front ends: an HTTP API with a web page ([`serve`]), a terminal
//! loop ([`interactive`]) and a loopback load test ([`bench`]).

pub mod bench;
pub mod fill;
pub mod http;
pub mod interactive;
pub mod matcher;
mod recommender;
mod request;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use matcher::{Bm25Matcher, GenerationMatcher, MatchQuery, Matcher, Matching};
pub use recommender::{Options, Recommender};
pub use request::{
    CandidateSource, IntentionStyle, ItemRef, Limits, RankedItem, RecommendRequest, RequestError,
    Response, ResponseTimings, UserRef, DEFAULT_K,
};
pub use session::{SessionState, Sessions};

/// What `instructrec serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model_dir: PathBuf,
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    pub options: Options,
    /// Model calls running at once; more wait their turn.
    pub model_slots: usize,
}

impl ServeConfig {
    pub fn new(model_dir: PathBuf, data_dir: PathBuf, addr: SocketAddr) -> Self {
        Self {
            model_dir,
            data_dir,
            addr,
            options: Options::default(),
            model_slots: default_model_slots(),
        }
    }
}

/// Model calls running at once unless told otherwise: one per CPU core.
pub fn default_model_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Loads the model and the catalogue, serves the API and the page on `config.addr` until
/// Ctrl-C, and logs the URL to open.
pub fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Bind first: a busy port should fail before the slow load.
        let listener = http::bind(config.addr).await?;
        let (model_dir, data_dir, options) =
            (config.model_dir.clone(), config.data_dir.clone(), config.options.clone());
        let rec = tokio::task::spawn_blocking(move || Recommender::load(&model_dir, &data_dir, options))
            .await??;
        let state = http::AppState::new(Arc::new(rec), config.model_slots);
        let addr = listener.local_addr()?;
        tracing::info!("serving instructrec at http://{addr}/ (open it in a browser; API description at http://{addr}/openapi.json; Ctrl-C stops)");
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(async {
                // If the signal handler cannot be installed, serve until killed.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await?;
        tracing::info!("server stopped");
        Ok(())
    })
}
