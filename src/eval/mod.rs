//! `labelgen eval`: judges labels against 3-annotator gold, side by side with
//! the single-pass annotator and human leave-one-out, with bootstrap
//! intervals, paired tests, threshold sweeps, plots and a review list.
//!
//! [`run`] goes through these phases, in order:
//! 1. read the annotations (by annotator) and the predictions;
//! 2. derive the gold once per dialogue, in the fixed order every system is
//!    judged in, with the class vocabulary and the Pk window;
//! 3. judge every prediction, the copy-the-runtime baseline (with
//!    `--turns`) and every baseline annotator on that gold, with intervals
//!    and a paired test against the baseline annotator;
//! 4. human leave-one-out: each gold annotator against the gold of the others;
//! 5. the same systems on the turns whose meaning needs context;
//! 6. the other report sections: confusion matrices, threshold sweeps,
//!    annotator quality, input checks, the review list;
//! 7. write the report directory in one rename.
//!
//! Modules, each depending only on those above it (no cycles):
//! - `gold`: labels by system, and gold derived from annotators;
//! - `judge`: one system against the gold, as counts per task and dialogue;
//! - `results`: per-system, per-task results assembled from judgements;
//! - `runtime`: the runtime's own hypotheses in the logs read as labels;
//! - `subset`: the systems judged again on the context subset;
//! - `report`: the whole report's types and its other sections (it
//!   re-exports the result types at their old paths);
//! - `render`: report.md from the report; `review`: the review list;
//! - `output`: the report directory; this module: the phases above.
//!
//! Metrics and plots are the crate's shared [`crate::metrics`] and
//! [`crate::plot`]; annotator ids come from [`crate::data::annotators`];
//! eval depends on nothing in `model` or `stages`.

pub mod gold;
pub mod judge;
mod output;
pub mod render;
pub mod report;
pub mod results;
mod review;
pub mod runtime;
pub mod subset;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use crate::data::annotators::{GOLD_ANNOTATORS, SINGLE_ANNOTATOR, TRUTH_ANNOTATOR};
use crate::data::dataset::read_table_counted;
use crate::data::inputs::InputSnapshot;
use crate::data::tables::{Annotation, Label, Turn};
use gold::{GoldDialogue, GoldPolicy, SystemLabels};
use judge::{JudgedSystem, Judgement, Task, Vocabulary, judge};
use report::{EvalReport, Settings};
use results::{
    ANNOTATOR, Bootstrap, PREDICTION, RUNTIME, SystemResult, mean_result, system_result,
};
use review::{ReviewItem, TurnText};
use runtime::{RuntimeBaseline, runtime_baseline};

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
    /// Logs, for the utterances in the review list and the copy-the-runtime
    /// baseline.
    pub turns: Option<PathBuf>,
    /// Judge the runtime's own hypotheses in `turns` as the system `runtime`.
    pub runtime_baseline: bool,
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
            baseline_annotators: vec![SINGLE_ANNOTATOR.into()],
            gold_annotators: GOLD_ANNOTATORS.map(String::from).to_vec(),
            policy: GoldPolicy::Unanimous,
            turns: None,
            runtime_baseline: true,
            out,
            bootstrap_resamples: 1000,
            seed: 0,
            annotator_turns_per_hour: 120.0,
            review_confidence: 0.9,
            overwrite: false,
        }
    }
}

