//! Reading a request's body and query into their types, with errors a person can act on: a
//! JSON syntax error names its line and column, a schema error the field's JSON path and what
//! it should be. The messages are the server's own, never serde's or axum's text.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::Value;

use crate::http::{ApiError, ErrorCode};
use crate::request::{FeedbackRequest, RecommendRequest};
use instructrec_data::import::FeedbackEvent;

/// The fields of `RecommendRequest`, in the order they are checked.
pub const RECOMMEND_FIELDS: [&str; 10] = [
    "user",
    "history",
    "preference",
    "intention",
    "intention_style",
    "context",
    "candidates",
    "k",
    "session",
    "refine",
];

/// Longest stretch of client text (a field name, a value) quoted in a message.
const QUOTE_CHARS: usize = 60;

fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// What a JSON value is, for "expected X, got Y".
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {}", quote(&n.to_string())),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Is `content-type` JSON (`application/json`, or `application/...+json`), parameters aside?
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// The JSON error for a body that does not parse.
pub(crate) fn json_syntax_error(e: &serde_json::Error) -> ApiError {
    let at = format!("at line {}, column {}", e.line(), e.column());
    let message = if e.is_eof() {
        format!("the body is not valid JSON {at}: it ends before the JSON is complete")
    } else {
        format!(
            "the body is not valid JSON {at}: check the quotes, commas and brackets around there"
        )
    };
    ApiError::new(ErrorCode::InvalidJson, message)
}

fn expected(field: &str, what: &str, got: &Value) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidField,
        format!("{field}: expected {what}, got {}", describe(got)),
    )
    .with_field(field)
}

fn is_u32(v: &Value) -> bool {
    v.as_u64().is_some_and(|n| u32::try_from(n).is_ok())
}

/// Checks one field's value against its type in `RecommendRequest` (null is "absent" for every
/// field but `refine`).
fn check_field(name: &str, v: &Value) -> Result<(), ApiError> {
    let optional = name != "refine";
    if v.is_null() && optional {
        return Ok(());
    }
    match name {
        "user" if !(is_u32(v) || v.is_string()) => Err(expected(
            name,
            "a user id (a whole number) or the source's user id (a string)",
            v,
        )),
        "history" | "candidates" => {
            let Value::Array(items) = v else {
                return Err(expected(
                    name,
                    "an array of items (ids as whole numbers, source ids or titles as strings)",
                    v,
                ));
            };
            for (i, item) in items.iter().enumerate() {
                if !(is_u32(item) || item.is_string()) {
                    return Err(expected(
                        &format!("{name}[{i}]"),
                        "an item id (a whole number) or a source id or title (a string)",
                        item,
                    ));
                }
            }
            Ok(())
        }
        "preference" | "intention" | "context" | "session" if !v.is_string() => {
            Err(expected(name, "a string", v))
        }
        "intention_style" if !matches!(v.as_str(), Some("vague" | "specific")) => {
            let got = match v.as_str() {
                Some(s) => format!("`{}`", quote(s)),
                None => describe(v),
            };
            Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("intention_style: expected \"vague\" or \"specific\", got {got}"),
            )
            .with_field(name))
        }
        "k" if v.as_u64().is_none() => Err(expected(name, "a whole number", v)),
        "refine" if !v.is_boolean() => Err(expected(name, "true or false", v)),
        _ => Ok(()),
    }
}

/// A JSON object body, checked: JSON content type (415), size (413), syntax (`invalid_json`),
/// an object (`invalid_field`), no field outside `fields` (`unknown_field`). `example` is shown
/// for an empty body.
fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    fields: &[&str],
    example: &str,
) -> Result<Value, ApiError> {
    if !is_json_content_type(headers) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::BodyTooLarge,
                "the body is larger than the server's limit",
            )
        } else {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "the request body could not be read",
            )
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is empty: send a JSON object such as {example}"),
        ));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| json_syntax_error(&e))?;
    let Value::Object(map) = &value else {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!(
                "the body must be a JSON object of request fields, not {}",
                describe(&value)
            ),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::new(
            ErrorCode::UnknownField,
            format!(
                "`{}` is not a field of this request; the fields are {}",
                quote(unknown),
                fields.join(", ")
            ),
        )
        .with_field(quote(unknown)));
    }
    Ok(value)
}

/// Every field was checked before, so this cannot fail; if it does, say so plainly.
fn from_checked<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidField,
            "the body does not fit the request schema; see /openapi.json",
        )
    })
}

