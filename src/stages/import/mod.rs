//! `labelgen import`: public corpora into the project's tables.
//!
//! - [`sgd`]: Schema-Guided Dialogue (Rastogi et al. 2020), raw JSON: turns
//!   and one annotator (`sgd`) with goals, goal success, intents and slots.
//! - [`uss`]: User Satisfaction Simulation (Sun et al. 2021), tab-separated
//!   text: turns and one annotator per rater position (`a1`, `a2`, ...) with
//!   goal success and defects from the satisfaction ratings.
//!
//! Both stream their input (one SGD file, one USS session at a time), write
//! `OUT/turns` and `OUT/annotations` atomically (nothing appears on error),
//! and count what they skipped or adjusted, and why.

pub mod sgd;
pub mod uss;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::data::dataset::DatasetWriter;
use crate::data::tables::{Annotation, TableRow, Turn};

/// Rows buffered before they are written (bounds memory on large inputs).
const FLUSH_ROWS: usize = 50_000;

/// Counts by reason, e.g. `slot_spans_out_of_range`: 3.
pub type Counts = BTreeMap<&'static str, usize>;

/// Who spoke a line or turn of a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    System,
}

/// One user turn and the system turns that answered it (empty when none did).
#[derive(Debug, PartialEq)]
pub struct Pair<T> {
    pub user: T,
    pub system: Vec<T>,
}

/// Pairs each user turn with the system turn(s) that follow it, as the turns
/// table wants. System turns before the first user turn answer nothing and
/// are dropped; several system turns in a row form one response; a user turn
/// followed by another user turn (or by nothing) gets an empty response.
/// Each case is counted in `skipped` or `adjusted`.
pub fn pair_turns<T>(
    turns: impl IntoIterator<Item = (Speaker, T)>,
    skipped: &mut Counts,
    adjusted: &mut Counts,
) -> Vec<Pair<T>> {
    let mut pairs: Vec<Pair<T>> = Vec::new();
    for (speaker, turn) in turns {
        match (speaker, pairs.last_mut()) {
            (Speaker::User, _) => pairs.push(Pair {
                user: turn,
                system: Vec::new(),
            }),
            (Speaker::System, None) => {
                *skipped
                    .entry("system_turns_before_first_user_turn")
                    .or_default() += 1
            }
            (Speaker::System, Some(pair)) => {
                if !pair.system.is_empty() {
                    *adjusted
                        .entry("system_turns_joined_into_one_response")
                        .or_default() += 1;
                }
                pair.system.push(turn);
            }
        }
    }
    let unanswered = pairs.iter().filter(|p| p.system.is_empty()).count();
    if unanswered > 0 {
        *adjusted
            .entry("user_turns_without_response_kept_with_empty_response")
            .or_default() += unanswered;
    }
    pairs
}

/// A span of `start..end` characters (Unicode scalar values, as Python and
/// the corpora count them) as UTF-8 byte offsets into `text`, end exclusive;
/// None when it is empty or reaches past the text.
pub fn char_span_to_bytes(text: &str, start: i64, end: i64) -> Option<(i32, i32)> {
    if start < 0 || end <= start {
        return None;
    }
    let (start, end) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
    let mut boundaries = text
        .char_indices()
        .map(|(byte, _)| byte)
        .chain([text.len()]);
    let byte_start = boundaries.nth(start)?;
    let byte_end = boundaries.nth(end - start - 1)?;
    Some((
        i32::try_from(byte_start).ok()?,
        i32::try_from(byte_end).ok()?,
    ))
}

/// `OUT/turns` and `OUT/annotations`, written atomically: both datasets
/// appear only when [`Output::finish`] succeeds.
pub struct Output {
    turns: DatasetWriter,
    annotations: DatasetWriter,
    turn_rows: Vec<Turn>,
    /// Extra string columns of the turns table, one value per buffered turn.
    extra: Vec<(&'static str, Vec<Option<String>>)>,
    annotation_rows: Vec<Annotation>,
    turns_written: usize,
    pub turns_path: PathBuf,
    pub annotations_path: PathBuf,
}

impl Output {
    /// `extra_columns` are string columns added to the turns table after the
    /// schema's (readers keep and ignore them).
    pub fn create(
        out: &Path,
        overwrite: bool,
        extra_columns: &[&'static str],
    ) -> anyhow::Result<Output> {
        let turns_path = out.join("turns");
        let annotations_path = out.join("annotations");
        Ok(Output {
            turns: DatasetWriter::create(&turns_path, overwrite)?,
            annotations: DatasetWriter::create(&annotations_path, overwrite)?,
            turn_rows: Vec::new(),
            extra: extra_columns
                .iter()
                .map(|name| (*name, Vec::new()))
                .collect(),
            annotation_rows: Vec::new(),
            turns_written: 0,
            turns_path,
            annotations_path,
        })
    }

    /// Buffers one dialogue; `extra` holds one value per turn for each extra column.
    pub fn push(
        &mut self,
        turns: Vec<Turn>,
        extra: Vec<Vec<Option<String>>>,
        annotations: Vec<Annotation>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            extra.len() == self.extra.len() && extra.iter().all(|c| c.len() == turns.len()),
            "extra turn columns do not match the turns"
        );
        for ((_, buffer), values) in self.extra.iter_mut().zip(extra) {
            buffer.extend(values);
        }
        self.turn_rows.extend(turns);
        self.annotation_rows.extend(annotations);
        if self.turn_rows.len() + self.annotation_rows.len() >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.turn_rows.is_empty() {
            let batch = Turn::to_batch(&self.turn_rows)?;
            let batch = with_string_columns(batch, &mut self.extra)?;
            self.turns.write_batch(&batch)?;
            self.turns_written += self.turn_rows.len();
            self.turn_rows.clear();
        }
        self.annotations.write_rows(&self.annotation_rows)?;
        self.annotation_rows.clear();
        Ok(())
    }

