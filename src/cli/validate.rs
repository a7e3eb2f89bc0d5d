//! `labelgen validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::data::schema::Table;
use labelgen::data::validate::{self, ValidateConfig};

use super::summary::{print_json, print_stdout};

#[derive(Args)]
pub struct ValidateArgs {
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

impl ValidateArgs {
    /// Prints the report; exits 1 when the dataset is invalid.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let json = self.json;
        let report = validate::run(&self.into_config()?)?;
        if json {
            print_json(&report)?;
        } else {
            print_stdout(&validate::render(&report))?;
        }
        Ok(if report.valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    pub fn into_config(self) -> anyhow::Result<ValidateConfig> {
        Ok(ValidateConfig {
            path: self.path,
            table: self.table,
            turns: self.turns,
        })
    }
}
