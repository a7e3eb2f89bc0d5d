//! One system's labels judged against the gold, task by task, as additive
//! per-dialogue counts (for bootstraps) and (confidence, correct) pairs (for
//! threshold sweeps).

use std::collections::BTreeMap;

use serde::Serialize;

use super::gold::{GoldDialogue, SystemLabels, TurnLabels};
use super::metrics::{Counts, classification_counts, segmentation_counts, span_counts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    GoalSegmentation,
    GoalSuccess,
    Intent,
    Slots,
    FailurePoint,
}

impl Task {
    pub const ALL: [Task; 5] = [
        Task::GoalSegmentation,
        Task::GoalSuccess,
        Task::Intent,
        Task::Slots,
        Task::FailurePoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::GoalSegmentation => "goal_segmentation",
            Task::GoalSuccess => "goal_success",
            Task::Intent => "intent",
            Task::Slots => "slots",
            Task::FailurePoint => "failure_point",
        }
    }

    /// What one item of the task is, for reports.
    pub fn unit(self) -> &'static str {
        match self {
            Task::GoalSegmentation => "dialogue",
            Task::GoalSuccess => "goal",
            Task::Intent | Task::Slots | Task::FailurePoint => "turn",
        }
    }
}

/// Class names per classification task, shared by every system so that
/// class indices mean the same thing everywhere.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    pub intent: Vec<String>,
    pub failure_point: Vec<String>,
}

impl Vocabulary {
    fn index(list: &[String], value: &str) -> Option<usize> {
        list.binary_search_by(|v| v.as_str().cmp(value)).ok()
    }
}

/// Goal success classes: the failure class is the one whose F1 is reported.
pub const SUCCESS: usize = 0;
pub const FAILURE: usize = 1;

/// One system judged on every gold dialogue, in the gold's dialogue order
/// (the same for every system, so comparisons are paired).
#[derive(Debug, Default)]
pub struct Judgement {
    pub per_dialogue: BTreeMap<Task, Vec<Counts>>,
    /// (confidence of the emitted label, correct) per gold item; empty for
    /// systems without probabilities (annotators).
    pub sweep_items: BTreeMap<Task, Vec<(f64, bool)>>,
    /// (gold, predicted) failure classes, for the confusion matrix.
    pub failure_pairs: Vec<(usize, Option<usize>)>,
    /// Gold items the system has no label for (counted wrong).
    pub missing_items: BTreeMap<Task, usize>,
}

const DEFECT: &str = "defect";
const CORRECT: &str = "correct";

