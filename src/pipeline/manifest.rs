//! The manifest (WORK_DIR/manifest.json): per step, what it last ran on
//! (every input file's path, size and modification time), with which options
//! and binary, what it wrote, its counts and timings. A step whose record
//! still matches is skipped; the manifest is replaced atomically after each
//! step's output is in place, so a crash at any point leaves either the old
//! record (the step reruns) or the new one with its output present.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::data::dataset::write_file_atomic;

/// What labelgen build wrote a record; a new build reruns everything.
pub fn binary_version() -> String {
    format!("labelgen {}", env!("CARGO_PKG_VERSION"))
}

/// One input file as it was when the step read it. `size` and `mtime_ns`
/// are None for an input that did not exist (an optional champion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub path: PathBuf,
    pub size: Option<u64>,
    pub mtime_ns: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub inputs: Vec<FileStamp>,
    pub options: serde_json::Value,
    pub binary: String,
    pub output: PathBuf,
    pub counts: BTreeMap<String, serde_json::Value>,
    pub finished_unix: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub steps: BTreeMap<String, StepRecord>,
}

impl Manifest {
    /// The manifest at `path`, or an empty one where none was written yet.
    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: unreadable manifest ({e}); delete it to rerun every step",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_file_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }
}

/// Every file under `inputs`, in a stable order. Hidden names (staging
/// leftovers such as `.turns.tmp-123`) are skipped: they are not data.
pub fn fingerprint(inputs: &[PathBuf]) -> anyhow::Result<Vec<FileStamp>> {
    let mut stamps = Vec::new();
    for input in inputs {
        if !input.exists() {
            stamps.push(FileStamp {
                path: input.clone(),
                size: None,
                mtime_ns: None,
            });
            continue;
        }
        let mut files = Vec::new();
        collect_files(input, &mut files)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", input.display()))?;
        files.sort();
        for file in files {
            stamps.push(stamp(&file)?);
        }
    }
    Ok(stamps)
}

fn stamp(file: &Path) -> anyhow::Result<FileStamp> {
    let meta = std::fs::metadata(file)
        .map_err(|e| anyhow::anyhow!("cannot stat {}: {e}", file.display()))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64);
    Ok(FileStamp {
        path: file.to_path_buf(),
        size: Some(meta.len()),
        mtime_ns,
    })
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?.path();
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden {
            collect_files(&entry, out)?;
        }
    }
    Ok(())
}

/// Why `now` differs from `before`: the first path added, removed or changed.
pub fn first_difference(before: &[FileStamp], now: &[FileStamp]) -> Option<String> {
    let old: BTreeMap<&Path, &FileStamp> = before.iter().map(|s| (s.path.as_path(), s)).collect();
    let new: BTreeMap<&Path, &FileStamp> = now.iter().map(|s| (s.path.as_path(), s)).collect();
    for (path, stamp) in &new {
        match old.get(path) {
            None => return Some(format!("new input {}", path.display())),
            Some(previous) if previous != stamp => {
                return Some(format!("input changed: {}", path.display()));
            }
            _ => {}
        }
    }
    old.keys()
        .find(|p| !new.contains_key(*p))
        .map(|p| format!("input removed: {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_see_new_changed_and_removed_files_but_not_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("date=2026-01-01")).unwrap();
        std::fs::write(data.join("date=2026-01-01/part-0.parquet"), b"abc").unwrap();
        let before = fingerprint(std::slice::from_ref(&data)).unwrap();
        std::fs::write(data.join(".part-1.tmp-9"), b"partial").unwrap();
        let same = fingerprint(std::slice::from_ref(&data)).unwrap();
        assert_eq!(first_difference(&before, &same), None);

        std::fs::write(data.join("date=2026-01-01/part-1.parquet"), b"late").unwrap();
        let late = fingerprint(std::slice::from_ref(&data)).unwrap();
        let why = first_difference(&before, &late).unwrap();
        assert!(why.contains("part-1.parquet"), "{why}");

        std::fs::write(data.join("date=2026-01-01/part-0.parquet"), b"abcd").unwrap();
        let changed = fingerprint(std::slice::from_ref(&data)).unwrap();
        assert!(
            first_difference(&late, &changed)
                .unwrap()
                .contains("changed")
        );
        assert!(
            first_difference(&late, &before)
                .unwrap()
                .contains("removed")
        );
    }

    #[test]
    fn a_missing_input_is_recorded_as_absent() {
        let stamps = fingerprint(&[PathBuf::from("/no/such/champion")]).unwrap();
        assert_eq!(stamps[0].size, None);
    }

    #[test]
    fn manifests_round_trip_and_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        assert!(Manifest::load(&path).unwrap().steps.is_empty());
        let mut manifest = Manifest::default();
        manifest.steps.insert(
            "train".into(),
            StepRecord {
                inputs: Vec::new(),
                options: serde_json::json!({"epochs": 1}),
                binary: binary_version(),
                output: dir.path().join("challenger"),
                counts: BTreeMap::new(),
                finished_unix: 1,
                seconds: 0.5,
            },
        );
        manifest.save(&path).unwrap();
        assert_eq!(
            Manifest::load(&path).unwrap().steps["train"].options["epochs"],
            1
        );
    }
}
