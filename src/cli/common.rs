//! Options every long-running command takes.

use clap::Args;

#[derive(Args)]
pub struct Common {
    /// No progress bars
    #[arg(long, short)]
    pub quiet: bool,
    /// Worker threads (default: all cores)
    #[arg(long)]
    threads: Option<usize>,
}

impl Common {
    /// Sizes the worker pools; before any thread is spawned.
    pub fn apply(&self) -> anyhow::Result<()> {
        if let Some(threads) = self.threads {
            anyhow::ensure!(threads > 0, "--threads must be at least 1");
            // candle sizes its matrix-multiply pool from this variable, not from rayon's pool.
            // SAFETY: called from main before any thread is spawned.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()?;
        }
        Ok(())
    }
}
