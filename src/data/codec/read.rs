//! Reading columns of whatever compatible Arrow type into Rust values.
//!
//! Reading accepts the types other tools write for the same data (large
//! strings, int64 indices, float64 confidences, plain lists for vectors) and
//! names the column and the type found when it cannot.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};

use crate::data::issues::DataError;
use crate::data::schema::{ColumnType, TableSchema};

/// Decodes one record batch column by column against a table schema.
pub struct BatchColumns<'a> {
    batch: &'a RecordBatch,
    schema: &'static TableSchema,
    /// The table named in messages about a missing column.
    table: &'static str,
    file: &'a Arc<str>,
}

impl<'a> BatchColumns<'a> {
    pub fn new(
        batch: &'a RecordBatch,
        schema: &'static TableSchema,
        table: &'static str,
        file: &'a Arc<str>,
    ) -> BatchColumns<'a> {
        BatchColumns {
            batch,
            schema,
            table,
            file,
        }
    }

    /// The same batch, with a missing column reported as one of `table`'s:
    /// columns a row type adds to a schema (synth's) are not the schema's.
    pub fn named(&self, table: &'static str) -> BatchColumns<'a> {
        BatchColumns { table, ..*self }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(&**self.file)
    }

    /// The column, or None if the schema lets it be absent. A column the
    /// schema does not know is one a row type adds, and required.
    fn column(&self, name: &str) -> Result<Option<&'a ArrayRef>, DataError> {
        let required = self.schema.column(name).is_none_or(|spec| spec.required);
        match self.batch.column_by_name(name) {
            Some(column) => Ok(Some(column)),
            None if !required => Ok(None),
            None => Err(DataError::missing_column(
                &self.path(),
                self.table,
                name,
                self.batch,
            )),
        }
    }

    /// A string column as Utf8, for the dialogue ids that locate row issues.
    pub fn utf8(&self, name: &str) -> Result<Option<StringArray>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(None);
        };
        let utf8 = self.cast(name, column, &DataType::Utf8)?;
        Ok(Some(utf8.as_string::<i32>().clone()))
    }

    fn wrong_type(&self, name: &str, expected: ColumnType, found: &DataType) -> DataError {
        DataError::WrongType {
            path: self.path(),
            column: name.to_string(),
            expected: expected.describe(),
            found: found.to_string(),
        }
    }

    fn cast(&self, name: &str, column: &ArrayRef, to: &DataType) -> Result<ArrayRef, DataError> {
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        cast_with_options(column, to, &options).map_err(|e| DataError::BadColumn {
            path: self.path(),
            column: name.to_string(),
            detail: format!("cannot convert to {to}: {e}"),
        })
    }

    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        let ok = match column.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
            DataType::Dictionary(_, value) => {
                matches!(
                    **value,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            }
            _ => false,
        };
        if !ok {
            return Err(self.wrong_type(name, ColumnType::Utf8, column.data_type()));
        }
        let utf8 = self.cast(name, column, &DataType::Utf8)?;
        Ok(utf8
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    pub fn ints(&self, name: &str, expected: ColumnType) -> Result<Vec<Option<i64>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        if !column.data_type().is_integer() {
            return Err(self.wrong_type(name, expected, column.data_type()));
        }
        let wide = self.cast(name, column, &DataType::Int64)?;
        Ok(wide.as_primitive::<Int64Type>().iter().collect())
    }

    pub fn floats(&self, name: &str) -> Result<Vec<Option<f32>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        if !column.data_type().is_floating() {
            return Err(self.wrong_type(name, ColumnType::Float32, column.data_type()));
        }
        let narrow = self.cast(name, column, &DataType::Float32)?;
        Ok(narrow.as_primitive::<Float32Type>().iter().collect())
    }

    pub fn bools(&self, name: &str) -> Result<Vec<Option<bool>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        match column.data_type() {
            DataType::Boolean => Ok(column.as_boolean().iter().collect()),
            other => Err(self.wrong_type(name, ColumnType::Bool, other)),
        }
    }

    pub fn timestamps(&self, name: &str) -> Result<Vec<Option<i64>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        let DataType::Timestamp(_, zone) = column.data_type() else {
            return Err(self.wrong_type(name, ColumnType::Timestamp, column.data_type()));
        };
        // Only the unit changes: stored values are UTC instants (naive ones
        // are read as UTC), so the zone is kept rather than converted, which
        // would need a time-zone database for names ("UTC" from "+00:00").
        let target = DataType::Timestamp(TimeUnit::Microsecond, zone.clone());
        let micros = self.cast(name, column, &target)?;
        Ok(micros
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect())
    }

    /// A fixed-length float vector per row, from a fixed-size list or from a
    /// plain list whose rows all have the same length (what pandas writes).
    pub fn float_vectors(&self, name: &str) -> Result<Vec<Option<Vec<f32>>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        let bad = || self.wrong_type(name, ColumnType::FloatVector, column.data_type());
        let (values, offsets) = match column.data_type() {
            DataType::FixedSizeList(_, len) => {
                let list = column.as_fixed_size_list();
                let len = *len as usize;
                let offsets = (0..=list.len()).map(|i| i * len).collect();
                (list.values().clone(), offsets)
            }
            _ => list_parts(column).ok_or_else(bad)?,
        };
        if !values.data_type().is_floating() {
            return Err(bad());
        }
        let values = self.cast(name, &values, &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        let mut out = Vec::with_capacity(column.len());
        let mut expected_len = None;
        for row in 0..column.len() {
            if column.is_null(row) {
                out.push(None);
                continue;
            }
            let (start, end) = (offsets[row], offsets[row + 1]);
            if *expected_len.get_or_insert(end - start) != end - start {
                return Err(DataError::BadColumn {
                    path: self.path(),
                    column: name.to_string(),
                    detail: format!(
                        "row {}: vector of length {} where earlier rows have length {}; expected one fixed length",
                        row,
                        end - start,
                        expected_len.unwrap_or(0)
                    ),
                });
            }
            if (start..end).any(|i| values.is_null(i)) {
                return Err(DataError::BadColumn {
                    path: self.path(),
                    column: name.to_string(),
                    detail: format!("row {row}: null element inside the vector"),
                });
            }
            out.push(Some((start..end).map(|i| values.value(i) as f32).collect()));
        }
        Ok(out)
    }

    /// Slot span lists; `LabelledSlotSpans` reads the labelled form (text, probability).
    pub fn span_lists(
        &self,
        name: &str,
        expected: ColumnType,
    ) -> Result<Vec<Option<Vec<RawSpan>>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        let bad = || self.wrong_type(name, expected, column.data_type());
        let (items, offsets) = list_parts(column).ok_or_else(bad)?;
        let DataType::Struct(fields) = items.data_type() else {
            return Err(bad());
        };
        let items = items.as_struct();
        let labelled = expected == ColumnType::LabelledSlotSpans;
        let wanted: &[&str] = if labelled {
            &["slot", "start", "end", "text", "probability"]
        } else {
            &["slot", "start", "end"]
        };
        for field in wanted {
            if fields.find(field).is_none() {
                return Err(bad());
            }
        }
        let sub = |field: &str| items.column_by_name(field).cloned().ok_or_else(bad);
        let field_name = |field: &str| format!("{name}.{field}");
        let slot = self.cast(&field_name("slot"), &sub("slot")?, &DataType::Utf8)?;
        let start = self.cast(&field_name("start"), &sub("start")?, &DataType::Int64)?;
        let end = self.cast(&field_name("end"), &sub("end")?, &DataType::Int64)?;
        let (text, probability) = if labelled {
            (
                Some(self.cast(&field_name("text"), &sub("text")?, &DataType::Utf8)?),
                Some(self.cast(
                    &field_name("probability"),
                    &sub("probability")?,
                    &DataType::Float32,
                )?),
            )
        } else {
            (None, None)
        };
        let (slot, start, end) = (
            slot.as_string::<i32>(),
            start.as_primitive::<Int64Type>(),
            end.as_primitive::<Int64Type>(),
        );
        let mut out = Vec::with_capacity(column.len());
        for row in 0..column.len() {
            if column.is_null(row) {
                out.push(None);
                continue;
            }
            let spans = (offsets[row]..offsets[row + 1])
                .map(|i| RawSpan {
                    slot: (!slot.is_null(i)).then(|| slot.value(i).to_string()),
                    start: (!start.is_null(i)).then(|| start.value(i)),
                    end: (!end.is_null(i)).then(|| end.value(i)),
                    text: text
                        .as_ref()
                        .map(|t| t.as_string::<i32>())
                        .and_then(|t| (!t.is_null(i)).then(|| t.value(i).to_string())),
                    probability: probability
                        .as_ref()
                        .map(|p| p.as_primitive::<Float32Type>())
                        .and_then(|p| (!p.is_null(i)).then(|| p.value(i))),
                })
                .collect();
            out.push(Some(spans));
        }
        Ok(out)
    }
}

/// The values and row offsets of a variable-size list column, or None if
/// the column is not one.
fn list_parts(column: &ArrayRef) -> Option<(ArrayRef, Vec<usize>)> {
    match column.data_type() {
        DataType::List(_) => {
            let list = column.as_list::<i32>();
            let offsets = list.offsets().iter().map(|&o| o as usize).collect();
            Some((list.values().clone(), offsets))
        }
        DataType::LargeList(_) => {
            let list = column.as_list::<i64>();
            let offsets = list.offsets().iter().map(|&o| o as usize).collect();
            Some((list.values().clone(), offsets))
        }
        _ => None,
    }
}

/// A span as read, before its fields are known to be present and in range.
#[derive(Clone)]
pub struct RawSpan {
    pub slot: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub text: Option<String>,
    pub probability: Option<f32>,
}
