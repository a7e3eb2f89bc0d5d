//! The label table's aggregates: label counts per day, task and value;
//! confidence histograms; coverage at thresholds.
//!
//! Rows are read through the project's readers (`data::dataset`), so a bad
//! file or row is an error naming the file, row, dialogue and column, as
//! everywhere else. Interim: the counting is done over the rows in Rust
//! until polars is in the build; the project rule is polars for this.
//!
//! A label's day: the `date=YYYY-MM-DD` partition it was labelled in when
//! the logs are hive-partitioned; otherwise the UTC day its dialogue
//! started (the earliest turn timestamp in the logs), so a dialogue across
//! midnight counts once, on the day it began. Labels with neither are
//! counted as undated: in the histograms and coverage, not in the days.

use std::collections::BTreeMap;
use std::path::Path;

use super::days;
use super::history::DayCount;
use crate::data::dataset::{invalid_rows, read_table, stream_rows};
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
}

/// Aggregates the labels at `labels` (a dataset, or hive partitions of
/// datasets); `turns` are the logs they label, read for the days when the
/// labels are not partitioned by date. `thresholds`: task -> min_confidence.
pub fn aggregate(
    labels: &Path,
    turns: Option<&Path>,
    thresholds: &BTreeMap<String, f64>,
) -> anyhow::Result<Aggregates> {
    let parts = partitions::partitions(labels)?;
    let (frame, dated_by) = if parts.is_empty() {
        let rows = read_labels(labels)?;
        let starts = match turns {
            Some(turns) => dialogue_days(turns)?,
            None => BTreeMap::new(),
        };
        let frame: Vec<(Option<i32>, Label)> = rows
            .into_iter()
            .map(|l| (starts.get(&l.dialogue_id).copied(), l))
            .collect();
        (frame, "dialogue start")
    } else {
        let mut frame = Vec::new();
        for (name, path) in &parts {
            let day = partition_day(name, path)?;
            frame.extend(read_labels(path)?.into_iter().map(|l| (day, l)));
        }
        (frame, "partitions")
    };
    let rows = frame.len() as u64;
    let undated = frame.iter().filter(|(d, _)| d.is_none()).count() as u64;
    let mut day_counts = Vec::new();
    for task in DISTRIBUTION_TASKS {
        day_counts.extend(counts_per_day(&frame, task));
    }
    day_counts.sort();
    let mut confidence = BTreeMap::new();
    for task in CONFIDENCE_TASKS {
        let threshold = thresholds.get(task).copied();
        confidence.insert(task.to_string(), task_confidence(&frame, task, threshold));
    }
    Ok(Aggregates {
        rows,
        undated,
        dated_by,
        day_counts,
        confidence,
    })
}

fn read_labels(path: &Path) -> anyhow::Result<Vec<Label>> {
    Ok(read_table::<Label>(path)?.0)
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

/// A task's value (None = withheld) and the confidence of the emitted value.
fn task_value(label: &Label, task: &str) -> (Option<String>, Option<f64>) {
    match task {
        "intent" => (label.intent.clone(), conf(label.intent_prob)),
        "failure_point" => (label.failure_point.clone(), conf(label.failure_point_prob)),
        "goal_success" => (
            label.goal_success.map(|s| s.to_string()),
            conf(label.goal_success_prob),
        ),
        "slots" => (
            label.slots.as_ref().map(|s| s.len().to_string()),
            conf(label.slots_prob),
        ),
        // A boundary decision is as confident as the likelier side.
        _ => (
            label.goal_id.map(|g| g.to_string()),
            conf(label.goal_boundary_prob).map(|p| p.max(1.0 - p)),
        ),
    }
}

/// Each dialogue's first day in `turns`.
fn dialogue_days(turns: &Path) -> anyhow::Result<BTreeMap<String, i32>> {
    let mut starts: BTreeMap<String, i32> = BTreeMap::new();
    let mut errors = Vec::new();
    stream_rows::<Turn, DataError>(turns, |decoded| {
        for (_, turn) in decoded.rows {
            if let Some(us) = turn.timestamp_us {
                let day = days::of_micros(us);
                let start = starts.entry(turn.dialogue_id).or_insert(day);
                *start = (*start).min(day);
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
    Ok(starts)
}

fn counts_per_day(frame: &[(Option<i32>, Label)], task: &str) -> Vec<DayCount> {
    let mut counts: BTreeMap<(i32, String), u64> = BTreeMap::new();
    for (day, label) in frame {
        if let Some(day) = day {
            let value = task_value(label, task)
                .0
                .unwrap_or_else(|| WITHHELD.to_string());
            *counts.entry((*day, value)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|((day, value), count)| DayCount {
            date: days::format(day),
            task: task.to_string(),
            value,
            count,
        })
        .collect()
}

fn task_confidence(
    frame: &[(Option<i32>, Label)],
    task: &str,
    threshold: Option<f64>,
) -> TaskConfidence {
    let mut thresholds: Vec<f64> = threshold.into_iter().chain(COVERAGE_AT).collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let mut bins = vec![0; BINS];
    let (mut scored, mut emitted) = (0, 0);
    let mut covered = vec![0; thresholds.len()];
    for (_, label) in frame {
        let (value, confidence) = task_value(label, task);
        emitted += u64::from(value.is_some());
        if let Some(c) = confidence {
            scored += 1;
            bins[((c * BINS as f64) as usize).min(BINS - 1)] += 1;
            for (n, t) in covered.iter_mut().zip(&thresholds) {
                *n += u64::from(c >= *t);
            }
        }
    }
    TaskConfidence {
        bins,
        scored,
        emitted,
        covered_at: thresholds.into_iter().zip(covered).collect(),
    }
}
