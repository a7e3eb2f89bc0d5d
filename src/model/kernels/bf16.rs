//! Mixed-precision products for the dense layers that train (`train
//! --bf16`, `pretrain --bf16`): each of a layer's three products per step
//! (x W^T forward; the input's and the weight's gradients backward) with
//! both factors rounded to bfloat16 and the sums in f32, on AVX-512 BF16's
//! `vdpbf16ps`.
//!
//! Why: training is bound by its f32 matmuls (gemm's microkernel was 73% of
//! a MiniLM step's samples, BENCHMARKS.md), and `vdpbf16ps` does two
//! multiply-adds per f32 lane where FMA does one: 1.86x the multiply-adds
//! per second of f32 FMA on the AMD Zen 4 these sessions measured, at the
//! same register width. This is the mixed precision of PyTorch's autocast
//! and Hugging Face's `--bf16`: the weights, the optimizer's state, the
//! gradients' accumulation and every other op stay f32; only a product's
//! two factors lose mantissa (8 bits kept, rounded to nearest even).
//! Inference (`label`, dev evaluation, calibration) never takes this path:
//! it runs where an input records a graph.
//!
//! Kernel: c = a b^T for a of (m, k) and b of (n, k), both rounded to bf16
//! with k in pairs (zero-padded to even); b packed in panels of 32 of its
//! rows (the outputs; a last panel of 16 padded with zero rows), as int16's
//! kernel packs a weight; 8 rows x 32 outputs of f32 sums in 512-bit
//! registers; 96-row blocks of c on rayon. Either factor may
//! be the transpose of a stored matrix (the backward pass's dY^T and X^T):
//! the rounding reads the stored rows in order and writes the pairs where
//! the kernel wants them, so no f32 transpose is made.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::switch::{Guard, Switch};

/// f32 sums per 512-bit register; b's rows (c's columns) must come in
/// multiples of it.
const REGISTER: usize = 16;
/// Outputs per panel: two registers of sums.
const PANEL: usize = 2 * REGISTER;
/// Rows per register block: 16 registers of sums.
const STRIP: usize = 8;
/// Rows of c per rayon task: 12 strips share each panel while it is in cache.
const BLOCK: usize = 96;
/// Pairs of k per pass over a block: a panel's share (16 KB) stays in L1
/// while the block's 12 strips read it, where a whole panel of the
/// weight's gradient (k = the batch's 2,048 tokens: 128 KB) would not.
const CHUNK: usize = 128;

static BF16: Switch = Switch::new(1);

/// bf16 products on (where asked for) in the dense layers that train, for
/// as long as this lives, then back as they were.
pub struct Scoped {
    _guard: Guard,
    on: bool,
}

impl Scoped {
    pub fn enable(asked: bool) -> Scoped {
        Scoped {
            _guard: BF16.set(asked),
            on: asked && available(),
        }
    }

    /// Whether the products run in bf16: asked for, and the CPU has AVX-512
    /// BF16 (f32 otherwise).
    pub fn on(&self) -> bool {
        self.on
    }
}

/// The stderr note for a run that asked for `--bf16` (`asked`) and ran
/// in f32 (`ran` false) because the CPU has no AVX-512 BF16.
pub fn fallback_warning(asked: bool, ran: bool) -> Option<String> {
    (asked && !ran).then(|| {
        "warning: --bf16 needs a CPU with AVX-512 BF16; this one has none, so training ran in f32".to_string()
    })
}

/// Whether bf16 products are on and this CPU can run them.
pub fn enabled() -> bool {
    BF16.is_on() && available()
}

/// Whether the CPU has AVX-512 BF16 (AMD since Zen 4, Intel since Cooper
/// Lake / Sapphire Rapids); AVX2 for the rounding.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// f32 to bf16's bits, rounded to nearest, ties to even. A NaN may round
/// to infinity: a step that meets one has a NaN loss either way.
#[inline(always)]
fn bf16_bits(v: f32) -> u32 {
    let bits = v.to_bits();
    bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16
}

