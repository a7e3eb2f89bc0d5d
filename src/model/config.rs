//! Model configuration, stored as config.json in a model directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The turn encoder's configuration, with Hugging Face's field names, so a
/// RoBERTa or BERT checkpoint's config.json reads as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// "roberta" or "bert".
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "one")]
    pub type_vocab_size: usize,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "gelu")]
    pub hidden_act: String,
}

fn one() -> usize {
    1
}
fn eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}

impl EncoderConfig {
    /// A small RoBERTa that trains on a 2-core CPU in minutes.
    pub fn small(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        max_tokens: usize,
    ) -> EncoderConfig {
        EncoderConfig {
            model_type: "roberta".into(),
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: hidden * 4,
            // RoBERTa positions start after the padding index.
            max_position_embeddings: max_tokens + 2,
            type_vocab_size: 1,
            layer_norm_eps: 1e-5,
            pad_token_id: 1,
            hidden_act: "gelu".into(),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            matches!(self.model_type.as_str(), "roberta" | "bert"),
            "unknown architecture `{}`: the turn encoder loads RoBERTa or BERT checkpoints (config.json model_type \"roberta\" or \"bert\")",
            self.model_type
        );
        anyhow::ensure!(
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            "hidden_size {} is not a multiple of num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        anyhow::ensure!(
            matches!(self.hidden_act.as_str(), "gelu" | "gelu_new" | "relu"),
            "unsupported hidden_act `{}` (gelu, gelu_new or relu)",
            self.hidden_act
        );
        Ok(())
    }

    /// Positions of RoBERTa start at pad_token_id + 1; BERT's at 0.
    pub fn position_offset(&self) -> usize {
        if self.model_type == "roberta" {
            self.pad_token_id as usize + 1
        } else {
            0
        }
    }
}

/// The dialogue Transformer over turns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialogueConfig {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    /// Turns per window; longer dialogues are cut into windows.
    pub max_turns: usize,
    /// How many later turns each turn may attend to (None: all). The user's
    /// next turn tells whether a response failed; turns far ahead mostly
    /// belong to other goals, and letting them in blurs a turn's intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead: Option<usize>,
}

/// The categorical and numeric runtime features of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Column -> values; index 0 is reserved for null or unseen values.
    pub categorical: BTreeMap<String, Vec<String>>,
    pub embedding_size: usize,
    /// Length of audio_embedding (0: none).
    pub audio_dim: usize,
}

pub const CATEGORICAL_COLUMNS: [&str; 5] = [
    "device_type",
    "device_state",
    "domain",
    "nlu_intent",
    "dialogue_status",
];
/// asr_confidence, nlu_confidence (each with a "present" flag), user and
/// response token counts (log), barge_in, explicit_feedback.
pub const NUMERIC_FEATURES: usize = 8;

/// Everything needed to rebuild the model: config.json of a model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Always "labelgen-dialogue"; anything else is not a labelgen model.
    pub architecture: String,
    pub encoder: EncoderConfig,
    pub dialogue: DialogueConfig,
    pub features: FeatureConfig,
    /// Tokens per turn (utterance and response together) fed to the encoder.
    pub max_tokens: usize,
    /// The supervised heads' label sets, once `train` has added them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelSets>,
    /// What a turn's vector is made of: the dialogue around it, or the
    /// turn alone (the baselines). Stored as the flags `contextless` and
    /// `utterance_only`, as config.json always held it, and
    /// `runtime_features` for the baseline that keeps them.
    #[serde(flatten)]
    pub context: TurnContext,
    /// How a turn's token states become its vector.
    #[serde(default)]
    pub turn_pooling: TurnPooling,
}

