//! The evaluation report as a whole: what was measured, section by section
//! (serialised as report.json), and the builders of the sections that are
//! not per-system results. `render` turns it into Markdown.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::gold::{GoldDialogue, GoldPolicy, SystemLabels};
use super::judge::{JudgedSystem, Judgement, Task, agreement};
use super::results::{HUMAN_LEAVE_ONE_OUT, PREDICTION};
use super::subset::SubsetReport;
use crate::data::tables::FailurePoint;
use crate::metrics::{self, SweepPoint};

// The per-system results moved to `results`; kept at their old paths for
// code written against them (pipeline's promotion check uses two).
pub use super::results::{
    Comparison, Estimate, SystemResult, TaskResult, items, task_metrics, total,
};

#[derive(Debug, Clone, Serialize)]
pub struct ItemCount {
    pub with_gold: u64,
    pub without_gold: u64,
    pub unit: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoldSummary {
    pub policy: GoldPolicy,
    pub annotators: Vec<String>,
    pub dialogues: usize,
    pub items: BTreeMap<Task, ItemCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub points: Vec<SweepPoint>,
    /// The baseline annotator's precision on the same items, at full coverage.
    pub baseline_precision: f64,
    /// The lowest threshold whose precision beats the baseline annotator.
    pub beats_baseline_at: Option<SweepPoint>,
    /// Turns labelled automatically at that threshold, in annotator-hours.
    pub annotator_hours_saved: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnnotatorQuality {
    /// Accuracy (headline metric) against the gold of the other gold
    /// annotators; for a non-gold annotator, against the full gold.
    pub vs_gold_of_others: BTreeMap<Task, f64>,
    /// Share of turns with the same label as each other system.
    pub agreement_with: BTreeMap<String, BTreeMap<Task, f64>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InputCheck {
    pub dialogues: usize,
    pub missing_dialogues: usize,
    pub extra_dialogues: usize,
    pub examples_missing: Vec<String>,
    pub examples_extra: Vec<String>,
    /// Labels the gold never uses, per task, with their counts.
    pub unknown_labels: BTreeMap<&'static str, BTreeMap<String, usize>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub bootstrap_resamples: usize,
    pub seed: u64,
    pub annotator_turns_per_hour: f64,
    pub review_confidence: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub labelgen_version: &'static str,
    pub gold: GoldSummary,
    pub systems: Vec<SystemResult>,
    /// The systems judged again on subsets of the gold items, by name:
    /// `context` (the turns whose meaning needs context).
    pub subsets: BTreeMap<&'static str, SubsetReport>,
    /// Failure point accuracy as a share of human leave-one-out accuracy.
    pub failure_point_vs_human: BTreeMap<String, f64>,
    /// Failure point confusion matrices: rows gold, columns predicted, last column withheld.
    pub confusion_labels: Vec<String>,
    pub confusion: BTreeMap<String, Vec<Vec<u64>>>,
    pub threshold_sweeps: BTreeMap<String, BTreeMap<Task, SweepReport>>,
    pub annotators: BTreeMap<String, AnnotatorQuality>,
    pub inputs: BTreeMap<String, InputCheck>,
    /// Non-fatal problems read in the gold, labels and turns tables (an
    /// empty utterance, an empty part file): the rows are judged, the
    /// problems printed on stderr as read and counted here.
    pub read_warnings: usize,
    pub review_items: usize,
    pub settings: Settings,
}

/// What the gold holds per task: items with gold and without.
pub fn gold_summary(
    policy: GoldPolicy,
    annotators: &[String],
    gold: &[(String, GoldDialogue)],
) -> GoldSummary {
    let count = |f: &dyn Fn(&GoldDialogue) -> (u64, u64)| {
        gold.iter()
            .map(|(_, g)| f(g))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let turn_level = |v: &dyn Fn(&GoldDialogue) -> Vec<bool>| {
        count(&|g| {
            let has = v(g);
            (
                has.iter().filter(|h| **h).count() as u64,
                has.iter().filter(|h| !**h).count() as u64,
            )
        })
    };
    let entries: [(Task, (u64, u64)); 5] = [
        (
            Task::GoalSegmentation,
            count(&|g| {
                (
                    u64::from(g.segmentation.is_some()),
                    u64::from(g.segmentation.is_none()),
                )
            }),
        ),
        (
            Task::GoalSuccess,
            count(&|g| {
                let agreed = g.goals.iter().filter(|goal| goal.2.is_some()).count() as u64;
                (agreed, g.goals.len() as u64 - agreed)
            }),
        ),
        (
            Task::Intent,
            turn_level(&|g| g.intent.iter().map(Option::is_some).collect()),
        ),
        (
            Task::Slots,
            turn_level(&|g| g.slots.iter().map(Option::is_some).collect()),
        ),
        (
            Task::FailurePoint,
            turn_level(&|g| g.failure_point.iter().map(Option::is_some).collect()),
        ),
    ];
    let items = entries
        .into_iter()
        .map(|(task, (with_gold, without_gold))| {
            let count = ItemCount {
                with_gold,
                without_gold,
                unit: task.unit(),
            };
            (task, count)
        })
        .collect();
    GoldSummary {
        policy,
        annotators: annotators.to_vec(),
        dialogues: gold.len(),
        items,
    }
}

/// Failure point accuracy of every system as a share of the human
/// leave-one-out accuracy; empty when there is no human row.
pub fn failure_point_vs_human(systems: &[SystemResult]) -> BTreeMap<String, f64> {
    let accuracy = |s: &SystemResult| {
        let result = s.tasks.get(&Task::FailurePoint)?;
        Some(result.metrics.get("accuracy")?.value)
    };
    let Some(human_accuracy) = systems
        .iter()
        .find(|s| s.kind == HUMAN_LEAVE_ONE_OUT)
        .and_then(accuracy)
    else {
        return BTreeMap::new();
    };
    systems
        .iter()
        .filter(|s| s.kind != HUMAN_LEAVE_ONE_OUT)
        .filter_map(|s| Some((s.name.clone(), accuracy(s)? / human_accuracy)))
        .collect()
}

/// Failure point confusion matrix of every judged system that labels failure points.
pub fn confusion(judged: &[JudgedSystem], classes: usize) -> BTreeMap<String, Vec<Vec<u64>>> {
    judged
        .iter()
        .filter(|s| s.tasks.contains(&Task::FailurePoint))
        .map(|s| {
            let matrix = metrics::confusion_matrix(&s.judgement.failure_pairs, classes);
            (s.name.clone(), matrix)
        })
        .collect()
}

/// Sweep thresholds: every 0.02 from 0 to 1, and finer near 1 where
/// calibrated models keep most of their confident items.
fn thresholds() -> Vec<f64> {
    let mut t: Vec<f64> = (0..50).map(|i| i as f64 * 0.02).collect();
    t.extend((0..=20).map(|i| 0.98 + i as f64 * 0.001));
    t
}

/// Threshold sweeps of the predictions with confidences, per task, against
/// the baseline annotator's precision on the same items. `turns_judged`
/// (turns of the gold dialogues) prices the coverage in annotator-hours.
pub fn threshold_sweeps(
    judged: &[JudgedSystem],
    baseline: Option<&Judgement>,
    turns_judged: u64,
    annotator_turns_per_hour: f64,
) -> BTreeMap<String, BTreeMap<Task, SweepReport>> {
    let sweep = |task: Task, items: &[(f64, bool)]| {
        let points = metrics::threshold_sweep(items, &thresholds());
        let baseline_precision = baseline
            .map(|b| total(&b.per_dialogue[&task]).accuracy())
            .unwrap_or(f64::NAN);
        let beats = metrics::first_threshold_beating(&points, baseline_precision);
        let hours = beats.map(|p| p.coverage * turns_judged as f64 / annotator_turns_per_hour);
        SweepReport {
            points,
            baseline_precision,
            beats_baseline_at: beats,
            annotator_hours_saved: hours,
        }
    };
    judged
        .iter()
        .filter(|s| s.kind == PREDICTION)
        .map(|s| {
            let by_task = Task::ALL
                .into_iter()
                .map(|task| (task, &s.judgement.sweep_items[&task]))
                .filter(|(_, items)| !items.is_empty())
                .map(|(task, items)| (task, sweep(task, items)))
                .collect();
            (s.name.clone(), by_task)
        })
        .collect()
}

/// Each system in `everyone` that has a result in `results` (the first of
/// its name): its headline per task, and its agreement with everyone else.
pub fn annotator_quality(
    everyone: &[(&str, &SystemLabels)],
    results: &[&SystemResult],
) -> BTreeMap<String, AnnotatorQuality> {
    let mut quality = BTreeMap::new();
    for (name, labels) in everyone {
        let Some(result) = results.iter().find(|r| r.name == *name) else {
            continue;
        };
        let vs_gold_of_others = result
            .tasks
            .iter()
            .map(|(t, r)| (*t, r.metrics[r.headline].value))
            .collect();
        let agreement_with = everyone
            .iter()
            .filter(|(other, _)| other != name)
            .map(|(other, b)| (other.to_string(), agreement(labels, b)))
            .collect();
        quality.insert(
            name.to_string(),
            AnnotatorQuality {
                vs_gold_of_others,
                agreement_with,
            },
        );
    }
    quality
}

/// Whether each prediction (and the runtime baseline) covers the gold, with
/// the gold's labels.
pub fn input_checks(
    preds: &[(&str, &SystemLabels)],
    gold: &[(String, GoldDialogue)],
) -> BTreeMap<String, InputCheck> {
    let dialogues: BTreeSet<&String> = gold.iter().map(|(d, _)| d).collect();
    let intents: BTreeSet<&String> = gold
        .iter()
        .flat_map(|(_, g)| g.intent.iter().flatten())
        .collect();
    preds
        .iter()
        .map(|(name, labels)| (name.to_string(), input_check(labels, &dialogues, &intents)))
        .collect()
}

fn input_check(
    labels: &SystemLabels,
    gold_dialogues: &BTreeSet<&String>,
    gold_intents: &BTreeSet<&String>,
) -> InputCheck {
    let mut missing: Vec<&String> = gold_dialogues
        .iter()
        .filter(|d| !labels.contains_key(d.as_str()))
        .copied()
        .collect();
    missing.sort();
    let mut extra: Vec<&String> = labels
        .keys()
        .filter(|d| !gold_dialogues.contains(d))
        .collect();
    extra.sort();
    InputCheck {
        dialogues: labels.len(),
        missing_dialogues: missing.len(),
        extra_dialogues: extra.len(),
        examples_missing: missing.iter().take(5).map(|d| d.to_string()).collect(),
        examples_extra: extra.iter().take(5).map(|d| d.to_string()).collect(),
        unknown_labels: unknown_labels(labels, gold_intents),
    }
}

/// Intents the gold never uses and failure points that are no class, with
/// their counts.
fn unknown_labels(
    labels: &SystemLabels,
    gold_intents: &BTreeSet<&String>,
) -> BTreeMap<&'static str, BTreeMap<String, usize>> {
    let mut unknown: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut count = |task: &'static str, label: &String| {
        *unknown
            .entry(task)
            .or_default()
            .entry(label.clone())
            .or_default() += 1;
    };
    for turn in labels.values().flatten().flatten() {
        if let Some(intent) = &turn.intent
            && !gold_intents.contains(intent)
        {
            count("intent", intent);
        }
        if let Some(f) = &turn.failure_point
            && FailurePoint::parse(f).is_none()
        {
            count("failure_point", f);
        }
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::gold::TurnLabels;
    use crate::eval::results::ANNOTATOR;

    fn with_failure_accuracy(name: &str, kind: &'static str, accuracy: f64) -> SystemResult {
        let result = TaskResult {
            items: 10,
            unit: "turn",
            missing: 0,
            headline: "accuracy",
            metrics: BTreeMap::from([(
                "accuracy",
                Estimate {
                    value: accuracy,
                    ci95: [f64::NAN, f64::NAN],
                },
            )]),
            per_class: None,
            vs_baseline: None,
        };
        SystemResult {
            name: name.into(),
            kind,
            tasks: BTreeMap::from([(Task::FailurePoint, result)]),
        }
    }

    #[test]
    fn failure_point_is_a_share_of_the_human_row_and_absent_without_one() {
        let model = with_failure_accuracy("model", PREDICTION, 0.6);
        let single = with_failure_accuracy("single", ANNOTATOR, 0.7);
        let human = with_failure_accuracy(HUMAN_LEAVE_ONE_OUT, HUMAN_LEAVE_ONE_OUT, 0.8);
        let shares = failure_point_vs_human(&[model.clone(), single, human]);
        assert_eq!(shares.len(), 2, "{shares:?}");
        assert!((shares["model"] - 0.75).abs() < 1e-12);
        assert!(failure_point_vs_human(&[model]).is_empty());
    }

    #[test]
    fn input_checks_name_missing_and_extra_dialogues_and_unknown_labels() {
        let gold: Vec<(String, GoldDialogue)> = ["d1", "d2"]
            .map(|d| {
                let g = GoldDialogue {
                    intent: vec![Some("PlayMusic".to_string())],
                    ..GoldDialogue::default()
                };
                (d.to_string(), g)
            })
            .to_vec();
        let turn = TurnLabels {
            intent: Some("Dance".into()),
            failure_point: Some("gremlins".into()),
            ..TurnLabels::default()
        };
        let labels: SystemLabels = [("d1", turn.clone()), ("d9", turn)]
            .into_iter()
            .map(|(d, t)| (d.to_string(), vec![Some(t)]))
            .collect();
        let checks = input_checks(&[("model", &labels)], &gold);
        let check = &checks["model"];
        assert_eq!(check.examples_missing, ["d2"]);
        assert_eq!(check.examples_extra, ["d9"]);
        assert_eq!(check.unknown_labels["intent"]["Dance"], 2);
        assert_eq!(check.unknown_labels["failure_point"]["gremlins"], 2);
    }

    #[test]
    fn only_predictions_are_swept() {
        let mut judgement = Judgement::default();
        for task in Task::ALL {
            judgement.sweep_items.insert(task, Vec::new());
        }
        judgement
            .sweep_items
            .insert(Task::Intent, vec![(0.99, true), (0.5, false)]);
        let prediction = JudgedSystem {
            name: "model".into(),
            kind: PREDICTION,
            tasks: Task::ALL.to_vec(),
            judgement,
        };
        let annotator = JudgedSystem {
            name: "single".into(),
            kind: ANNOTATOR,
            tasks: Task::ALL.to_vec(),
            judgement: Judgement::default(),
        };
        let sweeps = threshold_sweeps(&[prediction, annotator], None, 100, 50.0);
        assert_eq!(sweeps.keys().collect::<Vec<_>>(), ["model"]);
        let intent = &sweeps["model"][&Task::Intent];
        assert!(intent.baseline_precision.is_nan(), "no baseline annotator");
        assert!(intent.beats_baseline_at.is_none());
        assert_eq!(sweeps["model"].len(), 1, "tasks without items are left out");
    }
}
