//! The day's review sample: per task, the turns the champion was least sure
//! of plus a random slice (an unbiased check on the confident rest), as
//! Label Studio tasks in the shape eval's review_label_studio.json has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::data::dataset::{read_table_counted, write_file_atomic};
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
struct Pick<'a> {
    label: &'a Label,
    task: &'a str,
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

/// Writes OUT/review_label_studio.json.
pub fn sample(
    labels: &Path,
    turns: &Path,
    out: &Path,
    settings: &SampleSettings,
) -> anyhow::Result<Sampled> {
    let (labels, label_warnings) = read_table_counted::<Label>(labels)?;
    let mut picks = Vec::new();
    for task in &settings.tasks {
        picks.extend(pick_task(&labels, task, settings));
    }
    let wanted: HashSet<(&str, i32)> = picks
        .iter()
        .map(|p| (p.label.dialogue_id.as_str(), p.label.turn_index))
        .collect();
    let (turn_rows, turn_warnings) = read_table_counted::<Turn>(turns)?;
    let text: HashMap<(&str, i32), &Turn> = turn_rows
        .iter()
        .filter(|t| wanted.contains(&(t.dialogue_id.as_str(), t.turn_index)))
        .map(|t| ((t.dialogue_id.as_str(), t.turn_index), t))
        .collect();
    let mut counts = BTreeMap::new();
    let tasks: Vec<serde_json::Value> = picks
        .iter()
        .map(|pick| {
            *counts.entry(pick.reason.to_string()).or_insert(0) += 1;
            let turn = text.get(&(pick.label.dialogue_id.as_str(), pick.label.turn_index));
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

/// The `lowest` least confident labels of `task`, then `random` of the rest
/// (seeded, so a rerun draws the same turns).
fn pick_task<'a>(labels: &'a [Label], task: &'a str, settings: &SampleSettings) -> Vec<Pick<'a>> {
    let mut candidates: Vec<(&Label, String, f32)> = labels
        .iter()
        .filter_map(|l| task_value(l, task).map(|(v, p)| (l, v, p)))
        .collect();
    candidates.sort_by(|a, b| {
        a.2.total_cmp(&b.2)
            .then_with(|| a.0.dialogue_id.cmp(&b.0.dialogue_id))
            .then_with(|| a.0.turn_index.cmp(&b.0.turn_index))
    });
    let lowest = settings.lowest.min(candidates.len());
    let mut rest = candidates.split_off(lowest);
    rest.shuffle(&mut ChaCha8Rng::seed_from_u64(settings.seed));
    rest.truncate(settings.random);
    let pick = |reason: &'static str| {
        move |(label, value, probability): (&'a Label, String, f32)| Pick {
            label,
            task,
            value,
            probability,
            reason,
        }
    };
    candidates
        .into_iter()
        .map(pick("lowest_confidence"))
        .chain(rest.into_iter().map(pick("random")))
        .collect()
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
        let picks = pick_task(&labels, "intent", &settings);
        let ids: Vec<&str> = picks.iter().map(|p| p.label.dialogue_id.as_str()).collect();
        assert_eq!(&ids[..3], ["d00", "d01", "d02"]);
        assert_eq!(picks.len(), 7);
        assert!(
            picks[3..]
                .iter()
                .all(|p| p.reason == "random" && p.probability > 0.55)
        );
        let again: Vec<&str> = pick_task(&labels, "intent", &settings)
            .iter()
            .map(|p| p.label.dialogue_id.as_str())
            .collect();
        assert_eq!(ids, again);
        assert!(pick_task(&labels, "failure_point", &settings).is_empty());
    }
}
