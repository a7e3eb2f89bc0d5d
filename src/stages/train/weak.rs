//! Weak labels from the logs' own feedback, and the summary Snorkel gives
//! for labeling functions (coverage, overlap, conflict, accuracy).
//!
//! Each rule looks at a turn and its neighbours and may vote a soft label
//! for one target: "this turn's response was a defect" (failure point other
//! than correct), "this turn's goal succeeded", or "this turn continues the
//! previous turn's goal". Votes train the heads only where the annotations
//! leave that target unlabelled; the rules and their soft targets are
//! configurable (`train --weak-rules FILE.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::feedback::{is_rephrase, is_stop_or_cancel};
use crate::data::tables::{Annotation, Turn};

/// What a vote is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The turn's failure point is not `correct`.
    Defect,
    /// The goal the turn belongs to succeeded.
    GoalSuccess,
    /// The turn starts a new goal.
    GoalBoundary,
}

/// One rule's setting: whether it votes, and the probability it votes for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub enabled: bool,
    /// The soft label the rule gives when it fires (e.g. 0.8 = "defect, 80% sure").
    pub target: f32,
}

/// The feedback rules. Defaults were set from the rules' measured accuracy
/// against single-pass annotations on simulated logs (docs/commands/train.md,
/// "Weak labels from feedback").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeakRules {
    /// Weight of the weak-label loss relative to an annotated label (0 turns weak labels off).
    pub weight: f64,
    /// explicit_feedback = +1 on a turn: its goal succeeded (`target`), and -1: it failed (1 - `target`).
    pub explicit_feedback: Rule,
    /// barge_in on a turn: its response was a defect.
    pub barge_in: Rule,
    /// The next user turn repeats or corrects this one ("no, I said ...",
    /// or mostly the same words): this turn was a defect.
    pub rephrase: Rule,
    /// A rephrase continues the goal of the turn it repeats: P(new goal) = 1 - `target`.
    pub rephrase_same_goal: Rule,
    /// The next user turn is stop / cancel / never mind: this turn was a defect.
    pub stop_cancel: Rule,
}

impl Default for WeakRules {
    fn default() -> WeakRules {
        let on = |target| Rule {
            enabled: true,
            target,
        };
        WeakRules {
            weight: 0.5,
            explicit_feedback: on(0.95),
            barge_in: on(0.8),
            rephrase: on(0.85),
            rephrase_same_goal: on(0.9),
            stop_cancel: on(0.7),
        }
    }
}

impl WeakRules {
    /// Reads rules from JSON; fields left out keep their defaults.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<WeakRules> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("{}: cannot read the weak-label rules: {e}", path.display())
        })?;
        let rules: WeakRules = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not valid weak-label rules: {e} (expected fields weight, explicit_feedback, barge_in, rephrase, rephrase_same_goal, stop_cancel; each rule {{\"enabled\": bool, \"target\": 0..1}})",
                path.display()
            )
        })?;
        anyhow::ensure!(
            rules.weight.is_finite() && rules.weight >= 0.0,
            "{}: weight must be >= 0, got {}",
            path.display(),
            rules.weight
        );
        for (name, rule) in [
            ("explicit_feedback", rules.explicit_feedback),
            ("barge_in", rules.barge_in),
            ("rephrase", rules.rephrase),
            ("rephrase_same_goal", rules.rephrase_same_goal),
            ("stop_cancel", rules.stop_cancel),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&rule.target),
                "{}: {name}.target must be a probability in [0, 1], got {}",
                path.display(),
                rule.target
            );
        }
        Ok(rules)
    }
}

/// The rules' names, targets and polarity, in report order.
const RULES: [(&str, Target); 6] = [
    ("explicit_feedback_positive", Target::GoalSuccess),
    ("explicit_feedback_negative", Target::GoalSuccess),
    ("barge_in", Target::Defect),
    ("rephrase", Target::Defect),
    ("rephrase_same_goal", Target::GoalBoundary),
    ("stop_cancel", Target::Defect),
];

/// One rule's vote on one turn: (rule index in RULES, soft label).
pub type Vote = (usize, f32);

