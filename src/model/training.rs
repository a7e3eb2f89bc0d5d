//! The training loop that `pretrain` and `train` share: the learning-rate
//! schedule, gradient clipping, the epoch order, the NaN guard, checkpoints
//! and `--resume`, early stopping, the progress bar and the training curve.
//! A stage brings its data (batches of example indices) and its
//! [`Objective`]: the loss of a batch and a held-out evaluation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use candle_nn::VarMap;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::checkpoint::{self, fill_varmap};
use super::config::ModelConfig;
use super::kernels;
use super::optim::AdamW;
use crate::data::dataset::write_file_atomic;
use crate::data::inputs::{InputSnapshot, SavedSnapshot};
use crate::progress::Progress;

/// Where training stands: written last into a checkpoint, so its presence
/// marks a complete one.
pub const STATE: &str = "state.json";
/// The AdamW moments.
pub const OPTIMIZER: &str = "optimizer.safetensors";
/// The best evaluation's weights, kept for early stopping.
pub const BEST: &str = "best.safetensors";
/// training_curve.svg and training_curve.png beside the model files.
pub const CURVE_PLOT: &str = "training_curve";

/// Losses the progress bar averages over.
const RECENT_LOSSES: usize = 50;

/// The share of the steps that warm the learning rate up, in every stage.
pub const WARMUP_SHARE: f64 = 0.06;
/// The global gradient norm that gradients are clipped to by default.
pub const MAX_GRAD_NORM: f64 = 1.0;

/// One batch's loss, and its real (unpadded) tokens for the throughput.
pub struct StepLoss {
    pub loss: Tensor,
    pub tokens: usize,
}

/// What a held-out evaluation measured; one per point of the curve.
pub trait Evaluation: Clone + Serialize + DeserializeOwned {
    /// The loss early stopping compares (lower is better); None without
    /// held-out data.
    fn loss(&self) -> Option<f64>;
}

/// What a stage trains for.
pub trait Objective {
    type Eval: Evaluation;
    /// The loss of one batch of example indices. Randomness (masking,
    /// dropout) must derive from the seed and `step` only, so that a
    /// resumed run repeats it.
    fn loss(&mut self, batch: &[usize], step: usize) -> anyhow::Result<StepLoss>;
    /// A held-out evaluation for the curve (and early stopping), after
    /// `step` optimizer updates.
    fn evaluate(&mut self, step: usize) -> anyhow::Result<Self::Eval>;
}

/// How often something happens: every N steps, or at the end of each epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Every {
    Steps(usize),
    Epoch,
}

impl Every {
    fn steps(self, batches_per_epoch: usize) -> usize {
        match self {
            Every::Steps(n) => n.max(1),
            Every::Epoch => batches_per_epoch,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// The stage's name, recorded in a checkpoint's training.json.
    pub stage: &'static str,
    /// Where checkpoints go (MODEL.checkpoint) and `--resume` reads them.
    pub checkpoint_dir: PathBuf,
    pub seed: u64,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    /// The peak learning rate.
    pub learning_rate: f64,
    /// Share of the steps with a linear warm-up, before the linear decay.
    pub warmup_share: f64,
    /// Gradients are scaled down to this global L2 norm.
    pub max_grad_norm: f64,
    pub eval_every: Every,
    pub checkpoint_every: Every,
    /// Early stopping: stop after this many evaluations without a lower
    /// held-out loss, and end with the best evaluation's weights.
    pub patience: Option<usize>,
    /// Continue from the checkpoint in `checkpoint_dir` if there is one.
    pub resume: bool,
    /// What the stage read, stamped at its start: each checkpoint keeps it,
    /// and --resume refuses a checkpoint whose inputs differ ([`resumes`]).
    pub inputs: InputSnapshot,
    /// Stop after this step as if killed, leaving the checkpoint (tests
    /// use it to check that --resume continues exactly).
    pub stop_after: Option<usize>,
    pub quiet: bool,
    /// The products of the dense layers that train in bf16 with f32 sums
    /// (`--bf16`, [`kernels::bf16`]), where the CPU has AVX-512 BF16.
    pub bf16: bool,
}

/// The model a loop trains, and what a checkpoint saves with its weights.
#[derive(Clone, Copy)]
pub struct Trainee<'a> {
    pub config: &'a ModelConfig,
    pub varmap: &'a VarMap,
    pub tokenizer: &'a Tokenizer,
}

/// One point of the training curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint<E> {
    pub step: usize,
    /// Wall-clock seconds of training (this run's part) when the point was taken.
    pub seconds: f64,
    /// The mean training loss over the steps since the previous point.
    pub train_loss: f64,
    #[serde(flatten)]
    pub eval: E,
}

