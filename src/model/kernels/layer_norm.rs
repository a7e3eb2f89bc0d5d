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

/// One row's mean and 1 / standard deviation.
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let variance = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (variance + eps).sqrt())
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
        let out = map_rows(x, hidden, |x, out| {
            let (mean, rstd) = moments(x, self.eps);
            for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
                *o = (v - mean) * rstd * w + b;
            }
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
                    backward_row(x, g, weight, self.eps, dx, dw, db);
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

/// One row's dx, and its terms added to dw and db.
fn backward_row(
    x: &[f32],
    grad: &[f32],
    weight: &[f32],
    eps: f32,
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
) {
    let n = x.len() as f32;
    let (mean, rstd) = moments(x, eps);
    let (mut mean_g, mut mean_gx) = (0f32, 0f32);
    for ((&v, &g), &w) in x.iter().zip(grad).zip(weight) {
        let normed = (v - mean) * rstd;
        mean_g += g * w;
        mean_gx += g * w * normed;
    }
    mean_g /= n;
    mean_gx /= n;
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
