//! `labelgen label`: the trained model over logs, writing the labels table.
//! Decoding keeps labels consistent: goal ids increase through a dialogue,
//! each goal has one success label, and BIO tags become valid spans of the
//! utterance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use candle_core::{DType, Tensor};
use tokenizers::Tokenizer;

use crate::data::dataset::{DatasetWriter, invalid_rows, open_part, part_files, stream_rows};
use crate::data::feedback::is_rephrase;
use crate::data::inputs::InputSnapshot;
use crate::data::issues::{Issue, RowPlace, Severity};
use crate::data::split::{in_shard, stable_hash};
use crate::data::tables::{Label, LabelledSlotSpan, Turn};
use crate::model::batch::{Window, bucketed_batches, make_batch, turn_input, window_ranges};
use crate::model::cache::EncodingCache;
use crate::model::checkpoint;
use crate::model::config::{LabelSets, softmax};
use crate::model::kernels;
use crate::model::tokenizer::{EncodedTurn, encode_with_offsets, special_ids};
use crate::model::{DialogueModel, Precision, device, plain_path};
use crate::progress::Progress;

#[derive(Debug, Clone, Serialize)]
pub struct LabelConfig {
    pub model: PathBuf,
    pub logs: PathBuf,
    pub out: PathBuf,
    /// Per task (goal_segmentation, goal_success, intent, slots,
    /// failure_point): labels below this confidence are written as null.
    pub min_confidence: BTreeMap<String, f64>,
    /// (I, N): only dialogues whose id hashes to I modulo N.
    pub shard: Option<(u64, u64)>,
    pub batch_size: usize,
    pub run_id: Option<String>,
    pub overwrite: bool,
    pub quiet: bool,
    /// The dense layers' arithmetic (`--precision`).
    pub precision: Precision,
}

pub const TASKS: [&str; 5] = [
    "goal_segmentation",
    "goal_success",
    "intent",
    "slots",
    "failure_point",
];

#[derive(Debug, Serialize)]
pub struct LabelSummary {
    pub out: String,
    pub dialogues: usize,
    pub turns: usize,
    /// Turns of dialogues that belong to other shards (--shard), not labelled here.
    pub turns_in_other_shards: usize,
    /// Distinct (utterance, response) token sequences the encoder ran on;
    /// repeated turns within a chunk of dialogues are encoded once.
    pub distinct_turns_encoded: usize,
    /// Non-fatal input problems (e.g. empty utterances), labelled anyway;
    /// `labelgen validate` lists them.
    pub input_warnings: usize,
    /// Labels withheld below --min-confidence, per task.
    pub withheld: BTreeMap<String, usize>,
    pub model_id: String,
    pub run_id: String,
    /// The precision the dense layers ran in: `int16` only where asked for
    /// and the CPU has AVX2 (otherwise f32, with a warning).
    pub precision: Precision,
    pub seconds: f64,
    pub turns_per_second: f64,
}

impl LabelSummary {
    /// The stderr note for a run asked for int16 on a CPU without AVX2.
    pub fn precision_warning(&self, asked: Precision) -> Option<String> {
        Precision::fallback_warning(asked, self.precision, "the labels were")
    }

    /// The stderr note for a run that labelled past non-fatal input
    /// problems (label streams its input, so it counts them rather than
    /// naming each); None without any.
    pub fn warning_text(&self, logs: &Path) -> Option<String> {
        (self.input_warnings > 0).then(|| {
            format!(
                "warning: {} non-fatal input problem(s) (e.g. empty utterances), labelled anyway; \
                 `labelgen validate {} --table turns` lists them",
                self.input_warnings,
                logs.display()
            )
        })
    }
}

fn sigmoid(x: f32, temperature: f64) -> f64 {
    1.0 / (1.0 + (-(x as f64) / temperature).exp())
}

fn argmax(p: &[f64]) -> (usize, f64) {
    p.iter()
        .cloned()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
}

/// What the heads say about one turn, after temperature scaling.
#[derive(Debug, Clone, Default)]
struct TurnPrediction {
    boundary: f64,
    success: f64,
    intent: Vec<f64>,
    failure_point: Vec<f64>,
    /// Per token: tag probabilities.
    tags: Vec<Vec<f64>>,
}

