//! One simulated dialogue: goals, the user's turns, the assistant's runtime
//! (wake word -> ASR -> NLU -> entity resolution -> result), the errors it
//! makes, and how the user reacts to them.
//!
//! The failure point of a turn is the FIRST stage that failed irrecoverably:
//! a garbled entity that entity resolution still matches is "correct"; a
//! garbled verb that sends NLU to the wrong intent is "asr", although NLU
//! failed too.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::catalog::{self, INTENTS, IntentSpec};
use super::scripts::{
    FOLLOW_UPS, FRESH_GOALS, GoalKind, Invitation, Preset, Reply, Script, StepSpec,
};
use super::utterance::{Piece, SlotValues, Utterance, fill_response, random_value};
use crate::data::tables::{FailurePoint, SlotSpan, Turn};

/// How often each runtime stage fails on a user request (before recovery).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ErrorRates {
    /// Share of goals that are a false wake (the device woke unaddressed).
    pub false_wake: f64,
    pub asr: f64,
    pub nlu: f64,
    pub entity: f64,
    pub result: f64,
}

impl Default for ErrorRates {
    fn default() -> Self {
        ErrorRates {
            false_wake: 0.05,
            asr: 0.10,
            nlu: 0.07,
            entity: 0.06,
            result: 0.05,
        }
    }
}

/// Why a turn cannot be understood without its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextReason {
    /// "what about tomorrow?"
    Ellipsis,
    /// "in the kitchen" after "which room?"
    SlotFill,
    /// "the second one"
    Selection,
    /// "yes"
    Confirmation,
    /// "no, I said anna"
    Correction,
    /// "play hunger games": a film on a screen, an audiobook on a speaker
    DeviceType,
    /// "what's the temperature" with the oven on; "turn it up" with music playing
    DeviceState,
}

impl ContextReason {
    pub const ALL: [ContextReason; 7] = [
        ContextReason::Ellipsis,
        ContextReason::SlotFill,
        ContextReason::Selection,
        ContextReason::Confirmation,
        ContextReason::Correction,
        ContextReason::DeviceType,
        ContextReason::DeviceState,
    ];

    /// The name written to the annotations' `context` column and used as the
    /// key of the simulate summary's `context_turns` (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            ContextReason::Ellipsis => "ellipsis",
            ContextReason::SlotFill => "slot_fill",
            ContextReason::Selection => "selection",
            ContextReason::Confirmation => "confirmation",
            ContextReason::Correction => "correction",
            ContextReason::DeviceType => "device_type",
            ContextReason::DeviceState => "device_state",
        }
    }
}

/// The simulator's ground truth for one turn.
#[derive(Debug, Clone)]
pub struct TurnTruth {
    pub goal: i32,
    pub intent: &'static str,
    pub slots: Vec<SlotSpan>,
    pub failure_point: FailurePoint,
    pub context: Option<ContextReason>,
    /// The ASR changed words but nothing failed because of it.
    pub recovered_error: bool,
    /// What the user actually said, before ASR.
    pub said: String,
}

#[derive(Debug, Clone)]
pub struct SimDialogue {
    pub turns: Vec<Turn>,
    pub truth: Vec<TurnTruth>,
    /// Per goal, in order.
    pub goal_success: Vec<bool>,
}

/// A goal planned from its script: the steps to play and the slot values
/// every rephrase reuses.
struct Goal {
    /// Its position in the dialogue.
    index: i32,
    kind: GoalKind,
    steps: &'static [StepSpec],
    values: SlotValues,
}

impl Goal {
    fn false_wake(&self) -> bool {
        self.kind == GoalKind::FalseWake
    }

    /// A request the assistant cannot serve: it fails without a defect.
    fn out_of_scope(&self) -> bool {
        self.kind == GoalKind::OutOfScope
    }
}

/// One user turn: the words, and why they need context (if they do).
struct UserTurn {
    utterance: Utterance,
    context: Option<ContextReason>,
}

/// How the user reacts to a failed turn.
#[derive(Clone, Copy)]
enum Reaction {
    Retry,
    Stop,
    GiveUp,
}

