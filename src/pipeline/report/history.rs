//! What the report remembers between runs, in WORK_DIR/history/:
//!
//! - `eval.jsonl`: one line per eval run (its date, the champion, each
//!   task's headline metric with its interval), for "eval over time";
//! - `label_days.jsonl`: label counts per day, task and value, so today's
//!   labels can be compared with the trailing days' even when tonight's
//!   labels cover only a few days (ingest reads a window of days).
//!
//! Both are rewritten whole and atomically (temporary file, rename), and
//! both updates are idempotent: an eval run is recorded once, keyed by its
//! report file's size and time, and a day's counts replace that day's
//! earlier ones. A report step killed after writing them and rerun leaves
//! them as one uninterrupted run would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::dataset::write_file_atomic;

pub const DIR: &str = "history";
pub const EVAL_FILE: &str = "eval.jsonl";
pub const LABEL_DAYS_FILE: &str = "label_days.jsonl";

/// A task's headline metric in one eval run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub metric: String,
    pub value: Option<f64>,
    pub ci95: Option<[f64; 2]>,
}

/// One eval run of the champion on the held-out gold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalEntry {
    /// The UTC date (YYYY-MM-DD) and time the eval report was written.
    pub date: String,
    pub unix: u64,
    /// Identifies the run: a digest of the report file's size and time.
    pub eval_id: String,
    pub model_id: Option<String>,
    pub gold_dialogues: Option<u64>,
    /// Task -> headline metric, in eval's task names.
    pub tasks: std::collections::BTreeMap<String, Headline>,
}

/// Label counts of one day, task and label value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DayCount {
    /// YYYY-MM-DD, UTC.
    pub date: String,
    pub task: String,
    pub value: String,
    pub count: u64,
}

pub fn eval_file(work_dir: &Path) -> PathBuf {
    work_dir.join(DIR).join(EVAL_FILE)
}

pub fn label_days_file(work_dir: &Path) -> PathBuf {
    work_dir.join(DIR).join(LABEL_DAYS_FILE)
}

/// Removes what a killed run's atomic writes left in `dir` (hidden
/// `.NAME.tmp-PID` files); the history files themselves are always whole.
pub fn remove_temp_files(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') && name.contains(".tmp-") && path.is_file() {
            std::fs::remove_file(&path)
                .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The JSON lines of `path`, or none where it does not exist yet. A line
/// that does not parse is an error naming the file and line.
pub fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                anyhow::anyhow!(
                    "{} line {}: not a history record ({e}); move the file aside to start a new history",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

fn write_lines<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let mut text = String::new();
    for row in rows {
        text += &serde_json::to_string(row)?;
        text.push('\n');
    }
    write_file_atomic(path, text.as_bytes())
}

/// Appends `entry` to the eval history unless its run is already there;
/// returns the whole history and whether it grew.
pub fn record_eval(path: &Path, entry: EvalEntry) -> anyhow::Result<(Vec<EvalEntry>, bool)> {
    let mut entries: Vec<EvalEntry> = read_lines(path)?;
    if entries.iter().any(|e| e.eval_id == entry.eval_id) {
        return Ok((entries, false));
    }
    entries.push(entry);
    write_lines(path, &entries)?;
    Ok((entries, true))
}

/// Replaces the counts of the days in `today` (every date it has) and keeps
/// the other days; returns the merged table, sorted.
pub fn record_label_days(path: &Path, fresh: &[DayCount]) -> anyhow::Result<Vec<DayCount>> {
    let old: Vec<DayCount> = read_lines(path)?;
    let dates: BTreeSet<&str> = fresh.iter().map(|c| c.date.as_str()).collect();
    let mut merged: Vec<DayCount> = old
        .into_iter()
        .filter(|c| !dates.contains(c.date.as_str()))
        .chain(fresh.iter().cloned())
        .collect();
    merged.sort();
    write_lines(path, &merged)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> EvalEntry {
        EvalEntry {
            date: "2026-12-01".into(),
            unix: 1,
            eval_id: id.into(),
            model_id: None,
            gold_dialogues: Some(3),
            tasks: Default::default(),
        }
    }

    fn count(date: &str, value: &str, count: u64) -> DayCount {
        DayCount {
            date: date.into(),
            task: "intent".into(),
            value: value.into(),
            count,
        }
    }

    #[test]
    fn an_eval_run_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = eval_file(dir.path());
        assert!(record_eval(&path, entry("a")).unwrap().1);
        assert!(!record_eval(&path, entry("a")).unwrap().1);
        let (all, grew) = record_eval(&path, entry("b")).unwrap();
        assert!(grew);
        assert_eq!(all, vec![entry("a"), entry("b")]);
        assert_eq!(read_lines::<EvalEntry>(&path).unwrap(), all);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);

        let leftover = path.with_file_name(".eval.jsonl.tmp-4194303");
        std::fs::write(&leftover, "half a line").unwrap();
        remove_temp_files(path.parent().unwrap()).unwrap();
        assert!(!leftover.exists() && path.exists());
    }

    #[test]
    fn a_days_counts_replace_its_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = label_days_file(dir.path());
        record_label_days(
            &path,
            &[count("2026-12-01", "a", 5), count("2026-12-02", "a", 1)],
        )
        .unwrap();
        // A late file changed Dec 2; Dec 1 is outside tonight's window.
        let merged = record_label_days(
            &path,
            &[count("2026-12-02", "b", 4), count("2026-12-03", "a", 2)],
        )
        .unwrap();
        assert_eq!(
            merged,
            vec![
                count("2026-12-01", "a", 5),
                count("2026-12-02", "b", 4),
                count("2026-12-03", "a", 2)
            ]
        );
        std::fs::write(&path, "{not json\n").unwrap();
        let error = record_label_days(&path, &[]).unwrap_err().to_string();
        assert!(error.contains("label_days.jsonl line 1"), "{error}");
    }
}
