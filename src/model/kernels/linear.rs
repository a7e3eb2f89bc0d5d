//! A dense layer, y = x W^T + b, as one op with its own backward pass.
//!
//! candle 0.11 records `x.matmul(&w.t())` then the bias as three graph
//! nodes, and its backward (a) always computes the input's gradient, a
//! whole gemm wasted when the input is a frozen layer's cached output (the
//! lowest trained layer of `--train-top-layers`), (b) takes the weight's
//! gradient as an (in, out) matrix, adds it into a fresh zero tensor, then
//! transposes it and adds it into a second zero tensor of (out, in), and
//! (c) adds the output's gradient into a zero tensor before the bias node
//! passes it on. Here the weight's gradient is one gemm straight into
//! (out, in), the input's only when the input records a graph, and the
//! bias's the column sums of the output's gradient.
//!
//! [`dense_gelu`] also applies GELU inside the op (the Transformer's
//! intermediate layer), so the widest tensor of a layer, (tokens, 4 x
//! hidden), is not a graph node of its own: no separate output to allocate
//! and no zeroed gradient to add into in the backward pass.
//!
//! Under `--bf16` ([`super::bf16`]) the op's three products (forward, the
//! input's and the weight's gradients) run in bf16 with f32 sums, where the
//! op trains (an input records a graph) and the outputs allow the kernel.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::bf16::Factor;
use super::bias::ColumnSums;
use super::gelu::{self, GeluErfBackward, gelu};
use super::{TASK_ELEMENTS, supported};

/// What the op applies after `x W^T + b`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Activation {
    Identity,
    /// GELU, erf form ([`super::gelu`]).
    GeluErf,
}

/// Adds `bias` to every row of `y` (rows of `bias.len()` values), then GELU
/// where asked, in place and in parallel: the end of a dense layer's
/// forward pass.
fn add_bias_rows(y: &mut [f32], bias: &[f32], gelu_after: bool) {
    let outputs = bias.len().max(1);
    let task = (TASK_ELEMENTS / outputs).max(1) * outputs;
    y.par_chunks_mut(task)
        .for_each(|rows| add_bias_in_place(rows, bias, gelu_after));
}

/// [`add_bias_rows`] on one thread, for a caller that already runs in
/// parallel over its rows (the int16 kernel, block by block while the
/// block is in cache).
pub(super) fn add_bias_in_place(rows: &mut [f32], bias: &[f32], gelu_after: bool) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { simd::add_bias_task_avx2(rows, bias, gelu_after) };
    }
    add_bias_task(rows, bias, gelu_after)
}

#[inline(always)]
fn add_bias_task(rows: &mut [f32], bias: &[f32], gelu_after: bool) {
    for row in rows.chunks_mut(bias.len().max(1)) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
        if gelu_after {
            row.iter_mut().for_each(|v| *v = gelu(*v));
        }
    }
}

/// `add_bias_task` built for AVX2 with FMA, chosen at run time where the
/// CPU has them: the baseline x86-64 build runs GELU's rational polynomial
/// 4 lanes at a time in SSE (7% of `label --precision int16` with a MiniLM
/// model, where the dense layers are cheap). The same operations in the
/// same order (Rust fuses no multiply-add by itself), so the same values.
#[cfg(target_arch = "x86_64")]
mod simd {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn add_bias_task_avx2(rows: &mut [f32], bias: &[f32], gelu_after: bool) {
        super::add_bias_task(rows, bias, gelu_after)
    }
}

struct Dense {
    activation: Activation,
    /// The three products in bf16 with f32 sums ([`super::bf16`], `--bf16`):
    /// only where the op trains.
    bf16: bool,
    /// With an activation, when a backward pass may follow: `x W^T + b`,
    /// whose GELU derivative the backward pass needs (the op's output is
    /// GELU of it). Stored by the forward pass; `None` at inference.
    pre_activation: Option<Mutex<Option<Tensor>>>,
}

impl Dense {
    /// x (rows, in) W^T in bf16 where this op takes it; None otherwise.
    fn bf16_forward(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
    ) -> Result<Option<Vec<f32>>> {
        if !self.bf16 {
            return Ok(None);
        }
        let (outputs, inputs) = weight_layout.shape().dims2()?;
        let x = super::contiguous_f32(x, x_layout, "dense")?;
        let x = Factor {
            data: x,
            dims: (x.len() / inputs.max(1), inputs),
            transposed: false,
        };
        let weight = Factor {
            data: super::contiguous_f32(weight, weight_layout, "dense")?,
            dims: (outputs, inputs),
            transposed: false,
        };
        Ok(super::bf16::product(x, weight))
    }

