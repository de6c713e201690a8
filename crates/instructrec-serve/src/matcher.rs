//! The matching stage: retrieves candidates from the whole catalogue for the reranker: BM25 over
//! item text, the tuned model itself generating catalogue titles (the method's matching step),
//! or the trained two-tower model.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use candle_core::Tensor;
use instructrec_baselines::{Bm25, Bm25Config, Popularity, TwoTower};
use instructrec_data::{ItemId, Prepared, UserId};
use instructrec_eval::{Case, Scorer};
use instructrec_instructions::rerank::{choose_form, render};
use instructrec_instructions::{
    fit_history, Fills, IntentionKind, PreferenceKind, TaskForm, TemplateLibrary, WordCounter,
};
use instructrec_model::{Seq2Seq, TitleTrie, TokenLimits};

/// What the matching stage knows about a request.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchQuery<'a> {
    pub user: Option<UserId>,
    /// Oldest first.
    pub history: &'a [ItemId],
    /// The stated taste and the intention, as one text (empty when the request has neither).
    pub text: String,
}

pub trait Matcher: Send + Sync {
    fn name(&self) -> String;

    /// The name of the matcher that retrieves for `query`: this one's, unless it hands some
    /// queries to another (the two-tower model's requests without a history go to BM25).
    fn name_for(&self, _query: &MatchQuery<'_>) -> String {
        self.name()
    }

    /// Up to `n` items, best first, none of them in `exclude`.
    fn retrieve(
        &self,
        query: &MatchQuery<'_>,
        n: usize,
        exclude: &HashSet<ItemId>,
    ) -> anyhow::Result<Vec<ItemId>>;
}

/// The `n` best of a catalogue of `items` by `order` (best first), none of them in `exclude`:
/// a partial selection, then a sort of the `n` kept.
fn best(
    items: usize,
    n: usize,
    exclude: &HashSet<ItemId>,
    order: impl Fn(&u32, &u32) -> Ordering,
) -> Vec<ItemId> {
    let mut ids: Vec<u32> = (0..items as u32)
        .filter(|i| !exclude.contains(&ItemId(*i)))
        .collect();
    if n < ids.len() {
        ids.select_nth_unstable_by(n, &order);
        ids.truncate(n);
    }
    ids.sort_unstable_by(order);
    ids.into_iter().map(ItemId).collect()
}

/// BM25 over title, categories and brand, without stop words (people type sentences). The query
/// is the request's text when it has one, else the recent history titles: long titles would
/// outweigh a short need ("a scary game" matched consoles from a user's history), and the
/// reranker sees the history anyway. Items BM25 cannot tell apart (no shared word) are ordered
/// by popularity, so a request whose words match nothing still gets the catalogue's best
/// sellers.
pub struct Bm25Matcher {
    bm25: Bm25,
    popularity: Popularity,
}

impl Bm25Matcher {
    pub fn fit(prepared: &Prepared) -> Self {
        Self {
            bm25: Bm25::fit(
                prepared,
                Bm25Config {
                    stop_words: true,
                    ..Bm25Config::default()
                },
            ),
            popularity: Popularity::fit(prepared),
        }
    }
}

/// The evaluation `Case` needs a user; BM25 and popularity never look at it.
const ANONYMOUS: UserId = UserId(u32::MAX);

impl Matcher for Bm25Matcher {
    fn name(&self) -> String {
        "bm25".into()
    }

    fn retrieve(
        &self,
        query: &MatchQuery<'_>,
        n: usize,
        exclude: &HashSet<ItemId>,
    ) -> anyhow::Result<Vec<ItemId>> {
        let case = Case {
            user: query.user.unwrap_or(ANONYMOUS),
            history: if query.text.trim().is_empty() {
                query.history.to_vec()
            } else {
                Vec::new()
            },
            query: Some(query.text.clone()),
            context: None,
        };
        let all = |s: &dyn Scorer| -> anyhow::Result<Vec<f32>> {
            let mut v = s
                .score_all(&[&case])
                .ok_or_else(|| anyhow::anyhow!("{} cannot score the catalogue", s.name()))??;
            v.pop()
                .ok_or_else(|| anyhow::anyhow!("{} returned no scores", s.name()))
        };
        let text = all(&self.bm25)?;
        let popular = all(&self.popularity)?;
        Ok(best(text.len(), n, exclude, |a, b| {
            let (a, b) = (*a as usize, *b as usize);
            text[b]
                .total_cmp(&text[a])
                .then(popular[b].total_cmp(&popular[a]))
                .then(a.cmp(&b))
        }))
    }
}

