//! Differentiable building blocks composed from primitive tensor ops.
//!
//! candle's fused `softmax_last_dim`, `LayerNorm` and `RmsNorm` kernels have no (or a silently
//! wrong) backward pass, so every model in this workspace that is trained uses these instead.
//! Each function here only chains primitive ops whose backward candle implements.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rand::Rng;

/// Softmax over the last dimension.
///
/// The row maximum is subtracted for numerical stability; it is detached because softmax is
/// invariant to that shift, so its gradient contribution is exactly zero and need not be traced.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Log-softmax over the last dimension (stable: `x - max - log(sum(exp(x - max)))`).
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// T5-style RMS norm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`
/// (no mean subtraction, no bias).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(weight)
}

/// Layer norm over the last dimension: `(x - mean) / sqrt(var + eps) * weight + bias`,
/// with the biased variance as in PyTorch.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (var + eps)?.sqrt()?.recip()?;
    centered
        .broadcast_mul(&inv)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// The tanh approximation of GELU (Hugging Face's `gelu_new`, used by Flan-T5's gated FFN):
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
///
/// On CPU this is one fused pass forward and one backward (the FFN activation is the largest
/// elementwise tensor of a step; candle's unary `gelu` spends most of its backward in `powf`).
/// Elsewhere it falls back to candle's `gelu`, the same formula.
pub fn gelu_new(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(GeluNew)
    } else {
        x.gelu()
    }
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)
const GELU_A: f64 = 0.044_715;

/// tanh via one exponential (cheaper than libm's tanhf); saturates correctly at +-inf.
#[inline(always)]
fn fast_tanh(u: f64) -> f64 {
    1.0 - 2.0 / ((2.0 * u).exp() + 1.0)
}

#[inline(always)]
fn fast_tanh_f32(u: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * u).exp() + 1.0)
}

/// Elementwise over contiguous slices, in parallel chunks for large tensors.
fn par_map<T: Copy + Send + Sync>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    if out.len() <= CHUNK {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, c)| f(i * CHUNK, c));
    }
}

fn contiguous_slice<'a, T>(v: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&v[start..end]),
        None => candle_core::bail!("gelu_new expects contiguous input"),
    }
}

struct GeluNew;

impl CustomOp1 for GeluNew {
    fn name(&self) -> &'static str {
        "gelu-new-fused"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = layout.shape().clone();
        let out = match storage {
            CpuStorage::F32(v) => {
                let x = contiguous_slice(v, layout)?;
                let (c, a) = (GELU_C as f32, GELU_A as f32);
                let mut out = vec![0f32; x.len()];
                par_map(&mut out, |off, o| {
                    for (i, y) in o.iter_mut().enumerate() {
                        let x = x[off + i];
                        *y = 0.5 * x * (1.0 + fast_tanh_f32(c * (x + a * x * x * x)));
                    }
                });
                CpuStorage::F32(out)
            }
            CpuStorage::F64(v) => {
                let x = contiguous_slice(v, layout)?;
                let mut out = vec![0f64; x.len()];
                par_map(&mut out, |off, o| {
                    for (i, y) in o.iter_mut().enumerate() {
                        let x = x[off + i];
                        *y = 0.5 * x * (1.0 + fast_tanh(GELU_C * (x + GELU_A * x * x * x)));
                    }
                });
                CpuStorage::F64(out)
            }
            _ => candle_core::bail!("gelu_new: only f32 and f64 are supported"),
        };
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad_res.contiguous()?, &GeluNewGrad)?,
        ))
    }
}

/// `grad * d gelu_new(x) / dx` in one pass:
/// `0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2)` with `t = tanh(c (x + a x^3))`.
struct GeluNewGrad;

impl CustomOp2 for GeluNewGrad {
    fn name(&self) -> &'static str {
        "gelu-new-fused-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = l1.shape().clone();
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                let (x, g) = (contiguous_slice(x, l1)?, contiguous_slice(g, l2)?);
                let (c, a) = (GELU_C as f32, GELU_A as f32);
                let mut out = vec![0f32; x.len()];
                par_map(&mut out, |off, o| {
                    for (i, d) in o.iter_mut().enumerate() {
                        let x = x[off + i];
                        let t = fast_tanh_f32(c * (x + a * x * x * x));
                        let dy =
                            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * a * x * x);
                        *d = g[off + i] * dy;
                    }
                });
                CpuStorage::F32(out)
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                let (x, g) = (contiguous_slice(x, l1)?, contiguous_slice(g, l2)?);
                let mut out = vec![0f64; x.len()];
                par_map(&mut out, |off, o| {
                    for (i, d) in o.iter_mut().enumerate() {
                        let x = x[off + i];
                        let t = fast_tanh(GELU_C * (x + GELU_A * x * x * x));
                        let dy = 0.5 * (1.0 + t)
                            + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
                        *d = g[off + i] * dy;
                    }
                });
                CpuStorage::F64(out)
            }
            _ => candle_core::bail!("gelu_new backward: mismatched or unsupported dtypes"),
        };
        Ok((out, shape))
    }
}

/// Exact (erf) GELU, Hugging Face's `gelu`.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.gelu_erf()
}

