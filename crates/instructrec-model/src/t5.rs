//! T5 / Flan-T5 encoder-decoder, written to match Hugging Face transformers' `modeling_t5.py`
//! exactly and to be trainable (every op here has a backward pass in candle).
//!
//! Differences from candle-transformers' T5 that matter: composed softmax / RMS norm (the fused
//! kernels pass no gradient), unidirectional relative-position buckets in the decoder, the
//! encoder padding mask in encoder self-attention and in cross-attention, the LM head chosen from
//! the checkpoint with the output scaling resolved from the config, dropout with a seeded
//! generator, full-sequence decoder logits, and an incremental decoder with a key/value cache.

use crate::config::{FeedForwardProj, T5Config};
use crate::ops;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Additive attention-mask value for masked positions; Hugging Face uses `finfo(float32).min`.
const MASKED: f32 = f32::MIN;

/// Label value ignored by the loss (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Training-time dropout with its own seeded generator, so that runs (and resumed runs, after
/// restoring the generator) draw identical masks.
#[derive(Debug, Clone)]
pub struct Dropout {
    rate: f32,
    rng: ChaCha8Rng,
}

impl Dropout {
    pub fn new(rate: f32, seed: u64) -> Self {
        Self::from_rng(rate, ChaCha8Rng::seed_from_u64(seed))
    }

    /// Continues from a saved generator state (see [`Dropout::rng`]).
    pub fn from_rng(rate: f32, rng: ChaCha8Rng) -> Self {
        Self { rate, rng }
    }

    pub fn rate(&self) -> f32 {
        self.rate
    }

    /// The generator, for checkpointing (`get_seed`, `get_stream`, `get_word_pos`).
    pub fn rng(&self) -> &ChaCha8Rng {
        &self.rng
    }

    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::dropout(x, self.rate, &mut self.rng)
    }
}

fn maybe_dropout(x: Tensor, dropout: &mut Option<&mut Dropout>) -> Result<Tensor> {
    match dropout {
        Some(d) => d.apply(&x),
        None => Ok(x),
    }
}

/// A bias-free linear layer, `x @ weight^T`, with all leading dimensions of `x` folded into one
/// so that forward and backward are single 2-D matrix products. (candle-nn's `Linear` instead
/// broadcasts the weight over the batch; its backward then materialises a
/// `[batch, in, out]` weight gradient and sums it: for the LM head of a 16-row batch and a
/// 32k vocabulary that is a 1 GB temporary.)
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
}

impl Linear {
    fn new(weight: Tensor) -> Self {
        Self { weight }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let (&d, lead) = dims
            .split_last()
            .ok_or_else(|| candle_core::Error::Msg("linear layer on a scalar".into()))?;
        let rows: usize = lead.iter().product();
        let out = x.reshape((rows, d))?.matmul(&self.weight.t()?)?;
        let mut shape = lead.to_vec();
        shape.push(self.weight.dim(0)?);
        out.reshape(shape)
    }
}

/// A bias-free linear layer initialised with normal(0, std), as transformers initialises T5.
fn linear(in_dim: usize, out_dim: usize, std: f64, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    Ok(Linear::new(w))
}

fn embedding(n: usize, dim: usize, std: f64, vb: VarBuilder) -> Result<Embedding> {
    let w = vb.get_with_hints(
        (n, dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    Ok(Embedding::new(w, dim))
}

#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(x, &self.weight, self.eps)
    }
}

/// Maps `key_position - query_position` to a bucket exactly as Hugging Face's
/// `T5Attention._relative_position_bucket` does (including its float32 logarithm), so that the
/// same bias-table rows are used. Bidirectional (encoder): half the buckets for keys after the
/// query. Unidirectional (decoder): keys after the query all land in bucket 0.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> u32 {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0i64;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        (-relative_position).max(0)
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        bucket += distance;
    } else {
        // torch computes log(d / max_exact) in float32, divides by a python float (float32
        // arithmetic on the tensor) and truncates towards zero.
        let scaled = ((distance as f32) / (max_exact as f32)).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32)
            * ((num_buckets - max_exact) as f32);
        bucket += (max_exact + scaled as i64).min(num_buckets - 1);
    }
    bucket as u32
}

