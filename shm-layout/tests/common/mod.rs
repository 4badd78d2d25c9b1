//! Shared helpers of the integration tests: unique segment paths that clean up after themselves,
//! child processes started by re-executing the test binary (with a watchdog), the line protocol
//! children use to talk to their parent, and checksummed records derived from their sequence.
//!
//! Each test file uses only part of this module, hence the `dead_code` allowance below.
#![allow(dead_code)] // every test binary compiles its own copy and uses a different subset

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use qilin_shm::{SegmentOptions, TickRecord, layout::RECORD_WORDS};

/// A spawned child holds copies of every open file of this process until it execs, segment files
/// included, and a writer's lock (`flock`) is released only when the last copy closes: a test that
/// drops a writer and reopens the segment at that moment sees `Locked` (once in CI, under load).
/// Tests that reopen hold [`no_spawn`] for their whole run; [`ChildProc::start`] spawns exclusively.
pub static NO_SPAWN: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds off spawns by other tests of this binary while the caller runs.
pub fn no_spawn() -> std::sync::RwLockReadGuard<'static, ()> {
    NO_SPAWN.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Excludes every other test of this binary while the caller spawns a process by other means than
/// [`ChildProc`] (`mount`, `umount`): a forked child holds a duplicate of every descriptor until
/// its exec, a writer's lock among them, so a spawn beside a test that drops a writer and reopens
/// the segment makes that reopen fail "locked".
pub fn spawning() -> std::sync::RwLockWriteGuard<'static, ()> {
    NO_SPAWN.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Environment variable naming a child's role; unset in a normal `cargo test` run.
pub const ROLE: &str = "QILIN_STRESS_ROLE";
/// Environment variable carrying the segment path to a child.
pub const PATH: &str = "QILIN_STRESS_PATH";
/// Prefix of every line a child prints for its parent (libtest prints its own lines too).
const PREFIX: &str = "QILIN ";

/// `QILIN_LONG=1` selects the long loop counts.
pub fn long() -> bool {
    std::env::var("QILIN_LONG").is_ok_and(|v| v == "1")
}

/// The role of this process if it is a child started for `wanted`, `None` in a normal run.
pub fn child_role(wanted: &str) -> Option<String> {
    std::env::var(ROLE).ok().filter(|role| role == wanted)
}

/// A required environment variable of a child.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child started without {name}"))
}

/// A required numeric environment variable of a child.
pub fn env_u64(name: &str) -> u64 {
    env(name).parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A child tells its parent something: one `QILIN <line>` on stdout, flushed.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{PREFIX}{line}").and_then(|()| out.flush()).expect("stdout to parent");
}

/// A child waits for one line from its parent on stdin (`None` at end of file).
pub fn hear() -> Option<String> {
    let mut line = String::new();
    let n = std::io::stdin().read_line(&mut line).expect("stdin from parent");
    (n > 0).then(|| line.trim_end().to_owned())
}

/// Parses `key=value` words of a child's line into numbers.
pub fn fields(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or_else(|e| panic!("{k}={v} in {line:?}: {e}"))))
        .collect()
}

/// Segment options used by these tests.
pub fn options(ring_slots: u64, instrument_capacity: u32) -> SegmentOptions {
    SegmentOptions { feed_name: "itest".into(), ring_slots, instrument_capacity }
}

/// A unique segment path in `/dev/shm` (pid and a counter in the name), removed when dropped.
#[derive(Debug)]
pub struct TempSegment(PathBuf);

impl TempSegment {
    pub fn new(tag: &str) -> TempSegment {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/dev/shm/qilin-itest-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempSegment(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as text, for environment variables and for matching error messages.
    pub fn text(&self) -> String {
        self.0.to_str().expect("ASCII path").to_owned()
    }
}

impl Drop for TempSegment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(qilin_shm::lock_path(&self.0));
    }
}

/// A child process running one test of this binary in a role, with its stdout lines on a channel.
#[derive(Debug)]
pub struct ChildProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
    reaped: bool,
}

/// How a child ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Its `QILIN` lines not consumed by [`ChildProc::expect`], prefix removed.
    pub lines: Vec<String>,
    pub stderr: String,
}

