//! `labelgen pretrain`: self-supervised pretraining on `synth` output. The
//! model learns to spot responses that do not belong to their turn (from the
//! dialogue context and the runtime features too), plus masked-token
//! prediction when the encoder starts from scratch.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::data::dataset::{read_table, write_file_atomic};
use crate::data::synth_rows::SynthTurn;
use crate::eval::metrics::roc_auc;
use crate::model::batch::{
    Window, bucketed_batches, feature_vocabulary, make_batch, turn_input, window_ranges,
};
use crate::model::checkpoint::{self, fill_varmap, hf_candidates, named_vars};
use crate::model::config::{
    ARCHITECTURE, DialogueConfig, EncoderConfig, FeatureConfig, ModelConfig, TurnContext,
    TurnPooling,
};
use crate::model::optim::AdamW;
use crate::model::tokenizer::{SpecialIds, encode_pairs, special_ids, train_bpe};
use crate::model::{Batch, DialogueModel, device};
use crate::progress::Progress;

#[derive(Debug, Clone, Serialize)]
pub struct PretrainConfig {
    pub data: PathBuf,
    pub out: PathBuf,
    /// A Hugging Face RoBERTa/BERT checkpoint directory for the turn encoder.
    pub init: Option<PathBuf>,
    /// Held-out synth data: swapped-response ROC-AUC is measured on it.
    pub eval_data: Option<PathBuf>,
    pub seed: u64,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    /// Dialogue windows per batch.
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup_share: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Weight of the masked-token loss (scratch encoders only).
    pub mlm_weight: f64,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub vocab_size: usize,
    pub dialogue_layers: usize,
    pub max_tokens: usize,
    pub max_turns: usize,
    /// The turn vector; None: mean over tokens with --init (sentence
    /// encoders are trained for it), the first token from scratch.
    pub turn_pooling: Option<TurnPooling>,
    /// Later turns each turn may attend to in the dialogue Transformer (None: all).
    pub lookahead: Option<usize>,
    pub checkpoint_every: usize,
    pub eval_every: usize,
    pub resume: bool,
    /// Stop after this many steps as if killed, leaving the checkpoint
    /// (tests use it to check that --resume continues exactly).
    pub stop_after: Option<usize>,
    pub quiet: bool,
}

impl PretrainConfig {
    pub fn new(data: PathBuf, out: PathBuf) -> PretrainConfig {
        PretrainConfig {
            data,
            out,
            init: None,
            eval_data: None,
            seed: 0,
            epochs: 3,
            max_steps: None,
            batch_size: 32,
            learning_rate: 1e-3,
            warmup_share: 0.06,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            mlm_weight: 0.5,
            hidden_size: 128,
            layers: 2,
            heads: 4,
            vocab_size: 4000,
            dialogue_layers: 2,
            max_tokens: 40,
            max_turns: 16,
            turn_pooling: None,
            lookahead: None,
            checkpoint_every: 200,
            eval_every: 200,
            resume: false,
            stop_after: None,
            quiet: true,
        }
    }
}

/// One point of the training curve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub step: usize,
    /// Wall-clock seconds of training (this run's part) when the point was taken.
    pub seconds: f64,
    pub train_loss: f64,
    pub eval_loss: Option<f64>,
    pub eval_auc: Option<f64>,
}

/// What a checkpoint needs beyond the weights to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    curve: Vec<CurvePoint>,
    recent_losses: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct PretrainSummary {
    pub out: String,
    pub steps: usize,
    pub final_train_loss: f64,
    pub eval_auc: Option<f64>,
    pub eval_loss: Option<f64>,
    pub turns: usize,
    pub windows: usize,
    /// Training throughput: real (unpadded) tokens per second of training.
    pub tokens_per_second: f64,
    /// Inference throughput on the held-out set: turns scored per second.
    pub eval_turns_per_second: Option<f64>,
    pub seconds: f64,
    pub curve: Vec<CurvePoint>,
}

/// The training examples: windows of turns with their swapped labels.
struct Examples {
    windows: Vec<Window>,
    turns: usize,
}

