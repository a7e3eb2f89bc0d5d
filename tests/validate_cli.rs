//! `labelgen validate` end to end: every class of bad input gets a clear
//! error naming the file, row, dialogue and column; good input from other
//! tools (pandas-style types, extra columns) passes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int8Array, Int32Array, Int64Array,
    LargeStringArray, ListArray, StringArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Float32Type};
use common::{labelgen, stdout, write_parquet};

/// A valid 2-dialogue turns table; tests replace one column to break it.
fn turns_columns() -> Vec<(&'static str, ArrayRef)> {
    let strings = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
    vec![
        ("dialogue_id", strings(&["d1", "d1", "d2"])),
        ("turn_index", Arc::new(Int32Array::from(vec![0, 1, 0]))),
        (
            "user_utterance",
            strings(&[
                "play purple haze",
                "café au lait please",
                "what's the weather",
            ]),
        ),
        (
            "system_response",
            strings(&["Playing purple haze.", "OK.", "Sunny."]),
        ),
        ("device_type", strings(&["speaker", "speaker", "screen"])),
        ("device_state", strings(&["idle", "music_playing", "idle"])),
        ("domain", strings(&["music", "shopping", "weather"])),
        (
            "nlu_intent",
            strings(&["PlayMusic", "AddToList", "GetWeather"]),
        ),
        (
            "dialogue_status",
            strings(&["completed", "completed", "completed"]),
        ),
        (
            "asr_confidence",
            Arc::new(Float32Array::from(vec![0.9, 0.8, 0.95])),
        ),
        (
            "nlu_confidence",
            Arc::new(Float32Array::from(vec![0.9, 0.7, 0.9])),
        ),
        (
            "barge_in",
            Arc::new(BooleanArray::from(vec![false, false, true])),
        ),
        (
            "explicit_feedback",
            Arc::new(Int8Array::from(vec![0, 1, 0])),
        ),
    ]
}

fn replace(columns: &mut Vec<(&'static str, ArrayRef)>, name: &str, array: ArrayRef) {
    let column = columns
        .iter_mut()
        .find(|(n, _)| *n == name)
        .expect("column exists");
    column.1 = array;
}

fn write_turns(dir: &Path, columns: Vec<(&'static str, ArrayRef)>) -> PathBuf {
    let path = dir.join("turns.parquet");
    write_parquet(&path, columns);
    path
}

/// Runs validate and returns (exit code, stdout + stderr).
fn validate(path: &Path, table: &str, turns: Option<&Path>) -> (i32, String) {
    let mut args = vec!["validate", path.to_str().unwrap(), "--table", table];
    if let Some(turns) = turns {
        args.extend(["--turns", turns.to_str().unwrap()]);
    }
    let out = labelgen(&args);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&out), common::stderr(&out)),
    )
}

fn assert_invalid(result: (i32, String), expected: &[&str]) {
    let (code, text) = result;
    assert_eq!(code, 1, "expected exit 1 (invalid), got {code}:\n{text}");
    for needle in expected {
        assert!(text.contains(needle), "message lacks {needle:?}:\n{text}");
    }
}

#[test]
fn valid_turns_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_turns(tmp.path(), turns_columns());
    let (code, text) = validate(&path, "turns", None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("3 row(s), 2 dialogue(s): 0 error(s), 0 warning(s): valid"),
        "{text}"
    );
}

#[test]
fn missing_column() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    columns.retain(|(n, _)| *n != "user_utterance");
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &[
            "turns.parquet",
            "missing column `user_utterance`",
            "found columns: dialogue_id",
        ],
    );
}

#[test]
fn wrong_type_names_the_type_found() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "asr_confidence",
        Arc::new(StringArray::from(vec!["high", "low", "high"])),
    );
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &["column `asr_confidence` has type Utf8, expected float32"],
    );
}

#[test]
fn null_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "dialogue_id",
        Arc::new(StringArray::from(vec![Some("d1"), None, Some("d2")])),
    );
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &["error[null_key]", "row 1", "column `dialogue_id`"],
    );
}

#[test]
fn duplicate_key_names_both_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "turn_index",
        Arc::new(Int32Array::from(vec![0, 0, 0])),
    );
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &[
            "error[duplicate_key]",
            "dialogue d1",
            "first seen in",
            "row 0",
        ],
    );
}

