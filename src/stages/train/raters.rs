//! Several raters per turn (`--annotator-policy`): how the labels of the
//! named annotators become training targets. `first` keeps the first named
//! annotator's label; `majority` votes per field; `soft` trains the binary
//! and categorical heads on the raters' distribution; `all` makes every
//! rater's label a training row, weighted by the rater's agreement with the
//! others (as CROWDLAB weighs annotators).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::data::tables::Annotation;
use crate::model::batch::Supervision;

/// How the labels of several annotators of one turn train the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotatorPolicy {
    /// The first named annotator with a row for the turn gives its labels.
    #[default]
    First,
    /// Per field, the value most raters give (a tie leaves the field unlabelled).
    Majority,
    /// One training row per rater, weighted by the rater's agreement with the others.
    All,
    /// Goal boundary, goal success, intent and failure point against the
    /// raters' distribution; slots by majority.
    Soft,
}

impl AnnotatorPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotatorPolicy::First => "first",
            AnnotatorPolicy::Majority => "majority",
            AnnotatorPolicy::All => "all",
            AnnotatorPolicy::Soft => "soft",
        }
    }

    /// Whether the policy trains on soft targets beside the hard supervision.
    pub fn is_soft(self) -> bool {
        matches!(self, AnnotatorPolicy::All | AnnotatorPolicy::Soft)
    }
}

/// A binary target as (P(true), weight of the item in the loss).
pub type SoftBinary = (f32, f32);
/// A categorical target as (distribution over the classes, weight).
pub type SoftClasses = (Vec<f32>, f32);

/// A turn's soft targets from its raters (`soft` and `all`); None where no
/// rater labels the field. The hard [`Supervision`] beside them holds the
/// majority, for dev accuracy and calibration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RaterTargets {
    pub boundary: Option<SoftBinary>,
    pub success: Option<SoftBinary>,
    pub intent: Option<SoftClasses>,
    pub failure_point: Option<SoftClasses>,
}

/// The value most voters give; None without votes or when the top is tied.
fn plurality<T: Eq + Hash + Clone + Ord>(votes: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    for v in votes {
        *counts.entry(v).or_default() += 1;
    }
    let top = counts.values().copied().max()?;
    let mut winners = counts.into_iter().filter(|(_, n)| *n == top);
    let (winner, _) = winners.next()?;
    winners.next().is_none().then_some(winner)
}

/// Per field, the value most raters give; a tie leaves the field unlabelled
/// (the turn then trains that head from weak labels, if any, or not at all).
/// Slot tags are voted per token.
pub fn majority_supervision(raters: &[Supervision]) -> Supervision {
    if let [only] = raters {
        return only.clone();
    }
    let bio = raters.iter().filter_map(|s| s.bio.as_ref());
    let tokens = bio.clone().map(Vec::len).max();
    Supervision {
        boundary: plurality(raters.iter().filter_map(|s| s.boundary)),
        success: plurality(raters.iter().filter_map(|s| s.success)),
        intent: plurality(raters.iter().filter_map(|s| s.intent)),
        failure_point: plurality(raters.iter().filter_map(|s| s.failure_point)),
        bio: tokens.map(|n| {
            (0..n)
                .map(|t| {
                    plurality(
                        bio.clone()
                            .filter_map(|tags| tags.get(t).copied().flatten()),
                    )
                })
                .collect()
        }),
        ..Supervision::default()
    }
}

/// The weighted share of raters saying true, and their total weight.
fn soft_binary(votes: impl Iterator<Item = (bool, f32)>) -> Option<SoftBinary> {
    let (mut yes, mut total) = (0f32, 0f32);
    for (value, weight) in votes {
        yes += if value { weight } else { 0.0 };
        total += weight;
    }
    (total > 0.0).then(|| (yes / total, total))
}

/// The weighted distribution of the raters' classes, and their total weight.
fn soft_classes(votes: impl Iterator<Item = (u32, f32)>, classes: usize) -> Option<SoftClasses> {
    let mut distribution = vec![0f32; classes];
    let mut total = 0f32;
    for (class, weight) in votes {
        if let Some(p) = distribution.get_mut(class as usize) {
            *p += weight;
            total += weight;
        }
    }
    if total <= 0.0 {
        return None;
    }
    distribution.iter_mut().for_each(|p| *p /= total);
    Some((distribution, total))
}