/// Words the ASR plausibly mishears, and what it hears instead.
const ASR_CONFUSIONS: &[(&str, &str)] = &[
    ("play", "pay"),
    ("call", "cool"),
    ("turn", "learn"),
    ("on", "in"),
    ("off", "of"),
    ("timer", "time"),
    ("weather", "whether"),
    ("set", "sit"),
    ("add", "at"),
    ("read", "red"),
    ("find", "fine"),
    ("book", "look"),
    ("watch", "wash"),
    ("text", "next"),
    ("stop", "top"),
    ("remove", "move"),
    ("alarm", "a lot"),
    ("wake", "make"),
    ("show", "so"),
    ("tell", "tall"),
    ("lights", "likes"),
    ("kitchen", "chicken"),
    ("rain", "train"),
    ("list", "last"),
    ("dial", "dinal"),
    ("phone", "fun"),
    ("resume", "assume"),
];
/// How users open a correction of the entity the assistant got wrong ("no i
/// said anna"): the few phrasings train's rephrase rule lists
/// (data::feedback) and the many it does not.
pub const CORRECTION_LEADS: &[&str] = &[
    "no i said",
    "i said",
    "i meant",
    "no no",
    "no",
    "nope",
    "wrong",
    "not that",
    "that's wrong i want",
    "that's not what i asked for i want",
    "you misheard me i said",
    "sorry i meant",
    "actually",
    "no i wanted",
    "i was asking for",
    "i asked for",
    "what i want is",
    "i didn't say that i said",
    "no that's not it",
    "ugh i said",
];
/// Standard deviation of every audio_embedding dimension around its class mean.
pub const AUDIO_NOISE_SD: f32 = 0.6;
/// d' of the device-directedness dimension (0) between false wakes and
/// other turns: weak evidence, as from a real directedness model on
/// far-field audio (it was 3.3, which made false wakes nearly free).
pub const FALSE_WAKE_SEPARATION: f32 = 0.8;
/// d' of the background-noise dimension (1) between ASR failures and other turns.
pub const ASR_NOISE_SEPARATION: f32 = 0.5;
/// Words whose loss changes nothing: the keynote's "ASR drops 'the'" case.
const DROPPABLE: &[&str] = &["the", "a", "my", "please", "some", "to", "for"];

pub struct Simulator<'a> {
    pub rng: ChaCha8Rng,
    pub rates: &'a ErrorRates,
    pub audio_dim: usize,
}

/// Per-dialogue state the runtime and the user share.
struct Session {
    device_type: &'static str,
    device_state: &'static str,
    last_goal_kind: Option<GoalKind>,
    last_goal_success: bool,
}

/// The dialogue being written: its id, its clock, and its turns so far.
struct Transcript<'d> {
    dialogue_id: &'d str,
    clock_us: i64,
    dialogue: SimDialogue,
}

/// What the runtime did with one user turn.
struct RuntimeOutcome {
    asr_text: Utterance,
    asr_confidence: f32,
    nlu_intent: &'static str,
    nlu_confidence: f32,
    response: String,
    status: &'static str,
    failure: FailurePoint,
    recovered: bool,
    /// Entity error (or ASR-garbled entity) the user may correct.
    wrong_entity: Option<&'static str>,
}

/// What the runtime has made of a user turn so far, stage by stage.
struct Understanding {
    heard: Utterance,
    asr_confidence: f32,
    nlu_intent: &'static str,
    /// The first stage that failed irrecoverably (Correct until one does).
    failure: FailurePoint,
    recovered: bool,
    /// The slot values the runtime acts on.
    resolved: SlotValues,
    wrong_entity: Option<&'static str>,
    /// A value entity resolution could not match, named in the apology.
    not_found: Option<String>,
}

