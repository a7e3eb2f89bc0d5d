//! The plan: which steps a pipeline file asks for, in order, with the paths
//! each reads and writes. Built and validated before any work starts, so a
//! bad path or a missing model is an error before the first step runs.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::config::{PipelineFile, TASKS};
use crate::stages::train::MAX_SPLICE_GOALS;

/// The steps, in the order they run. Labelling comes after promotion so
/// tonight's labels already use the best model there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    Simulate,
    Ingest,
    Synth,
    Pretrain,
    Train,
    Promote,
    Label,
    Review,
    Eval,
    /// The nightly report, last: it reads the labels and eval's results.
    Report,
}

impl StepName {
    pub const ALL: [StepName; 10] = [
        StepName::Simulate,
        StepName::Ingest,
        StepName::Synth,
        StepName::Pretrain,
        StepName::Train,
        StepName::Promote,
        StepName::Label,
        StepName::Review,
        StepName::Eval,
        StepName::Report,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Simulate => "simulate",
            StepName::Ingest => "ingest",
            StepName::Synth => "synth",
            StepName::Pretrain => "pretrain",
            StepName::Train => "train",
            StepName::Promote => "promote",
            StepName::Label => "label",
            StepName::Review => "review",
            StepName::Eval => "eval",
            StepName::Report => "report",
        }
    }
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StepName {
    type Err = String;
    fn from_str(value: &str) -> Result<StepName, String> {
        StepName::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = StepName::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown step `{value}`; steps are {}", names.join(", "))
            })
    }
}

/// Where everything lives: the step outputs under the work dir, the
/// datasets the steps read, and the models.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub work_dir: PathBuf,
    pub models_dir: PathBuf,
    pub train_turns: Option<PathBuf>,
    pub train_annotations: Option<PathBuf>,
    pub heldout_turns: Option<PathBuf>,
    pub heldout_gold: Option<PathBuf>,
    /// The logs the champion labels every night.
    pub label_turns: Option<PathBuf>,
}

impl Layout {
    pub fn output(&self, step: StepName) -> PathBuf {
        let name = match step {
            StepName::Pretrain => "pretrained",
            StepName::Train => "challenger",
            other => other.as_str(),
        };
        self.work_dir.join(name)
    }
    pub fn champion(&self) -> PathBuf {
        self.models_dir.join("champion")
    }
    pub fn previous(&self) -> PathBuf {
        self.models_dir.join("previous")
    }
    pub fn manifest(&self) -> PathBuf {
        self.work_dir.join("manifest.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.work_dir.join("pipeline.lock")
    }
    /// What the report keeps between runs (eval results, daily label counts).
    pub fn history(&self) -> PathBuf {
        self.work_dir.join("history")
    }

    fn new(file: &PipelineFile) -> Layout {
        let work = file.pipeline.work_dir.clone();
        let sim = work.join("simulate");
        let simulated = |p: &str| file.simulate.as_ref().map(|_| sim.join(p));
        let data = file.data.clone().unwrap_or_default();
        let train_turns = simulated("train/turns").or(data.train_turns);
        let ingested = file
            .ingest
            .as_ref()
            .map(|_| work.join("ingest").join("turns"));
        Layout {
            models_dir: file.models_dir(),
            label_turns: file
                .label
                .as_ref()
                .and_then(|l| l.logs.clone())
                .or(ingested)
                .or_else(|| train_turns.clone()),
            train_turns,
            train_annotations: simulated("train/annotations").or(data.train_annotations),
            heldout_turns: simulated("heldout/turns").or(data.heldout_turns),
            heldout_gold: simulated("heldout/annotations").or(data.heldout_gold),
            work_dir: work,
        }
    }
}

/// One step of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: StepName,
    /// Files and directories whose fingerprints decide whether to rerun.
    pub inputs: Vec<PathBuf>,
    /// The directory the step writes, staged beside it and renamed in.
    pub output: PathBuf,
    /// Paths outside `output` the step changes (the champion model).
    pub also_changes: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub layout: Layout,
    pub steps: Vec<Step>,
}

