//! The canonical prepared dataset: what every later stage (instructions, models, baselines,
//! evaluation, serving) reads. Ids are dense indices so that models can use them directly;
//! the source's own ids are kept beside them for display and for joining back.

use serde::{Deserialize, Serialize};

/// Dense index of an item in [`Dataset::items`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemId(pub u32);

/// Dense index of a user in [`Dataset::users`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub u32);

impl ItemId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How every command and the API name a user: by the source's own id. The dense id is only
/// ever given explicitly: `#12` on a command line, a JSON number in the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserRef {
    Id(u32),
    Name(String),
}

impl std::str::FromStr for UserRef {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.strip_prefix('#').map(str::parse::<u32>) {
            Some(Ok(id)) => UserRef::Id(id),
            _ => UserRef::Name(s.to_string()),
        })
    }
}

impl UserId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: ItemId,
    /// The source's id (ASIN, MovieLens id, P5 id).
    pub original_id: String,
    /// Title with HTML entities decoded.
    pub title: String,
    /// Category path, most general first ("Video Games", "PC", "Accessories", "Gaming Mice").
    /// Product-feature sentences that Amazon category lists often carry are moved to `features`.
    pub categories: Vec<String>,
    pub brand: Option<String>,
    pub description: Option<String>,
    /// Product-feature sentences (from metadata `feature`, or split off the category list).
    pub features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub original_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub summary: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub item: ItemId,
    /// Unix seconds, when the source has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

/// A catalogue with users and each user's interactions in time order (oldest first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub items: Vec<Item>,
    pub users: Vec<User>,
    /// `sequences[u]` is user `u`'s full, time-ordered interaction sequence.
    pub sequences: Vec<Vec<Interaction>>,
}

/// Users need a training item, a validation item and a test item.
pub const MIN_USER_INTERACTIONS: usize = 3;

/// Which held-out position of a leave-one-out split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fold {
    Validation,
    Test,
}

impl std::str::FromStr for Fold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "test" => Ok(Fold::Test),
            "validation" => Ok(Fold::Validation),
            _ => Err(format!("{s:?}: use test or validation")),
        }
    }
}

/// One fixed evaluation case: the positive and the negatives every model ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateSet {
    pub user: UserId,
    pub positive: ItemId,
    /// Never contains an item the user interacted with.
    pub negatives: Vec<ItemId>,
}

impl CandidateSet {
    /// The positive first, then the negatives: models must not rely on this order
    /// (evaluation breaks ties pessimistically).
    pub fn items(&self) -> Vec<ItemId> {
        std::iter::once(self.positive)
            .chain(self.negatives.iter().copied())
            .collect()
    }
}

/// Item-level split for product search: test items never appear as training targets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ItemSplit {
    pub train: Vec<ItemId>,
    pub validation: Vec<ItemId>,
    pub test: Vec<ItemId>,
}

#[cfg(test)]
mod user_ref_tests {
    use super::UserRef;

    #[test]
    fn a_dense_id_is_only_ever_explicit() {
        let parse = |s: &str| s.parse::<UserRef>().unwrap();
        assert_eq!(parse("#12"), UserRef::Id(12));
        // A source id that looks like a number stays a source id.
        assert_eq!(parse("12"), UserRef::Name("12".into()));
        assert_eq!(parse("#x"), UserRef::Name("#x".into()));
        let json: UserRef = serde_json::from_str("12").unwrap();
        assert_eq!(json, UserRef::Id(12));
    }
}
