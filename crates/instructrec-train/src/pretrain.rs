//! Pre-training before instruction tuning, with two objectives whose examples feed the same
//! [`Trainer`] as instruction tuning:
//! - span corruption on item text (T5's objective): about 15% of an item's tokens, in spans of
//!   mean length 3, are replaced by sentinels in the input; the target lists the sentinels each
//!   followed by the tokens it hid;
//! - continuation of interaction sequences: the items a user bought up to a random point, and
//!   the items that came after it as the target;
//! - next-item choice: the last few items a user bought and a short list of candidates, the
//!   next item hidden among random others, with that item as the target. It is the reranking
//!   task at every position of every training sequence, either in a few words of its own or in
//!   the reranking templates' words: many examples are what a randomly initialised T5 needs
//!   before it starts to read its prompt at all, and the templates' words spare the model a
//!   change of wording between pre-training and tuning (docs/training.md, "Next-item
//!   pre-training").
//!
//! [`Trainer`]: crate::trainer::Trainer

use std::collections::HashSet;

use instructrec_data::{Interaction, Item, ItemId, Prepared, UserId};
use instructrec_instructions::{fit_history, Fills, Template, WordCounter};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;

use crate::data::{
    derive_seed, Example, TokenizedExample, STREAM_CONTINUATION, STREAM_CORRUPTION,
    STREAM_NEXT_ITEM,
};
use crate::error::{Result, TrainError};
use crate::tokenizer::{sentinel_id, EOS_ID};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorruptionOptions {
    pub noise_density: f64,
    pub mean_span_length: f64,
    /// Token budget of one item's text (before corruption).
    pub max_tokens: usize,
    /// Differently corrupted copies of each item.
    pub copies: usize,
    pub seed: u64,
}

impl Default for CorruptionOptions {
    fn default() -> Self {
        Self {
            noise_density: 0.15,
            mean_span_length: 3.0,
            max_tokens: 128,
            copies: 2,
            seed: 42,
        }
    }
}

/// An item as one line of text: title, category path, brand, features.
pub fn item_text(item: &Item) -> String {
    let mut parts = vec![item.title.clone()];
    if !item.categories.is_empty() {
        parts.push(item.categories.join(", "));
    }
    if let Some(brand) = item.brand.as_deref().filter(|b| !b.is_empty()) {
        parts.push(format!("by {brand}"));
    }
    parts.extend(item.features.iter().cloned());
    parts.join(". ")
}

/// Items whose text pre-training may see: everything but the validation and test items of the
/// product-search split, whose titles must stay unseen until evaluation.
pub fn pretraining_items(prepared: &Prepared) -> Vec<&Item> {
    let held_out: HashSet<ItemId> = prepared
        .item_split
        .validation
        .iter()
        .chain(&prepared.item_split.test)
        .copied()
        .collect();
    prepared
        .dataset
        .items
        .iter()
        .filter(|i| !held_out.contains(&i.id) && !i.title.trim().is_empty())
        .collect()
}

/// Splits `n` items into `k` non-empty segments, uniformly at random; returns their lengths.
fn random_segmentation(n: usize, k: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut cuts: Vec<usize> = (1..n).collect();
    cuts.shuffle(rng);
    let mut cuts: Vec<usize> = cuts.into_iter().take(k - 1).collect();
    cuts.sort_unstable();
    let mut lengths = Vec::with_capacity(k);
    let mut prev = 0;
    for c in cuts.into_iter().chain(std::iter::once(n)) {
        lengths.push(c - prev);
        prev = c;
    }
    lengths
}