/// The trained two-tower model (`eval --save-two-tower`): its user tower reads the request's
/// history, with the user's id embedding when the request names a user (else the history
/// alone), and the catalogue's items come back by dot product with their vectors, computed
/// once at load. The model reads no text, so a request's words do not steer it, and a request
/// without a history (text only) has nothing for it to read: BM25 matches that one, as the
/// BM25 matcher would, and its answer names `bm25` as its matcher.
pub struct TwoTowerMatcher {
    model: TwoTower,
    /// `[items, dim]`, by item index.
    catalogue: Tensor,
    text: Bm25Matcher,
}

impl TwoTowerMatcher {
    /// `model` must have been built for `prepared`'s catalogue.
    pub fn new(model: TwoTower, prepared: &Prepared) -> anyhow::Result<Self> {
        Ok(Self {
            catalogue: model.catalogue_vectors()?,
            model,
            text: Bm25Matcher::fit(prepared),
        })
    }

    /// Loads a saved model directory (see [`TwoTower::load_dir`]).
    pub fn load(dir: &Path, prepared: &Prepared) -> anyhow::Result<Self> {
        Self::new(TwoTower::load_dir(dir, prepared)?, prepared)
    }

    fn hands_to_bm25(query: &MatchQuery<'_>) -> bool {
        query.history.is_empty()
    }
}

impl Matcher for TwoTowerMatcher {
    fn name(&self) -> String {
        "two-tower".into()
    }

    fn name_for(&self, query: &MatchQuery<'_>) -> String {
        if Self::hands_to_bm25(query) {
            self.text.name()
        } else {
            self.name()
        }
    }

    fn retrieve(
        &self,
        query: &MatchQuery<'_>,
        n: usize,
        exclude: &HashSet<ItemId>,
    ) -> anyhow::Result<Vec<ItemId>> {
        if Self::hands_to_bm25(query) {
            return self.text.retrieve(query, n, exclude);
        }
        let scores = self
            .model
            .catalogue_scores(&[query.user], &[query.history], &self.catalogue)?
            .pop()
            .context("the two-tower model returned no scores")?;
        Ok(best(scores.len(), n, exclude, |a, b| {
            let (a, b) = (*a as usize, *b as usize);
            scores[b].total_cmp(&scores[a]).then(a.cmp(&b))
        }))
    }
}

/// Which matching stage a recommender runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Matching {
    #[default]
    Bm25,
    Generation,
    /// A saved two-tower model, from the directory of `Options::two_tower`.
    #[serde(rename = "two-tower")]
    TwoTower,
}

impl std::str::FromStr for Matching {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bm25" => Ok(Self::Bm25),
            "generation" => Ok(Self::Generation),
            "two-tower" => Ok(Self::TwoTower),
            _ => Err(format!(
                "unknown matcher {s:?}; expected bm25, generation or two-tower"
            )),
        }
    }
}

/// The method's own matching step: the tuned model writes catalogue titles for the need, asked
/// in its matching (T2) template, by beam search constrained to the catalogue's titles. The
/// history fills the implicit preference and the request's text the (vague) intention; items
/// in `exclude` are skipped.
pub struct GenerationMatcher {
    model: Seq2Seq,
    trie: TitleTrie,
    library: TemplateLibrary,
    titles: Vec<String>,
    /// Word budget of the shown history (the instruction builder's).
    history_budget: usize,
    limits: TokenLimits,
}

