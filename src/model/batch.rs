//! From turns to tensors: features per turn, dialogue windows, padded batches.

use std::collections::BTreeMap;

use candle_core::{Device, Result, Tensor};

use super::Batch;
use super::config::{CATEGORICAL_COLUMNS, FeatureConfig, NUMERIC_FEATURES};
use crate::data::tables::Turn;

/// One turn, ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnInput {
    pub ids: Vec<u32>,
    pub categorical: [u32; 5],
    pub numeric: [f32; NUMERIC_FEATURES],
    pub audio: Option<Vec<f32>>,
}

/// Up to `max_turns` consecutive turns of one dialogue, with a per-turn
/// pretraining target and (for `train`) per-turn supervision.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub turns: Vec<TurnInput>,
    pub targets: Vec<f32>,
    pub supervision: Vec<Supervision>,
    /// (dialogue, first turn index) the window came from.
    pub origin: (usize, usize),
}

/// One turn's labels for the supervised heads; None is "not annotated".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Supervision {
    /// This turn starts a new goal (never given for turn 0: it always does).
    pub boundary: Option<bool>,
    pub success: Option<bool>,
    pub intent: Option<u32>,
    pub failure_point: Option<u32>,
    /// A BIO tag per token of the turn's input; None past the utterance
    /// (specials and response tokens are never tagged, so never learned).
    pub bio: Option<Vec<Option<u32>>>,
    /// Soft labels from feedback rules, used where the annotation is silent:
    /// P(new goal), P(goal succeeded), P(failure point is not correct).
    pub weak_boundary: Option<f32>,
    pub weak_success: Option<f32>,
    pub weak_defect: Option<f32>,
    /// The user turn repeats or corrects the previous one (a retry, which
    /// usually continues its goal); used to calibrate goal boundaries.
    pub rephrase: bool,
}

impl Window {
    pub fn max_tokens(&self) -> usize {
        self.turns.iter().map(|t| t.ids.len()).max().unwrap_or(0)
    }
}

/// The values of each categorical column, most frequent first (index 0 of
/// the embedding is null or unseen).
pub fn feature_vocabulary<'a>(
    turns: impl Iterator<Item = &'a Turn>,
) -> BTreeMap<String, Vec<String>> {
    let mut counts: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for turn in turns {
        for (column, value) in CATEGORICAL_COLUMNS.iter().zip(categorical_values(turn)) {
            if let Some(value) = value {
                *counts
                    .entry(column)
                    .or_default()
                    .entry(value.to_string())
                    .or_default() += 1;
            }
        }
    }
    CATEGORICAL_COLUMNS
        .iter()
        .map(|column| {
            let mut values: Vec<(String, usize)> = counts
                .remove(column)
                .unwrap_or_default()
                .into_iter()
                .collect();
            values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (
                column.to_string(),
                values.into_iter().map(|(v, _)| v).collect(),
            )
        })
        .collect()
}

fn categorical_values(turn: &Turn) -> [Option<&str>; 5] {
    [
        turn.device_type.as_deref(),
        turn.device_state.as_deref(),
        turn.domain.as_deref(),
        turn.nlu_intent.as_deref(),
        turn.dialogue_status.as_deref(),
    ]
}

/// A turn's features: categorical indices and numeric values.
pub fn turn_input(turn: &Turn, ids: Vec<u32>, features: &FeatureConfig) -> TurnInput {
    let mut categorical = [0u32; 5];
    for (i, (column, value)) in CATEGORICAL_COLUMNS
        .iter()
        .zip(categorical_values(turn))
        .enumerate()
    {
        let known = features.categorical.get(*column);
        categorical[i] = value
            .and_then(|v| known.and_then(|k| k.iter().position(|x| x == v)))
            .map_or(0, |p| p as u32 + 1);
    }
    let words = |s: &str| (s.split_whitespace().count() as f32).ln_1p() / 3.0;
    let present = |v: Option<f32>| (v.unwrap_or(0.0), f32::from(u8::from(v.is_some())));
    let (asr, asr_present) = present(turn.asr_confidence);
    let (nlu, nlu_present) = present(turn.nlu_confidence);
    let numeric = [
        asr,
        asr_present,
        nlu,
        nlu_present,
        words(&turn.user_utterance),
        words(&turn.system_response),
        f32::from(u8::from(turn.barge_in.unwrap_or(false))),
        turn.explicit_feedback.unwrap_or(0) as f32,
    ];
    let audio = (features.audio_dim > 0).then(|| {
        let mut v = turn.audio_embedding.clone().unwrap_or_default();
        v.resize(features.audio_dim, 0.0);
        v
    });
    TurnInput {
        ids,
        categorical,
        numeric,
        audio,
    }
}

