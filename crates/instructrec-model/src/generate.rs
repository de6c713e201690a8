//! Matching by generation: beam search with a key/value cache, constrained by a prefix trie over
//! the tokenised catalogue titles so that only complete catalogue titles can be produced.

use crate::ops;
use crate::score::Encoded;
use crate::t5::T5;
use candle_core::{DType, Result, Tensor};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
struct Node {
    /// Next token -> node index. Ordered, so that ties are broken the same way on every run.
    children: BTreeMap<u32, usize>,
    /// Catalogue items whose tokenised title (+ EOS) ends here.
    items: Vec<usize>,
}

/// Prefix trie over tokenised titles, each ending in EOS.
#[derive(Debug, Clone)]
pub struct TitleTrie {
    nodes: Vec<Node>,
    eos: u32,
}

impl TitleTrie {
    /// `titles[i]` are item `i`'s title tokens (without EOS, which is appended here). Items
    /// with identical token sequences share one leaf.
    pub fn new(titles: &[Vec<u32>], eos: u32) -> Result<Self> {
        let mut nodes = vec![Node::default()];
        for (item, title) in titles.iter().enumerate() {
            if title.contains(&eos) {
                candle_core::bail!("title of item {item} contains the EOS token");
            }
            let mut at = 0;
            for &tok in title.iter().chain(std::iter::once(&eos)) {
                at = match nodes[at].children.get(&tok) {
                    Some(&next) => next,
                    None => {
                        nodes.push(Node::default());
                        let next = nodes.len() - 1;
                        nodes[at].children.insert(tok, next);
                        next
                    }
                };
            }
            nodes[at].items.push(item);
        }
        Ok(Self { nodes, eos })
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }
}

/// One generated title.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Catalogue items with exactly this tokenised title.
    pub items: Vec<usize>,
    /// The title's tokens followed by EOS.
    pub tokens: Vec<u32>,
    /// Sum of the token log-probabilities (the full-vocabulary model probabilities).
    pub sum: f32,
    /// Mean per token.
    pub mean: f32,
}

#[derive(Debug, Clone)]
struct Beam {
    node: usize,
    tokens: Vec<u32>,
    sum: f32,
}

/// Beam search over the catalogue: returns up to `top_k` distinct titles, best summed
/// log-likelihood first. `num_beams` (at least `top_k`) bounds the prefixes kept per step;
/// when it is at least the number of distinct titles the search is exhaustive.
pub fn generate_titles(
    model: &T5,
    enc: &Encoded,
    trie: &TitleTrie,
    top_k: usize,
    num_beams: usize,
) -> Result<Vec<Generated>> {
    let width = num_beams.max(top_k);
    if width == 0 || trie.nodes[0].children.is_empty() {
        return Ok(Vec::new());
    }
    let device = model.device();
    let mut cache = model.start_decoding(&enc.states)?;
    let mut beams = vec![Beam {
        node: 0,
        tokens: Vec::new(),
        sum: 0.0,
    }];
    let mut last_tokens = vec![model.config().decoder_start_token_id];
    let mut finished: Vec<Generated> = Vec::new();
    while !beams.is_empty() {
        let ids = Tensor::from_vec(last_tokens.clone(), (beams.len(), 1), device)?;
        let logits = model.decode_step(&ids, &enc.mask, &mut cache)?;
        let logp: Vec<Vec<f32>> =
            ops::log_softmax_last_dim(&logits.squeeze(1)?.to_dtype(DType::F32)?)?.to_vec2()?;

        // Every allowed continuation of every beam, best first (ties: earlier beam, smaller id).
        let mut expansions: Vec<(f32, usize, u32, usize)> = beams
            .iter()
            .enumerate()
            .flat_map(|(b, beam)| {
                let row = &logp[b];
                trie.nodes[beam.node]
                    .children
                    .iter()
                    .map(move |(&tok, &next)| (beam.sum + row[tok as usize], b, tok, next))
            })
            .collect();
        expansions.sort_by(|x, y| y.0.total_cmp(&x.0));

        let mut next_beams = Vec::new();
        let mut parents = Vec::new();
        for (sum, b, tok, next) in expansions.into_iter().take(width) {
            let mut tokens = beams[b].tokens.clone();
            tokens.push(tok);
            if tok == trie.eos {
                finished.push(Generated {
                    items: trie.nodes[next].items.clone(),
                    mean: sum / tokens.len() as f32,
                    tokens,
                    sum,
                });
            } else {
                next_beams.push(Beam {
                    node: next,
                    tokens,
                    sum,
                });
                parents.push(b as u32);
            }
        }
        finished.sort_by(|x, y| y.sum.total_cmp(&x.sum));
        finished.truncate(top_k);
        // Log-probabilities only decrease along a path: once `top_k` titles are finished and
        // none of the open prefixes beats the worst of them, nothing better can appear.
        let best_open = next_beams
            .iter()
            .map(|b| b.sum)
            .fold(f32::NEG_INFINITY, f32::max);
        if finished.len() == top_k && finished.last().is_some_and(|w| w.sum >= best_open) {
            break;
        }
        if next_beams.is_empty() {
            break;
        }
        cache.select_rows(&Tensor::new(parents.as_slice(), device)?)?;
        last_tokens = next_beams
            .iter()
            .map(|b| *b.tokens.last().expect("an open beam has a token"))
            .collect();
        beams = next_beams;
    }
    Ok(finished)
}
