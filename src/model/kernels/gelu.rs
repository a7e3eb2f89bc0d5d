//! GELU in its exact form, x/2 (1 + erf(x / sqrt 2)), forward and backward.
//!
//! candle's `gelu_erf` calls libm's scalar `erff` per element (6% of a
//! MiniLM inference profile) and its backward is a chain of seven ops. Here
//! erf is the rational approximation Eigen (and so PyTorch's CPU kernels)
//! uses for f32, x P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 in f32 beyond),
//! with plain multiply-adds that the compiler vectorises; its largest error
//! against erf is under 5e-7. The backward pass is one more loop:
//! d/dx GELU(x) = Phi(x) + x phi(x).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::{contiguous_f32, map_rows, map_rows2, supported};

// Eigen's coefficients, written at f32 precision.
const NUMERATOR: [f32; 7] = [
    -1.609_603_3e-2,
    -2.954_6e-3,
    -7.349_906_4e-4,
    -5.692_506_2e-5,
    -2.101_024e-6,
    2.770_681_5e-8,
    -2.726_142_4e-10,
];
const DENOMINATOR: [f32; 5] = [
    -1.426_473_9e-2,
    -7.373_329_3e-3,
    -1.682_827e-3,
    -2.133_740_5e-4,
    -1.456_607_15e-5,
];

// Inlined into the callers' AVX2 builds (kernels::linear), which vectorise it.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = NUMERATOR[..6]
        .iter()
        .rev()
        .fold(NUMERATOR[6], |acc, &c| acc * x2 + c);
    let q = DENOMINATOR[..4]
        .iter()
        .rev()
        .fold(DENOMINATOR[4], |acc, &c| acc * x2 + c);
    x * p / q
}

#[inline(always)]
pub(super) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The derivative of GELU: Phi(x) + x phi(x), with phi the standard normal density.
#[inline(always)]
fn gelu_derivative(x: f32) -> f32 {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    cdf + x * FRAC_1_SQRT_2PI * super::exp(-0.5 * x * x)
}

/// Rows of this many elements for the element-wise maps (any length works).
pub(super) const ROW: usize = 1024;

/// GELU of each of `x` into `out` (the same length), on one thread.
pub(super) fn gelu_slice(x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { simd::gelu_slice_avx2(x, out) };
    }
    gelu_loop(x, out)
}

/// `grad * GELU'(x)` elementwise into `out` (all three the same length),
/// on one thread.
fn gelu_backward_slice(x: &[f32], grad: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { simd::gelu_backward_slice_avx2(x, grad, out) };
    }
    gelu_backward_loop(x, grad, out)
}

#[inline(always)]
fn gelu_loop(x: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = gelu(x);
    }
}

#[inline(always)]
fn gelu_backward_loop(x: &[f32], grad: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(grad) {
        *o = g * gelu_derivative(x);
    }
}

/// The loops built for AVX2 with FMA, chosen at run time where the CPU has
/// them: the baseline x86-64 build runs them 4 lanes at a time in SSE (the
/// forward and backward GELU of training were 11% of the default encoder's
/// step). The same operations in the same order (Rust fuses no
/// multiply-add by itself), so the same values.
#[cfg(target_arch = "x86_64")]
mod simd {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu_slice_avx2(x: &[f32], out: &mut [f32]) {
        super::gelu_loop(x, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu_backward_slice_avx2(x: &[f32], grad: &[f32], out: &mut [f32]) {
        super::gelu_backward_loop(x, grad, out)
    }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-rational"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let out = map_rows(input, ROW, gelu_slice);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &GeluErfBackward)?;
        Ok(Some(grad))
    }
}

/// (x, d loss / d GELU(x)) -> d loss / d x.
pub(super) struct GeluErfBackward;

impl CustomOp2 for GeluErfBackward {
    fn name(&self) -> &'static str {
        "gelu-erf-rational-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, x_layout, self.name())?;
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        let out = map_rows2(x, grad, ROW, gelu_backward_slice);
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

/// GELU (erf form) of `x`: the vectorised kernel (with its backward pass)
/// for an f32 tensor on the CPU, candle's `gelu_erf` otherwise.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if supported(x) {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        x.gelu_erf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_rational_erf_is_within_5e7_of_erf() {
        let xs: Vec<f32> = (-60_000..=60_000).map(|i| i as f32 * 1e-4).collect();
        // candle's erf in f64 as the reference.
        let exact = Tensor::new(xs.as_slice(), &Device::Cpu)
            .and_then(|t| t.to_dtype(candle_core::DType::F64)?.erf()?.to_vec1::<f64>())
            .unwrap();
        let worst = xs
            .iter()
            .zip(&exact)
            .map(|(&x, &e)| (f64::from(erf(x)) - e).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "largest error {worst}");
    }

    #[test]
    fn it_matches_candles_gelu_erf_on_a_tensor_split_across_tasks() {
        let n = 3 * super::super::TASK_ELEMENTS + 17;
        let x = Tensor::randn(0f32, 3.0, n, &Device::Cpu).unwrap();
        let ours = gelu_erf(&x).unwrap();
        let candle = x.gelu_erf().unwrap();
        let largest = (ours - candle)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(largest < 5e-6, "largest difference {largest}");
    }

    #[test]
    fn its_gradient_matches_candles_gelu_erf() {
        let n = 3 * super::super::TASK_ELEMENTS + 5;
        let x = candle_core::Var::randn(0f32, 3.0, n, &Device::Cpu).unwrap();
        let weights = Tensor::randn(0f32, 1.0, n, &Device::Cpu).unwrap();
        let gradient = |y: Tensor| {
            let loss = (y * &weights).unwrap().sum_all().unwrap();
            loss.backward().unwrap().get(&x).unwrap().clone()
        };
        let ours = gradient(gelu_erf(&x).unwrap());
        let candle = gradient(x.gelu_erf().unwrap());
        let largest = super::super::testing::largest_difference(&ours, &candle).unwrap();
        assert!(largest < 1e-5, "largest difference {largest}");
    }
}
