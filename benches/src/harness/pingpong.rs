//! Ping-pong mode of the segment and the baselines: the same method as the floor's c2c
//! ([`super::floor`]) and iceoryx2's own benchmark. The writer (pinned to the writer CPU) sends one
//! record and waits; the peer (pinned to the reader CPU, in another thread or process) sees it and
//! answers through the same kind of channel back; the writer waits for the answer. One-way = round
//! trip ÷ 2, each sample independent: a loss of the CPU costs the sample it falls in, never a
//! backlog charged to the samples after it (which the paced series, measured from due times, do
//! charge). The paced series answer "what does a tick wait at this rate"; these answer "what does
//! one hop cost when both ends are running", which is what a VM with CPU steal can still show.
//!
//! - `segment/1_reader_pingpong`: `Writer::publish` on segment A → a `qilin-bench segment-echo`
//!   process reading A with a `Reader` publishes what it read on segment B → a `Reader` of B here.
//!   Both hops are segment hops, so half the round trip is the segment's writer → reader latency.
//! - `baseline/crossbeam_pingpong`: two `crossbeam_channel::bounded(1024)` of `TickRecord`, one each
//!   way, between two threads spinning on `try_recv`.
//! - `baseline/uds_pair_pingpong`: one Unix stream socket, 376 bytes each way, both ends
//!   non-blocking and spinning (`qilin-bench uds-peer --echo`).
//! - `baseline/iceoryx2_pingpong` (`--features iceoryx2`): see the `iceoryx2` module.

use std::{
    io::{Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::Path,
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use qilin_shm::{Exchange, Next, Reader, SegmentOptions, Start, TickRecord, Writer};
use zerocopy::IntoBytes;

use super::{Plan, Series, WATCHDOG, child::Peer, new_histogram, pin_cpu, record};
use crate::{INSTRUMENTS, RING_SLOTS, TempSegment, open_writer, sample_record};

/// Records `warmup + count` round trips of `round_trip` (an `Err` from it, a watchdog or a closed
/// peer, ends the series), one-way = (after − before) / 2 with one clock read on each side.
pub fn one_way(
    warmup: u64,
    count: u64,
    mut round_trip: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = new_histogram();
    for i in 0..warmup + count {
        let before = qilin_shm::now_ns();
        round_trip(i)?;
        let after = qilin_shm::now_ns();
        if i >= warmup {
            record(&mut hist, (after - before) / 2);
        }
    }
    Ok(hist)
}

/// Spins on `try_next` until a tick arrives; `Err` on a gap, or after [`WATCHDOG`].
#[inline]
fn next_tick(reader: &mut Reader, out: &mut TickRecord, deadline: Instant) -> anyhow::Result<()> {
    let mut spins = 0u32;
    loop {
        match reader.try_next(out) {
            Next::Tick => return Ok(()),
            Next::Empty => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 16) && Instant::now() > deadline {
                    bail!("ping-pong: no answer within {WATCHDOG:?}");
                }
                core::hint::spin_loop();
            }
            Next::NewEpoch { .. } => {}
            Next::Gap { first, last } => bail!("ping-pong: sequences {first}..={last} lost (lapped)"),
        }
    }
}

/// The `segment-echo` child role: reads `ping` from its newest sequence, creates `pong` (a segment
/// like [`open_writer`]'s) and publishes every tick it reads there, `total` times.
pub fn run_segment_echo(ping: &Path, pong: &Path, cpu: usize, total: u64) -> anyhow::Result<()> {
    pin_cpu(cpu);
    let mut reader = Reader::open(ping).with_context(|| format!("opening segment {}", ping.display()))?;
    reader.seek(Start::Newest);
    let options =
        SegmentOptions { feed_name: "bench".into(), ring_slots: RING_SLOTS, instrument_capacity: INSTRUMENTS };
    let mut writer = Writer::open(pong, &options).with_context(|| format!("creating segment {}", pong.display()))?;
    for i in 0..INSTRUMENTS {
        writer.add_instrument(&format!("rb26{:02}", i + 1), Exchange::Shfe, 10, 1.0)?;
    }
    super::child::ready()?;
    let deadline = Instant::now() + WATCHDOG;
    let mut tick = TickRecord::ZERO;
    for _ in 0..total {
        next_tick(&mut reader, &mut tick, deadline)?;
        writer.publish(&mut tick).context("publishing the answer")?;
    }
    super::child::done(&new_histogram(), total, 0)
}

/// `segment/1_reader_pingpong`.
pub fn measure_segment(plan: &Plan) -> anyhow::Result<Series> {
    pin_cpu(plan.writer_cpu());
    let (ping, mut writer) = open_writer("ping", RING_SLOTS);
    let pong = TempSegment::new("pong");
    let total = plan.warmup + plan.samples;
    let mut command = Command::new(&plan.self_bin);
    command.arg("segment-echo").arg("--segment").arg(ping.path()).arg("--answer").arg(pong.path()).args([
        "--cpu",
        &plan.reader_cpu().to_string(),
        "--count",
        &total.to_string(),
    ]);
    let mut peer = Peer::spawn(command, "segment echo")?;
    peer.wait_ready()?;
    let mut reader = Reader::open(pong.path()).context("opening the answer segment")?;
    reader.seek(Start::Newest);
    let (mut rec, mut out) = (sample_record(0), TickRecord::ZERO);
    let deadline = Instant::now() + WATCHDOG;
    let hist = one_way(plan.warmup, plan.samples, |_| {
        writer.publish(&mut rec).context("publishing the ping")?;
        next_tick(&mut reader, &mut out, deadline)
    })?;
    peer.finish()?;
    Ok(Series::new(
        "segment/1_reader_pingpong",
        format!(
            "ping-pong: Writer::publish (CPU {}) → Reader::try_next in another process (CPU {}), which publishes it on \
             a second segment → Reader::try_next here; one-way = round trip / 2",
            plan.writer_cpu(),
            plan.reader_cpu()
        ),
        hist,
    )
    .note("closed loop, back to back: a stall costs the one sample it falls in; compare segment/1_reader (paced)"))
}