impl GenerationMatcher {
    pub fn new(
        model: Seq2Seq,
        prepared: &Prepared,
        library: TemplateLibrary,
        history_budget: usize,
        limits: TokenLimits,
    ) -> anyhow::Result<Self> {
        let titles = prepared.titles();
        let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
        let trie = model.title_trie(&refs, limits.target)?;
        Ok(Self {
            model,
            trie,
            library,
            titles,
            history_budget,
            limits,
        })
    }
}

impl Matcher for GenerationMatcher {
    fn name(&self) -> String {
        "generation".into()
    }

    fn retrieve(
        &self,
        query: &MatchQuery<'_>,
        n: usize,
        exclude: &HashSet<ItemId>,
    ) -> anyhow::Result<Vec<ItemId>> {
        let text = query.text.trim();
        let preference = if query.history.is_empty() {
            PreferenceKind::None
        } else {
            PreferenceKind::Implicit
        };
        let intention = if text.is_empty() {
            IntentionKind::None
        } else {
            IntentionKind::Vague
        };
        let template = choose_form(&self.library, TaskForm::Matching, preference, intention)
            .with_context(|| {
                format!(
                    "no matching template for {preference} {intention}: give a history or a text"
                )
            })?;
        let history: Vec<&str> = query
            .history
            .iter()
            .map(|i| self.titles[i.index()].as_str())
            .collect();
        let kept = fit_history(&history, self.history_budget, &WordCounter);
        let fills = Fills {
            history: &history[history.len() - kept..],
            vague_intention: (!text.is_empty()).then_some(text),
            ..Fills::default()
        };
        let instruction = render(template, &fills)?;
        // Excluded items may take beams; asking for that many more keeps n for the answer.
        let beams = n + exclude.len().min(n);
        let generated =
            self.model
                .generate(&instruction, &self.trie, beams, beams, self.limits.source)?;
        Ok(generated
            .iter()
            .flat_map(|g| g.items.iter().map(|&i| ItemId(i as u32)))
            .filter(|i| !exclude.contains(i))
            .take(n)
            .collect())
    }
}

/// A matcher's recall at one depth over a sample of users.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Recall {
    pub depth: usize,
    /// Share of users whose held-out item is among the matcher's first `depth` items.
    pub value: f64,
    /// Standard error of that share over the users.
    pub std_error: f64,
}

