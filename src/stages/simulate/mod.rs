//! `labelgen simulate`: realistic assistant logs with their ground truth,
//! three gold annotators and a single-pass annotator. The project's
//! embedded default data.

mod annotators;
pub mod catalog;
pub mod dialogue;
pub mod difficulty;
pub mod hive;
mod scripts;
mod utterance;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

pub use dialogue::{ContextReason, ErrorRates, SimDialogue};
use difficulty::DialogueItems;

use crate::data::annotators::{GOLD_ANNOTATORS, SINGLE_ANNOTATOR};
use crate::data::dataset::DatasetWriter;
use crate::data::tables::{Annotation, Turn};
use crate::progress::Progress;

/// Dialogues generated (in parallel) and written per chunk: bounds memory.
const CHUNK_DIALOGUES: usize = 20_000;
/// Mixed into the seed for the stream that plans the annotation items.
const ITEM_STREAM_KEY: u64 = 0xD1B5_4A32_D192_ED03;
/// 2026-11-01T00:00:00Z: simulated logs are `days` days of traffic from here.
const DAY_START_US: i64 = 1_793_491_200_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct SimulateConfig {
    pub dialogues: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub rates: ErrorRates,
    /// Mean per-label error rate of each gold annotator (a1, a2, a3); per
    /// item it depends on the item's difficulty (see `annotators`).
    pub annotator_error: f64,
    /// Mean per-label error rate of the single-pass annotator.
    pub single_error: f64,
    /// Length of the simulated audio_embedding column; 0 leaves it out.
    pub audio_dim: usize,
    /// Days of traffic the dialogues' start times spread over (1: one day,
    /// the original output byte for byte).
    pub days: usize,
    /// Also write the turns as a collector delivers them, under
    /// OUT/logs/turns/date=.../hour=.../ (see [`hive`]).
    pub hive_logs: bool,
    pub overwrite: bool,
    pub quiet: bool,
}

impl SimulateConfig {
    pub fn new(dialogues: usize, seed: u64, out: PathBuf) -> SimulateConfig {
        SimulateConfig {
            dialogues,
            seed,
            out,
            rates: ErrorRates::default(),
            annotator_error: 0.06,
            single_error: 0.12,
            audio_dim: 8,
            days: 1,
            hive_logs: false,
            overwrite: false,
            quiet: true,
        }
    }
}

/// What a simulation produced, printed as JSON on stdout.
#[derive(Debug, Serialize)]
pub struct SimulateSummary {
    pub dialogues: usize,
    pub turns: usize,
    pub goals: usize,
    pub goal_success_rate: f64,
    pub turns_per_domain: BTreeMap<String, usize>,
    pub turns_per_intent: BTreeMap<String, usize>,
    pub turns_per_failure_point: BTreeMap<String, usize>,
    /// Share of turns whose meaning needs context, and why.
    pub context_share: f64,
    pub context_turns: BTreeMap<String, usize>,
    /// Turns where the ASR changed words but nothing failed.
    pub recovered_error_turns: usize,
    /// Per annotator and label: the share of items that differ from the truth.
    pub annotator_error_realised: BTreeMap<String, BTreeMap<&'static str, f64>>,
    pub annotator_error_requested: BTreeMap<String, f64>,
    /// How hard the annotation items are (see `difficulty`).
    pub item_difficulty: ItemDifficultySummary,
    /// Per turn-level label: the share of turns where the gold annotators do
    /// not all agree (no unanimous gold).
    pub gold_not_unanimous: BTreeMap<&'static str, f64>,
    pub rates: ErrorRates,
    pub seed: u64,
    pub turns_path: String,
    pub annotations_path: String,
    /// The hive copy of the turns (`--hive-logs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hive_logs: Option<hive::HiveSummary>,
    pub seconds: f64,
    pub turns_per_second: f64,
}

