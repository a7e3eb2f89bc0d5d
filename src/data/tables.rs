//! Typed rows of the three tables and their conversion to and from Arrow.
//!
//! Reading accepts the types other tools write for the same data (large
//! strings, int64 indices, float64 confidences, plain lists for vectors) and
//! names the column and the type found when it cannot.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeListArray, Float32Array, Int8Array,
    Int32Array, ListArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType,
};
use arrow::error::ArrowError;

use super::issues::{DataError, Issue, RowPlace, Severity};
use super::schema::{
    ColumnType, Table, TableSchema, float_vector_type, labelled_slot_span_fields, slot_span_fields,
};

/// The first pipeline stage that failed irrecoverably on a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePoint {
    Correct,
    FalseWake,
    Asr,
    Nlu,
    Entity,
    Result,
    /// Something failed, but the source does not say which stage: a corpus
    /// rated by satisfaction (USS) knows a response was bad, not why.
    Defect,
}

impl FailurePoint {
    /// Every value the tables allow (schemas/annotations.json, labels.json).
    pub const ALL: [FailurePoint; 7] = [
        FailurePoint::Correct,
        FailurePoint::FalseWake,
        FailurePoint::Asr,
        FailurePoint::Nlu,
        FailurePoint::Entity,
        FailurePoint::Result,
        FailurePoint::Defect,
    ];

    /// correct and the pipeline stages: what the simulator produces, and the
    /// classes a model learns unless its training labels also use `defect`.
    pub const PIPELINE: [FailurePoint; 6] = [
        FailurePoint::Correct,
        FailurePoint::FalseWake,
        FailurePoint::Asr,
        FailurePoint::Nlu,
        FailurePoint::Entity,
        FailurePoint::Result,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailurePoint::Correct => "correct",
            FailurePoint::FalseWake => "false_wake",
            FailurePoint::Asr => "asr",
            FailurePoint::Nlu => "nlu",
            FailurePoint::Entity => "entity",
            FailurePoint::Result => "result",
            FailurePoint::Defect => "defect",
        }
    }

    pub fn parse(value: &str) -> Option<FailurePoint> {
        FailurePoint::ALL.into_iter().find(|f| f.as_str() == value)
    }
}

/// One turn of the logs: a user utterance and the system response to it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Turn {
    pub dialogue_id: String,
    pub turn_index: i32,
    /// Microseconds since the Unix epoch, UTC.
    pub timestamp_us: Option<i64>,
    pub user_utterance: String,
    pub system_response: String,
    pub device_type: Option<String>,
    pub device_state: Option<String>,
    pub domain: Option<String>,
    pub nlu_intent: Option<String>,
    pub dialogue_status: Option<String>,
    pub asr_confidence: Option<f32>,
    pub nlu_confidence: Option<f32>,
    pub barge_in: Option<bool>,
    pub explicit_feedback: Option<i8>,
    pub audio_embedding: Option<Vec<f32>>,
}

/// A typed span of a user utterance, UTF-8 byte offsets, end exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SlotSpan {
    pub slot: String,
    pub start: i32,
    pub end: i32,
}

/// One annotator's labels for one turn. `None` means "not annotated".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Annotation {
    pub dialogue_id: String,
    pub turn_index: i32,
    pub annotator_id: String,
    pub goal_id: Option<i32>,
    pub goal_success: Option<bool>,
    pub intent: Option<String>,
    pub slots: Option<Vec<SlotSpan>>,
    /// Kept as read so an unknown value can be reported; see [`FailurePoint::parse`].
    pub failure_point: Option<String>,
    /// Why the turn's meaning needs its context (e.g. `ellipsis`,
    /// `device_state`); the simulator fills it on its `truth` rows only.
    /// Optional column: tables without it read as all null.
    pub context: Option<String>,
}

/// A predicted span with its text and probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelledSlotSpan {
    pub slot: String,
    pub start: i32,
    pub end: i32,
    pub text: String,
    pub probability: f32,
}

