//! The supervised heads `train` adds on top of the pretrained model: goal
//! boundary, goal success, intent and failure point per turn (from the
//! dialogue states), and BIO slot tags per token (from the token states plus
//! the turn's dialogue state, so context can decide a slot's type).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::LabelSets;
use super::layers::{Linear, TransformerLayer, attention_bias, linear};

/// BIO tags per token: the token states, narrowed to the dialogue width and
/// joined with the turn's dialogue state, go through one Transformer layer
/// of their own (a tag depends on the neighbouring tokens: where a span
/// starts and ends), then a classifier. The layer is what lets a frozen
/// encoder's states become tags; it costs a fraction of an encoder layer.
#[derive(Debug, Clone)]
pub struct SlotTagger {
    dense: Linear,
    context: Linear,
    layer: TransformerLayer,
    classifier: Linear,
}

impl SlotTagger {
    pub fn new(
        token_hidden: usize,
        hidden: usize,
        heads: usize,
        tags: usize,
        vb: VarBuilder,
    ) -> Result<SlotTagger> {
        Ok(SlotTagger {
            dense: linear(token_hidden, hidden, vb.pp("dense"))?,
            context: linear(hidden, hidden, vb.pp("context"))?,
            layer: TransformerLayer::new(hidden, heads, hidden * 2, 1e-5, "gelu", vb.pp("layer"))?,
            classifier: linear(hidden, tags, vb.pp("classifier"))?,
        })
    }

    /// (N, L, H) token states, (N, L) mask, (N, D) turn states -> (N, L, tags)
    pub fn forward(
        &self,
        token_states: &Tensor,
        attention_mask: &Tensor,
        turn_states: &Tensor,
    ) -> Result<Tensor> {
        // (N, D) -> (N, 1, D), added to every token of the turn
        let context = self.context.forward(turn_states)?.unsqueeze(1)?;
        // (N, L, H) -> (N, L, D)
        let x = self.dense.forward(token_states)?.broadcast_add(&context)?;
        let x = self.layer.forward(&x, &attention_bias(attention_mask)?)?;
        self.classifier.forward(&x)
    }
}

/// Each turn's next turn's state, zero where there is none (the last
/// turn, padding): (B, T, D) -> (B, T, D).
fn next_turn_states(states: &Tensor, turn_mask: &Tensor) -> Result<Tensor> {
    let (batch, turns, hidden) = states.dims3()?;
    if turns < 2 {
        return states.zeros_like();
    }
    let zero = Tensor::zeros((batch, 1, hidden), states.dtype(), states.device())?;
    // Turn t's slot holds state t + 1; the mask's shift drops padding slots.
    let shifted = Tensor::cat(&[&states.narrow(1, 1, turns - 1)?, &zero], 1)?;
    let mask = Tensor::cat(
        &[
            &turn_mask.narrow(1, 1, turns - 1)?,
            &Tensor::zeros((batch, 1), turn_mask.dtype(), turn_mask.device())?,
        ],
        1,
    )?
    .to_dtype(states.dtype())?;
    // (B, T) -> (B, T, 1)
    shifted.broadcast_mul(&mask.unsqueeze(2)?)
}

#[derive(Debug, Clone)]
pub struct SupervisedHeads {
    boundary: Linear,
    success: Linear,
    intent: Linear,
    failure_point: Linear,
    /// Reads the next turn's state into the failure-point logits
    /// (`LabelSets::failure_point_reads_next_turn`).
    failure_point_next: Option<Linear>,
    slots: SlotTagger,
}

/// Per-turn logits: boundary and success (B, T); intent (B, T, I); failure point (B, T, F).
pub struct TurnLogits {
    pub boundary: Tensor,
    pub success: Tensor,
    pub intent: Tensor,
    pub failure_point: Tensor,
}

