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
    // Item difficulty (mean 0.219, 16.1% of turns at least 0.5 hard on this
    // seed), ambiguous items per label (88 to 304), and gold without
    // unanimity (15.3-16.2% of turns per label).
    let items = &summary["item_difficulty"];
    let mean = items["mean"].as_f64().unwrap();
    assert!((0.19..0.25).contains(&mean), "mean difficulty {mean}");
    let hard = items["hard_share"].as_f64().unwrap();
    assert!((0.13..0.19).contains(&hard), "hard share {hard}");
    for (label, range) in [
        ("intent", 200..400),
        ("failure_point", 200..400),
        ("slots", 200..400),
        ("goal_boundary", 50..150),
        ("goal_success", 50..150),
    ] {
        let n = items["ambiguous"][label].as_u64().unwrap();
        assert!(range.contains(&n), "{label}: {n} ambiguous items");
    }
    for label in ["intent", "failure_point", "slots"] {
        let split = summary["gold_not_unanimous"][label].as_f64().unwrap();
        assert!((0.13..0.19).contains(&split), "{label}: {split}");
    }
}

/// Annotators err together on hard items: given that a1 mislabels an
/// intent or failure point, a2 mislabels it far more often than a2's base
/// rate, and mostly with the same wrong label.
#[test]
fn annotator_errors_are_correlated() {
    use labelgen::data::dataset::read_table;
    use labelgen::data::tables::Annotation;
    use std::collections::HashMap;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    simulate(&dir, 3000, 4);
    let (rows, _) = read_table::<Annotation>(&dir.join("annotations")).unwrap();
    let mut by_turn: HashMap<(String, i32), HashMap<String, Annotation>> = HashMap::new();
    for row in rows {
        by_turn
            .entry((row.dialogue_id.clone(), row.turn_index))
            .or_default()
            .insert(row.annotator_id.clone(), row);
    }
    for label in ["intent", "failure_point"] {
        let get = |a: &Annotation| match label {
            "intent" => a.intent.clone(),
            _ => a.failure_point.clone(),
        };
        let (mut a2_wrong, mut a1_wrong, mut both, mut same) = (0, 0, 0, 0);
        for rows in by_turn.values() {
            let truth = get(&rows["truth"]);
            let (a1, a2) = (get(&rows["a1"]), get(&rows["a2"]));
            a2_wrong += usize::from(a2 != truth);
            if a1 != truth {
                a1_wrong += 1;
                both += usize::from(a2 != truth);
                same += usize::from(a2 == a1);
            }
        }
        let base = a2_wrong as f64 / by_turn.len() as f64;
        let given = both as f64 / a1_wrong as f64;
        // Independent errors gave given ~ base (0.06) and half the joint
        // errors agreeing (seed 3 before this model: 0.038 and 0.5).
        assert!(
            given > 2.0 * base,
            "{label}: {given} given a1 wrong, {base} overall"
        );
        assert!(
            same as f64 > 0.7 * both as f64,
            "{label}: {same} of {both} joint errors agree"
        );
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
