//! What is fitted on the dev split after training: a temperature per head,
//! the goal-boundary and intent decisions, and (`--balance-decisions`) the
//! rare-class decisions.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::intent_stay::{StayTurn, fit_intent_stay_shift};
use super::loss::LossSettings;
use crate::model::batch::{Window, bucketed_batches, make_batch};
use crate::model::config::{LabelSets, ModelConfig, shifted_argmax, softmax};
use crate::model::{DialogueModel, device};

/// The model config with what calibration fitted on dev.
pub(super) fn calibrated_config(
    model_config: &ModelConfig,
    calibration: &Calibration,
) -> ModelConfig {
    let mut final_config = model_config.clone();
    if let Some(l) = final_config.labels.as_mut() {
        l.temperatures = calibration.temperatures.clone();
        l.boundary_threshold = calibration.boundary_threshold;
        l.rephrase_boundary_shift = calibration.rephrase_boundary_shift;
        l.intent_change_weight = calibration.intent_change_weight;
        l.intent_stay_shift = calibration.intent_stay_shift;
        l.success_threshold = calibration.success_threshold;
        l.correct_shift = calibration.correct_shift;
    }
    final_config
}

/// Temperature per head, the one of a grid that minimises the dev
/// negative log-likelihood (Guo et al., 2017), and the boundary decision
/// settings that maximise dev boundary F1.
pub(super) fn calibrate(
    model: &DialogueModel,
    windows: &[Window],
    batch_size: usize,
    pad: u32,
    settings: &LossSettings,
    balance_decisions: bool,
) -> anyhow::Result<Calibration> {
    let dev = DevItems::collect(model, windows, batch_size, pad, settings)?;
    let temperatures = fit_temperatures(&dev.items);
    // The contextless baseline labels each turn alone: its boundaries do not
    // get to compare a turn's intent with the previous turn's.
    let (boundary_threshold, rephrase_boundary_shift, intent_change_weight) =
        fit_boundary_decisions(
            &dev.boundary_items(&temperatures),
            model.config.context.contextless(),
        );
    let (success_threshold, correct_shift, decision_fits) = if balance_decisions {
        let fitted =
            balanced_decisions(&dev.items, &dev.dialogues, &temperatures, settings.correct);
        (
            fitted.success_threshold,
            fitted.correct_shift,
            Some(fitted.fits),
        )
    } else {
        (0.5, 0.0, None)
    };
    // As the intent-change weight: the contextless baseline labels each
    // turn alone, so it does not lean on the previous turn's intent either.
    let intent_stay_shift = if model.config.context.contextless() {
        0.0
    } else {
        let mut decider = LabelSets::new(Vec::new(), Vec::new(), Vec::new());
        decider.temperatures = temperatures.clone();
        decider.boundary_threshold = boundary_threshold;
        decider.rephrase_boundary_shift = rephrase_boundary_shift;
        decider.intent_change_weight = intent_change_weight;
        fit_intent_stay_shift(&dev.windows, &decider)
    };
    Ok(Calibration {
        temperatures,
        boundary_threshold,
        rephrase_boundary_shift,
        intent_change_weight,
        intent_stay_shift,
        success_threshold,
        correct_shift,
        decision_fits,
    })
}

/// The heads' dev logits beside the labels, for calibration.
#[derive(Default)]
struct DevItems {
    /// (logits, target) per head; binary heads as two-class logits [0, x].
    items: BTreeMap<&'static str, Vec<(Vec<f32>, usize)>>,
    /// Beside each item of `items`: the dev dialogue it comes from.
    dialogues: BTreeMap<&'static str, Vec<usize>>,
    /// Beside each goal_boundary item: whether its turn rephrases the
    /// previous one, and the intent logits of the previous turn and its own.
    boundary_rephrase: Vec<bool>,
    boundary_intents: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    /// Every dev window's turns in order, for the intent decision.
    windows: Vec<Vec<StayTurn>>,
}

/// A batch's logits on the host: [window][turn] (and [class]).
struct HostLogits {
    boundary: Vec<Vec<f32>>,
    success: Vec<Vec<f32>>,
    intent: Vec<Vec<Vec<f32>>>,
    failure: Vec<Vec<Vec<f32>>>,
}

