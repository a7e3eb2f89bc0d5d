//! Faults with real process kills and real OS errors (issue 17): `kill -9`
//! of synth, ingest, label and train while they write, a read-only or
//! impossible output directory, a full disk (a file-size limit on the
//! child), an input rewritten or replaced while ingest, synth, label,
//! train, pretrain or eval reads it (the child frozen with SIGSTOP
//! mid-run), and `labelgen run` killed in
//! one step after another. Every command writes its output into a hidden
//! sibling (`.OUT.tmp-PID`) renamed into place at the end, so a killed run
//! leaves nothing at OUT, and the rerun gives the same bytes as a run never
//! killed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Tiny, labelgen, pretrain_tiny, run_ok, s, stderr, stdout};

/// Every file under `dir`, by relative path, with its bytes.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The hidden staging siblings of `out` (`.NAME.tmp-PID`).
fn staging_of(out: &Path) -> Vec<PathBuf> {
    let name = format!(".{}.tmp-", out.file_name().unwrap().to_str().unwrap());
    let Ok(entries) = std::fs::read_dir(out.parent().unwrap()) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&name))
        .collect()
}

/// Starts labelgen with `args` and sends it SIGKILL as soon as `ready`
/// holds (polled every millisecond). Returns whether the kill landed while
/// it ran; false when it finished first (the caller says so).
fn kill_when(args: &[&str], mut ready: impl FnMut() -> bool) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_labelgen"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills `args` (which write `out`) once its staging sibling holds a file,
/// checks that nothing is left at `out`, reruns, and compares with `clean`,
/// the output of the same command never interrupted.
fn killed_then_rerun_matches(args: &[&str], out: &Path, clean: &Path) {
    let writing = || {
        staging_of(out)
            .iter()
            .any(|dir| std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()))
    };
    if kill_when(args, writing) {
        assert!(
            !out.exists(),
            "{args:?}: killed mid-write, yet {} exists",
            out.display()
        );
        println!("{}: killed mid-write, nothing at the output path", args[0]);
    } else {
        println!(
            "{}: finished before the kill; only the rerun is checked",
            args[0]
        );
        std::fs::remove_dir_all(out).unwrap();
    }
    let rerun = labelgen(args);
    assert!(rerun.status.success(), "{args:?} rerun: {}", stderr(&rerun));
    assert_eq!(
        files_of(out),
        files_of(clean),
        "{args:?}: the rerun differs from a clean run"
    );
}

/// `dialogues` simulated dialogues over two days into `out`, flat and as
/// hive-partitioned collector logs (out/logs/turns).
fn simulate_hive(out: &Path, dialogues: usize) {
    let dialogues = dialogues.to_string();
    run_ok(&[
        "simulate",
        "--dialogues",
        &dialogues,
        "--seed",
        "4",
        "--days",
        "2",
        "--hive-logs",
        "--out",
        s(out),
        "--quiet",
    ]);
}

/// Simulated logs (flat and hive-partitioned), a tiny pretrained encoder
/// and a trained labeller in a temporary directory.
fn workspace(trained: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    simulate_hive(&p("sim"), 60);
    let pre = pretrain_tiny(&p("sim/turns"), tmp.path(), Tiny::default());
    if trained {
        run_ok(&train_args(&pre, &p("sim"), &p("labeler")));
    }
    tmp
}

fn train_args<'a>(pre: &'a Path, sim: &Path, out: &'a Path) -> Vec<&'a str> {
    let (turns, annotations) = (sim.join("turns"), sim.join("annotations"));
    // Leaked: the argument list outlives this function, once per test.
    let turns: &'a str = Box::leak(turns.display().to_string().into_boxed_str());
    let annotations: &'a str = Box::leak(annotations.display().to_string().into_boxed_str());
    vec![
        "train",
        "--init",
        s(pre),
        "--logs",
        turns,
        "--labels",
        annotations,
        "--out",
        s(out),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--seed",
        "2",
        "--quiet",
    ]
}

