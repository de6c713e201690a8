//! The HTTP API and the web page, served by one axum router.
//!
//! Model calls are CPU-heavy, so each runs on tokio's blocking pool behind a semaphore: at most
//! `model_slots` run at once, at most `queue` more wait, and the rest are answered 503 at once;
//! the async workers stay free for the page, search and health checks. Every error, including
//! axum's own rejections and the middleware's (`protect`), is a JSON body
//! `{"error": {"code", "message", "field"}}` ([`ErrorBody`], [`ErrorCode`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::feedback::{now_seconds, FeedbackLog, FeedbackRecord};
use crate::parse;
use crate::protect::{self, Guard, RETRY_AFTER_S};
use crate::recommender::Recommender;
use crate::request::RequestError;
use crate::sanitize::{clean_text, escape_unsafe};
use crate::server::HttpConfig;

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");
/// Hand-written; a test requests every path it lists.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Results per catalogue or user search.
const MAX_SEARCH: usize = 100;

#[derive(Clone)]
pub struct AppState {
    recommender: Arc<Recommender>,
    gate: Arc<ModelGate>,
    guard: Arc<Guard>,
    /// `None`: feedback is off and `POST /v1/feedback` answers `not_found`.
    feedback: Option<Arc<FeedbackLog>>,
}

impl AppState {
    /// A state with the default settings for `model_slots` (loopback hosts, no token).
    pub fn new(recommender: Arc<Recommender>, model_slots: usize) -> Self {
        Self::with_config(recommender, &HttpConfig::new(model_slots))
    }

    pub fn with_config(recommender: Arc<Recommender>, config: &HttpConfig) -> Self {
        let guard = Guard::new(config, recommender.limits().max_body_bytes);
        Self {
            recommender,
            gate: Arc::new(ModelGate::new(config.model_slots, config.queue)),
            guard: Arc::new(guard),
            feedback: None,
        }
    }

    /// Turns on `POST /v1/feedback`, appending to `log`.
    pub fn with_feedback(mut self, log: Arc<FeedbackLog>) -> Self {
        self.feedback = Some(log);
        self
    }
}

/// Admission to the model: `slots` calls run at once and `queue` more may wait; a request
/// beyond those is refused at once, so a burst cannot build a queue whose tail waits longer than
/// any client would (an unbounded queue gave 3 s medians at 64 clients, and no refusals).
struct ModelGate {
    /// Permits for the running and the waiting together.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    queue: usize,
}

/// Held for as long as a model call runs, even after the request that asked for it has timed
/// out and gone: the slot is the CPU the call is still using.
struct ModelPermit {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

impl ModelGate {
    fn new(slots: usize, queue: usize) -> Self {
        let slots = slots.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(slots + queue)),
            running: Arc::new(Semaphore::new(slots)),
            queue,
        }
    }

    async fn enter(&self) -> Result<ModelPermit, ApiError> {
        let shutting_down =
            || ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down");
        let admitted = match self.admitted.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                return Err(ApiError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "the server is busy: every model slot is in use and {} requests are \
                         waiting; try again in {RETRY_AFTER_S} s",
                        self.queue
                    ),
                )
                .with_header(header::RETRY_AFTER, RETRY_AFTER_S.to_string()))
            }
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
        };
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| shutting_down())?;
        Ok(ModelPermit {
            _admitted: admitted,
            _running: running,
        })
    }
}

/// What went wrong, as a stable snake_case code a client can branch on; each code has one HTTP
/// status ([`ErrorCode::status`]) and is listed in docs/serving.md. The set is fixed: a new
/// kind of error needs a new variant here and a line there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON at all (a syntax error or a cut-off body).
    InvalidJson,
    /// 400: a field (or query parameter) has the wrong type or a value the server refuses.
    InvalidField,
    /// 400: a field needed by the rest of the request is absent.
    MissingField,
    /// 400: a field or query parameter the request schema does not have.
    UnknownField,
    /// 400: the request names nothing to recommend from.
    EmptyRequest,
    /// 400: the request cannot be read otherwise (no Host header, an unreadable body or query).
    InvalidRequest,
    /// 401: a token is needed, or the one sent is wrong.
    Unauthorized,
    /// 403: the Host header is not one this server answers to.
    ForbiddenHost,
    /// 404: no such route, or no such user.
    NotFound,
    /// 404: the session id is unknown, expired, or not issued by this server.
    UnknownSession,
    /// 405: the route does not take this method.
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 413: the body is larger than the limit.
    BodyTooLarge,
    /// 414: the request target is longer than the limit.
    UriTooLong,
    /// 415: the body is not sent as `application/json`.
    UnsupportedMediaType,
    /// 431: too many headers, or too large.
    HeadersTooLarge,
    /// 500: the model or the matching stage failed.
    ModelError,
    /// 500: any other failure inside the server.
    Internal,
    /// 503: the model queue is full or the answer was late; retry after `Retry-After`.
    Overloaded,
    /// 503: the server is shutting down.
    ShuttingDown,
}

