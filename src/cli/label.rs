//! `labelgen label`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::model::Precision;
use labelgen::stages::label::{self, LabelConfig};

use super::common::Common;
use super::parse::{parse_min_confidence, parse_shard};
use super::summary::print_summary;

#[derive(Args)]
pub struct LabelArgs {
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
    /// The dense layers' arithmetic: f32, or int16 (AVX2; faster, labels
    /// agree with f32's on nearly every turn; see docs/commands/label.md)
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    #[command(flatten)]
    common: Common,
}

impl LabelArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.common.apply()?;
        let config = self.into_config()?;
        let summary = Common::on_pool(|| label::run(&config))?;
        if let Some(warning) = summary.warning_text(&config.logs) {
            eprintln!("{warning}");
        }
        if let Some(warning) = summary.precision_warning(config.precision) {
            eprintln!("{warning}");
        }
        print_summary(&summary)
    }

    pub fn into_config(self) -> anyhow::Result<LabelConfig> {
        Ok(LabelConfig {
            model: self.model,
            logs: self.logs,
            out: self.out,
            min_confidence: parse_min_confidence(&self.min_confidence)?,
            shard: self.shard.as_deref().map(parse_shard).transpose()?,
            batch_size: self.batch_size.max(1),
            run_id: self.run_id,
            overwrite: self.force,
            quiet: self.common.quiet,
            precision: self.precision,
        })
    }
}
