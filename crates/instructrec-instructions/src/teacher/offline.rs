//! The default teacher: deterministic, network-free fills written from item metadata.
//!
//! A stated taste comes from what dominates a history (the platforms or areas and kinds of its
//! items, a recurring brand, recurring feature words); a vague need comes from the target
//! item's area, kind and feature words. Phrase banks give varied wording; every choice is drawn
//! from a generator seeded by (seed, request), so the same request always gets the same fill.
//! Titles are never used, and a fill that still happens to spell the target's title (a title
//! that is just a category name, say) is redrawn, then replaced by a metadata-free sentence.

use std::collections::{HashMap, HashSet};

use instructrec_data::{Dataset, Item, ItemId};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{Fill, FillRequest, Filled, Teacher, TeacherError, TeacherReport};
use crate::seeded_rng;
use crate::text::mentions_title;

/// A segment that at least this share of the catalogue carries is the catalogue's root
/// ("Video Games") and says nothing about an item.
const ROOT_SHARE: f64 = 0.8;
/// A segment that follows this many different parents is a facet ("Games", "Accessories"),
/// not an area such as a platform.
const FACET_PARENTS: usize = 5;
/// Feature words must recur across items to be descriptive rather than a game's proper names.
const KEYWORD_MIN_ITEMS: usize = 8;
const KEYWORD_MAX_SHARE: f64 = 0.05;
const REDRAWS: u64 = 6;

const TASTE_OPENERS: &[&str] = &[
    "I mostly buy {interests}.",
    "Most of what I pick up is {interests}.",
    "I'm really into {interests}.",
    "I keep coming back to {interests}.",
    "My shelf is mostly {interests}.",
    "I usually go for {interests}.",
    "Lately it's been a lot of {interests} for me.",
    "I'd call myself a fan of {interests}.",
    "If I'm spending money, it's usually on {interests}.",
];
const TASTE_BRAND: &[&str] = &[
    "I tend to stick with {brand}.",
    "A lot of my things are from {brand}.",
    "I have a soft spot for {brand}.",
    "{brand} is a name I trust.",
];
const TASTE_KEYWORDS: &[&str] = &[
    "I like things with {keywords}.",
    "Anything with {keywords} catches my eye.",
    "I'm drawn to {keywords}.",
    "{keywords} are a big plus for me.",
];
const TASTE_FLAVOUR: &[&str] = &[
    "I often end up in the {flavour} section.",
    "Plenty of my picks are {flavour} ones.",
];
const TASTE_BREADTH: &[&str] = &[
    "That said, I like to try a bit of everything.",
    "But I'm open to other things too.",
];
const TASTE_NOTHING: &[&str] = &[
    "I don't have one favourite kind of thing; I like variety.",
    "My taste is pretty broad, I'll try most things.",
];

const NEED_OPENERS: &[&str] = &[
    "I'm looking for {need}.",
    "I need {need}.",
    "Could you help me find {need}?",
    "I'd like to get {need}.",
    "I'm shopping for {need}.",
    "Any ideas for {need}?",
    "I want to pick up {need}.",
    "Looking for {need} at the moment.",
    "I'm in the market for {need}.",
];
const NEED_KEYWORDS: &[&str] = &[
    "Ideally something with {keywords}.",
    "Bonus points if it has {keywords}.",
    "What I care about most is {keywords}.",
    "It should have {keywords}, if possible.",
];
const NEED_BRAND: &[&str] = &[
    "I wouldn't mind if it's from {brand}.",
    "Something by {brand} would be nice.",
];
const NEED_FLAVOUR: &[&str] = &["Something from the {flavour} section would fit."];
const NEED_NOTHING: &[&str] = &[
    "I'm looking for something new to enjoy.",
    "I want to treat myself to something different.",
    "Surprise me with something I haven't tried yet.",
];