/// `args` with OUT appended (the commands end in `--out`).
fn with_out<'a>(args: &[&'a str], out: &'a Path) -> Vec<&'a str> {
    [args, &[s(out)]].concat()
}

#[test]
fn kill_minus_nine_of_synth_label_and_ingest_leaves_no_partial_output() {
    let tmp = workspace(true);
    let p = |name: &str| tmp.path().join(name);
    let (turns, model, hive) = (p("sim/turns"), p("labeler"), p("sim/logs/turns"));
    let commands: [(&str, Vec<&str>); 3] = [
        (
            "synth",
            vec![
                "synth",
                "--logs",
                s(&turns),
                "--seed",
                "1",
                "--quiet",
                "--out",
            ],
        ),
        (
            "label",
            vec![
                "label",
                "--model",
                s(&model),
                "--logs",
                s(&turns),
                "--quiet",
                "--out",
            ],
        ),
        (
            "ingest",
            vec!["ingest", "--logs", s(&hive), "--quiet", "--out"],
        ),
    ];
    for (name, args) in commands {
        let (clean, killed) = (p(&format!("{name}-clean")), p(&format!("{name}-killed")));
        run_ok(&with_out(&args, &clean));
        // A stale staging directory of a killed run with another pid must
        // not leak into the rerun's output either.
        let stale = p(&format!(".{name}-killed.tmp-4194303"));
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("part-00000.parquet"), b"half a file").unwrap();
        killed_then_rerun_matches(&with_out(&args, &killed), &killed, &clean);
    }
}

#[test]
fn kill_minus_nine_of_train_then_resume_or_restart_gives_the_same_model() {
    let tmp = workspace(false);
    let p = |name: &str| tmp.path().join(name);
    let (pre, sim) = (p("pre"), p("sim"));
    let (clean, killed) = (p("clean"), p("killed"));
    run_ok(&train_args(&pre, &sim, &clean));
    let checkpoint = p("killed.checkpoint");
    let args = train_args(&pre, &sim, &killed);
    for rerun_flag in ["--resume", ""] {
        // Killed once a checkpoint is complete (training.json is written last).
        let caught = kill_when(&args, || checkpoint.join("training.json").is_file());
        assert!(
            !killed.exists(),
            "train killed, yet {} exists",
            killed.display()
        );
        println!("train killed mid-run: {caught}; rerun with `{rerun_flag}`");
        let mut rerun = args.clone();
        if !rerun_flag.is_empty() {
            rerun.push(rerun_flag);
        }
        run_ok(&rerun);
        for file in ["model.safetensors", "config.json", "tokenizer.json"] {
            assert_eq!(
                std::fs::read(killed.join(file)).unwrap(),
                std::fs::read(clean.join(file)).unwrap(),
                "{file} differs after kill -9 and a rerun with `{rerun_flag}`"
            );
        }
        assert!(
            !checkpoint.exists(),
            "the finished run removes its checkpoint"
        );
        std::fs::remove_dir_all(&killed).unwrap();
    }
}

