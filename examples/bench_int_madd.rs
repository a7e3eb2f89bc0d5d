//! Whether an int8 (or int16) matmul could beat f32 on this CPU: the
//! throughput of AVX2's integer multiply-add (`vpmaddwd`: 16 int16
//! products, summed in pairs into 8 int32) against f32 FMA (`vfmadd`: 8
//! products), each as 12 independent chains (every instruction reads its
//! chain's previous result, so none can be shared or hoisted, and 12 chains
//! cover the latency: throughput is what is measured). Multiply-accumulates
//! per second, side by side in one run. (`vpmaddubsw` does 32 int8 products but leaves int16 sums that
//! need a `vpmaddwd` to widen, the same port's work per product.)
//!
//!     cargo run --release --example bench_int_madd
//!
//! One core; the integer path can only pay where its MACs per second are
//! well above f32's (AVX-512 VNNI or AMX, not AVX2 alone on this class).

use std::time::Instant;

const ROUNDS: u64 = 100_000_000;

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            println!("no AVX2 and FMA on this CPU: nothing to compare");
            return;
        }
        // SAFETY: checked above that the CPU has AVX2 and FMA.
        let (int_macs, f32_macs) = unsafe { (x86::int16_madd(), x86::f32_fma()) };
        println!("int16 multiply-add (vpmaddwd):          {int_macs:>6.1} G MAC/s");
        println!("f32 FMA (vfmadd231ps):                  {f32_macs:>6.1} G MAC/s");
        println!(
            "int16 / f32:                            {:>6.2}x",
            int_macs / f32_macs
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("x86-64 only");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Instant, ROUNDS};
    use std::arch::x86_64::*;

    /// G multiply-accumulates per second of 12 chains of vpmaddwd.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn int16_madd() -> f64 {
        // Each step: x = madd(x, 1), the pairwise sum of x's int16 halves.
        let mut chains = [_mm256_set1_epi16(3); 12];
        let ones = std::hint::black_box(_mm256_set1_epi16(1));
        let started = Instant::now();
        for _ in 0..ROUNDS {
            for chain in chains.iter_mut() {
                *chain = _mm256_madd_epi16(*chain, ones);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(chains);
        (ROUNDS * 12 * 16) as f64 / seconds / 1e9
    }

    /// G multiply-accumulates per second of 12 chains of vfmadd231ps.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_fma() -> f64 {
        // Each step: x = x * 1 + 0 (the values stay put: no denormals).
        let mut chains = [_mm256_set1_ps(1.5); 12];
        // Opaque to the compiler, which would otherwise fold x * 1 + 0 away.
        let (one, zero) = std::hint::black_box((_mm256_set1_ps(1.0), _mm256_set1_ps(0.0)));
        let started = Instant::now();
        for _ in 0..ROUNDS {
            for chain in chains.iter_mut() {
                *chain = _mm256_fmadd_ps(*chain, one, zero);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(chains);
        (ROUNDS * 12 * 8) as f64 / seconds / 1e9
    }
}
