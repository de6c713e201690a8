//! A model together with its tokenizer and trainable weights: creation from a seed, loading a
//! Hugging Face checkpoint directory, and atomic saving in the same layout.

use crate::config::T5Config;
use crate::error::{io_err, ModelError, Result};
use crate::generate::{generate_titles, Generated, TitleTrie};
use crate::score::{label_probabilities, score_candidates, CandidateScore, Encoded};
use crate::t5::T5;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokenizers::Tokenizer;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// What a [`VarMap`]-backed builder does with a tensor it does not hold yet.
enum Missing {
    /// Draw it from its `Init` with this generator (model creation from a recorded seed).
    Sample(Box<Mutex<ChaCha8Rng>>),
    /// Fail: every tensor must come from the checkpoint.
    Fail,
}

/// A `VarBuilder` backend over a `VarMap` that records which tensors the model asked for and
/// either samples new ones from a seeded generator or refuses them.
struct TrackedVarMap {
    varmap: VarMap,
    missing: Missing,
    requested: Arc<Mutex<Vec<String>>>,
    problem: Arc<Mutex<Option<LoadProblem>>>,
}

#[derive(Debug, Clone)]
enum LoadProblem {
    Missing(String),
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

fn sample_init(init: Init, shape: &Shape, rng: &mut ChaCha8Rng) -> candle_core::Result<Vec<f32>> {
    let n = shape.elem_count();
    let normal = |mean: f64, std: f64, rng: &mut ChaCha8Rng| -> candle_core::Result<Vec<f32>> {
        let d = Normal::new(mean, std).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((0..n).map(|_| d.sample(rng) as f32).collect())
    };
    let uniform = |lo: f64, hi: f64, rng: &mut ChaCha8Rng| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..hi) as f32).collect()
    };
    match init {
        Init::Const(v) => Ok(vec![v as f32; n]),
        Init::Randn { mean, stdev } => normal(mean, stdev, rng),
        Init::Uniform { lo, up } => Ok(uniform(lo, up, rng)),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Normal => normal(0.0, std, rng),
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    Ok(uniform(-bound, bound, rng))
                }
            }
        }
    }
}

impl SimpleBackend for TrackedVarMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.requested.lock().unwrap().push(name.to_string());
        let existing = self
            .varmap
            .data()
            .lock()
            .unwrap()
            .get(name)
            .map(|v| v.dims().to_vec());
        match (existing, &self.missing) {
            (Some(found), _) if found != s.dims() => {
                *self.problem.lock().unwrap() = Some(LoadProblem::Shape {
                    name: name.to_string(),
                    expected: s.dims().to_vec(),
                    found,
                });
                candle_core::bail!("shape mismatch for {name}")
            }
            (Some(_), _) => {}
            (None, Missing::Fail) => {
                *self.problem.lock().unwrap() = Some(LoadProblem::Missing(name.to_string()));
                candle_core::bail!("missing tensor {name}")
            }
            (None, Missing::Sample(rng)) => {
                let values = sample_init(h, &s, &mut rng.lock().unwrap())?;
                let t = Tensor::from_vec(values, s.clone(), dev)?.to_dtype(dtype)?;
                self.varmap
                    .data()
                    .lock()
                    .unwrap()
                    .insert(name.to_string(), Var::from_tensor(&t)?);
            }
        }
        self.varmap.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: tensors must be requested with a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().unwrap().contains_key(name)
    }
}

/// A `VarBuilder` whose new tensors are trainable `Var`s in `varmap`, drawn from each tensor's
/// `Init` with a ChaCha8 generator seeded by `seed` (candle's own CPU generator cannot be
/// seeded). Tensors already in `varmap` are reused. Creation order is the model's construction
/// order, so the same seed gives the same weights.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(TrackedVarMap {
            varmap: varmap.clone(),
            missing: Missing::Sample(Box::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)))),
            requested: Arc::default(),
            problem: Arc::default(),
        }),
        DType::F32,
        device.clone(),
    )
}

