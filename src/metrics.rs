//! Metric functions: labels judged against gold (eval), and the held-out
//! AUC of pretraining. Pure functions over counts; they import nothing from
//! the crate, so every layer may use them.
//!
//! Every metric is computed from additive per-dialogue counts ([`Counts`]) rather
//! than from per-dialogue scores, so that corpus metrics are micro-averaged
//! (long dialogues weigh what they contain) and a bootstrap over dialogues only
//! has to sum counts and recompute, never revisit the labels.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::cmp::Ordering;

/// Precision/recall/F1 with the counts behind them.
///
/// The counts travel with the ratios so that a report can show how much
/// evidence a score rests on (1.0 from 2 items is not 1.0 from 2000).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

impl Prf {
    /// Empty denominators are resolved so that a dialogue with nothing to find
    /// and nothing found scores perfectly (it was handled right), while missing
    /// everything or finding only noise scores zero rather than NaN, which would
    /// poison sums and sorts downstream.
    pub fn from_counts(tp: u64, fp: u64, fn_: u64) -> Prf {
        let nothing_to_find = tp + fn_ == 0;
        let nothing_found = tp + fp == 0;
        let ratio = |den: u64, other_empty: bool| match den {
            0 if other_empty => 1.0,
            0 => 0.0,
            _ => tp as f64 / den as f64,
        };
        let precision = ratio(tp + fp, nothing_to_find);
        let recall = ratio(tp + fn_, nothing_found);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Prf {
            precision,
            recall,
            f1,
            tp,
            fp,
            fn_,
        }
    }
}

/// Additive counts for one dialogue (or a sum of dialogues).
///
/// One struct serves every task so that the bootstrap can stay generic: a task
/// fills the fields it has and the `stat` closure picks the metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Decisions judged right, out of `total` (accuracy).
    pub correct: u64,
    pub total: u64,
    /// Detection counts (boundaries, spans, or micro sums over classes).
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    /// Pk errors, WindowDiff errors, and the windows both were measured over.
    pub window_errors: u64,
    pub window_diff_errors: u64,
    pub windows: u64,
    /// per class (index into a label vocabulary): [tp, fp, fn]
    pub per_class: Vec<[u64; 3]>,
}

const TP: usize = 0;
const FP: usize = 1;
const FN: usize = 2;

impl Counts {
    /// Grows `per_class` because dialogues need not mention every class.
    pub fn add(&mut self, other: &Counts) {
        self.correct += other.correct;
        self.total += other.total;
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.window_errors += other.window_errors;
        self.window_diff_errors += other.window_diff_errors;
        self.windows += other.windows;
        if self.per_class.len() < other.per_class.len() {
            self.per_class.resize(other.per_class.len(), [0; 3]);
        }
        for (mine, theirs) in self.per_class.iter_mut().zip(&other.per_class) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
    }

    /// Zero rather than NaN on no data, so empty slices still serialize.
    pub fn accuracy(&self) -> f64 {
        ratio_or(self.correct, self.total, 0.0)
    }

    pub fn prf(&self) -> Prf {
        Prf::from_counts(self.tp, self.fp, self.fn_)
    }

    /// None rather than 0 when no window fits, because "no error" would be a
    /// claim about dialogues too short to measure.
    pub fn pk(&self) -> Option<f64> {
        (self.windows > 0).then(|| self.window_errors as f64 / self.windows as f64)
    }

    /// Same windows as Pk, but also penalises a wrong number of boundaries
    /// inside a window, which Pk forgives.
    pub fn window_diff(&self) -> Option<f64> {
        (self.windows > 0).then(|| self.window_diff_errors as f64 / self.windows as f64)
    }

