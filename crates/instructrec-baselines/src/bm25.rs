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
}

impl Default for Bm25Config {
    fn default() -> Self {
        Self {
            k1: 1.2,
            b: 0.75,
            history_items: 5,
        }
    }
}

/// Lower-cased alphanumeric runs; everything else separates tokens.
pub fn tokenize(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
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
            for t in tokenize(&document(item)) {
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
        for term in tokenize(&self.query(case)) {
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
