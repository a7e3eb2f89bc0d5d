//! The `labelgen` command line: parses arguments and dispatches to a stage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use labelgen::data::issues::DataError;
use labelgen::data::schema::Table;
use labelgen::data::validate::{self, ValidateConfig};
use labelgen::stages::simulate::{self, ErrorRates, SimulateConfig};

// The stages allocate many small strings across threads, where glibc's
// allocator spent ~40% of the simulator's time (measured with perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "labelgen",
    version,
    about = "Turns voice-assistant dialogue logs (Parquet) into synthetic ground-truth labels",
    after_help = "Examples:\n  labelgen simulate --dialogues 1000 --seed 1 --out data/sim\n  labelgen validate data/sim/turns --table turns\n  labelgen validate data/sim/annotations --table annotations --turns data/sim/turns\n\nExit codes: 0 success (valid), 1 invalid input data, 2 usage or I/O error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate assistant logs with ground truth, 3 gold annotators and a single-pass annotator
    #[command(
        after_help = "Writes OUT/turns and OUT/annotations (Parquet datasets) and prints a JSON summary on stdout.\n\nExample:\n  labelgen simulate --dialogues 5000 --seed 1 --out data/train"
    )]
    Simulate(SimulateArgs),
    /// Check a Parquet dataset (a file or a directory of part files) against its table schema
    #[command(
        after_help = "Exit codes: 0 valid, 1 invalid, 2 usage or I/O error.\n\nExamples:\n  labelgen validate logs/ --table turns\n  labelgen validate gold.parquet --table annotations --turns logs/ --json"
    )]
    Validate(ValidateArgs),
}

#[derive(Args)]
struct SimulateArgs {
    /// Number of dialogues to simulate
    #[arg(long, default_value_t = 1000)]
    dialogues: usize,
    /// Random seed: the same seed gives the same bytes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (receives turns/ and annotations/)
    #[arg(long)]
    out: PathBuf,
    /// Per-label error rate of each of the three gold annotators a1, a2, a3
    #[arg(long, default_value_t = 0.06)]
    annotator_error: f64,
    /// Per-label error rate of the single-pass annotator
    #[arg(long, default_value_t = 0.12)]
    single_error: f64,
    /// Share of goals that are false wakes
    #[arg(long, default_value_t = ErrorRates::default().false_wake)]
    false_wake_rate: f64,
    /// Probability that ASR misrecognises a request (some are recovered downstream)
    #[arg(long, default_value_t = ErrorRates::default().asr)]
    asr_error: f64,
    /// Probability that NLU picks the wrong intent (doubled on context-dependent turns)
    #[arg(long, default_value_t = ErrorRates::default().nlu)]
    nlu_error: f64,
    /// Probability that entity resolution picks the wrong entity or none
    #[arg(long, default_value_t = ErrorRates::default().entity)]
    entity_error: f64,
    /// Probability that the action or answer is wrong although all else worked
    #[arg(long, default_value_t = ErrorRates::default().result)]
    result_error: f64,
    /// Length of the simulated audio_embedding column (0 leaves the column out)
    #[arg(long, default_value_t = 8)]
    audio_dim: usize,
    /// Replace existing datasets under --out
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ValidateArgs {
    /// A Parquet file or a directory of part files
    path: PathBuf,
    /// Which table the dataset holds
    #[arg(long, value_enum)]
    table: Table,
    /// The turns (logs) that annotations or labels refer to: checks slot spans against utterances
    #[arg(long)]
    turns: Option<PathBuf>,
    /// Print the report as JSON on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Common {
    /// No progress bars
    #[arg(long, short)]
    quiet: bool,
    /// Worker threads (default: all cores)
    #[arg(long)]
    threads: Option<usize>,
}

impl Common {
    fn apply(&self) -> anyhow::Result<()> {
        if let Some(threads) = self.threads {
            anyhow::ensure!(threads > 0, "--threads must be at least 1");
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit_code_for(&error)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => {
            args.common.apply()?;
            let config = SimulateConfig {
                rates: ErrorRates {
                    false_wake: args.false_wake_rate,
                    asr: args.asr_error,
                    nlu: args.nlu_error,
                    entity: args.entity_error,
                    result: args.result_error,
                },
                annotator_error: args.annotator_error,
                single_error: args.single_error,
                audio_dim: args.audio_dim,
                overwrite: args.force,
                quiet: args.common.quiet,
                ..SimulateConfig::new(args.dialogues, args.seed, args.out)
            };
            let summary = simulate::run(&config)?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => {
            let report = validate::run(&ValidateConfig {
                path: args.path,
                table: args.table,
                turns: args.turns,
            })?;
            if args.json {
                print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                print_stdout(&validate::render(&report))?;
            }
            Ok(if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Writes to stdout; a reader that went away (`labelgen ... | head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// 1 when the input data is invalid, 2 for usage and I/O errors.
fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    match error.downcast_ref::<DataError>() {
        Some(DataError::NotFound { .. } | DataError::Unreadable { .. }) | None => ExitCode::from(2),
        Some(_) => ExitCode::from(1),
    }
}