/// The most likely tag sequence in which every I-k follows a B-k or an I-k
/// (tags as in `LabelSets::bio_tags`). Taking each token's argmax instead
/// splits "San Francisco" into two spans of two types whenever the tagger
/// hesitates between related slots (origin_city / destination_city).
fn viterbi_bio(probabilities: &[&[f64]]) -> Vec<usize> {
    let Some(first) = probabilities.first() else {
        return Vec::new();
    };
    let n = first.len();
    let inside = |tag: usize| tag > 0 && tag.is_multiple_of(2);
    let log = |p: f64| p.max(1e-12).ln();
    let mut score: Vec<f64> = (0..n)
        .map(|tag| {
            if inside(tag) {
                f64::NEG_INFINITY
            } else {
                log(first[tag])
            }
        })
        .collect();
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(probabilities.len());
    for p in &probabilities[1..] {
        // O and B-k may follow any tag; I-k only B-k (tag - 1) or I-k itself.
        let (any, any_score) = argmax(&score);
        let (next, from_of): (Vec<f64>, Vec<usize>) = (0..n)
            .map(|to| {
                let from = if !inside(to) {
                    any
                } else if score[to - 1] >= score[to] {
                    to - 1
                } else {
                    to
                };
                let best = if inside(to) { score[from] } else { any_score };
                (best + log(p[to]), from)
            })
            .unzip();
        back.push(from_of);
        score = next;
    }
    let mut tag = argmax(&score).0;
    let mut path = vec![tag];
    for from_of in back.iter().rev() {
        tag = from_of[tag];
        path.push(tag);
    }
    path.reverse();
    path
}

/// BIO tags to spans: the best valid tag sequence (`viterbi_bio`); a B starts
/// a span, the I that follow extend it.
fn decode_spans(
    utterance: &str,
    encoded: &EncodedTurn,
    tags: &[Vec<f64>],
    labels: &LabelSets,
) -> (Vec<LabelledSlotSpan>, f64) {
    let tokens: Vec<((usize, usize), &[f64])> = encoded
        .utterance_offsets
        .iter()
        .zip(tags)
        .filter_map(|(offset, p)| offset.map(|o| (o, p.as_slice())))
        .collect();
    let path = viterbi_bio(&tokens.iter().map(|(_, p)| *p).collect::<Vec<_>>());
    let mut spans: Vec<(usize, usize, usize, Vec<f64>)> = Vec::new();
    let mut whole = 1.0f64;
    for (((start, end), p), tag) in tokens.iter().zip(path) {
        let prob = p[tag];
        whole = whole.min(prob);
        if tag == 0 {
            continue;
        }
        // Byte-level BPE splits a multi-byte character (an emoji) over
        // tokens, so an offset can fall inside it: widen to whole characters.
        let start = utterance.floor_char_boundary(*start);
        let end = utterance.ceil_char_boundary(*end);
        let kind = (tag - 1) / 2;
        let inside = tag % 2 == 0;
        match spans.last_mut() {
            Some(last) if inside && last.0 == kind && last.2 <= start => {
                last.2 = end;
                last.3.push(prob);
            }
            _ => spans.push((kind, start, end, vec![prob])),
        }
    }
    // A tag on part of a word (a BPE piece) labels the whole word, as annotators do.
    let word = |c: char| c.is_alphanumeric() || c == '\'';
    let mut snapped: Vec<(usize, usize, usize, Vec<f64>)> = Vec::new();
    for (kind, start, end, probs) in spans {
        let start = start
            - utterance[..start]
                .chars()
                .rev()
                .take_while(|c| word(*c))
                .map(char::len_utf8)
                .sum::<usize>();
        let end = end
            + utterance[end..]
                .chars()
                .take_while(|c| word(*c))
                .map(char::len_utf8)
                .sum::<usize>();
        match snapped.last_mut() {
            Some(last) if start < last.2 => {
                // Overlapping after snapping: one span, the first one's type.
                last.2 = last.2.max(end);
                last.3.extend(probs);
            }
            _ => snapped.push((kind, start, end, probs)),
        }
    }
    let out = snapped
        .into_iter()
        .filter_map(|(kind, start, end, probs)| {
            let text = utterance.get(start..end)?;
            Some(LabelledSlotSpan {
                slot: labels.slot_types.get(kind)?.clone(),
                start: start as i32,
                end: end as i32,
                text: text.to_string(),
                probability: (probs.iter().sum::<f64>() / probs.len() as f64) as f32,
            })
        })
        .collect();
    (out, whole)
}

