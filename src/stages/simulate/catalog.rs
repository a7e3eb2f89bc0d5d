//! What the simulated assistant knows: domains, intents with their surface
//! templates, slot types and entity lists.
//!
//! Entity lists are built combinatorially from word lists (thousands of
//! songs, artists, contacts, restaurants), so a model cannot memorise values
//! and must learn where slots sit in an utterance.

use std::collections::HashMap;
use std::sync::LazyLock;

/// An intent the simulated users have, with how they say it.
pub struct IntentSpec {
    pub name: &'static str,
    pub domain: &'static str,
    /// Surface forms; `{slot}` marks a slot value.
    pub templates: &'static [&'static str],
    /// What the assistant says when it did this, most specific first: the
    /// first whose placeholders all have values is used.
    pub responses: &'static [&'static str],
    /// Intents an annotator or the NLU plausibly confuses this one with.
    pub confusable: &'static [&'static str],
}

pub const INTENTS: &[IntentSpec] = &[
    IntentSpec {
        name: "PlayMusic",
        domain: "music",
        templates: &[
            "play {song} by {artist}",
            "play {song}",
            "play some {genre}",
            "play {artist}",
            "play my {playlist} playlist",
            "put on some {genre} music",
            "i want to hear {song} by {artist}",
            "play the song {song}",
        ],
        responses: &[
            "Playing {song} by {artist}.",
            "Playing {song}.",
            "Playing music by {artist}.",
            "Playing your {playlist} playlist.",
            "Playing some {genre}.",
            "Playing music.",
        ],
        confusable: &["PlayAudiobook", "PlayVideo", "AddToPlaylist"],
    },
    IntentSpec {
        name: "AddToPlaylist",
        domain: "music",
        templates: &[
            "add this song to my {playlist} playlist",
            "put this on my {playlist} playlist",
            "save this song to {playlist}",
        ],
        responses: &[
            "Added it to your {playlist} playlist.",
            "Added it to your playlist.",
        ],
        confusable: &["AddToList", "PlayMusic"],
    },
    IntentSpec {
        name: "SetVolume",
        domain: "music",
        templates: &[
            "set the volume to {volume}",
            "volume {volume}",
            "change the volume to {volume}",
        ],
        responses: &["Volume {volume}.", "OK."],
        confusable: &["SetTemperature", "PlayMusic"],
    },
    IntentSpec {
        name: "GetWeather",
        domain: "weather",
        templates: &[
            "what's the weather in {city}",
            "what's the weather like {date}",
            "will it rain {date} in {city}",
            "how cold is it in {city}",
            "what's the forecast for {date}",
            "do i need an umbrella {date}",
            "what's the weather in {city} {date}",
        ],
        responses: &[
            "In {city} {date}: partly cloudy, high of 64.",
            "In {city}: 58 degrees and sunny.",
            "{date} in your area: showers, high of 55.",
            "Right now: 58 degrees and sunny.",
        ],
        confusable: &["GetDeviceState", "GetFact"],
    },
    IntentSpec {
        name: "TurnOnDevice",
        domain: "smart_home",
        templates: &[
            "turn on the {device} in the {room}",
            "switch on the {room} {device}",
            "turn the {room} {device} on",
            "turn on the {device} in the {room} please",
        ],
        responses: &[
            "Turning on the {room} {device}.",
            "Turning on the {device}.",
            "OK, it's on.",
        ],
        confusable: &["TurnOffDevice", "SetTemperature"],
    },
    IntentSpec {
        name: "TurnOffDevice",
        domain: "smart_home",
        templates: &[
            "turn off the {device} in the {room}",
            "switch off the {room} {device}",
            "turn the {room} {device} off",
            "shut off the {device} in the {room}",
        ],
        responses: &[
            "Turning off the {room} {device}.",
            "Turning off the {device}.",
            "OK, it's off.",
        ],
        confusable: &["TurnOnDevice", "Stop"],
    },
    IntentSpec {
        name: "SetTemperature",
        domain: "smart_home",
        templates: &[
            "set the thermostat to {temperature}",
            "preheat the oven to {temperature}",
            "make it {temperature} in here",
            "set the heat to {temperature}",
        ],
        responses: &["Setting it to {temperature}.", "OK, turning it up."],
        confusable: &["GetDeviceState", "SetVolume"],
    },
    IntentSpec {
        name: "GetDeviceState",
        domain: "smart_home",
        templates: &[
            "is the {device} on in the {room}",
            "did i leave the {room} {device} on",
            "is the {room} {device} still on",
        ],
        responses: &[
            "The {room} {device} is on.",
            "The {device} is on.",
            "The oven is at 350 degrees.",
        ],
        confusable: &["GetWeather", "TurnOnDevice"],
    },
    IntentSpec {
        name: "SetTimer",
        domain: "timers",
        templates: &[
            "set a timer for {duration}",
            "set a {duration} timer",
            "timer for {duration}",
            "start a timer for {duration} please",
        ],
        responses: &["Timer set for {duration}.", "Timer started."],
        confusable: &["SetAlarm", "GetTimerRemaining"],
    },
    IntentSpec {
        name: "CancelTimer",
        domain: "timers",
        templates: &[
            "cancel the timer",
            "cancel my {duration} timer",
            "turn off the timer",
            "delete the timer",
        ],
        responses: &["Your {duration} timer is cancelled.", "Timer cancelled."],
        confusable: &["Stop", "SetTimer"],
    },
    IntentSpec {
        name: "SetAlarm",
        domain: "timers",
        templates: &[
            "wake me up at {time}",
            "set an alarm for {time}",
            "set an alarm for {time} {date}",
            "alarm at {time}",
        ],
        responses: &[
            "Alarm set for {time} {date}.",
            "Alarm set for {time}.",
            "Alarm set.",
        ],
        confusable: &["SetTimer"],
    },
    IntentSpec {
        name: "GetTimerRemaining",
        domain: "timers",
        templates: &[
            "how much time is left on my timer",
            "how long until the timer goes off",
            "how much time is left on the {duration} timer",
        ],
        responses: &[
            "About four minutes left on your {duration} timer.",
            "About four minutes left.",
        ],
        confusable: &["SetTimer", "GetTime"],
    },
    IntentSpec {
        name: "AddToList",
        domain: "shopping",
        templates: &[
            "add {item} to my {list_name} list",
            "put {item} on my {list_name} list",
            "add {item} to the list",
            "i need {item}",
            "add {item} and {item} to my {list_name} list",
        ],
        responses: &[
            "I added {item} to your {list_name} list.",
            "I added {item} to your list.",
            "Added.",
        ],
        confusable: &["AddToPlaylist", "RemoveFromList"],
    },
    IntentSpec {
        name: "RemoveFromList",
        domain: "shopping",
        templates: &[
            "remove {item} from my {list_name} list",
            "take {item} off the list",
            "delete {item} from my {list_name} list",
        ],
        responses: &[
            "Removed {item} from your {list_name} list.",
            "Removed {item} from your list.",
            "Removed.",
        ],
        confusable: &["AddToList"],
    },
    IntentSpec {
        name: "ReadList",
        domain: "shopping",
        templates: &[
            "what's on my {list_name} list",
            "read my {list_name} list",
            "what do i need from the store",
        ],
        responses: &[
            "Your {list_name} list has milk, eggs and bread.",
            "Your shopping list has milk, eggs and bread.",
        ],
        confusable: &["AddToList", "GetNews"],
    },
    IntentSpec {
        name: "PlayVideo",
        domain: "video",
        templates: &[
            "play {video_title}",
            "watch {video_title}",
            "show me {video_title}",
            "put on the movie {video_title}",
            "i want to watch {video_title}",
        ],
        responses: &[
            "Playing {video_title} on your screen.",
            "Here's {video_title}, the movie.",
            "Playing the movie.",
        ],
        confusable: &["PlayAudiobook", "PlayMusic"],
    },
    IntentSpec {
        name: "PlayAudiobook",
        domain: "books",
        templates: &[
            "play the audiobook {book_title}",
            "read {book_title}",
            "play {book_title}",
            "read me {book_title}",
            "start the book {book_title}",
        ],
        responses: &[
            "Here's {book_title}, the audiobook.",
            "Playing the audiobook {book_title}.",
            "Playing your audiobook.",
        ],
        confusable: &["PlayVideo", "PlayMusic", "ResumeAudiobook"],
    },
    IntentSpec {
        name: "ResumeAudiobook",
        domain: "books",
        templates: &[
            "resume my book",
            "continue my audiobook",
            "keep reading",
            "continue {book_title}",
        ],
        responses: &["Resuming {book_title}.", "Resuming your book."],
        confusable: &["PlayAudiobook", "PlayMusic"],
    },
    IntentSpec {
        name: "CallContact",
        domain: "communication",
        templates: &[
            "call {contact}",
            "phone {contact}",
            "dial {contact}",
            "give {contact} a call",
            "call {contact} on speaker",
        ],
        responses: &["Calling {contact}.", "Who do you want to call?"],
        confusable: &["SendMessage"],
    },
    IntentSpec {
        name: "SendMessage",
        domain: "communication",
        templates: &[
            "text {contact} {message}",
            "send a message to {contact} saying {message}",
            "tell {contact} {message}",
            "message {contact} {message}",
        ],
        responses: &[
            "Sending {contact}: {message}.",
            "What should the message say?",
        ],
        confusable: &["CallContact"],
    },
    IntentSpec {
        name: "GetFact",
        domain: "information",
        templates: &[
            "how tall is {topic}",
            "who built {topic}",
            "how old is {topic}",
            "tell me about {topic}",
            "where is {topic}",
        ],
        responses: &["Here's what I found about {topic}.", "Here's what I found."],
        confusable: &["GetNews", "GetWeather"],
    },
    IntentSpec {
        name: "GetNews",
        domain: "information",
        templates: &[
            "what's the news",
            "give me the {news_category} news",
            "what's happening in {news_category}",
            "play the {news_category} headlines",
        ],
        responses: &[
            "Here are the latest {news_category} headlines.",
            "Here's the news.",
        ],
        confusable: &["GetFact", "PlayMusic"],
    },
    IntentSpec {
        name: "GetTime",
        domain: "information",
        templates: &[
            "what time is it",
            "what time is it in {city}",
            "what's the time in {city}",
        ],
        responses: &["It's 4:20 PM in {city}.", "It's 4:20 PM."],
        confusable: &["GetTimerRemaining", "GetWeather"],
    },
    IntentSpec {
        name: "FindRestaurant",
        domain: "restaurants",
        templates: &[
            "find a {cuisine} restaurant in {city}",
            "where can i get {cuisine} food in {city}",
            "find {cuisine} places near me",
            "show me {cuisine} restaurants",
        ],
        responses: &[
            "I found three {cuisine} places: {options}.",
            "Here are some restaurants near you.",
        ],
        confusable: &["ReserveRestaurant", "GetFact"],
    },
    IntentSpec {
        name: "ReserveRestaurant",
        domain: "restaurants",
        templates: &[
            "book a table at {restaurant} for {party_size} at {time}",
            "reserve {restaurant} for {party_size} people",
            "get me a table at {restaurant} at {time}",
        ],
        responses: &[
            "Your table at {restaurant} is booked.",
            "Your table is booked.",
        ],
        confusable: &["FindRestaurant"],
    },
    IntentSpec {
        name: "Stop",
        domain: "global",
        // How users tell the device to stop, as they say it: some of the
        // phrasings train's stop/cancel rule lists (data::feedback), most not.
        templates: &[
            "stop",
            "cancel",
            "never mind",
            "stop it",
            "shut up",
            "be quiet",
            "forget it",
            "okay stop",
            "stop stop",
            "please stop",
            "just stop",
            "no stop",
            "cancel that",
            "forget about it",
            "that's enough",
            "enough",
            "i'm done",
            "leave it",
            "don't bother",
            "go away",
            "stop talking",
            "no thanks",
            "never mind that",
            "quit",
        ],
        responses: &[""],
        confusable: &["CancelTimer", "TurnOffDevice"],
    },
    IntentSpec {
        name: "OutOfScope",
        domain: "global",
        templates: &[
            "make me a sandwich",
            "do my laundry",
            "walk the dog",
            "clean the kitchen",
            "drive me to work",
            "water the plants for me",
            "fold my clothes",
            "take out the trash",
        ],
        responses: &["Sorry, I can't help with that."],
        confusable: &["GetFact"],
    },
    IntentSpec {
        name: "NotDeviceDirected",
        domain: "global",
        templates: &[
            "did you feed the cat",
            "i told him to come by at six",
            "can you pass the salt",
            "we should leave in ten minutes",
            "no i think it's in the other room",
            "what did your mom say",
            "i'll call you back later",
            "put your shoes on",
            "that movie was so good",
            "are you coming or not",
            "we're out of milk again",
            "turn left at the next light",
            "hey can you grab my keys",
            "it's too hot in here",
        ],
        responses: &["Sorry, I'm not sure about that."],
        confusable: &["OutOfScope"],
    },
];

