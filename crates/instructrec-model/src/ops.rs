//! Differentiable building blocks composed from primitive tensor ops.
//!
//! candle's fused `softmax_last_dim`, `LayerNorm` and `RmsNorm` kernels have no (or a silently
//! wrong) backward pass, so every model in this workspace that is trained uses these instead.
//! Each function here only chains primitive ops whose backward candle implements.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType, D,
};
use rand::Rng;

/// Softmax over the last dimension.
///
/// On CPU (f32 / f64) one fused pass forward and one backward (`y (g - sum(g y))`): the
/// attention weights are the largest tensors of a step after the FFN, and the composed chain
/// below allocates five tensors forward and more backward. Elsewhere the composed chain: the row
/// maximum is subtracted for stability and detached, because softmax is invariant to that shift
/// (its gradient contribution is exactly zero).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if let Some(dtype) = half(x) {
        return softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(dtype);
    }
    if fused_cpu(x) {
        return x.contiguous()?.apply_op1(RowOp::Softmax);
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Log-softmax over the last dimension (stable: `x - max - log(sum(exp(x - max)))`); fused on
/// CPU like [`softmax_last_dim`], with backward `g - exp(y) sum(g)`.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if let Some(dtype) = half(x) {
        return log_softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(dtype);
    }
    if fused_cpu(x) {
        return x.contiguous()?.apply_op1(RowOp::LogSoftmax);
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// T5-style RMS norm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`
/// (no mean subtraction, no bias). Fused on CPU for a `[d]` weight (forward one pass; backward
/// one pass for `x` and one reduction for `weight`).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if let Some(dtype) = half(x) {
        let weight = weight.to_dtype(DType::F32)?;
        return rms_norm(&x.to_dtype(DType::F32)?, &weight, eps)?.to_dtype(dtype);
    }
    if fused_cpu(x) && weight.dtype() == x.dtype() && weight.dims() == [x.dim(D::Minus1)?] {
        return x
            .contiguous()?
            .apply_op2(&weight.contiguous()?, RowOp::RmsNorm { eps });
    }
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(weight)
}

/// The dtype of a half-precision `x`: softmaxes and norms of such tensors are computed in f32
/// (as transformers does for T5), since bf16 sums lose everything past 3 digits.
fn half(x: &Tensor) -> Option<DType> {
    matches!(x.dtype(), DType::BF16 | DType::F16).then_some(x.dtype())
}

fn fused_cpu(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() > 0
}

/// Float element types of the fused CPU kernels.
trait Real: WithDType {
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Real for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// Row-wise kernels over the last dimension of contiguous CPU tensors. The `*Grad*` variants
/// are the backward passes; they are applied without tracking (no second derivatives).
#[derive(Debug, Clone, Copy)]
enum RowOp {
    /// (x) -> softmax(x)
    Softmax,
    /// (y = softmax(x), g) -> dL/dx
    SoftmaxGrad,
    /// (x) -> log_softmax(x)
    LogSoftmax,
    /// (y = log_softmax(x), g) -> dL/dx
    LogSoftmaxGrad,
    /// (x, w) -> rms_norm(x) * w
    RmsNorm { eps: f64 },
    /// (x, w, g) -> dL/dx
    RmsNormGradX { eps: f64 },
    /// (x, g) -> dL/dw, shape `[d]`
    RmsNormGradW { eps: f64 },
}

fn row_max<T: Real>(x: &[T]) -> T {
    x.iter().copied().fold(
        T::from_f64(f64::NEG_INFINITY),
        |m, v| if v > m { v } else { m },
    )
}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter()
        .zip(b)
        .fold(T::from_f64(0.0), |s, (&a, &b)| s + a * b)
}

/// `1 / sqrt(mean(x^2) + eps)`.
fn inv_rms<T: Real>(x: &[T], eps: f64) -> T {
    let ms = dot(x, x) / T::from_f64(x.len() as f64);
    T::from_f64(1.0) / (ms + T::from_f64(eps)).sqrt()
}

/// A fresh buffer of `n` elements filled row by row (rows of `row` elements) by `f(row index,
/// row)`, in parallel chunks of whole rows for large buffers.
fn by_rows<T: Real>(n: usize, row: usize, f: impl Fn(usize, &mut [T]) + Sync) -> Vec<T> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    let mut out = vec![T::from_f64(0.0); n];
    let rows_per_chunk = (CHUNK / row).max(1);
    out.par_chunks_mut(rows_per_chunk * row)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (i, r) in chunk.chunks_mut(row).enumerate() {
                f(c * rows_per_chunk + i, r);
            }
        });
    out
}

