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
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::data::dataset::read_table_counted;
use crate::data::inputs::InputSnapshot;
use crate::data::synth_rows::SynthTurn;
use crate::metrics::roc_auc;
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
use crate::model::training::{
    self, Evaluation, Every, LoopConfig, Objective, Outcome, StepLoss, Trainee,
};
use crate::model::{Batch, DialogueModel, device};

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
    /// The dense layers' products in bf16 with f32 sums (mixed precision,
    /// AVX-512 BF16; f32 elsewhere).
    pub bf16: bool,
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
            warmup_share: training::WARMUP_SHARE,
            weight_decay: 0.01,
            max_grad_norm: training::MAX_GRAD_NORM,
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
            bf16: false,
        }
    }
}

/// What a held-out evaluation measures: swapped-response loss and ROC-AUC
/// (None without --eval-data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldOut {
    pub eval_loss: Option<f64>,
    pub eval_auc: Option<f64>,
}

impl Evaluation for HeldOut {
    fn loss(&self) -> Option<f64> {
        self.eval_loss
    }
}

/// One point of the training curve.
pub type CurvePoint = training::CurvePoint<HeldOut>;

#[derive(Debug, Serialize)]
pub struct PretrainSummary {
    pub out: String,
    pub steps: usize,
    pub final_train_loss: f64,
    pub eval_auc: Option<f64>,
    pub eval_loss: Option<f64>,
    pub turns: usize,
    pub windows: usize,
    /// Non-fatal problems read in --data and --eval-data (an empty
    /// utterance, an empty part file): the rows are used, the problems
    /// printed on stderr and counted here.
    pub input_warnings: usize,
    /// Training throughput: real (unpadded) tokens per second of training.
    pub tokens_per_second: f64,
    /// Inference throughput on the held-out set: turns scored per second.
    pub eval_turns_per_second: Option<f64>,
    /// Whether the products ran in bf16 (--bf16 asked for it and the CPU
    /// has AVX-512 BF16).
    pub bf16: bool,
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
    let inputs = pretrain_inputs(config)?;
    checkpoint::check_writable(&config.out)?;
    let (rows, data_warnings) = read_table_counted::<SynthTurn>(&config.data)?;
    anyhow::ensure!(
        !rows.is_empty(),
        "{}: no turns to pretrain on",
        config.data.display()
    );
    let checkpoint_dir = checkpoint::resume_dir(&config.out);
    let (model_config, tokenizer, init_weights) =
        if training::resumes(config.resume, &checkpoint_dir, &inputs)? {
            from_checkpoint(&checkpoint_dir)?
        } else {
            fresh_model(config, &rows)?
        };
    let train = examples(
        &rows,
        &tokenizer,
        &model_config.features,
        model_config.max_tokens,
        model_config.dialogue.max_turns,
    )?;
    let (held_out, held_out_warnings) = held_out_examples(config, &tokenizer, &model_config)?;
    let varmap = VarMap::new();
    let model = initial_model(config, &model_config, &varmap, init_weights.as_deref())?;
    let optimizer = AdamW::new(
        named_vars(&varmap)?,
        config.learning_rate,
        config.weight_decay,
    )?;
    let mut objective = SwapObjective {
        model: &model,
        train: &train.windows,
        held_out: held_out.as_ref(),
        special: special_ids(&tokenizer)?,
        mlm_weight: (config.init.is_none() && config.mlm_weight > 0.0).then_some(config.mlm_weight),
        seed: config.seed,
        batch_size: config.batch_size,
        eval_turns: 0,
    };
    let trainee = Trainee {
        config: &model_config,
        varmap: &varmap,
        tokenizer: &tokenizer,
    };
    let outcome = training::run(
        &loop_config(config, checkpoint_dir.clone(), &inputs),
        trainee,
        optimizer,
        bucketed_batches(&train.windows, config.batch_size),
        &mut objective,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    save_model(config, &rows, trainee, &outcome, seconds, &inputs)?;
    training::remove_checkpoint(&checkpoint_dir)?;
    Ok(PretrainSummary {
        input_warnings: data_warnings + held_out_warnings,
        ..summary(config, &train, outcome, objective.eval_turns, seconds)
    })
}

/// What pretrain reads, stamped before it reads any of it: the data, the
/// held-out data and the --init checkpoint. A file that changes before the
/// model moves into place fails the run, naming it (issue 17).
fn pretrain_inputs(config: &PretrainConfig) -> anyhow::Result<InputSnapshot> {
    let mut inputs = InputSnapshot::of_dataset(&config.data)?;
    if let Some(eval_data) = &config.eval_data {
        inputs.add(InputSnapshot::of_dataset(eval_data)?);
    }
    if let Some(init) = &config.init {
        inputs.add(checkpoint::input_snapshot(init)?);
    }
    Ok(inputs)
}

/// The architecture and tokenizer of the run that --resume continues.
fn from_checkpoint(dir: &Path) -> anyhow::Result<(ModelConfig, Tokenizer, Option<PathBuf>)> {
    let model_config = checkpoint::read_config(dir)?;
    let tokenizer = crate::model::tokenizer::load(&dir.join(checkpoint::TOKENIZER))?;
    Ok((model_config, tokenizer, None))
}

/// The architecture, tokenizer and (with --init) encoder weights of a new run.
fn fresh_model(
    config: &PretrainConfig,
    rows: &[SynthTurn],
) -> anyhow::Result<(ModelConfig, Tokenizer, Option<PathBuf>)> {
    let (encoder, tokenizer, weights) = match &config.init {
        Some(dir) => {
            let (encoder, tokenizer, weights) = checkpoint::read_hf(dir)?;
            (encoder, tokenizer, Some(weights))
        }
        None => {
            let (encoder, tokenizer) = scratch_encoder(config, rows)?;
            (encoder, tokenizer, None)
        }
    };
    Ok((model_config(config, rows, encoder), tokenizer, weights))
}

/// A BPE tokenizer trained on the original (not synthesised) turns, and a
/// small encoder for it.
fn scratch_encoder(
    config: &PretrainConfig,
    rows: &[SynthTurn],
) -> anyhow::Result<(EncoderConfig, Tokenizer)> {
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
    Ok((
        EncoderConfig::small(
            vocab,
            config.hidden_size,
            config.layers,
            config.heads,
            config.max_tokens,
        ),
        tokenizer,
    ))
}

/// The dialogue model around `encoder`, with the feature vocabularies of `rows`.
fn model_config(
    config: &PretrainConfig,
    rows: &[SynthTurn],
    encoder: EncoderConfig,
) -> ModelConfig {
    let audio_dim = rows
        .iter()
        .find_map(|r| r.turn.audio_embedding.as_ref().map(Vec::len))
        .unwrap_or(0);
    ModelConfig {
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
    }
}

/// The --eval-data examples, and the non-fatal problems read in that table.
fn held_out_examples(
    config: &PretrainConfig,
    tokenizer: &Tokenizer,
    model_config: &ModelConfig,
) -> anyhow::Result<(Option<Examples>, usize)> {
    let Some(path) = &config.eval_data else {
        return Ok((None, 0));
    };
    let (rows, warnings) = read_table_counted::<SynthTurn>(path)?;
    let examples = examples(
        &rows,
        tokenizer,
        &model_config.features,
        model_config.max_tokens,
        model_config.dialogue.max_turns,
    )?;
    Ok((Some(examples), warnings))
}

/// The model with weights from the seed, and --init's encoder weights over them.
fn initial_model(
    config: &PretrainConfig,
    model_config: &ModelConfig,
    varmap: &VarMap,
    init_weights: Option<&Path>,
) -> anyhow::Result<DialogueModel> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, &device());
    let model = DialogueModel::new(model_config, vb)?;
    checkpoint::seeded_init(varmap, config.seed)?;
    if let Some(weights) = init_weights {
        fill_varmap(varmap, weights, hf_candidates, |name| {
            name.starts_with("roberta.")
        })?;
    }
    Ok(model)
}

