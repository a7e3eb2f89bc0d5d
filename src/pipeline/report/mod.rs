//! The nightly report (WORK_DIR/report): today's labels against the
//! trailing days' (drift per task), confidence histograms, coverage at the
//! configured thresholds, and the champion's eval results over time, as
//! report.md with PNG plots, one self-contained report.html (plots inline
//! as SVG) and report.json.
//!
//! - [`aggregate`]: the labels' counts per day and their confidences (polars);
//! - [`drift`]: Jensen-Shannon distance and the threshold;
//! - [`history`]: the eval runs and daily counts kept between runs;
//! - [`render`]: the markdown and HTML pages;
//! - [`days`]: calendar days as numbers.

pub mod aggregate;
pub mod days;
pub mod drift;
pub mod history;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use aggregate::Aggregates;
use drift::Drift;
use history::{DayCount, EvalEntry, Headline};

/// The `[report]` options with their defaults filled in.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Days before today that today's labels are compared with.
    pub trailing_days: u32,
    /// Jensen-Shannon distance above which a task is flagged as drifted.
    pub drift_threshold: f64,
    /// `[label] min_confidence`: task -> threshold (absent: 0).
    pub min_confidence: BTreeMap<String, f64>,
}

/// Where the report reads from; None leaves its sections out.
#[derive(Debug, Clone)]
pub struct ReportInputs {
    /// The label step's output and the logs it labelled.
    pub labels: Option<PathBuf>,
    pub turns: Option<PathBuf>,
    /// Eval's report.json (the champion on held-out gold).
    pub eval_report: Option<PathBuf>,
    /// The champion, whose id goes into the eval history.
    pub champion: PathBuf,
    /// Holds history/ (kept between runs).
    pub work_dir: PathBuf,
    /// The report.json of the last report step that finished, if any.
    pub previous_report: Option<PathBuf>,
}

/// Label value -> labels.
pub type ValueCounts = BTreeMap<String, u64>;

/// One task's labels today against the trailing days.
#[derive(Debug, Clone, Serialize)]
pub struct TaskDrift {
    pub today: BTreeMap<String, u64>,
    pub trailing: BTreeMap<String, u64>,
    pub drift: Drift,
}

/// Coverage of one task: labels emitted at the configured threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub threshold: f64,
    pub labels: u64,
    pub emitted: u64,
    pub coverage: Option<f64>,
    /// (threshold, share of scored labels at or above it).
    pub at: Vec<(f64, f64)>,
    pub bins: Vec<u64>,
}

/// Everything the report shows; also written as report.json.
#[derive(Debug, Clone, Serialize)]
pub struct NightlyReport {
    pub today: Option<String>,
    pub trailing_days: u32,
    /// The days before today, within the window, that have labels.
    pub trailing_dates: Vec<String>,
    pub dated_by: Option<&'static str>,
    pub labels: u64,
    pub undated_labels: u64,
    /// Warnings while reading the labels (an empty part file...).
    pub label_read_warnings: u64,
    pub drift_threshold: f64,
    pub drift: BTreeMap<String, TaskDrift>,
    pub coverage: BTreeMap<String, Coverage>,
    pub eval_history: Vec<EvalEntry>,
    /// Whether this report is the first to show its eval run: the run was
    /// added to the history now, or by a report step killed before its
    /// report was moved into place (so no finished report shows it).
    pub eval_recorded: bool,
    /// What the reader must know (one day only, undated labels, ...).
    pub notes: Vec<String>,
}

pub const MARKDOWN: &str = "report.md";
pub const HTML: &str = "report.html";
pub const JSON: &str = "report.json";