impl Simulator<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *items.choose(&mut self.rng).expect("choices are not empty")
    }

    fn pick_weighted<T: Copy>(&mut self, items: &[(T, f64)]) -> T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.random::<f64>() * total;
        for (item, w) in items {
            if r < *w {
                return *item;
            }
            r -= w;
        }
        items.last().expect("choices are not empty").0
    }

    /// A clipped normal-ish confidence: sum of uniforms, cheap and bounded.
    fn confidence(&mut self, mean: f64, spread: f64) -> f32 {
        let u: f64 = (0..3).map(|_| self.rng.random::<f64>()).sum::<f64>() / 3.0 - 0.5;
        let value = (mean + u * spread * 3.4).clamp(0.02, 0.999);
        ((value * 1000.0).round() / 1000.0) as f32
    }

    pub fn dialogue(&mut self, dialogue_id: &str, start_us: i64) -> SimDialogue {
        let mut session = self.new_session();
        let goals = self.pick_weighted(&[(1, 0.35), (2, 0.35), (3, 0.2), (4, 0.1)]);
        let mut log = Transcript {
            dialogue_id,
            clock_us: start_us,
            dialogue: SimDialogue {
                turns: Vec::new(),
                truth: Vec::new(),
                goal_success: Vec::new(),
            },
        };
        for goal_index in 0..goals {
            let goal = self.plan_goal(&session, goal_index);
            let success = self.play_goal(goal, &mut session, &mut log);
            log.dialogue.goal_success.push(success);
        }
        log.dialogue
    }

    /// The device the dialogue happens on, and what it is doing at the start.
    fn new_session(&mut self) -> Session {
        let device_type = self.pick_weighted(&[
            ("speaker", 0.45),
            ("screen", 0.30),
            ("tv", 0.10),
            ("car", 0.15),
        ]);
        let mut initial = vec![
            ("idle", 0.6),
            ("music_playing", 0.12),
            ("audiobook_playing", 0.05),
            ("oven_on", 0.08),
            ("timer_running", 0.10),
        ];
        if has_screen(device_type) {
            initial.push(("video_playing", 0.05));
        }
        if device_type == "car" {
            initial.retain(|(s, _)| !matches!(*s, "oven_on"));
        }
        Session {
            device_type,
            device_state: self.pick_weighted(&initial),
            last_goal_kind: None,
            last_goal_success: false,
        }
    }

    /// Chooses the next goal, favouring follow-ups the current context
    /// invites, and walks its script down to steps.
    fn plan_goal(&mut self, session: &Session, index: i32) -> Goal {
        let kind = match self.follow_up(session) {
            Some(kind) => kind,
            None => self.fresh_goal(),
        };
        let mut values = SlotValues::new();
        let steps = self.unfold(kind.script(), session, &mut values);
        Goal {
            index,
            kind,
            steps,
            values,
        }
    }

    /// The first follow-up the context invites whose chance comes up.
    fn follow_up(&mut self, session: &Session) -> Option<GoalKind> {
        for &(invitation, p, kind) in FOLLOW_UPS {
            let invited = match invitation {
                Invitation::Succeeded(last) => {
                    session.last_goal_kind == Some(last) && session.last_goal_success
                }
                Invitation::DeviceState(state) => session.device_state == state,
            };
            if invited && self.chance(p) {
                return Some(kind);
            }
        }
        None
    }

    /// A goal out of the blue; false wakes weighted by the requested rate.
    fn fresh_goal(&mut self) -> GoalKind {
        let false_wake = self.rates.false_wake;
        let mut weights = vec![(
            GoalKind::FalseWake,
            false_wake * 100.0 / (1.0 - false_wake).max(0.01),
        )];
        weights.extend_from_slice(FRESH_GOALS);
        self.pick_weighted(&weights)
    }

    /// Walks a script down to its steps, drawing its choices and presetting
    /// slot values on the way.
    fn unfold(
        &mut self,
        script: &'static Script,
        session: &Session,
        values: &mut SlotValues,
    ) -> &'static [StepSpec] {
        let next: &'static Script = match script {
            Script::Steps(steps) => return steps,
            Script::OneOf(scripts) => match scripts.choose(&mut self.rng) {
                Some(next) => next,
                None => return &[],
            },
            Script::Chance(p, likely, otherwise) => {
                if self.chance(*p) {
                    likely
                } else {
                    otherwise
                }
            }
            Script::Preset { slot, value, then } => {
                let value = match value {
                    Preset::Degrees { low, high, step } => {
                        format!("{} degrees", step * self.rng.random_range(*low..=*high))
                    }
                    Preset::OneOf(choices) => self.pick(choices).to_string(),
                };
                values.insert(*slot, value);
                then
            }
            Script::ByScreen(screen, elsewhere) => {
                if has_screen(session.device_type) {
                    screen
                } else {
                    elsewhere
                }
            }
        };
        self.unfold(next, session, values)
    }

    /// Plays a goal's steps, with errors and the user's reactions; returns success.
    fn play_goal(&mut self, mut goal: Goal, session: &mut Session, log: &mut Transcript) -> bool {
        let first_turn = log.dialogue.turns.len();
        let mut success = true;
        for step in goal.steps {
            if !self.play_step(step, &mut goal, session, log) {
                success = false;
                break;
            }
        }
        self.explicit_feedback(&mut log.dialogue.turns[first_turn..], success);
        session.last_goal_kind = Some(goal.kind);
        session.last_goal_success = success;
        success
    }

    /// Plays one step until it succeeds; false when the goal ends there
    /// unmet (a false wake, a request out of scope, a user who stops or gives
    /// up).
    fn play_step(
        &mut self,
        step: &StepSpec,
        goal: &mut Goal,
        session: &mut Session,
        log: &mut Transcript,
    ) -> bool {
        let mut attempt = 0;
        let mut correction: Option<&'static str> = None;
        loop {
            attempt += 1;
            let said = self.user_turn(step, correction.take(), &mut goal.values);
            let outcome = self.runtime(step, &said.utterance, goal);
            self.record_turn(step, goal, session, log, &said, &outcome);
            if goal.out_of_scope() || goal.false_wake() {
                // Nothing to try again; some users tell the device to stop.
                let p = if goal.out_of_scope() { 0.3 } else { 0.35 };
                if self.chance(p) {
                    self.stop_turn(session, log, goal.index);
                }
                return false;
            }
            if outcome.failure == FailurePoint::Correct {
                return true;
            }
            match self.reaction(attempt) {
                Reaction::Retry => {
                    if let Some(slot) = outcome.wrong_entity
                        && self.chance(0.5)
                    {
                        correction = Some(slot);
                    }
                }
                Reaction::Stop => {
                    self.stop_turn(session, log, goal.index);
                    return false;
                }
                Reaction::GiveUp => return false,
            }
        }
    }

    /// What the user says: the step's words, or a correction of the entity
    /// the assistant got wrong.
    fn user_turn(
        &mut self,
        step: &StepSpec,
        correction: Option<&'static str>,
        values: &mut SlotValues,
    ) -> UserTurn {
        match correction {
            Some(slot) => UserTurn {
                utterance: self.correction(slot, values),
                context: Some(ContextReason::Correction),
            },
            None => {
                let template = self.pick(step.templates());
                UserTurn {
                    utterance: Utterance::from_template(template, values, &mut self.rng),
                    context: step.context,
                }
            }
        }
    }

    /// Logs a played turn and its truth, and moves the device on if the
    /// action succeeded.
    fn record_turn(
        &mut self,
        step: &StepSpec,
        goal: &Goal,
        session: &mut Session,
        log: &mut Transcript,
        said: &UserTurn,
        outcome: &RuntimeOutcome,
    ) {
        let failed = outcome.failure != FailurePoint::Correct;
        let barge_in = self.chance(if failed { 0.35 } else { 0.03 });
        let state_before = session.device_state;
        if !failed && matches!(step.reply, Reply::Done) && !goal.out_of_scope() {
            session.device_state = state_after(step.intent, state_before, Some(goal.kind));
        }
        let (text, slots) = outcome.asr_text.render();
        self.push_turn(
            log,
            session.device_type,
            state_before,
            outcome,
            &text,
            barge_in,
        );
        // A false wake asked for nothing: no intent of its own, no slots.
        let false_wake = goal.false_wake();
        log.dialogue.truth.push(TurnTruth {
            goal: goal.index,
            intent: if false_wake {
                "NotDeviceDirected"
            } else {
                step.intent
            },
            slots: if false_wake { Vec::new() } else { slots },
            failure_point: outcome.failure,
            context: said.context,
            recovered_error: outcome.recovered,
            said: said.utterance.render().0,
        });
    }

    /// The user's reaction to a failure: try again, say stop, or give up (by
    /// the third attempt, always).
    fn reaction(&mut self, attempt: u32) -> Reaction {
        if attempt >= 3 {
            Reaction::GiveUp
        } else {
            self.pick_weighted(&[
                (Reaction::Retry, 0.45),
                (Reaction::Stop, 0.2),
                (Reaction::GiveUp, 0.35),
            ])
        }
    }

    /// Occasional explicit feedback on a goal's last turn, sometimes misclicked.
    fn explicit_feedback(&mut self, goal_turns: &mut [Turn], success: bool) {
        if let Some(last) = goal_turns.last_mut()
            && self.chance(0.12)
        {
            let honest = if success { 1 } else { -1 };
            let value = if self.chance(0.05) { -honest } else { honest };
            last.explicit_feedback = Some(value);
        }
    }

    fn correction(&mut self, slot: &'static str, values: &SlotValues) -> Utterance {
        let mut u = Utterance::default();
        let lead = self.pick(CORRECTION_LEADS);
        u.pieces.extend(lead.split(' ').map(|w| Piece {
            text: w.to_string(),
            slot: None,
        }));
        u.pieces.push(Piece {
            text: values.get(slot).cloned().unwrap_or_default(),
            slot: Some(slot),
        });
        u
    }

    fn stop_turn(&mut self, session: &mut Session, log: &mut Transcript, goal: i32) {
        let text = self.pick(catalog::intent("Stop").templates);
        let outcome = RuntimeOutcome {
            asr_text: Utterance {
                pieces: vec![Piece {
                    text: text.to_string(),
                    slot: None,
                }],
            },
            asr_confidence: self.confidence(0.9, 0.05),
            nlu_intent: "Stop",
            nlu_confidence: self.confidence(0.93, 0.04),
            response: String::new(),
            status: "completed",
            failure: FailurePoint::Correct,
            recovered: false,
            wrong_entity: None,
        };
        let state = session.device_state;
        session.device_state = state_after("Stop", state, None);
        self.push_turn(log, session.device_type, state, &outcome, text, false);
        log.dialogue.truth.push(TurnTruth {
            goal,
            intent: "Stop",
            slots: Vec::new(),
            failure_point: FailurePoint::Correct,
            context: None,
            recovered_error: false,
            said: text.to_string(),
        });
    }

    fn push_turn(
        &mut self,
        log: &mut Transcript,
        device_type: &'static str,
        device_state: &'static str,
        outcome: &RuntimeOutcome,
        text: &str,
        barge_in: bool,
    ) {
        let audio_embedding = (self.audio_dim > 0).then(|| self.audio_features(outcome.failure));
        let turns = &mut log.dialogue.turns;
        turns.push(Turn {
            dialogue_id: log.dialogue_id.to_string(),
            turn_index: turns.len() as i32,
            timestamp_us: Some(log.clock_us),
            user_utterance: text.to_string(),
            system_response: outcome.response.clone(),
            device_type: Some(device_type.to_string()),
            device_state: Some(device_state.to_string()),
            domain: Some(catalog::intent(outcome.nlu_intent).domain.to_string()),
            nlu_intent: Some(outcome.nlu_intent.to_string()),
            dialogue_status: Some(outcome.status.to_string()),
            asr_confidence: Some(outcome.asr_confidence),
            nlu_confidence: Some(outcome.nlu_confidence),
            barge_in: Some(barge_in),
            explicit_feedback: Some(0),
            audio_embedding,
        });
        log.clock_us += self.rng.random_range(3_000_000..20_000_000);
    }

    /// Acoustic features computed upstream: device-directedness (lower for
    /// false wakes), background noise (higher where ASR failed), and
    /// dimensions that carry no signal, as real embeddings mostly do. Both
    /// signals are weak evidence: every dimension has noise of standard
    /// deviation AUDIO_NOISE_SD, and the class means differ by
    /// FALSE_WAKE_SEPARATION and ASR_NOISE_SEPARATION of it (d').
    fn audio_features(&mut self, failure: FailurePoint) -> Vec<f32> {
        // Three uniforms on [-0.5, 0.5) summed have variance 1/4: scaled by
        // 2 * AUDIO_NOISE_SD, a bell of that standard deviation.
        let mut noise = || {
            (self.rng.random::<f32>() + self.rng.random::<f32>() + self.rng.random::<f32>() - 1.5)
                * (2.0 * AUDIO_NOISE_SD)
        };
        let half_gap = FALSE_WAKE_SEPARATION * AUDIO_NOISE_SD / 2.0;
        let directed = if failure == FailurePoint::FalseWake {
            -half_gap
        } else {
            half_gap
        };
        let loud = if failure == FailurePoint::Asr {
            ASR_NOISE_SEPARATION * AUDIO_NOISE_SD
        } else {
            0.0
        };
        let mut features = vec![directed + noise(), loud + noise()];
        while features.len() < self.audio_dim {
            features.push(noise());
        }
        features.truncate(self.audio_dim);
        features
            .iter()
            .map(|v| (v * 1000.0).round() / 1000.0)
            .collect()
    }

    /// The assistant's pipeline on one user turn, with errors injected stage
    /// by stage; the first irrecoverable one is the turn's failure point.
    fn runtime(
        &mut self,
        step: &StepSpec,
        utterance: &Utterance,
        goal: &mut Goal,
    ) -> RuntimeOutcome {
        if goal.false_wake() {
            return self.false_wake(utterance);
        }
        let spec = catalog::intent(step.intent);
        let mut turn = self.asr(step, spec, utterance, &goal.values);
        let nlu_confidence = self.nlu(&mut turn, step, spec);
        self.entity_resolution(&mut turn, &goal.values);
        let service_error = self.result_error(&mut turn, goal.out_of_scope());
        if step.intent == "FindRestaurant" {
            self.offer_restaurants(&mut turn.resolved, &mut goal.values);
        }
        let (response, status) =
            self.response(step, spec, &turn, service_error, goal.out_of_scope());
        RuntimeOutcome {
            asr_text: turn.heard,
            asr_confidence: turn.asr_confidence,
            nlu_intent: turn.nlu_intent,
            nlu_confidence,
            response,
            status,
            failure: turn.failure,
            recovered: turn.recovered,
            wrong_entity: turn.wrong_entity,
        }
    }

    /// ASR: a harmless drop of a small word, or a real misrecognition.
    fn asr(
        &mut self,
        step: &StepSpec,
        spec: &IntentSpec,
        utterance: &Utterance,
        values: &SlotValues,
    ) -> Understanding {
        let mut turn = Understanding {
            heard: utterance.clone(),
            asr_confidence: self.confidence(0.91, 0.05),
            nlu_intent: step.intent,
            failure: FailurePoint::Correct,
            recovered: false,
            resolved: values.clone(),
            wrong_entity: None,
            not_found: None,
        };
        if self.chance(0.08)
            && let Some(i) = turn
                .heard
                .pieces
                .iter()
                .position(|p| p.slot.is_none() && DROPPABLE.contains(&p.text.as_str()))
        {
            turn.heard.pieces.remove(i);
            turn.recovered = true;
            turn.asr_confidence = self.confidence(0.8, 0.08);
        }
        if self.chance(self.rates.asr) {
            turn.asr_confidence = self.confidence(0.62, 0.13);
            let slot_pieces: Vec<(usize, &'static str)> = turn
                .heard
                .pieces
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((i, p.slot?)))
                .collect();
            if !slot_pieces.is_empty() && self.chance(0.6) {
                let (i, slot) = self.pick(&slot_pieces);
                self.garble_entity(&mut turn, i, slot);
            } else {
                self.mishear_carrier(&mut turn, spec);
            }
        }
        turn
    }

    /// A garbled entity: entity resolution may still match it.
    fn garble_entity(&mut self, turn: &mut Understanding, piece: usize, slot: &'static str) {
        let original = turn.heard.pieces[piece].text.clone();
        if self.chance(0.5) {
            // Another real value: it resolves, to the wrong entity.
            let other = random_value(slot, &mut self.rng);
            turn.heard.pieces[piece].text = other.clone();
            if other != original {
                turn.failure = FailurePoint::Asr;
                turn.resolved.insert(slot, other);
                turn.wrong_entity = Some(slot);
            }
        } else {
            let garbled = self.mishear(&original);
            turn.heard.pieces[piece].text = garbled.clone();
            if self.chance(0.45) {
                turn.recovered = true;
            } else {
                turn.failure = FailurePoint::Asr;
                turn.not_found = Some(garbled);
                turn.wrong_entity = Some(slot);
            }
        }
    }

    /// A misheard carrier word: NLU may still get the intent.
    fn mishear_carrier(&mut self, turn: &mut Understanding, spec: &IntentSpec) {
        let carriers: Vec<usize> = turn
            .heard
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| p.slot.is_none())
            .map(|(i, _)| i)
            .collect();
        let Some(&i) = carriers.choose(&mut self.rng) else {
            return;
        };
        let word = turn.heard.pieces[i].text.clone();
        turn.heard.pieces[i].text = ASR_CONFUSIONS
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, h)| h.to_string())
            .unwrap_or_else(|| self.mishear(&word));
        let verb = i == 0;
        if self.chance(if verb { 0.6 } else { 0.25 }) && !spec.confusable.is_empty() {
            turn.failure = FailurePoint::Asr;
            turn.nlu_intent = self.pick(spec.confusable);
        } else {
            turn.recovered = true;
        }
    }

    /// NLU: the wrong intent from the right words; context-dependent turns
    /// are harder. Returns the NLU's confidence.
    fn nlu(&mut self, turn: &mut Understanding, step: &StepSpec, spec: &IntentSpec) -> f32 {
        let in_context = step.context.is_some();
        let mut confidence = self.confidence(if in_context { 0.8 } else { 0.88 }, 0.07);
        if turn.failure == FailurePoint::Asr && turn.nlu_intent != step.intent {
            confidence = self.confidence(0.6, 0.15);
        }
        let rate = self.rates.nlu * if in_context { 2.0 } else { 1.0 };
        if turn.failure == FailurePoint::Correct && !spec.confusable.is_empty() && self.chance(rate)
        {
            turn.failure = FailurePoint::Nlu;
            turn.nlu_intent = self.pick(spec.confusable);
            confidence = self.confidence(0.6, 0.15);
        }
        confidence
    }

    /// Entity resolution: the right intent, the wrong (or no) entity.
    fn entity_resolution(&mut self, turn: &mut Understanding, values: &SlotValues) {
        let slots: Vec<&'static str> = turn.heard.pieces.iter().filter_map(|p| p.slot).collect();
        if turn.failure == FailurePoint::Correct
            && !slots.is_empty()
            && self.chance(self.rates.entity)
        {
            turn.failure = FailurePoint::Entity;
            let slot = self.pick(&slots);
            turn.wrong_entity = Some(slot);
            if self.chance(0.5) {
                turn.not_found = Some(values.get(slot).cloned().unwrap_or_default());
            } else {
                turn.resolved
                    .insert(slot, random_value(slot, &mut self.rng));
            }
        }
    }

    /// Result: everything understood, and still the wrong outcome. Half the
    /// result errors are visible to the runtime (a service error: true); the
    /// other half look like success and only the user's reaction tells.
    fn result_error(&mut self, turn: &mut Understanding, out_of_scope: bool) -> bool {
        if turn.failure == FailurePoint::Correct && !out_of_scope && self.chance(self.rates.result)
        {
            turn.failure = FailurePoint::Result;
            return self.chance(0.5);
        }
        false
    }

    /// A restaurant search finds three places; the goal's restaurant becomes
    /// the middle one.
    fn offer_restaurants(&mut self, resolved: &mut SlotValues, goal_values: &mut SlotValues) {
        let options: Vec<String> = (0..3)
            .map(|_| random_value("restaurant", &mut self.rng))
            .collect();
        goal_values.insert("restaurant", options[1].clone());
        resolved.insert("restaurant", options[1].clone());
        resolved.insert(
            "options",
            format!("{}, {} and {}", options[0], options[1], options[2]),
        );
    }

    /// What the assistant answers, and the dialogue status it logs.
    fn response(
        &mut self,
        step: &StepSpec,
        spec: &IntentSpec,
        turn: &Understanding,
        service_error: bool,
        out_of_scope: bool,
    ) -> (String, &'static str) {
        if let Some(value) = &turn.not_found {
            (format!("Sorry, I couldn't find {value}."), "failed")
        } else if service_error {
            (
                self.pick(&[
                    "Sorry, something went wrong. Please try again later.",
                    "I'm having trouble reaching that service right now.",
                    "Hmm, that didn't work.",
                ])
                .to_string(),
                "failed",
            )
        } else if out_of_scope {
            (spec.responses[0].to_string(), "failed")
        } else if turn.nlu_intent != step.intent {
            (
                fill_response(catalog::intent(turn.nlu_intent).responses, &turn.resolved),
                "completed",
            )
        } else {
            match &step.reply {
                Reply::Ask(question) => (fill_response(question, &turn.resolved), "prompted"),
                Reply::Done => (fill_response(spec.responses, &turn.resolved), "completed"),
            }
        }
    }

    fn false_wake(&mut self, utterance: &Utterance) -> RuntimeOutcome {
        let mut heard = utterance.clone();
        if heard.pieces.len() > 2 && self.chance(0.5) {
            let i = self.rng.random_range(0..heard.pieces.len());
            heard.pieces.remove(i);
        }
        let guess = self.pick(&[
            "PlayMusic",
            "GetWeather",
            "CallContact",
            "AddToList",
            "GetFact",
            "SetTimer",
            "OutOfScope",
        ]);
        let mut values = SlotValues::new();
        let response = if self.chance(0.35) {
            "Sorry, I'm not sure about that.".to_string()
        } else {
            let spec = catalog::intent(guess);
            if let Some(template) = spec.templates.first() {
                Utterance::from_template(template, &mut values, &mut self.rng);
            }
            fill_response(spec.responses, &values)
        };
        RuntimeOutcome {
            asr_text: heard,
            asr_confidence: self.confidence(0.55, 0.15),
            nlu_intent: guess,
            nlu_confidence: self.confidence(0.5, 0.15),
            status: if response.starts_with("Sorry") {
                "failed"
            } else {
                "completed"
            },
            response,
            failure: FailurePoint::FalseWake,
            recovered: false,
            wrong_entity: None,
        }
    }

    /// A plausible mishearing: one sound-alike letter change in one word.
    fn mishear(&mut self, text: &str) -> String {
        let mut words: Vec<String> = text.split(' ').map(str::to_string).collect();
        let i = self.rng.random_range(0..words.len());
        let word: Vec<char> = words[i].chars().collect();
        const SWAPS: &[(char, char)] = &[
            ('b', 'p'),
            ('p', 'b'),
            ('d', 't'),
            ('t', 'd'),
            ('g', 'k'),
            ('k', 'g'),
            ('f', 'v'),
            ('v', 'f'),
            ('s', 'z'),
            ('m', 'n'),
            ('n', 'm'),
            ('a', 'e'),
            ('e', 'a'),
            ('i', 'e'),
            ('o', 'u'),
            ('u', 'o'),
            ('r', 'l'),
            ('l', 'r'),
        ];
        let candidates: Vec<usize> = word
            .iter()
            .enumerate()
            .filter(|(_, c)| SWAPS.iter().any(|(a, _)| a == *c))
            .map(|(j, _)| j)
            .collect();
        let mut changed = word.clone();
        match candidates.choose(&mut self.rng) {
            Some(&j) => {
                let to = SWAPS
                    .iter()
                    .find(|(a, _)| *a == word[j])
                    .map(|(_, b)| *b)
                    .expect("filtered above");
                changed[j] = to;
            }
            None if word.len() > 1 => {
                changed.pop();
            }
            None => changed.push('h'),
        }
        words[i] = changed.into_iter().collect();
        words.join(" ")
    }
}