fn loop_config(
    config: &PretrainConfig,
    checkpoint_dir: PathBuf,
    inputs: &InputSnapshot,
) -> LoopConfig {
    LoopConfig {
        stage: "pretrain",
        checkpoint_dir,
        seed: config.seed,
        epochs: config.epochs,
        max_steps: config.max_steps,
        learning_rate: config.learning_rate,
        warmup_share: config.warmup_share,
        max_grad_norm: config.max_grad_norm,
        eval_every: Every::Steps(config.eval_every),
        checkpoint_every: Every::Steps(config.checkpoint_every),
        patience: None,
        resume: config.resume,
        inputs: inputs.clone(),
        stop_after: config.stop_after,
        quiet: config.quiet,
        bf16: config.bf16,
    }
}

/// Pretraining's objective: swapped-response detection, plus masked tokens
/// for an encoder trained from scratch.
struct SwapObjective<'a> {
    model: &'a DialogueModel,
    train: &'a [Window],
    held_out: Option<&'a Examples>,
    special: SpecialIds,
    /// Weight of the masked-token loss; None: no masking.
    mlm_weight: Option<f64>,
    seed: u64,
    batch_size: usize,
    /// Held-out turns scored, for the inference throughput.
    eval_turns: usize,
}

impl Objective for SwapObjective<'_> {
    type Eval = HeldOut;

    fn loss(&mut self, indices: &[usize], step: usize) -> anyhow::Result<StepLoss> {
        let chosen: Vec<&Window> = indices.iter().map(|&i| &self.train[i]).collect();
        let (mut batch, targets) = make_batch(&chosen, self.special.pad, &device())?;
        let tokens = batch.attention_mask.sum_all()?.to_scalar::<u32>()? as usize;
        let masked = match self.mlm_weight {
            Some(_) => {
                let mut rng = ChaCha8Rng::seed_from_u64(training::step_seed(self.seed, step));
                let vocab = self.model.config.encoder.vocab_size;
                mask_tokens(&batch, &self.special, vocab, &mut rng)?
            }
            None => None,
        };
        if let Some((ids, _, _)) = &masked {
            batch.input_ids = ids.clone();
        }
        let token_states = self.model.encode_tokens(&batch)?;
        let states = self.model.dialogue_states(&batch, &token_states)?;
        let logits = self.model.swap_logits(&states)?;
        let mut loss = swap_loss(&logits, &targets, &batch.turn_mask)?;
        if let (Some((_, positions, labels)), Some(weight)) = (&masked, self.mlm_weight) {
            let mlm = candle_nn::loss::cross_entropy(
                &self.model.mlm_logits(&token_states, positions)?,
                labels,
            )?;
            loss = (loss + (mlm * weight)?)?;
        }
        Ok(StepLoss { loss, tokens })
    }

    fn evaluate(&mut self, _step: usize) -> anyhow::Result<HeldOut> {
        let Some(held_out) = self.held_out else {
            return Ok(HeldOut {
                eval_loss: None,
                eval_auc: None,
            });
        };
        let (auc, loss) = evaluate(
            self.model,
            &held_out.windows,
            self.batch_size,
            self.special.pad,
        )?;
        self.eval_turns += held_out.turns;
        Ok(HeldOut {
            eval_loss: Some(loss),
            eval_auc: Some(auc),
        })
    }
}

