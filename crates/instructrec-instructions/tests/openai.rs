//! The OpenAI-compatible teacher against a chat-completions server on loopback: retries after
//! 429 and 5xx, token accounting, the on-disk cache (a rerun makes no request), resuming after
//! a failed run, and the replacement of answers that name the target.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use instructrec_data::{ItemId, UserId};
use instructrec_instructions::mentions_title;
use instructrec_instructions::teacher::{FillRequest, OpenAiConfig, OpenAiTeacher, Teacher};

/// How the server answers the n-th request (0-based).
type Script = dyn Fn(usize, &serde_json::Value) -> (u16, String) + Send + Sync;

struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
}

fn serve(script: Box<Script>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let script: Arc<Script> = script.into();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = counter.clone();
            let script = script.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut length = 0;
                let mut authorised = false;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    authorised |= lower.starts_with("authorization: bearer test-key");
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (status, payload) = if !request_line.starts_with("POST /v1/chat/completions ") {
                    (404, "{}".to_string())
                } else if !authorised {
                    (401, r#"{"error":"no key"}"#.to_string())
                } else {
                    script(n, &serde_json::from_slice(&body).unwrap())
                };
                let reason = if status == 200 { "OK" } else { "Error" };
                let response = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 0\r\nConnection: close\r\n\r\n{payload}",
                    payload.len()
                );
                stream.write_all(response.as_bytes()).unwrap();
            });
        }
    });
    Server { url, requests }
}

fn answer(content: &str) -> String {
    serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    })
    .to_string()
}

/// Echoes which kind of prompt it got and a hash of it, so different prompts get different fills.
fn echo(body: &serde_json::Value) -> String {
    let prompt = body["messages"][1]["content"].as_str().unwrap();
    let kind = if prompt.contains("describe your taste") {
        "taste"
    } else {
        "need"
    };
    answer(&format!(
        "\"I want something nice ({kind} {}).\"",
        prompt.len()
    ))
}

fn config(url: &str, cache: &std::path::Path) -> OpenAiConfig {
    OpenAiConfig {
        base_url: url.to_string(),
        model: "test-model".into(),
        api_key: Some("test-key".into()),
        concurrency: 3,
        max_retries: 3,
        backoff_ms: 1,
        timeout_s: 10,
        temperature: 0.7,
        max_tokens: 60,
        cache_dir: cache.to_path_buf(),
    }
}

fn requests(p: &instructrec_data::Prepared) -> Vec<FillRequest> {
    (0..12u32)
        .map(|u| {
            let user = UserId(u);
            let seq = p.train_sequence(user);
            if u % 2 == 0 {
                FillRequest::Preference {
                    user,
                    history: seq[..seq.len() - 1].iter().map(|x| x.item).collect(),
                    avoid: seq[seq.len() - 1].item,
                }
            } else {
                FillRequest::Intention {
                    user,
                    item: seq[seq.len() - 1].item,
                }
            }
        })
        .collect()
}

