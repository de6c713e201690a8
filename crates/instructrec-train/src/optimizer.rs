//! AdamW with decoupled weight decay whose update is one fused loop over each parameter's raw
//! f32 buffer. candle's own AdamW builds a chain of about ten tensor ops per parameter and per
//! step (each allocating a full-size tensor), which made it ~8x slower than this on a 77M
//! parameter T5 here (see docs/stack-notes.md).
//!
//! Gradients of several micro-batches are summed into per-parameter f32 buffers owned by the
//! optimizer, so gradient accumulation costs no tensor allocations either, and clipping by the
//! global norm reads those buffers in a fixed order (the norm, and hence the weights, are the
//! same from run to run).
//!
//! Parameters on an accelerator keep their state on that device and are updated by that chain
//! of tensor ops instead: there the ops run as device kernels, and the alternative, copying
//! every weight to the host and back each step, would cost more than the update.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Storage, Tensor, Var};
use instructrec_model::Seq2Seq;
use rayon::prelude::*;

use crate::error::{Result, TrainError};

/// Elements per rayon task in the update loop: large enough that scheduling is negligible.
const CHUNK: usize = 1 << 15;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Scale each tensor's step by that tensor's root mean square (at least
    /// [`MIN_RELATIVE_SCALE`]), as Adafactor does and nanoT5's AdamWScale does for AdamW. T5's
    /// initialisation gives its embeddings unit variance and its query weights a variance
    /// 4,000 times smaller; with one absolute step size the embeddings hardly move from their
    /// random start while the queries are pushed hard. Measured on the reranking lines with
    /// the reference implementation: only with relative steps (and many more examples per
    /// step) did a randomly initialised compact T5 start to read its prompt.
    #[serde(default)]
    pub relative_steps: bool,
}

/// The smallest scale a relative step uses, so that a tensor that starts at zero can move.
pub const MIN_RELATIVE_SCALE: f64 = 1e-3;

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            relative_steps: false,
        }
    }
}

/// A trainable tensor and whether weight decay applies to it.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
    pub decay: bool,
}

impl Param {
    /// Weight decay on matrices only: decaying norm scales towards 0 (instead of 1) or biases
    /// only hurts, as in the usual transformer recipes.
    pub fn with_default_decay(name: String, var: Var) -> Self {
        let is_norm = name.contains("layer_norm") || name.contains("LayerNorm");
        let decay = var.as_tensor().rank() >= 2 && !is_norm && !name.ends_with(".bias");
        Self { name, var, decay }
    }
}

struct Slot {
    param: Param,
    state: Moments,
    has_grad: bool,
}

/// A parameter's moment estimates and gradient accumulator, kept where its weights live. On the
/// CPU they are plain buffers updated by the fused loop; on an accelerator they are tensors on
/// that device updated by tensor ops, so that a step never copies weights through the host.
enum Moments {
    Host {
        m: Vec<f32>,
        v: Vec<f32>,
        grad: Vec<f32>,
    },
    Device {
        m: Tensor,
        v: Tensor,
        grad: Tensor,
    },
}