/// The phases of the module doc: writes the report directory `config.out`
/// and returns the report.
pub fn run(config: &EvalConfig) -> anyhow::Result<EvalReport> {
    check(config)?;
    // Stamped before reading, and the staging directory made before the
    // work: an input changed meanwhile, or an OUT that cannot be written,
    // fails the run naming the file, and nothing is moved into place.
    let inputs = eval_inputs(config)?;
    let staging = output::Staging::begin(&config.out, config.overwrite)?;
    let tables = Tables::read(config)?;
    let basis = Basis::derive(config, &tables);
    check_overlap(config, &tables, &basis)?;
    let judged = judge_systems(config, &tables, &basis);
    let baseline = baseline_judgement(config, &judged);
    let mut systems = system_results(config, &judged, baseline, &basis);
    let left_out = leave_one_out(config, &tables, &basis);
    systems.extend(mean_result(&left_out.results.iter().collect::<Vec<_>>()));
    let context = judge_context_subset(config, &tables, &basis, &left_out);
    let review_items = review_items(config, &tables, &basis);
    let turns_judged: u64 = basis.gold.iter().map(|(_, g)| g.turns as u64).sum();
    let report = EvalReport {
        labelgen_version: env!("CARGO_PKG_VERSION"),
        gold: report::gold_summary(config.policy, &config.gold_annotators, &basis.gold),
        subsets: BTreeMap::from([(subset::CONTEXT_SUBSET, context)]),
        failure_point_vs_human: report::failure_point_vs_human(&systems),
        confusion_labels: basis.vocabulary.failure_point.clone(),
        confusion: report::confusion(&judged, basis.vocabulary.failure_point.len()),
        threshold_sweeps: report::threshold_sweeps(
            &judged,
            baseline.map(|b| &b.judgement),
            turns_judged,
            config.annotator_turns_per_hour,
        ),
        annotators: annotator_quality(config, &tables, &systems, &left_out),
        inputs: report::input_checks(&tables.checked_inputs(), &basis.gold),
        read_warnings: tables.read_warnings,
        review_items: review_items.len(),
        settings: Settings {
            bootstrap_resamples: config.bootstrap_resamples,
            seed: config.seed,
            annotator_turns_per_hour: config.annotator_turns_per_hour,
            review_confidence: config.review_confidence,
        },
        systems,
    };
    staging.commit(&report, &review_items, &basis.vocabulary, &inputs)?;
    Ok(report)
}

/// What eval reads: the gold annotations, every labels table and the logs.
fn eval_inputs(config: &EvalConfig) -> anyhow::Result<InputSnapshot> {
    let mut inputs = InputSnapshot::of_dataset(&config.gold)?;
    let others = config
        .preds
        .iter()
        .map(|(_, path)| path)
        .chain(&config.turns);
    for path in others {
        inputs.add(InputSnapshot::of_dataset(path)?);
    }
    Ok(inputs)
}

/// Settings that cannot work, and an OUT that would be replaced unasked.
fn check(config: &EvalConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.gold_annotators.is_empty(),
        "--gold-annotators needs at least one annotator"
    );
    anyhow::ensure!(
        config.annotator_turns_per_hour > 0.0,
        "--annotator-turns-per-hour must be positive, got {}",
        config.annotator_turns_per_hour
    );
    if config.runtime_baseline && config.turns.is_some() {
        anyhow::ensure!(
            config.preds.iter().all(|(name, _)| name != RUNTIME),
            "--pred name `{RUNTIME}` is the copy-the-runtime baseline's\n  hint: name the labels otherwise, or pass --no-runtime-baseline"
        );
    }
    if config.out.exists() && !config.overwrite {
        anyhow::bail!(
            "{} already exists\n  hint: pass --force to replace it, or choose another --out",
            config.out.display()
        );
    }
    Ok(())
}

