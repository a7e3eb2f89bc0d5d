//! Every system judged again on a subset of the gold items: the turns whose
//! meaning needs context (elliptical follow-ups, device type, device state
//! ...). The project's acceptance test lives here: a labeler that reads the
//! dialogue must beat a contextless one on exactly these turns, so the
//! subset carries intervals and a paired test of every prediction against
//! every other system.
//!
//! Its Markdown section is written by `render`; this module only measures.

use std::collections::BTreeMap;

use serde::Serialize;

use super::gold::{self, GoldDialogue, SystemLabels};
use super::judge::{Judgement, Task, Vocabulary, judge};
use super::results::{
    ANNOTATOR, Bootstrap, PREDICTION, SystemResult, TaskResult, mean_result, system_result,
    task_metrics,
};
use crate::metrics::paired_bootstrap;

/// The key of the context subset under `subsets` in report.json.
pub const CONTEXT_SUBSET: &str = "context";

/// Tasks judged on the context subset: the turn labels whose value the
/// context decides ("play dune" is a film or an audiobook; "in the kitchen"
/// fills the room slot of the previous request).
pub const CONTEXT_TASKS: [Task; 2] = [Task::Intent, Task::Slots];

/// A subset of the gold items and every system judged on it.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetReport {
    /// False when nothing in the gold table marks the subset's turns; the
    /// figures below are then empty and `definition` says why.
    pub available: bool,
    /// Which items the subset holds, or why it is unavailable.
    pub definition: String,
    /// The annotator whose rows mark the turns.
    pub marked_by: String,
    /// Gold dialogues holding at least one marked turn (the bootstrap's unit).
    pub dialogues: usize,
    /// Marked turns of the gold dialogues, in all and per reason.
    pub marked_turns: u64,
    pub reasons: BTreeMap<String, u64>,
    pub intent: Option<SubsetTask>,
    pub slots: Option<SubsetTask>,
}

/// One task on the subset.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetTask {
    /// Marked turns with gold for the task (judged) and without (excluded).
    pub items: u64,
    pub without_gold: u64,
    pub unit: &'static str,
    pub headline: &'static str,
    /// Predictions, baseline annotators, then human leave-one-out.
    pub systems: Vec<SubsetSystem>,
    /// Each prediction against every other prediction and every baseline
    /// annotator, on the headline metric; empty without resamples.
    pub comparisons: Vec<PairedComparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubsetSystem {
    pub name: String,
    /// prediction | annotator | human_leave_one_out
    pub kind: &'static str,
    #[serde(flatten)]
    pub result: TaskResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairedComparison {
    pub system: String,
    pub against: String,
    pub metric: &'static str,
    /// `system` minus `against`.
    pub delta: f64,
    /// Paired bootstrap over the subset's dialogues, two-sided.
    pub p_value: f64,
}

/// A gold annotator, judged against the gold of the other gold annotators.
pub struct LeftOut<'a> {
    pub name: &'a str,
    pub labels: &'a SystemLabels,
    pub gold_of_others: &'a [(String, GoldDialogue)],
}

/// What the context subset is judged from.
pub struct ContextInputs<'a> {
    /// The annotator whose rows carry the `context` column, and its rows if
    /// the gold table has that annotator.
    pub marked_by: &'a str,
    pub marks: Option<&'a SystemLabels>,
    pub gold: &'a [(String, GoldDialogue)],
    /// (name, kind, labels) of the predictions and baseline annotators, in
    /// report order.
    pub systems: &'a [(&'a str, &'static str, &'a SystemLabels)],
    /// Each gold annotator with the gold of the others.
    pub leave_one_out: &'a [LeftOut<'a>],
    pub vocabulary: &'a Vocabulary,
    pub pk_window: usize,
    pub bootstrap: Bootstrap,
}

/// A system judged on the subset: (name, kind, judgement).
type Judged<'a> = (&'a str, &'static str, Judgement);

/// The systems judged on the turns whose meaning needs context, or a report
/// that says the subset is unavailable when no row marks such a turn.
pub fn context_report(inputs: &ContextInputs) -> SubsetReport {
    let marked_by = inputs.marked_by;
    let Some(marks) = inputs.marks.filter(|m| gold::has_context_marks(m)) else {
        return SubsetReport::unavailable(marked_by);
    };
    let subset = gold::context_subset(inputs.gold, marks);
    let (marked_turns, reasons) = gold::context_reasons(inputs.gold, marks);
    let judgements: Vec<Judged> = inputs
        .systems
        .iter()
        .map(|(name, kind, labels)| {
            let judgement = judge(labels, &subset, inputs.vocabulary, inputs.pk_window);
            (*name, *kind, judgement)
        })
        .collect();
    let mut results: Vec<SystemResult> = judgements
        .iter()
        .map(|(name, kind, judgement)| {
            subset_result(inputs, name, kind, judgement, inputs.bootstrap)
        })
        .collect();
    results.extend(human_leave_one_out(inputs, marks));
    let task_report = |task: Task| {
        let items = gold_items(task, &subset);
        SubsetTask {
            items,
            without_gold: marked_turns.saturating_sub(items),
            unit: task.unit(),
            headline: task_metrics(task)[0].0,
            systems: subset_systems(task, &results),
            comparisons: paired_comparisons(task, &judgements, inputs.bootstrap),
        }
    };
    SubsetReport {
        available: true,
        definition: format!(
            "gold items on the turns whose `{marked_by}` row has a `context` value (why the turn's \
             meaning needs its dialogue or device context); intent and slots only; the bootstrap \
             resamples the {} dialogues that hold such turns",
            subset.len()
        ),
        marked_by: marked_by.to_string(),
        dialogues: subset.len(),
        marked_turns,
        reasons,
        intent: Some(task_report(Task::Intent)),
        slots: Some(task_report(Task::Slots)),
    }
}

