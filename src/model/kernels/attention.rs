//! Multi-head scaled dot-product attention on a packed (Q | K | V) tensor,
//! forward and backward, one pass over every (sequence, head) each.
//!
//! Why: candle's chain splits Q, K and V into heads (three strided copies),
//! runs two batched matmuls of (seq x head_dim) blocks (a gemm call per
//! block, hundreds of calls of 32 x 32 per layer), a softmax and a copy
//! back into rows, and its backward adds every one of those gradients into
//! a fresh zero tensor. At the sequence lengths labelgen sees (turns of 12
//! to 48 tokens, dialogues of up to a few dozen turns) a head's work fits
//! in a few kilobytes, so one loop per (sequence, head) reads Q, K and V
//! where the dense layer wrote them and writes the context where the
//! output dense layer reads it. The backward recomputes the attention
//! weights (seq x seq per head) rather than keeping them.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, supported};

/// Where a sequence's Q, K and V and its mask live.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    seq: usize,
    heads: usize,
    head_dim: usize,
    /// Rows of the additive mask per sequence: 1 (one row for every query)
    /// or `seq` (a row per query).
    mask_rows: usize,
    /// Whether every sequence shares one mask (a leading dimension of 1).
    shared_mask: bool,
}

impl Dims {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    /// The additive mask for query `i` of sequence `b`: `seq` values.
    fn mask_row<'a>(&self, mask: &'a [f32], b: usize, i: usize) -> &'a [f32] {
        let b = if self.shared_mask { 0 } else { b };
        let i = if self.mask_rows == 1 { 0 } else { i };
        let start = (b * self.mask_rows + i) * self.seq;
        &mask[start..start + self.seq]
    }

    fn of(qkv: &Layout, mask: &Layout, heads: usize) -> Result<Dims> {
        let (batch, seq, packed) = qkv.shape().dims3()?;
        let (mask_batch, one, mask_rows, mask_seq) = mask.shape().dims4()?;
        if heads == 0 || packed % (3 * heads) != 0 {
            candle_core::bail!("attention: rows of {packed} are not (Q | K | V) of {heads} heads");
        }
        let shared_mask = mask_batch == 1 && batch != 1;
        if (!shared_mask && mask_batch != batch)
            || one != 1
            || (mask_rows != 1 && mask_rows != seq)
            || mask_seq != seq
        {
            candle_core::bail!(
                "attention: a mask of {:?} for {batch} sequences of {seq}",
                mask.dims()
            );
        }
        Ok(Dims {
            batch,
            seq,
            heads,
            head_dim: packed / (3 * heads),
            mask_rows,
            shared_mask,
        })
    }
}

/// `y += a * x`
#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Softmax of one row in place.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// One head of one sequence: views of its packed rows.
struct Head<'a> {
    /// The sequence's rows, (seq, 3 * hidden).
    rows: &'a [f32],
    dims: Dims,
    head: usize,
}

impl Head<'_> {
    fn part(&self, row: usize, which: usize) -> &[f32] {
        let hidden = self.dims.hidden();
        let start = row * 3 * hidden + which * hidden + self.head * self.dims.head_dim;
        &self.rows[start..start + self.dims.head_dim]
    }

    fn query(&self, row: usize) -> &[f32] {
        self.part(row, 0)
    }

    fn key(&self, row: usize) -> &[f32] {
        self.part(row, 1)
    }

    fn value(&self, row: usize) -> &[f32] {
        self.part(row, 2)
    }

    /// A (head_dim, seq) copy of the keys (which = 1) or values (2), so a
    /// query's scores are head_dim vector updates over `seq` values.
    fn transposed(&self, which: usize, out: &mut [f32]) {
        let seq = self.dims.seq;
        for j in 0..seq {
            for (t, &v) in self.part(j, which).iter().enumerate() {
                out[t * seq + j] = v;
            }
        }
    }

    /// The attention weights, (seq, seq), of sequence `b`.
    fn weights(&self, mask: &[f32], b: usize, keys_t: &mut [f32], weights: &mut [f32]) {
        let seq = self.dims.seq;
        let scale = (self.dims.head_dim as f32).powf(-0.5);
        self.transposed(1, keys_t);
        for (i, scores) in weights.chunks_mut(seq).enumerate() {
            scores.copy_from_slice(self.dims.mask_row(mask, b, i));
            for (t, &q) in self.query(i).iter().enumerate() {
                axpy(scores, scale * q, &keys_t[t * seq..(t + 1) * seq]);
            }
            softmax(scores);
        }
    }
}

struct Attention {
    heads: usize,
}