/// How often `matcher` retrieves each user's held-out item of `fold`, asked as the server asks
/// it for a returning user who types nothing: the history before that item, that history
/// excluded. One retrieval of the deepest depth per user; recall at a shallower depth counts
/// its first items, so the depths of one matcher describe one ranking.
pub fn recall(
    matcher: &dyn Matcher,
    prepared: &Prepared,
    users: &[UserId],
    fold: instructrec_data::Fold,
    depths: &[usize],
    mut progress: impl FnMut(),
) -> anyhow::Result<Vec<Recall>> {
    let deepest = depths.iter().copied().max().unwrap_or(0);
    let mut found_at = Vec::with_capacity(users.len());
    for &user in users {
        let history: Vec<ItemId> = prepared
            .history_before(user, fold)
            .iter()
            .map(|i| i.item)
            .collect();
        let exclude: HashSet<ItemId> = history.iter().copied().collect();
        let query = MatchQuery {
            user: Some(user),
            history: &history,
            text: String::new(),
        };
        let held_out = prepared.held_out(user, fold);
        let items = matcher.retrieve(&query, deepest, &exclude)?;
        found_at.push(items.iter().position(|&i| i == held_out));
        progress();
    }
    let n = found_at.len().max(1) as f64;
    Ok(depths
        .iter()
        .map(|&depth| {
            let hits = found_at.iter().filter(|p| p.is_some_and(|p| p < depth));
            let value = hits.count() as f64 / n;
            Recall {
                depth,
                value,
                std_error: (value * (1.0 - value) / n).sqrt(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use instructrec_baselines::{TextInput, TextSource, TwoTowerConfig, WordHash};

    /// A tiny untrained two-tower model: the matcher's ranking, not the model's, is under test.
    fn tiny_two_tower(prepared: &Prepared) -> TwoTower {
        let text = TextSource::Trained {
            buckets: 64,
            dim: 8,
            words: WordHash::Fnv1a64,
        };
        let mut config = TwoTowerConfig::new(text, 5);
        config.sequence.dim = 8;
        config.sequence.ff_dim = 8;
        config.sequence.max_len = 6;
        TwoTower::new(config, prepared, TextInput::default()).unwrap()
    }

    /// Finds the held-out item of every other user, second in its list.
    struct EveryOther<'a>(&'a Prepared);

    impl Matcher for EveryOther<'_> {
        fn name(&self) -> String {
            "every-other".into()
        }

        fn retrieve(
            &self,
            query: &MatchQuery<'_>,
            n: usize,
            exclude: &HashSet<ItemId>,
        ) -> anyhow::Result<Vec<ItemId>> {
            let user = query.user.unwrap();
            assert_eq!(
                query.history,
                self.0
                    .history_before(user, instructrec_data::Fold::Test)
                    .iter()
                    .map(|i| i.item)
                    .collect::<Vec<_>>()
            );
            assert!(query.history.iter().all(|i| exclude.contains(i)));
            let held_out = self.0.held_out(user, instructrec_data::Fold::Test);
            let other = ItemId(u32::from(held_out.0 == 0));
            let list = if user.0.is_multiple_of(2) {
                vec![other, held_out]
            } else {
                vec![other]
            };
            Ok(list.into_iter().take(n).collect())
        }
    }

    #[test]
    fn recall_counts_held_out_items_within_each_depth() {
        let prepared = instructrec_eval::synthetic::prepared(30, 120, 1);
        let users: Vec<UserId> = (0..20).map(UserId).collect();
        let mut calls = 0;
        let r = recall(
            &EveryOther(&prepared),
            &prepared,
            &users,
            instructrec_data::Fold::Test,
            &[1, 2, 10],
            || calls += 1,
        )
        .unwrap();
        assert_eq!(calls, 20);
        assert_eq!(r[0].value, 0.0);
        assert_eq!((r[1].value, r[2].value), (0.5, 0.5));
        assert!((r[1].std_error - (0.25f64 / 20.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn two_tower_retrieves_the_models_full_ranking_and_hands_text_only_requests_to_bm25() {
        let prepared = instructrec_eval::synthetic::prepared(30, 120, 1);
        let m = TwoTowerMatcher::new(tiny_two_tower(&prepared), &prepared).unwrap();
        let user = UserId(3);
        let history: Vec<ItemId> = prepared.dataset.sequences[user.index()]
            .iter()
            .map(|i| i.item)
            .collect();
        let exclude: HashSet<ItemId> = history.iter().copied().collect();
        let q = MatchQuery {
            user: Some(user),
            history: &history,
            text: "a puzzle for a rainy day".into(),
        };
        assert_eq!(m.name_for(&q), "two-tower");
        let got = m.retrieve(&q, 15, &exclude).unwrap();
        // The scorer's own full ranking (as `eval` measures recall), owned items left out.
        let case = Case {
            user,
            history: history.clone(),
            query: None,
            context: None,
        };
        let model = tiny_two_tower(&prepared);
        let scores = model.score_all(&[&case]).unwrap().unwrap().pop().unwrap();
        let mut ranking: Vec<ItemId> = (0..scores.len() as u32)
            .map(ItemId)
            .filter(|i| !exclude.contains(i))
            .collect();
        ranking.sort_by(|a, b| scores[b.index()].total_cmp(&scores[a.index()]));
        assert_eq!(got, ranking[..15]);

        // A visitor with the same history: no id embedding, so another ranking, same rules.
        let visitor = MatchQuery { user: None, ..q };
        let got = m.retrieve(&visitor, 15, &exclude).unwrap();
        assert_eq!(got.len(), 15);
        assert!(got.iter().all(|i| !exclude.contains(i)));
        assert_ne!(got, ranking[..15]);

        // Text alone gives the model nothing to read: BM25 answers, and is named.
        let text_only = MatchQuery {
            user: None,
            history: &[],
            text: "puzzle".into(),
        };
        assert_eq!(m.name_for(&text_only), "bm25");
        let bm25 = Bm25Matcher::fit(&prepared);
        let none = HashSet::new();
        assert_eq!(
            m.retrieve(&text_only, 10, &none).unwrap(),
            bm25.retrieve(&text_only, 10, &none).unwrap()
        );
    }

    #[test]
    fn generation_returns_catalogue_items_outside_the_exclusions_and_needs_a_need() {
        let prepared = instructrec_eval::synthetic::prepared(30, 120, 1);
        let tokenizer = tokenizers::Tokenizer::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../instructrec-model/tests/fixtures/t5-relu-tied/tokenizer.json"
        ))
        .unwrap();
        let config = instructrec_model::T5Config::preset(instructrec_model::Preset::Tiny);
        let model =
            Seq2Seq::new_random(&config, tokenizer, &instructrec_model::Device::Cpu, 3).unwrap();
        let limits = TokenLimits {
            source: 256,
            target: 32,
        };
        let m = GenerationMatcher::new(model, &prepared, TemplateLibrary::builtin(), 40, limits)
            .unwrap();
        let history = [ItemId(0), ItemId(1), ItemId(2)];
        let q = MatchQuery {
            user: None,
            history: &history,
            text: "a puzzle for a rainy day".into(),
        };
        let exclude: HashSet<ItemId> = history.into_iter().collect();
        let got = m.retrieve(&q, 5, &exclude).unwrap();
        assert!(!got.is_empty() && got.len() <= 5, "{got:?}");
        let catalogue = prepared.dataset.items.len();
        assert!(got
            .iter()
            .all(|i| i.index() < catalogue && !exclude.contains(i)));
        assert_eq!(m.retrieve(&q, 5, &exclude).unwrap(), got, "deterministic");
        let nothing = MatchQuery {
            user: None,
            history: &[],
            text: " ".into(),
        };
        let e = m.retrieve(&nothing, 5, &HashSet::new()).unwrap_err();
        assert!(e.to_string().contains("give a history or a text"), "{e}");
    }

    #[test]
    fn retrieves_matching_items_first_and_skips_excluded() {
        let prepared = instructrec_eval::synthetic::prepared(30, 120, 1);
        let m = Bm25Matcher::fit(&prepared);
        let q = MatchQuery {
            user: None,
            history: &[],
            text: "puzzle".into(),
        };
        let exclude: HashSet<ItemId> = [ItemId(1)].into_iter().collect();
        let got = m.retrieve(&q, 10, &exclude).unwrap();
        assert_eq!(got.len(), 10);
        for i in &got {
            assert!(
                prepared.dataset.items[i.index()]
                    .title
                    .starts_with("Puzzle"),
                "{i:?}"
            );
            assert_ne!(*i, ItemId(1));
        }
        // The request's text outweighs the history's titles.
        let racing: Vec<ItemId> = (0..40).step_by(4).map(ItemId).collect();
        assert!(prepared.dataset.items[0].title.starts_with("Racing"));
        let with_history = MatchQuery {
            history: &racing,
            ..q.clone()
        };
        for i in m.retrieve(&with_history, 10, &exclude).unwrap() {
            assert!(
                prepared.dataset.items[i.index()]
                    .title
                    .starts_with("Puzzle"),
                "{i:?}"
            );
        }
        let history_only = MatchQuery {
            history: &racing,
            text: String::new(),
            user: None,
        };
        let got = m.retrieve(&history_only, 5, &HashSet::new()).unwrap();
        assert!(got.iter().all(|i| prepared.dataset.items[i.index()]
            .title
            .starts_with("Racing")));
        // No shared word: the most popular items, still n of them.
        let q = MatchQuery {
            text: "zzzz".into(),
            ..q
        };
        assert_eq!(m.retrieve(&q, 5, &HashSet::new()).unwrap().len(), 5);
    }
}
