//! Building on a small synthetic catalogue: leakage, stored candidates, determinism, the
//! history budget, the offline teacher's fills, and `show`.

mod common;

use std::collections::{HashMap, HashSet};

use instructrec_data::{Fold, ItemId, Prepared, UserId};
use instructrec_instructions::teacher::OfflineTeacher;
use instructrec_instructions::{
    mentions_title, read_jsonl, BuildConfig, Builder, Instruction, InstructionSet, Intention,
    Preference, Split, Strategy, TargetKind, TaskForm, TemplateLibrary, WordCounter,
};

fn build(prepared: &Prepared, config: BuildConfig) -> InstructionSet {
    let library = TemplateLibrary::builtin();
    let teacher = OfflineTeacher::new(config.seed);
    Builder::new(prepared, &library, &teacher, &WordCounter, config)
        .unwrap()
        .build()
        .unwrap()
}

fn config() -> BuildConfig {
    BuildConfig {
        per_user: 3,
        templates_per_target: 6,
        eval_sizes: vec![10, 20],
        ..BuildConfig::default()
    }
}

fn title(p: &Prepared, i: ItemId) -> &str {
    &p.dataset.items[i.index()].title
}

#[test]
fn training_never_shows_a_held_out_item() {
    let p = common::prepared();
    let set = build(&p, config());
    assert!(set.train.len() > 500, "{} training lines", set.train.len());
    for i in &set.train {
        let held = [
            p.held_out(i.user, Fold::Validation),
            p.held_out(i.user, Fold::Test),
        ];
        let used = i
            .history
            .iter()
            .chain(&i.candidates)
            .chain([&i.target_item]);
        for item in used {
            assert!(
                !held.contains(item),
                "{} uses held-out item {item:?}",
                i.template
            );
        }
        for h in held {
            assert!(!i.text.contains(title(&p, h)), "{}: {}", i.template, i.text);
            assert!(
                !i.target.contains(title(&p, h)),
                "{}: {}",
                i.template,
                i.target
            );
        }
        // Query-derived lines only take targets from the item-level train split.
        let query_bound = i.intention != Intention::None
            || matches!(
                i.target_kind,
                TargetKind::VagueIntention | TargetKind::SpecificIntention
            );
        if query_bound {
            assert!(
                p.item_split.train.contains(&i.target_item),
                "{}",
                i.template
            );
        }
    }
}

#[test]
fn evaluation_lines_show_the_stored_candidates_in_a_seeded_order() {
    let p = common::prepared();
    let set = build(&p, config());
    let mut first_positions = HashSet::new();
    for (split, fold) in [
        (Split::Validation, Fold::Validation),
        (Split::Test, Fold::Test),
    ] {
        let lines = set.split(split);
        assert!(!lines.is_empty());
        let mut scenarios = HashSet::new();
        for size in [10, 20] {
            let stored: HashMap<UserId, _> = p
                .candidates(fold, size)
                .unwrap()
                .iter()
                .map(|s| (s.user, s))
                .collect();
            for i in lines.iter().filter(|i| i.candidate_size == Some(size)) {
                assert_eq!(i.task, TaskForm::Rerank);
                assert_eq!(i.strategy, Strategy::Plain);
                let s = stored[&i.user];
                assert_eq!(i.target_item, s.positive);
                assert_eq!(i.target_item, p.held_out(i.user, fold));
                assert_eq!(i.target, title(&p, s.positive));
                let mut shown = i.candidates.clone();
                let mut expected = s.items();
                shown.sort();
                expected.sort();
                assert_eq!(shown, expected, "the stored set, nothing added or lost");
                first_positions.insert(i.candidates.iter().position(|c| *c == s.positive));
                scenarios.insert((i.preference.kind(), i.intention.kind()));
                // The history ends right before the held-out item.
                if let Preference::Implicit(h) = &i.preference {
                    let before: Vec<ItemId> = p
                        .recent_history(i.user, fold)
                        .iter()
                        .map(|x| x.item)
                        .collect();
                    assert!(before.ends_with(h));
                }
            }
            // Every user with a stored set has a sequential line.
            let sequential = lines
                .iter()
                .filter(|i| i.candidate_size == Some(size) && i.template == "p1-rerank-a")
                .count();
            assert_eq!(sequential, stored.len());
        }
        assert!(scenarios.len() >= 5, "{scenarios:?}");
    }
    assert!(
        first_positions.len() > 5,
        "the positive moves around: {first_positions:?}"
    );
}

