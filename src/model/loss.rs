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

/// Cross-entropy of (M, C) logits against (M, C) target distributions (rows
/// summing to 1, e.g. the raters' votes), averaged over items where `mask`
/// is non-zero (and weighted by it); `weights` (C) re-weights classes. For a
/// one-hot target this is [`masked_cross_entropy`]'s loss.
pub fn masked_soft_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    weights: Option<&Tensor>,
) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let weighted_targets = match weights {
        Some(w) => targets.broadcast_mul(&w.unsqueeze(0)?)?,
        None => targets.clone(),
    };
    // (M): the item's weight, sum_c w_c q_c, times its mask.
    let item_weight = (weighted_targets.sum(1)? * &mask)?;
    let per_item = (weighted_targets * log_probs)?.sum(1)?.neg()?;
    (per_item * &mask)?.sum_all()? / item_weight.sum_all()?.to_scalar::<f32>()?.max(1e-6) as f64
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn soft_cross_entropy_of_one_hot_targets_is_the_hard_loss() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2.0f32, -1.0, 0.5], [0.0, 1.0, 3.0]], &dev).unwrap();
        let classes = Tensor::new(&[2u32, 1], &dev).unwrap();
        let one_hot = Tensor::new(&[[0f32, 0.0, 1.0], [0.0, 1.0, 0.0]], &dev).unwrap();
        let mask = Tensor::new(&[1f32, 1.0], &dev).unwrap();
        let weights = Tensor::new(&[1f32, 3.0, 0.5], &dev).unwrap();
        for w in [None, Some(&weights)] {
            let hard = masked_cross_entropy(&logits, &classes, &mask, w).unwrap();
            let soft = masked_soft_cross_entropy(&logits, &one_hot, &mask, w).unwrap();
            let (hard, soft) = (
                hard.to_scalar::<f32>().unwrap(),
                soft.to_scalar::<f32>().unwrap(),
            );
            assert!((hard - soft).abs() < 1e-6, "{hard} vs {soft}");
        }
    }

    #[test]
    fn soft_cross_entropy_is_the_mean_over_the_raters() {
        // Two raters of one item, one says class 0 and one class 1: the soft
        // target (0.5, 0.5) has the mean of the two hard losses.
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1.0f32, -0.5]], &dev).unwrap();
        let soft = masked_soft_cross_entropy(
            &logits,
            &Tensor::new(&[[0.5f32, 0.5]], &dev).unwrap(),
            &Tensor::new(&[1f32], &dev).unwrap(),
            None,
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        let log_sum = (1f32.exp() + (-0.5f32).exp()).ln();
        let expected = ((log_sum - 1.0) + (log_sum + 0.5)) / 2.0;
        assert!((soft - expected).abs() < 1e-6, "{soft} vs {expected}");
        // A masked-out item does not count.
        let masked = masked_soft_cross_entropy(
            &Tensor::new(&[[1.0f32, -0.5], [9.0, -9.0]], &dev).unwrap(),
            &Tensor::new(&[[0.5f32, 0.5], [0.0, 1.0]], &dev).unwrap(),
            &Tensor::new(&[1f32, 0.0], &dev).unwrap(),
            None,
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        assert!((masked - expected).abs() < 1e-6);
    }
}
