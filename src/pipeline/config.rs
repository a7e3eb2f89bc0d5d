//! The pipeline file (`pipelines/*.toml`): what runs, with which options.
//!
//! Every table rejects unknown keys, so a typo (`max_step = 5`) is an error
//! naming the key and the file instead of a silently ignored setting. Stage
//! options left out keep the stage's own defaults (filled in `steps.rs`),
//! so this file never repeats them. Relative paths resolve against the
//! current directory, like every other labelgen path argument.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Precision;

/// The whole file. Which sections are present decides which steps run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    pub pipeline: PipelineSection,
    /// Logs and gold from the simulator (the demo); excludes `[data]`.
    pub simulate: Option<SimulateSection>,
    /// New hive-partitioned log partitions into a staging dataset.
    pub ingest: Option<IngestSection>,
    /// Existing datasets, when not simulated.
    pub data: Option<DataSection>,
    /// Contrastive data for pretraining; runs whenever `[pretrain]` does.
    pub synth: Option<SynthSection>,
    pub pretrain: Option<PretrainSection>,
    /// Trains a challenger; `[promote]` decides whether it becomes champion.
    pub train: Option<TrainSection>,
    pub promote: Option<PromoteSection>,
    pub label: Option<LabelSection>,
    /// The day's review sample from the labels; needs `[label]`.
    pub review: Option<ReviewSection>,
    pub eval: Option<EvalSection>,
    /// The nightly report (drift, confidence, coverage, eval over time);
    /// needs `[label]` or `[eval]`.
    pub report: Option<ReportSection>,
    /// Task -> lowest acceptable headline metric of the champion on the
    /// held-out gold (e.g. `intent = 0.8` is intent accuracy).
    #[serde(default)]
    pub quality_floor: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    pub name: String,
    /// Step outputs, the manifest, the lock and (by default) the log.
    pub work_dir: PathBuf,
    /// Holds champion/ and previous/; default WORK_DIR/models.
    pub models_dir: Option<PathBuf>,
    /// Appended one JSON line per run; default WORK_DIR/pipeline.log.
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSection {
    /// Training dialogues (logs plus the single-pass annotator's labels).
    pub dialogues: usize,
    /// Held-out dialogues with 3-annotator gold, from another seed.
    pub heldout_dialogues: usize,
    pub seed: Option<u64>,
    pub heldout_seed: Option<u64>,
    pub annotator_error: Option<f64>,
    pub single_error: Option<f64>,
    pub audio_dim: Option<usize>,
    /// Days of traffic the training dialogues start over (default 1).
    pub days: Option<usize>,
    /// Also write the training turns as a collector delivers them, for
    /// `[ingest]`: WORK_DIR/simulate/train/logs/turns/date=.../hour=.../.
    pub hive_logs: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Root of logs/turns/date=YYYY-MM-DD/hour=HH/part-*.parquet.
    pub logs: PathBuf,
    /// Partitions older than this many days are not rescanned: the newest
    /// N dates present are read (default: all).
    pub window_days: Option<u32>,
    /// A dialogue whose last turn is this close to the window's end is
    /// still open: carried to the next run, not labelled (default 30).
    pub idle_timeout_minutes: Option<u32>,
}

