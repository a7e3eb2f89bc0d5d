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

use super::catalog::{self, INTENTS, SHARED_TITLES};
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

/// What the system says when a step succeeds.
#[derive(Clone)]
enum Reply {
    /// The intent's own response ("Playing X by Y.").
    Done,
    /// A question back to the user; the goal continues.
    Ask(&'static [&'static str]),
}

/// One thing the user asks for, possibly over several attempts.
#[derive(Clone)]
struct Step {
    intent: &'static str,
    templates: &'static [&'static str],
    context: Option<ContextReason>,
    reply: Reply,
}

impl Step {
    fn request(intent: &'static str) -> Step {
        Step {
            intent,
            templates: catalog::intent(intent).templates,
            context: None,
            reply: Reply::Done,
        }
    }
    fn with(
        intent: &'static str,
        templates: &'static [&'static str],
        context: Option<ContextReason>,
        reply: Reply,
    ) -> Step {
        Step {
            intent,
            templates,
            context,
            reply,
        }
    }
}

struct Goal {
    steps: Vec<Step>,
    values: SlotValues,
    false_wake: bool,
    /// A request the assistant cannot serve: it fails without a defect.
    out_of_scope: bool,
    kind: &'static str,
}

/// The same words ask about the weather, or about the oven when it is on:
/// device state decides.
const TEMPERATURE_QUESTION: &[&str] = &[
    "what's the temperature",
    "how hot is it",
    "what's the temperature right now",
];

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
    last_goal_kind: Option<&'static str>,
    last_goal_success: bool,
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
        let device_type = self.pick_weighted(&[
            ("speaker", 0.45),
            ("screen", 0.30),
            ("tv", 0.10),
            ("car", 0.15),
        ]);
        let has_screen = matches!(device_type, "screen" | "tv");
        let mut initial = vec![
            ("idle", 0.6),
            ("music_playing", 0.12),
            ("audiobook_playing", 0.05),
            ("oven_on", 0.08),
            ("timer_running", 0.10),
        ];
        if has_screen {
            initial.push(("video_playing", 0.05));
        }
        if device_type == "car" {
            initial.retain(|(s, _)| !matches!(*s, "oven_on"));
        }
        let device_state = self.pick_weighted(&initial);
        let mut session = Session {
            device_type,
            device_state,
            last_goal_kind: None,
            last_goal_success: false,
        };
        let goals = self.pick_weighted(&[(1, 0.35), (2, 0.35), (3, 0.2), (4, 0.1)]);
        let mut out = SimDialogue {
            turns: Vec::new(),
            truth: Vec::new(),
            goal_success: Vec::new(),
        };
        let mut clock_us = start_us;
        for goal_index in 0..goals {
            let goal = self.plan_goal(&session);
            let success = self.play_goal(
                goal,
                goal_index,
                &mut session,
                dialogue_id,
                &mut clock_us,
                &mut out,
            );
            out.goal_success.push(success);
        }
        out
    }

    /// Chooses the next goal, favouring follow-ups the current context invites.
    fn plan_goal(&mut self, session: &Session) -> Goal {
        let mut values = SlotValues::new();
        let follow_up = match (
            session.last_goal_kind,
            session.last_goal_success,
            session.device_state,
        ) {
            (Some("weather"), true, _) if self.chance(0.45) => Some("weather_followup"),
            (_, _, "oven_on") if self.chance(0.35) => Some("oven_followup"),
            (_, _, "music_playing") if self.chance(0.3) => Some("music_followup"),
            (_, _, "timer_running") if self.chance(0.25) => Some("timer_followup"),
            _ => None,
        };
        let kind = match follow_up {
            Some(kind) => kind,
            None => {
                let false_wake = self.rates.false_wake;
                self.pick_weighted(&[
                    (
                        "false_wake",
                        false_wake * 100.0 / (1.0 - false_wake).max(0.01),
                    ),
                    ("music", 12.0),
                    ("weather", 10.0),
                    ("temperature_question", 3.0),
                    ("lights", 10.0),
                    ("thermostat", 3.0),
                    ("oven", 4.0),
                    ("timer", 8.0),
                    ("alarm", 4.0),
                    ("list", 8.0),
                    ("shared_title", 8.0),
                    ("video", 3.0),
                    ("book", 4.0),
                    ("call", 6.0),
                    ("message", 4.0),
                    ("fact", 4.0),
                    ("news", 3.0),
                    ("time", 3.0),
                    ("restaurant", 6.0),
                    ("out_of_scope", 2.0),
                ])
            }
        };
        use ContextReason::*;
        let mut goal = Goal {
            steps: Vec::new(),
            values: SlotValues::new(),
            false_wake: false,
            out_of_scope: false,
            kind,
        };
        goal.steps = match kind {
            "false_wake" => {
                goal.false_wake = true;
                vec![Step::request("NotDeviceDirected")]
            }
            "out_of_scope" => {
                goal.out_of_scope = true;
                vec![Step::request("OutOfScope")]
            }
            "music" => vec![Step::request("PlayMusic")],
            "music_followup" => match self.pick(&[0, 1, 2]) {
                0 => vec![Step::with(
                    "SetVolume",
                    &[
                        "turn it up",
                        "louder",
                        "turn it down a bit",
                        "turn it up a little",
                    ],
                    Some(DeviceState),
                    Reply::Done,
                )],
                1 => vec![Step::request("AddToPlaylist")],
                _ => vec![Step::with(
                    "Stop",
                    &["stop", "stop the music", "pause"],
                    None,
                    Reply::Done,
                )],
            },
            "weather" => vec![Step::request("GetWeather")],
            "weather_followup" => vec![Step::with(
                "GetWeather",
                &[
                    "what about {date}",
                    "and {date}",
                    "how about in {city}",
                    "and in {city}",
                    "what about {city}",
                ],
                Some(Ellipsis),
                Reply::Done,
            )],
            "temperature_question" => vec![Step::with(
                "GetWeather",
                TEMPERATURE_QUESTION,
                Some(DeviceState),
                Reply::Done,
            )],
            "oven_followup" => match self.pick(&[0, 1]) {
                0 => vec![Step::with(
                    "GetDeviceState",
                    TEMPERATURE_QUESTION,
                    Some(DeviceState),
                    Reply::Done,
                )],
                _ => vec![Step::with(
                    "SetTemperature",
                    &["turn it up", "turn it up a little", "turn it down a bit"],
                    Some(DeviceState),
                    Reply::Done,
                )],
            },
            "lights" => {
                let intent = self.pick(&["TurnOnDevice", "TurnOffDevice"]);
                if self.chance(0.4) {
                    let short: &'static [&'static str] = if intent == "TurnOnDevice" {
                        &["turn on the {device}", "switch on the {device}"]
                    } else {
                        &["turn off the {device}", "switch off the {device}"]
                    };
                    vec![
                        Step::with(intent, short, None, Reply::Ask(&["Which room?"])),
                        Step::with(
                            intent,
                            &[
                                "the {room}",
                                "in the {room}",
                                "{room}",
                                "the one in the {room}",
                            ],
                            Some(SlotFill),
                            Reply::Done,
                        ),
                    ]
                } else {
                    vec![Step::request(intent)]
                }
            }
            "thermostat" => {
                values.insert(
                    "temperature",
                    format!("{} degrees", self.rng.random_range(62..=78)),
                );
                vec![Step::with(
                    "SetTemperature",
                    &[
                        "set the thermostat to {temperature}",
                        "make it {temperature} in here",
                        "set the heat to {temperature}",
                    ],
                    None,
                    Reply::Done,
                )]
            }
            "oven" => {
                values.insert(
                    "temperature",
                    format!("{} degrees", 25 * self.rng.random_range(12..=18)),
                );
                vec![Step::with(
                    "SetTemperature",
                    &[
                        "preheat the oven to {temperature}",
                        "set the oven to {temperature}",
                        "heat the oven to {temperature}",
                    ],
                    None,
                    Reply::Done,
                )]
            }
            "timer" => {
                if self.chance(0.35) {
                    vec![
                        Step::with(
                            "SetTimer",
                            &["set a timer", "start a timer", "timer please"],
                            None,
                            Reply::Ask(&["For how long?"]),
                        ),
                        Step::with(
                            "SetTimer",
                            &["{duration}", "for {duration}", "make it {duration}"],
                            Some(SlotFill),
                            Reply::Done,
                        ),
                    ]
                } else {
                    vec![Step::request("SetTimer")]
                }
            }
            "timer_followup" => match self.pick(&[0, 1]) {
                0 => vec![Step::with(
                    "GetTimerRemaining",
                    &[
                        "how much longer",
                        "how long is left",
                        "how much time is left",
                    ],
                    Some(DeviceState),
                    Reply::Done,
                )],
                _ => vec![Step::with(
                    "CancelTimer",
                    &["cancel it", "turn it off", "cancel"],
                    Some(DeviceState),
                    Reply::Done,
                )],
            },
            "alarm" => vec![Step::request("SetAlarm")],
            "list" => vec![Step::request(self.pick(&[
                "AddToList",
                "AddToList",
                "RemoveFromList",
                "ReadList",
            ]))],
            "shared_title" => {
                let title = self.pick(SHARED_TITLES).to_string();
                let on_screen = matches!(session.device_type, "screen" | "tv");
                // The same words either way; the device decides film or audiobook.
                let (intent, slot, templates): (_, _, &'static [&'static str]) = if on_screen {
                    (
                        "PlayVideo",
                        "video_title",
                        &[
                            "play {video_title}",
                            "put on {video_title}",
                            "start {video_title}",
                            "i want {video_title}",
                        ],
                    )
                } else {
                    (
                        "PlayAudiobook",
                        "book_title",
                        &[
                            "play {book_title}",
                            "put on {book_title}",
                            "start {book_title}",
                            "i want {book_title}",
                        ],
                    )
                };
                values.insert(slot, title);
                vec![Step::with(intent, templates, Some(DeviceType), Reply::Done)]
            }
            "video" => vec![Step::request("PlayVideo")],
            "book" => vec![Step::request(self.pick(&[
                "PlayAudiobook",
                "PlayAudiobook",
                "ResumeAudiobook",
            ]))],
            "call" => vec![Step::request("CallContact")],
            "message" => {
                if self.chance(0.4) {
                    vec![
                        Step::with(
                            "SendMessage",
                            &[
                                "send a message to {contact}",
                                "text {contact}",
                                "message {contact}",
                            ],
                            None,
                            Reply::Ask(&["What's the message?"]),
                        ),
                        Step::with(
                            "SendMessage",
                            &["{message}", "say {message}", "tell them {message}"],
                            Some(SlotFill),
                            Reply::Done,
                        ),
                    ]
                } else {
                    vec![Step::request("SendMessage")]
                }
            }
            "fact" => vec![Step::request("GetFact")],
            "news" => vec![Step::request("GetNews")],
            "time" => vec![Step::request("GetTime")],
            "restaurant" => {
                if self.chance(0.7) {
                    vec![
                        Step::with(
                            "FindRestaurant",
                            catalog::intent("FindRestaurant").templates,
                            None,
                            Reply::Ask(&[
                                "I found three {cuisine} places: {options}. Which one?",
                                "I found three places: {options}. Which one?",
                            ]),
                        ),
                        Step::with(
                            "ReserveRestaurant",
                            &[
                                "the second one",
                                "book the first one",
                                "the last one",
                                "let's do the third one",
                                "the first one please",
                            ],
                            Some(Selection),
                            Reply::Ask(&["For how many people?"]),
                        ),
                        Step::with(
                            "ReserveRestaurant",
                            &[
                                "{party_size} people",
                                "for {party_size}",
                                "just {party_size}",
                                "a table for {party_size}",
                            ],
                            Some(SlotFill),
                            Reply::Ask(&["What time?"]),
                        ),
                        Step::with(
                            "ReserveRestaurant",
                            &["{time}", "at {time}", "around {time}"],
                            Some(SlotFill),
                            Reply::Ask(&[
                                "Shall I book {restaurant} for {party_size} at {time}?",
                                "Shall I book {restaurant} for {party_size}?",
                                "Shall I book {restaurant} at {time}?",
                                "Shall I book {restaurant}?",
                                "Shall I book it?",
                            ]),
                        ),
                        Step::with(
                            "ReserveRestaurant",
                            &["yes", "yes please", "sure", "yeah do it", "that's right"],
                            Some(Confirmation),
                            Reply::Done,
                        ),
                    ]
                } else {
                    vec![
                        Step::with(
                            "ReserveRestaurant",
                            catalog::intent("ReserveRestaurant").templates,
                            None,
                            Reply::Ask(&[
                                "Shall I book {restaurant} for {party_size} at {time}?",
                                "Shall I book {restaurant} for {party_size}?",
                                "Shall I book {restaurant} at {time}?",
                                "Shall I book {restaurant}?",
                                "Shall I book it?",
                            ]),
                        ),
                        Step::with(
                            "ReserveRestaurant",
                            &["yes", "yes please", "sure", "yeah do it", "that's right"],
                            Some(Confirmation),
                            Reply::Done,
                        ),
                    ]
                }
            }
            other => unreachable!("goal kind {other} has no plan"),
        };
        goal.values = values;
        goal
    }

    /// Plays a goal's steps, with errors and the user's reactions; returns success.
    fn play_goal(
        &mut self,
        mut goal: Goal,
        goal_index: i32,
        session: &mut Session,
        dialogue_id: &str,
        clock_us: &mut i64,
        out: &mut SimDialogue,
    ) -> bool {
        let first_turn = out.turns.len();
        let mut success = true;
        let steps = std::mem::take(&mut goal.steps);
        'steps: for step in &steps {
            let mut attempt = 0;
            let mut correction: Option<&'static str> = None;
            loop {
                attempt += 1;
                let (utterance, context) = match correction.take() {
                    Some(slot) => (
                        self.correction(slot, &goal.values),
                        Some(ContextReason::Correction),
                    ),
                    None => {
                        let template = self.pick(step.templates);
                        (
                            Utterance::from_template(template, &mut goal.values, &mut self.rng),
                            step.context,
                        )
                    }
                };
                let outcome = self.runtime(step, &utterance, &mut goal);
                let failed = outcome.failure != FailurePoint::Correct;
                let barge_in = self.chance(if failed { 0.35 } else { 0.03 });
                let state_before = session.device_state;
                if !failed && matches!(step.reply, Reply::Done) && !goal.out_of_scope {
                    session.device_state =
                        state_after(step.intent, session.device_state, goal.kind);
                }
                let (text, slots) = outcome.asr_text.render();
                self.push_turn(
                    out,
                    dialogue_id,
                    clock_us,
                    session.device_type,
                    state_before,
                    &outcome,
                    &text,
                    barge_in,
                );
                let intent = if goal.false_wake {
                    "NotDeviceDirected"
                } else {
                    step.intent
                };
                out.truth.push(TurnTruth {
                    goal: goal_index,
                    intent,
                    slots: if goal.false_wake { Vec::new() } else { slots },
                    failure_point: outcome.failure,
                    context,
                    recovered_error: outcome.recovered,
                    said: utterance.render().0,
                });
                if goal.out_of_scope {
                    success = false;
                    if self.chance(0.3) {
                        self.stop_turn(out, dialogue_id, clock_us, session, goal_index);
                    }
                    break 'steps;
                }
                if goal.false_wake {
                    success = false;
                    if self.chance(0.35) {
                        self.stop_turn(out, dialogue_id, clock_us, session, goal_index);
                    }
                    break 'steps;
                }
                if !failed {
                    break;
                }
                // The user reacts to the failure: try again, say stop, or give up.
                let reaction = if attempt >= 3 {
                    "give_up"
                } else {
                    self.pick_weighted(&[("retry", 0.45), ("stop", 0.2), ("give_up", 0.35)])
                };
                match reaction {
                    "retry" => {
                        if let Some(slot) = outcome.wrong_entity
                            && self.chance(0.5)
                        {
                            correction = Some(slot);
                        }
                    }
                    "stop" => {
                        self.stop_turn(out, dialogue_id, clock_us, session, goal_index);
                        success = false;
                        break 'steps;
                    }
                    _ => {
                        success = false;
                        break 'steps;
                    }
                }
            }
        }
        // Occasional explicit feedback on the goal's last turn, sometimes misclicked.
        if out.turns.len() > first_turn && self.chance(0.12) {
            let honest = if success { 1 } else { -1 };
            let value = if self.chance(0.05) { -honest } else { honest };
            let last = out.turns.len() - 1;
            out.turns[last].explicit_feedback = Some(value);
        }
        session.last_goal_kind = Some(goal.kind);
        session.last_goal_success = success;
        success
    }

    fn correction(&mut self, slot: &'static str, values: &SlotValues) -> Utterance {
        let mut u = Utterance::default();
        let lead = self.pick(&["no i said", "no", "i said", "no no", "i meant"]);
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

    fn stop_turn(
        &mut self,
        out: &mut SimDialogue,
        dialogue_id: &str,
        clock_us: &mut i64,
        session: &mut Session,
        goal: i32,
    ) {
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
        session.device_state = state_after("Stop", state, "");
        self.push_turn(
            out,
            dialogue_id,
            clock_us,
            session.device_type,
            state,
            &outcome,
            text,
            false,
        );
        out.truth.push(TurnTruth {
            goal,
            intent: "Stop",
            slots: Vec::new(),
            failure_point: FailurePoint::Correct,
            context: None,
            recovered_error: false,
            said: text.to_string(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn push_turn(
        &mut self,
        out: &mut SimDialogue,
        dialogue_id: &str,
        clock_us: &mut i64,
        device_type: &'static str,
        device_state: &'static str,
        outcome: &RuntimeOutcome,
        text: &str,
        barge_in: bool,
    ) {
        let audio_embedding = (self.audio_dim > 0).then(|| self.audio_features(outcome.failure));
        out.turns.push(Turn {
            dialogue_id: dialogue_id.to_string(),
            turn_index: out.turns.len() as i32,
            timestamp_us: Some(*clock_us),
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
        *clock_us += self.rng.random_range(3_000_000..20_000_000);
    }

    /// Acoustic features computed upstream: device-directedness (low for false
    /// wakes), background noise (higher where ASR failed), and dimensions
    /// that carry no signal, as real embeddings mostly do.
    fn audio_features(&mut self, failure: FailurePoint) -> Vec<f32> {
        let mut noise = || {
            (self.rng.random::<f32>() + self.rng.random::<f32>() + self.rng.random::<f32>() - 1.5)
                * 1.2
        };
        let directed = if failure == FailurePoint::FalseWake {
            -1.0
        } else {
            1.0
        };
        let loud = if failure == FailurePoint::Asr {
            0.8
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
    fn runtime(&mut self, step: &Step, utterance: &Utterance, goal: &mut Goal) -> RuntimeOutcome {
        let spec = catalog::intent(step.intent);
        if goal.false_wake {
            return self.false_wake(utterance);
        }
        let mut heard = utterance.clone();
        let mut recovered = false;
        let mut asr_confidence = self.confidence(0.91, 0.05);
        // ASR: a harmless drop of a small word, or a real misrecognition.
        if self.chance(0.08)
            && let Some(i) = heard
                .pieces
                .iter()
                .position(|p| p.slot.is_none() && DROPPABLE.contains(&p.text.as_str()))
        {
            heard.pieces.remove(i);
            recovered = true;
            asr_confidence = self.confidence(0.8, 0.08);
        }
        let mut failure = FailurePoint::Correct;
        let mut nlu_intent = step.intent;
        let mut resolved = goal.values.clone();
        let mut wrong_entity = None;
        let mut not_found: Option<String> = None;
        if self.chance(self.rates.asr) {
            asr_confidence = self.confidence(0.62, 0.13);
            let slot_pieces: Vec<usize> = heard
                .pieces
                .iter()
                .enumerate()
                .filter(|(_, p)| p.slot.is_some())
                .map(|(i, _)| i)
                .collect();
            if !slot_pieces.is_empty() && self.chance(0.6) {
                // A garbled entity: entity resolution may still match it.
                let i = self.pick(&slot_pieces);
                let slot = heard.pieces[i].slot.expect("slot piece");
                let original = heard.pieces[i].text.clone();
                if self.chance(0.5) {
                    let other = random_value(slot, &mut self.rng);
                    heard.pieces[i].text = other.clone();
                    if other != original {
                        failure = FailurePoint::Asr;
                        resolved.insert(slot, other);
                        wrong_entity = Some(slot);
                    }
                } else {
                    let garbled = self.mishear(&original);
                    heard.pieces[i].text = garbled.clone();
                    if self.chance(0.45) {
                        recovered = true;
                    } else {
                        failure = FailurePoint::Asr;
                        not_found = Some(garbled);
                        wrong_entity = Some(slot);
                    }
                }
            } else {
                // A misheard carrier word: NLU may still get the intent.
                let carriers: Vec<usize> = heard
                    .pieces
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.slot.is_none())
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&i) = carriers.choose(&mut self.rng) {
                    let word = heard.pieces[i].text.clone();
                    heard.pieces[i].text = ASR_CONFUSIONS
                        .iter()
                        .find(|(w, _)| *w == word)
                        .map(|(_, h)| h.to_string())
                        .unwrap_or_else(|| self.mishear(&word));
                    let verb = i == 0;
                    if self.chance(if verb { 0.6 } else { 0.25 }) && !spec.confusable.is_empty() {
                        failure = FailurePoint::Asr;
                        nlu_intent = self.pick(spec.confusable);
                    } else {
                        recovered = true;
                    }
                }
            }
        }
        let mut nlu_confidence =
            self.confidence(if step.context.is_some() { 0.8 } else { 0.88 }, 0.07);
        if failure == FailurePoint::Asr && nlu_intent != step.intent {
            nlu_confidence = self.confidence(0.6, 0.15);
        }
        // NLU: the wrong intent from the right words; context-dependent turns are harder.
        let nlu_rate = self.rates.nlu * if step.context.is_some() { 2.0 } else { 1.0 };
        if failure == FailurePoint::Correct && !spec.confusable.is_empty() && self.chance(nlu_rate)
        {
            failure = FailurePoint::Nlu;
            nlu_intent = self.pick(spec.confusable);
            nlu_confidence = self.confidence(0.6, 0.15);
        }
        let slot_in_turn: Vec<&'static str> = heard.pieces.iter().filter_map(|p| p.slot).collect();
        // Entity resolution: the right intent, the wrong (or no) entity.
        if failure == FailurePoint::Correct
            && !slot_in_turn.is_empty()
            && self.chance(self.rates.entity)
        {
            failure = FailurePoint::Entity;
            let slot = self.pick(&slot_in_turn);
            wrong_entity = Some(slot);
            if self.chance(0.5) {
                let value = goal.values.get(slot).cloned().unwrap_or_default();
                not_found = Some(value);
            } else {
                resolved.insert(slot, random_value(slot, &mut self.rng));
            }
        }
        // Result: everything understood, and still the wrong outcome.
        // Half the result errors are visible to the runtime (a service error);
        // the other half look like success and only the user's reaction tells.
        let mut service_error = false;
        if failure == FailurePoint::Correct && !goal.out_of_scope && self.chance(self.rates.result)
        {
            failure = FailurePoint::Result;
            service_error = self.chance(0.5);
        }
        if step.intent == "FindRestaurant" {
            let options: Vec<String> = (0..3)
                .map(|_| random_value("restaurant", &mut self.rng))
                .collect();
            goal.values.insert("restaurant", options[1].clone());
            resolved.insert("restaurant", options[1].clone());
            resolved.insert(
                "options",
                format!("{}, {} and {}", options[0], options[1], options[2]),
            );
        }
        let (response, status) = if let Some(value) = not_found {
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
        } else if goal.out_of_scope {
            (spec.responses[0].to_string(), "failed")
        } else if nlu_intent != step.intent {
            (
                fill_response(catalog::intent(nlu_intent).responses, &resolved),
                "completed",
            )
        } else {
            match &step.reply {
                Reply::Ask(question) => (fill_response(question, &resolved), "prompted"),
                Reply::Done => (fill_response(spec.responses, &resolved), "completed"),
            }
        };
        RuntimeOutcome {
            asr_text: heard,
            asr_confidence,
            nlu_intent,
            nlu_confidence,
            response,
            status,
            failure,
            recovered,
            wrong_entity,
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
fn state_after(intent: &str, state: &'static str, goal_kind: &str) -> &'static str {
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
        "SetTemperature" if goal_kind == "oven" => "oven_on",
        _ => state,
    }
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

    /// The failure point is the FIRST stage that failed: check it against
    /// what each stage observably did, on a few thousand dialogues.
    #[test]
    fn failure_points_agree_with_the_injected_errors() {
        let config = SimulateConfig::new(3000, 11, "unused".into());
        let mut seen = std::collections::HashSet::new();
        for index in 0..config.dialogues {
            let (dialogue, _) = generate(&config, index);
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
