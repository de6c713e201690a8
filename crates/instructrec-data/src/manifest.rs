//! What a prepared dataset was made from and how, so that any number reported on it can be
//! traced back to its source, options and seed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Options of `instructrec data prepare`; recorded verbatim in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareOptions {
    /// Iterative k-core: every kept user and item has at least `k` interactions.
    pub k_core: usize,
    /// Histories shown in instructions keep at most this many most recent items.
    pub history_cap: usize,
    /// Seed for negatives and the item-level split.
    pub seed: u64,
    /// Candidate list sizes to draw (1 positive + size-1 negatives each).
    pub candidate_sizes: Vec<usize>,
    /// Item-level split fractions for product search (train, validation; test is the rest).
    pub item_split: (f64, f64),
    /// Keep items without a title, titled by their original id (items are represented by text,
    /// so by default they are dropped).
    #[serde(default)]
    pub keep_untitled: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            k_core: 5,
            history_cap: 20,
            seed: 42,
            candidate_sizes: vec![10, 100],
            item_split: (0.8, 0.1),
            keep_untitled: false,
        }
    }
}

/// Something preparation removed, and why (e.g. "items without a title": 55).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub reason: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the prepared directory.
    pub format: u32,
    /// Importer name ("amazon-games", "p5", "recbole", "amazon2018") and the input paths.
    pub source: Source,
    pub options: PrepareOptions,
    /// What the importer read, before any filtering.
    pub imported: Counts,
    pub dropped: Vec<Dropped>,
    /// What the prepared dataset holds.
    pub counts: Counts,
    /// SHA-256 of every file in the directory except the manifest, by file name.
    pub checksums: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub format: String,
    pub paths: Vec<String>,
}
