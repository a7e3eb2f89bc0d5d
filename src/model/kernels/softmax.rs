//! Softmax over the last dimension, forward and backward, one pass each.
//! Backward, with y the softmax and g = d loss / d y:
//! dx = y (g - sum(g y)) per row.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Result, Shape, Tensor};

use super::{contiguous_f32, map_rows, map_rows2, supported};

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let row = layout.dims().last().copied().unwrap_or(1);
        let input = contiguous_f32(storage, layout, self.name())?;
        let out = map_rows(input, row, |x, out| {
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0f32;
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v - max).exp();
                total += *o;
            }
            for o in out.iter_mut() {
                *o /= total;
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = res
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxBackward)?;
        Ok(Some(grad))
    }
}

/// (y, d loss / d y) -> d loss / d x.
struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-last-dim-backward"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        y_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let row = y_layout.dims().last().copied().unwrap_or(1);
        let y = contiguous_f32(y, y_layout, self.name())?;
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        let out = map_rows2(y, grad, row, |y, g, out| {
            let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
            for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
                *o = y * (g - dot);
            }
        });
        Ok((CpuStorage::F32(out), y_layout.shape().clone()))
    }
}

/// Softmax of `x` over its last dimension, differentiable: the fused kernel
/// for an f32 tensor on the CPU, candle-nn's op chain otherwise.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if supported(x) {
        x.contiguous()?.apply_op1(SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::gradients_under;
    use candle_core::{Device, Var};

    #[test]
    fn values_and_gradients_match_candles_softmax() {
        let device = Device::Cpu;
        // Rows across several tasks; a masked-out column as attention has.
        let x = Var::randn(0f32, 3.0, (40, 12, 9, 9), &device).unwrap();
        let mask = Tensor::from_vec(
            (0..9).map(|j| if j == 8 { -1e4f32 } else { 0.0 }).collect(),
            9,
            &device,
        )
        .unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (40, 12, 9, 9), &device).unwrap();
        let run = |y: Tensor| {
            let grads = gradients_under(&y, &upstream).unwrap();
            (y, grads.get(&x).unwrap().clone())
        };
        let scores = x.broadcast_add(&mask).unwrap();
        let fused = run(softmax_last_dim(&scores).unwrap());
        let plain = run(candle_nn::ops::softmax(&scores, D::Minus1).unwrap());
        let difference = crate::model::kernels::testing::largest_difference;
        assert!(difference(&fused.0, &plain.0).unwrap() < 1e-6, "values");
        assert!(difference(&fused.1, &plain.1).unwrap() < 1e-5, "gradients");
    }
}
