use instructrec_baselines::textrec::{train, QueryPair};
use instructrec_baselines::{
    TextInput, TextModelKind, TextRec, TextRecConfig, TextSource, Trainable, WordHash,
};
use instructrec_data::ItemId;
use instructrec_eval::harness::{evaluate_sampled, EvalCase};
use instructrec_eval::{synthetic, Case, QueryKind, Request, Scorer};

fn tiny(kind: TextModelKind) -> TextRecConfig {
    let mut c = TextRecConfig::new(
        kind,
        TextSource::Trained {
            buckets: 4096,
            dim: 16,
            words: WordHash::Fnv1a64,
        },
        QueryKind::Specific,
        7,
    );
    c.dim = 16;
    c.hidden = 32;
    c.stopping.batch_size = 32;
    c.stopping.max_epochs = 15;
    c.lr = 1e-2;
    c.max_history = 4;
    c
}

/// Queries that name an item by the number in its title ("game number 17"): learnable only
/// through the text path, since every query word but the number is shared by all items.
fn pairs(items: u32, copies: usize) -> Vec<QueryPair> {
    (0..copies)
        .flat_map(|k| {
            (0..items).map(move |i| QueryPair {
                history: vec![ItemId((i + k as u32) % items)],
                query: format!("looking for number {i}"),
                target: ItemId(i),
            })
        })
        .collect()
}

fn cases(items: u32) -> Vec<EvalCase> {
    (0..items)
        .map(|i| EvalCase {
            case: Case {
                user: instructrec_data::UserId(i),
                history: vec![ItemId((i + 3) % items)],
                query: Some(format!("number {i} please")),
                context: None,
            },
            positive: ItemId(i),
            candidates: (0..10).map(|k| ItemId((i + k * 7) % items)).collect(),
            excluded: Vec::new(),
        })
        .collect()
}

#[test]
fn dssm_and_tem_learn_queries_and_round_trip_checkpoints() {
    let p = synthetic::prepared(20, 120, 5);
    for kind in [TextModelKind::Dssm, TextModelKind::Tem] {
        let model = TextRec::new(tiny(kind), &p, TextInput::default()).unwrap();
        let trained = train(model, pairs(120, 6)).unwrap();
        let m = evaluate_sampled(&trained.model, &cases(120), 64).unwrap();
        // Random ranking gives HR@1 0.1.
        assert!(m.hr1 > 0.5, "{kind:?}: HR@1 {}", m.hr1);
        assert!(!trained.log.epochs.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        trained.model.save(&path).unwrap();
        let mut fresh = TextRec::new(tiny(kind), &p, TextInput::default()).unwrap();
        let c = cases(120);
        let req = [Request {
            case: &c[0].case,
            candidates: &c[0].candidates,
        }];
        assert_ne!(
            fresh.score_batch(&req).unwrap(),
            trained.model.score_batch(&req).unwrap()
        );
        fresh.load(&path).unwrap();
        assert_eq!(
            fresh.score_batch(&req).unwrap(),
            trained.model.score_batch(&req).unwrap()
        );
        assert_eq!(
            fresh.weights_hash().unwrap(),
            trained.model.weights_hash().unwrap()
        );
    }
}

#[test]
fn text_models_need_a_query() {
    let p = synthetic::prepared(10, 120, 5);
    let model = TextRec::new(tiny(TextModelKind::Dssm), &p, TextInput::default()).unwrap();
    let case = Case {
        user: instructrec_data::UserId(0),
        history: Vec::new(),
        query: None,
        context: None,
    };
    let e = model.score(&case, &[ItemId(1)]).unwrap_err();
    assert!(e.to_string().contains("needs a query"), "{e}");
}
