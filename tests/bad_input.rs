//! A corpus of bad input driven through the binary: every malformed-table
//! class the schemas imply (wrong type, missing required column, null in a
//! non-nullable column, a value outside the schema's range or vocabulary),
//! Unicode edge cases, extreme sizes, all-null optional columns and
//! duplicates across part files, each given to every command that reads it.
//!
//! Each input gets a clear error (exit 1 or 2, naming the file and column
//! or dialogue) or a documented, counted handling; no command panics or is
//! killed; where a command goes on, every row is accounted for (rows in =
//! rows out + rows reported skipped).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, Int8Array, Int32Array, RecordBatch,
    StringArray,
};
use arrow::compute::kernels::nullif::nullif;
use arrow::datatypes::{Field, Float32Type, Int8Type, Int32Type, Schema};
use parquet::arrow::ArrowWriter;
use serde_json::Value;

use labelgen::data::dataset::read_table;
use labelgen::data::schema::{ColumnSchema, ColumnType, Table};
use labelgen::data::tables::{Annotation, Label, LabelledSlotSpan, SlotSpan, TableRow, Turn};

/// What one command did.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs labelgen; whatever the input, it must exit on its own without a panic.
fn run(args: &[&str]) -> Outcome {
    let out = common::labelgen(args);
    let outcome = Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: common::stdout(&out),
        stderr: common::stderr(&out),
    };
    assert!(
        out.status.code().is_some(),
        "{args:?} was killed by a signal:\n{}",
        outcome.stderr
    );
    assert!(
        outcome.code != 101 && !outcome.stderr.contains("panicked"),
        "{args:?} panicked:\n{}",
        outcome.stderr
    );
    outcome
}

/// Runs a command that must refuse its input with exit 1 or 2 and say why.
fn refused(args: &[&str], needles: &[&str]) -> Outcome {
    let outcome = run(args);
    assert!(
        matches!(outcome.code, 1 | 2),
        "{args:?}: expected exit 1 or 2, got {}:\n{}",
        outcome.code,
        outcome.text()
    );
    for needle in needles {
        assert!(
            outcome.text().contains(needle),
            "{args:?}: the message lacks {needle:?}:\n{}",
            outcome.text()
        );
    }
    outcome
}

/// Runs a command that must succeed; returns its JSON summary.
fn succeeds(args: &[&str]) -> (Value, Outcome) {
    let outcome = run(args);
    assert_eq!(outcome.code, 0, "{args:?}:\n{}", outcome.text());
    let summary = serde_json::from_str(&outcome.stdout).unwrap_or(Value::Null);
    (summary, outcome)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tiny pretrained model (train's --init) and a labeler trained from it,
/// built once per test binary.
struct Models {
    pretrained: PathBuf,
    labeler: PathBuf,
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad_input_models");
        let _ = std::fs::remove_dir_all(&dir);
        let p = |name: &str| dir.join(name);
        common::simulate(&p("sim"), 24, 5);
        common::pretrain_tiny(&p("sim/turns"), &dir, common::Tiny::default());
        train(
            &p("pre"),
            &p("sim/turns"),
            &p("sim/annotations"),
            &p("labeler"),
        );
        Models {
            pretrained: p("pre"),
            labeler: p("labeler"),
        }
    })
}

fn train_args<'a>(init: &'a Path, logs: &'a Path, labels: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "train",
        "--init",
        s(init),
        "--logs",
        s(logs),
        "--labels",
        s(labels),
        "--out",
        s(out),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--dev-share",
        "0.3",
        "--quiet",
    ]
}

fn train(init: &Path, logs: &Path, labels: &Path, out: &Path) -> Value {
    succeeds(&train_args(init, logs, labels, out)).0
}

fn label_args<'a>(logs: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let labeler = s(&models().labeler);
    vec![
        "label",
        "--model",
        labeler,
        "--logs",
        s(logs),
        "--out",
        s(out),
        "--quiet",
    ]
}

fn eval_args<'a>(gold: &'a Path, labels: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "eval",
        "--gold",
        s(gold),
        "--pred",
        s(labels),
        "--out",
        s(out),
        "--bootstrap",
        "0",
    ]
}

fn validate<'a>(path: &'a Path, table: &'a str) -> Vec<&'a str> {
    vec!["validate", s(path), "--table", table]
}

// ---- Tables --------------------------------------------------------------

