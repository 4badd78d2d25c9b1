//! The core's own paths, in process: qilin-core's `Engine` on a hot thread pinned to the reader CPU,
//! fed either through the SDK hand-off (`handoff::handoff`, as the vendor callback feeds it) or by a
//! UDP socket the hot thread polls itself (`Input::Udp`, as `qilin-core --source udp` runs it).
//!
//! One thread on the writer CPU plays both ends: at each tick's due time it hands a raw CTP 6.7.x
//! struct in (push, or `send_to` on loopback), then spins on a segment `Reader` until the tick is
//! visible; latency = visible − due. Nothing is in flight when the next tick is due unless the
//! previous one was late, and then the lateness is charged from the due time (no coordinated
//! omission). With two cores this is the only arrangement that gives every busy thread a core.

use std::{
    net::UdpSocket,
    path::Path,
    sync::{Arc, atomic::AtomicBool},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use qilin_core::{
    config::{Admit, UdpConfig},
    ctp::RawFields,
    engine::{Command, Engine, EngineOptions, EngineReport, Input},
    handoff::handoff,
    udp::UdpBound,
};
use qilin_market::{Calendar, Instruments};
use qilin_shm::{Counter, Next, Reader, RunState, SegmentOptions, Source, Start, TickRecord, Writer};

use super::{Plan, Schedule, Series, WATCHDOG, new_histogram, pin_cpu, record};
use crate::TempSegment;

/// Instrument capacity of the engine's segment (the instruments file lists about 185).
const CAPACITY: u32 = 256;

/// The instruments file of the source tree.
pub fn instruments(repo: &Path) -> anyhow::Result<Instruments> {
    let path = repo.join("config/instruments.toml");
    Instruments::load(&path).with_context(|| format!("loading {}", path.display()))
}

/// The trading calendar of the source tree (the engine runs on it as `qilin-core` does).
pub fn calendar(repo: &Path) -> anyhow::Result<Calendar> {
    let dir = repo.join("config/calendar");
    Calendar::load_dir(&dir).with_context(|| format!("loading {}", dir.display()))
}

/// Valid raw CTP 6.7.x structs for every listed instrument, round robin, day-session time and
/// cumulative volume advancing each round (so normalization takes its ordinary path).
#[derive(Debug)]
pub struct RawTicks {
    templates: Vec<RawFields>,
    n: usize,
}

impl RawTicks {
    /// One template per listed instrument.
    pub fn new(products: &Instruments) -> RawTicks {
        let mut templates = Vec::new();
        for spec in products.products() {
            for id in &spec.instruments {
                let price = spec.reference_price;
                let mut f = RawFields {
                    instrument_id: id.clone(),
                    exchange_id: spec.exchange.as_str().into(),
                    trading_day: "20260302".into(),
                    action_day: "20260302".into(),
                    last_price: price,
                    pre_settlement_price: price,
                    pre_close_price: price,
                    open_price: price,
                    highest_price: price,
                    lowest_price: price,
                    open_interest: 1000.0,
                    close_price: f64::MAX,
                    settlement_price: f64::MAX,
                    upper_limit_price: price * 1.1,
                    lower_limit_price: price * 0.9,
                    average_price: price * f64::from(spec.volume_multiple),
                    ..RawFields::default()
                };
                for level in 0..5 {
                    f.bid_price[level] = price - (level + 1) as f64 * spec.price_tick;
                    f.ask_price[level] = price + (level + 1) as f64 * spec.price_tick;
                    f.bid_volume[level] = 5;
                    f.ask_volume[level] = 7;
                }
                templates.push(f);
            }
        }
        RawTicks { templates, n: 0 }
    }

    /// Instruments cycled through.
    pub fn instruments(&self) -> usize {
        self.templates.len()
    }

    /// Their ids, in the order they are cycled through.
    pub fn instrument_ids(&self) -> Vec<String> {
        self.templates.iter().map(|f| f.instrument_id.clone()).collect()
    }

    /// The next struct (allocates for the time text: call it outside timed code).
    pub fn next_struct(&mut self) -> [u8; 584] {
        let (i, round) = (self.n % self.templates.len(), self.n / self.templates.len());
        self.n += 1;
        let ms = (9 * 3_600_000 + round as u64 * 500) % (24 * 3_600_000);
        let f = &mut self.templates[i];
        f.update_time = format!("{:02}:{:02}:{:02}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
        f.update_millisec = (ms % 1000) as i32;
        f.volume = 10 * (round % 100_000_000) as i32;
        f.turnover = f64::from(f.volume) * f.last_price;
        f.to_v67_bytes()
    }
}

/// An `Engine` running on its own thread, pinned.
#[derive(Debug)]
pub struct RunningEngine {
    /// Its segment (removed on drop).
    pub segment: TempSegment,
    commands: crossbeam_channel::Sender<Command>,
    thread: Option<JoinHandle<EngineReport>>,
    _events: rtrb::Consumer<qilin_core::engine::Event>,
}

impl RunningEngine {
    /// Builds the engine with a `ring_slots` segment and runs `input` on a thread pinned to `cpu`;
    /// returns once the segment says Running.
    pub fn start(
        plan: &Plan,
        label: &str,
        ring_slots: u64,
        cpu: usize,
        input: impl FnOnce() -> Input + Send + 'static,
    ) -> anyhow::Result<RunningEngine> {
        let segment = TempSegment::new(label);
        let options = SegmentOptions { feed_name: "bench".into(), ring_slots, instrument_capacity: CAPACITY };
        let writer = Writer::open(segment.path(), &options).context("creating the engine's segment")?;
        let (commands, command_rx) = crossbeam_channel::bounded(8);
        let (event_tx, events) = rtrb::RingBuffer::new(1024);
        let engine = Engine::new(
            writer,
            instruments(&plan.repo)?,
            CAPACITY,
            EngineOptions { admit: Admit::AnyKnownProduct, heartbeat_interval_ns: 1_000_000, batch: 256 },
            command_rx,
            event_tx,
            Arc::new(AtomicBool::new(false)),
        )
        .with_calendar(calendar(&plan.repo)?);
        let thread = std::thread::Builder::new()
            .name(format!("hot-{label}"))
            .spawn(move || {
                pin_cpu(cpu);
                engine.run(input(), || {})
            })
            .context("spawning the hot thread")?;
        let running = RunningEngine { segment, commands, thread: Some(thread), _events: events };
        let reader = running.reader()?;
        let deadline = Instant::now() + WATCHDOG;
        while reader.run_state() != Some(RunState::Running) {
            if Instant::now() > deadline {
                bail!("{label}: the engine did not start");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(running)
    }

    /// A reader of its segment, at the newest sequence.
    pub fn reader(&self) -> anyhow::Result<Reader> {
        let mut reader = Reader::open(self.segment.path()).context("opening the engine's segment")?;
        reader.seek(Start::Newest);
        Ok(reader)
    }

    /// Stops the engine and returns its report.
    pub fn stop(mut self) -> EngineReport {
        let _ = self.commands.send(Command::Shutdown);
        self.thread.take().map(|t| t.join().expect("hot thread")).unwrap_or_default()
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.commands.send(Command::Shutdown);
            let _ = thread.join();
        }
    }
}

/// Spins until the next tick is visible; `Err` if nothing shows within 5 s of handing it in at `sent`.
fn wait_visible(reader: &mut Reader, out: &mut TickRecord, sent: i64, lost: &mut u64) -> anyhow::Result<i64> {
    wait_visible_with(reader, out, sent, lost, core::hint::spin_loop)
}

/// [`wait_visible`] calling `idle` between polls that find nothing (a spin hint, or a yield when
/// the path being measured needs this CPU).
pub(super) fn wait_visible_with(
    reader: &mut Reader,
    out: &mut TickRecord,
    sent: i64,
    lost: &mut u64,
    idle: impl Fn(),
) -> anyhow::Result<i64> {
    loop {
        match reader.try_next(out) {
            Next::Tick => return Ok(qilin_shm::now_ns()),
            Next::Gap { first, last } => *lost += last - first + 1,
            Next::NewEpoch { .. } => {}
            Next::Empty => {
                idle();
                if qilin_shm::now_ns() - sent > 5_000_000_000 {
                    bail!(
                        "a tick handed in did not reach the segment within 5 s: received {}, published {}, \
                         rejected (unknown instrument {}, time {}, price {}, id {}), hand-off full {}",
                        reader.counter(Counter::TicksReceived),
                        reader.counter(Counter::TicksPublished),
                        reader.counter(Counter::RejectUnknownInstrument),
                        reader.counter(Counter::RejectTime),
                        reader.counter(Counter::RejectPrice),
                        reader.counter(Counter::RejectId),
                        reader.counter(Counter::HandoffFull),
                    );
                }
            }
        }
    }
}

/// SDK callback thread → hand-off → hot thread (normalize, publish) → visible in the segment.
pub fn measure_handoff(plan: &Plan) -> anyhow::Result<Series> {
    let (mut tx, rx) = handoff(4096);
    let engine = RunningEngine::start(plan, "handoff", 1 << 16, plan.reader_cpu(), move || Input::Handoff(rx))?;
    let mut reader = engine.reader()?;
    pin_cpu(plan.writer_cpu());
    let mut ticks = RawTicks::new(&instruments(&plan.repo)?);
    let (mut hist, mut lost, mut out) = (new_histogram(), 0u64, TickRecord::ZERO);
    let schedule = Schedule::starting_soon(plan.interval_ns());
    for i in 0..plan.warmup + plan.samples {
        let raw = ticks.next_struct();
        let (due, sent) = schedule.wait(i);
        tx.push(&raw, due, Source::Sim);
        let seen = wait_visible(&mut reader, &mut out, sent, &mut lost)?;
        if i >= plan.warmup {
            record(&mut hist, seen - due);
        }
    }
    let report = engine.stop();
    Ok(Series::new(
        "core/handoff",
        format!(
            "in-process qilin_core Engine (hot thread on CPU {}): HandoffTx::push at the due time on CPU {} → \
             drain, parse, normalize, publish → visible to a Reader on CPU {}",
            plan.reader_cpu(),
            plan.writer_cpu(),
            plan.writer_cpu()
        ),
        hist,
    )
    .note(format!(
        "engine: {} received, {} published, {} rejected; reader lost {lost}",
        report.received, report.published, report.rejected
    )))
}

/// A datagram on loopback → the hot thread's UDP poll → normalize, publish → visible in the segment.
pub fn measure_udp(plan: &Plan) -> anyhow::Result<Series> {
    let config = UdpConfig { bind: "127.0.0.1:0".parse().expect("address"), batch: 32, ..UdpConfig::default() };
    let bound = UdpBound::bind(&config).context("binding 127.0.0.1:0")?;
    let to = bound.local_addr()?;
    let engine = RunningEngine::start(plan, "udp", 1 << 16, plan.reader_cpu(), move || Input::Udp(bound, Source::Udp))?;
    let mut reader = engine.reader()?;
    pin_cpu(plan.writer_cpu());
    let sender = UdpSocket::bind("127.0.0.1:0").context("binding the sender")?;
    let mut ticks = RawTicks::new(&instruments(&plan.repo)?);
    let (mut hist, mut lost, mut out) = (new_histogram(), 0u64, TickRecord::ZERO);
    let schedule = Schedule::starting_soon(plan.interval_ns());
    for i in 0..plan.warmup + plan.samples {
        let raw = ticks.next_struct();
        let (due, sent) = schedule.wait(i);
        sender.send_to(&raw, to).context("sending a datagram")?;
        let seen = wait_visible(&mut reader, &mut out, sent, &mut lost)?;
        if i >= plan.warmup {
            record(&mut hist, seen - due);
        }
    }
    let report = engine.stop();
    Ok(Series::new(
        "core/udp_relay",
        format!(
            "in-process qilin_core Engine with Input::Udp (the engine's UDP input, not the qilin-core binary; hot \
             thread on CPU {}): send_to on 127.0.0.1 at the due time from CPU {} → recvmmsg, normalize, publish → \
             visible to a Reader on CPU {}",
            plan.reader_cpu(),
            plan.writer_cpu(),
            plan.writer_cpu()
        ),
        hist,
    )
    .note(format!(
        "engine: {} received, {} published, {} rejected; reader lost {lost}; the send_to syscall is inside the figure",
        report.received, report.published, report.rejected
    )))
}