/// Two values as one `vdpbf16ps` pair: the first in the low half.
#[inline(always)]
fn pair(first: f32, second: f32) -> u32 {
    bf16_bits(first) | (bf16_bits(second) << 16)
}

/// A stored row-major f32 matrix, read as itself or as its transpose.
#[derive(Clone, Copy)]
pub struct Factor<'a> {
    pub data: &'a [f32],
    /// The stored matrix's (rows, columns).
    pub dims: (usize, usize),
    pub transposed: bool,
}

impl Factor<'_> {
    /// (rows, columns) of the matrix this factor stands for.
    fn logical(&self) -> (usize, usize) {
        let (rows, columns) = self.dims;
        if self.transposed {
            (columns, rows)
        } else {
            (rows, columns)
        }
    }
}

/// The left factor a (m, k) in bf16 pairs: pair t of row r at `r *
/// row_stride + t * pair_stride`.
struct LeftPairs {
    pairs: Vec<u32>,
    row_stride: usize,
    pair_stride: usize,
}

impl LeftPairs {
    fn new(a: Factor) -> LeftPairs {
        let (m, k) = a.logical();
        let pairs = k.div_ceil(2);
        if !a.transposed {
            // Row r's values in order: pairs along each stored row.
            let mut out = uninit(m * pairs);
            out.par_chunks_mut(pairs.max(1))
                .zip(a.data.par_chunks(k.max(1)))
                .for_each(|(out, row)| round_row_in_pairs(row, out));
            return LeftPairs {
                pairs: assume_init(out),
                row_stride: pairs,
                pair_stride: 1,
            };
        }
        // a = S^T with S of (k, m): pair t of every row r from S's stored
        // rows 2t and 2t + 1, read in order: pair-major.
        let mut out = uninit(pairs * m);
        out.par_chunks_mut(m.max(1))
            .enumerate()
            .for_each(|(t, out)| interleave_rows(a.data, m, k, t, out));
        LeftPairs {
            pairs: assume_init(out),
            row_stride: 1,
            pair_stride: m,
        }
    }
}

/// The right factor b (n, k) in panels of 32 of its rows: panel p, pair t,
/// then the 32 rows' pairs; zero rows pad the last panel where n is an odd
/// multiple of 16.
struct Panels {
    panels: Vec<u32>,
    pairs: usize,
}

impl Panels {
    /// None where n is not a multiple of 16.
    fn new(b: Factor) -> Option<Panels> {
        let (n, k) = b.logical();
        if n % REGISTER != 0 {
            return None;
        }
        let pairs = k.div_ceil(2);
        let mut panels = uninit(n.div_ceil(PANEL) * PANEL * pairs);
        if b.transposed {
            transposed_panels(b.data, (k, n), pairs, &mut panels);
        } else {
            panels
                .par_chunks_mut((pairs * PANEL).max(1))
                .enumerate()
                .for_each(|(p, panel)| {
                    // The panel's 32 stored rows in pairs, then transposed
                    // into it: a store per pair into its column was 4.2%
                    // of a MiniLM bf16 step past warm-up.
                    let mut rows = uninit(PANEL * pairs);
                    for (row, out) in (p * PANEL..).zip(rows.chunks_mut(pairs.max(1))) {
                        if row >= n {
                            out.fill(MaybeUninit::new(0));
                        } else {
                            round_row_in_pairs(&b.data[row * k..(row + 1) * k], out);
                        }
                    }
                    transpose_pairs(&assume_init(rows), (PANEL, pairs), panel);
                });
        }
        Some(Panels {
            panels: assume_init(panels),
            pairs,
        })
    }

    fn panel(&self, p: usize) -> &[u32] {
        let size = self.pairs * PANEL;
        &self.panels[p * size..(p + 1) * size]
    }
}

