//! `labelgen import sgd` and `labelgen import uss`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use labelgen::stages::import::sgd::{self, SgdConfig};
use labelgen::stages::import::uss::{self, UssConfig};

use super::summary::print_summary;

#[derive(Subcommand)]
pub enum ImportCommand {
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
pub struct SgdArgs {
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
pub struct UssArgs {
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

impl ImportCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            ImportCommand::Sgd(args) => print_summary(&sgd::run(&args.into_config()?)?),
            ImportCommand::Uss(args) => print_summary(&uss::run(&args.into_config()?)?),
        }
    }
}

impl SgdArgs {
    pub fn into_config(self) -> anyhow::Result<SgdConfig> {
        Ok(SgdConfig {
            domain_from_service: self.domain_from_service,
            overwrite: self.force,
            quiet: self.quiet,
            ..SgdConfig::new(self.dir, self.out)
        })
    }
}

impl UssArgs {
    pub fn into_config(self) -> anyhow::Result<UssConfig> {
        Ok(UssConfig {
            overwrite: self.force,
            quiet: self.quiet,
            ..UssConfig::new(self.file, self.out)
        })
    }
}
