//! Options every long-running command takes.

use clap::Args;

use labelgen::model::kernels;

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
        // The stack of the main thread: `on_pool` runs a whole command on a worker.
        let mut pool = rayon::ThreadPoolBuilder::new().stack_size(8 << 20);
        if let Some(threads) = self.threads {
            anyhow::ensure!(threads > 0, "--threads must be at least 1");
            // candle sizes its matrix-multiply pool from this variable, not from rayon's pool.
            // SAFETY: called from main before any thread is spawned.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
            pool = pool.num_threads(threads);
        }
        // SAFETY: as above: from main, before any thread is spawned.
        unsafe { kernels::park_elementwise_workers() };
        pool.build_global()?;
        Ok(())
    }

    /// Runs `work` on one of the pool's workers instead of the calling
    /// thread. From outside the pool, the caller is one thread more than
    /// the cores: each parallel op wakes the workers and puts the caller to
    /// sleep, and while it runs serial code (candle's graph, small ops) idle
    /// workers spin on the cores it needs. On a worker, its share of each
    /// parallel op runs in place and the other workers steal the rest
    /// (BENCHMARKS.md: a frozen epoch 1.14-1.21x faster, a top-2 one
    /// 1.02-1.06x, bound by its products).
    pub fn on_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
        rayon::scope(|_| work())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_pool_runs_the_work_on_a_worker_and_returns_its_value() {
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "tests run outside the pool"
        );
        let (index, value) = Common::on_pool(|| (rayon::current_thread_index(), 42));
        assert!(index.is_some(), "the work ran outside the pool");
        assert_eq!(value, 42);
    }
}
