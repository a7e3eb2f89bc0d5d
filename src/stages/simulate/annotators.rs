//! Simulated human annotators: the truth, corrupted the way people corrupt
//! it. Errors pick confusable classes, slip goal boundaries by a turn and
//! move span edges by a word.
//!
//! People err on the hard items, and together. Each annotator has a
//! nominal per-label rate r (an option: 6% for a1, a2, a3, 12% for
//! `single`); on an item of difficulty d (see `difficulty`) they err with
//! chance r * (0.3 + 3d) / 1.05, at most 0.6: a third of r on the easiest
//! items, over three times r on the hardest. The divisor is the mean of the
//! numerator on the default simulation (difficulty averages about 0.22 and
//! ambiguous splits add the rest), so realised error stays near r.
//!
//! An error is the item's shared decoy (the wrong answer the evidence points
//! to, the same for every annotator) with chance 0.3 + 0.7d, otherwise a
//! confusion of the annotator's own: on hard items annotators who err agree
//! on the wrong answer, so the gold can be unanimously wrong. On a
//! genuinely ambiguous item every annotator, however careful, takes the
//! decoy reading with chance 0.4, so such items rarely have unanimous gold.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::catalog::{self, confusable_slot};
use super::dialogue::SimDialogue;
use super::difficulty::{AMBIGUOUS_SPLIT, BoundarySlip, DialogueItems, TurnItem};
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

/// Error chance on an item of difficulty 0, as a multiple of the nominal rate.
const EASY_FACTOR: f64 = 0.3;
/// How much each unit of difficulty adds to that multiple.
const DIFFICULTY_FACTOR: f64 = 3.0;
/// Mean of `EASY_FACTOR + DIFFICULTY_FACTOR * difficulty` over the items of
/// the default simulation (difficulty averages MEAN_DIFFICULTY there): the
/// divisor that keeps the mean error at the nominal rate.
const MEAN_DIFFICULTY: f64 = 0.25;
/// No annotator errs more often than this, however hard the item.
const MAX_ERROR: f64 = 0.6;
/// Share of errors on an easy item that pick the item's shared decoy; the
/// rest rises with difficulty to all of them at difficulty 1.
const SHARED_DECOY_EASY: f64 = 0.3;

/// The chance that an annotator whose nominal per-label error rate is
/// `rate` errs on an item this hard.
pub fn error_chance(rate: f64, difficulty: f64) -> f64 {
    let factor = (EASY_FACTOR + DIFFICULTY_FACTOR * difficulty)
        / (EASY_FACTOR + DIFFICULTY_FACTOR * MEAN_DIFFICULTY);
    (rate * factor).min(MAX_ERROR)
}

/// The chance that an error on an item this hard is the item's shared decoy.
fn shared_decoy_chance(difficulty: f64) -> f64 {
    SHARED_DECOY_EASY + (1.0 - SHARED_DECOY_EASY) * difficulty
}

/// One annotator's answer on one item: the truth; on a genuinely ambiguous
/// item the other reading (the decoy) at AMBIGUOUS_SPLIT whatever the
/// annotator's rate; otherwise, at the error chance, the decoy most people
/// fall for or (less often on hard items) a confusion of their own.
fn judge<T>(
    truth: T,
    decoy: Option<T>,
    ambiguous: bool,
    difficulty: f64,
    rate: f64,
    rng: &mut ChaCha8Rng,
    own_confusion: impl FnOnce(&mut ChaCha8Rng) -> T,
) -> T {
    let Some(decoy) = decoy else {
        return if rng.random_bool(error_chance(rate, difficulty)) {
            own_confusion(rng)
        } else {
            truth
        };
    };
    if ambiguous && rng.random_bool(AMBIGUOUS_SPLIT) {
        return decoy;
    }
    if !rng.random_bool(error_chance(rate, difficulty)) {
        truth
    } else if rng.random_bool(shared_decoy_chance(difficulty)) {
        decoy
    } else {
        own_confusion(rng)
    }
}

