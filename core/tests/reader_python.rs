//! The Python readers (`python/qilin_shm`: the stdlib `Reader`, run by the system `python3` without
//! numpy, and the numpy `qilin_shm.batch.Reader`, run by the test venv's Python) against the Rust
//! one, on segments written by a real `qilin-core`: their unit tests pass, the layout table is
//! `layout::STRUCTS`, both read every tick bit for bit as `qilin_shm::Reader` does (in order; while
//! being lapped on a small ring, by construction; after a lap on a quiet ring with the same gaps
//! for the same lap headroom), their snapshots equal `Reader::snapshot`, they see a SIGKILLed and
//! restarted core once as a new epoch and read the same bytes across it, and a segment of another
//! layout is refused with the Rust and C readers' message.
//!
//! Python lines and Rust lines use one canonical format (see `python/tests/dump_events.py`):
//! every `TickRecord` field in declaration order, doubles as IEEE-754 bits in hex, so "equal" is
//! exact. Nothing here asserts speed; waits have a generous watchdog only.

mod common;

use common::{WATCHDOG, unique, wait_for};

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use qilin_shm::{Liveness, Next, Reader, RunState, Start, TickRecord, layout::id_str};
use serde_json::Value;

/// Each test runs a busy-polling core; one at a time keeps them from starving each other (and the
/// Python reader) on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// Which Python reader a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Py {
    /// `qilin_shm.Reader`, under the system `python3` (no numpy there: the stdlib reader needs none).
    Stdlib,
    /// `qilin_shm.batch.Reader.read_batch(n)`, under the test venv's Python (numpy).
    Batch(usize),
}

impl Py {
    /// dump_events.py's arguments for this reader.
    fn args(self) -> Vec<String> {
        match self {
            Py::Stdlib => vec![],
            Py::Batch(n) => vec!["--batch".into(), n.to_string()],
        }
    }
}

/// The system `python3` (stdlib only), the package on PYTHONPATH.
fn python() -> Command {
    let mut c = Command::new("python3");
    c.current_dir(repo()).env("PYTHONDONTWRITEBYTECODE", "1").env("PYTHONPATH", repo().join("python"));
    c
}

/// The Python that runs `which`: the system one, or the venv's (numpy) for the batch reader.
fn python_for(which: Py) -> Command {
    let mut c = match which {
        Py::Stdlib => return python(),
        Py::Batch(_) => Command::new(qilin_testkit::venv_python()),
    };
    c.current_dir(repo()).env("PYTHONDONTWRITEBYTECODE", "1").env("PYTHONPATH", repo().join("python"));
    c
}

/// `dump_events.py dump SEGMENT` with the reader `which`.
fn dump_command(which: Py, segment: &Path) -> Command {
    let mut c = python_for(which);
    c.arg(dump_events()).arg("dump").arg(segment).args(which.args());
    c
}

fn dump_events() -> PathBuf {
    repo().join("python/tests/dump_events.py")
}

fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running `qilin-core` with a temp dir for its socket and config; SIGKILLed on drop, segment removed.
struct Core {
    child: Child,
    segment: PathBuf,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Core {
    fn start(tag: &str, args: &[&str], config: Option<&str>) -> Core {
        let dir = tempfile::tempdir().unwrap();
        let segment = PathBuf::from(format!("/dev/shm/{}", unique(tag)));
        let mut all: Vec<String> = vec![
            "--segment".into(),
            segment.display().to_string(),
            "--control-socket".into(),
            dir.path().join("x.sock").display().to_string(),
        ];
        if let Some(text) = config {
            let file = dir.path().join("core.toml");
            std::fs::write(&file, text).unwrap();
            all.extend(["--config".into(), file.display().to_string()]);
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let child = Core::spawn(&all);
        let core = Core { child, segment, args: all, dir };
        core.wait_running();
        core
    }

    fn spawn(args: &[String]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_qilin-core"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting qilin-core")
    }

    fn wait_running(&self) {
        wait_for("qilin-core running in the segment", || {
            Reader::open(&self.segment)
                .ok()
                .filter(|r| r.writer_pid() == u64::from(self.child.id()) && r.run_state() == Some(RunState::Running))
                .map(|_| ())
        });
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new core on the same segment with the same arguments (after `kill`).
    fn respawn(&mut self) {
        self.child = Core::spawn(&self.args);
        self.wait_running();
    }

    /// SIGTERM: a clean stop (run state Stopped).
    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + WATCHDOG;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "qilin-core did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.kill();
        qilin_testkit::remove_segment(&self.segment);
    }
}

fn wait_published(segment: &Path, n: u64) {
    let reader = Reader::open(segment).unwrap();
    wait_for("every tick published", || (reader.write_cursor() >= n).then_some(()));
    assert_eq!(reader.write_cursor(), n, "the simulator stops at --sim-max-ticks");
}

fn bits(v: f64) -> String {
    format!("{:016x}", v.to_bits())
}

fn join<T>(values: &[T], f: impl Fn(&T) -> String) -> String {
    values.iter().map(f).collect::<Vec<_>>().join(",")
}

/// The canonical line of a tick: every field in declaration order (as `dump_events.py` prints it).
fn tick_line(t: &TickRecord) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let scalars = [
        t.last_price,
        t.pre_settlement_price,
        t.pre_close_price,
        t.pre_open_interest,
        t.open_price,
        t.highest_price,
        t.lowest_price,
    ];
    let more = [
        t.turnover,
        t.open_interest,
        t.close_price,
        t.settlement_price,
        t.upper_limit_price,
        t.lower_limit_price,
        t.pre_delta,
        t.curr_delta,
        t.average_price,
        t.banding_upper_price,
        t.banding_lower_price,
    ];
    format!(
        "tick {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        t.sequence,
        t.exchange_time_ns,
        t.receive_ns,
        t.publish_ns,
        t.instrument_index,
        t.trading_day,
        t.action_day,
        t.update_time_ms,
        t.quality,
        t.exchange,
        t.source,
        hex(&t.reserved0),
        t.instrument_id_str().unwrap_or("?"),
        scalars.iter().map(|v| bits(*v)).collect::<Vec<_>>().join(" "),
        t.volume,
        more.iter().map(|v| bits(*v)).collect::<Vec<_>>().join(" "),
        join(&t.bid_price, |v| bits(*v)),
        join(&t.ask_price, |v| bits(*v)),
        join(&t.bid_volume, |v| v.to_string()),
        join(&t.ask_volume, |v| v.to_string()),
        join(&t.reserved1, |v| v.to_string()),
    )
}

fn event_line(next: Next, t: &TickRecord) -> String {
    match next {
        Next::Tick => tick_line(t),
        Next::Gap { first, last } => format!("gap {first} {last}"),
        Next::NewEpoch { previous, current } => format!("epoch {previous} {current}"),
        Next::Empty => unreachable!(),
    }
}

fn tick_seq(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

#[test]
fn python_unit_tests_pass() {
    // `qilinctl layout --json` for the layout tests: the binary of this build.
    let qilinctl = qilin_testkit::workspace_bin("qilinctl");
    let bin_dir = qilinctl.parent().unwrap();
    // The stdlib reader's tests under the system python3 (no numpy, no pytest).
    let out = python()
        .args(["-m", "unittest", "discover", "-s", "python/tests", "-p", "test_qilin_shm.py", "-v"])
        .env("QILIN_BIN_DIR", bin_dir)
        .output()
        .expect("running python3");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "python unittest failed:\n{stderr}");
    assert!(stderr.contains("OK") && !stderr.contains("skipped"), "{stderr}");
    // The package's tests, the numpy ones included, under the venv's pytest.
    let mut files = vec!["python/tests/test_qilin_shm.py".to_string()];
    let mut batch: Vec<String> = std::fs::read_dir(repo().join("python/tests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // test_batch_install.py (pip from the package index into a fresh venv) runs in scripts/test's pytest only.
        .filter(|n| n.starts_with("test_batch") && n.ends_with(".py") && n != "test_batch_install.py")
        .map(|n| format!("python/tests/{n}"))
        .collect();
    batch.sort();
    assert!(!batch.is_empty(), "python/tests/test_batch*.py");
    files.extend(batch);
    let out = python_for(Py::Batch(0))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .args(&files)
        .env("QILIN_BIN_DIR", bin_dir)
        .output()
        .expect("running the venv's pytest");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "pytest {files:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed") && !stdout.contains("skipped"), "{stdout}");
}

