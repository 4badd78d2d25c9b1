//! The core's `ctp` source, out of process: the real `qilin-core` binary on `source.kind = "ctp"`
//! with qilin's CTP stand-in (`qilin-ctp-standin`, a `thostmduserapi_se.so` with the 6.7.11 ABI) in
//! place of the vendor's library, one session (primary) logged in through the control socket's
//! `credentials` command and subscribed to every listed instrument; the harness plays the front
//! ([`Front`]).
//!
//! Method, as `core/handoff`'s: one thread on the writer CPU plays both ends. At each tick's due
//! time it pushes one raw 6.7.11 struct to the front's TCP connection, then polls a segment
//! `Reader` until the tick is visible (nothing is in flight when the next tick is due unless the
//! previous one was late; warm-up excluded). Two figures per tick:
//! - `core/ctp`: visible − the record's `receive_ns`, which `MdCallback` stamps on the SDK's
//!   callback thread when `OnRtnDepthMarketData` hands the struct over, just before it is pushed
//!   into the hand-off: callback → hand-off → hot thread (normalize, publish) → reader. This is the
//!   span `core/handoff` measures in process (its push is stamped with the due time), here through
//!   the real process. The share up to the publish (`publish_ns − receive_ns`, both stamped inside
//!   the core) is in a note.
//! - `core/ctp_front`: visible − due: the front's push (a TCP write on loopback) → the stand-in's
//!   network thread → its callback thread → the same path; the stand-in's own hop, which a vendor
//!   library replaces with its own, is inside. Lateness is charged from the due time.
//!
//! One difference from `core/handoff`, forced by two cores: the stand-in's network and callback
//! threads must run on the writer CPU, where the polling thread is, so it yields the CPU between
//! empty polls (`sched_yield`) instead of spinning. Spinning starves those threads until the
//! scheduler preempts it: in a quiet trial the front → reader p50 went from 19 µs (yielding) to
//! 67 ms (spinning, ticks falling ever further behind their due times), while `core/ctp` stayed at
//! 5.0–5.1 µs either way.
//!
//! The rate is the end-to-end one (`--e2e-rate`, CTP's full-market peak by default), the sample
//! count `--e2e-samples`: a round trip through two more woken threads does not fit the in-process
//! series' 10 µs interval. qilin-core's threads other than the hot one (the stand-in's among them)
//! are confined to the writer CPU once logged in, as they would be kept off the hot thread's core in
//! production.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{
    errno::Errno,
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};
use qilin_ctp_standin::{Front, Script};
use qilin_shm::{Counter, Reader, RunState, Start, TickRecord};
use serde_json::{Value, json};

use super::{
    Plan, Schedule, Series, WATCHDOG,
    core_paths::{RawTicks, instruments, wait_visible_with},
    new_histogram, pin_cpu, record,
};
use crate::TempSegment;

/// The series' names: callback → reader, and front push → reader.
pub const NAMES: [&str; 2] = ["core/ctp", "core/ctp_front"];

/// A running `qilin-core` on the ctp source; killed (and its directory removed) on drop.
#[derive(Debug)]
struct CtpCore {
    child: Child,
    /// Config, control socket, flow files, audit log, stderr.
    dir: PathBuf,
}

impl CtpCore {
    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("core.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    /// One control-socket request; its JSON reply.
    fn request(&self, line: &str) -> anyhow::Result<Value> {
        let mut stream = UnixStream::connect(self.socket()).context("connecting to qilin-core's control socket")?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        writeln!(stream, "{line}")?;
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply)?;
        serde_json::from_str(&reply).with_context(|| format!("qilin-core's reply is not JSON: {reply:?}"))
    }
}

impl Drop for CtpCore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Confines every thread of `pid` but the hot one (`qilin-hot`, pinned by `--cpu`) to `cpu`; returns
/// how many threads it moved. (qilin-core refuses a `--cpu` outside the mask it starts with, so the
/// process cannot simply be started on one CPU.)
fn confine_others(pid: u32, cpu: usize) -> anyhow::Result<usize> {
    let mut set = CpuSet::new();
    set.set(cpu).context("a CPU number")?;
    let mut moved = 0;
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    for task in std::fs::read_dir(&tasks).with_context(|| format!("listing {}", tasks.display()))? {
        let task = task?;
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else { continue };
        if comm.trim() != "qilin-hot" {
            match sched_setaffinity(Pid::from_raw(tid), &set) {
                Ok(()) => moved += 1,
                Err(Errno::ESRCH) => {} // exited meanwhile
                Err(e) => return Err(e).with_context(|| format!("pinning thread {tid} of {pid} to CPU {cpu}")),
            }
        }
    }
    Ok(moved)
}