fn turn(dialogue: &str, index: i32, utterance: &str) -> Turn {
    Turn {
        dialogue_id: dialogue.into(),
        turn_index: index,
        timestamp_us: Some(1_700_000_000_000_000 + index as i64),
        user_utterance: utterance.into(),
        system_response: "OK.".into(),
        device_type: Some("speaker".into()),
        asr_confidence: Some(0.9),
        nlu_confidence: Some(0.8),
        barge_in: Some(false),
        explicit_feedback: Some(0),
        ..Turn::default()
    }
}

/// Eight dialogues of two turns (enough for train's dev split), the first
/// of three; every utterance has "jazz" at bytes 5..9.
fn base_turns() -> Vec<Turn> {
    let mut turns = Vec::new();
    for d in 0..8 {
        for t in 0..(if d == 0 { 3 } else { 2 }) {
            turns.push(turn(&format!("d{d}"), t, "play jazz please"));
        }
    }
    turns
}

/// (the turn's slot name, start, end) for "jazz", or none.
fn jazz_span(utterance: &str) -> Option<(i32, i32)> {
    let start = utterance.find("jazz")?;
    Some((start as i32, (start + 4) as i32))
}

/// The gold annotators a1..a3 and the baseline `single`, agreeing on every turn.
fn annotations_for(turns: &[Turn]) -> Vec<Annotation> {
    let mut rows = Vec::new();
    for t in turns {
        for annotator in ["a1", "a2", "a3", "single"] {
            rows.push(Annotation {
                dialogue_id: t.dialogue_id.clone(),
                turn_index: t.turn_index,
                annotator_id: annotator.into(),
                goal_id: Some(0),
                goal_success: Some(true),
                intent: Some("PlayMusic".into()),
                slots: Some(
                    jazz_span(&t.user_utterance)
                        .map(|(start, end)| SlotSpan {
                            slot: "genre".into(),
                            start,
                            end,
                        })
                        .into_iter()
                        .collect(),
                ),
                failure_point: Some("correct".into()),
                context: None,
            });
        }
    }
    rows
}

fn labels_for(turns: &[Turn]) -> Vec<Label> {
    turns
        .iter()
        .map(|t| Label {
            dialogue_id: t.dialogue_id.clone(),
            turn_index: t.turn_index,
            goal_id: Some(0),
            goal_boundary_prob: Some(0.1),
            goal_success: Some(true),
            goal_success_prob: Some(0.9),
            intent: Some("PlayMusic".into()),
            intent_prob: Some(0.9),
            slots: Some(vec![LabelledSlotSpan {
                slot: "genre".into(),
                start: 5,
                end: 9,
                text: "jazz".into(),
                probability: 0.8,
            }]),
            slots_prob: Some(0.8),
            failure_point: Some("correct".into()),
            failure_point_prob: Some(0.9),
            model_id: "m@1".into(),
            run_id: "r".into(),
        })
        .collect()
}

fn write_batch(path: &Path, batch: &RecordBatch) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

fn write_rows<T: TableRow>(path: &Path, rows: &[T]) -> PathBuf {
    write_batch(path, &T::to_batch(rows).unwrap());
    path.to_path_buf()
}

