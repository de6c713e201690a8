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

/// A category label held by at least this share of the catalogue's items says nothing about any
/// one of them (a dataset's root, "Video Games" or "Toys & Games"), so a listed item leaves it out.
const UNINFORMATIVE_LABEL_SHARE: f64 = 0.9;

/// How each item is named where a candidate list shows it: its title, and with `labels > 0` up
/// to that many of its category labels after it ("Fallout 4 - Xbox One (categories: Xbox One,
/// Games)"), most general first, leaving out the labels nearly every item holds. A query that
/// names a category can then be matched against the list by the words it shares with each
/// candidate, as a lexical retriever that indexes the labels matches it; targets and histories
/// stay plain titles, so what the model answers is unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedNames {
    names: Vec<String>,
}

impl ListedNames {
    /// Names by item index, for `items`' titles and category paths.
    pub fn new<'a>(
        items: impl ExactSizeIterator<Item = (&'a str, &'a [String])> + Clone,
        labels: usize,
    ) -> Self {
        let total = items.len();
        let mut held: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        if labels > 0 {
            for (_, categories) in items.clone() {
                let distinct: std::collections::HashSet<&str> =
                    categories.iter().map(String::as_str).collect();
                for label in distinct {
                    *held.entry(label).or_default() += 1;
                }
            }
        }
        let informative =
            |label: &str| (held[label] as f64) < UNINFORMATIVE_LABEL_SHARE * total as f64;
        let names = items
            .map(|(title, categories)| {
                let shown: Vec<&str> = categories
                    .iter()
                    .map(String::as_str)
                    .filter(|l| informative(l))
                    // With no labels asked for, nothing is taken, so nothing is looked up.
                    .take(labels)
                    .collect();
                if shown.is_empty() {
                    title.to_string()
                } else {
                    format!("{title} (categories: {})", shown.join(", "))
                }
            })
            .collect();
        Self { names }
    }

    /// The names of a prepared dataset's items, with up to `labels` category labels each.
    pub fn of(prepared: &instructrec_data::Prepared, labels: usize) -> Self {
        let items = prepared.dataset.items.iter();
        Self::new(
            items.map(|i| (i.title.as_str(), i.categories.as_slice())),
            labels,
        )
    }

    pub fn get(&self, item: instructrec_data::ItemId) -> &str {
        &self.names[item.index()]
    }
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

    #[test]
    fn listed_names_show_the_informative_labels_only() {
        let path = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let items = [
            (
                "Fallout 4",
                path(&["Games Root", "Xbox One", "Games", "Shooter"]),
            ),
            ("A Pad", path(&["Games Root", "PC", "Accessories"])),
            ("Bare", path(&["Games Root"])),
            ("No Path", path(&[])),
        ];
        let view = || items.iter().map(|(t, c)| (*t, c.as_slice()));
        let names = ListedNames::new(view(), 2);
        let name = |i: u32| names.get(instructrec_data::ItemId(i)).to_string();
        // "Games Root" is held by 3 of 4 items, under the 90% share, so it is shown...
        assert_eq!(name(0), "Fallout 4 (categories: Games Root, Xbox One)");
        // ...until every item holds it.
        let everywhere: Vec<_> = items
            .iter()
            .map(|(t, c)| {
                let mut c = c.clone();
                if c.is_empty() {
                    c.push("Games Root".into());
                }
                (*t, c)
            })
            .collect();
        let names = ListedNames::new(everywhere.iter().map(|(t, c)| (*t, c.as_slice())), 2);
        let name = |i: u32| names.get(instructrec_data::ItemId(i)).to_string();
        assert_eq!(name(0), "Fallout 4 (categories: Xbox One, Games)");
        assert_eq!(name(1), "A Pad (categories: PC, Accessories)");
        assert_eq!(name(2), "Bare");
        let titles_only = ListedNames::new(view(), 0);
        assert_eq!(titles_only.get(instructrec_data::ItemId(0)), "Fallout 4");
    }
}