#[test]
fn python_layout_table_is_layout_structs() {
    let json = check("dump_events.py layout", python().arg(dump_events()).arg("layout").output().unwrap());
    let py: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(py["layout_version"], qilin_shm::layout::LAYOUT_VERSION);
    assert_eq!(
        py["fingerprint"],
        qilin_shm::layout::fingerprint_text(qilin_shm::FINGERPRINT),
        "fingerprint computed in Python"
    );
    assert_eq!(py["magic"], "QILINSHM");
    let counters: Vec<&str> = py["counters"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(counters, qilin_shm::Counter::NAMES);
    let quality: Vec<(u64, &str)> = py["quality"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["bit"].as_u64().unwrap(), q["name"].as_str().unwrap()))
        .collect();
    let expected: Vec<(u64, &str)> = qilin_shm::quality::NAMES.iter().map(|(b, n)| (u64::from(*b), *n)).collect();
    assert_eq!(quality, expected);
    assert_eq!(py["quality_anomalies"], qilin_shm::quality::ANOMALIES);
    assert_eq!(py["quality_notes"], qilin_shm::quality::NOTES);
    let structs = py["structs"].as_array().unwrap();
    assert_eq!(structs.len(), qilin_shm::layout::STRUCTS.len());
    for (p, r) in structs.iter().zip(qilin_shm::layout::STRUCTS) {
        assert_eq!(p["name"], r.name);
        assert_eq!(p["size"], r.size, "{}", r.name);
        let fields = p["fields"].as_array().unwrap();
        assert_eq!(fields.len(), r.fields.len(), "{}: every field", r.name);
        for (pf, rf) in fields.iter().zip(r.fields) {
            assert_eq!(pf["name"], rf.name, "{}", r.name);
            assert_eq!(pf["offset"], rf.offset, "{}.{}", r.name, rf.name);
            assert_eq!(pf["size"], rf.size, "{}.{}", r.name, rf.name);
        }
    }
}

/// Every event of `reader` from where it stands until it reports Empty, as canonical lines.
fn rust_lines(reader: &mut Reader) -> Vec<String> {
    let mut lines = Vec::new();
    let mut out = TickRecord::ZERO;
    loop {
        match reader.try_next(&mut out) {
            Next::Empty => return lines,
            next => lines.push(event_line(next, &out)),
        }
    }
}

fn assert_same_lines(who: &str, py: &[&str], rust: &[String]) {
    if let Some(i) = (0..py.len().min(rust.len())).find(|i| py[*i] != rust[*i]) {
        panic!("{who}: line {i} differs:\n  python {}\n  rust   {}", py[i], rust[i]);
    }
    assert_eq!(py.len(), rust.len(), "{who}: one Python line per Rust line");
}

#[test]
fn python_reads_every_tick_exactly_as_rust_does() {
    let _serial = serial();
    const N: u64 = 20_000;
    let core = Core::start("all", &["--sim-rate", "50000", "--sim-max-ticks", "20000"], None);
    wait_published(&core.segment, N);

    let mut reader = Reader::open(&core.segment).unwrap();
    reader.seek(Start::Oldest);
    let rust = rust_lines(&mut reader);
    assert_eq!(rust.len(), N as usize, "the Rust reader read all {N} (ring 65536: nothing lapped)");
    // Batch sizes: one run for everything, and an odd size whose runs straddle each other.
    for which in [Py::Stdlib, Py::Batch(65536), Py::Batch(7)] {
        let py = check(
            &format!("python dump ({which:?})"),
            dump_command(which, &core.segment).args(["--start", "oldest", "--until", &N.to_string()]).output().unwrap(),
        );
        let py: Vec<&str> = py.lines().collect();
        assert_same_lines(&format!("{which:?}"), &py, &rust);
        assert_eq!(tick_seq(py[0]), Some(1));
        assert_eq!(tick_seq(py[py.len() - 1]), Some(N));
    }

    // The example prints the same mid prices the Rust reader's ticks give.
    let mids = check(
        "python/examples/mid_prices.py",
        python()
            .arg("python/examples/mid_prices.py")
            .arg(&core.segment)
            .args(["--oldest", "--count", "500"])
            .output()
            .unwrap(),
    );
    let mut out = TickRecord::ZERO;
    let mut reader = Reader::open(&core.segment).unwrap();
    reader.seek(Start::Oldest);
    let expected: Vec<String> = (0..500)
        .map(|_| {
            assert_eq!(reader.try_next(&mut out), Next::Tick);
            let mid = (out.bid_price[0] + out.ask_price[0]) / 2.0;
            let shown = if mid.is_nan() { "-".to_string() } else { format!("{mid:.4}") };
            format!("{:>10} {:<10} {shown}", out.sequence, out.instrument_id_str().unwrap())
        })
        .collect();
    assert_eq!(mids.lines().collect::<Vec<_>>(), expected);
}