/// What a finished loop hands back; with early stopping, the model holds
/// the best evaluation's weights.
#[derive(Debug)]
pub struct Outcome<E> {
    pub steps: usize,
    pub batches_per_epoch: usize,
    pub curve: Vec<CurvePoint<E>>,
    /// Index into `curve` of the best evaluation (early stopping only).
    pub best: Option<usize>,
    /// The step this run continued from (--resume).
    pub resumed_from: Option<usize>,
    /// Real tokens per second of training, evaluations not counted.
    pub tokens_per_second: f64,
    pub eval_seconds: f64,
    /// Whether the products ran in bf16 (`LoopConfig::bf16` asked for it
    /// and the CPU has AVX-512 BF16).
    pub bf16: bool,
}

impl<E> Outcome<E> {
    /// The epoch (from 1) that `step` completes or falls in.
    pub fn epoch_of(&self, step: usize) -> usize {
        step.div_ceil(self.batches_per_epoch.max(1))
    }
}

/// Linear warm-up over a share of the steps, then linear decay to zero.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    peak: f64,
    warmup: usize,
    total: usize,
}

impl Schedule {
    pub fn new(peak: f64, warmup_share: f64, total: usize) -> Schedule {
        let warmup = ((total as f64 * warmup_share) as usize).max(1);
        Schedule {
            peak,
            warmup,
            total,
        }
    }

    pub fn learning_rate(&self, step: usize) -> f64 {
        if step < self.warmup {
            self.peak * (step + 1) as f64 / self.warmup as f64
        } else {
            self.peak * self.total.saturating_sub(step) as f64
                / self.total.saturating_sub(self.warmup).max(1) as f64
        }
    }
}

/// The factor that scales gradients of global norm `norm` down to `max_norm`.
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if norm > max_norm {
        max_norm / norm
    } else {
        1.0
    }
}

/// The steps of a run: every batch of every epoch, or fewer.
pub fn total_steps(max_steps: Option<usize>, batches_per_epoch: usize, epochs: usize) -> usize {
    max_steps
        .unwrap_or(usize::MAX)
        .min(batches_per_epoch * epochs)
        .max(1)
}

/// An epoch's batch order: a function of the seed and the epoch only, so
/// a resumed run sees exactly the batches the killed one would have. The
/// first epoch's seed is not the bare seed, which seeds other draws.
pub fn epoch_order(batches: &[Vec<usize>], seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order = batches.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(
        seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9),
    ));
    order
}

/// The seed of a step's own randomness (masking, dropout): a function of
/// the seed and the step only, so a resumed run repeats it.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    seed ^ (step as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Whether `--resume` finds a complete checkpoint to continue from.
pub fn can_resume(resume: bool, checkpoint_dir: &Path) -> bool {
    resume && checkpoint_dir.join(STATE).is_file()
}

/// Key of a checkpoint's training.json that holds its run's inputs.
const INPUTS_KEY: &str = "inputs";

