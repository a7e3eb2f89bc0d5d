//! From the logs and the chosen annotators' labels to dialogue windows
//! with per-turn supervision (annotated, soft from several raters, or weak
//! from feedback), split into train and dev by dialogue.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use super::TrainConfig;
use super::loss::RaterTable;
use super::raters::{
    AnnotatorPolicy, RaterTargets, agreement_weights, majority_supervision, rater_targets,
};
use super::splice::splice_goals;
use super::weak::{self, SummaryBuilder, Target, WeakSummary};
use crate::data::checks::span_misfit;
use crate::data::dataset::read_table_counted;
use crate::data::issues::DataError;
use crate::data::tables::{Annotation, FailurePoint, SlotSpan, Turn};
use crate::model::batch::{Supervision, Window, turn_input, window_ranges};
use crate::model::config::{LabelSets, ModelConfig};
use crate::model::tokenizer::{EncodedTurn, encode_with_offsets};

/// Which annotators train the model when none are named: never the
/// simulator's truth, never the gold annotators a1..a3 (they are the judges).
fn choose_annotators(
    requested: &[String],
    present: &BTreeSet<String>,
    path: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let list = || present.iter().cloned().collect::<Vec<_>>().join(", ");
    if !requested.is_empty() {
        for a in requested {
            anyhow::ensure!(
                present.contains(a),
                "{}: no annotations by annotator `{a}`; annotators present: {}",
                path.display(),
                list()
            );
        }
        return Ok(requested.to_vec());
    }
    if present.contains("single") {
        return Ok(vec!["single".into()]);
    }
    if present.len() == 1 {
        return Ok(present.iter().cloned().collect());
    }
    anyhow::bail!(
        "{}: several annotators ({}); choose the ones to train on with --annotators",
        path.display(),
        list()
    )
}

/// A stable dialogue -> dev/train split from the seed.
fn is_dev(dialogue: &str, share: f64, seed: u64) -> bool {
    crate::data::split::in_share(dialogue, share, seed)
}

/// Whether a dialogue's annotations are read (`--labelled-share`).
fn is_labelled(dialogue: &str, config: &TrainConfig) -> bool {
    crate::data::split::in_share(dialogue, config.labelled_share, config.seed ^ 0x5eed)
}

/// BIO tags of a turn's tokens from its slot spans: None for tokens outside
/// the utterance.
fn bio_tags(
    offsets: &[Option<(usize, usize)>],
    spans: &[SlotSpan],
    slot_types: &[String],
) -> Vec<Option<u32>> {
    let mut tags: Vec<Option<u32>> = offsets.iter().map(|o| o.map(|_| 0)).collect();
    for span in spans {
        let Some(k) = slot_types.iter().position(|s| *s == span.slot) else {
            continue;
        };
        let (start, end) = (span.start as usize, span.end as usize);
        let mut first = true;
        for (t, offset) in offsets.iter().enumerate() {
            if let Some((s, e)) = offset
                && *s < end
                && *e > start
            {
                tags[t] = Some(if first {
                    1 + 2 * k as u32
                } else {
                    2 + 2 * k as u32
                });
                first = false;
            }
        }
    }
    tags
}

/// A turn's supervision from its annotation (and the previous turn's, for
/// the goal boundary).
fn annotated_supervision(
    annotation: &Annotation,
    previous: Option<&Annotation>,
    encoded: &EncodedTurn,
    label_sets: &LabelSets,
) -> Supervision {
    let a = annotation;
    let previous_goal = previous.and_then(|p| p.goal_id);
    let failure = a.failure_point.as_deref();
    Supervision {
        boundary: a.goal_id.zip(previous_goal).map(|(g, p)| g != p),
        success: a.goal_success,
        intent: a
            .intent
            .as_ref()
            .and_then(|i| label_sets.intents.iter().position(|x| x == i))
            .map(|p| p as u32),
        failure_point: failure
            .and_then(|f| label_sets.failure_points.iter().position(|x| x == f))
            .map(|p| p as u32),
        bio: a
            .slots
            .as_ref()
            .map(|spans| bio_tags(&encoded.utterance_offsets, spans, &label_sets.slot_types)),
        ..Supervision::default()
    }
}

