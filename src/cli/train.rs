//! `labelgen train`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::model::config::{Lookahead, TurnContext};
use labelgen::model::{Precision, kernels};
use labelgen::stages::train::raters::AnnotatorPolicy;
use labelgen::stages::train::weak::WeakRules;
use labelgen::stages::train::{self, MIN_RARE_DEV_DIALOGUES, TrainConfig};

use super::common::Common;
use super::parse::{parse_dropout, parse_learning_rate, parse_lookahead, parse_task_weights};
use super::summary::print_summary;

/// What a contextless baseline reads of its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ContextlessInput {
    /// The user utterance alone
    Utterance,
    /// The user utterance and the system response, as a pair
    Turn,
    /// The utterance and response, with the turn's runtime features (only the other turns are dropped)
    TurnRuntime,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Pretrained model directory (from `labelgen pretrain`)
    #[arg(long)]
    init: PathBuf,
    /// The logs (turns table)
    #[arg(long)]
    logs: PathBuf,
    /// Annotations table to learn from
    #[arg(long)]
    labels: PathBuf,
    /// Model directory to write
    #[arg(long)]
    out: PathBuf,
    /// Annotators to learn from (default: single, or the table's only annotator)
    #[arg(long, value_delimiter = ',')]
    annotators: Vec<String>,
    /// How several annotators of a turn train: the first named one's label, the per-field majority,
    /// every rater's label as a row weighted by the rater's agreement (all), or the raters' distribution (soft)
    #[arg(long, value_enum, default_value_t = AnnotatorPolicy::First, value_name = "POLICY")]
    annotator_policy: AnnotatorPolicy,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 5e-4, value_name = "LR", value_parser = parse_learning_rate)]
    learning_rate: f64,
    /// Learning rate of the encoder layers that train (--train-top-layers, or
    /// all without --freeze-encoder); default: --learning-rate. A pretrained
    /// encoder (MiniLM) keeps what it knows with a smaller one, e.g. 1e-4
    #[arg(long, value_name = "LR", value_parser = parse_learning_rate)]
    encoder_learning_rate: Option<f64>,
    /// Share of dialogues held out for early stopping and calibration
    #[arg(long, default_value_t = 0.1)]
    dev_share: f64,
    /// Train a contextless baseline: each turn alone, no dialogue Transformer; the encoder reads the user
    /// utterance alone (`utterance`, what an NLU model sees) or with the system response (`turn`), both without
    /// runtime features, or the turn with its runtime features (`turn-runtime`: only the other turns dropped)
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "utterance", value_name = "INPUT")]
    contextless: Option<ContextlessInput>,
    /// Fit the goal-success threshold and a `correct` failure-point shift on the dev split for the F1 of
    /// the rare class (failed goals, failure turns), not accuracy: accuracy would never label a rare failure
    #[arg(long)]
    balance_decisions: bool,
    /// Keep the pretrained turn encoder fixed and cache its encodings (much faster on a CPU)
    #[arg(long)]
    freeze_encoder: bool,
    /// Later turns each turn may attend to in the dialogue Transformer, a number or `all` [default: as pretrained]
    #[arg(long, value_name = "TURNS", value_parser = parse_lookahead)]
    lookahead: Option<Lookahead>,
    /// Dropout probability on the turn vectors and dialogue states while training (0: off)
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_dropout)]
    dropout: f32,
    /// Add SHARE x the training windows as windows that join a goal of one dialogue to a goal of
    /// another, so that no goal is learnt to follow only the goals it follows in the data (0: none)
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    splice_goals: f64,

    /// Train only the top N encoder layers, from cached states of the layers below (N of the encoder: full fine-tuning)
    #[arg(long, default_value_t = 0, value_name = "N")]
    train_top_layers: usize,
    /// The arithmetic of the fixed encoder layers whose states are cached (with --freeze-encoder or
    /// --train-top-layers): f32, or int16 (AVX2; faster; see docs/commands/train.md)
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    /// Mixed precision: the products of the layers that train in bf16 with f32 sums, as Hugging Face's
    /// --bf16 (CPUs with AVX-512 BF16; faster; see docs/commands/train.md)
    #[arg(long)]
    bf16: bool,
    /// Continue an interrupted run from MODEL.checkpoint
    #[arg(long)]
    resume: bool,
    /// Also write the model after every epoch, its decisions fitted on dev as if training had stopped
    /// there, into OUT/epochs/epoch-NN: label other data with each to see the curve there
    #[arg(long)]
    keep_epochs: bool,
    /// Loss weight per task: goal_boundary, goal_success, intent, slots, failure_point (default 1 each)
    #[arg(long, value_delimiter = ',', value_name = "TASK=W")]
    task_weights: Vec<String>,
    /// Feedback rules as JSON (docs/commands/train.md, "Weak labels from feedback"); fields left out keep their defaults
    #[arg(long, value_name = "FILE")]
    weak_rules: Option<PathBuf>,
    /// Weight of weak labels from feedback against annotated labels (0: off)
    #[arg(long)]
    weak_weight: Option<f64>,
    /// Failure-point class weights against imbalance: (mean class count / class count)^B, clipped to [0.5, 5]; 0 is off
    #[arg(long, default_value_t = 0.5, value_name = "B")]
    class_balance: f64,
    /// Use the annotations of only this share of dialogues (stable by id); the rest learn from feedback alone
    #[arg(long, default_value_t = 1.0)]
    labelled_share: f64,
    /// Stop after this many epochs, keeping the checkpoint for --resume
    #[arg(long, hide = true)]
    stop_after_epochs: Option<usize>,
    #[command(flatten)]
    common: Common,
}

