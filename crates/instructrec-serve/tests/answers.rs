//! What an answer tells a person beside the ranking: each scored group with the instruction
//! the model read for it (checked by scoring that text again), the normalised relevance, the
//! "why" of each item (checked against the catalogue), the catalogue search and the examples
//! drawn from the loaded catalogue.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use instructrec_model::TokenLimits;
use instructrec_serve::{ItemRef, RecommendRequest, Response, UserRef};
use serde_json::Value;

fn ask(rec: &instructrec_serve::Recommender, req: RecommendRequest) -> Response {
    rec.recommend(&req)
        .unwrap_or_else(|e| panic!("{req:?}: {e}"))
}

/// `item`'s score when the model reads its group's instruction again and scores the group's
/// titles in their listed order.
fn rescored(
    rec: &instructrec_serve::Recommender,
    model: &instructrec_model::Seq2Seq,
    answer: &Response,
    item: &instructrec_serve::RankedItem,
) -> instructrec_model::CandidateScore {
    let g = &answer.groups[item.group];
    let titles: Vec<String> = g
        .item_ids
        .iter()
        .map(|i| rec.item(instructrec_data::ItemId(*i)).title.clone())
        .collect();
    let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
    let at = g.item_ids.iter().position(|i| *i == item.item_id).unwrap();
    let mut scores = model
        .score(&g.instruction, &titles, TokenLimits::default())
        .unwrap();
    scores.swap_remove(at)
}

/// The synthetic catalogue's genre of item `i` (its second category).
fn genre(i: u32) -> &'static str {
    ["Racing", "Puzzle", "Shooter", "Strategy"][i as usize % 4]
}

/// Every group's instruction, scored again by the same model over the group's titles in the
/// listed order, gives the scores the answer reports: it is the text the model read.
#[test]
fn each_group_carries_the_instruction_its_candidates_were_scored_under() {
    let rec = common::recommender();
    let model = common::tiny_model();
    let title = |id: u32| rec.item(instructrec_data::ItemId(id)).title.clone();
    let cases = [
        RecommendRequest {
            user: Some(UserRef::Name("U3".into())),
            intention: Some("a racing game".into()),
            k: Some(20),
            ..Default::default()
        },
        RecommendRequest {
            intention: Some("Video Games, Puzzle".into()),
            candidates: Some((0..25).map(ItemRef::Id).collect()),
            k: Some(25),
            ..Default::default()
        },
    ];
    for req in cases {
        let answer = ask(&rec, req.clone());
        let groups = &answer.groups;
        let expected_groups = answer.scored.div_ceil(10);
        assert_eq!(groups.len(), expected_groups, "{req:?}");
        assert_eq!(answer.instruction, groups[0].instruction);
        let mut seen = HashSet::new();
        for g in groups {
            assert!(!g.item_ids.is_empty() && g.item_ids.len() <= 10);
            assert!(
                g.item_ids.iter().all(|i| seen.insert(*i)),
                "an item is in two groups"
            );
            for id in &g.item_ids {
                assert!(
                    g.instruction.contains(&title(*id)),
                    "{} lacks {}",
                    g.instruction,
                    title(*id)
                );
            }
        }
        assert_eq!(seen.len(), answer.scored);
        for item in &answer.items {
            let g = &groups[item.group];
            let at = g
                .item_ids
                .iter()
                .position(|i| *i == item.item_id)
                .expect("in its group");
            let titles: Vec<String> = g.item_ids.iter().map(|i| title(*i)).collect();
            let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
            let again = model
                .score(&g.instruction, &titles, TokenLimits::default())
                .unwrap();
            assert!(
                (again[at].mean - item.score).abs() < 1e-5
                    && (again[at].sum - item.log_likelihood).abs() < 1e-4,
                "{}: scored {} / {} under its group's instruction, reported {} / {}",
                item.title,
                again[at].mean,
                again[at].sum,
                item.score,
                item.log_likelihood
            );
        }
    }
}

