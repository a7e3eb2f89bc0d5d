//! `labelgen train`: supervised multi-task training of the heads (goal
//! boundary, goal success, intent, slots, failure point) on top of a
//! pretrained model, from an annotator's labels and weak labels from the
//! logs' own feedback, with early stopping on a dev split and temperature
//! scaling there for calibrated confidences.

pub mod weak;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::dataset::{read_table, write_file_atomic};
use crate::data::tables::{Annotation, FailurePoint, SlotSpan, Turn};
use crate::model::batch::{
    Supervision, Window, bucketed_batches, make_batch, turn_input, window_ranges,
};
use crate::model::cache::EncodingCache;
use crate::model::checkpoint::{self, fill_varmap, named_vars};
use crate::model::config::{
    DialogueConfig, LabelSets, Lookahead, ModelConfig, TurnContext, shifted_argmax, softmax,
};
use crate::model::loss::{masked_bce, masked_cross_entropy};
use crate::model::optim::AdamW;
use crate::model::tokenizer::{EncodedTurn, encode_with_offsets, special_ids};
use crate::model::{Batch, DialogueModel, device};
use crate::progress::Progress;
use weak::{SummaryBuilder, Target, WeakRules, WeakSummary};

#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// A pretrained model directory.
    pub init: PathBuf,
    pub logs: PathBuf,
    pub labels: PathBuf,
    pub out: PathBuf,
    /// Annotators whose labels train the heads (first one wins per turn).
    /// Empty: "single" if present, else the table's only annotator.
    pub annotators: Vec<String>,
    pub seed: u64,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    pub learning_rate: f64,
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
    /// on dev for macro-F1 (rare failures); otherwise 0.5 and 0.
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
    /// Continue from the checkpoint an interrupted run left (MODEL.checkpoint).
    pub resume: bool,
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
            seed: 0,
            epochs: 8,
            max_steps: None,
            batch_size: 32,
            learning_rate: 5e-4,
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
            resume: false,
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
    pub train_dialogues: usize,
    pub dev_dialogues: usize,
    pub labelled_turns: usize,
    pub contextless: bool,
    pub utterance_only: bool,
    pub freeze_encoder: bool,
    pub train_top_layers: usize,
    /// Decision settings fitted on dev (0.5 and 0 without --balance-decisions).
    pub success_threshold: f64,
    pub correct_shift: f64,
    /// Distinct turns whose encodings were cached (--freeze-encoder), and their size.
    pub cached_turns: usize,
    pub cache_megabytes: f64,
    pub resumed_from_epoch: Option<usize>,
    pub weak_labels: WeakSummary,
    pub best_epoch: usize,
    pub epochs: Vec<EpochReport>,
    pub temperatures: BTreeMap<String, f64>,
    pub boundary_threshold: f64,
    pub rephrase_boundary_shift: f64,
    pub intent_change_weight: f64,
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

/// Where training stands; saved with each checkpoint.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct TrainState {
    step: usize,
    epochs: Vec<EpochReport>,
    /// (dev loss, epoch) of the best epoch so far.
    best: Option<(f64, usize)>,
    stopped_early: bool,
}

const STATE: &str = "state.json";
const OPTIMIZER: &str = "optimizer.safetensors";
/// The best epoch's weights, kept for early stopping.
const BEST: &str = "best.safetensors";

fn save_checkpoint(
    dir: &Path,
    config: &ModelConfig,
    varmap: &VarMap,
    tokenizer: &tokenizers::Tokenizer,
    optimizer: &AdamW,
    best: &[(String, Tensor)],
    state: &TrainState,
) -> anyhow::Result<()> {
    checkpoint::save(
        dir,
        config,
        varmap,
        tokenizer,
        &serde_json::json!({"stage": "train checkpoint", "step": state.step}),
    )?;
    optimizer.save(&dir.join(OPTIMIZER))?;
    let best: HashMap<String, Tensor> = best.iter().cloned().collect();
    let staging = dir.join(format!(".{BEST}.tmp"));
    candle_core::safetensors::save(&best, &staging)?;
    std::fs::rename(&staging, dir.join(BEST))?;
    write_file_atomic(&dir.join(STATE), serde_json::to_string(state)?.as_bytes())
}

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
}