/// labelgen's output for one turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Label {
    pub dialogue_id: String,
    pub turn_index: i32,
    pub goal_id: Option<i32>,
    pub goal_boundary_prob: Option<f32>,
    pub goal_success: Option<bool>,
    pub goal_success_prob: Option<f32>,
    pub intent: Option<String>,
    pub intent_prob: Option<f32>,
    pub slots: Option<Vec<LabelledSlotSpan>>,
    pub slots_prob: Option<f32>,
    pub failure_point: Option<String>,
    pub failure_point_prob: Option<f32>,
    pub model_id: String,
    pub run_id: String,
}

/// A table's rows as typed Rust values, convertible to and from Arrow.
pub trait TableRow: Sized + Send {
    const TABLE: Table;
    fn dialogue_id(&self) -> &str;
    fn turn_index(&self) -> i32;
    /// Part of the key in the annotations table only.
    fn annotator_id(&self) -> Option<&str> {
        None
    }
    /// Rows of one record batch. Rows with a null in a non-nullable column are
    /// left out and reported as issues, with their row numbers.
    fn from_batch(
        batch: &RecordBatch,
        file: &Arc<str>,
        first_row: usize,
    ) -> Result<Decoded<Self>, DataError>;
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError>;
}

/// Rows decoded from one record batch, each with its place in the file.
pub struct Decoded<T> {
    pub rows: Vec<(RowPlace, T)>,
    pub issues: Vec<Issue>,
}

// ---------------------------------------------------------------------------
// Reading columns of whatever compatible Arrow type into Rust values.

/// Decodes one record batch column by column against a table schema.
struct BatchColumns<'a> {
    batch: &'a RecordBatch,
    schema: &'static TableSchema,
    file: &'a Arc<str>,
}

