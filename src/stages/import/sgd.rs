//! Schema-Guided Dialogue (Rastogi et al. 2020): a split directory
//! (`dialogues_*.json` and `schema.json`) into turns and annotations.
//!
//! - Turns: each USER turn paired with the SYSTEM turn that follows it.
//! - Intent: the `active_intent` of the user turn's frame. A turn with several
//!   frames (one per service) takes the first frame whose active intent
//!   changed from that service's previous user turn to something other than
//!   NONE (the service the user just turned to), else the first frame with an
//!   intent other than NONE, else the first frame. SGD's NONE ("no active
//!   task", e.g. "no, thank you") is kept as the intent `NONE`: it is a label,
//!   not a missing one.
//! - Slots: the spans of every frame of the user turn (SGD spans only
//!   non-categorical values), converted from character to UTF-8 byte offsets.
//! - Goals: a new goal starts when the chosen frame's (service, intent)
//!   differs from the current goal's, unless the new intent is NONE (closing
//!   turns and declined offers stay with the goal they answer).
//! - Goal success: see [`goal_outcome`].
//! - failure_point is null: SGD has no pipeline to fail. So are every runtime
//!   column and, unless `--domain-from-service`, domain and nlu_intent, which
//!   would hand a model the answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::{Counts, Output, Pair, Speaker, char_span_to_bytes, pair_turns, text_turn};
use crate::data::issues::DataError;
use crate::data::tables::{Annotation, SlotSpan, Turn};
use crate::progress::Progress;

/// The one annotator of an SGD import.
pub const ANNOTATOR: &str = "sgd";
/// SGD's active_intent when the user has no task in progress.
pub const NO_INTENT: &str = "NONE";

#[derive(Debug, Clone)]
pub struct SgdConfig {
    /// A split directory: dialogues_*.json and schema.json.
    pub input: PathBuf,
    pub out: PathBuf,
    /// Fill turns.domain from the service (`Restaurants_1` -> `Restaurants`):
    /// for ablations only, it gives the intent's domain away.
    pub domain_from_service: bool,
    pub overwrite: bool,
    pub quiet: bool,
}

impl SgdConfig {
    pub fn new(input: PathBuf, out: PathBuf) -> SgdConfig {
        SgdConfig {
            input,
            out,
            domain_from_service: false,
            overwrite: false,
            quiet: true,
        }
    }
}

/// What an import produced, printed as JSON on stdout.
#[derive(Debug, Serialize)]
pub struct SgdSummary {
    pub corpus: &'static str,
    pub input: String,
    pub files: usize,
    pub dialogues: usize,
    pub turns: usize,
    pub annotations: usize,
    pub goals: usize,
    pub goal_success_rate: f64,
    /// How each goal's success was decided (docs/commands/import.md, "Goal success").
    pub goal_outcomes: BTreeMap<&'static str, usize>,
    pub turns_per_intent: BTreeMap<String, usize>,
    pub multi_frame_turns: usize,
    pub slot_spans: usize,
    pub domain_from_service: bool,
    /// Input dropped, by reason.
    pub skipped: Counts,
    /// Input kept in another shape, by reason.
    pub adjusted: Counts,
    pub turns_path: String,
    pub annotations_path: String,
    pub seconds: f64,
}

// ---------------------------------------------------------------------------
// The corpus as written (only the fields the import uses; others are ignored).

#[derive(Debug, Deserialize)]
struct RawDialogue {
    dialogue_id: String,
    turns: Vec<RawTurn>,
}

#[derive(Debug, Deserialize)]
struct RawTurn {
    speaker: String,
    utterance: String,
    #[serde(default)]
    frames: Vec<RawFrame>,
}

