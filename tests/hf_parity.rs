//! The turn encoder loads Hugging Face checkpoints the way `pretrain --init`
//! does (read_hf, then the whole DialogueModel over a VarMap filled by
//! fill_varmap with hf_candidates) and reproduces transformers' hidden
//! states.
//!
//! Always run: two tiny checkpoints committed in tests/fixtures, made by
//! `scripts/hf-reference.py tiny` with their reference outputs:
//! - tiny-bert: BertModel, bare names (as sentence-transformers save them),
//!   WordPiece tokenizer; positions from 0, LayerNorm eps 1e-12;
//! - tiny-roberta: RobertaForMaskedLM, `roberta.*` and `lm_head.*` names,
//!   byte-level BPE tokenizer; positions from pad_token_id + 1.
//!
//! Ignored (run with `--ignored`): the real all-MiniLM-L6-v2 checkpoint from
//! scripts/fetch-minilm.sh; it fails, saying why, when that is absent.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use labelgen::model::DialogueModel;
use labelgen::model::checkpoint::{fill_varmap, hf_candidates, read_hf, seeded_init, snapshot};
use labelgen::model::config::{
    ARCHITECTURE, DialogueConfig, EncoderConfig, FeatureConfig, ModelConfig, TurnContext,
    TurnPooling,
};
use labelgen::model::tokenizer::{encode_pairs, special_ids};
use tokenizers::Tokenizer;

