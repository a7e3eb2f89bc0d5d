//! `labelgen synth`: contrastive pretraining data. Corrupted copies of each
//! dialogue (system responses swapped in from other dialogues, user turns
//! swapped, adjacent turns exchanged), each turn labelled with what was done
//! to it, beside the untouched original.
//!
//! Streams one input part file at a time: swap candidates come from the same
//! part, so memory holds one partition, not the whole input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::dataset::{DatasetWriter, invalid_rows, part_files, stream_rows};
use crate::data::inputs::InputSnapshot;
use crate::data::issues::{DataError, RowPlace, Severity};
// Re-exported for code that still imports it from here; it lives in data.
pub use crate::data::synth_rows::SynthTurn;
use crate::data::tables::Turn;
use crate::progress::Progress;

#[derive(Debug, Clone, Serialize)]
pub struct SynthConfig {
    pub logs: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// Corrupted copies per dialogue (the original is always kept as copy 0).
    pub copies: usize,
    /// Per turn: probability that its system response is swapped in from another dialogue.
    pub response_swap_rate: f64,
    /// Of the response swaps, the share drawn from a turn of the same domain (hard negatives).
    pub hard_negative_share: f64,
    /// Per turn: probability that its user utterance is swapped in from another dialogue.
    pub user_swap_rate: f64,
    /// Per dialogue with two turns or more: probability that two adjacent turns trade places.
    pub order_swap_rate: f64,
    pub overwrite: bool,
    pub quiet: bool,
}

impl SynthConfig {
    pub fn new(logs: PathBuf, out: PathBuf) -> SynthConfig {
        SynthConfig {
            logs,
            out,
            seed: 0,
            copies: 1,
            response_swap_rate: 0.3,
            hard_negative_share: 0.5,
            user_swap_rate: 0.05,
            order_swap_rate: 0.15,
            overwrite: false,
            quiet: true,
        }
    }
}

/// What was done to a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// The system response comes from a turn of another dialogue in the same domain.
    ResponseSwapSameDomain,
    /// The system response comes from a random turn of another dialogue.
    ResponseSwapRandom,
    /// The user utterance comes from another dialogue.
    UserSwap,
    /// The turn traded places with its neighbour (the pair itself is intact).
    OrderSwap,
}