/// Runs labelgen under a file-size limit (RLIMIT_FSIZE, set by util-linux
/// `prlimit`, no root needed). `ignore_xfsz`: the shell sets SIGXFSZ to
/// ignored, which exec keeps, so the write fails with EFBIG instead.
fn with_file_size_limit(bytes: u64, ignore_xfsz: bool, args: &[&str]) -> Output {
    let trap = if ignore_xfsz { "trap '' XFSZ; " } else { "" };
    Command::new("sh")
        .arg("-c")
        .arg(format!("{trap}exec prlimit --fsize={bytes} -- \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_labelgen"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_gives_a_clear_error_and_no_partial_output() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        println!("SKIPPED: util-linux prlimit is not installed; the full-disk fault is not tested");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    common::simulate(&p("sim"), 80, 9);
    let (out, turns) = (p("synth"), p("sim/turns"));
    let args = ["synth", "--logs", s(&turns), "--out", s(&out), "--quiet"];
    // SIGXFSZ ignored: the write fails, labelgen reports the file and removes its staging.
    let full = with_file_size_limit(4096, true, &args);
    let err = stderr(&full);
    assert_eq!(full.status.code(), Some(2), "{err}");
    assert!(
        err.contains("File too large") && err.contains(".synth.tmp-"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "a partial output at {}", out.display());
    assert!(
        staging_of(&out).is_empty(),
        "staging left: {:?}",
        staging_of(&out)
    );
    // The default disposition: the kernel kills labelgen with SIGXFSZ (as
    // it would any program that does not ignore it); like kill -9 this
    // leaves at most the hidden staging sibling, never a partial OUT.
    let killed = with_file_size_limit(4096, false, &args);
    assert!(!killed.status.success());
    assert!(!out.exists(), "a partial output at {}", out.display());
    // With room, the same command succeeds.
    run_ok(&args);
}

#[test]
fn an_output_under_a_file_gives_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    common::simulate(&p("sim"), 5, 9);
    let turns = p("sim/turns");

    // A parent that is a file: no user, root included, can write under it.
    std::fs::write(p("not-a-dir"), b"x").unwrap();
    let out = p("not-a-dir/synth");
    let failed = labelgen(&["synth", "--logs", s(&turns), "--out", s(&out), "--quiet"]);
    assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains(s(&p("not-a-dir"))),
        "{}",
        stderr(&failed)
    );
    assert!(!out.exists());
}

/// The command prefix under which labelgen's writes into a 0o555 directory
/// are refused. Root writes through permission bits (CAP_DAC_OVERRIDE), so
/// as root labelgen runs under util-linux `setpriv` with that capability
/// and CAP_DAC_READ_SEARCH dropped from its bounding set: still root, the
/// owner of every test file, but held to the permission bits like any
/// user. That needs no privilege root in a container lacks (dropping from
/// the bounding set needs CAP_SETPCAP, in Docker's default set). Another
/// user needs no prefix. Err(why) when the environment cannot refuse a
/// write this way (the caller prints it and skips).
fn held_to_permissions(locked: &Path) -> Result<Vec<&'static str>, String> {
    let probe = locked.join("probe");
    if std::fs::write(&probe, b"").is_err() {
        return Ok(Vec::new());
    }
    std::fs::remove_file(&probe).unwrap();
    let prefix = vec![
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--",
    ];
    let script = r#"touch "$1" 2>/dev/null && echo wrote || echo refused"#;
    let tried = Command::new(prefix[0])
        .args(&prefix[1..])
        .args(["sh", "-c", script, "sh", s(&probe)])
        .output()
        .map_err(|e| format!("util-linux setpriv cannot run: {e}"))?;
    match stdout(&tried).trim() {
        "refused" => Ok(prefix),
        "wrote" => {
            std::fs::remove_file(&probe).unwrap();
            Err("a process without CAP_DAC_OVERRIDE still writes into a 0o555 directory".into())
        }
        _ => Err(format!("setpriv failed: {}", stderr(&tried).trim())),
    }
}

fn run_with_prefix(prefix: &[&str], args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_labelgen");
    let mut command = match prefix.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(bin);
            command
        }
        None => Command::new(bin),
    };
    command.args(args).output().unwrap()
}

