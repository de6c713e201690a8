//! Search protocols read their queries from the instruction stage's evaluation lines, so that
//! every model (baselines and the instruction model) answers the same query on the same
//! candidate list: the I2 fill (the target's category labels), the I1 fill (the teacher's vague
//! intention) or the P2 fill (the teacher's statement of taste).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::bail;
use instructrec_data::{ItemId, UserId};
use instructrec_instructions::{
    read_jsonl, Instruction, Intention, Preference, PreferenceKind, Strategy, TaskForm,
};
use serde::{Deserialize, Serialize};

/// Which fill a search case uses as its query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryKind {
    /// P2: the user's stated taste.
    Explicit,
    /// I1: a vague intention.
    Vague,
    /// I2: a specific intention (category labels).
    Specific,
}

impl QueryKind {
    pub const ALL: [QueryKind; 3] = [QueryKind::Explicit, QueryKind::Vague, QueryKind::Specific];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Explicit => "explicit",
            QueryKind::Vague => "vague",
            QueryKind::Specific => "specific",
        }
    }

    /// The paper's label for the aspect the query fills.
    pub fn aspect(self) -> &'static str {
        match self {
            QueryKind::Explicit => "P2",
            QueryKind::Vague => "I1",
            QueryKind::Specific => "I2",
        }
    }

    /// The query text of an instruction line, when the line carries this kind of fill.
    pub fn of(self, line: &Instruction) -> Option<&str> {
        match (self, &line.preference, &line.intention) {
            (QueryKind::Explicit, Preference::Explicit(s), Intention::None) => Some(s),
            (QueryKind::Vague, _, Intention::Vague(s)) => Some(s),
            (QueryKind::Specific, _, Intention::Specific(s)) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for QueryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown query kind {s:?}; expected explicit, vague or specific")
            })
    }
}

/// One search case as the instruction stage wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLine {
    pub user: UserId,
    pub positive: ItemId,
    /// The stored candidate list the line shows (positive included).
    pub candidates: Vec<ItemId>,
    pub query: String,
    /// The line's rendered instruction, which the instruction model answers.
    pub instruction: String,
}

/// Plain reranking lines of `path` whose preference is `preference` and that carry a `kind` query,
/// one per user (the first). Errors when there is none, naming the file.
pub fn read_queries(
    path: &Path,
    preference: PreferenceKind,
    kind: QueryKind,
) -> anyhow::Result<Vec<QueryLine>> {
    let lines = read_jsonl(path)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in &lines {
        if line.task != TaskForm::Rerank
            || line.strategy != Strategy::Plain
            || line.preference.kind() != preference
        {
            continue;
        }
        let Some(query) = kind.of(line) else { continue };
        if seen.insert(line.user) {
            out.push(QueryLine {
                user: line.user,
                positive: line.target_item,
                candidates: line.candidates.clone(),
                query: query.to_string(),
                instruction: line.text.clone(),
            });
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no plain reranking lines with preference {preference:?} and a {kind} query \
             (build instructions with `instructrec instructions build`)",
            path.display()
        );
    }
    Ok(out)
}