    /// `a b^T` (each factor transposed where asked) in bf16 where this op
    /// takes it; None otherwise.
    fn bf16_product(
        &self,
        a: &Tensor,
        b: &Tensor,
        transposed: (bool, bool),
    ) -> Result<Option<Tensor>> {
        if !self.bf16 {
            return Ok(None);
        }
        super::bf16::matmul_t(a, b, transposed)
    }
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "dense"
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
        // x is contiguous (see `dense`), so its leading dimensions are rows.
        let mut dims = x_layout.dims().to_vec();
        let inputs = dims.pop().unwrap_or(0);
        let rows = dims.iter().product::<usize>();
        let (outputs, weight_inputs) = weight_layout.shape().dims2()?;
        let bias = super::contiguous_f32(bias, bias_layout, self.name())?;
        if weight_inputs != inputs || bias.len() != outputs {
            candle_core::bail!(
                "{}: rows of {inputs} against a weight of ({outputs}, {weight_inputs}) and a bias of {}",
                self.name(),
                bias.len()
            );
        }
        let mut y = match self.bf16_forward(x, x_layout, weight, weight_layout)? {
            Some(y) => y,
            None => {
                // (rows, in) x (in, out): W^T is a strided view of W, as candle's `t()`.
                let rows_layout =
                    Layout::contiguous_with_offset((rows, inputs), x_layout.start_offset());
                let product = x.matmul(
                    weight,
                    (1, rows, outputs, inputs),
                    &rows_layout,
                    &weight_layout.transpose(0, 1)?,
                )?;
                let CpuStorage::F32(y) = product else {
                    candle_core::bail!("{}: f32 only", self.name());
                };
                y
            }
        };
        let in_place_gelu = self.activation == Activation::GeluErf && self.pre_activation.is_none();
        add_bias_rows(&mut y, bias, in_place_gelu);
        dims.push(outputs);
        let shape = Shape::from(dims);
        let Some(pre_activation) = &self.pre_activation else {
            return Ok((CpuStorage::F32(y), shape));
        };
        // Training: GELU into a new vector, x W^T + b kept for the backward pass.
        let activated = super::map_rows(&y, gelu::ROW, gelu::gelu_slice);
        let kept = Tensor::from_vec(y, shape.clone(), &Device::Cpu)?;
        *pre_activation
            .lock()
            .map_err(|_| candle_core::Error::Msg("dense: poisoned lock".into()))? = Some(kept);
        Ok((CpuStorage::F32(activated), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // (..., out) -> (rows, out) and (..., in) -> (rows, in): views, not
        // copies; nothing runs backward through them, so unlike reshapes in
        // the forward they cost no zeroed tensor and add.
        let (outputs, inputs) = weight.dims2()?;
        let grad = match (self.activation, &self.pre_activation) {
            (Activation::Identity, _) => grad_res.contiguous()?,
            (Activation::GeluErf, Some(kept)) => {
                // d loss / d (x W^T + b) = d loss / d y * GELU'(x W^T + b)
                let kept = kept
                    .lock()
                    .map_err(|_| candle_core::Error::Msg("dense: poisoned lock".into()))?;
                let Some(pre_activation) = kept.as_ref() else {
                    candle_core::bail!("{}: backward before forward", self.name());
                };
                pre_activation.apply_op2_no_bwd(&grad_res.contiguous()?, &GeluErfBackward)?
            }
            (Activation::GeluErf, None) => {
                candle_core::bail!(
                    "{}: backward through an op built for inference",
                    self.name()
                )
            }
        };
        let grad = grad.reshape((grad.elem_count() / outputs.max(1), outputs))?;
        let x_rows = x.reshape((grad.dim(0)?, inputs))?;
        // (rows, out) x (out, in) -> (rows, in) -> (..., in)
        let x_grad = x
            .track_op()
            .then(|| {
                let bf16 = self.bf16_product(&grad, weight, (false, true))?;
                bf16.map_or_else(|| grad.matmul(weight), Ok)?
                    .reshape(x.shape())
            })
            .transpose()?;
        // (out, rows) x (rows, in) -> (out, in)
        let weight_grad = weight
            .track_op()
            .then(|| {
                let bf16 = self.bf16_product(&grad, &x_rows, (true, true))?;
                bf16.map_or_else(|| grad.t()?.matmul(&x_rows), Ok)
            })
            .transpose()?;
        let bias_grad = bias
            .track_op()
            .then(|| grad.apply_op1_no_bwd(&ColumnSums))
            .transpose()?;
        Ok((x_grad, weight_grad, bias_grad))
    }
}

/// `x W^T + b` for x of (..., in), W of (out, in) and b of (out), giving
/// (..., out) as one graph node: a 3-d input needs no reshape nodes, each
/// of which would cost a zeroed tensor and an add in candle's backward.
/// `None` where the kernel does not apply (not f32 on the CPU, or empty),
/// so the caller runs candle's ops.
pub fn dense(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Option<Tensor>> {
    dense_with(x, weight, bias, Activation::Identity)
}

/// GELU (erf form) of `x W^T + b`, as one graph node; otherwise as [`dense`].
pub fn dense_gelu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Option<Tensor>> {
    dense_with(x, weight, bias, Activation::GeluErf)
}

fn dense_with(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    activation: Activation,
) -> Result<Option<Tensor>> {
    if !(supported(x) && supported(weight) && supported(bias)) {
        return Ok(None);
    }
    // Only a graph that backward can run through needs the pre-activation.
    let trains = x.track_op() || weight.track_op() || bias.track_op();
    let op = Dense {
        activation,
        bf16: trains && super::bf16::enabled(),
        pre_activation: (activation != Activation::Identity && trains).then(|| Mutex::new(None)),
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::{gradients_under, largest_difference};
    use candle_core::{Device, Var};

    fn chain(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
        x.broadcast_matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(bias)
            .unwrap()
    }

    /// The AVX2+FMA build of the bias and GELU epilogue gives the baseline
    /// build's values bit for bit (no fused multiply-adds crept in).
    #[test]
    fn the_avx2_epilogue_equals_the_baseline_one() {
        #[cfg(target_arch = "x86_64")]
        if super::super::avx2_fma() {
            let values = Tensor::randn(0f32, 3.0, 5 * 37, &Device::Cpu).unwrap();
            let values = values.to_vec1::<f32>().unwrap();
            let bias = Tensor::randn(0f32, 1.0, 37, &Device::Cpu).unwrap();
            let bias = bias.to_vec1::<f32>().unwrap();
            for gelu_after in [false, true] {
                let (mut baseline, mut avx2) = (values.clone(), values.clone());
                add_bias_task(&mut baseline, &bias, gelu_after);
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { simd::add_bias_task_avx2(&mut avx2, &bias, gelu_after) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&avx2), bits(&baseline), "GELU after: {gelu_after}");
                assert_ne!(bits(&avx2), bits(&values));
            }
        }
    }

    #[test]
    fn values_and_gradients_match_matmul_and_broadcast_add() {
        check_against_chain(&[300, 96], false);
    }

    #[test]
    fn leading_dimensions_are_rows() {
        check_against_chain(&[6, 50, 96], false);
    }

    #[test]
    fn with_gelu_values_and_gradients_match_the_chain() {
        check_against_chain(&[300, 96], true);
        check_against_chain(&[6, 50, 96], true);
    }

    /// The op (with GELU inside where `gelu`) against candle's chain:
    /// values and the gradients of x, the weight and the bias.
    fn check_against_chain(x_dims: &[usize], gelu: bool) {
        let device = Device::Cpu;
        let x = Var::randn(0f32, 1.0, x_dims, &device).unwrap();
        let mut y_dims = x_dims.to_vec();
        *y_dims.last_mut().unwrap() = 200;
        let weight = Var::randn(0f32, 0.2, (200, 96), &device).unwrap();
        let bias = Var::randn(0f32, 1.0, 200, &device).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, y_dims, &device).unwrap();
        let run = |y: Tensor| {
            let grads = gradients_under(&y, &upstream).unwrap();
            let grad = |v: &Var| grads.get(v).unwrap().clone();
            (y, grad(&x), grad(&weight), grad(&bias))
        };
        let (fused, plain) = if gelu {
            let fused = run(dense_gelu(&x, &weight, &bias).unwrap().unwrap());
            (fused, run(chain(&x, &weight, &bias).gelu_erf().unwrap()))
        } else {
            let fused = run(dense(&x, &weight, &bias).unwrap().unwrap());
            (fused, run(chain(&x, &weight, &bias)))
        };
        for (what, a, b, tolerance) in [
            ("values", &fused.0, &plain.0, 1e-4),
            ("dx", &fused.1, &plain.1, 1e-4),
            ("dweight", &fused.2, &plain.2, 1e-3),
            ("dbias", &fused.3, &plain.3, 1e-3),
        ] {
            let largest = largest_difference(a, b).unwrap();
            assert!(largest < tolerance, "{what} of {x_dims:?}: {largest}");
        }
        if gelu {
            // Without a graph (inference) the op keeps nothing and computes the same.
            let constant = |v: &Var| v.as_tensor().detach();
            let inferred = dense_gelu(&constant(&x), &constant(&weight), &constant(&bias))
                .unwrap()
                .unwrap();
            assert_eq!(largest_difference(&inferred, &fused.0).unwrap(), 0.0);
        }
    }

    /// With `--bf16` on, the op's values and all three gradients are within
    /// bf16's rounding of the f32 chain's, and not equal to them (the bf16
    /// products ran); without a graph the op stays f32.
    #[test]
    fn bf16_products_train_within_their_rounding() {
        if !crate::model::kernels::bf16::available() {
            return;
        }
        let device = Device::Cpu;
        let x = Var::randn(0f32, 1.0, (3, 50, 96), &device).unwrap();
        let weight = Var::randn(0f32, 0.2, (64, 96), &device).unwrap();
        let bias = Var::randn(0f32, 1.0, 64, &device).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (3, 50, 64), &device).unwrap();
        let run = |y: Tensor| {
            let grads = gradients_under(&y, &upstream).unwrap();
            let grad = |v: &Var| grads.get(v).unwrap().clone();
            [y, grad(&x), grad(&weight), grad(&bias)]
        };
        let plain = run(chain(&x, &weight, &bias).gelu_erf().unwrap());
        let scoped = crate::model::kernels::bf16::Scoped::enable(true);
        assert!(scoped.on());
        let mixed = run(dense_gelu(&x, &weight, &bias).unwrap().unwrap());
        for (what, a, b) in [
            ("values", &mixed[0], &plain[0]),
            ("dx", &mixed[1], &plain[1]),
            ("dweight", &mixed[2], &plain[2]),
            ("dbias", &mixed[3], &plain[3]),
        ] {
            let scale = crate::model::kernels::testing::largest_abs(b).unwrap();
            let error = largest_difference(a, b).unwrap();
            assert!(error < 2e-2 * scale, "{what}: {error} of {scale}");
            if what != "dbias" {
                assert!(error > 1e-5 * scale, "{what}: the bf16 path did not run");
            }
        }
        let constant = |v: &Var| v.as_tensor().detach();
        let inferred = dense_gelu(&constant(&x), &constant(&weight), &constant(&bias))
            .unwrap()
            .unwrap();
        assert!(largest_difference(&inferred, &plain[0]).unwrap() < 1e-4);
    }