/// The panels of b = S^T for S of (k, n) stored: panel p's pair t is 32
/// consecutive values of S's rows 2t and 2t + 1 (a zero row past the end;
/// zeros past column n).
/// A task takes a group of panels and reads S's rows in order, pairing a
/// group-wide stretch at a time; a task per panel read 64 bytes of each
/// row, striding through all of S once per panel (the pairing's first load
/// was 56% of its samples).
fn transposed_panels(
    s: &[f32],
    (k, n): (usize, usize),
    pairs: usize,
    panels: &mut [MaybeUninit<u32>],
) {
    let size = (pairs * PANEL).max(1);
    let group = (n / PANEL)
        .div_ceil(2 * rayon::current_num_threads())
        .max(1);
    panels
        .par_chunks_mut(group * size)
        .enumerate()
        .for_each(|(g, panels)| {
            let (first, width) = (g * group * PANEL, panels.len() / size * PANEL);
            // Columns of S in this group; the rest pad the last panel.
            let stored = width.min(n - first);
            let mut row_pairs = uninit(width);
            row_pairs[stored..].fill(MaybeUninit::new(0));
            for t in 0..pairs {
                let row = |i: usize| (i < k).then(|| &s[i * n + first..i * n + first + stored]);
                pair_up(row(2 * t), row(2 * t + 1), &mut row_pairs[..stored]);
                for (q, stretch) in row_pairs.chunks_exact(PANEL).enumerate() {
                    let at = q * size + t * PANEL;
                    panels[at..at + PANEL].copy_from_slice(stretch);
                }
            }
        });
}

fn uninit(len: usize) -> Vec<MaybeUninit<u32>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { v.set_len(len) };
    v
}

/// The vector once every value is written (the callers' loops write each).
fn assume_init(v: Vec<MaybeUninit<u32>>) -> Vec<u32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: same layout; every value was written by the caller.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity()) }
}

/// One row's values in bf16 pairs, a zero after an odd last value.
fn round_row_in_pairs(row: &[f32], out: &mut [MaybeUninit<u32>]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2_fma() {
        // SAFETY: the CPU has AVX2.
        return unsafe { x86::round_row_in_pairs_avx2(row, out) };
    }
    round_row_loop(row, out)
}

#[inline(always)]
fn round_row_loop(row: &[f32], out: &mut [MaybeUninit<u32>]) {
    let whole = row.chunks_exact(2);
    let last = whole.remainder().first().copied();
    for (out, two) in out.iter_mut().zip(whole) {
        out.write(pair(two[0], two[1]));
    }
    if let Some(last) = last {
        out[row.len() / 2].write(pair(last, 0.0));
    }
}

/// Pair t of S^T's rows, S of (k, m) stored: S's rows 2t and 2t + 1 (a
/// zero row past the end), interleaved.
fn interleave_rows(s: &[f32], m: usize, k: usize, t: usize, out: &mut [MaybeUninit<u32>]) {
    let row = |i: usize| (i < k).then(|| &s[i * m..(i + 1) * m]);
    pair_up(row(2 * t), row(2 * t + 1), out);
}

/// `out` (columns, rows) = `m` (rows, columns) transposed.
fn transpose_pairs(m: &[u32], (rows, columns): (usize, usize), out: &mut [MaybeUninit<u32>]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2_fma() && rows % 8 == 0 {
        // SAFETY: the CPU has AVX2.
        return unsafe { x86::transpose_pairs_avx2(m, (rows, columns), out) };
    }
    transpose_pairs_loop(m, (rows, columns), out, 0)
}

/// [`transpose_pairs`] of `m`'s columns from `first` on.
fn transpose_pairs_loop(
    m: &[u32],
    (rows, columns): (usize, usize),
    out: &mut [MaybeUninit<u32>],
    first: usize,
) {
    for c in first..columns {
        for r in 0..rows {
            out[c * rows + r].write(m[r * columns + c]);
        }
    }
}

