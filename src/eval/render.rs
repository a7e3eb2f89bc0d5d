//! report.md: the evaluation report for people, section by section, from
//! the report's data (nothing here measures anything).

use super::gold::GoldPolicy;
use super::judge::Task;
use super::report::{AnnotatorQuality, EvalReport, InputCheck, SweepReport};
use super::results::{Estimate, RUNTIME, SystemResult, task_metrics};
use super::subset::{CONTEXT_SUBSET, CONTEXT_TASKS, PairedComparison, SubsetReport, SubsetTask};

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
    let mut md = gold_section(report);
    md += &headline_section(&report.systems);
    md += &baseline_section(&report.systems);
    if let Some(context) = report.subsets.get(CONTEXT_SUBSET) {
        md += &context_section(context);
    }
    md += &failure_point_section(report);
    if !report.threshold_sweeps.is_empty() {
        md += &thresholds_section(report);
    }
    md += &annotators_section(report);
    md += &format!(
        "\n{} items for re-annotation are listed in review.parquet and review_label_studio.json.\n",
        report.review_items
    );
    md += &inputs_section(report);
    md
}

/// A table's header row and its rule: `first` names the leading columns
/// (`| task | metric |`), `rule` rules them, one column per system follows.
fn header<'a>(first: &str, rule: &str, systems: impl Iterator<Item = &'a str> + Clone) -> String {
    let mut md = first.to_string();
    for name in systems.clone() {
        md += &format!(" {name} |");
    }
    md += "\n";
    md += rule;
    for _ in systems {
        md += " --- |";
    }
    md += "\n";
    md
}

/// `| task | metric | cell | ... |`
fn metric_row(task: Task, metric: &str, cells: impl Iterator<Item = String>) -> String {
    let mut md = format!("| {} | {} |", task.name(), metric);
    for cell in cells {
        md += &format!(" {cell} |");
    }
    md + "\n"
}

fn gold_section(report: &EvalReport) -> String {
    let gold = &report.gold;
    let mut md = String::from("# labelgen evaluation\n\n");
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
    md
}

/// A cell for a task the system is not judged on.
const NOT_JUDGED: &str = "n/a";

fn headline_section(systems: &[SystemResult]) -> String {
    let names = systems.iter().map(|s| s.name.as_str());
    let mut md = String::from("\n## Headline metrics\n\n");
    if systems.iter().any(|s| s.kind == RUNTIME) {
        md += RUNTIME_NOTE;
    }
    md += &header("| task | metric |", "| --- | --- |", names);
    for task in Task::ALL {
        for (metric, _) in task_metrics(task) {
            let cells = systems.iter().map(|s| {
                s.tasks
                    .get(&task)
                    .and_then(|t| t.metrics.get(metric))
                    .map_or_else(|| NOT_JUDGED.to_string(), fmt_estimate)
            });
            md += &metric_row(task, metric, cells);
        }
    }
    md
}

/// What the runtime column is, for readers of the report.
const RUNTIME_NOTE: &str = "`runtime` copies the assistant runtime's own hypotheses from the logs: \
    `nlu_intent` as the intent, `correct` as every failure point (the runtime logs no failing stage), \
    goals closed by any `dialogue_status` but `prompted` and successful when `completed`; \
    n/a where the logs hold no such hypothesis (slots, always).\n\n";

/// Each prediction against the baseline annotator; empty without one.
fn baseline_section(systems: &[SystemResult]) -> String {
    let comparisons: Vec<String> = systems
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
    let Some(baseline) = systems
        .iter()
        .flat_map(|s| s.tasks.values())
        .find_map(|t| t.vs_baseline.as_ref())
        .map(|c| c.baseline.clone())
    else {
        return String::new();
    };
    let mut md = format!(
        "\n## Against the {baseline} annotator (paired bootstrap)\n\n| system | task | metric | difference | p-value |\n| --- | --- | --- | ---: | ---: |\n"
    );
    md.extend(comparisons);
    md
}

/// The section for the context subset.
fn context_section(subset: &SubsetReport) -> String {
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
    // Every system judged on any of the tasks, in report order; a system
    // not judged on a task (the runtime has no slots) gets n/a there.
    let mut names: Vec<&str> = Vec::new();
    for (_, t) in &tasks {
        for s in &t.systems {
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
    }
    if names.is_empty() {
        return md;
    }
    md += "\n";
    md += &header("| task | metric |", "| --- | --- |", names.iter().copied());
    for (task, t) in &tasks {
        for (metric, _) in task_metrics(*task) {
            let cells = names.iter().map(|name| {
                t.systems
                    .iter()
                    .find(|s| s.name == *name)
                    .and_then(|s| s.result.metrics.get(metric))
                    .map_or_else(|| NOT_JUDGED.to_string(), fmt_estimate)
            });
            md += &metric_row(*task, metric, cells);
        }
    }
    md + &context_comparisons(&tasks)
}

/// The subset's paired tests; empty without resamples.
fn context_comparisons(tasks: &[(Task, &SubsetTask)]) -> String {
    let comparisons: Vec<(Task, &PairedComparison)> = tasks
        .iter()
        .flat_map(|(task, t)| t.comparisons.iter().map(move |c| (*task, c)))
        .collect();
    if comparisons.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\nPaired bootstrap on these turns (difference: system minus the other):\n\n\
         | system | against | task | metric | difference | p-value |\n\
         | --- | --- | --- | --- | ---: | ---: |\n",
    );
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
    md
}

