//! What was measured per system and task: point estimates with bootstrap
//! intervals, per-class figures and paired comparisons, assembled from
//! judgements. Rendering lives in `render`; the whole report in `report`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::judge::{FAILURE, Judgement, Task};
use crate::metrics::{Counts, Prf, bootstrap_cis, paired_bootstrap};

/// A metric with its 95% bootstrap interval (dialogues resampled).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci95: [f64; 2],
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: String,
    pub metric: &'static str,
    /// This system minus the baseline.
    pub delta: f64,
    /// Paired bootstrap, two-sided: how often the lead's sign flips.
    pub p_value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    /// Gold items judged (turns, goals or dialogues, see `unit`).
    pub items: u64,
    pub unit: &'static str,
    /// Gold items this system gave no label for (counted as wrong).
    pub missing: usize,
    pub headline: &'static str,
    pub metrics: BTreeMap<&'static str, Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_class: Option<BTreeMap<String, Prf>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    pub name: String,
    /// prediction | annotator | runtime | human_leave_one_out
    pub kind: &'static str,
    /// The tasks the system is judged on (the runtime baseline has no
    /// slots, for one): a task left out is n/a, not zero.
    pub tasks: BTreeMap<Task, TaskResult>,
}

/// System kinds: a labels table, an annotator judged like one, the
/// runtime's own hypotheses in the logs (also its name), and the mean of
/// the gold annotators judged against each other (also its name).
pub const PREDICTION: &str = "prediction";
pub const ANNOTATOR: &str = "annotator";
pub const RUNTIME: &str = "runtime";
pub const HUMAN_LEAVE_ONE_OUT: &str = "human_leave_one_out";

pub type Stat = fn(&Counts) -> f64;

/// The metrics reported per task; the first is the headline.
pub fn task_metrics(task: Task) -> &'static [(&'static str, Stat)] {
    match task {
        Task::GoalSegmentation => &[
            ("boundary_f1", |c| c.prf().f1),
            ("boundary_precision", |c| c.prf().precision),
            ("boundary_recall", |c| c.prf().recall),
            ("pk", |c| c.pk().unwrap_or(f64::NAN)),
            ("window_diff", |c| c.window_diff().unwrap_or(f64::NAN)),
            ("boundary_decision_accuracy", |c| c.accuracy()),
        ],
        Task::GoalSuccess => &[
            ("accuracy", |c| c.accuracy()),
            ("failure_f1", |c| c.class_prf(FAILURE).f1),
        ],
        Task::Intent | Task::FailurePoint => &[
            ("accuracy", |c| c.accuracy()),
            ("macro_f1", |c| c.macro_f1()),
        ],
        Task::Slots => &[
            ("f1", |c| c.prf().f1),
            ("precision", |c| c.prf().precision),
            ("recall", |c| c.prf().recall),
            ("exact_turn_accuracy", |c| c.accuracy()),
        ],
    }
}

pub fn total(per_dialogue: &[Counts]) -> Counts {
    let mut sum = Counts::default();
    for c in per_dialogue {
        sum.add(c);
    }
    sum
}

/// Items of a task, from its counts.
pub fn items(task: Task, counts: &Counts, per_dialogue: &[Counts]) -> u64 {
    match task {
        Task::GoalSegmentation => per_dialogue
            .iter()
            .filter(|c| c.total > 0 || c.windows > 0)
            .count() as u64,
        _ => counts.total,
    }
}

/// How intervals and paired tests are drawn; no resamples, no intervals.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
}

/// The given tasks of one system, with bootstrap intervals; `class_names`
/// names the failure classes for per-class figures.
pub fn system_result(
    name: &str,
    kind: &'static str,
    judgement: &Judgement,
    baseline: Option<(&str, &Judgement)>,
    class_names: &[String],
    bootstrap: Bootstrap,
    tasks_judged: &[Task],
) -> SystemResult {
    let tasks = tasks_judged
        .iter()
        .map(|&task| {
            let result = task_result(task, judgement, baseline, class_names, bootstrap);
            (task, result)
        })
        .collect();
    SystemResult {
        name: name.to_string(),
        kind,
        tasks,
    }
}

