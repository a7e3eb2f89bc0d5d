//! Reading one partition's files with polars into the staging columns.
//!
//! Every file is checked before any work starts ([`inspect`]): it must be
//! Parquet, hold each non-nullable column of schemas/turns.json, and give
//! each known column a type the schema accepts. A partition is then read
//! file by file (files of one partition may differ in their columns),
//! projected onto the schema's columns (extra columns are never read,
//! missing nullable ones are null-filled), cast to one type per column, and
//! tagged with where each row came from: its file, its row in the file, and
//! the end of its hive partition (from the date=/hour= folder names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::io::HiveOptions;
use polars::prelude::*;

use super::layout::Partition;
use crate::data::dataset::open_part;
use crate::data::issues::{DataError, Issue, Severity};
use crate::data::schema::{ColumnSchema, ColumnType, Table, TableSchema};

/// Provenance columns carried beside the table's own until the output.
pub const FILE: &str = "__file";
pub const ROW: &str = "__row";
pub const PARTITION_END: &str = "__partition_end_us";

/// Invalid rows shown in an error; the count covers them all.
const SHOWN_ISSUES: usize = 5;

/// One input file, as found before reading it.
#[derive(Debug, Clone)]
pub struct FileShape {
    pub path: PathBuf,
    pub rows: usize,
    /// The file's own columns and their polars types.
    pub columns: Schema,
}

/// What the files of a run look like together.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Per partition (in order), its files.
    pub files: Vec<Vec<FileShape>>,
    /// Schema columns absent from a file and null-filled -> files.
    pub null_filled: BTreeMap<String, usize>,
    /// Columns the schema does not know, ignored -> files.
    pub ignored: BTreeMap<String, usize>,
    /// Whether any file has `audio_embedding` (else the output leaves it out).
    pub audio: bool,
}

impl Inspection {
    pub fn rows(&self) -> usize {
        self.files.iter().flatten().map(|f| f.rows).sum()
    }

    /// Rows of the largest partition: the unit memory is bounded by.
    pub fn largest_partition_rows(&self) -> usize {
        self.files
            .iter()
            .map(|files| files.iter().map(|f| f.rows).sum())
            .max()
            .unwrap_or(0)
    }
}

pub fn turns_schema() -> &'static TableSchema {
    Table::Turns.schema()
}

/// Opens every file's footer: Parquet, required columns, accepted types.
pub fn inspect(partitions: &[Partition]) -> Result<Inspection, DataError> {
    let mut inspection = Inspection::default();
    for partition in partitions {
        let mut shapes = Vec::new();
        for path in &partition.files {
            let shape = inspect_file(path)?;
            note_columns(&shape, &mut inspection);
            shapes.push(shape);
        }
        inspection.files.push(shapes);
    }
    if !inspection.audio {
        // Left out of the output altogether, so not "filled".
        inspection.null_filled.remove("audio_embedding");
    }
    Ok(inspection)
}