/// [`can_resume`], and an error naming the file when the checkpoint's
/// inputs (as its run stamped them) differ from `inputs` (this run's): its
/// weights were trained on other data, such as a run that failed because
/// an input changed under it, and continuing them would train on a mix.
/// A checkpoint that records no inputs (an older one) resumes as before.
pub fn resumes(
    resume: bool,
    checkpoint_dir: &Path,
    inputs: &InputSnapshot,
) -> anyhow::Result<bool> {
    if !can_resume(resume, checkpoint_dir) {
        return Ok(false);
    }
    let path = checkpoint_dir.join(checkpoint::TRAINING);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let Some(saved) = record.get(INPUTS_KEY) else {
        return Ok(true);
    };
    let saved: SavedSnapshot = serde_json::from_value(saved.clone())
        .map_err(|e| anyhow::anyhow!("{}: unreadable `{INPUTS_KEY}`: {e}", path.display()))?;
    if let Some(change) = inputs.differs_from(&saved) {
        anyhow::bail!(
            "--resume: the checkpoint {} was trained on inputs that differ from this run's \
             ({change}); resuming would continue its weights on other data\n  \
             hint: run without --resume to start over (its first checkpoint replaces this one)",
            checkpoint_dir.display()
        );
    }
    Ok(true)
}

/// Removes the checkpoint once the finished model is saved.
pub fn remove_checkpoint(checkpoint_dir: &Path) -> anyhow::Result<()> {
    if checkpoint_dir.exists() {
        std::fs::remove_dir_all(checkpoint_dir)?;
    }
    Ok(())
}

/// training_curve.{svg,png} in `out`: the training loss and `score` (a
/// value in [0, 1], such as a held-out AUC) against steps.
pub fn write_curve_plot<E>(
    out: &Path,
    title: &str,
    curve: &[CurvePoint<E>],
    score: impl Fn(&E) -> Option<f64>,
) -> anyhow::Result<()> {
    let svg = crate::plot::curve_svg(
        title,
        curve
            .iter()
            .map(|p| (p.step as f64, p.train_loss, score(&p.eval)))
            .collect(),
    );
    write_file_atomic(&out.join(format!("{CURVE_PLOT}.svg")), svg.as_bytes())?;
    write_file_atomic(
        &out.join(format!("{CURVE_PLOT}.png")),
        &crate::plot::png(&svg)?,
    )
}

/// Runs `objective` over `batches` (example indices; shuffled anew each
/// epoch) with `optimizer`, from a checkpoint if `config.resume` finds one.
pub fn run<O: Objective>(
    config: &LoopConfig,
    model: Trainee,
    mut optimizer: AdamW,
    batches: Vec<Vec<usize>>,
    objective: &mut O,
) -> anyhow::Result<Outcome<O::Eval>> {
    validate(config, &batches)?;
    let mixed = kernels::bf16::Scoped::enable(config.bf16);
    let total_steps = total_steps(config.max_steps, batches.len(), config.epochs);
    let resumed = resume(config, model, &mut optimizer)?;
    let resumed_from = resumed.as_ref().map(|(state, _)| state.step);
    let (state, best_weights) = resumed.unwrap_or_else(|| (LoopState::new(), None));
    let progress = Progress::new(total_steps as u64, "steps", config.quiet);
    progress.inc(state.step as u64);
    let mut run = Run {
        schedule: Schedule::new(config.learning_rate, config.warmup_share, total_steps),
        eval_every: config.eval_every.steps(batches.len()),
        checkpoint_every: config.checkpoint_every.steps(batches.len()),
        order: EpochOrder::new(batches, config.seed),
        config,
        model,
        optimizer,
        objective,
        state,
        best_weights,
        total_steps,
        clock: Clock::new(),
        progress,
    };
    while run.state.step < total_steps && !run.state.stopped_early {
        run.step()?;
        run.after_step()?;
    }
    run.finish(resumed_from, mixed.on())
}

fn validate(config: &LoopConfig, batches: &[Vec<usize>]) -> anyhow::Result<()> {
    anyhow::ensure!(!batches.is_empty(), "no batches to train on");
    anyhow::ensure!(config.epochs > 0, "--epochs must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&config.warmup_share),
        "the warm-up share must be in [0, 1], got {}",
        config.warmup_share
    );
    anyhow::ensure!(
        config.max_grad_norm > 0.0,
        "the gradient clipping norm must be above 0, got {}",
        config.max_grad_norm
    );
    Ok(())
}

