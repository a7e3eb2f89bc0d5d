//! What can be wrong with input data, located precisely enough to fix it.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A fatal problem with an input dataset: the stage cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error(
        "{path}: directory holds no .parquet files (hidden files and names starting with '_' are ignored)"
    )]
    NoPartFiles { path: PathBuf },
    #[error("{path}: empty file (0 bytes); expected a Parquet file")]
    EmptyFile { path: PathBuf },
    #[error("{path}: not a Parquet file ({detail})")]
    NotParquet { path: PathBuf, detail: String },
    #[error(
        "{path}: truncated Parquet file ({detail}); the writer probably died before finishing it"
    )]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: cannot read: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error(
        "{path}: missing column `{column}` required by the {table} schema\n  found columns: {found}\n  hint: see schemas/{table}.json for every column, its type and meaning"
    )]
    MissingColumn {
        path: PathBuf,
        table: &'static str,
        column: String,
        found: String,
    },
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        path: PathBuf,
        column: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: column `{column}`: {detail}")]
    BadColumn {
        path: PathBuf,
        column: String,
        detail: String,
    },
    /// An input in another format (a corpus being imported) that does not
    /// parse or breaks the format's rules; `detail` locates the problem.
    #[error("{path}: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error(
        "{path}: {count} invalid row(s) in the {table} table, first:\n{first}\n  hint: `labelgen validate {path} --table {table}` lists them all"
    )]
    InvalidRows {
        path: PathBuf,
        table: &'static str,
        count: usize,
        first: String,
    },
}

impl DataError {
    /// A required column is absent; the message lists the columns the batch has.
    pub fn missing_column(
        path: &std::path::Path,
        table: &'static str,
        column: &str,
        batch: &arrow::array::RecordBatch,
    ) -> DataError {
        let found: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        DataError::MissingColumn {
            path: path.to_path_buf(),
            table,
            column: column.to_string(),
            found: found.join(", "),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in one place. Errors make a dataset invalid; warnings
/// are counted and reported (an empty utterance is legal, but worth knowing).
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub severity: Severity,
    /// Stable machine-readable kind, e.g. `null_key`, `out_of_range`.
    pub kind: &'static str,
    pub file: String,
    /// Row within the file, counted from 0.
    pub row: Option<usize>,
    pub column: Option<String>,
    pub dialogue_id: Option<String>,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}[{}]: {}", self.kind, self.file)?;
        if let Some(row) = self.row {
            write!(f, ": row {row}")?;
        }
        if let Some(dialogue) = &self.dialogue_id {
            write!(f, " (dialogue {dialogue})")?;
        }
        if let Some(column) = &self.column {
            write!(f, ", column `{column}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a row came from, for messages.
#[derive(Debug, Clone)]
pub struct RowPlace {
    pub file: std::sync::Arc<str>,
    pub row: usize,
}

impl RowPlace {
    pub fn issue(
        &self,
        severity: Severity,
        kind: &'static str,
        column: Option<&str>,
        dialogue_id: Option<&str>,
        message: impl Into<String>,
    ) -> Issue {
        Issue {
            severity,
            kind,
            file: self.file.to_string(),
            row: Some(self.row),
            column: column.map(str::to_string),
            dialogue_id: dialogue_id.map(str::to_string),
            message: message.into(),
        }
    }
}