fn task_result(
    task: Task,
    judgement: &Judgement,
    baseline: Option<(&str, &Judgement)>,
    class_names: &[String],
    bootstrap: Bootstrap,
) -> TaskResult {
    let per_dialogue = &judgement.per_dialogue[&task];
    let counts = total(per_dialogue);
    let metrics = task_metrics(task);
    let per_class = (task == Task::FailurePoint).then(|| {
        class_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), counts.class_prf(i)))
            .collect()
    });
    let vs_baseline = baseline
        .filter(|_| bootstrap.resamples > 0)
        .map(|(baseline_name, b)| {
            let (metric, stat) = metrics[0];
            let (delta, p_value) = paired_bootstrap(
                per_dialogue,
                &b.per_dialogue[&task],
                stat,
                bootstrap.resamples,
                bootstrap.seed,
            );
            Comparison {
                baseline: baseline_name.to_string(),
                metric,
                delta,
                p_value,
            }
        });
    TaskResult {
        items: items(task, &counts, per_dialogue),
        unit: task.unit(),
        missing: judgement.missing_items.get(&task).copied().unwrap_or(0),
        headline: metrics[0].0,
        metrics: estimates(metrics, &counts, per_dialogue, bootstrap),
        per_class,
        vs_baseline,
    }
}