/// The batch with column `name` replaced by `array`, or removed (None).
fn with_column(batch: &RecordBatch, name: &str, array: Option<ArrayRef>) -> RecordBatch {
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    let mut found = false;
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.name() != name {
            fields.push(field.as_ref().clone());
            arrays.push(column.clone());
            continue;
        }
        found = true;
        if let Some(array) = &array {
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array.clone());
        }
    }
    if let (false, Some(array)) = (found, array) {
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

// ---- Malformed tables, from the schemas ------------------------------------

/// An array no reader may accept for a column of this type.
fn wrong_type(column_type: ColumnType, rows: usize) -> ArrayRef {
    match column_type {
        ColumnType::Utf8 => Arc::new(Int32Array::from(vec![7; rows])),
        ColumnType::Bool => Arc::new(Int32Array::from(vec![1; rows])),
        _ => Arc::new(StringArray::from(vec!["x"; rows])),
    }
}

/// Values outside a column's range or vocabulary (schemas' min, max,
/// allowed), each replacing row 1 of the column.
fn out_of_domain(column: &ColumnSchema, original: &ArrayRef) -> Vec<(String, ArrayRef)> {
    let mut cases: Vec<(String, ArrayRef)> = Vec::new();
    match column.column_type {
        ColumnType::Float32 if column.min.is_some() || column.max.is_some() => {
            for bad in [1.5, -0.25, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut values: Vec<Option<f32>> =
                    original.as_primitive::<Float32Type>().iter().collect();
                values[1] = Some(bad);
                cases.push((format!("{bad}"), Arc::new(Float32Array::from(values))));
            }
        }
        ColumnType::Int32 if column.min.is_some() => {
            let mut values: Vec<Option<i32>> =
                original.as_primitive::<Int32Type>().iter().collect();
            values[1] = Some(-1);
            cases.push(("-1".into(), Arc::new(Int32Array::from(values))));
        }
        ColumnType::Int8 if column.allowed.is_some() => {
            let mut values: Vec<Option<i8>> = original.as_primitive::<Int8Type>().iter().collect();
            values[1] = Some(5);
            cases.push(("5".into(), Arc::new(Int8Array::from(values))));
        }
        ColumnType::Utf8 if column.allowed.is_some() => {
            // A typo in case: "ASR" for "asr".
            let mut values: Vec<Option<&str>> = original.as_string::<i32>().iter().collect();
            values[1] = Some("ASR");
            cases.push(("ASR".into(), Arc::new(StringArray::from(values))));
        }
        _ => {}
    }
    cases
}

/// Every malformed variant of a valid batch the schema implies, with the
/// text the error must contain.
fn malformed(table: Table, batch: &RecordBatch) -> Vec<(String, RecordBatch, String)> {
    let mut cases = Vec::new();
    for column in &table.schema().columns {
        let name = column.name.as_str();
        let rows = batch.num_rows();
        cases.push((
            format!("{name}: wrong type"),
            with_column(batch, name, Some(wrong_type(column.column_type, rows))),
            format!("column `{name}` has type"),
        ));
        if column.required {
            cases.push((
                format!("{name}: missing"),
                with_column(batch, name, None),
                format!("missing column `{name}`"),
            ));
        }
        let Some(original) = batch.column_by_name(name) else {
            continue;
        };
        if !column.nullable {
            let mask = BooleanArray::from((0..rows).map(|r| r == 1).collect::<Vec<_>>());
            let with_null = nullif(original, &mask).unwrap();
            cases.push((
                format!("{name}: null"),
                with_column(batch, name, Some(with_null)),
                format!("column `{name}`: null in a non-nullable column"),
            ));
        }
        for (value, array) in out_of_domain(column, original) {
            cases.push((
                format!("{name}: {value}"),
                with_column(batch, name, Some(array)),
                format!("column `{name}`"),
            ));
        }
    }
    cases
}

/// A command line reading the table at the first path and writing to the second.
type Reader<'a> = &'a dyn Fn(&Path, &Path) -> Vec<String>;

/// Writes each malformed variant of `table` and gives it to `readers`
/// (commands from the file's path and a fresh output path); each must
/// refuse it naming the column. Returns (bad tables, commands run).
fn refuse_every_malformed_variant(
    table: Table,
    rows: &RecordBatch,
    readers: &[Reader],
) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let cases = malformed(table, rows);
    let mut commands = 0;
    for (i, (what, batch, needle)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("{}-{i}.parquet", table.name()));
        write_batch(&path, batch);
        let mut all = vec![
            validate(&path, table.name())
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
        ];
        for (k, reader) in readers.iter().enumerate() {
            let out = tmp.path().join(format!("out-{i}-{k}"));
            all.push(reader(&path, &out));
            commands += 1;
        }
        for args in &all {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let outcome = refused(&args, &[needle, &format!("{}-{i}.parquet", table.name())]);
            assert!(!outcome.text().is_empty(), "{what}");
        }
        commands += 1;
        for k in 0..readers.len() {
            let out = tmp.path().join(format!("out-{i}-{k}"));
            assert!(
                !out.exists(),
                "{what}: a refused input left {}",
                out.display()
            );
        }
    }
    eprintln!(
        "{}: {} malformed tables, {commands} commands, all refused",
        table.name(),
        cases.len()
    );
    (cases.len(), commands)
}

fn strings(args: Vec<&str>) -> Vec<String> {
    args.into_iter().map(String::from).collect()
}