/// The relative-position bias table of the first layer of a stack, shared by all its layers.
#[derive(Debug, Clone)]
struct RelativeBias {
    table: Embedding,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
}

impl RelativeBias {
    /// Bias for queries at positions `q_start..q_start + q_len` over keys `0..k_len`,
    /// shaped `[1, heads, q_len, k_len]`.
    fn forward(
        &self,
        q_start: usize,
        q_len: usize,
        k_len: usize,
        device: &Device,
    ) -> Result<Tensor> {
        let buckets: Vec<u32> = (0..q_len)
            .flat_map(|i| {
                (0..k_len).map(move |j| {
                    relative_position_bucket(
                        j as i64 - (q_start + i) as i64,
                        self.bidirectional,
                        self.num_buckets,
                        self.max_distance,
                    )
                })
            })
            .collect();
        let buckets = Tensor::from_vec(buckets, (q_len, k_len), device)?;
        self.table
            .forward(&buckets)?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    n_heads: usize,
    d_kv: usize,
}

impl Attention {
    fn new(cfg: &T5Config, vb: VarBuilder) -> Result<Self> {
        let (d, inner) = (cfg.d_model, cfg.num_heads * cfg.d_kv);
        let d_std = (d as f64).powf(-0.5);
        Ok(Self {
            q: linear(d, inner, ((d * cfg.d_kv) as f64).powf(-0.5), vb.pp("q"))?,
            k: linear(d, inner, d_std, vb.pp("k"))?,
            v: linear(d, inner, d_std, vb.pp("v"))?,
            o: linear(inner, d, (inner as f64).powf(-0.5), vb.pp("o"))?,
            n_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
    }

    /// `[b, s, d]` -> `[b, heads, s, d_kv]`, contiguous for the matmuls.
    fn heads(&self, proj: &Linear, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        proj.forward(x)?
            .reshape((b, s, self.n_heads, self.d_kv))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.heads(&self.k, x)?, self.heads(&self.v, x)?))
    }

    /// Unscaled dot-product attention (T5 folds the scale into its initialisation) with an
    /// additive `bias` broadcastable to `[b, heads, q, k]`; returns `[b, q, d]` after `o`.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: &Tensor,
        dropout: &mut Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let (b, _, t, _) = q.dims4()?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let weights = maybe_dropout(ops::softmax_last_dim(&scores)?, dropout)?;
        let out = weights
            .matmul(v)?
            .transpose(1, 2)?
            .reshape((b, t, self.n_heads * self.d_kv))?;
        self.o.forward(&out)
    }
}

/// Cached self-attention keys/values of one decoder layer, `[b, heads, past, d_kv]` each.
type KeyValue = (Tensor, Tensor);

#[derive(Debug, Clone)]
struct SelfAttentionLayer {
    attn: Attention,
    norm: RmsNorm,
}

impl SelfAttentionLayer {
    fn new(cfg: &T5Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attn: Attention::new(cfg, vb.pp("SelfAttention"))?,
            norm: RmsNorm::new(cfg.d_model, cfg.layer_norm_epsilon, vb.pp("layer_norm"))?,
        })
    }

    /// With `cache`, the new keys/values are appended to the cached ones (incremental decoding).
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        cache: Option<&mut Option<KeyValue>>,
        dropout: &mut Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let h = self.norm.forward(x)?;
        let q = self.attn.heads(&self.attn.q, &h)?;
        let (mut k, mut v) = self.attn.keys_values(&h)?;
        if let Some(slot) = cache {
            if let Some((past_k, past_v)) = slot.as_ref() {
                k = Tensor::cat(&[past_k, &k], 2)?;
                v = Tensor::cat(&[past_v, &v], 2)?;
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let out = self.attn.attend(&q, &k, &v, bias, dropout)?;
        x + maybe_dropout(out, dropout)?
    }
}

#[derive(Debug, Clone)]
struct CrossAttentionLayer {
    attn: Attention,
    norm: RmsNorm,
}

