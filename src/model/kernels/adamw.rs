//! One AdamW update of a weight, in place, one pass over the weight, its
//! gradient and its two moments.
//!
//! Written with candle ops the update is about fourteen element-wise ops,
//! each allocating a tensor the size of the weight: for MiniLM's word
//! embeddings (30,522 x 384) that is 14 fresh 47 MB buffers a step, which
//! the kernel must zero page by page (BENCHMARKS.md, issue 15).

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

use super::{TASK_ELEMENTS, contiguous_f32};

/// The scalars of one update.
#[derive(Debug, Clone, Copy)]
pub struct Update {
    /// Applied to the gradient first (clipping).
    pub grad_scale: f32,
    pub learning_rate: f32,
    /// Decoupled weight decay (0 for biases and norms).
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    /// 1 - beta1^t and 1 - beta2^t: the bias corrections at step t.
    pub correction1: f32,
    pub correction2: f32,
    pub eps: f32,
}

impl Update {
    #[inline(always)]
    fn apply(&self, weight: &mut f32, grad: f32, m: &mut f32, v: &mut f32) {
        let g = grad * self.grad_scale;
        *m = self.beta1 * *m + (1.0 - self.beta1) * g;
        *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
        let step = (*m / self.correction1) / ((*v / self.correction2).sqrt() + self.eps);
        *weight =
            *weight * (1.0 - self.learning_rate * self.weight_decay) - self.learning_rate * step;
    }
}

/// The in-place op on the weight; it writes the moments as it goes.
struct AdamWStep<'a> {
    moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
    update: Update,
}

impl InplaceOp2 for AdamWStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        weight: &mut CpuStorage,
        weight_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<()> {
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        let (CpuStorage::F32(data), Some((start, end))) =
            (weight, weight_layout.contiguous_offsets())
        else {
            candle_core::bail!("{}: a contiguous f32 weight only", self.name());
        };
        let weight = &mut data[start..end];
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        if grad.len() != weight.len() || m.len() != weight.len() || v.len() != weight.len() {
            candle_core::bail!(
                "{}: weight of {}, gradient of {}, moments of {} and {} values",
                self.name(),
                weight.len(),
                grad.len(),
                m.len(),
                v.len()
            );
        }
        let update = self.update;
        weight
            .par_chunks_mut(TASK_ELEMENTS)
            .zip(grad.par_chunks(TASK_ELEMENTS))
            .zip(m.par_chunks_mut(TASK_ELEMENTS))
            .zip(v.par_chunks_mut(TASK_ELEMENTS))
            .for_each(|(((w, g), m), v)| update.apply_all(w, g, m, v));
        Ok(())
    }
}

impl Update {
    /// [`Update::apply`] over equal-length slices, on one thread.
    fn apply_all(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { simd::apply_all_avx2(self, w, g, m, v) };
        }
        self.apply_loop(w, g, m, v)
    }

    #[inline(always)]
    fn apply_loop(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
            self.apply(w, g, m, v);
        }
    }
}

/// The update's loop built for AVX2, chosen at run time where the CPU has
/// it: in the baseline x86-64 build its two divisions and square root ran
/// 4 lanes at a time in SSE, 5% of a MiniLM bf16 training step (every
/// weight, the 30,522 x 384 word embeddings included, is updated every
/// step). The same operations in the same order (Rust fuses no
/// multiply-add by itself; division and square root are exact in IEEE),
/// so the same values.
#[cfg(target_arch = "x86_64")]
mod simd {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn apply_all_avx2(
        update: &super::Update,
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        update.apply_loop(w, g, m, v)
    }
}

/// Updates `weight` in place (every tensor sharing its storage sees it) and
/// its moments `m` and `v` (one value per element).
pub fn step(
    weight: &Tensor,
    grad: &Tensor,
    m: &mut [f32],
    v: &mut [f32],
    update: Update,
) -> Result<()> {
    let op = AdamWStep {
        moments: RefCell::new((m, v)),
        update,
    };
    weight.inplace_op2(&grad.contiguous()?, &op)
}