/// Where training stands; saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LoopState<E> {
    step: usize,
    curve: Vec<CurvePoint<E>>,
    recent_losses: Vec<f64>,
    /// Sum and number of the losses since the last curve point.
    since_point: (f64, usize),
    /// Index into `curve` of the lowest held-out loss (early stopping).
    best: Option<usize>,
    stopped_early: bool,
}

impl<E: Evaluation> LoopState<E> {
    fn new() -> LoopState<E> {
        LoopState {
            step: 0,
            curve: Vec::new(),
            recent_losses: Vec::new(),
            since_point: (0.0, 0),
            best: None,
            stopped_early: false,
        }
    }

    /// Counts a finished step and its loss.
    fn record(&mut self, loss: f64) {
        self.step += 1;
        self.recent_losses.push(loss);
        if self.recent_losses.len() > RECENT_LOSSES {
            self.recent_losses.remove(0);
        }
        self.since_point.0 += loss;
        self.since_point.1 += 1;
    }

    fn recent_loss(&self) -> f64 {
        self.recent_losses.iter().sum::<f64>() / self.recent_losses.len().max(1) as f64
    }

    fn add_point(&mut self, seconds: f64, eval: E) {
        self.curve.push(CurvePoint {
            step: self.step,
            seconds,
            train_loss: self.since_point.0 / self.since_point.1.max(1) as f64,
            eval,
        });
        self.since_point = (0.0, 0);
    }

    /// Early stopping on the newest point: whether it is the best so far
    /// (its weights are to be kept); after `patience` points without a
    /// lower loss, training stops.
    fn judge_newest(&mut self, patience: usize) -> bool {
        let newest = self.curve.len().saturating_sub(1);
        let Some(loss) = self.curve.last().and_then(|p| p.eval.loss()) else {
            return false;
        };
        let best_loss = self.best.and_then(|b| self.curve[b].eval.loss());
        if best_loss.is_none_or(|best| loss < best) {
            self.best = Some(newest);
            return true;
        }
        if self.best.is_some_and(|b| newest - b >= patience) {
            self.stopped_early = true;
        }
        false
    }
}

/// Training time net of evaluations, and the tokens trained on.
struct Clock {
    started: Instant,
    eval_seconds: f64,
    tokens: usize,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            started: Instant::now(),
            eval_seconds: 0.0,
            tokens: 0,
        }
    }

    fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / (self.started.elapsed().as_secs_f64() - self.eval_seconds).max(1e-9)
    }
}

/// The batches of the current epoch, in its order.
struct EpochOrder {
    batches: Vec<Vec<usize>>,
    seed: u64,
    epoch: Option<usize>,
    order: Vec<Vec<usize>>,
}

impl EpochOrder {
    fn new(batches: Vec<Vec<usize>>, seed: u64) -> EpochOrder {
        EpochOrder {
            batches,
            seed,
            epoch: None,
            order: Vec::new(),
        }
    }

    fn batch(&mut self, step: usize) -> &[usize] {
        let epoch = step / self.batches.len();
        if self.epoch != Some(epoch) {
            self.order = epoch_order(&self.batches, self.seed, epoch);
            self.epoch = Some(epoch);
        }
        &self.order[step % self.batches.len()]
    }
}

struct Run<'a, O: Objective> {
    config: &'a LoopConfig,
    model: Trainee<'a>,
    optimizer: AdamW,
    objective: &'a mut O,
    state: LoopState<O::Eval>,
    best_weights: Option<Weights>,
    order: EpochOrder,
    schedule: Schedule,
    total_steps: usize,
    eval_every: usize,
    checkpoint_every: usize,
    clock: Clock,
    progress: Progress,
}

