//! Data in and out: table schemas, typed rows, Parquet datasets, validation.

pub mod annotators;
pub mod dataset;
pub mod feedback;
pub mod issues;
pub mod schema;
pub mod tables;
pub mod validate;
