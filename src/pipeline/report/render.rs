//! The report's pages: report.md (plots as PNG files beside it),
//! report.html (one self-contained file: styles and plots inline as SVG, no
//! external resources, like Evidently's drift reports) and report.json.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::{Coverage, HTML, JSON, MARKDOWN, NightlyReport, TaskDrift};
use crate::data::dataset::write_file_atomic;
use crate::plot;

/// Categories drawn per task; the rest are pooled as "(other)".
const MAX_CATEGORIES: usize = 24;

/// One plot: its file name and SVG text.
struct Figure {
    file: String,
    caption: String,
    svg: String,
}

/// Writes every page and plot of `report` into `out`.
pub fn write(report: &NightlyReport, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let figures = figures(report);
    for figure in figures.values().flatten() {
        write_file_atomic(&out.join(&figure.file), &plot::png(&figure.svg)?)?;
    }
    write_file_atomic(&out.join(MARKDOWN), markdown(report, &figures).as_bytes())?;
    write_file_atomic(&out.join(HTML), html(report, &figures).as_bytes())?;
    write_file_atomic(
        &out.join(JSON),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    Ok(())
}

/// The plots by section: `drift:TASK`, `confidence:TASK`, `eval`.
fn figures(report: &NightlyReport) -> BTreeMap<String, Vec<Figure>> {
    let mut figures: BTreeMap<String, Vec<Figure>> = BTreeMap::new();
    let today = report.today.clone().unwrap_or_default();
    for (task, drift) in &report.drift {
        let (categories, series) = share_series(drift, &today, report.trailing_days);
        let series: Vec<(&str, Vec<f64>)> = series
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone()))
            .collect();
        let title = match drift.drift.distance {
            Some(d) => format!("{task}: JS distance {d:.3}"),
            None => format!("{task}: labels of {today}"),
        };
        figures
            .entry(format!("drift:{task}"))
            .or_default()
            .push(Figure {
                file: format!("drift_{task}.png"),
                caption: format!("{task}: share of each label, today against the trailing days"),
                svg: plot::share_bars_svg(&title, &categories, &series),
            });
    }
    for (task, coverage) in &report.coverage {
        let note = format!(
            "min_confidence {:.2}: coverage {}",
            coverage.threshold,
            percent(coverage.coverage)
        );
        let threshold = (coverage.threshold > 0.0).then_some((coverage.threshold, note.as_str()));
        figures
            .entry(format!("confidence:{task}"))
            .or_default()
            .push(Figure {
                file: format!("confidence_{task}.png"),
                caption: format!("{task}: confidence of the emitted labels"),
                svg: plot::histogram_svg(&format!("{task} confidence"), &coverage.bins, threshold),
            });
    }
    if !report.eval_history.is_empty() {
        let runs: Vec<String> = report.eval_history.iter().map(|e| e.date.clone()).collect();
        let tasks: std::collections::BTreeSet<&String> = report
            .eval_history
            .iter()
            .flat_map(|e| e.tasks.keys())
            .collect();
        let series: Vec<(String, Vec<Option<f64>>)> = tasks
            .into_iter()
            .map(|task| {
                let values = report
                    .eval_history
                    .iter()
                    .map(|e| e.tasks.get(task).and_then(|h| h.value))
                    .collect();
                (task.clone(), values)
            })
            .collect();
        let series: Vec<(&str, Vec<Option<f64>>)> = series
            .iter()
            .map(|(t, v)| (t.as_str(), v.clone()))
            .collect();
        figures.entry("eval".into()).or_default().push(Figure {
            file: "eval_history.png".into(),
            caption: "the champion's headline metric per task on held-out gold, per eval run"
                .into(),
            svg: plot::timeline_svg("Eval results over time", &runs, &series),
        });
    }
    figures
}

/// The categories of a task (by today's count, the most frequent first,
/// then the trailing days'), and each series' shares of them.
fn share_series(
    drift: &TaskDrift,
    today: &str,
    trailing_days: u32,
) -> (Vec<String>, Vec<(String, Vec<f64>)>) {
    let mut categories: Vec<&String> = drift.today.keys().chain(drift.trailing.keys()).collect();
    categories.sort();
    categories.dedup();
    let count = |m: &BTreeMap<String, u64>, c: &str| m.get(c).copied().unwrap_or(0);
    categories.sort_by(|a, b| {
        count(&drift.today, b)
            .cmp(&count(&drift.today, a))
            .then_with(|| count(&drift.trailing, b).cmp(&count(&drift.trailing, a)))
            .then_with(|| a.cmp(b))
    });
    let shown: Vec<String> = categories
        .iter()
        .take(MAX_CATEGORIES)
        .map(|c| (*c).clone())
        .collect();
    let rest = &categories[shown.len()..];
    let shares = |m: &BTreeMap<String, u64>| -> Vec<f64> {
        let total = m.values().sum::<u64>().max(1) as f64;
        let mut v: Vec<f64> = shown.iter().map(|c| count(m, c) as f64 / total).collect();
        if !rest.is_empty() {
            v.push(rest.iter().map(|c| count(m, c)).sum::<u64>() as f64 / total);
        }
        v
    };
    let mut names = shown.clone();
    if !rest.is_empty() {
        names.push("(other)".into());
    }
    let mut series = vec![(format!("today ({today})"), shares(&drift.today))];
    if !drift.trailing.is_empty() {
        series.push((
            format!("trailing {trailing_days} days"),
            shares(&drift.trailing),
        ));
    }
    (names, series)
}

