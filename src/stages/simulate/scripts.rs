//! What simulated users set out to do, and how each kind of goal unfolds:
//! which goals the context invites, how often each comes fresh, and the
//! dialogue script of each, as data the planner in `dialogue.rs` walks.
//!
//! The planner draws from the dialogue's random stream while it walks a
//! script, so the order of the alternatives and of the draws described here
//! is part of the simulator's output: reordering them changes every
//! dialogue after the first goal that reaches them.

use super::catalog::{self, SHARED_TITLES};
use super::dialogue::ContextReason::{
    self, Confirmation, DeviceState, DeviceType, Ellipsis, Selection, SlotFill,
};

/// One kind of goal a simulated user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalKind {
    /// The device woke without being addressed.
    FalseWake,
    /// A request the assistant cannot serve: it fails without a defect.
    OutOfScope,
    Music,
    /// "turn it up", "stop" while music plays.
    MusicFollowup,
    Weather,
    /// "what about tomorrow?" after a weather answer.
    WeatherFollowup,
    /// "what's the temperature": the weather, unless the oven is on.
    TemperatureQuestion,
    /// "how hot is it", "turn it up" while the oven is on.
    OvenFollowup,
    Lights,
    Thermostat,
    Oven,
    Timer,
    /// "how much longer", "cancel it" while a timer runs.
    TimerFollowup,
    Alarm,
    List,
    /// A title that is both a film and an audiobook: the device decides.
    SharedTitle,
    Video,
    Book,
    Call,
    Message,
    Fact,
    News,
    Time,
    Restaurant,
}

impl GoalKind {
    /// How this kind of goal unfolds.
    pub fn script(self) -> &'static Script {
        match self {
            GoalKind::FalseWake => {
                &const { Script::Steps(&[StepSpec::request("NotDeviceDirected")]) }
            }
            GoalKind::OutOfScope => &const { Script::Steps(&[StepSpec::request("OutOfScope")]) },
            GoalKind::Music => &const { Script::Steps(&[StepSpec::request("PlayMusic")]) },
            GoalKind::MusicFollowup => &MUSIC_FOLLOWUP,
            GoalKind::Weather => &const { Script::Steps(&[StepSpec::request("GetWeather")]) },
            GoalKind::WeatherFollowup => &WEATHER_FOLLOWUP,
            GoalKind::TemperatureQuestion => &TEMPERATURE_QUESTION,
            GoalKind::OvenFollowup => &OVEN_FOLLOWUP,
            GoalKind::Lights => &LIGHTS,
            GoalKind::Thermostat => &THERMOSTAT,
            GoalKind::Oven => &OVEN,
            GoalKind::Timer => &TIMER,
            GoalKind::TimerFollowup => &TIMER_FOLLOWUP,
            GoalKind::Alarm => &const { Script::Steps(&[StepSpec::request("SetAlarm")]) },
            GoalKind::List => &LIST,
            GoalKind::SharedTitle => &SHARED_TITLE,
            GoalKind::Video => &const { Script::Steps(&[StepSpec::request("PlayVideo")]) },
            GoalKind::Book => &BOOK,
            GoalKind::Call => &const { Script::Steps(&[StepSpec::request("CallContact")]) },
            GoalKind::Message => &MESSAGE,
            GoalKind::Fact => &const { Script::Steps(&[StepSpec::request("GetFact")]) },
            GoalKind::News => &const { Script::Steps(&[StepSpec::request("GetNews")]) },
            GoalKind::Time => &const { Script::Steps(&[StepSpec::request("GetTime")]) },
            GoalKind::Restaurant => &RESTAURANT,
        }
    }
}

/// What in the context invites a follow-up goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invitation {
    /// The previous goal was of this kind and succeeded.
    Succeeded(GoalKind),
    /// The device is in this state.
    DeviceState(&'static str),
}

