//! The matching-then-reranking pipeline behind every front end: a request is resolved against
//! the catalogue, mapped to a template and filled; candidates come from the request or the
//! matching stage; the tuned model scores each candidate's title under the instruction.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use instructrec_data::{Item, ItemId, Prepared, UserId};
use instructrec_instructions::rerank::choose_form;
use instructrec_instructions::rerank::deal;
use instructrec_instructions::{fit_history, IntentionKind, PreferenceKind, TokenCounter};
use instructrec_instructions::{TaskForm, Template, TemplateLibrary};
use instructrec_model::{Placement, Seq2Seq, TokenLimits};
use serde::Serialize;

use crate::catalogue::{CatalogueText, Examples};
use crate::fill;
use crate::matcher::{
    Bm25Matcher, GenerationMatcher, MatchQuery, Matcher, Matching, TwoTowerMatcher,
};
use crate::request::{
    CandidateSource, IntentionStyle, ItemRef, Limits, RankedItem, RecommendRequest, RequestError,
    Response, ResponseTimings, ScoredGroup, StatedNeed, UserRef, DEFAULT_K,
};
use crate::sanitize::clean_text;
use crate::session::{SessionState, Sessions};
use instructrec_eval::experiment::Asking;
use instructrec_eval::standardised;
use instructrec_instructions::{Fills, ListedNames};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Options {
    pub limits: Limits,
    /// Candidates the matching stage retrieves when the request lists none.
    pub matched: usize,
    /// Candidates listed in one instruction: the length of the lists the model was tuned on.
    /// Longer lists are scored in several groups, each under its own instruction.
    pub group_size: usize,
    /// Token budget of the shown history (the builder's default).
    pub history_budget: usize,
    /// Category labels shown after each title in a candidate list: the number the model's
    /// instructions were built with (`instructions build --candidate-labels`).
    pub candidate_labels: usize,
    pub source_tokens: usize,
    pub target_tokens: usize,
    pub sessions: usize,
    pub session_ttl_s: u64,
    /// The matching stage: BM25, the model generating catalogue titles, or a two-tower model.
    pub matching: Matching,
    /// The saved two-tower model (`eval --save-two-tower`) that [`Matching::TwoTower`] loads.
    pub two_tower: Option<PathBuf>,
    /// Where the model runs, and the precision of its weights.
    pub placement: Placement,
    /// Also ask each need without the list (the scenario's matching template, T2), and rank by
    /// both forms: each one's mean log-likelihoods standardised over the scored candidates,
    /// then summed (evaluation chose this on the validation fold for the search needs).
    pub with_matching: bool,
}

impl Options {
    /// The instruction and answer lengths the model reads, as one value.
    pub fn token_limits(&self) -> TokenLimits {
        TokenLimits {
            source: self.source_tokens,
            target: self.target_tokens,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        let tokens = TokenLimits::default();
        Self {
            limits: Limits::default(),
            matched: 20,
            group_size: 10,
            history_budget: 200,
            candidate_labels: 0,
            source_tokens: tokens.source,
            target_tokens: tokens.target,
            sessions: 10_000,
            session_ttl_s: 30 * 60,
            matching: Matching::Bm25,
            two_tower: None,
            placement: Placement::default(),
            with_matching: false,
        }
    }
}

/// Counts tokens with the model's own tokenizer, for the history budget.
struct ModelTokens<'a>(&'a Seq2Seq);

impl TokenCounter for ModelTokens<'_> {
    fn count(&self, text: &str) -> usize {
        self.0
            .tokenize(text, false, usize::MAX)
            .map(|ids| ids.len())
            .unwrap_or_else(|_| text.split_whitespace().count())
    }
}

/// A request resolved against the catalogue and merged with its session.
#[derive(Debug, Clone)]
struct Need {
    user: Option<UserId>,
    history: Vec<ItemId>,
    preference: Option<String>,
    /// The stated needs behind `intention`, oldest first (one, except for follow-ups).
    intentions: Vec<(IntentionKind, String)>,
    /// `intentions` joined: the need the instruction states.
    intention: Option<(IntentionKind, String)>,
    context: Option<String>,
    listed: Option<Vec<ItemId>>,
    k: usize,
}

