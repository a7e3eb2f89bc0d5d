//! The intent decision's stay shift (`LabelSets::intent_stay_shift`),
//! fitted on the dev split. `label` decides a dialogue's intents in order,
//! and a turn that continues its goal leans towards the intent the goal
//! had on the turn before: "thanks, that's all" says nothing of its intent,
//! and the head alone then guesses one from another domain.

use crate::model::config::{LabelSets, softmax};

/// One dev turn as the intent decision sees it, in window order.
#[derive(Clone)]
pub(super) struct StayTurn {
    /// The boundary head's logit, before calibration.
    pub boundary_logit: f32,
    pub rephrase: bool,
    pub intent_logits: Vec<f32>,
    pub gold_intent: Option<usize>,
}

/// A dev turn after calibration: whether `label` would start a new goal
/// there, its intent probabilities and its gold intent.
struct DecidedTurn {
    new_goal: bool,
    intent: Vec<f64>,
    gold: Option<usize>,
}

/// The stay shift with the most dev turns labelled with their gold intent
/// when goals and intents are decided as `label` decides them (`decider`
/// holds the fitted temperatures and boundary decisions). Ties keep the
/// smaller shift, so a dev split without intents keeps 0.
pub(super) fn fit_intent_stay_shift(windows: &[Vec<StayTurn>], decider: &LabelSets) -> f64 {
    let decided: Vec<Vec<DecidedTurn>> = windows.iter().map(|w| decide_goals(w, decider)).collect();
    let mut labels = decider.clone();
    let mut correct = |shift: f64| {
        labels.intent_stay_shift = shift;
        decided
            .iter()
            .map(|turns| correct_intents(turns, &labels))
            .sum::<usize>()
    };
    let mut best = (correct(0.0), 0.0);
    for shift in (1..=24).map(|i| 0.25 * i as f64) {
        let score = correct(shift);
        if score > best.0 {
            best = (score, shift);
        }
    }
    best.1
}

/// A window's turns with label's goal decision (the first turn starts one).
fn decide_goals(turns: &[StayTurn], decider: &LabelSets) -> Vec<DecidedTurn> {
    let temperature = |head: &str| decider.temperatures.get(head).copied().unwrap_or(1.0);
    let (boundary_t, intent_t) = (temperature("goal_boundary"), temperature("intent"));
    let intents: Vec<Vec<f64>> = turns
        .iter()
        .map(|t| softmax(&t.intent_logits, intent_t))
        .collect();
    turns
        .iter()
        .enumerate()
        .map(|(k, turn)| {
            let new_goal = k == 0 || {
                let calibrated = 1.0 / (1.0 + (-(turn.boundary_logit as f64) / boundary_t).exp());
                let change = LabelSets::intent_change(&intents[k - 1], &intents[k]);
                decider.boundary_probability(calibrated, turn.rephrase, change)
                    > decider.boundary_threshold
            };
            DecidedTurn {
                new_goal,
                intent: intents[k].clone(),
                gold: turn.gold_intent,
            }
        })
        .collect()
}

/// How many of a window's turns get their gold intent, decided in order.
fn correct_intents(turns: &[DecidedTurn], labels: &LabelSets) -> usize {
    let mut previous = None;
    let mut correct = 0;
    for turn in turns {
        let previous_in_goal = if turn.new_goal { None } else { previous };
        let chosen = labels.intent_decision(&turn.intent, previous_in_goal);
        correct += usize::from(turn.gold == Some(chosen));
        previous = Some(chosen);
    }
    correct
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(boundary_logit: f32, intent_logits: [f32; 2], gold: usize) -> StayTurn {
        StayTurn {
            boundary_logit,
            rephrase: false,
            intent_logits: intent_logits.to_vec(),
            gold_intent: Some(gold),
        }
    }

    fn decider() -> LabelSets {
        LabelSets::new(vec!["a".into(), "b".into()], vec![], vec![])
    }

    #[test]
    fn a_goal_whose_last_turn_the_head_misreads_fits_a_shift() {
        // Intent a, then an acknowledgement the head reads as a close b.
        let windows = vec![vec![turn(5.0, [3.0, 0.0], 0), turn(-5.0, [0.0, 0.5], 0)]; 3];
        let shift = fit_intent_stay_shift(&windows, &decider());
        assert!(shift >= 0.5, "{shift}");
        let mut labels = decider();
        labels.intent_stay_shift = shift;
        let decided = decide_goals(&windows[0], &labels);
        assert_eq!(correct_intents(&decided, &labels), 2);
    }

    #[test]
    fn a_new_goal_or_a_head_that_is_right_keeps_the_shift_at_zero() {
        // The second turn starts a new goal: the shift never applies.
        let new_goal = vec![vec![turn(5.0, [3.0, 0.0], 0), turn(5.0, [0.0, 0.5], 0)]];
        assert_eq!(fit_intent_stay_shift(&new_goal, &decider()), 0.0);
        // The head is right where the intent changes inside a goal: a shift
        // would only make it wrong.
        let right = vec![vec![turn(5.0, [3.0, 0.0], 0), turn(-5.0, [0.0, 0.5], 1)]];
        assert_eq!(fit_intent_stay_shift(&right, &decider()), 0.0);
        // No intents at all (a model trained on satisfaction ratings).
        let none = vec![vec![StayTurn {
            boundary_logit: 0.0,
            rephrase: false,
            intent_logits: vec![],
            gold_intent: None,
        }]];
        assert_eq!(fit_intent_stay_shift(&none, &decider()), 0.0);
    }
}
