//! PEFT LoRA adapter directories (`adapter_config.json` + `adapter_model.safetensors`), as
//! Hugging Face PEFT and our own LoRA training write them, applied to their base checkpoint at
//! load time: every adapted weight becomes `W + s B A`, with `s = alpha / r` (or
//! `alpha / sqrt(r)` under rsLoRA) and per-module ranks and alphas from the config's patterns.
//! The result is an ordinary model, so scoring, serving and further training need no adapter
//! code; merging costs one `B A` product per adapted matrix, once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::error::{io_err, ModelError, Result};
use crate::seq2seq::{Seq2Seq, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The prefix PEFT puts before a module's name: the tuner wraps the model, which wraps ours.
const PREFIX: &str = "base_model.model.";

/// A tensor's name in an adapter file: `base_model.model.<module>.lora_A.weight`.
pub fn peft_tensor_name(module: &str, which: &str) -> String {
    format!("{PREFIX}{module}.lora_{which}.weight")
}

/// Whether `dir` holds an adapter rather than a full checkpoint. A directory with both (our
/// LoRA training's checkpoints: the merged model beside its adapters) is a full checkpoint.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file()
        && !dir.join(WEIGHTS_FILE).exists()
        && !dir.join(WEIGHTS_INDEX_FILE).exists()
}

/// The fields of PEFT's `LoraConfig` that decide the merged weights. Options that would change
/// the arithmetic beyond `W + s B A` are read only to be refused by [`PeftLora::check`].
#[derive(Debug, Deserialize)]
struct PeftLora {
    peft_type: String,
    base_model_name_or_path: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default, deserialize_with = "in_file_order")]
    rank_pattern: Vec<(String, usize)>,
    #[serde(default, deserialize_with = "in_file_order")]
    alpha_pattern: Vec<(String, f64)>,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    lora_bias: bool,
    #[serde(default)]
    bias: Option<String>,
    /// Everything else: newer PEFT options, some of which change the architecture or the
    /// arithmetic (checked by name in [`PeftLora::check`]).
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// PEFT options that, when set, make the adapter more than `W + s B A` on existing weights.
const ALTERING_OPTIONS: [&str; 8] = [
    "layer_replication",
    "alora_invocation_tokens",
    "use_qalora",
    "use_bdlora",
    "arrow_config",
    "target_parameters",
    "trainable_token_indices",
    "megatron_config",
];

impl PeftLora {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    fn check(&self, path: &Path) -> Result<()> {
        let refuse = |message: String| {
            Err(ModelError::Invalid {
                path: path.to_path_buf(),
                message,
            })
        };
        if !self.peft_type.eq_ignore_ascii_case("lora") {
            return refuse(format!(
                "peft_type {:?}: only LORA adapters can be loaded",
                self.peft_type
            ));
        }
        let unsupported = [
            (self.use_dora, "use_dora (DoRA rescales the merged weight)"),
            (
                self.fan_in_fan_out,
                "fan_in_fan_out (a transposed layout T5 does not use)",
            ),
            (
                self.lora_bias,
                "lora_bias (T5's linear layers have no bias)",
            ),
            (
                self.bias.as_deref().is_some_and(|b| b != "none"),
                "bias other than \"none\" (T5's linear layers have no bias)",
            ),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return refuse(format!(
                "{what} is not supported; merge the adapter with PEFT's merge_and_unload() \
                 and load the merged checkpoint instead"
            ));
        }
        let set = |v: &serde_json::Value| match v {
            serde_json::Value::Null | serde_json::Value::Bool(false) => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        };
        if let Some(name) = ALTERING_OPTIONS
            .iter()
            .find(|name| self.other.get(**name).is_some_and(set))
        {
            return refuse(format!(
                "{name} is set: this loader applies plain LoRA only; merge the adapter with \
                 PEFT's merge_and_unload() and load the merged checkpoint instead"
            ));
        }
        // These initialisations move the base weights too, so the adapter is relative to a
        // base this loader does not have.
        if let Some(init) = self.other.get("init_lora_weights").and_then(|v| v.as_str()) {
            if ["pissa", "olora", "corda", "loftq"]
                .iter()
                .any(|p| init.starts_with(p))
            {
                return refuse(format!(
                    "init_lora_weights {init:?} changes the base weights as well; merge the \
                     adapter with PEFT's merge_and_unload() and load the merged checkpoint"
                ));
            }
        }
        if self.r == 0 {
            return refuse("r must be positive".into());
        }
        Ok(())
    }

