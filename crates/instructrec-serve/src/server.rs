//! The HTTP server around the router: the accept loop with its per-connection limits, and the
//! settings that protect a server facing clients it does not trust (timeouts, the queue for
//! model slots, the Host allow-list, the bearer token).
//!
//! axum's own `serve` gives hyper no timer, so hyper's header-read timeout never fires and a
//! client that sends half a request line keeps its connection (and its task) for good. This
//! loop drives hyper's HTTP/1 connections itself with a timer, a header-read timeout (which also
//! closes idle keep-alive connections) and a cap on open connections.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Bytes hyper buffers for a request's line and headers; a longer head is answered by hyper
/// itself (431, no body). The router refuses smaller excesses with a JSON body first (see
/// `protect::MAX_HEADER_BYTES`).
pub const HYPER_MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers hyper parses; more are answered by hyper itself (431, no body).
pub const HYPER_MAX_HEADERS: usize = 100;
/// The environment variable `serve` reads the bearer token from when no token file is given.
pub const TOKEN_ENV: &str = "INSTRUCTREC_TOKEN";
/// Shortest token accepted: a guessable token would protect nothing.
pub const MIN_TOKEN_CHARS: usize = 16;

/// How the server treats connections and requests. [`HttpConfig::new`] gives the defaults
/// `instructrec serve` uses. Its `Debug` form hides the token.
#[derive(Clone, PartialEq)]
pub struct HttpConfig {
    /// Model calls running at once.
    pub model_slots: usize,
    /// Model requests that may wait for a slot; beyond that a request is answered 503 with
    /// `Retry-After` at once rather than queued without bound.
    pub queue: usize,
    /// Time a client has to send a request line and its headers, counted from when the server
    /// starts reading them; also how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its headers are in (408).
    pub body_timeout: Duration,
    /// Time the server has to answer once the body is in, waiting for a model slot included
    /// (503 with `Retry-After`).
    pub request_timeout: Duration,
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Host names (no port) requests may be addressed to, beside the loopback names and the
    /// bound address; `*` allows any (for a server behind a proxy that checks it).
    pub allowed_hosts: Vec<String>,
    /// When set, every request except the page, its files, the API document and the health
    /// check needs `Authorization: Bearer <token>`. Required on a non-loopback address.
    pub token: Option<String>,
    /// Web origins (`https://shop.example`, scheme and host and port, as browsers send them in
    /// `Origin`) whose pages may call the API from the browser: their requests and preflights
    /// get CORS headers. `*` allows any origin. Empty (the default): no CORS headers at all.
    pub cors_origins: Vec<String>,
}

impl HttpConfig {
    pub fn new(model_slots: usize) -> Self {
        let model_slots = model_slots.max(1);
        Self {
            model_slots,
            queue: 4 * model_slots,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 256,
            allowed_hosts: Vec::new(),
            token: None,
            cors_origins: Vec::new(),
        }
    }

    /// Allows requests addressed to `addr`'s IP (unless it is the unspecified address, which
    /// no client addresses).
    pub fn allow_address(&mut self, addr: SocketAddr) {
        if !addr.ip().is_unspecified() {
            self.allowed_hosts.push(match addr.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("model_slots", &self.model_slots)
            .field("queue", &self.queue)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

/// An origin as `--cors-origin` takes it, in the form compared with a request's `Origin`:
/// `http://` or `https://`, a host and an optional port, nothing after (a trailing `/` is
/// dropped), lower case; or `*` for any origin.
pub fn parse_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim();
    if origin == "*" {
        return Ok(origin.to_string());
    }
    let lower = origin.to_ascii_lowercase();
    let lower = lower.strip_suffix('/').unwrap_or(&lower);
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or("an origin starts with http:// or https:// (e.g. https://shop.example)")?;
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c));
    if !host_ok {
        return Err(
            "an origin is a scheme, a host and an optional port, with no path, query or user              (e.g. https://shop.example:8443)"
                .into(),
        );
    }
    Ok(lower.to_string())
}

/// The bearer token: the file's content (trimmed) when a file is given, else the
/// `INSTRUCTREC_TOKEN` environment variable when set; `None` when neither is.
pub fn read_token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let (token, from) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var(TOKEN_ENV) {
            Ok(t) => (t, TOKEN_ENV.to_string()),
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim();
    if token.chars().count() < MIN_TOKEN_CHARS || !token.chars().all(|c| c.is_ascii_graphic()) {
        anyhow::bail!(
            "{from}: the token must be at least {MIN_TOKEN_CHARS} printable ASCII characters \
             without spaces (e.g. the output of `head -c 24 /dev/urandom | base64`)"
        );
    }
    Ok(Some(token.to_string()))
}

/// Checks that a server on `addr` with `token` is not open to the network without one.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "{addr} is reachable from other machines, so the server needs a bearer token: \
             give --token-file PATH or set {TOKEN_ENV} (or listen on 127.0.0.1)"
        );
    }
    Ok(())
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish
/// (for at most 10 s).
pub async fn serve_on(
    listener: TcpListener,
    app: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(HYPER_MAX_HEAD_BYTES)
        .max_headers(HYPER_MAX_HEADERS)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => p.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Per-connection failures (a reset before accept, too many open files):
                    // the listener itself is fine, so pause briefly rather than spin or stop.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Header timeouts, resets and parse errors end here; hyper has already answered
            // what it could.
            if let Err(e) = connection.await {
                tracing::debug!("connection from {peer} closed: {e}");
            }
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("stopping with requests still in flight");
        }
    }
    Ok(())
}