fn inspect_file(path: &Path) -> Result<FileShape, DataError> {
    let (reader, rows) = open_part(path)?;
    let unreadable = |detail: String| DataError::Unreadable {
        path: path.to_path_buf(),
        detail,
    };
    let mut columns = Schema::default();
    for field in reader.schema().fields() {
        let polars = arrow_field(field).map_err(|e| unreadable(e.to_string()))?;
        columns.insert(
            field.name().as_str().into(),
            DataType::from_arrow_field(&polars),
        );
    }
    for spec in &turns_schema().columns {
        match columns.get(&spec.name) {
            Some(found) if !accepts(spec.column_type, found) => {
                return Err(DataError::WrongType {
                    path: path.to_path_buf(),
                    column: spec.name.clone(),
                    expected: spec.column_type.describe(),
                    found: found.to_string(),
                });
            }
            None if !spec.nullable => {
                return Err(DataError::MissingColumn {
                    path: path.to_path_buf(),
                    table: "turns",
                    column: spec.name.clone(),
                    found: columns
                        .iter_names()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            _ => {}
        }
    }
    Ok(FileShape {
        path: path.to_path_buf(),
        rows,
        columns,
    })
}

fn note_columns(shape: &FileShape, inspection: &mut Inspection) {
    let schema = turns_schema();
    for spec in &schema.columns {
        if shape.columns.get(&spec.name).is_none() {
            *inspection.null_filled.entry(spec.name.clone()).or_default() += 1;
        }
    }
    for name in shape.columns.iter_names() {
        if schema.column(name).is_none() {
            *inspection.ignored.entry(name.to_string()).or_default() += 1;
        }
    }
    inspection.audio |= shape.columns.get("audio_embedding").is_some();
}

/// Parquet files written by this run (a bucket's spill files), in order.
pub fn scan_files(files: Vec<PathBuf>) -> PolarsResult<LazyFrame> {
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            hive_start_idx: 0,
            schema: None,
            try_parse_dates: false,
        },
        glob: false,
        cache: false,
        ..ScanArgsParquet::default()
    };
    LazyFrame::scan_parquet_files(files.into(), args)
}

/// Whether a file's column type can be read as the schema's type.
fn accepts(expected: ColumnType, found: &DataType) -> bool {
    match expected {
        ColumnType::Utf8 => matches!(found, DataType::String),
        ColumnType::Int8 | ColumnType::Int32 => found.is_integer(),
        ColumnType::Float32 => found.is_float(),
        ColumnType::Bool => matches!(found, DataType::Boolean),
        ColumnType::Timestamp => matches!(found, DataType::Datetime(_, _)),
        ColumnType::FloatVector => match found {
            DataType::Array(inner, _) | DataType::List(inner) => inner.is_float(),
            _ => false,
        },
        ColumnType::SlotSpans | ColumnType::LabelledSlotSpans => false,
    }
}

/// The one polars type each column has from reading until the output
/// (timestamps as microseconds since the epoch, UTC).
pub fn staging_type(column_type: ColumnType) -> DataType {
    match column_type {
        ColumnType::Utf8 => DataType::String,
        ColumnType::Int8 => DataType::Int8,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => DataType::Int64,
        ColumnType::FloatVector => DataType::List(Box::new(DataType::Float32)),
        // Not turns columns; a null column keeps the plan well-formed.
        ColumnType::SlotSpans | ColumnType::LabelledSlotSpans => DataType::Null,
    }
}

/// The schema columns a run writes: all, less audio_embedding when no file has it.
pub fn output_columns(audio: bool) -> Vec<&'static ColumnSchema> {
    turns_schema()
        .columns
        .iter()
        .filter(|c| audio || c.name != "audio_embedding")
        .collect()
}

fn convert(spec: &ColumnSchema, found: Option<&DataType>) -> Expr {
    let target = staging_type(spec.column_type);
    let Some(found) = found else {
        return lit(NULL).cast(target).alias(spec.name.as_str());
    };
    let column = col(spec.name.as_str());
    let converted = match found {
        DataType::Datetime(unit, _) => {
            let raw = column.cast(DataType::Int64);
            match unit {
                TimeUnit::Nanoseconds => raw.floor_div(lit(1_000i64)),
                TimeUnit::Microseconds => raw,
                TimeUnit::Milliseconds => raw * lit(1_000i64),
            }
        }
        _ => column.strict_cast(target),
    };
    converted.alias(spec.name.as_str())
}

/// One file projected onto the staging columns, with its provenance.
fn read_file(shape: &FileShape, partition: &Partition, audio: bool) -> anyhow::Result<LazyFrame> {
    let mut exprs: Vec<Expr> = output_columns(audio)
        .into_iter()
        .map(|spec| convert(spec, shape.columns.get(&spec.name)))
        .collect();
    let end = partition
        .end_us()
        .map_or(lit(NULL).cast(DataType::Int64), lit);
    exprs.push(lit(shape.path.display().to_string()).alias(FILE));
    exprs.push(col(ROW).cast(DataType::Int64).alias(ROW));
    exprs.push(end.alias(PARTITION_END));
    Ok(load(&shape.path)?
        .lazy()
        .with_row_index(ROW, None)
        .select(exprs))
}

