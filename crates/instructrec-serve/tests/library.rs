//! The recommender without HTTP: the terminal loop on a scripted conversation, and no panic on
//! arbitrary requests.

mod common;

use std::sync::OnceLock;

use instructrec_serve::{interactive, ItemRef, RecommendRequest, Recommender, UserRef};
use proptest::prelude::*;

fn shared() -> &'static Recommender {
    static REC: OnceLock<Recommender> = OnceLock::new();
    REC.get_or_init(common::recommender)
}

#[test]
fn scripted_terminal_conversation() {
    let script = "\
+too early
a racing game
for two players
:new
:user U4
Video Games, Puzzle
:user nobody
:none
:bogus
:user
something fun
:quit
never read
";
    let mut out = Vec::new();
    interactive::run(shared(), &mut script.as_bytes(), &mut out, None, 3).unwrap();
    let out = String::from_utf8(out).unwrap();
    let after = |marker: &str| {
        &out[out
            .find(marker)
            .unwrap_or_else(|| panic!("no `{marker}` in:\n{out}"))..]
    };
    assert!(out.contains("error: nothing to refine yet"), "{out}");
    // First answer: no user, vague need; the next plain line refines it.
    assert!(after("ask> ").contains("(P0 I1 T3)"), "{out}");
    assert!(after("refine> ").contains(", refined"), "{out}");
    assert!(out.contains("starting over"), "{out}");
    assert!(after("user U4:").contains("(P1 I2 T3)"), "{out}");
    assert!(out.contains("error: no user `nobody`"), "{out}");
    assert!(out.contains("error: unknown command `:bogus`"), "{out}");
    assert!(out.contains("error: unknown command `:user`"), "{out}");
    assert!(after("no user:").contains("(P0 I1 T3)"), "{out}");
    assert!(!out.contains("never read"));
    // Three ranked lines per answer.
    let answers = out.matches("template ").count();
    assert_eq!(answers, 4, "{out}");
    assert_eq!(out.matches("\n  3. ").count(), 4, "{out}");
    // Each item shows its relevance in percent and a why line under it.
    let first = &after("\n  1. ")[1..];
    let line = &first[..first.find('\n').unwrap()];
    assert!(line.contains('%'), "{line}");
    let why = first.lines().nth(1).unwrap();
    assert!(
        why.starts_with("       ") && why.trim_start().len() > 10,
        "no why line under the first item: {first}"
    );
}

fn item_ref() -> impl Strategy<Value = ItemRef> {
    prop_oneof![
        any::<u32>().prop_map(ItemRef::Id),
        (0u32..160).prop_map(ItemRef::Id),
        ".{0,12}".prop_map(ItemRef::Name),
        (0u32..160).prop_map(|i| ItemRef::Name(format!("S{i:05}"))),
    ]
}

fn text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        ".{0,40}",
        Just("Video Games, Racing".to_string()),
        Just(" ".repeat(3))
    ])
}

prop_compose! {
    fn request()(
        user in prop::option::of(prop_oneof![any::<u32>().prop_map(UserRef::Id), (0u32..70).prop_map(|u| UserRef::Name(format!("U{u}")))]),
        history in prop::option::of(prop::collection::vec(item_ref(), 0..30)),
        preference in text(),
        intention in text(),
        context in text(),
        candidates in prop::option::of(prop::collection::vec(item_ref(), 0..15)),
        k in prop::option::of(prop_oneof![0usize..60, any::<usize>()]),
        session in prop::option::of(prop_oneof![Just("s1".to_string()), ".{0,70}"]),
        refine in any::<bool>(),
    ) -> RecommendRequest {
        RecommendRequest { user, history, preference, intention, intention_style: None, context, candidates, k, session, refine }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any request is answered or refused with a message; an answer holds at most k items.
    #[test]
    fn arbitrary_requests_never_panic(req in request()) {
        match shared().recommend(&req) {
            Ok(r) => prop_assert!(r.items.len() <= req.k.unwrap_or(10)),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Arbitrary bytes either fail to parse or parse into a request that is handled.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(req) = serde_json::from_slice::<RecommendRequest>(&bytes) {
            let _ = shared().recommend(&req);
        }
    }
}
