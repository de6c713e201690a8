//! T5 configuration with Hugging Face `config.json` field names, and size presets.

use serde::{Deserialize, Serialize};

/// The feed-forward block of each layer (`feed_forward_proj` in Hugging Face configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedForwardProj {
    /// Original T5: `wo(relu(wi(x)))`.
    #[serde(rename = "relu")]
    Relu,
    /// `wo(gelu(wi(x)))` with the exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// `wo(relu(wi_0(x)) * wi_1(x))`.
    #[serde(rename = "gated-relu")]
    GatedRelu,
    /// T5 v1.1 / Flan-T5: `wo(gelu_new(wi_0(x)) * wi_1(x))` (tanh GELU, as Hugging Face maps it).
    #[serde(rename = "gated-gelu")]
    GatedGelu,
}

impl FeedForwardProj {
    pub fn is_gated(self) -> bool {
        matches!(self, Self::GatedRelu | Self::GatedGelu)
    }
}

/// Architecture hyper-parameters, read from and written to a Hugging Face `config.json`.
///
/// Fields this crate does not use (`architectures`, `model_type`, generation settings, ...) are
/// kept in `extra` so that a loaded config is written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T5Config {
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "defaults::d_model")]
    pub d_model: usize,
    #[serde(default = "defaults::d_kv")]
    pub d_kv: usize,
    #[serde(default = "defaults::d_ff")]
    pub d_ff: usize,
    #[serde(default = "defaults::num_layers")]
    pub num_layers: usize,
    /// Decoder depth; Hugging Face uses `num_layers` when it is absent or null.
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    #[serde(default = "defaults::num_heads")]
    pub num_heads: usize,
    #[serde(default = "defaults::num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "defaults::max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "defaults::dropout_rate")]
    pub dropout_rate: f64,
    #[serde(default = "defaults::layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "defaults::feed_forward_proj")]
    pub feed_forward_proj: FeedForwardProj,
    /// As written in the file. transformers 5 writes `true` for every T5, so whether the LM head
    /// is tied is decided from the checkpoint (is there an `lm_head.weight`?), not from this flag.
    #[serde(default = "defaults::yes")]
    pub tie_word_embeddings: bool,
    /// transformers 5's flag for multiplying the decoder output by `d_model^-0.5` before the LM
    /// head. Older configs lack it; transformers then derives it from `tie_word_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_decoder_outputs: Option<bool>,
    #[serde(default)]
    pub decoder_start_token_id: u32,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "defaults::eos")]
    pub eos_token_id: u32,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

mod defaults {
    use super::FeedForwardProj;
    pub fn vocab_size() -> usize {
        32128
    }
    pub fn d_model() -> usize {
        512
    }
    pub fn d_kv() -> usize {
        64
    }
    pub fn d_ff() -> usize {
        2048
    }
    pub fn num_layers() -> usize {
        6
    }
    pub fn num_heads() -> usize {
        8
    }
    pub fn num_buckets() -> usize {
        32
    }
    pub fn max_distance() -> usize {
        128
    }
    pub fn dropout_rate() -> f64 {
        0.1
    }
    pub fn layer_norm_epsilon() -> f64 {
        1e-6
    }
    pub fn feed_forward_proj() -> FeedForwardProj {
        FeedForwardProj::Relu
    }
    pub fn yes() -> bool {
        true
    }
    pub fn eos() -> u32 {
        1
    }
}

/// Model sizes offered for training from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// For tests: d_model 32, 2+2 layers.
    Tiny,
    /// The default of `instructrec run`: d_model 128, 3+3 layers, 4 heads, d_ff 384. Four
    /// times cheaper per token than `small`, so a budget of minutes on 2 cores sees several
    /// times more examples, which matters more than width at that budget.
    Compact,
    /// The default for CPU training: d_model 256, 4+4 layers, 4 heads, d_ff 512 (Flan-T5's
    /// d_ff / d_model ratio of 2), gated-gelu. Sized so that a training step on 16 x 128 source
    /// and 32 target tokens costs about 1.2 CPU-seconds (examples/bench_model.rs).
    Small,
    /// flan-t5-small's shape (d_model 512, 8+8 layers); slow on a 2-core CPU.
    Base,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tiny" => Ok(Self::Tiny),
            "compact" => Ok(Self::Compact),
            "small" => Ok(Self::Small),
            "base" => Ok(Self::Base),
            other => Err(format!(
                "unknown model preset {other:?} (expected tiny, compact, small or base)"
            )),
        }
    }
}

/// The shape of a forward pass, for [`T5Config::forward_flops`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Encoder positions computed, over all sequences.
    pub encoder_tokens: usize,
    /// Keys each encoder position attends to (the padded source length).
    pub source_len: usize,
    /// Decoder positions computed, over all sequences; each gets the LM head.
    pub decoder_tokens: usize,
    /// Keys each decoder position attends to in its own sequence (the padded target length).
    pub target_len: usize,
    /// Encoder positions whose cross-attention keys and values are computed, per decoder
    /// layer: every source token in training; one instruction's tokens when many candidates
    /// share it.
    pub cross_kv_tokens: usize,
}

