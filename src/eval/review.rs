//! The items worth re-annotating: where the gold annotators disagree, and
//! where a confident model disagrees with their gold. Written as Parquet and
//! as a Label Studio import with the model's labels as predictions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use serde_json::json;

use super::gold::{GoldDialogue, SystemLabels, TurnLabels};
use crate::data::dataset::{DatasetWriter, write_file_atomic};
use crate::data::tables::SlotSpan;

#[derive(Debug, Clone)]
pub struct ReviewItem {
    pub dialogue_id: String,
    pub turn_index: i32,
    pub task: &'static str,
    /// annotators_disagree | confident_model_disagrees
    pub reason: &'static str,
    /// "a1=X; a2=Y; a3=X"
    pub annotator_labels: String,
    pub gold: Option<String>,
    pub model: Option<String>,
    pub model_label: Option<String>,
    pub model_probability: Option<f32>,
    pub utterance: Option<String>,
    pub system_response: Option<String>,
    /// The model's slots, for the Label Studio prediction.
    model_slots: Option<Vec<SlotSpan>>,
}

/// Text of the turns, for reviewers: (dialogue, turn) -> (utterance, response).
pub type TurnText = HashMap<(String, i32), (String, String)>;

fn spans_text(spans: &[SlotSpan]) -> String {
    let parts: Vec<String> = spans
        .iter()
        .map(|s| format!("{}[{}..{}]", s.slot, s.start, s.end))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Collects review items, most informative first: confident model
/// disagreements (by probability), then annotator disagreements.
pub fn collect(
    annotators: &[(&str, &SystemLabels)],
    gold: &[(String, GoldDialogue)],
    model: Option<(&str, &SystemLabels)>,
    turns: Option<&TurnText>,
    confidence: f64,
) -> Vec<ReviewItem> {
    type Getter = fn(&TurnLabels) -> (Option<String>, Option<f32>);
    let tasks: [(&'static str, Getter); 3] = [
        ("intent", |l| (l.intent.clone(), l.intent_prob)),
        ("failure_point", |l| {
            (l.failure_point.clone(), l.failure_point_prob)
        }),
        ("slots", |l| {
            (l.slots.as_deref().map(spans_text), l.slots_prob)
        }),
    ];
    let mut items = Vec::new();
    for (dialogue, g) in gold {
        for t in 0..g.turns {
            let labels_of = |system: &SystemLabels| {
                system
                    .get(dialogue)
                    .and_then(|d| d.get(t))
                    .and_then(Option::as_ref)
                    .cloned()
            };
            let model_turn = model.and_then(|(_, m)| labels_of(m));
            for (task, get) in tasks {
                let votes: Vec<(&str, Option<String>)> = annotators
                    .iter()
                    .map(|(name, a)| (*name, labels_of(a).and_then(|l| get(&l).0)))
                    .collect();
                let given: Vec<&String> = votes.iter().filter_map(|(_, v)| v.as_ref()).collect();
                let gold_label = match task {
                    "intent" => g.intent[t].clone(),
                    "failure_point" => g.failure_point[t].clone(),
                    _ => g.slots[t].as_deref().map(spans_text),
                };
                let (model_label, model_probability) =
                    model_turn.as_ref().map(get).unwrap_or((None, None));
                let disagree = given.len() >= 2 && given.iter().any(|v| *v != given[0]);
                let confident_miss = gold_label.is_some()
                    && model_label.is_some()
                    && model_label != gold_label
                    && model_probability.is_some_and(|p| p as f64 >= confidence);
                let reason = match (confident_miss, disagree) {
                    (true, _) => "confident_model_disagrees",
                    (false, true) => "annotators_disagree",
                    _ => continue,
                };
                let text = turns.and_then(|t2| t2.get(&(dialogue.clone(), t as i32)));
                items.push(ReviewItem {
                    dialogue_id: dialogue.clone(),
                    turn_index: t as i32,
                    task,
                    reason,
                    annotator_labels: votes
                        .iter()
                        .map(|(name, v)| format!("{name}={}", v.as_deref().unwrap_or("-")))
                        .collect::<Vec<_>>()
                        .join("; "),
                    gold: gold_label,
                    model: model.map(|(name, _)| name.to_string()),
                    model_label,
                    model_probability,
                    utterance: text.map(|t| t.0.clone()),
                    system_response: text.map(|t| t.1.clone()),
                    model_slots: model_turn.as_ref().and_then(|l| l.slots.clone()),
                });
            }
        }
    }
    let rank = |item: &ReviewItem| {
        (
            item.reason != "confident_model_disagrees",
            -(item.model_probability.unwrap_or(0.0) as f64),
        )
    };
    items.sort_by(|a, b| {
        rank(a)
            .partial_cmp(&rank(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    items
}

/// review/ (Parquet dataset), review_label_studio.json and a matching
/// Label Studio labelling config.
pub fn write(
    items: &[ReviewItem],
    dir: &Path,
    intents: &[String],
    failure_classes: &[String],
) -> anyhow::Result<()> {
    let strings = |f: &dyn Fn(&ReviewItem) -> Option<String>| -> ArrayRef {
        Arc::new(items.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("dialogue_id", strings(&|i| Some(i.dialogue_id.clone()))),
        (
            "turn_index",
            Arc::new(items.iter().map(|i| i.turn_index).collect::<Int32Array>()),
        ),
        ("task", strings(&|i| Some(i.task.to_string()))),
        ("reason", strings(&|i| Some(i.reason.to_string()))),
        (
            "annotator_labels",
            strings(&|i| Some(i.annotator_labels.clone())),
        ),
        ("gold", strings(&|i| i.gold.clone())),
        ("model", strings(&|i| i.model.clone())),
        ("model_label", strings(&|i| i.model_label.clone())),
        (
            "model_probability",
            Arc::new(
                items
                    .iter()
                    .map(|i| i.model_probability)
                    .collect::<Float32Array>(),
            ),
        ),
        ("user_utterance", strings(&|i| i.utterance.clone())),
        ("system_response", strings(&|i| i.system_response.clone())),
    ];
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, a)| {
                Field::new(
                    *n,
                    a.data_type().clone(),
                    *n != "dialogue_id" && *n != "turn_index",
                )
            })
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?;
    let mut writer = DatasetWriter::create(&dir.join("review"), true)?;
    writer.write_batch(&batch)?;
    writer.finish_raw()?;

    let tasks: Vec<serde_json::Value> = items.iter().map(label_studio_task).collect();
    write_file_atomic(
        &dir.join("review_label_studio.json"),
        serde_json::to_string_pretty(&tasks)?.as_bytes(),
    )?;
    write_file_atomic(
        &dir.join("label_studio_config.xml"),
        label_studio_config(intents, failure_classes).as_bytes(),
    )?;
    Ok(())
}

/// One Label Studio task: the turn's text as data, the model's label as a prediction.
fn label_studio_task(item: &ReviewItem) -> serde_json::Value {
    let mut result = Vec::new();
    if let (Some(label), Some(model)) = (&item.model_label, &item.model) {
        match item.task {
            "slots" => {
                // Label Studio counts characters, labelgen UTF-8 bytes.
                if let (Some(text), Some(spans)) = (&item.utterance, &item.model_slots) {
                    for span in spans {
                        let (Some(prefix), Some(value)) = (text.get(..span.start as usize), text.get(span.start as usize..span.end as usize)) else { continue };
                        let start = prefix.chars().count();
                        result.push(json!({"from_name": "slots", "to_name": "utterance", "type": "labels",
                            "value": {"start": start, "end": start + value.chars().count(), "text": value, "labels": [span.slot]}}));
                    }
                }
            }
            task => result.push(json!({"from_name": task, "to_name": "utterance", "type": "choices", "value": {"choices": [label]}})),
        }
        return json!({
            "data": task_data(item),
            "predictions": [{"model_version": model, "score": item.model_probability, "result": result}],
        });
    }
    json!({ "data": task_data(item) })
}

fn task_data(item: &ReviewItem) -> serde_json::Value {
    json!({
        "dialogue_id": item.dialogue_id, "turn_index": item.turn_index, "task": item.task, "reason": item.reason,
        "utterance": item.utterance.clone().unwrap_or_default(), "system_response": item.system_response.clone().unwrap_or_default(),
        "annotator_labels": item.annotator_labels, "gold": item.gold,
    })
}

fn label_studio_config(intents: &[String], failure_classes: &[String]) -> String {
    let choices = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("    <Choice value=\"{n}\"/>\n"))
            .collect::<String>()
    };
    format!(
        "<View>\n  <Text name=\"utterance\" value=\"$utterance\"/>\n  <Header value=\"$system_response\"/>\n  <Labels name=\"slots\" toName=\"utterance\"/>\n  <Choices name=\"intent\" toName=\"utterance\" choice=\"single\">\n{}  </Choices>\n  <Choices name=\"failure_point\" toName=\"utterance\" choice=\"single\">\n{}  </Choices>\n</View>\n",
        choices(intents),
        choices(failure_classes)
    )
}
