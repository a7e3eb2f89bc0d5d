//! `labelgen train` and `labelgen label` end to end on a tiny model.

mod common;

use std::path::Path;

use common::{Tiny, label_rows, labelgen, pretrain_tiny, read_json, run_ok, s, stderr};
use labelgen::data::dataset::{DatasetWriter, read_table};
use labelgen::data::tables::{Label, Turn};

/// A pretrained tiny encoder on 60 simulated dialogues, and `train` on
/// them with the settings every test below shares.
struct Pretrained {
    tmp: tempfile::TempDir,
}

impl Pretrained {
    fn new() -> Pretrained {
        let tmp = tempfile::tempdir().unwrap();
        common::simulate(&tmp.path().join("sim"), 60, 1);
        pretrain_tiny(
            &tmp.path().join("sim/turns"),
            tmp.path(),
            Tiny {
                max_steps: 3,
                ..Tiny::default()
            },
        );
        Pretrained { tmp }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.tmp.path().join(name)
    }

    /// `train` into `out` (3 epochs, a quarter of the dialogues for dev) with `extra` flags.
    fn train(&self, out: &str, extra: &[&str]) -> std::process::Output {
        let (pre, turns, annotations, out) = (
            self.path("pre"),
            self.path("sim/turns"),
            self.path("sim/annotations"),
            self.path(out),
        );
        let mut args = vec![
            "train",
            "--init",
            s(&pre),
            "--logs",
            s(&turns),
            "--labels",
            s(&annotations),
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--learning-rate",
            "3e-3",
            "--dev-share",
            "0.25",
            "--quiet",
            "--out",
            s(&out),
        ];
        args.extend(extra);
        labelgen(&args)
    }

    /// [`Pretrained::train`], which must succeed; its JSON summary.
    fn train_ok(&self, out: &str, extra: &[&str]) -> serde_json::Value {
        let run = self.train(out, extra);
        assert!(run.status.success(), "{}", stderr(&run));
        serde_json::from_slice(&run.stdout).unwrap()
    }

    /// [`Pretrained::train`], which must fail saying each of `expected`;
    /// it leaves no model behind.
    fn train_refused(&self, extra: &[&str], expected: &[&str]) {
        let run = self.train("refused", extra);
        assert!(!run.status.success());
        let message = stderr(&run);
        for text in expected {
            assert!(message.contains(text), "{extra:?}: {message}");
        }
        assert!(!self.path("refused").exists(), "no model is left behind");
    }

    fn labels(&self, model: &str) -> Vec<Label> {
        let out = self.path(&format!("{model}-labels"));
        label_rows(&self.path(model), &self.path("sim/turns"), &out)
    }
}

/// simulate -> synth -> pretrain -> train (into `labeler`) on a tiny model.
fn trained() -> tempfile::TempDir {
    let pre = Pretrained::new();
    let summary = pre.train_ok("labeler", &[]);
    assert_eq!(
        summary["annotators"][0], "single",
        "simulated data trains on the single-pass annotator"
    );
    let epochs = summary["epochs"].as_array().unwrap();
    let (first, last) = (
        epochs[0]["train_loss"].as_f64().unwrap(),
        epochs[epochs.len() - 1]["train_loss"].as_f64().unwrap(),
    );
    assert!(last < first, "training lowers the loss: {first} -> {last}");
    pre.tmp
}

#[test]
fn labels_validate_shards_add_up_and_thresholds_withhold() {
    // One trained model for every check (training it is most of the time).
    let tmp = trained();
    let rows = labels_validate_and_goal_ids_increase(tmp.path());
    two_shards_make_up_the_whole(tmp.path(), rows);
    a_threshold_of_one_withholds_every_intent(tmp.path());
    bad_label_options_and_interleaved_dialogues_are_named(tmp.path());
}

