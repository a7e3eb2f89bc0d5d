//! `labelgen run`'s library entry (`pipeline::run`) on tiny pipelines:
//! clear errors before work, incremental reruns, --force, the lock, crash
//! recovery, promotion and the quality floor.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use labelgen::pipeline::lock::{Acquired, RunLock};
use labelgen::pipeline::plan::StepName;
use labelgen::pipeline::promote::model_id;
use labelgen::pipeline::summary::{RunStatus, RunSummary, StepAction};
use labelgen::pipeline::{self, RunConfig};

/// A pipeline small enough to run end to end in seconds.
fn tiny_pipeline(work: &Path, train_extra: &str, tail: &str) -> String {
    let epochs = if train_extra.contains("epochs") {
        ""
    } else {
        "epochs = 2"
    };
    format!(
        r#"
[pipeline]
name = "tiny"
work_dir = "{work}"

[simulate]
dialogues = 60
heldout_dialogues = 30

[pretrain]
max_steps = 3
batch_size = 8
hidden_size = 16
layers = 1
heads = 2
dialogue_layers = 1
vocab_size = 300
max_tokens = 24

[train]
{epochs}
batch_size = 8
learning_rate = 3e-3
dev_share = 0.25
{train_extra}

[promote]
bootstrap = 50

[label]

[review]
lowest = 5
random = 5

[eval]
bootstrap = 20

[report]
{tail}
"#,
        work = work.display()
    )
}

fn write_pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn config(path: &Path) -> RunConfig {
    RunConfig {
        pipeline: Some(path.to_path_buf()),
        force: Vec::new(),
        dry_run: false,
        quiet: true,
    }
}

fn run(config: &RunConfig) -> RunSummary {
    pipeline::run(config).expect("the pipeline starts")
}

fn actions(summary: &RunSummary) -> Vec<(&'static str, StepAction)> {
    summary
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.action))
        .collect()
}

