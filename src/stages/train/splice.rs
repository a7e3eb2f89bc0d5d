//! Goal splicing (`train --splice-goals SHARE`): extra training windows that
//! join a goal of one dialogue to a goal of another. Users move between any
//! two tasks, but a corpus pairs few of them (SGD's dev dialogues pair
//! services its training dialogues never pair), and a model trained on it
//! learns which goal follows which: after a taxi ride, "I want to find songs
//! now" was read as the ride's intent. A spliced window shows a goal
//! starting after any other.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::batch::Window;

/// One whole goal of a training window: it starts at the dialogue's first
/// turn or at an annotated boundary, and runs to the next boundary or the
/// window's end.
struct Goal<'a> {
    window: &'a Window,
    turns: std::ops::Range<usize>,
}

/// The goals of windows whose every turn after the first says whether it
/// starts a goal (a goal's end is unknown otherwise); `eligible` leaves out
/// windows that must not be cut (the raters' soft targets are looked up by
/// the window's origin).
fn whole_goals<'a>(windows: &'a [Window], eligible: &impl Fn(&Window) -> bool) -> Vec<Goal<'a>> {
    let mut goals = Vec::new();
    for window in windows.iter().filter(|w| eligible(w)) {
        let supervision = &window.supervision;
        if supervision.iter().skip(1).any(|s| s.boundary.is_none()) {
            continue;
        }
        // A goal starts at each boundary, and at turn 0 where the window
        // starts the dialogue (a later window's first goal began before it).
        let starts: Vec<usize> = (0..supervision.len())
            .filter(|&k| {
                if k == 0 {
                    window.origin.1 == 0
                } else {
                    supervision[k].boundary == Some(true)
                }
            })
            .collect();
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(supervision.len());
            goals.push(Goal {
                window,
                turns: start..end,
            });
        }
    }
    goals
}

/// `share` x the `eligible` windows (rounded) as extra windows, each one
/// goal of a dialogue followed by one goal of another, cut to `max_turns`
/// (the first goal keeps its end, the second its start). Deterministic
/// given `seed`.
pub(super) fn splice_goals(
    windows: &[Window],
    share: f64,
    max_turns: usize,
    seed: u64,
    eligible: impl Fn(&Window) -> bool,
) -> Vec<Window> {
    let wanted = (share * windows.iter().filter(|w| eligible(w)).count() as f64).round() as usize;
    let goals = whole_goals(windows, &eligible);
    let dialogue = |g: &Goal| g.window.origin.0;
    if wanted == 0 || max_turns < 2 || goals.iter().all(|g| dialogue(g) == dialogue(&goals[0])) {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5b1ce);
    let mut spliced = Vec::with_capacity(wanted);
    while spliced.len() < wanted {
        let first = &goals[rng.random_range(0..goals.len())];
        let second = &goals[rng.random_range(0..goals.len())];
        if dialogue(first) != dialogue(second) {
            spliced.push(join(first, second, max_turns));
        }
    }
    spliced
}