/// Builds the report into `out` (created) and updates the history; returns
/// the report.
pub fn run(
    inputs: &ReportInputs,
    settings: &ReportSettings,
    out: &Path,
) -> anyhow::Result<NightlyReport> {
    let mut report = NightlyReport {
        today: None,
        trailing_days: settings.trailing_days,
        trailing_dates: Vec::new(),
        dated_by: None,
        labels: 0,
        undated_labels: 0,
        label_read_warnings: 0,
        drift_threshold: settings.drift_threshold,
        drift: BTreeMap::new(),
        coverage: BTreeMap::new(),
        eval_history: Vec::new(),
        eval_recorded: false,
        notes: Vec::new(),
    };
    history::remove_temp_files(&inputs.work_dir.join(history::DIR))?;
    if let Some(labels) = &inputs.labels {
        let aggregates =
            aggregate::aggregate(labels, inputs.turns.as_deref(), &settings.min_confidence)?;
        let days = history::record_label_days(
            &history::label_days_file(&inputs.work_dir),
            &aggregates.day_counts,
        )?;
        label_sections(&mut report, &aggregates, &days, settings);
    }
    if let Some(eval_report) = &inputs.eval_report {
        let entry = eval_entry(eval_report, &inputs.champion)?;
        let eval_id = entry.eval_id.clone();
        let (entries, added) = history::record_eval(&history::eval_file(&inputs.work_dir), entry)?;
        report.eval_history = entries;
        report.eval_recorded = added || !shown_before(inputs.previous_report.as_deref(), &eval_id)?;
    }
    render::write(&report, out)?;
    Ok(report)
}

/// Drift and coverage from the aggregates and the merged daily history.
fn label_sections(
    report: &mut NightlyReport,
    aggregates: &Aggregates,
    days: &[DayCount],
    settings: &ReportSettings,
) {
    report.labels = aggregates.rows;
    report.undated_labels = aggregates.undated;
    report.label_read_warnings = aggregates.read_warnings;
    report.dated_by = Some(aggregates.dated_by);
    let today = aggregates
        .day_counts
        .iter()
        .filter_map(|c| days::parse(&c.date))
        .max();
    if let Some(today) = today {
        let (dates, drift) = compare_days(days, today, settings);
        report.today = Some(days::format(today));
        report.trailing_dates = dates;
        report.drift = drift;
    }
    for (task, confidence) in &aggregates.confidence {
        let threshold = settings.min_confidence.get(task).copied().unwrap_or(0.0);
        let share = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        report.coverage.insert(
            task.clone(),
            Coverage {
                threshold,
                labels: aggregates.rows,
                emitted: confidence.emitted,
                coverage: share(confidence.emitted, aggregates.rows),
                at: confidence
                    .covered_at
                    .iter()
                    .filter_map(|(t, n)| share(*n, confidence.scored).map(|s| (*t, s)))
                    .collect(),
                bins: confidence.bins.clone(),
            },
        );
    }
    report.notes = notes(report, settings);
}

/// Today's counts per task against the pooled counts of the trailing days
/// (the `trailing_days` calendar days before today) in `days`.
pub fn compare_days(
    days: &[DayCount],
    today: i32,
    settings: &ReportSettings,
) -> (Vec<String>, BTreeMap<String, TaskDrift>) {
    let window = (today - settings.trailing_days as i32)..today;
    let mut trailing_dates = BTreeSet::new();
    // Task -> (today's counts, the trailing days' pooled counts).
    let mut per_task: BTreeMap<String, (ValueCounts, ValueCounts)> = aggregate::DISTRIBUTION_TASKS
        .iter()
        .map(|t| (t.to_string(), Default::default()))
        .collect();
    for count in days {
        let Some(day) = days::parse(&count.date) else {
            continue;
        };
        let Some((now, before)) = per_task.get_mut(&count.task) else {
            continue;
        };
        if day == today {
            *now.entry(count.value.clone()).or_default() += count.count;
        } else if window.contains(&day) {
            trailing_dates.insert(count.date.clone());
            *before.entry(count.value.clone()).or_default() += count.count;
        }
    }
    let drift = per_task
        .into_iter()
        .map(|(task, (today, trailing))| {
            let drift = drift::drift(&today, &trailing, settings.drift_threshold);
            let task_drift = TaskDrift {
                today,
                trailing,
                drift,
            };
            (task, task_drift)
        })
        .collect();
    (trailing_dates.into_iter().collect(), drift)
}

