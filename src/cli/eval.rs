//! `labelgen eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};

use labelgen::eval::report::EvalReport;
use labelgen::eval::{self, EvalConfig, gold::GoldPolicy};

use super::parse::parse_preds;
use super::summary::print_summary;

#[derive(Args)]
pub struct EvalArgs {
    /// Annotations table with the gold annotators (and the baseline annotator)
    #[arg(long)]
    gold: PathBuf,
    /// A labels table to judge, as NAME=PATH or PATH (named model, model2, ...); repeatable
    #[arg(long = "pred", value_name = "[NAME=]LABELS")]
    preds: Vec<String>,
    /// Annotator judged beside the predictions and used as the bar to beat; repeatable;
    /// `none` where the gold table has no such annotator (SGD)
    #[arg(long = "baseline-annotator", default_value = "single")]
    baseline_annotators: Vec<String>,
    /// The annotators whose agreement is the gold; one annotator is its own gold
    /// (no human leave-one-out then)
    #[arg(long, value_delimiter = ',', default_value = "a1,a2,a3")]
    gold_annotators: Vec<String>,
    /// unanimous: all gold annotators agree (corroborated); majority: at least two of three
    #[arg(long, value_enum, default_value = "unanimous")]
    gold_policy: GoldPolicy,
    /// The logs: utterances for the review list, and the runtime's own hypotheses
    /// (nlu_intent, dialogue_status), judged as the system `runtime`
    #[arg(long)]
    turns: Option<PathBuf>,
    /// Leave the copy-the-runtime baseline (the system `runtime`) out of the report
    #[arg(long)]
    no_runtime_baseline: bool,
    /// Report directory
    #[arg(long)]
    out: PathBuf,
    /// Bootstrap resamples for intervals and paired tests (0 turns them off)
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A human annotator's throughput, for annotator-hours saved
    #[arg(long, default_value_t = 120.0)]
    annotator_turns_per_hour: f64,
    /// A prediction this confident that disagrees with the gold goes on the review list
    #[arg(long, default_value_t = 0.9)]
    review_confidence: f64,
    /// Replace an existing report directory
    #[arg(long)]
    force: bool,
}

impl EvalArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let config = self.into_config()?;
        let report = eval::run(&config)?;
        for warning in input_warnings(&report) {
            eprintln!("warning: {warning}");
        }
        print_summary(&summary(&report, &config.out))
    }

    pub fn into_config(self) -> anyhow::Result<EvalConfig> {
        Ok(EvalConfig {
            preds: parse_preds(&self.preds)?,
            baseline_annotators: self
                .baseline_annotators
                .into_iter()
                .filter(|a| a != "none")
                .collect(),
            gold_annotators: self.gold_annotators,
            policy: self.gold_policy,
            turns: self.turns,
            runtime_baseline: !self.no_runtime_baseline,
            bootstrap_resamples: self.bootstrap,
            seed: self.seed,
            annotator_turns_per_hour: self.annotator_turns_per_hour,
            review_confidence: self.review_confidence,
            overwrite: self.force,
            ..EvalConfig::new(self.gold, self.out)
        })
    }
}

/// Where the report went, each system's headline figure per task, and the
/// length of the review list.
fn summary(report: &EvalReport, out: &Path) -> Value {
    json!({
        "report": out.join("report.md"),
        "report_json": out.join("report.json"),
        "headline": headline(report),
        "review_items": report.review_items,
        "input_warnings": input_warnings(report),
        // A count, as label's and train's `input_warnings` are: the name
        // was taken here by the list of coverage warnings above.
        "read_warnings": report.read_warnings,
    })
}

/// Labels for dialogues outside the gold are not judged, and gold dialogues
/// without labels count as unlabelled: neither stops eval (labels often
/// cover more traffic than was annotated), but both are said, not only in
/// the report's last section.
fn input_warnings(report: &EvalReport) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, check) in &report.inputs {
        if check.extra_dialogues > 0 {
            warnings.push(format!(
                "labels `{name}`: {} of {} dialogue(s) are not in the gold and were not judged (e.g. {})",
                check.extra_dialogues,
                check.dialogues,
                check.examples_extra.join(", ")
            ));
        }
        if check.missing_dialogues > 0 {
            warnings.push(format!(
                "labels `{name}`: {} gold dialogue(s) have no labels and count as unlabelled (e.g. {})",
                check.missing_dialogues,
                check.examples_missing.join(", ")
            ));
        }
    }
    warnings
}

/// System -> task -> {headline metric: value}.
fn headline(report: &EvalReport) -> Map<String, Value> {
    report
        .systems
        .iter()
        .map(|s| {
            let tasks = s
                .tasks
                .iter()
                .map(|(t, r)| {
                    let figure = json!({r.headline: r.metrics[r.headline].value});
                    (t.name().to_string(), figure)
                })
                .collect();
            (s.name.clone(), Value::Object(tasks))
        })
        .collect()
}
