//! Encoder speed on this machine, side by side in one run: the f32 matmul
//! peak (n = 1024, through candle), the turn encoder's inference on a mix of
//! turn lengths (turns/s) and a full training step with AdamW (tokens/s), for
//! labelgen's default encoder, the 4 x 256 and MiniLM's 6 x 384, with
//! random weights (speed only), and the share of the matmul peak each
//! reaches. scripts/bench/encoder.sh runs it beside the PyTorch peer
//! (scripts/bench/peer_torch.py, the same inputs by the same formulas) and
//! prints the ratios.
//!
//!     cargo run --release --example bench_encoder -- [--quick] [--json FILE] [--shape NAME]
//!         [--precision int16] [--bf16] [--infer-only | --train-only]
//!
//! `--infer-only` / `--train-only`: one side measured, for a profiler (the
//! training step then runs 4 times; the inference not at all, its figures
//! NaN); the matmul peak from 4 runs only.
//! `--precision int16`: the inference in 16-bit integer dense layers, as
//! `label --precision int16` (kernels::int16; the training step stays f32).
//! `--bf16`: the training step's dense-layer products in bf16 with f32
//! sums, as `train --bf16` (kernels::bf16; needs AVX-512 BF16).
//!
//! Threads: candle's matmuls and labelgen's rayon work share one pool, sized
//! by RAYON_NUM_THREADS (default: the physical cores).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use labelgen::model::config::EncoderConfig;
use labelgen::model::optim::AdamW;
use labelgen::model::roberta::Roberta;
use labelgen::model::{Precision, kernels};

/// Turn lengths (tokens, utterance and response together) the inference
/// inputs cycle through; the same list is in scripts/bench/peer_torch.py.
const LENGTHS: [usize; 16] = [
    12, 18, 24, 30, 36, 48, 20, 28, 16, 40, 22, 34, 26, 44, 14, 32,
];
const TURNS: usize = 512;
const BATCH: usize = 64;
/// (rows, tokens) of the training step's batch, every token real.
const TRAIN_SHAPE: (usize, usize) = (64, 32);
const PAD: u32 = 1;

// The allocator the labelgen binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Shape {
    name: &'static str,
    layers: usize,
    hidden: usize,
    heads: usize,
    vocab: usize,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "default-2x128",
        layers: 2,
        hidden: 128,
        heads: 4,
        vocab: 4000,
    },
    Shape {
        name: "4x256",
        layers: 4,
        hidden: 256,
        heads: 4,
        vocab: 4000,
    },
    Shape {
        name: "minilm-6x384",
        layers: 6,
        hidden: 384,
        heads: 12,
        vocab: 30522,
    },
];

fn token_ids(turn: usize, length: usize, vocab: usize) -> Vec<u32> {
    (0..length)
        .map(|j| ((7 + 31 * turn + 17 * j) % (vocab - 10) + 5) as u32)
        .collect()
}

/// Median seconds of one call of `run`, after a warm-up call, over at
/// least 3 calls and `budget` seconds.
fn timed(budget: f64, mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    run()?;
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || started.elapsed().as_secs_f64() < budget {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// mimalloc's purge_delay (option 15, as in src/main.rs) in milliseconds;
/// -1 keeps freed memory.
fn set_purge_delay(milliseconds: std::os::raw::c_long) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a process-wide allocator option, read at the next purge.
        unsafe { libmimalloc_sys::mi_option_set(15, milliseconds) };
    }
}

fn matmul_gflops(budget: f64) -> anyhow::Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let seconds = timed(budget, || {
        a.matmul(&b)?;
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / seconds / 1e9)
}

/// Forward FLOPs per token of the encoder layers (matmuls only) at
/// sequence length `seq`: Q, K, V and output projections, the two
/// feed-forward matmuls, and the attention scores and weighted sum.
fn flops_per_token(shape: &Shape, seq: f64) -> f64 {
    let h = shape.hidden as f64;
    let per_layer = 2.0 * (4.0 * h * h + 2.0 * h * 4.0 * h) + 4.0 * seq * h;
    per_layer * shape.layers as f64
}