#[test]
fn every_malformed_turns_table_is_refused_by_validate_label_and_train() {
    let tmp = tempfile::tempdir().unwrap();
    let annotations = write_rows(
        &tmp.path().join("annotations.parquet"),
        &annotations_for(&base_turns()),
    );
    let models = models();
    let batch = Turn::to_batch(&base_turns()).unwrap();
    let label = |logs: &Path, out: &Path| strings(label_args(logs, out));
    let train =
        |logs: &Path, out: &Path| strings(train_args(&models.pretrained, logs, &annotations, out));
    let (tables, _) = refuse_every_malformed_variant(Table::Turns, &batch, &[&label, &train]);
    // 15 columns: 15 wrong types, 13 missing (timestamp and audio_embedding
    // are optional), 4 nulls, 12 values out of range or vocabulary.
    assert_eq!(tables, 44);
}

#[test]
fn every_malformed_annotations_table_is_refused_by_validate_train_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let turns = write_rows(&tmp.path().join("turns.parquet"), &base_turns());
    let labels = write_rows(
        &tmp.path().join("labels.parquet"),
        &labels_for(&base_turns()),
    );
    let models = models();
    let batch = Annotation::to_batch(&annotations_for(&base_turns())).unwrap();
    let train = |annotations: &Path, out: &Path| {
        strings(train_args(&models.pretrained, &turns, annotations, out))
    };
    let eval = |gold: &Path, out: &Path| strings(eval_args(gold, &labels, out));
    let (tables, _) = refuse_every_malformed_variant(Table::Annotations, &batch, &[&train, &eval]);
    // 9 columns: 9 wrong types, 8 missing (context is optional), 3 nulls,
    // turn_index and goal_id negative, failure_point "ASR".
    assert_eq!(tables, 23);
}

#[test]
fn every_malformed_labels_table_is_refused_by_validate_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = write_rows(
        &tmp.path().join("gold.parquet"),
        &annotations_for(&base_turns()),
    );
    let batch = Label::to_batch(&labels_for(&base_turns())).unwrap();
    let eval = |labels: &Path, out: &Path| strings(eval_args(&gold, labels, out));
    let (tables, _) = refuse_every_malformed_variant(Table::Labels, &batch, &[&eval]);
    // 14 columns: 14 wrong types, 14 missing, 4 nulls, 2 negative integers,
    // 5 probabilities x 5 bad values, failure_point "ASR".
    assert_eq!(tables, 60);
}

#[test]
fn malformed_slot_spans_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let turns_rows = base_turns();
    let turns = write_rows(&tmp.path().join("turns.parquet"), &turns_rows);
    let labels = write_rows(&tmp.path().join("labels.parquet"), &labels_for(&turns_rows));
    let models = models();
    let spans = [
        ("genre", 9, 5, "expected 0 <= start < end"),
        ("genre", -1, 4, "expected 0 <= start < end"),
        ("genre", 5, 5, "expected 0 <= start < end"),
        ("", 5, 9, "empty slot name"),
    ];
    for (i, (slot, start, end, needle)) in spans.into_iter().enumerate() {
        let mut rows = annotations_for(&turns_rows);
        rows[1].slots = Some(vec![SlotSpan {
            slot: slot.into(),
            start,
            end,
        }]);
        let path = write_rows(&tmp.path().join(format!("ann-{i}.parquet")), &rows);
        let out = tmp.path().join(format!("out-{i}"));
        refused(
            &validate(&path, "annotations"),
            &["error[bad_span]", needle],
        );
        refused(
            &train_args(&models.pretrained, &turns, &path, &out),
            &["column `slots`", needle],
        );
        refused(
            &eval_args(&path, &labels, &out),
            &["column `slots`", needle],
        );
        assert!(!out.exists());
    }
}

// ---- Inputs a command goes on with, every row accounted for ---------------

/// Dialogues with emoji, right-to-left text, combining marks, an empty and
/// a 10,000-character utterance, one of 1 turn and one of 500 turns.
fn edge_case_turns() -> Vec<Turn> {
    let mut turns = base_turns();
    let long: String = "é jazz 🎷 "
        .repeat(10_000 / 9 + 1)
        .chars()
        .take(10_000)
        .collect();
    assert_eq!(long.chars().count(), 10_000);
    let utterances = [
        ("emoji", vec!["play 🎷 jazz 🎺 now", "👍"]),
        ("rtl", vec!["שגל jazz מוזיקה", "شغل موسيقى jazz"]),
        (
            "combining",
            vec!["cafe\u{301} jazz", "e\u{301}\u{302}\u{303} jazz"],
        ),
        ("empty", vec!["", "play jazz"]),
        ("long", vec![long.as_str(), "stop"]),
        ("single", vec!["play jazz"]),
    ];
    for (dialogue, texts) in utterances {
        for (t, text) in texts.iter().enumerate() {
            turns.push(turn(dialogue, t as i32, text));
        }
    }
    for t in 0..500 {
        turns.push(turn(
            "five-hundred",
            t,
            if t % 2 == 0 { "play jazz" } else { "next" },
        ));
    }
    turns
}