/// `out[i]` = the pair (first[i], second[i]), a missing row as zeros.
fn pair_up(first: Option<&[f32]>, second: Option<&[f32]>, out: &mut [MaybeUninit<u32>]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2_fma() {
        // SAFETY: the CPU has AVX2.
        return unsafe { x86::pair_up_avx2(first, second, out) };
    }
    pair_up_loop(first, second, out)
}

#[inline(always)]
fn pair_up_loop(first: Option<&[f32]>, second: Option<&[f32]>, out: &mut [MaybeUninit<u32>]) {
    match (first, second) {
        (Some(first), Some(second)) => {
            for ((out, &x), &y) in out.iter_mut().zip(first).zip(second) {
                out.write(pair(x, y));
            }
        }
        (Some(first), None) => {
            for (out, &x) in out.iter_mut().zip(first) {
                out.write(pair(x, 0.0));
            }
        }
        _ => out.fill(MaybeUninit::new(0)),
    }
}

/// a b^T, (m, n), in bf16 products with f32 sums; None where the kernel
/// does not apply (n not a multiple of 16, no AVX-512 BF16) or the shapes
/// disagree.
pub fn product(a: Factor, b: Factor) -> Option<Vec<f32>> {
    let ((m, k), (n, b_k)) = (a.logical(), b.logical());
    let sizes_hold = a.data.len() == m * k && b.data.len() == n * b_k;
    if !available() || k != b_k || !sizes_hold {
        return None;
    }
    if k == 0 {
        return Some(vec![0.0; m * n]);
    }
    let panels = Panels::new(b)?;
    let left = LeftPairs::new(a);
    let mut c: Vec<f32> = Vec::with_capacity(m * n);
    c.spare_capacity_mut()[..m * n]
        .par_chunks_mut((BLOCK * n).max(1))
        .enumerate()
        .for_each(|(block, out)| {
            let rows = out.len() / n.max(1);
            for first_pair in (0..panels.pairs).step_by(CHUNK) {
                let pairs = first_pair..panels.pairs.min(first_pair + CHUNK);
                for p in 0..n.div_ceil(PANEL) {
                    for first in (0..rows).step_by(STRIP) {
                        let strip = Strip {
                            left: &left,
                            row: block * BLOCK + first,
                            rows: STRIP.min(rows - first),
                            panel: panels.panel(p),
                            pairs: pairs.clone(),
                            out: &mut out[first * n..],
                            outputs: n,
                            column: p * PANEL,
                        };
                        strip.run();
                    }
                }
            }
        });
    // SAFETY: every strip wrote its rows' 16 columns of every panel, and
    // the panels cover all n columns.
    unsafe { c.set_len(m * n) };
    Some(c)
}

/// Up to 8 rows of a against one panel of 32 rows of b.
struct Strip<'a> {
    left: &'a LeftPairs,
    /// a's first row here.
    row: usize,
    rows: usize,
    panel: &'a [u32],
    /// The pairs of k summed here; after the first chunk of k (which
    /// writes c) the sums are added to what c holds.
    pairs: std::ops::Range<usize>,
    /// c from this strip's first row on; its 32 columns at `column` (16
    /// where c has no more) of each of `rows` rows are written (from the
    /// chunk that starts at 0) or added to.
    out: &'a mut [MaybeUninit<f32>],
    outputs: usize,
    column: usize,
}