pub fn intent(name: &str) -> &'static IntentSpec {
    static BY_NAME: LazyLock<HashMap<&'static str, &'static IntentSpec>> =
        LazyLock::new(|| INTENTS.iter().map(|i| (i.name, i)).collect());
    BY_NAME
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("unknown simulator intent {name}"))
}

/// Slot types an annotator plausibly confuses.
pub fn confusable_slot(slot: &str) -> &'static str {
    match slot {
        "song" => "artist",
        "artist" => "song",
        "playlist" => "genre",
        "genre" => "playlist",
        "video_title" => "book_title",
        "book_title" => "video_title",
        "date" => "time",
        "time" => "date",
        "duration" => "time",
        "device" => "room",
        "room" => "device",
        "item" => "list_name",
        "list_name" => "item",
        "city" => "restaurant",
        "restaurant" => "city",
        "cuisine" => "restaurant",
        "contact" => "message",
        "message" => "contact",
        "temperature" => "volume",
        "volume" => "temperature",
        "party_size" => "time",
        "news_category" => "topic",
        "topic" => "news_category",
        _ => "item",
    }
}

const ADJECTIVES: &[&str] = &[
    "purple", "electric", "silent", "golden", "broken", "midnight", "velvet", "crimson", "lonely",
    "wild", "hollow", "neon", "paper", "frozen", "burning", "quiet", "sweet", "bitter", "distant",
    "endless", "secret", "shallow", "restless", "silver", "little", "heavy", "gentle", "crooked",
    "hidden", "empty", "northern", "lucky", "faded", "savage", "tender", "cosmic", "rusty",
    "summer", "winter", "blue", "scarlet", "glass", "iron", "painted", "sleepy", "runaway",
    "dancing", "falling", "shining", "wicked",
];
const NOUNS: &[&str] = &[
    "haze",
    "dreams",
    "river",
    "heart",
    "highway",
    "moon",
    "garden",
    "fire",
    "ocean",
    "city",
    "mirror",
    "thunder",
    "shadow",
    "rain",
    "diamond",
    "road",
    "star",
    "window",
    "horizon",
    "echo",
    "flame",
    "island",
    "desert",
    "forest",
    "light",
    "storm",
    "valley",
    "wave",
    "tiger",
    "angel",
    "ghost",
    "machine",
    "paradise",
    "signal",
    "satellite",
    "harbor",
    "canyon",
    "feather",
    "lantern",
    "meadow",
    "rebel",
    "sparrow",
    "temple",
    "voyage",
    "whisper",
    "wolf",
    "comet",
    "crown",
    "daylight",
    "ember",
    "fever",
    "glory",
    "honey",
    "jungle",
    "kingdom",
    "lullaby",
    "memory",
    "night",
    "orchid",
    "prism",
];
const FIRST_NAMES: &[&str] = &[
    "anna", "maya", "liam", "noah", "emma", "olivia", "ava", "sophia", "mia", "lucas", "ethan",
    "mason", "logan", "james", "elena", "chloe", "grace", "zoe", "leo", "owen", "ivy", "ruby",
    "jack", "henry", "sam", "nora", "lily", "isaac", "caleb", "aria", "hannah", "ben", "max",
    "rosa", "diego", "priya", "arjun", "wei", "mei", "yuki", "kenji", "omar", "fatima", "layla",
    "ali", "sara", "david", "rachel", "tom", "kate", "peter", "laura", "mark", "julia", "carlos",
    "lucia", "marco", "sofia", "ivan", "olga", "nina", "pablo", "hugo", "clara", "felix", "iris",
    "jonas", "leah", "adam", "eva", "theo", "alice", "oscar", "stella", "victor", "wendy",
    "xavier", "yara", "zack", "bella",
];
const LAST_NAMES: &[&str] = &[
    "smith",
    "johnson",
    "brown",
    "collins",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "patel",
    "kim",
    "chen",
    "singh",
    "kowalski",
    "novak",
    "fischer",
    "weber",
    "rossi",
    "bianchi",
    "dubois",
    "moreau",
    "silva",
    "santos",
    "costa",
    "murphy",
    "kelly",
    "walsh",
    "byrne",
    "olsen",
    "larsen",
    "berg",
    "sato",
    "tanaka",
    "suzuki",
    "wang",
    "li",
    "zhang",
    "khan",
    "ahmed",
    "ali",
    "cohen",
];
pub const CITIES: &[&str] = &[
    "boston",
    "seattle",
    "austin",
    "denver",
    "chicago",
    "new york",
    "los angeles",
    "san francisco",
    "miami",
    "atlanta",
    "dallas",
    "houston",
    "phoenix",
    "portland",
    "san diego",
    "nashville",
    "detroit",
    "philadelphia",
    "minneapolis",
    "pittsburgh",
    "cleveland",
    "baltimore",
    "orlando",
    "tampa",
    "las vegas",
    "salt lake city",
    "kansas city",
    "st louis",
    "new orleans",
    "charlotte",
    "raleigh",
    "richmond",
    "buffalo",
    "albany",
    "hartford",
    "providence",
    "burlington",
    "omaha",
    "tulsa",
    "memphis",
    "louisville",
    "indianapolis",
    "columbus",
    "cincinnati",
    "milwaukee",
    "madison",
    "des moines",
    "boise",
    "spokane",
    "anchorage",
    "honolulu",
    "london",
    "paris",
    "berlin",
    "madrid",
    "rome",
    "lisbon",
    "dublin",
    "amsterdam",
    "brussels",
    "vienna",
    "prague",
    "warsaw",
    "stockholm",
    "oslo",
    "copenhagen",
    "helsinki",
    "athens",
    "istanbul",
    "cairo",
    "nairobi",
    "lagos",
    "cape town",
    "mumbai",
    "delhi",
    "bangalore",
    "tokyo",
    "osaka",
    "seoul",
    "beijing",
    "shanghai",
    "hong kong",
    "singapore",
    "bangkok",
    "jakarta",
    "manila",
    "sydney",
    "melbourne",
    "auckland",
    "toronto",
    "vancouver",
    "montreal",
    "mexico city",
    "bogota",
    "lima",
    "santiago",
    "buenos aires",
    "sao paulo",
    "rio de janeiro",
    "havana",
    "reykjavik",
    "edinburgh",
    "glasgow",
    "manchester",
    "zurich",
    "geneva",
    "munich",
    "hamburg",
    "milan",
    "naples",
    "barcelona",
    "seville",
    "valencia",
    "porto",
    "krakow",
    "budapest",
    "bucharest",
    "sofia",
    "belgrade",
    "zagreb",
];
const GENRES: &[&str] = &[
    "rock",
    "jazz",
    "pop",
    "hip hop",
    "classical",
    "country",
    "blues",
    "reggae",
    "folk",
    "metal",
    "electronic",
    "soul",
    "funk",
    "indie",
    "punk",
    "gospel",
    "latin",
    "disco",
    "ambient",
    "bluegrass",
];
const PLAYLIST_WORDS: &[&str] = &[
    "workout",
    "chill",
    "road trip",
    "dinner party",
    "focus",
    "sleep",
    "running",
    "sunday morning",
    "study",
    "party",
    "throwback",
    "summer",
    "rainy day",
    "coffee shop",
    "late night",
    "cooking",
    "yoga",
    "beach",
    "wedding",
    "feel good",
];
pub const DEVICES: &[&str] = &[
    "lights",
    "lamp",
    "fan",
    "heater",
    "air conditioner",
    "tv",
    "coffee maker",
    "oven",
    "thermostat",
    "garage door",
    "dishwasher",
    "humidifier",
    "porch light",
    "ceiling fan",
    "space heater",
];
pub const ROOMS: &[&str] = &[
    "kitchen",
    "living room",
    "bedroom",
    "bathroom",
    "garage",
    "office",
    "basement",
    "dining room",
    "hallway",
    "porch",
    "kids room",
    "guest room",
    "attic",
    "laundry room",
    "den",
];
const ITEMS: &[&str] = &[
    "milk",
    "eggs",
    "bread",
    "butter",
    "cheese",
    "apples",
    "bananas",
    "oranges",
    "grapes",
    "strawberries",
    "blueberries",
    "lemons",
    "limes",
    "avocados",
    "tomatoes",
    "potatoes",
    "onions",
    "garlic",
    "carrots",
    "broccoli",
    "spinach",
    "lettuce",
    "cucumbers",
    "peppers",
    "mushrooms",
    "rice",
    "pasta",
    "flour",
    "sugar",
    "salt",
    "pepper",
    "olive oil",
    "coffee",
    "tea",
    "orange juice",
    "yogurt",
    "cereal",
    "oatmeal",
    "peanut butter",
    "jam",
    "honey",
    "chicken",
    "beef",
    "pork",
    "salmon",
    "tuna",
    "shrimp",
    "tofu",
    "beans",
    "lentils",
    "chips",
    "crackers",
    "cookies",
    "ice cream",
    "chocolate",
    "paper towels",
    "toilet paper",
    "dish soap",
    "laundry detergent",
    "trash bags",
    "batteries",
    "light bulbs",
    "shampoo",
    "toothpaste",
    "sponges",
    "aluminum foil",
    "coffee filters",
    "dog food",
    "cat litter",
    "diapers",
    "sparkling water",
    "soda",
    "wine",
    "beer",
    "ketchup",
    "mustard",
    "mayonnaise",
    "soy sauce",
    "vinegar",
    "cinnamon",
    "vanilla",
    "baking soda",
    "yeast",
    "maple syrup",
    "granola",
    "almonds",
    "walnuts",
    "raisins",
    "celery",
    "zucchini",
    "corn",
    "peas",
    "kale",
    "cabbage",
    "pears",
    "peaches",
    "plums",
    "cherries",
    "watermelon",
    "pineapple",
    "mango",
    "bagels",
    "tortillas",
    "sour cream",
    "cream cheese",
    "hummus",
    "salsa",
];
const LIST_NAMES: &[&str] = &[
    "shopping",
    "grocery",
    "to do",
    "packing",
    "party",
    "hardware store",
    "costco",
    "christmas",
    "birthday",
    "camping",
];
/// Titles that exist both as a film and as an audiobook: device type decides which.
pub const SHARED_TITLES: &[&str] = &[
    "hunger games",
    "harry potter",
    "dune",
    "the martian",
    "little women",
    "jurassic park",
    "the hobbit",
    "gone girl",
    "life of pi",
    "the shining",
    "twilight",
    "matilda",
    "frankenstein",
    "dracula",
    "emma",
    "persuasion",
    "the godfather",
    "jaws",
    "coraline",
    "stardust",
    "wonder",
    "holes",
    "divergent",
    "atonement",
    "the road",
    "misery",
    "rebecca",
    "the help",
    "the notebook",
    "ready player one",
    "the giver",
    "the outsiders",
    "war horse",
    "the lorax",
    "the maze runner",
    "fight club",
    "the great gatsby",
    "the color purple",
    "charlotte's web",
    "the princess bride",
];
const VIDEO_PATTERNS: &[&str] = &[
    "the last {}",
    "{} rising",
    "return of the {}",
    "the {} job",
    "escape from {} island",
    "attack of the {}",
    "the {} files",
    "{} squad",
];
const BOOK_PATTERNS: &[&str] = &[
    "the {} diaries",
    "a {} in winter",
    "the song of the {}",
    "letters to the {}",
    "the {} keeper",
    "under the {}",
    "the {} and the sea",
    "a history of the {}",
];
const CUISINES: &[&str] = &[
    "italian",
    "mexican",
    "thai",
    "chinese",
    "japanese",
    "indian",
    "french",
    "greek",
    "korean",
    "vietnamese",
    "spanish",
    "lebanese",
    "ethiopian",
    "turkish",
    "american",
    "sushi",
    "pizza",
    "barbecue",
    "vegan",
    "seafood",
    "ramen",
    "tapas",
];
const RESTAURANT_KINDS: &[&str] = &[
    "trattoria",
    "kitchen",
    "bistro",
    "grill",
    "cafe",
    "diner",
    "tavern",
    "noodle bar",
    "taqueria",
    "brasserie",
];
const TOPICS: &[&str] = &[
    "the eiffel tower",
    "mount everest",
    "the golden gate bridge",
    "the great wall of china",
    "the statue of liberty",
    "big ben",
    "the colosseum",
    "the empire state building",
    "the space needle",
    "the taj mahal",
    "machu picchu",
    "stonehenge",
    "the pyramids",
    "niagara falls",
    "the grand canyon",
    "lake tahoe",
    "the amazon river",
    "mount fuji",
    "the sydney opera house",
    "the louvre",
    "kilimanjaro",
    "the dead sea",
    "yellowstone",
    "the hoover dam",
    "the leaning tower of pisa",
    "the burj khalifa",
    "angkor wat",
    "petra",
    "the acropolis",
    "mount rushmore",
];
const NEWS_CATEGORIES: &[&str] = &[
    "sports",
    "politics",
    "business",
    "technology",
    "science",
    "entertainment",
    "health",
    "world",
    "local",
    "weather",
    "financial",
    "travel",
];
pub const DATES: &[&str] = &[
    "today",
    "tomorrow",
    "tonight",
    "this weekend",
    "on monday",
    "on tuesday",
    "on wednesday",
    "on thursday",
    "on friday",
    "on saturday",
    "on sunday",
    "next week",
    "this afternoon",
    "tomorrow morning",
    "this evening",
];
const MESSAGES: &[&str] = &[
    "i'm running late",
    "on my way",
    "call me back",
    "dinner is ready",
    "can you pick up milk",
    "see you soon",
    "happy birthday",
    "i'll be home at six",
    "don't forget the keys",
    "the meeting moved to three",
    "love you",
    "thanks for today",
    "are we still on for lunch",
    "i left the door open",
    "bring an umbrella",
];
const NUMBER_WORDS: &[&str] = &[
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "ten",
    "twelve",
    "fifteen",
    "twenty",
    "thirty",
    "forty five",
    "ninety",
];