/// Padded (ids, mask) batches, and the real and computed (padded) tokens.
type Batches = (Vec<(Tensor, Tensor)>, usize, usize);

/// The inference inputs as padded (ids, mask) batches of `BATCH` turns in
/// input order, and the real and computed (padded) token counts.
fn inference_batches(vocab: usize) -> anyhow::Result<Batches> {
    let (mut batches, mut real, mut computed) = (Vec::new(), 0, 0);
    for start in (0..TURNS).step_by(BATCH) {
        let turns: Vec<usize> = (start..(start + BATCH).min(TURNS)).collect();
        let lengths: Vec<usize> = turns.iter().map(|t| LENGTHS[t % LENGTHS.len()]).collect();
        let width = *lengths.iter().max().unwrap_or(&1);
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        for (&t, &n) in turns.iter().zip(&lengths) {
            ids.extend(token_ids(t, n, vocab));
            ids.extend(std::iter::repeat_n(PAD, width - n));
            mask.extend((0..width).map(|i| u32::from(i < n)));
            real += n;
        }
        computed += turns.len() * width;
        let dims = (turns.len(), width);
        batches.push((
            Tensor::from_vec(ids, dims, &Device::Cpu)?,
            Tensor::from_vec(mask, dims, &Device::Cpu)?,
        ));
    }
    Ok((batches, real, computed))
}

struct Measured {
    inference_turns_per_s: f64,
    inference_share_of_peak: f64,
    train_tokens_per_s: f64,
    train_share_of_peak: f64,
    flops_per_token: f64,
}

/// How a benchmark runs: `infer_only` skips the training step and
/// `train_only` the inference (for a profiler); `int16`: the inference in
/// int16 dense layers; `bf16`: the training step's products in bf16.
struct Options {
    budget: f64,
    infer_only: bool,
    train_only: bool,
    int16: bool,
    bf16: bool,
}

fn bench_shape(shape: &Shape, peak: f64, options: &Options) -> anyhow::Result<Measured> {
    let Options {
        budget,
        infer_only,
        train_only,
        int16,
        bf16,
    } = *options;
    let config = EncoderConfig::small(shape.vocab, shape.hidden, shape.layers, shape.heads, 62);
    let varmap = VarMap::new();
    let trained = Roberta::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    // Inference: the same weights as plain tensors, so no op keeps a graph.
    let tensors = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    let frozen = Roberta::new(
        &config,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )?;
    let (batches, _real, computed) = inference_batches(shape.vocab)?;
    let asked = if int16 {
        Precision::Int16
    } else {
        Precision::F32
    };
    let precision = kernels::int16::Scoped::enable(asked);
    anyhow::ensure!(
        precision.precision() == asked,
        "--precision int16 needs AVX2"
    );
    // Not measured with --train-only: its figures print as NaN.
    let infer_seconds = if train_only {
        f64::NAN
    } else {
        timed(budget, || {
            for (ids, mask) in &batches {
                frozen.forward(ids, mask)?;
            }
            Ok(())
        })?
    };
    drop(precision);
    let mean_width = computed as f64 / TURNS as f64;
    let (rows, width) = TRAIN_SHAPE;
    let ids: Vec<u32> = (0..rows)
        .flat_map(|t| token_ids(t, width, shape.vocab))
        .collect();
    let ids = Tensor::from_vec(ids, (rows, width), &Device::Cpu)?;
    let mask = Tensor::ones((rows, width), DType::U32, &Device::Cpu)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?
        .iter()
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    let mut optimizer = AdamW::new(vars, 1e-4, 0.01)?;
    let step_budget = if infer_only { 0.0 } else { budget };
    // As `labelgen train` runs: freed memory kept for reuse (src/main.rs),
    // then mimalloc's default again (1 s) for the next inference.
    set_purge_delay(-1);
    let mixed = kernels::bf16::Scoped::enable(bf16);
    anyhow::ensure!(mixed.on() == bf16, "--bf16 needs AVX-512 BF16");
    let step_seconds = timed(step_budget, || {
        let loss = trained.forward(&ids, &mask)?.sqr()?.mean_all()?;
        optimizer.step(&loss.backward()?, 1.0)?;
        Ok(())
    })?;
    drop(mixed);
    set_purge_delay(1000);
    let infer_flops = flops_per_token(shape, mean_width) * computed as f64;
    let train_flops = 3.0 * flops_per_token(shape, width as f64);
    let train_tokens_per_s = (rows * width) as f64 / step_seconds;
    Ok(Measured {
        inference_turns_per_s: TURNS as f64 / infer_seconds,
        inference_share_of_peak: infer_flops / infer_seconds / 1e9 / peak,
        train_tokens_per_s,
        train_share_of_peak: train_flops * train_tokens_per_s / 1e9 / peak,
        flops_per_token: flops_per_token(shape, width as f64),
    })
}