impl RowOp {
    /// Runs the kernel on same-length (but for the weight) contiguous inputs with rows of `row`.
    fn compute<T: Real>(self, a: &[&[T]], row: usize) -> Vec<T> {
        let n = a[0].len();
        let at = |k: usize, r: usize| &a[k][r * row..(r + 1) * row];
        let one = T::from_f64(1.0);
        match self {
            RowOp::Softmax => by_rows(n, row, |r, o| {
                let x = at(0, r);
                let m = row_max(x);
                let mut sum = T::from_f64(0.0);
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = (x - m).exp();
                    sum += *o;
                }
                let inv = one / sum;
                o.iter_mut().for_each(|o| *o *= inv);
            }),
            RowOp::SoftmaxGrad => by_rows(n, row, |r, o| {
                let (y, g) = (at(0, r), at(1, r));
                let yg = dot(y, g);
                for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                    *o = y * (g - yg);
                }
            }),
            RowOp::LogSoftmax => by_rows(n, row, |r, o| {
                let x = at(0, r);
                let m = row_max(x);
                let sum = x.iter().fold(T::from_f64(0.0), |s, &x| s + (x - m).exp());
                let shift = m + sum.ln();
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = x - shift;
                }
            }),
            RowOp::LogSoftmaxGrad => by_rows(n, row, |r, o| {
                let (y, g) = (at(0, r), at(1, r));
                let gs = g.iter().fold(T::from_f64(0.0), |s, &g| s + g);
                for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                    *o = g - y.exp() * gs;
                }
            }),
            RowOp::RmsNorm { eps } => by_rows(n, row, |r, o| {
                let x = at(0, r);
                let inv = inv_rms(x, eps);
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(a[1]) {
                    *o = x * inv * w;
                }
            }),
            RowOp::RmsNormGradX { eps } => by_rows(n, row, |r, o| {
                // y_j = w_j x_j s, s = (mean(x^2) + eps)^-1/2, ds/dx_j = -s^3 x_j / d;
                // with u = g w: dL/dx_j = s u_j - s^3 x_j (u . x) / d.
                let (x, g) = (at(0, r), at(2, r));
                let s = inv_rms(x, eps);
                let ux = x
                    .iter()
                    .zip(g)
                    .zip(a[1])
                    .fold(T::from_f64(0.0), |acc, ((&x, &g), &w)| acc + g * w * x);
                let k = s * s * s * ux / T::from_f64(row as f64);
                for (((o, &x), &g), &w) in o.iter_mut().zip(x).zip(g).zip(a[1]) {
                    *o = s * g * w - k * x;
                }
            }),
            RowOp::RmsNormGradW { eps } => {
                // Partial sums over fixed blocks of rows, added in block order: the result is
                // bit-identical whatever the number of threads or the work stealing (a rayon
                // fold/reduce would sum in a schedule-dependent order, and training runs must
                // reproduce exactly).
                use rayon::prelude::*;
                const BLOCK_ROWS: usize = 64;
                let partials: Vec<Vec<T>> = a[0]
                    .par_chunks(BLOCK_ROWS * row)
                    .zip(a[1].par_chunks(BLOCK_ROWS * row))
                    .map(|(xs, gs)| {
                        let mut acc = vec![T::from_f64(0.0); row];
                        for (x, g) in xs.chunks(row).zip(gs.chunks(row)) {
                            let s = inv_rms(x, eps);
                            for ((acc, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                                *acc += g * x * s;
                            }
                        }
                        acc
                    })
                    .collect();
                let mut out = vec![T::from_f64(0.0); row];
                for p in partials {
                    out.iter_mut().zip(p).for_each(|(o, p)| *o += p);
                }
                out
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            RowOp::Softmax => "softmax-fused",
            RowOp::SoftmaxGrad => "softmax-fused-grad",
            RowOp::LogSoftmax => "log-softmax-fused",
            RowOp::LogSoftmaxGrad => "log-softmax-fused-grad",
            RowOp::RmsNorm { .. } => "rms-norm-fused",
            RowOp::RmsNormGradX { .. } => "rms-norm-fused-grad-x",
            RowOp::RmsNormGradW { .. } => "rms-norm-fused-grad-w",
        }
    }

    /// Checks the inputs (same float dtype, contiguous) and runs the kernel; rows are the first
    /// input's last dimension.
    fn run(self, inputs: &[(&CpuStorage, &Layout)]) -> Result<(CpuStorage, Shape)> {
        let (s0, l0) = inputs[0];
        let row = *l0.shape().dims().last().unwrap_or(&1);
        let shape = match self {
            RowOp::RmsNormGradW { .. } => Shape::from(row),
            _ => l0.shape().clone(),
        };
        fn slices<'a, T: Real>(
            op: RowOp,
            inputs: &[(&'a CpuStorage, &Layout)],
        ) -> Result<Vec<&'a [T]>> {
            inputs
                .iter()
                .map(|(s, l)| match l.contiguous_offsets() {
                    Some((start, end)) => Ok(&T::cpu_storage_as_slice(s)?[start..end]),
                    None => candle_core::bail!("{} expects contiguous input", op.name()),
                })
                .collect()
        }
        if row == 0 {
            candle_core::bail!("{}: empty last dimension", self.name());
        }
        let out = match s0 {
            CpuStorage::F32(_) => {
                f32::to_cpu_storage_owned(self.compute(&slices(self, inputs)?, row))
            }
            CpuStorage::F64(_) => {
                f64::to_cpu_storage_owned(self.compute(&slices(self, inputs)?, row))
            }
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((out, shape))
    }
}

