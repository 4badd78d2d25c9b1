//! Helpers shared by the process-level end-to-end tests: unique names, the watchdog wait, and the
//! workspace's binaries (built beside the tests by `cargo test --workspace`, or built here).

#![allow(dead_code)] // each test file uses a different part

pub mod ctp;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// Generous bound for anything that waits on a process; reaching it fails the test. A hang guard,
/// never a performance assertion.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// A name unique to this test process and call: `qilin-test-<tag>-<pid>-<n>`.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("qilin-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `f` every 2 ms until it returns `Some`, failing after [`WATCHDOG`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {WATCHDOG:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The workspace root.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace")
}

/// A binary of the workspace built beside this test (`cargo test --workspace` builds them all);
/// built with cargo when missing (running this crate's tests alone).
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    let _once = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace()).args(["build", "--workspace", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "building the workspace binaries failed");
    }
    assert!(path.exists(), "{} not found after building", path.display());
    path
}

/// The CTP stand-in library, built once per source into the target directory.
pub fn standin() -> PathBuf {
    qilin_ctp_standin::build(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap_or_else(|e| panic!("{e}"))
}