/// Asked with and without the list (`serve --with-t2`), each item's score is the sum of its two
/// standardised mean log-likelihoods, recomputed here from the instructions the answer reports;
/// the summed log-likelihood stays the listed form's.
#[test]
fn with_t2_each_score_sums_both_forms_standardised() {
    let options = instructrec_serve::Options {
        with_matching: true,
        ..Default::default()
    };
    let rec = common::recommender_with(instructrec_eval::synthetic::prepared(60, 150, 5), options);
    let plain = common::recommender();
    let model = common::tiny_model();
    let title = |id: u32| rec.item(instructrec_data::ItemId(id)).title.clone();
    let req = RecommendRequest {
        user: Some(UserRef::Name("U3".into())),
        intention: Some("a racing game".into()),
        candidates: Some((0..25).map(ItemRef::Id).collect()),
        k: Some(25),
        ..Default::default()
    };
    let answer = ask(&rec, req.clone());
    assert!(answer.scenario.ends_with("T3+T2"), "{}", answer.scenario);
    let without_list = answer
        .matching_instruction
        .clone()
        .expect("asked without the list");
    assert!(without_list.contains("a racing game"), "{without_list}");
    let before = ask(&plain, req);
    assert_eq!(before.matching_instruction, None);
    assert_eq!(
        before.groups, answer.groups,
        "the listed form asks as before"
    );
    // Both forms' means for every scored item, in the answer's item order.
    let mut listed = Vec::new();
    let mut unlisted = Vec::new();
    for item in &answer.items {
        let s = rescored(&rec, &model, &answer, item);
        assert!((s.sum - item.log_likelihood).abs() < 1e-4);
        listed.push(s.mean);
        let t = title(item.item_id);
        let u = model
            .score(&without_list, &[t.as_str()], TokenLimits::default())
            .unwrap();
        unlisted.push(u[0].mean);
    }
    assert_eq!(answer.items.len(), 25);
    let expected: Vec<f32> = instructrec_eval::standardised(listed)
        .into_iter()
        .zip(instructrec_eval::standardised(unlisted))
        .map(|(a, b)| a + b)
        .collect();
    for (item, e) in answer.items.iter().zip(&expected) {
        assert!(
            (item.score - e).abs() < 1e-3,
            "{}: {} against {e}",
            item.title,
            item.score
        );
    }
    assert!(answer.items.windows(2).all(|w| w[0].score >= w[1].score));
}

/// The relevance is a softmax of the ranking key over every scored candidate: in [0, 1], in
/// rank order, ratios of exp(score differences), summing to 1 over the scored candidates.
#[test]
fn relevance_is_a_softmax_over_the_scored_candidates() {
    let rec = common::recommender();
    let all = ask(
        &rec,
        RecommendRequest {
            intention: Some("a puzzle game".into()),
            candidates: Some((30..45).map(ItemRef::Id).collect()),
            k: Some(15),
            ..Default::default()
        },
    );
    let total: f32 = all.items.iter().map(|i| i.relevance).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    for w in all.items.windows(2) {
        assert!(w[0].relevance >= w[1].relevance);
        let ratio = (w[0].relevance / w[1].relevance) as f64;
        let expected = ((w[0].score - w[1].score) as f64).exp();
        assert!(
            (ratio - expected).abs() < 1e-3 * expected,
            "{ratio} vs {expected}"
        );
    }
    assert!(all.items.iter().all(|i| (0.0..=1.0).contains(&i.relevance)));
    // A shorter list keeps the shares of the whole scored set.
    let top = ask(
        &rec,
        RecommendRequest {
            intention: Some("a puzzle game".into()),
            candidates: Some((30..45).map(ItemRef::Id).collect()),
            k: Some(3),
            ..Default::default()
        },
    );
    for (a, b) in top.items.iter().zip(&all.items) {
        assert_eq!(a.item_id, b.item_id);
        assert!((a.relevance - b.relevance).abs() < 1e-6);
    }
}

