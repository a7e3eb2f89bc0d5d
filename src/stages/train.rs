//! `labelgen train`: supervised multi-task training of the heads (goal
//! boundary, goal success, intent, slots, failure point) on top of a
//! pretrained model, from an annotator's labels, with early stopping on a dev
//! split and temperature scaling there for calibrated confidences.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::dataset::read_table;
use crate::data::tables::{Annotation, FailurePoint, SlotSpan, Turn};
use crate::model::batch::{
    Supervision, Window, bucketed_batches, make_batch, turn_input, window_ranges,
};
use crate::model::checkpoint::{self, fill_varmap, named_vars};
use crate::model::config::{LabelSets, ModelConfig};
use crate::model::loss::{masked_bce, masked_cross_entropy};
use crate::model::optim::AdamW;
use crate::model::tokenizer::{encode_with_offsets, special_ids};
use crate::model::{Batch, DialogueModel, device};
use crate::progress::Progress;

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
    pub quiet: bool,
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
            quiet: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f64,
    pub dev_loss: f64,
    pub dev_accuracy: BTreeMap<&'static str, f64>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct TrainSummary {
    pub out: String,
    pub annotators: Vec<String>,
    pub train_dialogues: usize,
    pub dev_dialogues: usize,
    pub labelled_turns: usize,
    pub best_epoch: usize,
    pub epochs: Vec<EpochReport>,
    pub temperatures: BTreeMap<String, f64>,
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
    let hash = dialogue
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % 10_000) as f64 / 10_000.0 < share
}

/// BIO tags of a turn's tokens from its slot spans.
fn bio_tags(
    offsets: &[Option<(usize, usize)>],
    spans: &[SlotSpan],
    slot_types: &[String],
) -> Vec<u32> {
    let mut tags = vec![0u32; offsets.len()];
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
                tags[t] = if first {
                    1 + 2 * k as u32
                } else {
                    2 + 2 * k as u32
                };
                first = false;
            }
        }
    }
    tags
}

/// (right, total) per head, for dev accuracy.
type HeadAccuracy = BTreeMap<&'static str, (u64, u64)>;

/// The best epoch so far: (dev loss, epoch, weights).
type Best = Option<(f64, usize, Vec<(String, Tensor)>)>;