impl Workload {
    /// A training batch of `batch` sequences padded to `source` and `target` tokens.
    pub fn batch(batch: usize, source: usize, target: usize) -> Self {
        Self {
            encoder_tokens: batch * source,
            source_len: source,
            decoder_tokens: batch * target,
            target_len: target,
            cross_kv_tokens: batch * source,
        }
    }

    /// Scoring `candidates` answers padded to `target` tokens against one `source`-token
    /// instruction encoded once.
    pub fn scoring(source: usize, candidates: usize, target: usize) -> Self {
        Self {
            encoder_tokens: source,
            source_len: source,
            decoder_tokens: candidates * target,
            target_len: target,
            cross_kv_tokens: source,
        }
    }
}

impl T5Config {
    /// A configuration of the given size. `vocab_size` is a placeholder: set it to the size of
    /// the tokenizer actually trained.
    pub fn preset(preset: Preset) -> Self {
        let (d_model, d_kv, d_ff, layers, heads, vocab) = match preset {
            Preset::Tiny => (32, 8, 64, 2, 4, 512),
            Preset::Compact => (128, 32, 384, 3, 4, 8000),
            Preset::Small => (256, 64, 512, 4, 4, 8000),
            Preset::Base => (512, 64, 1024, 8, 6, 32128),
        };
        let tied = preset == Preset::Compact;
        Self {
            vocab_size: vocab,
            d_model,
            d_kv,
            d_ff,
            num_layers: layers,
            num_decoder_layers: Some(layers),
            num_heads: heads,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            dropout_rate: 0.1,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: FeedForwardProj::GatedGelu,
            // Compact ties the LM head to the input embeddings (T5 v1.0's layout): an answer
            // that repeats a title of the prompt then scores well from the start, which
            // reached validation HR@1 0.275 instead of 0.180 after 500 steps (docs/training.md).
            tie_word_embeddings: tied,
            scale_decoder_outputs: Some(tied),
            decoder_start_token_id: 0,
            pad_token_id: 0,
            eos_token_id: 1,
            extra: hf_identity(),
        }
    }

    /// FLOPs (two per multiply-add) of the matrix products of one forward pass over `w`: the
    /// work no implementation can skip, against which benchmarks measure a pass. Backward
    /// passes cost about twice as much again (a product's gradient needs two products).
    pub fn forward_flops(&self, w: &Workload) -> f64 {
        let d = self.d_model as f64;
        let inner = (self.num_heads * self.d_kv) as f64;
        let ffn = 2.0
            * d
            * self.d_ff as f64
            * if self.feed_forward_proj.is_gated() {
                3.0
            } else {
                2.0
            };
        // Projections are 2·d·inner each; attention is QKᵀ and the weighted sum of values.
        let attention = |keys: usize| 2.0 * 2.0 * keys as f64 * inner;
        let encoder_token = 4.0 * 2.0 * d * inner + attention(w.source_len) + ffn;
        let decoder_token = 4.0 * 2.0 * d * inner
            + attention(w.target_len)
            + 2.0 * 2.0 * d * inner
            + attention(w.source_len)
            + ffn;
        let cross_kv = 2.0 * 2.0 * d * inner;
        w.encoder_tokens as f64 * self.num_layers as f64 * encoder_token
            + self.decoder_layers() as f64
                * (w.decoder_tokens as f64 * decoder_token + w.cross_kv_tokens as f64 * cross_kv)
            + w.decoder_tokens as f64 * 2.0 * d * self.vocab_size as f64
    }

    /// Bytes of f32 activations a training step over `w` keeps for its backward pass, roughly:
    /// per position and layer the inputs of the norms, projections and feed-forward products,
    /// dropout masks and the attention scores and probabilities of every head, and the
    /// logits with their log-softmax and gradient. An estimate for planning memory, not a
    /// measurement.
    pub fn activation_bytes(&self, w: &Workload) -> f64 {
        let (d, f, heads) = (self.d_model as f64, self.d_ff as f64, self.num_heads as f64);
        let ffn = if self.feed_forward_proj.is_gated() {
            4.0
        } else {
            3.0
        } * f;
        let encoder = 12.0 * d + ffn + 3.0 * heads * w.source_len as f64;
        let decoder = 18.0 * d + ffn + 3.0 * heads * (w.target_len + w.source_len) as f64;
        let floats = w.encoder_tokens as f64 * self.num_layers as f64 * encoder
            + w.decoder_tokens as f64 * self.decoder_layers() as f64 * decoder
            + w.decoder_tokens as f64 * 3.0 * self.vocab_size as f64;
        4.0 * floats
    }

    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Whether the decoder output is multiplied by `d_model^-0.5` before the LM head, resolved as
    /// transformers 5 does: the explicit flag when present, else "unless tie_word_embeddings is
    /// false".
    pub fn scales_decoder_outputs(&self) -> bool {
        self.scale_decoder_outputs
            .unwrap_or(self.tie_word_embeddings)
    }