pub struct Recommender {
    prepared: Prepared,
    model: Seq2Seq,
    matcher: Box<dyn Matcher>,
    library: TemplateLibrary,
    options: Options,
    item_by_original: HashMap<String, ItemId>,
    item_by_title: HashMap<String, ItemId>,
    user_by_original: HashMap<String, UserId>,
    /// Lower-cased category labels: a query made only of these is a specific (I2) query.
    categories: HashSet<String>,
    /// How a candidate list names each item, as the model's instructions named them.
    listed: ListedNames,
    sessions: Sessions,
    /// The catalogue's words: search, explanations, examples.
    catalogue: CatalogueText,
    examples: Examples,
}

/// What the model scored for one request.
struct Scored {
    /// (ranking key, summed log-likelihood) of each candidate's title: the key is the mean
    /// log-likelihood, or with the matching form the sum of both forms' standardised means.
    scores: Vec<(f32, f32)>,
    /// The instruction without the list that every title was also scored under, if any.
    matching_instruction: Option<String>,
    /// The group of each candidate.
    group_of: Vec<usize>,
    groups: Vec<ScoredGroup>,
    /// History items the instructions show.
    history_shown: usize,
}

impl Recommender {
    /// Loads a model checkpoint (Hugging Face layout) and a prepared dataset; `options.matching`
    /// says which matching stage retrieves candidates.
    pub fn load(model_dir: &Path, data_dir: &Path, options: Options) -> anyhow::Result<Self> {
        // Before the slow loads: a missing or unused directory is a mistake in the command.
        match (options.matching, &options.two_tower) {
            (Matching::TwoTower, None) => anyhow::bail!(
                "--matcher two-tower needs the saved model: give --two-tower DIR (a directory \
                 written by `instructrec eval --save-two-tower DIR`)"
            ),
            (Matching::Bm25 | Matching::Generation, Some(dir)) => anyhow::bail!(
                "--two-tower {} is read only by --matcher two-tower",
                dir.display()
            ),
            _ => {}
        }
        if options.matched == 0 {
            anyhow::bail!("--matched 0 gives the reranker nothing to rank: give 1 or more");
        }
        let prepared = Prepared::load(data_dir)
            .with_context(|| format!("loading the prepared dataset {}", data_dir.display()))?;
        let load = || {
            Seq2Seq::load_on(model_dir, options.placement)
                .with_context(|| format!("loading the model {}", model_dir.display()))
        };
        let model = load()?;
        let matcher: Box<dyn Matcher> = match options.matching {
            Matching::Bm25 => Box::new(Bm25Matcher::fit(&prepared)),
            // A copy of its own: the model type holds no shared handle to lend.
            Matching::Generation => Box::new(GenerationMatcher::new(
                load()?,
                &prepared,
                TemplateLibrary::builtin(),
                options.history_budget,
                options.token_limits(),
            )?),
            Matching::TwoTower => {
                let dir = options.two_tower.as_deref().expect("checked above");
                let matcher = TwoTowerMatcher::load(dir, &prepared)
                    .with_context(|| format!("loading the two-tower matcher {}", dir.display()))?;
                Box::new(matcher)
            }
        };
        Ok(Self::new(
            prepared,
            model,
            matcher,
            TemplateLibrary::builtin(),
            options,
        ))
    }

