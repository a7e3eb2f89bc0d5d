//! Helpers shared by the end-to-end tests: run the binary, write Parquet.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use labelgen::data::tables::{Annotation, Label};
use parquet::arrow::ArrowWriter;

pub fn labelgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labelgen"))
        .args(args)
        .output()
        .expect("the labelgen binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Simulates `dialogues` dialogues into `dir` and returns the JSON summary.
pub fn simulate(dir: &Path, dialogues: usize, seed: u64) -> serde_json::Value {
    let out = labelgen(&[
        "simulate",
        "--dialogues",
        &dialogues.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "simulate failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("simulate prints JSON")
}

/// A JSON file's contents.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A path as the `&str` an argument list needs (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `labelgen label --model MODEL --logs LOGS --out OUT --quiet`; the labels it wrote.
pub fn label_rows(model: &Path, logs: &Path, out: &Path) -> Vec<Label> {
    run_ok(&[
        "label",
        "--model",
        s(model),
        "--logs",
        s(logs),
        "--out",
        s(out),
        "--quiet",
    ]);
    labelgen::data::dataset::read_table::<Label>(out).unwrap().0
}

/// Runs a command that must succeed and returns the JSON summary it prints
/// on stdout (also under `--quiet`).
pub fn run_ok(args: &[&str]) -> serde_json::Value {
    let out = labelgen(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("a JSON summary on stdout")
}

/// The size of a pretrained test model: small enough to pretrain in a
/// second, large enough to learn the simulator's easy cases.
#[derive(Clone, Copy)]
pub struct Tiny {
    pub max_steps: usize,
    pub hidden_size: usize,
    pub batch_size: usize,
}

impl Default for Tiny {
    fn default() -> Tiny {
        Tiny {
            max_steps: 2,
            hidden_size: 16,
            batch_size: 8,
        }
    }
}

/// pretrain's options for the smallest encoder the tests train (one layer
/// of 16, a vocabulary of 300), quiet.
pub const TINY_ENCODER: [&str; 15] = [
    "--hidden-size",
    "16",
    "--layers",
    "1",
    "--heads",
    "2",
    "--dialogue-layers",
    "1",
    "--vocab-size",
    "300",
    "--max-tokens",
    "24",
    "--batch-size",
    "8",
    "--quiet",
];

/// `synth` LOGS into DIR/synth, then pretrains a `tiny` encoder (one layer,
/// two heads, 300 word pieces, 24 tokens a turn) into DIR/pre; returns
/// DIR/pre, the model `train --init` takes.
pub fn pretrain_tiny(logs: &Path, dir: &Path, tiny: Tiny) -> PathBuf {
    let (synth, pre) = (dir.join("synth"), dir.join("pre"));
    run_ok(&["synth", "--logs", s(logs), "--out", s(&synth), "--quiet"]);
    let (steps, hidden, batch) = (
        tiny.max_steps.to_string(),
        tiny.hidden_size.to_string(),
        tiny.batch_size.to_string(),
    );
    run_ok(&[
        "pretrain",
        "--data",
        s(&synth),
        "--out",
        s(&pre),
        "--max-steps",
        &steps,
        "--hidden-size",
        &hidden,
        "--layers",
        "1",
        "--heads",
        "2",
        "--dialogue-layers",
        "1",
        "--vocab-size",
        "300",
        "--max-tokens",
        "24",
        "--batch-size",
        &batch,
        "--quiet",
    ]);
    pre
}

/// Writes columns as one Parquet file.
pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("test batch is consistent");
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// A turn: (dialogue_id, turn_index).
pub type TurnKey = (String, i32);

/// The unanimous gold of the gold annotators a1, a2 and a3 for one task,
/// worked out apart from eval's code: the turns where all three gave the
/// same label.
pub fn unanimous_gold(
    rows: &[Annotation],
    field: fn(&Annotation) -> &Option<String>,
) -> BTreeMap<TurnKey, String> {
    let mut votes: BTreeMap<TurnKey, Vec<&Annotation>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|a| ["a1", "a2", "a3"].contains(&a.annotator_id.as_str()))
    {
        votes
            .entry((row.dialogue_id.clone(), row.turn_index))
            .or_default()
            .push(row);
    }
    votes
        .into_iter()
        .filter(|(_, v)| v.len() == 3)
        .filter_map(|(k, v)| {
            let first = field(v[0]).clone()?;
            v.iter()
                .all(|a| field(a).as_ref() == Some(&first))
                .then_some((k, first))
        })
        .collect()
}

/// The first column in which two label rows differ: labels, ids and slot
/// spans exactly, probabilities by more than 1e-4.
pub fn first_difference(a: &Label, b: &Label) -> Option<&'static str> {
    let close = |a: Option<f32>, b: Option<f32>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-4,
        (a, b) => a == b,
    };
    let same_spans = match (&a.slots, &b.slots) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(s, t)| {
                    (&s.slot, s.start, s.end, &s.text) == (&t.slot, t.start, t.end, &t.text)
                        && close(Some(s.probability), Some(t.probability))
                })
        }
        (x, y) => x.is_none() && y.is_none(),
    };
    [
        ("dialogue_id", a.dialogue_id == b.dialogue_id),
        ("turn_index", a.turn_index == b.turn_index),
        ("goal_id", a.goal_id == b.goal_id),
        (
            "goal_boundary_prob",
            close(a.goal_boundary_prob, b.goal_boundary_prob),
        ),
        ("goal_success", a.goal_success == b.goal_success),
        (
            "goal_success_prob",
            close(a.goal_success_prob, b.goal_success_prob),
        ),
        ("intent", a.intent == b.intent),
        ("intent_prob", close(a.intent_prob, b.intent_prob)),
        ("slots", same_spans),
        ("slots_prob", close(a.slots_prob, b.slots_prob)),
        ("failure_point", a.failure_point == b.failure_point),
        (
            "failure_point_prob",
            close(a.failure_point_prob, b.failure_point_prob),
        ),
        ("model_id", a.model_id == b.model_id),
        ("run_id", a.run_id == b.run_id),
    ]
    .into_iter()
    .find(|(_, same)| !same)
    .map(|(column, _)| column)
}
