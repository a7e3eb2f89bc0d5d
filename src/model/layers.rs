//! Transformer building blocks shared by the turn encoder and the dialogue
//! encoder, named as Hugging Face's modeling_roberta.py names them.
//!
//! LayerNorm, GELU and softmax run labelgen's fused kernels
//! ([`super::kernels`]), which have a backward pass. candle-nn 0.11's own
//! fused `LayerNorm::forward`, `ops::layer_norm` and `ops::softmax_last_dim`
//! have none, and every parameter upstream of them would silently stop
//! learning, so they are not used. `LABELGEN_PLAIN_PATH=1` runs the chains
//! of candle tensor ops the kernels replace, for comparison.

use std::sync::{Arc, OnceLock};

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::kernels;

/// A dense layer, y = x W^T + b over x's last dimension (HF: weight of
/// (out, in), bias). Unlike candle-nn's `Linear`, it is one graph node
/// ([`kernels::linear`]) whose backward takes the weight's gradient in one
/// gemm and skips the input's where the input is a constant.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    /// The weight packed for int16 inference (kernels::int16), made on first
    /// use while that is on; None where that kernel does not apply. Never
    /// repacked: int16 is on only where the weight can no longer change
    /// (label; train's fixed layers while their cache is built).
    int16: Arc<OnceLock<Option<kernels::int16::PackedWeights>>>,
}

pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear {
        weight,
        bias,
        int16: Arc::default(),
    })
}

impl Linear {
    /// (out, in)
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `activation(self.forward(x), act)`, as one graph node where the
    /// kernels take both (GELU in its erf form).
    pub fn forward_activated(&self, x: &Tensor, act: &str) -> Result<Tensor> {
        if is_gelu_erf(act)
            && let Some(y) = self.int16_forward(x, true)?
        {
            return Ok(y);
        }
        if !super::plain_path()
            && is_gelu_erf(act)
            && let Some(y) = kernels::linear::dense_gelu(x, &self.weight, &self.bias)?
        {
            return Ok(y);
        }
        activation(&self.forward(x)?, act)
    }

    /// The int16 path (`--precision int16`): at inference only
    /// (neither x nor the weight records a graph), where the kernel
    /// applies; None otherwise.
    fn int16_forward(&self, x: &Tensor, gelu: bool) -> Result<Option<Tensor>> {
        if !int16_applies(x, &[&self.weight]) {
            return Ok(None);
        }
        match packed_once(&self.int16, || {
            kernels::int16::PackedWeights::new(&self.weight)
        })? {
            Some(packed) => kernels::int16::dense(x, packed, &self.bias, gelu).map(Some),
            None => Ok(None),
        }
    }
}

/// Whether the int16 path may run: it is on (`--precision int16`, AVX2),
/// and neither the input nor a weight records a graph (inference only).
fn int16_applies(x: &Tensor, weights: &[&Tensor]) -> bool {
    kernels::int16::enabled()
        && !super::plain_path()
        && !x.track_op()
        && weights.iter().all(|w| !w.track_op())
}

/// The value in `cell`, made by `pack` on first use.
fn packed_once<T>(
    cell: &OnceLock<Option<T>>,
    pack: impl FnOnce() -> Result<Option<T>>,
) -> Result<Option<&T>> {
    if cell.get().is_none() {
        // Another thread may have packed it meanwhile: the same values.
        let _ = cell.set(pack()?);
    }
    Ok(cell.get().and_then(Option::as_ref))
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.int16_forward(x, false)? {
            return Ok(y);
        }
        if super::plain_path() {
            let plain = candle_nn::Linear::new(self.weight.clone(), Some(self.bias.clone()));
            return plain.forward(x);
        }
        // (..., in) -> (..., out): one matmul over every row, not a batched one.
        if let Some(y) = kernels::linear::dense(x, &self.weight, &self.bias)? {
            return Ok(y);
        }
        let mut dims = x.dims().to_vec();
        let inputs = dims.pop().unwrap_or(1);
        let rows = x.elem_count() / inputs.max(1);
        let x = x.contiguous()?.reshape((rows, inputs))?;
        let y = kernels::bias::add_bias(&x.matmul(&self.weight.t()?)?, &self.bias)?;
        dims.push(self.weight.dim(0)?);
        y.reshape(dims)
    }
}

