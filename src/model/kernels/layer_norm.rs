//! LayerNorm over the last dimension, forward and backward, one pass each.
//!
//! Per row of `hidden` values: mean m, variance v (two passes, as the op
//! chain computes it), r = 1 / sqrt(v + eps), x^ = (x - m) r, y = x^ w + b.
//! Backward, with g = d loss / d y and g^ = g w:
//! dx = r (g^ - mean(g^) - x^ mean(g^ x^)), dw = sum over rows of g x^,
//! db = sum over rows of g.

use candle_core::{CpuStorage, CustomOp3, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{TASK_ELEMENTS, contiguous_f32, map_rows, supported};

/// Partial sums per row: a row's sums run in this many independent lanes,
/// added together at the end. One running sum is a chain of dependent adds
/// that the compiler may not reorder, so it stays scalar (the forward pass
/// was 3.4% of `label --precision int16` with a MiniLM model); lanes
/// vectorise, and their order is fixed, so every build gives the same value.
const LANES: usize = 8;

/// The sum of `term(v)` over `x`, in [`LANES`] lanes.
#[inline(always)]
fn lane_sum(x: &[f32], term: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += term(v);
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(tail) {
        *lane += term(v);
    }
    lanes.iter().sum()
}

/// One row's mean and 1 / standard deviation.
#[inline(always)]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let variance = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (variance + eps).sqrt())
}

/// One row of the forward pass: `out = (x - mean) rstd weight + bias`.
#[inline(always)]
fn forward_row(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let (mean, rstd) = moments(x, eps);
    for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
        *o = (v - mean) * rstd * w + b;
    }
}

/// The row functions built for AVX2 with FMA, chosen at run time where the
/// CPU has them (the baseline x86-64 build is SSE: 4 lanes, not 8). The
/// same operations in the same order (Rust fuses no multiply-add by
/// itself), so the same values.
#[cfg(target_arch = "x86_64")]
mod simd {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_row_avx2(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        eps: f32,
        out: &mut [f32],
    ) {
        super::forward_row(x, weight, bias, eps, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn backward_row_avx2(
        x: &[f32],
        grad: &[f32],
        weight: &[f32],
        eps: f32,
        sums: (&mut [f32], &mut [f32]),
        dx: &mut [f32],
    ) {
        super::backward_row(x, grad, weight, eps, sums, dx)
    }
}

/// x's values and its row width (its last dimension).
fn rows<'a>(op: &str, x: &'a CpuStorage, layout: &Layout) -> Result<(&'a [f32], usize)> {
    let hidden = layout.dims().last().copied().unwrap_or(0);
    if hidden == 0 {
        candle_core::bail!("{op}: rows of 0 values");
    }
    Ok((contiguous_f32(x, layout, op)?, hidden))
}

/// A weight or bias: one value per column of x.
fn per_column<'a>(
    op: &str,
    v: &'a CpuStorage,
    layout: &Layout,
    hidden: usize,
) -> Result<&'a [f32]> {
    let values = contiguous_f32(v, layout, op)?;
    if values.len() != hidden {
        candle_core::bail!("{op}: {} values for rows of {hidden}", values.len());
    }
    Ok(values)
}

struct LayerNormOp {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, hidden) = rows(self.name(), x, x_layout)?;
        let weight = per_column(self.name(), weight, weight_layout, hidden)?;
        let bias = per_column(self.name(), bias, bias_layout, hidden)?;
        #[cfg(target_arch = "x86_64")]
        let avx2 = super::avx2_fma();
        let out = map_rows(x, hidden, |x, out| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { simd::forward_row_avx2(x, weight, bias, self.eps, out) };
            }
            forward_row(x, weight, bias, self.eps, out)
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let hidden = x.dim(D::Minus1)?;
        let grads = x.contiguous()?.apply_op3_no_bwd(
            weight,
            &grad_res.contiguous()?,
            &LayerNormBackward { eps: self.eps },
        )?;
        // [dx (x's elements), dw (hidden), db (hidden)]
        let n = x.elem_count();
        let dx = grads.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = grads.narrow(0, n, hidden)?;
        let db = grads.narrow(0, n + hidden, hidden)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// (x, weight, d loss / d y) -> [dx, dw, db] flattened into one vector.
