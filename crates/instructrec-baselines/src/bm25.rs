//! BM25 over item text. Each item is a document made of its title, categories and brand; the
//! query is the text of the case (its query and instruction when a protocol gives them) plus the
//! titles of the user's most recent history items.
//!
//! Okapi BM25 with the usual defaults k1 = 1.2 (term-frequency saturation) and b = 0.75 (length
//! normalisation), and the non-negative idf `ln(1 + (N - df + 0.5) / (df + 0.5))`. A query term
//! that repeats contributes once per occurrence, so items matching what the user bought most
//! often rank higher.

use std::collections::HashMap;

use anyhow::bail;
use instructrec_data::{Item, ItemId, Prepared};
use instructrec_eval::{Case, Scorer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Config {
    pub k1: f32,
    pub b: f32,
    /// How many most recent history titles form the query in sequential protocols.
    pub history_items: usize,
    /// Leave out [`STOP_WORDS`] on both sides. Off for the baseline, whose reported figures
    /// were measured without it; on for serving, where people type whole sentences.
    #[serde(default)]
    pub stop_words: bool,
}

impl Default for Bm25Config {
    fn default() -> Self {
        Self {
            k1: 1.2,
            b: 0.75,
            history_items: 5,
            stop_words: false,
        }
    }
}

/// Lower-cased alphanumeric runs; everything else separates tokens.
pub fn tokenize(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// English words that say nothing about what an item is or what a person wants ("something
/// scary for tonight" is about "scary"): with them, a request's filler words retrieved titles
/// that contain them. Sorted, for binary search. Words that occur in product names as such
/// ("one", "up", "new") are not in it.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "anything",
    "are",
    "as",
    "at",
    "be",
    "been",
    "before",
    "being",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "for",
    "from",
    "get",
    "give",
    "had",
    "has",
    "have",
    "he",
    "her",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "just",
    "like",
    "looking",
    "me",
    "more",
    "most",
    "my",
    "need",
    "no",
    "not",
    "of",
    "on",
    "or",
    "our",
    "please",
    "recommend",
    "she",
    "should",
    "so",
    "some",
    "something",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "this",
    "those",
    "to",
    "tonight",
    "too",
    "us",
    "very",
    "want",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
];

/// The terms BM25 indexes and looks up: [`tokenize`], without stop words when asked to.
fn terms(text: &str, stop_words: bool) -> impl Iterator<Item = String> + '_ {
    tokenize(text).filter(move |t| !(stop_words && STOP_WORDS.binary_search(&t.as_str()).is_ok()))
}

fn document(item: &Item) -> String {
    let mut doc = item.title.clone();
    for c in &item.categories {
        doc.push(' ');
        doc.push_str(c);
    }
    if let Some(brand) = &item.brand {
        doc.push(' ');
        doc.push_str(brand);
    }
    doc
}

pub struct Bm25 {
    config: Bm25Config,
    titles: Vec<String>,
    /// term -> (idf, postings of (item index, term frequency)).
    index: HashMap<String, (f32, Vec<(u32, f32)>)>,
    /// `k1 * (1 - b + b * len / avg_len)` per item: the length-dependent part of the denominator.
    norm: Vec<f32>,
}

impl Bm25 {
    pub fn fit(prepared: &Prepared, config: Bm25Config) -> Self {
        let items = &prepared.dataset.items;
        let mut postings: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
        let mut lengths = Vec::with_capacity(items.len());
        for item in items {
            let mut tf: HashMap<String, f32> = HashMap::new();
            let mut len = 0usize;
            for t in terms(&document(item), config.stop_words) {
                *tf.entry(t).or_default() += 1.0;
                len += 1;
            }
            lengths.push(len as f32);
            let mut terms: Vec<(String, f32)> = tf.into_iter().collect();
            terms.sort_by(|a, b| a.0.cmp(&b.0));
            for (t, f) in terms {
                postings.entry(t).or_default().push((item.id.0, f));
            }
        }
        let n = items.len() as f32;
        let avg = lengths.iter().sum::<f32>() / n.max(1.0);
        let norm = lengths
            .iter()
            .map(|&l| config.k1 * (1.0 - config.b + config.b * l / avg.max(f32::MIN_POSITIVE)))
            .collect();
        let index = postings
            .into_iter()
            .map(|(t, p)| {
                let df = p.len() as f32;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                (t, (idf, p))
            })
            .collect();
        Self {
            config,
            titles: items.iter().map(|i| i.title.clone()).collect(),
            index,
            norm,
        }
    }

