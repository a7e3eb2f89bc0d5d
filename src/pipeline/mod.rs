//! `labelgen run PIPELINE.toml`: chains the stages as a pipeline file says,
//! incrementally and crash-safely, for cron.
//!
//! - [`config`]: the file format (unknown keys are errors);
//! - [`plan`]: the ordered steps with their inputs and outputs, validated
//!   before any work;
//! - [`manifest`]: what each step last ran on, to skip unchanged steps;
//! - [`lock`]: one run per work directory;
//! - [`steps`]: each step's call into its stage (the one file that builds
//!   stage configs);
//! - [`promote`]: champion/challenger on held-out gold;
//! - [`report`]: the nightly report (drift, confidence, coverage, eval
//!   over time) and the history it keeps;
//! - [`summary`]: the one-line JSON run summary and the plan text.
//!
//! Every step writes into a hidden staging directory beside its output and
//! renames it into place; its manifest record is written (atomically) only
//! after that, so a run killed at any point is finished by the next one,
//! which ignores and replaces whatever the killed run left half-written.

pub mod config;
pub mod lock;
pub mod manifest;
pub mod partitions;
pub mod plan;
pub mod promote;
pub mod report;
pub mod review;
pub mod schedule;
pub mod steps;
pub mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::data::dataset::move_into_place;

use config::PipelineFile;
use lock::{Acquired, RunLock};
use manifest::{Manifest, StepRecord, binary_version, fingerprint, first_difference};
use plan::{Plan, Step, StepName};
use steps::StepContext;
use summary::{RunStatus, RunSummary, StepAction, StepReport};