impl<O: Objective> Run<'_, O> {
    /// One optimizer update.
    fn step(&mut self) -> anyhow::Result<()> {
        let step = self.state.step;
        let batch = self.order.batch(step);
        let StepLoss { loss, tokens } = self.objective.loss(batch, step)?;
        let value = loss.to_scalar::<f32>()? as f64;
        ensure_finite("loss", value, step, &self.config.checkpoint_dir)?;
        let grads = loss.backward()?;
        let norm = self.optimizer.grad_norm(&grads)?;
        ensure_finite("gradient norm", norm, step, &self.config.checkpoint_dir)?;
        self.optimizer.learning_rate = self.schedule.learning_rate(step);
        self.optimizer
            .step(&grads, clip_scale(norm, self.config.max_grad_norm))?;
        self.state.record(value);
        self.clock.tokens += tokens;
        self.progress.inc(1);
        self.progress.message(format!(
            "epoch {}, loss {:.4}, {:.0} tokens/s",
            step / self.order.batches.len() + 1,
            self.state.recent_loss(),
            self.clock.tokens_per_second()
        ));
        Ok(())
    }

    /// Evaluation, checkpoint and the test stop, each when due.
    fn after_step(&mut self) -> anyhow::Result<()> {
        let step = self.state.step;
        let last = step == self.total_steps;
        if step.is_multiple_of(self.eval_every) || last {
            self.evaluate()?;
        }
        let more = !last && !self.state.stopped_early;
        if more && step.is_multiple_of(self.checkpoint_every) {
            self.save_checkpoint()?;
        }
        if more && self.config.stop_after == Some(step) {
            anyhow::bail!(
                "stopped after step {step} as asked (--resume continues from {})",
                self.config.checkpoint_dir.display()
            );
        }
        Ok(())
    }

    fn evaluate(&mut self) -> anyhow::Result<()> {
        let timer = Instant::now();
        let eval = self.objective.evaluate(self.state.step)?;
        self.clock.eval_seconds += timer.elapsed().as_secs_f64();
        let seconds = self.clock.started.elapsed().as_secs_f64();
        self.state.add_point(seconds, eval);
        if let Some(patience) = self.config.patience
            && self.state.judge_newest(patience)
        {
            self.best_weights = Some(checkpoint::snapshot(self.model.varmap)?);
        }
        Ok(())
    }

    fn save_checkpoint(&self) -> anyhow::Result<()> {
        let dir = &self.config.checkpoint_dir;
        checkpoint::save(
            dir,
            self.model.config,
            self.model.varmap,
            self.model.tokenizer,
            &serde_json::json!({
                "stage": format!("{} checkpoint", self.config.stage),
                "step": self.state.step,
                INPUTS_KEY: self.config.inputs.saved(),
            }),
        )?;
        save_resume_state(
            dir,
            &self.optimizer,
            &self.state,
            self.best_weights.as_deref(),
        )
    }

    fn finish(self, resumed_from: Option<usize>, bf16: bool) -> anyhow::Result<Outcome<O::Eval>> {
        self.progress.finish();
        if self.config.patience.is_some() {
            let best = self
                .best_weights
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("no evaluation ran: there are no best weights"))?;
            restore(self.model.varmap, best)?;
        }
        Ok(Outcome {
            steps: self.state.step,
            batches_per_epoch: self.order.batches.len(),
            best: self.state.best,
            curve: self.state.curve,
            resumed_from,
            tokens_per_second: self.clock.tokens_per_second(),
            eval_seconds: self.clock.eval_seconds,
            bf16,
        })
    }
}

/// Stops the run at a loss (or gradient norm) that is not a finite number:
/// the update would ruin every weight.
fn ensure_finite(what: &str, value: f64, step: usize, checkpoint_dir: &Path) -> anyhow::Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    let last_good = if checkpoint_dir.join(STATE).is_file() {
        format!(
            " (the last good checkpoint is in {})",
            checkpoint_dir.display()
        )
    } else {
        String::new()
    };
    anyhow::bail!(
        "the {what} became {value} at step {step}; stopping{last_good}\n  hint: lower --learning-rate"
    )
}

type Weights = Vec<(String, Tensor)>;
/// A checkpoint's loop state and best weights.
type Resumed<E> = (LoopState<E>, Option<Weights>);

