//! Sort-and-stream, first half: each partition's rows are split by a stable
//! hash of their dialogue into bucket files, so every turn of a dialogue
//! (whatever hour or day it arrived in) lands in one bucket, and each
//! bucket is then ordered and deduplicated on its own (`resolve.rs`).
//!
//! There are as many buckets as the window has partitions' worth of rows,
//! so a bucket holds about one partition: memory is bounded by the largest
//! partition (or bucket), not by the window.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;

use crate::data::split::{STABLE_HASH_START, stable_hash_bytes};

/// Most buckets (open files) a run uses; beyond, buckets grow instead.
pub const MAX_BUCKETS: usize = 256;
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

/// Bucket files being written, one row group per partition and bucket.
pub struct Spill {
    dir: PathBuf,
    writers: Vec<Option<BatchedWriter<BufWriter<File>>>>,
}

impl Spill {
    pub fn new(dir: &Path, buckets: usize) -> anyhow::Result<Spill> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        Ok(Spill {
            dir: dir.to_path_buf(),
            writers: (0..buckets).map(|_| None).collect(),
        })
    }

    /// Appends a partition's rows to their buckets.
    pub fn add(&mut self, frame: &DataFrame) -> anyhow::Result<()> {
        if frame.height() == 0 {
            return Ok(());
        }
        let count = self.writers.len();
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
        if self.writers[bucket].is_none() {
            let path = self.path(bucket);
            let file = File::create(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            let writer = ParquetWriter::new(BufWriter::new(file))
                .with_compression(ParquetCompression::Lz4Raw)
                .batched(schema)?;
            self.writers[bucket] = Some(writer);
        }
        Ok(self.writers[bucket].as_mut().expect("opened above"))
    }

    fn path(&self, bucket: usize) -> PathBuf {
        self.dir.join(format!("bucket-{bucket:05}.parquet"))
    }

    /// Closes the files; returns (bucket, file) of the buckets holding rows.
    pub fn finish(self) -> anyhow::Result<Vec<(usize, PathBuf)>> {
        let mut files = Vec::new();
        for (bucket, writer) in self.writers.into_iter().enumerate() {
            if let Some(writer) = writer {
                writer.finish()?;
                files.push((bucket, self.dir.join(format!("bucket-{bucket:05}.parquet"))));
            }
        }
        Ok(files)
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
}