impl CrossAttentionLayer {
    fn new(cfg: &T5Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attn: Attention::new(cfg, vb.pp("EncDecAttention"))?,
            norm: RmsNorm::new(cfg.d_model, cfg.layer_norm_epsilon, vb.pp("layer_norm"))?,
        })
    }

    /// `kv` are the encoder keys/values `[be, heads, s, d_kv]`; `mask_bias` is `[be, 1, 1, s]`.
    /// When one encoded input serves `b > 1` decoder rows (`be == 1`, e.g. candidates or beams),
    /// the rows are folded into the query axis instead of copying the encoder states: attention
    /// over the encoder does not depend on the query position.
    fn forward(
        &self,
        x: &Tensor,
        kv: &KeyValue,
        mask_bias: &Tensor,
        dropout: &mut Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let be = kv.0.dim(0)?;
        let h = self.norm.forward(x)?;
        let h = if be == b {
            h
        } else if be == 1 {
            h.reshape((1, b * t, d))?
        } else {
            candle_core::bail!("decoder batch {b} does not match encoder batch {be}")
        };
        let q = self.attn.heads(&self.attn.q, &h)?;
        let out = self.attn.attend(&q, &kv.0, &kv.1, mask_bias, dropout)?;
        x + maybe_dropout(out.reshape((b, t, d))?, dropout)?
    }
}

#[derive(Debug, Clone)]
enum FeedForward {
    Plain {
        wi: Linear,
        wo: Linear,
    },
    Gated {
        wi_0: Linear,
        wi_1: Linear,
        wo: Linear,
    },
}

#[derive(Debug, Clone)]
struct FeedForwardLayer {
    ff: FeedForward,
    act: FeedForwardProj,
    norm: RmsNorm,
}

impl FeedForwardLayer {
    fn new(cfg: &T5Config, vb: VarBuilder) -> Result<Self> {
        let (d, f) = (cfg.d_model, cfg.d_ff);
        let ffv = vb.pp("DenseReluDense");
        let in_std = (d as f64).powf(-0.5);
        let wo = linear(f, d, (f as f64).powf(-0.5), ffv.pp("wo"))?;
        let ff = if cfg.feed_forward_proj.is_gated() {
            FeedForward::Gated {
                wi_0: linear(d, f, in_std, ffv.pp("wi_0"))?,
                wi_1: linear(d, f, in_std, ffv.pp("wi_1"))?,
                wo,
            }
        } else {
            FeedForward::Plain {
                wi: linear(d, f, in_std, ffv.pp("wi"))?,
                wo,
            }
        };
        Ok(Self {
            ff,
            act: cfg.feed_forward_proj,
            norm: RmsNorm::new(d, cfg.layer_norm_epsilon, vb.pp("layer_norm"))?,
        })
    }

    fn activation(&self, x: &Tensor) -> Result<Tensor> {
        match self.act {
            FeedForwardProj::Relu | FeedForwardProj::GatedRelu => x.relu(),
            FeedForwardProj::Gelu => ops::gelu_erf(x),
            FeedForwardProj::GatedGelu => ops::gelu_new(x),
        }
    }

    fn forward(&self, x: &Tensor, dropout: &mut Option<&mut Dropout>) -> Result<Tensor> {
        let h = self.norm.forward(x)?;
        let out = match &self.ff {
            FeedForward::Plain { wi, wo } => {
                let a = maybe_dropout(self.activation(&wi.forward(&h)?)?, dropout)?;
                wo.forward(&a)?
            }
            FeedForward::Gated { wi_0, wi_1, wo } => {
                let gate = self.activation(&wi_0.forward(&h)?)?;
                let a = maybe_dropout(gate.mul(&wi_1.forward(&h)?)?, dropout)?;
                wo.forward(&a)?
            }
        };
        x + maybe_dropout(out, dropout)?
    }
}

#[derive(Debug, Clone)]
struct Block {
    self_attn: SelfAttentionLayer,
    cross_attn: Option<CrossAttentionLayer>,
    ff: FeedForwardLayer,
}