/// How a successful action changes what the device is doing.
fn state_after(intent: &str, state: &'static str, goal: Option<GoalKind>) -> &'static str {
    match intent {
        "PlayMusic" => "music_playing",
        "PlayVideo" => "video_playing",
        "PlayAudiobook" | "ResumeAudiobook" => "audiobook_playing",
        "SetTimer" => "timer_running",
        "CancelTimer" if state == "timer_running" => "idle",
        "Stop"
            if matches!(
                state,
                "music_playing" | "video_playing" | "audiobook_playing"
            ) =>
        {
            "idle"
        }
        "SetTemperature" if goal == Some(GoalKind::Oven) => "oven_on",
        _ => state,
    }
}

fn has_screen(device_type: &str) -> bool {
    matches!(device_type, "screen" | "tv")
}

/// Intents and their domains, for summaries.
pub fn intent_names() -> Vec<&'static str> {
    INTENTS.iter().map(|i| i.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::simulate::{SimulateConfig, generate};

    #[test]
    fn context_reason_names_are_the_serde_names() {
        for reason in ContextReason::ALL {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::Value::from(reason.as_str())
            );
        }
    }

    /// The simulator's stop and correction phrasings are more varied than
    /// the weak-label rules: the rules match some, not all.
    #[test]
    fn the_feedback_rules_know_only_some_phrasings() {
        use crate::data::feedback::{is_rephrase, is_stop_or_cancel};
        let stops = catalog::intent("Stop").templates;
        let matched = stops.iter().filter(|s| is_stop_or_cancel(s)).count();
        assert!(stops.len() >= 20, "{} stop phrasings", stops.len());
        assert_eq!(matched, 7, "the rules match 7 of {}", stops.len());
        let corrections = CORRECTION_LEADS
            .iter()
            .filter(|lead| is_rephrase("call hannah smith", &format!("{lead} anna")))
            .count();
        assert!(CORRECTION_LEADS.len() >= 16);
        assert_eq!(
            corrections,
            4,
            "the rules match 4 of {}",
            CORRECTION_LEADS.len()
        );
    }

    /// The audio embedding's separations are the documented d'.
    #[test]
    fn audio_features_are_weak_evidence() {
        let config = SimulateConfig::new(3000, 13, "unused".into());
        let mut by_class: [[Vec<f64>; 2]; 2] = Default::default();
        for index in 0..config.dialogues {
            let dialogue = generate(&config, index).dialogue;
            for (turn, truth) in dialogue.turns.iter().zip(&dialogue.truth) {
                let audio = turn.audio_embedding.as_ref().unwrap();
                let false_wake = truth.failure_point == FailurePoint::FalseWake;
                let asr = truth.failure_point == FailurePoint::Asr;
                by_class[0][usize::from(false_wake)].push(f64::from(audio[0]));
                by_class[1][usize::from(asr)].push(f64::from(audio[1]));
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let sd = |v: &[f64]| {
            let m = mean(v);
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        for (dim, (high, low), expected) in [
            (0, (0, 1), FALSE_WAKE_SEPARATION),
            (1, (1, 0), ASR_NOISE_SEPARATION),
        ] {
            let [others, class] = &by_class[dim];
            assert!(class.len() > 200 && others.len() > 2000);
            let pooled = (sd(class) + sd(others)) / 2.0;
            assert!(
                (pooled - f64::from(AUDIO_NOISE_SD)).abs() < 0.03,
                "{pooled}"
            );
            let groups = [others, class];
            let d_prime = (mean(groups[high]) - mean(groups[low])) / pooled;
            assert!(
                (d_prime - f64::from(expected)).abs() < 0.15,
                "dimension {dim}: d' {d_prime} vs {expected}"
            );
        }
    }

    /// The failure point is the FIRST stage that failed: check it against
    /// what each stage observably did, on a few thousand dialogues.
    #[test]
    fn failure_points_agree_with_the_injected_errors() {
        let config = SimulateConfig::new(3000, 11, "unused".into());
        let mut seen = std::collections::HashSet::new();
        for index in 0..config.dialogues {
            let dialogue = generate(&config, index).dialogue;
            for (turn, truth) in dialogue.turns.iter().zip(&dialogue.truth) {
                let nlu_right = turn.nlu_intent.as_deref() == Some(truth.intent);
                // Words the ASR changed without consequence do not count as a failure.
                let heard_right = turn.user_utterance == truth.said || truth.recovered_error;
                seen.insert(truth.failure_point);
                match truth.failure_point {
                    FailurePoint::FalseWake => assert_eq!(truth.intent, "NotDeviceDirected"),
                    FailurePoint::Asr => assert_ne!(
                        turn.user_utterance, truth.said,
                        "an ASR failure changes the words"
                    ),
                    FailurePoint::Nlu => assert!(heard_right && !nlu_right, "{turn:?}"),
                    FailurePoint::Entity | FailurePoint::Result => {
                        assert!(heard_right && nlu_right, "{turn:?}")
                    }
                    FailurePoint::Defect => panic!("the simulator knows the failing stage"),
                    FailurePoint::Correct => {
                        assert!(nlu_right, "a correct turn has the right intent: {turn:?}");
                        assert!(
                            heard_right,
                            "changed words on a correct turn are a recovered error"
                        );
                    }
                }
                if truth.intent == "NotDeviceDirected" {
                    assert_eq!(truth.failure_point, FailurePoint::FalseWake);
                }
                for span in &truth.slots {
                    assert!(
                        turn.user_utterance
                            .get(span.start as usize..span.end as usize)
                            .is_some()
                    );
                }
            }
        }
        assert_eq!(
            seen.len(),
            FailurePoint::PIPELINE.len(),
            "every pipeline failure class occurs"
        );
    }
}
