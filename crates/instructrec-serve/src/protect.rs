//! The middleware every request passes through before a handler, outermost first:
//! - an access log line (method, path without the query, status, latency; never the query or
//!   the body, which hold what users say about themselves);
//! - a JSON body for any error response that lacks one;
//! - the Host allow-list, against DNS rebinding: a page on another site whose name an attacker
//!   points at 127.0.0.1 sends its own name as Host, so it is refused (403) and cannot read a
//!   user's history through the victim's browser;
//! - CORS, when origins are configured: a preflight (`OPTIONS` with
//!   `Access-Control-Request-Method`) from a listed origin is answered here, before the token
//!   check (browsers send preflights without credentials); other answers to a listed origin
//!   get `Access-Control-Allow-Origin`. Behind the Host check, so DNS rebinding stays refused;
//! - the bearer token, when one is configured;
//! - limits on the request's head (414, 431), the body read within a time limit (408) and a
//!   size limit (413), and the handler's time limit (503).

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::{ApiError, ErrorCode};
use crate::server::HttpConfig;

/// Longest request target (path and query) the router takes; longer ones get a JSON 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total size of the headers (names, values) the router takes; larger get a JSON 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers the router takes; more get a JSON 431.
pub const MAX_HEADERS: usize = 64;
/// Paths served without a token: the page and its files, the API document, the health check.
pub(crate) const PUBLIC_PATHS: [&str; 5] =
    ["/", "/app.js", "/style.css", "/openapi.json", "/healthz"];
/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_S: u64 = 1;
const ACCESS_TARGET: &str = "instructrec_serve::access";

/// What the middleware checks requests against (no `Debug`: it holds the token).
pub struct Guard {
    /// `None`: any host (`*` in the allow-list).
    hosts: Option<Vec<String>>,
    token: Option<String>,
    /// `None`: CORS off (no CORS headers). `Some(None)`: any origin. `Some(Some(list))`: those.
    cors: Option<Option<Vec<String>>>,
    body_limit: usize,
    body_timeout: Duration,
    request_timeout: Duration,
}

impl Guard {
    pub fn new(config: &HttpConfig, body_limit: usize) -> Self {
        let hosts = if config.allowed_hosts.iter().any(|h| h.trim() == "*") {
            None
        } else {
            let defaults = ["localhost", "127.0.0.1", "[::1]"].map(String::from);
            Some(
                defaults
                    .into_iter()
                    .chain(config.allowed_hosts.iter().map(|h| host_name(h)))
                    .collect(),
            )
        };
        let origins: Vec<String> = config
            .cors_origins
            .iter()
            .filter_map(|o| crate::server::parse_origin(o).ok())
            .collect();
        let cors = if origins.is_empty() {
            None
        } else if origins.iter().any(|o| o == "*") {
            Some(None)
        } else {
            Some(Some(origins))
        };
        Self {
            hosts,
            token: config.token.clone(),
            cors,
            body_limit,
            body_timeout: config.body_timeout,
            request_timeout: config.request_timeout,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        match &self.hosts {
            None => true,
            Some(names) => names.iter().any(|n| *n == host_name(host)),
        }
    }
}

/// Methods and request headers a cross-origin page may use.
const CORS_METHODS: &str = "GET, POST, OPTIONS";
const CORS_HEADERS: &str = "Authorization, Content-Type";
/// Response headers a cross-origin page may read beside the simple ones.
const CORS_EXPOSE: &str = "Retry-After, WWW-Authenticate";
/// Seconds a browser may cache a preflight's answer.
const CORS_MAX_AGE_S: &str = "600";

/// CORS headers for requests from a configured origin (see the module's comment).
pub async fn cors(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let Some(origins) = &guard.cors else {
        return next.run(req).await;
    };
    let origin = req.headers().get(header::ORIGIN).cloned().filter(|o| {
        o.to_str().is_ok_and(|o| {
            let o = o.trim().to_ascii_lowercase();
            let o = o.strip_suffix('/').unwrap_or(&o);
            o != "null"
                && origins
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|l| l == o))
        })
    });
    let preflight = req.method() == axum::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match &origin {
        Some(_) if preflight => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(CORS_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(CORS_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(CORS_MAX_AGE_S),
            );
            r
        }
        _ => next.run(req).await,
    };
    let h = response.headers_mut();
    // The answer depends on Origin, so caches must keep one per origin.
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if !preflight {
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(CORS_EXPOSE),
            );
        }
    }
    response
}

/// A Host value or allow-list entry as compared: the port dropped, lower case, no trailing
/// dot, IPv6 addresses bracketed in their canonical form.
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // "[::1]:8080" or "[::1]".
        rest.split(']').next().unwrap_or(rest).to_string()
    } else if host.parse::<Ipv6Addr>().is_ok() {
        // A bare IPv6 address (an allow-list entry): it has colons but no port.
        host
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host.clone(), |(name, _)| name.to_string())
    };
    match name.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => name.trim_end_matches('.').to_string(),
    }
}