impl SubsetReport {
    fn unavailable(marked_by: &str) -> SubsetReport {
        SubsetReport {
            available: false,
            definition: format!(
                "unavailable: no `{marked_by}` row of the gold table has a `context` value \
                 (the optional column saying why a turn's meaning needs context; \
                 `labelgen simulate` writes it), so those turns cannot be told apart"
            ),
            marked_by: marked_by.to_string(),
            dialogues: 0,
            marked_turns: 0,
            reasons: BTreeMap::new(),
            intent: None,
            slots: None,
        }
    }
}

/// One system's context tasks, from its judgement on the subset.
fn subset_result(
    inputs: &ContextInputs,
    name: &str,
    kind: &'static str,
    judgement: &Judgement,
    bootstrap: Bootstrap,
) -> SystemResult {
    let class_names = &inputs.vocabulary.failure_point;
    system_result(
        name,
        kind,
        judgement,
        None,
        class_names,
        bootstrap,
        &CONTEXT_TASKS,
    )
}

/// The mean of the gold annotators, each judged on the marked turns of the
/// others' gold (no intervals, as on the full gold).
fn human_leave_one_out(inputs: &ContextInputs, marks: &SystemLabels) -> Option<SystemResult> {
    let no_intervals = Bootstrap {
        resamples: 0,
        ..inputs.bootstrap
    };
    let leave_one_out: Vec<SystemResult> = inputs
        .leave_one_out
        .iter()
        .map(|left_out| {
            let others_subset = gold::context_subset(left_out.gold_of_others, marks);
            let judgement = judge(
                left_out.labels,
                &others_subset,
                inputs.vocabulary,
                inputs.pk_window,
            );
            subset_result(inputs, left_out.name, ANNOTATOR, &judgement, no_intervals)
        })
        .collect();
    mean_result(&leave_one_out.iter().collect::<Vec<_>>())
}

/// Gold items of a task on the subset.
fn gold_items(task: Task, subset: &[(String, GoldDialogue)]) -> u64 {
    subset
        .iter()
        .map(|(_, g)| match task {
            Task::Intent => g.intent.iter().flatten().count() as u64,
            Task::Slots => g.slots.iter().flatten().count() as u64,
            Task::FailurePoint => g.failure_point.iter().flatten().count() as u64,
            // The subset holds turns, never goal-level gold.
            Task::GoalSegmentation | Task::GoalSuccess => 0,
        })
        .sum()
}

fn subset_systems(task: Task, results: &[SystemResult]) -> Vec<SubsetSystem> {
    results
        .iter()
        .filter_map(|r| {
            r.tasks.get(&task).map(|result| SubsetSystem {
                name: r.name.clone(),
                kind: r.kind,
                result: result.clone(),
            })
        })
        .collect()
}

/// Each prediction against every later prediction and every annotator, on
/// the task's headline metric; none without resamples.
fn paired_comparisons(
    task: Task,
    judgements: &[Judged],
    bootstrap: Bootstrap,
) -> Vec<PairedComparison> {
    if bootstrap.resamples == 0 {
        return Vec::new();
    }
    let (metric, stat) = task_metrics(task)[0];
    let mut comparisons = Vec::new();
    for (i, (name, kind, judgement)) in judgements.iter().enumerate() {
        if *kind != PREDICTION {
            continue;
        }
        let others = judgements
            .iter()
            .enumerate()
            .filter(|(k, (_, other_kind, _))| *k > i || *other_kind != PREDICTION);
        for (_, (other, _, other_judgement)) in others {
            let (delta, p_value) = paired_bootstrap(
                &judgement.per_dialogue[&task],
                &other_judgement.per_dialogue[&task],
                stat,
                bootstrap.resamples,
                bootstrap.seed,
            );
            comparisons.push(PairedComparison {
                system: name.to_string(),
                against: other.to_string(),
                metric,
                delta,
                p_value,
            });
        }
    }
    comparisons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counts;

    fn judged(name: &'static str, kind: &'static str) -> Judged<'static> {
        let mut judgement = Judgement::default();
        judgement
            .per_dialogue
            .insert(Task::Intent, vec![Counts::default()]);
        (name, kind, judgement)
    }

    #[test]
    fn each_prediction_is_paired_with_later_predictions_and_every_annotator() {
        let judgements = [
            judged("model", PREDICTION),
            judged("single", ANNOTATOR),
            judged("contextless", PREDICTION),
        ];
        let bootstrap = Bootstrap {
            resamples: 10,
            seed: 0,
        };
        let pairs: Vec<(String, String)> = paired_comparisons(Task::Intent, &judgements, bootstrap)
            .into_iter()
            .map(|c| (c.system, c.against))
            .collect();
        let expected = [
            ("model", "single"),
            ("model", "contextless"),
            ("contextless", "single"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(pairs, expected);
        let none = Bootstrap {
            resamples: 0,
            seed: 0,
        };
        assert!(paired_comparisons(Task::Intent, &judgements, none).is_empty());
    }
}
