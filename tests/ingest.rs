//! `labelgen ingest` end to end: hive-partitioned logs as other systems
//! write them (arrival order, duplicates, dialogues across midnight, extra
//! and missing columns) into the ordered, deduplicated staging dataset.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int8Array, Int32Array, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use common::{Tiny, labelgen, pretrain_tiny, run_ok, s, stderr, write_parquet};
use labelgen::data::dataset::read_table;
use labelgen::data::tables::{Label, Turn};
use labelgen::stages::ingest::layout::parse_date;

const MINUTE_US: i64 = 60_000_000;

/// 2026-12-01T00:00:00Z in microseconds.
fn day0_us() -> i64 {
    parse_date("2026-12-01").unwrap() * 86_400_000_000
}

/// A turn as the test writes it; `minute` counts from 2026-12-01T00:00Z.
#[derive(Clone, Debug)]
struct Row {
    dialogue: &'static str,
    turn: i32,
    minute: Option<i64>,
    user: String,
}

fn row(dialogue: &'static str, turn: i32, minute: i64) -> Row {
    Row {
        dialogue,
        turn,
        minute: Some(minute),
        user: format!("{dialogue} says {turn}"),
    }
}

/// How a file is written: columns left out, an extra column, the
/// timestamp's unit (other writers use milliseconds).
#[derive(Default, Clone, Copy)]
struct Shape {
    drop: &'static [&'static str],
    extra: bool,
    millis: bool,
}

fn write_rows(path: &Path, rows: &[Row], shape: Shape) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let n = rows.len();
    let text = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    let micros: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.minute.map(|m| day0_us() + m * MINUTE_US))
        .collect();
    let timestamp: ArrayRef = if shape.millis {
        let millis: Vec<Option<i64>> = micros.iter().map(|m| m.map(|m| m / 1000)).collect();
        Arc::new(TimestampMillisecondArray::from(millis).with_timezone("UTC"))
    } else {
        Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
    };
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        (
            "dialogue_id",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.dialogue),
            )),
        ),
        (
            "turn_index",
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.turn))),
        ),
        ("timestamp", timestamp),
        (
            "user_utterance",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.user))),
        ),
        ("system_response", text("ok")),
        ("device_type", text("speaker")),
        ("device_state", text("idle")),
        ("domain", text("music")),
        ("nlu_intent", text("play")),
        ("dialogue_status", text("completed")),
        ("asr_confidence", Arc::new(Float32Array::from(vec![0.9; n]))),
        ("nlu_confidence", Arc::new(Float32Array::from(vec![0.8; n]))),
        ("barge_in", Arc::new(BooleanArray::from(vec![false; n]))),
        ("explicit_feedback", Arc::new(Int8Array::from(vec![0; n]))),
    ];
    if shape.extra {
        columns.push(("ingest_host", text("collector-7")));
    }
    columns.retain(|(name, _)| !shape.drop.contains(name));
    write_parquet(path, columns);
}

/// The turn the test expects for a row, in the table's types.
fn turn(r: &Row) -> Turn {
    let text = |v: &str| Some(v.to_string());
    Turn {
        dialogue_id: r.dialogue.to_string(),
        turn_index: r.turn,
        timestamp_us: r.minute.map(|m| day0_us() + m * MINUTE_US),
        user_utterance: r.user.clone(),
        system_response: "ok".into(),
        device_type: text("speaker"),
        device_state: text("idle"),
        domain: text("music"),
        nlu_intent: text("play"),
        dialogue_status: text("completed"),
        asr_confidence: Some(0.9),
        nlu_confidence: Some(0.8),
        barge_in: Some(false),
        explicit_feedback: Some(0),
        audio_embedding: None,
    }
}