/// The votes on each turn of one dialogue (turns in order).
pub fn votes(dialogue: &[&Turn], rules: &WeakRules) -> Vec<Vec<Vote>> {
    let mut out = vec![Vec::new(); dialogue.len()];
    for (k, turn) in dialogue.iter().enumerate() {
        let next = dialogue.get(k + 1);
        let feedback = turn.explicit_feedback.unwrap_or(0);
        if rules.explicit_feedback.enabled && feedback > 0 {
            out[k].push((0, rules.explicit_feedback.target));
        }
        if rules.explicit_feedback.enabled && feedback < 0 {
            out[k].push((1, 1.0 - rules.explicit_feedback.target));
        }
        if rules.barge_in.enabled && turn.barge_in == Some(true) {
            out[k].push((2, rules.barge_in.target));
        }
        let rephrased = next.is_some_and(|n| is_rephrase(&turn.user_utterance, &n.user_utterance));
        if rules.rephrase.enabled && rephrased {
            out[k].push((3, rules.rephrase.target));
        }
        if rules.rephrase_same_goal.enabled && rephrased {
            out[k + 1].push((4, 1.0 - rules.rephrase_same_goal.target));
        }
        if rules.stop_cancel.enabled
            && next.is_some_and(|n| is_stop_or_cancel(&n.user_utterance))
            && !is_stop_or_cancel(&turn.user_utterance)
        {
            out[k].push((5, rules.stop_cancel.target));
        }
    }
    out
}

/// The combined soft label per target: the mean of the votes on it.
pub fn combine(votes: &[Vote]) -> BTreeMap<Target, f32> {
    let mut sums: BTreeMap<Target, (f32, f32)> = BTreeMap::new();
    for &(rule, label) in votes {
        let entry = sums.entry(RULES[rule].1).or_default();
        entry.0 += label;
        entry.1 += 1.0;
    }
    sums.into_iter().map(|(t, (s, n))| (t, s / n)).collect()
}

/// What an annotation says about a target, as 0/1.
fn annotated(
    target: Target,
    annotation: &Annotation,
    previous: Option<&Annotation>,
) -> Option<bool> {
    match target {
        Target::Defect => annotation.failure_point.as_deref().map(|f| f != "correct"),
        Target::GoalSuccess => annotation.goal_success,
        Target::GoalBoundary => annotation
            .goal_id
            .zip(previous.and_then(|p| p.goal_id))
            .map(|(g, p)| g != p),
    }
}

/// One row of the summary, as Snorkel's LFAnalysis reports a labeling function.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub rule: &'static str,
    pub target: Target,
    /// The label it votes for (rounded): 1 = defect / success / new goal.
    pub votes_for: u8,
    pub fires: usize,
    /// Share of all turns it fires on.
    pub coverage: f64,
    /// Share of its firings where another rule votes on the same turn and target.
    pub overlap: f64,
    /// Share of its firings where another rule votes the other way.
    pub conflict: f64,
    /// Firings on turns whose annotation labels the target.
    pub annotated: usize,
    /// Agreement with those annotations (null: none annotated).
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WeakSummary {
    pub turns: usize,
    /// Turns with at least one vote.
    pub turns_with_votes: usize,
    /// Votes that reached the loss (their target had no annotation; 0 with
    /// --weak-weight 0).
    pub votes_used: usize,
    pub rules: Vec<RuleReport>,
}

/// Accumulates the summary over dialogues.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    turns: usize,
    turns_with_votes: usize,
    votes_used: usize,
    /// Per rule: fires, overlaps, conflicts, annotated, agreed.
    counts: [[usize; 5]; RULES.len()],
}

impl SummaryBuilder {
    /// Adds one turn's votes; `annotation` (and the previous turn's, for
    /// boundaries) are the training annotations of the turn, if any.
    pub fn add(
        &mut self,
        votes: &[Vote],
        annotation: Option<&Annotation>,
        previous: Option<&Annotation>,
    ) {
        self.turns += 1;
        if votes.is_empty() {
            return;
        }
        self.turns_with_votes += 1;
        for &(rule, label) in votes {
            let target = RULES[rule].1;
            let positive = label >= 0.5;
            let counts = &mut self.counts[rule];
            counts[0] += 1;
            let others = votes
                .iter()
                .filter(|(r, _)| *r != rule && RULES[*r].1 == target);
            let mut overlapped = false;
            let mut conflicted = false;
            for (_, other) in others {
                overlapped = true;
                conflicted |= (*other >= 0.5) != positive;
            }
            counts[1] += usize::from(overlapped);
            counts[2] += usize::from(conflicted);
            match annotation.and_then(|a| annotated(target, a, previous)) {
                Some(truth) => {
                    counts[3] += 1;
                    counts[4] += usize::from(truth == positive);
                }
                None => self.votes_used += 1,
            }
        }
    }