/// Judges `system` against the gold of each dialogue (`gold` in a fixed order).
pub fn judge(
    system: &SystemLabels,
    gold: &[(String, GoldDialogue)],
    vocabulary: &Vocabulary,
    pk_window: usize,
) -> Judgement {
    let mut j = Judgement::default();
    for task in Task::ALL {
        j.per_dialogue.insert(task, Vec::with_capacity(gold.len()));
        j.sweep_items.insert(task, Vec::new());
        j.missing_items.insert(task, 0);
    }
    let none: Vec<Option<TurnLabels>> = Vec::new();
    for (dialogue, g) in gold {
        let turns = system.get(dialogue).unwrap_or(&none);
        let at = |t: usize| turns.get(t).and_then(Option::as_ref);
        let missing =
            |j: &mut Judgement, task: Task| *j.missing_items.entry(task).or_default() += 1;

        // Intent and failure point: classification per turn with gold.
        for (task, gold_labels, classes) in [
            (Task::Intent, &g.intent, &vocabulary.intent),
            (
                Task::FailurePoint,
                &g.failure_point,
                &vocabulary.failure_point,
            ),
        ] {
            let mut pairs = Vec::new();
            for (t, gold_label) in gold_labels.iter().enumerate() {
                let Some(gold_label) = gold_label else {
                    continue;
                };
                let Some(gold_index) = Vocabulary::index(classes, gold_label) else {
                    continue;
                };
                let (label, prob) = match (task, at(t)) {
                    (Task::Intent, Some(l)) => (l.intent.as_deref(), l.intent_prob),
                    (_, Some(l)) => (l.failure_point.as_deref(), l.failure_point_prob),
                    (_, None) => (None, None),
                };
                if label.is_none() {
                    missing(&mut j, task);
                }
                let mut predicted = label.and_then(|l| Vocabulary::index(classes, l));
                // Gold `defect` (a response failed, stage unknown: USS ratings):
                // any named failure stage is right; only `correct` (or no label) is wrong.
                if task == Task::FailurePoint
                    && gold_label == DEFECT
                    && label.is_some_and(|l| l != CORRECT)
                {
                    predicted = Some(gold_index);
                }
                pairs.push((gold_index, predicted));
                if let Some(p) = prob {
                    j.sweep_items
                        .entry(task)
                        .or_default()
                        .push((p as f64, predicted == Some(gold_index)));
                }
            }
            if task == Task::FailurePoint {
                j.failure_pairs.extend_from_slice(&pairs);
            }
            let counts = classification_counts(&pairs, classes.len());
            j.per_dialogue.entry(task).or_default().push(counts);
        }

        // Slots: exact spans on turns with gold.
        let mut slots = Counts::default();
        for (t, gold_spans) in g.slots.iter().enumerate() {
            let Some(gold_spans) = gold_spans else {
                continue;
            };
            let predicted = at(t).and_then(|l| l.slots.as_ref());
            if predicted.is_none() {
                missing(&mut j, Task::Slots);
            }
            let counts = span_counts(gold_spans, predicted.map(Vec::as_slice).unwrap_or(&[]));
            let exact = counts.correct == 1 && predicted.is_some();
            if let Some(p) = at(t).and_then(|l| l.slots_prob) {
                j.sweep_items
                    .entry(Task::Slots)
                    .or_default()
                    .push((p as f64, exact));
            }
            slots.add(&Counts {
                correct: u64::from(exact),
                ..counts
            });
        }
        j.per_dialogue.entry(Task::Slots).or_default().push(slots);

        // Goal segmentation and goal success need the dialogue's gold segmentation.
        let (segmentation, success) = match &g.segmentation {
            None => (Counts::default(), Counts::default()),
            Some(gold_goals) => {
                // A turn with no predicted goal id continues the previous goal.
                let mut predicted = Vec::with_capacity(gold_goals.len());
                let mut last = 0;
                let mut any_missing = false;
                for t in 0..gold_goals.len() {
                    match at(t).and_then(|l| l.goal_id) {
                        Some(goal) => last = goal,
                        None => any_missing = true,
                    }
                    predicted.push(last);
                }
                if any_missing {
                    missing(&mut j, Task::GoalSegmentation);
                }
                for t in 1..gold_goals.len() {
                    if let Some(p) = at(t).and_then(|l| l.goal_boundary_prob) {
                        let says_boundary = predicted[t] != predicted[t - 1];
                        let confidence = if says_boundary { p } else { 1.0 - p };
                        let right = says_boundary == (gold_goals[t] != gold_goals[t - 1]);
                        j.sweep_items
                            .entry(Task::GoalSegmentation)
                            .or_default()
                            .push((confidence as f64, right));
                    }
                }
                let segmentation = segmentation_counts(gold_goals, &predicted, pk_window);
                let mut pairs = Vec::new();
                for &(start, end, gold_success) in &g.goals {
                    let Some(gold_success) = gold_success else {
                        continue;
                    };
                    let (value, confidence) =
                        goal_success_of(&(start..end).map(at).collect::<Vec<_>>());
                    if value.is_none() {
                        missing(&mut j, Task::GoalSuccess);
                    }
                    let class = |s: bool| if s { SUCCESS } else { FAILURE };
                    pairs.push((class(gold_success), value.map(class)));
                    if let Some(c) = confidence {
                        j.sweep_items
                            .entry(Task::GoalSuccess)
                            .or_default()
                            .push((c, value == Some(gold_success)));
                    }
                }
                (segmentation, classification_counts(&pairs, 2))
            }
        };
        j.per_dialogue
            .entry(Task::GoalSegmentation)
            .or_default()
            .push(segmentation);
        j.per_dialogue
            .entry(Task::GoalSuccess)
            .or_default()
            .push(success);
    }
    j
}