fn ingest(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["ingest", "--quiet"];
    all.extend_from_slice(args);
    let out = labelgen(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

fn turns_of(dataset: &Path) -> Vec<Turn> {
    read_table::<Turn>(dataset).unwrap().0
}

/// Each dialogue's turns together and in order, as `label` streams them.
fn assert_dialogue_ordered(turns: &[Turn]) {
    let mut seen = std::collections::HashSet::new();
    for pair in turns.windows(2) {
        if pair[0].dialogue_id == pair[1].dialogue_id {
            assert_eq!(pair[1].turn_index, pair[0].turn_index + 1, "{pair:?}");
        } else {
            assert!(seen.insert(pair[0].dialogue_id.clone()), "{pair:?}");
        }
    }
}

fn sorted(mut turns: Vec<Turn>) -> Vec<Turn> {
    turns.sort_by(|a, b| (&a.dialogue_id, a.turn_index).cmp(&(&b.dialogue_id, b.turn_index)));
    turns
}

/// Three dialogues over three hourly partitions and two days, in arrival
/// order, with exact duplicates; `a` runs across midnight.
fn messy_logs(root: &Path) -> Vec<Row> {
    let (a, b, c) = (
        (0..4)
            .map(|t| row("a", t, 1430 + 5 * t as i64))
            .collect::<Vec<_>>(),
        (0..3)
            .map(|t| row("b", t, 600 + t as i64))
            .collect::<Vec<_>>(),
        (0..2)
            .map(|t| row("c", t, 1439 + t as i64))
            .collect::<Vec<_>>(),
    );
    let hour = |date: &str, hour: &str, file: &str| {
        root.join(format!("date={date}/hour={hour}/{file}.parquet"))
    };
    let plain = Shape::default();
    write_rows(
        &hour("2026-12-01", "10", "part-0"),
        &[b[2].clone(), b[0].clone(), b[1].clone(), b[0].clone()],
        plain,
    );
    write_rows(
        &hour("2026-12-01", "23", "part-0"),
        &[a[1].clone(), c[0].clone(), a[0].clone()],
        plain,
    );
    // A second file in the same hour repeats a turn (at-least-once delivery).
    write_rows(
        &hour("2026-12-01", "23", "part-1"),
        &[a[2].clone(), a[1].clone()],
        Shape {
            millis: true,
            ..plain
        },
    );
    write_rows(
        &hour("2026-12-02", "00", "part-0"),
        &[c[1].clone(), a[3].clone(), a[2].clone()],
        plain,
    );
    [a, b, c].concat()
}

#[test]
fn unordered_duplicated_cross_midnight_logs_ingest_to_their_ordered_form() {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, out) = (tmp.path().join("logs"), tmp.path().join("out"));
    let rows = messy_logs(&logs);
    let summary = ingest(&["--logs", s(&logs), "--out", s(&out)]);
    assert_eq!(summary["partitions"], 3);
    assert_eq!(summary["files"], 4);
    assert_eq!(summary["rows_in"], 12);
    assert_eq!(summary["exact_duplicates"], 3);
    assert_eq!(summary["conflicting_duplicates"], 0);
    assert_eq!(summary["dialogues"], 3);
    assert_eq!(summary["turns"], 9);
    assert_eq!(summary["open_dialogues"], 0);
    assert_eq!(summary["window_end"], "2026-12-02T01:00:00Z");

    let got = turns_of(&out.join("turns"));
    assert_dialogue_ordered(&got);
    let expected: Vec<Turn> = rows.iter().map(turn).collect();
    assert_eq!(sorted(got.clone()), sorted(expected.clone()));

    // The same turns, already ordered and deduplicated in one plain file,
    // ingest to the same table.
    let ordered = tmp.path().join("ordered");
    write_rows(&ordered.join("part-0.parquet"), &rows, Shape::default());
    let again = tmp.path().join("again");
    ingest(&["--logs", s(&ordered), "--out", s(&again)]);
    assert_eq!(sorted(turns_of(&again.join("turns"))), sorted(got));
    assert_eq!(turns_of(&again.join("turns")), expected);

    // A second run into the same OUT needs --force; with it, the same output.
    let refused = labelgen(&["ingest", "--logs", s(&logs), "--out", s(&out), "--quiet"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("already exists"));
    ingest(&["--logs", s(&logs), "--out", s(&out), "--force"]);
    assert_eq!(sorted(turns_of(&out.join("turns"))), sorted(expected));
}

#[test]
fn conflicting_duplicates_keep_the_latest_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, out) = (tmp.path().join("logs"), tmp.path().join("out"));
    let version = |turn: i32, minute: Option<i64>, text: &str| Row {
        dialogue: "d",
        turn,
        minute,
        user: text.to_string(),
    };
    let file = |hour: &str, name: &str| logs.join(format!("date=2026-12-01/hour={hour}/{name}"));
    let plain = Shape::default();
    // Turn 0: the latest timestamp wins, wherever it arrived.
    // Turn 1: equal timestamps; the later partition wins.
    // Turn 2: no timestamps; the later file of the partition wins.
    write_rows(
        &file("10", "part-0.parquet"),
        &[
            version(0, Some(610), "newest"),
            version(1, Some(601), "older partition"),
            version(2, None, "first file"),
        ],
        plain,
    );
    write_rows(
        &file("10", "part-1.parquet"),
        &[version(2, None, "second file")],
        plain,
    );
    write_rows(
        &file("11", "part-0.parquet"),
        &[
            version(0, Some(605), "older"),
            version(1, Some(601), "later partition"),
        ],
        plain,
    );
    let summary = ingest(&["--logs", s(&logs), "--out", s(&out)]);
    assert_eq!(summary["conflicting_keys"], 3);
    assert_eq!(summary["conflicting_duplicates"], 3);
    assert_eq!(summary["exact_duplicates"], 0);
    let kept: Vec<String> = turns_of(&out.join("turns"))
        .into_iter()
        .map(|t| t.user_utterance)
        .collect();
    assert_eq!(kept, ["newest", "later partition", "second file"]);
}