/// transformers in float32 is itself ~1.4e-6 from the float64 reference
/// (`transformers_float32_max_abs_diff` in the reference files); 1e-4 leaves
/// room for a different summation order, and is far below what any wrong
/// weight, position or mask gives (see `the_fixtures_catch_a_wrong_encoder`).
const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference(name: &str) -> serde_json::Value {
    let path = fixtures().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The model config `pretrain --init` builds around a checkpoint's encoder
/// (the dialogue part is irrelevant here and kept tiny).
fn model_config(encoder: EncoderConfig) -> ModelConfig {
    ModelConfig {
        architecture: ARCHITECTURE.into(),
        max_tokens: encoder.max_position_embeddings - encoder.position_offset(),
        encoder,
        dialogue: DialogueConfig {
            hidden_size: 16,
            num_layers: 1,
            num_heads: 2,
            intermediate_size: 64,
            max_turns: 4,
            lookahead: None,
        },
        features: FeatureConfig {
            categorical: BTreeMap::new(),
            embedding_size: 4,
            audio_dim: 0,
        },
        labels: None,
        context: TurnContext::Dialogue,
        turn_pooling: TurnPooling::Mean,
    }
}

struct Loaded {
    model: DialogueModel,
    varmap: VarMap,
    tokenizer: Tokenizer,
    config: ModelConfig,
    /// Variables fill_varmap set from the checkpoint.
    filled: usize,
}

/// As `pretrain --init DIR` loads it: read_hf, the DialogueModel over a
/// seeded VarMap, then fill_varmap with hf_candidates, every `roberta.*`
/// variable required (src/stages/pretrain.rs).
fn load_as_pretrain(dir: &Path) -> Loaded {
    let (encoder, tokenizer, weights) = read_hf(dir).unwrap();
    let config = model_config(encoder);
    let varmap = VarMap::new();
    let model = DialogueModel::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    seeded_init(&varmap, 0).unwrap();
    let filled = fill_varmap(&varmap, &weights, hf_candidates, |name| {
        name.starts_with("roberta.")
    })
    .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    Loaded {
        model,
        varmap,
        tokenizer,
        config,
        filled,
    }
}

fn pairs(reference: &serde_json::Value) -> Vec<(String, String)> {
    reference["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["utterance"].as_str().unwrap().to_string(),
                p["response"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ids_of(pair: &serde_json::Value) -> Vec<u32> {
    pair["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Token ids as the product makes them (encode_pairs), checked against
/// transformers' ids.
fn encode_and_check_ids(loaded: &Loaded, reference: &serde_json::Value) -> Vec<Vec<u32>> {
    let pairs = pairs(reference);
    let ids = encode_pairs(&loaded.tokenizer, &pairs, loaded.config.max_tokens).unwrap();
    for (pair, ids) in reference["pairs"].as_array().unwrap().iter().zip(&ids) {
        assert_eq!(
            ids,
            &ids_of(pair),
            "tokenizer.json tokenizes {:?} / {:?} as transformers does",
            pair["utterance"],
            pair["response"]
        );
    }
    ids
}

/// Hidden states of all turns in one right-padded batch, as training runs
/// them: per turn, its real tokens' rows.
fn hidden_states(loaded: &Loaded, ids: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
    let pad = special_ids(&loaded.tokenizer).unwrap().pad;
    let width = ids.iter().map(Vec::len).max().unwrap();
    let mut flat = Vec::new();
    let mut mask = Vec::new();
    for turn in ids {
        flat.extend(turn.iter().copied());
        flat.extend(std::iter::repeat_n(pad, width - turn.len()));
        mask.extend(std::iter::repeat_n(1u32, turn.len()));
        mask.extend(std::iter::repeat_n(0u32, width - turn.len()));
    }
    let shape = (ids.len(), width);
    let states: Vec<Vec<Vec<f32>>> = loaded
        .model
        .roberta
        .forward(
            &Tensor::from_vec(flat, shape, &Device::Cpu).unwrap(),
            &Tensor::from_vec(mask, shape, &Device::Cpu).unwrap(),
        )
        .unwrap()
        .to_vec3()
        .unwrap();
    states
        .into_iter()
        .zip(ids)
        .map(|(rows, turn)| rows.into_iter().take(turn.len()).collect())
        .collect()
}

/// The largest absolute difference from the reference's hidden states.
fn worst_difference(states: &[Vec<Vec<f32>>], reference: &serde_json::Value) -> f32 {
    let mut worst = 0.0f32;
    for (turn, pair) in states.iter().zip(reference["pairs"].as_array().unwrap()) {
        let expected = pair["hidden"].as_array().unwrap();
        assert_eq!(turn.len(), expected.len(), "token count");
        for (row, expected) in turn.iter().zip(expected) {
            let expected = expected.as_array().unwrap();
            assert_eq!(row.len(), expected.len(), "hidden size");
            for (value, e) in row.iter().zip(expected) {
                let diff = (value - e.as_f64().unwrap() as f32).abs();
                // NaN is never within tolerance.
                worst = if diff.is_nan() {
                    f32::INFINITY
                } else {
                    worst.max(diff)
                };
            }
        }
    }
    worst
}

/// The checkpoint's tensor for each of our variable names, by an explicit
/// map written here (not by hf_candidates), to check what fill_varmap did.
fn expected_tensors(
    dir: &Path,
    our_name: impl Fn(&str) -> Option<String>,
) -> Vec<(String, Tensor)> {
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut out: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter_map(|(name, t)| our_name(&name).map(|n| (n, t)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn assert_same_values(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}: shape");
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(a == b, "{what}: values differ from the checkpoint's");
}

/// Every variable of the loaded model that the checkpoint has holds exactly
/// the checkpoint's tensor.
fn assert_weights_from(loaded: &Loaded, expected: &[(String, Tensor)]) {
    let ours: HashMap<String, Tensor> = snapshot(&loaded.varmap).unwrap().into_iter().collect();
    for (name, tensor) in expected {
        let var = ours
            .get(name)
            .unwrap_or_else(|| panic!("the model has no variable `{name}`"));
        assert_same_values(name, var, tensor);
    }
}

fn parity(fixture: &str, reference_file: &str) {
    let dir = fixtures().join(fixture);
    let reference = reference(reference_file);
    let loaded = load_as_pretrain(&dir);
    let ids = encode_and_check_ids(&loaded, &reference);
    let worst = worst_difference(&hidden_states(&loaded, &ids), &reference);
    assert!(
        worst < TOLERANCE,
        "{fixture}: largest difference from transformers {worst:e} (tolerance {TOLERANCE:e})"
    );
    // Each turn alone, unpadded, gives the same states.
    for (i, turn) in ids.iter().enumerate() {
        let alone = hidden_states(&loaded, std::slice::from_ref(turn));
        let mut one = reference.clone();
        one["pairs"] = serde_json::Value::Array(vec![reference["pairs"][i].clone()]);
        let diff = worst_difference(&alone, &one);
        assert!(diff < TOLERANCE, "{fixture} pair {i} alone: {diff:e}");
    }
    eprintln!("{fixture} parity: largest difference from transformers {worst:e}");
}

#[test]
fn tiny_bert_matches_transformers() {
    let dir = fixtures().join("tiny-bert");
    let loaded = load_as_pretrain(&dir);
    assert_eq!(loaded.config.encoder.model_type, "bert");
    assert_eq!(loaded.config.encoder.position_offset(), 0);
    // Bare names (sentence-transformers' layout): embeddings.*, encoder.*;
    // the pooler is not part of the turn encoder.
    let expected = expected_tensors(&dir, |name| {
        (!name.starts_with("pooler.")).then(|| format!("roberta.{name}"))
    });
    assert_eq!(expected.len(), 5 + 2 * 16, "embeddings and 2 layers");
    assert_eq!(
        loaded.filled,
        expected.len(),
        "every encoder tensor, nothing else"
    );
    assert_weights_from(&loaded, &expected);
    parity("tiny-bert", "tiny_bert_reference.json");
}

#[test]
fn tiny_roberta_matches_transformers() {
    let dir = fixtures().join("tiny-roberta");
    let loaded = load_as_pretrain(&dir);
    assert_eq!(loaded.config.encoder.model_type, "roberta");
    assert_eq!(loaded.config.encoder.position_offset(), 2);
    // RobertaForMaskedLM's names are ours: roberta.* and lm_head.*.
    let expected = expected_tensors(&dir, |name| Some(name.to_string()));
    assert_eq!(
        expected.len(),
        5 + 2 * 16 + 5,
        "embeddings, 2 layers, lm_head"
    );
    assert_eq!(
        loaded.filled,
        expected.len(),
        "every tensor of the checkpoint"
    );
    assert_weights_from(&loaded, &expected);
    parity("tiny-roberta", "tiny_roberta_reference.json");
}

/// BERT checkpoints saved by BertForPreTraining/BertForMaskedLM (`bert.`
/// prefix) and old TF conversions (LayerNorm `gamma`/`beta`) load too: the
/// tiny BERT's tensors renamed so, in a temporary directory.
#[test]
fn bert_prefix_and_gamma_beta_names_load_the_same() {
    let source = fixtures().join("tiny-bert");
    let tmp = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(file), tmp.path().join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let renamed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let name = name
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            (format!("bert.{name}"), t)
        })
        .collect();
    assert!(renamed.contains_key("bert.encoder.layer.1.output.LayerNorm.gamma"));
    candle_core::safetensors::save(&renamed, tmp.path().join("model.safetensors")).unwrap();
    let loaded = load_as_pretrain(tmp.path());
    assert_eq!(loaded.filled, 5 + 2 * 16);
    let reference = reference("tiny_bert_reference.json");
    let ids = encode_and_check_ids(&loaded, &reference);
    let worst = worst_difference(&hidden_states(&loaded, &ids), &reference);
    assert!(worst < TOLERANCE, "renamed tiny BERT: {worst:e}");
}

/// The fixtures are sensitive: an encoder left at its seeded initialisation,
/// or RoBERTa positions counted from 0, is far outside the tolerance.
#[test]
fn the_fixtures_catch_a_wrong_encoder() {
    for (fixture, reference_file) in [
        ("tiny-bert", "tiny_bert_reference.json"),
        ("tiny-roberta", "tiny_roberta_reference.json"),
    ] {
        let reference = reference(reference_file);
        let (encoder, tokenizer, _) = read_hf(&fixtures().join(fixture)).unwrap();
        let varmap = VarMap::new();
        let config = model_config(encoder);
        let model = DialogueModel::new(
            &config,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        seeded_init(&varmap, 0).unwrap();
        let unloaded = Loaded {
            model,
            varmap,
            tokenizer,
            config,
            filled: 0,
        };
        let ids = encode_and_check_ids(&unloaded, &reference);
        let worst = worst_difference(&hidden_states(&unloaded, &ids), &reference);
        assert!(worst > 0.5, "{fixture} without its weights: {worst}");
    }
    // RoBERTa read as BERT: the same weights, positions shifted by two.
    let dir = fixtures().join("tiny-roberta");
    let reference = reference("tiny_roberta_reference.json");
    let (mut encoder, tokenizer, weights) = read_hf(&dir).unwrap();
    encoder.model_type = "bert".into();
    let config = model_config(encoder);
    let varmap = VarMap::new();
    let model = DialogueModel::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let filled = fill_varmap(&varmap, &weights, hf_candidates, |n| {
        n.starts_with("roberta.")
    })
    .unwrap();
    let shifted = Loaded {
        model,
        varmap,
        tokenizer,
        config,
        filled,
    };
    let ids = encode_and_check_ids(&shifted, &reference);
    let worst = worst_difference(&hidden_states(&shifted, &ids), &reference);
    assert!(worst > 0.1, "RoBERTa with positions from 0: {worst}");
}

fn minilm_dir() -> PathBuf {
    std::env::var_os("LABELGEN_MINILM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/labelgen/minilm"))
        })
        .expect("neither LABELGEN_MINILM nor HOME is set")
}

/// A real pretrained BERT (all-MiniLM-L6-v2, 6 x 384, 30,522 tokens) against
/// tests/fixtures/minilm_reference.json (scripts/hf-reference.py MODEL_DIR).
#[test]
#[ignore = "needs the MiniLM checkpoint: scripts/fetch-minilm.sh, then cargo test --release -- --ignored"]
fn minilm_hidden_states_match_transformers() {
    let dir = minilm_dir();
    assert!(
        dir.join("model.safetensors").is_file(),
        "NOT RUN: no MiniLM checkpoint in {} (model.safetensors is missing); run scripts/fetch-minilm.sh, or set LABELGEN_MINILM to its directory",
        dir.display()
    );
    let fixture = reference("minilm_reference.json");
    let loaded = load_as_pretrain(&dir);
    // sentence-transformers name the encoder's weights bare: all of them load.
    assert_eq!(loaded.filled, 5 + 6 * 16, "embeddings and 6 layers");
    let ids = encode_pairs(&loaded.tokenizer, &pairs(&fixture), 128).unwrap();
    for (pair, ids) in fixture["pairs"].as_array().unwrap().iter().zip(&ids) {
        assert_eq!(
            ids,
            &ids_of(pair),
            "tokenizer.json tokenizes as transformers does"
        );
    }
    let dims = fixture["dims"].as_u64().unwrap() as usize;
    let mut worst = 0.0f32;
    for (turn, pair) in hidden_states(&loaded, &ids)
        .iter()
        .zip(fixture["pairs"].as_array().unwrap())
    {
        for (t, row) in turn.iter().enumerate() {
            for (d, value) in row.iter().take(dims).enumerate() {
                let expected = pair["first_dims"][t][d].as_f64().unwrap() as f32;
                worst = worst.max((value - expected).abs());
            }
            let sum: f32 = row.iter().sum();
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(
                (sum - pair["sums"][t].as_f64().unwrap() as f32).abs() < 1e-3,
                "token {t}: sum {sum}"
            );
            assert!(
                (norm - pair["norms"][t].as_f64().unwrap() as f32).abs() < 1e-3,
                "token {t}: norm {norm}"
            );
        }
    }
    assert!(
        worst < TOLERANCE,
        "largest difference from transformers: {worst}"
    );
    eprintln!("MiniLM parity: largest difference from transformers {worst:e}");
}