/// Existing datasets for a pipeline that does not simulate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Logs the challenger trains on, and their annotations.
    pub train_turns: Option<PathBuf>,
    pub train_annotations: Option<PathBuf>,
    /// Held-out logs with their human gold: promotion and eval use them.
    pub heldout_turns: Option<PathBuf>,
    pub heldout_gold: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSection {
    pub seed: Option<u64>,
    pub copies: Option<usize>,
    pub response_swap_rate: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSection {
    /// A Hugging Face BERT/RoBERTa checkpoint directory.
    pub init: Option<PathBuf>,
    pub seed: Option<u64>,
    pub epochs: Option<usize>,
    pub max_steps: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate: Option<f64>,
    pub hidden_size: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub dialogue_layers: Option<usize>,
    pub vocab_size: Option<usize>,
    pub max_tokens: Option<usize>,
    pub max_turns: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// A pretrained model directory; required without `[pretrain]`.
    pub init: Option<PathBuf>,
    #[serde(default)]
    pub annotators: Vec<String>,
    pub seed: Option<u64>,
    pub epochs: Option<usize>,
    pub max_steps: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate: Option<f64>,
    pub dev_share: Option<f64>,
    /// `train --splice-goals`: extra windows joining two dialogues' goals.
    pub splice_goals: Option<f64>,
    /// With new data, retrain only once this many days have passed since
    /// the last training...
    pub every_days: Option<f64>,
    /// ...or once this many new files have arrived under the training
    /// annotations (annotations/date=.../part-*.parquet). Without either,
    /// any change to the training data retrains.
    pub min_new_annotation_files: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteSection {
    /// A challenger must beat the champion with a paired-bootstrap p-value
    /// below this on at least one task, and lose significantly on none.
    pub alpha: Option<f64>,
    pub bootstrap: Option<usize>,
    pub seed: Option<u64>,
    /// Tasks compared (default: all five).
    pub tasks: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSection {
    /// The logs to label (default: the ingested logs, else the training
    /// logs). Hive-partitioned logs (key=value folders) are labelled per
    /// partition, and only changed partitions are relabelled.
    pub logs: Option<PathBuf>,
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub min_confidence: BTreeMap<String, f64>,
    /// The dense layers' arithmetic, as `label --precision` (default f32).
    pub precision: Option<Precision>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSection {
    /// Least confident turns per task (default 50).
    pub lowest: Option<usize>,
    /// Random turns per task from the rest (default 50).
    pub random: Option<usize>,
    pub seed: Option<u64>,
    /// Default: intent and failure_point.
    pub tasks: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    pub gold_annotators: Option<Vec<String>>,
    pub baseline_annotators: Option<Vec<String>>,
    /// `unanimous` or `majority`.
    pub gold_policy: Option<String>,
    pub bootstrap: Option<usize>,
    pub seed: Option<u64>,
    pub review_confidence: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// Today's labels are compared with the days this far back (default 7).
    pub trailing_days: Option<u32>,
    /// Jensen-Shannon distance above which a task's labels are flagged as
    /// drifted (default 0.1).
    pub drift_threshold: Option<f64>,
}

/// The tasks a quality floor or a promotion may name, as eval names them.
pub const TASKS: [&str; 5] = [
    "goal_segmentation",
    "goal_success",
    "intent",
    "slots",
    "failure_point",
];

impl PipelineFile {
    /// Reads and parses `path`; errors name the file and, for bad keys, the
    /// key and its line.
    pub fn load(path: &Path) -> anyhow::Result<PipelineFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read pipeline file {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses pipeline TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<PipelineFile> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: invalid pipeline file: {e}"))
    }

    pub fn models_dir(&self) -> PathBuf {
        self.pipeline
            .models_dir
            .clone()
            .unwrap_or_else(|| self.pipeline.work_dir.join("models"))
    }

    pub fn log_file(&self) -> PathBuf {
        self.pipeline
            .log_file
            .clone()
            .unwrap_or_else(|| self.pipeline.work_dir.join("pipeline.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let text = "[pipeline]\nname = \"x\"\nwork_dir = \"w\"\n[train]\nmax_step = 3\n";
        let error = PipelineFile::parse(text, "p.toml").unwrap_err().to_string();
        assert!(error.contains("p.toml"), "{error}");
        assert!(error.contains("max_step"), "{error}");
    }

    #[test]
    fn unknown_sections_are_errors() {
        let text = "[pipeline]\nname = \"x\"\nwork_dir = \"w\"\n[trian]\n";
        let error = PipelineFile::parse(text, "p.toml").unwrap_err().to_string();
        assert!(error.contains("trian"), "{error}");
    }

    #[test]
    fn the_label_precision_is_f32_or_int16() {
        let base = "[pipeline]\nname = \"x\"\nwork_dir = \"w\"\n[label]\n";
        let file =
            PipelineFile::parse(&format!("{base}precision = \"int16\"\n"), "p.toml").unwrap();
        assert_eq!(file.label.and_then(|l| l.precision), Some(Precision::Int16));
        let error = PipelineFile::parse(&format!("{base}precision = \"int8\"\n"), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("int8") && error.contains("p.toml"),
            "{error}"
        );
    }

    #[test]
    fn defaults_derive_from_the_work_dir() {
        let text = "[pipeline]\nname = \"x\"\nwork_dir = \"w\"\n";
        let file = PipelineFile::parse(text, "p.toml").unwrap();
        assert_eq!(file.models_dir(), Path::new("w/models"));
        assert_eq!(file.log_file(), Path::new("w/pipeline.log"));
    }
}
