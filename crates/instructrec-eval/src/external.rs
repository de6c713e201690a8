//! Candidate lists from a file (`eval --candidates`), such as a peer's published lists: JSON
//! lines in the stored lists' own shape, `{"user": .., "positive": .., "negatives": [..]}`,
//! keyed by the dataset's raw ids (the source's user and item ids) or by prepared ids. A line
//! that is not JSON of that shape stops the read with its line and field; a line whose lists
//! cannot be scored fairly here is dropped and counted by reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};
use instructrec_data::{CandidateSet, Fold, ItemId, Prepared, UserId};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Which ids a candidate file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateIds {
    /// The source data's own user and item ids (reviewer and ASIN, or the dataset's ids).
    Raw,
    /// The prepared dataset's dense ids.
    Prepared,
}

impl std::str::FromStr for CandidateIds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(Self::Raw),
            "prepared" => Ok(Self::Prepared),
            _ => Err(format!("{s:?} is not an id kind: raw or prepared")),
        }
    }
}

/// Lines kept, and lines dropped by reason with the first few line numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadSummary {
    pub kept: usize,
    pub dropped: BTreeMap<&'static str, Vec<usize>>,
}

impl fmt::Display for ReadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kept {} lists", self.kept)?;
        for (reason, lines) in &self.dropped {
            let first: Vec<String> = lines.iter().take(5).map(usize::to_string).collect();
            write!(
                f,
                "; dropped {} ({reason}; lines {}{})",
                lines.len(),
                first.join(", "),
                if lines.len() > 5 { ", ..." } else { "" }
            )?;
        }
        Ok(())
    }
}

/// The lists of a candidate file that can be scored: each positive the user's held-out test
/// item (what every model's history stops before), no negative repeated, the positive or one of
/// the user's other items, and every list as long as the first kept one.
pub struct ExternalLists {
    pub sets: Vec<CandidateSet>,
    /// SHA-256 of the file's bytes, recorded in the report.
    pub checksum: String,
    pub summary: ReadSummary,
}

/// Reads and checks a candidate file against `prepared`.
pub fn read_candidates(
    path: &Path,
    prepared: &Prepared,
    ids: CandidateIds,
) -> anyhow::Result<ExternalLists> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
    let users: HashMap<&str, UserId> = prepared
        .dataset
        .users
        .iter()
        .map(|u| (u.original_id.as_str(), u.id))
        .collect();
    let items: HashMap<&str, ItemId> = prepared
        .dataset
        .items
        .iter()
        .map(|i| (i.original_id.as_str(), i.id))
        .collect();
    let (n_users, n_items) = (users.len(), items.len());
    let mut summary = ReadSummary::default();
    let mut sets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{n}: not JSON", path.display()))?;
        let field = |name: &str| {
            value
                .get(name)
                .with_context(|| format!("{}:{n}: field `{name}` is missing", path.display()))
        };
        let id = |v: &Value, name: &str| -> anyhow::Result<String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(x) if x.is_u64() => Ok(x.to_string()),
                _ => bail!("{}:{n}: field `{name}`: {v} is not an id", path.display()),
            }
        };
        let user = id(field("user")?, "user")?;
        let positive = id(field("positive")?, "positive")?;
        let negatives = field("negatives")?
            .as_array()
            .with_context(|| format!("{}:{n}: field `negatives` is not a list", path.display()))?
            .iter()
            .map(|v| id(v, "negatives"))
            .collect::<anyhow::Result<Vec<String>>>()?;
        let mut drop = |reason| summary.dropped.entry(reason).or_default().push(n);
        let dense = |s: &str, bound: usize| s.parse::<u32>().ok().filter(|&i| (i as usize) < bound);
        let user = match ids {
            CandidateIds::Raw => users.get(user.as_str()).copied(),
            CandidateIds::Prepared => dense(&user, n_users).map(UserId),
        };
        let item = |s: &String| match ids {
            CandidateIds::Raw => items.get(s.as_str()).copied(),
            CandidateIds::Prepared => dense(s, n_items).map(ItemId),
        };
        let (Some(user), Some(positive)) = (user, item(&positive)) else {
            drop("unknown user or positive");
            continue;
        };
        let Some(negatives) = negatives.iter().map(item).collect::<Option<Vec<ItemId>>>() else {
            drop("unknown negative");
            continue;
        };
        let set = CandidateSet {
            user,
            positive,
            negatives,
        };
        if let Some(reason) = problem(prepared, &set, sets.first()) {
            drop(reason);
            continue;
        }
        sets.push(set);
    }
    summary.kept = sets.len();
    if sets.is_empty() {
        bail!("{}: no list can be scored: {summary}", path.display());
    }
    Ok(ExternalLists {
        sets,
        checksum: hex::encode(Sha256::digest(&bytes)),
        summary,
    })
}

/// Why a list cannot be scored fairly, if it cannot.
fn problem(
    prepared: &Prepared,
    set: &CandidateSet,
    first: Option<&CandidateSet>,
) -> Option<&'static str> {
    if set.negatives.is_empty() {
        return Some("no negatives");
    }
    if prepared.held_out(set.user, Fold::Test) != set.positive {
        return Some("positive is not the user's held-out test item");
    }
    if set.negatives.contains(&set.positive) {
        return Some("positive repeated among the negatives");
    }
    let unique: HashSet<ItemId> = set.negatives.iter().copied().collect();
    if unique.len() != set.negatives.len() {
        return Some("a negative repeated");
    }
    let seen = &prepared.dataset.sequences[set.user.index()];
    if seen.iter().any(|x| unique.contains(&x.item)) {
        return Some("an item of the user's history among the negatives");
    }
    if first.is_some_and(|f| f.negatives.len() != set.negatives.len()) {
        return Some("list length differs from the first kept list's");
    }
    None
}