    pub fn new(
        prepared: Prepared,
        model: Seq2Seq,
        matcher: Box<dyn Matcher>,
        library: TemplateLibrary,
        options: Options,
    ) -> Self {
        let items = &prepared.dataset.items;
        let item_by_original = items
            .iter()
            .map(|i| (i.original_id.clone(), i.id))
            .collect();
        let mut item_by_title = HashMap::new();
        for i in items {
            // Titles repeat across editions; the first (lowest id) one answers for the title.
            item_by_title.entry(i.title.to_lowercase()).or_insert(i.id);
        }
        let user_by_original = prepared
            .dataset
            .users
            .iter()
            .map(|u| (u.original_id.clone(), u.id))
            .collect();
        let categories = items
            .iter()
            .flat_map(|i| i.categories.iter().map(|c| c.trim().to_lowercase()))
            .collect();
        let catalogue = CatalogueText::new(&prepared);
        let examples = catalogue.examples(&prepared);
        let listed = ListedNames::of(&prepared, options.candidate_labels);
        let sessions = Sessions::new(
            NonZeroUsize::new(options.sessions.max(1)).unwrap_or(NonZeroUsize::MIN),
            Duration::from_secs(options.session_ttl_s),
        );
        Self {
            item_by_original,
            item_by_title,
            user_by_original,
            categories,
            listed,
            sessions,
            catalogue,
            examples,
            prepared,
            model,
            matcher,
            library,
            options,
        }
    }

    /// Keeps sessions in `dir`, shared with every other server given the same directory
    /// (replicas behind a load balancer), instead of in this process.
    pub fn share_sessions(&mut self, dir: &std::path::Path) -> std::io::Result<()> {
        self.sessions = Sessions::in_directory(
            dir,
            NonZeroUsize::new(self.options.sessions.max(1)).unwrap_or(NonZeroUsize::MIN),
            Duration::from_secs(self.options.session_ttl_s),
        )?;
        Ok(())
    }

    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn limits(&self) -> Limits {
        self.options.limits
    }

    pub fn matcher_name(&self) -> String {
        self.matcher.name()
    }

    pub fn user_by_original(&self, id: &str) -> Option<UserId> {
        self.user_by_original.get(id).copied()
    }

    /// What a user did, oldest first: the whole sequence, capped like instruction histories.
    /// Serving recommends what comes after everything known, so no item is held out.
    pub fn user_history(&self, user: UserId) -> Vec<ItemId> {
        let seq = &self.prepared.dataset.sequences[user.index()];
        let cap = self.prepared.manifest.options.history_cap;
        seq[seq.len().saturating_sub(cap)..]
            .iter()
            .map(|x| x.item)
            .collect()
    }

    pub fn item(&self, id: ItemId) -> &Item {
        &self.prepared.dataset.items[id.index()]
    }

    /// Catalogue search for the page and `GET /v1/items`: items of which every query word
    /// starts a word of the title, categories or brand, best first (see
    /// [`CatalogueText::search`]). Not the matching stage: a search must find what was typed,
    /// not fill up with best sellers, and must not run the model.
    pub fn search_items(&self, q: &str, limit: usize) -> Vec<ItemId> {
        self.catalogue.search(q, limit)
    }

    /// Example requests and placeholders drawn from the loaded catalogue (`GET /v1/examples`).
    pub fn examples(&self) -> &Examples {
        &self.examples
    }

    /// Vague (I1) unless every part of the query (split at `,` `>` `/` `|` `;`) is a category
    /// label of the catalogue, like "Video Games, PC, Gaming Mice".
    pub fn intention_kind(&self, text: &str) -> IntentionKind {
        let mut parts = text
            .split([',', '>', '/', '|', ';'])
            .map(|p| p.trim().to_lowercase());
        let specific = parts.all(|p| !p.is_empty() && self.categories.contains(&p));
        if specific {
            IntentionKind::Specific
        } else {
            IntentionKind::Vague
        }
    }

    pub(crate) fn resolve_user(&self, user: &UserRef) -> Result<UserId, RequestError> {
        let users = &self.prepared.dataset.users;
        match user {
            UserRef::Id(i) if (*i as usize) < users.len() => Ok(UserId(*i)),
            UserRef::Id(i) => Err(RequestError::invalid(
                "user",
                format!(
                    "no user with id {i} (ids run from 0 to {})",
                    users.len().saturating_sub(1)
                ),
            )),
            UserRef::Name(name) => self
                .user_by_original
                .get(name.trim())
                .copied()
                .ok_or_else(|| RequestError::invalid("user", format!("no user `{name}`"))),
        }
    }