impl LossSettings {
    fn token_states(
        &self,
        model: &DialogueModel,
        batch: &Batch,
        windows: &[&Window],
    ) -> anyhow::Result<Tensor> {
        match &self.cache {
            // The cached lower layers, then the trained layers above them.
            Some(cache) => Ok(model.roberta.forward_upper(
                &cache.token_states(windows)?,
                &batch.attention_mask,
                cache.layers,
            )?),
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
    let dev = batch.input_ids.device();
    let (b, t) = batch.turn_mask.dims2()?;
    let (n, l) = batch.input_ids.dims2()?;
    let token_states = settings.token_states(model, batch, windows)?;
    let states = model.dialogue_states_t(batch, &token_states, dropout)?;
    let logits = heads.turn_logits(&states)?;
    let mut boundary = vec![0f32; b * t];
    let mut boundary_mask = vec![0f32; b * t];
    let mut success = vec![0f32; b * t];
    let mut success_mask = vec![0f32; b * t];
    let (mut intent, mut intent_mask) = (vec![0u32; b * t], vec![0f32; b * t]);
    let (mut failure, mut failure_mask) = (vec![0u32; b * t], vec![0f32; b * t]);
    let (mut bio, mut bio_mask) = (vec![0u32; n * l], vec![0f32; n * l]);
    // Weak labels: (target, mask) per turn slot, per target.
    let mut weak_boundary = (vec![0f32; b * t], vec![0f32; b * t]);
    let mut weak_success = (vec![0f32; b * t], vec![0f32; b * t]);
    let mut weak_defect = (vec![0f32; b * t], vec![0f32; b * t]);
    let mut turn = 0;
    for (w, window) in windows.iter().enumerate() {
        for (k, s) in window.supervision.iter().enumerate() {
            let slot = w * t + k;
            if let Some(v) = s.boundary {
                (boundary[slot], boundary_mask[slot]) = (f32::from(u8::from(v)), 1.0);
            }
            if let Some(v) = s.success {
                (success[slot], success_mask[slot]) = (f32::from(u8::from(v)), 1.0);
            }
            if let Some(v) = s.intent {
                (intent[slot], intent_mask[slot]) = (v, 1.0);
            }
            if let Some(v) = s.failure_point {
                (failure[slot], failure_mask[slot]) = (v, 1.0);
            }
            for (weak, value) in [
                (&mut weak_boundary, s.weak_boundary),
                (&mut weak_success, s.weak_success),
                (&mut weak_defect, s.weak_defect),
            ] {
                if let Some(p) = value {
                    (weak.0[slot], weak.1[slot]) = (p, 1.0);
                }
            }
            if let Some(tags) = &s.bio {
                for (i, tag) in tags.iter().enumerate().take(l) {
                    if let Some(tag) = tag {
                        bio[turn * l + i] = *tag;
                        bio_mask[turn * l + i] = 1.0;
                    }
                }
            }
            turn += 1;
        }
    }
    let t2 = |v: Vec<f32>| Tensor::from_vec(v, (b, t), dev);
    let flat_u = |v: Vec<u32>, m: usize| Tensor::from_vec(v, m, dev);
    let flat_f = |v: Vec<f32>, m: usize| Tensor::from_vec(v, m, dev);
    let turn_states = states
        .reshape((b * t, states.dim(2)?))?
        .index_select(&batch.turn_slots, 0)?;
    let slot_logits = heads.slot_logits(&token_states, &batch.attention_mask, &turn_states)?;
    let tags = slot_logits.dim(2)?;
    let mut accuracy = BTreeMap::new();
    let mut count = |name: &'static str,
                     logits: &Tensor,
                     targets: &[u32],
                     mask: &[f32]|
     -> anyhow::Result<()> {
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
        accuracy.insert(name, (right, total));
        Ok(())
    };
    // No intents (USS ratings): the intent head has no classes and no loss.
    let intent_classes = logits.intent.dim(2)?;
    let intent_logits = logits.intent.reshape((b * t, intent_classes))?;
    let failure_logits = logits.failure_point.reshape((b * t, ()))?;
    if intent_classes > 0 {
        count("intent", &intent_logits, &intent, &intent_mask)?;
    }
    count("failure_point", &failure_logits, &failure, &failure_mask)?;
    let w = &settings.task_weights;
    let slot_flat = slot_logits.reshape((n * l, tags))?;
    // Tag accuracy inside gold slot spans: over all tokens, the O majority
    // (every response token) would hide whether the tagger learns anything.
    let span_mask: Vec<f32> = bio
        .iter()
        .zip(&bio_mask)
        .map(|(&tag, &m)| if tag == 0 { 0.0 } else { m })
        .collect();
    count("slot_span_tokens", &slot_flat, &bio, &span_mask)?;
    let annotated = [
        (
            w.goal_boundary,
            masked_bce(&logits.boundary, &t2(boundary)?, &t2(boundary_mask)?)?,
        ),
        (
            w.goal_success,
            masked_bce(&logits.success, &t2(success)?, &t2(success_mask)?)?,
        ),
        (
            w.intent,
            if intent_classes > 0 {
                masked_cross_entropy(
                    &intent_logits,
                    &flat_u(intent, b * t)?,
                    &flat_f(intent_mask, b * t)?,
                    None,
                )?
            } else {
                Tensor::zeros((), DType::F32, dev)?
            },
        ),
        (
            w.failure_point,
            masked_cross_entropy(
                &failure_logits,
                &flat_u(failure, b * t)?,
                &flat_f(failure_mask, b * t)?,
                Some(&settings.failure_weights),
            )?,
        ),
        (
            w.slots,
            masked_cross_entropy(
                &slot_flat,
                &flat_u(bio, n * l)?,
                &flat_f(bio_mask, n * l)?,
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
                &defect_logits(&failure_logits, settings.correct)?,
                &flat_f(weak_defect.0, b * t)?,
                &flat_f(weak_defect.1, b * t)?,
            )?,
        ),
    ];
    let mut loss = Tensor::zeros((), candle_core::DType::F32, dev)?;
    for (weight, term) in annotated {
        loss = (loss + (term * weight)?)?;
    }
    for (weight, term) in weak {
        loss = (loss + (term * (weight * settings.weak_weight))?)?;
    }
    Ok((loss, accuracy))
}

pub fn run(config: &TrainConfig) -> anyhow::Result<TrainSummary> {
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
    let started = Instant::now();
    let base = checkpoint::read_config(&config.init)?;
    let (_, tokenizer) = checkpoint::load(&config.init)?;
    let (turns, _) = read_table::<Turn>(&config.logs)?;
    let (annotations, _) = read_table::<Annotation>(&config.labels)?;
    let present: BTreeSet<String> = annotations.iter().map(|a| a.annotator_id.clone()).collect();
    let annotators = choose_annotators(&config.annotators, &present, &config.labels)?;
    // The first chosen annotator with a row for a turn gives its labels.
    let mut labels: HashMap<(String, i32), Annotation> = HashMap::new();
    for annotator in annotators.iter().rev() {
        for a in annotations.iter().filter(|a| &a.annotator_id == annotator) {
            labels.insert((a.dialogue_id.clone(), a.turn_index), a.clone());
        }
    }
    let intents: Vec<String> = labels
        .values()
        .filter_map(|a| a.intent.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let slot_types: Vec<String> = labels
        .values()
        .flat_map(|a| a.slots.iter().flatten().map(|s| s.slot.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The pipeline classes always (a head trained on simulated data keeps its
    // shape); `defect` (stage unknown, from imported satisfaction ratings)
    // only when the chosen labels use it.
    let uses_defect = labels
        .values()
        .any(|a| a.failure_point.as_deref() == Some(FailurePoint::Defect.as_str()));
    let failure_points: Vec<String> = FailurePoint::PIPELINE
        .iter()
        .chain(uses_defect.then_some(&FailurePoint::Defect))
        .map(|f| f.as_str().to_string())
        .collect();
    // Labels without intents (USS rates satisfaction only) train the other
    // heads; the intent head is then empty and `label` writes intent null.
    let label_sets = LabelSets::new(intents, slot_types, failure_points);
    let model_config = ModelConfig {
        labels: Some(label_sets.clone()),
        context: config.context,
        dialogue: DialogueConfig {
            lookahead: config
                .lookahead
                .map_or(base.dialogue.lookahead, Lookahead::limit),
            ..base.dialogue.clone()
        },
        ..base.clone()
    };

    // Dialogues as windows with supervision.
    let mut by_dialogue: BTreeMap<&str, Vec<&Turn>> = BTreeMap::new();
    for turn in &turns {
        by_dialogue.entry(&turn.dialogue_id).or_default().push(turn);
    }
    let pairs: Vec<(String, String)> = by_dialogue
        .values()
        .flatten()
        .map(|t| (t.user_utterance.clone(), t.system_response.clone()))
        .collect();
    let encoded = encode_with_offsets(
        &tokenizer,
        &pairs,
        model_config.max_tokens,
        model_config.context.utterance_only(),
    )?;
    let (mut train_windows, mut dev_windows) = (Vec::new(), Vec::new());
    let (mut train_dialogues, mut dev_dialogues, mut labelled_turns) = (0, 0, 0);
    let mut next = 0;
    let mut weak_summary = SummaryBuilder::default();
    let use_weak = config.weak_rules.weight > 0.0;
    for (d, (dialogue, dialogue_turns)) in by_dialogue.iter_mut().enumerate() {
        dialogue_turns.sort_by_key(|t| t.turn_index);
        let votes = weak::votes(dialogue_turns, &config.weak_rules);
        // Experiments on a labelled subset: the other dialogues' annotations are not read.
        let labelled =
            crate::data::split::in_share(dialogue, config.labelled_share, config.seed ^ 0x5eed);
        let supervision: Vec<Supervision> = dialogue_turns
            .iter()
            .enumerate()
            .map(|(k, turn)| {
                let e = &encoded[next + k];
                let annotation = labelled
                    .then(|| labels.get(&(dialogue.to_string(), turn.turn_index)))
                    .flatten();
                let previous = k.checked_sub(1).filter(|_| labelled).and_then(|p| {
                    labels.get(&(dialogue.to_string(), dialogue_turns[p].turn_index))
                });
                weak_summary.add(&votes[k], annotation, previous);
                let weak = weak::combine(&votes[k]);
                let supervision = annotation.map_or_else(Supervision::default, |a| {
                    labelled_turns += 1;
                    annotated_supervision(a, previous, e, &label_sets)
                });
                let vote = |target: Target| weak.get(&target).copied().filter(|_| use_weak);
                Supervision {
                    rephrase: k > 0
                        && crate::data::feedback::is_rephrase(
                            &dialogue_turns[k - 1].user_utterance,
                            &turn.user_utterance,
                        ),
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
            })
            .collect();
        let inputs: Vec<_> = dialogue_turns
            .iter()
            .enumerate()
            .map(|(k, t)| turn_input(t, encoded[next + k].ids.clone(), &model_config.features))
            .collect();
        next += dialogue_turns.len();
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

    // Rare failure classes weigh more: (mean class count / class count)^balance, clipped.
    let mut class_counts = vec![0usize; label_sets.failure_points.len()];
    for s in train_windows.iter().flat_map(|w| &w.supervision) {
        if let Some(f) = s.failure_point {
            class_counts[f as usize] += 1;
        }
    }
    let labelled: usize = class_counts.iter().sum();
    let weights: Vec<f32> = class_counts
        .iter()
        .map(|&n| {
            ((labelled as f64 / class_counts.len() as f64 / n.max(1) as f64)
                .powf(config.class_balance)
                .clamp(0.5, 5.0)) as f32
        })
        .collect();
    let varmap = VarMap::new();
    let model = DialogueModel::new(
        &model_config,
        VarBuilder::from_varmap(&varmap, DType::F32, &device()),
    )?;
    checkpoint::seeded_init(&varmap, config.seed)?;
    fill_varmap(
        &varmap,
        &config.init.join(checkpoint::WEIGHTS),
        |n| vec![n.to_string()],
        |n| !n.starts_with("heads.") || n.starts_with("heads.swap"),
    )?;
    let pad = special_ids(&tokenizer)?.pad;
    let encoder_layers = model.roberta.num_layers();
    anyhow::ensure!(
        config.train_top_layers <= encoder_layers,
        "--train-top-layers {}: the encoder of {} has only {encoder_layers} layers",
        config.train_top_layers,
        config.init.display()
    );
    let cached_layers = encoder_layers - config.train_top_layers;
    let cache = if config.freeze_encoder || config.train_top_layers > 0 {
        Some(EncodingCache::build(
            &model,
            train_windows.iter().chain(&dev_windows),
            pad,
            128,
            cached_layers,
            DType::F16,
            config.quiet,
        )?)
    } else {
        None
    };
    let (cached_turns, cache_bytes) = cache.as_ref().map_or((0, 0), |c| (c.len(), c.bytes));
    let settings = LossSettings {
        failure_weights: Tensor::new(weights, &device())?,
        task_weights: config.task_weights.clone(),
        weak_weight: config.weak_rules.weight,
        correct: label_sets
            .failure_points
            .iter()
            .position(|f| f == "correct")
            .unwrap_or(0),
        cache,
    };
    // A frozen encoder (and the MLM head, unused here) takes no updates.
    let trainable: Vec<_> = named_vars(&varmap)?
        .into_iter()
        .filter(|(name, _)| {
            let frozen = (config.freeze_encoder || config.train_top_layers > 0)
                && name.starts_with("roberta.")
                && encoder_layer(name).is_none_or(|i| i < cached_layers);
            !(frozen || name.starts_with("lm_head."))
        })
        .collect();
    let mut optimizer = AdamW::new(trainable, config.learning_rate, 0.01)?;
    let checkpoint_dir = checkpoint::resume_dir(&config.out);
    let mut state = TrainState::default();
    let resumed_from_epoch = if config.resume && checkpoint_dir.join(STATE).is_file() {
        state = serde_json::from_slice(&std::fs::read(checkpoint_dir.join(STATE))?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", checkpoint_dir.join(STATE).display()))?;
        fill_varmap(
            &varmap,
            &checkpoint_dir.join(checkpoint::WEIGHTS),
            |n| vec![n.to_string()],
            |_| true,
        )?;
        optimizer.load(&checkpoint_dir.join(OPTIMIZER), state.step)?;
        Some(state.epochs.len())
    } else {
        None
    };
    let batches_per_epoch = bucketed_batches(&train_windows, config.batch_size).len();
    let total_steps = config
        .max_steps
        .unwrap_or(usize::MAX)
        .min(batches_per_epoch * config.epochs)
        .max(1);
    let warmup = (total_steps / 16).max(1);
    let progress = Progress::new(total_steps as u64, "steps", config.quiet);
    progress.inc(state.step as u64);
    let mut best_weights: Option<Vec<(String, Tensor)>> = if resumed_from_epoch.is_some() {
        let saved = candle_core::safetensors::load(checkpoint_dir.join(BEST), &device())?;
        let mut saved: Vec<(String, Tensor)> = saved.into_iter().collect();
        saved.sort_by(|a, b| a.0.cmp(&b.0));
        Some(saved)
    } else {
        None
    };
    let start_epoch = state.epochs.len();
    for epoch in start_epoch..config.epochs {
        if state.step >= total_steps || state.stopped_early {
            break;
        }
        // The batch order depends only on the seed and the epoch, so a
        // resumed run sees exactly the batches an uninterrupted one would.
        let mut order = bucketed_batches(&train_windows, config.batch_size);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9),
        ));
        let mut losses = Vec::new();
        for indices in order {
            if state.step >= total_steps {
                break;
            }
            let step = state.step;
            let chosen: Vec<&Window> = indices.iter().map(|&i| &train_windows[i]).collect();
            let (batch, _) = make_batch(&chosen, pad, &device())?;
            // Dropout masks depend on the seed and the step only (deterministic, resumable).
            let dropout = (config.dropout > 0.0).then(|| {
                (
                    config.dropout,
                    config.seed ^ (step as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
                )
            });
            let (loss, _) = supervised_loss(&model, &batch, &chosen, &settings, dropout)?;
            let value = loss.to_scalar::<f32>()? as f64;
            anyhow::ensure!(
                value.is_finite(),
                "the loss became {value} at step {step}; lower --learning-rate"
            );
            let grads = loss.backward()?;
            let norm = optimizer.grad_norm(&grads)?;
            optimizer.learning_rate = if step < warmup {
                config.learning_rate * (step + 1) as f64 / warmup as f64
            } else {
                config.learning_rate * (total_steps - step) as f64
                    / (total_steps - warmup).max(1) as f64
            };
            optimizer.step(&grads, if norm > 1.0 { 1.0 / norm } else { 1.0 })?;
            losses.push(value);
            state.step += 1;
            progress.inc(1);
            progress.message(format!(
                "epoch {} loss {:.4}",
                epoch + 1,
                losses.iter().rev().take(50).sum::<f64>() / losses.len().min(50) as f64
            ));
        }
        let (dev_loss, dev_accuracy) =
            evaluate(&model, &dev_windows, config.batch_size, pad, &settings)?;
        state.epochs.push(EpochReport {
            epoch: epoch + 1,
            steps: state.step,
            train_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            dev_loss,
            dev_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        });
        if state.best.is_none_or(|(loss, _)| dev_loss < loss) {
            state.best = Some((dev_loss, epoch + 1));
            best_weights = Some(checkpoint::snapshot(&varmap)?);
        } else if state
            .best
            .is_some_and(|(_, e)| epoch + 1 - e >= config.patience)
        {
            state.stopped_early = true;
        }
        let more = epoch + 1 < config.epochs && state.step < total_steps && !state.stopped_early;
        if more {
            save_checkpoint(
                &checkpoint_dir,
                &model_config,
                &varmap,
                &tokenizer,
                &optimizer,
                best_weights.as_deref().unwrap_or_default(),
                &state,
            )?;
        }
        if more && config.stop_after_epochs == Some(epoch + 1) {
            anyhow::bail!(
                "stopped after epoch {} as asked (--resume continues from {})",
                epoch + 1,
                checkpoint_dir.display()
            );
        }
    }
    progress.finish();
    let best_epoch = state.best.map_or(0, |(_, e)| e);
    let weights = best_weights.ok_or_else(|| anyhow::anyhow!("no epoch ran"))?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
    for (name, tensor) in &weights {
        vars[name].set(tensor)?;
    }
    drop(vars);
    let Calibration {
        temperatures,
        boundary_threshold,
        rephrase_boundary_shift,
        intent_change_weight,
        success_threshold,
        correct_shift,
    } = calibrate(
        &model,
        &dev_windows,
        config.batch_size,
        pad,
        &settings,
        config.balance_decisions,
    )?;
    let mut final_config = model_config.clone();
    if let Some(l) = final_config.labels.as_mut() {
        l.temperatures = temperatures.clone();
        l.boundary_threshold = boundary_threshold;
        l.rephrase_boundary_shift = rephrase_boundary_shift;
        l.intent_change_weight = intent_change_weight;
        l.success_threshold = success_threshold;
        l.correct_shift = correct_shift;
    }
    let mut weak_summary = weak_summary.finish();
    if !use_weak {
        // The rules were analysed, but --weak-weight 0 kept their votes out of the loss.
        weak_summary.votes_used = 0;
    }
    let training = serde_json::json!({
        "stage": "train",
        "init": config.init.display().to_string(),
        "annotators": annotators,
        "seed": config.seed,
        "settings": config,
        "best_epoch": best_epoch,
        "epochs": state.epochs,
        "temperatures": temperatures,
        "boundary_threshold": boundary_threshold,
        "rephrase_boundary_shift": rephrase_boundary_shift,
        "intent_change_weight": intent_change_weight,
        "success_threshold": success_threshold,
        "correct_shift": correct_shift,
        "weak_labels": weak_summary,
    });
    checkpoint::save(&config.out, &final_config, &varmap, &tokenizer, &training)?;
    if checkpoint_dir.exists() {
        std::fs::remove_dir_all(&checkpoint_dir)?;
    }
    Ok(TrainSummary {
        out: config.out.display().to_string(),
        annotators,
        train_dialogues,
        dev_dialogues,
        labelled_turns,
        contextless: config.context.contextless(),
        utterance_only: config.context.utterance_only(),
        freeze_encoder: config.freeze_encoder,
        success_threshold,
        correct_shift,
        train_top_layers: config.train_top_layers,
        cached_turns,
        cache_megabytes: cache_bytes as f64 / 1e6,
        resumed_from_epoch,
        weak_labels: weak_summary,
        best_epoch,
        epochs: state.epochs,
        temperatures,
        boundary_threshold,
        rephrase_boundary_shift,
        intent_change_weight,
        seconds: started.elapsed().as_secs_f64(),
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
    Ok((
        loss_sum / batches.max(1) as f64,
        counts
            .into_iter()
            .map(|(k, (r, t))| (k.to_string(), r as f64 / t.max(1) as f64))
            .collect(),
    ))
}

/// Temperature per head, the one of a grid that minimises the dev
/// negative log-likelihood (Guo et al., 2017), and the boundary threshold
/// that maximises dev boundary F1.
fn calibrate(
    model: &DialogueModel,
    windows: &[Window],
    batch_size: usize,
    pad: u32,
    settings: &LossSettings,
    balance_decisions: bool,
) -> anyhow::Result<Calibration> {
    let heads = model
        .heads
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("model has no supervised heads"))?;
    // (logits, target) per head; binary heads as two-class logits [0, x].
    let mut items: BTreeMap<&str, Vec<(Vec<f32>, usize)>> = BTreeMap::new();
    // Beside each goal_boundary item: whether its turn rephrases the previous
    // one, and the intent logits of the previous turn and its own.
    let mut boundary_rephrase = Vec::new();
    let mut boundary_intents: Vec<Option<(Vec<f32>, Vec<f32>)>> = Vec::new();
    for indices in bucketed_batches(windows, batch_size * 2) {
        let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
        let (batch, _) = make_batch(&chosen, pad, &device())?;
        let states =
            model.dialogue_states(&batch, &settings.token_states(model, &batch, &chosen)?)?;
        let logits = heads.turn_logits(&states)?;
        let (boundary, success): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
            (logits.boundary.to_vec2()?, logits.success.to_vec2()?);
        let intent: Vec<Vec<Vec<f32>>> = logits.intent.to_vec3()?;
        let failure: Vec<Vec<Vec<f32>>> = logits.failure_point.to_vec3()?;
        for (w, window) in chosen.iter().enumerate() {
            for (k, s) in window.supervision.iter().enumerate() {
                if let Some(v) = s.boundary {
                    boundary_rephrase.push(s.rephrase);
                    boundary_intents.push(
                        k.checked_sub(1)
                            .map(|j| (intent[w][j].clone(), intent[w][k].clone())),
                    );
                    items
                        .entry("goal_boundary")
                        .or_default()
                        .push((vec![0.0, boundary[w][k]], usize::from(v)));
                }
                if let Some(v) = s.success {
                    items
                        .entry("goal_success")
                        .or_default()
                        .push((vec![0.0, success[w][k]], usize::from(v)));
                }
                if let Some(v) = s.intent {
                    items
                        .entry("intent")
                        .or_default()
                        .push((intent[w][k].clone(), v as usize));
                }
                if let Some(v) = s.failure_point {
                    items
                        .entry("failure_point")
                        .or_default()
                        .push((failure[w][k].clone(), v as usize));
                }
            }
        }
    }
    let nll = |items: &[(Vec<f32>, usize)], t: f64| -> f64 {
        items
            .iter()
            .map(|(logits, y)| {
                let scaled: Vec<f64> = logits.iter().map(|&z| z as f64 / t).collect();
                let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let log_sum = max + scaled.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
                log_sum - scaled[*y]
            })
            .sum::<f64>()
    };
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
    // Boundary decisions: the threshold on the calibrated probability, and
    // the logit shift of rephrased turns (retries usually continue their
    // goal), with the best dev F1.
    let t = temperatures.get("goal_boundary").copied().unwrap_or(1.0);
    let intent_t = temperatures.get("intent").copied().unwrap_or(1.0);
    // (calibrated probability, is a boundary, rephrase, P(intent changed))
    let boundaries: Vec<(f64, bool, bool, Option<f64>)> = items
        .get("goal_boundary")
        .map(|its| {
            its.iter()
                .zip(&boundary_rephrase)
                .zip(&boundary_intents)
                .map(|(((z, y), rephrase), intents)| {
                    let change = intents.as_ref().and_then(|(previous, current)| {
                        LabelSets::intent_change(
                            &softmax(previous, intent_t),
                            &softmax(current, intent_t),
                        )
                    });
                    (
                        1.0 / (1.0 + (-(z[1] as f64) / t).exp()),
                        *y == 1,
                        *rephrase,
                        change,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut decider = LabelSets::new(Vec::new(), Vec::new(), Vec::new());
    let mut f1 = |threshold: f64, shift: f64, weight: f64| {
        decider.rephrase_boundary_shift = shift;
        decider.intent_change_weight = weight;
        let predicted_new = |(p, _, rephrase, change): &(f64, bool, bool, Option<f64>)| {
            decider.boundary_probability(*p, *rephrase, *change) > threshold
        };
        let tp = boundaries
            .iter()
            .filter(|b| b.1 && predicted_new(b))
            .count() as f64;
        let predicted = boundaries.iter().filter(|b| predicted_new(b)).count() as f64;
        let actual = boundaries.iter().filter(|b| b.1).count() as f64;
        if predicted + actual == 0.0 {
            0.0
        } else {
            2.0 * tp / (predicted + actual)
        }
    };
    // The contextless baseline labels each turn alone: its boundaries do not
    // get to compare a turn's intent with the previous turn's.
    let weights = if model.config.context.contextless() {
        0..=0
    } else {
        0..=8
    };
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
    let (success_threshold, correct_shift) = if balance_decisions {
        balanced_decisions(&items, &temperatures, settings.correct)
    } else {
        (0.5, 0.0)
    };
    Ok(Calibration {
        temperatures,
        boundary_threshold: best.1,
        rephrase_boundary_shift: best.2,
        intent_change_weight: best.3,
        success_threshold,
        correct_shift,
    })
}

/// What `calibrate` fits on the dev split.
struct Calibration {
    temperatures: BTreeMap<String, f64>,
    boundary_threshold: f64,
    rephrase_boundary_shift: f64,
    intent_change_weight: f64,
    success_threshold: f64,
    correct_shift: f64,
}

/// Mean F1 over the classes present in `targets`.
fn macro_f1(predicted: &[usize], targets: &[usize]) -> f64 {
    let classes: BTreeSet<usize> = targets.iter().copied().collect();
    let f1 = |c: usize| {
        let tp = predicted
            .iter()
            .zip(targets)
            .filter(|(p, y)| **p == c && **y == c)
            .count() as f64;
        let predicted_c = predicted.iter().filter(|p| **p == c).count() as f64;
        let actual_c = targets.iter().filter(|y| **y == c).count() as f64;
        2.0 * tp / (predicted_c + actual_c).max(1.0)
    };
    classes.iter().map(|&c| f1(c)).sum::<f64>() / classes.len().max(1) as f64
}

/// `--balance-decisions`: the goal-success threshold and the shift of the
/// `correct` failure-point logit with the best dev macro-F1, so that a rare
/// failure class is labelled at all (with satisfaction ratings, 8% of
/// turns, the most likely class is always "success"/"correct").
fn balanced_decisions(
    items: &BTreeMap<&str, Vec<(Vec<f32>, usize)>>,
    temperatures: &BTreeMap<String, f64>,
    correct: usize,
) -> (f64, f64) {
    let temperature = |head: &str| temperatures.get(head).copied().unwrap_or(1.0);
    // The best of a grid, starting from the default: ties (and a model that
    // does not separate the classes at all) keep it.
    let best_of =
        |grid: &mut dyn Iterator<Item = f64>, default: f64, score: &dyn Fn(f64) -> f64| {
            grid.fold((score(default), default), |best, value| {
                let s = score(value);
                if s > best.0 + 1e-12 { (s, value) } else { best }
            })
            .1
        };
    let success_threshold = items.get("goal_success").map_or(0.5, |its| {
        let t = temperature("goal_success");
        let targets: Vec<usize> = its.iter().map(|(_, y)| *y).collect();
        let score = |threshold: f64| {
            let predicted: Vec<usize> = its
                .iter()
                .map(|(z, _)| usize::from(1.0 / (1.0 + (-(z[1] as f64) / t).exp()) > threshold))
                .collect();
            macro_f1(&predicted, &targets)
        };
        best_of(&mut (5..=95).map(|i| i as f64 / 100.0), 0.5, &score)
    });
    let correct_shift = items.get("failure_point").map_or(0.0, |its| {
        let t = temperature("failure_point");
        let targets: Vec<usize> = its.iter().map(|(_, y)| *y).collect();
        let score = |shift: f64| {
            let predicted: Vec<usize> = its
                .iter()
                .map(|(z, _)| {
                    let scaled: Vec<f64> = z.iter().map(|&v| v as f64 / t).collect();
                    shifted_argmax(&scaled, Some(correct), shift)
                })
                .collect();
            macro_f1(&predicted, &targets)
        };
        best_of(&mut (1..=24).map(|i| -0.25 * i as f64), 0.0, &score)
    });
    (success_threshold, correct_shift)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn balanced_decisions_label_a_rare_failure_that_accuracy_never_would() {
        // 90 successes at logit 2, 10 failures at logit 0.5: P > 0.5 for all,
        // so a 0.5 threshold labels every goal a success (macro-F1 0.47).
        let mut success: Vec<(Vec<f32>, usize)> = vec![(vec![0.0, 2.0], 1); 90];
        success.extend(vec![(vec![0.0, 0.5], 0); 10]);
        // Failure points (correct = 0, defect = 1): defect turns lean correct too.
        let mut failure: Vec<(Vec<f32>, usize)> = vec![(vec![3.0, 0.0], 0); 90];
        failure.extend(vec![(vec![1.0, 0.0], 1); 10]);
        let items = BTreeMap::from([("goal_success", success), ("failure_point", failure)]);
        let (threshold, shift) = balanced_decisions(&items, &BTreeMap::new(), 0);
        let p = |z: f64| 1.0 / (1.0 + (-z).exp());
        assert!(threshold > p(0.5) && threshold < p(2.0), "{threshold}");
        assert!(shift < -1.0 && shift > -3.0, "{shift}");
        assert_eq!(macro_f1(&[1, 1, 0, 0], &[1, 1, 0, 0]), 1.0);
        // A model that does not tell the classes apart keeps the defaults.
        let blind = BTreeMap::from([
            (
                "goal_success",
                vec![(vec![0.0, 2.0], 1), (vec![0.0, 2.0], 0)],
            ),
            (
                "failure_point",
                vec![(vec![3.0, 0.0], 0), (vec![3.0, 0.0], 1)],
            ),
        ]);
        assert_eq!(balanced_decisions(&blind, &BTreeMap::new(), 0), (0.5, 0.0));
        assert!((macro_f1(&[1, 1, 1, 1], &[1, 1, 1, 0]) - 3.0 / 7.0).abs() < 1e-9);
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
