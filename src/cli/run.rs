//! `labelgen run`: a pipeline file's stages, incremental and crash-safe.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::pipeline::plan::StepName;
use labelgen::pipeline::summary::RunStatus;
use labelgen::pipeline::{self, RunConfig};

use super::common::Common;
use super::summary::print_stdout;

#[derive(Args)]
pub struct RunArgs {
    /// Pipeline file (pipelines/*.toml); without it, the built-in demo (work dir out/pipeline-demo)
    pipeline: Option<PathBuf>,
    /// Rerun these steps and every step reading their outputs (repeatable or comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "STEP")]
    force: Vec<StepName>,
    /// Print the plan (each step: run or skip, and why) and do nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    common: Common,
}

impl RunArgs {
    pub fn into_config(self) -> RunConfig {
        RunConfig {
            pipeline: self.pipeline,
            force: self.force,
            dry_run: self.dry_run,
            quiet: self.common.quiet,
        }
    }

    /// Prints the plan (dry run), why a run did not finish (stderr), and the
    /// one-line JSON summary (stdout); the exit code is the run's status.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.common.apply()?;
        let dry_run = self.dry_run;
        let config = self.into_config();
        let summary = Common::on_pool(|| pipeline::run(&config))?;
        if dry_run {
            print_stdout(&summary.plan_text())?;
        }
        if summary.status == RunStatus::QualityFloorBreached {
            for line in &summary.floor_breaches {
                eprintln!("{line}");
            }
        } else if let Some(message) = &summary.message {
            eprintln!("{message}");
        }
        let eval = summary.steps.iter().find(|s| s.name == StepName::Eval);
        if let Some(eval) = eval.filter(|_| !dry_run && summary.status != RunStatus::Failed) {
            eprintln!("report: {}/report/report.md", eval.output);
        }
        let nightly = summary.steps.iter().find(|s| s.name == StepName::Report);
        if let Some(nightly) = nightly.filter(|_| !dry_run && summary.status != RunStatus::Failed) {
            eprintln!(
                "nightly report: {0}/report.md, {0}/report.html",
                nightly.output
            );
        }
        print_stdout(&format!("{}\n", summary.json_line()))?;
        Ok(ExitCode::from(summary.exit_code()))
    }
}
