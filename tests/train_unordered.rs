//! `labelgen train` on logs whose rows are not in turn order trains exactly
//! the model it trains on the same rows in order (each turn keeps its own text).

mod common;

use std::path::Path;

use common::{Tiny, pretrain_tiny, run_ok, s};
use labelgen::data::dataset::{DatasetWriter, read_table};
use labelgen::data::tables::Turn;

fn train(logs: &Path, labels: &Path, pre: &Path, out: &Path) -> Vec<u8> {
    run_ok(&[
        "train",
        "--init",
        s(pre),
        "--logs",
        s(logs),
        "--labels",
        s(labels),
        "--out",
        s(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    ]);
    std::fs::read(out.join("model.safetensors")).unwrap()
}

#[test]
fn shuffled_turns_train_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    common::simulate(&p("sim"), 30, 3);
    pretrain_tiny(&p("sim/turns"), tmp.path(), Tiny::default());
    // Every dialogue's turns reversed: the rows arrive last turn first.
    let (mut turns, issues) = read_table::<Turn>(&p("sim/turns")).unwrap();
    assert!(issues.is_empty());
    turns.sort_by(|a, b| {
        (a.dialogue_id.as_str(), std::cmp::Reverse(a.turn_index))
            .cmp(&(b.dialogue_id.as_str(), std::cmp::Reverse(b.turn_index)))
    });
    assert!(
        turns
            .windows(2)
            .any(|w| w[0].dialogue_id == w[1].dialogue_id)
    );
    let mut writer = DatasetWriter::create(&p("reversed"), false).unwrap();
    writer.write_rows(&turns).unwrap();
    writer.finish::<Turn>().unwrap();

    let labels = p("sim/annotations");
    let ordered = train(&p("sim/turns"), &labels, &p("pre"), &p("ordered-model"));
    let reversed = train(&p("reversed"), &labels, &p("pre"), &p("reversed-model"));
    assert!(ordered == reversed, "row order changed the trained weights");
}
