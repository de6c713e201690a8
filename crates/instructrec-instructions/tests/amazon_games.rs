//! The full default build on the real amazon-games data: no training line shows a user's
//! validation or test item, evaluation lines show exactly the stored candidate sets, and no
//! teacher fill names its target item.

use std::collections::HashMap;
use std::path::PathBuf;

use instructrec_data::{prepare, Fold, ImportSource, PrepareOptions, UserId};
use instructrec_instructions::teacher::OfflineTeacher;
use instructrec_instructions::{
    mentions_title, BuildConfig, Builder, Intention, Preference, Split, TargetKind,
    TemplateLibrary, WordCounter,
};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/amazon-games"
);

#[test]
fn amazon_games_build_has_no_leakage_and_fills_never_name_the_target() {
    let input = ImportSource::Dir {
        dir: PathBuf::from(DATA),
        format: None,
    };
    let (p, _) = prepare(&input, &PrepareOptions::default()).expect("amazon-games prepares");
    let library = TemplateLibrary::builtin();
    let config = BuildConfig::default();
    let teacher = OfflineTeacher::new(config.seed);
    let set = Builder::new(&p, &library, &teacher, &WordCounter, config)
        .unwrap()
        .build()
        .unwrap();
    let title = |i: instructrec_data::ItemId| p.dataset.items[i.index()].title.as_str();

    assert!(
        set.train.len() > 100_000,
        "{} training lines",
        set.train.len()
    );
    for i in &set.train {
        let held = [
            p.held_out(i.user, Fold::Validation),
            p.held_out(i.user, Fold::Test),
        ];
        for item in i
            .history
            .iter()
            .chain(&i.candidates)
            .chain([&i.target_item])
        {
            assert!(
                !held.contains(item),
                "{} for user {} uses held-out item {}",
                i.template,
                i.user.0,
                item.0
            );
        }
    }

    for (split, fold) in [
        (Split::Validation, Fold::Validation),
        (Split::Test, Fold::Test),
    ] {
        let stored: HashMap<UserId, _> = p
            .candidates(fold, 10)
            .unwrap()
            .iter()
            .map(|s| (s.user, s))
            .collect();
        let lines = set.split(split);
        assert!(lines.len() >= 5 * 5000, "{} {split:?} lines", lines.len());
        for i in lines {
            let s = stored[&i.user];
            let (mut shown, mut expected) = (i.candidates.clone(), s.items());
            shown.sort();
            expected.sort();
            assert_eq!(shown, expected);
            assert_eq!(i.target_item, s.positive);
        }
    }

    let mut fills = 0;
    for i in set.train.iter().chain(&set.validation).chain(&set.test) {
        let t = title(i.target_item);
        if let Preference::Explicit(f) = &i.preference {
            assert!(!mentions_title(f, t), "{f:?} names {t:?}");
            fills += 1;
        }
        if let Intention::Vague(f) = &i.intention {
            assert!(!mentions_title(f, t), "{f:?} names {t:?}");
            fills += 1;
        }
        if matches!(
            i.target_kind,
            TargetKind::VagueIntention | TargetKind::ExplicitPreference
        ) {
            assert!(!mentions_title(&i.target, t), "{:?} names {t:?}", i.target);
            fills += 1;
        }
    }
    assert!(fills > 50_000, "{fills} fills checked");
    let s = &set.stats;
    assert!(
        s.preferences.distinct_phrasings.unwrap() >= 200,
        "{:?}",
        s.preferences
    );
    assert!(
        s.intentions.distinct_phrasings.unwrap() >= 100,
        "{:?}",
        s.intentions
    );
}