/// Dialogues labelled together: only one chunk's turns and tensors are in
/// memory at a time.
const CHUNK_DIALOGUES: usize = 1024;

pub fn run(config: &LabelConfig) -> anyhow::Result<LabelSummary> {
    check_options(config)?;
    let started = Instant::now();
    let (model, tokenizer) = checkpoint::load(&config.model)?;
    let labels = model.config.labels.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: a pretrained model without supervised heads; run `labelgen train` on it first",
            config.model.display()
        )
    })?;
    let model_id = model_id(&config.model)?;
    let run_id = config
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{model_id}:{}", config.logs.display()));
    // Stamped before reading: a part file rewritten or removed while label
    // reads it fails the run before any output is moved into place.
    let inputs = InputSnapshot::of_dataset(&config.logs)?;
    // The row count from the files' footers sizes the progress bar.
    let mut total_rows = 0;
    for part in part_files(&config.logs)? {
        total_rows += open_part(&part)?.1;
    }
    let mut writer = DatasetWriter::create(&config.out, config.overwrite)?;
    writer.guard_inputs(inputs);
    let int16 = kernels::int16::Scoped::enable(config.precision);
    let mut labeller = Labeller {
        writer,
        pad: special_ids(&tokenizer)?.pad,
        model: &model,
        tokenizer: &tokenizer,
        labels: &labels,
        config,
        model_id: &model_id,
        run_id: &run_id,
        progress: Progress::new(total_rows as u64, "turns", config.quiet),
        current: Vec::new(),
        current_places: HashMap::new(),
        chunk: Vec::new(),
        closed: HashSet::new(),
        withheld: BTreeMap::new(),
        dialogues: 0,
        written: 0,
        distinct_turns: 0,
        other_shards: 0,
        warnings: 0,
    };
    let stream = stream_rows::<Turn, anyhow::Error>(&config.logs, |decoded| {
        let errors: Vec<Issue> = decoded
            .issues
            .into_iter()
            .filter(|issue| {
                labeller.warnings += usize::from(issue.severity != Severity::Error);
                issue.severity == Severity::Error
            })
            .collect();
        if !errors.is_empty() {
            return Err(invalid_rows(&config.logs, "turns", &errors).into());
        }
        for (place, turn) in decoded.rows {
            labeller.push(&place, turn)?;
        }
        Ok(())
    })?;
    labeller.finish_chunks()?;
    let Labeller {
        writer,
        progress,
        withheld,
        dialogues,
        written,
        distinct_turns,
        other_shards,
        warnings,
        ..
    } = labeller;
    writer.finish::<Label>()?;
    progress.finish();
    let precision = int16.precision();
    let seconds = started.elapsed().as_secs_f64();
    Ok(LabelSummary {
        out: config.out.display().to_string(),
        dialogues,
        turns: written,
        turns_in_other_shards: other_shards,
        distinct_turns_encoded: distinct_turns,
        input_warnings: warnings + stream.issues.len(),
        withheld,
        model_id,
        run_id,
        precision,
        seconds,
        turns_per_second: written as f64 / seconds.max(1e-9),
    })
}

fn check_options(config: &LabelConfig) -> anyhow::Result<()> {
    for task in config.min_confidence.keys() {
        anyhow::ensure!(
            TASKS.contains(&task.as_str()),
            "--min-confidence: unknown task `{task}`; tasks are {}",
            TASKS.join(", ")
        );
    }
    if let Some((i, n)) = config.shard {
        anyhow::ensure!(
            n > 0 && i < n,
            "--shard {i}/{n}: expected I/N with 0 <= I < N"
        );
    }
    Ok(())
}