impl Block {
    fn new(cfg: &T5Config, decoder: bool, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("layer");
        let self_attn = SelfAttentionLayer::new(cfg, vb.pp("0"))?;
        let (cross_attn, ff) = if decoder {
            (
                Some(CrossAttentionLayer::new(cfg, vb.pp("1"))?),
                FeedForwardLayer::new(cfg, vb.pp("2"))?,
            )
        } else {
            (None, FeedForwardLayer::new(cfg, vb.pp("1"))?)
        };
        Ok(Self {
            self_attn,
            cross_attn,
            ff,
        })
    }

    fn cross(&self) -> Result<&CrossAttentionLayer> {
        self.cross_attn
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("encoder block has no cross-attention".into()))
    }
}

#[derive(Debug, Clone)]
struct Stack {
    blocks: Vec<Block>,
    relative_bias: RelativeBias,
    final_norm: RmsNorm,
}

impl Stack {
    fn new(cfg: &T5Config, decoder: bool, vb: VarBuilder) -> Result<Self> {
        let layers = if decoder {
            cfg.decoder_layers()
        } else {
            cfg.num_layers
        };
        let blocks = (0..layers)
            .map(|i| Block::new(cfg, decoder, vb.pp(format!("block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let table = embedding(
            cfg.relative_attention_num_buckets,
            cfg.num_heads,
            (cfg.d_model as f64).powf(-0.5),
            vb.pp("block.0.layer.0.SelfAttention.relative_attention_bias"),
        )?;
        Ok(Self {
            blocks,
            relative_bias: RelativeBias {
                table,
                bidirectional: !decoder,
                num_buckets: cfg.relative_attention_num_buckets,
                max_distance: cfg.relative_attention_max_distance,
            },
            final_norm: RmsNorm::new(
                cfg.d_model,
                cfg.layer_norm_epsilon,
                vb.pp("final_layer_norm"),
            )?,
        })
    }
}

/// `[b, s]` mask (1 = token, 0 = padding; any dtype) -> additive `[b, 1, 1, s]` bias.
fn padding_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    // m * (-MASKED) + MASKED is exactly 0 for m = 1 and MASKED for m = 0. In f32 first: in bf16
    // the product overflows to +inf and inf - inf is NaN (MASKED itself becomes -inf, which the
    // f32 softmax handles as long as a row keeps one key).
    mask.to_dtype(DType::F32)?
        .affine(-f64::from(MASKED), f64::from(MASKED))?
        .to_dtype(dtype)?
        .reshape((b, 1, 1, s))
}

/// Causal bias for queries at `past..past + q_len` over keys `0..past + q_len`: `[1, 1, q, k]`.
fn causal_bias(past: usize, q_len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let k_len = past + q_len;
    let v: Vec<f32> = (0..q_len)
        .flat_map(|i| (0..k_len).map(move |j| if j > past + i { MASKED } else { 0.0 }))
        .collect();
    Tensor::from_vec(v, (1, 1, q_len, k_len), device)?.to_dtype(dtype)
}

/// Key/value cache for incremental decoding: per decoder layer, the self-attention keys/values
/// of all positions decoded so far and the cross-attention keys/values, computed once.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    self_kv: Vec<Option<KeyValue>>,
    cross_kv: Vec<KeyValue>,
    len: usize,
}

impl DecoderCache {
    /// Number of decoder positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps decoder rows `rows` (u32 indices, may repeat) of the self-attention cache, e.g. the
    /// parents of the surviving beams. Cross-attention entries are shared and left alone.
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for (k, v) in self.self_kv.iter_mut().flatten() {
            *k = k.index_select(rows, 0)?;
            *v = v.index_select(rows, 0)?;
        }
        Ok(())
    }
}

/// A T5-family encoder-decoder (T5 v1.0 with relu FFN, T5 v1.1 / Flan-T5 with gated GELU).
#[derive(Debug, Clone)]
pub struct T5 {
    cfg: T5Config,
    shared: Embedding,
    encoder: Stack,
    decoder: Stack,
    lm_head: Linear,
    tied: bool,
    device: Device,
}