/// One access log line per request, written when the request ends: with its status, or as
/// `aborted` when the client went away first (the handler's future was dropped).
struct AccessLine {
    method: axum::http::Method,
    path: String,
    started: Instant,
    status: Option<StatusCode>,
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let status = self
            .status
            .map_or_else(|| "aborted".to_string(), |s| s.as_u16().to_string());
        tracing::info!(
            target: ACCESS_TARGET,
            method = %self.method,
            path = %self.path,
            status = %status,
            latency_ms = format_args!("{latency_ms:.1}"),
            "request"
        );
    }
}

pub async fn access_log(req: Request, next: Next) -> Response {
    // The path only: queries carry search text. hyper admits only visible ASCII in a target,
    // so the path cannot hold control characters; it is shortened to keep lines readable.
    let path = req.uri().path();
    let path = match path.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &path[..end]),
        None => path.to_string(),
    };
    let mut line = AccessLine {
        method: req.method().clone(),
        path,
        started: Instant::now(),
        status: None,
    };
    let response = next.run(req).await;
    line.status = Some(response.status());
    response
}

/// Gives every error response a JSON body `{"error": {"code", "message"}}`: the handlers' errors have one
/// already; this catches whatever else the router or a layer answers with (kept headers such
/// as `Allow` or `Retry-After` stay).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (_, body) = ApiError::for_status(status).into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}

pub async fn check_host(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    // An absolute-form target ("GET http://host/ HTTP/1.1") names the host that counts.
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_string()),
        None => req
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
    };
    match host {
        None => {
            ApiError::new(ErrorCode::InvalidRequest, "a Host header is required").into_response()
        }
        Some(h) if !guard.host_allowed(&h) => ApiError::new(
            ErrorCode::ForbiddenHost,
            format!(
                "this server does not answer to the host `{h}` (a page on another site may be \
                 trying to reach it); if that is its name, start it with --allow-host {}",
                host_name(&h)
            ),
        )
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

pub async fn authorize(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let Some(token) = &guard.token else {
        return next.run(req).await;
    };
    if PUBLIC_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let message = match given {
        Some(t) if same_secret(t, token) => return next.run(req).await,
        Some(_) => "the bearer token is wrong",
        None => "this server needs a token: send `Authorization: Bearer <token>`",
    };
    ApiError::new(ErrorCode::Unauthorized, message)
        .with_header(header::WWW_AUTHENTICATE, "Bearer")
        .into_response()
}

/// A JSON 414 or 431 for a request head larger than the router takes (hyper's own, larger
/// limits answer without a body).
fn oversized_head(req: &Request) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(ApiError::new(
            ErrorCode::UriTooLong,
            format!("the request target is {target} bytes, more than the limit of {MAX_URI_BYTES}"),
        ));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "{} headers of {bytes} bytes, more than the limit of {MAX_HEADERS} headers or \
                 {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        ));
    }
    None
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub async fn limits(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Some(e) = oversized_head(&req) {
        return e.into_response();
    }
    // The body is read here, whole and within its own time limit, so that a client sending it
    // slowly is told so (408) and the handler's time limit below measures the server alone.
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, guard.body_limit);
    let bytes = match tokio::time::timeout(guard.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Err(_) => {
            return ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {}",
                    seconds(guard.body_timeout)
                ),
            )
            .with_header(header::CONNECTION, "close")
            .into_response()
        }
        Ok(Err(e)) => {
            let too_large = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let e = if too_large {
                ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!(
                        "the body is larger than the server's limit of {} bytes",
                        guard.body_limit
                    ),
                )
            } else {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the request body could not be read",
                )
            };
            // The rest of the body is unread, so the connection cannot carry another request.
            return e.with_header(header::CONNECTION, "close").into_response();
        }
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    match tokio::time::timeout(guard.request_timeout, next.run(req)).await {
        Ok(response) => response,
        // The handler's future is dropped; a model call already running finishes on the
        // blocking pool and only then frees its slot.
        Err(_) => ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "the server did not answer within {}; it is busy, try again later",
                seconds(guard.request_timeout)
            ),
        )
        .with_header(header::RETRY_AFTER, RETRY_AFTER_S.to_string())
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_compared_without_port_case_or_ipv6_spelling() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("localhost."), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[0:0:0:0:0:0:0:1]"), "[::1]");
        assert_eq!(host_name("::1"), "[::1]");
        assert_eq!(host_name("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_name("evil.example"), "evil.example");
        let mut config = HttpConfig::new(1);
        config.allowed_hosts.push("Games.Example".into());
        let guard = Guard::new(&config, 10);
        for ok in ["localhost:1", "127.0.0.1", "[::1]:9", "games.example:8080"] {
            assert!(guard.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example", "localhost.evil.example", "127.0.0.2", ""] {
            assert!(!guard.host_allowed(bad), "{bad}");
        }
        config.allowed_hosts.push("*".into());
        assert!(Guard::new(&config, 10).host_allowed("evil.example"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abcdef", "abcdef"));
        assert!(!same_secret("abcdef", "abcdeg"));
        assert!(!same_secret("abcdef", "abcde"));
    }
}