#[test]
fn gap_in_turn_index() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "turn_index",
        Arc::new(Int32Array::from(vec![0, 2, 0])),
    );
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &["error[turn_index_gap]", "dialogue d1", "missing [1]"],
    );
}

#[test]
fn confidence_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "nlu_confidence",
        Arc::new(Float32Array::from(vec![0.9, 1.4, f32::NAN])),
    );
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &[
            "error[out_of_range]: 2 occurrence(s)",
            "row 1 (dialogue d1), column `nlu_confidence`: value 1.4 outside [0, 1]",
            "row 2",
        ],
    );
}

#[test]
fn feedback_outside_its_values() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "explicit_feedback",
        Arc::new(Int8Array::from(vec![0, 5, 0])),
    );
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &["error[unknown_value]", "expected -1, 0 or 1"],
    );
}

#[test]
fn empty_utterance_is_a_counted_warning_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "user_utterance",
        Arc::new(StringArray::from(vec!["play", "  ", "weather"])),
    );
    let path = write_turns(tmp.path(), columns);
    let (code, text) = validate(&path, "turns", None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning[empty_utterance]: 1 occurrence(s)") && text.contains("1 warning(s)"),
        "{text}"
    );
}

#[test]
fn types_other_tools_write_are_accepted_and_extra_columns_kept() {
    // pandas writes int64 indices, float64 floats, and plain lists; polars large strings.
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    replace(
        &mut columns,
        "turn_index",
        Arc::new(Int64Array::from(vec![0, 1, 0])),
    );
    replace(
        &mut columns,
        "asr_confidence",
        Arc::new(Float64Array::from(vec![0.9, 0.8, 0.95])),
    );
    replace(
        &mut columns,
        "dialogue_id",
        Arc::new(LargeStringArray::from(vec!["d1", "d1", "d2"])),
    );
    let embedding = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
        Some(vec![Some(0.1), Some(0.2)]),
        None,
        Some(vec![Some(0.3), Some(0.4)]),
    ]);
    columns.push(("audio_embedding", Arc::new(embedding)));
    columns.push((
        "locale",
        Arc::new(StringArray::from(vec!["en-US", "en-US", "en-GB"])),
    ));
    let path = write_turns(tmp.path(), columns);
    let (code, text) = validate(&path, "turns", None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("extra columns kept and ignored: locale"),
        "{text}"
    );
}

#[test]
fn vectors_of_different_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let mut columns = turns_columns();
    let embedding = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
        Some(vec![Some(0.1), Some(0.2)]),
        Some(vec![Some(0.1)]),
        None,
    ]);
    columns.push(("audio_embedding", Arc::new(embedding)));
    let path = write_turns(tmp.path(), columns);
    assert_invalid(
        validate(&path, "turns", None),
        &["column `audio_embedding`", "row 1", "length 1"],
    );
}

/// (dialogue_id, turn_index, failure_point, spans as (slot, start, end)).
type AnnotationRow<'a> = (&'a str, i32, &'a str, Vec<(&'a str, i32, i32)>);

/// An annotations file with one row per given row.
fn write_annotations(dir: &Path, rows: &[AnnotationRow]) -> PathBuf {
    let path = dir.join("annotations.parquet");
    let fields = Fields::from(vec![
        Field::new("slot", DataType::Utf8, false),
        Field::new("start", DataType::Int32, false),
        Field::new("end", DataType::Int32, false),
    ]);
    let spans: Vec<_> = rows.iter().flat_map(|r| r.3.clone()).collect();
    let items = StructArray::new(
        fields.clone(),
        vec![
            Arc::new(StringArray::from(
                spans.iter().map(|s| s.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int32Array::from(
                spans.iter().map(|s| s.1).collect::<Vec<_>>(),
            )),
            Arc::new(Int32Array::from(
                spans.iter().map(|s| s.2).collect::<Vec<_>>(),
            )),
        ],
        None,
    );
    let lengths = rows.iter().map(|r| r.3.len());
    let slots = ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(fields), false)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(items),
        None,
    );
    let n = rows.len();
    write_parquet(
        &path,
        vec![
            (
                "dialogue_id",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
            ),
            (
                "turn_index",
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ),
            ("annotator_id", Arc::new(StringArray::from(vec!["a1"; n]))),
            ("goal_id", Arc::new(Int32Array::from(vec![0; n]))),
            ("goal_success", Arc::new(BooleanArray::from(vec![true; n]))),
            ("intent", Arc::new(StringArray::from(vec!["PlayMusic"; n]))),
            ("slots", Arc::new(slots)),
            (
                "failure_point",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ),
        ],
    );
    path
}

