//! A T5-compatible tokenizer trained on the project's own text (catalogue titles and
//! categories, instruction texts), for models created from a preset.
//!
//! Layout as in T5's tokenizer.json: `<pad>` = 0, `</s>` = 1, `<unk>` = 2, the learned pieces,
//! then the span-corruption sentinels at the top with `<extra_id_0>` the highest id; Metaspace
//! pre-tokenization (`▁` marks a word start) and `</s>` appended by the post-processor.
//!
//! The pieces are byte-pair merges, not T5's Unigram: the `tokenizers` crate's Unigram trainer
//! seeds its pieces from the *distinct* words, so a frequent word that is part of no other word
//! ("▁is", "▁a", "▁has") never became a piece and was spelt out letter by letter. BPE merges
//! by counted pair frequency, so the commonest words are whole pieces; on the default recipe's
//! instructions it made test prompts about 28% shorter (docs/training.md). The T5 code reads
//! either model from tokenizer.json.

use std::path::Path;

use instructrec_data::atomic::write_atomic;
use instructrec_instructions::item_token_titles;
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::bpe::{BpeTrainer, Vocab, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::{Replace, Sequence, Strip, NFKC};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizedString, Normalizer, NormalizerWrapper, Tokenizer};

use crate::error::{io_err, Result, TrainError};

pub const PAD: &str = "<pad>";
pub const EOS: &str = "</s>";
pub const UNK: &str = "<unk>";
pub const PAD_ID: u32 = 0;
pub const EOS_ID: u32 = 1;
pub const UNK_ID: u32 = 2;

/// T5's sentinel for the `n`-th masked span.
pub fn sentinel(n: usize) -> String {
    format!("<extra_id_{n}>")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenizerOptions {
    /// Total vocabulary, special tokens and sentinels included.
    pub vocab_size: usize,
    /// Number of `<extra_id_N>` sentinels (T5 uses 100).
    pub extra_ids: usize,
}

impl Default for TokenizerOptions {
    fn default() -> Self {
        Self {
            vocab_size: 8000,
            extra_ids: 100,
        }
    }
}

/// Id of sentinel `n` in a tokenizer laid out by [`train_tokenizer`].
pub fn sentinel_id(tokenizer: &Tokenizer, n: usize) -> Result<u32> {
    tokenizer
        .token_to_id(&sentinel(n))
        .ok_or_else(|| TrainError::Config(format!("tokenizer has no {}", sentinel(n))))
}

/// Trains the tokenizer on `lines`. A small corpus may yield fewer pieces than asked for; the
/// sentinels then still sit at the top of the smaller vocabulary.
///
/// The same lines give the same tokenizer, byte for byte: the BPE trainer counts words in hash
/// maps, but picks each merge by its count and breaks ties by the pair's ids, which follow the
/// sorted alphabet and the earlier merges, so no map's order reaches the result.
pub fn train_tokenizer<I, S>(lines: I, options: TokenizerOptions) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let specials = [PAD, EOS, UNK];
    let learned = options
        .vocab_size
        .checked_sub(options.extra_ids)
        .filter(|n| *n > specials.len())
        .ok_or_else(|| {
            TrainError::Config(format!(
                "vocabulary size {} leaves no room for pieces next to {} sentinels",
                options.vocab_size, options.extra_ids
            ))
        })?;
    let special_tokens = |tokens: &mut dyn Iterator<Item = String>| -> Vec<AddedToken> {
        tokens.map(|s| AddedToken::from(s, true)).collect()
    };
    // The trainer puts the special tokens first, in this order, then the merges.
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .show_progress(false)
        .vocab_size(learned)
        .special_tokens(special_tokens(&mut specials.iter().map(|s| s.to_string())))
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_normalizer(Some(normalizer()?))?;
    tokenizer.with_pre_tokenizer(Some(metaspace()));
    tokenizer.train(&mut trainer, lines)?;

    // Sentinels go on top, `<extra_id_0>` highest, as in T5; the merges name pieces by text,
    // so they carry over to the new ids unchanged.
    let ModelWrapper::BPE(trained) = tokenizer.get_model() else {
        unreachable!("the tokenizer was built with a BPE model")
    };
    let mut pieces: Vec<(String, u32)> = trained.get_vocab().into_iter().collect();
    pieces.sort_by_key(|(_, id)| *id);
    let mut vocab: Vec<String> = pieces.into_iter().map(|(piece, _)| piece).collect();
    vocab.extend((0..options.extra_ids).rev().map(sentinel));
    let merges = serde_json::to_value(trained)
        .ok()
        .and_then(|mut model| {
            serde_json::from_value::<Vec<(String, String)>>(model["merges"].take()).ok()
        })
        .ok_or_else(|| TrainError::Config("the trained BPE model lists no merges".into()))?;
    let model = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .enumerate()
                .map(|(id, piece)| (piece, id as u32))
                .collect::<Vocab>(),
            merges,
        )
        .unk_token(UNK.to_string())
        .fuse_unk(true)
        .build()
        .map_err(TrainError::Tokenizer)?;

    tokenizer.with_model(model);
    tokenizer.with_decoder(Some(MetaspaceDecoder::new(
        '▁',
        PrependScheme::Always,
        true,
    )));
    tokenizer.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single(format!("$A:0 {EOS}:0"))
            .and_then(|b| b.try_pair(format!("$A:0 {EOS}:0 $B:0 {EOS}:0")))
            .map_err(|e| TrainError::Config(format!("post-processor template: {e}")))?
            .special_tokens(vec![(EOS, EOS_ID)])
            .build()
            .map_err(|e| TrainError::Config(format!("post-processor: {e}")))?,
    ));
    tokenizer.add_special_tokens(special_tokens(
        &mut specials
            .iter()
            .map(|s| s.to_string())
            .chain((0..options.extra_ids).rev().map(sentinel)),
    ))?;
    Ok(tokenizer)
}

