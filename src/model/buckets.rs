//! Turns of one batch grouped by token length, so the encoder computes each
//! group padded to its own longest turn instead of every turn padded to the
//! batch's longest. A batch holds whole dialogue windows, and a window's
//! turns range from "stop" to a long request with its response: padded to
//! the batch width, most of the encoder's work would be padding.
//!
//! Grouping changes no result: padded keys get a -1e4 attention bias, whose
//! softmax weight is exactly zero in f32, and every other op is per token.
//! The positions past a turn's tokens come back as zeros (every consumer
//! masks them out).

use candle_core::{Result, Tensor};

/// What running one more group costs, in padding tokens: each group is its
/// own set of smaller matmuls and its own op launches. Small against a
/// batch's hundreds of turns, so groups follow the lengths closely.
pub const GROUP_COST_TOKENS: usize = 64;

/// A plan: which turns (rows of the batch) go together, and how wide.
#[derive(Debug, Clone, PartialEq)]
pub struct LengthGroups {
    /// (rows of the batch, width) per group, shortest turns first.
    groups: Vec<(Vec<u32>, usize)>,
    /// Row count of the batch.
    rows: usize,
}

impl LengthGroups {
    /// Groups rows of the given token lengths: sorted by length, then cut
    /// where the computed tokens (each group at its own width) plus
    /// `group_cost` per group are least (an exact dynamic programme over the
    /// cut points; rows are at most a few thousand).
    pub fn new(lengths: &[usize], group_cost: usize) -> LengthGroups {
        let mut order: Vec<u32> = (0..lengths.len() as u32).collect();
        order.sort_by_key(|&row| (lengths[row as usize], row));
        let width = |k: usize| lengths[order[k] as usize].max(1);
        // best[j]: least cost of the first j sorted rows; cut[j]: where the
        // last group of that best plan starts.
        let n = order.len();
        let mut best = vec![0usize; n + 1];
        let mut cut = vec![0usize; n + 1];
        for j in 1..=n {
            (best[j], cut[j]) = (0..j)
                .map(|i| (best[i] + (j - i) * width(j - 1) + group_cost, i))
                .min()
                .expect("j >= 1");
        }
        let mut groups = Vec::new();
        let mut end = n;
        while end > 0 {
            let start = cut[end];
            groups.push((order[start..end].to_vec(), width(end - 1)));
            end = start;
        }
        groups.reverse();
        LengthGroups {
            groups,
            rows: lengths.len(),
        }
    }

