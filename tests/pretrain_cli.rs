//! `labelgen synth` and `labelgen pretrain` end to end on a tiny config.

mod common;

use common::{labelgen, stderr};

#[test]
fn simulate_synth_pretrain_on_a_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    common::simulate(&tmp.path().join("sim"), 40, 1);
    let out = labelgen(&[
        "synth",
        "--logs",
        &format!("{}/turns", dir("sim")),
        "--out",
        &dir("synth"),
        "--seed",
        "3",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["dialogues_out"], 80);
    assert!(summary["swapped_turns"].as_u64().unwrap() > 0);
    let tiny = [
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
        "16",
        "--batch-size",
        "8",
    ];
    // Held out: synth of dialogues from another simulator seed.
    common::simulate(&tmp.path().join("held-out-sim"), 10, 2);
    let out = labelgen(&[
        "synth",
        "--logs",
        &format!("{}/turns", dir("held-out-sim")),
        "--out",
        &dir("held-out"),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (synth, held_out, model) = (dir("synth"), dir("held-out"), dir("model"));
    // pretrain of the tiny config into `out`, held-out AUC every 2 steps.
    let pretrain = |out: &str, steps: &str, extra: &[&str]| {
        let mut args = vec![
            "pretrain",
            "--data",
            &synth,
            "--eval-data",
            &held_out,
            "--out",
            out,
            "--max-steps",
            steps,
            "--eval-every",
            "2",
            "--quiet",
        ];
        args.extend(tiny);
        args.extend(extra);
        let out = labelgen(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (summary, stderr(&out))
    };
    let (summary, _) = pretrain(&model, "4", &["--threads", "1"]);
    assert_eq!(summary["steps"], 4);
    assert_eq!(summary["curve"].as_array().unwrap().len(), 2);
    // An AUC on the held-out pairs (a probability, whatever 4 steps learnt),
    // and the held-out loss and AUC at each evaluation, the last one the summary's.
    let auc = summary["eval_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc), "eval_auc {auc}");
    let curve = summary["curve"].as_array().unwrap();
    for point in curve {
        let (loss, auc) = (point["eval_loss"].as_f64(), point["eval_auc"].as_f64());
        assert!(
            loss.is_some_and(|l| l.is_finite() && l > 0.0)
                && auc.is_some_and(|a| (0.0..=1.0).contains(&a)),
            "{point}"
        );
    }
    assert_eq!(summary["eval_loss"], curve[1]["eval_loss"]);
    assert!(summary["tokens_per_second"].as_f64().unwrap() > 0.0);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "training.json",
        "training_curve.svg",
        "training_curve.png",
    ] {
        assert!(tmp.path().join("model").join(file).is_file(), "{file}");
    }
    assert!(
        !tmp.path().join("model.checkpoint").exists(),
        "a finished run leaves no checkpoint behind"
    );
    assert_eq!(summary["bf16"], false);
    // --bf16: mixed precision where the CPU has AVX-512 BF16, f32 and a
    // warning elsewhere; the held-out loss stays finite either way.
    let (summary, messages) = pretrain(&dir("mixed"), "2", &["--bf16"]);
    let has_bf16 = labelgen::model::kernels::bf16::available();
    assert_eq!(summary["bf16"], has_bf16);
    assert_eq!(
        messages.contains("--bf16 needs a CPU with AVX-512 BF16"),
        !has_bf16
    );
    assert!(summary["eval_loss"].as_f64().is_some_and(f64::is_finite));
}

#[test]
fn a_directory_that_is_not_a_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    common::simulate(&tmp.path().join("sim"), 10, 1);
    let synth = tmp.path().join("synth");
    let out = labelgen(&[
        "synth",
        "--logs",
        tmp.path().join("sim/turns").to_str().unwrap(),
        "--out",
        synth.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success());
    let empty = tmp.path().join("not-a-model");
    std::fs::create_dir_all(&empty).unwrap();
    let out = labelgen(&[
        "pretrain",
        "--data",
        synth.to_str().unwrap(),
        "--out",
        tmp.path().join("m").to_str().unwrap(),
        "--init",
        empty.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("model directory lacks config.json"),
        "{}",
        stderr(&out)
    );
    // pretrain needs synth output, not plain logs.
    let out = labelgen(&[
        "pretrain",
        "--data",
        tmp.path().join("sim/turns").to_str().unwrap(),
        "--out",
        tmp.path().join("m").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing column `source_dialogue_id`"),
        "{}",
        stderr(&out)
    );
    // --lookahead takes a number of turns or `all`.
    let out = labelgen(&[
        "pretrain",
        "--data",
        synth.to_str().unwrap(),
        "--out",
        tmp.path().join("m").to_str().unwrap(),
        "--lookahead",
        "soon",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected a number of turns or `all`, got `soon`"),
        "{}",
        stderr(&out)
    );
}
