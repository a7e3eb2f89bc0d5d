//! Typed rows of the three tables, and the columns each is stored in.
//!
//! The columns are listed once per row type ([`table_columns!`]); the Arrow
//! conversion both ways, and the checks on read, come from src/data/codec.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use super::checks;
use super::codec::{self, Columns, table_columns};
use super::issues::{DataError, Issue, RowPlace};
use super::schema::Table;

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
pub trait TableRow: Sized + Send + Columns {
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
    ) -> Result<Decoded<Self>, DataError> {
        codec::decode(batch, file, first_row)
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        codec::encode(rows)
    }
    /// Checks of the row's values beyond their types (src/data/checks.rs),
    /// run by every reader on every decoded row.
    fn check_values(&self, _check: &mut codec::RowCheck<'_>) {}
}

/// Rows decoded from one record batch, each with its place in the file.
pub struct Decoded<T> {
    pub rows: Vec<(RowPlace, T)>,
    pub issues: Vec<Issue>,
}

// The columns of each table, in the order they are written; they must agree
// with schemas/*.json (a test below compares them).

table_columns! {
    Turn {
        dialogue_id: Utf8,
        turn_index: Int32,
        timestamp_us: Timestamp as "timestamp",
        user_utterance: Utf8,
        system_response: Utf8,
        device_type: Utf8,
        device_state: Utf8,
        domain: Utf8,
        nlu_intent: Utf8,
        dialogue_status: Utf8,
        asr_confidence: Float32,
        nlu_confidence: Float32,
        barge_in: Bool,
        explicit_feedback: Int8,
        // Written only when some row has one.
        audio_embedding: FloatVector,
    }
}

table_columns! {
    Annotation {
        dialogue_id: Utf8,
        turn_index: Int32,
        annotator_id: Utf8,
        goal_id: Int32,
        goal_success: Bool,
        intent: Utf8,
        slots: SlotSpans,
        failure_point: Utf8,
        // Written even when every value is null, so that the part files
        // and row groups of one dataset share one schema.
        context: Utf8,
    }
}

table_columns! {
    Label {
        dialogue_id: Utf8,
        turn_index: Int32,
        goal_id: Int32,
        goal_boundary_prob: Float32,
        goal_success: Bool,
        goal_success_prob: Float32,
        intent: Utf8,
        intent_prob: Float32,
        slots: LabelledSlotSpans,
        slots_prob: Float32,
        failure_point: Utf8,
        failure_point_prob: Float32,
        model_id: Utf8,
        run_id: Utf8,
    }
}

impl TableRow for Turn {
    const TABLE: Table = Table::Turns;
    fn dialogue_id(&self) -> &str {
        &self.dialogue_id
    }
    fn turn_index(&self) -> i32 {
        self.turn_index
    }
    fn check_values(&self, check: &mut codec::RowCheck<'_>) {
        checks::turn(self, check)
    }
}