/// The end of `first` and the start of `second`, at most `max_turns` turns
/// (at least one of each).
fn join(first: &Goal, second: &Goal, max_turns: usize) -> Window {
    let second_len = second.turns.len().min(max_turns - 1);
    let first_len = first.turns.len().min(max_turns - second_len);
    let first_turns = first.turns.end - first_len..first.turns.end;
    let second_turns = second.turns.start..second.turns.start + second_len;
    let mut supervision = first.window.supervision[first_turns.clone()].to_vec();
    supervision[0].boundary = None;
    let mut start = second.window.supervision[second.turns.start].clone();
    // A new goal here; what the feedback rules and the rephrase check said
    // of this turn was said against another previous turn.
    start.boundary = Some(true);
    start.rephrase = false;
    start.weak_boundary = None;
    supervision.push(start);
    supervision
        .extend_from_slice(&second.window.supervision[second_turns.start + 1..second_turns.end]);
    let turns = first.window.turns[first_turns]
        .iter()
        .chain(&second.window.turns[second_turns])
        .cloned()
        .collect::<Vec<_>>();
    Window {
        targets: vec![0.0; turns.len()],
        turns,
        supervision,
        // No dialogue: a spliced window has no raters' soft targets.
        origin: (usize::MAX, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::batch::{Supervision, TurnInput};

    /// A window of `dialogue` from its turn `start`: a turn's token id is
    /// dialogue * 100 + its index, its intent the goal it belongs to (a
    /// goal starts at each index in `goal_starts`).
    fn window(dialogue: usize, start: usize, turns: usize, goal_starts: &[usize]) -> Window {
        let mut goal = 0;
        let supervision = (start..start + turns)
            .map(|k| {
                let starts_goal = goal_starts.contains(&k);
                goal += usize::from(starts_goal && k > 0);
                Supervision {
                    boundary: (k > start).then_some(starts_goal),
                    intent: Some((dialogue * 10 + goal) as u32),
                    rephrase: true,
                    weak_boundary: Some(0.5),
                    ..Supervision::default()
                }
            })
            .collect();
        Window {
            turns: (start..start + turns)
                .map(|k| TurnInput {
                    ids: vec![(dialogue * 100 + k) as u32],
                    categorical: [0; 5],
                    numeric: Default::default(),
                    audio: None,
                })
                .collect(),
            targets: vec![0.0; turns],
            supervision,
            origin: (dialogue, start),
        }
    }

    fn ids(w: &Window) -> Vec<u32> {
        w.turns.iter().map(|t| t.ids[0]).collect()
    }

    #[test]
    fn goals_are_whole_and_start_at_a_boundary_or_the_dialogue_start() {
        let windows = [
            window(1, 0, 5, &[0, 2]),
            // Starts mid-dialogue: its first goal began before the window.
            window(2, 3, 4, &[5]),
            // A turn after the first without a boundary label: left out.
            Window {
                supervision: vec![Supervision::default(); 3],
                ..window(3, 0, 3, &[0])
            },
        ];
        let goals: Vec<(usize, std::ops::Range<usize>)> = whole_goals(&windows, &|_| true)
            .into_iter()
            .map(|g| (g.window.origin.0, g.turns))
            .collect();
        assert_eq!(goals, [(1, 0..2), (1, 2..5), (2, 2..4)]);
        assert!(whole_goals(&windows, &|w| w.origin.0 != 1).len() == 1);
    }

    #[test]
    fn a_spliced_window_is_one_goal_then_another_dialogues_goal() {
        let windows = [window(1, 0, 4, &[0, 2]), window(2, 0, 3, &[0])];
        let spliced = splice_goals(&windows, 2.0, 8, 7, |_| true);
        assert_eq!(spliced.len(), 4);
        for w in &spliced {
            let cut = w
                .supervision
                .iter()
                .position(|s| s.boundary == Some(true))
                .unwrap();
            let dialogues = |r: &[TurnInput]| r.iter().map(|t| t.ids[0] / 100).collect::<Vec<_>>();
            let (first, second) = (dialogues(&w.turns[..cut]), dialogues(&w.turns[cut..]));
            assert!(first.iter().all(|&d| d == first[0]), "{:?}", ids(w));
            assert!(
                second.iter().all(|&d| d == second[0] && d != first[0]),
                "{:?}",
                ids(w)
            );
            // Each part is one whole goal: its turns share an intent.
            let intents: Vec<_> = w.supervision.iter().map(|s| s.intent).collect();
            assert!(
                intents[..cut].iter().all(|&i| i == intents[0]),
                "{intents:?}"
            );
            assert!(
                intents[cut..].iter().all(|&i| i == intents[cut]),
                "{intents:?}"
            );
            assert_eq!(w.supervision[0].boundary, None);
            assert!(!w.supervision[cut].rephrase && w.supervision[cut].weak_boundary.is_none());
            assert_eq!(
                w.origin.0,
                usize::MAX,
                "no raters' targets may be read for it"
            );
            assert_eq!(w.targets.len(), w.turns.len());
        }
        let again = splice_goals(&windows, 2.0, 8, 7, |_| true);
        assert_eq!(
            spliced.iter().map(ids).collect::<Vec<_>>(),
            again.iter().map(ids).collect::<Vec<_>>(),
            "deterministic given the seed"
        );
    }

    #[test]
    fn a_long_pair_keeps_the_first_goals_end_and_the_seconds_start() {
        let windows = [window(1, 0, 6, &[0]), window(2, 0, 6, &[0])];
        for w in splice_goals(&windows, 1.0, 4, 3, |_| true) {
            let got = ids(&w);
            assert_eq!(got.len(), 4);
            let (a, b) = (got[0] / 100, got[3] / 100);
            assert_ne!(a, b);
            assert_eq!(got[..1], [a * 100 + 5], "the first goal's last turn");
            assert_eq!(
                got[1..],
                [b * 100, b * 100 + 1, b * 100 + 2],
                "the second goal's first turns"
            );
        }
    }

    #[test]
    fn nothing_is_spliced_from_one_dialogue_or_at_share_zero() {
        let one = [window(1, 0, 4, &[0, 2])];
        assert!(splice_goals(&one, 1.0, 8, 1, |_| true).is_empty());
        let two = [window(1, 0, 4, &[0, 2]), window(2, 0, 3, &[0])];
        assert!(splice_goals(&two, 0.0, 8, 1, |_| true).is_empty());
        assert!(splice_goals(&two, 1.0, 8, 1, |w| w.origin.0 == 1).is_empty());
        // The share counts the windows that may splice, not the others.
        let three = [
            window(1, 0, 4, &[0, 2]),
            window(2, 0, 3, &[0]),
            window(3, 0, 3, &[0]),
        ];
        assert_eq!(
            splice_goals(&three, 1.0, 8, 1, |w| w.origin.0 != 3).len(),
            2
        );
    }
}
