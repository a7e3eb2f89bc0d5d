//! Utterances as pieces (carrier words and slot values), so that ASR noise
//! can change a word and slot spans still land on the right bytes.

use std::collections::HashMap;

use rand::Rng;
use rand::seq::IndexedRandom;

use super::catalog::CATALOG;
use crate::data::tables::SlotSpan;

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub slot: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Utterance {
    pub pieces: Vec<Piece>,
}

/// The slot values of one goal: chosen once, reused by every rephrase.
pub type SlotValues = HashMap<&'static str, String>;

pub fn random_value(slot: &str, rng: &mut impl Rng) -> String {
    CATALOG
        .values(slot)
        .choose(rng)
        .expect("catalog lists are not empty")
        .clone()
}

impl Utterance {
    /// Fills a template like "play {song} by {artist}": a placeholder takes the
    /// goal's value for that slot, or a fresh one for a second use in the same
    /// template ("add {item} and {item}"). Fresh values are stored in `values`.
    pub fn from_template(template: &str, values: &mut SlotValues, rng: &mut impl Rng) -> Utterance {
        let mut pieces = Vec::new();
        let mut used: Vec<&str> = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(open) => {
                    push_words(&mut pieces, &rest[..open]);
                    let close = rest[open..]
                        .find('}')
                        .map(|c| open + c)
                        .expect("templates close their braces");
                    let slot = slot_name(&rest[open + 1..close]);
                    let value = if used.contains(&slot) {
                        random_value(slot, rng)
                    } else {
                        values
                            .entry(slot)
                            .or_insert_with(|| random_value(slot, rng))
                            .clone()
                    };
                    used.push(slot);
                    pieces.push(Piece {
                        text: value,
                        slot: Some(slot),
                    });
                    rest = &rest[close + 1..];
                }
                None => {
                    push_words(&mut pieces, rest);
                    rest = "";
                }
            }
        }
        Utterance { pieces }
    }

    /// The utterance text and its slot spans (UTF-8 byte offsets, end exclusive).
    pub fn render(&self) -> (String, Vec<SlotSpan>) {
        let mut text = String::new();
        let mut spans = Vec::new();
        for piece in self.pieces.iter().filter(|p| !p.text.is_empty()) {
            if !text.is_empty() {
                text.push(' ');
            }
            let start = text.len();
            text.push_str(&piece.text);
            if let Some(slot) = piece.slot {
                spans.push(SlotSpan {
                    slot: slot.to_string(),
                    start: start as i32,
                    end: text.len() as i32,
                });
            }
        }
        (text, spans)
    }
}

/// The catalog's slot name for a placeholder (they are the same strings, but
/// pieces need a `'static` name).
fn slot_name(placeholder: &str) -> &'static str {
    CATALOG
        .slot(placeholder)
        .unwrap_or_else(|| panic!("template placeholder {{{placeholder}}} is not a catalog slot"))
}

fn push_words(pieces: &mut Vec<Piece>, literal: &str) {
    pieces.extend(literal.split_whitespace().map(|w| Piece {
        text: w.to_string(),
        slot: None,
    }));
}

/// The first response template whose placeholders all have values, filled.
/// Lists end with a template without placeholders, so one always fits.
pub fn fill_response(templates: &[&str], values: &SlotValues) -> String {
    let template = templates
        .iter()
        .find(|template| placeholders(template).all(|name| values.contains_key(name)))
        .copied()
        .unwrap_or_default();
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .expect("templates close their braces");
        out.push_str(&values[&rest[open + 1..close]]);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn spans_cover_the_slot_values() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut values = SlotValues::new();
        values.insert("song", "purple haze".into());
        let (text, spans) =
            Utterance::from_template("play {song} by {artist}", &mut values, &mut rng).render();
        assert!(text.starts_with("play purple haze by "));
        assert_eq!(
            &text[spans[0].start as usize..spans[0].end as usize],
            "purple haze"
        );
        assert_eq!(
            &text[spans[1].start as usize..spans[1].end as usize],
            values["artist"]
        );
    }

    #[test]
    fn a_repeated_placeholder_gets_a_second_value() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut values = SlotValues::new();
        values.insert("item", "milk".into());
        let u = Utterance::from_template("add {item} and {item} to my list", &mut values, &mut rng);
        let items: Vec<_> = u
            .pieces
            .iter()
            .filter(|p| p.slot == Some("item"))
            .map(|p| p.text.clone())
            .collect();
        assert_eq!(items[0], "milk");
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn responses_fall_back_to_a_template_whose_slots_are_known() {
        let mut values = SlotValues::new();
        values.insert("song", "x".into());
        let templates = [
            "Playing {song} by {artist}.",
            "Playing {song}.",
            "Playing music.",
        ];
        assert_eq!(fill_response(&templates, &values), "Playing x.");
        assert_eq!(
            fill_response(&templates, &SlotValues::new()),
            "Playing music."
        );
    }
}