#[test]
fn annotations_with_good_spans_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let turns = write_turns(tmp.path(), turns_columns());
    let path = write_annotations(
        tmp.path(),
        &[
            ("d1", 0, "correct", vec![("song", 5, 16)]),
            ("d1", 1, "asr", vec![("item", 0, 5)]),
        ],
    );
    let (code, text) = validate(&path, "annotations", Some(&turns));
    assert_eq!(code, 0, "{text}");
}

#[test]
fn unknown_failure_point() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_annotations(tmp.path(), &[("d1", 0, "asr_error", vec![])]);
    assert_invalid(
        validate(&path, "annotations", None),
        &[
            "error[unknown_value]",
            "unknown failure_point 'asr_error'",
            "correct, false_wake, asr",
        ],
    );
}

#[test]
fn span_outside_the_utterance() {
    let tmp = tempfile::tempdir().unwrap();
    let turns = write_turns(tmp.path(), turns_columns());
    let path = write_annotations(tmp.path(), &[("d1", 0, "correct", vec![("song", 5, 40)])]);
    assert_invalid(
        validate(&path, "annotations", Some(&turns)),
        &[
            "error[span_outside_utterance]",
            "row 0 (dialogue d1)",
            "end 40 beyond the utterance's 16 bytes",
        ],
    );
}

#[test]
fn span_cutting_a_utf8_character() {
    let tmp = tempfile::tempdir().unwrap();
    let turns = write_turns(tmp.path(), turns_columns());
    // "café": é is bytes 3..5, so an end at 4 cuts it.
    let path = write_annotations(tmp.path(), &[("d1", 1, "correct", vec![("item", 0, 4)])]);
    assert_invalid(
        validate(&path, "annotations", Some(&turns)),
        &["error[span_not_char_boundary]", "UTF-8"],
    );
}

#[test]
fn inverted_span_and_annotation_for_a_turn_not_in_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let turns = write_turns(tmp.path(), turns_columns());
    let path = write_annotations(
        tmp.path(),
        &[
            ("d1", 0, "correct", vec![("song", 9, 5)]),
            ("d9", 0, "correct", vec![]),
        ],
    );
    assert_invalid(
        validate(&path, "annotations", Some(&turns)),
        &[
            "error[bad_span]",
            "expected 0 <= start < end",
            "error[turn_not_in_logs]",
            "dialogue d9",
        ],
    );
}

#[test]
fn empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("empty.parquet");
    std::fs::write(&path, b"").unwrap();
    assert_invalid(
        validate(&path, "turns", None),
        &["empty.parquet: empty file (0 bytes)"],
    );
}

#[test]
fn a_file_that_is_not_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("logs.parquet");
    std::fs::write(&path, b"dialogue_id,turn_index\nd1,0\n").unwrap();
    assert_invalid(
        validate(&path, "turns", None),
        &["logs.parquet: not a Parquet file"],
    );
}

#[test]
fn a_truncated_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_turns(tmp.path(), turns_columns());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_invalid(
        validate(&path, "turns", None),
        &["turns.parquet: truncated Parquet file"],
    );
}

#[test]
fn a_directory_is_one_dataset_and_an_empty_one_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    std::fs::create_dir_all(dir.join("date=2026-11-01")).unwrap();
    let (code, text) = validate(&dir, "turns", None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("holds no .parquet files"), "{text}");
    // Two part files, one in a hive-style folder, plus a _SUCCESS marker.
    let mut first = turns_columns();
    for (_, array) in first.iter_mut() {
        *array = array.slice(0, 2);
    }
    write_parquet(&dir.join("part-0.parquet"), first);
    let mut second = turns_columns();
    for (_, array) in second.iter_mut() {
        *array = array.slice(2, 1);
    }
    write_parquet(&dir.join("date=2026-11-01/part-1.parquet"), second);
    std::fs::write(dir.join("_SUCCESS"), b"").unwrap();
    let (code, text) = validate(&dir, "turns", None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("2 file(s), 3 row(s), 2 dialogue(s)"),
        "{text}"
    );
}

#[test]
fn a_path_that_does_not_exist_is_an_io_error() {
    let (code, text) = validate(Path::new("/nonexistent/logs"), "turns", None);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("/nonexistent/logs: no such file or directory"),
        "{text}"
    );
}
