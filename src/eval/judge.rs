//! One system's labels judged against the gold, task by task, as additive
//! per-dialogue counts (for bootstraps) and (confidence, correct) pairs (for
//! threshold sweeps).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::gold::{GoldDialogue, SystemLabels, TurnLabels};
use crate::data::tables::{FailurePoint, SlotSpan};
use crate::metrics::{Counts, classification_counts, segmentation_counts, span_counts};

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
    /// Class names: intents sorted; failure points: correct and the pipeline
    /// stages, then any other value used (`defect`, or unknown values, judged
    /// wrong and listed in the input check).
    pub fn from_systems(systems: &[&SystemLabels]) -> Vocabulary {
        let mut intents = BTreeSet::new();
        let mut failure_points = BTreeSet::new();
        for labels in systems.iter().flat_map(|s| s.values()).flatten().flatten() {
            if let Some(i) = &labels.intent {
                intents.insert(i.clone());
            }
            if let Some(f) = &labels.failure_point {
                failure_points.insert(f.clone());
            }
        }
        failure_points.extend(FailurePoint::PIPELINE.map(|f| f.as_str().to_string()));
        // judge() looks classes up by binary search, so the lists stay sorted
        // (a BTreeSet yields them in order).
        Vocabulary {
            intent: intents.into_iter().collect(),
            failure_point: failure_points.into_iter().collect(),
        }
    }

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

/// A system judged on the full gold, with what it is.
#[derive(Debug)]
pub struct JudgedSystem {
    pub name: String,
    /// prediction | annotator | runtime
    pub kind: &'static str,
    /// The tasks its labels can be judged on (every task but for the
    /// runtime baseline); the judgement holds counts for all of them.
    pub tasks: Vec<Task>,
    pub judgement: Judgement,
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
        let turns = Turns(system.get(dialogue).unwrap_or(&none));
        let intent = j.classes(Task::Intent, &g.intent, &vocabulary.intent, turns);
        j.push(Task::Intent, intent);
        let failure_point = j.classes(
            Task::FailurePoint,
            &g.failure_point,
            &vocabulary.failure_point,
            turns,
        );
        j.push(Task::FailurePoint, failure_point);
        let slots = j.slots(&g.slots, turns);
        j.push(Task::Slots, slots);
        let (segmentation, success) = match &g.segmentation {
            // Both need the dialogue's gold segmentation.
            None => (Counts::default(), Counts::default()),
            Some(gold_goals) => (
                j.segmentation(gold_goals, turns, pk_window),
                j.goal_success(&g.goals, turns),
            ),
        };
        j.push(Task::GoalSegmentation, segmentation);
        j.push(Task::GoalSuccess, success);
    }
    j
}

/// One dialogue's turns as a system labelled them (`None`: no row).
#[derive(Clone, Copy)]
struct Turns<'a>(&'a [Option<TurnLabels>]);

impl<'a> Turns<'a> {
    fn at(self, t: usize) -> Option<&'a TurnLabels> {
        self.0.get(t).and_then(Option::as_ref)
    }
}

/// Judging one dialogue, task by task: each method returns the dialogue's
/// counts and records missing labels and sweep items as it goes.
impl Judgement {
    fn push(&mut self, task: Task, counts: Counts) {
        self.per_dialogue.entry(task).or_default().push(counts);
    }

    fn missing(&mut self, task: Task) {
        *self.missing_items.entry(task).or_default() += 1;
    }

    fn sweep(&mut self, task: Task, confidence: f64, right: bool) {
        self.sweep_items
            .entry(task)
            .or_default()
            .push((confidence, right));
    }

    /// Intent or failure point: classification per turn with gold.
    fn classes(
        &mut self,
        task: Task,
        gold_labels: &[Option<String>],
        classes: &[String],
        turns: Turns,
    ) -> Counts {
        let mut pairs = Vec::new();
        for (t, gold_label) in gold_labels.iter().enumerate() {
            let Some(gold_label) = gold_label else {
                continue;
            };
            let Some(gold_index) = Vocabulary::index(classes, gold_label) else {
                continue;
            };
            let (label, prob) = match (task, turns.at(t)) {
                (Task::Intent, Some(l)) => (l.intent.as_deref(), l.intent_prob),
                (_, Some(l)) => (l.failure_point.as_deref(), l.failure_point_prob),
                (_, None) => (None, None),
            };
            if label.is_none() {
                self.missing(task);
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
                self.sweep(task, p as f64, predicted == Some(gold_index));
            }
        }
        if task == Task::FailurePoint {
            self.failure_pairs.extend_from_slice(&pairs);
        }
        classification_counts(&pairs, classes.len())
    }

