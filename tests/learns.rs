//! Training learns: a tiny model trained on simulated dialogues of one
//! seed labels the dialogues of another seed clearly better than the
//! trivial baseline, the training labels' most common class.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Tiny, TurnKey, pretrain_tiny, run_ok, s, unanimous_gold};
use labelgen::data::dataset::{DatasetWriter, read_table};
use labelgen::data::tables::{Annotation, Label, Turn};

/// The most common label the single-pass annotator gave in training.
fn majority(rows: &[Annotation], field: fn(&Annotation) -> &Option<String>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for label in rows
        .iter()
        .filter(|a| a.annotator_id == "single")
        .filter_map(|a| field(a).as_deref())
    {
        *counts.entry(label).or_default() += 1;
    }
    let (label, _) = counts
        .into_iter()
        .max_by_key(|(label, n)| (*n, std::cmp::Reverse(*label)))
        .expect("the training annotations have labels");
    label.to_string()
}

/// Accuracy of always answering `label` on the gold's items.
fn constant_accuracy(gold: &BTreeMap<TurnKey, String>, label: &str) -> f64 {
    gold.values().filter(|g| *g == label).count() as f64 / gold.len() as f64
}

/// The majority baseline as a labels table: every turn of `logs` gets the
/// training annotations' most common intent and failure point.
fn write_majority_labels(logs: &Path, training: &[Annotation], out: &Path) {
    let (turns, _) = read_table::<Turn>(logs).unwrap();
    let (intent, failure_point) = (
        majority(training, |a| &a.intent),
        majority(training, |a| &a.failure_point),
    );
    let labels: Vec<Label> = turns
        .iter()
        .map(|t| Label {
            dialogue_id: t.dialogue_id.clone(),
            turn_index: t.turn_index,
            goal_id: Some(0),
            intent: Some(intent.clone()),
            failure_point: Some(failure_point.clone()),
            model_id: "majority".into(),
            run_id: "r1".into(),
            ..Label::default()
        })
        .collect();
    let mut writer = DatasetWriter::create(out, true).unwrap();
    writer.write_rows(&labels).unwrap();
    writer.finish::<Label>().unwrap();
}

