//! The importers and preparation on the real datasets in ../shared/datasets: counts from their
//! provenance, category cleaning on real items, candidate invariants and byte-identical output.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use instructrec_data::{prepare, Dataset, Fold, ImportSource, PrepareOptions, Prepared, Stats};

fn dataset_dir(name: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ))
    .join(name)
}

fn source(name: &str) -> ImportSource {
    ImportSource::Dir {
        dir: dataset_dir(name),
        format: None,
    }
}

fn counts(d: &Dataset) -> (usize, usize, usize) {
    let s = Stats::of(d);
    (s.users, s.items, s.interactions)
}

fn item<'a>(p: &'a Prepared, asin: &str) -> &'a instructrec_data::Item {
    p.dataset
        .items
        .iter()
        .find(|i| i.original_id == asin)
        .unwrap()
}

#[test]
fn amazon_games_drops_untitled_items_then_refilters() {
    let (p, report) = prepare(&source("amazon-games"), &PrepareOptions::default()).unwrap();
    assert_eq!(p.manifest.source.format, "amazon-games");
    assert_eq!(
        (
            report.imported.users,
            report.imported.items,
            report.imported.interactions
        ),
        (50_546, 16_859, 452_989)
    );
    let untitled = &report.dropped[1];
    assert_eq!(untitled.reason, "items without a title");
    assert_eq!((untitled.items, untitled.interactions), (55, 344));
    // From the provenance: dropping the 55 and re-running 5-core leaves these.
    assert_eq!(counts(&p.dataset), (50_496, 16_796, 452_414));
    let removed: usize = report.dropped.iter().map(|d| d.interactions).sum();
    assert_eq!(removed, 452_989 - 452_414);

    // Category lists: path first, product-feature sentences moved to features.
    let clip = item(&p, "B00T3452AW");
    assert_eq!(
        clip.categories,
        [
            "Video Games",
            "Nintendo 3DS & 2DS",
            "Accessories",
            "Cases & Storage"
        ]
    );
    assert_eq!(clip.features.len(), 4);
    assert_eq!(clip.features[0], "Full access to all ports and buttons");
    assert_eq!(clip.brand.as_deref(), Some("PDP"));
    assert!(p
        .dataset
        .items
        .iter()
        .all(|i| i.categories.first().is_none_or(|c| c == "Video Games")));
    // Mangled "&" restored; a sentence ends the path; "1-2 Players" style bullets are features.
    let cthulhu = item(&p, "B0007ZD794");
    assert_eq!(
        cthulhu.categories,
        [
            "Video Games",
            "Retro Gaming & Microconsoles",
            "Xbox",
            "Games"
        ]
    );
    assert!(cthulhu.features[0].starts_with("Battle or interact with people"));
    let bloody_roar = item(&p, "B00005LIOL");
    assert_eq!(
        bloody_roar.categories,
        [
            "Video Games",
            "Retro Gaming & Microconsoles",
            "PlayStation 2",
            "Games"
        ]
    );
    assert_eq!(bloody_roar.features[0], "1-2 Players");
    assert_eq!(bloody_roar.title, "Bloody Roar  3 - PlayStation 2");
    assert_eq!(item(&p, "B000UKZ20S").categories[1], "Kids & Family");

    check_candidates(&p);
    // 80/10/10 item split over the whole catalogue.
    let s = &p.item_split;
    assert_eq!(
        (s.train.len(), s.validation.len(), s.test.len()),
        (13_437, 1_680, 1_679)
    );
}

#[test]
fn amazon_games_keep_untitled_keeps_everything() {
    let options = PrepareOptions {
        keep_untitled: true,
        candidate_sizes: vec![10],
        ..PrepareOptions::default()
    };
    let (p, _) = prepare(&source("amazon-games"), &options).unwrap();
    assert_eq!(counts(&p.dataset), (50_546, 16_859, 452_989));
    assert_eq!(item(&p, "B001VNT9RK").title, "B001VNT9RK");
}