    /// Writes what is buffered and moves both datasets into place.
    /// Returns (turn rows, annotation rows).
    pub fn finish(mut self) -> anyhow::Result<(usize, usize)> {
        self.flush()?;
        if self.turns_written == 0 && !self.extra.is_empty() {
            // An empty dataset still carries the extra columns.
            let batch = with_string_columns(Turn::to_batch(&[])?, &mut self.extra)?;
            self.turns.write_batch(&batch)?;
        }
        let turns = self.turns.finish::<Turn>()?;
        let annotations = self.annotations.finish::<Annotation>()?;
        Ok((turns, annotations))
    }
}

/// Appends nullable string columns to a batch, draining their buffers.
fn with_string_columns(
    batch: RecordBatch,
    columns: &mut [(&'static str, Vec<Option<String>>)],
) -> anyhow::Result<RecordBatch> {
    if columns.is_empty() {
        return Ok(batch);
    }
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, values) in columns.iter_mut() {
        fields.push(Field::new(*name, DataType::Utf8, true));
        arrays.push(Arc::new(values.drain(..).collect::<StringArray>()));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// A turns row with what a text corpus knows: the words. Everything a
/// runtime would log (device, confidences, the runtime's domain and intent,
/// barge-in) is null; explicit_feedback is 0, "not asked", which is what
/// happened: these assistants never ask "did I answer your question?".
pub fn text_turn(dialogue_id: &str, turn_index: usize, user: &str, system: &str) -> Turn {
    Turn {
        dialogue_id: dialogue_id.to_string(),
        turn_index: turn_index as i32,
        user_utterance: user.to_string(),
        system_response: system.to_string(),
        explicit_feedback: Some(0),
        ..Turn::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_offsets_become_byte_offsets() {
        assert_eq!(char_span_to_bytes("play jazz", 5, 9), Some((5, 9)));
        // 11 characters, 15 bytes: "é" takes 2 bytes, "☕" 3.
        let text = "café ☕ time";
        let (s, e) = char_span_to_bytes(text, 7, 11).unwrap();
        assert_eq!(&text[s as usize..e as usize], "time");
        let (s, e) = char_span_to_bytes(text, 0, 4).unwrap();
        assert_eq!(&text[s as usize..e as usize], "café");
        let (s, e) = char_span_to_bytes(text, 5, 6).unwrap();
        assert_eq!(&text[s as usize..e as usize], "☕");
        // End at the very end of the text is allowed; past it, or empty, is not.
        assert_eq!(char_span_to_bytes(text, 7, 12), None);
        assert_eq!(char_span_to_bytes(text, 3, 3), None);
        assert_eq!(char_span_to_bytes(text, 4, 2), None);
        assert_eq!(char_span_to_bytes(text, -1, 2), None);
        assert_eq!(char_span_to_bytes("", 0, 1), None);
    }

    #[test]
    fn pairing_joins_drops_and_fills() {
        use Speaker::*;
        let (mut skipped, mut adjusted) = (Counts::new(), Counts::new());
        let pairs = pair_turns(
            [
                (System, "hello"),
                (User, "u1"),
                (System, "s1"),
                (System, "s1b"),
                (User, "u2"),
                (User, "u3"),
                (System, "s3"),
                (User, "u4"),
            ],
            &mut skipped,
            &mut adjusted,
        );
        let got: Vec<(&str, Vec<&str>)> =
            pairs.iter().map(|p| (p.user, p.system.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("u1", vec!["s1", "s1b"]),
                ("u2", vec![]),
                ("u3", vec!["s3"]),
                ("u4", vec![]),
            ]
        );
        assert_eq!(skipped["system_turns_before_first_user_turn"], 1);
        assert_eq!(adjusted["system_turns_joined_into_one_response"], 1);
        assert_eq!(
            adjusted["user_turns_without_response_kept_with_empty_response"],
            2
        );
    }
}