/// The soft targets of a turn from its raters' supervisions, each with the
/// rater's weight. `soft` (`rows_per_rater` false): the distribution of the
/// raters, one item per turn (weight 1). `all` (`rows_per_rater` true): one
/// row per rater, which for these losses (linear in the target) is one item
/// whose target is the weighted distribution and whose weight is the sum of
/// the raters' weights.
pub fn rater_targets(
    raters: &[(&Supervision, f32)],
    (intents, failure_points): (usize, usize),
    rows_per_rater: bool,
) -> RaterTargets {
    let item_weight = |(p, total): (f32, f32)| (p, if rows_per_rater { total } else { 1.0 });
    let classes_weight = |(d, total): SoftClasses| (d, if rows_per_rater { total } else { 1.0 });
    let votes = |field: fn(&Supervision) -> Option<bool>| {
        raters
            .iter()
            .filter_map(move |(s, w)| field(s).map(|v| (v, *w)))
    };
    let class_votes = |field: fn(&Supervision) -> Option<u32>| {
        raters
            .iter()
            .filter_map(move |(s, w)| field(s).map(|v| (v, *w)))
    };
    RaterTargets {
        boundary: soft_binary(votes(|s| s.boundary)).map(item_weight),
        success: soft_binary(votes(|s| s.success)).map(item_weight),
        intent: (intents > 0)
            .then(|| soft_classes(class_votes(|s| s.intent), intents))
            .flatten()
            .map(classes_weight),
        failure_point: soft_classes(class_votes(|s| s.failure_point), failure_points)
            .map(classes_weight),
    }
}

