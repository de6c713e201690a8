//! The HTTP API and the web page, served by one axum router.
//!
//! Model calls are CPU-heavy, so each runs on tokio's blocking pool behind a semaphore: at most
//! `model_slots` run at once, at most `queue` more wait, and the rest are answered 503 at once;
//! the async workers stay free for the page, search and health checks. Every error, including
//! axum's own rejections and the middleware's (`protect`), is a JSON body
//! `{"error": {"code", "message", "field"}}` ([`ErrorBody`], [`ErrorCode`]).
//!
//! The OpenAPI document at `/openapi.json` is generated: each handler carries a
//! `#[utoipa::path]` attribute (method, path, operation id, tag, responses), the request and
//! response types derive `ToSchema`, and the router is built from those handlers by
//! `utoipa-axum`, so every route it serves is in the document ([`openapi_document`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::feedback::{now_seconds, FeedbackLog, FeedbackRecord};
use crate::parse;
use crate::protect::{self, Guard, RETRY_AFTER_S};
use crate::recommender::Recommender;
use crate::request::{FeedbackRequest, Limits, RecommendRequest, RequestError};
use crate::sanitize::{clean_text, escape_unsafe};
use crate::server::HttpConfig;

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");

/// Results per catalogue or user search.
const MAX_SEARCH: usize = 100;

#[derive(Clone)]
pub struct AppState {
    recommender: Arc<Recommender>,
    gate: Arc<ModelGate>,
    guard: Arc<Guard>,
    /// `None`: feedback is off and `POST /v1/feedback` answers `not_found`.
    feedback: Option<Arc<FeedbackLog>>,
    /// The OpenAPI document as served, made once by [`router`].
    openapi: Arc<str>,
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
            openapi: Arc::from(""),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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

/// The body of every error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_field", "message": "k: 0 is out of range: it must be from 1 to 50", "field": "k"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, a message for a person, and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable: clients may branch on it. Each code has one HTTP status (docs/serving.md lists
    /// them).
    pub code: ErrorCode,
    /// What went wrong and what to do, for a person; its wording may change.
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

/// What the document says about the whole API, beside the operations and schemas that the
/// handlers and types contribute.
const API_DESCRIPTION: &str = "Recommendation as instruction following: a request is mapped \
to an instruction template and filled; candidates come from the request or from the matching \
stage (BM25 over item text, or the model's own constrained generation); the tuned seq2seq model \
reranks them by the likelihood of their titles.\n\n\
**Errors.** Every error the router answers is a JSON body `{\"error\": {\"code\": \"...\", \
\"message\": \"...\", \"field\": \"...\"}}` (schema `ErrorBody`): a stable snake_case code \
(`ErrorCode`, one HTTP status per code), a message for a person, and the JSON path of the body \
field or the name of the query parameter at fault when there is one. Every route answers 403 \
`forbidden_host` to a Host header outside the server's allow-list (localhost, 127.0.0.1, [::1], \
the bound address, `--allow-host` names). A body that does not arrive within the body timeout \
gets 408; an answer not ready within the request timeout, or a model queue that is full, gets \
503 with `Retry-After`. Request targets over 8 KiB get 414, more than 64 headers or 16 KiB of \
them 431; hyper itself refuses larger heads and unparseable requests with an empty 400, 414 or \
431.\n\n\
**Security.** A server started with a token (`--token-file` or `INSTRUCTREC_TOKEN`; required \
beyond loopback) answers 401 `unauthorized`, with `WWW-Authenticate: Bearer`, to calls of the \
`/v1/` routes without `Authorization: Bearer <token>` (security scheme `bearer`). The page, its \
files, this document and `/healthz` need no token.\n\n\
**CORS.** Off unless the server is started with `--cors-origin ORIGIN`: then a preflight \
(OPTIONS with `Access-Control-Request-Method`) from a listed origin gets 204 with \
`Access-Control-Allow-Methods` (GET, POST, OPTIONS), `Access-Control-Allow-Headers` \
(Authorization, Content-Type) and `Access-Control-Max-Age` (600) without needing the token, and \
every answer to a listed origin, errors included, carries `Access-Control-Allow-Origin` and \
exposes `Retry-After` and `WWW-Authenticate`. Other origins get no CORS headers.";

#[derive(OpenApi)]
#[openapi(
    info(title = "instructrec", description = API_DESCRIPTION),
    tags(
        (name = "recommendations", description = "Ranked items for a request, follow-ups in a session, and feedback on what was recommended."),
        (name = "catalogue", description = "The loaded catalogue and its users: search, a user's history, examples for a client to offer."),
        (name = "service", description = "Health check and this document."),
        (name = "page", description = "The web page for people, and its files (embedded in the binary).")
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode))
)]
struct ApiDoc;

