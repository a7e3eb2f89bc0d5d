//! Who said what about each turn, and the gold the three annotators agree on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::data::issues::DataError;
use crate::data::tables::{Annotation, Label, SlotSpan};

/// Gold from the three annotators: all must agree (corroborated, the
/// keynote's protocol), or at least two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GoldPolicy {
    Unanimous,
    Majority,
}

/// One system's labels for one turn: a model's (with probabilities) or an
/// annotator's (without).
#[derive(Debug, Clone, Default)]
pub struct TurnLabels {
    pub goal_id: Option<i32>,
    pub goal_success: Option<bool>,
    pub intent: Option<String>,
    pub slots: Option<Vec<SlotSpan>>,
    pub failure_point: Option<String>,
    pub goal_boundary_prob: Option<f32>,
    pub goal_success_prob: Option<f32>,
    pub intent_prob: Option<f32>,
    pub slots_prob: Option<f32>,
    pub failure_point_prob: Option<f32>,
    /// Why the turn's meaning needs context, where the annotator recorded it
    /// (the simulator's truth rows); see [`context_subset`].
    pub context: Option<String>,
}

/// A system's labels: dialogue id -> turns by turn_index (None: no row).
pub type SystemLabels = HashMap<String, Vec<Option<TurnLabels>>>;

/// The largest turn_index a system's labels may hold: they are a vector per
/// dialogue indexed by turn, and one hostile row must not size it.
pub const MAX_TURN_INDEX: i32 = 100_000;

/// Puts one row's labels at its turn. A negative, huge or repeated
/// turn_index is an error: it would overwrite another turn's labels or
/// allocate without bound. (`read_table` already refuses negative and
/// duplicate keys; this holds for rows from anywhere.)
pub(super) fn place(
    labels: &mut SystemLabels,
    (path, dialogue, turn): (&Path, &str, i32),
    value: TurnLabels,
) -> Result<(), DataError> {
    let bad = |detail: String| DataError::BadColumn {
        path: path.to_path_buf(),
        column: "turn_index".into(),
        detail: format!("dialogue {dialogue}: {detail}"),
    };
    if !(0..=MAX_TURN_INDEX).contains(&turn) {
        return Err(bad(format!(
            "turn_index {turn} outside 0..={MAX_TURN_INDEX}"
        )));
    }
    let turns = labels.entry(dialogue.to_string()).or_default();
    let t = turn as usize;
    if turns.len() <= t {
        turns.resize(t + 1, None);
    }
    if turns[t].is_some() {
        return Err(bad(format!("two rows for turn_index {turn} of one system")));
    }
    turns[t] = Some(value);
    Ok(())
}

/// Splits an annotations table (read from `path`) by annotator.
pub fn by_annotator(
    rows: Vec<Annotation>,
    path: &Path,
) -> Result<BTreeMap<String, SystemLabels>, DataError> {
    let mut out: BTreeMap<String, SystemLabels> = BTreeMap::new();
    for row in rows {
        let labels = TurnLabels {
            goal_id: row.goal_id,
            goal_success: row.goal_success,
            intent: row.intent,
            slots: row.slots.map(|mut s| {
                s.sort();
                s
            }),
            failure_point: row.failure_point,
            context: row.context,
            ..TurnLabels::default()
        };
        place(
            out.entry(row.annotator_id).or_default(),
            (path, &row.dialogue_id, row.turn_index),
            labels,
        )?;
    }
    Ok(out)
}

/// A labels table (read from `path`) as a system.
pub fn from_labels(rows: Vec<Label>, path: &Path) -> Result<SystemLabels, DataError> {
    let mut out = SystemLabels::new();
    for row in rows {
        let labels = TurnLabels {
            goal_id: row.goal_id,
            goal_success: row.goal_success,
            intent: row.intent,
            slots: row.slots.map(|spans| {
                let mut s: Vec<SlotSpan> = spans
                    .into_iter()
                    .map(|s| SlotSpan {
                        slot: s.slot,
                        start: s.start,
                        end: s.end,
                    })
                    .collect();
                s.sort();
                s
            }),
            failure_point: row.failure_point,
            goal_boundary_prob: row.goal_boundary_prob,
            goal_success_prob: row.goal_success_prob,
            intent_prob: row.intent_prob,
            slots_prob: row.slots_prob,
            failure_point_prob: row.failure_point_prob,
            context: None,
        };
        place(&mut out, (path, &row.dialogue_id, row.turn_index), labels)?;
    }
    Ok(out)
}