/// Function words, verbs and marketing words that describe nothing about a product. Sorted:
/// looked up by binary search.
const STOPWORDS: &[&str] = &[
    "ability",
    "able",
    "about",
    "access",
    "across",
    "additional",
    "advanced",
    "after",
    "against",
    "allow",
    "allowing",
    "allows",
    "along",
    "also",
    "always",
    "amazing",
    "among",
    "another",
    "around",
    "authentic",
    "available",
    "awesome",
    "back",
    "base",
    "based",
    "beautiful",
    "because",
    "become",
    "been",
    "before",
    "being",
    "best",
    "better",
    "between",
    "black",
    "blue",
    "bonus",
    "both",
    "brand",
    "bring",
    "brings",
    "build",
    "built",
    "challenging",
    "charge",
    "choice",
    "choose",
    "classic",
    "collect",
    "color",
    "colors",
    "come",
    "comes",
    "compatible",
    "complete",
    "completely",
    "content",
    "could",
    "create",
    "created",
    "creating",
    "custom",
    "customize",
    "dark",
    "deep",
    "design",
    "designed",
    "detailed",
    "device",
    "different",
    "discover",
    "does",
    "down",
    "dual",
    "during",
    "dynamic",
    "each",
    "earn",
    "easily",
    "easy",
    "edition",
    "either",
    "else",
    "enhanced",
    "enjoy",
    "enough",
    "entire",
    "epic",
    "even",
    "ever",
    "every",
    "exactly",
    "exciting",
    "exclusive",
    "experience",
    "experiences",
    "explore",
    "extra",
    "face",
    "fast",
    "favorite",
    "favourite",
    "feature",
    "features",
    "featuring",
    "feel",
    "fight",
    "find",
    "first",
    "five",
    "four",
    "free",
    "from",
    "full",
    "fully",
    "game",
    "gameplay",
    "games",
    "gaming",
    "give",
    "gives",
    "going",
    "gold",
    "good",
    "great",
    "green",
    "have",
    "help",
    "here",
    "hidden",
    "high",
    "hours",
    "huge",
    "improved",
    "include",
    "included",
    "includes",
    "including",
    "incredible",
    "intense",
    "into",
    "it's",
    "item",
    "items",
    "just",
    "keep",
    "latest",
    "legendary",
    "less",
    "lets",
    "licensed",
    "life",
    "light",
    "like",
    "little",
    "live",
    "long",
    "look",
    "lots",
    "made",
    "main",
    "make",
    "makes",
    "many",
    "massive",
    "master",
    "microsoft",
    "mode",
    "modes",
    "more",
    "most",
    "much",
    "multi",
    "multiple",
    "must",
    "near",
    "need",
    "needs",
    "never",
    "next",
    "nintendo",
    "number",
    "offer",
    "offers",
    "officially",
    "once",
    "only",
    "open",
    "orange",
    "order",
    "original",
    "other",
    "over",
    "part",
    "people",
    "perfect",
    "pick",
    "pink",
    "play",
    "player",
    "players",
    "playing",
    "plays",
    "playstation",
    "please",
    "plus",
    "possible",
    "power",
    "powerful",
    "product",
    "provides",
    "purple",
    "quality",
    "range",
    "ready",
    "real",
    "realistic",
    "really",
    "required",
    "right",
    "same",
    "save",
    "series",
    "several",
    "should",
    "show",
    "side",
    "silver",
    "simple",
    "since",
    "single",
    "size",
    "skill",
    "some",
    "sony",
    "special",
    "stand",
    "still",
    "style",
    "such",
    "support",
    "take",
    "takes",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "three",
    "through",
    "time",
    "times",
    "together",
    "tons",
    "totally",
    "touch",
    "true",
    "turn",
    "type",
    "ultimate",
    "unique",
    "unlimited",
    "unlock",
    "upon",
    "used",
    "uses",
    "using",
    "variety",
    "various",
    "very",
    "video",
    "want",
    "ways",
    "well",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "white",
    "will",
    "with",
    "within",
    "without",
    "work",
    "works",
    "world",
    "would",
    "xbox",
    "year",
    "years",
    "yellow",
    "your",
    "yours",
];

/// The descriptive facts the teacher reads off one item.
#[derive(Debug, Default)]
struct Facts {
    /// Most specific non-facet segment above the leaf ("PlayStation 4").
    area: Option<String>,
    /// The leaf segment, written as a common noun when it is one ("gaming mice").
    kind: Option<String>,
    /// The kind is a catalogue-wide facet ("games"): too broad to stand for a need alone.
    broad_kind: bool,
    /// Other non-facet segments above the leaf ("Kids & Family").
    flavours: Vec<String>,
    brand: Option<String>,
    keywords: Vec<String>,
}

/// What the teacher knows about the catalogue, computed once per fill call.
struct Catalogue<'a> {
    items: &'a [Item],
    facts: Vec<Facts>,
}

