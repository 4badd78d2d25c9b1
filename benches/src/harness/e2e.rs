//! End to end: the real `qilin-core` binary (`--source sim`, hot thread pinned with `--cpu`) into a
//! segment, read by a strategy in Rust (`qilin-bench reader`), in C (`benches/c/latency_reader.c`
//! on `qilin_shm.h`, compiled here with the system compiler) and in Python
//! (`benches/python/latency_reader.py` on `python/qilin_shm`: the stdlib reader tick by tick, and
//! the numpy batch reader, `read_batch`, one clock read per batch), one after the other, each
//! pinned to the writer CPU. Latency = the reader's CLOCK_REALTIME when it holds the tick − the tick's
//! `receive_ns`, which the simulator's callback stamps when it hands the struct to the core (as the
//! SDK callback does). The simulator paces itself (64 ticks back to back, then waits for the
//! schedule) and never waits for the core, so a slow core or reader is charged, not skipped; a stall
//! of the simulator thread itself is not seen (its stamp is taken after it).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use qilin_shm::{Reader, RunState};

use super::{Plan, Series, WATCHDOG, child::Peer};
use crate::TempSegment;

/// A running `qilin-core`, killed on drop.
#[derive(Debug)]
struct Core {
    child: Child,
    socket: PathBuf,
    /// Its stderr (removed on drop).
    log: PathBuf,
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

fn start_core(plan: &Plan, segment: &Path) -> anyhow::Result<Core> {
    let socket = std::env::temp_dir().join(format!("qilin-bench-{}-e2e.sock", std::process::id()));
    let log_path = std::env::temp_dir().join(format!("qilin-bench-{}-core.log", std::process::id()));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let (rate, cpu) = (plan.e2e_rate.to_string(), plan.reader_cpu().to_string());
    let args: [&std::ffi::OsStr; 10] = [
        "--source".as_ref(),
        "sim".as_ref(),
        "--sim-rate".as_ref(),
        rate.as_ref(),
        "--cpu".as_ref(),
        cpu.as_ref(),
        "--segment".as_ref(),
        segment.as_ref(),
        "--control-socket".as_ref(),
        socket.as_ref(),
    ];
    let child = spawn_core(plan, &args, log)?;
    let mut core = Core { child, socket, log: log_path };
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let running = Reader::open(segment).ok().is_some_and(|r| {
            r.writer_pid() == u64::from(core.child.id())
                && r.run_state() == Some(RunState::Running)
                && r.write_cursor() > 0
        });
        if running {
            return Ok(core);
        }
        if let Some(status) = core.child.try_wait()? {
            let log = std::fs::read_to_string(&core.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).take(4).collect();
            bail!("qilin-core exited ({status}) before publishing: {}", tail.join(" | "));
        }
        if Instant::now() > deadline {
            let seen = Reader::open(segment).map(|r| (r.writer_pid(), r.run_state(), r.write_cursor()));
            bail!("qilin-core (pid {}) did not start publishing within {WATCHDOG:?}: {seen:?}", core.child.id());
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

/// Ticks per `read_batch` call in the `e2e/python_batch` series.
const PYTHON_BATCH: &str = "4096";

/// The four end-to-end series (each its own result: one language failing does not hide the others).
pub fn measure(plan: &Plan) -> Vec<(String, anyhow::Result<Series>)> {
    let names = ["e2e/rust", "e2e/c", "e2e/python", "e2e/python_batch"];
    let segment = TempSegment::new("e2e");
    let core = match start_core(plan, segment.path()) {
        Ok(core) => core,
        Err(e) => {
            let reason = format!("{e:#}");
            return names.iter().map(|n| (n.to_string(), Err(anyhow::anyhow!("{reason}")))).collect();
        }
    };
    let cpu = plan.writer_cpu().to_string();
    let (warmup, count) = (plan.warmup.to_string(), plan.e2e_samples.to_string());
    let mut results = Vec::new();

    let mut rust = Command::new(&plan.self_bin);
    rust.arg("reader").arg("--segment").arg(segment.path());
    rust.args(["--cpu", &cpu, "--from", "newest", "--warmup", &warmup, "--count", &count]);
    results.push((
        names[0].to_string(),
        run_reader(plan, names[0], rust, "Rust qilin_shm::Reader (qilin-bench reader)", false),
    ));

    let dir = std::env::temp_dir();
    let c = build_c_reader(plan, &dir).and_then(|exe| {
        let mut command = Command::new(&exe);
        command.arg(segment.path()).args([&cpu, &warmup, &count]);
        let result =
            run_reader(plan, names[1], command, "C qilin_shm.h reader (benches/c/latency_reader.c, cc -O2)", true);
        let _ = std::fs::remove_file(&exe);
        result
    });
    results.push((names[1].to_string(), c));

    let mut python = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    python
        .arg(plan.repo.join("benches/python/latency_reader.py"))
        .arg(segment.path())
        .args([&cpu, &warmup, &count])
        .env("PYTHONPATH", plan.repo.join("python"));
    results.push((
        names[2].to_string(),
        run_reader(plan, names[2], python, "Python qilin_shm.Reader (benches/python/latency_reader.py)", true),
    ));

    let mut batch = Command::new(batch_python(plan));
    batch
        .arg(plan.repo.join("benches/python/latency_reader.py"))
        .arg(segment.path())
        .args([&cpu, &warmup, &count])
        .args(["--batch", PYTHON_BATCH])
        .env("PYTHONPATH", plan.repo.join("python"));
    let what = format!(
        "Python numpy qilin_shm.batch.Reader.read_batch({PYTHON_BATCH}) (benches/python/latency_reader.py --batch; \
         one clock read per batch, charged to every tick of it)"
    );
    results.push((names[3].to_string(), run_reader(plan, names[3], batch, &what, true)));
    drop(core);
    results
}

fn run_reader(plan: &Plan, name: &str, command: Command, what: &str, text: bool) -> anyhow::Result<Series> {
    let mut peer = Peer::spawn(command, what)?;
    peer.wait_ready()?;
    let result = if text { peer.finish_text()? } else { peer.finish()? };
    Ok(Series::new(
        name,
        format!(
            "qilin-core binary (--source sim --sim-rate {} --cpu {}) → {what} on CPU {}: reader's CLOCK_REALTIME − \
             the tick's receive_ns (stamped by the simulator's callback)",
            plan.e2e_rate,
            plan.reader_cpu(),
            plan.writer_cpu()
        ),
        result.hist,
    )
    .note(format!("{} ticks recorded, {} lost (lapped)", result.ticks, result.lost))
    .note("the simulator thread is not pinned: it shares the CPUs with the reader and the core's other threads"))
}