fn examples(
    rows: &[SynthTurn],
    tokenizer: &Tokenizer,
    features: &FeatureConfig,
    max_tokens: usize,
    max_turns: usize,
) -> anyhow::Result<Examples> {
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.turn.user_utterance.clone(),
                r.turn.system_response.clone(),
            )
        })
        .collect();
    let ids = encode_pairs(tokenizer, &pairs, max_tokens)?;
    let mut by_dialogue: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        by_dialogue
            .entry(&row.turn.dialogue_id)
            .or_default()
            .push(i);
    }
    let mut windows = Vec::new();
    for indices in by_dialogue.values_mut() {
        indices.sort_by_key(|&i| rows[i].turn.turn_index);
        for range in window_ranges(indices.len(), max_turns) {
            let part = &indices[range];
            windows.push(Window {
                turns: part
                    .iter()
                    .map(|&i| turn_input(&rows[i].turn, ids[i].clone(), features))
                    .collect(),
                targets: part
                    .iter()
                    .map(|&i| f32::from(u8::from(rows[i].swapped)))
                    .collect(),
                ..Window::default()
            });
        }
    }
    Ok(Examples {
        turns: rows.len(),
        windows,
    })
}

/// The pretraining loss: binary cross-entropy over the real turn slots.
fn swap_loss(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    crate::model::loss::masked_bce(logits, targets, mask)
}

