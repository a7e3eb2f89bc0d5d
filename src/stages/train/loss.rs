//! The supervised loss of the five heads on a batch: targets gathered from
//! the windows' supervision, task-weighted annotated and weak terms, and
//! the dev loss and accuracy after each epoch.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Tensor};

use super::TaskWeights;
use super::raters::RaterTargets;
use crate::model::batch::{Supervision, Window, bucketed_batches, make_batch};
use crate::model::cache::EncodingCache;
use crate::model::loss::{masked_bce, masked_cross_entropy, masked_soft_cross_entropy};
use crate::model::{Batch, DialogueModel, device, plain_path};

/// (right, total) per head, for dev accuracy.
type HeadAccuracy = BTreeMap<&'static str, (u64, u64)>;

/// What the loss needs besides the batch.
pub(super) struct LossSettings {
    /// (failure classes) weight per class, for imbalance.
    pub(super) failure_weights: Tensor,
    pub(super) task_weights: TaskWeights,
    pub(super) weak_weight: f64,
    /// Index of `correct` among the failure points.
    pub(super) correct: usize,
    /// Token states of every turn, when the encoder is frozen.
    pub(super) cache: Option<EncodingCache>,
    /// The raters' soft targets (`--annotator-policy soft|all`); empty otherwise.
    pub(super) rater_targets: RaterTable,
}

/// Soft targets per dialogue (its index, a window's `origin.0`), per turn
/// of the dialogue in order; None where no rater labels the turn.
pub(super) type RaterTable = HashMap<usize, Vec<Option<RaterTargets>>>;

/// The soft targets of the turn at `k` in `window`, if any.
fn soft_targets<'a>(table: &'a RaterTable, window: &Window, k: usize) -> Option<&'a RaterTargets> {
    table
        .get(&window.origin.0)?
        .get(window.origin.1 + k)?
        .as_ref()
}

impl LossSettings {
    pub(super) fn token_states(
        &self,
        model: &DialogueModel,
        batch: &Batch,
        windows: &[&Window],
    ) -> anyhow::Result<Tensor> {
        match &self.cache {
            // The frozen encoder: its cached states as they are (and the
            // plain path: every turn through the layers above, ungrouped).
            Some(cache) if cache.layers == model.roberta.num_layers() || plain_path() => {
                Ok(model.roberta.forward_upper(
                    &cache.token_states(windows)?,
                    &batch.attention_mask,
                    cache.layers,
                )?)
            }
            // The cached lower layers, then the trained layers above them,
            // once per distinct turn of the batch.
            Some(cache) => {
                let (states, mask, rows) = cache.distinct_token_states(windows)?;
                let upper = model
                    .roberta
                    .forward_upper_grouped(&states, &mask, cache.layers)?;
                // (D, L, H) -> (N, L, H)
                Ok(upper.index_select(&rows, 0)?)
            }
            None => Ok(model.encode_tokens(batch)?),
        }
    }
}

/// The "defect" logit of failure-point logits: log P(not correct) - log P(correct).
/// (M, C) -> (M)
fn defect_logits(failure_logits: &Tensor, correct: usize) -> candle_core::Result<Tensor> {
    let classes = failure_logits.dim(1)? as u32;
    let correct_logit = failure_logits.narrow(1, correct, 1)?;
    let other_classes: Vec<u32> = (0..classes).filter(|&c| c as usize != correct).collect();
    let others = failure_logits
        .index_select(&Tensor::new(other_classes, failure_logits.device())?, 1)?
        .broadcast_sub(&correct_logit)?;
    // log-sum-exp, shifted by the (constant) row maximum for stability.
    let shift = others.max_keepdim(1)?.detach();
    (others.broadcast_sub(&shift)?.exp()?.sum_keepdim(1)?.log()? + shift)?.squeeze(1)
}

/// A batch's targets and masks, laid out as the heads' logits are: per turn
/// slot (B * T), and per token of the real turns (N * L) for slot tags.
pub(super) struct Targets {
    pub(super) boundary: (Vec<f32>, Vec<f32>),
    pub(super) success: (Vec<f32>, Vec<f32>),
    pub(super) intent: (Vec<u32>, Vec<f32>),
    pub(super) failure: (Vec<u32>, Vec<f32>),
    pub(super) bio: (Vec<u32>, Vec<f32>),
    /// The raters' distributions (B * T * classes) and item weights (B * T),
    /// with `--annotator-policy soft|all`: these train the intent and
    /// failure-point heads in place of the hard targets above (which stay for
    /// dev accuracy). The binary heads' soft targets go into `boundary` and
    /// `success` directly.
    pub(super) intent_soft: Option<(Vec<f32>, Vec<f32>)>,
    pub(super) failure_soft: Option<(Vec<f32>, Vec<f32>)>,
    /// Weak labels from feedback.
    pub(super) weak_boundary: (Vec<f32>, Vec<f32>),
    pub(super) weak_success: (Vec<f32>, Vec<f32>),
    pub(super) weak_defect: (Vec<f32>, Vec<f32>),
}

