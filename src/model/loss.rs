//! Losses over masked items, from tensor ops that all have a backward pass.

use candle_core::{D, DType, Result, Tensor};

/// Binary cross-entropy with logits, averaged over items where `mask` is 1:
/// softplus(x) - x * y, computed stably.
pub fn masked_bce(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let per_item = ((softplus - (logits * targets)?)? * &mask)?;
    per_item.sum_all()? / mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64
}

/// Cross-entropy of (M, C) logits against (M) class ids, averaged over items
/// where `mask` is 1; `weights` (C) re-weights classes (imbalance).
pub fn masked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    weights: Option<&Tensor>,
) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    // (M, 1) -> (M)
    let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let weight = match weights {
        Some(w) => (w.index_select(targets, 0)? * &mask)?,
        None => mask,
    };
    (picked.neg()? * &weight)?.sum_all()? / weight.sum_all()?.to_scalar::<f32>()?.max(1e-6) as f64
}
