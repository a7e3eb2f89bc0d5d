//! Labelling hive-partitioned logs (`date=YYYY-MM-DD/...`) one partition at
//! a time, so a late file in an old partition relabels that partition only:
//! each partition's digest (its files' sizes and times, the model, the
//! options) is kept in the label step's record, and a partition whose digest
//! is unchanged is hard-linked from the previous output instead of labelled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::fingerprint;

/// The `key=value` subdirectories of `logs`, by name; empty when `logs` is
/// not hive-partitioned (it is then labelled whole).
pub fn partitions(logs: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    if !logs.is_dir() {
        return Ok(found);
    }
    for entry in std::fs::read_dir(logs)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && name.contains('=') && !name.starts_with('.') {
            found.insert(name.to_string(), path);
        }
    }
    Ok(found)
}

/// A digest of a partition's files and of `context` (model and options).
pub fn digest(partition: &Path, context: &str) -> anyhow::Result<String> {
    let stamps = fingerprint(&[partition.to_path_buf()])?;
    let text = format!("{context}\n{}", serde_json::to_string(&stamps)?);
    Ok(format!("{:016x}", crate::data::split::stable_hash(&text)))
}

/// Hard-links (or, across file systems, copies) `from` into `to`, so the
/// previous output stays intact until the new one is renamed into place.
pub fn link_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_hive_folders_and_digests_see_late_files() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("date=2026-01-01");
        std::fs::create_dir_all(day.join("hour=23")).unwrap();
        std::fs::create_dir_all(dir.path().join(".date=tmp")).unwrap();
        std::fs::write(day.join("hour=23/part-0.parquet"), b"a").unwrap();
        let found = partitions(dir.path()).unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["date=2026-01-01"]);
        let before = digest(&day, "model").unwrap();
        assert_eq!(before, digest(&day, "model").unwrap());
        assert_ne!(before, digest(&day, "other model").unwrap());
        std::fs::write(day.join("hour=23/part-1.parquet"), b"late").unwrap();
        assert_ne!(before, digest(&day, "model").unwrap());

        let copy = dir.path().join("copy");
        link_tree(&day, &copy).unwrap();
        assert_eq!(
            std::fs::read(copy.join("hour=23/part-1.parquet")).unwrap(),
            b"late"
        );
    }
}
