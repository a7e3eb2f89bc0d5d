//! What each step does: the one file that builds the stages' configs, so a
//! change to a stage's config (a field renamed, an enum instead of two
//! flags) is an edit here and nowhere else in the pipeline.
//!
//! Every step writes only into `staging`, a directory that does not exist
//! yet; the runner renames it into place when the step succeeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::config::{IngestSection, PipelineFile};
use super::manifest::StepRecord;
use super::partitions;
use super::plan::{Layout, StepName};
use super::promote;
use super::report::{self, ReportInputs, ReportSettings};
use super::review::{self, SampleSettings};
use crate::eval::{self, EvalConfig, gold::GoldPolicy, judge::Task};
use crate::model::checkpoint;
use crate::stages::ingest::{self, IngestConfig};
use crate::stages::label::{self, LabelConfig, LabelSummary};
use crate::stages::pretrain::{self, PretrainConfig};
use crate::stages::simulate::{self, SimulateConfig};
use crate::stages::synth::{self, SynthConfig};
use crate::stages::train::{self, TrainConfig};

/// A step's counts for the manifest and the run summary.
pub type Counts = BTreeMap<String, serde_json::Value>;

/// The ingest step over `stages::ingest` (polars): OUT/turns holds the
/// complete dialogues `label` reads; OUT/open the dialogues still active at
/// the window's end, which the next run's window reads again.
fn ingest_step(section: &IngestSection, out: &Path, quiet: bool) -> anyhow::Result<Counts> {
    let mut config = IngestConfig::new(section.logs.clone(), out.to_path_buf());
    config.selection.last_days = section.window_days;
    config.idle_timeout_minutes = section
        .idle_timeout_minutes
        .unwrap_or(config.idle_timeout_minutes);
    config.quiet = quiet;
    let summary = ingest::run(&config)?;
    Ok(counts(&[
        ("partitions", json!(summary.partitions)),
        ("rows_in", json!(summary.rows_in)),
        ("exact_duplicates", json!(summary.exact_duplicates)),
        (
            "conflicting_duplicates",
            json!(summary.conflicting_duplicates),
        ),
        ("dialogues", json!(summary.dialogues)),
        ("turns", json!(summary.turns)),
        ("open_dialogues_carried", json!(summary.open_dialogues)),
        ("open_turns_carried", json!(summary.open_turns)),
        ("skipped_dialogues", json!(summary.skipped_dialogues)),
        ("window_end", json!(summary.window_end)),
    ]))
}

pub struct StepContext<'a> {
    pub file: &'a PipelineFile,
    pub layout: &'a Layout,
    pub quiet: bool,
}

/// The options a step's record keeps: a change reruns the step.
pub fn options(file: &PipelineFile, step: StepName) -> serde_json::Value {
    match step {
        StepName::Simulate => json!(file.simulate),
        StepName::Ingest => json!(file.ingest),
        StepName::Synth => json!(file.synth),
        StepName::Pretrain => json!(file.pretrain),
        StepName::Train => json!(file.train),
        StepName::Promote => json!({"promote": file.promote, "eval": file.eval}),
        StepName::Label => json!(file.label),
        StepName::Review => json!(file.review),
        StepName::Eval => json!(file.eval),
        // The label thresholds decide the coverage the report shows.
        StepName::Report => json!({
            "report": file.report,
            "min_confidence": file.label.as_ref().map(|l| &l.min_confidence),
        }),
    }
}

/// Runs `step`, writing into `staging`; `previous` is its last record, for
/// steps that reuse unchanged parts of their last output (None: redo all).
pub fn execute(
    ctx: &StepContext,
    step: StepName,
    staging: &Path,
    previous: Option<&StepRecord>,
) -> anyhow::Result<Counts> {
    match step {
        StepName::Simulate => simulate_step(ctx, staging),
        StepName::Ingest => {
            let section = ctx.file.ingest.as_ref().ok_or_else(missing_section)?;
            ingest_step(section, staging, ctx.quiet)
        }
        StepName::Synth => synth_step(ctx, staging),
        StepName::Pretrain => pretrain_step(ctx, staging),
        StepName::Train => train_step(ctx, staging),
        StepName::Promote => promote_step(ctx, staging),
        StepName::Label => label_step(ctx, staging, previous),
        StepName::Review => review_step(ctx, staging),
        StepName::Eval => eval_step(ctx, staging),
        StepName::Report => report_step(ctx, staging),
    }
}