fn notes(report: &NightlyReport, settings: &ReportSettings) -> Vec<String> {
    let mut notes = Vec::new();
    let dated_by = report.dated_by.unwrap_or("");
    match (&report.today, report.trailing_dates.len()) {
        (None, _) => notes.push(
            "No label has a day (no date= partitions and no turn timestamps): no daily distributions and no drift."
                .to_string(),
        ),
        (Some(today), 0) => notes.push(format!(
            "One day of labels only ({today}, days from the {dated_by}): there are no trailing days to compare with, so no drift is computed and no trend is drawn. Plain simulated logs are one day; hive-partitioned logs (date=...) and nightly runs build up the days."
        )),
        (Some(_), n) if n < settings.trailing_days as usize => notes.push(format!(
            "The trailing window has labels on {n} of its {} days.",
            settings.trailing_days
        )),
        _ => {}
    }
    if report.undated_labels > 0 {
        notes.push(format!(
            "{} of {} labels have no day (their dialogue has no timestamp): they are in the histograms and coverage, not in the daily distributions.",
            report.undated_labels, report.labels
        ));
    }
    if report.label_read_warnings > 0 {
        notes.push(format!(
            "{} read warning(s) on the labels (see the step's stderr, or `labelgen validate` on them).",
            report.label_read_warnings
        ));
    }
    notes
}

