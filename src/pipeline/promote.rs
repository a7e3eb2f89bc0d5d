//! Champion and challenger: a newly trained model replaces the champion only
//! when it beats it on held-out gold, by eval's paired bootstrap over
//! dialogues; the replaced champion stays in models/previous for rollback.
//!
//! The swap is two renames (champion -> previous, incoming -> champion). A
//! crash between them leaves no champion but a previous one, which
//! [`recover`] moves back before anything else reads the models.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::plan::{Layout, StepName};
use crate::data::dataset::{read_table_counted, write_file_atomic};
use crate::data::split::{STABLE_HASH_START, stable_hash_bytes};
use crate::data::tables::{Annotation, Label};
use crate::eval::gold::{self, GoldPolicy, SystemLabels};
use crate::eval::judge::{Judgement, Task, Vocabulary, judge};
use crate::eval::report::{task_metrics, total};
use crate::metrics::{self, paired_bootstrap};
use crate::model::checkpoint;

pub const DECISION: &str = "decision.json";

/// One task's comparison on the same gold dialogues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskComparison {
    pub metric: String,
    pub challenger: f64,
    pub champion: f64,
    pub delta: f64,
    pub p_value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub promote: bool,
    pub reason: String,
    /// Content hash of the challenger the decision is about.
    pub challenger_id: String,
    pub comparisons: BTreeMap<String, TaskComparison>,
    /// Non-fatal problems read in the held-out logs as labelled, and in
    /// the gold and the label tables compared (printed on stderr as read);
    /// absent from older decisions.
    #[serde(default)]
    pub input_warnings: usize,
}

impl Decision {
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_file_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }
    pub fn load(path: &Path) -> anyhow::Result<Decision> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: unreadable decision: {e}", path.display()))
    }
}

pub struct Settings<'a> {
    pub gold: &'a Path,
    pub gold_annotators: &'a [String],
    pub policy: GoldPolicy,
    pub tasks: &'a [Task],
    pub resamples: usize,
    pub seed: u64,
    pub alpha: f64,
}

/// A content hash of a model directory's weights and config (FNV-1a, so it
/// is the same in every build).
pub fn model_id(dir: &Path) -> anyhow::Result<String> {
    let mut hash = STABLE_HASH_START;
    for name in [checkpoint::CONFIG, checkpoint::WEIGHTS] {
        let path = dir.join(name);
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        hash = stable_hash_bytes(hash, &bytes);
    }
    Ok(format!("{hash:016x}"))
}

fn is_model(dir: &Path) -> bool {
    dir.join(checkpoint::CONFIG).is_file()
}

/// Puts back a champion that a crash mid-swap left in previous/, and drops
/// a half-copied incoming model.
pub fn recover(layout: &Layout) -> anyhow::Result<()> {
    let (champion, previous) = (layout.champion(), layout.previous());
    if !champion.exists() && is_model(&previous) {
        std::fs::rename(&previous, &champion)?;
    }
    let incoming = layout.models_dir.join(".incoming");
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming)?;
    }
    Ok(())
}

/// The decision when no comparison is needed: the challenger already is the
/// champion (a rerun after the swap), so the decision that promoted it
/// stands, the same as in a run that was never interrupted.
pub fn settled(
    challenger: &Path,
    champion: &Path,
    previous_decision: &Path,
) -> anyhow::Result<Option<Decision>> {
    if !is_model(champion) {
        return Ok(None);
    }
    let id = model_id(challenger)?;
    if model_id(champion)? != id {
        return Ok(None);
    }
    if let Ok(decision) = Decision::load(previous_decision)
        && decision.challenger_id == id
    {
        return Ok(Some(decision));
    }
    Ok(Some(Decision {
        promote: false,
        reason: "the challenger already is the champion".into(),
        challenger_id: id,
        comparisons: BTreeMap::new(),
        input_warnings: 0,
    }))
}

