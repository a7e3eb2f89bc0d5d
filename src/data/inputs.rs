//! Inputs that change under a running job (issue 17).
//!
//! A collector may rewrite or delete a log file while `ingest`, `synth`,
//! `label`, `train`, `pretrain` or `eval` reads it (or a model directory
//! may be replaced while `train` initialises from it): the output would then match no state of the input
//! (half the old rows, half the new, or a row count that disagrees with
//! the footer read at the start). A job takes an [`InputSnapshot`] of the
//! files it is about to read and checks it again just before moving its
//! output into place; a file that changed fails the job, naming the file,
//! and nothing is written.
//!
//! What is compared: size, modification time (nanoseconds where the file
//! system keeps them) and inode. That is free to take, unlike a hash, and
//! catches a rewrite in place, an append, a truncation, a replacement by
//! rename (a new inode) and a deletion. It misses a rewrite to the same
//! size within one timestamp tick that keeps the inode, which no writer of
//! Parquet part files does. Files added to a dataset directory during the
//! job are not an error: the output is that of the files listed at the
//! start, and the next run reads the new ones.
//!
//! A training checkpoint keeps its run's snapshot ([`SavedSnapshot`]):
//! `--resume` compares it with the inputs as they are now and refuses to
//! continue weights trained on other data, naming the file that differs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::dataset::part_files;
use super::issues::DataError;