impl Strip<'_> {
    fn run(self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `product` runs only where `available()`: AVX2 and
        // AVX-512 F and BF16.
        unsafe {
            match self.rows {
                8 => x86::strip::<8>(self),
                7 => x86::strip::<7>(self),
                6 => x86::strip::<6>(self),
                5 => x86::strip::<5>(self),
                4 => x86::strip::<4>(self),
                3 => x86::strip::<3>(self),
                2 => x86::strip::<2>(self),
                _ => x86::strip::<1>(self),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PANEL, REGISTER, Strip};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    // The rounding into pairs built for AVX2: the baseline build ran it 4
    // lanes at a time in SSE, 10% of the default encoder's bf16 step (the
    // products' own kernel: 35%). The same integer operations, so the same bits.
    #[target_feature(enable = "avx2")]
    pub(super) fn round_row_in_pairs_avx2(row: &[f32], out: &mut [MaybeUninit<u32>]) {
        super::round_row_loop(row, out)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn pair_up_avx2(
        first: Option<&[f32]>,
        second: Option<&[f32]>,
        out: &mut [MaybeUninit<u32>],
    ) {
        super::pair_up_loop(first, second, out)
    }

    /// [`super::transpose_pairs`] in 8 x 8 blocks in registers (rows a
    /// multiple of 8; the columns past the last whole block one at a time).
    #[target_feature(enable = "avx2")]
    pub(super) fn transpose_pairs_avx2(
        m: &[u32],
        (rows, columns): (usize, usize),
        out: &mut [MaybeUninit<u32>],
    ) {
        assert!(rows % 8 == 0 && m.len() >= rows * columns && out.len() >= rows * columns);
        let whole = columns / 8 * 8;
        for r in (0..rows).step_by(8) {
            for c in (0..whole).step_by(8) {
                // SAFETY: rows r..r + 8 and columns c..c + 8 are within m
                // and, transposed, within out (asserted above).
                unsafe {
                    let load = |i: usize| {
                        _mm256_castsi256_ps(_mm256_loadu_si256(
                            m.as_ptr().add((r + i) * columns + c).cast(),
                        ))
                    };
                    let block = transpose_8x8(std::array::from_fn(load));
                    for (i, row) in block.into_iter().enumerate() {
                        let at = out.as_mut_ptr().add((c + i) * rows + r);
                        _mm256_storeu_ps(at.cast(), row);
                    }
                }
            }
        }
        super::transpose_pairs_loop(m, (rows, columns), out, whole);
    }

    /// Eight rows of eight 32-bit values, transposed.
    #[target_feature(enable = "avx2")]
    fn transpose_8x8(r: [__m256; 8]) -> [__m256; 8] {
        // Pairs of rows interleaved, then quads, then the 128-bit halves.
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let q = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xee>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xee>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xee>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xee>(t[5], t[7]),
        ];
        std::array::from_fn(|i| {
            if i < 4 {
                _mm256_permute2f128_ps::<0x20>(q[i], q[i + 4])
            } else {
                _mm256_permute2f128_ps::<0x31>(q[i - 4], q[i])
            }
        })
    }

    /// R rows' f32 sums over every pair, for 32 outputs (16 at c's last
    /// column), into c.
    ///
    /// 512-bit registers: Zen 4 runs a 512-bit `vdpbf16ps` at half the
    /// rate of a 256-bit one, the same products per second, but a step
    /// over 8 rows x 32 outputs takes 26 instructions for 256 products
    /// where 6 rows x 16 outputs in 256-bit registers took 20 for 96
    /// (BENCHMARKS.md: the products of a MiniLM step 1.19x); cores with two
    /// 512-bit units run it at twice the products.
    ///
    /// SAFETY: the CPU has AVX-512 F and BF16; every pointer read and
    /// write is within the lengths asserted first.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn strip<const R: usize>(s: Strip) {
        let (left, pairs) = (s.left, s.pairs.clone());
        let last_read =
            (s.row + R - 1) * left.row_stride + pairs.end.saturating_sub(1) * left.pair_stride;
        assert!(pairs.is_empty() || last_read < left.pairs.len());
        assert!(s.panel.len() >= pairs.end * PANEL);
        let registers = PANEL.min(s.outputs - s.column) / REGISTER;
        assert!(s.out.len() >= (R - 1) * s.outputs + s.column + registers * REGISTER);
        let (panel, a) = (s.panel.as_ptr(), left.pairs.as_ptr());
        unsafe {
            let mut sums = [[_mm512_setzero_ps(); 2]; R];
            for t in pairs.clone() {
                let at = panel.add(t * PANEL);
                let low: __m512bh = std::mem::transmute(_mm512_loadu_si512(at.cast()));
                let high: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(at.add(REGISTER).cast()));
                for (r, sum) in sums.iter_mut().enumerate() {
                    let both = *a.add((s.row + r) * left.row_stride + t * left.pair_stride);
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(both as i32));
                    sum[0] = _mm512_dpbf16_ps(sum[0], x, low);
                    sum[1] = _mm512_dpbf16_ps(sum[1], x, high);
                }
            }
            for (r, sum) in sums.iter().enumerate() {
                let at = s
                    .out
                    .as_mut_ptr()
                    .cast::<f32>()
                    .add(r * s.outputs + s.column);
                for (h, &half) in sum.iter().enumerate().take(registers) {
                    let at = at.add(REGISTER * h);
                    // An earlier chunk of k wrote these (its pairs start at 0).
                    let value = if pairs.start == 0 {
                        half
                    } else {
                        _mm512_add_ps(_mm512_loadu_ps(at), half)
                    };
                    _mm512_storeu_ps(at, value);
                }
            }
        }
    }
}

