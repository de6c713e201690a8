//! The three aspects of an instruction (preference, intention, task form) and the two template
//! attributes that say how an instruction was made (diversity strategy) and what it must answer
//! (target kind). Kinds are what a template declares; [`Preference`] and [`Intention`] are the
//! filled values an instruction carries.

use std::fmt;

use instructrec_data::ItemId;
use serde::{Deserialize, Serialize};

/// Long-term taste. Serialised as the paper's labels; templates may also spell the word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PreferenceKind {
    #[serde(rename = "P0", alias = "none")]
    None,
    #[serde(rename = "P1", alias = "implicit")]
    Implicit,
    #[serde(rename = "P2", alias = "explicit")]
    Explicit,
}

/// Short-term need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IntentionKind {
    #[serde(rename = "I0", alias = "none")]
    None,
    #[serde(rename = "I1", alias = "vague")]
    Vague,
    #[serde(rename = "I2", alias = "specific")]
    Specific,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskForm {
    /// Is this one item a good fit? Answer yes or no.
    #[serde(rename = "T0", alias = "pointwise")]
    Pointwise,
    /// Which of two items fits better.
    #[serde(rename = "T1", alias = "pairwise")]
    Pairwise,
    /// Generate the answer from the whole catalogue (also every free-text generation task).
    #[serde(rename = "T2", alias = "matching")]
    Matching,
    /// Pick from a given candidate list.
    #[serde(rename = "T3", alias = "rerank")]
    Rerank,
}

/// The paper's three ways of making instructions more diverse, plus the plain form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Plain,
    /// Turn the task around: item -> query, history -> stated taste.
    Reversed,
    /// Tie preference and intention: query + choice -> history, history -> next query and item.
    Tied,
    /// Infer the taste first, then recommend.
    Chain,
}

/// What the model must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The target item's title (T2, T3).
    ItemTitle,
    /// "yes" or "no" (T0).
    YesNo,
    /// The title of the better of two items (T1).
    PreferredItem,
    /// The vague need behind the target item (reversed: item -> query).
    VagueIntention,
    /// The target item's category path (reversed: item -> specific query).
    SpecificIntention,
    /// The stated taste behind a history (reversed: history -> taste).
    ExplicitPreference,
    /// The title of the item the user chose just before the target (tied: query + choice -> history).
    PreviousItem,
    /// The next need and the item that meets it (tied: history -> next query and item).
    QueryAndItem,
    /// The inferred taste, then the recommended title (chain).
    ReasoningAndItem,
}

impl PreferenceKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "P0",
            Self::Implicit => "P1",
            Self::Explicit => "P2",
        }
    }
}

impl IntentionKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "I0",
            Self::Vague => "I1",
            Self::Specific => "I2",
        }
    }
}

impl TaskForm {
    pub fn label(self) -> &'static str {
        match self {
            Self::Pointwise => "T0",
            Self::Pairwise => "T1",
            Self::Matching => "T2",
            Self::Rerank => "T3",
        }
    }
}

impl Strategy {
    pub fn label(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Reversed => "reversed",
            Self::Tied => "tied",
            Self::Chain => "chain",
        }
    }
}

impl TargetKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::ItemTitle => "item_title",
            Self::YesNo => "yes_no",
            Self::PreferredItem => "preferred_item",
            Self::VagueIntention => "vague_intention",
            Self::SpecificIntention => "specific_intention",
            Self::ExplicitPreference => "explicit_preference",
            Self::PreviousItem => "previous_item",
            Self::QueryAndItem => "query_and_item",
            Self::ReasoningAndItem => "reasoning_and_item",
        }
    }
}

macro_rules! display_by_label {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.label())
            }
        }
    )*};
}
display_by_label!(
    PreferenceKind,
    IntentionKind,
    TaskForm,
    Strategy,
    TargetKind
);

impl PreferenceKind {
    pub const ALL: [Self; 3] = [Self::None, Self::Implicit, Self::Explicit];
}

impl IntentionKind {
    pub const ALL: [Self; 3] = [Self::None, Self::Vague, Self::Specific];
}

impl TaskForm {
    pub const ALL: [Self; 4] = [
        Self::Pointwise,
        Self::Pairwise,
        Self::Matching,
        Self::Rerank,
    ];
}

impl Strategy {
    pub const ALL: [Self; 4] = [Self::Plain, Self::Reversed, Self::Tied, Self::Chain];
}

/// Parsing by label only (P1, I0, T3, plain), the form the command line and the line files use;
/// an unknown value is answered with the allowed ones.
macro_rules! parse_by_label {
    ($($t:ty: $what:literal),*) => {$(
        impl std::str::FromStr for $t {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                <$t>::ALL.into_iter().find(|k| k.label() == s).ok_or_else(|| {
                    let allowed: Vec<&str> = <$t>::ALL.iter().map(|k| k.label()).collect();
                    format!("unknown {} {s:?}; expected one of {}", $what, allowed.join(", "))
                })
            }
        }
    )*};
}
parse_by_label!(
    PreferenceKind: "preference",
    IntentionKind: "intention",
    TaskForm: "task form",
    Strategy: "strategy"
);

/// A filled preference: what an instruction shows of the user's taste.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preference {
    None,
    /// The history as shown (after the cap and the token budget), oldest first.
    Implicit(Vec<ItemId>),
    Explicit(String),
}

/// A filled intention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intention {
    None,
    Vague(String),
    /// The target item's category path, joined.
    Specific(String),
}

impl Preference {
    pub fn kind(&self) -> PreferenceKind {
        match self {
            Self::None => PreferenceKind::None,
            Self::Implicit(_) => PreferenceKind::Implicit,
            Self::Explicit(_) => PreferenceKind::Explicit,
        }
    }
}

impl Intention {
    pub fn kind(&self) -> IntentionKind {
        match self {
            Self::None => IntentionKind::None,
            Self::Vague(_) => IntentionKind::Vague,
            Self::Specific(_) => IntentionKind::Specific,
        }
    }
}