struct LayerNormBackward {
    eps: f32,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, hidden) = rows(self.name(), x, x_layout)?;
        let weight = per_column(self.name(), weight, weight_layout, hidden)?;
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        if grad.len() != x.len() {
            candle_core::bail!("{}: gradient and input differ in size", self.name());
        }
        let mut out = vec![0f32; x.len() + 2 * hidden];
        let (dx, sums) = out.split_at_mut(x.len());
        let task = (TASK_ELEMENTS / hidden).max(1) * hidden;
        #[cfg(target_arch = "x86_64")]
        let avx2 = super::avx2_fma();
        // Per task, its rows' share of dw and db, summed below in task order
        // so the result does not depend on thread timing.
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(task)
            .zip(x.par_chunks(task).zip(grad.par_chunks(task)))
            .map(|(dx, (x, grad))| {
                let mut sums = vec![0f32; 2 * hidden];
                let (dw, db) = sums.split_at_mut(hidden);
                for ((dx, x), g) in dx
                    .chunks_mut(hidden)
                    .zip(x.chunks(hidden))
                    .zip(grad.chunks(hidden))
                {
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        // SAFETY: the CPU has AVX2 and FMA.
                        unsafe {
                            simd::backward_row_avx2(
                                x,
                                g,
                                weight,
                                self.eps,
                                (&mut *dw, &mut *db),
                                dx,
                            )
                        };
                        continue;
                    }
                    backward_row(x, g, weight, self.eps, (&mut *dw, &mut *db), dx);
                }
                sums
            })
            .collect();
        for partial in &partials {
            for (s, p) in sums.iter_mut().zip(partial) {
                *s += p;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * hidden)))
    }
}

/// One row's dx, and its terms added to `sums`, (dw, db).
#[inline(always)]
fn backward_row(
    x: &[f32],
    grad: &[f32],
    weight: &[f32],
    eps: f32,
    (dw, db): (&mut [f32], &mut [f32]),
    dx: &mut [f32],
) {
    let n = x.len() as f32;
    let (mean, rstd) = moments(x, eps);
    // Sums of g w and of g w x^, in lanes as `lane_sum`'s.
    let (mut sum_g, mut sum_gx) = ([0f32; LANES], [0f32; LANES]);
    let mut add = |lane: usize, v: f32, g: f32, w: f32| {
        let normed = (v - mean) * rstd;
        sum_g[lane] += g * w;
        sum_gx[lane] += g * w * normed;
    };
    let (chunks, tail) = (x.len() / LANES, x.len() / LANES * LANES);
    for chunk in 0..chunks {
        let at = chunk * LANES;
        let (v, g, w) = (
            &x[at..at + LANES],
            &grad[at..at + LANES],
            &weight[at..at + LANES],
        );
        for lane in 0..LANES {
            add(lane, v[lane], g[lane], w[lane]);
        }
    }
    for (lane, i) in (tail..x.len()).enumerate() {
        add(lane, x[i], grad[i], weight[i]);
    }
    let mean_g = sum_g.iter().sum::<f32>() / n;
    let mean_gx = sum_gx.iter().sum::<f32>() / n;
    for i in 0..x.len() {
        let normed = (x[i] - mean) * rstd;
        dx[i] = rstd * (grad[i] * weight[i] - mean_g - normed * mean_gx);
        dw[i] += grad[i] * normed;
        db[i] += grad[i];
    }
}

