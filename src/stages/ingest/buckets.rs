//! Sort-and-stream, first half: each partition's rows are split by a stable
//! hash of their dialogue into bucket files, so every turn of a dialogue
//! (whatever hour or day it arrived in) lands in one bucket, and each
//! bucket is then ordered and deduplicated on its own (`resolve.rs`).
//!
//! There are as many buckets as the window has partitions' worth of rows,
//! so a bucket holds about one partition: memory is bounded by the largest
//! partition (or bucket), not by the window. A bucket is a few files, not
//! one: an open Parquet writer keeps every row group's metadata until it
//! closes (measured with polars 0.46: about 60 KB a row group, which at 120
//! partitions x 118 buckets held 840 MB), so each file is closed after
//! [`ROW_GROUPS_PER_FILE`] partitions' slices and the next one opened.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;

use crate::data::split::{STABLE_HASH_START, stable_hash_bytes};

/// Most buckets (open files) a run uses; beyond, buckets grow instead.
pub const MAX_BUCKETS: usize = 256;
/// Row groups (partitions' slices) a bucket file takes before it is closed.
pub const ROW_GROUPS_PER_FILE: usize = 4;
const BUCKET: &str = "__bucket";

/// Buckets for `rows` rows when the largest partition holds `largest`.
pub fn bucket_count(rows: usize, largest: usize) -> usize {
    rows.div_ceil(largest.max(1)).clamp(1, MAX_BUCKETS)
}

/// The bucket of a dialogue: FNV-1a of its id, salted so that buckets are
/// independent of `label --shard` (which hashes the bare id).
pub fn bucket_of(dialogue_id: &str, buckets: usize) -> usize {
    let salted = stable_hash_bytes(STABLE_HASH_START, b"ingest-bucket\0");
    (stable_hash_bytes(salted, dialogue_id.as_bytes()) % buckets as u64) as usize
}

/// One bucket's files: the one being written and how full it is.
#[derive(Default)]
struct BucketFiles {
    files: Vec<PathBuf>,
    open: Option<BatchedWriter<BufWriter<File>>>,
    row_groups: usize,
}

/// Bucket files being written, one row group per partition and bucket.
pub struct Spill {
    dir: PathBuf,
    buckets: Vec<BucketFiles>,
}

impl Spill {
    pub fn new(dir: &Path, buckets: usize) -> anyhow::Result<Spill> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        Ok(Spill {
            dir: dir.to_path_buf(),
            buckets: (0..buckets).map(|_| BucketFiles::default()).collect(),
        })
    }

    /// Appends a partition's rows to their buckets.
    pub fn add(&mut self, frame: &DataFrame) -> anyhow::Result<()> {
        if frame.height() == 0 {
            return Ok(());
        }
        let count = self.buckets.len();
        let buckets: UInt32Chunked = frame
            .column("dialogue_id")?
            .str()?
            .into_iter()
            .map(|id| id.map(|id| bucket_of(id, count) as u32))
            .collect();
        let mut tagged = frame.clone();
        tagged.with_column(buckets.with_name(BUCKET.into()).into_series())?;
        for part in tagged.partition_by_stable([BUCKET], true)? {
            let bucket = part.column(BUCKET)?.u32()?.get(0).unwrap_or(0) as usize;
            let mut rows = part.drop(BUCKET)?;
            rows.as_single_chunk_par();
            self.writer(bucket, rows.schema())?.write_batch(&rows)?;
        }
        Ok(())
    }

    fn writer(
        &mut self,
        bucket: usize,
        schema: &Schema,
    ) -> anyhow::Result<&mut BatchedWriter<BufWriter<File>>> {
        let files = &mut self.buckets[bucket];
        if files.row_groups == ROW_GROUPS_PER_FILE {
            if let Some(full) = files.open.take() {
                full.finish()?;
            }
            files.row_groups = 0;
        }
        if files.open.is_none() {
            let path = self.dir.join(format!(
                "bucket-{bucket:05}-{:05}.parquet",
                files.files.len()
            ));
            let file = File::create(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            // Scratch files: no statistics (nothing filters on them).
            let writer = ParquetWriter::new(BufWriter::new(file))
                .with_compression(ParquetCompression::Lz4Raw)
                .with_statistics(StatisticsOptions::empty())
                .batched(schema)?;
            files.files.push(path);
            files.open = Some(writer);
        }
        files.row_groups += 1;
        Ok(files.open.as_mut().expect("opened above"))
    }

    /// Closes the files; returns each bucket holding rows with its files,
    /// in the order they were written.
    pub fn finish(self) -> anyhow::Result<Vec<(usize, Vec<PathBuf>)>> {
        let mut spilled = Vec::new();
        for (bucket, files) in self.buckets.into_iter().enumerate() {
            if let Some(writer) = files.open {
                writer.finish()?;
            }
            if !files.files.is_empty() {
                spilled.push((bucket, files.files));
            }
        }
        Ok(spilled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_rows_and_spread_dialogues() {
        assert_eq!(bucket_count(0, 0), 1);
        assert_eq!(bucket_count(100, 100), 1);
        assert_eq!(bucket_count(1000, 100), 10);
        assert_eq!(bucket_count(1001, 100), 11);
        assert_eq!(bucket_count(usize::MAX / 2, 1), MAX_BUCKETS);
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[bucket_of(&format!("d{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
        assert_eq!(bucket_of("d1", 7), bucket_of("d1", 7));
    }

    #[test]
    fn a_bucket_rolls_over_to_a_new_file_and_keeps_every_row_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(dir.path(), 1).unwrap();
        let partitions = ROW_GROUPS_PER_FILE * 2 + 1;
        for p in 0..partitions {
            let frame = df!(
                "dialogue_id" => [format!("d{p}"), format!("e{p}")],
                "turn_index" => [p as i32, p as i32],
            )
            .unwrap();
            spill.add(&frame).unwrap();
        }
        let spilled = spill.finish().unwrap();
        assert_eq!(spilled.len(), 1);
        let (bucket, files) = &spilled[0];
        assert_eq!(*bucket, 0);
        assert_eq!(files.len(), 3, "{files:?}");
        let rows = crate::stages::ingest::read::scan_files(files.clone())
            .unwrap()
            .collect()
            .unwrap();
        let index: Vec<i32> = rows
            .column("turn_index")
            .unwrap()
            .i32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        let expected: Vec<i32> = (0..partitions as i32).flat_map(|p| [p, p]).collect();
        assert_eq!(index, expected);
    }
}
