//! Parquet datasets: one file, or a directory of part files read as one.
//!
//! Reading streams record batches file by file. Writing goes to a hidden
//! temporary directory that is renamed into place only when complete, so a
//! crash never leaves a partial dataset where a reader would find it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::inputs::InputSnapshot;
use super::issues::{DataError, Issue, RowPlace, Severity};
use super::panics::contained;
use super::split::stable_hash;
use super::tables::{Decoded, TableRow};

/// Rows per record batch when reading: bounds memory per batch.
pub const READ_BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group when writing (readers stream row groups).
const ROW_GROUP_ROWS: usize = 65_536;
/// Rows per part file when writing large datasets.
const PART_FILE_ROWS: usize = 2_000_000;

/// The Parquet files that make up a dataset, in a stable order. A directory
/// is searched recursively (hive-style `key=value/` folders work); hidden
/// files and names starting with `_` (`_SUCCESS`, `.crc`) are skipped.
pub fn part_files(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !path.exists() {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    collect_parquet(path, &mut files).map_err(|e| DataError::Unreadable {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    files.sort();
    if files.is_empty() {
        return Err(DataError::NoPartFiles {
            path: path.to_path_buf(),
        });
    }
    Ok(files)
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // Compared as bytes: a name that is not UTF-8 (written on a system
        // with another locale) is still a part file, not one to skip.
        let name = path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default();
        if name.starts_with(b".") || name.starts_with(b"_") {
            continue;
        }
        if path.is_dir() {
            collect_parquet(&path, out)?;
        } else if name.ends_with(b".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// Opens one part file for streaming, telling an empty, foreign or truncated
/// file apart so the message says what happened.
pub fn open_part(path: &Path) -> Result<(PartReader, usize), DataError> {
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let mut file = File::open(path).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    if len == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let mut head = [0u8; 4];
    let head_len = file.read(&mut head).map_err(unreadable)?;
    if head_len < 4 || &head != b"PAR1" {
        return Err(DataError::NotParquet {
            path: path.to_path_buf(),
            detail: "it does not start with the Parquet magic bytes PAR1".into(),
        });
    }
    let mut tail = [0u8; 4];
    file.seek(SeekFrom::End(-4)).map_err(unreadable)?;
    file.read_exact(&mut tail).map_err(unreadable)?;
    if len < 12 || &tail != b"PAR1" {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!("{len} bytes, and no Parquet footer at the end"),
        });
    }
    file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let truncated = |detail: String| DataError::Truncated {
        path: path.to_path_buf(),
        detail: format!("footer unreadable: {detail}"),
    };
    let builder = contained(|| ParquetRecordBatchReaderBuilder::try_new(file))
        .map_err(|panic| truncated(format!("the parquet crate panicked: {panic}")))?
        .map_err(|e| truncated(e.to_string()))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let reader = contained(|| builder.with_batch_size(READ_BATCH_ROWS).build())
        .map_err(|panic| format!("the parquet crate panicked: {panic}"))
        .and_then(|built| built.map_err(|e| e.to_string()))
        .map_err(|detail| DataError::Unreadable {
            path: path.to_path_buf(),
            detail,
        })?;
    let reader = PartReader {
        inner: Some(reader),
        path: path.to_path_buf(),
        rows_read: 0,
    };
    Ok((reader, rows))
}

/// A part file's record batches. The parquet crate panics on some corrupt
/// pages instead of returning an error (found by fuzzing:
/// tests/fuzz/corpus/parquet_table/crash-*), so each batch is read under
/// [`contained`]: a panic, like an error, ends the file with an
/// `Unreadable` error naming it and the row reached.
pub struct PartReader {
    /// None once an error ended the file.
    inner: Option<ParquetRecordBatchReader>,
    path: PathBuf,
    rows_read: usize,
}

impl PartReader {
    pub fn schema(&self) -> SchemaRef {
        self.inner
            .as_ref()
            .map(|r| r.schema())
            .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()))
    }
}

impl Iterator for PartReader {
    type Item = Result<RecordBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.inner.as_mut()?;
        let detail = match contained(|| reader.next()) {
            Ok(None) => return None,
            Ok(Some(Ok(batch))) => {
                self.rows_read += batch.num_rows();
                return Some(Ok(batch));
            }
            Ok(Some(Err(e))) => e.to_string(),
            Err(panic) => format!("corrupt data (the parquet crate panicked: {panic})"),
        };
        self.inner = None;
        Some(Err(DataError::Unreadable {
            path: self.path.clone(),
            detail: format!("at row {}: {detail}", self.rows_read),
        }))
    }
}