/// The documented handlers; the router and the document are both made from this list.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(page))
        .routes(routes!(page_script))
        .routes(routes!(page_style))
        .routes(routes!(openapi_json))
        .routes(routes!(healthz))
        .routes(routes!(recommend))
        .routes(routes!(feedback))
        .routes(routes!(items))
        .routes(routes!(users))
        .routes(routes!(user))
        .routes(routes!(examples))
}

/// The OpenAPI 3.1 document for a server with these limits, as `/openapi.json` serves it.
pub fn openapi_document(limits: &Limits) -> Value {
    let (_, api) = documented_routes().split_for_parts();
    finish_document(api, limits)
}

/// Adds what every operation shares (the security scheme, the answers of the middleware) and
/// writes the server's limits into the request schemas.
fn finish_document(api: utoipa::openapi::OpenApi, limits: &Limits) -> Value {
    let mut doc = serde_json::to_value(&api).expect("an OpenAPI document is JSON");
    let error_content =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "Required when the server was started with a token (--token-file or \
                INSTRUCTREC_TOKEN; always beyond loopback). The page, its files, this document \
                and /healthz need none."
        }
    });
    doc["components"]["responses"] = json!({
        "Error": {
            "description": "The request cannot be answered; `error.code` says why and \
                `error.field` names the field or query parameter at fault.",
            "content": error_content
        },
        "Unauthorized": {
            "description": "The server has a token and the request lacks it or has a wrong one \
                (`unauthorized`).",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
            "content": error_content
        },
        "Busy": {
            "description": "Every model slot is in use and the queue is full (`overloaded`), the \
                answer was not ready within the request timeout (`overloaded`), or the server is \
                stopping (`shutting_down`); try again after Retry-After seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
            "content": error_content
        }
    });
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for (path, item) in paths.iter_mut() {
        let public = protect::PUBLIC_PATHS.contains(&path.as_str());
        for (method, op) in item.as_object_mut().into_iter().flatten() {
            let post = method == "post";
            let Some(responses) = op["responses"].as_object_mut() else {
                continue;
            };
            let mut add = |status: &str, name: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
            };
            add("403", "Error");
            add("414", "Error");
            add("431", "Error");
            if !public {
                add("400", "Error");
                add("401", "Unauthorized");
                add("500", "Error");
                add("503", "Busy");
            }
            if post {
                add("408", "Error");
                add("413", "Error");
                add("415", "Error");
            }
            if !public {
                op["security"] = json!([{}, {"bearer": []}]);
            }
        }
    }
    let request = &mut doc["components"]["schemas"]["RecommendRequest"]["properties"];
    request["history"]["maxItems"] = json!(limits.max_history);
    request["candidates"]["maxItems"] = json!(limits.max_candidates);
    request["k"]["maximum"] = json!(limits.max_k);
    for text in ["preference", "intention", "context"] {
        request[text]["maxLength"] = json!(limits.max_text_chars);
    }
    let description = format!(
        "{} Limits of this server: body {} KiB, history {} items, candidates {}, k 1 to {}, {} \
         characters per text field.",
        doc["components"]["schemas"]["RecommendRequest"]["description"]
            .as_str()
            .unwrap_or_default(),
        limits.max_body_bytes / 1024,
        limits.max_history,
        limits.max_candidates,
        limits.max_k,
        limits.max_text_chars
    );
    doc["components"]["schemas"]["RecommendRequest"]["description"] = json!(description);
    doc
}

