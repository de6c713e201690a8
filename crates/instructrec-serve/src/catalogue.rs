//! The catalogue's words, indexed once when the server loads: the search behind
//! `GET /v1/items` (every word of the query must start a word of the item), the "why" of each
//! recommended item (the words and categories it shares with the request and the history,
//! counted, never guessed), and the examples and placeholders a client can offer
//! (`GET /v1/examples`), drawn from the loaded catalogue so that a film catalogue is not
//! offered game wording.

use std::collections::{HashMap, HashSet};

use instructrec_baselines::bm25::{tokenize, STOP_WORDS};
use instructrec_data::{ItemId, Prepared};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::request::{RecommendRequest, UserRef};

/// A title word in more than this share of the catalogue's titles says nothing about why two
/// items go together ("game" in a games catalogue).
const COMMON_TITLE_WORD: f64 = 0.2;
/// A category label held by more than this share of the items is a root ("Video Games").
const COMMON_CATEGORY: f64 = 0.5;
/// A request word found in more than this share of the items' text explains nothing.
const COMMON_TEXT_WORD: f64 = 0.5;
/// Words of a search query looked at (a title rarely has more; the scan stays short).
const MAX_QUERY_WORDS: usize = 16;
/// History items listed in one explanation.
const HISTORY_LINKS: usize = 3;
/// Longest title an example quotes.
const EXAMPLE_TITLE_CHARS: usize = 60;

fn is_stop_word(w: &str) -> bool {
    STOP_WORDS.binary_search(&w).is_ok()
}

/// Words worth naming: two characters or more, at least one letter, not a stop word.
fn is_word(w: &str) -> bool {
    w.chars().count() >= 2 && w.chars().any(char::is_alphabetic) && !is_stop_word(w)
}

/// `a` and `b` are the same word, or one is the other with a plural `s`.
fn same_word(a: &str, b: &str) -> bool {
    a == b
        || (a.len() > 3 && a.strip_suffix('s') == Some(b))
        || (b.len() > 3 && b.strip_suffix('s') == Some(a))
}

fn unique(words: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    words.filter(|w| seen.insert(w.clone())).collect()
}

/// The catalogue's text as the search and the explanations read it.
pub(crate) struct CatalogueText {
    /// Per item: its title as written.
    titles: Vec<String>,
    /// Per item: its title in lower case, for the phrase bonus of the search.
    titles_lower: Vec<String>,
    /// Per item: the distinct lower-case words of its title, in order.
    title_words: Vec<Vec<String>>,
    /// Per item: the distinct lower-case words of its categories and brand.
    other_words: Vec<Vec<String>>,
    /// Per item: its category labels, lower case and trimmed, beside the label as written.
    categories: Vec<Vec<(String, String)>>,
    /// Items whose title has each word.
    title_df: HashMap<String, u32>,
    /// Items whose title, categories or brand have each word.
    text_df: HashMap<String, u32>,
    /// Items holding each category label (lower case).
    category_df: HashMap<String, u32>,
    /// Interactions per item in the users' sequences.
    popularity: Vec<u32>,
}

impl CatalogueText {
    pub fn new(prepared: &Prepared) -> Self {
        let items = &prepared.dataset.items;
        let title_words: Vec<Vec<String>> =
            items.iter().map(|i| unique(tokenize(&i.title))).collect();
        let other_words: Vec<Vec<String>> = items
            .iter()
            .map(|i| {
                let text = i.categories.iter().chain(&i.brand).cloned();
                unique(text.flat_map(|t| tokenize(&t).collect::<Vec<_>>()))
            })
            .collect();
        let categories: Vec<Vec<(String, String)>> = items
            .iter()
            .map(|i| {
                let mut seen = HashSet::new();
                i.categories
                    .iter()
                    .map(|c| (c.trim().to_lowercase(), c.trim().to_string()))
                    .filter(|(k, _)| !k.is_empty() && seen.insert(k.clone()))
                    .collect()
            })
            .collect();
        let mut title_df = HashMap::new();
        let mut text_df = HashMap::new();
        let mut category_df = HashMap::new();
        for i in 0..items.len() {
            for w in &title_words[i] {
                *title_df.entry(w.clone()).or_insert(0) += 1;
            }
            let text: HashSet<&String> = title_words[i].iter().chain(&other_words[i]).collect();
            for w in text {
                *text_df.entry(w.clone()).or_insert(0) += 1;
            }
            for (c, _) in &categories[i] {
                *category_df.entry(c.clone()).or_insert(0) += 1;
            }
        }
        let mut popularity = vec![0u32; items.len()];
        for seq in &prepared.dataset.sequences {
            for x in seq {
                if let Some(p) = popularity.get_mut(x.item.index()) {
                    *p += 1;
                }
            }
        }
        Self {
            titles: items.iter().map(|i| i.title.clone()).collect(),
            titles_lower: items.iter().map(|i| i.title.to_lowercase()).collect(),
            title_words,
            other_words,
            categories,
            title_df,
            text_df,
            category_df,
            popularity,
        }
    }