/// `<model directory name>@<hash of its config>`: which model wrote a label.
fn model_id(model: &Path) -> anyhow::Result<String> {
    let config = std::fs::read_to_string(model.join(checkpoint::CONFIG))?;
    Ok(format!(
        "{}@{}",
        model
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model"),
        &format!("{:016x}", stable_hash(&config))[..8]
    ))
}

/// Labels chunks of complete dialogues into the writer.
struct Labeller<'a> {
    writer: DatasetWriter,
    pad: u32,
    model: &'a DialogueModel,
    tokenizer: &'a Tokenizer,
    labels: &'a LabelSets,
    config: &'a LabelConfig,
    model_id: &'a str,
    run_id: &'a str,
    progress: Progress,
    /// The turns of the dialogue being read.
    current: Vec<Turn>,
    /// Where each turn of `current` was read, by turn_index.
    current_places: HashMap<i32, RowPlace>,
    /// Complete dialogues waiting to be labelled together.
    chunk: Vec<Vec<Turn>>,
    /// Dialogues already complete, by hash only.
    closed: HashSet<u64>,
    withheld: BTreeMap<String, usize>,
    dialogues: usize,
    written: usize,
    distinct_turns: usize,
    /// Turns of dialogues in other shards, skipped.
    other_shards: usize,
    /// Non-fatal input issues seen while reading.
    warnings: usize,
}