/// Every list: the held-out positive, size-1 distinct negatives, none of them seen by the user.
fn check_candidates(p: &Prepared) {
    for fold in [Fold::Validation, Fold::Test] {
        for &size in &p.manifest.options.candidate_sizes {
            let sets = p.candidates(fold, size).unwrap();
            assert_eq!(sets.len(), p.dataset.users.len());
            for set in sets {
                assert_eq!(set.positive, p.held_out(set.user, fold));
                let seen: HashSet<_> = p.dataset.sequences[set.user.index()]
                    .iter()
                    .map(|i| i.item)
                    .collect();
                let negatives: HashSet<_> = set.negatives.iter().copied().collect();
                assert_eq!(negatives.len(), size - 1);
                assert!(negatives.is_disjoint(&seen));
            }
        }
    }
}

#[test]
fn amazon_toys_p5() {
    let (p, _) = prepare(&source("amazon-toys"), &PrepareOptions::default()).unwrap();
    assert_eq!(p.manifest.source.format, "p5");
    assert_eq!(counts(&p.dataset), (19_412, 11_924, 167_597));
    let doll = item(&p, "2");
    assert!(
        doll.title
            .starts_with("18 Inch Doll Clothes Pajama Set & Doll Slippers"),
        "{}",
        doll.title
    );
    assert!(
        doll.title.contains("Fits 18\" American Girl"),
        "{}",
        doll.title
    );
    assert_eq!(
        doll.categories,
        [
            "Toys & Games",
            "Dolls & Accessories",
            "Doll Accessories",
            "Clothing & Shoes"
        ]
    );
    // Items with several category paths get the longest one.
    assert!(p.dataset.items.iter().all(|i| !i.categories.is_empty()));
    check_candidates(&p);
}

#[test]
fn ml_100k_recbole() {
    let (p, report) = prepare(&source("ml-100k"), &PrepareOptions::default()).unwrap();
    assert_eq!(p.manifest.source.format, "recbole");
    assert_eq!(
        (
            report.imported.users,
            report.imported.items,
            report.imported.interactions
        ),
        (943, 1_682, 100_000)
    );
    // 5-core removes rarely rated movies; users all have at least 20 ratings.
    let (users, items, interactions) = counts(&p.dataset);
    assert_eq!(users, 943);
    assert!(items < 1_682 && interactions < 100_000);
    let toy_story = item(&p, "1");
    assert_eq!(toy_story.title, "Toy Story (1995)");
    assert_eq!(
        toy_story.categories,
        ["Movies", "Animation", "Children's", "Comedy"]
    );
    for seq in &p.dataset.sequences {
        assert!(seq.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(seq.iter().all(|i| i.rating.is_some()));
    }
    check_candidates(&p);
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((
                path.strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes_different_seed_different_negatives() {
    let tmp = tempfile::tempdir().unwrap();
    let options = PrepareOptions::default();
    for run in ["a", "b"] {
        let (p, _) = prepare(&source("amazon-games"), &options).unwrap();
        p.save(&tmp.path().join(run)).unwrap();
    }
    let (a, b) = (files(&tmp.path().join("a")), files(&tmp.path().join("b")));
    assert_eq!(a.len(), 9);
    assert!(a == b, "same seed must give byte-identical directories");

    let (p, _) = prepare(&source("amazon-games"), &options).unwrap();
    let (q, _) = prepare(
        &source("amazon-games"),
        &PrepareOptions {
            seed: 43,
            ..options
        },
    )
    .unwrap();
    let (x, y) = (
        p.candidates(Fold::Test, 100).unwrap(),
        q.candidates(Fold::Test, 100).unwrap(),
    );
    let same = x
        .iter()
        .zip(y)
        .filter(|(s, t)| s.negatives == t.negatives)
        .count();
    assert_eq!(same, 0, "a different seed must draw different negatives");
    assert_ne!(p.item_split, q.item_split);
    assert_eq!(p.dataset, q.dataset);
}
