//! One run at a time per work directory.
//!
//! The lock is an advisory OS lock (flock) on WORK_DIR/pipeline.lock, not
//! the file's existence: the kernel drops it when the holder dies, even by
//! kill -9, so a stale lock can never block the next night. The file also
//! holds the holder's pid, for the "refused" line and for noticing that a
//! previous run died while holding it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A held lock; released (and the pid cleared) on drop.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// The pid left in the file by a run that died holding the lock.
    pub stale_pid: Option<u32>,
}

#[derive(Debug)]
pub enum Acquired {
    Held(RunLock),
    /// Another live run holds it; its pid when the file names one.
    Busy {
        holder: Option<u32>,
    },
}

impl RunLock {
    pub fn acquire(path: &Path) -> anyhow::Result<Acquired> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Ok(Acquired::Busy {
                    holder: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => {
                anyhow::bail!("cannot lock {}: {e}", path.display())
            }
        }
        // A pid still written there belongs to a run that never released
        // the lock: it died (a clean exit clears the file).
        let stale_pid = read_pid(&mut file).filter(|pid| *pid != std::process::id());
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()?;
        Ok(Acquired::Held(RunLock {
            file,
            path: path.to_path_buf(),
            stale_pid,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Clear the pid before unlocking, so the next run does not take a
        // clean exit for a crash. Errors here cannot be reported usefully.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.lock");
        let Acquired::Held(first) = RunLock::acquire(&path).unwrap() else {
            panic!("the first run gets the lock");
        };
        match RunLock::acquire(&path).unwrap() {
            Acquired::Busy { holder } => assert_eq!(holder, Some(std::process::id())),
            Acquired::Held(_) => panic!("two runs held the lock"),
        }
        drop(first);
        assert!(matches!(
            RunLock::acquire(&path).unwrap(),
            Acquired::Held(RunLock {
                stale_pid: None,
                ..
            })
        ));
    }

    #[test]
    fn a_dead_holders_pid_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.lock");
        // What a kill -9 leaves: the pid in the file, no OS lock held.
        std::fs::write(&path, "4194303\n").unwrap();
        let Acquired::Held(lock) = RunLock::acquire(&path).unwrap() else {
            panic!("a stale lock is taken over");
        };
        assert_eq!(lock.stale_pid, Some(4_194_303));
    }
}
