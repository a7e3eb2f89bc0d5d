//! The copy-the-runtime baseline: the assistant runtime's own hypotheses in
//! the logs read as labels, so a report shows what a labeler adds over
//! trusting what the runtime already logged.
//!
//! The rules (docs/commands/eval.md, "Copy-the-runtime baseline"):
//! - intent: the turn's `nlu_intent` (a null one is no label, judged wrong);
//! - failure point: `correct` on every turn. The runtime logs no failing
//!   stage; a `failed` status says that a response failed, not where, and
//!   the baseline does not guess one;
//! - goal segmentation: a goal runs up to and including the first turn whose
//!   `dialogue_status` is not `prompted`; `prompted` (the runtime asked a
//!   question and waits for the answer) carries the goal into the next turn;
//! - goal success: the goal's last turn has status `completed`; any other
//!   status (`failed`, `cancelled`, anything else), or a goal still
//!   `prompted` when the dialogue ends, is a failed goal;
//! - a dialogue with a null status on any turn gets no goal labels (judged
//!   as missing): where a goal ends cannot be read there;
//! - slots: never (the logs carry no slot hypothesis).
//!
//! A task whose column is null on every turn (no `nlu_intent`, no
//! `dialogue_status` anywhere: SGD's imported logs) cannot be read from
//! the logs, so the baseline is not judged on it and the report says n/a.

use std::collections::BTreeMap;
use std::path::Path;

use super::gold::{SystemLabels, TurnLabels, place};
use super::judge::Task;
use crate::data::issues::DataError;
use crate::data::tables::Turn;

/// The status that keeps a goal open: the runtime asked and awaits an answer.
const PROMPTED: &str = "prompted";
/// The status of a goal the runtime believes it achieved.
const COMPLETED: &str = "completed";
/// The failure point the runtime implies for every turn.
const CORRECT: &str = "correct";

/// The runtime's labels, and the tasks they can be judged on.
#[derive(Debug, Default)]
pub struct RuntimeBaseline {
    pub labels: SystemLabels,
    /// In [`Task::ALL`] order; never slots.
    pub tasks: Vec<Task>,
}

/// The runtime's view of every turn of the logs (read from `path`), as labels.
pub fn runtime_baseline(turns: &[Turn], path: &Path) -> Result<RuntimeBaseline, DataError> {
    let mut by_dialogue: BTreeMap<&str, Vec<&Turn>> = BTreeMap::new();
    for turn in turns {
        by_dialogue.entry(&turn.dialogue_id).or_default().push(turn);
    }
    let mut labels = SystemLabels::new();
    for (dialogue, mut rows) in by_dialogue {
        rows.sort_by_key(|t| t.turn_index);
        let statuses: Vec<Option<&str>> =
            rows.iter().map(|t| t.dialogue_status.as_deref()).collect();
        let goals = runtime_goals(&statuses);
        for (k, turn) in rows.iter().enumerate() {
            let (goal_id, goal_success) = goals.as_ref().map(|g| g[k]).unzip();
            let turn_labels = TurnLabels {
                goal_id,
                goal_success,
                intent: turn.nlu_intent.clone(),
                failure_point: Some(CORRECT.to_string()),
                ..TurnLabels::default()
            };
            place(&mut labels, (path, dialogue, turn.turn_index), turn_labels)?;
        }
    }
    Ok(RuntimeBaseline {
        labels,
        tasks: runtime_tasks(turns),
    })
}

/// The tasks the logs hold the runtime's view of.
fn runtime_tasks(turns: &[Turn]) -> Vec<Task> {
    let any_status = turns.iter().any(|t| t.dialogue_status.is_some());
    let any_intent = turns.iter().any(|t| t.nlu_intent.is_some());
    Task::ALL
        .into_iter()
        .filter(|task| match task {
            Task::GoalSegmentation | Task::GoalSuccess => any_status,
            Task::Intent => any_intent,
            Task::Slots => false,
            Task::FailurePoint => true,
        })
        .collect()
}