fn ran(summary: &RunSummary) -> Vec<&'static str> {
    summary
        .steps
        .iter()
        .filter(|s| s.action == StepAction::Ran)
        .map(|s| s.name.as_str())
        .collect()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn nightly_report(work: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(work.join("report/report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn eval_history_lines(work: &Path) -> usize {
    std::fs::read_to_string(work.join("history/eval.jsonl"))
        .unwrap()
        .lines()
        .count()
}

fn error_of(path: &Path) -> String {
    format!("{:#}", pipeline::run(&config(path)).unwrap_err())
}

#[test]
fn bad_pipeline_files_are_clear_errors_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let head = format!(
        "[pipeline]\nname = \"t\"\nwork_dir = \"{}\"\n",
        work.display()
    );
    let cases = [
        (
            format!("{head}[train]\nmax_step = 3\n"),
            vec!["pipeline.toml", "max_step"],
        ),
        (format!("{head}[trian]\n"), vec!["trian"]),
        // Wrong value types and malformed TOML: the file, the key and the line.
        (
            format!("{head}[simulate]\ndialogues = \"five\"\nheldout_dialogues = 5\n"),
            vec!["pipeline.toml", "dialogues", "line 5"],
        ),
        (
            format!("{head}[simulate]\ndialogues = -5\nheldout_dialogues = 5\n"),
            vec!["pipeline.toml", "dialogues"],
        ),
        (
            format!("{head}[train]\nlearning_rate = [1, 2]\n"),
            vec!["pipeline.toml", "learning_rate"],
        ),
        (
            format!("{head}[train\nepochs = 3\n"),
            vec!["pipeline.toml", "line 4"],
        ),
        (
            format!("{head}[pipeline]\nname = \"again\"\n"),
            vec!["pipeline.toml", "pipeline"],
        ),
        (
            "[pipeline]\nname = \"t\"\nwork_dir = \"/no/such/parent/work\"\n".to_string(),
            vec!["/no/such/parent"],
        ),
        (
            format!("{head}[data]\ntrain_turns = \"/no/such/turns\"\n"),
            vec!["/no/such/turns"],
        ),
        (
            format!("{head}[data]\n[train]\ninit = \"/no/such/model\"\n"),
            vec!["/no/such/model", "not a model"],
        ),
        (
            format!("{head}[data]\n[label]\n"),
            vec!["no champion model"],
        ),
        (
            format!("{head}[data]\n[train]\nsplice_goals = 9\n"),
            vec!["splice_goals = 9", "[0, 4]"],
        ),
        (
            format!("{head}[data]\n[label]\nmin_confidence = {{ intnet = 0.5 }}\n"),
            vec!["min_confidence intnet"],
        ),
        (
            // The work directory inside the logs: its output would be input.
            format!("{head}[ingest]\nlogs = \"{}\"\n", tmp.path().display()),
            vec!["overlap"],
        ),
    ];
    for (text, expected) in cases {
        let path = write_pipeline(tmp.path(), &text);
        let error = error_of(&path);
        for needle in expected {
            assert!(
                error.contains(needle),
                "`{needle}` not in: {error}\nfor:\n{text}"
            );
        }
        assert!(!work.exists(), "work started despite: {error}");
    }
    let error = error_of(&tmp.path().join("missing.toml"));
    assert!(error.contains("missing.toml"), "{error}");

    let path = write_pipeline(
        tmp.path(),
        &format!("{head}[simulate]\ndialogues = 5\nheldout_dialogues = 5\n"),
    );
    let mut forced = config(&path);
    forced.force = vec![StepName::Train];
    let error = format!("{:#}", pipeline::run(&forced).unwrap_err());
    assert!(
        error.contains("--force train") && error.contains("simulate"),
        "{error}"
    );
}

#[test]
fn reruns_are_incremental_and_force_reruns_what_depends_on_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let path = write_pipeline(tmp.path(), &tiny_pipeline(&work, "", ""));

    let first = run(&config(&path));
    assert_eq!(first.status, RunStatus::Ok, "{}", first.json_line());
    assert_eq!(
        ran(&first),
        [
            "simulate", "synth", "pretrain", "train", "promote", "label", "review", "eval",
            "report"
        ]
    );
    let sample = std::fs::read_to_string(work.join("review/review_label_studio.json")).unwrap();
    let sample: serde_json::Value = serde_json::from_str(&sample).unwrap();
    assert_eq!(
        sample.as_array().unwrap().len(),
        20,
        "5 + 5 for intent and failure_point"
    );
    assert_eq!(
        first.promoted,
        Some(true),
        "the first challenger has no champion to beat"
    );
    let champion = work.join("models/champion");
    assert_eq!(
        model_id(&champion).unwrap(),
        model_id(&work.join("challenger")).unwrap()
    );
    assert!(work.join("eval/report/review_label_studio.json").is_file());
    assert!(!first.quality.is_empty(), "{}", first.json_line());
    for file in [
        "report.md",
        "report.html",
        "report.json",
        "drift_intent.png",
        "confidence_failure_point.png",
        "eval_history.png",
    ] {
        assert!(work.join("report").join(file).is_file(), "report/{file}");
    }
    let nightly = nightly_report(&work);
    assert_eq!(nightly["trailing_dates"].as_array().unwrap().len(), 0);
    assert!(
        nightly["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("One day of labels only"),
        "simulated logs are one day: {nightly}"
    );
    assert_eq!(eval_history_lines(&work), 1);

    // Nothing new: nothing runs and nothing is rewritten.
    let watched = [
        work.join("challenger/model.safetensors"),
        work.join("eval/report/report.json"),
        work.join("models/champion/model.safetensors"),
    ];
    let before: Vec<SystemTime> = watched.iter().map(|p| mtime(p)).collect();
    let second = run(&config(&path));
    assert_eq!(second.status, RunStatus::Ok);
    assert_eq!(second.ran, 0, "{}", second.json_line());
    assert!(second.seconds < 5.0, "a no-op took {} s", second.seconds);
    let after: Vec<SystemTime> = watched.iter().map(|p| mtime(p)).collect();
    assert_eq!(before, after);
    assert_eq!(
        eval_history_lines(&work),
        1,
        "nothing new, nothing appended"
    );

    // The dry run agrees and writes nothing.
    let mut dry = config(&path);
    dry.dry_run = true;
    dry.force = vec![StepName::Train];
    let plan = run(&dry);
    assert_eq!(plan.status, RunStatus::DryRun);
    let text = plan.plan_text();
    assert!(
        text.contains("pretrain  skip") && text.contains("train     run"),
        "{text}"
    );

    // --force train reruns it and every step reading its output.
    let mut force = config(&path);
    force.force = vec![StepName::Train];
    let forced = run(&force);
    assert_eq!(
        ran(&forced),
        ["train", "promote", "label", "review", "eval", "report"],
        "{}",
        forced.json_line()
    );

    assert_eq!(eval_history_lines(&work), 2, "eval ran again");
    let history = nightly_report(&work)["eval_history"].clone();
    assert!(
        history[1]["tasks"]["intent"]["value"].is_number(),
        "{history}"
    );

    // The report alone again: the same eval run is not recorded twice.
    let mut report_only = config(&path);
    report_only.force = vec![StepName::Report];
    assert_eq!(ran(&run(&report_only)), ["report"]);
    assert_eq!(eval_history_lines(&work), 2);

    // The log has one JSON line per run, the dry run excepted.
    let log = std::fs::read_to_string(work.join("pipeline.log")).unwrap();
    assert_eq!(log.lines().count(), 4);
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn a_worse_challenger_is_not_promoted_and_a_floor_breach_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let path = write_pipeline(tmp.path(), &tiny_pipeline(&work, "epochs = 6", ""));
    assert_eq!(run(&config(&path)).promoted, Some(true));
    let champion = work.join("models/champion");
    let champion_id = model_id(&champion).unwrap();

    // One optimizer step: a challenger that cannot beat the champion.
    std::fs::write(&path, tiny_pipeline(&work, "max_steps = 1", "")).unwrap();
    let summary = run(&config(&path));
    assert_eq!(
        ran(&summary),
        ["train", "promote"],
        "{}",
        summary.json_line()
    );
    assert_eq!(summary.promoted, Some(false), "{}", summary.json_line());
    assert_eq!(model_id(&champion).unwrap(), champion_id);
    assert!(!work.join("models/previous").exists());
    let decision = std::fs::read_to_string(work.join("promote/decision.json")).unwrap();
    assert!(decision.contains("p_value"), "{decision}");

    // A floor no model reaches: nothing reruns, the run exits non-zero.
    let floor = "[quality_floor]\nintent = 1.0\n";
    std::fs::write(&path, tiny_pipeline(&work, "max_steps = 1", floor)).unwrap();
    let breached = run(&config(&path));
    assert_eq!(breached.status, RunStatus::QualityFloorBreached);
    assert_eq!(breached.exit_code(), 1);
    assert_eq!(breached.ran, 0);
    assert!(
        breached.floor_breaches[0].starts_with("quality floor breached: intent accuracy"),
        "{:?}",
        breached.floor_breaches
    );
}

#[test]
fn a_killed_run_is_finished_by_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let path = write_pipeline(tmp.path(), &tiny_pipeline(&work, "", ""));
    let first = run(&config(&path));
    assert_eq!(first.status, RunStatus::Ok);
    let champion_id = model_id(&work.join("models/champion")).unwrap();
    let report = std::fs::read(work.join("eval/report/report.json")).unwrap();

    // What kill -9 can leave: half-written staging directories and a
    // checkpoint, a promotion swap cut between its two renames, and a
    // manifest that never heard of the steps after train.
    std::fs::create_dir_all(work.join(".eval.staging/labels")).unwrap();
    std::fs::write(work.join(".eval.staging/labels/part-0.parquet"), b"partial").unwrap();
    std::fs::create_dir_all(work.join(".challenger.staging.checkpoint")).unwrap();
    std::fs::rename(work.join("models/champion"), work.join("models/previous")).unwrap();
    std::fs::remove_dir_all(work.join("eval")).unwrap();
    let manifest_path = work.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for step in ["promote", "label", "review", "eval"] {
        manifest["steps"].as_object_mut().unwrap().remove(step);
    }
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();

    let rerun = run(&config(&path));
    assert_eq!(rerun.status, RunStatus::Ok, "{}", rerun.json_line());
    assert_eq!(
        ran(&rerun),
        ["promote", "label", "review", "eval", "report"]
    );
    assert_eq!(
        model_id(&work.join("models/champion")).unwrap(),
        champion_id
    );
    assert_eq!(
        std::fs::read(work.join("eval/report/report.json")).unwrap(),
        report
    );
    assert!(!work.join(".eval.staging").exists());
    assert!(!work.join(".challenger.staging.checkpoint").exists());
}