#[derive(Debug, Deserialize)]
struct RawFrame {
    service: String,
    #[serde(default)]
    actions: Vec<RawAction>,
    #[serde(default)]
    slots: Vec<RawSlot>,
    /// User frames only: the dialogue state after the turn.
    state: Option<RawState>,
    /// System frames only: the back-end call and what it returned.
    service_call: Option<RawServiceCall>,
    service_results: Option<Vec<IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
struct RawAction {
    act: String,
}

#[derive(Debug, Deserialize)]
struct RawSlot {
    slot: String,
    /// Character offsets into the utterance, end exclusive.
    start: i64,
    exclusive_end: i64,
}

#[derive(Debug, Deserialize)]
struct RawState {
    active_intent: String,
}

#[derive(Debug, Deserialize)]
struct RawServiceCall {
    method: String,
}

#[derive(Debug, Deserialize)]
struct RawService {
    service_name: String,
    intents: Vec<RawIntent>,
}

#[derive(Debug, Deserialize)]
struct RawIntent {
    name: String,
    is_transactional: bool,
}

/// (service, intent) -> is_transactional, from schema.json.
type Transactional = HashMap<(String, String), bool>;

// ---------------------------------------------------------------------------

pub fn run(config: &SgdConfig) -> anyhow::Result<SgdSummary> {
    let started = Instant::now();
    let (files, schema_path) = split_files(&config.input)?;
    let transactional = read_schema(&schema_path)?;
    let mut output = Output::create(&config.out, config.overwrite, &[])?;
    let progress = Progress::new(files.len() as u64, "files", config.quiet);
    let mut tally = Tally::default();
    // dialogue_id -> the file it came from, to name both sides of a duplicate.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (file_index, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::Unreadable {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let dialogues: Vec<RawDialogue> =
            serde_json::from_str(&text).map_err(|e| json_error(path, &text, &e))?;
        drop(text);
        for dialogue in &dialogues {
            if let Some(first) = seen.insert(dialogue.dialogue_id.clone(), file_index) {
                return Err(DataError::Malformed {
                    path: path.clone(),
                    detail: format!(
                        "dialogue {} appears twice (first in {})",
                        dialogue.dialogue_id,
                        files[first].display()
                    ),
                }
                .into());
            }
            let Converted {
                dialogue: converted,
                skipped,
                adjusted,
            } = convert(dialogue, &transactional, config.domain_from_service).map_err(
                |detail| DataError::Malformed {
                    path: path.clone(),
                    detail: format!("dialogue {}: {detail}", dialogue.dialogue_id),
                },
            )?;
            tally.merge_skips(skipped, adjusted);
            let Some(converted) = converted else {
                *tally
                    .skipped
                    .entry("dialogues_without_user_turns")
                    .or_default() += 1;
                continue;
            };
            tally.add(&converted.annotations, &converted.stats);
            output.push(converted.turns, vec![], converted.annotations)?;
        }
        tally.files += 1;
        progress.inc(1);
    }
    tally.turns_path = output.turns_path.display().to_string();
    tally.annotations_path = output.annotations_path.display().to_string();
    let (turns, annotations) = output.finish()?;
    progress.finish();
    Ok(tally.summary(config, turns, annotations, started.elapsed().as_secs_f64()))
}

/// The split's dialogue files (sorted) and its schema.json.
fn split_files(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, PathBuf)> {
    if !dir.exists() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
        }
        .into());
    }
    anyhow::ensure!(
        dir.is_dir(),
        "{}: expected an SGD split directory (dialogues_*.json and schema.json), found a file",
        dir.display()
    );
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    };
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            subdirs.push(name.to_string());
        } else if name.starts_with("dialogues_") && name.ends_with(".json") {
            files.push(path);
        }
    }
    files.sort();
    subdirs.sort();
    if files.is_empty() {
        let hint = if subdirs.is_empty() {
            String::new()
        } else {
            format!(
                "\n  hint: name one split directory, e.g. {}",
                dir.join(&subdirs[0]).display()
            )
        };
        anyhow::bail!(
            "{}: no dialogues_*.json files; expected an SGD split directory{hint}",
            dir.display()
        );
    }
    let schema = dir.join("schema.json");
    if !schema.is_file() {
        return Err(DataError::NotFound { path: schema }.into());
    }
    Ok((files, schema))
}

