//! Low-rank adapters (LoRA) for tuning a large checkpoint: the chosen weight matrices stay
//! frozen at their initial values `W0`, and the model runs with `W0 + (alpha / r) * B A`, where
//! only `A` (r x in) and `B` (out x r) are trained.
//!
//! The model is not rewritten for this. After each optimizer step the merged matrix is written
//! into the model's own weight, so the forward pass, scoring, generation and checkpoints work
//! unchanged, and a checkpoint directory is always an exported, merged model. The adapters'
//! gradients follow from the merged weight's gradient by the chain rule:
//! `dL/dA = s Bᵀ G` and `dL/dB = s G Aᵀ` with `G = dL/dW`, so they are exact.
//!
//! Resuming needs `W0`, which a merged checkpoint no longer holds: it is the `--init` model the
//! run started from, and the adapters are read from the checkpoint's `adapter_model.safetensors`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use instructrec_model::Seq2Seq;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{derive_seed, STREAM_LORA};
use crate::error::{io_err, Result, TrainError};
use crate::optimizer::{model_params, Param};

use instructrec_model::adapter::peft_tensor_name as peft_name;
pub use instructrec_model::adapter::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Module names whose weights get adapters, matched against the last component before
    /// `.weight` (T5's `q`, `k`, `v`, `o`, `wi_0`, `wi_1`, `wo`).
    pub targets: Vec<String>,
    /// The checkpoint the adapters are trained on (`--init`), recorded as the saved adapter's
    /// `base_model_name_or_path` so that the adapter directory loads on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<std::path::PathBuf>,
}

impl LoraConfig {
    fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether the parameter `name` (e.g. `encoder.block.0.layer.0.SelfAttention.q.weight`)
    /// is adapted.
    fn targets(&self, name: &str) -> bool {
        name.strip_suffix(".weight")
            .and_then(|m| m.rsplit('.').next())
            .is_some_and(|module| self.targets.iter().any(|t| t == module))
    }
}

struct Adapter {
    /// The model weight's name without `.weight`.
    module: String,
    weight: Var,
    base: Tensor,
    a: Var,
    b: Var,
}

pub struct Lora {
    cfg: LoraConfig,
    adapters: Vec<Adapter>,
}

