//! User Satisfaction Simulation (Sun et al. 2021): the tab-separated text
//! format (`SGD.txt`, `MWOZ.txt`, ...) into turns and annotations.
//!
//! Each line is `ROLE \t text \t action \t ratings`, ratings by several
//! annotators separated by commas (`3,3,4`) on USER lines; sessions are
//! separated by blank lines and end with `USER \t OVERALL \t \t ratings`, the
//! dialogue-level rating. Ratings run from 1 (most dissatisfied) to 5 (most
//! satisfied).
//!
//! - Turns: each USER line paired with the SYSTEM line(s) after it. The
//!   user's dialogue act goes to an extra `user_act` column (readers keep and
//!   ignore it). USS has no dialogue ids: a dialogue is `uss-<file stem>-<n>`,
//!   n counting the file's sessions from 0.
//! - Annotators: one per rater position, `a1`, `a2`, ... (a position is not
//!   one person across dialogues; the number of raters varies, 3 to 7 in
//!   SGD.txt).
//! - goal_id 0 on every turn (USS rates the dialogue as a whole); goal_success
//!   from the annotator's dialogue rating, success at 3 ("okay") or above.
//! - failure_point: a user turn's rating judges the system response before
//!   it, so the rating of user turn k+1 labels turn k: `defect` at 2 or
//!   below, `correct` at 3 or above. The last turn has no later rating:
//!   null. The first user turn's rating judges no response and is unused.
//! - intent and slots: null, USS does not rate them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{Counts, Output, Pair, Speaker, pair_turns, text_turn};
use crate::data::issues::DataError;
use crate::data::tables::{Annotation, FailurePoint};
use crate::progress::Progress;

/// A dialogue rating at or above this is goal success (3 is "okay": the
/// user was not dissatisfied).
pub const SUCCESS_MIN_RATING: u8 = 3;
/// A turn rating at or below this marks the response it judges a defect
/// (1 and 2 are the dissatisfied end of the scale).
pub const DEFECT_MAX_RATING: u8 = 2;
/// The extra turns column holding the user's dialogue act.
pub const USER_ACT_COLUMN: &str = "user_act";

#[derive(Debug, Clone)]
pub struct UssConfig {
    pub input: PathBuf,
    pub out: PathBuf,
    pub overwrite: bool,
    pub quiet: bool,
}

