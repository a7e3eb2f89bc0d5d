//! How hard each item of a simulated dialogue is to annotate, and the wrong
//! answer that looks right on it. Computed once per dialogue, before any
//! annotator labels it, so that every annotator faces the same item: they
//! err more on the hard ones, and when they err there they tend to pick the
//! same plausible wrong answer (correlated errors). Some hard items are
//! genuinely ambiguous: two readings are defensible and annotators split.
//!
//! A turn's difficulty (0 to 1) adds up what makes people misjudge it,
//! from what the simulator knows:
//!
//! | evidence | adds |
//! | --- | --- |
//! | its meaning needs context (ellipsis, selection, "yes", device state, ...) | 0.30 |
//! | the ASR changed the user's words (failed or recovered) | 0.30 |
//! | ASR confidence below 0.7 | 0.10 |
//! | a stage failed but the runtime reported success (only the user's reaction tells) | 0.30 |
//! | a stage failed and the runtime reported it (which stage is still unclear) | 0.10 |
//! | the dialogue has 6 or more turns (a further 0.10 from 9) | 0.10 |
//! | the turn is the 7th or later of its dialogue | 0.10 |
//!
//! capped at 1. A goal's difficulty (for its success label) is the mean of
//! its turns'.
//!
//! Each item also gets its decoy, the wrong answer its evidence points to:
//! for the intent, the runtime's own reading half the time where the
//! runtime misread (its response makes it look intended), else an intent
//! people confuse with the true one; for the failure point, the stage whose
//! symptoms show (an ASR error that sent NLU astray looks like NLU, a silent
//! result error like success, a recovered mishearing like ASR); for slots,
//! one span edge moved or type confused; for a goal boundary, one way to
//! misplace it; for goal success, the other answer. Per label, an item is
//! genuinely ambiguous with chance 0.5 * (d - 0.5) / 0.5 where d >= 0.5 (none
//! below): about 3% of turns on the default simulation.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::catalog;
use super::dialogue::{SimDialogue, TurnTruth};
use crate::data::tables::{FailurePoint, SlotSpan, Turn};

/// Items at least this hard may be genuinely ambiguous.
pub const AMBIGUOUS_FROM: f64 = 0.5;
/// Chance that an item at difficulty 1 is genuinely ambiguous, for each
/// label; it rises linearly from 0 at `AMBIGUOUS_FROM`.
pub const AMBIGUOUS_AT_MAX: f64 = 0.5;
/// On a genuinely ambiguous item, the chance that an annotator (any, however
/// careful) takes the other reading.
pub const AMBIGUOUS_SPLIT: f64 = 0.4;

/// Where a goal boundary lands when an annotator misplaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundarySlip {
    /// One turn later.
    Later,
    /// One turn earlier.
    Earlier,
    /// Not marked at all: the two goals merge.
    Missed,
}

/// One turn as an annotation item: how hard it is and the plausible wrong
/// answers every annotator who errs on it is drawn to.
#[derive(Debug, Clone)]
pub struct TurnItem {
    pub difficulty: f64,
    pub intent_decoy: Option<&'static str>,
    pub failure_decoy: FailurePoint,
    pub slots_decoy: Vec<SlotSpan>,
    /// How a boundary at this turn (if the truth has one) is misplaced.
    pub boundary_slip: BoundarySlip,
    /// Per label, whether the item is genuinely ambiguous.
    pub ambiguous_intent: bool,
    pub ambiguous_failure: bool,
    pub ambiguous_slots: bool,
    /// Whether a true boundary at this turn is genuinely ambiguous.
    pub ambiguous_boundary: bool,
}

/// One goal as a goal-success item.
#[derive(Debug, Clone)]
pub struct GoalItem {
    pub difficulty: f64,
    pub ambiguous: bool,
}

/// Every item of one dialogue.
#[derive(Debug, Clone)]
pub struct DialogueItems {
    pub turns: Vec<TurnItem>,
    pub goals: Vec<GoalItem>,
}

