//! The one way a command reports: pretty JSON on stdout.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

/// Prints a stage's summary; a command that got this far succeeded.
pub fn print_summary(summary: &impl Serialize) -> anyhow::Result<ExitCode> {
    print_json(summary)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints pretty JSON and a newline.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    print_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Writes to stdout; a reader that went away (`labelgen ... | head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