/// `--annotator-policy all`: each annotator's agreement with the other
/// raters, over the labelled training dialogues (never the dev split, which
/// judges early stopping); empty for the other policies.
pub(super) fn training_rater_weights(
    config: &TrainConfig,
    labels: &LabelsByTurn,
) -> BTreeMap<String, f64> {
    if config.annotator_policy != AnnotatorPolicy::All {
        return BTreeMap::new();
    }
    // Sorted: the weights are sums over turns, and a HashMap's order varies.
    let mut turns: Vec<_> = labels
        .iter()
        .filter(|((dialogue, _), _)| {
            !is_dev(dialogue, config.dev_share, config.seed) && is_labelled(dialogue, config)
        })
        .collect();
    turns.sort_by(|a, b| a.0.cmp(b.0));
    agreement_weights(turns.into_iter().map(|(_, raters)| raters.as_slice()))
}

/// The raters' labels of each (dialogue, turn index), in the order the
/// annotators are named.
type LabelsByTurn = HashMap<(String, i32), Vec<Annotation>>;

/// The annotators that train the model, and their labels: with
/// `--annotator-policy first` only the first chosen annotator with a row
/// for a turn, otherwise every chosen annotator's row. Last, the number of
/// non-fatal problems read in the annotations table.
pub(super) fn chosen_labels(
    config: &TrainConfig,
) -> anyhow::Result<(Vec<String>, LabelsByTurn, usize)> {
    let (annotations, warnings) = read_table_counted::<Annotation>(&config.labels)?;
    let present: BTreeSet<String> = annotations.iter().map(|a| a.annotator_id.clone()).collect();
    let annotators = choose_annotators(&config.annotators, &present, &config.labels)?;
    Ok((
        annotators.clone(),
        labels_by_turn(annotations, &annotators, config.annotator_policy),
        warnings,
    ))
}

/// The chosen annotators' rows by turn (see [`chosen_labels`]).
fn labels_by_turn(
    annotations: Vec<Annotation>,
    annotators: &[String],
    policy: AnnotatorPolicy,
) -> LabelsByTurn {
    let rank: HashMap<&str, usize> = annotators
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), i))
        .collect();
    let mut ranked: Vec<(usize, Annotation)> = annotations
        .into_iter()
        .filter_map(|a| Some((*rank.get(a.annotator_id.as_str())?, a)))
        .collect();
    // Stable: the table's row order within an annotator does not matter,
    // as each annotator has one row per turn.
    ranked.sort_by_key(|(r, _)| *r);
    let mut labels: LabelsByTurn = HashMap::new();
    for (_, a) in ranked {
        let raters = labels
            .entry((a.dialogue_id.clone(), a.turn_index))
            .or_default();
        if policy != AnnotatorPolicy::First || raters.is_empty() {
            raters.push(a);
        }
    }
    labels
}

/// The chosen labels' slot spans must index their utterances: a span past
/// the end or inside a character would teach the slot head the wrong
/// tokens. (`labelgen validate LABELS --table annotations --turns LOGS`
/// lists every such span.)
pub(super) fn check_spans(
    turns: &[Turn],
    labels: &LabelsByTurn,
    path: &Path,
) -> Result<(), DataError> {
    let mut first = Vec::new();
    let mut count = 0;
    for turn in turns {
        let Some(raters) = labels.get(&(turn.dialogue_id.clone(), turn.turn_index)) else {
            continue;
        };
        for (a, (i, span)) in raters
            .iter()
            .flat_map(|a| a.slots.iter().flatten().enumerate().map(move |s| (a, s)))
        {
            let Some((kind, message)) = span_misfit(&turn.user_utterance, span.start, span.end)
            else {
                continue;
            };
            count += 1;
            if first.len() < 5 {
                first.push(format!(
                    "  {kind}: dialogue {}, turn_index {}, annotator {}, span {i} ({}): {message}",
                    a.dialogue_id, a.turn_index, a.annotator_id, span.slot
                ));
            }
        }
    }
    if count == 0 {
        return Ok(());
    }
    Err(DataError::Malformed {
        path: path.to_path_buf(),
        detail: format!(
            "{count} slot span(s) do not fit their utterance in the logs, first:\n{}\n  \
             hint: `labelgen validate {} --table annotations --turns LOGS` lists them all",
            first.join("\n"),
            path.display()
        ),
    })
}

