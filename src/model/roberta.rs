//! The turn encoder: RoBERTa (or BERT), weights named as Hugging Face names
//! them: embeddings.*, encoder.layer.N.*, lm_head.* (RoBERTa's MLM head).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};

use super::buckets::{GROUP_COST_TOKENS, LengthGroups};
use super::config::EncoderConfig;
use super::layers::{LayerNorm, Linear, TransformerLayer, attention_bias, linear};
use super::plain_path;

#[derive(Debug, Clone)]
pub struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    position_offset: usize,
}

fn embedding(count: usize, size: usize, vb: VarBuilder) -> Result<Embedding> {
    let table = vb.get_with_hints(
        (count, size),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )?;
    Ok(Embedding::new(table, size))
}

impl Embeddings {
    pub fn new(config: &EncoderConfig, vb: VarBuilder) -> Result<Embeddings> {
        let h = config.hidden_size;
        Ok(Embeddings {
            word_embeddings: embedding(config.vocab_size, h, vb.pp("word_embeddings"))?,
            position_embeddings: embedding(
                config.max_position_embeddings,
                h,
                vb.pp("position_embeddings"),
            )?,
            token_type_embeddings: embedding(
                config.type_vocab_size,
                h,
                vb.pp("token_type_embeddings"),
            )?,
            layer_norm: LayerNorm::new(h, config.layer_norm_eps, vb.pp("LayerNorm"))?,
            position_offset: config.position_offset(),
        })
    }

    /// (turns, tokens) ids -> (turns, tokens, hidden)
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (turns, tokens) = input_ids.dims2()?;
        let positions = Tensor::arange(
            self.position_offset as u32,
            (self.position_offset + tokens) as u32,
            input_ids.device(),
        )?
        .unsqueeze(0)?
        .broadcast_as((turns, tokens))?
        .contiguous()?;
        let token_types = Tensor::zeros((turns, tokens), DType::U32, input_ids.device())?;
        let x = self.word_embeddings.forward(input_ids)?;
        let x = (x + self.position_embeddings.forward(&positions)?)?;
        let x = (x + self.token_type_embeddings.forward(&token_types)?)?;
        self.layer_norm.forward(&x)
    }

    pub fn word_embeddings(&self) -> &Tensor {
        self.word_embeddings.embeddings()
    }
}

#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<TransformerLayer>,
}

