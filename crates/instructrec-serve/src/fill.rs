//! Choosing and filling a template for a request: the instructions crate's reranking rule, the
//! one its builder and evaluation use, so the model sees at serving time exactly the wording it
//! was tuned and evaluated on (the tests check this against the builder's instructions).

pub use instructrec_instructions::rerank::{choose, render, UnfillableSlot};

#[cfg(test)]
mod tests {
    use super::*;
    use instructrec_data::ItemId;
    use instructrec_instructions::teacher::OfflineTeacher;
    use instructrec_instructions::{
        BuildConfig, Builder, Intention, Preference, Strategy, TaskForm, WordCounter,
    };
    use instructrec_instructions::{Fills, IntentionKind, PreferenceKind, TemplateLibrary};

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
