//! Tokenization with Hugging Face's tokenizers crate: a byte-level BPE
//! trained on the logs for models built from scratch, or the tokenizer.json
//! of a pretrained checkpoint.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder, TruncationParams, TruncationStrategy};

use crate::data::panics::contained;

/// RoBERTa's special tokens, in RoBERTa's id order: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
pub const SPECIAL_TOKENS: [&str; 5] = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

/// Trains a byte-level BPE on the given texts.
pub fn train_bpe<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
) -> anyhow::Result<Tokenizer> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        ByteLevel,
        RobertaProcessing,
        ByteLevelDecoder,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(ByteLevel::default()))
    .with_post_processor(Some(RobertaProcessing::new(
        ("</s>".into(), 2),
        ("<s>".into(), 0),
    )))
    .with_decoder(Some(ByteLevelDecoder::default()))
    .build()
    .map_err(|e| anyhow::anyhow!("building the tokenizer: {e}"))?;
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| anyhow::anyhow!("training the tokenizer: {e}"))?;
    let json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
    json.parse::<Tokenizer>()
        .map_err(|e| anyhow::anyhow!("reloading the tokenizer: {e}"))
}

/// Reads a tokenizer.json, which may come from an untrusted model
/// directory. tokenizers 0.22 panics on some malformed files (an `expect`
/// in its decoder and normalizer deserializers, e.g. on a file cut short
/// inside "decoder", found by fuzzing: tests/fuzz), so the JSON syntax is
/// checked first, for serde_json's line and column, and any other panic of
/// the parser is contained and reported as this file's error.
pub fn load(path: &Path) -> anyhow::Result<Tokenizer> {
    let unusable = |detail: String| {
        anyhow::anyhow!("{}: not a usable tokenizer.json: {detail}", path.display())
    };
    let text = std::fs::read_to_string(path).map_err(|e| unusable(e.to_string()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| unusable(e.to_string()))?;
    contained(|| text.parse::<Tokenizer>())
        .map_err(|panic| unusable(format!("the tokenizers crate panicked: {panic}")))?
        .map_err(|e| unusable(e.to_string()))
}

/// Turns (utterance, response) pairs into ids, truncated to `max_tokens`.
pub fn encode_pairs(
    tokenizer: &Tokenizer,
    pairs: &[(String, String)],
    max_tokens: usize,
) -> anyhow::Result<Vec<Vec<u32>>> {
    Ok(encode_with_offsets(tokenizer, pairs, max_tokens, false)?
        .into_iter()
        .map(|e| e.ids)
        .collect())
}

/// A tokenized turn: ids, and for each token its UTF-8 byte range in the
/// utterance (None for specials and response tokens).
#[derive(Debug, Clone)]
pub struct EncodedTurn {
    pub ids: Vec<u32>,
    pub utterance_offsets: Vec<Option<(usize, usize)>>,
}

/// Tokenizes (utterance, response) pairs; with `utterance_only`, the
/// utterances alone.
pub fn encode_with_offsets(
    tokenizer: &Tokenizer,
    pairs: &[(String, String)],
    max_tokens: usize,
    utterance_only: bool,
) -> anyhow::Result<Vec<EncodedTurn>> {
    let mut tokenizer = tokenizer.clone();
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            ..Default::default()
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer.with_padding(None);
    let inputs: Vec<tokenizers::EncodeInput> = pairs
        .iter()
        .map(|(u, r)| {
            if utterance_only {
                u.as_str().into()
            } else {
                (u.as_str(), r.as_str()).into()
            }
        })
        .collect();
    let encodings = tokenizer
        .encode_batch(inputs, true)
        .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
    Ok(encodings
        .into_iter()
        .map(|e| {
            let special = e.get_special_tokens_mask();
            let utterance_offsets = e
                .get_offsets()
                .iter()
                .zip(e.get_sequence_ids())
                .zip(special)
                .map(|((&(start, end), sequence), &is_special)| {
                    (sequence == Some(0) && is_special == 0 && end > start).then_some((start, end))
                })
                .collect();
            EncodedTurn {
                ids: e.get_ids().to_vec(),
                utterance_offsets,
            }
        })
        .collect())
}

/// Ids of the tokens the masked-token objective needs.
pub struct SpecialIds {
    pub pad: u32,
    pub mask: u32,
    /// Ids never masked (specials).
    pub specials: Vec<u32>,
}

pub fn special_ids(tokenizer: &Tokenizer) -> anyhow::Result<SpecialIds> {
    let id = |names: &[&str]| names.iter().find_map(|n| tokenizer.token_to_id(n));
    let pad = id(&["<pad>", "[PAD]"])
        .ok_or_else(|| anyhow::anyhow!("the tokenizer has no <pad> or [PAD] token"))?;
    let mask = id(&["<mask>", "[MASK]"])
        .ok_or_else(|| anyhow::anyhow!("the tokenizer has no <mask> or [MASK] token"))?;
    let specials = [
        "<s>", "</s>", "<pad>", "<unk>", "<mask>", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]",
    ]
    .iter()
    .filter_map(|n| tokenizer.token_to_id(n))
    .collect();
    Ok(SpecialIds {
        pad,
        mask,
        specials,
    })
}
