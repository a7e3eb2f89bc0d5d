//! Dense layers at inference in 16-bit integers, opt-in (`label
//! --precision int16`, and `train --precision int16` for its encoding
//! cache): y = act(x W^T + b) with x and W quantised, the dot products in
//! int32, on AVX2's `vpmaddwd` (AVX-512 VNNI's `vpdpwssd` where the CPU
//! has it: the multiply and the add in one instruction, the same sums).
//!
//! Why: `vpmaddwd` does 16 multiply-accumulates per instruction where f32
//! FMA does 8, at the same instruction rate on the AMD EPYC (Zen 3) these
//! sessions ran on (examples/bench_int_madd: 2.07x the MACs per second),
//! and candle's f32 matmul already runs near that machine's f32 peak.
//!
//! Quantisation: W per output row and x per row (token), symmetric, to the
//! largest integer range L whose dot products cannot overflow int32 (K L^2
//! < 2^31: L = 2,364 for K = 384 inputs, 1,182 for K = 1,536), so the
//! error is that of an 11 to 12-bit format, not int8's 127 levels.
//!
//! Kernel: 6 rows x 16 outputs of int32 sums in registers; a weight panel
//! of 16 outputs (the inputs in pairs, interleaved as `vpmaddwd` pairs
//! them) is reused by every 6-row strip of a 96-row block; blocks run on
//! rayon. Layers whose outputs are not a multiple of 16 (the heads' class
//! counts), inputs that record a graph (training) and CPUs without AVX2
//! keep the f32 path.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::switch::{Guard, Switch};

/// How the dense layers compute where no gradient is needed: `label
/// --precision`, and `train --precision` for the encoding cache of its
/// fixed encoder layers (the layers that train stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32, as the model trains.
    #[default]
    F32,
    /// 16-bit integers (this module, AVX2 only): faster, and labels agree
    /// with f32's on nearly every turn (BENCHMARKS.md states the rate).
    Int16,
}

impl Precision {
    /// The stderr note for a run asked for int16 (`asked`) that ran in f32
    /// (`ran`) because the CPU has no AVX2; `outputs` says what was computed.
    pub fn fallback_warning(asked: Precision, ran: Precision, outputs: &str) -> Option<String> {
        (asked != ran).then(|| {
            format!("warning: --precision int16 needs a CPU with AVX2; this one has none, so {outputs} computed in f32")
        })
    }
}

/// Outputs per weight panel: two AVX2 registers of 8 int32 sums.
const PANEL: usize = 16;
/// Rows per register block.
const STRIP: usize = 6;
/// Rows per rayon task: 16 strips share each panel while it is in cache.
const BLOCK: usize = 96;

static INT16: Switch = Switch::new(0);

/// int16 dense layers on (where asked for) for as long as this lives, then
/// back as they were: `label --precision int16` holds one for its run,
/// `train --precision int16` while it builds its encoding cache.
pub struct Scoped {
    _guard: Guard,
    on: bool,
}

impl Scoped {
    pub fn enable(asked: Precision) -> Scoped {
        let asked = asked == Precision::Int16;
        Scoped {
            _guard: INT16.set(asked),
            on: asked && avx2(),
        }
    }

    /// The precision the dense layers run in: int16 where asked for and
    /// AVX2 is here, f32 otherwise.
    pub fn precision(&self) -> Precision {
        if self.on {
            Precision::Int16
        } else {
            Precision::F32
        }
    }
}

/// Whether int16 dense layers are on and this CPU can run them.
pub fn enabled() -> bool {
    INT16.is_on() && avx2()
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has AVX-512 VNNI on 256-bit registers (Intel since Ice
/// Lake, AMD since Zen 4): `vpdpwssd` multiplies the pairs and adds them
/// into the sums in one instruction, where AVX2 takes `vpmaddwd` and
/// `vpaddd`. The int32 sums are exact either way, so the outputs are the
/// same bits.
fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512vl");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The largest magnitude both sides of a dot product of `k` terms may take.
fn levels(k: usize) -> f32 {
    (i32::MAX as f64 / k.max(1) as f64)
        .sqrt()
        .floor()
        .min(i16::MAX as f64) as f32
}

/// Magnitude to scale: the largest |v| maps to `limit` (a zero row to 0s).
fn scale_of(values: &[f32], limit: f32) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30) / limit
}

