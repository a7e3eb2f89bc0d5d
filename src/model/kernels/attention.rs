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

/// Softmax of one row in place. The exponentials and the sum are separate
/// loops so the first vectorises; the sum keeps eight running totals.
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in row.iter_mut() {
        *v = super::exp(*v - max);
    }
    let mut totals = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (t, v) in totals.iter_mut().zip(chunk) {
            *t += v;
        }
    }
    let sum = totals.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let scale = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= scale;
    }
}

/// Where a weighted sum's weights sit: `weights[r * by_out + k * by_row]`
/// weighs row k in output r, times `scale`.
#[derive(Clone, Copy)]
struct Weights<'a> {
    values: &'a [f32],
    by_out: usize,
    by_row: usize,
    scale: f32,
}

impl Weights<'_> {
    fn of(values: &[f32], by_out: usize, by_row: usize) -> Weights<'_> {
        Weights {
            values,
            by_out,
            by_row,
            scale: 1.0,
        }
    }
}

/// Weighted sums of rows: `out[r] = sum_k w(r, k) rows[k]` for rows of
/// `width` values, `out` and `rows` both (count, width). The columns go in
/// blocks of 32, 16, ..., 1, each block's sums kept in registers (a
/// fixed-size accumulator) over every term, not stored and reloaded at
/// each: the load-add-store of a row per term was the hottest loop of the
/// backward pass. Every sum adds its terms in the order of k, from zero.
#[inline(always)]
fn weighted_sums(weights: Weights, rows: &[f32], width: usize, out: &mut [f32]) {
    let mut start = 0;
    while start < width {
        start += match width - start {
            32.. => column_block::<32>(weights, rows, width, start, out),
            16.. => column_block::<16>(weights, rows, width, start, out),
            8.. => column_block::<8>(weights, rows, width, start, out),
            4.. => column_block::<4>(weights, rows, width, start, out),
            2.. => column_block::<2>(weights, rows, width, start, out),
            _ => column_block::<1>(weights, rows, width, start, out),
        };
    }
}

/// [`weighted_sums`] of columns `start..start + WIDTH`; returns WIDTH.
#[inline(always)]
fn column_block<const WIDTH: usize>(
    weights: Weights,
    rows: &[f32],
    width: usize,
    start: usize,
    out: &mut [f32],
) -> usize {
    let Weights {
        values,
        by_out,
        by_row,
        scale,
    } = weights;
    for (r, out) in out.chunks_exact_mut(width).enumerate() {
        let mut sum = [0f32; WIDTH];
        for (k, row) in rows.chunks_exact(width).enumerate() {
            let weight = scale * values[r * by_out + k * by_row];
            for (s, v) in sum.iter_mut().zip(&row[start..start + WIDTH]) {
                *s += weight * v;
            }
        }
        out[start..start + WIDTH].copy_from_slice(&sum);
    }
    WIDTH
}

/// One sequence's Q, K and V regrouped by head, read from its packed rows
/// in one pass, row after row. Why: a head's slice of a row is 32 floats
/// 4.6 KB (a MiniLM row) from the next row's, so reading it head by head
/// touches a new page at every row and defeats the hardware prefetcher;
/// the profile of `label` had the first load of each slice as the hottest
/// instruction of the kernel. Row after row, every read is sequential.
struct Regrouped {
    dims: Dims,
    /// (heads, seq, head_dim)
    queries: Vec<f32>,
    /// (heads, seq, head_dim); filled for the backward pass only.
    keys: Vec<f32>,
    /// (hidden, seq): head h's (head_dim, seq) block at h * head_dim * seq,
    /// so a query's scores are head_dim vector updates over `seq` values.
    keys_t: Vec<f32>,
    /// (heads, seq, head_dim) for the forward pass's weighted sums; (hidden,
    /// seq) as `keys_t` for the backward pass's dP = dO V^T.
    values: Vec<f32>,
}

impl Regrouped {
    /// `rows`: the sequence's (seq, 3 * hidden) packed rows.
    fn new(dims: Dims, rows: &[f32], backward: bool) -> Regrouped {
        let (seq, hidden) = (dims.seq, dims.hidden());
        let mut regrouped = Regrouped {
            dims,
            queries: vec![0f32; seq * hidden],
            keys: if backward {
                vec![0f32; seq * hidden]
            } else {
                Vec::new()
            },
            keys_t: vec![0f32; seq * hidden],
            values: vec![0f32; seq * hidden],
        };
        for (j, row) in rows.chunks_exact(3 * hidden).enumerate() {
            let (query, rest) = row.split_at(hidden);
            let (key, value) = rest.split_at(hidden);
            regrouped.by_head(query, j, Part::Queries);
            transpose_into(key, j, seq, &mut regrouped.keys_t);
            if backward {
                regrouped.by_head(key, j, Part::Keys);
                transpose_into(value, j, seq, &mut regrouped.values);
            } else {
                regrouped.by_head(value, j, Part::Values);
            }
        }
        regrouped
    }