#[test]
fn a_concurrent_run_is_refused_and_a_stale_lock_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let text = format!(
        "[pipeline]\nname = \"t\"\nwork_dir = \"{}\"\n[simulate]\ndialogues = 5\nheldout_dialogues = 5\n",
        work.display()
    );
    let path = write_pipeline(tmp.path(), &text);

    let Acquired::Held(held) = RunLock::acquire(&work.join("pipeline.lock")).unwrap() else {
        panic!("the test takes the lock");
    };
    let refused = run(&config(&path));
    assert_eq!(refused.status, RunStatus::Refused);
    assert_eq!(refused.exit_code(), 0);
    assert!(refused.steps.is_empty());
    let message = refused.message.clone().unwrap();
    assert!(
        message.contains(&std::process::id().to_string()) && message.contains("pipeline.lock"),
        "{message}"
    );
    drop(held);

    // A run killed while holding the lock leaves its pid behind.
    std::fs::write(work.join("pipeline.lock"), "4194303\n").unwrap();
    let took_over = run(&config(&path));
    assert_eq!(took_over.status, RunStatus::Ok, "{}", took_over.json_line());
    assert_eq!(took_over.took_over_lock_of_pid, Some(4_194_303));
    assert_eq!(actions(&took_over), [("simulate", StepAction::Ran)]);
}