impl Targets {
    /// From B windows of up to T turns, whose N turns have L tokens; `soft`
    /// holds the raters' soft targets (empty: none), for heads of
    /// (intent, failure point) classes.
    pub(super) fn gather(
        windows: &[&Window],
        (b, t): (usize, usize),
        (n, l): (usize, usize),
        soft: &RaterTable,
        (intents, failure_points): (usize, usize),
    ) -> Targets {
        let per_slot = || (vec![0f32; b * t], vec![0f32; b * t]);
        let classes = || (vec![0u32; b * t], vec![0f32; b * t]);
        let distributions = |c: usize| {
            (!soft.is_empty() && c > 0).then(|| (vec![0f32; b * t * c], vec![0f32; b * t]))
        };
        let mut targets = Targets {
            boundary: per_slot(),
            success: per_slot(),
            intent: classes(),
            failure: classes(),
            bio: (vec![0u32; n * l], vec![0f32; n * l]),
            intent_soft: distributions(intents),
            failure_soft: distributions(failure_points),
            weak_boundary: per_slot(),
            weak_success: per_slot(),
            weak_defect: per_slot(),
        };
        let mut turn = 0;
        for (w, window) in windows.iter().enumerate() {
            for (k, s) in window.supervision.iter().enumerate() {
                targets.add_turn(s, w * t + k, turn * l, l);
                if let Some(rated) = soft_targets(soft, window, k) {
                    targets.add_soft(rated, w * t + k);
                }
                turn += 1;
            }
        }
        targets
    }

    /// One turn's soft targets from its raters, at its turn slot: they
    /// replace the binary heads' hard targets (the value is P(true), the
    /// mask the item's weight) and fill the categorical distributions.
    fn add_soft(&mut self, rated: &RaterTargets, slot: usize) {
        for (binary, value) in [
            (&mut self.boundary, rated.boundary),
            (&mut self.success, rated.success),
        ] {
            if let Some((p, weight)) = value {
                (binary.0[slot], binary.1[slot]) = (p, weight);
            }
        }
        for (soft, value) in [
            (&mut self.intent_soft, &rated.intent),
            (&mut self.failure_soft, &rated.failure_point),
        ] {
            if let (Some((probs, mask)), Some((distribution, weight))) = (soft, value) {
                let c = distribution.len();
                probs[slot * c..(slot + 1) * c].copy_from_slice(distribution);
                mask[slot] = *weight;
            }
        }
    }

    /// One turn's labels, at its turn slot and from its first token on.
    fn add_turn(&mut self, s: &Supervision, slot: usize, first_token: usize, l: usize) {
        let flag = |v: bool| f32::from(u8::from(v));
        if let Some(v) = s.boundary {
            (self.boundary.0[slot], self.boundary.1[slot]) = (flag(v), 1.0);
        }
        if let Some(v) = s.success {
            (self.success.0[slot], self.success.1[slot]) = (flag(v), 1.0);
        }
        if let Some(v) = s.intent {
            (self.intent.0[slot], self.intent.1[slot]) = (v, 1.0);
        }
        if let Some(v) = s.failure_point {
            (self.failure.0[slot], self.failure.1[slot]) = (v, 1.0);
        }
        for (weak, value) in [
            (&mut self.weak_boundary, s.weak_boundary),
            (&mut self.weak_success, s.weak_success),
            (&mut self.weak_defect, s.weak_defect),
        ] {
            if let Some(p) = value {
                (weak.0[slot], weak.1[slot]) = (p, 1.0);
            }
        }
        if let Some(tags) = &s.bio {
            for (i, tag) in tags.iter().enumerate().take(l) {
                if let Some(tag) = tag {
                    self.bio.0[first_token + i] = *tag;
                    self.bio.1[first_token + i] = 1.0;
                }
            }
        }
    }
}

/// The heads' logits, flattened as the targets are.
struct FlatLogits {
    /// (B, T)
    boundary: Tensor,
    /// (B, T)
    success: Tensor,
    /// (B * T, intents); no columns when the labels have no intents.
    intent: Tensor,
    /// (B * T, failure points)
    failure: Tensor,
    /// (N * L, BIO tags)
    slots: Tensor,
}

