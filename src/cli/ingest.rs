//! `labelgen ingest`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::stages::ingest::layout::{Selection, parse_bound};
use labelgen::stages::ingest::{self, DEFAULT_IDLE_TIMEOUT_MINUTES, IngestConfig};

use super::common::Common;
use super::summary::print_summary;

#[derive(Args)]
pub struct IngestArgs {
    /// Root of the hive-partitioned logs: ROOT/date=YYYY-MM-DD/hour=HH/part-*.parquet
    #[arg(long, value_name = "ROOT")]
    logs: PathBuf,
    /// Output directory: OUT/turns (complete dialogues, to label), OUT/open, OUT/skipped
    #[arg(long)]
    out: PathBuf,
    /// First partition read: YYYY-MM-DD or YYYY-MM-DDTHH (inclusive)
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// Last partition read: YYYY-MM-DD or YYYY-MM-DDTHH (inclusive)
    #[arg(long, value_name = "DATE")]
    to: Option<String>,
    /// Read only the newest N dates (after --from/--to)
    #[arg(long, value_name = "N")]
    last_days: Option<u32>,
    /// A dialogue whose last turn is this close to the window's end is still open: carried, not labelled
    #[arg(long, value_name = "N", default_value_t = DEFAULT_IDLE_TIMEOUT_MINUTES)]
    idle_timeout_minutes: u32,
    /// Replace an existing output
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

impl IngestArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.common.apply()?;
        print_summary(&ingest::run(&self.into_config()?)?)
    }

    pub fn into_config(self) -> anyhow::Result<IngestConfig> {
        let bound = |option: &str, value: &Option<String>, end_of_day: bool| {
            value
                .as_deref()
                .map(|text| {
                    parse_bound(text, end_of_day).ok_or_else(|| {
                        anyhow::anyhow!("{option} {text}: expected YYYY-MM-DD or YYYY-MM-DDTHH")
                    })
                })
                .transpose()
        };
        let selection = Selection {
            from: bound("--from", &self.from, false)?,
            to: bound("--to", &self.to, true)?,
            last_days: self.last_days,
        };
        if let (Some(from), Some(to)) = (selection.from, selection.to) {
            anyhow::ensure!(from <= to, "--from is after --to: no partition can be read");
        }
        Ok(IngestConfig {
            selection,
            idle_timeout_minutes: self.idle_timeout_minutes,
            overwrite: self.force,
            quiet: self.common.quiet,
            ..IngestConfig::new(self.logs, self.out)
        })
    }
}