/// Copies the simulator's turns for `seed` into `partition` (hive layout).
fn simulated_logs_into(partition: &Path, seed: u64, scratch: &Path) {
    use labelgen::stages::simulate::{self, SimulateConfig};
    let out = scratch.join(format!("sim-{seed}"));
    simulate::run(&SimulateConfig::new(15, seed, out.clone())).unwrap();
    std::fs::create_dir_all(partition).unwrap();
    for entry in std::fs::read_dir(out.join("turns")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), partition.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_late_file_relabels_only_its_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, logs) = (tmp.path().join("work"), tmp.path().join("logs"));
    simulated_logs_into(&logs.join("date=2026-01-01/hour=00"), 5, tmp.path());
    simulated_logs_into(&logs.join("date=2026-01-02/hour=00"), 6, tmp.path());
    let text = tiny_pipeline(&work, "", "").replace(
        "[label]\n",
        &format!("[label]\nlogs = \"{}\"\n", logs.display()),
    );
    let path = write_pipeline(tmp.path(), &text);
    let first = run(&config(&path));
    let label = |s: &RunSummary| {
        s.steps
            .iter()
            .find(|s| s.name == StepName::Label)
            .unwrap()
            .clone()
    };
    assert_eq!(
        label(&first).counts["partitions_labelled"],
        2,
        "{}",
        first.json_line()
    );
    let second_day = work.join("label/date=2026-01-02");
    let part = std::fs::read_dir(&second_day)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let second_day_labels = mtime(&part);

    // A late file lands in the first day's partition, hours later.
    simulated_logs_into(&logs.join("date=2026-01-01/hour=23"), 7, tmp.path());
    let rerun = run(&config(&path));
    assert_eq!(
        ran(&rerun),
        ["label", "review", "report"],
        "{}",
        rerun.json_line()
    );
    let counts = label(&rerun).counts;
    assert_eq!(
        (&counts["partitions_labelled"], &counts["partitions_reused"]),
        (&1.into(), &1.into())
    );
    assert_eq!(
        mtime(&part),
        second_day_labels,
        "the unchanged day was relabelled"
    );
    let labels =
        labelgen::data::dataset::read_table::<labelgen::data::tables::Label>(&work.join("label"))
            .unwrap()
            .0;
    assert!(
        labels.iter().any(|l| l.dialogue_id.starts_with("sim7-")),
        "the late file is labelled"
    );
    assert!(labels.iter().any(|l| l.dialogue_id.starts_with("sim6-")));

    // Two days of partitions: the report compares the second with the first.
    let nightly = nightly_report(&work);
    assert_eq!(nightly["today"], "2026-01-02", "{nightly}");
    assert_eq!(nightly["trailing_dates"], serde_json::json!(["2026-01-01"]));
    let distance = nightly["drift"]["intent"]["drift"]["distance"].as_f64();
    assert!(
        distance.is_some_and(|d| (0.0..=1.0).contains(&d)),
        "{nightly}"
    );
}

