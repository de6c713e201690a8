//! The OpenAPI document generated from the server's types and handlers: it has the shape of an
//! OpenAPI 3.1 document, every route the router serves is in it with an operation id and a
//! tag, every `$ref` resolves, and real answers of a running server (recommendations,
//! follow-ups, feedback, searches, errors) validate against the schemas it gives for their
//! status, with undocumented properties refused.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use instructrec_serve::http::{openapi_document, ErrorCode};
use instructrec_serve::{HttpConfig, Limits};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Every route the router serves, as (method, path) in the document's spelling. The router is
/// built from the documented handlers, so a new route shows up here as a difference.
const ROUTES: [(&str, &str); 11] = [
    ("get", "/"),
    ("get", "/app.js"),
    ("get", "/style.css"),
    ("get", "/openapi.json"),
    ("get", "/healthz"),
    ("post", "/v1/recommend"),
    ("post", "/v1/feedback"),
    ("get", "/v1/items"),
    ("get", "/v1/users"),
    ("get", "/v1/users/{id}"),
    ("get", "/v1/examples"),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every `$ref` string anywhere in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The value a local reference (`#/components/...`) points at.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// `v`, or what it points at when it is a `{"$ref": ...}` object.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("{r} does not resolve")),
        None => v,
    }
}

/// A JSON Schema (2020-12, the dialect of OpenAPI 3.1) for `schema` with the document's
/// component schemas beside it. Object schemas that list properties and say nothing of others
/// get `additionalProperties: false`, so a field the server sends but the document does not
/// describe fails validation.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    fn strict(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                map.values_mut().for_each(strict);
            }
            Value::Array(xs) => xs.iter_mut().for_each(strict),
            _ => {}
        }
    }
    let text = serde_json::to_string(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": doc["components"]["schemas"],
        "allOf": [schema],
    }))
    .unwrap()
    .replace("#/components/schemas/", "#/$defs/");
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    strict(&mut schema);
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("not a JSON Schema ({e})"))
}

/// The JSON schema the document gives for `status` of `method path`.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let op = &doc["paths"][path][method];
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path}: status {status} is not documented"));
    let response = deref(doc, response);
    response["content"]["application/json"]
        .get("schema")
        .unwrap_or_else(|| panic!("{method} {path} {status}: no JSON schema: {response}"))
}

/// Checks that `body` is valid under the schema `method path` documents for `status`.
fn assert_valid(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let schema = response_schema(doc, method, path, status);
    let v = validator(doc, schema);
    let errors: Vec<String> = v
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: the answer does not fit its schema {schema}:\n{}\n{body:#}",
        errors.join("\n")
    );
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.clone(), path.clone(), op));
            }
        }
    }
    ops
}

/// The document's shape: an OpenAPI 3.1 object that utoipa's own model reads back, operations
/// with unique ids and declared tags, every reference resolving.
#[test]
fn the_document_is_openapi_3_with_ids_tags_and_resolving_refs() {
    let doc = openapi_document(&Limits::default());
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "instructrec");
    assert!(doc["info"]["version"].is_string());
    let description = doc["info"]["description"].as_str().unwrap();
    for words in [
        "Bearer",
        "CORS",
        "--cors-origin",
        "forbidden_host",
        "Retry-After",
        "414",
    ] {
        assert!(description.contains(words), "the description lacks {words}");
    }
    let parsed: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("utoipa cannot read the document back: {e}"));
    assert_eq!(
        parsed.paths.paths.len(),
        doc["paths"].as_object().unwrap().len()
    );

    let declared: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids = BTreeSet::new();
    let mut served = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        let tags = op["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: no tags"));
        assert!(!tags.is_empty(), "{method} {path}: no tags");
        for t in tags {
            assert!(
                declared.contains(t.as_str().unwrap()),
                "{method} {path}: tag {t} is not declared"
            );
        }
        let summary = op["summary"].as_str().unwrap_or_default();
        assert!(
            !summary.is_empty() && !summary.contains('\n'),
            "{method} {path}: the summary is not one line: {summary:?}"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{method} {path}: no 200");
        assert!(
            responses.contains_key("403"),
            "{method} {path}: no 403 (Host check)"
        );
        for (status, r) in responses {
            let r = deref(&doc, r);
            assert!(
                r["description"].is_string(),
                "{method} {path} {status}: no description"
            );
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &r["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}: errors are ErrorBody"
                );
            }
        }
        let public = !path.starts_with("/v1/");
        assert_eq!(
            op.get("security").is_some(),
            !public,
            "{method} {path}: security"
        );
        served.insert((method, path));
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        served, expected,
        "the documented routes are not the served ones"
    );

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{} references", all.len());
    for r in all {
        assert!(r.starts_with("#/"), "{r} is not a local reference");
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
}

