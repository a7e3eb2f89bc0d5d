//! A bias added to every row, forward and backward, one pass each.
//!
//! candle's `broadcast_add` of a bias takes its gradient by summing over
//! the broadcast dimensions of a 3-d gradient, a strided reduction that
//! cost a Linear layer's backward as much as one of its two matmuls
//! (BENCHMARKS.md, issue 15). Here the bias's gradient is the column sums
//! of the gradient's rows.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{TASK_ELEMENTS, contiguous_f32, map_rows, supported};

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, x_layout, self.name())?;
        let bias = contiguous_f32(bias, bias_layout, self.name())?;
        if bias.is_empty() || x_layout.dims().last() != Some(&bias.len()) {
            candle_core::bail!(
                "{}: a bias of {} values for rows of {:?}",
                self.name(),
                bias.len(),
                x_layout.dims().last()
            );
        }
        let out = map_rows(x, bias.len(), |x, out| {
            for ((o, &v), &b) in out.iter_mut().zip(x).zip(bias) {
                *o = v + b;
            }
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let bias_grad = grad_res.contiguous()?.apply_op1_no_bwd(&ColumnSums)?;
        Ok((Some(grad_res.clone()), Some(bias_grad)))
    }
}

/// (..., n) -> (n): the sums over every row.
pub(super) struct ColumnSums;

impl candle_core::CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        let x = contiguous_f32(storage, layout, self.name())?;
        Ok((CpuStorage::F32(column_sums(x, width)), Shape::from(width)))
    }
}

/// Sums of the `width`-wide rows of `x`, column by column: per task a
/// partial sum, the partials added in task order so the result does not
/// depend on thread timing.
pub(super) fn column_sums(x: &[f32], width: usize) -> Vec<f32> {
    let task = (TASK_ELEMENTS / width).max(1) * width;
    let partials: Vec<Vec<f32>> = x
        .par_chunks(task)
        .map(|rows| {
            let mut sums = vec![0f32; width];
            for row in rows.chunks(width) {
                for (s, v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
            sums
        })
        .collect();
    let mut sums = vec![0f32; width];
    for partial in &partials {
        for (s, p) in sums.iter_mut().zip(partial) {
            *s += p;
        }
    }
    sums
}

/// `x + bias` with `bias` (the size of x's last dimension) added to every
/// row, differentiable in both; candle's `broadcast_add` where the kernel
/// does not apply (not f32 on the CPU).
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if supported(x) && supported(bias) {
        x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
    } else {
        x.broadcast_add(bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::gradients_under;
    use candle_core::{Device, Var};

    #[test]
    fn values_and_gradients_match_broadcast_add() {
        let device = Device::Cpu;
        let x = Var::randn(0f32, 1.0, (30, 50, 96), &device).unwrap();
        let bias = Var::randn(0f32, 1.0, 96, &device).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (30, 50, 96), &device).unwrap();
        let run = |y: Tensor| {
            let grads = gradients_under(&y, &upstream).unwrap();
            let grad = |v: &Var| grads.get(v).unwrap().clone();
            (y, grad(&x), grad(&bias))
        };
        let fused = run(add_bias(&x, &bias).unwrap());
        let plain = run(x.broadcast_add(&bias).unwrap());
        let difference = crate::model::kernels::testing::largest_difference;
        assert_eq!(difference(&fused.0, &plain.0).unwrap(), 0.0, "values");
        assert_eq!(difference(&fused.1, &plain.1).unwrap(), 0.0, "dx");
        assert!(difference(&fused.2, &plain.2).unwrap() < 1e-3, "dbias");
    }

    #[test]
    fn an_empty_bias_adds_nothing() {
        let device = Device::Cpu;
        let x = Tensor::zeros((4, 0), candle_core::DType::F32, &device).unwrap();
        let bias = Tensor::zeros(0, candle_core::DType::F32, &device).unwrap();
        assert_eq!(add_bias(&x, &bias).unwrap().dims(), &[4, 0]);
    }
}