/// Lapped by construction: after every 1000 ticks the Python reader waits until the core is a
/// whole ring (plus 100) ahead, so its next read finds its slot overwritten, whatever the speeds.
fn lapped_on_a_small_ring(which: Py) {
    // Below the core's hand-off capacity (65536 by default), so a burst the hot thread cannot
    // drain is queued, not dropped (`handoff_full`): exactly N ticks reach the ring.
    const N: u64 = 60_000;
    const RING: u64 = 1024;
    const LAP_BY: u64 = 100;
    let core = Core::start(
        "lapped",
        &["--sim-rate", "2000000", "--sim-max-ticks", &N.to_string()],
        Some("[feed]\nring_slots = 1024\n"),
    );
    assert_eq!(Reader::open(&core.segment).unwrap().identity().ring_slots, RING);
    let headroom = qilin_shm::default_lap_headroom(RING);

    // Reference: a Rust reader spinning on the same segment at the same time, keeping every record
    // it read whole. It may be lapped too; comparisons are made where both read a sequence.
    let segment = core.segment.clone();
    let rust = std::thread::spawn(move || {
        let mut reader = Reader::open(&segment).unwrap();
        reader.seek(Start::Sequence(1));
        let mut got: HashMap<u64, TickRecord> = HashMap::new();
        let mut out = TickRecord::ZERO;
        let deadline = Instant::now() + WATCHDOG;
        while reader.next_sequence() <= N {
            match reader.try_next(&mut out) {
                Next::Tick => {
                    got.insert(out.sequence, out);
                }
                Next::Empty => {
                    assert!(Instant::now() < deadline, "Rust reference reader timed out");
                    core::hint::spin_loop();
                }
                _ => {}
            }
        }
        got
    });

    let file = core.dir.path().join("python.txt");
    let batch = match which {
        Py::Batch(_) => Py::Batch(256),
        Py::Stdlib => Py::Stdlib,
    };
    check(
        &format!("python dump (lapped, {batch:?})"),
        dump_command(batch, &core.segment)
            .args(["--start", "1", "--until", &N.to_string(), "--lap-every", "1000", "--lap-by", &LAP_BY.to_string()])
            .arg("--out")
            .arg(&file)
            .output()
            .unwrap(),
    );
    let rust = rust.join().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();

    let (mut expected, mut ticks, mut gaps, mut lost, mut compared) = (1u64, 0u64, 0u64, 0u64, 0u64);
    let mut longest = 0u64;
    for line in text.lines() {
        if let Some(seq) = tick_seq(line) {
            assert_eq!(seq, expected, "ticks come in sequence order, right after the previous event");
            expected += 1;
            ticks += 1;
            if let Some(r) = rust.get(&seq) {
                assert_eq!(line, tick_line(r), "{batch:?}: Python and Rust read sequence {seq} differently");
                compared += 1;
            }
        } else if let Some(rest) = line.strip_prefix("gap ") {
            let (first, last) = rest.split_once(' ').unwrap();
            let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
            assert_eq!(first, expected, "a gap starts exactly where reading stopped");
            assert!(last >= first);
            // Lapped, the reader resumes `headroom` past the oldest (at least `want`, whose slot was
            // overwritten), so every gap skips at least `headroom` sequences (the newest is far
            // beyond on a ring of 1024); after a wait to be lapped by LAP_BY, LAP_BY more.
            assert!(
                last - first + 1 >= headroom,
                "{batch:?}: gap {first}..={last} is shorter than the headroom {headroom}"
            );
            longest = longest.max(last - first + 1);
            expected = last + 1;
            gaps += 1;
            lost += last - first + 1;
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    assert_eq!(expected, N + 1, "ticks and gaps account for every sequence 1..={N}");
    assert_eq!(ticks + lost, N);
    assert!(gaps > 0, "the reader waits to be lapped after every 1000 ticks, so it must see gaps");
    assert!(longest >= LAP_BY + headroom, "{batch:?}: no gap of lap {LAP_BY} + headroom {headroom}: {longest}");
    assert!(compared > 0, "some sequences were read by both readers");
    eprintln!(
        "python {batch:?}: {ticks} ticks, {gaps} gaps ({lost} lost); rust reference read {}; compared {compared}",
        rust.len()
    );
}

#[test]
fn python_lapped_on_a_small_ring_reports_exact_gaps_and_never_a_torn_tick() {
    let _serial = serial();
    lapped_on_a_small_ring(Py::Stdlib);
}

#[test]
fn python_batch_lapped_on_a_small_ring_reports_exact_gaps_and_never_a_torn_record() {
    let _serial = serial();
    lapped_on_a_small_ring(Py::Batch(256));
}

/// A ring the core lapped many times, then stopped: every reader starting at sequence 1 is lapped
/// at once, deterministically. The Python readers print exactly the Rust reader's lines (the same
/// gap, the same resume point, the same bytes after it) for the default lap headroom, none, some,
/// and more than a ring.
#[test]
fn python_readers_lapped_on_a_quiet_ring_resume_where_rust_does_for_every_lap_headroom() {
    let _serial = serial();
    const N: u64 = 5000;
    let mut core = Core::start(
        "headroom",
        &["--sim-rate", "100000", "--sim-max-ticks", &N.to_string()],
        Some("[feed]\nring_slots = 1024\n"),
    );
    wait_published(&core.segment, N);
    core.terminate();
    for headroom in [None, Some(0u64), Some(300), Some(5000)] {
        let mut reader = Reader::open(&core.segment).unwrap();
        if let Some(h) = headroom {
            reader.set_lap_headroom(h);
        }
        reader.seek(Start::Sequence(1));
        let rust = rust_lines(&mut reader);
        let resume = (N + 1 - 1024 + reader.lap_headroom()).min(N + 1);
        assert_eq!(rust[0], format!("gap 1 {}", resume - 1), "the Rust reader, headroom {headroom:?}");
        for which in [Py::Stdlib, Py::Batch(65536), Py::Batch(100)] {
            let mut cmd = dump_command(which, &core.segment);
            cmd.args(["--start", "1", "--until", &N.to_string()]);
            if let Some(h) = headroom {
                cmd.args(["--lap-headroom", &h.to_string()]);
            }
            let py = check(&format!("python dump ({which:?}, headroom {headroom:?})"), cmd.output().unwrap());
            let py: Vec<&str> = py.lines().collect();
            assert_same_lines(&format!("{which:?}, headroom {headroom:?}"), &py, &rust);
        }
    }
}

#[test]
fn python_snapshot_on_a_stopped_core_equals_rust_snapshot() {
    let _serial = serial();
    let mut core = Core::start("snapshot", &["--sim-rate", "50000", "--sim-max-ticks", "5000"], None);
    wait_published(&core.segment, 5000);
    core.terminate();

    let reader = Reader::open(&core.segment).unwrap();
    assert_eq!(reader.run_state(), Some(RunState::Stopped), "SIGTERM stops cleanly");
    let Liveness::Stopped { at_ns } = reader.liveness(qilin_shm::now_ns(), 1_000_000_000) else {
        panic!("a cleanly stopped core is reported stopped")
    };
    let mut rust = vec![
        format!("liveness stopped {at_ns}"),
        format!("cursor {} epoch {} pid {}", reader.write_cursor(), reader.current_epoch(), reader.writer_pid()),
    ];
    for (i, e) in reader.instruments().iter().enumerate() {
        rust.push(format!(
            "instrument {i} {} {} {} {} {}",
            e.instrument_id_str().unwrap_or("?"),
            id_str(&e.exchange_id).unwrap_or("?"),
            e.exchange,
            e.volume_multiple,
            bits(e.price_tick)
        ));
    }
    let snapshot = reader.snapshot().unwrap();
    assert!(!snapshot.ticks.is_empty());
    rust.push(format!("as_of {}", snapshot.as_of));
    rust.extend(snapshot.ticks.iter().map(tick_line));

    for which in [Py::Stdlib, Py::Batch(1)] {
        let mut cmd = python_for(which);
        cmd.arg(dump_events()).arg("snapshot").arg(&core.segment);
        if which != Py::Stdlib {
            cmd.arg("--batch");
        }
        let py = check(&format!("python snapshot ({which:?})"), cmd.output().unwrap());
        let py: Vec<&str> = py.lines().collect();
        assert_eq!(py, rust, "{which:?}");
    }
}

/// One Python reader following a core that is SIGKILLed and started again on the same segment.
fn restart(which: Py) {
    let mut core = Core::start("restart", &["--sim-rate", "5000"], None);
    let reader = Reader::open(&core.segment).unwrap();
    let epoch = reader.current_epoch();

    let file = core.dir.path().join("python.txt");
    // Where the reader stops: 2 000 ticks into the second core's, told once the restart is done (a
    // reader that lags on a busy machine still reads that far, by construction).
    let until = core.dir.path().join("until");
    let mut py = dump_command(which, &core.segment)
        .args(["--start", "1", "--ready", "--out"])
        .arg(&file)
        .arg("--until-file")
        .arg(&until)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(py.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready", "the Python reader opened the segment before the restart");

    wait_for("2000 ticks from the first core", || (reader.write_cursor() >= 2000).then_some(()));
    core.kill();
    let killed_at = reader.write_cursor();
    core.respawn();
    assert_eq!(reader.current_epoch(), epoch + 1, "one restart, one new epoch");
    let stop = killed_at + 2000;
    std::fs::write(until.with_extension("tmp"), stop.to_string()).unwrap();
    std::fs::rename(until.with_extension("tmp"), &until).unwrap();

    let status = wait_for("the Python reader to finish", || py.try_wait().unwrap());
    let mut err = String::new();
    py.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "python dump ({which:?}) failed: {err}");
    let text = std::fs::read_to_string(&file).unwrap();

    // The same ticks, read by the Rust reader from the ring afterwards (65536 slots at 5000 ticks/s:
    // nothing overwritten yet), bit for bit.
    let mut after = Reader::open(&core.segment).unwrap();
    after.seek(Start::Sequence(1));
    let mut rust: HashMap<u64, String> = HashMap::new();
    let mut out = TickRecord::ZERO;
    while after.next_sequence() <= stop {
        match after.try_next(&mut out) {
            Next::Tick => {
                rust.insert(out.sequence, tick_line(&out));
            }
            other => panic!("the Rust reader read {other:?} from a ring nothing lapped"),
        }
    }

    let mut expected = 1u64;
    let mut epochs = Vec::new();
    for line in text.lines() {
        if let Some(seq) = tick_seq(line) {
            assert_eq!(seq, expected, "sequences continue across the restart, no tick twice, none lost");
            assert_eq!(Some(line), rust.get(&seq).map(String::as_str), "{which:?}: sequence {seq} differs from Rust's");
            expected += 1;
        } else if let Some(rest) = line.strip_prefix("epoch ") {
            epochs.push((rest.to_string(), expected));
        } else {
            panic!("unexpected line {line:?} (a gap at 5000 ticks/s on a 65536-slot ring)");
        }
    }
    assert_eq!(epochs.len(), 1, "the restart is reported once: {epochs:?}");
    assert_eq!(epochs[0].0, format!("{epoch} {}", epoch + 1));
    assert!(expected > epochs[0].1 + 1999, "2000 ticks read after the new epoch");
    assert_eq!(expected - 1, stop, "read up to 2000 of the second core's ticks (first core stopped at {killed_at})");
}

#[test]
fn python_sees_a_core_restart_once_as_a_new_epoch_and_sequences_continue() {
    let _serial = serial();
    restart(Py::Stdlib);
}

#[test]
fn python_batch_sees_a_core_restart_once_as_a_new_epoch_and_reads_the_same_bytes_as_rust() {
    let _serial = serial();
    restart(Py::Batch(64));
}

/// Builds examples/c/qilin_tail.c (the C reader on shm-layout/include/qilin_shm.h) into `dir`.
fn build_c_tail(dir: &Path) -> PathBuf {
    let exe = dir.join("qilin_tail");
    let out = Command::new("gcc")
        .args(["-std=c11", "-O2", "-I"])
        .arg(repo().join("shm-layout/include"))
        .arg(repo().join("examples/c/qilin_tail.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("running gcc (apt-get install build-essential)");
    assert!(out.status.success(), "gcc qilin_tail.c failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

/// A segment of another layout (version, fingerprint), and a few other bad headers, are refused by
/// both Python readers with exactly the Rust reader's message, which is the C reader's too.
#[test]
fn a_segment_of_another_layout_is_refused_with_the_rust_and_c_message() {
    let dir = tempfile::tempdir().unwrap();
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("layout")));
    let options = qilin_shm::SegmentOptions { feed_name: "pytest".into(), ring_slots: 1024, instrument_capacity: 8 };
    let good = {
        let writer = qilin_shm::Writer::open(&segment, &options).unwrap();
        drop(writer);
        let bytes = std::fs::read(&segment).unwrap();
        qilin_testkit::remove_segment(&segment);
        bytes
    };
    let patched = |name: &str, offset: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[offset..offset + bytes.len()].copy_from_slice(bytes);
        let path = dir.path().join(name);
        std::fs::write(&path, b).unwrap();
        path
    };
    let tail = build_c_tail(dir.path());
    let good_path = patched("good", 0, b"QILINSHM");
    let cases = [
        ("other layout version", patched("version", 8, &2u32.to_le_bytes()), "layout version 2"),
        ("other fingerprint", patched("fingerprint", 16, &0x1234u64.to_le_bytes()), "layout fingerprint"),
        ("not a segment", patched("magic", 0, b"NOTQILIN"), "is not a qilin segment"),
        ("ring not a power of two", patched("ring", 40, &1000u64.to_le_bytes()), "ring_slots = 1000"),
        (
            "truncated",
            {
                let path = dir.path().join("truncated");
                std::fs::write(&path, &good[..good.len() - 4096]).unwrap();
                path
            },
            "is truncated",
        ),
    ];
    for (what, path, needle) in &cases {
        let rust = Reader::open(path).expect_err(what).to_string();
        assert!(rust.contains(needle) && rust.contains(&path.display().to_string()), "{what}: {rust}");
        let c = Command::new(&tail).arg(path).args(["--count", "1"]).output().unwrap();
        assert_eq!(c.status.code(), Some(2), "{what}: qilin_tail should refuse it");
        let c = String::from_utf8(c.stderr).unwrap();
        assert_eq!(c.strip_prefix("qilin_tail: ").and_then(|s| s.strip_suffix('\n')), Some(rust.as_str()), "{what}: C");
        for which in [Py::Stdlib, Py::Batch(1)] {
            let mut cmd = python_for(which);
            cmd.arg(dump_events()).arg("open").arg(path);
            if which != Py::Stdlib {
                cmd.arg("--batch");
            }
            let out = cmd.output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what}: {which:?} should refuse it: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let py = String::from_utf8(out.stdout).unwrap();
            assert_eq!(py.trim_end_matches('\n'), rust, "{what}: {which:?}");
        }
    }
    for which in [Py::Stdlib, Py::Batch(1)] {
        let mut cmd = python_for(which);
        cmd.arg(dump_events()).arg("open").arg(&good_path);
        if which != Py::Stdlib {
            cmd.arg("--batch");
        }
        assert_eq!(check(&format!("open the good segment ({which:?})"), cmd.output().unwrap()), "ok\n");
    }
}
