//! The template library: coarse-grained instruction templates kept as a data file. Every template
//! declares its aspects, strategy, target and slots, and is checked at load time so that a
//! template that could never be filled correctly is rejected before any instruction is built.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::aspects::{IntentionKind, PreferenceKind, Strategy, TargetKind, TaskForm};
use crate::text::{render_candidates, render_history};

/// The library shipped with the crate.
pub const BUILTIN_TEMPLATES: &str = include_str!("../templates/templates.toml");
const BUILTIN_NAME: &str = "templates/templates.toml (built in)";

/// A place in a template's text that a fill goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    History,
    ExplicitPreference,
    VagueIntention,
    SpecificIntention,
    Candidates,
    /// The one item of a pointwise question, or the given item of a reversed/tied task.
    Item,
    ItemA,
    ItemB,
    Context,
}

impl Slot {
    const ALL: [Slot; 9] = [
        Slot::History,
        Slot::ExplicitPreference,
        Slot::VagueIntention,
        Slot::SpecificIntention,
        Slot::Candidates,
        Slot::Item,
        Slot::ItemA,
        Slot::ItemB,
        Slot::Context,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Slot::History => "history",
            Slot::ExplicitPreference => "explicit_preference",
            Slot::VagueIntention => "vague_intention",
            Slot::SpecificIntention => "specific_intention",
            Slot::Candidates => "candidates",
            Slot::Item => "item",
            Slot::ItemA => "item_a",
            Slot::ItemB => "item_b",
            Slot::Context => "context",
        }
    }

    fn from_name(name: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Slot(Slot),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: String,
    pub task: TaskForm,
    pub preference: PreferenceKind,
    pub intention: IntentionKind,
    pub strategy: Strategy,
    pub target: TargetKind,
    /// Used for the validation and test files (one per preference/intention scenario).
    pub eval: bool,
    pub slots: BTreeSet<Slot>,
    pub segments: Vec<Segment>,
    /// Whitespace-normalised text with its `{slot}` markers, for display.
    pub text: String,
}

impl Template {
    pub fn uses(&self, slot: Slot) -> bool {
        self.slots.contains(&slot)
    }

    /// The instruction text: each slot replaced by its fill (history titles joined with "; ",
    /// candidates numbered "[i] title"), the context appended when the template has no
    /// `{context}` slot, whitespace normalised. A slot whose fill is unset renders as nothing.
    /// The builder renders every instruction through this, so anything else that fills a
    /// template (serving) phrases it exactly as the model was tuned and evaluated on.
    pub fn fill(&self, fills: &Fills<'_>) -> String {
        let mut text = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(s) => text.push_str(s),
                Segment::Slot(Slot::History) => text.push_str(&render_history(fills.history)),
                Segment::Slot(Slot::Candidates) => {
                    text.push_str(&render_candidates(fills.candidates))
                }
                Segment::Slot(slot) => text.push_str(fills.get(*slot).unwrap_or_default()),
            }
        }
        if let (Some(context), false) = (fills.context, self.uses(Slot::Context)) {
            text.push(' ');
            text.push_str(context);
        }
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Words of the template without its slots (the paper reports 41.4 on average).
    pub fn word_count(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Text(t) => t.split_whitespace().count(),
                Segment::Slot(_) => 0,
            })
            .sum()
    }
}

/// What fills a template's slots (see [`Template::fill`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fills<'a> {
    /// Shown history titles, oldest first.
    pub history: &'a [&'a str],
    pub explicit_preference: Option<&'a str>,
    pub vague_intention: Option<&'a str>,
    /// The category path.
    pub specific_intention: Option<&'a str>,
    /// Candidate titles in display order.
    pub candidates: &'a [&'a str],
    pub item: Option<&'a str>,
    pub item_a: Option<&'a str>,
    pub item_b: Option<&'a str>,
    /// A full context sentence ("Context: ..."), appended when the template has no slot for it.
    pub context: Option<&'a str>,
}

