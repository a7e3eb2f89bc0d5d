//! One generic mapping between row structs and Arrow record batches.
//!
//! A row type lists its columns once, with [`table_columns!`]: per column the
//! struct field, its kind (one of [`kinds`], the column types of
//! schemas/*.json) and, where it differs from the field's name, the column's
//! name. That one list gives the written schema (column order, Arrow types,
//! nullability), the reading of every compatible Arrow type, and the per-row
//! checks (null in a non-nullable column, integer range, span shape) that
//! validation reports with file, row and column. The field's Rust type
//! decides nullability: `String` is a non-null column, `Option<String>` a
//! nullable one.
//!
//! A new column is its struct field plus one line in that list (and, for
//! the three tables, its entry in schemas/*.json, which a test compares
//! with what is written). A new column type is a marker in [`kinds`] with
//! its [`Kind`] and [`Column`] impls.

pub mod kinds;
mod read;
mod write;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;

pub use read::{BatchColumns, RawSpan};

use super::issues::{DataError, Issue, RowPlace, Severity};
use super::tables::{Decoded, TableRow};

/// How a column kind reads a batch column: one `Raw` value per row, before
/// the per-row checks.
pub trait Kind {
    type Raw;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError>;
}

/// A column kind that holds Rust values of type `V`.
pub trait Column<V>: Kind {
    /// Whether the Arrow field is nullable: true where `V` is an `Option`.
    const NULLABLE: bool;

    /// The Arrow array of the values, or None to leave the column out.
    fn write(name: &str, values: &[&V]) -> Result<Option<ArrayRef>, ArrowError>;

    /// One row's value, or None (with an issue recorded) if it is invalid.
    fn check(raw: Self::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<V>;
}

/// A row struct's columns, in order. Implemented by [`table_columns!`].
pub trait Columns: Sized {
    fn write(rows: &[&Self], out: &mut Vec<(Field, ArrayRef)>) -> Result<(), ArrowError>;

    /// Reads every column of the batch (a missing or mistyped column is an
    /// error, the first in column order) and returns the builder of the next
    /// row, which checks its cells in column order.
    fn read(
        columns: &BatchColumns<'_>,
    ) -> Result<impl FnMut(&mut RowCheck<'_>) -> Option<Self>, DataError>;
}

/// Implements [`Columns`] for a row struct: `field: Kind` per column, in the
/// order they are written, or `field: Kind as "name"` where the column's
/// name is not the field's. A leading `..base: Type named "table",` puts
/// another row type's columns first; a missing column of the rest is then
/// reported as one of `table`'s.
macro_rules! table_columns {
    (
        $row:ty {
            $(..$base:ident : $base_ty:ident named $table:literal,)?
            $($field:ident : $kind:ident $(as $name:literal)?),* $(,)?
        }
    ) => {
        impl $crate::data::codec::Columns for $row {
            fn write(
                rows: &[&Self],
                out: &mut Vec<(::arrow::datatypes::Field, ::arrow::array::ArrayRef)>,
            ) -> Result<(), ::arrow::error::ArrowError> {
                $(<$base_ty as $crate::data::codec::Columns>::write(
                    &rows.iter().map(|r| &r.$base).collect::<Vec<_>>(),
                    out,
                )?;)?
                $($crate::data::codec::write_column::<$crate::data::codec::kinds::$kind, _>(
                    $crate::data::codec::column_name!($field $(, $name)?),
                    &rows.iter().map(|r| &r.$field).collect::<Vec<_>>(),
                    out,
                )?;)*
                Ok(())
            }

            fn read(
                columns: &$crate::data::codec::BatchColumns<'_>,
            ) -> Result<
                impl FnMut(&mut $crate::data::codec::RowCheck<'_>) -> Option<Self>,
                $crate::data::issues::DataError,
            > {
                $(
                    let mut $base = <$base_ty as $crate::data::codec::Columns>::read(columns)?;
                    let columns = &columns.named($table);
                )?
                $(let mut $field = $crate::data::codec::read_column::<
                    $crate::data::codec::kinds::$kind,
                >(columns, $crate::data::codec::column_name!($field $(, $name)?))?;)*
                Ok(move |row: &mut $crate::data::codec::RowCheck<'_>| {
                    // Every column moves on a row, also when an earlier cell rejects it.
                    $(let $field = $field.next();)*
                    $(let $base = $base(row)?;)?
                    Some(Self {
                        $($base,)?
                        $($field: $crate::data::codec::check_cell::<
                            $crate::data::codec::kinds::$kind,
                            _,
                        >(
                            $field?,
                            row,
                            $crate::data::codec::column_name!($field $(, $name)?),
                        )?,)*
                    })
                })
            }
        }
    };
}
pub(crate) use table_columns;

macro_rules! column_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $name:literal) => {
        $name
    };
}
pub(crate) use column_name;