#[test]
fn unicode_empty_long_and_short_dialogues_are_labelled_every_one() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = edge_case_turns();
    let turns = write_rows(&tmp.path().join("turns.parquet"), &rows);
    let (report, outcome) = succeeds(&[&validate(&turns, "turns")[..], &["--json"]].concat());
    assert_eq!(report["rows"], rows.len(), "{}", outcome.stdout);
    assert_eq!(report["warnings"], 1, "the empty utterance is counted");
    let out = tmp.path().join("labels");
    let (summary, outcome) = succeeds(&label_args(&turns, &out));
    assert_eq!(summary["turns"], rows.len(), "rows in = rows out");
    assert_eq!(summary["input_warnings"], 1);
    assert!(
        outcome
            .stderr
            .contains("warning: 1 non-fatal input problem")
    );
    let (labels, _) = read_table::<Label>(&out).unwrap();
    assert_eq!(labels.len(), rows.len());
    // Every predicted span indexes its utterance on character boundaries,
    // with its text: validate checks them against the logs.
    let (report, outcome) = succeeds(
        &[
            &validate(&out, "labels")[..],
            &["--turns", s(&turns), "--json"],
        ]
        .concat(),
    );
    assert_eq!(report["errors"], 0, "{}", outcome.stdout);
    // Spans on multi-byte characters train; the 500-turn dialogue is windowed.
    let annotations = write_rows(
        &tmp.path().join("annotations.parquet"),
        &annotations_for(&rows),
    );
    let summary = train(
        &models().pretrained,
        &turns,
        &annotations,
        &tmp.path().join("model"),
    );
    assert_eq!(summary["annotated_turns_not_in_logs"], 0);
}

#[test]
fn a_span_inside_a_multibyte_character_is_refused_where_the_utterance_is_known() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = base_turns();
    rows[1].user_utterance = "café jazz".into();
    let turns = write_rows(&tmp.path().join("turns.parquet"), &rows);
    let mut annotations = annotations_for(&rows);
    // "é" is bytes 3..5 of "café"; 0..4 ends inside it.
    for a in annotations
        .iter_mut()
        .filter(|a| a.dialogue_id == "d0" && a.turn_index == 1)
    {
        a.slots = Some(vec![SlotSpan {
            slot: "item".into(),
            start: 0,
            end: 4,
        }]);
    }
    let path = write_rows(&tmp.path().join("annotations.parquet"), &annotations);
    let with_turns = [&validate(&path, "annotations")[..], &["--turns", s(&turns)]].concat();
    refused(
        &with_turns,
        &["error[span_not_char_boundary]", "dialogue d0"],
    );
    let out = tmp.path().join("model");
    refused(
        &train_args(&models().pretrained, &turns, &path, &out),
        &[
            "annotations.parquet: 1 slot span(s) do not fit their utterance",
            "span_not_char_boundary: dialogue d0, turn_index 1, annotator single",
        ],
    );
    assert!(!out.exists());
    // Past the end of the utterance.
    for a in annotations.iter_mut().filter(|a| {
        a.slots
            .as_ref()
            .is_some_and(|s| s.len() == 1 && s[0].slot == "item")
    }) {
        a.slots = Some(vec![SlotSpan {
            slot: "item".into(),
            start: 6,
            end: 40,
        }]);
    }
    let path = write_rows(&tmp.path().join("annotations.parquet"), &annotations);
    refused(
        &train_args(&models().pretrained, &turns, &path, &out),
        &[
            "span_outside_utterance",
            "end 40 beyond the utterance's 10 bytes",
        ],
    );
}

