//! End to end through the feed itself: the real `qilin-core` binary on its UDP source
//! (`--source udp --udp-bind 127.0.0.1:PORT`, hot thread pinned to the reader CPU with `--cpu`)
//! into a segment, read by a strategy in Rust (`qilin-bench reader`), in C
//! (`benches/c/latency_reader.c` on `qilin_shm.h`, compiled here with the system compiler) and in
//! Python (`benches/python/latency_reader.py` on `python/qilin_shm`: the stdlib reader tick by tick,
//! and the numpy batch reader, `read_batch`, one clock read per batch), one after the other.
//!
//! The source is a **paced sender in this process**, a thread pinned to the writer CPU that sends
//! one raw CTP 6.7.x struct (584 bytes, [`RawTicks`]) per due time on loopback, as a relay would,
//! and **stamps each struct with its due time**: the due time's 64 bits go into `CurrDelta`, a price
//! the normalizer copies through untouched when it is finite (a due time read as a double is a tiny
//! positive number), so the record the reader holds carries it in `curr_delta`. Latency = the
//! reader's CLOCK_REALTIME when it holds the tick − the due time: datagram → kernel → the hot
//! thread's `recvmmsg` → normalize, publish → visible to the reader, plus any lateness of the
//! sender, which is charged (no coordinated omission).
//!
//! With two CPUs the reader shares the writer CPU with the sender, so the sender must not spin
//! between ticks: it sleeps until [`SPIN_MARGIN_NS`] before each due time (timer slack 1 ns) and
//! spins only for the rest; the reader has the CPU while ticks are in flight. With a third CPU in
//! `--cores` the readers run there instead.
//!
//! These series replace the simulator-driven ones of issue 10 (`e2e/rust` …), which measured the
//! simulator's 64-tick bursts and its unpinned thread rather than the feed.

use std::{
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use qilin_core::ctp::{BODY_OFFSET, DepthBody};
use qilin_shm::{Counter, Reader, RunState, TickRecord};

use super::{
    Plan, Schedule, Series, WATCHDOG,
    child::Peer,
    core_paths::{RawTicks, instruments},
    new_histogram, pin_cpu, record,
};
use crate::TempSegment;

/// Offset of `CurrDelta` in a raw CTP struct (the same in every version): where the sender puts the
/// due time.
pub const STAMP_OFFSET: usize = BODY_OFFSET + core::mem::offset_of!(DepthBody, curr_delta);

/// A due time outside `STAMP_MIN_NS..STAMP_MAX_NS` (2001-09-09 to 2096-10-02) is no stamp: the record
/// did not come from the paced sender, or the normalizer changed `CurrDelta` (a NaN's bits, for one,
/// are above the range).
pub const STAMP_MIN_NS: i64 = 1_000_000_000_000_000_000;
/// See [`STAMP_MIN_NS`].
pub const STAMP_MAX_NS: i64 = 4_000_000_000_000_000_000;

/// How long before a due time the sender stops sleeping and spins.
pub const SPIN_MARGIN_NS: i64 = 20_000;

/// Writes `due` into the struct's `CurrDelta` (its 64 bits, native order, as the reader reads them).
pub fn stamp(raw: &mut [u8], due: i64) {
    raw[STAMP_OFFSET..STAMP_OFFSET + 8].copy_from_slice(&due.to_ne_bytes());
}

/// The due time a record carries (see [`stamp`]); `None` when it carries none.
pub fn stamp_of(rec: &TickRecord) -> Option<i64> {
    let due = rec.curr_delta.to_bits() as i64;
    (STAMP_MIN_NS..STAMP_MAX_NS).contains(&due).then_some(due)
}

/// A running `qilin-core`, killed on drop.
#[derive(Debug)]
struct Core {
    child: Child,
    socket: PathBuf,
    /// Its stderr (removed on drop).
    log: PathBuf,
    /// Its UDP source.
    udp: SocketAddr,
    /// Its segment.
    segment: PathBuf,
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Starts the `qilin-core` binary with `args`, its stderr into `log`, from the repository (its
/// config paths are relative to it); the error names what is missing.
pub(super) fn spawn_core(
    plan: &Plan,
    args: &[&std::ffi::OsStr],
    log: std::fs::File,
) -> anyhow::Result<std::process::Child> {
    if !plan.core_bin.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p qilin-core) or pass --core-bin",
            plan.core_bin.display()
        );
    }
    Command::new(&plan.core_bin)
        .args(args)
        .current_dir(&plan.repo)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", plan.core_bin.display()))
}

/// A free loopback UDP port (bound and released: the core binds it a moment later).
fn free_udp_port() -> anyhow::Result<SocketAddr> {
    let probe = UdpSocket::bind("127.0.0.1:0").context("finding a free UDP port")?;
    Ok(probe.local_addr()?)
}