impl UssConfig {
    pub fn new(input: PathBuf, out: PathBuf) -> UssConfig {
        UssConfig {
            input,
            out,
            overwrite: false,
            quiet: true,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UssSummary {
    pub corpus: &'static str,
    pub input: String,
    pub dialogues: usize,
    pub turns: usize,
    pub annotations: usize,
    /// a1, a2, ...: one per rater position.
    pub annotators: Vec<String>,
    /// Number of raters -> dialogues.
    pub raters_per_dialogue: BTreeMap<usize, usize>,
    /// Rating -> count, over every rater of every user turn / dialogue.
    pub turn_ratings: BTreeMap<u8, usize>,
    pub dialogue_ratings: BTreeMap<u8, usize>,
    /// Share of (dialogue, annotator) judgments that are goal success.
    pub goal_success_rate: f64,
    /// Share of (turn, annotator) failure_point labels that are defect.
    pub defect_rate: f64,
    /// Turns with a failure_point (a later user turn rated their response).
    pub turns_judged: usize,
    /// Last turns of dialogues: no later rating, failure_point null.
    pub turns_not_judged: usize,
    pub user_acts: BTreeMap<String, usize>,
    /// Input dropped, by reason.
    pub skipped: Counts,
    /// Input kept in another shape, by reason.
    pub adjusted: Counts,
    pub turns_path: String,
    pub annotations_path: String,
    pub seconds: f64,
}

/// One USER or SYSTEM line.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    number: usize,
    speaker: Speaker,
    text: String,
    act: String,
    /// USER lines only.
    ratings: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Blank,
    Turn(Line),
    Overall { number: usize, ratings: Vec<u8> },
}

/// One line, or Err(detail) naming what is wrong with it.
fn parse_line(number: usize, line: &str) -> Result<Parsed, String> {
    if line.trim().is_empty() {
        return Ok(Parsed::Blank);
    }
    let fields: Vec<&str> = line.split('\t').collect();
    match fields[0].trim() {
        "USER" => {
            if fields.len() < 4 {
                return Err(format!(
                    "line {number}: a USER line needs 4 tab-separated fields (role, text, action, ratings such as 3,3,4); found {}",
                    fields.len()
                ));
            }
            let ratings = parse_ratings(number, fields[3])?;
            if fields[1].trim() == "OVERALL" {
                return Ok(Parsed::Overall { number, ratings });
            }
            Ok(Parsed::Turn(Line {
                number,
                speaker: Speaker::User,
                text: fields[1].to_string(),
                act: fields[2].trim().to_string(),
                ratings,
            }))
        }
        "SYSTEM" => {
            if fields.len() < 2 {
                return Err(format!(
                    "line {number}: a SYSTEM line needs at least 2 tab-separated fields (role, text, action); found 1"
                ));
            }
            Ok(Parsed::Turn(Line {
                number,
                speaker: Speaker::System,
                text: fields[1].to_string(),
                act: fields.get(2).map_or("", |a| a.trim()).to_string(),
                ratings: Vec::new(),
            }))
        }
        other => Err(format!(
            "line {number}: role {other:?}; expected USER or SYSTEM as the first tab-separated field"
        )),
    }
}

fn parse_ratings(number: usize, field: &str) -> Result<Vec<u8>, String> {
    if field.trim().is_empty() {
        return Err(format!(
            "line {number}: a USER line needs ratings in its 4th field, e.g. 3,3,4"
        ));
    }
    field
        .split(',')
        .map(|v| match v.trim().parse::<u8>() {
            Ok(r) if (1..=5).contains(&r) => Ok(r),
            _ => Err(format!(
                "line {number}: rating {:?} is not an integer from 1 to 5",
                v.trim()
            )),
        })
        .collect()
}

/// One session's lines and its dialogue-level ratings.
struct Session {
    index: usize,
    first_line: usize,
    lines: Vec<Line>,
    overall: Option<(usize, Vec<u8>)>,
}

impl Session {
    /// Adds a line; Err(detail) for a line after the session's OVERALL line.
    fn add(&mut self, number: usize, parsed: Parsed) -> Result<(), String> {
        if let Some((overall_line, _)) = &self.overall {
            return Err(format!(
                "line {number}: more lines after the OVERALL line (line {overall_line}); sessions are separated by blank lines"
            ));
        }
        match parsed {
            Parsed::Turn(turn) => self.lines.push(turn),
            Parsed::Overall { number, ratings } => self.overall = Some((number, ratings)),
            // A blank line ends the session; it is never part of one.
            Parsed::Blank => {}
        }
        Ok(())
    }
}

pub fn run(config: &UssConfig) -> anyhow::Result<UssSummary> {
    let started = Instant::now();
    let path = &config.input;
    if !path.exists() {
        return Err(DataError::NotFound { path: path.clone() }.into());
    }
    anyhow::ensure!(
        path.is_file(),
        "{}: expected a USS text file (e.g. SGD.txt), found a directory",
        path.display()
    );
    let file = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
    let bytes = file.metadata().map_err(|e| unreadable(path, e))?.len();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("uss")
        .to_string();

    let mut output = Output::create(&config.out, config.overwrite, &[USER_ACT_COLUMN])?;
    let progress = Progress::new(bytes, "bytes", config.quiet);
    let mut tally = Tally::default();
    let input = Input {
        path,
        stem: &stem,
        progress: &progress,
    };
    input.read_sessions(BufReader::new(file), &mut output, &mut tally)?;
    let turns_path = output.turns_path.display().to_string();
    let annotations_path = output.annotations_path.display().to_string();
    let (turns, annotations) = output.finish()?;
    progress.finish();
    Ok(tally.summary(
        config,
        turns,
        annotations,
        turns_path,
        annotations_path,
        started.elapsed().as_secs_f64(),
    ))
}

fn unreadable(path: &Path, e: std::io::Error) -> DataError {
    DataError::Unreadable {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The file being imported.
struct Input<'a> {
    path: &'a Path,
    /// Names its dialogues: `uss-<stem>-<n>`.
    stem: &'a str,
    progress: &'a Progress,
}

impl Input<'_> {
    fn malformed(&self, detail: String) -> DataError {
        DataError::Malformed {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    /// Reads the file line by line, converting each session as it ends.
    fn read_sessions(
        &self,
        mut reader: impl BufRead,
        output: &mut Output,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let mut buffer = String::new();
        let mut session: Option<Session> = None;
        let mut sessions = 0;
        let mut number = 0;
        loop {
            buffer.clear();
            let read = reader.read_line(&mut buffer).map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    anyhow::Error::from(
                        self.malformed(format!("line {}: not UTF-8 text", number + 1)),
                    )
                } else {
                    anyhow::Error::from(unreadable(self.path, e))
                }
            })?;
            if read == 0 {
                break;
            }
            number += 1;
            self.progress.inc(read as u64);
            let mut line = buffer.trim_end_matches(['\n', '\r']);
            if number == 1 {
                line = line.trim_start_matches('\u{feff}');
            }
            match parse_line(number, line).map_err(|e| self.malformed(e))? {
                Parsed::Blank => {
                    if let Some(done) = session.take() {
                        self.convert(done, output, tally)?;
                    }
                }
                parsed => session
                    .get_or_insert_with(|| {
                        sessions += 1;
                        Session {
                            index: sessions - 1,
                            first_line: number,
                            lines: Vec::new(),
                            overall: None,
                        }
                    })
                    .add(number, parsed)
                    .map_err(|e| self.malformed(e))?,
            }
        }
        if let Some(done) = session.take() {
            self.convert(done, output, tally)?;
        }
        if sessions == 0 {
            return Err(self
                .malformed("no sessions: the file holds no USER or SYSTEM lines".into())
                .into());
        }
        Ok(())
    }

    fn convert(
        &self,
        session: Session,
        output: &mut Output,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        convert_session(session, self.stem, output, tally).map_err(|e| self.malformed(e))?;
        Ok(())
    }
}

/// Checks one session, converts it and hands its rows to the output.
fn convert_session(
    session: Session,
    stem: &str,
    output: &mut Output,
    tally: &mut Tally,
) -> Result<(), String> {
    let last_line = session
        .lines
        .last()
        .map_or(session.first_line, |l| l.number);
    let Some((overall_line, overall)) = session.overall else {
        return Err(format!(
            "lines {}-{last_line}: the session has no OVERALL line (`USER<tab>OVERALL<tab><tab>3,3,4`) before the blank line or the end of the file; is the file truncated?",
            session.first_line
        ));
    };
    for line in session.lines.iter().filter(|l| l.speaker == Speaker::User) {
        if line.ratings.len() != overall.len() {
            return Err(format!(
                "line {}: {} ratings, but the session's OVERALL line (line {overall_line}) has {}; every USER line of a session is rated by the same raters",
                line.number,
                line.ratings.len(),
                overall.len()
            ));
        }
    }
    let dialogue_id = format!("uss-{stem}-{:05}", session.index);
    let (mut skipped, mut adjusted) = (Counts::new(), Counts::new());
    let pairs = pair_turns(
        session.lines.into_iter().map(|l| (l.speaker, l)),
        &mut skipped,
        &mut adjusted,
    );
    tally.merge(skipped, adjusted);
    if pairs.is_empty() {
        *tally
            .skipped
            .entry("dialogues_without_user_turns")
            .or_default() += 1;
        return Ok(());
    }
    let (turns, user_acts, annotations) = rows(&dialogue_id, &pairs, &overall);
    tally.add(&pairs, &overall, &annotations);
    output
        .push(turns, vec![user_acts], annotations)
        .map_err(|e| format!("{e:#}"))
}

/// Turns, their user acts, and every rater's annotations of one dialogue.
fn rows(
    dialogue_id: &str,
    pairs: &[Pair<Line>],
    overall: &[u8],
) -> (
    Vec<crate::data::tables::Turn>,
    Vec<Option<String>>,
    Vec<Annotation>,
) {
    let turns = pairs
        .iter()
        .enumerate()
        .map(|(k, pair)| {
            let response = pair
                .system
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            text_turn(dialogue_id, k, &pair.user.text, &response)
        })
        .collect();
    let user_acts = pairs
        .iter()
        .map(|p| Some(p.user.act.clone()).filter(|a| !a.is_empty()))
        .collect();
    let mut annotations = Vec::with_capacity(pairs.len() * overall.len());
    for (rater, &dialogue_rating) in overall.iter().enumerate() {
        for k in 0..pairs.len() {
            let failure_point = pairs.get(k + 1).map(|next| {
                if next.user.ratings[rater] <= DEFECT_MAX_RATING {
                    FailurePoint::Defect
                } else {
                    FailurePoint::Correct
                }
            });
            annotations.push(Annotation {
                dialogue_id: dialogue_id.to_string(),
                turn_index: k as i32,
                annotator_id: annotator(rater),
                goal_id: Some(0),
                goal_success: Some(dialogue_rating >= SUCCESS_MIN_RATING),
                intent: None,
                slots: None,
                failure_point: failure_point.map(|f| f.as_str().to_string()),
                context: None,
            });
        }
    }
    (turns, user_acts, annotations)
}

/// a1, a2, ... for rater positions 0, 1, ...
pub fn annotator(position: usize) -> String {
    format!("a{}", position + 1)
}

#[derive(Default)]
struct Tally {
    dialogues: usize,
    max_raters: usize,
    raters: BTreeMap<usize, usize>,
    turn_ratings: BTreeMap<u8, usize>,
    dialogue_ratings: BTreeMap<u8, usize>,
    success_judgments: (usize, usize),
    defect_judgments: (usize, usize),
    turns_judged: usize,
    turns_not_judged: usize,
    user_acts: BTreeMap<String, usize>,
    skipped: Counts,
    adjusted: Counts,
}

impl Tally {
    fn merge(&mut self, skipped: Counts, adjusted: Counts) {
        for (why, n) in skipped {
            *self.skipped.entry(why).or_default() += n;
        }
        for (why, n) in adjusted {
            *self.adjusted.entry(why).or_default() += n;
        }
    }