/// `label` with the model `trained` made, run id r1, into `out`.
fn label_ok(dir: &Path, out: &str, extra: &[&str]) -> serde_json::Value {
    let (labeler, turns, out) = (dir.join("labeler"), dir.join("sim/turns"), dir.join(out));
    let mut args = vec![
        "label",
        "--model",
        s(&labeler),
        "--logs",
        s(&turns),
        "--out",
        s(&out),
        "--run-id",
        "r1",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run_ok(&args)
}

/// The labels table counts every turn, validates (spans checked against
/// the utterances), and its goal ids increase through each dialogue.
/// Returns its rows.
fn labels_validate_and_goal_ids_increase(dir: &Path) -> Vec<Label> {
    let p = |name: &str| dir.join(name);
    let full = label_ok(dir, "labels", &[]);
    assert_eq!(
        full["turns"].as_u64().unwrap() as usize,
        read_table::<Label>(&p("labels")).unwrap().0.len()
    );
    // The labels table validates, spans checked against the utterances.
    let out = labelgen(&[
        "validate",
        s(&p("labels")),
        "--table",
        "labels",
        "--turns",
        s(&p("sim/turns")),
    ]);
    assert!(out.status.success(), "{}", common::stdout(&out));
    // Goal ids increase through each dialogue; one success value per goal.
    let (rows, _) = read_table::<Label>(&p("labels")).unwrap();
    for pair in rows
        .windows(2)
        .filter(|w| w[0].dialogue_id == w[1].dialogue_id)
    {
        let (a, b) = (pair[0].goal_id.unwrap(), pair[1].goal_id.unwrap());
        assert!(b == a || b == a + 1, "goal ids {a} -> {b}");
        if a == b {
            assert_eq!(pair[0].goal_success, pair[1].goal_success);
        }
    }
    rows
}

fn two_shards_make_up_the_whole(dir: &Path, rows: Vec<Label>) {
    let p = |name: &str| dir.join(name);
    // Never splitting a dialogue.
    label_ok(dir, "shard0", &["--shard", "0/2"]);
    label_ok(dir, "shard1", &["--shard", "1/2"]);
    let mut union: Vec<Label> = read_table::<Label>(&p("shard0")).unwrap().0;
    union.extend(read_table::<Label>(&p("shard1")).unwrap().0);
    let key = |l: &Label| (l.dialogue_id.clone(), l.turn_index);
    union.sort_by_key(key);
    let mut whole = rows;
    whole.sort_by_key(key);
    // Batches of other shapes round differently: every label column must
    // agree exactly, every probability to 1e-4. (This tiny model tags no
    // slots; tests/learns.rs compares shards of a model that does.)
    assert_eq!(union.len(), whole.len());
    for (a, b) in union.iter().zip(&whole) {
        if let Some(column) = common::first_difference(a, b) {
            panic!(
                "shards differ from the whole run at {:?}, column {column}:\n{a:?}\n{b:?}",
                key(a)
            );
        }
    }
}

/// 1.0 withholds every intent; 0 withholds none.
fn a_threshold_of_one_withholds_every_intent(dir: &Path) {
    let p = |name: &str| dir.join(name);
    let strict = label_ok(
        dir,
        "strict",
        &["--min-confidence", "intent=1.0,failure_point=0"],
    );
    let (strict_rows, _) = read_table::<Label>(&p("strict")).unwrap();
    let nulls = strict_rows.iter().filter(|l| l.intent.is_none()).count();
    assert_eq!(nulls, strict_rows.len());
    assert_eq!(
        strict["withheld"]["intent"].as_u64().unwrap() as usize,
        nulls
    );
    assert!(
        strict_rows
            .iter()
            .all(|l| l.failure_point.is_some() && l.intent_prob.is_some())
    );
}

fn bad_label_options_and_interleaved_dialogues_are_named(dir: &Path) {
    let p = |name: &str| dir.join(name);
    // Bad options are named.
    let out = labelgen(&[
        "label",
        "--model",
        s(&p("labeler")),
        "--logs",
        s(&p("sim/turns")),
        "--out",
        s(&p("x")),
        "--shard",
        "2/2",
    ]);
    assert!(stderr(&out).contains("--shard 2/2"), "{}", stderr(&out));
    let out = labelgen(&[
        "label",
        "--model",
        s(&p("pre")),
        "--logs",
        s(&p("sim/turns")),
        "--out",
        s(&p("x")),
    ]);
    assert!(
        stderr(&out).contains("without supervised heads"),
        "{}",
        stderr(&out)
    );

    // label streams: a dialogue whose turns are split by another's is named
    // (with the file and row), and no output is left.
    let (mut turns, _) = read_table::<Turn>(&p("sim/turns")).unwrap();
    let first = turns.remove(0);
    let at = turns
        .iter()
        .position(|t| t.dialogue_id != first.dialogue_id)
        .unwrap();
    turns.insert(at + 1, first.clone());
    let mut writer = DatasetWriter::create(&p("shuffled"), false).unwrap();
    writer.write_rows(&turns).unwrap();
    writer.finish::<Turn>().unwrap();
    let out = labelgen(&[
        "label",
        "--model",
        s(&p("labeler")),
        "--logs",
        s(&p("shuffled")),
        "--out",
        s(&p("shuffled-labels")),
    ]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("continues after other dialogues' turns")
            && message.contains("row ")
            && message.contains("labelgen ingest"),
        "{message}"
    );
    assert!(!p("shuffled-labels").exists(), "no partial output");
}

/// The barge-in rule counted by hand on simulated logs: turns with a
/// barge-in, those the single-pass annotator gave a failure point, and the
/// share of those it called a defect (anything but `correct`).
fn barge_in_by_hand(turns: &Path, annotations: &Path) -> (u64, u64, f64) {
    use labelgen::data::tables::Annotation;
    let (turns, _) = read_table::<Turn>(turns).unwrap();
    let (annotations, _) = read_table::<Annotation>(annotations).unwrap();
    let single: std::collections::HashMap<(String, i32), Option<String>> = annotations
        .into_iter()
        .filter(|a| a.annotator_id == "single")
        .map(|a| ((a.dialogue_id, a.turn_index), a.failure_point))
        .collect();
    let barged: Vec<&Turn> = turns.iter().filter(|t| t.barge_in == Some(true)).collect();
    let judged: Vec<bool> = barged
        .iter()
        .filter_map(|t| {
            let failure = single.get(&(t.dialogue_id.clone(), t.turn_index))?;
            failure.as_deref().map(|f| f != "correct")
        })
        .collect();
    let defects = judged.iter().filter(|d| **d).count();
    (
        barged.len() as u64,
        judged.len() as u64,
        defects as f64 / judged.len() as f64,
    )
}

/// Reads every tensor of a model directory's weights.
fn weights(dir: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
        .unwrap()
}

fn max_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn weak_labels_report_every_rule_and_fill_only_unannotated_turns() {
    let pre = Pretrained::new();
    // The weak-label summary reports every rule; feedback in the simulated logs fires some.
    let whole = pre.train_ok("whole", &[]);
    let rules = whole["weak_labels"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 6);
    let barge_in = rules.iter().find(|r| r["rule"] == "barge_in").unwrap();
    let (fires, annotated, accuracy) =
        barge_in_by_hand(&pre.path("sim/turns"), &pre.path("sim/annotations"));
    assert!(fires > 0, "{barge_in}");
    assert_eq!(barge_in["fires"].as_u64().unwrap(), fires, "{barge_in}");
    assert_eq!(
        barge_in["annotated"].as_u64().unwrap(),
        annotated,
        "{barge_in}"
    );
    let reported = barge_in["accuracy"].as_f64().unwrap();
    assert!(
        (reported - accuracy).abs() < 1e-9,
        "{barge_in}: counted {accuracy}"
    );
    assert_eq!(
        whole["weak_labels"]["votes_used"], 0,
        "every turn is annotated: weak labels only fill gaps"
    );
    let half = pre.train_ok("half", &["--labelled-share", "0.5"]);
    assert!(half["labelled_turns"].as_u64() < whole["labelled_turns"].as_u64());
    assert!(
        half["weak_labels"]["votes_used"].as_u64().unwrap() > 0,
        "{}",
        half["weak_labels"]
    );
    let off = pre.train_ok("off", &["--labelled-share", "0.5", "--weak-weight", "0"]);
    assert_eq!(
        off["weak_labels"]["votes_used"], 0,
        "weight 0 keeps votes out"
    );
}

#[test]
fn training_stopped_after_an_epoch_resumes_to_the_same_weights() {
    let pre = Pretrained::new();
    pre.train_ok("whole", &[]);
    let out = pre.train("resumed", &["--stop-after-epochs", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--resume continues"),
        "{}",
        stderr(&out)
    );
    assert!(pre.path("resumed.checkpoint/state.json").is_file());
    let resumed = pre.train_ok("resumed", &["--resume"]);
    assert_eq!(resumed["resumed_from_epoch"], 1);
    assert!(
        !pre.path("resumed.checkpoint").exists(),
        "a finished run removes its checkpoint"
    );
    let (a, b) = (weights(&pre.path("whole")), weights(&pre.path("resumed")));
    for (name, tensor) in &a {
        let d = max_difference(tensor, &b[name]);
        assert!(d < 1e-5, "{name} differs by {d} after --resume");
    }
}

#[test]
fn keep_epochs_writes_a_complete_model_per_epoch_and_resumes_them() {
    let pre = Pretrained::new();
    let kept = pre.train_ok("kept", &["--keep-epochs"]);
    let epochs = kept["epochs"].as_array().unwrap().len();
    assert_eq!(kept["epoch_models"], s(&pre.path("kept/epochs")));
    assert!(!pre.path("kept.epochs").exists(), "moved into the model");
    let names = epoch_model_names(&pre.path("kept/epochs"));
    let expected: Vec<String> = (1..=epochs).map(|e| format!("epoch-{e:02}")).collect();
    assert_eq!(names, expected);
    for (i, name) in names.iter().enumerate() {
        let training = read_json(&pre.path(&format!("kept/epochs/{name}/training.json")));
        assert_eq!(training["epoch"], i + 1);
        let rows = pre.labels(&format!("kept/epochs/{name}"));
        assert_eq!(rows.len(), turns_in(&pre.path("sim/turns")));
    }
    // The best epoch's model is the final model: same weights, same
    // decisions fitted on dev.
    let best = format!(
        "kept/epochs/epoch-{:02}",
        kept["best_epoch"].as_u64().unwrap()
    );
    let (final_weights, best_weights) = (weights(&pre.path("kept")), weights(&pre.path(&best)));
    for (name, tensor) in &final_weights {
        assert_eq!(max_difference(tensor, &best_weights[name]), 0.0, "{name}");
    }
    assert_eq!(
        read_json(&pre.path("kept/config.json")),
        read_json(&pre.path(&format!("{best}/config.json")))
    );
    an_interrupted_run_keeps_its_epochs_and_a_fresh_one_drops_stale_ones(&pre, epochs);
}

fn an_interrupted_run_keeps_its_epochs_and_a_fresh_one_drops_stale_ones(
    pre: &Pretrained,
    epochs: usize,
) {
    let stopped = pre.train("resumed", &["--keep-epochs", "--stop-after-epochs", "1"]);
    assert!(!stopped.status.success());
    assert_eq!(epoch_model_names(&pre.path("resumed.epochs")), ["epoch-01"]);
    pre.train_ok("resumed", &["--keep-epochs", "--resume"]);
    assert_eq!(epoch_model_names(&pre.path("resumed/epochs")).len(), epochs);
    let last = format!("epochs/epoch-{epochs:02}");
    let (a, b) = (
        weights(&pre.path(&format!("kept/{last}"))),
        weights(&pre.path(&format!("resumed/{last}"))),
    );
    for (name, tensor) in &a {
        let d = max_difference(tensor, &b[name]);
        assert!(d < 1e-5, "{name} differs by {d} after --resume");
    }
    std::fs::create_dir_all(pre.path("fresh.epochs/epoch-09")).unwrap();
    pre.train_ok("fresh", &["--keep-epochs"]);
    assert_eq!(epoch_model_names(&pre.path("fresh/epochs")).len(), epochs);
}

fn epoch_model_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn turns_in(logs: &Path) -> usize {
    read_table::<Turn>(logs).unwrap().0.len()
}

#[test]
fn a_frozen_encoder_or_its_top_layers_train_only_what_they_name() {
    let pre = Pretrained::new();
    let pretrained = weights(&pre.path("pre"));
    let embeddings = "roberta.embeddings.word_embeddings.weight";
    let layer = "roberta.encoder.layer.0.attention.self.query.weight";
    // Full fine-tuning moves the encoder.
    pre.train_ok("whole", &[]);
    let whole = weights(&pre.path("whole"));
    assert!(max_difference(&whole[embeddings], &pretrained[embeddings]) > 0.0);
    // A frozen encoder keeps the pretrained encoder's weights and caches its turns.
    let frozen = pre.train_ok("frozen", &["--freeze-encoder"]);
    assert!(frozen["cached_turns"].as_u64().unwrap() > 0);
    let tuned = weights(&pre.path("frozen"));
    assert_eq!(
        max_difference(&pretrained[embeddings], &tuned[embeddings]),
        0.0
    );
    assert_eq!(max_difference(&pretrained[layer], &tuned[layer]), 0.0);
    // --train-top-layers 1 of this one-layer encoder: the layer trains on
    // cached embeddings, which stay as pretrained.
    let top = pre.train_ok("top", &["--train-top-layers", "1"]);
    assert_eq!(top["train_top_layers"], 1);
    assert!(top["cached_turns"].as_u64().unwrap() > 0);
    assert!(top["cache_seconds"].as_f64().unwrap() > 0.0);
    let top_weights = weights(&pre.path("top"));
    assert_eq!(
        max_difference(&pretrained[embeddings], &top_weights[embeddings]),
        0.0
    );
    assert!(max_difference(&pretrained[layer], &top_weights[layer]) > 0.0);
    assert!(pre.labels("top").iter().all(|l| l.intent.is_some()));
    the_same_layers_train_in_bf16(&pre, &top_weights);
    pre.train_refused(
        &["--train-top-layers", "2"],
        &["--train-top-layers 2", "only 1 layers"],
    );
}

/// `--bf16` trains the layers `--train-top-layers 1` names, in mixed
/// precision where the CPU has AVX-512 BF16 (its own weights, the same on
/// a second run) and in f32 with a warning elsewhere.
fn the_same_layers_train_in_bf16(
    pre: &Pretrained,
    f32_weights: &std::collections::HashMap<String, candle_core::Tensor>,
) {
    let has_bf16 = labelgen::model::kernels::bf16::available();
    let layer = "roberta.encoder.layer.0.attention.self.query.weight";
    let embeddings = "roberta.embeddings.word_embeddings.weight";
    let mut runs = Vec::new();
    for out in ["mixed", "mixed-again"] {
        let run = pre.train(out, &["--train-top-layers", "1", "--bf16"]);
        assert!(run.status.success(), "{}", stderr(&run));
        let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(summary["bf16"], has_bf16);
        let warned = stderr(&run).contains("--bf16 needs a CPU with AVX-512 BF16");
        assert_eq!(warned, !has_bf16);
        runs.push(weights(&pre.path(out)));
    }
    let mixed = &runs[0];
    assert_eq!(
        max_difference(&mixed[embeddings], &f32_weights[embeddings]),
        0.0
    );
    let moved = max_difference(&mixed[layer], &f32_weights[layer]);
    assert_eq!(
        moved > 0.0,
        has_bf16,
        "bf16 products train other weights than f32"
    );
    for (name, tensor) in mixed {
        assert_eq!(
            max_difference(tensor, &runs[1][name]),
            0.0,
            "{name}: not deterministic"
        );
    }
    assert!(pre.labels("mixed").iter().all(|l| l.intent.is_some()));
}

#[test]
fn a_model_whose_weights_miss_a_head_is_refused_by_name() {
    let pre = Pretrained::new();
    pre.train_ok("top", &["--freeze-encoder"]);
    // As a model trained before the slot tagger existed.
    let stale = pre.path("stale");
    std::fs::create_dir_all(&stale).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(pre.path("top").join(file), stale.join(file)).unwrap();
    }
    let mut tensors = weights(&pre.path("top"));
    tensors.retain(|name, _| !name.starts_with("heads.slots."));
    candle_core::safetensors::save(&tensors, stale.join("model.safetensors")).unwrap();
    let out = labelgen(&[
        "label",
        "--model",
        s(&stale),
        "--logs",
        s(&pre.path("sim/turns")),
        "--out",
        s(&pre.path("stale-labels")),
        "--quiet",
    ]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("model.safetensors: weights do not fit config.json")
            && message.contains("heads.slots.")
            && message.contains("hint: "),
        "{message}"
    );
    assert!(
        !pre.path("stale-labels").exists(),
        "no output is left behind"
    );
}

#[test]
fn lookahead_and_dropout_are_recorded_and_training_is_deterministic() {
    let pre = Pretrained::new();
    // --lookahead at train overrides the pretrained model's, lands in
    // config.json, and label rebuilds the same model.
    pre.train_ok("causal", &["--freeze-encoder", "--lookahead", "0"]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pre.path("causal/config.json")).unwrap()).unwrap();
    assert_eq!(config["dialogue"]["lookahead"], 0);
    assert!(pre.labels("causal").iter().all(|l| l.intent.is_some()));
    // --dropout changes what training learns, deterministically, and is recorded.
    pre.train_ok("frozen", &["--freeze-encoder"]);
    pre.train_ok("dropout", &["--freeze-encoder", "--dropout", "0.3"]);
    pre.train_ok("dropout-again", &["--freeze-encoder", "--dropout", "0.3"]);
    let training: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pre.path("dropout/training.json")).unwrap()).unwrap();
    assert!((training["settings"]["dropout"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let (plain, dropped, again) = (
        weights(&pre.path("frozen")),
        weights(&pre.path("dropout")),
        weights(&pre.path("dropout-again")),
    );
    let head = "heads.intent.weight";
    assert!(max_difference(&dropped[head], &plain[head]) > 0.0);
    for (name, tensor) in &dropped {
        assert_eq!(
            max_difference(tensor, &again[name]),
            0.0,
            "{name}: same seed, same weights"
        );
    }
    pre.train_refused(
        &["--dropout", "1"],
        &["expected a probability in [0, 1), got `1`"],
    );
}

#[test]
fn goal_splicing_adds_windows_and_is_recorded() {
    let pre = Pretrained::new();
    let plain = pre.train_ok("frozen", &["--freeze-encoder"]);
    assert_eq!(plain["spliced_windows"], 0, "{plain}");
    let spliced = pre.train_ok("spliced", &["--freeze-encoder", "--splice-goals", "0.5"]);
    // Half as many windows again as there are training dialogues' windows
    // (each simulated dialogue fits one window).
    let train_dialogues = spliced["train_dialogues"].as_f64().unwrap();
    assert_eq!(
        spliced["spliced_windows"].as_f64().unwrap(),
        (0.5 * train_dialogues).round(),
        "{spliced}"
    );
    let training: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pre.path("spliced/training.json")).unwrap()).unwrap();
    assert_eq!(training["settings"]["splice_goals"], 0.5);
    assert_eq!(training["spliced_windows"], spliced["spliced_windows"]);
    let head = "heads.intent.weight";
    assert!(
        max_difference(
            &weights(&pre.path("spliced"))[head],
            &weights(&pre.path("frozen"))[head]
        ) > 0.0,
        "the spliced windows train"
    );
    assert!(pre.labels("spliced").iter().all(|l| l.intent.is_some()));
    for share in ["--splice-goals=5", "--splice-goals=-1"] {
        pre.train_refused(&[share], &["--splice-goals must be in [0, 4]"]);
    }
}

