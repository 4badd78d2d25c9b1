//! Helpers shared by the process-level tests in core/tests: unique names for segments and sockets,
//! and the watchdog wait every test uses instead of a sleep.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// Generous bound for anything that waits on a process; reaching it fails the test. It is a hang
/// guard, never a performance assertion.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// A name unique to this test process and call: `qilin-test-<tag>-<pid>-<n>`.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("qilin-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `f` every 5 ms until it returns `Some`, failing after [`WATCHDOG`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {WATCHDOG:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