/// A labels table that shares no dialogue with the gold judges nothing: a
/// wrong file, not a model that scores zero. (Some dialogues outside the
/// gold are normal, labels cover more traffic than is annotated; the report's
/// input checks count them and the command prints the count.)
fn check_overlap(config: &EvalConfig, tables: &Tables, basis: &Basis) -> anyhow::Result<()> {
    if basis.dialogues.is_empty() {
        return Ok(());
    }
    for ((name, labels), (_, path)) in tables.preds.iter().zip(&config.preds) {
        if labels.keys().any(|d| basis.dialogues.contains(d)) {
            continue;
        }
        let mut labelled: Vec<&String> = labels.keys().collect();
        labelled.sort();
        let examples = |ids: Vec<&String>| {
            ids.iter()
                .take(3)
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        anyhow::bail!(
            "{}: labels `{name}` share no dialogue with the gold in {}: {} labelled dialogue(s) ({}), \
             {} gold dialogue(s) ({})\n  hint: label the logs the gold annotations are for",
            path.display(),
            config.gold.display(),
            labelled.len(),
            examples(labelled.clone()),
            basis.dialogues.len(),
            examples(basis.dialogues.iter().copied().collect()),
        );
    }
    Ok(())
}

/// The labels eval reads, by system.
struct Tables {
    /// Every annotator of the gold table: the gold and baseline annotators
    /// (checked present) and any other, such as the simulator's truth.
    annotators: BTreeMap<String, SystemLabels>,
    /// The predictions, in `--pred` order.
    preds: Vec<(String, SystemLabels)>,
    /// The logs (`--turns`).
    turns: Option<Vec<Turn>>,
    /// The runtime's hypotheses in the logs, unless `--no-runtime-baseline`.
    runtime: Option<RuntimeBaseline>,
    /// Non-fatal problems read in the tables (printed on stderr as read).
    read_warnings: usize,
}

impl Tables {
    fn read(config: &EvalConfig) -> anyhow::Result<Tables> {
        let (annotations, mut read_warnings) = read_table_counted::<Annotation>(&config.gold)?;
        let annotators = gold::by_annotator(annotations, &config.gold)?;
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
        let mut preds = Vec::new();
        for (name, path) in &config.preds {
            let (rows, warnings) = read_table_counted::<Label>(path)?;
            read_warnings += warnings;
            preds.push((name.clone(), gold::from_labels(rows, path)?));
        }
        let turns = match &config.turns {
            Some(path) => {
                let (rows, warnings) = read_table_counted::<Turn>(path)?;
                read_warnings += warnings;
                Some(rows)
            }
            None => None,
        };
        let runtime = match (&config.turns, &turns) {
            (Some(path), Some(rows)) if config.runtime_baseline => {
                Some(runtime_baseline(rows, path)?)
            }
            _ => None,
        };
        Ok(Tables {
            annotators,
            preds,
            turns,
            runtime,
            read_warnings,
        })
    }

    /// The predictions, then the runtime baseline: the systems judged
    /// beside the annotators, with the tasks each can be judged on.
    fn systems(&self) -> Vec<(&str, &'static str, &SystemLabels, &[Task])> {
        let preds = self
            .preds
            .iter()
            .map(|(name, labels)| (name.as_str(), PREDICTION, labels, &Task::ALL[..]));
        let runtime = self
            .runtime
            .iter()
            .map(|r| (RUNTIME, RUNTIME, &r.labels, r.tasks.as_slice()));
        preds.chain(runtime).collect()
    }

    /// The labels whose coverage of the gold the report checks.
    fn checked_inputs(&self) -> Vec<(&str, &SystemLabels)> {
        self.systems()
            .into_iter()
            .map(|(name, _, labels, _)| (name, labels))
            .collect()
    }

    /// A gold or baseline annotator's labels (`read` checked they exist).
    fn annotator(&self, name: &str) -> &SystemLabels {
        &self.annotators[name]
    }
}

/// The gold every system is judged on, and what judging needs besides.
struct Basis<'a> {
    /// The gold annotators' labels, in `--gold-annotators` order.
    gold_labels: Vec<&'a SystemLabels>,
    /// Every dialogue any gold annotator labelled: the order of `gold`.
    dialogues: BTreeSet<&'a String>,
    gold: Vec<(String, GoldDialogue)>,
    vocabulary: Vocabulary,
    pk_window: usize,
}

