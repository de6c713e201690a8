//! `T2>T3`: a list longer than the tuned lists is ranked by the matching form, and only its best
//! are asked with the list. Checked against the two forms asked on their own with the same
//! (tiny, fixture) model: the shortlist is the matching form's top, ordered as the list form
//! orders it when asked about exactly that shortlist, and everything else keeps the matching
//! form's order.

use instructrec_data::{Fold, ItemId};
use instructrec_eval::harness::{build_cases, Setting};
use instructrec_eval::protocol::Protocol;
use instructrec_eval::scorer::Scorer;
use instructrec_eval::{InstructRecScorer, InstructionRenderer, Normalisation};
use instructrec_instructions::teacher::OfflineTeacher;
use instructrec_instructions::{
    BuildConfig, Builder, IntentionKind, PreferenceKind, TaskForm, TemplateLibrary, WordCounter,
};
use instructrec_model::{Placement, Seq2Seq, TokenLimits};

#[test]
fn a_long_list_is_shortlisted_by_t2_then_ordered_by_t3() {
    let prepared = instructrec_eval::synthetic::prepared(30, 120, 5);
    let library = TemplateLibrary::builtin();
    let config = BuildConfig {
        seed: 5,
        train_candidates: 10,
        ..BuildConfig::default()
    };
    let set = Builder::new(
        &prepared,
        &library,
        &OfflineTeacher::new(1),
        &WordCounter,
        config,
    )
    .unwrap()
    .build()
    .unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../instructrec-model/tests/fixtures/t5-relu-tied"
    );
    let model = || Seq2Seq::load_on(std::path::Path::new(fixture), Placement::default()).unwrap();
    let renderer = |task| {
        InstructionRenderer::new(
            &prepared,
            (set.config.clone(), &library),
            (task, PreferenceKind::Implicit, IntentionKind::None),
        )
        .unwrap()
    };
    let scorer = |task| {
        InstructRecScorer::new(
            "m",
            model(),
            renderer(task),
            TokenLimits::default(),
            Normalisation::Mean,
        )
    };
    let shortlisting = scorer(TaskForm::Rerank)
        .with_shortlist(renderer(TaskForm::Matching))
        .unwrap();
    let (listed, unlisted) = (scorer(TaskForm::Rerank), scorer(TaskForm::Matching));
    // T2>T3+T2: the shortlist asked with both forms, its T2 scores those of the first pass.
    let both = || {
        scorer(TaskForm::Rerank)
            .with_matching(renderer(TaskForm::Matching))
            .unwrap()
    };
    let shortlisting_both = both().with_shortlist(renderer(TaskForm::Matching)).unwrap();
    let summed = both();
    let cases = build_cases(
        &prepared,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
    )
    .unwrap();
    let order = |scores: &[f32]| {
        let mut o: Vec<usize> = (0..scores.len()).collect();
        o.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        o
    };
    for case in cases.iter().take(3) {
        let own: Vec<ItemId> = case.case.history.clone();
        let long: Vec<ItemId> = (0..120)
            .map(ItemId)
            .filter(|i| !own.contains(i))
            .take(25)
            .collect();
        let got = order(&shortlisting.score(&case.case, &long).unwrap());
        let by_t2 = order(&unlisted.score(&case.case, &long).unwrap());
        let (kept, rest) = by_t2.split_at(10);
        assert_eq!(&got[10..], rest, "past the shortlist, T2's order");
        let shortlist: Vec<ItemId> = kept.iter().map(|&i| long[i]).collect();
        let by_t3 = order(&listed.score(&case.case, &shortlist).unwrap());
        let expected: Vec<usize> = by_t3.iter().map(|&k| kept[k]).collect();
        assert_eq!(
            &got[..10],
            expected.as_slice(),
            "the shortlist in T3's order"
        );
        let got = order(&shortlisting_both.score(&case.case, &long).unwrap());
        assert_eq!(&got[10..], rest, "past the shortlist, T2's order");
        let by_sum = order(&summed.score(&case.case, &shortlist).unwrap());
        let expected: Vec<usize> = by_sum.iter().map(|&k| kept[k]).collect();
        assert_eq!(
            &got[..10],
            expected.as_slice(),
            "the shortlist in T3+T2's order"
        );
        // A list of the tuned length is asked with the list alone.
        assert_eq!(
            shortlisting.score(&case.case, &case.candidates).unwrap(),
            listed.score(&case.case, &case.candidates).unwrap()
        );
    }
}
