//! Parsers of option values that clap's types do not cover. Those that run
//! inside clap return a `String` error (clap names the option); the others
//! run in `into_config` and name the option themselves.

use std::collections::BTreeMap;
use std::path::PathBuf;

use labelgen::model::config::Lookahead;
use labelgen::stages::train::TaskWeights;

/// `--dropout P`: a probability below 1 (1 would drop everything).
pub fn parse_dropout(value: &str) -> Result<f32, String> {
    match value.trim().parse::<f32>() {
        Ok(p) if (0.0..1.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a probability in [0, 1), got `{value}`")),
    }
}

/// `--lookahead TURNS`: a number of turns, or `all`.
/// A learning rate: a finite number above 0.
pub fn parse_learning_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("expected a number above 0, got `{value}`")),
    }
}

pub fn parse_lookahead(value: &str) -> Result<Lookahead, String> {
    if value == "all" {
        return Ok(Lookahead::All);
    }
    value
        .parse()
        .map(Lookahead::Turns)
        .map_err(|_| format!("expected a number of turns or `all`, got `{value}`"))
}

/// `--shard I/N`.
pub fn parse_shard(value: &str) -> anyhow::Result<(u64, u64)> {
    let parsed = value
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    parsed.ok_or_else(|| anyhow::anyhow!("--shard {value}: expected I/N, e.g. 0/4"))
}

/// `--min-confidence TASK=P,...`: task -> probability.
pub fn parse_min_confidence(values: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    values
        .iter()
        .map(|v| {
            let (task, p) = v.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--min-confidence {v}: expected TASK=P, e.g. intent=0.9")
            })?;
            let p: f64 = p
                .parse()
                .map_err(|_| anyhow::anyhow!("--min-confidence {v}: {p} is not a number"))?;
            anyhow::ensure!(
                (0.0..=1.0).contains(&p),
                "--min-confidence {v}: expected a probability in [0, 1]"
            );
            Ok((task.to_string(), p))
        })
        .collect()
}

/// `--task-weights TASK=W,...`: the defaults (1 each) with these changed.
pub fn parse_task_weights(assignments: &[String]) -> anyhow::Result<TaskWeights> {
    let mut weights = TaskWeights::default();
    for assignment in assignments {
        set_task_weight(&mut weights, assignment)?;
    }
    Ok(weights)
}

fn set_task_weight(weights: &mut TaskWeights, assignment: &str) -> anyhow::Result<()> {
    let (task, value) = assignment.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("--task-weights: expected TASK=WEIGHT, got `{assignment}`")
    })?;
    let value: f64 = value.trim().parse().map_err(|_| {
        anyhow::anyhow!("--task-weights: `{value}` is not a number (in `{assignment}`)")
    })?;
    anyhow::ensure!(
        value.is_finite() && value >= 0.0,
        "--task-weights: weights are >= 0, got {value} for `{task}`"
    );
    let weight = match task.trim() {
        "goal_boundary" => &mut weights.goal_boundary,
        "goal_success" => &mut weights.goal_success,
        "intent" => &mut weights.intent,
        "slots" => &mut weights.slots,
        "failure_point" => &mut weights.failure_point,
        other => anyhow::bail!(
            "--task-weights: unknown task `{other}`; tasks are goal_boundary, goal_success, intent, slots, failure_point"
        ),
    };
    *weight = value;
    Ok(())
}

