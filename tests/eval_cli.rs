//! `labelgen eval` end to end on sample_data: the report, its plots and
//! review list, a prediction with confidences, and bad inputs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{TurnKey, labelgen, read_json, stderr, unanimous_gold};
use labelgen::data::dataset::{DatasetWriter, read_table};
use labelgen::data::tables::{Annotation, Label, LabelledSlotSpan};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data")
}

fn run_eval(args: &[&str]) -> serde_json::Value {
    let out = labelgen(args);
    assert!(out.status.success(), "eval failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("eval prints JSON")
}

/// A stand-in model: the truth, with every 7th intent wrong at low
/// confidence and one failure point wrong at high confidence.
fn write_predictions(dir: &Path, drop_dialogue: Option<&str>, extra: bool) -> PathBuf {
    write_labels(&dir.join("labels"), &oracle_labels(drop_dialogue, extra))
}

fn write_labels(path: &Path, labels: &[Label]) -> PathBuf {
    let mut writer = DatasetWriter::create(path, true).unwrap();
    writer.write_rows(labels).unwrap();
    writer.finish::<Label>().unwrap();
    path.to_path_buf()
}

/// The rows of [`write_predictions`].
fn oracle_labels(drop_dialogue: Option<&str>, extra: bool) -> Vec<Label> {
    let (rows, _) = read_table::<Annotation>(&sample().join("annotations")).unwrap();
    let mut labels: Vec<Label> = rows
        .into_iter()
        .filter(|a| a.annotator_id == "truth" && Some(a.dialogue_id.as_str()) != drop_dialogue)
        .enumerate()
        .map(|(i, a)| {
            let wrong_intent = i % 7 == 3;
            let wrong_failure = i == 10;
            Label {
                dialogue_id: a.dialogue_id.clone(),
                turn_index: a.turn_index,
                goal_id: a.goal_id,
                goal_boundary_prob: Some(0.9),
                goal_success: a.goal_success,
                goal_success_prob: Some(0.9),
                intent: if wrong_intent {
                    Some("GetWeather".into())
                } else {
                    a.intent.clone()
                },
                intent_prob: Some(if wrong_intent { 0.55 } else { 0.97 }),
                slots: a.slots.as_ref().map(|spans| {
                    spans
                        .iter()
                        .map(|s| LabelledSlotSpan {
                            slot: s.slot.clone(),
                            start: s.start,
                            end: s.end,
                            text: String::new(),
                            probability: 0.9,
                        })
                        .collect()
                }),
                slots_prob: Some(0.9),
                failure_point: if wrong_failure {
                    Some("result".into())
                } else {
                    a.failure_point.clone()
                },
                failure_point_prob: Some(if wrong_failure { 0.99 } else { 0.9 }),
                model_id: "test".into(),
                run_id: "r1".into(),
            }
        })
        .collect();
    if extra {
        labels.push(Label {
            dialogue_id: "not-in-gold".into(),
            turn_index: 0,
            intent: Some("PlayMusik".into()),
            model_id: "test".into(),
            run_id: "r1".into(),
            ..Label::default()
        });
    }
    labels
}

/// Unanimous gold of a1, a2 and a3 on sample_data, worked out here apart
/// from eval's code: per task, the turns where all three gave the same label.
struct HandGold {
    intent: BTreeMap<TurnKey, String>,
    failure_point: BTreeMap<TurnKey, String>,
    /// The turns the truth marks as needing context.
    context: BTreeSet<TurnKey>,
}

fn key(dialogue: &str, turn: i32) -> TurnKey {
    (dialogue.to_string(), turn)
}

fn hand_gold() -> HandGold {
    let (rows, _) = read_table::<Annotation>(&sample().join("annotations")).unwrap();
    HandGold {
        intent: unanimous_gold(&rows, |a| &a.intent),
        failure_point: unanimous_gold(&rows, |a| &a.failure_point),
        context: rows
            .iter()
            .filter(|a| a.annotator_id == "truth" && a.context.is_some())
            .map(|a| key(&a.dialogue_id, a.turn_index))
            .collect(),
    }
}

/// One annotator's labels on sample_data for one task.
fn annotator_labels(
    annotator: &str,
    field: fn(&Annotation) -> &Option<String>,
) -> BTreeMap<TurnKey, String> {
    let (rows, _) = read_table::<Annotation>(&sample().join("annotations")).unwrap();
    rows.iter()
        .filter(|a| a.annotator_id == annotator)
        .filter_map(|a| Some((key(&a.dialogue_id, a.turn_index), field(a).clone()?)))
        .collect()
}

fn intents_of(labels: &[Label]) -> BTreeMap<TurnKey, String> {
    labels
        .iter()
        .filter_map(|l| Some((key(&l.dialogue_id, l.turn_index), l.intent.clone()?)))
        .collect()
}

/// Accuracy against `gold` on its items (those in `only`, if given), a
/// missing label counting as wrong; and the number of items.
fn hand_accuracy(
    gold: &BTreeMap<TurnKey, String>,
    labels: &BTreeMap<TurnKey, String>,
    only: Option<&BTreeSet<TurnKey>>,
) -> (f64, u64) {
    let items: Vec<(&TurnKey, &String)> = gold
        .iter()
        .filter(|(k, _)| only.is_none_or(|o| o.contains(*k)))
        .collect();
    let right = items
        .iter()
        .filter(|(k, g)| labels.get(*k) == Some(*g))
        .count();
    (right as f64 / items.len() as f64, items.len() as u64)
}

/// A report estimate's value and interval.
fn estimate(e: &serde_json::Value) -> (f64, f64, f64) {
    (
        e["value"].as_f64().unwrap(),
        e["ci95"][0].as_f64().unwrap(),
        e["ci95"][1].as_f64().unwrap(),
    )
}

/// The width of a 95% normal interval for a share `p` of `n` items. Dialogues
/// are resampled, not turns, so the bootstrap's is wider by the clustering;
/// a width far off this (none at all, or most of [0, 1]) is a broken bootstrap.
fn binomial_width(p: f64, n: u64) -> f64 {
    2.0 * 1.96 * (p * (1.0 - p) / n as f64).sqrt()
}

/// `eval` of the sample data's annotations alone (the single annotator
/// against the unanimous gold): its temp dir, report folder, JSON summary
/// and report.json.
fn single_annotator_report() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    serde_json::Value,
    serde_json::Value,
) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let gold = sample().join("annotations");
    let summary = run_eval(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "200",
    ]);
    let report = read_json(&out.join("report.json"));
    (tmp, out, summary, report)
}

