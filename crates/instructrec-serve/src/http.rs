//! The HTTP API and the web page, served by one axum router.
//!
//! Model calls are CPU-heavy, so each runs on tokio's blocking pool behind a semaphore: at most
//! `model_slots` run at once, at most `queue` more wait, and the rest are answered 503 at once;
//! the async workers stay free for the page, search and health checks. Every error, including
//! axum's own rejections and the middleware's (`protect`), is a JSON body `{"error": "..."}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::protect::{self, Guard, RETRY_AFTER_S};
use crate::recommender::Recommender;
use crate::request::{RecommendRequest, RequestError};
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
        }
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
        let shutting_down = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            )
        };
        let admitted = match self.admitted.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
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

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the answer (`Retry-After`, `WWW-Authenticate`, `Connection`).
    pub(crate) fn with_header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, v));
        }
        self
    }
}

#[derive(Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        // Messages may quote what a client sent (a user id, an unknown field's name): control
        // and bidi characters are shown as code points, never passed on.
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: escape_unsafe(&self.message),
            }),
        )
            .into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let status = match e {
            RequestError::Invalid { .. } | RequestError::Empty => StatusCode::BAD_REQUEST,
            RequestError::UnknownSession => StatusCode::NOT_FOUND,
            RequestError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let message = match &r {
            JsonRejection::JsonSyntaxError(_) => {
                format!("the body is not valid JSON: {}", r.body_text())
            }
            JsonRejection::JsonDataError(_) => format!(
                "the body does not fit the request schema: {}",
                r.body_text()
            ),
            JsonRejection::MissingJsonContentType(_) => {
                "send the body as JSON with `Content-Type: application/json`".to_string()
            }
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                "the body is larger than the server's limit".to_string()
            }
            _ => r.body_text(),
        };
        // Syntax and schema problems are both the client's malformed request.
        let status = match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        Self::new(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, r.body_text())
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
        .route("/v1/items", get(items))
        .route("/v1/users", get(users))
        .route("/v1/users/{id}", get(user))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        // Layers added later run first.
        .layer(from_fn_with_state(guard.clone(), protect::limits))
        .layer(from_fn_with_state(guard.clone(), protect::authorize))
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
    body: Result<Json<RecommendRequest>, JsonRejection>,
) -> Result<Json<crate::request::Response>, ApiError> {
    let Json(req) = body?;
    let permit = s.gate.enter().await?;
    let rec = s.recommender.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        rec.recommend(&req)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {e}"),
        )
    })??;
    Ok(Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

fn search_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(20) {
        n @ 1..=MAX_SEARCH => Ok(n),
        n => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit: {n} is out of range: it must be from 1 to {MAX_SEARCH}"),
        )),
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
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<ItemList>, ApiError> {
    let Query(p) = params?;
    let limit = search_limit(p.limit)?;
    let q = clean_text(&p.q);
    if q.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "q: give some words to search for",
        ));
    }
    if q.chars().count() > s.recommender.limits().max_text_chars {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "q: too long"));
    }
    let r = s.recommender.clone();
    let ids = tokio::task::spawn_blocking(move || r.search_items(&q, limit))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
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
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let Query(p) = params?;
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
    let Path(id) = id?;
    let r = &s.recommender;
    let uid = r
        .user_by_original(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no user `{id}`")))?;
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