/// The finished model directory: the model files, training.json and the curve plot.
fn save_model(
    config: &PretrainConfig,
    rows: &[SynthTurn],
    model: Trainee,
    outcome: &Outcome<HeldOut>,
    seconds: f64,
    inputs: &InputSnapshot,
) -> anyhow::Result<()> {
    let training = serde_json::json!({
        "stage": "pretrain",
        "data": config.data.display().to_string(),
        "data_fingerprint": fingerprint(rows),
        "init": config.init.as_ref().map(|p| p.display().to_string()),
        "seed": config.seed,
        "steps": outcome.steps,
        "settings": config,
        "curve": outcome.curve,
        "seconds": seconds,
    });
    let files = (model.config, model.varmap, model.tokenizer, &training);
    // The plot goes into the staging directory with the model, so the
    // directory appears whole or not at all.
    checkpoint::save_guarded(&config.out, files, inputs, |staging| {
        training::write_curve_plot(
            staging,
            "pretraining: loss and held-out swapped-response AUC",
            &outcome.curve,
            |eval| eval.eval_auc,
        )
    })
}

fn summary(
    config: &PretrainConfig,
    train: &Examples,
    outcome: Outcome<HeldOut>,
    eval_turns: usize,
    seconds: f64,
) -> PretrainSummary {
    let final_point = outcome.curve.last().map(|p| (p.train_loss, p.eval.clone()));
    let eval_seconds = outcome.eval_seconds;
    PretrainSummary {
        out: config.out.display().to_string(),
        steps: outcome.steps,
        final_train_loss: final_point.as_ref().map_or(f64::NAN, |p| p.0),
        eval_auc: final_point.as_ref().and_then(|p| p.1.eval_auc),
        eval_loss: final_point.as_ref().and_then(|p| p.1.eval_loss),
        turns: train.turns,
        windows: train.windows.len(),
        input_warnings: 0,
        tokens_per_second: outcome.tokens_per_second,
        eval_turns_per_second: (eval_turns > 0 && eval_seconds > 0.0)
            .then(|| eval_turns as f64 / eval_seconds),
        bf16: outcome.bf16,
        seconds,
        curve: outcome.curve,
    }
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

    /// A one-layer model with mean pooling (its mask must keep gradients
    /// flowing and padding out) on [`tiny`]'s synth data, its windows and
    /// variables.
    struct TinyModel {
        config: ModelConfig,
        windows: Vec<Window>,
        special: SpecialIds,
        varmap: VarMap,
        model: DialogueModel,
    }

    fn tiny_model() -> TinyModel {
        let tmp = tempfile::tempdir().unwrap();
        let config = tiny(tmp.path());
        let (rows, _) = crate::data::dataset::read_table::<SynthTurn>(&config.data).unwrap();
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
            turn_pooling: TurnPooling::Mean,
        };
        let data = examples(&rows, &tokenizer, &model_config.features, 16, 4).unwrap();
        let varmap = VarMap::new();
        let model = DialogueModel::new(
            &model_config,
            VarBuilder::from_varmap(&varmap, DType::F32, &device()),
        )
        .unwrap();
        TinyModel {
            config: model_config,
            windows: data.windows,
            special: special_ids(&tokenizer).unwrap(),
            varmap,
            model,
        }
    }

    /// The largest absolute difference between two tensors.
    fn max_gap(a: &Tensor, b: &Tensor) -> f32 {
        crate::model::kernels::testing::largest_difference(a, b).unwrap()
    }

    #[test]
    fn mean_pooling_ignores_padding() {
        let TinyModel {
            windows,
            special,
            model,
            ..
        } = tiny_model();
        // The first window's dialogue states, as built and with 5 more
        // (masked, non-zero) token states.
        let (narrow, _) = make_batch(&[&windows[0]], special.pad, &device()).unwrap();
        let tokens = model.encode_tokens(&narrow).unwrap();
        let (turns, _, hidden) = tokens.dims3().unwrap();
        let padding = Tensor::ones((turns, 5, hidden), DType::F32, &device()).unwrap();
        let wide_tokens = Tensor::cat(&[&tokens, &padding], 1).unwrap();
        let wide = Batch {
            attention_mask: narrow.attention_mask.pad_with_zeros(1, 0, 5).unwrap(),
            ..narrow.clone()
        };
        let gap = max_gap(
            &model.dialogue_states(&narrow, &tokens).unwrap(),
            &model.dialogue_states(&wide, &wide_tokens).unwrap(),
        );
        assert!(gap < 1e-5, "{gap}");
    }

    #[test]
    fn with_lookahead_one_a_turn_sees_the_next_and_no_later_one() {
        let TinyModel {
            windows,
            special,
            model,
            ..
        } = tiny_model();
        // One dialogue layer: what the last turn says reaches the turn
        // before it, and no earlier turn.
        let long = windows
            .iter()
            .find(|w| w.turns.len() >= 3)
            .expect("a window of 3 turns or more");
        let (batch, _) = make_batch(&[long], special.pad, &device()).unwrap();
        let tokens = model.encode_tokens(&batch).unwrap();
        let turns = tokens.dim(0).unwrap();
        let changed = Tensor::cat(
            &[
                &tokens.narrow(0, 0, turns - 1).unwrap(),
                &(tokens.narrow(0, turns - 1, 1).unwrap() + 1.0).unwrap(),
            ],
            0,
        )
        .unwrap();
        let before = model.dialogue_states(&batch, &tokens).unwrap();
        let after = model.dialogue_states(&batch, &changed).unwrap();
        let gap_at = |t: usize| {
            max_gap(
                &before.narrow(1, t, 1).unwrap(),
                &after.narrow(1, t, 1).unwrap(),
            )
        };
        assert!(gap_at(turns - 2) > 1e-4, "the next turn should be visible");
        for t in 0..turns - 2 {
            assert!(gap_at(t) < 1e-6, "turn {t} sees turn {}", turns - 1);
        }
    }

    #[test]
    fn every_trainable_variable_gets_a_gradient() {
        let TinyModel {
            config,
            windows,
            special,
            varmap,
            model,
        } = tiny_model();
        let chosen: Vec<&Window> = windows.iter().take(16).collect();
        let (mut batch, targets) = make_batch(&chosen, special.pad, &device()).unwrap();
        // Shapes: (N, L) tokens in, (B, T) logits out.
        let n: usize = chosen.iter().map(|w| w.turns.len()).sum();
        assert_eq!(batch.input_ids.dims()[0], n);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (ids, positions, labels) =
            mask_tokens(&batch, &special, config.encoder.vocab_size, &mut rng)
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

    /// Synth data from dialogues of another simulator seed than [`tiny`]'s:
    /// held out, so a falling loss on it is learning, not memorising.
    fn held_out(dir: &Path) -> PathBuf {
        let sim = dir.join("held-out-sim");
        simulate(&SimulateConfig::new(20, 2, sim.clone())).unwrap();
        let out = dir.join("held-out-synth");
        synth(&SynthConfig::new(sim.join("turns"), out.clone())).unwrap();
        out
    }

    #[test]
    fn training_lowers_the_held_out_loss_and_the_model_reloads_identically() {
        let tmp = tempfile::tempdir().unwrap();
        let config = PretrainConfig {
            epochs: 6,
            learning_rate: 3e-3,
            eval_every: 5,
            eval_data: Some(held_out(tmp.path())),
            ..tiny(tmp.path())
        };
        let summary = run(&config).unwrap();
        let first = summary.curve.first().unwrap().eval.eval_loss.unwrap();
        let last = summary.curve.last().unwrap().eval.eval_loss.unwrap();
        assert!(last < first, "held-out loss {first} -> {last}");
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
        let (rows, _) =
            crate::data::dataset::read_table::<SynthTurn>(config.eval_data.as_ref().unwrap())
                .unwrap();
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