/// What the model sees of a turn's context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ContextFlags", into = "ContextFlags")]
pub enum TurnContext {
    /// The labeller: runtime features and the dialogue Transformer over the
    /// turns; the encoder reads the utterance and the response as a pair.
    #[default]
    Dialogue,
    /// The baseline the evaluation compares against: each turn alone, from
    /// its utterance and response only (no runtime features, no dialogue
    /// Transformer).
    TurnOnly,
    /// The contextless baseline whose encoder reads the user utterance
    /// alone, without the system response: what an NLU model sees.
    UtteranceOnly,
    /// The ablation that drops only the other turns: each turn alone (its
    /// utterance and response, no dialogue Transformer) with the runtime
    /// features the labeller gets per turn (device, runtime hypotheses and
    /// confidences, barge-in, feedback, audio). Against the labeller it
    /// measures what the dialogue context adds; against `TurnOnly`, what
    /// the runtime features add.
    TurnWithRuntime,
}

impl TurnContext {
    /// Each turn alone, without the dialogue Transformer over the turns.
    pub fn contextless(self) -> bool {
        self != TurnContext::Dialogue
    }

    /// The turn's runtime features (categorical, numeric, audio) enter its
    /// vector; the other baselines see text only.
    pub fn runtime_features(self) -> bool {
        matches!(self, TurnContext::Dialogue | TurnContext::TurnWithRuntime)
    }

    /// The encoder reads the user utterance without the system response.
    pub fn utterance_only(self) -> bool {
        self == TurnContext::UtteranceOnly
    }
}

/// [`TurnContext`] as config.json stores it: flags, each left out when
/// false, so model directories written before the enum (or before
/// `runtime_features`) read the same. `runtime_features` is written only by
/// the contextless baseline that keeps them; the labeller keeps them too,
/// as it always did, without the flag.
#[derive(Serialize, Deserialize)]
struct ContextFlags {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    contextless: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    utterance_only: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    runtime_features: bool,
}

impl TryFrom<ContextFlags> for TurnContext {
    type Error = String;
    fn try_from(flags: ContextFlags) -> Result<TurnContext, String> {
        match (flags.contextless, flags.utterance_only, flags.runtime_features) {
            (false, false, false) => Ok(TurnContext::Dialogue),
            (true, false, false) => Ok(TurnContext::TurnOnly),
            (true, true, false) => Ok(TurnContext::UtteranceOnly),
            (true, false, true) => Ok(TurnContext::TurnWithRuntime),
            (false, true, _) => Err("`utterance_only` is set without `contextless`".into()),
            (false, false, true) => Err("`runtime_features` is set without `contextless`".into()),
            (true, true, true) => Err(
                "`runtime_features` with `utterance_only`: no labelgen model reads the utterance alone with runtime features"
                    .into(),
            ),
        }
    }
}

impl From<TurnContext> for ContextFlags {
    fn from(context: TurnContext) -> ContextFlags {
        ContextFlags {
            contextless: context.contextless(),
            utterance_only: context.utterance_only(),
            runtime_features: context == TurnContext::TurnWithRuntime,
        }
    }
}

/// How many later turns each turn may attend to in the dialogue Transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Lookahead {
    All,
    Turns(usize),
}

impl Lookahead {
    /// As [`DialogueConfig::lookahead`] holds it: None for all turns.
    pub fn limit(self) -> Option<usize> {
        match self {
            Lookahead::All => None,
            Lookahead::Turns(turns) => Some(turns),
        }
    }
}

/// The turn vector: the first token's state (<s> / [CLS], what a RoBERTa
/// pretrained here learns to fill), or the mean over the turn's tokens (what
/// sentence-transformers encoders such as all-MiniLM-L6-v2 are trained for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TurnPooling {
    #[default]
    First,
    Mean,
}