#[test]
fn a_read_only_output_directory_gives_a_clear_error_and_no_partial_output() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = workspace(true);
    let p = |name: &str| tmp.path().join(name);
    let (turns, model, locked) = (p("sim/turns"), p("labeler"), p("locked"));
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let prefix = match held_to_permissions(&locked) {
        Ok(prefix) => prefix,
        Err(why) => {
            println!("SKIPPED: a refused write cannot be set up here: {why}");
            return;
        }
    };
    let (labels, retrained) = (locked.join("labels"), locked.join("labeler"));
    let label = |out: &Path, force: bool| -> Vec<String> {
        let mut args = vec![
            "label",
            "--model",
            s(&model),
            "--logs",
            s(&turns),
            "--quiet",
        ];
        args.extend(["--out", s(out)]);
        if force {
            args.push("--force");
        }
        args.into_iter().map(String::from).collect()
    };
    let pre = p("pre");
    let train = train_args(&pre, &p("sim"), &retrained);
    let synth_out = locked.join("synth");
    let synth = [
        "synth",
        "--logs",
        s(&turns),
        "--out",
        s(&synth_out),
        "--quiet",
    ];
    let label_args = label(&labels, false);
    let label_args: Vec<&str> = label_args.iter().map(String::as_str).collect();
    for (command, args, out) in [
        ("synth", synth.to_vec(), &synth_out),
        ("label", label_args, &labels),
        ("train", train, &retrained),
    ] {
        let failed = run_with_prefix(&prefix, &args);
        let err = stderr(&failed);
        assert_eq!(failed.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains(s(&locked)) && err.contains("ermission denied"),
            "{command}: {err}"
        );
        assert!(!err.contains("panicked"), "{command}: {err}");
        assert!(!out.exists(), "{command}: {} exists", out.display());
        println!("{command}: {}", err.trim());
    }
    let left: Vec<_> = std::fs::read_dir(&locked).unwrap().collect();
    assert!(
        left.is_empty(),
        "written into the read-only directory: {left:?}"
    );

    // --force over an existing read-only OUT: its old contents cannot be
    // removed, yet the new output goes into place whole; the old one was
    // never lost (it is left aside, and the command warns where).
    let old = p("old-labels");
    run_ok(&with_out(
        &[
            "label",
            "--model",
            s(&model),
            "--logs",
            s(&turns),
            "--quiet",
            "--out",
        ],
        &old,
    ));
    let before = files_of(&old);
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o555)).unwrap();
    let forced = label(&old, true);
    let forced: Vec<&str> = forced.iter().map(String::as_str).collect();
    let replaced = run_with_prefix(&prefix, &forced);
    let err = stderr(&replaced);
    assert!(replaced.status.success(), "{err}");
    assert_eq!(files_of(&old), before, "the new labels, whole");
    assert!(err.contains("old contents are left at"), "{err}");
}

