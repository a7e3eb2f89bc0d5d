//! The label table's aggregates, with polars: label counts per day, task
//! and value; confidence histograms; coverage at thresholds.
//!
//! Rows are read through the project's readers (`data::dataset`), so a bad
//! file or row is an error naming the file, row, dialogue and column, as
//! everywhere else; the group-bys and the join run as polars lazy queries.
//!
//! A label's day: the `date=YYYY-MM-DD` partition it was labelled in when
//! the logs are hive-partitioned; otherwise the UTC day its dialogue
//! started (the earliest turn timestamp in the logs), so a dialogue across
//! midnight counts once, on the day it began. Labels with neither are
//! counted as undated: in the histograms and coverage, not in the days.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use super::days;
use super::history::DayCount;
use crate::data::dataset::{invalid_rows, stream_rows, visit_table_counted};
use crate::data::issues::{DataError, Severity};
use crate::data::tables::{Label, Turn};
use crate::pipeline::partitions;

/// Equal-width confidence bins over [0, 1].
pub const BINS: usize = 20;
/// Tasks whose label values are compared across days.
pub const DISTRIBUTION_TASKS: [&str; 3] = ["intent", "failure_point", "goal_success"];
/// Tasks with a confidence per turn (eval's names).
pub const CONFIDENCE_TASKS: [&str; 5] = [
    "goal_segmentation",
    "goal_success",
    "intent",
    "slots",
    "failure_point",
];
/// The value counted for a label withheld below its threshold (null).
pub const WITHHELD: &str = "(withheld)";
/// Thresholds at which coverage is always shown, besides the configured one.
pub const COVERAGE_AT: [f64; 4] = [0.5, 0.7, 0.8, 0.9];

#[derive(Debug, Clone, PartialEq)]
pub struct TaskConfidence {
    /// Labels per bin of the emitted label's confidence.
    pub bins: Vec<u64>,
    /// Labels with a confidence; labels with a value (not withheld).
    pub scored: u64,
    pub emitted: u64,
    /// (threshold, labels whose confidence reaches it).
    pub covered_at: Vec<(f64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregates {
    pub rows: u64,
    pub undated: u64,
    /// How the days were found: "partitions" or "dialogue start".
    pub dated_by: &'static str,
    pub day_counts: Vec<DayCount>,
    pub confidence: BTreeMap<String, TaskConfidence>,
    /// Rows read with a warning (an empty part file...), as `validate`
    /// counts them; printed on stderr as they are read.
    pub read_warnings: u64,
}

/// Aggregates the labels at `labels` (a dataset, or hive partitions of
/// datasets); `turns` are the logs they label, read for the days when the
/// labels are not partitioned by date. `thresholds`: task -> min_confidence.
pub fn aggregate(
    labels: &Path,
    turns: Option<&Path>,
    thresholds: &BTreeMap<String, f64>,
) -> anyhow::Result<Aggregates> {
    aggregate_in_batches(labels, turns, thresholds, FRAME_ROWS)
}

/// Labels per batch: the counts are summed batch by batch, so the report's
/// memory does not grow with the day (a 1M-turn day's labels held whole
/// took 918 MiB, and their counted columns whole 570 MiB: BENCHMARKS.md).
const FRAME_ROWS: usize = 65_536;

pub(super) fn aggregate_in_batches(
    labels: &Path,
    turns: Option<&Path>,
    thresholds: &BTreeMap<String, f64>,
    batch_rows: usize,
) -> anyhow::Result<Aggregates> {
    let parts = partitions::partitions(labels)?;
    let mut totals = Totals::new(thresholds);
    let mut read_warnings = 0;
    let dated_by = if parts.is_empty() {
        let starts = turns.map(dialogue_starts).transpose()?;
        read_warnings += for_each_label_frame(labels, None, batch_rows, |frame| {
            let frame = match &starts {
                Some(starts) => with_dialogue_days(frame, starts)?,
                None => frame,
            };
            totals.add(&frame)
        })?;
        "dialogue start"
    } else {
        for (name, path) in &parts {
            let day = partition_day(name, path)?;
            read_warnings +=
                for_each_label_frame(path, day, batch_rows, |frame| totals.add(&frame))?;
        }
        "partitions"
    };
    Ok(Aggregates {
        rows: totals.rows,
        undated: totals.undated,
        dated_by,
        day_counts: (totals.day_counts.into_iter())
            .map(|((date, task, value), count)| DayCount {
                date,
                task,
                value,
                count,
            })
            .collect(),
        confidence: totals.confidence,
        read_warnings,
    })
}

/// The additive part of [`Aggregates`], summed over batches of labels.
struct Totals<'a> {
    thresholds: &'a BTreeMap<String, f64>,
    rows: u64,
    undated: u64,
    /// (date, task, value) -> labels.
    day_counts: BTreeMap<(String, String, String), u64>,
    confidence: BTreeMap<String, TaskConfidence>,
}

impl<'a> Totals<'a> {
    fn new(thresholds: &'a BTreeMap<String, f64>) -> Self {
        Totals {
            thresholds,
            rows: 0,
            undated: 0,
            day_counts: BTreeMap::new(),
            confidence: BTreeMap::new(),
        }
    }