/// The "why" names only what is true: request words that are in the item's text (never the
/// catalogue-wide "game"), and history items that share the item's uncommon categories (never
/// the root "Video Games").
#[test]
fn why_names_what_the_item_shares_with_the_request_and_the_history() {
    let rec = common::recommender();
    // Racing items: 0, 4, 8, ...; Puzzle: 1, 5, 9, ...
    let history = [8u32, 12, 5];
    let answer = ask(
        &rec,
        RecommendRequest {
            history: Some(history.iter().map(|i| ItemRef::Id(*i)).collect()),
            intention: Some("a racing game".into()),
            candidates: Some(
                [16u32, 21, 22, 40]
                    .iter()
                    .map(|i| ItemRef::Id(*i))
                    .collect(),
            ),
            k: Some(4),
            ..Default::default()
        },
    );
    for item in &answer.items {
        let why = &item.why;
        let racing = genre(item.item_id) == "Racing";
        assert_eq!(
            why.request_words,
            if racing {
                vec!["racing".to_string()]
            } else {
                vec![]
            },
            "{item:?}"
        );
        let sharing: Vec<u32> = history
            .iter()
            .rev()
            .copied()
            .filter(|h| genre(*h) == genre(item.item_id))
            .collect();
        assert_eq!(why.history_matches, sharing.len(), "{item:?}");
        let linked: Vec<u32> = why.history.iter().map(|l| l.item_id).collect();
        assert_eq!(linked, sharing, "most recent first among equals: {item:?}");
        for link in &why.history {
            assert_eq!(
                link.shared_categories,
                vec![genre(item.item_id).to_string()]
            );
            assert!(!link.shared_categories.iter().any(|c| c == "Video Games"));
        }
        assert!(
            !why.summary.contains("\u{201c}game\u{201d}"),
            "{}",
            why.summary
        );
        match (racing, sharing.is_empty()) {
            (true, false) => {
                assert!(
                    why.summary
                        .contains("\u{201c}racing\u{201d} from your request"),
                    "{}",
                    why.summary
                );
                assert!(
                    why.summary.starts_with("Has \u{201c}racing\u{201d}"),
                    "{}",
                    why.summary
                );
                assert!(why.summary.contains("; shares \u{201c}Racing\u{201d} with 2 items from your history, latest \u{201c}Racing game number 12\u{201d}"), "{}", why.summary);
            }
            (false, false) => {
                assert_eq!(why.summary, "Shares \u{201c}Puzzle\u{201d} with \u{201c}Puzzle game number 5\u{201d} from your history");
            }
            (_, true) => assert!(
                why.summary.contains("model's score alone"),
                "{}",
                why.summary
            ),
        }
    }
    // A stated taste counts as the request's words too.
    let answer = ask(
        &rec,
        RecommendRequest {
            preference: Some("I like strategy".into()),
            candidates: Some(vec![ItemRef::Id(3), ItemRef::Id(2)]),
            ..Default::default()
        },
    );
    let strategy = answer.items.iter().find(|i| i.item_id == 3).unwrap();
    assert_eq!(strategy.why.request_words, ["strategy"]);
    let shooter = answer.items.iter().find(|i| i.item_id == 2).unwrap();
    assert!(shooter.why.request_words.is_empty());
}

/// The answer states the need it is for, a follow-up's needs joined, so a client can ask again.
#[test]
fn the_answer_states_its_need() {
    let rec = common::recommender();
    let first = ask(
        &rec,
        RecommendRequest {
            user: Some(UserRef::Name("U3".into())),
            intention: Some("a racing game".into()),
            context: Some("on a train".into()),
            ..Default::default()
        },
    );
    assert_eq!(first.need.intention.as_deref(), Some("a racing game"));
    assert_eq!(first.need.context.as_deref(), Some("on a train"));
    assert!(!first.need.history.is_empty());
    assert!(first.need.history_in_instruction <= first.need.history.len());
    let second = ask(
        &rec,
        RecommendRequest {
            session: Some(first.session.clone()),
            refine: true,
            intention: Some("for two players".into()),
            history: Some(vec![ItemRef::Id(7)]),
            ..Default::default()
        },
    );
    assert_eq!(
        second.need.intention.as_deref(),
        Some("a racing game. for two players")
    );
    assert_eq!(second.need.history, [7]);
    assert_eq!(second.need.context.as_deref(), Some("on a train"));
}

