//! What users do when the assistant failed them, detected from the text of
//! the logs: they repeat or correct the request, or tell it to stop. Train's
//! weak labels and label's goal boundaries both read these signals.

/// Words that open a correction of the previous request.
const CORRECTION_LEADS: [&str; 5] = ["no i said", "i said", "i meant", "no no", "no,"];
const STOP_PHRASES: [&str; 10] = [
    "stop",
    "cancel",
    "never mind",
    "nevermind",
    "stop it",
    "cancel it",
    "shut up",
    "be quiet",
    "forget it",
    "quiet",
];

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn normalised(text: &str) -> String {
    words(text).join(" ")
}

/// The next utterance repeats or corrects `previous`.
pub fn is_rephrase(previous: &str, next: &str) -> bool {
    let lower = next.trim().to_lowercase();
    if CORRECTION_LEADS
        .iter()
        .any(|lead| lower.starts_with(lead) && lower.len() > lead.len() + 1)
    {
        return true;
    }
    let (a, b) = (words(previous), words(next));
    if a.len() < 2 || b.len() < 2 {
        return false;
    }
    let a: std::collections::BTreeSet<&String> = a.iter().collect();
    let b: std::collections::BTreeSet<&String> = b.iter().collect();
    let shared = a.intersection(&b).count() as f64;
    shared / a.union(&b).count() as f64 >= 0.5
}

pub fn is_stop_or_cancel(utterance: &str) -> bool {
    STOP_PHRASES.contains(&normalised(utterance).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rephrases_and_corrections_are_detected() {
        assert!(is_rephrase("play purple haze", "play purple haze please"));
        assert!(is_rephrase("call anna", "no i said hannah"));
        assert!(!is_rephrase("play purple haze", "what's the weather"));
        assert!(
            !is_rephrase("yes", "yes"),
            "one-word turns are not rephrases"
        );
        assert!(is_stop_or_cancel("Never mind."));
        assert!(!is_stop_or_cancel("stop the timer in the kitchen"));
    }
}
