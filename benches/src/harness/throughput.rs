//! Sustained ingest through the core: the simulator (qilin-core's `Simulator`, its own structs and
//! instruments) fills a hand-off with N raw structs first, then the `Engine` runs on a hot thread
//! pinned to the reader CPU while one segment reader on the writer CPU follows every tick. The
//! figure is N ÷ (the first tick's `publish_ns` → the reader holding tick N), with loss (reader
//! gaps, hand-off drops) reported; a round with loss does not count as sustained. The start is the
//! engine's own stamp, not a clock read after `RunningEngine::start` returns: on a loaded machine
//! the engine drained much of the hand-off before the harness thread ran again, and such rounds
//! showed tens of millions of ticks per second.
//!
//! Why pre-filled: on two cores the simulator thread, the busy-polling hot thread and the
//! busy-polling reader cannot each have a core, and a simulator time-sliced against the hot thread
//! would measure the scheduler. On a host with a third core, a live paced simulator could be used.

use std::time::Instant;

use anyhow::{Context, bail};
use qilin_core::{config::SimConfig, engine::Input, handoff::handoff, sim::Simulator};
use qilin_shm::{Counter, Next, Start, TickRecord};
use serde_json::{Value, json};

use super::{Plan, WATCHDOG, core_paths::RunningEngine, core_paths::instruments, pin_cpu};

/// One round's outcome.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    /// Ticks per second, the first tick's publish → reader holding the last tick.
    pub ticks_per_s: f64,
    /// Sequences the reader lost.
    pub lost: u64,
    /// Structs the hand-off dropped.
    pub dropped: u64,
    /// Structs the engine rejected.
    pub rejected: u64,
}

/// Runs one round of `n` ticks.
pub fn round(plan: &Plan, n: usize) -> anyhow::Result<Round> {
    let (tx, rx) = handoff(n);
    let config =
        SimConfig { ticks_per_second: 1_000_000_000_000, max_ticks: n as u64, seed: 3, ..SimConfig::default() };
    Simulator::new(&config, &instruments(&plan.repo)?).context("simulator")?.run(tx);
    let engine = RunningEngine::start(plan, "ingest", 1 << 20, plan.reader_cpu(), move || Input::Handoff(rx))?;
    let mut reader = engine.reader()?;
    reader.seek(Start::Sequence(1));
    pin_cpu(plan.writer_cpu());
    let (started, started_ns) = (Instant::now(), qilin_shm::now_ns());
    let (mut ticks, mut lost, mut out) = (0usize, 0u64, TickRecord::ZERO);
    let mut first_publish_ns = None;
    let mut published = 0u64;
    while ticks + (lost as usize) < n {
        match reader.try_next(&mut out) {
            Next::Tick => {
                first_publish_ns.get_or_insert(out.publish_ns);
                ticks += 1;
            }
            Next::Gap { first, last } => lost += last - first + 1,
            Next::NewEpoch { .. } => {}
            Next::Empty => {
                // Rejected structs never reach the ring: stop once the engine took everything.
                published = reader.counter(Counter::TicksPublished);
                let received = reader.counter(Counter::TicksReceived);
                if received == n as u64 && published == (ticks as u64 + lost) {
                    break;
                }
                if started.elapsed() > WATCHDOG {
                    bail!("throughput: {ticks} of {n} ticks after {WATCHDOG:?}");
                }
            }
        }
    }
    let end_ns = qilin_shm::now_ns();
    // The first sequence lost (never, with this ring): from here, which is later, so a higher rate.
    let elapsed_ns = end_ns - first_publish_ns.map_or(started_ns, |p| p.min(started_ns));
    let dropped = reader.counter(Counter::HandoffFull);
    let report = engine.stop();
    let _ = published;
    Ok(Round { ticks_per_s: ticks as f64 / (elapsed_ns.max(1) as f64 / 1e9), lost, dropped, rejected: report.rejected })
}

/// Every round, then the median of the rounds without loss, as JSON.
pub fn measure(plan: &Plan) -> anyhow::Result<Value> {
    let mut rounds = Vec::new();
    for _ in 0..plan.throughput_rounds {
        rounds.push(round(plan, plan.throughput_ticks)?);
    }
    let mut clean: Vec<f64> = rounds.iter().filter(|r| r.lost == 0 && r.dropped == 0).map(|r| r.ticks_per_s).collect();
    clean.sort_by(f64::total_cmp);
    let median = clean.get(clean.len() / 2).copied();
    Ok(json!({
        "what": format!(
            "qilin-core Simulator pre-fills a hand-off with {} structs; Engine hot thread on CPU {} drains it into a \
             2^20-slot segment; one Reader on CPU {} follows; ticks/s from the first tick's publish_ns to the reader holding \
             the last tick",
            plan.throughput_ticks, plan.reader_cpu(), plan.writer_cpu()
        ),
        "ticks_per_round": plan.throughput_ticks,
        "rounds": rounds.iter().map(|r| json!({
            "ticks_per_s": r.ticks_per_s.round(), "lost": r.lost, "handoff_dropped": r.dropped, "rejected": r.rejected
        })).collect::<Vec<_>>(),
        "median_ticks_per_s_without_loss": median.map(f64::round),
        "min_ticks_per_s_without_loss": clean.first().copied().map(f64::round),
        "max_ticks_per_s_without_loss": clean.last().copied().map(f64::round),
        "rounds_with_loss": rounds.iter().filter(|r| r.lost > 0 || r.dropped > 0).count(),
    }))
}