async fn get(base: &str, path: &str) -> Value {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

fn titles(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

/// The catalogue search finds what was typed, half-typed words included, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_search_finds_what_was_typed() {
    let base = common::start_server().await;
    let found = titles(&get(&base, "/v1/items?q=puzz&limit=50").await);
    assert_eq!(found.len(), 38, "{found:?}");
    assert!(found.iter().all(|t| t.starts_with("Puzzle")), "{found:?}");
    let found = titles(&get(&base, "/v1/items?q=Puzzle%2013&limit=3").await);
    assert_eq!(found[0], "Puzzle game number 13", "{found:?}");
    assert!(
        found.iter().all(|t| t.starts_with("Puzzle game number 13")),
        "{found:?}"
    );
    // The whole query as typed, in a title, goes first.
    let found = titles(&get(&base, "/v1/items?q=game%20number%2010&limit=3").await);
    assert_eq!(found[0], "Shooter game number 10", "{found:?}");
    // Category and brand words count; stop words do not, unless they are all there is.
    let found = titles(&get(&base, "/v1/items?q=the%20strategy%20studio%203&limit=100").await);
    assert!(!found.is_empty());
    assert!(found.iter().all(|t| t.starts_with("Strategy")), "{found:?}");
    for q in ["zzzz", "the", "%21%21%21"] {
        let found = titles(&get(&base, &format!("/v1/items?q={q}")).await);
        assert!(found.is_empty(), "{q}: {found:?}");
    }
}

/// Examples and placeholders come from the loaded catalogue, and each example is a request
/// the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_come_from_the_catalogue_and_work() {
    let base = common::start_server().await;
    let examples = get(&base, "/v1/examples").await;
    let categories: Vec<&str> = examples["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(categories.len(), 4, "{categories:?}");
    assert!(
        !categories.contains(&"Video Games"),
        "the root is not an example"
    );
    let intention = examples["placeholders"]["intention"].as_str().unwrap();
    let title = intention.strip_prefix("something like ").unwrap();
    let search = get(
        &base,
        &format!("/v1/items?q={}&limit=1", title.replace(' ', "%20")),
    )
    .await;
    assert_eq!(
        titles(&search),
        [title],
        "the placeholder names a catalogue title"
    );
    let list = examples["examples"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{examples}");
    let client = reqwest::Client::new();
    for example in list {
        let r = client
            .post(format!("{base}/v1/recommend"))
            .json(&example["request"])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{example}: {}", r.status());
    }
    let scenarios: Vec<String> = {
        let mut s = Vec::new();
        for example in list {
            let answer: Value = client
                .post(format!("{base}/v1/recommend"))
                .json(&example["request"])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            s.push(answer["scenario"].as_str().unwrap().to_string());
        }
        s
    };
    assert_eq!(
        scenarios,
        ["P0 I1 T3", "P0 I2 T3", "P2 I0 T3", "P1 I0 T3"],
        "{list:?}"
    );
}

/// On a film catalogue nothing in the examples speaks of games.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_film_catalogue_gets_film_examples() {
    let mut prepared = instructrec_eval::synthetic::prepared(40, 120, 9);
    for item in &mut prepared.dataset.items {
        let genre = ["Comedy", "Drama", "Thriller", "Documentary"][item.id.index() % 4];
        item.title = format!("{genre} film number {}", item.id.0);
        item.categories = vec!["Movies".into(), genre.into()];
        item.brand = None;
    }
    let base = common::start_shared_server(
        Arc::new(common::recommender_over(prepared)),
        instructrec_serve::HttpConfig::new(2),
    )
    .await;
    let text = get(&base, "/v1/examples").await.to_string();
    assert!(!text.to_lowercase().contains("game"), "{text}");
    assert!(text.contains("film number"), "{text}");
}

/// With `candidate_labels`, each group's instruction lists every candidate by its title and its
/// category label, as the instructions were built, while the scored answer is still the title.
#[test]
fn candidate_labels_name_listed_items_and_score_titles() {
    let options = instructrec_serve::Options {
        candidate_labels: 2,
        ..Default::default()
    };
    let prepared = instructrec_eval::synthetic::prepared(60, 150, 5);
    let listed = instructrec_instructions::ListedNames::of(&prepared, 2);
    let rec = common::recommender_with(prepared, options);
    let model = common::tiny_model();
    let req = RecommendRequest {
        user: Some(UserRef::Name("U3".into())),
        candidates: Some((0..12).map(ItemRef::Id).collect()),
        k: Some(12),
        ..Default::default()
    };
    let answer = ask(&rec, req);
    assert_eq!(answer.items.len(), 12);
    for item in &answer.items {
        let g = &answer.groups[item.group];
        let name = listed.get(instructrec_data::ItemId(item.item_id));
        assert!(name.contains("(categories: ") && name.starts_with(item.title.as_str()));
        assert!(g.instruction.contains(name), "{}", g.instruction);
        let s = rescored(&rec, &model, &answer, item);
        assert!((s.sum - item.log_likelihood).abs() < 1e-4);
    }
}