impl<'a> BatchColumns<'a> {
    fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(&**self.file)
    }

    /// The column, or None if it is optional and absent.
    fn column(&self, name: &str) -> Result<Option<&'a ArrayRef>, DataError> {
        let spec = self
            .schema
            .column(name)
            .expect("column names come from the schema");
        match self.batch.column_by_name(name) {
            Some(column) => Ok(Some(column)),
            None if !spec.required => Ok(None),
            None => Err(DataError::missing_column(
                &self.path(),
                Table::from_schema(self.schema).name(),
                name,
                self.batch,
            )),
        }
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

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>, DataError> {
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

    fn ints(&self, name: &str, expected: ColumnType) -> Result<Vec<Option<i64>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        if !column.data_type().is_integer() {
            return Err(self.wrong_type(name, expected, column.data_type()));
        }
        let wide = self.cast(name, column, &DataType::Int64)?;
        Ok(wide.as_primitive::<Int64Type>().iter().collect())
    }

    fn floats(&self, name: &str) -> Result<Vec<Option<f32>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        if !column.data_type().is_floating() {
            return Err(self.wrong_type(name, ColumnType::Float32, column.data_type()));
        }
        let narrow = self.cast(name, column, &DataType::Float32)?;
        Ok(narrow.as_primitive::<Float32Type>().iter().collect())
    }

    fn bools(&self, name: &str) -> Result<Vec<Option<bool>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        match column.data_type() {
            DataType::Boolean => Ok(column.as_boolean().iter().collect()),
            other => Err(self.wrong_type(name, ColumnType::Bool, other)),
        }
    }

    fn timestamps(&self, name: &str) -> Result<Vec<Option<i64>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        if !matches!(column.data_type(), DataType::Timestamp(_, _)) {
            return Err(self.wrong_type(name, ColumnType::Timestamp, column.data_type()));
        }
        let target = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let micros = self.cast(name, column, &target)?;
        Ok(micros
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect())
    }

    /// A fixed-length float vector per row, from a fixed-size list or from a
    /// plain list whose rows all have the same length (what pandas writes).
    fn float_vectors(&self, name: &str) -> Result<Vec<Option<Vec<f32>>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        let bad = || self.wrong_type(name, ColumnType::FloatVector, column.data_type());
        let (values, offsets): (ArrayRef, Vec<usize>) = match column.data_type() {
            DataType::FixedSizeList(_, len) => {
                let list = column.as_fixed_size_list();
                let len = *len as usize;
                (
                    list.values().clone(),
                    (0..=list.len()).map(|i| i * len).collect(),
                )
            }
            DataType::List(_) => {
                let list = column.as_list::<i32>();
                (
                    list.values().clone(),
                    list.offsets().iter().map(|&o| o as usize).collect(),
                )
            }
            DataType::LargeList(_) => {
                let list = column.as_list::<i64>();
                (
                    list.values().clone(),
                    list.offsets().iter().map(|&o| o as usize).collect(),
                )
            }
            _ => return Err(bad()),
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

    /// Slot span lists; `with_text` reads the labelled form (text, probability).
    fn span_lists(
        &self,
        name: &str,
        expected: ColumnType,
    ) -> Result<Vec<Option<Vec<RawSpan>>>, DataError> {
        let Some(column) = self.column(name)? else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        let bad = || self.wrong_type(name, expected, column.data_type());
        let (items, offsets): (ArrayRef, Vec<usize>) = match column.data_type() {
            DataType::List(_) => {
                let list = column.as_list::<i32>();
                (
                    list.values().clone(),
                    list.offsets().iter().map(|&o| o as usize).collect(),
                )
            }
            DataType::LargeList(_) => {
                let list = column.as_list::<i64>();
                (
                    list.values().clone(),
                    list.offsets().iter().map(|&o| o as usize).collect(),
                )
            }
            _ => return Err(bad()),
        };
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
        let sub = |field: &str| items.column_by_name(field).expect("checked above").clone();
        let field_name = |field: &str| format!("{name}.{field}");
        let slot = self.cast(&field_name("slot"), &sub("slot"), &DataType::Utf8)?;
        let start = self.cast(&field_name("start"), &sub("start"), &DataType::Int64)?;
        let end = self.cast(&field_name("end"), &sub("end"), &DataType::Int64)?;
        let (text, probability) = if labelled {
            (
                Some(self.cast(&field_name("text"), &sub("text"), &DataType::Utf8)?),
                Some(self.cast(
                    &field_name("probability"),
                    &sub("probability"),
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

/// A span as read, before its fields are known to be present and in range.
#[derive(Clone)]
struct RawSpan {
    slot: Option<String>,
    start: Option<i64>,
    end: Option<i64>,
    text: Option<String>,
    probability: Option<f32>,
}

impl Table {
    fn from_schema(schema: &TableSchema) -> Table {
        [Table::Turns, Table::Annotations, Table::Labels]
            .into_iter()
            .find(|t| t.name() == schema.table)
            .expect("schemas are the three tables")
    }
}

/// Collects per-row problems while rows are assembled from columns.
struct RowCheck<'a> {
    place: RowPlace,
    dialogue_id: Option<&'a str>,
    issues: Vec<Issue>,
}

impl<'a> RowCheck<'a> {
    fn required<T>(&mut self, column: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            let kind = if column == "dialogue_id" || column == "turn_index" {
                "null_key"
            } else {
                "null_value"
            };
            self.issues.push(self.place.issue(
                Severity::Error,
                kind,
                Some(column),
                self.dialogue_id,
                "null in a non-nullable column",
            ));
        }
        value
    }

    fn required_int<T: TryFrom<i64>>(&mut self, column: &str, value: Option<i64>) -> Option<T> {
        let value = self.int(column, value)?;
        self.required(column, value)
    }

    /// An integer that must fit the column's type; out-of-range is an error.
    fn int<T: TryFrom<i64>>(&mut self, column: &str, value: Option<i64>) -> Option<Option<T>> {
        match value {
            None => Some(None),
            Some(v) => match T::try_from(v) {
                Ok(v) => Some(Some(v)),
                Err(_) => {
                    self.issues.push(self.place.issue(
                        Severity::Error,
                        "out_of_range",
                        Some(column),
                        self.dialogue_id,
                        format!("value {v} does not fit the column's integer type"),
                    ));
                    None
                }
            },
        }
    }

    fn spans(
        &mut self,
        column: &str,
        value: Option<Vec<RawSpan>>,
    ) -> Option<Option<Vec<RawSpanChecked>>> {
        let Some(spans) = value else {
            return Some(None);
        };
        let mut out = Vec::with_capacity(spans.len());
        for (i, span) in spans.into_iter().enumerate() {
            let fits = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
            match (span.slot, fits(span.start), fits(span.end)) {
                (Some(slot), Some(start), Some(end)) => out.push(RawSpanChecked {
                    slot,
                    start,
                    end,
                    text: span.text,
                    probability: span.probability,
                }),
                _ => {
                    self.issues.push(self.place.issue(
                        Severity::Error,
                        "bad_span",
                        Some(column),
                        self.dialogue_id,
                        format!("span {i}: slot, start and end must be present and fit int32"),
                    ));
                    return None;
                }
            }
        }
        Some(Some(out))
    }
}

struct RawSpanChecked {
    slot: String,
    start: i32,
    end: i32,
    text: Option<String>,
    probability: Option<f32>,
}

/// Iterates the rows of a batch, building each with a [`RowCheck`]; a row
/// whose builder returns None is dropped from the output and its issues kept.
fn decode_rows<T>(
    num_rows: usize,
    file: &Arc<str>,
    first_row: usize,
    dialogue_ids: &[Option<String>],
    mut build: impl FnMut(usize, &mut RowCheck) -> Option<T>,
) -> Decoded<T> {
    let mut rows = Vec::with_capacity(num_rows);
    let mut issues = Vec::new();
    for (i, dialogue_id) in dialogue_ids.iter().enumerate().take(num_rows) {
        let mut check = RowCheck {
            place: RowPlace {
                file: file.clone(),
                row: first_row + i,
            },
            dialogue_id: dialogue_id.as_deref(),
            issues: Vec::new(),
        };
        let row = build(i, &mut check);
        let errored = check
            .issues
            .iter()
            .any(|issue| issue.severity == Severity::Error);
        issues.append(&mut check.issues);
        if let (Some(row), false) = (row, errored) {
            rows.push((check.place, row));
        }
    }
    Decoded { rows, issues }
}

impl TableRow for Turn {
    const TABLE: Table = Table::Turns;

    fn dialogue_id(&self) -> &str {
        &self.dialogue_id
    }
    fn turn_index(&self) -> i32 {
        self.turn_index
    }

    fn from_batch(
        batch: &RecordBatch,
        file: &Arc<str>,
        first_row: usize,
    ) -> Result<Decoded<Self>, DataError> {
        let c = BatchColumns {
            batch,
            schema: Table::Turns.schema(),
            file,
        };
        let dialogue_id = c.strings("dialogue_id")?;
        let turn_index = c.ints("turn_index", ColumnType::Int32)?;
        let timestamp = c.timestamps("timestamp")?;
        let user_utterance = c.strings("user_utterance")?;
        let system_response = c.strings("system_response")?;
        let device_type = c.strings("device_type")?;
        let device_state = c.strings("device_state")?;
        let domain = c.strings("domain")?;
        let nlu_intent = c.strings("nlu_intent")?;
        let dialogue_status = c.strings("dialogue_status")?;
        let asr_confidence = c.floats("asr_confidence")?;
        let nlu_confidence = c.floats("nlu_confidence")?;
        let barge_in = c.bools("barge_in")?;
        let explicit_feedback = c.ints("explicit_feedback", ColumnType::Int8)?;
        let audio_embedding = c.float_vectors("audio_embedding")?;
        let mut audio_embedding = audio_embedding.into_iter();
        Ok(decode_rows(
            batch.num_rows(),
            file,
            first_row,
            &dialogue_id,
            |i, check| {
                let audio_embedding = audio_embedding.next().flatten();
                Some(Turn {
                    dialogue_id: check.required("dialogue_id", dialogue_id[i].clone())?,
                    turn_index: check.required_int("turn_index", turn_index[i])?,
                    timestamp_us: timestamp[i],
                    user_utterance: check.required("user_utterance", user_utterance[i].clone())?,
                    system_response: check
                        .required("system_response", system_response[i].clone())?,
                    device_type: device_type[i].clone(),
                    device_state: device_state[i].clone(),
                    domain: domain[i].clone(),
                    nlu_intent: nlu_intent[i].clone(),
                    dialogue_status: dialogue_status[i].clone(),
                    asr_confidence: asr_confidence[i],
                    nlu_confidence: nlu_confidence[i],
                    barge_in: barge_in[i],
                    explicit_feedback: check.int("explicit_feedback", explicit_feedback[i])?,
                    audio_embedding,
                })
            },
        ))
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<(&str, ArrayRef, bool)> = vec![
            (
                "dialogue_id",
                strings(rows.iter().map(|r| Some(r.dialogue_id.as_str()))),
                false,
            ),
            (
                "turn_index",
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|r| r.turn_index),
                )),
                false,
            ),
            (
                "timestamp",
                Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.iter().map(|r| r.timestamp_us).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                true,
            ),
            (
                "user_utterance",
                strings(rows.iter().map(|r| Some(r.user_utterance.as_str()))),
                false,
            ),
            (
                "system_response",
                strings(rows.iter().map(|r| Some(r.system_response.as_str()))),
                false,
            ),
            (
                "device_type",
                strings(rows.iter().map(|r| r.device_type.as_deref())),
                true,
            ),
            (
                "device_state",
                strings(rows.iter().map(|r| r.device_state.as_deref())),
                true,
            ),
            (
                "domain",
                strings(rows.iter().map(|r| r.domain.as_deref())),
                true,
            ),
            (
                "nlu_intent",
                strings(rows.iter().map(|r| r.nlu_intent.as_deref())),
                true,
            ),
            (
                "dialogue_status",
                strings(rows.iter().map(|r| r.dialogue_status.as_deref())),
                true,
            ),
            (
                "asr_confidence",
                floats(rows.iter().map(|r| r.asr_confidence)),
                true,
            ),
            (
                "nlu_confidence",
                floats(rows.iter().map(|r| r.nlu_confidence)),
                true,
            ),
            (
                "barge_in",
                Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.barge_in).collect::<Vec<_>>(),
                )),
                true,
            ),
            (
                "explicit_feedback",
                Arc::new(Int8Array::from(
                    rows.iter().map(|r| r.explicit_feedback).collect::<Vec<_>>(),
                )),
                true,
            ),
        ];
        // The optional vector column is written only when some row has one.
        if let Some(dim) = rows
            .iter()
            .find_map(|r| r.audio_embedding.as_ref().map(Vec::len))
        {
            columns.push((
                "audio_embedding",
                float_vectors(rows.iter().map(|r| r.audio_embedding.as_deref()), dim)?,
                true,
            ));
        }
        batch_from_columns(columns)
    }
}