/// The annotation items' difficulty, for the summary.
#[derive(Debug, Serialize)]
pub struct ItemDifficultySummary {
    /// Mean turn difficulty (0 to 1).
    pub mean: f64,
    /// Share of turns at least `difficulty::AMBIGUOUS_FROM` hard.
    pub hard_share: f64,
    /// Per label, the items drawn genuinely ambiguous (turns; goal_boundary
    /// counts true boundaries, goal_success goals).
    pub ambiguous: BTreeMap<&'static str, usize>,
}

/// One simulated dialogue, its annotation items and every annotator's labels.
pub struct Generated {
    pub dialogue: SimDialogue,
    pub items: difficulty::DialogueItems,
    pub annotations: Vec<Annotation>,
}

/// Every dialogue of a simulation, generated deterministically from the seed
/// and the dialogue's index (so the thread count never changes the output).
pub fn generate(config: &SimulateConfig, index: usize) -> Generated {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(index as u64);
    let start_us =
        DAY_START_US + rng.random_range(0..86_400 * config.days.max(1) as i64) * 1_000_000;
    let dialogue_id = format!("sim{}-{index:07}", config.seed);
    let mut simulator = dialogue::Simulator {
        rng,
        rates: &config.rates,
        audio_dim: config.audio_dim,
    };
    let dialogue = simulator.dialogue(&dialogue_id, start_us);
    // The items' difficulty and decoys come from their own stream, shared by
    // every annotator.
    let mut item_rng = ChaCha8Rng::seed_from_u64(config.seed ^ ITEM_STREAM_KEY);
    item_rng.set_stream(index as u64);
    let items = difficulty::plan(&dialogue, &mut item_rng);
    let mut annotations = annotators::truth_annotations(&dialogue);
    let annotators = GOLD_ANNOTATORS
        .iter()
        .map(|a| (*a, config.annotator_error))
        .chain([(SINGLE_ANNOTATOR, config.single_error)]);
    for (k, (annotator, rate)) in annotators.enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(
            config.seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1)),
        );
        rng.set_stream(index as u64);
        annotations.extend(annotators::annotate(
            &dialogue, &items, annotator, rate, &mut rng,
        ));
    }
    Generated {
        dialogue,
        items,
        annotations,
    }
}

pub fn run(config: &SimulateConfig) -> anyhow::Result<SimulateSummary> {
    anyhow::ensure!(config.dialogues > 0, "--dialogues must be at least 1");
    for (name, rate) in [
        ("--annotator-error", config.annotator_error),
        ("--single-error", config.single_error),
        ("--false-wake-rate", config.rates.false_wake),
        ("--asr-error", config.rates.asr),
        ("--nlu-error", config.rates.nlu),
        ("--entity-error", config.rates.entity),
        ("--result-error", config.rates.result),
    ] {
        anyhow::ensure!(
            (0.0..1.0).contains(&rate),
            "{name} must be in [0, 1), got {rate}"
        );
    }
    let started = Instant::now();
    let turns_path = config.out.join("turns");
    let annotations_path = config.out.join("annotations");
    let turns_out = DatasetWriter::create(&turns_path, config.overwrite)?;
    let annotations_out = DatasetWriter::create(&annotations_path, config.overwrite)?;
    let mut hive = config
        .hive_logs
        .then(|| {
            hive::HiveWriter::create(
                &config.out.join("logs/turns"),
                config.seed,
                config.overwrite,
            )
        })
        .transpose()?;
    let progress = Progress::new(config.dialogues as u64, "dialogues", config.quiet);
    let mut tally = Tally::default();
    // Parquet encoding runs on its own thread, overlapping the next chunk's
    // generation; the channel holds one chunk, which bounds memory.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(Vec<Turn>, Vec<Annotation>)>(1);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let writer = scope.spawn(move || -> anyhow::Result<()> {
            let (mut turns_out, mut annotations_out) = (turns_out, annotations_out);
            for (turns, annotations) in receiver {
                let (a, b) = rayon::join(
                    || turns_out.write_rows(&turns),
                    || annotations_out.write_rows(&annotations),
                );
                a?;
                b?;
            }
            turns_out.finish::<Turn>()?;
            annotations_out.finish::<Annotation>()?;
            Ok(())
        });
        for chunk_start in (0..config.dialogues).step_by(CHUNK_DIALOGUES) {
            let chunk_end = (chunk_start + CHUNK_DIALOGUES).min(config.dialogues);
            let generated: Vec<Generated> = (chunk_start..chunk_end)
                .into_par_iter()
                .map(|i| generate(config, i))
                .collect();
            let mut turns: Vec<Turn> = Vec::new();
            let mut annotations: Vec<Annotation> = Vec::new();
            for one in generated {
                tally.add(&one.dialogue, &one.annotations);
                tally.add_items(&one.dialogue, &one.items, &one.annotations);
                turns.extend(one.dialogue.turns);
                annotations.extend(one.annotations);
            }
            if let Some(hive) = hive.as_mut() {
                hive.write_chunk(&turns, chunk_start / CHUNK_DIALOGUES)?;
            }
            if sender.send((turns, annotations)).is_err() {
                break; // the writer failed; its error is reported below
            }
            progress.inc((chunk_end - chunk_start) as u64);
        }
        drop(sender);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the Parquet writer thread panicked"))?
    })?;
    progress.finish();
    let hive_logs = hive.map(hive::HiveWriter::finish).transpose()?;
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = tally.summary(config, seconds, turns_path, annotations_path);
    summary.hive_logs = hive_logs;
    Ok(summary)
}