impl T5 {
    /// Builds the model from `vb` (a `VarMap`-backed builder gives trainable weights).
    ///
    /// The LM head is untied iff `vb` holds `lm_head.weight` or, for a fresh model, the config
    /// says `tie_word_embeddings: false`; transformers 5 writes `true` for every T5, so the
    /// tensor's presence is what decides for loaded checkpoints.
    pub fn new(cfg: &T5Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let device = vb.device().clone();
        let shared = embedding(cfg.vocab_size, cfg.d_model, 1.0, vb.pp("shared"))?;
        let encoder = Stack::new(cfg, false, vb.pp("encoder"))?;
        let decoder = Stack::new(cfg, true, vb.pp("decoder"))?;
        let tied = cfg.tie_word_embeddings && !vb.contains_tensor("lm_head.weight");
        let lm_head = if tied {
            Linear::new(shared.embeddings().clone())
        } else {
            linear(cfg.d_model, cfg.vocab_size, 1.0, vb.pp("lm_head"))?
        };
        let mut cfg = cfg.clone();
        // Record what the weights are, so that a saved config.json reads back the same way.
        cfg.tie_word_embeddings = tied;
        cfg.scale_decoder_outputs = Some(cfg.scales_decoder_outputs());
        Ok(Self {
            cfg,
            shared,
            encoder,
            decoder,
            lm_head,
            tied,
            device,
        })
    }

    pub fn config(&self) -> &T5Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype (f32 unless built from an f64 `VarBuilder`, as gradient checks do).
    pub fn dtype(&self) -> DType {
        self.shared.embeddings().dtype()
    }

    /// Whether the LM head shares the input embedding matrix.
    pub fn is_tied(&self) -> bool {
        self.tied
    }

    /// `[b, s]` ids + `[b, s]` mask (1 = token, 0 = padding) -> encoder states `[b, s, d]`.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let (_, s) = input_ids.dims2()?;
        let bias = self
            .encoder
            .relative_bias
            .forward(0, s, s, &self.device)?
            .broadcast_add(&padding_bias(attention_mask, self.dtype())?)?;
        let mut x = maybe_dropout(self.shared.forward(input_ids)?, &mut dropout)?;
        for block in &self.encoder.blocks {
            x = block.self_attn.forward(&x, &bias, None, &mut dropout)?;
            x = block.ff.forward(&x, &mut dropout)?;
        }
        maybe_dropout(self.encoder.final_norm.forward(&x)?, &mut dropout)
    }

    /// Decoder over the whole target (teacher forcing) -> logits `[b, t, vocab]`.
    ///
    /// `encoder_states` may have batch 1 for `b` decoder rows: all rows then attend to the same
    /// encoded input without it being copied.
    pub fn decode(
        &self,
        decoder_input_ids: &Tensor,
        encoder_states: &Tensor,
        encoder_mask: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let cross_kv = self.cross_keys_values(encoder_states)?;
        let hidden = self.decoder_hidden(
            decoder_input_ids,
            &cross_kv,
            encoder_mask,
            None,
            &mut dropout,
        )?;
        self.lm_logits(&hidden)
    }

    /// Encoder then decoder; returns logits `[b, t, vocab]`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        decoder_input_ids: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let enc = self.encode(input_ids, attention_mask, dropout.as_deref_mut())?;
        self.decode(decoder_input_ids, &enc, attention_mask, dropout)
    }

    /// Starts incremental decoding: computes every layer's cross-attention keys/values once.
    pub fn start_decoding(&self, encoder_states: &Tensor) -> Result<DecoderCache> {
        let cross_kv = self.cross_keys_values(encoder_states)?;
        Ok(DecoderCache {
            self_kv: vec![None; cross_kv.len()],
            cross_kv,
            len: 0,
        })
    }

    /// Decodes the next `t` positions of each row given everything in `cache` (inference only),
    /// returning their logits `[b, t, vocab]` and extending the cache.
    pub fn decode_step(
        &self,
        decoder_input_ids: &Tensor,
        encoder_mask: &Tensor,
        cache: &mut DecoderCache,
    ) -> Result<Tensor> {
        let cross_kv = std::mem::take(&mut cache.cross_kv);
        let hidden = self.decoder_hidden(
            decoder_input_ids,
            &cross_kv,
            encoder_mask,
            Some(&mut *cache),
            &mut None,
        );
        cache.cross_kv = cross_kv;
        self.lm_logits(&hidden?)
    }

    fn cross_keys_values(&self, encoder_states: &Tensor) -> Result<Vec<KeyValue>> {
        self.decoder
            .blocks
            .iter()
            .map(|b| b.cross()?.attn.keys_values(encoder_states))
            .collect()
    }

    fn decoder_hidden(
        &self,
        ids: &Tensor,
        cross_kv: &[KeyValue],
        encoder_mask: &Tensor,
        mut cache: Option<&mut DecoderCache>,
        dropout: &mut Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let past = cache.as_ref().map_or(0, |c| c.len);
        let self_bias = self
            .decoder
            .relative_bias
            .forward(past, t, past + t, &self.device)?;
        // A single new position may attend to everything before it: no causal mask needed.
        let self_bias = if t > 1 {
            self_bias.broadcast_add(&causal_bias(past, t, self.dtype(), &self.device)?)?
        } else {
            self_bias
        };
        let cross_bias = padding_bias(encoder_mask, self.dtype())?;
        let mut x = maybe_dropout(self.shared.forward(ids)?, dropout)?;
        for (i, block) in self.decoder.blocks.iter().enumerate() {
            let slot = cache.as_mut().map(|c| &mut c.self_kv[i]);
            x = block.self_attn.forward(&x, &self_bias, slot, dropout)?;
            x = block
                .cross()?
                .forward(&x, &cross_kv[i], &cross_bias, dropout)?;
            x = block.ff.forward(&x, dropout)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        maybe_dropout(self.decoder.final_norm.forward(&x)?, dropout)
    }

    fn lm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let hidden = if self.cfg.scales_decoder_outputs() {
            (hidden * (self.cfg.d_model as f64).powf(-0.5))?
        } else {
            hidden.clone()
        };
        self.lm_head.forward(&hidden)
    }
}