/// LayerNorm over the last dimension; HF names: weight, bias.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
        // Older BERT checkpoints call these gamma and beta.
        let weight = vb
            .get_with_hints(size, "weight", Init::Const(1.0))
            .or_else(|_| vb.get(size, "gamma"))?;
        let bias = vb
            .get_with_hints(size, "bias", Init::Const(0.0))
            .or_else(|_| vb.get(size, "beta"))?;
        Ok(LayerNorm { weight, bias, eps })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !super::plain_path()
            && let Some(y) = kernels::layer_norm::layer_norm(x, &self.weight, &self.bias, self.eps)?
        {
            return Ok(y);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Whether `act` (a config's `hidden_act`) names GELU in its erf form:
/// every name but relu and the tanh approximation (`gelu_new`), the names
/// [`activation`] matches before its GELU arm.
fn is_gelu_erf(act: &str) -> bool {
    !matches!(act, "relu" | "gelu_new")
}

pub fn activation(x: &Tensor, act: &str) -> Result<Tensor> {
    match act {
        "relu" => x.relu(),
        "gelu_new" => x.gelu(),
        _ if super::plain_path() => x.gelu_erf(),
        _ => kernels::gelu::gelu_erf(x),
    }
}

/// Multi-head self-attention (HF: attention.self.{query,key,value}).
#[derive(Debug, Clone)]
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    /// Q|K|V's weight packed for int16 inference, with Q|K|V's bias, made
    /// on first use while that is on (as [`Linear`]'s; never repacked);
    /// None where that kernel does not apply.
    qkv_int16: Arc<OnceLock<Option<(kernels::int16::PackedWeights, Tensor)>>>,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    pub fn new(hidden: usize, heads: usize, vb: VarBuilder) -> Result<SelfAttention> {
        Ok(SelfAttention {
            query: linear(hidden, hidden, vb.pp("query"))?,
            key: linear(hidden, hidden, vb.pp("key"))?,
            value: linear(hidden, hidden, vb.pp("value"))?,
            qkv_int16: Arc::default(),
            heads,
            head_dim: hidden / heads,
        })
    }

    /// `mask_bias`: (batch, 1, 1, seq), 0 where attended, a large negative
    /// where padded (or (batch, 1, seq, seq), a row per query).
    pub fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        if !super::plain_path()
            && let Some(context) = self.packed_forward(x, mask_bias)?
        {
            return Ok(context);
        }
        let (batch, seq, hidden) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            // (batch, seq, hidden) -> (batch, heads, seq, head_dim)
            t.reshape((batch, seq, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        // (batch, heads, seq, seq)
        let scores =
            (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(mask_bias)?;
        let weights = if super::plain_path() {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            kernels::softmax::softmax_last_dim(&scores)?
        };
        // (batch, heads, seq, head_dim) -> (batch, seq, hidden)
        weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, seq, hidden))
    }
}

impl SelfAttention {
    /// Q, K and V as one dense layer of (3 * hidden, hidden) whose rows feed
    /// the fused attention kernel; `None` where the kernels do not apply.
    fn packed_forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Option<Tensor>> {
        // (batch, seq, hidden) -> (batch, seq, 3 * hidden) -> (batch, seq, hidden)
        let qkv = match self.int16_qkv(x)? {
            Some(qkv) => qkv,
            None => {
                let (weight, bias) = self.qkv_weight_and_bias()?;
                let Some(qkv) = kernels::linear::dense(x, &weight, &bias)? else {
                    return Ok(None);
                };
                qkv
            }
        };
        kernels::attention::attention(&qkv, mask_bias, self.heads)
    }

    fn parts(&self) -> [&Linear; 3] {
        [&self.query, &self.key, &self.value]
    }

    /// Q|K|V's weight (3 * hidden, hidden) and bias (3 * hidden), concatenated.
    fn qkv_weight_and_bias(&self) -> Result<(Tensor, Tensor)> {
        Ok((
            Tensor::cat(&self.parts().map(|p| &p.weight), 0)?,
            Tensor::cat(&self.parts().map(|p| &p.bias), 0)?,
        ))
    }

    /// Q|K|V in int16 under the conditions of [`Linear`]'s int16 path: a
    /// quarter of an encoder layer's products, which the f32 path would
    /// leave at half int16's speed; None where that path does not apply.
    fn int16_qkv(&self, x: &Tensor) -> Result<Option<Tensor>> {
        if !int16_applies(x, &self.parts().map(|p| &p.weight)) {
            return Ok(None);
        }
        match packed_once(&self.qkv_int16, || {
            let (weight, bias) = self.qkv_weight_and_bias()?;
            Ok(kernels::int16::PackedWeights::new(&weight)?.map(|w| (w, bias)))
        })? {
            Some((packed, bias)) => kernels::int16::dense(x, packed, bias, false).map(Some),
            None => Ok(None),
        }
    }
}

/// One Transformer layer (HF: attention.self, attention.output, intermediate, output).
#[derive(Debug, Clone)]
pub struct TransformerLayer {
    attention: SelfAttention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    act: String,
}

impl TransformerLayer {
    pub fn new(
        hidden: usize,
        heads: usize,
        intermediate: usize,
        eps: f64,
        act: &str,
        vb: VarBuilder,
    ) -> Result<TransformerLayer> {
        Ok(TransformerLayer {
            attention: SelfAttention::new(hidden, heads, vb.pp("attention.self"))?,
            attention_output: linear(hidden, hidden, vb.pp("attention.output.dense"))?,
            attention_norm: LayerNorm::new(hidden, eps, vb.pp("attention.output.LayerNorm"))?,
            intermediate: linear(hidden, intermediate, vb.pp("intermediate.dense"))?,
            output: linear(intermediate, hidden, vb.pp("output.dense"))?,
            output_norm: LayerNorm::new(hidden, eps, vb.pp("output.LayerNorm"))?,
            act: act.to_string(),
        })
    }

    pub fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let attended = self
            .attention_output
            .forward(&self.attention.forward(x, mask_bias)?)?;
        let x = self.attention_norm.forward(&(attended + x)?)?;
        let inner = self.intermediate.forward_activated(&x, &self.act)?;
        self.output_norm
            .forward(&(self.output.forward(&inner)? + x)?)
    }
}