/// Streams a dataset as typed rows, one record batch at a time. `visit`
/// receives the decoded rows and the per-row issues of each batch, and the
/// column names of each file that the schema does not know (they are kept
/// in the file and ignored here).
pub fn stream_rows<T: TableRow, E: From<DataError>>(
    path: &Path,
    mut visit: impl FnMut(Decoded<T>) -> Result<(), E>,
) -> Result<StreamSummary, E> {
    let mut summary = StreamSummary::default();
    let schema = T::TABLE.schema();
    for part in part_files(path)? {
        let (reader, rows) = open_part(&part)?;
        let file: Arc<str> = part.display().to_string().into();
        summary.files += 1;
        if rows == 0 {
            summary.issues.push(Issue {
                severity: Severity::Warning,
                kind: "empty_table",
                file: file.to_string(),
                row: None,
                column: None,
                dialogue_id: None,
                message: "file holds no rows".into(),
            });
        }
        let extra: Vec<String> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|name| schema.column(name).is_none())
            .collect();
        if !extra.is_empty() {
            summary.extra_columns.push((file.to_string(), extra));
        }
        let mut first_row = 0;
        for batch in reader {
            let batch = batch?;
            let decoded = T::from_batch(&batch, &file, first_row)?;
            first_row += batch.num_rows();
            summary.rows += batch.num_rows();
            visit(decoded)?;
        }
    }
    Ok(summary)
}

#[derive(Debug, Default)]
pub struct StreamSummary {
    pub files: usize,
    pub rows: usize,
    /// File-level issues (e.g. a file with no rows).
    pub issues: Vec<Issue>,
    /// (file, columns) the schema does not name.
    pub extra_columns: Vec<(String, Vec<String>)>,
}

/// A whole table in memory, for stages that need random access. Any row
/// error (a bad cell or value, or two rows with one key) stops with the
/// first few located; warnings are returned, counted.
pub fn read_table<T: TableRow>(path: &Path) -> Result<(Vec<T>, Vec<Issue>), DataError> {
    let mut rows = Vec::new();
    let warnings = visit_table(path, |row| rows.push(row))?;
    Ok((rows, warnings))
}

/// [`read_table_counted`] without holding the table: each row goes to
/// `visit` as read, for a stage that keeps only a few of them. The same
/// checks run (a bad row or a repeated key is an error, naming it, before
/// `visit_table_counted` returns; the caller writes nothing until then).
pub fn visit_table_counted<T: TableRow>(
    path: &Path,
    visit: impl FnMut(T),
) -> Result<usize, DataError> {
    let warnings = visit_table(path, visit)?;
    if let Some(text) = read_warning_text(path, T::TABLE.name(), &warnings) {
        eprintln!("{text}");
    }
    Ok(warnings.len())
}

fn visit_table<T: TableRow>(
    path: &Path,
    mut visit: impl FnMut(T),
) -> Result<Vec<Issue>, DataError> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut keys = KeyIndex::default();
    let summary = stream_rows::<T, DataError>(path, |decoded| {
        for (place, row) in decoded.rows {
            errors.extend(keys.observe(&place, &row));
            visit(row);
        }
        for issue in decoded.issues {
            if issue.severity == Severity::Error {
                errors.push(issue)
            } else {
                warnings.push(issue)
            }
        }
        Ok(())
    })?;
    warnings.extend(summary.issues);
    if !keys.scattered.is_empty() {
        // Their repeated keys are found by the second pass, each once.
        errors.retain(|e| {
            !(e.kind == "duplicate_key" && keys.is_scattered(e.dialogue_id.as_deref()))
        });
        errors.extend(scattered_duplicates::<T>(path, &keys.scattered)?);
        // Part files are read in sorted order: errors in reading order.
        errors.sort_by(|a, b| (&a.file, a.row).cmp(&(&b.file, b.row)));
    }
    if !errors.is_empty() {
        return Err(invalid_rows(path, T::TABLE.name(), &errors));
    }
    Ok(warnings)
}

/// The second pass of [`visit_table`]'s key check: every key of the
/// scattered dialogues (their rows not all together), indexed whole.
fn scattered_duplicates<T: TableRow>(
    path: &Path,
    scattered: &HashSet<u64>,
) -> Result<Vec<Issue>, DataError> {
    let mut keys = RowKeys::default();
    let mut errors = Vec::new();
    stream_rows::<T, DataError>(path, |decoded| {
        let rows = decoded.rows.into_iter();
        for (place, row) in
            rows.filter(|(_, row)| scattered.contains(&stable_hash(row.dialogue_id())))
        {
            errors.extend(keys.observe(&place, &row));
        }
        Ok(())
    })?;
    Ok(errors)
}

