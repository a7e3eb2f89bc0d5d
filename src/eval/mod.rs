//! Evaluation against 3-annotator gold: metrics, gold policies, reports.

pub mod metrics;
