//! Panics of parsers that read files from outside (issue 17).
//!
//! Some crates labelgen reads untrusted files with panic on malformed
//! input instead of returning an error: parquet 60.1 (an assert in
//! arrow-buffer while decoding a corrupt page's definition levels) and
//! tokenizers 0.22 (an `expect` in its deserializers), both found by
//! fuzzing (tests/fuzz). [`contained`] runs such a call and turns its
//! panic into an error message the caller attaches to the file, and keeps
//! the default panic hook from printing a panic report for it: the user
//! sees one clear error, exit 2, not a crash.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a contained call.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once, a panic hook that stays silent for contained panics and
/// hands every other panic to the hook that was there before.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic in it (on this thread) becomes `Err` with the panic's
/// message. `f` must not be relied on afterwards: callers stop reading the
/// file.
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = CONTAINING.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(was));
    result.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "no message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_a_value_passes_through() {
        assert_eq!(contained(|| 7), Ok(7));
        let index = std::hint::black_box(9);
        let error = contained(|| [1, 2, 3][index]).unwrap_err();
        assert!(error.contains("index out of bounds"), "{error}");
        assert_eq!(contained(|| panic!("plain")), Err::<(), _>("plain".into()));
        // Nested: the inner call's end leaves the outer one contained.
        let outer = contained(|| {
            let _ = contained(|| panic!("inner"));
            panic!("outer")
        });
        assert_eq!(outer, Err::<(), _>("outer".into()));
    }
}