/// Follow-ups, tried in this order: the first whose invitation holds and
/// whose chance comes up is the next goal.
pub const FOLLOW_UPS: &[(Invitation, f64, GoalKind)] = &[
    (
        Invitation::Succeeded(GoalKind::Weather),
        0.45,
        GoalKind::WeatherFollowup,
    ),
    (
        Invitation::DeviceState("oven_on"),
        0.35,
        GoalKind::OvenFollowup,
    ),
    (
        Invitation::DeviceState("music_playing"),
        0.3,
        GoalKind::MusicFollowup,
    ),
    (
        Invitation::DeviceState("timer_running"),
        0.25,
        GoalKind::TimerFollowup,
    ),
];

/// Relative weights of fresh goals, false wakes aside (their weight follows
/// the requested false-wake rate).
pub const FRESH_GOALS: &[(GoalKind, f64)] = &[
    (GoalKind::Music, 12.0),
    (GoalKind::Weather, 10.0),
    (GoalKind::TemperatureQuestion, 3.0),
    (GoalKind::Lights, 10.0),
    (GoalKind::Thermostat, 3.0),
    (GoalKind::Oven, 4.0),
    (GoalKind::Timer, 8.0),
    (GoalKind::Alarm, 4.0),
    (GoalKind::List, 8.0),
    (GoalKind::SharedTitle, 8.0),
    (GoalKind::Video, 3.0),
    (GoalKind::Book, 4.0),
    (GoalKind::Call, 6.0),
    (GoalKind::Message, 4.0),
    (GoalKind::Fact, 4.0),
    (GoalKind::News, 3.0),
    (GoalKind::Time, 3.0),
    (GoalKind::Restaurant, 6.0),
    (GoalKind::OutOfScope, 2.0),
];

/// How a goal unfolds; the planner walks it down to a list of steps.
pub enum Script {
    /// These steps, in order.
    Steps(&'static [StepSpec]),
    /// One of these, equally likely (one draw).
    OneOf(&'static [Script]),
    /// The first with this probability, else the second (one draw).
    Chance(f64, &'static Script, &'static Script),
    /// A slot value fixed before the user speaks (one draw), then the rest.
    Preset {
        slot: &'static str,
        value: Preset,
        then: &'static Script,
    },
    /// The first on a device with a screen, else the second (no draw).
    ByScreen(&'static Script, &'static Script),
}

/// How a preset slot value is drawn.
pub enum Preset {
    /// `step * n` degrees, n uniform in `low..=high`.
    Degrees { low: i32, high: i32, step: i32 },
    /// One of these, equally likely.
    OneOf(&'static [&'static str]),
}

/// One thing the user asks for, possibly over several attempts.
#[derive(Debug)]
pub struct StepSpec {
    pub intent: &'static str,
    /// None: the intent's own templates in the catalog.
    words: Option<&'static [&'static str]>,
    pub context: Option<ContextReason>,
    pub reply: Reply,
}

/// What the system says when a step succeeds.
#[derive(Debug)]
pub enum Reply {
    /// The intent's own response ("Playing X by Y.").
    Done,
    /// A question back to the user; the goal continues.
    Ask(&'static [&'static str]),
}

impl StepSpec {
    /// A request in the intent's own words, answered by its own response.
    const fn request(intent: &'static str) -> StepSpec {
        StepSpec {
            intent,
            words: None,
            context: None,
            reply: Reply::Done,
        }
    }

    /// A request in the intent's own words, answered with a question.
    const fn asking(intent: &'static str, question: Reply) -> StepSpec {
        StepSpec {
            intent,
            words: None,
            context: None,
            reply: question,
        }
    }

    /// A step in words of its own.
    const fn with(
        intent: &'static str,
        words: &'static [&'static str],
        context: Option<ContextReason>,
        reply: Reply,
    ) -> StepSpec {
        StepSpec {
            intent,
            words: Some(words),
            context,
            reply,
        }
    }

    /// The surface forms the user picks from.
    pub fn templates(&self) -> &'static [&'static str] {
        self.words
            .unwrap_or_else(|| catalog::intent(self.intent).templates)
    }
}

/// The same words ask about the weather, or about the oven when it is on:
/// device state decides.
const TEMPERATURE_WORDS: &[&str] = &[
    "what's the temperature",
    "how hot is it",
    "what's the temperature right now",
];

