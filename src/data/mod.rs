//! Data in and out: table schemas, typed rows, Parquet datasets, validation.

pub mod annotators;
pub mod checks;
pub mod codec;
pub mod dataset;
pub mod feedback;
pub mod hive;
pub mod inputs;
pub mod issues;
pub mod panics;
pub mod schema;
pub mod split;
pub mod synth_rows;
pub mod tables;
pub mod validate;
