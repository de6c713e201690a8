//! Item tokens that share their titles' words while training: each item token's embedding row is
//! `free[item] + Σ free[piece] / √n` over the `n` word pieces of its title, and the trainer
//! updates `free`. Every item of a platform or a franchise then learns from every other one
//! through the shared pieces ("PlayStation", "4", "Mario"), which the next-item choice cannot
//! otherwise see: a title is one token, and a rare item's token is trained only a few times.
//! The `√n` keeps a sum of unit-variance rows at unit variance, as T5 starts its embeddings.
//!
//! As with LoRA, the model itself is not rewritten: after each optimizer step the composed rows
//! are written into `shared.weight`, so forward passes, scoring and checkpoints are a plain T5
//! (with tied embeddings the LM head scores the composed rows too). The gradient of `free`
//! follows by the chain rule, `G + Σ G[item] / √n` added to each piece's row, so it is exact.
//! The free rows and the item-to-pieces map are saved beside the model, for `--resume` and for
//! a later stage that keeps composing from the same checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use instructrec_model::Seq2Seq;

use crate::error::{Result, TrainError};
use crate::optimizer::Param;

pub const COMPOSITION_FILE: &str = "item_composition.safetensors";
const EMBEDDINGS: &str = "shared.weight";

pub struct ItemComposition {
    /// The model's embedding matrix, which holds the composed rows.
    weight: Var,
    /// What the optimizer trains.
    free: Var,
    /// One entry per (item token, title piece) pair.
    items: Tensor,
    pieces: Tensor,
    /// `1 / √n` per pair, as a `[pairs, 1]` column.
    coef: Tensor,
}

impl ItemComposition {
    /// Composition over `model`'s current embeddings, which it leaves unchanged: the free row
    /// of an item is its current row minus its pieces' share. `rows` maps item tokens to their
    /// titles' pieces; items without pieces stay free rows alone.
    pub fn attach(model: &Seq2Seq, rows: &[(u32, Vec<u32>)]) -> Result<Self> {
        Self::over(embeddings(model)?, rows)
    }

    fn over(weight: Var, rows: &[(u32, Vec<u32>)]) -> Result<Self> {
        let vocab = weight.as_tensor().dim(0)? as u32;
        let (mut items, mut pieces, mut coef) = (Vec::new(), Vec::new(), Vec::new());
        let item_set: HashSet<u32> = rows.iter().map(|(t, _)| *t).collect();
        for (token, ps) in rows {
            for &p in ps {
                if *token >= vocab || p >= vocab {
                    return Err(TrainError::Config(format!(
                        "item token {token} or piece {p} outside the vocabulary ({vocab})"
                    )));
                }
                // An item's pieces must be plain pieces, or the composition would feed on itself.
                if item_set.contains(&p) {
                    return Err(TrainError::Config(format!(
                        "item token {token} lists item token {p} as one of its pieces"
                    )));
                }
                items.push(*token);
                pieces.push(p);
                coef.push(1.0 / (ps.len() as f32).sqrt());
            }
        }
        if items.is_empty() {
            return Err(TrainError::Config(
                "no item token has title pieces to compose from".into(),
            ));
        }
        let n = items.len();
        let device = weight.device();
        let items = Tensor::from_vec(items, n, device)?;
        let pieces = Tensor::from_vec(pieces, n, device)?;
        let coef = Tensor::from_vec(coef, (n, 1), device)?;
        let current = weight.as_tensor();
        let share = current.index_select(&pieces, 0)?.broadcast_mul(&coef)?;
        let free = current.index_add(&items, &share.neg()?, 0)?;
        Ok(Self {
            free: Var::from_tensor(&free)?,
            weight,
            items,
            pieces,
            coef,
        })
    }

