//! The annotator ids of the annotations table: a contract between the
//! stage that writes annotations (`simulate`) and the one that reads them
//! (`eval`), kept here so that neither reaches into the other.

/// The three gold annotators; eval takes gold from them by default.
pub const GOLD_ANNOTATORS: [&str; 3] = ["a1", "a2", "a3"];
/// The single-pass annotator: the baseline labelgen must match or beat.
pub const SINGLE_ANNOTATOR: &str = "single";
/// The simulator's ground truth; only its rows say which turns need context.
pub const TRUTH_ANNOTATOR: &str = "truth";
