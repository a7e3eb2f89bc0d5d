//! The column kinds of schemas/*.json, each between Rust values and one
//! canonical Arrow type. A kind implements [`Column`] once per Rust type it
//! holds: `Column<String>` for a non-null column, `Column<Option<String>>`
//! for a nullable one.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int8Array, Int32Array, TimestampMicrosecondArray,
};
use arrow::error::ArrowError;

use super::read::{BatchColumns, RawSpan};
use super::write::{float_vectors, span_lists, strings};
use super::{Column, Kind, RowCheck};
use crate::data::issues::DataError;
use crate::data::schema::ColumnType;
use crate::data::tables::{LabelledSlotSpan, SlotSpan};

type Written = Result<Option<ArrayRef>, ArrowError>;

/// utf8: strings of any Arrow string type, read as UTF-8.
pub struct Utf8;
/// int8: any integer type whose values fit.
pub struct Int8;
/// int32: any integer type whose values fit.
pub struct Int32;
/// float32 (float64 is read too).
pub struct Float32;
pub struct Bool;
/// A timestamp in microseconds since the Unix epoch, UTC (any unit is read).
pub struct Timestamp;
/// fixed_size_list<float32>, written only when some row has a vector.
pub struct FloatVector;
/// list<slot_span>.
pub struct SlotSpans;
/// list<labelled_slot_span>: spans with their text and probability.
pub struct LabelledSlotSpans;

impl Kind for Utf8 {
    type Raw = Option<String>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.strings(name)
    }
}

impl Column<String> for Utf8 {
    const NULLABLE: bool = false;
    fn write(_: &str, values: &[&String]) -> Written {
        Ok(Some(strings(values.iter().map(|v| Some(v.as_str())))))
    }
    fn check(raw: Self::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<String> {
        row.required(name, raw)
    }
}

impl Column<Option<String>> for Utf8 {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<String>]) -> Written {
        Ok(Some(strings(values.iter().map(|v| v.as_deref()))))
    }
    fn check(raw: Self::Raw, _: &mut RowCheck<'_>, _: &str) -> Option<Option<String>> {
        Some(raw)
    }
}

impl Kind for Int8 {
    type Raw = Option<i64>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.ints(name, ColumnType::Int8)
    }
}

impl Column<Option<i8>> for Int8 {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<i8>]) -> Written {
        Ok(Some(Arc::new(Int8Array::from(
            values.iter().map(|v| **v).collect::<Vec<_>>(),
        ))))
    }
    fn check(raw: Self::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<Option<i8>> {
        row.int(name, raw)
    }
}

impl Kind for Int32 {
    type Raw = Option<i64>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.ints(name, ColumnType::Int32)
    }
}

impl Column<i32> for Int32 {
    const NULLABLE: bool = false;
    fn write(_: &str, values: &[&i32]) -> Written {
        Ok(Some(Arc::new(Int32Array::from_iter_values(
            values.iter().map(|v| **v),
        ))))
    }
    fn check(raw: Self::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<i32> {
        row.required_int(name, raw)
    }
}

impl Column<Option<i32>> for Int32 {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<i32>]) -> Written {
        Ok(Some(Arc::new(Int32Array::from(
            values.iter().map(|v| **v).collect::<Vec<_>>(),
        ))))
    }
    fn check(raw: Self::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<Option<i32>> {
        row.int(name, raw)
    }
}

impl Kind for Float32 {
    type Raw = Option<f32>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.floats(name)
    }
}

impl Column<Option<f32>> for Float32 {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<f32>]) -> Written {
        Ok(Some(Arc::new(
            values.iter().map(|v| **v).collect::<Float32Array>(),
        )))
    }
    fn check(raw: Self::Raw, _: &mut RowCheck<'_>, _: &str) -> Option<Option<f32>> {
        Some(raw)
    }
}

impl Kind for Bool {
    type Raw = Option<bool>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.bools(name)
    }
}

impl Column<bool> for Bool {
    const NULLABLE: bool = false;
    fn write(_: &str, values: &[&bool]) -> Written {
        Ok(Some(Arc::new(
            values.iter().map(|v| Some(**v)).collect::<BooleanArray>(),
        )))
    }
    fn check(raw: Self::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<bool> {
        row.required(name, raw)
    }
}

impl Column<Option<bool>> for Bool {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<bool>]) -> Written {
        Ok(Some(Arc::new(BooleanArray::from(
            values.iter().map(|v| **v).collect::<Vec<_>>(),
        ))))
    }
    fn check(raw: Self::Raw, _: &mut RowCheck<'_>, _: &str) -> Option<Option<bool>> {
        Some(raw)
    }
}

