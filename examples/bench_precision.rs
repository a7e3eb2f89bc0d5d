//! Whether a reduced-precision matmul would make inference faster on this
//! CPU: every path candle 0.11 offers for the encoder's dense layers, timed
//! against its f32 gemm on MiniLM's shapes (a batch of 64 turns x 32 tokens
//! = 2,048 rows; hidden 384, intermediate 1,536), with the largest error
//! against f32 on the same random inputs.
//!
//!     cargo run --release --example bench_precision
//!
//! The paths: ggml's int8 and int4 blocks (`QMatMul` on `Q8_0` and `Q4_0`
//! weights, activations quantized per call, as candle's quantized LLMs
//! run), f16 weights dequantized per call (`QMatMul` on `F16`), and f16 on
//! both sides through gemm's f16 kernel. candle 0.11 has no bf16 matmul on
//! the CPU (the gemm crate has no bf16 kernel). Threads as `bench_encoder`.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

// The allocator the labelgen binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (rows, inputs, outputs) of MiniLM's dense layers on one batch.
const SHAPES: [(usize, usize, usize); 3] = [(2048, 384, 384), (2048, 384, 1536), (2048, 1536, 384)];

/// Median milliseconds of `run` over 7 calls after a warm-up.
fn median_ms(run: impl Fn() -> Result<Tensor>) -> Result<f64> {
    run()?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[3])
}

fn largest_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

fn main() -> Result<()> {
    let cpu = Device::Cpu;
    println!("shape (rows x in x out)   path          ms  f32 / path  largest error");
    for (rows, inputs, outputs) in SHAPES {
        let x = Tensor::randn(0f32, 1.0, (rows, inputs), &cpu)?;
        // Weights as a dense layer holds them: (out, in), scaled as trained ones are.
        let weight = Tensor::randn(0f32, 0.05, (outputs, inputs), &cpu)?;
        let transposed = weight.t()?;
        let exact = x.matmul(&transposed)?;
        let f32_ms = median_ms(|| x.matmul(&transposed))?;
        let name = format!("{rows} x {inputs} x {outputs}");
        let row = |path: &str, ms: f64, error: f32| {
            println!(
                "{name:<25} {path:<10} {ms:>6.2}  {:>10.2}  {error:>13.4}",
                f32_ms / ms
            )
        };
        row("f32", f32_ms, 0.0);
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::F16] {
            let quantized = QMatMul::from_qtensor(QTensor::quantize(&weight, dtype)?)?;
            let ms = median_ms(|| quantized.forward(&x))?;
            let error = largest_difference(&quantized.forward(&x)?, &exact)?;
            row(&format!("{dtype:?}"), ms, error);
        }
        let (x16, w16) = (x.to_dtype(DType::F16)?, transposed.to_dtype(DType::F16)?);
        let ms = median_ms(|| x16.matmul(&w16))?;
        let error = largest_difference(&x16.matmul(&w16)?.to_dtype(DType::F32)?, &exact)?;
        row("f16 gemm", ms, error);
    }
    Ok(())
}