    /// Slots: exact spans on turns with gold.
    fn slots(&mut self, gold_slots: &[Option<Vec<SlotSpan>>], turns: Turns) -> Counts {
        let mut slots = Counts::default();
        for (t, gold_spans) in gold_slots.iter().enumerate() {
            let Some(gold_spans) = gold_spans else {
                continue;
            };
            let predicted = turns.at(t).and_then(|l| l.slots.as_ref());
            if predicted.is_none() {
                self.missing(Task::Slots);
            }
            let counts = span_counts(gold_spans, predicted.map(Vec::as_slice).unwrap_or(&[]));
            let exact = counts.correct == 1 && predicted.is_some();
            if let Some(p) = turns.at(t).and_then(|l| l.slots_prob) {
                self.sweep(Task::Slots, p as f64, exact);
            }
            slots.add(&Counts {
                correct: u64::from(exact),
                ..counts
            });
        }
        slots
    }

    /// Goal segmentation against the gold goal id per turn; each boundary
    /// decision with a probability is a sweep item.
    fn segmentation(&mut self, gold_goals: &[i32], turns: Turns, pk_window: usize) -> Counts {
        let predicted = self.predicted_goals(gold_goals.len(), turns);
        for t in 1..gold_goals.len() {
            if let Some(p) = turns.at(t).and_then(|l| l.goal_boundary_prob) {
                let says_boundary = predicted[t] != predicted[t - 1];
                let confidence = if says_boundary { p } else { 1.0 - p };
                let right = says_boundary == (gold_goals[t] != gold_goals[t - 1]);
                self.sweep(Task::GoalSegmentation, confidence as f64, right);
            }
        }
        segmentation_counts(gold_goals, &predicted, pk_window)
    }

    /// The system's goal id per turn; a turn with no predicted goal id
    /// continues the previous goal (and counts the dialogue as missing).
    fn predicted_goals(&mut self, len: usize, turns: Turns) -> Vec<i32> {
        let mut predicted = Vec::with_capacity(len);
        let mut last = 0;
        let mut any_missing = false;
        for t in 0..len {
            match turns.at(t).and_then(|l| l.goal_id) {
                Some(goal) => last = goal,
                None => any_missing = true,
            }
            predicted.push(last);
        }
        if any_missing {
            self.missing(Task::GoalSegmentation);
        }
        predicted
    }

    /// Goal success per gold goal with agreed gold, from the system's
    /// labels over the goal's turns.
    fn goal_success(&mut self, goals: &[(usize, usize, Option<bool>)], turns: Turns) -> Counts {
        let class = |s: bool| if s { SUCCESS } else { FAILURE };
        let mut pairs = Vec::new();
        for &(start, end, gold_success) in goals {
            let Some(gold_success) = gold_success else {
                continue;
            };
            let (value, confidence) =
                goal_success_of(&(start..end).map(|t| turns.at(t)).collect::<Vec<_>>());
            if value.is_none() {
                self.missing(Task::GoalSuccess);
            }
            pairs.push((class(gold_success), value.map(class)));
            if let Some(c) = confidence {
                self.sweep(Task::GoalSuccess, c, value == Some(gold_success));
            }
        }
        classification_counts(&pairs, 2)
    }
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
    use crate::eval::results::total;

    fn fp(value: Option<&str>) -> Option<TurnLabels> {
        Some(TurnLabels {
            failure_point: value.map(str::to_string),
            ..TurnLabels::default()
        })
    }

    #[test]
    fn the_vocabulary_is_sorted_and_holds_every_pipeline_stage() {
        let labels = |intent: &str, failure: &str| TurnLabels {
            intent: Some(intent.into()),
            failure_point: Some(failure.into()),
            ..TurnLabels::default()
        };
        let a: SystemLabels = [(
            "d".to_string(),
            vec![Some(labels("b_intent", "defect")), None],
        )]
        .into_iter()
        .collect();
        let b: SystemLabels = [("d".to_string(), vec![Some(labels("a_intent", "nlu"))])]
            .into_iter()
            .collect();
        let vocabulary = Vocabulary::from_systems(&[&a, &b]);
        assert_eq!(vocabulary.intent, ["a_intent", "b_intent"]);
        let classes = &vocabulary.failure_point;
        assert!(
            classes.is_sorted(),
            "judge() binary-searches it: {classes:?}"
        );
        assert!(classes.iter().any(|c| c == "defect"));
        for stage in FailurePoint::PIPELINE {
            assert!(classes.iter().any(|c| c == stage.as_str()), "{stage:?}");
        }
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
