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
    let cli = cli::Cli::parse();
    if cli.trains() {
        keep_freed_memory();
    }
    match cli.run() {
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

/// mimalloc's purge_delay option (the same index in its v2 and v3 headers;
/// libmimalloc-sys names no constant for it, and a test checks the default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Training frees and reallocates op outputs of megabytes every step. By
/// default mimalloc (v3) returns freed memory to the OS after 1 s, and a
/// later op faults it back in as zeroed pages: a third of a training step
/// went to the kernel clearing pages (BENCHMARKS.md). Keeping freed memory
/// for reuse costs about 20% peak memory, so only the commands that train
/// do (label, tried on 100k turns: no CPU time saved, 79.5 s against 76.9 s,
/// at 22% more peak memory), and MIMALLOC_PURGE_DELAY, when set, still
/// decides.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide allocator option; mimalloc allows it
        // at any time (it is read when memory is next purged).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets an allocator option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // mimalloc v3's default purge delay, in milliseconds (v2's is 10).
            assert_eq!(get(), 1000);
        }
        keep_freed_memory();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), -1);
        }
    }
}