/// Summed token negative log-likelihood over labels `!= -100`, and the number of such tokens.
/// `logits` `[b, t, vocab]`, `labels` `[b, t]` (i64).
pub fn seq2seq_nll(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, usize)> {
    let (b, t, v) = logits.dims3()?;
    let labels = labels.to_dtype(DType::I64)?.reshape(b * t)?;
    let keep = labels.ge(0i64)?;
    let n = keep.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize;
    // Ignored positions gather column 0 and are then zeroed by the mask.
    let safe = keep.where_cond(&labels, &labels.zeros_like()?)?;
    let logp = ops::log_softmax_last_dim(&logits.reshape((b * t, v))?)?;
    let picked = logp.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?;
    let nll = picked
        .mul(&keep.to_dtype(logp.dtype())?)?
        .sum_all()?
        .neg()?;
    Ok((nll, n))
}

/// Mean token negative log-likelihood over labels `!= -100` (PyTorch `CrossEntropyLoss`'s
/// default reduction, as transformers computes the T5 loss). Errors if no label is kept.
pub fn seq2seq_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (sum, n) = seq2seq_nll(logits, labels)?;
    if n == 0 {
        candle_core::bail!("seq2seq_loss: every label is -100");
    }
    sum / n as f64
}

/// Decoder inputs for teacher forcing: labels shifted right by one, `decoder_start_token_id`
/// first, and `-100` replaced by `pad` (transformers' `_shift_right`). Returns u32 ids.
pub fn shift_right(labels: &Tensor, decoder_start_token_id: u32, pad: u32) -> Result<Tensor> {
    let (b, t) = labels.dims2()?;
    let labels = labels.to_dtype(DType::I64)?;
    let start = Tensor::full(i64::from(decoder_start_token_id), (b, 1), labels.device())?;
    let shifted = Tensor::cat(&[&start, &labels.narrow(1, 0, t.saturating_sub(1))?], 1)?;
    let pad = Tensor::full(i64::from(pad), (b, t), labels.device())?;
    shifted
        .eq(IGNORE_INDEX)?
        .where_cond(&pad, &shifted)?
        .to_dtype(DType::U32)
}
