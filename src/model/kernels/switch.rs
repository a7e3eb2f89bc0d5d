//! Process-wide switches for the opt-in kernel paths (`--precision int16`,
//! `--bf16`), on for as long as a [`Guard`] lives.
//!
//! Unit tests run side by side on the threads of one process: there, a
//! switch is on only for the test (thread) that turned it on, so that no
//! other test's f32 comparison meets a reduced-precision kernel.

use std::sync::atomic::{AtomicBool, Ordering};

/// One opt-in path.
pub(crate) struct Switch {
    on: AtomicBool,
    /// This switch's place in the per-thread flags of unit tests.
    #[cfg_attr(not(test), allow(dead_code))]
    slot: usize,
}

/// How many switches there are: the slots of the per-thread test flags.
const SWITCHES: usize = 2;

#[cfg(test)]
thread_local! {
    static ON_HERE: [std::cell::Cell<bool>; SWITCHES] = const {
        [std::cell::Cell::new(false), std::cell::Cell::new(false)]
    };
}

impl Switch {
    /// `slot`: below [`SWITCHES`], one per switch.
    pub(crate) const fn new(slot: usize) -> Switch {
        assert!(slot < SWITCHES);
        Switch {
            on: AtomicBool::new(false),
            slot,
        }
    }

    /// Sets the switch to `on` until the guard drops, then back as it was.
    pub(crate) fn set(&'static self, on: bool) -> Guard {
        Guard {
            switch: self,
            previous: self.on.swap(on, Ordering::Relaxed),
            #[cfg(test)]
            previous_here: ON_HERE.with(|here| here[self.slot].replace(on)),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        #[cfg(test)]
        if !ON_HERE.with(|here| here[self.slot].get()) {
            return false;
        }
        self.on.load(Ordering::Relaxed)
    }
}

/// The switch as set by [`Switch::set`], until this drops.
pub(crate) struct Guard {
    switch: &'static Switch,
    previous: bool,
    #[cfg(test)]
    previous_here: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.switch.on.store(self.previous, Ordering::Relaxed);
        #[cfg(test)]
        ON_HERE.with(|here| here[self.switch.slot].set(self.previous_here));
    }
}