#[test]
fn balanced_decisions_are_fitted_and_stored_in_the_model() {
    let pre = Pretrained::new();
    let plain = pre.train_ok("frozen", &["--freeze-encoder"]);
    assert_eq!(plain["success_threshold"], 0.5);
    assert!(plain["decision_fits"].is_null(), "{plain}");
    let run = pre.train("balanced", &["--balance-decisions", "--freeze-encoder"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let balanced: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pre.path("balanced/config.json")).unwrap()).unwrap();
    // Each decision says how many dev dialogues hold its rare class, and is
    // fitted where there are at least 10, kept at its default (with a
    // warning) where there are fewer.
    for (decision, setting, default) in [
        ("goal_success", "success_threshold", 0.5),
        ("failure_point", "correct_shift", 0.0),
    ] {
        let fit = &balanced["decision_fits"][decision];
        let rare = fit["rare_dev_dialogues"].as_u64().expect("a count");
        assert_eq!(fit["fitted"], rare >= 10, "{balanced}");
        let value = balanced[setting].as_f64().unwrap();
        let warned = stderr(&run).contains(&format!("kept the default {decision} decision"));
        if rare >= 10 {
            assert!(!warned, "{}", stderr(&run));
        } else {
            assert_eq!(value, default, "{balanced}");
            assert!(warned, "{}", stderr(&run));
        }
        assert_eq!(config["labels"][setting].as_f64(), Some(value));
    }
    let threshold = balanced["success_threshold"].as_f64().unwrap();
    assert!((0.05..=0.95).contains(&threshold), "{balanced}");
    assert!(balanced["correct_shift"].as_f64().unwrap() <= 0.0);
}

