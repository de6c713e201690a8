//! Small prepared datasets built in code, for tests of this crate and of the models evaluated
//! through it. Sequences have learnable structure (each user mostly steps through the catalogue
//! in order from a popular start), so a sequential model can beat popularity and a broken one
//! cannot hide.

use std::collections::{BTreeMap, HashSet};

use instructrec_data::candidates::draw;
use instructrec_data::{
    Counts, Dataset, Fold, Interaction, Item, ItemId, ItemSplit, Manifest, PrepareOptions,
    Prepared, Source, User, UserId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const GENRES: [&str; 4] = ["Racing", "Puzzle", "Shooter", "Strategy"];

/// `users` users over `items` items (at least 110, so 1+99 lists fit), drawn from `seed`.
pub fn prepared(users: usize, items: usize, seed: u64) -> Prepared {
    assert!(
        items >= 110,
        "need room for 99 negatives beside a user's sequence"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let catalogue: Vec<Item> = (0..items)
        .map(|i| {
            let genre = GENRES[i % GENRES.len()];
            Item {
                id: ItemId(i as u32),
                original_id: format!("S{i:05}"),
                title: format!("{genre} game number {i}"),
                categories: vec!["Video Games".into(), genre.into()],
                brand: Some(format!("Studio {}", i % 7)),
                description: None,
                features: Vec::new(),
            }
        })
        .collect();
    let mut sequences = Vec::with_capacity(users);
    for _ in 0..users {
        let len = rng.random_range(5..=12);
        // Squaring a uniform draw skews starts towards low ids: a popularity signal.
        let mut current = ((rng.random::<f64>().powi(2)) * items as f64) as usize;
        let mut seen = HashSet::new();
        let mut seq = Vec::with_capacity(len);
        while seq.len() < len {
            if seen.insert(current) {
                seq.push(Interaction {
                    item: ItemId(current as u32),
                    timestamp: None,
                    rating: None,
                    review: None,
                });
            }
            current = if rng.random::<f64>() < 0.8 {
                (current + 1) % items
            } else {
                rng.random_range(0..items)
            };
        }
        sequences.push(seq);
    }
    let dataset = Dataset {
        users: (0..users)
            .map(|u| User {
                id: UserId(u as u32),
                original_id: format!("U{u}"),
            })
            .collect(),
        items: catalogue,
        sequences,
    };
    let options = PrepareOptions {
        seed,
        ..PrepareOptions::default()
    };
    // The data layer's own sampler, so synthetic lists obey the same rules as prepared ones.
    let mut candidates = BTreeMap::new();
    for fold in [Fold::Validation, Fold::Test] {
        for &size in &options.candidate_sizes {
            let sets = draw(&dataset, seed, fold, size)
                .expect("the catalogue leaves room for every list's negatives");
            candidates.insert((fold, size), sets);
        }
    }
    let interactions = dataset.sequences.iter().map(Vec::len).sum();
    let counts = Counts {
        users,
        items,
        interactions,
    };
    Prepared {
        manifest: Manifest {
            format: 1,
            source: Source {
                format: "synthetic".into(),
                paths: Vec::new(),
            },
            options,
            imported: counts.clone(),
            dropped: Vec::new(),
            counts,
            checksums: BTreeMap::new(),
        },
        dataset,
        item_split: ItemSplit::default(),
        candidates,
    }
}
