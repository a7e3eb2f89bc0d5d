//! `labelgen train`: supervised multi-task training of the heads (goal
//! boundary, goal success, intent, slots, failure point) on top of a
//! pretrained model, from an annotator's labels and weak labels from the
//! logs' own feedback, with early stopping on a dev split and temperature
//! scaling there for calibrated confidences.

pub mod epochs;
mod intent_stay;
pub mod raters;
pub mod weak;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;

use crate::data::checks::span_misfit;
use crate::data::dataset::read_table_counted;
use crate::data::inputs::InputSnapshot;
use crate::data::issues::DataError;
use crate::data::tables::{Annotation, FailurePoint, SlotSpan, Turn};
use crate::model::batch::{
    Supervision, Window, bucketed_batches, make_batch, turn_input, window_ranges,
};
use crate::model::buckets::TokenCounts;
use crate::model::cache::EncodingCache;
use crate::model::checkpoint::{self, fill_varmap, named_vars};
use crate::model::config::{
    DialogueConfig, LabelSets, Lookahead, ModelConfig, TurnContext, shifted_argmax, softmax,
};
use crate::model::loss::{masked_bce, masked_cross_entropy, masked_soft_cross_entropy};
use crate::model::optim::AdamW;
use crate::model::tokenizer::{EncodedTurn, encode_with_offsets, special_ids};
use crate::model::training::{
    self, Evaluation, Every, LoopConfig, Objective, Outcome, StepLoss, Trainee,
};
use crate::model::{Batch, DialogueModel, Precision, device, inference_view, kernels, plain_path};
use epochs::EpochModels;
use intent_stay::{StayTurn, fit_intent_stay_shift};
use raters::{
    AnnotatorPolicy, RaterTargets, agreement_weights, majority_supervision, rater_targets,
};
use weak::{SummaryBuilder, Target, WeakRules, WeakSummary};

#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// A pretrained model directory.
    pub init: PathBuf,
    pub logs: PathBuf,
    pub labels: PathBuf,
    pub out: PathBuf,
    /// Annotators whose labels train the heads. Empty: "single" if present,
    /// else the table's only annotator.
    pub annotators: Vec<String>,
    /// How the labels of several annotators of a turn become targets.
    pub annotator_policy: AnnotatorPolicy,
    pub seed: u64,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// The encoder's learning rate where its layers train (None: the same
    /// as `learning_rate`); pretrained layers usually want a smaller one.
    pub encoder_learning_rate: Option<f64>,
    /// Share of dialogues held out for early stopping and calibration.
    pub dev_share: f64,
    /// Epochs without a better dev loss before stopping.
    pub patience: usize,
    /// Exponent of the failure-point class weights (mean class count /
    /// class count)^balance: 0 weighs every class alike, 1 fully balances.
    pub class_balance: f64,
    /// Share of dialogues whose annotations are used (1: all); the rest
    /// train from weak labels only. For learning curves and ablations.
    pub labelled_share: f64,
    /// The labeller (dialogue context) or a contextless baseline.
    pub context: TurnContext,
    /// Fit the goal-success threshold and the `correct` failure-point shift
    /// on dev for the F1 of the rare failure class; otherwise 0.5 and 0.
    pub balance_decisions: bool,
    /// Later turns each turn may attend to in the dialogue Transformer
    /// (None: the pretrained model's setting).
    pub lookahead: Option<Lookahead>,
    /// Dropout probability on the turn vectors entering the dialogue
    /// Transformer and on the states it returns, in training only (0: off).
    pub dropout: f32,
    /// Keep the pretrained turn encoder fixed and cache its token states.
    pub freeze_encoder: bool,
    /// Train only the top N encoder layers (with the dialogue Transformer and
    /// heads), from cached states of the layers below; 0: see freeze_encoder.
    pub train_top_layers: usize,
    /// The arithmetic of the cached encoder layers' dense layers (with
    /// freeze_encoder or train_top_layers; `label --precision`'s choice).
    pub precision: Precision,
    /// Continue from the checkpoint an interrupted run left (MODEL.checkpoint).
    pub resume: bool,
    /// Also write the model after every epoch, calibrated as if training had
    /// stopped there, into OUT/epochs/epoch-NN (for a curve on other data).
    pub keep_epochs: bool,
    /// Stop after this many epochs, keeping the checkpoint (tests use it to
    /// check that --resume continues exactly).
    pub stop_after_epochs: Option<usize>,
    pub task_weights: TaskWeights,
    pub weak_rules: WeakRules,
    pub quiet: bool,
}

/// Loss weight per head.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TaskWeights {
    pub goal_boundary: f64,
    pub goal_success: f64,
    pub intent: f64,
    pub slots: f64,
    pub failure_point: f64,
}

impl Default for TaskWeights {
    fn default() -> TaskWeights {
        TaskWeights {
            goal_boundary: 1.0,
            goal_success: 1.0,
            intent: 1.0,
            slots: 1.0,
            failure_point: 1.0,
        }
    }
}