/// Each annotator's agreement with the other raters of the same turns, as
/// CROWDLAB weighs annotators (without its model term): over goal success,
/// intent and failure point wherever at least one other rater gives a
/// unique majority, (agreements + 1) / (comparisons + 2), so an annotator
/// never compared weighs 0.5. `turns` holds each turn's annotations.
pub fn agreement_weights<'a>(
    turns: impl Iterator<Item = &'a [Annotation]>,
) -> BTreeMap<String, f64> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for raters in turns {
        for (r, rater) in raters.iter().enumerate() {
            let others = || {
                raters
                    .iter()
                    .enumerate()
                    .filter(move |(o, _)| *o != r)
                    .map(|(_, a)| a)
            };
            let fields = [
                compare(rater.goal_success, others().map(|a| a.goal_success)),
                compare(rater.intent.clone(), others().map(|a| a.intent.clone())),
                compare(
                    rater.failure_point.clone(),
                    others().map(|a| a.failure_point.clone()),
                ),
            ];
            let entry = counts.entry(rater.annotator_id.as_str()).or_default();
            for agreed in fields.into_iter().flatten() {
                entry.0 += usize::from(agreed);
                entry.1 += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|(annotator, (agreed, compared))| {
            (
                annotator.to_string(),
                (agreed as f64 + 1.0) / (compared as f64 + 2.0),
            )
        })
        .collect()
}

/// Whether `value` agrees with the others' majority; None when either is missing.
fn compare<T: Eq + Hash + Clone + Ord>(
    value: Option<T>,
    others: impl Iterator<Item = Option<T>>,
) -> Option<bool> {
    let value = value?;
    let consensus = plurality(others.flatten())?;
    Some(value == consensus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rated(success: Option<bool>, failure: Option<u32>) -> Supervision {
        Supervision {
            success,
            failure_point: failure,
            ..Supervision::default()
        }
    }

    #[test]
    fn majority_votes_per_field_and_leaves_ties_unlabelled() {
        let raters = [
            Supervision {
                boundary: Some(true),
                intent: Some(2),
                bio: Some(vec![None, Some(1), Some(2), Some(0)]),
                ..rated(Some(true), Some(0))
            },
            Supervision {
                boundary: Some(false),
                intent: Some(2),
                bio: Some(vec![None, Some(1), Some(0), Some(0)]),
                ..rated(Some(false), Some(1))
            },
            Supervision {
                boundary: Some(true),
                intent: Some(1),
                bio: Some(vec![None, Some(0), Some(2), Some(3)]),
                ..rated(None, Some(1))
            },
        ];
        let majority = majority_supervision(&raters);
        assert_eq!(majority.boundary, Some(true));
        // One rater each way (the third gives none): a tie, unlabelled.
        assert_eq!(majority.success, None);
        assert_eq!(majority.intent, Some(2));
        assert_eq!(majority.failure_point, Some(1));
        // Per token: tag 1 twice, tag 2 twice, then 0, 0, 3: the 0 wins.
        assert_eq!(majority.bio, Some(vec![None, Some(1), Some(2), Some(0)]));
        // Three different tags for one token: no majority.
        let split = [
            Supervision {
                bio: Some(vec![Some(1)]),
                ..Supervision::default()
            },
            Supervision {
                bio: Some(vec![Some(2)]),
                ..Supervision::default()
            },
        ];
        assert_eq!(majority_supervision(&split).bio, Some(vec![None]));
        // One rater: its supervision unchanged (weak labels and all).
        let only = Supervision {
            weak_defect: Some(0.8),
            ..rated(Some(true), None)
        };
        assert_eq!(majority_supervision(std::slice::from_ref(&only)), only);
    }

    #[test]
    fn soft_targets_are_the_raters_distribution() {
        // USS-like: four raters of a turn's response, one calls it a defect
        // (class 1 of correct, defect); three rate the goal, two a success.
        let a = rated(Some(true), Some(0));
        let b = rated(Some(true), Some(0));
        let c = rated(Some(false), Some(1));
        let d = rated(None, Some(0));
        let raters = [(&a, 1.0), (&b, 1.0), (&c, 1.0), (&d, 1.0)];
        let soft = rater_targets(&raters, (0, 2), false);
        assert_eq!(soft.boundary, None);
        let (p, w) = soft.success.unwrap();
        assert!((p - 2.0 / 3.0).abs() < 1e-6 && w == 1.0);
        assert_eq!(soft.failure_point, Some((vec![0.75, 0.25], 1.0)));
        // No intents in the label sets: no intent target.
        assert_eq!(soft.intent, None);
    }

    #[test]
    fn all_weighs_each_rater_row_by_its_agreement() {
        let a = rated(Some(true), Some(0));
        let c = rated(Some(false), Some(1));
        let raters = [(&a, 0.75), (&c, 0.25)];
        let all = rater_targets(&raters, (0, 2), true);
        // Rows of weight 0.75 (success) and 0.25 (failure): P = 0.75, weight 1.
        assert_eq!(all.success, Some((0.75, 1.0)));
        assert_eq!(all.failure_point, Some((vec![0.75, 0.25], 1.0)));
        let b = rated(Some(true), Some(0));
        let three = rater_targets(&[(&a, 0.5), (&b, 0.5), (&c, 0.5)], (0, 2), true);
        let (p, w) = three.success.unwrap();
        assert!((p - 2.0 / 3.0).abs() < 1e-6 && (w - 1.5).abs() < 1e-6);
    }

    #[test]
    fn agreement_weights_favour_raters_who_agree_with_the_others() {
        let ann = |who: &str, failure: &str, success: Option<bool>| Annotation {
            annotator_id: who.into(),
            failure_point: Some(failure.into()),
            goal_success: success,
            ..Annotation::default()
        };
        let turns = [
            vec![
                ann("a1", "correct", Some(true)),
                ann("a2", "correct", Some(true)),
                ann("a3", "defect", Some(false)),
            ],
            vec![
                ann("a1", "defect", None),
                ann("a2", "defect", None),
                ann("a3", "correct", None),
            ],
        ];
        let weights = agreement_weights(turns.iter().map(Vec::as_slice));
        // a1's others, a2 and a3, disagree on every field (a tie, no
        // majority), so a1 is never compared: (0 + 1) / (0 + 2); so is a2.
        assert_eq!(weights["a1"], 0.5);
        assert_eq!(weights["a2"], 0.5);
        // a3: the others agree with each other against it 3 times: 1 / 5.
        assert!((weights["a3"] - 0.2).abs() < 1e-12);
    }
}
