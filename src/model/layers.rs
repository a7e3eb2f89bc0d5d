//! Transformer building blocks shared by the turn encoder and the dialogue
//! encoder, named as Hugging Face's modeling_roberta.py names them.
//!
//! LayerNorm and softmax are written with tensor ops that have a backward
//! pass: candle-nn 0.11's fused `LayerNorm::forward`, `ops::layer_norm` and
//! `ops::softmax_last_dim` have none, and every parameter upstream of them
//! would silently stop learning. Where no gradient can flow (no input and no
//! weight records a graph: `label`, the encoding cache, dev evaluation over
//! [`super::inference_view`]) the fused kernels run instead: one pass over
//! the data on every core instead of several single-purpose passes.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

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
    Ok(Linear::new(weight, Some(bias)))
}

/// Whether a gradient can flow through an op on these tensors: one of them
/// is a variable or was computed from one. `LABELGEN_PLAIN_PATH=1` answers
/// yes throughout, so the differentiable ops run where the fused ones would.
pub fn needs_grad(tensors: &[&Tensor]) -> bool {
    super::plain_path() || tensors.iter().any(|t| t.track_op())
}

/// LayerNorm from tensor ops (differentiable), fused where no gradient can
/// flow; HF names: weight, bias.
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
        if !needs_grad(&[x, &self.weight, &self.bias]) {
            return candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            );
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

pub fn activation(x: &Tensor, act: &str) -> Result<Tensor> {
    match act {
        "relu" => x.relu(),
        "gelu_new" => x.gelu(),
        _ if !needs_grad(&[x]) => super::gelu::gelu_erf(x),
        _ => x.gelu_erf(),
    }
}

/// Multi-head self-attention (HF: attention.self.{query,key,value}).
#[derive(Debug, Clone)]
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    pub fn new(hidden: usize, heads: usize, vb: VarBuilder) -> Result<SelfAttention> {
        Ok(SelfAttention {
            query: linear(hidden, hidden, vb.pp("query"))?,
            key: linear(hidden, hidden, vb.pp("key"))?,
            value: linear(hidden, hidden, vb.pp("value"))?,
            heads,
            head_dim: hidden / heads,
        })
    }

    /// `mask_bias`: (batch, 1, 1, seq), 0 where attended, a large negative where padded.
    pub fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
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
        let weights = if needs_grad(&[&scores]) {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?
        };
        // (batch, heads, seq, head_dim) -> (batch, seq, hidden)
        weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, seq, hidden))
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
        let inner = activation(&self.intermediate.forward(&x)?, &self.act)?;
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

    /// The fused kernels (no gradient possible) against the differentiable
    /// ops on the same weights: a layer built from variables takes the
    /// differentiable path, one built from their detached tensors the fused.
    #[test]
    fn the_fused_inference_path_equals_the_differentiable_one() {
        let device = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let trained = TransformerLayer::new(32, 4, 64, 1e-12, "gelu", vb).unwrap();
        // Non-trivial norms: the weights start at 1 and 0.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.contains("LayerNorm") {
                let noise = Tensor::randn(0f32, 0.5, var.shape(), &device).unwrap();
                var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
            }
        }
        let tensors = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
            .collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let fused = TransformerLayer::new(32, 4, 64, 1e-12, "gelu", vb).unwrap();
        // Offset inputs, where a one-pass variance loses the most.
        let x = (Tensor::randn(0f32, 1.0, (3, 7, 32), &device).unwrap() + 4.0).unwrap();
        let mask = Tensor::from_vec(
            (0..21).map(|i| u32::from(i % 7 < 3 + i / 7)).collect(),
            (3, 7),
            &device,
        )
        .unwrap();
        let bias = attention_bias(&mask).unwrap();
        let plain = trained.forward(&x, &bias).unwrap();
        assert!(plain.track_op(), "the variables' layer must keep its graph");
        let fast = fused.forward(&x, &bias).unwrap();
        assert!(!fast.track_op());
        let difference = (plain - fast)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(difference < 1e-4, "largest difference {difference}");
        assert!(difference > 0.0, "the fused kernels did not run");
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