impl Labeller<'_> {
    /// Takes the next turn in file order. A dialogue is complete when the next
    /// turn belongs to another one; a full chunk of them is labelled.
    fn push(&mut self, place: &RowPlace, turn: Turn) -> anyhow::Result<()> {
        if !in_shard(&turn.dialogue_id, self.config.shard) {
            self.other_shards += 1;
            self.progress.inc(1);
            return Ok(());
        }
        if self
            .current
            .first()
            .is_some_and(|t| t.dialogue_id != turn.dialogue_id)
        {
            let done = std::mem::take(&mut self.current);
            self.closed.insert(stable_hash(&done[0].dialogue_id));
            self.chunk.push(done);
            if self.chunk.len() >= CHUNK_DIALOGUES {
                let chunk = std::mem::take(&mut self.chunk);
                self.label_chunk(chunk)?;
            }
        }
        if self.current.is_empty() {
            self.current_places.clear();
        }
        if self.current.is_empty() && self.closed.contains(&stable_hash(&turn.dialogue_id)) {
            anyhow::bail!(
                "{} row {}: dialogue `{}` continues after other dialogues' turns; `label` streams the logs \
                 and needs each dialogue's turns together: order them first with \
                 `labelgen ingest --logs ROOT --out DIR` (it also drops duplicates) and label DIR/turns",
                place.file,
                place.row,
                turn.dialogue_id
            );
        }
        if let Some(first) = self.current_places.insert(turn.turn_index, place.clone()) {
            // Two labels for one turn would leave the labels table with a duplicate key.
            anyhow::bail!(
                "{} row {}: dialogue `{}` has turn_index {} twice (first in {} row {}); \
                 each turn must appear once (`labelgen validate LOGS --table turns` lists every duplicate)",
                place.file,
                place.row,
                turn.dialogue_id,
                turn.turn_index,
                first.file,
                first.row
            );
        }
        self.current.push(turn);
        Ok(())
    }

    /// Labels the last dialogue and the last, partial chunk.
    fn finish_chunks(&mut self) -> anyhow::Result<()> {
        if !self.current.is_empty() {
            let last = std::mem::take(&mut self.current);
            self.chunk.push(last);
        }
        if !self.chunk.is_empty() {
            let chunk = std::mem::take(&mut self.chunk);
            self.label_chunk(chunk)?;
        }
        Ok(())
    }

    fn label_chunk(&mut self, mut chunk: Vec<Vec<Turn>>) -> anyhow::Result<()> {
        for dialogue in &mut chunk {
            dialogue.sort_by_key(|t| t.turn_index);
        }
        let model = self.model;
        let pairs: Vec<(String, String)> = chunk
            .iter()
            .flatten()
            .map(|t| (t.user_utterance.clone(), t.system_response.clone()))
            .collect();
        let encoded = encode_with_offsets(
            self.tokenizer,
            &pairs,
            model.config.max_tokens,
            model.config.context.utterance_only(),
        )?;
        let windows = dialogue_windows(model, &chunk, &encoded);
        let predictions = self.predict_chunk(&chunk, &windows)?;
        let mut rows = Vec::new();
        let mut first = 0;
        for (dialogue, p) in chunk.iter().zip(&predictions) {
            let turns: Vec<&Turn> = dialogue.iter().collect();
            rows.extend(decode_dialogue(
                &turns,
                p,
                &encoded[first..first + dialogue.len()],
                self.labels,
                self.config,
                self.model_id,
                self.run_id,
                &mut self.withheld,
            ));
            first += dialogue.len();
        }
        self.written += rows.len();
        self.dialogues += chunk.len();
        self.writer.write_rows(&rows)?;
        self.progress.inc(rows.len() as u64);
        Ok(())
    }

    /// Per dialogue and turn: the heads' prediction from the window where
    /// the turn sits most centrally.
    fn predict_chunk(
        &mut self,
        chunk: &[Vec<Turn>],
        windows: &[Window],
    ) -> anyhow::Result<Vec<Vec<TurnPrediction>>> {
        let (model, labels) = (self.model, self.labels);
        let temperature = |head: &str| labels.temperatures.get(head).copied().unwrap_or(1.0);
        // Each distinct turn encoded once (off on the plain path, which
        // encodes every window's turns batch by batch).
        let cache = match plain_path() {
            true => None,
            false => Some(EncodingCache::build(
                model,
                windows.iter(),
                self.pad,
                self.config.batch_size * 4,
                model.roberta.num_layers(),
                DType::F32,
                true,
            )?),
        };
        self.distinct_turns += cache.as_ref().map_or(0, EncodingCache::len);
        let mut predictions: Vec<Vec<Option<(usize, TurnPrediction)>>> =
            chunk.iter().map(|d| vec![None; d.len()]).collect();
        for indices in bucketed_batches(windows, self.config.batch_size) {
            let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
            let (batch, _) = make_batch(&chosen, self.pad, &device())?;
            let token_states = match &cache {
                Some(cache) => cache.token_states(&chosen)?,
                None => model.encode_tokens(&batch)?,
            };
            let per_turn = predict(model, &batch, &token_states, labels, &temperature)?;
            let t = batch.turn_mask.dim(1)?;
            for (w, window) in chosen.iter().enumerate() {
                let (d, start) = window.origin;
                for k in 0..window.turns.len() {
                    let centrality = (2 * k).abs_diff(window.turns.len());
                    let prediction = per_turn[w * t + k].clone();
                    let slot = &mut predictions[d][start + k];
                    if slot.as_ref().is_none_or(|(c, _)| centrality < *c) {
                        *slot = Some((centrality, prediction));
                    }
                }
            }
        }
        Ok(predictions
            .into_iter()
            .map(|dialogue| {
                let best = dialogue.into_iter().map(|x| x.map(|(_, p)| p));
                best.map(Option::unwrap_or_default).collect()
            })
            .collect())
    }
}

/// The model's windows over each dialogue of a chunk; `encoded` holds the
/// chunk's turns in order.
fn dialogue_windows(
    model: &DialogueModel,
    chunk: &[Vec<Turn>],
    encoded: &[EncodedTurn],
) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut first = 0;
    for (d, dialogue) in chunk.iter().enumerate() {
        for range in window_ranges(dialogue.len(), model.config.dialogue.max_turns) {
            windows.push(Window {
                turns: range
                    .clone()
                    .map(|k| {
                        turn_input(
                            &dialogue[k],
                            encoded[first + k].ids.clone(),
                            &model.config.features,
                        )
                    })
                    .collect(),
                targets: vec![0.0; range.len()],
                supervision: Vec::new(),
                origin: (d, range.start),
            });
        }
        first += dialogue.len();
    }
    windows
}

