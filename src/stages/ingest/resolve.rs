//! Sort-and-stream, second half: one bucket's rows become dialogues.
//!
//! 1. Exact duplicates (the same turn delivered twice: every schema column
//!    equal) are dropped and counted.
//! 2. Conflicting duplicates (same dialogue_id and turn_index, different
//!    content) are counted, and one version is kept by the rule: the latest
//!    `timestamp` (a null counts as oldest), then the latest partition, then
//!    the latest file (by name), then the last row of that file.
//! 3. Each dialogue is then one of:
//!    - open: its last turn (its timestamp, or its partition's end when it
//!      has none) lies within the idle timeout of the window's end. It is
//!      written to OUT/open and not labelled: the next run, whose window
//!      still holds its turns, sees it whole.
//!    - skipped: its turn_index does not run 0, 1, ..., n-1 (no first turn:
//!      it began before the window, or turns were lost). Written to
//!      OUT/skipped and counted, never labelled half.
//!    - complete: written to OUT/turns, ordered by dialogue and turn.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::read::{FILE, PARTITION_END, ROW};

pub const OPEN: &str = "open";
pub const NO_FIRST_TURN: &str = "no_first_turn";
pub const TURN_GAP: &str = "turn_gap";
pub const COMPLETE: &str = "complete";
const STATUS: &str = "__status";

/// When dialogues count as open: any activity after this instant (µs).
#[derive(Debug, Clone, Copy)]
pub struct OpenAfter(pub i64);

/// One bucket's outcome.
pub struct Resolved {
    pub rows_in: usize,
    pub exact_duplicates: usize,
    pub conflicting_duplicates: usize,
    pub conflicting_keys: usize,
    /// Rows of complete, open and skipped dialogues, each ordered by
    /// dialogue and turn.
    pub complete: DataFrame,
    pub open: DataFrame,
    pub skipped: DataFrame,
    /// Dialogues per status ([`COMPLETE`], [`OPEN`], [`NO_FIRST_TURN`], [`TURN_GAP`]).
    pub dialogues: BTreeMap<&'static str, usize>,
}

/// Deduplicates, resolves conflicts and classifies one bucket's dialogues;
/// `columns` are the schema columns (the content compared for duplicates).
pub fn resolve(
    rows: LazyFrame,
    columns: &[&str],
    open_after: OpenAfter,
) -> anyhow::Result<Resolved> {
    let latest_first = rows.sort_by_exprs(
        [
            col("dialogue_id"),
            col("turn_index"),
            col("timestamp"),
            col(PARTITION_END),
            col(FILE),
            col(ROW),
        ],
        SortMultipleOptions::default()
            .with_order_descending_multi([false, false, true, true, true, true])
            .with_nulls_last(true)
            .with_maintain_order(true),
    );
    let all = latest_first.collect()?;
    let content: Vec<PlSmallStr> = columns.iter().map(|c| (*c).into()).collect();
    let distinct = all
        .clone()
        .lazy()
        .unique_stable(Some(content), UniqueKeepStrategy::First)
        .collect()?;
    let key: Vec<PlSmallStr> = vec!["dialogue_id".into(), "turn_index".into()];
    let kept = distinct
        .clone()
        .lazy()
        .unique_stable(Some(key), UniqueKeepStrategy::First)
        .collect()?;
    let distinct_rows = distinct.height();
    let conflicting_keys = distinct
        .lazy()
        .group_by([col("dialogue_id"), col("turn_index")])
        .agg([len().alias("versions")])
        .filter(col("versions").gt(lit(1)))
        .collect()?
        .height();
    let statuses = statuses(&kept, open_after)?;
    let with_status = kept.clone().lazy().join(
        statuses.clone().lazy(),
        [col("dialogue_id")],
        [col("dialogue_id")],
        JoinArgs::new(JoinType::Inner),
    );
    let rows_of = |wanted: &[&str]| rows_with_status(&with_status, wanted, columns);
    Ok(Resolved {
        rows_in: all.height(),
        exact_duplicates: all.height() - distinct_rows,
        conflicting_duplicates: distinct_rows - kept.height(),
        conflicting_keys,
        complete: rows_of(&[COMPLETE])?,
        open: rows_of(&[OPEN])?,
        skipped: rows_of(&[NO_FIRST_TURN, TURN_GAP])?,
        dialogues: count_statuses(&statuses)?,
    })
}

/// Each dialogue's status, from its turns (dialogue_id, status).
fn statuses(kept: &DataFrame, open_after: OpenAfter) -> anyhow::Result<DataFrame> {
    let activity = when(col("timestamp").is_null())
        .then(col(PARTITION_END))
        .otherwise(col("timestamp"));
    Ok(kept
        .clone()
        .lazy()
        .group_by([col("dialogue_id")])
        .agg([
            len().cast(DataType::Int32).alias("turns"),
            col("turn_index").min().alias("first"),
            col("turn_index").max().alias("last"),
            activity.max().alias("last_activity"),
        ])
        .select([
            col("dialogue_id"),
            when(col("last_activity").gt(lit(open_after.0)))
                .then(lit(OPEN))
                .when(col("first").neq(lit(0)))
                .then(lit(NO_FIRST_TURN))
                .when(col("last").neq(col("turns") - lit(1)))
                .then(lit(TURN_GAP))
                .otherwise(lit(COMPLETE))
                .alias(STATUS),
        ])
        .collect()?)
}

/// The rows of dialogues with one of `wanted` statuses, ordered by
/// dialogue and turn, in the schema's columns.
fn rows_with_status(
    with_status: &LazyFrame,
    wanted: &[&str],
    columns: &[&str],
) -> anyhow::Result<DataFrame> {
    let is_wanted = wanted
        .iter()
        .fold(lit(false), |any, w| any.or(col(STATUS).eq(lit(*w))));
    Ok(with_status
        .clone()
        .filter(is_wanted)
        .sort_by_exprs(
            [col("dialogue_id"), col("turn_index")],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .collect()?)
}

fn count_statuses(statuses: &DataFrame) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    let column = statuses.column(STATUS)?.str()?;
    let mut counts = BTreeMap::new();
    for status in [COMPLETE, OPEN, NO_FIRST_TURN, TURN_GAP] {
        let n = column.into_iter().filter(|s| *s == Some(status)).count();
        counts.insert(status, n);
    }
    Ok(counts)
}
