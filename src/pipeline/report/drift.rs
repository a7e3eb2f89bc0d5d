//! Drift of a task's label distribution: today's against the trailing days'
//! pooled counts, as the Jensen-Shannon distance (base 2).
//!
//! Why JS distance rather than PSI: it is bounded (0 = same distribution, 1
//! = no label in common), symmetric, and defined when a label appears on
//! one side only, where PSI divides by zero and needs an arbitrary
//! epsilon. Evidently uses it for categorical columns with the same
//! default threshold of 0.1 (`DEFAULT_THRESHOLD`).

use std::collections::{BTreeMap, BTreeSet};

/// The distance above which a task's labels are flagged as drifted.
pub const DEFAULT_THRESHOLD: f64 = 0.1;

/// A task's drift between two label-count tables.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Drift {
    /// Jensen-Shannon distance in [0, 1]; None when either side has no labels.
    pub distance: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    /// The label whose share moved most, with its shares (today, trailing).
    pub largest_move: Option<(String, f64, f64)>,
}

/// Compares `today` with `trailing` (label value -> count).
pub fn drift(
    today: &BTreeMap<String, u64>,
    trailing: &BTreeMap<String, u64>,
    threshold: f64,
) -> Drift {
    let values: BTreeSet<&String> = today.keys().chain(trailing.keys()).collect();
    let (p, q) = (shares(today, &values), shares(trailing, &values));
    let distance = match (&p, &q) {
        (Some(p), Some(q)) => Some(js_distance(p, q)),
        _ => None,
    };
    let largest_move = p.as_ref().zip(q.as_ref()).and_then(|(p, q)| {
        values
            .iter()
            .zip(p.iter().zip(q))
            .max_by(|a, b| {
                let (da, db) = ((a.1.0 - a.1.1).abs(), (b.1.0 - b.1.1).abs());
                da.total_cmp(&db).then_with(|| b.0.cmp(a.0))
            })
            .map(|(value, (&p, &q))| ((*value).clone(), p, q))
    });
    Drift {
        distance,
        threshold,
        drifted: distance.is_some_and(|d| d > threshold),
        largest_move,
    }
}

/// Each value's share of the total, in `values` order; None for no counts.
fn shares(counts: &BTreeMap<String, u64>, values: &BTreeSet<&String>) -> Option<Vec<f64>> {
    let total: u64 = counts.values().sum();
    (total > 0).then(|| {
        values
            .iter()
            .map(|v| counts.get(*v).copied().unwrap_or(0) as f64 / total as f64)
            .collect()
    })
}

/// sqrt(JS divergence) with base-2 logarithms, so it lies in [0, 1].
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let kl_to_mixture = |a: &[f64]| -> f64 {
        a.iter()
            .zip(p.iter().zip(q))
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, (pi, qi))| x * (x / ((pi + qi) / 2.0)).log2())
            .sum()
    };
    let divergence = (kl_to_mixture(p) + kl_to_mixture(q)) / 2.0;
    // Rounding can leave a hair below zero for identical inputs.
    divergence.max(0.0).sqrt().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn known_distributions_give_known_distances() {
        assert_eq!(js_distance(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        // M = (0.75, 0.25): JSD = H(M) - (H(P) + H(Q)) / 2 = 0.811278 - 0.5.
        let expected = (0.811_278_124_459_132_8f64 - 0.5).sqrt();
        assert!((js_distance(&[0.5, 0.5], &[1.0, 0.0]) - expected).abs() < 1e-9);
    }

    #[test]
    fn drift_is_flagged_above_the_threshold_and_names_the_largest_move() {
        let trailing = counts(&[("PlayMusic", 50), ("GetWeather", 50)]);
        let same = drift(
            &counts(&[("PlayMusic", 5), ("GetWeather", 5)]),
            &trailing,
            0.1,
        );
        assert_eq!(same.distance, Some(0.0));
        assert!(!same.drifted);

        let today = counts(&[("PlayMusic", 10)]);
        let moved = drift(&today, &trailing, 0.1);
        assert!((moved.distance.unwrap() - 0.557_926).abs() < 1e-5);
        assert!(moved.drifted);
        let (value, now, before) = moved.largest_move.unwrap();
        assert_eq!(value, "GetWeather");
        assert_eq!((now, before), (0.0, 0.5));

        let nothing_before = drift(&today, &BTreeMap::new(), 0.1);
        assert_eq!(nothing_before.distance, None);
        assert!(!nothing_before.drifted);
    }
}