/// `baseline/crossbeam_pingpong`.
pub fn measure_crossbeam(plan: &Plan) -> anyhow::Result<Series> {
    let (tx, rx) = crossbeam_channel::bounded::<TickRecord>(1024);
    let (back_tx, back_rx) = crossbeam_channel::bounded::<TickRecord>(1024);
    let (total, cpu) = (plan.warmup + plan.samples, plan.reader_cpu());
    let echo = std::thread::spawn(move || {
        pin_cpu(cpu);
        let deadline = Instant::now() + WATCHDOG;
        for i in 0..total {
            let Some(rec) = super::baselines::spin_recv(&rx, i, deadline) else { return };
            if back_tx.send(rec).is_err() {
                return;
            }
        }
    });
    pin_cpu(plan.writer_cpu());
    let rec = sample_record(0);
    let deadline = Instant::now() + WATCHDOG;
    let hist = one_way(plan.warmup, plan.samples, |i| {
        tx.send(rec).context("the echo thread is gone")?;
        loop {
            match back_rx.try_recv() {
                Ok(_) => return Ok(()),
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    core::hint::spin_loop();
                    if Instant::now() > deadline {
                        bail!("crossbeam ping-pong: no answer to round trip {i} within {WATCHDOG:?}");
                    }
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => bail!("the echo thread is gone"),
            }
        }
    });
    drop(tx);
    let _ = echo.join();
    Ok(Series::new(
        "baseline/crossbeam_pingpong",
        format!(
            "ping-pong: crossbeam_channel::bounded(1024) of TickRecord (376 B) thread on CPU {} → thread on CPU {} \
             (spinning on try_recv) → back on a second channel; one-way = round trip / 2",
            plan.writer_cpu(),
            plan.reader_cpu()
        ),
        hist?,
    ))
}

/// Reads exactly `buf.len()` bytes from a non-blocking stream, spinning; `Err` on close or after
/// `deadline`.
fn read_spinning(stream: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> anyhow::Result<()> {
    let mut filled = 0;
    let mut spins = 0u32;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => bail!("the other end closed the unix socket"),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                core::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 16) && Instant::now() > deadline {
                    bail!("unix socket: nothing within {WATCHDOG:?}");
                }
            }
            Err(e) => return Err(e).context("reading the unix socket"),
        }
    }
    Ok(())
}

/// Writes all of `buf` to a non-blocking stream, spinning while it is full.
fn write_spinning(stream: &mut UnixStream, buf: &[u8]) -> anyhow::Result<()> {
    let mut written = 0;
    while written < buf.len() {
        match stream.write(&buf[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => core::hint::spin_loop(),
            Err(e) => return Err(e).context("writing the unix socket"),
        }
    }
    Ok(())
}

/// The `uds-peer --echo` child role: reads `total` records and writes each one back.
pub fn run_uds_echo(socket: &Path, cpu: usize, total: u64) -> anyhow::Result<()> {
    pin_cpu(cpu);
    let mut stream = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_nonblocking(true)?;
    super::child::ready()?;
    let mut buf = [0u8; size_of::<TickRecord>()];
    let deadline = Instant::now() + WATCHDOG;
    for _ in 0..total {
        read_spinning(&mut stream, &mut buf, deadline)?;
        write_spinning(&mut stream, &buf)?;
    }
    super::child::done(&new_histogram(), total, 0)
}

/// `baseline/uds_pair_pingpong`.
pub fn measure_uds(plan: &Plan) -> anyhow::Result<Series> {
    let path = std::env::temp_dir().join(format!("qilin-bench-{}-pp.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    let total = plan.warmup + plan.samples;
    let mut command = Command::new(&plan.self_bin);
    command.arg("uds-peer").arg("--socket").arg(&path).args(["--cpu", &plan.reader_cpu().to_string()]).args([
        "--warmup",
        "0",
        "--count",
        &total.to_string(),
        "--echo",
    ]);
    let mut peer = Peer::spawn(command, "uds echo peer")?;
    let (mut stream, _) = listener.accept().context("accepting the uds echo peer")?;
    let _ = std::fs::remove_file(&path);
    peer.wait_ready()?;
    stream.set_nonblocking(true)?;
    pin_cpu(plan.writer_cpu());
    let rec = sample_record(0);
    let mut buf = [0u8; size_of::<TickRecord>()];
    let deadline = Instant::now() + WATCHDOG;
    let hist = one_way(plan.warmup, plan.samples, |_| {
        write_spinning(&mut stream, rec.as_bytes())?;
        read_spinning(&mut stream, &mut buf, deadline)
    })?;
    peer.finish()?;
    Ok(Series::new(
        "baseline/uds_pair_pingpong",
        format!(
            "ping-pong: Unix-domain stream socket, TickRecord (376 B) from this process on CPU {} to another process \
             on CPU {} and back on the same socket, both ends non-blocking and spinning; one-way = round trip / 2",
            plan.writer_cpu(),
            plan.reader_cpu()
        ),
        hist,
    ))
}