impl CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        mask: &CpuStorage,
        mask_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = Dims::of(qkv_layout, mask_layout, self.heads)?;
        let qkv = contiguous_f32(qkv, qkv_layout, self.name())?;
        let mask = contiguous_f32(mask, mask_layout, self.name())?;
        let (seq, hidden, head_dim) = (dims.seq, dims.hidden(), dims.head_dim);
        let mut context = vec![0f32; dims.batch * seq * hidden];
        context
            .par_chunks_mut(seq * hidden)
            .zip(qkv.par_chunks(seq * 3 * hidden))
            .enumerate()
            .for_each(|(b, (context, rows))| {
                let mut keys_t = vec![0f32; head_dim * seq];
                let mut weights = vec![0f32; seq * seq];
                for head in 0..dims.heads {
                    let view = Head { rows, dims, head };
                    view.weights(mask, b, &mut keys_t, &mut weights);
                    for (i, p) in weights.chunks(seq).enumerate() {
                        let start = i * hidden + head * head_dim;
                        let out = &mut context[start..start + head_dim];
                        for (j, &p) in p.iter().enumerate() {
                            axpy(out, p, view.value(j));
                        }
                    }
                }
            });
        let shape = Shape::from((dims.batch, seq, hidden));
        Ok((CpuStorage::F32(context), shape))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let backward = AttentionBackward { heads: self.heads };
        let grad = qkv.apply_op3_no_bwd(mask, &grad_res.contiguous()?, &backward)?;
        Ok((Some(grad), None))
    }
}

/// (qkv, mask, grad of the context) -> grad of qkv.
struct AttentionBackward {
    heads: usize,
}

impl CustomOp3 for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention-backward"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        mask: &CpuStorage,
        mask_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = Dims::of(qkv_layout, mask_layout, self.heads)?;
        let qkv = contiguous_f32(qkv, qkv_layout, self.name())?;
        let mask = contiguous_f32(mask, mask_layout, self.name())?;
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        let (seq, hidden) = (dims.seq, dims.hidden());
        let mut qkv_grad = vec![0f32; qkv.len()];
        qkv_grad
            .par_chunks_mut(seq * 3 * hidden)
            .zip(qkv.par_chunks(seq * 3 * hidden))
            .zip(grad.par_chunks(seq * hidden))
            .enumerate()
            .for_each(|(b, ((qkv_grad, rows), grad))| {
                let mut scratch = Scratch::new(dims);
                for head in 0..dims.heads {
                    let view = Head { rows, dims, head };
                    head_backward(&view, mask, b, grad, qkv_grad, &mut scratch);
                }
            });
        Ok((CpuStorage::F32(qkv_grad), qkv_layout.shape().clone()))
    }
}

/// Per-task buffers of the backward pass.
struct Scratch {
    keys_t: Vec<f32>,
    values_t: Vec<f32>,
    weights: Vec<f32>,
    weight_grads: Vec<f32>,
}

impl Scratch {
    fn new(dims: Dims) -> Scratch {
        let (seq, head_dim) = (dims.seq, dims.head_dim);
        Scratch {
            keys_t: vec![0f32; head_dim * seq],
            values_t: vec![0f32; head_dim * seq],
            weights: vec![0f32; seq * seq],
            weight_grads: vec![0f32; seq],
        }
    }
}

/// One head's share of the gradient: with P the weights, dO the context's
/// gradient and s the scale, dV_j = sum_i P_ij dO_i, dP_ij = dO_i . V_j,
/// dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), dQ_i = s sum_j dS_ij K_j and
/// dK_j = s sum_i dS_ij Q_i.
fn head_backward(
    view: &Head,
    mask: &[f32],
    b: usize,
    grad: &[f32],
    qkv_grad: &mut [f32],
    scratch: &mut Scratch,
) {
    let Dims { seq, head_dim, .. } = view.dims;
    let hidden = view.dims.hidden();
    let scale = (head_dim as f32).powf(-0.5);
    let offset =
        |row: usize, which: usize| row * 3 * hidden + which * hidden + view.head * head_dim;
    view.weights(mask, b, &mut scratch.keys_t, &mut scratch.weights);
    view.transposed(2, &mut scratch.values_t);
    for i in 0..seq {
        let start = i * hidden + view.head * head_dim;
        let context_grad = &grad[start..start + head_dim];
        let p = &scratch.weights[i * seq..(i + 1) * seq];
        // dP_i = dO_i V^T, then dS_i in place.
        let dp = &mut scratch.weight_grads;
        dp.fill(0.0);
        for (t, &g) in context_grad.iter().enumerate() {
            axpy(dp, g, &scratch.values_t[t * seq..(t + 1) * seq]);
        }
        let centre: f32 = p.iter().zip(dp.iter()).map(|(p, d)| p * d).sum();
        for (d, &p) in dp.iter_mut().zip(p) {
            *d = p * (*d - centre) * scale;
        }
        for j in 0..seq {
            let (p, ds) = (p[j], dp[j]);
            let value_grad = offset(j, 2);
            axpy(
                &mut qkv_grad[value_grad..value_grad + head_dim],
                p,
                context_grad,
            );
            let key_grad = offset(j, 1);
            axpy(
                &mut qkv_grad[key_grad..key_grad + head_dim],
                ds,
                view.query(i),
            );
            let query_grad = offset(i, 0);
            axpy(
                &mut qkv_grad[query_grad..query_grad + head_dim],
                ds,
                view.key(j),
            );
        }
    }
}