impl ChildProc {
    /// Re-executes this test binary to run only `test` (`--exact`), with `ROLE=role` and `envs`.
    pub fn spawn(test: &str, role: &str, envs: &[(&str, String)]) -> ChildProc {
        let exe = std::env::current_exe().expect("test binary path");
        let mut command = Command::new(exe);
        command.args(["--exact", test, "--nocapture", "--test-threads=1"]).env(ROLE, role);
        command.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
        ChildProc::start(command, format!("{role} ({test})"))
    }

    /// Starts `command` with piped stdio.
    pub fn start(mut command: Command, name: String) -> ChildProc {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = {
            let _spawning = NO_SPAWN.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            command.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"))
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may have printed "test name ... " on the same line first.
                if let Some(at) = line.find(PREFIX)
                    && tx.send(line[at + PREFIX.len()..].to_owned()).is_err()
                {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let stdin = child.stdin.take();
        ChildProc { name, stdin, child, lines, stdout: Some(stdout), stderr: Some(stderr), reaped: false }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).unwrap_or_else(|e| panic!("to {}: {e}", self.name));
    }

    /// Closes the child's stdin (a child blocked in [`hear`] gets end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the child's next line starting with `word` and returns it; fails (killing the
    /// child) if the child exits first or `deadline` passes.
    pub fn expect(&mut self, word: &str, deadline: Instant) -> String {
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.split_whitespace().next() == Some(word) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => self.fail(&format!("watchdog: no {word:?} line in time")),
                Err(mpsc::RecvTimeoutError::Disconnected) => self.fail(&format!("exited before saying {word:?}")),
            }
        }
    }

    /// Waits for the child to exit, killing it and failing if `deadline` passes (watchdog).
    pub fn finish(mut self, deadline: Instant) -> Finished {
        self.close_stdin();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                self.fail("watchdog: still running at the deadline");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.reaped = true;
        // Read the pipes to their end before looking at the lines: the child may have exited
        // before our reader thread passed on its last line.
        let _ = self.stdout.take().map(JoinHandle::join);
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let lines = self.lines.try_iter().collect();
        Finished { status, lines, stderr }
    }

    /// Like [`finish`](Self::finish), and asserts that the child's test passed.
    pub fn finish_ok(self, deadline: Instant) -> Finished {
        let name = self.name.clone();
        let done = self.finish(deadline);
        assert!(done.status.success(), "child {name} failed ({}):\n{}", done.status, done.stderr);
        done
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL");
        self.reaped = true;
        self.child.wait().expect("reaping the killed child")
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        self.reaped = true;
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        panic!("child {}: {why} (killed; status {status:?}); its stderr:\n{stderr}", self.name);
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const SEED: u64 = 0x5157_494c_494e_2d31;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The record the writer publishes as sequence `seq`: every word from a PRNG seeded by `seq`,
/// `reserved1[1]` a checksum over all the other words.
pub fn record(seq: u64, instruments: u32) -> TickRecord {
    salted_record(seq, instruments, 0)
}

/// [`record`] with `salt` (e.g. the writer's epoch) in `reserved1[0]` and mixed into every word, so
/// two writers publishing the same sequence publish different records.
pub fn salted_record(seq: u64, instruments: u32, salt: u64) -> TickRecord {
    let mut words = [0u64; RECORD_WORDS];
    let mut state = SEED ^ seq.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ mix(salt);
    for word in &mut words {
        state = mix(state);
        *word = state;
    }
    let mut r: TickRecord = zerocopy::transmute!(words);
    r.sequence = seq;
    r.instrument_index = (seq % u64::from(instruments)) as u32;
    r.reserved1[0] = salt;
    r.reserved1[1] = checksum(&r);
    r
}

/// Checksum over every word of `r` but `reserved1[1]` (the last word).
pub fn checksum(r: &TickRecord) -> u64 {
    let words: [u64; RECORD_WORDS] = zerocopy::transmute!(*r);
    words[..RECORD_WORDS - 1].iter().fold(SEED, |h, w| mix(h ^ w))
}

/// Whether `r` is whole and is exactly the record published as `seq` with its salt, bit for bit.
pub fn is_record(r: &TickRecord, seq: u64, instruments: u32) -> bool {
    let got: [u64; RECORD_WORDS] = zerocopy::transmute!(*r);
    let want: [u64; RECORD_WORDS] = zerocopy::transmute!(salted_record(seq, instruments, r.reserved1[0]));
    r.reserved1[1] == checksum(r) && got == want
}
