//! Instructions and their JSON-lines form, which the trainer (`instruction`, `target`) and the
//! evaluator (T3 validation/test lines with their displayed `candidates`) read. Every reader of
//! the format goes through [`each_line`]: [`read_jsonl`] for whole instructions as `instructions
//! build` writes them, [`read_lines`] for the fields training and validation need, from any
//! producer, and [`line_texts`] for a tokenizer's corpus, one line at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use instructrec_data::atomic::{self, Staged};
use instructrec_data::{DataError, Fold, ItemId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aspects::{
    Intention, IntentionKind, Preference, PreferenceKind, Strategy, TargetKind, TaskForm,
};
use crate::filter::{Labels, LineFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl From<Fold> for Split {
    /// The instruction lines written for a held-out fold.
    fn from(fold: Fold) -> Self {
        match fold {
            Fold::Validation => Split::Validation,
            Fold::Test => Split::Test,
        }
    }
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    pub fn file_name(self) -> String {
        format!("{}.jsonl", self.name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub split: Split,
    pub template: String,
    /// What the instruction shows of the user's taste (P1: the history after cap and budget).
    pub preference: Preference,
    pub intention: Intention,
    pub task: TaskForm,
    pub strategy: Strategy,
    pub target_kind: TargetKind,
    pub context: Option<String>,
    pub text: String,
    pub target: String,
    pub user: UserId,
    /// The item the instruction is about: the next item, or the searched-for item.
    pub target_item: ItemId,
    /// Items shown for choice, in displayed order: the list (T3), the pair (T1), the one item
    /// asked about (T0; the target item for "yes", a sampled negative for "no").
    pub candidates: Vec<ItemId>,
    /// For evaluation lines, the size of the stored candidate set they show.
    pub candidate_size: Option<usize>,
    /// Every history item the instruction draws on, shown or not: the shown history (P1), the
    /// teacher's input (P2 and taste targets), the previous item (tied targets). Oldest first.
    pub history: Vec<ItemId>,
}

/// The line format. Field names are the contract with the trainer and the evaluator.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    split: Split,
    instruction: String,
    target: String,
    template: String,
    preference: PreferenceKind,
    intention: IntentionKind,
    task: TaskForm,
    strategy: Strategy,
    target_kind: TargetKind,
    user: UserId,
    target_item: ItemId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<ItemId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    candidate_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<ItemId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    explicit_preference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vague_intention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    specific_intention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<String>,
}

impl From<&Instruction> for Line {
    fn from(i: &Instruction) -> Self {
        let explicit_preference = match &i.preference {
            Preference::Explicit(s) => Some(s.clone()),
            _ => None,
        };
        let (vague_intention, specific_intention) = match &i.intention {
            Intention::None => (None, None),
            Intention::Vague(s) => (Some(s.clone()), None),
            Intention::Specific(s) => (None, Some(s.clone())),
        };
        Line {
            split: i.split,
            instruction: i.text.clone(),
            target: i.target.clone(),
            template: i.template.clone(),
            preference: i.preference.kind(),
            intention: i.intention.kind(),
            task: i.task,
            strategy: i.strategy,
            target_kind: i.target_kind,
            user: i.user,
            target_item: i.target_item,
            candidates: i.candidates.clone(),
            candidate_size: i.candidate_size,
            history: i.history.clone(),
            explicit_preference,
            vague_intention,
            specific_intention,
            context: i.context.clone(),
        }
    }
}

impl TryFrom<Line> for Instruction {
    type Error = String;

    fn try_from(l: Line) -> Result<Self, String> {
        let preference = match l.preference {
            PreferenceKind::None => Preference::None,
            PreferenceKind::Implicit => Preference::Implicit(l.history.clone()),
            PreferenceKind::Explicit => Preference::Explicit(
                l.explicit_preference
                    .ok_or("`explicit_preference` is missing for P2")?,
            ),
        };
        let intention = match l.intention {
            IntentionKind::None => Intention::None,
            IntentionKind::Vague => Intention::Vague(
                l.vague_intention
                    .ok_or("`vague_intention` is missing for I1")?,
            ),
            IntentionKind::Specific => Intention::Specific(
                l.specific_intention
                    .ok_or("`specific_intention` is missing for I2")?,
            ),
        };
        Ok(Instruction {
            split: l.split,
            template: l.template,
            preference,
            intention,
            task: l.task,
            strategy: l.strategy,
            target_kind: l.target_kind,
            context: l.context,
            text: l.instruction,
            target: l.target,
            user: l.user,
            target_item: l.target_item,
            candidates: l.candidates,
            candidate_size: l.candidate_size,
            history: l.history,
        })
    }
}

/// Writes one instruction per line to a temporary file beside `path`, renamed into place only
/// when complete.
pub fn write_jsonl(path: &Path, instructions: &[Instruction]) -> Result<(), DataError> {
    staged_jsonl(path, instructions)?
        .commit()
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The lines for `path`, complete in a temporary file beside it, not yet renamed into place.
pub(crate) fn staged_jsonl(path: &Path, instructions: &[Instruction]) -> Result<Staged, DataError> {
    atomic::stage(path, |tmp| {
        let mut w = BufWriter::new(File::create(tmp)?);
        for i in instructions {
            serde_json::to_writer(&mut w, &Line::from(i))?;
            w.write_all(b"\n")?;
        }
        w.flush()
    })
    .map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every instruction of a file `instructions build` wrote; a line that is not such an
/// instruction is an error naming the file and the line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Instruction>, DataError> {
    let mut out = Vec::new();
    each_line(path, |_, line: Line| {
        out.push(Instruction::try_from(line)?);
        Ok(())
    })?;
    Ok(out)
}

/// An instruction line as training and validation read it. Only `instruction` and `target` are
/// required, so that lines written by other tools train too; the labels and items are typed
/// where present, and other fields are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionLine {
    /// Where it is in its file, from 1.
    pub line: usize,
    pub instruction: String,
    pub target: String,
    pub labels: Labels,
    /// Items shown for choice, in displayed order (empty when the line lists none).
    pub candidates: Vec<ItemId>,
    pub target_item: Option<ItemId>,
}

#[derive(Deserialize)]
struct LooseLine {
    instruction: Option<String>,
    target: Option<String>,
    preference: Option<PreferenceKind>,
    intention: Option<IntentionKind>,
    task: Option<TaskForm>,
    strategy: Option<Strategy>,
    #[serde(default)]
    candidates: Vec<ItemId>,
    target_item: Option<ItemId>,
}

/// Reads the lines of `path` that `filter` keeps. A kept line without a non-empty `instruction`
/// and `target` is an error naming the file and the line; lines the filter drops are not checked.
pub fn read_lines(path: &Path, filter: &LineFilter) -> Result<Vec<InstructionLine>, DataError> {
    let mut out = Vec::new();
    each_line(path, |n, line: LooseLine| {
        let labels = Labels {
            preference: line.preference,
            intention: line.intention,
            task: line.task,
            strategy: line.strategy,
        };
        if !filter.keeps(&labels) {
            return Ok(());
        }
        out.push(InstructionLine {
            line: n,
            instruction: required(line.instruction, "instruction")?,
            target: required(line.target, "target")?,
            labels,
            candidates: line.candidates,
            target_item: line.target_item,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The instruction and the target of every line of `path`, read one line at a time, so that a
/// tokenizer can learn from a file of any size without holding it. A line without them is an
/// error naming the file and the line, as for [`read_lines`].
pub fn line_texts(
    path: &Path,
) -> Result<impl Iterator<Item = Result<[String; 2], DataError>> + Send, DataError> {
    let owned = path.to_path_buf();
    Ok(parsed(path)?.map(move |parsed| {
        let (n, line): (usize, LooseLine) = parsed?;
        let texts = required(line.instruction, "instruction")
            .and_then(|i| Ok([i, required(line.target, "target")?]));
        texts.map_err(|message| DataError::Line {
            path: owned.clone(),
            line: n,
            message,
        })
    }))
}

/// A text field that must be present and not blank.
fn required(value: Option<String>, name: &str) -> Result<String, String> {
    value
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("field `{name}` is missing or empty"))
}

/// Hands each non-blank line of `path`, parsed as a `T`, to `take` with its number (from 1); a
/// line that is not UTF-8, not a `T`, or refused by `take` stops the reading with an error naming
/// the file and the line.
fn each_line<T: DeserializeOwned>(
    path: &Path,
    mut take: impl FnMut(usize, T) -> Result<(), String>,
) -> Result<(), DataError> {
    for parsed in parsed(path)? {
        let (n, line) = parsed?;
        take(n, line).map_err(|message| DataError::Line {
            path: path.to_path_buf(),
            line: n,
            message,
        })?;
    }
    Ok(())
}

/// Each non-blank line of `path` parsed as a `T`, with its number (from 1), read as it is asked
/// for; a line that is not UTF-8 or not a `T` is an error naming the file and the line.
fn parsed<T: DeserializeOwned>(
    path: &Path,
) -> Result<impl Iterator<Item = Result<(usize, T), DataError>> + Send, DataError> {
    let owned = path.to_path_buf();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    let file = File::open(path).map_err(io(path))?;
    // Split on bytes, not `lines()`, so that a line that is not UTF-8 is reported by number.
    let lines = BufReader::new(file).split(b'\n').enumerate();
    Ok(lines.filter_map(move |(n, line)| {
        let err = |message: String| DataError::Line {
            path: owned.clone(),
            line: n + 1,
            message,
        };
        let line = match line.map_err(io(&owned)) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|e| err(format!("not valid UTF-8: {}", e.utf8_error()))),
            Err(e) => Err(e),
        };
        match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(
                serde_json::from_str(&line)
                    .map(|parsed| (n + 1, parsed))
                    .map_err(|e| err(e.to_string())),
            ),
            Err(e) => Some(Err(e)),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_texts_reads_one_line_at_a_time_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        std::fs::write(
            &path,
            "{\"instruction\": \"pick one\", \"target\": \"Halo 3\"}\n\n\
             {\"instruction\": \"pick again\", \"target\": \" \"}\n{not json\n",
        )
        .unwrap();
        let mut texts = line_texts(&path).unwrap();
        assert_eq!(
            texts.next().unwrap().unwrap(),
            ["pick one".to_string(), "Halo 3".to_string()]
        );
        let e = texts.next().unwrap().unwrap_err().to_string();
        assert!(
            e.contains("train.jsonl") && e.contains('3') && e.contains("`target`"),
            "{e}"
        );
        // Reading goes on past a bad line only if the caller asks: the next is bad JSON.
        let e = texts.next().unwrap().unwrap_err().to_string();
        assert!(e.contains('4'), "{e}");
        assert!(texts.next().is_none());
    }
}
