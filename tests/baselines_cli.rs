//! The baselines that make the headline honest, end to end: the
//! copy-the-runtime system in `labelgen eval`, and the contextless ablation
//! that keeps the runtime features (`train --contextless turn-runtime`).

mod common;

use std::path::Path;

use common::{Tiny, labelgen, pretrain_tiny, run_ok, s, stderr};
use labelgen::data::dataset::{DatasetWriter, read_table};
use labelgen::data::tables::{Annotation, Label, TableRow, Turn};

fn write<T: TableRow>(path: &Path, rows: &[T]) {
    let mut writer = DatasetWriter::create(path, true).unwrap();
    writer.write_rows(rows).unwrap();
    writer.finish::<T>().unwrap();
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// (dialogue, turn, nlu_intent, dialogue_status, gold intent, gold goal,
/// gold success, gold failure point)
type Row = (
    &'static str,
    i32,
    Option<&'static str>,
    &'static str,
    &'static str,
    i32,
    bool,
    &'static str,
);

/// Two dialogues, five turns: the runtime is right on two of the four
/// turns with intent gold (d1/2 it misheard, d2/1 it logged no intent, d2/0
/// has no gold: a3 disagrees), and its goals match the gold's boundaries.
const ROWS: [Row; 5] = [
    (
        "d1",
        0,
        Some("PlayMusic"),
        "prompted",
        "PlayMusic",
        0,
        true,
        "correct",
    ),
    (
        "d1",
        1,
        Some("PlayMusic"),
        "completed",
        "PlayMusic",
        0,
        true,
        "correct",
    ),
    (
        "d1",
        2,
        Some("SetTimer"),
        "completed",
        "GetWeather",
        1,
        false,
        "nlu",
    ),
    (
        "d2",
        0,
        Some("SetTimer"),
        "completed",
        "SetTimer",
        0,
        true,
        "correct",
    ),
    ("d2", 1, None, "completed", "Stop", 1, true, "correct"),
];

fn write_tiny_tables(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let turns: Vec<Turn> = ROWS
        .iter()
        .map(|&(dialogue, turn, nlu, status, ..)| Turn {
            dialogue_id: dialogue.into(),
            turn_index: turn,
            user_utterance: "hello there".into(),
            system_response: "ok".into(),
            nlu_intent: nlu.map(str::to_string),
            dialogue_status: Some(status.into()),
            ..Turn::default()
        })
        .collect();
    let mut annotations = Vec::new();
    for &(dialogue, turn, _, _, intent, goal, success, failure) in &ROWS {
        for annotator in ["a1", "a2", "a3", "single"] {
            let disagrees = annotator == "a3" && (dialogue, turn) == ("d2", 0);
            annotations.push(Annotation {
                dialogue_id: dialogue.into(),
                turn_index: turn,
                annotator_id: annotator.into(),
                goal_id: Some(goal),
                goal_success: Some(success),
                intent: Some(if disagrees { "GetWeather" } else { intent }.into()),
                slots: Some(vec![]),
                failure_point: Some(failure.into()),
                context: None,
            });
        }
    }
    let (turns_path, gold_path) = (dir.join("turns"), dir.join("annotations"));
    write(&turns_path, &turns);
    write(&gold_path, &annotations);
    (turns_path, gold_path)
}

#[test]
fn the_runtime_baseline_is_judged_beside_the_annotator() {
    let tmp = tempfile::tempdir().unwrap();
    let (turns, gold) = write_tiny_tables(tmp.path());
    let out = tmp.path().join("report");
    let summary = run_ok(&[
        "eval",
        "--gold",
        s(&gold),
        "--turns",
        s(&turns),
        "--out",
        s(&out),
        "--bootstrap",
        "50",
    ]);
    let report = read_json(&out.join("report.json"));
    let names: Vec<&str> = report["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["runtime", "single", "human_leave_one_out"]);
    let runtime = &report["systems"][0];
    assert_eq!(runtime["kind"], "runtime");
    let value = |task: &str, metric: &str| {
        runtime["tasks"][task]["metrics"][metric]["value"]
            .as_f64()
            .unwrap()
    };
    // Intent: right on d1/0 and d1/1 of the four turns with gold; d2/1 has
    // no nlu_intent (missing, so wrong).
    assert_eq!(runtime["tasks"]["intent"]["items"], 4);
    assert_eq!(runtime["tasks"]["intent"]["missing"], 1);
    assert_eq!(value("intent", "accuracy"), 0.5);
    assert_eq!(summary["headline"]["runtime"]["intent"]["accuracy"], 0.5);
    // `correct` everywhere: wrong only on d1/2, the NLU failure.
    assert_eq!(value("failure_point", "accuracy"), 0.8);
    // Goals closed at every status but `prompted`: the gold's boundaries.
    assert_eq!(value("goal_segmentation", "boundary_f1"), 1.0);
    // Success when `completed`: d1's second goal failed, the runtime says not.
    assert_eq!(value("goal_success", "accuracy"), 0.75);
    assert!(
        runtime["tasks"].get("slots").is_none(),
        "the logs hold no slot hypothesis: {runtime}"
    );
    // Tested against the single annotator, which is right on every item.
    let vs = &runtime["tasks"]["intent"]["vs_baseline"];
    assert_eq!(vs["baseline"], "single");
    assert_eq!(vs["delta"].as_f64().unwrap(), -0.5);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| task | metric | runtime | single | human_leave_one_out |")
            && md.contains("| slots | f1 | n/a |")
            && md.contains("| runtime | intent | accuracy | -0.500 |"),
        "{md}"
    );

    // --no-runtime-baseline leaves it out; so does eval without the logs.
    for extra in [&["--turns", s(&turns), "--no-runtime-baseline"][..], &[]] {
        let out = tmp.path().join("without");
        let mut args = vec!["eval", "--gold", s(&gold), "--out", s(&out), "--force"];
        args.extend_from_slice(extra);
        let summary = run_ok(&args);
        assert!(summary["headline"].get("runtime").is_none(), "{summary}");
    }
    // A prediction may not take the baseline's name.
    let labels = tmp.path().join("labels");
    write(
        &labels,
        &[Label {
            dialogue_id: "d1".into(),
            turn_index: 0,
            model_id: "m".into(),
            run_id: "r".into(),
            ..Label::default()
        }],
    );
    let pred = format!("runtime={}", labels.display());
    let result = labelgen(&[
        "eval",
        "--gold",
        s(&gold),
        "--turns",
        s(&turns),
        "--pred",
        &pred,
        "--out",
        s(&tmp.path().join("clash")),
    ]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("--pred name `runtime`"),
        "{}",
        stderr(&result)
    );
}

/// Per turn: the intent, failure point and slot-set probabilities, which
/// depend only on what the model reads of that turn when it reads turns alone.
type TurnProbabilities = Vec<(String, i32, [Option<f32>; 3])>;

fn turn_probabilities(labels: &Path) -> TurnProbabilities {
    let (mut rows, _) = read_table::<Label>(labels).unwrap();
    rows.sort_by(|a, b| (&a.dialogue_id, a.turn_index).cmp(&(&b.dialogue_id, b.turn_index)));
    rows.into_iter()
        .map(|l| {
            let probabilities = [l.intent_prob, l.failure_point_prob, l.slots_prob];
            (l.dialogue_id, l.turn_index, probabilities)
        })
        .collect()
}

/// A frozen contextless model reading `input` (turn, turn-runtime), trained into `dir/out`.
fn train_contextless(dir: &Path, out: &str, input: &str) -> serde_json::Value {
    run_ok(&[
        "train",
        "--init",
        s(&dir.join("pre")),
        "--logs",
        s(&dir.join("sim/turns")),
        "--labels",
        s(&dir.join("sim/annotations")),
        "--out",
        s(&dir.join(out)),
        "--contextless",
        input,
        "--freeze-encoder",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--learning-rate",
        "3e-3",
        "--dev-share",
        "0.25",
        "--quiet",
    ])
}

/// `dir/model`'s turn probabilities on `dir/logs`.
fn label_probabilities(dir: &Path, model: &str, logs: &str) -> TurnProbabilities {
    let out = dir.join(format!("{model}-labels-{}", logs.replace('/', "-")));
    run_ok(&[
        "label",
        "--model",
        s(&dir.join(model)),
        "--logs",
        s(&dir.join(logs)),
        "--out",
        s(&out),
        "--quiet",
    ]);
    turn_probabilities(&out)
}

/// How many turns' probabilities differ between two labellings of the
/// same turns: (first turns, later turns).
fn moved(a: &TurnProbabilities, b: &TurnProbabilities) -> (usize, usize) {
    assert_eq!(a.len(), b.len());
    let count = |first: bool| {
        a.iter()
            .zip(b)
            .filter(|(x, y)| {
                assert_eq!((&x.0, x.1), (&y.0, y.1));
                (x.1 == 0) == first && x.2 != y.2
            })
            .count()
    };
    (count(true), count(false))
}

/// Writes `dir/runtime-changed` (the logs with only the runtime's
/// hypotheses and confidences changed) and `dir/first-turns-changed` (only
/// the text of every dialogue's first turn changed).
fn write_changed_logs(dir: &Path, turns: &[Turn]) {
    let runtime_changed: Vec<Turn> = turns
        .iter()
        .map(|t| Turn {
            nlu_intent: Some("PlayMusic".into()),
            dialogue_status: Some("failed".into()),
            nlu_confidence: Some(0.05),
            asr_confidence: Some(0.05),
            ..t.clone()
        })
        .collect();
    write(&dir.join("runtime-changed"), &runtime_changed);
    let first_turns_changed: Vec<Turn> = turns
        .iter()
        .map(|t| Turn {
            user_utterance: if t.turn_index == 0 {
                "what is the weather like tomorrow".into()
            } else {
                t.user_utterance.clone()
            },
            ..t.clone()
        })
        .collect();
    write(&dir.join("first-turns-changed"), &first_turns_changed);
}

#[test]
fn the_turn_runtime_ablation_reads_runtime_features_and_no_other_turn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::simulate(&dir.join("sim"), 60, 1);
    pretrain_tiny(
        &dir.join("sim/turns"),
        dir,
        Tiny {
            max_steps: 3,
            ..Tiny::default()
        },
    );
    let with_runtime = train_contextless(dir, "turn-runtime", "turn-runtime");
    assert_eq!(with_runtime["contextless"], true);
    assert_eq!(with_runtime["utterance_only"], false);
    assert_eq!(with_runtime["runtime_features"], true);
    assert_eq!(with_runtime["intent_change_weight"], 0.0);
    let text_only = train_contextless(dir, "turn", "turn");
    assert_eq!(text_only["runtime_features"], false);
    // config.json gains one flag for the new variant; the others are written as before.
    let config = read_json(&dir.join("turn-runtime/config.json"));
    assert_eq!(
        (&config["contextless"], &config["runtime_features"]),
        (&serde_json::json!(true), &serde_json::json!(true))
    );
    assert!(config.get("utterance_only").is_none(), "{config}");
    let config = read_json(&dir.join("turn/config.json"));
    assert!(config.get("runtime_features").is_none(), "{config}");
    assert_eq!(config["contextless"], true);

    let (turns, _) = read_table::<Turn>(&dir.join("sim/turns")).unwrap();
    write_changed_logs(dir, &turns);
    let original = label_probabilities(dir, "turn-runtime", "sim/turns");
    assert_eq!(original.len(), turns.len());
    assert!(original.iter().all(|(_, _, p)| p[0].is_some()));
    let (first, later) = moved(
        &original,
        &label_probabilities(dir, "turn-runtime", "runtime-changed"),
    );
    assert!(
        first + later > turns.len() / 2,
        "the ablation reads the runtime features: {} of {} turns moved",
        first + later,
        turns.len()
    );
    let text_only = moved(
        &label_probabilities(dir, "turn", "sim/turns"),
        &label_probabilities(dir, "turn", "runtime-changed"),
    );
    assert_eq!(
        text_only,
        (0, 0),
        "the text-only baseline does not read them"
    );
    // Each turn alone: the first turns' new text moves their own labels and
    // no other turn's.
    let (first, later) = moved(
        &original,
        &label_probabilities(dir, "turn-runtime", "first-turns-changed"),
    );
    assert!(first > 0, "the first turns' own labels move");
    assert_eq!(later, 0, "later turns do not see the first turn");
}
