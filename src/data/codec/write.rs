//! Building Arrow columns from Rust values, in the canonical types of
//! schemas/*.json.

use std::sync::Arc;

use arrow::array::StringArray;
use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int32Array, ListArray, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;

use crate::data::schema::{float_vector_type, labelled_slot_span_fields, slot_span_fields};

pub fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// One fixed-size list column of `dim` floats per row; a vector of another
/// length is an error naming the column.
pub fn float_vectors<'a>(
    name: &str,
    values: impl Iterator<Item = Option<&'a [f32]>>,
    dim: usize,
) -> Result<ArrayRef, ArrowError> {
    let mut flat = Vec::new();
    let mut valid = Vec::new();
    for value in values {
        match value {
            Some(v) if v.len() == dim => flat.extend_from_slice(v),
            Some(v) => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "{name} of length {} in a dataset of length {dim}",
                    v.len()
                )));
            }
            None => flat.extend(std::iter::repeat_n(0.0, dim)),
        }
        valid.push(value.is_some());
    }
    let DataType::FixedSizeList(field, _) = float_vector_type(dim as i32) else {
        unreachable!("float_vector_type builds a fixed-size list")
    };
    Ok(Arc::new(FixedSizeListArray::try_new(
        field,
        dim as i32,
        Arc::new(Float32Array::from(flat)),
        Some(NullBuffer::from(valid)),
    )?))
}

/// (slot, start, end, Some((text, probability)) for labelled spans).
pub type SpanParts<'a> = (&'a str, i32, i32, Option<(&'a str, f32)>);

/// A list of span structs per row; `labelled` adds the text and probability fields.
pub fn span_lists<'a>(
    rows: impl Iterator<Item = Option<Vec<SpanParts<'a>>>>,
    labelled: bool,
) -> Result<ArrayRef, ArrowError> {
    let (mut slot, mut start, mut end, mut text, mut probability) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut offsets = vec![0i32];
    let mut valid = Vec::new();
    for row in rows {
        valid.push(row.is_some());
        for (s, b, e, extra) in row.into_iter().flatten() {
            slot.push(s);
            start.push(b);
            end.push(e);
            if let Some((t, p)) = extra {
                text.push(t);
                probability.push(p);
            }
        }
        offsets.push(slot.len() as i32);
    }
    let mut children: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(slot)),
        Arc::new(Int32Array::from(start)),
        Arc::new(Int32Array::from(end)),
    ];
    let fields = if labelled {
        children.push(Arc::new(StringArray::from(text)));
        children.push(Arc::new(Float32Array::from(probability)));
        labelled_slot_span_fields()
    } else {
        slot_span_fields()
    };
    let items = StructArray::try_new(fields.clone(), children, None)?;
    let item_field = Arc::new(Field::new("item", DataType::Struct(fields), false));
    Ok(Arc::new(ListArray::try_new(
        item_field,
        OffsetBuffer::new(offsets.into()),
        Arc::new(items),
        Some(NullBuffer::from(valid)),
    )?))
}