/// The difficulty of one turn (see the module docs for the table).
pub fn turn_difficulty(turn: &Turn, truth: &TurnTruth, dialogue_turns: usize) -> f64 {
    let mut d = 0.0;
    if truth.context.is_some() {
        d += 0.3;
    }
    if turn.user_utterance != truth.said {
        d += 0.3;
    }
    if turn.asr_confidence.is_some_and(|c| c < 0.7) {
        d += 0.1;
    }
    if truth.failure_point != FailurePoint::Correct {
        let hidden = turn.dialogue_status.as_deref() == Some("completed");
        d += if hidden { 0.3 } else { 0.1 };
    }
    if dialogue_turns >= 6 {
        d += 0.1;
    }
    if dialogue_turns >= 9 {
        d += 0.1;
    }
    if turn.turn_index >= 6 {
        d += 0.1;
    }
    f64::min(d, 1.0)
}

/// The chance that a label of an item this hard is genuinely ambiguous.
pub fn ambiguity_chance(difficulty: f64) -> f64 {
    ((difficulty - AMBIGUOUS_FROM) / (1.0 - AMBIGUOUS_FROM)).clamp(0.0, 1.0) * AMBIGUOUS_AT_MAX
}

/// Plans every item of a dialogue from the item stream `rng` (shared by all
/// annotators, so they meet the same decoys).
pub fn plan(dialogue: &SimDialogue, rng: &mut ChaCha8Rng) -> DialogueItems {
    let n = dialogue.turns.len();
    let turns: Vec<TurnItem> = dialogue
        .turns
        .iter()
        .zip(&dialogue.truth)
        .map(|(turn, truth)| {
            let difficulty = turn_difficulty(turn, truth, n);
            let ambiguous = ambiguity_chance(difficulty);
            TurnItem {
                difficulty,
                intent_decoy: intent_decoy(turn, truth, rng),
                failure_decoy: failure_decoy(turn, truth, rng),
                slots_decoy: super::annotators::noisy_slots(
                    &turn.user_utterance,
                    &truth.slots,
                    rng,
                ),
                boundary_slip: *[
                    BoundarySlip::Later,
                    BoundarySlip::Earlier,
                    BoundarySlip::Missed,
                ]
                .choose(rng)
                .expect("three slips"),
                ambiguous_intent: rng.random_bool(ambiguous),
                ambiguous_failure: rng.random_bool(ambiguous),
                ambiguous_slots: rng.random_bool(ambiguous),
                ambiguous_boundary: rng.random_bool(ambiguous),
            }
        })
        .collect();
    let goals = (0..dialogue.goal_success.len())
        .map(|g| {
            let (sum, count) = dialogue
                .truth
                .iter()
                .zip(&turns)
                .filter(|(truth, _)| truth.goal as usize == g)
                .fold((0.0, 0), |(sum, count), (_, item)| {
                    (sum + item.difficulty, count + 1)
                });
            let difficulty = sum / f64::from(count.max(1));
            GoalItem {
                difficulty,
                ambiguous: rng.random_bool(ambiguity_chance(difficulty)),
            }
        })
        .collect();
    DialogueItems { turns, goals }
}

/// The intent a misled annotator gives: where the runtime misunderstood,
/// often the runtime's own reading (its response makes it look intended);
/// otherwise an intent people confuse with the true one. None where the
/// intent has no confusion.
fn intent_decoy(turn: &Turn, truth: &TurnTruth, rng: &mut ChaCha8Rng) -> Option<&'static str> {
    let runtime = turn.nlu_intent.as_deref().and_then(|name| {
        catalog::INTENTS
            .iter()
            .find(|spec| spec.name == name)
            .map(|spec| spec.name)
    });
    let confusable = catalog::intent(truth.intent)
        .confusable
        .choose(rng)
        .copied();
    match runtime {
        Some(read) if read != truth.intent && rng.random_bool(0.5) => Some(read),
        _ => confusable,
    }
}

