//! Model directories: config.json, model.safetensors, tokenizer.json and
//! training.json. Nothing is pickled: loading an untrusted directory parses
//! JSON and safetensors, and runs no code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use tokenizers::Tokenizer;

use super::DialogueModel;
use super::config::{ARCHITECTURE, EncoderConfig, ModelConfig, check_config, check_encoder_sizes};
use crate::data::dataset::{move_into_place, write_file_atomic};
use crate::data::inputs::InputSnapshot;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";
pub const TRAINING: &str = "training.json";

fn require(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{}: model directory lacks {name}\n  hint: a model directory holds config.json, model.safetensors and tokenizer.json",
        dir.display()
    );
    check_inside(dir, &path)?;
    Ok(path)
}

/// A model directory may come from an untrusted source: a file in it that
/// is a symbolic link to somewhere outside it (`config.json ->
/// /etc/passwd`) is refused rather than read.
fn check_inside(dir: &Path, path: &Path) -> anyhow::Result<()> {
    let root = dir
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let target = path
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        target.starts_with(&root),
        "{}: links to {}, outside the model directory; a model directory's files must lie inside it",
        path.display(),
        target.display()
    );
    Ok(())
}

/// config.json and tokenizer.json are read whole; a hostile directory's
/// 100 GB "config.json" gets an error, not an attempt to hold it in memory.
const MAX_JSON_BYTES: u64 = 256 << 20;

fn check_json_size(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .len();
    anyhow::ensure!(
        bytes <= MAX_JSON_BYTES,
        "{}: {bytes} bytes; a model directory's JSON files are at most {MAX_JSON_BYTES} bytes",
        path.display()
    );
    Ok(())
}

fn read_json_text(path: &Path) -> anyhow::Result<String> {
    check_json_size(path)?;
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The tokenizer must not produce ids the embedding table lacks: a
/// tokenizer.json with more word pieces than config.json's vocab_size
/// would index past the table at labelling time.
fn check_tokenizer_fits(
    tokenizer: &Tokenizer,
    path: &Path,
    config: &EncoderConfig,
) -> anyhow::Result<()> {
    let pieces = tokenizer.get_vocab_size(true);
    anyhow::ensure!(
        pieces <= config.vocab_size,
        "{}: the tokenizer has {pieces} word pieces, more than config.json's vocab_size {}",
        path.display(),
        config.vocab_size
    );
    // Counting is not enough: the ids are the file's to choose, and one
    // past the table fails only at labelling time, in candle, naming no
    // file.
    let highest = tokenizer
        .get_vocab(true)
        .into_iter()
        .max_by_key(|(_, id)| *id);
    if let Some((piece, id)) = highest {
        anyhow::ensure!(
            (id as usize) < config.vocab_size,
            "{}: word piece {piece:?} has id {id}, outside config.json's vocab_size {}",
            path.display(),
            config.vocab_size
        );
    }
    Ok(())
}

pub fn read_config(dir: &Path) -> anyhow::Result<ModelConfig> {
    let path = require(dir, CONFIG)?;
    let text = read_json_text(&path)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))?;
    let architecture = value
        .get("architecture")
        .and_then(|a| a.as_str())
        .unwrap_or("(none)");
    anyhow::ensure!(
        architecture == ARCHITECTURE,
        "{}: unknown architecture `{architecture}`; expected `{ARCHITECTURE}` (for a Hugging Face RoBERTa/BERT checkpoint, pass it with --init)",
        path.display()
    );
    let config: ModelConfig =
        serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    config
        .encoder
        .validate()
        .and_then(|()| check_config(&config))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

