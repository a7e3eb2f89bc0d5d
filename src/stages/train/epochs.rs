//! `train --keep-epochs`: a complete model after every epoch, calibrated on
//! the dev split as if training had stopped there, so that a training
//! curve can be judged on data `train` never sees (eval-real labels the
//! real SGD dev split with each). The models collect in `OUT.epochs` while
//! training runs (beside `OUT.checkpoint`, so `--resume` keeps the epochs
//! already written) and move into `OUT/epochs/epoch-NN` with the final model.

use std::path::{Path, PathBuf};

use candle_nn::VarMap;
use tokenizers::Tokenizer;

use crate::model::checkpoint;
use crate::model::config::ModelConfig;

/// The folder inside the model directory that holds the epoch models.
pub const EPOCHS: &str = "epochs";

/// Where the epoch models wait while training runs: `OUT.epochs`.
pub fn pending_dir(out: &Path) -> PathBuf {
    checkpoint::sibling_dir(out, EPOCHS)
}

/// The name of epoch `epoch`'s model directory (from 1).
pub fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch-{epoch:02}")
}

/// Writes one model directory per epoch into [`pending_dir`].
pub struct EpochModels<'a> {
    pub dir: PathBuf,
    pub varmap: &'a VarMap,
    pub tokenizer: &'a Tokenizer,
    pub batches_per_epoch: usize,
}

impl EpochModels<'_> {
    /// A fresh run starts with no epoch models; a resumed one keeps those
    /// its first part wrote (the epochs it repeats are written again).
    pub fn prepare(&self, resuming: bool) -> anyhow::Result<()> {
        if !resuming && self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| {
                anyhow::anyhow!("cannot remove the old {}: {e}", self.dir.display())
            })?;
        }
        Ok(())
    }

    /// The model after `step` updates, with `config` (its decisions fitted
    /// on dev at this step) and what `training` says of the epoch.
    pub fn save(
        &self,
        step: usize,
        config: &ModelConfig,
        training: serde_json::Value,
    ) -> anyhow::Result<()> {
        let epoch = step.div_ceil(self.batches_per_epoch.max(1));
        let record = serde_json::json!({
            "stage": "train epoch",
            "epoch": epoch,
            "step": step,
            "dev": training,
        });
        checkpoint::save(
            &self.dir.join(epoch_dir_name(epoch)),
            config,
            self.varmap,
            self.tokenizer,
            &record,
        )
    }

    /// Moves the epoch models into the final model's staging directory.
    pub fn move_into(&self, staging: &Path) -> anyhow::Result<()> {
        let to = staging.join(EPOCHS);
        std::fs::rename(&self.dir, &to).map_err(|e| {
            anyhow::anyhow!(
                "cannot move {} to {}: {e}",
                self.dir.display(),
                to.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_models_wait_beside_the_model_and_sort_by_epoch() {
        assert_eq!(
            pending_dir(Path::new("/m/A-minilm")),
            PathBuf::from("/m/A-minilm.epochs")
        );
        let mut names: Vec<String> = [10, 2, 1].into_iter().map(epoch_dir_name).collect();
        names.sort();
        assert_eq!(names, ["epoch-01", "epoch-02", "epoch-10"]);
    }
}