    pub fn finish(self) -> WeakSummary {
        let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        WeakSummary {
            turns: self.turns,
            turns_with_votes: self.turns_with_votes,
            votes_used: self.votes_used,
            rules: RULES
                .iter()
                .zip(self.counts)
                .map(
                    |(&(rule, target), [fires, overlaps, conflicts, annotated, agreed])| {
                        RuleReport {
                            rule,
                            target,
                            votes_for: u8::from(
                                rule != "explicit_feedback_negative"
                                    && rule != "rephrase_same_goal",
                            ),
                            fires,
                            coverage: share(fires, self.turns),
                            overlap: share(overlaps, fires),
                            conflict: share(conflicts, fires),
                            annotated,
                            accuracy: (annotated > 0).then(|| share(agreed, annotated)),
                        }
                    },
                )
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(k: i32, utterance: &str) -> Turn {
        Turn {
            dialogue_id: "d".into(),
            turn_index: k,
            timestamp_us: None,
            user_utterance: utterance.into(),
            system_response: "ok".into(),
            device_type: None,
            device_state: None,
            domain: None,
            nlu_intent: None,
            dialogue_status: None,
            asr_confidence: None,
            nlu_confidence: None,
            barge_in: None,
            explicit_feedback: None,
            audio_embedding: None,
        }
    }

    fn annotation(k: i32, goal: i32, failure: &str) -> Annotation {
        Annotation {
            dialogue_id: "d".into(),
            turn_index: k,
            annotator_id: "single".into(),
            goal_id: Some(goal),
            goal_success: None,
            intent: None,
            slots: None,
            failure_point: Some(failure.into()),
            context: None,
        }
    }

    #[test]
    fn votes_land_on_the_turn_they_judge() {
        let mut first = turn(0, "play purple haze");
        first.barge_in = Some(true);
        let second = turn(1, "play purple haze by jimi hendrix");
        let mut third = turn(2, "what's the weather");
        third.explicit_feedback = Some(1);
        let fourth = turn(3, "cancel");
        let dialogue = [&first, &second, &third, &fourth];
        let v = votes(&dialogue, &WeakRules::default());
        // Turn 0: barge-in and rephrased by turn 1; turn 1 continues turn 0's goal.
        assert_eq!(v[0], vec![(2, 0.8), (3, 0.85)]);
        assert_eq!(v[1].len(), 1);
        assert!((v[1][0].1 - 0.1).abs() < 1e-6);
        // Turn 2: positive feedback, then the user says cancel.
        assert_eq!(v[2], vec![(0, 0.95), (5, 0.7)]);
        assert!(v[3].is_empty(), "a stop after nothing judges nothing");
        let combined = combine(&v[0]);
        assert!((combined[&Target::Defect] - 0.825).abs() < 1e-6);
    }

    #[test]
    fn disabled_rules_do_not_vote() {
        let mut first = turn(0, "play purple haze");
        first.barge_in = Some(true);
        let rules = WeakRules {
            barge_in: Rule {
                enabled: false,
                target: 0.8,
            },
            ..WeakRules::default()
        };
        assert!(votes(&[&first], &rules)[0].is_empty());
    }

    #[test]
    fn summary_counts_coverage_overlap_conflict_and_accuracy() {
        let mut b = SummaryBuilder::default();
        // Barge-in and rephrase agree on a defect the annotation confirms.
        let a0 = annotation(0, 0, "asr");
        b.add(&[(2, 0.8), (3, 0.85)], Some(&a0), None);
        // Barge-in alone on a correct turn (wrong); an unannotated rephrase.
        let a1 = annotation(1, 0, "correct");
        b.add(&[(2, 0.8)], Some(&a1), Some(&a0));
        b.add(&[(3, 0.85)], None, None);
        b.add(&[], None, None);
        let s = b.finish();
        assert_eq!((s.turns, s.turns_with_votes, s.votes_used), (4, 3, 1));
        let barge = &s.rules[2];
        assert_eq!((barge.fires, barge.annotated), (2, 2));
        assert_eq!(barge.coverage, 0.5);
        assert_eq!(barge.overlap, 0.5);
        assert_eq!(barge.conflict, 0.0);
        assert_eq!(barge.accuracy, Some(0.5));
        let rephrase = &s.rules[3];
        assert_eq!((rephrase.fires, rephrase.annotated), (2, 1));
        assert_eq!(rephrase.accuracy, Some(1.0));
        assert_eq!(s.rules[0].accuracy, None);
    }
}