impl<'a> Fills<'a> {
    /// The fill of a single-text slot (`None` for the list slots, history and candidates).
    fn get(&self, slot: Slot) -> Option<&'a str> {
        match slot {
            Slot::History | Slot::Candidates => None,
            Slot::ExplicitPreference => self.explicit_preference,
            Slot::VagueIntention => self.vague_intention,
            Slot::SpecificIntention => self.specific_intention,
            Slot::Item => self.item,
            Slot::ItemA => self.item_a,
            Slot::ItemB => self.item_b,
            Slot::Context => self.context,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: template `{id}`: slot `{slot}`: {message}")]
    Slot {
        source_name: String,
        id: String,
        slot: String,
        message: String,
    },
    #[error("{source_name}: template `{id}`: {message}")]
    Template {
        source_name: String,
        id: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct TemplateLibrary {
    templates: Vec<Template>,
    source_name: String,
    /// The file it was read from, as written: instruction folders keep a copy, so evaluation
    /// asks new lists in the templates the lines were built with.
    text: String,
}

/// The copy of the template file in an instruction folder.
pub const TEMPLATES_FILE: &str = "templates.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    template: Vec<RawTemplate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    id: String,
    task: TaskForm,
    preference: PreferenceKind,
    intention: IntentionKind,
    strategy: Strategy,
    target: TargetKind,
    #[serde(default)]
    eval: bool,
    slots: Vec<String>,
    text: String,
}

impl TemplateLibrary {
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_TEMPLATES, BUILTIN_NAME).expect("the built-in template file is valid")
    }

    /// The library in `path`, or the built-in one without a path.
    pub fn from_path_or_builtin(path: Option<&Path>) -> Result<Self, TemplateError> {
        path.map_or_else(|| Ok(Self::builtin()), Self::from_path)
    }

    pub fn from_path(path: &Path) -> Result<Self, TemplateError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Parse {
            source_name: name.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &name)
    }

    /// `source_name` names the file in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, TemplateError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| TemplateError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        let mut templates = Vec::with_capacity(raw.template.len());
        let mut ids = BTreeSet::new();
        let mut eval_scenarios = BTreeMap::new();
        for r in raw.template {
            let t = check(r, source_name)?;
            let err = |message: String| TemplateError::Template {
                source_name: source_name.to_string(),
                id: t.id.clone(),
                message,
            };
            if !ids.insert(t.id.clone()) {
                return Err(err("the id is used twice".into()));
            }
            if t.eval {
                if let Some(other) =
                    eval_scenarios.insert((t.preference, t.intention), t.id.clone())
                {
                    return Err(err(format!(
                        "`{other}` is already the evaluation template for {} {}",
                        t.preference, t.intention
                    )));
                }
            }
            templates.push(t);
        }
        if templates.is_empty() {
            return Err(TemplateError::Parse {
                source_name: source_name.to_string(),
                message: "no templates".into(),
            });
        }
        Ok(Self {
            templates,
            source_name: source_name.to_string(),
            text: text.to_string(),
        })
    }

    /// The library an instruction folder was built with: its copy of the template file, or the
    /// built-in library for folders written before the copy was kept.
    pub fn of_instructions(dir: &Path) -> Result<Self, TemplateError> {
        let path = dir.join(TEMPLATES_FILE);
        if path.exists() {
            Self::from_path(&path)
        } else {
            Ok(Self::builtin())
        }
    }

    /// The template file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    pub fn get(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == id)
    }

    /// The plain reranking (T3) templates of one preference/intention scenario, in library
    /// order. Loading guarantees their target is the item's title.
    pub fn plain_rerank(
        &self,
        preference: PreferenceKind,
        intention: IntentionKind,
    ) -> impl Iterator<Item = &Template> {
        self.plain(TaskForm::Rerank, preference, intention)
    }

    /// The plain templates of one task form and preference/intention scenario, in library order.
    pub fn plain(
        &self,
        task: TaskForm,
        preference: PreferenceKind,
        intention: IntentionKind,
    ) -> impl Iterator<Item = &Template> {
        self.templates.iter().filter(move |t| {
            t.task == task
                && t.strategy == Strategy::Plain
                && t.preference == preference
                && t.intention == intention
        })
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}

