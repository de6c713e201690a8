//! Teachers write the fine-grained fills a template cannot take from the data directly: a
//! user's stated taste (P2) and a vague need behind a target item (I1).

mod offline;
mod openai;

pub use offline::OfflineTeacher;
pub use openai::{OpenAiConfig, OpenAiTeacher};

use std::path::PathBuf;

use instructrec_data::{Dataset, ItemId, UserId};
use serde::Serialize;

/// Which teacher writes the fills.
#[derive(Debug, Clone, PartialEq)]
pub enum TeacherSource {
    /// Deterministic fills from item metadata; no network.
    Offline,
    /// An OpenAI-compatible service configured by a TOML file.
    OpenAiFile(PathBuf),
    /// An OpenAI-compatible service configured from the environment (OPENAI_BASE_URL,
    /// OPENAI_API_KEY, INSTRUCTREC_TEACHER_MODEL), its answers cached in `cache`.
    OpenAiEnv { cache: PathBuf },
}

impl TeacherSource {
    pub fn open(&self, seed: u64) -> Result<Box<dyn Teacher>, TeacherError> {
        let config = match self {
            Self::Offline => return Ok(Box::new(OfflineTeacher::new(seed))),
            Self::OpenAiFile(path) => OpenAiConfig::from_file(path)?,
            Self::OpenAiEnv { cache } => OpenAiConfig::from_env(cache.clone())?,
        };
        Ok(Box::new(OpenAiTeacher::new(config, seed)?))
    }
}

/// One fill to write. `avoid` is the item the instruction will ask for: its title must never
/// appear in the fill.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FillRequest {
    /// State the taste behind `history` (oldest first) in the user's voice.
    Preference {
        user: UserId,
        history: Vec<ItemId>,
        avoid: ItemId,
    },
    /// State the need that `item` met for `user`, without naming it.
    Intention { user: UserId, item: ItemId },
}

impl FillRequest {
    pub fn user(&self) -> UserId {
        match self {
            Self::Preference { user, .. } | Self::Intention { user, .. } => *user,
        }
    }

    pub fn avoid(&self) -> ItemId {
        match self {
            Self::Preference { avoid, .. } => *avoid,
            Self::Intention { item, .. } => *item,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub text: String,
    /// The sentence frame the text was made from, where the teacher has one (the offline
    /// teacher does), so that statistics can count distinct phrasings and not just texts.
    pub phrasing: Option<String>,
}

/// What a teacher did, for the build statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TeacherReport {
    pub teacher: String,
    pub fills: usize,
    /// Requests answered from the on-disk cache (OpenAI-compatible teacher).
    pub cache_hits: usize,
    pub requests: usize,
    pub retries: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Answers that named the target item and were replaced by the offline teacher's fill.
    pub rejected: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error("teacher configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {message}")]
    Request { url: String, message: String },
    #[error("{path}: {message}")]
    Cache { path: PathBuf, message: String },
}

/// Every request's fill, in request order, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Filled {
    pub fills: Vec<Fill>,
    pub report: TeacherReport,
}

pub trait Teacher: Sync {
    fn fill(&self, dataset: &Dataset, requests: &[FillRequest]) -> Result<Filled, TeacherError>;
}