/// Appends one column to `out`, unless its kind leaves it out.
pub fn write_column<K: Column<V>, V>(
    name: &str,
    values: &[&V],
    out: &mut Vec<(Field, ArrayRef)>,
) -> Result<(), ArrowError> {
    if let Some(array) = K::write(name, values)? {
        out.push((
            Field::new(name, array.data_type().clone(), K::NULLABLE),
            array,
        ));
    }
    Ok(())
}

/// One column's raw values, a row at a time.
pub fn read_column<K: Kind>(
    columns: &BatchColumns<'_>,
    name: &str,
) -> Result<std::vec::IntoIter<K::Raw>, DataError> {
    Ok(K::read(columns, name)?.into_iter())
}

/// One row's cell, checked by its kind (called by [`table_columns!`], where
/// the value type comes from the struct field).
pub fn check_cell<K: Column<V>, V>(raw: K::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<V> {
    K::check(raw, row, name)
}

/// A record batch of rows, in the columns their type declares.
pub fn encode<T: Columns>(rows: &[T]) -> Result<RecordBatch, ArrowError> {
    let mut columns = Vec::new();
    T::write(&rows.iter().collect::<Vec<_>>(), &mut columns)?;
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// The rows of one record batch. Rows with a cell that does not decode (a
/// null key, an integer out of range) are left out; those with a value out
/// of its domain (see src/data/checks.rs) are kept. Both are reported as
/// error issues with their row numbers, which every stage stops on.
pub fn decode<T: TableRow>(
    batch: &RecordBatch,
    file: &Arc<str>,
    first_row: usize,
) -> Result<Decoded<T>, DataError> {
    let columns = BatchColumns::new(batch, T::TABLE.schema(), T::TABLE.name(), file);
    let mut build = T::read(&columns)?;
    let dialogue_ids = columns.utf8("dialogue_id")?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut issues = Vec::new();
    for i in 0..batch.num_rows() {
        let mut check = RowCheck {
            place: RowPlace {
                file: file.clone(),
                row: first_row + i,
            },
            dialogue_id: dialogue_ids
                .as_ref()
                .filter(|ids| !ids.is_null(i))
                .map(|ids| ids.value(i)),
            issues: Vec::new(),
        };
        let row = build(&mut check);
        let undecodable = check
            .issues
            .iter()
            .any(|issue| issue.severity == Severity::Error);
        // A row whose cells decode is kept even when a value is out of its
        // domain: the error issue stops every stage, and validate still
        // sees the row's key (no spurious gap or missing turn).
        if let Some(row) = &row
            && !undecodable
        {
            row.check_values(&mut check);
        }
        issues.append(&mut check.issues);
        if let (Some(row), false) = (row, undecodable) {
            rows.push((check.place, row));
        }
    }
    Ok(Decoded { rows, issues })
}

/// Collects one row's problems while it is assembled from its cells.
pub struct RowCheck<'a> {
    place: RowPlace,
    dialogue_id: Option<&'a str>,
    issues: Vec<Issue>,
}

impl RowCheck<'_> {
    /// Records an error in `column` of this row.
    pub fn error(&mut self, kind: &'static str, column: &str, message: impl Into<String>) {
        let issue = self.place.issue(
            Severity::Error,
            kind,
            Some(column),
            self.dialogue_id,
            message,
        );
        self.issues.push(issue);
    }

    /// Records a warning in `column` of this row: counted, the row is used.
    pub fn warning(&mut self, kind: &'static str, column: &str, message: impl Into<String>) {
        let issue = self.place.issue(
            Severity::Warning,
            kind,
            Some(column),
            self.dialogue_id,
            message,
        );
        self.issues.push(issue);
    }

    pub fn required<T>(&mut self, column: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            let kind = if column == "dialogue_id" || column == "turn_index" {
                "null_key"
            } else {
                "null_value"
            };
            self.error(kind, column, "null in a non-nullable column");
        }
        value
    }

    pub fn required_int<T: TryFrom<i64>>(&mut self, column: &str, value: Option<i64>) -> Option<T> {
        let value = self.int(column, value)?;
        self.required(column, value)
    }

    /// An integer that must fit the column's type; out-of-range is an error.
    pub fn int<T: TryFrom<i64>>(&mut self, column: &str, value: Option<i64>) -> Option<Option<T>> {
        match value {
            None => Some(None),
            Some(v) => match T::try_from(v) {
                Ok(v) => Some(Some(v)),
                Err(_) => {
                    self.error(
                        "out_of_range",
                        column,
                        format!("value {v} does not fit the column's integer type"),
                    );
                    None
                }
            },
        }
    }
}
