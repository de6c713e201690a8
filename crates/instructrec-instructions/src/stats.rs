//! Statistics of a built instruction set, in the spirit of the paper's instruction table.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use serde::Serialize;

use crate::record::{Instruction, Split};
use crate::teacher::{Fill, FillRequest, TeacherReport};
use crate::template::{Template, TemplateLibrary};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BuildTimings {
    pub plan: f64,
    pub teacher: f64,
    pub render: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SplitStats {
    pub instructions: usize,
    pub users: usize,
    /// Keyed "P1 I0 T3".
    pub by_aspects: BTreeMap<String, usize>,
    pub by_strategy: BTreeMap<String, usize>,
    pub by_template: BTreeMap<String, usize>,
    pub average_instruction_words: f64,
    pub average_target_words: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FillKindStats {
    pub count: usize,
    pub average_words: f64,
    pub distinct_texts: usize,
    /// Distinct sentence frames, where the teacher reports them.
    pub distinct_phrasings: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstructionStats {
    pub templates: usize,
    pub average_template_words: f64,
    pub splits: BTreeMap<String, SplitStats>,
    pub preferences: FillKindStats,
    pub intentions: FillKindStats,
    pub teacher: TeacherReport,
    pub seconds: BuildTimings,
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fn mean(total: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        total as f64 / n as f64
    }
}

fn split_stats(instructions: &[Instruction]) -> SplitStats {
    let mut s = SplitStats {
        instructions: instructions.len(),
        ..Default::default()
    };
    let mut users = HashSet::new();
    let (mut iw, mut tw) = (0, 0);
    for i in instructions {
        users.insert(i.user);
        let aspects = format!("{} {} {}", i.preference.kind(), i.intention.kind(), i.task);
        *s.by_aspects.entry(aspects).or_default() += 1;
        *s.by_strategy.entry(i.strategy.to_string()).or_default() += 1;
        *s.by_template.entry(i.template.clone()).or_default() += 1;
        iw += words(&i.text);
        tw += words(&i.target);
    }
    s.users = users.len();
    s.average_instruction_words = mean(iw, instructions.len());
    s.average_target_words = mean(tw, instructions.len());
    s
}

fn fill_stats<'a>(fills: impl Iterator<Item = &'a Fill>) -> FillKindStats {
    let mut count = 0;
    let mut total = 0;
    let mut texts = HashSet::new();
    let mut phrasings = HashSet::new();
    let mut all_phrased = true;
    for f in fills {
        count += 1;
        total += words(&f.text);
        texts.insert(f.text.as_str());
        match &f.phrasing {
            Some(p) => {
                phrasings.insert(p.as_str());
            }
            None => all_phrased = false,
        }
    }
    FillKindStats {
        count,
        average_words: mean(total, count),
        distinct_texts: texts.len(),
        distinct_phrasings: (all_phrased && count > 0).then_some(phrasings.len()),
    }
}

impl InstructionStats {
    pub fn compute(
        library: &TemplateLibrary,
        splits: [&[Instruction]; 3],
        fills: &[(FillRequest, Fill)],
        teacher: TeacherReport,
        seconds: BuildTimings,
    ) -> Self {
        let templates = library.templates();
        InstructionStats {
            templates: templates.len(),
            average_template_words: mean(
                templates.iter().map(Template::word_count).sum(),
                templates.len(),
            ),
            splits: Split::ALL
                .iter()
                .zip(splits)
                .map(|(s, i)| (s.name().to_string(), split_stats(i)))
                .collect(),
            preferences: fill_stats(
                fills
                    .iter()
                    .filter(|(r, _)| matches!(r, FillRequest::Preference { .. }))
                    .map(|(_, f)| f),
            ),
            intentions: fill_stats(
                fills
                    .iter()
                    .filter(|(r, _)| matches!(r, FillRequest::Intention { .. }))
                    .map(|(_, f)| f),
            ),
            teacher,
            seconds,
        }
    }

    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let names: Vec<&str> = Split::ALL.iter().map(|s| s.name()).collect();
        let get = |name: &str| self.splits.get(name).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<28}{:>12}{:>12}{:>12}",
            "", names[0], names[1], names[2]
        );
        let row = |out: &mut String, label: &str, f: &dyn Fn(&SplitStats) -> String| {
            let _ = writeln!(
                out,
                "{label:<28}{:>12}{:>12}{:>12}",
                f(&get(names[0])),
                f(&get(names[1])),
                f(&get(names[2]))
            );
        };
        row(&mut out, "instructions", &|s| s.instructions.to_string());
        row(&mut out, "users", &|s| s.users.to_string());
        row(&mut out, "avg words / instruction", &|s| {
            format!("{:.1}", s.average_instruction_words)
        });
        row(&mut out, "avg words / target", &|s| {
            format!("{:.1}", s.average_target_words)
        });
        let mut aspects: Vec<&String> = self
            .splits
            .values()
            .flat_map(|s| s.by_aspects.keys())
            .collect();
        aspects.sort();
        aspects.dedup();
        for a in aspects {
            row(&mut out, &format!("  {a}"), &|s| {
                s.by_aspects.get(a).copied().unwrap_or(0).to_string()
            });
        }
        let mut strategies: Vec<&String> = self
            .splits
            .values()
            .flat_map(|s| s.by_strategy.keys())
            .collect();
        strategies.sort();
        strategies.dedup();
        for st in strategies {
            row(&mut out, &format!("  strategy {st}"), &|s| {
                s.by_strategy.get(st).copied().unwrap_or(0).to_string()
            });
        }
        let _ = writeln!(
            out,
            "templates: {} (avg {:.1} words without slots)",
            self.templates, self.average_template_words
        );
        for (label, f) in [
            ("preferences (P2)", &self.preferences),
            ("intentions (I1)", &self.intentions),
        ] {
            let phrasings = f
                .distinct_phrasings
                .map_or("n/a".to_string(), |p| p.to_string());
            let _ = writeln!(
                out,
                "{label}: {} fills, avg {:.1} words, {} distinct texts, {} distinct phrasings",
                f.count, f.average_words, f.distinct_texts, phrasings
            );
        }
        let t = &self.teacher;
        let _ = writeln!(
            out,
            "teacher {}: {} fills, {} requests ({} retries), {} cache hits, {} prompt + {} completion tokens, {} rejected",
            t.teacher, t.fills, t.requests, t.retries, t.cache_hits, t.prompt_tokens, t.completion_tokens, t.rejected
        );
        let _ = writeln!(
            out,
            "seconds: plan {:.2}, teacher {:.2}, render {:.2}",
            self.seconds.plan, self.seconds.teacher, self.seconds.render
        );
        out
    }
}
