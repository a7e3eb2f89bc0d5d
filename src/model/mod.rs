//! The labelling model: a RoBERTa turn encoder under a bidirectional dialogue
//! Transformer, with runtime features joined to each turn.
//!
//! Shapes: a batch holds B dialogue windows of up to T turns; the N real
//! turns of the batch are encoded together as (N, L) token ids.

pub mod batch;
pub mod buckets;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod heads;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod roberta;
pub mod tokenizer;
pub mod training;

pub use kernels::int16::Precision;

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use config::{CATEGORICAL_COLUMNS, ModelConfig, NUMERIC_FEATURES, TurnPooling};
use layers::{LayerNorm, Linear, TransformerLayer, attention_bias, linear, lookahead_bias};
use roberta::{LmHead, Roberta};

/// One batch, as tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (N, L) token ids of the real turns, utterance and response as a pair.
    pub input_ids: Tensor,
    /// (N, L) 1 for tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// (N, 5) indices into the categorical vocabularies (0: null or unseen).
    pub categorical: Tensor,
    /// (N, 8) numeric features.
    pub numeric: Tensor,
    /// (N, audio_dim) when the model uses audio.
    pub audio: Option<Tensor>,
    /// (B * T) index of each turn slot into the N real turns; N for padding.
    pub slot_index: Tensor,
    /// (B, T) 1 for real turns, 0 for padding.
    pub turn_mask: Tensor,
    /// (N) the slot (in B * T) of each real turn.
    pub turn_slots: Tensor,
}

/// Mean over the real tokens: (N, L, X) with an (N, L) mask -> (N, X).
fn masked_mean(x: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    // (N, L) -> (N, L, 1)
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    x.broadcast_mul(&mask)?
        .sum(1)?
        .broadcast_div(&mask.sum(1)?.clamp(1.0, f64::MAX)?)
}

#[derive(Debug, Clone)]
pub struct DialogueModel {
    pub config: ModelConfig,
    pub roberta: Roberta,
    pub lm_head: LmHead,
    categorical: Vec<Embedding>,
    numeric: Linear,
    audio: Option<Linear>,
    turn_projection: Linear,
    turn_norm: LayerNorm,
    turn_positions: Embedding,
    dialogue_layers: Vec<TransformerLayer>,
    swap_head: Linear,
    /// Present once `train` has added the label sets.
    pub heads: Option<heads::SupervisedHeads>,
}

const NUMERIC_SIZE: usize = 32;

