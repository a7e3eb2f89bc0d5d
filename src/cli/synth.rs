//! `labelgen synth`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::stages::synth::{self, SynthConfig};

use super::common::Common;
use super::summary::print_summary;

#[derive(Args)]
pub struct SynthArgs {
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

impl SynthArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.common.apply()?;
        print_summary(&synth::run(&self.into_config()?)?)
    }

    pub fn into_config(self) -> anyhow::Result<SynthConfig> {
        Ok(SynthConfig {
            seed: self.seed,
            copies: self.copies,
            response_swap_rate: self.response_swap_rate,
            hard_negative_share: self.hard_negative_share,
            user_swap_rate: self.user_swap_rate,
            order_swap_rate: self.order_swap_rate,
            overwrite: self.force,
            quiet: self.common.quiet,
            ..SynthConfig::new(self.logs, self.out)
        })
    }
}