/// One annotator's labels for every turn of a dialogue whose items are
/// `items` (the same for every annotator).
pub fn annotate(
    dialogue: &SimDialogue,
    items: &DialogueItems,
    annotator: &str,
    error_rate: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Annotation> {
    let n = dialogue.turns.len();
    let truth = &dialogue.truth;
    let goal_ids = noisy_goal_ids(
        &truth.iter().map(|t| t.goal).collect::<Vec<_>>(),
        &items.turns,
        error_rate,
        rng,
    );
    // Success per annotated goal: judged on the true goal its first turn
    // belongs to.
    let goals = goal_ids.last().map_or(0, |g| g + 1) as usize;
    let mut success = vec![None; goals];
    for t in 0..n {
        let g = goal_ids[t] as usize;
        if success[g].is_none() {
            let true_goal = truth[t].goal as usize;
            let item = &items.goals[true_goal];
            let true_success = dialogue.goal_success[true_goal];
            success[g] = Some(judge(
                true_success,
                Some(!true_success),
                item.ambiguous,
                item.difficulty,
                error_rate,
                rng,
                |_| !true_success,
            ));
        }
    }
    (0..n)
        .map(|t| {
            let turn = &dialogue.turns[t];
            let truth = &truth[t];
            let item = &items.turns[t];
            let d = item.difficulty;
            let intent = judge(
                truth.intent,
                item.intent_decoy,
                item.ambiguous_intent,
                d,
                error_rate,
                rng,
                |rng| {
                    let spec = catalog::intent(truth.intent);
                    spec.confusable.choose(rng).copied().unwrap_or(truth.intent)
                },
            );
            let failure = judge(
                truth.failure_point,
                Some(item.failure_decoy),
                item.ambiguous_failure,
                d,
                error_rate,
                rng,
                |rng| {
                    *confusable_failure(truth.failure_point)
                        .choose(rng)
                        .expect("every class has confusions")
                },
            );
            let slots = judge(
                truth.slots.clone(),
                Some(item.slots_decoy.clone()),
                item.ambiguous_slots,
                d,
                error_rate,
                rng,
                |rng| noisy_slots(&turn.user_utterance, &truth.slots, rng),
            );
            Annotation {
                dialogue_id: turn.dialogue_id.clone(),
                turn_index: turn.turn_index,
                annotator_id: annotator.to_string(),
                goal_id: Some(goal_ids[t]),
                goal_success: success[goal_ids[t] as usize],
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

/// Boundary noise: a true boundary slips one turn or is missed (the way
/// the item's shared slip goes, mostly, on hard turns); a spurious one
/// appears now and then, more often on hard turns. Goal ids stay 0, 1, 2,
/// ... in order.
fn noisy_goal_ids(
    true_goals: &[i32],
    items: &[TurnItem],
    rate: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<i32> {
    let n = true_goals.len();
    let is_true_boundary = |t: usize| t > 0 && true_goals[t] != true_goals[t - 1];
    let mut boundary: Vec<bool> = (0..n).map(is_true_boundary).collect();
    for t in 1..n {
        let item = &items[t];
        if is_true_boundary(t) {
            let slip = judge(
                None,
                Some(Some(item.boundary_slip)),
                item.ambiguous_boundary,
                item.difficulty,
                rate,
                rng,
                |rng| {
                    Some(
                        *[
                            BoundarySlip::Later,
                            BoundarySlip::Earlier,
                            BoundarySlip::Missed,
                        ]
                        .choose(rng)
                        .expect("three slips"),
                    )
                },
            );
            let Some(slip) = slip else { continue };
            boundary[t] = false;
            match slip {
                BoundarySlip::Later if t + 1 < n => boundary[t + 1] = true,
                BoundarySlip::Earlier if t > 1 => boundary[t - 1] = true,
                _ => {}
            }
        } else if rng.random_bool(error_chance(rate * 0.3, item.difficulty)) {
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
pub fn noisy_slots(utterance: &str, spans: &[SlotSpan], rng: &mut ChaCha8Rng) -> Vec<SlotSpan> {
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
        for difficulty in [0.0, 0.5, 1.0] {
            for ambiguous in [false, true] {
                let items = vec![item(difficulty, ambiguous); truth.len()];
                for _ in 0..200 {
                    let ids = noisy_goal_ids(&truth, &items, 0.5, &mut rng);
                    assert_eq!(ids[0], 0);
                    assert!(
                        ids.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1),
                        "{ids:?}"
                    );
                }
            }
        }
    }

    fn item(difficulty: f64, ambiguous: bool) -> TurnItem {
        TurnItem {
            difficulty,
            intent_decoy: Some("GetFact"),
            failure_decoy: FailurePoint::Asr,
            slots_decoy: Vec::new(),
            boundary_slip: BoundarySlip::Later,
            ambiguous_intent: ambiguous,
            ambiguous_failure: ambiguous,
            ambiguous_slots: ambiguous,
            ambiguous_boundary: ambiguous,
        }
    }

    /// How often `judge` answers the truth, the decoy, or another confusion,
    /// over many annotators of one item.
    fn answers(difficulty: f64, ambiguous: bool, rate: f64) -> [f64; 3] {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut counts = [0usize; 3];
        let n = 40_000;
        for _ in 0..n {
            let answer = judge(0, Some(1), ambiguous, difficulty, rate, &mut rng, |_| 2);
            counts[answer] += 1;
        }
        counts.map(|c| c as f64 / n as f64)
    }

    #[test]
    fn errors_grow_with_difficulty_and_gather_on_the_decoy() {
        // Easy: under a third of the nominal rate; hard: over three times it, all on the decoy.
        let easy = answers(0.0, false, 0.12);
        let hard = answers(1.0, false, 0.12);
        let expected_easy = error_chance(0.12, 0.0);
        let expected_hard = error_chance(0.12, 1.0);
        assert!((expected_easy - 0.12 * 0.3 / 1.05).abs() < 1e-9);
        assert!((expected_hard - 0.12 * 3.3 / 1.05).abs() < 1e-9);
        assert!((1.0 - easy[0] - expected_easy).abs() < 0.005, "{easy:?}");
        assert!((1.0 - hard[0] - expected_hard).abs() < 0.01, "{hard:?}");
        // Errors on the easy item mostly differ; on the hard one all are the decoy.
        assert!(
            (easy[1] / (easy[1] + easy[2]) - 0.3).abs() < 0.05,
            "{easy:?}"
        );
        assert_eq!(hard[2], 0.0, "{hard:?}");
        assert_eq!(error_chance(0.5, 1.0), MAX_ERROR);
    }

    #[test]
    fn careful_annotators_split_on_ambiguous_items() {
        // Even an annotator who never errs takes the other reading at AMBIGUOUS_SPLIT.
        let split = answers(0.8, true, 0.0);
        assert!((split[1] - AMBIGUOUS_SPLIT).abs() < 0.01, "{split:?}");
        assert_eq!(split[2], 0.0);
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
