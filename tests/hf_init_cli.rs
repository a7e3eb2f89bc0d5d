//! `labelgen pretrain --init DIR` end to end on the tiny Hugging Face
//! checkpoints of tests/fixtures (scripts/hf-reference.py tiny): the model
//! directory it writes records the checkpoint, holds its weights under our
//! names, and bad checkpoint directories are refused with the file named.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{labelgen, stderr};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// simulate + synth into `tmp`; returns the synth directory.
fn synth_data(tmp: &Path) -> PathBuf {
    common::simulate(&tmp.join("sim"), 16, 1);
    let synth = tmp.join("synth");
    let out = labelgen(&[
        "synth",
        "--logs",
        tmp.join("sim/turns").to_str().unwrap(),
        "--out",
        synth.to_str().unwrap(),
        "--seed",
        "3",
        "--quiet",
    ]);
    assert!(out.status.success(), "synth failed: {}", stderr(&out));
    synth
}

fn pretrain(synth: &Path, init: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "pretrain",
        "--data",
        synth.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
        "--hidden-size",
        "16",
        "--heads",
        "2",
        "--dialogue-layers",
        "1",
        "--max-tokens",
        "24",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--quiet",
    ];
    args.extend(extra);
    labelgen(&args)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// (checkpoint name, our name) of every tensor the turn encoder takes from
/// the checkpoint: tiny-bert's are bare, tiny-roberta's are ours already.
fn name_map(fixture_name: &str, checkpoint: &HashMap<String, Tensor>) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = checkpoint
        .keys()
        .filter(|n| !n.starts_with("pooler."))
        .map(|n| {
            let ours = if fixture_name == "tiny-bert" {
                format!("roberta.{n}")
            } else {
                n.clone()
            };
            (n.clone(), ours)
        })
        .collect();
    names.sort();
    names
}

/// The encoder settings in the written config.json are the checkpoint's.
fn assert_config_from(init: &Path, model: &Path) {
    let hf = read_json(&init.join("config.json"));
    let ours = read_json(&model.join("config.json"));
    assert_eq!(ours["architecture"], "labelgen-dialogue");
    for key in [
        "model_type",
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "pad_token_id",
        "hidden_act",
    ] {
        assert_eq!(ours["encoder"][key], hf[key], "encoder.{key}");
    }
    // Sentence encoders are trained for mean pooling: --init's default.
    assert_eq!(ours["turn_pooling"], "mean");
    assert_eq!(ours["max_tokens"], 24);
}

/// The written tokenizer is the checkpoint's: same vocabulary, same ids.
fn assert_tokenizer_from(init: &Path, model: &Path, reference: &str) {
    let theirs = tokenizers::Tokenizer::from_file(init.join("tokenizer.json")).unwrap();
    let ours = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    assert_eq!(ours.get_vocab(true), theirs.get_vocab(true));
    let reference = read_json(&fixture(reference));
    for pair in reference["pairs"].as_array().unwrap() {
        let (u, r) = (
            pair["utterance"].as_str().unwrap(),
            pair["response"].as_str().unwrap(),
        );
        let ids: Vec<u64> = pair["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let encoded: Vec<u64> = ours
            .encode((u, r), true)
            .unwrap()
            .get_ids()
            .iter()
            .map(|&i| i as u64)
            .collect();
        assert_eq!(encoded, ids, "{u:?} / {r:?}");
    }
}

/// With a learning rate of 0 the saved weights are the initial ones: every
/// encoder tensor of the checkpoint must be in model.safetensors, under our
/// name, bit for bit. With a real learning rate, two steps move them a
/// little from there (training started from the checkpoint).
fn init_end_to_end(fixture_name: &str, reference: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let synth = synth_data(tmp.path());
    let init = fixture(fixture_name);
    let checkpoint = tensors(&init.join("model.safetensors"));
    let names = name_map(fixture_name, &checkpoint);
    assert!(names.len() >= 37, "{fixture_name}: {} tensors", names.len());

    // Learning rate 0: the initial weights, saved after the steps.
    let frozen = tmp.path().join("frozen");
    let out = pretrain(
        &synth,
        &init,
        &frozen,
        &["--max-steps", "2", "--learning-rate", "0"],
    );
    assert!(out.status.success(), "pretrain --init: {}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 2);
    assert!(summary["final_train_loss"].as_f64().unwrap().is_finite());
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "training.json",
    ] {
        assert!(frozen.join(file).is_file(), "{file}");
    }
    assert_config_from(&init, &frozen);
    assert_tokenizer_from(&init, &frozen, reference);
    let training = read_json(&frozen.join("training.json"));
    assert_eq!(training["stage"], "pretrain");
    assert_eq!(training["init"], init.display().to_string());
    assert_eq!(training["steps"], 2);
    let saved = tensors(&frozen.join("model.safetensors"));
    for (theirs, ours) in &names {
        let got = saved
            .get(ours)
            .unwrap_or_else(|| panic!("model.safetensors lacks `{ours}` (from `{theirs}`)"));
        assert_eq!(got.dims(), checkpoint[theirs].dims(), "{ours}");
        assert!(
            values(got) == values(&checkpoint[theirs]),
            "`{ours}` is not the checkpoint's `{theirs}`"
        );
    }

    // A real learning rate: two AdamW steps of at most ~1e-3 each.
    let trained = tmp.path().join("trained");
    let out = pretrain(
        &synth,
        &init,
        &trained,
        &["--max-steps", "2", "--learning-rate", "1e-3"],
    );
    assert!(out.status.success(), "pretrain --init: {}", stderr(&out));
    assert_config_from(&init, &trained);
    let saved = tensors(&trained.join("model.safetensors"));
    let mut moved = 0.0f32;
    for (theirs, ours) in &names {
        let (a, b) = (values(&saved[ours]), values(&checkpoint[theirs]));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 5e-3,
            "`{ours}` moved {diff} from `{theirs}` in 2 steps"
        );
        moved = moved.max(diff);
    }
    assert!(moved > 1e-4, "the encoder did not train ({moved})");
}