/// Inverted dropout: zeroes each element with probability `p` and scales the survivors by
/// `1 / (1 - p)`. The mask is drawn from `rng` so that a run with a recorded seed (and a resumed
/// run with a restored generator) draws exactly the same masks; candle's own CPU generator
/// cannot be seeded.
pub fn dropout(x: &Tensor, p: f32, rng: &mut impl Rng) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("dropout probability must be in [0, 1), got {p}");
    }
    if p == 0.0 {
        return Ok(x.clone());
    }
    let scale = 1.0 / (1.0 - p);
    // Compare against a 32-bit threshold: one generator word per element, no float conversion.
    let threshold = (f64::from(p) * 4_294_967_296.0) as u64;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if u64::from(rng.next_u32()) < threshold {
                0.0
            } else {
                scale
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}

/// Converts any float tensor to f32 (checkpoints may hold f16 / bf16).
pub(crate) fn to_f32(t: Tensor) -> Result<Tensor> {
    if t.dtype() == DType::F32 {
        Ok(t)
    } else {
        t.to_dtype(DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < tol, "max abs diff {d} >= {tol}");
    }

    fn input() -> Tensor {
        let v: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
        Tensor::from_vec(v, (2, 3, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn softmax_matches_fused_kernel() {
        let x = input();
        close(
            &softmax_last_dim(&x).unwrap(),
            &candle_nn::ops::softmax_last_dim(&x).unwrap(),
            1e-6,
        );
        close(
            &log_softmax_last_dim(&x).unwrap().exp().unwrap(),
            &softmax_last_dim(&x).unwrap(),
            1e-6,
        );
    }

    #[test]
    fn fused_gelu_matches_the_formula() {
        let x = (input()
            .affine(3.0, 0.0)
            .unwrap()
            .broadcast_mul(&Tensor::new(&[1f32, -10.0, 0.001, 30.0], &Device::Cpu).unwrap()))
        .unwrap();
        close(&gelu_new(&x).unwrap(), &x.gelu().unwrap(), 1e-5);
    }

    #[test]
    fn norms_match_fused_kernels() {
        let x = input();
        let w = Tensor::new(&[0.5f32, 1.0, 1.5, -2.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.1f32, 0.2, -0.3, 0.0], &Device::Cpu).unwrap();
        close(
            &rms_norm(&x, &w, 1e-6).unwrap(),
            &candle_nn::ops::rms_norm(&x, &w, 1e-6).unwrap(),
            1e-5,
        );
        close(
            &layer_norm(&x, &w, &b, 1e-5).unwrap(),
            &candle_nn::ops::layer_norm(&x, &w, &b, 1e-5).unwrap(),
            1e-5,
        );
    }

    /// Central finite differences of `sum(f(x) * r)` against the backward pass, for each op.
    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let w = Tensor::new(&[0.5f64, 1.0, 1.5, -2.0], &dev).unwrap();
        let b = Tensor::new(&[0.1f64, 0.2, -0.3, 0.0], &dev).unwrap();
        type Op = Box<dyn Fn(&Tensor) -> Result<Tensor>>;
        let (w1, w2, b2) = (w.clone(), w.clone(), b.clone());
        let ops: Vec<(&str, Op)> = vec![
            ("softmax", Box::new(softmax_last_dim)),
            ("log_softmax", Box::new(log_softmax_last_dim)),
            ("rms_norm", Box::new(move |x| rms_norm(x, &w1, 1e-6))),
            (
                "layer_norm",
                Box::new(move |x| layer_norm(x, &w2, &b2, 1e-5)),
            ),
        ];
        let x0 = input().to_dtype(DType::F64).unwrap();
        let r = input()
            .to_dtype(DType::F64)
            .unwrap()
            .affine(0.7, 0.2)
            .unwrap()
            .cos()
            .unwrap();
        for (name, f) in ops {
            let x = Var::from_tensor(&x0).unwrap();
            let loss = f(x.as_tensor())
                .unwrap()
                .mul(&r)
                .unwrap()
                .sum_all()
                .unwrap();
            let grad = loss.backward().unwrap().get(&x).unwrap().clone();
            let grad: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
            let base: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
            let h = 1e-5;
            for i in 0..base.len() {
                let eval = |delta: f64| {
                    let mut v = base.clone();
                    v[i] += delta;
                    let t = Tensor::from_vec(v, x0.shape(), &dev).unwrap();
                    f(&t)
                        .unwrap()
                        .mul(&r)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                };
                let fd = (eval(h) - eval(-h)) / (2.0 * h);
                assert!(
                    (fd - grad[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{name}: d/dx[{i}] backward {} vs finite difference {fd}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn dropout_is_seeded_and_scaled() {
        let x = Tensor::ones((64, 64), DType::F32, &Device::Cpu).unwrap();
        let a = dropout(&x, 0.25, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let b = dropout(&x, 0.25, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let c = dropout(&x, 0.25, &mut ChaCha8Rng::seed_from_u64(8)).unwrap();
        let va: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let vc: Vec<f32> = c.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        let zeros = va.iter().filter(|v| **v == 0.0).count() as f64 / va.len() as f64;
        assert!((zeros - 0.25).abs() < 0.03, "dropped fraction {zeros}");
        assert!(va
            .iter()
            .all(|v| *v == 0.0 || (*v - 4.0 / 3.0).abs() < 1e-6));
    }
}