/// Gives every catalogue title of two words or more one token of its own, appended after the
/// learned pieces and the sentinels. Wherever a title appears whole in a text (a history, a
/// candidate list, a target) it is then one symbol whose embedding is learned like an item id
/// in SASRec, so a small model trained for minutes can pick up who-buys-what-after-what, which
/// it cannot learn from a dozen word pieces per title in that time. Titles stay plain text
/// everywhere else (instructions, files, the API); only the tokenizer knows. One-word titles
/// ("Doom", "One") are left out: as tokens they would swallow ordinary words of the prompts.
/// Titles that the tokenizer's normalizer makes equal ("Star Wars" with a no-break space and
/// with a plain one) share one token. Returns how many tokens were added.
pub fn add_item_tokens<'a>(
    tokenizer: &mut Tokenizer,
    titles: impl IntoIterator<Item = &'a str>,
) -> Result<usize> {
    // Added tokens are matched on normalized text: two tokens with one normalized form would
    // both match, and which id wins changes from process to process (a hash map's order), so
    // the same text would encode differently in training, resuming and scoring.
    let normalizer = tokenizer.get_normalizer();
    let kept = item_token_titles(titles, |title| {
        let mut form = NormalizedString::from(title);
        if let Some(n) = normalizer {
            n.normalize(&mut form).map_err(TrainError::Tokenizer)?;
        }
        Ok::<_, TrainError>(form.get().to_string())
    })?;
    let tokens = kept
        .into_iter()
        .map(|t| AddedToken::from(t, false).single_word(true));
    Ok(tokenizer.add_tokens(tokens)?)
}

/// A title's normal form under the normalizer of the tokenizers this crate trains: what
/// `instructrec export --item-tokens` keeps one title of, as [`add_item_tokens`] does.
pub fn title_form() -> Result<impl Fn(&str) -> Result<String>> {
    let normalizer = normalizer()?;
    Ok(move |title: &str| {
        let mut form = NormalizedString::from(title);
        normalizer.normalize(&mut form)?;
        Ok(form.get().to_string())
    })
}

fn normalizer() -> Result<NormalizerWrapper> {
    // SentencePiece's default: NFKC, no leading/trailing spaces, runs of spaces collapsed.
    let collapse = Replace::new(" {2,}", " ").map_err(TrainError::Tokenizer)?;
    Ok(Sequence::new(vec![
        NFKC.into(),
        Strip::new(true, true).into(),
        collapse.into(),
    ])
    .into())
}

fn metaspace() -> Metaspace {
    Metaspace::new('▁', PrependScheme::Always, true)
}

/// Writes tokenizer.json atomically (temp file in the same directory, then rename).
pub fn save_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let json = tokenizer.to_string(true).map_err(TrainError::Tokenizer)?;
    write_atomic(path, json.as_bytes()).map_err(io_err(path))
}

pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot read tokenizer: {e}"),
    })
}

