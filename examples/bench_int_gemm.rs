//! A prototype, not wired into labelgen: a dense layer's matmul in 16-bit
//! integers (AVX2 `vpmaddwd`) against candle's f32 matmul, on MiniLM's
//! shapes at `label`'s batch (2,048 token rows), with the error it costs.
//!
//!     cargo run --release --example bench_int_gemm
//!
//! Why: `bench_int_madd` measures AVX2's integer multiply-add at twice the
//! multiply-accumulates per second of f32 FMA on the AMD EPYC (Zen 3) these
//! sessions ran on, and candle's f32 matmul already runs near this
//! machine's f32 peak. Quantisation: weights per output row and activations
//! per token row, symmetric, to the largest integer range whose dot
//! products cannot overflow 32 bits (K L^2 < 2^31: L = 2,364 levels for K =
//! 384, 1,182 for K = 1,536; int8 would be 127), so the error is about that
//! of an 11 to 12-bit format. Kernel: 6 rows x 16 columns of int32
//! accumulators in registers; a weight panel of 16 columns (K x 16 int16,
//! pairs of k interleaved for `vpmaddwd`) is reused by every 6-row strip of
//! a 96-row block; blocks run on rayon.

use std::time::Instant;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

const ROWS: usize = 2048;
const REPEATS: usize = 15;
/// Output columns per weight panel: two AVX2 registers of 8 int32.
const PANEL: usize = 16;
/// Token rows per register block and per rayon task.
const STRIP: usize = 6;
const BLOCK: usize = 96;

/// The largest magnitude both sides may take for dot products of length `k`.
fn levels(k: usize) -> f32 {
    ((i32::MAX as f64 / k as f64).sqrt().floor()).min(i16::MAX as f64) as f32
}

/// Weights (n, k) row-major, quantised per output row and packed as panels
/// of 16 columns: panel p, pair kk, then 16 columns x 2 values of k.
struct PackedWeights {
    n: usize,
    pairs: usize,
    panels: Vec<i16>,
    scales: Vec<f32>,
}

impl PackedWeights {
    fn new(weights: &[f32], n: usize, k: usize) -> PackedWeights {
        assert_eq!(n % PANEL, 0, "the prototype takes multiples of 16 outputs");
        let (limit, pairs) = (levels(k), k.div_ceil(2));
        let scales: Vec<f32> = weights
            .chunks_exact(k)
            .map(|row| row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30) / limit)
            .collect();
        let mut panels = vec![0i16; n * pairs * 2];
        for (j, row) in weights.chunks_exact(k).enumerate() {
            let (panel, column) = (j / PANEL, j % PANEL);
            for (i, &w) in row.iter().enumerate() {
                let at = (panel * pairs + i / 2) * PANEL * 2 + column * 2 + i % 2;
                panels[at] = (w / scales[j]).round() as i16;
            }
        }
        PackedWeights {
            n,
            pairs,
            panels,
            scales,
        }
    }

    fn panel(&self, p: usize) -> &[i16] {
        let size = self.pairs * PANEL * 2;
        &self.panels[p * size..(p + 1) * size]
    }
}

/// Activations (m, k) quantised per row, padded to an even k.
fn quantise_rows(x: &[f32], k: usize) -> (Vec<i16>, Vec<f32>) {
    let (limit, width) = (levels(k), k.div_ceil(2) * 2);
    let rows = x.len() / k;
    let mut q = vec![0i16; rows * width];
    let mut scales = vec![0f32; rows];
    q.par_chunks_mut(width)
        .zip(scales.par_iter_mut())
        .zip(x.par_chunks(k))
        .for_each(|((q, scale), row)| {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                return unsafe { x86::quantise_row(row, limit, q, scale) };
            }
            quantise_row(row, limit, q, scale)
        });
    (q, scales)
}

/// One row to integers of at most `limit` in magnitude, and its scale.
#[inline(always)]
fn quantise_row(row: &[f32], limit: f32, q: &mut [i16], scale: &mut f32) {
    *scale = row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30) / limit;
    let inverse = 1.0 / *scale;
    for (q, v) in q.iter_mut().zip(row) {
        *q = (v * inverse).round_ties_even() as i16;
    }
}

/// x (m, k) times weights^T: (m, n), in int16 with int32 sums.
fn int16_matmul(x: &[f32], k: usize, weights: &PackedWeights) -> Vec<f32> {
    let (q, row_scales) = quantise_rows(x, k);
    let width = weights.pairs * 2;
    let n = weights.n;
    let mut out = vec![0f32; x.len() / k * n];
    out.par_chunks_mut(BLOCK * n)
        .zip(q.par_chunks(BLOCK * width))
        .zip(row_scales.par_chunks(BLOCK))
        .for_each(|((out, q), row_scales)| {
            for p in 0..n / PANEL {
                let panel = weights.panel(p);
                let column_scales = &weights.scales[p * PANEL..(p + 1) * PANEL];
                for ((out, q), row_scales) in out
                    .chunks_mut(STRIP * n)
                    .zip(q.chunks(STRIP * width))
                    .zip(row_scales.chunks(STRIP))
                {
                    let strip = Strip {
                        q,
                        width,
                        row_scales,
                        panel,
                        column_scales,
                        out,
                        n,
                        column: p * PANEL,
                    };
                    strip.run();
                }
            }
        });
    out
}

