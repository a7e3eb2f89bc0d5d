//! A dense layer in 16-bit integers (labelgen's `kernels::int16`, `label
//! --precision int16`) against the f32 one (`kernels::linear::dense`), on
//! MiniLM's dense shapes at `label`'s batch (2,048 token rows): milliseconds
//! side by side in one run, and the error relative to the output's largest
//! value.
//!
//!     cargo run --release --example bench_int_gemm

use std::time::Instant;

use candle_core::{Device, Tensor};
use labelgen::model::kernels;

const ROWS: usize = 2048;
const REPEATS: usize = 15;

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
        "{:<14} {:>8} {:>9} {:>9} {:>11} {:>7} {:>11}",
        "in -> out", "f32 ms", "int16 ms", "f32 GF/s", "int16 GF/s", "ratio", "rel. error"
    );
    for (inputs, outputs) in [(384, 1152), (384, 384), (384, 1536), (1536, 384)] {
        let x = Tensor::randn(0f32, 1.0, (ROWS, inputs), &device)?;
        let weight = Tensor::randn(0f32, 0.05, (outputs, inputs), &device)?;
        let bias = Tensor::randn(0f32, 0.1, outputs, &device)?;
        let Some(packed) = kernels::int16::PackedWeights::new(&weight)? else {
            println!("int16 needs AVX2: not on this CPU");
            return Ok(());
        };
        let (mut f32_ms, mut int16_ms) = (Vec::new(), Vec::new());
        let (mut reference, mut ours) = (None, None);
        for _ in 0..=REPEATS {
            let started = Instant::now();
            reference = kernels::linear::dense(&x, &weight, &bias)?;
            f32_ms.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            ours = Some(kernels::int16::dense(&x, &packed, &bias, false)?);
            int16_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let (reference, ours) = (reference.expect("f32 path"), ours.expect("ran"));
        let (f32_ms, int16_ms) = (median(f32_ms[1..].to_vec()), median(int16_ms[1..].to_vec()));
        let largest = reference.abs()?.max_all()?.to_scalar::<f32>()?;
        let error = (reference - ours)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let flops = 2.0 * (ROWS * inputs * outputs) as f64;
        println!(
            "{:<14} {f32_ms:>8.2} {int16_ms:>9.2} {:>9.1} {:>11.1} {:>6.2}x {:>11.2e}",
            format!("{inputs} -> {outputs}"),
            flops / f32_ms / 1e6,
            flops / int16_ms / 1e6,
            f32_ms / int16_ms,
            error / largest
        );
    }
    Ok(())
}