impl Encoder {
    pub fn new(config: &EncoderConfig, vb: VarBuilder) -> Result<Encoder> {
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                TransformerLayer::new(
                    config.hidden_size,
                    config.num_attention_heads,
                    config.intermediate_size,
                    config.layer_norm_eps,
                    &config.hidden_act,
                    vb.pp(format!("layer.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder { layers })
    }

    /// Runs layers `from..to` (of `0..num_hidden_layers`) on (turns, tokens, hidden) states.
    pub fn forward(
        &self,
        x: &Tensor,
        mask_bias: &Tensor,
        from: usize,
        to: usize,
    ) -> Result<Tensor> {
        self.layers[from.min(to)..to.min(self.layers.len())]
            .iter()
            .try_fold(x.clone(), |x, layer| layer.forward(&x, mask_bias))
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

/// The RoBERTa turn encoder (HF: RobertaModel without the pooler).
#[derive(Debug, Clone)]
pub struct Roberta {
    pub embeddings: Embeddings,
    encoder: Encoder,
}

impl Roberta {
    pub fn new(config: &EncoderConfig, vb: VarBuilder) -> Result<Roberta> {
        Ok(Roberta {
            embeddings: Embeddings::new(config, vb.pp("embeddings"))?,
            encoder: Encoder::new(config, vb.pp("encoder"))?,
        })
    }

    /// (turns, tokens) ids and 1/0 mask -> (turns, tokens, hidden) states
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.forward_lower(input_ids, attention_mask, self.encoder.num_layers())
    }

    /// The embeddings and the first `layers` encoder layers: what `train
    /// --train-top-layers` caches, so that only the layers above train.
    pub fn forward_lower(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        layers: usize,
    ) -> Result<Tensor> {
        let x = self.embeddings.forward(input_ids)?;
        self.encoder
            .forward(&x, &attention_bias(attention_mask)?, 0, layers)
    }

    /// The encoder layers from `from` on, over states of `forward_lower(.., from)`.
    pub fn forward_upper(
        &self,
        states: &Tensor,
        attention_mask: &Tensor,
        from: usize,
    ) -> Result<Tensor> {
        self.encoder.forward(
            states,
            &attention_bias(attention_mask)?,
            from,
            self.encoder.num_layers(),
        )
    }

    /// `forward_lower`, run per group of turns of similar length (buckets.rs):
    /// the same states, without computing the batch's padding.
    pub fn forward_lower_grouped(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        layers: usize,
    ) -> Result<Tensor> {
        by_length(input_ids, attention_mask, |ids, mask| {
            self.forward_lower(ids, mask, layers)
        })
    }

    /// `forward_upper`, run per group of turns of similar length.
    pub fn forward_upper_grouped(
        &self,
        states: &Tensor,
        attention_mask: &Tensor,
        from: usize,
    ) -> Result<Tensor> {
        if from >= self.num_layers() {
            return self.forward_upper(states, attention_mask, from);
        }
        by_length(states, attention_mask, |states, mask| {
            self.forward_upper(states, mask, from)
        })
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.num_layers()
    }
}

/// `encode(input, mask)` per length group of the (N, L, ..) input's turns,
/// put back in batch order; in one call where there is one group (or on the
/// plain path).
fn by_length(
    input: &Tensor,
    attention_mask: &Tensor,
    encode: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let groups = LengthGroups::from_mask(attention_mask, GROUP_COST_TOKENS)?;
    if groups.len() <= 1 || plain_path() {
        return encode(input, attention_mask);
    }
    groups.map(input.dim(1)?, |rows, width| {
        // Contiguous: a strided input would send every Linear down
        // candle's broadcast matmul, several times slower.
        let pick = |t: &Tensor| t.index_select(rows, 0)?.narrow(1, 0, width)?.contiguous();
        encode(&pick(input)?, &pick(attention_mask)?)
    })
}

/// RoBERTa's masked-token head (HF: lm_head.dense, lm_head.layer_norm,
/// lm_head.bias; the decoder shares the word embeddings).
#[derive(Debug, Clone)]
pub struct LmHead {
    dense: Linear,
    layer_norm: LayerNorm,
    bias: Tensor,
}

impl LmHead {
    pub fn new(config: &EncoderConfig, vb: VarBuilder) -> Result<LmHead> {
        Ok(LmHead {
            dense: linear(config.hidden_size, config.hidden_size, vb.pp("dense"))?,
            layer_norm: LayerNorm::new(
                config.hidden_size,
                config.layer_norm_eps,
                vb.pp("layer_norm"),
            )?,
            bias: vb.get_with_hints(config.vocab_size, "bias", Init::Const(0.0))?,
        })
    }

    /// (positions, hidden) states -> (positions, vocab) logits
    pub fn forward(&self, states: &Tensor, word_embeddings: &Tensor) -> Result<Tensor> {
        let x = self
            .layer_norm
            .forward(&self.dense.forward_activated(states, "gelu")?)?;
        x.matmul(&word_embeddings.t()?)?.broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    /// (rows, width) ids and mask for turns of the given lengths.
    fn padded(lengths: &[usize], width: usize) -> Result<(Tensor, Tensor)> {
        let ids: Vec<u32> = lengths
            .iter()
            .enumerate()
            .flat_map(|(r, &n)| {
                (0..width).map(move |t| {
                    if t < n {
                        3 + ((r * 7 + t) % 40) as u32
                    } else {
                        1
                    }
                })
            })
            .collect();
        let mask: Vec<u32> = lengths
            .iter()
            .flat_map(|&n| (0..width).map(move |t| u32::from(t < n)))
            .collect();
        let shape = (lengths.len(), width);
        Ok((
            Tensor::from_vec(ids, shape, &Device::Cpu)?,
            Tensor::from_vec(mask, shape, &Device::Cpu)?,
        ))
    }

    #[test]
    fn length_groups_change_neither_states_nor_gradients() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let roberta = Roberta::new(&EncoderConfig::small(50, 16, 2, 2, 40), vb)?;
        // 300 turns of 1 to 40 tokens: several groups.
        let lengths: Vec<usize> = (0..300).map(|r| 1 + (r * 13) % 40).collect();
        let (ids, mask) = padded(&lengths, 40)?;
        let token_mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let projection = Tensor::arange(0f32, (300 * 40 * 16) as f32, &Device::Cpu)?
            .affine(0.37, 0.0)?
            .sin()?
            .reshape((300, 40, 16))?;
        let results = [false, true].map(|grouped| -> Result<(Tensor, Vec<Tensor>)> {
            let states = match grouped {
                true => roberta.forward_lower_grouped(&ids, &mask, 2)?,
                false => roberta.forward_lower(&ids, &mask, 2)?,
            };
            // Only real tokens count: the plain path's padding states are
            // computed, the grouped path's are zeros.
            let states = states.broadcast_mul(&token_mask)?;
            // A fixed projection of every state, so every weight matters.
            let grads = (&states * &projection)?.sum_all()?.backward()?;
            let vars = varmap.all_vars();
            let grads = vars.iter().map(|v| grads.get(v).unwrap().clone()).collect();
            Ok((states, grads))
        });
        let [(plain, plain_grads), (grouped, grouped_grads)] = results.map(|r| r.unwrap());
        assert!(LengthGroups::from_mask(&mask, GROUP_COST_TOKENS)?.len() > 2);
        let largest = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
        };
        assert!(largest(&plain, &grouped)? < 1e-5);
        for (a, b) in plain_grads.iter().zip(&grouped_grads) {
            // Equal up to the order of float sums (relative 1e-6 seen).
            let scale = a.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(largest(a, b)? <= 1e-4 * scale + 1e-6, "a gradient differs");
        }
        Ok(())
    }
}