/// Attention over `qkv`, (batch, seq, 3 * hidden) with each row Q | K | V
/// (each `heads` blocks of hidden / heads), and an additive `mask` of
/// (batch or 1, 1, 1 or seq, seq): the context, (batch, seq, hidden).
/// `None` where the kernel does not apply (not f32 on the CPU).
pub fn attention(qkv: &Tensor, mask: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    if !(supported(qkv) && supported(mask)) {
        return Ok(None);
    }
    qkv.contiguous()?
        .apply_op2(&mask.contiguous()?, Attention { heads })
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::largest_difference;
    use candle_core::{D, Device, Var};

    /// candle's op chain: split heads, scores, softmax, weighted values.
    fn chain(qkv: &Tensor, mask: &Tensor, heads: usize) -> Tensor {
        let (batch, seq, packed) = qkv.dims3().unwrap();
        let hidden = packed / 3;
        let head_dim = hidden / heads;
        let split = |which: usize| {
            qkv.narrow(2, which * hidden, hidden)
                .unwrap()
                .reshape((batch, seq, heads, head_dim))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / (head_dim as f64).sqrt())
            .unwrap()
            .broadcast_add(mask)
            .unwrap();
        candle_nn::ops::softmax(&scores, D::Minus1)
            .unwrap()
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((batch, seq, hidden))
            .unwrap()
    }

    fn check(batch: usize, seq: usize, heads: usize, mask: Tensor) {
        let device = Device::Cpu;
        let qkv = Var::randn(0f32, 1.0, (batch, seq, 3 * heads * 8), &device).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (batch, seq, heads * 8), &device).unwrap();
        let run = |y: Tensor| {
            let grads = (&y * &upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (y, grads.get(&qkv).unwrap().clone())
        };
        let fused = run(attention(&qkv, &mask, heads).unwrap().unwrap());
        let plain = run(chain(&qkv, &mask, heads));
        assert!(
            largest_difference(&fused.0, &plain.0).unwrap() < 1e-4,
            "values"
        );
        assert!(
            largest_difference(&fused.1, &plain.1).unwrap() < 1e-4,
            "dqkv"
        );
    }

    #[test]
    fn values_and_gradients_match_the_op_chain_with_a_padding_mask() {
        let (batch, seq) = (5, 7);
        let lengths = [7usize, 3, 1, 6, 5];
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..seq).map(move |j| if j < n { 0.0 } else { -1e4 }))
            .collect();
        let mask = Tensor::from_vec(mask, (batch, 1, 1, seq), &Device::Cpu).unwrap();
        check(batch, seq, 4, mask);
    }

    #[test]
    fn values_and_gradients_match_the_op_chain_with_a_mask_per_query() {
        let (batch, seq) = (3, 6);
        // A lookahead of 1 shared by every sequence, as the dialogue layer's.
        let mask: Vec<f32> = (0..seq)
            .flat_map(|i| (0..seq).map(move |j| if j > i + 1 { -1e4 } else { 0.0 }))
            .collect();
        let shared = Tensor::from_vec(mask, (1, 1, seq, seq), &Device::Cpu).unwrap();
        check(batch, seq, 2, shared.clone());
        let per_sequence = shared.broadcast_as((batch, 1, seq, seq)).unwrap();
        check(batch, seq, 2, per_sequence.contiguous().unwrap());
    }

    #[test]
    fn a_mask_of_the_wrong_shape_is_an_error_not_a_panic() {
        let device = Device::Cpu;
        let qkv = Tensor::zeros((2, 5, 24), candle_core::DType::F32, &device).unwrap();
        let mask = Tensor::zeros((2, 1, 1, 4), candle_core::DType::F32, &device).unwrap();
        assert!(attention(&qkv, &mask, 2).is_err());
        let mask = Tensor::zeros((2, 1, 1, 5), candle_core::DType::F32, &device).unwrap();
        assert!(attention(&qkv, &mask, 5).is_err());
    }
}