    /// Adds a batch's counts (a frame of [`label_frame`]'s columns with days).
    fn add(&mut self, frame: &DataFrame) -> anyhow::Result<()> {
        self.rows += frame.height() as u64;
        self.undated += frame.column("day")?.null_count() as u64;
        for task in DISTRIBUTION_TASKS {
            for day in counts_per_day(frame, task)? {
                *(self.day_counts)
                    .entry((day.date, day.task, day.value))
                    .or_default() += day.count;
            }
        }
        for task in CONFIDENCE_TASKS {
            let threshold = self.thresholds.get(task).copied();
            let batch = task_confidence(frame, task, threshold)?;
            match self.confidence.get_mut(task) {
                Some(total) => total.add(&batch),
                None => {
                    self.confidence.insert(task.to_string(), batch);
                }
            }
        }
        Ok(())
    }
}

impl TaskConfidence {
    /// Adds the counts of another batch, taken at the same thresholds.
    fn add(&mut self, other: &TaskConfidence) {
        self.bins
            .iter_mut()
            .zip(&other.bins)
            .for_each(|(a, b)| *a += b);
        self.scored += other.scored;
        self.emitted += other.emitted;
        for ((_, a), (_, b)) in self.covered_at.iter_mut().zip(&other.covered_at) {
            *a += b;
        }
    }
}

/// Calls `on_frame` with the labels at `path` as [`label_frame`]'s columns,
/// `batch_rows` labels at a time. Returns the number of read warnings.
fn for_each_label_frame(
    path: &Path,
    day: Option<i32>,
    batch_rows: usize,
    mut on_frame: impl FnMut(DataFrame) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut batch = Vec::with_capacity(batch_rows);
    let mut failed = None;
    let mut flush = |batch: &mut Vec<Label>| {
        if failed.is_none() && !batch.is_empty() {
            failed = label_frame(batch, day).and_then(&mut on_frame).err();
        }
        batch.clear();
    };
    let warnings = visit_table_counted::<Label>(path, |label| {
        batch.push(label);
        if batch.len() == batch_rows {
            flush(&mut batch);
        }
    })?;
    flush(&mut batch);
    match failed {
        Some(error) => Err(error),
        None => Ok(warnings as u64),
    }
}

/// The day of `date=YYYY-MM-DD`; None for another partition key.
fn partition_day(name: &str, path: &Path) -> anyhow::Result<Option<i32>> {
    let Some(date) = name.strip_prefix("date=") else {
        return Ok(None);
    };
    days::parse(date).map(Some).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: the partition's date `{date}` is not a date (YYYY-MM-DD)",
            path.display()
        )
    })
}

/// A stored (f32) confidence as the 6-decimal value it was written from,
/// so 0.9 lands in the [0.90, 0.95) bin rather than below it.
fn conf(p: Option<f32>) -> Option<f64> {
    p.map(|p| (f64::from(p) * 1e6).round() / 1e6)
}