    /// The base checkpoint: `base_model_name_or_path` as a local directory, relative to the
    /// adapter's directory first (so an adapter and its base can move together), then to the
    /// working directory. A hub id cannot be fetched here, so it must be edited to a path.
    fn base_dir(&self, adapter: &Path, path: &Path) -> Result<PathBuf> {
        let Some(name) = self.base_model_name_or_path.as_deref() else {
            return Err(ModelError::Invalid {
                path: path.to_path_buf(),
                message: "base_model_name_or_path is missing: it must name the base \
                          checkpoint's directory"
                    .into(),
            });
        };
        let tried = [adapter.join(name), PathBuf::from(name)];
        tried
            .iter()
            .find(|p| p.is_dir())
            .cloned()
            .ok_or_else(|| ModelError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "base_model_name_or_path {name:?} is not a directory (looked in {} and {}); \
                     set it to the local path of the base checkpoint the adapter was trained on",
                    tried[0].display(),
                    tried[1].display()
                ),
            })
    }

    /// The pattern key PEFT would pick for `module`: the first key, in the file's order, whose
    /// regular expression matches the module's name or a dotted suffix of it.
    fn pattern_for<'a, T>(
        patterns: &'a [(String, T)],
        module: &str,
        path: &Path,
    ) -> Result<Option<&'a T>> {
        for (key, value) in patterns {
            let re = regex::Regex::new(&format!(r"^(.*\.)?({key})$")).map_err(|e| {
                ModelError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("pattern {key:?} is not a regular expression: {e}"),
                }
            })?;
            if re.is_match(module) {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// `(rank, scale)` of the adapter on `module`.
    fn module_scale(&self, module: &str, path: &Path) -> Result<(usize, f64)> {
        let r = *Self::pattern_for(&self.rank_pattern, module, path)?.unwrap_or(&self.r);
        let alpha =
            *Self::pattern_for(&self.alpha_pattern, module, path)?.unwrap_or(&self.lora_alpha);
        let denominator = if self.use_rslora {
            (r as f64).sqrt()
        } else {
            r as f64
        };
        Ok((r, alpha / denominator))
    }
}

/// A JSON object as its entries in the file's order, which decides which pattern wins.
fn in_file_order<'de, D, T>(d: D) -> std::result::Result<Vec<(String, T)>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Entries<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Entries<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of patterns")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut map: M,
        ) -> std::result::Result<Self::Value, M::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    d.deserialize_map(Entries(std::marker::PhantomData))
}

/// One adapted module's low-rank pair, as stored.
#[derive(Default)]
struct Pair {
    a: Option<Tensor>,
    b: Option<Tensor>,
    /// Embedding adapters store `A` as `[r, rows]` and `B` as `[dim, r]`, the transpose of a
    /// linear layer's update.
    embedding: bool,
}

/// Loads the adapter in `dir` on top of its base checkpoint.
pub(crate) fn load(dir: &Path, device: &Device) -> Result<Seq2Seq> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let cfg = PeftLora::read(&config_path)?;
    cfg.check(&config_path)?;
    let base = cfg.base_dir(dir, &config_path)?;
    if is_adapter_dir(&base) {
        return Err(ModelError::Invalid {
            path: config_path,
            message: format!(
                "the base {} is itself an adapter; merge it first",
                base.display()
            ),
        });
    }
    let s2s = Seq2Seq::load_full(&base, device)?;
    let weights = dir.join(ADAPTER_WEIGHTS);
    let tensors =
        candle_core::safetensors::load(&weights, device).map_err(|e| ModelError::Invalid {
            path: weights.clone(),
            message: e.to_string(),
        })?;
    apply(&s2s, &cfg, tensors, &weights, &config_path)?;
    let s2s = match dir.join(crate::seq2seq::TOKENIZER_FILE) {
        own if own.exists() => s2s.with_tokenizer_file(&own)?,
        _ => s2s,
    };
    tracing::info!(
        "{}: LoRA adapter applied to {}",
        dir.display(),
        base.display()
    );
    Ok(s2s)
}