    /// Classes absent from both gold and prediction are left out: they would
    /// score a free 1.0 and make the macro average depend on vocabulary size.
    pub fn macro_f1(&self) -> f64 {
        let f1s: Vec<f64> = self
            .per_class
            .iter()
            .filter(|c| c.iter().sum::<u64>() > 0)
            .map(|c| Prf::from_counts(c[TP], c[FP], c[FN]).f1)
            .collect();
        if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        }
    }

    /// One-vs-rest view of a class (e.g. goal failure as the positive class);
    /// a class never seen gets the "nothing to find, nothing found" convention.
    pub fn class_prf(&self, class: usize) -> Prf {
        let c = self.per_class.get(class).copied().unwrap_or([0; 3]);
        Prf::from_counts(c[TP], c[FP], c[FN])
    }
}

fn ratio_or(num: u64, den: u64, empty: f64) -> f64 {
    if den == 0 {
        empty
    } else {
        num as f64 / den as f64
    }
}

/// `b[t]` says whether turn t starts a new segment; segments are contiguous runs,
/// so a goal id that comes back later still opens a new segment.
fn boundaries(ids: &[i32]) -> Vec<bool> {
    (0..ids.len())
        .map(|t| t > 0 && ids[t] != ids[t - 1])
        .collect()
}

/// Goal segmentation of one dialogue, given as goal ids per turn (gold, pred,
/// same length >= 1). A boundary is a turn t>0 whose goal id differs from turn
/// t-1's. Returns tp/fp/fn of boundaries (exact turn match), correct/total over
/// the n-1 boundary decisions, and Pk / WindowDiff window counts with window
/// size k (Beeferman et al. 1999; Pevzner & Hearst 2002): for i in 0..n-k,
/// compare whether turns i and i+k are in the same segment (Pk), or the number
/// of boundaries between them (WindowDiff). n-k <= 0 gives no windows.
///
/// Exact-match F1 alone punishes a boundary one turn off as hard as a missing
/// one; the window metrics give the near miss partial credit. Lengths that
/// differ (a caller bug) are cut to the shorter rather than panicking, and k is
/// at least 1 since a zero-width window can never err.
pub fn segmentation_counts(gold: &[i32], pred: &[i32], k: usize) -> Counts {
    debug_assert_eq!(gold.len(), pred.len());
    let n = gold.len().min(pred.len());
    let k = k.max(1);
    let (g, p) = (boundaries(&gold[..n]), boundaries(&pred[..n]));
    let mut c = Counts::default();
    for t in 1..n {
        match (g[t], p[t]) {
            (true, true) => c.tp += 1,
            (false, true) => c.fp += 1,
            (true, false) => c.fn_ += 1,
            (false, false) => {}
        }
        c.correct += u64::from(g[t] == p[t]);
        c.total += 1;
    }
    let between = |b: &[bool], i: usize| b[i + 1..=i + k].iter().filter(|&&x| x).count();
    for i in 0..n.saturating_sub(k) {
        let (gb, pb) = (between(&g, i), between(&p, i));
        c.window_errors += u64::from((gb == 0) != (pb == 0));
        c.window_diff_errors += u64::from(gb != pb);
        c.windows += 1;
    }
    c
}

/// The conventional k: half the mean gold segment length over a corpus,
/// rounded, at least 1 (so corpus metrics use one k). Input: gold goal-id
/// sequences.
///
/// One k for the whole corpus keeps the per-dialogue window counts comparable,
/// so they can be summed and bootstrapped.
pub fn pk_window(gold_dialogues: &[&[i32]]) -> usize {
    let turns: usize = gold_dialogues.iter().map(|d| d.len()).sum();
    let segments: usize = gold_dialogues
        .iter()
        .filter(|d| !d.is_empty())
        .map(|d| 1 + boundaries(d).iter().filter(|&&b| b).count())
        .sum();
    if segments == 0 {
        return 1;
    }
    ((turns as f64 / segments as f64 / 2.0).round() as usize).max(1)
}

/// The vocabulary actually needed: `classes`, widened if an index exceeds it,
/// so a bad index shows up in the counts instead of panicking.
fn vocabulary_size(pairs: &[(usize, Option<usize>)], classes: usize) -> usize {
    pairs
        .iter()
        .flat_map(|&(gold, pred)| [Some(gold), pred])
        .flatten()
        .map(|i| i + 1)
        .fold(classes, usize::max)
}

