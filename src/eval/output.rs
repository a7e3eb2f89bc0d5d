//! The report directory: report.json, report.md, plots and the review
//! list, written to a staging directory renamed into place at the end, so
//! that OUT is either the old report or the whole new one.

use std::path::{Path, PathBuf};

use super::judge::{Task, Vocabulary};
use super::render;
use super::report::EvalReport;
use super::results::ANNOTATOR;
use super::review::{self, ReviewItem};
use crate::data::dataset::{begin_staging, move_into_place, write_file_atomic};
use crate::data::inputs::InputSnapshot;
use crate::metrics::SweepPoint;
use crate::plot;

/// The report directory being written: a hidden sibling of OUT, made when
/// eval starts (so an OUT that cannot be written fails before the work,
/// naming the directory) and renamed into place by [`Staging::commit`].
/// Dropped uncommitted (an error on the way), it is removed.
pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// `overwrite`: replace an existing OUT (--force); otherwise one is an error.
    pub fn begin(out: &Path, overwrite: bool) -> anyhow::Result<Staging> {
        Ok(Staging {
            out: out.to_path_buf(),
            dir: begin_staging(out, overwrite)?,
            committed: false,
        })
    }

    /// Writes the report files, checks that the `inputs` eval read did not
    /// change meanwhile, and moves the directory into place, replacing any
    /// report there.
    pub fn commit(
        mut self,
        report: &EvalReport,
        review_items: &[ReviewItem],
        vocabulary: &Vocabulary,
        inputs: &InputSnapshot,
    ) -> anyhow::Result<()> {
        write_files(&self.dir, report, review_items, vocabulary)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e:#}", self.dir.display()))?;
        inputs.check_unchanged()?;
        move_into_place(&self.dir, &self.out)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
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