/// a b^T as a candle op on two contiguous 2-d f32 tensors, each read as
/// itself or transposed (`transposed`); see [`product`]. None where the
/// kernel does not apply.
pub fn matmul_t(a: &Tensor, b: &Tensor, transposed: (bool, bool)) -> Result<Option<Tensor>> {
    let b_dims = b.dims2()?;
    let n = if transposed.1 { b_dims.1 } else { b_dims.0 };
    if !available() || n % REGISTER != 0 {
        return Ok(None);
    }
    let op = Product { transposed };
    a.contiguous()?
        .apply_op2_no_bwd(&b.contiguous()?, &op)
        .map(Some)
}

struct Product {
    transposed: (bool, bool),
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "bf16-product"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = Factor {
            data: super::contiguous_f32(a, a_layout, self.name())?,
            dims: a_layout.shape().dims2()?,
            transposed: self.transposed.0,
        };
        let b = Factor {
            data: super::contiguous_f32(b, b_layout, self.name())?,
            dims: b_layout.shape().dims2()?,
            transposed: self.transposed.1,
        };
        let (m, n) = (a.logical().0, b.logical().0);
        let Some(c) = product(a, b) else {
            candle_core::bail!(
                "{}: {:?} against {:?} (transposed {:?}) do not make a b^T",
                self.name(),
                a.dims,
                b.dims,
                self.transposed
            );
        };
        Ok((CpuStorage::F32(c), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(dims: (usize, usize), seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..dims.0 * dims.1)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect()
    }

    fn rounded(v: f32) -> f32 {
        f32::from_bits(bf16_bits(v) << 16)
    }

    /// a b^T in f64 from the bf16-rounded factors: what the kernel computes
    /// up to its f32 sums' rounding.
    fn reference(a: Factor, b: Factor) -> Vec<f64> {
        let ((m, k), (n, _)) = (a.logical(), b.logical());
        let at = |f: &Factor, r: usize, c: usize| {
            let v = if f.transposed {
                f.data[c * f.dims.1 + r]
            } else {
                f.data[r * f.dims.1 + c]
            };
            f64::from(rounded(v))
        };
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|t| at(&a, i, t) * at(&b, j, t)).sum();
            }
        }
        c
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is half way between 1 and 1 + 2^-7: to the even, 1.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is half way between 1 + 2^-7 and 1 + 2^-6: up.
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_bits(-2.0), 0xc000);
        assert_eq!(bf16_bits(0.0), 0);
    }

    /// Every combination of transposed factors, odd k (a zero-padded pair),
    /// rows that leave partial strips and blocks, k in several chunks,
    /// outputs that end in a half panel (48, 80, 16), against the rounded
    /// factors' exact product.
    #[test]
    fn products_equal_the_rounded_factors_product() {
        if !available() {
            return;
        }
        // k of 1,101: five chunks of k (`CHUNK` pairs), the last partial.
        for (m, n, k) in [
            (131, 48, 95),
            (7, 16, 384),
            (200, 32, 1),
            (13, 32, 1101),
            (37, 80, 64),
        ] {
            let (a, b) = (random((m, k), 1), random((n, k), 2));
            let (a_t, b_t) = (transpose(&a, m, k), transpose(&b, n, k));
            for (a_transposed, b_transposed) in
                [(false, false), (false, true), (true, false), (true, true)]
            {
                let factor = |data: &'static [f32], dims, transposed| Factor {
                    data,
                    dims,
                    transposed,
                };
                let a = if a_transposed {
                    factor(leak(&a_t), (k, m), true)
                } else {
                    factor(leak(&a), (m, k), false)
                };
                let b = if b_transposed {
                    factor(leak(&b_t), (k, n), true)
                } else {
                    factor(leak(&b), (n, k), false)
                };
                let ours = product(a, b).expect("applies");
                let exact = reference(a, b);
                let worst = ours
                    .iter()
                    .zip(&exact)
                    .map(|(&o, e)| (f64::from(o) - e).abs())
                    .fold(0f64, f64::max);
                // f32 sums of k products of magnitude below 1.
                assert!(
                    worst < 1e-5 * k as f64,
                    "{m}x{n}x{k} {a_transposed} {b_transposed}: {worst}"
                );
            }
        }
    }

    fn transpose(v: &[f32], rows: usize, columns: usize) -> Vec<f32> {
        (0..columns)
            .flat_map(|c| (0..rows).map(move |r| v[r * columns + c]))
            .collect()
    }

    fn leak(v: &[f32]) -> &'static [f32] {
        Box::leak(v.to_vec().into_boxed_slice())
    }

    #[test]
    fn transposes_match_the_plain_loop() {
        for (rows, columns) in [(8, 8), (32, 13), (16, 1), (32, 192), (8, 0), (5, 9)] {
            let m: Vec<u32> = (0..rows * columns).map(|v| v as u32 * 7 + 1).collect();
            let mut out = uninit(rows * columns);
            transpose_pairs(&m, (rows, columns), &mut out);
            let out = assume_init(out);
            for r in 0..rows {
                for c in 0..columns {
                    assert_eq!(out[c * rows + r], m[r * columns + c], "{rows}x{columns}");
                }
            }
        }
    }

    #[test]
    fn outputs_not_a_multiple_of_16_are_left_to_f32() {
        let device = Device::Cpu;
        let a = Tensor::ones((4, 8), candle_core::DType::F32, &device).unwrap();
        let b = Tensor::ones((15, 8), candle_core::DType::F32, &device).unwrap();
        assert!(matmul_t(&a, &b, (false, false)).unwrap().is_none());
    }

    #[test]
    fn the_op_is_within_bf16_rounding_of_f32() {
        if !available() {
            return;
        }
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (100, 64), &device).unwrap();
        let w = Tensor::randn(0f32, 0.1, (32, 64), &device).unwrap();
        let ours = matmul_t(&x, &w, (false, false)).unwrap().unwrap();
        let f32_path = x.matmul(&w.t().unwrap()).unwrap();
        let scale = super::super::testing::largest_abs(&f32_path).unwrap();
        let error = super::super::testing::largest_difference(&ours, &f32_path).unwrap();
        // Two factors of 8-bit mantissa: each product within about 2^-8.
        assert!(error < 2e-2 * scale && error > 0.0, "{error} of {scale}");
    }
}