impl TableRow for Annotation {
    const TABLE: Table = Table::Annotations;

    fn dialogue_id(&self) -> &str {
        &self.dialogue_id
    }
    fn annotator_id(&self) -> Option<&str> {
        Some(&self.annotator_id)
    }
    fn turn_index(&self) -> i32 {
        self.turn_index
    }

    fn from_batch(
        batch: &RecordBatch,
        file: &Arc<str>,
        first_row: usize,
    ) -> Result<Decoded<Self>, DataError> {
        let c = BatchColumns {
            batch,
            schema: Table::Annotations.schema(),
            file,
        };
        let dialogue_id = c.strings("dialogue_id")?;
        let turn_index = c.ints("turn_index", ColumnType::Int32)?;
        let annotator_id = c.strings("annotator_id")?;
        let goal_id = c.ints("goal_id", ColumnType::Int32)?;
        let goal_success = c.bools("goal_success")?;
        let intent = c.strings("intent")?;
        let mut slots = c.span_lists("slots", ColumnType::SlotSpans)?.into_iter();
        let failure_point = c.strings("failure_point")?;
        let context = c.strings("context")?;
        Ok(decode_rows(
            batch.num_rows(),
            file,
            first_row,
            &dialogue_id,
            |i, check| {
                let slots = check.spans("slots", slots.next().flatten())?;
                Some(Annotation {
                    dialogue_id: check.required("dialogue_id", dialogue_id[i].clone())?,
                    turn_index: check.required_int("turn_index", turn_index[i])?,
                    annotator_id: check.required("annotator_id", annotator_id[i].clone())?,
                    goal_id: check.int("goal_id", goal_id[i])?,
                    goal_success: goal_success[i],
                    intent: intent[i].clone(),
                    slots: slots.map(|spans| {
                        spans
                            .into_iter()
                            .map(|s| SlotSpan {
                                slot: s.slot,
                                start: s.start,
                                end: s.end,
                            })
                            .collect()
                    }),
                    failure_point: failure_point[i].clone(),
                    context: context[i].clone(),
                })
            },
        ))
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch_from_columns(vec![
            (
                "dialogue_id",
                strings(rows.iter().map(|r| Some(r.dialogue_id.as_str()))),
                false,
            ),
            (
                "turn_index",
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|r| r.turn_index),
                )),
                false,
            ),
            (
                "annotator_id",
                strings(rows.iter().map(|r| Some(r.annotator_id.as_str()))),
                false,
            ),
            (
                "goal_id",
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.goal_id).collect::<Vec<_>>(),
                )),
                true,
            ),
            (
                "goal_success",
                Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.goal_success).collect::<Vec<_>>(),
                )),
                true,
            ),
            (
                "intent",
                strings(rows.iter().map(|r| r.intent.as_deref())),
                true,
            ),
            (
                "slots",
                span_lists(
                    rows.iter().map(|r| {
                        r.slots.as_ref().map(|spans| {
                            spans
                                .iter()
                                .map(|s| (s.slot.as_str(), s.start, s.end, None))
                                .collect::<Vec<_>>()
                        })
                    }),
                    false,
                )?,
                true,
            ),
            (
                "failure_point",
                strings(rows.iter().map(|r| r.failure_point.as_deref())),
                true,
            ),
            // Written even when every value is null, so that the part files
            // and row groups of one dataset share one schema.
            (
                "context",
                strings(rows.iter().map(|r| r.context.as_deref())),
                true,
            ),
        ])
    }
}

