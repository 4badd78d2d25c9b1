//! The C reader (`shm-layout/include/qilin_shm.h`, driven by `examples/c/qilin_tail.c`) against a
//! real `qilin-core`, compared with the Rust reader:
//! (a) after the core has published 20 000 sim ticks, the C reader (built as C11 and as C++17) reads
//!     from the oldest and prints exactly the lines the Rust reader produces, and the C last-value
//!     read of every instrument equals the Rust one;
//! (b) C readers started before the core, reading while it writes into a 1024-slot ring (one of them
//!     deliberately lagging more than a ring behind, so it is lapped for certain), print a consistent
//!     stream: every sequence 1..=20000 exactly once, as a tick or inside a gap that starts where
//!     the stream stood, and every tick equals what a concurrent Rust reader read for that sequence;
//! (c) bad files give the same clear error in C as in Rust, naming the path;
//! (d) a reader lapped on a quiet ring resumes where the Rust reader does, with the same lap headroom.
//!
//! Needs gcc and g++ (Debian/Ubuntu: `apt-get install build-essential`); fails, never skips, without.

mod common;

use common::{WATCHDOG, unique, wait_for};

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use qilin_shm::{Next, Reader, RunState, SegmentOptions, Start, TickRecord, Writer};

const TOTAL: u64 = 20_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch directory and a segment path in /dev/shm, both removed on drop.
struct Scratch {
    dir: PathBuf,
    segment: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let name = unique(tag);
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, segment: PathBuf::from(format!("/dev/shm/{name}")) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        qilin_testkit::remove_segment(&self.segment);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds examples/c/qilin_tail.c with `compiler` (gcc: as C11, g++: as C++17) at -O2.
fn build_tail(compiler: &str, dir: &Path) -> PathBuf {
    let exe = dir.join(format!("qilin_tail-{compiler}"));
    let std = if compiler == "g++" { ["-std=c++17", "-x", "c++"].as_slice() } else { ["-std=c11"].as_slice() };
    let out = Command::new(compiler)
        .args(std)
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(workspace().join("shm-layout/include"))
        .arg(workspace().join("examples/c/qilin_tail.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {compiler} ({e}): install a C/C++ toolchain (Debian/Ubuntu: apt-get install build-essential)")
        });
    assert!(out.status.success(), "{compiler} qilin_tail.c failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

/// A running `qilin-core`, killed and its control socket removed on drop.
struct Core {
    child: Child,
    socket: PathBuf,
}

impl Core {
    fn start(scratch: &Scratch, extra: &[&str]) -> Core {
        let socket = scratch.dir.join("x.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-core"))
            .arg("--segment")
            .arg(&scratch.segment)
            .arg("--control-socket")
            .arg(&socket)
            .args(["--sim-rate", "50000", "--sim-max-ticks", &TOTAL.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting qilin-core");
        let core = Core { child, socket };
        wait_for("qilin-core running in the segment", || {
            Reader::open(&scratch.segment)
                .ok()
                .filter(|r| r.writer_pid() == u64::from(core.child.id()) && r.run_state() == Some(RunState::Running))
                .map(|_| ())
        });
        core
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Waits for a child with the watchdog; kills it and fails if it does not exit.
fn wait_child(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The canonical line of a tick: must match `print_compare` in examples/c/qilin_tail.c.
fn canonical(t: &TickRecord) -> String {
    let h = |v: f64| format!("{:016x}", v.to_bits());
    let end = t.instrument_id.iter().position(|b| *b == 0).unwrap_or(t.instrument_id.len());
    let id = String::from_utf8_lossy(&t.instrument_id[..end]);
    let mut s = format!(
        "tick {} idx={} id={id} ex={} src={} q={} td={} ad={} ms={} xt={} rx={} px={}",
        t.sequence,
        t.instrument_index,
        t.exchange,
        t.source,
        t.quality,
        t.trading_day,
        t.action_day,
        t.update_time_ms,
        t.exchange_time_ns,
        t.receive_ns,
        t.publish_ns
    );
    for (name, v) in [
        ("last_price", t.last_price),
        ("pre_settlement_price", t.pre_settlement_price),
        ("pre_close_price", t.pre_close_price),
        ("pre_open_interest", t.pre_open_interest),
        ("open_price", t.open_price),
        ("highest_price", t.highest_price),
        ("lowest_price", t.lowest_price),
    ] {
        s += &format!(" {name}={}", h(v));
    }
    s += &format!(" volume={}", t.volume);
    for (name, v) in [
        ("turnover", t.turnover),
        ("open_interest", t.open_interest),
        ("close_price", t.close_price),
        ("settlement_price", t.settlement_price),
        ("upper_limit_price", t.upper_limit_price),
        ("lower_limit_price", t.lower_limit_price),
        ("pre_delta", t.pre_delta),
        ("curr_delta", t.curr_delta),
        ("average_price", t.average_price),
        ("banding_upper_price", t.banding_upper_price),
        ("banding_lower_price", t.banding_lower_price),
    ] {
        s += &format!(" {name}={}", h(v));
    }
    let join = |v: Vec<String>| v.join(",");
    s += &format!(" bid_price={}", join(t.bid_price.iter().map(|v| h(*v)).collect()));
    s += &format!(" ask_price={}", join(t.ask_price.iter().map(|v| h(*v)).collect()));
    s += &format!(" bid_volume={}", join(t.bid_volume.iter().map(|v| v.to_string()).collect()));
    s += &format!(" ask_volume={}", join(t.ask_volume.iter().map(|v| v.to_string()).collect()));
    s
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(str::to_owned).collect()
}

/// Checks a reader's output covers 1..=total exactly once (ticks in order, gaps that start where the
/// stream stood) and returns (ticks, sequences lost in gaps, number of gaps).
fn check_stream(lines: &[String], total: u64, who: &str) -> (u64, u64, u64) {
    let (mut expected, mut ticks, mut lost, mut gaps) = (1u64, 0u64, 0u64, 0u64);
    for (i, line) in lines.iter().enumerate() {
        let mut words = line.split(' ');
        match words.next() {
            Some("tick") => {
                let seq: u64 = words.next().unwrap().parse().unwrap();
                assert_eq!(seq, expected, "{who}: line {} is sequence {seq}, expected {expected}", i + 1);
                expected += 1;
                ticks += 1;
            }
            Some("gap") => {
                let first: u64 = words.next().unwrap().parse().unwrap();
                let last: u64 = words.next().unwrap().parse().unwrap();
                assert_eq!(first, expected, "{who}: line {}: gap does not start where the stream stood", i + 1);
                assert!(last >= first, "{who}: line {}: empty gap", i + 1);
                expected = last + 1;
                lost += last - first + 1;
                gaps += 1;
            }
            // No restart happens here: a reader that sees the magic already sees epoch 1 (the
            // writer publishes the magic last), so any epoch line is a failure.
            _ => panic!("{who}: unexpected line {}: {line}", i + 1),
        }
    }
    assert_eq!(expected, total + 1, "{who}: stream ends before {total}");
    assert_eq!(ticks + lost, total, "{who}: ticks + lost");
    (ticks, lost, gaps)
}

#[test]
fn c_reader_prints_exactly_what_the_rust_reader_reads() {
    let scratch = Scratch::new("same");
    let tails = [build_tail("gcc", &scratch.dir), build_tail("g++", &scratch.dir)];
    let core = Core::start(&scratch, &[]);
    let mut reader = Reader::open(&scratch.segment).unwrap();
    wait_for("all ticks published", || (reader.write_cursor() == TOTAL).then_some(()));

    reader.seek(Start::Oldest);
    let mut rust = Vec::new();
    let mut t = TickRecord::ZERO;
    while rust.len() < TOTAL as usize {
        match reader.try_next(&mut t) {
            Next::Tick => rust.push(canonical(&t)),
            other => panic!("the Rust reader got {other:?} on a quiet ring"),
        }
    }
    for tail in &tails {
        let out = Command::new(tail)
            .arg(&scratch.segment)
            .args(["--from", "oldest", "--until", &TOTAL.to_string(), "--format", "compare"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let c = stdout_lines(&out);
        assert_eq!(c.len(), rust.len(), "{}: line count", tail.display());
        for (i, (c, r)) in c.iter().zip(&rust).enumerate() {
            assert_eq!(c, r, "{}: line {} differs from the Rust reader", tail.display(), i + 1);
        }
    }

    // Last values: every instrument in the directory, by InstrumentID.
    let instruments = reader.instruments();
    assert!(!instruments.is_empty());
    for entry in &instruments {
        let id = entry.instrument_id_str().unwrap();
        let mut rust_latest = TickRecord::ZERO;
        let rust_line =
            if reader.latest_by_id(id, &mut rust_latest).unwrap() { canonical(&rust_latest) } else { "none".into() };
        let out = Command::new(&tails[0])
            .arg(&scratch.segment)
            .args(["--latest", id, "--format", "compare"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout_lines(&out), [rust_line], "last value of {id}");
    }
    let out = Command::new(&tails[0]).arg(&scratch.segment).args(["--latest", "nosuch1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    eprintln!(
        "reader_c (a): {} ticks compared line for line (C11 and C++17 builds), {} last values",
        rust.len(),
        instruments.len()
    );
    drop(core);
}

#[test]
fn c_readers_racing_the_writer_on_a_small_ring_are_consistent_with_the_rust_reader() {
    let scratch = Scratch::new("race");
    let tail = build_tail("gcc", &scratch.dir);
    let config = scratch.dir.join("core.toml");
    std::fs::write(&config, "[feed]\nring_slots = 1024\n").unwrap();
    let until = TOTAL.to_string();
    let common = ["--from", "1", "--until", until.as_str(), "--format", "compare", "--wait-ms", "120000"];

    // Started before the core exists: they retry opening until it has created the segment.
    let spawn = |name: &str, extra: &[&str]| -> (Child, PathBuf) {
        let path = scratch.dir.join(format!("{name}.out"));
        let child = Command::new(&tail)
            .arg(&scratch.segment)
            .args(common)
            .args(extra)
            .stdout(Stdio::from(File::create(&path).unwrap()))
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        (child, path)
    };
    let mut fast = spawn("fast", &[]);
    // After every 500 ticks, waits until the writer is 1500 sequences ahead: more than the ring holds.
    let mut lagging = spawn("lagging", &["--pause-every", "500", "--pause-lag", "1500"]);

    // The Rust reader, reading the same segment concurrently from sequence 1.
    let segment = scratch.segment.clone();
    let rust = std::thread::spawn(move || {
        let mut reader = wait_for("the segment", || Reader::open(&segment).ok());
        reader.seek(Start::Sequence(1));
        let mut seen: HashMap<u64, TickRecord> = HashMap::with_capacity(TOTAL as usize);
        let mut lines = Vec::new();
        let mut t = TickRecord::ZERO;
        let deadline = Instant::now() + WATCHDOG;
        while reader.next_sequence() <= TOTAL {
            match reader.try_next(&mut t) {
                Next::Tick => {
                    seen.insert(t.sequence, t);
                    lines.push(format!("tick {}", t.sequence));
                }
                Next::Gap { first, last } => lines.push(format!("gap {first} {last}")),
                Next::NewEpoch { .. } => {}
                Next::Empty => {
                    assert!(Instant::now() < deadline, "the Rust reader stalled");
                    std::hint::spin_loop();
                }
            }
        }
        (seen, lines)
    });

    let core = Core::start(&scratch, &["--config", config.to_str().unwrap()]);
    let (rust_seen, rust_lines) = rust.join().expect("Rust reader thread");
    let (rust_ticks, rust_lost, _) = check_stream(&rust_lines, TOTAL, "Rust reader");

    let mut figures = Vec::new();
    for (name, (child, path)) in [("fast", &mut fast), ("lagging", &mut lagging)] {
        let status = wait_child(child, &format!("the {name} C reader"));
        assert!(status.success(), "the {name} C reader exited with {status}");
        let lines: Vec<String> = std::fs::read_to_string(&*path).unwrap().lines().map(str::to_owned).collect();
        let (ticks, lost, gaps) = check_stream(&lines, TOTAL, name);
        let mut compared = 0;
        for line in lines.iter().filter(|l| l.starts_with("tick ")) {
            let seq: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
            if let Some(t) = rust_seen.get(&seq) {
                assert_eq!(line, &canonical(t), "{name} C reader: sequence {seq} differs from the Rust reader's copy");
                compared += 1;
            }
        }
        // Sequence TOTAL is never overwritten (the sim stops there), so every reader reads it.
        assert!(compared >= 1, "{name}: no tick in common with the Rust reader");
        if name == "lagging" {
            assert!(gaps >= 1, "the lagging reader waited more than a ring behind, yet was never lapped");
        }
        figures.push(format!("{name}: {ticks} ticks ({compared} compared with Rust), {lost} lost in {gaps} gaps"));
    }
    eprintln!(
        "reader_c (b): ring 1024, {TOTAL} published; Rust reader {rust_ticks} ticks, {rust_lost} lost; {}",
        figures.join("; ")
    );
    drop(core);
}

/// A reader lapped on a quiet ring: the C reader reports the same gap and resumes where the Rust
/// reader does, with the default lap headroom (ring_slots / 8), with none, and with one past the ring.
#[test]
fn a_lapped_c_reader_resumes_with_the_same_lap_headroom_as_the_rust_reader() {
    let scratch = Scratch::new("headroom");
    let tail = build_tail("gcc", &scratch.dir);
    let options = SegmentOptions { feed_name: "ctest".into(), ring_slots: 64, instrument_capacity: 2 };
    let mut writer = Writer::open(&scratch.segment, &options).unwrap();
    let index = writer.add_instrument("rb2605", qilin_shm::Exchange::Shfe, 10, 1.0).unwrap();
    for seq in 1..=100u64 {
        let mut t = TickRecord::ZERO;
        t.instrument_index = index;
        t.instrument_id = qilin_shm::layout::fixed_id("rb2605").unwrap();
        t.last_price = 3000.0 + seq as f64;
        t.volume = seq as i64;
        writer.publish(&mut t).unwrap();
    }
    // (headroom argument for the C reader, the Rust reader's setting, the first line both print)
    for (arg, headroom, gap) in
        [(None, None, "gap 1 44"), (Some("0"), Some(0), "gap 1 36"), (Some("999"), Some(999), "gap 1 99")]
    {
        let mut reader = Reader::open(&scratch.segment).unwrap();
        if let Some(h) = headroom {
            reader.set_lap_headroom(h);
        }
        reader.seek(Start::Sequence(1));
        let mut rust = Vec::new();
        let mut t = TickRecord::ZERO;
        while reader.next_sequence() <= 100 {
            match reader.try_next(&mut t) {
                Next::Tick => rust.push(canonical(&t)),
                Next::Gap { first, last } => rust.push(format!("gap {first} {last}")),
                other => panic!("the Rust reader got {other:?} on a quiet ring"),
            }
        }
        let mut c = Command::new(&tail);
        c.arg(&scratch.segment).args(["--from", "1", "--until", "100", "--format", "compare"]);
        if let Some(arg) = arg {
            c.args(["--lap-headroom", arg]);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let c = stdout_lines(&out);
        assert_eq!(rust[0], gap, "Rust reader, headroom {headroom:?}");
        assert_eq!(c.first(), rust.first(), "C reader's gap, --lap-headroom {arg:?}");
        assert_eq!(c.len(), rust.len(), "C reader's line count, --lap-headroom {arg:?}");
        if let Some(i) = (0..c.len()).find(|i| c[*i] != rust[*i]) {
            panic!("C reader, --lap-headroom {arg:?}, line {}: {} (Rust: {})", i + 1, c[i], rust[i]);
        }
    }
    drop(writer);
}

/// The C reader's error for `path`: exit status 2 and one line on stderr.
fn c_error(tail: &Path, path: &Path) -> String {
    let out = Command::new(tail).arg(path).args(["--count", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "qilin_tail {} should fail", path.display());
    let stderr = String::from_utf8(out.stderr).unwrap();
    stderr.strip_prefix("qilin_tail: ").and_then(|s| s.strip_suffix('\n')).unwrap_or(&stderr).to_owned()
}

#[test]
fn bad_files_give_the_same_clear_error_in_c_as_in_rust() {
    let scratch = Scratch::new("bad");
    let tail = build_tail("gcc", &scratch.dir);
    let options = SegmentOptions { feed_name: "ctest".into(), ring_slots: 1024, instrument_capacity: 8 };
    let good = {
        let writer = Writer::open(&scratch.segment, &options).unwrap();
        drop(writer);
        std::fs::read(&scratch.segment).unwrap()
    };
    let file = |name: &str, bytes: &[u8]| {
        let path = scratch.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let patched = |name: &str, offset: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[offset..offset + bytes.len()].copy_from_slice(bytes);
        file(name, &b)
    };
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        ("missing file", scratch.dir.join("missing"), "No such file"),
        ("empty file", file("empty", &[]), "not initialised"),
        ("not a segment", file("text", &b"not a segment at all\n".repeat(200)), "is not a qilin segment"),
        ("shorter than a header", file("short", &good[..100]), "is truncated: 100 bytes, needs 1152"),
        ("truncated segment", file("truncated", &good[..good.len() - 4096]), "is truncated"),
        ("magic not yet published", patched("nomagic", 0, &[0; 8]), "not initialised"),
        ("other layout version", patched("version", 8, &2u32.to_le_bytes()), "layout version 2"),
        ("other fingerprint", patched("fingerprint", 16, &0x1234u64.to_le_bytes()), "layout fingerprint"),
        ("ring not a power of two", patched("ring", 40, &1000u64.to_le_bytes()), "ring_slots = 1000"),
    ];
    for (what, path, needle) in &cases {
        let c = c_error(&tail, path);
        let rust = Reader::open(path).expect_err(what).to_string();
        assert_eq!(c, rust, "{what}: the C and Rust readers disagree");
        assert!(c.contains(&path.display().to_string()), "{what}: error does not name the path: {c}");
        assert!(c.contains(needle), "{what}: {c}");
    }
    // An identity line that does not match its own capacities: Rust prints both lines in full, C the
    // first field that differs; both call the header corrupt and name the path.
    let corrupt = patched("corrupt", 72, &4096u64.to_le_bytes());
    let c = c_error(&tail, &corrupt);
    let rust = Reader::open(&corrupt).expect_err("corrupt").to_string();
    let prefix =
        format!("segment {} has a corrupt header: identity line does not match its own capacities", corrupt.display());
    assert!(rust.starts_with(&prefix), "{rust}");
    assert!(c.starts_with(&prefix) && c.contains("directory_offset is 4096"), "{c}");
    // The good segment opens in both.
    let out =
        Command::new(&tail).arg(&scratch.segment).args(["--from", "oldest", "--idle-exit-ms", "1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "reader_c (c): {} bad inputs give identical C and Rust errors, plus a corrupt identity line",
        cases.len()
    );
}
