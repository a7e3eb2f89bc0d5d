//! The fuzz entry points (issue 17), shared by the cargo-fuzz targets in
//! fuzz/fuzz_targets/ and by tests/fuzz_replay.rs, which includes this file
//! with `#[path]`: one definition of what each reader is fed and what
//! counts as a failure.
//!
//! Each target writes the bytes where labelgen would find them (a part
//! file, a model directory's config.json, a pipeline file, an SGD split, a
//! USS text file) in a fresh temporary directory and calls the library
//! function that `labelgen` calls on it. Accepting the bytes is fine;
//! refusing them is fine if the error names the file (so a user can find
//! it); a panic, an abort or an unbounded allocation is a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use labelgen::data::dataset::read_table;
use labelgen::data::tables::{Annotation, Label, Turn};
use labelgen::model::DialogueModel;
use labelgen::model::checkpoint;
use labelgen::pipeline::config::PipelineFile;
use labelgen::pipeline::plan::Plan;
use labelgen::stages::import::{sgd, uss};
use labelgen::stages::ingest;

/// A small Hugging Face RoBERTa checkpoint (tests/fixtures/tiny-roberta):
/// the rest of the model directory around a fuzzed config.json or
/// tokenizer.json.
const ROBERTA_CONFIG: &[u8] = include_bytes!("../fixtures/tiny-roberta/config.json");
const ROBERTA_TOKENIZER: &[u8] = include_bytes!("../fixtures/tiny-roberta/tokenizer.json");
const ROBERTA_WEIGHTS: &[u8] = include_bytes!("../fixtures/tiny-roberta/model.safetensors");
/// A labelgen model directory's config.json (tiny-roberta's encoder under a
/// one-layer dialogue model) around fuzzed weights; its weights are the
/// kept seed `corpus/model_weights/ok-labelgen.safetensors`.
pub const LABELGEN_CONFIG: &[u8] = include_bytes!("labelgen-model/config.json");
/// The SGD split's schema.json around a fuzzed dialogues file.
const SGD_SCHEMA: &[u8] = include_bytes!("../fixtures/sgd/schema.json");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A part file read as the turns, annotations and labels tables.
    ParquetTable,
    /// A log part file in an hourly partition, ingested (the parquet
    /// crate's reader handed to polars).
    IngestPart,
    /// A model directory's config.json, read as labelgen's model config
    /// (and the model loaded when it passes) and as a Hugging Face config.
    ModelConfig,
    /// A Hugging Face model directory's tokenizer.json.
    Tokenizer,
    /// A model directory's model.safetensors, loaded as labelgen's own
    /// model and as a Hugging Face checkpoint.
    ModelWeights,
    /// A pipeline file, parsed and planned (no step runs).
    PipelineToml,
    /// An SGD split's dialogues_001.json, imported.
    SgdDialogues,
    /// A USS text file, imported.
    UssText,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Target::ParquetTable,
        Target::IngestPart,
        Target::ModelConfig,
        Target::Tokenizer,
        Target::ModelWeights,
        Target::PipelineToml,
        Target::SgdDialogues,
        Target::UssText,
    ];

    /// The corpus folder under tests/fuzz/corpus and the cargo-fuzz target name.
    pub fn name(self) -> &'static str {
        match self {
            Target::ParquetTable => "parquet_table",
            Target::IngestPart => "ingest_part",
            Target::ModelConfig => "model_config",
            Target::Tokenizer => "tokenizer",
            Target::ModelWeights => "model_weights",
            Target::PipelineToml => "pipeline_toml",
            Target::SgdDialogues => "sgd_dialogues",
            Target::UssText => "uss_text",
        }
    }
}

/// What a target did with its bytes: accepted them, or refused them with
/// this error (its whole `{:#}` chain).
pub type Outcome = Result<(), String>;

/// Feeds `bytes` to `target`'s reader in a fresh temporary directory and
/// checks that a refusal names the input; panics (the fuzzer's crash) when
/// the reader panics or the error does not say where the problem is.
pub fn check(target: Target, bytes: &[u8]) -> Outcome {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let outcome = feed(target, bytes, dir.path());
    if let Err(message) = &outcome {
        let named = message.contains(&dir.path().display().to_string());
        assert!(
            named,
            "{}: the error does not name the input under {}: {message}",
            target.name(),
            dir.path().display()
        );
    }
    outcome
}

/// Writes `bytes` under `dir` as `target`'s input and runs its reader.
pub fn feed(target: Target, bytes: &[u8], dir: &Path) -> Outcome {
    let result = match target {
        Target::ParquetTable => parquet_table(bytes, dir),
        Target::IngestPart => ingest_part(bytes, dir),
        Target::ModelConfig => model_config(bytes, dir),
        Target::Tokenizer => tokenizer(bytes, dir),
        Target::ModelWeights => model_weights(bytes, dir),
        Target::PipelineToml => pipeline_toml(bytes, dir),
        Target::SgdDialogues => sgd_dialogues(bytes, dir),
        Target::UssText => uss_text(bytes, dir),
    };
    result.map_err(|e| format!("{e:#}"))
}

fn write(path: PathBuf, bytes: &[u8]) -> PathBuf {
    std::fs::write(&path, bytes).expect("the temporary directory is writable");
    path
}