/// Paths a step leaves beside its staging directory (checkpoints), removed
/// before a rerun so a killed run's leftovers never leak into the next one.
pub fn staging_leftovers(staging: &Path) -> Vec<PathBuf> {
    vec![checkpoint::resume_dir(staging)]
}

fn missing_section() -> anyhow::Error {
    anyhow::anyhow!("the step's section is missing from the pipeline file")
}

fn required(path: &Option<PathBuf>) -> anyhow::Result<&PathBuf> {
    path.as_ref()
        .ok_or_else(|| anyhow::anyhow!("a dataset the step needs is not configured"))
}

fn counts(entries: &[(&str, serde_json::Value)]) -> Counts {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn simulate_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    let section = ctx.file.simulate.as_ref().ok_or_else(missing_section)?;
    std::fs::create_dir_all(staging)?;
    let seed = section.seed.unwrap_or(1);
    let mut totals = Counts::new();
    for (name, dialogues, seed) in [
        ("train", section.dialogues, seed),
        (
            "heldout",
            section.heldout_dialogues,
            section.heldout_seed.unwrap_or(seed + 1),
        ),
    ] {
        let mut config = SimulateConfig::new(dialogues, seed, staging.join(name));
        config.quiet = ctx.quiet;
        if let Some(v) = section.annotator_error {
            config.annotator_error = v;
        }
        if let Some(v) = section.single_error {
            config.single_error = v;
        }
        if let Some(v) = section.audio_dim {
            config.audio_dim = v;
        }
        if name == "train" {
            config.days = section.days.unwrap_or(config.days);
            config.hive_logs = section.hive_logs.unwrap_or(false);
        }
        let summary = simulate::run(&config)?;
        totals.insert(format!("{name}_dialogues"), json!(summary.dialogues));
        totals.insert(format!("{name}_turns"), json!(summary.turns));
    }
    Ok(totals)
}

fn synth_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    let logs = required(&ctx.layout.train_turns)?.clone();
    let mut config = SynthConfig::new(logs, staging.to_path_buf());
    config.quiet = ctx.quiet;
    let section = ctx.file.synth.clone().unwrap_or_default();
    config.seed = section.seed.unwrap_or(config.seed);
    config.copies = section.copies.unwrap_or(config.copies);
    config.response_swap_rate = section
        .response_swap_rate
        .unwrap_or(config.response_swap_rate);
    let summary = synth::run(&config)?;
    Ok(counts(&[
        ("dialogues", json!(summary.dialogues_out)),
        ("turns", json!(summary.turns_out)),
    ]))
}

fn pretrain_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    let section = ctx.file.pretrain.as_ref().ok_or_else(missing_section)?;
    let data = ctx.layout.output(StepName::Synth);
    let mut c = PretrainConfig::new(data, staging.to_path_buf());
    c.quiet = ctx.quiet;
    c.init = section.init.clone();
    c.max_steps = section.max_steps.or(c.max_steps);
    let set = |target: &mut usize, value: Option<usize>| *target = value.unwrap_or(*target);
    set(&mut c.epochs, section.epochs);
    set(&mut c.batch_size, section.batch_size);
    set(&mut c.hidden_size, section.hidden_size);
    set(&mut c.layers, section.layers);
    set(&mut c.heads, section.heads);
    set(&mut c.dialogue_layers, section.dialogue_layers);
    set(&mut c.vocab_size, section.vocab_size);
    set(&mut c.max_tokens, section.max_tokens);
    set(&mut c.max_turns, section.max_turns);
    c.seed = section.seed.unwrap_or(c.seed);
    c.learning_rate = section.learning_rate.unwrap_or(c.learning_rate);
    let summary = pretrain::run(&c)?;
    remove_leftovers(staging)?;
    Ok(counts(&[
        ("steps", json!(summary.steps)),
        ("turns", json!(summary.turns)),
        ("final_train_loss", json!(summary.final_train_loss)),
        ("input_warnings", json!(summary.input_warnings)),
    ]))
}