/// The intents, slot types and failure points the heads predict.
pub(super) fn label_sets(labels: &LabelsByTurn) -> LabelSets {
    let annotations = || labels.values().flatten();
    let intents: Vec<String> = annotations()
        .filter_map(|a| a.intent.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let slot_types: Vec<String> = annotations()
        .flat_map(|a| a.slots.iter().flatten().map(|s| s.slot.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The pipeline classes always (a head trained on simulated data keeps its
    // shape); `defect` (stage unknown, from imported satisfaction ratings)
    // only when the chosen labels use it.
    let uses_defect =
        annotations().any(|a| a.failure_point.as_deref() == Some(FailurePoint::Defect.as_str()));
    let failure_points: Vec<String> = FailurePoint::PIPELINE
        .iter()
        .chain(uses_defect.then_some(&FailurePoint::Defect))
        .map(|f| f.as_str().to_string())
        .collect();
    // Labels without intents (USS rates satisfaction only) train the other
    // heads; the intent head is then empty and `label` writes intent null.
    LabelSets::new(intents, slot_types, failure_points)
}

/// Dialogue windows with their supervision, split into train and dev by dialogue.
pub(super) struct TrainData {
    pub(super) train: Vec<Window>,
    pub(super) dev: Vec<Window>,
    pub(super) train_dialogues: usize,
    pub(super) dev_dialogues: usize,
    pub(super) labelled_turns: usize,
    /// Training windows `--splice-goals` added.
    pub(super) spliced_windows: usize,
    pub(super) annotated_turns_not_in_logs: usize,
    pub(super) weak_labels: WeakSummary,
    /// The raters' soft targets (`--annotator-policy soft|all`).
    pub(super) rater_targets: RaterTable,
}

pub(super) fn split_windows(
    config: &TrainConfig,
    turns: &[Turn],
    tokenizer: &tokenizers::Tokenizer,
    model_config: &ModelConfig,
    supervisor: &Supervisor,
) -> anyhow::Result<TrainData> {
    let mut by_dialogue: BTreeMap<&str, Vec<&Turn>> = BTreeMap::new();
    for turn in turns {
        by_dialogue.entry(&turn.dialogue_id).or_default().push(turn);
    }
    // Sorted before tokenizing: `encoded` is read back in this order below,
    // and logs need not arrive in turn order.
    for dialogue_turns in by_dialogue.values_mut() {
        dialogue_turns.sort_by_key(|t| t.turn_index);
    }
    let pairs: Vec<(String, String)> = by_dialogue
        .values()
        .flatten()
        .map(|t| (t.user_utterance.clone(), t.system_response.clone()))
        .collect();
    let encoded = encode_with_offsets(
        tokenizer,
        &pairs,
        model_config.max_tokens,
        model_config.context.utterance_only(),
    )?;
    let (mut train_windows, mut dev_windows) = (Vec::new(), Vec::new());
    let (mut train_dialogues, mut dev_dialogues, mut labelled_turns) = (0, 0, 0);
    let mut next = 0;
    let mut weak_summary = SummaryBuilder::default();
    let mut rater_targets = RaterTable::new();
    for (d, (dialogue, dialogue_turns)) in by_dialogue.iter().enumerate() {
        let encoded = &encoded[next..next + dialogue_turns.len()];
        next += dialogue_turns.len();
        let DialogueSupervision {
            turns: supervision,
            soft,
            annotated,
        } = supervisor.dialogue(dialogue, dialogue_turns, encoded, &mut weak_summary);
        labelled_turns += annotated;
        if soft.iter().any(Option::is_some) {
            rater_targets.insert(d, soft);
        }
        let inputs: Vec<_> = dialogue_turns
            .iter()
            .zip(encoded)
            .map(|(t, e)| turn_input(t, e.ids.clone(), &model_config.features))
            .collect();
        let dev = is_dev(dialogue, config.dev_share, config.seed);
        if dev {
            dev_dialogues += 1
        } else {
            train_dialogues += 1
        }
        for range in window_ranges(inputs.len(), model_config.dialogue.max_turns) {
            let window = Window {
                targets: vec![0.0; range.len()],
                turns: inputs[range.clone()].to_vec(),
                supervision: supervision[range.clone()].to_vec(),
                origin: (d, range.start),
            };
            if dev {
                dev_windows.push(window)
            } else {
                train_windows.push(window)
            }
        }
    }
    anyhow::ensure!(
        !train_windows.is_empty() && !dev_windows.is_empty(),
        "too few dialogues to split into train and dev ({} dialogues)",
        by_dialogue.len()
    );
    let spliced = splice_goals(
        &train_windows,
        config.splice_goals,
        model_config.dialogue.max_turns,
        config.seed,
        |w| !rater_targets.contains_key(&w.origin.0),
    );
    let spliced_windows = spliced.len();
    train_windows.extend(spliced);
    let mut weak_labels = weak_summary.finish();
    let use_weak = config.weak_rules.weight > 0.0;
    if !use_weak {
        // The rules were analysed, but --weak-weight 0 kept their votes out of the loss.
        weak_labels.votes_used = 0;
    }
    Ok(TrainData {
        train: train_windows,
        dev: dev_windows,
        train_dialogues,
        dev_dialogues,
        labelled_turns,
        spliced_windows,
        annotated_turns_not_in_logs: not_in_logs(turns, supervisor.labels),
        weak_labels,
        rater_targets,
    })
}

/// Labels whose turn is not in the logs: counted, so that annotations for
/// other logs (or a mistyped dialogue id) are not dropped unseen.
fn not_in_logs(turns: &[Turn], labels: &LabelsByTurn) -> usize {
    let in_logs: HashSet<(&str, i32)> = turns
        .iter()
        .map(|t| (t.dialogue_id.as_str(), t.turn_index))
        .collect();
    labels
        .keys()
        .filter(|(d, t)| !in_logs.contains(&(d.as_str(), *t)))
        .count()
}

/// What supervises the turns: the chosen labels, their label sets, the
/// annotator policy (with the raters' weights, for `all`) and the
/// weak-label rules.
pub(super) struct Supervisor<'a> {
    pub(super) config: &'a TrainConfig,
    pub(super) labels: &'a LabelsByTurn,
    pub(super) label_sets: &'a LabelSets,
    pub(super) rater_weights: &'a BTreeMap<String, f64>,
}

/// A dialogue's supervision per turn, the raters' soft targets per turn
/// (`--annotator-policy soft|all`; otherwise all None) and the number of
/// annotated turns.
struct DialogueSupervision {
    turns: Vec<Supervision>,
    soft: Vec<Option<RaterTargets>>,
    annotated: usize,
}

impl Supervisor<'_> {
    /// The supervision of a dialogue's turns (in order), and how many of
    /// them are annotated: the chosen labels where the dialogue is in the
    /// labelled share, weak labels from feedback where a head has none.
    fn dialogue(
        &self,
        dialogue: &str,
        turns: &[&Turn],
        encoded: &[EncodedTurn],
        weak_summary: &mut SummaryBuilder,
    ) -> DialogueSupervision {
        let config = self.config;
        let votes = weak::votes(turns, &config.weak_rules);
        // Experiments on a labelled subset: the other dialogues' annotations are not read.
        let labelled = is_labelled(dialogue, config);
        let mut out = DialogueSupervision {
            turns: Vec::with_capacity(turns.len()),
            soft: Vec::with_capacity(turns.len()),
            annotated: 0,
        };
        for k in 0..turns.len() {
            let current = self.rated(dialogue, turns[k], labelled);
            let previous = match k {
                0 => &[][..],
                _ => self.rated(dialogue, turns[k - 1], labelled),
            };
            let first = current.first();
            weak_summary.add(
                &votes[k],
                first,
                first.and_then(|a| self.previous(a, previous)),
            );
            let per_rater: Vec<Supervision> = current
                .iter()
                .map(|a| {
                    let before = self.previous(a, previous);
                    annotated_supervision(a, before, &encoded[k], self.label_sets)
                })
                .collect();
            out.annotated += usize::from(!per_rater.is_empty());
            let soft = self.soft_targets(current, &per_rater);
            let rephrase = k > 0
                && crate::data::feedback::is_rephrase(
                    &turns[k - 1].user_utterance,
                    &turns[k].user_utterance,
                );
            let use_weak = config.weak_rules.weight > 0.0;
            let supervision = with_weak_labels(
                majority_supervision(&per_rater),
                &weak::combine(&votes[k]),
                use_weak,
                k,
                rephrase,
            );
            out.turns
                .push(without_weak_where_rated(supervision, soft.as_ref()));
            out.soft.push(soft);
        }
        out
    }

    /// The chosen raters' annotations of a turn; none outside the labelled share.
    fn rated(&self, dialogue: &str, turn: &Turn, labelled: bool) -> &[Annotation] {
        if !labelled {
            return &[];
        }
        self.labels
            .get(&(dialogue.to_string(), turn.turn_index))
            .map_or(&[], Vec::as_slice)
    }

    /// The annotation of the previous turn that a rater's goal boundary
    /// compares with: the same annotator's (`first`: the previous turn's
    /// chosen label, whoever gave it, as before the policies existed).
    fn previous<'b>(
        &self,
        rater: &Annotation,
        previous: &'b [Annotation],
    ) -> Option<&'b Annotation> {
        match self.config.annotator_policy {
            AnnotatorPolicy::First => previous.first(),
            _ => previous
                .iter()
                .find(|p| p.annotator_id == rater.annotator_id),
        }
    }

    /// The raters' soft targets of a turn (`soft`: equal weights, `all`:
    /// the annotators' agreement weights); None for the other policies or
    /// a turn no rater labels.
    fn soft_targets(
        &self,
        raters: &[Annotation],
        per_rater: &[Supervision],
    ) -> Option<RaterTargets> {
        let policy = self.config.annotator_policy;
        if !policy.is_soft() || raters.is_empty() {
            return None;
        }
        let weighted: Vec<(&Supervision, f32)> = raters
            .iter()
            .zip(per_rater)
            .map(|(a, s)| {
                let weight = match policy {
                    AnnotatorPolicy::All => self
                        .rater_weights
                        .get(&a.annotator_id)
                        .copied()
                        .unwrap_or(0.5),
                    _ => 1.0,
                };
                (s, weight as f32)
            })
            .collect();
        let sizes = (
            self.label_sets.intents.len(),
            self.label_sets.failure_points.len(),
        );
        Some(rater_targets(
            &weighted,
            sizes,
            policy == AnnotatorPolicy::All,
        ))
    }
}