impl<'a> Basis<'a> {
    fn derive(config: &EvalConfig, tables: &'a Tables) -> Basis<'a> {
        let gold_labels: Vec<&SystemLabels> = config
            .gold_annotators
            .iter()
            .map(|a| tables.annotator(a))
            .collect();
        let dialogues: BTreeSet<&String> = gold_labels.iter().flat_map(|a| a.keys()).collect();
        let gold = gold::derive_all(&gold_labels, &dialogues, config.policy);
        let segmentations: Vec<&[i32]> = gold
            .iter()
            .filter_map(|(_, g)| g.segmentation.as_deref())
            .collect();
        let every_system: Vec<&SystemLabels> = tables
            .annotators
            .values()
            .chain(tables.systems().into_iter().map(|(_, _, labels, _)| labels))
            .collect();
        Basis {
            pk_window: crate::metrics::pk_window(&segmentations),
            vocabulary: Vocabulary::from_systems(&every_system),
            gold_labels,
            dialogues,
            gold,
        }
    }

    fn judge(&self, labels: &SystemLabels) -> Judgement {
        judge(labels, &self.gold, &self.vocabulary, self.pk_window)
    }
}

/// The predictions, the runtime baseline, then the baseline annotators,
/// each on the same gold.
fn judge_systems(config: &EvalConfig, tables: &Tables, basis: &Basis) -> Vec<JudgedSystem> {
    let baselines = config.baseline_annotators.iter().map(|name| {
        (
            name.as_str(),
            ANNOTATOR,
            tables.annotator(name),
            &Task::ALL[..],
        )
    });
    tables
        .systems()
        .into_iter()
        .chain(baselines)
        .map(|(name, kind, labels, tasks)| JudgedSystem {
            name: name.to_string(),
            kind,
            tasks: tasks.to_vec(),
            judgement: basis.judge(labels),
        })
        .collect()
}

/// The first baseline annotator, which predictions are tested against.
fn baseline_judgement<'j>(
    config: &EvalConfig,
    judged: &'j [JudgedSystem],
) -> Option<&'j JudgedSystem> {
    let name = config.baseline_annotators.first()?;
    judged
        .iter()
        .find(|s| &s.name == name && s.kind == ANNOTATOR)
}

fn system_results(
    config: &EvalConfig,
    judged: &[JudgedSystem],
    baseline: Option<&JudgedSystem>,
    basis: &Basis,
) -> Vec<SystemResult> {
    let bootstrap = Bootstrap {
        resamples: config.bootstrap_resamples,
        seed: config.seed,
    };
    judged
        .iter()
        .map(|s| {
            // Predictions and the runtime baseline are tested against the
            // baseline annotator; the annotators themselves are not.
            let baseline = baseline
                .filter(|_| s.kind != ANNOTATOR)
                .map(|b| (b.name.as_str(), &b.judgement));
            let classes = &basis.vocabulary.failure_point;
            system_result(
                &s.name,
                s.kind,
                &s.judgement,
                baseline,
                classes,
                bootstrap,
                &s.tasks,
            )
        })
        .collect()
}

/// Each gold annotator judged against the gold of the others, and that gold.
#[derive(Default)]
struct LeaveOneOut {
    results: Vec<SystemResult>,
    /// In `--gold-annotators` order, like `results`.
    golds: Vec<Vec<(String, GoldDialogue)>>,
}

fn leave_one_out(config: &EvalConfig, tables: &Tables, basis: &Basis) -> LeaveOneOut {
    // With one gold annotator (a corpus's own labels, e.g. SGD) there is no
    // one to leave out: the gold is that annotator and no human row is given.
    if config.gold_annotators.len() < 2 {
        return LeaveOneOut::default();
    }
    // No intervals: each annotator is judged on its own gold items.
    let no_intervals = Bootstrap {
        resamples: 0,
        seed: config.seed,
    };
    let mut left_out = LeaveOneOut::default();
    for (i, name) in config.gold_annotators.iter().enumerate() {
        let others: Vec<&SystemLabels> = basis
            .gold_labels
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, a)| *a)
            .collect();
        let gold_of_others = gold::derive_all(&others, &basis.dialogues, config.policy);
        let judgement = judge(
            tables.annotator(name),
            &gold_of_others,
            &basis.vocabulary,
            basis.pk_window,
        );
        let classes = &basis.vocabulary.failure_point;
        left_out.results.push(system_result(
            name,
            ANNOTATOR,
            &judgement,
            None,
            classes,
            no_intervals,
            &Task::ALL,
        ));
        left_out.golds.push(gold_of_others);
    }
    left_out
}