/// The routes behind the middleware of `protect` (see there for the order and why).
pub fn router(mut state: AppState) -> Router {
    let limits = state.recommender.limits();
    let body_limit = limits.max_body_bytes;
    let guard = state.guard.clone();
    let (routes, api) = documented_routes().split_for_parts();
    state.openapi = Arc::from(
        serde_json::to_string_pretty(&finish_document(api, &limits))
            .expect("an OpenAPI document is JSON"),
    );
    routes
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

/// The web page: ask, see ranked items and why, refine, edit the history.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "getPage",
    tag = "page",
    responses((status = 200, description = "The HTML page.", content_type = "text/html", body = String))
)]
async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

/// The page's script.
#[utoipa::path(
    get,
    path = "/app.js",
    operation_id = "getPageScript",
    tag = "page",
    responses((status = 200, description = "JavaScript.", content_type = "text/javascript", body = String))
)]
async fn page_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

/// The page's style sheet.
#[utoipa::path(
    get,
    path = "/style.css",
    operation_id = "getPageStyle",
    tag = "page",
    responses((status = 200, description = "CSS.", content_type = "text/css", body = String))
)]
async fn page_style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

/// This document (OpenAPI 3.1), generated from the server's types and handlers.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "service",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object))
)]
async fn openapi_json(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi.to_string(),
    )
}

/// The server is up, with the size of what it loaded.
#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(value_type = String, example = "ok", pattern = "^ok$")]
    status: &'static str,
    /// Items in the catalogue.
    items: usize,
    /// Users in the prepared dataset.
    users: usize,
    /// The matching stage: `bm25`, `generation` or `two-tower`.
    matcher: String,
}

/// Liveness and catalogue size.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getHealth",
    tag = "service",
    responses((status = 200, description = "The server is up.", body = Health))
)]
async fn healthz(State(s): State<AppState>) -> Json<Health> {
    let d = &s.recommender.prepared().dataset;
    Json(Health {
        status: "ok",
        items: d.items.len(),
        users: d.users.len(),
        matcher: s.recommender.matcher_name(),
    })
}

/// Rank items for a request, or refine the last answer of a session.
///
/// A follow-up (`refine: true` with the answer's `session`) refines the last answer. Without `candidates` the matching stage retrieves 20 items from the catalogue (never items
/// in the history) and the model reranks them; with them, the model reranks those. The answer
/// carries the template, the filled instruction and where the candidates came from.
#[utoipa::path(
    post,
    path = "/v1/recommend",
    operation_id = "recommend",
    tag = "recommendations",
    request_body(content = RecommendRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The top items with their scores, the template used and the filled instruction.", body = crate::request::Response),
        (status = 400, description = "`invalid_json`, `invalid_field`, `missing_field` (`session` with `refine`), `unknown_field`, `empty_request` or `invalid_request`; `error.field` names the field.", body = ErrorBody),
        (status = 404, description = "`unknown_session`: the `session` is not one this server issued, or it expired.", body = ErrorBody),
        (status = 500, description = "`model_error`: the model or the matching stage failed; `internal`: anything else.", body = ErrorBody)
    )
)]
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