/// (batch, seq) 1/0 mask -> (batch, 1, 1, seq) additive bias.
pub fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let (batch, seq) = mask.dims2()?;
    let mask = mask.to_dtype(DType::F32)?;
    ((mask - 1.0)? * 1e4)?.reshape((batch, 1, 1, seq))
}

/// Inverted dropout with a mask from `rng`: each element is zeroed with
/// probability `p` and the rest scaled by 1 / (1 - p). The mask comes from a
/// seeded generator, not the device's, so training stays deterministic.
pub fn dropout(x: &Tensor, p: f32, rng: &mut impl rand::Rng) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

/// (seq, seq) additive bias that lets turn i attend to turn j only when
/// j <= i + lookahead: (1, 1, seq, seq), to add to `attention_bias`.
pub fn lookahead_bias(seq: usize, lookahead: usize, device: &Device) -> Result<Tensor> {
    let bias: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..seq).map(move |j| {
                if j > i.saturating_add(lookahead) {
                    -1e4
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(bias, (1, 1, seq, seq), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A layer on the fused kernels against the same layer on the op
    /// chains they replace: states, and the gradient of every weight.
    #[test]
    fn the_fused_kernels_train_as_the_op_chains() {
        let device = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let layer = TransformerLayer::new(32, 4, 64, 1e-12, "gelu", vb).unwrap();
        // Non-trivial norms: the weights start at 1 and 0.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.contains("LayerNorm") {
                let noise = Tensor::randn(0f32, 0.5, var.shape(), &device).unwrap();
                var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
            }
        }
        // Offset inputs, where a one-pass variance loses the most.
        let x = (Tensor::randn(0f32, 1.0, (3, 7, 32), &device).unwrap() + 4.0).unwrap();
        let mask = Tensor::from_vec(
            (0..21).map(|i| u32::from(i % 7 < 3 + i / 7)).collect(),
            (3, 7),
            &device,
        )
        .unwrap();
        let bias = attention_bias(&mask).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (3, 7, 32), &device).unwrap();
        let run = || {
            let states = layer.forward(&x, &bias).unwrap();
            let loss = (&states * &upstream).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let vars = varmap.all_vars();
            let grads: Vec<Tensor> = vars.iter().map(|v| grads.get(v).unwrap().clone()).collect();
            (states, grads)
        };
        let (fused, fused_grads) = run();
        let (plain, plain_grads) = crate::model::on_plain_path(run);
        let difference = |a: &Tensor, b: &Tensor| {
            use crate::model::kernels::testing::{largest_abs, largest_difference};
            largest_difference(a, b).unwrap() / largest_abs(b).unwrap().max(1e-3)
        };
        assert!(difference(&fused, &plain) < 1e-4, "states");
        assert!(
            difference(&fused, &plain) > 0.0,
            "the fused kernels did not run"
        );
        assert_eq!(fused_grads.len(), 16);
        for (f, p) in fused_grads.iter().zip(&plain_grads) {
            assert!(
                difference(f, p) < 1e-3,
                "a gradient differs by {}",
                difference(f, p)
            );
        }
    }

    /// Under `--precision int16` the attention's Q|K|V product runs in
    /// int16 as the other dense layers do: the output moves (by quantising
    /// only, the attention kernel itself is f32), and only a little.
    #[test]
    fn int16_attention_packs_query_key_and_value() {
        use crate::model::kernels::int16::{Precision, Scoped};
        use crate::model::kernels::testing::{largest_abs, largest_difference};
        let device = Device::Cpu;
        let tensors = ["query", "key", "value"]
            .iter()
            .flat_map(|part| {
                let weight = Tensor::randn(0f32, 0.2, (32, 32), &device).unwrap();
                let bias = Tensor::randn(0f32, 0.2, 32, &device).unwrap();
                [
                    (format!("{part}.weight"), weight),
                    (format!("{part}.bias"), bias),
                ]
            })
            .collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let attention = SelfAttention::new(32, 4, vb).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 7, 32), &device).unwrap();
        let mask = Tensor::from_vec(
            (0..21).map(|i| u32::from(i % 7 < 5)).collect(),
            (3, 7),
            &device,
        );
        let bias = attention_bias(&mask.unwrap()).unwrap();
        let f32_states = attention.forward(&x, &bias).unwrap();
        let int16 = Scoped::enable(Precision::Int16);
        if int16.precision() != Precision::Int16 {
            eprintln!("no AVX2 here: the int16 path cannot run");
            return;
        }
        let int16_states = attention.forward(&x, &bias).unwrap();
        drop(int16);
        let difference = largest_difference(&int16_states, &f32_states).unwrap();
        let scale = largest_abs(&f32_states).unwrap();
        assert!(difference > 0.0, "Q|K|V did not run in int16");
        assert!(
            difference < 1e-3 * scale,
            "int16 moved the states by {difference}"
        );
    }

    #[test]
    fn dropout_zeroes_a_share_and_keeps_the_mean() {
        let x = Tensor::ones((64, 128), DType::F32, &Device::Cpu).unwrap();
        let drop = |seed| {
            dropout(&x, 0.25, &mut ChaCha8Rng::seed_from_u64(seed))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let values = drop(7);
        let zeros = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((zeros - 0.25).abs() < 0.03, "dropped share {zeros}");
        assert!(
            values
                .iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
        assert_eq!(values, drop(7), "same seed, same mask");
        assert_ne!(values, drop(8));
        let kept = dropout(&x, 0.0, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        assert_eq!(
            kept.sum_all().unwrap().to_scalar::<f32>().unwrap(),
            64.0 * 128.0
        );
    }
}