impl TrainConfig {
    pub fn new(init: PathBuf, logs: PathBuf, labels: PathBuf, out: PathBuf) -> TrainConfig {
        TrainConfig {
            init,
            logs,
            labels,
            out,
            annotators: Vec::new(),
            annotator_policy: AnnotatorPolicy::First,
            seed: 0,
            epochs: 8,
            max_steps: None,
            batch_size: 32,
            learning_rate: 5e-4,
            encoder_learning_rate: None,
            dev_share: 0.1,
            patience: 2,
            labelled_share: 1.0,
            class_balance: 0.5,
            context: TurnContext::Dialogue,
            balance_decisions: false,
            lookahead: None,
            dropout: 0.0,
            freeze_encoder: false,
            train_top_layers: 0,
            precision: Precision::F32,
            resume: false,
            keep_epochs: false,
            stop_after_epochs: None,
            task_weights: TaskWeights::default(),
            weak_rules: WeakRules::default(),
            quiet: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f64,
    pub dev_loss: f64,
    pub dev_accuracy: BTreeMap<String, f64>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct TrainSummary {
    pub out: String,
    pub annotators: Vec<String>,
    pub annotator_policy: AnnotatorPolicy,
    /// `--annotator-policy all`: each annotator's weight, its agreement
    /// with the other raters of the training dialogues (empty otherwise).
    pub rater_weights: BTreeMap<String, f64>,
    pub train_dialogues: usize,
    pub dev_dialogues: usize,
    pub labelled_turns: usize,
    /// Annotated turns of the chosen annotators that the logs do not have:
    /// nothing to train them on, so unused (and printed as a warning).
    pub annotated_turns_not_in_logs: usize,
    /// Non-fatal problems read in the logs and annotations (an empty
    /// utterance, an empty part file): the rows are used, the problems
    /// printed on stderr and counted here.
    pub input_warnings: usize,
    pub contextless: bool,
    pub utterance_only: bool,
    /// The turn's runtime features enter its vector (the labeller, and the
    /// contextless baseline `--contextless turn-runtime`).
    pub runtime_features: bool,
    pub freeze_encoder: bool,
    pub train_top_layers: usize,
    /// The arithmetic the cached encoder states were computed in: int16
    /// where --precision int16 asked for it and the CPU has AVX2 (f32
    /// otherwise, and without a cache).
    pub precision: Precision,
    /// Decision settings fitted on dev (0.5 and 0 without --balance-decisions).
    pub success_threshold: f64,
    pub correct_shift: f64,
    /// --balance-decisions: per decision (goal_success, failure_point), the
    /// dev dialogues holding its rare class and whether that was enough to
    /// fit it (`MIN_RARE_DEV_DIALOGUES`); a decision not fitted keeps its
    /// default and is printed as a warning.
    pub decision_fits: Option<BTreeMap<String, DecisionFit>>,
    /// Token positions per epoch through the encoder layers that train
    /// (none when the encoder is frozen): the turns' own tokens, padded to
    /// each batch's longest turn, and what the length groups compute.
    pub trained_encoder_tokens_per_epoch: Option<TokenCounts>,
    /// Distinct turns whose encodings were cached (--freeze-encoder), and their size.
    pub cached_turns: usize,
    pub cache_megabytes: f64,
    pub resumed_from_epoch: Option<usize>,
    pub weak_labels: WeakSummary,
    pub best_epoch: usize,
    pub epochs: Vec<EpochReport>,
    /// --keep-epochs: the folder of the epoch models (OUT/epochs).
    pub epoch_models: Option<String>,
    pub temperatures: BTreeMap<String, f64>,
    pub boundary_threshold: f64,
    pub rephrase_boundary_shift: f64,
    pub intent_change_weight: f64,
    pub intent_stay_shift: f64,
    pub seconds: f64,
}

/// Which annotators train the model when none are named: never the
/// simulator's truth, never the gold annotators a1..a3 (they are the judges).
fn choose_annotators(
    requested: &[String],
    present: &BTreeSet<String>,
    path: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let list = || present.iter().cloned().collect::<Vec<_>>().join(", ");
    if !requested.is_empty() {
        for a in requested {
            anyhow::ensure!(
                present.contains(a),
                "{}: no annotations by annotator `{a}`; annotators present: {}",
                path.display(),
                list()
            );
        }
        return Ok(requested.to_vec());
    }
    if present.contains("single") {
        return Ok(vec!["single".into()]);
    }
    if present.len() == 1 {
        return Ok(present.iter().cloned().collect());
    }
    anyhow::bail!(
        "{}: several annotators ({}); choose the ones to train on with --annotators",
        path.display(),
        list()
    )
}

/// A stable dialogue -> dev/train split from the seed.
fn is_dev(dialogue: &str, share: f64, seed: u64) -> bool {
    crate::data::split::in_share(dialogue, share, seed)
}

/// Whether a dialogue's annotations are read (`--labelled-share`).
fn is_labelled(dialogue: &str, config: &TrainConfig) -> bool {
    crate::data::split::in_share(dialogue, config.labelled_share, config.seed ^ 0x5eed)
}

/// The encoder layer a variable belongs to: `roberta.encoder.layer.3.…` -> 3.
fn encoder_layer(name: &str) -> Option<usize> {
    name.strip_prefix("roberta.encoder.layer.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// BIO tags of a turn's tokens from its slot spans: None for tokens outside
/// the utterance.
fn bio_tags(
    offsets: &[Option<(usize, usize)>],
    spans: &[SlotSpan],
    slot_types: &[String],
) -> Vec<Option<u32>> {
    let mut tags: Vec<Option<u32>> = offsets.iter().map(|o| o.map(|_| 0)).collect();
    for span in spans {
        let Some(k) = slot_types.iter().position(|s| *s == span.slot) else {
            continue;
        };
        let (start, end) = (span.start as usize, span.end as usize);
        let mut first = true;
        for (t, offset) in offsets.iter().enumerate() {
            if let Some((s, e)) = offset
                && *s < end
                && *e > start
            {
                tags[t] = Some(if first {
                    1 + 2 * k as u32
                } else {
                    2 + 2 * k as u32
                });
                first = false;
            }
        }
    }
    tags
}

/// A turn's supervision from its annotation (and the previous turn's, for
/// the goal boundary).
fn annotated_supervision(
    annotation: &Annotation,
    previous: Option<&Annotation>,
    encoded: &EncodedTurn,
    label_sets: &LabelSets,
) -> Supervision {
    let a = annotation;
    let previous_goal = previous.and_then(|p| p.goal_id);
    let failure = a.failure_point.as_deref();
    Supervision {
        boundary: a.goal_id.zip(previous_goal).map(|(g, p)| g != p),
        success: a.goal_success,
        intent: a
            .intent
            .as_ref()
            .and_then(|i| label_sets.intents.iter().position(|x| x == i))
            .map(|p| p as u32),
        failure_point: failure
            .and_then(|f| label_sets.failure_points.iter().position(|x| x == f))
            .map(|p| p as u32),
        bio: a
            .slots
            .as_ref()
            .map(|spans| bio_tags(&encoded.utterance_offsets, spans, &label_sets.slot_types)),
        ..Supervision::default()
    }
}

/// (right, total) per head, for dev accuracy.
type HeadAccuracy = BTreeMap<&'static str, (u64, u64)>;

/// What the loss needs besides the batch.
struct LossSettings {
    /// (failure classes) weight per class, for imbalance.
    failure_weights: Tensor,
    task_weights: TaskWeights,
    weak_weight: f64,
    /// Index of `correct` among the failure points.
    correct: usize,
    /// Token states of every turn, when the encoder is frozen.
    cache: Option<EncodingCache>,
    /// The raters' soft targets (`--annotator-policy soft|all`); empty otherwise.
    rater_targets: RaterTable,
}

/// Soft targets per dialogue (its index, a window's `origin.0`), per turn
/// of the dialogue in order; None where no rater labels the turn.
type RaterTable = HashMap<usize, Vec<Option<RaterTargets>>>;

/// The soft targets of the turn at `k` in `window`, if any.
fn soft_targets<'a>(table: &'a RaterTable, window: &Window, k: usize) -> Option<&'a RaterTargets> {
    table
        .get(&window.origin.0)?
        .get(window.origin.1 + k)?
        .as_ref()
}

impl LossSettings {
    fn token_states(
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
struct Targets {
    boundary: (Vec<f32>, Vec<f32>),
    success: (Vec<f32>, Vec<f32>),
    intent: (Vec<u32>, Vec<f32>),
    failure: (Vec<u32>, Vec<f32>),
    bio: (Vec<u32>, Vec<f32>),
    /// The raters' distributions (B * T * classes) and item weights (B * T),
    /// with `--annotator-policy soft|all`: these train the intent and
    /// failure-point heads in place of the hard targets above (which stay for
    /// dev accuracy). The binary heads' soft targets go into `boundary` and
    /// `success` directly.
    intent_soft: Option<(Vec<f32>, Vec<f32>)>,
    failure_soft: Option<(Vec<f32>, Vec<f32>)>,
    /// Weak labels from feedback.
    weak_boundary: (Vec<f32>, Vec<f32>),
    weak_success: (Vec<f32>, Vec<f32>),
    weak_defect: (Vec<f32>, Vec<f32>),
}

impl Targets {
    /// From B windows of up to T turns, whose N turns have L tokens; `soft`
    /// holds the raters' soft targets (empty: none), for heads of
    /// (intent, failure point) classes.
    fn gather(
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
fn supervised_loss(
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

pub fn run(config: &TrainConfig) -> anyhow::Result<TrainSummary> {
    validate(config)?;
    let started = Instant::now();
    let inputs = train_inputs(config)?;
    checkpoint::check_writable(&config.out)?;
    let base = checkpoint::read_config(&config.init)?;
    let (_, tokenizer) = checkpoint::load(&config.init)?;
    let (turns, turn_warnings) = read_table_counted::<Turn>(&config.logs)?;
    let (annotators, labels, label_warnings) = chosen_labels(config)?;
    check_spans(&turns, &labels, &config.labels)?;
    let lookahead = config
        .lookahead
        .map_or(base.dialogue.lookahead, Lookahead::limit);
    let label_sets = LabelSets {
        failure_point_reads_next_turn: !config.context.contextless() && lookahead != Some(0),
        ..label_sets(&labels)
    };
    let rater_weights = training_rater_weights(config, &labels);
    let model_config = ModelConfig {
        labels: Some(label_sets.clone()),
        context: config.context,
        dialogue: DialogueConfig {
            lookahead,
            ..base.dialogue.clone()
        },
        ..base.clone()
    };
    let mut data = split_windows(
        config,
        &turns,
        &tokenizer,
        &model_config,
        &Supervisor {
            config,
            labels: &labels,
            label_sets: &label_sets,
            rater_weights: &rater_weights,
        },
    )?;
    let varmap = VarMap::new();
    let model = initial_model(config, &model_config, &varmap)?;
    // Where no gradient is needed (the encoding cache, dev evaluation,
    // calibration): the same weights without a graph, on the fused kernels.
    let view = inference_view(&model_config, &varmap)?;
    let pad = special_ids(&tokenizer)?.pad;
    let rater_targets = std::mem::take(&mut data.rater_targets);
    let settings = LossSettings {
        rater_targets,
        ..loss_settings(config, &view, &data, &label_sets, pad)?
    };
    let optimizer = optimizer(config, &varmap, &settings)?;
    let batches = bucketed_batches(&data.train, config.batch_size);
    let trained_encoder_tokens_per_epoch =
        trains_encoder_layers(config).then(|| encoder_tokens(&data.train, &batches));
    let checkpoint_dir = checkpoint::resume_dir(&config.out);
    let epoch_models = epoch_models(config, &varmap, &tokenizer, batches.len())?;
    let trainee = Trainee {
        config: &model_config,
        varmap: &varmap,
        tokenizer: &tokenizer,
    };
    let mut objective = SupervisedObjective {
        model: &model,
        view: &view,
        train: &data.train,
        dev: &data.dev,
        settings: &settings,
        pad,
        batch_size: config.batch_size,
        dropout: config.dropout,
        seed: config.seed,
        epoch_models: epoch_models.as_ref().map(|e| (e, &model_config)),
        balance_decisions: config.balance_decisions,
    };
    // Early stopping leaves the best dev epoch's weights in the model.
    let outcome = training::run(
        &loop_config(config, checkpoint_dir.clone(), batches.len(), &inputs),
        trainee,
        optimizer,
        batches,
        &mut objective,
    )?;
    let calibration = calibrate(
        &view,
        &data.dev,
        config.batch_size,
        pad,
        &settings,
        config.balance_decisions,
    )?;
    let final_config = calibrated_config(&model_config, &calibration);
    let summary = TrainSummary {
        rater_weights,
        trained_encoder_tokens_per_epoch,
        input_warnings: turn_warnings + label_warnings,
        ..summary(config, annotators, data, &settings, outcome, calibration)
    };
    let training = training_record(config, &summary);
    let files = (&final_config, &varmap, &tokenizer, &training);
    checkpoint::save_guarded(&config.out, files, &inputs, |staging| {
        epoch_models
            .as_ref()
            .map_or(Ok(()), |e| e.move_into(staging))
    })?;
    training::remove_checkpoint(&checkpoint_dir)?;
    Ok(TrainSummary {
        seconds: started.elapsed().as_secs_f64(),
        ..summary
    })
}

/// --keep-epochs: the writer of the epoch models, ready for this run.
fn epoch_models<'a>(
    config: &TrainConfig,
    varmap: &'a VarMap,
    tokenizer: &'a tokenizers::Tokenizer,
    batches_per_epoch: usize,
) -> anyhow::Result<Option<EpochModels<'a>>> {
    if !config.keep_epochs {
        return Ok(None);
    }
    let models = EpochModels {
        dir: epochs::pending_dir(&config.out),
        varmap,
        tokenizer,
        batches_per_epoch,
    };
    let checkpoint_dir = checkpoint::resume_dir(&config.out);
    models.prepare(training::can_resume(config.resume, &checkpoint_dir))?;
    Ok(Some(models))
}

/// What train reads, stamped before it reads any of it: the logs, the
/// annotations and the --init model directory. A file that changes before
/// the model moves into place fails the run, naming it (issue 17).
fn train_inputs(config: &TrainConfig) -> anyhow::Result<InputSnapshot> {
    let mut inputs = InputSnapshot::of_dataset(&config.logs)?;
    inputs.add(InputSnapshot::of_dataset(&config.labels)?);
    inputs.add(checkpoint::input_snapshot(&config.init)?);
    Ok(inputs)
}

/// AdamW over the trainable variables; the encoder's at
/// --encoder-learning-rate where one is given.
fn optimizer(
    config: &TrainConfig,
    varmap: &VarMap,
    settings: &LossSettings,
) -> anyhow::Result<AdamW> {
    let mut optimizer = AdamW::new(
        trainable_vars(varmap, settings)?,
        config.learning_rate,
        0.01,
    )?;
    if let Some(encoder_rate) = config.encoder_learning_rate {
        let encoder_scale = encoder_rate / config.learning_rate;
        optimizer.scale_rates(|name| match name.starts_with("roberta.") {
            true => encoder_scale,
            false => 1.0,
        });
    }
    Ok(optimizer)
}

/// Whether any encoder layer trains (not --freeze-encoder).
fn trains_encoder_layers(config: &TrainConfig) -> bool {
    !config.freeze_encoder || config.train_top_layers > 0
}

/// Token positions one epoch of `batches` runs through the trained encoder
/// layers (which see each distinct turn of a batch once).
fn encoder_tokens(windows: &[Window], batches: &[Vec<usize>]) -> TokenCounts {
    let mut counts = TokenCounts::default();
    for batch in batches {
        let turns: Vec<&[u32]> = batch
            .iter()
            .flat_map(|&i| windows[i].turns.iter().map(|t| t.ids.as_slice()))
            .collect();
        let mut distinct = turns.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let lengths = |turns: &[&[u32]]| turns.iter().map(|t| t.len()).collect::<Vec<_>>();
        counts.add_batch(&lengths(&turns), &lengths(&distinct));
    }
    counts
}

/// `--annotator-policy all`: each annotator's agreement with the other
/// raters, over the labelled training dialogues (never the dev split, which
/// judges early stopping); empty for the other policies.
fn training_rater_weights(config: &TrainConfig, labels: &LabelsByTurn) -> BTreeMap<String, f64> {
    if config.annotator_policy != AnnotatorPolicy::All {
        return BTreeMap::new();
    }
    // Sorted: the weights are sums over turns, and a HashMap's order varies.
    let mut turns: Vec<_> = labels
        .iter()
        .filter(|((dialogue, _), _)| {
            !is_dev(dialogue, config.dev_share, config.seed) && is_labelled(dialogue, config)
        })
        .collect();
    turns.sort_by(|a, b| a.0.cmp(b.0));
    agreement_weights(turns.into_iter().map(|(_, raters)| raters.as_slice()))
}

fn validate(config: &TrainConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.labelled_share > 0.0 && config.labelled_share <= 1.0,
        "--labelled-share must be in (0, 1], got {}",
        config.labelled_share
    );
    anyhow::ensure!(
        config.dev_share > 0.0 && config.dev_share < 1.0,
        "--dev-share must be in (0, 1), got {}",
        config.dev_share
    );
    anyhow::ensure!(
        config.precision == Precision::F32 || config.freeze_encoder || config.train_top_layers > 0,
        "--precision int16 computes the cached states of fixed encoder layers: add --freeze-encoder or --train-top-layers N"
    );
    Ok(())
}

/// The raters' labels of each (dialogue, turn index), in the order the
/// annotators are named.
type LabelsByTurn = HashMap<(String, i32), Vec<Annotation>>;

/// The annotators that train the model, and their labels: with
/// `--annotator-policy first` only the first chosen annotator with a row
/// for a turn, otherwise every chosen annotator's row. Last, the number of
/// non-fatal problems read in the annotations table.
fn chosen_labels(config: &TrainConfig) -> anyhow::Result<(Vec<String>, LabelsByTurn, usize)> {
    let (annotations, warnings) = read_table_counted::<Annotation>(&config.labels)?;
    let present: BTreeSet<String> = annotations.iter().map(|a| a.annotator_id.clone()).collect();
    let annotators = choose_annotators(&config.annotators, &present, &config.labels)?;
    Ok((
        annotators.clone(),
        labels_by_turn(annotations, &annotators, config.annotator_policy),
        warnings,
    ))
}

/// The chosen annotators' rows by turn (see [`chosen_labels`]).
fn labels_by_turn(
    annotations: Vec<Annotation>,
    annotators: &[String],
    policy: AnnotatorPolicy,
) -> LabelsByTurn {
    let rank: HashMap<&str, usize> = annotators
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), i))
        .collect();
    let mut ranked: Vec<(usize, Annotation)> = annotations
        .into_iter()
        .filter_map(|a| Some((*rank.get(a.annotator_id.as_str())?, a)))
        .collect();
    // Stable: the table's row order within an annotator does not matter,
    // as each annotator has one row per turn.
    ranked.sort_by_key(|(r, _)| *r);
    let mut labels: LabelsByTurn = HashMap::new();
    for (_, a) in ranked {
        let raters = labels
            .entry((a.dialogue_id.clone(), a.turn_index))
            .or_default();
        if policy != AnnotatorPolicy::First || raters.is_empty() {
            raters.push(a);
        }
    }
    labels
}

/// The chosen labels' slot spans must index their utterances: a span past
/// the end or inside a character would teach the slot head the wrong
/// tokens. (`labelgen validate LABELS --table annotations --turns LOGS`
/// lists every such span.)
fn check_spans(turns: &[Turn], labels: &LabelsByTurn, path: &Path) -> Result<(), DataError> {
    let mut first = Vec::new();
    let mut count = 0;
    for turn in turns {
        let Some(raters) = labels.get(&(turn.dialogue_id.clone(), turn.turn_index)) else {
            continue;
        };
        for (a, (i, span)) in raters
            .iter()
            .flat_map(|a| a.slots.iter().flatten().enumerate().map(move |s| (a, s)))
        {
            let Some((kind, message)) = span_misfit(&turn.user_utterance, span.start, span.end)
            else {
                continue;
            };
            count += 1;
            if first.len() < 5 {
                first.push(format!(
                    "  {kind}: dialogue {}, turn_index {}, annotator {}, span {i} ({}): {message}",
                    a.dialogue_id, a.turn_index, a.annotator_id, span.slot
                ));
            }
        }
    }
    if count == 0 {
        return Ok(());
    }
    Err(DataError::Malformed {
        path: path.to_path_buf(),
        detail: format!(
            "{count} slot span(s) do not fit their utterance in the logs, first:\n{}\n  \
             hint: `labelgen validate {} --table annotations --turns LOGS` lists them all",
            first.join("\n"),
            path.display()
        ),
    })
}

/// The intents, slot types and failure points the heads predict.
fn label_sets(labels: &LabelsByTurn) -> LabelSets {
    let annotations = || labels.values().flatten();
    let intents: Vec<String> = annotations()
        .filter_map(|a| a.intent.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let slot_types: Vec<String> = annotations()
        .flat_map(|a| a.slots.iter().flatten().map(|s| s.slot.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The pipeline classes always (a head trained on simulated data keeps its
    // shape); `defect` (stage unknown, from imported satisfaction ratings)
    // only when the chosen labels use it.
    let uses_defect =
        annotations().any(|a| a.failure_point.as_deref() == Some(FailurePoint::Defect.as_str()));
    let failure_points: Vec<String> = FailurePoint::PIPELINE
        .iter()
        .chain(uses_defect.then_some(&FailurePoint::Defect))
        .map(|f| f.as_str().to_string())
        .collect();
    // Labels without intents (USS rates satisfaction only) train the other
    // heads; the intent head is then empty and `label` writes intent null.
    LabelSets::new(intents, slot_types, failure_points)
}

/// Dialogue windows with their supervision, split into train and dev by dialogue.
struct TrainData {
    train: Vec<Window>,
    dev: Vec<Window>,
    train_dialogues: usize,
    dev_dialogues: usize,
    labelled_turns: usize,
    annotated_turns_not_in_logs: usize,
    weak_labels: WeakSummary,
    /// The raters' soft targets (`--annotator-policy soft|all`).
    rater_targets: RaterTable,
}

fn split_windows(
    config: &TrainConfig,
    turns: &[Turn],
    tokenizer: &tokenizers::Tokenizer,
    model_config: &ModelConfig,
    supervisor: &Supervisor,
) -> anyhow::Result<TrainData> {
    let mut by_dialogue: BTreeMap<&str, Vec<&Turn>> = BTreeMap::new();
    for turn in turns {
        by_dialogue.entry(&turn.dialogue_id).or_default().push(turn);
    }
    // Sorted before tokenizing: `encoded` is read back in this order below,
    // and logs need not arrive in turn order.
    for dialogue_turns in by_dialogue.values_mut() {
        dialogue_turns.sort_by_key(|t| t.turn_index);
    }
    let pairs: Vec<(String, String)> = by_dialogue
        .values()
        .flatten()
        .map(|t| (t.user_utterance.clone(), t.system_response.clone()))
        .collect();
    let encoded = encode_with_offsets(
        tokenizer,
        &pairs,
        model_config.max_tokens,
        model_config.context.utterance_only(),
    )?;
    let (mut train_windows, mut dev_windows) = (Vec::new(), Vec::new());
    let (mut train_dialogues, mut dev_dialogues, mut labelled_turns) = (0, 0, 0);
    let mut next = 0;
    let mut weak_summary = SummaryBuilder::default();
    let mut rater_targets = RaterTable::new();
    for (d, (dialogue, dialogue_turns)) in by_dialogue.iter().enumerate() {
        let encoded = &encoded[next..next + dialogue_turns.len()];
        next += dialogue_turns.len();
        let DialogueSupervision {
            turns: supervision,
            soft,
            annotated,
        } = supervisor.dialogue(dialogue, dialogue_turns, encoded, &mut weak_summary);
        labelled_turns += annotated;
        if soft.iter().any(Option::is_some) {
            rater_targets.insert(d, soft);
        }
        let inputs: Vec<_> = dialogue_turns
            .iter()
            .zip(encoded)
            .map(|(t, e)| turn_input(t, e.ids.clone(), &model_config.features))
            .collect();
        let dev = is_dev(dialogue, config.dev_share, config.seed);
        if dev {
            dev_dialogues += 1
        } else {
            train_dialogues += 1
        }
        for range in window_ranges(inputs.len(), model_config.dialogue.max_turns) {
            let window = Window {
                targets: vec![0.0; range.len()],
                turns: inputs[range.clone()].to_vec(),
                supervision: supervision[range.clone()].to_vec(),
                origin: (d, range.start),
            };
            if dev {
                dev_windows.push(window)
            } else {
                train_windows.push(window)
            }
        }
    }
    anyhow::ensure!(
        !train_windows.is_empty() && !dev_windows.is_empty(),
        "too few dialogues to split into train and dev ({} dialogues)",
        by_dialogue.len()
    );
    let mut weak_labels = weak_summary.finish();
    let use_weak = config.weak_rules.weight > 0.0;
    if !use_weak {
        // The rules were analysed, but --weak-weight 0 kept their votes out of the loss.
        weak_labels.votes_used = 0;
    }
    Ok(TrainData {
        train: train_windows,
        dev: dev_windows,
        train_dialogues,
        dev_dialogues,
        labelled_turns,
        annotated_turns_not_in_logs: not_in_logs(turns, supervisor.labels),
        weak_labels,
        rater_targets,
    })
}

/// Labels whose turn is not in the logs: counted, so that annotations for
/// other logs (or a mistyped dialogue id) are not dropped unseen.
fn not_in_logs(turns: &[Turn], labels: &LabelsByTurn) -> usize {
    let in_logs: HashSet<(&str, i32)> = turns
        .iter()
        .map(|t| (t.dialogue_id.as_str(), t.turn_index))
        .collect();
    labels
        .keys()
        .filter(|(d, t)| !in_logs.contains(&(d.as_str(), *t)))
        .count()
}

/// What supervises the turns: the chosen labels, their label sets, the
/// annotator policy (with the raters' weights, for `all`) and the
/// weak-label rules.
struct Supervisor<'a> {
    config: &'a TrainConfig,
    labels: &'a LabelsByTurn,
    label_sets: &'a LabelSets,
    rater_weights: &'a BTreeMap<String, f64>,
}

/// A dialogue's supervision per turn, the raters' soft targets per turn
/// (`--annotator-policy soft|all`; otherwise all None) and the number of
/// annotated turns.
struct DialogueSupervision {
    turns: Vec<Supervision>,
    soft: Vec<Option<RaterTargets>>,
    annotated: usize,
}

impl Supervisor<'_> {
    /// The supervision of a dialogue's turns (in order), and how many of
    /// them are annotated: the chosen labels where the dialogue is in the
    /// labelled share, weak labels from feedback where a head has none.
    fn dialogue(
        &self,
        dialogue: &str,
        turns: &[&Turn],
        encoded: &[EncodedTurn],
        weak_summary: &mut SummaryBuilder,
    ) -> DialogueSupervision {
        let config = self.config;
        let votes = weak::votes(turns, &config.weak_rules);
        // Experiments on a labelled subset: the other dialogues' annotations are not read.
        let labelled = is_labelled(dialogue, config);
        let mut out = DialogueSupervision {
            turns: Vec::with_capacity(turns.len()),
            soft: Vec::with_capacity(turns.len()),
            annotated: 0,
        };
        for k in 0..turns.len() {
            let current = self.rated(dialogue, turns[k], labelled);
            let previous = match k {
                0 => &[][..],
                _ => self.rated(dialogue, turns[k - 1], labelled),
            };
            let first = current.first();
            weak_summary.add(
                &votes[k],
                first,
                first.and_then(|a| self.previous(a, previous)),
            );
            let per_rater: Vec<Supervision> = current
                .iter()
                .map(|a| {
                    let before = self.previous(a, previous);
                    annotated_supervision(a, before, &encoded[k], self.label_sets)
                })
                .collect();
            out.annotated += usize::from(!per_rater.is_empty());
            let soft = self.soft_targets(current, &per_rater);
            let rephrase = k > 0
                && crate::data::feedback::is_rephrase(
                    &turns[k - 1].user_utterance,
                    &turns[k].user_utterance,
                );
            let use_weak = config.weak_rules.weight > 0.0;
            let supervision = with_weak_labels(
                majority_supervision(&per_rater),
                &weak::combine(&votes[k]),
                use_weak,
                k,
                rephrase,
            );
            out.turns
                .push(without_weak_where_rated(supervision, soft.as_ref()));
            out.soft.push(soft);
        }
        out
    }

    /// The chosen raters' annotations of a turn; none outside the labelled share.
    fn rated(&self, dialogue: &str, turn: &Turn, labelled: bool) -> &[Annotation] {
        if !labelled {
            return &[];
        }
        self.labels
            .get(&(dialogue.to_string(), turn.turn_index))
            .map_or(&[], Vec::as_slice)
    }

    /// The annotation of the previous turn that a rater's goal boundary
    /// compares with: the same annotator's (`first`: the previous turn's
    /// chosen label, whoever gave it, as before the policies existed).
    fn previous<'b>(
        &self,
        rater: &Annotation,
        previous: &'b [Annotation],
    ) -> Option<&'b Annotation> {
        match self.config.annotator_policy {
            AnnotatorPolicy::First => previous.first(),
            _ => previous
                .iter()
                .find(|p| p.annotator_id == rater.annotator_id),
        }
    }

    /// The raters' soft targets of a turn (`soft`: equal weights, `all`:
    /// the annotators' agreement weights); None for the other policies or
    /// a turn no rater labels.
    fn soft_targets(
        &self,
        raters: &[Annotation],
        per_rater: &[Supervision],
    ) -> Option<RaterTargets> {
        let policy = self.config.annotator_policy;
        if !policy.is_soft() || raters.is_empty() {
            return None;
        }
        let weighted: Vec<(&Supervision, f32)> = raters
            .iter()
            .zip(per_rater)
            .map(|(a, s)| {
                let weight = match policy {
                    AnnotatorPolicy::All => self
                        .rater_weights
                        .get(&a.annotator_id)
                        .copied()
                        .unwrap_or(0.5),
                    _ => 1.0,
                };
                (s, weight as f32)
            })
            .collect();
        let sizes = (
            self.label_sets.intents.len(),
            self.label_sets.failure_points.len(),
        );
        Some(rater_targets(
            &weighted,
            sizes,
            policy == AnnotatorPolicy::All,
        ))
    }
}

/// Where the raters give a soft target, no weak label trains that head
/// (the hard majority may be missing on a tie, which would otherwise let
/// a weak label in beside the raters' distribution).
fn without_weak_where_rated(supervision: Supervision, soft: Option<&RaterTargets>) -> Supervision {
    let Some(soft) = soft else {
        return supervision;
    };
    Supervision {
        weak_boundary: supervision
            .weak_boundary
            .filter(|_| soft.boundary.is_none()),
        weak_success: supervision.weak_success.filter(|_| soft.success.is_none()),
        weak_defect: supervision
            .weak_defect
            .filter(|_| soft.failure_point.is_none()),
        ..supervision
    }
}

/// Weak labels (from the feedback votes) for the heads a turn has no
/// annotation for; none with --weak-weight 0, and no goal boundary at the
/// dialogue's first turn (`k` is the turn's place in its dialogue).
fn with_weak_labels(
    supervision: Supervision,
    weak: &BTreeMap<Target, f32>,
    use_weak: bool,
    k: usize,
    rephrase: bool,
) -> Supervision {
    let vote = |target: Target| weak.get(&target).copied().filter(|_| use_weak);
    Supervision {
        rephrase,
        weak_boundary: supervision
            .boundary
            .is_none()
            .then(|| vote(Target::GoalBoundary))
            .flatten()
            .filter(|_| k > 0),
        weak_success: supervision
            .success
            .is_none()
            .then(|| vote(Target::GoalSuccess))
            .flatten(),
        weak_defect: supervision
            .failure_point
            .is_none()
            .then(|| vote(Target::Defect))
            .flatten(),
        ..supervision
    }
}

/// The model: weights from the seed, then the pretrained ones (all but the
/// new supervised heads).
fn initial_model(
    config: &TrainConfig,
    model_config: &ModelConfig,
    varmap: &VarMap,
) -> anyhow::Result<DialogueModel> {
    let model = DialogueModel::new(
        model_config,
        VarBuilder::from_varmap(varmap, DType::F32, &device()),
    )?;
    checkpoint::seeded_init(varmap, config.seed)?;
    fill_varmap(
        varmap,
        &config.init.join(checkpoint::WEIGHTS),
        |n| vec![n.to_string()],
        |n| !n.starts_with("heads.") || n.starts_with("heads.swap"),
    )?;
    Ok(model)
}

fn loss_settings(
    config: &TrainConfig,
    model: &DialogueModel,
    data: &TrainData,
    label_sets: &LabelSets,
    pad: u32,
) -> anyhow::Result<LossSettings> {
    let weights = failure_class_weights(
        &data.train,
        label_sets.failure_points.len(),
        config.class_balance,
    );
    Ok(LossSettings {
        cache: encoding_cache(config, model, data, pad)?,
        rater_targets: RaterTable::new(),
        failure_weights: Tensor::new(weights, &device())?,
        task_weights: config.task_weights.clone(),
        weak_weight: config.weak_rules.weight,
        correct: label_sets
            .failure_points
            .iter()
            .position(|f| f == "correct")
            .unwrap_or(0),
    })
}

/// Rare failure classes weigh more: (mean class count / class count)^balance, clipped.
fn failure_class_weights(train: &[Window], classes: usize, balance: f64) -> Vec<f32> {
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

/// With --freeze-encoder or --train-top-layers, the token states of the
/// fixed encoder layers, computed once for every turn.
fn encoding_cache(
    config: &TrainConfig,
    model: &DialogueModel,
    data: &TrainData,
    pad: u32,
) -> anyhow::Result<Option<EncodingCache>> {
    let encoder_layers = model.roberta.num_layers();
    anyhow::ensure!(
        config.train_top_layers <= encoder_layers,
        "--train-top-layers {}: the encoder of {} has only {encoder_layers} layers",
        config.train_top_layers,
        config.init.display()
    );
    if !(config.freeze_encoder || config.train_top_layers > 0) {
        return Ok(None);
    }
    // Only here: these layers never change, whereas the packed int16 weights
    // of the layers that train would go stale at the next update.
    let _int16 = kernels::int16::Scoped::enable(config.precision);
    Ok(Some(EncodingCache::build(
        model,
        data.train.iter().chain(&data.dev),
        pad,
        128,
        encoder_layers - config.train_top_layers,
        DType::F16,
        config.quiet,
    )?))
}

/// The variables training updates: not the cached (frozen) encoder layers,
/// nor the MLM head, unused here.
fn trainable_vars(
    varmap: &VarMap,
    settings: &LossSettings,
) -> anyhow::Result<Vec<(String, candle_core::Var)>> {
    let cached_layers = settings.cache.as_ref().map(|c| c.layers);
    Ok(named_vars(varmap)?
        .into_iter()
        .filter(|(name, _)| {
            let frozen = cached_layers.is_some_and(|cached| {
                name.starts_with("roberta.") && encoder_layer(name).is_none_or(|i| i < cached)
            });
            !(frozen || name.starts_with("lm_head."))
        })
        .collect())
}

fn loop_config(
    config: &TrainConfig,
    checkpoint_dir: PathBuf,
    batches_per_epoch: usize,
    inputs: &InputSnapshot,
) -> LoopConfig {
    LoopConfig {
        stage: "train",
        checkpoint_dir,
        seed: config.seed,
        epochs: config.epochs,
        max_steps: config.max_steps,
        learning_rate: config.learning_rate,
        warmup_share: training::WARMUP_SHARE,
        max_grad_norm: training::MAX_GRAD_NORM,
        eval_every: Every::Epoch,
        checkpoint_every: Every::Epoch,
        patience: Some(config.patience),
        resume: config.resume,
        inputs: inputs.clone(),
        stop_after: config.stop_after_epochs.map(|e| e * batches_per_epoch),
        quiet: config.quiet,
    }
}

/// The dev split's loss and per-head accuracy, after each epoch.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
struct DevEval {
    dev_loss: f64,
    dev_accuracy: BTreeMap<String, f64>,
}

impl Evaluation for DevEval {
    fn loss(&self) -> Option<f64> {
        Some(self.dev_loss)
    }
}

/// Supervised training's objective: the heads' weighted losses.
struct SupervisedObjective<'a> {
    model: &'a DialogueModel,
    /// `model`'s weights without a graph, for the dev evaluation.
    view: &'a DialogueModel,
    train: &'a [Window],
    dev: &'a [Window],
    settings: &'a LossSettings,
    pad: u32,
    batch_size: usize,
    /// Dropout probability while training (0: off).
    dropout: f32,
    seed: u64,
    /// --keep-epochs: where each epoch's model goes, and the config its
    /// calibration completes.
    epoch_models: Option<(&'a EpochModels<'a>, &'a ModelConfig)>,
    balance_decisions: bool,
}

impl Objective for SupervisedObjective<'_> {
    type Eval = DevEval;

    fn loss(&mut self, indices: &[usize], step: usize) -> anyhow::Result<StepLoss> {
        let chosen: Vec<&Window> = indices.iter().map(|&i| &self.train[i]).collect();
        let (batch, _) = make_batch(&chosen, self.pad, &device())?;
        let dropout =
            (self.dropout > 0.0).then(|| (self.dropout, training::step_seed(self.seed, step)));
        let (loss, _) = supervised_loss(self.model, &batch, &chosen, self.settings, dropout)?;
        let tokens = batch.attention_mask.sum_all()?.to_scalar::<u32>()? as usize;
        Ok(StepLoss { loss, tokens })
    }

    fn evaluate(&mut self, step: usize) -> anyhow::Result<DevEval> {
        let (dev_loss, dev_accuracy) = evaluate(
            self.view,
            self.dev,
            self.batch_size,
            self.pad,
            self.settings,
        )?;
        let eval = DevEval {
            dev_loss,
            dev_accuracy,
        };
        if let Some((models, model_config)) = self.epoch_models {
            let calibration = calibrate(
                self.view,
                self.dev,
                self.batch_size,
                self.pad,
                self.settings,
                self.balance_decisions,
            )?;
            let config = calibrated_config(model_config, &calibration);
            models.save(step, &config, serde_json::to_value(&eval)?)?;
        }
        Ok(eval)
    }
}

/// The model config with what calibration fitted on dev.
fn calibrated_config(model_config: &ModelConfig, calibration: &Calibration) -> ModelConfig {
    let mut final_config = model_config.clone();
    if let Some(l) = final_config.labels.as_mut() {
        l.temperatures = calibration.temperatures.clone();
        l.boundary_threshold = calibration.boundary_threshold;
        l.rephrase_boundary_shift = calibration.rephrase_boundary_shift;
        l.intent_change_weight = calibration.intent_change_weight;
        l.intent_stay_shift = calibration.intent_stay_shift;
        l.success_threshold = calibration.success_threshold;
        l.correct_shift = calibration.correct_shift;
    }
    final_config
}

/// The summary; `seconds` is left for the caller to stamp.
fn summary(
    config: &TrainConfig,
    annotators: Vec<String>,
    data: TrainData,
    settings: &LossSettings,
    outcome: Outcome<DevEval>,
    calibration: Calibration,
) -> TrainSummary {
    let epochs: Vec<EpochReport> = outcome
        .curve
        .iter()
        .map(|p| EpochReport {
            epoch: outcome.epoch_of(p.step),
            steps: p.step,
            train_loss: p.train_loss,
            dev_loss: p.eval.dev_loss,
            dev_accuracy: p.eval.dev_accuracy.clone(),
            seconds: p.seconds,
        })
        .collect();
    let cache = settings.cache.as_ref();
    TrainSummary {
        out: config.out.display().to_string(),
        annotators,
        annotator_policy: config.annotator_policy,
        rater_weights: BTreeMap::new(),
        train_dialogues: data.train_dialogues,
        dev_dialogues: data.dev_dialogues,
        labelled_turns: data.labelled_turns,
        annotated_turns_not_in_logs: data.annotated_turns_not_in_logs,
        input_warnings: 0,
        contextless: config.context.contextless(),
        utterance_only: config.context.utterance_only(),
        runtime_features: config.context.runtime_features(),
        freeze_encoder: config.freeze_encoder,
        success_threshold: calibration.success_threshold,
        correct_shift: calibration.correct_shift,
        decision_fits: calibration.decision_fits,
        train_top_layers: config.train_top_layers,
        precision: cache.map_or(Precision::F32, |c| c.precision),
        trained_encoder_tokens_per_epoch: None,
        cached_turns: cache.map_or(0, EncodingCache::len),
        cache_megabytes: cache.map_or(0, |c| c.bytes) as f64 / 1e6,
        resumed_from_epoch: outcome.resumed_from.map(|step| outcome.epoch_of(step)),
        weak_labels: data.weak_labels,
        best_epoch: outcome.best.map_or(0, |i| epochs[i].epoch),
        epochs,
        epoch_models: config
            .keep_epochs
            .then(|| config.out.join(epochs::EPOCHS).display().to_string()),
        temperatures: calibration.temperatures,
        boundary_threshold: calibration.boundary_threshold,
        rephrase_boundary_shift: calibration.rephrase_boundary_shift,
        intent_change_weight: calibration.intent_change_weight,
        intent_stay_shift: calibration.intent_stay_shift,
        seconds: 0.0,
    }
}

/// training.json: the settings and what training found.
fn training_record(config: &TrainConfig, summary: &TrainSummary) -> serde_json::Value {
    serde_json::json!({
        "stage": "train",
        "init": config.init.display().to_string(),
        "annotators": summary.annotators,
        "annotator_policy": summary.annotator_policy,
        "rater_weights": summary.rater_weights,
        "seed": config.seed,
        "settings": config,
        "best_epoch": summary.best_epoch,
        "epochs": summary.epochs,
        "temperatures": summary.temperatures,
        "boundary_threshold": summary.boundary_threshold,
        "rephrase_boundary_shift": summary.rephrase_boundary_shift,
        "intent_change_weight": summary.intent_change_weight,
        "intent_stay_shift": summary.intent_stay_shift,
        "success_threshold": summary.success_threshold,
        "correct_shift": summary.correct_shift,
        "decision_fits": summary.decision_fits,
        "weak_labels": summary.weak_labels,
    })
}

/// Mean dev loss and per-head accuracy.
fn evaluate(
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

/// Temperature per head, the one of a grid that minimises the dev
/// negative log-likelihood (Guo et al., 2017), and the boundary decision
/// settings that maximise dev boundary F1.
fn calibrate(
    model: &DialogueModel,
    windows: &[Window],
    batch_size: usize,
    pad: u32,
    settings: &LossSettings,
    balance_decisions: bool,
) -> anyhow::Result<Calibration> {
    let dev = DevItems::collect(model, windows, batch_size, pad, settings)?;
    let temperatures = fit_temperatures(&dev.items);
    // The contextless baseline labels each turn alone: its boundaries do not
    // get to compare a turn's intent with the previous turn's.
    let (boundary_threshold, rephrase_boundary_shift, intent_change_weight) =
        fit_boundary_decisions(
            &dev.boundary_items(&temperatures),
            model.config.context.contextless(),
        );
    let (success_threshold, correct_shift, decision_fits) = if balance_decisions {
        let fitted =
            balanced_decisions(&dev.items, &dev.dialogues, &temperatures, settings.correct);
        (
            fitted.success_threshold,
            fitted.correct_shift,
            Some(fitted.fits),
        )
    } else {
        (0.5, 0.0, None)
    };
    // As the intent-change weight: the contextless baseline labels each
    // turn alone, so it does not lean on the previous turn's intent either.
    let intent_stay_shift = if model.config.context.contextless() {
        0.0
    } else {
        let mut decider = LabelSets::new(Vec::new(), Vec::new(), Vec::new());
        decider.temperatures = temperatures.clone();
        decider.boundary_threshold = boundary_threshold;
        decider.rephrase_boundary_shift = rephrase_boundary_shift;
        decider.intent_change_weight = intent_change_weight;
        fit_intent_stay_shift(&dev.windows, &decider)
    };
    Ok(Calibration {
        temperatures,
        boundary_threshold,
        rephrase_boundary_shift,
        intent_change_weight,
        intent_stay_shift,
        success_threshold,
        correct_shift,
        decision_fits,
    })
}

/// The heads' dev logits beside the labels, for calibration.
#[derive(Default)]
struct DevItems {
    /// (logits, target) per head; binary heads as two-class logits [0, x].
    items: BTreeMap<&'static str, Vec<(Vec<f32>, usize)>>,
    /// Beside each item of `items`: the dev dialogue it comes from.
    dialogues: BTreeMap<&'static str, Vec<usize>>,
    /// Beside each goal_boundary item: whether its turn rephrases the
    /// previous one, and the intent logits of the previous turn and its own.
    boundary_rephrase: Vec<bool>,
    boundary_intents: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    /// Every dev window's turns in order, for the intent decision.
    windows: Vec<Vec<StayTurn>>,
}

/// A batch's logits on the host: [window][turn] (and [class]).
struct HostLogits {
    boundary: Vec<Vec<f32>>,
    success: Vec<Vec<f32>>,
    intent: Vec<Vec<Vec<f32>>>,
    failure: Vec<Vec<Vec<f32>>>,
}

impl DevItems {
    fn collect(
        model: &DialogueModel,
        windows: &[Window],
        batch_size: usize,
        pad: u32,
        settings: &LossSettings,
    ) -> anyhow::Result<DevItems> {
        let heads = model
            .heads
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("model has no supervised heads"))?;
        let mut dev = DevItems::default();
        for indices in bucketed_batches(windows, batch_size * 2) {
            let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
            let (batch, _) = make_batch(&chosen, pad, &device())?;
            let states =
                model.dialogue_states(&batch, &settings.token_states(model, &batch, &chosen)?)?;
            let logits = heads.turn_logits(&states, &batch.turn_mask)?;
            let logits = HostLogits {
                boundary: logits.boundary.to_vec2()?,
                success: logits.success.to_vec2()?,
                intent: logits.intent.to_vec3()?,
                failure: logits.failure_point.to_vec3()?,
            };
            dev.add_batch(&chosen, &logits);
        }
        Ok(dev)
    }

    fn add_batch(&mut self, chosen: &[&Window], logits: &HostLogits) {
        let HostLogits {
            boundary,
            success,
            intent,
            failure,
        } = logits;
        for (w, window) in chosen.iter().enumerate() {
            let dialogue = window.origin.0;
            self.windows.push(
                window
                    .supervision
                    .iter()
                    .enumerate()
                    .map(|(k, s)| StayTurn {
                        boundary_logit: boundary[w][k],
                        rephrase: s.rephrase,
                        intent_logits: intent[w][k].clone(),
                        gold_intent: s.intent.map(|v| v as usize),
                    })
                    .collect(),
            );
            for (k, s) in window.supervision.iter().enumerate() {
                if let Some(v) = s.boundary {
                    self.boundary_rephrase.push(s.rephrase);
                    self.boundary_intents.push(
                        k.checked_sub(1)
                            .map(|j| (intent[w][j].clone(), intent[w][k].clone())),
                    );
                    self.push(
                        "goal_boundary",
                        vec![0.0, boundary[w][k]],
                        usize::from(v),
                        dialogue,
                    );
                }
                if let Some(v) = s.success {
                    self.push(
                        "goal_success",
                        vec![0.0, success[w][k]],
                        usize::from(v),
                        dialogue,
                    );
                }
                if let Some(v) = s.intent {
                    self.push("intent", intent[w][k].clone(), v as usize, dialogue);
                }
                if let Some(v) = s.failure_point {
                    self.push("failure_point", failure[w][k].clone(), v as usize, dialogue);
                }
            }
        }
    }

    fn push(&mut self, head: &'static str, logits: Vec<f32>, target: usize, dialogue: usize) {
        self.items.entry(head).or_default().push((logits, target));
        self.dialogues.entry(head).or_default().push(dialogue);
    }

    /// The goal-boundary items, calibrated.
    fn boundary_items(&self, temperatures: &BTreeMap<String, f64>) -> Vec<BoundaryItem> {
        let t = temperatures.get("goal_boundary").copied().unwrap_or(1.0);
        let intent_t = temperatures.get("intent").copied().unwrap_or(1.0);
        let Some(items) = self.items.get("goal_boundary") else {
            return Vec::new();
        };
        items
            .iter()
            .zip(&self.boundary_rephrase)
            .zip(&self.boundary_intents)
            .map(|(((z, y), rephrase), intents)| {
                let change = intents.as_ref().and_then(|(previous, current)| {
                    LabelSets::intent_change(
                        &softmax(previous, intent_t),
                        &softmax(current, intent_t),
                    )
                });
                BoundaryItem {
                    probability: 1.0 / (1.0 + (-(z[1] as f64) / t).exp()),
                    is_boundary: *y == 1,
                    rephrase: *rephrase,
                    intent_change: change,
                }
            })
            .collect()
    }
}

/// The negative log-likelihood of `items` with logits divided by `t`.
fn nll(items: &[(Vec<f32>, usize)], t: f64) -> f64 {
    items
        .iter()
        .map(|(logits, y)| {
            let scaled: Vec<f64> = logits.iter().map(|&z| z as f64 / t).collect();
            let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + scaled.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
            log_sum - scaled[*y]
        })
        .sum::<f64>()
}

/// Per head, the temperature of a grid with the lowest dev NLL; slots keep 1.
fn fit_temperatures(items: &BTreeMap<&str, Vec<(Vec<f32>, usize)>>) -> BTreeMap<String, f64> {
    let grid: Vec<f64> = (0..=50).map(|i| 0.5 + i as f64 * 0.05).collect();
    let mut temperatures: BTreeMap<String, f64> = items
        .iter()
        .map(|(head, its)| {
            (
                head.to_string(),
                grid.iter()
                    .cloned()
                    .min_by(|a, b| nll(its, *a).total_cmp(&nll(its, *b)))
                    .unwrap_or(1.0),
            )
        })
        .collect();
    temperatures.entry("slots".into()).or_insert(1.0);
    temperatures
}

/// A dev turn with a gold goal boundary label, as the boundary decision sees it.
struct BoundaryItem {
    /// The calibrated boundary probability.
    probability: f64,
    is_boundary: bool,
    rephrase: bool,
    /// P(intent changed) from the previous turn.
    intent_change: Option<f64>,
}

/// Boundary decisions: the threshold on the calibrated probability, the
/// logit shift of rephrased turns (retries usually continue their goal) and
/// the weight of an intent change, with the best dev F1. Returns
/// (threshold, shift, weight); `contextless` keeps the weight at 0.
fn fit_boundary_decisions(boundaries: &[BoundaryItem], contextless: bool) -> (f64, f64, f64) {
    let mut decider = LabelSets::new(Vec::new(), Vec::new(), Vec::new());
    let mut f1 = |threshold: f64, shift: f64, weight: f64| {
        decider.rephrase_boundary_shift = shift;
        decider.intent_change_weight = weight;
        let predicted_new = |b: &BoundaryItem| {
            decider.boundary_probability(b.probability, b.rephrase, b.intent_change) > threshold
        };
        let tp = boundaries
            .iter()
            .filter(|b| b.is_boundary && predicted_new(b))
            .count() as f64;
        let predicted = boundaries.iter().filter(|b| predicted_new(b)).count() as f64;
        let actual = boundaries.iter().filter(|b| b.is_boundary).count() as f64;
        if predicted + actual == 0.0 {
            0.0
        } else {
            2.0 * tp / (predicted + actual)
        }
    };
    let weights = if contextless { 0..=0 } else { 0..=8 };
    let mut best = (f1(0.5, 0.0, 0.0), 0.5, 0.0, 0.0);
    for weight in weights.map(|i| 0.25 * i as f64) {
        for shift in (0..=12).map(|i| -0.5 * i as f64) {
            for threshold in (15..=85).map(|i| i as f64 / 100.0) {
                let score = f1(threshold, shift, weight);
                // Strictly better only: ties keep the smaller change.
                if score > best.0 + 1e-12 {
                    best = (score, threshold, shift, weight);
                }
            }
        }
    }
    (best.1, best.2, best.3)
}

/// What `calibrate` fits on the dev split.
struct Calibration {
    temperatures: BTreeMap<String, f64>,
    boundary_threshold: f64,
    rephrase_boundary_shift: f64,
    intent_change_weight: f64,
    intent_stay_shift: f64,
    success_threshold: f64,
    correct_shift: f64,
    decision_fits: Option<BTreeMap<String, DecisionFit>>,
}

/// Fewer dev dialogues than this with a decision's rare class (a failed
/// goal, a failure turn) and `--balance-decisions` keeps that decision's
/// default. Why: the fit maximises the rare class's dev F1, and with a
/// handful of rare dialogues one of them moves that F1 by a tenth or more,
/// so the fitted value is noise; on USS (2 or 3 failed dialogues in 85 dev
/// dialogues) it landed between probabilities 0.01 apart, and one policy's
/// fitted threshold labelled every test dialogue failed. Dialogues, not
/// turns or windows: the turns of one dialogue share its raters and its
/// outcome, so they are not independent evidence.
pub const MIN_RARE_DEV_DIALOGUES: usize = 10;

/// What `--balance-decisions` found for one decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionFit {
    /// Dev dialogues holding at least one item of the rare class.
    pub rare_dev_dialogues: usize,
    /// At least `MIN_RARE_DEV_DIALOGUES` of them: the decision was fitted.
    pub fitted: bool,
}

/// `balanced_decisions`' result.
#[derive(Debug, PartialEq)]
struct BalancedDecisions {
    success_threshold: f64,
    correct_shift: f64,
    fits: BTreeMap<String, DecisionFit>,
}

/// Distinct dialogues among `dialogues` (beside `items`) whose item's target is rare.
fn rare_dialogues(
    items: &[(Vec<f32>, usize)],
    dialogues: &[usize],
    rare: impl Fn(usize) -> bool,
) -> usize {
    items
        .iter()
        .zip(dialogues)
        .filter(|((_, target), _)| rare(*target))
        .map(|(_, dialogue)| *dialogue)
        .collect::<BTreeSet<usize>>()
        .len()
}

/// F1 of the positive (minority) class; 0 when there is none.
fn minority_f1(predicted: &[bool], actual: &[bool]) -> f64 {
    let tp = predicted
        .iter()
        .zip(actual)
        .filter(|(p, a)| **p && **a)
        .count() as f64;
    let positives =
        predicted.iter().filter(|p| **p).count() + actual.iter().filter(|a| **a).count();
    2.0 * tp / (positives as f64).max(1.0)
}

/// `--balance-decisions`: the goal-success threshold and the shift of the
/// `correct` failure-point logit with the best dev F1 of the rare class (a
/// failed goal; any failure point but `correct`), so that a rare failure
/// is labelled at all (with satisfaction ratings, 6% of turns, the most
/// likely class is always "success"/"correct"). A decision that labels
/// every dev item a failure is never taken: it is the constant answer, not
/// the model's, and it would make every label a failure. A decision whose
/// rare class occurs in fewer than `MIN_RARE_DEV_DIALOGUES` dev dialogues
/// keeps its default. `dialogues`: each item's dev dialogue, beside `items`.
fn balanced_decisions(
    items: &BTreeMap<&str, Vec<(Vec<f32>, usize)>>,
    dialogues: &BTreeMap<&str, Vec<usize>>,
    temperatures: &BTreeMap<String, f64>,
    correct: usize,
) -> BalancedDecisions {
    let mut fits = BTreeMap::new();
    // Whether `head` has enough rare dev dialogues to fit, recorded in `fits`.
    let mut enough = |head: &str, rare: &dyn Fn(usize) -> bool| {
        let Some(its) = items.get(head) else {
            return false;
        };
        let rare_dev_dialogues = rare_dialogues(its, &dialogues[head], rare);
        let fitted = rare_dev_dialogues >= MIN_RARE_DEV_DIALOGUES;
        fits.insert(
            head.to_string(),
            DecisionFit {
                rare_dev_dialogues,
                fitted,
            },
        );
        fitted
    };
    let fit_success = enough("goal_success", &|target| target == 0);
    let fit_failure_point = enough("failure_point", &|target| target != correct);
    let temperature = |head: &str| temperatures.get(head).copied().unwrap_or(1.0);
    // The best of a grid, starting from the default: ties (and a model that
    // does not separate the classes at all) keep it.
    let best_of = |grid: &mut dyn Iterator<Item = f64>,
                   default: f64,
                   flagged: &dyn Fn(f64) -> Vec<bool>,
                   actual: &[bool]| {
        let score = |value: f64| {
            let predicted = flagged(value);
            if predicted.iter().all(|p| *p) {
                f64::NEG_INFINITY
            } else {
                minority_f1(&predicted, actual)
            }
        };
        grid.fold((score(default), default), |best, value| {
            let s = score(value);
            if s > best.0 + 1e-12 { (s, value) } else { best }
        })
        .1
    };
    let success_threshold = items
        .get("goal_success")
        .filter(|_| fit_success)
        .map_or(0.5, |its| {
            let t = temperature("goal_success");
            let failed: Vec<bool> = its.iter().map(|(_, y)| *y == 0).collect();
            let flagged = |threshold: f64| -> Vec<bool> {
                its.iter()
                    .map(|(z, _)| 1.0 / (1.0 + (-(z[1] as f64) / t).exp()) <= threshold)
                    .collect()
            };
            best_of(
                &mut (1..=99).map(|i| i as f64 / 100.0),
                0.5,
                &flagged,
                &failed,
            )
        });
    let correct_shift = items
        .get("failure_point")
        .filter(|_| fit_failure_point)
        .map_or(0.0, |its| {
            let t = temperature("failure_point");
            let failures: Vec<bool> = its.iter().map(|(_, y)| *y != correct).collect();
            let flagged = |shift: f64| -> Vec<bool> {
                its.iter()
                    .map(|(z, _)| {
                        let scaled: Vec<f64> = z.iter().map(|&v| v as f64 / t).collect();
                        shifted_argmax(&scaled, Some(correct), shift) != correct
                    })
                    .collect()
            };
            best_of(
                &mut (1..=24).map(|i| -0.25 * i as f64),
                0.0,
                &flagged,
                &failures,
            )
        });
    BalancedDecisions {
        success_threshold,
        correct_shift,
        fits,
    }
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

    #[test]
    fn annotations_for_turns_the_logs_lack_are_counted() {
        let turn = |d: &str, t: i32| Turn {
            dialogue_id: d.into(),
            turn_index: t,
            ..Turn::default()
        };
        let turns = [turn("d1", 0), turn("d1", 1)];
        let labels: LabelsByTurn = [("d1", 1), ("d1", 2), ("d9", 0)]
            .into_iter()
            .map(|(d, t)| ((d.to_string(), t), vec![Annotation::default()]))
            .collect();
        assert_eq!(not_in_logs(&turns, &labels), 2);
    }

    /// Three raters of a two-turn dialogue (and an unrated third turn with
    /// negative feedback), supervised under `policy` with rater weights.
    fn rated_dialogue(
        policy: AnnotatorPolicy,
        weights: &[(&str, f64)],
    ) -> (DialogueSupervision, LabelSets) {
        let turn = |t: i32, text: &str, feedback: Option<i8>| Turn {
            dialogue_id: "d1".into(),
            turn_index: t,
            user_utterance: text.into(),
            explicit_feedback: feedback,
            ..Turn::default()
        };
        let turns = [
            turn(0, "what is the weather", None),
            turn(1, "play some jazz", None),
            turn(2, "call my sister", Some(-1)),
        ];
        let rate = |who: &str, t: i32, goal: i32, success: bool, failure: &str| Annotation {
            dialogue_id: "d1".into(),
            turn_index: t,
            annotator_id: who.into(),
            goal_id: Some(goal),
            goal_success: Some(success),
            failure_point: Some(failure.into()),
            ..Annotation::default()
        };
        let annotations = vec![
            rate("a3", 0, 0, false, "defect"),
            rate("a1", 0, 0, true, "correct"),
            rate("a2", 0, 0, true, "defect"),
            rate("a1", 1, 1, true, "correct"),
            rate("a2", 1, 0, true, "correct"),
        ];
        let annotators: Vec<String> = ["a1", "a2", "a3"].map(String::from).to_vec();
        let labels = labels_by_turn(annotations, &annotators, policy);
        let sets = label_sets(&labels);
        let config = TrainConfig {
            annotator_policy: policy,
            ..TrainConfig::new("pre".into(), "logs".into(), "ann".into(), "out".into())
        };
        let rater_weights = weights.iter().map(|(a, w)| (a.to_string(), *w)).collect();
        let supervisor = Supervisor {
            config: &config,
            labels: &labels,
            label_sets: &sets,
            rater_weights: &rater_weights,
        };
        let refs: Vec<&Turn> = turns.iter().collect();
        let encoded = vec![
            EncodedTurn {
                ids: vec![0, 5, 2],
                utterance_offsets: vec![None, Some((0, 4)), None],
            };
            3
        ];
        let out = supervisor.dialogue("d1", &refs, &encoded, &mut SummaryBuilder::default());
        (out, sets)
    }

    #[test]
    fn annotator_policies_build_the_expected_targets() {
        let defect = |sets: &LabelSets| {
            sets.failure_points
                .iter()
                .position(|f| f == "defect")
                .unwrap() as u32
        };
        // first: a1's labels; its turn 1 starts a new goal (its goal 1 after 0).
        let (first, _) = rated_dialogue(AnnotatorPolicy::First, &[]);
        assert_eq!(first.annotated, 2);
        assert_eq!(
            (first.turns[0].success, first.turns[0].failure_point),
            (Some(true), Some(0))
        );
        assert_eq!(first.turns[1].boundary, Some(true));
        assert!(first.soft.iter().all(Option::is_none));
        // The unrated turn learns from its negative feedback.
        assert!(first.turns[2].weak_success.is_some_and(|p| p < 0.1));
        // majority: turn 0 defect (a2, a3) and success (a1, a2); turn 1's
        // boundary is a tie (a1 new goal, a2 same goal), so unlabelled.
        // (`first` reads a1 alone, so its label sets lack `defect`.)
        let (majority, sets) = rated_dialogue(AnnotatorPolicy::Majority, &[]);
        assert_eq!(
            (majority.turns[0].success, majority.turns[0].failure_point),
            (Some(true), Some(defect(&sets)))
        );
        assert_eq!(majority.turns[1].boundary, None);
        assert_eq!(majority.turns[1].failure_point, Some(0));
        assert!(majority.soft.iter().all(Option::is_none));
        // soft: the raters' shares, one item per turn; the hard fields keep
        // the majority (dev accuracy, calibration).
        let (soft, _) = rated_dialogue(AnnotatorPolicy::Soft, &[]);
        assert_eq!(soft.turns[0], majority.turns[0]);
        let turn0 = soft.soft[0].as_ref().unwrap();
        let (p, w) = turn0.success.unwrap();
        assert!((p - 2.0 / 3.0).abs() < 1e-6 && w == 1.0, "{p} {w}");
        let (distribution, w) = turn0.failure_point.clone().unwrap();
        let mut expected = vec![0f32; sets.failure_points.len()];
        (expected[0], expected[defect(&sets) as usize]) = (1.0 / 3.0, 2.0 / 3.0);
        assert!(
            distribution
                .iter()
                .zip(&expected)
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
        assert_eq!(w, 1.0);
        let turn1 = soft.soft[1].as_ref().unwrap();
        assert_eq!(turn1.boundary, Some((0.5, 1.0)));
        assert_eq!(turn1.success, Some((1.0, 1.0)));
        assert_eq!(soft.soft[2], None);
        // Rated heads take no weak label; the unrated turn keeps its own.
        assert_eq!(soft.turns[1].weak_boundary, None);
        assert!(soft.turns[2].weak_success.is_some_and(|p| p < 0.1));
        // all: each rater a row of its weight.
        let (all, _) = rated_dialogue(
            AnnotatorPolicy::All,
            &[("a1", 0.5), ("a2", 0.25), ("a3", 0.25)],
        );
        let turn0 = all.soft[0].as_ref().unwrap();
        assert_eq!(turn0.success, Some((0.75, 1.0)));
        assert_eq!(turn0.failure_point.as_ref().unwrap().0[0], 0.5);
        let (p, w) = all.soft[1].as_ref().unwrap().boundary.unwrap();
        assert!((p - 2.0 / 3.0).abs() < 1e-6 && w == 0.75, "{p} {w}");
    }

    #[test]
    fn soft_targets_replace_the_hard_ones_in_the_batch_targets() {
        let (soft, sets) = rated_dialogue(AnnotatorPolicy::Soft, &[]);
        let window = Window {
            turns: Vec::new(),
            targets: Vec::new(),
            supervision: soft.turns.clone(),
            origin: (4, 0),
        };
        let table: RaterTable = [(4, soft.soft.clone())].into_iter().collect();
        let classes = sets.failure_points.len();
        let targets = Targets::gather(&[&window], (1, 3), (3, 3), &table, (0, classes));
        // Turn 0: P(success) 2/3 as the target, weight 1; turn 2 unrated.
        assert!((targets.success.0[0] - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(targets.success.1, vec![1.0, 1.0, 0.0]);
        assert!(
            targets.intent_soft.is_none(),
            "no intents: no intent targets"
        );
        let (probs, mask) = targets.failure_soft.unwrap();
        assert_eq!(mask, vec![1.0, 1.0, 0.0]);
        assert_eq!(probs[classes], 1.0, "turn 1: all raters say correct");
        // Without soft targets (first, majority) the batch is as before.
        let hard = Targets::gather(&[&window], (1, 3), (3, 3), &RaterTable::new(), (0, classes));
        assert!(hard.failure_soft.is_none());
        assert_eq!(hard.success.0, vec![1.0, 1.0, 0.0]);
    }

    #[test]
    fn annotators_default_to_single_and_never_to_the_judges() {
        let present: BTreeSet<String> = ["a1", "a2", "a3", "single", "truth"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let path = std::path::Path::new("ann");
        assert_eq!(
            choose_annotators(&[], &present, path).unwrap(),
            vec!["single"]
        );
        let only: BTreeSet<String> = ["sgd"].iter().map(|s| s.to_string()).collect();
        assert_eq!(choose_annotators(&[], &only, path).unwrap(), vec!["sgd"]);
        let several: BTreeSet<String> = ["a1", "a2", "truth"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let error = choose_annotators(&[], &several, path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--annotators"), "{error}");
        let error = choose_annotators(&["b9".into()], &present, path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no annotations by annotator `b9`"),
            "{error}"
        );
    }

    /// Each item its own dev dialogue.
    fn one_dialogue_each<'a>(
        items: &BTreeMap<&'a str, Vec<(Vec<f32>, usize)>>,
    ) -> BTreeMap<&'a str, Vec<usize>> {
        items
            .iter()
            .map(|(head, its)| (*head, (0..its.len()).collect()))
            .collect()
    }

    /// 90 successes at logit 2, 10 failures at logit 0.5: P > 0.5 for all,
    /// so a 0.5 threshold labels every goal a success (failed-goal F1 0);
    /// failure points (correct = 0, defect = 1) where defect turns lean
    /// correct too. Separable, but not at the defaults.
    fn separable_items() -> BTreeMap<&'static str, Vec<(Vec<f32>, usize)>> {
        let mut success: Vec<(Vec<f32>, usize)> = vec![(vec![0.0, 2.0], 1); 90];
        success.extend(vec![(vec![0.0, 0.5], 0); 10]);
        let mut failure: Vec<(Vec<f32>, usize)> = vec![(vec![3.0, 0.0], 0); 90];
        failure.extend(vec![(vec![1.0, 0.0], 1); 10]);
        BTreeMap::from([("goal_success", success), ("failure_point", failure)])
    }

    #[test]
    fn balanced_decisions_label_a_rare_failure_that_accuracy_never_would() {
        let items = separable_items();
        let fitted = balanced_decisions(&items, &one_dialogue_each(&items), &BTreeMap::new(), 0);
        let p = |z: f64| 1.0 / (1.0 + (-z).exp());
        let threshold = fitted.success_threshold;
        assert!(threshold > p(0.5) && threshold < p(2.0), "{threshold}");
        let shift = fitted.correct_shift;
        assert!(shift < -1.0 && shift > -3.0, "{shift}");
        let both_fitted = DecisionFit {
            rare_dev_dialogues: 10,
            fitted: true,
        };
        assert_eq!(fitted.fits["goal_success"], both_fitted);
        assert_eq!(fitted.fits["failure_point"], both_fitted);
        assert_eq!(minority_f1(&[true, false], &[true, false]), 1.0);
        // A model that does not tell the classes apart keeps the defaults
        // (10 rare dialogues of each, enough to fit): only labelling every
        // item a failure would raise the failure F1.
        let blind = BTreeMap::from([
            (
                "goal_success",
                [vec![(vec![0.0, 2.0], 1); 10], vec![(vec![0.0, 2.0], 0); 10]].concat(),
            ),
            (
                "failure_point",
                [vec![(vec![3.0, 0.0], 0); 10], vec![(vec![3.0, 0.0], 1); 10]].concat(),
            ),
        ]);
        let kept = balanced_decisions(&blind, &one_dialogue_each(&blind), &BTreeMap::new(), 0);
        assert_eq!((kept.success_threshold, kept.correct_shift), (0.5, 0.0));
        assert!(kept.fits.values().all(|fit| fit.fitted));
        // 1 of 3 flagged right, 1 of 2 found: F1 = 2 * 1 / (3 + 2).
        let f1 = minority_f1(&[true, true, true, false], &[true, false, false, true]);
        assert!((f1 - 0.4).abs() < 1e-9);
    }

    #[test]
    fn a_decision_whose_rare_class_is_in_few_dev_dialogues_keeps_its_default() {
        // The separable items, but the 10 failed goals and the 10 defect
        // turns come from 3 dev dialogues: too few to fit on.
        let items = separable_items();
        // Items 0-89 from dialogues 3.., the rare ones from dialogues 0, 1, 2.
        let dialogues: Vec<usize> = (0..100)
            .map(|i| if i < 90 { 3 + i } else { i % 3 })
            .collect();
        let by_head = BTreeMap::from([
            ("goal_success", dialogues.clone()),
            ("failure_point", dialogues),
        ]);
        let kept = balanced_decisions(&items, &by_head, &BTreeMap::new(), 0);
        assert_eq!((kept.success_threshold, kept.correct_shift), (0.5, 0.0));
        let too_few = DecisionFit {
            rare_dev_dialogues: 3,
            fitted: false,
        };
        assert_eq!(kept.fits["goal_success"], too_few);
        assert_eq!(kept.fits["failure_point"], too_few);
        assert_eq!(MIN_RARE_DEV_DIALOGUES, 10);
    }

    #[test]
    fn encoder_layers_are_read_from_variable_names() {
        assert_eq!(
            encoder_layer("roberta.encoder.layer.11.output.dense.weight"),
            Some(11)
        );
        assert_eq!(
            encoder_layer("roberta.embeddings.word_embeddings.weight"),
            None
        );
        assert_eq!(encoder_layer("dialogue.layer.0.output.dense.weight"), None);
    }

    #[test]
    fn bio_tags_follow_byte_offsets() {
        // "play purple haze": tokens play(0..4) purple(5..11) haze(12..16), then a special.
        let offsets = vec![None, Some((0, 4)), Some((5, 11)), Some((12, 16)), None];
        let spans = vec![SlotSpan {
            slot: "song".into(),
            start: 5,
            end: 16,
        }];
        let types = vec!["artist".to_string(), "song".to_string()];
        // song is type 1: B = 3, I = 4.
        assert_eq!(
            bio_tags(&offsets, &spans, &types),
            vec![None, Some(0), Some(3), Some(4), None]
        );
    }
}
