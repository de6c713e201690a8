//! The request and response of one recommendation, shared by the HTTP API, the terminal and
//! the web page, and the errors a request can be answered with.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalogue::Why;

/// An item named by a client: a JSON number is the dense item id; a string is the source's id
/// (ASIN) or, failing that, the exact title (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ItemRef {
    Id(u32),
    Name(String),
}

pub use instructrec_data::UserRef;

/// The OpenAPI schema of [`UserRef`] (a type of the data crate, which knows nothing of
/// OpenAPI): a user named by a client. A JSON number is the dense user id; a string is the
/// source's user id. tests/openapi.rs checks real requests against it.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = UserRef)]
#[allow(dead_code)] // only its schema is used
pub(crate) enum UserRefSchema {
    Id(u32),
    Name(String),
}

/// The OpenAPI schema of `instructrec_data::import::FeedbackEvent`: what a user did with an
/// item. `liked` and `bought` count as interactions when the log is read back; `clicked` does not.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = FeedbackEvent)]
#[allow(dead_code)] // only its schema is used
pub(crate) enum FeedbackEventSchema {
    Clicked,
    Liked,
    Bought,
}

/// Whether the intention is a vague need (I1) or a category-style query (I2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntentionStyle {
    Vague,
    Specific,
}

/// What a client asks for. Every field is optional, but a request must say something about
/// the user (user, history, preference) or the need (intention). Text fields lose control
/// characters and bidi formatting characters (U+200E, U+200F, U+061C, U+202A to U+202E, U+2066
/// to U+2069) and runs of whitespace become one space before they are checked; a field with
/// nothing left is refused as empty. A null field counts as absent (except `refine`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user": "A31160I7G2EZVN", "intention": "a racing game for two players", "k": 5}))]
pub struct RecommendRequest {
    /// Whose history to use (ignored when `history` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<UserRefSchema>)]
    pub user: Option<UserRef>,
    /// Items the user had before, oldest first; replaces the user's stored history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 200)]
    pub history: Option<Vec<ItemRef>>,
    /// Stated taste in the user's words (P2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub preference: Option<String>,
    /// What the user wants now: a vague need (I1) or a category-style query (I2: every part
    /// split at `,` `>` `/` `|` `;` is a category label of the catalogue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub intention: Option<String>,
    /// Overrides the automatic vague/specific decision for `intention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intention_style: Option<IntentionStyle>,
    /// The situation (time, place, device), appended to the instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub context: Option<String>,
    /// Items to rerank; without them the matching stage retrieves candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 100)]
    pub candidates: Option<Vec<ItemRef>>,
    /// How many items to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 50, default = 10)]
    pub k: Option<usize>,
    /// A session id the server issued (in an earlier response): with `refine`, the answer to
    /// refine; without, the request starts over in that session. A new session is created only
    /// for a request without one; any id the server did not issue gets 404 `unknown_session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub session: Option<String>,
    /// Refine the session's last answer with this request's intention, preference or context.
    /// The session's intentions are joined (the first stated need, then the refinements); past
    /// 500 characters or 16 needs the oldest refinements are dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refine: bool,
}

/// A user's reaction to an item (`POST /v1/feedback`), appended to the feedback log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user": "A31160I7G2EZVN", "item": "B00004", "event": "bought"}))]
pub struct FeedbackRequest {
    #[schema(value_type = UserRefSchema)]
    pub user: UserRef,
    pub item: ItemRef,
    #[schema(value_type = FeedbackEventSchema)]
    pub event: instructrec_data::import::FeedbackEvent,
    /// The session the recommendation came from, when the client knows it (1 to 64 visible
    /// ASCII characters, recorded as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RankedItem {
    /// 1 for the best.
    #[schema(minimum = 1)]
    pub rank: usize,
    /// The dense item id.
    pub item_id: u32,
    /// The source's item id (ASIN, MovieLens id).
    pub original_id: String,
    pub title: String,
    /// Category path, most general first.
    pub categories: Vec<String>,
    pub brand: Option<String>,
    /// The ranking key: the mean log-likelihood per title token under the instruction, or,
    /// when the server also asks without the list (`serve --with-t2`), the sum of that and the
    /// mean log-likelihood under `matching_instruction`, each standardised over the scored
    /// candidates.
    pub score: f32,
    /// Summed log-likelihood of the title.
    pub log_likelihood: f32,
    /// The item's share of the model's preference among every candidate it scored for this
    /// answer, from 0 to 1: a softmax of `score` over the scored candidates (they sum to 1,
    /// and the order is the ranking's).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub relevance: f32,
    /// The index in `groups` of the group (and so the instruction) the item was scored in.
    pub group: usize,
    /// What the item shares with the request and the history, counted from the text.
    pub why: Why,
}

/// One group of candidates the model scored under one instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoredGroup {
    /// The filled instruction the model read for this group, listing its candidates.
    pub instruction: String,
    /// The group's candidates (dense item ids) in the order the instruction lists them.
    pub item_ids: Vec<u32>,
}

/// The need an answer is for: the request merged with its session for a follow-up. A client
/// can send it back (with an edited history) to ask for the same thing again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatedNeed {
    /// The intention the instruction states: a follow-up's needs joined, oldest first.
    pub intention: Option<String>,
    /// Whether `intention` was read as a vague need or a category query.
    pub intention_style: Option<IntentionStyle>,
    pub preference: Option<String>,
    pub context: Option<String>,
    /// The history the answer used (dense item ids, oldest first).
    pub history: Vec<u32>,
    /// How many of the most recent history items the instruction shows (the rest did not fit
    /// its token budget).
    pub history_in_instruction: usize,
}

/// Where the scored candidates came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// The request (or, for a follow-up, the session's original request) listed them.
    Request,
    /// The matching stage retrieved them from the whole catalogue.
    Matched,
    /// A follow-up: the previous answer plus fresh matches for the refined need.
    PreviousAndMatched,
}

/// Where the time went, in milliseconds, measured by the server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseTimings {
    pub match_ms: f64,
    pub score_ms: f64,
    pub total_ms: f64,
}

/// The answer to a recommendation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = RecommendResponse)]
pub struct Response {
    /// The session id: 128 random bits from the operating system, as 32 hex digits. Whoever
    /// holds it can read and replace the session's stated need; send it back with `refine`.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub session: String,
    /// Whether this answers a follow-up (`refine: true`).
    pub refined: bool,
    /// Id of the template the request was mapped to.
    pub template: String,
    /// The scenario, as the paper writes it ("P1 I1 T3"; "P1 I1 T3+T2" when the titles were also
    /// scored without the list).
    #[schema(example = "P1 I1 T3")]
    pub scenario: String,
    /// The filled instruction of the first group of candidates (`groups[0].instruction`).
    pub instruction: String,
    /// Each group of candidates the model scored, with the instruction it read: candidates are
    /// dealt round-robin into groups of at most 10.
    pub groups: Vec<ScoredGroup>,
    /// With `serve --with-t2`: the instruction without the list (the scenario's matching
    /// template, T2) every candidate's title was also scored under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_instruction: Option<String>,
    /// The need this answers, after merging with the session.
    pub need: StatedNeed,
    pub items: Vec<RankedItem>,
    pub candidate_source: CandidateSource,
    /// Candidates the matching stage retrieved (0 when the request listed them).
    pub matched: usize,
    /// Candidates the model scored.
    pub scored: usize,
    /// The name of the matcher that retrieved the candidates ("bm25", "generation",
    /// "two-tower"), when the matching stage ran. A two-tower server matches a request without
    /// a history by BM25 and says "bm25".
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