/// The non-blank lines of a plain-text corpus file, trimmed, read one at a time.
pub fn corpus_lines(path: &Path) -> Result<impl Iterator<Item = Result<String>> + Send> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let owned = path.to_path_buf();
    Ok(
        std::io::BufRead::lines(std::io::BufReader::new(file)).filter_map(move |line| match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(Ok(line.trim().to_string())),
            Err(e) => Some(Err(io_err(&owned)(e))),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Titles and category paths of the first 600 Amazon Games items.
    pub(crate) fn corpus() -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/datasets/amazon-games/items.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("shared datasets present");
        let mut out = Vec::new();
        for line in text.lines().take(600) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(t) = v["title"].as_str() {
                out.push(t.to_string());
            }
            if let Some(c) = v["categories_raw"].as_array() {
                let c: Vec<&str> = c.iter().filter_map(|x| x.as_str()).collect();
                out.push(c.join(", "));
            }
        }
        out
    }

    fn small() -> TokenizerOptions {
        TokenizerOptions {
            vocab_size: 600,
            extra_ids: 100,
        }
    }

    #[test]
    fn special_tokens_sit_where_t5_puts_them() {
        let tok = train_tokenizer(corpus().iter(), small()).unwrap();
        assert_eq!(tok.get_vocab_size(true), 600);
        assert_eq!(tok.token_to_id(PAD), Some(PAD_ID));
        assert_eq!(tok.token_to_id(EOS), Some(EOS_ID));
        assert_eq!(tok.token_to_id(UNK), Some(UNK_ID));
        assert_eq!(sentinel_id(&tok, 0).unwrap(), 599);
        assert_eq!(sentinel_id(&tok, 99).unwrap(), 500);
        let enc = tok.encode("Zelda <extra_id_0> Mario", true).unwrap();
        let ids = enc.get_ids();
        assert_eq!(*ids.last().unwrap(), EOS_ID, "post-processor appends </s>");
        assert!(
            ids.contains(&599),
            "sentinel kept whole: {:?}",
            enc.get_tokens()
        );
    }

    /// The Unigram trainer this replaced spelt "is", "a" and "has" out letter by letter, however
    /// often they came: its seed pieces came from the distinct words only.
    #[test]
    fn frequent_short_words_are_whole_pieces() {
        let sentence = "Here is what this customer has bought so far: a game that has a story.";
        let mut lines = corpus();
        lines.extend(std::iter::repeat_n(sentence.to_string(), 50));
        let tok = train_tokenizer(lines.iter(), small()).unwrap();
        let tokens = tok.encode(sentence, false).unwrap().get_tokens().to_vec();
        for word in ["▁is", "▁a", "▁has", "▁so", "▁what"] {
            assert!(tokens.iter().any(|t| t == word), "{word} split: {tokens:?}");
        }
    }

    #[test]
    fn item_titles_become_single_tokens() {
        let mut tok = train_tokenizer(corpus().iter(), small()).unwrap();
        let titles = ["Halo 3 - Xbox 360", "Halo 3: ODST - Xbox 360", "Doom"];
        assert_eq!(
            add_item_tokens(&mut tok, titles).unwrap(),
            2,
            "one-word titles get no token"
        );
        assert_eq!(tok.get_vocab_size(true), 602);
        let halo = tok.token_to_id("Halo 3 - Xbox 360").unwrap();
        let odst = tok.token_to_id("Halo 3: ODST - Xbox 360").unwrap();
        assert!(halo >= 600 && odst >= 600 && halo != odst);
        let ids = |text: &str| tok.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ids("Halo 3 - Xbox 360"), vec![halo, EOS_ID]);
        let prompt = ids("Bought so far: Halo 3: ODST - Xbox 360; Halo 3 - Xbox 360. Next?");
        assert_eq!(prompt.iter().filter(|&&i| i == odst).count(), 1);
        assert_eq!(prompt.iter().filter(|&&i| i == halo).count(), 1);
        // Not inside a longer word, and the pieces still cover text around titles.
        assert!(!ids("Halo 3 - Xbox 3600").contains(&halo));
        // Metaspace starts every segment after an added token with a word boundary, so the
        // decoded text gains a space before the full stop; the title itself comes back whole.
        let text = "Bought so far: Halo 3 - Xbox 360. Next?";
        assert!(!ids(text).contains(&UNK_ID));
        assert_eq!(
            tok.decode(&ids(text), true).unwrap(),
            "Bought so far: Halo 3 - Xbox 360 . Next?"
        );
    }

    /// Amazon's catalogue has such pairs ("Star Wars: Republic Commando" with no-break spaces
    /// and with plain ones); with a token each, the same title encoded to one id or the other
    /// depending on the process.
    #[test]
    fn titles_equal_after_normalizing_share_one_token() {
        let mut tok = train_tokenizer(corpus().iter(), small()).unwrap();
        let plain = "Star Wars: Republic Commando";
        let no_break = "Star\u{a0}Wars:\u{a0}Republic\u{a0}Commando";
        assert_eq!(add_item_tokens(&mut tok, [no_break, plain]).unwrap(), 1);
        let ids = |text: &str| tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids(plain).len(), 1);
        assert_eq!(ids(plain), ids(no_break));
    }

    /// The `tokenizers` trainer iterates hash maps whose seeds change with every map, so
    /// trainings differed (12 of 300 pieces swapped ids between two runs of one recipe).
    #[test]
    fn training_is_deterministic() {
        let lines = corpus();
        let vocab = |t: &Tokenizer| {
            let mut v: Vec<(String, u32)> = t.get_vocab(true).into_iter().collect();
            v.sort();
            v
        };
        let first = train_tokenizer(lines.iter(), small()).unwrap();
        for _ in 0..4 {
            let again = train_tokenizer(lines.iter(), small()).unwrap();
            assert_eq!(vocab(&again), vocab(&first));
            assert_eq!(
                again.to_string(false).unwrap(),
                first.to_string(false).unwrap()
            );
        }
    }

    #[test]
    fn round_trips_and_ids_survive_saving() {
        let tok = train_tokenizer(corpus().iter(), small()).unwrap();
        let text = "The Legend of Zelda: Breath of the Wild - Nintendo Switch";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert!(!ids.contains(&UNK_ID));
        assert_eq!(tok.decode(&ids, true).unwrap(), text);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        save_tokenizer(&tok, &path).unwrap();
        let reloaded = load_tokenizer(&path).unwrap();
        assert_eq!(
            reloaded.encode(text, true).unwrap().get_ids(),
            tok.encode(text, true).unwrap().get_ids()
        );
    }
}