/// A T5 with its tokenizer and the `VarMap` holding its trainable weights.
pub struct Seq2Seq {
    pub model: T5,
    pub tokenizer: Tokenizer,
    pub varmap: VarMap,
}

impl Seq2Seq {
    /// A freshly initialised model. `cfg.vocab_size` is replaced by the tokenizer's size.
    pub fn new_random(
        cfg: &T5Config,
        tokenizer: Tokenizer,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let mut cfg = cfg.clone();
        cfg.vocab_size = tokenizer.get_vocab_size(true);
        check_special_tokens(&cfg, &tokenizer, Path::new("<tokenizer>"))?;
        let varmap = VarMap::new();
        let model = T5::new(&cfg, seeded_var_builder(&varmap, seed, device))?;
        Ok(Self {
            model,
            tokenizer,
            varmap,
        })
    }

    /// Loads a Hugging Face checkpoint directory: `config.json`, `model.safetensors` (or the
    /// shards listed in `model.safetensors.index.json`; f32, f16 or bf16, converted to f32) and
    /// `tokenizer.json`; or a PEFT LoRA adapter directory, applied to the base checkpoint its
    /// `adapter_config.json` names (see [`crate::adapter`]).
    pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        if crate::adapter::is_adapter_dir(dir) {
            return crate::adapter::load(dir, device);
        }
        Self::load_full(dir, device)
    }

    /// [`Self::load_hf_dir`] on the placement's device, with weights in its precision.
    pub fn load_on(dir: &Path, placement: crate::Placement) -> Result<Self> {
        let device = placement.device.open()?;
        Self::load_hf_dir(dir, &device)?.placed(&device, placement.precision)
    }

    /// Loads a full checkpoint directory (not an adapter).
    pub(crate) fn load_full(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let cfg: T5Config = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: config_path.clone(),
            source,
        })?;
        cfg.validate().map_err(|message| ModelError::Invalid {
            path: config_path.clone(),
            message,
        })?;

        let (tensors, origin) = load_weights(dir, device)?;
        let weights_desc = dir.join(if dir.join(WEIGHTS_FILE).exists() {
            WEIGHTS_FILE
        } else {
            WEIGHTS_INDEX_FILE
        });
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().unwrap();
            for (name, t) in tensors {
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        let requested = Arc::new(Mutex::new(Vec::new()));
        let problem = Arc::new(Mutex::new(None));
        let vb = VarBuilder::from_backend(
            Box::new(TrackedVarMap {
                varmap: varmap.clone(),
                missing: Missing::Fail,
                requested: requested.clone(),
                problem: problem.clone(),
            }),
            DType::F32,
            device.clone(),
        );
        let model = match T5::new(&cfg, vb) {
            Ok(m) => m,
            Err(e) => {
                return Err(match problem.lock().unwrap().take() {
                    Some(LoadProblem::Missing(name)) => ModelError::MissingTensor {
                        path: weights_desc,
                        name,
                    },
                    Some(LoadProblem::Shape {
                        name,
                        expected,
                        found,
                    }) => ModelError::Shape {
                        path: origin.get(&name).cloned().unwrap_or(weights_desc),
                        name,
                        expected,
                        found,
                    },
                    None => e.into(),
                })
            }
        };
        // Drop what the model does not use (duplicated embeddings, the decoder cross-attention
        // bias table some checkpoints carry) so that only trained weights are Vars.
        let used: HashSet<String> = requested.lock().unwrap().iter().cloned().collect();
        varmap.data().lock().unwrap().retain(|name, _| {
            let keep = used.contains(name);
            if !keep {
                tracing::debug!("{}: ignoring unused tensor {name}", dir.display());
            }
            keep
        });

        let tokenizer = read_tokenizer(&dir.join(TOKENIZER_FILE), &cfg)?;
        Ok(Self {
            model,
            tokenizer,
            varmap,
        })
    }

    /// The same model on `device` with weights in `precision`: every weight is copied there and
    /// the modules are rebuilt around the copies (the variable map is complete, so nothing is
    /// sampled). Loading always reads into f32, so that adapters are merged and checkpoints of
    /// any dtype are read by one path; this is the step that narrows them.
    pub fn placed(self, device: &Device, precision: crate::Precision) -> Result<Self> {
        let dtype = precision.dtype();
        if self.model.device().same_device(device) && self.model.dtype() == dtype {
            return Ok(self);
        }
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().unwrap();
            for (name, var) in self.varmap.data().lock().unwrap().iter() {
                let t = var.as_tensor().to_device(device)?.to_dtype(dtype)?;
                data.insert(name.clone(), Var::from_tensor(&t)?);
            }
        }
        let model = T5::new(
            self.model.config(),
            VarBuilder::from_varmap(&varmap, dtype, device),
        )?;
        Ok(Self {
            model,
            tokenizer: self.tokenizer,
            varmap,
        })
    }

    /// The same model with the tokenizer in `path`, which must fit its vocabulary.
    pub(crate) fn with_tokenizer_file(self, path: &Path) -> Result<Self> {
        let tokenizer = read_tokenizer(path, self.model.config())?;
        Ok(Self { tokenizer, ..self })
    }

    /// Writes `config.json`, `model.safetensors` (f32) and `tokenizer.json` into `dir`, which
    /// is replaced as a whole: everything is written to a temporary sibling directory first.
    pub fn save_hf_dir(&self, dir: &Path) -> Result<()> {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(".instructrec-save-")
            .tempdir_in(&parent)
            .map_err(io_err(&parent))?;
        let config_path = tmp.path().join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(self.model.config()).map_err(|source| {
            ModelError::Json {
                path: config_path.clone(),
                source,
            }
        })?;
        std::fs::write(&config_path, json + "\n").map_err(io_err(&config_path))?;
        let tensors: HashMap<String, Tensor> = self
            .varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let weights = tmp.path().join(WEIGHTS_FILE);
        candle_core::safetensors::save(&tensors, &weights).map_err(|e| ModelError::Invalid {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        let tok_path = tmp.path().join(TOKENIZER_FILE);
        self.tokenizer
            .save(&tok_path, false)
            .map_err(|e| ModelError::Tokenizer {
                path: tok_path.clone(),
                message: e.to_string(),
            })?;
        let staged = tmp.keep();
        if dir.exists() {
            let old = parent.join(format!(
                ".instructrec-old-{}-{}",
                std::process::id(),
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::rename(dir, &old).map_err(io_err(dir))?;
            std::fs::rename(&staged, dir).map_err(io_err(dir))?;
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        } else {
            std::fs::rename(&staged, dir).map_err(io_err(dir))?;
        }
        Ok(())
    }

    pub fn config(&self) -> &T5Config {
        self.model.config()
    }

    /// Token ids of `text` without the tokenizer's own special tokens, followed by EOS when
    /// `add_eos`, truncated to at most `max_len` ids (EOS kept last).
    pub fn tokenize(&self, text: &str, add_eos: bool, max_len: usize) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer {
                path: PathBuf::from("<tokenizer>"),
                message: format!("cannot encode {text:?}: {e}"),
            })?;
        let room = max_len.saturating_sub(usize::from(add_eos));
        let mut ids: Vec<u32> = enc.get_ids().iter().copied().take(room).collect();
        if add_eos {
            ids.push(self.config().eos_token_id);
        }
        Ok(ids)
    }

    /// A padded batch of source texts (each + EOS, at most `max_len` tokens): ids and mask,
    /// both `[b, longest]` u32.
    pub fn encode_batch(&self, texts: &[&str], max_len: usize) -> Result<(Tensor, Tensor)> {
        let rows = texts
            .iter()
            .map(|t| self.tokenize(t, true, max_len))
            .collect::<Result<Vec<_>>>()?;
        Ok(pad_batch(
            &rows,
            self.config().pad_token_id,
            self.model.device(),
        )?)
    }

    /// Encodes one instruction (+ EOS, at most `max_len` tokens) for scoring or generation.
    pub fn encode_instruction(&self, instruction: &str, max_len: usize) -> Result<Encoded> {
        let ids = self.tokenize(instruction, true, max_len)?;
        Ok(Encoded::new(&self.model, &ids)?)
    }

    /// Log-likelihood of each candidate text (+ EOS) given the instruction, in one batched
    /// decoder pass over a single encoding of the instruction.
    pub fn score(
        &self,
        instruction: &str,
        candidates: &[&str],
        limits: TokenLimits,
    ) -> Result<Vec<CandidateScore>> {
        let enc = self.encode_instruction(instruction, limits.source)?;
        let cands = candidates
            .iter()
            .map(|c| self.tokenize(c, true, limits.target))
            .collect::<Result<Vec<_>>>()?;
        Ok(score_candidates(&self.model, &enc, &cands)?)
    }

    /// Pointwise task: probability of the answer "yes" against "no".
    pub fn yes_probability(&self, instruction: &str, limits: TokenLimits) -> Result<f32> {
        Ok(self.choose(instruction, &["yes", "no"], limits)?[0])
    }

    /// Chooses between answer labels ("A"/"B", or the options' texts): each label's
    /// likelihood normalised over the labels.
    pub fn choose(
        &self,
        instruction: &str,
        labels: &[&str],
        limits: TokenLimits,
    ) -> Result<Vec<f32>> {
        let enc = self.encode_instruction(instruction, limits.source)?;
        let labels = labels
            .iter()
            .map(|l| self.tokenize(l, false, limits.target))
            .collect::<Result<Vec<_>>>()?;
        Ok(label_probabilities(&self.model, &enc, &labels)?)
    }

    /// A prefix trie over catalogue titles (each at most `max_len` tokens before EOS).
    pub fn title_trie(&self, titles: &[&str], max_len: usize) -> Result<TitleTrie> {
        let rows = titles
            .iter()
            .map(|t| self.tokenize(t, false, max_len))
            .collect::<Result<Vec<_>>>()?;
        Ok(TitleTrie::new(&rows, self.config().eos_token_id)?)
    }

    /// Matching: the `top_k` most likely catalogue titles for the instruction (beam search
    /// constrained to `trie`).
    pub fn generate(
        &self,
        instruction: &str,
        trie: &TitleTrie,
        top_k: usize,
        num_beams: usize,
        max_source_len: usize,
    ) -> Result<Vec<Generated>> {
        let enc = self.encode_instruction(instruction, max_source_len)?;
        Ok(generate_titles(&self.model, &enc, trie, top_k, num_beams)?)
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }
}

/// Maximum token counts for instructions (encoder) and answers (decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    pub source: usize,
    pub target: usize,
}

