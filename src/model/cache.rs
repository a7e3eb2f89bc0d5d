//! Token states of each distinct turn, computed once. `train
//! --freeze-encoder` keeps them for every epoch (only the features, the
//! dialogue Transformer and the heads train); `label` keeps a chunk's, so a
//! turn repeated in the logs (assistant traffic repeats itself: "stop",
//! "what's the weather") is encoded once.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::batch::Window;
use super::{DialogueModel, device};
use crate::progress::Progress;

/// Token states of each distinct turn (by its token ids): (tokens, H) in
/// `dtype` (f16 halves the memory of a training-long cache), after the
/// embeddings and the first `layers` encoder layers (all of them, except when
/// `train --train-top-layers` trains the layers above).
pub struct EncodingCache {
    states: HashMap<Vec<u32>, Tensor>,
    pub layers: usize,
    pub bytes: usize,
}

impl EncodingCache {
    pub fn build<'a>(
        model: &DialogueModel,
        windows: impl Iterator<Item = &'a Window>,
        pad: u32,
        batch_size: usize,
        layers: usize,
        dtype: DType,
        quiet: bool,
    ) -> anyhow::Result<EncodingCache> {
        let mut distinct: Vec<&Vec<u32>> = windows
            .flat_map(|w| w.turns.iter().map(|t| &t.ids))
            .collect();
        distinct.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
        distinct.dedup();
        let progress = Progress::new(distinct.len() as u64, "turns encoded", quiet);
        let mut states = HashMap::with_capacity(distinct.len());
        let mut bytes = 0;
        for chunk in distinct.chunks(batch_size.max(1)) {
            let width = chunk.iter().map(|ids| ids.len()).max().unwrap_or(1).max(1);
            let mut ids = Vec::with_capacity(chunk.len() * width);
            let mut mask = Vec::with_capacity(chunk.len() * width);
            for turn in chunk {
                ids.extend(
                    turn.iter()
                        .copied()
                        .chain(std::iter::repeat_n(pad, width - turn.len())),
                );
                mask.extend((0..width).map(|i| u32::from(i < turn.len())));
            }
            let ids = Tensor::from_vec(ids, (chunk.len(), width), &device())?;
            let mask = Tensor::from_vec(mask, (chunk.len(), width), &device())?;
            // (n, width, H)
            // Detached: the cached states must not hold the forward graph
            // (every chunk's activations), which grew memory by gigabytes
            // with a MiniLM encoder.
            let encoded = model
                .roberta
                .forward_lower(&ids, &mask, layers)?
                .detach()
                .to_dtype(dtype)?;
            for (i, turn) in chunk.iter().enumerate() {
                // Own, compact storage, so the batch tensor can be freed
                // (`copy` would clone the whole chunk's storage per turn:
                // 128 times the memory).
                let state = encoded
                    .get(i)?
                    .narrow(0, 0, turn.len())?
                    .force_contiguous()?;
                bytes += state.elem_count() * dtype.size_in_bytes();
                states.insert((*turn).clone(), state);
            }
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
        Ok(EncodingCache {
            states,
            layers,
            bytes,
        })
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Token states of the real turns of `windows`, in batch order: (N, L, H),
    /// zeros past each turn's tokens (the heads mask those out).
    pub fn token_states(&self, windows: &[&Window]) -> anyhow::Result<Tensor> {
        let width = windows
            .iter()
            .map(|w| w.max_tokens())
            .max()
            .unwrap_or(1)
            .max(1);
        let turns = windows
            .iter()
            .flat_map(|w| &w.turns)
            .map(|turn| {
                let state = self.states.get(&turn.ids).ok_or_else(|| {
                    anyhow::anyhow!("a turn missing from the encoding cache (internal error)")
                })?;
                Ok(state
                    .to_dtype(DType::F32)?
                    .pad_with_zeros(0, 0, width - turn.ids.len())?)
            })
            .collect::<anyhow::Result<Vec<Tensor>>>()?;
        Ok(Tensor::stack(&turns, 0)?)
    }
}