impl CustomOp1 for RowOp {
    fn name(&self) -> &'static str {
        RowOp::name(*self)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(&[(s, l)])
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad_op = match self {
            RowOp::Softmax => RowOp::SoftmaxGrad,
            RowOp::LogSoftmax => RowOp::LogSoftmaxGrad,
            _ => candle_core::bail!("{} has no backward pass", RowOp::name(*self)),
        };
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &grad_op)?))
    }
}

impl CustomOp2 for RowOp {
    fn name(&self) -> &'static str {
        RowOp::name(*self)
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(&[(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let RowOp::RmsNorm { eps } = *self else {
            candle_core::bail!("{} has no backward pass", RowOp::name(*self))
        };
        let grad = grad.contiguous()?;
        let grad_x = x.apply_op3_no_bwd(w, &grad, &RowOp::RmsNormGradX { eps })?;
        let grad_w = x.apply_op2_no_bwd(&grad, &RowOp::RmsNormGradW { eps })?;
        Ok((Some(grad_x), Some(grad_w)))
    }
}

impl CustomOp3 for RowOp {
    fn name(&self) -> &'static str {
        RowOp::name(*self)
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(&[(s1, l1), (s2, l2), (s3, l3)])
    }
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
            assert_matches_finite_differences(name, &base, &grad, |v| {
                let t = Tensor::from_vec(v.to_vec(), x0.shape(), &dev).unwrap();
                f(&t)
                    .unwrap()
                    .mul(&r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            });
        }
    }

    /// Central finite differences of `eval` around `base`, one coordinate at a time, against
    /// the backward pass's `grad`.
    fn assert_matches_finite_differences(
        name: &str,
        base: &[f64],
        grad: &[f64],
        eval: impl Fn(&[f64]) -> f64,
    ) {
        let h = 1e-5;
        for i in 0..base.len() {
            let at = |delta: f64| {
                let mut v = base.to_vec();
                v[i] += delta;
                eval(&v)
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{name}: d[{i}] backward {} vs finite difference {fd}",
                grad[i]
            );
        }
    }

    /// The fused RMS norm's weight gradient against central finite differences.
    #[test]
    fn rms_norm_weight_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let x = input().to_dtype(DType::F64).unwrap();
        let r = x.affine(0.7, 0.2).unwrap().cos().unwrap();
        let w0 = [0.5f64, 1.0, 1.5, -2.0];
        let loss = |w: &Tensor| rms_norm(&x, w, 1e-6)?.mul(&r)?.sum_all();
        let w = Var::from_slice(&w0, 4, &dev).unwrap();
        let grad: Vec<f64> = loss(w.as_tensor())
            .unwrap()
            .backward()
            .unwrap()
            .get(&w)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_matches_finite_differences("rms_norm weight", &w0, &grad, |v| {
            let t = Tensor::new(v, &dev).unwrap();
            loss(&t).unwrap().to_scalar::<f64>().unwrap()
        });
    }

    /// The weight gradient sums over rows; its order must not depend on the thread pool, or
    /// two identical training runs drift apart in the last bits.
    #[test]
    fn rms_norm_weight_gradient_is_independent_of_threads() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..300 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let x = Tensor::from_vec(v, (300, 64), &dev).unwrap();
        let g = x.affine(0.3, 0.1).unwrap().sin().unwrap();
        let grad_w = |threads: usize| -> Vec<f32> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                x.apply_op2_no_bwd(&g, &RowOp::RmsNormGradW { eps: 1e-6 })
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
        };
        let one = grad_w(1);
        for threads in [2, 3, 4] {
            assert_eq!(one, grad_w(threads), "{threads} threads");
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
