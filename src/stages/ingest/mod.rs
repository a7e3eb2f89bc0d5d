//! `labelgen ingest`: hive-partitioned logs as other systems write them
//! (`ROOT/date=YYYY-MM-DD/hour=HH/part-*.parquet`: arrival order, a
//! dialogue's turns spread over files, hours and days, the same turn
//! delivered twice, extra columns, missing optional ones) into a staging
//! dataset that `label` streams: each dialogue's turns together, in order,
//! once.
//!
//! - [`layout`]: the partitions, the date/hour range, the window's end;
//! - [`read`]: each file checked against schemas/turns.json, then read with
//!   polars' lazy API (projection, casts, hive columns, row checks);
//! - [`buckets`]: rows spilled by a stable hash of their dialogue, so memory
//!   is bounded by a partition's worth of rows, not by the window;
//! - [`resolve`]: per bucket, duplicates dropped, conflicts resolved by a
//!   documented rule, dialogues ordered and told complete, open or skipped;
//! - [`output`]: OUT/turns, OUT/open, OUT/skipped, written atomically.

pub mod buckets;
pub mod layout;
pub mod output;
pub mod read;
pub mod resolve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::data::inputs::InputSnapshot;
use crate::data::issues::DataError;
use crate::progress::Progress;
use layout::{Partition, Selection};
use read::Inspection;
use resolve::{OpenAfter, Resolved};

/// Minutes without a new turn after which a dialogue counts as finished.
pub const DEFAULT_IDLE_TIMEOUT_MINUTES: u32 = 30;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Root of `date=YYYY-MM-DD/hour=HH/part-*.parquet`.
    pub logs: PathBuf,
    /// The staging output: OUT/turns, OUT/open, OUT/skipped.
    pub out: PathBuf,
    pub selection: Selection,
    /// A dialogue whose last turn is this close to the window's end is open.
    pub idle_timeout_minutes: u32,
    /// Replace an existing OUT.
    pub overwrite: bool,
    pub quiet: bool,
}

impl IngestConfig {
    pub fn new(logs: PathBuf, out: PathBuf) -> IngestConfig {
        IngestConfig {
            logs,
            out,
            selection: Selection::default(),
            idle_timeout_minutes: DEFAULT_IDLE_TIMEOUT_MINUTES,
            overwrite: false,
            quiet: false,
        }
    }
}

/// What a run read and wrote. `rows_in` = `turns` + `open_turns` +
/// `skipped_turns` + `exact_duplicates` + `conflicting_duplicates`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub logs: String,
    pub out: String,
    pub partitions: usize,
    pub first_partition: Option<String>,
    pub last_partition: Option<String>,
    /// The end of the latest partition read (UTC).
    pub window_end: Option<String>,
    pub idle_timeout_minutes: u32,
    pub files: usize,
    pub rows_in: usize,
    /// Rows dropped as copies of another row (every column equal).
    pub exact_duplicates: usize,
    /// Rows dropped as older versions of a turn with other content.
    pub conflicting_duplicates: usize,
    /// Turns (dialogue_id, turn_index) that arrived in more than one version.
    pub conflicting_keys: usize,
    /// Written to OUT/turns: complete dialogues, ready to label.
    pub dialogues: usize,
    pub turns: usize,
    /// Written to OUT/open, not labelled: still active at the window's end;
    /// the next run's window holds them again.
    pub open_dialogues: usize,
    pub open_turns: usize,
    /// Written to OUT/skipped, not labelled: turn_index does not run 0..n-1.
    pub skipped_dialogues: usize,
    pub skipped_turns: usize,
    pub skipped_no_first_turn: usize,
    pub skipped_turn_gaps: usize,
    /// Rows with an empty user_utterance (legal, worth knowing).
    pub empty_user_utterances: usize,
    /// Column -> files that lacked it (null-filled).
    pub null_filled_columns: BTreeMap<String, usize>,
    /// Column -> files that had it; not in the schema, not read.
    pub ignored_columns: BTreeMap<String, usize>,
    /// Buckets (each at most one part file per dataset).
    pub buckets: usize,
    pub seconds: f64,
}

