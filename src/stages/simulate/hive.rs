//! The simulated logs again, as a log collector would deliver them
//! (`--hive-logs`): OUT/logs/date=YYYY-MM-DD/hour=HH/part-*.parquet by each
//! turn's hour, rows in arrival order (shuffled), a dialogue's turns spread
//! over hours and, near midnight, days; every fiftieth turn delivered twice
//! (the copy arrives in the next hour's partition, as at-least-once
//! delivery does); and a late file: one turn in a hundred withheld from its
//! partition's first file and written as `late-part-*.parquet` beside it.
//! `labelgen ingest` turns this back into OUT/turns' dialogues.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::dataset::move_into_place;
use crate::data::hive::{HOUR_US, partition_dir};
use crate::data::tables::{TableRow, Turn};

/// What the hive copy holds, for the summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HiveSummary {
    pub path: String,
    pub partitions: usize,
    pub files: usize,
    pub rows: usize,
    pub redelivered: usize,
    pub late: usize,
}

/// Writes the hive copy into a hidden sibling of its root, renamed into
/// place by [`HiveWriter::finish`] (removed if dropped unfinished).
pub struct HiveWriter {
    root: PathBuf,
    temp: PathBuf,
    seed: u64,
    summary: HiveSummary,
    finished: bool,
}

impl HiveWriter {
    pub fn create(root: &Path, seed: u64, overwrite: bool) -> anyhow::Result<HiveWriter> {
        if root.exists() && !overwrite {
            anyhow::bail!(
                "{} already exists\n  hint: pass --force to replace it, or choose another --out",
                root.display()
            );
        }
        let name = root.file_name().and_then(|n| n.to_str()).unwrap_or("logs");
        let temp = root.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        if temp.exists() {
            std::fs::remove_dir_all(&temp)?;
        }
        std::fs::create_dir_all(&temp)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", temp.display()))?;
        Ok(HiveWriter {
            root: root.to_path_buf(),
            temp,
            seed,
            summary: HiveSummary::default(),
            finished: false,
        })
    }

    /// Writes one chunk of turns; `chunk` numbers its part files, so chunks
    /// never overwrite each other.
    pub fn write_chunk(&mut self, turns: &[Turn], chunk: usize) -> anyhow::Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x4849_5645);
        rng.set_stream(chunk as u64);
        let mut files: BTreeMap<PathBuf, Vec<Turn>> = BTreeMap::new();
        for (i, turn) in turns.iter().enumerate() {
            let hour = turn.timestamp_us.unwrap_or(0).div_euclid(HOUR_US);
            let late = rng.random_bool(0.01);
            let name = if late { "late-part" } else { "part" };
            let file = partition_dir(&self.temp, hour).join(format!("{name}-{chunk:05}.parquet"));
            files.entry(file).or_default().push(turn.clone());
            self.summary.late += usize::from(late);
            if i % 50 == 49 {
                let again = partition_dir(&self.temp, hour + 1)
                    .join(format!("part-{chunk:05}-redelivered.parquet"));
                files.entry(again).or_default().push(turn.clone());
                self.summary.redelivered += 1;
            }
        }
        for (path, mut rows) in files {
            rows.shuffle(&mut rng);
            self.summary.rows += rows.len();
            self.summary.files += 1;
            write_file(&path, &rows)?;
        }
        Ok(())
    }

    /// Moves the copy into place; returns what it holds.
    pub fn finish(mut self) -> anyhow::Result<HiveSummary> {
        for day in std::fs::read_dir(&self.temp)? {
            self.summary.partitions += std::fs::read_dir(day?.path())?.count();
        }
        move_into_place(&self.temp, &self.root)?;
        self.finished = true;
        self.summary.path = self.root.display().to_string();
        Ok(std::mem::take(&mut self.summary))
    }
}

impl Drop for HiveWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

fn write_file(path: &Path, rows: &[Turn]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let batch = Turn::to_batch(rows)?;
    let file = std::fs::File::create(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}