impl DialogueModel {
    /// Builds the model; weights come from `vb` (a VarMap for training, a
    /// safetensors file for inference). HF names under `roberta.` and `lm_head.`.
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<DialogueModel> {
        let e = &config.encoder;
        let f = &config.features;
        let d = &config.dialogue;
        let categorical = CATEGORICAL_COLUMNS
            .iter()
            .map(|column| {
                let values = f.categorical.get(*column).map_or(0, Vec::len) + 1;
                let table = vb.pp("features").pp(column).get_with_hints(
                    (values, f.embedding_size),
                    "weight",
                    Init::Randn {
                        mean: 0.0,
                        stdev: 0.02,
                    },
                )?;
                Ok(Embedding::new(table, f.embedding_size))
            })
            .collect::<Result<Vec<_>>>()?;
        let joined = e.hidden_size
            + CATEGORICAL_COLUMNS.len() * f.embedding_size
            + NUMERIC_SIZE
            + if f.audio_dim > 0 { NUMERIC_SIZE } else { 0 };
        let turn_positions = vb.pp("dialogue.turn_positions").get_with_hints(
            (d.max_turns, d.hidden_size),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        Ok(DialogueModel {
            config: config.clone(),
            roberta: Roberta::new(e, vb.pp("roberta"))?,
            lm_head: LmHead::new(e, vb.pp("lm_head"))?,
            categorical,
            numeric: linear(NUMERIC_FEATURES, NUMERIC_SIZE, vb.pp("features.numeric"))?,
            audio: if f.audio_dim > 0 {
                Some(linear(f.audio_dim, NUMERIC_SIZE, vb.pp("features.audio"))?)
            } else {
                None
            },
            turn_projection: linear(joined, d.hidden_size, vb.pp("dialogue.turn_projection"))?,
            turn_norm: LayerNorm::new(d.hidden_size, 1e-5, vb.pp("dialogue.turn_norm"))?,
            turn_positions: Embedding::new(turn_positions, d.hidden_size),
            dialogue_layers: (0..d.num_layers)
                .map(|i| {
                    TransformerLayer::new(
                        d.hidden_size,
                        d.num_heads,
                        d.intermediate_size,
                        1e-5,
                        "gelu",
                        vb.pp(format!("dialogue.layer.{i}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?,
            swap_head: linear(d.hidden_size, 1, vb.pp("heads.swap"))?,
            heads: match &config.labels {
                Some(labels) => Some(heads::SupervisedHeads::new(
                    e.hidden_size,
                    d.hidden_size,
                    d.num_heads,
                    labels,
                    vb.pp("heads"),
                )?),
                None => None,
            },
        })
    }

    /// Token states of every real turn: (N, L, H).
    pub fn encode_tokens(&self, batch: &Batch) -> Result<Tensor> {
        self.roberta.forward_lower_grouped(
            &batch.input_ids,
            &batch.attention_mask,
            self.roberta.num_layers(),
        )
    }

    /// Turn vectors in dialogue context: (B, T, D), from token states (N, L, H).
    pub fn dialogue_states(&self, batch: &Batch, token_states: &Tensor) -> Result<Tensor> {
        self.dialogue_states_t(batch, token_states, None)
    }

    /// `dialogue_states` in training: with `dropout` (probability, seed),
    /// the turn vectors entering the dialogue Transformer and the states it
    /// returns are each dropped out with that probability.
    pub fn dialogue_states_t(
        &self,
        batch: &Batch,
        token_states: &Tensor,
        dropout: Option<(f32, u64)>,
    ) -> Result<Tensor> {
        let mut rng = dropout.map(|(p, seed)| (p, ChaCha8Rng::seed_from_u64(seed)));
        let mut drop = |x: Tensor| match rng.as_mut() {
            Some((p, rng)) => layers::dropout(&x, *p, rng),
            None => Ok(x),
        };
        let (batch_size, turns) = batch.turn_mask.dims2()?;
        // (N, L, H) -> (N, H)
        let pooled = match self.config.turn_pooling {
            TurnPooling::First => token_states.narrow(1, 0, 1)?.squeeze(1)?,
            TurnPooling::Mean => masked_mean(token_states, &batch.attention_mask)?,
        };
        let n = pooled.dim(0)?;
        let mut parts = vec![pooled];
        if !self.config.context.runtime_features() {
            // The text-only baselines: the feature slots of the projection get zeros.
            let features = self.turn_projection.weight().dim(1)? - parts[0].dim(1)?;
            parts.push(Tensor::zeros((n, features), DType::F32, parts[0].device())?);
        } else {
            for (i, table) in self.categorical.iter().enumerate() {
                parts.push(table.forward(&batch.categorical.narrow(1, i, 1)?.squeeze(1)?)?);
            }
            parts.push(self.numeric.forward(&batch.numeric)?);
            if let (Some(layer), Some(audio)) = (&self.audio, &batch.audio) {
                parts.push(layer.forward(audio)?);
            }
        }
        // (N, joined) -> (N, D)
        let projected = self
            .turn_projection
            .forward_activated(&Tensor::cat(&parts, 1)?, "gelu")?;
        let turn = drop(self.turn_norm.forward(&projected)?)?;
        let hidden = turn.dim(1)?;
        // Padding slots point at an appended zero row: (N + 1, D) -> (B, T, D)
        let padded = Tensor::cat(
            &[
                &turn,
                &Tensor::zeros((1, hidden), DType::F32, turn.device())?,
            ],
            0,
        )?;
        let x = padded
            .index_select(&batch.slot_index, 0)?
            .reshape((batch_size, turns, hidden))?;
        if self.config.context.contextless() {
            return Ok(x);
        }
        let positions = Tensor::arange(0u32, turns as u32, x.device())?;
        let mut x = x.broadcast_add(&self.turn_positions.forward(&positions)?)?;
        let mut bias = attention_bias(&batch.turn_mask)?;
        if let Some(lookahead) = self.config.dialogue.lookahead {
            // (B, 1, 1, T) + (1, 1, T, T) -> (B, 1, T, T)
            bias = bias.broadcast_add(&lookahead_bias(turns, lookahead, x.device())?)?;
        }
        for layer in &self.dialogue_layers {
            x = layer.forward(&x, &bias)?;
        }
        drop(x)
    }

    /// Swapped-response logits per turn slot: (B, T).
    pub fn swap_logits(&self, dialogue_states: &Tensor) -> Result<Tensor> {
        self.swap_head.forward(dialogue_states)?.squeeze(D::Minus1)
    }

    /// Masked-token logits at the given flat positions of (N, L): (P, vocab).
    pub fn mlm_logits(&self, token_states: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (n, l, h) = token_states.dims3()?;
        let picked = token_states
            .reshape((n * l, h))?
            .index_select(positions, 0)?;
        self.lm_head
            .forward(&picked, self.roberta.embeddings.word_embeddings())
    }
}

/// The model over the weights of `varmap` as plain tensors: no op on it
/// records a graph, so the fused inference kernels run (layers.rs). The
/// tensors share the variables' storage, and training updates variables in
/// place, so the view always holds the current weights.
pub fn inference_view(config: &ModelConfig, varmap: &candle_nn::VarMap) -> Result<DialogueModel> {
    let tensors = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("variable map poisoned".into()))?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    DialogueModel::new(
        config,
        VarBuilder::from_tensors(tensors, DType::F32, &device()),
    )
}

/// `LABELGEN_PLAIN_PATH=1` turns off what only saves time (length groups,
/// the fused inference kernels, label's encoding cache): the plain path that
/// tests and benchmarks compare the fast one with.
pub fn plain_path() -> bool {
    #[cfg(test)]
    if FORCE_PLAIN_PATH.with(std::cell::Cell::get) {
        return true;
    }
    static PLAIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PLAIN.get_or_init(|| std::env::var_os("LABELGEN_PLAIN_PATH").is_some_and(|v| v == "1"))
}

#[cfg(test)]
thread_local! {
    static FORCE_PLAIN_PATH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on the plain path on this thread (tests comparing the paths).
#[cfg(test)]
pub(crate) fn on_plain_path<R>(f: impl FnOnce() -> R) -> R {
    FORCE_PLAIN_PATH.with(|force| force.set(true));
    let result = f();
    FORCE_PLAIN_PATH.with(|force| force.set(false));
    result
}

pub fn device() -> Device {
    Device::Cpu
}
