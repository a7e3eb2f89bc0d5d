//! `labelgen train`: supervised multi-task training of the heads (goal
//! boundary, goal success, intent, slots, failure point) on top of a
//! pretrained model, from an annotator's labels and weak labels from the
//! logs' own feedback, with early stopping on a dev split and temperature
//! scaling there for calibrated confidences.

mod calibration;
mod config;
pub mod epochs;
mod intent_stay;
mod loss;
pub mod raters;
mod splice;
mod supervision;
pub mod weak;

pub use calibration::{DecisionFit, MIN_RARE_DEV_DIALOGUES};
pub use config::{EpochReport, MAX_SPLICE_GOALS, TaskWeights, TrainConfig, TrainSummary};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;

use crate::data::dataset::read_table_counted;
use crate::data::inputs::InputSnapshot;
use crate::data::tables::Turn;
use crate::model::batch::{Window, bucketed_batches, make_batch};
use crate::model::buckets::TokenCounts;
use crate::model::cache::EncodingCache;
use crate::model::checkpoint::{self, fill_varmap, named_vars};
use crate::model::config::{DialogueConfig, LabelSets, Lookahead, ModelConfig};
use crate::model::optim::AdamW;
use crate::model::tokenizer::special_ids;
use crate::model::training::{
    self, Evaluation, Every, LoopConfig, Objective, Outcome, StepLoss, Trainee,
};
use crate::model::{DialogueModel, Precision, device, inference_view, kernels};
use calibration::{Calibration, calibrate, calibrated_config};
use config::validate;
use epochs::EpochModels;
use loss::{LossSettings, RaterTable, evaluate, failure_class_weights, supervised_loss};
use supervision::{
    Supervisor, TrainData, check_spans, chosen_labels, label_sets, split_windows,
    training_rater_weights,
};

/// The encoder layer a variable belongs to: `roberta.encoder.layer.3.…` -> 3.
fn encoder_layer(name: &str) -> Option<usize> {
    name.strip_prefix("roberta.encoder.layer.")?
        .split('.')
        .next()?
        .parse()
        .ok()
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
        bf16: config.bf16,
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
        spliced_windows: data.spliced_windows,
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
        bf16: outcome.bf16,
        trained_encoder_tokens_per_epoch: None,
        cached_turns: cache.map_or(0, EncodingCache::len),
        cache_megabytes: cache.map_or(0, |c| c.bytes) as f64 / 1e6,
        cache_seconds: cache.map_or(0.0, |c| c.seconds),
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
        "spliced_windows": summary.spliced_windows,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
