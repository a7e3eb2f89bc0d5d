//! Fused CPU kernels for the encoder's element-wise ops, each one pass over
//! the data instead of a chain of candle ops, and each with its backward
//! pass, so training takes them too.
//!
//! Why: candle 0.11's differentiable LayerNorm, GELU and softmax are chains
//! of 4 to 9 ops, each allocating its output, and every op's backward adds
//! into a fresh zero tensor. In a MiniLM training step those chains cost
//! more than the layer's matmuls (scripts in BENCHMARKS.md, issue 15).
//! candle-nn's own fused kernels have no backward (the trap in the guide).
//! Every kernel here is checked against the op chain it replaces, values and
//! gradients, in its tests.

pub mod adamw;
pub mod attention;
pub mod bias;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod softmax;

use candle_core::{CpuStorage, Layout, Result, Tensor};
use rayon::prelude::*;

/// Elements per parallel task: below twice this a tensor is done on one thread.
const TASK_ELEMENTS: usize = 1 << 15;

/// The f32 elements of a contiguous CPU tensor's storage, or an error
/// naming the kernel.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, kernel: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{kernel}: a contiguous f32 tensor only"),
    }
}

/// Whether the fused kernels can run on `x`: f32 on the CPU, not empty (a
/// head with no classes has an empty bias; candle's ops handle those).
fn supported(x: &Tensor) -> bool {
    x.dtype() == candle_core::DType::F32 && x.device().is_cpu() && x.elem_count() > 0
}

/// `f` over equal-length rows of `input` (`row` elements each) into a new
/// vector, rows split across rayon's threads in tasks of about
/// `TASK_ELEMENTS`. `f(input_row, output_row)`.
fn map_rows(input: &[f32], row: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; input.len()];
    let rows_per_task = (TASK_ELEMENTS / row.max(1)).max(1);
    let apply = |(out, input): (&mut [f32], &[f32])| {
        for (o, i) in out.chunks_mut(row).zip(input.chunks(row)) {
            f(i, o);
        }
    };
    if input.len() < 2 * TASK_ELEMENTS {
        apply((&mut out, input));
    } else {
        out.par_chunks_mut(rows_per_task * row)
            .zip(input.par_chunks(rows_per_task * row))
            .for_each(apply);
    }
    out
}

/// Like [`map_rows`] over two inputs of the same shape: `f(a_row, b_row, out_row)`.
fn map_rows2(
    a: &[f32],
    b: &[f32],
    row: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    let task = (TASK_ELEMENTS / row.max(1)).max(1) * row;
    let apply = |((out, a), b): ((&mut [f32], &[f32]), &[f32])| {
        for ((o, a), b) in out.chunks_mut(row).zip(a.chunks(row)).zip(b.chunks(row)) {
            f(a, b, o);
        }
    };
    if a.len() < 2 * TASK_ELEMENTS {
        apply(((&mut out, a), b));
    } else {
        out.par_chunks_mut(task)
            .zip(a.par_chunks(task))
            .zip(b.par_chunks(task))
            .for_each(apply);
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::backprop::GradStore;
    use candle_core::{Result, Tensor};

    /// Gradients of `sum(y * upstream)`: a dense, fixed gradient flowing
    /// into `y`, as in training.
    pub fn gradients_under(y: &Tensor, upstream: &Tensor) -> Result<GradStore> {
        (y * upstream)?.sum_all()?.backward()
    }

    /// Largest absolute difference between two tensors of one shape.
    pub fn largest_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }
}