/// A system's success label for a gold goal: the majority of its per-turn
/// labels over the goal's turns (ties go to the last turn), with the mean
/// probability of that value.
fn goal_success_of(turns: &[Option<&TurnLabels>]) -> (Option<bool>, Option<f64>) {
    let votes: Vec<(bool, Option<f32>)> = turns
        .iter()
        .flatten()
        .filter_map(|l| l.goal_success.map(|s| (s, l.goal_success_prob)))
        .collect();
    let Some(&(last, _)) = votes.last() else {
        return (None, None);
    };
    let yes = votes.iter().filter(|(s, _)| *s).count();
    let value = match (2 * yes).cmp(&votes.len()) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => last,
    };
    let probs: Vec<f64> = votes
        .iter()
        .filter(|(s, _)| *s == value)
        .filter_map(|(_, p)| p.map(f64::from))
        .collect();
    let confidence = (!probs.is_empty()).then(|| probs.iter().sum::<f64>() / probs.len() as f64);
    (Some(value), confidence)
}

/// Share of turns on which two systems give the same label, per task (over
/// turns both labelled).
pub fn agreement(a: &SystemLabels, b: &SystemLabels) -> BTreeMap<Task, f64> {
    let mut counts: BTreeMap<Task, (u64, u64)> = BTreeMap::new();
    for (dialogue, turns) in a {
        let Some(other) = b.get(dialogue) else {
            continue;
        };
        for (t, (x, y)) in turns.iter().zip(other).enumerate() {
            let (Some(x), Some(y)) = (x, y) else { continue };
            let mut count = |task: Task, same: Option<bool>| {
                if let Some(same) = same {
                    let c = counts.entry(task).or_default();
                    c.0 += u64::from(same);
                    c.1 += 1;
                }
            };
            let both = |p: Option<bool>, q: Option<bool>| p.zip(q).map(|(p, q)| p == q);
            count(
                Task::Intent,
                x.intent
                    .as_ref()
                    .zip(y.intent.as_ref())
                    .map(|(p, q)| p == q),
            );
            count(
                Task::FailurePoint,
                x.failure_point
                    .as_ref()
                    .zip(y.failure_point.as_ref())
                    .map(|(p, q)| p == q),
            );
            count(
                Task::Slots,
                x.slots.as_ref().zip(y.slots.as_ref()).map(|(p, q)| p == q),
            );
            count(Task::GoalSuccess, both(x.goal_success, y.goal_success));
            if t > 0 {
                let boundary = |turns: &[Option<TurnLabels>]| -> Option<bool> {
                    let before = turns.get(t - 1)?.as_ref()?.goal_id?;
                    Some(turns.get(t)?.as_ref()?.goal_id? != before)
                };
                count(
                    Task::GoalSegmentation,
                    both(boundary(turns), boundary(other)),
                );
            }
        }
    }
    counts
        .into_iter()
        .map(|(task, (same, n))| {
            (
                task,
                if n == 0 {
                    f64::NAN
                } else {
                    same as f64 / n as f64
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::gold::{GoldPolicy, derive};
    use crate::eval::report::total;

    fn fp(value: Option<&str>) -> Option<TurnLabels> {
        Some(TurnLabels {
            failure_point: value.map(str::to_string),
            ..TurnLabels::default()
        })
    }

    #[test]
    fn gold_defect_is_matched_by_any_stage_but_not_by_correct() {
        // One gold annotator is its own gold (SGD-style), so the gold is exactly its labels.
        let annotator = vec![
            fp(Some("defect")),
            fp(Some("defect")),
            fp(Some("defect")),
            fp(Some("correct")),
            fp(Some("defect")),
        ];
        let gold = derive(&[Some(&annotator)], GoldPolicy::Unanimous);
        assert_eq!(gold.failure_point[0].as_deref(), Some("defect"));
        let gold = vec![("d".to_string(), gold)];
        let vocabulary = Vocabulary {
            intent: vec![],
            failure_point: ["asr", "correct", "defect", "nlu"]
                .map(String::from)
                .to_vec(),
        };
        let system: SystemLabels = [(
            "d".to_string(),
            vec![
                fp(Some("nlu")),     // a stage: right on `defect`
                fp(Some("correct")), // wrong on `defect`
                fp(None),            // missing: wrong
                fp(Some("asr")),     // a stage where gold says correct: wrong
                fp(Some("defect")),  // right
            ],
        )]
        .into_iter()
        .collect();
        let j = judge(&system, &gold, &vocabulary, 2);
        let counts = total(&j.per_dialogue[&Task::FailurePoint]);
        assert_eq!((counts.correct, counts.total), (2, 5), "{counts:?}");
    }
}
