//! The report directory: report.json, report.md, plots and the review
//! list, written to a staging directory renamed into place at the end, so
//! that OUT is either the old report or the whole new one.

use std::path::{Path, PathBuf};

use super::judge::{Task, Vocabulary};
use super::render;
use super::report::EvalReport;
use super::results::ANNOTATOR;
use super::review::{self, ReviewItem};
use crate::data::dataset::write_file_atomic;
use crate::metrics::SweepPoint;
use crate::plot;

/// Writes the report directory `out`, replacing any there.
pub fn write(
    out: &Path,
    report: &EvalReport,
    review_items: &[ReviewItem],
    vocabulary: &Vocabulary,
) -> anyhow::Result<()> {
    let staging = staging_dir(out);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let written = write_files(&staging, report, review_items, vocabulary)
        .and_then(|()| replace(out, &staging));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

/// `.OUT.tmp-PID` beside OUT: same file system, so the rename is atomic.
fn staging_dir(out: &Path) -> PathBuf {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("report");
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn replace(out: &Path, staging: &Path) -> anyhow::Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(staging, out)?;
    Ok(())
}

fn write_files(
    dir: &Path,
    report: &EvalReport,
    review_items: &[ReviewItem],
    vocabulary: &Vocabulary,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("plots"))?;
    write_file_atomic(
        &dir.join("report.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    write_file_atomic(&dir.join("report.md"), render::markdown(report).as_bytes())?;
    write_plots(report, dir)?;
    review::write(
        review_items,
        dir,
        &vocabulary.intent,
        &vocabulary.failure_point,
    )
}

fn write_plots(report: &EvalReport, dir: &Path) -> anyhow::Result<()> {
    let baseline = report
        .systems
        .iter()
        .find(|s| s.kind == ANNOTATOR)
        .map(|s| s.name.clone());
    for task in Task::ALL {
        let curves: Vec<(&str, &[SweepPoint])> = report
            .threshold_sweeps
            .iter()
            .filter_map(|(name, by_task)| {
                by_task
                    .get(&task)
                    .map(|s| (name.as_str(), s.points.as_slice()))
            })
            .collect();
        if curves.is_empty() {
            continue;
        }
        let baseline_precision = report
            .threshold_sweeps
            .values()
            .find_map(|b| b.get(&task))
            .map(|s| s.baseline_precision);
        let line = baseline
            .as_deref()
            .zip(baseline_precision.filter(|p| p.is_finite()));
        let title = format!("{}: precision against coverage", task.name());
        write_plot(
            dir,
            &format!("sweep_{}", task.name()),
            &plot::sweep_svg(&title, &curves, line),
        )?;
    }
    for (system, matrix) in &report.confusion {
        let title = format!("failure point confusion: {system}");
        write_plot(
            dir,
            &format!("confusion_{system}"),
            &plot::confusion_svg(&title, &report.confusion_labels, matrix),
        )?;
    }
    Ok(())
}

/// plots/NAME.svg and plots/NAME.png.
fn write_plot(dir: &Path, name: &str, svg: &str) -> anyhow::Result<()> {
    write_file_atomic(
        &dir.join("plots").join(format!("{name}.svg")),
        svg.as_bytes(),
    )?;
    write_file_atomic(
        &dir.join("plots").join(format!("{name}.png")),
        &plot::png(svg)?,
    )
}