/// The sum of the squares of a tensor's elements (f32 on the CPU), without
/// the tensor of squares `t.sqr()?.sum_all()` would allocate: for the
/// gradient norm that clips every step.
pub fn sum_of_squares(t: &Tensor) -> Result<f64> {
    if !super::supported(t) {
        return Ok(f64::from(t.sqr()?.sum_all()?.to_scalar::<f32>()?));
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(storage) = &*storage else {
        candle_core::bail!("sum-of-squares: a CPU tensor only");
    };
    let values = contiguous_f32(storage, layout, "sum-of-squares")?;
    // Per task a partial sum, added in task order: the same on any thread count.
    let partials: Vec<f64> = values
        .par_chunks(TASK_ELEMENTS)
        .map(|chunk| f64::from(chunk.iter().map(|v| v * v).sum::<f32>()))
        .collect();
    Ok(partials.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// AdamW's usual scalars (lr 1e-3, decay 0.01, betas 0.9 and 0.999) at
    /// step `t`, the gradient scaled by `grad_scale`.
    fn update_at_step(t: i32, grad_scale: f32) -> Update {
        Update {
            grad_scale,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            correction1: 1.0 - 0.9f32.powi(t),
            correction2: 1.0 - 0.999f32.powi(t),
            eps: 1e-8,
        }
    }

    /// The update written with candle ops, as optim.rs wrote it before.
    #[test]
    fn it_updates_as_the_op_chain() {
        let device = Device::Cpu;
        let n = 3 * TASK_ELEMENTS + 11;
        let weight = Tensor::randn(0f32, 1.0, n, &device).unwrap();
        let grad = Tensor::randn(0f32, 1.0, n, &device).unwrap();
        let m0 = Tensor::randn(0f32, 0.1, n, &device).unwrap();
        let v0 = Tensor::randn(0f32, 0.1, n, &device).unwrap().abs().unwrap();
        let update = update_at_step(3, 0.5);
        let g = (&grad * 0.5).unwrap();
        let m1 = ((&m0 * 0.9).unwrap() + (&g * 0.1).unwrap()).unwrap();
        let v1 = ((&v0 * 0.999).unwrap() + (g.sqr().unwrap() * 0.001).unwrap()).unwrap();
        let step_size = ((&m1 / f64::from(update.correction1)).unwrap()
            / ((&v1 / f64::from(update.correction2))
                .unwrap()
                .sqrt()
                .unwrap()
                + 1e-8)
                .unwrap())
        .unwrap();
        let expected = ((&weight * (1.0 - 1e-5)).unwrap() - (step_size * 1e-3).unwrap()).unwrap();
        let (mut m, mut v) = (m0.to_vec1::<f32>().unwrap(), v0.to_vec1::<f32>().unwrap());
        let shared = weight.clone();
        step(&weight, &grad, &mut m, &mut v, update).unwrap();
        let difference = crate::model::kernels::testing::largest_difference;
        assert!(difference(&weight, &expected).unwrap() < 1e-6, "weight");
        assert!(
            difference(&shared, &expected).unwrap() < 1e-6,
            "a view of it"
        );
        let m = Tensor::from_vec(m, n, &device).unwrap();
        let v = Tensor::from_vec(v, n, &device).unwrap();
        assert!(difference(&m, &m1).unwrap() < 1e-6, "m");
        assert!(difference(&v, &v1).unwrap() < 1e-6, "v");
    }

    /// The AVX2 build against the baseline one, bit for bit, where the CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_build_updates_as_the_baseline_build_does() {
        if !super::super::avx2_fma() {
            return;
        }
        let values = |n: usize, std: f32| {
            Tensor::randn(0f32, std, n, &Device::Cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let n = 1003;
        let (w, g, m) = (values(n, 1.0), values(n, 1.0), values(n, 0.1));
        let v: Vec<f32> = values(n, 0.1).iter().map(|v| v.abs()).collect();
        let update = update_at_step(5, 0.7);
        let mut baseline = (w.clone(), m.clone(), v.clone());
        update.apply_loop(&mut baseline.0, &g, &mut baseline.1, &mut baseline.2);
        let mut avx2 = (w, m, v);
        // SAFETY: checked above that the CPU has AVX2 and FMA.
        unsafe { simd::apply_all_avx2(&update, &mut avx2.0, &g, &mut avx2.1, &mut avx2.2) };
        assert_eq!(baseline, avx2);
    }

    #[test]
    fn moments_of_the_wrong_size_are_an_error() {
        let weight = Tensor::ones(8, candle_core::DType::F32, &Device::Cpu).unwrap();
        let (mut m, mut v) = (vec![0f32; 4], vec![0f32; 8]);
        let update = Update {
            grad_scale: 1.0,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            correction1: 0.1,
            correction2: 0.001,
            eps: 1e-8,
        };
        let grad = Tensor::ones(8, candle_core::DType::F32, &Device::Cpu).unwrap();
        let message = step(&weight, &grad, &mut m, &mut v, update)
            .unwrap_err()
            .to_string();
        assert!(message.contains("moments of 4 and 8"), "{message}");
    }

    #[test]
    fn the_sum_of_squares_matches_candles() {
        let t = Tensor::randn(0f32, 1.0, (3 * TASK_ELEMENTS + 5,), &Device::Cpu).unwrap();
        let candle = f64::from(
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
        let ours = sum_of_squares(&t).unwrap();
        assert!(
            (ours - candle).abs() / candle < 1e-5,
            "{ours} against {candle}"
        );
        let strided = Tensor::randn(0f32, 1.0, (40, 30), &Device::Cpu).unwrap();
        let candle = strided
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let ours = sum_of_squares(&strided.t().unwrap()).unwrap();
        let candle = f64::from(candle);
        assert!(
            (ours - candle).abs() / candle < 1e-5,
            "{ours} against {candle}"
        );
    }
}