    pub(crate) fn resolve_item(&self, field: &str, item: &ItemRef) -> Result<ItemId, RequestError> {
        let n = self.prepared.dataset.items.len();
        match item {
            ItemRef::Id(i) if (*i as usize) < n => Ok(ItemId(*i)),
            ItemRef::Id(i) => Err(RequestError::invalid(
                field,
                format!(
                    "no item with id {i} (ids run from 0 to {})",
                    n.saturating_sub(1)
                ),
            )),
            ItemRef::Name(name) => {
                let name = name.trim();
                self.item_by_original
                    .get(name)
                    .or_else(|| self.item_by_title.get(&name.to_lowercase()))
                    .copied()
                    .ok_or_else(|| {
                        RequestError::invalid(field, format!("no item with id or title `{name}`"))
                    })
            }
        }
    }

    fn resolve_items(
        &self,
        field: &str,
        items: &[ItemRef],
        max: usize,
    ) -> Result<Vec<ItemId>, RequestError> {
        if items.len() > max {
            return Err(RequestError::invalid(
                field,
                format!("{} items, more than the limit of {max}", items.len()),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, x)| self.resolve_item(&format!("{field}[{i}]"), x))
            .collect()
    }

    /// A free-text field as the instruction will show it: control and bidi formatting
    /// characters dropped, whitespace folded into single spaces (see [`clean_text`]); `None`
    /// when absent, an error when nothing is left or it is too long.
    fn text(&self, field: &str, value: &Option<String>) -> Result<Option<String>, RequestError> {
        let Some(v) = value else { return Ok(None) };
        let v = clean_text(v);
        if v.is_empty() {
            return Err(RequestError::invalid(
                field,
                "is empty; leave it out instead",
            ));
        }
        let max = self.options.limits.max_text_chars;
        if v.chars().count() > max {
            return Err(RequestError::invalid(
                field,
                format!(
                    "{} characters, more than the limit of {max}",
                    v.chars().count()
                ),
            ));
        }
        Ok(Some(v))
    }

    /// Resolves and checks every field, then merges a follow-up with its session.
    fn need(
        &self,
        req: &RecommendRequest,
        previous: Option<&SessionState>,
    ) -> Result<Need, RequestError> {
        let limits = self.options.limits;
        let k = req.k.unwrap_or(DEFAULT_K);
        if k == 0 || k > limits.max_k {
            return Err(RequestError::invalid(
                "k",
                format!("{k} is out of range: it must be from 1 to {}", limits.max_k),
            ));
        }
        let user = req
            .user
            .as_ref()
            .map(|u| self.resolve_user(u))
            .transpose()?;
        let history = match (&req.history, user) {
            (Some(h), _) => Some(self.resolve_items("history", h, limits.max_history)?),
            (None, Some(u)) => Some(self.user_history(u)),
            (None, None) => None,
        };
        let listed = req
            .candidates
            .as_ref()
            .map(|c| -> Result<Vec<ItemId>, RequestError> {
                let ids = self.resolve_items("candidates", c, limits.max_candidates)?;
                if ids.is_empty() {
                    return Err(RequestError::invalid(
                        "candidates",
                        "is empty; leave it out to let the matching stage retrieve candidates",
                    ));
                }
                let mut seen = HashSet::new();
                Ok(ids.into_iter().filter(|i| seen.insert(*i)).collect())
            })
            .transpose()?;
        let preference = self.text("preference", &req.preference)?;
        let context = self.text("context", &req.context)?;
        let intention = self.text("intention", &req.intention)?.map(|t| {
            let kind = match req.intention_style {
                Some(IntentionStyle::Vague) => IntentionKind::Vague,
                Some(IntentionStyle::Specific) => IntentionKind::Specific,
                None => self.intention_kind(&t),
            };
            (kind, t)
        });

        let Some(prev) = previous else {
            let intentions: Vec<_> = intention.into_iter().collect();
            let need = Need {
                user,
                history: history.unwrap_or_default(),
                preference,
                intention: join_intentions(&intentions),
                intentions,
                context,
                listed,
                k,
            };
            if need.history.is_empty() && need.preference.is_none() && need.intention.is_none() {
                return Err(RequestError::Empty);
            }
            return Ok(need);
        };
        if intention.is_none() && preference.is_none() && context.is_none() {
            return Err(RequestError::invalid(
                "refine",
                "a follow-up needs an intention, a preference or a context to refine with",
            ));
        }
        let mut intentions = prev.intentions.clone();
        intentions.extend(intention);
        let intentions = fit_intentions(intentions, limits.max_text_chars);
        Ok(Need {
            user: user.or(prev.user),
            history: history.unwrap_or_else(|| prev.history.clone()),
            preference: preference.or_else(|| prev.preference.clone()),
            intention: join_intentions(&intentions),
            intentions,
            context: context.or_else(|| prev.context.clone()),
            listed: listed.or_else(|| prev.listed.clone()),
            k,
        })
    }

    /// Answers one request. Never panics on request data; every refusal names its field.
    pub fn recommend(&self, req: &RecommendRequest) -> Result<Response, RequestError> {
        let started = Instant::now();
        // Only ids this server issued are accepted: a request naming any other id is refused,
        // so a client can neither pick an id (and wait for someone to use it) nor create one.
        let existing = match &req.session {
            Some(id) => Some(self.sessions.get(id).ok_or(RequestError::UnknownSession)?),
            None if req.refine => {
                return Err(RequestError::missing(
                    "session",
                    "required when `refine` is true (use the session of the answer to refine)",
                ))
            }
            None => None,
        };
        // Without `refine`, a request in a known session starts its need over.
        let previous = existing.filter(|_| req.refine);
        let need = self.need(req, previous.as_ref())?;

        // An explicit taste is what the user says now, so it outranks the history in the
        // instruction (templates show one kind of preference); the history still steers the
        // matching stage and keeps owned items out of the answer.
        let preference = if need.preference.is_some() {
            PreferenceKind::Explicit
        } else if !need.history.is_empty() {
            PreferenceKind::Implicit
        } else {
            PreferenceKind::None
        };
        let intention = need
            .intention
            .as_ref()
            .map_or(IntentionKind::None, |(k, _)| *k);
        let template = fill::choose(&self.library, preference, intention).ok_or_else(|| {
            RequestError::invalid(
                "intention",
                format!("no template for {preference} {intention}: say what you want"),
            )
        })?;

        let match_started = Instant::now();
        let (candidates, source, matched, matcher) = match &need.listed {
            Some(list) => (list.clone(), CandidateSource::Request, 0, None),
            None => {
                let owned: HashSet<ItemId> = need.history.iter().copied().collect();
                // The context describes the situation, not products, so it stays out.
                let text = [
                    need.preference.as_deref(),
                    need.intention.as_ref().map(|(_, t)| t.as_str()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
                let query = MatchQuery {
                    user: need.user,
                    history: &need.history,
                    text,
                };
                let fresh = self
                    .matcher
                    .retrieve(&query, self.options.matched, &owned)
                    .map_err(|e| RequestError::Model(format!("matching stage: {e:#}")))?;
                let matched = fresh.len();
                let matcher = Some(self.matcher.name_for(&query));
                match &previous {
                    Some(prev) => {
                        let mut seen = HashSet::new();
                        let merged = prev
                            .answer
                            .iter()
                            .chain(&fresh)
                            .copied()
                            .filter(|i| !owned.contains(i) && seen.insert(*i))
                            .collect();
                        (
                            merged,
                            CandidateSource::PreviousAndMatched,
                            matched,
                            matcher,
                        )
                    }
                    None => (fresh, CandidateSource::Matched, matched, matcher),
                }
            }
        };
        let match_ms = ms(match_started.elapsed());

        let score_started = Instant::now();
        let matching = self
            .options
            .with_matching
            .then(|| choose_form(&self.library, TaskForm::Matching, preference, intention))
            .flatten();
        let Scored {
            scores: scored,
            matching_instruction,
            group_of,
            groups,
            history_shown,
        } = self.score((template, matching), &need, &candidates)?;
        let score_ms = ms(score_started.elapsed());
        let relevance = softmax(scored.iter().map(|s| s.0));
        // The words the explanations look for: what the user asked for and said they like.
        let request_text = [
            need.intention.as_ref().map(|(_, t)| t.as_str()),
            need.preference.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");

        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| {
            scored[b]
                .0
                .total_cmp(&scored[a].0)
                .then(scored[b].1.total_cmp(&scored[a].1))
                .then(a.cmp(&b))
        });
        let items: Vec<RankedItem> = order
            .iter()
            .take(need.k)
            .enumerate()
            .map(|(rank, &i)| {
                let item = self.item(candidates[i]);
                RankedItem {
                    rank: rank + 1,
                    item_id: item.id.0,
                    original_id: item.original_id.clone(),
                    title: item.title.clone(),
                    categories: item.categories.clone(),
                    brand: item.brand.clone(),
                    score: scored[i].0,
                    log_likelihood: scored[i].1,
                    relevance: relevance[i],
                    group: group_of[i],
                    why: self
                        .catalogue
                        .explain(candidates[i], &request_text, &need.history),
                }
            })
            .collect();

        let keep = need.k.max(self.options.group_size);
        let state = SessionState {
            user: need.user,
            history: need.history.clone(),
            preference: need.preference.clone(),
            intentions: need.intentions.clone(),
            context: need.context.clone(),
            listed: need.listed.clone(),
            answer: order.iter().take(keep).map(|&i| candidates[i]).collect(),
        };
        let session = match &req.session {
            // Expired or pushed out since the lookup: it stays gone (only `create` adds
            // sessions), and this answer is still given.
            Some(id) => {
                self.sessions.update(id, state);
                id.clone()
            }
            None => self
                .sessions
                .create(state)
                .map_err(|e| RequestError::Model(format!("cannot start a session: {e}")))?,
        };
        let stated = StatedNeed {
            intention: need.intention.as_ref().map(|(_, t)| t.clone()),
            intention_style: need.intention.as_ref().map(|(k, _)| match k {
                IntentionKind::Specific => IntentionStyle::Specific,
                _ => IntentionStyle::Vague,
            }),
            preference: need.preference.clone(),
            context: need.context.clone(),
            history: need.history.iter().map(|i| i.0).collect(),
            history_in_instruction: history_shown,
        };
        Ok(Response {
            session,
            refined: previous.is_some(),
            template: template.id.clone(),
            scenario: format!(
                "{} {} {}",
                template.preference,
                template.intention,
                Asking {
                    task: TaskForm::Rerank,
                    with_matching: matching_instruction.is_some(),
                    shortlist: false,
                }
            ),
            matching_instruction,
            instruction: groups
                .first()
                .map(|g| g.instruction.clone())
                .unwrap_or_default(),
            groups,
            need: stated,
            items,
            candidate_source: source,
            matched,
            scored: candidates.len(),
            matcher,
            timings: ResponseTimings {
                match_ms,
                score_ms,
                total_ms: ms(started.elapsed()),
            },
        })
    }

    /// (ranking key, sum) log-likelihood of each candidate's title, with the groups they were
    /// scored in and each group's instruction. Candidates are dealt round-robin into groups of
    /// at most `group_size` so that every group mixes strong and weak matches; each group is one
    /// encoder pass and one batched decoder pass. With a `matching` template every title is also
    /// scored under that one instruction without the list, in batches of `group_size`.
    fn score(
        &self,
        (template, matching): (&Template, Option<&Template>),
        need: &Need,
        candidates: &[ItemId],
    ) -> Result<Scored, RequestError> {
        let titles: Vec<&str> = need
            .history
            .iter()
            .map(|i| self.item(*i).title.as_str())
            .collect();
        let kept = fit_history(
            &titles,
            self.options.history_budget,
            &ModelTokens(&self.model),
        );
        let shown_history = &titles[titles.len() - kept..];
        let context = need.context.as_ref().map(|c| {
            if c.to_lowercase().starts_with("context:") {
                c.clone()
            } else {
                format!("Context: {c}")
            }
        });
        let (vague, specific) = match &need.intention {
            Some((IntentionKind::Specific, t)) => (None, Some(t.as_str())),
            Some((_, t)) => (Some(t.as_str()), None),
            None => (None, None),
        };
        // Everything but the list: the matching form asks with exactly this.
        let need_fills = Fills {
            history: shown_history,
            explicit_preference: need.preference.as_deref(),
            vague_intention: vague,
            specific_intention: specific,
            context: context.as_deref(),
            ..Fills::default()
        };
        let limits = self.options.token_limits();
        let groups = deal(candidates.len(), self.options.group_size);
        let mut scores = vec![(f32::NEG_INFINITY, f32::NEG_INFINITY); candidates.len()];
        let mut group_of = vec![0; candidates.len()];
        let mut scored_groups = Vec::with_capacity(groups.len());
        for (g, members) in groups.into_iter().enumerate() {
            let group_titles: Vec<&str> = members
                .iter()
                .map(|&i| self.item(candidates[i]).title.as_str())
                .collect();
            let group_listed: Vec<&str> = members
                .iter()
                .map(|&i| self.listed.get(candidates[i]))
                .collect();
            let fills = Fills {
                candidates: &group_listed,
                ..need_fills
            };
            let instruction =
                fill::render(template, &fills).map_err(|e| RequestError::Model(e.to_string()))?;
            if !group_titles.is_empty() {
                let s = self
                    .model
                    .score(&instruction, &group_titles, limits)
                    .map_err(|e| RequestError::Model(e.to_string()))?;
                for (&i, c) in members.iter().zip(s) {
                    scores[i] = (c.mean, c.sum);
                }
            }
            for &i in &members {
                group_of[i] = g;
            }
            scored_groups.push(ScoredGroup {
                instruction,
                item_ids: members.iter().map(|&i| candidates[i].0).collect(),
            });
        }
        let matching_instruction = match matching {
            Some(matching) if !candidates.is_empty() => {
                let instruction = fill::render(matching, &need_fills)
                    .map_err(|e| RequestError::Model(e.to_string()))?;
                let mut without_list = Vec::with_capacity(candidates.len());
                for chunk in candidates.chunks(self.options.group_size.max(1)) {
                    let titles: Vec<&str> =
                        chunk.iter().map(|&i| self.item(i).title.as_str()).collect();
                    let s = self
                        .model
                        .score(&instruction, &titles, limits)
                        .map_err(|e| RequestError::Model(e.to_string()))?;
                    without_list.extend(s.iter().map(|c| c.mean));
                }
                let listed = standardised(scores.iter().map(|s| s.0).collect());
                for ((s, a), b) in scores
                    .iter_mut()
                    .zip(listed)
                    .zip(standardised(without_list))
                {
                    s.0 = a + b;
                }
                Some(instruction)
            }
            _ => None,
        };
        Ok(Scored {
            scores,
            matching_instruction,
            group_of,
            groups: scored_groups,
            history_shown: kept,
        })
    }
}

/// The stated needs of a session joined as follow-ups combine them, oldest first: two category
/// queries with ", " (still a category query), anything else as "previous. new" (a vague need).
fn join_intentions(parts: &[(IntentionKind, String)]) -> Option<(IntentionKind, String)> {
    parts
        .iter()
        .cloned()
        .reduce(|(ka, a), (kb, b)| match (ka, kb) {
            (IntentionKind::Specific, IntentionKind::Specific) => {
                (IntentionKind::Specific, format!("{a}, {b}"))
            }
            _ => (
                IntentionKind::Vague,
                format!("{}. {b}", a.trim_end_matches(['.', '!', '?', ' '])),
            ),
        })
}

/// Stated needs a session keeps at most (the first and the newest refinements): with the
/// character limit this bounds a session's size, however short each refinement.
const MAX_INTENTIONS: usize = 16;

/// The needs a follow-up keeps so that their joined text fits `max` characters, the limit of a
/// fresh request's field, and there are at most [`MAX_INTENTIONS`]. The first stated need is
/// what the conversation is about, so the oldest refinements after it go first; only when the
/// first need and the newest refinement alone are too long does the first go too. The newest
/// is always kept (each field is already within `max`).
fn fit_intentions(
    mut parts: Vec<(IntentionKind, String)>,
    max: usize,
) -> Vec<(IntentionKind, String)> {
    let too_long = |parts: &[(IntentionKind, String)]| {
        join_intentions(parts).is_some_and(|(_, t)| t.chars().count() > max)
    };
    while parts.len() > 1 && (parts.len() > MAX_INTENTIONS || too_long(&parts)) {
        parts.remove(if parts.len() > 2 { 1 } else { 0 });
    }
    parts
}

/// exp(x) / sum(exp(x)) over `xs`, computed from the largest so that nothing overflows; a
/// non-finite entry (a candidate never scored) gets 0.
fn softmax(xs: impl Iterator<Item = f32>) -> Vec<f32> {
    let xs: Vec<f32> = xs.collect();
    let max = xs
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![0.0; xs.len()];
    }
    let e: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x.is_finite() {
                f64::from(x - max).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|v| (v / total) as f32).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vague(t: &str) -> (IntentionKind, String) {
        (IntentionKind::Vague, t.to_string())
    }

    #[test]
    fn softmax_is_a_distribution_in_the_ranking_order() {
        let p = softmax([-0.5f32, -1.0, -3.0, f32::NEG_INFINITY].into_iter());
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{p:?}");
        assert!(p[0] > p[1] && p[1] > p[2] && p[3] == 0.0, "{p:?}");
        assert!(p.iter().all(|x| (0.0..=1.0).contains(x)));
        // Large magnitudes do not overflow.
        let p = softmax([-1000.0f32, -1001.0].into_iter());
        assert!((p[0] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6, "{p:?}");
        assert_eq!(softmax([f32::NEG_INFINITY].into_iter()), vec![0.0]);
    }

    #[test]
    fn refinements_are_capped_oldest_first_keeping_the_first_need() {
        let mut parts = vec![vague("a racing game")];
        for i in 0..40 {
            parts.push(vague(&format!("refinement number {i} with some words")));
            parts = fit_intentions(parts, 120);
            let (_, joined) = join_intentions(&parts).unwrap();
            assert!(joined.chars().count() <= 120, "{joined}");
            assert!(joined.starts_with("a racing game. "), "{joined}");
            assert!(
                joined.ends_with(&format!("number {i} with some words")),
                "{joined}"
            );
        }
        // Many short refinements: at most MAX_INTENTIONS are kept, the first among them.
        let mut parts = vec![vague("first")];
        for i in 0..40 {
            parts.push(vague(&i.to_string()));
            parts = fit_intentions(parts, 500);
        }
        assert_eq!(parts.len(), MAX_INTENTIONS);
        assert_eq!((parts[0].1.as_str(), parts[1].1.as_str()), ("first", "25"));
        // A first need and a newest refinement that do not fit together: the newest stays.
        let long = "x".repeat(100);
        let parts = fit_intentions(vec![vague(&long), vague(&long)], 120);
        assert_eq!(parts, vec![vague(&long)]);
        // Category queries stay one category query.
        let s = |t: &str| (IntentionKind::Specific, t.to_string());
        assert_eq!(
            join_intentions(&[s("Video Games"), s("Racing")]),
            Some(s("Video Games, Racing"))
        );
        assert_eq!(
            join_intentions(&[s("Video Games"), vague("for two!")]),
            Some(vague("Video Games. for two!"))
        );
    }
}