/// Warnings shown by name on stderr; the rest are counted ("and N more").
const WARNINGS_SHOWN: usize = 3;

/// [`read_table`] for a stage that goes on past warnings (an empty
/// utterance, an empty part file): they are said on stderr, naming the
/// table and the first few, and their number is returned for the stage's
/// summary, so none passes unseen and uncounted (issue 17).
pub fn read_table_counted<T: TableRow>(path: &Path) -> Result<(Vec<T>, usize), DataError> {
    let (rows, warnings) = read_table::<T>(path)?;
    if let Some(text) = read_warning_text(path, T::TABLE.name(), &warnings) {
        eprintln!("{text}");
    }
    Ok((rows, warnings.len()))
}

/// The stderr note for a table read with warnings: how many, the first
/// few, and the command that lists them all; None without warnings.
pub fn read_warning_text(path: &Path, table: &str, warnings: &[Issue]) -> Option<String> {
    if warnings.is_empty() {
        return None;
    }
    let mut text = format!(
        "warning: {}: {} non-fatal problem(s) in the {table} table, read anyway:",
        path.display(),
        warnings.len()
    );
    for issue in warnings.iter().take(WARNINGS_SHOWN) {
        text.push_str(&format!("\n  {issue}"));
    }
    if warnings.len() > WARNINGS_SHOWN {
        text.push_str(&format!(
            "\n  ... and {} more",
            warnings.len() - WARNINGS_SHOWN
        ));
    }
    text.push_str(&format!(
        "\n  `labelgen validate {} --table {table}` lists them",
        path.display()
    ));
    Some(text)
}

/// Finds rows that share a key, across part files: a stage that holds a
/// table by key would otherwise keep one of them and drop the other
/// silently.
///
/// Tables hold each dialogue's rows together as a rule (labelgen writes
/// them so), so the index keeps the keys of the dialogue being read and an
/// 8-byte hash of each dialogue already read: its memory grows by 16 bytes
/// a dialogue, not 32 a row (which set the review and report steps' memory
/// on a 1M-turn day). A dialogue met again after others is "scattered";
/// [`visit_table`] then reads the table a second time to index all the keys
/// of the scattered dialogues, and only theirs.
#[derive(Default)]
struct KeyIndex {
    /// The dialogue being read (its name and hash), and its keys so far.
    open: Option<(Box<str>, u64)>,
    open_keys: RowKeys,
    /// Hashes of the dialogues read before the open one.
    closed: HashSet<u64>,
    /// Hashes of the dialogues met again after others.
    scattered: HashSet<u64>,
}

impl KeyIndex {
    /// A `duplicate_key` error if the row repeats a key of its dialogue's
    /// rows read just before it.
    fn observe<T: TableRow>(&mut self, place: &RowPlace, row: &T) -> Option<Issue> {
        let dialogue = row.dialogue_id();
        if self
            .open
            .as_ref()
            .is_none_or(|(open, _)| **open != *dialogue)
        {
            if let Some((_, previous)) = self.open.take() {
                self.closed.insert(previous);
            }
            let hash = stable_hash(dialogue);
            if self.closed.contains(&hash) {
                self.scattered.insert(hash);
            }
            self.open = Some((dialogue.into(), hash));
            self.open_keys.first.clear();
            self.open_keys.dialogues.clear();
        }
        self.open_keys.observe(place, row)
    }

    fn is_scattered(&self, dialogue: Option<&str>) -> bool {
        dialogue.is_some_and(|d| self.scattered.contains(&stable_hash(d)))
    }
}

/// Where each key was first seen, one entry per row observed: dialogue and
/// annotator names are stored once each, and a row's key and place are four
/// integers.
#[derive(Default)]
struct RowKeys {
    dialogues: HashMap<Box<str>, usize>,
    /// Annotator names; a key's annotator is its index + 1 (0: none).
    annotators: HashMap<Box<str>, usize>,
    files: Vec<Arc<str>>,
    /// (dialogue, turn_index, annotator) -> (file, row) first seen.
    first: HashMap<(usize, i32, u32), (usize, usize)>,
}

/// The number of `name` in `names` (its order of first sighting), added if new.
fn intern(names: &mut HashMap<Box<str>, usize>, name: &str) -> usize {
    match names.get(name) {
        Some(&id) => id,
        None => {
            let id = names.len();
            names.insert(name.into(), id);
            id
        }
    }
}