    /// Copies row `j`'s (hidden) slice into a (heads, seq, head_dim) part.
    fn by_head(&mut self, slice: &[f32], j: usize, part: Part) {
        let Dims { seq, head_dim, .. } = self.dims;
        let out = match part {
            Part::Queries => &mut self.queries,
            Part::Keys => &mut self.keys,
            Part::Values => &mut self.values,
        };
        for (head, slice) in slice.chunks_exact(head_dim).enumerate() {
            let start = (head * seq + j) * head_dim;
            out[start..start + head_dim].copy_from_slice(slice);
        }
    }

    /// Head `head`'s (seq, head_dim) block of a (heads, seq, head_dim) buffer,
    /// or its (head_dim, seq) block of a transposed (hidden, seq) one: both
    /// start at the same offset.
    fn block<'a>(&self, buffer: &'a [f32], head: usize) -> &'a [f32] {
        let size = self.dims.seq * self.dims.head_dim;
        &buffer[head * size..(head + 1) * size]
    }

    /// Head `head`'s attention weights, (seq, seq), of sequence `b`.
    #[inline(always)]
    fn weights(&self, mask: &[f32], b: usize, head: usize, weights: &mut [f32]) {
        let Dims { seq, head_dim, .. } = self.dims;
        let scale = (head_dim as f32).powf(-0.5);
        let keys_t = self.block(&self.keys_t, head);
        let queries = self.block(&self.queries, head);
        // scores_i = sum_t s q_it K^T_t, then the mask
        let scaled_queries = Weights {
            scale,
            ..Weights::of(queries, head_dim, 1)
        };
        weighted_sums(scaled_queries, keys_t, seq, weights);
        for (i, scores) in weights.chunks_mut(seq).enumerate() {
            for (s, m) in scores.iter_mut().zip(self.dims.mask_row(mask, b, i)) {
                *s += m;
            }
            softmax(scores);
        }
    }
}

#[derive(Clone, Copy)]
enum Part {
    Queries,
    Keys,
    Values,
}

/// Writes row `j` of a (seq, hidden) matrix as column `j` of its (hidden,
/// seq) transpose.
#[inline(always)]
fn transpose_into(row: &[f32], j: usize, seq: usize, transposed: &mut [f32]) {
    for (c, &v) in row.iter().enumerate() {
        transposed[c * seq + j] = v;
    }
}

/// Writes head `head`'s (seq, head_dim) block into its columns of (seq,
/// width) rows, at `offset` within each row.
#[inline(always)]
fn scatter(
    block: &[f32],
    head_dim: usize,
    head: usize,
    offset: usize,
    width: usize,
    out: &mut [f32],
) {
    for (row, block) in out
        .chunks_exact_mut(width)
        .zip(block.chunks_exact(head_dim))
    {
        let start = offset + head * head_dim;
        row[start..start + head_dim].copy_from_slice(block);
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
        let (seq, hidden) = (dims.seq, dims.hidden());
        let mut context = vec![0f32; dims.batch * seq * hidden];
        context
            .par_chunks_mut(seq * hidden)
            .zip(qkv.par_chunks(seq * 3 * hidden))
            .enumerate()
            .for_each(|(b, (context, rows))| {
                #[cfg(target_arch = "x86_64")]
                if super::avx2_fma() {
                    // SAFETY: the CPU has the features the build is compiled for.
                    return unsafe { simd::forward_sequence_avx2(dims, mask, b, rows, context) };
                }
                forward_sequence(dims, mask, b, rows, context)
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
                #[cfg(target_arch = "x86_64")]
                if super::avx2_fma() {
                    // SAFETY: the CPU has the features the build is compiled for.
                    return unsafe {
                        simd::backward_sequence_avx2(dims, mask, b, rows, grad, qkv_grad)
                    };
                }
                backward_sequence(dims, mask, b, rows, grad, qkv_grad)
            });
        Ok((CpuStorage::F32(qkv_grad), qkv_layout.shape().clone()))
    }
}

