//! The interface every model is evaluated through: ours, each baseline, and later ones (DSSM,
//! TEM, two-tower) alike.

use instructrec_data::{ItemId, UserId};

/// What a model may know when it ranks: who asks, what they did before (oldest first), for
/// search protocols the query, and the situation of the request (its time, as the instruction
/// builder words it). The held-out item is deliberately not part of it, so no scorer can peek
/// at the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub user: UserId,
    /// Every interaction before the held-out item, uncapped; each scorer truncates as it needs.
    pub history: Vec<ItemId>,
    pub query: Option<String>,
    /// "Context: it is a Monday morning in May 2014.", when the data have timestamps.
    pub context: Option<String>,
}

/// One scoring request: a case and the items to score for it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub case: &'a Case,
    pub candidates: &'a [ItemId],
}

/// Scores items for a case; higher is better. Scores are compared only within one request.
pub trait Scorer: Send + Sync {
    /// Name shown in reports ("sasrec", "bm25").
    fn name(&self) -> String;

    /// One score per candidate, in the candidates' order.
    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>>;

    /// Many requests at once; models that batch (neural ones) override this.
    fn score_batch(&self, requests: &[Request<'_>]) -> anyhow::Result<Vec<Vec<f32>>> {
        requests
            .iter()
            .map(|r| self.score(r.case, r.candidates))
            .collect()
    }

    /// One score per catalogue item (indexed by [`ItemId::index`]) for each case, for full-ranking
    /// evaluation; `None` when the model cannot score the whole catalogue.
    fn score_all(&self, _cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        None
    }
}