/// A trained model for inference, with its tokenizer.
pub fn load(dir: &Path) -> anyhow::Result<(DialogueModel, Tokenizer)> {
    let config = read_config(dir)?;
    let weights = require(dir, WEIGHTS)?;
    let tokenizer_path = require(dir, TOKENIZER)?;
    check_json_size(&tokenizer_path)?;
    let tokenizer = super::tokenizer::load(&tokenizer_path)?;
    check_tokenizer_fits(&tokenizer, &tokenizer_path, &config.encoder)?;
    let tensors = read_weights(&weights)?;
    // labelgen writes only the model's own F32 variables: every tensor of
    // its directory is a weight.
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        check_weight(&weights, name, &tensors[name])?;
    }
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &super::device());
    let model = DialogueModel::new(&config, vb).map_err(|e| {
        // The error's first line names the tensor (candle may append a backtrace).
        let reason = e.to_string();
        let reason = reason.lines().next().unwrap_or_default();
        anyhow::anyhow!(
            "{}: weights do not fit config.json: {reason}\n\
             hint: the weights belong to another model, or to an earlier labelgen (models trained before the slot tagger must be trained again with `labelgen train`)",
            weights.display()
        )
    })?;
    Ok((model, tokenizer))
}

/// Every tensor of a safetensors file. The header length is checked
/// against the file's length first; the safetensors reader then checks
/// every tensor's shape, type and byte range against the file before it
/// makes any tensor, so a hostile header cannot size an allocation.
fn read_weights(path: &Path) -> anyhow::Result<HashMap<String, Tensor>> {
    check_header_length(path)?;
    candle_core::safetensors::load(path, &super::device()).map_err(|e| {
        let reason = e.to_string();
        let reason = reason.lines().next().unwrap_or_default().to_string();
        anyhow::anyhow!(
            "{}: not a readable safetensors file: {reason}",
            path.display()
        )
    })
}

/// A tensor a model uses as a weight must be floating point (F16, BF16,
/// F32, F64: an integer, boolean or 4/6/8-bit tensor is no weight labelgen
/// can use, and candle's conversion of the 4/6/8-bit types fails naming no
/// file) and finite (one NaN or infinite weight makes every probability
/// downstream NaN).
fn check_weight(path: &Path, name: &str, tensor: &Tensor) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(
            tensor.dtype(),
            DType::F16 | DType::BF16 | DType::F32 | DType::F64
        ),
        "{}: tensor `{name}` is {:?}; weights must be F16, BF16, F32 or F64",
        path.display(),
        tensor.dtype()
    );
    anyhow::ensure!(
        all_finite(tensor)?,
        "{}: tensor `{name}` holds NaN or infinite values",
        path.display()
    );
    Ok(())
}

/// The header length (the file's first 8 bytes) checked against the file's
/// length before the file is read whole: a truncated or hostile file gets
/// an error saying what it claims, not a read of gigabytes first.
fn check_header_length(path: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let file_len = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .len();
    let mut first = [0u8; 8];
    file.read_exact(&mut first).map_err(|_| {
        anyhow::anyhow!(
            "{}: not a readable safetensors file: {file_len} bytes, too short for its 8-byte header length",
            path.display()
        )
    })?;
    let header_len = u64::from_le_bytes(first);
    anyhow::ensure!(
        header_len <= file_len - 8,
        "{}: not a readable safetensors file: its header length says {header_len} bytes, more than the {} after it",
        path.display(),
        file_len - 8
    );
    Ok(())
}

/// Whether every value is finite: 0 * x is 0 for finite x and NaN for NaN
/// and the infinities, so the sum is NaN exactly when one is not finite.
fn all_finite(tensor: &Tensor) -> anyhow::Result<bool> {
    let sum = (tensor * 0.0)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(!sum.is_nan())
}

/// Sets every variable of `varmap` from `weights`, by name, checking shapes.
/// `candidates` gives the names a variable may have in the file; variables
/// for which `required` holds must be found.
pub fn fill_varmap(
    varmap: &VarMap,
    weights: &Path,
    candidates: impl Fn(&str) -> Vec<String>,
    required: impl Fn(&str) -> bool,
) -> anyhow::Result<usize> {
    let tensors = read_weights(weights)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut loaded = 0;
    for name in names {
        let var = &vars[name];
        let found = candidates(name)
            .into_iter()
            .find_map(|c| tensors.get(&c).map(|t| (c, t)));
        match found {
            Some((source, tensor)) => {
                // Only the tensors used are checked: a Hugging Face file
                // may hold integer buffers (position_ids) besides weights.
                check_weight(weights, &source, tensor)?;
                anyhow::ensure!(
                    tensor.dims() == var.dims(),
                    "{}: `{source}` has shape {:?}, the model needs {:?} for `{name}`",
                    weights.display(),
                    tensor.dims(),
                    var.dims()
                );
                var.set(&tensor.to_dtype(DType::F32)?)?;
                loaded += 1;
            }
            None if required(name) => {
                anyhow::bail!(
                    "{}: no weight for `{name}` (looked for {:?})",
                    weights.display(),
                    candidates(name)
                )
            }
            None => {}
        }
    }
    Ok(loaded)
}

