//! Characters a client must not get into an instruction or a log: control characters (NUL,
//! ESC, DEL, C1 controls) and the Unicode bidi formatting characters that reorder how text is
//! shown (embeddings, overrides, isolates and marks). An override in a stated taste could make
//! the filled instruction read differently to a person than to the model, and ESC sequences
//! could rewrite a terminal that shows a log or an error message.

/// A character no free-text field keeps. Ordinary whitespace (tab, newline and the Unicode
/// spaces) is not in this set: it is folded into single spaces instead.
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && !c.is_whitespace())
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' // left-to-right and right-to-left marks
                | '\u{061C}' // Arabic letter mark
                | '\u{202A}'..='\u{202E}' // embeddings and overrides
                | '\u{2066}'..='\u{2069}' // isolates
        )
}

/// A free-text field as the server keeps it: unsafe characters dropped, every run of whitespace
/// (newlines and tabs included) made one space, the ends trimmed.
pub fn clean_text(text: &str) -> String {
    let kept: String = text.chars().filter(|&c| !is_unsafe(c)).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` with each unsafe character written as its code point (`\u{202e}`), so that a message
/// echoing what a client sent shows it without acting on it.
pub fn escape_unsafe(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if is_unsafe(c) {
                format!("\\u{{{:04x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_dropped_whitespace_folded() {
        assert_eq!(
            clean_text(" a\u{0}b\u{1b}[31m \t\n c\u{202e}d\u{2066}e\u{200f}f\u{7f}\u{85}g "),
            "ab[31m cdef g"
        );
        assert_eq!(clean_text("\u{202a}\u{0}"), "");
        // Scripts written right to left keep their letters.
        assert_eq!(clean_text("שלום\u{200f} world"), "שלום world");
    }

    #[test]
    fn escaping_shows_code_points() {
        assert_eq!(escape_unsafe("plain"), "plain");
        assert_eq!(escape_unsafe("a\u{202e}b\u{1b}"), "a\\u{202e}b\\u{001b}");
    }
}