/// Every slot type and its values.
pub struct Catalog {
    values: HashMap<&'static str, Vec<String>>,
}

pub static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::build);

fn cross(a: &[&str], b: &[&str], join: &str) -> Vec<String> {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| format!("{x}{join}{y}")))
        .collect()
}

fn owned(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

impl Catalog {
    fn build() -> Catalog {
        let mut values: HashMap<&'static str, Vec<String>> = HashMap::new();
        values.insert("song", cross(ADJECTIVES, NOUNS, " "));
        let mut artists = cross(FIRST_NAMES, LAST_NAMES, " ");
        artists.extend(NOUNS.iter().map(|n| format!("the {n}s")));
        values.insert("artist", artists);
        let mut playlists = owned(PLAYLIST_WORDS);
        playlists.extend(cross(ADJECTIVES, &["mix", "vibes"], " "));
        values.insert("playlist", playlists);
        values.insert("genre", owned(GENRES));
        values.insert("city", owned(CITIES));
        values.insert("date", owned(DATES));
        let mut times = Vec::new();
        for hour in 1..=12 {
            for minute in ["", ":15", ":30", ":45"] {
                for half in ["am", "pm"] {
                    times.push(format!("{hour}{minute} {half}"));
                }
            }
        }
        times.extend(owned(&[
            "noon",
            "midnight",
            "half past seven",
            "quarter to nine",
        ]));
        values.insert("time", times);
        values.insert("device", owned(DEVICES));
        values.insert("room", owned(ROOMS));
        let mut temperatures: Vec<String> = (60..=80).map(|t| format!("{t} degrees")).collect();
        temperatures.extend((300..=450).step_by(25).map(|t| format!("{t} degrees")));
        values.insert("temperature", temperatures);
        let mut durations: Vec<String> = NUMBER_WORDS
            .iter()
            .map(|n| format!("{n} minutes"))
            .collect();
        durations.extend((1..=60).map(|n| format!("{n} minutes")));
        durations.extend(NUMBER_WORDS.iter().take(6).map(|n| format!("{n} hours")));
        durations.extend(owned(&[
            "an hour",
            "half an hour",
            "thirty seconds",
            "ninety seconds",
        ]));
        values.insert("duration", durations);
        values.insert("item", owned(ITEMS));
        values.insert("list_name", owned(LIST_NAMES));
        let mut videos: Vec<String> = VIDEO_PATTERNS
            .iter()
            .flat_map(|p| NOUNS.iter().map(move |n| p.replace("{}", n)))
            .collect();
        videos.extend(owned(SHARED_TITLES));
        values.insert("video_title", videos);
        let mut books: Vec<String> = BOOK_PATTERNS
            .iter()
            .flat_map(|p| NOUNS.iter().map(move |n| p.replace("{}", n)))
            .collect();
        books.extend(owned(SHARED_TITLES));
        values.insert("book_title", books);
        let mut contacts = owned(FIRST_NAMES);
        contacts.extend(cross(FIRST_NAMES, LAST_NAMES, " "));
        contacts.extend(owned(&[
            "mom",
            "dad",
            "grandma",
            "grandpa",
            "the office",
            "my wife",
            "my husband",
        ]));
        values.insert("contact", contacts);
        values.insert("message", owned(MESSAGES));
        values.insert("news_category", owned(NEWS_CATEGORIES));
        values.insert("cuisine", owned(CUISINES));
        let mut restaurants: Vec<String> = LAST_NAMES
            .iter()
            .flat_map(|l| RESTAURANT_KINDS.iter().map(move |k| format!("{l}'s {k}")))
            .collect();
        restaurants.extend(
            cross(&ADJECTIVES[..20], &NOUNS[..20], " ")
                .into_iter()
                .map(|n| format!("the {n}")),
        );
        values.insert("restaurant", restaurants);
        values.insert(
            "party_size",
            owned(&[
                "two", "three", "four", "five", "six", "eight", "2", "4", "6",
            ]),
        );
        values.insert("volume", (1..=10).map(|v| v.to_string()).collect());
        values.insert("topic", owned(TOPICS));
        Catalog { values }
    }

    pub fn values(&self, slot: &str) -> &[String] {
        self.values
            .get(slot)
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("unknown simulator slot {slot}"))
    }

    /// The catalog's own `'static` name for a slot type.
    pub fn slot(&self, name: &str) -> Option<&'static str> {
        self.values.get_key_value(name).map(|(k, _)| *k)
    }

    pub fn slot_types(&self) -> Vec<&'static str> {
        let mut slots: Vec<_> = self.values.keys().copied().collect();
        slots.sort();
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_large_enough_to_defeat_memorising() {
        let domains: std::collections::HashSet<_> = INTENTS
            .iter()
            .map(|i| i.domain)
            .filter(|d| *d != "global")
            .collect();
        assert!(domains.len() >= 8, "{} domains", domains.len());
        assert!(INTENTS.len() >= 25, "{} intents", INTENTS.len());
        assert!(CATALOG.slot_types().len() >= 20);
        assert!(CATALOG.values("song").len() > 2000);
        assert!(CATALOG.values("contact").len() > 2000);
    }

    #[test]
    fn every_template_slot_and_confusion_is_known() {
        for spec in INTENTS {
            assert!(
                spec.responses.last().is_some_and(|r| !r.contains('{')),
                "{} needs a response without slots",
                spec.name
            );
            for template in spec.templates.iter().chain(spec.responses) {
                for part in template.split('{').skip(1) {
                    let slot = part.split('}').next().unwrap();
                    if slot != "options" {
                        assert!(!CATALOG.values(slot).is_empty(), "{slot} in {}", spec.name);
                    }
                }
            }
            for other in spec.confusable {
                assert_eq!(intent(other).name, *other);
            }
        }
    }
}