#[test]
fn all_null_optional_columns_are_read_as_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let bare: Vec<Turn> = base_turns()
        .into_iter()
        .map(|t| Turn {
            dialogue_id: t.dialogue_id,
            turn_index: t.turn_index,
            user_utterance: t.user_utterance,
            system_response: t.system_response,
            ..Turn::default()
        })
        .collect();
    let turns = write_rows(&tmp.path().join("turns.parquet"), &bare);
    let (report, _) = succeeds(&[&validate(&turns, "turns")[..], &["--json"]].concat());
    assert_eq!(
        (report["errors"].clone(), report["warnings"].clone()),
        (0.into(), 0.into())
    );
    let out = tmp.path().join("labels");
    let (summary, _) = succeeds(&label_args(&turns, &out));
    assert_eq!(summary["turns"], bare.len());
    // Annotations with nothing but their keys, and labels likewise: eval
    // judges every turn as unlabelled rather than failing.
    let keys_only: Vec<Annotation> = annotations_for(&bare)
        .into_iter()
        .map(|a| Annotation {
            dialogue_id: a.dialogue_id,
            turn_index: a.turn_index,
            annotator_id: a.annotator_id,
            ..Annotation::default()
        })
        .collect();
    let gold = write_rows(&tmp.path().join("gold.parquet"), &keys_only);
    succeeds(&validate(&gold, "annotations"));
    let empty_labels: Vec<Label> = labels_for(&bare)
        .into_iter()
        .map(|l| Label {
            dialogue_id: l.dialogue_id,
            turn_index: l.turn_index,
            model_id: l.model_id,
            run_id: l.run_id,
            ..Label::default()
        })
        .collect();
    let labels = write_rows(&tmp.path().join("labels.parquet"), &empty_labels);
    succeeds(&validate(&labels, "labels"));
    let full_gold = write_rows(
        &tmp.path().join("full-gold.parquet"),
        &annotations_for(&bare),
    );
    succeeds(&eval_args(&full_gold, &labels, &tmp.path().join("report")));
}

// ---- Part files ------------------------------------------------------------

#[test]
fn a_turn_repeated_across_part_files_is_refused_by_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = base_turns();
    let dir = tmp.path().join("turns");
    write_rows(&dir.join("part-0.parquet"), &rows);
    // d7's last turn again, in another part file.
    write_rows(&dir.join("part-1.parquet"), &rows[rows.len() - 1..]);
    refused(
        &validate(&dir, "turns"),
        &["error[duplicate_key]", "dialogue d7", "part-1.parquet"],
    );
    let out = tmp.path().join("out");
    refused(
        &label_args(&dir, &out),
        &[
            "part-1.parquet row 0: dialogue `d7` has turn_index 1 twice",
            "part-0.parquet row",
        ],
    );
    let annotations = write_rows(&tmp.path().join("a.parquet"), &annotations_for(&rows));
    refused(
        &train_args(&models().pretrained, &dir, &annotations, &out),
        &["duplicate key (turn_index 1)", "dialogue d7"],
    );
    assert!(!out.exists());
    // Within one file, label refuses a repeated turn too.
    let mut twice = rows.clone();
    twice.insert(1, rows[0].clone());
    let one = write_rows(&tmp.path().join("twice.parquet"), &twice);
    refused(
        &label_args(&one, &out),
        &["dialogue `d0` has turn_index 0 twice"],
    );
}

#[test]
fn annotations_and_labels_repeated_across_part_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = base_turns();
    let turns = write_rows(&tmp.path().join("turns.parquet"), &rows);
    let annotations = annotations_for(&rows);
    let gold = tmp.path().join("gold");
    write_rows(&gold.join("part-0.parquet"), &annotations);
    write_rows(&gold.join("part-1.parquet"), &annotations[..1]);
    let labels = tmp.path().join("labels");
    write_rows(&labels.join("part-0.parquet"), &labels_for(&rows));
    write_rows(&labels.join("part-1.parquet"), &labels_for(&rows)[..1]);
    let good_gold = write_rows(&tmp.path().join("good-gold.parquet"), &annotations);
    let good_labels = write_rows(&tmp.path().join("good-labels.parquet"), &labels_for(&rows));
    let out = tmp.path().join("out");
    let needle = "duplicate key (turn_index 0";
    refused(&validate(&gold, "annotations"), &[needle]);
    refused(&validate(&labels, "labels"), &[needle]);
    refused(
        &eval_args(&gold, &good_labels, &out),
        &[needle, "annotator a1"],
    );
    refused(
        &eval_args(&good_gold, &labels, &out),
        &[needle, "dialogue d0"],
    );
    refused(
        &train_args(&models().pretrained, &turns, &gold, &out),
        &[needle],
    );
    assert!(!out.exists());
}