fn percent(share: Option<f64>) -> String {
    share.map_or("n/a".into(), |s| format!("{:.1}%", s * 100.0))
}

fn distance(drift: &TaskDrift) -> String {
    drift
        .drift
        .distance
        .map_or("n/a (no trailing days)".into(), |d| format!("{d:.3}"))
}

fn verdict(drift: &TaskDrift) -> &'static str {
    match (drift.drift.distance, drift.drift.drifted) {
        (None, _) => "not computed",
        (Some(_), true) => "DRIFT",
        (Some(_), false) => "ok",
    }
}

fn largest_move(drift: &TaskDrift) -> String {
    drift
        .drift
        .largest_move
        .as_ref()
        .map_or(String::new(), |(value, now, before)| {
            format!("{value}: {:.1}% (was {:.1}%)", now * 100.0, before * 100.0)
        })
}

fn coverage_at(coverage: &Coverage) -> String {
    coverage
        .at
        .iter()
        .map(|(t, s)| format!("{t:.2}: {:.1}%", s * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn eval_cell(entry: &super::history::EvalEntry, task: &str) -> String {
    match entry.tasks.get(task) {
        Some(h) => {
            let value = h.value.map_or("n/a".into(), |v| format!("{v:.3}"));
            match h.ci95 {
                Some([lo, hi]) => format!("{value} [{lo:.3}, {hi:.3}]"),
                None => value,
            }
        }
        None => String::new(),
    }
}

fn eval_tasks(report: &NightlyReport) -> Vec<String> {
    let mut tasks: Vec<String> = report
        .eval_history
        .iter()
        .flat_map(|e| e.tasks.keys().cloned())
        .collect();
    tasks.sort();
    tasks.dedup();
    tasks
}

fn header_lines(report: &NightlyReport) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(today) = &report.today {
        lines.push(format!(
            "Today: {today} (the newest day of the labels; days from the {}). Trailing window: the {} days before it; days with labels in it: {}.",
            report.dated_by.unwrap_or("labels"),
            report.trailing_days,
            if report.trailing_dates.is_empty() {
                "none".to_string()
            } else {
                report.trailing_dates.join(", ")
            }
        ));
    }
    if report.labels > 0 {
        lines.push(format!("Labels read: {}.", report.labels));
    }
    lines.push(format!(
        "Drift statistic: Jensen-Shannon distance (base 2, 0 = same distribution, 1 = no label in common) between today's label shares and the trailing days' pooled shares; a task is flagged above {:.2}. Withheld labels (below min_confidence) count as the value `(withheld)`.",
        report.drift_threshold
    ));
    lines
}

fn markdown(report: &NightlyReport, figures: &BTreeMap<String, Vec<Figure>>) -> String {
    let mut md = String::from("# Nightly report\n\n");
    for line in header_lines(report) {
        let _ = writeln!(md, "{line}\n");
    }
    for note in &report.notes {
        let _ = writeln!(md, "> **Note.** {note}\n");
    }
    let image = |md: &mut String, key: &str| {
        for figure in figures.get(key).into_iter().flatten() {
            let _ = writeln!(md, "![{}]({})\n", figure.caption, figure.file);
        }
    };
    if !report.drift.is_empty() {
        md += "## Label distributions and drift\n\n| task | labels today | labels in trailing days | JS distance | verdict | largest move |\n| --- | ---: | ---: | ---: | --- | --- |\n";
        for (task, drift) in &report.drift {
            let _ = writeln!(
                md,
                "| {task} | {} | {} | {} | {} | {} |",
                drift.today.values().sum::<u64>(),
                drift.trailing.values().sum::<u64>(),
                distance(drift),
                verdict(drift),
                largest_move(drift)
            );
        }
        md.push('\n');
        for task in report.drift.keys() {
            image(&mut md, &format!("drift:{task}"));
        }
    }
    if !report.coverage.is_empty() {
        md += "## Coverage and confidence\n\nCoverage: the share of labels emitted (not withheld) at the configured `[label] min_confidence` (0 where none is configured); then the share of scored labels at or above other thresholds.\n\n| task | min_confidence | emitted / labels | coverage | coverage at |\n| --- | ---: | ---: | ---: | --- |\n";
        for (task, c) in &report.coverage {
            let _ = writeln!(
                md,
                "| {task} | {:.2} | {} / {} | {} | {} |",
                c.threshold,
                c.emitted,
                c.labels,
                percent(c.coverage),
                coverage_at(c)
            );
        }
        md.push('\n');
        for task in report.coverage.keys() {
            image(&mut md, &format!("confidence:{task}"));
        }
    }
    if !report.eval_history.is_empty() {
        let tasks = eval_tasks(report);
        md += "## Eval results over time\n\nThe champion's headline metric per task on the held-out gold, with its 95% bootstrap interval, one row per eval run (WORK_DIR/history/eval.jsonl).\n\n";
        let _ = writeln!(md, "| date (UTC) | model | {} |", tasks.join(" | "));
        let _ = writeln!(md, "| --- | --- |{}", " ---: |".repeat(tasks.len()));
        for entry in &report.eval_history {
            let cells: Vec<String> = tasks.iter().map(|t| eval_cell(entry, t)).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                entry.date,
                entry.model_id.as_deref().unwrap_or(""),
                cells.join(" | ")
            );
        }
        md.push('\n');
        image(&mut md, "eval");
    }
    md
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;color:#222}\
h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}\
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}\
th{background:#f4f4f4}.num{text-align:right}.drift{color:#fff;background:#d62728;font-weight:bold}\
.ok{color:#1a7f37;font-weight:bold}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px;margin:8px 0}\
.na{color:#777}.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px}\
.plots figure{margin:0}.plots svg{width:100%;height:auto}figcaption{font-size:12px;color:#555}";

fn html(report: &NightlyReport, figures: &BTreeMap<String, Vec<Figure>>) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>labelgen nightly report {}</title><style>{STYLE}</style></head><body>\n<h1>Nightly report</h1>\n",
        escape(report.today.as_deref().unwrap_or(""))
    );
    for line in header_lines(report) {
        let _ = writeln!(h, "<p>{}</p>", escape(&line));
    }
    for note in &report.notes {
        let _ = writeln!(h, "<div class=\"note\"><b>Note.</b> {}</div>", escape(note));
    }
    let plots = |h: &mut String, keys: Vec<String>| {
        h.push_str("<div class=\"plots\">\n");
        for figure in keys.iter().filter_map(|k| figures.get(k)).flatten() {
            let _ = writeln!(
                h,
                "<figure>{}<figcaption>{}</figcaption></figure>",
                figure.svg.trim_end(),
                escape(&figure.caption)
            );
        }
        h.push_str("</div>\n");
    };
    if !report.drift.is_empty() {
        h += "<h2>Label distributions and drift</h2>\n<table><tr><th>task</th><th>labels today</th><th>labels in trailing days</th><th>JS distance</th><th>verdict</th><th>largest move</th></tr>\n";
        for (task, drift) in &report.drift {
            let class = match (drift.drift.distance, drift.drift.drifted) {
                (None, _) => "na",
                (Some(_), true) => "drift",
                (Some(_), false) => "ok",
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
                escape(task),
                drift.today.values().sum::<u64>(),
                drift.trailing.values().sum::<u64>(),
                escape(&distance(drift)),
                verdict(drift),
                escape(&largest_move(drift))
            );
        }
        h += "</table>\n";
        plots(
            &mut h,
            report.drift.keys().map(|t| format!("drift:{t}")).collect(),
        );
    }
    if !report.coverage.is_empty() {
        h += "<h2>Coverage and confidence</h2>\n<p>Coverage: the share of labels emitted (not withheld) at the configured <code>[label] min_confidence</code> (0 where none is configured); then the share of scored labels at or above other thresholds.</p>\n<table><tr><th>task</th><th>min_confidence</th><th>emitted / labels</th><th>coverage</th><th>coverage at</th></tr>\n";
        for (task, c) in &report.coverage {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(task),
                c.threshold,
                c.emitted,
                c.labels,
                percent(c.coverage),
                escape(&coverage_at(c))
            );
        }
        h += "</table>\n";
        plots(
            &mut h,
            report
                .coverage
                .keys()
                .map(|t| format!("confidence:{t}"))
                .collect(),
        );
    }
    if !report.eval_history.is_empty() {
        let tasks = eval_tasks(report);
        h += "<h2>Eval results over time</h2>\n<p>The champion's headline metric per task on the held-out gold, with its 95% bootstrap interval, one row per eval run.</p>\n<table><tr><th>date (UTC)</th><th>model</th>";
        for task in &tasks {
            let _ = write!(h, "<th>{}</th>", escape(task));
        }
        h += "</tr>\n";
        for entry in &report.eval_history {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td>",
                escape(&entry.date),
                escape(entry.model_id.as_deref().unwrap_or(""))
            );
            for task in &tasks {
                let _ = write!(
                    h,
                    "<td class=\"num\">{}</td>",
                    escape(&eval_cell(entry, task))
                );
            }
            h += "</tr>\n";
        }
        h += "</table>\n";
        plots(&mut h, vec!["eval".into()]);
    }
    h += "</body></html>\n";
    h
}