/// The checkpoint's loop state, weights and best weights, when resuming.
fn resume<E: Evaluation>(
    config: &LoopConfig,
    model: Trainee,
    optimizer: &mut AdamW,
) -> anyhow::Result<Option<Resumed<E>>> {
    let dir = &config.checkpoint_dir;
    if !resumes(config.resume, dir, &config.inputs)? {
        return Ok(None);
    }
    fill_varmap(
        model.varmap,
        &dir.join(checkpoint::WEIGHTS),
        |n| vec![n.to_string()],
        |_| true,
    )?;
    let state = load_resume_state(dir, optimizer)?;
    let best = if dir.join(BEST).is_file() {
        Some(load_weights(&dir.join(BEST))?)
    } else {
        None
    };
    Ok(Some((state, best)))
}

/// The optimizer's moments, the best weights and (last) the loop state.
fn save_resume_state<E: Evaluation>(
    dir: &Path,
    optimizer: &AdamW,
    state: &LoopState<E>,
    best: Option<&[(String, Tensor)]>,
) -> anyhow::Result<()> {
    optimizer.save(&dir.join(OPTIMIZER))?;
    if let Some(best) = best {
        let best: HashMap<String, Tensor> = best.iter().cloned().collect();
        let staging = dir.join(format!(".{BEST}.tmp"));
        candle_core::safetensors::save(&best, &staging)?;
        std::fs::rename(&staging, dir.join(BEST))?;
    }
    write_file_atomic(&dir.join(STATE), serde_json::to_string(state)?.as_bytes())
}