/// Cuts a dialogue of `n` turns into windows of at most `max_turns`; long
/// dialogues overlap by half a window so every turn sees context both ways.
pub fn window_ranges(n: usize, max_turns: usize) -> Vec<std::ops::Range<usize>> {
    if n <= max_turns {
        return std::iter::once(0..n).collect();
    }
    let stride = (max_turns / 2).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + max_turns).min(n);
        out.push(start..end);
        if end == n {
            return out;
        }
        start += stride;
    }
}

/// Groups windows into batches of similar token length, so padding is small.
pub fn bucketed_batches(windows: &[Window], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| (windows[i].max_tokens(), windows[i].turns.len(), i));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Pads a set of windows into one [`Batch`], with the targets as (B, T).
pub fn make_batch(windows: &[&Window], pad_id: u32, device: &Device) -> Result<(Batch, Tensor)> {
    let turns_per_window = windows.iter().map(|w| w.turns.len()).max().unwrap_or(1);
    let max_tokens = windows
        .iter()
        .map(|w| w.max_tokens())
        .max()
        .unwrap_or(1)
        .max(1);
    let real: Vec<&TurnInput> = windows.iter().flat_map(|w| &w.turns).collect();
    let n = real.len();
    let mut ids = Vec::with_capacity(n * max_tokens);
    let mut mask = Vec::with_capacity(n * max_tokens);
    for turn in &real {
        ids.extend(
            turn.ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(pad_id, max_tokens - turn.ids.len())),
        );
        mask.extend((0..max_tokens).map(|i| u32::from(i < turn.ids.len())));
    }
    let categorical: Vec<u32> = real.iter().flat_map(|t| t.categorical).collect();
    let numeric: Vec<f32> = real.iter().flat_map(|t| t.numeric).collect();
    let audio_dim = real
        .first()
        .and_then(|t| t.audio.as_ref())
        .map_or(0, Vec::len);
    let audio = if audio_dim > 0 {
        let flat: Vec<f32> = real
            .iter()
            .flat_map(|t| t.audio.clone().unwrap_or_else(|| vec![0.0; audio_dim]))
            .collect();
        Some(Tensor::from_vec(flat, (n, audio_dim), device)?)
    } else {
        None
    };
    let mut turn_slots = Vec::with_capacity(n);
    let mut slot_index = Vec::with_capacity(windows.len() * turns_per_window);
    let mut turn_mask = Vec::with_capacity(windows.len() * turns_per_window);
    let mut targets = Vec::with_capacity(windows.len() * turns_per_window);
    let mut next = 0u32;
    for w in windows {
        for t in 0..turns_per_window {
            let real_turn = t < w.turns.len();
            if real_turn {
                turn_slots.push(slot_index.len() as u32);
            }
            slot_index.push(if real_turn { next + t as u32 } else { n as u32 });
            turn_mask.push(u32::from(real_turn));
            targets.push(if real_turn { w.targets[t] } else { 0.0 });
        }
        next += w.turns.len() as u32;
    }
    let b = windows.len();
    let batch = Batch {
        input_ids: Tensor::from_vec(ids, (n, max_tokens), device)?,
        attention_mask: Tensor::from_vec(mask, (n, max_tokens), device)?,
        categorical: Tensor::from_vec(categorical, (n, 5), device)?,
        numeric: Tensor::from_vec(numeric, (n, NUMERIC_FEATURES), device)?,
        audio,
        slot_index: Tensor::from_vec(slot_index, b * turns_per_window, device)?,
        turn_mask: Tensor::from_vec(turn_mask, (b, turns_per_window), device)?,
        turn_slots: Tensor::from_vec(turn_slots, n, device)?,
    };
    Ok((
        batch,
        Tensor::from_vec(targets, (b, turns_per_window), device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_turn_and_overlap() {
        assert_eq!(window_ranges(3, 8), vec![0..3]);
        assert_eq!(window_ranges(10, 4), vec![0..4, 2..6, 4..8, 6..10]);
    }
}
