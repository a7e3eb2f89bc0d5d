//! Where a training step's time goes, op by op: forward and backward
//! milliseconds of each piece of a MiniLM-sized encoder layer (6 x 384, 12
//! heads, a batch of 64 x 32 tokens, as `bench_encoder`'s training step),
//! of the whole layer, and the split of a whole MiniLM training step into
//! forward, backward and the AdamW update.
//!
//!     cargo run --release --example bench_layer
//!     LABELGEN_PLAIN_PATH=1 cargo run --release --example bench_layer
//!
//! The second runs candle's op chains where labelgen's fused kernels
//! (src/model/kernels) would run: the before and after of those kernels in
//! one binary. Every backward is of `sum(y * u)` for a fixed random `u`, so
//! the gradient flowing in is dense, as in training.

use std::time::Instant;

use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use labelgen::model::config::EncoderConfig;
use labelgen::model::optim::AdamW;
use labelgen::model::roberta::Roberta;
use labelgen::model::{kernels, layers, plain_path};

// The allocator the labelgen binary uses, with freed memory kept as
// `labelgen train` keeps it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 64;
const TOKENS: usize = 32;
const HIDDEN: usize = 384;
const HEADS: usize = 12;
const REPEATS: usize = 10;

/// Median forward and backward milliseconds of `op` on `input` (a variable,
/// so a graph is recorded) over `REPEATS` calls after a warm-up.
fn forward_backward(
    input: &Var,
    op: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> (f64, f64) {
    let output = op(input.as_tensor()).expect("forward");
    let upstream = Tensor::randn(0f32, 1.0, output.shape(), &Device::Cpu).expect("upstream");
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for _ in 0..=REPEATS {
        let started = Instant::now();
        let output = op(input.as_tensor()).expect("forward");
        let loss = (output * &upstream)
            .and_then(|t| t.sum_all())
            .expect("loss");
        let middle = Instant::now();
        let grads = loss.backward().expect("backward");
        assert!(grads.get(input).is_some(), "no gradient reached the input");
        forward.push(middle.duration_since(started).as_secs_f64() * 1e3);
        backward.push(middle.elapsed().as_secs_f64() * 1e3);
    }
    (median(&mut forward[1..]), median(&mut backward[1..]))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    if plain_path() {
        candle_nn::ops::softmax(x, D::Minus1)
    } else {
        kernels::softmax::softmax_last_dim(x)
    }
}

fn main() -> anyhow::Result<()> {
    // SAFETY: a process-wide allocator option (purge_delay, -1: keep freed memory).
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let intermediate = layers::linear(HIDDEN, 4 * HIDDEN, vb.pp("intermediate"))?;
    let square = layers::linear(HIDDEN, HIDDEN, vb.pp("square"))?;
    let norm = layers::LayerNorm::new(HIDDEN, 1e-12, vb.pp("norm"))?;
    let layer =
        layers::TransformerLayer::new(HIDDEN, HEADS, 4 * HIDDEN, 1e-12, "gelu", vb.pp("layer"))?;
    let attention = layers::SelfAttention::new(HIDDEN, HEADS, vb.pp("attention"))?;
    let hidden = Var::randn(0f32, 1.0, (ROWS, TOKENS, HIDDEN), &device)?;
    let wide = Var::randn(0f32, 1.0, (ROWS, TOKENS, 4 * HIDDEN), &device)?;
    let scores = Var::randn(0f32, 1.0, (ROWS, HEADS, TOKENS, TOKENS), &device)?;
    let packed_qkv = Var::randn(0f32, 1.0, (ROWS, TOKENS, 3 * HIDDEN), &device)?;
    let mask = layers::attention_bias(&Tensor::ones((ROWS, TOKENS), DType::U32, &device)?)?;
    println!(
        "{} path, {ROWS} x {TOKENS} tokens, hidden {HIDDEN}, median of {REPEATS}",
        if plain_path() {
            "plain (candle op chains)"
        } else {
            "fused kernels"
        }
    );
    println!("{:<34} {:>10} {:>10}", "op", "fwd ms", "bwd ms");
    let rows: Vec<(&str, (f64, f64))> = vec![
        (
            "dense 384 -> 1536, with bias",
            forward_backward(&hidden, |x| intermediate.forward(x)),
        ),
        (
            "dense 384 -> 384, with bias",
            forward_backward(&hidden, |x| square.forward(x)),
        ),
        (
            "LayerNorm 384",
            forward_backward(&hidden, |x| norm.forward(x)),
        ),
        (
            "GELU on 1536",
            forward_backward(&wide, |x| layers::activation(x, "gelu")),
        ),
        ("softmax over 32 keys", forward_backward(&scores, softmax)),
        (
            "attention on packed Q | K | V",
            forward_backward(&packed_qkv, |qkv| attention_only(qkv, &mask)),
        ),
        (
            "self-attention with Q, K, V",
            forward_backward(&hidden, |x| attention.forward(x, &mask)),
        ),
        (
            "whole layer",
            forward_backward(&hidden, |x| layer.forward(x, &mask)),
        ),
    ];
    for (name, (forward, backward)) in rows {
        println!("{name:<34} {forward:>10.2} {backward:>10.2}");
    }
    training_step_split(&device)
}

/// Scaled dot-product attention alone, from packed (Q | K | V) rows to the
/// context (no dense layers): labelgen's kernel, or candle's chain on the
/// plain path.
fn attention_only(qkv: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    if !plain_path()
        && let Some(context) = kernels::attention::attention(qkv, mask, HEADS)?
    {
        return Ok(context);
    }
    let (rows, tokens, _) = qkv.dims3()?;
    let head_dim = HIDDEN / HEADS;
    // (rows, tokens, hidden) -> (rows, heads, tokens, head_dim)
    let split = |which: usize| {
        qkv.narrow(2, which * HIDDEN, HIDDEN)?
            .reshape((rows, tokens, HEADS, head_dim))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?.broadcast_add(mask)?;
    candle_nn::ops::softmax(&scores, D::Minus1)?
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((rows, tokens, HIDDEN))
}

/// Forward, backward and AdamW seconds of a whole MiniLM training step
/// (random weights, MiniLM's vocabulary, loss mean(h^2)), as bench_encoder.
fn training_step_split(device: &Device) -> anyhow::Result<()> {
    let config = EncoderConfig::small(30522, HIDDEN, 6, HEADS, 62);
    let varmap = VarMap::new();
    let model = Roberta::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    let ids: Vec<u32> = (0..ROWS * TOKENS)
        .map(|i| (i * 7919 % 30500 + 5) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (ROWS, TOKENS), device)?;
    let mask = Tensor::ones((ROWS, TOKENS), DType::U32, device)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let vars = vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    let mut optimizer = AdamW::new(vars, 1e-4, 0.01)?;
    let (mut forward, mut backward, mut update) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..=5 {
        let started = Instant::now();
        let loss = model.forward(&ids, &mask)?.sqr()?.mean_all()?;
        let forwarded = Instant::now();
        let grads = loss.backward()?;
        let backwarded = Instant::now();
        optimizer.step(&grads, 1.0)?;
        forward.push(forwarded.duration_since(started).as_secs_f64());
        backward.push(backwarded.duration_since(forwarded).as_secs_f64());
        update.push(backwarded.elapsed().as_secs_f64());
    }
    let (forward, backward, update) = (
        median(&mut forward[1..]),
        median(&mut backward[1..]),
        median(&mut update[1..]),
    );
    let tokens = (ROWS * TOKENS) as f64;
    println!(
        "MiniLM 6 x 384 training step: forward {forward:.3} s, backward {backward:.3} s, AdamW {update:.3} s; {:.0} tokens/s",
        tokens / (forward + backward + update)
    );
    Ok(())
}
