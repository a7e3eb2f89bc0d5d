//! When a challenger is worth training: new logs arrive every night, but
//! retraining every night costs hours for little gain. With `[train]
//! every_days` and/or `min_new_annotation_files`, changed training data
//! retrains only once enough time has passed or enough new gold arrived.

use std::collections::BTreeSet;
use std::path::Path;

use super::config::PipelineFile;
use super::manifest::{FileStamp, StepRecord};

const DAY_SECONDS: f64 = 86_400.0;

/// Why training waits despite changed inputs, or None when it is due (or
/// no schedule is configured).
pub fn train_waits(
    file: &PipelineFile,
    record: &StepRecord,
    now_inputs: &[FileStamp],
    now_unix: u64,
) -> Option<String> {
    let train = file.train.as_ref()?;
    if train.every_days.is_none() && train.min_new_annotation_files.is_none() {
        return None;
    }
    let days = now_unix.saturating_sub(record.finished_unix) as f64 / DAY_SECONDS;
    if train.every_days.is_some_and(|every| days >= every) {
        return None;
    }
    let annotations = file
        .data
        .as_ref()
        .and_then(|d| d.train_annotations.as_deref());
    let new_files = annotations.map_or(0, |a| new_files_under(a, &record.inputs, now_inputs));
    if train
        .min_new_annotation_files
        .is_some_and(|wanted| new_files >= wanted)
    {
        return None;
    }
    Some(format!(
        "training waits: {days:.1} days since the last, {new_files} new annotation files"
    ))
}

fn new_files_under(root: &Path, before: &[FileStamp], now: &[FileStamp]) -> usize {
    let known: BTreeSet<&Path> = before.iter().map(|s| s.path.as_path()).collect();
    now.iter()
        .filter(|s| s.path.starts_with(root) && !known.contains(s.path.as_path()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn stamp(path: &str) -> FileStamp {
        FileStamp {
            path: PathBuf::from(path),
            size: Some(1),
            mtime_ns: Some(1),
        }
    }

    fn setup(schedule: &str) -> (PipelineFile, StepRecord) {
        let text = format!(
            "[pipeline]\nname = \"n\"\nwork_dir = \"w\"\n[data]\ntrain_annotations = \"/a\"\n[train]\ninit = \"/m\"\n{schedule}"
        );
        let file = PipelineFile::parse(&text, "n.toml").unwrap();
        let record = StepRecord {
            inputs: vec![stamp("/a/date=2026-01-01/part-0.parquet")],
            options: serde_json::Value::Null,
            binary: String::new(),
            output: PathBuf::from("w/challenger"),
            counts: Default::default(),
            finished_unix: 1_000_000,
            seconds: 1.0,
        };
        (file, record)
    }

    #[test]
    fn training_waits_for_its_day_or_enough_new_gold() {
        let (file, record) = setup("every_days = 7\nmin_new_annotation_files = 2\n");
        let one_new = [
            stamp("/a/date=2026-01-01/part-0.parquet"),
            stamp("/a/date=2026-01-02/part-0.parquet"),
        ];
        let day = 86_400;
        let wait = train_waits(&file, &record, &one_new, 1_000_000 + day).unwrap();
        assert!(wait.contains("1 new annotation files"), "{wait}");
        assert_eq!(
            train_waits(&file, &record, &one_new, 1_000_000 + 7 * day),
            None
        );
        let mut two_new = one_new.to_vec();
        two_new.push(stamp("/a/date=2026-01-03/part-0.parquet"));
        assert_eq!(train_waits(&file, &record, &two_new, 1_000_000 + day), None);
    }

    #[test]
    fn without_a_schedule_any_change_retrains() {
        let (file, record) = setup("");
        assert_eq!(train_waits(&file, &record, &[], 1_000_001), None);
    }
}
