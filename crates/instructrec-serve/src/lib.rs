//! Serving for instructrec: a request (who, what they had, what they want, the situation) is
//! mapped to an instruction template and filled; a matching stage retrieves candidates from
//! the whole catalogue when the request lists none; the tuned seq2seq model reranks them by the
//! likelihood of their titles. Front ends: an HTTP API with a web page ([`serve`]), a terminal
//! loop ([`interactive`]) and a loopback load test ([`bench`]).

pub mod bench;
mod catalogue;
pub mod feedback;
pub mod fill;
pub mod http;
pub mod interactive;
pub mod matcher;
mod parse;
mod protect;
mod recommender;
mod request;
pub mod sanitize;
pub mod server;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use catalogue::{Example, Examples, HistoryLink, Placeholders, Why};
pub use matcher::{Bm25Matcher, GenerationMatcher, MatchQuery, Matcher, Matching, TwoTowerMatcher};
pub use parse::RECOMMEND_FIELDS;
pub use recommender::{Options, Recommender};
pub use request::{
    CandidateSource, FeedbackRequest, IntentionStyle, ItemRef, Limits, RankedItem,
    RecommendRequest, RequestError, Response, ResponseTimings, ScoredGroup, StatedNeed, UserRef,
    DEFAULT_K,
};
pub use server::{check_exposure, read_token, serve_on, HttpConfig};
pub use session::{SessionState, Sessions, SESSION_ID_LEN};

/// What `instructrec serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model_dir: PathBuf,
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    pub options: Options,
    /// Model slots and queue, timeouts, allowed hosts, token, CORS origins.
    pub http: HttpConfig,
    /// Where `POST /v1/feedback` appends events; `None` turns the route off.
    pub feedback_log: Option<PathBuf>,
    /// A directory of sessions shared with other replicas; `None` keeps them in memory.
    pub session_dir: Option<PathBuf>,
}

impl ServeConfig {
    pub fn new(model_dir: PathBuf, data_dir: PathBuf, addr: SocketAddr) -> Self {
        Self {
            model_dir,
            data_dir,
            addr,
            options: Options::default(),
            http: HttpConfig::new(default_model_slots()),
            feedback_log: None,
            session_dir: None,
        }
    }
}

/// Model calls running at once unless told otherwise: one per CPU core.
pub fn default_model_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Loads the model and the catalogue, serves the API and the page on `config.addr` until
/// Ctrl-C, and logs the URL to open. Refuses to listen beyond loopback without a token.
pub fn serve(mut config: ServeConfig) -> anyhow::Result<()> {
    check_exposure(config.addr, config.http.token.as_deref())?;
    for origin in &config.http.cors_origins {
        server::parse_origin(origin).map_err(|e| anyhow::anyhow!("--cors-origin {origin}: {e}"))?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Bind first: a busy port should fail before the slow load.
        let listener = http::bind(config.addr).await?;
        // Open the log before the slow load too: a path that cannot be written fails at once.
        let feedback = config
            .feedback_log
            .as_deref()
            .map(feedback::FeedbackLog::open)
            .transpose()?
            .map(Arc::new);
        let (model_dir, data_dir, options) =
            (config.model_dir.clone(), config.data_dir.clone(), config.options.clone());
        let session_dir = config.session_dir.clone();
        let rec = tokio::task::spawn_blocking(move || {
            let mut rec = Recommender::load(&model_dir, &data_dir, options)?;
            if let Some(dir) = session_dir {
                rec.share_sessions(&dir)
                    .map_err(|e| anyhow::anyhow!("--session-dir {}: {e}", dir.display()))?;
                tracing::info!("sessions are kept in {}", dir.display());
            }
            anyhow::Ok(rec)
        })
        .await??;
        let addr = listener.local_addr()?;
        config.http.allow_address(addr);
        let mut state = http::AppState::with_config(Arc::new(rec), &config.http);
        if let Some(log) = feedback {
            tracing::info!("appending feedback to {}", log.path().display());
            state = state.with_feedback(log);
        }
        tracing::info!("serving instructrec at http://{addr}/ (open it in a browser; API description at http://{addr}/openapi.json; Ctrl-C stops)");
        if config.http.token.is_some() {
            tracing::info!("the API needs the bearer token: the page asks for it, or open http://{addr}/#token=TOKEN");
        }
        if addr.ip().is_unspecified() && config.http.allowed_hosts.is_empty() {
            tracing::warn!("listening on every interface, but only requests addressed to localhost, 127.0.0.1 or [::1] are answered: add --allow-host NAME for each name or address clients use");
        }
        let shutdown = async {
            // If the signal handler cannot be installed, serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        serve_on(listener, http::router(state), &config.http, shutdown).await?;
        tracing::info!("server stopped");
        Ok(())
    })
}