const MUSIC_FOLLOWUP: Script = Script::OneOf(&[
    Script::Steps(&[StepSpec::with(
        "SetVolume",
        &[
            "turn it up",
            "louder",
            "turn it down a bit",
            "turn it up a little",
        ],
        Some(DeviceState),
        Reply::Done,
    )]),
    Script::Steps(&[StepSpec::request("AddToPlaylist")]),
    Script::Steps(&[StepSpec::with(
        "Stop",
        &["stop", "stop the music", "pause"],
        None,
        Reply::Done,
    )]),
]);

const WEATHER_FOLLOWUP: Script = Script::Steps(&[StepSpec::with(
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
)]);

const TEMPERATURE_QUESTION: Script = Script::Steps(&[StepSpec::with(
    "GetWeather",
    TEMPERATURE_WORDS,
    Some(DeviceState),
    Reply::Done,
)]);

const OVEN_FOLLOWUP: Script = Script::OneOf(&[
    Script::Steps(&[StepSpec::with(
        "GetDeviceState",
        TEMPERATURE_WORDS,
        Some(DeviceState),
        Reply::Done,
    )]),
    Script::Steps(&[StepSpec::with(
        "SetTemperature",
        &["turn it up", "turn it up a little", "turn it down a bit"],
        Some(DeviceState),
        Reply::Done,
    )]),
]);

/// "the kitchen" after "Which room?".
const ROOM_ANSWERS: &[&str] = &[
    "the {room}",
    "in the {room}",
    "{room}",
    "the one in the {room}",
];

/// On or off; then, sometimes, without the room, which the assistant asks for.
const LIGHTS: Script = Script::OneOf(&[
    Script::Chance(
        0.4,
        &Script::Steps(&[
            StepSpec::with(
                "TurnOnDevice",
                &["turn on the {device}", "switch on the {device}"],
                None,
                Reply::Ask(&["Which room?"]),
            ),
            StepSpec::with("TurnOnDevice", ROOM_ANSWERS, Some(SlotFill), Reply::Done),
        ]),
        &Script::Steps(&[StepSpec::request("TurnOnDevice")]),
    ),
    Script::Chance(
        0.4,
        &Script::Steps(&[
            StepSpec::with(
                "TurnOffDevice",
                &["turn off the {device}", "switch off the {device}"],
                None,
                Reply::Ask(&["Which room?"]),
            ),
            StepSpec::with("TurnOffDevice", ROOM_ANSWERS, Some(SlotFill), Reply::Done),
        ]),
        &Script::Steps(&[StepSpec::request("TurnOffDevice")]),
    ),
]);

const THERMOSTAT: Script = Script::Preset {
    slot: "temperature",
    value: Preset::Degrees {
        low: 62,
        high: 78,
        step: 1,
    },
    then: &Script::Steps(&[StepSpec::with(
        "SetTemperature",
        &[
            "set the thermostat to {temperature}",
            "make it {temperature} in here",
            "set the heat to {temperature}",
        ],
        None,
        Reply::Done,
    )]),
};

/// 300 to 450 degrees, in steps of 25.
const OVEN: Script = Script::Preset {
    slot: "temperature",
    value: Preset::Degrees {
        low: 12,
        high: 18,
        step: 25,
    },
    then: &Script::Steps(&[StepSpec::with(
        "SetTemperature",
        &[
            "preheat the oven to {temperature}",
            "set the oven to {temperature}",
            "heat the oven to {temperature}",
        ],
        None,
        Reply::Done,
    )]),
};

const TIMER: Script = Script::Chance(
    0.35,
    &Script::Steps(&[
        StepSpec::with(
            "SetTimer",
            &["set a timer", "start a timer", "timer please"],
            None,
            Reply::Ask(&["For how long?"]),
        ),
        StepSpec::with(
            "SetTimer",
            &["{duration}", "for {duration}", "make it {duration}"],
            Some(SlotFill),
            Reply::Done,
        ),
    ]),
    &Script::Steps(&[StepSpec::request("SetTimer")]),
);

const TIMER_FOLLOWUP: Script = Script::OneOf(&[
    Script::Steps(&[StepSpec::with(
        "GetTimerRemaining",
        &[
            "how much longer",
            "how long is left",
            "how much time is left",
        ],
        Some(DeviceState),
        Reply::Done,
    )]),
    Script::Steps(&[StepSpec::with(
        "CancelTimer",
        &["cancel it", "turn it off", "cancel"],
        Some(DeviceState),
        Reply::Done,
    )]),
]);