/// The gold of one dialogue. `None` marks an item without gold (the
/// annotators did not agree, or did not all label it).
#[derive(Debug, Clone, Default)]
pub struct GoldDialogue {
    pub turns: usize,
    pub intent: Vec<Option<String>>,
    pub failure_point: Vec<Option<String>>,
    pub slots: Vec<Option<Vec<SlotSpan>>>,
    /// Goal id per turn, when the segmentation as a whole has gold.
    pub segmentation: Option<Vec<i32>>,
    /// Per gold goal: (first turn, end turn exclusive, success if agreed).
    pub goals: Vec<(usize, usize, Option<bool>)>,
}

/// The value at least `needed` of the annotators gave (nulls do not vote).
fn agreed<T: PartialEq + Clone>(votes: &[Option<T>], needed: usize) -> Option<T> {
    votes
        .iter()
        .flatten()
        .find(|v| votes.iter().flatten().filter(|w| w == v).count() >= needed)
        .cloned()
}

fn needed(policy: GoldPolicy, annotators: usize) -> usize {
    match policy {
        GoldPolicy::Unanimous => annotators,
        GoldPolicy::Majority => annotators / 2 + 1,
    }
}

/// Gold for one dialogue from the given annotators' labels.
pub fn derive(annotators: &[Option<&Vec<Option<TurnLabels>>>], policy: GoldPolicy) -> GoldDialogue {
    let need = needed(policy, annotators.len());
    let turns = annotators
        .iter()
        .flatten()
        .map(|t| t.len())
        .max()
        .unwrap_or(0);
    fn label<'a>(a: &Option<&'a Vec<Option<TurnLabels>>>, t: usize) -> Option<&'a TurnLabels> {
        a.and_then(|turns| turns.get(t)).and_then(Option::as_ref)
    }
    let votes = |t: usize, get: &dyn Fn(&TurnLabels) -> Option<String>| -> Option<String> {
        agreed(
            &annotators
                .iter()
                .map(|a| label(a, t).and_then(get))
                .collect::<Vec<_>>(),
            need,
        )
    };
    let mut gold = GoldDialogue {
        turns,
        ..GoldDialogue::default()
    };
    for t in 0..turns {
        gold.intent.push(votes(t, &|l| l.intent.clone()));
        gold.failure_point
            .push(votes(t, &|l| l.failure_point.clone()));
        let slot_votes: Vec<Option<Vec<SlotSpan>>> = annotators
            .iter()
            .map(|a| label(a, t).and_then(|l| l.slots.clone()))
            .collect();
        gold.slots.push(agreed(&slot_votes, need));
    }
    // Segmentation: a gold boundary decision for every turn, or no gold.
    let mut segmentation = Vec::with_capacity(turns);
    let mut goal = 0;
    for t in 0..turns {
        let boundary_votes: Vec<Option<bool>> = annotators
            .iter()
            .map(|a| {
                if t == 0 {
                    return Some(false);
                }
                match (
                    label(a, t - 1).and_then(|l| l.goal_id),
                    label(a, t).and_then(|l| l.goal_id),
                ) {
                    (Some(before), Some(now)) => Some(before != now),
                    _ => None,
                }
            })
            .collect();
        match agreed(&boundary_votes, need) {
            Some(boundary) => {
                goal += i32::from(boundary);
                segmentation.push(goal);
            }
            None => break,
        }
    }
    if segmentation.len() == turns && turns > 0 {
        // Goal success per gold goal: each annotator's value at the goal's first turn.
        let mut start = 0;
        for t in 1..=turns {
            if t == turns || segmentation[t] != segmentation[t - 1] {
                let success_votes: Vec<Option<bool>> = annotators
                    .iter()
                    .map(|a| label(a, start).and_then(|l| l.goal_success))
                    .collect();
                gold.goals.push((start, t, agreed(&success_votes, need)));
                start = t;
            }
        }
        gold.segmentation = Some(segmentation);
    }
    gold
}

/// Gold for each of `dialogues`, in their order, from the given annotators'
/// labels: the order every system is judged in, so judgements stay paired.
pub fn derive_all(
    annotators: &[&SystemLabels],
    dialogues: &BTreeSet<&String>,
    policy: GoldPolicy,
) -> Vec<(String, GoldDialogue)> {
    dialogues
        .iter()
        .map(|d| {
            let labels: Vec<_> = annotators.iter().map(|a| a.get(*d)).collect();
            ((*d).clone(), derive(&labels, policy))
        })
        .collect()
}

/// Whether any turn of `marks` says why its meaning needs context.
pub fn has_context_marks(marks: &SystemLabels) -> bool {
    marks
        .values()
        .flatten()
        .flatten()
        .any(|t| t.context.is_some())
}

/// The turns of `marks` (the simulator's truth) that record a context
/// reason, per dialogue.
fn needs_context(marks: &SystemLabels, dialogue: &str, turns: usize) -> Vec<bool> {
    let marked = marks.get(dialogue);
    (0..turns)
        .map(|t| {
            marked
                .and_then(|m| m.get(t))
                .and_then(Option::as_ref)
                .is_some_and(|l| l.context.is_some())
        })
        .collect()
}

