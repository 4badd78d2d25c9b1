//! The segment protocol's model check (loom) and undefined-behaviour check (Miri), run from the
//! ordinary test suite so `cargo test --workspace` proves them too. Each runs a nested `cargo` with
//! its own target directory (so it never waits on the outer build's lock) and fails loudly if the
//! tool is missing — it never passes by skipping.
//!
//! Long versions: `QILIN_LONG=1` raises loom's preemption bound from 3 to 4 (much slower).

use std::{path::Path, process::Command};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace")
}

/// A `cargo` from PATH (the rustup proxy, so `+nightly` works), without the outer cargo's
/// toolchain pin and flags.
fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    cmd
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: could not start cargo: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

/// Counts `test … ok` lines of a libtest run and checks the run did execute tests.
fn passed(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("test ") && l.ends_with(" ok")).count()
}

#[test]
fn loom_model_of_the_slot_and_last_value_protocols() {
    let mut cmd = cargo();
    cmd.args(["test", "-p", "qilin-shm", "--release", "--lib", "--target-dir", "target/loom", "loom"])
        .env("RUSTFLAGS", "--cfg loom")
        .env("LOOM_MAX_PREEMPTIONS", if std::env::var_os("QILIN_LONG").is_some() { "4" } else { "3" });
    let text = run(cmd, "loom model check");
    let n = passed(&text);
    println!("loom: {n} models checked");
    assert!(n >= 2, "expected the two loom models to run:\n{text}");
}

#[test]
fn miri_runs_the_writer_and_reader_logic() {
    let mut probe = cargo();
    probe.args(["+nightly", "miri", "--version"]);
    run(probe, "Miri is required (rustup component add --toolchain nightly miri rust-src)");
    let mut cmd = cargo();
    cmd.args(["+nightly", "miri", "test", "-p", "qilin-shm", "--lib", "--target-dir", "target/miri"])
        .env("MIRIFLAGS", "-Zmiri-disable-isolation");
    let text = run(cmd, "Miri");
    let n = passed(&text);
    println!("miri: {n} tests passed under Miri");
    assert!(n >= 20, "expected qilin-shm's unit tests to run under Miri:\n{text}");
}
