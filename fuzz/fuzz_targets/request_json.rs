//! The body of `POST /v1/recommend` parsed into `RecommendRequest` as the server does (serde
//! JSON, unknown fields refused), then: a parsed request serialises and parses back to itself,
//! and the free-text fields cleaned by `sanitize::clean_text` keep no unsafe character and no
//! run of whitespace, and `escape_unsafe` leaves none either.
#![no_main]

use instructrec_serve::sanitize::{clean_text, escape_unsafe, is_unsafe};
use instructrec_serve::RecommendRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<RecommendRequest>(data) else {
        return;
    };
    let text = serde_json::to_string(&request).expect("a parsed request serialises");
    let again: RecommendRequest = serde_json::from_str(&text).expect("a serialised request parses");
    assert_eq!(again, request, "the round trip through {text} changed the request");

    for field in [&request.preference, &request.intention, &request.context] {
        let Some(field) = field else { continue };
        let cleaned = clean_text(field);
        assert!(!cleaned.chars().any(is_unsafe), "{cleaned:?} keeps an unsafe character");
        assert!(!cleaned.contains("  ") && cleaned.trim() == cleaned, "{cleaned:?}");
        assert_eq!(clean_text(&cleaned), cleaned, "cleaning is not idempotent");
        assert!(cleaned.chars().count() <= field.chars().count());
        let escaped = escape_unsafe(field);
        assert!(!escaped.chars().any(is_unsafe), "{escaped:?} keeps an unsafe character");
    }
});