/// The context of sequence `b`, (seq, hidden), from its packed rows.
#[inline(always)]
fn forward_sequence(dims: Dims, mask: &[f32], b: usize, rows: &[f32], context: &mut [f32]) {
    let (seq, hidden, head_dim) = (dims.seq, dims.hidden(), dims.head_dim);
    let regrouped = Regrouped::new(dims, rows, false);
    let mut weights = vec![0f32; seq * seq];
    let mut block = vec![0f32; seq * head_dim];
    for head in 0..dims.heads {
        regrouped.weights(mask, b, head, &mut weights);
        // context_i = sum_j P_ij V_j
        let values = regrouped.block(&regrouped.values, head);
        weighted_sums(Weights::of(&weights, seq, 1), values, head_dim, &mut block);
        scatter(&block, head_dim, head, 0, hidden, context);
    }
}

/// The gradient of sequence `b`'s packed rows from its context's gradient.
#[inline(always)]
fn backward_sequence(
    dims: Dims,
    mask: &[f32],
    b: usize,
    rows: &[f32],
    grad: &[f32],
    qkv_grad: &mut [f32],
) {
    let regrouped = Regrouped::new(dims, rows, true);
    let mut scratch = Scratch::new(dims, grad);
    for head in 0..dims.heads {
        head_backward(&regrouped, head, mask, b, qkv_grad, &mut scratch);
    }
}

/// Builds of the per-sequence loops for AVX2 with FMA, chosen at run time
/// where the CPU has them (the default build targets baseline x86-64, whose
/// 4-wide SSE the short vector loops here would otherwise be compiled for).
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Dims, backward_sequence, forward_sequence};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_sequence_avx2(
        dims: Dims,
        mask: &[f32],
        b: usize,
        rows: &[f32],
        context: &mut [f32],
    ) {
        forward_sequence(dims, mask, b, rows, context)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn backward_sequence_avx2(
        dims: Dims,
        mask: &[f32],
        b: usize,
        rows: &[f32],
        grad: &[f32],
        qkv_grad: &mut [f32],
    ) {
        backward_sequence(dims, mask, b, rows, grad, qkv_grad)
    }
}

/// Per-sequence buffers of the backward pass: one head's weights and their
/// gradients, the context's gradient regrouped by head, one gradient block.
struct Scratch {
    weights: Vec<f32>,
    weight_grads: Vec<f32>,
    /// (heads, seq, head_dim)
    context_grads: Vec<f32>,
    block: Vec<f32>,
}

impl Scratch {
    /// `grad`: the sequence's (seq, hidden) context gradient.
    fn new(dims: Dims, grad: &[f32]) -> Scratch {
        let Dims { seq, head_dim, .. } = dims;
        let mut context_grads = vec![0f32; grad.len()];
        for (j, row) in grad.chunks_exact(dims.hidden()).enumerate() {
            for (head, slice) in row.chunks_exact(head_dim).enumerate() {
                let start = (head * seq + j) * head_dim;
                context_grads[start..start + head_dim].copy_from_slice(slice);
            }
        }
        Scratch {
            weights: vec![0f32; seq * seq],
            weight_grads: vec![0f32; seq * seq],
            context_grads,
            block: vec![0f32; seq * head_dim],
        }
    }
}

