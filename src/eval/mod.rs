//! `labelgen eval`: judges labels against 3-annotator gold, side by side with
//! the single-pass annotator and human leave-one-out, with bootstrap
//! intervals, paired tests, threshold sweeps, plots and a review list.

pub mod gold;
pub mod judge;
pub mod metrics;
pub mod plot;
pub mod report;
mod review;
pub mod subset;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use crate::data::dataset::{read_table, write_file_atomic};
use crate::data::tables::{Annotation, FailurePoint, Label, Turn};
use crate::stages::simulate::TRUTH_ANNOTATOR;
use gold::{GoldDialogue, GoldPolicy, SystemLabels};
use judge::{Judgement, Task, Vocabulary, agreement, judge};
use report::{
    AnnotatorQuality, EvalReport, GoldSummary, InputCheck, ItemCount, Settings, SweepReport,
    SystemResult,
};

#[derive(Debug, Clone, Serialize)]
pub struct EvalConfig {
    /// Annotations table holding the gold annotators (and the baseline annotator).
    pub gold: PathBuf,
    /// Labels tables to judge, by name.
    pub preds: Vec<(String, PathBuf)>,
    /// Annotators judged like predictions, e.g. the single-pass "single".
    pub baseline_annotators: Vec<String>,
    pub gold_annotators: Vec<String>,
    pub policy: GoldPolicy,
    /// Logs, for the utterances in the review list.
    pub turns: Option<PathBuf>,
    pub out: PathBuf,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    pub annotator_turns_per_hour: f64,
    /// A prediction at least this confident that disagrees with the gold goes to review.
    pub review_confidence: f64,
    pub overwrite: bool,
}

impl EvalConfig {
    pub fn new(gold: PathBuf, out: PathBuf) -> EvalConfig {
        EvalConfig {
            gold,
            preds: Vec::new(),
            baseline_annotators: vec!["single".into()],
            gold_annotators: vec!["a1".into(), "a2".into(), "a3".into()],
            policy: GoldPolicy::Unanimous,
            turns: None,
            out,
            bootstrap_resamples: 1000,
            seed: 0,
            annotator_turns_per_hour: 120.0,
            review_confidence: 0.9,
            overwrite: false,
        }
    }
}

/// Sweep thresholds: every 0.02 from 0 to 1, and finer near 1 where
/// calibrated models keep most of their confident items.
fn thresholds() -> Vec<f64> {
    let mut t: Vec<f64> = (0..50).map(|i| i as f64 * 0.02).collect();
    t.extend((0..=20).map(|i| 0.98 + i as f64 * 0.001));
    t
}