impl DevItems {
    fn collect(
        model: &DialogueModel,
        windows: &[Window],
        batch_size: usize,
        pad: u32,
        settings: &LossSettings,
    ) -> anyhow::Result<DevItems> {
        let heads = model
            .heads
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("model has no supervised heads"))?;
        let mut dev = DevItems::default();
        for indices in bucketed_batches(windows, batch_size * 2) {
            let chosen: Vec<&Window> = indices.iter().map(|&i| &windows[i]).collect();
            let (batch, _) = make_batch(&chosen, pad, &device())?;
            let states =
                model.dialogue_states(&batch, &settings.token_states(model, &batch, &chosen)?)?;
            let logits = heads.turn_logits(&states, &batch.turn_mask)?;
            let logits = HostLogits {
                boundary: logits.boundary.to_vec2()?,
                success: logits.success.to_vec2()?,
                intent: logits.intent.to_vec3()?,
                failure: logits.failure_point.to_vec3()?,
            };
            dev.add_batch(&chosen, &logits);
        }
        Ok(dev)
    }

    fn add_batch(&mut self, chosen: &[&Window], logits: &HostLogits) {
        let HostLogits {
            boundary,
            success,
            intent,
            failure,
        } = logits;
        for (w, window) in chosen.iter().enumerate() {
            let dialogue = window.origin.0;
            self.windows.push(
                window
                    .supervision
                    .iter()
                    .enumerate()
                    .map(|(k, s)| StayTurn {
                        boundary_logit: boundary[w][k],
                        rephrase: s.rephrase,
                        intent_logits: intent[w][k].clone(),
                        gold_intent: s.intent.map(|v| v as usize),
                    })
                    .collect(),
            );
            for (k, s) in window.supervision.iter().enumerate() {
                if let Some(v) = s.boundary {
                    self.boundary_rephrase.push(s.rephrase);
                    self.boundary_intents.push(
                        k.checked_sub(1)
                            .map(|j| (intent[w][j].clone(), intent[w][k].clone())),
                    );
                    self.push(
                        "goal_boundary",
                        vec![0.0, boundary[w][k]],
                        usize::from(v),
                        dialogue,
                    );
                }
                if let Some(v) = s.success {
                    self.push(
                        "goal_success",
                        vec![0.0, success[w][k]],
                        usize::from(v),
                        dialogue,
                    );
                }
                if let Some(v) = s.intent {
                    self.push("intent", intent[w][k].clone(), v as usize, dialogue);
                }
                if let Some(v) = s.failure_point {
                    self.push("failure_point", failure[w][k].clone(), v as usize, dialogue);
                }
            }
        }
    }

    fn push(&mut self, head: &'static str, logits: Vec<f32>, target: usize, dialogue: usize) {
        self.items.entry(head).or_default().push((logits, target));
        self.dialogues.entry(head).or_default().push(dialogue);
    }

    /// The goal-boundary items, calibrated.
    fn boundary_items(&self, temperatures: &BTreeMap<String, f64>) -> Vec<BoundaryItem> {
        let t = temperatures.get("goal_boundary").copied().unwrap_or(1.0);
        let intent_t = temperatures.get("intent").copied().unwrap_or(1.0);
        let Some(items) = self.items.get("goal_boundary") else {
            return Vec::new();
        };
        items
            .iter()
            .zip(&self.boundary_rephrase)
            .zip(&self.boundary_intents)
            .map(|(((z, y), rephrase), intents)| {
                let change = intents.as_ref().and_then(|(previous, current)| {
                    LabelSets::intent_change(
                        &softmax(previous, intent_t),
                        &softmax(current, intent_t),
                    )
                });
                BoundaryItem {
                    probability: 1.0 / (1.0 + (-(z[1] as f64) / t).exp()),
                    is_boundary: *y == 1,
                    rephrase: *rephrase,
                    intent_change: change,
                }
            })
            .collect()
    }
}

/// The negative log-likelihood of `items` with logits divided by `t`.
fn nll(items: &[(Vec<f32>, usize)], t: f64) -> f64 {
    items
        .iter()
        .map(|(logits, y)| {
            let scaled: Vec<f64> = logits.iter().map(|&z| z as f64 / t).collect();
            let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + scaled.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
            log_sum - scaled[*y]
        })
        .sum::<f64>()
}

/// Per head, the temperature of a grid with the lowest dev NLL; slots keep 1.
fn fit_temperatures(items: &BTreeMap<&str, Vec<(Vec<f32>, usize)>>) -> BTreeMap<String, f64> {
    let grid: Vec<f64> = (0..=50).map(|i| 0.5 + i as f64 * 0.05).collect();
    let mut temperatures: BTreeMap<String, f64> = items
        .iter()
        .map(|(head, its)| {
            (
                head.to_string(),
                grid.iter()
                    .cloned()
                    .min_by(|a, b| nll(its, *a).total_cmp(&nll(its, *b)))
                    .unwrap_or(1.0),
            )
        })
        .collect();
    temperatures.entry("slots".into()).or_insert(1.0);
    temperatures
}

