//! `qilin-bench blast`: a producer for keep-up measurements that is faster than the core's sources.
//!
//! The core's simulator tops out near 1.4 M ticks/s on two vCPUs (its generator thread and the
//! hot thread share them with the reader), which is below what a reader keep-up target such as
//! "the Python batch reader keeps up at ≥ 2 M ticks/s" needs. This role is the segment's own
//! writer ([`qilin_shm::Writer`], the code the core publishes with) fed from a pre-built pool of
//! ticks, paced to a fixed rate on one pinned thread: what a reader sees is exactly what it would
//! see from a core publishing at that rate (same slots, same stamps, same last values, heartbeat
//! every millisecond), without the cost of making the ticks.
//!
//! Pacing: tick `i` is due at `start + i / rate`. The writer publishes a burst of `BURST` ticks
//! whenever the next one is due and spins otherwise, so the rate holds on average over any
//! millisecond; after a stall (the CPU taken away) it catches up at full speed, and the summary
//! says how far behind schedule it ever was. `--rate 0` publishes as fast as the writer can.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use qilin_shm::{Exchange, RunState, SegmentOptions, TickRecord, Writer, now_ns};
use serde_json::json;

use crate::{pin_current, sample_record};

/// Ticks published per clock read when on schedule.
const BURST: u64 = 16;

/// What a blast asks for.
#[derive(Clone, Debug)]
pub struct Blast {
    /// Ticks per second (0: unpaced).
    pub rate: u64,
    /// How long to publish.
    pub duration: Duration,
    /// Ring capacity of the segment created (a power of two).
    pub ring_slots: u64,
    /// Instruments in the directory; ticks cycle through them.
    pub instruments: u32,
    /// CPU (as `core_affinity` numbers them) to pin the writer to.
    pub cpu: usize,
}

/// Creates the segment at `path` (it must not be held by another writer), publishes for
/// [`Blast::duration`] and prints one JSON line: ticks published, the rate reached, the most the
/// writer was ever behind its schedule.
pub fn run(path: &Path, blast: &Blast) -> anyhow::Result<()> {
    let pinned = pin_current(blast.cpu);
    let options = SegmentOptions {
        feed_name: "blast".into(),
        ring_slots: blast.ring_slots,
        instrument_capacity: blast.instruments,
    };
    let mut writer = Writer::open(path, &options).with_context(|| format!("creating segment {}", path.display()))?;
    let mut pool = Vec::with_capacity(blast.instruments as usize);
    for i in 0..blast.instruments {
        let index =
            writer.add_instrument(&format!("bl{i:04}"), Exchange::Shfe, 10, 1.0).context("adding an instrument")?;
        let mut record = sample_record(0);
        record.instrument_index = index;
        record.instrument_id = [0; 32];
        record.instrument_id[..6].copy_from_slice(format!("bl{i:04}").as_bytes());
        pool.push(record);
    }
    writer.set_run_state(RunState::Running);
    eprintln!("blast: publishing to {} at {} ticks/s", path.display(), blast.rate);
    let instruments = u64::from(blast.instruments);
    let mut record = TickRecord::ZERO;
    let start = Instant::now();
    let end = start + blast.duration;
    let mut published = 0u64;
    let mut max_behind = Duration::ZERO;
    let mut last_beat = start;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now.duration_since(last_beat) >= Duration::from_millis(1) {
            writer.heartbeat(now_ns());
            last_beat = now;
        }
        if let Some(ns) = published.saturating_mul(1_000_000_000).checked_div(blast.rate) {
            let due = start + Duration::from_nanos(ns);
            if now < due {
                std::hint::spin_loop();
                continue;
            }
            max_behind = max_behind.max(now - due);
        }
        let stamp = now_ns();
        for _ in 0..BURST {
            record = pool[(published % instruments) as usize];
            record.receive_ns = stamp;
            record.exchange_time_ns = stamp;
            record.volume += published as i64;
            record.last_price += (published % 7) as f64;
            writer.publish(&mut record).context("publishing")?;
            published += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    writer.set_run_state(RunState::Stopped);
    println!(
        "{}",
        json!({
            "published": published,
            "first_sequence": writer.next_sequence() - published,
            "seconds": elapsed,
            "rate": published as f64 / elapsed,
            "asked_rate": blast.rate,
            "max_behind_ms": max_behind.as_secs_f64() * 1e3,
            "pinned": pinned,
            "last_tick_instrument": record.instrument_index,
        })
    );
    Ok(())
}