pub fn run(config: &EvalConfig) -> anyhow::Result<EvalReport> {
    anyhow::ensure!(
        !config.gold_annotators.is_empty(),
        "--gold-annotators needs at least one annotator"
    );
    anyhow::ensure!(
        config.annotator_turns_per_hour > 0.0,
        "--annotator-turns-per-hour must be positive, got {}",
        config.annotator_turns_per_hour
    );
    if config.out.exists() && !config.overwrite {
        anyhow::bail!(
            "{} already exists\n  hint: pass --force to replace it, or choose another --out",
            config.out.display()
        );
    }
    let (annotations, _) = read_table::<Annotation>(&config.gold)?;
    let annotators = gold::by_annotator(annotations);
    for name in config
        .gold_annotators
        .iter()
        .chain(&config.baseline_annotators)
    {
        anyhow::ensure!(
            annotators.contains_key(name),
            "{}: no annotations by annotator `{name}`; annotators present: {}",
            config.gold.display(),
            annotators.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let mut preds: Vec<(String, SystemLabels)> = Vec::new();
    for (name, path) in &config.preds {
        let (rows, _) = read_table::<Label>(path)?;
        preds.push((name.clone(), gold::from_labels(rows)));
    }

    // Gold per dialogue, in a fixed order every system is judged in.
    let gold_labels: Vec<&SystemLabels> = config
        .gold_annotators
        .iter()
        .map(|a| &annotators[a])
        .collect();
    let dialogues: BTreeSet<&String> = gold_labels.iter().flat_map(|a| a.keys()).collect();
    let gold: Vec<(String, GoldDialogue)> = dialogues
        .iter()
        .map(|d| {
            (
                (*d).clone(),
                gold::derive(
                    &gold_labels.iter().map(|a| a.get(*d)).collect::<Vec<_>>(),
                    config.policy,
                ),
            )
        })
        .collect();
    let segmentations: Vec<&[i32]> = gold
        .iter()
        .filter_map(|(_, g)| g.segmentation.as_deref())
        .collect();
    let pk_window = metrics::pk_window(&segmentations);

    let systems_for_vocabulary: Vec<&SystemLabels> = annotators
        .values()
        .chain(preds.iter().map(|(_, p)| p))
        .collect();
    let vocabulary = vocabulary(&systems_for_vocabulary);
    let gold_intents: BTreeSet<&String> = gold
        .iter()
        .flat_map(|(_, g)| g.intent.iter().flatten())
        .collect();

    // Judge every system on the same gold.
    let baseline_name = config.baseline_annotators.first().cloned();
    let mut judged: Vec<(String, &'static str, Judgement)> = Vec::new();
    for (name, labels) in &preds {
        judged.push((
            name.clone(),
            "prediction",
            judge(labels, &gold, &vocabulary, pk_window),
        ));
    }
    for name in &config.baseline_annotators {
        judged.push((
            name.clone(),
            "annotator",
            judge(&annotators[name], &gold, &vocabulary, pk_window),
        ));
    }
    let baseline_judgement = baseline_name.as_ref().and_then(|b| {
        judged
            .iter()
            .position(|(n, k, _)| n == b && *k == "annotator")
    });
    let mut systems: Vec<SystemResult> = judged
        .iter()
        .map(|(name, kind, j)| {
            let baseline = baseline_judgement
                .filter(|_| *kind == "prediction")
                .map(|i| (judged[i].0.as_str(), &judged[i].2));
            report::system_result(
                name,
                kind,
                j,
                baseline,
                &vocabulary.failure_point,
                config.bootstrap_resamples,
                config.seed,
                &Task::ALL,
            )
        })
        .collect();

    // Human leave-one-out: each gold annotator against the gold of the others.
    let mut loo_results = Vec::new();
    let mut loo_golds: Vec<Vec<(String, GoldDialogue)>> = Vec::new();
    // With one gold annotator (a corpus's own labels, e.g. SGD) there is no
    // one to leave out: the gold is that annotator and no human row is given.
    let leave_one_out = config.gold_annotators.len() >= 2;
    for (i, name) in config.gold_annotators.iter().enumerate() {
        if !leave_one_out {
            break;
        }
        let others: Vec<&SystemLabels> = gold_labels
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, a)| *a)
            .collect();
        let loo_gold: Vec<(String, GoldDialogue)> = dialogues
            .iter()
            .map(|d| {
                (
                    (*d).clone(),
                    gold::derive(
                        &others.iter().map(|a| a.get(*d)).collect::<Vec<_>>(),
                        config.policy,
                    ),
                )
            })
            .collect();
        let j = judge(&annotators[name], &loo_gold, &vocabulary, pk_window);
        loo_results.push((
            name.clone(),
            report::system_result(
                name,
                "annotator",
                &j,
                None,
                &vocabulary.failure_point,
                0,
                config.seed,
                &Task::ALL,
            ),
        ));
        loo_golds.push(loo_gold);
    }
    let mut failure_point_vs_human = BTreeMap::new();
    if !loo_results.is_empty() {
        let human = mean_result(&loo_results.iter().map(|(_, r)| r).collect::<Vec<_>>());
        systems.push(human.clone());
        let human_fp = human.tasks[&Task::FailurePoint].metrics["accuracy"].value;
        failure_point_vs_human = systems
            .iter()
            .filter(|s| s.kind != "human_leave_one_out")
            .map(|s| {
                (
                    s.name.clone(),
                    s.tasks[&Task::FailurePoint].metrics["accuracy"].value / human_fp,
                )
            })
            .collect();
    }
    let confusion = judged
        .iter()
        .map(|(name, _, j)| {
            (
                name.clone(),
                metrics::confusion_matrix(&j.failure_pairs, vocabulary.failure_point.len()),
            )
        })
        .collect();

    // The same systems on the turns whose meaning needs context, as the
    // simulator's truth rows mark them.
    let subset_systems: Vec<(&str, &'static str, &SystemLabels)> = preds
        .iter()
        .map(|(name, labels)| (name.as_str(), "prediction", labels))
        .chain(
            config
                .baseline_annotators
                .iter()
                .map(|name| (name.as_str(), "annotator", &annotators[name])),
        )
        .collect();
    let subset_leave_one_out: Vec<subset::LeftOut> = config
        .gold_annotators
        .iter()
        .zip(&loo_golds)
        .map(|(name, others_gold)| subset::LeftOut {
            name,
            labels: &annotators[name],
            gold_of_others: others_gold,
        })
        .collect();
    let context = subset::context_report(&subset::ContextInputs {
        marked_by: TRUTH_ANNOTATOR,
        marks: annotators.get(TRUTH_ANNOTATOR),
        gold: &gold,
        systems: &subset_systems,
        leave_one_out: &subset_leave_one_out,
        vocabulary: &vocabulary,
        pk_window,
        resamples: config.bootstrap_resamples,
        seed: config.seed,
    });

    // Threshold sweeps for systems with confidences, against the baseline annotator.
    let mut threshold_sweeps = BTreeMap::new();
    let turns_judged: u64 = gold.iter().map(|(_, g)| g.turns as u64).sum();
    for (name, kind, j) in &judged {
        if *kind != "prediction" {
            continue;
        }
        let mut by_task = BTreeMap::new();
        for task in Task::ALL {
            let items = &j.sweep_items[&task];
            if items.is_empty() {
                continue;
            }
            let points = metrics::threshold_sweep(items, &thresholds());
            let baseline_precision = baseline_judgement
                .map(|b| report::total(&judged[b].2.per_dialogue[&task]).accuracy())
                .unwrap_or(f64::NAN);
            let beats = metrics::first_threshold_beating(&points, baseline_precision);
            let hours =
                beats.map(|p| p.coverage * turns_judged as f64 / config.annotator_turns_per_hour);
            by_task.insert(
                task,
                SweepReport {
                    points,
                    baseline_precision,
                    beats_baseline_at: beats,
                    annotator_hours_saved: hours,
                },
            );
        }
        threshold_sweeps.insert(name.clone(), by_task);
    }

    // Annotator quality: against the others' gold, and agreement with everyone.
    let mut annotator_quality = BTreeMap::new();
    let everyone: Vec<(&str, &SystemLabels)> = annotators
        .iter()
        .filter(|(n, _)| {
            config.gold_annotators.contains(n) || config.baseline_annotators.contains(n)
        })
        .map(|(n, a)| (n.as_str(), a))
        .chain(preds.iter().map(|(n, p)| (n.as_str(), p)))
        .collect();
    for (name, labels) in &everyone {
        let result = loo_results
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
            .or_else(|| {
                systems
                    .iter()
                    .find(|s| s.name == *name && s.kind == "annotator")
            });
        let Some(result) = result else { continue };
        let vs_gold_of_others = result
            .tasks
            .iter()
            .map(|(t, r)| (*t, r.metrics[r.headline].value))
            .collect();
        let agreement_with = everyone
            .iter()
            .filter(|(other, _)| other != name)
            .map(|(other, b)| (other.to_string(), agreement(labels, b)))
            .collect();
        annotator_quality.insert(
            name.to_string(),
            AnnotatorQuality {
                vs_gold_of_others,
                agreement_with,
            },
        );
    }

    // Does each prediction cover the gold, with the gold's labels?
    let mut inputs = BTreeMap::new();
    for (name, labels) in &preds {
        inputs.insert(name.clone(), input_check(labels, &dialogues, &gold_intents));
    }

    let turn_text = match &config.turns {
        Some(path) => {
            let (rows, _) = read_table::<Turn>(path)?;
            Some(
                rows.into_iter()
                    .map(|t| {
                        (
                            (t.dialogue_id, t.turn_index),
                            (t.user_utterance, t.system_response),
                        )
                    })
                    .collect::<HashMap<_, _>>(),
            )
        }
        None => None,
    };
    let gold_named: Vec<(&str, &SystemLabels)> = config
        .gold_annotators
        .iter()
        .map(|n| (n.as_str(), &annotators[n]))
        .collect();
    let review_items = review::collect(
        &gold_named,
        &gold,
        preds.first().map(|(n, p)| (n.as_str(), p)),
        turn_text.as_ref(),
        config.review_confidence,
    );

    let report = EvalReport {
        labelgen_version: env!("CARGO_PKG_VERSION"),
        gold: gold_summary(config, &gold),
        systems,
        subsets: BTreeMap::from([(subset::CONTEXT_SUBSET, context)]),
        failure_point_vs_human,
        confusion_labels: vocabulary.failure_point.clone(),
        confusion,
        threshold_sweeps,
        annotators: annotator_quality,
        inputs,
        review_items: review_items.len(),
        settings: Settings {
            bootstrap_resamples: config.bootstrap_resamples,
            seed: config.seed,
            annotator_turns_per_hour: config.annotator_turns_per_hour,
            review_confidence: config.review_confidence,
        },
    };

    // Everything goes to a staging directory renamed into place at the end.
    let staging = config.out.with_file_name(format!(
        ".{}.tmp-{}",
        config
            .out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("report"),
        std::process::id()
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let written = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(staging.join("plots"))?;
        write_file_atomic(
            &staging.join("report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        write_file_atomic(
            &staging.join("report.md"),
            report::markdown(&report).as_bytes(),
        )?;
        write_plots(&report, &staging)?;
        review::write(
            &review_items,
            &staging,
            &vocabulary.intent,
            &vocabulary.failure_point,
        )?;
        if config.out.exists() {
            std::fs::remove_dir_all(&config.out)?;
        }
        std::fs::rename(&staging, &config.out)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written?;
    Ok(report)
}

fn write_plots(report: &EvalReport, dir: &std::path::Path) -> anyhow::Result<()> {
    let baseline = report
        .systems
        .iter()
        .find(|s| s.kind == "annotator")
        .map(|s| s.name.clone());
    for task in Task::ALL {
        let curves: Vec<(&str, &[metrics::SweepPoint])> = report
            .threshold_sweeps
            .iter()
            .filter_map(|(name, by_task)| {
                by_task
                    .get(&task)
                    .map(|s| (name.as_str(), s.points.as_slice()))
            })
            .collect();
        if curves.is_empty() {
            continue;
        }
        let baseline_precision = report
            .threshold_sweeps
            .values()
            .find_map(|b| b.get(&task))
            .map(|s| s.baseline_precision);
        let line = baseline
            .as_deref()
            .zip(baseline_precision.filter(|p| p.is_finite()));
        let title = format!("{}: precision against coverage", task.name());
        write_plot(
            dir,
            &format!("sweep_{}", task.name()),
            &plot::sweep_svg(&title, &curves, line),
        )?;
    }
    for (system, matrix) in &report.confusion {
        let title = format!("failure point confusion: {system}");
        write_plot(
            dir,
            &format!("confusion_{system}"),
            &plot::confusion_svg(&title, &report.confusion_labels, matrix),
        )?;
    }
    Ok(())
}

/// plots/NAME.svg and plots/NAME.png.
fn write_plot(dir: &std::path::Path, name: &str, svg: &str) -> anyhow::Result<()> {
    write_file_atomic(
        &dir.join("plots").join(format!("{name}.svg")),
        svg.as_bytes(),
    )?;
    write_file_atomic(
        &dir.join("plots").join(format!("{name}.png")),
        &plot::png(svg)?,
    )
}

/// Class names: intents sorted; failure points: correct and the pipeline
/// stages, then any other value used (`defect`, or unknown values, judged
/// wrong and listed in the input check).
fn vocabulary(systems: &[&SystemLabels]) -> Vocabulary {
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
    let mut failure_point: Vec<String> = failure_points.into_iter().collect();
    // judge() looks classes up by binary search, so keep the list sorted.
    failure_point.sort();
    Vocabulary {
        intent: intents.into_iter().collect(),
        failure_point,
    }
}

fn gold_summary(config: &EvalConfig, gold: &[(String, GoldDialogue)]) -> GoldSummary {
    let mut items = BTreeMap::new();
    let count = |f: &dyn Fn(&GoldDialogue) -> (u64, u64)| {
        gold.iter()
            .map(|(_, g)| f(g))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let turn_level = |v: &dyn Fn(&GoldDialogue) -> Vec<bool>| {
        count(&|g| {
            let has = v(g);
            (
                has.iter().filter(|h| **h).count() as u64,
                has.iter().filter(|h| !**h).count() as u64,
            )
        })
    };
    let entries: [(Task, (u64, u64)); 5] = [
        (
            Task::GoalSegmentation,
            count(&|g| {
                if g.segmentation.is_some() {
                    (1, 0)
                } else {
                    (0, 1)
                }
            }),
        ),
        (
            Task::GoalSuccess,
            count(&|g| {
                let agreed = g.goals.iter().filter(|goal| goal.2.is_some()).count() as u64;
                (agreed, g.goals.len() as u64 - agreed)
            }),
        ),
        (
            Task::Intent,
            turn_level(&|g| g.intent.iter().map(Option::is_some).collect()),
        ),
        (
            Task::Slots,
            turn_level(&|g| g.slots.iter().map(Option::is_some).collect()),
        ),
        (
            Task::FailurePoint,
            turn_level(&|g| g.failure_point.iter().map(Option::is_some).collect()),
        ),
    ];
    for (task, (with_gold, without_gold)) in entries {
        items.insert(
            task,
            ItemCount {
                with_gold,
                without_gold,
                unit: task.unit(),
            },
        );
    }
    GoldSummary {
        policy: config.policy,
        annotators: config.gold_annotators.clone(),
        dialogues: gold.len(),
        items,
    }
}

/// The average of the leave-one-out results (no intervals: each annotator
/// is judged on its own gold items).
fn mean_result(results: &[&SystemResult]) -> SystemResult {
    let mut mean = results[0].clone();
    mean.name = "human_leave_one_out".into();
    mean.kind = "human_leave_one_out";
    for (task, result) in mean.tasks.iter_mut() {
        result.per_class = None;
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
    mean
}

fn input_check(
    labels: &SystemLabels,
    gold_dialogues: &BTreeSet<&String>,
    gold_intents: &BTreeSet<&String>,
) -> InputCheck {
    let mut check = InputCheck {
        dialogues: labels.len(),
        ..InputCheck::default()
    };
    let mut missing: Vec<&String> = gold_dialogues
        .iter()
        .filter(|d| !labels.contains_key(d.as_str()))
        .copied()
        .collect();
    missing.sort();
    let mut extra: Vec<&String> = labels
        .keys()
        .filter(|d| !gold_dialogues.contains(d))
        .collect();
    extra.sort();
    check.missing_dialogues = missing.len();
    check.extra_dialogues = extra.len();
    check.examples_missing = missing.iter().take(5).map(|d| d.to_string()).collect();
    check.examples_extra = extra.iter().take(5).map(|d| d.to_string()).collect();
    for turn in labels.values().flatten().flatten() {
        if let Some(intent) = &turn.intent
            && !gold_intents.contains(intent)
        {
            *check
                .unknown_labels
                .entry("intent")
                .or_default()
                .entry(intent.clone())
                .or_default() += 1;
        }
        if let Some(f) = &turn.failure_point
            && FailurePoint::parse(f).is_none()
        {
            *check
                .unknown_labels
                .entry("failure_point")
                .or_default()
                .entry(f.clone())
                .or_default() += 1;
        }
    }
    check
}