impl ContextlessInput {
    /// The turn context of the baseline that reads this input.
    fn context(self) -> TurnContext {
        match self {
            ContextlessInput::Utterance => TurnContext::UtteranceOnly,
            ContextlessInput::Turn => TurnContext::TurnOnly,
            ContextlessInput::TurnRuntime => TurnContext::TurnWithRuntime,
        }
    }
}

impl TrainArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.common.apply()?;
        let config = self.into_config()?;
        let summary = Common::on_pool(|| train::run(&config))?;
        let outputs = "the cached encoder states were";
        if let Some(warning) =
            Precision::fallback_warning(config.precision, summary.precision, outputs)
        {
            eprintln!("{warning}");
        }
        if let Some(warning) = kernels::bf16::fallback_warning(config.bf16, summary.bf16) {
            eprintln!("{warning}");
        }
        if summary.annotated_turns_not_in_logs > 0 {
            eprintln!(
                "warning: {} annotated turn(s) are not in the logs and were not used (see annotated_turns_not_in_logs)",
                summary.annotated_turns_not_in_logs
            );
        }
        for (decision, fit) in summary.decision_fits.iter().flatten() {
            if !fit.fitted {
                eprintln!(
                    "warning: --balance-decisions kept the default {decision} decision: its rare class is in {} dev dialogue(s), fewer than the {MIN_RARE_DEV_DIALOGUES} a fit needs (see decision_fits)",
                    fit.rare_dev_dialogues
                );
            }
        }
        print_summary(&summary)
    }

    pub fn into_config(self) -> anyhow::Result<TrainConfig> {
        let task_weights = parse_task_weights(&self.task_weights)?;
        let weak_rules = self.feedback_rules()?;
        Ok(TrainConfig {
            annotators: self.annotators,
            annotator_policy: self.annotator_policy,
            context: self
                .contextless
                .map_or(TurnContext::Dialogue, ContextlessInput::context),
            balance_decisions: self.balance_decisions,
            labelled_share: self.labelled_share,
            class_balance: self.class_balance,
            freeze_encoder: self.freeze_encoder,
            lookahead: self.lookahead,
            dropout: self.dropout,
            splice_goals: self.splice_goals,
            train_top_layers: self.train_top_layers,
            precision: self.precision,
            bf16: self.bf16,
            resume: self.resume,
            keep_epochs: self.keep_epochs,
            stop_after_epochs: self.stop_after_epochs,
            task_weights,
            weak_rules,
            seed: self.seed,
            epochs: self.epochs,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            encoder_learning_rate: self.encoder_learning_rate,
            dev_share: self.dev_share,
            quiet: self.common.quiet,
            ..TrainConfig::new(self.init, self.logs, self.labels, self.out)
        })
    }

    /// The feedback rules from --weak-rules (or the defaults), weighted by --weak-weight.
    fn feedback_rules(&self) -> anyhow::Result<WeakRules> {
        let mut rules = match &self.weak_rules {
            Some(path) => WeakRules::from_file(path)?,
            None => WeakRules::default(),
        };
        if let Some(weight) = self.weak_weight {
            rules.weight = weight;
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(extra: &[&str]) -> TrainConfig {
        let required = [
            "labelgen", "train", "--init", "pre", "--logs", "turns", "--labels", "gold", "--out",
            "model",
        ];
        let cli = Cli::try_parse_from(required.iter().chain(extra)).unwrap();
        match cli.command {
            Command::Train(args) => args.into_config().unwrap(),
            _ => unreachable!("parsed as train"),
        }
    }

    #[test]
    fn contextless_names_what_the_baseline_reads() {
        assert_eq!(config(&[]).context, TurnContext::Dialogue);
        assert_eq!(
            config(&["--contextless"]).context,
            TurnContext::UtteranceOnly
        );
        assert_eq!(
            config(&["--contextless", "utterance"]).context,
            TurnContext::UtteranceOnly
        );
        assert_eq!(
            config(&["--contextless", "turn"]).context,
            TurnContext::TurnOnly
        );
        assert_eq!(
            config(&["--contextless", "turn-runtime"]).context,
            TurnContext::TurnWithRuntime
        );
    }

    #[test]
    fn lookahead_and_task_weights_are_typed() {
        assert_eq!(config(&[]).lookahead, None);
        assert_eq!(
            config(&["--lookahead", "all"]).lookahead,
            Some(Lookahead::All)
        );
        assert_eq!(
            config(&["--lookahead", "2"]).lookahead,
            Some(Lookahead::Turns(2))
        );
        assert_eq!(config(&[]).annotator_policy, AnnotatorPolicy::First);
        assert_eq!(
            config(&["--annotator-policy", "soft"]).annotator_policy,
            AnnotatorPolicy::Soft
        );
        let weights = config(&["--task-weights", "slots=2,intent=0"]).task_weights;
        assert_eq!(
            (weights.slots, weights.intent, weights.goal_boundary),
            (2.0, 0.0, 1.0)
        );
    }
}
