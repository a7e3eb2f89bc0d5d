//! Every system judged again on a subset of the gold items: the turns whose
//! meaning needs context (elliptical follow-ups, device type, device state
//! ...). The project's acceptance test lives here: a labeler that reads the
//! dialogue must beat a contextless one on exactly these turns, so the
//! subset carries intervals and a paired test of every prediction against
//! every other system.

use std::collections::BTreeMap;

use serde::Serialize;

use super::gold::{self, GoldDialogue, SystemLabels};
use super::judge::{Judgement, Task, Vocabulary, judge};
use super::metrics::paired_bootstrap;
use super::report::{SystemResult, TaskResult, fmt, fmt_estimate, system_result, task_metrics};

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
    pub resamples: usize,
    pub seed: u64,
}

/// The systems judged on the turns whose meaning needs context, or a report
/// that says the subset is unavailable when no row marks such a turn.
pub fn context_report(inputs: &ContextInputs) -> SubsetReport {
    let marked_by = inputs.marked_by;
    let Some(marks) = inputs.marks.filter(|m| gold::has_context_marks(m)) else {
        return SubsetReport {
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
        };
    };
    let subset = gold::context_subset(inputs.gold, marks);
    let (marked_turns, reasons) = gold::context_reasons(inputs.gold, marks);
    let judgements: Vec<(&str, &'static str, Judgement)> = inputs
        .systems
        .iter()
        .map(|(name, kind, labels)| {
            (
                *name,
                *kind,
                judge(labels, &subset, inputs.vocabulary, inputs.pk_window),
            )
        })
        .collect();
    let mut results: Vec<SystemResult> = judgements
        .iter()
        .map(|(name, kind, judgement)| {
            system_result(
                name,
                kind,
                judgement,
                None,
                &inputs.vocabulary.failure_point,
                inputs.resamples,
                inputs.seed,
                &CONTEXT_TASKS,
            )
        })
        .collect();
    // Human leave-one-out on the same marked turns of the others' gold.
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
            system_result(
                left_out.name,
                "annotator",
                &judgement,
                None,
                &inputs.vocabulary.failure_point,
                0,
                inputs.seed,
                &CONTEXT_TASKS,
            )
        })
        .collect();
    if !leave_one_out.is_empty() {
        results.push(super::mean_result(
            &leave_one_out.iter().collect::<Vec<_>>(),
        ));
    }
    let task_report = |task: Task| -> SubsetTask {
        let items: u64 = subset
            .iter()
            .map(|(_, g)| match task {
                Task::Intent => g.intent.iter().flatten().count() as u64,
                Task::Slots => g.slots.iter().flatten().count() as u64,
                Task::FailurePoint => g.failure_point.iter().flatten().count() as u64,
                // The subset holds turns, never goal-level gold.
                Task::GoalSegmentation | Task::GoalSuccess => 0,
            })
            .sum();
        let (metric, stat) = task_metrics(task)[0];
        let mut comparisons = Vec::new();
        if inputs.resamples > 0 {
            for (i, (name, kind, judgement)) in judgements.iter().enumerate() {
                if *kind != "prediction" {
                    continue;
                }
                let others = judgements
                    .iter()
                    .enumerate()
                    .filter(|(k, (_, other_kind, _))| *k > i || *other_kind != "prediction");
                for (_, (other, _, other_judgement)) in others {
                    let (delta, p_value) = paired_bootstrap(
                        &judgement.per_dialogue[&task],
                        &other_judgement.per_dialogue[&task],
                        stat,
                        inputs.resamples,
                        inputs.seed,
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
        }
        SubsetTask {
            items,
            without_gold: marked_turns.saturating_sub(items),
            unit: task.unit(),
            headline: metric,
            systems: results
                .iter()
                .filter_map(|r| {
                    r.tasks.get(&task).map(|result| SubsetSystem {
                        name: r.name.clone(),
                        kind: r.kind,
                        result: result.clone(),
                    })
                })
                .collect(),
            comparisons,
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

/// The report.md section for the context subset.
pub fn markdown(subset: &SubsetReport) -> String {
    let mut md = String::from("\n## Turns whose meaning needs context\n\n");
    if !subset.available {
        md += &format!("The subset is {}.\n", subset.definition);
        return md;
    }
    let reasons: Vec<String> = subset
        .reasons
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    md += &format!(
        "Every system judged again on the {}. {} marked turns in {} dialogues ({}).\n\n",
        subset.definition,
        subset.marked_turns,
        subset.dialogues,
        reasons.join(", ")
    );
    let tasks: Vec<(Task, &SubsetTask)> = CONTEXT_TASKS
        .iter()
        .zip([&subset.intent, &subset.slots])
        .filter_map(|(task, t)| t.as_ref().map(|t| (*task, t)))
        .collect();
    md += "| task | items with gold | without gold (excluded) |\n| --- | ---: | ---: |\n";
    for (task, t) in &tasks {
        md += &format!("| {} | {} | {} |\n", task.name(), t.items, t.without_gold);
    }
    let Some((_, first)) = tasks.first() else {
        return md;
    };
    md += "\n| task | metric |";
    for s in &first.systems {
        md += &format!(" {} |", s.name);
    }
    md += "\n| --- | --- |";
    for _ in &first.systems {
        md += " --- |";
    }
    md += "\n";
    for (task, t) in &tasks {
        for (metric, _) in task_metrics(*task) {
            md += &format!("| {} | {} |", task.name(), metric);
            for s in &t.systems {
                let cell = s
                    .result
                    .metrics
                    .get(metric)
                    .map(fmt_estimate)
                    .unwrap_or_default();
                md += &format!(" {cell} |");
            }
            md += "\n";
        }
    }
    let comparisons: Vec<(Task, &PairedComparison)> = tasks
        .iter()
        .flat_map(|(task, t)| t.comparisons.iter().map(move |c| (*task, c)))
        .collect();
    if !comparisons.is_empty() {
        md += "\nPaired bootstrap on these turns (difference: system minus the other):\n\n\
               | system | against | task | metric | difference | p-value |\n\
               | --- | --- | --- | --- | ---: | ---: |\n";
        for (task, c) in comparisons {
            md += &format!(
                "| {} | {} | {} | {} | {:+.3} | {} |\n",
                c.system,
                c.against,
                task.name(),
                c.metric,
                c.delta,
                fmt(c.p_value)
            );
        }
    }
    md
}