/// One head's share of the gradient: with P the weights, dO the context's
/// gradient and s the scale, dV_j = sum_i P_ij dO_i, dP_ij = dO_i . V_j,
/// dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), dQ_i = s sum_j dS_ij K_j and
/// dK_j = s sum_i dS_ij Q_i.
#[inline(always)]
fn head_backward(
    regrouped: &Regrouped,
    head: usize,
    mask: &[f32],
    b: usize,
    qkv_grad: &mut [f32],
    scratch: &mut Scratch,
) {
    let Dims { seq, head_dim, .. } = regrouped.dims;
    let hidden = regrouped.dims.hidden();
    let scale = (head_dim as f32).powf(-0.5);
    regrouped.weights(mask, b, head, &mut scratch.weights);
    let values_t = regrouped.block(&regrouped.values, head);
    let context_grads = regrouped.block(&scratch.context_grads, head);
    // dP_i = dO_i V^T, then dS_i in place, row by row.
    let context_grad_weights = Weights::of(context_grads, head_dim, 1);
    weighted_sums(
        context_grad_weights,
        values_t,
        seq,
        &mut scratch.weight_grads,
    );
    for (dp, p) in scratch
        .weight_grads
        .chunks_exact_mut(seq)
        .zip(scratch.weights.chunks_exact(seq))
    {
        let centre: f32 = p.iter().zip(dp.iter()).map(|(p, d)| p * d).sum();
        for (d, &p) in dp.iter_mut().zip(p) {
            *d = p * (*d - centre) * scale;
        }
    }
    let block = &mut scratch.block;
    // dV_j = sum_i P_ij dO_i
    weighted_sums(
        Weights::of(&scratch.weights, 1, seq),
        context_grads,
        head_dim,
        block,
    );
    scatter(block, head_dim, head, 2 * hidden, 3 * hidden, qkv_grad);
    // dK_j = sum_i dS_ij Q_i (the scale is in dS)
    let queries = regrouped.block(&regrouped.queries, head);
    let weight_grads = &scratch.weight_grads;
    weighted_sums(Weights::of(weight_grads, 1, seq), queries, head_dim, block);
    scatter(block, head_dim, head, hidden, 3 * hidden, qkv_grad);
    // dQ_i = sum_j dS_ij K_j
    let keys = regrouped.block(&regrouped.keys, head);
    weighted_sums(Weights::of(weight_grads, seq, 1), keys, head_dim, block);
    scatter(block, head_dim, head, 0, 3 * hidden, qkv_grad);
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
    use crate::model::kernels::testing::{gradients_under, largest_difference};
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

    /// Heads of 8, 16 and 32 (column blocks of each width; sequences of 7 and
    /// 6 take the blocks of 4, 2 and 1).
    fn check(batch: usize, seq: usize, heads: usize, mask: Tensor) {
        for head_dim in [8, 16, 32] {
            check_heads_of(batch, seq, heads, head_dim, &mask);
        }
    }

    fn check_heads_of(batch: usize, seq: usize, heads: usize, head_dim: usize, mask: &Tensor) {
        let device = Device::Cpu;
        let hidden = heads * head_dim;
        let qkv = Var::randn(0f32, 1.0, (batch, seq, 3 * hidden), &device).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (batch, seq, hidden), &device).unwrap();
        let run = |y: Tensor| {
            let grads = gradients_under(&y, &upstream).unwrap();
            (y, grads.get(&qkv).unwrap().clone())
        };
        let fused = run(attention(&qkv, mask, heads).unwrap().unwrap());
        let plain = run(chain(&qkv, mask, heads));
        let context = largest_difference(&fused.0, &plain.0).unwrap();
        assert!(context < 1e-4, "context, heads of {head_dim}: {context}");
        let dqkv = largest_difference(&fused.1, &plain.1).unwrap();
        assert!(dqkv < 1e-4, "dqkv, heads of {head_dim}: {dqkv}");
    }

    /// The baseline build of the per-sequence loops (the one a CPU without
    /// AVX2 runs) against the AVX2 build, where this CPU has it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_build_computes_what_the_baseline_build_does() {
        if !super::super::avx2_fma() {
            return;
        }
        let (seq, heads, head_dim) = (9, 3, 32);
        let dims = Dims {
            batch: 1,
            seq,
            heads,
            head_dim,
            mask_rows: 1,
            shared_mask: false,
        };
        let device = Device::Cpu;
        let values = |n: usize| {
            Tensor::randn(0f32, 1.0, n, &device)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let hidden = heads * head_dim;
        let (rows, grad) = (values(seq * 3 * hidden), values(seq * hidden));
        let mask: Vec<f32> = (0..seq).map(|j| if j < 6 { 0.0 } else { -1e4 }).collect();
        let (mut baseline, mut avx2) = (vec![0f32; seq * hidden], vec![0f32; seq * hidden]);
        forward_sequence(dims, &mask, 0, &rows, &mut baseline);
        // SAFETY: checked above that the CPU has AVX2 and FMA.
        unsafe { simd::forward_sequence_avx2(dims, &mask, 0, &rows, &mut avx2) };
        let largest = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        assert!(largest(&baseline, &avx2) < 1e-5);
        assert!(baseline.iter().any(|&v| v != 0.0));
        let (mut baseline, mut avx2) = (vec![0f32; rows.len()], vec![0f32; rows.len()]);
        backward_sequence(dims, &mask, 0, &rows, &grad, &mut baseline);
        // SAFETY: as above.
        unsafe { simd::backward_sequence_avx2(dims, &mask, 0, &rows, &grad, &mut avx2) };
        assert!(largest(&baseline, &avx2) < 1e-5);
        assert!(baseline.iter().any(|&v| v != 0.0));
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