#[test]
fn a_dialogue_split_across_part_files_and_a_non_utf8_file_name_lose_no_row() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = base_turns();
    let dir = tmp.path().join("turns");
    // d7's turns are split between the two files, which is legal.
    let split = rows.len() - 1;
    write_rows(&dir.join("part-0.parquet"), &rows[..split]);
    #[cfg(unix)]
    let second = {
        use std::os::unix::ffi::OsStrExt;
        dir.join(std::ffi::OsStr::from_bytes(b"part-1-caf\xe9.parquet"))
    };
    #[cfg(not(unix))]
    let second = dir.join("part-1.parquet");
    write_rows(&second, &rows[split..]);
    let (report, _) = succeeds(&[&validate(&dir, "turns")[..], &["--json"]].concat());
    assert_eq!(
        (report["files"].clone(), report["rows"].clone()),
        (2.into(), rows.len().into())
    );
    let out = tmp.path().join("labels");
    let (summary, _) = succeeds(&label_args(&dir, &out));
    assert_eq!(summary["turns"], rows.len());
}

// ---- eval's inputs -----------------------------------------------------------

#[test]
fn eval_says_which_labels_it_did_not_judge_and_refuses_labels_for_other_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = base_turns();
    let gold = write_rows(&tmp.path().join("gold.parquet"), &annotations_for(&rows));
    let mut more = rows.clone();
    more.push(turn("d99", 0, "play jazz"));
    let labels = write_rows(&tmp.path().join("labels.parquet"), &labels_for(&more));
    let (summary, outcome) = succeeds(&eval_args(&gold, &labels, &tmp.path().join("report")));
    assert!(
        outcome
            .stderr
            .contains("warning: labels `model`: 1 of 9 dialogue(s) are not in the gold and were not judged (e.g. d99)"),
        "{}",
        outcome.stderr
    );
    assert_eq!(summary["input_warnings"].as_array().map(Vec::len), Some(1));
    let other: Vec<Turn> = (0..3)
        .map(|d| turn(&format!("x{d}"), 0, "play jazz"))
        .collect();
    let labels = write_rows(&tmp.path().join("other.parquet"), &labels_for(&other));
    let out = tmp.path().join("report2");
    refused(
        &eval_args(&gold, &labels, &out),
        &[
            "labels `model` share no dialogue with the gold",
            "3 labelled dialogue(s) (x0, x1, x2)",
            "8 gold dialogue(s)",
        ],
    );
    assert!(!out.exists());
}

