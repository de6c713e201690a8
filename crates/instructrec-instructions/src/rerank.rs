//! A reranking request as an instruction: the one rule by which the instruction builder writes
//! its evaluation lines, evaluation asks about any other candidate list, and serving asks about
//! a user's request, so the model is always asked in the words it was tuned and tested on.

use instructrec_data::{Fold, ItemId, UserId};
use rand::seq::SliceRandom;

use crate::aspects::{IntentionKind, PreferenceKind, TaskForm};
use crate::seeded_rng;
use crate::template::{Fills, Segment, Slot, Template, TemplateLibrary};

/// A slot the request does not fill: an item slot of a pointwise or pairwise template asked
/// without its item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}` uses slot `{slot}`, which the request does not fill")]
pub struct UnfillableSlot {
    pub template: String,
    pub slot: Slot,
}

/// The plain reranking template of a scenario: the evaluation template when the library marks
/// one (the question the model was evaluated on), else the first plain T3 one.
pub fn choose(
    library: &TemplateLibrary,
    preference: PreferenceKind,
    intention: IntentionKind,
) -> Option<&Template> {
    choose_form(library, TaskForm::Rerank, preference, intention)
}

/// The plain template of a task form and scenario: the library's evaluation template of it when
/// marked, else the first. Pointwise (T0) and matching (T2) templates let the same checkpoint
/// rank in other ways than reranking.
pub fn choose_form(
    library: &TemplateLibrary,
    task: TaskForm,
    preference: PreferenceKind,
    intention: IntentionKind,
) -> Option<&Template> {
    library
        .plain(task, preference, intention)
        .find(|t| t.eval)
        .or_else(|| library.plain(task, preference, intention).next())
}

/// Fills `template` the way the instruction builder does: slots replaced, the context appended
/// when the template has no `{context}` slot, whitespace normalised. An item slot without its
/// fill is an error (a list slot without one renders empty, as for matching templates).
pub fn render(template: &Template, fills: &Fills<'_>) -> Result<String, UnfillableSlot> {
    let unfilled = template.segments.iter().find_map(|s| match s {
        Segment::Slot(slot @ Slot::Item) if fills.item.is_none() => Some(*slot),
        Segment::Slot(slot @ Slot::ItemA) if fills.item_a.is_none() => Some(*slot),
        Segment::Slot(slot @ Slot::ItemB) if fills.item_b.is_none() => Some(*slot),
        _ => None,
    });
    if let Some(slot) = unfilled {
        return Err(UnfillableSlot {
            template: template.id.clone(),
            slot,
        });
    }
    Ok(template.fill(fills))
}

/// The order in which an evaluation instruction lists `items`: a shuffle seeded by the build
/// seed, the user, the fold and the list length, so no position gives the answer away and the
/// same list is always shown alike.
pub fn display_order(seed: u64, user: UserId, fold: Fold, items: &[ItemId]) -> Vec<ItemId> {
    let mut shown = items.to_vec();
    let parts = [user.0 as u64, fold_index(fold) as u64, items.len() as u64];
    shown.shuffle(&mut seeded_rng(seed, "display", &parts));
    shown
}

/// Positions `0..len` of a candidate list longer than the model's lists, dealt round-robin into
/// the fewest groups of at most `size` (one group, empty, for an empty list): each group is asked
/// about in its own instruction, and every group gets some of the matcher's best.
pub fn deal(len: usize, size: usize) -> Vec<Vec<usize>> {
    let groups = len.div_ceil(size.max(1)).max(1);
    (0..groups)
        .map(|g| (g..len).step_by(groups).collect())
        .collect()
}

/// "It is a Saturday evening in March 1998.": the situation of a timestamped interaction.
pub fn context_of(timestamp: Option<i64>) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(timestamp?).ok()?;
    let part = match t.hour() {
        5..=11 => "morning",
        12..=16 => "afternoon",
        17..=21 => "evening",
        _ => "night",
    };
    Some(format!(
        "Context: it is a {} {part} in {} {}.",
        t.weekday(),
        t.month(),
        t.year()
    ))
}

/// A fold's index among per-fold tables and seeds.
pub(crate) fn fold_index(fold: Fold) -> usize {
    match fold {
        Fold::Validation => 0,
        Fold::Test => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_dealt_round_robin_into_groups_of_at_most_the_size() {
        let groups = deal(23, 10);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0][..3], [0, 3, 6]);
        assert!(groups.iter().all(|g| (7..=8).contains(&g.len())));
        let mut all = groups.concat();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        assert_eq!(deal(4, 10), vec![vec![0, 1, 2, 3]]);
        assert_eq!(deal(0, 10), vec![Vec::<usize>::new()]);
    }
}