/// Names a turn-encoder variable may have in a Hugging Face checkpoint:
/// with our `roberta.` prefix, with `bert.`, or bare (sentence-transformers).
pub fn hf_candidates(name: &str) -> Vec<String> {
    let Some(rest) = name.strip_prefix("roberta.") else {
        return vec![name.to_string()];
    };
    let mut out = vec![name.to_string(), rest.to_string(), format!("bert.{rest}")];
    for (new, old) in [
        ("LayerNorm.weight", "LayerNorm.gamma"),
        ("LayerNorm.bias", "LayerNorm.beta"),
    ] {
        if let Some(stem) = rest.strip_suffix(new) {
            out.extend([format!("{stem}{old}"), format!("bert.{stem}{old}")]);
        }
    }
    out
}

/// A Hugging Face RoBERTa/BERT checkpoint's encoder config and tokenizer.
pub fn read_hf(dir: &Path) -> anyhow::Result<(EncoderConfig, Tokenizer, PathBuf)> {
    let config_path = require(dir, CONFIG)?;
    let text = read_json_text(&config_path)?;
    let config: EncoderConfig = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{}: not a RoBERTa/BERT config: {e}", config_path.display())
    })?;
    config
        .validate()
        .and_then(|()| check_encoder_sizes(&config))
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let tokenizer_path = require(dir, TOKENIZER)?;
    check_json_size(&tokenizer_path)?;
    let tokenizer = super::tokenizer::load(&tokenizer_path)?;
    check_tokenizer_fits(&tokenizer, &tokenizer_path, &config)?;
    Ok((config, tokenizer, require(dir, WEIGHTS)?))
}

/// The files of model directory `dir` that exist (config.json,
/// tokenizer.json, model.safetensors), stamped before a job reads them so
/// a directory replaced mid-run fails the job ([`InputSnapshot`]). A
/// missing file is the loader's error to report, not a change.
pub fn input_snapshot(dir: &Path) -> anyhow::Result<InputSnapshot> {
    let files = [CONFIG, TOKENIZER, WEIGHTS]
        .into_iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file());
    Ok(InputSnapshot::of_files(files)?)
}

/// Writes a model directory through a staging directory renamed into place.
pub fn save(
    dir: &Path,
    config: &ModelConfig,
    varmap: &VarMap,
    tokenizer: &Tokenizer,
    training: &serde_json::Value,
) -> anyhow::Result<()> {
    let nothing_else = |_: &Path| Ok(());
    save_guarded(
        dir,
        (config, varmap, tokenizer, training),
        &InputSnapshot::default(),
        nothing_else,
    )
}

/// An empty hidden sibling of model directory `dir` (`.NAME.tmp-PID`) to
/// write the model into before it is renamed into place.
fn fresh_staging(dir: &Path) -> anyhow::Result<PathBuf> {
    let staging = dir.with_file_name(format!(
        ".{}.tmp-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("model"),
        std::process::id()
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", staging.display()))?;
    Ok(staging)
}

/// Fails now, naming the directory, when no model can be written at `dir`
/// (a read-only parent): a stage calls it before it trains, not hours later
/// at the first checkpoint.
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let staging = fresh_staging(dir)?;
    std::fs::remove_dir(&staging)
        .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", staging.display()))
}

/// What a model directory holds: config.json, the weights, tokenizer.json
/// and training.json.
pub type ModelFiles<'a> = (
    &'a ModelConfig,
    &'a VarMap,
    &'a Tokenizer,
    &'a serde_json::Value,
);