fn read_schema(path: &Path) -> anyhow::Result<Transactional> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Unreadable {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let services: Vec<RawService> =
        serde_json::from_str(&text).map_err(|e| DataError::Malformed {
            path: path.to_path_buf(),
            detail: format!("not an SGD schema: {e}"),
        })?;
    Ok(services
        .into_iter()
        .flat_map(|s| {
            let service = s.service_name;
            s.intents
                .into_iter()
                .map(move |i| ((service.clone(), i.name), i.is_transactional))
        })
        .collect())
}

/// A JSON error located by line and column, and by the dialogue it is in:
/// the last `"dialogue_id"` before the error (SGD writes it first in each
/// dialogue).
fn json_error(path: &Path, text: &str, error: &serde_json::Error) -> DataError {
    let offset: usize = text
        .split_inclusive('\n')
        .take(error.line().saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + error.column().saturating_sub(1);
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let dialogue = before.rfind("\"dialogue_id\"").and_then(|at| {
        let rest = before[at + "\"dialogue_id\"".len()..].trim_start();
        let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
        rest.split_once('"').map(|(id, _)| id.to_string())
    });
    let place = match dialogue {
        Some(id) => format!(" (in dialogue {id}, the last dialogue_id before that point)"),
        None => " (before the first dialogue_id)".to_string(),
    };
    DataError::Malformed {
        path: path.to_path_buf(),
        detail: format!("invalid SGD JSON: {error}{place}"),
    }
}

// ---------------------------------------------------------------------------
// One dialogue.

/// What one outcome-bearing system frame says about a goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    NotifySuccess,
    NotifyFailure,
    /// A back-end call (a search) and whether it returned anything.
    Results(bool),
}

#[derive(Debug)]
struct Goal {
    service: String,
    intent: String,
    events: Vec<Event>,
    /// The user's acts in the goal's last user turn (its chosen frame).
    last_user_acts: Vec<String>,
}

/// Success of one goal, and the rule that decided it (a `goal_outcomes` key).
///
/// - Transactional intents (schema.json `is_transactional`: reserve, buy,
///   transfer...): the system's last NOTIFY_SUCCESS or NOTIFY_FAILURE for the
///   goal decides, so a failure the system recovers from (another time
///   offered, accepted, booked) ends in success. No NOTIFY at all is a
///   failure: the transaction never happened, whether the user declined it
///   (NEGATE, NEGATE_INTENT) or left.
/// - Informational intents (find, search, get): they never reach a
///   transaction. The last back-end call for the goal decides: results given
///   is success; no results (SGD's NOTIFY_FAILURE for a search) is failure,
///   unless a later call found something. Declining a follow-up offer ("book
///   it?" "no") or "no, thank you" does not undo the information given. A goal
///   the system never answered with a call is a failure (abandoned).
/// - Intent NONE only (no task): null.
fn goal_outcome(goal: &Goal, transactional: Option<bool>) -> (Option<bool>, &'static str) {
    if goal.intent == NO_INTENT {
        return (None, "no_intent");
    }
    if transactional == Some(true) {
        let notified = goal
            .events
            .iter()
            .rev()
            .find(|e| matches!(e, Event::NotifySuccess | Event::NotifyFailure));
        return match notified {
            Some(Event::NotifySuccess) => (Some(true), "transaction_notify_success"),
            Some(_) => (Some(false), "transaction_notify_failure"),
            None if goal
                .last_user_acts
                .iter()
                .any(|a| a == "NEGATE" || a == "NEGATE_INTENT") =>
            {
                (Some(false), "transaction_declined_by_user")
            }
            None => (Some(false), "transaction_never_completed"),
        };
    }
    match goal.events.last() {
        Some(Event::NotifySuccess | Event::Results(true)) => (Some(true), "information_given"),
        Some(Event::NotifyFailure | Event::Results(false)) => (Some(false), "no_results"),
        None => (Some(false), "information_never_given"),
    }
}

#[derive(Debug, Default)]
struct DialogueStats {
    goal_outcomes: Vec<&'static str>,
    multi_frame_turns: usize,
    slot_spans: usize,
}

