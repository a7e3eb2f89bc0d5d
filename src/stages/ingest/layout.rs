//! Where the logs are: the hive partitions under a logs root
//! (`date=YYYY-MM-DD/hour=HH/part-*.parquet`, or `date=YYYY-MM-DD/*.parquet`
//! for daily partitions), the ones a run reads, and when its window ends.
//! A root without `date=` folders (a plain dataset in any order) is one
//! partition without a time: it has no window end, so no dialogue is open.
//!
//! Only directory names are parsed here; the rows' own partition columns
//! come from polars' hive parsing of the same paths (see `read.rs`).

use std::path::{Path, PathBuf};

use crate::data::dataset::part_files;
use crate::data::hive::parse_hour;
pub use crate::data::hive::{HOUR_US, HourIndex, format_hour, parse_bound, parse_date};
use crate::data::issues::DataError;

/// One `date=.../hour=...` directory (or a `date=...` one without hours).
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub dir: PathBuf,
    /// `date=2026-12-01/hour=03`, as named in summaries.
    pub name: String,
    /// The hours it covers; None for an unpartitioned root.
    pub span: Option<Span>,
    /// Its Parquet files, by name (the conflict rule's "latest file" order).
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// First hour covered.
    pub start: HourIndex,
    /// 1 for an hourly partition, 24 for a daily one.
    pub hours: i64,
}

impl Partition {
    /// The end of the partition's span, in microseconds since the epoch.
    pub fn end_us(&self) -> Option<i64> {
        self.span.map(|s| (s.start + s.hours) * HOUR_US)
    }

    /// Days since the epoch of its date.
    fn day(&self) -> Option<i64> {
        self.span.map(|s| s.start.div_euclid(24))
    }
}

/// Which partitions a run reads. Bounds are inclusive hours; `last_days`
/// keeps the newest N dates that remain after the bounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub from: Option<HourIndex>,
    pub to: Option<HourIndex>,
    pub last_days: Option<u32>,
}

/// Every partition under `root`, sorted by time, and the Parquet files in
/// each. Hidden names and names starting with `_` are skipped, as in any
/// dataset directory.
pub fn discover(root: &Path) -> Result<Vec<Partition>, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotFound {
            path: root.to_path_buf(),
        });
    }
    let mut partitions = Vec::new();
    for (date_dir, date) in hive_dirs(root, "date")? {
        let days = parse_date(&date).ok_or_else(|| bad_name(&date_dir, "date=YYYY-MM-DD"))?;
        let hours = hive_dirs(&date_dir, "hour")?;
        let files = parquet_files(&date_dir)?;
        if !files.is_empty() || hours.is_empty() {
            partitions.push(Partition {
                name: format!("date={date}"),
                dir: date_dir.clone(),
                span: Some(Span {
                    start: days * 24,
                    hours: 24,
                }),
                files,
            });
        }
        for (hour_dir, hour) in hours {
            let hour = parse_hour(&hour).ok_or_else(|| bad_name(&hour_dir, "hour=HH (00-23)"))?;
            partitions.push(Partition {
                name: format!("date={date}/hour={hour:02}"),
                files: parquet_files(&hour_dir)?,
                dir: hour_dir,
                span: Some(Span {
                    start: days * 24 + hour,
                    hours: 1,
                }),
            });
        }
    }
    if partitions.is_empty() {
        // A plain dataset: every Parquet file below the root, as one partition.
        return Ok(vec![Partition {
            dir: root.to_path_buf(),
            name: ".".into(),
            span: None,
            files: part_files(root)?,
        }]);
    }
    partitions.sort_by_key(|p| (p.span.map(|s| s.start), p.name.clone()));
    Ok(partitions)
}

/// The partitions `selection` keeps, in time order. An unpartitioned root
/// has no time, so it is kept whatever the selection.
pub fn select(partitions: Vec<Partition>, selection: &Selection) -> Vec<Partition> {
    let in_bounds = |p: &Partition| match p.span {
        None => true,
        Some(span) => {
            selection.from.is_none_or(|from| span.start >= from)
                && selection.to.is_none_or(|to| span.start <= to)
        }
    };
    let mut kept: Vec<Partition> = partitions.into_iter().filter(in_bounds).collect();
    if let Some(days) = selection.last_days {
        let mut dates: Vec<i64> = kept.iter().filter_map(Partition::day).collect();
        dates.dedup();
        let oldest = dates
            .len()
            .checked_sub(days as usize)
            .and_then(|i| dates.get(i));
        match oldest.copied() {
            Some(oldest) => kept.retain(|p| p.day().is_none_or(|day| day >= oldest)),
            None if days == 0 => kept.retain(|p| p.span.is_none()),
            None => {}
        }
    }
    kept
}