impl Plan {
    /// The steps `file` asks for, after checking that every path and model
    /// they need exists or will be made by an earlier step.
    pub fn build(file: &PipelineFile, origin: &Path) -> anyhow::Result<Plan> {
        let layout = Layout::new(file);
        let problems = validate(file, &layout);
        if !problems.is_empty() {
            anyhow::bail!(
                "{}: the pipeline cannot run:\n  - {}",
                origin.display(),
                problems.join("\n  - ")
            );
        }
        let steps = StepName::ALL
            .into_iter()
            .filter_map(|name| step(file, &layout, name))
            .collect();
        Ok(Plan { layout, steps })
    }

    pub fn get(&self, name: StepName) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

fn step(file: &PipelineFile, layout: &Layout, name: StepName) -> Option<Step> {
    let some = |paths: &[&Option<PathBuf>]| -> Vec<PathBuf> {
        paths.iter().filter_map(|p| (*p).clone()).collect()
    };
    let inputs = match name {
        StepName::Simulate => file.simulate.as_ref().map(|_| Vec::new()),
        StepName::Ingest => file.ingest.as_ref().map(|i| vec![i.logs.clone()]),
        StepName::Synth => file.pretrain.as_ref().map(|_| some(&[&layout.train_turns])),
        StepName::Pretrain => file.pretrain.as_ref().map(|p| {
            let mut inputs = vec![layout.output(StepName::Synth)];
            inputs.extend(p.init.clone());
            inputs
        }),
        StepName::Train => file.train.as_ref().map(|t| {
            let init = t
                .init
                .clone()
                .unwrap_or_else(|| layout.output(StepName::Pretrain));
            let mut inputs = vec![init];
            inputs.extend(some(&[&layout.train_turns, &layout.train_annotations]));
            inputs
        }),
        StepName::Promote => file.train.as_ref().map(|_| {
            let mut inputs = vec![layout.output(StepName::Train), layout.champion()];
            inputs.extend(some(&[&layout.heldout_turns, &layout.heldout_gold]));
            inputs
        }),
        StepName::Label => file.label.as_ref().map(|_| {
            let mut inputs = vec![layout.champion()];
            inputs.extend(some(&[&layout.label_turns]));
            inputs
        }),
        StepName::Review => file.review.as_ref().map(|_| {
            let mut inputs = vec![layout.output(StepName::Label)];
            inputs.extend(some(&[&layout.label_turns]));
            inputs
        }),
        StepName::Eval => file.eval.as_ref().map(|_| {
            let mut inputs = vec![layout.champion()];
            inputs.extend(some(&[&layout.heldout_turns, &layout.heldout_gold]));
            inputs
        }),
        StepName::Report => file.report.as_ref().map(|_| {
            let mut inputs = Vec::new();
            if file.label.is_some() {
                inputs.push(layout.output(StepName::Label));
                inputs.extend(some(&[&layout.label_turns]));
            }
            if file.eval.is_some() {
                inputs.push(layout.output(StepName::Eval));
            }
            inputs
        }),
    }?;
    let also_changes = match name {
        StepName::Promote => vec![layout.champion(), layout.previous()],
        StepName::Report => vec![layout.history()],
        _ => Vec::new(),
    };
    Some(Step {
        name,
        inputs,
        output: layout.output(name),
        also_changes,
    })
}

/// Every reason the pipeline cannot run, so one attempt shows them all.
fn validate(file: &PipelineFile, layout: &Layout) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |ok: bool, problem: String| {
        if !ok {
            problems.push(problem);
        }
    };
    need(
        !file.pipeline.name.trim().is_empty(),
        "[pipeline] name is empty".into(),
    );
    // A relative work dir (out/pipeline-demo in a fresh clone) is created
    // with its parents; an absolute one needs its parent, so a mistyped
    // mount point is an error rather than a new tree on the root disk.
    let work_parent = parent_of(&file.pipeline.work_dir);
    need(
        file.pipeline.work_dir.is_relative() || work_parent.is_dir(),
        format!(
            "[pipeline] work_dir {}: its parent directory {} does not exist",
            file.pipeline.work_dir.display(),
            work_parent.display()
        ),
    );
    need(
        !(file.simulate.is_some() && file.data.is_some()),
        "[simulate] and [data] both give the datasets; keep one".into(),
    );
    if let Some(ingest) = &file.ingest {
        // Simulated hive logs are made by the simulate step, before ingest.
        let simulated = file.simulate.is_some()
            && absolute(&ingest.logs).starts_with(absolute(&layout.output(StepName::Simulate)));
        need(
            simulated || ingest.logs.is_dir(),
            format!("[ingest] logs {}: no such directory", ingest.logs.display()),
        );
        // The logs are the step's fingerprinted input: an output inside them
        // would change them on every run (and be read back as logs).
        let output = layout.output(StepName::Ingest);
        let (logs, out) = (absolute(&ingest.logs), absolute(&output));
        need(
            !logs.starts_with(&out) && !out.starts_with(&logs),
            format!(
                "[ingest] logs {} and the step's output {} overlap: keep [pipeline] work_dir outside the logs",
                ingest.logs.display(),
                output.display()
            ),
        );
    }
    if let Some(logs) = file.label.as_ref().and_then(|l| l.logs.as_ref()) {
        need(
            logs.exists(),
            format!("[label] logs {}: no such file or directory", logs.display()),
        );
    }
    if let Some(data) = &file.data {
        for (key, path) in [
            ("train_turns", &data.train_turns),
            ("train_annotations", &data.train_annotations),
            ("heldout_turns", &data.heldout_turns),
            ("heldout_gold", &data.heldout_gold),
        ] {
            if let Some(path) = path {
                need(
                    path.exists(),
                    format!("[data] {key} {}: no such file or directory", path.display()),
                );
            }
        }
    }
    validate_models(file, layout, &mut problems);
    validate_needs(file, layout, &mut problems);
    problems
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn validate_models(file: &PipelineFile, layout: &Layout, problems: &mut Vec<String>) {
    let is_model = |dir: &Path| dir.join("config.json").is_file();
    if let Some(init) = file.pretrain.as_ref().and_then(|p| p.init.as_ref())
        && !is_model(init)
    {
        problems.push(format!(
            "[pretrain] init {}: not a model directory (no config.json)",
            init.display()
        ));
    }
    if let Some(train) = &file.train {
        match (&train.init, &file.pretrain) {
            (Some(init), _) if !is_model(init) => problems.push(format!(
                "[train] init {}: not a model directory (no config.json)",
                init.display()
            )),
            (None, None) => problems.push(
                "[train] needs `init = \"PRETRAINED_MODEL_DIR\"` when there is no [pretrain]"
                    .into(),
            ),
            _ => {}
        }
        if let Some(share) = train.splice_goals
            && !(0.0..=MAX_SPLICE_GOALS).contains(&share)
        {
            problems.push(format!(
                "[train] splice_goals = {share}: expected a share of the training windows in [0, {MAX_SPLICE_GOALS}]"
            ));
        }
    }
    let uses_champion = file.label.is_some() || file.eval.is_some();
    if uses_champion && file.train.is_none() && !is_model(&layout.champion()) {
        problems.push(format!(
            "no champion model at {} and no [train] to make one",
            layout.champion().display()
        ));
    }
}

/// Datasets each configured step needs, and settings that must name tasks.
fn validate_needs(file: &PipelineFile, layout: &Layout, problems: &mut Vec<String>) {
    let mut require = |wanted: bool, path: &Option<PathBuf>, what: &str, why: &str| {
        if wanted && path.is_none() {
            problems.push(format!(
                "{why} needs {what}: give [simulate], or [data] {what}"
            ));
        }
    };
    let trains = file.train.is_some();
    require(
        file.pretrain.is_some(),
        &layout.train_turns,
        "train_turns",
        "[pretrain]",
    );
    require(trains, &layout.train_turns, "train_turns", "[train]");
    require(
        trains,
        &layout.train_annotations,
        "train_annotations",
        "[train]",
    );
    for (wanted, why) in [
        (trains, "[train] (promotion)"),
        (file.eval.is_some(), "[eval]"),
    ] {
        require(wanted, &layout.heldout_turns, "heldout_turns", why);
        require(wanted, &layout.heldout_gold, "heldout_gold", why);
    }
    if file.label.is_some() && layout.label_turns.is_none() {
        problems.push("[label] needs logs: give [simulate], [ingest] or [data] train_turns".into());
    }
    for (task, floor) in &file.quality_floor {
        if !TASKS.contains(&task.as_str()) {
            problems.push(format!(
                "[quality_floor] unknown task `{task}`; tasks are {}",
                TASKS.join(", ")
            ));
        }
        if !(0.0..=1.0).contains(floor) {
            problems.push(format!(
                "[quality_floor] {task} = {floor}: expected a value in [0, 1]"
            ));
        }
    }
    if !file.quality_floor.is_empty() && file.eval.is_none() {
        problems.push("[quality_floor] needs [eval] to measure the champion".into());
    }
    let promote_tasks = file.promote.as_ref().and_then(|p| p.tasks.as_ref());
    for task in promote_tasks.into_iter().flatten() {
        if !TASKS.contains(&task.as_str()) {
            problems.push(format!(
                "[promote] tasks: unknown task `{task}`; tasks are {}",
                TASKS.join(", ")
            ));
        }
    }
    let min_confidence = file.label.iter().flat_map(|l| &l.min_confidence);
    for (task, p) in min_confidence {
        if !TASKS.contains(&task.as_str()) || !(0.0..=1.0).contains(p) {
            problems.push(format!(
                "[label] min_confidence {task} = {p}: expected a task ({}) and a probability in [0, 1]",
                TASKS.join(", ")
            ));
        }
    }
    let policy = file.eval.as_ref().and_then(|e| e.gold_policy.as_deref());
    if let Some(policy) = policy.filter(|p| !["unanimous", "majority"].contains(p)) {
        problems.push(format!(
            "[eval] gold_policy `{policy}`: expected unanimous or majority"
        ));
    }
    if file.review.is_some() && file.label.is_none() {
        problems.push("[review] samples the labels: it needs [label]".into());
    }
    let review_tasks = file.review.as_ref().and_then(|r| r.tasks.as_ref());
    for task in review_tasks.into_iter().flatten() {
        if !["intent", "failure_point", "goal_success"].contains(&task.as_str()) {
            problems.push(format!(
                "[review] tasks: `{task}` cannot be sampled; tasks are intent, failure_point, goal_success"
            ));
        }
    }
    if let Some(report) = &file.report {
        if file.label.is_none() && file.eval.is_none() {
            problems.push(
                "[report] reports on labels and eval results: it needs [label] or [eval]".into(),
            );
        }
        if report.trailing_days == Some(0) {
            problems.push("[report] trailing_days = 0: expected at least 1 day".into());
        }
        if let Some(t) = report.drift_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            problems.push(format!(
                "[report] drift_threshold = {t}: expected a Jensen-Shannon distance in [0, 1]"
            ));
        }
    }
    if file.promote.is_some() && !trains {
        problems.push("[promote] needs [train] to make a challenger".into());
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> PipelineFile {
        PipelineFile::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn without_ingest_the_steps_are_planned_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[pipeline]\nname = \"d\"\nwork_dir = \"{}\"\n[simulate]\ndialogues = 10\nheldout_dialogues = 5\n\
             [pretrain]\n[train]\n[label]\n[eval]\n",
            dir.path().join("w").display()
        );
        let plan = Plan::build(&file(&text), Path::new("t.toml")).unwrap();
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "simulate", "synth", "pretrain", "train", "promote", "label", "eval"
            ]
        );
    }

    #[test]
    fn ingest_of_the_simulated_hive_logs_comes_after_simulate_and_label_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("w");
        let text = format!(
            "[pipeline]\nname = \"d\"\nwork_dir = \"{}\"\n[simulate]\ndialogues = 10\nheldout_dialogues = 5\n\
             hive_logs = true\n[ingest]\nlogs = \"{}\"\n[pretrain]\n[train]\n[label]\n[eval]\n",
            work.display(),
            work.join("simulate/train/logs/turns").display()
        );
        let plan = Plan::build(&file(&text), Path::new("t.toml")).unwrap();
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "simulate", "ingest", "synth", "pretrain", "train", "promote", "label", "eval"
            ]
        );
        assert_eq!(
            Layout::new(&file(&text)).label_turns,
            Some(work.join("ingest").join("turns"))
        );
    }

    #[test]
    fn every_problem_is_reported_before_work() {
        let text = "[pipeline]\nname = \"d\"\nwork_dir = \"/no/such/dir/w\"\n[train]\n[label]\n\
                    [quality_floor]\nintnet = 0.5\n";
        let error = Plan::build(&file(text), Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        for expected in ["/no/such/dir", "init", "train_turns", "intnet", "[eval]"] {
            assert!(
                error.contains(expected),
                "`{expected}` missing from: {error}"
            );
        }
    }

    #[test]
    fn step_names_parse_and_reject_typos() {
        assert_eq!("train".parse::<StepName>(), Ok(StepName::Train));
        assert!(
            "trian"
                .parse::<StepName>()
                .unwrap_err()
                .contains("pretrain")
        );
    }
}