/// Where the raters give a soft target, no weak label trains that head
/// (the hard majority may be missing on a tie, which would otherwise let
/// a weak label in beside the raters' distribution).
fn without_weak_where_rated(supervision: Supervision, soft: Option<&RaterTargets>) -> Supervision {
    let Some(soft) = soft else {
        return supervision;
    };
    Supervision {
        weak_boundary: supervision
            .weak_boundary
            .filter(|_| soft.boundary.is_none()),
        weak_success: supervision.weak_success.filter(|_| soft.success.is_none()),
        weak_defect: supervision
            .weak_defect
            .filter(|_| soft.failure_point.is_none()),
        ..supervision
    }
}

/// Weak labels (from the feedback votes) for the heads a turn has no
/// annotation for; none with --weak-weight 0, and no goal boundary at the
/// dialogue's first turn (`k` is the turn's place in its dialogue).
fn with_weak_labels(
    supervision: Supervision,
    weak: &BTreeMap<Target, f32>,
    use_weak: bool,
    k: usize,
    rephrase: bool,
) -> Supervision {
    let vote = |target: Target| weak.get(&target).copied().filter(|_| use_weak);
    Supervision {
        rephrase,
        weak_boundary: supervision
            .boundary
            .is_none()
            .then(|| vote(Target::GoalBoundary))
            .flatten()
            .filter(|_| k > 0),
        weak_success: supervision
            .success
            .is_none()
            .then(|| vote(Target::GoalSuccess))
            .flatten(),
        weak_defect: supervision
            .failure_point
            .is_none()
            .then(|| vote(Target::Defect))
            .flatten(),
        ..supervision
    }
}