#[derive(Debug, Default)]
struct Converted {
    /// None when the dialogue has no user turn.
    dialogue: Option<ConvertedDialogue>,
    skipped: Counts,
    adjusted: Counts,
}

#[derive(Debug)]
struct ConvertedDialogue {
    turns: Vec<Turn>,
    annotations: Vec<Annotation>,
    stats: DialogueStats,
}

/// `Restaurants_1` -> `Restaurants`: the service without its version number.
pub fn service_domain(service: &str) -> &str {
    match service.rsplit_once('_') {
        Some((name, version))
            if !name.is_empty()
                && !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => service,
    }
}

/// A user frame's active intent (NONE where it has no state).
fn intent(frame: &RawFrame) -> &str {
    frame
        .state
        .as_ref()
        .map_or(NO_INTENT, |s| s.active_intent.as_str())
}

/// The frame whose intent the turn carries (see the module docs).
fn choose_frame(frames: &[RawFrame], previous: &HashMap<String, String>) -> usize {
    frames
        .iter()
        .position(|f| {
            intent(f) != NO_INTENT
                && previous.get(&f.service).map_or(NO_INTENT, String::as_str) != intent(f)
        })
        .or_else(|| frames.iter().position(|f| intent(f) != NO_INTENT))
        .unwrap_or(0)
}

/// One dialogue's rows; Err(detail) for input that breaks SGD's format.
fn convert(
    dialogue: &RawDialogue,
    transactional: &Transactional,
    domain_from_service: bool,
) -> Result<Converted, String> {
    let mut out = Converted::default();
    let pairs = pair_turns(speakers(dialogue)?, &mut out.skipped, &mut out.adjusted);
    if pairs.is_empty() {
        return Ok(out);
    }
    let mut stats = DialogueStats::default();
    let Goals { goals, of_pair } = track_goals(&pairs, transactional, &mut stats)?;
    let outcomes: Vec<(Option<bool>, &'static str)> = goals
        .iter()
        .map(|g| {
            let kind = transactional
                .get(&(g.service.clone(), g.intent.clone()))
                .copied();
            goal_outcome(g, kind)
        })
        .collect();
    stats.goal_outcomes = outcomes.iter().map(|(_, why)| *why).collect();

    let mut turns = Vec::with_capacity(pairs.len());
    let mut annotations = Vec::with_capacity(pairs.len());
    for (k, (pair, &(goal, frame))) in pairs.iter().zip(&of_pair).enumerate() {
        let (_, user) = pair.user;
        let response = pair
            .system
            .iter()
            .map(|(_, t)| t.utterance.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut turn = text_turn(&dialogue.dialogue_id, k, &user.utterance, &response);
        if domain_from_service {
            turn.domain = Some(service_domain(&frame.service).to_string());
        }
        let slots = slot_spans(user, &mut out);
        stats.slot_spans += slots.len();
        annotations.push(Annotation {
            dialogue_id: dialogue.dialogue_id.clone(),
            turn_index: k as i32,
            annotator_id: ANNOTATOR.to_string(),
            goal_id: Some(goal as i32),
            goal_success: outcomes[goal].0,
            intent: Some(intent(frame).to_string()),
            slots: Some(slots),
            failure_point: None,
            context: None,
        });
        turns.push(turn);
    }
    out.dialogue = Some(ConvertedDialogue {
        turns,
        annotations,
        stats,
    });
    Ok(out)
}

/// A turn and its index in the dialogue (error messages name it).
type IndexedTurn<'d> = (usize, &'d RawTurn);

/// Each turn's speaker, the turn and its index; Err(detail) for a speaker
/// other than USER or SYSTEM, or a user turn without a frame or a state.
fn speakers(dialogue: &RawDialogue) -> Result<Vec<(Speaker, IndexedTurn<'_>)>, String> {
    let mut speakers = Vec::with_capacity(dialogue.turns.len());
    for (i, turn) in dialogue.turns.iter().enumerate() {
        let speaker = match turn.speaker.as_str() {
            "USER" => Speaker::User,
            "SYSTEM" => Speaker::System,
            other => {
                return Err(format!(
                    "turn {i}: speaker {other:?}; expected USER or SYSTEM"
                ));
            }
        };
        if speaker == Speaker::User {
            if turn.frames.is_empty() {
                return Err(format!("turn {i} (USER): no frames"));
            }
            if let Some(frame) = turn.frames.iter().find(|f| f.state.is_none()) {
                return Err(format!(
                    "turn {i} (USER): the frame of service {} has no state",
                    frame.service
                ));
            }
        }
        speakers.push((speaker, (i, turn)));
    }
    Ok(speakers)
}

/// A dialogue's goals, with what the system said about each.
struct Goals<'d> {
    goals: Vec<Goal>,
    /// Per pair: its goal (an index into `goals`) and the frame its intent
    /// comes from.
    of_pair: Vec<(usize, &'d RawFrame)>,
}

/// Follows the user's goals through the pairs (see the module docs).
fn track_goals<'d>(
    pairs: &[Pair<IndexedTurn<'d>>],
    transactional: &Transactional,
    stats: &mut DialogueStats,
) -> Result<Goals<'d>, String> {
    let mut previous_intent: HashMap<String, String> = HashMap::new();
    let mut goals: Vec<Goal> = Vec::new();
    let mut of_pair = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (i, user) = pair.user;
        let frame = &user.frames[choose_frame(&user.frames, &previous_intent)];
        stats.multi_frame_turns += usize::from(user.frames.len() > 1);
        for f in &user.frames {
            previous_intent.insert(f.service.clone(), intent(f).to_string());
        }
        let intent = intent(frame);
        if intent != NO_INTENT
            && !transactional.contains_key(&(frame.service.clone(), intent.to_string()))
        {
            return Err(format!(
                "turn {i}: intent {intent} of service {} is not in schema.json",
                frame.service
            ));
        }
        let current = goal_of_turn(&mut goals, frame);
        of_pair.push((current, frame));
        record_events(&mut goals, current, &pair.system);
    }
    Ok(Goals { goals, of_pair })
}

