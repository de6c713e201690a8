//! The request and response of one recommendation, shared by the HTTP API, the terminal and
//! the web page, and the errors a request can be answered with.

use serde::{Deserialize, Serialize};

/// An item named by a client: a JSON number is the dense item id; a string is the source's id
/// (ASIN) or, failing that, the exact title (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemRef {
    Id(u32),
    Name(String),
}

pub use instructrec_data::UserRef;

/// Whether the intention is a vague need (I1) or a category-style query (I2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentionStyle {
    Vague,
    Specific,
}

/// What a client asks for. Every field is optional, but a request must say something about
/// the user (user, history, preference) or the need (intention).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// Whose history to use (ignored when `history` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserRef>,
    /// Items the user had before, oldest first; replaces the user's stored history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<ItemRef>>,
    /// Stated taste in the user's words (P2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference: Option<String>,
    /// What the user wants now: a vague need or a category-style query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intention: Option<String>,
    /// Overrides the automatic vague/specific decision for `intention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intention_style: Option<IntentionStyle>,
    /// The situation (time, place, device), appended to the instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Items to rerank; without them the matching stage retrieves candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<ItemRef>>,
    /// How many items to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// A session id the server issued (in an earlier response): with `refine`, the answer to
    /// refine; without, the request starts over in that session. A new session is created only
    /// for a request without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Refine the session's last answer with this request's intention, preference or context.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refine: bool,
}

/// A user's reaction to an item (`POST /v1/feedback`), appended to the feedback log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    pub user: UserRef,
    pub item: ItemRef,
    pub event: instructrec_data::import::FeedbackEvent,
    /// The session the recommendation came from, when the client knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// Upper bounds on what one request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_history: usize,
    pub max_candidates: usize,
    pub max_k: usize,
    /// Characters of each free-text field, and of a session's intentions joined together.
    pub max_text_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_history: 200,
            max_candidates: 100,
            max_k: 50,
            max_text_chars: 500,
        }
    }
}

pub const DEFAULT_K: usize = 10;

/// One ranked item with the text the model scored and its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedItem {
    pub rank: usize,
    pub item_id: u32,
    pub original_id: String,
    pub title: String,
    pub categories: Vec<String>,
    pub brand: Option<String>,
    /// Mean log-likelihood per title token under the instruction (the ranking key).
    pub score: f32,
    /// Summed log-likelihood of the title.
    pub log_likelihood: f32,
}

/// Where the scored candidates came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// The request (or, for a follow-up, the session's original request) listed them.
    Request,
    /// The matching stage retrieved them from the whole catalogue.
    Matched,
    /// A follow-up: the previous answer plus fresh matches for the refined need.
    PreviousAndMatched,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResponseTimings {
    pub match_ms: f64,
    pub score_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub session: String,
    pub refined: bool,
    /// Id of the template the request was mapped to.
    pub template: String,
    /// The scenario, as the paper writes it ("P1 I1 T3").
    pub scenario: String,
    /// The filled instruction (for the first group of candidates when there are several).
    pub instruction: String,
    pub items: Vec<RankedItem>,
    pub candidate_source: CandidateSource,
    /// Candidates the matching stage retrieved (0 when the request listed them).
    pub matched: usize,
    /// Candidates the model scored.
    pub scored: usize,
    /// The matching stage's name ("bm25"), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    pub timings: ResponseTimings,
}

/// Why a request cannot be answered. Each message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A field the rest of the request needs is absent.
    #[error("{field}: {message}")]
    Missing { field: String, message: String },
    #[error("the request says nothing to recommend from: give a user, a history, a preference or an intention")]
    Empty,
    /// The id is not one this server issued, or its session expired. The id is not echoed:
    /// it may be anything a client sent.
    #[error("session: no such session (unknown, expired, or not issued by this server); send the request without `session` to start one")]
    UnknownSession,
    #[error("the model failed: {0}")]
    Model(String),
}

impl RequestError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn missing(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Missing {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The JSON path of the field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } | Self::Missing { field, .. } => Some(field),
            Self::UnknownSession => Some("session"),
            Self::Empty | Self::Model(_) => None,
        }
    }
}
