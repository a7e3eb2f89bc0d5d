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

/// A system to judge on the subset.
pub struct SubsetInput<'a> {
    pub name: &'a str,
    /// prediction | annotator | runtime
    pub kind: &'static str,
    pub labels: &'a SystemLabels,
    /// The tasks its labels can be judged on; it is judged on those of
    /// [`CONTEXT_TASKS`] only.
    pub tasks: &'a [Task],
}

/// What the context subset is judged from.
pub struct ContextInputs<'a> {
    /// The annotator whose rows carry the `context` column, and its rows if
    /// the gold table has that annotator.
    pub marked_by: &'a str,
    pub marks: Option<&'a SystemLabels>,
    pub gold: &'a [(String, GoldDialogue)],
    /// The predictions, the runtime baseline and the baseline annotators,
    /// in report order.
    pub systems: &'a [SubsetInput<'a>],
    /// Each gold annotator with the gold of the others.
    pub leave_one_out: &'a [LeftOut<'a>],
    pub vocabulary: &'a Vocabulary,
    pub pk_window: usize,
    pub bootstrap: Bootstrap,
}

/// A system judged on the subset.
struct Judged<'a> {
    name: &'a str,
    kind: &'static str,
    /// The context tasks it is judged on.
    tasks: Vec<Task>,
    judgement: Judgement,
}

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
        .map(|system| Judged {
            name: system.name,
            kind: system.kind,
            tasks: context_tasks(system.tasks),
            judgement: judge(system.labels, &subset, inputs.vocabulary, inputs.pk_window),
        })
        .collect();
    let mut results: Vec<SystemResult> = judgements
        .iter()
        .map(|j| subset_result(inputs, j, inputs.bootstrap))
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

/// The context tasks among a system's tasks.
fn context_tasks(tasks: &[Task]) -> Vec<Task> {
    CONTEXT_TASKS
        .into_iter()
        .filter(|task| tasks.contains(task))
        .collect()
}

/// One system's context tasks, from its judgement on the subset.
fn subset_result(inputs: &ContextInputs, judged: &Judged, bootstrap: Bootstrap) -> SystemResult {
    let class_names = &inputs.vocabulary.failure_point;
    system_result(
        judged.name,
        judged.kind,
        &judged.judgement,
        None,
        class_names,
        bootstrap,
        &judged.tasks,
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
            let judged = Judged {
                name: left_out.name,
                kind: ANNOTATOR,
                tasks: CONTEXT_TASKS.to_vec(),
                judgement: judge(
                    left_out.labels,
                    &others_subset,
                    inputs.vocabulary,
                    inputs.pk_window,
                ),
            };
            subset_result(inputs, &judged, no_intervals)
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

/// Each prediction against every later prediction and every other system
/// (the runtime baseline, the annotators) judged on the task, on the task's
/// headline metric; none without resamples.
fn paired_comparisons(
    task: Task,
    judgements: &[Judged],
    bootstrap: Bootstrap,
) -> Vec<PairedComparison> {
    if bootstrap.resamples == 0 {
        return Vec::new();
    }
    let (metric, stat) = task_metrics(task)[0];
    let judged_on_task = |j: &&Judged| j.tasks.contains(&task);
    let mut comparisons = Vec::new();
    for (i, system) in judgements.iter().enumerate() {
        if system.kind != PREDICTION || !judged_on_task(&system) {
            continue;
        }
        let others = judgements
            .iter()
            .enumerate()
            .filter(|(k, other)| *k > i || other.kind != PREDICTION)
            .map(|(_, other)| other)
            .filter(judged_on_task);
        for other in others {
            let (delta, p_value) = paired_bootstrap(
                &system.judgement.per_dialogue[&task],
                &other.judgement.per_dialogue[&task],
                stat,
                bootstrap.resamples,
                bootstrap.seed,
            );
            comparisons.push(PairedComparison {
                system: system.name.to_string(),
                against: other.name.to_string(),
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
    use crate::eval::results::RUNTIME;
    use crate::metrics::Counts;

    fn judged(name: &'static str, kind: &'static str) -> Judged<'static> {
        judged_on(name, kind, &CONTEXT_TASKS)
    }

    fn judged_on(name: &'static str, kind: &'static str, tasks: &[Task]) -> Judged<'static> {
        let mut judgement = Judgement::default();
        for task in CONTEXT_TASKS {
            judgement.per_dialogue.insert(task, vec![Counts::default()]);
        }
        Judged {
            name,
            kind,
            tasks: context_tasks(tasks),
            judgement,
        }
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

    #[test]
    fn a_system_without_a_task_is_left_out_of_that_task() {
        let runtime_tasks = [Task::Intent, Task::FailurePoint];
        let judgements = [
            judged("model", PREDICTION),
            judged_on("runtime", RUNTIME, &runtime_tasks),
            judged("single", ANNOTATOR),
        ];
        let bootstrap = Bootstrap {
            resamples: 10,
            seed: 0,
        };
        let pairs = |task| -> Vec<(String, String)> {
            paired_comparisons(task, &judgements, bootstrap)
                .into_iter()
                .map(|c| (c.system, c.against))
                .collect()
        };
        let expected = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            pairs(Task::Intent),
            expected(&[("model", "runtime"), ("model", "single")])
        );
        assert_eq!(
            pairs(Task::Slots),
            expected(&[("model", "single")]),
            "the runtime has no slots to compare"
        );
        let results: Vec<SystemResult> = judgements
            .iter()
            .map(|j| system_result(j.name, j.kind, &j.judgement, None, &[], bootstrap, &j.tasks))
            .collect();
        let names = |task| -> Vec<String> {
            subset_systems(task, &results)
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(names(Task::Intent), ["model", "runtime", "single"]);
        assert_eq!(names(Task::Slots), ["model", "single"]);
    }
}