#[cfg(test)]
mod tests {
    use super::super::loss::Targets;
    use super::*;

    #[test]
    fn annotations_for_turns_the_logs_lack_are_counted() {
        let turn = |d: &str, t: i32| Turn {
            dialogue_id: d.into(),
            turn_index: t,
            ..Turn::default()
        };
        let turns = [turn("d1", 0), turn("d1", 1)];
        let labels: LabelsByTurn = [("d1", 1), ("d1", 2), ("d9", 0)]
            .into_iter()
            .map(|(d, t)| ((d.to_string(), t), vec![Annotation::default()]))
            .collect();
        assert_eq!(not_in_logs(&turns, &labels), 2);
    }

    /// Three raters of a two-turn dialogue (and an unrated third turn with
    /// negative feedback), supervised under `policy` with rater weights.
    fn rated_dialogue(
        policy: AnnotatorPolicy,
        weights: &[(&str, f64)],
    ) -> (DialogueSupervision, LabelSets) {
        let turn = |t: i32, text: &str, feedback: Option<i8>| Turn {
            dialogue_id: "d1".into(),
            turn_index: t,
            user_utterance: text.into(),
            explicit_feedback: feedback,
            ..Turn::default()
        };
        let turns = [
            turn(0, "what is the weather", None),
            turn(1, "play some jazz", None),
            turn(2, "call my sister", Some(-1)),
        ];
        let rate = |who: &str, t: i32, goal: i32, success: bool, failure: &str| Annotation {
            dialogue_id: "d1".into(),
            turn_index: t,
            annotator_id: who.into(),
            goal_id: Some(goal),
            goal_success: Some(success),
            failure_point: Some(failure.into()),
            ..Annotation::default()
        };
        let annotations = vec![
            rate("a3", 0, 0, false, "defect"),
            rate("a1", 0, 0, true, "correct"),
            rate("a2", 0, 0, true, "defect"),
            rate("a1", 1, 1, true, "correct"),
            rate("a2", 1, 0, true, "correct"),
        ];
        let annotators: Vec<String> = ["a1", "a2", "a3"].map(String::from).to_vec();
        let labels = labels_by_turn(annotations, &annotators, policy);
        let sets = label_sets(&labels);
        let config = TrainConfig {
            annotator_policy: policy,
            ..TrainConfig::new("pre".into(), "logs".into(), "ann".into(), "out".into())
        };
        let rater_weights = weights.iter().map(|(a, w)| (a.to_string(), *w)).collect();
        let supervisor = Supervisor {
            config: &config,
            labels: &labels,
            label_sets: &sets,
            rater_weights: &rater_weights,
        };
        let refs: Vec<&Turn> = turns.iter().collect();
        let encoded = vec![
            EncodedTurn {
                ids: vec![0, 5, 2],
                utterance_offsets: vec![None, Some((0, 4)), None],
            };
            3
        ];
        let out = supervisor.dialogue("d1", &refs, &encoded, &mut SummaryBuilder::default());
        (out, sets)
    }