/// A weight (outputs, inputs) quantised per output row and packed in
/// panels of 16 outputs: panel p, input pair i, then 16 outputs x the pair.
pub struct PackedWeights {
    outputs: usize,
    inputs: usize,
    pairs: usize,
    panels: Vec<i16>,
    scales: Vec<f32>,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWeights({} x {})", self.outputs, self.inputs)
    }
}

impl PackedWeights {
    /// None where the kernel does not apply (outputs not a multiple of 16,
    /// not f32, no AVX2).
    pub fn new(weight: &Tensor) -> Result<Option<PackedWeights>> {
        let (outputs, inputs) = weight.dims2()?;
        if !avx2() || outputs % PANEL != 0 || !super::supported(weight) {
            return Ok(None);
        }
        let weight = weight.flatten_all()?.to_vec1::<f32>()?;
        let (limit, pairs) = (levels(inputs), inputs.div_ceil(2));
        let scales: Vec<f32> = weight
            .chunks_exact(inputs)
            .map(|row| scale_of(row, limit))
            .collect();
        let mut panels = vec![0i16; outputs * pairs * 2];
        for (j, row) in weight.chunks_exact(inputs).enumerate() {
            let (panel, column) = (j / PANEL, j % PANEL);
            for (i, &w) in row.iter().enumerate() {
                let at = (panel * pairs + i / 2) * PANEL * 2 + column * 2 + i % 2;
                panels[at] = (w / scales[j]).round_ties_even() as i16;
            }
        }
        Ok(Some(PackedWeights {
            outputs,
            inputs,
            pairs,
            panels,
            scales,
        }))
    }

    fn panel(&self, p: usize) -> &[i16] {
        let size = self.pairs * PANEL * 2;
        &self.panels[p * size..(p + 1) * size]
    }
}

/// `act(x W^T + b)` for an x of (..., inputs) that records no graph: (..., outputs).
pub fn dense(
    x: &Tensor,
    weight: &PackedWeights,
    bias: &Tensor,
    gelu_after: bool,
) -> Result<Tensor> {
    let op = Dense { weight, gelu_after };
    x.contiguous()?.apply_op2_no_bwd(&bias.contiguous()?, &op)
}

/// (x, bias) -> act(x W^T + b), W packed; read in place, no copies.
struct Dense<'a> {
    weight: &'a PackedWeights,
    gelu_after: bool,
}

impl CustomOp2 for Dense<'_> {
    fn name(&self) -> &'static str {
        "int16-dense"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (inputs, outputs) = (self.weight.inputs, self.weight.outputs);
        let mut dims = x_layout.dims().to_vec();
        let x = super::contiguous_f32(x, x_layout, self.name())?;
        let bias = super::contiguous_f32(bias, bias_layout, self.name())?;
        if dims.pop() != Some(inputs) || bias.len() != outputs {
            candle_core::bail!(
                "{}: rows of {:?} against a weight of ({outputs}, {inputs}) and a bias of {}",
                self.name(),
                x_layout.dims(),
                bias.len()
            );
        }
        let y = matmul(x, self.weight, bias, self.gelu_after);
        dims.push(outputs);
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

/// act(x (rows, inputs) W^T + bias): (rows, outputs).
///
/// The quantised rows and `y` are written whole before they are read, so
/// they are allocated unzeroed: zeroing them first was 3.7% of `label
/// --precision int16` with a MiniLM model (memset), for values that were
/// all overwritten. The bias and GELU are applied block by block, while a
/// block's outputs are still in cache: as a pass of its own over the whole
/// output they were 5% of that run.
fn matmul(x: &[f32], weight: &PackedWeights, bias: &[f32], gelu_after: bool) -> Vec<f32> {
    matmul_with(x, weight, bias, gelu_after, vnni())
}

