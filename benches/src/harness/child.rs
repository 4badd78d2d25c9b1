//! The child roles `qilin-bench` runs in other processes, and the parent's side of talking to them.
//!
//! Protocol: the child prints `ready` on stdout once it is set up (pinned, opened, connected), then
//! one JSON line when done: `{"hist": [[ns, count], …], "ticks": N, "lost": N}`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use qilin_shm::{Next, Reader, Start, TickRecord};
use serde_json::{Value, json};
use zerocopy::FromBytes;

use super::{WATCHDOG, new_histogram, pin_cpu, record, series::histogram_to_json, series::merge_json};

/// Where a segment reader starts.
#[derive(Clone, Copy, Debug)]
pub enum From {
    /// Sequence 1 (the writer starts after the reader is ready).
    First,
    /// Only ticks published after it opened.
    Newest,
}

/// What a segment reader measures each tick from.
#[derive(Clone, Copy, Debug)]
pub enum Stamp {
    /// The record's `receive_ns` (the segment series: the writer sets it to the due time).
    Receive,
    /// The due time the paced UDP sender carries in `CurrDelta` (the end-to-end series,
    /// [`super::e2e::stamp`]).
    Due,
}

/// Segment reader role: spins on `try_next`; each tick's latency is `now_ns() −` its stamp
/// (`receive_ns`, or the due time in `curr_delta`). The first `warmup` ticks are read but not
/// recorded; stops after `warmup + count` sequences (read or lost).
pub fn run_reader(segment: &Path, cpu: usize, from: From, stamp: Stamp, warmup: u64, count: u64) -> anyhow::Result<()> {
    pin_cpu(cpu);
    let mut reader = Reader::open(segment).with_context(|| format!("opening segment {}", segment.display()))?;
    reader.seek(match from {
        From::First => Start::Sequence(1),
        From::Newest => Start::Newest,
    });
    ready()?;
    let mut hist = new_histogram();
    let (mut seen, mut ticks, mut lost) = (0u64, 0u64, 0u64);
    let mut out = TickRecord::ZERO;
    let deadline = Instant::now() + WATCHDOG;
    let mut spins = 0u32;
    while seen < warmup + count {
        match reader.try_next(&mut out) {
            Next::Tick => {
                let now = qilin_shm::now_ns();
                if seen >= warmup {
                    let since = match stamp {
                        Stamp::Receive => out.receive_ns,
                        Stamp::Due => super::e2e::stamp_of(&out).with_context(|| {
                            format!("reader: tick {seen} carries no due time in curr_delta ({})", out.curr_delta)
                        })?,
                    };
                    record(&mut hist, now - since);
                    ticks += 1;
                }
                seen += 1;
            }
            Next::Gap { first, last } => {
                let n = last - first + 1;
                lost += n.min((warmup + count).saturating_sub(seen));
                seen += n;
            }
            Next::NewEpoch { .. } => {}
            Next::Empty => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 16) && Instant::now() > deadline {
                    bail!("reader: watchdog: {seen} of {} sequences after {WATCHDOG:?}", warmup + count);
                }
                core::hint::spin_loop();
            }
        }
    }
    done(&hist, ticks, lost)
}

/// Unix-socket peer role: connects to `socket`, reads 376-byte records (non-blocking, spinning, as
/// the segment readers spin), latency = `now_ns() − receive_ns`, first `warmup` not recorded.
pub fn run_uds_peer(socket: &Path, cpu: usize, warmup: u64, count: u64) -> anyhow::Result<()> {
    pin_cpu(cpu);
    let mut stream = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_nonblocking(true)?;
    ready()?;
    let mut hist = new_histogram();
    let mut buf = [0u8; size_of::<TickRecord>()];
    let deadline = Instant::now() + WATCHDOG;
    for i in 0..warmup + count {
        let mut filled = 0;
        while filled < buf.len() {
            match stream.read(&mut buf[filled..]) {
                Ok(0) => bail!("uds peer: the writer closed after {i} records"),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    core::hint::spin_loop();
                    if filled == 0 && i % 1024 == 0 && Instant::now() > deadline {
                        bail!("uds peer: watchdog after {i} records");
                    }
                }
                Err(e) => return Err(e).context("reading the unix socket"),
            }
        }
        let now = qilin_shm::now_ns();
        let rec = TickRecord::read_from_bytes(&buf[..]).map_err(|_| anyhow::anyhow!("record size"))?;
        if i >= warmup {
            record(&mut hist, now - rec.receive_ns);
        }
    }
    done(&hist, count, 0)
}