/// What the file system said about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        let meta = std::fs::metadata(path)?;
        Ok(Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: inode(&meta),
        })
    }

    /// How a file stamped `self` differs now; None when it does not.
    fn change_to(&self, now: std::io::Result<Stamp>) -> Option<String> {
        Some(match now {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "it was deleted".to_string(),
            Err(e) => format!("it can no longer be read ({e})"),
            Ok(now) if now.inode != self.inode => "it was replaced by another file".to_string(),
            Ok(now) if now.len != self.len => {
                format!("its size went from {} to {} bytes", self.len, now.len)
            }
            Ok(now) if now.modified != self.modified => {
                "it was rewritten (its modification time changed)".to_string()
            }
            Ok(_) => return None,
        })
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// The files a job reads, as they were when it started.
#[derive(Debug, Clone, Default)]
pub struct InputSnapshot {
    files: Vec<(PathBuf, Stamp)>,
}

impl InputSnapshot {
    /// The part files of the dataset at `path` (a file or a directory).
    pub fn of_dataset(path: &Path) -> Result<InputSnapshot, DataError> {
        InputSnapshot::of_files(part_files(path)?)
    }

    pub fn of_files(files: impl IntoIterator<Item = PathBuf>) -> Result<InputSnapshot, DataError> {
        let files = files
            .into_iter()
            .map(|path| match Stamp::of(&path) {
                Ok(stamp) => Ok((path, stamp)),
                Err(e) => Err(DataError::Unreadable {
                    path,
                    detail: e.to_string(),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(InputSnapshot { files })
    }

    /// Adds another dataset's files (a job with several inputs).
    pub fn add(&mut self, other: InputSnapshot) {
        self.files.extend(other.files);
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// An error naming the first file that was deleted, replaced or
    /// rewritten since the snapshot, and how.
    pub fn check_unchanged(&self) -> Result<(), DataError> {
        for (path, before) in &self.files {
            let Some(change) = before.change_to(Stamp::of(path)) else {
                continue;
            };
            return Err(DataError::Unreadable {
                path: path.clone(),
                detail: format!(
                    "the file changed while this command read it: {change}; nothing was written\n  \
                     hint: run again once whatever writes it has finished"
                ),
            });
        }
        Ok(())
    }
}

/// An [`InputSnapshot`] as a checkpoint keeps it, paths as text (lossy
/// for a name that is not UTF-8, on both sides of a comparison).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSnapshot {
    files: Vec<(String, Stamp)>,
}

impl InputSnapshot {
    pub fn saved(&self) -> SavedSnapshot {
        SavedSnapshot {
            files: self
                .files
                .iter()
                .map(|(path, stamp)| (path.to_string_lossy().into_owned(), stamp.clone()))
                .collect(),
        }
    }

    /// How this snapshot's files differ from an earlier run's: the first
    /// file changed, gone or added since, named; None when they are the same.
    pub fn differs_from(&self, earlier: &SavedSnapshot) -> Option<String> {
        let now = self.saved();
        for (path, before) in &earlier.files {
            let current = now.files.iter().find(|(p, _)| p == path).map(|(_, s)| s);
            let change = match current {
                Some(stamp) => before.change_to(Ok(stamp.clone())),
                None => Some("it is no longer among the inputs (deleted?)".to_string()),
            };
            if let Some(change) = change {
                return Some(format!("{path}: {change}"));
            }
        }
        now.files
            .iter()
            .find(|(path, _)| !earlier.files.iter().any(|(p, _)| p == path))
            .map(|(path, _)| format!("{path}: it was added"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(dir: &Path) -> PathBuf {
        let data = dir.join("turns");
        std::fs::create_dir_all(&data).unwrap();
        for name in ["part-0.parquet", "part-1.parquet"] {
            std::fs::write(data.join(name), b"PAR1 first version PAR1").unwrap();
        }
        data
    }

    fn error_after(change: impl Fn(&Path)) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let data = dataset(tmp.path());
        let snapshot = InputSnapshot::of_dataset(&data).unwrap();
        assert_eq!(snapshot.len(), 2);
        snapshot.check_unchanged().unwrap();
        change(&data.join("part-1.parquet"));
        snapshot.check_unchanged().unwrap_err().to_string()
    }

    #[test]
    fn a_deleted_appended_or_replaced_file_is_named() {
        let deleted = error_after(|p| std::fs::remove_file(p).unwrap());
        assert!(
            deleted.contains("part-1.parquet") && deleted.contains("deleted"),
            "{deleted}"
        );
        let appended = error_after(|p| {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            file.write_all(b"more rows").unwrap();
        });
        assert!(
            appended.contains("part-1.parquet") && appended.contains("size went from 23 to 32"),
            "{appended}"
        );
        // Same size, same bytes, moved over the original: a new inode.
        let replaced = error_after(|p| {
            let new = p.with_extension("new");
            std::fs::write(&new, b"PAR1 first version PAR1").unwrap();
            std::fs::rename(&new, p).unwrap();
        });
        assert!(
            replaced.contains("part-1.parquet") && replaced.contains("replaced"),
            "{replaced}"
        );
        assert!(replaced.contains("nothing was written"), "{replaced}");
    }

    #[test]
    fn a_rewrite_to_the_same_size_is_caught_by_its_modification_time() {
        let rewritten = error_after(|p| {
            let old = std::fs::metadata(p).unwrap().modified().unwrap();
            std::fs::write(p, b"PAR1 other version PAR1").unwrap();
            // A coarse clock may give the same time: set a later one.
            let file = std::fs::File::options().write(true).open(p).unwrap();
            file.set_modified(old + std::time::Duration::from_secs(1))
                .unwrap();
        });
        assert!(
            rewritten.contains("part-1.parquet") && rewritten.contains("rewritten"),
            "{rewritten}"
        );
    }

    #[test]
    fn a_file_added_to_the_dataset_is_not_a_change() {
        let tmp = tempfile::tempdir().unwrap();
        let data = dataset(tmp.path());
        let snapshot = InputSnapshot::of_dataset(&data).unwrap();
        std::fs::write(data.join("part-2.parquet"), b"late").unwrap();
        snapshot.check_unchanged().unwrap();
    }

    #[test]
    fn a_saved_snapshot_names_what_changed_went_or_came_since() {
        let tmp = tempfile::tempdir().unwrap();
        let data = dataset(tmp.path());
        let saved = InputSnapshot::of_dataset(&data).unwrap().saved();
        let json = serde_json::to_string(&saved).unwrap();
        let saved: SavedSnapshot = serde_json::from_str(&json).unwrap();
        let now = || InputSnapshot::of_dataset(&data).unwrap();
        assert_eq!(now().differs_from(&saved), None);
        std::fs::write(data.join("part-2.parquet"), b"late").unwrap();
        let added = now().differs_from(&saved).unwrap();
        assert!(added.ends_with("part-2.parquet: it was added"), "{added}");
        std::fs::remove_file(data.join("part-2.parquet")).unwrap();
        std::fs::write(data.join("part-1.parquet"), b"PAR1 longer version PAR1").unwrap();
        let changed = now().differs_from(&saved).unwrap();
        assert!(
            changed.contains("part-1.parquet: its size went"),
            "{changed}"
        );
        std::fs::remove_file(data.join("part-1.parquet")).unwrap();
        let gone = now().differs_from(&saved).unwrap();
        assert!(
            gone.contains("part-1.parquet: it is no longer among"),
            "{gone}"
        );
    }
}
