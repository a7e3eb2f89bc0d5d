//! Token states of each distinct turn, computed once. `train
//! --freeze-encoder` keeps them for every epoch (only the features, the
//! dialogue Transformer and the heads train); `label` keeps a chunk's, so a
//! turn repeated in the logs (assistant traffic repeats itself: "stop",
//! "what's the weather") is encoded once.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::batch::Window;
use super::kernels::int16;
use super::{DialogueModel, Precision, device};
use crate::progress::Progress;

/// Token states of each distinct turn (by its token ids): (tokens, H) in
/// `dtype` (f16 halves the memory of a training-long cache), after the
/// embeddings and the first `layers` encoder layers (all of them, except when
/// `train --train-top-layers` trains the layers above).
pub struct EncodingCache {
    states: HashMap<Vec<u32>, Tensor>,
    pub layers: usize,
    pub bytes: usize,
    /// The dense layers' arithmetic the states were computed in.
    pub precision: Precision,
    /// Wall seconds the build took (before the first epoch, in none).
    pub seconds: f64,
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
        let started = std::time::Instant::now();
        let mut distinct: Vec<&Vec<u32>> = windows
            .flat_map(|w| w.turns.iter().map(|t| &t.ids))
            .collect();
        distinct.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
        distinct.dedup();
        let progress = Progress::new(distinct.len() as u64, "turns encoded", quiet);
        let precision = if int16::enabled() {
            Precision::Int16
        } else {
            Precision::F32
        };
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
            precision,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The distinct turns of `windows` (a turn can sit in two overlapping
    /// windows of a batch, and "stop" in many dialogues): their token states
    /// (D, L, H) and attention mask (D, L), and for each of the N real turns
    /// in batch order the row of its states (N). The layers above the cache
    /// then run once per distinct turn; `index_select` spreads the result
    /// (and sums the gradients of a repeated turn, as separate rows would).
    pub fn distinct_token_states(
        &self,
        windows: &[&Window],
    ) -> anyhow::Result<(Tensor, Tensor, Tensor)> {
        let width = windows
            .iter()
            .map(|w| w.max_tokens())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut row_of: HashMap<&[u32], u32> = HashMap::new();
        let mut states = Vec::new();
        let mut mask = Vec::new();
        let mut index = Vec::new();
        for turn in windows.iter().flat_map(|w| &w.turns) {
            let next = row_of.len() as u32;
            let row = *row_of.entry(&turn.ids).or_insert(next);
            if row == next {
                states.push(self.padded_state(&turn.ids, width)?);
                mask.extend((0..width).map(|i| u32::from(i < turn.ids.len())));
            }
            index.push(row);
        }
        let distinct = states.len();
        Ok((
            Tensor::stack(&states, 0)?,
            Tensor::from_vec(mask, (distinct, width), &device())?,
            Tensor::new(index, &device())?,
        ))
    }

    /// One turn's cached states in f32, zeros from its end to `width`: (width, H).
    fn padded_state(&self, ids: &[u32], width: usize) -> anyhow::Result<Tensor> {
        let state = self.states.get(ids).ok_or_else(|| {
            anyhow::anyhow!("a turn missing from the encoding cache (internal error)")
        })?;
        Ok(state
            .to_dtype(DType::F32)?
            .pad_with_zeros(0, 0, width - ids.len())?)
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
            .map(|turn| self.padded_state(&turn.ids, width))
            .collect::<anyhow::Result<Vec<Tensor>>>()?;
        Ok(Tensor::stack(&turns, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::batch::TurnInput;

    fn turn(ids: &[u32]) -> TurnInput {
        TurnInput {
            ids: ids.to_vec(),
            categorical: [0; 5],
            numeric: Default::default(),
            audio: None,
        }
    }

    #[test]
    fn distinct_states_spread_back_are_the_batch_states() -> anyhow::Result<()> {
        let (a, b, c) = (vec![5u32, 6, 7], vec![8u32], vec![9u32, 10]);
        let states = [&a, &b, &c]
            .iter()
            .enumerate()
            .map(|(k, ids)| {
                let values: Vec<f32> = (0..ids.len() * 2).map(|v| (10 * k + v) as f32).collect();
                Ok((
                    (*ids).clone(),
                    Tensor::from_vec(values, (ids.len(), 2), &device())?,
                ))
            })
            .collect::<anyhow::Result<HashMap<_, _>>>()?;
        let cache = EncodingCache {
            states,
            layers: 1,
            bytes: 0,
            precision: Precision::F32,
            seconds: 0.0,
        };
        // Two windows sharing turn b (overlapping windows of one dialogue), c twice.
        let first = Window {
            turns: vec![turn(&a), turn(&b), turn(&c)],
            ..Window::default()
        };
        let second = Window {
            turns: vec![turn(&b), turn(&c)],
            ..Window::default()
        };
        let windows = [&first, &second];
        let (distinct, mask, rows) = cache.distinct_token_states(&windows)?;
        assert_eq!(distinct.dims(), &[3, 3, 2]);
        assert_eq!(rows.to_vec1::<u32>()?, vec![0, 1, 2, 1, 2]);
        assert_eq!(
            mask.to_vec2::<u32>()?,
            vec![vec![1, 1, 1], vec![1, 0, 0], vec![1, 1, 0]]
        );
        let spread = distinct.index_select(&rows, 0)?;
        let batch = cache.token_states(&windows)?;
        assert_eq!(spread.to_vec3::<f32>()?, batch.to_vec3::<f32>()?);
        Ok(())
    }
}
