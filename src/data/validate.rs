//! `labelgen validate`: checks a dataset against its table schema and reports
//! every problem with its file, row, dialogue and column.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::checks;
use super::dataset::{read_table, stream_rows};
use super::issues::{DataError, Issue, RowPlace, Severity};
use super::schema::Table;
use super::tables::{Annotation, Label, TableRow, Turn};

/// Examples kept per issue kind; the count is always complete.
const EXAMPLES_PER_KIND: usize = 10;

#[derive(Debug, Clone)]
pub struct ValidateConfig {
    pub path: PathBuf,
    pub table: Table,
    /// The logs the annotations or labels refer to: slot spans are checked
    /// against the utterances, and rows for turns not in the logs reported.
    pub turns: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct ValidationReport {
    pub path: String,
    pub table: Table,
    pub files: usize,
    pub rows: usize,
    pub dialogues: usize,
    pub errors: usize,
    pub warnings: usize,
    pub valid: bool,
    /// Whether slot spans were checked against the utterances in --turns.
    pub spans_checked_against_turns: bool,
    pub extra_columns: Vec<String>,
    pub issues: BTreeMap<&'static str, IssueSummary>,
}

#[derive(Debug, Serialize)]
pub struct IssueSummary {
    pub severity: Severity,
    pub count: usize,
    pub examples: Vec<String>,
}

/// Validates a dataset. Problems in the data end up in the report; only
/// problems that stop reading altogether (no file, not Parquet, a missing
/// column, a wrong type) are returned as errors.
pub fn run(config: &ValidateConfig) -> Result<ValidationReport, DataError> {
    let utterances = match &config.turns {
        Some(turns) => Some(load_utterances(turns)?),
        None => None,
    };
    let mut issues = IssueLog::default();
    let mut keys = KeyTracker::default();
    let summary = match config.table {
        Table::Turns => {
            // The turns' value checks run in every reader (src/data/checks.rs).
            validate_rows::<Turn>(&config.path, &mut issues, &mut keys, |_, _, _| {})?
        }
        Table::Annotations => {
            let mut goals = GoalTracker::default();
            let summary = validate_rows::<Annotation>(
                &config.path,
                &mut issues,
                &mut keys,
                |place, row, out| {
                    check_annotation(place, row, utterances.as_ref(), out);
                    goals.observe(
                        place,
                        &row.dialogue_id,
                        &row.annotator_id,
                        row.turn_index,
                        row.goal_id,
                        row.goal_success,
                    );
                },
            )?;
            goals.finish(&mut issues);
            summary
        }
        Table::Labels => {
            let mut goals = GoalTracker::default();
            let summary =
                validate_rows::<Label>(&config.path, &mut issues, &mut keys, |place, row, out| {
                    check_label(place, row, utterances.as_ref(), out);
                    goals.observe(
                        place,
                        &row.dialogue_id,
                        "",
                        row.turn_index,
                        row.goal_id,
                        row.goal_success,
                    );
                })?;
            goals.finish(&mut issues);
            summary
        }
    };
    let contiguous = config.table.schema().turn_index_contiguous;
    keys.finish(contiguous, utterances.as_ref(), &mut issues);
    let mut extra: Vec<String> = summary
        .extra_columns
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect();
    extra.sort();
    extra.dedup();
    Ok(ValidationReport {
        path: config.path.display().to_string(),
        table: config.table,
        files: summary.files,
        rows: summary.rows,
        dialogues: keys.dialogues.len(),
        errors: issues.errors,
        warnings: issues.warnings,
        valid: issues.errors == 0,
        spans_checked_against_turns: utterances.is_some(),
        extra_columns: extra,
        issues: issues.by_kind,
    })
}

/// What the report prints for people.
pub fn render(report: &ValidationReport) -> String {
    let mut out = String::new();
    for (kind, summary) in &report.issues {
        let level = if summary.severity == Severity::Error {
            "error"
        } else {
            "warning"
        };
        out += &format!("{level}[{kind}]: {} occurrence(s)\n", summary.count);
        for example in &summary.examples {
            out += &format!("  {example}\n");
        }
        if summary.count > summary.examples.len() {
            out += &format!(
                "  ... and {} more\n",
                summary.count - summary.examples.len()
            );
        }
    }
    if !report.extra_columns.is_empty() {
        out += &format!(
            "note: extra columns kept and ignored: {}\n",
            report.extra_columns.join(", ")
        );
    }
    if report.table != Table::Turns && !report.spans_checked_against_turns {
        out += "note: slot spans were not checked against utterances (pass --turns LOGS to check them)\n";
    }
    out += &format!(
        "{}: {} table, {} file(s), {} row(s), {} dialogue(s): {} error(s), {} warning(s): {}\n",
        report.path,
        report.table.name(),
        report.files,
        report.rows,
        report.dialogues,
        report.errors,
        report.warnings,
        if report.valid { "valid" } else { "INVALID" }
    );
    out
}

fn validate_rows<T: TableRow>(
    path: &Path,
    issues: &mut IssueLog,
    keys: &mut KeyTracker,
    mut check: impl FnMut(&RowPlace, &T, &mut IssueLog),
) -> Result<super::dataset::StreamSummary, DataError> {
    let mut file_ids: HashMap<Arc<str>, u32> = HashMap::new();
    let summary = stream_rows::<T, DataError>(path, |decoded| {
        for issue in decoded.issues {
            issues.push(issue);
        }
        for (place, row) in decoded.rows {
            check(&place, &row, issues);
            let next_id = file_ids.len() as u32;
            let file_id = *file_ids.entry(place.file.clone()).or_insert(next_id);
            keys.observe(&place, file_id, &row);
        }
        Ok(())
    })?;
    for issue in &summary.issues {
        issues.push(issue.clone());
    }
    let mut files: Vec<(u32, Arc<str>)> = file_ids.into_iter().map(|(f, id)| (id, f)).collect();
    files.sort();
    keys.files = files.into_iter().map(|(_, f)| f).collect();
    Ok(summary)
}

#[derive(Default)]
struct IssueLog {
    errors: usize,
    warnings: usize,
    by_kind: BTreeMap<&'static str, IssueSummary>,
}

impl IssueLog {
    fn push(&mut self, issue: Issue) {
        match issue.severity {
            Severity::Error => self.errors += 1,
            Severity::Warning => self.warnings += 1,
        }
        let entry = self.by_kind.entry(issue.kind).or_insert(IssueSummary {
            severity: issue.severity,
            count: 0,
            examples: Vec::new(),
        });
        entry.count += 1;
        if entry.examples.len() < EXAMPLES_PER_KIND {
            entry.examples.push(issue.to_string());
        }
    }
}

type Utterances = HashMap<(String, i32), String>;

fn load_utterances(turns: &Path) -> Result<Utterances, DataError> {
    let (rows, _) = read_table::<Turn>(turns)?;
    Ok(rows
        .into_iter()
        .map(|t| ((t.dialogue_id, t.turn_index), t.user_utterance))
        .collect())
}

/// Checks one span; with the utterance at hand, also its bounds, UTF-8
/// boundaries and (for labels) that its text is the utterance's slice.
fn check_span(
    place: &RowPlace,
    dialogue: &str,
    index: usize,
    (slot, start, end, text): (&str, i32, i32, Option<&str>),
    utterance: Option<&str>,
    out: &mut IssueLog,
) {
    let mut error = |kind, message: String| {
        out.push(place.issue(
            Severity::Error,
            kind,
            Some("slots"),
            Some(dialogue),
            format!("span {index} ({slot}): {message}"),
        ));
    };
    // A span that is no span was reported by the reader (src/data/checks.rs).
    if !checks::span_is_ordered(start, end) {
        return;
    }
    let Some(utterance) = utterance else { return };
    if let Some((kind, message)) = checks::span_misfit(utterance, start, end) {
        error(kind, message);
        return;
    }
    let (start, end) = (start as usize, end as usize);
    if let Some(text) = text
        && &utterance[start..end] != text
    {
        error(
            "span_text_mismatch",
            format!(
                "text {text:?} but the utterance has {:?} there",
                &utterance[start..end]
            ),
        );
    }
    let bytes = utterance.as_bytes();
    let inside_word = |i: usize| {
        i > 0
            && i < bytes.len()
            && bytes[i - 1].is_ascii_alphanumeric()
            && bytes[i].is_ascii_alphanumeric()
    };
    if inside_word(start) || inside_word(end) {
        out.push(place.issue(
            Severity::Warning,
            "span_cuts_word",
            Some("slots"),
            Some(dialogue),
            format!(
                "span {index} ({slot}): {:?} starts or ends inside a word of {utterance:?}",
                &utterance[start..end]
            ),
        ));
    }
}

fn check_annotation(
    place: &RowPlace,
    row: &Annotation,
    utterances: Option<&Utterances>,
    out: &mut IssueLog,
) {
    let d = row.dialogue_id.as_str();
    let utterance = lookup(utterances, d, row.turn_index);
    for (i, span) in row.slots.iter().flatten().enumerate() {
        check_span(
            place,
            d,
            i,
            (&span.slot, span.start, span.end, None),
            utterance,
            out,
        );
    }
}

fn check_label(place: &RowPlace, row: &Label, utterances: Option<&Utterances>, out: &mut IssueLog) {
    let d = row.dialogue_id.as_str();
    let utterance = lookup(utterances, d, row.turn_index);
    for (i, span) in row.slots.iter().flatten().enumerate() {
        check_span(
            place,
            d,
            i,
            (&span.slot, span.start, span.end, Some(&span.text)),
            utterance,
            out,
        );
    }
}

fn lookup<'a>(utterances: Option<&'a Utterances>, dialogue: &str, turn: i32) -> Option<&'a str> {
    utterances?
        .get(&(dialogue.to_string(), turn))
        .map(String::as_str)
}