/// A dev turn with a gold goal boundary label, as the boundary decision sees it.
struct BoundaryItem {
    /// The calibrated boundary probability.
    probability: f64,
    is_boundary: bool,
    rephrase: bool,
    /// P(intent changed) from the previous turn.
    intent_change: Option<f64>,
}

/// Boundary decisions: the threshold on the calibrated probability, the
/// logit shift of rephrased turns (retries usually continue their goal) and
/// the weight of an intent change, with the best dev F1. Returns
/// (threshold, shift, weight); `contextless` keeps the weight at 0.
fn fit_boundary_decisions(boundaries: &[BoundaryItem], contextless: bool) -> (f64, f64, f64) {
    let mut decider = LabelSets::new(Vec::new(), Vec::new(), Vec::new());
    let mut f1 = |threshold: f64, shift: f64, weight: f64| {
        decider.rephrase_boundary_shift = shift;
        decider.intent_change_weight = weight;
        let predicted_new = |b: &BoundaryItem| {
            decider.boundary_probability(b.probability, b.rephrase, b.intent_change) > threshold
        };
        let tp = boundaries
            .iter()
            .filter(|b| b.is_boundary && predicted_new(b))
            .count() as f64;
        let predicted = boundaries.iter().filter(|b| predicted_new(b)).count() as f64;
        let actual = boundaries.iter().filter(|b| b.is_boundary).count() as f64;
        if predicted + actual == 0.0 {
            0.0
        } else {
            2.0 * tp / (predicted + actual)
        }
    };
    let weights = if contextless { 0..=0 } else { 0..=8 };
    let mut best = (f1(0.5, 0.0, 0.0), 0.5, 0.0, 0.0);
    for weight in weights.map(|i| 0.25 * i as f64) {
        for shift in (0..=12).map(|i| -0.5 * i as f64) {
            for threshold in (15..=85).map(|i| i as f64 / 100.0) {
                let score = f1(threshold, shift, weight);
                // Strictly better only: ties keep the smaller change.
                if score > best.0 + 1e-12 {
                    best = (score, threshold, shift, weight);
                }
            }
        }
    }
    (best.1, best.2, best.3)
}

/// What `calibrate` fits on the dev split.
pub(super) struct Calibration {
    pub(super) temperatures: BTreeMap<String, f64>,
    pub(super) boundary_threshold: f64,
    pub(super) rephrase_boundary_shift: f64,
    pub(super) intent_change_weight: f64,
    pub(super) intent_stay_shift: f64,
    pub(super) success_threshold: f64,
    pub(super) correct_shift: f64,
    pub(super) decision_fits: Option<BTreeMap<String, DecisionFit>>,
}

/// Fewer dev dialogues than this with a decision's rare class (a failed
/// goal, a failure turn) and `--balance-decisions` keeps that decision's
/// default. Why: the fit maximises the rare class's dev F1, and with a
/// handful of rare dialogues one of them moves that F1 by a tenth or more,
/// so the fitted value is noise; on USS (2 or 3 failed dialogues in 85 dev
/// dialogues) it landed between probabilities 0.01 apart, and one policy's
/// fitted threshold labelled every test dialogue failed. Dialogues, not
/// turns or windows: the turns of one dialogue share its raters and its
/// outcome, so they are not independent evidence.
pub const MIN_RARE_DEV_DIALOGUES: usize = 10;

/// What `--balance-decisions` found for one decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionFit {
    /// Dev dialogues holding at least one item of the rare class.
    pub rare_dev_dialogues: usize,
    /// At least `MIN_RARE_DEV_DIALOGUES` of them: the decision was fitted.
    pub fitted: bool,
}

/// `balanced_decisions`' result.
#[derive(Debug, PartialEq)]
struct BalancedDecisions {
    success_threshold: f64,
    correct_shift: f64,
    fits: BTreeMap<String, DecisionFit>,
}