/// Which slots a template with these aspects must use; any other slot except `context` is
/// not allowed. Returns why a slot is required, for the error message.
fn required_slots(r: &RawTemplate) -> BTreeMap<Slot, &'static str> {
    let mut req = BTreeMap::new();
    if r.preference == PreferenceKind::Implicit {
        req.insert(Slot::History, "preference P1 shows the history");
    }
    if r.preference == PreferenceKind::Explicit {
        req.insert(
            Slot::ExplicitPreference,
            "preference P2 shows the stated taste",
        );
    }
    if r.intention == IntentionKind::Vague {
        req.insert(Slot::VagueIntention, "intention I1 shows the vague need");
    }
    if r.intention == IntentionKind::Specific {
        req.insert(
            Slot::SpecificIntention,
            "intention I2 shows the category query",
        );
    }
    match r.task {
        TaskForm::Rerank => {
            req.insert(Slot::Candidates, "task T3 shows the candidate list");
        }
        TaskForm::Pairwise => {
            req.insert(Slot::ItemA, "task T1 shows two items");
            req.insert(Slot::ItemB, "task T1 shows two items");
        }
        TaskForm::Pointwise => {
            req.insert(Slot::Item, "task T0 asks about one item");
        }
        TaskForm::Matching => {}
    }
    if matches!(
        r.target,
        TargetKind::VagueIntention | TargetKind::SpecificIntention | TargetKind::PreviousItem
    ) {
        req.insert(Slot::Item, "this target is derived from a given item");
    }
    req
}

/// The target must fit the task form and strategy, and must not already be shown.
fn target_problem(r: &RawTemplate) -> Option<&'static str> {
    use TargetKind as K;
    let strategy = match r.target {
        K::ItemTitle | K::YesNo | K::PreferredItem => Strategy::Plain,
        K::VagueIntention | K::SpecificIntention | K::ExplicitPreference => Strategy::Reversed,
        K::PreviousItem | K::QueryAndItem => Strategy::Tied,
        K::ReasoningAndItem => Strategy::Chain,
    };
    if strategy != r.strategy {
        return Some("the target does not belong to the declared strategy");
    }
    let task_ok = match r.target {
        K::YesNo => r.task == TaskForm::Pointwise,
        K::PreferredItem => r.task == TaskForm::Pairwise,
        K::ItemTitle | K::ReasoningAndItem => {
            matches!(r.task, TaskForm::Matching | TaskForm::Rerank)
        }
        _ => r.task == TaskForm::Matching,
    };
    if !task_ok {
        return Some("the target does not fit the task form");
    }
    let answered_in_input = match r.target {
        K::VagueIntention | K::QueryAndItem => r.intention != IntentionKind::None,
        K::SpecificIntention => r.intention != IntentionKind::None,
        K::ExplicitPreference | K::ReasoningAndItem => r.preference == PreferenceKind::Explicit,
        K::PreviousItem => r.preference != PreferenceKind::None,
        K::ItemTitle | K::YesNo | K::PreferredItem => false,
    };
    if answered_in_input {
        return Some("the instruction would already show what the target asks for");
    }
    None
}