impl Corruption {
    pub fn as_str(self) -> &'static str {
        match self {
            Corruption::ResponseSwapSameDomain => "response_swap_same_domain",
            Corruption::ResponseSwapRandom => "response_swap_random",
            Corruption::UserSwap => "user_swap",
            Corruption::OrderSwap => "order_swap",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SynthSummary {
    pub partitions: usize,
    pub dialogues_in: usize,
    pub turns_in: usize,
    pub dialogues_out: usize,
    pub turns_out: usize,
    pub swapped_turns: usize,
    pub out_of_order_turns: usize,
    pub corruptions: BTreeMap<&'static str, usize>,
    /// Swaps that found no candidate with a different text and were left out.
    pub swaps_without_candidate: usize,
    pub out: String,
    pub seconds: f64,
}

pub fn run(config: &SynthConfig) -> anyhow::Result<SynthSummary> {
    for (name, rate) in [
        ("--response-swap-rate", config.response_swap_rate),
        ("--hard-negative-share", config.hard_negative_share),
        ("--user-swap-rate", config.user_swap_rate),
        ("--order-swap-rate", config.order_swap_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be in [0, 1], got {rate}"
        );
    }
    anyhow::ensure!(config.copies >= 1, "--copies must be at least 1");
    let started = Instant::now();
    let parts = part_files(&config.logs)?;
    // A log file rewritten or deleted while synth reads it fails the run.
    // Stamped before the staging directory exists, so a change seen by
    // anyone watching for it is always after the stamp.
    let inputs = InputSnapshot::of_files(parts.iter().cloned())?;
    let mut writer = DatasetWriter::create(&config.out, config.overwrite)?;
    writer.guard_inputs(inputs);
    let progress = Progress::new(parts.len() as u64, "partitions", config.quiet);
    let mut summary = SynthSummary {
        partitions: parts.len(),
        dialogues_in: 0,
        turns_in: 0,
        dialogues_out: 0,
        turns_out: 0,
        swapped_turns: 0,
        out_of_order_turns: 0,
        corruptions: BTreeMap::new(),
        swaps_without_candidate: 0,
        out: config.out.display().to_string(),
        seconds: 0.0,
    };
    let mut seen_dialogues: HashSet<String> = HashSet::new();
    for (partition, part) in parts.iter().enumerate() {
        let dialogues = read_partition(part, &mut seen_dialogues)?;
        summary.dialogues_in += dialogues.len();
        summary.turns_in += dialogues.iter().map(Vec::len).sum::<usize>();
        let rows = synthesize(&dialogues, config, partition as u64, &mut summary);
        summary.dialogues_out += dialogues.len() * (1 + config.copies);
        summary.turns_out += rows.len();
        writer.write_rows(&rows)?;
        progress.inc(1);
    }
    writer.finish::<SynthTurn>()?;
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// One part file's dialogues, turns in order. A dialogue seen in an earlier
/// part is an error: swaps and copies work within one partition.
fn read_partition(part: &Path, seen: &mut HashSet<String>) -> Result<Vec<Vec<Turn>>, DataError> {
    let mut errors = Vec::new();
    let mut by_dialogue: HashMap<String, Vec<(RowPlace, Turn)>> = HashMap::new();
    stream_rows::<Turn, DataError>(part, |decoded| {
        errors.extend(
            decoded
                .issues
                .into_iter()
                .filter(|i| i.severity == Severity::Error),
        );
        for (place, turn) in decoded.rows {
            by_dialogue
                .entry(turn.dialogue_id.clone())
                .or_default()
                .push((place, turn));
        }
        Ok(())
    })?;
    if !errors.is_empty() {
        return Err(invalid_rows(part, "turns", &errors));
    }
    let mut ids: Vec<String> = by_dialogue.keys().cloned().collect();
    ids.sort();
    let mut dialogues = Vec::with_capacity(ids.len());
    for id in ids {
        let mut turns = by_dialogue.remove(&id).expect("key from the map");
        if !seen.insert(id.clone()) {
            let place = &turns[0].0;
            return Err(DataError::InvalidRows {
                path: part.to_path_buf(),
                table: "turns",
                count: 1,
                first: format!("  {}", place.issue(Severity::Error, "split_dialogue", None, Some(&id), "dialogue also appears in an earlier part file; synth needs each dialogue within one part file")),
            });
        }
        turns.sort_by_key(|(_, t)| t.turn_index);
        if let Some(pair) = turns
            .windows(2)
            .find(|w| w[0].1.turn_index == w[1].1.turn_index)
        {
            let place = &pair[1].0;
            return Err(invalid_rows(
                part,
                "turns",
                &[place.issue(
                    Severity::Error,
                    "duplicate_key",
                    Some("turn_index"),
                    Some(&id),
                    format!("turn_index {} twice", pair[1].1.turn_index),
                )],
            ));
        }
        dialogues.push(turns.into_iter().map(|(_, t)| t).collect());
    }
    Ok(dialogues)
}

/// Where swaps draw their donors from: every (dialogue, turn) of a
/// partition, and the same by domain for hard negatives.
struct Pools<'a> {
    dialogues: &'a [Vec<Turn>],
    all: Vec<(usize, usize)>,
    by_domain: HashMap<&'a str, Vec<(usize, usize)>>,
}

impl<'a> Pools<'a> {
    fn new(dialogues: &'a [Vec<Turn>]) -> Pools<'a> {
        let all: Vec<(usize, usize)> = dialogues
            .iter()
            .enumerate()
            .flat_map(|(d, turns)| (0..turns.len()).map(move |t| (d, t)))
            .collect();
        let mut by_domain: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for &(d, t) in &all {
            by_domain
                .entry(dialogues[d][t].domain.as_deref().unwrap_or(""))
                .or_default()
                .push((d, t));
        }
        Pools {
            dialogues,
            all,
            by_domain,
        }
    }

    /// The donors of a response swap: the turn's domain when a hard negative
    /// is drawn and the domain has another turn, else every turn.
    fn response_donors(&self, domain: &str, hard: bool) -> (&[(usize, usize)], Corruption) {
        match self.by_domain.get(domain) {
            Some(pool) if hard && pool.len() > 1 => {
                (pool.as_slice(), Corruption::ResponseSwapSameDomain)
            }
            _ => (self.all.as_slice(), Corruption::ResponseSwapRandom),
        }
    }
}

/// The originals and their corrupted copies, for one partition.
fn synthesize(
    dialogues: &[Vec<Turn>],
    config: &SynthConfig,
    partition: u64,
    summary: &mut SynthSummary,
) -> Vec<SynthTurn> {
    let pools = Pools::new(dialogues);
    let mut out = Vec::new();
    for (d, turns) in dialogues.iter().enumerate() {
        let mut rng =
            ChaCha8Rng::seed_from_u64(config.seed ^ partition.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.set_stream(d as u64);
        out.extend(turns.iter().map(|turn| SynthTurn {
            turn: turn.clone(),
            source_dialogue_id: turn.dialogue_id.clone(),
            ..SynthTurn::default()
        }));
        if pools.all.len() < 2 {
            continue;
        }
        for copy in 1..=config.copies as i32 {
            let mut copier = Copier {
                pools: &pools,
                own: d,
                config,
                rng: &mut rng,
                summary,
            };
            let rows = copier.corrupted_copy(turns, copy);
            count_corruptions(&rows, summary);
            out.extend(rows);
        }
    }
    out
}

/// Makes the corrupted copies of one dialogue, drawing from its random stream.
struct Copier<'a> {
    pools: &'a Pools<'a>,
    /// The dialogue being copied: swaps never draw from it.
    own: usize,
    config: &'a SynthConfig,
    rng: &'a mut ChaCha8Rng,
    summary: &'a mut SynthSummary,
}

impl Copier<'_> {
    /// Copy number `copy`: maybe two adjacent turns trade places, then each
    /// turn maybe gets another dialogue's utterance or response. A copy that
    /// came out unchanged gets one response swap.
    fn corrupted_copy(&mut self, turns: &[Turn], copy: i32) -> Vec<SynthTurn> {
        let copy_id = format!("{}#c{copy}", turns[0].dialogue_id);
        let mut rows: Vec<SynthTurn> = turns
            .iter()
            .map(|t| SynthTurn {
                turn: Turn {
                    dialogue_id: copy_id.clone(),
                    ..t.clone()
                },
                source_dialogue_id: t.dialogue_id.clone(),
                copy,
                ..SynthTurn::default()
            })
            .collect();
        let mut corrupted = false;
        if turns.len() >= 2 && self.rng.random_bool(self.config.order_swap_rate) {
            let i = self.rng.random_range(0..turns.len() - 1);
            swap_order(&mut rows, i);
            corrupted = true;
        }
        for row in rows.iter_mut() {
            corrupted |= self.maybe_swap(row);
        }
        if !corrupted {
            // A copy identical to the original teaches nothing: force one swap.
            let t = self.rng.random_range(0..rows.len());
            let all = self.pools.all.as_slice();
            self.swap_from(&mut rows[t], Corruption::ResponseSwapRandom, all);
        }
        rows
    }

    /// A user swap, or else maybe a response swap. Returns whether it swapped.
    fn maybe_swap(&mut self, row: &mut SynthTurn) -> bool {
        let config = self.config;
        if self.rng.random_bool(config.user_swap_rate) {
            let all = self.pools.all.as_slice();
            self.swap_from(row, Corruption::UserSwap, all)
        } else if self.rng.random_bool(config.response_swap_rate) {
            let hard = self.rng.random_bool(config.hard_negative_share);
            let domain = row.turn.domain.as_deref().unwrap_or("");
            let (pool, kind) = self.pools.response_donors(domain, hard);
            self.swap_from(row, kind, pool)
        } else {
            false
        }
    }

    fn swap_from(
        &mut self,
        row: &mut SynthTurn,
        kind: Corruption,
        pool: &[(usize, usize)],
    ) -> bool {
        let dialogues = self.pools.dialogues;
        swap(row, kind, pool, dialogues, self.own, self.rng, self.summary)
    }
}

/// Turns i and i + 1 trade places; turn_index keeps counting 0..n-1.
fn swap_order(rows: &mut [SynthTurn], i: usize) {
    let (a, b) = (rows[i].turn.clone(), rows[i + 1].turn.clone());
    rows[i].turn = Turn {
        turn_index: a.turn_index,
        ..b
    };
    rows[i + 1].turn = Turn {
        turn_index: a.turn_index + 1,
        ..a
    };
    for row in &mut rows[i..=i + 1] {
        row.out_of_order = true;
        row.corruption = Some(Corruption::OrderSwap.as_str().into());
    }
}

fn count_corruptions(rows: &[SynthTurn], summary: &mut SynthSummary) {
    for row in rows {
        summary.swapped_turns += usize::from(row.swapped);
        summary.out_of_order_turns += usize::from(row.out_of_order);
        if let Some(c) = &row.corruption {
            let key = [
                Corruption::ResponseSwapSameDomain,
                Corruption::ResponseSwapRandom,
                Corruption::UserSwap,
                Corruption::OrderSwap,
            ]
            .into_iter()
            .find(|k| k.as_str() == c)
            .map_or("other", Corruption::as_str);
            *summary.corruptions.entry(key).or_default() += 1;
        }
    }
}

/// Replaces a turn's response (or utterance) with one from another dialogue
/// whose text differs: a swap that changes nothing is not a defect. Returns
/// whether it swapped.
fn swap(
    row: &mut SynthTurn,
    kind: Corruption,
    pool: &[(usize, usize)],
    dialogues: &[Vec<Turn>],
    own: usize,
    rng: &mut ChaCha8Rng,
    summary: &mut SynthSummary,
) -> bool {
    for _ in 0..8 {
        let &(d, t) = pool.choose(rng).expect("pools are not empty");
        if d == own {
            continue;
        }
        let donor = &dialogues[d][t];
        let changed = match kind {
            Corruption::UserSwap => (donor.user_utterance != row.turn.user_utterance)
                .then(|| row.turn.user_utterance = donor.user_utterance.clone()),
            _ => (donor.system_response != row.turn.system_response)
                .then(|| row.turn.system_response = donor.system_response.clone()),
        };
        if changed.is_some() {
            row.swapped = true;
            // An order swap on the same turn stays recorded in out_of_order.
            row.corruption = Some(kind.as_str().into());
            return true;
        }
    }
    summary.swaps_without_candidate += 1;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unswapped_turns_keep_their_own_pair_and_swapped_ones_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let sim = tmp.path().join("sim");
        crate::stages::simulate::run(&crate::stages::simulate::SimulateConfig::new(
            300,
            3,
            sim.clone(),
        ))
        .unwrap();
        let mut config = SynthConfig::new(sim.join("turns"), tmp.path().join("synth"));
        config.copies = 2;
        let summary = run(&config).unwrap();
        assert_eq!(summary.dialogues_out, 900);
        let (logs, _) = crate::data::dataset::read_table::<Turn>(&sim.join("turns")).unwrap();
        let original: HashMap<(String, String), ()> = logs
            .iter()
            .map(|t| ((t.user_utterance.clone(), t.system_response.clone()), ()))
            .collect();
        let by_key: HashMap<(String, i32), &Turn> = logs
            .iter()
            .map(|t| ((t.dialogue_id.clone(), t.turn_index), t))
            .collect();
        let (rows, _) = crate::data::dataset::read_table::<SynthTurn>(&config.out).unwrap();
        assert_eq!(rows.len(), summary.turns_out);
        let (mut swapped, mut hard) = (0, 0);
        for row in &rows {
            let pair = (
                row.turn.user_utterance.clone(),
                row.turn.system_response.clone(),
            );
            if row.swapped {
                swapped += 1;
                hard += usize::from(row.corruption.as_deref() == Some("response_swap_same_domain"));
                assert_ne!(row.copy, 0);
            } else {
                // Never a swapped pair labelled as unswapped.
                assert!(
                    original.contains_key(&pair),
                    "unswapped turn with a pair not in the logs: {row:?}"
                );
            }
            if row.copy == 0 {
                assert_eq!(
                    &row.turn,
                    by_key[&(row.turn.dialogue_id.clone(), row.turn.turn_index)]
                );
            }
        }
        assert!(
            swapped > 100 && hard > 20,
            "{swapped} swapped, {hard} hard negatives"
        );
        // Same seed, same output.
        let again = SynthConfig {
            out: tmp.path().join("synth2"),
            ..config.clone()
        };
        run(&again).unwrap();
        let (rows2, _) = crate::data::dataset::read_table::<SynthTurn>(&again.out).unwrap();
        assert_eq!(rows, rows2);
    }

    /// Dialogues from a few short texts and two domains, so swaps often
    /// meet equal texts (which must not count as swaps).
    fn dialogues() -> impl proptest::strategy::Strategy<Value = Vec<Vec<Turn>>> {
        use proptest::prelude::*;
        let text = proptest::sample::select(vec!["a", "b", "c", "d"]);
        let turn = (text.clone(), text, proptest::sample::select(vec!["x", "y"]));
        proptest::collection::vec(proptest::collection::vec(turn, 1..6), 1..6).prop_map(|ds| {
            ds.into_iter()
                .enumerate()
                .map(|(d, turns)| {
                    turns
                        .into_iter()
                        .enumerate()
                        .map(|(t, (user, system, domain))| Turn {
                            dialogue_id: format!("d{d}"),
                            turn_index: t as i32,
                            user_utterance: user.to_string(),
                            system_response: system.to_string(),
                            domain: Some(domain.to_string()),
                            ..Turn::default()
                        })
                        .collect()
                })
                .collect()
        })
    }

    /// Where each row of a copy came from in the original: its own
    /// position, or its neighbour's for the two turns of an order swap.
    fn source_positions(rows: &[&SynthTurn]) -> Vec<usize> {
        let mut from: Vec<usize> = (0..rows.len()).collect();
        if let Some(i) = rows.iter().position(|r| r.out_of_order) {
            from.swap(i, i + 1);
        }
        from
    }

    proptest::proptest! {
        /// synth's labels say exactly what it did: `swapped` holds when the
        /// pair differs from the original's, the corruption names the side
        /// that changed (a same-domain swap came from that domain), order
        /// swaps trade two neighbours, originals are untouched, and the
        /// summary counts what the rows say.
        #[test]
        fn labels_match_what_was_swapped(
            dialogues in dialogues(),
            seed in proptest::prelude::any::<u64>(),
            copies in 1usize..3,
            rates in (0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0),
        ) {
            use proptest::prop_assert_eq as eq;
            use proptest::prop_assert as check;
            let mut config = SynthConfig::new(PathBuf::new(), PathBuf::new());
            (config.seed, config.copies) = (seed, copies);
            (config.response_swap_rate, config.hard_negative_share) = (rates.0, rates.1);
            (config.user_swap_rate, config.order_swap_rate) = (rates.2, rates.3);
            let mut summary = SynthSummary {
                partitions: 1, dialogues_in: 0, turns_in: 0, dialogues_out: 0, turns_out: 0,
                swapped_turns: 0, out_of_order_turns: 0, corruptions: BTreeMap::new(),
                swaps_without_candidate: 0, out: String::new(), seconds: 0.0,
            };
            let rows = synthesize(&dialogues, &config, 0, &mut summary);
            let turns: usize = dialogues.iter().map(Vec::len).sum();
            let copies_made = if turns < 2 { 0 } else { copies };
            eq!(rows.len(), turns * (1 + copies_made));
            eq!(summary.swapped_turns, rows.iter().filter(|r| r.swapped).count());
            eq!(summary.out_of_order_turns, rows.iter().filter(|r| r.out_of_order).count());
            let by_id: HashMap<&str, &Vec<Turn>> =
                dialogues.iter().map(|d| (d[0].dialogue_id.as_str(), d)).collect();
            let mut copies_of: BTreeMap<&str, Vec<&SynthTurn>> = BTreeMap::new();
            for row in &rows {
                copies_of.entry(row.turn.dialogue_id.as_str()).or_default().push(row);
            }
            for (id, copy) in copies_of {
                let original = by_id[copy[0].source_dialogue_id.as_str()];
                eq!(copy.len(), original.len());
                let ordered = copy.iter().filter(|r| r.out_of_order).count();
                check!(ordered == 0 || ordered == 2, "{id}: {ordered} turns out of order");
                for (position, (row, from)) in copy.iter().zip(source_positions(&copy)).enumerate() {
                    eq!(row.turn.turn_index, position as i32);
                    let before = &original[from];
                    let user_changed = row.turn.user_utterance != before.user_utterance;
                    let system_changed = row.turn.system_response != before.system_response;
                    check!(!(user_changed && system_changed), "{id}: both sides swapped");
                    eq!(row.swapped, user_changed || system_changed, "{}", id);
                    match row.corruption.as_deref() {
                        None => check!(row.copy == 0 || (!row.swapped && !row.out_of_order)),
                        Some("order_swap") => check!(row.out_of_order && !row.swapped),
                        Some("user_swap") => check!(user_changed),
                        Some("response_swap_random") => check!(system_changed),
                        Some("response_swap_same_domain") => {
                            check!(system_changed);
                            let donor_domains: Vec<&Option<String>> = dialogues
                                .iter()
                                .filter(|d| d[0].dialogue_id != row.source_dialogue_id)
                                .flatten()
                                .filter(|t| t.system_response == row.turn.system_response)
                                .map(|t| &t.domain)
                                .collect();
                            check!(donor_domains.contains(&&before.domain), "{id}: {donor_domains:?}");
                        }
                        Some(other) => check!(false, "unknown corruption {other}"),
                    }
                    if row.copy == 0 {
                        eq!(&row.turn, before);
                        check!(row.corruption.is_none() && !row.out_of_order);
                    }
                }
            }
        }
    }
}
