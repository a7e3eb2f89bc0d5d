//! Simulated human annotators: the truth, corrupted the way people corrupt
//! it. Errors pick confusable classes, slip goal boundaries by a turn and
//! move span edges by a word, at a rate per label that is an option.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::catalog::{self, confusable_slot};
use super::dialogue::SimDialogue;
use crate::data::annotators::TRUTH_ANNOTATOR;
use crate::data::tables::{Annotation, FailurePoint, SlotSpan};

/// Failure classes people mix up: neighbours in the pipeline, and "it
/// worked" against "it did the wrong thing".
fn confusable_failure(f: FailurePoint) -> &'static [FailurePoint] {
    use FailurePoint::*;
    match f {
        Correct => &[Result, Asr, Entity],
        FalseWake => &[Asr, Correct],
        Asr => &[Nlu, Entity, FalseWake],
        Nlu => &[Asr, Entity, Result],
        Entity => &[Result, Asr, Nlu],
        Result => &[Entity, Correct, Nlu],
        // Never simulated (the simulator knows the failing stage).
        Defect => &[Result, Entity, Correct],
    }
}

/// One annotator's labels for every turn of a dialogue.
pub fn annotate(
    dialogue: &SimDialogue,
    annotator: &str,
    error_rate: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Annotation> {
    let n = dialogue.turns.len();
    let truth = &dialogue.truth;
    let goal_ids = noisy_goal_ids(
        &truth.iter().map(|t| t.goal).collect::<Vec<_>>(),
        error_rate,
        rng,
    );
    // Success per annotated goal: the truth of the goal its first turn belongs
    // to, flipped at the error rate.
    let goals = goal_ids.last().map_or(0, |g| g + 1) as usize;
    let mut success = vec![false; goals];
    let mut seen = vec![false; goals];
    for t in 0..n {
        let g = goal_ids[t] as usize;
        if !seen[g] {
            seen[g] = true;
            let true_success = dialogue.goal_success[truth[t].goal as usize];
            success[g] = if rng.random_bool(error_rate) {
                !true_success
            } else {
                true_success
            };
        }
    }
    (0..n)
        .map(|t| {
            let turn = &dialogue.turns[t];
            let truth = &truth[t];
            let intent = if rng.random_bool(error_rate) {
                let spec = catalog::intent(truth.intent);
                spec.confusable.choose(rng).copied().unwrap_or(truth.intent)
            } else {
                truth.intent
            };
            let failure = if rng.random_bool(error_rate) {
                *confusable_failure(truth.failure_point)
                    .choose(rng)
                    .expect("every class has confusions")
            } else {
                truth.failure_point
            };
            let slots = if rng.random_bool(error_rate) {
                noisy_slots(&turn.user_utterance, &truth.slots, rng)
            } else {
                truth.slots.clone()
            };
            Annotation {
                dialogue_id: turn.dialogue_id.clone(),
                turn_index: turn.turn_index,
                annotator_id: annotator.to_string(),
                goal_id: Some(goal_ids[t]),
                goal_success: Some(success[goal_ids[t] as usize]),
                intent: Some(intent.to_string()),
                slots: Some(slots),
                failure_point: Some(failure.as_str().to_string()),
                // Annotators label what a turn means, not why it needs context.
                context: None,
            }
        })
        .collect()
}

/// The truth as an annotation (annotator "truth").
pub fn truth_annotations(dialogue: &SimDialogue) -> Vec<Annotation> {
    dialogue
        .turns
        .iter()
        .zip(&dialogue.truth)
        .map(|(turn, truth)| Annotation {
            dialogue_id: turn.dialogue_id.clone(),
            turn_index: turn.turn_index,
            annotator_id: TRUTH_ANNOTATOR.into(),
            goal_id: Some(truth.goal),
            goal_success: Some(dialogue.goal_success[truth.goal as usize]),
            intent: Some(truth.intent.to_string()),
            slots: Some(truth.slots.clone()),
            failure_point: Some(truth.failure_point.as_str().to_string()),
            context: truth.context.map(|reason| reason.as_str().to_string()),
        })
        .collect()
}

/// Boundary noise: a true boundary slips one turn or is missed; a spurious
/// one appears now and then. Goal ids stay 0, 1, 2, ... in order.
fn noisy_goal_ids(true_goals: &[i32], rate: f64, rng: &mut ChaCha8Rng) -> Vec<i32> {
    let n = true_goals.len();
    let mut boundary: Vec<bool> = (0..n)
        .map(|t| t > 0 && true_goals[t] != true_goals[t - 1])
        .collect();
    for t in 1..n {
        let is_true_boundary = t > 0 && true_goals[t] != true_goals[t - 1];
        if is_true_boundary && rng.random_bool(rate) {
            boundary[t] = false;
            // Slip one turn either way, or miss it entirely.
            let target = match rng.random_range(0..3) {
                0 if t + 1 < n => Some(t + 1),
                1 if t > 1 => Some(t - 1),
                _ => None,
            };
            if let Some(target) = target {
                boundary[target] = true;
            }
        } else if !is_true_boundary && rng.random_bool(rate * 0.3) {
            boundary[t] = true;
        }
    }
    let mut goal = 0;
    (0..n)
        .map(|t| {
            if boundary[t] {
                goal += 1;
            }
            goal
        })
        .collect()
}

/// Span noise: an edge moves by a word, the type is confused, a span is
/// missed, or (on a turn with none) a word is tagged.
fn noisy_slots(utterance: &str, spans: &[SlotSpan], rng: &mut ChaCha8Rng) -> Vec<SlotSpan> {
    let mut spans = spans.to_vec();
    let words = word_bounds(utterance);
    if spans.is_empty() {
        if let Some(&(start, end)) = words.choose(rng) {
            spans.push(SlotSpan {
                slot: "item".into(),
                start: start as i32,
                end: end as i32,
            });
        }
        return spans;
    }
    let i = rng.random_range(0..spans.len());
    match rng.random_range(0..4) {
        0 => {
            // Extend to the next word, or shrink by one word.
            let span = &mut spans[i];
            let next = words.iter().find(|(s, _)| *s as i32 > span.end);
            let inner_last = words
                .iter()
                .rev()
                .find(|(s, e)| *s as i32 > span.start && *e as i32 <= span.end);
            match (next, inner_last) {
                (Some(&(_, e)), _) if rng.random_bool(0.5) => span.end = e as i32,
                (_, Some(&(s, _))) => span.end = (s as i32 - 1).max(span.start + 1),
                (Some(&(_, e)), None) => span.end = e as i32,
                (None, None) => span.slot = confusable_slot(&span.slot).to_string(),
            }
        }
        1 => spans[i].slot = confusable_slot(&spans[i].slot).to_string(),
        _ => {
            spans.remove(i);
        }
    }
    spans
}

/// Byte ranges of the space-separated words of an utterance.
fn word_bounds(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c == ' ', start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn goal_ids_stay_ordered_under_noise() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let truth = [0, 0, 1, 1, 1, 2, 3, 3];
        for _ in 0..500 {
            let ids = noisy_goal_ids(&truth, 0.5, &mut rng);
            assert_eq!(ids[0], 0);
            assert!(
                ids.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1),
                "{ids:?}"
            );
        }
    }

    #[test]
    fn noisy_spans_stay_inside_the_utterance() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let text = "play purple haze by anna smith";
        let spans = vec![
            SlotSpan {
                slot: "song".into(),
                start: 5,
                end: 16,
            },
            SlotSpan {
                slot: "artist".into(),
                start: 20,
                end: 30,
            },
        ];
        for _ in 0..500 {
            for span in noisy_slots(text, &spans, &mut rng) {
                assert!(
                    0 <= span.start && span.start < span.end && span.end as usize <= text.len(),
                    "{span:?}"
                );
            }
        }
    }
}
