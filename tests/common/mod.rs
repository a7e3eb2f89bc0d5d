//! Helpers shared by the end-to-end tests: run the binary, write Parquet.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use labelgen::data::tables::Annotation;
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