/// The end of the window (µs): the end of the latest partition read; None
/// when no partition has a time.
pub fn window_end_us(partitions: &[Partition]) -> Option<i64> {
    partitions.iter().filter_map(Partition::end_us).max()
}

fn bad_name(dir: &Path, expected: &str) -> DataError {
    DataError::Malformed {
        path: dir.to_path_buf(),
        detail: format!("partition directory name does not parse as {expected}"),
    }
}

/// `(dir, value)` of the visible `key=value` subdirectories of `dir`, by name.
fn hive_dirs(dir: &Path, key: &str) -> Result<Vec<(PathBuf, String)>, DataError> {
    let prefix = format!("{key}=");
    let mut found: Vec<(PathBuf, String)> = entries(dir)?
        .into_iter()
        .filter(|path| path.is_dir())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            let value = name.strip_prefix(&prefix)?.to_string();
            Some((path, value))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The Parquet files in `dir` and its subfolders, by path; at the date
/// level the `hour=` folders are partitions of their own and left out.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for path in entries(dir)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && !name.starts_with("hour=") {
            files.extend(parquet_files(&path)?);
        } else if path.is_file() && name.ends_with(".parquet") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.') || n.starts_with('_'));
        if !hidden {
            paths.push(path);
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn partitions_are_found_selected_and_bound_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("date=2026-12-01/hour=23/part-1.parquet"));
        touch(&root.join("date=2026-12-01/hour=23/part-0.parquet"));
        touch(&root.join("date=2026-12-01/hour=23/_SUCCESS"));
        touch(&root.join("date=2026-12-01/hour=23/late/part-2.parquet"));
        touch(&root.join("date=2026-12-02/hour=00/part-0.parquet"));
        touch(&root.join("date=2026-12-03/part-0.parquet"));
        touch(&root.join(".date=2026-12-04/hour=00/part-0.parquet"));
        let all = discover(root).unwrap();
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "date=2026-12-01/hour=23",
                "date=2026-12-02/hour=00",
                "date=2026-12-03"
            ]
        );
        let files: Vec<_> = all[0]
            .files
            .iter()
            .map(|f| f.file_name().unwrap())
            .collect();
        assert_eq!(
            files,
            ["part-2.parquet", "part-0.parquet", "part-1.parquet"]
        );
        assert_eq!(
            format_hour(window_end_us(&all).unwrap() / HOUR_US),
            "2026-12-04T00:00:00Z"
        );
        assert_eq!(all[2].span.unwrap().hours, 24);

        let bounded = Selection {
            from: parse_bound("2026-12-02", false),
            to: parse_bound("2026-12-02", true),
            last_days: None,
        };
        assert_eq!(select(all.clone(), &bounded).len(), 1);
        let newest_two = Selection {
            last_days: Some(2),
            ..Selection::default()
        };
        let kept = select(all.clone(), &newest_two);
        assert_eq!(kept.first().unwrap().name, "date=2026-12-02/hour=00");
        assert_eq!(kept.len(), 2);
        let none = Selection {
            last_days: Some(0),
            ..Selection::default()
        };
        assert!(select(all, &none).is_empty());
    }

    #[test]
    fn unpartitioned_roots_are_one_timeless_partition() {
        let dir = tempfile::tempdir().unwrap();
        let error = discover(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no .parquet files"), "{error}");
        touch(&dir.path().join("b/part-1.parquet"));
        touch(&dir.path().join("part-0.parquet"));
        let all = discover(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].files.len(), 2);
        assert_eq!(window_end_us(&all), None);
        let bounded = Selection {
            from: parse_bound("2026-12-02", false),
            last_days: Some(0),
            ..Selection::default()
        };
        assert_eq!(select(all, &bounded).len(), 1);
    }

    #[test]
    fn bad_partition_names_are_named() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("date=2026-12-01/hour=25/part-0.parquet"));
        let error = discover(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("hour=25") && error.contains("hour=HH"),
            "{error}"
        );
    }
}