impl RowKeys {
    /// A `duplicate_key` error if the row's key was seen before.
    fn observe<T: TableRow>(&mut self, place: &RowPlace, row: &T) -> Option<Issue> {
        let dialogue = intern(&mut self.dialogues, row.dialogue_id());
        // A table's annotators are a handful of people or models: u32 is ample.
        let annotator = (row.annotator_id())
            .map(|name| intern(&mut self.annotators, name) as u32 + 1)
            .unwrap_or(0);
        if !(self.files.last())
            .is_some_and(|last| Arc::ptr_eq(last, &place.file) || *last == place.file)
        {
            self.files.push(place.file.clone());
        }
        let here = (self.files.len() - 1, place.row);
        match self.first.entry((dialogue, row.turn_index(), annotator)) {
            Entry::Vacant(entry) => {
                entry.insert(here);
                None
            }
            Entry::Occupied(entry) => {
                let (file, first_row) = *entry.get();
                let annotator = row
                    .annotator_id()
                    .map(|a| format!(", annotator {a}"))
                    .unwrap_or_default();
                Some(place.issue(
                    Severity::Error,
                    "duplicate_key",
                    None,
                    Some(row.dialogue_id()),
                    format!(
                        "duplicate key (turn_index {}{annotator}); first seen in {} row {first_row}",
                        row.turn_index(),
                        self.files[file],
                    ),
                ))
            }
        }
    }
}