#[test]
fn the_contextless_baseline_trains_and_labels_like_the_full_model() {
    let pre = Pretrained::new();
    // By default its encoder reads the utterance alone.
    let contextless = pre.train_ok("contextless", &["--contextless"]);
    assert_eq!(contextless["contextless"], true);
    assert_eq!(contextless["utterance_only"], true);
    // Each turn alone: its boundaries take no evidence from the previous turn's intent.
    assert_eq!(contextless["intent_change_weight"], 0.0);
    assert_eq!(contextless["intent_stay_shift"], 0.0);
    let with_response = pre.train_ok("contextless-turn", &["--contextless", "turn"]);
    assert_eq!(with_response["utterance_only"], false);
    assert!(pre.labels("contextless").iter().all(|l| l.intent.is_some()));
}

#[test]
fn bad_training_options_are_named() {
    let pre = Pretrained::new();
    pre.train_refused(&["--task-weights", "slot=2"], &["unknown task `slot`"]);
    let rules = pre.path("rules.json");
    std::fs::write(&rules, r#"{"barge_in": {"enabled": true, "target": 3}}"#).unwrap();
    pre.train_refused(
        &["--weak-rules", s(&rules)],
        &["rules.json", "barge_in.target"],
    );
    std::fs::write(&rules, r#"{"barge": 1}"#).unwrap();
    pre.train_refused(&["--weak-rules", s(&rules)], &["unknown field `barge`"]);
}

/// USS gives satisfaction ratings and no intents: train learns the other
/// heads (the intent head is empty) and label writes intent null.
#[test]
fn ratings_without_intents_train_and_label_intent_null() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/uss/sample.txt");
    run_ok(&[
        "import",
        "uss",
        s(&fixture),
        "--out",
        s(&p("uss")),
        "--quiet",
    ]);
    pretrain_tiny(
        &p("uss/turns"),
        tmp.path(),
        Tiny {
            batch_size: 4,
            ..Tiny::default()
        },
    );
    let summary = run_ok(&[
        "train",
        "--init",
        s(&p("pre")),
        "--logs",
        s(&p("uss/turns")),
        "--labels",
        s(&p("uss/annotations")),
        "--annotators",
        "a1,a2,a3",
        "--out",
        s(&p("labeler")),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--dev-share",
        "0.5",
        "--quiet",
    ]);
    assert_eq!(summary["annotators"][0], "a1");
    let labels = label_rows(&p("labeler"), &p("uss/turns"), &p("labels"));
    assert_eq!(labels.len(), 7);
    for l in &labels {
        assert_eq!((l.intent.as_deref(), l.intent_prob), (None, None));
        assert!(l.failure_point.is_some());
        assert!(l.goal_success.is_some());
    }
}

#[test]
fn the_fast_path_labels_as_the_plain_path() {
    // Label's encoding cache, the fused kernels and length groups only save
    // time: with LABELGEN_PLAIN_PATH=1 (none of them) the labels are the
    // same, the probabilities equal within float rounding.
    let tmp = trained();
    let p = |name: &str| tmp.path().join(name);
    let fast = label_rows(&p("labeler"), &p("sim/turns"), &p("fast"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labelgen"))
        .args([
            "label",
            "--model",
            s(&p("labeler")),
            "--logs",
            s(&p("sim/turns")),
        ])
        .args(["--out", s(&p("plain")), "--quiet"])
        .env("LABELGEN_PLAIN_PATH", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["distinct_turns_encoded"], 0,
        "the plain path has no cache"
    );
    let plain = read_table::<Label>(&p("plain")).unwrap().0;
    assert_eq!(fast.len(), plain.len());
    assert!(fast.len() > 100, "{} turns", fast.len());
    let close = |a: Option<f32>, b: Option<f32>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-4,
        (a, b) => a == b,
    };
    for (f, p) in fast.iter().zip(&plain) {
        let key = (&f.dialogue_id, f.turn_index);
        assert_eq!(key, (&p.dialogue_id, p.turn_index));
        assert_eq!(
            (&f.goal_id, &f.goal_success, &f.intent, &f.failure_point),
            (&p.goal_id, &p.goal_success, &p.intent, &p.failure_point),
            "{key:?}"
        );
        let spans = |l: &Label| {
            let spans = l.slots.iter().flatten();
            spans
                .map(|s| (s.slot.clone(), s.start, s.end))
                .collect::<Vec<_>>()
        };
        assert_eq!(spans(f), spans(p), "{key:?}");
        for (a, b) in [
            (f.goal_boundary_prob, p.goal_boundary_prob),
            (f.goal_success_prob, p.goal_success_prob),
            (f.intent_prob, p.intent_prob),
            (f.slots_prob, p.slots_prob),
            (f.failure_point_prob, p.failure_point_prob),
        ] {
            assert!(close(a, b), "{key:?}: {a:?} vs {b:?}");
        }
    }
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Per task, the share of turns whose label differs between two labellings
/// of the same logs.
fn shares_differing(a: &[Label], b: &[Label]) -> Vec<(&'static str, f64)> {
    assert_eq!(a.len(), b.len());
    let share = |field: &dyn Fn(&Label) -> String| {
        let differ = a
            .iter()
            .zip(b)
            .filter(|(x, y)| field(x) != field(y))
            .count();
        differ as f64 / a.len() as f64
    };
    let spans = |l: &Label| {
        let spans: Vec<_> = l
            .slots
            .iter()
            .flatten()
            .map(|s| (&s.slot, s.start, s.end))
            .collect();
        format!("{spans:?}")
    };
    vec![
        ("goal_id", share(&|l| format!("{:?}", l.goal_id))),
        ("goal_success", share(&|l| format!("{:?}", l.goal_success))),
        ("intent", share(&|l| format!("{:?}", l.intent))),
        (
            "failure_point",
            share(&|l| format!("{:?}", l.failure_point)),
        ),
        ("slots", share(&spans)),
    ]
}

/// The largest change of an intent probability between two labellings.
fn intent_probability_gap(a: &[Label], b: &[Label]) -> f32 {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some((x.intent_prob? - y.intent_prob?).abs()))
        .fold(0f32, f32::max)
}

#[test]
fn int16_labels_agree_with_f32_labels() {
    // `--precision int16` runs the dense layers in 16-bit integers: the
    // labels may differ where a decision sits on its threshold, so the test
    // bounds the share that differ per task rather than asking for equality.
    let tmp = trained();
    let p = |name: &str| tmp.path().join(name);
    let f32_rows = label_rows(&p("labeler"), &p("sim/turns"), &p("f32"));
    let out = labelgen(&[
        "label",
        "--model",
        s(&p("labeler")),
        "--logs",
        s(&p("sim/turns")),
        "--out",
        s(&p("int16")),
        "--precision",
        "int16",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if !avx2() {
        assert_eq!(summary["precision"], "f32", "{summary}");
        assert!(
            stderr(&out).contains("needs a CPU with AVX2"),
            "{}",
            stderr(&out)
        );
        return;
    }
    assert_eq!(summary["precision"], "int16", "{summary}");
    let int16_rows = read_table::<Label>(&p("int16")).unwrap().0;
    for (task, share) in shares_differing(&f32_rows, &int16_rows) {
        assert!(
            share <= 0.02,
            "{task}: {share} of the labels differ from f32's"
        );
    }
    let gap = intent_probability_gap(&f32_rows, &int16_rows);
    assert!(gap > 0.0, "int16 ran: some probability moved");
}

#[test]
fn int16_cached_states_train_a_model_that_labels_as_the_f32_one() {
    // `train --precision int16` computes the frozen encoder's cached states
    // in int16; what trains on them stays f32. The two models' labels (both
    // labelled in f32) agree on nearly every turn.
    let pre = Pretrained::new();
    let plain = pre.train_ok("frozen", &["--freeze-encoder"]);
    assert_eq!(plain["precision"], "f32", "{plain}");
    let run = pre.train("int16", &["--freeze-encoder", "--precision", "int16"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["cached_turns"], plain["cached_turns"]);
    if !avx2() {
        assert_eq!(summary["precision"], "f32", "{summary}");
        assert!(
            stderr(&run).contains("needs a CPU with AVX2"),
            "{}",
            stderr(&run)
        );
        return;
    }
    assert_eq!(summary["precision"], "int16", "{summary}");
    let (f32_rows, int16_rows) = (pre.labels("frozen"), pre.labels("int16"));
    for (task, share) in shares_differing(&f32_rows, &int16_rows) {
        assert!(
            share <= 0.05,
            "{task}: {share} of the labels differ from the f32-cached model's"
        );
    }
    let gap = intent_probability_gap(&f32_rows, &int16_rows);
    assert!(gap > 0.0, "int16 ran: some probability moved");
    // Without a cache there is nothing for int16 to compute.
    pre.train_refused(
        &["--precision", "int16"],
        &[
            "--precision int16",
            "--freeze-encoder or --train-top-layers",
        ],
    );
}