impl Moments {
    fn zeros(var: &Var, on_host: bool) -> Result<Self> {
        let n = var.elem_count();
        Ok(if on_host {
            Self::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
                grad: vec![0.0; n],
            }
        } else {
            let zeros = || var.as_tensor().zeros_like();
            Self::Device {
                m: zeros()?,
                v: zeros()?,
                grad: zeros()?,
            }
        })
    }

    fn accumulate(&mut self, g: &Tensor, scale: f32) -> Result<()> {
        match self {
            Self::Host { grad, .. } => with_f32_slice(g, |g| {
                grad.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .for_each(|(acc, g)| {
                        for (a, &x) in acc.iter_mut().zip(g) {
                            *a += scale * x;
                        }
                    });
            }),
            Self::Device { grad, .. } => {
                *grad = grad.add(&(g.to_dtype(DType::F32)? * f64::from(scale))?)?;
                Ok(())
            }
        }
    }

    fn grad_sum_of_squares(&self) -> Result<f64> {
        Ok(match self {
            Self::Host { grad, .. } => sum_of_squares(grad),
            Self::Device { grad, .. } => device_sum_of_squares(grad)?,
        })
    }

    /// One AdamW update of `var`; clears the accumulator.
    fn update(&mut self, var: &Var, h: &Hyper) -> Result<()> {
        match self {
            Self::Host { m, v, grad } => {
                let op = InPlace {
                    hyper: *h,
                    m: std::cell::RefCell::new(m),
                    v: std::cell::RefCell::new(v),
                    g: grad,
                };
                var.as_tensor().inplace_op1(&op)?;
                grad.iter_mut().for_each(|g| *g = 0.0);
            }
            Self::Device { m, v, grad } => {
                let f = f64::from;
                let g = (&*grad * f(h.clip))?;
                *m = ((&*m * f(h.beta1))? + (&g * f(1.0 - h.beta1))?)?;
                *v = ((&*v * f(h.beta2))? + (g.sqr()? * f(1.0 - h.beta2))?)?;
                let denom = ((&*v / f(h.bias2))?.sqrt()? + f(h.eps))?;
                let step = ((&*m / f(h.bias1))?.div(&denom)? * f(h.lr))?;
                let p = var.as_tensor();
                var.set(&((p - (p * f(h.decay))?)? - step)?)?;
                *grad = grad.zeros_like()?;
            }
        }
        Ok(())
    }

    /// `(m, v)` as host tensors of `shape`, for checkpoints.
    fn to_host(&self, shape: &candle_core::Shape) -> Result<(Tensor, Tensor)> {
        Ok(match self {
            Self::Host { m, v, .. } => (
                Tensor::from_slice(m, shape, &Device::Cpu)?,
                Tensor::from_slice(v, shape, &Device::Cpu)?,
            ),
            Self::Device { m, v, .. } => (m.to_device(&Device::Cpu)?, v.to_device(&Device::Cpu)?),
        })
    }

    fn restore(&mut self, saved_m: &Tensor, saved_v: &Tensor) -> Result<()> {
        match self {
            Self::Host { m, v, .. } => {
                *m = saved_m.flatten_all()?.to_vec1::<f32>()?;
                *v = saved_v.flatten_all()?.to_vec1::<f32>()?;
            }
            Self::Device { m, v, .. } => {
                let device = m.device().clone();
                *m = saved_m.to_dtype(DType::F32)?.to_device(&device)?;
                *v = saved_v.to_dtype(DType::F32)?.to_device(&device)?;
            }
        }
        Ok(())
    }
}

fn device_sum_of_squares(t: &Tensor) -> Result<f64> {
    Ok(f64::from(
        t.to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()?,
    ))
}

/// What one optimizer step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Global L2 norm of the accumulated gradient before clipping.
    pub grad_norm: f64,
    /// Parameters that received no gradient in any micro-batch of this step.
    pub without_grad: usize,
}

pub struct FusedAdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl FusedAdamW {
    /// The update runs where each parameter lives (see [`Moments`]).
    pub fn new(params: Vec<Param>, cfg: AdamWConfig) -> Result<Self> {
        Self::build(params, cfg, |var| var.device().is_cpu())
    }