impl TableRow for Annotation {
    const TABLE: Table = Table::Annotations;
    fn dialogue_id(&self) -> &str {
        &self.dialogue_id
    }
    fn turn_index(&self) -> i32 {
        self.turn_index
    }
    fn annotator_id(&self) -> Option<&str> {
        Some(&self.annotator_id)
    }
    fn check_values(&self, check: &mut codec::RowCheck<'_>) {
        checks::annotation(self, check)
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
    fn check_values(&self, check: &mut codec::RowCheck<'_>) {
        checks::label(self, check)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        ArrayRef, Int64Array, ListArray, StringArray, StructArray, TimestampMillisecondArray,
    };
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::{DataType, Field, Fields, Schema};

    use super::*;
    use crate::data::schema::{ColumnType, float_vector_type};

    fn turn(dialogue: &str, index: i32) -> Turn {
        Turn {
            dialogue_id: dialogue.into(),
            turn_index: index,
            timestamp_us: Some(1_700_000_000_000_000 + index as i64),
            user_utterance: "play jazz".into(),
            system_response: "Playing jazz.".into(),
            device_type: Some("speaker".into()),
            domain: Some("music".into()),
            asr_confidence: Some(0.9),
            barge_in: Some(false),
            explicit_feedback: Some(-1),
            audio_embedding: Some(vec![0.5, -1.0, 2.0]),
            ..Turn::default()
        }
    }

    fn annotation() -> Annotation {
        Annotation {
            dialogue_id: "d1".into(),
            turn_index: 0,
            annotator_id: "a1".into(),
            goal_id: Some(0),
            goal_success: Some(true),
            intent: Some("PlayMusic".into()),
            slots: Some(vec![SlotSpan {
                slot: "genre".into(),
                start: 5,
                end: 9,
            }]),
            failure_point: Some("correct".into()),
            context: None,
        }
    }

    fn label() -> Label {
        Label {
            dialogue_id: "d1".into(),
            turn_index: 0,
            goal_id: Some(0),
            goal_boundary_prob: Some(1.0),
            intent: Some("PlayMusic".into()),
            slots: Some(vec![LabelledSlotSpan {
                slot: "genre".into(),
                start: 5,
                end: 9,
                text: "jazz".into(),
                probability: 0.75,
            }]),
            model_id: "m@1".into(),
            run_id: "r".into(),
            ..Label::default()
        }
    }

    fn decode<T: TableRow>(batch: &RecordBatch) -> Decoded<T> {
        T::from_batch(batch, &Arc::from("t.parquet"), 10).unwrap()
    }

    fn round_trip<T: TableRow + PartialEq + std::fmt::Debug>(rows: &[T]) {
        let decoded = decode::<T>(&T::to_batch(rows).unwrap());
        // A default turn's empty utterance is legal: a warning, the row kept.
        assert!(decoded.issues.iter().all(|i| i.kind == "empty_utterance"));
        let back: Vec<&T> = decoded.rows.iter().map(|(_, row)| row).collect();
        assert_eq!(back, rows.iter().collect::<Vec<_>>());
        let places: Vec<usize> = decoded.rows.iter().map(|(p, _)| p.row).collect();
        assert_eq!(places, (10..10 + rows.len()).collect::<Vec<_>>());
    }

    #[test]
    fn rows_survive_a_round_trip() {
        round_trip(&[turn("d1", 0), Turn::default(), turn("d2", 1)]);
        round_trip(&[annotation(), Annotation::default()]);
        round_trip(&[label(), Label::default()]);
    }

    /// The columns written are those of schemas/*.json, in order, with their
    /// canonical types and nullability.
    fn assert_matches_schema<T: TableRow>(rows: &[T]) {
        let batch = T::to_batch(rows).unwrap();
        let written = batch.schema();
        let columns = &T::TABLE.schema().columns;
        let names = |fields: &Schema| -> Vec<String> {
            fields.fields().iter().map(|f| f.name().clone()).collect()
        };
        let expected: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names(&written), expected);
        for (field, column) in written.fields().iter().zip(columns) {
            let canonical = match column.column_type {
                ColumnType::FloatVector => float_vector_type(3),
                other => other.canonical(),
            };
            assert_eq!(field.data_type(), &canonical, "{}", column.name);
            assert_eq!(field.is_nullable(), column.nullable, "{}", column.name);
            assert!(field.metadata().is_empty());
        }
    }

    #[test]
    fn written_columns_are_the_schema_files() {
        assert_matches_schema(&[turn("d1", 0)]);
        assert_matches_schema(&[annotation()]);
        assert_matches_schema(&[label()]);
    }

    #[test]
    fn optional_columns_are_left_out_or_kept_as_the_schema_needs() {
        // No vector in any row: no length to write, so no column.
        let batch = Turn::to_batch(&[Turn::default()]).unwrap();
        assert!(batch.column_by_name("audio_embedding").is_none());
        // All-null context is still written: one schema for every part file.
        let batch = Annotation::to_batch(&[Annotation::default()]).unwrap();
        assert!(batch.column_by_name("context").is_some());
    }

    fn with_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
        let mut fields: Vec<Field> = Vec::new();
        let mut arrays = Vec::new();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let (field, column) = if field.name() == name {
                (
                    Field::new(name, array.data_type().clone(), true),
                    array.clone(),
                )
            } else {
                (field.as_ref().clone(), column.clone())
            };
            fields.push(field);
            arrays.push(column);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    #[test]
    fn other_tools_types_are_read() {
        let batch = Turn::to_batch(&[turn("d1", 0), turn("d1", 1)]).unwrap();
        let batch = with_column(&batch, "turn_index", Arc::new(Int64Array::from(vec![0, 1])));
        let millis = TimestampMillisecondArray::from(vec![Some(5), None]).with_timezone("UTC");
        let batch = with_column(&batch, "timestamp", Arc::new(millis));
        let rows = decode::<Turn>(&batch).rows;
        assert_eq!(rows[1].1.turn_index, 1);
        assert_eq!(rows[0].1.timestamp_us, Some(5_000));
        assert_eq!(rows[1].1.timestamp_us, None);
    }

