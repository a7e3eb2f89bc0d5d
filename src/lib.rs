//! labelgen: synthetic ground-truth labels for voice-assistant dialogue logs.
//!
//! The pipeline, in the order data flows through it:
//! - [`data`]: table schemas, typed rows, Parquet datasets, validation;
//! - [`stages`]: simulate (and, as they land, synth, pretrain, train, label);
//! - evaluation against 3-annotator gold.

pub mod data;
pub mod eval;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod stages;