    fn build(params: Vec<Param>, cfg: AdamWConfig, on_host: impl Fn(&Var) -> bool) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|param| {
                if param.var.dtype() != DType::F32 {
                    return Err(TrainError::Config(format!(
                        "parameter {} is {:?}; training needs f32 weights",
                        param.name,
                        param.var.dtype()
                    )));
                }
                let state = Moments::zeros(&param.var, on_host(&param.var))?;
                Ok(Slot {
                    param,
                    state,
                    has_grad: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            slots,
            step: 0,
        })
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Optimizer steps taken so far (the `t` of Adam's bias correction).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.slots.iter().map(|s| &s.param)
    }

    /// Adds `scale * gradient` of every parameter found in `grads` to its accumulator.
    pub fn accumulate(&mut self, grads: &GradStore, scale: f32) -> Result<()> {
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.param.var.as_tensor()) else {
                continue;
            };
            slot.has_grad = true;
            slot.state.accumulate(g, scale)?;
        }
        Ok(())
    }

    /// L2 norm over all accumulated gradients, summed in f64 in parameter order.
    pub fn grad_norm(&self) -> Result<f64> {
        let mut sum = 0.0;
        for s in &self.slots {
            sum += s.state.grad_sum_of_squares()?;
        }
        Ok(sum.sqrt())
    }

    /// Clips the accumulated gradient to `max_grad_norm` (global norm), applies one AdamW step
    /// with learning rate `lr`, and clears the accumulators.
    pub fn step(&mut self, lr: f64, max_grad_norm: Option<f64>) -> Result<StepStats> {
        let grad_norm = self.grad_norm()?;
        if !grad_norm.is_finite() {
            return Err(TrainError::Config(format!(
                "gradient norm is {grad_norm} at step {}: lower the learning rate",
                self.step + 1
            )));
        }
        let clip = match max_grad_norm {
            Some(max) if grad_norm > max => (max / (grad_norm + 1e-6)) as f32,
            _ => 1.0,
        };
        self.step += 1;
        let t = self.step as i32;
        let cfg = self.cfg;
        let mut without_grad = 0;
        for slot in &mut self.slots {
            if !slot.has_grad {
                without_grad += 1;
            }
            let step_lr = if cfg.relative_steps {
                lr * root_mean_square(slot.param.var.as_tensor())?.max(MIN_RELATIVE_SCALE)
            } else {
                lr
            };
            let hyper = Hyper {
                lr: step_lr as f32,
                beta1: cfg.beta1 as f32,
                beta2: cfg.beta2 as f32,
                eps: cfg.eps as f32,
                decay: if slot.param.decay {
                    (lr * cfg.weight_decay) as f32
                } else {
                    0.0
                },
                bias1: (1.0 - cfg.beta1.powi(t)) as f32,
                bias2: (1.0 - cfg.beta2.powi(t)) as f32,
                clip,
            };
            slot.state.update(&slot.param.var, &hyper)?;
            slot.has_grad = false;
        }
        Ok(StepStats {
            grad_norm,
            without_grad,
        })
    }

    /// The moment estimates as named tensors (`m.<param>`, `v.<param>`), for checkpoints.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            let (m, v) = s.state.to_host(s.param.var.shape())?;
            out.push((format!("m.{}", s.param.name), m));
            out.push((format!("v.{}", s.param.name), v));
        }
        Ok(out)
    }

    /// Restores what [`Self::state_tensors`] saved, exactly; every parameter must be present.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for s in &mut self.slots {
            let [m, v] = ["m", "v"].map(|key| {
                let name = format!("{key}.{}", s.param.name);
                let t = tensors
                    .get(&name)
                    .ok_or_else(|| TrainError::Config(format!("optimizer state lacks {name}")))?;
                if t.dims() != s.param.var.dims() {
                    return Err(TrainError::Config(format!(
                        "optimizer state {name} has shape {:?}, parameter has {:?}",
                        t.dims(),
                        s.param.var.dims()
                    )));
                }
                Ok(t)
            });
            s.state.restore(m?, v?)?;
        }
        self.step = step;
        Ok(())
    }
}

/// Summed in f64, so that the gradient norm and the relative step scale do not depend on how
/// large a tensor is.
fn sum_of_squares(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

fn root_mean_square(t: &Tensor) -> Result<f64> {
    let sum = if t.device().is_cpu() {
        with_f32_slice(t, sum_of_squares)?
    } else {
        device_sum_of_squares(t)?
    };
    Ok((sum / t.elem_count().max(1) as f64).sqrt())
}

/// Calls `f` with the tensor's elements as a contiguous f32 slice, without a copy when the
/// tensor already lives contiguously in CPU memory as f32.
fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[a..b]));
        }
    }
    let host = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&host))
}

#[derive(Debug, Clone, Copy)]
struct Hyper {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    bias1: f32,
    bias2: f32,
    clip: f32,
}

impl Hyper {
    /// The AdamW update of a stretch of one parameter (Loshchilov & Hutter: the decay term is
    /// applied to the weight directly, not through the gradient).
    fn apply(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        for i in 0..p.len() {
            let g = g[i] * self.clip;
            m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g;
            v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g * g;
            let m_hat = m[i] / self.bias1;
            let v_hat = v[i] / self.bias2;
            p[i] -= self.decay * p[i] + self.lr * m_hat / (v_hat.sqrt() + self.eps);
        }
    }

    fn apply_parallel(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| self.apply(p, m, v, g));
    }
}

/// Writes the update straight into the variable's CPU buffer through candle's in-place op hook.
struct InPlace<'a> {
    hyper: Hyper,
    // candle's in-place op interface hands out `&self` only.
    m: std::cell::RefCell<&'a mut [f32]>,
    v: std::cell::RefCell<&'a mut [f32]>,
    g: &'a [f32],
}

impl InplaceOp1 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("fused-adamw: parameter is not f32")
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("fused-adamw: parameter is not contiguous")
        };
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        self.hyper
            .apply_parallel(&mut data[a..b], &mut m, &mut v, self.g);
        Ok(())
    }
}