/// Held-out figures of the model and of the majority baseline, as eval
/// reports them: (system, task, metric) -> value.
type Figures = BTreeMap<(&'static str, &'static str, &'static str), f64>;

const FIGURES: [(&str, &str); 3] = [
    ("intent", "accuracy"),
    ("failure_point", "accuracy"),
    ("failure_point", "macro_f1"),
];

/// simulate (train seed, held-out seed) -> synth -> pretrain -> train a
/// tiny model -> label the held-out dialogues -> eval the model and the
/// majority baseline against their gold.
fn learn(dir: &Path, train_seed: u64, held_out_seed: u64) -> Figures {
    let p = |name: &str| dir.join(name);
    common::simulate(&p("train"), 200, train_seed);
    common::simulate(&p("held-out"), 60, held_out_seed);
    pretrain_tiny(
        &p("train/turns"),
        dir,
        Tiny {
            max_steps: 20,
            hidden_size: 32,
            batch_size: 8,
        },
    );
    run_ok(&[
        "train",
        "--init",
        s(&p("pre")),
        "--logs",
        s(&p("train/turns")),
        "--labels",
        s(&p("train/annotations")),
        "--out",
        s(&p("model")),
        "--epochs",
        "15",
        "--batch-size",
        "8",
        "--learning-rate",
        "3e-3",
        "--quiet",
    ]);
    run_ok(&[
        "label",
        "--model",
        s(&p("model")),
        "--logs",
        s(&p("held-out/turns")),
        "--out",
        s(&p("labels")),
        "--quiet",
    ]);
    let (training, _) = read_table::<Annotation>(&p("train/annotations")).unwrap();
    write_majority_labels(&p("held-out/turns"), &training, &p("majority"));
    run_ok(&[
        "eval",
        "--gold",
        s(&p("held-out/annotations")),
        "--pred",
        &format!("model={}", s(&p("labels"))),
        "--pred",
        &format!("majority={}", s(&p("majority"))),
        "--out",
        s(&p("report")),
        "--bootstrap",
        "0",
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("report/report.json")).unwrap()).unwrap();
    let systems = report["systems"].as_array().unwrap();
    let mut figures = Figures::new();
    for (system, judged) in ["model", "majority"].into_iter().zip(systems) {
        assert_eq!(judged["name"], system);
        for (task, metric) in FIGURES {
            let value = judged["tasks"][task]["metrics"][metric]["value"].as_f64();
            figures.insert((system, task, metric), value.unwrap());
        }
    }
    // The baseline, counted by hand: the share of held-out gold intents that
    // are the training's most common one.
    let (held_out, _) = read_table::<Annotation>(&p("held-out/annotations")).unwrap();
    let gold = unanimous_gold(&held_out, |a| &a.intent);
    let expected = constant_accuracy(&gold, &majority(&training, |a| &a.intent));
    let reported = figures[&("majority", "intent", "accuracy")];
    assert!(
        (reported - expected).abs() < 1e-9,
        "majority intent accuracy {reported}, counted {expected}"
    );
    figures
}

/// Measured over four (train, held-out) seed pairs, (1, 2) (3, 4) (5, 6)
/// (7, 8), about 30 s each on two busy cores:
///
/// | held out                 | model       | majority    |
/// |--------------------------|-------------|-------------|
/// | intent accuracy          | 0.76 - 0.84 | 0.07 - 0.16 |
/// | failure point macro F1   | 0.33 - 0.47 | 0.14 - 0.15 |
/// | failure point accuracy   | 0.69 - 0.78 | 0.73 - 0.79 |
///
/// The intent head learns by a wide margin (the smallest gap 0.59; asserted
/// 0.5). The failure-point head learns to name failure stages (macro F1 well
/// above the one-class baseline's; smallest gap 0.18, asserted 0.15), but at
/// this size it does not beat answering `correct` everywhere on accuracy,
/// so accuracy is not asserted.
#[test]
fn a_trained_tiny_model_beats_the_majority_class_on_held_out_dialogues() {
    let tmp = tempfile::tempdir().unwrap();
    let figures = learn(tmp.path(), 1, 2);
    eprintln!("held-out figures: {figures:?}");
    let intent = figures[&("model", "intent", "accuracy")];
    let baseline = figures[&("majority", "intent", "accuracy")];
    assert!(
        intent > baseline + 0.5,
        "intent accuracy {intent} against the majority class's {baseline}"
    );
    let failure_point = figures[&("model", "failure_point", "macro_f1")];
    let baseline = figures[&("majority", "failure_point", "macro_f1")];
    assert!(
        failure_point > baseline + 0.15,
        "failure point macro F1 {failure_point} against the majority class's {baseline}"
    );

    // Labelled in two shards, the held-out dialogues get the labels of one
    // whole run, column by column: this model tags slots, so spans are compared too.
    let p = |name: &str| tmp.path().join(name);
    let mut union = Vec::new();
    for (shard, out) in [("0/2", "shard0"), ("1/2", "shard1")] {
        run_ok(&[
            "label",
            "--model",
            s(&p("model")),
            "--logs",
            s(&p("held-out/turns")),
            "--out",
            s(&p(out)),
            "--shard",
            shard,
            "--quiet",
        ]);
        let (rows, _) = read_table::<Label>(&p(out)).unwrap();
        assert!(!rows.is_empty(), "shard {shard} is empty");
        union.extend(rows);
    }
    let (mut whole, _) = read_table::<Label>(&p("labels")).unwrap();
    let key = |l: &Label| (l.dialogue_id.clone(), l.turn_index);
    union.sort_by_key(key);
    whole.sort_by_key(key);
    assert_eq!(union.len(), whole.len());
    let tagged = whole
        .iter()
        .filter(|l| l.slots.as_ref().is_some_and(|s| !s.is_empty()))
        .count();
    assert!(tagged > 0, "the model tags no slots");
    for (a, b) in union.iter().zip(&whole) {
        if let Some(column) = common::first_difference(a, b) {
            panic!(
                "shards differ from the whole run at {:?}, column {column}:\n{a:?}\n{b:?}",
                key(a)
            );
        }
    }
}