/// Runs the pipeline named by LABELGEN_PIPELINE_CHILD: the process that
/// `killed_runs_are_finished_by_the_next_one` starts and kills.
#[test]
#[ignore = "a child process of a_run_killed_repeatedly_ends_as_an_uninterrupted_one"]
fn child_runs_the_pipeline_named_in_the_environment() {
    if let Ok(path) = std::env::var("LABELGEN_PIPELINE_CHILD") {
        run(&config(Path::new(&path)));
    }
}

/// kill -9 at several points of a real run (this test binary, running the
/// child test above), then a rerun: the outputs equal an uninterrupted run's.
#[test]
fn a_run_killed_repeatedly_ends_as_an_uninterrupted_one() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let (clean, killed) = (tmp.path().join("clean"), tmp.path().join("killed"));
    std::fs::create_dir_all(tmp.path().join("k")).unwrap();
    let clean_toml = write_pipeline(tmp.path(), &tiny_pipeline(&clean, "", ""));
    let killed_toml = write_pipeline(&tmp.path().join("k"), &tiny_pipeline(&killed, "", ""));
    assert_eq!(run(&config(&clean_toml)).status, RunStatus::Ok);

    let mut kills = 0;
    for delay_ms in (0..16).map(|i| 60 + 40 * i) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_runs_the_pipeline_named_in_the_environment",
            ])
            .env("LABELGEN_PIPELINE_CHILD", &killed_toml)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(kills > 0, "no run was killed mid-way");
    let finished = run(&config(&killed_toml));
    assert_eq!(finished.status, RunStatus::Ok, "{}", finished.json_line());
    eprintln!("{kills} kills; the run after them ran {:?}", ran(&finished));
    for file in [
        "eval/report/report.json",
        "review/review_label_studio.json",
        "promote/decision.json",
    ] {
        let (a, b) = (clean.join(file), killed.join(file));
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{file} differs after {kills} kills"
        );
    }
    assert_eq!(
        model_id(&clean.join("models/champion")).unwrap(),
        model_id(&killed.join("models/champion")).unwrap()
    );
    let leftovers: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".staging") || n.ends_with(".old") || n.contains(".checkpoint"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn kill_minus_nine_at_any_point_then_rerun_equals_an_uninterrupted_run() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let (clean, killed) = (tmp.path().join("clean"), tmp.path().join("killed"));
    let clean_toml = write_pipeline(&tmp.path().join(""), &tiny_pipeline(&clean, "", ""));
    let status = Command::new(env!("CARGO_BIN_EXE_labelgen"))
        .args(["run", clean_toml.to_str().unwrap(), "--quiet"])
        .status()
        .unwrap();
    assert!(status.success());
    let killed_dir = tmp.path().join("k");
    std::fs::create_dir_all(&killed_dir).unwrap();
    let killed_toml = write_pipeline(&killed_dir, &tiny_pipeline(&killed, "", ""));
    for delay_ms in [200, 800, 1500, 3000, 6000] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_labelgen"))
            .args(["run", killed_toml.to_str().unwrap(), "--quiet"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
    }
    let status = Command::new(env!("CARGO_BIN_EXE_labelgen"))
        .args(["run", killed_toml.to_str().unwrap(), "--quiet"])
        .status()
        .unwrap();
    assert!(status.success());
    for file in [
        "eval/report/report.json",
        "models/champion/model.safetensors",
    ] {
        assert_eq!(
            std::fs::read(clean.join(file)).unwrap(),
            std::fs::read(killed.join(file)).unwrap(),
            "{file} differs after kills"
        );
    }
}

/// The demo pipeline as shipped, into a temporary work dir; prints its
/// duration (`cargo test --release --test pipeline -- --ignored demo --nocapture`).
#[test]
#[ignore = "minutes: the demo pipeline end to end"]
fn the_demo_pipeline_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("demo");
    // The work dir and the simulated hive logs inside it.
    let text =
        pipeline::DEMO_PIPELINE.replace("\"out/pipeline-demo", &format!("\"{}", work.display()));
    assert!(text.contains(&work.display().to_string()));
    let path = write_pipeline(tmp.path(), &text);
    let mut dry = config(&path);
    dry.dry_run = true;
    println!("{}", run(&dry).plan_text());
    let summary = run(&config(&path));
    println!("{}", summary.json_line());
    assert_eq!(summary.status, RunStatus::Ok);
    let again = run(&config(&path));
    assert_eq!(again.ran, 0);
    println!(
        "demo: {:.1} s; rerun {:.2} s",
        summary.seconds, again.seconds
    );
}