/// The gold restricted to the turns whose meaning needs context: turn-level
/// gold (intent, slots, failure point) is kept on marked turns only, and
/// goal-level gold is dropped (a goal or a segmentation is not a turn).
/// Dialogues without a marked turn are left out, so the bootstrap resamples
/// the dialogues that hold the subset; the order of the rest is kept, so
/// every system judged on the result stays paired with every other.
pub fn context_subset(
    gold: &[(String, GoldDialogue)],
    marks: &SystemLabels,
) -> Vec<(String, GoldDialogue)> {
    gold.iter()
        .filter_map(|(dialogue, g)| {
            let keep = needs_context(marks, dialogue, g.turns);
            if !keep.contains(&true) {
                return None;
            }
            fn only<T: Clone>(values: &[Option<T>], keep: &[bool]) -> Vec<Option<T>> {
                values
                    .iter()
                    .zip(keep)
                    .map(|(v, k)| if *k { v.clone() } else { None })
                    .collect()
            }
            Some((
                dialogue.clone(),
                GoldDialogue {
                    turns: g.turns,
                    intent: only(&g.intent, &keep),
                    failure_point: only(&g.failure_point, &keep),
                    slots: only(&g.slots, &keep),
                    segmentation: None,
                    goals: Vec::new(),
                },
            ))
        })
        .collect()
}