    fn query(&self, case: &Case) -> String {
        // The context describes the situation, not products, so it stays out of the query.
        let mut q = String::new();
        if let Some(text) = &case.query {
            q.push_str(text);
            q.push(' ');
        }
        let start = case.history.len().saturating_sub(self.config.history_items);
        for i in &case.history[start..] {
            if let Some(t) = self.titles.get(i.index()) {
                q.push_str(t);
                q.push(' ');
            }
        }
        q
    }

    fn scores(&self, case: &Case) -> Vec<f32> {
        let mut scores = vec![0f32; self.norm.len()];
        for term in terms(&self.query(case), self.config.stop_words) {
            let Some((idf, postings)) = self.index.get(&term) else {
                continue;
            };
            for &(item, tf) in postings {
                let i = item as usize;
                scores[i] += idf * tf * (self.config.k1 + 1.0) / (tf + self.norm[i]);
            }
        }
        scores
    }

    pub fn state_hash(&self) -> String {
        let mut terms: Vec<_> = self.index.iter().collect();
        terms.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = Sha256::new();
        for (t, (idf, p)) in terms {
            h.update(t.as_bytes());
            h.update(idf.to_le_bytes());
            for (i, f) in p {
                h.update(i.to_le_bytes());
                h.update(f.to_le_bytes());
            }
        }
        for n in &self.norm {
            h.update(n.to_le_bytes());
        }
        hex::encode(h.finalize())
    }
}

impl Scorer for Bm25 {
    fn name(&self) -> String {
        "bm25".into()
    }

    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let all = self.scores(case);
        candidates
            .iter()
            .map(|i| match all.get(i.index()) {
                Some(&s) => Ok(s),
                None => bail!("item {} is outside the catalogue of {}", i.0, all.len()),
            })
            .collect()
    }

    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        Some(Ok(cases.iter().map(|c| self.scores(c)).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use instructrec_data::UserId;

    #[test]
    fn tokenizer_lowercases_and_splits() {
        let t: Vec<String> = tokenize("Mario Kart 8: Deluxe (Switch)").collect();
        assert_eq!(t, ["mario", "kart", "8", "deluxe", "switch"]);
    }

    #[test]
    fn stop_words_are_sorted_lower_case_words() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_WORDS.iter().all(|w| tokenize(w).eq([w.to_string()])));
    }

    /// "something scary for tonight" retrieved titles with "for" in them before.
    #[test]
    fn filler_words_retrieve_nothing_with_stop_words() {
        let mut p = instructrec_eval::synthetic::prepared(5, 120, 3);
        p.dataset.items.truncate(3);
        p.dataset.items[0].title = "Games for Kids".into();
        p.dataset.items[1].title = "Scary Tales".into();
        p.dataset.items[2].title = "Racing".into();
        for item in &mut p.dataset.items {
            item.categories.clear();
            item.brand = None;
        }
        let case = Case {
            user: UserId(0),
            history: Vec::new(),
            query: Some("Something scary for tonight".into()),
            context: None,
        };
        let items = [ItemId(0), ItemId(1), ItemId(2)];
        let plain = Bm25::fit(&p, Bm25Config::default());
        assert!(plain.score(&case, &items).unwrap()[0] > 0.0);
        let config = Bm25Config {
            stop_words: true,
            ..Bm25Config::default()
        };
        let s = Bm25::fit(&p, config).score(&case, &items).unwrap();
        assert_eq!(s[0], 0.0, "{s:?}");
        assert!(s[1] > 0.0, "{s:?}");
    }

    #[test]
    fn hand_computed_score() {
        // Three items; query "racing": df = 1 of N = 3.
        let mut p = instructrec_eval::synthetic::prepared(5, 120, 3);
        p.dataset.items.truncate(3);
        p.dataset.items[0].title = "racing racing".into();
        p.dataset.items[1].title = "puzzle".into();
        p.dataset.items[2].title = "shooter".into();
        for item in &mut p.dataset.items {
            item.categories.clear();
            item.brand = None;
        }
        let bm = Bm25::fit(&p, Bm25Config::default());
        let case = Case {
            user: UserId(0),
            history: Vec::new(),
            query: Some("Racing".into()),
            context: None,
        };
        let s = bm.score(&case, &[ItemId(0), ItemId(1), ItemId(2)]).unwrap();
        let idf = (1.0f32 + (3.0 - 1.0 + 0.5) / 1.5).ln();
        // Lengths 2, 1, 1: avg 4/3; item 0's norm = 1.2 * (0.25 + 0.75 * 2 / (4/3)).
        let norm = 1.2 * (0.25 + 0.75 * 2.0 / (4.0 / 3.0));
        let expected = idf * 2.0 * 2.2 / (2.0 + norm);
        assert!((s[0] - expected).abs() < 1e-5, "{} vs {expected}", s[0]);
        assert_eq!(&s[1..], &[0.0, 0.0]);
    }
}