fn train_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    let section = ctx.file.train.as_ref().ok_or_else(missing_section)?;
    let init = section
        .init
        .clone()
        .unwrap_or_else(|| ctx.layout.output(StepName::Pretrain));
    let logs = required(&ctx.layout.train_turns)?.clone();
    let labels = required(&ctx.layout.train_annotations)?.clone();
    let mut c = TrainConfig::new(init, logs, labels, staging.to_path_buf());
    c.quiet = ctx.quiet;
    c.annotators = section.annotators.clone();
    c.seed = section.seed.unwrap_or(c.seed);
    c.epochs = section.epochs.unwrap_or(c.epochs);
    c.max_steps = section.max_steps.or(c.max_steps);
    c.batch_size = section.batch_size.unwrap_or(c.batch_size);
    c.learning_rate = section.learning_rate.unwrap_or(c.learning_rate);
    c.dev_share = section.dev_share.unwrap_or(c.dev_share);
    c.splice_goals = section.splice_goals.unwrap_or(c.splice_goals);
    let summary = train::run(&c)?;
    remove_leftovers(staging)?;
    Ok(counts(&[
        ("train_dialogues", json!(summary.train_dialogues)),
        ("labelled_turns", json!(summary.labelled_turns)),
        ("best_epoch", json!(summary.best_epoch)),
        ("input_warnings", json!(summary.input_warnings)),
    ]))
}

/// Counts key of the label step's per-partition digests (kept in the
/// manifest, left out of the run summary).
pub const PARTITION_DIGESTS: &str = "partitions";

/// Labels the logs with the champion: whole, or partition by partition
/// (relabelling only partitions whose files, model or options changed).
fn label_step(
    ctx: &StepContext,
    staging: &Path,
    previous: Option<&StepRecord>,
) -> anyhow::Result<Counts> {
    let logs = required(&ctx.layout.label_turns)?;
    let champion = ctx.layout.champion();
    let parts = partitions::partitions(logs)?;
    if parts.is_empty() {
        let summary = label_saying_warnings(&label_config(ctx, &champion, logs, staging))?;
        return Ok(counts(&[
            ("dialogues", json!(summary.dialogues)),
            ("turns", json!(summary.turns)),
            ("model_id", json!(summary.model_id)),
            ("input_warnings", json!(summary.input_warnings)),
        ]));
    }
    let model = promote::model_id(&champion)?;
    let context = format!("{model}\n{}", options(ctx.file, StepName::Label));
    let before: BTreeMap<String, String> = previous
        .and_then(|r| r.counts.get(PARTITION_DIGESTS))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let old_output = ctx.layout.output(StepName::Label);
    std::fs::create_dir_all(staging)?;
    let (mut digests, mut labelled, mut reused) = (BTreeMap::new(), 0, 0);
    let (mut turns, mut warnings) = (0, 0);
    for (name, path) in &parts {
        let digest = partitions::digest(path, &context)?;
        let old = old_output.join(name);
        if before.get(name) == Some(&digest) && old.is_dir() {
            partitions::link_tree(&old, &staging.join(name))?;
            reused += 1;
        } else {
            let out = staging.join(name);
            let summary = label_saying_warnings(&label_config(ctx, &champion, path, &out))?;
            turns += summary.turns;
            warnings += summary.input_warnings;
            labelled += 1;
        }
        digests.insert(name.clone(), digest);
    }
    Ok(counts(&[
        ("partitions_labelled", json!(labelled)),
        ("partitions_reused", json!(reused)),
        ("turns_labelled", json!(turns)),
        // Of the partitions labelled in this run; a reused one was counted when it was.
        ("input_warnings", json!(warnings)),
        (PARTITION_DIGESTS, json!(digests)),
    ]))
}

/// `label::run`, saying on stderr what the `label` command says of the
/// non-fatal input problems it labelled past (the stage only counts them)
/// and of an int16 precision this CPU cannot run.
fn label_saying_warnings(config: &LabelConfig) -> anyhow::Result<LabelSummary> {
    let summary = label::run(config)?;
    let warnings = [
        summary.warning_text(&config.logs),
        summary.precision_warning(config.precision),
    ];
    for warning in warnings.into_iter().flatten() {
        eprintln!("{warning}");
    }
    Ok(summary)
}

