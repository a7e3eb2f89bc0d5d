//! The evaluation report: what was measured, as JSON for machines and
//! Markdown for people.

use std::collections::BTreeMap;

use serde::Serialize;

use super::gold::GoldPolicy;
use super::judge::{FAILURE, Judgement, Task};
use super::metrics::{Counts, Prf, SweepPoint, bootstrap_cis, paired_bootstrap};
use super::subset::{self, SubsetReport};

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
    /// prediction | annotator | human_leave_one_out
    pub kind: &'static str,
    pub tasks: BTreeMap<Task, TaskResult>,
}

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
    pub review_items: usize,
    pub settings: Settings,
}

type Stat = fn(&Counts) -> f64;

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

/// The given tasks of one system, with bootstrap intervals; `class_names`
/// names the failure classes for per-class figures.
#[allow(clippy::too_many_arguments)]
pub fn system_result(
    name: &str,
    kind: &'static str,
    judgement: &Judgement,
    baseline: Option<(&str, &Judgement)>,
    class_names: &[String],
    resamples: usize,
    seed: u64,
    tasks_judged: &[Task],
) -> SystemResult {
    let mut tasks = BTreeMap::new();
    for &task in tasks_judged {
        let per_dialogue = &judgement.per_dialogue[&task];
        let counts = total(per_dialogue);
        let metrics = task_metrics(task);
        let stats: Vec<&(dyn Fn(&Counts) -> f64 + Sync)> = metrics
            .iter()
            .map(|(_, f)| f as &(dyn Fn(&Counts) -> f64 + Sync))
            .collect();
        let intervals = if resamples > 0 {
            bootstrap_cis(per_dialogue, &stats, resamples, 0.95, seed)
        } else {
            vec![(f64::NAN, f64::NAN); metrics.len()]
        };
        let estimates = metrics
            .iter()
            .zip(intervals)
            .map(|((metric, f), (lo, hi))| {
                (
                    *metric,
                    Estimate {
                        value: f(&counts),
                        ci95: [lo, hi],
                    },
                )
            })
            .collect();
        let per_class = (task == Task::FailurePoint).then(|| {
            class_names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), counts.class_prf(i)))
                .collect()
        });
        let vs_baseline = baseline
            .filter(|_| resamples > 0)
            .map(|(baseline_name, b)| {
                let (metric, stat) = metrics[0];
                let (delta, p_value) =
                    paired_bootstrap(per_dialogue, &b.per_dialogue[&task], stat, resamples, seed);
                Comparison {
                    baseline: baseline_name.to_string(),
                    metric,
                    delta,
                    p_value,
                }
            });
        tasks.insert(
            task,
            TaskResult {
                items: items(task, &counts, per_dialogue),
                unit: task.unit(),
                missing: judgement.missing_items.get(&task).copied().unwrap_or(0),
                headline: metrics[0].0,
                metrics: estimates,
                per_class,
                vs_baseline,
            },
        );
    }
    SystemResult {
        name: name.to_string(),
        kind,
        tasks,
    }
}

pub(super) fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.3}")
    }
}

pub(super) fn fmt_estimate(e: &Estimate) -> String {
    if e.ci95[0].is_nan() {
        fmt(e.value)
    } else {
        format!("{} [{}, {}]", fmt(e.value), fmt(e.ci95[0]), fmt(e.ci95[1]))
    }
}