impl ErrorCode {
    /// Every code, in the order docs/serving.md lists them.
    pub const ALL: [ErrorCode; 20] = [
        Self::InvalidJson,
        Self::InvalidField,
        Self::MissingField,
        Self::UnknownField,
        Self::EmptyRequest,
        Self::InvalidRequest,
        Self::Unauthorized,
        Self::ForbiddenHost,
        Self::NotFound,
        Self::UnknownSession,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::BodyTooLarge,
        Self::UriTooLong,
        Self::UnsupportedMediaType,
        Self::HeadersTooLarge,
        Self::ModelError,
        Self::Internal,
        Self::Overloaded,
        Self::ShuttingDown,
    ];

    /// The HTTP status answered with this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson
            | Self::InvalidField
            | Self::MissingField
            | Self::UnknownField
            | Self::EmptyRequest
            | Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::ForbiddenHost => StatusCode::FORBIDDEN,
            Self::NotFound | Self::UnknownSession => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::ModelError | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Overloaded | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The code for an error status that arrived without a body (from the router or a layer).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::ForbiddenHost,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => Self::BodyTooLarge,
            StatusCode::URI_TOO_LONG => Self::UriTooLong,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::HeadersTooLarge,
            StatusCode::SERVICE_UNAVAILABLE => Self::Overloaded,
            s if s.is_server_error() => Self::Internal,
            _ => Self::InvalidRequest,
        }
    }

    /// The snake_case name, as it appears in an answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidField => "invalid_field",
            Self::MissingField => "missing_field",
            Self::UnknownField => "unknown_field",
            Self::EmptyRequest => "empty_request",
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::ForbiddenHost => "forbidden_host",
            Self::NotFound => "not_found",
            Self::UnknownSession => "unknown_session",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::BodyTooLarge => "body_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::HeadersTooLarge => "headers_too_large",
            Self::ModelError => "model_error",
            Self::Internal => "internal",
            Self::Overloaded => "overloaded",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

/// A JSON error answer: `{"error": {"code", "message", "field"}}` with the code's status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    field: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    /// Names the field (a JSON path such as `history[2]`, or a query parameter) at fault.
    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    #[cfg(test)]
    pub(crate) fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Answers with `status` instead of the code's own (a body-less error of another status).
    fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header to the answer (`Retry-After`, `WWW-Authenticate`, `Connection`).
    pub(crate) fn with_header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, v));
        }
        self
    }

    /// The JSON error answer for an error status that came without a body.
    pub(crate) fn for_status(status: StatusCode) -> Self {
        let code = ErrorCode::for_status(status);
        let message = match code {
            ErrorCode::NotFound => "no such route; see /openapi.json".to_string(),
            ErrorCode::MethodNotAllowed => {
                "method not allowed on this route; see /openapi.json".to_string()
            }
            _ => format!(
                "HTTP {}: {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("error")
            ),
        };
        Self::new(code, message).with_status(status)
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What went wrong and what to do, for a person.
    pub message: String,
    /// The JSON path of the field (`k`, `history[2]`) or the query parameter (`limit`) at
    /// fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        // Messages may quote what a client sent (a user id, an unknown field's name): control
        // and bidi characters are shown as code points, never passed on.
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code,
                    message: escape_unsafe(&self.message),
                    field: self.field.as_deref().map(escape_unsafe),
                },
            }),
        )
            .into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let message = e.to_string();
        match e {
            RequestError::Invalid { field, .. } => {
                Self::new(ErrorCode::InvalidField, message).with_field(field)
            }
            RequestError::Missing { field, .. } => {
                Self::new(ErrorCode::MissingField, message).with_field(field)
            }
            RequestError::Empty => Self::new(ErrorCode::EmptyRequest, message),
            RequestError::UnknownSession => {
                Self::new(ErrorCode::UnknownSession, message).with_field("session")
            }
            RequestError::Model(_) => Self::new(ErrorCode::ModelError, message),
        }
    }
}

