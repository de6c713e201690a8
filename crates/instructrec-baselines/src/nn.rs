//! What the neural baselines share below the model level: seeded parameter creation, a linear
//! layer over sequences, and a varmap's weights file, hash and in-memory copy.

use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor, Var};
use candle_nn::{Linear, Module, VarMap};
use instructrec_data::atomic::write_atomic_with;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sha2::{Digest, Sha256};

/// Creates every parameter from one generator, in a fixed order, so the same seed gives the same
/// initial weights (candle's own CPU generator cannot be seeded).
pub(crate) struct Init {
    pub(crate) varmap: VarMap,
    rng: ChaCha8Rng,
    pub(crate) device: Device,
}

impl Init {
    /// New weights on the CPU, drawn from a stream seeded by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            varmap: VarMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: Device::Cpu,
        }
    }

    fn add(&mut self, name: String, t: Tensor) -> anyhow::Result<Tensor> {
        let var = Var::from_tensor(&t)?;
        let tensor = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .insert(name, var);
        Ok(tensor)
    }

    pub(crate) fn normal(
        &mut self,
        name: String,
        shape: (usize, usize),
        std: f32,
    ) -> anyhow::Result<Tensor> {
        let dist = Normal::new(0f32, std)?;
        let values: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| dist.sample(&mut self.rng))
            .collect();
        let t = Tensor::from_vec(values, shape, &self.device)?;
        self.add(name, t)
    }

    pub(crate) fn constant(
        &mut self,
        name: String,
        len: usize,
        value: f32,
    ) -> anyhow::Result<Tensor> {
        let t = Tensor::full(value, len, &self.device)?;
        self.add(name, t)
    }

    /// Xavier-normal weight and zero bias.
    pub(crate) fn linear(&mut self, name: &str, inp: usize, out: usize) -> anyhow::Result<Linear> {
        let std = (2.0 / (inp + out) as f32).sqrt();
        let w = self.normal(format!("{name}.weight"), (out, inp), std)?;
        let b = self.constant(format!("{name}.bias"), out, 0.0)?;
        Ok(Linear::new(w, Some(b)))
    }

    pub(crate) fn norm(&mut self, name: &str, dim: usize) -> anyhow::Result<(Tensor, Tensor)> {
        Ok((
            self.constant(format!("{name}.weight"), dim, 1.0)?,
            self.constant(format!("{name}.bias"), dim, 0.0)?,
        ))
    }
}

/// Applies a linear layer to `[batch, len, in]` as one 2-D matmul: candle's `Linear` on 3-D
/// input broadcasts the weight into `batch` small matmuls, many times slower here.
pub(crate) fn linear3(layer: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, l, d) = x.dims3()?;
    let y = layer.forward(&x.reshape((b * l, d))?)?;
    let out = y.dim(1)?;
    y.reshape((b, l, out))
}

/// Writes every weight to `path` atomically, so a stop leaves no partial file.
pub(crate) fn save(varmap: &VarMap, path: &Path) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| varmap.save(tmp).map_err(std::io::Error::other))
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn load(varmap: &VarMap, path: &Path) -> anyhow::Result<()> {
    // A varmap is a shared handle: loading through a clone sets the model's own variables.
    varmap
        .clone()
        .load(path)
        .with_context(|| format!("loading weights from {}", path.display()))
}

/// SHA-256 of every weight, in name order (the same bytes whether trained or loaded).
pub(crate) fn hash(varmap: &VarMap) -> anyhow::Result<String> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    for n in names {
        h.update(n.as_bytes());
        let v: Vec<f32> = data[n].as_tensor().flatten_all()?.to_vec1()?;
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// A copy of every weight, by name (the best epoch so far).
pub(crate) type Snapshot = Vec<(String, Tensor)>;

pub(crate) fn snapshot(varmap: &VarMap) -> anyhow::Result<Snapshot> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

pub(crate) fn restore(varmap: &VarMap, snapshot: &Snapshot) -> anyhow::Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    for (n, t) in snapshot {
        data[n].set(t)?;
    }
    Ok(())
}