/// Every table reader on one part file, alone and in a dataset directory.
fn parquet_table(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let dataset = dir.join("table");
    std::fs::create_dir(&dataset)?;
    let part = write(dataset.join("part-00000.parquet"), bytes);
    let turns = read_table::<Turn>(&part).map(drop);
    let annotations = read_table::<Annotation>(&dataset).map(drop);
    let labels = read_table::<Label>(&part).map(drop);
    // A file is one table at most: refused by all three is the refusal.
    turns.or(annotations).or(labels).map_err(Into::into)
}

/// One hour of hive-partitioned logs holding the part file.
fn ingest_part(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let hour = dir.join("logs/date=2026-11-01/hour=00");
    std::fs::create_dir_all(&hour)?;
    write(hour.join("part-00000.parquet"), bytes);
    let mut config = ingest::IngestConfig::new(dir.join("logs"), dir.join("out"));
    config.quiet = true;
    ingest::run(&config).map(drop)
}

/// config.json as labelgen's own model config (loading the model when the
/// config passes: the weights are RoBERTa's, so only a config lying about
/// them gets that far) and as a Hugging Face encoder config.
fn model_config(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let model = dir.join("model");
    std::fs::create_dir(&model)?;
    write(model.join("config.json"), bytes);
    write(model.join("tokenizer.json"), ROBERTA_TOKENIZER);
    write(model.join("model.safetensors"), ROBERTA_WEIGHTS);
    let own = checkpoint::read_config(&model).and_then(|_| checkpoint::load(&model).map(drop));
    let hugging_face = checkpoint::read_hf(&model).map(drop);
    // A config is either labelgen's or Hugging Face's: refused by both is
    // the only refusal.
    match (own, hugging_face) {
        (Err(own), Err(_)) => Err(own),
        _ => Ok(()),
    }
}

fn tokenizer(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let model = dir.join("model");
    std::fs::create_dir(&model)?;
    write(model.join("config.json"), ROBERTA_CONFIG);
    write(model.join("tokenizer.json"), bytes);
    write(model.join("model.safetensors"), ROBERTA_WEIGHTS);
    checkpoint::read_hf(&model).map(drop)
}

/// model.safetensors in two model directories, each loaded the way a stage
/// loads it: labelgen's own (LABELGEN_CONFIG) as `label` and `eval` do
/// (`checkpoint::load`), and a Hugging Face one (tiny-roberta's config and
/// tokenizer) as `pretrain --init` does (`read_hf`, then `fill_varmap` with
/// `hf_candidates`, every encoder variable required). Weights are one
/// model's or the other's: refused by both is the refusal, and it must name
/// model.safetensors (config and tokenizer are fixed and good).
fn model_weights(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let own = dir.join("own");
    std::fs::create_dir(&own)?;
    write(own.join("config.json"), LABELGEN_CONFIG);
    write(own.join("tokenizer.json"), ROBERTA_TOKENIZER);
    write(own.join("model.safetensors"), bytes);
    let hf = dir.join("hf");
    std::fs::create_dir(&hf)?;
    write(hf.join("config.json"), ROBERTA_CONFIG);
    write(hf.join("tokenizer.json"), ROBERTA_TOKENIZER);
    write(hf.join("model.safetensors"), bytes);
    let (Err(own), Err(hf)) = (checkpoint::load(&own).map(drop), as_pretrain_init(&hf)) else {
        return Ok(());
    };
    let (own, hf) = (format!("{own:#}"), format!("{hf:#}"));
    for refusal in [&own, &hf] {
        assert!(
            refusal.contains("model.safetensors"),
            "model_weights: the refusal does not name model.safetensors: {refusal}"
        );
    }
    anyhow::bail!("{own}\nas a Hugging Face checkpoint: {hf}")
}

/// As `pretrain --init DIR` loads a checkpoint (src/stages/pretrain.rs).
fn as_pretrain_init(dir: &Path) -> anyhow::Result<()> {
    let (encoder, _, weights) = checkpoint::read_hf(dir)?;
    let own: labelgen::model::config::ModelConfig = serde_json::from_slice(LABELGEN_CONFIG)?;
    let config = labelgen::model::config::ModelConfig { encoder, ..own };
    let varmap = VarMap::new();
    DialogueModel::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    checkpoint::fill_varmap(&varmap, &weights, checkpoint::hf_candidates, |name| {
        name.starts_with("roberta.")
    })
    .map(drop)
}

/// Parsed and planned: the plan checks every path the file names, and
/// reads nothing else.
fn pipeline_toml(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let path = write(dir.join("pipeline.toml"), bytes);
    let file = PipelineFile::load(&path)?;
    Plan::build(&file, &path).map(drop)
}

fn sgd_dialogues(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let split = dir.join("train");
    std::fs::create_dir(&split)?;
    write(split.join("schema.json"), SGD_SCHEMA);
    write(split.join("dialogues_001.json"), bytes);
    sgd::run(&sgd::SgdConfig::new(split, dir.join("out"))).map(drop)
}

fn uss_text(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let input = write(dir.join("SGD.txt"), bytes);
    uss::run(&uss::UssConfig::new(input, dir.join("out"))).map(drop)
}