/// LayerNorm of `x` over its last dimension with `weight` and `bias`
/// (both of that size), differentiable in all three. `None` where the
/// kernel does not apply (not f32 on the CPU): the caller runs the op chain.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    if !supported(x) {
        return Ok(None);
    }
    let op = LayerNormOp { eps: eps as f32 };
    Ok(Some(x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        op,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::gradients_under;
    use candle_core::{Device, Var};

    /// The op chain this kernel replaces (layers.rs's differentiable path).
    fn chain(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let centered = x.broadcast_sub(&mean).unwrap();
        let variance = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let normed = centered
            .broadcast_div(&(variance + eps).unwrap().sqrt().unwrap())
            .unwrap();
        normed
            .broadcast_mul(weight)
            .unwrap()
            .broadcast_add(bias)
            .unwrap()
    }

    #[test]
    fn values_and_gradients_match_the_op_chain() {
        let device = Device::Cpu;
        // Rows across several tasks, offset inputs, non-trivial weights.
        let rows = 3 * TASK_ELEMENTS / 48 + 7;
        let x = Var::from_tensor(
            &(Tensor::randn(0f32, 2.0, (rows, 48), &device).unwrap() + 3.0).unwrap(),
        )
        .unwrap();
        let weight = Var::randn(1f32, 0.5, 48, &device).unwrap();
        let bias = Var::randn(0f32, 0.5, 48, &device).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (rows, 48), &device).unwrap();
        let run = |y: Tensor| {
            let grads = gradients_under(&y, &upstream).unwrap();
            let grad = |v: &Var| grads.get(v).unwrap().clone();
            (y, grad(&x), grad(&weight), grad(&bias))
        };
        let fused = run(layer_norm(&x, &weight, &bias, 1e-5).unwrap().unwrap());
        let plain = run(chain(&x, &weight, &bias, 1e-5));
        let difference = |a: &Tensor, b: &Tensor| {
            use crate::model::kernels::testing::{largest_abs, largest_difference};
            largest_difference(a, b).unwrap() / largest_abs(b).unwrap().max(1.0)
        };
        assert!(difference(&fused.0, &plain.0) < 1e-5, "values");
        assert!(difference(&fused.1, &plain.1) < 1e-4, "dx");
        assert!(difference(&fused.2, &plain.2) < 1e-4, "dweight");
        assert!(difference(&fused.3, &plain.3) < 1e-4, "dbias");
    }

    /// The AVX2 builds of both passes give the baseline build's bits, on
    /// rows with and without a tail of under 8 values.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_rows_equal_the_baseline_ones() {
        if !crate::model::kernels::avx2_fma() {
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let values = |n: usize, seed: u32| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 97.0 - 4.0
                })
                .collect()
        };
        for hidden in [8, 13, 384] {
            let (x, grad) = (values(hidden, 1), values(hidden, 2));
            let (weight, bias) = (values(hidden, 3), values(hidden, 4));
            let (mut baseline, mut avx2) = (vec![0f32; hidden], vec![0f32; hidden]);
            forward_row(&x, &weight, &bias, 1e-5, &mut baseline);
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { simd::forward_row_avx2(&x, &weight, &bias, 1e-5, &mut avx2) };
            assert_eq!(bits(&avx2), bits(&baseline), "forward, {hidden} wide");
            let mut sums = [vec![0f32; 3 * hidden], vec![0f32; 3 * hidden]];
            for (sums, avx2) in sums.iter_mut().zip([false, true]) {
                let (dx, rest) = sums.split_at_mut(hidden);
                let (dw, db) = rest.split_at_mut(hidden);
                if avx2 {
                    // SAFETY: as above.
                    unsafe { simd::backward_row_avx2(&x, &grad, &weight, 1e-5, (dw, db), dx) };
                } else {
                    backward_row(&x, &grad, &weight, 1e-5, (dw, db), dx);
                }
            }
            assert_eq!(bits(&sums[1]), bits(&sums[0]), "backward, {hidden} wide");
            assert!(sums[0].iter().all(|v| v.is_finite()) && sums[0].iter().any(|v| *v != 0.0));
        }
    }

    #[test]
    fn a_weight_of_the_wrong_size_is_an_error() {
        let device = Device::Cpu;
        let x = Tensor::ones((2, 8), candle_core::DType::F32, &device).unwrap();
        let short = Tensor::ones(4, candle_core::DType::F32, &device).unwrap();
        let message = layer_norm(&x, &short, &short, 1e-5)
            .unwrap_err()
            .to_string();
        assert!(message.contains("rows of 8"), "{message}");
    }
}