impl Default for TokenLimits {
    /// The paper's 512-token context; item titles rarely need more than 64.
    fn default() -> Self {
        Self {
            source: 512,
            target: 64,
        }
    }
}

/// Right-pads id rows to the longest: ids and mask (1 = token), both `[b, longest]` u32.
pub fn pad_batch(
    rows: &[Vec<u32>],
    pad: u32,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * longest);
    let mut mask = Vec::with_capacity(rows.len() * longest);
    for r in rows {
        ids.extend(
            r.iter()
                .copied()
                .chain(std::iter::repeat(pad))
                .take(longest),
        );
        mask.extend((0..longest).map(|i| u32::from(i < r.len())));
    }
    Ok((
        Tensor::from_vec(ids, (rows.len(), longest), device)?,
        Tensor::from_vec(mask, (rows.len(), longest), device)?,
    ))
}

/// If the tokenizer names T5's special tokens, their ids must be the config's.
fn check_special_tokens(cfg: &T5Config, tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    for (token, field, id) in [
        ("<pad>", "pad_token_id", cfg.pad_token_id),
        ("</s>", "eos_token_id", cfg.eos_token_id),
    ] {
        if let Some(found) = tokenizer.token_to_id(token) {
            if found != id {
                return Err(ModelError::Tokenizer {
                    path: path.to_path_buf(),
                    message: format!("{token} has id {found}, but the config's {field} is {id}"),
                });
            }
        }
    }
    Ok(())
}