    /// The composition saved in `dir` by [`ItemComposition::save`]; the model's embeddings are
    /// set from its free rows.
    pub fn load(model: &Seq2Seq, dir: &Path) -> Result<Self> {
        let path = dir.join(COMPOSITION_FILE);
        let err = |message: String| TrainError::Checkpoint {
            path: path.clone(),
            message,
        };
        if !path.is_file() {
            return Err(err(
                "not found: the checkpoint was not trained with composed item tokens".into(),
            ));
        }
        let tensors = candle_core::safetensors::load(&path, model.model.device())
            .map_err(|e| err(e.to_string()))?;
        let get = |key: &str| {
            tensors
                .get(key)
                .cloned()
                .ok_or_else(|| err(format!("missing tensor {key}")))
        };
        let weight = embeddings(model)?;
        let free = get("free")?;
        if free.dims() != weight.as_tensor().dims() {
            return Err(err(format!(
                "free rows of shape {:?}, the model's embeddings are {:?}",
                free.dims(),
                weight.as_tensor().dims()
            )));
        }
        let composition = Self {
            free: Var::from_tensor(&free)?,
            weight,
            items: get("items")?.to_dtype(DType::U32)?,
            pieces: get("pieces")?.to_dtype(DType::U32)?,
            coef: get("coef")?,
        };
        composition.merge()?;
        Ok(composition)
    }

    /// Each composed item token with its pieces, in token order.
    pub fn rows(&self) -> Result<BTreeMap<u32, Vec<u32>>> {
        let mut rows: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (item, piece) in self
            .items
            .to_vec1::<u32>()?
            .into_iter()
            .zip(self.pieces.to_vec1::<u32>()?)
        {
            rows.entry(item).or_default().push(piece);
        }
        Ok(rows)
    }

    /// This composition with `extra` pieces added to the rows of the item tokens it composes
    /// ([`add_new_pieces`]), re-attached over the model's current embeddings, which stay as
    /// they are. Unchanged when nothing is new, so that a checkpoint already composed so
    /// continues with its own free rows.
    pub fn extended(self, extra: &HashMap<u32, Vec<u32>>) -> Result<Self> {
        let mut rows = self.rows()?;
        let added = add_new_pieces(rows.iter_mut().map(|(t, p)| (*t, p)), extra);
        if added == 0 {
            return Ok(self);
        }
        tracing::info!("{added} pieces added to the composition of item tokens");
        Self::over(self.weight, &rows.into_iter().collect::<Vec<_>>())
    }

    /// What the optimizer trains in place of model parameter `p`: the free rows for the
    /// embeddings (under their name, so they decay as the embeddings would), else `p` itself.
    pub fn stand_in(&self, p: Param) -> Param {
        if p.name == EMBEDDINGS {
            Param::with_default_decay(p.name, self.free.clone())
        } else {
            p
        }
    }

    /// Adds the free rows' gradient to `grads`, derived from that of the composed rows.
    pub fn add_grads(&self, grads: &mut GradStore) -> Result<()> {
        let Some(g) = grads.get(self.weight.as_tensor()).cloned() else {
            return Ok(());
        };
        let share = g.index_select(&self.items, 0)?.broadcast_mul(&self.coef)?;
        grads.insert(self.free.as_tensor(), g.index_add(&self.pieces, &share, 0)?);
        Ok(())
    }