/// Per-batch supervision tensors and the loss of the five heads.
/// `dropout` (probability, seed) is for training steps; None evaluates.
pub(super) fn supervised_loss(
    model: &DialogueModel,
    batch: &Batch,
    windows: &[&Window],
    settings: &LossSettings,
    dropout: Option<(f32, u64)>,
) -> anyhow::Result<(Tensor, HeadAccuracy)> {
    let heads = model
        .heads
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("model has no supervised heads"))?;
    let (b, t) = batch.turn_mask.dims2()?;
    let (n, l) = batch.input_ids.dims2()?;
    let token_states = settings.token_states(model, batch, windows)?;
    let states = model.dialogue_states_t(batch, &token_states, dropout)?;
    let turn_logits = heads.turn_logits(&states, &batch.turn_mask)?;
    let turn_states = states
        .reshape((b * t, states.dim(2)?))?
        .index_select(&batch.turn_slots, 0)?;
    let slot_logits = heads.slot_logits(&token_states, &batch.attention_mask, &turn_states)?;
    let tags = slot_logits.dim(2)?;
    let intent_classes = turn_logits.intent.dim(2)?;
    let logits = FlatLogits {
        intent: turn_logits.intent.reshape((b * t, intent_classes))?,
        failure: turn_logits.failure_point.reshape((b * t, ()))?,
        slots: slot_logits.reshape((n * l, tags))?,
        boundary: turn_logits.boundary,
        success: turn_logits.success,
    };
    let targets = Targets::gather(
        windows,
        (b, t),
        (n, l),
        &settings.rater_targets,
        (intent_classes, logits.failure.dim(1)?),
    );
    let accuracy = head_accuracy(&logits, &targets)?;
    let loss = weighted_loss(&logits, targets, settings, batch.input_ids.device())?;
    Ok((loss, accuracy))
}

/// (right, total): argmax predictions against the targets where `mask` is set.
fn count_right(logits: &Tensor, targets: &[u32], mask: &[f32]) -> anyhow::Result<(u64, u64)> {
    let predicted: Vec<u32> = logits
        .argmax(candle_core::D::Minus1)?
        .flatten_all()?
        .to_vec1()?;
    let (mut right, mut total) = (0u64, 0u64);
    for ((p, y), m) in predicted.iter().zip(targets).zip(mask) {
        if *m > 0.0 {
            total += 1;
            right += u64::from(p == y);
        }
    }
    Ok((right, total))
}

fn head_accuracy(logits: &FlatLogits, targets: &Targets) -> anyhow::Result<HeadAccuracy> {
    let mut accuracy = BTreeMap::new();
    // No intents (USS ratings): the intent head has no classes and no loss.
    if logits.intent.dim(1)? > 0 {
        let (classes, mask) = &targets.intent;
        accuracy.insert("intent", count_right(&logits.intent, classes, mask)?);
    }
    let (classes, mask) = &targets.failure;
    accuracy.insert(
        "failure_point",
        count_right(&logits.failure, classes, mask)?,
    );
    // Tag accuracy inside gold slot spans: over all tokens, the O majority
    // (every response token) would hide whether the tagger learns anything.
    let (tags, mask) = &targets.bio;
    let span_mask: Vec<f32> = tags
        .iter()
        .zip(mask)
        .map(|(&tag, &m)| if tag == 0 { 0.0 } else { m })
        .collect();
    accuracy.insert(
        "slot_span_tokens",
        count_right(&logits.slots, tags, &span_mask)?,
    );
    Ok(accuracy)
}

/// A categorical head's loss: against the raters' distributions where the
/// annotator policy gives them (`soft`: (M * C) probabilities and (M) item
/// weights), else against the hard classes (`hard`: (M) classes and mask).
fn classes_loss(
    logits: &Tensor,
    hard: (Vec<u32>, Vec<f32>),
    soft: Option<(Vec<f32>, Vec<f32>)>,
    weights: Option<&Tensor>,
) -> anyhow::Result<Tensor> {
    let (m, c) = logits.dims2()?;
    let dev = logits.device();
    let mask = |v: Vec<f32>| Tensor::from_vec(v, m, dev);
    Ok(match soft {
        Some((probs, weight)) => masked_soft_cross_entropy(
            logits,
            &Tensor::from_vec(probs, (m, c), dev)?,
            &mask(weight)?,
            weights,
        )?,
        None => masked_cross_entropy(
            logits,
            &Tensor::from_vec(hard.0, m, dev)?,
            &mask(hard.1)?,
            weights,
        )?,
    })
}

