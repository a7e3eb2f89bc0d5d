//! What `labelgen train` is asked to do (`TrainConfig`, checked by
//! `validate`) and what it reports (`TrainSummary`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::calibration::DecisionFit;
use super::raters::AnnotatorPolicy;
use super::weak::{WeakRules, WeakSummary};
use crate::model::Precision;
use crate::model::buckets::TokenCounts;
use crate::model::config::{Lookahead, TurnContext};

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
    /// Extra training windows, as a share of the training windows, that
    /// join a goal of one dialogue to a goal of another (0: none).
    pub splice_goals: f64,
    /// Keep the pretrained turn encoder fixed and cache its token states.
    pub freeze_encoder: bool,
    /// Train only the top N encoder layers (with the dialogue Transformer and
    /// heads), from cached states of the layers below; 0: see freeze_encoder.
    pub train_top_layers: usize,
    /// The arithmetic of the cached encoder layers' dense layers (with
    /// freeze_encoder or train_top_layers; `label --precision`'s choice).
    pub precision: Precision,
    /// The products of the dense layers that train in bf16 with f32 sums
    /// (mixed precision, AVX-512 BF16; f32 elsewhere).
    pub bf16: bool,
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
            splice_goals: 0.0,
            freeze_encoder: false,
            train_top_layers: 0,
            precision: Precision::F32,
            bf16: false,
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
    /// Training windows `--splice-goals` added (each joins two dialogues' goals).
    pub spliced_windows: usize,
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
    /// Whether the trained layers' products ran in bf16 (--bf16 asked for
    /// it and the CPU has AVX-512 BF16).
    pub bf16: bool,
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
    /// Distinct turns whose encodings were cached (--freeze-encoder,
    /// --train-top-layers), their size, and the seconds computing them took.
    pub cached_turns: usize,
    pub cache_megabytes: f64,
    pub cache_seconds: f64,
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

/// The most `--splice-goals` may add: this many extra windows per training window.
pub const MAX_SPLICE_GOALS: f64 = 4.0;

pub(super) fn validate(config: &TrainConfig) -> anyhow::Result<()> {
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
        (0.0..=MAX_SPLICE_GOALS).contains(&config.splice_goals),
        "--splice-goals must be in [0, {MAX_SPLICE_GOALS}] (extra windows per training window), got {}",
        config.splice_goals
    );
    anyhow::ensure!(
        config.precision == Precision::F32 || config.freeze_encoder || config.train_top_layers > 0,
        "--precision int16 computes the cached states of fixed encoder layers: add --freeze-encoder or --train-top-layers N"
    );
    Ok(())
}
