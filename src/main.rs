//! The `labelgen` command line: parses arguments and dispatches to a stage
//! (the commands live in `cli`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

use labelgen::data::issues::DataError;

// The stages allocate many small strings across threads, where glibc's
// allocator spent ~40% of the simulator's time (measured with perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit_code_for(&error)
        }
    }
}

/// 1 when the input data is invalid, 2 for usage and I/O errors.
fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    match error.downcast_ref::<DataError>() {
        Some(DataError::NotFound { .. } | DataError::Unreadable { .. }) | None => ExitCode::from(2),
        Some(_) => ExitCode::from(1),
    }
}
