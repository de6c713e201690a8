//! Choosing and filling a template for a request.
//!
//! Rendering is the instructions crate's own `Template::fill`, the one its builder makes every
//! instruction with, so the model sees at serving time exactly the wording it was tuned and
//! evaluated on (the tests check this against the builder's instructions).

use instructrec_instructions::{
    Fills, IntentionKind, PreferenceKind, Segment, Slot, Template, TemplateLibrary,
};

/// A slot that only non-ranking templates use; serving never picks those.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}` uses slot `{slot}`, which serving does not fill")]
pub struct UnfillableSlot {
    pub template: String,
    pub slot: Slot,
}

/// The plain reranking template for a scenario: the evaluation template when the library marks
/// one (so serving asks the question the model was evaluated on), else the first plain T3 one.
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

/// Fills `template` the way the instruction builder does: slots replaced, the context appended
/// when the template has no `{context}` slot, whitespace normalised. Serving fills no item
/// slots: those belong to the pointwise and pairwise templates it never picks.
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

#[cfg(test)]
mod tests {
    use super::*;
    use instructrec_data::ItemId;
    use instructrec_instructions::teacher::OfflineTeacher;
    use instructrec_instructions::{
        BuildConfig, Builder, Intention, Preference, Strategy, TaskForm, WordCounter,
    };

    #[test]
    fn every_scenario_but_p0_i0_has_a_template() {
        let lib = TemplateLibrary::builtin();
        use IntentionKind as I;
        use PreferenceKind as P;
        for p in [P::None, P::Implicit, P::Explicit] {
            for i in [I::None, I::Vague, I::Specific] {
                let t = choose(&lib, p, i);
                if (p, i) == (P::None, I::None) {
                    assert!(t.is_none());
                } else {
                    let t = t.unwrap_or_else(|| panic!("no template for {p} {i}"));
                    assert_eq!(
                        (t.preference, t.intention, t.task),
                        (p, i, TaskForm::Rerank)
                    );
                }
            }
        }
    }

    /// Re-renders the builder's evaluation instructions from their recorded fills: the texts
    /// must be identical, or serving would phrase questions differently from training.
    #[test]
    fn rendering_matches_the_instruction_builder() {
        let mut prepared = instructrec_eval::synthetic::prepared(40, 120, 3);
        // Timestamps give the builder's instructions a context sentence to append.
        for (u, seq) in prepared.dataset.sequences.iter_mut().enumerate() {
            for (i, x) in seq.iter_mut().enumerate() {
                x.timestamp = Some(1_400_000_000 + (u * 1000 + i) as i64 * 40_000);
            }
        }
        let library = TemplateLibrary::builtin();
        let teacher = OfflineTeacher::new(7);
        let config = BuildConfig {
            eval_users: None,
            ..BuildConfig::default()
        };
        let set = Builder::new(&prepared, &library, &teacher, &WordCounter, config)
            .unwrap()
            .build()
            .unwrap();
        let title = |i: &ItemId| prepared.dataset.items[i.index()].title.as_str();
        let mut checked = 0;
        for ins in set.test.iter().chain(&set.train) {
            let template = library.get(&ins.template).unwrap();
            if template.task != TaskForm::Rerank || template.strategy != Strategy::Plain {
                continue;
            }
            let history: Vec<&str> = match &ins.preference {
                Preference::Implicit(items) => items.iter().map(title).collect(),
                _ => Vec::new(),
            };
            let candidates: Vec<&str> = ins.candidates.iter().map(title).collect();
            let (vague, specific) = match &ins.intention {
                Intention::Vague(t) => (Some(t.as_str()), None),
                Intention::Specific(t) => (None, Some(t.as_str())),
                Intention::None => (None, None),
            };
            let explicit = match &ins.preference {
                Preference::Explicit(t) => Some(t.as_str()),
                _ => None,
            };
            let fills = Fills {
                history: &history,
                explicit_preference: explicit,
                vague_intention: vague,
                specific_intention: specific,
                candidates: &candidates,
                context: ins.context.as_deref(),
                ..Fills::default()
            };
            assert_eq!(
                render(template, &fills).unwrap(),
                ins.text,
                "{}",
                ins.template
            );
            checked += 1;
        }
        assert!(checked > 100, "only {checked} instructions compared");
        assert!(set.test.iter().any(|i| i.context.is_some()));
    }
}