/// [`save`] for a stage's final model: `extra` writes more files into the
/// staging directory (a curve plot), and `inputs` (what the stage read) are
/// checked after everything is written and before the rename, so a model
/// trained on files that changed meanwhile is never moved into place.
pub fn save_guarded(
    dir: &Path,
    (config, varmap, tokenizer, training): ModelFiles,
    inputs: &InputSnapshot,
    extra: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let staging = fresh_staging(dir)?;
    let result = (|| -> anyhow::Result<()> {
        write_file_atomic(
            &staging.join(CONFIG),
            serde_json::to_string_pretty(config)?.as_bytes(),
        )?;
        varmap
            .save(staging.join(WEIGHTS))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", staging.display()))?;
        tokenizer
            .save(staging.join(TOKENIZER), false)
            .map_err(|e| anyhow::anyhow!("saving the tokenizer: {e}"))?;
        write_file_atomic(
            &staging.join(TRAINING),
            serde_json::to_string_pretty(training)?.as_bytes(),
        )?;
        extra(&staging)?;
        inputs.check_unchanged()?;
        move_into_place(&staging, dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// All variables of a map, by name, for the optimizer.
pub fn named_vars(varmap: &VarMap) -> anyhow::Result<Vec<(String, candle_core::Var)>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
    Ok(vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
}

/// A copy of every variable's current value, in storage of its own (the
/// variables keep changing; a snapshot must not).
pub fn snapshot(varmap: &VarMap) -> anyhow::Result<Vec<(String, Tensor)>> {
    let mut out = named_vars(varmap)?
        .into_iter()
        .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
        .collect::<anyhow::Result<Vec<(String, Tensor)>>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Initialises every variable from `seed`, as Hugging Face's `_init_weights`
/// does: normal(0, 0.02) for weights and embeddings, zeros for biases, ones
/// for LayerNorm weights. candle cannot seed its CPU random generator, and a
/// run must be reproducible from --seed.
pub fn seeded_init(varmap: &VarMap, seed: u64) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    let mut vars = named_vars(varmap)?;
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, var)) in vars.iter().enumerate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i as u64);
        let n = var.elem_count();
        let norm = name.contains("LayerNorm.")
            || name.contains("layer_norm.")
            || name.contains("turn_norm.");
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; n]
        } else if norm {
            vec![1.0; n]
        } else {
            // Box-Muller: two uniforms give one standard normal.
            (0..n)
                .map(|_| {
                    let (u, v): (f64, f64) =
                        (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
                    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * 0.02) as f32
                })
                .collect()
        };
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// MODEL.checkpoint beside MODEL: the state an interrupted run resumes from.
pub fn resume_dir(out: &Path) -> PathBuf {
    sibling_dir(out, "checkpoint")
}

/// `OUT.SUFFIX`, beside model directory `out`: what a run keeps outside
/// the model until it finishes.
pub fn sibling_dir(out: &Path, suffix: &str) -> PathBuf {
    out.with_file_name(format!(
        "{}.{suffix}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("model")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_finds_one_nan_or_infinity() {
        let device = candle_core::Device::Cpu;
        for (values, finite) in [
            (vec![0.5f32, -2.0, 6e4], true),
            (vec![0.5, f32::NAN, 1.0], false),
            (vec![f32::NEG_INFINITY, 0.0, 1.0], false),
        ] {
            let tensor = Tensor::new(values.as_slice(), &device).unwrap();
            assert_eq!(all_finite(&tensor).unwrap(), finite, "{values:?}");
            let half = tensor.to_dtype(DType::F16).unwrap();
            assert_eq!(all_finite(&half).unwrap(), finite, "F16 {values:?}");
        }
    }

    #[test]
    fn a_header_length_past_the_end_is_refused_before_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let mut bytes = (u64::MAX).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, &bytes).unwrap();
        let err = check_header_length(&path).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("more than the 2 after it"),
            "{err}"
        );
        std::fs::write(&path, [2, 0, 0, 0, 0, 0, 0, 0, b'{', b'}']).unwrap();
        check_header_length(&path).unwrap();
        std::fs::write(&path, [2, 0, 0]).unwrap();
        let err = check_header_length(&path).unwrap_err().to_string();
        assert!(err.contains("3 bytes, too short"), "{err}");
    }
}