/// The routes behind the middleware of `protect` (see there for the order and why).
pub fn router(state: AppState) -> Router {
    let body_limit = state.recommender.limits().max_body_bytes;
    let guard = state.guard.clone();
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/style.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    STYLE_CSS,
                )
            }),
        )
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .route("/healthz", get(healthz))
        .route("/v1/recommend", post(recommend))
        .route("/v1/feedback", post(feedback))
        .route("/v1/items", get(items))
        .route("/v1/users", get(users))
        .route("/v1/users/{id}", get(user))
        .fallback(|| async { ApiError::for_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async {
            ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(DefaultBodyLimit::max(body_limit))
        // Layers added later run first.
        .layer(from_fn_with_state(guard.clone(), protect::limits))
        .layer(from_fn_with_state(guard.clone(), protect::authorize))
        .layer(from_fn_with_state(guard.clone(), protect::cors))
        .layer(from_fn_with_state(guard, protect::check_host))
        .layer(from_fn(protect::json_errors))
        .layer(from_fn(protect::access_log))
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    items: usize,
    users: usize,
    matcher: String,
}

async fn healthz(State(s): State<AppState>) -> Json<Health> {
    let d = &s.recommender.prepared().dataset;
    Json(Health {
        status: "ok",
        items: d.items.len(),
        users: d.users.len(),
        matcher: s.recommender.matcher_name(),
    })
}

async fn recommend(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<crate::request::Response>, ApiError> {
    let req = parse::recommend_request(&headers, body)?;
    let permit = s.gate.enter().await?;
    let rec = s.recommender.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        rec.recommend(&req)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the request failed: {e}")))??;
    Ok(Json(answer))
}

/// Appends a user's reaction to an item to the feedback log, under the source's raw ids, and
/// answers with the line written.
async fn feedback(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FeedbackRecord>, ApiError> {
    let Some(log) = s.feedback.clone() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "feedback is off: this server was started without --feedback-log PATH",
        ));
    };
    let req = parse::feedback_request(&headers, body)?;
    let r = &s.recommender;
    let user = r.resolve_user(&req.user)?;
    let item = r.resolve_item("item", &req.item)?;
    let record = FeedbackRecord {
        timestamp: now_seconds(),
        user: r.prepared().dataset.users[user.index()].original_id.clone(),
        item: r.item(item).original_id.clone(),
        event: req.event,
        session: req.session,
    };
    let written = record.clone();
    tokio::task::spawn_blocking(move || log.append(&written))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the feedback failed: {e}")))?
        .map_err(|e| {
            tracing::error!("cannot append to the feedback log: {e}");
            ApiError::new(
                ErrorCode::Internal,
                "the feedback could not be saved; try again later",
            )
        })?;
    Ok(Json(record))
}

fn search_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(20) {
        n @ 1..=MAX_SEARCH => Ok(n),
        n => Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("limit: {n} is out of range: it must be from 1 to {MAX_SEARCH}"),
        )
        .with_field("limit")),
    }
}

/// An item as the catalogue lists it.
#[derive(Serialize)]
struct ItemView {
    item_id: u32,
    original_id: String,
    title: String,
    categories: Vec<String>,
    brand: Option<String>,
}

fn item_view(r: &Recommender, id: instructrec_data::ItemId) -> ItemView {
    let i = r.item(id);
    ItemView {
        item_id: i.id.0,
        original_id: i.original_id.clone(),
        title: i.title.clone(),
        categories: i.categories.clone(),
        brand: i.brand.clone(),
    }
}

#[derive(Serialize)]
struct ItemList {
    items: Vec<ItemView>,
}

async fn items(
    State(s): State<AppState>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ItemList>, ApiError> {
    let p = parse::search_params(params)?;
    let limit = search_limit(p.limit)?;
    let q = clean_text(&p.q);
    if q.is_empty() {
        return Err(
            ApiError::new(ErrorCode::MissingField, "q: give some words to search for")
                .with_field("q"),
        );
    }
    if q.chars().count() > s.recommender.limits().max_text_chars {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!(
                "q: {} characters, more than the limit of {}",
                q.chars().count(),
                s.recommender.limits().max_text_chars
            ),
        )
        .with_field("q"));
    }
    let r = s.recommender.clone();
    let ids = tokio::task::spawn_blocking(move || r.search_items(&q, limit))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the search failed: {e}")))?
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the search failed: {e:#}")))?;
    let r = &s.recommender;
    Ok(Json(ItemList {
        items: ids.into_iter().map(|i| item_view(r, i)).collect(),
    }))
}

#[derive(Serialize)]
struct UserSummary {
    user_id: u32,
    original_id: String,
    interactions: usize,
}

#[derive(Serialize)]
struct UserList {
    users: Vec<UserSummary>,
}

/// Users whose id starts with `q` (all users, in id order, when `q` is empty).
async fn users(
    State(s): State<AppState>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let p = parse::search_params(params)?;
    let limit = search_limit(p.limit)?;
    let q = clean_text(&p.q).to_lowercase();
    let d = &s.recommender.prepared().dataset;
    let users = d
        .users
        .iter()
        .filter(|u| u.original_id.to_lowercase().starts_with(&q))
        .take(limit)
        .map(|u| UserSummary {
            user_id: u.id.0,
            original_id: u.original_id.clone(),
            interactions: d.sequences[u.id.index()].len(),
        })
        .collect();
    Ok(Json(UserList { users }))
}

#[derive(Serialize)]
struct UserDetail {
    user_id: u32,
    original_id: String,
    /// The history recommendations use, oldest first.
    history: Vec<ItemView>,
}

async fn user(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<UserDetail>, ApiError> {
    let Path(id) = id.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the user id in the path is not valid UTF-8 once percent-decoded",
        )
    })?;
    let r = &s.recommender;
    let uid = r
        .user_by_original(&id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no user `{id}`")))?;
    Ok(Json(UserDetail {
        user_id: uid.0,
        original_id: id,
        history: r
            .user_history(uid)
            .into_iter()
            .map(|i| item_view(r, i))
            .collect(),
    }))
}

/// Binds `addr`, naming it when that fails (a port already in use is the usual cause).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another program is listening there; stop it or choose another address with --addr)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
    })
}