/// What the supervised heads predict, and their calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSets {
    pub intents: Vec<String>,
    pub slot_types: Vec<String>,
    pub failure_points: Vec<String>,
    /// Softmax/sigmoid temperature per head, fitted on the dev split.
    pub temperatures: BTreeMap<String, f64>,
    /// A turn starts a new goal when its boundary probability passes this
    /// (chosen on the dev split for boundary F1).
    #[serde(default = "half")]
    pub boundary_threshold: f64,
    /// Added to the boundary logit of a turn that rephrases the previous
    /// one (fitted on the dev split with the threshold; 0: no effect).
    #[serde(default)]
    pub rephrase_boundary_shift: f64,
    /// Weight of log-odds(the intent changed from the previous turn) added
    /// to the boundary logit (fitted on the dev split with the threshold; 0:
    /// no effect). The intent head often sees a switch ("now I need a bus")
    /// that the boundary head alone scores low.
    #[serde(default)]
    pub intent_change_weight: f64,
    /// Added to the log-probability of the previous turn's intent when a
    /// turn continues that turn's goal (fitted on the dev split for intent
    /// accuracy; 0: no effect). A turn that only acknowledges ("thanks,
    /// that's all") says nothing of its intent, and the head alone then
    /// guesses one from another domain; the goal's intent is the better guess.
    #[serde(default)]
    pub intent_stay_shift: f64,
    /// A goal is labelled successful when its probability passes this
    /// (0.5, or fitted on dev for failed-goal F1 with `train --balance-decisions`).
    #[serde(default = "half")]
    pub success_threshold: f64,
    /// Added to the `correct` failure point's log-probability before the
    /// argmax (0, or fitted on dev for failure F1 with --balance-decisions).
    #[serde(default)]
    pub correct_shift: f64,
    /// The failure-point head also reads the next turn's dialogue state:
    /// whether a response failed shows most in the user's reaction to it
    /// ("no, the bedroom speaker"), and the dialogue Transformer alone,
    /// with absolute turn positions, learns to look one turn ahead only
    /// from many examples. Off for models that may not see the next turn
    /// (`--lookahead 0`, the contextless baselines) and for older models.
    #[serde(default)]
    pub failure_point_reads_next_turn: bool,
}

impl LabelSets {
    /// Label sets before calibration: temperature 1, the most likely label
    /// decides (boundary and success at 0.5, no shifts).
    pub fn new(
        intents: Vec<String>,
        slot_types: Vec<String>,
        failure_points: Vec<String>,
    ) -> LabelSets {
        LabelSets {
            intents,
            slot_types,
            failure_points,
            temperatures: BTreeMap::new(),
            boundary_threshold: 0.5,
            rephrase_boundary_shift: 0.0,
            intent_change_weight: 0.0,
            intent_stay_shift: 0.0,
            success_threshold: 0.5,
            correct_shift: 0.0,
            failure_point_reads_next_turn: false,
        }
    }

    /// P(new goal) from the calibrated probability, after the rephrase shift
    /// and the weighted intent-change evidence (`intent_change`: P(the
    /// intent differs from the previous turn's), None for a first turn).
    pub fn boundary_probability(
        &self,
        calibrated: f64,
        rephrase: bool,
        intent_change: Option<f64>,
    ) -> f64 {
        let shift = if rephrase {
            self.rephrase_boundary_shift
        } else {
            0.0
        };
        let evidence = match intent_change {
            Some(change) if self.intent_change_weight != 0.0 => {
                self.intent_change_weight * log_odds(change.clamp(1e-4, 1.0 - 1e-4))
            }
            _ => 0.0,
        };
        if shift == 0.0 && evidence == 0.0 {
            return calibrated;
        }
        let logit = log_odds(calibrated.clamp(1e-9, 1.0 - 1e-9)) + shift + evidence;
        1.0 / (1.0 + (-logit).exp())
    }

    /// P(the intent changed) between two turns' intent distributions: one
    /// minus the chance that both draw the same intent. None without intents.
    pub fn intent_change(previous: &[f64], current: &[f64]) -> Option<f64> {
        (!previous.is_empty() && previous.len() == current.len()).then(|| {
            1.0 - previous
                .iter()
                .zip(current)
                .map(|(p, q)| p * q)
                .sum::<f64>()
        })
    }
}

/// The argmax of log-scores (log-probabilities, or logits: the same
/// argmax) after adding `shift` to class `shifted`; the first of equal maxima.
pub fn shifted_argmax(log_scores: &[f64], shifted: Option<usize>, shift: f64) -> usize {
    let adjusted = |c: usize| log_scores[c] + if Some(c) == shifted { shift } else { 0.0 };
    (1..log_scores.len()).fold(0, |best, c| {
        if adjusted(c) > adjusted(best) {
            c
        } else {
            best
        }
    })
}