pub fn invalid_rows(path: &Path, table: &'static str, errors: &[Issue]) -> DataError {
    DataError::InvalidRows {
        path: path.to_path_buf(),
        table,
        count: errors.len(),
        first: errors
            .iter()
            .take(5)
            .map(|e| format!("  {e}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Writes a dataset directory atomically: part files go to a hidden sibling
/// directory, renamed to the target by [`DatasetWriter::finish`]. Dropped
/// unfinished, the temporary directory is removed.
pub struct DatasetWriter {
    target: PathBuf,
    temp: PathBuf,
    current: Option<(ArrowWriter<File>, SchemaRef, usize)>,
    parts: usize,
    rows: usize,
    /// The inputs checked before the output moves into place.
    inputs: InputSnapshot,
    finished: bool,
}

/// An empty hidden sibling of `target` (`.NAME.tmp-PID`) to write an output
/// into before it is renamed into place, so no partial output is ever
/// visible at `target`. An existing `target` is an error unless `overwrite`
/// (so a typo cannot destroy data); a leftover sibling of this process id
/// is cleared.
pub fn begin_staging(target: &Path, overwrite: bool) -> anyhow::Result<PathBuf> {
    if target.exists() && !overwrite {
        anyhow::bail!(
            "{} already exists\n  hint: pass --force to replace it, or choose another --out",
            target.display()
        );
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if temp.exists() {
        std::fs::remove_dir_all(&temp)?;
    }
    std::fs::create_dir_all(&temp)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", temp.display()))?;
    Ok(temp)
}

impl DatasetWriter {
    /// `overwrite` replaces an existing dataset at `target`; otherwise an
    /// existing one is an error, so a typo cannot destroy data.
    pub fn create(target: &Path, overwrite: bool) -> anyhow::Result<DatasetWriter> {
        let temp = begin_staging(target, overwrite)?;
        Ok(DatasetWriter {
            target: target.to_path_buf(),
            temp,
            current: None,
            parts: 0,
            rows: 0,
            inputs: InputSnapshot::default(),
            finished: false,
        })
    }

    /// Checks `inputs` again just before the output moves into place: a
    /// file changed meanwhile fails `finish`, naming it, and nothing is
    /// left at the target ([`InputSnapshot`]).
    pub fn guard_inputs(&mut self, inputs: InputSnapshot) {
        self.inputs.add(inputs);
    }

    pub fn write_rows<T: TableRow>(&mut self, rows: &[T]) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = T::to_batch(rows)?;
        self.write_batch(&batch)
    }

    pub fn write_batch(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let rotate = match &self.current {
            None => true,
            Some((_, schema, rows)) => *schema != batch.schema() || *rows >= PART_FILE_ROWS,
        };
        if rotate {
            self.close_part()?;
            let path = self.temp.join(format!("part-{:05}.parquet", self.parts));
            let file = File::create(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build();
            let writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
            self.current = Some((writer, batch.schema(), 0));
            self.parts += 1;
        }
        let (writer, _, rows) = self.current.as_mut().expect("opened above");
        // A full disk or a file size limit shows here: name the file.
        writer
            .write(batch)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.temp.display()))?;
        *rows += batch.num_rows();
        self.rows += batch.num_rows();
        Ok(())
    }

    fn close_part(&mut self) -> anyhow::Result<()> {
        if let Some((writer, _, _)) = self.current.take() {
            writer
                .close()
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.temp.display()))?;
        }
        Ok(())
    }

    /// Closes the last part and moves the dataset into place. Returns the rows written.
    pub fn finish<T: TableRow>(mut self) -> anyhow::Result<usize> {
        if self.parts == 0 {
            // An empty dataset is still a dataset: one file with the schema.
            let batch = T::to_batch(&[])?;
            self.write_empty(&batch)?;
        }
        self.finish_raw()
    }

    /// [`DatasetWriter::finish`] for a table that is not one of the three
    /// (a review list): at least one batch, possibly empty, must have been written.
    pub fn finish_raw(mut self) -> anyhow::Result<usize> {
        anyhow::ensure!(
            self.parts > 0,
            "no batch was written to {}",
            self.target.display()
        );
        self.close_part()?;
        self.inputs.check_unchanged()?;
        move_into_place(&self.temp, &self.target)?;
        self.finished = true;
        Ok(self.rows)
    }

    fn write_empty(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let path = self.temp.join("part-00000.parquet");
        let writer = ArrowWriter::try_new(File::create(&path)?, batch.schema(), None)?;
        writer.close()?;
        self.parts = 1;
        Ok(())
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.current.take();
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

/// Moves the finished staging directory `staging` to `target`, replacing
/// what is there without ever leaving a mix of old and new, or nothing: the
/// old output goes aside by a rename, the new one is renamed into place (the
/// old one put back if that fails), and only then is the old one removed.
/// Removing it can fail (--force over a read-only directory): the new
/// output is in place by then, so that is a warning naming what is left.
pub fn move_into_place(staging: &Path, target: &Path) -> anyhow::Result<()> {
    let old = staging.with_extension("old");
    let replacing = target.exists();
    if replacing {
        std::fs::rename(target, &old)
            .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", target.display()))?;
    }
    if let Err(e) = std::fs::rename(staging, target) {
        if replacing {
            let _ = std::fs::rename(&old, target);
        }
        anyhow::bail!(
            "cannot move {} to {}: {e}",
            staging.display(),
            target.display()
        );
    }
    if replacing && let Err(e) = std::fs::remove_dir_all(&old) {
        eprintln!(
            "warning: {} is replaced, but its old contents are left at {}: {e}",
            target.display(),
            old.display()
        );
    }
    Ok(())
}

/// Writes a small file (JSON, Markdown) atomically: temporary name, then rename.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&temp, contents)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", temp.display()))?;
    std::fs::rename(&temp, path).map_err(|e| {
        anyhow::anyhow!("cannot move {} to {}: {e}", temp.display(), path.display())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tables::{Annotation, Turn};

    #[test]
    fn move_into_place_replaces_whole_or_keeps_the_old_output() {
        let tmp = tempfile::tempdir().unwrap();
        let (staging, target) = (tmp.path().join(".out.tmp-1"), tmp.path().join("out"));
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("old.txt"), b"old").unwrap();
        // Nothing to move (the rename fails): the old output stays.
        let err = move_into_place(&staging, &target).unwrap_err().to_string();
        assert!(err.contains("cannot move"), "{err}");
        assert_eq!(std::fs::read(target.join("old.txt")).unwrap(), b"old");
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("new.txt"), b"new").unwrap();
        move_into_place(&staging, &target).unwrap();
        assert!(!target.join("old.txt").exists() && !staging.exists());
        assert_eq!(std::fs::read(target.join("new.txt")).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only out is left");
    }

    fn turn(dialogue: &str, index: i32) -> Turn {
        Turn {
            dialogue_id: dialogue.into(),
            turn_index: index,
            user_utterance: "play jazz".into(),
            system_response: "Playing jazz.".into(),
            ..Turn::default()
        }
    }

    fn write_part<T: TableRow>(path: &Path, rows: &[T]) {
        let batch = T::to_batch(rows).unwrap();
        let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None)
            .expect("writer");
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn a_key_repeated_in_another_part_file_is_an_error_naming_both_rows() {
        let tmp = tempfile::tempdir().unwrap();
        write_part(
            &tmp.path().join("a.parquet"),
            &[turn("d1", 0), turn("d1", 1)],
        );
        write_part(
            &tmp.path().join("b.parquet"),
            &[turn("d2", 0), turn("d1", 1)],
        );
        let error = read_table::<Turn>(tmp.path()).expect_err("duplicate refused");
        let text = error.to_string();
        assert!(
            text.contains("1 invalid row(s) in the turns table"),
            "{text}"
        );
        assert!(
            text.contains(
                "b.parquet: row 1 (dialogue d1): duplicate key (turn_index 1); first seen in"
            ) && text.contains("a.parquet row 1"),
            "{text}"
        );
    }

    #[test]
    fn a_duplicate_names_the_file_and_row_of_its_first_sighting_files_back() {
        let tmp = tempfile::tempdir().unwrap();
        write_part(
            &tmp.path().join("a.parquet"),
            &[turn("d1", 0), turn("d2", 0)],
        );
        write_part(&tmp.path().join("b.parquet"), &[turn("d3", 0)]);
        write_part(
            &tmp.path().join("c.parquet"),
            &[turn("d1", 1), turn("d2", 0)],
        );
        let text = read_table::<Turn>(tmp.path()).err().unwrap().to_string();
        assert!(
            text.contains("c.parquet: row 1 (dialogue d2): duplicate key (turn_index 0)")
                && text.contains("a.parquet row 1"),
            "{text}"
        );
        assert!(
            text.contains("1 invalid row(s)"),
            "d1 turn 1 is new: {text}"
        );
    }

    #[test]
    fn a_scattered_dialogue_is_checked_whole_and_each_duplicate_named_once() {
        let tmp = tempfile::tempdir().unwrap();
        // d1 is read, then d2, then d1 again: its turn 0 repeats across the
        // runs and its turn 1 within the second run.
        write_part(
            &tmp.path().join("a.parquet"),
            &[turn("d1", 0), turn("d2", 0), turn("d1", 1), turn("d1", 1)],
        );
        write_part(&tmp.path().join("b.parquet"), &[turn("d1", 0)]);
        let text = read_table::<Turn>(tmp.path()).err().unwrap().to_string();
        assert!(text.contains("2 invalid row(s)"), "{text}");
        assert!(
            text.contains("a.parquet: row 3 (dialogue d1): duplicate key (turn_index 1)")
                && text.contains("a.parquet row 2"),
            "{text}"
        );
        assert!(
            text.contains("b.parquet: row 0 (dialogue d1): duplicate key (turn_index 0)")
                && text.contains("a.parquet row 0"),
            "{text}"
        );
        assert!(
            text.find("a.parquet: row 3") < text.find("b.parquet: row 0"),
            "in reading order: {text}"
        );
        // Scattered without a repeated key: read whole, no error.
        write_part(
            &tmp.path().join("b.parquet"),
            &[turn("d1", 2), turn("d2", 1)],
        );
        std::fs::remove_file(tmp.path().join("a.parquet")).unwrap();
        write_part(
            &tmp.path().join("a.parquet"),
            &[turn("d1", 0), turn("d2", 0), turn("d1", 1)],
        );
        assert_eq!(read_table::<Turn>(tmp.path()).unwrap().0.len(), 5);
    }

    #[test]
    fn dialogues_read_together_are_never_scattered() {
        let tmp = tempfile::tempdir().unwrap();
        // d2 runs on from the end of one part file into the next.
        write_part(
            &tmp.path().join("a.parquet"),
            &[turn("d1", 0), turn("d1", 1), turn("d2", 0)],
        );
        write_part(
            &tmp.path().join("b.parquet"),
            &[turn("d2", 1), turn("d3", 0)],
        );
        let mut keys = KeyIndex::default();
        stream_rows::<Turn, DataError>(tmp.path(), |decoded| {
            for (place, row) in decoded.rows {
                assert!(keys.observe(&place, &row).is_none());
            }
            Ok(())
        })
        .unwrap();
        assert!(keys.scattered.is_empty());
        assert_eq!(keys.closed.len(), 2, "d1 and d2 closed, d3 open");
    }

    #[test]
    fn warnings_are_counted_and_the_first_few_named() {
        let tmp = tempfile::tempdir().unwrap();
        let mut silent = turn("d1", 1);
        silent.user_utterance = String::new();
        write_part(&tmp.path().join("a.parquet"), &[turn("d1", 0), silent]);
        write_part::<Turn>(&tmp.path().join("b.parquet"), &[]);
        let (rows, count) = read_table_counted::<Turn>(tmp.path()).unwrap();
        assert_eq!(
            (rows.len(), count),
            (2, 2),
            "both rows kept, both warnings counted"
        );
        let (_, warnings) = read_table::<Turn>(tmp.path()).unwrap();
        let text = read_warning_text(tmp.path(), "turns", &warnings).unwrap();
        assert!(
            text.starts_with(&format!(
                "warning: {}: 2 non-fatal problem(s) in the turns table",
                tmp.path().display()
            )),
            "{text}"
        );
        assert!(
            text.contains("[empty_utterance]") && text.contains("[empty_table]"),
            "{text}"
        );
        assert!(!text.contains("more"), "{text}");
        let many: Vec<Issue> = std::iter::repeat_n(warnings[0].clone(), 5).collect();
        let text = read_warning_text(tmp.path(), "turns", &many).unwrap();
        assert_eq!(text.matches("[empty_utterance]").count(), WARNINGS_SHOWN);
        assert!(text.contains("... and 2 more"), "{text}");
        assert!(read_warning_text(tmp.path(), "turns", &[]).is_none());
    }

    #[test]
    fn annotators_are_part_of_the_annotations_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.parquet");
        let by = |annotator: &str| Annotation {
            dialogue_id: "d1".into(),
            annotator_id: annotator.into(),
            ..Annotation::default()
        };
        write_part(&path, &[by("a1"), by("a2")]);
        assert_eq!(read_table::<Annotation>(&path).unwrap().0.len(), 2);
        write_part(&path, &[by("a1"), by("a2"), by("a1")]);
        let text = read_table::<Annotation>(&path).err().unwrap().to_string();
        assert!(
            text.contains("row 2 (dialogue d1): duplicate key (turn_index 0, annotator a1)"),
            "{text}"
        );
    }

    #[test]
    fn values_out_of_range_stop_a_stage_reading_the_table() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.parquet");
        let mut bad = turn("d1", 1);
        bad.asr_confidence = Some(f32::NAN);
        write_part(&path, &[turn("d1", 0), bad]);
        let text = read_table::<Turn>(&path).err().unwrap().to_string();
        assert!(
            text.contains("row 1 (dialogue d1), column `asr_confidence`: value NaN outside [0, 1]"),
            "{text}"
        );
    }

    mod round_trip {
        use proptest::option::of;
        use proptest::prelude::*;

        use super::super::*;
        use crate::data::tables::{
            Annotation, FailurePoint, Label, LabelledSlotSpan, SlotSpan, Turn,
        };

        fn probability() -> impl Strategy<Value = Option<f32>> {
            of(0.0f32..=1.0)
        }

        /// Rows with unique keys: row i is turn i of its dialogue.
        fn keyed<T: std::fmt::Debug>(
            row: impl Strategy<Value = T>,
            set_key: fn(&mut T, String, i32),
        ) -> impl Strategy<Value = Vec<T>> {
            ("\\PC{0,8}", proptest::collection::vec(row, 0..20)).prop_map(
                move |(prefix, mut rows)| {
                    for (i, row) in rows.iter_mut().enumerate() {
                        set_key(row, format!("{prefix}{}", i % 3), (i / 3) as i32);
                    }
                    rows
                },
            )
        }

        fn turns() -> impl Strategy<Value = Vec<Turn>> {
            let texts = (
                any::<String>(),
                any::<String>(),
                of(any::<String>()),
                of("[a-z_]{0,6}"),
            );
            let numbers = (
                of(any::<i64>()),
                probability(),
                probability(),
                of(any::<bool>()),
                of(-1i8..=1),
            );
            let turn = (texts, numbers).prop_map(
                |((user, system, device, domain), (ts, asr, nlu, barge, feedback))| Turn {
                    timestamp_us: ts,
                    user_utterance: user,
                    system_response: system,
                    device_type: device,
                    domain,
                    asr_confidence: asr,
                    nlu_confidence: nlu,
                    barge_in: barge,
                    explicit_feedback: feedback,
                    ..Turn::default()
                },
            );
            let embeddings = (any::<bool>(), proptest::collection::vec(-1e6f32..1e6, 1..4));
            (
                keyed(turn, |t, d, i| {
                    t.dialogue_id = d;
                    t.turn_index = i;
                }),
                embeddings,
            )
                .prop_map(|(mut rows, (with_vectors, vector))| {
                    // One vector length per table, as the schema requires.
                    for (i, row) in rows.iter_mut().enumerate() {
                        row.audio_embedding = (with_vectors && i % 2 == 0).then(|| vector.clone());
                    }
                    rows
                })
        }

        fn span() -> impl Strategy<Value = (String, i32, i32)> {
            ("\\PC{1,6}", 0i32..1000, 1i32..50)
                .prop_map(|(slot, start, len)| (slot, start, start + len))
        }

        fn annotations() -> impl Strategy<Value = Vec<Annotation>> {
            let spans = of(proptest::collection::vec(span(), 0..3));
            let failure = of(proptest::sample::select(FailurePoint::ALL.to_vec()));
            let row = (
                "\\PC{1,4}",
                of(0i32..50),
                of(any::<bool>()),
                of(any::<String>()),
                spans,
                failure,
                of(any::<String>()),
            )
                .prop_map(
                    |(annotator, goal, success, intent, spans, failure, context)| Annotation {
                        annotator_id: annotator,
                        goal_id: goal,
                        goal_success: success,
                        intent,
                        slots: spans.map(|s| {
                            s.into_iter()
                                .map(|(slot, start, end)| SlotSpan { slot, start, end })
                                .collect()
                        }),
                        failure_point: failure.map(|f| f.as_str().to_string()),
                        context,
                        ..Annotation::default()
                    },
                );
            keyed(row, |a, d, i| {
                a.dialogue_id = d;
                a.turn_index = i;
            })
        }

        fn labels() -> impl Strategy<Value = Vec<Label>> {
            let spans = of(proptest::collection::vec(
                (span(), any::<String>(), 0.0f32..=1.0),
                0..3,
            ));
            let probabilities = (
                probability(),
                probability(),
                probability(),
                probability(),
                probability(),
            );
            let rest = (
                of(0i32..50),
                of(any::<bool>()),
                of(any::<String>()),
                spans,
                of(proptest::sample::select(FailurePoint::ALL.to_vec())),
                any::<String>(),
                any::<String>(),
            );
            let row = (probabilities, rest).prop_map(
                |(
                    (boundary, success_p, intent_p, slots_p, failure_p),
                    (goal, success, intent, spans, failure, model, run),
                )| Label {
                    goal_id: goal,
                    goal_boundary_prob: boundary,
                    goal_success: success,
                    goal_success_prob: success_p,
                    intent,
                    intent_prob: intent_p,
                    slots: spans.map(|s| {
                        s.into_iter()
                            .map(|((slot, start, end), text, probability)| LabelledSlotSpan {
                                slot,
                                start,
                                end,
                                text,
                                probability,
                            })
                            .collect()
                    }),
                    slots_prob: slots_p,
                    failure_point: failure.map(|f| f.as_str().to_string()),
                    failure_point_prob: failure_p,
                    model_id: model,
                    run_id: run,
                    ..Label::default()
                },
            );
            keyed(row, |l, d, i| {
                l.dialogue_id = d;
                l.turn_index = i;
            })
        }

        /// Written as a dataset and read back: the same rows, in order.
        fn survives<T: TableRow + PartialEq + std::fmt::Debug>(
            rows: &[T],
        ) -> Result<(), TestCaseError> {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("table");
            let mut writer = DatasetWriter::create(&path, false).unwrap();
            writer.write_rows(rows).unwrap();
            prop_assert_eq!(writer.finish::<T>().unwrap(), rows.len());
            let (back, _) = read_table::<T>(&path).unwrap();
            prop_assert_eq!(back, rows);
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn turns_survive_parquet(rows in turns()) {
                survives(&rows)?;
            }

            #[test]
            fn annotations_survive_parquet(rows in annotations()) {
                survives(&rows)?;
            }

            #[test]
            fn labels_survive_parquet(rows in labels()) {
                survives(&rows)?;
            }
        }
    }

    mod duplicate_keys {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever the order of the rows, the index of open dialogues
            /// plus the second pass over scattered ones refuses exactly the
            /// rows whose key was read before.
            #[test]
            fn every_repeated_key_is_found_in_any_order(
                keys in prop::collection::vec((0u8..4, 0i32..3), 1..24),
                split in 0usize..24,
            ) {
                let tmp = tempfile::tempdir().unwrap();
                let rows: Vec<Turn> = keys.iter().map(|(d, t)| turn(&format!("d{d}"), *t)).collect();
                let split = split.min(rows.len());
                write_part(&tmp.path().join("a.parquet"), &rows[..split]);
                write_part(&tmp.path().join("b.parquet"), &rows[split..]);
                let mut seen = std::collections::HashSet::new();
                let repeated = keys.iter().filter(|k| !seen.insert(**k)).count();
                match read_table::<Turn>(tmp.path()) {
                    Ok((back, _)) => prop_assert_eq!((repeated, back.len()), (0, rows.len())),
                    Err(e) => {
                        let text = e.to_string();
                        let count = format!("{repeated} invalid row(s)");
                        prop_assert!(text.contains(&count), "expected {}: {}", count, text);
                    }
                }
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn part_files_whose_names_are_not_utf8_are_read_not_skipped() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        write_part(&tmp.path().join("part-0.parquet"), &[turn("d1", 0)]);
        // Latin-1 "é" (0xE9) alone is not UTF-8.
        let name = std::ffi::OsStr::from_bytes(b"part-caf\xe9.parquet");
        write_part(&tmp.path().join(name), &[turn("d2", 0), turn("d2", 1)]);
        assert_eq!(part_files(tmp.path()).unwrap().len(), 2);
        let (rows, _) = read_table::<Turn>(tmp.path()).unwrap();
        assert_eq!(rows.len(), 3);
    }
}