    #[test]
    fn annotator_policies_build_the_expected_targets() {
        let defect = |sets: &LabelSets| {
            sets.failure_points
                .iter()
                .position(|f| f == "defect")
                .unwrap() as u32
        };
        // first: a1's labels; its turn 1 starts a new goal (its goal 1 after 0).
        let (first, _) = rated_dialogue(AnnotatorPolicy::First, &[]);
        assert_eq!(first.annotated, 2);
        assert_eq!(
            (first.turns[0].success, first.turns[0].failure_point),
            (Some(true), Some(0))
        );
        assert_eq!(first.turns[1].boundary, Some(true));
        assert!(first.soft.iter().all(Option::is_none));
        // The unrated turn learns from its negative feedback.
        assert!(first.turns[2].weak_success.is_some_and(|p| p < 0.1));
        // majority: turn 0 defect (a2, a3) and success (a1, a2); turn 1's
        // boundary is a tie (a1 new goal, a2 same goal), so unlabelled.
        // (`first` reads a1 alone, so its label sets lack `defect`.)
        let (majority, sets) = rated_dialogue(AnnotatorPolicy::Majority, &[]);
        assert_eq!(
            (majority.turns[0].success, majority.turns[0].failure_point),
            (Some(true), Some(defect(&sets)))
        );
        assert_eq!(majority.turns[1].boundary, None);
        assert_eq!(majority.turns[1].failure_point, Some(0));
        assert!(majority.soft.iter().all(Option::is_none));
        // soft: the raters' shares, one item per turn; the hard fields keep
        // the majority (dev accuracy, calibration).
        let (soft, _) = rated_dialogue(AnnotatorPolicy::Soft, &[]);
        assert_eq!(soft.turns[0], majority.turns[0]);
        let turn0 = soft.soft[0].as_ref().unwrap();
        let (p, w) = turn0.success.unwrap();
        assert!((p - 2.0 / 3.0).abs() < 1e-6 && w == 1.0, "{p} {w}");
        let (distribution, w) = turn0.failure_point.clone().unwrap();
        let mut expected = vec![0f32; sets.failure_points.len()];
        (expected[0], expected[defect(&sets) as usize]) = (1.0 / 3.0, 2.0 / 3.0);
        assert!(
            distribution
                .iter()
                .zip(&expected)
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
        assert_eq!(w, 1.0);
        let turn1 = soft.soft[1].as_ref().unwrap();
        assert_eq!(turn1.boundary, Some((0.5, 1.0)));
        assert_eq!(turn1.success, Some((1.0, 1.0)));
        assert_eq!(soft.soft[2], None);
        // Rated heads take no weak label; the unrated turn keeps its own.
        assert_eq!(soft.turns[1].weak_boundary, None);
        assert!(soft.turns[2].weak_success.is_some_and(|p| p < 0.1));
        // all: each rater a row of its weight.
        let (all, _) = rated_dialogue(
            AnnotatorPolicy::All,
            &[("a1", 0.5), ("a2", 0.25), ("a3", 0.25)],
        );
        let turn0 = all.soft[0].as_ref().unwrap();
        assert_eq!(turn0.success, Some((0.75, 1.0)));
        assert_eq!(turn0.failure_point.as_ref().unwrap().0[0], 0.5);
        let (p, w) = all.soft[1].as_ref().unwrap().boundary.unwrap();
        assert!((p - 2.0 / 3.0).abs() < 1e-6 && w == 0.75, "{p} {w}");
    }

    #[test]
    fn soft_targets_replace_the_hard_ones_in_the_batch_targets() {
        let (soft, sets) = rated_dialogue(AnnotatorPolicy::Soft, &[]);
        let window = Window {
            turns: Vec::new(),
            targets: Vec::new(),
            supervision: soft.turns.clone(),
            origin: (4, 0),
        };
        let table: RaterTable = [(4, soft.soft.clone())].into_iter().collect();
        let classes = sets.failure_points.len();
        let targets = Targets::gather(&[&window], (1, 3), (3, 3), &table, (0, classes));
        // Turn 0: P(success) 2/3 as the target, weight 1; turn 2 unrated.
        assert!((targets.success.0[0] - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(targets.success.1, vec![1.0, 1.0, 0.0]);
        assert!(
            targets.intent_soft.is_none(),
            "no intents: no intent targets"
        );
        let (probs, mask) = targets.failure_soft.unwrap();
        assert_eq!(mask, vec![1.0, 1.0, 0.0]);
        assert_eq!(probs[classes], 1.0, "turn 1: all raters say correct");
        // Without soft targets (first, majority) the batch is as before.
        let hard = Targets::gather(&[&window], (1, 3), (3, 3), &RaterTable::new(), (0, classes));
        assert!(hard.failure_soft.is_none());
        assert_eq!(hard.success.0, vec![1.0, 1.0, 0.0]);
    }

    #[test]
    fn annotators_default_to_single_and_never_to_the_judges() {
        let present: BTreeSet<String> = ["a1", "a2", "a3", "single", "truth"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let path = std::path::Path::new("ann");
        assert_eq!(
            choose_annotators(&[], &present, path).unwrap(),
            vec!["single"]
        );
        let only: BTreeSet<String> = ["sgd"].iter().map(|s| s.to_string()).collect();
        assert_eq!(choose_annotators(&[], &only, path).unwrap(), vec!["sgd"]);
        let several: BTreeSet<String> = ["a1", "a2", "truth"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let error = choose_annotators(&[], &several, path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--annotators"), "{error}");
        let error = choose_annotators(&["b9".into()], &present, path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no annotations by annotator `b9`"),
            "{error}"
        );
    }

    #[test]
    fn bio_tags_follow_byte_offsets() {
        // "play purple haze": tokens play(0..4) purple(5..11) haze(12..16), then a special.
        let offsets = vec![None, Some((0, 4)), Some((5, 11)), Some((12, 16)), None];
        let spans = vec![SlotSpan {
            slot: "song".into(),
            start: 5,
            end: 16,
        }];
        let types = vec!["artist".to_string(), "song".to_string()];
        // song is type 1: B = 3, I = 4.
        assert_eq!(
            bio_tags(&offsets, &spans, &types),
            vec![None, Some(0), Some(3), Some(4), None]
        );
    }
}