/// Per turn slot (B * T): the heads' probabilities.
fn predict(
    model: &DialogueModel,
    batch: &crate::model::Batch,
    token_states: &Tensor,
    labels: &LabelSets,
    temperature: &dyn Fn(&str) -> f64,
) -> anyhow::Result<Vec<TurnPrediction>> {
    let heads = model
        .heads
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("model has no supervised heads"))?;
    let states = model.dialogue_states(batch, token_states)?;
    let logits = heads.turn_logits(&states, &batch.turn_mask)?;
    let (b, t) = batch.turn_mask.dims2()?;
    let turn_states = states
        .reshape((b * t, states.dim(2)?))?
        .index_select(&batch.turn_slots, 0)?;
    let slot_logits: Vec<Vec<Vec<f32>>> = heads
        .slot_logits(token_states, &batch.attention_mask, &turn_states)?
        .to_vec3()?;
    let boundary: Vec<f32> = logits.boundary.flatten_all()?.to_vec1()?;
    let success: Vec<f32> = logits.success.flatten_all()?.to_vec1()?;
    let intent: Vec<Vec<f32>> = logits
        .intent
        .reshape((b * t, labels.intents.len()))?
        .to_vec2()?;
    let failure: Vec<Vec<f32>> = logits
        .failure_point
        .reshape((b * t, labels.failure_points.len()))?
        .to_vec2()?;
    let slots_of: Vec<u32> = batch.turn_slots.to_vec1()?;
    let mut out: Vec<TurnPrediction> = (0..b * t)
        .map(|i| TurnPrediction {
            boundary: sigmoid(boundary[i], temperature("goal_boundary")),
            success: sigmoid(success[i], temperature("goal_success")),
            intent: softmax(&intent[i], temperature("intent")),
            failure_point: softmax(&failure[i], temperature("failure_point")),
            tags: Vec::new(),
        })
        .collect();
    for (real, &slot) in slots_of.iter().enumerate() {
        out[slot as usize].tags = slot_logits[real]
            .iter()
            .map(|z| softmax(z, temperature("slots")))
            .collect();
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn decode_dialogue(
    dialogue: &[&Turn],
    predictions: &[TurnPrediction],
    encoded: &[EncodedTurn],
    labels: &LabelSets,
    config: &LabelConfig,
    model_id: &str,
    run_id: &str,
    withheld: &mut BTreeMap<String, usize>,
) -> Vec<Label> {
    let threshold = |task: &str| config.min_confidence.get(task).copied().unwrap_or(0.0);
    let mut keep = |task: &str, confidence: f64| {
        let ok = confidence >= threshold(task);
        if !ok {
            *withheld.entry(task.to_string()).or_default() += 1;
        }
        ok
    };
    // P(new goal), with the dev-fitted shift for turns that rephrase the
    // previous one and the weighted evidence of an intent change.
    let boundary = |t: usize, p: &TurnPrediction| {
        let rephrase =
            t > 0 && is_rephrase(&dialogue[t - 1].user_utterance, &dialogue[t].user_utterance);
        let intent_change = t.checked_sub(1).and_then(|previous| {
            LabelSets::intent_change(&predictions[previous].intent, &p.intent)
        });
        labels.boundary_probability(p.boundary, rephrase, intent_change)
    };
    // Goals: a boundary where its probability passes the dev-tuned threshold; turn 0 starts goal 0.
    let mut goal_ids = Vec::with_capacity(dialogue.len());
    let mut goal = 0;
    for (t, p) in predictions.iter().enumerate() {
        if t > 0 && boundary(t, p) > labels.boundary_threshold {
            goal += 1;
        }
        goal_ids.push(goal);
    }
    // Intents in order: a turn that continues its goal leans to the goal's
    // intent so far (by the dev-fitted stay shift).
    let mut intents: Vec<usize> = Vec::with_capacity(dialogue.len());
    for (t, p) in predictions.iter().enumerate() {
        let previous_in_goal = (t > 0 && goal_ids[t] == goal_ids[t - 1]).then(|| intents[t - 1]);
        intents.push(labels.intent_decision(&p.intent, previous_in_goal));
    }
    // One success label per goal: the mean probability over its turns.
    let mut success: BTreeMap<i32, (f64, usize)> = BTreeMap::new();
    for (g, p) in goal_ids.iter().zip(predictions) {
        let e = success.entry(*g).or_default();
        e.0 += p.success;
        e.1 += 1;
    }
    dialogue
        .iter()
        .enumerate()
        .map(|(t, turn)| {
            let p = &predictions[t];
            let boundary_prob = if t == 0 { 1.0 } else { boundary(t, p) };
            let boundary_confidence = boundary_prob.max(1.0 - boundary_prob);
            let (sum, n) = success[&goal_ids[t]];
            let success_prob = sum / n as f64;
            let success_value = success_prob > labels.success_threshold;
            let success_confidence = if success_value {
                success_prob
            } else {
                1.0 - success_prob
            };
            let intent = intents[t];
            let intent_prob = p.intent.get(intent).copied().unwrap_or(0.0);
            let failure = labels.failure_point_decision(&p.failure_point);
            let failure_prob = p.failure_point.get(failure).copied().unwrap_or(0.0);
            let (spans, slots_confidence) =
                decode_spans(&turn.user_utterance, &encoded[t], &p.tags, labels);
            Label {
                dialogue_id: turn.dialogue_id.clone(),
                turn_index: turn.turn_index,
                goal_id: keep("goal_segmentation", boundary_confidence).then_some(goal_ids[t]),
                goal_boundary_prob: Some(boundary_prob as f32),
                goal_success: keep("goal_success", success_confidence).then_some(success_value),
                goal_success_prob: Some(success_confidence as f32),
                // A model trained without intents (USS) has none to give.
                intent: (!labels.intents.is_empty() && keep("intent", intent_prob))
                    .then(|| labels.intents[intent].clone()),
                intent_prob: (!labels.intents.is_empty()).then_some(intent_prob as f32),
                slots: keep("slots", slots_confidence).then_some(spans),
                slots_prob: Some(slots_confidence as f32),
                failure_point: keep("failure_point", failure_prob)
                    .then(|| labels.failure_points[failure].clone()),
                failure_point_prob: Some(failure_prob as f32),
                model_id: model_id.to_string(),
                run_id: run_id.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viterbi_keeps_a_span_in_one_type() {
        // Tags: O, B-origin, I-origin, B-destination, I-destination.
        // Token-wise argmax says B-destination, I-origin: two broken spans.
        let san = [0.05, 0.40, 0.0, 0.55, 0.0];
        let francisco = [0.05, 0.0, 0.60, 0.0, 0.35];
        let path = viterbi_bio(&[&san, &francisco]);
        // B-origin, I-origin (0.40 * 0.60) beats B-destination, I-destination (0.55 * 0.35):
        // one span of one type either way.
        assert_eq!(path, vec![1, 2]);
        // An I at the start or after O is never chosen.
        let stray = [0.3, 0.0, 0.7, 0.0, 0.0];
        assert_eq!(viterbi_bio(&[&stray]), vec![0]);
        assert_eq!(viterbi_bio(&[&san, &[0.0, 0.1, 0.0, 0.0, 0.9]]), vec![3, 4]);
        assert!(viterbi_bio(&[]).is_empty());
    }

    #[test]
    fn spans_snap_to_whole_words() {
        let labels = LabelSets::new(vec![], vec!["city".into(), "cuisine".into()], vec![]);
        let utterance = "find food in anchurage now";
        // Tokens: find(0..4) food(5..9) in(10..12) anch(13..17) urage(17..22) now(23..26).
        let encoded = EncodedTurn {
            ids: vec![0; 8],
            utterance_offsets: vec![
                None,
                Some((0, 4)),
                Some((5, 9)),
                Some((10, 12)),
                Some((13, 17)),
                Some((17, 22)),
                Some((23, 26)),
                None,
            ],
        };
        let tag = |t: usize| {
            let mut p = vec![0.0; 5];
            p[t] = 0.9;
            p
        };
        // Only the second piece of "anchurage" is tagged B-city.
        let tags = vec![
            tag(0),
            tag(0),
            tag(0),
            tag(0),
            tag(0),
            tag(1),
            tag(0),
            tag(0),
        ];
        let (spans, _) = decode_spans(utterance, &encoded, &tags, &labels);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (spans[0].start, spans[0].end, spans[0].text.as_str()),
            (13, 22, "anchurage")
        );
    }

    use proptest::prelude::*;

    /// Utterances mixing ASCII words with multi-byte, combining and
    /// right-to-left characters, and emoji.
    fn utterance() -> impl Strategy<Value = String> {
        let chars = vec![
            'a', 'z', '1', ' ', '\'', 'é', '\u{301}', 'ש', 'ش', '🎷', '中',
        ];
        proptest::collection::vec(proptest::sample::select(chars), 1..24)
            .prop_map(|c| c.into_iter().collect())
    }

    /// Token offsets as a tokenizer gives them (increasing, non-empty, not
    /// necessarily on character boundaries, some tokens not of the
    /// utterance), with a probability per tag (O, B/I of two slot types).
    fn tokens(len: usize) -> impl Strategy<Value = (EncodedTurn, Vec<Vec<f64>>)> {
        let cuts = proptest::collection::btree_set(0..=len, 2..(len + 2).min(12));
        let weights = proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 5), 12);
        let skipped = proptest::collection::vec(any::<bool>(), 12);
        (cuts, weights, skipped).prop_map(|(cuts, weights, skipped)| {
            let cuts: Vec<usize> = cuts.into_iter().collect();
            let offsets: Vec<Option<(usize, usize)>> = cuts
                .windows(2)
                .zip(&skipped)
                .map(|(w, &skip)| (!skip).then_some((w[0], w[1])))
                .collect();
            let tags = weights[..offsets.len()]
                .iter()
                .map(|w| {
                    let total: f64 = w.iter().sum::<f64>() + 1e-9;
                    w.iter().map(|v| v / total).collect()
                })
                .collect();
            let encoded = EncodedTurn {
                ids: vec![0; offsets.len()],
                utterance_offsets: offsets,
            };
            (encoded, tags)
        })
    }

    proptest! {
        #[test]
        fn decoded_spans_are_always_valid_spans_of_the_utterance(
            (utterance, (encoded, tags)) in utterance()
                .prop_flat_map(|u| { let len = u.len(); (Just(u), tokens(len)) })
        ) {
            let labels = LabelSets::new(vec![], vec!["a".into(), "b".into()], vec![]);
            let (spans, whole) = decode_spans(&utterance, &encoded, &tags, &labels);
            prop_assert!((0.0..=1.0).contains(&whole));
            let mut previous_end = 0;
            for span in &spans {
                let (start, end) = (span.start as usize, span.end as usize);
                prop_assert!(start < end && end <= utterance.len(), "{span:?}");
                prop_assert!(start >= previous_end, "spans overlap: {spans:?}");
                prop_assert!(utterance.is_char_boundary(start) && utterance.is_char_boundary(end));
                prop_assert_eq!(&utterance[start..end], span.text.as_str());
                prop_assert!(labels.slot_types.contains(&span.slot));
                prop_assert!((0.0..=1.0).contains(&span.probability));
                previous_end = end;
            }
        }
    }

    #[test]
    fn a_token_inside_a_multibyte_character_labels_the_whole_character() {
        let labels = LabelSets::new(vec![], vec!["genre".into()], vec![]);
        let utterance = "play 🎷 jazz";
        // The emoji is bytes 5..9; byte-level BPE splits it at 7.
        let encoded = EncodedTurn {
            ids: vec![0; 4],
            utterance_offsets: vec![Some((0, 4)), Some((5, 7)), Some((7, 9)), Some((10, 14))],
        };
        let tag = |t: usize| {
            let mut p = vec![0.0; 3];
            p[t] = 0.9;
            p
        };
        for tags in [
            vec![tag(0), tag(0), tag(1), tag(0)],
            vec![tag(0), tag(1), tag(0), tag(0)],
            vec![tag(0), tag(1), tag(2), tag(2)],
        ] {
            let (spans, _) = decode_spans(utterance, &encoded, &tags, &labels);
            let span = &spans[0];
            assert!(utterance.is_char_boundary(span.start as usize));
            assert!(utterance.is_char_boundary(span.end as usize));
            assert_eq!(
                &utterance[span.start as usize..span.end as usize],
                span.text
            );
            assert!(span.text.starts_with('🎷'), "{:?}", span.text);
        }
    }
}