impl<'a> Catalogue<'a> {
    fn new(dataset: &'a Dataset) -> Self {
        let items = &dataset.items;
        let n = items.len().max(1);
        let mut df: HashMap<&str, usize> = HashMap::new();
        let mut parents: HashMap<&str, HashSet<&str>> = HashMap::new();
        let mut word_df: HashMap<String, usize> = HashMap::new();
        for item in items {
            for (i, seg) in item.categories.iter().enumerate() {
                *df.entry(seg).or_default() += 1;
                if i > 0 {
                    parents
                        .entry(seg)
                        .or_default()
                        .insert(&item.categories[i - 1]);
                }
            }
            for w in feature_words(item) {
                *word_df.entry(w).or_default() += 1;
            }
        }
        let is_root = |s: &str| df.get(s).copied().unwrap_or(0) as f64 >= ROOT_SHARE * n as f64;
        let is_facet = |s: &str| parents.get(s).is_some_and(|p| p.len() >= FACET_PARENTS);
        let max_keyword_items = (KEYWORD_MAX_SHARE * n as f64) as usize;
        let facts = items
            .iter()
            .map(|item| {
                let segs: Vec<&str> = item
                    .categories
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !is_root(s))
                    .collect();
                let (kind, above) = match segs.split_last() {
                    Some((leaf, above)) if !above.is_empty() => (Some(as_noun(leaf)), above),
                    _ => (None, &segs[..]),
                };
                // Paths run umbrella ("Kids & Family") > area (a platform) > facet ("Accessories")
                // > sub-kinds > leaf. Below the first facet everything is a kind, not an area.
                let before_facet = match above.iter().position(|s| is_facet(s)) {
                    Some(i) => &above[..i],
                    None => above,
                };
                let mut areas: Vec<&str> = before_facet.to_vec();
                // The rarest is the most specific one (a platform rather than "Kids & Family").
                areas.sort_by_key(|s| (df.get(s).copied().unwrap_or(0), *s));
                let area = areas.first().map(|s| s.to_string());
                let flavours = areas.iter().skip(1).map(|s| s.to_string()).collect();
                let title: HashSet<String> = crate::text::normalised_words(&item.title)
                    .into_iter()
                    .collect();
                let mut keywords: Vec<(usize, String)> = feature_words(item)
                    .filter(|w| !title.contains(w))
                    .filter_map(|w| {
                        let d = word_df.get(&w).copied().unwrap_or(0);
                        (KEYWORD_MIN_ITEMS..=max_keyword_items.max(KEYWORD_MIN_ITEMS))
                            .contains(&d)
                            .then_some((d, w))
                    })
                    .collect();
                keywords.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                let broad_kind = segs.last().is_some_and(|leaf| is_facet(leaf));
                Facts {
                    area,
                    broad_kind,
                    kind: kind.filter(|k| !segs.is_empty() && !k.is_empty()),
                    flavours,
                    brand: item.brand.clone().filter(|b| !b.trim().is_empty()),
                    keywords: keywords.into_iter().take(3).map(|(_, w)| w).collect(),
                }
            })
            .collect();
        Self { items, facts }
    }

    fn facts(&self, item: ItemId) -> &Facts {
        &self.facts[item.index()]
    }

    fn title(&self, item: ItemId) -> &str {
        &self.items[item.index()].title
    }
}

/// Distinct lower-cased alphabetic words of an item's feature sentences.
fn feature_words(item: &Item) -> impl Iterator<Item = String> + '_ {
    let mut seen = HashSet::new();
    item.features
        .iter()
        .flat_map(|f| f.split(|c: char| !c.is_alphabetic()))
        .filter(|w| w.len() >= 4)
        .map(str::to_lowercase)
        .filter(|w| STOPWORDS.binary_search(&w.as_str()).is_err())
        .filter(move |w| seen.insert(w.clone()))
}

/// Category names are title-cased ("Gaming Mice"); inside a sentence they read as common nouns,
/// unless they are names ("PlayStation 4", "PC").
fn as_noun(segment: &str) -> String {
    let is_name = segment.chars().any(|c| c.is_ascii_digit())
        || segment
            .split_whitespace()
            .any(|w| w.chars().filter(|c| c.is_uppercase()).count() > 1);
    if is_name {
        segment.to_string()
    } else {
        segment.to_lowercase()
    }
}

/// "a", "a and b", "a, b and c".
fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Picks a phrase from a bank and records which one in the phrasing frame.
fn pick(rng: &mut ChaCha8Rng, bank: &[&str], tag: char, frame: &mut Vec<String>) -> String {
    let i = rng.random_range(0..bank.len());
    frame.push(format!("{tag}{i}"));
    bank[i].to_string()
}