/// Adding is twice as likely as removing or reading.
const LIST: Script = Script::OneOf(&[
    Script::Steps(&[StepSpec::request("AddToList")]),
    Script::Steps(&[StepSpec::request("AddToList")]),
    Script::Steps(&[StepSpec::request("RemoveFromList")]),
    Script::Steps(&[StepSpec::request("ReadList")]),
]);

/// The same words either way; the device decides film or audiobook.
const SHARED_TITLE: Script = Script::ByScreen(
    &Script::Preset {
        slot: "video_title",
        value: Preset::OneOf(SHARED_TITLES),
        then: &Script::Steps(&[StepSpec::with(
            "PlayVideo",
            &[
                "play {video_title}",
                "put on {video_title}",
                "start {video_title}",
                "i want {video_title}",
            ],
            Some(DeviceType),
            Reply::Done,
        )]),
    },
    &Script::Preset {
        slot: "book_title",
        value: Preset::OneOf(SHARED_TITLES),
        then: &Script::Steps(&[StepSpec::with(
            "PlayAudiobook",
            &[
                "play {book_title}",
                "put on {book_title}",
                "start {book_title}",
                "i want {book_title}",
            ],
            Some(DeviceType),
            Reply::Done,
        )]),
    },
);

/// Starting a book is twice as likely as resuming one.
const BOOK: Script = Script::OneOf(&[
    Script::Steps(&[StepSpec::request("PlayAudiobook")]),
    Script::Steps(&[StepSpec::request("PlayAudiobook")]),
    Script::Steps(&[StepSpec::request("ResumeAudiobook")]),
]);

const MESSAGE: Script = Script::Chance(
    0.4,
    &Script::Steps(&[
        StepSpec::with(
            "SendMessage",
            &[
                "send a message to {contact}",
                "text {contact}",
                "message {contact}",
            ],
            None,
            Reply::Ask(&["What's the message?"]),
        ),
        StepSpec::with(
            "SendMessage",
            &["{message}", "say {message}", "tell them {message}"],
            Some(SlotFill),
            Reply::Done,
        ),
    ]),
    &Script::Steps(&[StepSpec::request("SendMessage")]),
);

/// Both restaurant flows end on the assistant's confirmation question.
const CONFIRM_BOOKING: Reply = Reply::Ask(&[
    "Shall I book {restaurant} for {party_size} at {time}?",
    "Shall I book {restaurant} for {party_size}?",
    "Shall I book {restaurant} at {time}?",
    "Shall I book {restaurant}?",
    "Shall I book it?",
]);

/// ...and the user's yes.
const BOOKING_CONFIRMED: StepSpec = StepSpec::with(
    "ReserveRestaurant",
    &["yes", "yes please", "sure", "yeah do it", "that's right"],
    Some(Confirmation),
    Reply::Done,
);