    #[test]
    fn bad_cells_drop_their_row_with_an_issue_naming_row_and_column() {
        let batch = Turn::to_batch(&[turn("d1", 0), turn("d1", 1), turn("d2", 0)]).unwrap();
        let ids = StringArray::from(vec![Some("d1"), None, Some("d2")]);
        let batch = with_column(&batch, "dialogue_id", Arc::new(ids));
        let index = Int64Array::from(vec![0, 1, 1 << 40]);
        let batch = with_column(&batch, "turn_index", Arc::new(index));
        let decoded = decode::<Turn>(&batch);
        assert_eq!(decoded.rows.len(), 1);
        let issues: Vec<String> = decoded.issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            issues,
            [
                "error[null_key]: t.parquet: row 11, column `dialogue_id`: null in a non-nullable column",
                "error[out_of_range]: t.parquet: row 12 (dialogue d2), column `turn_index`: value 1099511627776 does not fit the column's integer type",
            ]
        );
    }

    #[test]
    fn values_out_of_their_domain_are_errors_and_the_row_is_kept_for_its_key() {
        let mut bad = turn("d1", -1);
        bad.asr_confidence = Some(f32::NAN);
        bad.nlu_confidence = Some(f32::INFINITY);
        bad.user_utterance = String::new();
        let decoded = decode::<Turn>(&Turn::to_batch(&[turn("d1", 0), bad]).unwrap());
        assert_eq!(decoded.rows.len(), 2);
        let issues: Vec<String> = decoded.issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            issues,
            [
                "error[out_of_range]: t.parquet: row 11 (dialogue d1), column `turn_index`: value -1 is negative",
                "error[out_of_range]: t.parquet: row 11 (dialogue d1), column `asr_confidence`: value NaN outside [0, 1]",
                "error[out_of_range]: t.parquet: row 11 (dialogue d1), column `nlu_confidence`: value inf outside [0, 1]",
                "warning[empty_utterance]: t.parquet: row 11 (dialogue d1), column `user_utterance`: empty user utterance",
            ]
        );
        let mut typo = annotation();
        typo.failure_point = Some("ASR".into());
        typo.goal_id = Some(-2);
        let decoded = decode::<Annotation>(&Annotation::to_batch(&[typo]).unwrap());
        let kinds: Vec<(&str, Option<&str>)> = decoded
            .issues
            .iter()
            .map(|i| (i.kind, i.column.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("out_of_range", Some("goal_id")),
                ("unknown_value", Some("failure_point"))
            ]
        );
        let mut overconfident = label();
        overconfident.intent_prob = Some(1.5);
        overconfident.slots.as_mut().unwrap()[0].probability = f32::NEG_INFINITY;
        overconfident.slots.as_mut().unwrap()[0].start = 9;
        let decoded = decode::<Label>(&Label::to_batch(&[overconfident]).unwrap());
        let messages: Vec<String> = decoded.issues.iter().map(|i| i.message.clone()).collect();
        assert_eq!(
            messages,
            [
                "value 1.5 outside [0, 1]",
                "span 0 (genre): start 9, end 9: expected 0 <= start < end",
                "value -inf outside [0, 1]",
            ]
        );
    }

    #[test]
    fn missing_and_mistyped_columns_name_the_table_and_type() {
        let batch = Label::to_batch(&[label()]).unwrap();
        let without = batch.project(&[0, 1]).unwrap();
        let error = Label::from_batch(&without, &Arc::from("l.parquet"), 0)
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("l.parquet: missing column `goal_id` required by the labels schema"),
            "{error}"
        );
        let batch = with_column(
            &batch,
            "intent_prob",
            Arc::new(StringArray::from(vec!["x"])),
        );
        let error = Label::from_batch(&batch, &Arc::from("l.parquet"), 0)
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "l.parquet: column `intent_prob` has type Utf8, expected float32 (or float64)"
        );
    }

    #[test]
    fn a_labelled_span_without_text_is_a_bad_span() {
        let fields = Fields::from(vec![
            Field::new("slot", DataType::Utf8, false),
            Field::new("start", DataType::Int32, false),
            Field::new("end", DataType::Int32, false),
            Field::new("text", DataType::Utf8, true),
            Field::new("probability", DataType::Float32, false),
        ]);
        let children: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["genre"])),
            Arc::new(arrow::array::Int32Array::from(vec![5])),
            Arc::new(arrow::array::Int32Array::from(vec![9])),
            Arc::new(StringArray::from(vec![None::<&str>])),
            Arc::new(arrow::array::Float32Array::from(vec![0.5])),
        ];
        let items = StructArray::try_new(fields.clone(), children, None).unwrap();
        let item = Arc::new(Field::new("item", DataType::Struct(fields), false));
        let offsets = OffsetBuffer::new(vec![0, 1].into());
        let slots = ListArray::try_new(item, offsets, Arc::new(items), None).unwrap();
        let batch = Label::to_batch(&[label()]).unwrap();
        let decoded = decode::<Label>(&with_column(&batch, "slots", Arc::new(slots)));
        assert!(decoded.rows.is_empty());
        assert_eq!(
            decoded.issues[0].to_string(),
            "error[bad_span]: t.parquet: row 10 (dialogue d1), column `slots`: a labelled span needs text and probability"
        );
    }
}
