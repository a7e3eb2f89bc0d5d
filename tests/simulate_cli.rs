//! `labelgen simulate` end to end: determinism, validity, distributions.

mod common;

use common::{labelgen, simulate, stderr};

fn file_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["turns", "annotations"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for name in names {
            files.push((
                name.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&name).unwrap(),
            ));
        }
    }
    files
}

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let tmp = tempfile::tempdir().unwrap();
    simulate(&tmp.path().join("a"), 300, 5);
    simulate(&tmp.path().join("b"), 300, 5);
    simulate(&tmp.path().join("c"), 300, 6);
    let a = file_bytes(&tmp.path().join("a"));
    assert_eq!(a, file_bytes(&tmp.path().join("b")));
    assert_ne!(a, file_bytes(&tmp.path().join("c")));
}

#[test]
fn output_validates_against_the_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    simulate(&dir, 200, 1);
    let turns = dir.join("turns");
    let out = labelgen(&["validate", turns.to_str().unwrap(), "--table", "turns"]);
    assert!(out.status.success(), "{}", common::stdout(&out));
    let annotations = dir.join("annotations");
    let out = labelgen(&[
        "validate",
        annotations.to_str().unwrap(),
        "--table",
        "annotations",
        "--turns",
        turns.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", common::stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 0);
    assert_eq!(report["spans_checked_against_turns"], true);
    assert_eq!(report["dialogues"], 200);
}

#[test]
fn distributions_and_annotator_error_rates_are_as_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = simulate(&tmp.path().join("sim"), 4000, 3);
    let failures = summary["turns_per_failure_point"].as_object().unwrap();
    for class in ["correct", "false_wake", "asr", "nlu", "entity", "result"] {
        assert!(
            failures.get(class).and_then(|v| v.as_u64()).unwrap_or(0) > 50,
            "{class} is rare: {failures:?}"
        );
    }
    assert!(summary["turns_per_domain"].as_object().unwrap().len() >= 9);
    assert!(summary["turns_per_intent"].as_object().unwrap().len() >= 25);
    let context = summary["context_share"].as_f64().unwrap();
    assert!((0.15..=0.5).contains(&context), "context share {context}");
    let goals_per_dialogue = summary["goals"].as_f64().unwrap() / 4000.0;
    assert!(
        (1.5..=2.6).contains(&goals_per_dialogue),
        "{goals_per_dialogue} goals per dialogue"
    );
    // Realised per-label error rates of each annotator, against what was asked.
    let realised = summary["annotator_error_realised"].as_object().unwrap();
    for (annotator, asked) in [("a1", 0.06), ("a2", 0.06), ("a3", 0.06), ("single", 0.12)] {
        for label in ["intent", "failure_point", "slots"] {
            let rate = realised[annotator][label].as_f64().unwrap();
            assert!(
                (rate - asked).abs() < 0.02,
                "{annotator} {label}: {rate} vs {asked}"
            );
        }
    }
}

#[test]
fn existing_output_is_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    simulate(&dir, 20, 1);
    let before = file_bytes(&dir);
    let out = labelgen(&[
        "simulate",
        "--dialogues",
        "30",
        "--seed",
        "2",
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already exists") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, file_bytes(&dir), "a refused run changes nothing");
    let out = labelgen(&[
        "simulate",
        "--dialogues",
        "30",
        "--seed",
        "2",
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
        "--force",
    ]);
    assert!(out.status.success());
    assert_ne!(before, file_bytes(&dir));
    // No temporary directories are left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn bad_options_are_refused_with_the_option_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = labelgen(&[
        "simulate",
        "--dialogues",
        "5",
        "--out",
        tmp.path().to_str().unwrap(),
        "--single-error",
        "1.5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--single-error"), "{}", stderr(&out));
}
