//! The day's review sample: per task, the turns the champion was least sure
//! of plus a random slice (an unbiased check on the confident rest), as
//! Label Studio tasks in the shape eval's review_label_studio.json has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::json;

use crate::data::dataset::{visit_table_counted, write_file_atomic};
use crate::data::split::{STABLE_HASH_START, stable_hash_bytes};
use crate::data::tables::{Label, Turn};

pub const SAMPLE_FILE: &str = "review_label_studio.json";

#[derive(Debug, Clone)]
pub struct SampleSettings {
    pub tasks: Vec<String>,
    /// Lowest-confidence turns per task.
    pub lowest: usize,
    /// Random turns per task, from the rest.
    pub random: usize,
    pub seed: u64,
}

/// One chosen turn: its label and why it was chosen.
struct Pick {
    label: Label,
    task: String,
    value: String,
    probability: f32,
    reason: &'static str,
}

fn task_value(label: &Label, task: &str) -> Option<(String, f32)> {
    let (value, prob) = match task {
        "intent" => (label.intent.clone(), label.intent_prob),
        "failure_point" => (label.failure_point.clone(), label.failure_point_prob),
        "goal_success" => (
            label.goal_success.map(|s| s.to_string()),
            label.goal_success_prob,
        ),
        _ => (None, None),
    };
    Some((value?, prob?))
}

/// What [`sample`] picked, and what it read past.
pub struct Sampled {
    /// The tasks picked, per reason.
    pub by_reason: BTreeMap<String, usize>,
    /// Non-fatal problems read in the labels and turns tables (printed on
    /// stderr as read).
    pub input_warnings: usize,
}

/// Writes OUT/review_label_studio.json. Both tables are streamed: only the
/// picked labels and their turns are held, besides the duplicate-key
/// check's hash of each dialogue read (`KeyIndex`, 16 bytes a dialogue).
pub fn sample(
    labels: &Path,
    turns: &Path,
    out: &Path,
    settings: &SampleSettings,
) -> anyhow::Result<Sampled> {
    let mut pickers: Vec<TaskPicker> = (settings.tasks.iter())
        .map(|task| TaskPicker::new(task, settings))
        .collect();
    let label_warnings = visit_table_counted::<Label>(labels, |label| {
        pickers.iter_mut().for_each(|picker| picker.offer(&label));
    })?;
    let picks: Vec<Pick> = pickers.into_iter().flat_map(TaskPicker::finish).collect();
    let wanted: HashSet<(String, i32)> = (picks.iter())
        .map(|p| (p.label.dialogue_id.clone(), p.label.turn_index))
        .collect();
    let mut text: HashMap<(String, i32), Turn> = HashMap::new();
    let turn_warnings = visit_table_counted::<Turn>(turns, |turn| {
        let key = (turn.dialogue_id.clone(), turn.turn_index);
        if wanted.contains(&key) {
            text.insert(key, turn);
        }
    })?;
    let mut counts = BTreeMap::new();
    let tasks: Vec<serde_json::Value> = picks
        .iter()
        .map(|pick| {
            *counts.entry(pick.reason.to_string()).or_insert(0) += 1;
            let turn = text.get(&(pick.label.dialogue_id.clone(), pick.label.turn_index));
            json!({
                "data": {
                    "dialogue_id": pick.label.dialogue_id, "turn_index": pick.label.turn_index,
                    "task": pick.task, "reason": pick.reason,
                    "utterance": turn.map(|t| t.user_utterance.as_str()).unwrap_or_default(),
                    "system_response": turn.map(|t| t.system_response.as_str()).unwrap_or_default(),
                },
                "predictions": [{
                    "model_version": pick.label.model_id, "score": pick.probability,
                    "result": [{"from_name": pick.task, "to_name": "utterance", "type": "choices",
                                "value": {"choices": [pick.value]}}],
                }],
            })
        })
        .collect();
    std::fs::create_dir_all(out)?;
    write_file_atomic(
        &out.join(SAMPLE_FILE),
        serde_json::to_string_pretty(&tasks)?.as_bytes(),
    )?;
    Ok(Sampled {
        by_reason: counts,
        input_warnings: label_warnings + turn_warnings,
    })
}

/// A candidate of one task: the label, its value and confidence.
struct Candidate {
    label: Label,
    value: String,
    probability: f32,
}

impl Candidate {
    fn order(&self) -> (i32, &str, i32) {
        confidence_order(self.probability, &self.label)
    }
}

/// Least confident first; ties by dialogue and turn, so the order is total.
fn confidence_order(probability: f32, label: &Label) -> (i32, &str, i32) {
    let bits = probability.to_bits() as i32;
    // f32::total_cmp's key: orders every float, NaN included.
    let key = bits ^ ((((bits >> 31) as u32) >> 1) as i32);
    (key, &label.dialogue_id, label.turn_index)
}