/// `--pred [NAME=]LABELS`, repeated; unnamed predictions are model, model2, ...
pub fn parse_preds(values: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut preds = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let named = value.split_once('=').filter(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        let (name, path) = match named {
            Some((name, path)) => (name.to_string(), PathBuf::from(path)),
            None if i == 0 => ("model".to_string(), PathBuf::from(value)),
            None => (format!("model{}", i + 1), PathBuf::from(value)),
        };
        anyhow::ensure!(
            !preds.iter().any(|(n, _)| *n == name),
            "--pred name `{name}` is used twice"
        );
        preds.push((name, path));
    }
    Ok(preds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn error<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn dropout_is_a_probability_below_one() {
        assert_eq!(parse_dropout("0.3"), Ok(0.3));
        assert_eq!(parse_dropout(" 0 "), Ok(0.0));
        for bad in ["1", "-0.1", "half", "NaN"] {
            assert_eq!(
                parse_dropout(bad),
                Err(format!("expected a probability in [0, 1), got `{bad}`"))
            );
        }
    }

    #[test]
    fn lookahead_is_a_number_of_turns_or_all() {
        assert_eq!(parse_lookahead("all"), Ok(Lookahead::All));
        assert_eq!(parse_lookahead("0"), Ok(Lookahead::Turns(0)));
        assert_eq!(parse_lookahead("3"), Ok(Lookahead::Turns(3)));
        assert_eq!(
            parse_lookahead("soon"),
            Err("expected a number of turns or `all`, got `soon`".to_string())
        );
        assert!(parse_lookahead("-1").is_err());
    }

    #[test]
    fn a_shard_is_index_slash_count() {
        assert_eq!(parse_shard("0/4").unwrap(), (0, 4));
        assert_eq!(parse_shard(" 3 / 4 ").unwrap(), (3, 4));
        for bad in ["0", "0-4", "a/4", "0/", "-1/4"] {
            assert_eq!(
                error(parse_shard(bad)),
                format!("--shard {bad}: expected I/N, e.g. 0/4")
            );
        }
    }

    #[test]
    fn min_confidence_is_task_equals_probability() {
        let parsed = parse_min_confidence(&strings(&["intent=0.9", "slots=0.8"])).unwrap();
        assert_eq!(
            parsed,
            BTreeMap::from([("intent".to_string(), 0.9), ("slots".to_string(), 0.8)])
        );
        assert!(parse_min_confidence(&[]).unwrap().is_empty());
        assert_eq!(
            error(parse_min_confidence(&strings(&["intent"]))),
            "--min-confidence intent: expected TASK=P, e.g. intent=0.9"
        );
        assert_eq!(
            error(parse_min_confidence(&strings(&["intent=high"]))),
            "--min-confidence intent=high: high is not a number"
        );
        assert_eq!(
            error(parse_min_confidence(&strings(&["intent=1.5"]))),
            "--min-confidence intent=1.5: expected a probability in [0, 1]"
        );
    }

    #[test]
    fn task_weights_change_only_the_named_tasks() {
        let weights = parse_task_weights(&strings(&["slots=2", " intent = 0.5"])).unwrap();
        let expected = TaskWeights {
            slots: 2.0,
            intent: 0.5,
            ..TaskWeights::default()
        };
        assert_eq!(weights, expected);
        assert_eq!(parse_task_weights(&[]).unwrap(), TaskWeights::default());
        let refused = [
            ("slots", "--task-weights: expected TASK=WEIGHT, got `slots`"),
            (
                "slots=x",
                "--task-weights: `x` is not a number (in `slots=x`)",
            ),
            (
                "slots=-1",
                "--task-weights: weights are >= 0, got -1 for `slots`",
            ),
            (
                "slots=inf",
                "--task-weights: weights are >= 0, got inf for `slots`",
            ),
            (
                "tags=1",
                "--task-weights: unknown task `tags`; tasks are goal_boundary, goal_success, intent, slots, failure_point",
            ),
        ];
        for (assignment, message) in refused {
            assert_eq!(error(parse_task_weights(&strings(&[assignment]))), message);
        }
    }

    #[test]
    fn predictions_are_named_or_numbered() {
        let preds = parse_preds(&strings(&["labels/a", "ctx=labels/b", "labels/c"])).unwrap();
        let expected = [
            ("model", "labels/a"),
            ("ctx", "labels/b"),
            ("model3", "labels/c"),
        ]
        .map(|(name, path)| (name.to_string(), PathBuf::from(path)));
        assert_eq!(preds, expected);
        // Not a name: the whole value is the path.
        let preds = parse_preds(&strings(&["dir/x=y"])).unwrap();
        assert_eq!(preds, [("model".to_string(), PathBuf::from("dir/x=y"))]);
        assert_eq!(
            error(parse_preds(&strings(&["a=x", "a=y"]))),
            "--pred name `a` is used twice"
        );
    }
}
