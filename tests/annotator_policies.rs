//! `labelgen train --annotator-policy` end to end: a tiny model trained on
//! the simulator's three raters a1..a3 under each policy.

mod common;

use common::{Tiny, labelgen, pretrain_tiny, run_ok, s, stderr};

#[test]
fn every_policy_trains_and_is_recorded_and_the_policies_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    common::simulate(&p("sim"), 40, 5);
    pretrain_tiny(&p("sim/turns"), tmp.path(), Tiny::default());
    let (pre, turns, annotations) = (p("pre"), p("sim/turns"), p("sim/annotations"));
    let train = |policy: Option<&str>, out: &str| {
        let mut args = vec![
            "train",
            "--init",
            s(&pre),
            "--logs",
            s(&turns),
            "--labels",
            s(&annotations),
            "--annotators",
            "a1,a2,a3",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--learning-rate",
            "3e-3",
            "--dev-share",
            "0.25",
            "--seed",
            "3",
            "--out",
        ];
        args.push(out);
        if let Some(policy) = policy {
            args.extend(["--annotator-policy", policy]);
        }
        args.push("--quiet");
        run_ok(&args)
    };
    let weights = |dir: &str| std::fs::read(p(dir).join("model.safetensors")).unwrap();
    let first = train(None, s(&p("first")));
    assert_eq!(first["annotator_policy"], "first", "the default");
    assert_eq!(first["rater_weights"], serde_json::json!({}));
    let mut trained = vec![weights("first")];
    for policy in ["majority", "all", "soft"] {
        let summary = train(Some(policy), s(&p(policy)));
        assert_eq!(summary["annotator_policy"], policy);
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p(policy).join("training.json")).unwrap())
                .unwrap();
        assert_eq!(
            record["annotator_policy"], policy,
            "training.json records it"
        );
        assert_eq!(summary["annotators"], serde_json::json!(["a1", "a2", "a3"]));
        // The model labels the logs.
        let labels = run_ok(&[
            "label",
            "--model",
            s(&p(policy)),
            "--logs",
            s(&p("sim/turns")),
            "--out",
            s(&p(&format!("labels-{policy}"))),
            "--quiet",
        ]);
        assert!(labels["turns"].as_u64().unwrap() > 0);
        trained.push(weights(policy));
    }
    // Each policy trains on other targets, so to other weights.
    for i in 0..trained.len() {
        for j in i + 1..trained.len() {
            assert_ne!(trained[i], trained[j], "policies {i} and {j} trained alike");
        }
    }
    // `all` weighs each rater by its agreement with the others: a number in (0, 1).
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("all").join("training.json")).unwrap()).unwrap();
    for rater in ["a1", "a2", "a3"] {
        let w = all["rater_weights"][rater].as_f64().unwrap();
        assert!(w > 0.0 && w < 1.0, "{rater}: {w}");
    }
    // The same seed and policy train the same model.
    train(Some("soft"), s(&p("soft-again")));
    assert_eq!(weights("soft"), weights("soft-again"));
    // An unknown policy is a usage error that names the choices.
    let out = labelgen(&[
        "train",
        "--init",
        s(&p("pre")),
        "--logs",
        s(&p("sim/turns")),
        "--labels",
        s(&p("sim/annotations")),
        "--out",
        s(&p("bad")),
        "--annotator-policy",
        "mean",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("soft"), "{}", stderr(&out));
}
