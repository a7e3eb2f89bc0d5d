//! The supervised heads `train` adds on top of the pretrained model: goal
//! boundary, goal success, intent and failure point per turn (from the
//! dialogue states), and BIO slot tags per token (from the token states plus
//! the turn's dialogue state, so context can decide a slot's type).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::LabelSets;
use super::layers::{TransformerLayer, attention_bias, linear};

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

#[derive(Debug, Clone)]
pub struct SupervisedHeads {
    boundary: Linear,
    success: Linear,
    intent: Linear,
    failure_point: Linear,
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
            slots: SlotTagger::new(
                token_hidden,
                dialogue_hidden,
                dialogue_heads,
                labels.bio_tags(),
                vb.pp("slots"),
            )?,
        })
    }

    /// From dialogue states (B, T, D).
    pub fn turn_logits(&self, states: &Tensor) -> Result<TurnLogits> {
        Ok(TurnLogits {
            boundary: self.boundary.forward(states)?.squeeze(D::Minus1)?,
            success: self.success.forward(states)?.squeeze(D::Minus1)?,
            intent: self.intent.forward(states)?,
            failure_point: self.failure_point.forward(states)?,
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
