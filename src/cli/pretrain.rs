//! `labelgen pretrain`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use labelgen::model::config::{Lookahead, TurnPooling};
use labelgen::model::kernels;
use labelgen::stages::pretrain::{self, PretrainConfig};

use super::common::Common;
use super::parse::parse_lookahead;
use super::summary::print_summary;

#[derive(Args)]
pub struct PretrainArgs {
    /// synth output to train on
    #[arg(long)]
    data: PathBuf,
    /// Model directory to write
    #[arg(long)]
    out: PathBuf,
    /// Hugging Face RoBERTa/BERT checkpoint directory (config.json, model.safetensors, tokenizer.json) for the turn encoder
    #[arg(long)]
    init: Option<PathBuf>,
    /// Held-out synth output: swapped-response ROC-AUC is measured on it
    #[arg(long)]
    eval_data: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Stop after this many optimizer steps
    #[arg(long)]
    max_steps: Option<usize>,
    /// Dialogue windows per batch
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (linear warm-up over 6% of steps, then linear decay)
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Turn encoder and dialogue Transformer width (scratch models)
    #[arg(long, default_value_t = 128)]
    hidden_size: usize,
    /// Turn encoder layers (scratch models)
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Attention heads
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Dialogue Transformer layers
    #[arg(long, default_value_t = 2)]
    dialogue_layers: usize,
    /// BPE vocabulary size (scratch models)
    #[arg(long, default_value_t = 4000)]
    vocab_size: usize,
    /// Tokens per turn (utterance + response)
    #[arg(long, default_value_t = 40)]
    max_tokens: usize,
    /// Turns per dialogue window
    #[arg(long, default_value_t = 16)]
    max_turns: usize,
    /// The turn vector: the first token's state, or the mean over tokens [default: mean with --init, first from scratch]
    #[arg(long, value_enum)]
    turn_pooling: Option<TurnPooling>,
    /// Later turns each turn may attend to in the dialogue Transformer: a number, or `all`. Fewer keep other
    /// goals' turns out of a turn's intent (SGD: 1 is better); all serve failure points best (simulator)
    #[arg(long, value_name = "TURNS", default_value = "all", value_parser = parse_lookahead)]
    lookahead: Lookahead,
    /// Save a checkpoint every N steps
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Measure held-out AUC every N steps
    #[arg(long, default_value_t = 200)]
    eval_every: usize,
    /// Continue from OUT.checkpoint
    #[arg(long)]
    resume: bool,
    /// Mixed precision: the dense layers' products in bf16 with f32 sums, as Hugging Face's --bf16
    /// (CPUs with AVX-512 BF16; faster; see docs/commands/train.md)
    #[arg(long)]
    bf16: bool,
    #[command(flatten)]
    common: Common,
}

impl PretrainArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.common.apply()?;
        let config = self.into_config()?;
        let summary = Common::on_pool(|| pretrain::run(&config))?;
        if let Some(warning) = kernels::bf16::fallback_warning(config.bf16, summary.bf16) {
            eprintln!("{warning}");
        }
        print_summary(&summary)
    }

    pub fn into_config(self) -> anyhow::Result<PretrainConfig> {
        Ok(PretrainConfig {
            init: self.init,
            eval_data: self.eval_data,
            seed: self.seed,
            epochs: self.epochs,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            hidden_size: self.hidden_size,
            layers: self.layers,
            heads: self.heads,
            dialogue_layers: self.dialogue_layers,
            vocab_size: self.vocab_size,
            max_tokens: self.max_tokens,
            max_turns: self.max_turns,
            turn_pooling: self.turn_pooling,
            lookahead: self.lookahead.limit(),
            checkpoint_every: self.checkpoint_every.max(1),
            eval_every: self.eval_every.max(1),
            resume: self.resume,
            bf16: self.bf16,
            quiet: self.common.quiet,
            ..PretrainConfig::new(self.data, self.out)
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(extra: &[&str]) -> PretrainConfig {
        let required = ["labelgen", "pretrain", "--data", "synth", "--out", "model"];
        let cli = Cli::try_parse_from(required.iter().chain(extra)).unwrap();
        match cli.command {
            Command::Pretrain(args) => args.into_config().unwrap(),
            _ => unreachable!("parsed as pretrain"),
        }
    }

    #[test]
    fn lookahead_defaults_to_all_turns() {
        assert_eq!(config(&[]).lookahead, None);
        assert_eq!(config(&["--lookahead", "all"]).lookahead, None);
        assert_eq!(config(&["--lookahead", "1"]).lookahead, Some(1));
        assert_eq!(config(&["--checkpoint-every", "0"]).checkpoint_every, 1);
    }
}