/// Reads `tokenizer.json` and checks that it covers the model's vocabulary and agrees with its
/// special token ids.
fn read_tokenizer(path: &Path, cfg: &T5Config) -> Result<Tokenizer> {
    let tokenizer = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    check_vocab_sizes(tokenizer.get_vocab_size(true), cfg.vocab_size).map_err(|message| {
        ModelError::Tokenizer {
            path: path.to_path_buf(),
            message,
        }
    })?;
    check_special_tokens(cfg, &tokenizer, path)?;
    Ok(tokenizer)
}

type Weights = (HashMap<String, Tensor>, HashMap<String, PathBuf>);

/// Reads the single or sharded safetensors checkpoint in `dir` as f32 tensors, remembering
/// which file each came from.
fn load_weights(dir: &Path, device: &Device) -> Result<Weights> {
    let single = dir.join(WEIGHTS_FILE);
    let files = if single.exists() {
        vec![single]
    } else {
        let index_path = dir.join(WEIGHTS_INDEX_FILE);
        if !index_path.exists() {
            return Err(ModelError::Invalid {
                path: dir.to_path_buf(),
                message: format!("neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} found"),
            });
        }
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(&index_path).map_err(io_err(&index_path))?;
        let index: Index = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: index_path.clone(),
            source,
        })?;
        let shards: std::collections::BTreeSet<String> = index.weight_map.into_values().collect();
        shards.into_iter().map(|f| dir.join(f)).collect()
    };
    let mut tensors = HashMap::new();
    let mut origin = HashMap::new();
    for file in files {
        if !file.exists() {
            return Err(ModelError::Invalid {
                path: file,
                message: "listed in the shard index but missing".into(),
            });
        }
        let loaded =
            candle_core::safetensors::load(&file, device).map_err(|e| ModelError::Invalid {
                path: file.clone(),
                message: e.to_string(),
            })?;
        for (name, t) in loaded {
            let t = crate::ops::to_f32(t).map_err(|e| ModelError::Invalid {
                path: file.clone(),
                message: format!("tensor {name}: {e}"),
            })?;
            origin.insert(name.clone(), file.clone());
            tensors.insert(name, t);
        }
    }
    // Some exports keep only the per-stack copies of the tied input embedding.
    if !tensors.contains_key("shared.weight") {
        for alias in ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"] {
            if let Some(t) = tensors.get(alias).cloned() {
                tensors.insert("shared.weight".into(), t);
                break;
            }
        }
    }
    Ok((tensors, origin))
}