/// The task-weighted sum of the heads' losses on annotated labels, then on
/// weak labels (with the task weight times the weak-label weight).
fn weighted_loss(
    logits: &FlatLogits,
    targets: Targets,
    settings: &LossSettings,
    dev: &candle_core::Device,
) -> anyhow::Result<Tensor> {
    let (b, t) = logits.boundary.dims2()?;
    let tokens = logits.slots.dim(0)?;
    let t2 = |v: Vec<f32>| Tensor::from_vec(v, (b, t), dev);
    let flat_u = |v: Vec<u32>, m: usize| Tensor::from_vec(v, m, dev);
    let flat_f = |v: Vec<f32>, m: usize| Tensor::from_vec(v, m, dev);
    let w = &settings.task_weights;
    let Targets {
        boundary,
        success,
        intent,
        failure,
        bio,
        intent_soft,
        failure_soft,
        weak_boundary,
        weak_success,
        weak_defect,
    } = targets;

    let annotated = [
        (
            w.goal_boundary,
            masked_bce(&logits.boundary, &t2(boundary.0)?, &t2(boundary.1)?)?,
        ),
        (
            w.goal_success,
            masked_bce(&logits.success, &t2(success.0)?, &t2(success.1)?)?,
        ),
        (
            w.intent,
            if logits.intent.dim(1)? > 0 {
                classes_loss(&logits.intent, intent, intent_soft, None)?
            } else {
                Tensor::zeros((), DType::F32, dev)?
            },
        ),
        (
            w.failure_point,
            classes_loss(
                &logits.failure,
                failure,
                failure_soft,
                Some(&settings.failure_weights),
            )?,
        ),
        (
            w.slots,
            masked_cross_entropy(
                &logits.slots,
                &flat_u(bio.0, tokens)?,
                &flat_f(bio.1, tokens)?,
                None,
            )?,
        ),
    ];
    let weak = [
        (
            w.goal_boundary,
            masked_bce(
                &logits.boundary,
                &t2(weak_boundary.0)?,
                &t2(weak_boundary.1)?,
            )?,
        ),
        (
            w.goal_success,
            masked_bce(&logits.success, &t2(weak_success.0)?, &t2(weak_success.1)?)?,
        ),
        (
            w.failure_point,
            masked_bce(
                &defect_logits(&logits.failure, settings.correct)?,
                &flat_f(weak_defect.0, b * t)?,
                &flat_f(weak_defect.1, b * t)?,
            )?,
        ),
    ];
    let mut loss = Tensor::zeros((), DType::F32, dev)?;
    for (weight, term) in annotated {
        loss = (loss + (term * weight)?)?;
    }
    for (weight, term) in weak {
        loss = (loss + (term * (weight * settings.weak_weight))?)?;
    }
    Ok(loss)
}

/// Rare failure classes weigh more: (mean class count / class count)^balance, clipped.
pub(super) fn failure_class_weights(train: &[Window], classes: usize, balance: f64) -> Vec<f32> {
    let mut class_counts = vec![0usize; classes];
    for s in train.iter().flat_map(|w| &w.supervision) {
        if let Some(f) = s.failure_point {
            class_counts[f as usize] += 1;
        }
    }
    let labelled: usize = class_counts.iter().sum();
    class_counts
        .iter()
        .map(|&n| {
            ((labelled as f64 / class_counts.len() as f64 / n.max(1) as f64)
                .powf(balance)
                .clamp(0.5, 5.0)) as f32
        })
        .collect()
}

/// Mean dev loss and per-head accuracy.
pub(super) fn evaluate(
    model: &DialogueModel,
    windows: &[Window],
    batch_size: usize,
    pad: u32,
    settings: &LossSettings,
) -> anyhow::Result<(f64, BTreeMap<String, f64>)> {
    let (mut loss_sum, mut batches) = (0.0, 0);
    let mut counts: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for indices in bucketed_batches(windows, batch_size * 2) {
        let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
        let (batch, _) = make_batch(&chosen, pad, &device())?;
        let (loss, accuracy) = supervised_loss(model, &batch, &chosen, settings, None)?;
        loss_sum += loss.to_scalar::<f32>()? as f64;
        batches += 1;
        for (k, (right, total)) in accuracy {
            let c = counts.entry(k).or_default();
            c.0 += right;
            c.1 += total;
        }
    }
    Ok((loss_sum / batches.max(1) as f64, accuracies(counts)))
}

/// Accuracy per task from (right, total) counts. A task without dev labels
/// (failure points on SGD) has no accuracy, rather than 0.
fn accuracies(counts: BTreeMap<&'static str, (u64, u64)>) -> BTreeMap<String, f64> {
    counts
        .into_iter()
        .filter(|(_, (_, total))| *total > 0)
        .map(|(task, (right, total))| (task.to_string(), right as f64 / total as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_without_dev_labels_has_no_dev_accuracy() {
        let counts = BTreeMap::from([("intent", (3, 4)), ("failure_point", (0, 0))]);
        let accuracy = accuracies(counts);
        assert_eq!(accuracy.get("intent"), Some(&0.75));
        assert!(!accuracy.contains_key("failure_point"));
    }
}