#[test]
fn pretrain_init_from_a_tiny_bert() {
    init_end_to_end("tiny-bert", "tiny_bert_reference.json");
}

#[test]
fn pretrain_init_from_a_tiny_roberta() {
    init_end_to_end("tiny-roberta", "tiny_roberta_reference.json");
}

/// A copy of tiny-bert in `dir`, to break.
fn copy_fixture(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-bert").join(file), dir.join(file)).unwrap();
    }
}

fn assert_refused(synth: &Path, init: &Path, out: &Path, needles: &[&str]) {
    let result = pretrain(synth, init, out, &["--max-steps", "1"]);
    let err = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{}: {err}", init.display());
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    assert!(!out.exists(), "no model directory is written");
}

#[test]
fn broken_checkpoints_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = synth_data(tmp.path());
    let out = tmp.path().join("model");

    // No model.safetensors.
    let dir = tmp.path().join("no-weights");
    copy_fixture(&dir);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert_refused(
        &synth,
        &dir,
        &out,
        &[
            dir.to_str().unwrap(),
            "model directory lacks model.safetensors",
        ],
    );

    // No tokenizer.json.
    let dir = tmp.path().join("no-tokenizer");
    copy_fixture(&dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert_refused(
        &synth,
        &dir,
        &out,
        &[
            dir.to_str().unwrap(),
            "model directory lacks tokenizer.json",
        ],
    );

    // config.json with another width than the weights.
    let dir = tmp.path().join("wrong-width");
    copy_fixture(&dir);
    let mut config = read_json(&dir.join("config.json"));
    config["hidden_size"] = 48.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    assert_refused(
        &synth,
        &dir,
        &out,
        &[
            dir.join("model.safetensors").to_str().unwrap(),
            "has shape [32], the model needs [48]",
        ],
    );

    // config.json that is not a BERT/RoBERTa config (no hidden_size).
    let dir = tmp.path().join("not-bert");
    copy_fixture(&dir);
    let mut config = read_json(&dir.join("config.json"));
    config.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    assert_refused(
        &synth,
        &dir,
        &out,
        &[
            dir.join("config.json").to_str().unwrap(),
            "not a RoBERTa/BERT config",
            "hidden_size",
        ],
    );

    // Another architecture.
    let dir = tmp.path().join("gpt2");
    copy_fixture(&dir);
    let mut config = read_json(&dir.join("config.json"));
    config["model_type"] = "gpt2".into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    assert_refused(
        &synth,
        &dir,
        &out,
        &[
            dir.join("config.json").to_str().unwrap(),
            "unknown architecture `gpt2`",
        ],
    );

    // model.safetensors that is not safetensors.
    let dir = tmp.path().join("garbage");
    copy_fixture(&dir);
    std::fs::write(dir.join("model.safetensors"), b"not safetensors at all").unwrap();
    assert_refused(
        &synth,
        &dir,
        &out,
        &[
            dir.join("model.safetensors").to_str().unwrap(),
            "not a readable safetensors file",
        ],
    );

    // A weight missing from model.safetensors.
    let dir = tmp.path().join("missing-weight");
    copy_fixture(&dir);
    let mut weights = tensors(&dir.join("model.safetensors"));
    weights
        .remove("encoder.layer.1.attention.self.query.weight")
        .unwrap();
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    assert_refused(
        &synth,
        &dir,
        &out,
        &[
            dir.join("model.safetensors").to_str().unwrap(),
            "no weight for `roberta.encoder.layer.1.attention.self.query.weight`",
        ],
    );
}
