//! What the qilinctl process tests share: running the binary and showing what it did.
#![allow(dead_code)] // each test binary uses its own part

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Runs `qilinctl args…` without `$QILIN_AUDIT_LOG` (each test names its own log).
pub fn qilinctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qilinctl")).args(args).env_remove("QILIN_AUDIT_LOG").output().unwrap()
}

/// Exit status, stdout and stderr, for an assertion message.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The repository's product table.
pub fn repo_instruments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml")
}