impl Kind for Timestamp {
    type Raw = Option<i64>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.timestamps(name)
    }
}

impl Column<Option<i64>> for Timestamp {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<i64>]) -> Written {
        let micros =
            TimestampMicrosecondArray::from(values.iter().map(|v| **v).collect::<Vec<_>>());
        Ok(Some(Arc::new(micros.with_timezone("UTC"))))
    }
    fn check(raw: Self::Raw, _: &mut RowCheck<'_>, _: &str) -> Option<Option<i64>> {
        Some(raw)
    }
}

impl Kind for FloatVector {
    type Raw = Option<Vec<f32>>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.float_vectors(name)
    }
}

impl Column<Option<Vec<f32>>> for FloatVector {
    const NULLABLE: bool = true;
    /// Left out when no row has a vector: the length is not known then.
    fn write(name: &str, values: &[&Option<Vec<f32>>]) -> Written {
        let Some(dim) = values.iter().find_map(|v| v.as_ref().map(Vec::len)) else {
            return Ok(None);
        };
        float_vectors(name, values.iter().map(|v| v.as_deref()), dim).map(Some)
    }
    fn check(raw: Self::Raw, _: &mut RowCheck<'_>, _: &str) -> Option<Option<Vec<f32>>> {
        Some(raw)
    }
}

impl Kind for SlotSpans {
    type Raw = Option<Vec<RawSpan>>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.span_lists(name, ColumnType::SlotSpans)
    }
}

impl Column<Option<Vec<SlotSpan>>> for SlotSpans {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<Vec<SlotSpan>>]) -> Written {
        let rows = values.iter().map(|spans| {
            let parts = spans.as_ref()?.iter();
            Some(
                parts
                    .map(|s| (s.slot.as_str(), s.start, s.end, None))
                    .collect(),
            )
        });
        span_lists(rows, false).map(Some)
    }
    fn check(raw: Self::Raw, row: &mut RowCheck<'_>, name: &str) -> Option<Option<Vec<SlotSpan>>> {
        let Some(spans) = raw else {
            return Some(None);
        };
        let mut out = Vec::with_capacity(spans.len());
        for (i, span) in spans.into_iter().enumerate() {
            let (slot, start, end) = span_shape(i, &span, row, name)?;
            out.push(SlotSpan { slot, start, end });
        }
        Some(Some(out))
    }
}

impl Kind for LabelledSlotSpans {
    type Raw = Option<Vec<RawSpan>>;
    fn read(columns: &BatchColumns<'_>, name: &str) -> Result<Vec<Self::Raw>, DataError> {
        columns.span_lists(name, ColumnType::LabelledSlotSpans)
    }
}

impl Column<Option<Vec<LabelledSlotSpan>>> for LabelledSlotSpans {
    const NULLABLE: bool = true;
    fn write(_: &str, values: &[&Option<Vec<LabelledSlotSpan>>]) -> Written {
        let rows = values.iter().map(|spans| {
            let parts = spans.as_ref()?.iter().map(|s| {
                let labelled = Some((s.text.as_str(), s.probability));
                (s.slot.as_str(), s.start, s.end, labelled)
            });
            Some(parts.collect())
        });
        span_lists(rows, true).map(Some)
    }
    fn check(
        raw: Self::Raw,
        row: &mut RowCheck<'_>,
        name: &str,
    ) -> Option<Option<Vec<LabelledSlotSpan>>> {
        let Some(spans) = raw else {
            return Some(None);
        };
        // Every span's shape first, as an unlabelled list, then its label.
        let mut shapes = Vec::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            shapes.push(span_shape(i, span, row, name)?);
        }
        let mut out = Vec::with_capacity(spans.len());
        for ((slot, start, end), span) in shapes.into_iter().zip(spans) {
            let (Some(text), Some(probability)) = (span.text, span.probability) else {
                row.error(
                    "bad_span",
                    name,
                    "a labelled span needs text and probability",
                );
                return None;
            };
            out.push(LabelledSlotSpan {
                slot,
                start,
                end,
                text,
                probability,
            });
        }
        Some(Some(out))
    }
}

/// A span's slot, start and end, present and within int32, or an error.
fn span_shape(
    i: usize,
    span: &RawSpan,
    row: &mut RowCheck<'_>,
    name: &str,
) -> Option<(String, i32, i32)> {
    let fits = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
    match (&span.slot, fits(span.start), fits(span.end)) {
        (Some(slot), Some(start), Some(end)) => Some((slot.clone(), start, end)),
        _ => {
            row.error(
                "bad_span",
                name,
                format!("span {i}: slot, start and end must be present and fit int32"),
            );
            None
        }
    }
}