    fn items(&self) -> usize {
        self.title_words.len()
    }

    fn share(&self, df: Option<&u32>) -> f64 {
        f64::from(df.copied().unwrap_or(0)) / self.items().max(1) as f64
    }

    /// The share of items whose text has `w` as [`same_word`] counts it: "game" is as common
    /// as "games" is in a catalogue whose items sit under "Games".
    fn text_share(&self, w: &str) -> f64 {
        let plural = format!("{w}s");
        let singular = w.strip_suffix('s').filter(|_| w.len() > 3);
        [Some(w), Some(plural.as_str()), singular]
            .into_iter()
            .flatten()
            .map(|v| self.share(self.text_df.get(v)))
            .fold(0.0, f64::max)
    }

    fn informative_title_word(&self, w: &str) -> bool {
        is_word(w) && self.share(self.title_df.get(w)) <= COMMON_TITLE_WORD
    }

    fn informative_category(&self, c: &str) -> bool {
        self.share(self.category_df.get(c)) <= COMMON_CATEGORY
    }

    /// Catalogue search: items of which every query word starts a word (title, categories or
    /// brand), so a half-typed last word already finds its items. Stop words are left out of
    /// the query unless it has nothing else. Best first: per query word 3 points for a whole
    /// title word, 2 for the start of one, 1.5 for a whole category or brand word, 1 for the
    /// start of one; 2 more when the whole query appears in the title as typed; then the more
    /// popular item, then the lower id. Only the first 16 distinct words count.
    pub fn search(&self, q: &str, limit: usize) -> Vec<ItemId> {
        let words: Vec<String> = unique(tokenize(q))
            .into_iter()
            .take(MAX_QUERY_WORDS)
            .collect();
        let content: Vec<&String> = words.iter().filter(|w| !is_stop_word(w)).collect();
        let words: Vec<&String> = if content.is_empty() {
            words.iter().collect()
        } else {
            content
        };
        if words.is_empty() {
            return Vec::new();
        }
        let phrase = q.trim().to_lowercase();
        let mut hits: Vec<(f64, u32, u32)> = Vec::new();
        'items: for i in 0..self.items() {
            let mut score = 0.0;
            for w in &words {
                let best = |list: &[String], whole: f64, start: f64| {
                    list.iter()
                        .map(|x| {
                            if x == *w {
                                whole
                            } else if x.starts_with(w.as_str()) {
                                start
                            } else {
                                0.0
                            }
                        })
                        .fold(0.0, f64::max)
                };
                let s =
                    best(&self.title_words[i], 3.0, 2.0).max(best(&self.other_words[i], 1.5, 1.0));
                if s == 0.0 {
                    continue 'items;
                }
                score += s;
            }
            if phrase.chars().count() >= 2 && self.titles_lower[i].contains(&phrase) {
                score += 2.0;
            }
            hits.push((score, self.popularity[i], i as u32));
        }
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        hits.into_iter()
            .take(limit)
            .map(|(_, _, i)| ItemId(i))
            .collect()
    }

    /// Why an item may suit a request: the request's words found in its title, categories or
    /// brand, and the history items it shares uncommon title words or categories with.
    /// Computed from the text alone: facts about the item, not the model's reasons.
    pub fn explain(&self, item: ItemId, request: &str, history: &[ItemId]) -> Why {
        let i = item.index();
        let text: Vec<&String> = self.title_words[i]
            .iter()
            .chain(&self.other_words[i])
            .collect();
        let request_words: Vec<String> = unique(tokenize(request))
            .into_iter()
            .filter(|w| is_word(w) && self.text_share(w) <= COMMON_TEXT_WORD)
            .filter(|w| text.iter().any(|x| same_word(x, w)))
            .collect();

        let my_words: Vec<&String> = self.title_words[i]
            .iter()
            .filter(|w| self.informative_title_word(w))
            .collect();
        let my_categories: Vec<&(String, String)> = self.categories[i]
            .iter()
            .filter(|(c, _)| self.informative_category(c))
            .collect();
        let mut links = Vec::new();
        let mut seen = HashSet::new();
        // Most recent first; an item listed twice in the history counts once.
        for (recency, h) in history.iter().rev().enumerate() {
            if *h == item || h.index() >= self.items() || !seen.insert(*h) {
                continue;
            }
            let shared_words: Vec<String> = my_words
                .iter()
                .filter(|w| self.title_words[h.index()].iter().any(|x| x == **w))
                .map(|w| w.to_string())
                .collect();
            let shared_categories: Vec<String> = my_categories
                .iter()
                .filter(|(c, _)| self.categories[h.index()].iter().any(|(x, _)| x == c))
                .map(|(_, shown)| shown.clone())
                .collect();
            if shared_words.is_empty() && shared_categories.is_empty() {
                continue;
            }
            links.push((recency, *h, shared_words, shared_categories));
        }
        let history_matches = links.len();
        // What the links share most often names the link in the summary.
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (_, _, words, categories) in &links {
            for t in categories.iter().chain(words) {
                *counts.entry(t.clone()).or_insert(0) += 1;
            }
        }
        let mut common: Vec<(String, usize)> = counts.into_iter().collect();
        common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        links.sort_by(|a, b| {
            (b.2.len() + b.3.len())
                .cmp(&(a.2.len() + a.3.len()))
                .then(a.0.cmp(&b.0))
        });
        let latest = links.iter().map(|l| l.0).min();
        let latest_title = links
            .iter()
            .find(|l| Some(l.0) == latest)
            .map(|l| self.titles[l.1.index()].clone());
        let history: Vec<HistoryLink> = links
            .into_iter()
            .take(HISTORY_LINKS)
            .map(|(_, h, shared_words, shared_categories)| HistoryLink {
                item_id: h.0,
                title: self.titles[h.index()].clone(),
                shared_words,
                shared_categories,
            })
            .collect();

        let mut parts = Vec::new();
        if !request_words.is_empty() {
            parts.push(format!("has {} from your request", quoted(&request_words)));
        }
        if history_matches > 0 {
            let terms: Vec<String> = common.iter().take(2).map(|(t, _)| t.clone()).collect();
            let latest = latest_title.unwrap_or_default();
            parts.push(if history_matches == 1 {
                format!(
                    "shares {} with \u{201c}{latest}\u{201d} from your history",
                    quoted(&terms)
                )
            } else {
                format!(
                    "shares {} with {history_matches} items from your history, latest \
                     \u{201c}{latest}\u{201d}",
                    quoted(&terms)
                )
            });
        }
        let summary = if parts.is_empty() {
            "Shares no word with your request and no uncommon word or category with your \
             history: placed by the model's score alone"
                .to_string()
        } else {
            let joined = parts.join("; ");
            let mut chars = joined.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        };
        Why {
            summary,
            request_words,
            history_matches,
            history,
        }
    }

    /// Examples and placeholders made of the catalogue's own titles and categories.
    pub fn examples(&self, prepared: &Prepared) -> Examples {
        let items = &prepared.dataset.items;
        // Each label as the catalogue first writes it.
        let mut shown: HashMap<&String, &String> = HashMap::new();
        for (k, s) in self.categories.iter().flatten() {
            shown.entry(k).or_insert(s);
        }
        let mut categories: Vec<(&String, u32, String)> = self
            .category_df
            .iter()
            .filter(|(c, _)| self.informative_category(c))
            .map(|(c, n)| {
                (
                    c,
                    *n,
                    shown.get(c).map_or_else(|| c.clone(), |s| (*s).clone()),
                )
            })
            .collect();
        categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let categories: Vec<String> = categories.into_iter().take(8).map(|c| c.2).collect();

        let mut popular: Vec<usize> = (0..items.len()).collect();
        popular.sort_by(|&a, &b| self.popularity[b].cmp(&self.popularity[a]).then(a.cmp(&b)));
        let short: Vec<usize> = popular
            .iter()
            .copied()
            .filter(|&i| {
                let n = items[i].title.chars().count();
                n > 0 && n <= EXAMPLE_TITLE_CHARS
            })
            .take(2)
            .collect();
        let title = |k: usize| short.get(k).map(|&i| items[i].title.clone());

        let mut placeholders = Placeholders {
            intention: "what are you looking for?".into(),
            preference: "what you like, in your words".into(),
            context: "when and where, e.g. on a weekend evening".into(),
            refine: "say what to change".into(),
            item_search: "a word of a title".into(),
        };
        let mut examples = Vec::new();
        if let Some(t) = title(0) {
            placeholders.intention = format!("something like {t}");
            examples.push(Example {
                label: format!("Something like {t}"),
                request: RecommendRequest {
                    intention: Some(format!("something like {t}")),
                    ..RecommendRequest::default()
                },
            });
            let i = short[0];
            // The uncommon word of the title that most other titles share: a search that
            // shows a list.
            let word = self.title_words[i]
                .iter()
                .filter(|w| self.informative_title_word(w) && w.chars().count() >= 3)
                .max_by_key(|w| {
                    (
                        self.title_df.get(*w).copied().unwrap_or(0),
                        std::cmp::Reverse(*w),
                    )
                })
                .or_else(|| self.title_words[i].iter().find(|w| is_word(w)));
            if let Some(w) = word {
                placeholders.item_search = format!("a title word, e.g. {w}");
            }
        }
        // A category query: the path of the second most popular short-titled item, as the
        // catalogue writes it (an I2 request, since every part is a label).
        if let Some(&i) = short.get(1).or(short.first()) {
            let mut path = String::new();
            for c in items[i]
                .categories
                .iter()
                .map(|c| c.trim())
                .filter(|c| !c.is_empty())
            {
                let next = if path.is_empty() {
                    c.to_string()
                } else {
                    format!("{path}, {c}")
                };
                if next.chars().count() > 80 || c.contains([',', '>', '/', '|', ';']) {
                    break;
                }
                path = next;
            }
            if !path.is_empty() {
                examples.push(Example {
                    label: path.clone(),
                    request: RecommendRequest {
                        intention: Some(path),
                        ..RecommendRequest::default()
                    },
                });
            }
        }
        if categories.len() >= 2 {
            let taste = format!("I like {} and {}", categories[0], categories[1]);
            placeholders.preference = taste.clone();
            examples.push(Example {
                label: format!("Taste: {taste}"),
                request: RecommendRequest {
                    preference: Some(taste),
                    ..RecommendRequest::default()
                },
            });
            placeholders.refine = format!("more {}", categories[categories.len().min(3) - 1]);
        } else if let Some(t) = title(1) {
            placeholders.refine = format!("more like {t}");
        }
        let user = prepared.dataset.users.iter().max_by(|a, b| {
            let (la, lb) = (
                prepared.dataset.sequences[a.id.index()].len(),
                prepared.dataset.sequences[b.id.index()].len(),
            );
            la.cmp(&lb).then(b.id.cmp(&a.id))
        });
        if let Some(u) = user {
            examples.push(Example {
                label: format!("The history of user {}", u.original_id),
                request: RecommendRequest {
                    user: Some(UserRef::Name(u.original_id.clone())),
                    ..RecommendRequest::default()
                },
            });
        }
        Examples {
            categories,
            placeholders,
            examples,
        }
    }
}