impl SupervisedHeads {
    pub fn new(
        token_hidden: usize,
        dialogue_hidden: usize,
        dialogue_heads: usize,
        labels: &LabelSets,
        vb: VarBuilder,
    ) -> Result<SupervisedHeads> {
        Ok(SupervisedHeads {
            boundary: linear(dialogue_hidden, 1, vb.pp("goal_boundary"))?,
            success: linear(dialogue_hidden, 1, vb.pp("goal_success"))?,
            intent: linear(dialogue_hidden, labels.intents.len(), vb.pp("intent"))?,
            failure_point: linear(
                dialogue_hidden,
                labels.failure_points.len(),
                vb.pp("failure_point"),
            )?,
            failure_point_next: if labels.failure_point_reads_next_turn {
                Some(linear(
                    dialogue_hidden,
                    labels.failure_points.len(),
                    vb.pp("failure_point_next"),
                )?)
            } else {
                None
            },
            slots: SlotTagger::new(
                token_hidden,
                dialogue_hidden,
                dialogue_heads,
                labels.bio_tags(),
                vb.pp("slots"),
            )?,
        })
    }

    /// From dialogue states (B, T, D) and the (B, T) turn mask.
    pub fn turn_logits(&self, states: &Tensor, turn_mask: &Tensor) -> Result<TurnLogits> {
        let mut failure_point = self.failure_point.forward(states)?;
        if let Some(next) = &self.failure_point_next {
            failure_point =
                (failure_point + next.forward(&next_turn_states(states, turn_mask)?)?)?;
        }
        Ok(TurnLogits {
            boundary: self.boundary.forward(states)?.squeeze(D::Minus1)?,
            success: self.success.forward(states)?.squeeze(D::Minus1)?,
            intent: self.intent.forward(states)?,
            failure_point,
        })
    }

    /// BIO logits (N, L, tags) from token states (N, L, H), their (N, L)
    /// mask and each real turn's dialogue state (N, D).
    pub fn slot_logits(
        &self,
        token_states: &Tensor,
        attention_mask: &Tensor,
        turn_states: &Tensor,
    ) -> Result<Tensor> {
        self.slots
            .forward(token_states, attention_mask, turn_states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn a_turn_reads_its_next_real_turn_and_the_last_reads_zeros() {
        // Two dialogues of three slots: the second has two real turns.
        let states = Tensor::arange(1f32, 7.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 1))
            .unwrap();
        let mask = Tensor::new(&[[1f32, 1.0, 1.0], [1.0, 1.0, 0.0]], &Device::Cpu).unwrap();
        let next: Vec<Vec<Vec<f32>>> = next_turn_states(&states, &mask).unwrap().to_vec3().unwrap();
        assert_eq!(
            next,
            [[[2.0], [3.0], [0.0]], [[5.0], [0.0], [0.0]]],
            "the padding slot's state must not reach the last real turn"
        );
        let single = Tensor::ones((1, 1, 4), DType::F32, &Device::Cpu).unwrap();
        let zeros = next_turn_states(
            &single,
            &Tensor::ones((1, 1), DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        assert_eq!(zeros.to_vec3::<f32>().unwrap(), [[[0.0; 4]]]);
    }

    #[test]
    fn the_next_turn_weights_train() {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut labels = LabelSets::new(
            vec!["a".into()],
            vec![],
            vec!["correct".into(), "defect".into()],
        );
        labels.failure_point_reads_next_turn = true;
        let heads = SupervisedHeads::new(8, 8, 2, &labels, vb).unwrap();
        let states = Tensor::randn(0f32, 1.0, (2, 3, 8), &Device::Cpu).unwrap();
        let mask = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
        let logits = heads.turn_logits(&states, &mask).unwrap();
        let loss = logits.failure_point.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        for name in ["failure_point_next.weight", "failure_point_next.bias"] {
            let grad = grads.get(data[name].as_tensor()).expect(name);
            let norm: f32 = grad.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(norm > 0.0, "{name} gets no gradient");
        }
    }
}