/// Mostly a search, a choice among three places, the details one at a
/// time, and the booking; else a booking asked for in one go.
const RESTAURANT: Script = Script::Chance(
    0.7,
    &Script::Steps(&[
        StepSpec::asking(
            "FindRestaurant",
            Reply::Ask(&[
                "I found three {cuisine} places: {options}. Which one?",
                "I found three places: {options}. Which one?",
            ]),
        ),
        StepSpec::with(
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
        StepSpec::with(
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
        StepSpec::with(
            "ReserveRestaurant",
            &["{time}", "at {time}", "around {time}"],
            Some(SlotFill),
            CONFIRM_BOOKING,
        ),
        BOOKING_CONFIRMED,
    ]),
    &Script::Steps(&[
        StepSpec::asking("ReserveRestaurant", CONFIRM_BOOKING),
        BOOKING_CONFIRMED,
    ]),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::simulate::catalog::CATALOG;

    const ALL: [GoalKind; 24] = [
        GoalKind::FalseWake,
        GoalKind::OutOfScope,
        GoalKind::Music,
        GoalKind::MusicFollowup,
        GoalKind::Weather,
        GoalKind::WeatherFollowup,
        GoalKind::TemperatureQuestion,
        GoalKind::OvenFollowup,
        GoalKind::Lights,
        GoalKind::Thermostat,
        GoalKind::Oven,
        GoalKind::Timer,
        GoalKind::TimerFollowup,
        GoalKind::Alarm,
        GoalKind::List,
        GoalKind::SharedTitle,
        GoalKind::Video,
        GoalKind::Book,
        GoalKind::Call,
        GoalKind::Message,
        GoalKind::Fact,
        GoalKind::News,
        GoalKind::Time,
        GoalKind::Restaurant,
    ];

    /// Every way a script can unfold: its step lists, with the slots preset
    /// on the way there.
    fn paths(
        script: &'static Script,
        preset: Vec<&'static str>,
    ) -> Vec<(Vec<&'static str>, &'static [StepSpec])> {
        match script {
            Script::Steps(steps) => vec![(preset, steps)],
            Script::OneOf(scripts) => scripts
                .iter()
                .flat_map(|s| paths(s, preset.clone()))
                .collect(),
            Script::Chance(_, a, b) | Script::ByScreen(a, b) => {
                let mut all = paths(a, preset.clone());
                all.extend(paths(b, preset));
                all
            }
            Script::Preset { slot, then, .. } => {
                let mut preset = preset;
                preset.push(slot);
                paths(then, preset)
            }
        }
    }

    fn placeholders(text: &str) -> impl Iterator<Item = &str> {
        text.split('{')
            .skip(1)
            .filter_map(|part| part.split_once('}').map(|(slot, _)| slot))
    }

    #[test]
    fn every_goal_kind_has_a_playable_script() {
        for kind in ALL {
            for (preset, steps) in paths(kind.script(), Vec::new()) {
                assert!(!steps.is_empty(), "{kind:?}: a script path without steps");
                for slot in &preset {
                    assert!(CATALOG.slot(slot).is_some(), "{kind:?} presets {slot}");
                }
                for step in steps {
                    let spec = catalog::intent(step.intent);
                    assert!(!step.templates().is_empty(), "{kind:?}: {}", step.intent);
                    for template in step.templates() {
                        for slot in placeholders(template) {
                            assert!(CATALOG.slot(slot).is_some(), "{slot} in {template:?}");
                        }
                    }
                    let answers = match step.reply {
                        Reply::Ask(question) => question,
                        Reply::Done => spec.responses,
                    };
                    assert!(
                        !answers.is_empty(),
                        "{kind:?}: {} says nothing",
                        step.intent
                    );
                    for slot in answers.iter().copied().flat_map(placeholders) {
                        assert!(
                            slot == "options" || CATALOG.slot(slot).is_some(),
                            "{slot} in {kind:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_goal_kind_can_come_up_and_the_weights_are_positive() {
        let mut reachable = vec![GoalKind::FalseWake];
        reachable.extend(FRESH_GOALS.iter().map(|(kind, _)| *kind));
        reachable.extend(FOLLOW_UPS.iter().map(|(_, _, kind)| *kind));
        for kind in ALL {
            assert!(reachable.contains(&kind), "{kind:?} never comes up");
        }
        assert!(FRESH_GOALS.iter().all(|(_, w)| *w > 0.0));
        assert!(FOLLOW_UPS.iter().all(|(_, p, _)| (0.0..=1.0).contains(p)));
        // The goal kind list itself has no repeats.
        for (i, kind) in ALL.iter().enumerate() {
            assert!(!ALL[..i].contains(kind), "{kind:?} listed twice");
        }
    }

    #[test]
    fn both_restaurant_flows_end_on_the_same_confirmation() {
        let endings: Vec<_> = paths(GoalKind::Restaurant.script(), Vec::new())
            .into_iter()
            .map(|(_, steps)| {
                let [.., ask, confirm] = steps else {
                    panic!("a restaurant flow of one step")
                };
                (format!("{:?}", ask.reply), format!("{confirm:?}"))
            })
            .collect();
        assert_eq!(endings.len(), 2);
        assert_eq!(endings[0], endings[1]);
    }
}