/// Prints `ready`.
pub fn ready() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

/// Prints the result line.
pub fn done(hist: &Histogram<u64>, ticks: u64, lost: u64) -> anyhow::Result<()> {
    let line = json!({ "hist": histogram_to_json(hist), "ticks": ticks, "lost": lost });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// A child process speaking the protocol above.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    stdout: BufReader<ChildStdout>,
    what: String,
}

/// What a child measured.
#[derive(Debug)]
pub struct PeerResult {
    /// Its latencies.
    pub hist: Histogram<u64>,
    /// Ticks recorded.
    pub ticks: u64,
    /// Sequences lost (lapped).
    pub lost: u64,
}

impl Peer {
    /// Starts `command` with stdout piped (stderr inherited, so its errors show).
    pub fn spawn(mut command: Command, what: impl Into<String>) -> anyhow::Result<Peer> {
        let what = what.into();
        let mut child =
            command.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().with_context(|| format!("starting {what}"))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Peer { child, stdout, what })
    }

    /// Waits for `ready`.
    pub fn wait_ready(&mut self) -> anyhow::Result<()> {
        let line = self.line()?;
        if line.trim() != "ready" {
            bail!("{}: expected `ready`, got {line:?}", self.what);
        }
        Ok(())
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).with_context(|| format!("reading from {}", self.what))?;
        if line.is_empty() {
            let status = self.child.wait()?;
            bail!("{} exited ({status}) without its result", self.what);
        }
        Ok(line)
    }

    /// Reads the result line and reaps the child.
    pub fn finish(mut self) -> anyhow::Result<PeerResult> {
        let line = self.line()?;
        let _ = self.child.wait();
        parse_result(&line).with_context(|| format!("{}: bad result line", self.what))
    }

    /// Reads the text result of the C and Python readers (`ticks N lost L`, then one latency in ns
    /// per line) and reaps the child.
    pub fn finish_text(mut self) -> anyhow::Result<PeerResult> {
        let head = self.line()?;
        let mut words = head.split_whitespace();
        let (Some("ticks"), Some(ticks), Some("lost"), Some(lost)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            bail!("{}: expected `ticks N lost L`, got {head:?}", self.what);
        };
        let (ticks, lost): (u64, u64) = (ticks.parse()?, lost.parse()?);
        let mut hist = new_histogram();
        let mut line = String::new();
        for _ in 0..ticks {
            line.clear();
            self.stdout.read_line(&mut line)?;
            let ns: i64 = line.trim().parse().with_context(|| format!("{}: latency line {line:?}", self.what))?;
            record(&mut hist, ns);
        }
        let _ = self.child.wait();
        Ok(PeerResult { hist, ticks, lost })
    }

    /// Kills the child (on an error path).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    /// A child not reaped by `finish` (an error path: another reader failed, the parent bailed) is
    /// killed rather than left spinning until its own watchdog.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_result(line: &str) -> anyhow::Result<PeerResult> {
    let v: Value = serde_json::from_str(line)?;
    let mut hist = new_histogram();
    if !merge_json(&mut hist, &v["hist"]) {
        bail!("hist is not [[value, count], …]");
    }
    Ok(PeerResult { hist, ticks: v["ticks"].as_u64().unwrap_or(0), lost: v["lost"].as_u64().unwrap_or(0) })
}