fn start_core(plan: &Plan, segment: &Path) -> anyhow::Result<Core> {
    let socket = std::env::temp_dir().join(format!("qilin-bench-{}-e2e.sock", std::process::id()));
    let log_path = std::env::temp_dir().join(format!("qilin-bench-{}-core.log", std::process::id()));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let udp = free_udp_port()?;
    let (bind, cpu) = (udp.to_string(), plan.reader_cpu().to_string());
    let args: [&std::ffi::OsStr; 10] = [
        "--source".as_ref(),
        "udp".as_ref(),
        "--udp-bind".as_ref(),
        bind.as_ref(),
        "--cpu".as_ref(),
        cpu.as_ref(),
        "--segment".as_ref(),
        segment.as_ref(),
        "--control-socket".as_ref(),
        socket.as_ref(),
    ];
    let child = spawn_core(plan, &args, log)?;
    let mut core = Core { child, socket, log: log_path, udp, segment: segment.to_path_buf() };
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let running = Reader::open(segment)
            .ok()
            .is_some_and(|r| r.writer_pid() == u64::from(core.child.id()) && r.run_state() == Some(RunState::Running));
        if running {
            return Ok(core);
        }
        if let Some(status) = core.child.try_wait()? {
            let log = std::fs::read_to_string(&core.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).rev().take(4).collect();
            bail!("qilin-core exited ({status}) before running: {}", tail.join(" | "));
        }
        if Instant::now() > deadline {
            let seen = Reader::open(segment).map(|r| (r.writer_pid(), r.run_state()));
            bail!("qilin-core (pid {}) did not start within {WATCHDOG:?}: {seen:?}", core.child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Compiles the C reader into `dir`.
fn build_c_reader(plan: &Plan, dir: &Path) -> anyhow::Result<PathBuf> {
    let exe = dir.join(format!("qilin-bench-latency-reader-{}", std::process::id()));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&compiler)
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-I"])
        .arg(plan.repo.join("shm-layout/include"))
        .arg(plan.repo.join("benches/c/latency_reader.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .with_context(|| format!("running {compiler} (install a C compiler, or skip this series)"))?;
    if !out.status.success() {
        bail!("{compiler} latency_reader.c failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(exe)
}

/// The Python of the batch series: `$PYTHON`, else the workspace's test venv (`.venv`, made by
/// `scripts/test`, with numpy), else `python3` (the series then fails naming numpy if it lacks it).
fn batch_python(plan: &Plan) -> PathBuf {
    if let Ok(python) = std::env::var("PYTHON") {
        return python.into();
    }
    let venv = plan.repo.join(".venv/bin/python");
    if venv.exists() { venv } else { "python3".into() }
}

/// Ticks per `read_batch` call in the `e2e/udp_python_batch` series.
const PYTHON_BATCH: &str = "4096";

/// The CPU the end-to-end readers run on: a third CPU when `--cores` gives one, else the sender's.
pub fn e2e_reader_cpu(plan: &Plan) -> usize {
    plan.cores.get(2).copied().unwrap_or(plan.writer_cpu())
}

/// Names of the end-to-end series, in run order.
pub const NAMES: [&str; 5] =
    ["e2e/udp_rust", "e2e/udp_c", "e2e/udp_python", "e2e/udp_python_batch", "e2e/udp_rust_closed"];

/// The four end-to-end series (each its own result: one language failing does not hide the others).
pub fn measure(plan: &Plan) -> Vec<(String, anyhow::Result<Series>)> {
    let segment = TempSegment::new("e2e");
    let core = match start_core(plan, segment.path()) {
        Ok(core) => core,
        Err(e) => {
            let reason = format!("{e:#}");
            return NAMES.iter().map(|n| (n.to_string(), Err(anyhow::anyhow!("{reason}")))).collect();
        }
    };
    let mut ticks = match instruments(&plan.repo) {
        Ok(products) => RawTicks::new(&products),
        Err(e) => {
            let reason = format!("{e:#}");
            return NAMES.iter().map(|n| (n.to_string(), Err(anyhow::anyhow!("{reason}")))).collect();
        }
    };
    let cpu = e2e_reader_cpu(plan).to_string();
    let (warmup, count) = (plan.warmup.to_string(), plan.e2e_samples.to_string());
    let mut results = Vec::new();
    let mut run = |name: &str, command: anyhow::Result<Command>, what: &str, text: bool| {
        let result = command.and_then(|command| run_reader(plan, &core, &mut ticks, name, command, what, text));
        results.push((name.to_string(), result));
    };

    let mut rust = Command::new(&plan.self_bin);
    rust.arg("reader").arg("--segment").arg(segment.path());
    rust.args(["--cpu", &cpu, "--from", "newest", "--stamp", "due", "--warmup", &warmup, "--count", &count]);
    run(NAMES[0], Ok(rust), "Rust qilin_shm::Reader (qilin-bench reader)", false);

    let dir = std::env::temp_dir();
    let c_what = "C qilin_shm.h reader (benches/c/latency_reader.c, cc -O2)";
    match build_c_reader(plan, &dir) {
        Ok(exe) => {
            let mut command = Command::new(&exe);
            command.arg(segment.path()).args([&cpu, &warmup, &count, "due"]);
            run(NAMES[1], Ok(command), c_what, true);
            let _ = std::fs::remove_file(&exe);
        }
        Err(e) => run(NAMES[1], Err(e), c_what, true),
    }

    let mut python = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    python
        .arg(plan.repo.join("benches/python/latency_reader.py"))
        .arg(segment.path())
        .args([&cpu, &warmup, &count, "--stamp", "due"])
        .env("PYTHONPATH", plan.repo.join("python"));
    run(NAMES[2], Ok(python), "Python qilin_shm.Reader (benches/python/latency_reader.py)", true);

    let mut batch = Command::new(batch_python(plan));
    batch
        .arg(plan.repo.join("benches/python/latency_reader.py"))
        .arg(segment.path())
        .args([&cpu, &warmup, &count, "--stamp", "due"])
        .args(["--batch", PYTHON_BATCH])
        .env("PYTHONPATH", plan.repo.join("python"));
    let what = format!(
        "Python numpy qilin_shm.batch.Reader.read_batch({PYTHON_BATCH}) (benches/python/latency_reader.py --batch; \
         one clock read per batch, charged to every tick of it)"
    );
    run(NAMES[3], Ok(batch), &what, true);
    results.push((NAMES[4].to_string(), measure_closed(plan, &core, &mut ticks)));
    drop(core);
    results
}

/// `e2e/udp_rust_closed`: one thread on the writer CPU sends a datagram, then spins on a `Reader`
/// of the core's segment until the tick is visible; latency = visible − the send (the clock read
/// just before `send_to`). The next datagram goes at its due time, or at once if that has passed:
/// each sample is independent (a lost CPU costs the sample it falls in, no backlog), as in the
/// ping-pong series, and nothing else runs on the writer CPU.
fn measure_closed(plan: &Plan, core: &Core, ticks: &mut RawTicks) -> anyhow::Result<Series> {
    pin_cpu(plan.writer_cpu());
    let mut reader = Reader::open(&core.segment).context("opening the core's segment")?;
    reader.seek(qilin_shm::Start::Newest);
    let sender = UdpSocket::bind("127.0.0.1:0").context("binding the sender")?;
    let schedule = Schedule::starting_soon(1_000_000_000 / plan.e2e_rate.max(1) as i64);
    let (mut hist, mut lost, mut out) = (new_histogram(), 0u64, TickRecord::ZERO);
    for i in 0..plan.warmup + plan.e2e_samples {
        let mut raw = ticks.next_struct();
        schedule.wait(i);
        let sent = qilin_shm::now_ns();
        stamp(&mut raw, sent);
        sender.send_to(&raw, core.udp).context("sending a datagram")?;
        // Datagrams of the paced series before may still be on their way: they carry older stamps.
        let seen = loop {
            let seen =
                super::core_paths::wait_visible_with(&mut reader, &mut out, sent, &mut lost, core::hint::spin_loop)?;
            match stamp_of(&out) {
                Some(due) if due == sent => break seen,
                Some(due) if due < sent => continue,
                other => bail!("e2e/udp_rust_closed: the tick seen is not the one sent (stamp {other:?}, sent {sent})"),
            }
        };
        if i >= plan.warmup {
            record(&mut hist, seen - sent);
        }
    }
    Ok(Series::new(
        NAMES[4],
        format!(
            "qilin-core binary (--source udp, hot thread --cpu {}): send_to of one 584-byte CTP 6.7.x datagram on CPU {} \
             → visible to a Reader of the segment in the same thread, spinning; closed loop (from the send, not the due \
             time; the next send waits for the tick and for its due time, {} /s)",
            plan.reader_cpu(),
            plan.writer_cpu(),
            plan.e2e_rate
        ),
        hist,
    )
    .note(format!("reader lost {lost}; the send_to syscall is inside the figure"))
    .note("each sample independent: a stall costs the sample it falls in, never a backlog (compare e2e/udp_rust)"))
}

/// What the paced sender did.
#[derive(Debug)]
struct Sent {
    /// Send time − due time of every datagram.
    late: Histogram<u64>,
    /// Datagrams sent.
    sent: u64,
}

/// Sends one stamped struct per due time to `to` from a thread pinned to the writer CPU until
/// `stop` is raised (or `limit` are sent).
fn send_paced(
    plan: &Plan,
    to: SocketAddr,
    ticks: &mut RawTicks,
    stop: &AtomicBool,
    limit: u64,
) -> anyhow::Result<Sent> {
    pin_cpu(plan.writer_cpu());
    // Sleeps end within ns of their deadline instead of the default 50 µs slack.
    let _ = nix::sys::prctl::set_timerslack(1);
    let sender = UdpSocket::bind("127.0.0.1:0").context("binding the paced sender")?;
    let schedule = Schedule::starting_soon(1_000_000_000 / plan.e2e_rate.max(1) as i64);
    let mut late = new_histogram();
    let mut sent = 0;
    while sent < limit && !stop.load(Ordering::Relaxed) {
        let mut raw = ticks.next_struct();
        let due = schedule.due(sent);
        stamp(&mut raw, due);
        let ahead = due - SPIN_MARGIN_NS - qilin_shm::now_ns();
        if ahead > 0 {
            std::thread::sleep(Duration::from_nanos(ahead as u64));
        }
        let (_, now) = schedule.wait(sent);
        sender.send_to(&raw, to).context("sending a datagram")?;
        record(&mut late, now - due);
        sent += 1;
    }
    Ok(Sent { late, sent })
}

fn run_reader(
    plan: &Plan,
    core: &Core,
    ticks: &mut RawTicks,
    name: &str,
    command: Command,
    what: &str,
    text: bool,
) -> anyhow::Result<Series> {
    let mut peer = Peer::spawn(command, what)?;
    peer.wait_ready()?;
    let stop = AtomicBool::new(false);
    // Twice what the reader needs: a rejected tick is never seen, so the sender goes on until the
    // reader is done rather than leave it waiting.
    let limit = 2 * (plan.warmup + plan.e2e_samples) + 1_000;
    let (result, sent) = std::thread::scope(|s| {
        let sender = s.spawn(|| send_paced(plan, core.udp, ticks, &stop, limit));
        let result = if text { peer.finish_text() } else { peer.finish() };
        stop.store(true, Ordering::Relaxed);
        (result, sender.join().expect("sender thread"))
    });
    let (result, sent) = (result?, sent?);
    let counters = Reader::open(&core.segment).map(|r| {
        (
            r.counter(Counter::TicksReceived),
            r.counter(Counter::TicksPublished),
            r.counter(Counter::RejectTime) + r.counter(Counter::RejectPrice) + r.counter(Counter::RejectId),
        )
    });
    let (received, published, rejected) = counters.unwrap_or_default();
    let late = &sent.late;
    Ok(Series::new(
        name,
        format!(
            "qilin-core binary (--source udp, hot thread --cpu {}) ← one stamped 584-byte CTP 6.7.x datagram per due \
             time ({} /s) from a paced sender on CPU {} → {what} on CPU {}: reader's CLOCK_REALTIME − the due time \
             (carried in CurrDelta)",
            plan.reader_cpu(),
            plan.e2e_rate,
            plan.writer_cpu(),
            e2e_reader_cpu(plan)
        ),
        result.hist,
    )
    .note(format!("{} ticks recorded, {} lost (lapped)", result.ticks, result.lost))
    .note(format!(
        "the sender sent {} datagrams, late by p50 {} / p99 {} / max {} ns (sleeps to {} µs before each due time, \
         then spins): that lateness is in the figure",
        sent.sent,
        late.value_at_quantile(0.5),
        late.value_at_quantile(0.99),
        late.max(),
        SPIN_MARGIN_NS / 1000
    ))
    .note(format!(
        "core counters so far (this core serves every e2e reader of the round): {received} received, {published} \
         published, {rejected} rejected"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_survives_normalization() {
        let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let (products, calendar) = (instruments(repo).unwrap(), super::super::core_paths::calendar(repo).unwrap());
        let mut ticks = RawTicks::new(&products);
        let id = ticks.instrument_ids()[0].clone();
        let spec = products.spec_for(&id).unwrap();
        let mut raw = ticks.next_struct();
        let due = 1_795_000_000_123_456_789;
        stamp(&mut raw, due);
        let parsed = qilin_core::ctp::RawTick::parse(&raw).unwrap();
        let mut rec = TickRecord::ZERO;
        let mut state = qilin_core::normalize::InstrumentState::new();
        qilin_core::normalize::normalize(
            qilin_core::normalize::Portable,
            &parsed,
            spec,
            &calendar,
            &mut state,
            1,
            qilin_shm::Source::Udp,
            0,
            &mut rec,
        )
        .unwrap();
        assert_eq!(stamp_of(&rec), Some(due), "CurrDelta must reach the record bit for bit");
        rec.curr_delta = f64::NAN;
        assert_eq!(stamp_of(&rec), None);
        rec.curr_delta = 0.5;
        assert_eq!(stamp_of(&rec), None);
    }
}