/// The demo pipeline, built into the binary so `labelgen run` has a default.
pub const DEMO_PIPELINE: &str = include_str!("../../pipelines/demo.toml");
const DEMO_ORIGIN: &str = "pipelines/demo.toml (built in)";

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The pipeline file (pipelines/*.toml); None runs the built-in demo
    /// ([`DEMO_PIPELINE`], work_dir out/pipeline-demo under the current
    /// directory).
    pub pipeline: Option<PathBuf>,
    /// Steps to rerun even when unchanged; the steps reading their outputs
    /// rerun with them.
    pub force: Vec<StepName>,
    /// Print the plan (what would run and why) and do nothing.
    pub dry_run: bool,
    /// No progress lines or bars on stderr.
    pub quiet: bool,
}

/// Runs the pipeline. Errors are problems found before any work (a bad
/// file, path or model); what happens once steps run (a step failing, a
/// quality floor breached, another run holding the lock) is in the summary.
pub fn run(config: &RunConfig) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let (file, origin) = match &config.pipeline {
        Some(path) => (PipelineFile::load(path)?, path.clone()),
        None => (
            PipelineFile::parse(DEMO_PIPELINE, DEMO_ORIGIN)?,
            PathBuf::from(DEMO_ORIGIN),
        ),
    };
    let plan = Plan::build(&file, &origin)?;
    for forced in &config.force {
        anyhow::ensure!(
            plan.get(*forced).is_some(),
            "--force {forced}: {} has no such step; its steps are {}",
            origin.display(),
            plan.steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut summary = new_summary(&file, &origin);
    let manifest = Manifest::load(&plan.layout.manifest())?;
    if config.dry_run {
        summary.status = RunStatus::DryRun;
        summary.steps = dry_run(&file, &plan, &manifest, &config.force)?;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let work_dir = &plan.layout.work_dir;
    std::fs::create_dir_all(work_dir)
        .map_err(|e| anyhow::anyhow!("cannot create work_dir {}: {e}", work_dir.display()))?;
    let lock = match RunLock::acquire(&plan.layout.lock())? {
        Acquired::Held(lock) => lock,
        Acquired::Busy { holder } => {
            summary.status = RunStatus::Refused;
            let who = holder.map_or("another run".to_string(), |pid| format!("run {pid}"));
            summary.message = Some(format!(
                "{who} holds {}; nothing done",
                plan.layout.lock().display()
            ));
            return finish(summary, &file, started);
        }
    };
    summary.took_over_lock_of_pid = lock.stale_pid;
    remove_leftovers(&plan)?;
    // The manifest is read again under the lock: a run that just finished
    // may have written it.
    let manifest = Manifest::load(&plan.layout.manifest())?;
    let ctx = StepContext {
        file: &file,
        layout: &plan.layout,
        quiet: config.quiet,
    };
    let mut runner = Runner {
        ctx,
        plan: &plan,
        manifest,
        force: &config.force,
    };
    runner.run_all(&mut summary);
    if summary.status == RunStatus::Ok && file.eval.is_some() {
        check_quality(&file, &plan, &mut summary)?;
    }
    drop(lock);
    finish(summary, &file, started)
}

fn new_summary(file: &PipelineFile, path: &Path) -> RunSummary {
    RunSummary {
        pipeline: file.pipeline.name.clone(),
        file: path.display().to_string(),
        status: RunStatus::Ok,
        binary: binary_version(),
        started_unix: unix_now(),
        seconds: 0.0,
        ran: 0,
        skipped: 0,
        steps: Vec::new(),
        promoted: None,
        quality: BTreeMap::new(),
        floor_breaches: Vec::new(),
        took_over_lock_of_pid: None,
        message: None,
    }
}

fn finish(
    mut summary: RunSummary,
    file: &PipelineFile,
    started: Instant,
) -> anyhow::Result<RunSummary> {
    summary.seconds = started.elapsed().as_secs_f64();
    summary.append_to(&file.log_file())?;
    Ok(summary)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `step` reads what `upstream` writes.
fn depends_on(step: &Step, upstream: &Step) -> bool {
    let written = std::iter::once(&upstream.output).chain(&upstream.also_changes);
    let written: Vec<&PathBuf> = written.collect();
    step.inputs
        .iter()
        .any(|input| written.iter().any(|w| input.starts_with(w)))
}

/// Whether a step runs, and why.
enum Verdict {
    Run(String),
    Skip(String),
}

/// Why `step` must run, or why it may be skipped.
fn why_run(
    file: &PipelineFile,
    step: &Step,
    record: Option<&StepRecord>,
    forced: bool,
    upstream: Option<StepName>,
) -> anyhow::Result<Verdict> {
    if forced {
        return Ok(Verdict::Run("forced".into()));
    }
    let Some(record) = record else {
        return Ok(Verdict::Run("never ran".into()));
    };
    if let Some(upstream) = upstream {
        let why = format!("reads the output of {upstream}, which runs");
        return Ok(Verdict::Run(why));
    }
    if record.binary != binary_version() {
        return Ok(Verdict::Run(format!(
            "binary changed (was {})",
            record.binary
        )));
    }
    if record.options != steps::options(file, step.name) {
        return Ok(Verdict::Run("options changed".into()));
    }
    if !step.output.exists() {
        let why = format!("output missing: {}", step.output.display());
        return Ok(Verdict::Run(why));
    }
    let now = fingerprint(&step.inputs)?;
    let Some(change) = first_difference(&record.inputs, &now) else {
        return Ok(Verdict::Skip("unchanged".into()));
    };
    if step.name == StepName::Train
        && let Some(wait) = schedule::train_waits(file, record, &now, unix_now())
    {
        return Ok(Verdict::Skip(format!("{change}, but {wait}")));
    }
    Ok(Verdict::Run(change))
}

fn report(step: &Step, action: StepAction, reason: String) -> StepReport {
    StepReport {
        name: step.name,
        action,
        reason,
        seconds: 0.0,
        inputs: step
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        output: step.output.display().to_string(),
        counts: BTreeMap::new(),
    }
}

fn dry_run(
    file: &PipelineFile,
    plan: &Plan,
    manifest: &Manifest,
    force: &[StepName],
) -> anyhow::Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    let mut would_run: Vec<&Step> = Vec::new();
    for step in &plan.steps {
        let upstream = would_run
            .iter()
            .find(|u| depends_on(step, u))
            .map(|u| u.name);
        let record = manifest.steps.get(step.name.as_str());
        match why_run(file, step, record, force.contains(&step.name), upstream)? {
            Verdict::Run(reason) => {
                would_run.push(step);
                reports.push(report(step, StepAction::WouldRun, reason));
            }
            Verdict::Skip(reason) => reports.push(report(step, StepAction::WouldSkip, reason)),
        }
    }
    Ok(reports)
}

struct Runner<'a> {
    ctx: StepContext<'a>,
    plan: &'a Plan,
    manifest: Manifest,
    force: &'a [StepName],
}

impl Runner<'_> {
    fn run_all(&mut self, summary: &mut RunSummary) {
        let plan = self.plan;
        // Steps rerun by --force, directly or because they read a forced
        // step's output. Other reruns reach later steps through their input
        // fingerprints, so an unchanged champion does not relabel anything.
        let mut forced_steps: Vec<&Step> = Vec::new();
        for step in &plan.steps {
            if summary.status == RunStatus::Failed {
                summary
                    .steps
                    .push(report(step, StepAction::NotReached, String::new()));
                continue;
            }
            let upstream = forced_steps
                .iter()
                .find(|u| depends_on(step, u))
                .map(|u| u.name);
            let record = self.manifest.steps.get(step.name.as_str());
            let forced = self.force.contains(&step.name);
            if forced || upstream.is_some() {
                forced_steps.push(step);
            }
            let outcome =
                why_run(self.ctx.file, step, record, forced, upstream).and_then(|why| match why {
                    Verdict::Skip(reason) => Ok(report(step, StepAction::Skipped, reason)),
                    Verdict::Run(reason) => self.run_step(step, reason, summary),
                });
            match outcome {
                Ok(step_report) => {
                    if step_report.action == StepAction::Ran {
                        summary.ran += 1;
                    } else {
                        summary.skipped += 1;
                    }
                    self.progress(&step_report);
                    summary.steps.push(step_report);
                }
                Err(error) => {
                    summary.status = RunStatus::Failed;
                    summary.message = Some(format!("step {} failed: {error:#}", step.name));
                    summary
                        .steps
                        .push(report(step, StepAction::Failed, format!("{error:#}")));
                }
            }
        }
    }

    fn progress(&self, step: &StepReport) {
        if !self.ctx.quiet {
            let verb = if step.action == StepAction::Ran {
                "ran"
            } else {
                "skipped"
            };
            eprintln!(
                "pipeline: {} {verb} ({}) in {:.1} s",
                step.name, step.reason, step.seconds
            );
        }
    }

    /// Runs one step into its staging directory, renames that into place,
    /// then records it in the manifest.
    fn run_step(
        &mut self,
        step: &Step,
        reason: String,
        summary: &mut RunSummary,
    ) -> anyhow::Result<StepReport> {
        if !self.ctx.quiet {
            eprintln!("pipeline: {} runs ({reason})", step.name);
        }
        let started = Instant::now();
        let staging = staging_dir(&step.output);
        remove_staging(&staging)?;
        let inputs_before = fingerprint(&step.inputs)?;
        // A forced step redoes everything; otherwise it may reuse the
        // unchanged parts of its last output (label's partitions).
        let previous = if self.force.contains(&step.name) {
            None
        } else {
            self.manifest.steps.get(step.name.as_str())
        };
        let counts = match steps::execute(&self.ctx, step.name, &staging, previous) {
            Ok(counts) => counts,
            Err(error) => {
                // Best effort: the next run removes it before starting anyway.
                let _ = remove_staging(&staging);
                return Err(error);
            }
        };
        commit(&staging, &step.output)?;
        if step.name == StepName::Promote {
            summary.promoted = promote::apply(self.ctx.layout)?.map(|d| d.promote);
        }
        // The promotion changes the champion, which is one of its inputs:
        // record it as it is now, so the next run sees nothing new.
        let inputs = if step.also_changes.is_empty() {
            inputs_before
        } else {
            fingerprint(&step.inputs)?
        };
        let seconds = started.elapsed().as_secs_f64();
        self.manifest.steps.insert(
            step.name.as_str().to_string(),
            StepRecord {
                inputs,
                options: steps::options(self.ctx.file, step.name),
                binary: binary_version(),
                output: step.output.clone(),
                counts: counts.clone(),
                finished_unix: unix_now(),
                seconds,
            },
        );
        self.manifest.save(&self.ctx.layout.manifest())?;
        let mut done = report(step, StepAction::Ran, reason);
        done.seconds = seconds;
        done.counts = counts;
        done.counts.remove(steps::PARTITION_DIGESTS);
        Ok(done)
    }
}

/// `.NAME.staging` beside `output`: hidden, so fingerprints and readers of
/// the work dir never see it, and fixed, so a killed run's is found again.
fn staging_dir(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("step");
    output.with_file_name(format!(".{name}.staging"))
}

/// What killed runs left beside the step outputs: staging directories,
/// checkpoints and outputs set aside mid-commit. Removed under the lock
/// before any step, whether or not their step reruns.
fn remove_leftovers(plan: &Plan) -> anyhow::Result<()> {
    for step in &plan.steps {
        remove_staging(&staging_dir(&step.output))?;
        let old = set_aside(&step.output);
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", old.display()))?;
        }
    }
    Ok(())
}

/// `.NAME.old`: where [`commit`] moves the previous output while it
/// renames the new one into place.
fn set_aside(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("step");
    output.with_file_name(format!(".{name}.old"))
}

fn remove_staging(staging: &Path) -> anyhow::Result<()> {
    for path in std::iter::once(staging.to_path_buf()).chain(steps::staging_leftovers(staging)) {
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Moves a finished staging directory into place by
/// [`move_into_place`]: the old output goes aside, the new one is renamed
/// in (the old one put back if that fails), and the old one is removed
/// last. Failing to remove it (a read-only directory in it) is a warning,
/// not a failed step: the new output is in place and is recorded (the
/// next run stops in [`remove_leftovers`], naming what is left, until it
/// can be removed). A crash in between leaves no output (the step reruns),
/// never a mix.
fn commit(staging: &Path, output: &Path) -> anyhow::Result<()> {
    // move_into_place sets the old output aside at this path (a test below
    // holds the two names together).
    let old = set_aside(output);
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", old.display()))?;
    }
    move_into_place(staging, output)
}

/// The champion's headline metrics from the eval report, checked against
/// the floors.
fn check_quality(file: &PipelineFile, plan: &Plan, summary: &mut RunSummary) -> anyhow::Result<()> {
    let report_path = plan
        .layout
        .output(StepName::Eval)
        .join("report")
        .join("report.json");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&report_path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", report_path.display()))?,
    )?;
    let champion = report["systems"]
        .as_array()
        .and_then(|systems| systems.iter().find(|s| s["name"] == "champion"));
    let mut headlines = BTreeMap::new();
    if let Some(tasks) = champion.and_then(|c| c["tasks"].as_object()) {
        for (task, result) in tasks {
            let metric = result["headline"].as_str().unwrap_or("");
            let value = result["metrics"][metric]["value"].as_f64();
            headlines.insert(task.clone(), (metric.to_string(), value));
            if let Some(value) = value {
                summary.quality.insert(task.clone(), value);
            }
        }
    }
    for (task, floor) in &file.quality_floor {
        let (metric, value) = headlines.get(task).cloned().unwrap_or_default();
        let breached = value.is_none_or(|v| v.is_nan() || v < *floor);
        if breached {
            let shown = value.map_or("n/a".to_string(), |v| format!("{v:.3}"));
            summary.floor_breaches.push(format!(
                "quality floor breached: {task} {metric} {shown} < {floor:.3} (champion on held-out gold, {})",
                report_path.display()
            ));
        }
    }
    if !summary.floor_breaches.is_empty() {
        summary.status = RunStatus::QualityFloorBreached;
        summary.message = summary.floor_breaches.first().cloned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_sets_the_old_output_aside_where_leftovers_are_looked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let output = tmp.path().join("labels");
        let staging = staging_dir(&output);
        assert_eq!(staging.with_extension("old"), set_aside(&output));
        for (dir, file) in [(&output, "old.txt"), (&staging, "new.txt")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join(file), file).unwrap();
        }
        // A stale set-aside output from a killed run does not stop the commit.
        std::fs::create_dir(set_aside(&output)).unwrap();
        commit(&staging, &output).unwrap();
        assert!(output.join("new.txt").is_file() && !output.join("old.txt").exists());
        assert!(!staging.exists() && !set_aside(&output).exists());
    }
}