    fn add(&mut self, pairs: &[Pair<Line>], overall: &[u8], annotations: &[Annotation]) {
        self.dialogues += 1;
        self.max_raters = self.max_raters.max(overall.len());
        *self.raters.entry(overall.len()).or_default() += 1;
        for &r in overall {
            *self.dialogue_ratings.entry(r).or_default() += 1;
            self.success_judgments.0 += usize::from(r >= SUCCESS_MIN_RATING);
            self.success_judgments.1 += 1;
        }
        for pair in pairs {
            for &r in &pair.user.ratings {
                *self.turn_ratings.entry(r).or_default() += 1;
            }
            let act = if pair.user.act.is_empty() {
                "(none)".to_string()
            } else {
                pair.user.act.clone()
            };
            *self.user_acts.entry(act).or_default() += 1;
        }
        *self
            .skipped
            .entry("first_user_turn_ratings_judge_no_response")
            .or_default() += 1;
        self.turns_judged += pairs.len() - 1;
        self.turns_not_judged += 1;
        for a in annotations {
            if let Some(f) = &a.failure_point {
                self.defect_judgments.0 += usize::from(f == FailurePoint::Defect.as_str());
                self.defect_judgments.1 += 1;
            }
        }
    }

    fn summary(
        self,
        config: &UssConfig,
        turns: usize,
        annotations: usize,
        turns_path: String,
        annotations_path: String,
        seconds: f64,
    ) -> UssSummary {
        let share = |(a, b): (usize, usize)| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        UssSummary {
            corpus: "uss",
            input: config.input.display().to_string(),
            dialogues: self.dialogues,
            turns,
            annotations,
            annotators: (0..self.max_raters).map(annotator).collect(),
            raters_per_dialogue: self.raters,
            turn_ratings: self.turn_ratings,
            dialogue_ratings: self.dialogue_ratings,
            goal_success_rate: share(self.success_judgments),
            defect_rate: share(self.defect_judgments),
            turns_judged: self.turns_judged,
            turns_not_judged: self.turns_not_judged,
            user_acts: self.user_acts,
            skipped: self.skipped,
            adjusted: self.adjusted,
            turns_path,
            annotations_path,
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(speaker: Speaker, text: &str, ratings: &[u8]) -> Line {
        Line {
            number: 0,
            speaker,
            text: text.into(),
            act: if speaker == Speaker::User {
                "INFORM".into()
            } else {
                String::new()
            },
            ratings: ratings.to_vec(),
        }
    }

    #[test]
    fn lines_parse_and_errors_name_the_line() {
        assert_eq!(parse_line(3, "  "), Ok(Parsed::Blank));
        let Ok(Parsed::Turn(user)) = parse_line(4, "USER\tHi there.\tINFORM_INTENT\t2, 3,3") else {
            panic!()
        };
        assert_eq!(
            (user.speaker, user.text.as_str(), user.act.as_str()),
            (Speaker::User, "Hi there.", "INFORM_INTENT")
        );
        assert_eq!(user.ratings, [2, 3, 3]);
        let Ok(Parsed::Turn(system)) = parse_line(5, "SYSTEM\tHello.") else {
            panic!()
        };
        assert_eq!((system.speaker, system.act.as_str()), (Speaker::System, ""));
        assert_eq!(
            parse_line(6, "USER\tOVERALL\t\t4,3,4"),
            Ok(Parsed::Overall {
                number: 6,
                ratings: vec![4, 3, 4]
            })
        );
        for (line, needle) in [
            ("BOT\thello\tINFORM\t", "role \"BOT\""),
            ("USER\thello\tINFORM", "needs 4 tab-separated fields"),
            ("USER\thello\tINFORM\t", "needs ratings"),
            ("USER\thello\tINFORM\t3,6,3", "rating \"6\""),
            ("USER\thello\tINFORM\t3,x", "rating \"x\""),
            ("SYSTEM", "at least 2"),
        ] {
            let e = parse_line(17, line).unwrap_err();
            assert!(
                e.starts_with("line 17:") && e.contains(needle),
                "{line:?}: {e}"
            );
        }
    }

    #[test]
    fn a_rating_judges_the_response_before_it() {
        use Speaker::*;
        let pairs = vec![
            Pair {
                user: turn(User, "u0", &[2, 3, 3]),
                system: vec![turn(System, "s0", &[])],
            },
            Pair {
                user: turn(User, "u1", &[3, 1, 4]),
                system: vec![turn(System, "s1", &[]), turn(System, "s1b", &[])],
            },
            Pair {
                user: turn(User, "u2", &[2, 2, 5]),
                system: vec![],
            },
        ];
        let (turns, acts, annotations) = rows("d", &pairs, &[3, 2, 5]);
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[1].system_response, "s1 s1b");
        assert_eq!(turns[2].system_response, "");
        assert_eq!(acts, vec![Some("INFORM".to_string()); 3]);
        assert_eq!(annotations.len(), 9);
        let label = |annotator: &str, k: i32| {
            let a = annotations
                .iter()
                .find(|a| a.annotator_id == annotator && a.turn_index == k)
                .unwrap();
            (
                a.goal_id,
                a.goal_success,
                a.failure_point.clone(),
                a.intent.clone(),
                a.slots.clone(),
            )
        };
        let some = |s: &str| Some(s.to_string());
        // a1: u1 rated 3 (turn 0 correct), u2 rated 2 (turn 1 defect); dialogue 3: success.
        assert_eq!(
            label("a1", 0),
            (Some(0), Some(true), some("correct"), None, None)
        );
        assert_eq!(
            label("a1", 1),
            (Some(0), Some(true), some("defect"), None, None)
        );
        assert_eq!(label("a1", 2), (Some(0), Some(true), None, None, None));
        // a2: u1 rated 1; dialogue 2: failure.
        assert_eq!(
            label("a2", 0),
            (Some(0), Some(false), some("defect"), None, None)
        );
        assert_eq!(
            label("a3", 1),
            (Some(0), Some(true), some("correct"), None, None)
        );
    }
}
