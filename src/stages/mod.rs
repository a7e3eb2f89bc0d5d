//! The pipeline's stages, one module each, each a plain function taking a
//! typed config (so tests and benches call them without a shell).

pub mod import;
pub mod ingest;
pub mod label;
pub mod pretrain;
pub mod simulate;
pub mod synth;
pub mod train;