/// Classification (intent, failure point, goal success): pairs of (gold class,
/// predicted class) as indices into a vocabulary of size `classes`; a
/// prediction None means "withheld" and counts as wrong (total+1, correct+0, fn
/// for the gold class). Fills correct/total and per_class.
///
/// Withholding counts as wrong so that accuracy cannot be raised by abstaining;
/// the benefit of abstaining is measured separately by the threshold sweep.
/// tp/fp/fn are also filled with the micro sums over classes, so `prf()`
/// gives precision on the answered items and recall equal to accuracy.
pub fn classification_counts(pairs: &[(usize, Option<usize>)], classes: usize) -> Counts {
    let mut c = Counts {
        per_class: vec![[0; 3]; vocabulary_size(pairs, classes)],
        ..Counts::default()
    };
    for &(gold, pred) in pairs {
        c.total += 1;
        if pred == Some(gold) {
            c.correct += 1;
            c.tp += 1;
            c.per_class[gold][TP] += 1;
        } else {
            c.fn_ += 1;
            c.per_class[gold][FN] += 1;
            if let Some(p) = pred {
                c.fp += 1;
                c.per_class[p][FP] += 1;
            }
        }
    }
    c
}
// Binary F1 of one class (e.g. goal failure) is Counts::class_prf(class).f1.