/// Words as a list in quotes: “a”, “b” and “c”.
fn quoted(words: &[String]) -> String {
    let q: Vec<String> = words
        .iter()
        .map(|w| format!("\u{201c}{w}\u{201d}"))
        .collect();
    match q.len() {
        0 => String::new(),
        1 => q[0].clone(),
        n => format!("{} and {}", q[..n - 1].join(", "), q[n - 1]),
    }
}

/// Why an item is in the answer, as far as its text shows: what it shares with the request and
/// the history. Computed by counting words and categories, not by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Why {
    /// One sentence for a person, made from the fields below.
    pub summary: String,
    /// Words of the request (intention and stated taste) found in the item's title, categories
    /// or brand (a plural `s` aside). Stop words, and words in more than half of the
    /// catalogue's items (plural or not), are not counted.
    pub request_words: Vec<String>,
    /// History items sharing an uncommon title word (in at most a fifth of the titles) or a
    /// category held by at most half the items.
    pub history_matches: usize,
    /// Up to three of them: most shared first, then most recent.
    pub history: Vec<HistoryLink>,
}

/// A history item and what the recommended item shares with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryLink {
    pub item_id: u32,
    pub title: String,
    /// Uncommon title words both titles have.
    pub shared_words: Vec<String>,
    /// Categories both items have, as the catalogue writes them.
    pub shared_categories: Vec<String>,
}

/// Examples and placeholders for a client, drawn from the loaded catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Examples {
    /// The catalogue's most common categories (labels held by more than half the items, such as
    /// a root, left out), most common first; at most 8.
    pub categories: Vec<String>,
    pub placeholders: Placeholders,
    /// Requests that work on this catalogue, each with a label to show.
    pub examples: Vec<Example>,
}

/// Placeholder text for a client's input fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Placeholders {
    /// For the need: "something like" the most popular short title.
    pub intention: String,
    /// For the stated taste: the two most common categories.
    pub preference: String,
    /// For the situation (not drawn from the catalogue, which has none).
    pub context: String,
    /// For a follow-up: "more" of a common category.
    pub refine: String,
    /// For the catalogue search: an uncommon word of a popular title.
    pub item_search: String,
}

/// One example request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Example {
    pub label: String,
    pub request: RecommendRequest,
}