/// [`matmul`], its sums in `vpdpwssd` where `vnni` (the CPU has it).
fn matmul_with(
    x: &[f32],
    weight: &PackedWeights,
    bias: &[f32],
    gelu_after: bool,
    vnni: bool,
) -> Vec<f32> {
    let (inputs, outputs, width) = (weight.inputs, weight.outputs, weight.pairs * 2);
    let rows = x.len() / inputs.max(1);
    let limit = levels(inputs);
    let mut quantised: Vec<i16> = Vec::with_capacity(rows * width);
    let mut row_scales = vec![0f32; rows];
    quantised.spare_capacity_mut()[..rows * width]
        .par_chunks_mut(width)
        .zip(row_scales.par_iter_mut())
        .zip(x.par_chunks(inputs))
        .for_each(|((q, scale), row)| quantise_row(row, limit, q, scale));
    // SAFETY: `quantise_row` wrote each of the `rows` rows of `width` whole.
    unsafe { quantised.set_len(rows * width) };
    let mut y: Vec<f32> = Vec::with_capacity(rows * outputs);
    y.spare_capacity_mut()[..rows * outputs]
        .par_chunks_mut(BLOCK * outputs)
        .zip(quantised.par_chunks(BLOCK * width))
        .zip(row_scales.par_chunks(BLOCK))
        .for_each(|((y, q), row_scales)| {
            for p in 0..outputs / PANEL {
                let strips = y
                    .chunks_mut(STRIP * outputs)
                    .zip(q.chunks(STRIP * width))
                    .zip(row_scales.chunks(STRIP));
                for ((y, q), row_scales) in strips {
                    Strip {
                        quantised: q,
                        width,
                        row_scales,
                        panel: weight.panel(p),
                        column_scales: &weight.scales[p * PANEL..(p + 1) * PANEL],
                        out: y,
                        outputs,
                        column: p * PANEL,
                    }
                    .run(vnni);
                }
            }
            // SAFETY: every strip wrote its rows' 16 outputs of every
            // panel, and the panels cover all `outputs` (a multiple of 16,
            // `PackedWeights::new`), so the block is initialised.
            let y = unsafe { std::slice::from_raw_parts_mut(y.as_mut_ptr().cast(), y.len()) };
            super::linear::add_bias_in_place(y, bias, gelu_after);
        });
    // SAFETY: as above, for every block.
    unsafe { y.set_len(rows * outputs) };
    y
}

/// One row to integers of magnitude at most `limit`, and its scale; `q`
/// (at least the row's length) is written whole, zeros past the row.
fn quantise_row(row: &[f32], limit: f32, q: &mut [MaybeUninit<i16>], scale: &mut f32) {
    let (values, padding) = q.split_at_mut(row.len());
    padding.fill(MaybeUninit::new(0));
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { x86::quantise_row(row, limit, values, scale) };
    }
    quantise_row_portable(row, limit, values, scale)
}

#[inline(always)]
fn quantise_row_portable(row: &[f32], limit: f32, q: &mut [MaybeUninit<i16>], scale: &mut f32) {
    *scale = scale_of(row, limit);
    let inverse = 1.0 / *scale;
    for (q, v) in q.iter_mut().zip(row) {
        q.write((v * inverse).round_ties_even() as i16);
    }
}

/// Up to 6 rows against one panel of 16 outputs.
struct Strip<'a> {
    quantised: &'a [i16],
    width: usize,
    row_scales: &'a [f32],
    panel: &'a [i16],
    column_scales: &'a [f32],
    /// Where the strip's sums go: every value of its rows' 16 columns is written.
    out: &'a mut [MaybeUninit<f32>],
    outputs: usize,
    column: usize,
}