/// Adds every adapter's update to its base weight; tensors that are not LoRA pairs replace the
/// base tensor of the same name (PEFT's `modules_to_save`, e.g. `lm_head`), which must exist
/// with that shape.
fn apply(
    s2s: &Seq2Seq,
    cfg: &PeftLora,
    tensors: HashMap<String, Tensor>,
    weights: &Path,
    config_path: &Path,
) -> Result<()> {
    let invalid = |message: String| ModelError::Invalid {
        path: weights.to_path_buf(),
        message,
    };
    let vars = s2s.varmap.data().lock().unwrap();
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    let mut replaced = Vec::new();
    for (name, t) in tensors {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            return Err(invalid(format!(
                "tensor {name} does not start with {PREFIX:?}: not a PEFT adapter file"
            )));
        };
        let t = crate::ops::to_f32(t).map_err(|e| invalid(format!("tensor {name}: {e}")))?;
        let lora = [
            (".lora_A.weight", false, false),
            (".lora_B.weight", true, false),
            (".lora_embedding_A", false, true),
            (".lora_embedding_B", true, true),
        ]
        .into_iter()
        .find_map(|(suffix, is_b, emb)| rest.strip_suffix(suffix).map(|m| (m, is_b, emb)));
        match lora {
            Some((module, is_b, embedding)) => {
                let pair = pairs.entry(module.to_string()).or_default();
                pair.embedding = embedding;
                *(if is_b { &mut pair.b } else { &mut pair.a }) = Some(t);
            }
            None => replaced.push((rest.to_string(), t)),
        }
    }
    if pairs.is_empty() && replaced.is_empty() {
        return Err(invalid("no adapter tensors".into()));
    }
    for (module, pair) in &pairs {
        let (Some(a), Some(b)) = (&pair.a, &pair.b) else {
            return Err(invalid(format!(
                "module {module} has only one of its lora_A and lora_B tensors"
            )));
        };
        let target = format!("{module}.weight");
        let Some(var) = vars.get(&target) else {
            return Err(invalid(format!(
                "adapter on {module}, but the base model has no tensor {target}"
            )));
        };
        let (rank, scale) = cfg.module_scale(module, config_path)?;
        let (a_rank, b_rank) = (a.dims2()?.0, b.dims2()?.1);
        if a_rank != rank || b_rank != rank {
            return Err(invalid(format!(
                "{module}: lora_A has rank {a_rank} and lora_B rank {b_rank}, but \
                 adapter_config.json gives rank {rank}"
            )));
        }
        let update = b.matmul(a)?;
        let update = if pair.embedding { update.t()? } else { update };
        let w = var.as_tensor();
        if update.dims() != w.dims() {
            return Err(invalid(format!(
                "{module}: the adapter's update has shape {:?}, the base weight {:?}",
                update.dims(),
                w.dims()
            )));
        }
        var.set(&(w + (update * scale)?)?)?;
    }
    for (name, t) in replaced {
        // PEFT's T5 forward ignores a `modules_to_save` copy of the shared embeddings (the
        // stacks keep pointing at the original) but loads embeddings saved with a resized
        // vocabulary: which one a file holds cannot be told, so neither is guessed.
        if name.ends_with("embed_tokens.weight") || name == "shared.weight" {
            return Err(invalid(format!(
                "tensor {PREFIX}{name}: adapters that carry embeddings are not loaded (PEFT itself \
                 treats them differently by how they were saved); merge with PEFT's \
                 merge_and_unload() and load the merged checkpoint"
            )));
        }
        let Some(var) = vars.get(&name) else {
            return Err(invalid(format!(
                "tensor {PREFIX}{name} is neither a LoRA pair nor a tensor of the base model"
            )));
        };
        if t.dims() != var.as_tensor().dims() {
            return Err(invalid(format!(
                "tensor {PREFIX}{name} has shape {:?}, the base model's {:?} (resized \
                 embeddings: merge with PEFT's merge_and_unload() and load the merged \
                 checkpoint)",
                t.dims(),
                var.as_tensor().dims()
            )));
        }
        var.set(&t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PeftLora;
    use std::path::Path;

    fn config(extra: &str) -> PeftLora {
        serde_json::from_str(&format!(
            r#"{{"peft_type": "LORA", "r": 8, "lora_alpha": 16{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn scales_follow_rslora_and_the_patterns() {
        let p = Path::new("adapter_config.json");
        let plain = config("");
        assert_eq!(
            plain.module_scale("encoder.block.0.q", p).unwrap(),
            (8, 2.0)
        );
        let rs = config(r#", "use_rslora": true"#);
        let (r, s) = rs.module_scale("encoder.block.0.q", p).unwrap();
        assert_eq!(r, 8);
        assert!((s - 16.0 / 8f64.sqrt()).abs() < 1e-12);
        let patterned = config(
            r#", "rank_pattern": {"decoder.block.1.layer.0.SelfAttention.q": 2},
                "alpha_pattern": {"SelfAttention.(k|v)": 4}"#,
        );
        assert_eq!(
            patterned
                .module_scale("decoder.block.1.layer.0.SelfAttention.q", p)
                .unwrap(),
            (2, 8.0)
        );
        // A key matches whole dotted components, not any suffix of the name.
        assert_eq!(
            patterned
                .module_scale("xdecoder.block.1.layer.0.SelfAttention.q", p)
                .unwrap(),
            (8, 2.0)
        );
        assert_eq!(
            patterned
                .module_scale("encoder.block.0.layer.0.SelfAttention.v", p)
                .unwrap(),
            (8, 0.5)
        );
    }

    #[test]
    fn options_that_change_the_arithmetic_are_refused_by_name() {
        let p = Path::new("adapter_config.json");
        for (extra, word) in [
            (r#", "use_dora": true"#, "use_dora"),
            (r#", "fan_in_fan_out": true"#, "fan_in_fan_out"),
            (r#", "bias": "all""#, "bias"),
            (r#", "layer_replication": [[0, 2]]"#, "layer_replication"),
            (
                r#", "trainable_token_indices": [5]"#,
                "trainable_token_indices",
            ),
        ] {
            let e = config(extra).check(p).unwrap_err().to_string();
            assert!(e.contains(word) && e.contains("merge_and_unload"), "{e}");
        }
        let e =
            serde_json::from_str::<PeftLora>(r#"{"peft_type": "IA3", "r": 8, "lora_alpha": 16}"#)
                .unwrap()
                .check(p)
                .unwrap_err();
        assert!(e.to_string().contains("only LORA"), "{e}");
    }
}
