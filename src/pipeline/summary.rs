//! What a run reports: one JSON line on stdout and in the log file, for
//! monitoring, and the plan as text for `--dry-run`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::plan::StepName;
use super::steps::Counts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    DryRun,
    /// Another run holds the lock; nothing was done.
    Refused,
    Failed,
    QualityFloorBreached,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    Ran,
    Skipped,
    WouldRun,
    WouldSkip,
    Failed,
    NotReached,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: StepName,
    pub action: StepAction,
    /// Why it ran (forced, never ran, input changed: PATH, ...) or was skipped.
    pub reason: String,
    pub seconds: f64,
    pub inputs: Vec<String>,
    pub output: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub pipeline: String,
    pub file: String,
    pub status: RunStatus,
    pub binary: String,
    pub started_unix: u64,
    pub seconds: f64,
    pub ran: usize,
    pub skipped: usize,
    pub steps: Vec<StepReport>,
    /// Whether the challenger became the champion, when promotion ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted: Option<bool>,
    /// The champion's headline metric per task on the held-out gold.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub quality: BTreeMap<String, f64>,
    /// One line per task below its `[quality_floor]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub floor_breaches: Vec<String>,
    /// The pid of a run that died holding the lock, which this run took over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_over_lock_of_pid: Option<u32>,
    /// For a refused or failed run: what happened, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RunSummary {
    /// The summary as one line of JSON.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// 0: done, nothing to do, a dry run, or refused because another run is
    /// on it; 1: a quality floor was breached; 2: a step failed.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            RunStatus::Ok | RunStatus::DryRun | RunStatus::Refused => 0,
            RunStatus::QualityFloorBreached => 1,
            RunStatus::Failed => 2,
        }
    }

    /// The plan, one block per step, for `--dry-run`.
    pub fn plan_text(&self) -> String {
        let mut text = format!("pipeline {} ({})\n", self.pipeline, self.file);
        for (i, step) in self.steps.iter().enumerate() {
            let action = match step.action {
                StepAction::WouldRun | StepAction::Ran => "run",
                StepAction::WouldSkip | StepAction::Skipped => "skip",
                StepAction::Failed => "failed",
                StepAction::NotReached => "not reached",
            };
            text.push_str(&format!(
                "{}. {:<9} {:<5} {}\n",
                i + 1,
                step.name.as_str(),
                action,
                step.reason
            ));
            for input in &step.inputs {
                text.push_str(&format!("     in:  {input}\n"));
            }
            text.push_str(&format!("     out: {}\n", step.output));
        }
        text
    }

    /// Appends the JSON line to the log file (created with its directory).
    pub fn append_to(&self, log: &Path) -> anyhow::Result<()> {
        if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", log.display()))?;
        writeln!(file, "{}", self.json_line())?;
        Ok(())
    }
}
