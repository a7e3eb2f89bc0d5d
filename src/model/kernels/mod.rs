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
pub mod bf16;
pub mod bias;
pub mod gelu;
pub mod int16;
pub mod layer_norm;
pub mod linear;
pub mod softmax;
mod switch;

use candle_core::{CpuStorage, Layout, Result, Tensor};
use rayon::prelude::*;

/// candle 0.11 runs its element-wise ops (residual adds, the gradient sums
/// of every backward step) on a pool of its own beside rayon's, one thread
/// fewer than `RAYON_NUM_THREADS`, whose workers spin for 25,000 pauses
/// after each op before they park. On 2 cores that third thread spins on a
/// core that rayon's workers need for the next kernel: 18% of the samples
/// of the default encoder's training step were its spin (perf). Parked at
/// once, it costs a wake-up per op instead: the default encoder's step
/// 1.14-1.24x faster, 4 x 256's 1.08-1.10x, MiniLM's and `label` within
/// the noise, a whole-encoder `train` 1.09-1.10x and `pretrain` 1.17x
/// (BENCHMARKS.md, 2026-12-07); no value changes. A value the user set is kept.
///
/// # Safety
/// Sets an environment variable: call it before any thread is spawned.
pub unsafe fn park_elementwise_workers() {
    const SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(SPIN_LIMIT).is_none() {
        // SAFETY: the caller's promise: no other thread reads the environment.
        unsafe { std::env::set_var(SPIN_LIMIT, "0") };
    }
}

/// Elements per parallel task: below twice this a tensor is done on one thread.
const TASK_ELEMENTS: usize = 1 << 15;

/// e^x in f32 as Cephes' `expf` computes it: x = n ln 2 + r with |r| <=
/// ln 2 / 2, e^r by a degree-7 polynomial, times 2^n put straight into the
/// exponent bits; 0 below -87 (e^-87 is the smallest normal f32's
/// neighbourhood, and masked attention scores sit at -1e4). Plain
/// multiply-adds and integer ops, so loops over it vectorise, where
/// `f32::exp` is a libm call per element (the attention softmax and the
/// GELU derivative call it per element). Within 2 ulp of e^x (tested).
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let clamped = x.clamp(-87.0, 88.0);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ]
    .iter()
    .fold(0.0f32, |acc, &c| acc * r + c);
    let e_r = p * r * r + r + 1.0;
    // n sits in the low bits of `shifted`'s mantissa (offset 0x4B40_0000).
    let exponent = shifted
        .to_bits()
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127)
        << 23;
    let value = e_r * f32::from_bits(exponent);
    if x < -87.0 { 0.0 } else { value }
}

/// Whether the CPU has AVX2 and FMA: the kernels' loops built for them
/// (`#[target_feature]`) are chosen at run time where it does; the default
/// build targets baseline x86-64, whose 4-wide SSE they would otherwise get.
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

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
mod tests {
    #[test]
    fn exp_is_within_2_ulp_of_e_to_the_x() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let exact = f64::from(x).exp();
            let ulp = f64::from(f32::EPSILON) * exact;
            worst = worst.max((f64::from(super::exp(x)) - exact).abs() / ulp);
        }
        assert!(worst <= 2.0, "largest error {worst} ulp");
        assert_eq!(super::exp(-1e4), 0.0);
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(f32::NEG_INFINITY) == 0.0);
    }
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
        largest_abs(&(a - b)?)
    }

    /// Largest absolute value of a tensor (the scale a difference is read against).
    pub fn largest_abs(t: &Tensor) -> Result<f32> {
        t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }
}