/// Every key seen, per dialogue, to find duplicates and gaps across files.
#[derive(Default)]
struct KeyTracker {
    dialogues: HashMap<String, Vec<KeySeen>>,
    annotators: HashMap<String, u32>,
    files: Vec<Arc<str>>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KeySeen {
    turn_index: i32,
    annotator: u32,
    file: u32,
    row: usize,
}

impl KeyTracker {
    fn observe<T: TableRow>(&mut self, place: &RowPlace, file: u32, row: &T) {
        let annotator = row
            .annotator_id()
            .map(|a| {
                let next = self.annotators.len() as u32;
                *self.annotators.entry(a.to_string()).or_insert(next)
            })
            .unwrap_or(0);
        self.dialogues
            .entry(row.dialogue_id().to_string())
            .or_default()
            .push(KeySeen {
                turn_index: row.turn_index(),
                annotator,
                file,
                row: place.row,
            });
    }

    fn finish(&mut self, contiguous: bool, utterances: Option<&Utterances>, out: &mut IssueLog) {
        let annotator_names: HashMap<u32, &str> = self
            .annotators
            .iter()
            .map(|(n, &i)| (i, n.as_str()))
            .collect();
        let mut dialogues: Vec<_> = self.dialogues.iter_mut().collect();
        dialogues.sort_by(|a, b| a.0.cmp(b.0));
        for (dialogue, seen) in dialogues {
            seen.sort();
            for pair in seen.windows(2) {
                let (first, again) = (pair[0], pair[1]);
                if (first.turn_index, first.annotator) == (again.turn_index, again.annotator) {
                    let who = annotator_names
                        .get(&first.annotator)
                        .map(|a| format!(", annotator {a}"))
                        .unwrap_or_default();
                    out.push(Issue {
                        severity: Severity::Error,
                        kind: "duplicate_key",
                        file: self.files[again.file as usize].to_string(),
                        row: Some(again.row),
                        column: None,
                        dialogue_id: Some(dialogue.clone()),
                        message: format!(
                            "duplicate key (turn_index {}{who}); first seen in {} row {}",
                            first.turn_index, self.files[first.file as usize], first.row
                        ),
                    });
                }
            }
            if contiguous {
                let indices: Vec<i32> = seen.iter().map(|s| s.turn_index).collect();
                let (count, first) = turn_index_gaps(&indices);
                if count > 0 {
                    let missing = if count as usize == first.len() {
                        format!("{first:?}")
                    } else {
                        format!("{count} indices, first {first:?}")
                    };
                    let last = seen.last().expect("a dialogue has rows");
                    out.push(Issue {
                        severity: Severity::Error,
                        kind: "turn_index_gap",
                        file: self.files[last.file as usize].to_string(),
                        row: None,
                        column: Some("turn_index".into()),
                        dialogue_id: Some(dialogue.clone()),
                        message: format!(
                            "turn_index must run 0..n-1 without gaps; missing {missing}"
                        ),
                    });
                }
            }
            if let Some(utterances) = utterances {
                for s in seen.iter() {
                    if !utterances.contains_key(&(dialogue.clone(), s.turn_index)) {
                        out.push(Issue {
                            severity: Severity::Error,
                            kind: "turn_not_in_logs",
                            file: self.files[s.file as usize].to_string(),
                            row: Some(s.row),
                            column: None,
                            dialogue_id: Some(dialogue.clone()),
                            message: format!(
                                "turn_index {} is not in the logs given with --turns",
                                s.turn_index
                            ),
                        });
                    }
                }
            }
        }
    }
}

/// How many indices in 0..=max are missing from the sorted `indices`, and
/// the first ten. Walks the indices rather than 0..=max: one hostile
/// turn_index (a billion) must not make validate build a billion-entry list.
fn turn_index_gaps(indices: &[i32]) -> (u64, Vec<i64>) {
    const EXAMPLES: usize = 10;
    let (mut count, mut first) = (0u64, Vec::new());
    let mut next: i64 = 0;
    for &index in indices {
        let index = i64::from(index);
        if index > next {
            count += (index - next) as u64;
            first.extend((next..index).take(EXAMPLES - first.len()));
        }
        next = next.max(index + 1);
    }
    (count, first)
}

/// (turn_index, goal_id, goal_success, where) of one annotated row.
type GoalRow = (i32, Option<i32>, Option<bool>, RowPlace);

/// Goal ids must not decrease through a dialogue, and a goal has one success value.
#[derive(Default)]
struct GoalTracker {
    rows: HashMap<(String, String), Vec<GoalRow>>,
}

impl GoalTracker {
    fn observe(
        &mut self,
        place: &RowPlace,
        dialogue: &str,
        annotator: &str,
        turn: i32,
        goal: Option<i32>,
        success: Option<bool>,
    ) {
        if goal.is_none() && success.is_none() {
            return;
        }
        self.rows
            .entry((dialogue.to_string(), annotator.to_string()))
            .or_default()
            .push((turn, goal, success, place.clone()));
    }