impl Lora {
    /// Adapters on `model`'s current weights: `A` drawn from the seed (uniform in
    /// ±1/sqrt(in), as the usual implementations do), `B` zero, so the model starts unchanged.
    pub fn attach(model: &Seq2Seq, cfg: &LoraConfig, seed: u64) -> Result<Self> {
        let device = model.model.device();
        Self::build(model, cfg, |i, _, (out, inp)| {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, STREAM_LORA, i as u64));
            let bound = 1.0 / (inp as f32).sqrt();
            let a: Vec<f32> = (0..cfg.rank * inp)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            Ok((
                Tensor::from_vec(a, (cfg.rank, inp), device)?,
                Tensor::zeros((out, cfg.rank), DType::F32, device)?,
            ))
        })
    }

    /// Adapters read from `dir` (written by [`Lora::save`]) on top of `base`, the model the
    /// run started from; the model's weights are set to the merged ones.
    pub fn load(base: &Seq2Seq, cfg: &LoraConfig, dir: &Path) -> Result<Self> {
        let path = dir.join(ADAPTER_WEIGHTS);
        let tensors = candle_core::safetensors::load(&path, base.model.device())
            .map_err(|e| checkpoint_err(&path, e.to_string()))?;
        let lora = Self::build(base, cfg, |_, module, (out, inp)| {
            let get = |which: &str, dims: [usize; 2]| {
                let key = peft_name(module, which);
                match tensors.get(&key) {
                    Some(t) if t.dims() == dims => Ok(t.clone()),
                    Some(t) => Err(checkpoint_err(
                        &path,
                        format!("{key} has shape {:?}, the model needs {dims:?}", t.dims()),
                    )),
                    None => Err(checkpoint_err(&path, format!("missing tensor {key}"))),
                }
            };
            Ok((get("A", [cfg.rank, inp])?, get("B", [out, cfg.rank])?))
        })?;
        lora.merge()?;
        Ok(lora)
    }

    /// One adapter per targeted weight; `init(index, module, (out, in))` gives its `A`, `B`.
    fn build(
        model: &Seq2Seq,
        cfg: &LoraConfig,
        mut init: impl FnMut(usize, &str, (usize, usize)) -> Result<(Tensor, Tensor)>,
    ) -> Result<Self> {
        if cfg.rank == 0 {
            return Err(TrainError::Config("LoRA rank must be positive".into()));
        }
        let mut adapters = Vec::new();
        for p in model_params(model)
            .into_iter()
            .filter(|p| cfg.targets(&p.name))
        {
            let module = p.name.trim_end_matches(".weight").to_string();
            let (a, b) = init(adapters.len(), &module, p.var.as_tensor().dims2()?)?;
            adapters.push(Adapter {
                module,
                base: p.var.as_tensor().copy()?,
                weight: p.var,
                a: Var::from_tensor(&a)?,
                b: Var::from_tensor(&b)?,
            });
        }
        if adapters.is_empty() {
            return Err(TrainError::Config(format!(
                "LoRA targets {:?} match no weight of the model",
                cfg.targets
            )));
        }
        Ok(Self {
            cfg: cfg.clone(),
            adapters,
        })
    }

    /// The trainable tensors: every adapter's `A` and `B`, in the model's name order.
    pub fn params(&self) -> Vec<Param> {
        self.adapters
            .iter()
            .flat_map(|ad| {
                [("A", &ad.a), ("B", &ad.b)].map(|(which, var)| Param {
                    name: peft_name(&ad.module, which),
                    var: var.clone(),
                    decay: true,
                })
            })
            .collect()
    }

    /// Adds the adapters' gradients to `grads`, derived from those of the merged weights.
    pub fn add_grads(&self, grads: &mut GradStore) -> Result<()> {
        let s = self.cfg.scale();
        for ad in &self.adapters {
            let Some(g) = grads.get(ad.weight.as_tensor()).cloned() else {
                continue;
            };
            let ga = (ad.b.as_tensor().t()?.matmul(&g)? * s)?;
            let gb = (g.matmul(&ad.a.as_tensor().t()?)? * s)?;
            grads.insert(ad.a.as_tensor(), ga);
            grads.insert(ad.b.as_tensor(), gb);
        }
        Ok(())
    }

    /// Writes `W0 + s B A` into each adapted weight of the model.
    pub fn merge(&self) -> Result<()> {
        let s = self.cfg.scale();
        for ad in &self.adapters {
            let delta = (ad.b.as_tensor().matmul(ad.a.as_tensor())? * s)?;
            ad.weight.set(&(&ad.base + delta)?)?;
        }
        Ok(())
    }

    /// The adapters alone, in the PEFT layout (`adapter_model.safetensors` with
    /// `base_model.model.<module>.lora_A.weight` tensors, and `adapter_config.json`), beside
    /// the merged model in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self
            .params()
            .into_iter()
            .map(|p| (p.name, p.var.as_tensor().clone()))
            .collect();
        crate::checkpoint::save_tensors(&tensors, &dir.join(ADAPTER_WEIGHTS))?;
        let mut modules: Vec<&str> = self.cfg.targets.iter().map(String::as_str).collect();
        modules.sort_unstable();
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "SEQ_2_SEQ_LM",
            "r": self.cfg.rank,
            "lora_alpha": self.cfg.alpha,
            "lora_dropout": 0.0,
            "bias": "none",
            "target_modules": modules,
            "base_model_name_or_path": self.cfg.base,
        });
        let path = dir.join(ADAPTER_CONFIG);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json"))
            .map_err(io_err(&path))
    }
}

fn checkpoint_err(path: &Path, message: String) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}