#[test]
fn the_shipped_pipeline_files_parse() {
    use labelgen::pipeline::config::PipelineFile;
    let demo = PipelineFile::parse(pipeline::DEMO_PIPELINE, "pipelines/demo.toml").unwrap();
    assert!(demo.simulate.is_some() && demo.review.is_some());
    // The demo labels what it ingested from its simulated hive logs.
    assert!(demo.ingest.is_some());
    assert_eq!(demo.simulate.as_ref().unwrap().hive_logs, Some(true));
    let nightly = std::fs::read_to_string("pipelines/nightly.toml").unwrap();
    let nightly = PipelineFile::parse(&nightly, "pipelines/nightly.toml").unwrap();
    assert!(nightly.ingest.is_some() && nightly.simulate.is_none());
    assert_eq!(nightly.train.unwrap().every_days, Some(7.0));

    // Here, without /srv, nightly.toml stops before work, naming the paths.
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("pipelines/nightly.toml").unwrap();
    let path = write_pipeline(tmp.path(), &text);
    let error = error_of(&path);
    assert!(error.contains("/srv/logs/turns"), "{error}");
}

#[test]
fn a_relative_work_dir_is_created_with_its_parents() {
    // README's main job in a fresh clone: `out/` does not exist yet.
    let tmp = tempfile::tempdir().unwrap();
    let text = "[pipeline]\nname = \"t\"\nwork_dir = \"out/nested/work\"\n\
                [simulate]\ndialogues = 5\nheldout_dialogues = 5\n";
    let path = write_pipeline(tmp.path(), text);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_labelgen"))
        .args(["run", "--quiet"])
        .arg(&path)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(tmp.path().join("out/nested/work/manifest.json").is_file());
}