/// The error body: an object `error` with `code` (the whole `ErrorCode` set), `message` and an
/// optional `field`, nothing else.
#[test]
fn the_error_schema_is_the_error_body_with_every_code() {
    let doc = openapi_document(&Limits::default());
    let schemas = &doc["components"]["schemas"];
    let body = &schemas["ErrorBody"];
    assert_eq!(body["required"], json!(["error"]));
    let detail = deref(&doc, &body["properties"]["error"]);
    let mut required: Vec<&str> = detail["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["code", "message"]);
    let props: BTreeSet<&String> = detail["properties"].as_object().unwrap().keys().collect();
    assert_eq!(
        props,
        ["code", "field", "message"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect()
    );
    assert_eq!(detail["additionalProperties"], false);
    let code = deref(&doc, &detail["properties"]["code"]);
    let listed: Vec<&str> = code["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, all);
    // The feedback events of the schema are the data crate's.
    let events: Vec<&str> = schemas["FeedbackEvent"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let names: Vec<&str> = instructrec_data::import::FeedbackEvent::ALL
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(events, names);
}

/// The request schemas hold the server's limits, and accept what the server accepts.
#[test]
fn request_schemas_carry_the_limits() {
    let limits = Limits {
        max_history: 7,
        max_k: 9,
        ..Limits::default()
    };
    let doc = openapi_document(&limits);
    let request = &doc["components"]["schemas"]["RecommendRequest"];
    assert_eq!(request["additionalProperties"], false);
    let props = &request["properties"];
    assert_eq!(props["history"]["maxItems"], 7);
    assert_eq!(props["k"]["maximum"], 9);
    assert_eq!(props["k"]["default"], instructrec_serve::DEFAULT_K);
    assert_eq!(props["candidates"]["maxItems"], limits.max_candidates);
    assert_eq!(props["intention"]["maxLength"], limits.max_text_chars);
    let fields: BTreeSet<&str> = props
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = instructrec_serve::RECOMMEND_FIELDS.into_iter().collect();
    assert_eq!(fields, expected);

    let schema = json!({"$ref": "#/components/schemas/RecommendRequest"});
    let v = validator(&doc, &schema);
    for ok in [
        json!({"user": "U3", "intention": "a racing game", "k": 5}),
        json!({"user": 3, "history": [1, "S00002"], "preference": "puzzles", "refine": false}),
        json!({"intention": "Video Games, Racing", "intention_style": "specific", "candidates": [4]}),
        json!({"intention": "x", "context": null}),
    ] {
        assert!(v.is_valid(&ok), "{ok}");
    }
    for bad in [
        json!({"intention": "x", "k": 0}),
        json!({"intention": "x", "k": 10}),
        json!({"intention": "x", "colour": "red"}),
        json!({"intention": "x", "intention_style": "loud"}),
        json!({"history": [1, 2, 3, 4, 5, 6, 7, 8]}),
        json!({"intention": "x", "candidates": []}),
        json!({"user": -1}),
    ] {
        assert!(!v.is_valid(&bad), "{bad}");
    }
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{base}{path}");
    let r = match (method, body) {
        ("get", _) => client.get(&url).send().await.unwrap(),
        ("post", Some(b)) => client.post(&url).json(&b).send().await.unwrap(),
        ("post", None) => client.post(&url).body("").send().await.unwrap(),
        _ => unreachable!(),
    };
    let status = r.status();
    let text = r.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {status}: {e}: {text}"));
    (status, body)
}

/// A running server's answers, success and error alike, fit the schemas its own document gives
/// for their status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_validate_against_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::start_feedback_server(
        Arc::new(common::recommender()),
        HttpConfig::new(2),
        &dir.path().join("feedback.jsonl"),
    )
    .await;
    let client = reqwest::Client::new();
    let (status, doc) = call(&client, &base, "get", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc,
        openapi_document(&Limits::default()),
        "the served document differs"
    );

    let first = json!({"user": "U3", "intention": "a racing game", "k": 5});
    let (status, answer) = call(&client, &base, "post", "/v1/recommend", Some(first)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_valid(&doc, "post", "/v1/recommend", 200, &answer);
    // The check has teeth: a field the document does not describe, or a wrong type, fails.
    let schema = response_schema(&doc, "post", "/v1/recommend", 200);
    let v = validator(&doc, schema);
    let mut extra = answer.clone();
    extra["items"][0]["surprise"] = json!(1);
    assert!(!v.is_valid(&extra), "an undocumented field passed");
    let mut wrong = answer.clone();
    wrong["items"][0]["relevance"] = json!("high");
    assert!(!v.is_valid(&wrong), "a string relevance passed");
    let mut missing = answer.clone();
    missing["items"][0]["why"]
        .as_object_mut()
        .unwrap()
        .remove("summary");
    assert!(!v.is_valid(&missing), "a why without its summary passed");
    let session = answer["session"].as_str().unwrap().to_string();
    let follow_up = json!({"session": session, "refine": true, "intention": "for two players"});
    let (status, refined) = call(&client, &base, "post", "/v1/recommend", Some(follow_up)).await;
    assert_eq!(status, StatusCode::OK, "{refined}");
    assert_valid(&doc, "post", "/v1/recommend", 200, &refined);
    let listed = json!({"history": [1, 2], "preference": "puzzles", "candidates": [3, 4, 5, "S00009"], "context": "on a train"});
    let (status, answer) = call(&client, &base, "post", "/v1/recommend", Some(listed)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_valid(&doc, "post", "/v1/recommend", 200, &answer);

    let event = json!({"user": "U2", "item": "S00001", "event": "liked", "session": session});
    let (status, line) = call(&client, &base, "post", "/v1/feedback", Some(event)).await;
    assert_eq!(status, StatusCode::OK, "{line}");
    assert_valid(&doc, "post", "/v1/feedback", 200, &line);

    for (path, template) in [
        ("/healthz", "/healthz"),
        ("/v1/items?q=puzzle&limit=3", "/v1/items"),
        ("/v1/users?q=U1&limit=3", "/v1/users"),
        ("/v1/users/U1", "/v1/users/{id}"),
        ("/v1/examples", "/v1/examples"),
    ] {
        let (status, body) = call(&client, &base, "get", path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_valid(&doc, "get", template, 200, &body);
    }

    // Errors: from handlers, the body parser, the router's fallbacks and the middleware.
    let errors: Vec<(&str, &str, &str, Option<Value>, u16)> = vec![
        (
            "post",
            "/v1/recommend",
            "/v1/recommend",
            Some(json!({"intention": "x", "k": 0})),
            400,
        ),
        (
            "post",
            "/v1/recommend",
            "/v1/recommend",
            Some(json!({"colour": "red"})),
            400,
        ),
        (
            "post",
            "/v1/recommend",
            "/v1/recommend",
            Some(json!({})),
            400,
        ),
        (
            "post",
            "/v1/recommend",
            "/v1/recommend",
            Some(json!({"intention": "x", "session": "nope"})),
            404,
        ),
        ("post", "/v1/recommend", "/v1/recommend", None, 415),
        (
            "post",
            "/v1/feedback",
            "/v1/feedback",
            Some(json!({"user": "U2", "item": "S00001"})),
            400,
        ),
        (
            "post",
            "/v1/feedback",
            "/v1/feedback",
            Some(json!({"user": "nobody", "item": 1, "event": "liked"})),
            400,
        ),
        ("get", "/v1/items", "/v1/items", None, 400),
        ("get", "/v1/items?q=x&limit=1000", "/v1/items", None, 400),
        ("get", "/v1/users?sort=1", "/v1/users", None, 400),
        ("get", "/v1/users/nobody", "/v1/users/{id}", None, 404),
    ];
    for (method, path, template, body, expected) in errors {
        let (status, answer) = call(&client, &base, method, path, body).await;
        assert_eq!(status.as_u16(), expected, "{method} {path}: {answer}");
        assert_valid(&doc, method, template, expected, &answer);
    }
    // The fallbacks answer routes that do not exist, so their schema is ErrorBody's itself.
    let error_schema = json!({"$ref": "#/components/schemas/ErrorBody"});
    let v = validator(&doc, &error_schema);
    for (method, path) in [
        ("get", "/nowhere"),
        ("get", "/v1/recommend"),
        ("post", "/healthz"),
    ] {
        let (status, answer) = call(&client, &base, method, path, Some(json!({}))).await;
        assert!(status.is_client_error(), "{method} {path}: {status}");
        assert!(v.is_valid(&answer), "{method} {path}: {answer}");
    }
    let r = client
        .get(format!("{base}/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let answer: Value = r.json().await.unwrap();
    assert_valid(&doc, "get", "/healthz", 403, &answer);

    // A documented path answers nothing but its documented methods.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = format!("{base}{}", path.replace("{id}", "U1"));
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = client.request(m, &url).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is served but not documented"
            );
        }
    }
}

/// With a token, the `/v1/` routes answer 401 as documented, with the Unauthorized response's
/// header, and the public ones answer without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_where_the_document_says() {
    let mut config = HttpConfig::new(2);
    config.token = Some("a-token-of-sixteen-chars".into());
    let base = common::start_server_with(config).await;
    let client = reqwest::Client::new();
    let doc = openapi_document(&Limits::default());
    for (method, path, op) in operations(&doc) {
        let url = format!("{base}{}", path.replace("{id}", "U1"));
        let r = match method.as_str() {
            "get" => client.get(&url).send().await.unwrap(),
            _ => client.post(&url).json(&json!({})).send().await.unwrap(),
        };
        if op.get("security").is_some() {
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let body: Value = r.json().await.unwrap();
            assert_valid(&doc, &method, &path, 401, &body);
        } else {
            assert_eq!(r.status(), StatusCode::OK, "{method} {path}");
        }
    }
}