    #[test]
    fn a_constant_input_gets_no_gradient_and_the_weights_still_do() {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (40, 16), &device).unwrap();
        let weight = Var::randn(0f32, 0.1, (8, 16), &device).unwrap();
        let bias = Var::randn(0f32, 1.0, 8, &device).unwrap();
        let loss = |y: Tensor| y.sqr().unwrap().sum_all().unwrap();
        let fused = loss(dense(&x, &weight, &bias).unwrap().unwrap())
            .backward()
            .unwrap();
        let plain = loss(chain(&x, &weight, &bias)).backward().unwrap();
        assert!(fused.get(&x).is_none());
        let weight_grad = fused.get(&weight).unwrap();
        assert!(largest_difference(weight_grad, plain.get(&weight).unwrap()).unwrap() < 1e-3);
        assert!(
            weight_grad
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }

    #[test]
    fn mismatched_shapes_are_an_error_not_a_panic() {
        let device = Device::Cpu;
        let x = Tensor::zeros((4, 16), candle_core::DType::F32, &device).unwrap();
        let weight = Tensor::zeros((8, 12), candle_core::DType::F32, &device).unwrap();
        let bias = Tensor::zeros(8, candle_core::DType::F32, &device).unwrap();
        assert!(dense(&x, &weight, &bias).is_err());
    }
}