/// The report for people.
pub fn markdown(report: &EvalReport) -> String {
    let mut md = String::new();
    let gold = &report.gold;
    md += "# labelgen evaluation\n\n";
    md += &format!(
        "Gold: **{}** agreement of annotators {} over {} dialogues. Every system is judged on the same gold items; \
         figures are point estimates with 95% bootstrap intervals (dialogues resampled, {} resamples). \
         Human leave-one-out judges each gold annotator against the gold of the other two (on the items those two agree on).\n\n",
        match gold.policy {
            GoldPolicy::Unanimous => "unanimous",
            GoldPolicy::Majority => "majority",
        },
        gold.annotators.join(", "),
        gold.dialogues,
        report.settings.bootstrap_resamples
    );
    md += "| task | unit | items with gold | without gold (excluded) |\n| --- | --- | ---: | ---: |\n";
    for (task, c) in &gold.items {
        md += &format!(
            "| {} | {} | {} | {} |\n",
            task.name(),
            c.unit,
            c.with_gold,
            c.without_gold
        );
    }
    md += "\n## Headline metrics\n\n| task | metric |";
    for s in &report.systems {
        md += &format!(" {} |", s.name);
    }
    md += "\n| --- | --- |";
    for _ in &report.systems {
        md += " --- |";
    }
    md += "\n";
    for task in Task::ALL {
        for (metric, _) in task_metrics(task) {
            md += &format!("| {} | {} |", task.name(), metric);
            for s in &report.systems {
                let cell = s
                    .tasks
                    .get(&task)
                    .and_then(|t| t.metrics.get(metric))
                    .map(fmt_estimate)
                    .unwrap_or_default();
                md += &format!(" {cell} |");
            }
            md += "\n";
        }
    }
    let comparisons: Vec<String> = report
        .systems
        .iter()
        .flat_map(|s| {
            s.tasks.iter().filter_map(move |(task, t)| {
                t.vs_baseline.as_ref().map(|c| {
                    format!(
                        "| {} | {} | {} | {:+.3} | {} |\n",
                        s.name,
                        task.name(),
                        c.metric,
                        c.delta,
                        fmt(c.p_value)
                    )
                })
            })
        })
        .collect();
    if !comparisons.is_empty() {
        let baseline = report
            .systems
            .iter()
            .flat_map(|s| s.tasks.values())
            .find_map(|t| t.vs_baseline.as_ref())
            .map(|c| c.baseline.clone())
            .unwrap_or_default();
        md += &format!(
            "\n## Against the {baseline} annotator (paired bootstrap)\n\n| system | task | metric | difference | p-value |\n| --- | --- | --- | ---: | ---: |\n"
        );
        for row in comparisons {
            md += &row;
        }
    }
    if let Some(context) = report.subsets.get(subset::CONTEXT_SUBSET) {
        md += &subset::markdown(context);
    }
    md += "\n## Failure point\n\n";
    for (system, ratio) in &report.failure_point_vs_human {
        md += &format!(
            "- {system}: accuracy is **{:.1}%** of human leave-one-out accuracy.\n",
            ratio * 100.0
        );
    }
    md += "\nPer class (P / R / F1):\n\n| class |";
    let with_classes: Vec<&SystemResult> = report
        .systems
        .iter()
        .filter(|s| {
            s.tasks
                .get(&Task::FailurePoint)
                .is_some_and(|t| t.per_class.is_some())
        })
        .collect();
    for s in &with_classes {
        md += &format!(" {} |", s.name);
    }
    md += "\n| --- |";
    for _ in &with_classes {
        md += " --- |";
    }
    md += "\n";
    for class in &report.confusion_labels {
        md += &format!("| {class} |");
        for s in &with_classes {
            let prf = s.tasks[&Task::FailurePoint]
                .per_class
                .as_ref()
                .and_then(|p| p.get(class));
            let cell = prf
                .map(|p| format!("{:.2} / {:.2} / {:.2}", p.precision, p.recall, p.f1))
                .unwrap_or_default();
            md += &format!(" {cell} |");
        }
        md += "\n";
    }
    for (system, matrix) in &report.confusion {
        md += &format!(
            "\nConfusion matrix, {system} (rows gold, columns predicted; see plots/confusion_{system}.svg):\n\n| gold \\ predicted |"
        );
        for label in &report.confusion_labels {
            md += &format!(" {label} |");
        }
        md += " withheld |\n| --- |";
        for _ in 0..=report.confusion_labels.len() {
            md += " ---: |";
        }
        md += "\n";
        for (label, row) in report.confusion_labels.iter().zip(matrix) {
            md += &format!("| {label} |");
            for v in row {
                md += &format!(" {v} |");
            }
            md += "\n";
        }
    }
    if !report.threshold_sweeps.is_empty() {
        md += "\n## Confidence thresholds\n\nPrecision (accuracy on the items labelled) against coverage as the confidence threshold rises; \
               the lowest threshold at which the system beats the baseline annotator, and the annotator-hours its covered turns would have cost \
               (plots/sweep_*.svg).\n\n| system | task | baseline precision | beats it at threshold | coverage there | precision there | annotator-hours saved |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n";
        for (system, sweeps) in &report.threshold_sweeps {
            for (task, sweep) in sweeps {
                match &sweep.beats_baseline_at {
                    Some(p) => {
                        md += &format!(
                            "| {system} | {} | {} | {:.2} | {:.1}% | {} | {} |\n",
                            task.name(),
                            fmt(sweep.baseline_precision),
                            p.threshold,
                            p.coverage * 100.0,
                            fmt(p.precision),
                            sweep
                                .annotator_hours_saved
                                .map(|h| format!("{h:.1}"))
                                .unwrap_or_default()
                        )
                    }
                    None => {
                        md += &format!(
                            "| {system} | {} | {} | never | | | |\n",
                            task.name(),
                            fmt(sweep.baseline_precision)
                        )
                    }
                }
            }
        }
        md += &format!(
            "\n(A human annotator labels {} turns per hour: `--annotator-turns-per-hour`.)\n",
            report.settings.annotator_turns_per_hour
        );
    }
    md += "\n## Annotators\n\nAgainst the gold of the others (headline metric per task), and agreement with each other system (share of turns with the same label):\n\n| annotator | task | vs gold of others | agreement |\n| --- | --- | ---: | --- |\n";
    for (annotator, q) in &report.annotators {
        for (task, v) in &q.vs_gold_of_others {
            let agreement: Vec<String> = q
                .agreement_with
                .iter()
                .filter_map(|(other, by_task)| {
                    by_task.get(task).map(|a| format!("{other} {}", fmt(*a)))
                })
                .collect();
            md += &format!(
                "| {annotator} | {} | {} | {} |\n",
                task.name(),
                fmt(*v),
                agreement.join(", ")
            );
        }
    }
    md += &format!(
        "\n{} items for re-annotation are listed in review.parquet and review_label_studio.json.\n",
        report.review_items
    );
    md += "\n## Inputs\n\n";
    for (name, check) in &report.inputs {
        md += &format!(
            "- {name}: {} dialogues; {} gold dialogues missing from it{}; {} dialogues not in the gold{}.\n",
            check.dialogues,
            check.missing_dialogues,
            if check.examples_missing.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", check.examples_missing.join(", "))
            },
            check.extra_dialogues,
            if check.examples_extra.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", check.examples_extra.join(", "))
            },
        );
        for (task, labels) in &check.unknown_labels {
            let list: Vec<String> = labels.iter().map(|(l, n)| format!("{l} ({n})")).collect();
            md += &format!(
                "  - {task} labels the gold never uses: {}\n",
                list.join(", ")
            );
        }
    }
    md
}