#[test]
fn builds_are_deterministic_and_files_round_trip() {
    let p = common::prepared();
    let a = build(&p, config());
    let b = build(&p, config());
    let dir = tempfile::tempdir().unwrap();
    a.write(&dir.path().join("a")).unwrap();
    b.write(&dir.path().join("b")).unwrap();
    for split in Split::ALL {
        let fa = std::fs::read(dir.path().join("a").join(split.file_name())).unwrap();
        let fb = std::fs::read(dir.path().join("b").join(split.file_name())).unwrap();
        assert_eq!(fa, fb, "{split:?}");
        assert_eq!(
            read_jsonl(&dir.path().join("a").join(split.file_name())).unwrap(),
            a.split(split)
        );
    }
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("a/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["splits"]["train"]["instructions"], a.train.len());
    let c = build(
        &p,
        BuildConfig {
            seed: 1,
            ..config()
        },
    );
    assert_ne!(a.train, c.train, "the seed matters");
}

#[test]
fn a_write_removes_a_killed_builds_temporary_files_and_refuses_a_second_writer() {
    let set = build(&common::prepared(), config());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("i");
    std::fs::create_dir_all(&out).unwrap();
    // What a build killed while staging its files leaves, beside a user's own hidden file.
    for name in [
        ".train.jsonl.4242-0.tmp",
        ".stats.json.4242-3.tmp",
        ".notes",
    ] {
        std::fs::write(out.join(name), "partial").unwrap();
    }
    set.write(&out).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".notes",
            "config.json",
            "stats.json",
            "templates.toml",
            "test.jsonl",
            "train.jsonl",
            "validation.jsonl"
        ]
    );

    let held = instructrec_data::OutputLock::acquire(&out).unwrap();
    let e = set.write(&out).unwrap_err().to_string();
    assert!(e.contains("another instructrec run is writing it"), "{e}");
    drop(held);
}

#[test]
fn history_is_cut_oldest_first_to_the_budget() {
    let p = common::prepared();
    let set = build(
        &p,
        BuildConfig {
            history_budget: 12,
            ..config()
        },
    );
    let mut cut = 0;
    for i in set.train.iter().chain(&set.test) {
        let Preference::Implicit(shown) = &i.preference else {
            continue;
        };
        assert!(!shown.is_empty());
        let words: usize = shown
            .iter()
            .map(|h| title(&p, *h).split_whitespace().count())
            .sum();
        assert!(
            shown.len() == 1 || words + shown.len() - 1 <= 12,
            "{words} words in {}",
            i.text
        );
        // The newest item before the target is always shown.
        let full: Vec<ItemId> = match i.split {
            Split::Test => p
                .recent_history(i.user, Fold::Test)
                .iter()
                .map(|x| x.item)
                .collect(),
            _ => continue,
        };
        assert!(full.ends_with(shown));
        cut += usize::from(shown.len() < full.len());
    }
    assert!(cut > 0, "the budget cut some histories");
}

fn fills(i: &Instruction) -> Vec<&str> {
    let mut out = Vec::new();
    if let Preference::Explicit(s) = &i.preference {
        out.push(s.as_str());
    }
    if let Intention::Vague(s) = &i.intention {
        out.push(s.as_str());
    }
    if matches!(
        i.target_kind,
        TargetKind::VagueIntention | TargetKind::ExplicitPreference | TargetKind::QueryAndItem
    ) {
        out.push(i.target.as_str());
    }
    out
}