/// Sends `signal` (STOP, CONT) to a child with util-linux `kill`.
fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Starts `args`, freezes it (SIGSTOP) as soon as `mid_run` holds (its
/// staging sibling exists, a checkpoint is written), applies `change` to
/// one of its input files, and lets it go on (SIGCONT). Returns its
/// output, or None when it finished before the freeze (the caller says so).
fn change_input_when(
    args: &[&str],
    mid_run: impl Fn() -> bool,
    change: impl Fn(),
) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_labelgen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if mid_run() {
            signal(&child, "STOP");
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    change();
    signal(&child, "CONT");
    Some(child.wait_with_output().unwrap())
}

/// [`change_input_when`] the staging sibling of `out` exists.
fn change_input_mid_run(args: &[&str], out: &Path, change: impl Fn()) -> Option<Output> {
    change_input_when(args, || !staging_of(out).is_empty(), change)
}

/// [`change_input_mid_run`], tried again (the input restored by
/// `restore`) while the run succeeds anyway: a tiny input under load can
/// pass its final input check between the test seeing its staging and
/// freezing it, and then it rightly succeeds on the input it read (CI saw
/// it twice in a row). A missing check succeeds every time and fails the
/// caller's assertions on the last try. None when the run finished before
/// it could be frozen (said on stdout).
fn change_input_until_caught(
    command: &str,
    args: &[&str],
    out: &Path,
    change: impl Fn(),
    restore: impl Fn(),
) -> Option<Output> {
    const TRIES: usize = 5;
    for attempt in 1..=TRIES {
        match change_input_mid_run(args, out, &change) {
            Some(run) if run.status.success() && attempt < TRIES => {
                println!("{command}: checked its input before it was frozen; again");
                std::fs::remove_dir_all(out).unwrap();
                restore();
            }
            Some(run) => return Some(run),
            None => break,
        }
    }
    println!("SKIPPED {command}: it finished before it could be frozen");
    None
}

/// The run failed with exit status 2 naming `changed` as changed under it,
/// and left nothing at `out`, staging included.
fn assert_refused_naming(command: &str, run: &Output, changed: &Path, out: &Path) {
    let err = stderr(run);
    assert_eq!(run.status.code(), Some(2), "{command}: {err}");
    assert!(
        err.contains(s(changed)) && err.contains("changed while this command read it"),
        "{command}: {err}"
    );
    assert!(!err.contains("panicked"), "{command}: {err}");
    assert!(!out.exists(), "{command}: an output at {}", out.display());
    assert!(
        staging_of(out).is_empty(),
        "{command}: staging left: {:?}",
        staging_of(out)
    );
    println!("{command}: {}", err.trim());
}

#[test]
fn a_log_file_changed_while_ingest_or_synth_reads_it_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    simulate_hive(&p("sim"), 300);
    let hive = p("sim/logs/turns");
    let mut parts = Vec::new();
    let mut stack = vec![hive.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                parts.push(path);
            }
        }
    }
    parts.sort();
    assert!(parts.len() >= 2, "{parts:?}");
    let (first, last) = (parts[0].clone(), parts[parts.len() - 1].clone());
    let flat = p("sim/turns/part-00000.parquet");
    let (first_bytes, last_bytes, flat_bytes) = (
        std::fs::read(&first).unwrap(),
        std::fs::read(&last).unwrap(),
        std::fs::read(&flat).unwrap(),
    );
    // Rewritten in place (ingest has read its footer, not yet its rows),
    // and replaced by rename (synth may have read it already): each gives
    // an output that matches no state of the logs.
    let rewrite_last: Box<dyn Fn()> = Box::new(|| std::fs::write(&last, &first_bytes).unwrap());
    let replace_flat: Box<dyn Fn()> = Box::new(|| {
        let new = flat.with_extension("new");
        std::fs::write(&new, &first_bytes).unwrap();
        std::fs::rename(&new, &flat).unwrap();
    });
    let cases = [
        ("ingest", hive.clone(), &last, &last_bytes, rewrite_last),
        ("synth", p("sim/turns"), &flat, &flat_bytes, replace_flat),
    ];
    for (command, logs, changed_file, original, change) in cases {
        let out = p(&format!("{command}-out"));
        let args = [command, "--logs", s(&logs), "--out", s(&out), "--quiet"];
        let restore = || std::fs::write(changed_file, original).unwrap();
        let Some(changed) = change_input_until_caught(command, &args, &out, &change, restore)
        else {
            continue;
        };
        assert_refused_naming(command, &changed, changed_file, &out);
        // The log file back as it was: the same command succeeds.
        std::fs::write(changed_file, original).unwrap();
        run_ok(&args);
    }
}

#[test]
fn a_log_file_changed_while_label_reads_it_fails_naming_it() {
    let tmp = workspace(true);
    let p = |name: &str| tmp.path().join(name);
    let (flat, out) = (p("sim/turns/part-00000.parquet"), p("labels"));
    let original = std::fs::read(&flat).unwrap();
    // Replaced by an identical copy (a new inode): still valid Parquet, so
    // only the input check can see it, however far label has read (bytes
    // appended in place made label fail earlier, on a truncated file, when
    // the machine was loaded).
    let replace = || {
        let new = flat.with_extension("new");
        std::fs::write(&new, &original).unwrap();
        std::fs::rename(&new, &flat).unwrap();
    };
    let (model, logs) = (p("labeler"), p("sim/turns"));
    let args = [
        "label",
        "--model",
        s(&model),
        "--logs",
        s(&logs),
        "--out",
        s(&out),
        "--quiet",
    ];
    let restore = || std::fs::write(&flat, &original).unwrap();
    let Some(changed) = change_input_until_caught("label", &args, &out, replace, restore) else {
        return;
    };
    assert_refused_naming("label", &changed, &flat, &out);
    std::fs::write(&flat, &original).unwrap();
    run_ok(&args);
}

