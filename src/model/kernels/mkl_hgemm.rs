//! The `hgemm_` symbol that candle 0.11's `mkl` feature links, for MKL
//! builds that lack it (Debian bookworm's libmkl-dev is MKL 2020.4; hgemm
//! came with oneMKL 2021). candle calls it only for f16 matmuls, which
//! labelgen never runs on the CPU, but the symbol must resolve: this one
//! widens the operands to f32, calls MKL's `sgemm_` and narrows the result.
//! Only in builds with `--features mkl`.

use std::os::raw::{c_char, c_int};

use half::f16;

unsafe extern "C" {
    fn sgemm_(
        transa: *const c_char,
        transb: *const c_char,
        m: *const c_int,
        n: *const c_int,
        k: *const c_int,
        alpha: *const f32,
        a: *const f32,
        lda: *const c_int,
        b: *const f32,
        ldb: *const c_int,
        beta: *const f32,
        c: *mut f32,
        ldc: *const c_int,
    );
}

/// Elements of a column-major operand of `columns` columns and leading
/// dimension `leading`.
fn operand_len(leading: c_int, columns: c_int) -> usize {
    (leading.max(0) as usize) * (columns.max(0) as usize)
}

fn widen(data: *const f16, len: usize) -> Vec<f32> {
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the BLAS contract: the caller's operand holds `len` elements.
    let data = unsafe { std::slice::from_raw_parts(data, len) };
    data.iter().map(|v| v.to_f32()).collect()
}

/// BLAS `?gemm` for f16: C = alpha op(A) op(B) + beta C, column-major.
///
/// # Safety
/// The BLAS contract: every pointer is valid, and A, B and C hold the
/// elements their dimensions and leading dimensions say.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn hgemm_(
    transa: *const c_char,
    transb: *const c_char,
    m: *const c_int,
    n: *const c_int,
    k: *const c_int,
    alpha: *const f16,
    a: *const f16,
    lda: *const c_int,
    b: *const f16,
    ldb: *const c_int,
    beta: *const f16,
    c: *mut f16,
    ldc: *const c_int,
) {
    // SAFETY: scalars passed by reference, per the BLAS contract.
    let (ta, tb, m_, n_, k_) = unsafe { (*transa as u8, *transb as u8, *m, *n, *k) };
    let (lda_, ldb_, ldc_) = unsafe { (*lda, *ldb, *ldc) };
    let transposed = |t: u8| t == b'T' || t == b't' || t == b'C' || t == b'c';
    let a32 = widen(a, operand_len(lda_, if transposed(ta) { m_ } else { k_ }));
    let b32 = widen(b, operand_len(ldb_, if transposed(tb) { k_ } else { n_ }));
    let c_len = operand_len(ldc_, n_);
    let mut c32 = widen(c, c_len);
    let (alpha32, beta32) = unsafe { ((*alpha).to_f32(), (*beta).to_f32()) };
    // SAFETY: f32 copies of the caller's operands, of the same dimensions.
    unsafe {
        sgemm_(
            transa,
            transb,
            m,
            n,
            k,
            &alpha32,
            a32.as_ptr(),
            lda,
            b32.as_ptr(),
            ldb,
            &beta32,
            c32.as_mut_ptr(),
            ldc,
        );
    }
    if c_len > 0 {
        // SAFETY: C holds `c_len` elements, per the BLAS contract.
        let c = unsafe { std::slice::from_raw_parts_mut(c, c_len) };
        for (out, v) in c.iter_mut().zip(&c32) {
            *out = f16::from_f32(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn an_f16_matmul_through_mkl_matches_f32() {
        let device = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (5, 7), &device).unwrap();
        let b = Tensor::randn(0f32, 1.0, (7, 3), &device).unwrap();
        let want = a.matmul(&b).unwrap();
        let got = a
            .to_dtype(DType::F16)
            .unwrap()
            .matmul(&b.to_dtype(DType::F16).unwrap())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let difference = crate::model::kernels::testing::largest_difference(&want, &got).unwrap();
        assert!(difference < 0.05, "{difference}");
    }
}