/// Slot spans: exact match of (slot, start, end) between gold and predicted
/// sets of one turn, as multisets. Fills tp/fp/fn; also correct/total where a
/// turn is correct when its whole span set matches.
///
/// Exact match, not overlap, because a span one token off fills the slot with
/// the wrong value. Multisets, because a turn can name the same slot value
/// twice and each mention must be found.
pub fn span_counts<S: Ord + Clone>(gold: &[S], pred: &[S]) -> Counts {
    let mut g: Vec<&S> = gold.iter().collect();
    let mut p: Vec<&S> = pred.iter().collect();
    g.sort();
    p.sort();
    // Multiset intersection by merging the two sorted lists.
    let (mut i, mut j, mut tp) = (0, 0, 0u64);
    while i < g.len() && j < p.len() {
        match g[i].cmp(p[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                tp += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let fp = p.len() as u64 - tp;
    let fn_ = g.len() as u64 - tp;
    Counts {
        correct: u64::from(fp == 0 && fn_ == 0),
        total: 1,
        tp,
        fp,
        fn_,
        ..Counts::default()
    }
}

/// Confusion matrix: rows gold, columns predicted (+1 column for withheld).
///
/// Shows which classes are mistaken for which, which per-class F1 hides; the
/// withheld column keeps abstentions visible instead of dropping them.
pub fn confusion_matrix(pairs: &[(usize, Option<usize>)], classes: usize) -> Vec<Vec<u64>> {
    let n = vocabulary_size(pairs, classes);
    let mut m = vec![vec![0; n + 1]; n];
    for &(gold, pred) in pairs {
        m[gold][pred.unwrap_or(n)] += 1;
    }
    m
}

/// Each resample gets its own ChaCha stream, so results do not depend on how
/// rayon schedules resamples across threads.
fn resample_rng(seed: u64, resample: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(resample as u64);
    rng
}

fn sum(items: &[Counts]) -> Counts {
    let mut total = Counts::default();
    for c in items {
        total.add(c);
    }
    total
}

/// Linear interpolation between order statistics; `sorted` must be non-empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// 95% (or any level) percentile bootstrap over dialogues: `per_dialogue` holds
/// each dialogue's Counts; draws `resamples` resamples of dialogue indices with
/// replacement (ChaCha8Rng seeded with `seed`), sums, applies `stat`, and
/// returns (low, high) at (1-level)/2 and 1-(1-level)/2 percentiles.
/// Deterministic for a seed. Empty input -> (NaN, NaN). Skip resamples where
/// stat is NaN.
///
/// Dialogues, not turns, are resampled because turns of one dialogue are
/// correlated; resampling turns would give intervals that are too narrow.
pub fn bootstrap_ci(
    per_dialogue: &[Counts],
    stat: impl Fn(&Counts) -> f64 + Sync,
    resamples: usize,
    level: f64,
    seed: u64,
) -> (f64, f64) {
    bootstrap_cis(per_dialogue, &[&stat], resamples, level, seed)[0]
}

/// [`bootstrap_ci`] for several statistics of the same counts at once: each
/// resample is summed once, which is what a report with many metrics needs.
pub fn bootstrap_cis(
    per_dialogue: &[Counts],
    stats: &[&(dyn Fn(&Counts) -> f64 + Sync)],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Vec<(f64, f64)> {
    let n = per_dialogue.len();
    if n == 0 {
        return vec![(f64::NAN, f64::NAN); stats.len()];
    }
    let draws: Vec<Vec<f64>> = (0..resamples)
        .into_par_iter()
        .map(|r| {
            let mut rng = resample_rng(seed, r);
            let mut total = Counts::default();
            for _ in 0..n {
                total.add(&per_dialogue[rng.random_range(0..n)]);
            }
            stats.iter().map(|stat| stat(&total)).collect()
        })
        .collect();
    let tail = (1.0 - level) / 2.0;
    (0..stats.len())
        .map(|k| {
            let mut values: Vec<f64> = draws.iter().map(|d| d[k]).filter(|v| !v.is_nan()).collect();
            if values.is_empty() {
                return (f64::NAN, f64::NAN);
            }
            values.sort_by(f64::total_cmp);
            (percentile(&values, tail), percentile(&values, 1.0 - tail))
        })
        .collect()
}

/// Paired bootstrap test (Koehn 2004 style, two-sided): a and b are the same
/// dialogues judged for system A and system B (a[i], b[i] same dialogue).
/// Resample dialogue indices, compute delta = stat(sum a) - stat(sum b) per
/// resample; return (observed delta, p-value) where p = 2*min(share of deltas
/// <= 0, share >= 0) capped at 1 — i.e. how often the sign of the lead flips.
///
/// Pairing matters: both systems see the same resampled dialogues, so the
/// dialogue-to-dialogue difficulty cancels and only the systems' difference
/// is tested. Mismatched or empty inputs give (NaN, NaN).
pub fn paired_bootstrap(
    a: &[Counts],
    b: &[Counts],
    stat: impl Fn(&Counts) -> f64 + Sync,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    let n = a.len();
    if n == 0 || n != b.len() {
        return (f64::NAN, f64::NAN);
    }
    let observed = stat(&sum(a)) - stat(&sum(b));
    let deltas: Vec<f64> = (0..resamples)
        .into_par_iter()
        .map(|r| {
            let mut rng = resample_rng(seed, r);
            let (mut sa, mut sb) = (Counts::default(), Counts::default());
            for _ in 0..n {
                let i = rng.random_range(0..n);
                sa.add(&a[i]);
                sb.add(&b[i]);
            }
            stat(&sa) - stat(&sb)
        })
        .filter(|d| !d.is_nan())
        .collect();
    if deltas.is_empty() {
        return (observed, f64::NAN);
    }
    let share = |keep: fn(f64) -> bool| {
        deltas.iter().filter(|&&d| keep(d)).count() as f64 / deltas.len() as f64
    };
    let p = 2.0 * share(|d| d <= 0.0).min(share(|d| d >= 0.0));
    (observed, p.min(1.0))
}

/// One row of a threshold sweep.
///
/// Confidences are only useful if raising the threshold trades coverage for
/// precision; the sweep shows that trade so an operating point can be chosen.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SweepPoint {
    pub threshold: f64,
    pub coverage: f64,
    pub precision: f64,
    pub covered: u64,
}

/// Threshold sweep: items (confidence, correct) → for each threshold in
/// `thresholds`, coverage (share of items with confidence >= t) and precision
/// (accuracy among them; NaN when none covered, since precision of nothing is
/// undefined, not perfect). Coverage of an empty item list is 0.
pub fn threshold_sweep(items: &[(f64, bool)], thresholds: &[f64]) -> Vec<SweepPoint> {
    thresholds
        .iter()
        .map(|&threshold| {
            let (covered, right) = items
                .iter()
                .filter(|&&(confidence, _)| confidence >= threshold)
                .fold((0u64, 0u64), |(n, k), &(_, ok)| (n + 1, k + u64::from(ok)));
            SweepPoint {
                threshold,
                coverage: ratio_or(covered, items.len() as u64, 0.0),
                precision: ratio_or(right, covered, f64::NAN),
                covered,
            }
        })
        .collect()
}

/// The lowest threshold whose precision strictly exceeds `target`, with its
/// coverage, or None. Lowest, because among thresholds that meet the target
/// the lowest keeps the most labels; NaN precision never qualifies.
pub fn first_threshold_beating(sweep: &[SweepPoint], target: f64) -> Option<SweepPoint> {
    sweep
        .iter()
        .filter(|p| p.precision > target)
        .min_by(|a, b| a.threshold.total_cmp(&b.threshold))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn prf_edge_cases() {
        // Nothing to find, nothing found: handled perfectly.
        let p = Prf::from_counts(0, 0, 0);
        assert_eq!((p.precision, p.recall, p.f1), (1.0, 1.0, 1.0));
        // Nothing predicted but 3 gold spans: all missed.
        let p = Prf::from_counts(0, 0, 3);
        assert_eq!((p.precision, p.recall, p.f1), (0.0, 0.0, 0.0));
        // Predictions where gold is empty: only noise.
        let p = Prf::from_counts(0, 2, 0);
        assert_eq!((p.precision, p.recall, p.f1), (0.0, 0.0, 0.0));
        // All wrong: 2 predicted, 2 gold, none match.
        let p = Prf::from_counts(0, 2, 2);
        assert_eq!(
            (p.precision, p.recall, p.f1, p.fp, p.fn_),
            (0.0, 0.0, 0.0, 2, 2)
        );
        // tp=3 fp=1 fn=2: P = 3/4, R = 3/5, F1 = 2*.45/1.35 = 2/3.
        let p = Prf::from_counts(3, 1, 2);
        assert!(close(p.precision, 0.75) && close(p.recall, 0.6) && close(p.f1, 2.0 / 3.0));
    }

    #[test]
    fn segmentation_identical_is_perfect() {
        let ids = [0, 0, 1, 1, 1, 2, 2];
        let c = segmentation_counts(&ids, &ids, 2);
        let p = c.prf();
        assert_eq!((p.precision, p.recall, p.f1), (1.0, 1.0, 1.0));
        assert_eq!((c.tp, c.correct, c.total, c.windows), (2, 6, 6, 5));
        assert_eq!((c.pk(), c.window_diff()), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn segmentation_boundary_shifted_by_one() {
        // gold 0 0 0 | 1 1 1  boundary at turn 3
        // pred 0 0 | 1 1 1 1  boundary at turn 2
        // Boundaries: tp 0, fp 1 (turn 2), fn 1 (turn 3).
        // Decisions t=1..5: t=2 and t=3 wrong -> correct 3 of 5.
        // k=2, windows i=0..3 cover boundary positions i+1..=i+2:
        //   i=0 {1,2}: gold 0, pred 1 -> Pk err, WD err
        //   i=1 {2,3}: gold 1, pred 1 -> ok
        //   i=2 {3,4}: gold 1, pred 0 -> Pk err, WD err
        //   i=3 {4,5}: gold 0, pred 0 -> ok
        // Pk = 2/4, WD = 2/4.
        let c = segmentation_counts(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 1, 1], 2);
        assert_eq!((c.tp, c.fp, c.fn_), (0, 1, 1));
        assert_eq!((c.correct, c.total), (3, 5));
        assert_eq!(
            (c.window_errors, c.window_diff_errors, c.windows),
            (2, 2, 4)
        );
        assert_eq!((c.pk(), c.window_diff()), (Some(0.5), Some(0.5)));
        assert_eq!(c.prf().f1, 0.0);
    }

    #[test]
    fn window_diff_counts_extra_boundaries_pk_forgives() {
        // gold 0 0 | 1 1   boundary at 2;  pred 0 | 1 | 2 2   boundaries at 1, 2.
        // k=2: i=0 {1,2}: gold 1, pred 2 -> Pk ok (both >0), WD err
        //      i=1 {2,3}: gold 1, pred 1 -> ok
        // Pk = 0/2, WD = 1/2.
        let c = segmentation_counts(&[0, 0, 1, 1], &[0, 1, 2, 2], 2);
        assert_eq!((c.pk(), c.window_diff()), (Some(0.0), Some(0.5)));
        assert_eq!((c.tp, c.fp, c.fn_), (1, 1, 0));
    }

    #[test]
    fn segmentation_one_turn_dialogue() {
        let c = segmentation_counts(&[4], &[4], 1);
        assert_eq!((c.tp, c.fp, c.fn_, c.total, c.windows), (0, 0, 0, 0, 0));
        assert_eq!(c.pk(), None);
        assert_eq!(c.window_diff(), None);
    }

    #[test]
    fn pk_window_on_small_corpus() {
        // 8 + 6 = 14 turns, 2 + 1 = 3 segments: mean 14/3 = 4.67, half 2.33 -> 2.
        let a: &[i32] = &[0, 0, 0, 0, 1, 1, 1, 1];
        let b: &[i32] = &[7, 7, 7, 7, 7, 7];
        assert_eq!(pk_window(&[a, b]), 2);
        // One-turn segments: half of 1 is 0.5, rounds to 1.
        assert_eq!(pk_window(&[&[1, 2, 3][..]]), 1);
        // Mean 3, half 1.5, rounds (away from zero) to 2.
        assert_eq!(pk_window(&[&[5, 5, 5][..]]), 2);
        assert_eq!(pk_window(&[]), 1);
    }

    #[test]
    fn classification_accuracy_and_macro_f1() {
        // 7 items, 4 right -> accuracy 4/7.
        // class 0: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 0.8
        // class 1: tp 1, fp 1 (0->1), fn 1 (1->2) -> F1 0.5
        // class 2: tp 1, fp 1 (1->2), fn 1 (withheld) -> F1 0.5
        // class 3: never seen -> excluded. Macro = 1.8/3 = 0.6.
        let pairs = [
            (0, Some(0)),
            (0, Some(0)),
            (0, Some(1)),
            (1, Some(1)),
            (1, Some(2)),
            (2, Some(2)),
            (2, None),
        ];
        let c = classification_counts(&pairs, 4);
        assert_eq!((c.correct, c.total), (4, 7));
        assert!(close(c.accuracy(), 4.0 / 7.0));
        assert_eq!(
            c.per_class,
            vec![[2, 0, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0]]
        );
        assert!(close(c.class_prf(0).f1, 0.8));
        assert!(close(c.macro_f1(), 0.6));
        // Micro: 4 right, 2 wrong answers, 3 gold items missed.
        assert_eq!((c.tp, c.fp, c.fn_), (4, 2, 3));
    }

    #[test]
    fn classification_withheld_counts_wrong() {
        let c = classification_counts(&[(0, None), (1, None), (1, Some(1))], 2);
        assert_eq!((c.correct, c.total), (1, 3));
        assert_eq!(c.per_class, vec![[0, 0, 1], [1, 0, 1]]);
        // class 0: F1 0; class 1: P 1, R 1/2, F1 2/3 -> macro 1/3.
        assert!(close(c.macro_f1(), 1.0 / 3.0));
        assert_eq!(classification_counts(&[], 3).macro_f1(), 0.0);
    }

    #[test]
    fn spans_exact_multiset() {
        let a = ("city", 2, 4);
        let b = ("date", 5, 6);
        // gold {a, a, b}, pred {a, b, b}: matched a once and b once.
        let c = span_counts(&[a, a, b], &[a, b, b]);
        assert_eq!((c.tp, c.fp, c.fn_, c.correct, c.total), (2, 1, 1, 0, 1));
        // Same multiset in another order: the turn is correct.
        let c = span_counts(&[a, b, a], &[b, a, a]);
        assert_eq!((c.tp, c.fp, c.fn_, c.correct), (3, 0, 0, 1));
    }

    #[test]
    fn spans_overlap_is_not_a_match() {
        let c = span_counts(&[("city", 2, 4)], &[("city", 2, 5)]);
        assert_eq!((c.tp, c.fp, c.fn_, c.correct), (0, 1, 1, 0));
    }

    #[test]
    fn spans_empty() {
        let none: [(&str, usize, usize); 0] = [];
        let c = span_counts(&none, &none);
        assert_eq!((c.tp, c.fp, c.fn_, c.correct, c.total), (0, 0, 0, 1, 1));
        assert_eq!(c.prf().f1, 1.0);
        let c = span_counts(&[("x", 0, 1)], &none);
        assert_eq!((c.fn_, c.correct, c.prf().recall), (1, 0, 0.0));
        let c = span_counts(&none, &[("x", 0, 1)]);
        assert_eq!((c.fp, c.correct, c.prf().precision), (1, 0, 0.0));
    }

    #[test]
    fn confusion_matrix_worked() {
        // rows gold 0..2, columns pred 0..2 then withheld.
        let pairs = [
            (0, Some(0)),
            (0, Some(1)),
            (1, Some(1)),
            (2, None),
            (2, Some(0)),
        ];
        let m = confusion_matrix(&pairs, 3);
        assert_eq!(
            m,
            vec![vec![1, 1, 0, 0], vec![0, 1, 0, 0], vec![1, 0, 0, 1]]
        );
    }

    /// `n` dialogues of 10 decisions each, 0..=10 correct in turn; mean 0.5
    /// when n is a multiple of 11.
    fn accuracy_dialogues(n: usize) -> Vec<Counts> {
        (0..n)
            .map(|i| Counts {
                correct: (i % 11) as u64,
                total: 10,
                ..Counts::default()
            })
            .collect()
    }

    #[test]
    fn bootstrap_ci_contains_estimate_and_narrows() {
        let data = accuracy_dialogues(220);
        let point = sum(&data).accuracy();
        assert!(close(point, 0.5));
        let (lo, hi) = bootstrap_ci(&data, Counts::accuracy, 1000, 0.95, 7);
        assert!(lo < point && point < hi, "({lo}, {hi})");
        // Deterministic for a seed.
        assert_eq!(
            bootstrap_ci(&data, Counts::accuracy, 1000, 0.95, 7),
            (lo, hi)
        );
        assert_ne!(
            bootstrap_ci(&data, Counts::accuracy, 1000, 0.95, 8),
            (lo, hi)
        );
        // 16x the dialogues: width shrinks about 4x.
        let (slo, shi) = bootstrap_ci(&accuracy_dialogues(55), Counts::accuracy, 1000, 0.95, 7);
        let (blo, bhi) = bootstrap_ci(&accuracy_dialogues(880), Counts::accuracy, 1000, 0.95, 7);
        assert!(
            shi - slo > 2.0 * (bhi - blo),
            "{} vs {}",
            shi - slo,
            bhi - blo
        );
    }

    #[test]
    fn bootstrap_ci_degenerate_inputs() {
        let (lo, hi) = bootstrap_ci(&[], Counts::accuracy, 100, 0.95, 1);
        assert!(lo.is_nan() && hi.is_nan());
        // Stat always NaN (no windows): every resample skipped.
        let data = accuracy_dialogues(5);
        let (lo, hi) = bootstrap_ci(&data, |c| c.pk().unwrap_or(f64::NAN), 100, 0.95, 1);
        assert!(lo.is_nan() && hi.is_nan());
        // Every dialogue identical: the interval collapses onto the value.
        let same = vec![
            Counts {
                correct: 3,
                total: 4,
                ..Counts::default()
            };
            10
        ];
        assert_eq!(
            bootstrap_ci(&same, Counts::accuracy, 100, 0.95, 1),
            (0.75, 0.75)
        );
    }

    #[test]
    fn paired_bootstrap_clear_winner_and_tie() {
        let dialogues = |base: u64| -> Vec<Counts> {
            (0..30)
                .map(|i| Counts {
                    correct: base + i % 3,
                    total: 10,
                    ..Counts::default()
                })
                .collect()
        };
        // A gets 8..10 of 10 (mean 0.9), B 2..4 (mean 0.3) on the same dialogues.
        let (a, b) = (dialogues(8), dialogues(2));
        let (delta, p) = paired_bootstrap(&a, &b, Counts::accuracy, 1000, 3);
        assert!(close(delta, 0.6));
        assert!(p < 0.01, "p = {p}");
        // Identical systems: every delta is 0, the lead never holds.
        let (delta, p) = paired_bootstrap(&a, &a, Counts::accuracy, 1000, 3);
        assert_eq!(delta, 0.0);
        assert!(p > 0.2, "p = {p}");
        assert!(
            paired_bootstrap(&a, &b[..5], Counts::accuracy, 10, 3)
                .1
                .is_nan()
        );
        // Different on every dialogue but no overall lead (both mean 0.2):
        // the sign of the delta flips often, so p stays large.
        let shifted = |shift: usize| -> Vec<Counts> {
            (0..50)
                .map(|i| Counts {
                    correct: ((i + shift) % 5) as u64,
                    total: 10,
                    ..Counts::default()
                })
                .collect()
        };
        let (delta, p) = paired_bootstrap(&shifted(0), &shifted(2), Counts::accuracy, 1000, 3);
        assert!(close(delta, 0.0));
        assert!(p > 0.2, "p = {p}");
    }

    #[test]
    fn sweep_worked_example() {
        let items = [
            (0.9, true),
            (0.8, true),
            (0.7, false),
            (0.6, true),
            (0.3, false),
        ];
        let sweep = threshold_sweep(&items, &[0.5, 0.75, 0.95]);
        // t=0.5: 4 of 5 covered (0.8), 3 of them right (0.75).
        // t=0.75: 2 of 5 (0.4), both right (1.0).
        // t=0.95: none covered: coverage 0, precision NaN.
        assert_eq!(sweep.len(), 3);
        assert_eq!(
            (sweep[0].covered, sweep[0].coverage, sweep[0].precision),
            (4, 0.8, 0.75)
        );
        assert_eq!(
            (sweep[1].covered, sweep[1].coverage, sweep[1].precision),
            (2, 0.4, 1.0)
        );
        assert_eq!((sweep[2].covered, sweep[2].coverage), (0, 0.0));
        assert!(sweep[2].precision.is_nan());

        let at = |target| first_threshold_beating(&sweep, target).map(|p| p.threshold);
        assert_eq!(at(0.7), Some(0.5));
        assert_eq!(at(0.75), Some(0.75)); // strictly exceeds: 0.75 does not beat 0.75
        assert_eq!(at(1.0), None);
        assert_eq!(first_threshold_beating(&[], 0.0).map(|p| p.threshold), None);
    }
}

/// Area under the ROC curve: the probability that a random positive scores
/// above a random negative (ties count half). NaN without both classes.
pub fn roc_auc(scores: &[(f64, bool)]) -> f64 {
    let mut sorted: Vec<(f64, bool)> = scores.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|s| s.1).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Sum of the positives' ranks, with tied scores sharing their mean rank.
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let mean_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += mean_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[cfg(test)]
mod auc_tests {
    use super::roc_auc;

    #[test]
    fn auc_of_worked_examples() {
        assert_eq!(
            roc_auc(&[(0.1, false), (0.4, false), (0.35, true), (0.8, true)]),
            0.75
        );
        assert_eq!(roc_auc(&[(0.5, false), (0.5, true)]), 0.5);
        assert_eq!(roc_auc(&[(0.1, false), (0.9, true)]), 1.0);
        assert!(roc_auc(&[(0.1, true)]).is_nan());
    }
}
