//! Machine-readable table schemas (schemas/*.json), shared by docs and validation.
//!
//! The JSON files are compiled in, so the binary, the tests and the files a
//! user reads can never disagree about a column.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use serde::Deserialize;

/// The three tables labelgen reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Turns,
    Annotations,
    Labels,
}

impl Table {
    pub fn schema(self) -> &'static TableSchema {
        match self {
            Table::Turns => &TURNS,
            Table::Annotations => &ANNOTATIONS,
            Table::Labels => &LABELS,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Turns => "turns",
            Table::Annotations => "annotations",
            Table::Labels => "labels",
        }
    }
}

static TURNS: LazyLock<TableSchema> =
    LazyLock::new(|| TableSchema::parse(include_str!("../../schemas/turns.json")));
static ANNOTATIONS: LazyLock<TableSchema> =
    LazyLock::new(|| TableSchema::parse(include_str!("../../schemas/annotations.json")));
static LABELS: LazyLock<TableSchema> =
    LazyLock::new(|| TableSchema::parse(include_str!("../../schemas/labels.json")));

/// One table's schema as written in schemas/<table>.json.
#[derive(Debug, Clone, Deserialize)]
pub struct TableSchema {
    pub table: String,
    pub description: String,
    /// Columns that identify a row; duplicates are an error.
    pub key: Vec<String>,
    /// turn_index must run 0..n-1 within each dialogue (logs), not only be unique.
    pub turn_index_contiguous: bool,
    pub columns: Vec<ColumnSchema>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    pub nullable: bool,
    /// A column that may be absent from a dataset (nullable columns may not).
    #[serde(default = "default_true")]
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Allowed values of a categorical column (strings or integers).
    pub allowed: Option<Vec<serde_json::Value>>,
    /// An empty string is suspicious but not invalid: counted as a warning.
    #[serde(default)]
    pub warn_if_empty: bool,
    pub meaning: String,
}

fn default_true() -> bool {
    true
}

/// The logical column types the schemas use. Each has one canonical Arrow
/// type that labelgen writes, and a set of Arrow types it accepts on read
/// (what pandas, polars, Spark and DuckDB write for the same data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ColumnType {
    #[serde(rename = "utf8")]
    Utf8,
    #[serde(rename = "int8")]
    Int8,
    #[serde(rename = "int32")]
    Int32,
    #[serde(rename = "float32")]
    Float32,
    #[serde(rename = "bool")]
    Bool,
    #[serde(rename = "timestamp")]
    Timestamp,
    #[serde(rename = "fixed_size_list<float32>")]
    FloatVector,
    #[serde(rename = "list<slot_span>")]
    SlotSpans,
    #[serde(rename = "list<labelled_slot_span>")]
    LabelledSlotSpans,
}

impl ColumnType {
    /// The Arrow type labelgen writes. `FloatVector` needs its length, so it
    /// is built by [`float_vector_type`].
    pub fn canonical(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Int8 => DataType::Int8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::FloatVector => float_vector_type(0),
            ColumnType::SlotSpans => DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(slot_span_fields()),
                false,
            ))),
            ColumnType::LabelledSlotSpans => DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(labelled_slot_span_fields()),
                false,
            ))),
        }
    }

    /// How the type is spelled in the schema files and in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            ColumnType::Utf8 => "utf8 (string)",
            ColumnType::Int8 => "int8 (any integer type that fits)",
            ColumnType::Int32 => "int32 (any integer type that fits)",
            ColumnType::Float32 => "float32 (or float64)",
            ColumnType::Bool => "bool",
            ColumnType::Timestamp => "timestamp (any unit)",
            ColumnType::FloatVector => {
                "fixed_size_list<float32> (or a list of floats of one length)"
            }
            ColumnType::SlotSpans => "list<struct<slot: utf8, start: int32, end: int32>>",
            ColumnType::LabelledSlotSpans => {
                "list<struct<slot: utf8, start: int32, end: int32, text: utf8, probability: float32>>"
            }
        }
    }
}

pub fn float_vector_type(len: i32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), len)
}

pub fn slot_span_fields() -> Fields {
    Fields::from(vec![
        Field::new("slot", DataType::Utf8, false),
        Field::new("start", DataType::Int32, false),
        Field::new("end", DataType::Int32, false),
    ])
}

pub fn labelled_slot_span_fields() -> Fields {
    Fields::from(vec![
        Field::new("slot", DataType::Utf8, false),
        Field::new("start", DataType::Int32, false),
        Field::new("end", DataType::Int32, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("probability", DataType::Float32, false),
    ])
}

impl TableSchema {
    fn parse(json: &str) -> TableSchema {
        // The files are compiled in and covered by tests, so a parse failure
        // is a build defect, not bad user input.
        serde_json::from_str(json).expect("schemas/*.json compiled into labelgen must parse")
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Allowed string values of a categorical column, if the schema restricts it.
    pub fn allowed_strings(&self, name: &str) -> Option<Vec<&str>> {
        let allowed = self.column(name)?.allowed.as_ref()?;
        Some(allowed.iter().filter_map(|v| v.as_str()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_schemas_parse_and_name_their_keys() {
        for table in [Table::Turns, Table::Annotations, Table::Labels] {
            let schema = table.schema();
            assert_eq!(schema.table, table.name());
            for key in &schema.key {
                let column = schema
                    .column(key)
                    .unwrap_or_else(|| panic!("{key} missing"));
                assert!(!column.nullable, "key column {key} must not be nullable");
                assert!(column.required);
            }
        }
    }

    #[test]
    fn failure_point_values_agree_between_tables() {
        let a = Table::Annotations
            .schema()
            .allowed_strings("failure_point")
            .unwrap();
        let l = Table::Labels
            .schema()
            .allowed_strings("failure_point")
            .unwrap();
        assert_eq!(a, l);
        assert_eq!(
            a,
            crate::data::tables::FailurePoint::ALL.map(|f| f.as_str())
        );
    }
}