/// The seeded draw of a turn: a hash of the seed, dialogue and turn, mixed
/// (splitmix64's finaliser) so that similar ids draw unrelated numbers. The
/// turns with the smallest draws are the random slice: the same on every
/// rerun, whatever the order the labels are read in.
fn draw(seed: u64, label: &Label) -> u64 {
    let id = stable_hash_bytes(STABLE_HASH_START ^ seed, label.dialogue_id.as_bytes());
    let mut z = stable_hash_bytes(id, &label.turn_index.to_le_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Keeps, while the labels stream past, what one task's sample needs: the
/// `lowest` least confident candidates, and the `lowest + random` smallest
/// draws (the random slice is drawn from those not among the least
/// confident, and at most `lowest` of them can be).
struct TaskPicker {
    task: String,
    lowest: usize,
    random: usize,
    seed: u64,
    least_confident: Vec<Candidate>,
    drawn: Vec<(u64, Candidate)>,
}

impl TaskPicker {
    fn new(task: &str, settings: &SampleSettings) -> TaskPicker {
        TaskPicker {
            task: task.to_string(),
            lowest: settings.lowest,
            random: settings.random,
            seed: settings.seed,
            least_confident: Vec::new(),
            drawn: Vec::new(),
        }
    }

    fn offer(&mut self, label: &Label) {
        let Some((value, probability)) = task_value(label, &self.task) else {
            return;
        };
        let candidate = || Candidate {
            label: label.clone(),
            value: value.clone(),
            probability,
        };
        // Compared before the label is cloned: most labels are kept by neither.
        let order = confidence_order(probability, label);
        let full = self.least_confident.len() >= self.lowest;
        if !full || (self.least_confident.last()).is_some_and(|last| order < last.order()) {
            let at = (self.least_confident).partition_point(|k| k.order() < order);
            self.least_confident.insert(at, candidate());
            self.least_confident.truncate(self.lowest);
        }
        let draw = draw(self.seed, label);
        let limit = self.lowest + self.random;
        if self.drawn.len() < limit || self.drawn.last().is_some_and(|(last, _)| draw < *last) {
            let at = self.drawn.partition_point(|(d, _)| *d < draw);
            self.drawn.insert(at, (draw, candidate()));
            self.drawn.truncate(limit);
        }
    }

    fn finish(self) -> Vec<Pick> {
        let chosen: HashSet<(String, i32)> = (self.least_confident.iter())
            .map(|c| (c.label.dialogue_id.clone(), c.label.turn_index))
            .collect();
        let rest = (self.drawn.into_iter().map(|(_, c)| c))
            .filter(|c| !chosen.contains(&(c.label.dialogue_id.clone(), c.label.turn_index)))
            .take(self.random);
        let task = self.task;
        let pick = |reason: &'static str| {
            let task = task.clone();
            move |c: Candidate| Pick {
                label: c.label,
                task: task.clone(),
                value: c.value,
                probability: c.probability,
                reason,
            }
        };
        let lowest = self
            .least_confident
            .into_iter()
            .map(pick("lowest_confidence"));
        lowest.chain(rest.map(pick("random"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(dialogue: &str, prob: f32) -> Label {
        Label {
            dialogue_id: dialogue.into(),
            turn_index: 0,
            goal_id: None,
            goal_boundary_prob: None,
            goal_success: None,
            goal_success_prob: None,
            intent: Some("PlayMusic".into()),
            intent_prob: Some(prob),
            slots: None,
            slots_prob: None,
            failure_point: None,
            failure_point_prob: None,
            model_id: "m".into(),
            run_id: "r".into(),
        }
    }

    #[test]
    fn the_least_confident_come_first_then_a_seeded_random_slice() {
        let labels: Vec<Label> = (0..20)
            .map(|i| label(&format!("d{i:02}"), 0.5 + i as f32 / 50.0))
            .collect();
        let settings = SampleSettings {
            tasks: vec!["intent".into()],
            lowest: 3,
            random: 4,
            seed: 7,
        };
        let pick = |task: &str, labels: &[Label]| {
            let mut picker = TaskPicker::new(task, &settings);
            labels.iter().for_each(|l| picker.offer(l));
            picker.finish()
        };
        let picks = pick("intent", &labels);
        let ids: Vec<&str> = picks.iter().map(|p| p.label.dialogue_id.as_str()).collect();
        assert_eq!(&ids[..3], ["d00", "d01", "d02"]);
        assert_eq!(picks.len(), 7);
        assert!(
            picks[3..]
                .iter()
                .all(|p| p.reason == "random" && p.probability > 0.55)
        );
        // The same turns whatever order the labels are read in.
        let mut reversed = labels.clone();
        reversed.reverse();
        let again: Vec<String> = pick("intent", &reversed)
            .into_iter()
            .map(|p| p.label.dialogue_id)
            .collect();
        assert_eq!(ids, again);
        // A few labels: all of them, none twice.
        let few = pick("intent", &labels[..5]);
        let mut few_ids: Vec<&str> = few.iter().map(|p| p.label.dialogue_id.as_str()).collect();
        few_ids.sort();
        assert_eq!(few_ids, ["d00", "d01", "d02", "d03", "d04"]);
        assert!(pick("failure_point", &labels).is_empty());
    }
}
