//! The pure-Python reader (`python/qilin_shm`) against the Rust one, on segments written by a real
//! `qilin-core`: its unit tests pass, its layout table is `layout::STRUCTS`, it reads every tick
//! bit for bit as `qilin_shm::Reader` does (in order, and while being lapped on a small ring), its
//! snapshot equals `Reader::snapshot`, and it sees a core restart once as a new epoch.
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

fn python() -> Command {
    let mut c = Command::new("python3");
    c.current_dir(repo()).env("PYTHONDONTWRITEBYTECODE", "1").env("PYTHONPATH", repo().join("python"));
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
    let mut cmd = python();
    cmd.args(["-m", "unittest", "discover", "-s", "python/tests", "-v"]);
    // Lets the layout test compare with `qilinctl layout --json` when qilin-tools is built here too.
    let qilinctl = Path::new(env!("CARGO_BIN_EXE_qilin-core")).with_file_name("qilinctl");
    if qilinctl.exists() {
        cmd.env("QILINCTL", qilinctl);
    }
    let out = cmd.output().expect("running python3");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "python unittest failed:\n{stderr}");
    assert!(stderr.contains("OK"), "{stderr}");
}

#[test]
fn python_layout_table_is_layout_structs() {
    let json = check("dump_events.py layout", python().arg(dump_events()).arg("layout").output().unwrap());
    let py: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(py["layout_version"], qilin_shm::layout::LAYOUT_VERSION);
    assert_eq!(py["fingerprint"], format!("{:#018x}", qilin_shm::FINGERPRINT), "fingerprint computed in Python");
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

#[test]
fn python_reads_every_tick_exactly_as_rust_does() {
    let _serial = serial();
    const N: u64 = 20_000;
    let core = Core::start("all", &["--sim-rate", "50000", "--sim-max-ticks", "20000"], None);
    wait_published(&core.segment, N);

    let mut reader = Reader::open(&core.segment).unwrap();
    reader.seek(Start::Oldest);
    let mut rust = Vec::new();
    let mut out = TickRecord::ZERO;
    loop {
        match reader.try_next(&mut out) {
            Next::Empty => break,
            next => rust.push(event_line(next, &out)),
        }
    }
    let py = check(
        "python dump",
        python()
            .arg(dump_events())
            .args(["dump"])
            .arg(&core.segment)
            .args(["--start", "oldest", "--until", &N.to_string()])
            .output()
            .unwrap(),
    );
    let py: Vec<&str> = py.lines().collect();
    assert_eq!(rust.len(), N as usize, "the Rust reader read all {N} (ring 65536: nothing lapped)");
    assert_eq!(py.len(), rust.len(), "one Python line per Rust line");
    for (i, (p, r)) in py.iter().zip(&rust).enumerate() {
        assert_eq!(*p, r.as_str(), "line {i} differs");
    }
    assert_eq!(tick_seq(py[0]), Some(1));
    assert_eq!(tick_seq(py[py.len() - 1]), Some(N));

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

#[test]
fn python_lapped_on_a_small_ring_reports_exact_gaps_and_never_a_torn_tick() {
    let _serial = serial();
    // Below the core's hand-off capacity (65536 by default), so a burst the hot thread cannot
    // drain is queued, not dropped (`handoff_full`): exactly N ticks reach the ring.
    const N: u64 = 60_000;
    let core = Core::start(
        "lapped",
        &["--sim-rate", "2000000", "--sim-max-ticks", &N.to_string()],
        Some("[feed]\nring_slots = 1024\n"),
    );
    assert_eq!(Reader::open(&core.segment).unwrap().identity().ring_slots, 1024);

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
    check(
        "python dump (lapped)",
        python()
            .arg(dump_events())
            .arg("dump")
            .arg(&core.segment)
            .args(["--start", "1", "--until", &N.to_string(), "--lap-every", "1000", "--lap-by", "100", "--out"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    let rust = rust.join().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();

    let (mut expected, mut ticks, mut gaps, mut lost, mut compared) = (1u64, 0u64, 0u64, 0u64, 0u64);
    for line in text.lines() {
        if let Some(seq) = tick_seq(line) {
            assert_eq!(seq, expected, "ticks come in sequence order, right after the previous event");
            expected += 1;
            ticks += 1;
            if let Some(r) = rust.get(&seq) {
                assert_eq!(line, tick_line(r), "Python and Rust read sequence {seq} differently");
                compared += 1;
            }
        } else if let Some(rest) = line.strip_prefix("gap ") {
            let (first, last) = rest.split_once(' ').unwrap();
            let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
            assert_eq!(first, expected, "a gap starts exactly where reading stopped");
            assert!(last >= first);
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
    assert!(compared > 0, "some sequences were read by both readers");
    eprintln!(
        "python: {ticks} ticks, {gaps} gaps ({lost} lost); rust reference read {}; compared {compared}",
        rust.len()
    );
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

    let py = check("python snapshot", python().arg(dump_events()).arg("snapshot").arg(&core.segment).output().unwrap());
    let py: Vec<&str> = py.lines().collect();
    assert_eq!(py, rust);
}

#[test]
fn python_sees_a_core_restart_once_as_a_new_epoch_and_sequences_continue() {
    let _serial = serial();
    let mut core = Core::start("restart", &["--sim-rate", "5000"], None);
    let reader = Reader::open(&core.segment).unwrap();
    let epoch = reader.current_epoch();

    let file = core.dir.path().join("python.txt");
    // Where the reader stops: 2 000 ticks into the second core's, told once the restart is done (a
    // reader that lags on a busy machine still reads that far, by construction).
    let until = core.dir.path().join("until");
    let mut py = python()
        .arg(dump_events())
        .arg("dump")
        .arg(&core.segment)
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
    assert!(status.success(), "python dump failed: {err}");
    let text = std::fs::read_to_string(&file).unwrap();

    let mut expected = 1u64;
    let mut epochs = Vec::new();
    for line in text.lines() {
        if let Some(seq) = tick_seq(line) {
            assert_eq!(seq, expected, "sequences continue across the restart, no tick twice, none lost");
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