/// Up to 6 token rows against one 16-column panel.
struct Strip<'a> {
    q: &'a [i16],
    width: usize,
    row_scales: &'a [f32],
    panel: &'a [i16],
    column_scales: &'a [f32],
    out: &'a mut [f32],
    n: usize,
    column: usize,
}

impl Strip<'_> {
    fn run(self) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe {
                match self.row_scales.len() {
                    6 => x86::strip::<6>(self),
                    5 => x86::strip::<5>(self),
                    4 => x86::strip::<4>(self),
                    3 => x86::strip::<3>(self),
                    2 => x86::strip::<2>(self),
                    _ => x86::strip::<1>(self),
                }
            };
        }
        panic!("the prototype needs AVX2");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PANEL, Strip};
    use std::arch::x86_64::*;

    /// `quantise_row` built for AVX2 (vectorised rounding and conversion).
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantise_row(row: &[f32], limit: f32, q: &mut [i16], scale: &mut f32) {
        super::quantise_row(row, limit, q, scale)
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn strip<const R: usize>(s: Strip) {
        let zero = _mm256_setzero_si256();
        let mut sums = [[zero; 2]; R];
        let pairs = s.width / 2;
        let panel = s.panel.as_ptr();
        for kk in 0..pairs {
            // SAFETY: the panel holds `pairs` x 32 values; each row `width`.
            let (low, high) = unsafe {
                let at = panel.add(kk * PANEL * 2) as *const __m256i;
                (_mm256_loadu_si256(at), _mm256_loadu_si256(at.add(1)))
            };
            for (r, sum) in sums.iter_mut().enumerate() {
                let pair = unsafe {
                    std::ptr::read_unaligned(s.q.as_ptr().add(r * s.width + 2 * kk) as *const i32)
                };
                let a = _mm256_set1_epi32(pair);
                sum[0] = _mm256_add_epi32(sum[0], _mm256_madd_epi16(a, low));
                sum[1] = _mm256_add_epi32(sum[1], _mm256_madd_epi16(a, high));
            }
        }
        for (r, sum) in sums.iter().enumerate() {
            let row_scale = _mm256_set1_ps(s.row_scales[r]);
            for (h, &half) in sum.iter().enumerate() {
                // SAFETY: 16 column scales; the output row has n >= column + 16.
                unsafe {
                    let scale = _mm256_mul_ps(
                        row_scale,
                        _mm256_loadu_ps(s.column_scales.as_ptr().add(8 * h)),
                    );
                    let value = _mm256_mul_ps(_mm256_cvtepi32_ps(half), scale);
                    let at = s.out.as_mut_ptr().add(r * s.n + s.column + 8 * h);
                    _mm256_storeu_ps(at, value);
                }
            }
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let device = Device::Cpu;
    println!(
        "{ROWS} rows, median of {REPEATS}, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<22} {:>8} {:>8} {:>10} {:>10} {:>7} {:>13}",
        "k -> n", "f32 ms", "int16 ms", "f32 GF/s", "int16 GF/s", "ratio", "rel. error"
    );
    for (k, n) in [(384, 1152), (384, 384), (384, 1536), (1536, 384)] {
        let x = Tensor::randn(0f32, 1.0, (ROWS, k), &device)?;
        let w = (Tensor::randn(0f32, 1.0, (n, k), &device)? * 0.05)?;
        let wt = w.t()?;
        let (x_host, w_host) = (
            x.flatten_all()?.to_vec1::<f32>()?,
            w.flatten_all()?.to_vec1::<f32>()?,
        );
        let packed = PackedWeights::new(&w_host, n, k);
        let (mut f32_ms, mut int_ms) = (Vec::new(), Vec::new());
        let mut reference = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..=REPEATS {
            let started = Instant::now();
            reference = x.matmul(&wt)?.flatten_all()?.to_vec1::<f32>()?;
            f32_ms.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            ours = int16_matmul(&x_host, k, &packed);
            int_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let (f32_ms, int_ms) = (median(f32_ms[1..].to_vec()), median(int_ms[1..].to_vec()));
        let largest = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let error = reference
            .iter()
            .zip(&ours)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let flops = 2.0 * (ROWS * k * n) as f64;
        println!(
            "{:<22} {f32_ms:>8.2} {int_ms:>8.2} {:>10.1} {:>10.1} {:>6.2}x {:>13.2e}",
            format!("{k} -> {n}"),
            flops / f32_ms / 1e6,
            flops / int_ms / 1e6,
            f32_ms / int_ms,
            error / largest
        );
    }
    Ok(())
}