/// A file's known columns as a polars frame. The `parquet` crate reads
/// it (polars 0.46's reader rejects the IEEE-754 column order current
/// writers put on float columns) and the arrays cross to polars through
/// the Arrow C data interface, without copying.
fn load(path: &Path) -> anyhow::Result<DataFrame> {
    let (reader, _) = open_part(path)?;
    let schema = reader.schema();
    let wanted: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| turns_schema().column(schema.field(i).name()).is_some())
        .collect();
    let mut columns: Vec<Vec<polars_arrow::array::ArrayRef>> = vec![Vec::new(); wanted.len()];
    for batch in reader {
        let batch = batch?;
        for (slot, &i) in wanted.iter().enumerate() {
            columns[slot].push(to_polars(batch.column(i).as_ref())?);
        }
    }
    let series = wanted
        .iter()
        .zip(columns)
        .map(|(&i, chunks)| {
            let name = PlSmallStr::from(schema.field(i).name().as_str());
            if chunks.is_empty() {
                let dtype = DataType::from_arrow_field(&arrow_field(schema.field(i))?);
                Ok(Series::new_empty(name, &dtype).into_column())
            } else {
                Ok(Series::from_arrow_chunks(name, chunks)?.into_column())
            }
        })
        .collect::<anyhow::Result<Vec<Column>>>()?;
    Ok(DataFrame::new(series)?)
}

/// One arrow-rs array as a polars-arrow array (the same memory).
fn to_polars(array: &dyn arrow::array::Array) -> anyhow::Result<polars_arrow::array::ArrayRef> {
    let (ffi_array, ffi_schema) = arrow::ffi::to_ffi(&array.to_data())?;
    // SAFETY: both structs are the Arrow C data interface's, with the same
    // layout; polars takes ownership of the array (and releases it), so the
    // arrow-rs side is forgotten, not dropped; the schema is only borrowed.
    unsafe {
        let schema = &*(&ffi_schema as *const arrow::ffi::FFI_ArrowSchema
            as *const polars_arrow::ffi::ArrowSchema);
        let field = polars_arrow::ffi::import_field_from_c(schema)?;
        let owned = std::ptr::read(
            &ffi_array as *const arrow::ffi::FFI_ArrowArray as *const polars_arrow::ffi::ArrowArray,
        );
        std::mem::forget(ffi_array);
        Ok(polars_arrow::ffi::import_array_from_c(
            owned,
            field.dtype().clone(),
        )?)
    }
}

/// The polars-arrow field of an arrow-rs field, through the C interface.
fn arrow_field(field: &arrow::datatypes::Field) -> anyhow::Result<polars_arrow::datatypes::Field> {
    let ffi = arrow::ffi::FFI_ArrowSchema::try_from(field)?;
    // SAFETY: the same C struct layout; borrowed only while `ffi` lives.
    unsafe {
        let schema =
            &*(&ffi as *const arrow::ffi::FFI_ArrowSchema as *const polars_arrow::ffi::ArrowSchema);
        Ok(polars_arrow::ffi::import_field_from_c(schema)?)
    }
}

/// A partition's rows, in the staging columns; row errors stop the run.
pub fn read_partition(
    partition: &Partition,
    files: &[FileShape],
    audio: bool,
) -> anyhow::Result<DataFrame> {
    let frames = files
        .iter()
        .map(|shape| read_file(shape, partition, audio))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let frame = if frames.is_empty() {
        DataFrame::empty()
    } else {
        concat(frames, UnionArgs::default())?
            .collect()
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", partition.dir.display()))?
    };
    check_rows(&frame, &partition.dir, audio)?;
    Ok(frame)
}

/// A row check: a name for messages and a condition true on bad rows.
struct Check {
    column: &'static str,
    kind: &'static str,
    what: String,
    bad: Expr,
}