/// Per-batch supervision tensors and the loss of the five heads.
fn supervised_loss(
    model: &DialogueModel,
    batch: &Batch,
    windows: &[&Window],
) -> anyhow::Result<(Tensor, HeadAccuracy)> {
    let heads = model
        .heads
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("model has no supervised heads"))?;
    let dev = batch.input_ids.device();
    let (b, t) = batch.turn_mask.dims2()?;
    let (n, l) = batch.input_ids.dims2()?;
    let token_states = model.encode_tokens(batch)?;
    let states = model.dialogue_states(batch, &token_states)?;
    let logits = heads.turn_logits(&states)?;
    let mut boundary = vec![0f32; b * t];
    let mut boundary_mask = vec![0f32; b * t];
    let mut success = vec![0f32; b * t];
    let mut success_mask = vec![0f32; b * t];
    let (mut intent, mut intent_mask) = (vec![0u32; b * t], vec![0f32; b * t]);
    let (mut failure, mut failure_mask) = (vec![0u32; b * t], vec![0f32; b * t]);
    let (mut bio, mut bio_mask) = (vec![0u32; n * l], vec![0f32; n * l]);
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
            if let Some(tags) = &s.bio {
                for (i, tag) in tags.iter().enumerate().take(l) {
                    bio[turn * l + i] = *tag;
                    bio_mask[turn * l + i] = 1.0;
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
    let slot_logits = heads.slot_logits(&token_states, &turn_states)?;
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
    let intent_logits = logits.intent.reshape((b * t, ()))?;
    let failure_logits = logits.failure_point.reshape((b * t, ()))?;
    count("intent", &intent_logits, &intent, &intent_mask)?;
    count("failure_point", &failure_logits, &failure, &failure_mask)?;
    let loss = (masked_bce(&logits.boundary, &t2(boundary)?, &t2(boundary_mask)?)?
        + masked_bce(&logits.success, &t2(success)?, &t2(success_mask)?)?)?;
    let loss = (loss
        + masked_cross_entropy(
            &intent_logits,
            &flat_u(intent, b * t)?,
            &flat_f(intent_mask, b * t)?,
            None,
        )?)?;
    let loss = (loss
        + masked_cross_entropy(
            &failure_logits,
            &flat_u(failure, b * t)?,
            &flat_f(failure_mask, b * t)?,
            None,
        )?)?;
    let slot_flat = slot_logits.reshape((n * l, tags))?;
    count("slot_tokens", &slot_flat, &bio, &bio_mask)?;
    let loss = (loss
        + masked_cross_entropy(
            &slot_flat,
            &flat_u(bio, n * l)?,
            &flat_f(bio_mask, n * l)?,
            None,
        )?)?;
    Ok((loss, accuracy))
}

pub fn run(config: &TrainConfig) -> anyhow::Result<TrainSummary> {
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
    anyhow::ensure!(
        !intents.is_empty(),
        "{}: the chosen annotators ({}) give no intents to learn",
        config.labels.display(),
        annotators.join(", ")
    );
    let label_sets = LabelSets {
        intents,
        slot_types,
        failure_points,
        temperatures: BTreeMap::new(),
    };
    let model_config = ModelConfig {
        labels: Some(label_sets.clone()),
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
    let encoded = encode_with_offsets(&tokenizer, &pairs, model_config.max_tokens)?;
    let (mut train_windows, mut dev_windows) = (Vec::new(), Vec::new());
    let (mut train_dialogues, mut dev_dialogues, mut labelled_turns) = (0, 0, 0);
    let mut next = 0;
    for (d, (dialogue, dialogue_turns)) in by_dialogue.iter_mut().enumerate() {
        dialogue_turns.sort_by_key(|t| t.turn_index);
        let supervision: Vec<Supervision> = dialogue_turns
            .iter()
            .enumerate()
            .map(|(k, turn)| {
                let e = &encoded[next + k];
                let Some(a) = labels.get(&(dialogue.to_string(), turn.turn_index)) else {
                    return Supervision::default();
                };
                labelled_turns += 1;
                let previous_goal = k
                    .checked_sub(1)
                    .and_then(|p| labels.get(&(dialogue.to_string(), dialogue_turns[p].turn_index)))
                    .and_then(|p| p.goal_id);
                Supervision {
                    boundary: a.goal_id.zip(previous_goal).map(|(g, p)| g != p),
                    success: a.goal_success,
                    intent: a
                        .intent
                        .as_ref()
                        .and_then(|i| label_sets.intents.iter().position(|x| x == i))
                        .map(|p| p as u32),
                    failure_point: a
                        .failure_point
                        .as_ref()
                        .and_then(|f| label_sets.failure_points.iter().position(|x| x == f))
                        .map(|p| p as u32),
                    bio: a
                        .slots
                        .as_ref()
                        .map(|spans| bio_tags(&e.utterance_offsets, spans, &label_sets.slot_types)),
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
    let mut optimizer = AdamW::new(named_vars(&varmap)?, config.learning_rate, 0.01)?;
    let pad = special_ids(&tokenizer)?.pad;
    let batches_per_epoch = bucketed_batches(&train_windows, config.batch_size).len();
    let total_steps = config
        .max_steps
        .unwrap_or(usize::MAX)
        .min(batches_per_epoch * config.epochs)
        .max(1);
    let warmup = (total_steps / 16).max(1);
    let progress = Progress::new(total_steps as u64, "steps", config.quiet);
    let mut epochs = Vec::new();
    let mut best: Best = None;
    let mut step = 0;
    'epochs: for epoch in 0..config.epochs {
        let mut order = bucketed_batches(&train_windows, config.batch_size);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9),
        ));
        let mut losses = Vec::new();
        for indices in order {
            if step >= total_steps {
                break;
            }
            let chosen: Vec<&Window> = indices.iter().map(|&i| &train_windows[i]).collect();
            let (batch, _) = make_batch(&chosen, pad, &device())?;
            let (loss, _) = supervised_loss(&model, &batch, &chosen)?;
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
            step += 1;
            progress.inc(1);
            progress.message(format!(
                "epoch {} loss {:.4}",
                epoch + 1,
                losses.iter().rev().take(50).sum::<f64>() / losses.len().min(50) as f64
            ));
        }
        let (dev_loss, dev_accuracy) = evaluate(&model, &dev_windows, config.batch_size, pad)?;
        epochs.push(EpochReport {
            epoch: epoch + 1,
            steps: step,
            train_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            dev_loss,
            dev_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        });
        if best.as_ref().is_none_or(|(loss, _, _)| dev_loss < *loss) {
            best = Some((dev_loss, epoch + 1, checkpoint::snapshot(&varmap)?));
        } else if best
            .as_ref()
            .is_some_and(|(_, e, _)| epoch + 1 - e >= config.patience)
        {
            break 'epochs;
        }
        if step >= total_steps {
            break;
        }
    }
    progress.finish();
    let (_, best_epoch, weights) = best.ok_or_else(|| anyhow::anyhow!("no epoch ran"))?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
    for (name, tensor) in &weights {
        vars[name].set(tensor)?;
    }
    drop(vars);
    let temperatures = calibrate(&model, &dev_windows, config.batch_size, pad)?;
    let mut final_config = model_config.clone();
    if let Some(l) = final_config.labels.as_mut() {
        l.temperatures = temperatures.clone();
    }
    let training = serde_json::json!({
        "stage": "train",
        "init": config.init.display().to_string(),
        "annotators": annotators,
        "seed": config.seed,
        "settings": config,
        "best_epoch": best_epoch,
        "epochs": epochs,
        "temperatures": temperatures,
    });
    checkpoint::save(&config.out, &final_config, &varmap, &tokenizer, &training)?;
    Ok(TrainSummary {
        out: config.out.display().to_string(),
        annotators,
        train_dialogues,
        dev_dialogues,
        labelled_turns,
        best_epoch,
        epochs,
        temperatures,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Mean dev loss and per-head accuracy.
fn evaluate(
    model: &DialogueModel,
    windows: &[Window],
    batch_size: usize,
    pad: u32,
) -> anyhow::Result<(f64, BTreeMap<&'static str, f64>)> {
    let (mut loss_sum, mut batches) = (0.0, 0);
    let mut counts: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for indices in bucketed_batches(windows, batch_size * 2) {
        let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
        let (batch, _) = make_batch(&chosen, pad, &device())?;
        let (loss, accuracy) = supervised_loss(model, &batch, &chosen)?;
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
            .map(|(k, (r, t))| (k, r as f64 / t.max(1) as f64))
            .collect(),
    ))
}

/// Temperature per head, the one of a grid that minimises the dev
/// negative log-likelihood (Guo et al., 2017).
fn calibrate(
    model: &DialogueModel,
    windows: &[Window],
    batch_size: usize,
    pad: u32,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let heads = model
        .heads
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("model has no supervised heads"))?;
    // (logits, target) per head; binary heads as two-class logits [0, x].
    let mut items: BTreeMap<&str, Vec<(Vec<f32>, usize)>> = BTreeMap::new();
    for indices in bucketed_batches(windows, batch_size * 2) {
        let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
        let (batch, _) = make_batch(&chosen, pad, &device())?;
        let states = model.dialogue_states(&batch, &model.encode_tokens(&batch)?)?;
        let logits = heads.turn_logits(&states)?;
        let (boundary, success): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
            (logits.boundary.to_vec2()?, logits.success.to_vec2()?);
        let intent: Vec<Vec<Vec<f32>>> = logits.intent.to_vec3()?;
        let failure: Vec<Vec<Vec<f32>>> = logits.failure_point.to_vec3()?;
        for (w, window) in chosen.iter().enumerate() {
            for (k, s) in window.supervision.iter().enumerate() {
                if let Some(v) = s.boundary {
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
    Ok(temperatures)
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
        assert_eq!(bio_tags(&offsets, &spans, &types), vec![0, 0, 3, 4, 0]);
    }
}