/// The champion's headline metrics from eval's report.json; the run is
/// identified by the file's size and modification time.
/// Whether the last finished report (`previous`, absent before the first)
/// lists eval run `eval_id` in its history. A run killed between recording
/// the eval and moving its report into place is finished by the next one,
/// which finds the eval recorded but shown by no report: it is still new,
/// and the report says so, as the uninterrupted run's would.
fn shown_before(previous: Option<&Path>, eval_id: &str) -> anyhow::Result<bool> {
    let Some(path) = previous.filter(|p| p.exists()) else {
        return Ok(false);
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a report ({e})", path.display()))?;
    let history = report["eval_history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(history.iter().any(|e| e["eval_id"] == eval_id))
}

fn eval_entry(path: &Path, champion: &Path) -> anyhow::Result<EvalEntry> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not an eval report ({e})", path.display()))?;
    let stamp = super::manifest::fingerprint(&[path.to_path_buf()])?;
    let mtime_ns = stamp.first().and_then(|s| s.mtime_ns).unwrap_or(0);
    let unix = mtime_ns / 1_000_000_000;
    let eval_id = format!(
        "{:016x}",
        crate::data::split::stable_hash(&format!("{}:{mtime_ns}", bytes.len()))
    );
    let champion_result = json["systems"]
        .as_array()
        .and_then(|systems| systems.iter().find(|s| s["name"] == "champion"))
        .ok_or_else(|| anyhow::anyhow!("{}: no `champion` system", path.display()))?;
    let mut tasks = BTreeMap::new();
    for (task, result) in champion_result["tasks"].as_object().into_iter().flatten() {
        let metric = result["headline"].as_str().unwrap_or_default().to_string();
        let estimate = &result["metrics"][&metric];
        let ci95 = estimate["ci95"]
            .as_array()
            .and_then(|v| Some([v.first()?.as_f64()?, v.get(1)?.as_f64()?]));
        let value = estimate["value"].as_f64();
        tasks.insert(
            task.clone(),
            Headline {
                metric,
                value,
                ci95,
            },
        );
    }
    Ok(EvalEntry {
        date: days::format(days::of_micros((unix * 1_000_000) as i64)),
        unix,
        eval_id,
        model_id: super::promote::model_id(champion).ok(),
        gold_dialogues: json["gold"]["dialogues"].as_u64(),
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::DatasetWriter;
    use crate::data::tables::Label;

    fn label(dialogue: &str, turn: i32, intent: Option<&str>, prob: f32) -> Label {
        Label {
            dialogue_id: dialogue.into(),
            turn_index: turn,
            goal_id: Some(0),
            goal_boundary_prob: Some(if turn == 0 { 1.0 } else { 0.2 }),
            goal_success: Some(true),
            goal_success_prob: Some(0.9),
            intent: intent.map(str::to_string),
            intent_prob: Some(prob),
            slots: None,
            slots_prob: Some(0.3),
            failure_point: Some("correct".into()),
            failure_point_prob: Some(0.95),
            model_id: "m".into(),
            run_id: "r".into(),
        }
    }

    fn write_labels(dir: &Path, rows: &[Label]) {
        let mut writer = DatasetWriter::create(dir, false).unwrap();
        writer.write_rows(rows).unwrap();
        writer.finish::<Label>().unwrap();
    }

    /// Dec 1: PlayMusic 3, GetWeather 1. Dec 2: PlayMusic 1, GetWeather 2
    /// and one withheld (below 0.5).
    fn two_days(root: &Path) {
        let day1: Vec<Label> = ["PlayMusic", "PlayMusic", "PlayMusic", "GetWeather"]
            .iter()
            .enumerate()
            .map(|(i, intent)| label("d1", i as i32, Some(intent), 0.9))
            .collect();
        let day2 = vec![
            label("d2", 0, Some("PlayMusic"), 0.8),
            label("d2", 1, Some("GetWeather"), 0.7),
            label("d3", 0, Some("GetWeather"), 0.6),
            label("d3", 1, None, 0.3),
        ];
        write_labels(&root.join("date=2026-12-01"), &day1);
        write_labels(&root.join("date=2026-12-02"), &day2);
    }

    /// A report of `labels` alone: no logs, no eval, history under DIR/work.
    fn labels_only(labels: PathBuf, dir: &Path) -> ReportInputs {
        ReportInputs {
            labels: Some(labels),
            turns: None,
            eval_report: None,
            champion: dir.join("no-champion"),
            work_dir: dir.join("work"),
            previous_report: None,
        }
    }

    fn settings() -> ReportSettings {
        ReportSettings {
            trailing_days: 7,
            drift_threshold: drift::DEFAULT_THRESHOLD,
            min_confidence: [("intent".to_string(), 0.5)].into(),
        }
    }

    #[test]
    fn read_warnings_on_the_labels_are_counted_in_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels");
        two_days(&labels);
        // An empty part file beside day 2's rows: read, and warned about.
        let empty = dir.path().join("empty");
        write_labels(&empty, &[]);
        let part = std::fs::read_dir(&empty)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::copy(&part, labels.join("date=2026-12-02/part-empty.parquet")).unwrap();
        let aggregates = aggregate::aggregate(&labels, None, &settings().min_confidence).unwrap();
        assert_eq!((aggregates.rows, aggregates.read_warnings), (8, 1));
        let out = dir.path().join("report");
        let inputs = labels_only(labels, dir.path());
        let report = run(&inputs, &settings(), &out).unwrap();
        assert_eq!(report.label_read_warnings, 1);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("1 read warning(s) on the labels")),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn counts_summed_batch_by_batch_equal_the_whole_tables() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels");
        two_days(&labels);
        let thresholds = settings().min_confidence;
        let whole = aggregate::aggregate(&labels, None, &thresholds).unwrap();
        for batch_rows in [1, 3] {
            let batched =
                aggregate::aggregate_in_batches(&labels, None, &thresholds, batch_rows).unwrap();
            assert_eq!(batched, whole, "{batch_rows} labels a batch");
        }
        assert!(
            whole.confidence["intent"]
                .covered_at
                .iter()
                .any(|(_, n)| *n > 0)
        );
    }

    #[test]
    fn drift_on_a_two_day_labels_table_matches_the_hand_computed_distance() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels");
        two_days(&labels);
        let thresholds = settings().min_confidence;
        let aggregates = aggregate::aggregate(&labels, None, &thresholds).unwrap();
        assert_eq!((aggregates.rows, aggregates.undated), (8, 0));
        assert_eq!(aggregates.dated_by, "partitions");
        let intent: Vec<(&str, &str, u64)> = aggregates
            .day_counts
            .iter()
            .filter(|c| c.task == "intent")
            .map(|c| (c.date.as_str(), c.value.as_str(), c.count))
            .collect();
        assert_eq!(
            intent,
            [
                ("2026-12-01", "GetWeather", 1),
                ("2026-12-01", "PlayMusic", 3),
                ("2026-12-02", "(withheld)", 1),
                ("2026-12-02", "GetWeather", 2),
                ("2026-12-02", "PlayMusic", 1),
            ]
        );
        let today = days::parse("2026-12-02").unwrap();
        let (dates, drifts) = compare_days(&aggregates.day_counts, today, &settings());
        assert_eq!(dates, ["2026-12-01"]);
        // P (today) = (withheld 1/4, GetWeather 2/4, PlayMusic 1/4),
        // Q (Dec 1) = (0, 1/4, 3/4): M = (1/8, 3/8, 1/2); KL(P||M) =
        // 1/4 + 1/2 log2(4/3) - 1/4, KL(Q||M) = 1/2 log2(3/2), so JSD = 1/4.
        let kl = |a: [f64; 3], m: [f64; 3]| -> f64 {
            a.iter()
                .zip(m)
                .filter(|(x, _)| **x > 0.0)
                .map(|(x, m)| x * (x / m).log2())
                .sum()
        };
        let (p, q, m) = ([0.25, 0.5, 0.25], [0.0, 0.25, 0.75], [0.125, 0.375, 0.5]);
        let expected = ((kl(p, m) + kl(q, m)) / 2.0).sqrt();
        let intent = &drifts["intent"];
        assert!((intent.drift.distance.unwrap() - expected).abs() < 1e-12);
        assert!((expected - 0.5).abs() < 1e-12, "{expected}");
        assert!(intent.drift.drifted);
        let failure = &drifts["failure_point"];
        assert_eq!(failure.drift.distance, Some(0.0));
        assert!(!failure.drift.drifted);

        // A trailing window of 0 days before Dec 2 has nothing to compare.
        let mut short = settings();
        short.trailing_days = 0;
        let (dates, drifts) = compare_days(&aggregates.day_counts, today, &short);
        assert!(dates.is_empty() && drifts["intent"].drift.distance.is_none());

        // Coverage at intent's 0.5: 7 of 8 emitted; confidences binned.
        let c = &aggregates.confidence["intent"];
        assert_eq!((c.scored, c.emitted), (8, 7));
        assert_eq!(c.covered_at[0], (0.5, 7));
        assert_eq!(c.bins.iter().sum::<u64>(), 8);
        assert_eq!(c.bins[18], 4, "0.9 falls in [0.90, 0.95)");
        let segmentation = &aggregates.confidence["goal_segmentation"];
        assert_eq!(segmentation.bins[19], 3, "p = 1.0 is in the last bin");
        assert_eq!(segmentation.bins[16], 5, "p = 0.2 is confidence 0.8");
    }

    #[test]
    fn unpartitioned_labels_take_their_dialogues_start_day_from_the_logs() {
        use crate::data::tables::Turn;
        let dir = tempfile::tempdir().unwrap();
        let (labels, turns) = (dir.path().join("labels"), dir.path().join("turns"));
        write_labels(
            &labels,
            &[
                label("late", 0, Some("A"), 0.9),
                label("late", 1, Some("B"), 0.9),
                label("none", 0, Some("A"), 0.9),
            ],
        );
        let midnight = days::parse("2026-12-02").unwrap() as i64 * days::MICROS_PER_DAY;
        let turn = |id: &str, index: i32, us: Option<i64>| Turn {
            dialogue_id: id.into(),
            turn_index: index,
            timestamp_us: us,
            user_utterance: "play".into(),
            system_response: "ok".into(),
            ..Default::default()
        };
        let mut writer = DatasetWriter::create(&turns, false).unwrap();
        writer
            .write_rows(&[
                turn("late", 0, Some(midnight - 60_000_000)),
                turn("late", 1, Some(midnight + 60_000_000)),
                turn("none", 0, None),
            ])
            .unwrap();
        writer.finish::<Turn>().unwrap();
        let aggregates = aggregate::aggregate(&labels, Some(&turns), &BTreeMap::new()).unwrap();
        let one_at_a_time =
            aggregate::aggregate_in_batches(&labels, Some(&turns), &BTreeMap::new(), 1).unwrap();
        assert_eq!(one_at_a_time, aggregates);
        assert_eq!(aggregates.dated_by, "dialogue start");
        assert_eq!(aggregates.undated, 1);
        let dates: BTreeSet<&str> = aggregates
            .day_counts
            .iter()
            .map(|c| c.date.as_str())
            .collect();
        assert_eq!(
            dates,
            BTreeSet::from(["2026-12-01"]),
            "across midnight: the start day"
        );
    }

    #[test]
    fn an_eval_is_new_until_a_finished_report_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let previous = dir.path().join("report.json");
        assert!(!shown_before(None, "e1").unwrap());
        assert!(
            !shown_before(Some(&previous), "e1").unwrap(),
            "no report yet"
        );
        let report = serde_json::json!({"eval_history": [{"eval_id": "e0"}, {"eval_id": "e1"}]});
        std::fs::write(&previous, report.to_string()).unwrap();
        assert!(shown_before(Some(&previous), "e1").unwrap());
        assert!(!shown_before(Some(&previous), "e2").unwrap());
        std::fs::write(&previous, b"{\"eval_history\": [").unwrap();
        let err = shown_before(Some(&previous), "e1").unwrap_err().to_string();
        assert!(
            err.contains("report.json") && err.contains("not a report"),
            "{err}"
        );
    }

    #[test]
    fn the_report_is_written_as_markdown_html_png_and_json_and_says_when_there_is_one_day() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels");
        write_labels(
            &labels.join("date=2026-12-02"),
            &[
                label("d", 0, Some("PlayMusic"), 0.9),
                label("d", 1, None, 0.2),
            ],
        );
        let inputs = labels_only(labels, dir.path());
        let out = dir.path().join("report");
        let report = run(&inputs, &settings(), &out).unwrap();
        assert_eq!(report.today.as_deref(), Some("2026-12-02"));
        assert!(
            report.notes[0].starts_with("One day of labels only"),
            "{:?}",
            report.notes
        );
        for file in [
            MARKDOWN,
            HTML,
            JSON,
            "drift_intent.png",
            "confidence_intent.png",
        ] {
            assert!(out.join(file).is_file(), "{file} missing");
        }
        let html = std::fs::read_to_string(out.join(HTML)).unwrap();
        assert!(html.contains("<svg") && html.contains("One day of labels only"));
        for external in ["src=", "href=", "url(", "@import"] {
            assert!(
                !html.contains(external),
                "external resource `{external}` in the page"
            );
        }
        let md = std::fs::read_to_string(out.join(MARKDOWN)).unwrap();
        assert!(md.contains("![intent: share of each label"), "{md}");
        assert!(md.contains("| intent | 0.50 | 1 / 2 | 50.0% |"), "{md}");
        let days = history::read_lines::<DayCount>(&history::label_days_file(&inputs.work_dir));
        // intent: PlayMusic and (withheld); failure_point: correct; goal_success: true.
        assert_eq!(days.unwrap().len(), 4);
    }
}