impl Strip<'_> {
    /// The strip's sums with `vpdpwssd` where `vnni` (which [`vnni`] must
    /// have confirmed), else with AVX2.
    fn run(self, vnni: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `PackedWeights::new` packs only where the CPU has
            // AVX2, and `vnni` is true only where it has AVX-512 VNNI.
            unsafe {
                match (self.row_scales.len(), vnni) {
                    (6, false) => x86::strip::<6>(self),
                    (5, false) => x86::strip::<5>(self),
                    (4, false) => x86::strip::<4>(self),
                    (3, false) => x86::strip::<3>(self),
                    (2, false) => x86::strip::<2>(self),
                    (_, false) => x86::strip::<1>(self),
                    (6, true) => x86::strip_vnni::<6>(self),
                    (5, true) => x86::strip_vnni::<5>(self),
                    (4, true) => x86::strip_vnni::<4>(self),
                    (3, true) => x86::strip_vnni::<3>(self),
                    (2, true) => x86::strip_vnni::<2>(self),
                    (_, true) => x86::strip_vnni::<1>(self),
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PANEL, Strip};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// `quantise_row_portable` in AVX2, with the same result: the largest
    /// magnitude 8 lanes at a time, and the rounding in `vcvtps2dq` (nearest,
    /// ties to even, the mode Rust leaves set). The compiler keeps the
    /// portable loops scalar (f32 max and saturating `as` are not plain
    /// vector instructions); they cost 6% of `label --precision int16`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantise_row(
        row: &[f32],
        limit: f32,
        q: &mut [MaybeUninit<i16>],
        scale: &mut f32,
    ) {
        assert!(q.len() >= row.len());
        let tail = row.len() / 8 * 8;
        let magnitude = _mm256_set1_ps(-0.0);
        let mut largest = _mm256_setzero_ps();
        for eight in row.chunks_exact(8) {
            // SAFETY: eight floats.
            let values = unsafe { _mm256_loadu_ps(eight.as_ptr()) };
            largest = _mm256_max_ps(largest, _mm256_andnot_ps(magnitude, values));
        }
        let mut lanes = [0f32; 8];
        // SAFETY: eight lanes into eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), largest) };
        let largest = row[tail..]
            .iter()
            .chain(&lanes)
            .fold(0f32, |m, v| m.max(v.abs()));
        *scale = largest.max(1e-30) / limit;
        let inverse = 1.0 / *scale;
        let times = _mm256_set1_ps(inverse);
        for (eight, out) in row.chunks_exact(8).zip(q.chunks_exact_mut(8)) {
            // SAFETY: eight floats in, eight int16 out.
            unsafe {
                let rounded =
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(eight.as_ptr()), times));
                // |values| <= limit < 2^15: packing cannot saturate.
                let low = _mm256_castsi256_si128(rounded);
                let high = _mm256_extracti128_si256::<1>(rounded);
                _mm_storeu_si128(out.as_mut_ptr().cast(), _mm_packs_epi32(low, high));
            }
        }
        for (q, v) in q[tail..].iter_mut().zip(&row[tail..]) {
            q.write((v * inverse).round_ties_even() as i16);
        }
    }

    /// R rows' int32 sums over every input pair, for 16 outputs, scaled
    /// back to f32 into the output rows.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn strip<const R: usize>(s: Strip) {
        // SAFETY: the CPU has AVX2 (this function's contract).
        unsafe { strip_sums::<R, false>(s) }
    }

    /// [`strip`] with each pair's multiply and add in one `vpdpwssd`.
    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    pub(super) unsafe fn strip_vnni<const R: usize>(s: Strip) {
        // SAFETY: the CPU has AVX2 and AVX-512 VNNI with VL.
        unsafe { strip_sums::<R, true>(s) }
    }

    /// The body of both strips, inlined into each so that its intrinsics
    /// compile for that strip's features; `VNNI` only where the caller
    /// enables AVX-512 VNNI.
    ///
    /// SAFETY (the one unsafe block): the caller enables AVX2, and AVX-512
    /// VNNI with VL where `VNNI`; every pointer read and write is within
    /// the lengths asserted first.
    #[inline(always)]
    unsafe fn strip_sums<const R: usize, const VNNI: bool>(s: Strip) {
        let pairs = s.width / 2;
        assert!(s.panel.len() >= pairs * PANEL * 2 && s.quantised.len() >= R * s.width);
        assert!(
            s.column_scales.len() == PANEL && s.out.len() >= (R - 1) * s.outputs + s.column + PANEL
        );
        let (panel, rows) = (s.panel.as_ptr(), s.quantised.as_ptr());
        unsafe {
            let mut sums = [[_mm256_setzero_si256(); 2]; R];
            for pair in 0..pairs {
                let at = panel.add(pair * PANEL * 2) as *const __m256i;
                let (low, high) = (_mm256_loadu_si256(at), _mm256_loadu_si256(at.add(1)));
                for (r, sum) in sums.iter_mut().enumerate() {
                    // The two int16 of the row's pair as one int32.
                    let both = (rows.add(r * s.width + 2 * pair) as *const i32).read_unaligned();
                    let a = _mm256_set1_epi32(both);
                    if VNNI {
                        sum[0] = _mm256_dpwssd_epi32(sum[0], a, low);
                        sum[1] = _mm256_dpwssd_epi32(sum[1], a, high);
                    } else {
                        sum[0] = _mm256_add_epi32(sum[0], _mm256_madd_epi16(a, low));
                        sum[1] = _mm256_add_epi32(sum[1], _mm256_madd_epi16(a, high));
                    }
                }
            }
            for (r, sum) in sums.iter().enumerate() {
                let row_scale = _mm256_set1_ps(s.row_scales[r]);
                for (h, &half) in sum.iter().enumerate() {
                    let column_scales = _mm256_loadu_ps(s.column_scales.as_ptr().add(8 * h));
                    let scale = _mm256_mul_ps(row_scale, column_scales);
                    let at = s.out.as_mut_ptr().cast::<f32>();
                    let at = at.add(r * s.outputs + s.column + 8 * h);
                    _mm256_storeu_ps(at, _mm256_mul_ps(_mm256_cvtepi32_ps(half), scale));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::testing::{largest_abs, largest_difference};
    use candle_core::Device;

    /// f32 x W^T + b (and GELU), as candle computes it.
    fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor, gelu_after: bool) -> Tensor {
        let y = x
            .broadcast_matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        if gelu_after { y.gelu_erf().unwrap() } else { y }
    }

    /// The AVX2 quantisation gives the portable one's integers and scale
    /// exactly (lengths with and without a tail of under 8, ties, zeros).
    #[test]
    fn the_avx2_quantisation_equals_the_portable_one() {
        if !avx2() {
            return;
        }
        for length in [1, 7, 8, 95, 384, 1536] {
            let mut row = Tensor::randn(0f32, 3.0, length, &Device::Cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let limit = levels(length);
            row[0] = 0.0;
            if length > 3 {
                // The largest magnitude is the limit: a scale of 1, so these
                // two are ties for the rounding to settle (to 2 and -4).
                row[1] = -limit;
                row[2] = 2.5;
                row[3] = -3.5;
            }
            let portable = quantised(length + 1, |q, scale| {
                quantise_row_portable(&row, limit, q, scale)
            });
            // SAFETY (both): the CPU has AVX2 (checked above).
            let vectorised = quantised(length + 1, |q, scale| unsafe {
                x86::quantise_row(&row, limit, q, scale)
            });
            assert_eq!(vectorised, portable, "{length} values");
            // The row is written, and the padding past it zeroed.
            let padded = quantised(length + 1, |q, scale| quantise_row(&row, limit, q, scale));
            assert_eq!(padded.0[..length], portable.0[..length]);
            assert_eq!((padded.0[length], portable.0[length]), (0, 7));
        }
        let zeros = [0f32; 16];
        // SAFETY: as above.
        let (q, _) = quantised(16, |q, scale| unsafe {
            x86::quantise_row(&zeros, levels(16), q, scale)
        });
        assert_eq!(q, vec![0i16; 16]);
    }

    /// Runs a quantisation into `width` values that start as 7s (so a value
    /// left unwritten shows) and returns them with the scale.
    fn quantised(
        width: usize,
        run: impl FnOnce(&mut [MaybeUninit<i16>], &mut f32),
    ) -> (Vec<i16>, f32) {
        let (mut q, mut scale) = (vec![MaybeUninit::new(7i16); width], 0f32);
        run(&mut q, &mut scale);
        // SAFETY: every value was initialised (to 7) before the run.
        (
            q.iter().map(|v| unsafe { v.assume_init() }).collect(),
            scale,
        )
    }

    #[test]
    fn int16_dense_layers_are_within_a_thousandth_of_f32() {
        if !avx2() {
            return;
        }
        let device = Device::Cpu;
        // Rows that leave a partial block and strip; odd and even inputs.
        for (x_dims, inputs, outputs) in [
            (vec![131, 96], 96, 48),
            (vec![3, 37, 95], 95, 32),
            (vec![200, 384], 384, 1536),
        ] {
            let x = Tensor::randn(0f32, 1.0, x_dims.as_slice(), &device).unwrap();
            let weight = Tensor::randn(0f32, 0.05, (outputs, inputs), &device).unwrap();
            let bias = Tensor::randn(0f32, 0.1, outputs, &device).unwrap();
            let packed = PackedWeights::new(&weight).unwrap().expect("16 | outputs");
            for gelu_after in [false, true] {
                let ours = dense(&x, &packed, &bias, gelu_after).unwrap();
                let f32_path = reference(&x, &weight, &bias, gelu_after);
                assert_eq!(ours.dims(), f32_path.dims());
                let largest = largest_abs(&f32_path).unwrap();
                let error = largest_difference(&ours, &f32_path).unwrap();
                assert!(
                    error < 1e-3 * largest,
                    "{x_dims:?} -> {outputs}: {error} of {largest}"
                );
                assert!(error > 0.0, "quantised, so not exactly f32");
            }
        }
    }

    /// `vpdpwssd` and `vpmaddwd` + `vpaddd` give the same bits (exact int32
    /// sums), partial strips and blocks included.
    #[test]
    fn the_vnni_sums_equal_the_avx2_ones() {
        if !(avx2() && vnni()) {
            return;
        }
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (131, 384), &device).unwrap();
        let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let weight = Tensor::randn(0f32, 0.05, (64, 384), &device).unwrap();
        let bias = vec![0.1f32; 64];
        let packed = PackedWeights::new(&weight).unwrap().expect("16 | outputs");
        for gelu_after in [false, true] {
            let avx2 = matmul_with(&x, &packed, &bias, gelu_after, false);
            let vnni = matmul_with(&x, &packed, &bias, gelu_after, true);
            assert!(
                avx2.iter()
                    .zip(&vnni)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }

    #[test]
    fn outputs_not_a_multiple_of_16_keep_the_f32_path() {
        let weight = Tensor::zeros((47, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(PackedWeights::new(&weight).unwrap().is_none());
    }

    #[test]
    fn an_input_of_the_wrong_width_is_an_error_not_a_panic() {
        if !avx2() {
            return;
        }
        let device = Device::Cpu;
        let weight = Tensor::ones((16, 8), candle_core::DType::F32, &device).unwrap();
        let packed = PackedWeights::new(&weight).unwrap().unwrap();
        let bias = Tensor::zeros(16, candle_core::DType::F32, &device).unwrap();
        let x = Tensor::ones((4, 9), candle_core::DType::F32, &device).unwrap();
        assert!(dense(&x, &packed, &bias, false).is_err());
    }
}