/// How an (area, kind) pair reads: "games for PlayStation 4" or "PlayStation 4 games".
fn describe(area: Option<&str>, kind: Option<&str>, form: usize) -> Option<String> {
    match (area, kind) {
        (Some(a), Some(k)) if k.to_lowercase().contains(&a.to_lowercase()) => Some(k.to_string()),
        (Some(a), Some(k)) => Some(if form == 0 {
            format!("{k} for {a}")
        } else {
            format!("{a} {k}")
        }),
        (Some(a), None) => Some(if form == 0 {
            format!("things for {a}")
        } else {
            format!("{a} stuff")
        }),
        (None, Some(k)) => Some(k.to_string()),
        (None, None) => None,
    }
}

/// Counts in first-seen order so that ties break the same way every time.
fn ranked<T: PartialEq>(values: impl Iterator<Item = T>) -> Vec<(T, usize)> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(x, _)| *x == v) {
            Some((_, c)) => *c += 1,
            None => counts.push((v, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

#[derive(Debug, Clone, Copy)]
pub struct OfflineTeacher {
    seed: u64,
}

impl OfflineTeacher {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    fn taste(&self, cat: &Catalogue, history: &[ItemId], rng: &mut ChaCha8Rng) -> Fill {
        let facts: Vec<&Facts> = history.iter().map(|i| cat.facts(*i)).collect();
        let mut frame = Vec::new();
        let form = rng.random_range(0..2);
        frame.push(format!("f{form}"));
        let pairs = ranked(facts.iter().filter_map(|f| {
            let area = f.area.as_deref();
            // "PC" alone says less than "PC games": a bare area joins a kind on the same area.
            let kind = f.kind.as_deref().or_else(|| {
                facts
                    .iter()
                    .find(|g| g.area.as_deref() == area && g.kind.is_some())?
                    .kind
                    .as_deref()
            });
            describe(area, kind, form)
        }));
        let interests: Vec<String> = pairs.iter().take(2).map(|(p, _)| p.clone()).collect();
        let mut sentences = Vec::new();
        if interests.is_empty() {
            sentences.push(pick(rng, TASTE_NOTHING, 'n', &mut frame));
        } else {
            let opener = pick(rng, TASTE_OPENERS, 'o', &mut frame);
            sentences.push(opener.replace("{interests}", &join_and(&interests)));
        }
        let mut extras = Vec::new();
        let brands = ranked(facts.iter().filter_map(|f| f.brand.as_deref()));
        if let Some((brand, count)) = brands.first() {
            if *count >= 2 && *count * 3 >= history.len() && rng.random_bool(0.8) {
                extras.push(pick(rng, TASTE_BRAND, 'b', &mut frame).replace("{brand}", brand));
            }
        }
        let words = ranked(
            facts
                .iter()
                .flat_map(|f| f.keywords.iter().map(String::as_str)),
        );
        let recurring: Vec<String> = words
            .iter()
            .filter(|(_, c)| *c >= 2 || history.len() <= 2)
            .take(2)
            .map(|(w, _)| w.to_string())
            .collect();
        if !recurring.is_empty() && rng.random_bool(0.7) {
            let s = pick(rng, TASTE_KEYWORDS, 'k', &mut frame)
                .replace("{keywords}", &join_and(&recurring));
            extras.push(capitalise(&s));
        }
        let flavours = ranked(
            facts
                .iter()
                .flat_map(|f| f.flavours.iter().map(String::as_str)),
        );
        if let Some((flavour, count)) = flavours.first() {
            if *count * 2 >= history.len() && rng.random_bool(0.6) {
                extras
                    .push(pick(rng, TASTE_FLAVOUR, 'l', &mut frame).replace("{flavour}", flavour));
            }
        }
        if pairs.len() >= 3 && rng.random_bool(0.5) {
            extras.push(pick(rng, TASTE_BREADTH, 'w', &mut frame));
        }
        extras.shuffle(rng);
        sentences.extend(extras);
        Fill {
            text: sentences.join(" "),
            phrasing: Some(format!("taste:{}", frame.join(","))),
        }
    }

    fn need(&self, cat: &Catalogue, item: ItemId, rng: &mut ChaCha8Rng) -> Fill {
        let f = cat.facts(item);
        let mut frame = Vec::new();
        let mut forms: Vec<(usize, String)> = Vec::new();
        if let (Some(_), Some(_)) = (&f.area, &f.kind) {
            forms.push((
                0,
                format!(
                    "some {}",
                    describe(f.area.as_deref(), f.kind.as_deref(), 0).unwrap_or_default()
                ),
            ));
            forms.push((
                1,
                format!(
                    "some {}",
                    describe(f.area.as_deref(), f.kind.as_deref(), 1).unwrap_or_default()
                ),
            ));
        }
        if let Some(area) = &f.area {
            forms.push((2, format!("something for my {area}")));
        }
        if let Some(kind) = f
            .kind
            .as_ref()
            .filter(|_| !f.broad_kind || f.area.is_none())
        {
            forms.push((3, format!("some new {kind}")));
        }
        if let (true, Some(brand)) = (forms.is_empty(), &f.brand) {
            forms.push((4, format!("something from {brand}")));
        }
        let Some((form, need)) = forms.choose(rng).cloned() else {
            return Fill {
                text: pick(rng, NEED_NOTHING, 'n', &mut frame),
                phrasing: Some(format!("need:{}", frame.join(","))),
            };
        };
        frame.push(format!("f{form}"));
        let mut sentences = vec![pick(rng, NEED_OPENERS, 'o', &mut frame).replace("{need}", &need)];
        let mut extras = Vec::new();
        if !f.keywords.is_empty() && rng.random_bool(0.6) {
            let k = rng.random_range(1..=f.keywords.len().min(2));
            let s = pick(rng, NEED_KEYWORDS, 'k', &mut frame)
                .replace("{keywords}", &join_and(&f.keywords[..k]));
            extras.push(s);
        }
        if let (Some(brand), true) = (&f.brand, form != 4) {
            if rng.random_bool(0.25) {
                extras.push(pick(rng, NEED_BRAND, 'b', &mut frame).replace("{brand}", brand));
            }
        }
        if let Some(flavour) = f.flavours.first() {
            if rng.random_bool(0.4) {
                extras.push(pick(rng, NEED_FLAVOUR, 'l', &mut frame).replace("{flavour}", flavour));
            }
        }
        extras.shuffle(rng);
        sentences.extend(extras);
        Fill {
            text: sentences.join(" "),
            phrasing: Some(format!("need:{}", frame.join(","))),
        }
    }

    fn one(&self, cat: &Catalogue, request: &FillRequest) -> Fill {
        let title = cat.title(request.avoid());
        for attempt in 0..REDRAWS {
            let mut rng = self.rng(request, attempt);
            let fill = match request {
                FillRequest::Preference { history, .. } => self.taste(cat, history, &mut rng),
                FillRequest::Intention { item, .. } => self.need(cat, *item, &mut rng),
            };
            if !mentions_title(&fill.text, title) {
                return fill;
            }
        }
        let mut rng = self.rng(request, REDRAWS);
        let (bank, tag) = match request {
            FillRequest::Preference { .. } => (TASTE_NOTHING, "taste"),
            FillRequest::Intention { .. } => (NEED_NOTHING, "need"),
        };
        let mut frame = Vec::new();
        let text = pick(&mut rng, bank, 'n', &mut frame);
        Fill {
            text,
            phrasing: Some(format!("{tag}:{}", frame.join(","))),
        }
    }

    fn rng(&self, request: &FillRequest, attempt: u64) -> ChaCha8Rng {
        let mut parts = vec![request.user().0 as u64, attempt];
        match request {
            FillRequest::Preference { history, avoid, .. } => {
                parts.push(1);
                parts.push(avoid.0 as u64);
                parts.extend(history.iter().map(|i| i.0 as u64));
            }
            FillRequest::Intention { item, .. } => {
                parts.push(2);
                parts.push(item.0 as u64);
            }
        }
        seeded_rng(self.seed, "offline-teacher", &parts)
    }
}

impl Teacher for OfflineTeacher {
    fn fill(&self, dataset: &Dataset, requests: &[FillRequest]) -> Result<Filled, TeacherError> {
        let cat = Catalogue::new(dataset);
        let fills: Vec<Fill> = requests.par_iter().map(|r| self.one(&cat, r)).collect();
        let report = TeacherReport {
            teacher: "offline".into(),
            fills: fills.len(),
            ..Default::default()
        };
        Ok(Filled { fills, report })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn category_names_read_as_nouns_unless_they_are_names() {
        assert_eq!(as_noun("Gaming Mice"), "gaming mice");
        assert_eq!(as_noun("PlayStation 4"), "PlayStation 4");
        assert_eq!(as_noun("PC"), "PC");
        assert_eq!(
            describe(Some("PC"), Some("gaming mice"), 0).unwrap(),
            "gaming mice for PC"
        );
        assert_eq!(
            describe(Some("Puzzles"), Some("jigsaw puzzles"), 1).unwrap(),
            "jigsaw puzzles"
        );
        assert_eq!(
            join_and(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }
}
