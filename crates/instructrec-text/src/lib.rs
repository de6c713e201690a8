//! Sentence embeddings for the text baselines (DSSM, TEM, the two-tower matcher): a BERT
//! encoder read from a directory the user gives (config.json, model.safetensors,
//! tokenizer.json; all-MiniLM-L6-v2 is the intended one), run by candle-transformers, with
//! attention-masked mean pooling and L2 normalisation, the way sentence-transformers pools
//! that model. Nothing is downloaded: the directory must already hold the files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Longest input in tokens. all-MiniLM-L6-v2's tokenizer.json truncates at 128; titles and
/// queries are far shorter, so this only bounds pathological inputs.
pub const MAX_TOKENS: usize = 128;

pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    dir: PathBuf,
    weights_hash: String,
    device: Device,
}

impl SentenceEncoder {
    /// Loads a BERT checkpoint directory. The tokenizer's own padding is replaced by padding to
    /// the longest input of each batch: all-MiniLM-L6-v2 ships a tokenizer.json that pads every
    /// input to 128 tokens, which is correct (the mask hides the padding) but several times
    /// slower for short titles.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let file = |name: &str| {
            let p = dir.join(name);
            if !p.exists() {
                bail!(
                    "{} is missing: the text encoder directory needs config.json, \
                     model.safetensors and tokenizer.json",
                    p.display()
                );
            }
            Ok(p)
        };
        let config_path = file("config.json")?;
        let weights_path = file("model.safetensors")?;
        let tokenizer_path = file("tokenizer.json")?;
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?,
        )
        .with_context(|| format!("parsing {} as a BERT config", config_path.display()))?;
        let dim =
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&config_path)?)?
                ["hidden_size"]
                .as_u64()
                .with_context(|| format!("{}: no hidden_size", config_path.display()))?
                as usize;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", tokenizer_path.display()))?;
        let pad = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..pad
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("setting truncation: {e}"))?;
        let bytes = std::fs::read(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let weights_hash = hex::encode(Sha256::digest(&bytes));
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        // Checkpoints saved from BertModel have bare names; ones saved from a task model
        // (BertForMaskedLM, ...) prefix them with "bert.".
        let model = BertModel::load(vb.clone(), &config)
            .or_else(|_| BertModel::load(vb.pp("bert"), &config))
            .with_context(|| format!("loading BERT weights from {}", weights_path.display()))?;
        Ok(Self {
            model,
            tokenizer,
            dim,
            dir: dir.to_path_buf(),
            weights_hash,
            device,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SHA-256 of model.safetensors, for reports and checkpoint metadata.
    pub fn weights_hash(&self) -> &str {
        &self.weights_hash
    }

    /// One unit-length vector per text, shape (texts, dim).
    pub fn encode(&self, texts: &[&str]) -> anyhow::Result<Tensor> {
        if texts.is_empty() {
            return Ok(Tensor::zeros((0, self.dim), DType::F32, &self.device)?);
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenising: {e}"))?;
        let len = encodings[0].get_ids().len();
        let n = encodings.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = Tensor::from_vec(types, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?)
    }

    /// Encodes many texts in batches with a progress bar; rows follow `texts`.
    pub fn encode_all(
        &self,
        texts: &[String],
        batch: usize,
        label: &str,
    ) -> anyhow::Result<Tensor> {
        let pb = ProgressBar::new(texts.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {bar:30} {pos}/{len} texts ({eta})",
            )
            .expect("valid template"),
        );
        pb.set_message(label.to_string());
        let mut parts = Vec::new();
        for chunk in texts.chunks(batch.max(1)) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            parts.push(self.encode(&refs)?);
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        if parts.is_empty() {
            return self.encode(&[]);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}
