use std::collections::HashMap;

use instructrec_data::CandidateSet;
use instructrec_data::{Fold, ItemId, UserId};
use instructrec_eval::harness::{
    build_cases, build_query_cases, evaluate_full, evaluate_sampled, evaluate_tournament,
    stored_candidates, with_candidates,
};
use instructrec_eval::report::{config_hash, ModelReport};
use instructrec_eval::QueryLine;
use instructrec_eval::{evaluate, synthetic, Case, Protocol, Report, Scorer, Setting};

struct Constant;

impl Scorer for Constant {
    fn name(&self) -> String {
        "constant".into()
    }
    fn score(&self, _: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        Ok(vec![1.0; candidates.len()])
    }
    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        Some(Ok(cases.iter().map(|_| vec![1.0; 120]).collect()))
    }
}

/// Knows the answers (from outside the case), to check the harness credits a correct ranking.
struct Oracle(HashMap<UserId, ItemId>);

impl Scorer for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }
    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let answer = self.0[&case.user];
        Ok(candidates
            .iter()
            .map(|&c| (c == answer) as u8 as f32)
            .collect())
    }
    fn score_all(&self, cases: &[&Case]) -> Option<anyhow::Result<Vec<Vec<f32>>>> {
        Some(Ok(cases
            .iter()
            .map(|c| {
                let mut v = vec![0.0; 120];
                v[self.0[&c.user].index()] = 1.0;
                v
            })
            .collect()))
    }
}

/// Puts the positive exactly at `rank` among the candidates, by knowing the answer.
struct AtRank(HashMap<UserId, ItemId>, usize);

impl Scorer for AtRank {
    fn name(&self) -> String {
        format!("at-rank-{}", self.1)
    }
    fn score(&self, case: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        let answer = self.0[&case.user];
        let mut next = 0.0;
        Ok(candidates
            .iter()
            .map(|&c| {
                if c == answer {
                    101.5 - self.1 as f32
                } else {
                    next += 1.0;
                    101.0 - next
                }
            })
            .collect())
    }
}

struct Broken {
    nan: bool,
}

impl Scorer for Broken {
    fn name(&self) -> String {
        "broken".into()
    }
    fn score(&self, _: &Case, candidates: &[ItemId]) -> anyhow::Result<Vec<f32>> {
        if self.nan {
            Ok(vec![f32::NAN; candidates.len()])
        } else {
            Ok(vec![0.0; candidates.len() - 1])
        }
    }
}

fn answers(p: &instructrec_data::Prepared, fold: Fold) -> HashMap<UserId, ItemId> {
    p.dataset
        .users
        .iter()
        .map(|u| (u.id, p.held_out(u.id, fold)))
        .collect()
}

#[test]
fn constant_scorer_gets_zero_and_oracle_gets_one() {
    let p = synthetic::prepared(40, 120, 5);
    let cases = build_cases(
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
    )
    .unwrap();
    assert_eq!(cases.len(), 40);
    let m = evaluate_sampled(&Constant, &cases, 7).unwrap();
    assert_eq!((m.hr1, m.hr5, m.ndcg5, m.hr10), (0.0, 0.0, 0.0, 1.0));
    let m = evaluate_sampled(&Oracle(answers(&p, Fold::Test)), &cases, 7).unwrap();
    assert_eq!((m.hr1, m.ndcg5, m.mrr), (1.0, 1.0, 1.0));
    // The wrong fold's answers are not the positives (they are in the user's history).
    let m = evaluate_sampled(&Oracle(answers(&p, Fold::Validation)), &cases, 7).unwrap();
    assert_eq!(m.hr1, 0.0);
}

#[test]
fn positive_at_each_rank_through_the_harness() {
    let p = synthetic::prepared(10, 120, 6);
    let cases = build_cases(
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
    )
    .unwrap();
    for rank in 1..=10 {
        let m = evaluate_sampled(&AtRank(answers(&p, Fold::Test), rank), &cases, 3).unwrap();
        assert_eq!(m.hr1, (rank == 1) as u8 as f64, "rank {rank}");
        assert_eq!(m.hr3, (rank <= 3) as u8 as f64, "rank {rank}");
        assert!((m.mrr - 1.0 / rank as f64).abs() < 1e-12, "rank {rank}");
    }
}

