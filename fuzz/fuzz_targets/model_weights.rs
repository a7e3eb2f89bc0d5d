//! cargo-fuzz target: the bytes as labelgen's input for Target::ModelWeights
//! (tests/fuzz/targets.rs says what is fed and what fails).
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    // A refusal naming the file is fine; check() panics on anything else.
    let _ = targets::check(targets::Target::ModelWeights, bytes);
});
