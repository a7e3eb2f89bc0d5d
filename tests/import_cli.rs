//! `labelgen import sgd|uss` end to end on the fixtures in tests/fixtures:
//! counts, mappings, valid output, and bad input refused with a located
//! message, the project's exit code and no partial output.

mod common;

use std::path::{Path, PathBuf};

use common::{labelgen, stderr, stdout};
use labelgen::data::dataset::read_table;
use labelgen::data::tables::{Annotation, Turn};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs an import; returns (exit code, stdout, stderr).
fn import(args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["import"];
    full.extend_from_slice(args);
    let out = labelgen(&full);
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

fn import_ok(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = import(args);
    assert_eq!(code, 0, "import failed: {err}");
    serde_json::from_str(&out).expect("import prints a JSON summary")
}

/// Both tables pass `labelgen validate`, spans checked against the turns.
fn assert_valid(out: &Path) {
    let turns = out.join("turns");
    let result = labelgen(&["validate", s(&turns), "--table", "turns", "--json"]);
    assert!(result.status.success(), "{}", stdout(&result));
    let result = labelgen(&[
        "validate",
        s(&out.join("annotations")),
        "--table",
        "annotations",
        "--turns",
        s(&turns),
        "--json",
    ]);
    assert!(result.status.success(), "{}", stdout(&result));
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["errors"], 0);
    assert_eq!(report["warnings"], 0);
}

/// Nothing at all was written under `out` (no dataset, no temporary directory).
fn assert_nothing_written(out: &Path) {
    if out.exists() {
        let left: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "partial output left behind: {left:?}");
    }
}

fn assert_refused(result: (i32, String, String), code: i32, needles: &[&str], out: &Path) {
    let (got, _, err) = result;
    assert_eq!(got, code, "expected exit {code}, got {got}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "message lacks {needle:?}: {err}");
    }
    assert_nothing_written(out);
}

#[test]
fn sgd_fixture_imports_with_its_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sgd");
    let summary = import_ok(&["sgd", s(&fixture("sgd")), "--out", s(&out), "--quiet"]);
    assert_eq!(summary["corpus"], "sgd");
    assert_eq!(summary["files"], 2);
    assert_eq!(summary["dialogues"], 3);
    assert_eq!(summary["turns"], 11);
    assert_eq!(summary["annotations"], 11);
    assert_eq!(summary["goals"], 5);
    assert_eq!(summary["goal_success_rate"], 0.6);
    assert_eq!(
        summary["goal_outcomes"],
        serde_json::json!({
            "information_given": 2,
            "no_results": 1,
            "transaction_declined_by_user": 1,
            "transaction_notify_success": 1
        })
    );
    assert_eq!(summary["multi_frame_turns"], 1);
    assert_eq!(summary["slot_spans"], 7);
    assert_eq!(summary["skipped"]["slot_spans_out_of_range"], 1);
    assert_eq!(
        summary["adjusted"]["user_turns_without_response_kept_with_empty_response"],
        1
    );
    assert_eq!(summary["turns_per_intent"]["NONE"], 1);
    assert_valid(&out);

    let (turns, _) = read_table::<Turn>(&out.join("turns")).unwrap();
    assert!(
        turns
            .iter()
            .all(|t| t.domain.is_none() && t.nlu_intent.is_none())
    );
    let last = turns
        .iter()
        .find(|t| t.dialogue_id == "2_00000" && t.turn_index == 1)
        .unwrap();
    assert_eq!(
        (last.user_utterance.as_str(), last.system_response.as_str()),
        ("Thanks!", "")
    );
    let (annotations, _) = read_table::<Annotation>(&out.join("annotations")).unwrap();
    assert!(
        annotations
            .iter()
            .all(|a| a.annotator_id == "sgd" && a.failure_point.is_none())
    );
    let booking = annotations
        .iter()
        .find(|a| a.dialogue_id == "1_00000" && a.turn_index == 2)
        .unwrap();
    assert_eq!(booking.intent.as_deref(), Some("ReserveRestaurant"));
    assert_eq!(
        (booking.goal_id, booking.goal_success),
        (Some(1), Some(true))
    );
}

#[test]
fn sgd_domain_from_service_is_an_opt_in() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sgd");
    let summary = import_ok(&[
        "sgd",
        s(&fixture("sgd")),
        "--out",
        s(&out),
        "--domain-from-service",
        "--quiet",
    ]);
    assert_eq!(summary["domain_from_service"], true);
    let (turns, _) = read_table::<Turn>(&out.join("turns")).unwrap();
    let domains: std::collections::BTreeSet<_> =
        turns.iter().map(|t| t.domain.clone().unwrap()).collect();
    assert_eq!(
        domains.into_iter().collect::<Vec<_>>(),
        ["Movies", "Restaurants", "RideSharing", "Weather"]
    );
    assert!(turns.iter().all(|t| t.nlu_intent.is_none()));
}