/// The failure class the logs make look right: the stage whose symptoms
/// show (an ASR error that sent NLU astray looks like an NLU error; a
/// silent result error looks like success; a recovered mishearing looks
/// like an ASR failure).
fn failure_decoy(turn: &Turn, truth: &TurnTruth, rng: &mut ChaCha8Rng) -> FailurePoint {
    use FailurePoint::*;
    let completed = turn.dialogue_status.as_deref() == Some("completed");
    let misread = turn.nlu_intent.as_deref() != Some(truth.intent);
    let misheard = turn.user_utterance != truth.said;
    match truth.failure_point {
        Asr if misread => Nlu,
        Asr => Entity,
        Nlu if turn.asr_confidence.is_some_and(|c| c < 0.75) => Asr,
        Nlu => Result,
        Entity if completed => Result,
        Entity => Asr,
        Result if completed => Correct,
        Result => Entity,
        Correct if misheard => Asr,
        Correct => *[Result, Nlu].choose(rng).expect("two classes"),
        FalseWake if completed => Asr,
        FalseWake => Correct,
        // Never simulated (the simulator knows the failing stage).
        Defect => Result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::simulate::{SimulateConfig, generate};

    #[test]
    fn difficulty_adds_up_the_evidence_and_is_capped() {
        let config = SimulateConfig::new(1, 5, "unused".into());
        let dialogue = generate(&config, 0).dialogue;
        let mut turn = dialogue.turns[0].clone();
        let mut truth = dialogue.truth[0].clone();
        turn.turn_index = 0;
        turn.user_utterance = truth.said.clone();
        turn.asr_confidence = Some(0.9);
        turn.dialogue_status = Some("completed".into());
        truth.context = None;
        truth.failure_point = FailurePoint::Correct;
        assert_eq!(turn_difficulty(&turn, &truth, 2), 0.0);
        truth.context = Some(super::super::ContextReason::Ellipsis);
        assert!((turn_difficulty(&turn, &truth, 2) - 0.3).abs() < 1e-9);
        truth.failure_point = FailurePoint::Result;
        assert!((turn_difficulty(&turn, &truth, 2) - 0.6).abs() < 1e-9);
        turn.dialogue_status = Some("failed".into());
        assert!((turn_difficulty(&turn, &truth, 2) - 0.4).abs() < 1e-9);
        turn.user_utterance.push_str(" x");
        turn.asr_confidence = Some(0.5);
        turn.turn_index = 7;
        assert_eq!(turn_difficulty(&turn, &truth, 10), 1.0);
    }

    #[test]
    fn only_hard_items_are_ambiguous() {
        assert_eq!(ambiguity_chance(0.0), 0.0);
        assert_eq!(ambiguity_chance(AMBIGUOUS_FROM), 0.0);
        assert!((ambiguity_chance(0.75) - AMBIGUOUS_AT_MAX / 2.0).abs() < 1e-9);
        assert_eq!(ambiguity_chance(1.0), AMBIGUOUS_AT_MAX);
    }

    #[test]
    fn decoys_are_wrong_answers() {
        let config = SimulateConfig::new(300, 4, "unused".into());
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        for index in 0..config.dialogues {
            let dialogue = generate(&config, index).dialogue;
            let items = plan(&dialogue, &mut rng);
            assert_eq!(items.turns.len(), dialogue.turns.len());
            assert_eq!(items.goals.len(), dialogue.goal_success.len());
            for (item, truth) in items.turns.iter().zip(&dialogue.truth) {
                assert_ne!(item.failure_decoy, truth.failure_point);
                assert_ne!(item.intent_decoy, Some(truth.intent));
                assert!((0.0..=1.0).contains(&item.difficulty));
            }
        }
    }
}