/// Ingests the logs the config selects into OUT.
pub fn run(config: &IngestConfig) -> anyhow::Result<IngestSummary> {
    let started = Instant::now();
    check_paths(&config.logs, &config.out)?;
    let partitions = layout::select(layout::discover(&config.logs)?, &config.selection);
    // Taken before the footers are read: a log file rewritten or deleted
    // from here on fails the run, naming it, before the output moves into
    // place (otherwise it shows as rows that disagree with the footers).
    let inputs = InputSnapshot::of_files(partitions.iter().flat_map(|p| p.files.iter().cloned()))?;
    let inspection = read::inspect(&partitions)?;
    let mut summary = new_summary(config, &partitions, &inspection);
    let staging = output::Staging::create(&config.out, config.overwrite)?;
    let buckets = buckets::bucket_count(inspection.rows(), inspection.largest_partition_rows());
    let files: usize = partitions.iter().map(|p| p.files.len()).sum();
    let progress = Progress::new((files + buckets) as u64, "files+buckets", config.quiet);
    progress.message("reading partitions".into());
    let spilled = spill(
        &partitions,
        &inspection,
        &staging,
        buckets,
        &progress,
        &mut summary,
    )?;
    progress.message("ordering dialogues".into());
    let columns = read::output_columns(inspection.audio);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    // Without a window end (an unpartitioned root) nothing is open.
    let idle_us = i64::from(config.idle_timeout_minutes) * 60_000_000;
    let open_after =
        OpenAfter(layout::window_end_us(&partitions).map_or(i64::MAX, |end| end - idle_us));
    for (bucket, files) in spilled {
        let rows = read::scan_files(files)?;
        let resolved = resolve::resolve(rows, &names, open_after)?;
        add_bucket(&mut summary, &staging, bucket, resolved)?;
        progress.inc(1);
    }
    inputs.check_unchanged()?;
    check_accounting(&summary, inspection.rows())?;
    staging.finish(&columns)?;
    progress.finish();
    summary.buckets = buckets;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// OUT may not lie inside the logs (a run would read its own output, and a
/// pipeline would see its input change on every run), nor hold them.
fn check_paths(logs: &Path, out: &Path) -> anyhow::Result<()> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (logs_abs, out_abs) = (absolute(logs), absolute(out));
    anyhow::ensure!(
        !out_abs.starts_with(&logs_abs) && !logs_abs.starts_with(&out_abs),
        "--out {} and --logs {} overlap: the output may not lie inside the logs or hold them",
        out.display(),
        logs.display()
    );
    Ok(())
}

fn new_summary(
    config: &IngestConfig,
    partitions: &[Partition],
    inspection: &Inspection,
) -> IngestSummary {
    IngestSummary {
        logs: config.logs.display().to_string(),
        out: config.out.display().to_string(),
        partitions: partitions.len(),
        first_partition: partitions.first().map(|p| p.name.clone()),
        last_partition: partitions.last().map(|p| p.name.clone()),
        window_end: layout::window_end_us(partitions)
            .map(|us| layout::format_hour(us / 3_600_000_000)),
        idle_timeout_minutes: config.idle_timeout_minutes,
        files: inspection.files.iter().map(Vec::len).sum(),
        null_filled_columns: inspection.null_filled.clone(),
        ignored_columns: inspection.ignored.clone(),
        ..IngestSummary::default()
    }
}

/// Reads the partitions one at a time into the bucket files.
fn spill(
    partitions: &[Partition],
    inspection: &Inspection,
    staging: &output::Staging,
    buckets: usize,
    progress: &Progress,
    summary: &mut IngestSummary,
) -> anyhow::Result<Vec<(usize, Vec<PathBuf>)>> {
    let mut spill = buckets::Spill::new(&staging.scratch(), buckets)?;
    let mut vector_length = None;
    for (partition, files) in partitions.iter().zip(&inspection.files) {
        let frame = read::read_partition(partition, files, inspection.audio)?;
        summary.empty_user_utterances += read::empty_utterances(&frame)?;
        if let Some((shortest, longest)) = read::vector_lengths(&frame)? {
            let expected = *vector_length.get_or_insert(shortest);
            if (shortest, longest) != (expected, expected) {
                return Err(DataError::BadColumn {
                    path: partition.dir.clone(),
                    column: "audio_embedding".into(),
                    detail: format!(
                        "vectors of length {shortest} to {longest} where the first have length {expected}; \
                         expected one fixed length"
                    ),
                }
                .into());
            }
        }
        spill.add(&frame)?;
        progress.inc(files.len() as u64);
    }
    spill.finish()
}

fn add_bucket(
    summary: &mut IngestSummary,
    staging: &output::Staging,
    bucket: usize,
    resolved: Resolved,
) -> anyhow::Result<()> {
    summary.rows_in += resolved.rows_in;
    summary.exact_duplicates += resolved.exact_duplicates;
    summary.conflicting_duplicates += resolved.conflicting_duplicates;
    summary.conflicting_keys += resolved.conflicting_keys;
    let dialogues = |status| resolved.dialogues.get(status).copied().unwrap_or(0);
    summary.dialogues += dialogues(resolve::COMPLETE);
    summary.open_dialogues += dialogues(resolve::OPEN);
    summary.skipped_no_first_turn += dialogues(resolve::NO_FIRST_TURN);
    summary.skipped_turn_gaps += dialogues(resolve::TURN_GAP);
    summary.skipped_dialogues += dialogues(resolve::NO_FIRST_TURN) + dialogues(resolve::TURN_GAP);
    summary.turns += resolved.complete.height();
    summary.open_turns += resolved.open.height();
    summary.skipped_turns += resolved.skipped.height();
    staging.write(output::TURNS, bucket, resolved.complete)?;
    staging.write(output::OPEN, bucket, resolved.open)?;
    staging.write(output::SKIPPED, bucket, resolved.skipped)?;
    Ok(())
}

/// Every row read is written or counted as dropped: a mismatch is a bug.
fn check_accounting(summary: &IngestSummary, rows_in_footers: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        summary.rows_in == rows_in_footers,
        "internal error: the files' footers count {rows_in_footers} rows but {} were read",
        summary.rows_in
    );
    let accounted = summary.turns
        + summary.open_turns
        + summary.skipped_turns
        + summary.exact_duplicates
        + summary.conflicting_duplicates;
    anyhow::ensure!(
        accounted == summary.rows_in,
        "internal error: {} rows read but {accounted} written or counted as duplicates",
        summary.rows_in
    );
    Ok(())
}
