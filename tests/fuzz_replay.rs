//! The CI half of fuzzing (issue 17). cargo-fuzz needs nightly and runs for
//! minutes (fuzz/, by hand: tests/fuzz/README.md); CI has stable Rust and
//! `cargo test`. So this test replays the kept corpus (tests/fuzz/corpus:
//! seeds, hostile headers and every crasher found) through the same entry
//! points (tests/fuzz/targets.rs), then runs a bounded, seeded mutation
//! pass: byte flips, truncations, splices and huge numbers over the seeds.
//! Every input must be accepted or refused with an error naming its file;
//! a panic fails the test, naming the input.

#[path = "fuzz/targets.rs"]
mod targets;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use targets::Target;

fn corpus_dir(target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target.name())
}

/// The kept inputs of `target`, by file name.
fn corpus(target: Target) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no corpus", dir.display());
    files
}

/// `check` with a panic turned into the failure it is, naming the input.
fn check_without_panic(target: Target, bytes: &[u8], input: &str) -> Result<bool, String> {
    match catch_unwind(AssertUnwindSafe(|| targets::check(target, bytes))) {
        Ok(outcome) => Ok(outcome.is_ok()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{}: {input} panicked: {message}", target.name()))
        }
    }
}

#[test]
fn the_kept_corpus_is_accepted_or_refused_clearly_and_never_panics() {
    let mut tried = 0;
    for target in Target::ALL {
        for (path, bytes) in corpus(target) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let accepted = check_without_panic(target, &bytes, &name).unwrap();
            tried += 1;
            // ok-* seeds are valid inputs: the entry point reaches the
            // reader's end, so the mutations below start from real files.
            if name.starts_with("ok-") {
                assert!(accepted, "{}: {name} was refused", target.name());
            }
            if name.starts_with("hostile-") || name.starts_with("crash-") {
                assert!(!accepted, "{}: {name} was accepted", target.name());
            }
        }
    }
    println!("{tried} kept inputs replayed");
}