/// BERT's masking: 15% of non-special tokens; of those 80% <mask>, 10% a
/// random token, 10% kept. Returns the corrupted ids, flat positions and targets.
fn mask_tokens(
    batch: &Batch,
    special: &SpecialIds,
    vocab: usize,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Option<(Tensor, Tensor, Tensor)>> {
    let (n, l) = batch.input_ids.dims2()?;
    let mut ids: Vec<u32> = batch.input_ids.flatten_all()?.to_vec1()?;
    let (mut positions, mut targets) = (Vec::new(), Vec::new());
    for (p, id) in ids.iter_mut().enumerate() {
        if special.specials.contains(id) || *id == special.pad || !rng.random_bool(0.15) {
            continue;
        }
        positions.push(p as u32);
        targets.push(*id);
        let r: f64 = rng.random();
        if r < 0.8 {
            *id = special.mask;
        } else if r < 0.9 {
            *id = rng.random_range(0..vocab as u32);
        }
    }
    if positions.is_empty() {
        return Ok(None);
    }
    let dev = batch.input_ids.device();
    Ok(Some((
        Tensor::from_vec(ids, (n, l), dev)?,
        Tensor::new(positions, dev)?,
        Tensor::new(targets, dev)?,
    )))
}

/// Linear warm-up, then linear decay to zero.
fn learning_rate(config: &PretrainConfig, step: usize, total: usize) -> f64 {
    let warmup = ((total as f64 * config.warmup_share) as usize).max(1);
    if step < warmup {
        config.learning_rate * (step + 1) as f64 / warmup as f64
    } else {
        config.learning_rate * (total - step) as f64 / (total - warmup).max(1) as f64
    }
}

/// Swapped-response ROC-AUC and loss on held-out windows.
fn evaluate(
    model: &DialogueModel,
    windows: &[Window],
    batch_size: usize,
    pad: u32,
) -> anyhow::Result<(f64, f64)> {
    let mut scored = Vec::new();
    let (mut loss_sum, mut batches) = (0.0, 0);
    for indices in bucketed_batches(windows, batch_size * 2) {
        let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
        let (batch, targets) = make_batch(&chosen, pad, &device())?;
        let states = model.dialogue_states(&batch, &model.encode_tokens(&batch)?)?;
        let logits = model.swap_logits(&states)?;
        loss_sum += swap_loss(&logits, &targets, &batch.turn_mask)?.to_scalar::<f32>()? as f64;
        batches += 1;
        let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        let targets: Vec<f32> = targets.flatten_all()?.to_vec1()?;
        let mask: Vec<u32> = batch.turn_mask.flatten_all()?.to_vec1()?;
        for ((logit, target), real) in logits.iter().zip(&targets).zip(&mask) {
            if *real == 1 {
                scored.push((*logit as f64, *target > 0.5));
            }
        }
    }
    Ok((roc_auc(&scored), loss_sum / batches.max(1) as f64))
}

fn fingerprint(rows: &[SynthTurn]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in rows {
        (
            &r.turn.dialogue_id,
            r.turn.turn_index,
            &r.turn.user_utterance,
            &r.turn.system_response,
            r.swapped,
        )
            .hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

pub fn run(config: &PretrainConfig) -> anyhow::Result<PretrainSummary> {
    anyhow::ensure!(
        config.batch_size > 0 && config.epochs > 0,
        "--batch-size and --epochs must be at least 1"
    );
    let started = Instant::now();
    let (rows, _) = read_table::<SynthTurn>(&config.data)?;
    anyhow::ensure!(
        !rows.is_empty(),
        "{}: no turns to pretrain on",
        config.data.display()
    );
    let checkpoint = checkpoint::resume_dir(&config.out);
    let resuming = config.resume && checkpoint.join(checkpoint::CONFIG).is_file();

    // Tokenizer and architecture: from the checkpoint, from --init, or new.
    let (model_config, tokenizer, init_weights) = if resuming {
        let model_config = checkpoint::read_config(&checkpoint)?;
        let tokenizer = crate::model::tokenizer::load(&checkpoint.join(checkpoint::TOKENIZER))?;
        (model_config, tokenizer, None)
    } else {
        let (encoder, tokenizer, weights) = match &config.init {
            Some(dir) => {
                let (encoder, tokenizer, weights) = checkpoint::read_hf(dir)?;
                (encoder, tokenizer, Some(weights))
            }
            None => {
                let originals = rows.iter().filter(|r| r.copy == 0);
                let texts: Vec<&str> = originals
                    .flat_map(|r| {
                        [
                            r.turn.user_utterance.as_str(),
                            r.turn.system_response.as_str(),
                        ]
                    })
                    .collect();
                let tokenizer = train_bpe(texts.into_iter(), config.vocab_size)?;
                let vocab = tokenizer.get_vocab_size(true);
                (
                    EncoderConfig::small(
                        vocab,
                        config.hidden_size,
                        config.layers,
                        config.heads,
                        config.max_tokens,
                    ),
                    tokenizer,
                    None,
                )
            }
        };
        let audio_dim = rows
            .iter()
            .find_map(|r| r.turn.audio_embedding.as_ref().map(Vec::len))
            .unwrap_or(0);
        let model_config = ModelConfig {
            architecture: ARCHITECTURE.into(),
            max_tokens: config.max_tokens.min(
                encoder
                    .max_position_embeddings
                    .saturating_sub(encoder.position_offset()),
            ),
            encoder,
            dialogue: DialogueConfig {
                hidden_size: config.hidden_size,
                num_layers: config.dialogue_layers,
                num_heads: config.heads,
                intermediate_size: config.hidden_size * 4,
                max_turns: config.max_turns,
                lookahead: config.lookahead,
            },
            features: FeatureConfig {
                categorical: feature_vocabulary(rows.iter().map(|r| &r.turn)),
                embedding_size: 16,
                audio_dim,
            },
            labels: None,
            context: TurnContext::Dialogue,
            turn_pooling: config.turn_pooling.unwrap_or(if config.init.is_some() {
                TurnPooling::Mean
            } else {
                TurnPooling::First
            }),
        };
        (model_config, tokenizer, weights)
    };
    let special = special_ids(&tokenizer)?;
    let train = examples(
        &rows,
        &tokenizer,
        &model_config.features,
        model_config.max_tokens,
        model_config.dialogue.max_turns,
    )?;
    let held_out = match &config.eval_data {
        Some(path) => {
            let (rows, _) = read_table::<SynthTurn>(path)?;
            Some(examples(
                &rows,
                &tokenizer,
                &model_config.features,
                model_config.max_tokens,
                model_config.dialogue.max_turns,
            )?)
        }
        None => None,
    };

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device());
    let model = DialogueModel::new(&model_config, vb)?;
    checkpoint::seeded_init(&varmap, config.seed)?;
    if let Some(weights) = &init_weights {
        fill_varmap(&varmap, weights, hf_candidates, |name| {
            name.starts_with("roberta.")
        })?;
    }
    let use_mlm = config.init.is_none() && config.mlm_weight > 0.0;
    let mut optimizer = AdamW::new(
        named_vars(&varmap)?,
        config.learning_rate,
        config.weight_decay,
    )?;

    let batches_per_epoch = bucketed_batches(&train.windows, config.batch_size).len();
    let total_steps = config
        .max_steps
        .unwrap_or(usize::MAX)
        .min(batches_per_epoch * config.epochs)
        .max(1);
    let mut state = CheckpointState {
        step: 0,
        curve: Vec::new(),
        recent_losses: Vec::new(),
    };
    if resuming {
        fill_varmap(
            &varmap,
            &checkpoint.join(checkpoint::WEIGHTS),
            |n| vec![n.to_string()],
            |_| true,
        )?;
        state = serde_json::from_slice(&std::fs::read(checkpoint.join("state.json"))?)?;
        optimizer.load(&checkpoint.join("optimizer.safetensors"), state.step)?;
    }

    let progress = Progress::new(total_steps as u64, "steps", config.quiet);
    progress.inc(state.step as u64);
    let mut tokens_seen = 0usize;
    let (mut eval_turns, mut eval_seconds) = (0usize, 0.0f64);
    let training_started = Instant::now();
    let mut epoch_order: Option<(usize, Vec<Vec<usize>>)> = None;
    while state.step < total_steps {
        let step = state.step;
        let (epoch, position) = (step / batches_per_epoch, step % batches_per_epoch);
        // The batch order of an epoch depends only on the seed and the epoch,
        // so a resumed run sees exactly the batches the killed one would have.
        if epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order = bucketed_batches(&train.windows, config.batch_size);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
            ));
            epoch_order = Some((epoch, order));
        }
        let indices = &epoch_order.as_ref().expect("set above").1[position];
        let chosen: Vec<&Window> = indices.iter().map(|&i| &train.windows[i]).collect();
        let (mut batch, targets) = make_batch(&chosen, special.pad, &device())?;
        tokens_seen += batch.attention_mask.sum_all()?.to_scalar::<u32>()? as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(step as u64));
        let masked = if use_mlm {
            mask_tokens(&batch, &special, model_config.encoder.vocab_size, &mut rng)?
        } else {
            None
        };
        if let Some((ids, _, _)) = &masked {
            batch.input_ids = ids.clone();
        }
        let token_states = model.encode_tokens(&batch)?;
        let logits = model.swap_logits(&model.dialogue_states(&batch, &token_states)?)?;
        let mut loss = swap_loss(&logits, &targets, &batch.turn_mask)?;
        if let Some((_, positions, labels)) = &masked {
            let mlm = candle_nn::loss::cross_entropy(
                &model.mlm_logits(&token_states, positions)?,
                labels,
            )?;
            loss = (loss + (mlm * config.mlm_weight)?)?;
        }
        let loss_value = loss.to_scalar::<f32>()? as f64;
        if !loss_value.is_finite() {
            anyhow::bail!(
                "the loss became {loss_value} at step {step}; stopping{}\n  hint: lower --learning-rate",
                if checkpoint.exists() {
                    format!(" (the last good checkpoint is in {})", checkpoint.display())
                } else {
                    String::new()
                }
            );
        }
        let grads = loss.backward()?;
        let norm = optimizer.grad_norm(&grads)?;
        let scale = if norm > config.max_grad_norm {
            config.max_grad_norm / norm
        } else {
            1.0
        };
        optimizer.learning_rate = learning_rate(config, step, total_steps);
        optimizer.step(&grads, scale)?;
        state.step += 1;
        state.recent_losses.push(loss_value);
        if state.recent_losses.len() > 50 {
            state.recent_losses.remove(0);
        }
        let mean_loss = state.recent_losses.iter().sum::<f64>() / state.recent_losses.len() as f64;
        progress.inc(1);
        let rate = tokens_seen as f64
            / (training_started.elapsed().as_secs_f64() - eval_seconds).max(1e-9);
        progress.message(format!("loss {mean_loss:.4}, {rate:.0} tokens/s"));
        let last = state.step == total_steps;
        if state.step.is_multiple_of(config.eval_every) || last {
            let (eval_auc, eval_loss) = match &held_out {
                Some(h) => {
                    let timer = Instant::now();
                    let (auc, loss) = evaluate(&model, &h.windows, config.batch_size, special.pad)?;
                    eval_seconds += timer.elapsed().as_secs_f64();
                    eval_turns += h.turns;
                    (Some(auc), Some(loss))
                }
                None => (None, None),
            };
            state.curve.push(CurvePoint {
                step: state.step,
                seconds: training_started.elapsed().as_secs_f64(),
                train_loss: mean_loss,
                eval_loss,
                eval_auc,
            });
        }
        if state.step.is_multiple_of(config.checkpoint_every) && !last {
            save_checkpoint(
                &checkpoint,
                &model_config,
                &varmap,
                &tokenizer,
                &optimizer,
                &state,
            )?;
        }
        if config.stop_after == Some(state.step) {
            anyhow::bail!(
                "stopped after step {} as asked (--resume continues from {})",
                state.step,
                checkpoint.display()
            );
        }
    }
    progress.finish();

    let final_point = state.curve.last().cloned();
    let seconds = started.elapsed().as_secs_f64();
    let training = serde_json::json!({
        "stage": "pretrain",
        "data": config.data.display().to_string(),
        "data_fingerprint": fingerprint(&rows),
        "init": config.init.as_ref().map(|p| p.display().to_string()),
        "seed": config.seed,
        "steps": state.step,
        "settings": config,
        "curve": state.curve,
        "seconds": seconds,
    });
    checkpoint::save(&config.out, &model_config, &varmap, &tokenizer, &training)?;
    write_curve_plot(&config.out, &state.curve)?;
    if checkpoint.exists() {
        std::fs::remove_dir_all(&checkpoint)?;
    }
    Ok(PretrainSummary {
        out: config.out.display().to_string(),
        steps: state.step,
        final_train_loss: final_point.as_ref().map_or(f64::NAN, |p| p.train_loss),
        eval_auc: final_point.as_ref().and_then(|p| p.eval_auc),
        eval_loss: final_point.as_ref().and_then(|p| p.eval_loss),
        turns: train.turns,
        windows: train.windows.len(),
        tokens_per_second: tokens_seen as f64
            / (training_started.elapsed().as_secs_f64() - eval_seconds).max(1e-9),
        eval_turns_per_second: (eval_seconds > 0.0).then(|| eval_turns as f64 / eval_seconds),
        seconds,
        curve: state.curve,
    })
}