/// The same systems on the turns whose meaning needs context, as the
/// simulator's truth rows mark them.
fn judge_context_subset(
    config: &EvalConfig,
    tables: &Tables,
    basis: &Basis,
    left_out: &LeaveOneOut,
) -> subset::SubsetReport {
    let baselines = config.baseline_annotators.iter().map(|name| {
        (
            name.as_str(),
            ANNOTATOR,
            tables.annotator(name),
            &Task::ALL[..],
        )
    });
    let systems: Vec<subset::SubsetInput> = tables
        .systems()
        .into_iter()
        .chain(baselines)
        .map(|(name, kind, labels, tasks)| subset::SubsetInput {
            name,
            kind,
            labels,
            tasks,
        })
        .collect();
    let leave_one_out: Vec<subset::LeftOut> = config
        .gold_annotators
        .iter()
        .zip(&left_out.golds)
        .map(|(name, gold_of_others)| subset::LeftOut {
            name,
            labels: tables.annotator(name),
            gold_of_others,
        })
        .collect();
    subset::context_report(&subset::ContextInputs {
        marked_by: TRUTH_ANNOTATOR,
        marks: tables.annotators.get(TRUTH_ANNOTATOR),
        gold: &basis.gold,
        systems: &systems,
        leave_one_out: &leave_one_out,
        vocabulary: &basis.vocabulary,
        pk_window: basis.pk_window,
        bootstrap: Bootstrap {
            resamples: config.bootstrap_resamples,
            seed: config.seed,
        },
    })
}

/// Gold and baseline annotators and predictions: each annotator against
/// the gold of the others (a gold annotator) or the full gold (a baseline),
/// and everyone's agreement with everyone.
fn annotator_quality(
    config: &EvalConfig,
    tables: &Tables,
    systems: &[SystemResult],
    left_out: &LeaveOneOut,
) -> BTreeMap<String, report::AnnotatorQuality> {
    let named =
        |n: &String| config.gold_annotators.contains(n) || config.baseline_annotators.contains(n);
    let everyone: Vec<(&str, &SystemLabels)> = tables
        .annotators
        .iter()
        .filter(|(n, _)| named(n))
        .map(|(n, a)| (n.as_str(), a))
        .chain(tables.checked_inputs())
        .collect();
    // A gold annotator's leave-one-out result comes before any other of its name.
    let results: Vec<&SystemResult> = left_out
        .results
        .iter()
        .chain(systems.iter().filter(|s| s.kind == ANNOTATOR))
        .collect();
    report::annotator_quality(&everyone, &results)
}

/// Items to re-annotate, with the turns' text when `--turns` is given.
fn review_items(config: &EvalConfig, tables: &Tables, basis: &Basis) -> Vec<ReviewItem> {
    let turn_text = tables.turns.as_deref().map(turn_text);
    let gold_named: Vec<(&str, &SystemLabels)> = config
        .gold_annotators
        .iter()
        .map(|n| (n.as_str(), tables.annotator(n)))
        .collect();
    review::collect(
        &gold_named,
        &basis.gold,
        tables.preds.first().map(|(n, p)| (n.as_str(), p)),
        turn_text.as_ref(),
        config.review_confidence,
    )
}

fn turn_text(turns: &[Turn]) -> TurnText {
    turns
        .iter()
        .map(|t| {
            (
                (t.dialogue_id.clone(), t.turn_index),
                (t.user_utterance.clone(), t.system_response.clone()),
            )
        })
        .collect::<HashMap<_, _>>()
}