#[test]
fn cases_hide_the_answer_and_keep_the_history() {
    let p = synthetic::prepared(5, 120, 7);
    for fold in [Fold::Validation, Fold::Test] {
        let cases = build_cases(
            &p,
            Protocol::Sequential,
            fold,
            Setting::Sampled { size: 100 },
        )
        .unwrap();
        for c in &cases {
            let seq = &p.dataset.sequences[c.case.user.index()];
            let cut = seq.len() - if fold == Fold::Test { 1 } else { 2 };
            let expected: Vec<ItemId> = seq[..cut].iter().map(|i| i.item).collect();
            assert_eq!(c.case.history, expected);
            assert!(!c.case.history.contains(&c.positive));
            assert_eq!(c.candidates.len(), 100);
            assert_eq!(c.excluded.len(), seq.len() - 1);
        }
    }
}

#[test]
fn full_ranking_excludes_other_interactions() {
    let p = synthetic::prepared(20, 120, 8);
    let cases = build_cases(&p, Protocol::Sequential, Fold::Test, Setting::FullRanking).unwrap();
    let m = evaluate_full(&Oracle(answers(&p, Fold::Test)), &cases, 120, 8)
        .unwrap()
        .unwrap();
    assert_eq!(m.hr1, 1.0);
    // A constant ranks the positive below every non-excluded item: 120 - |other interactions|.
    let m = evaluate_full(&Constant, &cases, 120, 8).unwrap().unwrap();
    let expected: f64 = cases
        .iter()
        .map(|c| 1.0 / (120 - c.excluded.len()) as f64)
        .sum::<f64>()
        / cases.len() as f64;
    assert!((m.mrr - expected).abs() < 1e-12);
    // A scorer without score_all is reported as unsupported, not as zero.
    assert!(
        evaluate_full(&AtRank(answers(&p, Fold::Test), 1), &cases, 120, 8)
            .unwrap()
            .is_none()
    );
}

#[test]
fn broken_scorers_and_missing_protocols_are_errors() {
    let p = synthetic::prepared(5, 120, 9);
    let cases = build_cases(
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
    )
    .unwrap();
    let e = evaluate_sampled(&Broken { nan: true }, &cases, 2).unwrap_err();
    assert!(format!("{e:#}").contains("NaN"), "{e:#}");
    let e = evaluate_sampled(&Broken { nan: false }, &cases, 2).unwrap_err();
    assert!(
        format!("{e:#}").contains("9 scores for 10 candidates"),
        "{e:#}"
    );
    // Zero-shot scores the target domain's own sequential cases (with a model tuned elsewhere).
    let lists = |protocol| {
        build_cases(&p, protocol, Fold::Test, Setting::Sampled { size: 10 })
            .unwrap()
            .into_iter()
            .map(|c| (c.case.user, c.positive, c.candidates))
            .collect::<Vec<_>>()
    };
    let zero_shot = lists(Protocol::ZeroShot);
    assert!(!zero_shot.is_empty());
    assert_eq!(zero_shot, lists(Protocol::Sequential));
    for protocol in [
        Protocol::ProductSearch,
        Protocol::PersonalisedSearch,
        Protocol::Tournament,
        Protocol::HeldOut,
    ] {
        let e = build_cases(&p, protocol, Fold::Test, Setting::Sampled { size: 10 }).unwrap_err();
        assert!(e.to_string().contains("build_query_cases"), "{e}");
    }
    let e = build_cases(
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 50 },
    )
    .unwrap_err();
    assert!(e.to_string().contains("size 50"), "{e}");
}