/// Starts `qilin-core` on the ctp source with the stand-in at `sdk`, subscribing `ids`, its hot
/// thread pinned to the reader CPU, and waits until it runs with its control socket bound.
fn start_core(plan: &Plan, sdk: &Path, segment: &Path, ids: &[String]) -> anyhow::Result<CtpCore> {
    let dir = std::env::temp_dir().join(format!("qilin-bench-{}-ctp", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a path as a TOML string");
    let config = format!(
        "[feed]\nname = \"qilin-bench-ctp\"\nring_slots = 65536\ninstrument_capacity = 256\n\n\
         [core]\nlock_memory = false\ninstruments_file = {}\ncalendar_dir = {}\naudit_log = {}\nsubscribe = {}\n\n\
         [source]\nkind = \"ctp\"\n\n[source.ctp]\nsdk_path = {}\nflow_dir = {}\nsdk_stdout = \"inherit\"\n",
        text(&plan.repo.join("config/instruments.toml")),
        text(&plan.repo.join("config/calendar")),
        text(&dir.join("audit.jsonl")),
        json!(ids),
        text(sdk),
        text(&dir.join("flow")),
    );
    let config_path = dir.join("core.toml");
    std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
    let log = std::fs::File::create(dir.join("core.log")).context("creating qilin-core's log")?;
    let (socket, cpu) = (dir.join("control.sock"), plan.reader_cpu().to_string());
    let args: [&std::ffi::OsStr; 8] = [
        "--config".as_ref(),
        config_path.as_ref(),
        "--segment".as_ref(),
        segment.as_ref(),
        "--control-socket".as_ref(),
        socket.as_ref(),
        "--cpu".as_ref(),
        cpu.as_ref(),
    ];
    let child = super::e2e::spawn_core(plan, &args, log)?;
    let mut core = CtpCore { child, dir };
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let running = Reader::open(segment)
            .ok()
            .is_some_and(|r| r.writer_pid() == u64::from(core.child.id()) && r.run_state() == Some(RunState::Running));
        if running && UnixStream::connect(core.socket()).is_ok() {
            return Ok(core);
        }
        if let Some(status) = core.child.try_wait()? {
            bail!("qilin-core (ctp) exited ({status}) at start: {}", core.log_tail());
        }
        if Instant::now() > deadline {
            bail!("qilin-core (ctp) did not start within {WATCHDOG:?}: {}", core.log_tail());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Both series (one start of the core serves both; a failure fails both).
pub fn measure(plan: &Plan) -> Vec<(String, anyhow::Result<Series>)> {
    match measure_both(plan) {
        Ok([callback, front]) => vec![(NAMES[0].into(), Ok(callback)), (NAMES[1].into(), Ok(front))],
        Err(e) => {
            let reason = format!("{e:#}");
            NAMES.iter().map(|n| (n.to_string(), Err(anyhow::anyhow!("{reason}")))).collect()
        }
    }
}

fn measure_both(plan: &Plan) -> anyhow::Result<[Series; 2]> {
    // The stand-in is built once per source (cached beside this binary).
    let out_dir = plan.self_bin.parent().map_or_else(std::env::temp_dir, Path::to_path_buf);
    let sdk = qilin_ctp_standin::build(&out_dir).map_err(anyhow::Error::msg).context("building the CTP stand-in")?;
    let mut ticks = RawTicks::new(&instruments(&plan.repo)?);
    let ids = ticks.instrument_ids();
    let front = Front::start(Script::default()).context("starting the stand-in's front")?;
    let segment = TempSegment::new("ctp");
    let core = start_core(plan, &sdk, segment.path(), &ids)?;

    let creds = json!({"session": "primary", "broker_id": "9999", "user_id": "qilin-bench",
                       "password": "bench", "md_fronts": [front.url()]});
    let reply = core.request(&format!("credentials {creds}"))?;
    if reply["ok"] != true {
        bail!("qilin-core refused the credentials: {reply}");
    }
    front
        .wait("the login and every subscription", WATCHDOG, |s| s.logged_in && s.subscribed.len() == ids.len())
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("qilin-core log: {}", core.log_tail()))?;
    // The stand-in has handled the subscription answers once it answers a sync sent after them.
    front.sync(WATCHDOG).context("syncing with the stand-in")?;
    // Every thread exists now (the stand-in's network and callback threads since the login).
    let moved = confine_others(core.child.id(), plan.writer_cpu())?;
    pin_cpu(plan.writer_cpu());

    let mut reader = Reader::open(segment.path()).context("opening the core's segment")?;
    reader.seek(Start::Newest);
    let (mut from_callback, mut from_front, mut to_publish) = (new_histogram(), new_histogram(), new_histogram());
    let (mut lost, mut out) = (0u64, TickRecord::ZERO);
    let interval_ns = (1_000_000_000 / plan.e2e_rate.max(1)) as i64;
    let schedule = Schedule::starting_soon(interval_ns);
    for i in 0..plan.warmup + plan.e2e_samples {
        let raw = ticks.next_struct();
        let (due, sent) = schedule.wait(i);
        front.push(&raw).context("pushing a tick to the stand-in")?;
        let seen = wait_visible_with(&mut reader, &mut out, sent, &mut lost, std::thread::yield_now)
            .with_context(|| format!("qilin-core log: {}", core.log_tail()))?;
        if i >= plan.warmup {
            record(&mut from_callback, seen - out.receive_ns);
            record(&mut from_front, seen - due);
            record(&mut to_publish, out.publish_ns - out.receive_ns);
        }
    }
    let delivery = front.sync(WATCHDOG).context("syncing with the stand-in")?;
    // The hot thread flushes its counters with its housekeeping: give it a moment to count the last ticks.
    let settle = Instant::now() + Duration::from_secs(1);
    while reader.counter(Counter::TicksPublished) < plan.warmup + plan.e2e_samples && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(1));
    }
    let counters = format!(
        "core: {} received, {} published, {} rejected, hand-off full {}; stand-in: {} delivered to OnRtnDepthMarketData, \
         {} held back; reader lost {lost}",
        reader.counter(Counter::TicksReceived),
        reader.counter(Counter::TicksPublished),
        reader.counter(Counter::RejectUnknownInstrument)
            + reader.counter(Counter::RejectTime)
            + reader.counter(Counter::RejectPrice)
            + reader.counter(Counter::RejectId),
        reader.counter(Counter::HandoffFull),
        delivery.delivered,
        delivery.undelivered,
    );
    drop(core);
    let setup = format!(
        "qilin-core binary, source ctp on the stand-in (hot thread on CPU {}, its {moved} other threads on CPU {}), one session \
         logged in, {} instruments subscribed; the front pushes one 584-byte struct at each due time ({} ticks/s) from \
         CPU {}, the same thread polls a Reader (yielding between empty polls)",
        plan.reader_cpu(),
        plan.writer_cpu(),
        ids.len(),
        plan.e2e_rate,
        plan.writer_cpu()
    );
    let callback = Series::new(
        NAMES[0],
        format!(
            "{setup}: reader's visible − the record's receive_ns (stamped by MdCallback on the SDK callback thread) — \
             callback → hand-off → hot thread → segment → reader"
        ),
        from_callback,
    )
    .note(counters.clone())
    .note(format!(
        "of which callback → publish (the record's publish_ns − receive_ns, both stamped inside qilin-core): p50 {} ns, \
         p99 {} ns, p99.9 {} ns",
        to_publish.value_at_quantile(0.5),
        to_publish.value_at_quantile(0.99),
        to_publish.value_at_quantile(0.999)
    ))
    .note(
        "the reader shares the writer CPU with the stand-in's callback thread, so it sees a tick only once that thread \
         has gone back to its wait: most of the difference between this figure and the publish share above",
    );
    let end_to_end = Series::new(
        NAMES[1],
        format!(
            "{setup}: reader's visible − due — front push (TCP on loopback) → stand-in network thread → callback \
             thread → hand-off → hot thread → segment → reader"
        ),
        from_front,
    )
    .note(counters)
    .note("includes the stand-in's own TCP hop and thread hand-over (a vendor library has its own instead); lateness charged from the due time");
    Ok([callback, end_to_end])
}