/// Each metric on the summed counts, with its interval when resampled.
fn estimates(
    metrics: &[(&'static str, Stat)],
    counts: &Counts,
    per_dialogue: &[Counts],
    bootstrap: Bootstrap,
) -> BTreeMap<&'static str, Estimate> {
    let stats: Vec<&(dyn Fn(&Counts) -> f64 + Sync)> = metrics
        .iter()
        .map(|(_, f)| f as &(dyn Fn(&Counts) -> f64 + Sync))
        .collect();
    let intervals = if bootstrap.resamples > 0 {
        bootstrap_cis(
            per_dialogue,
            &stats,
            bootstrap.resamples,
            0.95,
            bootstrap.seed,
        )
    } else {
        vec![(f64::NAN, f64::NAN); metrics.len()]
    };
    metrics
        .iter()
        .zip(intervals)
        .map(|((metric, f), (lo, hi))| {
            (
                *metric,
                Estimate {
                    value: f(counts),
                    ci95: [lo, hi],
                },
            )
        })
        .collect()
}

/// The average of the leave-one-out results (no intervals: each annotator
/// is judged on its own gold items). `None` when there is nothing to average.
pub fn mean_result(results: &[&SystemResult]) -> Option<SystemResult> {
    let mut mean = (*results.first()?).clone();
    mean.name = HUMAN_LEAVE_ONE_OUT.into();
    mean.kind = HUMAN_LEAVE_ONE_OUT;
    for (task, result) in mean.tasks.iter_mut() {
        // Per class (failure points): each rater's precision, recall and F1
        // averaged as the metrics are, so "defect F1" has a human figure.
        if let Some(per_class) = result.per_class.as_mut() {
            for (class, prf) in per_class.iter_mut() {
                let of = |r: &&SystemResult| r.tasks[task].per_class.as_ref()?.get(class).cloned();
                let all: Vec<Prf> = results.iter().filter_map(of).collect();
                let raters = all.len().max(1);
                let mean_of = |f: fn(&Prf) -> f64| all.iter().map(f).sum::<f64>() / raters as f64;
                let count_of = |f: fn(&Prf) -> u64| all.iter().map(f).sum::<u64>() / raters as u64;
                *prf = Prf {
                    precision: mean_of(|p| p.precision),
                    recall: mean_of(|p| p.recall),
                    f1: mean_of(|p| p.f1),
                    tp: count_of(|p| p.tp),
                    fp: count_of(|p| p.fp),
                    fn_: count_of(|p| p.fn_),
                };
            }
        }
        result.items =
            results.iter().map(|r| r.tasks[task].items).sum::<u64>() / results.len() as u64;
        for (metric, estimate) in result.metrics.iter_mut() {
            estimate.value = results
                .iter()
                .map(|r| r.tasks[task].metrics[metric].value)
                .sum::<f64>()
                / results.len() as f64;
            estimate.ci95 = [f64::NAN, f64::NAN];
        }
    }
    Some(mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(correct: u64, total: u64) -> Judgement {
        let mut judgement = Judgement::default();
        let counts = Counts {
            correct,
            total,
            ..Counts::default()
        };
        judgement.per_dialogue.insert(Task::Intent, vec![counts]);
        judgement
    }

    fn no_intervals() -> Bootstrap {
        Bootstrap {
            resamples: 0,
            seed: 0,
        }
    }

    #[test]
    fn without_resamples_there_are_no_intervals_and_no_comparison() {
        let own = judged(3, 4);
        let baseline = judged(1, 4);
        let result = system_result(
            "model",
            PREDICTION,
            &own,
            Some(("single", &baseline)),
            &[],
            no_intervals(),
            &[Task::Intent],
        );
        let intent = &result.tasks[&Task::Intent];
        assert_eq!(intent.headline, "accuracy");
        assert_eq!(intent.metrics["accuracy"].value, 0.75);
        assert!(intent.metrics["accuracy"].ci95[0].is_nan());
        assert!(intent.vs_baseline.is_none());
        assert!(
            intent.per_class.is_none(),
            "per class is for failure points"
        );
        assert_eq!(intent.items, 4);
    }

    #[test]
    fn the_human_row_averages_the_left_out_annotators() {
        let result = |correct| {
            system_result(
                "a",
                ANNOTATOR,
                &judged(correct, 4),
                None,
                &[],
                no_intervals(),
                &[Task::Intent],
            )
        };
        let (a, b) = (result(4), result(2));
        let mean = mean_result(&[&a, &b]).expect("two results");
        assert_eq!(
            (mean.name.as_str(), mean.kind),
            (HUMAN_LEAVE_ONE_OUT, HUMAN_LEAVE_ONE_OUT)
        );
        let intent = &mean.tasks[&Task::Intent];
        assert_eq!(intent.metrics["accuracy"].value, 0.75);
        assert!(intent.metrics["accuracy"].ci95[1].is_nan());
        assert!(mean_result(&[]).is_none());
    }

    #[test]
    fn the_human_row_averages_per_class_f1_too() {
        // Class 1 ("defect"): rater a finds 1 of 2 with no false alarm (F1
        // 2/3), rater b finds both with 2 false alarms (F1 2/3 too).
        let result = |per_class: Vec<[u64; 3]>| {
            let mut judgement = Judgement::default();
            let counts = Counts {
                per_class,
                ..Counts::default()
            };
            judgement
                .per_dialogue
                .insert(Task::FailurePoint, vec![counts]);
            let names = ["correct".to_string(), "defect".to_string()];
            system_result(
                "a",
                ANNOTATOR,
                &judgement,
                None,
                &names,
                no_intervals(),
                &[Task::FailurePoint],
            )
        };
        let (a, b) = (
            result(vec![[5, 1, 0], [1, 0, 1]]),
            result(vec![[4, 0, 2], [2, 2, 0]]),
        );
        let mean = mean_result(&[&a, &b]).expect("two results");
        let defect = &mean.tasks[&Task::FailurePoint]
            .per_class
            .as_ref()
            .expect("per class")["defect"];
        assert!((defect.f1 - 2.0 / 3.0).abs() < 1e-9, "{defect:?}");
        assert!((defect.recall - 0.75).abs() < 1e-9, "{defect:?}");
        assert!((defect.precision - 0.75).abs() < 1e-9, "{defect:?}");
    }
}
