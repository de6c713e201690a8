//! The instruction model is asked about any list by the instruction builder's own rule: on the
//! lists the builder wrote test lines for, the renderer must reproduce those lines exactly.

use instructrec_data::Fold;
use instructrec_eval::harness::{build_cases, build_query_cases, Setting};
use instructrec_eval::protocol::Protocol;
use instructrec_eval::queries::{read_queries, QueryKind};
use instructrec_eval::InstructionRenderer;
use instructrec_instructions::teacher::OfflineTeacher;
use instructrec_instructions::{
    BuildConfig, Builder, IntentionKind, PreferenceKind, Split, TaskForm, TemplateLibrary,
    WordCounter,
};

#[test]
fn rendered_instructions_equal_the_builders_test_lines() {
    let mut prepared = instructrec_eval::synthetic::prepared(60, 150, 5);
    // Timestamps give the lines a context sentence, which the renderer must word alike.
    for (u, seq) in prepared.dataset.sequences.iter_mut().enumerate() {
        for (i, x) in seq.iter_mut().enumerate() {
            x.timestamp = Some(1_300_000_000 + (u * 1000 + i) as i64 * 50_000);
        }
    }
    let library = TemplateLibrary::builtin();
    let teacher = OfflineTeacher::new(3);
    let config = BuildConfig {
        seed: 11,
        history_budget: 12,
        eval_users: None,
        // Lists name each item with its category label, as the renderer must do alike.
        candidate_labels: 2,
        ..BuildConfig::default()
    };
    let set = Builder::new(&prepared, &library, &teacher, &WordCounter, config)
        .unwrap()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    set.write(dir.path()).unwrap();
    let build = BuildConfig::read(dir.path()).unwrap();
    assert_eq!(build, set.config);
    // The folder keeps the template file it was built from, and evaluation reads it back.
    let library = TemplateLibrary::of_instructions(dir.path()).unwrap();
    assert_eq!(library.text(), TemplateLibrary::builtin().text());

    // Sequential: every stored 1+9 list of each fold against the builder's P1 I0 line for that
    // user (the validation fold's as `eval --fold validation` and `--choose-form` ask them).
    let scenario = (
        TaskForm::Rerank,
        PreferenceKind::Implicit,
        IntentionKind::None,
    );
    let sequential = |fold| {
        build_cases(
            &prepared,
            Protocol::Sequential,
            fold,
            Setting::Sampled { size: 10 },
        )
        .unwrap()
    };
    for (fold, lines) in [(Fold::Test, &set.test), (Fold::Validation, &set.validation)] {
        let renderer = InstructionRenderer::new(&prepared, (build.clone(), &library), scenario)
            .unwrap()
            .for_fold(fold);
        let cases = sequential(fold);
        let mut compared = 0;
        for line in lines.iter().filter(|l| {
            l.task == TaskForm::Rerank
                && l.preference.kind() == PreferenceKind::Implicit
                && l.intention.kind() == IntentionKind::None
        }) {
            let case = cases.iter().find(|c| c.case.user == line.user).unwrap();
            assert_eq!(
                renderer.render(&case.case, &case.candidates).unwrap(),
                line.text
            );
            compared += 1;
        }
        assert!(compared >= 50, "{fold:?}: {compared}");
    }
    assert!(set.test.iter().any(|l| l.context.is_some()));
    assert!(set.test.iter().any(|l| l.text.contains("(categories: ")));
    let renderer =
        InstructionRenderer::new(&prepared, (build.clone(), &library), scenario).unwrap();
    let cases = sequential(Fold::Test);

    // The other task forms of the same scenario: matching asks without the list, and a
    // pointwise question cannot be asked without its item.
    let case = &cases[0];
    let titles = prepared.titles();
    let listed = renderer.render(&case.case, &case.candidates).unwrap();
    let matching = InstructionRenderer::new(
        &prepared,
        (build.clone(), &library),
        (TaskForm::Matching, scenario.1, scenario.2),
    )
    .unwrap()
    .render(&case.case, &case.candidates)
    .unwrap();
    let newest = &titles[case.case.history.last().unwrap().index()];
    assert!(matching.contains(newest.as_str()) && listed.contains(newest.as_str()));
    let positive = &titles[case.positive.index()];
    assert!(listed.contains(positive.as_str()) && !matching.contains(positive.as_str()));
    let pointwise = InstructionRenderer::new(
        &prepared,
        (build.clone(), &library),
        (TaskForm::Pointwise, scenario.1, scenario.2),
    )
    .unwrap();
    let e = pointwise.render(&case.case, &[]).unwrap_err().to_string();
    assert!(e.contains("slot `item`"), "{e}");

    // Search scenarios: each query line's own instruction.
    let test = dir.path().join(Split::Test.file_name());
    for (protocol, preference, kind, intention) in [
        (
            Protocol::PersonalisedSearch,
            PreferenceKind::Implicit,
            QueryKind::Specific,
            IntentionKind::Specific,
        ),
        (
            Protocol::PersonalisedSearch,
            PreferenceKind::Implicit,
            QueryKind::Vague,
            IntentionKind::Vague,
        ),
        (
            Protocol::PersonalisedSearch,
            PreferenceKind::Explicit,
            QueryKind::Explicit,
            IntentionKind::None,
        ),
    ] {
        let lines = read_queries(&test, preference, kind).unwrap();
        let cases = build_query_cases(
            &prepared,
            protocol,
            &lines,
            Fold::Test,
            Setting::Sampled { size: 10 },
        )
        .unwrap();
        let renderer = InstructionRenderer::new(
            &prepared,
            (build.clone(), &library),
            (TaskForm::Rerank, preference, intention),
        )
        .unwrap();
        assert_eq!(cases.len(), lines.len());
        for (case, line) in cases.iter().zip(&lines) {
            assert_eq!(
                renderer.render(&case.case, &case.candidates).unwrap(),
                line.instruction,
                "{protocol} {kind}"
            );
        }
    }
}