/// One edit of an input's bytes; positions are fractions of its length.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Remove(Index, usize),
    Insert(Index, Vec<u8>),
    /// A run of bytes of another seed (or this one) pasted in.
    Splice(Index, usize, Index, usize),
    /// A little-endian u32 or u64 of all ones or a power of two (sizes in
    /// Parquet footers, Thrift lists and safetensors headers).
    HugeBinary(Index, bool, u8),
    /// Text that no size or field should hold (JSON, TOML, USS ratings).
    HugeText(Index, &'static str),
    /// One of the input's numbers replaced, keeping JSON or TOML parseable
    /// so the value reaches the checks behind the parser.
    ReplaceNumber(Index, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let texts = [
        "4294967296",
        "18446744073709551616",
        "-1",
        "1e308",
        "NaN",
        "\u{202e}\u{0301}",
        "\"",
        "\n[",
    ];
    let numbers = [
        "0",
        "-1",
        "4294967296",
        "9223372036854775807",
        "1e300",
        "0.5",
        "99999999",
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte(at, byte)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove(at, len)),
        (
            any::<Index>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<Index>(), 0usize..8, any::<Index>(), 1usize..256)
            .prop_map(|(at, seed, from, len)| Mutation::Splice(at, seed, from, len)),
        (any::<Index>(), any::<bool>(), 0u8..64)
            .prop_map(|(at, wide, shift)| Mutation::HugeBinary(at, wide, shift)),
        (any::<Index>(), proptest::sample::select(texts.to_vec()))
            .prop_map(|(at, text)| Mutation::HugeText(at, text)),
        (any::<Index>(), proptest::sample::select(numbers.to_vec()))
            .prop_map(|(at, number)| Mutation::ReplaceNumber(at, number)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation, seeds: &[(PathBuf, Vec<u8>)]) {
    // An index into 0..=len (the end included, so inserts can append).
    let at = |i: &Index, len: usize| i.index(len + 1);
    match mutation {
        Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::SetByte(i, byte) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] = *byte;
        }
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
        Mutation::Remove(i, len) => {
            let start = at(i, bytes.len());
            let end = (start + len).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::Insert(i, new) => {
            let start = at(i, bytes.len());
            bytes.splice(start..start, new.iter().copied());
        }
        Mutation::Splice(i, seed, from, len) => {
            let other = &seeds[seed % seeds.len()].1;
            let from = from.index(other.len().max(1)).min(other.len());
            let piece = &other[from..(from + len).min(other.len())];
            let start = at(i, bytes.len());
            bytes.splice(start..start, piece.iter().copied());
        }
        Mutation::HugeBinary(i, wide, shift) => {
            let value: u64 = if *shift == 0 { u64::MAX } else { 1 << shift };
            let encoded = if *wide {
                value.to_le_bytes().to_vec()
            } else {
                (value as u32).max(1).to_le_bytes().to_vec()
            };
            overwrite(bytes, at(i, bytes.len()), &encoded);
        }
        Mutation::HugeText(i, text) => overwrite(bytes, at(i, bytes.len()), text.as_bytes()),
        Mutation::ReplaceNumber(i, number) => {
            let runs = digit_runs(bytes);
            if !runs.is_empty() {
                let (start, end) = runs[i.index(runs.len())];
                bytes.splice(start..end, number.bytes());
            }
        }
        Mutation::FlipBit(..) | Mutation::SetByte(..) => {}
    }
}

/// The (start, end) of each run of ASCII digits.
fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().chain([&b' ']).enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Writes `new` over the bytes from `start`, growing the input if needed.
fn overwrite(bytes: &mut Vec<u8>, start: usize, new: &[u8]) {
    let end = (start + new.len()).min(bytes.len());
    bytes.splice(start..end, new.iter().copied());
}

/// `cases` mutated inputs of `target`, from a fixed seed so CI sees the
/// same inputs every run (cargo-fuzz is the open-ended search).
fn mutation_pass(target: Target, cases: u32) {
    let seeds = corpus(target);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(17),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..4));
    let (accepted, refused) = (Cell::new(0), Cell::new(0));
    let result = runner.run(&strategy, |(seed, mutations)| {
        let mut bytes = seeds[seed].1.clone();
        for m in &mutations {
            apply(&mut bytes, m, &seeds);
        }
        let input = format!("{} after {mutations:?}", seeds[seed].0.display());
        match check_without_panic(target, &bytes, &input) {
            Ok(true) => accepted.set(accepted.get() + 1),
            Ok(false) => refused.set(refused.get() + 1),
            Err(failure) => return Err(TestCaseError::fail(failure)),
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    println!(
        "{}: {} mutated inputs, {} accepted, {} refused with an error naming the file",
        target.name(),
        accepted.get() + refused.get(),
        accepted.get(),
        refused.get()
    );
}

#[test]
fn mutated_parquet_tables_never_panic() {
    mutation_pass(Target::ParquetTable, 400);
}

#[test]
fn mutated_ingested_log_files_never_panic() {
    mutation_pass(Target::IngestPart, 150);
}

#[test]
fn mutated_model_configs_never_panic() {
    mutation_pass(Target::ModelConfig, 200);
}

#[test]
fn mutated_tokenizers_never_panic() {
    mutation_pass(Target::Tokenizer, 200);
}

#[test]
fn mutated_model_weights_never_panic() {
    mutation_pass(Target::ModelWeights, 300);
}

/// Each hand-made hostile weights file (tests/fuzz/hostile_weights.py) is
/// refused for its own lie, not for another one: the refusal as labelgen's
/// own model (the first part of the error) says what is wrong.
#[test]
fn each_hostile_weights_file_is_refused_for_its_lie() {
    let expected = [
        ("empty", "too short for its 8-byte header length"),
        ("seven-bytes", "too short for its 8-byte header length"),
        ("header-length-", "its header length says"),
        ("header-not-json", "invalid JSON in header"),
        ("header-a-list", "invalid JSON in header"),
        ("header-not-utf8", "invalid UTF-8 in header"),
        ("offsets-", "invalid offset for tensor"),
        ("trailing-bytes", "file not fully covered"),
        ("shape-overflows", "overflow computing buffer size"),
        (
            "shape-disagrees-with-range",
            "invalid shape, data type, or offset",
        ),
        ("shape-negative", "invalid value: integer `-360`"),
        ("dtype-unknown", "unknown variant `Q7`"),
        ("dtype-bool", "unsupported safetensor dtype BOOL"),
        ("dtype-", "weights must be F16, BF16, F32 or F64"),
        ("weight-", "holds NaN or infinite values"),
        (
            "missing-word-embeddings",
            "cannot find tensor roberta.embeddings.word_embeddings",
        ),
        (
            "word-embeddings-transposed",
            "shape mismatch for roberta.embeddings.word_embeddings",
        ),
    ];
    let mut tried = 0;
    for (path, bytes) in corpus(Target::ModelWeights) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(lie) = name.strip_prefix("hostile-") else {
            continue;
        };
        let (_, words) = expected
            .iter()
            .find(|(prefix, _)| lie.starts_with(prefix))
            .unwrap_or_else(|| panic!("{name}: no expected refusal listed"));
        let error = targets::check(Target::ModelWeights, &bytes).unwrap_err();
        let own = error
            .split("\nas a Hugging Face checkpoint")
            .next()
            .unwrap();
        assert!(own.contains(words), "{name}: expected `{words}`: {own}");
        tried += 1;
    }
    assert_eq!(tried, 26, "hostile weights files");
}

/// The kept seed `model_weights/ok-labelgen.safetensors` must hold the
/// variables today's DialogueModel has for targets::LABELGEN_CONFIG, by
/// name and shape: after a model change it would be refused, and the
/// labelgen half of the target would see only broken inputs. With
/// LABELGEN_WRITE_FUZZ_SEEDS=1 set, this test rewrites it first.
#[test]
fn the_labelgen_weights_seed_fits_the_current_model() {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use labelgen::model::config::ModelConfig;
    let config: ModelConfig = serde_json::from_slice(targets::LABELGEN_CONFIG).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    labelgen::model::DialogueModel::new(&config, vb).unwrap();
    labelgen::model::checkpoint::seeded_init(&varmap, 17).unwrap();
    let seed = corpus_dir(Target::ModelWeights).join("ok-labelgen.safetensors");
    if std::env::var_os("LABELGEN_WRITE_FUZZ_SEEDS").is_some() {
        varmap.save(&seed).unwrap();
    }
    let shapes = |tensors: Vec<(String, candle_core::Tensor)>| -> Vec<(String, Vec<usize>)> {
        let mut shapes: Vec<_> = tensors
            .into_iter()
            .map(|(name, t)| (name, t.dims().to_vec()))
            .collect();
        shapes.sort();
        shapes
    };
    let wanted = shapes(labelgen::model::checkpoint::snapshot(&varmap).unwrap());
    let kept = shapes(
        candle_core::safetensors::load(&seed, &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect(),
    );
    assert_eq!(
        kept,
        wanted,
        "{} is stale; rewrite it: LABELGEN_WRITE_FUZZ_SEEDS=1 cargo test --release --test fuzz_replay the_labelgen_weights_seed",
        seed.display()
    );
}

#[test]
fn mutated_pipeline_files_never_panic() {
    mutation_pass(Target::PipelineToml, 300);
}

#[test]
fn mutated_sgd_dialogues_never_panic() {
    mutation_pass(Target::SgdDialogues, 150);
}

#[test]
fn mutated_uss_text_never_panics() {
    mutation_pass(Target::UssText, 300);
}

/// The kept Parquet crashers through the binary too: `labelgen validate`
/// ends in an error naming the file (exit 1 or 2), never a panic report
/// (exit 101) or a signal.
#[test]
fn the_binary_reports_the_kept_parquet_crashers_as_errors() {
    let mut tried = 0;
    for (path, _) in corpus(Target::ParquetTable) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("crash-") {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_labelgen"))
            .args(["validate", path.to_str().unwrap(), "--table", "turns"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{name}: {:?} {stderr}",
            out.status
        );
        assert!(
            // A panic report reads "thread 'main' panicked at FILE:LINE".
            stderr.contains(&name) && !stderr.contains("panicked at"),
            "{stderr}"
        );
        tried += 1;
    }
    assert!(tried > 0, "no kept Parquet crasher");
}