/// The goal a user turn's chosen frame belongs to (an index into `goals`):
/// the current one, or a new one when the (service, intent) changed.
fn goal_of_turn(goals: &mut Vec<Goal>, frame: &RawFrame) -> usize {
    let intent = intent(frame);
    match goals.last_mut() {
        Some(goal)
            if intent == NO_INTENT || (goal.service == frame.service && goal.intent == intent) => {}
        // A dialogue that opens without a task adopts the first one.
        Some(goal) if goal.intent == NO_INTENT => {
            goal.service = frame.service.clone();
            goal.intent = intent.to_string();
        }
        _ => goals.push(Goal {
            service: frame.service.clone(),
            intent: intent.to_string(),
            events: Vec::new(),
            last_user_acts: Vec::new(),
        }),
    }
    let current = goals.len() - 1;
    goals[current].last_user_acts = frame.actions.iter().map(|a| a.act.clone()).collect();
    current
}

/// What the system's answer says about outcomes, on the goal each event
/// concerns: the goal whose intent a back-end call names, else the current.
fn record_events(goals: &mut [Goal], current: usize, system: &[IndexedTurn<'_>]) {
    for (_, turn) in system {
        for f in &turn.frames {
            let called = f.service_call.as_ref().and_then(|call| {
                goals
                    .iter()
                    .rposition(|g| g.service == f.service && g.intent == call.method)
            });
            let has = |act: &str| f.actions.iter().any(|a| a.act == act);
            let event = if has("NOTIFY_SUCCESS") {
                Event::NotifySuccess
            } else if has("NOTIFY_FAILURE") {
                Event::NotifyFailure
            } else if f.service_call.is_some() && called.is_some() {
                Event::Results(f.service_results.as_ref().is_some_and(|r| !r.is_empty()))
            } else {
                continue;
            };
            goals[called.unwrap_or(current)].events.push(event);
        }
    }
}

/// The slot spans of every frame of a user turn, in byte offsets, sorted and
/// without repeats; spans out of range are dropped and counted.
fn slot_spans(user: &RawTurn, out: &mut Converted) -> Vec<SlotSpan> {
    let mut slots: Vec<SlotSpan> = Vec::new();
    for slot in user.frames.iter().flat_map(|f| &f.slots) {
        match char_span_to_bytes(&user.utterance, slot.start, slot.exclusive_end) {
            Some((start, end)) => slots.push(SlotSpan {
                slot: slot.slot.clone(),
                start,
                end,
            }),
            None => *out.skipped.entry("slot_spans_out_of_range").or_default() += 1,
        }
    }
    slots.sort_by_key(|s| (s.start, s.end, s.slot.clone()));
    let before = slots.len();
    slots.dedup();
    if slots.len() < before {
        *out.adjusted
            .entry("duplicate_slot_spans_merged")
            .or_default() += before - slots.len();
    }
    slots
}

// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    files: usize,
    dialogues: usize,
    goals: usize,
    successes: usize,
    goal_outcomes: BTreeMap<&'static str, usize>,
    intents: BTreeMap<String, usize>,
    multi_frame_turns: usize,
    slot_spans: usize,
    skipped: Counts,
    adjusted: Counts,
    turns_path: String,
    annotations_path: String,
}

