//! A small synthetic catalogue shaped like Amazon Games (platform/kind category paths, brands,
//! feature sentences that name the game), prepared through the data crate's own pipeline.

use std::time::Duration;

use instructrec_data::import::{Format, Imported, ImportedItem};
use instructrec_data::{prepare_imported, Interaction, PrepareOptions, Prepared};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PLATFORMS: &[&str] = &["PlayStation 4", "Xbox One", "PC", "Nintendo Switch"];
const FIRST: &[&str] = &[
    "Star", "Iron", "Shadow", "Crystal", "Thunder", "Silent", "Neon", "Wild",
];
const SECOND: &[&str] = &[
    "Racer", "Legends", "Quest", "Arena", "Tactics", "Harbor", "Saga",
];
const BRANDS: &[&str] = &["Nintendo", "Ubisoft", "Electronic Arts", "PDP", "Logitech"];
const FEATURES: &[&str] = &[
    "Online multiplayer for up to eight friends",
    "Split-screen racing on every track",
    "A branching story with dozens of endings",
    "Wireless connection with rechargeable battery",
    "Cooperative campaign and online multiplayer modes",
    "Detailed open world to explore",
];

pub fn prepared() -> Prepared {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut items = Vec::new();
    for i in 0..72 {
        let platform = PLATFORMS[i % PLATFORMS.len()];
        let accessory = i % 6 == 5;
        let name = format!(
            "{} {} {}",
            FIRST[i % FIRST.len()],
            SECOND[i % SECOND.len()],
            i
        );
        let (title, categories) = if accessory {
            (
                format!("{name} Controller for {platform}"),
                vec!["Video Games", platform, "Accessories", "Controllers"],
            )
        } else {
            (
                format!("{name} - {platform}"),
                vec!["Video Games", platform, "Games"],
            )
        };
        let mut features: Vec<String> = FEATURES
            .choose_multiple(&mut rng, 2)
            .map(|f| f.to_string())
            .collect();
        // Feature sentences often name the game; a fill must never carry that over.
        features.push(format!("Play {title} with friends"));
        items.push(ImportedItem {
            original_id: format!("I{i}"),
            title: Some(title),
            categories: categories.into_iter().map(String::from).collect(),
            brand: Some(BRANDS[i % BRANDS.len()].to_string()),
            description: None,
            features,
        });
    }
    // A title that is nothing but its category name: fills must work around it.
    items.push(ImportedItem {
        original_id: "I-plain".into(),
        title: Some("Controllers".into()),
        categories: vec![
            "Video Games".into(),
            "PC".into(),
            "Accessories".into(),
            "Controllers".into(),
        ],
        brand: Some("Logitech".into()),
        description: None,
        features: vec!["Wireless connection with rechargeable battery".into()],
    });
    let n_items = items.len();
    let mut users = Vec::new();
    let mut sequences = Vec::new();
    for u in 0..90 {
        users.push(format!("U{u}"));
        let favourite = u % PLATFORMS.len();
        let len = rng.random_range(6..=11);
        let mut seq: Vec<usize> = Vec::new();
        while seq.len() < len {
            let i = if rng.random_bool(0.7) {
                favourite + PLATFORMS.len() * rng.random_range(0..n_items / PLATFORMS.len())
            } else {
                rng.random_range(0..n_items)
            };
            if i < n_items && !seq.contains(&i) {
                seq.push(i);
            }
        }
        if u % 10 == 0 && !seq.contains(&(n_items - 1)) {
            seq.insert(2, n_items - 1);
        }
        sequences.push(
            seq.iter()
                .enumerate()
                .map(|(k, &i)| Interaction {
                    item: instructrec_data::ItemId(i as u32),
                    timestamp: Some(1_500_000_000 + (u as i64) * 7_000 + (k as i64) * 90_000),
                    rating: None,
                    review: None,
                })
                .collect(),
        );
    }
    let imported = Imported {
        format: Format::Amazon2018,
        paths: Vec::new(),
        items,
        users,
        sequences,
    };
    let options = PrepareOptions {
        candidate_sizes: vec![10, 20],
        seed: 5,
        ..PrepareOptions::default()
    };
    prepare_imported(imported, &options, Duration::ZERO)
        .expect("the synthetic data prepares")
        .0
}