    /// From an (N, L) 1/0 attention mask whose ones come first in each row.
    pub fn from_mask(attention_mask: &Tensor, group_cost: usize) -> Result<LengthGroups> {
        let lengths: Vec<usize> = attention_mask
            .sum(1)?
            .to_dtype(candle_core::DType::U32)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|n| n as usize)
            .collect();
        Ok(LengthGroups::new(&lengths, group_cost))
    }

    /// Token positions the grouped encoder computes (real and padding).
    pub fn computed_tokens(&self) -> usize {
        self.groups.iter().map(|(rows, w)| rows.len() * w).sum()
    }

    /// Runs `encode` on each group and puts the rows back in batch order:
    /// `encode(rows, width)` gets the group's row indices (G) and width W
    /// and returns (G, W, H); the result is (N, `width`, H), zeros past W.
    pub fn map(
        &self,
        width: usize,
        mut encode: impl FnMut(&Tensor, usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let device = candle_core::Device::Cpu;
        let mut outputs = Vec::with_capacity(self.groups.len());
        let mut position_of_row = vec![0u32; self.rows];
        let mut next = 0u32;
        for (rows, w) in &self.groups {
            for &row in rows {
                position_of_row[row as usize] = next;
                next += 1;
            }
            let index = Tensor::new(rows.as_slice(), &device)?;
            // (G, W, H) -> (G, width, H)
            let encoded = encode(&index, *w)?;
            outputs.push(encoded.pad_with_zeros(1, 0, width.saturating_sub(*w))?);
        }
        // (N, width, H) in group order -> batch order
        let grouped = Tensor::cat(&outputs, 0)?;
        grouped.index_select(&Tensor::new(position_of_row, &device)?, 0)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Token positions through the encoder in one pass over some batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct TokenCounts {
    /// The turns' own tokens.
    pub real: usize,
    /// With every turn padded to its batch's longest.
    pub padded_to_batch: usize,
    /// What the encoder computes: each distinct turn of a batch once, in
    /// length groups (the plain path: every turn, padded to the batch).
    pub computed: usize,
}

impl TokenCounts {
    /// Adds a batch: the token lengths of all its turns, and of its distinct ones.
    pub fn add_batch(&mut self, all: &[usize], distinct: &[usize]) {
        let padded = all.len() * all.iter().copied().max().unwrap_or(0);
        self.real += all.iter().sum::<usize>();
        self.padded_to_batch += padded;
        self.computed += match super::plain_path() {
            true => padded,
            false => LengthGroups::new(distinct, GROUP_COST_TOKENS).computed_tokens(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn groups_follow_the_lengths_where_padding_costs_more_than_a_group() {
        // Sorted: 1, 2, 3, 8, 8. At a cost of 3 per group, {1,2,3} padded
        // to 3 (9 + 3) beats {1,2} and {3} (4 + 3 + 3 + 3); the 8s go together.
        let groups = LengthGroups::new(&[8, 1, 3, 8, 2], 3);
        assert_eq!(groups.groups, vec![(vec![1, 4, 2], 3), (vec![0, 3], 8)]);
        assert_eq!(groups.computed_tokens(), 9 + 16);
        // Free groups: one per distinct length.
        assert_eq!(LengthGroups::new(&[8, 1, 3, 8, 2], 0).len(), 4);
        // Costly groups: one, padded to the longest.
        assert_eq!(LengthGroups::new(&[8, 1, 3, 8, 2], 100).len(), 1);
        assert!(LengthGroups::new(&[], 2).is_empty());
    }

    #[test]
    fn token_counts_add_up_over_batches() {
        let mut counts = TokenCounts::default();
        // Turns of 2 and 10 tokens: 8 tokens of padding cost less than a group.
        counts.add_batch(&[2, 10], &[2, 10]);
        // Three turns of 4, one of them repeated: computed once.
        counts.add_batch(&[4, 4, 4], &[4, 4]);
        assert_eq!(
            counts,
            TokenCounts {
                real: 24,
                padded_to_batch: 32,
                computed: 20 + 8
            }
        );
        let mut counts = TokenCounts::default();
        let long: Vec<usize> = (0..400).map(|i| 1 + i % 50).collect();
        counts.add_batch(&long, &long);
        assert_eq!(counts.padded_to_batch, 400 * 50);
        assert!(counts.computed < counts.padded_to_batch * 3 / 5);
        assert!(counts.computed >= counts.real);
    }

    #[test]
    fn every_row_comes_back_in_place_with_zeros_past_its_group() -> Result<()> {
        let device = Device::Cpu;
        let lengths = [3usize, 1, 2, 3];
        // Row r's token t holds 10 r + t; widths 3.
        let values: Vec<f32> = (0..4)
            .flat_map(|r| (0..3).map(move |t| (10 * r + t) as f32))
            .collect();
        let states = Tensor::from_vec(values, (4, 3, 1), &device)?;
        let groups = LengthGroups::new(&lengths, 0);
        let out = groups.map(3, |rows, w| states.index_select(rows, 0)?.narrow(1, 0, w))?;
        let got = out.squeeze(2)?.to_vec2::<f32>()?;
        assert_eq!(
            got,
            vec![
                vec![0., 1., 2.],
                vec![10., 0., 0.],
                vec![20., 21., 0.],
                vec![30., 31., 32.]
            ]
        );
        assert_eq!(out.dtype(), DType::F32);
        Ok(())
    }
}