fn half() -> f64 {
    0.5
}

impl LabelSets {
    /// The intent labelled from calibrated class probabilities: the most
    /// likely after `intent_stay_shift` (in log space) on the intent of the
    /// previous turn of the same goal, if there is one.
    pub fn intent_decision(&self, probabilities: &[f64], previous_in_goal: Option<usize>) -> usize {
        let log_probabilities: Vec<f64> = probabilities.iter().map(|p| p.max(1e-12).ln()).collect();
        shifted_argmax(&log_probabilities, previous_in_goal, self.intent_stay_shift)
    }

    /// The failure point labelled from calibrated class probabilities: the
    /// most likely class after `correct_shift` (in log space) on `correct`.
    pub fn failure_point_decision(&self, probabilities: &[f64]) -> usize {
        let log_probabilities: Vec<f64> = probabilities.iter().map(|p| p.max(1e-12).ln()).collect();
        let correct = self.failure_points.iter().position(|f| f == "correct");
        shifted_argmax(&log_probabilities, correct, self.correct_shift)
    }

    /// BIO tags: 0 = O, 1 + 2k = B-slot_k, 2 + 2k = I-slot_k.
    pub fn bio_tags(&self) -> usize {
        1 + 2 * self.slot_types.len()
    }
}

/// Probabilities from logits at a softmax temperature.
pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let scaled: Vec<f64> = logits.iter().map(|&z| z as f64 / temperature).collect();
    let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scaled.iter().map(|z| (z - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

fn log_odds(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

pub const ARCHITECTURE: &str = "labelgen-dialogue";

/// The largest sizes a config.json may ask for. A model directory may come
/// from anywhere, and the sizes decide how much memory building the model
/// allocates: a hostile or corrupt file must get an error naming the field,
/// not a terabyte allocation or a division by zero. The limits are far above
/// any RoBERTa/BERT checkpoint (XLM-R large: 250k word pieces, 1024 wide,
/// 24 layers).
const MAX_VOCAB: usize = 1 << 20;
const MAX_WIDTH: usize = 1 << 14;
const MAX_LAYERS: usize = 128;
const MAX_POSITIONS: usize = 1 << 16;
const MAX_TURNS: usize = 1 << 16;
const MAX_CATEGORY_VALUES: usize = 1 << 20;
/// 4 G parameters: 16 GB of f32 weights.
const MAX_PARAMETERS: u128 = 1 << 32;

fn in_range(field: &str, value: usize, max: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=max).contains(&value),
        "{field} is {value}; it must be between 1 and {max}"
    );
    Ok(())
}

/// Checks the encoder's sizes before anything is allocated from them.
pub fn check_encoder_sizes(e: &EncoderConfig) -> anyhow::Result<()> {
    in_range("vocab_size", e.vocab_size, MAX_VOCAB)?;
    in_range("hidden_size", e.hidden_size, MAX_WIDTH)?;
    in_range("num_hidden_layers", e.num_hidden_layers, MAX_LAYERS)?;
    in_range("num_attention_heads", e.num_attention_heads, e.hidden_size)?;
    in_range("intermediate_size", e.intermediate_size, 4 * MAX_WIDTH)?;
    in_range(
        "max_position_embeddings",
        e.max_position_embeddings,
        MAX_POSITIONS,
    )?;
    in_range("type_vocab_size", e.type_vocab_size, 1024)?;
    anyhow::ensure!(
        (e.pad_token_id as usize) < e.vocab_size,
        "pad_token_id {} is not below vocab_size {}",
        e.pad_token_id,
        e.vocab_size
    );
    anyhow::ensure!(
        e.layer_norm_eps.is_finite() && e.layer_norm_eps > 0.0,
        "layer_norm_eps is {}; it must be a positive number",
        e.layer_norm_eps
    );
    let (h, i) = (e.hidden_size as u128, e.intermediate_size as u128);
    let embeddings = (e.vocab_size + e.max_position_embeddings + e.type_vocab_size) as u128 * h;
    let layer = 4 * h * h + 2 * h * i;
    let parameters = embeddings + e.num_hidden_layers as u128 * layer;
    anyhow::ensure!(
        parameters <= MAX_PARAMETERS,
        "the encoder would have {parameters} parameters (vocab_size, hidden_size, num_hidden_layers, intermediate_size); at most {MAX_PARAMETERS} are loaded"
    );
    Ok(())
}

/// Checks a labelgen config.json's sizes (encoder, dialogue Transformer,
/// features, tokens per turn) before the model is built from them; the
/// error names the field.
pub fn check_config(config: &ModelConfig) -> anyhow::Result<()> {
    check_encoder_sizes(&config.encoder).map_err(|e| anyhow::anyhow!("encoder.{e}"))?;
    let d = &config.dialogue;
    in_range("dialogue.hidden_size", d.hidden_size, MAX_WIDTH)?;
    anyhow::ensure!(
        d.num_layers <= MAX_LAYERS,
        "dialogue.num_layers is {}; at most {MAX_LAYERS}",
        d.num_layers
    );
    in_range("dialogue.num_heads", d.num_heads, d.hidden_size)?;
    anyhow::ensure!(
        d.hidden_size.is_multiple_of(d.num_heads),
        "dialogue.hidden_size {} is not a multiple of dialogue.num_heads {}",
        d.hidden_size,
        d.num_heads
    );
    in_range(
        "dialogue.intermediate_size",
        d.intermediate_size,
        4 * MAX_WIDTH,
    )?;
    in_range("dialogue.max_turns", d.max_turns, MAX_TURNS)?;
    let f = &config.features;
    in_range("features.embedding_size", f.embedding_size, MAX_WIDTH)?;
    anyhow::ensure!(
        f.audio_dim <= MAX_WIDTH,
        "features.audio_dim is {}; at most {MAX_WIDTH}",
        f.audio_dim
    );
    for (column, values) in &f.categorical {
        anyhow::ensure!(
            values.len() <= MAX_CATEGORY_VALUES,
            "features.categorical.{column} has {} values; at most {MAX_CATEGORY_VALUES}",
            values.len()
        );
    }
    let positions = config.max_tokens + config.encoder.position_offset();
    anyhow::ensure!(
        config.max_tokens >= 1 && positions <= config.encoder.max_position_embeddings,
        "max_tokens is {}; it must be at least 1 and, with the encoder's position offset {}, fit in encoder.max_position_embeddings {}",
        config.max_tokens,
        config.encoder.position_offset(),
        config.encoder.max_position_embeddings
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_turn_context_is_stored_as_the_two_flags_it_replaced() {
        let stored = [
            (TurnContext::Dialogue, "{}"),
            (TurnContext::TurnOnly, r#"{"contextless":true}"#),
            (
                TurnContext::UtteranceOnly,
                r#"{"contextless":true,"utterance_only":true}"#,
            ),
        ];
        for (context, json) in stored {
            assert_eq!(serde_json::to_string(&context).unwrap(), json);
            assert_eq!(serde_json::from_str::<TurnContext>(json).unwrap(), context);
        }
        let written_out = r#"{"contextless":true,"utterance_only":false}"#;
        assert_eq!(
            serde_json::from_str::<TurnContext>(written_out).unwrap(),
            TurnContext::TurnOnly
        );
        let error = serde_json::from_str::<TurnContext>(r#"{"utterance_only":true}"#).unwrap_err();
        assert!(
            error.to_string().contains("without `contextless`"),
            "{error}"
        );
    }

    #[test]
    fn the_baseline_with_runtime_features_adds_one_flag() {
        let json = r#"{"contextless":true,"runtime_features":true}"#;
        let context = TurnContext::TurnWithRuntime;
        assert_eq!(serde_json::to_string(&context).unwrap(), json);
        assert_eq!(serde_json::from_str::<TurnContext>(json).unwrap(), context);
        assert!(context.contextless() && context.runtime_features() && !context.utterance_only());
        assert!(TurnContext::Dialogue.runtime_features());
        assert!(!TurnContext::TurnOnly.runtime_features());
        assert!(!TurnContext::UtteranceOnly.runtime_features());
        for bad in [
            r#"{"runtime_features":true}"#,
            r#"{"contextless":true,"utterance_only":true,"runtime_features":true}"#,
        ] {
            let error = serde_json::from_str::<TurnContext>(bad).unwrap_err();
            assert!(error.to_string().contains("`runtime_features`"), "{error}");
        }
    }

    #[test]
    fn the_rephrase_shift_moves_only_rephrased_turns() {
        let mut labels = LabelSets::new(vec![], vec![], vec![]);
        assert_eq!(labels.boundary_probability(0.7, true, None), 0.7);
        labels.rephrase_boundary_shift = -(0.7f64 / 0.3).ln();
        assert_eq!(labels.boundary_probability(0.7, false, None), 0.7);
        // logit(0.7) + shift = 0: even odds.
        assert!((labels.boundary_probability(0.7, true, None) - 0.5).abs() < 1e-9);
        assert!(labels.boundary_probability(1.0, true, None) < 1.0);

        // Intent-change evidence: off at weight 0; with a weight, a likely
        // change raises P(new goal), a likely continuation lowers it.
        let change = LabelSets::intent_change(&[0.9, 0.1], &[0.1, 0.9]).unwrap();
        assert!((change - 0.82).abs() < 1e-9);
        assert_eq!(LabelSets::intent_change(&[], &[]), None);
        assert_eq!(labels.boundary_probability(0.3, false, Some(change)), 0.3);
        labels.intent_change_weight = 1.0;
        assert!(labels.boundary_probability(0.3, false, Some(change)) > 0.6);
        assert!(labels.boundary_probability(0.3, false, Some(0.1)) < 0.1);
        assert_eq!(labels.boundary_probability(0.3, false, Some(0.5)), 0.3);

        // The correct-shift moves a close call to the other class, not a clear one.
        labels.failure_points = vec!["correct".into(), "defect".into()];
        assert_eq!(labels.failure_point_decision(&[0.6, 0.4]), 0);
        labels.correct_shift = -1.0;
        assert_eq!(labels.failure_point_decision(&[0.6, 0.4]), 1);
        assert_eq!(labels.failure_point_decision(&[0.95, 0.05]), 0);

        // The stay shift keeps a goal's intent through a close call only.
        assert_eq!(labels.intent_decision(&[0.3, 0.5, 0.2], Some(0)), 1);
        labels.intent_stay_shift = 1.0;
        assert_eq!(labels.intent_decision(&[0.3, 0.5, 0.2], Some(0)), 0);
        assert_eq!(labels.intent_decision(&[0.1, 0.8, 0.1], Some(0)), 1);
        assert_eq!(labels.intent_decision(&[0.3, 0.5, 0.2], None), 1);
        assert_eq!(labels.intent_decision(&[], None), 0);
    }

    #[test]
    fn sizes_that_would_allocate_terabytes_are_refused_naming_the_field() {
        let good = EncoderConfig::small(300, 16, 1, 2, 24);
        check_encoder_sizes(&good).unwrap();
        let mut wide = good.clone();
        wide.hidden_size = 1 << 40;
        let e = check_encoder_sizes(&wide).unwrap_err().to_string();
        assert!(e.starts_with("hidden_size is 1099511627776"), "{e}");
        let mut no_heads = good.clone();
        no_heads.num_attention_heads = 0;
        let e = check_encoder_sizes(&no_heads).unwrap_err().to_string();
        assert!(e.starts_with("num_attention_heads is 0"), "{e}");
        let mut big = good.clone();
        (big.vocab_size, big.hidden_size, big.num_hidden_layers) = (MAX_VOCAB, MAX_WIDTH, 100);
        big.intermediate_size = 4 * MAX_WIDTH;
        let e = check_encoder_sizes(&big).unwrap_err().to_string();
        assert!(e.contains("parameters"), "{e}");
        let mut pad = good;
        pad.pad_token_id = 300;
        assert!(check_encoder_sizes(&pad).is_err());
    }
}
