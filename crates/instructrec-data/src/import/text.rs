//! Cleaning of source text: HTML entities, blank strings, and the Amazon category lists that mix
//! a category path with product-feature sentences.

/// Decodes HTML entities and trims; blank text is absent text.
pub fn clean_text(raw: &str) -> Option<String> {
    let decoded = html_escape::decode_html_entities(raw);
    let trimmed = decoded.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// A title as text: [`clean_text`], and HTML tags removed (with the spaces around them
/// collapsed; other titles keep their spacing, which item tokens depend on). Some scraped
/// catalogues (Amazon 2018 among them) hold page markup or script where a title belongs; such a
/// title is no title (preparation then drops the item as untitled, or with --keep-untitled
/// titles it by its id), since a model would otherwise learn and recommend page code.
pub fn clean_title(raw: &str) -> Option<String> {
    let text = clean_text(raw)?;
    let mut plain = String::with_capacity(text.len());
    let mut tags = false;
    let mut rest = text.as_str();
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let is_tag = after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
        match (is_tag, after.find('>')) {
            (true, Some(close)) => {
                plain.push_str(&rest[..open]);
                plain.push(' ');
                tags = true;
                rest = &after[close + 1..];
            }
            _ => {
                plain.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    plain.push_str(rest);
    if tags {
        plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    const CODE: [&str; 5] = ["function(", "function (", "document.", "window.", "});"];
    let code = plain.starts_with("var ")
        || CODE.iter().any(|c| plain.contains(c))
        || (plain.contains('{') && plain.contains('}') && plain.contains(';'));
    // Markup with no words between its tags is no title; a short plain title ("M") is one.
    let words_left = !tags || plain.chars().filter(|c| c.is_alphanumeric()).count() >= 2;
    (!code && words_left && !plain.is_empty()).then_some(plain)
}

/// Most Amazon 2018 category labels have at most this many content words
/// ("Faceplates, Protectors & Skins"); feature bullets are usually longer.
const MAX_PATH_WORDS: usize = 4;

/// Small words that stay lower-case inside title-case category names.
const CONNECTORS: [&str; 13] = [
    "&", "and", "of", "for", "the", "with", "to", "in", "on", "a", "an", "by", "or",
];

/// Splits an Amazon category list into (path, features). The list starts with the category path
/// and often continues with product-feature sentences; the first label that does not look like
/// a category name, and everything after it, are features. Labels are HTML-decoded first.
///
/// A path label: has no sentence punctuation (`. ! ? : ( ) [ ] "`), has at most
/// [`MAX_PATH_WORDS`] content words, every content word starts with a capital or a digit, does
/// not start with a bare number ("14 Playable Characters", "1-2 Players" are selling points)
/// and is not shouted ("BRAND NEW GAME"). `;` inside path labels is a mangled `&`
/// ("Kids; Family" beside "Kids & Family" in the same data) and is restored.
pub fn split_category_labels(labels: &[String]) -> (Vec<String>, Vec<String>) {
    let cleaned = labels.iter().filter_map(|l| clean_text(l));
    let mut path = Vec::new();
    let mut features = Vec::new();
    for label in cleaned {
        if features.is_empty() && looks_like_path_label(&label) {
            path.push(label.replace("; ", " & "));
        } else {
            features.push(label);
        }
    }
    (path, features)
}

fn looks_like_path_label(label: &str) -> bool {
    if label.contains(['.', '!', '?', ':', '(', ')', '[', ']', '"']) {
        return false;
    }
    let words: Vec<&str> = label
        .split_whitespace()
        .map(|w| w.trim_end_matches([',', ';']))
        .filter(|w| !w.is_empty() && !CONNECTORS.contains(w))
        .collect();
    let Some(first) = words.first() else {
        return false;
    };
    let starts_well = |w: &&str| {
        w.chars()
            .next()
            .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
    };
    let bare_number = first
        .chars()
        .all(|c| c.is_ascii_digit() || c == '-' || c == '+');
    let alphabetic: Vec<&&str> = words
        .iter()
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .collect();
    let shouted = alphabetic.len() >= 2
        && alphabetic.iter().all(|w| {
            w.chars()
                .filter(|c| c.is_alphabetic())
                .all(char::is_uppercase)
        });
    words.len() <= MAX_PATH_WORDS && words.iter().all(starts_well) && !bare_number && !shouted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_titles_is_removed_and_code_is_no_title() {
        assert_eq!(
            clean_title("<span class=\"a\">Mario Kart 8</span> &amp; <b>DLC</b>").as_deref(),
            Some("Mario Kart 8 & DLC")
        );
        assert_eq!(
            clean_title("2 < 3 Players > 1").as_deref(),
            Some("2 < 3 Players > 1")
        );
        assert_eq!(
            clean_title("Tom &lt;3 Jerry").as_deref(),
            Some("Tom <3 Jerry")
        );
        assert_eq!(clean_title("Halo  3").as_deref(), Some("Halo  3"));
        assert_eq!(clean_title("M (1931)").as_deref(), Some("M (1931)"));
        assert_eq!(clean_title("M").as_deref(), Some("M"));
        for code in [
            "var aPageStart = (new Date()).getTime();",
            "<script>(function(){ ue.count(1); })();</script>",
            ".a-box { display: block; }",
            "<div id=\"x\"></div>",
            "<img src=x> -",
        ] {
            assert_eq!(clean_title(code), None, "{code}");
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn decodes_entities_and_blanks() {
        assert_eq!(
            clean_text("Tom &amp; Jerry &quot;Deluxe&quot; "),
            Some("Tom & Jerry \"Deluxe\"".into())
        );
        assert_eq!(clean_text("  "), None);
    }

    #[test]
    fn keeps_paths_that_are_only_paths() {
        let labels = strings(&[
            "Video Games",
            "Nintendo 3DS & 2DS",
            "Accessories",
            "Cables & Adapters",
        ]);
        let (path, features) = split_category_labels(&labels);
        assert_eq!(path, labels);
        assert!(features.is_empty());
    }

    #[test]
    fn restores_mangled_ampersands() {
        let (path, _) = split_category_labels(&strings(&[
            "Video Games",
            "Retro Gaming; Microconsoles",
            "Kids; Family",
        ]));
        assert_eq!(
            path,
            strings(&[
                "Video Games",
                "Retro Gaming & Microconsoles",
                "Kids & Family"
            ])
        );
    }

    #[test]
    fn rejects_selling_points() {
        for label in [
            "14 Playable Characters",
            "1-2 Players",
            "BRAND NEW GAME",
            "Illuminating blue light",
            "Create Custom Tribes.",
            "You can also shop for digital games on your mobile device.",
            "Destroy the Archfiend Baramos and Save the World",
        ] {
            assert!(!looks_like_path_label(label), "{label}");
        }
        for label in [
            "PC",
            "Xbox 360",
            "Faceplates, Protectors & Skins",
            "Digital Games & DLC",
            "Sony PSP",
        ] {
            assert!(looks_like_path_label(label), "{label}");
        }
    }

    #[test]
    fn everything_after_the_first_sentence_is_a_feature() {
        // A title-case label after a sentence is still a feature: paths come first.
        let (path, features) = split_category_labels(&strings(&[
            "Video Games",
            "PC",
            "Easy to attach and remove",
            "Officially Licensed",
        ]));
        assert_eq!(path, strings(&["Video Games", "PC"]));
        assert_eq!(
            features,
            strings(&["Easy to attach and remove", "Officially Licensed"])
        );
    }
}