    /// Checks the invariants the model relies on, naming the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_decoder_layers", self.decoder_layers()),
            ("num_heads", self.num_heads),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if self.relative_attention_num_buckets < 4 {
            return Err("relative_attention_num_buckets must be at least 4".into());
        }
        if self.relative_attention_max_distance * 4 <= self.relative_attention_num_buckets {
            return Err("relative_attention_max_distance must exceed num_buckets / 4".into());
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return Err(format!(
                "dropout_rate must be in [0, 1), got {}",
                self.dropout_rate
            ));
        }
        for (name, id) in [
            ("decoder_start_token_id", self.decoder_start_token_id),
            ("pad_token_id", self.pad_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if id as usize >= self.vocab_size {
                return Err(format!(
                    "{name} {id} is outside the vocabulary ({})",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }
}

/// The fields that make a written config.json loadable by transformers as a T5.
fn hf_identity() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("model_type".into(), "t5".into());
    m.insert(
        "architectures".into(),
        serde_json::json!(["T5ForConditionalGeneration"]),
    );
    m.insert("is_encoder_decoder".into(), true.into());
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn activation_estimates_grow_with_the_batch_and_count_the_logits() {
        use super::{Preset, T5Config, Workload};
        let cfg = T5Config::preset(Preset::Compact);
        let one = cfg.activation_bytes(&Workload::batch(1, 100, 2));
        assert_eq!(
            cfg.activation_bytes(&Workload::batch(64, 100, 2)),
            64.0 * one
        );
        // Logits, their log-softmax and their gradient: 3 floats per vocabulary entry and
        // decoder position, whatever the source.
        let longer_target = cfg.activation_bytes(&Workload::batch(1, 100, 3)) - one;
        assert!(
            longer_target > 4.0 * 3.0 * cfg.vocab_size as f64,
            "{longer_target}"
        );
    }

    #[test]
    fn forward_flops_count_every_product_once() {
        use super::{FeedForwardProj, Preset, T5Config, Workload};
        let mut cfg = T5Config::preset(Preset::Tiny);
        cfg.feed_forward_proj = FeedForwardProj::Relu;
        let (d, inner, f, v) = (32.0, 32.0, 64.0, 512.0);
        // One sequence of 3 source and 2 target tokens, 2 + 2 layers, by hand.
        let enc = 3.0 * 2.0 * (4.0 * 2.0 * d * inner + 4.0 * 3.0 * inner + 2.0 * 2.0 * d * f);
        let dec = 2.0
            * 2.0
            * (4.0 * 2.0 * d * inner
                + 4.0 * 2.0 * inner
                + 4.0 * d * inner
                + 4.0 * 3.0 * inner
                + 2.0 * 2.0 * d * f);
        let cross = 2.0 * 3.0 * 4.0 * d * inner;
        let head = 2.0 * 2.0 * d * v;
        let w = Workload::batch(1, 3, 2);
        assert_eq!(cfg.forward_flops(&w), enc + dec + cross + head);
        cfg.feed_forward_proj = FeedForwardProj::GatedGelu;
        let gated = cfg.forward_flops(&w);
        assert_eq!(
            gated - (enc + dec + cross + head),
            (3.0 * 2.0 + 2.0 * 2.0) * 2.0 * d * f
        );
        // Candidates sharing one encoded instruction compute its keys and values once.
        let shared = cfg.forward_flops(&Workload::scoring(3, 4, 2));
        let copied = cfg.forward_flops(&Workload {
            cross_kv_tokens: 12,
            ..Workload::scoring(3, 4, 2)
        });
        assert_eq!(copied - shared, 2.0 * 9.0 * 4.0 * d * inner);
    }

    use super::*;

    #[test]
    fn reads_hugging_face_fields_and_keeps_unknown_ones() {
        let json = r#"{"d_model": 64, "feed_forward_proj": "gated-gelu", "num_layers": 3,
            "tie_word_embeddings": false, "model_type": "t5", "use_cache": true}"#;
        let c: T5Config = serde_json::from_str(json).unwrap();
        assert_eq!(c.d_model, 64);
        assert_eq!(c.feed_forward_proj, FeedForwardProj::GatedGelu);
        assert_eq!(c.decoder_layers(), 3);
        assert!(!c.scales_decoder_outputs());
        assert_eq!(c.extra["use_cache"], serde_json::Value::Bool(true));
        let back: T5Config = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn explicit_scale_flag_wins_over_tie_flag() {
        let c: T5Config = serde_json::from_str(
            r#"{"tie_word_embeddings": true, "scale_decoder_outputs": false}"#,
        )
        .unwrap();
        assert!(!c.scales_decoder_outputs());
        let c: T5Config = serde_json::from_str("{}").unwrap();
        assert!(c.scales_decoder_outputs());
    }

    #[test]
    fn presets_are_valid() {
        for p in [Preset::Tiny, Preset::Small, Preset::Base] {
            T5Config::preset(p).validate().unwrap();
        }
        assert!(serde_json::from_str::<T5Config>(r#"{"feed_forward_proj": "swish"}"#).is_err());
    }
}