fn load_resume_state<E: Evaluation>(
    dir: &Path,
    optimizer: &mut AdamW,
) -> anyhow::Result<LoopState<E>> {
    let path = dir.join(STATE);
    let state: LoopState<E> = serde_json::from_slice(&std::fs::read(&path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    optimizer.load(&dir.join(OPTIMIZER), state.step)?;
    Ok(state)
}

/// Tensors of a safetensors file, sorted by name.
fn load_weights(path: &Path) -> anyhow::Result<Weights> {
    let mut weights: Weights = candle_core::safetensors::load(path, &super::device())?
        .into_iter()
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(weights)
}

/// Sets the variables of `varmap` to `weights`, by name.
fn restore(varmap: &VarMap, weights: &[(String, Tensor)]) -> anyhow::Result<()> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
    for (name, tensor) in weights {
        let var = vars
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("the best weights name `{name}`, not in the model"))?;
        var.set(tensor)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct HeldOut {
        loss: Option<f64>,
    }

    impl Evaluation for HeldOut {
        fn loss(&self) -> Option<f64> {
            self.loss
        }
    }

    #[test]
    fn the_schedule_warms_up_then_decays_to_zero() {
        let schedule = Schedule::new(1.0, 0.25, 8);
        let rates: Vec<f64> = (0..8).map(|s| schedule.learning_rate(s)).collect();
        assert_eq!(
            rates,
            [
                0.5,
                1.0,
                1.0,
                5.0 / 6.0,
                4.0 / 6.0,
                0.5,
                2.0 / 6.0,
                1.0 / 6.0
            ]
        );
        // At least one warm-up step, however short the run.
        let short = Schedule::new(2.0, 0.06, 3);
        assert_eq!(short.learning_rate(0), 2.0);
        assert_eq!(short.learning_rate(1), 2.0);
        // A share of 1/16 warms up over total / 16 steps.
        let sixteenth = Schedule::new(1.0, 1.0 / 16.0, 100);
        assert_eq!(sixteenth.warmup, 100 / 16);
    }

    #[test]
    fn clipping_scales_only_norms_above_the_limit() {
        assert_eq!(clip_scale(0.5, 1.0), 1.0);
        assert_eq!(clip_scale(1.0, 1.0), 1.0);
        assert_eq!(clip_scale(4.0, 1.0), 0.25);
        assert_eq!(clip_scale(4.0, 2.0), 0.5);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let batches: Vec<Vec<usize>> = (0..20).map(|i| vec![i]).collect();
        let first = epoch_order(&batches, 7, 0);
        assert_eq!(first, epoch_order(&batches, 7, 0));
        assert_ne!(first, epoch_order(&batches, 7, 1));
        assert_ne!(first, epoch_order(&batches, 8, 0));
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, batches);
        // The step-wise view follows the epochs.
        let mut order = EpochOrder::new(batches.clone(), 7);
        assert_eq!(order.batch(21), epoch_order(&batches, 7, 1)[1].as_slice());
        assert_eq!(order.batch(3), first[3].as_slice());
        assert_eq!(total_steps(None, 20, 3), 60);
        assert_eq!(total_steps(Some(7), 20, 3), 7);
        assert_eq!(total_steps(Some(0), 20, 3), 1);
        // Epochs and steps seed apart from the bare seed and from each other.
        assert_ne!(step_seed(7, 0), 7);
        assert_ne!(step_seed(7, 1), step_seed(8, 0));
    }

    #[test]
    fn the_nan_guard_names_the_step_and_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(ensure_finite("loss", 0.3, 4, tmp.path()).is_ok());
        let error = ensure_finite("loss", f64::NAN, 4, tmp.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("the loss became NaN at step 4"), "{error}");
        assert!(error.contains("lower --learning-rate"), "{error}");
        assert!(!error.contains("checkpoint"), "{error}");
        std::fs::write(tmp.path().join(STATE), "{}").unwrap();
        let error = ensure_finite("gradient norm", f64::INFINITY, 9, tmp.path())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("gradient norm became inf at step 9"),
            "{error}"
        );
        assert!(error.contains("last good checkpoint is in"), "{error}");
    }

    #[test]
    fn early_stopping_keeps_the_best_and_waits_patience_points() {
        let mut state = LoopState::new();
        for (loss, best) in [(3.0, true), (2.0, true), (2.5, false), (2.1, false)] {
            state.record(loss);
            state.add_point(0.0, HeldOut { loss: Some(loss) });
            assert_eq!(state.judge_newest(2), best, "{loss}");
        }
        assert_eq!(state.best, Some(1));
        assert!(state.stopped_early);
        assert_eq!(state.curve[3].train_loss, 2.1);
    }

    /// A checkpoint's loop state and AdamW moments come back as saved: one
    /// more update from the loaded optimizer equals one from the original.
    #[test]
    fn resume_state_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = super::super::device();
        let var = Var::from_vec(vec![1.0f32, -2.0, 0.5], 3, &dev).unwrap();
        let twin = Var::from_vec(vec![1.0f32, -2.0, 0.5], 3, &dev).unwrap();
        let update = |optimizer: &mut AdamW, var: &Var| {
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            optimizer.step(&loss.backward().unwrap(), 0.5).unwrap();
        };
        let mut optimizer = AdamW::new(vec![("w".into(), var.clone())], 0.1, 0.01).unwrap();
        for _ in 0..3 {
            update(&mut optimizer, &var);
        }
        let mut state = LoopState::new();
        // Three steps, as the optimizer took.
        for loss in [0.7, 0.6] {
            state.record(loss);
        }
        state.add_point(1.5, HeldOut { loss: Some(0.4) });
        state.record(0.45);
        state.best = Some(0);
        let best = vec![("w".to_string(), var.as_tensor().copy().unwrap())];
        save_resume_state(tmp.path(), &optimizer, &state, Some(&best)).unwrap();

        twin.set(var.as_tensor()).unwrap();
        let mut loaded = AdamW::new(vec![("w".into(), twin.clone())], 0.1, 0.01).unwrap();
        let back: LoopState<HeldOut> = load_resume_state(tmp.path(), &mut loaded).unwrap();
        assert_eq!(back, state);
        assert_eq!(loaded.step, 3);
        update(&mut optimizer, &var);
        update(&mut loaded, &twin);
        let values = |v: &Var| {
            v.as_tensor()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(values(&var), values(&twin));
        let best_back = load_weights(&tmp.path().join(BEST)).unwrap();
        assert_eq!(best_back[0].0, "w");
    }
}
