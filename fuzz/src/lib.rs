//! Shared parts of the fuzz targets (`fuzz_targets/*.rs`); built and run by `scripts/fuzz.sh`.
//!
//! Importer targets: each layout is a small valid directory (the data crate's fixtures for
//! Amazon 2018, `fuzz/fixtures/` for the others: the minimal layouts of
//! `instructrec-data/tests/fuzz_importers.rs`). The fuzz input's first byte picks which of the
//! layout's files it replaces (0, the most common, is the main file: the interactions), the
//! rest is that file's content; the other files stay valid. The directory is imported with
//! layout detection and, when that works, prepared. The properties are the proptest fuzzer's:
//! no panic, an error names a file of the directory, and what imports has no overflowed number
//! and no id twice.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use instructrec_data::{prepare_imported, ImportSource, Imported, PrepareOptions};

/// A layout's files: path relative to the directory, valid content. The first is the main file.
pub struct Layout {
    pub files: &'static [(&'static str, &'static [u8])],
    /// Gzip layout: odd selector bytes (after the file choice) gzip the input in the harness,
    /// so that mutations reach the JSON lines through the decoder; even ones write the input
    /// as it is (corrupt, cut or plain streams).
    pub gzip: bool,
}

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path))
    };
}

pub const AMAZON_GAMES: Layout = Layout {
    files: &[
        ("raw/G.inter.json", fixture!("fixtures/amazon-games/raw/G.inter.json")),
        ("raw/G.item2id", fixture!("fixtures/amazon-games/raw/G.item2id")),
        ("raw/G.user2id", fixture!("fixtures/amazon-games/raw/G.user2id")),
        ("items.jsonl", fixture!("fixtures/amazon-games/items.jsonl")),
    ],
    gzip: false,
};

pub const P5: Layout = Layout {
    files: &[
        ("sequential_data.txt", fixture!("fixtures/p5/sequential_data.txt")),
        ("id2title.json", fixture!("fixtures/p5/id2title.json")),
        ("id2category.json", fixture!("fixtures/p5/id2category.json")),
    ],
    gzip: false,
};

pub const RECBOLE: Layout = Layout {
    files: &[
        ("m.inter", fixture!("fixtures/recbole/m.inter")),
        ("m.item", fixture!("fixtures/recbole/m.item")),
        ("m.user", fixture!("fixtures/recbole/m.user")),
    ],
    gzip: false,
};

pub const AMAZON2018: Layout = Layout {
    files: &[
        (
            "Toy_Games.json",
            fixture!("../crates/instructrec-data/tests/fixtures/amazon2018/Toy_Games.json"),
        ),
        (
            "meta_Toy_Games.json",
            fixture!("../crates/instructrec-data/tests/fixtures/amazon2018/meta_Toy_Games.json"),
        ),
    ],
    gzip: false,
};

pub const AMAZON2018_GZ: Layout = Layout {
    files: &[
        (
            "Toy_Games.json.gz",
            fixture!("../crates/instructrec-data/tests/fixtures/amazon2018-gz/Toy_Games.json.gz"),
        ),
        (
            "meta_Toy_Games.json.gz",
            fixture!(
                "../crates/instructrec-data/tests/fixtures/amazon2018-gz/meta_Toy_Games.json.gz"
            ),
        ),
    ],
    gzip: true,
};

/// One directory per process, rewritten for every input (a fresh one per input would cost
/// more than the import). Each target runs in its own process.
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Writes the layout with the input in place of the file its first byte picks, imports it
/// (detecting the layout), prepares what imports, and checks the properties.
pub fn import_case(layout: &Layout, data: &[u8]) {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let n = layout.files.len();
    let target = selector as usize % n;
    let wrapped;
    let content = if layout.gzip && (selector as usize / n) % 2 == 1 {
        wrapped = gzip(content);
        &wrapped[..]
    } else {
        content
    };
    let dir = scratch();
    for (i, (name, valid)) in layout.files.iter().enumerate() {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the layout's folders");
        }
        let bytes = if i == target { content } else { valid };
        std::fs::write(&path, bytes).expect("write a layout file");
    }
    let source = ImportSource::Dir {
        dir: dir.to_path_buf(),
        format: None,
    };
    match source.import() {
        Ok(imported) => {
            sound(&imported);
            let options = PrepareOptions {
                k_core: 1,
                candidate_sizes: vec![3],
                ..PrepareOptions::default()
            };
            // Preparation may refuse (too few users left, say) but must not panic.
            let _ = prepare_imported(imported, &options, Duration::ZERO);
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(&dir.display().to_string()),
                "the error does not name a file of {}: {message}",
                dir.display()
            );
        }
    }
}

/// No number that overflowed its type (an infinite rating, a timestamp saturated at an end of
/// i64) and no id twice.
fn sound(imported: &Imported) {
    for interaction in imported.sequences.iter().flatten() {
        assert!(
            interaction.rating.is_none_or(f32::is_finite),
            "a rating of {:?} imported",
            interaction.rating
        );
        assert!(
            interaction
                .timestamp
                .is_none_or(|t| t != i64::MAX && t != i64::MIN),
            "a saturated timestamp {:?} imported",
            interaction.timestamp
        );
    }
    let items: HashSet<&str> = imported.items.iter().map(|i| i.original_id.as_str()).collect();
    assert_eq!(items.len(), imported.items.len(), "an item id twice");
    let users: HashSet<&String> = imported.users.iter().collect();
    assert_eq!(users.len(), imported.users.len(), "a user id twice");
    assert_eq!(imported.users.len(), imported.sequences.len(), "a user without a sequence");
    for interaction in imported.sequences.iter().flatten() {
        assert!(
            interaction.item.index() < imported.items.len(),
            "an interaction with an item out of range"
        );
    }
}