/// The body of `POST /v1/recommend`, checked: JSON content type (415), size (413), syntax
/// (`invalid_json`), then the schema field by field (`unknown_field`, `invalid_field`).
pub(crate) fn recommend_request(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<RecommendRequest, ApiError> {
    let value = json_object(
        headers,
        body,
        &RECOMMEND_FIELDS,
        "{\"intention\": \"a puzzle game\"}",
    )?;
    for name in RECOMMEND_FIELDS {
        if let Some(v) = value.get(name) {
            check_field(name, v)?;
        }
    }
    from_checked(value)
}

/// The fields of `FeedbackRequest`, in the order they are checked.
const FEEDBACK_FIELDS: [&str; 4] = ["user", "item", "event", "session"];

/// Longest `session` a feedback event may carry (the server's own ids are 32 characters).
pub(crate) const MAX_FEEDBACK_SESSION_CHARS: usize = 64;

/// The body of `POST /v1/feedback`, checked like a recommendation request: `user`, `item` and
/// `event` are required (`missing_field`), `session` is optional.
pub(crate) fn feedback_request(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<FeedbackRequest, ApiError> {
    let value = json_object(
        headers,
        body,
        &FEEDBACK_FIELDS,
        "{\"user\": \"U1\", \"item\": \"B0001\", \"event\": \"liked\"}",
    )?;
    for name in FEEDBACK_FIELDS {
        let v = value.get(name).filter(|v| !v.is_null());
        match (name, v) {
            ("session", None) => {}
            (_, None) => {
                return Err(
                    ApiError::new(ErrorCode::MissingField, format!("{name}: required"))
                        .with_field(name),
                )
            }
            ("user", Some(v)) => check_field("user", v)?,
            ("item", Some(v)) if !(is_u32(v) || v.is_string()) => {
                return Err(expected(
                    name,
                    "an item id (a whole number) or the source's item id or title (a string)",
                    v,
                ))
            }
            ("event", Some(v))
                if v.as_str()
                    .and_then(|e| e.parse::<FeedbackEvent>().ok())
                    .is_none() =>
            {
                let got = match v.as_str() {
                    Some(s) => format!("`{}`", quote(s)),
                    None => describe(v),
                };
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    format!("event: expected \"clicked\", \"liked\" or \"bought\", got {got}"),
                )
                .with_field(name));
            }
            ("session", Some(v)) => {
                let Some(s) = v.as_str() else {
                    return Err(expected(name, "a string", v));
                };
                if s.is_empty()
                    || s.chars().count() > MAX_FEEDBACK_SESSION_CHARS
                    || !s.chars().all(|c| c.is_ascii_graphic())
                {
                    return Err(ApiError::new(
                        ErrorCode::InvalidField,
                        format!(
                            "session: expected a session id (1 to {MAX_FEEDBACK_SESSION_CHARS} \
                             visible ASCII characters)"
                        ),
                    )
                    .with_field(name));
                }
            }
            _ => {}
        }
    }
    from_checked(value)
}

/// The query of the search routes: `q` (default empty) and `limit`.
pub(crate) struct SearchParams {
    pub q: String,
    pub limit: Option<usize>,
}

pub(crate) fn search_params(
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<SearchParams, ApiError> {
    let Query(pairs) = params.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the query string cannot be read; send it as name=value pairs joined by &",
        )
    })?;
    let mut q = None;
    let mut limit = None;
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "q" => &mut q,
            "limit" => &mut limit,
            other => {
                return Err(ApiError::new(
                    ErrorCode::UnknownField,
                    format!(
                        "`{}` is not a parameter of this route; it takes q and limit",
                        quote(other)
                    ),
                )
                .with_field(quote(other)))
            }
        };
        if slot.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("{name}: given more than once"),
            )
            .with_field(name));
        }
        *slot = Some(value);
    }
    let limit = limit
        .map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidField,
                    format!("limit: expected a whole number, got `{}`", quote(&v)),
                )
                .with_field("limit")
            })
        })
        .transpose()?;
    Ok(SearchParams {
        q: q.unwrap_or_default(),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            is_json_content_type(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/problem+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn the_field_list_is_the_request_schema() {
        use crate::request::{IntentionStyle, ItemRef, UserRef};
        let full = RecommendRequest {
            user: Some(UserRef::Id(1)),
            history: Some(vec![ItemRef::Id(1)]),
            preference: Some("p".into()),
            intention: Some("i".into()),
            intention_style: Some(IntentionStyle::Vague),
            context: Some("c".into()),
            candidates: Some(vec![ItemRef::Name("x".into())]),
            k: Some(3),
            session: Some("s".into()),
            refine: true,
        };
        let value = serde_json::to_value(&full).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut fields = RECOMMEND_FIELDS.to_vec();
        keys.sort();
        fields.sort();
        assert_eq!(keys, fields);
        for name in RECOMMEND_FIELDS {
            check_field(name, &value[name]).unwrap();
        }
    }

    #[test]
    fn schema_errors_name_the_path() {
        let e = check_field("history", &serde_json::json!([1, "x", {"a": 1}])).unwrap_err();
        assert_eq!(e.field(), Some("history[2]"));
        assert!(check_field("refine", &Value::Null).is_err());
        assert!(check_field("k", &Value::Null).is_ok());
        assert!(check_field("user", &serde_json::json!(-1)).is_err());
    }
}