#[test]
fn uss_fixture_imports_with_its_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("uss");
    let summary = import_ok(&[
        "uss",
        s(&fixture("uss/sample.txt")),
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_eq!(summary["corpus"], "uss");
    assert_eq!(summary["dialogues"], 3);
    assert_eq!(summary["turns"], 7);
    assert_eq!(summary["annotations"], 23);
    assert_eq!(
        summary["annotators"],
        serde_json::json!(["a1", "a2", "a3", "a4"])
    );
    assert_eq!(
        summary["raters_per_dialogue"],
        serde_json::json!({"3": 2, "4": 1})
    );
    assert_eq!(summary["goal_success_rate"], 0.6);
    assert_eq!(summary["turns_judged"], 4);
    assert_eq!(summary["turns_not_judged"], 3);
    assert_eq!(
        summary["adjusted"]["system_turns_joined_into_one_response"],
        1
    );
    assert_eq!(
        summary["skipped"]["first_user_turn_ratings_judge_no_response"],
        3
    );
    assert_valid(&out);

    let (turns, _) = read_table::<Turn>(&out.join("turns")).unwrap();
    let music = turns
        .iter()
        .find(|t| t.dialogue_id == "uss-sample-00001" && t.turn_index == 0)
        .unwrap();
    assert_eq!(music.system_response, "Which song? I can play Take Five.");
    assert_eq!(music.explicit_feedback, Some(0));
    assert_eq!(music.barge_in, None);
    // Windows line endings in the third session are stripped.
    let weather = turns
        .iter()
        .find(|t| t.dialogue_id == "uss-sample-00002")
        .unwrap();
    assert_eq!(weather.system_response, "Sunny.");

    let (annotations, _) = read_table::<Annotation>(&out.join("annotations")).unwrap();
    let label = |dialogue: &str, turn: i32, annotator: &str| {
        annotations
            .iter()
            .find(|a| {
                a.dialogue_id == dialogue && a.turn_index == turn && a.annotator_id == annotator
            })
            .map(|a| (a.goal_success, a.failure_point.clone()))
            .unwrap()
    };
    let d0 = "uss-sample-00000";
    // "That is not what I asked for." rated 1,2,3 judges turn 1's response.
    assert_eq!(label(d0, 1, "a1"), (Some(true), Some("defect".into())));
    assert_eq!(label(d0, 1, "a2"), (Some(false), Some("defect".into())));
    assert_eq!(label(d0, 1, "a3"), (Some(true), Some("correct".into())));
    assert_eq!(label(d0, 3, "a1"), (Some(true), None));
    assert_eq!(label("uss-sample-00002", 0, "a1"), (Some(false), None));
    assert!(
        annotations
            .iter()
            .all(|a| a.goal_id == Some(0) && a.intent.is_none() && a.slots.is_none())
    );
    assert!(
        !annotations
            .iter()
            .any(|a| a.dialogue_id == "uss-sample-00002" && a.annotator_id == "a4")
    );

    // The user's dialogue act rides along as an extra column.
    let result = labelgen(&["validate", s(&out.join("turns")), "--table", "turns"]);
    assert!(stdout(&result).contains("user_act"), "{}", stdout(&result));
}

#[test]
fn existing_output_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("uss");
    let file = fixture("uss/sample.txt");
    import_ok(&["uss", s(&file), "--out", s(&out), "--quiet"]);
    let (code, _, err) = import(&["uss", s(&file), "--out", s(&out), "--quiet"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");
    import_ok(&["uss", s(&file), "--out", s(&out), "--quiet", "--force"]);
    assert_valid(&out);
}

#[test]
fn quiet_keeps_stderr_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sgd");
    let (code, _, err) = import(&["sgd", s(&fixture("sgd")), "--out", s(&out), "--quiet"]);
    assert_eq!((code, err.as_str()), (0, ""));
}

/// A copy of the SGD fixture split in which `edit` changes one file.
fn broken_sgd(dir: &Path, file: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let split = dir.join("split");
    std::fs::create_dir_all(&split).unwrap();
    for name in ["schema.json", "dialogues_001.json", "dialogues_002.json"] {
        let text = std::fs::read_to_string(fixture("sgd").join(name)).unwrap();
        let text = if name == file { edit(text) } else { text };
        std::fs::write(split.join(name), text).unwrap();
    }
    split
}

#[test]
fn sgd_bad_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");

    // Missing directory: an I/O error, exit 2.
    let missing = tmp.path().join("nope");
    let result = import(&["sgd", s(&missing), "--out", s(&out)]);
    assert_refused(result, 2, &["nope", "no such file"], &out);

    // The corpus root instead of a split: exit 2 with a hint.
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("train")).unwrap();
    let result = import(&["sgd", s(&root), "--out", s(&out)]);
    assert_refused(result, 2, &["no dialogues_*.json", "train"], &out);

    // No schema.json.
    let split = broken_sgd(&tmp.path().join("a"), "", |t| t);
    std::fs::remove_file(split.join("schema.json")).unwrap();
    let result = import(&["sgd", s(&split), "--out", s(&out)]);
    assert_refused(result, 2, &["schema.json"], &out);

    // Broken JSON in the second dialogue of a file: file, line and dialogue named; exit 1.
    let split = broken_sgd(&tmp.path().join("b"), "dialogues_001.json", |t| {
        t.replace(
            "\"Find me a movie in Dublin.\"",
            "\"Find me a movie in Dublin.",
        )
    });
    let result = import(&["sgd", s(&split), "--out", s(&out)]);
    assert_refused(
        result,
        1,
        &["dialogues_001.json", "line", "dialogue 1_00001"],
        &out,
    );

    // Valid JSON that breaks the format: an unknown speaker.
    let split = broken_sgd(&tmp.path().join("c"), "dialogues_002.json", |t| {
        t.replacen("\"speaker\": \"SYSTEM\"", "\"speaker\": \"BOT\"", 1)
    });
    let result = import(&["sgd", s(&split), "--out", s(&out)]);
    assert_refused(
        result,
        1,
        &["dialogues_002.json", "dialogue 2_00000", "turn 1", "BOT"],
        &out,
    );

    // A field of the wrong type.
    let split = broken_sgd(&tmp.path().join("d"), "dialogues_002.json", |t| {
        t.replacen("\"exclusive_end\": 99", "\"exclusive_end\": \"99\"", 1)
    });
    let result = import(&["sgd", s(&split), "--out", s(&out)]);
    assert_refused(result, 1, &["dialogues_002.json", "dialogue 2_00000"], &out);

    // The same dialogue twice.
    let split = broken_sgd(&tmp.path().join("e"), "dialogues_002.json", |t| {
        t.replace("2_00000", "1_00000")
    });
    let result = import(&["sgd", s(&split), "--out", s(&out)]);
    assert_refused(
        result,
        1,
        &["1_00000", "appears twice", "dialogues_001.json"],
        &out,
    );
}

