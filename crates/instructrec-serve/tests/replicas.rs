//! Two replicas sharing a session directory answer one conversation between them, as behind a
//! load balancer: a turn started on one is refined on the other.

mod common;

use std::sync::Arc;

use instructrec_serve::HttpConfig;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_session_directory_continue_each_others_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let replica = || {
        let mut rec = common::recommender();
        rec.share_sessions(dir.path()).unwrap();
        Arc::new(rec)
    };
    let a = common::start_shared_server(replica(), HttpConfig::new(1)).await;
    let b = common::start_shared_server(replica(), HttpConfig::new(1)).await;
    let alone = common::start_server().await;

    let (status, first) =
        common::recommend(&a, &json!({"intention": "a racing game", "k": 5})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let session = first["session"].as_str().unwrap().to_string();

    let refine =
        json!({"session": session, "refine": true, "intention": "for two players", "k": 5});
    let (status, second) = common::recommend(&b, &refine).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["refined"], true);
    assert_eq!(second["session"], session.as_str());
    let instruction = second["instruction"].as_str().unwrap();
    assert!(
        instruction.contains("a racing game") && instruction.contains("for two players"),
        "the second replica did not build on the first one's turn: {instruction}"
    );

    // Back on the first replica, the third turn sees the second.
    let (status, third) = common::recommend(
        &a,
        &json!({"session": session, "refine": true, "intention": "cheap", "k": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let instruction = third["instruction"].as_str().unwrap();
    assert!(
        instruction.contains("for two players") && instruction.contains("cheap"),
        "{instruction}"
    );

    // A server keeping sessions in its own memory does not know the id.
    let (status, refused) = common::recommend(&alone, &refine).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
}