/// Distinct dialogues among `dialogues` (beside `items`) whose item's target is rare.
fn rare_dialogues(
    items: &[(Vec<f32>, usize)],
    dialogues: &[usize],
    rare: impl Fn(usize) -> bool,
) -> usize {
    items
        .iter()
        .zip(dialogues)
        .filter(|((_, target), _)| rare(*target))
        .map(|(_, dialogue)| *dialogue)
        .collect::<BTreeSet<usize>>()
        .len()
}

/// F1 of the positive (minority) class; 0 when there is none.
fn minority_f1(predicted: &[bool], actual: &[bool]) -> f64 {
    let tp = predicted
        .iter()
        .zip(actual)
        .filter(|(p, a)| **p && **a)
        .count() as f64;
    let positives =
        predicted.iter().filter(|p| **p).count() + actual.iter().filter(|a| **a).count();
    2.0 * tp / (positives as f64).max(1.0)
}

/// `--balance-decisions`: the goal-success threshold and the shift of the
/// `correct` failure-point logit with the best dev F1 of the rare class (a
/// failed goal; any failure point but `correct`), so that a rare failure
/// is labelled at all (with satisfaction ratings, 6% of turns, the most
/// likely class is always "success"/"correct"). A decision that labels
/// every dev item a failure is never taken: it is the constant answer, not
/// the model's, and it would make every label a failure. A decision whose
/// rare class occurs in fewer than `MIN_RARE_DEV_DIALOGUES` dev dialogues
/// keeps its default. `dialogues`: each item's dev dialogue, beside `items`.
fn balanced_decisions(
    items: &BTreeMap<&str, Vec<(Vec<f32>, usize)>>,
    dialogues: &BTreeMap<&str, Vec<usize>>,
    temperatures: &BTreeMap<String, f64>,
    correct: usize,
) -> BalancedDecisions {
    let mut fits = BTreeMap::new();
    // Whether `head` has enough rare dev dialogues to fit, recorded in `fits`.
    let mut enough = |head: &str, rare: &dyn Fn(usize) -> bool| {
        let Some(its) = items.get(head) else {
            return false;
        };
        let rare_dev_dialogues = rare_dialogues(its, &dialogues[head], rare);
        let fitted = rare_dev_dialogues >= MIN_RARE_DEV_DIALOGUES;
        fits.insert(
            head.to_string(),
            DecisionFit {
                rare_dev_dialogues,
                fitted,
            },
        );
        fitted
    };
    let fit_success = enough("goal_success", &|target| target == 0);
    let fit_failure_point = enough("failure_point", &|target| target != correct);
    let temperature = |head: &str| temperatures.get(head).copied().unwrap_or(1.0);
    // The best of a grid, starting from the default: ties (and a model that
    // does not separate the classes at all) keep it.
    let best_of = |grid: &mut dyn Iterator<Item = f64>,
                   default: f64,
                   flagged: &dyn Fn(f64) -> Vec<bool>,
                   actual: &[bool]| {
        let score = |value: f64| {
            let predicted = flagged(value);
            if predicted.iter().all(|p| *p) {
                f64::NEG_INFINITY
            } else {
                minority_f1(&predicted, actual)
            }
        };
        grid.fold((score(default), default), |best, value| {
            let s = score(value);
            if s > best.0 + 1e-12 { (s, value) } else { best }
        })
        .1
    };
    let success_threshold = items
        .get("goal_success")
        .filter(|_| fit_success)
        .map_or(0.5, |its| {
            let t = temperature("goal_success");
            let failed: Vec<bool> = its.iter().map(|(_, y)| *y == 0).collect();
            let flagged = |threshold: f64| -> Vec<bool> {
                its.iter()
                    .map(|(z, _)| 1.0 / (1.0 + (-(z[1] as f64) / t).exp()) <= threshold)
                    .collect()
            };
            best_of(
                &mut (1..=99).map(|i| i as f64 / 100.0),
                0.5,
                &flagged,
                &failed,
            )
        });
    let correct_shift = items
        .get("failure_point")
        .filter(|_| fit_failure_point)
        .map_or(0.0, |its| {
            let t = temperature("failure_point");
            let failures: Vec<bool> = its.iter().map(|(_, y)| *y != correct).collect();
            let flagged = |shift: f64| -> Vec<bool> {
                its.iter()
                    .map(|(z, _)| {
                        let scaled: Vec<f64> = z.iter().map(|&v| v as f64 / t).collect();
                        shifted_argmax(&scaled, Some(correct), shift) != correct
                    })
                    .collect()
            };
            best_of(
                &mut (1..=24).map(|i| -0.25 * i as f64),
                0.0,
                &flagged,
                &failures,
            )
        });
    BalancedDecisions {
        success_threshold,
        correct_shift,
        fits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each item its own dev dialogue.
    fn one_dialogue_each<'a>(
        items: &BTreeMap<&'a str, Vec<(Vec<f32>, usize)>>,
    ) -> BTreeMap<&'a str, Vec<usize>> {
        items
            .iter()
            .map(|(head, its)| (*head, (0..its.len()).collect()))
            .collect()
    }

    /// 90 successes at logit 2, 10 failures at logit 0.5: P > 0.5 for all,
    /// so a 0.5 threshold labels every goal a success (failed-goal F1 0);
    /// failure points (correct = 0, defect = 1) where defect turns lean
    /// correct too. Separable, but not at the defaults.
    fn separable_items() -> BTreeMap<&'static str, Vec<(Vec<f32>, usize)>> {
        let mut success: Vec<(Vec<f32>, usize)> = vec![(vec![0.0, 2.0], 1); 90];
        success.extend(vec![(vec![0.0, 0.5], 0); 10]);
        let mut failure: Vec<(Vec<f32>, usize)> = vec![(vec![3.0, 0.0], 0); 90];
        failure.extend(vec![(vec![1.0, 0.0], 1); 10]);
        BTreeMap::from([("goal_success", success), ("failure_point", failure)])
    }

    #[test]
    fn balanced_decisions_label_a_rare_failure_that_accuracy_never_would() {
        let items = separable_items();
        let fitted = balanced_decisions(&items, &one_dialogue_each(&items), &BTreeMap::new(), 0);
        let p = |z: f64| 1.0 / (1.0 + (-z).exp());
        let threshold = fitted.success_threshold;
        assert!(threshold > p(0.5) && threshold < p(2.0), "{threshold}");
        let shift = fitted.correct_shift;
        assert!(shift < -1.0 && shift > -3.0, "{shift}");
        let both_fitted = DecisionFit {
            rare_dev_dialogues: 10,
            fitted: true,
        };
        assert_eq!(fitted.fits["goal_success"], both_fitted);
        assert_eq!(fitted.fits["failure_point"], both_fitted);
        assert_eq!(minority_f1(&[true, false], &[true, false]), 1.0);
        // A model that does not tell the classes apart keeps the defaults
        // (10 rare dialogues of each, enough to fit): only labelling every
        // item a failure would raise the failure F1.
        let blind = BTreeMap::from([
            (
                "goal_success",
                [vec![(vec![0.0, 2.0], 1); 10], vec![(vec![0.0, 2.0], 0); 10]].concat(),
            ),
            (
                "failure_point",
                [vec![(vec![3.0, 0.0], 0); 10], vec![(vec![3.0, 0.0], 1); 10]].concat(),
            ),
        ]);
        let kept = balanced_decisions(&blind, &one_dialogue_each(&blind), &BTreeMap::new(), 0);
        assert_eq!((kept.success_threshold, kept.correct_shift), (0.5, 0.0));
        assert!(kept.fits.values().all(|fit| fit.fitted));
        // 1 of 3 flagged right, 1 of 2 found: F1 = 2 * 1 / (3 + 2).
        let f1 = minority_f1(&[true, true, true, false], &[true, false, false, true]);
        assert!((f1 - 0.4).abs() < 1e-9);
    }

    #[test]
    fn a_decision_whose_rare_class_is_in_few_dev_dialogues_keeps_its_default() {
        // The separable items, but the 10 failed goals and the 10 defect
        // turns come from 3 dev dialogues: too few to fit on.
        let items = separable_items();
        // Items 0-89 from dialogues 3.., the rare ones from dialogues 0, 1, 2.
        let dialogues: Vec<usize> = (0..100)
            .map(|i| if i < 90 { 3 + i } else { i % 3 })
            .collect();
        let by_head = BTreeMap::from([
            ("goal_success", dialogues.clone()),
            ("failure_point", dialogues),
        ]);
        let kept = balanced_decisions(&items, &by_head, &BTreeMap::new(), 0);
        assert_eq!((kept.success_threshold, kept.correct_shift), (0.5, 0.0));
        let too_few = DecisionFit {
            rare_dev_dialogues: 3,
            fitted: false,
        };
        assert_eq!(kept.fits["goal_success"], too_few);
        assert_eq!(kept.fits["failure_point"], too_few);
        assert_eq!(MIN_RARE_DEV_DIALOGUES, 10);
    }
}