fn save_checkpoint(
    dir: &Path,
    config: &ModelConfig,
    varmap: &VarMap,
    tokenizer: &Tokenizer,
    optimizer: &AdamW,
    state: &CheckpointState,
) -> anyhow::Result<()> {
    checkpoint::save(
        dir,
        config,
        varmap,
        tokenizer,
        &serde_json::json!({"stage": "pretrain checkpoint", "step": state.step}),
    )?;
    optimizer.save(&dir.join("optimizer.safetensors"))?;
    write_file_atomic(
        &dir.join("state.json"),
        serde_json::to_string(state)?.as_bytes(),
    )
}

/// training_curve.{svg,png}: loss and held-out AUC against steps.
fn write_curve_plot(out: &Path, curve: &[CurvePoint]) -> anyhow::Result<()> {
    let svg = crate::eval::plot::curve_svg(
        "pretraining: loss and held-out swapped-response AUC",
        curve
            .iter()
            .map(|p| (p.step as f64, p.train_loss, p.eval_auc))
            .collect(),
    );
    write_file_atomic(&out.join("training_curve.svg"), svg.as_bytes())?;
    write_file_atomic(
        &out.join("training_curve.png"),
        &crate::eval::plot::png(&svg)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::simulate::{SimulateConfig, run as simulate};
    use crate::stages::synth::{SynthConfig, run as synth};

    /// A tiny model on 40 simulated dialogues: seconds, not minutes.
    fn tiny(dir: &Path) -> PretrainConfig {
        let sim = dir.join("sim");
        simulate(&SimulateConfig::new(40, 1, sim.clone())).unwrap();
        synth(&SynthConfig::new(sim.join("turns"), dir.join("synth"))).unwrap();
        PretrainConfig {
            batch_size: 8,
            hidden_size: 16,
            layers: 1,
            heads: 2,
            dialogue_layers: 1,
            vocab_size: 300,
            max_tokens: 16,
            max_turns: 4,
            epochs: 1,
            ..PretrainConfig::new(dir.join("synth"), dir.join("model"))
        }
    }

    fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
        let tensors =
            candle_core::safetensors::load(dir.join(checkpoint::WEIGHTS), &device()).unwrap();
        let mut out: Vec<(String, Vec<f32>)> = tensors
            .into_iter()
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn every_trainable_variable_gets_a_gradient() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tiny(tmp.path());
        let (rows, _) = read_table::<SynthTurn>(&config.data).unwrap();
        let texts: Vec<&str> = rows
            .iter()
            .flat_map(|r| {
                [
                    r.turn.user_utterance.as_str(),
                    r.turn.system_response.as_str(),
                ]
            })
            .collect();
        let tokenizer = train_bpe(texts.into_iter(), 300).unwrap();
        let features = FeatureConfig {
            categorical: feature_vocabulary(rows.iter().map(|r| &r.turn)),
            embedding_size: 4,
            audio_dim: 8,
        };
        let model_config = ModelConfig {
            architecture: ARCHITECTURE.into(),
            encoder: EncoderConfig::small(tokenizer.get_vocab_size(true), 16, 1, 2, 16),
            dialogue: DialogueConfig {
                hidden_size: 16,
                num_layers: 1,
                num_heads: 2,
                intermediate_size: 32,
                max_turns: 4,
                lookahead: Some(1),
            },
            features,
            max_tokens: 16,
            labels: None,
            context: TurnContext::Dialogue,
            // The mean over tokens: its mask must keep gradients flowing (and padding out).
            turn_pooling: TurnPooling::Mean,
        };
        let data = examples(&rows, &tokenizer, &model_config.features, 16, 4).unwrap();
        let chosen: Vec<&Window> = data.windows.iter().take(16).collect();
        let special = special_ids(&tokenizer).unwrap();
        let (mut batch, targets) = make_batch(&chosen, special.pad, &device()).unwrap();
        // Shapes: (N, L) tokens in, (B, T) logits out.
        let n: usize = chosen.iter().map(|w| w.turns.len()).sum();
        assert_eq!(batch.input_ids.dims()[0], n);
        let varmap = VarMap::new();
        let model = DialogueModel::new(
            &model_config,
            VarBuilder::from_varmap(&varmap, DType::F32, &device()),
        )
        .unwrap();
        // Mean pooling ignores padding: the first window's dialogue states,
        // as built and with 5 more (masked, non-zero) token states.
        let (narrow, _) = make_batch(&chosen[..1], special.pad, &device()).unwrap();
        let tokens = model.encode_tokens(&narrow).unwrap();
        let (turns, _, hidden) = tokens.dims3().unwrap();
        let padding = Tensor::ones((turns, 5, hidden), DType::F32, &device()).unwrap();
        let wide_tokens = Tensor::cat(&[&tokens, &padding], 1).unwrap();
        let wide = Batch {
            attention_mask: narrow.attention_mask.pad_with_zeros(1, 0, 5).unwrap(),
            ..narrow.clone()
        };
        let gap = (model.dialogue_states(&narrow, &tokens).unwrap()
            - model.dialogue_states(&wide, &wide_tokens).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
        assert!(gap.to_scalar::<f32>().unwrap() < 1e-5, "{gap}");
        // Lookahead 1, one dialogue layer: what the last turn says reaches
        // the turn before it, and no earlier turn.
        let long = data
            .windows
            .iter()
            .find(|w| w.turns.len() >= 3)
            .expect("a window of 3 turns or more");
        let (narrow, _) = make_batch(&[long], special.pad, &device()).unwrap();
        let tokens = model.encode_tokens(&narrow).unwrap();
        let turns = tokens.dim(0).unwrap();
        let changed = Tensor::cat(
            &[
                &tokens.narrow(0, 0, turns - 1).unwrap(),
                &(tokens.narrow(0, turns - 1, 1).unwrap() + 1.0).unwrap(),
            ],
            0,
        )
        .unwrap();
        let before = model.dialogue_states(&narrow, &tokens).unwrap();
        let after = model.dialogue_states(&narrow, &changed).unwrap();
        let gap_at = |t: usize| {
            (before.narrow(1, t, 1).unwrap() - after.narrow(1, t, 1).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(gap_at(turns - 2) > 1e-4, "the next turn should be visible");
        for t in 0..turns - 2 {
            assert!(gap_at(t) < 1e-6, "turn {t} sees turn {}", turns - 1);
        }

        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (ids, positions, labels) =
            mask_tokens(&batch, &special, model_config.encoder.vocab_size, &mut rng)
                .unwrap()
                .unwrap();
        batch.input_ids = ids;
        let token_states = model.encode_tokens(&batch).unwrap();
        assert_eq!(token_states.dims(), &[n, batch.input_ids.dims()[1], 16]);
        let logits = model
            .swap_logits(&model.dialogue_states(&batch, &token_states).unwrap())
            .unwrap();
        assert_eq!(logits.dims(), batch.turn_mask.dims());
        let mlm = candle_nn::loss::cross_entropy(
            &model.mlm_logits(&token_states, &positions).unwrap(),
            &labels,
        )
        .unwrap();
        let loss = (swap_loss(&logits, &targets, &batch.turn_mask).unwrap() + mlm).unwrap();
        let grads = loss.backward().unwrap();
        let vars = named_vars(&varmap).unwrap();
        let mut without: Vec<&String> = vars
            .iter()
            .filter(|(_, var)| {
                grads.get(var).is_none_or(|g| {
                    g.abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        == 0.0
                })
            })
            .map(|(name, _)| name)
            .collect();
        without.sort();
        assert!(vars.len() > 40, "{} variables", vars.len());
        assert!(without.is_empty(), "no gradient reaches {without:?}");
    }

    #[test]
    fn training_lowers_the_loss_and_the_model_reloads_identically() {
        let tmp = tempfile::tempdir().unwrap();
        let config = PretrainConfig {
            epochs: 6,
            learning_rate: 3e-3,
            eval_every: 5,
            eval_data: Some(tmp.path().join("synth")),
            ..tiny(tmp.path())
        };
        let summary = run(&config).unwrap();
        let first = summary.curve.first().unwrap().eval_loss.unwrap();
        let last = summary.curve.last().unwrap().eval_loss.unwrap();
        assert!(last < first, "loss {first} -> {last}");
        for file in [
            checkpoint::CONFIG,
            checkpoint::WEIGHTS,
            checkpoint::TOKENIZER,
            checkpoint::TRAINING,
            "training_curve.png",
        ] {
            assert!(config.out.join(file).is_file(), "{file} missing");
        }
        // Reloaded from disk, the model scores a batch exactly as before saving.
        let (model, tokenizer) = checkpoint::load(&config.out).unwrap();
        let (rows, _) = read_table::<SynthTurn>(&config.data).unwrap();
        let data = examples(&rows, &tokenizer, &model.config.features, 16, 4).unwrap();
        let (auc, loss) = evaluate(
            &model,
            &data.windows,
            8,
            special_ids(&tokenizer).unwrap().pad,
        )
        .unwrap();
        assert!(
            (loss - last).abs() < 1e-5 && auc.is_finite(),
            "{loss} vs {last}"
        );
    }

    #[test]
    fn resume_equals_an_uninterrupted_run() {
        let tmp = tempfile::tempdir().unwrap();
        let base = PretrainConfig {
            epochs: 2,
            checkpoint_every: 3,
            ..tiny(tmp.path())
        };
        run(&base).unwrap();
        let whole = weights(&base.out);
        let killed = PretrainConfig {
            out: tmp.path().join("resumed"),
            stop_after: Some(4),
            ..base.clone()
        };
        let error = run(&killed).unwrap_err().to_string();
        assert!(error.contains("stopped after step 4"), "{error}");
        let resumed = PretrainConfig {
            resume: true,
            stop_after: None,
            ..killed
        };
        run(&resumed).unwrap();
        assert_same_weights(&whole, &weights(&resumed.out));
    }

    /// Names the variables that differ, with the largest difference, instead
    /// of printing every weight.
    fn assert_same_weights(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) {
        assert_eq!(a.len(), b.len());
        let differing: Vec<(String, f32)> = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x != y)
            .map(|(x, y)| {
                (
                    x.0.clone(),
                    x.1.iter()
                        .zip(&y.1)
                        .map(|(p, q)| (p - q).abs())
                        .fold(0.0, f32::max),
                )
            })
            .collect();
        assert!(
            differing.is_empty(),
            "{} of {} variables differ, e.g. {:?}",
            differing.len(),
            a.len(),
            &differing[..differing.len().min(5)]
        );
    }

    #[test]
    fn same_seed_same_weights() {
        let tmp = tempfile::tempdir().unwrap();
        let base = PretrainConfig {
            max_steps: Some(5),
            ..tiny(tmp.path())
        };
        run(&base).unwrap();
        let again = PretrainConfig {
            out: tmp.path().join("again"),
            ..base.clone()
        };
        run(&again).unwrap();
        assert_same_weights(&weights(&base.out), &weights(&again.out));
    }

    #[test]
    fn bad_model_directories_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let config = PretrainConfig {
            max_steps: Some(1),
            ..tiny(tmp.path())
        };
        run(&config).unwrap();
        let message = |dir: &Path| {
            checkpoint::load(dir)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        let copy = |name: &str| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for f in [
                checkpoint::CONFIG,
                checkpoint::WEIGHTS,
                checkpoint::TOKENIZER,
            ] {
                std::fs::copy(config.out.join(f), dir.join(f)).unwrap();
            }
            dir
        };
        let missing = copy("missing");
        std::fs::remove_file(missing.join(checkpoint::TOKENIZER)).unwrap();
        assert!(
            message(&missing).contains("model directory lacks tokenizer.json"),
            "{}",
            message(&missing)
        );
        let foreign = copy("foreign");
        std::fs::write(
            foreign.join(checkpoint::CONFIG),
            r#"{"architecture": "gpt2"}"#,
        )
        .unwrap();
        assert!(
            message(&foreign).contains("unknown architecture `gpt2`"),
            "{}",
            message(&foreign)
        );
        let reshaped = copy("reshaped");
        let mut config_json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(reshaped.join(checkpoint::CONFIG)).unwrap())
                .unwrap();
        config_json["encoder"]["hidden_size"] = 32.into();
        std::fs::write(reshaped.join(checkpoint::CONFIG), config_json.to_string()).unwrap();
        assert!(
            message(&reshaped).contains("weights do not fit config.json"),
            "{}",
            message(&reshaped)
        );
        let bert = copy("bert");
        config_json["encoder"]["model_type"] = "t5".into();
        std::fs::write(bert.join(checkpoint::CONFIG), config_json.to_string()).unwrap();
        assert!(
            message(&bert).contains("unknown architecture `t5`"),
            "{}",
            message(&bert)
        );
    }
}