/// Corrupts `tokens` (no `</s>`) T5-style. `sentinels[i]` is the id of `<extra_id_i>`.
pub fn corrupt(
    tokens: &[u32],
    opts: &CorruptionOptions,
    sentinels: &[u32],
    rng: &mut impl Rng,
) -> Option<TokenizedExample> {
    let len = tokens.len();
    if len < 2 {
        return None;
    }
    let noise = ((len as f64 * opts.noise_density).round() as usize).clamp(1, len - 1);
    let spans = ((noise as f64 / opts.mean_span_length).round() as usize)
        .clamp(1, noise.min(len - noise).min(sentinels.len()));
    let noise_lengths = random_segmentation(noise, spans, rng);
    let keep_lengths = random_segmentation(len - noise, spans, rng);
    let mut source = Vec::with_capacity(len - noise + spans + 1);
    let mut target = Vec::with_capacity(noise + spans + 1);
    let mut at = 0;
    for (i, (&keep, &hide)) in keep_lengths.iter().zip(&noise_lengths).enumerate() {
        source.extend_from_slice(&tokens[at..at + keep]);
        at += keep;
        source.push(sentinels[i]);
        target.push(sentinels[i]);
        target.extend_from_slice(&tokens[at..at + hide]);
        at += hide;
    }
    source.push(EOS_ID);
    target.push(EOS_ID);
    Some(TokenizedExample { source, target })
}