/// Record what a user did with an item (clicked, liked, bought).
///
/// The event is appended durably (fsync) to the server's feedback log under the dataset's
/// source ids, for `data prepare --feedback`; the answer is the line written. A server started
/// without `--feedback-log` answers 404 `not_found`.
#[utoipa::path(
    post,
    path = "/v1/feedback",
    operation_id = "sendFeedback",
    tag = "recommendations",
    request_body(content = FeedbackRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The line appended to the log.", body = crate::feedback::FeedbackRecordSchema),
        (status = 400, description = "`invalid_json`, `invalid_field` (an unknown user or item, an unknown event), `missing_field` or `unknown_field`.", body = ErrorBody),
        (status = 404, description = "`not_found`: feedback is off (the server was started without --feedback-log).", body = ErrorBody),
        (status = 500, description = "`internal`: the event could not be written.", body = ErrorBody)
    )
)]
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
#[derive(Serialize, ToSchema)]
#[schema(as = Item)]
struct ItemView {
    /// The dense item id.
    item_id: u32,
    /// The source's item id (ASIN, MovieLens id).
    original_id: String,
    title: String,
    /// Category path, most general first.
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

/// Catalogue items, best first.
#[derive(Serialize, ToSchema)]
struct ItemList {
    items: Vec<ItemView>,
}

/// Catalogue search, for editing a history.
///
/// Items of which every word of `q` starts a word of the title, categories or brand. A half-typed last word already finds its items. Stop words are left out of `q` unless it has
/// nothing else. Best first: whole title words count most, then the starts of title words, then
/// category and brand words; the whole of `q` appearing in the title adds more; ties go to the
/// more popular item. An empty list when nothing matches (no best sellers as filler).
#[utoipa::path(
    get,
    path = "/v1/items",
    operation_id = "searchItems",
    tag = "catalogue",
    params(
        ("q" = String, Query, description = "Words to search for (at most 500 characters once cleaned)."),
        ("limit" = Option<usize>, Query, description = "Most items to return (default 20).", minimum = 1, maximum = 100)
    ),
    responses(
        (status = 200, description = "Matching items, best first.", body = ItemList),
        (status = 400, description = "`missing_field` (no `q`), `invalid_field` (`limit` out of range, `q` too long) or `unknown_field`.", body = ErrorBody)
    )
)]
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
    // A scan of the catalogue's words: a few milliseconds for 17,000 items, so it runs here.
    let r = &s.recommender;
    let ids = r.search_items(&q, limit);
    Ok(Json(ItemList {
        items: ids.into_iter().map(|i| item_view(r, i)).collect(),
    }))
}

/// A user of the prepared dataset.
#[derive(Serialize, ToSchema)]
struct UserSummary {
    /// The dense user id.
    user_id: u32,
    /// The source's user id.
    original_id: String,
    /// Interactions in the user's whole sequence.
    interactions: usize,
}

/// Users in id order.
#[derive(Serialize, ToSchema)]
struct UserList {
    users: Vec<UserSummary>,
}

/// Users whose id starts with `q` (all users, in id order, when `q` is empty).
#[utoipa::path(
    get,
    path = "/v1/users",
    operation_id = "searchUsers",
    tag = "catalogue",
    params(
        ("q" = Option<String>, Query, description = "The start of a source user id (case-insensitive); empty or absent lists every user."),
        ("limit" = Option<usize>, Query, description = "Most users to return (default 20).", minimum = 1, maximum = 100)
    ),
    responses(
        (status = 200, description = "Users in id order.", body = UserList),
        (status = 400, description = "`invalid_field` (`limit` out of range) or `unknown_field`.", body = ErrorBody)
    )
)]
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

/// A user and the history recommendations use.
#[derive(Serialize, ToSchema)]
struct UserDetail {
    user_id: u32,
    original_id: String,
    /// The history recommendations use, oldest first (the whole sequence, capped at the
    /// prepared history cap).
    history: Vec<ItemView>,
}

/// A user and the history recommendations use (oldest first).
#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    operation_id = "getUser",
    tag = "catalogue",
    params(("id" = String, Path, description = "The source's user id.")),
    responses(
        (status = 200, description = "The user.", body = UserDetail),
        (status = 404, description = "`not_found`: no such user.", body = ErrorBody)
    )
)]
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

/// Example requests and placeholder text drawn from the loaded catalogue, for a client to offer.
///
/// Made once when the server loads: "something like" the most popular short title, a category
/// path as a category query, a taste made of the two most common categories (root labels held
/// by more than half the items left out), and the user with the longest history.
#[utoipa::path(
    get,
    path = "/v1/examples",
    operation_id = "getExamples",
    tag = "catalogue",
    responses((status = 200, description = "Examples and placeholders.", body = crate::catalogue::Examples))
)]
async fn examples(State(s): State<AppState>) -> Json<crate::catalogue::Examples> {
    Json(s.recommender.examples().clone())
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
