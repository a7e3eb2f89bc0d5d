//! The bf16 products of `train --bf16` (labelgen's `kernels::bf16`) against
//! candle's f32 matmul, on the three products of each of MiniLM's dense
//! layers in a training step of 2,048 token rows (forward x W^T, the
//! input's gradient dY W, the weight's gradient dY^T X): milliseconds and
//! GFLOP/s side by side in one run.
//!
//!     cargo run --release --example bench_bf16

use std::time::Instant;

use candle_core::{Device, Tensor};
use labelgen::model::kernels::bf16;

const ROWS: usize = 2048;
const REPEATS: usize = 15;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Milliseconds of `run`, the median of [`REPEATS`].
fn timed(mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    run()?;
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

fn main() -> anyhow::Result<()> {
    if !bf16::available() {
        println!("bf16 products need AVX-512 BF16: not on this CPU");
        return Ok(());
    }
    let device = Device::Cpu;
    println!(
        "{ROWS} rows, median of {REPEATS}, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<22} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "product", "f32 ms", "bf16 ms", "f32 GF/s", "bf16 GF/s", "ratio"
    );
    for (inputs, outputs) in [(384, 1152), (384, 384), (384, 1536), (1536, 384)] {
        let x = Tensor::randn(0f32, 1.0, (ROWS, inputs), &device)?;
        let weight = Tensor::randn(0f32, 0.05, (outputs, inputs), &device)?;
        let grad = Tensor::randn(0f32, 1.0, (ROWS, outputs), &device)?;
        let weight_t = weight.t()?;
        let grad_t = grad.t()?;
        // (name, f32 product, bf16 product)
        type Product<'a> = Box<dyn Fn() -> anyhow::Result<Tensor> + 'a>;
        let products: [(&str, Product, Product); 3] = [
            (
                "forward",
                Box::new(|| Ok(x.matmul(&weight_t)?)),
                Box::new(|| Ok(bf16::matmul_t(&x, &weight, (false, false))?.unwrap())),
            ),
            (
                "input gradient",
                Box::new(|| Ok(grad.matmul(&weight)?)),
                Box::new(|| Ok(bf16::matmul_t(&grad, &weight, (false, true))?.unwrap())),
            ),
            (
                "weight gradient",
                Box::new(|| Ok(grad_t.matmul(&x)?)),
                Box::new(|| Ok(bf16::matmul_t(&grad, &x, (true, true))?.unwrap())),
            ),
        ];
        let flops = 2.0 * (ROWS * inputs * outputs) as f64;
        for (name, f32_product, bf16_product) in products {
            if inputs % 16 != 0 && name != "forward" {
                continue;
            }
            let f32_ms = timed(|| f32_product().map(drop))?;
            let bf16_ms = timed(|| bf16_product().map(drop))?;
            println!(
                "{:<22} {f32_ms:>8.2} {bf16_ms:>8.2} {:>9.1} {:>9.1} {:>6.2}x",
                format!("{inputs}->{outputs} {name}"),
                flops / f32_ms / 1e6,
                flops / bf16_ms / 1e6,
                f32_ms / bf16_ms
            );
        }
    }
    Ok(())
}
