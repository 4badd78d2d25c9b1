//! Helpers shared by the process-level end-to-end tests: unique names, the watchdog wait, and the
//! workspace's binaries (built beside the tests by `cargo test --workspace`, or built here).

#![allow(dead_code)] // each test file uses a different part

pub mod ctp;

use std::path::{Path, PathBuf};

#[allow(unused_imports)] // each test file uses a different part
pub use qilin_testkit::{WATCHDOG, unique, wait_for, workspace, workspace_bin};

/// The CTP stand-in library, built once per source into the target directory.
pub fn standin() -> PathBuf {
    qilin_ctp_standin::build(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap_or_else(|e| panic!("{e}"))
}
