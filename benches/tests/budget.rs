//! `qilin-budget check`, the CI instruction budget, end to end on the real engine under callgrind,
//! against budget files made from the committed one (`benches/budget.toml`):
//!
//! - budgets halved: a path that runs twice its budget is what a regression looks like to the
//!   check; it fails, naming each such path and no other;
//! - budgets doubled: it passes; then `--update` writes the measured figures and keeps every other
//!   line of the file;
//! - the debug build refuses to measure.
//!
//! The check runs as CI runs it, `cargo run --release` (a debug build's counts mean nothing). In CI
//! the release build is already there (.ci/run's budget step); on a fresh target directory the
//! first test builds it. valgrind is a prerequisite (scripts/test installs it): without it these
//! tests fail, they never skip.
//!
//! Halving and doubling hold as long as the committed budget is within 0.55–1.8 × what the paths
//! measure; CI's own check keeps a path under 1.1 × its budget, and a path that became much cheaper
//! needs its budget re-measured (`check --update`) anyway, or the budget stops holding it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use qilin_benches::budget::{self, PATHS};

fn committed() -> (String, Vec<(String, u64)>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("budget.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let budgets = budget::parse_budget(&text).unwrap();
    for p in PATHS {
        assert!(budgets.iter().any(|(b, _)| b == p), "benches/budget.toml has no budget for {p}");
    }
    (text, budgets)
}

fn require_valgrind() {
    let ok = Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "valgrind is missing: `scripts/test --install-only` installs it (apt-get install valgrind)");
}

/// `qilin-budget check --budget <file> [extra]`, release build, through cargo.
fn check(file: &Path, extra: &[&str]) -> (Output, String, String) {
    require_valgrind();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["run", "-q", "--release", "-p", "qilin-benches", "--bin", "qilin-budget", "--", "check", "--budget"])
        .arg(file)
        .args(extra)
        .output()
        .expect("running cargo");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    eprintln!("{stdout}{stderr}");
    (out, stdout, stderr)
}

/// A copy of the committed budget file with each path's budget scaled.
fn scaled(dir: &Path, name: &str, scale: impl Fn(&str) -> f64) -> PathBuf {
    let (text, budgets) = committed();
    let figures: Vec<(&str, f64)> = budgets.iter().map(|(p, b)| (p.as_str(), *b as f64 * scale(p))).collect();
    let path = dir.join(name);
    std::fs::write(&path, budget::update_budget(&text, &figures).unwrap()).unwrap();
    path
}

/// The measured figure of each path in the check's table (`path measured budget ratio verdict`).
fn measured(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && PATHS.contains(&f[0])).then(|| (f[0].to_owned(), f[1].parse().unwrap()))
        })
        .collect()
}

#[test]
fn halved_budgets_fail_naming_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    // udp and replay at half their budget, session at twice its own.
    let file = scaled(dir.path(), "budget.toml", |p| if p == "session" { 2.0 } else { 0.5 });
    let (out, stdout, stderr) = check(&file, &[]);
    assert_eq!(out.status.code(), Some(1), "the check must fail: {stderr}");
    for p in ["udp", "replay"] {
        assert!(
            stderr.contains(&format!("OVER BUDGET: path `{p}`")),
            "{p} at half its budget is not named (is benches/budget.toml stale? re-measure with check --update):\n{stderr}"
        );
    }
    assert!(!stderr.contains("path `session`"), "session is within twice its budget:\n{stderr}");
    assert_eq!(measured(&stdout).len(), 3, "one table row a path:\n{stdout}");
}

#[test]
fn doubled_budgets_pass_and_update_keeps_the_comments() {
    let dir = tempfile::tempdir().unwrap();
    let file = scaled(dir.path(), "budget.toml", |_| 2.0);
    let before = std::fs::read_to_string(&file).unwrap();
    let (out, _, stderr) = check(&file, &[]);
    assert!(out.status.success(), "every path is within twice its budget: {stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "a check without --update leaves the file alone");

    let (out, stdout, stderr) = check(&file, &["--update"]);
    assert!(out.status.success(), "--update: {stderr}");
    let after = std::fs::read_to_string(&file).unwrap();
    let figures = measured(&stdout);
    assert_eq!(figures.len(), 3, "one table row a path:\n{stdout}");
    let written = budget::parse_budget(&after).unwrap();
    for (p, m) in &figures {
        let b = written.iter().find(|(w, _)| w == p).map(|(_, b)| *b);
        // The table prints one decimal (1218.5 may be 1218.47, written 1218): within half a unit.
        assert!(b.is_some_and(|b| (b as f64 - m).abs() <= 0.55), "{p}: --update wrote {b:?}, the check measured {m}");
    }
    // Every line but the three figures is as it was.
    let (old, new): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    assert_eq!(old.len(), new.len());
    let changed: Vec<&str> = old.iter().zip(&new).filter(|(o, n)| o != n).map(|(_, n)| *n).collect();
    assert_eq!(changed.len(), 3, "only the figures change:\n{after}");
    assert!(changed.iter().all(|l| PATHS.iter().any(|p| l.starts_with(&format!("{p} = ")))), "{changed:?}");
}

/// (A release test run builds no debug binary to refuse.)
#[cfg(debug_assertions)]
#[test]
fn the_debug_build_refuses_to_measure() {
    let out = Command::new(env!("CARGO_BIN_EXE_qilin-budget")).arg("check").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("debug build"), "{stderr}");
    assert!(stderr.contains("cargo run --release -p qilin-benches --bin qilin-budget -- check"), "{stderr}");
}
