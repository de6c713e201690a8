//! A reranking request as an instruction: the one rule by which the instruction builder writes
//! its evaluation lines, evaluation asks about any other candidate list, and serving asks about
//! a user's request, so the model is always asked in the words it was tuned and tested on.

use instructrec_data::{Fold, ItemId, UserId};
use rand::seq::SliceRandom;

use crate::aspects::{IntentionKind, PreferenceKind};
use crate::seeded_rng;
use crate::template::{Fills, Segment, Slot, Template, TemplateLibrary};

/// A slot that only non-ranking templates use; reranking requests never pick those.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}` uses slot `{slot}`, which a reranking request does not fill")]
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
    library
        .plain_rerank(preference, intention)
        .find(|t| t.eval)
        .or_else(|| library.plain_rerank(preference, intention).next())
}

/// Fills a reranking `template` the way the instruction builder does: slots replaced, the
/// context appended when the template has no `{context}` slot, whitespace normalised. Item
/// slots belong to the pointwise and pairwise templates, which rank nothing.
pub fn render(template: &Template, fills: &Fills<'_>) -> Result<String, UnfillableSlot> {
    let item_slot = template.segments.iter().find_map(|s| match s {
        Segment::Slot(slot @ (Slot::Item | Slot::ItemA | Slot::ItemB)) => Some(*slot),
        _ => None,
    });
    if let Some(slot) = item_slot {
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
