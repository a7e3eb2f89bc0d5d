//! `labelgen simulate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::stages::simulate::{self, ErrorRates, SimulateConfig};

use super::common::Common;
use super::summary::print_summary;

#[derive(Args)]
pub struct SimulateArgs {
    /// Number of dialogues to simulate
    #[arg(long, default_value_t = 1000)]
    dialogues: usize,
    /// Random seed: the same seed gives the same bytes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (receives turns/ and annotations/)
    #[arg(long)]
    out: PathBuf,
    /// Mean per-label error rate of each of the three gold annotators a1, a2, a3 (higher on hard items)
    #[arg(long, default_value_t = 0.06)]
    annotator_error: f64,
    /// Mean per-label error rate of the single-pass annotator (higher on hard items)
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
    /// Days of traffic the dialogues start over (from 2026-11-01)
    #[arg(long, default_value_t = 1)]
    days: usize,
    /// Also write the turns as a log collector delivers them: OUT/logs/turns/date=YYYY-MM-DD/hour=HH/*.parquet,
    /// rows shuffled, some delivered twice, a late file per partition (input for `labelgen ingest`)
    #[arg(long)]
    hive_logs: bool,
    /// Replace existing datasets under --out
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

impl SimulateArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.common.apply()?;
        print_summary(&simulate::run(&self.into_config()?)?)
    }

    pub fn into_config(self) -> anyhow::Result<SimulateConfig> {
        Ok(SimulateConfig {
            rates: ErrorRates {
                false_wake: self.false_wake_rate,
                asr: self.asr_error,
                nlu: self.nlu_error,
                entity: self.entity_error,
                result: self.result_error,
            },
            annotator_error: self.annotator_error,
            single_error: self.single_error,
            audio_dim: self.audio_dim,
            days: self.days,
            hive_logs: self.hive_logs,
            overwrite: self.force,
            quiet: self.common.quiet,
            ..SimulateConfig::new(self.dialogues, self.seed, self.out)
        })
    }
}