#[test]
fn report_renders_json_markdown_and_svg() {
    let mut p = synthetic::prepared(30, 120, 10);
    // Named as the paper's Games data, so the report puts the paper's figures beside ours.
    p.manifest.source.paths = vec!["datasets/amazon-games/raw/Games.inter.json".into()];
    let mut report = Report::new(
        &p,
        Protocol::Sequential,
        "instructrec eval --test".into(),
        1,
        &[(Fold::Test, 10), (Fold::Test, 100)],
    )
    .unwrap();
    let oracle = Oracle(answers(&p, Fold::Test));
    let mut results = Vec::new();
    for setting in [
        Setting::Sampled { size: 10 },
        Setting::Sampled { size: 100 },
        Setting::FullRanking,
    ] {
        results.push(
            evaluate(&oracle, &p, Protocol::Sequential, Fold::Test, setting, 16)
                .unwrap()
                .unwrap(),
        );
    }
    let config = serde_json::json!({"kind": "oracle"});
    report.models.push(ModelReport {
        name: "oracle".into(),
        config_hash: config_hash(&config),
        config,
        model_hash: "none".into(),
        train_wall_s: 0.0,
        training: None,
        loaded_from: None,
        results,
    });
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("sub").join("seq");
    report.write(&stem).unwrap();
    let md = std::fs::read_to_string(stem.with_extension("md")).unwrap();
    assert!(md.contains("| oracle | 1.0000 | 1.0000"), "{md}");
    assert!(
        md.contains("| sequential <P1,I0,T3> | SASRec | 0.6663"),
        "{md}"
    );
    assert!(md.contains("full ranking"), "{md}");
    // The oracle ranks every positive first: full recall at every depth.
    assert!(
        md.contains("| model | @10 | @20 | @50 | @100 | @200 | @500 | @1000 |")
            && md.contains("| oracle | 1.000 | 1.000 | 1.000 |"),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(json["protocol"], "sequential");
    assert_eq!(json["candidates"][1]["size"], 100);
    assert_eq!(
        json["models"][0]["results"][2]["setting"]["kind"],
        "full-ranking"
    );
    let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("NDCG@5")
            && svg.contains("oracle (ours)")
            && svg.contains("SASRec (paper)"),
        "{svg}"
    );
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(stem.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

fn query_lines(p: &instructrec_data::Prepared) -> Vec<QueryLine> {
    stored_candidates(p, Fold::Test, 10)
        .unwrap()
        .iter()
        .map(|set| QueryLine {
            user: set.user,
            positive: set.positive,
            candidates: set.items(),
            query: format!("query of user {}", set.user.0),
            instruction: format!("instruction for user {}", set.user.0),
        })
        .collect()
}

#[test]
fn query_cases_carry_the_query_and_product_search_no_history() {
    let p = synthetic::prepared(20, 120, 10);
    let lines = query_lines(&p);
    let setting = Setting::Sampled { size: 10 };
    let personal = build_query_cases(
        &p,
        Protocol::PersonalisedSearch,
        &lines,
        Fold::Test,
        setting,
    )
    .unwrap();
    let product =
        build_query_cases(&p, Protocol::ProductSearch, &lines, Fold::Test, setting).unwrap();
    assert_eq!(personal.len(), lines.len());
    for ((a, b), line) in personal.iter().zip(&product).zip(&lines) {
        assert_eq!(a.case.query.as_deref(), Some(line.query.as_str()));
        assert!(!a.case.history.is_empty());
        assert!(b.case.history.is_empty());
        assert_eq!(a.candidates, line.candidates);
    }
    // 1+99 takes the stored lists, whose positives must agree with the lines.
    let long = build_query_cases(
        &p,
        Protocol::Tournament,
        &lines,
        Fold::Test,
        Setting::Tournament {
            size: 100,
            groups: 10,
        },
    )
    .unwrap();
    assert!(long.iter().all(|c| c.candidates.len() == 100));
    let mut wrong = lines.clone();
    wrong[0].positive = ItemId((wrong[0].positive.0 + 1) % 120);
    let e = build_query_cases(
        &p,
        Protocol::Tournament,
        &wrong,
        Fold::Test,
        Setting::Sampled { size: 100 },
    )
    .unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
}

#[test]
fn tournament_ranks_winners_then_losers() {
    let p = synthetic::prepared(20, 120, 10);
    let lines = query_lines(&p);
    let setting = Setting::Tournament {
        size: 100,
        groups: 10,
    };
    let cases = build_query_cases(&p, Protocol::Tournament, &lines, Fold::Test, setting).unwrap();
    let answers = answers(&p, Fold::Test);
    let oracle = evaluate_tournament(&Oracle(answers.clone()), &cases, 10, 3, 64).unwrap();
    assert_eq!(oracle.hr1, 1.0);
    // A constant scorer: every tie goes against the positive, which loses its group.
    let constant = evaluate_tournament(&Constant, &cases, 10, 3, 64).unwrap();
    assert_eq!(constant.hr5, 0.0);
    // Second in a group of ten (and so not a winner) means rank 10 + 1.
    let second = evaluate_tournament(&AtRank(answers, 2), &cases, 10, 3, 64).unwrap();
    assert_eq!(second.hr5, 0.0);
    assert_eq!(second.hr10, 0.0);
}

#[test]
fn mined_lists_replace_candidates() {
    let p = synthetic::prepared(20, 120, 10);
    let cases = build_cases(
        &p,
        Protocol::Sequential,
        Fold::Test,
        Setting::Sampled { size: 10 },
    )
    .unwrap();
    let mut lists: Vec<CandidateSet> = stored_candidates(&p, Fold::Test, 10).unwrap()[..5].to_vec();
    lists[0].negatives.reverse();
    let replaced = with_candidates(cases.clone(), &lists).unwrap();
    assert_eq!(replaced.len(), 5);
    assert_eq!(replaced[0].candidates, lists[0].items());
    lists[1].positive = ItemId((lists[1].positive.0 + 1) % 120);
    assert!(with_candidates(cases, &lists).is_err());
}
