//! GELU in its exact form, x/2 (1 + erf(x / sqrt 2)), for the inference path.
//!
//! candle's `gelu_erf` calls libm's scalar `erff` per element: 6% of a
//! MiniLM inference profile. Here erf is the rational approximation Eigen
//! (and so PyTorch's CPU kernels) uses for f32, x P(x^2) / Q(x^2) on [-4, 4]
//! (erf is +-1 in f32 beyond), with plain multiply-adds that the compiler
//! vectorises; its largest error against erf is under 5e-7. Only for tensors
//! no gradient flows through: it has no backward pass, so training keeps
//! candle's `gelu_erf`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task: below this a tensor is done on one thread.
const TASK_ELEMENTS: usize = 1 << 15;

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

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-rational"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("gelu-erf-rational: a contiguous f32 tensor only");
        };
        let input = &data[start..end];
        let mut out = vec![0f32; input.len()];
        let apply = |(out, input): (&mut [f32], &[f32])| {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = gelu(x);
            }
        };
        if input.len() < 2 * TASK_ELEMENTS {
            apply((&mut out, input));
        } else {
            out.par_chunks_mut(TASK_ELEMENTS)
                .zip(input.par_chunks(TASK_ELEMENTS))
                .for_each(apply);
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GELU (erf form) of `x`: the vectorised kernel for a contiguous f32 tensor
/// on the CPU, candle's `gelu_erf` otherwise (other dtypes and devices).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.dtype() == candle_core::DType::F32 && x.device().is_cpu() {
        x.contiguous()?.apply_op1_no_bwd(&GeluErf)
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
        let n = 3 * TASK_ELEMENTS + 17;
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
}