#[test]
fn train_counts_annotations_for_turns_the_logs_lack() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = base_turns();
    let turns = write_rows(&tmp.path().join("turns.parquet"), &rows);
    let mut more = rows.clone();
    more.push(turn("d0", 3, "play jazz"));
    more.push(turn("elsewhere", 0, "play jazz"));
    let annotations = write_rows(&tmp.path().join("a.parquet"), &annotations_for(&more));
    let out = tmp.path().join("m");
    let args = train_args(&models().pretrained, &turns, &annotations, &out);
    let (summary, outcome) = succeeds(&args);
    assert_eq!(summary["annotated_turns_not_in_logs"], 2);
    assert!(
        outcome
            .stderr
            .contains("warning: 2 annotated turn(s) are not in the logs and were not used"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_huge_turn_index_is_reported_not_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = base_turns();
    rows[1].turn_index = 1_000_000_000;
    let turns = write_rows(&tmp.path().join("turns.parquet"), &rows);
    refused(
        &validate(&turns, "turns"),
        &[
            "error[turn_index_gap]",
            "dialogue d0",
            "missing 999999998 indices, first [1, 3, 4",
        ],
    );
    let gold = write_rows(&tmp.path().join("gold.parquet"), &annotations_for(&rows));
    let labels = write_rows(
        &tmp.path().join("labels.parquet"),
        &labels_for(&base_turns()),
    );
    let out = tmp.path().join("report");
    refused(
        &eval_args(&gold, &labels, &out),
        &[
            "gold.parquet: column `turn_index`: dialogue d0: turn_index 1000000000 outside 0..=100000",
        ],
    );
    assert!(!out.exists());
}

// ---- Warnings every reader counts ------------------------------------------

/// `table` at `dir` as validate sees it: its warning count.
fn validate_warnings(dir: &Path, table: &str) -> u64 {
    let (report, outcome) = succeeds(&[&validate(dir, table)[..], &["--json"]].concat());
    report["warnings"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}", outcome.text()))
}

/// Asserts the stderr note of a table read with `count` warnings, naming
/// the dataset and the first few problems.
fn says_read_warnings(stderr: &str, dir: &Path, table: &str, count: u64, kinds: &[&str]) {
    let head = format!(
        "warning: {}: {count} non-fatal problem(s) in the {table} table, read anyway:",
        s(dir)
    );
    assert!(stderr.contains(&head), "lacks {head:?}:\n{stderr}");
    for kind in kinds {
        assert!(
            stderr.contains(&format!("warning[{kind}]")),
            "lacks {kind}:\n{stderr}"
        );
    }
}

#[test]
fn warnings_read_in_a_table_are_counted_and_said_by_train_eval_and_pretrain() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    // An empty utterance and an empty extra part file in the logs; an
    // empty extra part file beside the annotations and the labels. Every
    // row is used; each problem is a warning, not a dropped row.
    let mut rows = base_turns();
    rows[1].user_utterance = String::new();
    let (turns, gold, labels) = (p("turns"), p("annotations"), p("labels"));
    write_rows(&turns.join("part-0.parquet"), &rows);
    write_rows::<Turn>(&turns.join("part-1.parquet"), &[]);
    write_rows(&gold.join("part-0.parquet"), &annotations_for(&rows));
    write_rows::<Annotation>(&gold.join("part-1.parquet"), &[]);
    write_rows(&labels.join("part-0.parquet"), &labels_for(&rows));
    write_rows::<Label>(&labels.join("part-1.parquet"), &[]);
    let turn_warnings = validate_warnings(&turns, "turns");
    assert_eq!(turn_warnings, 2, "the empty utterance and the empty file");
    let gold_warnings = validate_warnings(&gold, "annotations");
    let label_warnings = validate_warnings(&labels, "labels");

    let out = p("model");
    let (summary, outcome) = succeeds(&train_args(&models().pretrained, &turns, &gold, &out));
    assert_eq!(summary["input_warnings"], turn_warnings + gold_warnings);
    let dialogues =
        summary["train_dialogues"].as_u64().unwrap() + summary["dev_dialogues"].as_u64().unwrap();
    assert_eq!(
        dialogues, 8,
        "every dialogue used, the one with the empty utterance too"
    );
    let kinds = ["empty_utterance", "empty_table"];
    says_read_warnings(&outcome.stderr, &turns, "turns", turn_warnings, &kinds);
    says_read_warnings(&outcome.stderr, &gold, "annotations", 1, &["empty_table"]);

    let report_dir = p("report");
    let mut args = eval_args(&gold, &labels, &report_dir);
    args.extend(["--turns", s(&turns)]);
    let (summary, outcome) = succeeds(&args);
    let total = gold_warnings + label_warnings + turn_warnings;
    assert_eq!(summary["read_warnings"], total);
    assert_eq!(
        summary["input_warnings"],
        serde_json::json!([]),
        "the coverage list"
    );
    says_read_warnings(
        &outcome.stderr,
        &labels,
        "labels",
        label_warnings,
        &["empty_table"],
    );
    says_read_warnings(&outcome.stderr, &turns, "turns", turn_warnings, &kinds);
    let report: Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["read_warnings"], total);

    // pretrain's data: synth keeps the empty utterance (in each variant of
    // its dialogue); an empty part file more.
    let synth = p("synth");
    succeeds(&["synth", "--logs", s(&turns), "--out", s(&synth), "--quiet"]);
    write_rows::<Turn>(&synth.join("part-zz-empty.parquet"), &[]);
    let synth_warnings = validate_warnings(&synth, "turns");
    assert!(synth_warnings >= 2, "{synth_warnings}");
    let pretrained = p("pre");
    let pretrain = [
        "pretrain",
        "--data",
        s(&synth),
        "--eval-data",
        s(&synth),
        "--out",
        s(&pretrained),
        "--max-steps",
        "1",
    ];
    let (summary, outcome) = succeeds(&[&pretrain[..], &common::TINY_ENCODER].concat());
    assert_eq!(
        summary["input_warnings"],
        2 * synth_warnings,
        "--data and --eval-data"
    );
    // synth copies the empty utterance into its variants: it is named first.
    let kinds = ["empty_utterance"];
    says_read_warnings(&outcome.stderr, &synth, "turns", synth_warnings, &kinds);
}