/// A tokenizer must cover the model's vocabulary: more tokens than rows give ids the model
/// cannot look up, and fewer leave rows (a model's item tokens, say) that no text reaches, which
/// happens when a tokenizer.json comes from another model. The one gap accepted is padding to a
/// multiple of 64, as Hugging Face's T5 checkpoints have (32,100 tokens, 32,128 rows).
fn check_vocab_sizes(tokens: usize, rows: usize) -> std::result::Result<(), String> {
    const PADDING: usize = 64;
    if tokens > rows {
        return Err(format!(
            "{tokens} tokens, more than the model's vocab_size {rows}"
        ));
    }
    if tokens < rows && rows != tokens.div_ceil(PADDING) * PADDING {
        return Err(format!(
            "{tokens} tokens, fewer than the model's vocab_size {rows}: the model's rows \
             {tokens}..{rows} would never be used (is this tokenizer.json from another model?); \
             only padding to a multiple of {PADDING} is accepted"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod vocab_tests {
    use super::check_vocab_sizes;

    #[test]
    fn a_tokenizer_must_cover_the_models_rows_up_to_padding() {
        assert!(check_vocab_sizes(300, 300).is_ok());
        assert!(check_vocab_sizes(32_100, 32_128).is_ok());
        assert!(check_vocab_sizes(250_100, 250_112).is_ok());
        let e = check_vocab_sizes(300, 302).unwrap_err();
        assert!(e.contains("fewer than the model's vocab_size 302"), "{e}");
        assert!(check_vocab_sizes(32_000, 32_128).is_err());
        assert!(check_vocab_sizes(301, 300)
            .unwrap_err()
            .contains("more than"));
    }
}