fn remove_leftovers(staging: &Path) -> anyhow::Result<()> {
    for path in staging_leftovers(staging) {
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

fn label_config(ctx: &StepContext, model: &Path, logs: &Path, out: &Path) -> LabelConfig {
    let section = ctx.file.label.clone().unwrap_or_default();
    LabelConfig {
        model: model.to_path_buf(),
        logs: logs.to_path_buf(),
        out: out.to_path_buf(),
        min_confidence: section.min_confidence,
        shard: None,
        batch_size: section.batch_size.unwrap_or(64).max(1),
        run_id: None,
        overwrite: false,
        quiet: ctx.quiet,
        precision: section.precision.unwrap_or_default(),
    }
}

fn review_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    let section = ctx.file.review.clone().unwrap_or_default();
    let settings = SampleSettings {
        tasks: section
            .tasks
            .unwrap_or_else(|| vec!["intent".into(), "failure_point".into()]),
        lowest: section.lowest.unwrap_or(50),
        random: section.random.unwrap_or(50),
        seed: section.seed.unwrap_or(0),
    };
    let labels = ctx.layout.output(StepName::Label);
    let turns = required(&ctx.layout.label_turns)?;
    let sampled = review::sample(&labels, turns, staging, &settings)?;
    let mut out: Counts = (sampled.by_reason.into_iter())
        .map(|(k, v)| (k, json!(v)))
        .collect();
    out.insert("input_warnings".into(), json!(sampled.input_warnings));
    Ok(out)
}

/// Eval's gold settings: the pipeline's `[eval]` over eval's own defaults.
fn eval_config(ctx: &StepContext, out: PathBuf) -> anyhow::Result<EvalConfig> {
    let gold = required(&ctx.layout.heldout_gold)?.clone();
    let mut c = EvalConfig::new(gold, out);
    let section = ctx.file.eval.clone().unwrap_or_default();
    c.gold_annotators = section.gold_annotators.unwrap_or(c.gold_annotators);
    c.baseline_annotators = section.baseline_annotators.unwrap_or(c.baseline_annotators);
    c.baseline_annotators.retain(|a| a != "none");
    c.policy = match section.gold_policy.as_deref() {
        None | Some("unanimous") => GoldPolicy::Unanimous,
        Some("majority") => GoldPolicy::Majority,
        Some(other) => {
            anyhow::bail!("[eval] gold_policy `{other}`: expected unanimous or majority")
        }
    };
    c.bootstrap_resamples = section.bootstrap.unwrap_or(c.bootstrap_resamples);
    c.seed = section.seed.unwrap_or(c.seed);
    c.review_confidence = section.review_confidence.unwrap_or(c.review_confidence);
    c.turns = ctx.layout.heldout_turns.clone();
    Ok(c)
}

/// Labels the held-out logs with the champion and judges them:
/// OUT/labels, OUT/report (report.md/json, plots, the review queue).
fn eval_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    std::fs::create_dir_all(staging)?;
    let heldout = required(&ctx.layout.heldout_turns)?;
    let labels = staging.join("labels");
    let labelled =
        label_saying_warnings(&label_config(ctx, &ctx.layout.champion(), heldout, &labels))?;
    let mut config = eval_config(ctx, staging.join("report"))?;
    config.preds = vec![("champion".to_string(), labels)];
    let report = eval::run(&config)?;
    let mut out = Counts::new();
    out.insert("gold_dialogues".into(), json!(report.gold.dialogues));
    out.insert("review_items".into(), json!(report.review_items));
    // The held-out logs as labelled, and the tables eval read.
    let warnings = labelled.input_warnings + report.read_warnings;
    out.insert("input_warnings".into(), json!(warnings));
    Ok(out)
}