#[test]
fn retries_counts_tokens_and_replays_from_the_cache() {
    let p = common::prepared();
    let server = serve(Box::new(|n, body| match n {
        0 => (429, r#"{"error":"slow down"}"#.into()),
        1 => (503, r#"{"error":"busy"}"#.into()),
        _ => (200, echo(body)),
    }));
    let cache = tempfile::tempdir().unwrap();
    let teacher = OpenAiTeacher::new(config(&server.url, cache.path()), 0).unwrap();
    let reqs = requests(&p);
    let first = teacher.fill(&p.dataset, &reqs).unwrap();
    let r = &first.report;
    assert_eq!(first.fills.len(), reqs.len());
    let distinct = r.requests - r.retries;
    assert_eq!(r.retries, 2, "{r:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), r.requests);
    assert_eq!(r.cache_hits, 0);
    assert_eq!(r.prompt_tokens, 100 * distinct as u64);
    assert_eq!(r.completion_tokens, 10 * distinct as u64);
    for (req, f) in reqs.iter().zip(&first.fills) {
        assert!(
            f.text.starts_with("I want something nice"),
            "quotes are stripped: {}",
            f.text
        );
        let kind = if matches!(req, FillRequest::Preference { .. }) {
            "taste"
        } else {
            "need"
        };
        assert!(f.text.contains(kind), "{}", f.text);
    }

    let before = server.requests.load(Ordering::SeqCst);
    let second = OpenAiTeacher::new(config(&server.url, cache.path()), 0)
        .unwrap()
        .fill(&p.dataset, &reqs)
        .unwrap();
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        before,
        "a rerun makes no request"
    );
    assert_eq!(second.report.requests, 0);
    assert_eq!(second.report.cache_hits, distinct);
    assert_eq!(second.fills, first.fills);
}

#[test]
fn an_interrupted_run_resumes_with_what_it_cached() {
    let p = common::prepared();
    // The server stops answering after five requests, as if the run were killed.
    let server = serve(Box::new(|n, body| {
        if n < 5 {
            (200, echo(body))
        } else {
            (400, r#"{"error":"gone"}"#.into())
        }
    }));
    let cache = tempfile::tempdir().unwrap();
    let mut c = config(&server.url, cache.path());
    c.concurrency = 1;
    let reqs = requests(&p);
    let err = OpenAiTeacher::new(c.clone(), 0)
        .unwrap()
        .fill(&p.dataset, &reqs)
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 400"), "{err}");

    let healthy = serve(Box::new(|_, body| (200, echo(body))));
    c.base_url = healthy.url.clone();
    let resumed = OpenAiTeacher::new(c.clone(), 0)
        .unwrap()
        .fill(&p.dataset, &reqs)
        .unwrap();
    assert_eq!(resumed.report.cache_hits, 5, "{:?}", resumed.report);
    assert_eq!(
        healthy.requests.load(Ordering::SeqCst),
        resumed.report.requests
    );
    let replay = OpenAiTeacher::new(c, 0)
        .unwrap()
        .fill(&p.dataset, &reqs)
        .unwrap();
    assert_eq!(replay.report.requests, 0);
    assert_eq!(
        resumed.report.cache_hits + resumed.report.requests,
        replay.report.cache_hits
    );
    assert_eq!(replay.fills, resumed.fills);
}

#[test]
fn answers_naming_the_target_are_replaced() {
    let p = common::prepared();
    let title_of = |i: ItemId| p.dataset.items[i.index()].title.clone();
    let titles: Vec<String> = p.dataset.items.iter().map(|i| i.title.clone()).collect();
    // A careless teacher: it names the product it was shown.
    let server = serve(Box::new(move |_, body| {
        let prompt = body["messages"][1]["content"].as_str().unwrap();
        let named = titles
            .iter()
            .find(|t| prompt.contains(t.as_str()))
            .cloned()
            .unwrap_or_default();
        (200, answer(&format!("I really want {named}.")))
    }));
    let cache = tempfile::tempdir().unwrap();
    let reqs: Vec<FillRequest> = requests(&p)
        .into_iter()
        .filter(|r| matches!(r, FillRequest::Intention { .. }))
        .collect();
    let filled = OpenAiTeacher::new(config(&server.url, cache.path()), 0)
        .unwrap()
        .fill(&p.dataset, &reqs)
        .unwrap();
    assert_eq!(filled.report.rejected, reqs.len());
    for (r, f) in reqs.iter().zip(&filled.fills) {
        assert!(!mentions_title(&f.text, &title_of(r.avoid())), "{}", f.text);
        assert!(f.phrasing.is_some(), "the offline teacher's fill");
    }
}

#[test]
fn a_client_error_fails_at_once_naming_the_url() {
    let p = common::prepared();
    let server = serve(Box::new(|_, _| (200, answer("fine"))));
    let cache = tempfile::tempdir().unwrap();
    let mut c = config(&server.url, cache.path());
    c.api_key = None;
    let err = OpenAiTeacher::new(c, 0)
        .unwrap()
        .fill(&p.dataset, &requests(&p)[..1])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/v1/chat/completions")
            && msg.contains("HTTP 401")
            && msg.contains("after 1 attempts"),
        "{msg}"
    );
}