#[test]
fn the_single_annotators_metrics_match_a_count_by_hand_with_real_intervals() {
    let (_tmp, _, summary, report) = single_annotator_report();
    // The single annotator against the unanimous gold, counted by hand.
    let hand = hand_gold();
    let single_intent = annotator_labels("single", |a| &a.intent);
    let single_failure = annotator_labels("single", |a| &a.failure_point);
    let (intent_accuracy, intent_items) = hand_accuracy(&hand.intent, &single_intent, None);
    let (failure_accuracy, failure_items) =
        hand_accuracy(&hand.failure_point, &single_failure, None);
    // What README reports for sample_data: the annotator errs on about one turn in nine.
    assert!((0.85..0.92).contains(&intent_accuracy), "{intent_accuracy}");
    let headline = summary["headline"]["single"]["intent"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!(
        (headline - intent_accuracy).abs() < 1e-9,
        "summary says {headline}, counted {intent_accuracy}"
    );
    let systems: Vec<&str> = report["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["single", "human_leave_one_out"]);
    for task in [
        "goal_segmentation",
        "goal_success",
        "intent",
        "slots",
        "failure_point",
    ] {
        let t = &report["systems"][0]["tasks"][task];
        let headline = t["headline"].as_str().unwrap();
        let (value, lo, hi) = estimate(&t["metrics"][headline]);
        // A real interval around the estimate: neither a point nor most of [0, 1].
        assert!(
            lo < value && value < hi && hi - lo > 0.005 && hi - lo < 0.3,
            "{task}: {value} in [{lo}, {hi}]"
        );
        assert!(report["gold"]["items"][task]["with_gold"].as_u64().unwrap() > 0);
        let counted = match task {
            "intent" => Some((intent_accuracy, intent_items)),
            "failure_point" => Some((failure_accuracy, failure_items)),
            _ => None,
        };
        if let Some((expected, items)) = counted {
            assert!(
                (value - expected).abs() < 1e-9,
                "{task}: {value}, counted {expected}"
            );
            assert_eq!(t["items"].as_u64().unwrap(), items, "{task} items");
            let width = binomial_width(expected, items);
            assert!(
                hi - lo > 0.5 * width && hi - lo < 3.0 * width,
                "{task}: [{lo}, {hi}] against a binomial width of {width}"
            );
        }
    }
}

#[test]
fn the_turns_that_need_context_are_judged_apart() {
    let (_tmp, out, _, report) = single_annotator_report();
    let gold = sample().join("annotations");
    let hand = hand_gold();
    let single_intent = annotator_labels("single", |a| &a.intent);
    // The turns whose meaning needs context: every turn the truth marks.
    let (rows, _) = read_table::<Annotation>(&gold).unwrap();
    let marked = rows
        .iter()
        .filter(|a| a.annotator_id == "truth" && a.context.is_some())
        .count() as u64;
    let context = &report["subsets"]["context"];
    assert_eq!(context["available"], true, "{context}");
    assert_eq!(context["marked_turns"].as_u64().unwrap(), marked);
    let dialogues = context["dialogues"].as_u64().unwrap();
    assert!((20..200).contains(&dialogues), "{dialogues} dialogues");
    let turns_with_intent_gold = report["gold"]["items"]["intent"]["with_gold"]
        .as_u64()
        .unwrap();
    for task in ["intent", "slots"] {
        let t = &context[task];
        let items = t["items"].as_u64().unwrap();
        // About 30% of turns need context; unanimous gold keeps most of them.
        assert!(
            items * 10 > turns_with_intent_gold && items * 2 < turns_with_intent_gold,
            "{task}: {items} context items of {turns_with_intent_gold}"
        );
        assert_eq!(items + t["without_gold"].as_u64().unwrap(), marked);
        let names: Vec<&str> = t["systems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["single", "human_leave_one_out"]);
        let single = &t["systems"][0];
        assert_eq!(single["items"].as_u64().unwrap(), items);
        let (value, lo, hi) = estimate(&single["metrics"][t["headline"].as_str().unwrap()]);
        assert!(
            0.5 < value && lo < value && value < hi && hi - lo < 0.5,
            "{task}: {value} in [{lo}, {hi}]"
        );
        if task == "intent" {
            let (expected, items) =
                hand_accuracy(&hand.intent, &single_intent, Some(&hand.context));
            assert!(
                (value - expected).abs() < 1e-9,
                "context intent: {value}, counted {expected}"
            );
            assert_eq!(single["items"].as_u64().unwrap(), items);
            let width = binomial_width(expected, items);
            assert!(
                hi - lo > 0.5 * width && hi - lo < 3.0 * width,
                "context intent: [{lo}, {hi}] against a binomial width of {width}"
            );
        }
        assert!(
            t["comparisons"].as_array().unwrap().is_empty(),
            "no prediction"
        );
    }
    assert!(
        context["reasons"]["ellipsis"].as_u64().unwrap() > 0,
        "{context}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains(&format!("{marked} marked turns in {dialogues} dialogues")),
        "{md}"
    );
}

#[test]
fn the_report_has_its_documented_keys_sections_plots_and_review_list() {
    let (_tmp, out, _, report) = single_annotator_report();
    // Stable keys, documented in README.
    for key in [
        "gold",
        "systems",
        "subsets",
        "failure_point_vs_human",
        "confusion_labels",
        "confusion",
        "threshold_sweeps",
        "annotators",
        "inputs",
        "review_items",
        "settings",
    ] {
        assert!(report.get(key).is_some(), "report.json lacks {key}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## Headline metrics") && md.contains("without gold (excluded)"),
        "{md}"
    );
    assert!(md.contains("## Turns whose meaning needs context"), "{md}");
    let svg = std::fs::read_to_string(out.join("plots/confusion_single.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("false_wake"));
    let png = std::fs::read(out.join("plots/confusion_single.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // The review list: annotator disagreements, readable by any Parquet reader.
    let (n, _) = count_rows(&out.join("review"));
    assert_eq!(n as u64, report["review_items"].as_u64().unwrap());
    assert!(n > 0);
}

fn count_rows(path: &Path) -> (usize, usize) {
    let mut rows = 0;
    let mut files = 0;
    for file in labelgen::data::dataset::part_files(path).unwrap() {
        let (reader, n) = labelgen::data::dataset::open_part(&file).unwrap();
        drop(reader);
        rows += n;
        files += 1;
    }
    (rows, files)
}

#[test]
fn a_prediction_with_confidences_is_swept_compared_and_reviewed() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = write_predictions(tmp.path(), None, false);
    let out = tmp.path().join("report");
    let gold = sample().join("annotations");
    let turns = sample().join("turns");
    let pred = format!("oracle={}", labels.display());
    run_eval(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--pred",
        &pred,
        "--turns",
        turns.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "300",
    ]);
    let report: serde_json::Value = read_json(&out.join("report.json"));
    let oracle = &report["systems"][0];
    assert_eq!(oracle["name"], "oracle");
    // Built from the truth, it beats the single annotator on failure points, significantly.
    // The lead, counted by hand: oracle minus single failure-point accuracy.
    let vs = &oracle["tasks"]["failure_point"]["vs_baseline"];
    assert_eq!(vs["baseline"], "single");
    let hand = hand_gold();
    let oracle_failures: BTreeMap<TurnKey, String> = oracle_labels(None, false)
        .into_iter()
        .filter_map(|l| Some((key(&l.dialogue_id, l.turn_index), l.failure_point?)))
        .collect();
    let single_failures = annotator_labels("single", |a| &a.failure_point);
    let lead = hand_accuracy(&hand.failure_point, &oracle_failures, None).0
        - hand_accuracy(&hand.failure_point, &single_failures, None).0;
    let delta = vs["delta"].as_f64().unwrap();
    assert!(
        (delta - lead).abs() < 1e-9 && lead > 0.05 && vs["p_value"].as_f64().unwrap() < 0.05,
        "{vs}: counted a lead of {lead}"
    );
    // Its wrong intents have low confidence, so a threshold removes them.
    let sweep = &report["threshold_sweeps"]["oracle"]["intent"];
    let beats = &sweep["beats_baseline_at"];
    assert!(beats["precision"].as_f64().unwrap() > sweep["baseline_precision"].as_f64().unwrap());
    let high = sweep["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["threshold"].as_f64().unwrap() > 0.6)
        .unwrap();
    assert!(
        high["precision"].as_f64().unwrap() > 0.99 && high["coverage"].as_f64().unwrap() > 0.8,
        "{high}"
    );
    assert!(
        report["threshold_sweeps"]["oracle"]["intent"]["annotator_hours_saved"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        std::fs::read_to_string(out.join("plots/sweep_intent.svg"))
            .unwrap()
            .contains("polyline")
    );
    // The confident wrong failure point leads the review list, as a Label Studio prediction.
    let tasks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("review_label_studio.json")).unwrap())
            .unwrap();
    let first = &tasks[0];
    assert_eq!(first["data"]["reason"], "confident_model_disagrees");
    assert_eq!(
        first["predictions"][0]["result"][0]["value"]["choices"][0],
        "result"
    );
    assert!(!first["data"]["utterance"].as_str().unwrap().is_empty());
    assert!(
        std::fs::read_to_string(out.join("label_studio_config.xml"))
            .unwrap()
            .contains("<Choice value=\"PlayMusic\"/>")
    );
}

#[test]
fn predictions_that_do_not_match_the_gold_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = write_predictions(tmp.path(), Some("sim7-0000003"), true);
    let out = tmp.path().join("report");
    let gold = sample().join("annotations");
    run_eval(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--pred",
        labels.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "0",
    ]);
    let report: serde_json::Value = read_json(&out.join("report.json"));
    let check = &report["inputs"]["model"];
    assert_eq!(check["missing_dialogues"], 1);
    assert_eq!(check["examples_missing"][0], "sim7-0000003");
    assert_eq!(check["extra_dialogues"], 1);
    assert_eq!(check["unknown_labels"]["intent"]["PlayMusik"], 1);
    assert!(
        report["systems"][0]["tasks"]["intent"]["missing"]
            .as_u64()
            .unwrap()
            > 0,
        "the missing dialogue's turns count as withheld"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("1 gold dialogues missing from it (e.g. sim7-0000003)")
            && md.contains("PlayMusik (1)"),
        "{md}"
    );
}

#[test]
fn same_seed_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = sample().join("annotations");
    for name in ["a", "b"] {
        let out = tmp.path().join(name);
        run_eval(&[
            "eval",
            "--gold",
            gold.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--bootstrap",
            "100",
            "--seed",
            "3",
        ]);
    }
    assert_eq!(
        std::fs::read(tmp.path().join("a/report.json")).unwrap(),
        std::fs::read(tmp.path().join("b/report.json")).unwrap()
    );
}

#[test]
fn bad_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    // The logs where annotations are expected.
    let turns = sample().join("turns");
    let result = labelgen(&[
        "eval",
        "--gold",
        turns.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(1));
    assert!(
        stderr(&result).contains("missing column `annotator_id`"),
        "{}",
        stderr(&result)
    );
    // An annotator the table does not have.
    let gold = sample().join("annotations");
    let result = labelgen(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--baseline-annotator",
        "b7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains(
            "no annotations by annotator `b7`; annotators present: a1, a2, a3, single, truth"
        ),
        "{}",
        stderr(&result)
    );
    assert!(!out.exists(), "a failed eval leaves no report behind");
    // An existing report is not replaced without --force.
    std::fs::create_dir_all(&out).unwrap();
    let result = labelgen(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(2));
    assert!(stderr(&result).contains("--force"));
}

/// A stand-in contextless baseline: the truth, except that on every turn
/// the truth marks as needing context the intent is wrong and no slot is
/// found, as a labeler blind to the dialogue would get them.
fn write_contextless_predictions(dir: &Path) -> PathBuf {
    write_labels(&dir.join("contextless"), &contextless_labels())
}

/// The rows of [`write_contextless_predictions`].
fn contextless_labels() -> Vec<Label> {
    let (rows, _) = read_table::<Annotation>(&sample().join("annotations")).unwrap();
    rows.into_iter()
        .filter(|a| a.annotator_id == "truth")
        .map(|a| {
            let blind = a.context.is_some();
            let wrong_intent = if a.intent.as_deref() == Some("GetWeather") {
                "PlayMusic"
            } else {
                "GetWeather"
            };
            Label {
                dialogue_id: a.dialogue_id.clone(),
                turn_index: a.turn_index,
                goal_id: a.goal_id,
                goal_success: a.goal_success,
                intent: if blind {
                    Some(wrong_intent.into())
                } else {
                    a.intent.clone()
                },
                slots: Some(if blind {
                    Vec::new()
                } else {
                    a.slots
                        .iter()
                        .flatten()
                        .map(|s| LabelledSlotSpan {
                            slot: s.slot.clone(),
                            start: s.start,
                            end: s.end,
                            text: String::new(),
                            probability: 0.9,
                        })
                        .collect()
                }),
                failure_point: a.failure_point.clone(),
                model_id: "contextless".into(),
                run_id: "r1".into(),
                ..Label::default()
            }
        })
        .collect()
}

#[test]
fn on_the_turns_that_need_context_every_prediction_is_tested_against_every_other() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = write_predictions(tmp.path(), None, false);
    let contextless = write_contextless_predictions(tmp.path());
    let out = tmp.path().join("report");
    let gold = sample().join("annotations");
    run_eval(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--pred",
        &format!("oracle={}", oracle.display()),
        "--pred",
        &format!("contextless={}", contextless.display()),
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "300",
    ]);
    let report: serde_json::Value = read_json(&out.join("report.json"));
    let context = &report["subsets"]["context"];
    let metric = |task: &str, system: &str| -> f64 {
        let t = &context[task];
        let s = t["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == system)
            .unwrap_or_else(|| panic!("{system} missing from {t}"));
        s["metrics"][t["headline"].as_str().unwrap()]["value"]
            .as_f64()
            .unwrap()
    };
    // Blind on exactly these turns, the contextless stand-in gets (almost)
    // none right; the figures, counted by hand.
    let hand = hand_gold();
    let (oracle_intents, contextless_intents) = (
        intents_of(&oracle_labels(None, false)),
        intents_of(&contextless_labels()),
    );
    let on_context = |labels| hand_accuracy(&hand.intent, labels, Some(&hand.context)).0;
    let expected = [
        ("oracle", on_context(&oracle_intents)),
        ("contextless", on_context(&contextless_intents)),
    ];
    for (system, expected) in expected {
        let value = metric("intent", system);
        assert!(
            (value - expected).abs() < 1e-9,
            "{system} on context turns: {value}, counted {expected}"
        );
    }
    assert!(expected[1].1 < 0.05 && expected[0].1 > 0.8, "{expected:?}");
    assert!(metric("slots", "contextless") < 0.05);
    // On all turns it still looks good: only the subset shows the gap.
    let full = report["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "contextless")
        .unwrap();
    let full_accuracy = full["tasks"]["intent"]["metrics"]["accuracy"]["value"]
        .as_f64()
        .unwrap();
    let (counted, _) = hand_accuracy(&hand.intent, &contextless_intents, None);
    assert!(
        (full_accuracy - counted).abs() < 1e-9 && counted > 0.6,
        "contextless on all turns: {full_accuracy}, counted {counted}"
    );
    for task in ["intent", "slots"] {
        let comparisons = context[task]["comparisons"].as_array().unwrap();
        let pairs: Vec<(&str, &str)> = comparisons
            .iter()
            .map(|c| {
                (
                    c["system"].as_str().unwrap(),
                    c["against"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("oracle", "contextless"),
                ("oracle", "single"),
                ("contextless", "single")
            ],
            "{task}"
        );
        let (oracle_vs_contextless, contextless_vs_single) = (&comparisons[0], &comparisons[2]);
        let delta = metric(task, "oracle") - metric(task, "contextless");
        assert!(
            (oracle_vs_contextless["delta"].as_f64().unwrap() - delta).abs() < 1e-9,
            "{task}: {oracle_vs_contextless} is not {delta}"
        );
        assert!(
            oracle_vs_contextless["delta"].as_f64().unwrap() > 0.5
                && oracle_vs_contextless["p_value"].as_f64().unwrap() < 0.01,
            "{task}: {oracle_vs_contextless}"
        );
        assert!(
            contextless_vs_single["delta"].as_f64().unwrap() < 0.0,
            "{task}: {contextless_vs_single}"
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| oracle | contextless | intent | accuracy |"),
        "{md}"
    );
}

#[test]
fn gold_without_the_context_column_loads_and_says_the_subset_is_unavailable() {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let tmp = tempfile::tempdir().unwrap();
    // sample_data's annotations as a tool that predates the column writes them.
    let shipped = sample().join("annotations/part-00000.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(shipped).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let gold = tmp.path().join("annotations.parquet");
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for batch in reader {
        let mut batch = batch.unwrap();
        let context = batch.schema().index_of("context").unwrap();
        batch.remove_column(context);
        writer
            .get_or_insert_with(|| {
                ArrowWriter::try_new(std::fs::File::create(&gold).unwrap(), batch.schema(), None)
                    .unwrap()
            })
            .write(&batch)
            .unwrap();
    }
    writer.unwrap().close().unwrap();
    let validated = labelgen(&["validate", gold.to_str().unwrap(), "--table", "annotations"]);
    assert!(validated.status.success(), "{}", stderr(&validated));

    let out = tmp.path().join("report");
    run_eval(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "50",
    ]);
    let report: serde_json::Value = read_json(&out.join("report.json"));
    let context = &report["subsets"]["context"];
    assert_eq!(context["available"], false);
    assert!(context["intent"].is_null() && context["slots"].is_null());
    assert!(
        context["definition"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{context}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## Turns whose meaning needs context\n\nThe subset is unavailable"),
        "{md}"
    );
}

/// A corpus's own labels (SGD: one annotator `sgd`, no single-pass
/// annotator): one gold annotator is its own gold, `--baseline-annotator
/// none` judges the predictions alone, and there is no human leave-one-out.
#[test]
fn one_gold_annotator_and_no_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = write_predictions(tmp.path(), None, false);
    let out = tmp.path().join("report");
    let gold = sample().join("annotations");
    let pred = format!("oracle={}", labels.display());
    run_eval(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--gold-annotators",
        "truth",
        "--baseline-annotator",
        "none",
        "--pred",
        &pred,
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "50",
    ]);
    let report: serde_json::Value = read_json(&out.join("report.json"));
    let systems = report["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 1, "only the prediction: {systems:?}");
    assert_eq!(systems[0]["name"], "oracle");
    // The stand-in copies the truth's slots exactly and gets every 7th intent wrong.
    let slots = systems[0]["tasks"]["slots"]["metrics"]["f1"]["value"]
        .as_f64()
        .unwrap();
    assert!((slots - 1.0).abs() < 1e-9, "slots F1 {slots}");
    let intent = systems[0]["tasks"]["intent"]["metrics"]["accuracy"]["value"]
        .as_f64()
        .unwrap();
    let truth = annotator_labels("truth", |a| &a.intent);
    let (expected, items) = hand_accuracy(&truth, &intents_of(&oracle_labels(None, false)), None);
    assert!(
        (intent - expected).abs() < 1e-9 && expected > 0.8 && expected < 0.9,
        "intent accuracy {intent}, counted {expected}"
    );
    assert_eq!(
        systems[0]["tasks"]["intent"]["items"].as_u64().unwrap(),
        items
    );
    assert_eq!(report["gold"]["items"]["intent"]["without_gold"], 0);
}

/// One hand-built annotation row: goal 0, no slots.
fn hand_row(
    dialogue: &str,
    turn: i32,
    annotator: &str,
    intent: &str,
    failure_point: &str,
    goal_success: bool,
) -> Annotation {
    Annotation {
        dialogue_id: dialogue.into(),
        turn_index: turn,
        annotator_id: annotator.into(),
        goal_id: Some(0),
        goal_success: Some(goal_success),
        intent: Some(intent.into()),
        slots: None,
        failure_point: Some(failure_point.into()),
        context: None,
    }
}

/// Human leave-one-out on a 3-annotator table small enough to work out by
/// hand: each annotator is judged on the items where the other two agree.
///
/// Intent (a1, a2, a3), and who is judged on the turn:
///   d1 t0  PlayMusic  PlayMusic  PlayMusic   a1 right, a2 right, a3 right
///   d1 t1  GetWeather PlayMusic  PlayMusic   a1 wrong (only a2 = a3)
///   d1 t2  PlayMusic  PlayMusic  SetAlarm    a3 wrong (only a1 = a2)
///   d2 t0  SetAlarm   GetWeather GetWeather  a1 wrong (only a2 = a3)
///   d2 t1  GetWeather SetAlarm   PlayMusic   nobody (no two agree)
/// a1 = 1/3 on 3 items, a2 = 1/1, a3 = 1/2 on 2; mean (1/3 + 1 + 1/2) / 3
/// = 11/18 on (3 + 1 + 2) / 3 = 2 items.
///
/// Failure point: `correct` everywhere except d1 t2 (asr, nlu, asr), where
/// a2 is the odd one out: a1 = 4/4, a2 = 4/5, a3 = 4/4; mean 14/15.
///
/// Goal success (one goal per dialogue): d1 (true, true, false), d2 all
/// true: a1 = 1/1 (d2 only), a2 = 1/1 (d2 only), a3 = 1/2 (d1 wrong, d2
/// right); mean 5/6.
#[test]
fn human_leave_one_out_on_a_hand_built_table() {
    let intents = [
        ("d1", 0, ["PlayMusic", "PlayMusic", "PlayMusic"]),
        ("d1", 1, ["GetWeather", "PlayMusic", "PlayMusic"]),
        ("d1", 2, ["PlayMusic", "PlayMusic", "SetAlarm"]),
        ("d2", 0, ["SetAlarm", "GetWeather", "GetWeather"]),
        ("d2", 1, ["GetWeather", "SetAlarm", "PlayMusic"]),
    ];
    let mut rows = Vec::new();
    for (dialogue, turn, by_annotator) in intents {
        for (a, intent) in by_annotator.into_iter().enumerate() {
            let annotator = ["a1", "a2", "a3"][a];
            let failure_point = match (dialogue, turn, annotator) {
                ("d1", 2, "a2") => "nlu",
                ("d1", 2, _) => "asr",
                _ => "correct",
            };
            let success = !(dialogue == "d1" && annotator == "a3");
            rows.push(hand_row(
                dialogue,
                turn,
                annotator,
                intent,
                failure_point,
                success,
            ));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let gold = tmp.path().join("annotations");
    let mut writer = DatasetWriter::create(&gold, true).unwrap();
    writer.write_rows(&rows).unwrap();
    writer.finish::<Annotation>().unwrap();
    let out = tmp.path().join("report");
    run_eval(&[
        "eval",
        "--gold",
        gold.to_str().unwrap(),
        "--baseline-annotator",
        "none",
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "0",
    ]);
    let report = read_json(&out.join("report.json"));
    let close = |value: &serde_json::Value, expected: f64, what: &str| {
        let value = value.as_f64().unwrap_or_else(|| panic!("{what}: {value}"));
        assert!(
            (value - expected).abs() < 1e-9,
            "{what}: {value}, expected {expected}"
        );
    };
    let expected = [
        ("intent", [1.0 / 3.0, 1.0, 0.5], 11.0 / 18.0, 2),
        ("failure_point", [1.0, 0.8, 1.0], 14.0 / 15.0, 4),
        ("goal_success", [1.0, 1.0, 0.5], 5.0 / 6.0, 1),
    ];
    for (task, per_annotator, mean, mean_items) in expected {
        for (annotator, value) in ["a1", "a2", "a3"].into_iter().zip(per_annotator) {
            close(
                &report["annotators"][annotator]["vs_gold_of_others"][task],
                value,
                &format!("{annotator} {task}"),
            );
        }
        let systems = report["systems"].as_array().unwrap();
        assert_eq!(systems.len(), 1, "only the human row: {systems:?}");
        assert_eq!(systems[0]["name"], "human_leave_one_out");
        let human = &systems[0]["tasks"][task];
        close(
            &human["metrics"][human["headline"].as_str().unwrap()]["value"],
            mean,
            &format!("human {task}"),
        );
        assert_eq!(human["items"], mean_items, "human {task} items");
    }
    // The unanimous gold of all three: intent on d1 t0 only, failure points
    // on the four turns where all agree.
    assert_eq!(report["gold"]["items"]["intent"]["with_gold"], 1);
    assert_eq!(report["gold"]["items"]["intent"]["without_gold"], 4);
    assert_eq!(report["gold"]["items"]["failure_point"]["with_gold"], 4);
}
