//! labelgen: synthetic ground-truth labels for voice-assistant dialogue logs.
//!
//! The layers, in the order data flows through them; each imports only the
//! layers above it in this list (docs/architecture.md draws the graph):
//! - [`metrics`], [`plot`], [`progress`]: shared utilities;
//! - [`data`]: table schemas, typed rows, Parquet datasets, validation, splits;
//! - [`model`]: tokenizer, encoder, dialogue Transformer, heads, the training loop;
//! - [`stages`]: simulate, import, synth, pretrain, train, label (one module
//!   each, a plain `run(&Config)`; no stage imports another);
//! - [`eval`]: labels judged against 3-annotator gold (reads data only);
//! - [`pipeline`]: `labelgen run`, the stages and eval chained from a
//!   pipeline file, incremental and crash-safe (the only layer above both).

pub mod data;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plot;
pub mod progress;
pub mod stages;