fn main() -> anyhow::Result<()> {
    // As `labelgen`'s commands set it (src/cli/common.rs).
    // SAFETY: first thing in main, before any thread is spawned.
    unsafe { kernels::park_elementwise_workers() };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1));
    // --shape NAME: only that config (for a profiler).
    let only = args
        .iter()
        .position(|a| a == "--shape")
        .and_then(|i| args.get(i + 1));
    let int16 = match args
        .iter()
        .position(|a| a == "--precision")
        .map(|i| args.get(i + 1))
    {
        None => false,
        Some(Some(p)) if p == "int16" => true,
        Some(Some(p)) if p == "f32" => false,
        Some(other) => anyhow::bail!("--precision takes f32 or int16, not {other:?}"),
    };
    let options = Options {
        budget: if quick { 1.0 } else { 4.0 },
        infer_only: args.iter().any(|a| a == "--infer-only"),
        train_only: args.iter().any(|a| a == "--train-only"),
        int16,
        bf16: args.iter().any(|a| a == "--bf16"),
    };
    let threads = candle_core::utils::get_num_threads();
    // A profile of one side leaves the peak to a full run.
    let profiling = options.infer_only || options.train_only;
    let peak = matmul_gflops(if profiling { 0.0 } else { options.budget })?;
    println!(
        "labelgen (candle) on {threads} threads: f32 matmul n=1024 {peak:.1} GFLOP/s; inference in {}, training products in {}",
        if int16 { "int16" } else { "f32" },
        if options.bf16 { "bf16" } else { "f32" }
    );
    println!(
        "{:<14} {:>10} {:>12} {:>10} {:>12} {:>12}",
        "config", "turns/s", "infer peak", "tokens/s", "train peak", "MFLOP/token"
    );
    let mut configs = serde_json::Map::new();
    for shape in SHAPES.iter().filter(|s| only.is_none_or(|o| o == s.name)) {
        // On a pool worker, as `labelgen` runs its commands (src/cli/common.rs).
        let m = rayon::scope(|_| bench_shape(shape, peak, &options))?;
        println!(
            "{:<14} {:>10.1} {:>11.0}% {:>10.1} {:>11.0}% {:>12.2}",
            shape.name,
            m.inference_turns_per_s,
            100.0 * m.inference_share_of_peak,
            m.train_tokens_per_s,
            100.0 * m.train_share_of_peak,
            m.flops_per_token / 1e6
        );
        configs.insert(
            shape.name.to_string(),
            serde_json::json!({
                "inference_turns_per_s": m.inference_turns_per_s,
                "inference_share_of_peak": m.inference_share_of_peak,
                "train_tokens_per_s": m.train_tokens_per_s,
                "train_share_of_peak": m.train_share_of_peak,
                "forward_flops_per_token": m.flops_per_token,
            }),
        );
    }
    let result = serde_json::json!({
        "threads": threads,
        "inference_precision": if int16 { "int16" } else { "f32" },
        "training_products": if options.bf16 { "bf16" } else { "f32" },
        "matmul_gflops": peak,
        "configs": configs,
    });
    if let Some(path) = json_path {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
    }
    Ok(())
}
