//! Baselines in the same run, carrying the same 376-byte `TickRecord`, paced and timed the same way
//! (`receive_ns` = due time, receiver spins and records `now_ns() − receive_ns`):
//! - a crossbeam-channel between two threads (bounded, one sender, one receiver spinning on
//!   `try_recv`);
//! - a Unix-domain stream socket between two processes (the peer reads non-blocking and spins, so
//!   neither side pays a wake-up the segment readers do not pay).

use std::{os::unix::net::UnixListener, process::Command, time::Instant};

use anyhow::{Context, bail};
use qilin_shm::TickRecord;
use zerocopy::IntoBytes;

use super::{Plan, Schedule, Series, WATCHDOG, child::Peer, new_histogram, pin_cpu, record};
use crate::sample_record;

/// Takes the next message of `rx`, spinning on `try_recv`; `None` if the sender is gone, or if the
/// `deadline` has passed (looked at only while waiting for every 1024th message `i`, to keep the
/// clock read off the measured path).
pub(super) fn spin_recv<T>(rx: &crossbeam_channel::Receiver<T>, i: u64, deadline: Instant) -> Option<T> {
    loop {
        match rx.try_recv() {
            Ok(message) => return Some(message),
            Err(crossbeam_channel::TryRecvError::Empty) => {
                core::hint::spin_loop();
                if i.is_multiple_of(1024) && Instant::now() > deadline {
                    return None;
                }
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
        }
    }
}

/// crossbeam-channel SPSC between the writer and reader CPUs.
pub fn measure_crossbeam(plan: &Plan) -> anyhow::Result<Series> {
    let (tx, rx) = crossbeam_channel::bounded::<TickRecord>(1024);
    let (warmup, total, cpu) = (plan.warmup, plan.warmup + plan.samples, plan.reader_cpu());
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let receiver = std::thread::spawn(move || {
        pin_cpu(cpu);
        let _ = ready_tx.send(());
        let mut hist = new_histogram();
        let deadline = Instant::now() + WATCHDOG;
        for i in 0..total {
            let Some(rec) = spin_recv(&rx, i, deadline) else { return hist };
            let now = qilin_shm::now_ns();
            if i >= warmup {
                record(&mut hist, now - rec.receive_ns);
            }
        }
        hist
    });
    pin_cpu(plan.writer_cpu());
    ready_rx.recv().context("the receiver thread")?;
    let schedule = Schedule::starting_soon(plan.interval_ns());
    let mut rec = sample_record(0);
    for i in 0..total {
        let (due, _) = schedule.wait(i);
        rec.receive_ns = due;
        if tx.send(rec).is_err() {
            break;
        }
    }
    drop(tx);
    let hist = receiver.join().expect("receiver thread");
    if hist.len() != plan.samples {
        bail!("crossbeam receiver recorded {} of {} samples", hist.len(), plan.samples);
    }
    Ok(Series::new(
        "baseline/crossbeam_spsc",
        format!(
            "crossbeam_channel::bounded(1024) of TickRecord (376 B), sender thread CPU {} → receiver thread CPU {} \
             spinning on try_recv",
            plan.writer_cpu(),
            plan.reader_cpu()
        ),
        hist,
    ))
}

/// Unix-domain stream socket between this process and a `qilin-bench uds-peer` process.
pub fn measure_uds(plan: &Plan) -> anyhow::Result<Series> {
    let path = std::env::temp_dir().join(format!("qilin-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    let mut command = Command::new(&plan.self_bin);
    command.arg("uds-peer").arg("--socket").arg(&path).args(["--cpu", &plan.reader_cpu().to_string()]).args([
        "--warmup",
        &plan.warmup.to_string(),
        "--count",
        &plan.samples.to_string(),
    ]);
    let mut peer = Peer::spawn(command, "uds peer")?;
    let (mut stream, _) = listener.accept().context("accepting the uds peer")?;
    let _ = std::fs::remove_file(&path);
    peer.wait_ready()?;
    pin_cpu(plan.writer_cpu());
    let schedule = Schedule::starting_soon(plan.interval_ns());
    let mut rec = sample_record(0);
    for i in 0..plan.warmup + plan.samples {
        let (due, _) = schedule.wait(i);
        rec.receive_ns = due;
        std::io::Write::write_all(&mut stream, rec.as_bytes()).context("writing to the uds peer")?;
    }
    let result = peer.finish()?;
    Ok(Series::new(
        "baseline/uds_pair",
        format!(
            "Unix-domain stream socket, write of TickRecord (376 B) in this process on CPU {} → read in another \
             process on CPU {} (non-blocking, spinning)",
            plan.writer_cpu(),
            plan.reader_cpu()
        ),
        result.hist,
    ))
}