/// The schema's per-row rules (non-null, min, max, allowed values) as checks.
fn checks(audio: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    for spec in output_columns(audio) {
        let name = spec.name.as_str();
        let column = col(name);
        if !spec.nullable {
            checks.push(Check {
                column: name,
                kind: "null_value",
                what: "null in a column that may not be null".into(),
                bad: column.clone().is_null(),
            });
        }
        if let Some(min) = spec.min {
            checks.push(Check {
                column: name,
                kind: "out_of_range",
                what: format!("below the minimum {min}"),
                bad: column.clone().lt(lit(min)),
            });
        }
        if let Some(max) = spec.max {
            checks.push(Check {
                column: name,
                kind: "out_of_range",
                what: format!("above the maximum {max}"),
                bad: column.clone().gt(lit(max)),
            });
        }
        if let Some(allowed) = &spec.allowed {
            let values: Vec<i64> = allowed.iter().filter_map(|v| v.as_i64()).collect();
            let listed = values
                .iter()
                .fold(lit(false), |any, v| any.or(column.clone().eq(lit(*v))));
            checks.push(Check {
                column: name,
                kind: "not_allowed",
                what: format!("not one of {values:?}"),
                bad: column.clone().is_not_null().and(listed.not()),
            });
        }
    }
    checks
}

/// Fails with the first few bad rows (file, row, dialogue, column) and the
/// count, when any row breaks a rule of schemas/turns.json.
fn check_rows(frame: &DataFrame, dir: &Path, audio: bool) -> anyhow::Result<()> {
    if frame.height() == 0 {
        return Ok(());
    }
    let checks = checks(audio);
    let counts = frame
        .clone()
        .lazy()
        .select(
            checks
                .iter()
                .enumerate()
                .map(|(i, c)| c.bad.clone().sum().alias(format!("c{i}")))
                .collect::<Vec<_>>(),
        )
        .collect()?;
    let mut total = 0;
    let mut issues = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let bad = counts.column(&format!("c{i}"))?.cast(&DataType::Int64)?;
        let bad = bad.i64()?.get(0).unwrap_or(0) as usize;
        if bad > 0 {
            total += bad;
            issues.extend(located(frame, check)?);
        }
    }
    if total == 0 {
        return Ok(());
    }
    let first: Vec<String> = issues
        .iter()
        .take(SHOWN_ISSUES)
        .map(|i| format!("  {i}"))
        .collect();
    Err(DataError::InvalidRows {
        path: dir.to_path_buf(),
        table: "turns",
        count: total,
        first: first.join("\n"),
    }
    .into())
}

fn located(frame: &DataFrame, check: &Check) -> anyhow::Result<Vec<Issue>> {
    let rows = frame
        .clone()
        .lazy()
        .filter(check.bad.clone())
        .select([col(FILE), col(ROW), col("dialogue_id")])
        .limit(SHOWN_ISSUES as IdxSize)
        .collect()?;
    let files = rows.column(FILE)?.str()?.clone();
    let numbers = rows.column(ROW)?.i64()?.clone();
    let dialogues = rows.column("dialogue_id")?.str()?.clone();
    Ok((0..rows.height())
        .map(|i| Issue {
            severity: Severity::Error,
            kind: check.kind,
            file: files.get(i).unwrap_or_default().to_string(),
            row: numbers.get(i).map(|r| r as usize),
            column: Some(check.column.to_string()),
            dialogue_id: dialogues.get(i).map(str::to_string),
            message: check.what.clone(),
        })
        .collect())
}

/// Rows with an empty user_utterance (schemas/turns.json: warn_if_empty).
pub fn empty_utterances(frame: &DataFrame) -> anyhow::Result<usize> {
    if frame.height() == 0 {
        return Ok(0);
    }
    let counted = frame
        .clone()
        .lazy()
        .select([col("user_utterance").eq(lit("")).sum().alias("empty")])
        .collect()?;
    let empty = counted.column("empty")?.cast(&DataType::Int64)?;
    Ok(empty.i64()?.get(0).unwrap_or(0) as usize)
}

/// The shortest and longest `audio_embedding` in a partition (None when it
/// has none): one dataset's vectors must share one length.
pub fn vector_lengths(frame: &DataFrame) -> anyhow::Result<Option<(i64, i64)>> {
    if frame.height() == 0 || frame.column("audio_embedding").is_err() {
        return Ok(None);
    }
    let lengths = || col("audio_embedding").list().len().cast(DataType::Int64);
    let found = frame
        .clone()
        .lazy()
        .select([lengths().min().alias("min"), lengths().max().alias("max")])
        .collect()?;
    let get = |name: &str| -> anyhow::Result<Option<i64>> { Ok(found.column(name)?.i64()?.get(0)) };
    Ok(get("min")?.zip(get("max")?))
}