fn check(r: RawTemplate, source_name: &str) -> Result<Template, TemplateError> {
    let slot_err = |slot: &str, message: String| TemplateError::Slot {
        source_name: source_name.to_string(),
        id: r.id.clone(),
        slot: slot.to_string(),
        message,
    };
    let template_err = |message: String| TemplateError::Template {
        source_name: source_name.to_string(),
        id: r.id.clone(),
        message,
    };
    if r.id.trim().is_empty() {
        return Err(template_err("empty id".into()));
    }
    if let Some(problem) = target_problem(&r) {
        return Err(template_err(format!("target `{}`: {problem}", r.target)));
    }
    if r.eval && !(r.task == TaskForm::Rerank && r.strategy == Strategy::Plain) {
        return Err(template_err(
            "only plain T3 templates can be evaluation templates".into(),
        ));
    }

    let mut declared = BTreeSet::new();
    for name in &r.slots {
        let slot = Slot::from_name(name)
            .ok_or_else(|| slot_err(name, "unknown slot in `slots`".into()))?;
        if !declared.insert(slot) {
            return Err(slot_err(name, "declared twice".into()));
        }
    }
    let segments = parse_text(&r.text).map_err(|(name, message)| slot_err(&name, message))?;
    let used: BTreeSet<Slot> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Slot(slot) => Some(*slot),
            Segment::Text(_) => None,
        })
        .collect();
    if let Some(s) = used.difference(&declared).next() {
        return Err(slot_err(
            s.name(),
            "used in the text but not declared in `slots`".into(),
        ));
    }
    if let Some(s) = declared.difference(&used).next() {
        return Err(slot_err(
            s.name(),
            "declared but unfilled: the text never uses it".into(),
        ));
    }
    let required = required_slots(&r);
    for (slot, why) in &required {
        if !used.contains(slot) {
            return Err(slot_err(slot.name(), format!("missing: {why}")));
        }
    }
    for slot in &used {
        if *slot != Slot::Context && !required.contains_key(slot) {
            return Err(slot_err(
                slot.name(),
                format!(
                    "not allowed for {} {} {} with target `{}`",
                    r.preference, r.intention, r.task, r.target
                ),
            ));
        }
    }
    let text = r.text.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(Template {
        id: r.id,
        task: r.task,
        preference: r.preference,
        intention: r.intention,
        strategy: r.strategy,
        target: r.target,
        eval: r.eval,
        slots: used,
        segments,
        text,
    })
}