/// Labels the held-out logs with the challenger (and the champion, if
/// any), compares them on the gold and writes OUT/decision.json; the runner
/// applies the decision once this output is in place.
fn promote_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    promote::recover(ctx.layout)?;
    std::fs::create_dir_all(staging)?;
    let challenger = ctx.layout.output(StepName::Train);
    let champion = ctx.layout.champion();
    let previous_decision = ctx.layout.output(StepName::Promote).join(promote::DECISION);
    let decision = match promote::settled(&challenger, &champion, &previous_decision)? {
        Some(decision) => decision,
        None => compare_on_gold(ctx, &challenger, &champion, staging)?,
    };
    decision.save(&staging.join(promote::DECISION))?;
    Ok(counts(&[
        ("promoted", json!(decision.promote)),
        ("reason", json!(decision.reason)),
        ("input_warnings", json!(decision.input_warnings)),
    ]))
}

fn compare_on_gold(
    ctx: &StepContext,
    challenger: &Path,
    champion: &Path,
    staging: &Path,
) -> anyhow::Result<promote::Decision> {
    let heldout = required(&ctx.layout.heldout_turns)?;
    let challenger_labels = staging.join("challenger_labels");
    let mut label_warnings =
        label_saying_warnings(&label_config(ctx, challenger, heldout, &challenger_labels))?
            .input_warnings;
    let champion_labels = staging.join("champion_labels");
    let has_champion = champion.join(checkpoint::CONFIG).is_file();
    if has_champion {
        label_warnings +=
            label_saying_warnings(&label_config(ctx, champion, heldout, &champion_labels))?
                .input_warnings;
    }
    let gold = eval_config(ctx, staging.join("unused"))?;
    let section = ctx.file.promote.clone().unwrap_or_default();
    let tasks: Vec<Task> = match &section.tasks {
        Some(names) => Task::ALL
            .into_iter()
            .filter(|t| names.iter().any(|n| n == t.name()))
            .collect(),
        None => Task::ALL.to_vec(),
    };
    let settings = promote::Settings {
        gold: &gold.gold,
        gold_annotators: &gold.gold_annotators,
        policy: gold.policy,
        tasks: &tasks,
        resamples: section.bootstrap.unwrap_or(1000),
        seed: section.seed.unwrap_or(0),
        alpha: section.alpha.unwrap_or(0.05),
    };
    let champion_labels = has_champion.then_some(champion_labels.as_path());
    let mut decision = promote::decide(&settings, challenger, &challenger_labels, champion_labels)?;
    decision.input_warnings += label_warnings;
    Ok(decision)
}

/// The nightly report from the labels and eval's results:
/// OUT/report.md, report.html, report.json and the plots; the eval runs
/// and daily label counts it remembers go to WORK_DIR/history.
fn report_step(ctx: &StepContext, staging: &Path) -> anyhow::Result<Counts> {
    let section = ctx.file.report.clone().unwrap_or_default();
    let settings = ReportSettings {
        trailing_days: section.trailing_days.unwrap_or(7),
        drift_threshold: section
            .drift_threshold
            .unwrap_or(report::drift::DEFAULT_THRESHOLD),
        min_confidence: ctx
            .file
            .label
            .as_ref()
            .map(|l| l.min_confidence.clone())
            .unwrap_or_default(),
    };
    let has_labels = ctx.file.label.is_some();
    let inputs = ReportInputs {
        labels: has_labels.then(|| ctx.layout.output(StepName::Label)),
        turns: ctx.layout.label_turns.clone().filter(|_| has_labels),
        eval_report: ctx.file.eval.as_ref().map(|_| {
            ctx.layout
                .output(StepName::Eval)
                .join("report")
                .join("report.json")
        }),
        champion: ctx.layout.champion(),
        work_dir: ctx.layout.work_dir.clone(),
        previous_report: Some(ctx.layout.output(StepName::Report).join(report::JSON)),
    };
    let nightly = report::run(&inputs, &settings, staging)?;
    let drifted: Vec<&String> = nightly
        .drift
        .iter()
        .filter(|(_, d)| d.drift.drifted)
        .map(|(task, _)| task)
        .collect();
    Ok(counts(&[
        ("today", json!(nightly.today)),
        (
            "trailing_days_with_labels",
            json!(nightly.trailing_dates.len()),
        ),
        ("drifted_tasks", json!(drifted)),
        ("eval_runs_in_history", json!(nightly.eval_history.len())),
        ("input_warnings", json!(nightly.label_read_warnings)),
    ]))
}