/// One row per label: its day, each task's value (null = withheld) and the
/// confidence of the emitted value.
fn label_frame(labels: &[Label], day: Option<i32>) -> anyhow::Result<DataFrame> {
    let column = |name: &str, values: Vec<Option<String>>| Column::new(name.into(), values);
    let confidence = |name: &str, values: Vec<Option<f64>>| Column::new(name.into(), values);
    let of = |f: fn(&Label) -> Option<String>| labels.iter().map(f).collect::<Vec<_>>();
    let prob = |f: fn(&Label) -> Option<f64>| labels.iter().map(f).collect::<Vec<_>>();
    Ok(DataFrame::new(vec![
        Column::new(
            "dialogue_id".into(),
            labels
                .iter()
                .map(|l| l.dialogue_id.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new("day".into(), vec![day; labels.len()]),
        column("intent", of(|l| l.intent.clone())),
        confidence("intent_conf", prob(|l| conf(l.intent_prob))),
        column("failure_point", of(|l| l.failure_point.clone())),
        confidence("failure_point_conf", prob(|l| conf(l.failure_point_prob))),
        column(
            "goal_success",
            of(|l| l.goal_success.map(|s| s.to_string())),
        ),
        confidence("goal_success_conf", prob(|l| conf(l.goal_success_prob))),
        column(
            "slots",
            of(|l| l.slots.as_ref().map(|s| s.len().to_string())),
        ),
        confidence("slots_conf", prob(|l| conf(l.slots_prob))),
        column(
            "goal_segmentation",
            of(|l| l.goal_id.map(|g| g.to_string())),
        ),
        // A boundary decision is as confident as the likelier side.
        confidence(
            "goal_segmentation_conf",
            prob(|l| conf(l.goal_boundary_prob).map(|p| p.max(1.0 - p))),
        ),
    ])?)
}

/// Each dialogue's first day in `turns`: columns dialogue_id, start_day.
fn dialogue_starts(turns: &Path) -> anyhow::Result<DataFrame> {
    let (mut ids, mut turn_days) = (Vec::new(), Vec::new());
    let mut errors = Vec::new();
    stream_rows::<Turn, DataError>(turns, |decoded| {
        for (_, turn) in decoded.rows {
            if let Some(us) = turn.timestamp_us {
                ids.push(turn.dialogue_id);
                turn_days.push(days::of_micros(us));
            }
        }
        errors.extend(
            decoded
                .issues
                .into_iter()
                .filter(|i| i.severity == Severity::Error),
        );
        Ok(())
    })?;
    if !errors.is_empty() {
        return Err(invalid_rows(turns, "turns", &errors).into());
    }
    Ok(DataFrame::new(vec![
        Column::new("dialogue_id".into(), ids),
        Column::new("start_day".into(), turn_days),
    ])?
    .lazy()
    .group_by([col("dialogue_id")])
    .agg([col("start_day").min()])
    .collect()?)
}

/// [`dialogue_starts`] joined onto the labels' `day`.
fn with_dialogue_days(frame: DataFrame, starts: &DataFrame) -> anyhow::Result<DataFrame> {
    Ok(frame
        .lazy()
        .drop(["day"])
        .join(
            starts.clone().lazy(),
            [col("dialogue_id")],
            [col("dialogue_id")],
            JoinArgs::new(JoinType::Left),
        )
        .rename(["start_day"], ["day"], true)
        .collect()?)
}

fn u64_values(frame: &DataFrame, name: &str) -> anyhow::Result<Vec<u64>> {
    let column = frame.column(name)?.cast(&DataType::UInt64)?;
    Ok(column.u64()?.into_iter().map(|v| v.unwrap_or(0)).collect())
}

/// Labels per (day, value) of `task`; withheld labels count as [`WITHHELD`].
fn counts_per_day(frame: &DataFrame, task: &str) -> anyhow::Result<Vec<DayCount>> {
    let counted = frame
        .clone()
        .lazy()
        .filter(col("day").is_not_null())
        .group_by([
            col("day"),
            col(task).fill_null(lit(WITHHELD)).alias("value"),
        ])
        .agg([len().alias("count")])
        .sort(["day", "value"], SortMultipleOptions::default())
        .collect()?;
    let day = counted.column("day")?.i32()?;
    let value = counted.column("value")?.str()?;
    let count = u64_values(&counted, "count")?;
    Ok(day
        .into_iter()
        .zip(value)
        .zip(count)
        .filter_map(|((day, value), count)| {
            Some(DayCount {
                date: days::format(day?),
                task: task.to_string(),
                value: value?.to_string(),
                count,
            })
        })
        .collect())
}

/// The histogram, counts and coverage of `task`'s confidences.
fn task_confidence(
    frame: &DataFrame,
    task: &str,
    threshold: Option<f64>,
) -> anyhow::Result<TaskConfidence> {
    let confidence = format!("{task}_conf");
    let last = BINS as i32 - 1;
    let bin = (col(confidence.as_str()) * lit(BINS as f64)).cast(DataType::Int32);
    let histogram = frame
        .clone()
        .lazy()
        .filter(col(confidence.as_str()).is_not_null())
        .select([when(bin.clone().gt(lit(last)))
            .then(lit(last))
            .when(bin.clone().lt(lit(0)))
            .then(lit(0))
            .otherwise(bin)
            .alias("bin")])
        .group_by([col("bin")])
        .agg([len().alias("count")])
        .collect()?;
    let mut bins = vec![0; BINS];
    let counts = u64_values(&histogram, "count")?;
    for (bin, count) in histogram.column("bin")?.i32()?.into_iter().zip(counts) {
        if let Some(bin) = bin {
            bins[bin as usize] = count;
        }
    }
    let mut thresholds: Vec<f64> = threshold.into_iter().chain(COVERAGE_AT).collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let mut sums = vec![
        col(confidence.as_str()).is_not_null().sum().alias("scored"),
        col(task).is_not_null().sum().alias("emitted"),
    ];
    for (i, t) in thresholds.iter().enumerate() {
        sums.push(
            col(confidence.as_str())
                .gt_eq(lit(*t))
                .sum()
                .alias(format!("at_{i}")),
        );
    }
    let totals = frame.clone().lazy().select(sums).collect()?;
    let first = |name: &str| -> anyhow::Result<u64> {
        Ok(u64_values(&totals, name)?.first().copied().unwrap_or(0))
    };
    let covered_at = thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| Ok((*t, first(&format!("at_{i}"))?)))
        .collect::<anyhow::Result<_>>()?;
    Ok(TaskConfidence {
        bins,
        scored: first("scored")?,
        emitted: first("emitted")?,
        covered_at,
    })
}