/// (goal id, goal success) per turn from one dialogue's statuses in turn
/// order, by the rules of the module doc; None when a status is missing.
pub fn runtime_goals(statuses: &[Option<&str>]) -> Option<Vec<(i32, bool)>> {
    let statuses: Vec<&str> = statuses.iter().copied().collect::<Option<_>>()?;
    let mut goals = Vec::with_capacity(statuses.len());
    let (mut goal, mut start) = (0, 0);
    for (t, status) in statuses.iter().enumerate() {
        let goal_ends = *status != PROMPTED || t + 1 == statuses.len();
        if goal_ends {
            let success = *status == COMPLETED;
            goals.extend((start..=t).map(|_| (goal, success)));
            goal += 1;
            start = t + 1;
        }
    }
    Some(goals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(dialogue: &str, index: i32, intent: Option<&str>, status: Option<&str>) -> Turn {
        Turn {
            dialogue_id: dialogue.into(),
            turn_index: index,
            user_utterance: "hi".into(),
            nlu_intent: intent.map(str::to_string),
            dialogue_status: status.map(str::to_string),
            ..Turn::default()
        }
    }

    #[test]
    fn prompted_carries_a_goal_on_and_only_completed_succeeds() {
        let statuses = [
            Some("prompted"),
            Some("completed"),
            Some("failed"),
            Some("prompted"),
            Some("prompted"),
            Some("cancelled"),
            Some("completed"),
            Some("prompted"),
        ];
        let goals = runtime_goals(&statuses).unwrap();
        assert_eq!(
            goals,
            [
                (0, true),
                (0, true),
                (1, false),
                (2, false),
                (2, false),
                (2, false),
                (3, true),
                // Still waiting for an answer when the dialogue ended.
                (4, false),
            ]
        );
        assert_eq!(runtime_goals(&[]), Some(vec![]));
        assert_eq!(
            runtime_goals(&[Some("completed"), None]),
            None,
            "where a goal ends cannot be read past a null status"
        );
    }

    #[test]
    fn intents_are_copied_and_no_turn_is_a_failure() {
        // Rows out of order, as a dataset of several part files gives them.
        let turns = [
            turn("d2", 0, Some("GetWeather"), Some("completed")),
            turn("d1", 1, None, Some("completed")),
            turn("d1", 0, Some("PlayMusic"), Some("prompted")),
            turn("d3", 0, Some("SetTimer"), None),
        ];
        let baseline = runtime_baseline(&turns, Path::new("turns")).unwrap();
        assert_eq!(
            baseline.tasks,
            [
                Task::GoalSegmentation,
                Task::GoalSuccess,
                Task::Intent,
                Task::FailurePoint
            ]
        );
        let d1 = &baseline.labels["d1"];
        let d1: Vec<&TurnLabels> = d1.iter().map(|t| t.as_ref().unwrap()).collect();
        assert_eq!(d1[0].intent.as_deref(), Some("PlayMusic"));
        assert_eq!(d1[1].intent, None, "a null nlu_intent is no label");
        assert_eq!((d1[0].goal_id, d1[1].goal_id), (Some(0), Some(0)));
        assert_eq!(d1[0].goal_success, Some(true));
        for t in baseline.labels.values().flatten().flatten() {
            assert_eq!(t.failure_point.as_deref(), Some("correct"));
            assert_eq!(t.slots, None);
            assert_eq!(t.intent_prob, None, "the runtime gives no probability");
        }
        let d3 = baseline.labels["d3"][0].as_ref().unwrap();
        assert_eq!((d3.goal_id, d3.goal_success), (None, None));
        assert_eq!(d3.intent.as_deref(), Some("SetTimer"));
    }

    #[test]
    fn logs_without_runtime_columns_leave_only_the_failure_point() {
        let turns = [turn("d1", 0, None, None), turn("d1", 1, None, None)];
        let baseline = runtime_baseline(&turns, Path::new("turns")).unwrap();
        assert_eq!(baseline.tasks, [Task::FailurePoint]);
        assert_eq!(baseline.labels["d1"].len(), 2);
    }
}