/// Marked turns of the gold dialogues: how many, and how many per reason.
pub fn context_reasons(
    gold: &[(String, GoldDialogue)],
    marks: &SystemLabels,
) -> (u64, BTreeMap<String, u64>) {
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (dialogue, g) in gold {
        let Some(turns) = marks.get(dialogue) else {
            continue;
        };
        for reason in turns
            .iter()
            .take(g.turns)
            .flatten()
            .filter_map(|l| l.context.as_ref())
        {
            *reasons.entry(reason.clone()).or_default() += 1;
        }
    }
    (reasons.values().sum(), reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(goal: i32, success: bool, intent: &str) -> Option<TurnLabels> {
        Some(TurnLabels {
            goal_id: Some(goal),
            goal_success: Some(success),
            intent: Some(intent.into()),
            slots: Some(vec![]),
            failure_point: Some("correct".into()),
            ..TurnLabels::default()
        })
    }

    #[test]
    fn a_turn_index_that_would_overwrite_or_oversize_a_system_is_an_error() {
        let row = |turn: i32| Label {
            dialogue_id: "d1".into(),
            turn_index: turn,
            intent: Some(format!("turn {turn}")),
            ..Label::default()
        };
        let path = Path::new("l.parquet");
        let labels = from_labels(vec![row(1), row(0)], path).unwrap();
        assert_eq!(
            labels["d1"][0].as_ref().unwrap().intent.as_deref(),
            Some("turn 0")
        );
        for (rows, expected) in [
            (
                vec![row(0), row(-1)],
                "l.parquet: column `turn_index`: dialogue d1: turn_index -1 outside 0..=100000",
            ),
            (
                vec![row(0), row(0)],
                "l.parquet: column `turn_index`: dialogue d1: two rows for turn_index 0 of one system",
            ),
            (
                vec![row(i32::MAX)],
                "l.parquet: column `turn_index`: dialogue d1: turn_index 2147483647 outside 0..=100000",
            ),
        ] {
            let error = from_labels(rows, path).expect_err("refused");
            assert_eq!(error.to_string(), expected);
        }
        let annotation = Annotation {
            dialogue_id: "d1".into(),
            annotator_id: "a1".into(),
            ..Annotation::default()
        };
        let twice = vec![annotation.clone(), annotation];
        assert!(by_annotator(twice, path).is_err());
    }

    #[test]
    fn unanimous_needs_all_three_and_majority_two() {
        let a = vec![turn(0, true, "PlayMusic"), turn(1, false, "GetWeather")];
        let b = vec![turn(0, true, "PlayMusic"), turn(1, false, "GetWeather")];
        let c = vec![turn(0, true, "PlayVideo"), turn(0, true, "GetWeather")];
        let all = [Some(&a), Some(&b), Some(&c)];
        let gold = derive(&all, GoldPolicy::Unanimous);
        assert_eq!(gold.intent, vec![None, Some("GetWeather".to_string())]);
        assert_eq!(gold.segmentation, None, "c puts no boundary at turn 1");
        let gold = derive(&all, GoldPolicy::Majority);
        assert_eq!(gold.intent[0].as_deref(), Some("PlayMusic"));
        assert_eq!(gold.segmentation, Some(vec![0, 1]));
        assert_eq!(gold.goals, vec![(0, 1, Some(true)), (1, 2, Some(false))]);
    }

    #[test]
    fn derive_all_gives_every_dialogue_in_order_even_where_an_annotator_is_silent() {
        let music = vec![turn(0, true, "PlayMusic")];
        let weather = vec![turn(0, true, "GetWeather")];
        let a: SystemLabels = [
            ("d2".to_string(), music.clone()),
            ("d1".to_string(), weather),
        ]
        .into_iter()
        .collect();
        let b: SystemLabels = [("d2".to_string(), music)].into_iter().collect();
        let names = ["d1".to_string(), "d2".to_string()];
        let dialogues: BTreeSet<&String> = names.iter().collect();
        let gold = derive_all(&[&a, &b], &dialogues, GoldPolicy::Unanimous);
        let order: Vec<&str> = gold.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(order, ["d1", "d2"]);
        assert_eq!(gold[0].1.intent, vec![None], "b never labelled d1");
        assert_eq!(gold[1].1.intent, vec![Some("PlayMusic".to_string())]);
        let alone = derive_all(&[&a], &dialogues, GoldPolicy::Unanimous);
        assert_eq!(alone[0].1.intent, vec![Some("GetWeather".to_string())]);
    }

    fn marked(reasons: &[Option<&str>]) -> Vec<Option<TurnLabels>> {
        reasons
            .iter()
            .map(|r| {
                Some(TurnLabels {
                    context: r.map(str::to_string),
                    ..TurnLabels::default()
                })
            })
            .collect()
    }

    #[test]
    fn the_context_subset_keeps_marked_turns_of_marked_dialogues() {
        let a = vec![
            turn(0, true, "GetWeather"),
            turn(0, true, "GetWeather"),
            turn(1, false, "PlayMusic"),
        ];
        let gold = vec![
            (
                "d1".to_string(),
                derive(&[Some(&a), Some(&a)], GoldPolicy::Unanimous),
            ),
            (
                "d2".to_string(),
                derive(&[Some(&a), Some(&a)], GoldPolicy::Unanimous),
            ),
            (
                "d3".to_string(),
                derive(&[Some(&a), Some(&a)], GoldPolicy::Unanimous),
            ),
        ];
        let marks: SystemLabels = [
            ("d1".to_string(), marked(&[None, Some("ellipsis"), None])),
            ("d2".to_string(), marked(&[None, None, None])),
            (
                "d3".to_string(),
                marked(&[Some("device_type"), None, Some("ellipsis")]),
            ),
        ]
        .into_iter()
        .collect();
        assert!(has_context_marks(&marks));
        let subset = context_subset(&gold, &marks);
        let names: Vec<&str> = subset.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(names, ["d1", "d3"], "d2 has no marked turn; order kept");
        let d1 = &subset[0].1;
        assert_eq!(d1.intent, vec![None, Some("GetWeather".to_string()), None]);
        assert_eq!(d1.slots, vec![None, Some(vec![]), None]);
        assert_eq!(d1.failure_point.iter().flatten().count(), 1);
        assert_eq!(d1.segmentation, None, "goal-level gold is not a turn");
        assert!(d1.goals.is_empty());
        let d3 = &subset[1].1;
        assert_eq!(
            d3.intent,
            vec![
                Some("GetWeather".to_string()),
                None,
                Some("PlayMusic".to_string())
            ]
        );
        let (turns, reasons) = context_reasons(&gold, &marks);
        assert_eq!(turns, 3);
        assert_eq!(reasons["ellipsis"], 2);
        assert_eq!(reasons["device_type"], 1);
    }

    #[test]
    fn without_marks_the_context_subset_is_empty() {
        let a = vec![turn(0, true, "GetWeather")];
        let gold = vec![(
            "d1".to_string(),
            derive(&[Some(&a), Some(&a)], GoldPolicy::Unanimous),
        )];
        let unmarked: SystemLabels = [("d1".to_string(), marked(&[None]))].into_iter().collect();
        assert!(!has_context_marks(&unmarked));
        assert!(context_subset(&gold, &unmarked).is_empty());
        assert!(context_subset(&gold, &SystemLabels::new()).is_empty());
    }

    #[test]
    fn a_missing_annotator_leaves_unanimous_gold_undefined() {
        let a = vec![turn(0, true, "PlayMusic")];
        let gold = derive(&[Some(&a), Some(&a), None], GoldPolicy::Unanimous);
        assert_eq!(gold.intent, vec![None]);
        let gold = derive(&[Some(&a), Some(&a), None], GoldPolicy::Majority);
        assert_eq!(gold.intent[0].as_deref(), Some("PlayMusic"));
    }
}
