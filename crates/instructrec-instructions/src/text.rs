//! Text helpers shared by the fills and the checks: the history under a token budget, candidate
//! lists, and the test for whether a generated text gives away the target's title.

/// Counts tokens the way the model that reads the instructions will (approximately).
pub trait TokenCounter: Sync {
    fn count(&self, text: &str) -> usize;
}

/// Whitespace-separated words: a tokenizer-free stand-in that is close enough to plan a budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordCounter;

impl TokenCounter for WordCounter {
    fn count(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

pub(crate) const HISTORY_SEPARATOR: &str = "; ";

/// Keeps the most recent titles whose joined length fits `budget` tokens, dropping the oldest
/// first and never cutting a title; the most recent title is always kept so that an
/// implicit-preference instruction never shows an empty history. Returns how many of the
/// newest titles are kept.
pub fn fit_history(titles: &[&str], budget: usize, counter: &dyn TokenCounter) -> usize {
    let mut used = 0;
    let mut kept = 0;
    for title in titles.iter().rev() {
        let cost = counter.count(title) + usize::from(kept > 0) * counter.count(HISTORY_SEPARATOR);
        if kept > 0 && used + cost > budget {
            break;
        }
        used += cost;
        kept += 1;
    }
    kept
}

pub(crate) fn render_history(titles: &[&str]) -> String {
    titles.join(HISTORY_SEPARATOR)
}

/// Numbered so that long titles with commas stay apart.
pub(crate) fn render_candidates(titles: &[&str]) -> String {
    let mut out = String::new();
    for (i, t) in titles.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&format!("[{}] {}", i + 1, t));
    }
    out
}

/// Lower-cased alphanumeric words: the form in which titles and texts are compared.
pub fn normalised_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `text` names the item titled `title`: the whole normalised title, or a run of its
/// words long enough to identify it (all of a title of up to four words, otherwise at least
/// four words and 60% of the title), appears as consecutive words of the text.
pub fn mentions_title(text: &str, title: &str) -> bool {
    let title = normalised_words(title);
    if title.is_empty() {
        return false;
    }
    let text = normalised_words(text);
    let n = title.len();
    let run = if n <= 4 {
        n
    } else {
        4.max((n * 3).div_ceil(5))
    };
    title
        .windows(run)
        .any(|w| text.windows(run).any(|t| t == w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_drops_oldest_whole_titles() {
        let titles = ["old one here", "middle title", "newest"];
        // 1 + (2 + 1) = 4 words fit in 5; adding "old one here" (3 + 1) would not.
        assert_eq!(fit_history(&titles, 5, &WordCounter), 2);
        assert_eq!(fit_history(&titles, 100, &WordCounter), 3);
        // The newest title is kept even over budget.
        assert_eq!(fit_history(&titles, 0, &WordCounter), 1);
        assert_eq!(fit_history(&[], 10, &WordCounter), 0);
    }

    #[test]
    fn title_mentions_are_found_after_normalising() {
        let title = "Titanfall 2 - PlayStation 4";
        assert!(mentions_title(
            "I want TITANFALL 2: PlayStation-4 now",
            title
        ));
        assert!(!mentions_title("I want a shooter for PlayStation 4", title));
        let long = "Call of Duty: Black Ops III - Xbox One";
        assert!(mentions_title("more call of duty black ops please", long));
        assert!(!mentions_title("a call of duty style shooter", long));
        assert!(!mentions_title("anything", ""));
    }

    #[test]
    fn candidates_are_numbered() {
        assert_eq!(render_candidates(&["A", "B, C"]), "[1] A; [2] B, C");
    }
}
