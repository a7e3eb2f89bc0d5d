//! The staging output, written whole or not at all: everything goes to a
//! hidden sibling of OUT (bucket scratch files included) that is renamed to
//! OUT only when complete; a failed run leaves no partial output.
//!
//! OUT/turns, OUT/open and OUT/skipped are Parquet datasets in the turns
//! schema (`part-NNNNN.parquet`, one per bucket, each dialogue in one file,
//! ordered by dialogue_id and turn_index within it).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::read::staging_type;
use crate::data::dataset::{begin_staging, move_into_place};
use crate::data::schema::ColumnSchema;

pub const TURNS: &str = "turns";
pub const OPEN: &str = "open";
pub const SKIPPED: &str = "skipped";
const SCRATCH: &str = "_scratch";

pub struct Staging {
    target: PathBuf,
    temp: PathBuf,
    finished: bool,
}

impl Staging {
    /// `overwrite` replaces an existing OUT; otherwise one is an error.
    pub fn create(target: &Path, overwrite: bool) -> anyhow::Result<Staging> {
        let temp = begin_staging(target, overwrite)?;
        for dir in [TURNS, OPEN, SKIPPED, SCRATCH] {
            let dir = temp.join(dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(Staging {
            target: target.to_path_buf(),
            temp,
            finished: false,
        })
    }

    /// Where the bucket files go (removed before the rename).
    pub fn scratch(&self) -> PathBuf {
        self.temp.join(SCRATCH)
    }

    /// Writes one bucket's rows of a dataset (nothing when there are none).
    pub fn write(&self, dataset: &str, bucket: usize, frame: DataFrame) -> anyhow::Result<()> {
        if frame.height() == 0 {
            return Ok(());
        }
        let path = self
            .temp
            .join(dataset)
            .join(format!("part-{bucket:05}.parquet"));
        write_parquet(&path, to_output(frame)?)
    }

    /// Gives each empty dataset one file with the schema, drops the
    /// scratch files and moves the whole output into place.
    pub fn finish(mut self, columns: &[&ColumnSchema]) -> anyhow::Result<()> {
        std::fs::remove_dir_all(self.scratch())?;
        for dataset in [TURNS, OPEN, SKIPPED] {
            let dir = self.temp.join(dataset);
            if std::fs::read_dir(&dir)?.next().is_none() {
                let empty = DataFrame::empty_with_schema(&staging_schema(columns));
                write_parquet(&dir.join("part-00000.parquet"), to_output(empty)?)?;
            }
        }
        move_into_place(&self.temp, &self.target)?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

fn staging_schema(columns: &[&ColumnSchema]) -> Schema {
    columns
        .iter()
        .map(|c| Field::new(c.name.as_str().into(), staging_type(c.column_type)))
        .collect()
}

/// Staging types to the table's: timestamps back to microseconds, UTC.
fn to_output(frame: DataFrame) -> anyhow::Result<DataFrame> {
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some("UTC".into()));
    Ok(frame
        .lazy()
        .with_column(col("timestamp").cast(utc))
        .collect()?)
}

fn write_parquet(path: &Path, mut frame: DataFrame) -> anyhow::Result<()> {
    let file =
        File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    ParquetWriter::new(BufWriter::new(file))
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut frame)?;
    Ok(())
}