/// Promote when there is no champion, or when the challenger is better on
/// at least one task (p < alpha) and significantly worse on none.
pub fn decide(
    settings: &Settings,
    challenger: &Path,
    challenger_labels: &Path,
    champion_labels: Option<&Path>,
) -> anyhow::Result<Decision> {
    let challenger_id = model_id(challenger)?;
    let Some(champion_labels) = champion_labels else {
        return Ok(Decision {
            promote: true,
            reason: "no champion yet".into(),
            challenger_id,
            comparisons: BTreeMap::new(),
            input_warnings: 0,
        });
    };
    let (comparisons, input_warnings) = compare(settings, challenger_labels, champion_labels)?;
    let significant = |c: &&TaskComparison| c.p_value < settings.alpha;
    let better: Vec<&String> = comparisons
        .iter()
        .filter(|(_, c)| c.delta > 0.0 && significant(c))
        .map(|(t, _)| t)
        .collect();
    let worse: Vec<&String> = comparisons
        .iter()
        .filter(|(_, c)| c.delta < 0.0 && significant(c))
        .map(|(t, _)| t)
        .collect();
    let (promote, reason) = match (better.is_empty(), worse.is_empty()) {
        (false, true) => (true, format!("better on {better:?}, worse on none")),
        (_, false) => (false, format!("significantly worse on {worse:?}")),
        (true, true) => (
            false,
            format!("not significantly better (alpha {})", settings.alpha),
        ),
    };
    Ok(Decision {
        promote,
        reason,
        challenger_id,
        comparisons,
        input_warnings,
    })
}

/// Both label sets judged on the same gold dialogues, each task's headline
/// metric compared by eval's paired bootstrap; and the number of non-fatal
/// problems read in the three tables.
fn compare(
    settings: &Settings,
    challenger_labels: &Path,
    champion_labels: &Path,
) -> anyhow::Result<(BTreeMap<String, TaskComparison>, usize)> {
    let (annotations, gold_warnings) = read_table_counted::<Annotation>(settings.gold)?;
    let annotators = gold::by_annotator(annotations, settings.gold)?;
    let mut gold_labels = Vec::new();
    for name in settings.gold_annotators {
        gold_labels.push(annotators.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no annotations by gold annotator `{name}`",
                settings.gold.display()
            )
        })?);
    }
    let dialogues: BTreeSet<&String> = gold_labels.iter().flat_map(|a| a.keys()).collect();
    let gold = gold::derive_all(&gold_labels, &dialogues, settings.policy);
    let segmentations: Vec<&[i32]> = gold
        .iter()
        .filter_map(|(_, g)| g.segmentation.as_deref())
        .collect();
    let pk_window = metrics::pk_window(&segmentations);
    let (challenger, challenger_warnings) = read_table_counted::<Label>(challenger_labels)?;
    let challenger = gold::from_labels(challenger, challenger_labels)?;
    let (champion, champion_warnings) = read_table_counted::<Label>(champion_labels)?;
    let champion = gold::from_labels(champion, champion_labels)?;
    let mut systems: Vec<&SystemLabels> = gold_labels.clone();
    systems.extend([&challenger, &champion]);
    let vocabulary = Vocabulary::from_systems(&systems);
    let a = judge(&challenger, &gold, &vocabulary, pk_window);
    let b = judge(&champion, &gold, &vocabulary, pk_window);
    let comparisons = settings
        .tasks
        .iter()
        .map(|&task| {
            (
                task.name().to_string(),
                compare_task(settings, task, &a, &b),
            )
        })
        .collect();
    let warnings = gold_warnings + challenger_warnings + champion_warnings;
    Ok((comparisons, warnings))
}

fn compare_task(settings: &Settings, task: Task, a: &Judgement, b: &Judgement) -> TaskComparison {
    let (metric, stat) = task_metrics(task)[0];
    let (a, b) = (&a.per_dialogue[&task], &b.per_dialogue[&task]);
    let (delta, p_value) = paired_bootstrap(a, b, stat, settings.resamples, settings.seed);
    TaskComparison {
        metric: metric.to_string(),
        challenger: stat(&total(a)),
        champion: stat(&total(b)),
        delta,
        p_value,
    }
}

/// Carries out a committed decision: the challenger becomes the champion
/// and the old champion becomes previous. Idempotent, so a rerun after a
/// crash at any point finishes the same swap.
pub fn apply(layout: &Layout) -> anyhow::Result<Option<Decision>> {
    let decision = Decision::load(&layout.output(StepName::Promote).join(DECISION))?;
    if !decision.promote {
        return Ok(Some(decision));
    }
    let challenger = layout.output(StepName::Train);
    anyhow::ensure!(
        model_id(&challenger)? == decision.challenger_id,
        "{} changed after the promotion decision; rerun the pipeline",
        challenger.display()
    );
    let champion = layout.champion();
    if is_model(&champion) && model_id(&champion)? == decision.challenger_id {
        return Ok(Some(decision));
    }
    let incoming = layout.models_dir.join(".incoming");
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming)?;
    }
    copy_dir(&challenger, &incoming)?;
    let previous = layout.previous();
    if champion.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous)?;
        }
        std::fs::rename(&champion, &previous)?;
    }
    std::fs::rename(&incoming, &champion)?;
    Ok(Some(decision))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