impl TableRow for Label {
    const TABLE: Table = Table::Labels;

    fn dialogue_id(&self) -> &str {
        &self.dialogue_id
    }
    fn turn_index(&self) -> i32 {
        self.turn_index
    }

    fn from_batch(
        batch: &RecordBatch,
        file: &Arc<str>,
        first_row: usize,
    ) -> Result<Decoded<Self>, DataError> {
        let c = BatchColumns {
            batch,
            schema: Table::Labels.schema(),
            file,
        };
        let dialogue_id = c.strings("dialogue_id")?;
        let turn_index = c.ints("turn_index", ColumnType::Int32)?;
        let goal_id = c.ints("goal_id", ColumnType::Int32)?;
        let goal_boundary_prob = c.floats("goal_boundary_prob")?;
        let goal_success = c.bools("goal_success")?;
        let goal_success_prob = c.floats("goal_success_prob")?;
        let intent = c.strings("intent")?;
        let intent_prob = c.floats("intent_prob")?;
        let mut slots = c
            .span_lists("slots", ColumnType::LabelledSlotSpans)?
            .into_iter();
        let slots_prob = c.floats("slots_prob")?;
        let failure_point = c.strings("failure_point")?;
        let failure_point_prob = c.floats("failure_point_prob")?;
        let model_id = c.strings("model_id")?;
        let run_id = c.strings("run_id")?;
        Ok(decode_rows(
            batch.num_rows(),
            file,
            first_row,
            &dialogue_id,
            |i, check| {
                let slots = check.spans("slots", slots.next().flatten())?;
                let slots = match slots {
                    None => None,
                    Some(spans) => {
                        let mut out = Vec::with_capacity(spans.len());
                        for s in spans {
                            let (Some(text), Some(probability)) = (s.text, s.probability) else {
                                check.issues.push(check.place.issue(
                                    Severity::Error,
                                    "bad_span",
                                    Some("slots"),
                                    check.dialogue_id,
                                    "a labelled span needs text and probability",
                                ));
                                return None;
                            };
                            out.push(LabelledSlotSpan {
                                slot: s.slot,
                                start: s.start,
                                end: s.end,
                                text,
                                probability,
                            });
                        }
                        Some(out)
                    }
                };
                Some(Label {
                    dialogue_id: check.required("dialogue_id", dialogue_id[i].clone())?,
                    turn_index: check.required_int("turn_index", turn_index[i])?,
                    goal_id: check.int("goal_id", goal_id[i])?,
                    goal_boundary_prob: goal_boundary_prob[i],
                    goal_success: goal_success[i],
                    goal_success_prob: goal_success_prob[i],
                    intent: intent[i].clone(),
                    intent_prob: intent_prob[i],
                    slots,
                    slots_prob: slots_prob[i],
                    failure_point: failure_point[i].clone(),
                    failure_point_prob: failure_point_prob[i],
                    model_id: check.required("model_id", model_id[i].clone())?,
                    run_id: check.required("run_id", run_id[i].clone())?,
                })
            },
        ))
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        batch_from_columns(vec![
            (
                "dialogue_id",
                strings(rows.iter().map(|r| Some(r.dialogue_id.as_str()))),
                false,
            ),
            (
                "turn_index",
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|r| r.turn_index),
                )),
                false,
            ),
            (
                "goal_id",
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.goal_id).collect::<Vec<_>>(),
                )),
                true,
            ),
            (
                "goal_boundary_prob",
                floats(rows.iter().map(|r| r.goal_boundary_prob)),
                true,
            ),
            (
                "goal_success",
                Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.goal_success).collect::<Vec<_>>(),
                )),
                true,
            ),
            (
                "goal_success_prob",
                floats(rows.iter().map(|r| r.goal_success_prob)),
                true,
            ),
            (
                "intent",
                strings(rows.iter().map(|r| r.intent.as_deref())),
                true,
            ),
            (
                "intent_prob",
                floats(rows.iter().map(|r| r.intent_prob)),
                true,
            ),
            (
                "slots",
                span_lists(
                    rows.iter().map(|r| {
                        r.slots.as_ref().map(|spans| {
                            spans
                                .iter()
                                .map(|s| {
                                    (
                                        s.slot.as_str(),
                                        s.start,
                                        s.end,
                                        Some((s.text.as_str(), s.probability)),
                                    )
                                })
                                .collect::<Vec<_>>()
                        })
                    }),
                    true,
                )?,
                true,
            ),
            (
                "slots_prob",
                floats(rows.iter().map(|r| r.slots_prob)),
                true,
            ),
            (
                "failure_point",
                strings(rows.iter().map(|r| r.failure_point.as_deref())),
                true,
            ),
            (
                "failure_point_prob",
                floats(rows.iter().map(|r| r.failure_point_prob)),
                true,
            ),
            (
                "model_id",
                strings(rows.iter().map(|r| Some(r.model_id.as_str()))),
                false,
            ),
            (
                "run_id",
                strings(rows.iter().map(|r| Some(r.run_id.as_str()))),
                false,
            ),
        ])
    }
}

// ---------------------------------------------------------------------------
// Building Arrow columns from Rust values.

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn floats(values: impl Iterator<Item = Option<f32>>) -> ArrayRef {
    Arc::new(values.collect::<Float32Array>())
}

fn float_vectors<'a>(
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
                    "audio_embedding of length {} in a dataset of length {dim}",
                    v.len()
                )));
            }
            None => flat.extend(std::iter::repeat_n(0.0, dim)),
        }
        valid.push(value.is_some());
    }
    let DataType::FixedSizeList(field, _) = float_vector_type(dim as i32) else {
        unreachable!()
    };
    Ok(Arc::new(FixedSizeListArray::try_new(
        field,
        dim as i32,
        Arc::new(Float32Array::from(flat)),
        Some(NullBuffer::from(valid)),
    )?))
}

/// (slot, start, end, Some((text, probability)) for labelled spans).
type SpanParts<'a> = (&'a str, i32, i32, Option<(&'a str, f32)>);

fn span_lists<'a>(
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

fn batch_from_columns(columns: Vec<(&str, ArrayRef, bool)>) -> Result<RecordBatch, ArrowError> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array, nullable)| Field::new(*name, array.data_type().clone(), *nullable))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a, _)| a).collect(),
    )
}