/// Splits the text into literal runs (whitespace normalised) and `{slot}` markers.
fn parse_text(text: &str) -> Result<Vec<Segment>, (String, String)> {
    let normalised = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut segments = Vec::new();
    let mut rest = normalised.as_str();
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(("}".into(), "a `}` without its `{`".into()));
        }
        let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| {
            (
                rest[open..].to_string(),
                "a `{` that is never closed".to_string(),
            )
        })?;
        let name = &rest[open + 1..close];
        let slot =
            Slot::from_name(name).ok_or_else(|| (name.to_string(), "unknown slot".to_string()))?;
        if open > 0 {
            segments.push(Segment::Text(rest[..open].to_string()));
        }
        segments.push(Segment::Slot(slot));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest.to_string()));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str, slots: &str, extra: &str) -> String {
        format!(
            "[[template]]\nid = \"x\"\ntask = \"rerank\"\npreference = \"implicit\"\nintention = \"none\"\n\
             strategy = \"plain\"\ntarget = \"item_title\"\nslots = [{slots}]\ntext = \"{text}\"\n{extra}"
        )
    }

    #[test]
    fn builtin_library_loads_and_covers_the_papers_combinations() {
        let lib = TemplateLibrary::builtin();
        assert!(
            lib.templates().len() >= 39,
            "{} templates",
            lib.templates().len()
        );
        let has = |p, i, t| {
            lib.templates()
                .iter()
                .any(|x| x.preference == p && x.intention == i && x.task == t)
        };
        use IntentionKind as I;
        use PreferenceKind as P;
        use TaskForm as T;
        for p in [P::Implicit, P::Explicit] {
            for t in [T::Pointwise, T::Matching, T::Rerank] {
                assert!(has(p, I::None, t), "{p} I0 {t}");
                for i in [I::Vague, I::Specific] {
                    assert!(has(p, i, t), "{p} {i} {t}");
                }
            }
        }
        for i in [I::Vague, I::Specific] {
            for t in [T::Pointwise, T::Matching, T::Rerank] {
                assert!(has(P::None, i, t), "P0 {i} {t}");
            }
        }
        assert!(lib.templates().iter().any(|t| t.task == T::Pairwise));
        for s in [Strategy::Reversed, Strategy::Tied, Strategy::Chain] {
            assert!(lib.templates().iter().any(|t| t.strategy == s), "{s}");
        }
        for target in [
            TargetKind::VagueIntention,
            TargetKind::ExplicitPreference,
            TargetKind::PreviousItem,
            TargetKind::QueryAndItem,
            TargetKind::ReasoningAndItem,
        ] {
            assert!(
                lib.templates().iter().any(|t| t.target == target),
                "{target}"
            );
        }
        let avg = lib
            .templates()
            .iter()
            .map(Template::word_count)
            .sum::<usize>() as f64
            / lib.templates().len() as f64;
        assert!(
            (25.0..=50.0).contains(&avg),
            "average template length {avg}"
        );
    }

    #[test]
    fn fill_joins_numbers_and_appends_the_context() {
        let lib = TemplateLibrary::parse(
            &one(
                "Past: {history}.   Pick one: {candidates}",
                "\"history\", \"candidates\"",
                "",
            ),
            "t.toml",
        )
        .unwrap();
        let fills = Fills {
            history: &["Old, game", "New"],
            candidates: &["A", "B, C"],
            context: Some("Context: it is a Monday morning in May 2014."),
            ..Fills::default()
        };
        assert_eq!(
            lib.templates()[0].fill(&fills),
            "Past: Old, game; New. Pick one: [1] A; [2] B, C \
             Context: it is a Monday morning in May 2014."
        );
    }

    #[test]
    fn good_template_parses() {
        let lib = TemplateLibrary::parse(
            &one(
                "Past: {history}. Pick one: {candidates}",
                "\"history\", \"candidates\"",
                "",
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(lib.templates()[0].segments.len(), 4);
    }

    fn error_of(text: &str) -> String {
        TemplateLibrary::parse(text, "t.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_slot_is_named() {
        let e = error_of(&one(
            "{history} {candidates} {mood}",
            "\"history\", \"candidates\"",
            "",
        ));
        assert!(
            e.contains("template `x`") && e.contains("slot `mood`") && e.contains("unknown"),
            "{e}"
        );
        let e = error_of(&one(
            "{history} {candidates}",
            "\"history\", \"candidates\", \"mood\"",
            "",
        ));
        assert!(e.contains("slot `mood`"), "{e}");
    }

    #[test]
    fn declared_but_unfilled_slot_is_named() {
        let e = error_of(&one(
            "{history} {candidates}",
            "\"history\", \"candidates\", \"context\"",
            "",
        ));
        assert!(
            e.contains("template `x`") && e.contains("slot `context`") && e.contains("unfilled"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_slot_is_named() {
        let e = error_of(&one("Pick from {candidates}", "\"candidates\"", ""));
        assert!(e.contains("slot `history`") && e.contains("missing"), "{e}");
    }

    #[test]
    fn slot_not_allowed_for_aspects_is_named() {
        let e = error_of(&one(
            "{history} {candidates} {vague_intention}",
            "\"history\", \"candidates\", \"vague_intention\"",
            "",
        ));
        assert!(
            e.contains("slot `vague_intention`") && e.contains("not allowed"),
            "{e}"
        );
    }

    #[test]
    fn target_must_fit_task_and_duplicates_are_refused() {
        let bad = one("{history} {candidates}", "\"history\", \"candidates\"", "")
            .replace("item_title", "yes_no");
        assert!(error_of(&bad).contains("does not fit the task form"));
        let twice = format!(
            "{}\n{}",
            one("{history} {candidates}", "\"history\", \"candidates\"", ""),
            one("{history} {candidates}", "\"history\", \"candidates\"", "")
        );
        assert!(error_of(&twice).contains("used twice"));
    }

    #[test]
    fn toml_errors_name_the_file_and_line() {
        let e = error_of("[[template]]\nid = \"x\"\ntask = \"sideways\"\n");
        assert!(e.contains("t.toml") && e.contains("line 3"), "{e}");
    }
}