impl Tally {
    fn add(&mut self, annotations: &[Annotation], stats: &DialogueStats) {
        self.dialogues += 1;
        self.multi_frame_turns += stats.multi_frame_turns;
        self.slot_spans += stats.slot_spans;
        for why in &stats.goal_outcomes {
            *self.goal_outcomes.entry(why).or_default() += 1;
        }
        let mut goals_seen = HashSet::new();
        for a in annotations {
            if let Some(intent) = &a.intent {
                *self.intents.entry(intent.clone()).or_default() += 1;
            }
            if let Some(goal) = a.goal_id
                && goals_seen.insert(goal)
            {
                self.goals += 1;
                self.successes += usize::from(a.goal_success == Some(true));
            }
        }
    }

    fn merge_skips(&mut self, skipped: Counts, adjusted: Counts) {
        for (why, n) in skipped {
            *self.skipped.entry(why).or_default() += n;
        }
        for (why, n) in adjusted {
            *self.adjusted.entry(why).or_default() += n;
        }
    }

    fn summary(
        self,
        config: &SgdConfig,
        turns: usize,
        annotations: usize,
        seconds: f64,
    ) -> SgdSummary {
        let decided = self.goals - self.goal_outcomes.get("no_intent").copied().unwrap_or(0);
        SgdSummary {
            corpus: "sgd",
            input: config.input.display().to_string(),
            files: self.files,
            dialogues: self.dialogues,
            turns,
            annotations,
            goals: self.goals,
            goal_success_rate: if decided == 0 {
                0.0
            } else {
                self.successes as f64 / decided as f64
            },
            goal_outcomes: self.goal_outcomes,
            turns_per_intent: self.intents,
            multi_frame_turns: self.multi_frame_turns,
            slot_spans: self.slot_spans,
            domain_from_service: config.domain_from_service,
            skipped: self.skipped,
            adjusted: self.adjusted,
            turns_path: self.turns_path,
            annotations_path: self.annotations_path,
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/sgd/dialogues_001.json");
    const SCHEMA: &str = include_str!("../../../tests/fixtures/sgd/schema.json");

    fn schema() -> Transactional {
        let services: Vec<RawService> = serde_json::from_str(SCHEMA).unwrap();
        services
            .into_iter()
            .flat_map(|s| {
                let service = s.service_name;
                s.intents
                    .into_iter()
                    .map(move |i| ((service.clone(), i.name), i.is_transactional))
            })
            .collect()
    }

    fn fixture(id: &str) -> RawDialogue {
        let dialogues: Vec<RawDialogue> = serde_json::from_str(FIXTURE).unwrap();
        dialogues.into_iter().find(|d| d.dialogue_id == id).unwrap()
    }

    fn convert_ok(dialogue: &RawDialogue, domain: bool) -> (ConvertedDialogue, Counts, Counts) {
        let c = convert(dialogue, &schema(), domain).unwrap();
        (c.dialogue.unwrap(), c.skipped, c.adjusted)
    }

    #[test]
    fn search_then_booking_is_two_goals_and_a_recovered_failure_succeeds() {
        let (d, skipped, adjusted) = convert_ok(&fixture("1_00000"), false);
        assert!(skipped.is_empty() && adjusted.is_empty());
        let goals: Vec<_> = d.annotations.iter().map(|a| a.goal_id.unwrap()).collect();
        assert_eq!(goals, [0, 0, 1, 1, 1, 1]);
        let intents: Vec<_> = d
            .annotations
            .iter()
            .map(|a| a.intent.clone().unwrap())
            .collect();
        assert_eq!(
            intents,
            [
                "FindRestaurants",
                "FindRestaurants",
                "ReserveRestaurant",
                "ReserveRestaurant",
                "ReserveRestaurant",
                "NONE"
            ]
        );
        assert!(d.annotations.iter().all(|a| a.goal_success == Some(true)));
        assert_eq!(
            d.stats.goal_outcomes,
            ["information_given", "transaction_notify_success"]
        );
        // NOTIFY_FAILURE, then another time offered and booked: success.
        assert!(d.turns[3].system_response.starts_with("Sorry, that failed"));
        assert!(
            d.annotations
                .iter()
                .all(|a| a.annotator_id == ANNOTATOR && a.failure_point.is_none())
        );
        // Nothing that would give the answer away, nothing a runtime would log.
        for t in &d.turns {
            assert_eq!(t.domain, None);
            assert_eq!(t.nlu_intent, None);
            assert_eq!(t.asr_confidence, None);
            assert_eq!(t.device_type, None);
            assert_eq!(t.barge_in, None);
            assert_eq!(t.explicit_feedback, Some(0));
        }
    }

    #[test]
    fn slot_offsets_become_bytes() {
        let (d, _, _) = convert_ok(&fixture("1_00000"), false);
        let text = |k: usize, s: &SlotSpan| {
            d.turns[k].user_utterance[s.start as usize..s.end as usize].to_string()
        };
        let first = d.annotations[0].slots.as_ref().unwrap();
        let got: Vec<_> = first
            .iter()
            .map(|s| (s.slot.as_str(), text(0, s)))
            .collect();
        assert_eq!(
            got,
            [("cuisine", "Mexican".into()), ("city", "San José".into())]
        );
        // "Café" before the time: character 30 is byte 31.
        let third = d.annotations[2].slots.as_ref().unwrap();
        assert_eq!((third[1].start, third[1].end), (31, 35));
        assert_eq!(text(2, &third[1]), "7 pm");
        assert_eq!(d.annotations[1].slots, Some(vec![]));
    }

    #[test]
    fn a_new_service_in_a_second_frame_starts_a_goal() {
        let (d, _, _) = convert_ok(&fixture("1_00001"), true);
        let goals: Vec<_> = d.annotations.iter().map(|a| a.goal_id.unwrap()).collect();
        assert_eq!(goals, [0, 1, 1]);
        assert_eq!(d.annotations[1].intent.as_deref(), Some("GetRide"));
        assert_eq!(d.stats.multi_frame_turns, 1);
        // A search with no results fails; a ride the user declines fails.
        assert_eq!(
            d.stats.goal_outcomes,
            ["no_results", "transaction_declined_by_user"]
        );
        assert!(d.annotations.iter().all(|a| a.goal_success == Some(false)));
        let domains: Vec<_> = d.turns.iter().map(|t| t.domain.clone().unwrap()).collect();
        assert_eq!(domains, ["Movies", "RideSharing", "RideSharing"]);
    }

    #[test]
    fn frame_choice_prefers_the_intent_that_changed() {
        let frames: Vec<RawFrame> = serde_json::from_str(
            r#"[{"service": "A_1", "state": {"active_intent": "FindA"}},
                {"service": "B_1", "state": {"active_intent": "FindB"}}]"#,
        )
        .unwrap();
        let mut previous = HashMap::new();
        assert_eq!(choose_frame(&frames, &previous), 0);
        previous.insert("A_1".to_string(), "FindA".to_string());
        assert_eq!(choose_frame(&frames, &previous), 1);
        previous.insert("B_1".to_string(), "FindB".to_string());
        assert_eq!(
            choose_frame(&frames, &previous),
            0,
            "nothing changed: first with an intent"
        );
    }

    #[test]
    fn informational_and_transactional_outcomes() {
        let goal = |intent: &str, events: Vec<Event>, acts: &[&str]| Goal {
            service: "S_1".into(),
            intent: intent.into(),
            events,
            last_user_acts: acts.iter().map(|a| a.to_string()).collect(),
        };
        use Event::*;
        let cases = [
            (
                goal("Find", vec![Results(false), Results(true)], &[]),
                false,
                Some(true),
            ),
            (
                goal("Find", vec![Results(true), NotifyFailure], &[]),
                false,
                Some(false),
            ),
            (goal("Find", vec![], &["REQUEST_ALTS"]), false, Some(false)),
            (
                goal("Find", vec![Results(true)], &["NEGATE_INTENT"]),
                false,
                Some(true),
            ),
            (
                goal("Book", vec![NotifySuccess, Results(false)], &[]),
                true,
                Some(true),
            ),
            (
                goal("Book", vec![NotifySuccess, NotifyFailure], &[]),
                true,
                Some(false),
            ),
            (goal("Book", vec![], &["INFORM"]), true, Some(false)),
            (goal("NONE", vec![NotifySuccess], &[]), true, None),
        ];
        for (goal, transactional, expected) in cases {
            assert_eq!(
                goal_outcome(&goal, Some(transactional)).0,
                expected,
                "{goal:?}"
            );
        }
    }

    #[test]
    fn format_errors_name_the_turn() {
        let mut d = fixture("1_00000");
        d.turns[2].speaker = "ASSISTANT".into();
        let e = convert(&d, &schema(), false).unwrap_err();
        assert!(e.contains("turn 2") && e.contains("ASSISTANT"), "{e}");
        let mut d = fixture("1_00000");
        d.turns[4].frames[0].state.as_mut().unwrap().active_intent = "FlyToMars".into();
        let e = convert(&d, &schema(), false).unwrap_err();
        assert!(e.contains("FlyToMars") && e.contains("schema.json"), "{e}");
        let mut d = fixture("1_00000");
        d.turns[0].frames[0].state = None;
        assert!(
            convert(&d, &schema(), false)
                .unwrap_err()
                .contains("no state")
        );
    }

    #[test]
    fn system_only_dialogue_is_skipped() {
        let mut d = fixture("1_00000");
        d.turns.retain(|t| t.speaker == "SYSTEM");
        let c = convert(&d, &schema(), false).unwrap();
        assert!(c.dialogue.is_none());
        assert_eq!(c.skipped["system_turns_before_first_user_turn"], 6);
    }

    #[test]
    fn json_errors_name_the_dialogue() {
        let broken = FIXTURE.replacen("\"speaker\": \"SYSTEM\"", "\"speaker\": SYSTEM", 1);
        let e = serde_json::from_str::<Vec<RawDialogue>>(&broken).unwrap_err();
        let message = json_error(Path::new("d.json"), &broken, &e).to_string();
        assert!(
            message.contains("d.json") && message.contains("dialogue 1_00000"),
            "{message}"
        );
        let later = FIXTURE.replace(
            "\"utterance\": \"Find me a movie in Dublin.\"",
            "\"utterance\": 7",
        );
        let e = serde_json::from_str::<Vec<RawDialogue>>(&later).unwrap_err();
        let message = json_error(Path::new("d.json"), &later, &e).to_string();
        assert!(
            message.contains("dialogue 1_00001") && message.contains("line"),
            "{message}"
        );
    }

    #[test]
    fn domains_drop_the_service_version() {
        assert_eq!(service_domain("Restaurants_1"), "Restaurants");
        assert_eq!(service_domain("Rental_Cars_12"), "Rental_Cars");
        assert_eq!(service_domain("Weather"), "Weather");
        assert_eq!(service_domain("Media_x"), "Media_x");
    }
}