#[test]
fn offline_fills_are_varied_and_never_name_the_target() {
    let p = common::prepared();
    let set = build(&p, config());
    let all: Vec<&Instruction> = set
        .train
        .iter()
        .chain(&set.validation)
        .chain(&set.test)
        .collect();
    let mut checked = 0;
    for i in &all {
        for f in fills(i) {
            if i.target_kind == TargetKind::QueryAndItem {
                // The target names the item after the request; only the request must not.
                let request = f.split(" Product: ").next().unwrap();
                assert!(
                    !mentions_title(request, title(&p, i.target_item)),
                    "{request}"
                );
            } else {
                assert!(
                    !mentions_title(f, title(&p, i.target_item)),
                    "{} names {}",
                    f,
                    title(&p, i.target_item)
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked} fills checked");
    let s = &set.stats;
    assert!(s.preferences.count > 100 && s.intentions.count > 50);
    assert!(
        s.preferences.distinct_phrasings.unwrap() >= 30,
        "{:?}",
        s.preferences
    );
    assert!(
        s.intentions.distinct_phrasings.unwrap() >= 20,
        "{:?}",
        s.intentions
    );
    assert!(
        s.preferences.distinct_texts * 2 > s.preferences.count,
        "{:?}",
        s.preferences
    );
    // The item titled like its own category still gets a need that does not name it.
    let plain = p
        .dataset
        .items
        .iter()
        .find(|i| i.title == "Controllers")
        .unwrap()
        .id;
    let teacher = OfflineTeacher::new(0);
    use instructrec_instructions::teacher::{FillRequest, Teacher};
    let requests: Vec<FillRequest> = (0..40)
        .map(|u| FillRequest::Intention {
            user: UserId(u),
            item: plain,
        })
        .collect();
    let filled = teacher.fill(&p.dataset, &requests).unwrap();
    for f in &filled.fills {
        assert!(!mentions_title(&f.text, "Controllers"), "{}", f.text);
    }
    let again = teacher.fill(&p.dataset, &requests).unwrap();
    assert_eq!(filled.fills, again.fills, "deterministic");
}

#[test]
fn pointwise_and_pairwise_lines_are_well_formed() {
    let p = common::prepared();
    let set = build(
        &p,
        BuildConfig {
            templates_per_target: 47,
            ..config()
        },
    );
    let (mut yes, mut no, mut pairs) = (0, 0, 0);
    for i in &set.train {
        match i.task {
            TaskForm::Pointwise => {
                assert_eq!(i.candidates.len(), 1);
                let is_target = i.candidates[0] == i.target_item;
                assert_eq!(i.target, if is_target { "yes" } else { "no" });
                assert!(i.text.contains(title(&p, i.candidates[0])));
                if is_target {
                    yes += 1
                } else {
                    no += 1
                }
            }
            TaskForm::Pairwise => {
                assert_eq!(i.candidates.len(), 2);
                assert!(i.candidates.contains(&i.target_item));
                assert_eq!(i.target, title(&p, i.target_item));
                pairs += 1;
            }
            TaskForm::Rerank => {
                assert_eq!(i.candidates.len(), 10);
                assert!(i.candidates.contains(&i.target_item));
                assert!(i.target.ends_with(title(&p, i.target_item)));
            }
            TaskForm::Matching => assert!(i.candidates.is_empty()),
        }
        assert!(
            i.text.ends_with('.') || i.text.contains("Context: it is a"),
            "{}",
            i.text
        );
    }
    assert!(yes > 0 && yes == no, "{yes} yes, {no} no");
    assert!(pairs > 0);
    for id in set.stats.splits["train"].by_template.keys() {
        assert!(TemplateLibrary::builtin().get(id).is_some());
    }
    assert!(
        set.stats.splits["train"].by_template.len() >= 40,
        "{:?}",
        set.stats.splits["train"].by_template
    );
}

#[test]
fn show_fills_every_template_or_says_why() {
    let p = common::prepared();
    let library = TemplateLibrary::builtin();
    let teacher = OfflineTeacher::new(0);
    let builder = Builder::new(&p, &library, &teacher, &WordCounter, config()).unwrap();
    let shown = builder.show(UserId(3), None).unwrap();
    let ids: HashSet<&str> = shown.iter().map(|s| s.template.id.as_str()).collect();
    assert_eq!(ids.len(), library.templates().len());
    assert!(shown.iter().filter(|s| s.instruction.is_ok()).count() >= 20);
    let one = builder.show(UserId(3), Some("p1-rerank-a")).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].instruction.as_ref().unwrap().split, Split::Test);
    assert!(builder.show(UserId(3), Some("nope")).is_err());
    assert!(builder.show(UserId(100_000), None).is_err());
}

#[test]
fn a_template_file_can_replace_the_built_in_one() {
    let p = common::prepared();
    let text = r#"
[[template]]
id = "mine"
task = "rerank"
preference = "implicit"
intention = "none"
strategy = "plain"
target = "item_title"
eval = true
slots = ["history", "candidates", "context"]
text = "{context} After {history}, pick one of {candidates}."
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    let library = TemplateLibrary::from_path(&path).unwrap();
    let teacher = OfflineTeacher::new(0);
    let set = Builder::new(&p, &library, &teacher, &WordCounter, config())
        .unwrap()
        .build()
        .unwrap();
    assert!(set
        .train
        .iter()
        .chain(&set.test)
        .all(|i| i.template == "mine"));
    assert!(
        set.test[0].text.starts_with("Context: it is a"),
        "{}",
        set.test[0].text
    );
}