/// Trainable parameters of a model in name order (the order is part of the determinism).
pub fn model_params(model: &Seq2Seq) -> Vec<Param> {
    let mut vars: Vec<(String, candle_core::Var)> = model
        .varmap
        .data()
        .lock()
        .expect("varmap lock poisoned")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter()
        .map(|(name, var)| Param::with_default_decay(name, var))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Optimizer;

    fn quadratic_loss(w: &Var, target: &Tensor) -> Tensor {
        (w.as_tensor() - target)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    }

    /// Same trajectory as candle's reference AdamW (which also decouples weight decay).
    #[test]
    fn matches_candle_adamw() {
        let dev = Device::Cpu;
        let init = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.1, 0.2, -0.3]], &dev).unwrap();
        let target = Tensor::new(&[[1.0f32, 1.0, 1.0], [0.0, -1.0, 0.5]], &dev).unwrap();
        let w_ref = Var::from_tensor(&init.copy().unwrap()).unwrap();
        let w_ours = Var::from_tensor(&init.copy().unwrap()).unwrap();
        let params = candle_nn::ParamsAdamW {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut reference = candle_nn::AdamW::new(vec![w_ref.clone()], params.clone()).unwrap();
        let mut ours = FusedAdamW::new(
            vec![Param {
                name: "w".into(),
                var: w_ours.clone(),
                decay: true,
            }],
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
                relative_steps: false,
            },
        )
        .unwrap();
        for _ in 0..20 {
            reference
                .backward_step(&quadratic_loss(&w_ref, &target))
                .unwrap();
            let grads = quadratic_loss(&w_ours, &target).backward().unwrap();
            ours.accumulate(&grads, 1.0).unwrap();
            ours.step(0.05, None).unwrap();
        }
        let a: Vec<f32> = w_ref.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = w_ours.flatten_all().unwrap().to_vec1().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
        assert_ne!(a, init.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }

    /// The tensor-op update that runs on accelerators, run here on the CPU, follows the fused
    /// loop's trajectory (decay, relative steps, clipping and accumulation included), and its
    /// checkpointed state restores into either kind.
    #[test]
    fn device_update_matches_the_fused_loop() {
        let dev = Device::Cpu;
        let init = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.1, 0.2, -0.3]], &dev).unwrap();
        let target = Tensor::new(&[[1.0f32, 1.0, 1.0], [0.0, -1.0, 0.5]], &dev).unwrap();
        let cfg = AdamWConfig {
            relative_steps: true,
            weight_decay: 0.1,
            ..AdamWConfig::default()
        };
        let run = |on_host: bool, steps: usize| {
            let w = Var::from_tensor(&init.copy().unwrap()).unwrap();
            let param = Param {
                name: "w".into(),
                var: w.clone(),
                decay: true,
            };
            let mut opt = FusedAdamW::build(vec![param], cfg, |_| on_host).unwrap();
            for _ in 0..steps {
                for _ in 0..2 {
                    let grads = quadratic_loss(&w, &target).backward().unwrap();
                    opt.accumulate(&grads, 0.5).unwrap();
                }
                opt.step(0.05, Some(0.5)).unwrap();
            }
            (w, opt)
        };
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (host, host_opt) = run(true, 12);
        let (device, device_opt) = run(false, 12);
        assert_ne!(flat(&host), flat(&init));
        for (a, b) in flat(&host).iter().zip(flat(&device)) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let saved: HashMap<String, Tensor> =
            device_opt.state_tensors().unwrap().into_iter().collect();
        for (name, t) in host_opt.state_tensors().unwrap() {
            for (a, b) in flat(&t).iter().zip(flat(&saved[&name])) {
                assert!((a - b).abs() < 1e-6, "{name}: {a} vs {b}");
            }
        }
        let (_, mut restored) = run(false, 0);
        restored.load_state(&saved, 12).unwrap();
        let again: HashMap<String, Tensor> =
            restored.state_tensors().unwrap().into_iter().collect();
        for (name, t) in &saved {
            assert_eq!(flat(t), flat(&again[name]), "{name}");
        }
    }

    #[test]
    fn clipping_scales_to_max_norm_and_accumulation_sums() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::zeros(4, DType::F32, &dev).unwrap()).unwrap();
        let mut opt = FusedAdamW::new(
            vec![Param {
                name: "w".into(),
                var: w.clone(),
                decay: false,
            }],
            AdamWConfig::default(),
        )
        .unwrap();
        let target = Tensor::new(&[3.0f32, 4.0, 0.0, 0.0], &dev).unwrap();
        for _ in 0..2 {
            let grads = quadratic_loss(&w, &target).backward().unwrap();
            opt.accumulate(&grads, 0.5).unwrap();
        }
        // d/dw (w - t)^2 = -2t, averaged over two micro-batches: norm 2 * 5 = 10.
        assert!((opt.grad_norm().unwrap() - 10.0).abs() < 1e-5);
        let stats = opt.step(0.1, Some(1.0)).unwrap();
        assert!((stats.grad_norm - 10.0).abs() < 1e-5);
        assert_eq!(stats.without_grad, 0);
        assert_eq!(opt.grad_norm().unwrap(), 0.0);
    }

    #[test]
    fn state_round_trips_exactly() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[[1.0f32, 2.0]], &dev).unwrap()).unwrap();
        let param = Param {
            name: "w".into(),
            var: w.clone(),
            decay: true,
        };
        let mut opt = FusedAdamW::new(vec![param.clone()], AdamWConfig::default()).unwrap();
        let grads = w
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        opt.accumulate(&grads, 1.0).unwrap();
        opt.step(0.01, None).unwrap();
        let saved: HashMap<_, _> = opt.state_tensors().unwrap().into_iter().collect();
        let mut restored = FusedAdamW::new(vec![param], AdamWConfig::default()).unwrap();
        restored.load_state(&saved, opt.step_count()).unwrap();
        let again: HashMap<_, _> = restored.state_tensors().unwrap().into_iter().collect();
        for (name, t) in &saved {
            assert_eq!(
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                again[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        assert_eq!(restored.step_count(), 1);
    }

    /// Adam's first step moves every element by the learning rate (|m_hat / sqrt(v_hat)| = 1);
    /// relative steps multiply that by the tensor's RMS, or by the floor for a zero tensor.
    #[test]
    fn relative_steps_scale_by_each_tensors_rms() {
        let dev = Device::Cpu;
        let big = Var::from_tensor(&Tensor::new(&[3.0f32, -4.0], &dev).unwrap()).unwrap();
        let small = Var::from_tensor(&Tensor::new(&[0.03f32, 0.04], &dev).unwrap()).unwrap();
        let zero = Var::zeros(2, DType::F32, &dev).unwrap();
        let vars = [big, small, zero];
        let before: Vec<Vec<f32>> = vars
            .iter()
            .map(|v| v.as_tensor().to_vec1().unwrap())
            .collect();
        let params = vars
            .iter()
            .enumerate()
            .map(|(i, var)| Param {
                name: format!("p{i}"),
                var: var.clone(),
                decay: false,
            })
            .collect();
        let cfg = AdamWConfig {
            relative_steps: true,
            ..AdamWConfig::default()
        };
        let mut opt = FusedAdamW::new(params, cfg).unwrap();
        let target = Tensor::new(&[10.0f32, 10.0], &dev).unwrap();
        let loss = vars
            .iter()
            .map(|v| quadratic_loss(v, &target))
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        opt.accumulate(&loss.backward().unwrap(), 1.0).unwrap();
        opt.step(0.1, None).unwrap();
        let rms = [(12.5f64).sqrt(), (0.00125f64).sqrt(), MIN_RELATIVE_SCALE];
        for ((var, old), scale) in vars.iter().zip(&before).zip(rms) {
            let new: Vec<f32> = var.as_tensor().to_vec1().unwrap();
            for (a, b) in new.iter().zip(old) {
                let moved = f64::from(a - b);
                assert!(
                    (moved - 0.1 * scale).abs() < 1e-4 * scale.max(1e-2),
                    "moved {moved}, expected {}",
                    0.1 * scale
                );
            }
        }
    }

    #[test]
    fn decay_skips_norms_and_biases() {
        let dev = Device::Cpu;
        let mat = Var::zeros((2, 2), DType::F32, &dev).unwrap();
        let vec = Var::zeros(2, DType::F32, &dev).unwrap();
        assert!(
            Param::with_default_decay(
                "encoder.block.0.layer.0.SelfAttention.q.weight".into(),
                mat.clone()
            )
            .decay
        );
        assert!(!Param::with_default_decay("encoder.final_layer_norm.weight".into(), vec).decay);
        assert!(
            !Param::with_default_decay("decoder.block.0.layer.2.layer_norm.weight".into(), mat)
                .decay
        );
    }
}
