//! What a row's values must be beyond their types: ranges, vocabularies and
//! span shapes. Every reader runs these checks (through
//! [`TableRow::check_values`] in [`super::codec::decode`]), so each stage
//! refuses the values `labelgen validate` reports, not only malformed cells.
//! Checks that need more than the row (keys across rows, spans against the
//! utterances) are in src/data/dataset.rs and src/data/validate.rs.
//!
//! [`TableRow::check_values`]: super::tables::TableRow::check_values

use super::codec::RowCheck;
use super::tables::{Annotation, FailurePoint, Label, Turn};

pub fn turn(row: &Turn, check: &mut RowCheck<'_>) {
    non_negative(check, "turn_index", Some(row.turn_index));
    probability(check, "asr_confidence", row.asr_confidence);
    probability(check, "nlu_confidence", row.nlu_confidence);
    if let Some(v) = row.explicit_feedback
        && !(-1..=1).contains(&v)
    {
        check.error(
            "unknown_value",
            "explicit_feedback",
            format!("value {v}; expected -1, 0 or 1"),
        );
    }
    if row.user_utterance.trim().is_empty() {
        // Legal (a wake word alone, a silent turn), but worth counting.
        check.warning("empty_utterance", "user_utterance", "empty user utterance");
    }
    if let Some(embedding) = &row.audio_embedding
        && embedding.iter().any(|v| !v.is_finite())
    {
        check.error(
            "out_of_range",
            "audio_embedding",
            "non-finite value (NaN or infinity)",
        );
    }
}

pub fn annotation(row: &Annotation, check: &mut RowCheck<'_>) {
    non_negative(check, "turn_index", Some(row.turn_index));
    non_negative(check, "goal_id", row.goal_id);
    failure_point(check, row.failure_point.as_deref());
    for (i, span) in row.slots.iter().flatten().enumerate() {
        span_shape(check, i, &span.slot, span.start, span.end);
    }
}

pub fn label(row: &Label, check: &mut RowCheck<'_>) {
    non_negative(check, "turn_index", Some(row.turn_index));
    non_negative(check, "goal_id", row.goal_id);
    failure_point(check, row.failure_point.as_deref());
    for (column, value) in [
        ("goal_boundary_prob", row.goal_boundary_prob),
        ("goal_success_prob", row.goal_success_prob),
        ("intent_prob", row.intent_prob),
        ("slots_prob", row.slots_prob),
        ("failure_point_prob", row.failure_point_prob),
    ] {
        probability(check, column, value);
    }
    for (i, span) in row.slots.iter().flatten().enumerate() {
        span_shape(check, i, &span.slot, span.start, span.end);
        probability(check, "slots.probability", Some(span.probability));
    }
}

/// Whether a span's offsets can be a span at all: `0 <= start < end`.
/// Spans that fail this are reported by [`label`] and [`annotation`].
pub fn span_is_ordered(start: i32, end: i32) -> bool {
    start >= 0 && end > start
}

/// Why an ordered span cannot index `utterance`, as (issue kind, message):
/// it ends past the utterance, or an offset cuts a UTF-8 character.
pub fn span_misfit(utterance: &str, start: i32, end: i32) -> Option<(&'static str, String)> {
    let (start, end) = (start.max(0) as usize, end.max(0) as usize);
    if end > utterance.len() {
        return Some((
            "span_outside_utterance",
            format!(
                "end {end} beyond the utterance's {} bytes ({utterance:?})",
                utterance.len()
            ),
        ));
    }
    if !utterance.is_char_boundary(start) || !utterance.is_char_boundary(end) {
        return Some((
            "span_not_char_boundary",
            format!(
                "offsets {start}..{end} cut a UTF-8 character of {utterance:?} (offsets are UTF-8 bytes)"
            ),
        ));
    }
    None
}

fn span_shape(check: &mut RowCheck<'_>, index: usize, slot: &str, start: i32, end: i32) {
    if slot.is_empty() {
        check.error(
            "bad_span",
            "slots",
            format!("span {index} ({slot}): empty slot name"),
        );
    }
    if !span_is_ordered(start, end) {
        check.error(
            "bad_span",
            "slots",
            format!("span {index} ({slot}): start {start}, end {end}: expected 0 <= start < end"),
        );
    }
}

/// NaN fails the range test too, so it is reported, never averaged in.
fn probability(check: &mut RowCheck<'_>, column: &str, value: Option<f32>) {
    if let Some(v) = value
        && !(0.0..=1.0).contains(&v)
    {
        check.error("out_of_range", column, format!("value {v} outside [0, 1]"));
    }
}

fn non_negative(check: &mut RowCheck<'_>, column: &str, value: Option<i32>) {
    if let Some(v) = value
        && v < 0
    {
        check.error("out_of_range", column, format!("value {v} is negative"));
    }
}

fn failure_point(check: &mut RowCheck<'_>, value: Option<&str>) {
    if let Some(value) = value
        && FailurePoint::parse(value).is_none()
    {
        check.error(
            "unknown_value",
            "failure_point",
            format!(
                "unknown failure_point '{value}'; expected one of {}",
                FailurePoint::ALL.map(|f| f.as_str()).join(", ")
            ),
        );
    }
}