/// A pipeline small enough to run end to end in seconds: every step but
/// ingest (which tests/ingest.rs and the kill above cover).
fn tiny_pipeline(work: &Path) -> String {
    format!(
        r#"
[pipeline]
name = "tiny"
work_dir = "{}"
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
epochs = 2
batch_size = 8
[promote]
bootstrap = 50
[label]
[review]
lowest = 5
random = 5
[eval]
bootstrap = 20
[report]
"#,
        work.display()
    )
}

/// What a pipeline's steps wrote under `work`: every file but hidden ones
/// (staging) and the run's own bookkeeping (the lock, the manifest, the
/// log and the report history record times and pids). JSON fields that
/// record when, not what, are left out: a model's epoch timings
/// (`seconds`), and the nightly report's eval-history stamps, taken from
/// the eval report's modification time (`unix`, `date`, `eval_id`).
fn step_outputs(work: &Path) -> BTreeMap<String, Vec<u8>> {
    fn drop_keys(value: &mut serde_json::Value, keys: &[&str]) {
        match value {
            serde_json::Value::Object(map) => {
                map.retain(|key, _| !keys.contains(&key.as_str()));
                map.values_mut().for_each(|v| drop_keys(v, keys));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| drop_keys(v, keys)),
            _ => {}
        }
    }
    files_of(work)
        .into_iter()
        .filter(|(name, _)| {
            !name.split('/').any(|part| part.starts_with('.'))
                && !["pipeline.lock", "manifest.json"].contains(&name.as_str())
                && !name.starts_with("history/")
                && !name.ends_with(".log")
        })
        .map(|(name, bytes)| {
            let keys: &[&str] = if name.ends_with("training.json") {
                &["seconds"]
            } else if name == "report/report.json" {
                &["unix", "date", "eval_id"]
            } else {
                return (name, bytes);
            };
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            drop_keys(&mut value, keys);
            (name, value.to_string().into_bytes())
        })
        .collect()
}

/// Hidden step staging directories (`.NAME.staging`) under `work` that
/// already hold a file: a step is mid-write there.
fn busy_stagings(work: &Path) -> Vec<String> {
    let mut busy = Vec::new();
    let mut dirs = vec![work.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".staging") {
                if std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some()) {
                    busy.push(name);
                }
            } else if path.is_dir() && !name.starts_with('.') {
                dirs.push(path);
            }
        }
    }
    busy
}

#[test]
fn kill_minus_nine_of_run_in_each_step_leaves_only_complete_outputs_and_the_rerun_matches() {
    let tmp = tempfile::tempdir().unwrap();
    // Both runs use one work dir path (the clean one is moved aside), so
    // outputs that record paths compare too.
    let work = tmp.path().join("work");
    let toml = tmp.path().join("tiny.toml");
    std::fs::write(&toml, tiny_pipeline(&work)).unwrap();
    let args = ["run", s(&toml), "--quiet"];
    run_ok(&args);
    let clean = step_outputs(&work);
    std::fs::rename(&work, tmp.path().join("clean")).unwrap();

    // Each run is killed in the first step it is writing that no earlier
    // run was killed in, so the kills walk through the steps; the run that
    // finishes unkilled ends the loop. Steps that take milliseconds (label,
    // review) finish before a kill lands; simulate, pretrain, train,
    // promote, eval and report are caught (3 or more asked, 5 to 7 seen).
    let mut killed_in: Vec<String> = Vec::new();
    for _ in 0..20 {
        let mut caught = None;
        let landed = kill_when(&args, || {
            let fresh = busy_stagings(&work)
                .into_iter()
                .find(|name| !killed_in.contains(name));
            let found = fresh.is_some();
            caught = fresh;
            found
        });
        if !landed {
            break;
        }
        let step = caught.expect("killed on a fresh staging directory");
        // Whatever a step moved into place is complete: the bytes of the
        // uninterrupted run.
        for (name, bytes) in step_outputs(&work) {
            assert!(
                clean.get(&name) == Some(&bytes),
                "killed in {step}: {name} differs from the uninterrupted run's"
            );
        }
        println!("labelgen run killed in {step}");
        killed_in.push(step);
    }
    assert!(
        killed_in.len() >= 3,
        "kills landed in only {killed_in:?}; the steps ran too fast to catch"
    );
    // The run after the last kill finished; one more finds nothing to do.
    run_ok(&args);
    let finished = step_outputs(&work);
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&finished), names(&clean));
    for (name, bytes) in &clean {
        assert!(
            finished.get(name) == Some(bytes),
            "{name} differs after kills in {killed_in:?}"
        );
    }
    println!(
        "{} kills ({killed_in:?}); {} output files equal the uninterrupted run's",
        killed_in.len(),
        clean.len()
    );
}