#[test]
fn missing_optional_columns_are_null_filled_and_extra_ones_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, out) = (tmp.path().join("logs"), tmp.path().join("out"));
    let dir = logs.join("date=2026-12-01/hour=10");
    write_rows(
        &dir.join("part-0.parquet"),
        &[row("a", 0, 600)],
        Shape {
            drop: &["device_state", "timestamp"],
            extra: true,
            ..Shape::default()
        },
    );
    write_rows(
        &dir.join("part-1.parquet"),
        &[row("a", 1, 601)],
        Shape::default(),
    );
    // Turn 0 has no timestamp, so its activity is its partition's end, the
    // window's end: open under any timeout but 0.
    let args = [
        "--logs",
        s(&logs),
        "--out",
        s(&out),
        "--idle-timeout-minutes",
        "0",
    ];
    let summary = ingest(&args);
    assert_eq!(summary["null_filled_columns"]["device_state"], 1);
    assert_eq!(summary["null_filled_columns"]["timestamp"], 1);
    assert_eq!(summary["ignored_columns"]["ingest_host"], 1);
    let turns = turns_of(&out.join("turns"));
    assert_eq!(turns.len(), 2);
    assert_eq!(
        (turns[0].device_state.as_deref(), turns[0].timestamp_us),
        (None, None)
    );
    assert_eq!(turns[1].device_state.as_deref(), Some("idle"));
    let file = std::fs::read_dir(out.join("turns"))
        .unwrap()
        .next()
        .unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(file.unwrap().path()).unwrap(),
    )
    .unwrap();
    let names: Vec<String> = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert!(!names.contains(&"ingest_host".to_string()), "{names:?}");
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let missing = tmp.path().join("missing");
    write_rows(
        &missing.join("date=2026-12-01/hour=10/part-0.parquet"),
        &[row("a", 0, 600)],
        Shape {
            drop: &["user_utterance"],
            ..Shape::default()
        },
    );
    let run = labelgen(&["ingest", "--logs", s(&missing), "--out", s(&out), "--quiet"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let message = stderr(&run);
    assert!(
        message.contains("hour=10/part-0.parquet") && message.contains("`user_utterance`"),
        "{message}"
    );
    assert!(!out.exists());

    let invalid = tmp.path().join("invalid");
    write_rows(
        &invalid.join("date=2026-12-01/hour=10/part-0.parquet"),
        &[row("a", 0, 600), row("b", -1, 601)],
        Shape::default(),
    );
    let run = labelgen(&["ingest", "--logs", s(&invalid), "--out", s(&out), "--quiet"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let message = stderr(&run);
    assert!(
        message.contains("part-0.parquet: row 1 (dialogue b), column `turn_index`"),
        "{message}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "temporary output left: {leftovers:?}");

    let inside = missing.join("out");
    let run = labelgen(&[
        "ingest",
        "--logs",
        s(&missing),
        "--out",
        s(&inside),
        "--quiet",
    ]);
    assert!(stderr(&run).contains("overlap"), "{}", stderr(&run));
}

#[test]
fn open_and_gapped_dialogues_are_carried_or_skipped_and_every_row_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, out) = (tmp.path().join("logs"), tmp.path().join("out"));
    let dir = logs.join("date=2026-12-01/hour=10");
    // The window ends at 11:00. `late` spoke at 10:45: open with a 30
    // minute timeout. `gap` lacks turn 1, `tail` lacks turn 0 (it began
    // before the window), `done` is complete; one exact duplicate.
    write_rows(
        &dir.join("part-0.parquet"),
        &[
            row("late", 0, 640),
            row("late", 1, 645),
            row("gap", 0, 600),
            row("gap", 2, 602),
            row("tail", 1, 601),
            row("done", 0, 600),
            row("done", 1, 601),
            row("done", 1, 601),
        ],
        Shape::default(),
    );
    // An earlier day outside --from.
    write_rows(
        &logs.join("date=2026-11-30/hour=10/part-0.parquet"),
        &[row("old", 0, -800)],
        Shape::default(),
    );
    let args = ["--logs", s(&logs), "--out", s(&out), "--from", "2026-12-01"];
    let summary = ingest(&args);
    assert_eq!(summary["partitions"], 1);
    assert_eq!(summary["rows_in"], 8);
    assert_eq!(summary["open_dialogues"], 1);
    assert_eq!(summary["open_turns"], 2);
    assert_eq!(summary["skipped_no_first_turn"], 1);
    assert_eq!(summary["skipped_turn_gaps"], 1);
    assert_eq!(summary["skipped_turns"], 3);
    assert_eq!(summary["turns"], 2);
    let n = |key: &str| summary[key].as_u64().unwrap();
    assert_eq!(
        n("rows_in"),
        n("turns")
            + n("open_turns")
            + n("skipped_turns")
            + n("exact_duplicates")
            + n("conflicting_duplicates")
    );
    let ids = |dataset: &str| -> Vec<String> {
        let mut ids: Vec<String> = turns_of(&out.join(dataset))
            .into_iter()
            .map(|t| t.dialogue_id)
            .collect();
        ids.dedup();
        ids
    };
    assert_eq!(ids("turns"), ["done"]);
    assert_eq!(ids("open"), ["late"]);
    assert_eq!(sorted_ids(ids("skipped")), ["gap", "tail"]);

    // With a shorter timeout `late` is finished, and labelled.
    let short = ingest(&[
        "--logs",
        s(&logs),
        "--out",
        s(&out),
        "--from",
        "2026-12-01",
        "--idle-timeout-minutes",
        "10",
        "--force",
    ]);
    assert_eq!(short["open_dialogues"], 0);
    assert_eq!(sorted_ids(ids("turns")), ["done", "late"]);
}

fn sorted_ids(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// simulate -> synth -> pretrain -> train, all tiny; returns the model.
fn tiny_model(dir: &Path) -> std::path::PathBuf {
    let p = |name: &str| dir.join(name);
    // --days 2 and --hive-logs: the same turns also as a collector delivers
    // them, over two days of hourly partitions (see `simulate --hive-logs`).
    run_ok(&[
        "simulate",
        "--dialogues",
        "40",
        "--seed",
        "3",
        "--days",
        "2",
        "--hive-logs",
        "--out",
        s(&p("sim")),
        "--quiet",
    ]);
    pretrain_tiny(&p("sim/turns"), dir, Tiny::default());
    run_ok(&[
        "train",
        "--init",
        s(&p("pre")),
        "--logs",
        s(&p("sim/turns")),
        "--labels",
        s(&p("sim/annotations")),
        "--out",
        s(&p("model")),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    ]);
    p("model")
}

#[test]
fn ingested_logs_label_exactly_as_the_ordered_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let ordered = tmp.path().join("sim/turns");
    let turns = turns_of(&ordered);
    let logs = tmp.path().join("sim/logs/turns");
    let staged = tmp.path().join("staged");
    let summary = ingest(&[
        "--logs",
        s(&logs),
        "--out",
        s(&staged),
        "--idle-timeout-minutes",
        "0",
    ]);
    assert_eq!(summary["turns"].as_u64().unwrap() as usize, turns.len());
    assert!(summary["exact_duplicates"].as_u64().unwrap() > 0);
    assert!(
        summary["partitions"].as_u64().unwrap() > 24,
        "two days of hours"
    );
    assert_eq!(summary["skipped_dialogues"], 0);
    let staged_turns = turns_of(&staged.join("turns"));
    assert_dialogue_ordered(&staged_turns);
    assert_eq!(sorted(staged_turns), sorted(turns.clone()));

    let label = |input: &Path, out: &Path| {
        run_ok(&[
            "label",
            "--model",
            s(&model),
            "--logs",
            s(input),
            "--out",
            s(out),
            "--run-id",
            "same",
            "--quiet",
        ]);
        let mut labels = read_table::<Label>(out).unwrap().0;
        labels.sort_by(|a, b| (&a.dialogue_id, a.turn_index).cmp(&(&b.dialogue_id, b.turn_index)));
        labels
    };
    let direct = label(&ordered, &tmp.path().join("labels-direct"));
    let via_ingest = label(&staged.join("turns"), &tmp.path().join("labels-ingested"));
    assert_eq!(direct.len(), turns.len());
    assert_eq!(direct, via_ingest);
}