    /// Writes the composed rows into the model's embeddings.
    pub fn merge(&self) -> Result<()> {
        let free = self.free.as_tensor();
        let share = free
            .index_select(&self.pieces, 0)?
            .broadcast_mul(&self.coef)?;
        self.weight.set(&free.index_add(&self.items, &share, 0)?)?;
        Ok(())
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let tensors: HashMap<String, Tensor> = [
            ("free", self.free.as_tensor().clone()),
            // Ids as i64, which every safetensors reader loads (PyTorch has little u32 support).
            ("items", self.items.to_dtype(DType::I64)?),
            ("pieces", self.pieces.to_dtype(DType::I64)?),
            ("coef", self.coef.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        crate::checkpoint::save_tensors(&tensors, &dir.join(COMPOSITION_FILE))?;
        Ok(())
    }
}

/// Adds to each item token's pieces those `extra` lists for it that it lacks, in `extra`'s
/// order; returns how many were added. A piece twice in one row would count twice in the sum.
pub fn add_new_pieces<'a>(
    rows: impl Iterator<Item = (u32, &'a mut Vec<u32>)>,
    extra: &HashMap<u32, Vec<u32>>,
) -> usize {
    let mut added = 0;
    for (token, pieces) in rows {
        for p in extra.get(&token).into_iter().flatten() {
            if !pieces.contains(p) {
                pieces.push(*p);
                added += 1;
            }
        }
    }
    added
}

pub(crate) fn embeddings(model: &Seq2Seq) -> Result<Var> {
    model
        .varmap
        .data()
        .lock()
        .expect("varmap lock")
        .get(EMBEDDINGS)
        .cloned()
        .ok_or_else(|| TrainError::Config(format!("the model has no {EMBEDDINGS}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    #[test]
    fn attach_keeps_the_rows_and_the_gradient_follows_the_chain_rule() {
        let table: Vec<f32> = (0..10).map(|x| x as f32 * 0.5 - 2.0).collect();
        let weight =
            Var::from_tensor(&Tensor::from_vec(table, (5, 2), &Device::Cpu).unwrap()).unwrap();
        let before = rows(weight.as_tensor());
        // Item 3 is pieces 0 and 1; item 4 is piece 2; nothing composes item rows from items.
        let items =
            ItemComposition::over(weight.clone(), &[(3, vec![0, 1]), (4, vec![2])]).unwrap();
        items.merge().unwrap();
        let after = rows(weight.as_tensor());
        for (a, b) in before.iter().flatten().zip(after.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "attaching moved a row: {a} -> {b}");
        }
        let free = rows(items.free.as_tensor());
        let s = 1.0 / 2f32.sqrt();
        assert!((free[3][0] - (before[3][0] - s * (before[0][0] + before[1][0]))).abs() < 1e-6);
        assert_eq!(free[0], before[0]);

        // d(sum(W * R))/dW = R; by hand: a piece's row also gets R[item] / sqrt(n).
        let r = Tensor::from_vec(
            (0..10).map(|x| x as f32).collect::<Vec<_>>(),
            (5, 2),
            &Device::Cpu,
        )
        .unwrap();
        let mut grads = (weight.as_tensor() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        items.add_grads(&mut grads).unwrap();
        let g = rows(grads.get(items.free.as_tensor()).unwrap());
        let r = rows(&r);
        for d in 0..2 {
            assert!((g[0][d] - (r[0][d] + s * r[3][d])).abs() < 1e-5);
            assert!((g[1][d] - (r[1][d] + s * r[3][d])).abs() < 1e-5);
            assert!((g[2][d] - (r[2][d] + r[4][d])).abs() < 1e-5);
            assert!((g[3][d] - r[3][d]).abs() < 1e-6);
            assert!((g[4][d] - r[4][d]).abs() < 1e-6);
        }
    }

    #[test]
    fn extending_adds_new_pieces_only_and_keeps_the_rows() {
        let table: Vec<f32> = (0..12).map(|x| (x as f32 * 0.7).sin()).collect();
        let weight =
            Var::from_tensor(&Tensor::from_vec(table, (6, 2), &Device::Cpu).unwrap()).unwrap();
        let before = rows(weight.as_tensor());
        let items =
            ItemComposition::over(weight.clone(), &[(4, vec![0, 1]), (5, vec![2])]).unwrap();
        items.merge().unwrap();
        // Piece 1 is already item 4's; piece 3 is new to it; item 5 gets nothing; token 9 is
        // not a composed item and is ignored.
        let extra = HashMap::from([(4, vec![1, 3]), (9, vec![0])]);
        let extended = items.extended(&extra).unwrap();
        assert_eq!(
            extended.rows().unwrap(),
            BTreeMap::from([(4, vec![0, 1, 3]), (5, vec![2])])
        );
        extended.merge().unwrap();
        let after = rows(weight.as_tensor());
        for (a, b) in before.iter().flatten().zip(after.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "extending moved a row: {a} -> {b}");
        }
        // Item 4's free row now leaves room for three pieces.
        let free = rows(extended.free.as_tensor());
        let s = 1.0 / 3f32.sqrt();
        let want = before[4][0] - s * (before[0][0] + before[1][0] + before[3][0]);
        assert!((free[4][0] - want).abs() < 1e-6);
        // Nothing new: the same composition, free rows included.
        let again = extended.extended(&extra).unwrap();
        assert_eq!(rows(again.free.as_tensor()), free);
    }

    #[test]
    fn an_item_may_not_be_composed_from_another_item() {
        let weight = Var::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
        let err = ItemComposition::over(weight, &[(3, vec![0]), (2, vec![3])])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("item token 2 lists item token 3"), "{err}");
    }
}