/// Failure point against humans, per class, and the confusion matrices.
fn failure_point_section(report: &EvalReport) -> String {
    let mut md = String::from("\n## Failure point\n\n");
    for (system, ratio) in &report.failure_point_vs_human {
        md += &format!(
            "- {system}: accuracy is **{:.1}%** of human leave-one-out accuracy.\n",
            ratio * 100.0
        );
    }
    md += &per_class_table(report);
    for (system, matrix) in &report.confusion {
        md += &confusion_table(system, &report.confusion_labels, matrix);
    }
    md
}

fn per_class_table(report: &EvalReport) -> String {
    let with_classes: Vec<&SystemResult> = report
        .systems
        .iter()
        .filter(|s| {
            s.tasks
                .get(&Task::FailurePoint)
                .is_some_and(|t| t.per_class.is_some())
        })
        .collect();
    let names = with_classes.iter().map(|s| s.name.as_str());
    let mut md = String::from("\nPer class (P / R / F1):\n\n");
    md += &header("| class |", "| --- |", names);
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
    md
}

fn confusion_table(system: &str, labels: &[String], matrix: &[Vec<u64>]) -> String {
    let mut md = format!(
        "\nConfusion matrix, {system} (rows gold, columns predicted; see plots/confusion_{system}.svg):\n\n| gold \\ predicted |"
    );
    for label in labels {
        md += &format!(" {label} |");
    }
    md += " withheld |\n| --- |";
    for _ in 0..=labels.len() {
        md += " ---: |";
    }
    md += "\n";
    for (label, row) in labels.iter().zip(matrix) {
        md += &format!("| {label} |");
        for v in row {
            md += &format!(" {v} |");
        }
        md += "\n";
    }
    md
}

fn thresholds_section(report: &EvalReport) -> String {
    let mut md = String::from(
        "\n## Confidence thresholds\n\nPrecision (accuracy on the items labelled) against coverage as the confidence threshold rises; \
         the lowest threshold at which the system beats the baseline annotator, and the annotator-hours its covered turns would have cost \
         (plots/sweep_*.svg).\n\n| system | task | baseline precision | beats it at threshold | coverage there | precision there | annotator-hours saved |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (system, sweeps) in &report.threshold_sweeps {
        for (task, sweep) in sweeps {
            md += &sweep_row(system, *task, sweep);
        }
    }
    md += &format!(
        "\n(A human annotator labels {} turns per hour: `--annotator-turns-per-hour`.)\n",
        report.settings.annotator_turns_per_hour
    );
    md
}

fn sweep_row(system: &str, task: Task, sweep: &SweepReport) -> String {
    match &sweep.beats_baseline_at {
        Some(p) => format!(
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
        ),
        None => format!(
            "| {system} | {} | {} | never | | | |\n",
            task.name(),
            fmt(sweep.baseline_precision)
        ),
    }
}

fn annotators_section(report: &EvalReport) -> String {
    let mut md = String::from(
        "\n## Annotators\n\nAgainst the gold of the others (headline metric per task), and agreement with each other system (share of turns with the same label):\n\n| annotator | task | vs gold of others | agreement |\n| --- | --- | ---: | --- |\n",
    );
    for (annotator, quality) in &report.annotators {
        md += &annotator_rows(annotator, quality);
    }
    md
}

fn annotator_rows(annotator: &str, quality: &AnnotatorQuality) -> String {
    let mut md = String::new();
    for (task, v) in &quality.vs_gold_of_others {
        let agreement: Vec<String> = quality
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
    md
}

fn inputs_section(report: &EvalReport) -> String {
    let mut md = String::from("\n## Inputs\n\n");
    for (name, check) in &report.inputs {
        md += &input_lines(name, check);
    }
    md
}

fn input_lines(name: &str, check: &InputCheck) -> String {
    let examples = |list: &[String]| {
        if list.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", list.join(", "))
        }
    };
    let mut md = format!(
        "- {name}: {} dialogues; {} gold dialogues missing from it{}; {} dialogues not in the gold{}.\n",
        check.dialogues,
        check.missing_dialogues,
        examples(&check.examples_missing),
        check.extra_dialogues,
        examples(&check.examples_extra),
    );
    for (task, labels) in &check.unknown_labels {
        let list: Vec<String> = labels.iter().map(|(l, n)| format!("{l} ({n})")).collect();
        md += &format!(
            "  - {task} labels the gold never uses: {}\n",
            list.join(", ")
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_show_their_interval_when_there_is_one() {
        assert_eq!(fmt(f64::NAN), "n/a");
        let point = Estimate {
            value: 0.5,
            ci95: [f64::NAN, f64::NAN],
        };
        assert_eq!(fmt_estimate(&point), "0.500");
        let interval = Estimate {
            value: 0.5,
            ci95: [0.25, 0.75],
        };
        assert_eq!(fmt_estimate(&interval), "0.500 [0.250, 0.750]");
    }

    #[test]
    fn a_header_has_one_column_per_system() {
        let names = ["model", "single"];
        assert_eq!(
            header("| task | metric |", "| --- | --- |", names.into_iter()),
            "| task | metric | model | single |\n| --- | --- | --- | --- |\n"
        );
    }

    #[test]
    fn an_unavailable_subset_says_why_and_nothing_else() {
        let subset = SubsetReport {
            available: false,
            definition: "unavailable: no marks".into(),
            marked_by: "truth".into(),
            dialogues: 0,
            marked_turns: 0,
            reasons: Default::default(),
            intent: None,
            slots: None,
        };
        assert_eq!(
            context_section(&subset),
            "\n## Turns whose meaning needs context\n\nThe subset is unavailable: no marks.\n"
        );
    }
}