    fn finish(self, out: &mut IssueLog) {
        let mut groups: Vec<_> = self.rows.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        for ((dialogue, _), mut rows) in groups {
            rows.sort_by_key(|r| r.0);
            let mut goal_success: HashMap<i32, bool> = HashMap::new();
            let mut last_goal: Option<i32> = None;
            for (turn, goal, success, place) in rows {
                let Some(goal) = goal else { continue };
                if let Some(last) = last_goal
                    && goal < last
                {
                    out.push(place.issue(
                        Severity::Warning,
                        "goal_id_decreases",
                        Some("goal_id"),
                        Some(&dialogue),
                        format!("goal_id {goal} at turn {turn} after goal {last}; goals should be numbered in order"),
                    ));
                }
                last_goal = Some(goal);
                if let Some(success) = success
                    && *goal_success.entry(goal).or_insert(success) != success
                {
                    out.push(place.issue(
                        Severity::Warning,
                        "goal_success_inconsistent",
                        Some("goal_success"),
                        Some(&dialogue),
                        format!("goal {goal} has both true and false goal_success"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::turn_index_gaps;

    #[test]
    fn gaps_are_counted_without_listing_every_missing_index() {
        assert_eq!(turn_index_gaps(&[0, 1, 2]), (0, vec![]));
        assert_eq!(turn_index_gaps(&[0, 2]), (1, vec![1]));
        assert_eq!(turn_index_gaps(&[-1, 1, 1, 3]), (2, vec![0, 2]));
        let (count, first) = turn_index_gaps(&[0, i32::MAX]);
        assert_eq!(count, i32::MAX as u64 - 1);
        assert_eq!(first, (1..=10).collect::<Vec<i64>>());
    }
}
