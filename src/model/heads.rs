//! The supervised heads `train` adds on top of the pretrained model: goal
//! boundary, goal success, intent and failure point per turn (from the
//! dialogue states), and BIO slot tags per token (from the token states plus
//! the turn's dialogue state, so context can decide a slot's type).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::LabelSets;
use super::layers::linear;

#[derive(Debug, Clone)]
pub struct SupervisedHeads {
    boundary: Linear,
    success: Linear,
    intent: Linear,
    failure_point: Linear,
    slot_context: Linear,
    slots: Linear,
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
            slot_context: linear(dialogue_hidden, token_hidden, vb.pp("slot_context"))?,
            slots: linear(token_hidden, labels.bio_tags(), vb.pp("slots"))?,
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

    /// BIO logits (N, L, tags) from token states (N, L, H) and each real
    /// turn's dialogue state (N, D).
    pub fn slot_logits(&self, token_states: &Tensor, turn_states: &Tensor) -> Result<Tensor> {
        // (N, D) -> (N, 1, H), added to every token of the turn
        let context = self.slot_context.forward(turn_states)?.unsqueeze(1)?;
        self.slots
            .forward(&token_states.broadcast_add(&context)?.gelu_erf()?)
    }
}