/// Span-corruption examples from item texts: `copies` per text, each from a generator seeded by
/// (seed, text index, copy), so the set does not depend on thread scheduling or on other texts.
pub fn span_corruption_examples(
    tokenizer: &Tokenizer,
    texts: &[String],
    opts: &CorruptionOptions,
) -> Result<Vec<TokenizedExample>> {
    let max_spans = ((opts.max_tokens as f64 * opts.noise_density / opts.mean_span_length).ceil()
        as usize)
        .max(1);
    let sentinels = (0..max_spans)
        .map(|n| sentinel_id(tokenizer, n))
        .collect::<Result<Vec<_>>>()?;
    if opts.copies == 0 {
        return Err(TrainError::Config(
            "span corruption needs at least one copy".into(),
        ));
    }
    let mut out = Vec::with_capacity(texts.len() * opts.copies);
    for (t, chunk) in texts.chunks(1024).enumerate() {
        let encodings = tokenizer
            .encode_batch(chunk.iter().map(String::as_str).collect(), false)
            .map_err(TrainError::Tokenizer)?;
        for (j, enc) in encodings.iter().enumerate() {
            let ids = enc.get_ids();
            let ids = &ids[..ids.len().min(opts.max_tokens)];
            for copy in 0..opts.copies {
                let index = ((t * 1024 + j) * opts.copies + copy) as u64;
                let mut rng =
                    ChaCha8Rng::seed_from_u64(derive_seed(opts.seed, STREAM_CORRUPTION, index));
                out.extend(corrupt(ids, opts, &sentinels, &mut rng));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContinuationOptions {
    /// Differently cut copies of each user's sequence.
    pub copies: usize,
    /// Most items shown before the cut (the instructions' history cap).
    pub history_cap: usize,
    /// Most items in the target after the cut.
    pub max_continuation: usize,
    pub seed: u64,
}

/// Continuation examples from the training part of `users`' sequences (never a validation or
/// test item): "Bought so far: t1; t2; …" up to a cut point drawn uniformly from (seed, user,
/// copy), and the titles after it, in order, as the target. The decoder predicts each later
/// item from the history and the ones before it, so one example carries several next-item
/// lessons, the per-position signal SASRec trains on, where an instruction line carries one.
pub fn continuation_examples(
    prepared: &Prepared,
    users: &[UserId],
    opts: &ContinuationOptions,
) -> Vec<Example> {
    let title = |id: ItemId| prepared.dataset.items[id.index()].title.as_str();
    let mut out = Vec::with_capacity(users.len() * opts.copies);
    for &user in users {
        let seq = prepared.train_sequence(user);
        if seq.len() < 2 {
            continue;
        }
        for copy in 0..opts.copies {
            let index = (user.index() * opts.copies + copy) as u64;
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(opts.seed, STREAM_CONTINUATION, index));
            let cut = rng.random_range(1..seq.len());
            let shown = &seq[cut.saturating_sub(opts.history_cap)..cut];
            let next = &seq[cut..seq.len().min(cut + opts.max_continuation.max(1))];
            let join = |part: &[Interaction]| {
                part.iter()
                    .map(|i| title(i.item))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            out.push(Example {
                source: format!("Bought so far: {}.", join(shown)),
                target: join(next),
            });
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NextItemOptions {
    /// Examples per position, each with other negatives.
    pub copies: usize,
    /// Most items shown before the position.
    pub history_items: usize,
    /// Word budget of the shown history, as `instructions build --history-budget` counts it:
    /// the oldest titles are dropped first, the newest is always kept.
    pub history_budget: usize,
    /// Length of the candidate list, the next item included.
    pub candidates: usize,
    pub seed: u64,
}

/// How a next-item example is phrased.
#[derive(Debug, Clone, Copy)]
pub enum NextItemWording<'a> {
    /// "Bought so far: t1; …. Next, one of: c1; …; ck."
    Compact,
    /// One of these implicit-preference reranking templates per example, picked by the
    /// example's seed and filled as the instruction builder fills it, so that pre-training
    /// already speaks the words the model is tuned and tested on.
    Templates(&'a [Template]),
}

/// Next-item choice examples from every position of `users`' training sequences (never a
/// validation or test item), with the item bought at that position as the target. The other
/// candidates are drawn uniformly from `pool` minus every item of the user's sequence, from
/// (seed, user, position, copy), and the list is shuffled. Users for whom the pool cannot fill
/// the list are skipped.
///
/// `pool` should hold every item a target can be, as the evaluation's candidate lists do: an
/// item that is a target but never a negative is a sure answer whenever it is listed, and a
/// model learns that instead of the user (it did, with the product-search split's held-out
/// items left out of the pool: docs/training.md).
pub fn next_item_examples(
    prepared: &Prepared,
    users: &[UserId],
    pool: &[ItemId],
    opts: &NextItemOptions,
    wording: NextItemWording<'_>,
) -> Vec<Example> {
    let title = |id: ItemId| prepared.dataset.items[id.index()].title.as_str();
    let titles = |items: &[ItemId]| items.iter().map(|&i| title(i)).collect::<Vec<_>>();
    let in_pool: HashSet<ItemId> = pool.iter().copied().collect();
    let negatives = opts.candidates.saturating_sub(1);
    let mut out = Vec::new();
    for &user in users {
        let seq: Vec<ItemId> = prepared
            .train_sequence(user)
            .iter()
            .map(|i| i.item)
            .collect();
        // The validation and test items too: they must never be shown as a wrong answer.
        let own: HashSet<ItemId> = prepared.dataset.sequences[user.index()]
            .iter()
            .map(|i| i.item)
            .collect();
        if in_pool.len() - own.iter().filter(|i| in_pool.contains(i)).count() < negatives {
            continue;
        }
        for cut in 1..seq.len() {
            for copy in 0..opts.copies {
                let index = ((user.index() as u64) << 32) | (cut * opts.copies + copy) as u64;
                let mut rng =
                    ChaCha8Rng::seed_from_u64(derive_seed(opts.seed, STREAM_NEXT_ITEM, index));
                // Rejection sampling: the pool is large and a user's own items few.
                let mut list: Vec<ItemId> = Vec::with_capacity(opts.candidates);
                while list.len() < negatives {
                    let item = pool[rng.random_range(0..pool.len())];
                    if !own.contains(&item) && !list.contains(&item) {
                        list.push(item);
                    }
                }
                list.push(seq[cut]);
                list.shuffle(&mut rng);
                let history = titles(&seq[cut.saturating_sub(opts.history_items)..cut]);
                let kept = fit_history(&history, opts.history_budget, &WordCounter);
                let history = &history[history.len() - kept..];
                let candidates = titles(&list);
                let source = match wording {
                    NextItemWording::Compact => format!(
                        "Bought so far: {}. Next, one of: {}.",
                        history.join("; "),
                        candidates.join("; ")
                    ),
                    NextItemWording::Templates(templates) => {
                        templates[rng.random_range(0..templates.len())].fill(&Fills {
                            history,
                            candidates: &candidates,
                            ..Fills::default()
                        })
                    }
                };
                out.push(Example {
                    source,
                    target: title(seq[cut]).to_string(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_hides_about_fifteen_percent_in_spans_and_is_reversible() {
        let tokens: Vec<u32> = (100..200).collect();
        let sentinels: Vec<u32> = (0..100).map(|i| 1000 - i).collect();
        let opts = CorruptionOptions::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ex = corrupt(&tokens, &opts, &sentinels, &mut rng).unwrap();
        let is_sentinel = |x: &u32| *x > 900;
        let hidden = ex
            .target
            .iter()
            .filter(|x| !is_sentinel(x) && **x != EOS_ID)
            .count();
        assert_eq!(hidden, 15);
        assert_eq!(ex.source.iter().filter(|x| is_sentinel(x)).count(), 5);
        // Filling each sentinel of the source with its span from the target restores the text.
        let mut spans: Vec<Vec<u32>> = Vec::new();
        for &x in &ex.target[..ex.target.len() - 1] {
            if is_sentinel(&x) {
                spans.push(Vec::new());
            } else {
                spans.last_mut().unwrap().push(x);
            }
        }
        let mut restored = Vec::new();
        let mut k = 0;
        for &x in &ex.source[..ex.source.len() - 1] {
            if is_sentinel(&x) {
                restored.extend(&spans[k]);
                k += 1;
            } else {
                restored.push(x);
            }
        }
        assert_eq!(restored, tokens);
        assert!(spans.iter().all(|s| !s.is_empty()));
    }

    /// The amazon2018 fixture of instructrec-data, prepared without a k-core filter.
    fn fixture() -> Prepared {
        let input = instructrec_data::ImportSource::Dir {
            dir: concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../instructrec-data/tests/fixtures/amazon2018"
            )
            .into(),
            format: None,
        };
        let options = instructrec_data::PrepareOptions {
            k_core: 1,
            candidate_sizes: vec![3],
            ..Default::default()
        };
        instructrec_data::prepare(&input, &options).unwrap().0
    }

    #[test]
    fn continuation_cuts_training_sequences_only_and_is_seeded() {
        let p = fixture();
        let users: Vec<UserId> = p.dataset.users.iter().map(|u| u.id).collect();
        let opts = ContinuationOptions {
            copies: 6,
            history_cap: 20,
            max_continuation: 10,
            seed: 3,
        };
        let examples = continuation_examples(&p, &users, &opts);
        assert!(!examples.is_empty());
        assert_eq!(examples, continuation_examples(&p, &users, &opts));
        let title = |i: &Interaction| p.dataset.items[i.item.index()].title.clone();
        let sequences: Vec<String> = users
            .iter()
            .map(|u| {
                let titles: Vec<String> = p.train_sequence(*u).iter().map(title).collect();
                titles.join("; ")
            })
            .collect();
        // History and continuation together are one user's whole training sequence (shorter
        // than the cap here), cut inside it: validation and test items never appear.
        for e in &examples {
            let shown = e
                .source
                .strip_prefix("Bought so far: ")
                .and_then(|s| s.strip_suffix('.'))
                .unwrap();
            assert!(!shown.is_empty() && !e.target.is_empty());
            assert!(
                sequences.contains(&format!("{shown}; {}", e.target)),
                "{e:?}"
            );
        }
        // `copies` examples per user with something to cut, each one of its n - 1 cuts.
        let lengths: Vec<usize> = users.iter().map(|u| p.train_sequence(*u).len()).collect();
        let eligible = lengths.iter().filter(|&&n| n >= 2).count();
        assert_eq!(examples.len(), opts.copies * eligible);
        let mut distinct: Vec<(&str, &str)> = examples
            .iter()
            .map(|e| (e.source.as_str(), e.target.as_str()))
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let cuts: usize = lengths.iter().map(|n| n.saturating_sub(1)).sum();
        assert!(distinct.len() >= eligible && distinct.len() <= cuts);
    }

    /// The history and the candidate list of a compact next-item source.
    fn compact_parts(source: &str) -> (&str, &str) {
        source
            .strip_prefix("Bought so far: ")
            .and_then(|s| s.strip_suffix('.'))
            .and_then(|s| s.split_once(". Next, one of: "))
            .unwrap_or_else(|| panic!("not a compact next-item source: {source:?}"))
    }

    #[test]
    fn next_item_lists_hide_the_next_item_among_others_and_are_seeded() {
        let p = fixture();
        let users: Vec<UserId> = p.dataset.users.iter().map(|u| u.id).collect();
        let pool: Vec<ItemId> = p.dataset.items.iter().map(|i| i.id).collect();
        let opts = NextItemOptions {
            copies: 2,
            history_items: 2,
            history_budget: usize::MAX,
            candidates: 3,
            seed: 5,
        };
        let compact = NextItemWording::Compact;
        let examples = next_item_examples(&p, &users, &pool, &opts, compact);
        assert_eq!(
            examples,
            next_item_examples(&p, &users, &pool, &opts, compact)
        );
        let other_seed = NextItemOptions { seed: 6, ..opts };
        assert_ne!(
            examples,
            next_item_examples(&p, &users, &pool, &other_seed, compact)
        );
        let title = |i: ItemId| p.dataset.items[i.index()].title.clone();
        let mut expected = Vec::new();
        for &u in &users {
            let seq: Vec<ItemId> = p.train_sequence(u).iter().map(|i| i.item).collect();
            for cut in 1..seq.len() {
                for _ in 0..opts.copies {
                    expected.push((
                        seq[cut.saturating_sub(2)..cut].to_vec(),
                        seq[cut],
                        p.dataset.sequences[u.index()]
                            .iter()
                            .map(|i| i.item)
                            .collect::<Vec<_>>(),
                    ));
                }
            }
        }
        assert!(!expected.is_empty());
        assert_eq!(examples.len(), expected.len());
        for (e, (shown, next, seq)) in examples.iter().zip(&expected) {
            let history: Vec<String> = shown.iter().map(|&i| title(i)).collect();
            let (source_history, list) = compact_parts(&e.source);
            assert_eq!(source_history, history.join("; "));
            assert_eq!(e.target, title(*next));
            let list: Vec<&str> = list.split("; ").collect();
            assert_eq!(list.len(), 3, "{e:?}");
            assert_eq!(list.iter().filter(|t| **t == e.target).count(), 1);
            // The others are never items of the user's own sequence, held-out items included.
            let own: Vec<String> = seq.iter().map(|&i| title(i)).collect();
            assert_eq!(
                list.iter().filter(|t| own.contains(&t.to_string())).count(),
                1
            );
        }
    }

    #[test]
    fn templated_next_item_examples_fill_the_templates_with_the_same_lists() {
        let p = fixture();
        let users: Vec<UserId> = p.dataset.users.iter().map(|u| u.id).collect();
        let pool: Vec<ItemId> = p.dataset.items.iter().map(|i| i.id).collect();
        let library = instructrec_instructions::TemplateLibrary::builtin();
        let templates: Vec<Template> = library
            .plain_rerank(
                instructrec_instructions::PreferenceKind::Implicit,
                instructrec_instructions::IntentionKind::None,
            )
            .cloned()
            .collect();
        assert!(templates.len() > 1);
        let opts = NextItemOptions {
            copies: 10,
            history_items: 4,
            history_budget: 3,
            candidates: 3,
            seed: 5,
        };
        let compact = next_item_examples(&p, &users, &pool, &opts, NextItemWording::Compact);
        let worded = next_item_examples(
            &p,
            &users,
            &pool,
            &opts,
            NextItemWording::Templates(&templates),
        );
        assert_eq!(compact.len(), worded.len());
        let mut used = HashSet::new();
        for (c, w) in compact.iter().zip(&worded) {
            assert_eq!(c.target, w.target);
            let (history, list) = compact_parts(&c.source);
            let history: Vec<&str> = history.split("; ").collect();
            // The word budget drops the oldest titles but never the newest.
            assert!(
                history.len() == 1 || history.join(" ").split_whitespace().count() <= 3,
                "{history:?}"
            );
            let list: Vec<&str> = list.split("; ").collect();
            let template = templates
                .iter()
                .find(|t| {
                    t.fill(&Fills {
                        history: &history,
                        candidates: &list,
                        ..Fills::default()
                    }) == w.source
                })
                .unwrap_or_else(|| panic!("no template gives {:?}", w.source));
            used.insert(template.id.clone());
        }
        assert_eq!(used.len(), templates.len(), "every template is drawn");
    }

    #[test]
    fn segmentation_is_a_partition() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (n, k) in [(10, 3), (5, 5), (7, 1)] {
            let s = random_segmentation(n, k, &mut rng);
            assert_eq!(s.len(), k);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().all(|&x| x > 0));
        }
    }
}