#[test]
fn uss_bad_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let sample = std::fs::read_to_string(fixture("uss/sample.txt")).unwrap();
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    let missing = tmp.path().join("missing.txt");
    let result = import(&["uss", s(&missing), "--out", s(&out)]);
    assert_refused(result, 2, &["missing.txt", "no such file"], &out);

    // Line 5 of the fixture with a rating out of the 1-5 scale.
    let bad = write("bad.txt", &sample.replace("1,2,3", "1,9,3"));
    let result = import(&["uss", s(&bad), "--out", s(&out)]);
    assert_refused(result, 1, &["bad.txt", "line 5:", "\"9\""], &out);

    let bad = write("role.txt", &sample.replace("SYSTEM\tSunny.", "BOT\tSunny."));
    let result = import(&["uss", s(&bad), "--out", s(&out)]);
    assert_refused(result, 1, &["line 20:", "\"BOT\""], &out);

    // Cut off before the last OVERALL line.
    let cut = sample.rfind("USER\tOVERALL").unwrap();
    let bad = write("truncated.txt", &sample[..cut]);
    let result = import(&["uss", s(&bad), "--out", s(&out)]);
    assert_refused(
        result,
        1,
        &["lines 19-20", "no OVERALL line", "truncated"],
        &out,
    );

    let bad = write("raters.txt", &sample.replace("3,3,3\n", "3,3\n"));
    let result = import(&["uss", s(&bad), "--out", s(&out)]);
    assert_refused(result, 1, &["line 3:", "2 ratings", "line 9"], &out);

    // A missing blank line between sessions.
    let bad = write("joined.txt", &sample.replacen("3,2,4\n\n", "3,2,4\n", 1));
    let result = import(&["uss", s(&bad), "--out", s(&out)]);
    assert_refused(
        result,
        1,
        &["line 10:", "after the OVERALL line (line 9)"],
        &out,
    );

    let bad = write("empty.txt", "\n\n");
    let result = import(&["uss", s(&bad), "--out", s(&out)]);
    assert_refused(result, 1, &["no sessions"], &out);
}