/// Running counts for the summary.
#[derive(Default)]
struct Tally {
    dialogues: usize,
    turns: usize,
    goals: usize,
    successes: usize,
    domains: BTreeMap<String, usize>,
    intents: BTreeMap<String, usize>,
    failures: BTreeMap<String, usize>,
    context: BTreeMap<String, usize>,
    context_turns: usize,
    recovered: usize,
    /// annotator -> label -> (wrong, items)
    disagreement: BTreeMap<String, BTreeMap<&'static str, (usize, usize)>>,
    difficulty_sum: f64,
    hard_turns: usize,
    ambiguous: BTreeMap<&'static str, usize>,
    /// label -> turns without unanimous gold
    not_unanimous: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn add(&mut self, dialogue: &SimDialogue, annotations: &[Annotation]) {
        self.dialogues += 1;
        self.turns += dialogue.turns.len();
        self.goals += dialogue.goal_success.len();
        self.successes += dialogue.goal_success.iter().filter(|s| **s).count();
        for truth in &dialogue.truth {
            *self
                .domains
                .entry(catalog::intent(truth.intent).domain.to_string())
                .or_default() += 1;
            *self.intents.entry(truth.intent.to_string()).or_default() += 1;
            *self
                .failures
                .entry(truth.failure_point.as_str().to_string())
                .or_default() += 1;
            if let Some(reason) = truth.context {
                self.context_turns += 1;
                *self.context.entry(reason.as_str().to_string()).or_default() += 1;
            }
            self.recovered += usize::from(truth.recovered_error);
        }
        let n = dialogue.turns.len();
        let truth_rows = &annotations[..n];
        for rows in annotations[n..].chunks(n) {
            let counts = self
                .disagreement
                .entry(rows[0].annotator_id.clone())
                .or_default();
            for (t, (row, truth)) in rows.iter().zip(truth_rows).enumerate() {
                let mut count = |label: &'static str, wrong: bool| {
                    let c = counts.entry(label).or_default();
                    c.0 += usize::from(wrong);
                    c.1 += 1;
                };
                count("intent", row.intent != truth.intent);
                count("slots", row.slots != truth.slots);
                count("failure_point", row.failure_point != truth.failure_point);
                count("goal_success", row.goal_success != truth.goal_success);
                if t > 0 {
                    let boundary = |rows: &[Annotation]| rows[t].goal_id != rows[t - 1].goal_id;
                    count("goal_boundary", boundary(rows) != boundary(truth_rows));
                }
            }
        }
    }

    /// Item difficulty, ambiguity, and the gold annotators' unanimity.
    fn add_items(&mut self, dialogue: &SimDialogue, items: &DialogueItems, rows: &[Annotation]) {
        let n = dialogue.turns.len();
        for (t, item) in items.turns.iter().enumerate() {
            self.difficulty_sum += item.difficulty;
            self.hard_turns += usize::from(item.difficulty >= difficulty::AMBIGUOUS_FROM);
            let true_boundary = t > 0 && dialogue.truth[t].goal != dialogue.truth[t - 1].goal;
            for (label, ambiguous) in [
                ("intent", item.ambiguous_intent),
                ("failure_point", item.ambiguous_failure),
                ("slots", item.ambiguous_slots),
                ("goal_boundary", item.ambiguous_boundary && true_boundary),
            ] {
                *self.ambiguous.entry(label).or_default() += usize::from(ambiguous);
            }
        }
        *self.ambiguous.entry("goal_success").or_default() +=
            items.goals.iter().filter(|g| g.ambiguous).count();
        let gold: Vec<&[Annotation]> = rows
            .chunks(n)
            .filter(|chunk| GOLD_ANNOTATORS.contains(&chunk[0].annotator_id.as_str()))
            .collect();
        for t in 0..n {
            let split = |same: &dyn Fn(&Annotation, &Annotation) -> bool| {
                usize::from(gold.iter().any(|g| !same(&g[t], &gold[0][t])))
            };
            *self.not_unanimous.entry("intent").or_default() += split(&|a, b| a.intent == b.intent);
            *self.not_unanimous.entry("failure_point").or_default() +=
                split(&|a, b| a.failure_point == b.failure_point);
            *self.not_unanimous.entry("slots").or_default() += split(&|a, b| a.slots == b.slots);
        }
    }

    fn summary(
        self,
        config: &SimulateConfig,
        seconds: f64,
        turns: PathBuf,
        annotations: PathBuf,
    ) -> SimulateSummary {
        let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut requested: BTreeMap<String, f64> = GOLD_ANNOTATORS
            .iter()
            .map(|a| (a.to_string(), config.annotator_error))
            .collect();
        requested.insert(SINGLE_ANNOTATOR.into(), config.single_error);
        SimulateSummary {
            dialogues: self.dialogues,
            turns: self.turns,
            goals: self.goals,
            goal_success_rate: share(self.successes, self.goals),
            turns_per_domain: self.domains,
            turns_per_intent: self.intents,
            turns_per_failure_point: self.failures,
            context_share: share(self.context_turns, self.turns),
            context_turns: self.context,
            recovered_error_turns: self.recovered,
            annotator_error_realised: self
                .disagreement
                .into_iter()
                .map(|(a, labels)| {
                    (
                        a,
                        labels
                            .into_iter()
                            .map(|(l, (w, n))| (l, share(w, n)))
                            .collect(),
                    )
                })
                .collect(),
            annotator_error_requested: requested,
            item_difficulty: ItemDifficultySummary {
                mean: self.difficulty_sum / self.turns.max(1) as f64,
                hard_share: share(self.hard_turns, self.turns),
                ambiguous: self.ambiguous,
            },
            gold_not_unanimous: self
                .not_unanimous
                .into_iter()
                .map(|(label, count)| (label, share(count, self.turns)))
                .collect(),
            rates: config.rates,
            seed: config.seed,
            turns_path: turns.display().to_string(),
            annotations_path: annotations.display().to_string(),
            hive_logs: None,
            seconds,
            turns_per_second: share(self.turns, 1) / seconds.max(1e-9),
        }
    }
}
