//! The matching stage: retrieves candidates from the whole catalogue for the reranker. BM25
//! over item text is used when no two-tower model is trained; a learned matcher implements the
//! same trait.

use std::collections::HashSet;

use instructrec_baselines::{Bm25, Bm25Config, Popularity};
use instructrec_data::{ItemId, Prepared, UserId};
use instructrec_eval::{Case, Scorer};

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

    /// Up to `n` items, best first, none of them in `exclude`.
    fn retrieve(
        &self,
        query: &MatchQuery<'_>,
        n: usize,
        exclude: &HashSet<ItemId>,
    ) -> anyhow::Result<Vec<ItemId>>;
}

/// BM25 over title, categories and brand. The query is the request's text when it has one, else
/// the recent history titles: long titles would outweigh a short need ("a scary game" matched
/// consoles from a user's history), and the reranker sees the history anyway. Items BM25
/// cannot tell apart (no shared word) are ordered by popularity, so a request whose words match
/// nothing still gets the catalogue's best sellers.
pub struct Bm25Matcher {
    bm25: Bm25,
    popularity: Popularity,
}

impl Bm25Matcher {
    pub fn fit(prepared: &Prepared) -> Self {
        Self {
            bm25: Bm25::fit(prepared, Bm25Config::default()),
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
        let mut ids: Vec<u32> = (0..text.len() as u32)
            .filter(|i| !exclude.contains(&ItemId(*i)))
            .collect();
        let order = |a: &u32, b: &u32| {
            let (a, b) = (*a as usize, *b as usize);
            text[b]
                .total_cmp(&text[a])
                .then(popular[b].total_cmp(&popular[a]))
                .then(a.cmp(&b))
        };
        if n < ids.len() {
            ids.select_nth_unstable_by(n, order);
            ids.truncate(n);
        }
        ids.sort_unstable_by(order);
        Ok(ids.into_iter().map(ItemId).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
