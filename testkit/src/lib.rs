//! What every process-level test of qilin-feed shares (a dev-dependency only): the watchdog that
//! bounds every wait, names unique to a test process, the workspace's binaries, built beside the
//! tests, reading a test's ring back, its audit log, and a small tmpfs for a full disk.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use qilin_shm::{Next, Reader, Source, Start, TickRecord};

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
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit/ sits in the workspace")
}

/// A binary of the workspace built beside the running test (`cargo test --workspace` builds them
/// all); built with cargo when missing (running one crate's tests alone).
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(Path::parent).expect("a test binary sits in <target>/<profile>/deps");
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
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building the workspace binaries failed");
    }
    assert!(path.exists(), "{} not found after building", path.display());
    path
}

/// The Python of the test environment, `<workspace>/.venv/bin/python`, with numpy, pandas, pyarrow,
/// polars, nats-py, pytest and vnpy (`python/requirements-test.txt`), made by `scripts/test`.
/// Panics naming that command when it is missing: a test that needs it fails, it never skips.
pub fn venv_python() -> PathBuf {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `scripts/test --install-only` creates it (python/requirements-test.txt)",
        python.display()
    );
    python
}

/// Removes a test's segment and the writer's lock file beside it (`<segment>.lock`).
pub fn remove_segment(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(qilin_shm::lock_path(path));
}

/// [`remove_segment`], and the sidecars' status directory beside it (`<segment>.sidecars`): what a
/// test's core leaves behind when it is dropped.
pub fn remove_segment_and_status(path: &Path) {
    remove_segment(path);
    let mut dir = path.as_os_str().to_owned();
    dir.push(".sidecars");
    let _ = std::fs::remove_dir_all(dir);
}

/// Records 1..=`n` of the segment at `path`, once the writer has published them (the test's ring
/// is sized to hold them all; a gap fails the test).
pub fn read_ring(path: &Path, n: u64) -> Vec<TickRecord> {
    let mut reader = wait_for("the segment", || Reader::open(path).ok());
    wait_for(&format!("{n} records in the ring"), || (reader.write_cursor() >= n).then_some(()));
    reader.seek(Start::Sequence(1));
    let mut out = Vec::with_capacity(n as usize);
    let mut tick = TickRecord::ZERO;
    while (out.len() as u64) < n {
        match reader.try_next(&mut tick) {
            Next::Tick => out.push(tick),
            Next::Empty | Next::NewEpoch { .. } => {}
            Next::Gap { first, last } => panic!("lost {first}..={last} reading the test's own ring"),
        }
    }
    out
}

/// Waits until the writer of `reader`'s segment has taken everything handed to it: two of its
/// housekeeping rounds (each flushes its counters and follows polling) pass with no struct taken
/// (received, standby, hand-off drops and refused datagrams unchanged). Call it once the inputs
/// are known to be finished; then "nothing more was published" is a positive observation, not a
/// sleep.
pub fn await_drained(reader: &Reader) {
    use qilin_shm::Counter;
    let taken = || {
        [Counter::TicksReceived, Counter::StandbyTicks, Counter::HandoffFull, Counter::UdpRefused]
            .iter()
            .map(|&c| reader.counter(c))
            .sum::<u64>()
    };
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let before = taken();
        for _ in 0..2 {
            let beat = reader.heartbeat_ns();
            wait_for("a housekeeping round of the writer", || (reader.heartbeat_ns() != beat).then_some(()));
        }
        if taken() == before {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {WATCHDOG:?} waiting for the writer to drain its inputs");
    }
}

/// Runs of consecutive records by source: which session the feed took its ticks from, in order.
pub fn source_runs(ticks: &[TickRecord]) -> Vec<(Source, usize)> {
    let mut runs: Vec<(Source, usize)> = Vec::new();
    for t in ticks {
        let s = Source::from_code(t.source).expect("a known source");
        match runs.last_mut() {
            Some((last, n)) if *last == s => *n += 1,
            _ => runs.push((s, 1)),
        }
    }
    runs
}

/// The audit log's entries (JSON lines; a line being written is skipped).
pub fn audit_entries(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Whether an audit entry is one of the core's session switches (`activate`, `failover`,
/// `failback`; refused ones too). The core also audits other commands (`subscribe`, `relogin`, …).
pub fn is_switch(entry: &serde_json::Value) -> bool {
    entry["program"] == "qilin-core"
        && ["activate", "failover", "failback"].contains(&entry["command"].as_str().unwrap_or(""))
}

/// The switches the core made (audited with exit code 0), in order: (command, trigger).
pub fn switches(path: &Path) -> Vec<(String, String)> {
    audit_entries(path)
        .iter()
        .filter(|e| is_switch(e) && e["exit_code"] == 0)
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            (text(&e["command"]), text(&e["actions"][0]["trigger"]))
        })
        .collect()
}

/// `qilinctl audit verify` passes on the log at `path` (its hash chain and every entry sound).
pub fn assert_audit_verifies(path: &Path) {
    let out = Command::new(workspace_bin("qilinctl")).args(["audit", "verify", "--log"]).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "qilinctl audit verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs mounted on a directory for the test, unmounted on drop (also when the test fails).
pub struct Tmpfs {
    /// The mount point.
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `2m`) on `dir` (created); needs root.
    pub fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    /// Bytes free.
    pub fn available(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.dir).unwrap();
        s.blocks_available() as u64 * s.fragment_size() as u64
    }

    /// A file that leaves about `leave` bytes free.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.dir.join(name);
        let size = self.available().saturating_sub(leave);
        std::fs::write(&path, vec![0xa5u8; size as usize]).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_workspace_is_found() {
        assert_ne!(unique("a"), unique("a"));
        assert!(workspace().join("Cargo.toml").is_file() && workspace().join("testkit").is_dir());
        assert_eq!(wait_for("an answer", || Some(7)), 7);
    }
}