/// The single part file of a dataset directory `dir`.
fn only_part(dir: &Path) -> PathBuf {
    let parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    parts[0].clone()
}

/// Replaces `path` by a copy of itself moved over it (same bytes, a new
/// inode), as a tool that rewrites a model directory would.
fn replace_by_copy(path: &Path) {
    let copy = path.with_extension("copy");
    std::fs::copy(path, &copy).unwrap();
    std::fs::rename(&copy, path).unwrap();
}

#[test]
fn an_input_changed_while_train_reads_it_fails_naming_it() {
    let tmp = workspace(false);
    let p = |name: &str| tmp.path().join(name);
    let (pre, sim, out) = (p("pre"), p("sim"), p("labeler"));
    let annotations = only_part(&p("sim/annotations"));
    let original = std::fs::read(&annotations).unwrap();
    let weights = pre.join("model.safetensors");
    // Rewritten annotations (train has read them), and the --init model's
    // weights replaced (train has loaded them): either way the model would
    // match no state of its inputs.
    let append: Box<dyn Fn()> = Box::new(|| {
        let mut bytes = original.clone();
        bytes.extend_from_slice(b"appended while train reads");
        std::fs::write(&annotations, bytes).unwrap();
    });
    let replace: Box<dyn Fn()> = Box::new(|| replace_by_copy(&weights));
    let args = train_args(&pre, &sim, &out);
    // Mid-run: the first epoch's checkpoint is written.
    let checkpoint = p("labeler.checkpoint");
    let mid_run = || checkpoint.join("training.json").is_file();
    for (changed, change) in [(&annotations, append), (&weights, replace)] {
        let Some(run) = change_input_when(&args, mid_run, change) else {
            println!("SKIPPED train: it finished before it could be frozen");
            continue;
        };
        assert_refused_naming("train", &run, changed, &out);
        if changed == &annotations {
            // A valid table again, with the old bytes, but not the file
            // the checkpoint's run stamped (its modification time differs).
            std::fs::write(&annotations, &original).unwrap();
        }
        // The failed run leaves its last epoch's checkpoint, trained on
        // the inputs as they were: --resume refuses it, naming the file.
        assert_resume_refused("train", &[&args[..], &["--resume"]].concat(), changed, &out);
        // The next case must freeze on a fresh checkpoint.
        std::fs::remove_dir_all(&checkpoint).unwrap();
    }
    run_ok(&args);
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn a_table_changed_while_eval_reads_it_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    common::simulate(&p("sim"), 200, 3);
    let (gold, turns, out) = (p("sim/annotations"), p("sim/turns"), p("report"));
    let logs = only_part(&turns);
    let args = [
        "eval",
        "--gold",
        s(&gold),
        "--turns",
        s(&turns),
        "--bootstrap",
        "2000",
        "--out",
        s(&out),
    ];
    // eval makes its staging directory before it reads: frozen there, the
    // logs are replaced (the same rows in a new file) before it reads them,
    // so only the stamp taken at the start can tell.
    let Some(run) = change_input_mid_run(&args, &out, || replace_by_copy(&logs)) else {
        panic!("eval finished before it could be frozen");
    };
    assert_refused_naming("eval", &run, &logs, &out);
    run_ok(&args);
    assert!(out.join("report.json").is_file());
}

#[test]
fn a_data_file_changed_while_pretrain_reads_it_fails_naming_it() {
    let tmp = workspace(false);
    let p = |name: &str| tmp.path().join(name);
    let (synth, out) = (p("synth"), p("pre2"));
    let data = only_part(&synth);
    let args = [
        "pretrain",
        "--data",
        s(&synth),
        "--out",
        s(&out),
        "--epochs",
        "2",
        "--checkpoint-every",
        "2",
    ];
    let args = [&args[..], &common::TINY_ENCODER].concat();
    // Mid-run: the first epoch's checkpoint is written; the data is then
    // replaced by a copy (the same rows, a new file).
    let checkpoint = p("pre2.checkpoint");
    let mid_run = || checkpoint.join("training.json").is_file();
    let Some(run) = change_input_when(&args, mid_run, || replace_by_copy(&data)) else {
        panic!("pretrain finished before it could be frozen");
    };
    assert_refused_naming("pretrain", &run, &data, &out);
    let resume = [&args[..], &["--resume"]].concat();
    assert_resume_refused("pretrain", &resume, &data, &out);
    // Without --resume the run starts over, its checkpoints replacing the stale one.
    run_ok(&args);
    assert!(out.join("model.safetensors").is_file());
}

/// `--resume` after a run that failed because an input changed: refused
/// with exit status 2, naming the checkpoint and the file that differs,
/// and nothing written at `out`; the checkpoint is kept for a look.
fn assert_resume_refused(command: &str, args: &[&str], changed: &Path, out: &Path) {
    let checkpoint = out.with_file_name(format!(
        "{}.checkpoint",
        out.file_name().unwrap().to_str().unwrap()
    ));
    assert!(checkpoint.is_dir(), "{command}: no checkpoint to resume");
    let resumed = labelgen(args);
    let err = stderr(&resumed);
    assert_eq!(resumed.status.code(), Some(2), "{command} --resume: {err}");
    assert!(
        err.contains(&format!("--resume: the checkpoint {}", s(&checkpoint)))
            && err.contains(&format!("({}: ", s(changed)))
            && err.contains("run without --resume"),
        "{command} --resume: {err}"
    );
    assert!(!out.exists(), "{command} --resume wrote {}", out.display());
    println!("{command} --resume: {}", err.trim());
}

#[test]
fn a_step_output_whose_old_contents_cannot_be_removed_is_replaced_and_recorded() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let toml = tmp.path().join("tiny.toml");
    std::fs::write(&toml, tiny_pipeline(&work)).unwrap();
    run_ok(&["run", s(&toml), "--quiet"]);
    // A read-only directory in the review step's output: its file cannot
    // be removed, so neither can the old output once the new one is in.
    let review = work.join("review");
    let stuck = review.join("stuck");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("kept"), b"old").unwrap();
    std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o555)).unwrap();
    let prefix = match held_to_permissions(&stuck) {
        Ok(prefix) => prefix,
        Err(why) => {
            println!("SKIPPED: a refused removal cannot be set up here: {why}");
            return;
        }
    };
    let rerun = run_with_prefix(&prefix, &["run", s(&toml), "--force", "review", "--quiet"]);
    let err = stderr(&rerun);
    assert!(rerun.status.success(), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&stdout(&rerun)).unwrap();
    assert_eq!(summary["status"], "ok", "{summary}");
    let step = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["name"] == "review")
        .unwrap();
    assert_eq!(step["action"], "ran", "{step}");
    assert_eq!(step["counts"]["input_warnings"], 0, "{step}");
    // The new output is in place and recorded; the old one is left aside,
    // whole, and the run says where.
    assert!(review.join("review_label_studio.json").is_file() && !stuck.exists());
    let old = work.join(".review.old");
    assert!(old.join("stuck/kept").is_file());
    assert!(
        err.contains("is replaced, but its old contents are left at") && err.contains(s(&old)),
        "{err}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["steps"]["review"].is_object(), "{manifest}");
    println!("{}", err.trim());
    // So the temporary directory can be removed by a user without root.
    let old_stuck = old.join("stuck");
    std::fs::set_permissions(old_stuck, std::fs::Permissions::from_mode(0o755)).unwrap();
}
